/* The workload's output as the supervisor turns it into log lines (the
 * workload is untrusted): sup_linebuf_feed / _flush split its stdout and
 * stderr bytes into lines, sup_logq keeps them within its bounds (dropping
 * the oldest), sup_logq_take gathers batches for PushSandboxLogs.
 *
 * Input: [queue lines][queue bytes] then operations:
 *   [0][u16 len][bytes]   stdout bytes, as one read
 *   [1][u16 len][bytes]   stderr bytes
 *   [2] / [3]             end of stdout / stderr (a partial line goes out)
 *   [4][max lines][max bytes]  take a batch
 *   [5][u16 len][bytes]   a supervisor line, pushed directly (skipped when it
 *                         holds a NUL or a newline, which sup_log never pushes)
 * and at the end both streams end and the queue is drained.
 *
 * Invariants, against a reference written from sup_logs.h's contract: a
 * line ends at '\n' (not kept) or where the next byte would make it longer
 * than SUP_LOG_LINE_MAX; a NUL byte becomes U+FFFD (never split); so every
 * line is at most SUP_LOG_LINE_MAX bytes, holds no NUL and no newline, and
 * the lines of a stream put together give its bytes back. The queue never
 * holds more than its bounds; a full queue drops its oldest lines; a batch
 * takes lines in order, within its bounds, with the count of lines dropped
 * just before its first one, and never a gap inside it; every line is
 * either taken or counted as dropped. */
#include <stdbool.h>
#include <string.h>

#include "fuzz/fuzz.h"
#include "supervisor/sup_logs.h"

#define MAX_MODEL 4096

/* ---- the reference -------------------------------------------------------- */

typedef struct ref_line {
    enum sup_stream stream;
    uint8_t *text;
    size_t len;
} ref_line;

typedef struct ref_queue {
    ref_line *v;        /* ring of cap */
    size_t cap, head, count, bytes, max_bytes;
    int64_t gap, dropped;
} ref_queue;

static void ref_drop_oldest(ref_queue *q)
{
    ref_line *l = &q->v[q->head];
    q->bytes -= l->len;
    free(l->text);
    q->head = (q->head + 1) % q->cap;
    q->count--;
    q->gap++;
    q->dropped++;
}

static void ref_push(ref_queue *q, enum sup_stream stream, const uint8_t *text, size_t len)
{
    while (q->count > 0 && (q->count == q->cap || q->bytes + len > q->max_bytes))
        ref_drop_oldest(q);
    ref_line *l = &q->v[(q->head + q->count) % q->cap];
    l->stream = stream;
    l->text = malloc(len + 1);
    FUZZ_CHECK(l->text != NULL);
    if (len > 0) memcpy(l->text, text, len);
    l->len = len;
    q->count++;
    q->bytes += len;
}

/* One stream's splitter: units of 1 byte (3 for a NUL) fill a line until
 * the next would pass the limit; '\n' ends it. */
typedef struct ref_split {
    enum sup_stream stream;
    uint8_t buf[SUP_LOG_LINE_MAX];
    size_t len;
} ref_split;

static void ref_feed(ref_split *s, ref_queue *q, const uint8_t *p, size_t n)
{
    static const uint8_t fffd[3] = {0xEF, 0xBF, 0xBD};
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            ref_push(q, s->stream, s->buf, s->len);
            s->len = 0;
            continue;
        }
        const uint8_t *unit = p[i] == 0 ? fffd : &p[i];
        size_t ul = p[i] == 0 ? 3 : 1;
        if (s->len + ul > SUP_LOG_LINE_MAX) {
            ref_push(q, s->stream, s->buf, s->len);
            s->len = 0;
        }
        memcpy(s->buf + s->len, unit, ul);
        s->len += ul;
    }
}

static void ref_flush(ref_split *s, ref_queue *q)
{
    if (s->len > 0) ref_push(q, s->stream, s->buf, s->len);
    s->len = 0;
}

/* ---- the checks ------------------------------------------------------------- */

static void check_queue(sup_logq *q, const ref_queue *r)
{
    FUZZ_CHECK(sup_logq_count(q) == r->count && r->count <= r->cap);
    FUZZ_CHECK(sup_logq_bytes(q) == r->bytes && r->bytes <= r->max_bytes);
    FUZZ_CHECK(sup_logq_dropped_total(q) == r->dropped);
}

