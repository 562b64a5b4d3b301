/* CSR bombs: what a hostile sandbox can pack into the 16 KiB a CSR may have
 * (thousands of extensions, attributes or name entries, deep nesting) is
 * refused as bad input before any signature work, and the caps sit where a
 * real CSR never reaches them. Refusals first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ca_issue.h"
#include "tsr_err.h"

#define TD "tessera.local"
#define SANDBOX_ID "spiffe://" TD "/sandbox/0f8e6c4a-3b1d-4e2f-9a7c-5d6e7f809a1b"

static ca_issuer *g_root, *g_issuing;
static EVP_PKEY *g_key;

static int setup(void **state)
{
    (void)state;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    if (ca_create_root(CA_KEY_P256, TD, 86400, 0, &key, &cert) != 0 ||
        ca_issuer_new(cert, key, &g_root) != 0 ||
        ca_create_issuing(g_root, CA_KEY_P256, TD, 86400, 0, &key, &cert) != 0 ||
        ca_issuer_new(cert, key, &g_issuing) != 0 || ca_key_generate(CA_KEY_P256, &g_key) != 0) {
        fprintf(stderr, "setup: %s\n", tsr_errmsg());
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(g_key);
    ca_issuer_free(g_issuing);
    ca_issuer_free(g_root);
    return 0;
}

/* A signed CSR with n_ext private-OID extensions (empty OCTET STRING values),
 * n_attr private-OID attributes and n_name OU entries. */
static uint8_t *bomb(int n_ext, int n_attr, int n_name, size_t *len)
{
    X509_REQ *req = X509_REQ_new();
    assert_non_null(req);
    assert_int_equal(X509_REQ_set_version(req, X509_REQ_VERSION_1), 1);
    assert_int_equal(X509_REQ_set_pubkey(req, g_key), 1);
    X509_NAME *name = X509_REQ_get_subject_name(req);
    for (int i = 0; i < n_name; i++)
        assert_int_equal(X509_NAME_add_entry_by_txt(name, "OU", MBSTRING_ASC,
                                                    (const unsigned char *)"x", 1, -1, 1), 1);
    if (n_ext > 0) {
        STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
        ASN1_OCTET_STRING *empty = ASN1_OCTET_STRING_new();
        assert_non_null(exts);
        assert_non_null(empty);
        for (int i = 0; i < n_ext; i++) {
            char oid[64];
            snprintf(oid, sizeof oid, "1.3.6.1.4.1.99999.%d", i);
            ASN1_OBJECT *obj = OBJ_txt2obj(oid, 1);
            assert_non_null(obj);
            X509_EXTENSION *ext = X509_EXTENSION_create_by_OBJ(NULL, obj, 0, empty);
            ASN1_OBJECT_free(obj);
            assert_non_null(ext);
            assert_true(sk_X509_EXTENSION_push(exts, ext) > 0);
        }
        assert_int_equal(X509_REQ_add_extensions(req, exts), 1);
        sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
        ASN1_OCTET_STRING_free(empty);
    }
    /* OpenSSL refuses a duplicate attribute type: private OIDs, one each. */
    for (int i = 0; i < n_attr; i++) {
        char oid[64];
        snprintf(oid, sizeof oid, "1.3.6.1.4.1.99998.%d", i);
        ASN1_OBJECT *obj = OBJ_txt2obj(oid, 1);
        assert_non_null(obj);
        X509_ATTRIBUTE *attr =
            X509_ATTRIBUTE_create_by_OBJ(NULL, obj, V_ASN1_UTF8STRING, (const unsigned char *)"a", 1);
        ASN1_OBJECT_free(obj);
        assert_non_null(attr);
        assert_int_equal(X509_REQ_add1_attr(req, attr), 1);
        X509_ATTRIBUTE_free(attr);
    }
    assert_true(X509_REQ_sign(req, g_key, EVP_sha256()) > 0);
    unsigned char *der = NULL;
    int n = i2d_X509_REQ(req, &der);
    X509_REQ_free(req);
    assert_true(n > 0);
    *len = (size_t)n;
    return der;
}

