/* tsr_json: every JSON document the tree writes (audit lines, the SPIFFE
 * bundle, the CLI's --json) must stay valid JSON (RFC 8259) whatever bytes a
 * caller put in its request: quotes, controls, and bytes that are not UTF-8
 * (protobuf-c does not check proto3 strings). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tsr_json.h"

static const struct {
    const char *in;
    const char *want; /* the JSON text of the string, quotes included */
} CASES[] = {
    /* not UTF-8: every bad byte becomes U+FFFD, nothing raw gets through */
    {"\xff", "\"\xef\xbf\xbd\""},
    {"a\xfe" "b", "\"a\xef\xbf\xbd" "b\""},
    {"\xc0\xaf", "\"\xef\xbf\xbd\xef\xbf\xbd\""},                          /* overlong '/' */
    {"\xe0\x80\xaf", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""},          /* overlong, 3 bytes */
    {"\xed\xa0\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""},          /* surrogate U+D800 */
    {"\xf4\x90\x80\x80",
     "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""},              /* past U+10FFFF */
    {"\xe2\x82", "\"\xef\xbf\xbd\xef\xbf\xbd\""},                          /* truncated at the end */
    {"\xe2\x82x", "\"\xef\xbf\xbd\xef\xbf\xbdx\""},                        /* truncated in the middle */
    {"\x80", "\"\xef\xbf\xbd\""},                                          /* lone continuation */
    /* JSON escapes (jansson's: the short forms, \u00XX for other controls) */
    {"\"\\", "\"\\\"\\\\\""},
    {"\n\t\r\b\f\x01\x1f", "\"\\n\\t\\r\\b\\f\\u0001\\u001F\""},
    {"\x7f", "\"\x7f\""},                                                  /* DEL is not a control in JSON */
    /* valid UTF-8 is kept as it is */
    {"caf\xc3\xa9", "\"caf\xc3\xa9\""},
    {"\xe2\x82\xac", "\"\xe2\x82\xac\""},
    {"\xf0\x9f\x94\x91", "\"\xf0\x9f\x94\x91\""},
    {"\xf4\x8f\xbf\xbf", "\"\xf4\x8f\xbf\xbf\""},                          /* U+10FFFF */
    {"", "\"\""},
    {"sandbox-1", "\"sandbox-1\""},
};

static char *dump_bytes(const char *s, size_t len, size_t max)
{
    json_t *v = tsr_json_bytes(s, len, max);
    assert_non_null(v);
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    json_decref(v);
    assert_non_null(text);
    return text;
}

static void test_string_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        char *got = dump_bytes(CASES[i].in, strlen(CASES[i].in), SIZE_MAX);
        assert_string_equal(got, CASES[i].want);
        free(got);
    }
    /* An embedded NUL is a character like any other. */
    char *got = dump_bytes("a\0b", 3, SIZE_MAX);
    assert_string_equal(got, "\"a\\u0000b\"");
    free(got);
}

/* The bound never splits a UTF-8 sequence, and counts input bytes. */
static void test_bound_keeps_sequences_whole(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t max;
        const char *want;
    } B[] = {
        {"abc", 2, "\"ab\""},
        {"ab\xff", 2, "\"ab\""},
        {"ab\xff", 3, "\"ab\xef\xbf\xbd\""},
        {"a\xf0\x9f\x94\x91", 3, "\"a\""},
        {"a\xf0\x9f\x94\x91", 4, "\"a\""},
        {"a\xf0\x9f\x94\x91", 5, "\"a\xf0\x9f\x94\x91\""},
        {"abc", 0, "\"\""},
    };
    for (size_t i = 0; i < sizeof B / sizeof B[0]; i++) {
        char *got = dump_bytes(B[i].in, strlen(B[i].in), B[i].max);
        assert_string_equal(got, B[i].want);
        free(got);
    }
    char *got = dump_bytes(NULL, 5, SIZE_MAX);
    assert_string_equal(got, "\"\"");
    free(got);
}

/* Objects: insertion order, compact, keys sanitized like values. */
static void test_object(void **state)
{
    (void)state;
    json_t *o = json_object();
    assert_int_equal(tsr_json_set_str(o, "time", "t", 64), 0);
    assert_int_equal(tsr_json_set_str(o, "peer", "spiffe://x/\xff", 64), 0);
    assert_int_equal(tsr_json_set_str(o, "k\xfe", NULL, 64), 0);
    assert_int_equal(tsr_json_set_new(o, "n", json_integer(-7)), 0);
    json_t *a = json_array();
    assert_int_equal(tsr_json_append_new(a, json_true()), 0);
    assert_int_equal(tsr_json_set_new(o, "a", a), 0);
    size_t len = 0;
    char *text = tsr_json_dump(o, &len);
    json_decref(o);
    assert_non_null(text);
    assert_string_equal(text, "{\"time\":\"t\",\"peer\":\"spiffe://x/\xef\xbf\xbd\","
                              "\"k\xef\xbf\xbd\":\"\",\"n\":-7,\"a\":[true]}");
    assert_int_equal(len, strlen(text));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_string_cases),
        cmocka_unit_test(test_bound_keeps_sequences_whole),
        cmocka_unit_test(test_object),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
