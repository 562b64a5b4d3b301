#include "tsr_fs.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int fsync_parent_dir(const char *path)
{
    char copy[4096];
    TSR_ENSURE(strlen(path) < sizeof copy, TSR_E_LIMIT, "path too long: %s", path);
    strcpy(copy, path);
    const char *dir = dirname(copy);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    TSR_ENSURE(fd >= 0, TSR_E_IO, "open directory %s: %s", dir, strerror(errno));
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    TSR_ENSURE(rc == 0, TSR_E_IO, "fsync directory %s: %s", dir, strerror(saved));
    return 0;
}

int tsr_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
                          enum tsr_write_flags flags)
{
    char tmp[4096];
    int fd = -1, rc = -1;
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path);
    TSR_ENSURE(n > 0 && (size_t)n < sizeof tmp, TSR_E_LIMIT, "path too long: %s", path);

    /* mkostemp creates with 0600, so a key is never more visible than that. */
    fd = mkostemp(tmp, O_CLOEXEC);
    TSR_ENSURE(fd >= 0, TSR_E_IO, "create temp file for %s: %s", path, strerror(errno));
    TSR_TRY_ENSURE(fchmod(fd, mode) == 0, TSR_E_IO, "chmod %s: %s", tmp, strerror(errno));

    const unsigned char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        TSR_TRY_ENSURE(w > 0, TSR_E_IO, "write %s: %s", tmp, strerror(errno));
        p += w;
        left -= (size_t)w;
    }
    TSR_TRY_ENSURE(fsync(fd) == 0, TSR_E_IO, "fsync %s: %s", tmp, strerror(errno));
    TSR_TRY_ENSURE(close(fd) == 0, TSR_E_IO, "close %s: %s", tmp, strerror(errno));
    fd = -1;

    if (flags & TSR_WRITE_NOREPLACE) {
        /* link() fails with EEXIST instead of replacing: no race with a
         * concurrent writer of the same path. */
        if (link(tmp, path) != 0) {
            int saved = errno;
            (void)TSR_FAIL(saved == EEXIST ? TSR_E_EXISTS : TSR_E_IO, "%s: %s", path,
                           saved == EEXIST ? "already exists" : strerror(saved));
            goto out;
        }
        unlink(tmp);
    } else {
        TSR_TRY_ENSURE(rename(tmp, path) == 0, TSR_E_IO, "rename to %s: %s", path,
                       strerror(errno));
    }
    tmp[0] = '\0';
    TSR_TRY(fsync_parent_dir(path));
    rc = 0;
out:
    if (fd >= 0) close(fd);
    if (tmp[0] != '\0') unlink(tmp);
    return rc;
}

/* The first buffer of a read whose size is unknown (a pipe, a /proc file). */
#define READ_FIRST_CAP 4096

int tsr_read_file(const char *path, size_t max_len, uint8_t **out, size_t *len)
{
    int rc = -1;
    uint8_t *buf = NULL;
    /* cap: bytes buf may hold before its NUL; never more than max_len + 1,
     * the one byte past the limit that tells a file that is too large. */
    size_t cap = 0, got = 0;
    TSR_ENSURE(max_len < SIZE_MAX - 1, TSR_E_INPUT, "read %s: bad limit", path);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    TSR_ENSURE(fd >= 0, errno == ENOENT ? TSR_E_NOTFOUND : TSR_E_IO, "open %s: %s", path,
               strerror(errno));
    struct stat st;
    TSR_TRY_ENSURE(fstat(fd, &st) == 0, TSR_E_IO, "stat %s: %s", path, strerror(errno));
    TSR_TRY_ENSURE(!S_ISDIR(st.st_mode) && !S_ISBLK(st.st_mode), TSR_E_INPUT,
                   "%s is not a regular file or a pipe", path);
    if (S_ISREG(st.st_mode)) {
        TSR_TRY_ENSURE((uint64_t)st.st_size <= max_len, TSR_E_LIMIT,
                       "%s is %lld bytes, more than the %zu allowed", path,
                       (long long)st.st_size, max_len);
        /* The size hint and one byte more, to see the end (or growth) at once. */
        cap = (size_t)st.st_size + 1;
    }
    if (cap < READ_FIRST_CAP) cap = READ_FIRST_CAP;
    if (cap > max_len + 1) cap = max_len + 1;
    buf = malloc(cap + 1);
    TSR_TRY_ENSURE(buf != NULL, TSR_E_INTERNAL, "out of memory");
    for (;;) {
        if (got == cap) {
            /* Full, and still at most max_len: grow geometrically up to the limit. */
            size_t ncap = cap <= (max_len + 1) / 2 ? cap * 2 : max_len + 1;
            uint8_t *grown = realloc(buf, ncap + 1);
            TSR_TRY_ENSURE(grown != NULL, TSR_E_INTERNAL, "out of memory");
            buf = grown;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + got, cap - got);
        if (r < 0 && errno == EINTR) continue;
        TSR_TRY_ENSURE(r >= 0, TSR_E_IO, "read %s: %s", path, strerror(errno));
        if (r == 0) break;
        got += (size_t)r;
        /* A file that grew while read, or a pipe or device that says more. */
        TSR_TRY_ENSURE(got <= max_len, TSR_E_LIMIT, "%s is larger than %zu bytes", path,
                       max_len);
    }
    buf[got] = '\0';
    *out = buf;
    *len = got;
    buf = NULL;
    rc = 0;
out:
    free(buf);
    close(fd);
    return rc;
}

int tsr_mkdir_p(const char *path, mode_t mode)
{
    char copy[4096];
    size_t n = strlen(path);
    TSR_ENSURE(n > 0 && n < sizeof copy, TSR_E_INPUT, "bad directory path");
    memcpy(copy, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (copy[i] != '/' && copy[i] != '\0') continue;
        char saved = copy[i];
        copy[i] = '\0';
        if (mkdir(copy, mode) != 0 && errno != EEXIST)
            return TSR_FAIL(TSR_E_IO, "mkdir %s: %s", copy, strerror(errno));
        copy[i] = saved;
    }
    struct stat st;
    TSR_ENSURE(stat(path, &st) == 0 && S_ISDIR(st.st_mode), TSR_E_IO, "%s is not a directory",
               path);
    return 0;
}

int tsr_path_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

int tsr_path_join(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    TSR_ENSURE(n > 0 && (size_t)n < cap, TSR_E_LIMIT, "path too long: %s/%s", dir, name);
    return 0;
}

int tsr_rename_durable(const char *from, const char *to)
{
    TSR_ENSURE(rename(from, to) == 0, TSR_E_IO, "rename %s to %s: %s", from, to, strerror(errno));
    return fsync_parent_dir(to);
}
