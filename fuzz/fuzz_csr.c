/* RenewCertificate's CSR path: ca_csr_check and ca_sign_csr with a fixed
 * issuing CA, on the DER bytes a sandbox sends, for the identity the
 * gateway takes from the caller's certificate.
 * Invariants: a CSR that fails the check is never signed; a signed
 * certificate carries the CSR's key, verifies against the bundle as exactly
 * the caller's sandbox identity (never anything the CSR asked for), and has
 * the same extensions as any leaf the CA issues. */
#include <openssl/x509v3.h>
#include <string.h>

#include "fuzz/fuzz_pki.h"

#define SANDBOX_UUID "0b7e4c1a-9f2d-4e8b-a6c3-5d1f2e3a4b5c"
#define SANDBOX_ID "spiffe://" FUZZ_TD "/sandbox/" SANDBOX_UUID

/* The extensions of a leaf the CA issues for a key of its own. */
static int reference_ext_count(const fuzz_pki *pki)
{
    static int count = -1;
    if (count >= 0) return count;
    EVP_PKEY *key = NULL;
    X509 *leaf = NULL;
    FUZZ_CHECK(ca_key_generate(CA_KEY_P256, &key) == 0);
    ca_leaf_request req = {.spiffe_id = SANDBOX_ID, .public_key = key, .ttl_seconds = 3600,
                           .now = FUZZ_NOW};
    FUZZ_CHECK(ca_issue_leaf(pki->issuing, &req, &leaf) == 0);
    count = X509_get_ext_count(leaf);
    X509_free(leaf);
    EVP_PKEY_free(key);
    return count;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const fuzz_pki *pki = fuzz_pki_get();
    EVP_PKEY *pub = NULL;
    int checked = ca_csr_check(data, size, &pub);
    if (checked == 0) FUZZ_CHECK(pub != NULL && ca_key_check_accepted(pub) == 0);

    X509 *cert = NULL;
    if (ca_sign_csr(pki->issuing, data, size, SANDBOX_ID, 3600, FUZZ_NOW, &cert) == 0) {
        FUZZ_CHECK(checked == 0 && cert != NULL);
        FUZZ_CHECK(EVP_PKEY_eq(X509_get0_pubkey(cert), pub) == 1);
        FUZZ_CHECK(X509_NAME_entry_count(X509_get_subject_name(cert)) == 0);
        FUZZ_CHECK(X509_get_ext_count(cert) == reference_ext_count(pki));

        STACK_OF(X509) *chain = sk_X509_new_null();
        FUZZ_CHECK(chain != NULL && sk_X509_push(chain, pki->issuing->cert) > 0);
        enum ca_verify_reason reason;
        ca_peer peer;
        FUZZ_CHECK(ca_verify_peer(pki->trust, cert, chain, CA_PURPOSE_CLIENT, CA_KIND_SANDBOX,
                                  FUZZ_NOW + 10, &reason, &peer) == 0);
        FUZZ_CHECK(reason == CA_VERIFY_OK && peer.identity.kind == CA_KIND_SANDBOX);
        FUZZ_CHECK(strcmp(peer.identity.name, SANDBOX_UUID) == 0);
        FUZZ_CHECK(strcmp(peer.identity.id.text, SANDBOX_ID) == 0);
        FUZZ_CHECK(peer.not_after == FUZZ_NOW + 3600);
        sk_X509_free(chain);
        X509_free(cert);
    } else {
        FUZZ_CHECK(cert == NULL);
    }
    EVP_PKEY_free(pub);
    return 0;
}
