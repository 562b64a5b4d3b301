/* One connection of the gRPC transport: TLS handshake, reads, writes and
 * close, on the worker that owns it (accepting and the worker loop: gw_server.c).
 *
 * Event model: level-triggered epoll. EPOLLIN is registered only while we
 * want to read (backpressure), EPOLLOUT only while a TLS write is blocked.
 *
 * Backpressure: nghttp2's output is pulled into `out` only while `out` holds
 * less than GW_OUT_HIGH_WATER bytes, and nothing is read from a connection
 * whose TLS write is blocked. A client that does not read its responses
 * therefore stops being read after ~one high-water mark plus the kernel's
 * socket buffers; its pending responses live in nghttp2 streams, bounded by
 * SETTINGS_MAX_CONCURRENT_STREAMS and by the HTTP/2 flow-control windows.
 *
 * Output: nghttp2's frames are gathered into the worker's one output buffer
 * and handed to SSL_write together. Only when SSL_write does not take all of
 * it (TCP is full) is the rest copied into the connection's own c->out, kept
 * until it is written and freed then: an idle connection holds no output
 * buffer (docs/performance.md, "Idle connections").
 *
 * Idle connections: after GW_PARK_AFTER_MS without I/O and with no call in
 * flight, the tick parks a connection: OpenSSL already released its record
 * buffers (SSL_MODE_RELEASE_BUFFERS), and the HTTP/2 session gives back the
 * pages it does not need while idle (gw_h2_park). The next byte in or out
 * unparks it; nothing else changes.
 *
 * Lifetime: a connection closed while handling an epoll batch is moved to the
 * worker's zombie list and freed after the batch, so a later event of the
 * same batch never touches freed memory. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gw_server_int.h"
#include "gw_tls.h"
#include "tsr_time.h"

#define GW_READ_CHUNK 16384             /* one TLS record of plaintext */
#define GW_READS_PER_EVENT 64           /* fairness between connections of a worker */
#define GW_READS_PER_FLUSH 16           /* answers of this many records go out together */

/* ---- logging ------------------------------------------------------------ */

void gw_server_log(const gw_server *s, const char *fmt, ...)
{
    if (s->cfg.log == NULL) return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    s->cfg.log(s->cfg.app, line);
}

void gw_conn_log(const gw_conn *c, const char *fmt, ...)
{
    const gw_server *s = c->w->s;
    if (s->cfg.log == NULL) return;
    char msg[400], line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(line, sizeof line, "peer %s: %s", c->peer, msg);
    s->cfg.log(s->cfg.app, line);
}

void gw_server_event(const gw_server *s, enum gw_server_event ev)
{
    if (s->cfg.event != NULL) s->cfg.event(s->cfg.app, ev);
}

const char *gw_conn_principal_text(const gw_conn *c, char *buf, size_t cap)
{
    const gw_principal *p = &c->principal;
    snprintf(buf, cap, "%s%s%.64s serial %.40s", gw_principal_kind_name(p->kind),
             p->name[0] ? " " : "", p->name, p->serial_hex[0] ? p->serial_hex : "-");
    return buf;
}

/* The OpenSSL error queue as "reason (data): reason", clearing it. */
static const char *ossl_reason(char *buf, size_t cap)
{
    size_t used = 0;
    const char *data = NULL;
    int flags = 0;
    unsigned long e;
    buf[0] = '\0';
    while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0 && used + 1 < cap) {
        const char *r = ERR_reason_error_string(e);
        int n = snprintf(buf + used, cap - used, "%s%s%s%s%s", used ? ": " : "",
                         r != NULL ? r : "unknown error",
                         (flags & ERR_TXT_STRING) && data && *data ? " (" : "",
                         (flags & ERR_TXT_STRING) && data ? data : "",
                         (flags & ERR_TXT_STRING) && data && *data ? ")" : "");
        if (n < 0) break;
        used += (size_t)n < cap - used ? (size_t)n : cap - used - 1;
    }
    if (buf[0] == '\0') snprintf(buf, cap, "connection closed");
    ERR_clear_error();
    return buf;
}

/* ---- connections -------------------------------------------------------- */

