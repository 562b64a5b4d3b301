/* The whole server side of a connection after TLS: raw client bytes into
 * the gateway's HTTP/2 session (gw_h2.c through its test seam gw_h2_pipe,
 * the same code path as a TLS read in gw_conn.c), split into reads of
 * sizes drawn from the input, with every response pulled out as a fast
 * client would. Methods: every real gateway method (the principal is one
 * the guard refuses before any store access, so they answer without a
 * store) plus the health check (allowed anonymously), and test methods that
 * echo (small, large and secret bodies), fail with arbitrary messages and
 * stream.
 *
 * With bit 6 the forwarded-certificate header is on, as for a gateway with
 * proxy.trusted: requests may carry it and the real decision
 * (gw_forward_authenticate, on the fixed test PKI of fuzz_app_get, proxy
 * egress trusted) says whose call it is; its leaf can be re-signed by the
 * test PKI first (fuzz_fwd.h), so a forwarded call runs as the sandbox or
 * user it names. Such a call reaches the guard with the real identity check
 * (gw_authz_dispatch); a real method it would be allowed is answered by the
 * harness instead (there is no store here), the test methods run.
 *
 * Input: [flags][chunk seed]([forward flags] with flags bit 6) then raw
 * HTTP/2 client bytes.
 * flags: bit 0  prepend the client connection preface
 *        bit 1-2 principal: anonymous, unauthenticated, proxy egress, a
 *               caller on the proxy unix socket (local_proxy)
 *        bit 3  still_valid says no (revoked mid-connection)
 *        bit 4  graceful GOAWAY (server stop) before the last read
 *        bit 5  max message 64 bytes instead of 4 MiB
 *        bit 6  forwarded certificates on (a forward flags byte follows)
 * forward flags: bit 0 xfcc in x-forwarded-client-cert (else escaped PEM in
 *        x-client-cert); bit 1 re-sign the forwarded leaf; bit 2 ... adding
 *        the issuing CA to the value
 * Invariants: no crash, leak or UB; the first bytes out are the server's
 * SETTINGS frame; everything is freed when the connection ends at any
 * point; a method runs as the connection's principal, or, only for a
 * forwarded call from a trusted proxy, as the sandbox, user or nobody
 * (UNAUTHENTICATED) the forwarded certificate names, never as a proxy. */
#include <string.h>

#include "fuzz/fuzz.h"
#include "fuzz/fuzz_fwd.h"
#include "gw_app.h"
#include "gw_authz.h"
#include "gw_forward.h"
#include "grpc_frame.h"
#include "gw_health.h"
#include "gw_rpcs.h"
#include "gw_server_int.h"
#include "tsr_time.h"

static bool valid_answer = true;

static bool still_valid(void *app, const gw_principal *p, int64_t now, const char **why)
{
    (void)app;
    (void)p;
    (void)now;
    *why = "certificate revoked";
    return valid_answer;
}

/* The connection's principal and this input's forwarding setup. */
static gw_principal conn_principal;
static uint8_t fwd_flags;

/* A forwarded identity (only ever from gw_forward_authenticate), not the
 * connection's (the pipe holds a copy of conn_principal). */
static bool forwarded(const gw_principal *p)
{
    const gw_principal *c = &conn_principal;
    return !(p->kind == c->kind && p->local_proxy == c->local_proxy &&
             strcmp(p->name, c->name) == 0 && strcmp(p->spiffe_id, c->spiffe_id) == 0 &&
             strcmp(p->reason, c->reason) == 0 && strcmp(p->serial_hex, c->serial_hex) == 0);
}

static void check_principal(const gw_principal *p)
{
    FUZZ_CHECK(p != NULL);
    if (!forwarded(p)) return;
    FUZZ_CHECK(conn_principal.local_proxy || (conn_principal.kind == GW_PRINCIPAL_PROXY &&
                                              strcmp(conn_principal.name, "egress") == 0));
    FUZZ_CHECK(p->kind == GW_PRINCIPAL_SANDBOX || p->kind == GW_PRINCIPAL_USER ||
               p->kind == GW_PRINCIPAL_UNAUTHENTICATED);
    FUZZ_CHECK(strcmp(p->via_proxy, conn_principal.local_proxy ? "" : "egress") == 0 ||
               p->kind == GW_PRINCIPAL_UNAUTHENTICATED);
}

/* The dispatcher's hook: the gateway's rule for its own methods (the
 * identity part is still_valid's answer above; for a forwarded identity
 * the gateway's own check, gw_authz_dispatch); the harness's own methods
 * carry no rule and are let through. A real method the guard lets a
 * forwarded identity call is answered here: no store. */
