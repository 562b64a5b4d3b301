/* sup_logs: the bounded queue (line and byte bounds, drop-oldest, drop
 * counting and where a gap is reported), batches, the line splitter (16 KiB
 * split, NUL), the pipe reader (a writer is never blocked for good), the
 * sender's accounting while the gateway is unreachable, and sup_log. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../supervisor/sup_gateway.c"
#include "../../supervisor/sup_gwlist.c"
#include "../../supervisor/sup_identity.c"
#include "../../supervisor/sup_logs.c"
#include "../../supervisor/sup_rotate.c"
#include "tu_suppki.h"

static void push_str(sup_logq *q, const char *s)
{
    sup_logq_push(q, SUP_STREAM_STDOUT, (const uint8_t *)s, strlen(s), 1);
}

static void push_num(sup_logq *q, const char *prefix, int i)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%s%d", prefix, i);
    push_str(q, buf);
}

/* ---- queue ------------------------------------------------------------------------ */

static void test_queue_refusals(void **state)
{
    (void)state;
    sup_logq *q = NULL;
    assert_int_equal(sup_logq_new(0, SUP_LOGQ_DEFAULT_BYTES, &q), -1);
    assert_int_equal(sup_logq_new(10, 100, &q), -1); /* smaller than one line */
    assert_null(q);
}

static void test_queue_line_bound_drops_oldest(void **state)
{
    (void)state;
    sup_logq *q = NULL;
    assert_int_equal(sup_logq_new(100, SUP_LOGQ_DEFAULT_BYTES, &q), 0);
    for (int i = 0; i < 150; i++) push_num(q, "line ", i);
    assert_int_equal(sup_logq_count(q), 100);
    assert_int_equal(sup_logq_dropped_total(q), 50);
    sup_log_batch b;
    assert_int_equal(sup_logq_take(q, &b, 1000, SUP_BATCH_MAX_BYTES, 0, 0), 100);
    /* The 50 oldest went; the gap is reported with the first batch after it. */
    assert_int_equal(b.dropped, 50);
    assert_string_equal((char *)b.lines[0].text, "line 50");
    assert_string_equal((char *)b.lines[99].text, "line 149");
    sup_log_batch_clear(&b);
    push_str(q, "after");
    assert_int_equal(sup_logq_take(q, &b, 1000, SUP_BATCH_MAX_BYTES, 0, 0), 1);
    assert_int_equal(b.dropped, 0);
    sup_log_batch_clear(&b);
    assert_int_equal(sup_logq_count(q), 0);
    assert_int_equal(sup_logq_bytes(q), 0);
    sup_logq_free(q);
}

static void test_queue_byte_bound(void **state)
{
    (void)state;
    sup_logq *q = NULL;
    assert_int_equal(sup_logq_new(1000, 4 * SUP_LOG_LINE_MAX, &q), 0);
    uint8_t *big = malloc(SUP_LOG_LINE_MAX + 100);
    memset(big, 'x', SUP_LOG_LINE_MAX + 100);
    for (int i = 0; i < 10; i++) {
        big[0] = (uint8_t)('0' + i);
        sup_logq_push(q, SUP_STREAM_STDERR, big, SUP_LOG_LINE_MAX, 1);
        assert_true(sup_logq_bytes(q) <= 4 * SUP_LOG_LINE_MAX);
    }
    assert_int_equal(sup_logq_count(q), 4);
    assert_int_equal(sup_logq_dropped_total(q), 6);
    /* An oversized push is clamped to one line's maximum. */
    sup_logq_push(q, SUP_STREAM_STDERR, big, SUP_LOG_LINE_MAX + 100, 1);
    assert_int_equal(sup_logq_bytes(q), 4 * SUP_LOG_LINE_MAX);
    sup_log_batch b;
    /* The byte cap of a batch: two lines fit, the third would not. */
    assert_int_equal(sup_logq_take(q, &b, 1000, 2 * SUP_LOG_LINE_MAX + 10, 0, 0), 2);
    assert_int_equal(b.dropped, 7);
    assert_int_equal(b.lines[0].text[0], '7');
    assert_int_equal(b.lines[0].stream, SUP_STREAM_STDERR);
    assert_int_equal(b.bytes, 2 * SUP_LOG_LINE_MAX);
    sup_log_batch_clear(&b);
    /* A batch always takes at least one line, whatever the byte cap. */
    assert_int_equal(sup_logq_take(q, &b, 1000, 1, 0, 0), 1);
    sup_log_batch_clear(&b);
    free(big);
    sup_logq_free(q);
}

