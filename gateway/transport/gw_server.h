/* The gateway's gRPC server transport: TCP + TLS (gw_tls) + HTTP/2
 * (nghttp2) + gRPC framing (grpc/grpc_frame), on N worker threads.
 *
 * Threads: every worker has its own epoll loop, its own SO_REUSEPORT
 * listening socket and a 250 ms timerfd; a connection lives and dies on the
 * worker that accepted it, so connection state needs no locks. Handlers run
 * inline on that worker (a slow handler delays that worker's other
 * connections). Worker threads block asynchronous signals: signals are
 * handled by the thread that called gw_server_run (or any other thread of
 * the application), which may call gw_server_stop from a signal handler.
 *
 * Per connection: TLS handshake (bounded by handshake_timeout_ms), then
 * `authenticate` once and `still_valid` once; the principal is stored in the
 * connection and handed read-only to every call (except a call whose request
 * carries `forward_header`: `authenticate_forwarded` may give that one call
 * its own principal, see below). Then HTTP/2 with
 * SETTINGS_MAX_CONCURRENT_STREAMS = max_concurrent_streams. `still_valid`
 * runs again on every timer tick (every 250 ms) for every connection and
 * before each new call; false closes the connection at once (GOAWAY, then
 * close). `authorize` runs immediately before every method callback, so
 * what a call may do is decided when it runs, not when it was admitted. */
#ifndef GW_SERVER_H
#define GW_SERVER_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <sys/types.h>
#include <stddef.h>
#include <stdint.h>

#include "gw_principal.h"
#include "gw_rpc.h"
#include "tsr_err.h"

/* Defaults used for zero fields of gw_server_config. */
#define GW_SERVER_DEFAULT_MAX_STREAMS 100u
#define GW_SERVER_DEFAULT_MAX_CONNECTIONS 1024u
#define GW_SERVER_DEFAULT_HANDSHAKE_TIMEOUT_MS 10000
#define GW_SERVER_DEFAULT_IDLE_TIMEOUT_MS 300000
#define GW_SERVER_DEFAULT_DRAIN_TIMEOUT_MS 5000
#define GW_SERVER_MAX_WORKERS 256
#define GW_SERVER_TICK_MS 250

typedef struct gw_server gw_server;

/* Connection-level events for counters (gw_server_config.event). */
enum gw_server_event {
    GW_EV_CONN_OPEN = 0,        /* accepted: counts toward max_connections until CLOSE */
    GW_EV_CONN_CLOSE,
    GW_EV_CONN_REJECTED,        /* closed at accept: max_connections reached */
    GW_EV_HANDSHAKE_TIMEOUT,    /* no TLS handshake within handshake_timeout_ms */
    GW_EV_HANDSHAKE_CLOSED,     /* the peer closed or reset during the handshake */
    GW_EV_HANDSHAKE_TLS,        /* TLS failure: alert, protocol, version, cipher, ALPN */
    GW_EV_COUNT
};

/* The caller on the unix socket, from SO_PEERCRED at accept. */
typedef struct gw_local_peer {
    pid_t pid;
    uid_t uid;
    gid_t gid;
} gw_local_peer;

