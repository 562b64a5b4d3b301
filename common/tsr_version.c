#include "tsr_version.h"

#include <string.h>

#include <openssl/crypto.h>

/* TSR_VERSION and TSR_GIT_DESCRIBE come from the build (the Makefile writes
 * $(O)/gen/tsr_build.h, rewritten only when git describe changes). */
#include "tsr_build.h"

const char *tsr_version(void)
{
    return TSR_VERSION;
}

const char *tsr_git_describe(void)
{
    return TSR_GIT_DESCRIBE;
}

int tsr_version_requested(int argc, char *const *argv)
{
    return argc == 2 && (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0);
}

int tsr_version_print(FILE *out, const char *prog)
{
    /* OpenSSL_version(OPENSSL_VERSION) is the library actually loaded, which
     * can be newer than the headers this was compiled against. */
    fprintf(out, "%s %s (git %s; built with %s, running %s)\n", prog, TSR_VERSION,
            TSR_GIT_DESCRIBE, OPENSSL_VERSION_TEXT, OpenSSL_version(OPENSSL_VERSION));
    return fflush(out) == 0 ? 0 : 1;
}
