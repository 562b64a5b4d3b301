/* SPIFFE ID parsing, trust domains, names, UUIDs, principal kinds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ca_spiffe.h"

#define UUID "0f8fad5b-d9cb-469f-a165-70867728950e"

/* Substring check with a readable failure. */
static void assert_contains(const char *hay, const char *needle, const char *what)
{
    if (strstr(hay, needle) == NULL) {
        print_error("%s: error \"%s\" does not contain \"%s\"\n", what, hay, needle);
        fail();
    }
}

/* ---- ca_spiffe_parse --------------------------------------------------------- */

struct parse_case {
    const char *in;
    size_t len;          /* 0 = strlen(in) */
    const char *err;     /* NULL = must parse */
    const char *td;      /* expected on success */
    const char *path;
};

static const struct parse_case parse_cases[] = {
    /* failures first */
    {"", 0, "empty SPIFFE ID", NULL, NULL},
    {"SPIFFE://tessera.local/x", 0, "scheme must be lowercase", NULL, NULL},
    {"Spiffe://tessera.local", 0, "scheme must be lowercase", NULL, NULL},
    {"spiffE://tessera.local/a", 0, "scheme must be lowercase", NULL, NULL},
    {"http://tessera.local/x", 0, "scheme must be \"spiffe://\"", NULL, NULL},
    {"spiffe-x://tessera.local/x", 0, "scheme must be \"spiffe://\"", NULL, NULL},
    {"spiffe:tessera.local/x", 0, "missing \"//\"", NULL, NULL},
    {"spiffe:/tessera.local/x", 0, "missing \"//\"", NULL, NULL},
    {"spiffe//tessera.local/x", 0, "scheme must be", NULL, NULL},
    {" spiffe://tessera.local/x", 0, "scheme must be", NULL, NULL},
    /* truncated prefixes */
    {"s", 0, "scheme must be", NULL, NULL},
    {"spif", 0, "scheme must be", NULL, NULL},
    {"spiffe", 0, "scheme must be", NULL, NULL},
    {"spiffe:", 0, "missing \"//\"", NULL, NULL},
    {"spiffe:/", 0, "missing \"//\"", NULL, NULL},
    {"spiffe://", 0, "missing trust domain", NULL, NULL},
    {"spiffe:///sandbox/x", 0, "missing trust domain", NULL, NULL},
    {"spiffe:////", 0, "missing trust domain", NULL, NULL},
    /* trust domain */
    {"spiffe://Tessera.local/x", 0, "uppercase letter in trust domain", NULL, NULL},
    {"spiffe://tessera.LOCAL", 0, "uppercase letter in trust domain", NULL, NULL},
    {"spiffe://tess!era/x", 0, "invalid character '!' in trust domain", NULL, NULL},
    {"spiffe://tess era/x", 0, "invalid byte 0x20 in trust domain", NULL, NULL},
    {"spiffe://tessera+local/x", 0, "invalid character '+' in trust domain", NULL, NULL},
    {"spiffe://t\xc3\xa9st/x", 0, "invalid byte 0xc3 in trust domain", NULL, NULL},
    {"spiffe://tessera.local:8443/x", 0, "port not allowed", NULL, NULL},
    {"spiffe://tessera.local:/x", 0, "port not allowed", NULL, NULL},
    {"spiffe://tessera.local:443", 0, "port not allowed", NULL, NULL},
    {"spiffe://user@tessera.local/x", 0, "userinfo not allowed", NULL, NULL},
    {"spiffe://user:pw@tessera.local/x", 0, "userinfo not allowed", NULL, NULL},
    {"spiffe://@tessera.local/x", 0, "userinfo not allowed", NULL, NULL},
    {"spiffe://tessera.local?x=1", 0, "query not allowed", NULL, NULL},
    {"spiffe://tessera.local#frag", 0, "fragment not allowed", NULL, NULL},
    {"spiffe://tess%65ra.local/x", 0, "percent-encoding not allowed", NULL, NULL},
    {"spiffe://[::1]/x", 0, "invalid character '[' in trust domain", NULL, NULL},
    /* path */
    {"spiffe://tessera.local/a?x=1", 0, "query not allowed", NULL, NULL},
    {"spiffe://tessera.local/a/b?", 0, "query not allowed", NULL, NULL},
    {"spiffe://tessera.local/a#f", 0, "fragment not allowed", NULL, NULL},
    {"spiffe://tessera.local/a%2Fb", 0, "percent-encoding not allowed", NULL, NULL},
    {"spiffe://tessera.local/%2e%2e", 0, "percent-encoding not allowed", NULL, NULL},
    {"spiffe://tessera.local//a", 0, "empty path segment", NULL, NULL},
    {"spiffe://tessera.local/a//b", 0, "empty path segment", NULL, NULL},
    {"spiffe://tessera.local/.", 0, "dot segment", NULL, NULL},
    {"spiffe://tessera.local/..", 0, "dot segment", NULL, NULL},
    {"spiffe://tessera.local/a/./b", 0, "dot segment", NULL, NULL},
    {"spiffe://tessera.local/a/../b", 0, "dot segment", NULL, NULL},
    {"spiffe://tessera.local/a/..", 0, "dot segment", NULL, NULL},
    {"spiffe://tessera.local/", 0, "trailing slash", NULL, NULL},
    {"spiffe://tessera.local/a/", 0, "trailing slash", NULL, NULL},
    {"spiffe://tessera.local/a/b/", 0, "trailing slash", NULL, NULL},
    {"spiffe://tessera.local/a:b", 0, "invalid character ':' in path", NULL, NULL},
    {"spiffe://tessera.local/a@b", 0, "invalid character '@' in path", NULL, NULL},
    {"spiffe://tessera.local/a b", 0, "invalid byte 0x20 in path", NULL, NULL},
    {"spiffe://tessera.local/a\\b", 0, "invalid character '\\' in path", NULL, NULL},
    {"spiffe://tessera.local/caf\xc3\xa9", 0, "invalid byte 0xc3 in path", NULL, NULL},
    {"spiffe://tessera.local/a~b", 0, "invalid character '~' in path", NULL, NULL},
    /* trailing garbage */
    {"spiffe://tessera.local/a\n", 0, "invalid byte 0x0a in path", NULL, NULL},
    {"spiffe://tessera.local/a\r\n", 0, "invalid byte 0x0d in path", NULL, NULL},
    {"spiffe://tessera.local\t", 0, "invalid byte 0x09 in trust domain", NULL, NULL},
    /* embedded NUL: in the trust domain, the path, at the end */
    {"spiffe://tessera.local\0.evil.example/x", 38, "embedded NUL", NULL, NULL},
    {"spiffe://tessera.local/sandbox\0/x", 33, "embedded NUL", NULL, NULL},
    {"spiffe://tessera.local/x\0", 25, "embedded NUL", NULL, NULL},
    {"\0spiffe://tessera.local/x", 25, "embedded NUL", NULL, NULL},
    /* successes */
    {"spiffe://tessera.local/sandbox/" UUID, 0, NULL, "tessera.local", "/sandbox/" UUID},
    {"spiffe://td", 0, NULL, "td", ""},
    {"spiffe://tessera.local", 0, NULL, "tessera.local", ""},
    {"spiffe://a-b_c.9/x", 0, NULL, "a-b_c.9", "/x"},
    {"spiffe://tessera.local/Mixed.Case_seg-1/X-y_Z.9", 0, NULL, "tessera.local",
     "/Mixed.Case_seg-1/X-y_Z.9"},
    {"spiffe://tessera.local/.../..a/a../.a./_/-", 0, NULL, "tessera.local",
     "/.../..a/a../.a./_/-"},
    {"spiffe://tessera.local/user/alice", 0, NULL, "tessera.local", "/user/alice"},
    {"spiffe://1.2.3.4/x", 0, NULL, "1.2.3.4", "/x"},
};

