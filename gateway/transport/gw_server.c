/* Sockets, threads and the worker loops of the gRPC transport.
 *
 * Accepting: one listening socket per worker, all bound to the same address
 * with SO_REUSEPORT. Chosen over one acceptor thread handing descriptors to
 * workers over an eventfd queue because nothing is then shared between
 * workers but an atomic connection counter: the kernel spreads new
 * connections by 4-tuple hash, each connection is accepted, served and freed
 * on one thread, and there is no queue to bound or lock. Costs, accepted:
 * connections still queued in a worker's backlog are reset when that worker
 * closes its socket (only at shutdown), and another process of the same uid
 * could join the port group (same-uid processes can do worse anyway).
 *
 * Balancing: for a few connections the kernel's hash is a coin toss (4
 * connections on 2 workers: all on one worker 1 time in 8, 3 and 1 half the
 * time), and the busier worker's calls wait behind the others' on one core
 * while the other core idles (docs/performance.md, "Unary tail"). So a
 * worker that accepts a connection while another worker serves fewer hands
 * it over before the handshake: the descriptor goes on that worker's inbox
 * (under its held_lock, with a wakeup on its held_efd) and that worker owns
 * it from then on. Loads are per-worker atomic counts of open connections
 * (past the handshake; one handed over counts until it is adopted), so that
 * short-lived connections, which come and go within a handshake, are
 * rarely moved.
 *
 * Each connection itself (event model, backpressure, output, idle
 * connections, lifetime) is gw_conn.c; its HTTP/2 session is gw_h2.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include "grpc_frame.h"
#include "gw_server_int.h"
#include "gw_tls.h"
#include "tsr_time.h"

#define GW_PARK_AFTER_MS 1000           /* idle this long: park at the next tick */
#define GW_ACCEPTS_PER_EVENT 64
#define GW_LISTEN_BACKLOG 1024
#define GW_EVENTS 64

/* epoll tags that are not connections (connections use data.ptr). */
#define TAG_LISTEN 1u
#define TAG_TIMER 2u
#define TAG_STOP 3u
#define TAG_UNIX 4u
#define TAG_HELD 5u

/* ---- worker ------------------------------------------------------------- */

static void listen_pause(gw_loop *w, bool pause)
{
    if (w->listen_paused == pause) return;
    if (w->lfd >= 0) {
        struct epoll_event ev = {.events = pause ? 0 : EPOLLIN, .data.u64 = TAG_LISTEN};
        if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, w->lfd, &ev) != 0) return;
    }
    /* EPOLLEXCLUSIVE entries cannot be modified: remove and add back. */
    if (w->s->unix_fd >= 0 && !w->stopping && w->unix_registered == pause) {
        if (pause) {
            if (epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->s->unix_fd, NULL) == 0)
                w->unix_registered = false;
        } else {
            struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.u64 = TAG_UNIX};
            if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->s->unix_fd, &ev) == 0)
                w->unix_registered = true;
        }
    }
    w->listen_paused = pause;
}

/* See "Balancing" at the top. */
static void conn_accepted(gw_loop *w, int fd, const struct sockaddr_storage *ss)
{
    gw_server *s = w->s;
    gw_loop *t = w;
    unsigned least = atomic_load(&w->load);
    for (int i = 0; i < s->n_workers; i++) {
        unsigned l = atomic_load(&s->workers[i].load);
        if (l < least) {
            least = l;
            t = &s->workers[i];
        }
    }
    gw_incoming *in = t != w && !atomic_load(&s->stop_requested) ? malloc(sizeof *in) : NULL;
    if (in != NULL) {
        in->fd = fd;
        in->ss = *ss;
        atomic_fetch_add(&t->load, 1);   /* until it adopts it (inbox_adopt) */
        TSR_ASSERT(pthread_mutex_lock(&t->held_lock) == 0);
        bool open = !t->inbox_closed;
        bool wake = open && t->inbox == NULL && t->held_done == NULL;
        if (open) {
            in->next = t->inbox;
            t->inbox = in;
        }
        (void)pthread_mutex_unlock(&t->held_lock);
        if (open) {
            uint64_t one = 1;
            if (wake) {
                ssize_t r = write(t->held_efd, &one, sizeof one);
                (void)r;
            }
            return;
        }
        atomic_fetch_sub(&t->load, 1);
        free(in);
    }
    gw_conn_new(w, fd, ss);
}

