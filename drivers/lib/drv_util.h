/* Helpers shared by the driver plugins.
 *
 * Each driver .so is built from drivers/<name>/ sources plus drivers/lib/
 * (this file's drv_util.c, drv_local.c) and common/tsr_err.c, tsr_fs.c and
 * tsr_time.c, all position-independent with hidden visibility: only
 * tessera_driver_entry is exported (DRV_EXPORT).
 *
 * Internal functions follow the tsr_err convention (0/-1, error recorded in
 * thread-local state); an ABI operation converts a recorded error into its
 * one-line `err` text with drv_err_recorded() at the boundary. */
#ifndef DRV_UTIL_H
#define DRV_UTIL_H

#include <errno.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drv_abi.h"
#include "tsr_err.h"

#define DRV_EXPORT __attribute__((visibility("default")))

/* The one symbol a driver exports (defined once per driver). */
DRV_EXPORT const tsr_driver_ops *tessera_driver_entry(void);

/* Identity buffers larger than this are refused (a chain of a few
 * certificates is a few KiB). */
#define DRV_MAX_PEM (256u * 1024u)
#define DRV_MAX_ADDR 255u
#define DRV_MAX_TD 255u

/* ---- errors and logging ------------------------------------------------- */

__attribute__((format(printf, 3, 4))) int drv_errf(char *err, size_t cap,
                                                   const char *fmt, ...);

/* "<what> <id>: <recorded reason>" into err; returns -1. */
int drv_err_recorded(char *err, size_t cap, const char *what, const char *id);

/* As drv_err_recorded, for a sandbox this driver cannot run (check, and
 * create before it makes anything): TSR_DRIVER_INVALID. */
int drv_invalid_recorded(char *err, size_t cap, const char *what, const char *id);

/* As drv_err_recorded, for create and start: the ABI result is
 * TSR_DRIVER_PRECONDITION when the recorded error is TSR_E_STATE (what
 * retrying as is will not mend: an image missing in the engine, a sandbox
 * gone at once), else TSR_DRIVER_FAILED. */
int drv_fail_recorded(char *err, size_t cap, const char *what, const char *id);

typedef struct drv_logger {
    void (*log)(void *arg, const char *line);
    void *arg;
    const char *prefix; /* driver name */
} drv_logger;

__attribute__((format(printf, 2, 3))) void drv_logf(const drv_logger *lg,
                                                    const char *fmt, ...);

/* ---- options ---------------------------------------------------------------- */

/* Value of option `key`, or NULL when absent. */
const char *drv_option(const tsr_driver_env *env, const char *key);

/* Every option must be one the driver knows (a typo fails at start instead of
 * being silently ignored); each at most once; values present and printable. */
TSR_WUR int drv_options_check(const tsr_driver_env *env, const char *const *known);

/* Unsigned decimal option in [min, max]; `def` when absent. */
TSR_WUR int drv_option_u64(const tsr_driver_env *env, const char *key, uint64_t def,
                           uint64_t min, uint64_t max, uint64_t *out);

/* ---- names ---------------------------------------------------------------------- */

/* A sandbox id is a lowercase UUID (8-4-4-4-12 hex). It names directories and
 * containers, so nothing else is accepted. */
int drv_id_valid(const char *id);

int drv_td_valid(const char *td);

/* "HOST:PORT" as handed to a supervisor: printable, no spaces, has a port. */
int drv_addr_valid(const char *addr);

/* The gateway addresses a supervisor is given (replicas of one gateway,
 * docs/drivers.md "Gateway addresses"): "HOST:PORT[,HOST:PORT...]", each
 * drv_addr_valid, at most DRV_MAX_GATEWAYS, the whole at most DRV_MAX_ADDR
 * bytes. A single address is a list of one. */
#define DRV_MAX_GATEWAYS 16
int drv_addr_list_valid(const char *list);
/* The i-th entry (from 0) of a comma-separated list into out: 1, or 0 past
 * the end (or when it does not fit in cap). */
int drv_addr_list_item(const char *list, size_t i, char *out, size_t cap);

/* ---- identity --------------------------------------------------------------------- */