typedef struct gw_server_config {
    const char *listen_host; uint16_t listen_port;   /* port 0 = ephemeral */
    int workers;                                      /* threads; 0 = online CPUs */
    SSL_CTX *ssl_ctx;                                 /* from gw_tls; the server takes
                                                         its own reference */
    const gw_method *methods; size_t n_methods;       /* not copied: must outlive the server */
    /* 0 = default: 4 MiB, 100 streams, 1024 connections, 10 s handshake,
     * 300 s idle; idle_timeout_ms < 0 disables the idle timeout. */
    uint32_t max_message_bytes, max_concurrent_streams, max_connections;
    int64_t handshake_timeout_ms, idle_timeout_ms;
    void *app;
    /* Per worker thread, may be NULL. A NULL result is a failure: the server
     * stops and gw_server_run returns -1. */
    void *(*worker_init)(void *app, int index);
    void (*worker_fini)(void *worker);
    /* Once per connection, right after the handshake: fill the principal from the SSL peer
       (ANONYMOUS when no cert). Return -1 only for an internal failure (connection closed). */
    int (*authenticate)(void *app, void *worker, SSL *ssl, gw_principal *out);
    /* Called at least every 500 ms for every open connection (and before each new call):
       false => every call still open on the connection is answered UNAUTHENTICATED with
       *why (a short static text, e.g. "certificate revoked"), then the connection is
       closed (GOAWAY, then close) — revocation and notAfter enforcement. */
    bool (*still_valid)(void *app, const gw_principal *p, int64_t now_unix, const char **why);
    /* Required: the dispatcher's check, immediately before every callback of
     * a method runs (a unary handler; a client stream's open, each message
     * and finish; the completion of a held call), with ctx->principal the
     * call's principal (forwarded or the connection's) and m the method (its
     * rule). 0 runs the callback; -1 answers the call with resp's status and
     * message instead. When the connection's own principal is no longer
     * still_valid, the connection is closed as well. */
    int (*authorize)(const gw_call_ctx *ctx, const gw_method *m, gw_response *resp);
    /* Optional: one line per notable transport event (handshake failures,
     * timeouts, connections closed by still_valid, limits). Called from
     * worker threads; never given secrets. */
    void (*log)(void *app, const char *line);
    int64_t drain_timeout_ms;   /* gw_server_stop: in-flight grace; 0 = 5 s */

    /* Optional, for counters; called from worker threads, must not block. */
    void (*event)(void *app, enum gw_server_event ev);
    /* Optional: once per call that reached a method (methods[method]), with
     * its final status (CANCELLED when the stream or connection died first)
     * and the time spent inside the method's callbacks (handler_ran false
     * when none ran, e.g. a deadline that passed before the request ended). */
    void (*call_done)(void *app, size_t method, enum gw_status status, int64_t handler_ns,
                      bool handler_ran);
    /* Optional: a call reached methods[method] (its headers named it), and
     * the same call ended with `status` elapsed_ns after that (for the
     * standard grpc_server_* metrics, gw_metrics_grpc.h). */
    void (*call_started)(void *app, size_t method);
    void (*call_finished)(void *app, size_t method, enum gw_status status, int64_t elapsed_ns);

    /* Forwarded client certificates (docs/operations.md). forward_header: a lowercase
     * request header name, or NULL to look at none. For every call whose
     * request carries it, authenticate_forwarded runs before the method,
     * with ctx->principal the connection's principal, the header's first
     * value (at most the request's header-list limit) and how many times it
     * appeared. It returns
     *    0: *out is this call's principal (the stream's, not the connection's;
     *       it is re-checked with still_valid on every tick like a connection);
     *    1: the header is ignored: the call runs as the connection's
     *       principal (the transport logs it);
     *   -1: internal failure: the call ends with INTERNAL. */
    const char *forward_header;
    int (*authenticate_forwarded)(const gw_call_ctx *ctx, const uint8_t *value, size_t value_len,
                                  unsigned count, gw_principal *out);

    /* Optional: a unix-socket listener for a local trusted proxy (docs/operations.md),
     * e.g. nginx `grpc_pass unix:PATH`: plaintext HTTP/2 with prior
     * knowledge (h2c), no TLS. NULL = none. The socket file is created with
     * unix_mode (0 = 0600) and, when unix_set_group, group unix_gid, both
     * before listen(), so no one connects under other permissions. An
     * existing socket file nobody listens on (a crash) is replaced; a live
     * one, or any other kind of file, is an error. The file is removed at
     * gw_server_free if it is still ours. Connections on it count toward
     * max_connections, get no handshake, and their principal comes from
     * authenticate_local (required with unix_path) instead of authenticate;
     * their peer text (logs, ctx->peer_addr) is "unix:uid=U,pid=P". */
    const char *unix_path;
    uint32_t unix_mode;
    bool unix_set_group;
    gid_t unix_gid;
    int (*authenticate_local)(void *app, void *worker, const gw_local_peer *peer,
                              gw_principal *out);
} gw_server_config;

/* Validate the config, bind + listen (one SO_REUSEPORT socket per worker). */
TSR_WUR int gw_server_new(const gw_server_config *cfg, gw_server **out);
uint16_t gw_server_port(const gw_server *s);   /* actual port after bind */
/* Run the workers; blocks until gw_server_stop and the drain are done.
 * -1 if a worker could not start (worker_init NULL, thread, epoll). */
TSR_WUR int gw_server_run(gw_server *s);
/* Async-signal-safe. Stop accepting; send GOAWAY on every connection, let
 * in-flight calls finish for up to drain_timeout_ms, then close the rest. */
void gw_server_stop(gw_server *s);
void gw_server_free(gw_server *s);
/* Thread-safe (not async-signal-safe): NEW connections use `ctx` from now
 * on; open connections keep the context they were accepted with. The server
 * takes its own reference (SSL_CTX_up_ref); the caller keeps its own. */
TSR_WUR int gw_server_set_ssl_ctx(gw_server *s, SSL_CTX *ctx);

#endif
