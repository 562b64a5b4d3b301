/* QEMU's QMP socket as the vm driver reads it: the greeting
 * (vm_qmp_greeting) and a command's answer among events (vm_qmp_exec, the
 * line reader under them: vm_qmp_line). The driver is a plugin with hidden
 * symbols and these are static functions behind QEMU: the harness includes
 * the driver's source (as tests/unit/test_drv_vm.c does) and plays QEMU on a
 * socket pair.
 *
 * Input: [u16 len][greeting] then what QEMU sends after the command (at
 * most 65,000 bytes are used: the reader's 64 KiB buffer never fills, so
 * the reference below needs no model of read sizes). The greeting is
 * written first (and the stream ended at once if it has no newline: no
 * wait for more); the answer after the greeting was accepted, then the end
 * of the stream.
 *
 * Invariants, against a reference that reads the bytes as QMP's lines of
 * JSON text: the greeting is accepted exactly when it is one line naming
 * "QMP" with nothing after it; a command succeeds exactly when, among the
 * first 64 complete lines, a line with "return" comes before any line with
 * "error" (the same line: success), and no line up to it holds a NUL byte
 * (not JSON: the answer is refused). */
#include "drivers/vm/drv_vm.c"

#include <stdbool.h>

#include "fuzz/fuzz.h"

#define MAX_ANSWER 65000

static bool has(const uint8_t *p, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(p + i, needle, k) == 0) return true;
    return false;
}

static bool ref_greeting(fuzz_in g)
{
    const uint8_t *nl = memchr(g.p, '\n', g.len);
    if (nl == NULL || (size_t)(nl - g.p) + 1 != g.len || g.len > 4095) return false;
    size_t n = (size_t)(nl - g.p);
    return memchr(g.p, '\0', n) == NULL && has(g.p, n, "\"QMP\"");
}

static bool ref_answer(fuzz_in a)
{
    const uint8_t *p = a.p, *end = a.p + a.len;
    for (int lines = 0; lines < 64; lines++) {
        const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL) return false;
        size_t n = (size_t)(nl - p);
        if (memchr(p, '\0', n) != NULL) return false;
        if (has(p, n, "\"return\"")) return true;
        if (has(p, n, "\"error\"")) return false;
        p = nl + 1;
    }
    return false;
}

static void write_all(int fd, fuzz_in b)
{
    size_t off = 0;
    while (off < b.len) {
        ssize_t n = write(fd, b.p + off, b.len - off);
        FUZZ_CHECK(n > 0);
        off += (size_t)n;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = {data, size};
    fuzz_in greeting = fuzz_lp16(&in);
    fuzz_in answer = fuzz_bytes(&in, MAX_ANSWER);
    int sv[2];
    FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    write_all(sv[1], greeting);
    if (memchr(greeting.p, '\n', greeting.len) == NULL) FUZZ_CHECK(shutdown(sv[1], SHUT_WR) == 0);
    tsr_err_clear();
    int rc = vm_qmp_greeting(sv[0]);
    FUZZ_CHECK((rc == 0) == ref_greeting(greeting));
    if (rc == 0) {
        write_all(sv[1], answer);
        FUZZ_CHECK(shutdown(sv[1], SHUT_WR) == 0);
        rc = vm_qmp_exec(sv[0], "{\"execute\":\"qmp_capabilities\"}\n");
        FUZZ_CHECK((rc == 0) == ref_answer(answer));
    }
    if (rc != 0) FUZZ_CHECK(tsr_errmsg()[0] != '\0' && tsr_errcat() != TSR_E_INTERNAL);
    close(sv[0]);
    close(sv[1]);
    return 0;
}
