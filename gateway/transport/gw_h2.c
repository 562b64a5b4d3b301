/* HTTP/2 (nghttp2 1.52, mem_recv/mem_send) and gRPC calls on one connection.
 *
 * A request stream goes HEADERS -> dispatch (method, content-type, path,
 * grpc-encoding, grpc-timeout, still_valid) -> DATA deframed into messages
 * -> END_STREAM -> the handler's answer. Every answer ends the stream from
 * our side: a full response (HEADERS, one DATA message, trailers) for OK,
 * a trailers-only HEADERS for any error. When our END_STREAM leaves while
 * the client is still sending, RST_STREAM(NO_ERROR) follows it, so nothing
 * more of that stream is read (RFC 9113 §8.1).
 *
 * Authorization happens at dispatch, at the moment each method callback is
 * about to run (call_admitted): the unary handler when the request ends,
 * a client stream's open, each of its messages and its finish, and the
 * completion of a held call. cfg.authorize re-checks the call's identity and
 * applies the method's rule then, so a call whose credentials ended between
 * its headers and its last byte (or while it was held) runs nothing.
 *
 * Streaming calls (gw_method.stream: server streaming and bidirectional)
 * answer with HEADERS once their first message is queued (gw_stream_send),
 * then one DATA message per queued message, then trailers when the method
 * ends the call. The method's callbacks run on the worker: open, each
 * request message, the client's half-close, and a poll every tick while
 * the call stays open; each is admitted by cfg.authorize first, so a server
 * stream's sends stop (UNAUTHENTICATED trailers) the tick its caller's
 * credentials end. An error status after messages went out is sent in the
 * trailers.
 *
 * Compression: requests with grpc-encoding: gzip may carry compressed
 * messages (flag 1); each is inflated with the message limit applied to the
 * decompressed size as it grows (gw_gzip.h), and the inflated bytes are
 * charged to the connection's receive budget. Answers are not compressed.
 *
 * Forwarded identities (docs/operations.md): when the request headers carry
 * cfg.forward_header, the application's authenticate_forwarded hook decides,
 * just before the method runs, whether this call runs as the connection's
 * principal or as the certificate a trusted proxy forwarded. A forwarded
 * principal belongs to the stream (st->fwd_principal, ctx.principal points
 * at it) and is re-checked with still_valid on every tick, like a
 * connection's: a revoked or expired forwarded identity ends its call with
 * UNAUTHENTICATED within one tick. */
#include <openssl/crypto.h>
#include <stdint.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_frame.h"
#include "gw_gzip.h"
#include "gw_server_int.h"
#include "tsr_time.h"

/* SETTINGS we send. */
#define GW_H2_INITIAL_WINDOW (1u << 20)       /* per stream */
#define GW_H2_CONN_WINDOW (4 << 20)           /* connection-level receive window */
#define GW_H2_MAX_HEADER_LIST 16384u          /* advertised and enforced per request */
/* nghttp2 flood guards (all present in Debian's 1.52). */
#define GW_H2_MAX_SETTINGS 32                 /* entries per SETTINGS frame */
#define GW_H2_MAX_OUTBOUND_ACK 100            /* queued SETTINGS/PING ACKs */
#define GW_H2_MAX_CONTINUATIONS 8             /* CONTINUATION frames per header block */
#define GW_H2_RST_BURST 1000                  /* incoming RST_STREAM token bucket */
#define GW_H2_RST_RATE 33                     /* tokens per second */
#define GW_H2_DEFLATE_TABLE 4096              /* HPACK encoder dynamic table */

#define GW_PATH_MAX 255

/* Answers a connection may hold unsent (a peer that does not read them, or a
 * small receive window) before its further unary calls wait: twice the
 * largest message plus 1 MiB, as the receive budget. A call waits, it is not
 * refused, so a client multiplexing many large calls that it does read only
 * sees them served in turn. The bound per connection is this plus one
 * answer plus the receive budget. */
#define GW_TX_BUDGET(s) (2 * (size_t)(s)->cfg.max_message_bytes + (1u << 20))

enum gw_phase {
    GW_PHASE_HEADERS = 0,  /* request headers arriving */
    GW_PHASE_ACTIVE,       /* dispatched: messages are delivered */
    GW_PHASE_RESPONDED,    /* our answer is submitted; input is dropped */
};

struct gw_stream {
    gw_stream *prev, *next;
    gw_conn *conn;
    int32_t id;
    enum gw_phase phase;

    /* request headers (bounded copies) */
    size_t hdr_bytes;
    bool method_post;
    bool ct_seen, ct_ok;
    bool enc_bad;
    bool enc_gzip;             /* grpc-encoding: gzip */
    bool timeout_seen, timeout_bad;
    int64_t timeout_ms;
    uint8_t *fwd_value;        /* first value of cfg.forward_header (a certificate: public) */
    size_t fwd_len;
    unsigned fwd_count;        /* times the header appeared */
    char path[GW_PATH_MAX + 1];
    size_t path_len;
    bool path_long;

    /* the call */
    const gw_method *m;
    gw_call_ctx ctx;
    grpc_deframer df;
    uint8_t *unary_msg;        /* the one request message of a unary call */
    size_t unary_len, unary_charge;
    unsigned n_msgs;
    void *cs_state;
    bool cs_opened;
    bool remote_closed;        /* client sent END_STREAM */
    gw_principal *fwd_principal;   /* this call's forwarded identity, or NULL */

    /* for cfg.call_done / call_finished */
    int64_t started_ns;        /* dispatched (mono_ns) */
    int64_t handler_ns;        /* time inside the method's callbacks */
    bool handler_ran;
    bool call_recorded;
    bool deferred;             /* complete unary request waiting for GW_TX_BUDGET */
    gw_held_call *held;        /* the handler answers later (gw_call_hold) */

    /* the response body: 5-byte prefix + body, then trailers */
    uint8_t prefix[GRPC_PREFIX_LEN];
    uint8_t *body;
    size_t body_len, sent;
    bool body_secret;          /* cleanse before free (provider credentials) */
    size_t tx_charge;          /* what this answer adds to conn->tx_pending */

