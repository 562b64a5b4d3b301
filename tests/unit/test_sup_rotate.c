/* sup_rotate: the schedule (half-life, jitter bounds, floor, expiry), the
 * backoff sequence, the CSR, and the check of a RenewCertificate answer —
 * refusals first. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../supervisor/sup_identity.c"
#include "../../supervisor/sup_rotate.c"
#include "tsr_time.h"
#include "tu_suppki.h"

#define TD "tessera.local"
#define SB_ID "spiffe://" TD "/sandbox/0f8e6c4a-3b1d-4e2f-9a7c-5d6e7f809a1b"
#define OTHER_ID "spiffe://" TD "/sandbox/11111111-2222-4333-8444-555555555555"

static int64_t g_now;

/* ---- schedule --------------------------------------------------------------------- */

static void test_schedule_expired(void **state)
{
    (void)state;
    bool expired = false;
    int64_t now_ms = 1000000000000LL;
    /* Past, and exactly at notAfter: expired, delay 0. */
    assert_int_equal(sup_rotate_delay_ms(now_ms, now_ms / 1000 - 10, 60, 0, 0.5, &expired), 0);
    assert_true(expired);
    expired = false;
    assert_int_equal(sup_rotate_delay_ms(now_ms, now_ms / 1000, 60, 0, 0.5, &expired), 0);
    assert_true(expired);
    /* One millisecond left is not expired. */
    assert_int_equal(sup_rotate_delay_ms(now_ms - 1, now_ms / 1000, 1, 0, 0.5, &expired), 0);
    assert_false(expired);
}

static void test_schedule_half_life(void **state)
{
    (void)state;
    bool expired = true;
    int64_t now_ms = 1700000000000LL;
    int64_t na = now_ms / 1000 + 3600;
    /* u = 0.5 is the exact half: 1800 s. */
    assert_int_equal(sup_rotate_delay_ms(now_ms, na, 60, 0, 0.5, &expired), 1800000);
    assert_false(expired);
    /* The remaining lifetime counts, not the original one. */
    assert_int_equal(sup_rotate_delay_ms(now_ms + 1000000, na, 60, 0, 0.5, &expired), 1300000);
}

static void test_schedule_jitter_bounds(void **state)
{
    (void)state;
    bool expired;
    int64_t now_ms = 1700000000000LL;
    int64_t na = now_ms / 1000 + 3600;
    assert_int_equal(sup_rotate_delay_ms(now_ms, na, 60, 0, 0.0, &expired), 1620000);   /* -10% */
    int64_t hi = sup_rotate_delay_ms(now_ms, na, 60, 0, 0.999999, &expired);
    assert_true(hi < 1980000 && hi > 1979990);                                       /* +10% */
    /* Out-of-range jitter inputs fall back to the exact half. */
    const double bad[] = {-0.1, 1.0, 7.5, NAN, INFINITY};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(sup_rotate_delay_ms(now_ms, na, 60, 0, bad[i], &expired), 1800000);
    /* Random draws stay inside [0.9, 1.1) of the half. */
    for (int i = 0; i < 2000; i++) {
        int64_t d = sup_rotate_delay_ms(now_ms, na, 60, 0, sup_rand_unit(), &expired);
        if (d < 1620000 || d >= 1980000) fail_msg("delay %lld out of bounds", (long long)d);
    }
}

static void test_schedule_floor(void **state)
{
    (void)state;
    bool expired;
    int64_t now_ms = 1700000000000LL;
    /* 100 s left: the half (50 s) is below the 60 s floor. */
    assert_int_equal(sup_rotate_delay_ms(now_ms, now_ms / 1000 + 100, 60, 0, 0.5, &expired), 60000);
    /* 30 s left with a 60 s floor: the floor would outlive the certificate,
     * so 90% of what remains. */
    assert_int_equal(sup_rotate_delay_ms(now_ms, now_ms / 1000 + 30, 60, 0, 0.5, &expired), 27000);
    /* A 1 s floor (tests) leaves the half-life alone. */
    assert_int_equal(sup_rotate_delay_ms(now_ms, now_ms / 1000 + 20, 1, 0, 0.5, &expired), 10000);
    /* No floor at all. */
    assert_int_equal(sup_rotate_delay_ms(now_ms, now_ms / 1000 + 20, 0, 0, 0.5, &expired), 10000);
}

