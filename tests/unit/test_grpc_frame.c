/* grpc_frame: deframer, framing, grpc-timeout, percent-encoding, content-type. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "grpc_frame.h"
#include "gw_rpc.h" /* gw_response_fail */

#define MAXMSG 65536u

/* Feed `in` in chunks of the given sizes (0-terminated list; the last size
 * repeats), collecting every message. Returns the final result. */
typedef struct collected {
    size_t n;
    size_t lens[16];
    uint8_t data[16][64];
} collected;

static enum grpc_deframe_result feed_all(grpc_deframer *d, const uint8_t *in, size_t len,
                                       const size_t *chunks, collected *out)
{
    size_t off = 0, ci = 0;
    enum grpc_deframe_result r = GRPC_DEFRAME_MORE;
    while (off < len) {
        size_t step = chunks[ci];
        if (chunks[ci + 1] != 0) ci++;
        if (step > len - off) step = len - off;
        size_t pos = 0;
        while (pos < step) {
            size_t used = 0, mlen = 0;
            const uint8_t *msg = NULL;
            r = grpc_deframer_feed(d, in + off + pos, step - pos, &used, &msg, &mlen);
            pos += used;
            if (r == GRPC_DEFRAME_ERROR) return r;
            if (r == GRPC_DEFRAME_MESSAGE) {
                assert_true(out->n < 16);
                out->lens[out->n] = mlen;
                memcpy(out->data[out->n], msg, mlen < 64 ? mlen : 64);
                out->n++;
            } else {
                assert_int_equal(pos, step);
            }
        }
        off += step;
    }
    return r;
}

static size_t put_msg(uint8_t *p, uint8_t flag, uint32_t len, const char *body)
{
    p[0] = flag;
    p[1] = (uint8_t)(len >> 24);
    p[2] = (uint8_t)(len >> 16);
    p[3] = (uint8_t)(len >> 8);
    p[4] = (uint8_t)len;
    if (body != NULL) memcpy(p + 5, body, len);
    return 5 + (body != NULL ? len : 0);
}

/* ---- failures first ----------------------------------------------------- */

struct bad_prefix {
    uint8_t flag;
    uint32_t len;
    enum gw_status want;
};

