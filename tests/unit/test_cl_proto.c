/* cl_proto: addresses, grpc-status parsing, grpc-timeout formatting,
 * grpc-message decoding, and the response -> status decision. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <nghttp2/nghttp2.h>

#include "cl_proto.h"
#include "grpc_frame.h"

/* ---- cl_addr_parse -------------------------------------------------------- */

static void test_addr_bad(void **state)
{
    (void)state;
    char longhost[300];
    memset(longhost, 'a', 254);
    strcpy(longhost + 254, ":80");
    char longpath[200] = "unix:/";
    memset(longpath + 6, 'p', 108);
    longpath[114] = '\0';
    static const char *const bad[] = {
        "",              /* empty */
        "host:",         /* empty port */
        ":80",           /* empty host */
        "host:0",        /* port 0 */
        "host:65536",    /* too big */
        "host:123456",   /* too long */
        "host:80x",      /* trailing garbage */
        "host:-1",       /* sign */
        "host: 80",      /* space */
        "[::1",          /* no bracket */
        "[zz]:80",       /* not IPv6 */
        "[::1]80",       /* no colon */
        "[::1]:",        /* empty port */
        "[]:80",         /* empty v6 */
        "::1:80",        /* v6 without brackets */
        "bad_host:80",   /* underscore */
        "-host:1",       /* leading dash */
        "ho st:1",       /* space */
        "unix:",         /* empty path */
        "unix://",       /* empty path */
        "1.2.3.4:80:90", /* two colons */
    };
    cl_addr a;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (cl_addr_parse(bad[i], 8443, &a) == 0) fail_msg("accepted \"%s\"", bad[i]);
        assert_int_equal(tsr_errcat(), TSR_E_INPUT);
    }
    assert_int_not_equal(cl_addr_parse(longhost, 8443, &a), 0);
    assert_int_not_equal(cl_addr_parse(longpath, 8443, &a), 0);
    /* No default port: a port is required. */
    assert_int_not_equal(cl_addr_parse("host", 0, &a), 0);
    assert_int_not_equal(cl_addr_parse("[::1]", 0, &a), 0);
    assert_int_not_equal(cl_addr_parse(NULL, 1, &a), 0);
}

static void test_addr_good(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        const char *host;
        uint16_t port;
        bool is_unix;
    } good[] = {
        {"127.0.0.1:8443", "127.0.0.1", 8443, false},
        {"localhost", "localhost", 8443, false},
        {"gw.example.com:1", "gw.example.com", 1, false},
        {"GW.Example.com:65535", "GW.Example.com", 65535, false},
        {"[::1]:9000", "::1", 9000, false},
        {"[::1]", "::1", 8443, false},
        {"[2001:db8::7]:443", "2001:db8::7", 443, false},
        {"unix:/run/tessera/gw.sock", "/run/tessera/gw.sock", 0, true},
        {"unix:///run/gw.sock", "/run/gw.sock", 0, true},
        {"unix:rel.sock", "rel.sock", 0, true},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        cl_addr a;
        if (cl_addr_parse(good[i].in, 8443, &a) != 0)
            fail_msg("refused \"%s\": %s", good[i].in, tsr_errmsg());
        assert_string_equal(a.host, good[i].host);
        assert_int_equal(a.port, good[i].port);
        assert_int_equal(a.is_unix, good[i].is_unix);
    }
}

/* ---- grpc-status ------------------------------------------------------------ */

static void test_status_parse(void **state)
{
    (void)state;
    static const struct {
        const char *v;
        size_t len;
    } bad[] = {
        {"", 0}, {"1234", 4}, {"-1", 2}, {"1a", 2}, {" 1", 2}, {"1 ", 2}, {"1\0", 2}, {"+1", 2},
    };
    int code = -1;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_not_equal(cl_grpc_status_parse(bad[i].v, bad[i].len, &code), 0);
    assert_int_equal(cl_grpc_status_parse("0", 1, &code), 0);
    assert_int_equal(code, 0);
    assert_int_equal(cl_grpc_status_parse("16", 2, &code), 0);
    assert_int_equal(code, 16);
    assert_int_equal(cl_grpc_status_parse("007", 3, &code), 0);
    assert_int_equal(code, 7);
    assert_int_equal(cl_grpc_status_parse("999", 3, &code), 0);
    assert_int_equal(code, 999);
}

/* ---- grpc-timeout ------------------------------------------------------------- */

