/* stderr lines with a time and a level, or journald priorities under
 * systemd (docs/operations.md, "Logs").
 *
 * tsr_log_stderr_init() replaces the process's `stderr` stream by one that
 * prefixes every line it writes:
 *   - under systemd (JOURNAL_STREAM names the descriptor stderr is): the
 *     sd-daemon priority prefix "<N>" only; journald stamps the time itself;
 *   - otherwise: "2026-12-07T07:10:00.123Z warning " (UTC, milliseconds).
 * The level of a line: a line that starts with "<N>" (N in 0..7, the
 * sd-daemon convention) has priority N (the prefix is consumed); otherwise a
 * line with "warning" in it is a warning (4), else info (6).
 * Whatever writes to descriptor 2 directly (sanitizers) is not touched. */
#ifndef TSR_LOG_H
#define TSR_LOG_H

#include <stddef.h>

enum tsr_log_mode { TSR_LOG_PLAIN = 0, TSR_LOG_TIMESTAMP, TSR_LOG_JOURNAL };

/* The mode tsr_log_stderr_init would choose (JOURNAL_STREAM matching fd 2). */
enum tsr_log_mode tsr_log_detect(void);

/* 0, or -1 when the stream cannot be made (stderr is left as it was). */
int tsr_log_stderr_init(void);

/* Prefix one complete line (without its '\n') for `mode` at `now_ms` into
 * out (NUL-terminated, cut to cap). Returns the length written. Exposed for
 * the unit test. */
size_t tsr_log_format(enum tsr_log_mode mode, long long now_ms, const char *line, size_t len,
                      char *out, size_t cap);

#endif
