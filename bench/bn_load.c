/* bn_load: Tessera's load generator (built only by `make bench`).
 *
 *   bn_load handshake --addr H:P --bundle F --cert F --key F --threads N --seconds S
 *   bn_load unary     --addr H:P --bundle F --ids F --conns C --seconds S [--rate R]
 *   bn_load renew     --addr H:P --bundle F --ids F --threads N --seconds S
 *   bn_load logs      --addr H:P --bundle F --ids F --threads N --seconds S [--batch B]
 *   bn_load conns     --addr H:P --bundle F --ids F --count N[,N...] --pid GATEWAY_PID
 *                     [--wake K] [--hold S] (see "idle connections" below)
 *   bn_load cfssl     --addr H:P --threads N --seconds S --profile NAME
 *
 * --ids F: one identity per line, "<sandbox_id> <cert_chain.pem> <key.pem>".
 * Every mode prints one JSON object on stdout: ops, seconds, rate, errors
 * and mode-specific fields (latency percentiles in µs for unary, RSS in KiB
 * for conns). Errors never count as operations; the first one is printed on
 * stderr.
 *
 * handshake: a new TCP connection per attempt, the full TLS 1.3 handshake
 * with the client's own SSL_CTX from client/cl_tls (the same server identity
 * checks, ALPN h2, client certificate), then one read: the server's first
 * HTTP/2 bytes (Tessera) or its close_notify (the bare OpenSSL peer). Both
 * mean the server has processed the client's certificate and Finished.
 * renew and cfssl sign the same kind of pre-generated P-256 CSRs (made before
 * the clock starts). */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cl_grpc.h"
#include "cl_internal.h"
#include "cl_tls.h"
#include "tessera/v1/gateway.pb-c.h"

#define BN_MAX_IDS 4096
#define BN_MAX_THREADS 256
#define BN_NCSR 256

typedef struct bn_id {
    char sandbox[64];
    char cert[512];
    char key[512];
    cl_tls *tls;
} bn_id;

static struct {
    const char *mode;
    char host[256];
    uint16_t port;
    const char *bundle, *cert, *key, *ids_file, *profile, *counts;
    int threads, conns, seconds, batch, wake, hold;
    double rate;
    long pid;
} opt = {.threads = 2, .conns = 4, .seconds = 5, .batch = 100,
         .profile = "tessera", .counts = "1000", .wake = 200};

static bn_id ids[BN_MAX_IDS];
static int nids;
static atomic_bool stop_flag;
static atomic_long total_ops, total_err;
static atomic_flag err_printed = ATOMIC_FLAG_INIT;
static uint8_t *csr_der[BN_NCSR];
static size_t csr_len[BN_NCSR];
static char *csr_pem[BN_NCSR];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "bn_load: %s\n", what);
    exit(2);
}

__attribute__((format(printf, 1, 2))) static void note_err(const char *fmt, ...)
{
    atomic_fetch_add(&total_err, 1);
    if (!atomic_flag_test_and_set(&err_printed)) {
        fprintf(stderr, "bn_load %s: first error: ", opt.mode);
        va_list ap;
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
    }
}

static void load_ids(void)
{
    if (opt.ids_file == NULL) die("--ids is required");
    FILE *f = fopen(opt.ids_file, "r");
    if (f == NULL) die("cannot open --ids");
    while (nids < BN_MAX_IDS) {
        bn_id *d = &ids[nids];
        if (fscanf(f, "%63s %511s %511s", d->sandbox, d->cert, d->key) != 3) break;
        cl_tls_config c = {.cert_file = d->cert, .key_file = d->key, .bundle_file = opt.bundle};
        if (cl_tls_new(&c, &d->tls) != 0) {
            fprintf(stderr, "%s\n", tsr_errmsg());
            die("cannot load an identity");
        }
        nids++;
    }
    fclose(f);
    if (nids == 0) die("no identities in --ids");
}

static cl_tls *single_tls(void)
{
    cl_tls *t = NULL;
    cl_tls_config c = {.cert_file = opt.cert, .key_file = opt.key, .bundle_file = opt.bundle};
    if (cl_tls_new(&c, &t) != 0) {
        fprintf(stderr, "%s\n", tsr_errmsg());
        die("cannot load the client identity");
    }
    return t;
}

static int tcp_connect(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(opt.port)};
    if (inet_pton(AF_INET, opt.host, &sa.sin_addr) != 1) die("--addr must be IPv4 HOST:PORT");
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* No TIME_WAIT pile-up over thousands of short connections. */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* ---- CSRs ---------------------------------------------------------------- */

