/* Tessera's blocking gRPC client: HTTP/2 (nghttp2 client session driven with
 * nghttp2_session_mem_recv/mem_send) over TLS (cl_tls) over a non-blocking
 * socket with poll() and deadlines. The gRPC wire pieces (deframer with a
 * maximum message size, frame prefix, grpc-message percent-decoding, status
 * names) are the gateway's, from grpc/grpc_frame.h.
 *
 * Threads: a cl_conn (and its streams) belongs to one thread at a time; use
 * one connection per thread. Calls on one connection may run one after the
 * other (unary calls, streams), and one thread may keep a client stream open
 * while it makes unary calls on the same connection. A cl_tls may be shared.
 *
 * Status: every call fills a cl_status: the gRPC code and its decoded
 * grpc-message, from the server's trailers (or a trailers-only response), or
 * mapped as the gRPC spec says from an HTTP status or an HTTP/2 reset, or a
 * local reason:
 *   connection refused / reset / closed, TLS failure, GOAWAY -> UNAVAILABLE
 *   server identity refused (not spiffe://<td>/gateway, foreign CA, expired,
 *     host SAN mismatch)                                       -> UNAUTHENTICATED
 *   deadline passed                                            -> DEADLINE_EXCEEDED
 *   response message over the limit (checked before allocating) -> RESOURCE_EXHAUSTED
 *   malformed response (no grpc-status, bad framing, 2 messages) -> INTERNAL
 * Functions return 0 only when the status is OK; on -1 the status says why
 * and the tsr error (tsr_errmsg) carries the same text with the category of
 * cl_status_errcat(code). After UNAVAILABLE from the connection itself,
 * cl_conn_alive() is false: close it and open a new one. */
#ifndef CL_GRPC_H
#define CL_GRPC_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ca_verify.h"
#include "cl_tls.h"
#include "grpc_status.h"
#include "tsr_err.h"

#define CL_DEFAULT_PORT 8443
#define CL_DEFAULT_MAX_RESPONSE (4u << 20)    /* 4 MiB, as the gateway's default */
#define CL_MAX_REQUEST (64u << 20)            /* largest message we send */
#define CL_STATUS_MESSAGE_MAX 1024
#define CL_USER_AGENT "tessera-client/0.1"

typedef struct cl_status {
    enum gw_status code;                     /* GW_STATUS_OK .. GW_STATUS_UNAUTHENTICATED */
    char message[CL_STATUS_MESSAGE_MAX];     /* decoded grpc-message or local reason */
} cl_status;

/* "OK", "PERMISSION_DENIED", ... (grpc_status_name). */
const char *cl_status_name(enum gw_status code);
/* The tsr category recorded for a failed call with this code. */
enum tsr_errcat cl_status_errcat(enum gw_status code);

/* ---- addresses ----------------------------------------------------------- */

/* "HOST:PORT", "HOST" (default_port), "[v6addr]:PORT", "[v6addr]", or
 * "unix:/path/to.sock". Host names [A-Za-z0-9.-], at most 253 bytes; unix
 * paths absolute (or relative), at most 107 bytes; port 1..65535. */
typedef struct cl_addr {
    char host[256];          /* name, IPv4 or IPv6 text (no brackets), or the unix path */
    uint16_t port;           /* 0 for unix */
    bool is_unix;
} cl_addr;
TSR_WUR int cl_addr_parse(const char *text, uint16_t default_port, cl_addr *out);

/* ---- connections ---------------------------------------------------------- */

typedef struct cl_conn cl_conn;

/* Connect (TCP or unix socket: host "unix:/path", port ignored), TLS
 * handshake with server identity checks, HTTP/2 preface + SETTINGS, all
 * within timeout_ms (> 0; host name resolution itself is not bounded).
 * Returns 0 and *out, or -1 with *st (may be NULL) set to UNAVAILABLE
 * (cannot resolve or connect, timed out, TLS or HTTP/2 failure),
 * UNAUTHENTICATED (server identity refused: "server identity refused: ..."),
 * or INVALID_ARGUMENT. The socket never raises SIGPIPE. */
