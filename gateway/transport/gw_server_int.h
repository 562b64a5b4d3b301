/* Internal to the transport (gw_server.c, gw_conn.c, gw_h2*.c): connection,
 * worker and server state. Nothing outside the transport includes this. */
#ifndef GW_SERVER_INT_H
#define GW_SERVER_INT_H

#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "gw_server.h"
#include "tsr_buf.h"

typedef struct gw_loop gw_loop;
typedef struct gw_stream gw_stream;

enum gw_conn_state { GW_CONN_HANDSHAKE = 0, GW_CONN_OPEN, GW_CONN_CLOSED };

typedef struct gw_conn {
    struct gw_conn *prev, *next;   /* worker's live list, or its zombie list once closed */
    struct gw_conn *again_next;    /* worker's "SSL has buffered input" list */
    bool in_again;
    gw_loop *w;
    int fd;
    SSL *ssl;                      /* NULL on the unix socket (plaintext h2c) */
    bool local;                    /* accepted on the unix socket */
    enum gw_conn_state state;
    uint32_t ev_mask;              /* events currently registered with epoll */
    bool hs_want_write;            /* handshake waits for EPOLLOUT */
    bool ssl_fatal;                /* no SSL_shutdown after a fatal TLS error */
    int64_t accepted_ms, last_io_ms;
    char peer[64];                 /* "127.0.0.1:53122" / "[::1]:53122" */
    gw_principal principal;        /* set once after the handshake; read-only after */

    /* HTTP/2 */
    nghttp2_session *h2;
    bool h2_creating;              /* inside nghttp2_session_server_new3 (gw_h2.c) */
    void *h2_framebuf, *h2_map;    /* nghttp2's page-placed buffers (gw_h2_park) */
    bool parked;                   /* idle: gw_h2_park ran, out freed (gw_conn.c) */
    bool counted;                  /* in w->load (gw_server.c, "Balancing") */
    gw_stream *streams;            /* live streams (gw_h2.c) */
    size_t rx_budget;              /* bytes of partial request messages still allowed */
    size_t tx_pending;             /* bytes of answers submitted, not yet sent (gw_h2.c) */
    uint32_t goaway_error;         /* HTTP/2 error code of our GOAWAY (0 = NO_ERROR) */

    /* TLS plaintext produced by nghttp2 that SSL_write did not take yet
     * (TCP was full); NULL when nothing waits (gw_conn.c, "Output").
     * Bounded: we pull from nghttp2 only while it holds < GW_OUT_HIGH_WATER. */
    tsr_buf out;
    bool write_blocked;            /* SSL_write needs EPOLLOUT (or EPOLLIN) first */
    bool write_wants_read;
    bool read_wants_write;

    /* Set inside nghttp2 callbacks (which must not close the connection):
     * the connection gets GOAWAY and is closed once the callback returns. */
    bool kill;
    char kill_reason[300];
    bool draining;                 /* graceful GOAWAY sent (server stop) */
    bool h2_error_logged;
} gw_conn;

/* A unary call answered later (gw_call_hold). `st` belongs to the worker
 * thread (NULL once the stream is gone); `resp` and `next` are written by
 * the completing thread before it queues the call under held_lock. */
struct gw_held_call {
    gw_loop *w;
    gw_stream *st;
    gw_response resp;
    gw_held_call *next;
};

/* A connection accepted by another worker and handed to this one
 * (gw_server.c, "Balancing"). */
typedef struct gw_incoming {
    int fd;
    struct sockaddr_storage ss;
    struct gw_incoming *next;
} gw_incoming;

/* One worker thread: its event loop and the connections it owns. */
struct gw_loop {
    gw_server *s;
    int index;
    pthread_t thread;
    bool started;
    int epfd, lfd, tfd;
    bool unix_registered;          /* s->unix_fd is in this worker's epoll set */
    bool listen_paused;            /* accept hit EMFILE/ENFILE: retry at the next tick */
    void *state;                   /* worker_init result */
    gw_conn *conns;
    size_t n_conns;
    gw_conn *zombies;              /* closed during this epoll batch, freed after it */
    gw_conn *again;
    uint8_t *out;                  /* the output buffer of all its connections (gw_conn.c) */
    bool stopping;
    int64_t drain_deadline_ms;
    int64_t last_limit_log_ms;
    /* Held calls: completed ones are queued here by any thread, which then
     * writes held_efd; the worker sends their answers. n_held (worker only)
     * counts holds not yet finished: the worker does not exit before 0. */
    int held_efd;
    pthread_mutex_t held_lock;
    bool held_lock_ready;
    gw_held_call *held_done;
    size_t n_held;
    /* Balancing: the open connections this worker serves, plus those handed
     * to it and not yet adopted (read by the others); the connections handed
     * to it, under held_lock and signalled on held_efd; inbox_closed once
     * the worker has exited. */
    atomic_uint load;
    gw_incoming *inbox;
    bool inbox_closed;
};

struct gw_server {
    gw_server_config cfg;          /* defaults filled in */
    int n_workers;
    gw_loop *workers;
    uint16_t port;
    int stop_efd;
    atomic_int stop_requested;
    atomic_int failed;
    atomic_uint n_conns;
    bool ran;
    nghttp2_session_callbacks *h2_callbacks;   /* shared read-only by all sessions */
    nghttp2_option *h2_option;
    size_t conn_rx_budget;         /* GW_CONN_RX_BUDGET(cfg.max_message_bytes) */
    /* The context for NEW connections (one reference held here); replaced by
     * gw_server_set_ssl_ctx. Each SSL holds its own reference to the context
     * it was made from, so open connections keep theirs. */
    pthread_mutex_t ctx_lock;
    SSL_CTX *ssl_ctx;
    /* The unix-socket listener (cfg.unix_path), shared by every worker's
     * epoll set (EPOLLEXCLUSIVE); -1 when none. */
    int unix_fd;
    dev_t unix_dev;                /* the socket file we created */
    ino_t unix_ino;
};

