/* The client's way to its gateway: resolve and connect (TCP or a unix
 * socket, within the deadline), then the TLS handshake over a socket BIO
 * with the server's identity checked (cl_internal.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cl_internal.h"
#include "tsr_time.h"

static void set_nonblock_opts(int fd, bool tcp)
{
    if (tcp) {
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
}

/* Wait for a non-blocking connect; 0 connected, else errno. */
static int wait_connect(int fd, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - tsr_monotonic_ms();
        if (left <= 0) return ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int r = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return errno;
        if (r == 0) return ETIMEDOUT;
        int err = 0;
        socklen_t el = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0) return errno;
        return err;
    }
}

static int connect_one(int family, const struct sockaddr *sa, socklen_t salen, int64_t deadline,
                       int *fd_out)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return errno;
    int err = 0;
    if (connect(fd, sa, salen) != 0) {
        err = errno;
        if (err == EINPROGRESS || err == EAGAIN || err == EINTR) err = wait_connect(fd, deadline);
    }
    if (err != 0) {
        close(fd);
        return err;
    }
    set_nonblock_opts(fd, family != AF_UNIX);
    *fd_out = fd;
    return 0;
}

int cl_dial(cl_conn *c, const cl_addr *a, int64_t deadline, cl_status *st)
{
    int err = 0;
    if (a->is_unix) {
        struct sockaddr_un sun;
        memset(&sun, 0, sizeof sun);
        sun.sun_family = AF_UNIX;
        size_t pl = strlen(a->host);
        if (pl >= sizeof sun.sun_path)
            return cl_fail_status(st, GW_STATUS_INVALID_ARGUMENT, "unix socket path too long");
        memcpy(sun.sun_path, a->host, pl + 1);
        err = connect_one(AF_UNIX, (const struct sockaddr *)&sun, sizeof sun, deadline, &c->fd);
    } else {
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
        char port[8];
        snprintf(port, sizeof port, "%u", (unsigned)a->port);
        int gai = getaddrinfo(a->host, port, &hints, &res);
        if (gai != 0)
            return cl_fail_status(st, GW_STATUS_UNAVAILABLE, "cannot resolve %s: %s", a->host,
                               gai_strerror(gai));
        err = ENOENT;
        for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
            err = connect_one(ai->ai_family, ai->ai_addr, ai->ai_addrlen, deadline, &c->fd);
            if (err == 0 || err == ETIMEDOUT) break;
        }
        freeaddrinfo(res);
    }
    if (err == ETIMEDOUT)
        return cl_fail_status(st, GW_STATUS_UNAVAILABLE, "cannot connect to %s: timed out",
                           c->target);
    if (err != 0)
        return cl_fail_status(st, GW_STATUS_UNAVAILABLE, "cannot connect to %s: %s", c->target,
                           strerror(err));
    return 0;
}

/* A socket BIO that never raises SIGPIPE (send with MSG_NOSIGNAL): a
 * library must not kill its process when the server closes first. */
static BIO_METHOD *g_bio_method;
static pthread_once_t g_bio_once = PTHREAD_ONCE_INIT;

static int bio_fd(BIO *b)
{
    return (int)(intptr_t)BIO_get_data(b);
}

static int bio_write(BIO *b, const char *buf, int len)
{
    BIO_clear_retry_flags(b);
    ssize_t n = send(bio_fd(b), buf, (size_t)len, MSG_NOSIGNAL);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) BIO_set_retry_write(b);
        return -1;
    }
    return (int)n;
}

static int bio_read(BIO *b, char *buf, int len)
{
    BIO_clear_retry_flags(b);
    ssize_t n = recv(bio_fd(b), buf, (size_t)len, 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) BIO_set_retry_read(b);
        return -1;
    }
    if (n == 0) BIO_set_flags(b, BIO_FLAGS_IN_EOF);
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH: return 1;
    case BIO_CTRL_EOF: return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0;
    default: return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void bio_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "tessera-socket");
    if (m == NULL) return;
    if (BIO_meth_set_write(m, bio_write) != 1 || BIO_meth_set_read(m, bio_read) != 1 ||
        BIO_meth_set_ctrl(m, bio_ctrl) != 1 || BIO_meth_set_create(m, bio_create) != 1) {
        BIO_meth_free(m);
        return;
    }
    g_bio_method = m; /* lives for the process */
}