    /* streaming calls (m->stream) */
    void *bs_state;
    bool bs_opened;
    bool bs_headers;           /* response HEADERS submitted: messages follow */
    bool bs_end;               /* trailers follow the queued messages */
    int bs_status;
    char *bs_msg;              /* their grpc-message (malloc'd), or NULL */
    struct gw_out_msg *oq_head, *oq_tail;   /* queued messages, prefix included */
};

typedef struct gw_out_msg {
    struct gw_out_msg *next;
    size_t len, off;
    uint8_t data[];
} gw_out_msg;

/* ---- helpers ------------------------------------------------------------ */

/* nghttp2_nv takes non-const pointers but copies what they point to
 * (no NGHTTP2_NV_FLAG_NO_COPY_*), so constant strings are fine. */
static uint8_t *nvp(const char *s)
{
    return (uint8_t *)(uintptr_t)s;
}
#define NV(n, v) {nvp(n), nvp(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE}

/* Free a response body, wiping it first when it carries secrets. */
static void free_body(uint8_t *body, size_t len, bool secret)
{
    if (body != NULL && secret) OPENSSL_cleanse(body, len);
    free(body);
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Account time spent in a method callback started at t0. */
static void handler_time(gw_stream *st, int64_t t0)
{
    st->handler_ns += mono_ns() - t0;
    st->handler_ran = true;
}

/* Report a dispatched call's outcome once (the first answer, or CANCELLED
 * when the stream dies unanswered). */
static void call_record(gw_conn *c, gw_stream *st, int status)
{
    const gw_server *s = c->w->s;
    if (st->m == NULL || st->call_recorded) return;
    st->call_recorded = true;
    if (s->cfg.call_done != NULL)
        s->cfg.call_done(s->cfg.app, (size_t)(st->m - s->cfg.methods), (enum gw_status)status,
                         st->handler_ns, st->handler_ran);
    if (s->cfg.call_finished != NULL)
        s->cfg.call_finished(s->cfg.app, (size_t)(st->m - s->cfg.methods), (enum gw_status)status,
                             mono_ns() - st->started_ns);
}

static void stream_end(gw_conn *c, gw_stream *st, int status, const char *msg);

static gw_stream *stream_of(gw_conn *c, int32_t id)
{
    gw_stream *st = nghttp2_session_get_stream_user_data(c->h2, id);
    if (st != NULL) TSR_ASSERT(st->conn == c && st->id == id);
    return st;
}

static void deliver_stream(gw_conn *c, gw_stream *st, const uint8_t *msg, size_t len);

static void stream_free(gw_conn *c, gw_stream *st)
{
    if (st->cs_opened && st->m != NULL && st->m->client_stream != NULL &&
        st->m->client_stream->close != NULL)
        st->m->client_stream->close(st->cs_state);
    st->cs_opened = false;
    if (st->bs_opened && st->m->stream->close != NULL) st->m->stream->close(st->bs_state);
    st->bs_opened = false;
    while (st->oq_head != NULL) {
        gw_out_msg *q = st->oq_head;
        st->oq_head = q->next;
        free(q);
    }
    free(st->bs_msg);
    call_record(c, st, GW_STATUS_CANCELLED);
    if (st->held != NULL) {    /* its answer, when it comes, is dropped */
        TSR_ASSERT(st->held->st == st);
        st->held->st = NULL;
        st->held = NULL;
    }
    free(st->fwd_value);
    if (st->fwd_principal != NULL) {
        OPENSSL_cleanse(st->fwd_principal, sizeof *st->fwd_principal);
        free(st->fwd_principal);
    }
    free(st->unary_msg);
    grpc_deframer_refund(&c->rx_budget, st->unary_charge);
    grpc_deframer_free(&st->df);
    TSR_ASSERT(c->tx_pending >= st->tx_charge);
    c->tx_pending -= st->tx_charge;
    free_body(st->body, st->body_len, st->body_secret);
    if (st->prev != NULL) st->prev->next = st->next;
    else c->streams = st->next;
    if (st->next != NULL) st->next->prev = st->prev;
    free(st);
}

static void set_kill(gw_conn *c, const char *why)
{
    if (c->kill) return;
    c->kill = true;
    snprintf(c->kill_reason, sizeof c->kill_reason, "%s", why);
}

/* What our answers say we accept (grpc-accept-encoding). */
#define GW_ACCEPT_ENCODING "identity,gzip"

/* ---- streaming answers (gw_method.stream) --------------------------------- */

/* DATA of a streaming answer: the queued messages in order; then, once the
 * call has ended, the trailers. Deferred while the queue is empty. */
static ssize_t stream_read_cb(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
                              size_t length, uint32_t *data_flags, nghttp2_data_source *source,
                              void *user_data)
{
    (void)user_data;
    gw_stream *st = source->ptr;
    TSR_ASSERT(st != NULL && st->id == stream_id);
    gw_conn *c = st->conn;
    size_t n = 0;
    while (n < length && st->oq_head != NULL) {
        gw_out_msg *q = st->oq_head;
        size_t chunk = q->len - q->off;
        if (chunk > length - n) chunk = length - n;
        memcpy(buf + n, q->data + q->off, chunk);
        q->off += chunk;
        n += chunk;
        TSR_ASSERT(st->tx_charge >= chunk && c->tx_pending >= chunk);
        st->tx_charge -= chunk;
        c->tx_pending -= chunk;
        if (q->off == q->len) {
            st->oq_head = q->next;
            if (st->oq_head == NULL) st->oq_tail = NULL;
            free(q);
        }
    }
    if (st->oq_head == NULL && st->bs_end) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        char enc[GRPC_MESSAGE_ENCODED_MAX];
        const char *m = st->bs_msg != NULL ? st->bs_msg : "";
        size_t enclen = grpc_percent_encode(m, strnlen(m, GRPC_MESSAGE_MAX), enc, sizeof enc);
        nghttp2_nv trailers[2] = {NV("grpc-status", grpc_status_code_text(st->bs_status))};
        size_t nt = 1;
        if (enclen > 0) trailers[nt++] = (nghttp2_nv)NV("grpc-message", enc);
        if (nghttp2_submit_trailer(session, stream_id, trailers, nt) != 0)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        return (ssize_t)n;
    }
    return n > 0 ? (ssize_t)n : NGHTTP2_ERR_DEFERRED;
}

