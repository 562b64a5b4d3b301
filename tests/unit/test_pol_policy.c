/* gw_policy: sandbox policy validation. Refusals first, each with its exact
 * "policy:<line>:"; then valid documents (including the one in
 * docs/policy.md) and per-domain chunks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pol_policy.h"
#include "tsr_fs.h"

static const char full_policy[] =
    "version: 1\n"
    "filesystem:\n"
    "  read_only: [/usr, /lib, /]\n"
    "  read_write: [/workspace, /tmp]\n"
    "  deny: [/etc/shadow, /workspace/.git]\n"
    "network:\n"
    "  default: deny\n"
    "  allow:\n"
    "    - {host: api.openai.com, ports: [443]}\n"
    "    - {host: \"*.pypi.org\", ports: [443, 80]}\n"
    "    - {host: 192.0.2.10}\n"
    "    - {host: \"2001:db8::1\", ports: [8443]}\n"
    "    - {host: 192.0.2.0/24, ports: [1, 65535]}\n"
    "  deny:\n"
    "    - {host: 10.0.0.0/8}\n"
    "    - {host: \"fd00::/8\"}\n"
    "    - {host: 0.0.0.0/0, ports: [25]}\n"
    "process:\n"
    "  allow_exec: [/usr/bin/python3, /usr/bin]\n"
    "  max_processes: 256\n"
    "  allow_privilege_escalation: false\n"
    "inference:\n"
    "  providers:\n"
    "    - name: openai\n"
    "      models: [gpt-4o, \"gpt-4o-mini:2024-07-18\"]\n"
    "      env: [OPENAI_API_KEY, _PRIVATE2]\n"
    "    - name: local.llm_1\n"
    "      models: [llama-3]\n";

static int validate(const char *text)
{
    tsr_err_clear();
    return pol_validate(text, strlen(text));
}

static void expect_msg(const char *text, int rc, const char *want)
{
    if (rc == 0) {
        print_error("accepted:\n%s\n", text);
        fail();
    }
    if (strncmp(tsr_errmsg(), want, strlen(want)) != 0) {
        print_error("input:\n%s\n  want prefix: %s\n  got:         %s\n", text, want,
                    tsr_errmsg());
        fail();
    }
    assert_int_equal(tsr_errcat(), TSR_E_INPUT);
}

/* Build "version: 1\n<prefix>" + n list entries "<before><i><after>" + "]\n". */
static char *many(const char *prefix, const char *before, const char *after, size_t n)
{
    size_t cap = strlen(prefix) + n * (strlen(before) + strlen(after) + 24) + 64;
    char *s = malloc(cap);
    assert_non_null(s);
    size_t used = (size_t)snprintf(s, cap, "version: 1\n%s", prefix);
    for (size_t i = 0; i < n; i++)
        used += (size_t)snprintf(s + used, cap - used, "%s%s%zu%s", i ? ", " : "", before, i,
                                 after);
    snprintf(s + used, cap - used, "]\n");
    return s;
}