static int authorize(const gw_call_ctx *ctx, const gw_method *m, gw_response *resp)
{
    check_principal(ctx->principal);
    if (!valid_answer)
        return gw_response_fail(resp, GW_STATUS_UNAUTHENTICATED, "certificate revoked");
    if (m->rule == GW_RPC_NONE) return 0;
    if (!forwarded(ctx->principal)) return gw_authz_call(ctx, (enum gw_rpc_id)m->rule, resp);
    int rc = gw_authz_dispatch(ctx, m, resp);
    if (rc != 0 || ctx->principal->kind == GW_PRINCIPAL_UNAUTHENTICATED) return rc;
    return gw_response_fail(resp, GW_STATUS_FAILED_PRECONDITION, "fuzz: no store");
}

/* cfg.authenticate_forwarded: the gateway's own, on the value as it came
 * or (forward flags bit 1) with its leaf re-signed by the test PKI. */
static int authenticate_forwarded(const gw_call_ctx *ctx, const uint8_t *value, size_t len,
                                  unsigned count, gw_principal *out)
{
    FUZZ_CHECK(!forwarded(ctx->principal));
    enum gw_forward_format format = (fwd_flags & 1) ? GW_FORWARD_XFCC : GW_FORWARD_ESCAPED_PEM;
    STACK_OF(X509) *certs = NULL;
    fuzz_buf again = {NULL, 0, 0};
    if ((fwd_flags & 2) && gw_forward_decode(format, value, len, &certs) == 0) {
        fuzz_fwd_reencode(fuzz_pki_get(), certs, format, false, (fwd_flags & 4) != 0, false,
                          &again);
        value = again.p;
        len = again.len;
    }
    int rc = gw_forward_authenticate(ctx, value, len, count, out);
    sk_X509_pop_free(certs, X509_free);
    free(again.p);
    if (rc == 0) FUZZ_CHECK(out->kind != GW_PRINCIPAL_PROXY && out->kind != GW_PRINCIPAL_ANONYMOUS);
    return rc;
}

/* /fuzz.Test/Echo: 0xEE -> error with the rest as message (any bytes),
 * 0xEF -> a 200 KiB body (flow control), 0xED -> a secret body, else echo. */
static void echo(const gw_call_ctx *ctx, const uint8_t *msg, size_t len, gw_response *resp)
{
    FUZZ_CHECK(ctx->principal != NULL && ctx->method != NULL);
    check_principal(ctx->principal);
    if (len > 0 && msg[0] == 0xEE) {
        size_t n = len - 1 < sizeof resp->message - 1 ? len - 1 : sizeof resp->message - 1;
        memcpy(resp->message, msg + 1, n);
        resp->message[n] = '\0';
        resp->status = (enum gw_status)(len % 17);
        return;
    }
    size_t n = len > 0 && msg[0] == 0xEF ? 200 * 1024 : len;
    uint8_t *body = malloc(n > 0 ? n : 1);
    FUZZ_CHECK(body != NULL);
    if (n == len) {
        if (len > 0) memcpy(body, msg, len);
    } else {
        memset(body, 0x5a, n);
    }
    resp->status = GW_STATUS_OK;
    resp->body = body;
    resp->body_len = n;
    resp->body_is_secret = len > 0 && msg[0] == 0xED;
}

/* /fuzz.Test/Stream: counts messages; one starting with 0xEE aborts. */
struct stream_state {
    size_t messages, bytes;
};

static void *stream_open(const gw_call_ctx *ctx)
{
    (void)ctx;
    return calloc(1, sizeof(struct stream_state));
}

