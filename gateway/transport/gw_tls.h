/* The gateway's server-side TLS context (OpenSSL 3).
 *
 * - TLS 1.3 preferred; TLS 1.2 only with ECDHE + AEAD suites.
 * - ALPN: only "h2". A ClientHello without ALPN, or without "h2" in it,
 *   fails the handshake with a no_application_protocol alert.
 * - Client certificates are requested but optional, and their chain is NOT
 *   verified during the handshake: the server's `authenticate` hook (after
 *   the handshake) must verify it (the gateway: ca_verify_peer) and turns a
 *   bad certificate into an UNAUTHENTICATED principal, so that calls get
 *   status 16 instead of a TLS alert. SSL_get_verify_result() is always
 *   X509_V_ERR_APPLICATION_VERIFICATION when a certificate was presented:
 *   never X509_V_OK, never a verdict to rely on. Possession of the
 *   certificate's key is still proven by the TLS CertificateVerify. One
 *   chain verification per handshake (see gw_tls.c).
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
    X509_STORE *client_trust;  /* anchors for client certs: their names are sent in the
                                  CertificateRequest (the caller keeps its ref) */
} gw_tls_config;

/* Build the server SSL_CTX. The caller owns *out (SSL_CTX_free). */
TSR_WUR int gw_tls_ctx_new(const gw_tls_config *cfg, SSL_CTX **out);

/* True if the handshake on `ssl` negotiated ALPN "h2". */
int gw_tls_alpn_is_h2(const SSL *ssl);

#endif