/* Connections handed to this worker: served here from now on, or closed if
 * it is stopping. */
static void inbox_adopt(gw_loop *w, gw_incoming *list)
{
    while (list != NULL) {
        gw_incoming *in = list;
        list = in->next;
        atomic_fetch_sub(&w->load, 1);   /* counted again once it is open (gw_conn.c, conn_start) */
        if (w->stopping) {
            close(in->fd);
            atomic_fetch_sub(&w->s->n_conns, 1);
        } else {
            gw_conn_new(w, in->fd, &in->ss);
        }
        free(in);
    }
}

static void accept_ready(gw_loop *w, bool local)
{
    gw_server *s = w->s;
    int lfd = local ? s->unix_fd : w->lfd;
    for (int i = 0; i < GW_ACCEPTS_PER_EVENT && !w->stopping; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                gw_server_log(s, "accept: %s; pausing accepts for one tick", strerror(errno));
                listen_pause(w, true);
            }
            return;
        }
        if (atomic_fetch_add(&s->n_conns, 1) >= s->cfg.max_connections) {
            atomic_fetch_sub(&s->n_conns, 1);
            close(fd);
            gw_server_event(s, GW_EV_CONN_REJECTED);
            int64_t now = tsr_monotonic_ms();
            if (now - w->last_limit_log_ms >= 1000) {
                w->last_limit_log_ms = now;
                gw_server_log(s, "connection limit (%u) reached: closing new connections",
                           s->cfg.max_connections);
            }
            continue;
        }
        if (local) gw_conn_new_local(w, fd);
        else conn_accepted(w, fd, &ss);
    }
}

static void worker_begin_stop(gw_loop *w)
{
    if (w->stopping) return;
    w->stopping = true;
    w->drain_deadline_ms = tsr_monotonic_ms() + w->s->cfg.drain_timeout_ms;
    (void)epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->s->stop_efd, NULL);
    if (w->unix_registered) {   /* shared: closed by gw_server_free */
        (void)epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->s->unix_fd, NULL);
        w->unix_registered = false;
    }
    if (w->lfd >= 0) {
        (void)epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->lfd, NULL);
        close(w->lfd);
        w->lfd = -1;
    }
    gw_conn *next;
    for (gw_conn *c = w->conns; c != NULL; c = next) {
        next = c->next;
        if (c->state == GW_CONN_HANDSHAKE) {
            gw_conn_close(c, NULL);
            continue;
        }
        c->draining = true;
        gw_h2_goaway(c, "server shutting down");
        if (gw_conn_flush(c) == 0) gw_conn_settle(c);
    }
}

