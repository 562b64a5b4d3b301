/* gw_test_server: the real gRPC transport with test handlers, driven by
 * tests/integration/test_transport.py.
 *
 *   gw_test_server --cert PEM --key PEM --bundle PEM [--listen HOST:PORT]
 *                  [--workers N] [--max-message-bytes N] [--max-streams N]
 *                  [--max-connections N] [--handshake-timeout-ms N]
 *                  [--idle-timeout-ms N] [--revoked FILE]
 *
 * Methods: grpc.health.v1.Health/Check; /tessera.test.Echo/Unary (replies
 * "kind=... name=... serial=...\n" + the request bytes); /tessera.test.Echo/Count
 * (client stream: "count=N bytes=M"; a message starting with "DENY" ends the
 * stream with PERMISSION_DENIED); /tessera.test.Echo/Slow (sleeps 1.5 s).
 *
 * Principal (test rule, not the gateway's): no certificate -> anonymous;
 * chain verified (by this hook: the transport does not, gw_tls.h) against
 * the bundle for TLS client use -> user named by the last path segment of the URI
 * SAN; otherwise unauthenticated. A serial (hex) listed in --revoked (re-read
 * on every still_valid call) closes that certificate's connections.
 *
 * Prints "listening on <port>" when ready; SIGTERM/SIGINT stop it gracefully
 * and it frees everything before exiting (checked under ASan). */
#include <errno.h>
#include <getopt.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ca_pem.h"
#include "gw_health.h"
#include "gw_server.h"
#include "gw_tls.h"
#include "tsr_fs.h"

static gw_server *volatile g_server;

typedef struct app {
    const char *revoked_file;
    X509_STORE *trust;   /* the bundle: the hook verifies chains itself (gw_tls.h) */
} app;

static void on_signal(int sig)
{
    (void)sig;
    gw_server_stop(g_server);
}

static void log_line(void *a, const char *line)
{
    (void)a;
    fprintf(stderr, "gw_test_server: %s\n", line);
    fflush(stderr);
}

/* ---- authenticate / still_valid ------------------------------------------ */

/* X509_V_OK or OpenSSL's verdict on the peer's chain. */
static long verify_peer_chain(X509_STORE *trust, X509 *peer, SSL *ssl)
{
    /* The transport leaves no verdict to reuse (gw_tls.h). */
    if (SSL_get_verify_result(ssl) == X509_V_OK) return X509_V_ERR_UNSPECIFIED;
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    if (ctx == NULL) return X509_V_ERR_OUT_OF_MEM;
    long vr = X509_V_ERR_UNSPECIFIED;
    if (X509_STORE_CTX_init(ctx, trust, peer, SSL_get_peer_cert_chain(ssl)) == 1 &&
        X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT) == 1) {
        vr = X509_verify_cert(ctx) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
        if (vr == X509_V_OK && X509_STORE_CTX_get_error(ctx) != X509_V_OK)
            vr = X509_STORE_CTX_get_error(ctx);
    }
    X509_STORE_CTX_free(ctx);
    ERR_clear_error();
    return vr;
}

static int test_authenticate(void *a, void *worker, SSL *ssl, gw_principal *out)
{
    const app *ap = a;
    (void)worker;
    memset(out, 0, sizeof *out);
    X509 *peer = SSL_get0_peer_certificate(ssl);
    if (peer == NULL) {
        out->kind = GW_PRINCIPAL_ANONYMOUS;
        return 0;
    }
    out->kind = GW_PRINCIPAL_UNAUTHENTICATED;
    if (ca_cert_serial_hex(peer, out->serial_hex) != 0) out->serial_hex[0] = '\0';
    int64_t nb = 0;
    if (ca_cert_validity(peer, &nb, &out->not_after) != 0) out->not_after = 0;
    long vr = verify_peer_chain(ap->trust, peer, ssl);
    if (vr != X509_V_OK) {
        snprintf(out->reason, sizeof out->reason, "certificate verify failed: %s",
                 X509_verify_cert_error_string(vr));
        return 0;
    }
    GENERAL_NAMES *sans = X509_get_ext_d2i(peer, NID_subject_alt_name, NULL, NULL);
    const unsigned char *uri = NULL;
    int ulen = 0;
    for (int i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
        if (gn->type == GEN_URI) {
            uri = ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier);
            ulen = ASN1_STRING_length(gn->d.uniformResourceIdentifier);
            break;
        }
    }
    if (uri == NULL || ulen <= 0 || ulen > CA_SPIFFE_ID_MAX || memchr(uri, '\0', (size_t)ulen)) {
        snprintf(out->reason, sizeof out->reason, "no usable URI SAN");
    } else {
        memcpy(out->spiffe_id, uri, (size_t)ulen);
        out->spiffe_id[ulen] = '\0';
        const char *last = strrchr(out->spiffe_id, '/');
        const char *name = last != NULL ? last + 1 : out->spiffe_id;
        size_t nl = strlen(name);
        if (nl > 0 && nl <= CA_NAME_MAX) {
            memcpy(out->name, name, nl + 1);
            out->kind = GW_PRINCIPAL_USER;
            out->role = GW_ROLE_VIEWER;
        } else {
            snprintf(out->reason, sizeof out->reason, "bad name in URI SAN");
        }
    }
    GENERAL_NAMES_free(sans);
    return 0;
}