static void conn_set_events(gw_conn *c, uint32_t want)
{
    if (c->state == GW_CONN_CLOSED || want == c->ev_mask) return;
    struct epoll_event ev = {.events = want, .data.ptr = c};
    if (epoll_ctl(c->w->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0) c->ev_mask = want;
}

void gw_conn_close(gw_conn *c, const char *why)
{
    if (c->state == GW_CONN_CLOSED) return;
    gw_loop *w = c->w;
    if (why != NULL) gw_conn_log(c, "closed: %s", why);
    gw_h2_free(c);
    if (c->ssl != NULL) {
        if (c->state == GW_CONN_OPEN && !c->ssl_fatal) {
            ERR_clear_error();
            (void)SSL_shutdown(c->ssl);  /* best effort close_notify; never waits */
        }
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    ERR_clear_error();
    /* Leave the epoll set before the close: closing leaves it only when no
     * other descriptor refers to the socket, and a driver's fork (the
     * process and vm drivers start their sandboxes from gateway threads)
     * holds copies of every descriptor until its child closes them. A
     * registration that outlived the close would deliver events for this
     * freed connection, or for another one at the same address. */
    (void)epoll_ctl(w->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    tsr_buf_free(&c->out);
    c->state = GW_CONN_CLOSED;
    OPENSSL_cleanse(&c->principal, sizeof c->principal);

    if (c->prev != NULL) c->prev->next = c->next;
    else w->conns = c->next;
    if (c->next != NULL) c->next->prev = c->prev;
    w->n_conns--;
    if (c->counted) atomic_fetch_sub(&w->load, 1);
    c->prev = NULL;
    c->next = w->zombies;
    w->zombies = c;
    atomic_fetch_sub(&w->s->n_conns, 1);
    gw_server_event(w->s, GW_EV_CONN_CLOSE);
}

/* The connection's byte stream: TLS, or plaintext on the unix socket. A
 * result <= 0 comes with *err, an SSL_ERROR_* value for both. */
static int conn_send(gw_conn *c, const uint8_t *buf, int len, int *err)
{
    if (c->ssl != NULL) {
        ERR_clear_error();
        int n = SSL_write(c->ssl, buf, len);
        if (n <= 0) *err = SSL_get_error(c->ssl, n);
        return n;
    }
    for (;;) {
        ssize_t n = send(c->fd, buf, (size_t)len, MSG_NOSIGNAL);
        if (n > 0) return (int)n;
        if (n < 0 && errno == EINTR) continue;
        *err = n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? SSL_ERROR_WANT_WRITE
                                                                  : SSL_ERROR_SYSCALL;
        return -1;
    }
}

static int conn_recv(gw_conn *c, uint8_t *buf, int len, int *err)
{
    if (c->ssl != NULL) {
        ERR_clear_error();
        int n = SSL_read(c->ssl, buf, len);
        if (n <= 0) *err = SSL_get_error(c->ssl, n);
        return n;
    }
    for (;;) {
        ssize_t n = recv(c->fd, buf, (size_t)len, 0);
        if (n > 0) return (int)n;
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) *err = SSL_ERROR_ZERO_RETURN;
        else *err = errno == EAGAIN || errno == EWOULDBLOCK ? SSL_ERROR_WANT_READ : SSL_ERROR_SYSCALL;
        return -1;
    }
}

/* Append to the connection's own pending output (a blocked write's rest;
 * the buffer may move: ACCEPT_MOVING_WRITE_BUFFER). */
static int out_append(gw_conn *c, const uint8_t *data, size_t len)
{
    return tsr_buf_append(&c->out, data, len, 16384);
}

/* The connection's pending output is all written: give the buffer back. */
static void out_release(gw_conn *c)
{
    tsr_buf_free(&c->out);
}

/* Write buf[0..len) to TLS until done or TLS would block. Returns the bytes
 * written (all of them, or fewer with c->write_blocked set), or -1 if the
 * connection was closed. */
static ssize_t conn_write(gw_conn *c, const uint8_t *buf, size_t len)
{
    size_t off = 0;
    while (off < len) {
        size_t chunk = len - off > INT_MAX ? INT_MAX : len - off;
        int e = SSL_ERROR_NONE;
        int n = conn_send(c, buf + off, (int)chunk, &e);
        if (n > 0) {
            off += (size_t)n;
            c->last_io_ms = tsr_monotonic_ms();
            continue;
        }
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
            c->write_blocked = true;
            c->write_wants_read = e == SSL_ERROR_WANT_READ;
            return (ssize_t)off;
        }
        char why[160];
        c->ssl_fatal = true;
        gw_conn_close(c, e == SSL_ERROR_SYSCALL ? NULL : ossl_reason(why, sizeof why));
        return -1;
    }
    return (ssize_t)off;
}

/* Move nghttp2 output through the worker's buffer into TLS until nghttp2
 * has nothing more or TLS would block; what TLS did not take is kept in
 * c->out. Returns -1 if the connection was closed. A blocked write is
 * retried with the same pending bytes (from c->out), as OpenSSL requires. */
int gw_conn_flush(gw_conn *c)
{
    if (c->state != GW_CONN_OPEN) return -1;
    if (c->write_blocked) return 0;
    uint8_t *buf = c->w->out;
    for (;;) {
        /* A blocked write's rest first. */
        if (tsr_buf_pending(&c->out) > 0) {
            ssize_t n = conn_write(c, c->out.p + c->out.off, tsr_buf_pending(&c->out));
            if (n < 0) return -1;
            c->out.off += (size_t)n;
            if (c->write_blocked) return 0;
            out_release(c);
        }
        /* Gather what nghttp2 has, up to the high-water mark. */
        size_t len = 0;
        while (c->h2 != NULL && len < GW_OUT_HIGH_WATER) {
            const uint8_t *data = NULL;
            ssize_t n = nghttp2_session_mem_send(c->h2, &data);
            if (n < 0) {
                char why[160];
                snprintf(why, sizeof why, "HTTP/2 send error: %s", nghttp2_strerror((int)n));
                OPENSSL_cleanse(buf, len);
                gw_conn_close(c, why);
                return -1;
            }
            if (n == 0) break;
            if ((size_t)n > GW_OUT_BUF - len) {
                /* Larger than the buffer has room for (nghttp2 returns at
                 * most one frame buffer): keep it all in c->out instead. */
                if (out_append(c, buf, len) != 0 || out_append(c, data, (size_t)n) != 0) {
                    OPENSSL_cleanse(buf, len);
                    gw_conn_close(c, "out of memory");
                    return -1;
                }
                OPENSSL_cleanse(buf, len);
                len = 0;
                break;
            }
            memcpy(buf + len, data, (size_t)n);
            len += (size_t)n;
        }
        if (len == 0) {
            if (tsr_buf_pending(&c->out) > 0) continue;   /* spilled above */
            return 0;
        }
        c->parked = false;
        ssize_t n = conn_write(c, buf, len);
        if (n >= 0 && (size_t)n < len && out_append(c, buf + n, len - (size_t)n) != 0) {
            OPENSSL_cleanse(buf, len);
            gw_conn_close(c, "out of memory");
            return -1;
        }
        OPENSSL_cleanse(buf, len);   /* responses may carry secrets */
        if (n < 0) return -1;
        if (c->write_blocked) return 0;
    }
}

/* Log why, send GOAWAY (if HTTP/2 is up), try once to flush it, close. */
void gw_conn_kill(gw_conn *c, const char *why)
{
    if (c->state == GW_CONN_CLOSED) return;
    gw_conn_log(c, "closed: %s", why);
    if (c->state == GW_CONN_OPEN && c->h2 != NULL) {
        gw_h2_goaway(c, why);
        c->write_blocked = false;
        if (gw_conn_flush(c) != 0) return;  /* the write failed: already closed */
    }
    gw_conn_close(c, NULL);
}

static bool conn_may_read(const gw_conn *c)
{
    return c->state == GW_CONN_OPEN && !c->kill && !c->read_wants_write &&
           (!c->write_blocked || c->write_wants_read) &&
           tsr_buf_pending(&c->out) < GW_OUT_HIGH_WATER &&
           nghttp2_session_want_read(c->h2);
}

void gw_conn_again(gw_conn *c)
{
    if (c->in_again) return;
    c->in_again = true;
    c->again_next = c->w->again;
    c->w->again = c;
}

/* Read TLS records into nghttp2 while backpressure allows, and send the
 * answers once the records that arrived together (those OpenSSL has already
 * read ahead) are handled, or every GW_READS_PER_FLUSH records: one
 * SSL_write for the calls that came together, not one per record, and no
 * wait for a call that came alone. -1 if closed. */
static int conn_read(gw_conn *c)
{
    uint8_t buf[GW_READ_CHUNK];
    int records = 0, unflushed = 0;
    while (conn_may_read(c)) {
        if (c->write_wants_read) {
            /* The blocked SSL_write waited for input: retry it first. */
            c->write_blocked = c->write_wants_read = false;
            if (gw_conn_flush(c) != 0) return -1;
            continue;
        }
        if (records == GW_READS_PER_EVENT) {
            /* Plaintext: level-triggered epoll reports what is left. */
            if (c->ssl != NULL && SSL_has_pending(c->ssl)) gw_conn_again(c);
            break;
        }
        int e = SSL_ERROR_NONE;
        int n = conn_recv(c, buf, sizeof buf, &e);
        if (n > 0) {
            records++;
            c->last_io_ms = tsr_monotonic_ms();
            c->parked = false;
            c->read_wants_write = false;
            int rc = gw_h2_recv(c, buf, (size_t)n);
            OPENSSL_cleanse(buf, (size_t)n);
            if (rc != 0 || c->kill) {
                gw_conn_kill(c, c->kill_reason);
                return -1;
            }
            /* More records already read (read-ahead): answer them together;
             * else answer now, before trying TCP again. */
            if (++unflushed == GW_READS_PER_FLUSH || c->ssl == NULL ||
                !SSL_has_pending(c->ssl)) {
                unflushed = 0;
                if (gw_conn_flush(c) != 0) return -1;
            }
            continue;
        }
        if (e == SSL_ERROR_WANT_READ) break;
        if (e == SSL_ERROR_WANT_WRITE) {
            c->read_wants_write = true;
            break;
        }
        char reason[160];
        if (e == SSL_ERROR_ZERO_RETURN) {
            gw_conn_close(c, NULL);  /* peer's close_notify */
        } else {
            c->ssl_fatal = true;
            gw_conn_close(c, e == SSL_ERROR_SYSCALL ? NULL : ossl_reason(reason, sizeof reason));
        }
        return -1;
    }
    if (unflushed > 0 && gw_conn_flush(c) != 0) return -1;
    return 0;
}

/* After any progress: close when HTTP/2 is finished, else re-arm epoll. */
void gw_conn_settle(gw_conn *c)
{
    if (c->state != GW_CONN_OPEN) return;
    if (tsr_buf_pending(&c->out) == 0 && gw_h2_done(c)) {
        gw_conn_close(c, NULL);
        return;
    }
    uint32_t want = 0;
    if (conn_may_read(c)) want |= EPOLLIN;
    if (c->write_blocked) want |= c->write_wants_read ? EPOLLIN : EPOLLOUT;
    if (c->read_wants_write) want |= EPOLLOUT;
    conn_set_events(c, want);
}

void gw_conn_service(gw_conn *c, uint32_t events)
{
    if (events & EPOLLOUT) {
        c->write_blocked = c->write_blocked && c->write_wants_read;
        c->read_wants_write = false;
    }
    if (gw_conn_flush(c) != 0) return;
    if (conn_read(c) != 0) return;
    /* A hang-up or error we will not see through a read (not reading now). */
    if ((events & (EPOLLHUP | EPOLLERR)) && !conn_may_read(c) && !(c->ev_mask & EPOLLOUT)) {
        gw_conn_close(c, NULL);
        return;
    }
    gw_conn_settle(c);
}

static void conn_start(gw_conn *c);

static void conn_established(gw_conn *c)
{
    gw_server *s = c->w->s;
    if (!gw_tls_alpn_is_h2(c->ssl)) {  /* the ALPN callbacks make this unreachable */
        gw_server_event(s, GW_EV_HANDSHAKE_TLS);
        gw_conn_close(c, "no ALPN h2");
        return;
    }
    memset(&c->principal, 0, sizeof c->principal);
    if (s->cfg.authenticate(s->cfg.app, c->w->state, c->ssl, &c->principal) != 0) {
        gw_conn_log(c, "authenticate failed: %s", tsr_errmsg());
        gw_conn_close(c, "internal error during authentication");
        return;
    }
    /* The principal is derived: the certificates the peer sent besides its
     * leaf (parsed, with their keys: several KiB) are never read again. */
    STACK_OF(X509) *sent = SSL_get_peer_cert_chain(c->ssl);
    X509 *x;
    while (sent != NULL && (x = sk_X509_pop(sent)) != NULL) X509_free(x);
    conn_start(c);
}

/* The principal is set: check it once, then HTTP/2. */
static void conn_start(gw_conn *c)
{
    gw_server *s = c->w->s;
    c->state = GW_CONN_OPEN;
    c->counted = true;
    atomic_fetch_add(&c->w->load, 1);
    const char *why = NULL;
    if (!s->cfg.still_valid(s->cfg.app, &c->principal, tsr_now_unix(), &why)) {
        char who[200];
        gw_conn_log(c, "refused %s: credentials no longer valid: %s",
                    gw_conn_principal_text(c, who, sizeof who), why != NULL ? why : "?");
        gw_conn_close(c, NULL);
        return;
    }
    if (gw_h2_session_new(c) != 0) {
        gw_conn_close(c, tsr_errmsg());
        return;
    }
    c->last_io_ms = tsr_monotonic_ms();
    gw_conn_service(c, 0);
}

static void conn_handshake(gw_conn *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        conn_established(c);
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        c->hs_want_write = e == SSL_ERROR_WANT_WRITE;
        conn_set_events(c, c->hs_want_write ? EPOLLOUT : EPOLLIN);
        return;
    }
    char reason[200], why[260];
    c->ssl_fatal = true;
    /* EOF (SSL_OP_IGNORE_UNEXPECTED_EOF makes it ZERO_RETURN) or a reset. */
    if ((e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN) && ERR_peek_last_error() == 0) {
        gw_server_event(c->w->s, GW_EV_HANDSHAKE_CLOSED);
        snprintf(reason, sizeof reason, "peer closed the connection");
    } else {
        gw_server_event(c->w->s, GW_EV_HANDSHAKE_TLS);
        (void)ossl_reason(reason, sizeof reason);
    }
    snprintf(why, sizeof why, "TLS handshake failed: %s", reason);
    gw_conn_close(c, why);
}

