/* What a sandbox runs, as the gateway checks it before anything is minted
 * (gateway/service/gw_workload.c): image references by Docker's grammar, a
 * command's and an env's bounds, NUL bytes found on the wire. Every refusal
 * is INVALID_ARGUMENT naming the field. Refusals first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_workload.h"

/* A writable string (the fields are char *, as protobuf-c hands them over). */
#define W(lit) ((char[]){lit})

static char *repeat(char c, size_t n, const char *prefix, const char *suffix)
{
    size_t pl = strlen(prefix), sl = strlen(suffix);
    char *s = malloc(pl + n + sl + 1);
    assert_non_null(s);
    memcpy(s, prefix, pl);
    memset(s + pl, c, n);
    memcpy(s + pl + n, suffix, sl + 1);
    return s;
}

/* ---- image references --------------------------------------------------------------- */

static void test_image_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", "UPPER", "ubuntu:", ":tag", "foo:bar:baz", "foo/", "/foo", "foo//bar", "-foo",
        "foo-", "foo..bar", "foo___bar", "foo_.bar", "foo bar", "foo\tbar", "foo\nbar",
        "foo@", "foo@sha256:abc", "foo@sha256", "foo@1sha:0123456789abcdef0123456789abcdef",
        "foo@sha256:0123456789abcdef0123456789abcdeg",
        "foo@sha256:0123456789abcdef0123456789abcdef@x",
        "[::1/foo", "[]/foo", "[::g]/foo", "host:p0rt/foo", "host:/foo", "-host.com/foo",
        "host-.com/foo", "host..com/foo", "foo:-tag", "foo:.tag", "foo:ta+g", "foo/Bar",
        "registry.example.com/Foo", "caf\xc3\xa9", "foo/bar:tag/x",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (gw_image_ref_valid(bad[i], strlen(bad[i]))) fail_msg("accepted \"%s\"", bad[i]);
    /* Embedded NUL, and the size bounds: a name of 256 bytes, a tag of 129. */
    assert_false(gw_image_ref_valid("foo\0bar", 7));
    char *name = repeat('a', 256, "", "");
    assert_false(gw_image_ref_valid(name, strlen(name)));
    free(name);
    char *tag = repeat('t', 129, "foo:", "");
    assert_false(gw_image_ref_valid(tag, strlen(tag)));
    free(tag);
    char *whole = repeat('a', 600, "a/", "");
    assert_false(gw_image_ref_valid(whole, strlen(whole)));
    free(whole);
}

