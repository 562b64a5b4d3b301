/* GET /metrics over plain HTTP/1.1, one connection at a time, on one thread.
 *
 * Why not the gRPC transport: metrics are scraped by a plain HTTP client
 * without a certificate, and a separate listener cannot be confused with
 * the authenticated API. Why one connection at a time: the scraper is one
 * local process; a client that stalls holds the listener for at most
 * GW_METRICS_IO_TIMEOUT_MS. */
#include "gw_metrics_server.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gw_metrics.h"
#include "tsr_time.h"

struct gw_metrics_server {
    int lfd, stop_fd;
    uint16_t port;
    pthread_t thread;
    bool started;
};

/* Wait for `events` on fd until the deadline; false on timeout, stop or error. */
static bool wait_fd(gw_metrics_server *m, int fd, short events, int64_t deadline_ms)
{
    for (;;) {
        int64_t left = deadline_ms - tsr_monotonic_ms();
        if (left <= 0) return false;
        struct pollfd p[2] = {{.fd = fd, .events = events}, {.fd = m->stop_fd, .events = POLLIN}};
        int n = poll(p, 2, (int)left);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0 || (p[1].revents & POLLIN)) return false;
        if (p[0].revents & (events | POLLHUP | POLLERR)) return true;
    }
}

static void send_all(gw_metrics_server *m, int fd, const char *data, size_t len,
                     int64_t deadline_ms)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, data + off, len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) &&
            wait_fd(m, fd, POLLOUT, deadline_ms))
            continue;
        return;
    }
}

static void respond(gw_metrics_server *m, int fd, const char *status, const char *extra,
                    const char *body, size_t body_len, int64_t deadline_ms)
{
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %s\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: %zu\r\n"
                     "Cache-Control: no-store\r\n"
                     "Connection: close\r\n"
                     "%s\r\n",
                     status,
                     body != NULL ? "text/plain; version=0.0.4; charset=utf-8"
                                  : "text/plain; charset=utf-8",
                     body != NULL ? body_len : strlen(status) + 1, extra);
    if (n <= 0 || (size_t)n >= sizeof head) return;
    send_all(m, fd, head, (size_t)n, deadline_ms);
    if (body != NULL) {
        send_all(m, fd, body, body_len, deadline_ms);
    } else {
        send_all(m, fd, status, strlen(status), deadline_ms);
        send_all(m, fd, "\n", 1, deadline_ms);
    }
}

/* The request line of a complete head: "GET /metrics HTTP/1.1". */
static void serve_request(gw_metrics_server *m, int fd, const char *req, size_t len,
                          int64_t deadline_ms)
{
    const char *eol = memchr(req, '\r', len);
    if (eol == NULL || memchr(req, '\0', len) != NULL) {
        respond(m, fd, "400 Bad Request", "", NULL, 0, deadline_ms);
        return;
    }
    size_t line_len = (size_t)(eol - req);
    const char *sp1 = memchr(req, ' ', line_len);
    const char *sp2 = sp1 != NULL ? memchr(sp1 + 1, ' ', line_len - (size_t)(sp1 + 1 - req))
                                  : NULL;
    if (sp1 == NULL || sp2 == NULL || sp1 == req || sp2 == sp1 + 1) {
        respond(m, fd, "400 Bad Request", "", NULL, 0, deadline_ms);
        return;
    }
    size_t vlen = line_len - (size_t)(sp2 + 1 - req);
    if (!((vlen == 8 && (memcmp(sp2 + 1, "HTTP/1.1", 8) == 0 ||
                         memcmp(sp2 + 1, "HTTP/1.0", 8) == 0)))) {
        respond(m, fd, "400 Bad Request", "", NULL, 0, deadline_ms);
        return;
    }
    size_t mlen = (size_t)(sp1 - req), tlen = (size_t)(sp2 - sp1 - 1);
    if (!(mlen == 3 && memcmp(req, "GET", 3) == 0)) {
        respond(m, fd, "405 Method Not Allowed", "Allow: GET\r\n", NULL, 0, deadline_ms);
        return;
    }
    if (!(tlen == 8 && memcmp(sp1 + 1, "/metrics", 8) == 0)) {
        respond(m, fd, "404 Not Found", "", NULL, 0, deadline_ms);
        return;
    }
    char *body = NULL;
    size_t body_len = 0;
    if (gw_metrics_render(&body, &body_len) != 0) {
        respond(m, fd, "500 Internal Server Error", "", NULL, 0, deadline_ms);
        return;
    }
    respond(m, fd, "200 OK", "", body, body_len, deadline_ms);
    free(body);
}