static void make_csrs(void)
{
    for (int i = 0; i < BN_NCSR; i++) {
        EVP_PKEY *k = EVP_EC_gen("P-256");
        X509_REQ *r = X509_REQ_new();
        if (k == NULL || r == NULL || X509_REQ_set_version(r, 0) != 1 ||
            X509_REQ_set_pubkey(r, k) != 1 || X509_REQ_sign(r, k, EVP_sha256()) <= 0)
            die("cannot make a CSR");
        unsigned char *der = NULL;
        int n = i2d_X509_REQ(r, &der);
        if (n <= 0) die("cannot encode a CSR");
        csr_der[i] = der;
        csr_len[i] = (size_t)n;
        BIO *b = BIO_new(BIO_s_mem());
        if (b == NULL || PEM_write_bio_X509_REQ(b, r) != 1) die("cannot write a CSR");
        char *p = NULL;
        long pl = BIO_get_mem_data(b, &p);
        /* JSON-escaped copy (newlines). */
        char *j = malloc((size_t)pl * 2 + 1);
        if (j == NULL) die("out of memory");
        size_t o = 0;
        for (long x = 0; x < pl; x++) {
            if (p[x] == '\n') {
                j[o++] = '\\';
                j[o++] = 'n';
            } else {
                j[o++] = p[x];
            }
        }
        j[o] = '\0';
        csr_pem[i] = j;
        BIO_free(b);
        X509_REQ_free(r);
        EVP_PKEY_free(k);
    }
}

/* ---- handshake --------------------------------------------------------------- */

static cl_tls *hs_tls;

static void *hs_thread(void *arg)
{
    (void)arg;
    cl_tls_gen *gen = cl_tls_acquire(hs_tls);
    while (!atomic_load(&stop_flag)) {
        int fd = tcp_connect();
        if (fd < 0) {
            note_err("connect: %s", strerror(errno));
            continue;
        }
        SSL *ssl = SSL_new(gen->ctx);
        cl_tls_hs hs = {.magic = CL_TLS_HS_MAGIC, .host = opt.host};
        SSL_set_app_data(ssl, &hs);
        SSL_set_fd(ssl, fd);
        SSL_set_tlsext_host_name(ssl, "localhost");
        int ok = 0;
        if (SSL_connect(ssl) == 1) {
            const unsigned char *alpn = NULL;
            unsigned alen = 0;
            SSL_get0_alpn_selected(ssl, &alpn, &alen);
            char buf[256];
            int n = SSL_read(ssl, buf, sizeof buf);
            int e = n > 0 ? SSL_ERROR_NONE : SSL_get_error(ssl, n);
            if (alen == 2 && memcmp(alpn, "h2", 2) == 0 &&
                (n > 0 || e == SSL_ERROR_ZERO_RETURN))
                ok = 1;
            else
                note_err("after handshake: %s", ERR_reason_error_string(ERR_peek_error()));
        } else {
            note_err("handshake: %s", hs.refused ? hs.reason
                                                 : ERR_reason_error_string(ERR_peek_error()));
        }
        ERR_clear_error();
        SSL_free(ssl);
        close(fd);
        if (ok) atomic_fetch_add(&total_ops, 1);
    }
    cl_tls_gen_release(gen);
    return NULL;
}

/* ---- unary GetSandboxConfig --------------------------------------------------- */

typedef struct bn_thr {
    pthread_t t;
    int idx;
    uint32_t *lat;      /* µs per call */
    size_t nlat, caplat;
    double pace;        /* seconds between calls (0 = as fast as possible) */
} bn_thr;

static void lat_add(bn_thr *t, double us)
{
    if (t->nlat == t->caplat) {
        t->caplat = t->caplat ? t->caplat * 2 : 65536;
        t->lat = realloc(t->lat, t->caplat * sizeof *t->lat);
        if (t->lat == NULL) die("out of memory");
    }
    t->lat[t->nlat++] = (uint32_t)(us < 4e9 ? us : 4e9);
}

static cl_conn *open_conn(cl_tls *tls)
{
    cl_conn *c = NULL;
    cl_status st;
    if (cl_conn_open(opt.host, opt.port, tls, 10000, &c, &st) != 0) {
        note_err("open: %s", st.message);
        return NULL;
    }
    return c;
}