/* The response HEADERS of an answer with messages, read by `read` (0 or
 * nghttp2's error). */
static int submit_with_body(gw_conn *c, gw_stream *st, nghttp2_data_source_read_callback read)
{
    nghttp2_nv nva[] = {
        NV(":status", "200"),
        NV("content-type", "application/grpc"),
        NV("grpc-accept-encoding", GW_ACCEPT_ENCODING),
    };
    nghttp2_data_provider prd;
    prd.source.ptr = st;
    prd.read_callback = read;
    return nghttp2_submit_response(c->h2, st->id, nva, sizeof nva / sizeof nva[0], &prd);
}

/* The response HEADERS of a streaming answer, once. */
static int stream_start(gw_conn *c, gw_stream *st)
{
    if (st->bs_headers) return 0;
    if (submit_with_body(c, st, stream_read_cb) != 0) return -1;
    st->bs_headers = true;
    return 0;
}

/* End a streaming answer: its trailers follow what is queued. */
static void stream_end(gw_conn *c, gw_stream *st, int status, const char *msg)
{
    if (st->phase == GW_PHASE_RESPONDED) return;
    st->phase = GW_PHASE_RESPONDED;
    call_record(c, st, status);
    st->bs_end = true;
    st->bs_status = status;
    st->bs_msg = msg != NULL && msg[0] != '\0' ? strndup(msg, GRPC_MESSAGE_MAX - 1) : NULL;
    if (!st->bs_headers && stream_start(c, st) != 0) {
        (void)nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    (void)nghttp2_session_resume_data(c->h2, st->id);
}

int gw_stream_send(const gw_call_ctx *ctx, uint8_t *body, size_t len)
{
    gw_stream *st = ctx != NULL ? ctx->transport : NULL;
    int rc = -1;
    gw_out_msg *q = NULL;
    if (st == NULL || st->m == NULL || st->m->stream == NULL || st->phase != GW_PHASE_ACTIVE)
        goto out;
    gw_conn *c = st->conn;
    /* At most one budget of unsent messages per call: a caller that does
     * not read is not queued for without bound. */
    if (st->tx_charge + GRPC_PREFIX_LEN + len > GW_TX_BUDGET(c->w->s)) goto out;
    q = malloc(sizeof *q + GRPC_PREFIX_LEN + len);
    if (q == NULL || grpc_frame_prefix(len, q->data) != 0) goto out;
    if (len > 0) memcpy(q->data + GRPC_PREFIX_LEN, body, len);
    q->len = GRPC_PREFIX_LEN + len;
    q->off = 0;
    q->next = NULL;
    if (stream_start(c, st) != 0) goto out;
    if (st->oq_tail != NULL) st->oq_tail->next = q;
    else st->oq_head = q;
    st->oq_tail = q;
    st->tx_charge += q->len;
    c->tx_pending += q->len;
    q = NULL;
    (void)nghttp2_session_resume_data(c->h2, st->id);
    rc = 0;
out:
    free(q);
    free(body);
    return rc;
}

/* Trailers-only answer (HEADERS + END_STREAM). http_status is "200" for
 * every gRPC-level error. */
static void respond_error(gw_conn *c, gw_stream *st, const char *http_status, int status,
                          const char *msg, bool accept_identity)
{
    if (st->phase == GW_PHASE_RESPONDED) return;
    if (status <= GW_STATUS_OK || status > GW_STATUS_UNAUTHENTICATED) status = GW_STATUS_UNKNOWN;
    if (st->bs_headers) {   /* messages went out: the status goes in the trailers */
        stream_end(c, st, status, msg);
        return;
    }
    st->phase = GW_PHASE_RESPONDED;
    call_record(c, st, status);
    char enc[GRPC_MESSAGE_ENCODED_MAX];
    size_t enclen = grpc_percent_encode(msg, strnlen(msg, GRPC_MESSAGE_MAX), enc, sizeof enc);
    nghttp2_nv nva[5] = {
        NV(":status", http_status),
        NV("content-type", "application/grpc"),
        NV("grpc-status", grpc_status_code_text(status)),
    };
    size_t n = 3;
    if (enclen > 0) nva[n++] = (nghttp2_nv)NV("grpc-message", enc);
    if (accept_identity) nva[n++] = (nghttp2_nv)NV("grpc-accept-encoding", GW_ACCEPT_ENCODING);
    int rv = nghttp2_submit_response(c->h2, st->id, nva, n, NULL);
    if (rv != 0) (void)nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, st->id,
                                                 NGHTTP2_INTERNAL_ERROR);
}

static void respond_status(gw_conn *c, gw_stream *st, int status, const char *msg)
{
    respond_error(c, st, "200", status, msg, false);
}

static ssize_t body_read_cb(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
                            size_t length, uint32_t *data_flags, nghttp2_data_source *source,
                            void *user_data)
{
    (void)user_data;
    gw_stream *st = source->ptr;
    TSR_ASSERT(st != NULL && st->id == stream_id);
    size_t total = GRPC_PREFIX_LEN + st->body_len;
    size_t n = 0;
    while (n < length && st->sent < total) {
        size_t chunk;
        if (st->sent < GRPC_PREFIX_LEN) {
            chunk = GRPC_PREFIX_LEN - st->sent;
            if (chunk > length - n) chunk = length - n;
            memcpy(buf + n, st->prefix + st->sent, chunk);
        } else {
            size_t at = st->sent - GRPC_PREFIX_LEN;
            chunk = st->body_len - at;
            if (chunk > length - n) chunk = length - n;
            memcpy(buf + n, st->body + at, chunk);
        }
        n += chunk;
        st->sent += chunk;
    }
    if (st->sent == total) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        nghttp2_nv trailers[] = {NV("grpc-status", "0")};
        if (nghttp2_submit_trailer(session, stream_id, trailers, 1) != 0)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return (ssize_t)n;
}

