/* The CRL number file (gateway/identity/gw_crl.h): the last cRLNumber the gateway
 * signed, read back at start so numbers keep growing across restarts. A
 * damaged or planted file must not make the next number smaller, wrap, or
 * be read as something it does not say. gw_crl_number_parse on the bytes,
 * and gw_crl_cache_new on a file holding them (in a private temporary
 * directory).
 *
 * Invariants, against a reference written from gw_crl.h: accepted exactly
 * when the bytes are decimal digits, at least one, optionally followed by
 * one newline, nothing else (no NUL, sign, space), at most
 * GW_CRL_NUMBER_MAX bytes, and the value leaves room for the next number
 * (below UINT64_MAX); the value is the digits'. The file is read the same
 * way. */
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "fuzz/fuzz.h"
#include "gw_crl.h"


/* The reference: true with *v when the bytes say a usable number. */
static bool reference(const uint8_t *p, size_t n, uint64_t *v)
{
    if (n > 0 && p[n - 1] == '\n') n--;
    if (n == 0 || n + 1 > GW_CRL_NUMBER_MAX + 1) return false;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return false;
        unsigned d = (unsigned)(p[i] - '0');
        if (x > (UINT64_MAX - 1 - d) / 10) return false; /* the next number must fit */
        x = x * 10 + d;
    }
    *v = x;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_private_path("crl-number");
    uint64_t want = 0, got = 0;
    bool ok = size <= GW_CRL_NUMBER_MAX && reference(data, size, &want);
    tsr_err_clear();
    int rc = gw_crl_number_parse(data, size, &got);
    FUZZ_CHECK((rc == 0) == ok);
    if (rc == 0) FUZZ_CHECK(got == want);
    else FUZZ_CHECK(tsr_errcat() == TSR_E_INPUT);

    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(size == 0 || write(fd, data, size) == (ssize_t)size);
    FUZZ_CHECK(close(fd) == 0);
    gw_crl_cache *c = NULL;
    rc = gw_crl_cache_new(path, &c);
    FUZZ_CHECK((rc == 0) == ok && (c != NULL) == ok);
    gw_crl_cache_free(c);
    return 0;
}
