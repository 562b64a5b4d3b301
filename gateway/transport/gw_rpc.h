/* The seam between the gRPC transport (gw_server, gw_h2; framing from grpc/)
 * and the RPC handlers. The transport owns sockets, TLS, HTTP/2 and gRPC
 * framing; the handlers own authorization and the store. A handler sees one
 * complete, size-checked, uncompressed message at a time and answers with a
 * status and (on OK) a serialized response. */
#ifndef GW_RPC_H
#define GW_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gw_principal.h"

#include "grpc_frame.h"   /* enum gw_status, GRPC_MESSAGE_MAX */


/* What a handler knows about its call. Valid for the duration of the call. */
typedef struct gw_call_ctx {
    const gw_principal *principal;  /* of the connection; read-only */
    const char *method;             /* "/tessera.v1.Gateway/GetSandbox" */
    int64_t deadline_ms;            /* tsr_monotonic_ms() deadline; 0 = none */
    void *app;                      /* gw_server_config.app (shared by all workers) */
    void *worker;                   /* this worker thread's state (worker_init) */
    const char *peer_addr;          /* "127.0.0.1:53122", for audit lines */
    void *transport;                /* the transport's call (gw_call_hold); NULL outside it */
} gw_call_ctx;

/* A handler's answer. body (malloc'd, owned by the transport afterwards) is
 * sent only when status is GW_STATUS_OK. message is sent as grpc-message. */
typedef struct gw_response {
    enum gw_status status;
    char message[GRPC_MESSAGE_MAX];  /* sent as grpc-message */
    uint8_t *body;
    size_t body_len;
    bool body_is_secret;   /* the transport cleanses body before freeing it */
} gw_response;
_Static_assert(sizeof(((gw_response *)0)->message) == GRPC_MESSAGE_MAX,
               "gw_response.message holds GRPC_MESSAGE_MAX bytes");

/* Set status and a printf-style message; returns -1 for tail calls. */
int gw_response_fail(gw_response *resp, enum gw_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The one mapping of an error category (the thread's tsr_errcat) to a
 * status: TSR_E_INPUT INVALID_ARGUMENT, _UNAUTH UNAUTHENTICATED, _DENIED
 * PERMISSION_DENIED, _NOTFOUND NOT_FOUND, _EXISTS ALREADY_EXISTS, _LIMIT
 * RESOURCE_EXHAUSTED, _STATE FAILED_PRECONDITION, _IO UNAVAILABLE ("storage
 * unavailable: ..."), anything else INTERNAL; the message is tsr_errmsg(). */
void gw_fail_from_error(gw_response *resp);

typedef void (*gw_unary_fn)(const gw_call_ctx *ctx, const uint8_t *msg, size_t len,
                            gw_response *resp);

/* Deferred answers. A unary handler that waits for something done on
 * another thread (e.g. the group commit of a certificate record) calls
 * gw_call_hold and returns at once: the transport then ignores `resp` (its
 * body is freed) and keeps the call open, serving other calls meanwhile.
 * Later, from any thread, gw_held_call_complete hands over the answer
 * (exactly once per hold); the worker that owns the call sends it. If the
 * stream was reset, its deadline passed or the connection closed meanwhile,
 * the answer is dropped. NULL from gw_call_hold (no transport behind ctx,
 * out of memory): answer through resp as usual. */
typedef struct gw_held_call gw_held_call;
gw_held_call *gw_call_hold(const gw_call_ctx *ctx);
/* Takes resp->body. */
void gw_held_call_complete(gw_held_call *h, gw_response *resp);

/* Client-streaming call: open once, message() per request message, finish()
 * at the client's half-close, close() always last (frees state, also when
 * the stream is reset or the connection dies). message() returning -1 ends
 * the stream at once with resp's (non-OK) status; nothing more is read. */
typedef struct gw_client_stream_ops {
    void *(*open)(const gw_call_ctx *ctx);
    int (*message)(void *state, const gw_call_ctx *ctx, const uint8_t *msg, size_t len,
                   gw_response *resp);
    void (*finish)(void *state, const gw_call_ctx *ctx, gw_response *resp);
    void (*close)(void *state);
} gw_client_stream_ops;

/* Streaming call, server streaming or bidirectional (the transport, gw_h2.c,
 * "Streaming calls"). open once; message() per request message; finish()
 * at the client's half-close: 0 ends the call with resp's status, 1 keeps it
 * open; poll() (may be NULL) every tick while it is open. message() and
 * poll() return 0 to go on or -1 to end the call with resp's status (OK
 * included). Any callback may queue response messages with gw_stream_send.
 * close() always last (frees state, also when the stream is reset or the
 * connection dies). Each callback runs only after the dispatcher admitted
 * the call again (cfg.authorize): sends stop when the caller's credentials
 * end. */
typedef struct gw_stream_ops {
    bool client_streams;   /* bidirectional (else server streaming: one request) */
    void *(*open)(const gw_call_ctx *ctx);
    int (*message)(void *state, const gw_call_ctx *ctx, const uint8_t *msg, size_t len,
                   gw_response *resp);
    int (*finish)(void *state, const gw_call_ctx *ctx, gw_response *resp);
    int (*poll)(void *state, const gw_call_ctx *ctx, gw_response *resp);
    void (*close)(void *state);
} gw_stream_ops;

/* From a gw_stream_ops callback: queue one response message (body, malloc'd
 * or NULL when len is 0, is always taken). -1 when the call cannot take it
 * (ended, or more than the connection's answer budget unsent). */
int gw_stream_send(const gw_call_ctx *ctx, uint8_t *body, size_t len);

typedef struct gw_method {
    const char *path;                            /* "/pkg.Service/Method" */
    /* Who may call it: the application's rule for this method (the
     * gateway: enum gw_rpc_id of gw_authz.h). The transport never runs a
     * callback of the method without first passing the call to
     * gw_server_config.authorize, which reads this; 0 is no rule, and a
     * method without one is refused. */
    int rule;
    gw_unary_fn unary;                           /* exactly one of these */
    const gw_client_stream_ops *client_stream;
    const gw_stream_ops *stream;
} gw_method;

#endif