static void test_deframer_bad_prefixes(void **state)
{
    (void)state;
    static const struct bad_prefix cases[] = {
        {0, 0xFFFFFFFFu, GW_STATUS_RESOURCE_EXHAUSTED}, /* 4 GiB */
        {0, MAXMSG + 1, GW_STATUS_RESOURCE_EXHAUSTED},  /* max + 1 */
        {0, 0x80000000u, GW_STATUS_RESOURCE_EXHAUSTED},
        {1, 3, GW_STATUS_UNIMPLEMENTED},                /* compressed */
        {2, 3, GW_STATUS_INTERNAL},                     /* undefined flag */
        {0x80, 3, GW_STATUS_INTERNAL},
        {0xFF, 0, GW_STATUS_INTERNAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t budget = 1 << 20;
        grpc_deframer d;
        grpc_deframer_init(&d, MAXMSG, &budget);
        uint8_t buf[5];
        put_msg(buf, cases[i].flag, cases[i].len, NULL);
        size_t used = 0, mlen = 0;
        const uint8_t *msg = NULL;
        assert_int_equal(grpc_deframer_feed(&d, buf, 5, &used, &msg, &mlen), GRPC_DEFRAME_ERROR);
        assert_int_equal(d.err, cases[i].want);
        assert_true(d.errmsg[0] != '\0');
        /* Refused before allocating anything. */
        assert_null(d.buf);
        assert_int_equal(budget, 1 << 20);
        /* Sticky. */
        assert_int_equal(grpc_deframer_feed(&d, buf, 5, &used, &msg, &mlen), GRPC_DEFRAME_ERROR);
        assert_int_equal(grpc_deframer_finish(&d), cases[i].want);
        grpc_deframer_free(&d);
    }
}

static void test_deframer_max_plus_one_message(void **state)
{
    (void)state;
    grpc_deframer d;
    grpc_deframer_init(&d, MAXMSG, NULL);
    uint8_t hdr[5];
    put_msg(hdr, 0, MAXMSG + 1, NULL);
    size_t used, mlen;
    const uint8_t *msg;
    assert_int_equal(grpc_deframer_feed(&d, hdr, 5, &used, &msg, &mlen), GRPC_DEFRAME_ERROR);
    assert_int_equal(d.err, GW_STATUS_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(d.errmsg, "65537"));
    grpc_deframer_free(&d);
}

static void test_deframer_truncated_at_end(void **state)
{
    (void)state;
    uint8_t buf[32];
    size_t n = put_msg(buf, 0, 10, "0123456789");
    /* Every cut inside the message, including inside the prefix. */
    for (size_t cut = 1; cut < n; cut++) {
        grpc_deframer d;
        grpc_deframer_init(&d, MAXMSG, NULL);
        size_t used, mlen;
        const uint8_t *msg;
        assert_int_equal(grpc_deframer_feed(&d, buf, cut, &used, &msg, &mlen), GRPC_DEFRAME_MORE);
        assert_int_equal(used, cut);
        assert_false(grpc_deframer_idle(&d));
        assert_int_equal(grpc_deframer_finish(&d), GW_STATUS_INTERNAL);
        assert_non_null(strstr(d.errmsg, "truncated"));
        grpc_deframer_free(&d);
    }
}

static void test_deframer_budget_exhausted(void **state)
{
    (void)state;
    size_t budget = 1000;  /* less than one first chunk */
    grpc_deframer d;
    grpc_deframer_init(&d, MAXMSG, &budget);
    uint8_t buf[5 + 2000];
    memset(buf, 'x', sizeof buf);
    put_msg(buf, 0, 2000, NULL);
    size_t used, mlen;
    const uint8_t *msg;
    assert_int_equal(grpc_deframer_feed(&d, buf, sizeof buf, &used, &msg, &mlen), GRPC_DEFRAME_ERROR);
    assert_int_equal(d.err, GW_STATUS_RESOURCE_EXHAUSTED);
    assert_int_equal(budget, 1000);
    grpc_deframer_free(&d);
    assert_int_equal(budget, 1000);
}

/* ---- successes ---------------------------------------------------------- */

static void test_deframer_split_everywhere(void **state)
{
    (void)state;
    uint8_t buf[128];
    size_t n = put_msg(buf, 0, 5, "hello");
    n += put_msg(buf + n, 0, 0, "");
    n += put_msg(buf + n, 0, 3, "abc");
    static const size_t chunkings[][4] = {
        {1, 0}, {2, 0}, {3, 0}, {4, 0}, {5, 0}, {6, 0}, {7, 0}, {128, 0}, {3, 1, 17, 0}, {4, 2, 0},
    };
    for (size_t i = 0; i < sizeof chunkings / sizeof chunkings[0]; i++) {
        size_t budget = 1 << 20;
        grpc_deframer d;
        grpc_deframer_init(&d, MAXMSG, &budget);
        collected got = {0};
        feed_all(&d, buf, n, chunkings[i], &got);
        assert_int_equal(got.n, 3);
        assert_int_equal(got.lens[0], 5);
        assert_memory_equal(got.data[0], "hello", 5);
        assert_int_equal(got.lens[1], 0);
        assert_int_equal(got.lens[2], 3);
        assert_memory_equal(got.data[2], "abc", 3);
        assert_true(grpc_deframer_idle(&d));
        assert_int_equal(grpc_deframer_finish(&d), GW_STATUS_OK);
        grpc_deframer_free(&d);
        assert_int_equal(budget, 1 << 20);
    }
}

static void test_deframer_several_in_one_chunk(void **state)
{
    (void)state;
    uint8_t buf[256];
    size_t n = 0;
    const char *bodies[] = {"a", "bb", "ccc", "", "eeeee", "ffffff"};
    for (size_t i = 0; i < 6; i++) n += put_msg(buf + n, 0, (uint32_t)strlen(bodies[i]), bodies[i]);
    grpc_deframer d;
    grpc_deframer_init(&d, MAXMSG, NULL);
    collected got = {0};
    static const size_t one_chunk[] = {256, 0};
    assert_int_equal(feed_all(&d, buf, n, one_chunk, &got), GRPC_DEFRAME_MESSAGE);
    assert_int_equal(got.n, 6);
    for (size_t i = 0; i < 6; i++) {
        assert_int_equal(got.lens[i], strlen(bodies[i]));
        assert_memory_equal(got.data[i], bodies[i], got.lens[i]);
    }
    assert_int_equal(grpc_deframer_finish(&d), GW_STATUS_OK);
    grpc_deframer_free(&d);
}

static void test_deframer_exact_max(void **state)
{
    (void)state;
    size_t total = 5 + MAXMSG;
    uint8_t *buf = malloc(total);
    assert_non_null(buf);
    memset(buf, 'm', total);
    put_msg(buf, 0, MAXMSG, NULL);
    size_t budget = 4 * MAXMSG;
    grpc_deframer d;
    grpc_deframer_init(&d, MAXMSG, &budget);
    /* In 1000-byte pieces: the buffer grows with the data, never past MAXMSG. */
    size_t off = 0, used, mlen = 0;
    const uint8_t *msg = NULL;
    enum grpc_deframe_result r = GRPC_DEFRAME_MORE;
    while (off < total) {
        size_t step = total - off < 1000 ? total - off : 1000;
        r = grpc_deframer_feed(&d, buf + off, step, &used, &msg, &mlen);
        assert_int_equal(used, step);
        off += used;
        assert_true(d.cap <= MAXMSG);
        if (off < total) assert_int_equal(r, GRPC_DEFRAME_MORE);
    }
    assert_int_equal(r, GRPC_DEFRAME_MESSAGE);
    assert_int_equal(mlen, MAXMSG);
    assert_int_equal(msg[0], 'm');
    assert_int_equal(msg[MAXMSG - 1], 'm');
    assert_int_equal(budget, 4 * MAXMSG - d.cap);
    /* Taking the message moves its charge to the caller. */
    size_t charged = 0;
    uint8_t *taken = grpc_deframer_take(&d, &charged);
    assert_non_null(taken);
    assert_int_equal(charged, MAXMSG);
    assert_true(grpc_deframer_idle(&d));
    free(taken);
    grpc_deframer_refund(&budget, charged);
    assert_int_equal(budget, 4 * MAXMSG);
    grpc_deframer_free(&d);
    free(buf);
}

static void test_deframer_grows_with_data(void **state)
{
    (void)state;
    /* A peer declaring the maximum but sending 5 bytes costs ~nothing. */
    size_t budget = 1 << 20;
    grpc_deframer d;
    grpc_deframer_init(&d, MAXMSG, &budget);
    uint8_t buf[10];
    put_msg(buf, 0, MAXMSG, NULL);
    memcpy(buf + 5, "abcde", 5);
    size_t used, mlen;
    const uint8_t *msg;
    assert_int_equal(grpc_deframer_feed(&d, buf, 10, &used, &msg, &mlen), GRPC_DEFRAME_MORE);
    assert_true(d.cap < MAXMSG);
    assert_int_equal(budget, (1 << 20) - d.cap);
    grpc_deframer_free(&d);
    assert_int_equal(budget, 1 << 20);
}

static void test_frame_prefix(void **state)
{
    (void)state;
    uint8_t p[5];
    assert_int_equal(grpc_frame_prefix(0x01020304u, p), 0);
    static const uint8_t want[5] = {0, 1, 2, 3, 4};
    assert_memory_equal(p, want, 5);
    assert_int_equal(grpc_frame_prefix(0, p), 0);
    assert_int_equal(p[4], 0);
#if SIZE_MAX > UINT32_MAX
    assert_int_equal(grpc_frame_prefix((size_t)UINT32_MAX + 1, p), -1);
#endif
}

/* ---- grpc-timeout --------------------------------------------------------- */

struct timeout_case {
    const char *in;
    size_t len;  /* 0 = strlen */
    int rc;
    int64_t ms;
};

static void test_timeout_table(void **state)
{
    (void)state;
    static const struct timeout_case cases[] = {
        /* invalid first */
        {"", 0, -1, 0},
        {"S", 0, -1, 0},
        {"1", 0, -1, 0},            /* no unit */
        {"10", 0, -1, 0},
        {"123456789S", 0, -1, 0},   /* 9 digits */
        {"-1S", 0, -1, 0},          /* negative */
        {"+1S", 0, -1, 0},
        {" 1S", 0, -1, 0},          /* spaces */
        {"1 S", 0, -1, 0},
        {"1S ", 0, -1, 0},
        {"1s", 0, -1, 0},           /* bad unit */
        {"1h", 0, -1, 0},
        {"1x", 0, -1, 0},
        {"1.5S", 0, -1, 0},
        {"1SS", 0, -1, 0},          /* trailing garbage */
        {"0x10S", 0, -1, 0},
        {"1\0S", 3, -1, 0},         /* embedded NUL */
        {"1S\0", 3, -1, 0},
        /* valid */
        {"1H", 0, 0, 3600000},
        {"2M", 0, 0, 120000},
        {"3S", 0, 0, 3000},
        {"250m", 0, 0, 250},
        {"0m", 0, 0, 0},
        {"1u", 0, 0, 1},            /* rounds up */
        {"1000u", 0, 0, 1},
        {"1001u", 0, 0, 2},
        {"1n", 0, 0, 1},
        {"0n", 0, 0, 0},
        {"99999999n", 0, 0, 100},
        {"12345678m", 0, 0, 12345678},
        {"99999999H", 0, 0, 99999999LL * 3600000},
        {"00000001S", 0, 0, 1000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct timeout_case *t = &cases[i];
        size_t len = t->len ? t->len : strlen(t->in);
        int64_t ms = -7;
        int rc = grpc_timeout_parse(t->in, len, &ms);
        if (rc != t->rc) fail_msg("case %zu (%s): rc %d, want %d", i, t->in, rc, t->rc);
        if (rc == 0 && ms != t->ms)
            fail_msg("case %zu (%s): %lld ms, want %lld", i, t->in, (long long)ms, (long long)t->ms);
    }
}

/* ---- percent-encoding ----------------------------------------------------- */

static void test_percent_encode_table(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t len;
        const char *out;
    } cases[] = {
        {"plain text", 10, "plain text"},
        {"100%", 4, "100%25"},
        {"a\nb", 3, "a%0Ab"},
        {"\x7f~ ", 3, "%7F~ "},
        {"caf\xc3\xa9", 5, "caf%C3%A9"},
        {"\xe2\x98\x83 snow", 8, "%E2%98%83 snow"},
        {"nul\0x", 5, "nul%00x"},
        {"", 0, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char enc[64], dec[64];
        size_t n = grpc_percent_encode(cases[i].in, cases[i].len, enc, sizeof enc);
        assert_string_equal(enc, cases[i].out);
        assert_int_equal(n, strlen(cases[i].out));
        /* Round trip. */
        size_t m = grpc_percent_decode(enc, n, dec, sizeof dec);
        assert_int_equal(m, cases[i].len);
        assert_memory_equal(dec, cases[i].in, m);
    }
}

static void test_percent_encode_truncates_whole_escapes(void **state)
{
    (void)state;
    char out[6];
    /* "ab%25" needs 5 + NUL: fits; "ab\n" + more: never a partial escape. */
    assert_int_equal(grpc_percent_encode("ab%", 3, out, sizeof out), 5);
    assert_string_equal(out, "ab%25");
    assert_int_equal(grpc_percent_encode("abc\n", 4, out, sizeof out), 3);
    assert_string_equal(out, "abc");
    /* Worst case for a gw_response message fits the documented bound. */
    char msg[GRPC_MESSAGE_MAX], big[GRPC_MESSAGE_ENCODED_MAX];
    memset(msg, '\xff', sizeof msg);
    assert_int_equal(grpc_percent_encode(msg, sizeof msg, big, sizeof big), 3 * sizeof msg);
}

static void test_percent_decode_lenient(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"%", "%"}, {"%4", "%4"}, {"%zz", "%zz"}, {"a%2", "a%2"}, {"%41%42", "AB"},
        {"%e2%98%83", "\xe2\x98\x83"}, {"100%", "100%"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char dec[32];
        grpc_percent_decode(cases[i].in, strlen(cases[i].in), dec, sizeof dec);
        assert_string_equal(dec, cases[i].out);
    }
}

/* ---- content-type and status names ---------------------------------------- */

static void test_content_type_table(void **state)
{
    (void)state;
    static const struct {
        const char *v;
        size_t len;
        bool ok;
    } cases[] = {
        {"", 0, false},
        {"application/json", 0, false},
        {"application/grp", 0, false},
        {"application/grpcx", 0, false},
        {"application/grpc-web", 0, false},
        {"application/grpc+", 0, false},
        {"Application/grpc", 0, false},
        {"text/plain", 0, false},
        {"application/grpc\0", 17, false},
        {"application/grpc+pr\0to", 22, false},
        {"application/grpc", 0, true},
        {"application/grpc+proto", 0, true},
        {"application/grpc+json", 0, true},
        {"application/grpc;charset=utf-8", 0, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].v);
        if (grpc_content_type_ok(cases[i].v, len) != cases[i].ok)
            fail_msg("case %zu (%s): want %d", i, cases[i].v, cases[i].ok);
    }
}