static void *unary_thread(void *arg)
{
    bn_thr *t = arg;
    bn_id *d = &ids[t->idx % nids];
    cl_conn *c = open_conn(d->tls);
    if (c == NULL) return NULL;
    Tessera__V1__GetSandboxConfigRequest req;
    tessera__v1__get_sandbox_config_request__init(&req);
    req.sandbox_id = d->sandbox;
    uint8_t buf[128];
    size_t len = tessera__v1__get_sandbox_config_request__pack(&req, buf);
    double next = now_s();
    while (!atomic_load(&stop_flag)) {
        if (t->pace > 0) {
            double w = next - now_s();
            if (w > 0) {
                struct timespec ts = {(time_t)w, (long)((w - (double)(time_t)w) * 1e9)};
                nanosleep(&ts, NULL);
            }
            next += t->pace;
        }
        double t0 = now_s();
        uint8_t *resp = NULL;
        size_t rlen = 0;
        cl_status st;
        if (cl_unary(c, "/tessera.v1.Gateway/GetSandboxConfig", buf, len, 5000, &resp, &rlen,
                     &st) != 0) {
            note_err("GetSandboxConfig: %s", st.message);
            if (!cl_conn_alive(c)) break;
            continue;
        }
        free(resp);
        lat_add(t, (now_s() - t0) * 1e6);
        atomic_fetch_add(&total_ops, 1);
    }
    cl_conn_close(c);
    return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* ---- RenewCertificate ------------------------------------------------------- */

static void *renew_thread(void *arg)
{
    bn_thr *t = arg;
    /* Identities are split among threads: each renewal uses the next
     * identity's connection, so the per-sandbox rate limit is spread. */
    int mine[BN_MAX_IDS];
    int n = 0;
    for (int i = t->idx; i < nids; i += opt.threads) mine[n++] = i;
    if (n == 0) return NULL;
    cl_conn **cs = calloc((size_t)n, sizeof *cs);
    if (cs == NULL) die("out of memory");
    for (int i = 0; i < n; i++) {
        cs[i] = open_conn(ids[mine[i]].tls);
        if (cs[i] == NULL) goto out;
    }
    Tessera__V1__RenewCertificateRequest req;
    tessera__v1__renew_certificate_request__init(&req);
    uint8_t buf[1024];
    for (unsigned k = 0; !atomic_load(&stop_flag); k++) {
        cl_conn *c = cs[k % (unsigned)n];
        req.csr.data = csr_der[(k * 7u + (unsigned)t->idx) % BN_NCSR];
        req.csr.len = csr_len[(k * 7u + (unsigned)t->idx) % BN_NCSR];
        size_t len = tessera__v1__renew_certificate_request__pack(&req, buf);
        uint8_t *resp = NULL;
        size_t rlen = 0;
        cl_status st;
        if (cl_unary(c, "/tessera.v1.Gateway/RenewCertificate", buf, len, 5000, &resp, &rlen,
                     &st) != 0) {
            note_err("RenewCertificate: %s", st.message);
            if (!cl_conn_alive(c)) break;
            continue;
        }
        free(resp);
        atomic_fetch_add(&total_ops, 1);
    }
out:
    for (int i = 0; i < n; i++)
        if (cs[i] != NULL) cl_conn_close(cs[i]);
    free(cs);
    return NULL;
}

/* ---- PushSandboxLogs ----------------------------------------------------------- */

static void *logs_thread(void *arg)
{
    bn_thr *t = arg;
    bn_id *d = &ids[t->idx % nids];
    cl_conn *c = open_conn(d->tls);
    if (c == NULL) return NULL;
    static char stream_name[] = "stdout";
    static uint8_t text[] =
        "2026-11-23T02:00:00Z INFO worker 3 processed request id=7f3a9c status=200 took=12ms\n";
    Tessera__V1__LogLine *lines = calloc((size_t)opt.batch, sizeof *lines);
    Tessera__V1__LogLine **lp = calloc((size_t)opt.batch, sizeof *lp);
    if (lines == NULL || lp == NULL) die("out of memory");
    for (int i = 0; i < opt.batch; i++) {
        tessera__v1__log_line__init(&lines[i]);
        lines[i].stream = stream_name;
        lines[i].text.data = text;
        lines[i].text.len = sizeof text - 1;
        lp[i] = &lines[i];
    }
    Tessera__V1__PushSandboxLogsRequest req;
    tessera__v1__push_sandbox_logs_request__init(&req);
    req.sandbox_id = d->sandbox;
    req.n_lines = (size_t)opt.batch;
    req.lines = lp;
    while (!atomic_load(&stop_flag)) {
        cl_stream *s = NULL;
        cl_status st;
        if (cl_stream_open(c, "/tessera.v1.Gateway/PushSandboxLogs", 30000, &s, &st) != 0) {
            note_err("PushSandboxLogs open: %s", st.message);
            break;
        }
        /* One stream carries 20 batches, then its count is confirmed. */
        int sent = 0;
        for (int b = 0; b < 20 && !atomic_load(&stop_flag); b++) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            for (int i = 0; i < opt.batch; i++)
                lines[i].timestamp_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
            if (cl_stream_send_pb(s, &req.base, &st) != 0) {
                note_err("PushSandboxLogs send: %s", st.message);
                break;
            }
            sent++;
        }
        ProtobufCMessage *resp = NULL;
        if (cl_stream_finish_pb(s, &tessera__v1__push_sandbox_logs_response__descriptor, &resp,
                                &st) != 0) {
            note_err("PushSandboxLogs finish: %s", st.message);
            if (!cl_conn_alive(c)) break;
            continue;
        }
        Tessera__V1__PushSandboxLogsResponse *r = (Tessera__V1__PushSandboxLogsResponse *)resp;
        if (r->accepted_lines != (int64_t)sent * opt.batch)
            note_err("accepted %s lines fewer than sent", "some");
        atomic_fetch_add(&total_ops, (long)r->accepted_lines);
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    free(lines);
    free(lp);
    cl_conn_close(c);
    return NULL;
}

/* ---- cfssl /api/v1/cfssl/sign over HTTP/1.1 keep-alive ----------------------- */

static int http_sign(int fd, int k, char *rbuf, size_t rcap)
{
    char body[4096];
    int bl = snprintf(body, sizeof body, "{\"certificate_request\":\"%s\",\"profile\":\"%s\"}",
                      csr_pem[k], opt.profile);
    char req[5120];
    int hl = snprintf(req, sizeof req,
                      "POST /api/v1/cfssl/sign HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                      bl, body);
    if (hl <= 0 || (size_t)hl >= sizeof req) return -1;
    if (write(fd, req, (size_t)hl) != hl) return -1;
    size_t have = 0;
    for (;;) {
        ssize_t n = read(fd, rbuf + have, rcap - 1 - have);
        if (n <= 0) return -1;
        have += (size_t)n;
        rbuf[have] = '\0';
        char *eoh = strstr(rbuf, "\r\n\r\n");
        if (eoh == NULL) continue;
        char *cl = strcasestr(rbuf, "Content-Length:");
        if (cl == NULL) return -1;
        size_t want = (size_t)(eoh + 4 - rbuf) + strtoul(cl + 15, NULL, 10);
        if (have < want) continue;
        if (strncmp(rbuf, "HTTP/1.1 200", 12) != 0 || strstr(eoh, "\"success\":true") == NULL) {
            note_err("cfssl: %s", eoh + 4);
            return 1;
        }
        return 0;
    }
}

static void *cfssl_thread(void *arg)
{
    bn_thr *t = arg;
    int fd = tcp_connect();
    if (fd < 0) {
        note_err("connect: %s", strerror(errno));
        return NULL;
    }
    char *rbuf = malloc(65536);
    if (rbuf == NULL) die("out of memory");
    for (unsigned k = 0; !atomic_load(&stop_flag); k++) {
        int r = http_sign(fd, (int)((k * 7u + (unsigned)t->idx) % BN_NCSR), rbuf, 65536);
        if (r < 0) {
            note_err("cfssl connection: %s", "closed");
            break;
        }
        if (r == 0) atomic_fetch_add(&total_ops, 1);
    }
    free(rbuf);
    close(fd);
    return NULL;
}

/* ---- idle connections and gateway RSS ------------------------------------------ *
 *
 * conns --count 10000,50000 --wake K --pid GATEWAY_PID: K connections with
 * the full client (cl_conn) first, then "raw" connections up to each count
 * in turn: TCP, the full TLS handshake (client certificate, server identity
 * check), HTTP/2 and one GetSandboxConfig call (checked: grpc-status 0),
 * after which the client drops its HTTP/2 session and keeps only its TLS
 * connection, so that 50k of them fit in the load generator. Every
 * connection has made one call and is idle; the gateway's RSS is read once
 * it had time to park them (GW_PARK_AFTER_MS + a tick, docs/performance.md).
 * Beyond 20000 connections the source address moves on to the next
 * 127.0.0.x (one address has ~28k ephemeral ports). Then the wake test: one
 * call on each of the K idle connections (latency, and the gateway's CPU
 * time with its idle background subtracted), and the same K calls again at
 * once on the now awake connections. */

#define BN_CONNS_PER_SRC 20000
#define BN_MAX_STAGES 8

typedef struct raw_conn {
    int fd;
    SSL *ssl;
} raw_conn;

typedef struct raw_call {
    const uint8_t *body;
    size_t body_len, sent;
    int status;          /* grpc-status, -1 until seen */
    bool closed;
} raw_call;

static int raw_on_header(nghttp2_session *session, const nghttp2_frame *frame,
                         const uint8_t *name, size_t namelen, const uint8_t *value,
                         size_t valuelen, uint8_t flags, void *user_data)
{
    (void)session;
    (void)frame;
    (void)flags;
    raw_call *rc = user_data;
    if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0 && valuelen > 0 && valuelen < 4) {
        char v[4];
        memcpy(v, value, valuelen);
        v[valuelen] = '\0';
        rc->status = atoi(v);
    }
    return 0;
}

static int raw_on_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                        void *user_data)
{
    (void)session;
    (void)stream_id;
    (void)error_code;
    ((raw_call *)user_data)->closed = true;
    return 0;
}

