/* tsr_read_file: bounded whole-file reads of regular files, pipes, devices
 * and size-less /proc files. Refusals first. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "tsr_fs.h"
#include "tu_fs.h"

static char dir[256];

static int setup(void **state)
{
    (void)state;
    if (tu_temp_path(dir, sizeof dir, "tsr-fs-XXXXXX") != 0) return -1;
    return mkdtemp(dir) != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return tu_rm_rf(dir);
}

/* Deterministic content: byte i is a function of i. */
static void fill(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)('a' + (i * 7 + i / 251) % 26);
}

static void make_file(const char *path, size_t n)
{
    uint8_t *data = malloc(n + 1);
    assert_non_null(data);
    fill(data, n);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
    free(data);
}

static void expect_content(const uint8_t *buf, size_t len, size_t want)
{
    assert_int_equal(len, want);
    uint8_t *data = malloc(want + 1);
    assert_non_null(data);
    fill(data, want);
    assert_memory_equal(buf, data, want);
    assert_int_equal(buf[len], '\0');
    free(data);
}

static void test_refusals(void **state)
{
    (void)state;
    char path[512];
    uint8_t *buf = (uint8_t *)1;
    size_t len = 7;

    snprintf(path, sizeof path, "%s/missing", dir);
    assert_int_equal(tsr_read_file(path, 100, &buf, &len), -1);
    assert_int_equal(tsr_errcat(), TSR_E_NOTFOUND);

    assert_int_equal(tsr_read_file(dir, 100, &buf, &len), -1);
    assert_int_equal(tsr_errcat(), TSR_E_INPUT);

    /* Over the limit by its size, and by one byte. */
    static const struct {
        size_t size, max;
    } over[] = {{1, 0}, {101, 100}, {4097, 4096}, {10000, 4096}, {70000, 65536}};
    for (size_t i = 0; i < sizeof over / sizeof over[0]; i++) {
        snprintf(path, sizeof path, "%s/over%zu", dir, i);
        make_file(path, over[i].size);
        assert_int_equal(tsr_read_file(path, over[i].max, &buf, &len), -1);
        assert_int_equal(tsr_errcat(), TSR_E_LIMIT);
    }
    /* The outputs are untouched by a refusal. */
    assert_ptr_equal(buf, (uint8_t *)1);
    assert_int_equal(len, 7);

    /* A device that never ends, and one /proc file bigger than a tiny limit
     * (both without a size hint): refused at the limit, after growing. */
    assert_int_equal(tsr_read_file("/dev/zero", 100000, &buf, &len), -1);
    assert_int_equal(tsr_errcat(), TSR_E_LIMIT);
    assert_int_equal(tsr_read_file("/proc/self/status", 16, &buf, &len), -1);
    assert_int_equal(tsr_errcat(), TSR_E_LIMIT);
}

static void test_regular_sizes(void **state)
{
    (void)state;
    /* Around the first buffer (4 KiB), its doublings and the limit. */
    static const struct {
        size_t size, max;
    } cases[] = {
        {0, 0},       {0, 100},     {1, 1},         {100, 100},      {4095, 1 << 20},
        {4096, 4096}, {4097, 8192}, {8193, 1 << 20}, {100000, 100000}, {300000, 1 << 20},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/f%zu", dir, i);
        make_file(path, cases[i].size);
        uint8_t *buf = NULL;
        size_t len = 0;
        if (tsr_read_file(path, cases[i].max, &buf, &len) != 0) {
            print_error("size %zu max %zu: %s\n", cases[i].size, cases[i].max, tsr_errmsg());
            fail();
        }
        expect_content(buf, len, cases[i].size);
        free(buf);
    }
}

/* /proc files say size 0: the hint is wrong and the buffer must grow. */
static void test_proc_file_without_size(void **state)
{
    (void)state;
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(tsr_read_file("/proc/self/status", 1 << 20, &buf, &len), 0);
    assert_true(len > 100);
    assert_non_null(strstr((const char *)buf, "Pid:"));
    assert_int_equal(strlen((const char *)buf), len);
    free(buf);
}

struct writer {
    char path[512];
    size_t n;
    int rc;
};

static void *fifo_writer(void *p)
{
    struct writer *w = p;
    w->rc = -1;
    int fd = open(w->path, O_WRONLY | O_CLOEXEC); /* waits for the reader */
    if (fd < 0) return NULL;
    uint8_t *data = malloc(w->n + 1);
    if (data != NULL) {
        fill(data, w->n);
        size_t off = 0;
        while (off < w->n) {
            /* Small writes: the reader sees the data in many pieces. */
            size_t chunk = w->n - off < 3000 ? w->n - off : 3000;
            ssize_t r = write(fd, data + off, chunk);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break; /* EPIPE: the reader gave up at its limit */
            off += (size_t)r;
        }
        w->rc = off == w->n ? 0 : 1;
        free(data);
    }
    close(fd);
    return NULL;
}

/* A pipe has no size: read by growing, bounded by the limit. */
static void test_fifo(void **state)
{
    (void)state;
    static const struct {
        size_t n, max;
        int ok;
    } cases[] = {
        /* refusals first: more than the limit */
        {5000, 4999, 0},
        {200000, 65536, 0},
        /* accepted */
        {0, 100, 1},
        {4096, 4096, 1},
        {150000, 1 << 20, 1},
    };
    signal(SIGPIPE, SIG_IGN);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct writer w = {.n = cases[i].n};
        snprintf(w.path, sizeof w.path, "%s/fifo%zu", dir, i);
        assert_int_equal(mkfifo(w.path, 0600), 0);
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, fifo_writer, &w), 0);
        uint8_t *buf = NULL;
        size_t len = 0;
        int rc = tsr_read_file(w.path, cases[i].max, &buf, &len);
        assert_int_equal(pthread_join(th, NULL), 0);
        if (cases[i].ok) {
            if (rc != 0) print_error("fifo of %zu: %s\n", cases[i].n, tsr_errmsg());
            assert_int_equal(rc, 0);
            assert_int_equal(w.rc, 0);
            expect_content(buf, len, cases[i].n);
            free(buf);
        } else {
            assert_int_equal(rc, -1);
            assert_int_equal(tsr_errcat(), TSR_E_LIMIT);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_regular_sizes, setup, teardown),
        cmocka_unit_test(test_proc_file_without_size),
        cmocka_unit_test_setup_teardown(test_fifo, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
