/* In-memory revocation set (serial hex -> notAfter), O(1) lookup, shared by
 * all workers. The store is the source of truth; this set is loaded from it
 * at start and updated after each durable revocation. */
#ifndef GW_REVOCATION_H
#define GW_REVOCATION_H

#include <stdbool.h>
#include <stdint.h>

#include "tsr_err.h"

typedef struct gw_revocations gw_revocations;

TSR_WUR int gw_revocations_new(gw_revocations **out);
void gw_revocations_free(gw_revocations *r);
TSR_WUR int gw_revocations_add(gw_revocations *r, const char *serial_hex, int64_t not_after);
bool gw_revocations_contains(gw_revocations *r, const char *serial_hex);
/* Forget serials whose certificates have expired (they can never verify). */
void gw_revocations_prune(gw_revocations *r, int64_t now);
size_t gw_revocations_count(gw_revocations *r);
/* Grows by one whenever a serial not yet in the set is added: a cache
 * derived from the set (the CRL) is stale when this differs. */
uint64_t gw_revocations_generation(gw_revocations *r);
/* Visit every serial (under the read lock: cb must not call back into the
 * set). A non-zero return from cb stops the walk; the result is that value. */
TSR_WUR int gw_revocations_each(gw_revocations *r,
                                int (*cb)(void *arg, const char *serial_hex, int64_t not_after),
                                void *arg);

#endif