static BIO *socket_bio(int fd)
{
    (void)pthread_once(&g_bio_once, bio_method_init);
    if (g_bio_method == NULL) return NULL;
    BIO *b = BIO_new(g_bio_method);
    if (b != NULL) BIO_set_data(b, (void *)(intptr_t)fd);
    return b;
}

static bool host_is_ip(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

int cl_tls_handshake(cl_conn *c, const cl_addr *a, cl_tls *tls, int64_t deadline,
                     cl_status *st)
{
    c->gen = cl_tls_acquire(tls);
    c->ssl = SSL_new(c->gen->ctx);
    if (c->ssl == NULL) return cl_fail_status(st, GW_STATUS_INTERNAL, "SSL_new failed");
    c->hs.magic = CL_TLS_HS_MAGIC;
    c->hs.host = a->host;
    c->hs.check_host = c->gen->verify_host && !a->is_unix;
    SSL_set_app_data(c->ssl, &c->hs);
    BIO *bio = socket_bio(c->fd);
    if (bio == NULL) return cl_fail_status(st, GW_STATUS_INTERNAL, "cannot make the socket BIO");
    SSL_set_bio(c->ssl, bio, bio); /* the SSL owns it */
    /* OpenSSL 3.0's SSL_set_tlsext_host_name macro casts away const: hand it
     * a copy (clang -Wcast-qual). */
    char sni[sizeof a->host];
    memcpy(sni, a->host, sizeof sni);
    if (!a->is_unix && !host_is_ip(a->host) && SSL_set_tlsext_host_name(c->ssl, sni) != 1)
        return cl_fail_status(st, GW_STATUS_INTERNAL, "cannot set SNI");
    SSL_set_options(c->ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
    for (;;) {
        ERR_clear_error();
        int r = SSL_connect(c->ssl);
        if (r == 1) break;
        int e = SSL_get_error(c->ssl, r);
        short ev = 0;
        if (e == SSL_ERROR_WANT_READ) ev = POLLIN;
        else if (e == SSL_ERROR_WANT_WRITE) ev = POLLOUT;
        if (ev == 0) {
            if (c->hs.refused) {
                ERR_clear_error();
                return cl_fail_status(st, GW_STATUS_UNAUTHENTICATED, "%s: %s", c->target,
                                   c->hs.reason);
            }
            char why[256];
            cl_ssl_error_text(e, why, sizeof why);
            return cl_fail_status(st, GW_STATUS_UNAVAILABLE, "TLS handshake with %s failed: %s",
                               c->target, why);
        }
        int64_t left = deadline - tsr_monotonic_ms();
        if (left <= 0)
            return cl_fail_status(st, GW_STATUS_UNAVAILABLE, "TLS handshake with %s timed out",
                               c->target);
        struct pollfd p = {.fd = c->fd, .events = ev};
        int pr = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (pr < 0 && errno != EINTR)
            return cl_fail_status(st, GW_STATUS_UNAVAILABLE, "poll: %s", strerror(errno));
    }
    /* Fail closed: the identity callback must have accepted this server. */
    if (!c->hs.verified || SSL_get0_peer_certificate(c->ssl) == NULL)
        return cl_fail_status(st, GW_STATUS_UNAUTHENTICATED,
                           "%s: server identity not verified (no certificate)", c->target);
    const unsigned char *proto = NULL;
    unsigned int plen = 0;
    SSL_get0_alpn_selected(c->ssl, &proto, &plen);
    if (proto == NULL || plen != 2 || memcmp(proto, "h2", 2) != 0)
        return cl_fail_status(st, GW_STATUS_UNAVAILABLE, "%s did not negotiate HTTP/2 (ALPN h2)",
                           c->target);
    return 0;
}
