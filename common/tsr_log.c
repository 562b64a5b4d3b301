#include "tsr_log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tsr_time.h"

static const char *const level_names[8] = {"emerg", "alert", "crit",   "error",
                                           "warning", "notice", "info", "debug"};

enum tsr_log_mode tsr_log_detect(void)
{
    /* systemd sets JOURNAL_STREAM=DEV:INODE of the stream it connected;
     * it only counts when stderr is still that stream (not redirected). */
    const char *js = getenv("JOURNAL_STREAM");
    struct stat st;
    if (js != NULL && fstat(STDERR_FILENO, &st) == 0) {
        unsigned long long dev = 0, ino = 0;
        char tail = 0;
        if (sscanf(js, "%llu:%llu%c", &dev, &ino, &tail) == 2 &&
            (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino)
            return TSR_LOG_JOURNAL;
    }
    return TSR_LOG_TIMESTAMP;
}

static int line_level(const char **line, size_t *len)
{
    const char *l = *line;
    if (*len >= 3 && l[0] == '<' && l[1] >= '0' && l[1] <= '7' && l[2] == '>') {
        *line += 3;
        *len -= 3;
        return l[1] - '0';
    }
    if (memmem(l, *len, "warning", 7) != NULL || memmem(l, *len, "WARNING", 7) != NULL) return 4;
    return 6;
}

size_t tsr_log_format(enum tsr_log_mode mode, long long now_ms, const char *line, size_t len,
                      char *out, size_t cap)
{
    if (cap == 0) return 0;
    int level = line_level(&line, &len);
    int n;
    if (mode == TSR_LOG_JOURNAL) {
        n = snprintf(out, cap, "<%d>", level);
    } else if (mode == TSR_LOG_TIMESTAMP) {
        time_t secs = (time_t)(now_ms / 1000);
        struct tm tm;
        gmtime_r(&secs, &tm);
        n = snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (int)(now_ms % 1000), level_names[level]);
    } else {
        n = 0;
        out[0] = '\0';
    }
    size_t o = n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
    size_t take = len < cap - 1 - o ? len : cap - 1 - o;
    memcpy(out + o, line, take);
    o += take;
    out[o] = '\0';
    return o;
}

/* The cookie: the stream's buffer hands us bytes; a line is formatted once
 * it is complete (or when it outgrows `part`, in pieces). Called under the
 * FILE's lock, so lines of different threads never mix. */
typedef struct {
    enum tsr_log_mode mode;
    int fd;
    size_t n;
    char part[4096];
} log_cookie;

static void emit(log_cookie *c)
{
    char out[sizeof c->part + 96];
    size_t n = tsr_log_format(c->mode, (long long)tsr_now_unix_ms(), c->part, c->n, out,
                              sizeof out - 1);
    out[n++] = '\n';
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(c->fd, out + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        done += (size_t)w;
    }
    c->n = 0;
}

static ssize_t cookie_write(void *cookie, const char *buf, size_t size)
{
    log_cookie *c = cookie;
    for (size_t i = 0; i < size; i++) {
        if (buf[i] == '\n') {
            emit(c);
            continue;
        }
        if (c->n == sizeof c->part) emit(c);
        c->part[c->n++] = buf[i];
    }
    return (ssize_t)size;
}

static int cookie_close(void *cookie)
{
    log_cookie *c = cookie;
    if (c->n > 0) emit(c);
    free(c);
    return 0;
}

/* The stream's cookie lives as long as the process (the stream is never
 * closed); kept here too, so that leak checkers see it reachable. */
static log_cookie *the_cookie;

int tsr_log_stderr_init(void)
{
    if (the_cookie != NULL) return 0;
    log_cookie *c = calloc(1, sizeof *c);
    if (c == NULL) return -1;
    c->mode = tsr_log_detect();
    c->fd = STDERR_FILENO;
    cookie_io_functions_t io = {.write = cookie_write, .close = cookie_close};
    FILE *f = fopencookie(c, "w", io);
    if (f == NULL) {
        free(c);
        return -1;
    }
    /* Line-buffered: each complete line reaches the cookie while the
     * writer still holds the stream's lock. */
    if (setvbuf(f, NULL, _IOLBF, 8192) != 0) {
        fclose(f);
        return -1;
    }
    fflush(stderr);
    stderr = f;
    the_cookie = c;
    return 0;
}