/* OK answer: takes ownership of body. */
static void respond_ok(gw_conn *c, gw_stream *st, uint8_t *body, size_t len, bool secret)
{
    if (grpc_frame_prefix(len, st->prefix) != 0) {
        free_body(body, len, secret);
        respond_status(c, st, GW_STATUS_INTERNAL, "response message too large");
        return;
    }
    st->phase = GW_PHASE_RESPONDED;
    call_record(c, st, GW_STATUS_OK);
    st->body = body;
    st->body_len = len;
    st->body_secret = secret;
    st->sent = 0;
    st->tx_charge = GRPC_PREFIX_LEN + len;
    c->tx_pending += st->tx_charge;
    if (submit_with_body(c, st, body_read_cb) != 0)
        (void)nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
}

static bool deadline_passed(const gw_stream *st, int64_t now_ms)
{
    return st->ctx.deadline_ms != 0 && now_ms >= st->ctx.deadline_ms;
}

/* The handler's answer, unless the deadline passed meanwhile. */
static void finish_call(gw_conn *c, gw_stream *st, gw_response *r)
{
    if (deadline_passed(st, tsr_monotonic_ms())) {
        free_body(r->body, r->body_len, r->body_is_secret);
        respond_status(c, st, GW_STATUS_DEADLINE_EXCEEDED, "deadline exceeded");
        return;
    }
    if (r->status == GW_STATUS_OK) {
        if (r->body == NULL && r->body_len != 0) {  /* handler bug: fail closed */
            respond_status(c, st, GW_STATUS_INTERNAL, "handler returned no body");
            return;
        }
        respond_ok(c, st, r->body, r->body_len, r->body_is_secret);
        return;
    }
    free_body(r->body, r->body_len, r->body_is_secret);
    r->message[sizeof r->message - 1] = '\0';
    respond_status(c, st, (int)r->status, r->message);
}

static void response_init(gw_response *r)
{
    memset(r, 0, sizeof *r);
    r->status = GW_STATUS_OK;
}

static const gw_method *lookup(const gw_server *s, const gw_stream *st)
{
    if (st->path_long) return NULL;
    for (size_t i = 0; i < s->cfg.n_methods; i++) {
        const gw_method *m = &s->cfg.methods[i];
        if (strlen(m->path) == st->path_len && memcmp(m->path, st->path, st->path_len) == 0)
            return m;
    }
    return NULL;
}

/* ---- request flow ------------------------------------------------------- */

void gw_h2_credentials_ended(gw_conn *c, const char *why)
{
    if (c->kill) return;
    /* A clear answer to every open call (a gRPC client would retry an
     * UNAVAILABLE from a closed connection, and be refused anyway). */
    for (gw_stream *st = c->streams; st != NULL; st = st->next)
        if (st->phase != GW_PHASE_RESPONDED) respond_status(c, st, GW_STATUS_UNAUTHENTICATED, why);
    char who[200], text[300];
    snprintf(text, sizeof text, "credentials no longer valid: %s (%s)", why,
             gw_conn_principal_text(c, who, sizeof who));
    set_kill(c, text);
}

/* The connection's own principal, again; false (and every call answered,
 * the connection closing) when its credentials ended. */
static bool conn_current(gw_conn *c)
{
    const gw_server *s = c->w->s;
    const char *why = NULL;
    if (s->cfg.still_valid(s->cfg.app, &c->principal, tsr_now_unix(), &why)) return true;
    gw_h2_credentials_ended(c, why != NULL ? why : "credentials no longer valid");
    return false;
}

/* The dispatcher's check, immediately before a method callback runs: the
 * call's principal and the method's rule (cfg.authorize), and for a
 * forwarded call the connection that carried it. False when the call has
 * been answered instead; the connection is closed too when its own
 * principal is no longer valid. */
static bool call_admitted(gw_conn *c, gw_stream *st)
{
    gw_server *s = c->w->s;
    if (c->kill) return false;
    /* A forwarded call also needs the connection that carries it. */
    if (st->ctx.principal != &c->principal && !conn_current(c)) return false;
    gw_response r;
    response_init(&r);
    int rc = s->cfg.authorize(&st->ctx, st->m, &r);
    free_body(r.body, r.body_len, r.body_is_secret);
    if (rc == 0) return true;
    /* The connection's own credentials ended: every call on it ends. */
    if (st->ctx.principal == &c->principal && !conn_current(c)) return false;
    r.message[sizeof r.message - 1] = '\0';
    if (r.status == GW_STATUS_OK) gw_response_fail(&r, GW_STATUS_INTERNAL, "call refused");
    respond_status(c, st, (int)r.status, r.message);
    return false;
}

/* The request carries the proxy header: the application decides whose call
 * this is. False when the stream has been answered (internal failure). */
