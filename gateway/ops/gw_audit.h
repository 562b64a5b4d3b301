/* Audit log: one JSON object per line for every issuance, renewal,
 * revocation and denial. Never a key, a CSR or a credential. */
#ifndef GW_AUDIT_H
#define GW_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "gw_rpc.h"
#include "tsr_err.h"

typedef struct gw_audit gw_audit;

/* "-" writes to stderr; a path is opened O_APPEND, 0600. */
TSR_WUR int gw_audit_open(const char *path, gw_audit **out);
void gw_audit_close(gw_audit *audit);
/* Open the path again (after logrotate moved the file away): later lines go
 * to the new file. The old file stays in use if the open fails. A no-op for
 * "-". Called on SIGHUP (docs/operations.md, "Rotating the audit log"). */
TSR_WUR int gw_audit_reopen(gw_audit *audit);

/* Append one formatted line (ending in '\n') under the audit lock. A
 * failed or short write never blocks or fails the caller: partial writes and
 * EINTR are retried, a failure is counted (gw_audit_failures and
 * tessera_audit_write_failures_total), the first failure of a burst is
 * reported on stderr once, and the next successful write reports the
 * recovery. A line cut short by a failure is ended with '\n' before the next
 * one, so every later line stays whole. */
void gw_audit_write(gw_audit *audit, const char *line, size_t len);
/* Lines lost or cut short since open. */
uint64_t gw_audit_failures(gw_audit *audit);

/* event: "issue", "renew", "revoke", "delete", "deny", ... decision: "allow" | "deny". */
void gw_audit_event(const gw_call_ctx *ctx, const char *event, const char *sandbox,
                    const char *decision, const char *reason, const char *serial);
/* Why a call was denied, as counted by tessera_denials_total{reason}
 * (a bounded set; the audit line carries the precise reason text). */
enum gw_denial {
    GW_DENY_UNAUTHENTICATED = 0, /* no identity, or one that identifies nobody */
    GW_DENY_PERMISSION,          /* kind or role may not call this */
    GW_DENY_CROSS_SANDBOX,       /* a sandbox naming another sandbox */
    GW_DENY_RATE_LIMIT,
    GW_DENY_BAD_REQUEST,         /* e.g. a CSR that fails its checks */
    GW_DENY_DELETED_SANDBOX,     /* renewal for a deleted sandbox */
    GW_DENY_COUNT
};
const char *gw_denial_name(enum gw_denial d);   /* "cross_sandbox", ... */

/* Audit a denial (event "deny") and count it. */
void gw_audit_denial(const gw_call_ctx *ctx, enum gw_denial kind, const char *sandbox,
                     const char *reason);

/* A line that could not even be built (out of memory): counted and
 * reported like a failed write. */
void gw_audit_write_failed(gw_audit *a, int err);

#endif