static void test_schedule_renew_before(void **state)
{
    (void)state;
    bool expired = true;
    int64_t now_ms = 1700000000000LL;
    /* A 5 min certificate with --renew-before 290s: due after 10 s, with no
     * jitter on that deadline, at any u. */
    int64_t na = now_ms / 1000 + 300;
    assert_int_equal(sup_rotate_delay_ms(now_ms, na, 1, 290, 0.5, &expired), 10000);
    assert_false(expired);
    assert_int_equal(sup_rotate_delay_ms(now_ms, na, 1, 290, 0.999999, &expired), 10000);
    /* Half the remaining lifetime comes first: the half-life schedule is
     * unchanged (1 h certificate, 20 min before). */
    na = now_ms / 1000 + 3600;
    assert_int_equal(sup_rotate_delay_ms(now_ms, na, 60, 1200, 0.5, &expired), 1800000);
    /* 50 min before on a 1 h certificate: after 10 min. */
    assert_int_equal(sup_rotate_delay_ms(now_ms, na, 60, 3000, 0.5, &expired), 600000);
    /* The remaining lifetime counts: 5 min later, 55 min left, due in 5 min. */
    assert_int_equal(sup_rotate_delay_ms(now_ms + 300000, na, 60, 3000, 0.5, &expired), 300000);
    /* Longer than the certificate lives: --min-rotate-seconds is the floor,
     * and 90% of what remains the latest. */
    assert_int_equal(sup_rotate_delay_ms(now_ms, now_ms / 1000 + 300, 60, 86400, 0.5, &expired),
                     60000);
    assert_int_equal(sup_rotate_delay_ms(now_ms, now_ms / 1000 + 30, 60, 86400, 0.5, &expired),
                     27000);
}

static void test_rand_unit_range(void **state)
{
    (void)state;
    double lo = 1.0, hi = 0.0;
    for (int i = 0; i < 10000; i++) {
        double u = sup_rand_unit();
        assert_true(u >= 0.0 && u < 1.0);
        if (u < lo) lo = u;
        if (u > hi) hi = u;
    }
    assert_true(lo < 0.01 && hi > 0.99); /* not constant */
}

/* ---- backoff ------------------------------------------------------------------------ */

static void test_backoff_sequence(void **state)
{
    (void)state;
    const int64_t want[] = {1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000};
    for (unsigned i = 0; i < sizeof want / sizeof want[0]; i++)
        assert_int_equal(sup_backoff_ms(i, 0.5), want[i]);
    assert_int_equal(sup_backoff_ms(15, 0.5), 60000);
    assert_int_equal(sup_backoff_ms(16, 0.5), 60000);
    assert_int_equal(sup_backoff_ms(1000, 0.5), 60000);
    assert_int_equal(sup_backoff_ms(UINT32_MAX, 0.5), 60000);
}

static void test_backoff_jitter_and_cap(void **state)
{
    (void)state;
    assert_int_equal(sup_backoff_ms(0, 0.0), 900);
    assert_int_equal(sup_backoff_ms(0, 0.999999), 1099);
    assert_int_equal(sup_backoff_ms(5, 0.0), 28800);
    /* 60 s + 10% is capped at 60 s; -10% is allowed below. */
    assert_int_equal(sup_backoff_ms(6, 0.999999), 60000);
    assert_int_equal(sup_backoff_ms(6, 0.0), 54000);
    for (unsigned a = 0; a < 40; a++)
        for (int i = 0; i < 50; i++) {
            int64_t d = sup_backoff_ms(a, sup_rand_unit());
            assert_true(d >= 900 && d <= SUP_BACKOFF_MAX_MS);
        }
}

/* ---- CSR -------------------------------------------------------------------------- */

static void test_csr_refusals(void **state)
{
    (void)state;
    uint8_t *der = NULL;
    size_t len = 0;
    assert_int_equal(sup_csr_build(NULL, &der, &len), -1);
    assert_null(der);
}

static void test_csr_profile(void **state)
{
    (void)state;
    const enum ca_key_type types[] = {CA_KEY_P256, CA_KEY_P384, CA_KEY_ED25519};
    for (size_t i = 0; i < 3; i++) {
        EVP_PKEY *key = NULL;
        assert_int_equal(ca_key_generate(types[i], &key), 0);
        uint8_t *der = NULL;
        size_t len = 0;
        assert_int_equal(sup_csr_build(key, &der, &len), 0);
        /* The CA's own parser accepts it: self-signature and key. */
        EVP_PKEY *pub = NULL;
        if (ca_csr_check(der, len, &pub) != 0) fail_msg("ca_csr_check: %s", tsr_errmsg());
        assert_int_equal(EVP_PKEY_eq(pub, key), 1);
        EVP_PKEY_free(pub);
        /* Empty subject, no attributes (so no requested extensions). */
        const unsigned char *p = der;
        X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)len);
        assert_non_null(req);
        assert_int_equal(X509_NAME_entry_count(X509_REQ_get_subject_name(req)), 0);
        assert_int_equal(X509_REQ_get_attr_count(req), 0);
        assert_int_equal(X509_REQ_get_version(req), X509_REQ_VERSION_1);
        X509_REQ_free(req);
        free(der);
        EVP_PKEY_free(key);
    }
}

