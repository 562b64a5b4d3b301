/* The log pipeline (sup_logs.h): queue, line splitter, pipe reader, sender,
 * and the supervisor's own log lines. */
#include "sup_logs.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "sup_gateway.h"
#include "sup_rotate.h"
#include "tessera/v1/gateway.pb-c.h"
#include "tsr_time.h"

const char *sup_stream_name(enum sup_stream s)
{
    switch (s) {
    case SUP_STREAM_STDOUT: return "stdout";
    case SUP_STREAM_STDERR: return "stderr";
    case SUP_STREAM_SUPERVISOR: return "supervisor";
    }
    return "stdout";
}

void sup_log_batch_clear(sup_log_batch *b)
{
    if (b == NULL) return;
    for (size_t i = 0; i < b->n; i++) free(b->lines[i].text);
    free(b->lines);
    memset(b, 0, sizeof *b);
}

/* ---- the queue ------------------------------------------------------------------ */

struct sup_logq {
    pthread_mutex_t mu;
    pthread_cond_t cond;          /* CLOCK_MONOTONIC */
    sup_log_line *ring;
    size_t cap, head, count;      /* ring of max_lines entries */
    size_t bytes, max_bytes;
    int64_t gap;                  /* lines dropped just before the current head */
    int64_t dropped_total;
    bool closed;
};

int sup_logq_new(size_t max_lines, size_t max_bytes, sup_logq **out)
{
    TSR_ENSURE(max_lines > 0 && max_lines <= 1000000 && max_bytes >= SUP_LOG_LINE_MAX,
               TSR_E_INPUT, "log queue bounds %zu lines / %zu bytes", max_lines, max_bytes);
    sup_logq *q = calloc(1, sizeof *q);
    TSR_ENSURE(q != NULL, TSR_E_INTERNAL, "out of memory");
    q->ring = calloc(max_lines, sizeof *q->ring);
    pthread_condattr_t ca;
    bool ok = q->ring != NULL && pthread_condattr_init(&ca) == 0;
    if (ok) {
        ok = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
             pthread_cond_init(&q->cond, &ca) == 0;
        pthread_condattr_destroy(&ca);
    }
    if (!ok) {
        free(q->ring);
        free(q);
        return TSR_FAIL(TSR_E_INTERNAL, "log queue init");
    }
    pthread_mutex_init(&q->mu, NULL);
    q->cap = max_lines;
    q->max_bytes = max_bytes;
    *out = q;
    return 0;
}

void sup_logq_free(sup_logq *q)
{
    if (q == NULL) return;
    for (size_t i = 0; i < q->count; i++) free(q->ring[(q->head + i) % q->cap].text);
    free(q->ring);
    pthread_cond_destroy(&q->cond);
    pthread_mutex_destroy(&q->mu);
    free(q);
}

static void drop_oldest(sup_logq *q)
{
    sup_log_line *l = &q->ring[q->head];
    q->bytes -= l->len;
    free(l->text);
    memset(l, 0, sizeof *l);
    q->head = (q->head + 1) % q->cap;
    q->count--;
    q->gap++;
    q->dropped_total++;
}

void sup_logq_push(sup_logq *q, enum sup_stream stream, const uint8_t *text, size_t len,
                   int64_t timestamp_ms)
{
    if (len > SUP_LOG_LINE_MAX) len = SUP_LOG_LINE_MAX;
    uint8_t *copy = malloc(len + 1);
    pthread_mutex_lock(&q->mu);
    if (copy == NULL) {
        /* Out of memory: the line is lost, but counted like any drop
         * (reported with the next batch). */
        q->dropped_total++;
        q->gap++;
        pthread_mutex_unlock(&q->mu);
        return;
    }
    if (len > 0) memcpy(copy, text, len);
    copy[len] = '\0';
    while (q->count > 0 && (q->count == q->cap || q->bytes + len > q->max_bytes)) drop_oldest(q);
    sup_log_line *l = &q->ring[(q->head + q->count) % q->cap];
    l->timestamp_ms = timestamp_ms;
    l->stream = stream;
    l->text = copy;
    l->len = len;
    q->count++;
    q->bytes += len;
    pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->mu);
}