static void worker_tick(gw_loop *w)
{
    gw_server *s = w->s;
    int64_t now = tsr_monotonic_ms(), now_unix = tsr_now_unix();
    listen_pause(w, false);
    gw_conn *next;
    for (gw_conn *c = w->conns; c != NULL; c = next) {
        next = c->next;
        if (w->stopping && now >= w->drain_deadline_ms) {
            gw_conn_close(c, "drain timeout");
            continue;
        }
        if (c->state == GW_CONN_HANDSHAKE) {
            if (now - c->accepted_ms >= s->cfg.handshake_timeout_ms) {
                char why[80];
                snprintf(why, sizeof why, "TLS handshake timeout (%lld ms)",
                         (long long)s->cfg.handshake_timeout_ms);
                gw_server_event(s, GW_EV_HANDSHAKE_TIMEOUT);
                gw_conn_close(c, why);
            }
            continue;
        }
        const char *why = NULL;
        if (!s->cfg.still_valid(s->cfg.app, &c->principal, now_unix, &why)) {
            /* Every open call gets UNAUTHENTICATED with the reason, then GOAWAY. */
            gw_h2_credentials_ended(c, why != NULL ? why : "credentials no longer valid");
            gw_conn_kill(c, c->kill_reason);
            continue;
        }
        /* Idle as grpc's max_connection_idle: no I/O and no call in flight;
         * or no I/O at all while our output is blocked, by TCP or by the
         * peer's HTTP/2 window (a peer that stopped reading keeps nothing of
         * ours forever). */
        bool stalled = c->write_blocked || c->tx_pending > 0;
        if (s->cfg.idle_timeout_ms > 0 && now - c->last_io_ms >= s->cfg.idle_timeout_ms &&
            (gw_h2_idle(c) || stalled)) {
            gw_conn_kill(c, stalled ? "write stalled (peer not reading)" : "idle timeout");
            continue;
        }
        /* Parked: no stream (so no deadline, forwarded identity or
         * deferred call) and nothing to send; the checks above are all. */
        if (c->parked) continue;
        gw_h2_tick(c, now, now_unix);
        if (c->kill) {
            gw_conn_kill(c, c->kill_reason);
            continue;
        }
        if (gw_conn_flush(c) != 0) continue;
        gw_conn_settle(c);
        if (!c->parked && c->state == GW_CONN_OPEN && !c->draining && !c->write_blocked &&
            c->out.p == NULL && now - c->last_io_ms >= GW_PARK_AFTER_MS &&
            (c->ssl == NULL || !SSL_has_pending(c->ssl)) && gw_h2_park(c))
            c->parked = true;
    }
}

static void free_zombies(gw_loop *w)
{
    while (w->zombies != NULL) {
        gw_conn *c = w->zombies;
        w->zombies = c->next;
        free(c);
    }
}

static void run_again(gw_loop *w)
{
    gw_conn *list = w->again;
    w->again = NULL;
    while (list != NULL) {
        gw_conn *c = list;
        list = c->again_next;
        c->in_again = false;
        c->again_next = NULL;
        if (c->state == GW_CONN_OPEN) gw_conn_service(c, 0);
    }
}

/* ---- held calls (gw_rpc.h) ------------------------------------------------ */

void gw_held_call_complete(gw_held_call *h, gw_response *resp)
{
    TSR_ASSERT(h != NULL && resp != NULL);
    gw_loop *w = h->w;
    h->resp = *resp;
    resp->body = NULL;
    resp->body_len = 0;
    TSR_ASSERT(pthread_mutex_lock(&w->held_lock) == 0);
    bool first = w->held_done == NULL && w->inbox == NULL;
    h->next = w->held_done;
    w->held_done = h;
    (void)pthread_mutex_unlock(&w->held_lock);
    /* One wakeup per batch: a non-empty list (completions or handed-over
     * connections) was already signalled, and the worker takes both lists
     * after it read the eventfd (held_drain), so this goes with that one. */
    if (!first) return;
    uint64_t one = 1;
    ssize_t r = write(w->held_efd, &one, sizeof one);  /* cannot overflow: one per batch */
    (void)r;
}

/* Send the answers of the held calls completed so far. Their connections
 * are flushed once each, after this epoll batch (run_again). */
static void held_drain(gw_loop *w)
{
    uint64_t n;
    ssize_t r = read(w->held_efd, &n, sizeof n);   /* EAGAIN is fine */
    (void)r;
    TSR_ASSERT(pthread_mutex_lock(&w->held_lock) == 0);
    gw_held_call *list = w->held_done;
    w->held_done = NULL;
    gw_incoming *incoming = w->inbox;
    w->inbox = NULL;
    (void)pthread_mutex_unlock(&w->held_lock);
    inbox_adopt(w, incoming);
    gw_held_call *fifo = NULL;   /* answer in completion order */
    while (list != NULL) {
        gw_held_call *h = list;
        list = h->next;
        h->next = fifo;
        fifo = h;
    }
    while (fifo != NULL) {
        gw_held_call *h = fifo;
        fifo = h->next;
        gw_conn *c = gw_h2_held_finish(h);
        if (c == NULL || c->state != GW_CONN_OPEN) continue;
        if (c->kill) gw_conn_kill(c, c->kill_reason);   /* its identity ended meanwhile */
        else gw_conn_again(c);
    }
}