static bool forward(gw_conn *c, gw_stream *st)
{
    gw_server *s = c->w->s;
    gw_principal *p = calloc(1, sizeof *p);
    if (p == NULL) {
        respond_status(c, st, GW_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return false;
    }
    static const uint8_t empty[1];
    int rc = s->cfg.authenticate_forwarded(&st->ctx, st->fwd_value != NULL ? st->fwd_value : empty,
                                           st->fwd_len, st->fwd_count, p);
    free(st->fwd_value);
    st->fwd_value = NULL;
    if (rc == 0) {
        st->fwd_principal = p;
        st->ctx.principal = p;
        return true;
    }
    OPENSSL_cleanse(p, sizeof *p);
    free(p);
    if (rc == 1) {
        char who[200];
        gw_conn_log(c, "%s: header %s ignored: %s is not a trusted proxy", st->m->path,
                    s->cfg.forward_header, gw_conn_principal_text(c, who, sizeof who));
        return true;
    }
    gw_conn_log(c, "%s: forwarded certificate: %s", st->m->path, tsr_errmsg());
    respond_status(c, st, GW_STATUS_INTERNAL, "internal error during authentication");
    return false;
}

static void dispatch(gw_conn *c, gw_stream *st)
{
    gw_server *s = c->w->s;
    int64_t now = tsr_monotonic_ms();

    /* Identity first: a revoked or expired certificate starts no call. */
    if (!conn_current(c)) return;
    st->ctx.principal = &c->principal;
    st->ctx.app = s->cfg.app;
    st->ctx.worker = c->w->state;
    st->ctx.peer_addr = c->peer;
    st->ctx.transport = st;
    st->ctx.method = NULL;
    st->ctx.deadline_ms = 0;

    /* As grpc does: non-POST -> 405, non-gRPC content-type -> 415, each with
     * a grpc-status so that gRPC clients see a status too. */
    if (!st->method_post) {
        respond_error(c, st, "405", GW_STATUS_INTERNAL, "gRPC requires method POST", false);
        return;
    }
    if (!st->ct_ok) {
        respond_error(c, st, "415", GW_STATUS_INTERNAL, "invalid gRPC request content-type",
                      false);
        return;
    }
    const gw_method *m = lookup(s, st);
    if (m == NULL) {
        char msg[GRPC_MESSAGE_MAX];
        snprintf(msg, sizeof msg, "unknown method %.*s%s", (int)st->path_len, st->path,
                 st->path_long ? "..." : "");
        respond_status(c, st, GW_STATUS_UNIMPLEMENTED, msg);
        return;
    }
    if (st->enc_bad) {
        respond_error(c, st, "200", GW_STATUS_UNIMPLEMENTED,
                      "compression not supported (grpc-accept-encoding: identity,gzip)", true);
        return;
    }
    st->df.allow_compressed = st->enc_gzip;
    if (st->timeout_bad) {
        respond_status(c, st, GW_STATUS_INTERNAL, "invalid grpc-timeout");
        return;
    }
    if (st->timeout_seen) {
        st->ctx.deadline_ms = st->timeout_ms > INT64_MAX - now ? INT64_MAX : now + st->timeout_ms;
        if (st->ctx.deadline_ms == 0) st->ctx.deadline_ms = 1;
        if (deadline_passed(st, now)) {
            respond_status(c, st, GW_STATUS_DEADLINE_EXCEEDED, "deadline exceeded");
            return;
        }
    }
    st->m = m;
    st->ctx.method = m->path;
    st->started_ns = mono_ns();
    if (s->cfg.call_started != NULL) s->cfg.call_started(s->cfg.app, (size_t)(m - s->cfg.methods));
    if (st->fwd_count > 0 && !forward(c, st)) return;
    st->phase = GW_PHASE_ACTIVE;
    if (m->client_stream != NULL) {
        if (!call_admitted(c, st)) return;
        int64_t t0 = mono_ns();
        st->cs_state = m->client_stream->open != NULL ? m->client_stream->open(&st->ctx) : NULL;
        handler_time(st, t0);
        st->cs_opened = true;
    }
    if (m->stream != NULL) {
        if (!call_admitted(c, st)) return;
        int64_t t0 = mono_ns();
        st->bs_state = m->stream->open != NULL ? m->stream->open(&st->ctx) : NULL;
        handler_time(st, t0);
        st->bs_opened = true;
    }
}

/* A streaming call's callback result: -1 ends the call with resp's status. */
static void stream_result(gw_conn *c, gw_stream *st, int rc, gw_response *r)
{
    free_body(r->body, r->body_len, r->body_is_secret);
    r->body = NULL;
    if (rc == 0 || st->phase != GW_PHASE_ACTIVE) return;
    r->message[sizeof r->message - 1] = '\0';
    if (r->status == GW_STATUS_OK) stream_end(c, st, GW_STATUS_OK, r->message);
    else respond_status(c, st, (int)r->status, r->message);
}

/* One request message. `owned` (with `charge` on the receive budget) is an
 * inflated message this takes over; NULL: msg is the deframer's. */
static void deliver(gw_conn *c, gw_stream *st, const uint8_t *msg, size_t len, uint8_t *owned,
                    size_t charge)
{
    if (st->m->unary != NULL) {
        /* Unary: exactly one request message. Like grpc-core: a second message
         * is UNIMPLEMENTED (the method is not a streaming one), a missing one
         * (see end_of_request) is INTERNAL. */
        if (st->n_msgs > 0) {
            free(owned);
            grpc_deframer_refund(&c->rx_budget, charge);
            respond_status(c, st, GW_STATUS_UNIMPLEMENTED,
                           "more than one request message for a unary method");
            return;
        }
        st->n_msgs = 1;
        st->unary_len = len;
        if (owned != NULL) {
            st->unary_msg = owned;
            st->unary_charge = charge;
        } else {
            st->unary_msg = grpc_deframer_take(&st->df, &st->unary_charge);
        }
        return;
    }
    /* Streams: the callback reads the message in place. */
    deliver_stream(c, st, msg, len);
    free(owned);
    grpc_deframer_refund(&c->rx_budget, charge);
}

static void deliver_stream(gw_conn *c, gw_stream *st, const uint8_t *msg, size_t len)
{
    st->n_msgs++;
    if (deadline_passed(st, tsr_monotonic_ms())) {
        respond_status(c, st, GW_STATUS_DEADLINE_EXCEEDED, "deadline exceeded");
        return;
    }
    if (!call_admitted(c, st)) return;
    gw_response r;
    response_init(&r);
    int64_t t0 = mono_ns();
    if (st->m->stream != NULL) {
        int src = st->m->stream->message(st->bs_state, &st->ctx, msg, len, &r);
        handler_time(st, t0);
        stream_result(c, st, src, &r);
        return;
    }
    int rc = st->m->client_stream->message(st->cs_state, &st->ctx, msg, len, &r);
    handler_time(st, t0);
    free_body(r.body, r.body_len, r.body_is_secret);
    if (rc != 0) {
        int status = r.status == GW_STATUS_OK ? GW_STATUS_INTERNAL : (int)r.status;
        r.message[sizeof r.message - 1] = '\0';
        respond_status(c, st, status, r.message[0] != '\0' ? r.message : "stream aborted");
    }
}

/* The unary handler on the one request message, then its answer. */
static void run_unary(gw_conn *c, gw_stream *st)
{
    if (!call_admitted(c, st)) return;
    gw_response r;
    response_init(&r);
    static const uint8_t none[1];
    int64_t t0 = mono_ns();
    st->m->unary(&st->ctx, st->unary_msg != NULL ? st->unary_msg : none, st->unary_len, &r);
    handler_time(st, t0);
    free(st->unary_msg);
    st->unary_msg = NULL;
    grpc_deframer_refund(&c->rx_budget, st->unary_charge);
    st->unary_charge = 0;
    if (st->held != NULL) {    /* the answer comes through gw_held_call_complete */
        free_body(r.body, r.body_len, r.body_is_secret);
        return;
    }
    finish_call(c, st, &r);
}

gw_held_call *gw_call_hold(const gw_call_ctx *ctx)
{
    if (ctx == NULL || ctx->transport == NULL) return NULL;
    gw_stream *st = ctx->transport;
    TSR_ASSERT(&st->ctx == ctx && st->conn != NULL);
    gw_loop *w = st->conn->w;
    /* Unary calls only, once, while the handler runs on the worker. */
    if (w->held_efd < 0 || st->held != NULL || st->m == NULL || st->m->unary == NULL ||
        st->phase != GW_PHASE_ACTIVE)
        return NULL;
    gw_held_call *h = calloc(1, sizeof *h);
    if (h == NULL) return NULL;
    h->w = w;
    h->st = st;
    st->held = h;
    w->n_held++;
    return h;
}

gw_conn *gw_h2_held_finish(gw_held_call *h)
{
    gw_loop *w = h->w;
    TSR_ASSERT(w->n_held > 0);
    w->n_held--;
    gw_stream *st = h->st;
    gw_conn *c = NULL;
    if (st != NULL) {
        /* stream_free detaches: a stream still here lives on an open connection. */
        TSR_ASSERT(st->held == h);
        st->held = NULL;
        c = st->conn;
        TSR_ASSERT(c->state == GW_CONN_OPEN);
        /* Admitted again: the caller's credentials may have ended while
         * its answer was being made durable. */
        if (st->phase == GW_PHASE_ACTIVE && call_admitted(c, st)) {
            finish_call(c, st, &h->resp);   /* takes the body */
            h->resp.body = NULL;
        }
    }
    free_body(h->resp.body, h->resp.body_len, h->resp.body_is_secret);
    free(h);
    return c;
}

static void end_of_request(gw_conn *c, gw_stream *st)
{
    st->remote_closed = true;
    if (st->phase != GW_PHASE_ACTIVE || c->kill) return;
    if (grpc_deframer_finish(&st->df) != GW_STATUS_OK) {
        respond_status(c, st, (int)st->df.err, st->df.errmsg);
        return;
    }
    if (deadline_passed(st, tsr_monotonic_ms())) {
        respond_status(c, st, GW_STATUS_DEADLINE_EXCEEDED, "deadline exceeded");
        return;
    }
    if (st->m->unary != NULL) {
        if (st->n_msgs == 0) {
            respond_status(c, st, GW_STATUS_INTERNAL, "missing request message");
            return;
        }
        /* Too many unsent answers on this connection: the call waits. */
        if (c->tx_pending >= GW_TX_BUDGET(c->w->s)) {
            st->deferred = true;
            return;
        }
        run_unary(c, st);
        return;
    }
    if (!call_admitted(c, st)) return;
    gw_response r;
    response_init(&r);
    int64_t t0 = mono_ns();
    if (st->m->stream != NULL) {
        /* 1: the call stays open (a server stream goes on sending). */
        int rc = st->m->stream->finish != NULL ? st->m->stream->finish(st->bs_state, &st->ctx, &r)
                                               : 0;
        handler_time(st, t0);
        stream_result(c, st, rc == 1 ? 0 : -1, &r);
        return;
    }
    st->m->client_stream->finish(st->cs_state, &st->ctx, &r);
    handler_time(st, t0);
    finish_call(c, st, &r);
}

/* Run waiting unary calls, oldest first, while the connection's unsent
 * answers are under budget. Called outside nghttp2 callbacks: after input
 * (a reading peer sends WINDOW_UPDATEs) and at every tick. */
static void run_deferred(gw_conn *c)
{
    gw_server *s = c->w->s;
    gw_stream *st = c->streams;
    if (st == NULL || c->kill) return;
    while (st->next != NULL) st = st->next;    /* streams are pushed at the head */
    bool checked = false;
    for (; st != NULL && !c->kill; st = st->prev) {
        if (!st->deferred || st->phase != GW_PHASE_ACTIVE) continue;
        if (c->tx_pending >= GW_TX_BUDGET(s)) return;
        /* It may have waited: the identity is checked again before it runs. */
        if (!checked && !conn_current(c)) return;
        checked = true;
        st->deferred = false;
        if (deadline_passed(st, tsr_monotonic_ms())) {
            respond_status(c, st, GW_STATUS_DEADLINE_EXCEEDED, "deadline exceeded");
            continue;
        }
        run_unary(c, st);
    }
}

/* ---- nghttp2 callbacks -------------------------------------------------- */

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame,
                            void *user_data)
{
    gw_conn *c = user_data;
    (void)session;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    gw_stream *st = calloc(1, sizeof *st);
    if (st == NULL) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    st->conn = c;
    st->id = frame->hd.stream_id;
    grpc_deframer_init(&st->df, c->w->s->cfg.max_message_bytes, &c->rx_budget);
    if (nghttp2_session_set_stream_user_data(c->h2, st->id, st) != 0) {
        free(st);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    st->next = c->streams;
    if (c->streams != NULL) c->streams->prev = st;
    c->streams = st;
    return 0;
}

static bool name_is(const uint8_t *name, size_t len, const char *lit)
{
    size_t n = strlen(lit);
    return len == n && memcmp(name, lit, n) == 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data)
{
    gw_conn *c = user_data;
    (void)session;
    (void)flags;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    gw_stream *st = stream_of(c, frame->hd.stream_id);
    if (st == NULL) return 0;
    /* RFC 9113 §6.5.2 size accounting; past the limit the stream is reset. */
    st->hdr_bytes += namelen + valuelen + 32;
    if (st->hdr_bytes > GW_H2_MAX_HEADER_LIST) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;

    if (name_is(name, namelen, ":method")) {
        st->method_post = valuelen == 4 && memcmp(value, "POST", 4) == 0;
    } else if (name_is(name, namelen, ":path")) {
        size_t n = valuelen;
        if (n > GW_PATH_MAX) {
            n = GW_PATH_MAX;
            st->path_long = true;
        }
        memcpy(st->path, value, n);
        st->path[n] = '\0';
        st->path_len = n;
        if (memchr(value, '\0', valuelen) != NULL) st->path_long = true; /* matches nothing */
    } else if (name_is(name, namelen, "content-type")) {
        /* A repeated content-type is not a gRPC request. */
        st->ct_ok = !st->ct_seen && grpc_content_type_ok((const char *)value, valuelen);
        st->ct_seen = true;
    } else if (name_is(name, namelen, "grpc-encoding")) {
        if (valuelen == 4 && memcmp(value, "gzip", 4) == 0) st->enc_gzip = true;
        else if (!(valuelen == 8 && memcmp(value, "identity", 8) == 0)) st->enc_bad = true;
    } else if (c->w->s->cfg.forward_header != NULL &&
               name_is(name, namelen, c->w->s->cfg.forward_header)) {
        /* Kept whole (bounded by the header-list limit above) for dispatch. */
        if (st->fwd_count++ == 0) {
            st->fwd_value = malloc(valuelen > 0 ? valuelen : 1);
            if (st->fwd_value == NULL) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
            memcpy(st->fwd_value, value, valuelen);
            st->fwd_len = valuelen;
        }
    } else if (name_is(name, namelen, "grpc-timeout")) {
        if (st->timeout_seen ||
            grpc_timeout_parse((const char *)value, valuelen, &st->timeout_ms) != 0)
            st->timeout_bad = true;
        st->timeout_seen = true;
    }
    return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    gw_conn *c = user_data;
    (void)session;
    if (c->kill) return 0;
    gw_stream *st;
    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
        st = stream_of(c, frame->hd.stream_id);
        if (st == NULL) return 0;
        if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) dispatch(c, st);
        if (!c->kill && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) end_of_request(c, st);
        break;
    case NGHTTP2_DATA:
        st = stream_of(c, frame->hd.stream_id);
        if (st == NULL) return 0;
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) end_of_request(c, st);
        break;
    default:
        break;
    }
    return 0;
}