static void abs_deadline(int64_t ms_from_now, struct timespec *ts)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms_from_now / 1000);
    ts->tv_nsec += (long)(ms_from_now % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Move lines from the queue head into b while they fit. Stops at a gap that
 * would fall inside the batch (it must be reported before its lines). */
static bool gather(sup_logq *q, sup_log_batch *b, size_t max_lines, size_t max_bytes)
{
    while (q->count > 0 && b->n < max_lines) {
        if (b->n > 0 && q->gap > 0) return true;                    /* full: gap next */
        sup_log_line *l = &q->ring[q->head];
        if (b->n > 0 && b->bytes + l->len > max_bytes) return true; /* full: bytes */
        if (b->n == 0) {
            b->dropped += q->gap;
            q->gap = 0;
        }
        b->lines[b->n++] = *l;
        b->bytes += l->len;
        q->bytes -= l->len;
        memset(l, 0, sizeof *l);
        q->head = (q->head + 1) % q->cap;
        q->count--;
    }
    return b->n >= max_lines;
}

size_t sup_logq_take(sup_logq *q, sup_log_batch *b, size_t max_lines, size_t max_bytes,
                     int64_t wait_ms, int64_t max_delay_ms)
{
    memset(b, 0, sizeof *b);
    if (max_lines == 0) return 0;
    b->lines = calloc(max_lines, sizeof *b->lines);
    if (b->lines == NULL) return 0;
    struct timespec ts;
    pthread_mutex_lock(&q->mu);
    if (wait_ms >= 0) abs_deadline(wait_ms, &ts);
    while (q->count == 0 && !q->closed) {
        int rc = wait_ms >= 0 ? pthread_cond_timedwait(&q->cond, &q->mu, &ts)
                              : pthread_cond_wait(&q->cond, &q->mu);
        if (rc == ETIMEDOUT) break;
    }
    if (q->count > 0) {
        bool full = gather(q, b, max_lines, max_bytes);
        abs_deadline(max_delay_ms > 0 ? max_delay_ms : 0, &ts);
        while (!full && !q->closed && max_delay_ms > 0) {
            int rc = pthread_cond_timedwait(&q->cond, &q->mu, &ts);
            full = gather(q, b, max_lines, max_bytes);
            if (rc == ETIMEDOUT) break;
        }
    }
    pthread_mutex_unlock(&q->mu);
    if (b->n == 0) sup_log_batch_clear(b);
    return b->n;
}

void sup_logq_close(sup_logq *q)
{
    pthread_mutex_lock(&q->mu);
    q->closed = true;
    pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->mu);
}

size_t sup_logq_count(sup_logq *q)
{
    pthread_mutex_lock(&q->mu);
    size_t n = q->count;
    pthread_mutex_unlock(&q->mu);
    return n;
}

size_t sup_logq_bytes(sup_logq *q)
{
    pthread_mutex_lock(&q->mu);
    size_t n = q->bytes;
    pthread_mutex_unlock(&q->mu);
    return n;
}

int64_t sup_logq_dropped_total(sup_logq *q)
{
    pthread_mutex_lock(&q->mu);
    int64_t n = q->dropped_total;
    pthread_mutex_unlock(&q->mu);
    return n;
}

/* ---- lines ---------------------------------------------------------------------- */

static const uint8_t REPLACEMENT[3] = {0xEF, 0xBF, 0xBD}; /* U+FFFD for a NUL byte */

void sup_linebuf_init(sup_linebuf *lb, enum sup_stream stream)
{
    lb->stream = stream;
    lb->len = 0;
}

static void emit(sup_linebuf *lb, sup_logq *q, int64_t now_ms)
{
    sup_logq_push(q, lb->stream, lb->buf, lb->len, now_ms);
    lb->len = 0;
}

