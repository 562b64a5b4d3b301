#include "cl_grpc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cl_internal.h"
#include "cl_proto.h"
#include "grpc_frame.h"
#include "tsr_buf.h"
#include "tsr_time.h"

enum pump_result { PUMP_DONE, PUMP_DEAD, PUMP_DEADLINE };

/* ---- status helpers ------------------------------------------------------ */

/* Record the status as the thread's tsr error; -1 unless OK. */
static int finish_status(const cl_status *st)
{
    if (st->code == GW_STATUS_OK) return 0;
    return TSR_FAIL(cl_status_errcat(st->code), "%s: %s", cl_status_name(st->code), st->message);
}

int cl_fail_status(cl_status *st, enum gw_status code, const char *fmt, ...)
{
    st->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->message, sizeof st->message, fmt, ap);
    va_end(ap);
    return finish_status(st);
}

static void conn_die(cl_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void conn_die(cl_conn *c, const char *fmt, ...)
{
    if (c->dead) return;
    c->dead = true;
    c->dead_st.code = GW_STATUS_UNAVAILABLE;
    int n = snprintf(c->dead_st.message, sizeof c->dead_st.message, "connection to %s: ",
                     c->target);
    if (n < 0 || (size_t)n >= sizeof c->dead_st.message) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->dead_st.message + n, sizeof c->dead_st.message - (size_t)n, fmt, ap);
    va_end(ap);
}

/* The newest OpenSSL error, or the errno text, for a failed SSL call. */
void cl_ssl_error_text(int sslerr, char *out, size_t cap)
{
    unsigned long e = ERR_peek_last_error();
    if (e != 0) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        const char *reason = ERR_reason_error_string(e);
        snprintf(out, cap, "%s", reason != NULL ? reason : buf);
    } else if (sslerr == SSL_ERROR_SYSCALL && errno != 0) {
        snprintf(out, cap, "%s", strerror(errno));
    } else {
        snprintf(out, cap, "connection closed by the peer");
    }
    ERR_clear_error();
}

/* ---- I/O ------------------------------------------------------------------ */

static int out_append(cl_conn *c, const uint8_t *data, size_t len)
{
    return tsr_buf_append(&c->out, data, len, CL_OUT_CHUNK * 2);
}

/* One write to the connection: > 0 bytes written, 0 when it would block
 * (*events says for what), -1 when the connection died. TLS, or the plain
 * socket of the test seam (cl_conn_open_plain). */
static int conn_write(cl_conn *c, const uint8_t *data, size_t len, short *events)
{
    int chunk = len > INT_MAX ? INT_MAX : (int)len;
    if (c->ssl == NULL) {
        ssize_t n = send(c->fd, data, (size_t)chunk, MSG_NOSIGNAL);
        if (n > 0) return (int)n;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            *events |= POLLOUT;
            return 0;
        }
        conn_die(c, "write failed: %s", n < 0 ? strerror(errno) : "nothing written");
        return -1;
    }
    ERR_clear_error();
    int n = SSL_write(c->ssl, data, chunk);
    if (n > 0) return n;
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_WRITE) {
        *events |= POLLOUT;
        return 0;
    }
    if (e == SSL_ERROR_WANT_READ) {
        *events |= POLLIN;
        return 0;
    }
    char why[256];
    cl_ssl_error_text(e, why, sizeof why);
    conn_die(c, "write failed: %s", why);
    return -1;
}

/* One read from the connection: > 0 bytes read, 0 when it would block
 * (*events says for what), -1 when the connection died or ended. */
static int conn_read(cl_conn *c, uint8_t *buf, size_t cap, short *events)
{
    if (c->ssl == NULL) {
        ssize_t n = recv(c->fd, buf, cap, 0);
        if (n > 0) return (int)n;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            *events |= POLLIN;
            return 0;
        }
        if (n == 0)
            conn_die(c, "the server closed the connection%s", c->goaway ? " (after GOAWAY)" : "");
        else
            conn_die(c, "read failed: %s", strerror(errno));
        return -1;
    }
    ERR_clear_error();
    int n = SSL_read(c->ssl, buf, cap > INT_MAX ? INT_MAX : (int)cap);
    if (n > 0) return n;
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_READ) {
        *events |= POLLIN;
        return 0;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        *events |= POLLOUT;
        return 0;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
        conn_die(c, "the server closed the connection%s", c->goaway ? " (after GOAWAY)" : "");
        return -1;
    }
    char why[256];
    cl_ssl_error_text(e, why, sizeof why);
    conn_die(c, "read failed: %s", why);
    return -1;
}

/* Write what nghttp2 has for us until the socket would block. *events gets
 * what to poll for. -1 when the connection died. */