static void test_parse_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof parse_cases / sizeof parse_cases[0]; i++) {
        const struct parse_case *c = &parse_cases[i];
        size_t len = c->len != 0 ? c->len : strlen(c->in);
        ca_spiffe_id id;
        memset(&id, 0x5a, sizeof id);
        tsr_err_clear();
        int rc = ca_spiffe_parse(c->in, len, &id);
        if (c->err != NULL) {
            if (rc == 0) {
                print_error("case %zu \"%s\": parsed, expected \"%s\"\n", i, c->in, c->err);
                fail();
            }
            assert_int_equal(tsr_errcat(), TSR_E_INPUT);
            assert_contains(tsr_errmsg(), c->err, c->in);
        } else {
            if (rc != 0) {
                print_error("case %zu \"%s\": refused: %s\n", i, c->in, tsr_errmsg());
                fail();
            }
            assert_int_equal(strlen(id.text), len);
            assert_memory_equal(id.text, c->in, len);
            assert_string_equal(id.trust_domain, c->td);
            assert_string_equal(id.path, c->path);
        }
    }
}

/* Length limits, built at run time: 2049 refused, 2048 accepted; TD 256/255. */
static void test_parse_lengths(void **state)
{
    (void)state;
    static char buf[CA_SPIFFE_ID_MAX + 64];
    ca_spiffe_id id;

    /* "spiffe://td/" + segments of 'a' separated by '/' up to the length. */
    for (size_t total = CA_SPIFFE_ID_MAX - 1; total <= CA_SPIFFE_ID_MAX + 1; total++) {
        memset(buf, 0, sizeof buf);
        strcpy(buf, "spiffe://td/");
        size_t n = strlen(buf);
        for (; n < total; n++) buf[n] = (n % 100 == 0) ? '/' : 'a';
        if (buf[total - 1] == '/') buf[total - 1] = 'b';
        int rc = ca_spiffe_parse(buf, total, &id);
        if (total <= CA_SPIFFE_ID_MAX) {
            if (rc != 0) print_error("len %zu: %s\n", total, tsr_errmsg());
            assert_int_equal(rc, 0);
            assert_int_equal(strlen(id.text), total);
        } else {
            assert_int_equal(rc, -1);
            assert_contains(tsr_errmsg(), "longer than 2048 bytes", "2049-byte ID");
        }
    }
    /* An oversized input is refused on its length before anything is read past it. */
    assert_int_equal(ca_spiffe_parse(buf, SIZE_MAX, &id), -1);
    assert_contains(tsr_errmsg(), "longer than 2048", "SIZE_MAX");

    for (size_t tdlen = CA_TRUST_DOMAIN_MAX; tdlen <= CA_TRUST_DOMAIN_MAX + 1; tdlen++) {
        memset(buf, 0, sizeof buf);
        strcpy(buf, "spiffe://");
        memset(buf + 9, 'd', tdlen);
        strcpy(buf + 9 + tdlen, "/x");
        int rc = ca_spiffe_parse(buf, strlen(buf), &id);
        if (tdlen <= CA_TRUST_DOMAIN_MAX) {
            assert_int_equal(rc, 0);
            assert_int_equal(strlen(id.trust_domain), tdlen);
        } else {
            assert_int_equal(rc, -1);
            assert_contains(tsr_errmsg(), "trust domain longer than 255", "TD 256");
        }
    }
    assert_int_equal(ca_spiffe_parse(NULL, 5, &id), -1);
}