/* A gzip message: inflated within the message limit, the result charged
 * to the connection's receive budget, then delivered. False when the
 * stream has been answered instead. */
static bool inflate_and_deliver(gw_conn *c, gw_stream *st, const uint8_t *msg, size_t len)
{
    uint8_t *plain = NULL;
    size_t plen = 0;
    char why[160];
    enum gw_status e = gw_gzip_inflate(msg, len, st->df.max_message, &plain, &plen, why,
                                       sizeof why);
    if (e != GW_STATUS_OK) {
        respond_status(c, st, (int)e, why);
        return false;
    }
    if (plen > c->rx_budget) {
        free(plain);
        respond_status(c, st, GW_STATUS_RESOURCE_EXHAUSTED,
                       "too many decompressed request bytes buffered on this connection");
        return false;
    }
    if (plain == NULL && (plain = malloc(1)) == NULL) {   /* an empty message */
        respond_status(c, st, GW_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return false;
    }
    c->rx_budget -= plen;
    deliver(c, st, plain, plen, plain, plen);
    return st->phase == GW_PHASE_ACTIVE;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                         const uint8_t *data, size_t len, void *user_data)
{
    gw_conn *c = user_data;
    (void)session;
    (void)flags;
    if (c->kill) return 0;
    gw_stream *st = stream_of(c, stream_id);
    if (st == NULL) return 0;
    size_t off = 0;
    while (off < len && st->phase == GW_PHASE_ACTIVE && !c->kill) {
        size_t used = 0, mlen = 0;
        const uint8_t *msg = NULL;
        enum grpc_deframe_result r = grpc_deframer_feed(&st->df, data + off, len - off, &used, &msg,
                                                    &mlen);
        off += used;
        if (r == GRPC_DEFRAME_MORE) break;
        if (r == GRPC_DEFRAME_ERROR) {
            respond_error(c, st, "200", (int)st->df.err, st->df.errmsg,
                          st->df.err == GW_STATUS_UNIMPLEMENTED);
            break;
        }
        if (st->df.compressed) {
            if (!inflate_and_deliver(c, st, msg, mlen)) break;
            continue;
        }
        deliver(c, st, msg, mlen, NULL, 0);
    }
    return 0;
}

/* Our END_STREAM left while the client still sends: tell it to stop. Done
 * here (not at submit time) so that RST_STREAM cannot overtake the
 * response's DATA or trailers. */
static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    gw_conn *c = user_data;
    if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
        !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    gw_stream *st = stream_of(c, frame->hd.stream_id);
    if (st != NULL && !st->remote_closed)
        (void)nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *user_data)
{
    gw_conn *c = user_data;
    (void)session;
    (void)error_code;
    gw_stream *st = stream_of(c, stream_id);
    if (st == NULL) return 0;
    (void)nghttp2_session_set_stream_user_data(c->h2, stream_id, NULL);
    stream_free(c, st);
    return 0;
}

