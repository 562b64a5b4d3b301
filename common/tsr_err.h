/* Tessera's one fallible-return convention.
 *
 * Every fallible function returns int: 0 on success, -1 on failure, and is
 * declared TSR_WUR so the compiler insists the result is checked. The failure
 * itself (category, detail string, file:line of where it was raised) lives in
 * thread-local state, read with tsr_errmsg()/tsr_errcat(). Library code only
 * records errors; binaries decide what to log.
 *
 * Two styles, never mixed within one function:
 *   TSR_GUARD / TSR_ENSURE / TSR_GUARD_OSSL       return -1 at once
 *   TSR_TRY   / TSR_TRY_ENSURE / TSR_TRY_OSSL     goto out (rc stays -1)
 */
#ifndef TSR_ERR_H
#define TSR_ERR_H

#include <stddef.h>

#define TSR_WUR __attribute__((warn_unused_result))

/* Categories map to gRPC status codes in exactly one place (gw_status.c). */
enum tsr_errcat {
    TSR_E_NONE = 0,
    TSR_E_INPUT,       /* malformed input              -> INVALID_ARGUMENT   */
    TSR_E_UNAUTH,      /* identity missing or invalid  -> UNAUTHENTICATED    */
    TSR_E_DENIED,      /* identity known, not allowed  -> PERMISSION_DENIED  */
    TSR_E_NOTFOUND,    /* named object does not exist  -> NOT_FOUND          */
    TSR_E_EXISTS,      /* object already exists        -> ALREADY_EXISTS     */
    TSR_E_LIMIT,       /* size or rate limit           -> RESOURCE_EXHAUSTED */
    TSR_E_STATE,       /* wrong state for the request  -> FAILED_PRECONDITION*/
    TSR_E_IO,          /* storage / file / network I/O -> UNAVAILABLE        */
    TSR_E_PROTO,       /* peer broke a wire protocol   -> INTERNAL / close   */
    TSR_E_INTERNAL,    /* bug or "cannot happen"       -> INTERNAL           */
};

/* Record a failure (replacing any earlier one) and return -1. */
int tsr_fail_at(enum tsr_errcat cat, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Same, appending the newest OpenSSL error-queue entry; clears the queue. */
int tsr_fail_ossl_at(enum tsr_errcat cat, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

const char *tsr_errmsg(void);        /* detail string, "" if none */
enum tsr_errcat tsr_errcat(void);
const char *tsr_errloc(void);        /* "file.c:123" of the recorded failure */
const char *tsr_errcat_name(enum tsr_errcat cat);
void tsr_err_clear(void);

#define TSR_FAIL(cat, ...) tsr_fail_at((cat), __FILE__, __LINE__, __VA_ARGS__)
#define TSR_FAIL_OSSL(cat, ...) tsr_fail_ossl_at((cat), __FILE__, __LINE__, __VA_ARGS__)

#define TSR_GUARD(x)                                                           \
    do {                                                                       \
        if ((x) != 0) return -1;                                               \
    } while (0)
#define TSR_ENSURE(cond, cat, ...)                                             \
    do {                                                                       \
        if (!(cond)) return TSR_FAIL((cat), __VA_ARGS__);                      \
    } while (0)
/* OpenSSL convention: 1 is success, anything else a failure. */
#define TSR_GUARD_OSSL(x, cat, ...)                                            \
    do {                                                                       \
        if ((x) != 1) return TSR_FAIL_OSSL((cat), __VA_ARGS__);                \
    } while (0)

#define TSR_TRY(x)                                                             \
    do {                                                                       \
        if ((x) != 0) goto out;                                                \
    } while (0)
#define TSR_TRY_ENSURE(cond, cat, ...)                                         \
    do {                                                                       \
        if (!(cond)) {                                                         \
            (void)TSR_FAIL((cat), __VA_ARGS__);                                \
            goto out;                                                          \
        }                                                                      \
    } while (0)
#define TSR_TRY_OSSL(x, cat, ...)                                              \
    do {                                                                       \
        if ((x) != 1) {                                                        \
            (void)TSR_FAIL_OSSL((cat), __VA_ARGS__);                           \
            goto out;                                                          \
        }                                                                      \
    } while (0)

/* "Cannot happen" checks that stay on in release builds (fail closed). */
#define TSR_ASSERT(cond)                                                       \
    do {                                                                       \
        if (!(cond)) tsr_assert_fail(#cond, __FILE__, __LINE__);               \
    } while (0)
_Noreturn void tsr_assert_fail(const char *expr, const char *file, int line);

#endif
