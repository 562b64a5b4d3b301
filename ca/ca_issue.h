/* Key generation and certificate issuance per docs/identity.md (X509-SVID profile). */
#ifndef CA_ISSUE_H
#define CA_ISSUE_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include "tsr_err.h"

enum ca_key_type { CA_KEY_P256 = 0, CA_KEY_P384, CA_KEY_ED25519 };

/* "p256" | "p384" | "ed25519" (also "ecdsa-p256", "ecdsa-p384"). */
TSR_WUR int ca_key_type_parse(const char *name, enum ca_key_type *out);
const char *ca_key_type_name(enum ca_key_type type);
TSR_WUR int ca_key_generate(enum ca_key_type type, EVP_PKEY **out);
/* "ECDSA P-256", "Ed25519", "RSA 2048", ... */
void ca_key_describe(const EVP_PKEY *key, char *out, size_t cap);
/* Keys accepted in CSRs and peer certs: P-256, P-384, Ed25519, RSA >= 2048
 * (and <= 8192). Anything else is TSR_E_INPUT naming the key. */
TSR_WUR int ca_key_check_accepted(const EVP_PKEY *key);

struct ca_issuer_prep;

/* A signing CA: its cert, key, and the chain above it up to (not including)
 * the root, for building the chain a leaf presents. Built only by
 * ca_issuer_new/ca_issuer_load, which also prepare what every leaf from this
 * CA shares (`prep`: constant extensions, the AKI, the parsed name
 * constraints, the fetched digests), so a prepared object lives and dies
 * with its issuer and can never be used with another CA. cert and key must
 * not be replaced after construction. Read-only once built: one issuer may
 * sign on several threads at once. */
typedef struct ca_issuer {
    X509 *cert;
    EVP_PKEY *key;
    struct ca_issuer_prep *prep;
} ca_issuer;

TSR_WUR int ca_issuer_load(const char *cert_path, const char *key_path, ca_issuer **out);
/* Takes ownership of cert and key (also on failure). Checks they match. */
TSR_WUR int ca_issuer_new(X509 *cert, EVP_PKEY *key, ca_issuer **out);
void ca_issuer_free(ca_issuer *issuer);

/* What everything this issuer signs shares, prepared once by ca_issuer_new:
 * the signing digest (NULL for Ed25519) and the authorityKeyIdentifier
 * extension (keyid of the CA's SKI; NULL when the CA has none). Both live as
 * long as the issuer. */
TSR_WUR int ca_issuer_signing(const ca_issuer *issuer, const EVP_MD **md,
                              const X509_EXTENSION **aki);

/* The trust domain an issuing CA is name-constrained to: its one permitted
 * URI subtree. TSR_E_INPUT if the certificate has no such constraint. */
TSR_WUR int ca_issuing_trust_domain(const X509 *cert, char *out, size_t cap);

/* Root: self-signed, CA:TRUE pathlen:1 critical, keyCertSign+cRLSign critical,
 * SKI. Subject "O=Tessera, CN=Tessera Root CA <td>". */
TSR_WUR int ca_create_root(enum ca_key_type type, const char *trust_domain, int64_t ttl_seconds,
                           int64_t now, EVP_PKEY **key_out, X509 **cert_out);

/* Issuing CA under `root`: CA:TRUE pathlen:0 critical, keyCertSign+cRLSign
 * critical, SKI+AKI, nameConstraints permitting only URIs in the trust
 * domain (permitted URI subtree "<td>"). notAfter never past the root's. */
TSR_WUR int ca_create_issuing(const ca_issuer *root, enum ca_key_type type,
                              const char *trust_domain, int64_t ttl_seconds, int64_t now,
                              EVP_PKEY **key_out, X509 **cert_out);

typedef struct ca_leaf_request {
    const char *spiffe_id;              /* validated with ca_spiffe_parse; non-root path */
    EVP_PKEY *public_key;               /* must pass ca_key_check_accepted */
    const X509_PUBKEY *spki;            /* optional: public_key as encoded in a CSR whose
                                           self-signature was checked; copied as is */
    bool unparsed;                      /* return the certificate as built and signed, not
                                           re-parsed from its DER: one key decode less, but
                                           with spki set X509_get0_pubkey() on it is NULL.
                                           Its DER is encoded once, and the signature is
                                           checked with the issuer's key over exactly those
                                           bytes. For callers that only send it (encoding,
                                           serial, validity). */
    uint8_t **der_out;                  /* unparsed only, optional: that DER (OPENSSL_free) */
    size_t *der_len;
    int64_t ttl_seconds;                /* > 0 */
    const char *const *dns_names;       /* gateway leaf only */
    size_t n_dns_names;
    const char *const *ip_addresses;    /* gateway leaf only, textual v4/v6 */
    size_t n_ip_addresses;
    int64_t now;                        /* Unix seconds; 0 = current time */
} ca_leaf_request;

/* Leaf per docs/identity.md: one URI SAN (+ DNS/IP if given), CA:FALSE critical,
 * keyUsage critical digitalSignature (+ keyEncipherment for RSA keys is NOT
 * added), EKU serverAuth+clientAuth, SKI+AKI, 128-bit random positive serial,
 * notBefore = now - 60 s, notAfter = min(now + ttl, issuer notAfter), empty
 * subject so the SAN extension is critical. */
TSR_WUR int ca_issue_leaf(const ca_issuer *issuer, const ca_leaf_request *req, X509 **out);

#define CA_CSR_MAX_DER 16384
/* Count caps on what a CSR may carry (none of it is ever copied into the
 * certificate; a real CSR has a handful): more is TSR_E_INPUT. */
#define CA_CSR_MAX_EXTENSIONS 32
#define CA_CSR_MAX_ATTRIBUTES 8
#define CA_CSR_MAX_SUBJECT_ENTRIES 32

/* Parse a DER CSR (bounded, consumed exactly), verify its self-signature
 * (proof of possession) and accept only allowed keys. Returns the public key. */
TSR_WUR int ca_csr_check(const uint8_t *der, size_t len, EVP_PKEY **pubkey_out);

/* Sign a CSR for the identity the *caller* supplies. A URI SAN requested in
 * the CSR that differs from `spiffe_id` is refused (TSR_E_INPUT); no CSR
 * extension or subject is ever copied into the certificate. */
TSR_WUR int ca_sign_csr(const ca_issuer *issuer, const uint8_t *der, size_t len,
                        const char *spiffe_id, int64_t ttl_seconds, int64_t now, X509 **out);
/* ca_sign_csr with ca_leaf_request.unparsed: for RenewCertificate, which
 * only sends the certificate back and records its serial and validity.
 * der_out (optional, with der_len): the certificate's DER, the very bytes
 * whose signature was checked (OPENSSL_free). */
TSR_WUR int ca_sign_csr_unparsed(const ca_issuer *issuer, const uint8_t *der, size_t len,
                                 const char *spiffe_id, int64_t ttl_seconds, int64_t now,
                                 X509 **out, uint8_t **der_out, size_t *der_len);

#endif