static void test_document_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *want;
    } cases[] = {
        {"", "policy: empty document"},
        {"\n# nothing here\n", "policy: empty document"},
        {"---\n", "policy: empty document"},
        {"~\n", "policy: empty document"},
        {"filesystem: {read_only: [/usr]}\n", "policy:1: \"version\" is required"},
        {"version: 2\n", "policy:1: unsupported policy version 2 (expected 1)"},
        {"version: 0\n", "policy:1: unsupported policy version 0"},
        {"version: \"1\"\n", "policy:1: \"version\" must be an integer"},
        {"version: 1.0\n", "policy:1: \"version\" must be an integer"},
        {"version: 99999999999999999999\n", "policy:1: \"version\" must be an integer"},
        {"- version: 1\n", "policy:1: \"policy\" must be a mapping"},
        {"just text\n", "policy:1: \"policy\" must be a mapping"},
        {"version: 1\nfilesystm: {}\n",
         "policy:2: unknown key \"filesystm\" (expected one of: version, filesystem, network, "
         "process, inference)"},
        {"version: 1\nversion: 1\n", "policy:2: duplicate key \"version\""},
        {"version: 1\nfilesystem: [/usr]\n", "policy:2: \"filesystem\" must be a mapping"},
        {"version: 1\nnetwork: deny\n", "policy:2: \"network\" must be a mapping"},
        {"version: 1\n---\nversion: 1\n", "policy:2: more than one document"},
        {"version: 1\nfilesystem: &fs {read_only: [/usr]}\n", "policy:2: anchors are not"},
        {"version: 1\nnetwork:\n  allow:\n    - host: *.pypi.org\n", "policy:4: "},
        {"version: 1\nprocess: !!map {}\n", NULL}, /* a standard tag: fine (see below) */
        {"version: 1\nprocess:\n\tmax_processes: 1\n", "policy:3: "},
        {"version: 1\nfilesystem: {read_only: [/usr\n", "policy:2: "},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = validate(cases[i].text);
        if (cases[i].want == NULL) {
            assert_int_equal(rc, 0);
            continue;
        }
        expect_msg(cases[i].text, rc, cases[i].want);
    }

    /* NUL bytes, raw and escaped. */
    static const char nul[] = "version: 1\nfilesystem: {read_only: [/us\0r]}\n";
    tsr_err_clear();
    expect_msg("(NUL)", pol_validate(nul, sizeof nul - 1), "policy:2: NUL byte in input");
    expect_msg("(NUL)", validate("version: 1\nfilesystem: {read_only: [\"/us\\0r\"]}\n"),
               "policy:2: NUL character in a scalar");

    /* Over 64 KiB. */
    size_t len = POL_MAX_BYTES + 1;
    char *big = malloc(len + 1);
    assert_non_null(big);
    memcpy(big, "version: 1\n", 11);
    memset(big + 11, '#', len - 11);
    big[len] = '\0';
    expect_msg("(big)", validate(big), "policy: input is 65537 bytes, more than the 65536");
    big[len - 1] = '\0';
    assert_int_equal(validate(big), 0);
    free(big);
}

