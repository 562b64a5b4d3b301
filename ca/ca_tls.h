/* The TLS policy both ends use (docs/security.md): the gateway's server
 * context (gateway/transport/gw_tls.c) and the client's (client/cl_tls.c)
 * apply the same versions, suites, groups and resumption rules from here.
 *
 * - TLS 1.2 minimum; TLS 1.2 only with ECDHE + AEAD suites; the three TLS
 *   1.3 AEAD suites; key exchange X25519, P-256, P-384.
 * - No resumption of any kind (no tickets, no session cache), no
 *   renegotiation, no compression.
 * - A peer's certificate list of at most CA_TLS_MAX_CERT_LIST bytes. */
#ifndef CA_TLS_H
#define CA_TLS_H

#include <openssl/ssl.h>

#include "tsr_err.h"

/* Largest certificate chain a peer may send (OpenSSL's default is 100 KiB;
 * a leaf + issuing CA is ~2 KiB). */
#define CA_TLS_MAX_CERT_LIST (64 * 1024)

/* Apply the policy to a fresh context; TSR_E_INTERNAL when OpenSSL refuses. */
TSR_WUR int ca_tls_policy_apply(SSL_CTX *ctx);

#endif