void sup_linebuf_feed(sup_linebuf *lb, const uint8_t *data, size_t len, sup_logq *q,
                      int64_t now_ms)
{
    for (size_t i = 0; i < len; i++) {
        uint8_t c = data[i];
        if (c == '\n') {
            emit(lb, q, now_ms);
            continue;
        }
        size_t need = c == '\0' ? sizeof REPLACEMENT : 1;
        if (lb->len + need > sizeof lb->buf) emit(lb, q, now_ms); /* split a long line */
        if (c == '\0') {
            memcpy(lb->buf + lb->len, REPLACEMENT, sizeof REPLACEMENT);
            lb->len += sizeof REPLACEMENT;
        } else {
            lb->buf[lb->len++] = c;
        }
    }
}

void sup_linebuf_flush(sup_linebuf *lb, sup_logq *q, int64_t now_ms)
{
    if (lb->len > 0) emit(lb, q, now_ms);
}

/* ---- the pipe reader ------------------------------------------------------------ */

struct sup_reader {
    pthread_t th;
    int fds[2];
    sup_linebuf *lbs;             /* two, heap: 16 KiB each */
    sup_logq *q;
    _Atomic int64_t deadline_ms;  /* monotonic; 0 = none yet */
};

static void *reader_main(void *arg)
{
    sup_reader *r = arg;
    uint8_t buf[65536];
    for (;;) {
        struct pollfd pfd[2];
        nfds_t n = 0;
        int map[2];
        for (int i = 0; i < 2; i++) {
            if (r->fds[i] < 0) continue;
            pfd[n].fd = r->fds[i];
            pfd[n].events = POLLIN;
            pfd[n].revents = 0;
            map[n++] = i;
        }
        if (n == 0) break;
        int64_t deadline = atomic_load(&r->deadline_ms);
        if (deadline != 0 && tsr_monotonic_ms() >= deadline) break;
        int pr = poll(pfd, n, 100);
        if (pr < 0 && errno != EINTR) break;
        for (nfds_t k = 0; pr > 0 && k < n; k++) {
            if (pfd[k].revents == 0) continue;
            int i = map[k];
            ssize_t got = read(r->fds[i], buf, sizeof buf);
            if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
            int64_t now = tsr_now_unix_ms();
            if (got <= 0) {
                sup_linebuf_flush(&r->lbs[i], r->q, now);
                close(r->fds[i]);
                r->fds[i] = -1;
                continue;
            }
            sup_linebuf_feed(&r->lbs[i], buf, (size_t)got, r->q, now);
        }
    }
    /* Past the deadline: whatever partial line is left still goes out. */
    for (int i = 0; i < 2; i++) {
        if (r->fds[i] < 0) continue;
        sup_linebuf_flush(&r->lbs[i], r->q, tsr_now_unix_ms());
        close(r->fds[i]);
        r->fds[i] = -1;
    }
    return NULL;
}

int sup_reader_start(int stdout_fd, int stderr_fd, sup_logq *q, sup_reader **out)
{
    sup_reader *r = calloc(1, sizeof *r);
    TSR_ENSURE(r != NULL, TSR_E_INTERNAL, "out of memory");
    r->lbs = calloc(2, sizeof *r->lbs);
    if (r->lbs == NULL) {
        free(r);
        return TSR_FAIL(TSR_E_INTERNAL, "out of memory");
    }
    r->fds[0] = stdout_fd;
    r->fds[1] = stderr_fd;
    sup_linebuf_init(&r->lbs[0], SUP_STREAM_STDOUT);
    sup_linebuf_init(&r->lbs[1], SUP_STREAM_STDERR);
    r->q = q;
    atomic_store(&r->deadline_ms, 0);
    for (int i = 0; i < 2; i++)
        if (r->fds[i] >= 0) (void)fcntl(r->fds[i], F_SETFL, O_NONBLOCK);
    int e = pthread_create(&r->th, NULL, reader_main, r);
    if (e != 0) {
        free(r->lbs);
        free(r);
        return TSR_FAIL(TSR_E_INTERNAL, "log reader thread: %s", strerror(e));
    }
    *out = r;
    return 0;
}

