/* PEM as the gateway and certgen read it: a certificate list
 * (ca_certs_from_pem), a trust bundle (ca_trust_from_pem) and a private key
 * (ca_key_from_pem), all on the same bytes.
 * Invariants: a parsed list holds exactly the CERTIFICATE blocks of the
 * input and nothing was skipped (one BEGIN and one END line per
 * certificate); it survives a write/read round trip unchanged; a bundle
 * loads only if its certificates do; a parsed key round-trips to an equal
 * key. */
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <string.h>

#include "ca_issue.h"
#include "ca_pem.h"
#include "ca_verify.h"
#include "fuzz/fuzz.h"

static size_t count(const uint8_t *p, size_t len, const char *needle)
{
    size_t n = strlen(needle), c = 0;
    for (size_t i = 0; i + n <= len; i++) c += memcmp(p + i, needle, n) == 0;
    return c;
}

static void certs(const uint8_t *data, size_t size)
{
    STACK_OF(X509) *list = NULL;
    int rc = ca_certs_from_pem(data, size, &list);
    ca_trust *trust = NULL;
    if (ca_trust_from_pem(data, size, "tessera.local", &trust) == 0) {
        FUZZ_CHECK(rc == 0);
        FUZZ_CHECK(ca_trust_store(trust) != NULL);
        FUZZ_CHECK(strcmp(ca_trust_domain(trust), "tessera.local") == 0);
    }
    ca_trust_free(trust);
    if (rc != 0) return;

    int n = sk_X509_num(list);
    FUZZ_CHECK(n >= 1 && n <= CA_PEM_MAX_CERTS);
    FUZZ_CHECK(count(data, size, "-----BEGIN ") == (size_t)n);
    FUZZ_CHECK(count(data, size, "-----END ") == (size_t)n);

    char *pem = NULL;
    size_t len = 0;
    FUZZ_CHECK(ca_certs_to_pem(list, &pem, &len) == 0);
    STACK_OF(X509) *again = NULL;
    FUZZ_CHECK(ca_certs_from_pem((const uint8_t *)pem, len, &again) == 0);
    FUZZ_CHECK(sk_X509_num(again) == n);
    for (int i = 0; i < n; i++) {
        X509 *a = sk_X509_value(list, i), *b = sk_X509_value(again, i);
        FUZZ_CHECK(X509_cmp(a, b) == 0);
        char serial[41], fp[96];
        if (ca_cert_serial_hex(a, serial) == 0) FUZZ_CHECK(strlen(serial) <= 40);
        FUZZ_CHECK(ca_cert_fingerprint(a, fp) == 0 && strlen(fp) == 95);
        int64_t nb, na;
        FUZZ_IGNORE(ca_cert_validity(a, &nb, &na));
    }
    free(pem);
    sk_X509_pop_free(again, X509_free);
    sk_X509_pop_free(list, X509_free);
}

static void key(const uint8_t *data, size_t size)
{
    EVP_PKEY *k = NULL;
    if (ca_key_from_pem(data, size, &k) != 0) return;
    char desc[64];
    ca_key_describe(k, desc, sizeof desc);
    FUZZ_CHECK(strlen(desc) < sizeof desc);
    FUZZ_IGNORE(ca_key_check_accepted(k));
    char *pem = NULL;
    size_t len = 0;
    if (ca_key_to_pem(k, &pem, &len) == 0) {
        EVP_PKEY *k2 = NULL;
        FUZZ_CHECK(ca_key_from_pem((const uint8_t *)pem, len, &k2) == 0);
        FUZZ_CHECK(EVP_PKEY_eq(k, k2) == 1);
        EVP_PKEY_free(k2);
        ca_secret_free(pem, len);
    }
    EVP_PKEY_free(k);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    certs(data, size);
    key(data, size);
    return 0;
}
