/* CRLs per RFC 5280 §5 (ca_crl.c): every field parsed back with OpenSSL, the
 * signature checked against the issuing CA's key, entry order, bounds, and a
 * verification of a leaf against the CRL with OpenSSL's own CRL check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca_crl.h"
#include "ca_issue.h"
#include "ca_pem.h"
#include "tsr_err.h"
#include "tsr_time.h"

#define TD "tessera.local"
#define SANDBOX_ID "spiffe://" TD "/sandbox/0f8e6c4a-3b1d-4e2f-9a7c-5d6e7f809a1b"

static int64_t g_now;

typedef struct pki {
    ca_issuer *root;
    ca_issuer *issuing;
} pki;

static void pki_make(pki *p, enum ca_key_type type)
{
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    assert_int_equal(ca_create_root(type, TD, 86400 * 30, g_now, &key, &cert), 0);
    assert_int_equal(ca_issuer_new(cert, key, &p->root), 0);
    assert_int_equal(ca_create_issuing(p->root, type, TD, 86400 * 7, g_now, &key, &cert), 0);
    assert_int_equal(ca_issuer_new(cert, key, &p->issuing), 0);
}

static void pki_free(pki *p)
{
    ca_issuer_free(p->root);
    ca_issuer_free(p->issuing);
}

static X509 *leaf(const pki *p)
{
    EVP_PKEY *key = NULL;
    assert_int_equal(ca_key_generate(CA_KEY_P256, &key), 0);
    ca_leaf_request req = {.spiffe_id = SANDBOX_ID, .public_key = key, .ttl_seconds = 3600,
                           .now = g_now};
    X509 *cert = NULL;
    assert_int_equal(ca_issue_leaf(p->issuing, &req, &cert), 0);
    EVP_PKEY_free(key);
    return cert;
}

static ca_crl_params params(uint64_t number)
{
    ca_crl_params prm = {.number = number, .this_update = g_now - 60, .next_update = g_now + 6 * 3600};
    return prm;
}

static char *hex_of(const ASN1_INTEGER *ai)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(ai, NULL);
    assert_non_null(bn);
    char *h = BN_bn2hex(bn);
    BN_free(bn);
    for (char *c = h; *c; c++)
        if (*c >= 'A' && *c <= 'F') *c = (char)(*c - 'A' + 'a');
    size_t z = strspn(h, "0");
    memmove(h, h + z, strlen(h + z) + 1);
    return h;
}

/* ---- failure cases ------------------------------------------------------------- */

static void test_bad_input(void **state)
{
    (void)state;
    pki p;
    pki_make(&p, CA_KEY_P256);
    X509_CRL *crl = NULL;
    ca_crl_params ok = params(1);
    static const struct {
        const char *serial;
        int64_t revoked_at;
        int reason;
        enum tsr_errcat cat;
    } bad[] = {
        {"", 100, CA_CRL_REASON_NONE, TSR_E_INPUT},                                         /* empty */
        {"0", 100, CA_CRL_REASON_NONE, TSR_E_INPUT},                                        /* zero */
        {"000", 100, CA_CRL_REASON_NONE, TSR_E_INPUT},                                      /* zero */
        {"12g4", 100, CA_CRL_REASON_NONE, TSR_E_INPUT},                                     /* not hex */
        {"-12", 100, CA_CRL_REASON_NONE, TSR_E_INPUT},                                      /* sign */
        {"12 ", 100, CA_CRL_REASON_NONE, TSR_E_INPUT},                                      /* trailing */
        {"abcd", 0, CA_CRL_REASON_NONE, TSR_E_INPUT},                                       /* no date */
        {"abcd", -5, CA_CRL_REASON_NONE, TSR_E_INPUT},
        {"abcd", 100, 0, TSR_E_INPUT},                                                      /* unspecified */
        {"abcd", 100, 6, TSR_E_INPUT},                                                      /* hold */
        {"abcd", 100, 7, TSR_E_INPUT},                                                      /* unused value */
        {"abcd", 100, 11, TSR_E_INPUT},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ca_crl_entry e = {.revoked_at = bad[i].revoked_at, .reason = bad[i].reason};
        snprintf(e.serial_hex, sizeof e.serial_hex, "%s", bad[i].serial);
        assert_int_equal(ca_crl_build(p.issuing, &e, 1, &ok, &crl), -1);
        assert_int_equal(tsr_errcat(), bad[i].cat);
        assert_null(crl);
    }
    /* 41 digits, not NUL-terminated inside the field. */
    ca_crl_entry longer = {.revoked_at = 100, .reason = CA_CRL_REASON_NONE};
    memset(longer.serial_hex, 'a', sizeof longer.serial_hex);
    assert_int_equal(ca_crl_build(p.issuing, &longer, 1, &ok, &crl), -1);
    /* A serial listed twice, also when spelled differently. */
    ca_crl_entry dup[2] = {{"00ABcd", 100, CA_CRL_REASON_NONE}, {"abcd", 200, CA_CRL_REASON_NONE}};
    assert_int_equal(ca_crl_build(p.issuing, dup, 2, &ok, &crl), -1);
    assert_non_null(strstr(tsr_errmsg(), "twice"));
    /* Parameters. */
    ca_crl_params prm = ok;
    prm.number = 0;
    assert_int_equal(ca_crl_build(p.issuing, NULL, 0, &prm, &crl), -1);
    prm = ok;
    prm.next_update = prm.this_update;
    assert_int_equal(ca_crl_build(p.issuing, NULL, 0, &prm, &crl), -1);
    prm = ok;
    prm.this_update = 0;
    assert_int_equal(ca_crl_build(p.issuing, NULL, 0, &prm, &crl), -1);
    assert_int_equal(ca_crl_build(p.issuing, NULL, 0, NULL, &crl), -1);
    assert_int_equal(ca_crl_build(p.issuing, NULL, 3, &ok, &crl), -1);
    assert_int_equal(ca_crl_build(p.issuing, dup, CA_CRL_MAX_ENTRIES + 1, &ok, &crl), -1);
    assert_int_equal(tsr_errcat(), TSR_E_LIMIT);
    assert_int_equal(ca_crl_build(NULL, NULL, 0, &ok, &crl), -1);
    assert_null(crl);
    pki_free(&p);
}