static void test_queue_line_cap_per_batch(void **state)
{
    (void)state;
    sup_logq *q = NULL;
    assert_int_equal(sup_logq_new(5000, SUP_LOGQ_DEFAULT_BYTES, &q), 0);
    for (int i = 0; i < 2500; i++) push_num(q, "", i);
    sup_log_batch b;
    assert_int_equal(sup_logq_take(q, &b, SUP_BATCH_MAX_LINES, SUP_BATCH_MAX_BYTES, 0, 0), 1000);
    sup_log_batch_clear(&b);
    assert_int_equal(sup_logq_take(q, &b, SUP_BATCH_MAX_LINES, SUP_BATCH_MAX_BYTES, 0, 0), 1000);
    sup_log_batch_clear(&b);
    assert_int_equal(sup_logq_take(q, &b, SUP_BATCH_MAX_LINES, SUP_BATCH_MAX_BYTES, 0, 0), 500);
    assert_string_equal((char *)b.lines[499].text, "2499");
    sup_log_batch_clear(&b);
    sup_logq_free(q);
}

static void test_queue_gap_never_inside_a_batch(void **state)
{
    (void)state;
    sup_logq *q = NULL;
    assert_int_equal(sup_logq_new(4, SUP_LOGQ_DEFAULT_BYTES, &q), 0);
    sup_log_batch b;
    memset(&b, 0, sizeof b);
    b.lines = calloc(100, sizeof *b.lines);
    push_str(q, "a");
    push_str(q, "b");
    pthread_mutex_lock(&q->mu);
    assert_true(gather(q, &b, 1, 1 << 20)); /* one line taken: full at max_lines 1 */
    pthread_mutex_unlock(&q->mu);
    assert_int_equal(b.n, 1);
    /* Meanwhile the producer overruns the queue: b and c are dropped. */
    push_str(q, "c");
    push_str(q, "d");
    push_str(q, "e");
    push_str(q, "f");
    push_str(q, "g");
    assert_int_equal(sup_logq_dropped_total(q), 2);
    pthread_mutex_lock(&q->mu);
    assert_true(gather(q, &b, 100, 1 << 20)); /* stops at the gap */
    pthread_mutex_unlock(&q->mu);
    assert_int_equal(b.n, 1);
    assert_int_equal(b.dropped, 0);
    sup_log_batch_clear(&b);
    assert_int_equal(sup_logq_take(q, &b, 100, 1 << 20, 0, 0), 4);
    assert_int_equal(b.dropped, 2);
    assert_string_equal((char *)b.lines[0].text, "d");
    sup_log_batch_clear(&b);
    sup_logq_free(q);
}

static void test_queue_take_timeout(void **state)
{
    (void)state;
    sup_logq *q = NULL;
    assert_int_equal(sup_logq_new(10, SUP_LOGQ_DEFAULT_BYTES, &q), 0);
    sup_log_batch b;
    int64_t t0 = tsr_monotonic_ms();
    assert_int_equal(sup_logq_take(q, &b, 10, 1000, 60, 0), 0);
    assert_true(tsr_monotonic_ms() - t0 >= 55);
    assert_null(b.lines);
    sup_logq_free(q);
}

struct delayed {
    sup_logq *q;
    int delay_ms;
    const char *text;
};

static void *push_later(void *arg)
{
    struct delayed *d = arg;
    usleep((useconds_t)d->delay_ms * 1000);
    if (d->text != NULL)
        push_str(d->q, d->text);
    else
        sup_logq_close(d->q);
    return NULL;
}

static void test_queue_batch_waits_for_more(void **state)
{
    (void)state;
    sup_logq *q = NULL;
    assert_int_equal(sup_logq_new(10, SUP_LOGQ_DEFAULT_BYTES, &q), 0);
    push_str(q, "first");
    struct delayed d = {q, 50, "second"};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, push_later, &d), 0);
    sup_log_batch b;
    /* Up to 1 s after the first line, until the line cap (2) is reached. */
    int64_t t0 = tsr_monotonic_ms();
    assert_int_equal(sup_logq_take(q, &b, 2, 1000, 0, 1000), 2);
    assert_true(tsr_monotonic_ms() - t0 < 900);
    pthread_join(th, NULL);
    sup_log_batch_clear(&b);
    /* The delay bounds a batch that never fills. */
    push_str(q, "alone");
    t0 = tsr_monotonic_ms();
    assert_int_equal(sup_logq_take(q, &b, 100, 1000, 0, 80), 1);
    assert_true(tsr_monotonic_ms() - t0 >= 75);
    sup_log_batch_clear(&b);
    sup_logq_free(q);
}