static int flush_out(cl_conn *c, short *events)
{
    for (;;) {
        if (tsr_buf_pending(&c->out) > 0) {
            int n = conn_write(c, c->out.p + c->out.off, tsr_buf_pending(&c->out), events);
            if (n < 0) return -1;
            if (n == 0) return 0;
            c->out.off += (size_t)n;
            continue;
        }
        c->out.off = c->out.len = 0;
        while (c->out.len < CL_OUT_CHUNK) {
            const uint8_t *data = NULL;
            ssize_t n = nghttp2_session_mem_send(c->h2, &data);
            if (n < 0) {
                conn_die(c, "HTTP/2 error: %s", nghttp2_strerror((int)n));
                return -1;
            }
            if (n == 0) break;
            if (out_append(c, data, (size_t)n) != 0) {
                conn_die(c, "out of memory");
                return -1;
            }
        }
        if (c->out.len == 0) return 0;
    }
}

/* Read and process what the socket has, without blocking. *progress is set
 * when bytes arrived (there may be more to write now). */
static int read_in(cl_conn *c, short *events, bool *progress)
{
    uint8_t buf[CL_READ_CHUNK];
    for (int round = 0; round < 64; round++) {
        int n = conn_read(c, buf, sizeof buf, events);
        if (n <= 0) return n;
        *progress = true;
        ssize_t rv = nghttp2_session_mem_recv(c->h2, buf, (size_t)n);
        if (rv < 0) {
            conn_die(c, "HTTP/2 protocol error: %s", nghttp2_strerror((int)rv));
            return -1;
        }
    }
    *progress = true; /* more may be buffered: come back without polling */
    return 0;
}

/* Drive the connection until done(arg), the deadline (monotonic ms, 0 =
 * none) or the connection's end. */
static enum pump_result pump(cl_conn *c, int64_t deadline, bool (*done)(const void *),
                             const void *arg)
{
    for (;;) {
        if (c->dead) return PUMP_DEAD;
        short events = 0;
        bool progress = false;
        if (flush_out(c, &events) != 0) return PUMP_DEAD;
        if (read_in(c, &events, &progress) != 0) return PUMP_DEAD;
        if (done(arg)) {
            short ignored = 0;
            (void)flush_out(c, &ignored); /* window updates, RST, ... (never blocks) */
            return PUMP_DONE;
        }
        if (progress) {
            if (deadline != 0 && tsr_monotonic_ms() >= deadline) return PUMP_DEADLINE;
            continue;
        }
        if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2)) {
            conn_die(c, "HTTP/2 session ended%s", c->goaway ? " (GOAWAY)" : "");
            return PUMP_DEAD;
        }
        int timeout = -1;
        if (deadline != 0) {
            int64_t left = deadline - tsr_monotonic_ms();
            if (left <= 0) return PUMP_DEADLINE;
            timeout = left > INT_MAX ? INT_MAX : (int)left;
        }
        struct pollfd p = {.fd = c->fd, .events = (short)(events | POLLIN)};
        int r = poll(&p, 1, timeout);
        if (r < 0) {
            if (errno == EINTR) continue;
            conn_die(c, "poll: %s", strerror(errno));
            return PUMP_DEAD;
        }
        if (r > 0 && (p.revents & POLLNVAL)) {
            conn_die(c, "socket closed");
            return PUMP_DEAD;
        }
        /* POLLERR/POLLHUP: the next SSL_read/SSL_write reports it. */
    }
}

static void flush_nonblocking(cl_conn *c)
{
    if (c->dead) return;
    short ignored = 0;
    (void)flush_out(c, &ignored);
}

/* ---- streams: state --------------------------------------------------------- */

static cl_stream *stream_of(nghttp2_session *session, int32_t id)
{
    cl_stream *s = nghttp2_session_get_stream_user_data(session, id);
    if (s != NULL) TSR_ASSERT(s->magic == CL_STREAM_MAGIC);
    return s;
}

/* Decide the stream's status locally and detach it from nghttp2 (reset with
 * CANCEL if still open). Safe inside nghttp2 callbacks (no I/O here). */
static void stream_abort(cl_stream *s, enum gw_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void stream_abort(cl_stream *s, enum gw_status code, const char *fmt, ...)
{
    cl_conn *c = s->conn;
    if (!s->local) {
        s->local = true;
        s->local_st.code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->local_st.message, sizeof s->local_st.message, fmt, ap);
        va_end(ap);
    }
    if (!s->closed && s->id > 0 && !c->dead) {
        (void)nghttp2_session_set_stream_user_data(c->h2, s->id, NULL);
        (void)nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
    }
    s->closed = true;
}

static bool stream_done(const void *arg)
{
    const cl_stream *s = arg;
    return s->closed || s->local;
}

static bool stream_sent(const void *arg)
{
    const cl_stream *s = arg;
    const cl_conn *c = s->conn;
    return s->closed || s->local || (s->soff == s->slen && tsr_buf_pending(&c->out) == 0);
}

static bool conn_drained(const void *arg)
{
    const cl_conn *c = arg;
    return tsr_buf_pending(&c->out) == 0 && !nghttp2_session_want_write(c->h2);
}