static void test_status_names(void **state)
{
    (void)state;
    assert_string_equal(grpc_status_name(GW_STATUS_OK), "OK");
    assert_string_equal(grpc_status_name(GW_STATUS_RESOURCE_EXHAUSTED), "RESOURCE_EXHAUSTED");
    assert_string_equal(grpc_status_name(GW_STATUS_UNAUTHENTICATED), "UNAUTHENTICATED");
    assert_string_equal(grpc_status_name(17), "UNKNOWN");
    assert_string_equal(grpc_status_name(-1), "UNKNOWN");
    assert_string_equal(grpc_status_code_text(16), "16");
    assert_string_equal(grpc_status_code_text(0), "0");
    assert_string_equal(grpc_status_code_text(99), "2");
}

static void test_response_fail(void **state)
{
    (void)state;
    gw_response r;
    memset(&r, 0, sizeof r);
    assert_int_equal(gw_response_fail(&r, GW_STATUS_NOT_FOUND, "sandbox %s not found", "x"), -1);
    assert_int_equal(r.status, GW_STATUS_NOT_FOUND);
    assert_string_equal(r.message, "sandbox x not found");
    char longer[1500];
    memset(longer, 'a', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    assert_int_equal(gw_response_fail(&r, GW_STATUS_INTERNAL, "%s", longer), -1);
    assert_int_equal(strlen(r.message), sizeof r.message - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deframer_bad_prefixes),
        cmocka_unit_test(test_deframer_max_plus_one_message),
        cmocka_unit_test(test_deframer_truncated_at_end),
        cmocka_unit_test(test_deframer_budget_exhausted),
        cmocka_unit_test(test_deframer_split_everywhere),
        cmocka_unit_test(test_deframer_several_in_one_chunk),
        cmocka_unit_test(test_deframer_exact_max),
        cmocka_unit_test(test_deframer_grows_with_data),
        cmocka_unit_test(test_frame_prefix),
        cmocka_unit_test(test_timeout_table),
        cmocka_unit_test(test_percent_encode_table),
        cmocka_unit_test(test_percent_encode_truncates_whole_escapes),
        cmocka_unit_test(test_percent_decode_lenient),
        cmocka_unit_test(test_content_type_table),
        cmocka_unit_test(test_status_names),
        cmocka_unit_test(test_response_fail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
