#include "gw_bundle_endpoint.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gw_bundle.h"
#include "gw_config.h"
#include "tsr_time.h"

struct gw_bundle_endpoint {
    gw_app *app;
    int lfd, stop_fd;
    uint16_t port;
    pthread_t thread;
    bool started;
    atomic_int active;           /* connection threads running */
    SSL_CTX *ctx;                /* accept thread only; connections hold a reference */
    struct stat cert_st, key_st; /* of the files ctx was built from */
};

typedef struct conn_job {
    gw_bundle_endpoint *ep;
    SSL_CTX *ctx;
    int fd;
} conn_job;

int gw_bundle_sequence_follow(const gw_pki *prev, gw_pki *next)
{
    if (prev == NULL) return 0;
    int64_t seq;
    if (strcmp(prev->bundle_pem, next->bundle_pem) == 0)
        seq = prev->spiffe_sequence;   /* the same roots: the same document */
    else if (next->spiffe_sequence > prev->spiffe_sequence)
        return 0;
    else
        seq = prev->spiffe_sequence + 1;
    if (seq == next->spiffe_sequence) return 0;
    char *json = NULL;
    size_t len = 0;
    TSR_GUARD(gw_spiffe_bundle_json(next->roots, seq, GW_BUNDLE_REFRESH_HINT, &json, &len));
    free(next->spiffe_bundle_json);
    next->spiffe_bundle_json = json;
    next->spiffe_sequence = seq;
    return 0;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* The TLS context for new connections, rebuilt when a file changed. On a
 * failure the previous one (if any) stays. */
static int refresh_ctx(gw_bundle_endpoint *ep)
{
    gw_pki *pki = gw_app_pki(ep->app);
    const gw_config *cfg = pki->cfg;
    const char *cert = cfg->bundle_cert_path[0] ? cfg->bundle_cert_path : cfg->server_cert_path;
    const char *key = cfg->bundle_cert_path[0] ? cfg->bundle_key_path : cfg->server_key_path;
    int rc = -1;
    SSL_CTX *ctx = NULL;
    struct stat cs, ks;
    TSR_TRY_ENSURE(stat(cert, &cs) == 0 && stat(key, &ks) == 0, TSR_E_IO,
                   "bundle endpoint: %s or %s: %s", cert, key, strerror(errno));
    if (ep->ctx != NULL && same_file(&cs, &ep->cert_st) && same_file(&ks, &ep->key_st)) {
        rc = 0;
        goto out;
    }
    TSR_TRY_ENSURE((ctx = SSL_CTX_new(TLS_server_method())) != NULL, TSR_E_INTERNAL,
                   "SSL_CTX_new");
    (void)SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);   /* no client certificate */
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        (void)TSR_FAIL(TSR_E_INPUT, "bundle endpoint: cannot use %s with %s", cert, key);
        goto out;
    }
    SSL_CTX_free(ep->ctx);
    ep->ctx = ctx;
    ctx = NULL;
    ep->cert_st = cs;
    ep->key_st = ks;
    rc = 0;
out:
    SSL_CTX_free(ctx);
    gw_pki_release(pki);
    return rc;
}

/* Wait for fd (or stop) until the deadline: true when fd is ready. */
static bool wait_io(gw_bundle_endpoint *ep, int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - tsr_monotonic_ms();
        if (left <= 0) return false;
        struct pollfd p[2] = {{.fd = fd, .events = events}, {.fd = ep->stop_fd, .events = POLLIN}};
        int n = poll(p, 2, (int)left);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0 || (p[1].revents & POLLIN)) return false;
        return true;
    }
}

/* Drive one non-blocking SSL operation to completion or the deadline. */
static int ssl_io(gw_bundle_endpoint *ep, SSL *ssl, int fd, int64_t deadline, int r)
{
    int err = SSL_get_error(ssl, r);
    if (err == SSL_ERROR_WANT_READ) return wait_io(ep, fd, POLLIN, deadline) ? 1 : -1;
    if (err == SSL_ERROR_WANT_WRITE) return wait_io(ep, fd, POLLOUT, deadline) ? 1 : -1;
    return -1;
}

static void ssl_send(gw_bundle_endpoint *ep, SSL *ssl, int fd, const char *buf, size_t len,
                     int64_t deadline)
{
    size_t off = 0;
    while (off < len) {
        size_t done = 0;
        int r = SSL_write_ex(ssl, buf + off, len - off, &done);
        if (r == 1) {
            off += done;
            continue;
        }
        if (ssl_io(ep, ssl, fd, deadline, r) < 0) return;
    }
}

