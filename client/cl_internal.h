/* Between cl_tls.c and cl_grpc.c only: one generation of the client TLS
 * context (SSL_CTX + the trust it verifies the server with). cl_tls_reload*
 * makes a new generation; connections hold a reference to the one they were
 * opened with, so a reload never disturbs a handshake in progress. */
#ifndef CL_INTERNAL_H
#define CL_INTERNAL_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdatomic.h>

#include "ca_verify.h"
#include "cl_grpc.h"
#include "cl_tls.h"

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

/* Test seam (fuzz/fuzz_client.c): an HTTP/2 connection over `fd`, a
 * connected non-blocking stream socket it takes over, without TLS: what
 * the peer writes is what the gateway's answers are after TLS. Every
 * connection the library opens itself runs TLS (cl_conn_open*). */
TSR_WUR int cl_conn_open_plain(int fd, int64_t timeout_ms, cl_conn **out, cl_status *st);

/* A reference to the current generation; never NULL for a live cl_tls. */
cl_tls_gen *cl_tls_acquire(cl_tls *tls);
void cl_tls_gen_release(cl_tls_gen *gen);

#endif
