/* The revocation feed of a shared PostgreSQL store: how a gateway learns the
 * revocations other gateways commit (docs/operations.md, "Replicas on
 * PostgreSQL").
 *
 * Every revocation is numbered in commit order in the database
 * (`revocations`, written by a trigger in the revoking transaction, which
 * holds the store's write lock) and announced by NOTIFY at commit. The feed
 * is one thread with its own connection: LISTEN, then a catch-up read of
 * every revocation numbered above the last one it saw -- on each
 * notification and at least every GW_REVFEED_POLL_MS without one, so a
 * missed notification delays a revocation by at most that. After a lost
 * connection it reconnects, LISTENs and catches up before it counts as
 * current again.
 *
 * gw_revfeed_current() tells whether the feed caught up within
 * GW_REVFEED_FRESH_MS: while it does not, the gateway cannot know whether a
 * certificate was revoked elsewhere, and the dispatcher refuses every call
 * UNAVAILABLE (gw_authz.c). */
#ifndef GW_REVFEED_H
#define GW_REVFEED_H

#include <stdbool.h>
#include <stdint.h>

#include "tsr_err.h"

#define GW_REVFEED_POLL_MS 200
#define GW_REVFEED_FRESH_MS 1500
#define GW_REVFEED_STALE_MESSAGE "revocation status unknown: the database is unreachable"

typedef struct gw_revfeed gw_revfeed;

/* For a store locator of PostgreSQL (gw_store.h): connect, LISTEN, read
 * every revocation whose certificate has not expired (add(arg, serial,
 * not_after) for each), and start the thread; *out = NULL for a sqlite
 * store (one gateway: its own revocations are all there are). `add` is
 * called from the thread and must be thread-safe. */
TSR_WUR int gw_revfeed_start(const char *locator,
                             int (*add)(void *arg, const char *serial, int64_t not_after),
                             void *arg, gw_revfeed **out);
void gw_revfeed_stop(gw_revfeed *f);                    /* NULL is fine */
/* true for NULL (no feed needed) or a feed that caught up within
 * GW_REVFEED_FRESH_MS. */
bool gw_revfeed_current(const gw_revfeed *f);

#endif