/* Leaving: every held call is completed by its owner (the committer commits
 * what is queued before it stops), so wait for the last answers. */
static void held_wait(gw_loop *w)
{
    while (w->n_held > 0) {
        struct pollfd pfd = {.fd = w->held_efd, .events = POLLIN};
        if (poll(&pfd, 1, 1000) < 0 && errno != EINTR) break;
        held_drain(w);
    }
    held_drain(w);
}

static void *worker_main(void *arg)
{
    gw_loop *w = arg;
    gw_server *s = w->s;
    if (s->cfg.worker_init != NULL) {
        w->state = s->cfg.worker_init(s->cfg.app, w->index);
        if (w->state == NULL) {
            gw_server_log(s, "worker %d: worker_init failed", w->index);
            atomic_store(&s->failed, 1);
            gw_server_stop(s);
            return NULL;
        }
    }
    struct epoll_event evs[GW_EVENTS];
    for (;;) {
        if (!w->stopping && atomic_load(&s->stop_requested)) worker_begin_stop(w);
        if (w->stopping && w->conns == NULL) break;
        int n = epoll_wait(w->epfd, evs, GW_EVENTS, w->again != NULL ? 0 : -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            gw_server_log(s, "worker %d: epoll_wait: %s", w->index, strerror(errno));
            atomic_store(&s->failed, 1);
            gw_server_stop(s);
            break;
        }
        for (int i = 0; i < n; i++) {
            uint64_t tag = evs[i].data.u64;
            if (tag == TAG_LISTEN || tag == TAG_UNIX) {
                accept_ready(w, tag == TAG_UNIX);
            } else if (tag == TAG_TIMER) {
                uint64_t ticks;
                ssize_t r = read(w->tfd, &ticks, sizeof ticks);  /* EAGAIN is fine */
                (void)r;
                worker_tick(w);
            } else if (tag == TAG_STOP) {
                worker_begin_stop(w);
            } else if (tag == TAG_HELD) {
                held_drain(w);
            } else {
                gw_conn_event(evs[i].data.ptr, evs[i].events);
            }
        }
        run_again(w);
        free_zombies(w);
    }
    /* Leaving on error: close what is left. */
    while (w->conns != NULL) gw_conn_close(w->conns, NULL);
    held_wait(w);
    /* No more connections handed over: close any that were. */
    TSR_ASSERT(pthread_mutex_lock(&w->held_lock) == 0);
    w->inbox_closed = true;
    gw_incoming *incoming = w->inbox;
    w->inbox = NULL;
    (void)pthread_mutex_unlock(&w->held_lock);
    w->stopping = true;
    inbox_adopt(w, incoming);
    free_zombies(w);
    if (s->cfg.worker_fini != NULL && w->state != NULL) s->cfg.worker_fini(w->state);
    w->state = NULL;
    return NULL;
}

/* ---- server ------------------------------------------------------------- */

static int listen_socket(const struct addrinfo *ai, uint16_t port, int *out)
{
    struct sockaddr_storage ss;
    memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
    if (ss.ss_family == AF_INET) ((struct sockaddr_in *)&ss)->sin_port = htons(port);
    else ((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    TSR_ENSURE(fd >= 0, TSR_E_IO, "socket: %s", strerror(errno));
    int one = 1;
    /* TCP_NODELAY here: accepted sockets inherit it (one setsockopt per
     * listener, not per connection). */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
        int e = errno;
        close(fd);
        return TSR_FAIL(TSR_E_IO, "setsockopt: %s", strerror(e));
    }
    if (bind(fd, (struct sockaddr *)&ss, ai->ai_addrlen) != 0 || listen(fd, GW_LISTEN_BACKLOG) != 0) {
        int e = errno;
        close(fd);
        return TSR_FAIL(TSR_E_IO, "bind/listen on port %u: %s", (unsigned)port, strerror(e));
    }
    *out = fd;
    return 0;
}

static int epoll_add(int epfd, int fd, uint64_t tag)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = tag};
    TSR_ENSURE(epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == 0, TSR_E_IO, "epoll_ctl: %s",
               strerror(errno));
    return 0;
}