static void test_queue_close_wakes(void **state)
{
    (void)state;
    sup_logq *q = NULL;
    assert_int_equal(sup_logq_new(10, SUP_LOGQ_DEFAULT_BYTES, &q), 0);
    struct delayed d = {q, 50, NULL};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, push_later, &d), 0);
    sup_log_batch b;
    assert_int_equal(sup_logq_take(q, &b, 10, 1000, -1, 1000), 0); /* would wait forever */
    pthread_join(th, NULL);
    /* Closed: lines still come out, without waiting for more. */
    push_str(q, "late");
    int64_t t0 = tsr_monotonic_ms();
    assert_int_equal(sup_logq_take(q, &b, 10, 1000, -1, 5000), 1);
    assert_true(tsr_monotonic_ms() - t0 < 1000);
    sup_log_batch_clear(&b);
    sup_logq_free(q);
}

/* ---- lines ------------------------------------------------------------------------ */

static void take_all(sup_logq *q, sup_log_batch *b)
{
    assert_true(sup_logq_take(q, b, 1000, 1u << 30, 0, 0) > 0);
}

static void test_linebuf_split(void **state)
{
    (void)state;
    sup_logq *q = NULL;
    assert_int_equal(sup_logq_new(100, SUP_LOGQ_DEFAULT_BYTES, &q), 0);
    sup_linebuf *lb = malloc(sizeof *lb);
    sup_linebuf_init(lb, SUP_STREAM_STDERR);
    const char in[] = "a\nbb\n\ncc";
    sup_linebuf_feed(lb, (const uint8_t *)in, sizeof in - 1, q, 42);
    sup_linebuf_feed(lb, (const uint8_t *)"c", 1, q, 42);
    assert_int_equal(sup_logq_count(q), 3);
    sup_linebuf_flush(lb, q, 43);
    sup_linebuf_flush(lb, q, 43); /* nothing left: no empty line */
    sup_log_batch b;
    take_all(q, &b);
    assert_int_equal(b.n, 4);
    assert_string_equal((char *)b.lines[0].text, "a");
    assert_string_equal((char *)b.lines[1].text, "bb");
    assert_int_equal(b.lines[2].len, 0);
    assert_string_equal((char *)b.lines[3].text, "ccc");
    assert_int_equal(b.lines[3].timestamp_ms, 43);
    assert_int_equal(b.lines[0].stream, SUP_STREAM_STDERR);
    sup_log_batch_clear(&b);
    free(lb);
    sup_logq_free(q);
}

static void test_linebuf_long_lines_and_nul(void **state)
{
    (void)state;
    sup_logq *q = NULL;
    assert_int_equal(sup_logq_new(100, SUP_LOGQ_DEFAULT_BYTES, &q), 0);
    sup_linebuf *lb = malloc(sizeof *lb);
    sup_linebuf_init(lb, SUP_STREAM_STDOUT);
    size_t n = 40000;
    uint8_t *data = malloc(n + 1);
    memset(data, 'y', n);
    sup_linebuf_feed(lb, data, n, q, 1);
    sup_linebuf_flush(lb, q, 1);
    /* Exactly 16 KiB followed by a newline is one line, not two. */
    memset(data, 'z', SUP_LOG_LINE_MAX);
    data[SUP_LOG_LINE_MAX] = '\n';
    sup_linebuf_feed(lb, data, SUP_LOG_LINE_MAX + 1, q, 1);
    /* A NUL becomes U+FFFD and never splits inside the replacement. */
    memset(data, 'w', SUP_LOG_LINE_MAX - 1);
    data[SUP_LOG_LINE_MAX - 1] = '\0';
    data[SUP_LOG_LINE_MAX] = '\n';
    sup_linebuf_feed(lb, data, SUP_LOG_LINE_MAX + 1, q, 1);
    sup_linebuf_feed(lb, (const uint8_t *)"x\0y\n", 4, q, 1);
    sup_log_batch b;
    take_all(q, &b);
    assert_int_equal(b.n, 7);
    assert_int_equal(b.lines[0].len, SUP_LOG_LINE_MAX);
    assert_int_equal(b.lines[1].len, SUP_LOG_LINE_MAX);
    assert_int_equal(b.lines[2].len, n - 2 * SUP_LOG_LINE_MAX);
    assert_int_equal(b.lines[3].len, SUP_LOG_LINE_MAX);
    assert_int_equal(b.lines[4].len, SUP_LOG_LINE_MAX - 1);
    assert_int_equal(b.lines[5].len, 3);
    assert_memory_equal(b.lines[5].text, "\xEF\xBF\xBD", 3);
    assert_int_equal(b.lines[6].len, 5);
    assert_memory_equal(b.lines[6].text, "x\xEF\xBF\xBDy", 5);
    for (size_t i = 0; i < b.n; i++) {
        assert_true(b.lines[i].len <= SUP_LOG_LINE_MAX);
        assert_null(memchr(b.lines[i].text, '\0', b.lines[i].len));
    }
    sup_log_batch_clear(&b);
    free(data);
    free(lb);
    sup_logq_free(q);
}