static ssize_t raw_body(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                        uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
    (void)session;
    (void)stream_id;
    (void)source;
    raw_call *rc = user_data;
    size_t n = rc->body_len - rc->sent;
    if (n > length) n = length;
    memcpy(buf, rc->body + rc->sent, n);
    rc->sent += n;
    if (rc->sent == rc->body_len) *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static nghttp2_session_callbacks *raw_cbs;

/* TCP from 127.0.0.<src>, TLS, one GetSandboxConfig, then only TLS is kept. */
static int raw_open(int i, raw_conn *out)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(opt.port)};
    struct sockaddr_in src = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, opt.host, &sa.sin_addr) != 1) die("--addr must be IPv4 HOST:PORT");
    src.sin_addr.s_addr = htonl(0x7f000002u + (uint32_t)(i / BN_CONNS_PER_SRC));
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        note_err("socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    struct timeval tv = {10, 0};
    struct linger lg = {.l_onoff = 1, .l_linger = 0};   /* no TIME_WAIT at the end */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    if (bind(fd, (struct sockaddr *)&src, sizeof src) != 0 ||
        connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        note_err("connect: %s", strerror(errno));
        close(fd);
        return -1;
    }
    bn_id *d = &ids[i % nids];
    cl_tls_gen *gen = cl_tls_acquire(d->tls);
    SSL *ssl = SSL_new(gen->ctx);
    cl_tls_gen_release(gen);   /* the SSL holds its own reference to the context */
    cl_tls_hs *hs = calloc(1, sizeof *hs);
    if (ssl == NULL || hs == NULL) die("out of memory");
    hs->magic = CL_TLS_HS_MAGIC;
    hs->host = opt.host;
    SSL_set_app_data(ssl, hs);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, "localhost");
    SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
    int ok = 0;
    nghttp2_session *h2 = NULL;
    if (SSL_connect(ssl) != 1) {
        note_err("handshake: %s", hs->refused ? hs->reason
                                               : ERR_reason_error_string(ERR_peek_error()));
        goto out;
    }
    Tessera__V1__GetSandboxConfigRequest req;
    tessera__v1__get_sandbox_config_request__init(&req);
    req.sandbox_id = d->sandbox;
    uint8_t body[160];
    size_t plen = tessera__v1__get_sandbox_config_request__get_packed_size(&req);
    if (plen + 5 > sizeof body) die("request too large");
    body[0] = 0;
    body[1] = (uint8_t)(plen >> 24);
    body[2] = (uint8_t)(plen >> 16);
    body[3] = (uint8_t)(plen >> 8);
    body[4] = (uint8_t)plen;
    tessera__v1__get_sandbox_config_request__pack(&req, body + 5);
    raw_call rc = {.body = body, .body_len = plen + 5, .status = -1};
    if (nghttp2_session_client_new(&h2, raw_cbs, &rc) != 0) die("out of memory");
    static const char path[] = "/tessera.v1.Gateway/GetSandboxConfig";
