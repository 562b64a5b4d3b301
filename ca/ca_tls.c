#include "ca_tls.h"

/* TLS 1.2: forward secrecy (ECDHE) and AEAD only. TLS 1.3 suites are all
 * AEAD. */
static const char tls12_ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
static const char tls13_suites[] =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
/* Not const: OpenSSL 3.0's SSL_CTX_set1_groups_list macro casts it (clang -Wcast-qual). */
static char groups[] = "X25519:P-256:P-384";

int ca_tls_policy_apply(SSL_CTX *ctx)
{
    TSR_GUARD_OSSL(SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION), TSR_E_INTERNAL,
                   "cannot set the minimum TLS version");
    TSR_GUARD_OSSL(SSL_CTX_set_cipher_list(ctx, tls12_ciphers), TSR_E_INTERNAL,
                   "cannot set TLS 1.2 ciphers");
    TSR_GUARD_OSSL(SSL_CTX_set_ciphersuites(ctx, tls13_suites), TSR_E_INTERNAL,
                   "cannot set TLS 1.3 suites");
    TSR_GUARD_OSSL(SSL_CTX_set1_groups_list(ctx, groups), TSR_E_INTERNAL,
                   "cannot set key exchange groups");
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_max_cert_list(ctx, CA_TLS_MAX_CERT_LIST);
    return 0;
}