/* A batch against the reference: the same lines from its head, in order. */
static void take(sup_logq *q, ref_queue *r, size_t max_lines, size_t max_bytes)
{
    sup_log_batch b;
    size_t n = sup_logq_take(q, &b, max_lines, max_bytes, 0, 0);
    FUZZ_CHECK(n == b.n && n <= max_lines);
    if (n == 0) {
        FUZZ_CHECK(r->count == 0 || max_lines == 0);
        return;
    }
    FUZZ_CHECK(b.dropped == r->gap);
    r->gap = 0;
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        const sup_log_line *got = &b.lines[i];
        FUZZ_CHECK(r->count > 0);
        ref_line *want = &r->v[r->head];
        FUZZ_CHECK(got->stream == want->stream && got->len == want->len);
        FUZZ_CHECK(got->len == 0 || memcmp(got->text, want->text, got->len) == 0);
        FUZZ_CHECK(got->text[got->len] == '\0' && memchr(got->text, '\0', got->len) == NULL);
        FUZZ_CHECK(memchr(got->text, '\n', got->len) == NULL && got->len <= SUP_LOG_LINE_MAX);
        if (got->stream == SUP_STREAM_SUPERVISOR) FUZZ_CHECK(got->timestamp_ms == 7);
        bytes += got->len;
        FUZZ_CHECK(i == 0 || bytes <= max_bytes);
        free(want->text);
        r->head = (r->head + 1) % r->cap;
        r->count--;
        r->bytes -= got->len;
    }
    FUZZ_CHECK(b.bytes == bytes);
    /* Full, or the next line would not fit, or a gap comes next. */
    FUZZ_CHECK(n == max_lines || r->count == 0 || r->gap > 0 ||
               bytes + r->v[r->head].len > max_bytes);
    sup_log_batch_clear(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = {data, size};
    size_t max_lines = 1 + fuzz_u8(&in) % 16;
    size_t max_bytes = SUP_LOG_LINE_MAX + (size_t)fuzz_u8(&in) * 512;
    sup_logq *q = NULL;
    FUZZ_CHECK(sup_logq_new(max_lines, max_bytes, &q) == 0);
    ref_queue r = {.cap = max_lines, .max_bytes = max_bytes};
    r.v = calloc(max_lines, sizeof *r.v);
    sup_linebuf *lb = malloc(2 * sizeof *lb);
    ref_split *rs = malloc(2 * sizeof *rs);
    FUZZ_CHECK(r.v != NULL && lb != NULL && rs != NULL);
    for (int i = 0; i < 2; i++) {
        enum sup_stream st = i == 0 ? SUP_STREAM_STDOUT : SUP_STREAM_STDERR;
        sup_linebuf_init(&lb[i], st);
        rs[i].stream = st;
        rs[i].len = 0;
    }
    for (int ops = 0; in.len > 0 && ops < MAX_MODEL; ops++) {
        uint8_t op = fuzz_u8(&in) % 6;
        if (op <= 1) {
            fuzz_in chunk = fuzz_lp16(&in);
            sup_linebuf_feed(&lb[op], chunk.p, chunk.len, q, 1);
            ref_feed(&rs[op], &r, chunk.p, chunk.len);
        } else if (op <= 3) {
            sup_linebuf_flush(&lb[op - 2], q, 2);
            ref_flush(&rs[op - 2], &r);
        } else if (op == 4) {
            size_t lines = fuzz_u8(&in) % 32;
            size_t bytes = (size_t)fuzz_u8(&in) * 256;
            take(q, &r, lines, bytes);
        } else {
            /* As sup_log pushes them: one line, no NUL. */
            fuzz_in line = fuzz_lp16(&in);
            if (line.len > SUP_LOG_LINE_MAX || memchr(line.p, '\0', line.len) != NULL ||
                memchr(line.p, '\n', line.len) != NULL)
                continue;
            sup_logq_push(q, SUP_STREAM_SUPERVISOR, line.p, line.len, 7);
            ref_push(&r, SUP_STREAM_SUPERVISOR, line.p, line.len);
        }
        check_queue(q, &r);
    }
    for (int i = 0; i < 2; i++) {
        sup_linebuf_flush(&lb[i], q, 3);
        ref_flush(&rs[i], &r);
    }
    check_queue(q, &r);
    while (r.count > 0) take(q, &r, SUP_BATCH_MAX_LINES, SUP_BATCH_MAX_BYTES);
    sup_logq_close(q);
    sup_log_batch b;
    FUZZ_CHECK(sup_logq_take(q, &b, 10, 1000, 0, 0) == 0);
    sup_logq_free(q);
    free(r.v);
    free(lb);
    free(rs);
    return 0;
}