static void test_timeout_format(void **state)
{
    (void)state;
    char out[16];
    assert_int_not_equal(cl_grpc_timeout_format(0, out), 0);
    assert_int_not_equal(cl_grpc_timeout_format(-5, out), 0);
    static const struct {
        int64_t ms;
        const char *want;
    } cases[] = {
        {1, "1m"},
        {1500, "1500m"},
        {99999999, "99999999m"},
        {100000000, "100000S"},
        {100000001, "100001S"},            /* rounded up, never shorter */
        {99999999000LL, "99999999S"},
        {99999999001LL, "1666667M"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(cl_grpc_timeout_format(cases[i].ms, out), 0);
        assert_string_equal(out, cases[i].want);
        /* The gateway's parser reads it back as at least the deadline. */
        int64_t back = 0;
        assert_int_equal(grpc_timeout_parse(out, strlen(out), &back), 0);
        assert_true(back >= cases[i].ms);
    }
    /* Beyond 99999999 hours: refused rather than shortened. */
    assert_int_not_equal(cl_grpc_timeout_format(INT64_MAX, out), 0);
    assert_int_equal(cl_grpc_timeout_format(99999999LL * 3600000, out), 0);
    assert_string_equal(out, "99999999H");
}

/* ---- grpc-message ------------------------------------------------------------- */

static void test_message_decode(void **state)
{
    (void)state;
    char out[32];
    cl_message_decode("cross-sandbox access denied", 27, out, sizeof out);
    assert_string_equal(out, "cross-sandbox access denied");
    cl_message_decode("a%20b%25c", 9, out, sizeof out);
    assert_string_equal(out, "a b%c");
    /* Control characters and decoded NULs never reach a terminal. */
    cl_message_decode("x%0Ay%00z%1B[31m%7F", 19, out, sizeof out);
    assert_string_equal(out, "x?y?z?[31m?");
    /* Bad escapes stay literal; the length is respected (no NUL needed). */
    cl_message_decode("100%zz%4", 8, out, sizeof out);
    assert_string_equal(out, "100%zz%4");
    cl_message_decode("abcdef", 3, out, sizeof out);
    assert_string_equal(out, "abc");
    /* UTF-8 passes through. */
    cl_message_decode("caf%C3%A9", 9, out, sizeof out);
    assert_string_equal(out, "caf\xc3\xa9");
    /* Truncated to the buffer. */
    char small[4];
    cl_message_decode("abcdefgh", 8, small, sizeof small);
    assert_string_equal(small, "abc");
}

/* ---- response -> status ------------------------------------------------------- */

static cl_resp ok_resp(void)
{
    cl_resp r;
    memset(&r, 0, sizeof r);
    r.http_status = 200;
    r.content_type_seen = r.content_type_ok = true;
    r.have_grpc_status = true;
    r.grpc_status = 0;
    r.messages = 1;
    return r;
}

static void test_resp_status(void **state)
{
    (void)state;
    cl_status st;
    cl_resp r;

    /* Failures first. */
    r = ok_resp();
    r.messages = 0;
    cl_resp_status(&r, true, &st);
    assert_int_equal(st.code, GW_STATUS_INTERNAL);
    cl_resp_status(&r, false, &st);
    assert_int_equal(st.code, GW_STATUS_OK);

    r = ok_resp();
    r.messages = 2;
    cl_resp_status(&r, true, &st);
    assert_int_equal(st.code, GW_STATUS_INTERNAL);

    r = ok_resp();
    r.truncated = true;
    cl_resp_status(&r, true, &st);
    assert_int_equal(st.code, GW_STATUS_INTERNAL);

    r = ok_resp();
    r.grpc_status_bad = true;
    cl_resp_status(&r, true, &st);
    assert_int_equal(st.code, GW_STATUS_INTERNAL);

    r = ok_resp();
    r.http_status = 0; /* no :status at all */
    cl_resp_status(&r, true, &st);
    assert_int_equal(st.code, GW_STATUS_INTERNAL);

    r = ok_resp();
    r.content_type_ok = false;
    cl_resp_status(&r, true, &st);
    assert_int_equal(st.code, GW_STATUS_UNKNOWN);

    /* HTTP errors without grpc-status, as the spec maps them. */
    static const struct {
        int http;
        enum gw_status want;
    } http[] = {
        {400, GW_STATUS_INTERNAL},    {401, GW_STATUS_UNAUTHENTICATED},
        {403, GW_STATUS_PERMISSION_DENIED}, {404, GW_STATUS_UNIMPLEMENTED},
        {429, GW_STATUS_UNAVAILABLE}, {502, GW_STATUS_UNAVAILABLE},
        {503, GW_STATUS_UNAVAILABLE}, {504, GW_STATUS_UNAVAILABLE},
        {500, GW_STATUS_UNKNOWN},     {302, GW_STATUS_UNKNOWN},
    };
    for (size_t i = 0; i < sizeof http / sizeof http[0]; i++) {
        memset(&r, 0, sizeof r);
        r.http_status = http[i].http;
        cl_resp_status(&r, true, &st);
        assert_int_equal(st.code, http[i].want);
        assert_non_null(strstr(st.message, "HTTP status"));
        assert_int_equal(cl_http_to_grpc(http[i].http), http[i].want);
    }
    /* Even with a grpc-status, a non-200 answer is an HTTP error. */
    r = ok_resp();
    r.http_status = 503;
    r.grpc_status = 0;
    cl_resp_status(&r, true, &st);
    assert_int_equal(st.code, GW_STATUS_UNAVAILABLE);

    /* Resets without a status. */
    static const struct {
        uint32_t h2;
        enum gw_status want;
    } rst[] = {
        {NGHTTP2_REFUSED_STREAM, GW_STATUS_UNAVAILABLE},
        {NGHTTP2_CANCEL, GW_STATUS_CANCELLED},
        {NGHTTP2_ENHANCE_YOUR_CALM, GW_STATUS_RESOURCE_EXHAUSTED},
        {NGHTTP2_INADEQUATE_SECURITY, GW_STATUS_PERMISSION_DENIED},
        {NGHTTP2_PROTOCOL_ERROR, GW_STATUS_INTERNAL},
        {NGHTTP2_INTERNAL_ERROR, GW_STATUS_INTERNAL},
        {NGHTTP2_FLOW_CONTROL_ERROR, GW_STATUS_INTERNAL},
    };
    for (size_t i = 0; i < sizeof rst / sizeof rst[0]; i++) {
        memset(&r, 0, sizeof r);
        r.http_status = 200;
        r.reset = true;
        r.reset_code = rst[i].h2;
        cl_resp_status(&r, true, &st);
        assert_int_equal(st.code, rst[i].want);
        assert_int_equal(cl_h2_error_to_grpc(rst[i].h2), rst[i].want);
    }
    /* Ended (or reset with NO_ERROR) without any grpc-status. */
    memset(&r, 0, sizeof r);
    r.http_status = 200;
    r.content_type_seen = r.content_type_ok = true;
    r.messages = 1;
    cl_resp_status(&r, true, &st);
    assert_int_equal(st.code, GW_STATUS_INTERNAL);
    r.reset = true;
    r.reset_code = NGHTTP2_NO_ERROR;
    cl_resp_status(&r, true, &st);
    assert_int_equal(st.code, GW_STATUS_INTERNAL);
    memset(&r, 0, sizeof r);
    r.http_status = 200;
    r.content_type_seen = true; /* text/html */
    cl_resp_status(&r, true, &st);
    assert_int_equal(st.code, GW_STATUS_UNKNOWN);

    /* Statuses with their messages; codes past 16 are UNKNOWN. */
    r = ok_resp();
    r.messages = 0;
    r.grpc_status = GW_STATUS_PERMISSION_DENIED;
    strcpy(r.grpc_message, "cross-sandbox access denied");
    cl_resp_status(&r, true, &st);
    assert_int_equal(st.code, GW_STATUS_PERMISSION_DENIED);
    assert_string_equal(st.message, "cross-sandbox access denied");
    r.grpc_status = 17;
    cl_resp_status(&r, true, &st);
    assert_int_equal(st.code, GW_STATUS_UNKNOWN);
    /* Trailers-only (no content-type check needed when absent). */
    memset(&r, 0, sizeof r);
    r.http_status = 200;
    r.have_grpc_status = true;
    r.grpc_status = GW_STATUS_UNAUTHENTICATED;
    cl_resp_status(&r, true, &st);
    assert_int_equal(st.code, GW_STATUS_UNAUTHENTICATED);

    r = ok_resp();
    cl_resp_status(&r, true, &st);
    assert_int_equal(st.code, GW_STATUS_OK);
    assert_string_equal(st.message, "");
}

static void test_errcat(void **state)
{
    (void)state;
    assert_int_equal(cl_status_errcat(GW_STATUS_OK), TSR_E_NONE);
    assert_int_equal(cl_status_errcat(GW_STATUS_UNAUTHENTICATED), TSR_E_UNAUTH);
    assert_int_equal(cl_status_errcat(GW_STATUS_PERMISSION_DENIED), TSR_E_DENIED);
    assert_int_equal(cl_status_errcat(GW_STATUS_NOT_FOUND), TSR_E_NOTFOUND);
    assert_int_equal(cl_status_errcat(GW_STATUS_INVALID_ARGUMENT), TSR_E_INPUT);
    assert_int_equal(cl_status_errcat(GW_STATUS_RESOURCE_EXHAUSTED), TSR_E_LIMIT);
    assert_int_equal(cl_status_errcat(GW_STATUS_UNAVAILABLE), TSR_E_IO);
    assert_int_equal(cl_status_errcat(GW_STATUS_DEADLINE_EXCEEDED), TSR_E_IO);
    assert_string_equal(cl_status_name(GW_STATUS_UNAVAILABLE), "UNAVAILABLE");
    assert_string_equal(cl_status_name((enum gw_status)42), "UNKNOWN");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addr_bad),       cmocka_unit_test(test_addr_good),
        cmocka_unit_test(test_status_parse),   cmocka_unit_test(test_timeout_format),
        cmocka_unit_test(test_message_decode), cmocka_unit_test(test_resp_status),
        cmocka_unit_test(test_errcat),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