/* Pump for one stream and turn the outcome into the stream's state. */
static void stream_pump(cl_stream *s, bool (*done)(const void *))
{
    cl_conn *c = s->conn;
    switch (pump(c, s->deadline, done, s)) {
    case PUMP_DONE: break;
    case PUMP_DEADLINE:
        stream_abort(s, GW_STATUS_DEADLINE_EXCEEDED, "deadline exceeded after %lld ms",
                     (long long)s->timeout_ms);
        flush_nonblocking(c);
        break;
    case PUMP_DEAD:
        if (!s->closed && !s->local) {
            s->local = true;
            s->local_st = c->dead_st;
        }
        break;
    }
}

/* The final status of a finished stream. */
static void stream_status(cl_stream *s, cl_status *st)
{
    if (s->local) {
        *st = s->local_st;
        return;
    }
    if (!s->closed) {
        /* The connection died around the stream. */
        *st = s->conn->dead ? s->conn->dead_st : (cl_status){GW_STATUS_INTERNAL, "stream not finished"};
        return;
    }
    if (!grpc_deframer_idle(&s->df)) s->resp.truncated = true;
    cl_resp_status(&s->resp, true, st);
    if (st->code == GW_STATUS_UNAVAILABLE && s->resp.reset &&
        s->resp.reset_code == NGHTTP2_REFUSED_STREAM && s->conn->goaway)
        snprintf(st->message, sizeof st->message,
                 "the gateway is closing the connection (GOAWAY); retry on a new connection");
}

static void secret_free(uint8_t *p, size_t len)
{
    if (p == NULL) return;
    OPENSSL_cleanse(p, len);
    free(p);
}

static void stream_free(cl_stream *s)
{
    if (s == NULL) return;
    cl_conn *c = s->conn;
    if (!s->closed) stream_abort(s, GW_STATUS_CANCELLED, "cancelled");
    flush_nonblocking(c);
    secret_free(s->sbuf, s->slen);
    free(s->msg);
    grpc_deframer_free(&s->df);
    c->open_streams--;
    s->magic = 0;
    free(s);
}

/* ---- nghttp2 callbacks -------------------------------------------------------- */

