/* The supervisor's --enforced list and the enforcement summary its
 * ReportPolicyStatus message carries (docs/policy.md, "Enforcement"):
 * nothing may read as enforced that the driver did not say it enforces. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../supervisor/sup_gateway.c"

static void test_parse(void **state)
{
    (void)state;
    unsigned got = 99;
    assert_int_equal(sup_enforced_parse("none", &got), 0);
    assert_int_equal(got, 0);
    assert_int_equal(sup_enforced_parse("network", &got), 0);
    assert_int_equal(got, SUP_ENF_NETWORK);
    assert_int_equal(sup_enforced_parse("process,filesystem", &got), 0);
    assert_int_equal(got, SUP_ENF_PROCESS | SUP_ENF_FILESYSTEM);
    assert_int_equal(sup_enforced_parse("filesystem,network,process", &got), 0);
    assert_int_equal(got, SUP_ENF_FILESYSTEM | SUP_ENF_NETWORK | SUP_ENF_PROCESS);
}

static void test_parse_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *in, *msg;
    } bad[] = {
        {"", "empty list"},
        {"inference", "\"inference\" is not a policy domain (filesystem, network, process) or none"},
        {"network,", "\"\" is not a policy domain"},
        {",network", "\"\" is not a policy domain"},
        {"network, process", "\" process\" is not a policy domain"},
        {"Network", "\"Network\" is not a policy domain"},
        {"none,network", "\"none\" is not a policy domain"},
        {"network,network", "network given twice"},
        {"all", "\"all\" is not a policy domain"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        unsigned got = 0;
        assert_int_equal(sup_enforced_parse(bad[i].in, &got), -1);
        if (strstr(tsr_errmsg(), bad[i].msg) == NULL) fail_msg("%s: %s", bad[i].in, tsr_errmsg());
    }
}

static void test_describe(void **state)
{
    (void)state;
    char out[200];
    sup_enforced_describe("docker", 0, out, sizeof out);
    assert_string_equal(out, "enforced by the docker driver: none; recorded only, not enforced: "
                             "filesystem, network, process");
    sup_enforced_describe(NULL, 0, out, sizeof out);
    assert_string_equal(out, "enforced by the driver: none; recorded only, not enforced: "
                             "filesystem, network, process");
    sup_enforced_describe("vm", SUP_ENF_NETWORK, out, sizeof out);
    assert_string_equal(out, "enforced by the vm driver: network; recorded only, not enforced: "
                             "filesystem, process");
    sup_enforced_describe("x", SUP_ENF_FILESYSTEM | SUP_ENF_NETWORK | SUP_ENF_PROCESS, out,
                          sizeof out);
    assert_string_equal(out, "enforced by the x driver: filesystem, network, process; recorded "
                             "only, not enforced: none");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_refusals),
        cmocka_unit_test(test_describe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
