#include "gw_audit.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gw_app.h"
#include "gw_metrics.h"
#include "tsr_json.h"
#include "tsr_time.h"

struct gw_audit {
    int fd;
    int owns_fd;
    pthread_mutex_t lock;
    /* Under lock: */
    uint64_t failures;       /* lines lost or cut short */
    uint64_t burst;          /* failures since the last successful line */
    int line_open;           /* the file ends inside a cut line */
    char *path;              /* NULL for stderr; gw_audit_reopen opens it again */
};

/* EINTR retries per line: a signal storm must not hold the request path. */
#define AUDIT_EINTR_MAX 16

int gw_audit_open(const char *path, gw_audit **out)
{
    gw_audit *a = calloc(1, sizeof *a);
    TSR_ENSURE(a != NULL, TSR_E_INTERNAL, "out of memory");
    if (strcmp(path, "-") == 0) {
        a->fd = STDERR_FILENO;
    } else {
        a->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (a->fd < 0) {
            int saved = errno;
            free(a);
            return TSR_FAIL(TSR_E_IO, "open audit log %s: %s", path, strerror(saved));
        }
        a->owns_fd = 1;
        if ((a->path = strdup(path)) == NULL) {
            close(a->fd);
            free(a);
            return TSR_FAIL(TSR_E_INTERNAL, "out of memory");
        }
    }
    pthread_mutex_init(&a->lock, NULL);
    *out = a;
    return 0;
}

void gw_audit_close(gw_audit *a)
{
    if (a == NULL) return;
    if (a->owns_fd) close(a->fd);
    pthread_mutex_destroy(&a->lock);
    free(a->path);
    free(a);
}

int gw_audit_reopen(gw_audit *a)
{
    if (a == NULL || a->path == NULL) return 0;
    /* Open first: a failure keeps the old file (lines go on being written
     * there rather than lost). dup2 swaps the file under the same
     * descriptor number, under the lock every writer takes. */
    int fd = open(a->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    TSR_ENSURE(fd >= 0, TSR_E_IO, "reopen audit log %s: %s (still writing to the previous file)",
               a->path, strerror(errno));
    pthread_mutex_lock(&a->lock);
    int rc = dup3(fd, a->fd, O_CLOEXEC);
    int e = errno;
    if (rc >= 0) a->line_open = 0;   /* a new file starts on a line of its own */
    pthread_mutex_unlock(&a->lock);
    close(fd);
    TSR_ENSURE(rc >= 0, TSR_E_IO, "reopen audit log %s: %s", a->path, strerror(e));
    return 0;
}

/* The longest a field of an audit line gets, in bytes of its (untrusted)
 * input: a line stays bounded whatever a request carried. */
#define FIELD_MAX 511
#define SHORT_MAX 95

void gw_audit_event(const gw_call_ctx *ctx, const char *event, const char *sandbox,
                    const char *decision, const char *reason, const char *serial)
{
    gw_app *app = gw_app_of(ctx);
    if (app->audit == NULL) return;
    const gw_principal *p = ctx->principal;

    int64_t ms = tsr_now_unix_ms();
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char when[64];
    snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));

    /* Attacker-controlled strings (a requested sandbox id, a peer's URI)
     * enter as bounded, sanitized JSON strings (tsr_json.h). */
    json_t *o = json_object();
    char *text = NULL;
    size_t len = 0;
    if (o == NULL || tsr_json_set_str(o, "time", when, sizeof when) != 0 ||
        tsr_json_set_str(o, "event", event, FIELD_MAX) != 0 ||
        tsr_json_set_str(o, "peer",
                         p->spiffe_id[0] ? p->spiffe_id : gw_principal_kind_name(p->kind),
                         FIELD_MAX) != 0 ||
        tsr_json_set_str(o, "peer_addr", ctx->peer_addr, SHORT_MAX) != 0 ||
        tsr_json_set_str(o, "method", ctx->method, 255) != 0 ||
        tsr_json_set_str(o, "sandbox", sandbox, 255) != 0 ||
        tsr_json_set_str(o, "decision", decision, FIELD_MAX) != 0 ||
        tsr_json_set_str(o, "reason", reason, FIELD_MAX) != 0 ||
        (serial != NULL && serial[0] != '\0' &&
         tsr_json_set_str(o, "serial", serial, 63) != 0) ||
        (text = tsr_json_dump(o, &len)) == NULL) {
        json_decref(o);
        gw_audit_write_failed(app->audit, ENOMEM);
        return;
    }
    json_decref(o);
    /* One line: the JSON text and its newline, in one write. */
    char *line = realloc(text, len + 1);
    if (line == NULL) {
        free(text);
        gw_audit_write_failed(app->audit, ENOMEM);
        return;
    }
    line[len] = '\n';
    gw_audit_write(app->audit, line, len + 1);
    free(line);
}

