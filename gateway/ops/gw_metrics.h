/* Process-wide gateway metrics, rendered in the Prometheus text exposition
 * format (version 0.0.4) by gw_metrics_render().
 *
 * Every value is a C11 atomic in static storage: counting never locks and
 * never allocates, so any thread (transport workers, handlers, the store)
 * may count at any time, and the metrics listener (gw_metrics_server.h)
 * renders concurrently. One set per process, like a Prometheus client's
 * default registry; a process runs at most one gateway.
 *
 * Every label has a fixed, bounded set of values: an enum below, or the
 * method table registered once with gw_metrics_set_methods(). */
#ifndef GW_METRICS_H
#define GW_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gw_audit.h"
#include "gw_rpc.h"
#include "gw_server.h"
#include "tsr_err.h"

#define GW_METRICS_MAX_METHODS 64

/* tessera_certificates_issued_total{kind} */
enum gw_issue_kind {
    GW_ISSUE_CREATE = 0, /* a sandbox's first, at CreateSandbox */
    GW_ISSUE_RENEW,      /* RenewCertificate */
    GW_ISSUE_RESTART,    /* for a driver booting a sandbox again (tsr_driver_env.mint_identity) */
    GW_ISSUE_KIND_COUNT
};

/* tessera_forwarded_certificates_total{result}: what became of a request
 * carrying the proxy header (gw_forward.h). */
enum gw_forward_result {
    GW_FORWARD_ACCEPTED = 0,  /* from a trusted proxy, verified: a sandbox or user */
    GW_FORWARD_REJECTED,      /* from a trusted proxy, identifies nobody: UNAUTHENTICATED */
    GW_FORWARD_IGNORED,       /* from any other caller: ignored and logged */
    GW_FORWARD_RESULT_COUNT
};

void gw_metrics_cert_issued(enum gw_issue_kind kind);
void gw_metrics_certs_revoked(uint64_t n);
void gw_metrics_denial(enum gw_denial reason);
void gw_metrics_store_error(void);
void gw_metrics_audit_write_failure(void);
void gw_metrics_forward(enum gw_forward_result result);

/* gw_server_config.event: connections and handshake failures. */
void gw_metrics_server_event(void *app, enum gw_server_event ev);

/* Name the methods whose calls are counted: the same table (same order) the
 * server was given, so that a call's method index maps to its path. The
 * paths are not copied (they are static). Call once, before serving. */
TSR_WUR int gw_metrics_set_methods(const gw_method *methods, size_t n);
/* gw_server_config.call_done: one finished call of methods[method]. */
void gw_metrics_call_done(void *app, size_t method, enum gw_status status, int64_t handler_ns,
                          bool handler_ran);

/* The exposition text, malloc'd and NUL-terminated. */
TSR_WUR int gw_metrics_render(char **out, size_t *len);

/* Zero everything, forget the methods (tests). Not safe while counting. */
void gw_metrics_reset(void);

#endif