/* Every truncation of a valid ID is either a valid ID (a shorter path) or
 * refused; none reads past its length (ASan watches the heap copy). */
static void test_parse_every_prefix(void **state)
{
    (void)state;
    const char *full = "spiffe://tessera.local/sandbox/" UUID;
    size_t n = strlen(full);
    for (size_t len = 1; len <= n; len++) {
        char *copy = malloc(len);
        assert_non_null(copy);
        memcpy(copy, full, len);
        ca_spiffe_id id;
        int rc = ca_spiffe_parse(copy, len, &id);
        /* Valid exactly when: past the TD, not ending in '/' */
        int expect_ok = len >= strlen("spiffe://t") && copy[len - 1] != '/';
        if (rc != (expect_ok ? 0 : -1)) {
            print_error("prefix of %zu bytes: rc %d (%s)\n", len, rc, tsr_errmsg());
            fail();
        }
        free(copy);
    }
}

/* ---- trust domains, names, UUIDs ---------------------------------------------- */

struct str_case {
    const char *in;
    size_t len; /* 0 = strlen */
    const char *err;
};

static void run_str_cases(const struct str_case *cases, size_t n,
                          int (*fn)(const char *, size_t), const char *what)
{
    for (size_t i = 0; i < n; i++) {
        size_t len = cases[i].len != 0 ? cases[i].len : strlen(cases[i].in);
        tsr_err_clear();
        int rc = fn(cases[i].in, len);
        if (cases[i].err != NULL) {
            if (rc == 0) {
                print_error("%s case %zu \"%s\": accepted\n", what, i, cases[i].in);
                fail();
            }
            assert_int_equal(tsr_errcat(), TSR_E_INPUT);
            assert_contains(tsr_errmsg(), cases[i].err, cases[i].in);
        } else if (rc != 0) {
            print_error("%s case %zu \"%s\": %s\n", what, i, cases[i].in, tsr_errmsg());
            fail();
        }
    }
}

