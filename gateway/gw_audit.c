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
#include "tsr_time.h"
#include "tsr_utf8.h"

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

void gw_json_escape(const char *in, char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (cap == 0) return;
    for (const unsigned char *p = (const unsigned char *)(in ? in : ""); *p; p++) {
        char esc[7];
        size_t n;
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            n = 2;
        } else if (*p < 0x20 || *p == 0x7f) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[*p >> 4];
            esc[5] = hex[*p & 15];
            n = 6;
        } else if (*p >= 0x80) {
            /* Request strings are not checked for UTF-8 (protobuf-c passes
             * any bytes): a valid sequence is kept whole, any other byte
             * becomes U+FFFD, so every line stays valid JSON (RFC 8259 §8.1)
             * that log readers cannot choke on. */
            n = tsr_utf8_seq_len(p, strnlen((const char *)p, 4));
            if (n > 0) {
                memcpy(esc, p, n);
                p += n - 1;
            } else {
                memcpy(esc, "\\ufffd", 6);
                n = 6;
            }
        } else {
            esc[0] = (char)*p;
            n = 1;
        }
        if (o + n + 1 > cap) break; /* truncate rather than overflow */
        memcpy(out + o, esc, n);
        o += n;
    }
    out[o] = '\0';
}

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
     * are escaped and bounded. */
    char peer[512], method[256], target[256], why[512], ser[64], addr[96];
    gw_json_escape(p->spiffe_id[0] ? p->spiffe_id : gw_principal_kind_name(p->kind), peer,
                   sizeof peer);
    gw_json_escape(ctx->method, method, sizeof method);
    gw_json_escape(sandbox, target, sizeof target);
    gw_json_escape(reason, why, sizeof why);
    gw_json_escape(serial, ser, sizeof ser);
    gw_json_escape(ctx->peer_addr, addr, sizeof addr);

    char line[2400];
    int n = snprintf(line, sizeof line,
                     "{\"time\":\"%s\",\"event\":\"%s\",\"peer\":\"%s\",\"peer_addr\":\"%s\","
                     "\"method\":\"%s\",\"sandbox\":\"%s\",\"decision\":\"%s\",\"reason\":\"%s\""
                     "%s%s%s}\n",
                     when, event, peer, addr, method, target, decision, why,
                     ser[0] ? ",\"serial\":\"" : "", ser, ser[0] ? "\"" : "");
    if (n <= 0) return;
    size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    gw_audit_write(app->audit, line, len);
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
        a->failures++;
        gw_metrics_audit_write_failure();
        if (a->burst++ == 0)
            fprintf(stderr,
                    "tessera-gateway: audit log write failed: %s (lines are being lost; "
                    "counted in tessera_audit_write_failures_total)\n",
                    strerror(err));
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