static void test_reason_text(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int code;
    } cases[] = {
        {NULL, CA_CRL_REASON_NONE},
        {"", CA_CRL_REASON_NONE},
        {"revoked by alice", CA_CRL_REASON_NONE},
        {"sandbox deleted", CA_CRL_REASON_NONE},
        {"unspecified", CA_CRL_REASON_NONE},
        {"certificateHold", CA_CRL_REASON_NONE},
        {"keyCompromise!", CA_CRL_REASON_NONE},
        {"keyCompromise", CA_CRL_KEY_COMPROMISE},
        {"key_compromise", CA_CRL_KEY_COMPROMISE},
        {"Key Compromise", CA_CRL_KEY_COMPROMISE},
        {"KEY-COMPROMISE", CA_CRL_KEY_COMPROMISE},
        {"cACompromise", CA_CRL_CA_COMPROMISE},
        {"affiliation changed", CA_CRL_AFFILIATION_CHANGED},
        {"superseded", CA_CRL_SUPERSEDED},
        {"cessation_of_operation", CA_CRL_CESSATION_OF_OPERATION},
        {"privilegeWithdrawn", CA_CRL_PRIVILEGE_WITHDRAWN},
        {"aACompromise", CA_CRL_AA_COMPROMISE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(ca_crl_reason_from_text(cases[i].text), cases[i].code);
    assert_string_equal(ca_crl_reason_name(CA_CRL_SUPERSEDED), "superseded");
    assert_string_equal(ca_crl_reason_name(CA_CRL_REASON_NONE), "none");
}

/* ---- contents ------------------------------------------------------------------ */

static void check_common(const pki *p, X509_CRL *crl, uint64_t number)
{
    assert_int_equal(X509_CRL_get_version(crl), X509_CRL_VERSION_2);
    assert_int_equal(X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(p->issuing->cert)), 0);
    /* Signature by the issuing CA, and not by the root. */
    assert_int_equal(X509_CRL_verify(crl, X509_get0_pubkey(p->issuing->cert)), 1);
    assert_int_not_equal(X509_CRL_verify(crl, X509_get0_pubkey(p->root->cert)), 1);
    int day = 0, sec = 0;
    assert_int_equal(ASN1_TIME_diff(&day, &sec, X509_CRL_get0_lastUpdate(crl),
                                    X509_CRL_get0_nextUpdate(crl)), 1);
    assert_int_equal(day * 86400 + sec, 6 * 3600 + 60);
    int crit = -1;
    ASN1_INTEGER *num = X509_CRL_get_ext_d2i(crl, NID_crl_number, &crit, NULL);
    assert_non_null(num);
    uint64_t got = 0;
    assert_int_equal(ASN1_INTEGER_get_uint64(&got, num), 1);
    assert_true(got == number);
    assert_int_equal(crit, 0);   /* RFC 5280 §5.2.3: non-critical */
    ASN1_INTEGER_free(num);
    AUTHORITY_KEYID *akid = X509_CRL_get_ext_d2i(crl, NID_authority_key_identifier, &crit, NULL);
    assert_non_null(akid);
    assert_non_null(akid->keyid);
    assert_int_equal(ASN1_OCTET_STRING_cmp(akid->keyid, X509_get0_subject_key_id(p->issuing->cert)), 0);
    AUTHORITY_KEYID_free(akid);
    assert_int_equal(X509_CRL_get_ext_count(crl), 2);
}

