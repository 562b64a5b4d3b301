/* The log pipeline: the workload's stdout/stderr -> lines -> a bounded
 * in-memory queue -> batches streamed to the gateway over PushSandboxLogs.
 * Also the supervisor's own log lines (stderr, and the "supervisor" stream).
 *
 * Bounds and drops:
 *   - a line ends at '\n' (not kept) or after SUP_LOG_LINE_MAX bytes (split);
 *     a NUL byte, which the gateway refuses, becomes U+FFFD;
 *   - the queue holds at most max_lines lines and max_bytes bytes of text;
 *     when a new line does not fit, the OLDEST queued lines are dropped and
 *     counted. The freshest output (what the workload is doing now, its last
 *     words before exiting) is worth more than old lines, and the gap then
 *     sits exactly before the next batch, which reports it in dropped_lines;
 *   - the reader never waits for the queue or the network, so the workload
 *     never blocks on a full pipe for longer than one read takes.
 *
 * Delivery (sup_sender): one PushSandboxLogs stream carries batches of at
 * most SUP_BATCH_MAX_LINES lines / SUP_BATCH_MAX_BYTES bytes, each sent at
 * the latest SUP_BATCH_MAX_DELAY_MS after its first line was read. A stream
 * is finished (the gateway's accepted_lines is its acknowledgement) after
 * SUP_STREAM_MAX_AGE_MS, SUP_WINDOW_MAX_BATCHES batches, or 1 s without new
 * lines; batches sent on a stream stay in memory until it is acknowledged,
 * and are sent again on a new connection when the stream fails. Delivery is
 * exactly once: each batch carries the sender's random session and its
 * number (PushSandboxLogsRequest.session / batch_seq), kept when it is sent
 * again, and the gateway acknowledges without storing a batch it stored
 * already (its acknowledgement was lost). After a content refusal the
 * window's batches go one per stream, so the batch given up after
 * SUP_MAX_REFUSALS is the refused one, never one the gateway stored. A line
 * is lost only when
 * the queue overflows (counted in dropped_lines), when the gateway refuses
 * the same batch's content SUP_MAX_REFUSALS times in a row (counted too), or
 * when the gateway stays unreachable past the shutdown flush deadline
 * (logged with the count). */
#ifndef SUP_LOGS_H
#define SUP_LOGS_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cl_grpc.h"
#include "sup_gwlist.h"
#include "tsr_err.h"

#define SUP_LOG_LINE_MAX 16384            /* the gateway's default log_line_bytes */
#define SUP_LOGQ_DEFAULT_LINES 4096
#define SUP_LOGQ_DEFAULT_BYTES (4u << 20)
#define SUP_BATCH_MAX_LINES 1000
#define SUP_BATCH_MAX_BYTES (512u << 10)  /* well under the gateway's message limit */
#define SUP_BATCH_MAX_DELAY_MS 1000
#define SUP_STREAM_MAX_AGE_MS 5000
#define SUP_STREAM_IDLE_MS 1000
#define SUP_WINDOW_MAX_BATCHES 8
#define SUP_MAX_REFUSALS 3                /* content refusals before a batch is given up */

enum sup_stream { SUP_STREAM_STDOUT = 0, SUP_STREAM_STDERR, SUP_STREAM_SUPERVISOR };
const char *sup_stream_name(enum sup_stream s); /* "stdout", "stderr", "supervisor" */

typedef struct sup_log_line {
    int64_t timestamp_ms;
    enum sup_stream stream;
    uint8_t *text;       /* malloc'd, no NUL inside, NUL-terminated past len */
    size_t len;
} sup_log_line;

typedef struct sup_log_batch {
    sup_log_line *lines; /* malloc'd array, n entries */
    size_t n;
    size_t bytes;
    int64_t dropped;     /* lines dropped just before these */
    int64_t seq;         /* the sender's batch number (1, 2, ...): 0 until queued to send */
} sup_log_batch;

void sup_log_batch_clear(sup_log_batch *b);