/* ---- the reader ------------------------------------------------------------------- */

struct writer {
    int fd;
    size_t lines;
    int64_t elapsed_ms;
};

static void *write_flood(void *arg)
{
    struct writer *w = arg;
    char line[200];
    memset(line, 'q', sizeof line);
    line[sizeof line - 1] = '\n';
    int64_t t0 = tsr_monotonic_ms();
    for (size_t i = 0; i < w->lines; i++) {
        size_t off = 0;
        while (off < sizeof line) {
            ssize_t r = write(w->fd, line + off, sizeof line - off);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) return NULL;
            off += (size_t)r;
        }
    }
    w->elapsed_ms = tsr_monotonic_ms() - t0;
    close(w->fd);
    return NULL;
}

static void test_reader_never_blocks_writer(void **state)
{
    (void)state;
    sup_logq *q = NULL;
    assert_int_equal(sup_logq_new(100, 64 * 1024, &q), 0);
    int out[2], err[2];
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    assert_int_equal(pipe2(err, O_CLOEXEC), 0);
    sup_reader *r = NULL;
    assert_int_equal(sup_reader_start(out[0], err[0], q, &r), 0);
    /* 50000 lines (10 MB) into a 100-line queue nobody drains. */
    struct writer w = {out[1], 50000, -1};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, write_flood, &w), 0);
    pthread_join(th, NULL);
    assert_true(w.elapsed_ms >= 0); /* it finished */
    assert_int_equal(write(err[1], "last words", 10), 10);
    close(err[1]);
    sup_reader_stop(r, 5000); /* both pipes at EOF: returns at once */
    /* Everything is accounted for: queued or dropped. The unterminated
     * stderr line was flushed at EOF. */
    assert_int_equal(sup_logq_count(q), 100);
    assert_int_equal((int64_t)sup_logq_count(q) + sup_logq_dropped_total(q), 50001);
    sup_log_batch b;
    take_all(q, &b);
    assert_int_equal(b.dropped, 50001 - 100);
    bool found = false;
    for (size_t i = 0; i < b.n; i++)
        if (b.lines[i].stream == SUP_STREAM_STDERR &&
            strcmp((char *)b.lines[i].text, "last words") == 0)
            found = true;
    assert_true(found);
    sup_log_batch_clear(&b);
    sup_logq_free(q);
}

static void test_reader_stops_at_deadline(void **state)
{
    (void)state;
    sup_logq *q = NULL;
    assert_int_equal(sup_logq_new(100, SUP_LOGQ_DEFAULT_BYTES, &q), 0);
    int out[2];
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    sup_reader *r = NULL;
    assert_int_equal(sup_reader_start(out[0], -1, q, &r), 0);
    assert_int_equal(write(out[1], "partial", 7), 7);
    /* A grandchild keeps the pipe open: the reader gives up after the grace. */
    usleep(100 * 1000);
    int64_t t0 = tsr_monotonic_ms();
    sup_reader_stop(r, 200);
    int64_t took = tsr_monotonic_ms() - t0;
    assert_true(took >= 190 && took < 2000);
    assert_int_equal(sup_logq_count(q), 1); /* the partial line was kept */
    close(out[1]);
    sup_logq_free(q);
}