static bool name_is(const uint8_t *name, size_t len, const char *lit)
{
    size_t l = strlen(lit);
    return len == l && memcmp(name, lit, l) == 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data)
{
    (void)flags;
    (void)user_data;
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    cl_stream *s = stream_of(session, frame->hd.stream_id);
    if (s == NULL || s->local) return 0;
    s->hdr_bytes += namelen + valuelen + 32;
    if (s->hdr_bytes > CL_MAX_HEADER_BYTES) {
        stream_abort(s, GW_STATUS_INTERNAL, "response headers larger than %d bytes",
                     CL_MAX_HEADER_BYTES);
        return 0;
    }
    bool ends = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    const char *v = (const char *)value;
    if (name_is(name, namelen, ":status")) {
        int code = 0;
        bool ok = valuelen == 3;
        for (size_t i = 0; ok && i < 3; i++) {
            ok = v[i] >= '0' && v[i] <= '9';
            code = code * 10 + (v[i] - '0');
        }
        if (!ok) code = 400 + 99; /* nghttp2 already refuses these; be safe */
        if (code >= 200) s->resp.http_status = code;
    } else if (name_is(name, namelen, "content-type")) {
        s->resp.content_type_seen = true;
        s->resp.content_type_ok = grpc_content_type_ok(v, valuelen);
    } else if (ends && name_is(name, namelen, "grpc-status")) {
        s->resp.have_grpc_status = true;
        int code = 0;
        if (cl_grpc_status_parse(v, valuelen, &code) != 0) {
            s->resp.grpc_status_bad = true;
            tsr_err_clear();
        } else {
            s->resp.grpc_status = code;
        }
    } else if (ends && name_is(name, namelen, "grpc-message")) {
        cl_message_decode(v, valuelen, s->resp.grpc_message, sizeof s->resp.grpc_message);
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                         const uint8_t *data, size_t len, void *user_data)
{
    (void)flags;
    (void)user_data;
    cl_stream *s = stream_of(session, stream_id);
    if (s == NULL || s->local) return 0;
    size_t off = 0;
    while (off < len) {
        size_t used = 0, mlen = 0;
        const uint8_t *m = NULL;
        enum grpc_deframe_result r = grpc_deframer_feed(&s->df, data + off, len - off, &used, &m, &mlen);
        off += used;
        if (r == GRPC_DEFRAME_ERROR) {
            if (s->df.err == GW_STATUS_UNIMPLEMENTED)
                stream_abort(s, GW_STATUS_INTERNAL, "compressed response (not supported)");
            else if (s->df.err == GW_STATUS_RESOURCE_EXHAUSTED)
                stream_abort(s, GW_STATUS_RESOURCE_EXHAUSTED, "response message too large: %s",
                             s->df.errmsg);
            else
                stream_abort(s, s->df.err, "bad response framing: %s", s->df.errmsg);
            return 0;
        }
        if (r == GRPC_DEFRAME_MORE) break;
        s->resp.messages++;
        if (s->resp.messages > 1) {
            stream_abort(s, GW_STATUS_INTERNAL, "more than one response message");
            return 0;
        }
        size_t charged = 0;
        s->msg = grpc_deframer_take(&s->df, &charged);
        s->msg_len = mlen;
    }
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *user_data)
{
    (void)user_data;
    cl_stream *s = stream_of(session, stream_id);
    if (s == NULL) return 0;
    s->closed = true;
    if (error_code != NGHTTP2_NO_ERROR || !s->resp.have_grpc_status) {
        s->resp.reset = true;
        s->resp.reset_code = error_code;
    }
    (void)nghttp2_session_set_stream_user_data(session, stream_id, NULL);
    return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    (void)session;
    cl_conn *c = user_data;
    if (frame->hd.type == NGHTTP2_GOAWAY) {
        c->goaway = true;
        c->goaway_code = frame->goaway.error_code;
    }
    return 0;
}

/* Request body: the framed messages in the stream's send buffer. The stream
 * is looked up by id (never through source->ptr): a cancelled stream has no
 * user data any more and is simply not read. */
static ssize_t data_read(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                         uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
    (void)source;
    (void)user_data;
    cl_stream *s = stream_of(session, stream_id);
    if (s == NULL) return NGHTTP2_ERR_DEFERRED;
    size_t avail = s->slen - s->soff;
    if (avail == 0 && !s->eof_requested) {
        s->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = avail < length ? avail : length;
    if (n > 0) memcpy(buf, s->sbuf + s->soff, n);
    s->soff += n;
    if (s->soff == s->slen && s->eof_requested) *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

/* ---- connections ---------------------------------------------------------------- */

static int h2_setup(cl_conn *c, int64_t deadline, cl_status *st)
{
    nghttp2_session_callbacks *cbs = NULL;
    nghttp2_option *opt = NULL;
    int rv = nghttp2_session_callbacks_new(&cbs);
    if (rv == 0) rv = nghttp2_option_new(&opt);
    if (rv != 0) {
        nghttp2_session_callbacks_del(cbs);
        return cl_fail_status(st, GW_STATUS_INTERNAL, "out of memory");
    }
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_option_set_max_reserved_remote_streams(opt, 0);
    nghttp2_option_set_max_settings(opt, 32);
    nghttp2_option_set_max_outbound_ack(opt, 1000);
    nghttp2_option_set_max_continuations(opt, 8);
    rv = nghttp2_session_client_new2(&c->h2, cbs, c, opt);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_option_del(opt);
    if (rv != 0) return cl_fail_status(st, GW_STATUS_INTERNAL, "nghttp2: %s", nghttp2_strerror(rv));

    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, CL_STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, CL_MAX_HEADER_BYTES},
    };
    rv = nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]);
    if (rv == 0) rv = nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0,
                                                            CL_CONN_WINDOW);
    if (rv != 0) return cl_fail_status(st, GW_STATUS_INTERNAL, "nghttp2: %s", nghttp2_strerror(rv));
    switch (pump(c, deadline, conn_drained, c)) {
    case PUMP_DONE: return 0;
    case PUMP_DEADLINE:
        return cl_fail_status(st, GW_STATUS_UNAVAILABLE, "HTTP/2 setup with %s timed out",
                           c->target);
    case PUMP_DEAD: break;
    }
    *st = c->dead_st;
    return finish_status(st);
}

int cl_conn_open_addr(const cl_addr *a, cl_tls *tls, int64_t timeout_ms, cl_conn **out,
                      cl_status *st)
{
    cl_status scratch;
    if (st == NULL) st = &scratch;
    memset(st, 0, sizeof *st);
    if (out == NULL || a == NULL || tls == NULL || timeout_ms <= 0)
        return cl_fail_status(st, GW_STATUS_INVALID_ARGUMENT,
                           "cl_conn_open: address, TLS context and a positive timeout needed");
    *out = NULL;
    int64_t deadline = tsr_monotonic_ms() + timeout_ms;
    cl_conn *c = calloc(1, sizeof *c);
    if (c == NULL) return cl_fail_status(st, GW_STATUS_INTERNAL, "out of memory");
    c->fd = -1;
    c->max_response = CL_DEFAULT_MAX_RESPONSE;
    if (a->is_unix) {
        snprintf(c->target, sizeof c->target, "unix:%s", a->host);
        snprintf(c->authority, sizeof c->authority, "localhost");
    } else if (strchr(a->host, ':') != NULL) {
        snprintf(c->target, sizeof c->target, "[%s]:%u", a->host, (unsigned)a->port);
        snprintf(c->authority, sizeof c->authority, "%s", c->target);
    } else {
        snprintf(c->target, sizeof c->target, "%s:%u", a->host, (unsigned)a->port);
        snprintf(c->authority, sizeof c->authority, "%s", c->target);
    }
    if (cl_dial(c, a, deadline, st) != 0 || cl_tls_handshake(c, a, tls, deadline, st) != 0 ||
        h2_setup(c, deadline, st) != 0) {
        c->dead = true; /* nothing polite to send */
        cl_conn_close(c);
        return -1;
    }
    c->hs.host = NULL; /* a->host is the caller's */
    st->code = GW_STATUS_OK;
    st->message[0] = '\0';
    *out = c;
    return 0;
}

