/* File helpers for key material and configuration: bounded reads and atomic,
 * never-world-readable writes. */
#ifndef TSR_FS_H
#define TSR_FS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tsr_err.h"

enum tsr_write_flags {
    TSR_WRITE_REPLACE = 0,
    TSR_WRITE_NOREPLACE = 1, /* fail with TSR_E_EXISTS if the target exists */
};

/* Write atomically: a temp file in the same directory, created with `mode`
 * from the start (O_EXCL, fchmod past the umask), fsync, rename over `path`,
 * fsync the directory. Readers see the old file or the new one, never a
 * partial one; a key file is never readable by others, even briefly. */
TSR_WUR int tsr_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
                                  enum tsr_write_flags flags);

/* Read a whole file of at most `max_len` bytes into a fresh buffer
 * (NUL-terminated past `*len` for convenience). A regular file's size is the
 * first buffer's size; a pipe, character device or /proc file (no useful
 * size) is read in a buffer that doubles from 4 KiB. Either way never more
 * than max_len + 1 bytes are held: larger, or grown past the limit while
 * read -> TSR_E_LIMIT. Directories and block devices -> TSR_E_INPUT. Opening
 * a FIFO waits for its writer, as open(2) does. */
TSR_WUR int tsr_read_file(const char *path, size_t max_len, uint8_t **out, size_t *len);

/* rename(2), then fsync of the target's directory. */
TSR_WUR int tsr_rename_durable(const char *from, const char *to);

/* Create `path` and missing parents with `mode`; existing dirs are left alone. */
TSR_WUR int tsr_mkdir_p(const char *path, mode_t mode);

/* 1 if path exists (any type), 0 if not. */
int tsr_path_exists(const char *path);

/* Join into `out` (size `cap`); TSR_E_LIMIT if it does not fit. */
TSR_WUR int tsr_path_join(char *out, size_t cap, const char *dir, const char *name);

#endif
