/* gw_json_escape: every audit line must stay one valid JSON object (RFC 8259)
 * whatever bytes a caller put in its request: quotes, controls, and bytes
 * that are not UTF-8 (protobuf-c does not check proto3 strings). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "gw_audit.h"

static const struct {
    const char *in;
    const char *want;
} CASES[] = {
    /* not UTF-8: every bad byte becomes U+FFFD, nothing raw gets through */
    {"\xff", "\\ufffd"},
    {"a\xfe" "b", "a\\ufffdb"},
    {"\xc0\xaf", "\\ufffd\\ufffd"},                 /* overlong '/' */
    {"\xe0\x80\xaf", "\\ufffd\\ufffd\\ufffd"},      /* overlong, 3 bytes */
    {"\xed\xa0\x80", "\\ufffd\\ufffd\\ufffd"},      /* surrogate U+D800 */
    {"\xf4\x90\x80\x80", "\\ufffd\\ufffd\\ufffd\\ufffd"}, /* past U+10FFFF */
    {"\xe2\x82", "\\ufffd\\ufffd"},                 /* truncated at the end */
    {"\xe2\x82x", "\\ufffd\\ufffdx"},               /* truncated in the middle */
    {"\x80", "\\ufffd"},                            /* lone continuation byte */
    /* JSON escapes */
    {"\"\\", "\\\"\\\\"},
    {"\n\t\x01\x1f\x7f", "\\u000a\\u0009\\u0001\\u001f\\u007f"},
    /* valid UTF-8 is kept as it is */
    {"caf\xc3\xa9", "caf\xc3\xa9"},
    {"\xe2\x82\xac", "\xe2\x82\xac"},
    {"\xf0\x9f\x94\x91", "\xf0\x9f\x94\x91"},
    {"\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf"},       /* U+10FFFF */
    {"", ""},
    {"sandbox-1", "sandbox-1"},
};

static void test_escape_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        char out[128];
        gw_json_escape(CASES[i].in, out, sizeof out);
        assert_string_equal(out, CASES[i].want);
    }
}

/* Truncation never splits an escape or a UTF-8 sequence. */
static void test_escape_truncates_whole(void **state)
{
    (void)state;
    char out[8];
    gw_json_escape("ab\xff", out, 6);       /* "ab" + 6-byte escape does not fit in 5 */
    assert_string_equal(out, "ab");
    gw_json_escape("a\xf0\x9f\x94\x91", out, 5);  /* 4-byte sequence does not fit in 3 */
    assert_string_equal(out, "a");
    gw_json_escape("a\xf0\x9f\x94\x91", out, 6);
    assert_string_equal(out, "a\xf0\x9f\x94\x91");
    gw_json_escape(NULL, out, sizeof out);
    assert_string_equal(out, "");
    out[0] = 'x';
    gw_json_escape("abc", out, 0);          /* nothing written */
    assert_int_equal(out[0], 'x');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_cases),
        cmocka_unit_test(test_escape_truncates_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
