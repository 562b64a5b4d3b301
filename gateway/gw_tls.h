/* The gateway's server-side TLS context (OpenSSL 3).
 *
 * - TLS 1.3 preferred; TLS 1.2 only with ECDHE + AEAD suites.
 * - ALPN: only "h2". A ClientHello without ALPN, or without "h2" in it,
 *   fails the handshake with a no_application_protocol alert.
 * - Client certificates are requested but optional. The handshake completes
 *   even when the presented chain does not verify: OpenSSL's verdict stays in
 *   SSL_get_verify_result(), and the server's `authenticate` hook (after the
 *   handshake) turns a bad certificate into an UNAUTHENTICATED principal so
 *   that calls get status 16 instead of a TLS alert. Possession of the
 *   certificate's key is still proven by the TLS CertificateVerify.
 * - No session resumption (no tickets, no server cache): every connection
 *   runs the full handshake and so the full identity and revocation checks.
 * - No renegotiation, no compression. */
#ifndef GW_TLS_H
#define GW_TLS_H

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include "tsr_err.h"

typedef struct gw_tls_config {
    const char *cert_file;     /* PEM: server leaf first, then its issuing CA(s) */
    const char *key_file;      /* PEM private key of the leaf */
    X509_STORE *client_trust;  /* anchors for client certs (up-ref'd; caller keeps its ref) */
} gw_tls_config;

/* Build the server SSL_CTX. The caller owns *out (SSL_CTX_free). */
TSR_WUR int gw_tls_ctx_new(const gw_tls_config *cfg, SSL_CTX **out);

/* True if the handshake on `ssl` negotiated ALPN "h2". */
int gw_tls_alpn_is_h2(const SSL *ssl);

#endif
