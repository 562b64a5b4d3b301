/* tsr_name: the one name rule and the one DNS host name rule every layer
 * calls (ca_spiffe, ca_issue, gw_config, pol_policy, certgen, drv_util). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tsr_name.h"

static bool name(const char *s, size_t max) { return tsr_name_valid(s, strlen(s), max); }
static bool dns(const char *s, unsigned flags) { return tsr_dns_name_valid(s, strlen(s), flags); }

static void test_name_chars(void **state)
{
    (void)state;
    for (int c = 0; c < 256; c++) {
        bool want = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                    c == '-';
        assert_int_equal(tsr_name_char((char)c), want);
    }
    assert_true(tsr_name_chars("", 0));
    assert_true(tsr_name_chars("tessera.local", 13));
    assert_false(tsr_name_chars("Tessera.local", 13));
    assert_false(tsr_name_chars("a\0b", 3));
}

static void test_name_valid(void **state)
{
    (void)state;
    assert_true(name("alice", 64));
    assert_true(name("a.b_c-9", 64));
    assert_true(name("...", 64));
    assert_false(name("", 64));
    assert_false(name(".", 64));
    assert_false(name("..", 64));
    assert_false(name("Alice", 64));
    assert_false(name("a/b", 64));
    assert_false(name("a b", 64));
    char long_name[66];
    memset(long_name, 'a', 65);
    long_name[65] = '\0';
    assert_false(name(long_name, 64));
    long_name[64] = '\0';
    assert_true(name(long_name, 64));
    assert_false(tsr_name_valid("ab\0", 3, 64));
}

static void test_dns(void **state)
{
    (void)state;
    assert_true(dns("gateway.example", 0));
    assert_true(dns("GW-1.Example", 0));
    assert_true(dns("a", 0));
    assert_false(dns("", 0));
    assert_false(dns(".a", 0));
    assert_false(dns("a.", 0));
    assert_false(dns("a..b", 0));
    assert_false(dns("-a", 0));
    assert_false(dns("a-", 0));
    assert_false(dns("a-.b", 0));
    assert_false(dns("a_b", 0));
    assert_false(dns("*.example", 0));
    assert_true(dns("*.example", TSR_DNS_WILDCARD));
    assert_false(dns("*.", TSR_DNS_WILDCARD));
    assert_false(dns("a.*.example", TSR_DNS_WILDCARD));
    char label[80];
    memset(label, 'a', 64);
    label[64] = '\0';
    assert_false(dns(label, 0));
    label[63] = '\0';
    assert_true(dns(label, 0));
    char big[260];
    memset(big, 'a', sizeof big);
    for (size_t i = 50; i < sizeof big; i += 50) big[i] = '.';
    big[253] = '\0';
    assert_true(dns(big, 0));
    big[253] = 'a';
    big[254] = '\0';
    assert_false(dns(big, 0));
    /* Digits: "1.2.3" is an address, not a host name, where the caller says so. */
    assert_true(dns("1.2.3", 0));
    assert_false(dns("1.2.3", TSR_DNS_NOT_DIGITS));
    assert_false(dns("1.2.3", TSR_DNS_LAST_NOT_DIGITS));
    assert_true(dns("a.2.3", TSR_DNS_NOT_DIGITS));
    assert_false(dns("a.2.3", TSR_DNS_LAST_NOT_DIGITS));
    assert_true(dns("1.2.a", TSR_DNS_LAST_NOT_DIGITS));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_chars),
        cmocka_unit_test(test_name_valid),
        cmocka_unit_test(test_dns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
