/* --version for every binary: the release, the build's `git describe` and
 * the OpenSSL it runs with (docs/operations.md, "Versions"). */
#ifndef TSR_VERSION_H
#define TSR_VERSION_H

#include <stdio.h>

/* The release number ("0.14.0") and the tree it was built from. */
const char *tsr_version(void);
const char *tsr_git_describe(void);

/* 1 when argv is exactly `PROG --version` (or `-V`). */
int tsr_version_requested(int argc, char *const *argv);

/* "PROG 0.14.0 (git v0.14.0-3-gabcdef0) OpenSSL 3.0.x ..." on `out`; 0. */
int tsr_version_print(FILE *out, const char *prog);

#endif
