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
 * JSON text, each line one JSON object (read with jansson here too: what is
 * checked is the framing and the classification, not JSON itself) with
 * exactly one of the members QMP, return, error, event: the greeting is
 * accepted exactly when it is one such line with QMP and nothing after it;
 * a command succeeds exactly when, among the first 64 complete lines, a
 * return line comes after nothing but event lines (a line with a NUL byte,
 * a line that is not such an object, an error or a greeting first: the
 * answer is refused). */
#include "drivers/vm/drv_vm.c"

#include <jansson.h>
#include <stdbool.h>

#include "fuzz/fuzz.h"

#define MAX_ANSWER 65000

enum ref_kind { REF_BAD, REF_GREETING, REF_RETURN, REF_ERROR, REF_EVENT };

/* One line (without its newline) as QMP: REF_BAD unless it is one JSON
 * object with exactly one of the four members. */
static enum ref_kind ref_line(const uint8_t *p, size_t n)
{
    static const char *const keys[] = {"QMP", "return", "error", "event"};
    static const enum ref_kind kinds[] = {REF_GREETING, REF_RETURN, REF_ERROR, REF_EVENT};
    if (memchr(p, '\0', n) != NULL) return REF_BAD;
    json_t *j = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, NULL);
    enum ref_kind kind = REF_BAD;
    int found = 0;
    for (size_t i = 0; json_is_object(j) && i < 4; i++) {
        if (json_object_get(j, keys[i]) != NULL) {
            kind = kinds[i];
            found++;
        }
    }
    json_decref(j);
    return found == 1 ? kind : REF_BAD;
}

static bool ref_greeting(fuzz_in g)
{
    const uint8_t *nl = memchr(g.p, '\n', g.len);
    if (nl == NULL || (size_t)(nl - g.p) + 1 != g.len || g.len > 4095) return false;
    return ref_line(g.p, (size_t)(nl - g.p)) == REF_GREETING;
}

static bool ref_answer(fuzz_in a)
{
    const uint8_t *p = a.p, *end = a.p + a.len;
    for (int lines = 0; lines < 64; lines++) {
        const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL) return false;
        enum ref_kind k = ref_line(p, (size_t)(nl - p));
        if (k == REF_RETURN) return true;
        if (k != REF_EVENT) return false;
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