int drv_no_passphrase(char *buf, int size, int rwflag, void *u);

TSR_WUR int drv_pem_buf_ok(const char *what, const char *buf, size_t len);

/* The identity a driver is asked to place must be the sandbox's own, checked
 * before anything is written (fail closed; identity is never wrong):
 * sb->spiffe_id is exactly spiffe://<td>/sandbox/<id>, the first certificate
 * of cert_pem has exactly one URI SAN equal to it, key_pem is the private
 * key of that certificate, and bundle_pem holds at least one certificate. */
TSR_WUR int drv_identity_check(const char *td, const tsr_driver_sandbox *sb,
                               const tsr_driver_identity *ident);

/* ---- argv / envp ---------------------------------------------------------------- */

/* A NUL-terminated vector of mutable strings (what execve wants) whose
 * bytes live in one arena freed with the vector. */
#define DRV_ARGV_MAX 512   /* bwrap's ~80, the supervisor's, and a workload of up to 256 */
#define DRV_ARGV_ARENA 65536

typedef struct drv_argv {
    char *v[DRV_ARGV_MAX + 1];
    size_t n;
    size_t used;
    char arena[DRV_ARGV_ARENA];
} drv_argv;

drv_argv *drv_argv_new(void);

void drv_argv_free(drv_argv *a);

__attribute__((format(printf, 2, 3))) TSR_WUR int drv_argv_addf(drv_argv *a,
                                                                const char *fmt, ...);

TSR_WUR int drv_argv_add(drv_argv *a, const char *s);

/* Split `text` on spaces into separate arguments (empty pieces skipped). */
TSR_WUR int drv_argv_add_split(drv_argv *a, const char *text);

/* "--gateway ADDR" for each address of a list (drv_addr_list_valid). */
TSR_WUR int drv_argv_add_gateways(drv_argv *a, const char *list);

/* Option supervisor_args (every driver): extra supervisor arguments, split
 * on spaces, at most DRV_MAX_SUPERVISOR_ARGS of them, copied into buf (cap
 * bytes). What follows a "--" among them is the default workload, for
 * sandboxes created without a command (drv_argv_add_workload). Absent: "". */
#define DRV_MAX_SUPERVISOR_ARGS 32
TSR_WUR int drv_option_supervisor_args(const tsr_driver_env *env, char *buf,
                                       size_t cap);

/* The supervisor's arguments after its own flags: supervisor_args up to a
 * "--" (the driver-wide flags), then "--" and the workload: the sandbox's
 * own command when it has one, else what follows "--" in supervisor_args.
 * Each argument of command is one argv entry, whatever its bytes (never a
 * shell string). */
TSR_WUR int drv_argv_add_workload(drv_argv *a, const char *supervisor_args,
                                  const char *const *command, size_t n_command);

/* The workload a driver may be handed (the gateway checked it already):
 * at most TSR_DRIVER_MAX_COMMAND_ARGS arguments of TSR_DRIVER_MAX_COMMAND_BYTES
 * in all, none NULL, the first non-empty. */
TSR_WUR int drv_command_check(const tsr_driver_sandbox *sb);

/* ---- the supervisor's last lines ---------------------------------------------------- */

/* The last lines of text (len bytes) into out (cap bytes, NUL-terminated):
 * newest last, '\n' between them, at most max_lines, as many whole lines
 * as fit (the newest first). Only lines holding `only` when it is not NULL;
 * empty lines skipped; '\r' dropped; other control bytes and bytes that are
 * not ASCII shown as '?' (the gateway serves this as a proto3 string). */
void drv_tail_lines(const char *text, size_t len, size_t max_lines,
                    const char *only, char *out, size_t cap);

/* Lines (as drv_tail_lines gives them) as one line for an error message,
 * " | " between them, into out (cap bytes). */
void drv_one_line(const char *lines, char *out, size_t cap);

/* The exit status a line of text reports after its last `marker` (e.g.
 * "tessera-supervisor: exiting with code "): 1 with *code set, 0 when no
 * such line (or no number after it). */
int drv_exit_after(const char *text, const char *marker, int *code);

#endif
