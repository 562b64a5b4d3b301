/* Peer verification: the chain against the trust bundle (OpenSSL, strict),
 * then the X509-SVID rules OpenSSL does not enforce, then the SPIFFE ID and
 * its principal kind. Revocation is the caller's (the store knows it). */
#ifndef CA_VERIFY_H
#define CA_VERIFY_H

#include <openssl/x509.h>
#include <stdint.h>

#include "ca_spiffe.h"
#include "tsr_err.h"

typedef struct ca_trust ca_trust; /* bundle roots + trust domain; immutable, thread-safe */

TSR_WUR int ca_trust_from_pem(const uint8_t *pem, size_t len, const char *trust_domain,
                              ca_trust **out);
TSR_WUR int ca_trust_load(const char *bundle_path, const char *trust_domain, ca_trust **out);
void ca_trust_free(ca_trust *trust);
const char *ca_trust_domain(const ca_trust *trust);
/* The roots, for SSL_CTX_set1_verify_cert_store (borrowed). */
X509_STORE *ca_trust_store(const ca_trust *trust);
/* Keep up to `entries` successful verifications of this trust, so that
 * ca_verify_peer with byte-for-byte the same certificates, purpose and
 * expected kind, at a time inside every certificate's validity, returns
 * the kept result without verifying again (see ca_verify.c, "verified
 * chains"). Off unless enabled; call once, before the trust is shared
 * between threads (ca_verify_peer stays thread-safe). 0 entries: off. */
TSR_WUR int ca_trust_enable_cache(ca_trust *trust, size_t entries);
/* Verifications kept now, and calls answered from them so far. */
void ca_trust_cache_stats(const ca_trust *trust, size_t *entries, uint64_t *hits);

enum ca_verify_reason {
    CA_VERIFY_OK = 0,
    CA_VERIFY_NO_CERTIFICATE,
    CA_VERIFY_EXPIRED,
    CA_VERIFY_NOT_YET_VALID,
    CA_VERIFY_UNKNOWN_ISSUER,
    CA_VERIFY_BAD_SIGNATURE,
    CA_VERIFY_BAD_CHAIN,            /* any other OpenSSL chain failure */
    CA_VERIFY_NO_URI_SAN,
    CA_VERIFY_MULTIPLE_URI_SANS,
    CA_VERIFY_BAD_SPIFFE_ID,        /* syntax: uppercase, port, NUL, ... */
    CA_VERIFY_FOREIGN_TRUST_DOMAIN,
    CA_VERIFY_UNKNOWN_KIND,         /* valid ID, but no Tessera principal */
    CA_VERIFY_WRONG_KIND,           /* e.g. a sandbox cert where a gateway is expected */
    CA_VERIFY_LEAF_IS_CA,
    CA_VERIFY_LEAF_KEY_USAGE,       /* keyCertSign/cRLSign, or no digitalSignature */
    CA_VERIFY_BAD_EKU,              /* EKU present without the purpose needed */
    CA_VERIFY_SIGNER_NOT_CA,        /* signing cert without CA:TRUE + keyCertSign */
};
const char *ca_verify_reason_name(enum ca_verify_reason reason); /* "expired", ... */

enum ca_purpose { CA_PURPOSE_CLIENT, CA_PURPOSE_SERVER };

typedef struct ca_peer {
    ca_identity identity;
    char serial_hex[41];
    int64_t not_before;
    int64_t not_after;          /* the leaf's */
    int64_t chain_not_after;    /* earliest notAfter over the verified chain */
    char fingerprint[96];
    /* SHA-256 of the DER of the trust anchor the verified chain ends in: the
     * top of the chain OpenSSL built and checked, always a bundle root, never
     * a certificate the peer merely listed. */
    unsigned char anchor_sha256[32];
} ca_peer;

/* Verify `leaf` with `untrusted` intermediates (may be NULL) at time `now`
 * (Unix seconds; 0 means the current time). Returns 0 and fills `out` when
 * the peer is a valid X509-SVID of a known kind in the trust domain; else -1
 * with *reason set and a TSR_E_UNAUTH error whose message says precisely why.
 * `expected_kind` CA_KIND_NONE accepts any known kind. */
TSR_WUR int ca_verify_peer(const ca_trust *trust, X509 *leaf, STACK_OF(X509) *untrusted,
                           enum ca_purpose purpose, enum ca_kind expected_kind, int64_t now,
                           enum ca_verify_reason *reason, ca_peer *out);

#endif