static int worker_setup(gw_server *s, gw_loop *w, const struct addrinfo *ai)
{
    TSR_GUARD(listen_socket(ai, s->port, &w->lfd));
    if (s->port == 0) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        TSR_ENSURE(getsockname(w->lfd, (struct sockaddr *)&ss, &sl) == 0, TSR_E_IO,
                   "getsockname: %s", strerror(errno));
        s->port = ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                                          : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    TSR_ENSURE((w->epfd = epoll_create1(EPOLL_CLOEXEC)) >= 0, TSR_E_IO, "epoll_create1: %s",
               strerror(errno));
    TSR_ENSURE((w->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) >= 0,
               TSR_E_IO, "timerfd_create: %s", strerror(errno));
    struct itimerspec its = {
        .it_interval = {.tv_sec = 0, .tv_nsec = GW_SERVER_TICK_MS * 1000000L},
        .it_value = {.tv_sec = 0, .tv_nsec = GW_SERVER_TICK_MS * 1000000L},
    };
    TSR_ENSURE(timerfd_settime(w->tfd, 0, &its, NULL) == 0, TSR_E_IO, "timerfd_settime: %s",
               strerror(errno));
    TSR_GUARD(epoll_add(w->epfd, w->lfd, TAG_LISTEN));
    TSR_GUARD(epoll_add(w->epfd, w->tfd, TAG_TIMER));
    TSR_GUARD(epoll_add(w->epfd, s->stop_efd, TAG_STOP));
    if (s->unix_fd >= 0) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.u64 = TAG_UNIX};
        TSR_ENSURE(epoll_ctl(w->epfd, EPOLL_CTL_ADD, s->unix_fd, &ev) == 0, TSR_E_IO,
                   "epoll_ctl: %s", strerror(errno));
        w->unix_registered = true;
    }
    TSR_ENSURE((w->out = malloc(GW_OUT_BUF)) != NULL, TSR_E_INTERNAL, "out of memory");
    TSR_ENSURE((w->held_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) >= 0, TSR_E_IO,
               "eventfd: %s", strerror(errno));
    TSR_GUARD(epoll_add(w->epfd, w->held_efd, TAG_HELD));
    return 0;
}

/* ---- the unix socket ---------------------------------------------------- */

/* An existing file at the path: a socket nobody listens on (left by a
 * crash) is removed; a live socket or anything else is an error. */
static int unix_clear_stale(const char *path, const struct sockaddr_un *sa)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        TSR_ENSURE(errno == ENOENT, TSR_E_IO, "unix socket %s: %s", path, strerror(errno));
        return 0;
    }
    TSR_ENSURE(S_ISSOCK(st.st_mode), TSR_E_INPUT,
               "unix socket %s: the path exists and is not a socket; not replacing it", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    TSR_ENSURE(fd >= 0, TSR_E_IO, "socket: %s", strerror(errno));
    int r = connect(fd, (const struct sockaddr *)sa, sizeof *sa);
    int e = errno;
    close(fd);
    TSR_ENSURE(r != 0, TSR_E_IO, "unix socket %s is in use by another process", path);
    TSR_ENSURE(e == ECONNREFUSED, TSR_E_IO, "unix socket %s: connect: %s", path, strerror(e));
    TSR_ENSURE(unlink(path) == 0 || errno == ENOENT, TSR_E_IO, "unix socket %s: unlink: %s",
               path, strerror(errno));
    return 0;
}

