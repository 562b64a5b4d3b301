/* A sandbox's state follows what its driver reports (docs/architecture.md,
 * "Sandbox state"): GetSandbox and ListSandboxes refresh the sandboxes they
 * show from the driver (with a short cache), a reconciler thread walks every
 * live sandbox periodically, and the start-up re-attach does the same once.
 * A refresh writes the store only when the state changed; a sandbox whose
 * create is still running is left to the create. */
#ifndef GW_STATE_H
#define GW_STATE_H

#include <stdbool.h>
#include <stdint.h>

#include "drv_abi.h"
#include "gw_app.h"
#include "gw_store.h"
#include "tsr_err.h"

/* get/list refresh a sandbox at most this often (the cache). */
#define GW_STATE_MAX_AGE_MS 1000
/* The reconciler's period. */
#define GW_STATE_RECONCILE_MS 5000
/* ListSandboxes asks the driver about at most this many sandboxes per page;
 * the others show their last reconciled state. */
#define GW_STATE_LIST_REFRESH_MAX 100
/* After a driver failed to answer, nobody asks it again this soon: an engine
 * that hangs costs one timeout, not one per sandbox of a list. */
#define GW_STATE_DRIVER_BACKOFF_MS 5000

typedef struct gw_states gw_states;

TSR_WUR int gw_states_new(gw_states **out);
void gw_states_free(gw_states *st);

/* A create in flight: refreshes leave the sandbox alone until
 * gw_states_created (0, or -1 out of memory). */
TSR_WUR int gw_states_creating(gw_states *st, const char *sandbox_id);
void gw_states_created(gw_states *st, const char *sandbox_id);
/* Forget a deleted sandbox. */
void gw_states_forget(gw_states *st, const char *sandbox_id);

/* Refresh rec (as read from `store`) from its driver unless that was done
 * within max_age_ms (0: now), and record a change in the store; rec is
 * updated. A live sandbox only. Never fails the caller: a driver that cannot
 * answer is logged (once, until it answers again) and the stored state
 * stays. Returns 1 when the driver was asked, 0 when not. */
int gw_state_refresh(gw_app *app, gw_store *store, gw_sandbox_rec *rec, int64_t max_age_ms);

/* Is rec run by this replica's driver? (Always on a store of one gateway.) */
bool gw_sandbox_owned(const gw_app *app, const gw_sandbox_rec *rec);
/* Tell rec's driver to remove it and record that it is no longer due (a
 * failure is logged; it stays due for the reconciler). */
void gw_sandbox_teardown(gw_app *app, gw_store *store, const gw_sandbox_rec *rec);

/* The gateway state name of a driver state ("pending", "running",
 * "stopped", "failed"; UNKNOWN: "failed"). */
const char *gw_state_name(enum tsr_driver_state state);

/* The reconciler thread: its own store connection, every live sandbox
 * every period_ms. Stopped (and joined) by gw_reconciler_stop, which the
 * gateway calls before it unloads the drivers. */
typedef struct gw_reconciler gw_reconciler;
TSR_WUR int gw_reconciler_start(gw_app *app, int64_t period_ms, gw_reconciler **out);
void gw_reconciler_stop(gw_reconciler *r);

/* One pass over every live sandbox (the reconciler's, and the start-up
 * re-attach's with max_age_ms 0). *count: sandboxes seen. */
TSR_WUR int gw_state_reconcile(gw_app *app, gw_store *store, int64_t max_age_ms, size_t *count);

#endif
