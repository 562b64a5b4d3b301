/* The client side of Tessera's mTLS (OpenSSL 3).
 *
 * - TLS 1.3 preferred; TLS 1.2 only with ECDHE + AEAD suites (as the gateway).
 * - ALPN "h2" offered; a server that does not select it is refused.
 * - No session resumption (every connection runs the full handshake).
 * - Server identity, SPIFFE style: inside the handshake (before our own
 *   certificate is sent) the server's chain is verified against the bundle
 *   with ca_verify_peer(..., CA_PURPOSE_SERVER, CA_KIND_GATEWAY, ...): the
 *   server must be a valid X509-SVID for spiffe://<trust_domain>/gateway.
 *   Anything else fails the handshake, and cl_conn_open reports the precise
 *   reason as UNAUTHENTICATED ("server identity: ..."). Optionally the
 *   server's DNS/IP SAN must also match the dialled host (never the subject
 *   CN); connections over a unix socket skip the host check.
 * - The client identity (certificate chain + key) is optional: without one
 *   only anonymous calls (grpc.health.v1.Health/Check) succeed.
 *
 * Thread safety: a cl_tls may be shared by any number of threads and
 * connections. cl_tls_reload / cl_tls_reload_bundle swap the identity or the
 * trust bundle atomically (under a mutex) for connections opened afterwards;
 * connections already open keep the context they were made with and are not
 * dropped. Every connection holds a reference to its context generation, so
 * cl_tls_free may be called while connections are still open. */
#ifndef CL_TLS_H
#define CL_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ca_verify.h"
#include "tsr_err.h"

#define CL_TLS_DEFAULT_TRUST_DOMAIN "tessera.local"

typedef struct cl_tls cl_tls;

/* Each PEM input is either a file path or an in-memory buffer (set at most
 * one of the two). Buffers are copied; key buffers are never kept. */
typedef struct cl_tls_config {
    /* Client identity: certificate chain (leaf first, then intermediates) and
     * its private key. Both unset = no client certificate (anonymous). */
    const char *cert_file;
    const char *key_file;
    const uint8_t *cert_pem;
    size_t cert_pem_len;
    const uint8_t *key_pem;
    size_t key_pem_len;
    /* Trust bundle (every trusted root). Required. */
    const char *bundle_file;
    const uint8_t *bundle_pem;
    size_t bundle_pem_len;
    /* Trust domain of the expected spiffe://<td>/gateway; NULL = "tessera.local". */
    const char *trust_domain;
    /* Also require a DNS/IP SAN of the server to match the dialled host. */
    bool verify_host;
} cl_tls_config;

TSR_WUR int cl_tls_new(const cl_tls_config *cfg, cl_tls **out);
void cl_tls_free(cl_tls *tls);

/* Swap the client identity for new connections (e.g. after a renewal). The
 * key must match the leaf; on failure the old identity stays in use.
 * cert_pem/key_pem NULL (both) drops the identity (anonymous). */
TSR_WUR int cl_tls_reload(cl_tls *tls, const uint8_t *cert_pem, size_t cert_len,
                          const uint8_t *key_pem, size_t key_len);
TSR_WUR int cl_tls_reload_files(cl_tls *tls, const char *cert_file, const char *key_file);
/* Swap the trust bundle for new connections (RenewCertificate returns one). */
TSR_WUR int cl_tls_reload_bundle(cl_tls *tls, const uint8_t *bundle_pem, size_t len);

const char *cl_tls_trust_domain(const cl_tls *tls);
bool cl_tls_has_identity(cl_tls *tls);
/* Number of reloads so far (0 after cl_tls_new); for tests and logs. */
uint64_t cl_tls_generation(cl_tls *tls);

#endif