int cl_conn_open_plain(int fd, int64_t timeout_ms, cl_conn **out, cl_status *st)
{
    cl_status scratch;
    if (st == NULL) st = &scratch;
    *out = NULL;
    if (fd < 0 || timeout_ms <= 0)
        return cl_fail_status(st, GW_STATUS_INVALID_ARGUMENT,
                           "cl_conn_open_plain: a socket and a positive timeout needed");
    cl_conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        close(fd);
        return cl_fail_status(st, GW_STATUS_INTERNAL, "out of memory");
    }
    c->fd = fd;
    c->max_response = CL_DEFAULT_MAX_RESPONSE;
    snprintf(c->target, sizeof c->target, "plain socket %d", fd);
    snprintf(c->authority, sizeof c->authority, "localhost");
    if (h2_setup(c, tsr_monotonic_ms() + timeout_ms, st) != 0) {
        c->dead = true;
        cl_conn_close(c);
        return -1;
    }
    st->code = GW_STATUS_OK;
    st->message[0] = '\0';
    *out = c;
    return 0;
}

int cl_conn_open(const char *host, uint16_t port, cl_tls *tls, int64_t timeout_ms, cl_conn **out,
                 cl_status *st)
{
    cl_status scratch;
    if (st == NULL) st = &scratch;
    cl_addr a;
    memset(&a, 0, sizeof a);
    if (host == NULL) return cl_fail_status(st, GW_STATUS_INVALID_ARGUMENT, "no host");
    if (strncmp(host, "unix:", 5) == 0) {
        if (cl_addr_parse(host, 0, &a) != 0)
            return cl_fail_status(st, GW_STATUS_INVALID_ARGUMENT, "bad address: %s", tsr_errmsg());
    } else {
        size_t hl = strlen(host);
        if (hl == 0 || hl >= sizeof a.host || port == 0)
            return cl_fail_status(st, GW_STATUS_INVALID_ARGUMENT, "bad host or port");
        memcpy(a.host, host, hl + 1);
        a.port = port;
    }
    return cl_conn_open_addr(&a, tls, timeout_ms, out, st);
}

void cl_conn_close(cl_conn *c)
{
    if (c == NULL) return;
    TSR_ASSERT(c->open_streams == 0);
    if (!c->dead && c->h2 != NULL) {
        (void)nghttp2_session_terminate_session(c->h2, NGHTTP2_NO_ERROR);
        flush_nonblocking(c);
    }
    if (c->ssl != NULL) {
        if (!c->dead) {
            ERR_clear_error();
            (void)SSL_shutdown(c->ssl); /* best effort, non-blocking */
        }
        SSL_free(c->ssl);
    }
    ERR_clear_error();
    if (c->fd >= 0) close(c->fd);
    nghttp2_session_del(c->h2);
    cl_tls_gen_release(c->gen);
    tsr_buf_free(&c->out);
    free(c);
}

bool cl_conn_alive(const cl_conn *c)
{
    return c != NULL && !c->dead && !c->goaway;
}

const ca_peer *cl_conn_peer(const cl_conn *c)
{
    return &c->hs.peer;
}

int cl_conn_set_max_response(cl_conn *c, uint32_t max_bytes)
{
    TSR_ENSURE(max_bytes >= 1 && max_bytes <= GRPC_MAX_MESSAGE_LIMIT, TSR_E_INPUT,
               "max response size must be 1..%u bytes", GRPC_MAX_MESSAGE_LIMIT);
    c->max_response = max_bytes;
    return 0;
}

/* ---- calls ------------------------------------------------------------------------ */

static bool path_ok(const char *path)
{
    size_t n = strlen(path);
    if (n < 3 || n > CL_PATH_MAX || path[0] != '/') return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)path[i] <= 0x20 || (unsigned char)path[i] >= 0x7f) return false;
    return true;
}

/* nghttp2_nv takes non-const pointers but copies what they point to (no
 * NGHTTP2_NV_FLAG_NO_COPY_*), so constant strings are fine. */
static uint8_t *nvp(const char *s)
{
    return (uint8_t *)(uintptr_t)s;
}
#define NV(n, v) {nvp(n), nvp(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE}