/* ---- the queue (thread-safe) --------------------------------------------- */

typedef struct sup_logq sup_logq;

TSR_WUR int sup_logq_new(size_t max_lines, size_t max_bytes, sup_logq **out);
void sup_logq_free(sup_logq *q);
/* Append one line (copied; len <= SUP_LOG_LINE_MAX, no NUL). Never blocks
 * beyond the queue's mutex; drops the oldest lines to make room. */
void sup_logq_push(sup_logq *q, enum sup_stream stream, const uint8_t *text, size_t len,
                   int64_t timestamp_ms);
/* Wait until a line is queued (or the queue is closed, or wait_ms passed;
 * wait_ms < 0 waits without limit), then gather a batch: keep gathering
 * until max_lines, max_bytes, or max_delay_ms after the first line was
 * taken. Lines move into *b (which must be empty) along with the dropped
 * count. Returns the number of lines taken (0 on timeout / closed & empty). */
size_t sup_logq_take(sup_logq *q, sup_log_batch *b, size_t max_lines, size_t max_bytes,
                     int64_t wait_ms, int64_t max_delay_ms);
/* Wake every waiter; later takes return at once when the queue is empty. */
void sup_logq_close(sup_logq *q);
size_t sup_logq_count(sup_logq *q);
size_t sup_logq_bytes(sup_logq *q);
int64_t sup_logq_dropped_total(sup_logq *q);   /* all drops so far */

/* ---- splitting a byte stream into lines ---------------------------------- */

typedef struct sup_linebuf {
    enum sup_stream stream;
    size_t len;
    uint8_t buf[SUP_LOG_LINE_MAX];
} sup_linebuf;

void sup_linebuf_init(sup_linebuf *lb, enum sup_stream stream);
/* Feed bytes as read from a pipe; complete lines go to q. */
void sup_linebuf_feed(sup_linebuf *lb, const uint8_t *data, size_t len, sup_logq *q,
                      int64_t now_ms);
/* End of stream: a partial last line is queued too. */
void sup_linebuf_flush(sup_linebuf *lb, sup_logq *q, int64_t now_ms);

/* ---- the pipe reader (thread) --------------------------------------------- */

typedef struct sup_reader sup_reader;

/* Reads fds (non-blocking pipes, owned: closed at the end) until EOF on all
 * of them, or until sup_reader_stop's deadline. */
TSR_WUR int sup_reader_start(int stdout_fd, int stderr_fd, sup_logq *q, sup_reader **out);
/* Keep reading until EOF or `grace_ms` from now, then join and free. */
void sup_reader_stop(sup_reader *r, int64_t grace_ms);

/* ---- the sender (thread) --------------------------------------------------- */

typedef struct sup_sender sup_sender;

typedef struct sup_sender_config {
    sup_logq *q;
    sup_gateways *gateways;       /* shared with the control thread */
    cl_tls *tls;                  /* shared; the sender reconnects after a reload */
    char sandbox_id[CA_NAME_MAX + 1];
    int64_t connect_timeout_ms;
    /* The gateway refused our identity (UNAUTHENTICATED, PERMISSION_DENIED,
     * NOT_FOUND): called once from the sender thread, which then stops. */
    void (*on_fatal)(void *arg, const cl_status *st);
    void *arg;
} sup_sender_config;

TSR_WUR int sup_sender_start(const sup_sender_config *cfg, sup_sender **out);
/* Deliver what is queued for up to `flush_ms`, then stop, join and free.
 * Returns the number of lines that could not be delivered. */
int64_t sup_sender_stop(sup_sender *s, int64_t flush_ms);

/* ---- the supervisor's own log lines ---------------------------------------- */

/* "2024-05-01T12:00:00.123Z tessera-supervisor: <message>" on stderr, and
 * the message as a "supervisor" line into the attached queue (if any).
 * Never pass key material. */
void sup_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void sup_log_attach(sup_logq *q);  /* NULL detaches */

#endif