static bool test_still_valid(void *a, const gw_principal *p, int64_t now_unix, const char **why)
{
    const app *ap = a;
    *why = "certificate revoked";
    if (p->not_after != 0 && now_unix > p->not_after) {
        *why = "certificate expired";
        return false;
    }
    if (ap->revoked_file == NULL || p->serial_hex[0] == '\0') return true;
    uint8_t *data = NULL;
    size_t len = 0;
    if (tsr_read_file(ap->revoked_file, 4096, &data, &len) != 0) return true; /* no file: none */
    bool ok = true;
    char *save = NULL;
    for (char *tok = strtok_r((char *)data, " \t\r\n", &save); tok != NULL;
         tok = strtok_r(NULL, " \t\r\n", &save))
        if (strcasecmp(tok, p->serial_hex) == 0) ok = false;
    free(data);
    return ok;
}

/* The transport under test serves methods without authorization rules:
 * every call is admitted (identity is still_valid's alone). */
static int test_authorize(const gw_call_ctx *ctx, const gw_method *m, gw_response *resp)
{
    (void)ctx;
    (void)m;
    (void)resp;
    return 0;
}

/* ---- handlers -------------------------------------------------------------- */

static void echo_unary(const gw_call_ctx *ctx, const uint8_t *msg, size_t len, gw_response *resp)
{
    const gw_principal *p = ctx->principal;
    char head[512];
    int n = snprintf(head, sizeof head, "kind=%s name=%s serial=%s\n",
                     gw_principal_kind_name(p->kind), p->name, p->serial_hex);
    if (n < 0 || (size_t)n >= sizeof head) {
        (void)gw_response_fail(resp, GW_STATUS_INTERNAL, "principal text too long");
        return;
    }
    uint8_t *body = malloc((size_t)n + len + 1);
    if (body == NULL) {
        (void)gw_response_fail(resp, GW_STATUS_INTERNAL, "out of memory");
        return;
    }
    memcpy(body, head, (size_t)n);
    if (len > 0) memcpy(body + n, msg, len);
    resp->status = GW_STATUS_OK;
    resp->body = body;
    resp->body_len = (size_t)n + len;
}

static void slow_unary(const gw_call_ctx *ctx, const uint8_t *msg, size_t len, gw_response *resp)
{
    (void)ctx;
    (void)msg;
    (void)len;
    struct timespec ts = {.tv_sec = 1, .tv_nsec = 500000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
    uint8_t *body = malloc(4);
    if (body == NULL) {
        (void)gw_response_fail(resp, GW_STATUS_INTERNAL, "out of memory");
        return;
    }
    memcpy(body, "slow", 4);
    resp->body = body;
    resp->body_len = 4;
}

typedef struct count_state {
    size_t count, bytes;
} count_state;

static void *count_open(const gw_call_ctx *ctx)
{
    (void)ctx;
    return calloc(1, sizeof(count_state));
}

static int count_message(void *state, const gw_call_ctx *ctx, const uint8_t *msg, size_t len,
                         gw_response *resp)
{
    (void)ctx;
    count_state *cs = state;
    if (cs == NULL) return gw_response_fail(resp, GW_STATUS_INTERNAL, "out of memory");
    if (len >= 4 && memcmp(msg, "DENY", 4) == 0)
        return gw_response_fail(resp, GW_STATUS_PERMISSION_DENIED, "denied at message %zu",
                                cs->count + 1);
    cs->count++;
    cs->bytes += len;
    return 0;
}

static void count_finish(void *state, const gw_call_ctx *ctx, gw_response *resp)
{
    (void)ctx;
    count_state *cs = state;
    if (cs == NULL) {
        (void)gw_response_fail(resp, GW_STATUS_INTERNAL, "out of memory");
        return;
    }
    char text[64];
    int n = snprintf(text, sizeof text, "count=%zu bytes=%zu", cs->count, cs->bytes);
    uint8_t *body = malloc((size_t)n);
    if (body == NULL) {
        (void)gw_response_fail(resp, GW_STATUS_INTERNAL, "out of memory");
        return;
    }
    memcpy(body, text, (size_t)n);
    resp->body = body;
    resp->body_len = (size_t)n;
}

static void count_close(void *state)
{
    free(state);
}

static const gw_client_stream_ops count_ops = {
    .open = count_open,
    .message = count_message,
    .finish = count_finish,
    .close = count_close,
};

/* ---- main ------------------------------------------------------------------ */

static void usage(void)
{
    fprintf(stderr,
            "usage: gw_test_server --cert PEM --key PEM --bundle PEM [--listen HOST:PORT]\n"
            "  [--workers N] [--max-message-bytes N] [--max-streams N] [--max-connections N]\n"
            "  [--handshake-timeout-ms N] [--idle-timeout-ms N] [--revoked FILE]\n");
    exit(2);
}

static long long num_arg(const char *s)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 0) usage();
    return v;
}