/* A new stream with its request submitted (headers queued, body from sbuf). */
static int stream_start(cl_conn *c, const char *path, int64_t timeout_ms, uint8_t *sbuf,
                        size_t slen, bool eof, cl_stream **out, cl_status *st)
{
    *out = NULL;
    if (c == NULL || path == NULL || !path_ok(path)) {
        secret_free(sbuf, slen);
        return cl_fail_status(st, GW_STATUS_INVALID_ARGUMENT, "bad method path");
    }
    if (c->dead || c->goaway) {
        secret_free(sbuf, slen);
        if (c->dead) {
            *st = c->dead_st;
            return finish_status(st);
        }
        return cl_fail_status(st, GW_STATUS_UNAVAILABLE,
                           "the gateway is closing the connection (GOAWAY); open a new one");
    }
    cl_stream *s = calloc(1, sizeof *s);
    if (s == NULL) {
        secret_free(sbuf, slen);
        return cl_fail_status(st, GW_STATUS_INTERNAL, "out of memory");
    }
    s->magic = CL_STREAM_MAGIC;
    s->conn = c;
    s->sbuf = sbuf;
    s->slen = slen;
    s->eof_requested = eof;
    s->timeout_ms = timeout_ms;
    grpc_deframer_init(&s->df, c->max_response, NULL);
    c->open_streams++;

    char tmo[16] = "";
    if (timeout_ms > 0) {
        s->deadline = tsr_monotonic_ms() + timeout_ms;
        if (cl_grpc_timeout_format(timeout_ms, tmo) != 0) tmo[0] = '\0';
    }
    nghttp2_nv nva[] = {
        NV(":method", "POST"),
        NV(":scheme", "https"),
        NV(":path", path),
        NV(":authority", c->authority),
        NV("content-type", "application/grpc"),
        NV("te", "trailers"),
        NV("user-agent", CL_USER_AGENT),
        NV("grpc-accept-encoding", "identity"),
        NV("grpc-timeout", tmo),
    };
    size_t n = sizeof nva / sizeof nva[0];
    if (tmo[0] == '\0') n--;
    nghttp2_data_provider prd = {.source = {.ptr = NULL}, .read_callback = data_read};
    int32_t id = nghttp2_submit_request(c->h2, NULL, nva, n, &prd, s);
    if (id < 0) {
        s->closed = true;
        if (id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE) c->goaway = true;
        cl_fail_status(st, GW_STATUS_UNAVAILABLE, "cannot start a call on %s: %s", c->target,
                    nghttp2_strerror(id));
        stream_free(s);
        return -1;
    }
    s->id = id;
    *out = s;
    return 0;
}

int cl_unary(cl_conn *c, const char *path, const uint8_t *req, size_t req_len, int64_t timeout_ms,
             uint8_t **resp, size_t *resp_len, cl_status *st)
{
    cl_status scratch;
    if (st == NULL) st = &scratch;
    memset(st, 0, sizeof *st);
    if (resp == NULL || resp_len == NULL || (req == NULL && req_len > 0))
        return cl_fail_status(st, GW_STATUS_INVALID_ARGUMENT, "cl_unary: missing argument");
    *resp = NULL;
    *resp_len = 0;
    if (req_len > CL_MAX_REQUEST)
        return cl_fail_status(st, GW_STATUS_RESOURCE_EXHAUSTED,
                           "request message of %zu bytes is over the %u byte limit", req_len,
                           CL_MAX_REQUEST);
    uint8_t *buf = malloc(GRPC_PREFIX_LEN + req_len);
    if (buf == NULL) return cl_fail_status(st, GW_STATUS_INTERNAL, "out of memory");
    if (grpc_frame_prefix(req_len, buf) != 0) {
        free(buf);
        return cl_fail_status(st, GW_STATUS_INTERNAL, "%s", tsr_errmsg());
    }
    if (req_len > 0) memcpy(buf + GRPC_PREFIX_LEN, req, req_len);
    cl_stream *s = NULL;
    if (stream_start(c, path, timeout_ms, buf, GRPC_PREFIX_LEN + req_len, true, &s, st) != 0)
        return -1;
    stream_pump(s, stream_done);
    stream_status(s, st);
    if (st->code == GW_STATUS_OK) {
        *resp = s->msg;
        *resp_len = s->msg_len;
        s->msg = NULL;
    }
    stream_free(s);
    return finish_status(st);
}

static const uint8_t empty_bytes[1];

/* The secret allocator: each block is preceded by its size (in a header
 * aligned like malloc's), so its free wipes the whole block. */
typedef union secret_hdr {
    size_t size;
    max_align_t align;
} secret_hdr;

static void *secret_block_alloc(void *data, size_t size)
{
    (void)data;
    if (size > SIZE_MAX - sizeof(secret_hdr)) return NULL;
    secret_hdr *h = malloc(sizeof *h + size);
    if (h == NULL) return NULL;
    h->size = size;
    return h + 1;
}

static void secret_block_free(void *data, void *p)
{
    (void)data;
    if (p == NULL) return;
    secret_hdr *h = (secret_hdr *)p - 1;
    OPENSSL_cleanse(h, sizeof *h + h->size);
    free(h);
}