/* Bind with the mode already in place (umask during bind: no window with
 * wider permissions, nothing to chmod through a path an attacker could
 * swap), set the group without following a symlink, and only then listen:
 * nobody connects (ECONNREFUSED) before the permissions are final. The
 * umask is process-wide: gw_server_new runs before the application starts
 * other threads that create files. */
static int unix_listen(gw_server *s)
{
    const char *path = s->cfg.unix_path;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, path, strlen(path) + 1);
    TSR_GUARD(unix_clear_stale(path, &sa));
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    TSR_ENSURE(fd >= 0, TSR_E_IO, "socket: %s", strerror(errno));
    struct stat st;
    const char *step = "bind";
    mode_t old = umask((mode_t)(~s->cfg.unix_mode & 0777u));
    int r = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    int e = errno;
    umask(old);
    bool bound = r == 0;
    if (r == 0 && s->cfg.unix_set_group) {
        step = "chown";
        if ((r = lchown(path, (uid_t)-1, s->cfg.unix_gid)) != 0) e = errno;
    }
    if (r == 0) {
        step = "stat";
        if ((r = lstat(path, &st)) != 0) e = errno;
    }
    if (r == 0 && (!S_ISSOCK(st.st_mode) || (st.st_mode & 0777u) != s->cfg.unix_mode)) {
        step = "unexpected file type or mode after bind";
        r = -1;
        e = EPERM;
    }
    if (r == 0) {
        step = "listen";
        if ((r = listen(fd, GW_LISTEN_BACKLOG)) != 0) e = errno;
    }
    if (r != 0) {
        if (bound) (void)unlink(path);
        close(fd);
        return TSR_FAIL(TSR_E_IO, "unix socket %s: %s: %s", path, step, strerror(e));
    }
    s->unix_fd = fd;
    s->unix_dev = st.st_dev;
    s->unix_ino = st.st_ino;
    return 0;
}

static void unix_close(gw_server *s)
{
    if (s->unix_fd < 0) return;
    close(s->unix_fd);
    s->unix_fd = -1;
    /* Remove the file only if it is still the one we made. */
    struct stat st;
    if (lstat(s->cfg.unix_path, &st) == 0 && st.st_dev == s->unix_dev && st.st_ino == s->unix_ino)
        (void)unlink(s->cfg.unix_path);
}

