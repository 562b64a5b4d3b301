/* File-system helpers shared by the unit tests. */
#ifndef TU_FS_H
#define TU_FS_H

#include <stddef.h>

/* Remove a directory tree (no symlinks followed); 0 if gone or never there. */
int tu_rm_rf(const char *path);

/* "<$TMPDIR or /tmp>/<name>" into buf (e.g. a mkdtemp template): tests keep
 * their scratch files where the test run says (tests/run.sh gives each run
 * its own TMPDIR and checks it is empty at the end). -1 if it does not fit. */
int tu_temp_path(char *buf, size_t cap, const char *name);

#endif
