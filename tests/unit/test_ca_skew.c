/* Clock skew between the issuer and a verifier: what the 60 s notBefore
 * backdate of docs/identity.md covers and what it does not.
 *
 * Every leaf is issued with an explicit `now` (the issuer's clock, offset
 * from a fixed true time T) through both issuance paths (ca_issue_leaf, as at
 * CreateSandbox, and ca_sign_csr, as at RenewCertificate), then verified
 * with ca_verify_peer at the verifier's clock. The verifier is strict
 * X.509: no tolerance of its own. docs/security.md states the rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca_issue.h"
#include "ca_pem.h"
#include "ca_verify.h"
#include "tsr_err.h"

#define TD "tessera.local"
#define SANDBOX_ID "spiffe://" TD "/sandbox/0f8e6c4a-3b1d-4e2f-9a7c-5d6e7f809a1b"
#define T ((int64_t)1767225600) /* true time: 2026-01-01T00:00:00Z */
#define MIN 60
#define TTL 3600
#define BACKDATE 60

static ca_issuer *g_root, *g_issuing;
static ca_trust *g_trust;
static STACK_OF(X509) *g_untrusted;

static int setup(void **state)
{
    (void)state;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    char *pem = NULL;
    size_t len = 0;
    /* CAs valid from a day before T to well after every case. */
    if (ca_create_root(CA_KEY_P256, TD, 30 * 86400, T - 86400, &key, &cert) != 0 ||
        ca_issuer_new(cert, key, &g_root) != 0 ||
        ca_create_issuing(g_root, CA_KEY_P256, TD, 10 * 86400, T - 86400, &key, &cert) != 0 ||
        ca_issuer_new(cert, key, &g_issuing) != 0 ||
        ca_cert_to_pem(g_root->cert, &pem, &len) != 0 ||
        ca_trust_from_pem((const uint8_t *)pem, len, TD, &g_trust) != 0) {
        fprintf(stderr, "setup: %s\n", tsr_errmsg());
        free(pem);
        return -1;
    }
    free(pem);
    g_untrusted = sk_X509_new_null();
    if (g_untrusted == NULL || !X509_up_ref(g_issuing->cert) ||
        sk_X509_push(g_untrusted, g_issuing->cert) <= 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sk_X509_pop_free(g_untrusted, X509_free);
    ca_trust_free(g_trust);
    ca_issuer_free(g_issuing);
    ca_issuer_free(g_root);
    return 0;
}

/* A DER CSR for `key` with an empty subject. */
static uint8_t *csr_for(EVP_PKEY *key, size_t *len)
{
    X509_REQ *req = X509_REQ_new();
    assert_non_null(req);
    assert_int_equal(X509_REQ_set_version(req, 0), 1);
    assert_int_equal(X509_REQ_set_pubkey(req, key), 1);
    assert_true(X509_REQ_sign(req, key, EVP_sha256()) > 0);
    unsigned char *der = NULL;
    int n = i2d_X509_REQ(req, &der);
    X509_REQ_free(req);
    assert_true(n > 0);
    *len = (size_t)n;
    return der;
}

enum path { VIA_ISSUE_LEAF, VIA_SIGN_CSR };

static X509 *issue_at(enum path path, int64_t issuer_now)
{
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    assert_int_equal(ca_key_generate(CA_KEY_P256, &key), 0);
    if (path == VIA_ISSUE_LEAF) {
        ca_leaf_request req = {
            .spiffe_id = SANDBOX_ID, .public_key = key, .ttl_seconds = TTL, .now = issuer_now,
        };
        if (ca_issue_leaf(g_issuing, &req, &cert) != 0) fail_msg("issue: %s", tsr_errmsg());
    } else {
        size_t len = 0;
        uint8_t *der = csr_for(key, &len);
        int rc = ca_sign_csr(g_issuing, der, len, SANDBOX_ID, TTL, issuer_now, &cert);
        OPENSSL_free(der);
        if (rc != 0) fail_msg("sign CSR: %s", tsr_errmsg());
    }
    EVP_PKEY_free(key);
    /* The profile: backdated 60 s from the issuer's clock, TTL from it. */
    int64_t nb = 0, na = 0;
    assert_int_equal(ca_cert_validity(cert, &nb, &na), 0);
    assert_int_equal(nb, issuer_now - BACKDATE);
    assert_int_equal(na, issuer_now + TTL);
    return cert;
}

struct skew_case {
    const char *name;
    int64_t issuer_skew;    /* issuer clock - true time */
    int64_t verifier_skew;  /* verifier clock - true time, at issuance */
    int64_t elapsed;        /* true seconds between issuance and verification */
    enum ca_verify_reason want;
};

/* Refusals first. */
static const struct skew_case cases[] = {
    {"issuer 5 min ahead: not yet valid to a true clock", 5 * MIN, 0, 0,
     CA_VERIFY_NOT_YET_VALID},
    {"issuer 61 s ahead: not yet valid for the first second", 61, 0, 0,
     CA_VERIFY_NOT_YET_VALID},
    {"verifier 5 min behind the issuer: not yet valid", 0, -5 * MIN, 0,
     CA_VERIFY_NOT_YET_VALID},
    {"verifier 5 min behind, 3:59 later: still not yet valid", 0, -5 * MIN, 4 * MIN - 1,
     CA_VERIFY_NOT_YET_VALID},
    {"verifier 61 s behind: not yet valid", 0, -61, 0, CA_VERIFY_NOT_YET_VALID},
    /* OpenSSL counts the notAfter second itself as expired. */
    {"verifier 5 min ahead, at notAfter by its clock", 0, 5 * MIN, TTL - 5 * MIN,
     CA_VERIFY_EXPIRED},
    {"issuer 5 min behind: expires 5 min early by true time", -5 * MIN, 0, TTL - 5 * MIN,
     CA_VERIFY_EXPIRED},
    /* Accepted. */
    {"same clock", 0, 0, 0, CA_VERIFY_OK},
    {"verifier 60 s behind: the backdate covers it", 0, -60, 0, CA_VERIFY_OK},
    {"issuer 60 s ahead: the backdate covers it", 60, 0, 0, CA_VERIFY_OK},
    {"issuer 5 min ahead, 4 min later by true time", 5 * MIN, 0, 4 * MIN, CA_VERIFY_OK},
    {"verifier 5 min behind, 4 min later: valid from then on", 0, -5 * MIN, 4 * MIN,
     CA_VERIFY_OK},
    {"issuer 5 min behind: valid at once", -5 * MIN, 0, 0, CA_VERIFY_OK},
    {"verifier 5 min ahead: valid at once", 0, 5 * MIN, 0, CA_VERIFY_OK},
    {"verifier 5 min ahead, 1 s before notAfter by its clock", 0, 5 * MIN, TTL - 5 * MIN - 1,
     CA_VERIFY_OK},
};

static void run_case(const struct skew_case *c, enum path path)
{
    X509 *leaf = issue_at(path, T + c->issuer_skew);
    int64_t verify_now = T + c->verifier_skew + c->elapsed;
    enum ca_verify_reason reason = CA_VERIFY_OK;
    ca_peer peer;
    int rc = ca_verify_peer(g_trust, leaf, g_untrusted, CA_PURPOSE_CLIENT, CA_KIND_SANDBOX,
                            verify_now, &reason, &peer);
    if ((rc == 0) != (c->want == CA_VERIFY_OK) || reason != c->want)
        fail_msg("%s (%s): got %s (%s), want %s", c->name,
                 path == VIA_ISSUE_LEAF ? "ca_issue_leaf" : "ca_sign_csr",
                 ca_verify_reason_name(reason), rc == 0 ? "accepted" : tsr_errmsg(),
                 ca_verify_reason_name(c->want));
    if (rc != 0) assert_int_equal(tsr_errcat(), TSR_E_UNAUTH);
    else assert_string_equal(peer.identity.id.text, SANDBOX_ID);
    X509_free(leaf);
}

static void test_skew_issue_leaf(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i], VIA_ISSUE_LEAF);
}

static void test_skew_sign_csr(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i], VIA_SIGN_CSR);
}

/* The backdate is exactly 60 s: one second more of verifier lag is refused,
 * at every instant of the first minute after issuance. */
static void test_backdate_boundary(void **state)
{
    (void)state;
    X509 *leaf = issue_at(VIA_ISSUE_LEAF, T);
    for (int64_t lag = 0; lag <= 61; lag++) {
        enum ca_verify_reason reason = CA_VERIFY_OK;
        ca_peer peer;
        int rc = ca_verify_peer(g_trust, leaf, g_untrusted, CA_PURPOSE_CLIENT, CA_KIND_SANDBOX,
                                T - lag, &reason, &peer);
        if (lag <= BACKDATE) {
            if (rc != 0) fail_msg("lag %llds refused: %s", (long long)lag, tsr_errmsg());
        } else {
            assert_int_equal(rc, -1);
            assert_int_equal(reason, CA_VERIFY_NOT_YET_VALID);
        }
    }
    X509_free(leaf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_skew_issue_leaf),
        cmocka_unit_test(test_skew_sign_csr),
        cmocka_unit_test(test_backdate_boundary),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
