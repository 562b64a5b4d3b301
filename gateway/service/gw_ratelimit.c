#include "gw_ratelimit.h"

#include <pthread.h>
#include <stdlib.h>

#include "tsr_strmap.h"

/* A ring of the last `limit` event times per key. */
struct window {
    int count;
    int head;
    int64_t times[];
};

struct gw_ratelimit {
    pthread_mutex_t lock;
    int limit;
    int64_t window_ms;
    int64_t last_sweep_ms;
    tsr_strmap *keys;
};

int gw_ratelimit_new(int limit, int64_t window_ms, gw_ratelimit **out)
{
    TSR_ENSURE(limit > 0 && window_ms > 0, TSR_E_INPUT, "bad rate limit");
    gw_ratelimit *rl = calloc(1, sizeof *rl);
    TSR_ENSURE(rl != NULL, TSR_E_INTERNAL, "out of memory");
    if (tsr_strmap_new(&rl->keys) != 0) {
        free(rl);
        return -1;
    }
    rl->limit = limit;
    rl->window_ms = window_ms;
    pthread_mutex_init(&rl->lock, NULL);
    *out = rl;
    return 0;
}

void gw_ratelimit_free(gw_ratelimit *rl)
{
    if (rl == NULL) return;
    tsr_strmap_free(rl->keys, free);
    pthread_mutex_destroy(&rl->lock);
    free(rl);
}

/* Drop keys whose newest event has left the window, so memory stays
 * proportional to recently active keys. */
static int idle(void *arg, const char *key, void *value)
{
    (void)key;
    const gw_ratelimit *rl = arg;
    struct window *w = value;
    int newest = (w->head + w->count - 1 + rl->limit) % rl->limit;
    if (w->count > 0 && w->times[newest] > rl->last_sweep_ms - rl->window_ms) return 0;
    free(w);
    return 1;
}

bool gw_ratelimit_take(gw_ratelimit *rl, const char *key, int64_t now_ms)
{
    bool allowed = false;
    pthread_mutex_lock(&rl->lock);
    if (now_ms - rl->last_sweep_ms >= rl->window_ms) {
        rl->last_sweep_ms = now_ms;
        tsr_strmap_filter(rl->keys, idle, rl);
    }
    struct window *w = tsr_strmap_get(rl->keys, key);
    if (w == NULL) {
        w = calloc(1, sizeof *w + (size_t)rl->limit * sizeof w->times[0]);
        void *old = NULL;
        if (w == NULL || tsr_strmap_put(rl->keys, key, w, &old) != 0) {
            free(w);
            goto out;
        }
    }
    /* Forget events older than the window. */
    while (w->count > 0 && w->times[w->head] <= now_ms - rl->window_ms) {
        w->head = (w->head + 1) % rl->limit;
        w->count--;
    }
    if (w->count < rl->limit) {
        w->times[(w->head + w->count) % rl->limit] = now_ms;
        w->count++;
        allowed = true;
    }
out:
    pthread_mutex_unlock(&rl->lock);
    return allowed;
}
