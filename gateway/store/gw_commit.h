/* Group commit of certificate records (docs/architecture.md, "Storage and
 * durability": every issued certificate is durably recorded before it is
 * returned).
 *
 * One committer thread owns one store connection. Callers queue records and
 * go on serving; the thread takes everything queued, writes it in ONE
 * transaction (one fsync, gw_store_cert_insert_batch) and then, for each
 * record, calls its `done` callback — only after the commit returned, so a
 * callback that answers a client never answers before the record is
 * durable. While one batch is being written the next one accumulates, so
 * the batch size follows the load and a lone record waits for nothing but
 * its own commit.
 *
 * Every submitted item gets exactly one `done` call: recorded (rc 0),
 * refused on its own (rc -1: TSR_E_STATE sandbox deleted, _NOTFOUND,
 * _EXISTS, _INPUT, _UNAUTH the certificate it renews was revoked), or failed with its whole batch (rc -1, TSR_E_IO ...:
 * nothing of the batch was written). gw_committer_stop commits what is
 * queued before the thread ends. */
#ifndef GW_COMMIT_H
#define GW_COMMIT_H

#include <stddef.h>

#include "gw_store.h"
#include "tsr_err.h"

typedef struct gw_committer gw_committer;
typedef struct gw_commit_item gw_commit_item;

/* On the committer thread, after the item's batch committed or failed. The
 * callback owns the item from then on (it may free it). msg describes a
 * failure ("" on success); it is valid during the call only. */
typedef void (*gw_commit_done_fn)(gw_commit_item *item, int rc, enum tsr_errcat cat,
                                  const char *msg);

struct gw_commit_item {
    gw_cert_rec rec;           /* what to record (revoked_at 0) */
    gw_commit_done_fn done;
    gw_commit_item *next;      /* the committer's queue */
};

/* Largest batch (one transaction); more queued records wait for the next. */
#define GW_COMMIT_MAX_BATCH 512

/* Start the thread. It takes `store` (opened by the caller, used only by the
 * committer thread from now on, closed by gw_committer_stop). */
TSR_WUR int gw_committer_start(gw_store *store, gw_committer **out);
/* Thread-safe. 0: queued, done will be called. -1 (TSR_E_STATE): the
 * committer is stopping; the item was not taken and done is not called. */
TSR_WUR int gw_committer_submit(gw_committer *c, gw_commit_item *item);
/* Commit everything queued, call every done, end the thread, close the
 * store, free. NULL is fine. Submitting concurrently with stop is allowed
 * (such a submit may fail). */
void gw_committer_stop(gw_committer *c);

/* Counters, for tests and the bench. */
typedef struct gw_commit_stats {
    unsigned long batches, records, max_batch, failed_batches;
} gw_commit_stats;
void gw_committer_stats(gw_committer *c, gw_commit_stats *out);

#endif
