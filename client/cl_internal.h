/* Internal to client/: one generation of the client TLS context (SSL_CTX +
 * the trust it verifies the server with; cl_tls_reload* makes a new one,
 * connections hold a reference to the one they were opened with, so a
 * reload never disturbs a handshake in progress), the connection and stream
 * state cl_grpc.c and cl_dial.c share. */
#ifndef CL_INTERNAL_H
#define CL_INTERNAL_H

#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "ca_verify.h"
#include "cl_grpc.h"
#include "cl_proto.h"
#include "cl_tls.h"
#include "grpc_frame.h"
#include "tsr_buf.h"

/* Per-connection handshake facts, set with SSL_set_app_data before the
 * handshake; the verify callback reads host and fills the rest. */
typedef struct cl_tls_hs {
    uint32_t magic;              /* CL_TLS_HS_MAGIC: the callback checks it */
    const char *host;            /* dialled host (name or IP text) */
    bool check_host;             /* verify_host and not a unix socket */
    bool verified;               /* the callback accepted the server */
    bool refused;                /* the callback refused it: reason says why */
    char reason[400];
    ca_peer peer;
} cl_tls_hs;
#define CL_TLS_HS_MAGIC 0x434c4853u

typedef struct cl_tls_gen {
    atomic_int refs;
    SSL_CTX *ctx;
    ca_trust *trust;
    bool verify_host;
} cl_tls_gen;

#define CL_MAX_HEADER_BYTES (64 * 1024)  /* response header list, per stream */
#define CL_STREAM_WINDOW (1 << 20)       /* HTTP/2 receive window per stream */
#define CL_CONN_WINDOW (16 << 20)        /* ... and per connection */
#define CL_OUT_CHUNK 16384               /* HTTP/2 bytes gathered per SSL_write */
#define CL_READ_CHUNK 16384
#define CL_PATH_MAX 1024
#define CL_STREAM_MAGIC 0x434c5354u

struct cl_stream {
    uint32_t magic;
    cl_conn *conn;
    int32_t id;              /* 0 until submitted */
    int64_t deadline;        /* tsr_monotonic_ms(); 0 = none */
    int64_t timeout_ms;
    /* Request bytes not yet handed to nghttp2 (one framed message). They
     * may be secret (provider credentials): cleansed before free. */
    uint8_t *sbuf;
    size_t slen, soff;
    bool eof_requested;      /* half-close once sbuf is drained */
    bool deferred;           /* the data provider is waiting for data */
    /* Response. */
    grpc_deframer df;
    uint8_t *msg;            /* the (first) complete response message */
    size_t msg_len;
    cl_resp resp;
    size_t hdr_bytes;
    bool closed;             /* nghttp2 closed the stream, or we detached it */
    bool local;              /* a local status (deadline, limit, I/O) decides */
    cl_status local_st;
};

struct cl_conn {
    int fd;
    SSL *ssl;
    cl_tls_gen *gen;
    cl_tls_hs hs;
    nghttp2_session *h2;
    char authority[300];
    char target[300];        /* "127.0.0.1:8443" / "unix:/path", for messages */
    uint32_t max_response;
    bool dead;
    cl_status dead_st;
    bool goaway;
    uint32_t goaway_code;
    tsr_buf out;             /* HTTP/2 output waiting for SSL_write */
    int open_streams;
};

/* A failed call's status (code, printf message); returns -1. */
int cl_fail_status(cl_status *st, enum gw_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The OpenSSL error queue (or errno) of a failed SSL call, as text. */
void cl_ssl_error_text(int sslerr, char *out, size_t cap);
/* Resolve and connect c->fd to a within the deadline (cl_dial.c). */
TSR_WUR int cl_dial(cl_conn *c, const cl_addr *a, int64_t deadline, cl_status *st);
/* The TLS handshake on c->fd: SNI, ALPN h2, the server's identity checked. */
TSR_WUR int cl_tls_handshake(cl_conn *c, const cl_addr *a, cl_tls *tls, int64_t deadline,
                             cl_status *st);

/* Test seam (fuzz/fuzz_client.c): an HTTP/2 connection over `fd`, a
 * connected non-blocking stream socket it takes over, without TLS: what
 * the peer writes is what the gateway's answers are after TLS. Every
 * connection the library opens itself runs TLS (cl_conn_open*). */
TSR_WUR int cl_conn_open_plain(int fd, int64_t timeout_ms, cl_conn **out, cl_status *st);

/* A reference to the current generation; never NULL for a live cl_tls. */
cl_tls_gen *cl_tls_acquire(cl_tls *tls);
void cl_tls_gen_release(cl_tls_gen *gen);

#endif