#define RNV(n, v) {(uint8_t *)(uintptr_t)(n), (uint8_t *)(uintptr_t)(v), sizeof(n) - 1, sizeof(v) - 1, 0}
    nghttp2_nv nva[] = {RNV(":method", "POST"), RNV(":scheme", "https"), RNV(":path", path),
                        RNV(":authority", "localhost"), RNV("content-type", "application/grpc"),
                        RNV("te", "trailers")};
#undef RNV
    nghttp2_data_provider prd = {.read_callback = raw_body};
    if (nghttp2_submit_settings(h2, NGHTTP2_FLAG_NONE, NULL, 0) != 0 ||
        nghttp2_submit_request(h2, NULL, nva, sizeof nva / sizeof nva[0], &prd, NULL) < 0)
        die("nghttp2 submit");
    while (!rc.closed) {
        const uint8_t *data = NULL;
        ssize_t n;
        while ((n = nghttp2_session_mem_send(h2, &data)) > 0)
            if (SSL_write(ssl, data, (int)n) != (int)n) {
                note_err("write: %s", ERR_reason_error_string(ERR_peek_error()));
                goto out;
            }
        if (n < 0) die("nghttp2 send");
        uint8_t buf[4096];
        int r = SSL_read(ssl, buf, sizeof buf);
        if (r <= 0) {
            note_err("read: %s", r == 0 ? "closed" : strerror(errno));
            goto out;
        }
        if (nghttp2_session_mem_recv(h2, buf, (size_t)r) < 0) {
            note_err("%s", "HTTP/2 error from the server");
            goto out;
        }
    }
    if (rc.status != 0) {
        note_err("GetSandboxConfig: grpc-status %d", rc.status);
        goto out;
    }
    ok = 1;
