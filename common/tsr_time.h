/* Durations ("90s", "5m", "1h30m", "365d") and clocks. */
#ifndef TSR_TIME_H
#define TSR_TIME_H

#include <stdint.h>
#include <time.h>

#include "tsr_err.h"

/* Parse a duration made of <digits><unit> groups, units s m h d. Positive,
 * at most 100 years; anything else (sign, spaces, fractions, no unit, empty,
 * overflow) is TSR_E_INPUT with the reason. */
TSR_WUR int tsr_duration_parse(const char *text, int64_t *seconds);

/* Format seconds as the shortest "1h30m"-style text. */
void tsr_duration_format(int64_t seconds, char *out, size_t cap);

int64_t tsr_now_unix(void);        /* wall clock, seconds */
int64_t tsr_now_unix_ms(void);     /* wall clock, milliseconds */
int64_t tsr_monotonic_ms(void);    /* for timeouts and rate limits */

#endif
