/* tsr_utf8: RFC 3629 validation, failure cases first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tsr_utf8.h"

static const struct {
    const char *s;
    size_t len;   /* 0: strlen */
    bool valid;
} CASES[] = {
    {"\x80", 0, false},                  /* stray continuation byte */
    {"\xbf", 0, false},
    {"\xc0\xaf", 0, false},              /* overlong '/' */
    {"\xc1\xbf", 0, false},              /* overlong, 2 bytes */
    {"\xe0\x80\xaf", 0, false},          /* overlong, 3 bytes */
    {"\xe0\x9f\xbf", 0, false},          /* U+07FF as 3 bytes */
    {"\xf0\x80\x80\xaf", 0, false},      /* overlong, 4 bytes */
    {"\xf0\x8f\xbf\xbf", 0, false},      /* U+FFFF as 4 bytes */
    {"\xed\xa0\x80", 0, false},          /* surrogate U+D800 */
    {"\xed\xbf\xbf", 0, false},          /* surrogate U+DFFF */
    {"\xf4\x90\x80\x80", 0, false},      /* U+110000 */
    {"\xf5\x80\x80\x80", 0, false},
    {"\xff", 0, false},
    {"\xfe", 0, false},
    {"\xe2\x82", 0, false},              /* truncated */
    {"\xe2\x82\xac", 2, false},          /* truncated by the length */
    {"\xe2\x28\xa1", 0, false},          /* bad continuation */
    {"a\xffz", 0, false},
    {"", 0, true},
    {"plain ascii ~", 0, true},
    {"a\0b", 3, true},                   /* NUL is the caller's business */
    {"caf\xc3\xa9", 0, true},
    {"\xdf\xbf", 0, true},               /* U+07FF */
    {"\xe0\xa0\x80", 0, true},           /* U+0800 */
    {"\xed\x9f\xbf", 0, true},           /* U+D7FF */
    {"\xee\x80\x80", 0, true},           /* U+E000 */
    {"\xef\xbf\xbf", 0, true},           /* U+FFFF */
    {"\xf0\x90\x80\x80", 0, true},       /* U+10000 */
    {"\xf4\x8f\xbf\xbf", 0, true},       /* U+10FFFF */
};

static void test_valid_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        size_t len = CASES[i].len ? CASES[i].len : strlen(CASES[i].s);
        if (tsr_utf8_valid(CASES[i].s, len) != CASES[i].valid)
            fail_msg("case %zu: expected %s", i, CASES[i].valid ? "valid" : "invalid");
    }
}

static void test_seq_len(void **state)
{
    (void)state;
    const unsigned char euro[] = {0xe2, 0x82, 0xac};
    assert_int_equal(tsr_utf8_seq_len(euro, 3), 3);
    assert_int_equal(tsr_utf8_seq_len(euro, 2), 0);
    assert_int_equal(tsr_utf8_seq_len((const unsigned char *)"A", 1), 1);
    assert_int_equal(tsr_utf8_seq_len((const unsigned char *)"\xf0\x9f\x94\x91", 4), 4);
    assert_int_equal(tsr_utf8_seq_len((const unsigned char *)"\xc0\x80", 2), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_table),
        cmocka_unit_test(test_seq_len),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
