#include "tsr_err.h"

#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tsr_error {
    enum tsr_errcat cat;
    const char *file;
    int line;
    char msg[1024]; /* room for a driver's reason with a supervisor's last lines */
    char loc[128];
};

static _Thread_local struct tsr_error tls_error;

__attribute__((format(printf, 4, 0)))
static void record(enum tsr_errcat cat, const char *file, int line, const char *fmt, va_list ap)
{
    /* Format into a scratch buffer first: callers wrap the previous error,
     * TSR_FAIL(cat, "%s: %s", path, tsr_errmsg()), whose text is tls_error.msg
     * itself, and vsnprintf with overlapping source and destination is undefined. */
    char msg[sizeof tls_error.msg];
    vsnprintf(msg, sizeof msg, fmt, ap);
    tls_error.cat = cat;
    tls_error.file = file;
    tls_error.line = line;
    memcpy(tls_error.msg, msg, sizeof msg);
}

int tsr_fail_at(enum tsr_errcat cat, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    record(cat, file, line, fmt, ap);
    va_end(ap);
    return -1;
}

int tsr_fail_ossl_at(enum tsr_errcat cat, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    record(cat, file, line, fmt, ap);
    va_end(ap);
    unsigned long e = ERR_peek_last_error();
    if (e != 0) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        size_t used = strlen(tls_error.msg);
        snprintf(tls_error.msg + used, sizeof tls_error.msg - used, " (%s)", buf);
    }
    ERR_clear_error();
    return -1;
}

const char *tsr_errmsg(void) { return tls_error.msg; }
enum tsr_errcat tsr_errcat(void) { return tls_error.cat; }

const char *tsr_errloc(void)
{
    if (tls_error.file == NULL) return "";
    const char *base = strrchr(tls_error.file, '/');
    snprintf(tls_error.loc, sizeof tls_error.loc, "%s:%d", base ? base + 1 : tls_error.file,
             tls_error.line);
    return tls_error.loc;
}

const char *tsr_errcat_name(enum tsr_errcat cat)
{
    switch (cat) {
    case TSR_E_NONE: return "none";
    case TSR_E_INPUT: return "invalid input";
    case TSR_E_UNAUTH: return "unauthenticated";
    case TSR_E_DENIED: return "denied";
    case TSR_E_NOTFOUND: return "not found";
    case TSR_E_EXISTS: return "already exists";
    case TSR_E_LIMIT: return "limit exceeded";
    case TSR_E_STATE: return "wrong state";
    case TSR_E_IO: return "i/o error";
    case TSR_E_PROTO: return "protocol error";
    case TSR_E_INTERNAL: return "internal error";
    }
    return "unknown";
}

void tsr_err_clear(void)
{
    memset(&tls_error, 0, sizeof tls_error);
}

_Noreturn void tsr_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "tessera: assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}