#define TD255 \
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" \
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" \
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

static void test_trust_domain_validate(void **state)
{
    (void)state;
    static const struct str_case cases[] = {
        {"", 0, "missing trust domain"},
        {"Tessera.local", 0, "uppercase letter"},
        {"tessera.local:1", 0, "port not allowed"},
        {"tessera.local/x", 0, "invalid character '/'"},
        {"a@b", 0, "userinfo not allowed"},
        {"tessera%2elocal", 0, "percent-encoding"},
        {"tessera\0local", 13, "embedded NUL"},
        {"tessera.local ", 0, "invalid byte 0x20"},
        {TD255 "a", 0, "longer than 255"},
        {"tessera.local", 0, NULL},
        {"a", 0, NULL},
        {"x-y_z.0", 0, NULL},
        {TD255, 0, NULL},
    };
    assert_int_equal(strlen(TD255), 255);
    run_str_cases(cases, sizeof cases / sizeof cases[0], ca_trust_domain_validate,
                  "trust domain");
    assert_int_equal(ca_trust_domain_validate(NULL, 0), -1);
}

static void test_name_validate(void **state)
{
    (void)state;
    static const struct str_case cases[] = {
        {"", 0, "empty name"},
        {"Alice", 0, "uppercase letter in name"},
        {"al ice", 0, "invalid byte 0x20 in name"},
        {"al/ice", 0, "invalid character '/' in name"},
        {"al\0ice", 6, "embedded NUL"},
        {".", 0, "'.' or '..'"},
        {"..", 0, "'.' or '..'"},
        {"a1234567890123456789012345678901234567890123456789012345678901234", 0,
         "longer than 64"},
        {"alice", 0, NULL},
        {"a.b_c-d9", 0, NULL},
        {"...", 0, NULL},
        {"a123456789012345678901234567890123456789012345678901234567890123", 0, NULL},
    };
    run_str_cases(cases, sizeof cases / sizeof cases[0], ca_name_validate, "name");
}

static void test_uuid_validate(void **state)
{
    (void)state;
    static const struct str_case cases[] = {
        {"", 0, "36 bytes"},
        {"0F8FAD5B-D9CB-469F-A165-70867728950E", 0, "lowercase"},
        {"0f8fad5b-d9cb-469f-a165-70867728950E", 0, "lowercase"},
        {"0f8fad5b-d9cb-469f-a165-70867728950", 0, "36 bytes"},
        {"0f8fad5b-d9cb-469f-a165-70867728950e0", 0, "36 bytes"},
        {"0f8fad5bd9cb-469f-a165-70867728950e0", 0, "8-4-4-4-12"},
        {"0f8fad5b-d9cb-469f-a16570867728950e-", 0, "8-4-4-4-12"},
        {"0f8fad5g-d9cb-469f-a165-70867728950e", 0, "8-4-4-4-12"},
        {"{f8fad5b-d9cb-469f-a165-70867728950}", 0, "8-4-4-4-12"},
        {"0f8fad5b-d9cb-469f-a165-70867728950\0", 36, "8-4-4-4-12"},
        {UUID, 0, NULL},
        {"00000000-0000-0000-0000-000000000000", 0, NULL},
    };
    run_str_cases(cases, sizeof cases / sizeof cases[0], ca_uuid_validate, "uuid");
}