static void respond(gw_bundle_endpoint *ep, SSL *ssl, int fd, int64_t deadline,
                    const char *status, const char *type, const char *extra, const char *body)
{
    size_t body_len = strlen(body);
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\nConnection: close\r\n%s\r\n",
                     status, type, body_len, extra);
    if (n <= 0 || (size_t)n >= sizeof head) return;
    ssl_send(ep, ssl, fd, head, (size_t)n, deadline);
    ssl_send(ep, ssl, fd, body, body_len, deadline);
}

/* One request: "GET / HTTP/1.1" (any headers). */
static void answer(gw_bundle_endpoint *ep, SSL *ssl, int fd, const char *head, size_t len,
                   int64_t deadline)
{
    static const char text[] = "text/plain; charset=utf-8";
    const char *eol = memchr(head, '\r', len);
    size_t line = eol != NULL ? (size_t)(eol - head) : 0;
    if (eol == NULL || memchr(head, '\0', len) != NULL || line < 14 ||
        (memcmp(head + line - 9, " HTTP/1.1", 9) != 0 &&
         memcmp(head + line - 9, " HTTP/1.0", 9) != 0)) {
        respond(ep, ssl, fd, deadline, "400 Bad Request", text, "", "400 Bad Request\n");
        return;
    }
    if (memcmp(head, "GET ", 4) != 0) {
        respond(ep, ssl, fd, deadline, "405 Method Not Allowed", text, "Allow: GET\r\n",
                "405 Method Not Allowed: GET / serves the SPIFFE bundle\n");
        return;
    }
    size_t target_len = line - 4 - 9;
    if (!(target_len == 1 && head[4] == '/')) {
        respond(ep, ssl, fd, deadline, "404 Not Found", text, "",
                "404 Not Found: GET / serves the SPIFFE bundle\n");
        return;
    }
    gw_pki *pki = gw_app_pki(ep->app);
    respond(ep, ssl, fd, deadline, "200 OK", "application/json", "", pki->spiffe_bundle_json);
    gw_pki_release(pki);
}

static void serve(gw_bundle_endpoint *ep, SSL_CTX *ctx, int fd)
{
    int64_t deadline = tsr_monotonic_ms() + GW_BUNDLE_EP_DEADLINE_MS;
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) goto out;
    for (;;) {
        int r = SSL_accept(ssl);
        if (r == 1) break;
        if (ssl_io(ep, ssl, fd, deadline, r) < 0) goto out;
    }
    char buf[GW_BUNDLE_EP_REQUEST_MAX + 1];
    size_t used = 0;
    for (;;) {
        size_t got = 0;
        int r = SSL_read_ex(ssl, buf + used, sizeof buf - 1 - used, &got);
        if (r != 1) {
            if (ssl_io(ep, ssl, fd, deadline, r) < 0) goto out;
            continue;
        }
        used += got;
        buf[used] = '\0';
        const char *end = memmem(buf, used, "\r\n\r\n", 4);
        if (end != NULL) {
            answer(ep, ssl, fd, buf, (size_t)(end - buf) + 2, deadline);
            break;
        }
        if (used >= GW_BUNDLE_EP_REQUEST_MAX) {
            respond(ep, ssl, fd, deadline, "431 Request Header Fields Too Large",
                    "text/plain; charset=utf-8", "", "431 Request Header Fields Too Large\n");
            break;
        }
    }
    (void)SSL_shutdown(ssl);
out:
    SSL_free(ssl);
    ERR_clear_error();
}

static void *conn_main(void *arg)
{
    conn_job *j = arg;
    serve(j->ep, j->ctx, j->fd);
    (void)shutdown(j->fd, SHUT_RDWR);
    close(j->fd);
    SSL_CTX_free(j->ctx);
    atomic_fetch_sub(&j->ep->active, 1);
    free(j);
    return NULL;
}