static void test_filesystem_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *want;
    } cases[] = {
        {"version: 1\nfilesystem:\n  read_only: [usr/lib]\n",
         "policy:3: filesystem.read_only: path \"usr/lib\" must be absolute"},
        {"version: 1\nfilesystem:\n  read_write: [\"\"]\n",
         "policy:3: filesystem.read_write: path \"\" must be absolute"},
        {"version: 1\nfilesystem:\n  read_only:\n    - /usr\n    - /usr/../etc\n",
         "policy:5: filesystem.read_only: path \"/usr/../etc\" has a \"..\" segment"},
        {"version: 1\nfilesystem:\n  deny: [/..]\n", "policy:3: filesystem.deny: path \"/..\" "
                                                     "has a \"..\" segment"},
        {"version: 1\nfilesystem:\n  deny: [/a/.]\n", "policy:3: filesystem.deny: path \"/a/.\" "
                                                      "has a \".\" segment"},
        {"version: 1\nfilesystem:\n  read_only: [//usr]\n",
         "policy:3: filesystem.read_only: path \"//usr\" has an empty segment"},
        {"version: 1\nfilesystem:\n  read_only: [/usr//lib]\n", "policy:3: filesystem.read_only:"
                                                                " path \"/usr//lib\" has an empty"},
        {"version: 1\nfilesystem:\n  read_only: [/usr/]\n",
         "policy:3: filesystem.read_only: path \"/usr/\" must not end with '/'"},
        {"version: 1\nfilesystem:\n  read_only: [\"/usr\\nlib\"]\n",
         "policy:3: filesystem.read_only: path \"/usr\\nlib\" contains a control character"},
        {"version: 1\nfilesystem:\n  read_only: [/usr, /lib, /usr]\n",
         "policy:3: \"/usr\" is listed twice in \"filesystem.read_only\""},
        {"version: 1\nfilesystem:\n  read_only: [/data]\n  read_write: [/tmp, /data]\n",
         "policy:4: \"/data\" is in both filesystem.read_only and filesystem.read_write"},
        {"version: 1\nfilesystem:\n  read_only: /usr\n",
         "policy:3: \"filesystem.read_only\" must be a list"},
        {"version: 1\nfilesystem:\n  read_only: [[/usr]]\n",
         "policy:3: \"filesystem.read_only[0]\" must be a string"},
        {"version: 1\nfilesystem:\n  read_only: [/usr, ~]\n",
         "policy:3: \"filesystem.read_only[1]\" must be a string"},
        {"version: 1\nfilesystem:\n  read_only: [/usr]\n  write: [/tmp]\n",
         "policy:4: unknown key \"write\" (expected one of: read_only, read_write, deny)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_msg(cases[i].text, validate(cases[i].text), cases[i].want);

    /* 4096 bytes is the longest path. */
    char *text = malloc(8192);
    assert_non_null(text);
    int n = snprintf(text, 8192, "version: 1\nfilesystem:\n  read_only: [/");
    memset(text + n, 'a', 4095);
    strcpy(text + n + 4095, "]\n");
    assert_int_equal(validate(text), 0);
    memset(text + n, 'a', 4096);
    strcpy(text + n + 4096, "]\n");
    expect_msg("(long path)", validate(text), "policy:3: filesystem.read_only: path \"/aaaa");
    assert_non_null(strstr(tsr_errmsg(), "is longer than 4096 bytes"));
    free(text);

    /* At most 256 entries per list. */
    char *ok = many("filesystem:\n  deny: [", "/p", "", 256);
    assert_int_equal(validate(ok), 0);
    free(ok);
    char *over = many("filesystem:\n  deny: [", "/p", "", 257);
    expect_msg("(257 paths)", validate(over),
               "policy:3: \"filesystem.deny\" has 257 entries, more than the 256 allowed");
    free(over);
}

static void test_network_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *want;
    } cases[] = {
        {"version: 1\nnetwork:\n  default: maybe\n",
         "policy:3: \"network.default\" must be deny or allow, not \"maybe\""},
        {"version: 1\nnetwork:\n  default: false\n",
         "policy:3: \"network.default\" must be deny or allow"},
        {"version: 1\nnetwork:\n  allow: [{host: 10.0.0.0/33}]\n",
         "policy:3: network.allow[0].host: bad host \"10.0.0.0/33\": CIDR prefix longer than 32"},
        {"version: 1\nnetwork:\n  deny:\n    - host: 10.0.0.1/8\n",
         "policy:4: network.deny[0].host: bad host \"10.0.0.1/8\": CIDR has bits set past its "
         "prefix length"},
        {"version: 1\nnetwork:\n  deny: [{host: 10.0.0.0/}]\n",
         "policy:3: network.deny[0].host: bad host \"10.0.0.0/\": bad CIDR prefix length"},
        {"version: 1\nnetwork:\n  deny: [{host: 10.0.0.0/08}]\n", "policy:3: network.deny[0].host"
                                                                 ": bad host \"10.0.0.0/08\""},
        {"version: 1\nnetwork:\n  deny: [{host: \"::/129\"}]\n",
         "policy:3: network.deny[0].host: bad host \"::/129\": CIDR prefix longer than 128"},
        {"version: 1\nnetwork:\n  deny: [{host: \"fd00::1/8\"}]\n",
         "policy:3: network.deny[0].host: bad host \"fd00::1/8\": CIDR has bits set"},
        {"version: 1\nnetwork:\n  deny: [{host: 300.1.1.1}]\n",
         "policy:3: network.deny[0].host: bad host \"300.1.1.1\": bad IPv4 address"},
        {"version: 1\nnetwork:\n  deny: [{host: 1.2.3}]\n",
         "policy:3: network.deny[0].host: bad host \"1.2.3\": bad IPv4 address"},
        {"version: 1\nnetwork:\n  deny: [{host: \"[::1]\"}]\n", "policy:3: network.deny[0].host:"
                                                               " bad host \"[::1]\""},
        {"version: 1\nnetwork:\n  deny: [{host: \"fe80::1%eth0\"}]\n", "policy:3: network.deny[0]"
                                                                      ".host: bad host"},
        {"version: 1\nnetwork:\n  allow: [{host: \"bad_name.com\"}]\n",
         "policy:3: network.allow[0].host: bad host \"bad_name.com\" (expected a DNS name"},
        {"version: 1\nnetwork:\n  allow: [{host: \"a.*.com\"}]\n", "policy:3: network.allow[0].h"
                                                                  "ost: bad host \"a.*.com\""},
        {"version: 1\nnetwork:\n  allow: [{host: \"*\"}]\n", "policy:3: network.allow[0].host: b"
                                                            "ad host \"*\""},
        {"version: 1\nnetwork:\n  allow: [{host: \"-x.com\"}]\n", "policy:3: network.allow[0].ho"
                                                                 "st: bad host"},
        {"version: 1\nnetwork:\n  allow: [{host: \"example.com.\"}]\n", "policy:3: network.allo"
                                                                       "w[0].host: bad host"},
        {"version: 1\nnetwork:\n  allow: [{host: \"\"}]\n", "policy:3: network.allow[0].host: b"
                                                           "ad host \"\""},
        {"version: 1\nnetwork:\n  allow:\n    - host: a.com\n      ports: [0]\n",
         "policy:5: \"network.allow[0].ports[0]\" must be between 1 and 65535"},
        {"version: 1\nnetwork:\n  allow:\n    - host: a.com\n      ports: [443, 70000]\n",
         "policy:5: \"network.allow[0].ports[1]\" must be between 1 and 65535"},
        {"version: 1\nnetwork:\n  allow:\n    - host: a.com\n      ports: [\"443\"]\n",
         "policy:5: \"network.allow[0].ports[0]\" must be an integer"},
        {"version: 1\nnetwork:\n  allow:\n    - host: a.com\n      ports: []\n",
         "policy:5: \"network.allow[0].ports\" must list ports (leave it out for every port)"},
        {"version: 1\nnetwork:\n  allow:\n    - host: a.com\n      ports:\n",
         "policy:5: \"network.allow[0].ports\" must list ports"},
        {"version: 1\nnetwork:\n  allow:\n    - host: a.com\n      ports: 443\n",
         "policy:5: \"network.allow[0].ports\" must be a list"},
        {"version: 1\nnetwork:\n  allow:\n    - ports: [443]\n",
         "policy:4: network.allow[0]: \"host\" is required"},
        {"version: 1\nnetwork:\n  allow:\n    - host: a.com\n      port: 443\n",
         "policy:5: unknown key \"port\" (expected one of: host, ports)"},
        {"version: 1\nnetwork:\n  allow: [a.com]\n",
         "policy:3: \"network.allow[0]\" must be a mapping"},
        {"version: 1\nnetwork:\n  allow: {host: a.com}\n",
         "policy:3: \"network.allow\" must be a list"},
        {"version: 1\nnetwork:\n  default: deny\n  rules: []\n",
         "policy:4: unknown key \"rules\" (expected one of: default, allow, deny)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_msg(cases[i].text, validate(cases[i].text), cases[i].want);

    char *over = many("network:\n  deny: [", "{host: h", ".example}", 257);
    expect_msg("(257 rules)", validate(over),
               "policy:3: \"network.deny\" has 257 entries, more than the 256 allowed");
    free(over);
    char *ok = many("network:\n  deny: [", "{host: h", ".example}", 256);
    assert_int_equal(validate(ok), 0);
    free(ok);
}

static void test_process_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *want;
    } cases[] = {
        {"version: 1\nprocess:\n  allow_exec: [python3]\n",
         "policy:3: process.allow_exec: path \"python3\" must be absolute"},
        {"version: 1\nprocess:\n  allow_exec: [/usr/bin/../../bin/sh]\n",
         "policy:3: process.allow_exec: path \"/usr/bin/../../bin/sh\" has a \"..\" segment"},
        {"version: 1\nprocess:\n  max_processes: 0\n",
         "policy:3: \"process.max_processes\" must be between 1 and 65536"},
        {"version: 1\nprocess:\n  max_processes: 65537\n",
         "policy:3: \"process.max_processes\" must be between 1 and 65536"},
        {"version: 1\nprocess:\n  max_processes: many\n",
         "policy:3: \"process.max_processes\" must be an integer"},
        {"version: 1\nprocess:\n  allow_privilege_escalation: yes\n",
         "policy:3: \"process.allow_privilege_escalation\" must be true or false"},
        {"version: 1\nprocess:\n  allow_privilege_escalation: \"false\"\n",
         "policy:3: \"process.allow_privilege_escalation\" must be true or false"},
        {"version: 1\nprocess:\n  max_procs: 5\n",
         "policy:3: unknown key \"max_procs\" (expected one of: allow_exec, max_processes, "
         "allow_privilege_escalation)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_msg(cases[i].text, validate(cases[i].text), cases[i].want);
}

static void test_inference_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *want;
    } cases[] = {
        {"version: 1\ninference:\n  providers:\n    - name: OpenAI\n      models: [m]\n",
         "policy:4: bad provider name \"OpenAI\" (expected [a-z0-9._-]{1,64})"},
        {"version: 1\ninference:\n  providers:\n    - name: \"..\"\n      models: [m]\n",
         "policy:4: bad provider name \"..\""},
        {"version: 1\ninference:\n  providers:\n    - name: \"\"\n      models: [m]\n",
         "policy:4: bad provider name \"\""},
        {"version: 1\ninference:\n  providers:\n    - {name: openai, models: [m]}\n"
         "    - {name: openai, models: [n]}\n",
         "policy:5: provider \"openai\" is listed twice"},
        {"version: 1\ninference:\n  providers:\n    - models: [m]\n",
         "policy:4: inference.providers[0]: \"name\" is required"},
        {"version: 1\ninference:\n  providers:\n    - name: openai\n",
         "policy:4: inference.providers[0]: \"models\" is required"},
        {"version: 1\ninference:\n  providers:\n    - name: openai\n      models: []\n",
         "policy:5: \"inference.providers[0].models\" must list at least one model"},
        {"version: 1\ninference:\n  providers:\n    - name: openai\n      models:\n",
         "policy:5: \"inference.providers[0].models\" must list at least one model"},
        {"version: 1\ninference:\n  providers:\n    - name: openai\n      models: [\"\"]\n",
         "policy:5: inference.providers[0].models[0]: a model name is 1 to 128 bytes"},
        {"version: 1\ninference:\n  providers:\n    - name: openai\n      models: [a, b, a]\n",
         "policy:5: \"a\" is listed twice in \"inference.providers[0].models\""},
        {"version: 1\ninference:\n  providers:\n    - name: openai\n      models: [\"a\\tb\"]\n",
         "policy:5: inference.providers[0].models[0]: control character in a model name"},
        {"version: 1\ninference:\n  providers:\n    - name: openai\n      models: [m]\n"
         "      env: [openai_key]\n",
         "policy:6: bad environment variable name \"openai_key\" (expected [A-Z_][A-Z0-9_]*"},
        {"version: 1\ninference:\n  providers:\n    - name: openai\n      models: [m]\n"
         "      env: [1KEY]\n",
         "policy:6: bad environment variable name \"1KEY\""},
        {"version: 1\ninference:\n  providers:\n    - name: openai\n      models: [m]\n"
         "      env: [\"A-B\"]\n",
         "policy:6: bad environment variable name \"A-B\""},
        {"version: 1\ninference:\n  providers:\n    - name: openai\n      models: [m]\n"
         "      env: [TESSERA_SECRETS_KEY_FILE]\n",
         "policy:6: environment variable \"TESSERA_SECRETS_KEY_FILE\": TESSERA_* names are "
         "reserved"},
        {"version: 1\ninference:\n  providers:\n    - name: a\n      models: [m]\n"
         "      env: [KEY, KEY]\n",
         "policy:6: \"KEY\" is listed twice in \"inference.providers[0].env\""},
        {"version: 1\ninference:\n  providers:\n    - {name: a, models: [m], env: [KEY]}\n"
         "    - {name: b, models: [m], env: [KEY]}\n",
         "policy:5: environment variable \"KEY\" is already given by inference.providers[0]"},
        {"version: 1\ninference:\n  providers:\n    - name: a\n      models: [m]\n"
         "      api_key: sk-123\n",
         "policy:6: unknown key \"api_key\" (expected one of: name, models, env)"},
        {"version: 1\ninference:\n  provider: []\n",
         "policy:3: unknown key \"provider\" (expected one of: providers)"},
        {"version: 1\ninference:\n  providers: [openai]\n",
         "policy:3: \"inference.providers[0]\" must be a mapping"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_msg(cases[i].text, validate(cases[i].text), cases[i].want);

    /* Caps: 32 providers, 256 models, 64 env names, 128-byte models. */
    char *over = many("inference:\n  providers: [", "{name: p", ", models: [m]}", 33);
    expect_msg("(33 providers)", validate(over),
               "policy:3: \"inference.providers\" has 33 entries, more than the 32 allowed");
    free(over);
    char *ok = many("inference:\n  providers: [", "{name: p", ", models: [m]}", 32);
    assert_int_equal(validate(ok), 0);
    free(ok);
    over = many("inference:\n  providers: [{name: p, models: [m], env: [", "E", "", 65);
    over[strlen(over) - 2] = '\0';
    strcat(over, "]}]\n");
    expect_msg("(65 env)", validate(over), "policy:3: \"inference.providers[0].env\" has 65");
    free(over);
    over = many("inference:\n  providers: [{name: p, models: [", "m", "", 257);
    over[strlen(over) - 2] = '\0';
    strcat(over, "]}]\n");
    expect_msg("(257 models)", validate(over),
               "policy:3: \"inference.providers[0].models\" has 257 entries");
    free(over);
    char text[512];
    snprintf(text, sizeof text, "version: 1\ninference:\n  providers:\n    - name: p\n"
                                "      models: [%0129d]\n", 0);
    expect_msg(text, validate(text),
               "policy:5: inference.providers[0].models[0]: a model name is 1 to 128 bytes");
    snprintf(text, sizeof text, "version: 1\ninference:\n  providers:\n    - name: p\n"
                                "      models: [%0128d]\n", 0);
    assert_int_equal(validate(text), 0);
}

/* ---- accepted documents ------------------------------------------------- */

static void test_valid_policies(void **state)
{
    (void)state;
    if (validate(full_policy) != 0) {
        print_error("%s\n", tsr_errmsg());
        fail();
    }
    static const char *const ok[] = {
        "version: 1\n",
        "version: 1\nfilesystem:\nnetwork:\nprocess:\ninference:\n",
        "version: 1\nfilesystem: {}\nnetwork: {}\nprocess: {}\ninference: {providers: []}\n",
        "version: !!int 1\nnetwork: {default: allow}\n",
        "# leading comment\nversion: 1 # trailing\n",
        "---\nversion: 1\n...\n",
        "version: 1\nnetwork:\n  allow:\n    - host: \"*.Example.COM\"\n    - host: \"::\"\n"
        "    - host: \"::/0\"\n    - host: 0.0.0.0/0\n    - host: 127.0.0.1/32\n"
        "    - host: xn--bcher-kva.example\n    - host: localhost\n    - host: 1a.2b\n",
        "version: 1\nprocess: {allow_privilege_escalation: true, max_processes: 1}\n",
        "version: 1\nprocess: {max_processes: 65536}\n",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        if (validate(ok[i]) != 0) {
            print_error("refused:\n%s\n%s\n", ok[i], tsr_errmsg());
            fail();
        }
    }
    /* Truncated copies of a valid policy never crash and are judged consistently. */
    size_t len = strlen(full_policy);
    for (size_t cut = 0; cut < len; cut++) {
        int rc = pol_validate(full_policy, cut);
        if (rc != 0) assert_int_equal(tsr_errcat(), TSR_E_INPUT);
    }
    /* Not NUL-terminated input: validate sees exactly len bytes. */
    char buf[16];
    memcpy(buf, "version: 1\nxxxx", 16);
    assert_int_equal(pol_validate(buf, 11), 0);
    assert_int_equal(pol_validate(buf, 16), -1);
}

/* The example in docs/policy.md is valid. */
static void test_docs_example(void **state)
{
    (void)state;
    const char *root = getenv("TSR_ROOT");
    char path[4096];
    snprintf(path, sizeof path, "%s/docs/policy.md", root != NULL ? root : ".");
    uint8_t *doc;
    size_t len;
    if (tsr_read_file(path, 1 << 20, &doc, &len) != 0) {
        print_error("%s\n", tsr_errmsg());
        fail();
    }
    const char *start = strstr((const char *)doc, "```yaml\n");
    assert_non_null(start);
    start += strlen("```yaml\n");
    const char *end = strstr(start, "```");
    assert_non_null(end);
    int rc = pol_validate(start, (size_t)(end - start));
    if (rc != 0) print_error("%s\n", tsr_errmsg());
    assert_int_equal(rc, 0);
    /* The chunk example too (the second yaml block). */
    start = strstr(end, "```yaml\n");
    assert_non_null(start);
    start += strlen("```yaml\n");
    end = strstr(start, "```");
    assert_non_null(end);
    rc = pol_validate_domain("network", start, (size_t)(end - start));
    if (rc != 0) print_error("%s\n", tsr_errmsg());
    assert_int_equal(rc, 0);
    free(doc);
}

/* ---- chunks --------------------------------------------------------------- */

static void test_domain_chunks(void **state)
{
    (void)state;
    static const struct {
        const char *domain;
        const char *text;
        const char *want; /* NULL: valid */
    } cases[] = {
        /* refusals first */
        {"bogus", "default: deny\n",
         "policy: unknown domain \"bogus\" (expected one of: filesystem, network, process, "
         "inference)"},
        {"", "default: deny\n", "policy: unknown domain \"\""},
        {"version", "1\n", "policy: unknown domain \"version\""},
        {"Network", "default: deny\n", "policy: unknown domain \"Network\""},
        {"network", "", "policy: empty document"},
        {"network", "# nothing\n", "policy: empty document"},
        {"network", "~\n", "policy: empty document"},
        {"network", "- host: a.com\n", "policy:1: \"network\" must be a mapping"},
        {"network", "version: 1\ndefault: deny\n",
         "policy:1: unknown key \"version\" (expected one of: default, allow, deny)"},
        {"network", "default: deny\nallow:\n  - host: 10.0.0.0/33\n",
         "policy:3: network.allow[0].host: bad host \"10.0.0.0/33\""},
        {"network", "allow: [{host: a.com, ports: [0]}]\n",
         "policy:1: \"network.allow[0].ports[0]\" must be between 1 and 65535"},
        {"filesystem", "read_only: [relative]\n",
         "policy:1: filesystem.read_only: path \"relative\" must be absolute"},
        {"filesystem", "network: {}\n", "policy:1: unknown key \"network\""},
        {"process", "max_processes: 0\n", "policy:1: \"process.max_processes\" must be between"},
        {"inference", "providers:\n  - {name: Bad, models: [m]}\n",
         "policy:2: bad provider name \"Bad\""},
        {"inference", "providers: [{name: a, models: [m]}]\n---\nproviders: []\n",
         "policy:2: more than one document"},
        {"filesystem", "read_only: &a [/usr]\nread_write: *a\n", "policy:1: anchors are not"},
        /* valid chunks */
        {"filesystem", "read_only: [/usr]\nread_write: [/workspace]\ndeny: [/etc/shadow]\n", NULL},
        {"network", "default: deny\nallow: [{host: api.openai.com, ports: [443]}]\n", NULL},
        {"process", "allow_exec: [/usr/bin/python3]\nmax_processes: 8\n", NULL},
        {"inference", "providers:\n  - {name: openai, models: [gpt-4o], env: [OPENAI_API_KEY]}\n",
         NULL},
        {"network", "{}\n", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tsr_err_clear();
        int rc = pol_validate_domain(cases[i].domain, cases[i].text,
                                           strlen(cases[i].text));
        if (cases[i].want == NULL) {
            if (rc != 0) {
                print_error("refused %s chunk:\n%s\n%s\n", cases[i].domain, cases[i].text,
                            tsr_errmsg());
                fail();
            }
            continue;
        }
        expect_msg(cases[i].text, rc, cases[i].want);
    }
    tsr_err_clear();
    expect_msg("(NULL domain)", pol_validate_domain(NULL, "x: 1", 4),
               "policy: unknown domain");
    static const char nul[] = "read_only: [/usr]\0\n";
    expect_msg("(NUL chunk)", pol_validate_domain("filesystem", nul, sizeof nul - 1),
               "policy:1: NUL byte in input");
    char *big = malloc(POL_MAX_BYTES + 2);
    assert_non_null(big);
    memset(big, '#', POL_MAX_BYTES + 1);
    big[POL_MAX_BYTES + 1] = '\0';
    expect_msg("(big chunk)", pol_validate_domain("process", big, strlen(big)),
               "policy: input is 65537 bytes");
    free(big);
}

static void test_is_domain(void **state)
{
    (void)state;
    assert_true(pol_is_domain("filesystem"));
    assert_true(pol_is_domain("network"));
    assert_true(pol_is_domain("process"));
    assert_true(pol_is_domain("inference"));
    assert_false(pol_is_domain("version"));
    assert_false(pol_is_domain("Network"));
    assert_false(pol_is_domain("network "));
    assert_false(pol_is_domain(""));
    assert_false(pol_is_domain(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_document_refusals),
        cmocka_unit_test(test_filesystem_refusals),
        cmocka_unit_test(test_network_refusals),
        cmocka_unit_test(test_process_refusals),
        cmocka_unit_test(test_inference_refusals),
        cmocka_unit_test(test_valid_policies),
        cmocka_unit_test(test_docs_example),
        cmocka_unit_test(test_domain_chunks),
        cmocka_unit_test(test_is_domain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