out:
    nghttp2_session_del(h2);
    ERR_clear_error();
    SSL_set_app_data(ssl, NULL);
    free(hs);
    if (!ok) {
        SSL_free(ssl);
        close(fd);
        return -1;
    }
    out->fd = fd;
    out->ssl = ssl;
    return 0;
}

static raw_conn *raw_conns;
static atomic_int raw_next;
static int raw_target;

static void *raw_thread(void *arg)
{
    (void)arg;
    for (;;) {
        int i = atomic_fetch_add(&raw_next, 1);
        if (i >= raw_target) break;
        if (raw_open(i, &raw_conns[i]) != 0) {
            raw_conns[i].fd = -1;
            raw_conns[i].ssl = NULL;
            continue;
        }
        atomic_fetch_add(&total_ops, 1);
    }
    return NULL;
}

static long rss_kib(long pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) return -1;
    char line[256];
    long v = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &v) == 1) break;
    fclose(f);
    return v;
}

/* CPU seconds of a process, all its threads, to the nanosecond: the sum of
 * the first field of /proc/PID/task/TID/schedstat (time on a CPU). The wake
 * test's calls take a few ms of CPU in all, below /proc/PID/stat's ticks. */
static double cpu_s(long pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/task", pid);
    DIR *d = opendir(path);
    if (d == NULL) return -1;
    unsigned long long total = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char file[320];
        snprintf(file, sizeof file, "/proc/%ld/task/%s/schedstat", pid, e->d_name);
        FILE *f = fopen(file, "r");
        if (f == NULL) continue;
        unsigned long long ns = 0;
        if (fscanf(f, "%llu", &ns) == 1) total += ns;
        fclose(f);
    }
    closedir(d);
    return (double)total / 1e9;
}

/* One GetSandboxConfig on each of cs[first .. first+n), in turn (connection
 * i speaks as identity i): latencies (µs), sorted. */
static void wake_round(cl_conn **cs, int first, int n, uint32_t *lat)
{
    for (int i = first; i < first + n; i++) {
        Tessera__V1__GetSandboxConfigRequest req;
        tessera__v1__get_sandbox_config_request__init(&req);
        req.sandbox_id = ids[i % nids].sandbox;
        ProtobufCMessage *resp = NULL;
        cl_status st;
        double t0 = now_s();
        if (cl_call(cs[i], "/tessera.v1.Gateway/GetSandboxConfig", &req.base,
                    &tessera__v1__get_sandbox_config_response__descriptor, 10000, &resp,
                    &st) != 0)
            note_err("GetSandboxConfig: %s", st.message);
        lat[i - first] = (uint32_t)((now_s() - t0) * 1e6);
        if (resp != NULL) protobuf_c_message_free_unpacked(resp, NULL);
    }
    qsort(lat, (size_t)n, sizeof *lat, cmp_u32);
}

