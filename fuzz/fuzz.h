/* Shared by every libFuzzer harness (fuzz/fuzz_<name>.c) and by
 * fuzz/replay_main.c, which replays a corpus through a harness without
 * libFuzzer (the fuzzreplay_<name> binaries of `make test`).
 *
 * A harness parses untrusted bytes exactly as production does, frees
 * everything it allocated, and checks the invariants the code promises with
 * FUZZ_CHECK: a broken invariant aborts, so libFuzzer records the input as a
 * crash and the replay test fails on it. */
#ifndef TSR_FUZZ_H
#define TSR_FUZZ_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                  \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "%s:%d: invariant violated: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

/* Run a TSR_WUR function whose verdict the harness does not need (gcc
 * ignores a (void) cast on warn_unused_result). */
#define FUZZ_IGNORE(x)   \
    do {                 \
        if ((x) != 0) {  \
        }                \
    } while (0)

/* A bounded reader over the input: running out yields zeros / empty slices,
 * never an out-of-bounds read. */
typedef struct fuzz_in {
    const uint8_t *p;
    size_t len;
} fuzz_in;

static inline uint8_t fuzz_u8(fuzz_in *in)
{
    if (in->len == 0) return 0;
    uint8_t v = in->p[0];
    in->p++;
    in->len--;
    return v;
}

static inline uint16_t fuzz_u16(fuzz_in *in)
{
    uint16_t hi = fuzz_u8(in);
    return (uint16_t)(hi << 8 | fuzz_u8(in));
}

static inline uint32_t fuzz_u32(fuzz_in *in)
{
    uint32_t hi = fuzz_u16(in);
    return hi << 16 | fuzz_u16(in);
}

/* The next n bytes (fewer if the input ends). */
static inline fuzz_in fuzz_bytes(fuzz_in *in, size_t n)
{
    if (n > in->len) n = in->len;
    fuzz_in out = {in->p, n};
    in->p += n;
    in->len -= n;
    return out;
}

/* A slice with a 2-byte big-endian length prefix. */
static inline fuzz_in fuzz_lp16(fuzz_in *in)
{
    return fuzz_bytes(in, fuzz_u16(in));
}

/* A NUL-terminated malloc'd copy (the input may hold NULs; len says how
 * much is real). Aborts when memory runs out. */
static inline char *fuzz_strdup(fuzz_in s)
{
    char *out = malloc(s.len + 1);
    FUZZ_CHECK(out != NULL);
    for (size_t i = 0; i < s.len; i++) out[i] = (char)s.p[i];
    out[s.len] = '\0';
    return out;
}

/* A growing byte buffer, NUL-terminated past its length (aborts when
 * memory runs out). */
typedef struct fuzz_buf {
    uint8_t *p;
    size_t len, cap;
} fuzz_buf;

static inline void fuzz_buf_put(fuzz_buf *b, const void *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = 2 * (b->len + n + 1);
        b->p = realloc(b->p, b->cap);
        FUZZ_CHECK(b->p != NULL);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static inline void fuzz_buf_puts(fuzz_buf *b, const char *s)
{
    fuzz_buf_put(b, s, strlen(s));
}

/* For code that reads only from a path: `name` in a private temporary
 * directory (under TMPDIR), made at the first call and removed with the
 * file at exit. One per harness. */
static char fuzz_tmp_dir[PATH_MAX], fuzz_tmp_path[PATH_MAX];

static inline void fuzz_tmp_cleanup(void)
{
    if (fuzz_tmp_path[0] != '\0') unlink(fuzz_tmp_path);
    if (fuzz_tmp_dir[0] != '\0') rmdir(fuzz_tmp_dir);
}

static inline const char *fuzz_private_path(const char *name)
{
    if (fuzz_tmp_dir[0] != '\0') return fuzz_tmp_path;
    const char *tmp = getenv("TMPDIR");
    snprintf(fuzz_tmp_dir, sizeof fuzz_tmp_dir, "%s/tsr-fuzz.XXXXXX",
             tmp != NULL && tmp[0] ? tmp : "/tmp");
    FUZZ_CHECK(mkdtemp(fuzz_tmp_dir) != NULL);
    FUZZ_CHECK(snprintf(fuzz_tmp_path, sizeof fuzz_tmp_path, "%s/%s", fuzz_tmp_dir, name) <
               (int)sizeof fuzz_tmp_path);
    atexit(fuzz_tmp_cleanup);
    return fuzz_tmp_path;
}

#endif