TSR_WUR int cl_conn_open(const char *host, uint16_t port, cl_tls *tls, int64_t timeout_ms,
                         cl_conn **out, cl_status *st);
TSR_WUR int cl_conn_open_addr(const cl_addr *addr, cl_tls *tls, int64_t timeout_ms,
                              cl_conn **out, cl_status *st);
/* Sends GOAWAY (best effort, without blocking), closes, frees. Open streams
 * of the connection must have been finished or cancelled before. */
void cl_conn_close(cl_conn *conn);

/* False once the connection failed, was closed by the peer or got GOAWAY. */
bool cl_conn_alive(const cl_conn *conn);
/* The verified identity of the server (spiffe://<td>/gateway). */
const ca_peer *cl_conn_peer(const cl_conn *conn);
/* Largest response message accepted (default 4 MiB; 1 .. 64 MiB). Checked
 * against the declared length before any allocation. */
TSR_WUR int cl_conn_set_max_response(cl_conn *conn, uint32_t max_bytes);

/* ---- unary calls -------------------------------------------------------- */

/* One request, one response. path: "/tessera.v1.Gateway/GetSandbox".
 * timeout_ms > 0 is sent as grpc-timeout and enforced locally (the stream is
 * reset with CANCEL when it passes); <= 0 means no deadline. On OK, *resp is
 * malloc'd (NULL when the response is empty) and owned by the caller. */
TSR_WUR int cl_unary(cl_conn *conn, const char *path, const uint8_t *req, size_t req_len,
                     int64_t timeout_ms, uint8_t **resp, size_t *resp_len, cl_status *st);

/* The same with protobuf-c messages: req is packed, the response unpacked
 * with resp_desc (free it with protobuf_c_message_free_unpacked(*resp, NULL)).
 * A response that does not parse is INTERNAL. */
TSR_WUR int cl_call(cl_conn *conn, const char *path, const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *resp_desc, int64_t timeout_ms,
                    ProtobufCMessage **resp, cl_status *st);

/* cl_call for a response that carries secrets (credentials): unpacked with
 * an allocator that keeps each block's size, so that cl_secret_free wipes
 * every byte the decoder wrote before it frees them — a string field with a
 * NUL inside too, which a wipe by strlen would leave half behind. Free the
 * response only with cl_secret_free. */
TSR_WUR int cl_call_secret(cl_conn *conn, const char *path, const ProtobufCMessage *req,
                           const ProtobufCMessageDescriptor *resp_desc, int64_t timeout_ms,
                           ProtobufCMessage **resp, cl_status *st);
void cl_secret_free(ProtobufCMessage *resp);   /* NULL is fine */

/* ---- client streams -------------------------------------------------------- */

typedef struct cl_stream cl_stream;

/* Start a client-streaming call (request headers are sent at once). The
 * deadline (timeout_ms > 0) covers the whole call, up to cl_stream_finish. */
TSR_WUR int cl_stream_open(cl_conn *conn, const char *path, int64_t timeout_ms,
                           cl_stream **out, cl_status *st);
/* Send one message; blocks until it is written to the socket (waiting for
 * HTTP/2 flow control) or the deadline passes. If the server has already
 * ended the call (e.g. PERMISSION_DENIED), returns -1 with the server's
 * status at once; the message is not sent. */
TSR_WUR int cl_stream_send(cl_stream *s, const uint8_t *msg, size_t len, cl_status *st);
TSR_WUR int cl_stream_send_pb(cl_stream *s, const ProtobufCMessage *msg, cl_status *st);
/* Half-close, wait for the response and the status; frees the stream (also
 * on failure). On OK, *resp (malloc'd, NULL when empty) is the caller's. */
TSR_WUR int cl_stream_finish(cl_stream *s, uint8_t **resp, size_t *resp_len, cl_status *st);
TSR_WUR int cl_stream_finish_pb(cl_stream *s, const ProtobufCMessageDescriptor *resp_desc,
                                ProtobufCMessage **resp, cl_status *st);
/* Reset the stream with CANCEL (if still open) and free it. NULL is fine. */
void cl_stream_cancel(cl_stream *s);

#endif