void sup_reader_stop(sup_reader *r, int64_t grace_ms)
{
    if (r == NULL) return;
    atomic_store(&r->deadline_ms, tsr_monotonic_ms() + (grace_ms > 0 ? grace_ms : 0) + 1);
    pthread_join(r->th, NULL);
    free(r->lbs);
    free(r);
}

/* ---- the sender ------------------------------------------------------------------ */

struct sup_sender {
    sup_sender_config cfg;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cond;                     /* CLOCK_MONOTONIC; wakes a backoff sleep */
    bool stopping;
    int64_t flush_deadline_ms;
    int64_t undelivered;
    /* Sender thread only. */
    cl_conn *conn;
    char conn_key[SUP_TARGET_KEY_MAX];   /* the gateway address conn reached */
    uint64_t conn_gen;
    sup_round round;                     /* this thread's round over the gateway addresses */
    cl_stream *stream;
    int64_t stream_opened_ms, last_send_ms;
    sup_log_batch unacked[SUP_WINDOW_MAX_BATCHES];
    size_t n_unacked, n_sent;
    unsigned attempt;
    unsigned refusals;       /* consecutive content refusals of the oldest batch */
    bool solo;               /* after a refusal: one batch per stream until the window drains */
    char session[33];        /* random, names this sender's batches to the gateway */
    int64_t next_batch;      /* number of the last batch queued to send */
    int64_t carry_dropped;   /* dropped lines to report with the next batch */
    bool fatal;
};

static bool sender_stopping(sup_sender *s, int64_t *deadline)
{
    pthread_mutex_lock(&s->mu);
    bool stop = s->stopping;
    if (deadline) *deadline = s->flush_deadline_ms;
    pthread_mutex_unlock(&s->mu);
    return stop;
}

/* Sleep up to ms, or until stop is requested (returns at once when stopping). */
static void sender_sleep(sup_sender *s, int64_t ms)
{
    struct timespec ts;
    abs_deadline(ms, &ts);
    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        if (pthread_cond_timedwait(&s->cond, &s->mu, &ts) == ETIMEDOUT) break;
    }
    pthread_mutex_unlock(&s->mu);
}

static void drop_connection(sup_sender *s)
{
    cl_stream_cancel(s->stream);
    s->stream = NULL;
    cl_conn_close(s->conn);
    s->conn = NULL;
    s->n_sent = 0; /* everything unacknowledged goes again */
}

/* A failed call: fatal statuses end the sender; an unreachable gateway
 * moves on at once to an address of this round not tried yet; others back
 * off. */
