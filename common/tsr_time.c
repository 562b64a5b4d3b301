#include "tsr_time.h"

#include <stdio.h>
#include <string.h>

#define MAX_DURATION_SECONDS (100LL * 366 * 24 * 3600)

int tsr_duration_parse(const char *text, int64_t *seconds)
{
    TSR_ENSURE(text != NULL && *text != '\0', TSR_E_INPUT, "empty duration");
    int64_t total = 0;
    const char *p = text;
    while (*p != '\0') {
        TSR_ENSURE(*p >= '0' && *p <= '9', TSR_E_INPUT,
                   "bad duration \"%s\": expected digits like 30s, 5m, 1h, 7d", text);
        int64_t n = 0;
        while (*p >= '0' && *p <= '9') {
            n = n * 10 + (*p - '0');
            TSR_ENSURE(n <= MAX_DURATION_SECONDS, TSR_E_INPUT, "duration \"%s\" is too long",
                       text);
            p++;
        }
        int64_t unit;
        switch (*p) {
        case 's': unit = 1; break;
        case 'm': unit = 60; break;
        case 'h': unit = 3600; break;
        case 'd': unit = 86400; break;
        default:
            return TSR_FAIL(TSR_E_INPUT, "bad duration \"%s\": each number needs a unit (s, m, h, d)",
                            text);
        }
        p++;
        TSR_ENSURE(n <= MAX_DURATION_SECONDS / unit, TSR_E_INPUT, "duration \"%s\" is too long",
                   text);
        total += n * unit;
        TSR_ENSURE(total <= MAX_DURATION_SECONDS, TSR_E_INPUT, "duration \"%s\" is too long", text);
    }
    TSR_ENSURE(total > 0, TSR_E_INPUT, "duration \"%s\" must be positive", text);
    *seconds = total;
    return 0;
}

void tsr_duration_format(int64_t seconds, char *out, size_t cap)
{
    static const struct { int64_t size; char unit; } units[] = {
        {86400, 'd'}, {3600, 'h'}, {60, 'm'}, {1, 's'},
    };
    size_t used = 0;
    out[0] = '\0';
    if (seconds <= 0) {
        snprintf(out, cap, "0s");
        return;
    }
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        int64_t n = seconds / units[i].size;
        if (n == 0) continue;
        seconds -= n * units[i].size;
        int w = snprintf(out + used, cap - used, "%lld%c", (long long)n, units[i].unit);
        if (w < 0 || (size_t)w >= cap - used) return;
        used += (size_t)w;
    }
}

int64_t tsr_now_unix(void)
{
    return (int64_t)time(NULL);
}

int64_t tsr_now_unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t tsr_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
