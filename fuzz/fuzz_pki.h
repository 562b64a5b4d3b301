/* A fixed test PKI for the certificate harnesses (fuzz_x509_peer, fuzz_csr),
 * made with ca_issue.h at the first call: a root and an issuing CA of trust
 * domain tessera.local valid around FUZZ_NOW, and the bundle of the root.
 * Keys are fresh per process; inputs never depend on them (harnesses that
 * need a signature from this PKI re-sign what the input gives). */
#ifndef TSR_FUZZ_PKI_H
#define TSR_FUZZ_PKI_H

#include <openssl/x509.h>

#include "ca_issue.h"
#include "ca_pem.h"
#include "ca_verify.h"
#include "fuzz/fuzz.h"

#define FUZZ_TD "tessera.local"
#define FUZZ_NOW INT64_C(1750000000)            /* 2025-06-15 */
#define FUZZ_CA_TTL (INT64_C(20) * 365 * 86400)

typedef struct fuzz_pki {
    ca_issuer *root;      /* root cert + key */
    ca_issuer *issuing;   /* issuing CA cert + key, signed by root */
    ca_trust *trust;      /* bundle = root */
} fuzz_pki;

static inline const fuzz_pki *fuzz_pki_get(void)
{
    static fuzz_pki pki;
    if (pki.trust != NULL) return &pki;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    FUZZ_CHECK(ca_create_root(CA_KEY_P256, FUZZ_TD, FUZZ_CA_TTL, FUZZ_NOW - 86400, &key, &cert) == 0);
    FUZZ_CHECK(ca_issuer_new(cert, key, &pki.root) == 0);
    FUZZ_CHECK(ca_create_issuing(pki.root, CA_KEY_P256, FUZZ_TD, FUZZ_CA_TTL, FUZZ_NOW - 86400,
                                 &key, &cert) == 0);
    FUZZ_CHECK(ca_issuer_new(cert, key, &pki.issuing) == 0);
    char *pem = NULL;
    size_t len = 0;
    FUZZ_CHECK(ca_cert_to_pem(pki.root->cert, &pem, &len) == 0);
    FUZZ_CHECK(ca_trust_from_pem((const uint8_t *)pem, len, FUZZ_TD, &pki.trust) == 0);
    free(pem);
    return &pki;
}

#endif
