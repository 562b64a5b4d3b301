/* The OpenSSL library context of the server's TLS (gw_tls.c): the default
 * provider's algorithms that our TLS configuration can reach, and of its key
 * decoders only those for a DER SubjectPublicKeyInfo, so that decoding a
 * client certificate's key in a handshake does not walk every algorithm and
 * decoder OpenSSL 3.0 has (docs/performance.md, "Handshakes"). The same
 * implementations run; the peer's chain is still verified by ca_verify_peer
 * in the default context. Built once; lives as long as the process. */
#ifndef GW_TLS_LIBCTX_H
#define GW_TLS_LIBCTX_H

#include <openssl/crypto.h>

#include "tsr_err.h"

/* The context (borrowed: never free it). Thread-safe. */
TSR_WUR int gw_tls_libctx(OSSL_LIB_CTX **out);

#endif
