#include "gw_revocation.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "tsr_strmap.h"

struct gw_revocations {
    pthread_rwlock_t lock;
    tsr_strmap *serials; /* serial hex -> malloc'd int64_t notAfter */
    atomic_uint_fast64_t generation;
};

int gw_revocations_new(gw_revocations **out)
{
    gw_revocations *r = calloc(1, sizeof *r);
    TSR_ENSURE(r != NULL, TSR_E_INTERNAL, "out of memory");
    if (tsr_strmap_new(&r->serials) != 0) {
        free(r);
        return -1;
    }
    pthread_rwlock_init(&r->lock, NULL);
    *out = r;
    return 0;
}

void gw_revocations_free(gw_revocations *r)
{
    if (r == NULL) return;
    tsr_strmap_free(r->serials, free);
    pthread_rwlock_destroy(&r->lock);
    free(r);
}

int gw_revocations_add(gw_revocations *r, const char *serial, int64_t not_after)
{
    TSR_ENSURE(serial != NULL && serial[0] != '\0' && strlen(serial) <= 40, TSR_E_INPUT,
               "bad serial");
    int64_t *value = malloc(sizeof *value);
    TSR_ENSURE(value != NULL, TSR_E_INTERNAL, "out of memory");
    *value = not_after;
    void *old = NULL;
    pthread_rwlock_wrlock(&r->lock);
    int rc = tsr_strmap_put(r->serials, serial, value, &old);
    if (rc == 0 && old == NULL) atomic_fetch_add(&r->generation, 1);
    pthread_rwlock_unlock(&r->lock);
    free(rc == 0 ? old : value);
    return rc;
}

bool gw_revocations_contains(gw_revocations *r, const char *serial)
{
    if (serial == NULL || serial[0] == '\0') return false;
    pthread_rwlock_rdlock(&r->lock);
    bool found = tsr_strmap_get(r->serials, serial) != NULL;
    pthread_rwlock_unlock(&r->lock);
    return found;
}

static int expired(void *arg, const char *key, void *value)
{
    (void)key;
    if (*(int64_t *)value >= *(const int64_t *)arg) return 0;
    free(value);
    return 1;
}

void gw_revocations_prune(gw_revocations *r, int64_t now)
{
    pthread_rwlock_wrlock(&r->lock);
    tsr_strmap_filter(r->serials, expired, &now);
    pthread_rwlock_unlock(&r->lock);
}

size_t gw_revocations_count(gw_revocations *r)
{
    pthread_rwlock_rdlock(&r->lock);
    size_t n = tsr_strmap_count(r->serials);
    pthread_rwlock_unlock(&r->lock);
    return n;
}

uint64_t gw_revocations_generation(gw_revocations *r)
{
    return atomic_load(&r->generation);
}

struct each_arg {
    int (*cb)(void *arg, const char *serial_hex, int64_t not_after);
    void *arg;
    int rc;
};

static int each_one(void *arg, const char *key, void *value)
{
    struct each_arg *a = arg;
    if (a->rc == 0) a->rc = a->cb(a->arg, key, *(const int64_t *)value);
    return 0;   /* never removes: safe under the read lock */
}

int gw_revocations_each(gw_revocations *r,
                        int (*cb)(void *arg, const char *serial_hex, int64_t not_after), void *arg)
{
    struct each_arg a = {.cb = cb, .arg = arg, .rc = 0};
    pthread_rwlock_rdlock(&r->lock);
    tsr_strmap_filter(r->serials, each_one, &a);
    pthread_rwlock_unlock(&r->lock);
    return a.rc;
}