static void run_conns(void)
{
    /* Root may raise the hard limit too (the bench, not the product). */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rlim_t want = 200000;
        struct rlimit more = {want, want};
        if (setrlimit(RLIMIT_NOFILE, &more) != 0) {
            rl.rlim_cur = rl.rlim_max;
            (void)setrlimit(RLIMIT_NOFILE, &rl);
        }
    }
    int stages[BN_MAX_STAGES], n_stages = 0;
    for (const char *p = opt.counts; *p != '\0' && n_stages < BN_MAX_STAGES;) {
        char *end = NULL;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 1000000 || (n_stages > 0 && v <= stages[n_stages - 1]))
            die("--count: ascending numbers, comma-separated");
        stages[n_stages++] = (int)v;
        p = *end == ',' ? end + 1 : end;
    }
    if (n_stages == 0) die("--count is required");
    int wake = opt.wake;
    if (wake > stages[0]) wake = stages[0];
    if (nghttp2_session_callbacks_new(&raw_cbs) != 0) die("out of memory");
    nghttp2_session_callbacks_set_on_header_callback(raw_cbs, raw_on_header);
    nghttp2_session_callbacks_set_on_stream_close_callback(raw_cbs, raw_on_close);

    long rss0 = rss_kib(opt.pid);
    double t0 = now_s();
    cl_conn **full = calloc((size_t)(wake > 0 ? wake : 1), sizeof *full);
    uint32_t *lat_idle = calloc((size_t)(wake > 0 ? wake : 1), sizeof *lat_idle);
    uint32_t *lat_hot = calloc((size_t)(wake > 0 ? wake : 1), sizeof *lat_hot);
    raw_conns = calloc((size_t)stages[n_stages - 1], sizeof *raw_conns);
    if (full == NULL || raw_conns == NULL || lat_idle == NULL || lat_hot == NULL)
        die("out of memory");
    for (int i = 0; i < wake; i++) {
        full[i] = open_conn(ids[i % nids].tls);
        if (full[i] == NULL) die("cannot open a connection for the wake test");
        uint32_t l;
        wake_round(full, i, 1, &l);
        atomic_fetch_add(&total_ops, 1);
    }
    printf("{\"mode\":\"conns\",\"rss_before_kib\":%ld,\"stages\":[", rss0);
    for (int k = 0; k < n_stages; k++) {
        /* From where the last stage ended (its threads overshot raw_next). */
        atomic_store(&raw_next, k == 0 ? wake : stages[k - 1]);
        raw_target = stages[k];
        pthread_t th[BN_MAX_THREADS];
        for (int i = 0; i < opt.threads; i++) pthread_create(&th[i], NULL, raw_thread, NULL);
        for (int i = 0; i < opt.threads; i++) pthread_join(th[i], NULL);
        double secs = now_s() - t0;
        sleep(3);   /* GW_PARK_AFTER_MS + ticks: every connection idle and parked */
        long rss = rss_kib(opt.pid);
        long n = atomic_load(&total_ops);
        printf("%s{\"requested\":%d,\"open\":%ld,\"rss_kib\":%ld,\"per_conn_kib\":%.2f,"
               "\"setup_seconds\":%.1f}",
               k ? "," : "", stages[k], n, rss, n > 0 ? (double)(rss - rss0) / (double)n : 0.0,
               secs);
        fflush(stdout);
    }
    /* Waking idle connections: the gateway's idle background first. */
    double b0 = cpu_s(opt.pid), bt0 = now_s();
    sleep(2);
    double bg_per_s = (cpu_s(opt.pid) - b0) / (now_s() - bt0);
    double c0 = cpu_s(opt.pid), w0 = now_s();
    wake_round(full, 0, wake, lat_idle);
    double c1 = cpu_s(opt.pid), w1 = now_s();
    wake_round(full, 0, wake, lat_hot);
    double c2 = cpu_s(opt.pid), w2 = now_s();
    long rss_woken = rss_kib(opt.pid);
    double idle_cpu = (c1 - c0 - bg_per_s * (w1 - w0)) / (wake > 0 ? wake : 1) * 1e6;
    double hot_cpu = (c2 - c1 - bg_per_s * (w2 - w1)) / (wake > 0 ? wake : 1) * 1e6;
    printf("],\"errors\":%ld,\"wake\":{\"n\":%d,\"idle_p50_us\":%u,\"idle_p99_us\":%u,"
           "\"idle_max_us\":%u,\"hot_p50_us\":%u,\"hot_p99_us\":%u,\"hot_max_us\":%u,"
           "\"idle_cpu_us_per_call\":%.1f,\"hot_cpu_us_per_call\":%.1f,"
           "\"background_cpu_per_s\":%.4f,\"rss_after_wake_kib\":%ld}}\n",
           atomic_load(&total_err), wake, wake ? lat_idle[wake / 2] : 0,
           wake ? lat_idle[wake * 99 / 100] : 0, wake ? lat_idle[wake - 1] : 0,
           wake ? lat_hot[wake / 2] : 0, wake ? lat_hot[wake * 99 / 100] : 0,
           wake ? lat_hot[wake - 1] : 0, idle_cpu, hot_cpu, bg_per_s, rss_woken);
    fflush(stdout);
    if (opt.hold > 0) sleep((unsigned)opt.hold);   /* --hold S: time to inspect the gateway */
    for (int i = 0; i < wake; i++) cl_conn_close(full[i]);
    for (int i = wake; i < stages[n_stages - 1]; i++) {
        if (raw_conns[i].ssl == NULL) continue;
        SSL_free(raw_conns[i].ssl);   /* no close_notify: the RST below ends it */
        close(raw_conns[i].fd);
    }
    free(raw_conns);
    free(full);
    free(lat_idle);
    free(lat_hot);
    nghttp2_session_callbacks_del(raw_cbs);
}

/* ---- main ---------------------------------------------------------------------- */