static int load_store(const char *path, X509_STORE **out)
{
    STACK_OF(X509) *certs = NULL;
    X509_STORE *st = NULL;
    int rc = -1;
    TSR_TRY(ca_certs_load_file(path, &certs));
    TSR_TRY_ENSURE((st = X509_STORE_new()) != NULL, TSR_E_INTERNAL, "out of memory");
    for (int i = 0; i < sk_X509_num(certs); i++)
        TSR_TRY_OSSL(X509_STORE_add_cert(st, sk_X509_value(certs, i)), TSR_E_INTERNAL,
                     "X509_STORE_add_cert");
    *out = st;
    st = NULL;
    rc = 0;
out:
    X509_STORE_free(st);
    sk_X509_pop_free(certs, X509_free);
    return rc;
}

int main(int argc, char **argv)
{
    const char *cert = NULL, *key = NULL, *bundle = NULL, *listen = "127.0.0.1:0";
    app a = {0};
    gw_server_config cfg = {0};
    static const struct option opts[] = {
        {"cert", required_argument, NULL, 'c'},
        {"key", required_argument, NULL, 'k'},
        {"bundle", required_argument, NULL, 'b'},
        {"listen", required_argument, NULL, 'l'},
        {"workers", required_argument, NULL, 'w'},
        {"max-message-bytes", required_argument, NULL, 'm'},
        {"max-streams", required_argument, NULL, 's'},
        {"max-connections", required_argument, NULL, 'n'},
        {"handshake-timeout-ms", required_argument, NULL, 'h'},
        {"idle-timeout-ms", required_argument, NULL, 'i'},
        {"revoked", required_argument, NULL, 'r'},
        {NULL, 0, NULL, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'c': cert = optarg; break;
        case 'k': key = optarg; break;
        case 'b': bundle = optarg; break;
        case 'l': listen = optarg; break;
        case 'w': cfg.workers = (int)num_arg(optarg); break;
        case 'm': cfg.max_message_bytes = (uint32_t)num_arg(optarg); break;
        case 's': cfg.max_concurrent_streams = (uint32_t)num_arg(optarg); break;
        case 'n': cfg.max_connections = (uint32_t)num_arg(optarg); break;
        case 'h': cfg.handshake_timeout_ms = num_arg(optarg); break;
        case 'i': cfg.idle_timeout_ms = num_arg(optarg); break;
        case 'r': a.revoked_file = optarg; break;
        default: usage();
        }
    }
    if (cert == NULL || key == NULL || bundle == NULL || optind != argc) usage();

    char host[256];
    const char *colon = strrchr(listen, ':');
    if (colon == NULL || (size_t)(colon - listen) >= sizeof host) usage();
    size_t hl = (size_t)(colon - listen);
    const char *h = listen;
    if (hl >= 2 && listen[0] == '[' && listen[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    long long port = num_arg(colon + 1);
    if (port > 65535) usage();

    static const gw_method methods[] = {
        {.path = GW_HEALTH_CHECK_PATH, .unary = gw_health_check},
        {.path = "/tessera.test.Echo/Unary", .unary = echo_unary},
        {.path = "/tessera.test.Echo/Count", .client_stream = &count_ops},
        {.path = "/tessera.test.Echo/Slow", .unary = slow_unary},
    };

    int rc = 1;
    X509_STORE *store = NULL;
    SSL_CTX *ctx = NULL;
    if (load_store(bundle, &store) != 0) goto out;
    a.trust = store;
    gw_tls_config tc = {.cert_file = cert, .key_file = key, .client_trust = store};
    if (gw_tls_ctx_new(&tc, &ctx) != 0) goto out;

    cfg.listen_host = host;
    cfg.listen_port = (uint16_t)port;
    cfg.ssl_ctx = ctx;
    cfg.methods = methods;
    cfg.n_methods = sizeof methods / sizeof methods[0];
    cfg.app = &a;
    cfg.authenticate = test_authenticate;
    cfg.still_valid = test_still_valid;
    cfg.authorize = test_authorize;
    cfg.log = log_line;
    gw_server *srv = NULL;
    if (gw_server_new(&cfg, &srv) != 0) goto out;
    g_server = srv;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    printf("listening on %u\n", (unsigned)gw_server_port(g_server));
    fflush(stdout);
    if (gw_server_run(g_server) != 0) goto out;
    fprintf(stderr, "gw_test_server: stopped\n");
    rc = 0;
out:
    if (rc != 0) fprintf(stderr, "gw_test_server: %s (%s)\n", tsr_errmsg(), tsr_errloc());
    gw_server *s = g_server;
    g_server = NULL;  /* a late signal must not reach a freed server */
    gw_server_free(s);
    SSL_CTX_free(ctx);
    X509_STORE_free(store);
    return rc;
}