static int cmp_uuid(const void *a, const void *b) { return strcmp(a, b); }

static void test_uuid_generate(void **state)
{
    (void)state;
    enum { N = 1000 };
    static char uuids[N][CA_UUID_LEN + 1];
    for (int i = 0; i < N; i++) {
        memset(uuids[i], 'X', sizeof uuids[i]);
        assert_int_equal(ca_uuid_generate(uuids[i]), 0);
        assert_int_equal(strlen(uuids[i]), CA_UUID_LEN);
        assert_int_equal(ca_uuid_validate(uuids[i], CA_UUID_LEN), 0);
        assert_int_equal(uuids[i][14], '4');                 /* version 4 */
        assert_non_null(strchr("89ab", uuids[i][19]));        /* RFC 4122 variant */
    }
    qsort(uuids, N, sizeof uuids[0], cmp_uuid);
    for (int i = 1; i < N; i++) assert_string_not_equal(uuids[i - 1], uuids[i]);
}

/* ---- ca_identity_classify -------------------------------------------------------- */

struct classify_case {
    const char *id;
    const char *err;     /* NULL = success */
    enum ca_kind kind;
    const char *name;
};

#define TD "tessera.local"
#define NAME64 "a123456789012345678901234567890123456789012345678901234567890123"

static const struct classify_case classify_cases[] = {
    {"spiffe://other.example/sandbox/" UUID, "foreign trust domain other.example", 0, NULL},
    {"spiffe://tessera.local.evil/gateway", "foreign trust domain tessera.local.evil", 0, NULL},
    {"spiffe://tessera.loca/gateway", "foreign trust domain", 0, NULL},
    {"spiffe://tessera.local", "root SPIFFE ID", 0, NULL},
    {"spiffe://tessera.local/service/x", "unknown identity kind \"service\"", 0, NULL},
    {"spiffe://tessera.local/Sandbox/" UUID, "unknown identity kind", 0, NULL},
    {"spiffe://tessera.local/Gateway", "unknown identity kind", 0, NULL},
    {"spiffe://tessera.local/gateways", "unknown identity kind", 0, NULL},
    {"spiffe://tessera.local/sandbox/0F8FAD5B-D9CB-469F-A165-70867728950E", "lowercase", 0, NULL},
    {"spiffe://tessera.local/sandbox/0f8fad5b-d9cb-469f-a165-70867728950", "36 bytes", 0, NULL},
    {"spiffe://tessera.local/sandbox/0f8fad5b-d9cb-469f-a165-70867728950e1", "36 bytes", 0, NULL},
    {"spiffe://tessera.local/sandbox/" UUID "/extra", "exactly /sandbox/<uuid>", 0, NULL},
    {"spiffe://tessera.local/sandbox", "exactly /sandbox/<uuid>", 0, NULL},
    {"spiffe://tessera.local/user/" NAME64 "x", "longer than 64", 0, NULL},
    {"spiffe://tessera.local/user/Alice", "uppercase letter in name", 0, NULL},
    {"spiffe://tessera.local/user", "exactly /user/<name>", 0, NULL},
    {"spiffe://tessera.local/user/alice/x", "exactly /user/<name>", 0, NULL},
    {"spiffe://tessera.local/proxy/edge/1", "exactly /proxy/<name>", 0, NULL},
    {"spiffe://tessera.local/gateway/x", "exactly /gateway", 0, NULL},
    {"spiffe://tessera.local/sandbox/" UUID, NULL, CA_KIND_SANDBOX, UUID},
    {"spiffe://tessera.local/user/alice", NULL, CA_KIND_USER, "alice"},
    {"spiffe://tessera.local/user/" NAME64, NULL, CA_KIND_USER, NAME64},
    {"spiffe://tessera.local/proxy/edge-1.lb_2", NULL, CA_KIND_PROXY, "edge-1.lb_2"},
    {"spiffe://tessera.local/gateway", NULL, CA_KIND_GATEWAY, ""},
};