#define GW_OUT_HIGH_WATER (64 * 1024)   /* TLS plaintext we hold before SSL_write */
/* The worker's output buffer: the high-water mark plus the largest piece
 * nghttp2_session_mem_send returns at once (one frame buffer: 9 + 1 + 16384). */
#define GW_OUT_BUF (GW_OUT_HIGH_WATER + 9 + 1 + 16384)

/* Partial request messages one connection may buffer: one maximal message
 * plus room for concurrent smaller ones. */
#define GW_CONN_RX_BUDGET(max_message) (2 * (size_t)(max_message) + (1u << 20))

/* gw_conn.c: one connection, on the worker thread that owns it. */
void gw_server_log(const gw_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void gw_server_event(const gw_server *s, enum gw_server_event ev);
void gw_conn_log(const gw_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *gw_conn_principal_text(const gw_conn *c, char *buf, size_t cap);
/* A TCP connection accepted (or handed over) to w: TLS handshake next. */
void gw_conn_new(gw_loop *w, int fd, const struct sockaddr_storage *ss);
/* A connection on the unix socket (h2c, SO_PEERCRED): HTTP/2 at once. */
void gw_conn_new_local(gw_loop *w, int fd);
void gw_conn_event(gw_conn *c, uint32_t events);  /* epoll reported events for c */
/* Flush, read, then settle (events: what epoll reported, or 0). */
void gw_conn_service(gw_conn *c, uint32_t events);
/* Move nghttp2's output into TLS until done or blocked. -1 if closed. */
TSR_WUR int gw_conn_flush(gw_conn *c);
/* After progress: close when HTTP/2 is finished, else re-arm epoll. */
void gw_conn_settle(gw_conn *c);
void gw_conn_again(gw_conn *c);                   /* service again after this batch */
void gw_conn_kill(gw_conn *c, const char *why);   /* log, GOAWAY, one flush, close */
/* Close now (why: logged, or NULL); freed after the epoll batch (zombies). */
void gw_conn_close(gw_conn *c, const char *why);

/* gw_h2.c */
TSR_WUR int gw_h2_setup(gw_server *s);           /* callbacks + options, once */
void gw_h2_teardown(gw_server *s);
TSR_WUR int gw_h2_session_new(gw_conn *c);       /* server session + our SETTINGS */
/* Feed decrypted bytes. -1: fatal HTTP/2 error (c->kill_reason says why). */
TSR_WUR int gw_h2_recv(gw_conn *c, const uint8_t *data, size_t len);
/* Stream deadlines, still_valid for forwarded principals, deferred calls. */
void gw_h2_tick(gw_conn *c, int64_t now_ms, int64_t now_unix);
/* The connection's own credentials ended (why: "certificate revoked", ...):
 * every call still open on it is answered UNAUTHENTICATED with why, and the
 * connection is marked to close (c->kill: GOAWAY after those answers). */
void gw_h2_credentials_ended(gw_conn *c, const char *why);
void gw_h2_goaway(gw_conn *c, const char *why);  /* GOAWAY(c->goaway_error, last stream) */
bool gw_h2_done(gw_conn *c);                      /* nghttp2 wants neither read nor write */
bool gw_h2_idle(const gw_conn *c);                /* no live stream */
/* An idle connection's session gives back the pages of its output frame
 * buffer and (when empty) of its stream map; false when it is not idle
 * (a stream is open or something is left to send). */
bool gw_h2_park(gw_conn *c);
/* gw_h2_idle_mem.c: nghttp2's allocator for c's session, which places the
 * two buffers gw_h2_park gives back on whole pages (c->h2_framebuf, h2_map). */
nghttp2_mem gw_h2_mem(gw_conn *c);
void gw_h2_free(gw_conn *c);                      /* streams (close()), session */
/* Worker thread: send a completed held call's answer if its stream still
 * waits, free h. Returns the connection to flush, or NULL. */
gw_conn *gw_h2_held_finish(gw_held_call *h);

/* gw_h2_pipe.c. Test seam (fuzz/fuzz_h2_session.c): one server-side connection with no
 * socket and no TLS, driven exactly as gw_conn.c drives a connection once
 * its handshake is done: session setup, then per read gw_h2_recv, a kill
 * becomes GOAWAY, and all output nghttp2 wants to send is pulled. The
 * principal is fixed; cfg must give methods, still_valid,
 * max_message_bytes and max_concurrent_streams (no defaults are filled in). */
typedef struct gw_h2_pipe gw_h2_pipe;
typedef void (*gw_h2_sink)(void *arg, const uint8_t *data, size_t len);
TSR_WUR int gw_h2_pipe_new(const gw_server_config *cfg, const gw_principal *principal,
                           gw_h2_pipe **out);
/* Feed client bytes as one decrypted read; every byte the server sends
 * (SETTINGS, responses, GOAWAY) goes to sink (may be NULL). -1 (TSR_E_PROTO
 * with the reason) when the server closes the connection; it stays closed. */
TSR_WUR int gw_h2_pipe_io(gw_h2_pipe *p, const uint8_t *in, size_t len, gw_h2_sink sink,
                          void *arg);
void gw_h2_pipe_tick(gw_h2_pipe *p, int64_t now_ms);  /* then gw_h2_pipe_io(p, NULL, 0, ...) */
void gw_h2_pipe_goaway(gw_h2_pipe *p, const char *why);  /* server stop (graceful) */
void gw_h2_pipe_free(gw_h2_pipe *p);

#endif