/* `depth` nested definite-length SEQUENCEs around NULL, as DER. */
static uint8_t *nested(int depth, size_t *len)
{
    size_t cap = 6 * (size_t)depth + 2;
    uint8_t *buf = malloc(cap);
    assert_non_null(buf);
    size_t start = cap - 2, n = 2;
    buf[start] = 0x05;
    buf[start + 1] = 0x00;
    for (int i = 0; i < depth; i++) {
        uint8_t hdr[4];
        size_t h = 0;
        hdr[h++] = 0x30;
        if (n < 0x80) {
            hdr[h++] = (uint8_t)n;
        } else if (n < 0x100) {
            hdr[h++] = 0x81;
            hdr[h++] = (uint8_t)n;
        } else {
            hdr[h++] = 0x82;
            hdr[h++] = (uint8_t)(n >> 8);
            hdr[h++] = (uint8_t)n;
        }
        start -= h;
        memcpy(buf + start, hdr, h);
        n += h;
    }
    memmove(buf, buf + start, n);
    *len = n;
    return buf;
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static void expect_refused(const uint8_t *der, size_t len, const char *needle)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    X509 *cert = NULL;
    int rc = ca_sign_csr(g_issuing, der, len, SANDBOX_ID, 3600, 0, &cert);
    double took = seconds_since(&t0);
    if (rc == 0) {
        X509_free(cert);
        fail_msg("a %zu-byte CSR bomb was signed (want \"%s\")", len, needle);
    }
    assert_int_equal(tsr_errcat(), TSR_E_INPUT);
    if (strstr(tsr_errmsg(), needle) == NULL)
        fail_msg("error \"%s\" does not contain \"%s\"", tsr_errmsg(), needle);
    assert_null(cert);
    /* Quick: no signature work on a bomb (generous for sanitizer builds). */
    assert_true(took < 0.5);
    EVP_PKEY *pub = NULL;
    assert_int_equal(ca_csr_check(der, len, &pub), -1);
    assert_null(pub);
}

static void expect_signed(const uint8_t *der, size_t len)
{
    X509 *cert = NULL;
    if (ca_sign_csr(g_issuing, der, len, SANDBOX_ID, 3600, 0, &cert) != 0)
        fail_msg("a %zu-byte CSR was refused: %s", len, tsr_errmsg());
    /* Nothing of the request is copied: 7 extensions of the leaf profile at
     * most (SAN, BC, KU, EKU, SKI, AKI). */
    assert_true(X509_get_ext_count(cert) <= 7);
    X509_free(cert);
}

struct count_case {
    const char *name;
    int n_ext, n_attr, n_name;
    const char *refusal; /* NULL: signed */
};

static const struct count_case count_cases[] = {
    {"a thousand extensions in 16 KiB", 1000, 0, 0, "extensions (at most 32)"},
    {"one extension too many", CA_CSR_MAX_EXTENSIONS + 1, 0, 0, "extensions (at most 32)"},
    {"one attribute too many", 0, CA_CSR_MAX_ATTRIBUTES + 1, 0, "attributes (at most 8)"},
    {"hundreds of attributes", 0, 600, 0, "attributes (at most 8)"},
    {"one name entry too many", 0, 0, CA_CSR_MAX_SUBJECT_ENTRIES + 1, "entries (at most 32)"},
    {"thousands of name entries", 0, 0, 1000, "entries (at most 32)"},
    /* Accepted: at the caps, and an ordinary request. */
    {"extensions at the cap", CA_CSR_MAX_EXTENSIONS, 0, 0, NULL},
    {"attributes at the cap (no extension request)", 0, CA_CSR_MAX_ATTRIBUTES, 0, NULL},
    {"name entries at the cap", 0, 0, CA_CSR_MAX_SUBJECT_ENTRIES, NULL},
    {"plain", 0, 0, 0, NULL},
};

static void test_count_caps(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof count_cases / sizeof count_cases[0]; i++) {
        const struct count_case *c = &count_cases[i];
        size_t len = 0;
        uint8_t *der = bomb(c->n_ext, c->n_attr, c->n_name, &len);
        print_message("%s: %zu bytes\n", c->name, len);
        if (len > CA_CSR_MAX_DER) {
            OPENSSL_free(der);
            fail_msg("%s: %zu bytes does not fit the %d-byte limit", c->name, len,
                     CA_CSR_MAX_DER);
        }
        if (c->refusal != NULL) expect_refused(der, len, c->refusal);
        else expect_signed(der, len);
        OPENSSL_free(der);
    }
}

static void test_nested_der(void **state)
{
    (void)state;
    /* Deep nesting stops in OpenSSL's decoder (ASN1 nesting limit). */
    static const int depths[] = {31, 100, 2000, 2700};
    for (size_t i = 0; i < sizeof depths / sizeof depths[0]; i++) {
        size_t len = 0;
        uint8_t *der = nested(depths[i], &len);
        assert_true(len <= CA_CSR_MAX_DER);
        expect_refused(der, len, "not a DER PKCS#10 request");
        free(der);
    }
    /* Indefinite lengths (BER, never DER), 8000 deep. */
    size_t len = 16000;
    uint8_t *ber = malloc(len);
    assert_non_null(ber);
    for (size_t i = 0; i < len; i += 2) {
        ber[i] = 0x30;
        ber[i + 1] = 0x80;
    }
    expect_refused(ber, len, "not a DER PKCS#10 request");
    free(ber);
}

static void test_oversized(void **state)
{
    (void)state;
    size_t len = 0;
    uint8_t *der = bomb(1000, 0, 0, &len);
    assert_true(len <= CA_CSR_MAX_DER);
    uint8_t *big = calloc(1, CA_CSR_MAX_DER + 1);
    assert_non_null(big);
    memcpy(big, der, len);
    expect_refused(big, CA_CSR_MAX_DER + 1, "exceeds the 16384-byte limit");
    free(big);
    OPENSSL_free(der);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_count_caps),
        cmocka_unit_test(test_nested_der),
        cmocka_unit_test(test_oversized),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