/* nghttp2's reason for a connection or stream error, logged once per
 * connection (a misbehaving peer must not flood the log). */
static int on_error(nghttp2_session *session, int lib_error_code, const char *msg, size_t len,
                    void *user_data)
{
    gw_conn *c = user_data;
    (void)session;
    (void)lib_error_code;
    if (!c->h2_error_logged) {
        c->h2_error_logged = true;
        gw_conn_log(c, "HTTP/2: %.*s", (int)(len < 200 ? len : 200), msg);
    }
    return 0;
}

/* ---- transport interface ------------------------------------------------ */

int gw_h2_setup(gw_server *s)
{
    nghttp2_session_callbacks *cb = NULL;
    nghttp2_option *opt = NULL;
    TSR_ENSURE(nghttp2_session_callbacks_new(&cb) == 0, TSR_E_INTERNAL, "out of memory");
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_error_callback2(cb, on_error);
    if (nghttp2_option_new(&opt) != 0) {
        nghttp2_session_callbacks_del(cb);
        return TSR_FAIL(TSR_E_INTERNAL, "out of memory");
    }
    nghttp2_option_set_no_auto_window_update(opt, 0);
    nghttp2_option_set_max_settings(opt, GW_H2_MAX_SETTINGS);
    nghttp2_option_set_max_outbound_ack(opt, GW_H2_MAX_OUTBOUND_ACK);
    nghttp2_option_set_max_continuations(opt, GW_H2_MAX_CONTINUATIONS);
    nghttp2_option_set_stream_reset_rate_limit(opt, GW_H2_RST_BURST, GW_H2_RST_RATE);
    nghttp2_option_set_max_deflate_dynamic_table_size(opt, GW_H2_DEFLATE_TABLE);
    /* We keep no priority tree: closed streams need not be retained. */
    nghttp2_option_set_no_closed_streams(opt, 1);
    s->h2_callbacks = cb;
    s->h2_option = opt;
    return 0;
}

