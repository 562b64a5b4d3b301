/* tsr_strmap and the two users of it: the revocation set and the rate limiter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gw_ratelimit.h"
#include "gw_revocation.h"
#include "tsr_strmap.h"

static void test_strmap_put_get_remove_grow(void **state)
{
    (void)state;
    tsr_strmap *m = NULL;
    assert_int_equal(tsr_strmap_new(&m), 0);
    assert_null(tsr_strmap_get(m, "absent"));
    assert_null(tsr_strmap_remove(m, "absent"));
    static int values[5000];
    char key[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "k%d", i);
        void *old = (void *)1;
        assert_int_equal(tsr_strmap_put(m, key, &values[i], &old), 0);
        assert_null(old);
    }
    assert_int_equal(tsr_strmap_count(m), 5000);
    for (int i = 0; i < 5000; i += 2) {
        snprintf(key, sizeof key, "k%d", i);
        assert_ptr_equal(tsr_strmap_remove(m, key), &values[i]);
    }
    assert_int_equal(tsr_strmap_count(m), 2500);
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "k%d", i);
        if (i % 2)
            assert_ptr_equal(tsr_strmap_get(m, key), &values[i]);
        else
            assert_null(tsr_strmap_get(m, key));
    }
    /* Churn through tombstones without growing without bound. */
    for (int round = 0; round < 20000; round++) {
        snprintf(key, sizeof key, "churn%d", round);
        void *old = NULL;
        assert_int_equal(tsr_strmap_put(m, key, &values[0], &old), 0);
        assert_ptr_equal(tsr_strmap_remove(m, key), &values[0]);
    }
    assert_int_equal(tsr_strmap_count(m), 2500);
    void *old = NULL;
    assert_int_equal(tsr_strmap_put(m, "k1", &values[2], &old), 0);
    assert_ptr_equal(old, &values[1]);
    assert_int_equal(tsr_strmap_count(m), 2500);
    tsr_strmap_free(m, NULL);
}

static void test_revocations(void **state)
{
    (void)state;
    gw_revocations *r = NULL;
    assert_int_equal(gw_revocations_new(&r), 0);
    assert_int_equal(gw_revocations_add(r, "", 10), -1);
    assert_int_equal(gw_revocations_add(r, "00112233445566778899aabbccddeeff001122334", 10), -1);
    assert_false(gw_revocations_contains(r, NULL));
    assert_false(gw_revocations_contains(r, ""));
    char serial[41];
    for (int i = 0; i < 100000; i++) {
        snprintf(serial, sizeof serial, "%032x", i);
        assert_int_equal(gw_revocations_add(r, serial, i < 50000 ? 100 : 200), 0);
    }
    assert_int_equal(gw_revocations_count(r), 100000);
    assert_true(gw_revocations_contains(r, "0000000000000000000000000000c350"));
    assert_false(gw_revocations_contains(r, "ffff"));
    gw_revocations_prune(r, 150);
    assert_int_equal(gw_revocations_count(r), 50000);
    snprintf(serial, sizeof serial, "%032x", 10);
    assert_false(gw_revocations_contains(r, serial));
    snprintf(serial, sizeof serial, "%032x", 60000);
    assert_true(gw_revocations_contains(r, serial));
    gw_revocations_free(r);
}

static void test_ratelimit_window(void **state)
{
    (void)state;
    gw_ratelimit *rl = NULL;
    assert_int_equal(gw_ratelimit_new(0, 1000, &rl), -1);
    assert_int_equal(gw_ratelimit_new(3, 1000, &rl), 0);
    assert_true(gw_ratelimit_take(rl, "a", 10000));
    assert_true(gw_ratelimit_take(rl, "a", 10100));
    assert_true(gw_ratelimit_take(rl, "a", 10200));
    assert_false(gw_ratelimit_take(rl, "a", 10300));
    assert_true(gw_ratelimit_take(rl, "b", 10300)); /* keys are independent */
    assert_false(gw_ratelimit_take(rl, "a", 10999));
    assert_true(gw_ratelimit_take(rl, "a", 11001));  /* the first event left the window */
    assert_false(gw_ratelimit_take(rl, "a", 11002));
    /* Idle keys are swept: thousands of keys later the map still works. */
    char key[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "s%d", i);
        assert_true(gw_ratelimit_take(rl, key, 20000 + i * 10));
    }
    assert_true(gw_ratelimit_take(rl, "a", 100000));
    gw_ratelimit_free(rl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strmap_put_get_remove_grow),
        cmocka_unit_test(test_revocations),
        cmocka_unit_test(test_ratelimit_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