/* Read the request head (up to the empty line), bounded in size and time. */
static void serve_conn(gw_metrics_server *m, int fd)
{
    int64_t deadline = tsr_monotonic_ms() + GW_METRICS_IO_TIMEOUT_MS;
    char buf[GW_METRICS_REQUEST_MAX + 1];
    size_t used = 0;
    for (;;) {
        ssize_t n = recv(fd, buf + used, sizeof buf - 1 - used, 0);
        if (n > 0) {
            used += (size_t)n;
            buf[used] = '\0';
            /* Look for the end of the head in what may contain it. */
            size_t from = used > (size_t)n + 3 ? used - (size_t)n - 3 : 0;
            const char *end = memmem(buf + from, used - from, "\r\n\r\n", 4);
            if (end != NULL) {
                serve_request(m, fd, buf, (size_t)(end - buf) + 2, deadline);
                return;
            }
            if (used >= GW_METRICS_REQUEST_MAX) {
                respond(m, fd, "431 Request Header Fields Too Large", "", NULL, 0, deadline);
                return;
            }
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) &&
            wait_fd(m, fd, POLLIN, deadline))
            continue;
        return;   /* closed, error, timeout or stop */
    }
}

static void *metrics_main(void *arg)
{
    gw_metrics_server *m = arg;
    for (;;) {
        struct pollfd p[2] = {{.fd = m->lfd, .events = POLLIN},
                              {.fd = m->stop_fd, .events = POLLIN}};
        int n = poll(p, 2, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 || (p[1].revents & POLLIN)) break;
        if (!(p[0].revents & POLLIN)) continue;
        int fd = accept4(m->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                usleep(100 * 1000);   /* out of descriptors: do not spin */
            continue;
        }
        serve_conn(m, fd);
        (void)shutdown(fd, SHUT_WR);
        close(fd);
    }
    return NULL;
}

static void server_free(gw_metrics_server *m)
{
    if (m->lfd >= 0) close(m->lfd);
    if (m->stop_fd >= 0) close(m->stop_fd);
    free(m);
}

int gw_metrics_server_start(const char *host, uint16_t port, gw_metrics_server **out)
{
    int rc = -1;
    struct addrinfo *res = NULL;
    gw_metrics_server *m = calloc(1, sizeof *m);
    *out = NULL;
    TSR_ENSURE(m != NULL, TSR_E_INTERNAL, "out of memory");
    m->lfd = m->stop_fd = -1;

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    char port_text[8];
    snprintf(port_text, sizeof port_text, "%u", (unsigned)port);
    int gai = getaddrinfo(host, port_text, &hints, &res);
    TSR_TRY_ENSURE(gai == 0 && res != NULL, TSR_E_INPUT, "metrics: cannot resolve %s: %s", host,
                   gai_strerror(gai));
    m->lfd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    TSR_TRY_ENSURE(m->lfd >= 0, TSR_E_IO, "metrics: socket: %s", strerror(errno));
    int one = 1;
    (void)setsockopt(m->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    TSR_TRY_ENSURE(bind(m->lfd, res->ai_addr, res->ai_addrlen) == 0 && listen(m->lfd, 16) == 0,
                   TSR_E_IO, "metrics: bind/listen on %s:%u: %s", host, (unsigned)port,
                   strerror(errno));
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    TSR_TRY_ENSURE(getsockname(m->lfd, (struct sockaddr *)&ss, &sl) == 0, TSR_E_IO,
                   "metrics: getsockname: %s", strerror(errno));
    m->port = ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                                      : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    m->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    TSR_TRY_ENSURE(m->stop_fd >= 0, TSR_E_IO, "metrics: eventfd: %s", strerror(errno));

    /* The thread takes no asynchronous signals (the application's threads do). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int e = pthread_create(&m->thread, NULL, metrics_main, m);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    TSR_TRY_ENSURE(e == 0, TSR_E_INTERNAL, "metrics: cannot start its thread: %s", strerror(e));
    m->started = true;
    *out = m;
    m = NULL;
    rc = 0;
out:
    if (res != NULL) freeaddrinfo(res);
    if (m != NULL) server_free(m);
    return rc;
}

uint16_t gw_metrics_server_port(const gw_metrics_server *m)
{
    return m->port;
}

void gw_metrics_server_stop(gw_metrics_server *m)
{
    if (m == NULL) return;
    if (m->started) {
        uint64_t one = 1;
        ssize_t r = write(m->stop_fd, &one, sizeof one);
        (void)r;
        pthread_join(m->thread, NULL);
    }
    server_free(m);
}
