/* tsr_buf: the growable output buffer of the gateway's and the client's
 * connections: appends, the taken prefix dropped before growing, capacity
 * from `first` doubling, everything freed and reusable. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tsr_buf.h"

static void test_append_take_grow(void **state)
{
    (void)state;
    tsr_buf b = {0};
    assert_int_equal(tsr_buf_pending(&b), 0);
    assert_int_equal(tsr_buf_append(&b, "abcdef", 6, 8), 0);
    assert_int_equal(b.cap, 8);
    assert_int_equal(tsr_buf_pending(&b), 6);
    b.off += 4;                                   /* "ab" taken... "ef" left */
    assert_int_equal(tsr_buf_pending(&b), 2);
    /* Fits after dropping the taken prefix: no growth, bytes moved down. */
    assert_int_equal(tsr_buf_append(&b, "ghijkl", 6, 8), 0);
    assert_int_equal(b.cap, 8);
    assert_int_equal(b.off, 0);
    assert_memory_equal(b.p, "efghijkl", 8);
    /* Doubling until it fits. */
    assert_int_equal(tsr_buf_append(&b, "0123456789abcdefghij", 20, 8), 0);
    assert_int_equal(b.cap, 32);
    assert_int_equal(tsr_buf_pending(&b), 28);
    assert_memory_equal(b.p, "efghijkl0123456789abcdefghij", 28);
    /* All taken: the next append starts at the beginning. */
    b.off = b.len;
    assert_int_equal(tsr_buf_append(&b, "z", 1, 8), 0);
    assert_int_equal(b.off, 0);
    assert_int_equal(b.len, 1);
    tsr_buf_free(&b);
    assert_null(b.p);
    assert_int_equal(b.cap + b.len + b.off, 0);
    /* Reusable; an empty append allocates nothing. */
    assert_int_equal(tsr_buf_append(&b, "", 0, 16), 0);
    assert_null(b.p);
    assert_int_equal(tsr_buf_append(&b, "x", 1, 16), 0);
    assert_int_equal(b.cap, 16);
    assert_int_equal(tsr_buf_pending(&b), 1);
    tsr_buf_free(&b);
    tsr_buf_free(&b);                             /* twice is harmless */
}

static void test_refuses_overflow(void **state)
{
    (void)state;
    tsr_buf b = {0};
    assert_int_equal(tsr_buf_append(&b, "a", 1, 4), 0);
    assert_int_equal(tsr_buf_append(&b, "a", SIZE_MAX - 1, 4), -1);
    assert_int_equal(tsr_buf_pending(&b), 1);
    tsr_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_take_grow),
        cmocka_unit_test(test_refuses_overflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