static void test_empty(void **state)
{
    (void)state;
    static const enum ca_key_type types[] = {CA_KEY_P256, CA_KEY_P384, CA_KEY_ED25519};
    for (size_t t = 0; t < 3; t++) {
        pki p;
        pki_make(&p, types[t]);
        X509_CRL *crl = NULL;
        ca_crl_params prm = params(7);
        if (ca_crl_build(p.issuing, NULL, 0, &prm, &crl) != 0) fail_msg("%s", tsr_errmsg());
        check_common(&p, crl, 7);
        /* RFC 5280 §5.1.2.6: no entries -> the list is absent, not empty. */
        assert_null(X509_CRL_get_REVOKED(crl));
        char *pem = NULL;
        size_t len = 0;
        assert_int_equal(ca_crl_to_pem(crl, &pem, &len), 0);
        assert_int_equal(strlen(pem), len);
        assert_non_null(strstr(pem, "-----BEGIN X509 CRL-----"));
        X509_CRL_free(crl);
        /* The PEM parses back to an identical, valid CRL. */
        BIO *bio = BIO_new_mem_buf(pem, (int)len);
        crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL);
        BIO_free(bio);
        assert_non_null(crl);
        check_common(&p, crl, 7);
        X509_CRL_free(crl);
        free(pem);
        pki_free(&p);
    }
}

static void test_entries_sorted_with_reasons(void **state)
{
    (void)state;
    pki p;
    pki_make(&p, CA_KEY_P256);
    ca_crl_entry e[] = {
        {"ff", g_now - 30, CA_CRL_SUPERSEDED},
        {"1", g_now - 10, CA_CRL_REASON_NONE},
        {"0100", g_now - 20, CA_CRL_KEY_COMPROMISE},
        {"7fffffffffffffffffffffffffffffff", g_now - 40, CA_CRL_CESSATION_OF_OPERATION},
        {"AB", g_now - 50, CA_CRL_PRIVILEGE_WITHDRAWN},
    };
    /* Reason and date per serial, to follow each entry through the sort. */
    static const char *const order[] = {"1", "ab", "ff", "100", "7fffffffffffffffffffffffffffffff"};
    static const int64_t age[] = {10, 50, 30, 20, 40};
    static const int why[] = {CA_CRL_REASON_NONE, CA_CRL_PRIVILEGE_WITHDRAWN, CA_CRL_SUPERSEDED,
                              CA_CRL_KEY_COMPROMISE, CA_CRL_CESSATION_OF_OPERATION};
    X509_CRL *crl = NULL;
    ca_crl_params prm = params(42);
    assert_int_equal(ca_crl_build(p.issuing, e, 5, &prm, &crl), 0);
    check_common(&p, crl, 42);
    STACK_OF(X509_REVOKED) *revs = X509_CRL_get_REVOKED(crl);
    assert_int_equal(sk_X509_REVOKED_num(revs), 5);
    for (int i = 0; i < 5; i++) {
        const X509_REVOKED *r = sk_X509_REVOKED_value(revs, i);
        char *h = hex_of(X509_REVOKED_get0_serialNumber(r));
        assert_string_equal(h, order[i]);
        OPENSSL_free(h);
        /* The input was normalized and sorted in place, the same way. */
        assert_string_equal(e[i].serial_hex, order[i]);
        const ca_crl_entry *src = &e[i];
        assert_int_equal(src->revoked_at, g_now - age[i]);
        assert_int_equal(src->reason, why[i]);
        assert_int_equal(ASN1_TIME_cmp_time_t(X509_REVOKED_get0_revocationDate(r),
                                              (time_t)src->revoked_at), 0);
        int crit = -1;
        ASN1_ENUMERATED *reason = X509_REVOKED_get_ext_d2i(r, NID_crl_reason, &crit, NULL);
        if (src->reason == CA_CRL_REASON_NONE) {
            assert_null(reason);
            assert_int_equal(X509_REVOKED_get_ext_count(r), 0);
        } else {
            assert_non_null(reason);
            assert_int_equal(ASN1_ENUMERATED_get(reason), src->reason);
            assert_int_equal(crit, 0);
            ASN1_ENUMERATED_free(reason);
        }
    }
    X509_CRL_free(crl);
    pki_free(&p);
}