void gw_h2_teardown(gw_server *s)
{
    if (s->h2_callbacks != NULL) nghttp2_session_callbacks_del(s->h2_callbacks);
    if (s->h2_option != NULL) nghttp2_option_del(s->h2_option);
    s->h2_callbacks = NULL;
    s->h2_option = NULL;
}

int gw_h2_session_new(gw_conn *c)
{
    gw_server *s = c->w->s;
    nghttp2_mem mem = gw_h2_mem(c);   /* gw_h2_idle_mem.c */
    c->h2_creating = true;
    int rv = nghttp2_session_server_new3(&c->h2, s->h2_callbacks, c, s->h2_option, &mem);
    c->h2_creating = false;
    TSR_ENSURE(rv == 0, TSR_E_INTERNAL, "nghttp2 session: out of memory");
    c->rx_budget = s->conn_rx_budget;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, s->cfg.max_concurrent_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, GW_H2_INITIAL_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, GW_H2_MAX_HEADER_LIST},
        {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
    };
    TSR_ENSURE(nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) == 0,
               TSR_E_INTERNAL, "nghttp2: cannot submit SETTINGS");
    TSR_ENSURE(nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0,
                                                     GW_H2_CONN_WINDOW) == 0,
               TSR_E_INTERNAL, "nghttp2: cannot set the connection window");
    return 0;
}

int gw_h2_recv(gw_conn *c, const uint8_t *data, size_t len)
{
    ssize_t rv = nghttp2_session_mem_recv(c->h2, data, len);
    if (rv < 0) {
        char why[160];
        snprintf(why, sizeof why, "HTTP/2 error: %s", nghttp2_strerror((int)rv));
        /* The peer learns why in our GOAWAY's error code (RFC 9113 §5.4.1). */
        switch ((int)rv) {
        case NGHTTP2_ERR_FLOODED:
        case NGHTTP2_ERR_TOO_MANY_CONTINUATIONS: c->goaway_error = NGHTTP2_ENHANCE_YOUR_CALM; break;
        case NGHTTP2_ERR_NOMEM:
        case NGHTTP2_ERR_CALLBACK_FAILURE: c->goaway_error = NGHTTP2_INTERNAL_ERROR; break;
        default: c->goaway_error = NGHTTP2_PROTOCOL_ERROR; break;
        }
        set_kill(c, why);
        return -1;
    }
    run_deferred(c);
    return 0;
}

void gw_h2_tick(gw_conn *c, int64_t now_ms, int64_t now_unix)
{
    const gw_server *s = c->w->s;
    const char *why = NULL;
    for (gw_stream *st = c->streams; st != NULL; st = st->next) {
        if (st->phase != GW_PHASE_ACTIVE) continue;
        if (deadline_passed(st, now_ms))
            respond_status(c, st, GW_STATUS_DEADLINE_EXCEEDED, "deadline exceeded");
        else if (st->fwd_principal != NULL &&
                 !s->cfg.still_valid(s->cfg.app, st->fwd_principal, now_unix, &why)) {
            char msg[GRPC_MESSAGE_MAX];
            snprintf(msg, sizeof msg, "forwarded credentials no longer valid: %s",
                     why != NULL ? why : "expired");
            respond_status(c, st, GW_STATUS_UNAUTHENTICATED, msg);
        } else if (st->bs_opened && st->m->stream->poll != NULL && !c->kill &&
                   call_admitted(c, st)) {
            /* A server stream's next messages, as its caller is now. */
            gw_response r;
            response_init(&r);
            int64_t t0 = mono_ns();
            int rc = st->m->stream->poll(st->bs_state, &st->ctx, &r);
            handler_time(st, t0);
            stream_result(c, st, rc, &r);
        }
    }
    run_deferred(c);
}

void gw_h2_goaway(gw_conn *c, const char *why)
{
    if (c->h2 == NULL) return;
    (void)nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE,
                                nghttp2_session_get_last_proc_stream_id(c->h2), c->goaway_error,
                                (const uint8_t *)why, strlen(why));
}

bool gw_h2_done(gw_conn *c)
{
    return c->h2 != NULL && !nghttp2_session_want_read(c->h2) &&
           !nghttp2_session_want_write(c->h2);
}

bool gw_h2_idle(const gw_conn *c)
{
    return c->streams == NULL;
}

void gw_h2_free(gw_conn *c)
{
    /* nghttp2_session_del does not call on_stream_close: close the calls
     * here, after the session (which points at them) is gone. */
    nghttp2_session_del(c->h2);
    c->h2 = NULL;
    while (c->streams != NULL) stream_free(c, c->streams);
}