/* ---- the sender, gateway unreachable ------------------------------------------------ */

static void test_sender_unreachable_keeps_count(void **state)
{
    (void)state;
    tu_pki pki;
    assert_int_equal(tu_pki_init(&pki, "tessera.local", tsr_now_unix()), 0);
    cl_tls *tls = NULL;
    if (tu_pki_client_tls(&pki, &tls) != 0) fail_msg("tls: %s", tsr_errmsg());
    sup_logq *q = NULL;
    assert_int_equal(sup_logq_new(100, SUP_LOGQ_DEFAULT_BYTES, &q), 0);
    sup_gateways gws;
    sup_gateways_init(&gws);
    sup_sender_config cfg = {.q = q, .tls = tls, .gateways = &gws, .connect_timeout_ms = 500};
    snprintf(cfg.sandbox_id, sizeof cfg.sandbox_id, "0f8e6c4a-3b1d-4e2f-9a7c-5d6e7f809a1b");
    /* Ports 1 and 2 on loopback: both refuse, so the sender backs off. */
    assert_int_equal(sup_gateways_add(&gws, "127.0.0.1:1"), 0);
    assert_int_equal(sup_gateways_add(&gws, "127.0.0.1:2"), 0);
    sup_sender *s = NULL;
    assert_int_equal(sup_sender_start(&cfg, &s), 0);
    for (int i = 0; i < 30; i++) push_num(q, "line ", i);
    usleep(300 * 1000);
    int64_t t0 = tsr_monotonic_ms();
    int64_t lost = sup_sender_stop(s, 300);
    assert_true(tsr_monotonic_ms() - t0 < 3000);
    /* Nothing delivered, nothing silently gone: all 30 are reported. */
    assert_int_equal(lost, 30);
    sup_gateways_fini(&gws);
    sup_logq_free(q);
    cl_tls_free(tls);
    tu_pki_free(&pki);
}

/* ---- sup_log, names, statuses ------------------------------------------------------- */

static void test_sup_log_to_queue(void **state)
{
    (void)state;
    sup_logq *q = NULL;
    assert_int_equal(sup_logq_new(10, SUP_LOGQ_DEFAULT_BYTES, &q), 0);
    sup_log_attach(q);
    sup_log("rotated %s -> %d\nsecond line", "abc", 5);
    sup_log_attach(NULL);
    sup_log("not queued");
    sup_log_batch b;
    take_all(q, &b);
    assert_int_equal(b.n, 1);
    assert_int_equal(b.lines[0].stream, SUP_STREAM_SUPERVISOR);
    assert_string_equal((char *)b.lines[0].text, "rotated abc -> 5 second line");
    sup_log_batch_clear(&b);
    sup_logq_free(q);
    assert_string_equal(sup_stream_name(SUP_STREAM_STDOUT), "stdout");
    assert_string_equal(sup_stream_name(SUP_STREAM_STDERR), "stderr");
    assert_string_equal(sup_stream_name(SUP_STREAM_SUPERVISOR), "supervisor");
}

static void test_fatal_statuses(void **state)
{
    (void)state;
    for (int c = 0; c <= 16; c++) {
        bool want = c == GW_STATUS_UNAUTHENTICATED || c == GW_STATUS_PERMISSION_DENIED ||
                    c == GW_STATUS_NOT_FOUND;
        assert_int_equal(sup_status_is_fatal((enum gw_status)c), want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queue_refusals),
        cmocka_unit_test(test_queue_line_bound_drops_oldest),
        cmocka_unit_test(test_queue_byte_bound),
        cmocka_unit_test(test_queue_line_cap_per_batch),
        cmocka_unit_test(test_queue_gap_never_inside_a_batch),
        cmocka_unit_test(test_queue_take_timeout),
        cmocka_unit_test(test_queue_batch_waits_for_more),
        cmocka_unit_test(test_queue_close_wakes),
        cmocka_unit_test(test_linebuf_split),
        cmocka_unit_test(test_linebuf_long_lines_and_nul),
        cmocka_unit_test(test_reader_never_blocks_writer),
        cmocka_unit_test(test_reader_stops_at_deadline),
        cmocka_unit_test(test_sender_unreachable_keeps_count),
        cmocka_unit_test(test_sup_log_to_queue),
        cmocka_unit_test(test_fatal_statuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