static void test_classify_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof classify_cases / sizeof classify_cases[0]; i++) {
        const struct classify_case *c = &classify_cases[i];
        ca_spiffe_id id;
        ca_identity ident;
        if (ca_spiffe_parse(c->id, strlen(c->id), &id) != 0) {
            print_error("case %zu \"%s\": does not parse: %s\n", i, c->id, tsr_errmsg());
            fail();
        }
        memset(&ident, 0, sizeof ident);
        tsr_err_clear();
        int rc = ca_identity_classify(&id, TD, &ident);
        if (c->err != NULL) {
            if (rc == 0) {
                print_error("case %zu \"%s\": classified as %s\n", i, c->id,
                            ca_kind_name(ident.kind));
                fail();
            }
            assert_int_equal(tsr_errcat(), TSR_E_UNAUTH);
            assert_contains(tsr_errmsg(), c->err, c->id);
            assert_int_equal(ident.kind, CA_KIND_NONE); /* untouched on failure */
        } else {
            if (rc != 0) {
                print_error("case %zu \"%s\": %s\n", i, c->id, tsr_errmsg());
                fail();
            }
            assert_int_equal(ident.kind, c->kind);
            assert_string_equal(ident.name, c->name);
            assert_string_equal(ident.id.text, c->id);
        }
    }
}

/* A hand-built or tampered struct is re-checked against its own text. */
static void test_classify_tampered(void **state)
{
    (void)state;
    ca_spiffe_id id;
    ca_identity ident;
    const char *s = "spiffe://evil.example/gateway";
    assert_int_equal(ca_spiffe_parse(s, strlen(s), &id), 0);
    strcpy(id.trust_domain, TD); /* parts claim our TD, text says otherwise */
    assert_int_equal(ca_identity_classify(&id, TD, &ident), -1);
    assert_int_equal(tsr_errcat(), TSR_E_UNAUTH);

    assert_int_equal(ca_spiffe_parse(s, strlen(s), &id), 0);
    strcpy(id.text, "spiffe://tessera.local/gateway"); /* text claims our TD */
    assert_int_equal(ca_identity_classify(&id, TD, &ident), -1);
    assert_contains(tsr_errmsg(), "do not match", "tampered text");

    memset(&id, 'a', sizeof id); /* not terminated */
    assert_int_equal(ca_identity_classify(&id, TD, &ident), -1);

    memset(&id, 0, sizeof id); /* empty */
    assert_int_equal(ca_identity_classify(&id, TD, &ident), -1);
    assert_int_equal(tsr_errcat(), TSR_E_UNAUTH);
}

static void test_kind_names(void **state)
{
    (void)state;
    assert_string_equal(ca_kind_name(CA_KIND_SANDBOX), "sandbox");
    assert_string_equal(ca_kind_name(CA_KIND_USER), "user");
    assert_string_equal(ca_kind_name(CA_KIND_GATEWAY), "gateway");
    assert_string_equal(ca_kind_name(CA_KIND_PROXY), "proxy");
    assert_string_equal(ca_kind_name(CA_KIND_NONE), "none");
}

/* ---- ca_spiffe_format ---------------------------------------------------------------- */

struct format_case {
    enum ca_kind kind;
    const char *td;
    const char *name;
    size_t cap;          /* 0 = full buffer */
    const char *err;     /* NULL = success, then `want` */
    const char *want;
};