static void test_image_accepted(void **state)
{
    (void)state;
    static const char *const good[] = {
        "busybox", "0", "tessera-sandbox:latest", "library/ubuntu:22.04",
        "docker.io/library/ubuntu", "localhost:5000/foo/bar:tag", "localhost:5000",
        "registry.example.com/tessera/sandbox:1.2", "[::1]:5000/foo", "[fe80::1]/x/y:z",
        "a.b_c__d-e---f/g", "Foo/bar", "Registry.Example.com:443/foo", "foo:_x.Y-z",
        "10.0.0.1:5000/a", "x/y/z/w",
        "foo@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "foo:v1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "foo@sha512+b64.x:0123456789ABCDEF0123456789abcdef",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (!gw_image_ref_valid(good[i], strlen(good[i]))) fail_msg("refused \"%s\"", good[i]);
    char *name = repeat('a', 255, "", ":latest");
    assert_true(gw_image_ref_valid(name, strlen(name)));
    free(name);
    char *tag = repeat('t', 127, "foo:x", "");
    assert_true(gw_image_ref_valid(tag, strlen(tag)));
    free(tag);
}

/* ---- the wire ---------------------------------------------------------------------------- */

static void expect_wire(const char *what, const uint8_t *msg, size_t len, const char *want)
{
    gw_response r;
    memset(&r, 0, sizeof r);
    int rc = gw_workload_wire_check(msg, len, &r);
    if (want == NULL) {
        if (rc != 0) fail_msg("%s: refused: %s", what, r.message);
        return;
    }
    if (rc == 0) fail_msg("%s: accepted", what);
    assert_int_equal(r.status, GW_STATUS_INVALID_ARGUMENT);
    assert_string_equal(r.message, want);
}

static void test_wire_nul(void **state)
{
    (void)state;
    /* name "x" (1), image (5), command (6) twice, env (7): {key, value}. */
    static const uint8_t image_nul[] = {0x0a, 1, 'x', 0x2a, 3, 'a', 0, 'b'};
    expect_wire("image", image_nul, sizeof image_nul, "image contains a NUL byte");
    static const uint8_t second_arg[] = {0x32, 2, 's', 'h', 0x32, 3, '-', 0, 'c'};
    expect_wire("command", second_arg, sizeof second_arg, "command[1] contains a NUL byte");
    static const uint8_t env_value[] = {0x3a, 5, 0x0a, 1, 'A', 0x12, 0, 0x3a, 7, 0x0a, 1, 'B',
                                        0x12, 2, 'v', 0};
    expect_wire("env value", env_value, sizeof env_value,
                "env entry 1: its value contains a NUL byte");
    static const uint8_t env_name[] = {0x3a, 4, 0x0a, 2, 'A', 0};
    expect_wire("env name", env_name, sizeof env_name, "env entry 0: its name contains a NUL byte");
    /* Framing a parser must not trust: a length past the end, a truncated
     * varint, a group, a field number 0. */
    static const uint8_t past[] = {0x32, 9, 'a'};
    expect_wire("length past the end", past, sizeof past,
                "malformed tessera.v1.CreateSandboxRequest message");
    static const uint8_t varint[] = {0x32, 0x80};
    expect_wire("truncated varint", varint, sizeof varint,
                "malformed tessera.v1.CreateSandboxRequest message");
    static const uint8_t group[] = {0x33, 0x34};
    expect_wire("group", group, sizeof group,
                "malformed tessera.v1.CreateSandboxRequest message");
    static const uint8_t zero[] = {0x02, 0};
    expect_wire("field 0", zero, sizeof zero,
                "malformed tessera.v1.CreateSandboxRequest message");
    static const uint8_t inner[] = {0x3a, 2, 0x0a, 5};
    expect_wire("env entry cut short", inner, sizeof inner,
                "malformed tessera.v1.CreateSandboxRequest message");
    /* NULs elsewhere are not this check's (the name: the name check's). */
    static const uint8_t fine[] = {0x0a, 2, 'x', 0, 0x10, 0x96, 0x01, 0x2a, 4, 'b', 'u', 's',
                                   'y', 0x32, 0, 0x3a, 6, 0x0a, 1, 'A', 0x12, 1, 'v',
                                   0x4d, 1, 2, 3, 4, 0x49, 1, 2, 3, 4, 5, 6, 7, 8};
    expect_wire("fine", fine, sizeof fine, NULL);
    expect_wire("empty", (const uint8_t *)"", 0, NULL);
}

/* ---- the unpacked fields ------------------------------------------------------------------- */

static void expect_invalid(const char *image, char *const *cmd, size_t n_cmd,
                           const gw_env_var *env, size_t n_env, const char *want)
{
    gw_response r;
    memset(&r, 0, sizeof r);
    if (gw_workload_validate(image, cmd, n_cmd, env, n_env, &r) == 0)
        fail_msg("accepted (wanted \"%s\")", want);
    assert_int_equal(r.status, GW_STATUS_INVALID_ARGUMENT);
    assert_string_equal(r.message, want);
}

static void test_validate_refusals(void **state)
{
    (void)state;
    char *ok_cmd[] = {W("sh"), W("-c"), W("exit 0")};
    expect_invalid("Bad:Image", NULL, 0, NULL, 0,
                   "image \"Bad:Image\" is not an image reference "
                   "([HOST[:PORT]/]NAME[:TAG][@DIGEST], NAME in lowercase)");
    char *huge = repeat('a', GW_IMAGE_MAX + 1, "", "");
    expect_invalid(huge, NULL, 0, NULL, 0, "image of 513 bytes exceeds 512");
    free(huge);
    expect_invalid("a\xff", NULL, 0, NULL, 0,
                   "image \"(not UTF-8)\" is not an image reference "
                   "([HOST[:PORT]/]NAME[:TAG][@DIGEST], NAME in lowercase)");

    static char x[] = "x"; /* (a compound literal in the loop would end with it) */
    char *many[GW_COMMAND_MAX_ARGS + 1];
    for (size_t i = 0; i < GW_COMMAND_MAX_ARGS + 1; i++) many[i] = x;
    expect_invalid("", many, GW_COMMAND_MAX_ARGS + 1, NULL, 0,
                   "command has 257 arguments (maximum 256)");
    char *long_arg = repeat('y', GW_COMMAND_MAX_BYTES - 3, "", "");
    char *too_long[] = {W("sh"), long_arg};
    expect_invalid("", too_long, 2, NULL, 0,
                   "command exceeds 16384 bytes (its arguments with a NUL each)");
    free(long_arg);
    char *empty_prog[] = {W(""), W("x")};
    expect_invalid("", empty_prog, 2, NULL, 0, "command[0] (the program) is empty");
    char *bad_utf8[] = {W("sh"), W("\xc3(")};
    expect_invalid("", bad_utf8, 2, NULL, 0, "command[1] is not valid UTF-8");

    gw_env_var bad_name[] = {{W("1BAD"), W("v")}};
    expect_invalid("", ok_cmd, 3, bad_name, 1,
                   "env name \"1BAD\" must match [A-Za-z_][A-Za-z0-9_]*");
    gw_env_var twice[] = {{W("A"), W("1")}, {W("A"), W("2")}};
    expect_invalid("", ok_cmd, 3, twice, 2, "env name A is given twice");
    char *big_value = repeat('v', GW_WORKLOAD_ENV_MAX_VALUE + 1, "", "");
    gw_env_var big[] = {{W("BIG"), big_value}};
    expect_invalid("", ok_cmd, 3, big, 1, "env value of BIG exceeds 4096 bytes");
    free(big_value);
    gw_env_var not_utf8[] = {{W("A"), W("\xe2\x82")}};
    expect_invalid("", ok_cmd, 3, not_utf8, 1, "env value of A is not valid UTF-8");
    static char empty[] = "";
    gw_env_var vars[GW_WORKLOAD_ENV_MAX_VARS + 1];
    char names[GW_WORKLOAD_ENV_MAX_VARS + 1][8];
    for (size_t i = 0; i < GW_WORKLOAD_ENV_MAX_VARS + 1; i++) {
        snprintf(names[i], sizeof names[i], "V%zu", i);
        vars[i].name = names[i];
        vars[i].value = empty;
    }
    expect_invalid("", ok_cmd, 3, vars, GW_WORKLOAD_ENV_MAX_VARS + 1,
                   "env has 129 variables (maximum 128)");
    /* Five values of 4000 bytes: each fits, together they do not. */
    char *v4000 = repeat('v', 4000, "", "");
    gw_env_var five[] = {
        {W("A"), v4000}, {W("B"), v4000}, {W("C"), v4000}, {W("D"), v4000}, {W("E"), v4000}};
    expect_invalid("", ok_cmd, 3, five, 5,
                   "env exceeds 16384 bytes (NAME=VALUE with a NUL each)");
    free(v4000);
}

static void test_validate_accepts(void **state)
{
    (void)state;
    gw_response r;
    memset(&r, 0, sizeof r);
    assert_int_equal(gw_workload_validate("", NULL, 0, NULL, 0, &r), 0);
    char *cmd[] = {W("/bin/sh"), W("-c"), W("id; echo \"h\xc3\xa9llo\""), W("")};
    gw_env_var env[] = {{W("GREETING"), W("hello world")}, {W("EMPTY"), W("")},
                        {W("_x9"), W("\xe2\x82\xac")}};
    assert_int_equal(gw_workload_validate("tessera-sandbox:latest", cmd, 4, env, 3, &r), 0);
    /* The bounds themselves are allowed. */
    static char x[] = "x";
    char *many[GW_COMMAND_MAX_ARGS];
    for (size_t i = 0; i < GW_COMMAND_MAX_ARGS; i++) many[i] = x;
    assert_int_equal(gw_workload_validate("", many, GW_COMMAND_MAX_ARGS, NULL, 0, &r), 0);
    char *long_arg = repeat('y', GW_COMMAND_MAX_BYTES - 4, "", "");
    char *exact[] = {W("sh"), long_arg};
    assert_int_equal(gw_workload_validate("", exact, 2, NULL, 0, &r), 0);
    free(long_arg);
    assert_true(gw_env_name_valid("_"));
    assert_false(gw_env_name_valid(""));
    assert_false(gw_env_name_valid("A-B"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_image_refused),
        cmocka_unit_test(test_image_accepted),
        cmocka_unit_test(test_wire_nul),
        cmocka_unit_test(test_validate_refusals),
        cmocka_unit_test(test_validate_accepts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