static int stream_message(void *state, const gw_call_ctx *ctx, const uint8_t *msg, size_t len,
                          gw_response *resp)
{
    (void)ctx;
    struct stream_state *st = state;
    if (st == NULL) return gw_response_fail(resp, GW_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    if (len > 0 && msg[0] == 0xEE) return gw_response_fail(resp, GW_STATUS_ABORTED, "abort %zu", len);
    st->messages++;
    st->bytes += len;
    return 0;
}

static void stream_finish(void *state, const gw_call_ctx *ctx, gw_response *resp)
{
    (void)ctx;
    struct stream_state *st = state;
    if (st == NULL) {
        (void)gw_response_fail(resp, GW_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    uint8_t *body = malloc(16);
    FUZZ_CHECK(body != NULL);
    memcpy(body, &st->messages, sizeof st->messages);
    memcpy(body + 8, &st->bytes, sizeof st->bytes);
    resp->status = GW_STATUS_OK;
    resp->body = body;
    resp->body_len = 16;
}

static void stream_close(void *state)
{
    free(state);
}

static const gw_client_stream_ops stream_ops = {stream_open, stream_message, stream_finish,
                                                stream_close};

static gw_method methods[GW_RPC_COUNT + 3];
static size_t n_methods;

static void setup(void)
{
    if (n_methods > 0) return;
    size_t n = 0;
    const gw_method *real = gw_methods(&n);
    FUZZ_CHECK(n == GW_RPC_COUNT - 1);
    for (size_t i = 0; i < n; i++) methods[n_methods++] = real[i];
    methods[n_methods++] = (gw_method){.path = "/fuzz.Test/Echo", .unary = echo};
    methods[n_methods++] = (gw_method){.path = "/fuzz.Test/Stream", .client_stream = &stream_ops};
}

struct sink_state {
    size_t bytes;
    uint8_t first[9];
};

static void sink(void *arg, const uint8_t *data, size_t len)
{
    struct sink_state *s = arg;
    for (size_t i = 0; i < len && s->bytes + i < sizeof s->first; i++) s->first[s->bytes + i] = data[i];
    s->bytes += len;
}

static uint32_t next_rand(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

static const char PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    fuzz_in in = {data, size};
    uint8_t flags = fuzz_u8(&in);
    uint32_t seed = fuzz_u8(&in) * 2654435761u + 7;

    /* The app: fuzz_app_get's, without store or audit log; every real
     * method is refused before it would need them. */
    gw_app *app = fuzz_app_get();
    static const enum gw_principal_kind kinds[] = {GW_PRINCIPAL_ANONYMOUS,
                                                   GW_PRINCIPAL_UNAUTHENTICATED,
                                                   GW_PRINCIPAL_PROXY,
                                                   GW_PRINCIPAL_UNAUTHENTICATED};
    gw_principal *principal = &conn_principal;
    memset(principal, 0, sizeof *principal);
    principal->kind = kinds[(flags >> 1) & 3];
    principal->local_proxy = ((flags >> 1) & 3) == 3;
    if (principal->kind == GW_PRINCIPAL_UNAUTHENTICATED)
        snprintf(principal->reason, sizeof principal->reason, "certificate revoked");
    if (principal->kind == GW_PRINCIPAL_PROXY) {
        snprintf(principal->name, sizeof principal->name, "egress");
        snprintf(principal->spiffe_id, sizeof principal->spiffe_id,
                 "spiffe://tessera.local/proxy/egress");
        snprintf(principal->serial_hex, sizeof principal->serial_hex, "01");
    }
    valid_answer = (flags & 8) == 0;
    fwd_flags = (flags & 64) ? fuzz_u8(&in) : 0;
    ((gw_config *)(uintptr_t)app->cfg)->proxy_format =
        (fwd_flags & 1) ? GW_FORWARD_XFCC : GW_FORWARD_ESCAPED_PEM;

    gw_server_config cfg = {
        .methods = methods,
        .n_methods = n_methods,
        .max_message_bytes = (flags & 32) ? 64 : GRPC_DEFAULT_MAX_MESSAGE,
        .max_concurrent_streams = 100,
        .app = app,
        .still_valid = still_valid,
        .authorize = authorize,
    };
    if (flags & 64) {
        cfg.forward_header = (fwd_flags & 1) ? "x-forwarded-client-cert" : "x-client-cert";
        cfg.authenticate_forwarded = authenticate_forwarded;
    }
    gw_h2_pipe *p = NULL;
    FUZZ_CHECK(gw_h2_pipe_new(&cfg, principal, &p) == 0);
    struct sink_state out = {0};
    bool open = gw_h2_pipe_io(p, NULL, 0, sink, &out) == 0;
    FUZZ_CHECK(open && out.bytes >= 9);
    FUZZ_CHECK(out.first[3] == NGHTTP2_SETTINGS && out.first[4] == 0);

    if (open && (flags & 1)) open = gw_h2_pipe_io(p, (const uint8_t *)PREFACE, sizeof PREFACE - 1,
                                                  sink, &out) == 0;
    while (open && in.len > 0) {
        size_t chunk = 1 + next_rand(&seed) % 97;
        if (next_rand(&seed) % 8 == 0) chunk = 1 + next_rand(&seed) % 20000;
        if ((flags & 16) && chunk >= in.len) gw_h2_pipe_goaway(p, "server shutting down");
        fuzz_in c = fuzz_bytes(&in, chunk);
        open = gw_h2_pipe_io(p, c.p, c.len, sink, &out) == 0;
        if (open && next_rand(&seed) % 16 == 0) {
            gw_h2_pipe_tick(p, tsr_monotonic_ms());
            open = gw_h2_pipe_io(p, NULL, 0, sink, &out) == 0;
        }
    }
    if (open) {
        /* Every deadline passes. */
        gw_h2_pipe_tick(p, INT64_MAX);
        FUZZ_IGNORE(gw_h2_pipe_io(p, NULL, 0, sink, &out));
    }
    gw_h2_pipe_free(p);
    return 0;
}
