#include "tsr_strmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { SLOT_EMPTY = 0, SLOT_USED, SLOT_DELETED };

struct slot {
    char *key;
    void *value;
    int state;
};

struct tsr_strmap {
    struct slot *slots;
    size_t cap;   /* power of two */
    size_t used;  /* SLOT_USED */
    size_t dirty; /* SLOT_USED + SLOT_DELETED */
};

static uint64_t hash_key(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

int tsr_strmap_new(tsr_strmap **out)
{
    tsr_strmap *m = calloc(1, sizeof *m);
    TSR_ENSURE(m != NULL, TSR_E_INTERNAL, "out of memory");
    m->cap = 64;
    m->slots = calloc(m->cap, sizeof *m->slots);
    if (m->slots == NULL) {
        free(m);
        return TSR_FAIL(TSR_E_INTERNAL, "out of memory");
    }
    *out = m;
    return 0;
}

void tsr_strmap_free(tsr_strmap *m, void (*free_value)(void *))
{
    if (m == NULL) return;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].state != SLOT_USED) continue;
        free(m->slots[i].key);
        if (free_value) free_value(m->slots[i].value);
    }
    free(m->slots);
    free(m);
}

/* The slot holding key, or (for_insert) the slot where it should go. */
static struct slot *probe(struct slot *slots, size_t cap, const char *key, int for_insert)
{
    size_t mask = cap - 1, i = (size_t)hash_key(key) & mask;
    struct slot *tomb = NULL;
    for (size_t n = 0; n < cap; n++, i = (i + 1) & mask) {
        struct slot *s = &slots[i];
        if (s->state == SLOT_EMPTY) return for_insert ? (tomb ? tomb : s) : NULL;
        if (s->state == SLOT_DELETED) {
            if (tomb == NULL) tomb = s;
        } else if (strcmp(s->key, key) == 0) {
            return s;
        }
    }
    return for_insert ? tomb : NULL;
}

static int rehash(tsr_strmap *m, size_t cap)
{
    struct slot *slots = calloc(cap, sizeof *slots);
    TSR_ENSURE(slots != NULL, TSR_E_INTERNAL, "out of memory");
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].state == SLOT_USED) *probe(slots, cap, m->slots[i].key, 1) = m->slots[i];
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    m->dirty = m->used;
    return 0;
}

void *tsr_strmap_get(const tsr_strmap *m, const char *key)
{
    struct slot *s = probe(m->slots, m->cap, key, 0);
    return s ? s->value : NULL;
}

int tsr_strmap_put(tsr_strmap *m, const char *key, void *value, void **old)
{
    if (old) *old = NULL;
    struct slot *s = probe(m->slots, m->cap, key, 0);
    if (s != NULL) {
        if (old) *old = s->value;
        s->value = value;
        return 0;
    }
    /* Keep the load (live + tombstones) under 3/4; grow only for live data. */
    if ((m->dirty + 1) * 4 > m->cap * 3)
        TSR_GUARD(rehash(m, (m->used + 1) * 2 > m->cap ? m->cap * 2 : m->cap));
    char *copy = strdup(key);
    TSR_ENSURE(copy != NULL, TSR_E_INTERNAL, "out of memory");
    s = probe(m->slots, m->cap, key, 1);
    if (s->state == SLOT_EMPTY) m->dirty++;
    s->key = copy;
    s->value = value;
    s->state = SLOT_USED;
    m->used++;
    return 0;
}

void *tsr_strmap_remove(tsr_strmap *m, const char *key)
{
    struct slot *s = probe(m->slots, m->cap, key, 0);
    if (s == NULL) return NULL;
    void *value = s->value;
    free(s->key);
    s->key = NULL;
    s->value = NULL;
    s->state = SLOT_DELETED;
    m->used--;
    return value;
}

size_t tsr_strmap_count(const tsr_strmap *m)
{
    return m->used;
}

void tsr_strmap_filter(tsr_strmap *m, int (*fn)(void *arg, const char *key, void *value),
                       void *arg)
{
    for (size_t i = 0; i < m->cap; i++) {
        struct slot *s = &m->slots[i];
        if (s->state != SLOT_USED || fn(arg, s->key, s->value) != 1) continue;
        free(s->key);
        s->key = NULL;
        s->value = NULL;
        s->state = SLOT_DELETED;
        m->used--;
    }
}
