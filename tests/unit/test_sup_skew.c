/* Clock skew of ±5 min between the gateway and the supervisor (issue 6,
 * docs/security.md "Clock skew"), on the supervisor's side: the gateway
 * issues at its time T with notBefore = T − 60 s; the supervisor judges the
 * certificate and schedules the next rotation by its own clock, T + skew.
 *
 * Failure cases first: a certificate further in the future than the
 * tolerance is refused; then a supervisor 5 min behind accepts a fresh
 * renewal and a fresh identity at start, and schedules its rotation before
 * the real expiry even at the shortest TTL; a supervisor 5 min ahead
 * accepts and rotates early. */
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
#define MIN 60

static int64_t g_t; /* the gateway's clock */

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
    assert_int_equal(tu_pki_init(&f->pki, TD, g_t), 0);
    /* The current identity: issued an hour ago, still valid. */
    assert_int_equal(tu_pki_leaf(&f->pki, SB_ID, NULL, g_t - 1800, 3600, &f->cur_leaf), 0);
    f->dir = tu_scratch_dir("supskew");
    assert_non_null(f->dir);
    assert_int_equal(tu_write_identity(f->dir, &f->pki, &f->cur_leaf), 0);
    enum ca_verify_reason reason;
    assert_int_equal(sup_identity_load(f->dir, TD, g_t, &reason, &f->cur), 0);
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

/* RenewCertificate's answer, issued at gateway time g_t, checked at the
 * supervisor's clock g_t + skew. */
static int renew_at_skew(fx *f, int64_t skew, int64_t ttl, sup_identity **out)
{
    tu_leaf next;
    assert_int_equal(tu_pki_leaf(&f->pki, SB_ID, f->new_key, g_t, ttl, &next), 0);
    tsr_err_clear();
    int rc = sup_renewal_check(f->cur, f->new_key, TD, next.leaf_pem, f->pki.issuing_pem, "",
                               g_t + skew, out);
    tu_leaf_free(&next);
    return rc;
}

static void test_renewal_beyond_tolerance_refused(void **state)
{
    fx *f = *state;
    sup_identity *out = NULL;
    /* notBefore = g_t − 60 lies 301 s past a clock 361 s behind. */
    assert_int_not_equal(renew_at_skew(f, -(SUP_MAX_CLOCK_SKEW_S + MIN + 1), 3600, &out), 0);
    assert_null(out);
    assert_non_null(strstr(tsr_errmsg(), "not yet valid"));
    /* ... and a certificate that has expired at our clock stays refused. */
    assert_int_not_equal(renew_at_skew(f, 3600 + 1, 3600, &out), 0);
    assert_null(out);
}

static void test_renewal_supervisor_5min_behind(void **state)
{
    fx *f = *state;
    for (int64_t skew = -5 * MIN; skew <= 0; skew += MIN) {
        sup_identity *out = NULL;
        if (renew_at_skew(f, skew, 3600, &out) != 0)
            fail_msg("skew %lld s: refused: %s", (long long)skew, tsr_errmsg());
        assert_string_equal(out->peer.identity.id.text, SB_ID);
        assert_int_equal(out->peer.not_before, g_t - MIN);
        sup_identity_free(out);
    }
}

static void test_renewal_supervisor_5min_ahead(void **state)
{
    fx *f = *state;
    sup_identity *out = NULL;
    if (renew_at_skew(f, 5 * MIN, 3600, &out) != 0) fail_msg("refused: %s", tsr_errmsg());
    sup_identity_free(out);
}

/* At start: the identity the driver placed moments ago, its notBefore in
 * the future of a clock 5 min slow. */
static void test_load_supervisor_5min_behind(void **state)
{
    fx *f = *state;
    tu_leaf fresh;
    assert_int_equal(tu_pki_leaf(&f->pki, SB_ID, NULL, g_t, 3600, &fresh), 0);
    assert_int_equal(tu_write(f->dir, "cert.pem", fresh.chain_pem, fresh.chain_len, 0600), 0);
    assert_int_equal(tu_write(f->dir, "key.pem", fresh.key_pem, fresh.key_len, 0600), 0);
    sup_identity *id = NULL;
    enum ca_verify_reason reason;
    if (sup_identity_load(f->dir, TD, g_t - 5 * MIN, &reason, &id) != 0)
        fail_msg("refused: %s", tsr_errmsg());
    sup_identity_free(id);
    /* Beyond the tolerance: not yet valid. */
    assert_int_not_equal(sup_identity_load(f->dir, TD, g_t - SUP_MAX_CLOCK_SKEW_S - MIN - 1,
                                           &reason, &id), 0);
    assert_int_equal(reason, CA_VERIFY_NOT_YET_VALID);
    tu_leaf_free(&fresh);
}

static void test_clock_behind_estimate(void **state)
{
    (void)state;
    int64_t nb = g_t - MIN; /* what the gateway writes at g_t */
    assert_int_equal(sup_clock_behind_s(nb, g_t), 0);
    assert_int_equal(sup_clock_behind_s(nb, g_t - 5 * MIN), 5 * MIN);
    assert_int_equal(sup_clock_behind_s(nb, g_t - 2 * MIN), 2 * MIN);
    /* Ahead, or an old certificate: no correction (rotating early is safe). */
    assert_int_equal(sup_clock_behind_s(nb, g_t + 5 * MIN), 0);
    assert_int_equal(sup_clock_behind_s(nb, g_t + 86400), 0);
    /* Capped at the tolerance. */
    assert_int_equal(sup_clock_behind_s(nb, g_t - 3600), SUP_MAX_CLOCK_SKEW_S);
}

/* The rotation delay as sup_control computes it, for a certificate issued
 * at g_t with `ttl`, seen from a clock g_t + skew, with the largest jitter. */
static int64_t scheduled_ms(int64_t skew, int64_t ttl)
{
    int64_t local = g_t + skew;
    int64_t behind = sup_clock_behind_s(g_t - MIN, local);
    bool expired = false;
    int64_t d = sup_rotate_delay_ms((local + behind) * 1000, g_t + ttl, 1, 0, 0.999999, &expired);
    assert_false(expired);
    return d;
}

static void test_schedule_with_skew(void **state)
{
    (void)state;
    /* The shortest TTL (5 min), a supervisor 5 min slow: without the
     * correction it would wait 0.55 × 10 min, past the real expiry. */
    bool expired = false;
    assert_true(sup_rotate_delay_ms((g_t - 5 * MIN) * 1000, g_t + 5 * MIN, 1, 0, 0.999999,
                                    &expired) > 5 * MIN * 1000);
    for (int64_t skew = -5 * MIN; skew <= 5 * MIN; skew += MIN) {
        int64_t ttl = skew > 0 ? 3600 : 5 * MIN;  /* ahead by 5 min needs TTL > 5 min */
        int64_t d = scheduled_ms(skew, ttl);
        /* Rotation at most 0.55 of the real remaining lifetime, never later. */
        if (d > ttl * 1000 * 55 / 100 + 1)
            fail_msg("skew %lld s, TTL %lld s: rotation in %lld ms", (long long)skew,
                     (long long)ttl, (long long)d);
        assert_true(d > 0);
    }
}

int main(void)
{
    g_t = tsr_now_unix();
#define TF(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        TF(test_renewal_beyond_tolerance_refused),
        TF(test_renewal_supervisor_5min_behind),
        TF(test_renewal_supervisor_5min_ahead),
        TF(test_load_supervisor_5min_behind),
        cmocka_unit_test(test_clock_behind_estimate),
        cmocka_unit_test(test_schedule_with_skew),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