/* Write all of buf: 0, or an errno value (ENOSPC for a write of 0 bytes).
 * *done is what was written. Never waits longer than the write itself. */
static int write_all(int fd, const char *buf, size_t len, size_t *done)
{
    int eintr = 0;
    *done = 0;
    while (*done < len) {
        ssize_t w = write(fd, buf + *done, len - *done);
        if (w < 0 && errno == EINTR && ++eintr <= AUDIT_EINTR_MAX) continue;
        if (w < 0) return errno;
        if (w == 0) return ENOSPC;
        *done += (size_t)w;
    }
    return 0;
}

/* Under a->lock: one line lost or cut short. */
static void count_failure(gw_audit *a, int err)
{
    a->failures++;
    gw_metrics_audit_write_failure();
    if (a->burst++ == 0)
        fprintf(stderr,
                "tessera-gateway: audit log write failed: %s (lines are being lost; "
                "counted in tessera_audit_write_failures_total)\n",
                strerror(err));
}

void gw_audit_write_failed(gw_audit *a, int err)
{
    if (a == NULL) return;
    pthread_mutex_lock(&a->lock);
    count_failure(a, err);
    pthread_mutex_unlock(&a->lock);
}

void gw_audit_write(gw_audit *a, const char *line, size_t len)
{
    if (a == NULL || len == 0) return;
    pthread_mutex_lock(&a->lock);
    size_t done = 0;
    int err = 0;
    /* One write() per line with O_APPEND: lines never interleave. A line
     * cut short earlier is ended first, so this one starts on its own. */
    if (a->line_open) {
        err = write_all(a->fd, "\n", 1, &done);
        if (err == 0) a->line_open = 0;
    }
    if (err == 0) {
        err = write_all(a->fd, line, len, &done);
        if (err != 0 && done > 0) a->line_open = 1;
    }
    if (err != 0) {
        count_failure(a, err);
    } else if (a->burst > 0) {
        fprintf(stderr, "tessera-gateway: audit log writes resumed after %llu lost lines\n",
                (unsigned long long)a->burst);
        a->burst = 0;
    }
    pthread_mutex_unlock(&a->lock);
}

uint64_t gw_audit_failures(gw_audit *a)
{
    if (a == NULL) return 0;
    pthread_mutex_lock(&a->lock);
    uint64_t n = a->failures;
    pthread_mutex_unlock(&a->lock);
    return n;
}

const char *gw_denial_name(enum gw_denial d)
{
    switch (d) {
    case GW_DENY_UNAUTHENTICATED: return "unauthenticated";
    case GW_DENY_PERMISSION: return "permission";
    case GW_DENY_CROSS_SANDBOX: return "cross_sandbox";
    case GW_DENY_RATE_LIMIT: return "rate_limit";
    case GW_DENY_BAD_REQUEST: return "bad_request";
    case GW_DENY_DELETED_SANDBOX: return "deleted_sandbox";
    case GW_DENY_COUNT: break;
    }
    return "unknown";
}

void gw_audit_denial(const gw_call_ctx *ctx, enum gw_denial kind, const char *sandbox,
                     const char *reason)
{
    gw_metrics_denial(kind);
    gw_audit_event(ctx, "deny", sandbox, "deny", reason, NULL);
}