/* OpenSSL's own CRL check: a listed leaf is refused, another accepted. */
static int verify_with_crl(const pki *p, X509 *cert, X509_CRL *crl)
{
    X509_STORE *store = X509_STORE_new();
    assert_int_equal(X509_STORE_add_cert(store, p->root->cert), 1);
    assert_int_equal(X509_STORE_add_crl(store, crl), 1);
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
    STACK_OF(X509) *untrusted = sk_X509_new_null();
    assert_true(sk_X509_push(untrusted, p->issuing->cert) > 0);
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    assert_int_equal(X509_STORE_CTX_init(ctx, store, cert, untrusted), 1);
    int ok = X509_verify_cert(ctx);
    int err = X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    sk_X509_free(untrusted);
    X509_STORE_free(store);
    return ok == 1 ? X509_V_OK : err;
}

static void test_openssl_crl_check(void **state)
{
    (void)state;
    pki p;
    pki_make(&p, CA_KEY_P256);
    X509 *revoked = leaf(&p), *live = leaf(&p);
    ca_crl_entry e = {.revoked_at = g_now - 5, .reason = CA_CRL_KEY_COMPROMISE};
    assert_int_equal(ca_cert_serial_hex(revoked, e.serial_hex), 0);
    X509_CRL *crl = NULL;
    ca_crl_params prm = params(1);
    assert_int_equal(ca_crl_build(p.issuing, &e, 1, &prm, &crl), 0);
    assert_int_equal(verify_with_crl(&p, revoked, crl), X509_V_ERR_CERT_REVOKED);
    assert_int_equal(verify_with_crl(&p, live, crl), X509_V_OK);
    X509_CRL_free(crl);
    /* A CRL signed by another CA of the same name is not accepted. */
    pki other;
    pki_make(&other, CA_KEY_P256);
    assert_int_equal(ca_crl_build(other.issuing, NULL, 0, &prm, &crl), 0);
    assert_int_not_equal(verify_with_crl(&p, live, crl), X509_V_OK);
    X509_CRL_free(crl);
    pki_free(&other);
    X509_free(revoked);
    X509_free(live);
    pki_free(&p);
}

static void test_many_entries(void **state)
{
    (void)state;
    pki p;
    pki_make(&p, CA_KEY_P256);
    enum { N = 20000 };
    ca_crl_entry *e = calloc(N, sizeof *e);
    assert_non_null(e);
    /* Descending input, 128-bit-sized serials: the output must ascend. */
    for (size_t i = 0; i < N; i++) {
        snprintf(e[i].serial_hex, sizeof e[i].serial_hex, "4%031zx", (size_t)(N - i));
        e[i].revoked_at = g_now - (int64_t)i;
        e[i].reason = i % 3 == 0 ? CA_CRL_CESSATION_OF_OPERATION : CA_CRL_REASON_NONE;
    }
    X509_CRL *crl = NULL;
    ca_crl_params prm = params(UINT64_C(1) << 40);
    assert_int_equal(ca_crl_build(p.issuing, e, N, &prm, &crl), 0);
    check_common(&p, crl, UINT64_C(1) << 40);
    STACK_OF(X509_REVOKED) *revs = X509_CRL_get_REVOKED(crl);
    assert_int_equal(sk_X509_REVOKED_num(revs), N);
    for (int i = 1; i < N; i++)
        assert_true(ASN1_INTEGER_cmp(X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(revs, i - 1)),
                                     X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(revs, i))) < 0);
    /* Lookup by serial works on what we built. */
    X509_REVOKED *found = NULL;
    BIGNUM *bn = NULL;
    assert_true(BN_hex2bn(&bn, "40000000000000000000000000000064") > 0);
    ASN1_INTEGER *ai = BN_to_ASN1_INTEGER(bn, NULL);
    assert_int_equal(X509_CRL_get0_by_serial(crl, &found, ai), 1);
    ASN1_INTEGER_free(ai);
    BN_free(bn);
    X509_CRL_free(crl);
    free(e);
    pki_free(&p);
}

int main(void)
{
    g_now = tsr_now_unix();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_reason_text),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_entries_sorted_with_reasons),
        cmocka_unit_test(test_openssl_crl_check),
        cmocka_unit_test(test_many_entries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