static void sender_failed(sup_sender *s, const cl_status *st, bool from_server)
{
    size_t carried = s->n_sent; /* batches on the failed stream */
    /* Unreachable or going away (GOAWAY of a draining replica): the batches
     * of the failed stream go again, with their session and numbers, to the
     * next gateway that answers, which acknowledges without storing what
     * this one stored already. */
    bool next_now = sup_gateways_next_now(
        s->cfg.gateways, &s->round,
        s->conn != NULL && sup_status_is_unreachable(st->code) ? s->conn_key : NULL);
    drop_connection(s);
    if (from_server && sup_status_is_fatal(st->code)) {
        s->fatal = true;
        if (s->cfg.on_fatal) s->cfg.on_fatal(s->cfg.arg, st);
        return;
    }
    /* The gateway refusing the content itself (e.g. lines longer than its
     * log_line_bytes): after SUP_MAX_REFUSALS tries, give up the oldest batch
     * and count its lines as dropped, rather than block the stream forever. */
    bool refused = from_server && s->n_unacked > 0 &&
                   (st->code == GW_STATUS_INVALID_ARGUMENT ||
                    st->code == GW_STATUS_RESOURCE_EXHAUSTED ||
                    st->code == GW_STATUS_FAILED_PRECONDITION ||
                    st->code == GW_STATUS_OUT_OF_RANGE);
    /* Which batch was refused is only known when the stream carried one: the
     * gateway stores a stream's batches one by one, so the batches before the
     * refused one may be stored already. Send them one per stream from now
     * on; only a refusal of the oldest batch alone counts towards giving it up. */
    if (refused && carried > 1) s->solo = true;
    if (refused && carried <= 1 && ++s->refusals >= SUP_MAX_REFUSALS) {
        sup_log_batch *b = &s->unacked[0];
        int64_t gone = (int64_t)b->n + b->dropped;
        sup_log("log stream: the gateway refused a batch of %zu lines %u times (%s); dropping it",
                b->n, s->refusals, st->message);
        sup_log_batch_clear(b);
        memmove(s->unacked, s->unacked + 1, (s->n_unacked - 1) * sizeof s->unacked[0]);
        s->n_unacked--;
        memset(&s->unacked[s->n_unacked], 0, sizeof s->unacked[0]);
        if (s->n_unacked > 0)
            s->unacked[0].dropped += gone;
        else
            s->carry_dropped += gone;
        s->refusals = 0;
        s->solo = false;
    }
    if (next_now) {
        if (!sender_stopping(s, NULL))
            sup_log("log stream: %s (%s); trying the next gateway address now",
                    cl_status_name(st->code), st->message);
        return;
    }
    int64_t d = sup_backoff_ms(s->attempt, sup_rand_unit());
    if (s->attempt < 16) s->attempt++;
    int64_t deadline = 0;
    if (sender_stopping(s, &deadline)) {
        /* Flushing: retry until the flush deadline, a little at a time. */
        int64_t left = deadline - tsr_monotonic_ms();
        if (d > left) d = left > 0 ? left : 0;
        if (d > 0) {
            struct timespec req = {(time_t)(d / 1000), (long)(d % 1000) * 1000000L};
            nanosleep(&req, NULL);
        }
        return;
    }
    sup_log("log stream: %s (%s); retrying in %lld ms", cl_status_name(st->code), st->message,
            (long long)d);
    sender_sleep(s, d);
}

static int ensure_stream(sup_sender *s, cl_status *st, bool *from_server)
{
    *from_server = false;
    if (s->stream != NULL) return 0;
    uint64_t gen = cl_tls_generation(s->cfg.tls);
    if (s->conn != NULL && (!cl_conn_alive(s->conn) || gen != s->conn_gen)) {
        /* A rotation swapped our identity: new streams use a new connection. */
        cl_conn_close(s->conn);
        s->conn = NULL;
    }
    if (s->conn == NULL) {
        if (sup_gateways_connect(s->cfg.gateways, &s->round, s->cfg.tls,
                                 s->cfg.connect_timeout_ms, &s->conn, s->conn_key, st) != 0)
            return -1;
        s->conn_gen = gen;
    }
    *from_server = true;
    if (cl_stream_open(s->conn, "/tessera.v1.Gateway/PushSandboxLogs",
                       SUP_STREAM_MAX_AGE_MS + 60000, &s->stream, st) != 0)
        return -1;
    s->stream_opened_ms = tsr_monotonic_ms();
    s->last_send_ms = s->stream_opened_ms;
    return 0;
}