static int config_fill(gw_server_config *c)
{
    TSR_ENSURE(c->ssl_ctx != NULL, TSR_E_INPUT, "server config: ssl_ctx is required");
    TSR_ENSURE(c->authenticate != NULL && c->still_valid != NULL && c->authorize != NULL,
               TSR_E_INPUT, "server config: authenticate, still_valid and authorize are required");
    TSR_ENSURE(c->methods != NULL || c->n_methods == 0, TSR_E_INPUT, "server config: methods");
    TSR_ENSURE(c->forward_header == NULL || c->authenticate_forwarded != NULL, TSR_E_INPUT,
               "server config: forward_header needs authenticate_forwarded");
    if (c->unix_path != NULL) {
        TSR_ENSURE(c->authenticate_local != NULL, TSR_E_INPUT,
                   "server config: unix_path needs authenticate_local");
        TSR_ENSURE(c->unix_path[0] != '\0' &&
                       strlen(c->unix_path) < sizeof(((struct sockaddr_un *)0)->sun_path),
                   TSR_E_INPUT, "unix socket path must be 1..107 bytes");
        if (c->unix_mode == 0) c->unix_mode = 0600;
        TSR_ENSURE((c->unix_mode & ~0777u) == 0, TSR_E_INPUT, "unix socket mode %o", c->unix_mode);
    }
    for (size_t i = 0; i < c->n_methods; i++) {
        const gw_method *m = &c->methods[i];
        TSR_ENSURE(m->path != NULL && m->path[0] == '/', TSR_E_INPUT,
                   "method %zu: path must start with '/'", i);
        TSR_ENSURE((m->unary != NULL) + (m->client_stream != NULL) + (m->stream != NULL) == 1,
                   TSR_E_INPUT, "method %s: exactly one of unary, client_stream and stream",
                   m->path);
        if (m->stream != NULL)
            TSR_ENSURE(m->stream->message != NULL, TSR_E_INPUT,
                       "method %s: stream needs message", m->path);
        if (m->client_stream != NULL)
            TSR_ENSURE(m->client_stream->message != NULL && m->client_stream->finish != NULL,
                       TSR_E_INPUT, "method %s: client_stream needs message and finish", m->path);
    }
    if (c->workers <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        c->workers = n > 0 ? (int)n : 1;
    }
    if (c->workers > GW_SERVER_MAX_WORKERS) c->workers = GW_SERVER_MAX_WORKERS;
    if (c->max_message_bytes == 0) c->max_message_bytes = GRPC_DEFAULT_MAX_MESSAGE;
    TSR_ENSURE(c->max_message_bytes <= GRPC_MAX_MESSAGE_LIMIT, TSR_E_INPUT,
               "max_message_bytes above %u", GRPC_MAX_MESSAGE_LIMIT);
    if (c->max_concurrent_streams == 0) c->max_concurrent_streams = GW_SERVER_DEFAULT_MAX_STREAMS;
    if (c->max_connections == 0) c->max_connections = GW_SERVER_DEFAULT_MAX_CONNECTIONS;
    if (c->handshake_timeout_ms <= 0) c->handshake_timeout_ms = GW_SERVER_DEFAULT_HANDSHAKE_TIMEOUT_MS;
    if (c->idle_timeout_ms == 0) c->idle_timeout_ms = GW_SERVER_DEFAULT_IDLE_TIMEOUT_MS;
    if (c->drain_timeout_ms <= 0) c->drain_timeout_ms = GW_SERVER_DEFAULT_DRAIN_TIMEOUT_MS;
    if (c->listen_host == NULL) c->listen_host = "127.0.0.1";
    return 0;
}

int gw_server_new(const gw_server_config *cfg, gw_server **out)
{
    int rc = -1;
    gw_server *s = NULL;
    struct addrinfo *res = NULL;

    *out = NULL;
    TSR_TRY_ENSURE((s = calloc(1, sizeof *s)) != NULL, TSR_E_INTERNAL, "out of memory");
    s->stop_efd = -1;
    s->unix_fd = -1;
    TSR_TRY_ENSURE(pthread_mutex_init(&s->ctx_lock, NULL) == 0, TSR_E_INTERNAL,
                   "pthread_mutex_init failed");
    s->cfg = *cfg;
    TSR_TRY(config_fill(&s->cfg));
    TSR_TRY_OSSL(SSL_CTX_up_ref(s->cfg.ssl_ctx), TSR_E_INTERNAL, "SSL_CTX_up_ref");
    s->ssl_ctx = s->cfg.ssl_ctx;
    s->cfg.ssl_ctx = NULL;   /* only s->ssl_ctx, under ctx_lock, from now on */
    s->conn_rx_budget = GW_CONN_RX_BUDGET(s->cfg.max_message_bytes);
    TSR_TRY(gw_h2_setup(s));
    TSR_TRY_ENSURE((s->stop_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) >= 0, TSR_E_IO,
                   "eventfd: %s", strerror(errno));

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    int gai = getaddrinfo(s->cfg.listen_host, "0", &hints, &res);
    TSR_TRY_ENSURE(gai == 0 && res != NULL, TSR_E_INPUT, "cannot resolve listen host %s: %s",
                   s->cfg.listen_host, gai_strerror(gai));
    TSR_TRY_ENSURE(res->ai_family == AF_INET || res->ai_family == AF_INET6, TSR_E_INPUT,
                   "listen host %s is not IPv4/IPv6", s->cfg.listen_host);

    s->n_workers = s->cfg.workers;
    TSR_TRY_ENSURE((s->workers = calloc((size_t)s->n_workers, sizeof *s->workers)) != NULL,
                   TSR_E_INTERNAL, "out of memory");
    for (int i = 0; i < s->n_workers; i++) {
        gw_loop *w = &s->workers[i];
        w->s = s;
        w->index = i;
        w->epfd = w->lfd = w->tfd = w->held_efd = -1;
        TSR_TRY_ENSURE(pthread_mutex_init(&w->held_lock, NULL) == 0, TSR_E_INTERNAL,
                       "pthread_mutex_init failed");
        w->held_lock_ready = true;
    }
    s->port = s->cfg.listen_port;
    if (s->cfg.unix_path != NULL) TSR_TRY(unix_listen(s));
    for (int i = 0; i < s->n_workers; i++) TSR_TRY(worker_setup(s, &s->workers[i], res));

    *out = s;
    s = NULL;
    rc = 0;
out:
    if (res != NULL) freeaddrinfo(res);
    gw_server_free(s);
    return rc;
}

