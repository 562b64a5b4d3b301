/* gw_audit: writes that fail, fail part-way and recover. What goes into a
 * line (any bytes of a request, as valid JSON) is tests/unit/test_tsr_json.c. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "gw_audit.h"
#include "gw_metrics.h"
#include "tu_fs.h"

/* ---- write failures --------------------------------------------------------- */

/* stderr captured into a pipe while a test runs (a pipe: the file-size
 * limit of the partial-write test does not apply to it). */
struct capture {
    int pipe[2];
    int saved;
};

static void capture_begin(struct capture *c)
{
    assert_int_equal(pipe(c->pipe), 0);
    fflush(stderr);
    c->saved = dup(STDERR_FILENO);
    assert_true(c->saved >= 0);
    assert_int_equal(dup2(c->pipe[1], STDERR_FILENO), STDERR_FILENO);
    close(c->pipe[1]);
}

/* Ends the capture; returns what was written (caller frees). */
static char *capture_end(struct capture *c)
{
    fflush(stderr);
    assert_int_equal(dup2(c->saved, STDERR_FILENO), STDERR_FILENO);
    close(c->saved);
    char *buf = calloc(1, 4096);
    assert_non_null(buf);
    size_t n = 0;
    for (;;) {
        ssize_t r = read(c->pipe[0], buf + n, 4095 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    close(c->pipe[0]);
    return buf;
}

static size_t count_of(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle)) n++;
    return n;
}

static uint64_t failures_metric(void)
{
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(gw_metrics_render(&text, &len), 0);
    const char *p = strstr(text, "\ntessera_audit_write_failures_total ");
    assert_non_null(p);
    uint64_t v = strtoull(p + strlen("\ntessera_audit_write_failures_total "), NULL, 10);
    free(text);
    return v;
}

/* A full disk (/dev/full: every write is ENOSPC): nothing blocks or crashes,
 * every lost line is counted, stderr hears of the burst once. */
static void test_write_failures_full_disk(void **state)
{
    (void)state;
    gw_metrics_reset();
    gw_audit *a = NULL;
    assert_int_equal(gw_audit_open("/dev/full", &a), 0);
    struct capture c;
    capture_begin(&c);
    static const char line[] = "{\"event\":\"issue\"}\n";
    for (int i = 0; i < 5; i++) gw_audit_write(a, line, sizeof line - 1);
    char *err = capture_end(&c);
    assert_int_equal(gw_audit_failures(a), 5);
    assert_int_equal(failures_metric(), 5);
    assert_int_equal(count_of(err, "audit log write failed"), 1);
    assert_non_null(strstr(err, strerror(ENOSPC)));
    assert_int_equal(count_of(err, "resumed"), 0);
    free(err);
    gw_audit_close(a);
}

/* A descriptor that no longer works (the write end of a pipe whose reader
 * is gone: EPIPE, SIGPIPE ignored as the gateway does). */
static void test_write_failures_broken_pipe(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", p[1]);
    gw_audit *a = NULL;
    assert_int_equal(gw_audit_open(path, &a), 0);
    close(p[1]);
    close(p[0]);
    void (*old)(int) = signal(SIGPIPE, SIG_IGN);
    struct capture c;
    capture_begin(&c);
    gw_audit_write(a, "x\n", 2);
    gw_audit_write(a, "y\n", 2);
    char *err = capture_end(&c);
    signal(SIGPIPE, old);
    assert_int_equal(gw_audit_failures(a), 2);
    assert_int_equal(count_of(err, "audit log write failed"), 1);
    assert_non_null(strstr(err, strerror(EPIPE)));
    free(err);
    gw_audit_close(a);
}

/* A short write (the file-size limit cuts the line), then the limit is
 * lifted: the cut line is ended with a newline, the next line is whole,
 * and stderr reports the failure once and the recovery once. */
static void test_partial_write_then_recovery(void **state)
{
    (void)state;
    char path[64];
    assert_int_equal(tu_temp_path(path, sizeof path, "tsr-audit-XXXXXX"), 0);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    gw_audit *a = NULL;
    assert_int_equal(gw_audit_open(path, &a), 0);
    static const char first[] = "{\"n\":1}\n";
    static const char second[] = "{\"n\":2,\"pad\":\"0123456789012345678901234567890123456789\"}\n";
    static const char third[] = "{\"n\":3}\n";
    gw_audit_write(a, first, sizeof first - 1);
    assert_int_equal(gw_audit_failures(a), 0);

    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = (rlim_t)(sizeof first - 1 + 20); /* 20 bytes of the second line fit */
    void (*oldsig)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    struct capture c;
    capture_begin(&c);
    gw_audit_write(a, second, sizeof second - 1); /* 20 bytes, then EFBIG */
    gw_audit_write(a, third, sizeof third - 1);   /* not even the newline fits */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, oldsig);
    gw_audit_write(a, third, sizeof third - 1);
    char *err = capture_end(&c);
    assert_int_equal(gw_audit_failures(a), 2);
    assert_int_equal(count_of(err, "audit log write failed"), 1);
    assert_int_equal(count_of(err, "resumed after 2 lost lines"), 1);
    free(err);
    gw_audit_close(a);

    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char got[512];
    size_t n = fread(got, 1, sizeof got - 1, f);
    got[n] = '\0';
    fclose(f);
    unlink(path);
    char want[512];
    snprintf(want, sizeof want, "%s%.20s\n%s", first, second, third);
    assert_string_equal(got, want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_failures_full_disk),
        cmocka_unit_test(test_write_failures_broken_pipe),
        cmocka_unit_test(test_partial_write_then_recovery),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