static int send_batch(sup_sender *s, const sup_log_batch *b, cl_status *st)
{
    Tessera__V1__LogLine *items = calloc(b->n + 1, sizeof *items);
    Tessera__V1__LogLine **ptrs = calloc(b->n + 1, sizeof *ptrs);
    if (items == NULL || ptrs == NULL) {
        free(items);
        free(ptrs);
        st->code = GW_STATUS_RESOURCE_EXHAUSTED;
        snprintf(st->message, sizeof st->message, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < b->n; i++) {
        tessera__v1__log_line__init(&items[i]);
        items[i].timestamp_ms = b->lines[i].timestamp_ms;
        items[i].stream = (char *)(uintptr_t)sup_stream_name(b->lines[i].stream);
        items[i].text.data = b->lines[i].text;
        items[i].text.len = b->lines[i].len;
        ptrs[i] = &items[i];
    }
    Tessera__V1__PushSandboxLogsRequest req;
    tessera__v1__push_sandbox_logs_request__init(&req);
    req.sandbox_id = s->cfg.sandbox_id;
    req.n_lines = b->n;
    req.lines = ptrs;
    req.dropped_lines = b->dropped;
    req.session = s->session;
    req.batch_seq = b->seq;
    int rc = cl_stream_send_pb(s->stream, &req.base, st);
    free(ptrs);
    free(items);
    return rc;
}

static void clear_unacked(sup_sender *s)
{
    for (size_t i = 0; i < s->n_unacked; i++) sup_log_batch_clear(&s->unacked[i]);
    s->n_unacked = 0;
    s->n_sent = 0;
}

static int finish_stream(sup_sender *s, cl_status *st)
{
    ProtobufCMessage *m = NULL;
    cl_stream *stream = s->stream;
    s->stream = NULL;
    if (cl_stream_finish_pb(stream, &tessera__v1__push_sandbox_logs_response__descriptor, &m,
                            st) != 0)
        return -1;
    const Tessera__V1__PushSandboxLogsResponse *r = (const Tessera__V1__PushSandboxLogsResponse *)m;
    int64_t sent = 0;
    for (size_t i = 0; i < s->n_sent; i++) sent += (int64_t)s->unacked[i].n;
    int64_t accepted = r ? r->accepted_lines : 0;
    protobuf_c_message_free_unpacked(m, NULL);
    if (accepted != sent)
        sup_log("log stream: gateway accepted %lld of %lld lines", (long long)accepted,
                (long long)sent);
    /* Acknowledged: the window is done. Unsent batches (none normally) stay. */
    size_t keep = s->n_unacked - s->n_sent;
    for (size_t i = 0; i < s->n_sent; i++) sup_log_batch_clear(&s->unacked[i]);
    memmove(s->unacked, s->unacked + s->n_sent, keep * sizeof s->unacked[0]);
    memset(s->unacked + keep, 0, (SUP_WINDOW_MAX_BATCHES - keep) * sizeof s->unacked[0]);
    s->n_unacked = keep;
    s->n_sent = 0;
    s->attempt = 0;
    s->refusals = 0;
    sup_round_reset(&s->round);   /* the gateway answered: a new round */
    if (keep == 0) s->solo = false;
    return 0;
}

static void *sender_main(void *arg)
{
    sup_sender *s = arg;
    cl_status st;
    for (;;) {
        int64_t flush_deadline = 0;
        bool stopping = sender_stopping(s, &flush_deadline);
        int64_t now = tsr_monotonic_ms();
        if (s->fatal || (stopping && now >= flush_deadline)) break;

        /* 1. Send what is unacknowledged but not yet on this stream. */
        if (s->n_sent < s->n_unacked && !(s->solo && s->n_sent > 0)) {
            bool from_server = false;
            if (ensure_stream(s, &st, &from_server) != 0) {
                sender_failed(s, &st, from_server);
                continue;
            }
            if (send_batch(s, &s->unacked[s->n_sent], &st) != 0) {
                sender_failed(s, &st, true);
                continue;
            }
            s->n_sent++;
            s->last_send_ms = tsr_monotonic_ms();
            s->attempt = 0;
            continue;
        }
        /* 2. Close the window: its acknowledgement frees the batches. */
        if (s->stream != NULL) {
            bool done = s->n_unacked >= SUP_WINDOW_MAX_BATCHES || s->solo ||
                        now - s->stream_opened_ms >= SUP_STREAM_MAX_AGE_MS ||
                        now - s->last_send_ms >= SUP_STREAM_IDLE_MS ||
                        cl_tls_generation(s->cfg.tls) != s->conn_gen ||
                        (stopping && sup_logq_count(s->cfg.q) == 0);
            if (done) {
                if (finish_stream(s, &st) != 0) sender_failed(s, &st, true);
                continue;
            }
        }
        if (stopping && s->n_unacked == 0 && sup_logq_count(s->cfg.q) == 0) break;
        /* 3. A new batch, waiting no longer than the window may stay open. */
        int64_t wait = 500;
        if (s->stream != NULL) {
            int64_t idle_left = SUP_STREAM_IDLE_MS - (now - s->last_send_ms);
            int64_t age_left = SUP_STREAM_MAX_AGE_MS - (now - s->stream_opened_ms);
            wait = idle_left < age_left ? idle_left : age_left;
            if (wait < 0) wait = 0;
        }
        if (stopping) wait = 0;
        sup_log_batch b;
        if (sup_logq_take(s->cfg.q, &b, SUP_BATCH_MAX_LINES, SUP_BATCH_MAX_BYTES, wait,
                          stopping ? 0 : SUP_BATCH_MAX_DELAY_MS) > 0) {
            b.dropped += s->carry_dropped;
            s->carry_dropped = 0;
            b.seq = ++s->next_batch;
            s->unacked[s->n_unacked++] = b;
        }
    }
    /* Whatever is left could not be delivered. */
    if (s->stream != NULL && !s->fatal && s->n_sent == s->n_unacked && s->n_unacked > 0) {
        /* A last chance to get the window acknowledged. */
        if (finish_stream(s, &st) != 0) drop_connection(s);
    }
    int64_t lost = (int64_t)sup_logq_count(s->cfg.q);
    for (size_t i = 0; i < s->n_unacked; i++) lost += (int64_t)s->unacked[i].n;
    clear_unacked(s);
    drop_connection(s);
    pthread_mutex_lock(&s->mu);
    s->undelivered = lost;
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int sup_sender_start(const sup_sender_config *cfg, sup_sender **out)
{
    TSR_ENSURE(cfg->q != NULL && cfg->tls != NULL && cfg->gateways != NULL &&
                   cfg->sandbox_id[0] != '\0',
               TSR_E_INTERNAL, "sender: missing configuration");
    sup_sender *s = calloc(1, sizeof *s);
    TSR_ENSURE(s != NULL, TSR_E_INTERNAL, "out of memory");
    s->cfg = *cfg;
    unsigned char nonce[16];
    if (RAND_bytes(nonce, sizeof nonce) != 1) {
        free(s);
        return TSR_FAIL(TSR_E_INTERNAL, "log sender: no random session");
    }
    for (size_t i = 0; i < sizeof nonce; i++)
        snprintf(s->session + 2 * i, sizeof s->session - 2 * i, "%02x", nonce[i]);
    if (s->cfg.connect_timeout_ms <= 0) s->cfg.connect_timeout_ms = SUP_CONNECT_TIMEOUT_MS;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&s->mu, NULL);
    int e = pthread_create(&s->th, NULL, sender_main, s);
    if (e != 0) {
        pthread_cond_destroy(&s->cond);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return TSR_FAIL(TSR_E_INTERNAL, "log sender thread: %s", strerror(e));
    }
    *out = s;
    return 0;
}

int64_t sup_sender_stop(sup_sender *s, int64_t flush_ms)
{
    if (s == NULL) return 0;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    s->flush_deadline_ms = tsr_monotonic_ms() + (flush_ms > 0 ? flush_ms : 0);
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
    sup_logq_close(s->cfg.q);
    pthread_join(s->th, NULL);
    int64_t lost = s->undelivered;
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->mu);
    free(s);
    return lost;
}

/* ---- the supervisor's own lines --------------------------------------------------- */

static _Atomic(sup_logq *) log_queue;

void sup_log_attach(sup_logq *q)
{
    atomic_store(&log_queue, q);
}

void sup_log(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    size_t len = (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1;
    /* One line per message: no embedded newlines reach either sink. */
    for (size_t i = 0; i < len; i++)
        if (msg[i] == '\n' || msg[i] == '\r') msg[i] = ' ';

    int64_t ms = tsr_now_unix_ms();
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char line[1200];
    int ln = snprintf(line, sizeof line,
                      "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ tessera-supervisor: %s\n",
                      tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                      tm.tm_sec, (int)(ms % 1000), msg);
    if (ln > 0) {
        size_t w = (size_t)ln < sizeof line ? (size_t)ln : sizeof line - 1;
        ssize_t r = write(STDERR_FILENO, line, w); /* one write: lines never interleave */
        (void)r;
    }
    sup_logq *q = atomic_load(&log_queue);
    if (q != NULL) sup_logq_push(q, SUP_STREAM_SUPERVISOR, (const uint8_t *)msg, len, ms);
}