void gw_conn_event(gw_conn *c, uint32_t events)
{
    if (c->state == GW_CONN_CLOSED) return;
    if (c->state == GW_CONN_HANDSHAKE) {
        conn_handshake(c);
        return;
    }
    gw_conn_service(c, events);
}

static void peer_text(const struct sockaddr_storage *ss, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        port = ntohs(a->sin_port);
        snprintf(out, cap, "%s:%u", host, port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        port = ntohs(a->sin6_port);
        snprintf(out, cap, "[%s]:%u", host, port);
    } else {
        snprintf(out, cap, "unknown");
    }
}

void gw_conn_new(gw_loop *w, int fd, const struct sockaddr_storage *ss)
{
    gw_server *s = w->s;
    gw_conn *c = calloc(1, sizeof *c);
    if (c == NULL) goto fail;
    c->w = w;
    c->fd = fd;
    c->state = GW_CONN_HANDSHAKE;
    c->accepted_ms = c->last_io_ms = tsr_monotonic_ms();
    peer_text(ss, c->peer, sizeof c->peer);   /* TCP_NODELAY: from the listener */
    ERR_clear_error();
    TSR_ASSERT(pthread_mutex_lock(&s->ctx_lock) == 0);
    c->ssl = SSL_new(s->ssl_ctx);   /* takes its own reference to the context */
    (void)pthread_mutex_unlock(&s->ctx_lock);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, fd) != 1) goto fail;
    SSL_set_accept_state(c->ssl);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) goto fail;
    c->ev_mask = EPOLLIN;
    c->next = w->conns;
    if (w->conns != NULL) w->conns->prev = c;
    w->conns = c;
    w->n_conns++;
    gw_server_event(s, GW_EV_CONN_OPEN);
    return;