static ProtobufCAllocator secret_allocator = {
    .alloc = secret_block_alloc, .free = secret_block_free, .allocator_data = NULL};

void cl_secret_free(ProtobufCMessage *resp)
{
    if (resp != NULL) protobuf_c_message_free_unpacked(resp, &secret_allocator);
}

static int unpack(const ProtobufCMessageDescriptor *desc, ProtobufCAllocator *alloc,
                  uint8_t *bytes, size_t len, ProtobufCMessage **out, cl_status *st)
{
    *out = protobuf_c_message_unpack(desc, alloc, len, bytes != NULL ? bytes : empty_bytes);
    secret_free(bytes, len);
    if (*out == NULL)
        return cl_fail_status(st, GW_STATUS_INTERNAL, "cannot parse the %s response", desc->name);
    return 0;
}

/* Pack a message (secrets possible: the buffer is cleansed by the caller). */
static int pack(const ProtobufCMessage *msg, uint8_t **out, size_t *len, cl_status *st)
{
    *out = NULL;
    *len = 0;
    if (msg == NULL) return cl_fail_status(st, GW_STATUS_INVALID_ARGUMENT, "no request message");
    size_t n = protobuf_c_message_get_packed_size(msg);
    if (n > CL_MAX_REQUEST)
        return cl_fail_status(st, GW_STATUS_RESOURCE_EXHAUSTED,
                           "request message of %zu bytes is over the %u byte limit", n,
                           CL_MAX_REQUEST);
    uint8_t *buf = malloc(n > 0 ? n : 1);
    if (buf == NULL) return cl_fail_status(st, GW_STATUS_INTERNAL, "out of memory");
    if (protobuf_c_message_pack(msg, buf) != n) {
        free(buf);
        return cl_fail_status(st, GW_STATUS_INTERNAL, "protobuf pack size mismatch");
    }
    *out = buf;
    *len = n;
    return 0;
}

static int call_with(cl_conn *c, const char *path, const ProtobufCMessage *req,
                     const ProtobufCMessageDescriptor *resp_desc, int64_t timeout_ms,
                     ProtobufCAllocator *alloc, ProtobufCMessage **resp, cl_status *st)
{
    cl_status scratch;
    if (st == NULL) st = &scratch;
    memset(st, 0, sizeof *st);
    if (resp == NULL || resp_desc == NULL)
        return cl_fail_status(st, GW_STATUS_INVALID_ARGUMENT, "cl_call: missing argument");
    *resp = NULL;
    uint8_t *buf = NULL, *rbuf = NULL;
    size_t len = 0, rlen = 0;
    if (pack(req, &buf, &len, st) != 0) return -1;
    int rc = cl_unary(c, path, buf, len, timeout_ms, &rbuf, &rlen, st);
    secret_free(buf, len);
    if (rc != 0) return -1;
    return unpack(resp_desc, alloc, rbuf, rlen, resp, st);
}

int cl_call(cl_conn *c, const char *path, const ProtobufCMessage *req,
            const ProtobufCMessageDescriptor *resp_desc, int64_t timeout_ms,
            ProtobufCMessage **resp, cl_status *st)
{
    return call_with(c, path, req, resp_desc, timeout_ms, NULL, resp, st);
}

int cl_call_secret(cl_conn *c, const char *path, const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *resp_desc, int64_t timeout_ms,
                   ProtobufCMessage **resp, cl_status *st)
{
    return call_with(c, path, req, resp_desc, timeout_ms, &secret_allocator, resp, st);
}

/* ---- client streams ------------------------------------------------------------------- */

int cl_stream_open(cl_conn *c, const char *path, int64_t timeout_ms, cl_stream **out,
                   cl_status *st)
{
    cl_status scratch;
    if (st == NULL) st = &scratch;
    memset(st, 0, sizeof *st);
    if (out == NULL) return cl_fail_status(st, GW_STATUS_INVALID_ARGUMENT, "no stream pointer");
    *out = NULL;
    cl_stream *s = NULL;
    if (stream_start(c, path, timeout_ms, NULL, 0, false, &s, st) != 0) return -1;
    /* Send the request headers now; the server may answer at once. */
    stream_pump(s, stream_sent);
    if (s->local && s->local_st.code != GW_STATUS_OK) {
        *st = s->local_st;
        stream_free(s);
        return finish_status(st);
    }
    *out = s;
    return 0;
}