static void *accept_main(void *arg)
{
    gw_bundle_endpoint *ep = arg;
    for (;;) {
        struct pollfd p[2] = {{.fd = ep->lfd, .events = POLLIN},
                              {.fd = ep->stop_fd, .events = POLLIN}};
        int n = poll(p, 2, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 || (p[1].revents & POLLIN)) break;
        if (!(p[0].revents & POLLIN)) continue;
        int fd = accept4(ep->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                usleep(100 * 1000);
            continue;
        }
        if (atomic_load(&ep->active) >= GW_BUNDLE_EP_MAX_CONNS) {
            close(fd);
            continue;
        }
        if (refresh_ctx(ep) != 0) {
            fprintf(stderr, "<3>tessera-gateway: %s\n", tsr_errmsg());
            if (ep->ctx == NULL) {
                close(fd);
                continue;
            }
        }
        conn_job *j = calloc(1, sizeof *j);
        pthread_attr_t attr;
        pthread_t t;
        if (j == NULL || SSL_CTX_up_ref(ep->ctx) != 1) {
            free(j);
            close(fd);
            continue;
        }
        *j = (conn_job){.ep = ep, .ctx = ep->ctx, .fd = fd};
        atomic_fetch_add(&ep->active, 1);
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &attr, conn_main, j) != 0) {
            atomic_fetch_sub(&ep->active, 1);
            SSL_CTX_free(j->ctx);
            close(fd);
            free(j);
        }
        pthread_attr_destroy(&attr);
    }
    return NULL;
}

static void endpoint_free(gw_bundle_endpoint *ep)
{
    if (ep->lfd >= 0) close(ep->lfd);
    if (ep->stop_fd >= 0) close(ep->stop_fd);
    SSL_CTX_free(ep->ctx);
    free(ep);
}

int gw_bundle_endpoint_start(gw_app *app, gw_bundle_endpoint **out)
{
    int rc = -1;
    struct addrinfo *res = NULL;
    const gw_config *cfg = app->cfg;
    gw_bundle_endpoint *ep = calloc(1, sizeof *ep);
    *out = NULL;
    TSR_ENSURE(ep != NULL, TSR_E_INTERNAL, "out of memory");
    ep->app = app;
    ep->lfd = ep->stop_fd = -1;
    TSR_TRY(refresh_ctx(ep));
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    char port_text[8];
    snprintf(port_text, sizeof port_text, "%u", (unsigned)cfg->bundle_port);
    int gai = getaddrinfo(cfg->bundle_host, port_text, &hints, &res);
    TSR_TRY_ENSURE(gai == 0 && res != NULL, TSR_E_INPUT, "bundle endpoint: cannot resolve %s: %s",
                   cfg->bundle_host, gai_strerror(gai));
    ep->lfd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    TSR_TRY_ENSURE(ep->lfd >= 0, TSR_E_IO, "bundle endpoint: socket: %s", strerror(errno));
    int one = 1;
    (void)setsockopt(ep->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    TSR_TRY_ENSURE(bind(ep->lfd, res->ai_addr, res->ai_addrlen) == 0 && listen(ep->lfd, 64) == 0,
                   TSR_E_IO, "bundle endpoint: bind/listen on %s:%u: %s", cfg->bundle_host,
                   (unsigned)cfg->bundle_port, strerror(errno));
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    TSR_TRY_ENSURE(getsockname(ep->lfd, (struct sockaddr *)&ss, &sl) == 0, TSR_E_IO,
                   "bundle endpoint: getsockname: %s", strerror(errno));
    ep->port = ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                                       : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    ep->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    TSR_TRY_ENSURE(ep->stop_fd >= 0, TSR_E_IO, "bundle endpoint: eventfd: %s", strerror(errno));
    /* Its threads take no asynchronous signals (the application's do). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int e = pthread_create(&ep->thread, NULL, accept_main, ep);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    TSR_TRY_ENSURE(e == 0, TSR_E_INTERNAL, "bundle endpoint: cannot start its thread: %s",
                   strerror(e));
    ep->started = true;
    *out = ep;
    ep = NULL;
    rc = 0;
out:
    if (res != NULL) freeaddrinfo(res);
    if (ep != NULL) endpoint_free(ep);
    return rc;
}

uint16_t gw_bundle_endpoint_port(const gw_bundle_endpoint *ep)
{
    return ep->port;
}

void gw_bundle_endpoint_stop(gw_bundle_endpoint *ep)
{
    if (ep == NULL) return;
    if (ep->started) {
        uint64_t one = 1;
        ssize_t r = write(ep->stop_fd, &one, sizeof one);
        (void)r;
        pthread_join(ep->thread, NULL);
        /* Connections see the stop at their next wait. */
        while (atomic_load(&ep->active) > 0) usleep(1000);
    }
    endpoint_free(ep);
}