uint16_t gw_server_port(const gw_server *s)
{
    return s->port;
}

int gw_server_run(gw_server *s)
{
    TSR_ENSURE(!s->ran, TSR_E_STATE, "gw_server_run called twice");
    s->ran = true;
    /* Workers block asynchronous signals (they inherit this mask): the
     * application's signal handlers run on its own threads, and SIGPIPE from a
     * write to a closed socket stays pending instead of killing us. */
    sigset_t all, old;
    sigfillset(&all);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    sigdelset(&all, SIGABRT);
    sigdelset(&all, SIGTRAP);
    sigdelset(&all, SIGSYS);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (int i = 0; i < s->n_workers; i++) {
        gw_loop *w = &s->workers[i];
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            atomic_store(&s->failed, 1);
            gw_server_stop(s);
            break;
        }
        w->started = true;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    for (int i = 0; i < s->n_workers; i++)
        if (s->workers[i].started) pthread_join(s->workers[i].thread, NULL);
    TSR_ENSURE(atomic_load(&s->failed) == 0, TSR_E_INTERNAL, "a server worker failed");
    return 0;
}

void gw_server_stop(gw_server *s)
{
    if (s == NULL) return;
    atomic_store(&s->stop_requested, 1);
    uint64_t one = 1;
    ssize_t r = write(s->stop_efd, &one, sizeof one);
    (void)r;
}

void gw_server_free(gw_server *s)
{
    if (s == NULL) return;
    for (int i = 0; s->workers != NULL && i < s->n_workers; i++) {
        gw_loop *w = &s->workers[i];
        TSR_ASSERT(!w->started || w->conns == NULL);
        if (w->lfd >= 0) close(w->lfd);
        if (w->tfd >= 0) close(w->tfd);
        if (w->epfd >= 0) close(w->epfd);
        if (w->held_efd >= 0) close(w->held_efd);
        free(w->out);
        TSR_ASSERT(w->held_done == NULL);
        if (w->held_lock_ready) pthread_mutex_destroy(&w->held_lock);
    }
    free(s->workers);
    unix_close(s);
    if (s->stop_efd >= 0) close(s->stop_efd);
    gw_h2_teardown(s);
    SSL_CTX_free(s->ssl_ctx);
    pthread_mutex_destroy(&s->ctx_lock);
    free(s);
}

int gw_server_set_ssl_ctx(gw_server *s, SSL_CTX *ctx)
{
    TSR_ENSURE(s != NULL && ctx != NULL, TSR_E_INPUT, "gw_server_set_ssl_ctx: NULL argument");
    TSR_ENSURE(SSL_CTX_up_ref(ctx) == 1, TSR_E_INTERNAL, "SSL_CTX_up_ref failed");
    TSR_ASSERT(pthread_mutex_lock(&s->ctx_lock) == 0);
    SSL_CTX *old = s->ssl_ctx;
    s->ssl_ctx = ctx;
    (void)pthread_mutex_unlock(&s->ctx_lock);
    SSL_CTX_free(old);   /* freed for real when its last connection is gone */
    return 0;
}
