#include "tu_fs.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int tu_rm_rf(const char *path)
{
    if (access(path, F_OK) != 0) return 0;
    return nftw(path, rm_one, 32, FTW_DEPTH | FTW_PHYS);
}

int tu_temp_path(char *buf, size_t cap, const char *name)
{
    const char *base = getenv("TMPDIR");
    if (base == NULL || base[0] == '\0') base = "/tmp";
    int n = snprintf(buf, cap, "%s/%s", base, name);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}