/* ---- renewal check --------------------------------------------------------------------- */

typedef struct fx {
    tu_pki pki;
    tu_leaf cur_leaf;
    sup_identity *cur;
    char *dir;
    EVP_PKEY *new_key;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(tu_pki_init(&f->pki, TD, g_now), 0);
    assert_int_equal(tu_pki_leaf(&f->pki, SB_ID, NULL, g_now, 3600, &f->cur_leaf), 0);
    f->dir = tu_scratch_dir("suprot");
    assert_non_null(f->dir);
    assert_int_equal(tu_write_identity(f->dir, &f->pki, &f->cur_leaf), 0);
    enum ca_verify_reason reason;
    assert_int_equal(sup_identity_load(f->dir, TD, 0, &reason, &f->cur), 0);
    assert_int_equal(ca_key_generate(CA_KEY_P256, &f->new_key), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    sup_identity_free(f->cur);
    EVP_PKEY_free(f->new_key);
    tu_leaf_free(&f->cur_leaf);
    tu_pki_free(&f->pki);
    tu_rm_rf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static void expect_check_refused(fx *f, const char *leaf, const char *chain, const char *bundle,
                                 const char *needle)
{
    sup_identity *out = NULL;
    tsr_err_clear();
    if (sup_renewal_check(f->cur, f->new_key, TD, leaf, chain, bundle, 0, &out) == 0) {
        sup_identity_free(out);
        fail_msg("accepted; expected a refusal containing \"%s\"", needle);
    }
    assert_null(out);
    if (strstr(tsr_errmsg(), needle) == NULL)
        fail_msg("error \"%s\" does not contain \"%s\"", tsr_errmsg(), needle);
}

static void test_renewal_wrong_identity_refused(void **state)
{
    fx *f = *state;
    tu_leaf other;
    assert_int_equal(tu_pki_leaf(&f->pki, OTHER_ID, f->new_key, g_now, 3600, &other), 0);
    expect_check_refused(f, other.leaf_pem, f->pki.issuing_pem, f->pki.bundle_pem,
                         "is for " OTHER_ID);
    tu_leaf_free(&other);
    /* A user certificate with our key is no sandbox identity at all. */
    assert_int_equal(
        tu_pki_leaf(&f->pki, "spiffe://" TD "/user/alice", f->new_key, g_now, 3600, &other), 0);
    expect_check_refused(f, other.leaf_pem, f->pki.issuing_pem, f->pki.bundle_pem,
                         "does not verify");
    tu_leaf_free(&other);
}

static void test_renewal_wrong_key_refused(void **state)
{
    fx *f = *state;
    tu_leaf other; /* right identity, somebody else's key */
    assert_int_equal(tu_pki_leaf(&f->pki, SB_ID, NULL, g_now, 3600, &other), 0);
    expect_check_refused(f, other.leaf_pem, f->pki.issuing_pem, f->pki.bundle_pem,
                         "does not carry the public key we sent");
    tu_leaf_free(&other);
}

static void test_renewal_bad_pem_refused(void **state)
{
    fx *f = *state;
    tu_leaf good;
    assert_int_equal(tu_pki_leaf(&f->pki, SB_ID, f->new_key, g_now, 3600, &good), 0);
    expect_check_refused(f, "", f->pki.issuing_pem, f->pki.bundle_pem, "renewed certificate");
    expect_check_refused(f, "garbage", f->pki.issuing_pem, f->pki.bundle_pem,
                         "renewed certificate");
    /* Two certificates where one leaf is expected. */
    expect_check_refused(f, good.chain_pem, "", f->pki.bundle_pem, "2 certificates");
    /* Trailing garbage after the leaf. */
    char *trail = malloc(good.leaf_len + 10);
    memcpy(trail, good.leaf_pem, good.leaf_len);
    strcpy(trail + good.leaf_len, "junk");
    expect_check_refused(f, trail, f->pki.issuing_pem, f->pki.bundle_pem, "renewed certificate");
    free(trail);
    expect_check_refused(f, good.leaf_pem, "not a chain", f->pki.bundle_pem, "renewed chain");
    expect_check_refused(f, good.leaf_pem, f->pki.issuing_pem, "not a bundle", "renewed bundle");
    tu_leaf_free(&good);
}

static void test_renewal_untrusted_or_expired_refused(void **state)
{
    fx *f = *state;
    tu_pki rogue;
    assert_int_equal(tu_pki_init(&rogue, TD, g_now), 0);
    tu_leaf l;
    /* Signed by a CA outside our bundle (the gateway's bundle is not it either). */
    assert_int_equal(tu_pki_leaf(&rogue, SB_ID, f->new_key, g_now, 3600, &l), 0);
    expect_check_refused(f, l.leaf_pem, rogue.issuing_pem, "", "does not verify");
    tu_leaf_free(&l);
    /* Already expired when it arrives. */
    assert_int_equal(tu_pki_leaf(&f->pki, SB_ID, f->new_key, g_now - 7200, 600, &l), 0);
    expect_check_refused(f, l.leaf_pem, f->pki.issuing_pem, "", "does not verify");
    tu_leaf_free(&l);
    /* Without the intermediate the chain does not build. */
    assert_int_equal(tu_pki_leaf(&f->pki, SB_ID, f->new_key, g_now, 3600, &l), 0);
    expect_check_refused(f, l.leaf_pem, "", "", "does not verify");
    tu_leaf_free(&l);
    tu_pki_free(&rogue);
}

static void test_renewal_accepted(void **state)
{
    fx *f = *state;
    tu_leaf next;
    assert_int_equal(tu_pki_leaf(&f->pki, SB_ID, f->new_key, g_now, 3600, &next), 0);
    sup_identity *out = NULL;
    /* Empty bundle in the answer: ours is kept. */
    if (sup_renewal_check(f->cur, f->new_key, TD, next.leaf_pem, f->pki.issuing_pem, "", 0,
                          &out) != 0)
        fail_msg("refused: %s", tsr_errmsg());
    assert_string_equal(out->peer.identity.id.text, SB_ID);
    assert_string_equal(out->peer.serial_hex, next.serial);
    assert_true(out->key == f->new_key);
    assert_int_equal(out->bundle_pem_len, f->cur->bundle_pem_len);
    assert_int_equal(out->cert_pem_len, next.chain_len);
    assert_memory_equal(out->cert_pem, next.chain_pem, next.chain_len);
    assert_null(strstr((char *)out->cert_pem, "PRIVATE"));
    assert_non_null(strstr((char *)out->key_pem, "BEGIN PRIVATE KEY"));
    /* What it stores loads back as the same identity. */
    assert_int_equal(sup_identity_store(f->dir, out->cert_pem, out->cert_pem_len, out->key_pem,
                                        out->key_pem_len, out->bundle_pem, out->bundle_pem_len),
                     0);
    sup_identity *loaded = NULL;
    enum ca_verify_reason reason;
    assert_int_equal(sup_identity_load(f->dir, TD, 0, &reason, &loaded), 0);
    assert_string_equal(loaded->peer.serial_hex, next.serial);
    assert_int_equal(EVP_PKEY_eq(loaded->key, f->new_key), 1);
    sup_identity_free(loaded);
    sup_identity_free(out);
    /* A new bundle in the answer replaces ours. */
    tu_pki extra;
    assert_int_equal(tu_pki_init(&extra, TD, g_now), 0);
    size_t both_len = f->pki.bundle_len + extra.bundle_len;
    char *both = malloc(both_len + 1);
    memcpy(both, f->pki.bundle_pem, f->pki.bundle_len);
    memcpy(both + f->pki.bundle_len, extra.bundle_pem, extra.bundle_len + 1);
    assert_int_equal(sup_renewal_check(f->cur, f->new_key, TD, next.leaf_pem, f->pki.issuing_pem,
                                       both, 0, &out),
                     0);
    assert_int_equal(out->bundle_pem_len, both_len);
    sup_identity_free(out);
    free(both);
    tu_pki_free(&extra);
    tu_leaf_free(&next);
}

int main(void)
{
    g_now = tsr_now_unix();
#define TF(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedule_expired),
        cmocka_unit_test(test_schedule_half_life),
        cmocka_unit_test(test_schedule_jitter_bounds),
        cmocka_unit_test(test_schedule_floor),
        cmocka_unit_test(test_schedule_renew_before),
        cmocka_unit_test(test_rand_unit_range),
        cmocka_unit_test(test_backoff_sequence),
        cmocka_unit_test(test_backoff_jitter_and_cap),
        cmocka_unit_test(test_csr_refusals),
        cmocka_unit_test(test_csr_profile),
        TF(test_renewal_wrong_identity_refused),
        TF(test_renewal_wrong_key_refused),
        TF(test_renewal_bad_pem_refused),
        TF(test_renewal_untrusted_or_expired_refused),
        TF(test_renewal_accepted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