static void parse_args(int argc, char **argv)
{
    if (argc < 2) die("usage: bn_load MODE [options] (see bench/bn_load.c)");
    opt.mode = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL) die("option without a value");
        i++;
        if (strcmp(a, "--addr") == 0) {
            cl_addr ad;
            if (cl_addr_parse(v, 0, &ad) != 0 || ad.is_unix || ad.port == 0) die("bad --addr");
            snprintf(opt.host, sizeof opt.host, "%s", ad.host);
            opt.port = ad.port;
        } else if (strcmp(a, "--bundle") == 0) opt.bundle = v;
        else if (strcmp(a, "--cert") == 0) opt.cert = v;
        else if (strcmp(a, "--key") == 0) opt.key = v;
        else if (strcmp(a, "--ids") == 0) opt.ids_file = v;
        else if (strcmp(a, "--profile") == 0) opt.profile = v;
        else if (strcmp(a, "--threads") == 0) opt.threads = atoi(v);
        else if (strcmp(a, "--conns") == 0) opt.conns = atoi(v);
        else if (strcmp(a, "--count") == 0) opt.counts = v;
        else if (strcmp(a, "--wake") == 0) opt.wake = atoi(v);
        else if (strcmp(a, "--hold") == 0) opt.hold = atoi(v);
        else if (strcmp(a, "--seconds") == 0) opt.seconds = atoi(v);
        else if (strcmp(a, "--batch") == 0) opt.batch = atoi(v);
        else if (strcmp(a, "--rate") == 0) opt.rate = atof(v);
        else if (strcmp(a, "--pid") == 0) opt.pid = atol(v);
        else die("unknown option");
    }
    if (opt.threads < 1 || opt.threads > BN_MAX_THREADS || opt.conns < 1 ||
        opt.conns > BN_MAX_THREADS || opt.seconds < 1 || opt.batch < 1 || opt.batch > 1000 ||
        opt.wake < 0 || opt.wake > BN_MAX_IDS)
        die("option out of range");
    if (opt.port == 0) die("--addr is required");
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    void *(*fn)(void *) = NULL;
    int nthr = opt.threads;
    if (strcmp(opt.mode, "handshake") == 0) {
        hs_tls = single_tls();
        fn = hs_thread;
    } else if (strcmp(opt.mode, "unary") == 0) {
        load_ids();
        fn = unary_thread;
        nthr = opt.conns;
    } else if (strcmp(opt.mode, "renew") == 0) {
        load_ids();
        make_csrs();
        fn = renew_thread;
    } else if (strcmp(opt.mode, "logs") == 0) {
        load_ids();
        fn = logs_thread;
    } else if (strcmp(opt.mode, "cfssl") == 0) {
        make_csrs();
        fn = cfssl_thread;
    } else if (strcmp(opt.mode, "conns") == 0) {
        load_ids();
        run_conns();
        return 0;
    } else {
        die("unknown mode");
    }
    bn_thr *th = calloc((size_t)nthr, sizeof *th);
    if (th == NULL) die("out of memory");
    double t0 = now_s();
    for (int i = 0; i < nthr; i++) {
        th[i].idx = i;
        th[i].pace = opt.rate > 0 ? (double)nthr / opt.rate : 0;
        if (pthread_create(&th[i].t, NULL, fn, &th[i]) != 0) die("pthread_create");
    }
    struct timespec ts = {opt.seconds, 0};
    nanosleep(&ts, NULL);
    long ops = atomic_load(&total_ops);
    double secs = now_s() - t0;
    atomic_store(&stop_flag, true);
    for (int i = 0; i < nthr; i++) pthread_join(th[i].t, NULL);
    printf("{\"mode\":\"%s\",\"ops\":%ld,\"seconds\":%.3f,\"rate\":%.1f,\"errors\":%ld", opt.mode,
           ops, secs, (double)ops / secs, atomic_load(&total_err));
    if (fn == unary_thread) {
        size_t n = 0;
        for (int i = 0; i < nthr; i++) n += th[i].nlat;
        uint32_t *all = malloc((n ? n : 1) * sizeof *all);
        if (all == NULL) die("out of memory");
        size_t o = 0;
        for (int i = 0; i < nthr; i++) {
            memcpy(all + o, th[i].lat, th[i].nlat * sizeof *all);
            o += th[i].nlat;
        }
        qsort(all, n, sizeof *all, cmp_u32);
        printf(",\"conns\":%d,\"target_rate\":%.1f,\"p50_us\":%u,\"p90_us\":%u,\"p99_us\":%u",
               opt.conns, opt.rate, n ? all[n / 2] : 0, n ? all[n * 9 / 10] : 0,
               n ? all[n * 99 / 100] : 0);
        free(all);
    }
    printf("}\n");
    for (int i = 0; i < nthr; i++) free(th[i].lat);
    free(th);
    return 0;
}