fail:
    ERR_clear_error();
    if (c != NULL) SSL_free(c->ssl);
    free(c);
    close(fd);
    atomic_fetch_sub(&s->n_conns, 1);
    gw_server_log(s, "cannot set up a new connection (out of memory)");
}

/* A connection on the unix socket: a local trusted proxy speaking h2c. No
 * handshake: its principal comes from authenticate_local, with the peer's
 * SO_PEERCRED, and HTTP/2 starts at once. */
void gw_conn_new_local(gw_loop *w, int fd)
{
    gw_server *s = w->s;
    struct ucred cred;
    socklen_t cl = sizeof cred;
    gw_conn *c = calloc(1, sizeof *c);
    if (c == NULL || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0 ||
        cl != sizeof cred) {
        gw_server_log(s, "unix socket: cannot set up a new connection (%s)",
                   c == NULL ? "out of memory" : "no peer credentials");
        free(c);
        close(fd);
        atomic_fetch_sub(&s->n_conns, 1);
        return;
    }
    c->w = w;
    c->fd = fd;
    c->local = true;
    c->state = GW_CONN_HANDSHAKE;
    c->accepted_ms = c->last_io_ms = tsr_monotonic_ms();
    snprintf(c->peer, sizeof c->peer, "unix:uid=%u,pid=%d", (unsigned)cred.uid, (int)cred.pid);
    c->next = w->conns;
    if (w->conns != NULL) w->conns->prev = c;
    w->conns = c;
    w->n_conns++;
    gw_server_event(s, GW_EV_CONN_OPEN);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        gw_conn_close(c, "epoll_ctl failed");
        return;
    }
    c->ev_mask = EPOLLIN;
    gw_local_peer peer = {.pid = cred.pid, .uid = cred.uid, .gid = cred.gid};
    memset(&c->principal, 0, sizeof c->principal);
    if (s->cfg.authenticate_local(s->cfg.app, w->state, &peer, &c->principal) != 0) {
        gw_conn_log(c, "authenticate failed: %s", tsr_errmsg());
        gw_conn_close(c, "internal error during authentication");
        return;
    }
    conn_start(c);
}