int cl_stream_send(cl_stream *s, const uint8_t *msg, size_t len, cl_status *st)
{
    cl_status scratch;
    if (st == NULL) st = &scratch;
    memset(st, 0, sizeof *st);
    if (s == NULL || (msg == NULL && len > 0))
        return cl_fail_status(st, GW_STATUS_INVALID_ARGUMENT, "cl_stream_send: missing argument");
    TSR_ASSERT(s->magic == CL_STREAM_MAGIC);
    if (s->eof_requested)
        return cl_fail_status(st, GW_STATUS_INVALID_ARGUMENT, "the stream is already half-closed");
    if (len > CL_MAX_REQUEST)
        return cl_fail_status(st, GW_STATUS_RESOURCE_EXHAUSTED,
                           "request message of %zu bytes is over the %u byte limit", len,
                           CL_MAX_REQUEST);
    /* Anything the server already said (an early status) comes first. */
    if (!s->closed && !s->local) stream_pump(s, stream_sent);
    if (s->closed || s->local) {
        stream_status(s, st);
        if (st->code == GW_STATUS_OK)
            return cl_fail_status(st, GW_STATUS_ABORTED,
                               "the server ended the call (status OK) before the message was "
                               "sent");
        return finish_status(st);
    }
    if (s->deadline != 0 && tsr_monotonic_ms() >= s->deadline) {
        stream_abort(s, GW_STATUS_DEADLINE_EXCEEDED, "deadline exceeded after %lld ms",
                     (long long)s->timeout_ms);
        flush_nonblocking(s->conn);
        *st = s->local_st;
        return finish_status(st);
    }
    uint8_t *buf = malloc(GRPC_PREFIX_LEN + len);
    if (buf == NULL) return cl_fail_status(st, GW_STATUS_INTERNAL, "out of memory");
    if (grpc_frame_prefix(len, buf) != 0) {
        free(buf);
        return cl_fail_status(st, GW_STATUS_INTERNAL, "%s", tsr_errmsg());
    }
    if (len > 0) memcpy(buf + GRPC_PREFIX_LEN, msg, len);
    secret_free(s->sbuf, s->slen);
    s->sbuf = buf;
    s->slen = GRPC_PREFIX_LEN + len;
    s->soff = 0;
    if (s->deferred) {
        s->deferred = false;
        (void)nghttp2_session_resume_data(s->conn->h2, s->id);
    }
    stream_pump(s, stream_sent);
    bool sent = s->soff == s->slen;
    secret_free(s->sbuf, s->slen);
    s->sbuf = NULL;
    s->slen = s->soff = 0;
    if (s->local || (s->closed && !sent)) {
        stream_status(s, st);
        if (st->code == GW_STATUS_OK)
            return cl_fail_status(st, GW_STATUS_ABORTED,
                               "the server ended the call (status OK) before the message was "
                               "sent");
        return finish_status(st);
    }
    st->code = GW_STATUS_OK;
    return 0;
}

int cl_stream_send_pb(cl_stream *s, const ProtobufCMessage *msg, cl_status *st)
{
    cl_status scratch;
    if (st == NULL) st = &scratch;
    uint8_t *buf = NULL;
    size_t len = 0;
    if (pack(msg, &buf, &len, st) != 0) return -1;
    int rc = cl_stream_send(s, buf, len, st);
    secret_free(buf, len);
    return rc;
}

int cl_stream_finish(cl_stream *s, uint8_t **resp, size_t *resp_len, cl_status *st)
{
    cl_status scratch;
    if (st == NULL) st = &scratch;
    memset(st, 0, sizeof *st);
    if (s == NULL || resp == NULL || resp_len == NULL) {
        cl_stream_cancel(s);
        return cl_fail_status(st, GW_STATUS_INVALID_ARGUMENT, "cl_stream_finish: missing argument");
    }
    TSR_ASSERT(s->magic == CL_STREAM_MAGIC);
    *resp = NULL;
    *resp_len = 0;
    if (!s->closed && !s->local) {
        s->eof_requested = true;
        if (s->deferred) {
            s->deferred = false;
            (void)nghttp2_session_resume_data(s->conn->h2, s->id);
        }
        stream_pump(s, stream_done);
    }
    stream_status(s, st);
    if (st->code == GW_STATUS_OK) {
        *resp = s->msg;
        *resp_len = s->msg_len;
        s->msg = NULL;
    }
    stream_free(s);
    return finish_status(st);
}

int cl_stream_finish_pb(cl_stream *s, const ProtobufCMessageDescriptor *resp_desc,
                        ProtobufCMessage **resp, cl_status *st)
{
    cl_status scratch;
    if (st == NULL) st = &scratch;
    if (resp == NULL || resp_desc == NULL) {
        cl_stream_cancel(s);
        return cl_fail_status(st, GW_STATUS_INVALID_ARGUMENT, "cl_stream_finish_pb: missing argument");
    }
    *resp = NULL;
    uint8_t *rbuf = NULL;
    size_t rlen = 0;
    if (cl_stream_finish(s, &rbuf, &rlen, st) != 0) return -1;
    return unpack(resp_desc, NULL, rbuf, rlen, resp, st);
}

void cl_stream_cancel(cl_stream *s)
{
    if (s == NULL) return;
    TSR_ASSERT(s->magic == CL_STREAM_MAGIC);
    stream_free(s);
}