static const struct format_case format_cases[] = {
    {CA_KIND_NONE, TD, "x", 0, "no identity kind", NULL},
    {CA_KIND_GATEWAY, TD, "x", 0, "takes no name", NULL},
    {CA_KIND_SANDBOX, TD, NULL, 0, "missing sandbox id", NULL},
    {CA_KIND_SANDBOX, TD, "0F8FAD5B-D9CB-469F-A165-70867728950E", 0, "lowercase", NULL},
    {CA_KIND_SANDBOX, TD, "not-a-uuid", 0, "36 bytes", NULL},
    {CA_KIND_USER, TD, "Alice", 0, "uppercase letter in name", NULL},
    {CA_KIND_USER, TD, "a/b", 0, "invalid character '/'", NULL},
    {CA_KIND_USER, TD, "..", 0, "'.' or '..'", NULL},
    {CA_KIND_PROXY, TD, "", 0, "empty name", NULL},
    {CA_KIND_USER, "Tessera.local", "alice", 0, "uppercase letter in trust domain", NULL},
    {CA_KIND_USER, "td:1", "alice", 0, "port not allowed", NULL},
    {CA_KIND_USER, "", "alice", 0, "missing trust domain", NULL},
    {CA_KIND_USER, NULL, "alice", 0, "missing trust domain", NULL},
    {CA_KIND_USER, TD, "alice", 20, "does not fit", NULL},
    {CA_KIND_GATEWAY, TD, NULL, 30, "does not fit", NULL}, /* needs 31 */
    {CA_KIND_GATEWAY, TD, NULL, 31, NULL, "spiffe://tessera.local/gateway"},
    {CA_KIND_GATEWAY, TD, "", 0, NULL, "spiffe://tessera.local/gateway"},
    {CA_KIND_SANDBOX, TD, UUID, 0, NULL, "spiffe://tessera.local/sandbox/" UUID},
    {CA_KIND_USER, TD, "alice", 0, NULL, "spiffe://tessera.local/user/alice"},
    {CA_KIND_PROXY, "corp.example", "edge-1", 0, NULL, "spiffe://corp.example/proxy/edge-1"},
};

static void test_format_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof format_cases / sizeof format_cases[0]; i++) {
        const struct format_case *c = &format_cases[i];
        char out[CA_SPIFFE_ID_MAX + 1];
        memset(out, 'Z', sizeof out);
        tsr_err_clear();
        int rc = ca_spiffe_format(c->kind, c->td, c->name, out, c->cap ? c->cap : sizeof out);
        if (c->err != NULL) {
            if (rc == 0) {
                print_error("format case %zu: produced \"%s\"\n", i, out);
                fail();
            }
            assert_contains(tsr_errmsg(), c->err, "format");
            assert_int_equal(out[0], '\0'); /* never a half-built ID */
        } else {
            if (rc != 0) {
                print_error("format case %zu: %s\n", i, tsr_errmsg());
                fail();
            }
            assert_string_equal(out, c->want);
        }
    }
}

/* format -> parse -> classify gives back the same principal. */
static void test_format_round_trip(void **state)
{
    (void)state;
    char uuid[CA_UUID_LEN + 1];
    assert_int_equal(ca_uuid_generate(uuid), 0);
    const struct {
        enum ca_kind kind;
        const char *name;
    } rows[] = {
        {CA_KIND_SANDBOX, uuid}, {CA_KIND_USER, "bob.smith"}, {CA_KIND_USER, NAME64},
        {CA_KIND_PROXY, "tls-edge"}, {CA_KIND_GATEWAY, NULL},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char out[CA_SPIFFE_ID_MAX + 1];
        ca_spiffe_id id;
        ca_identity ident;
        assert_int_equal(ca_spiffe_format(rows[i].kind, TD, rows[i].name, out, sizeof out), 0);
        assert_int_equal(ca_spiffe_parse(out, strlen(out), &id), 0);
        assert_int_equal(ca_identity_classify(&id, TD, &ident), 0);
        assert_int_equal(ident.kind, rows[i].kind);
        assert_string_equal(ident.name, rows[i].name != NULL ? rows[i].name : "");
        assert_string_equal(ident.id.text, out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_table),
        cmocka_unit_test(test_parse_lengths),
        cmocka_unit_test(test_parse_every_prefix),
        cmocka_unit_test(test_trust_domain_validate),
        cmocka_unit_test(test_name_validate),
        cmocka_unit_test(test_uuid_validate),
        cmocka_unit_test(test_uuid_generate),
        cmocka_unit_test(test_classify_table),
        cmocka_unit_test(test_classify_tampered),
        cmocka_unit_test(test_kind_names),
        cmocka_unit_test(test_format_table),
        cmocka_unit_test(test_format_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
