/* Per-key sliding-window rate limit (renewals per sandbox). */
#ifndef GW_RATELIMIT_H
#define GW_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

#include "tsr_err.h"

typedef struct gw_ratelimit gw_ratelimit;

/* At most `limit` events per `window_ms` for each key. */
TSR_WUR int gw_ratelimit_new(int limit, int64_t window_ms, gw_ratelimit **out);
void gw_ratelimit_free(gw_ratelimit *rl);
/* Record an event for key at now_ms if allowed; false (nothing recorded) if
 * the key is at its limit or memory ran out (fail closed). */
bool gw_ratelimit_take(gw_ratelimit *rl, const char *key, int64_t now_ms);

#endif
