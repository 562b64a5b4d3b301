/* A string-keyed hash map (open addressing, linear probing). Not locked:
 * callers own the synchronisation. Keys are copied; values are borrowed
 * pointers the caller manages. */
#ifndef TSR_STRMAP_H
#define TSR_STRMAP_H

#include <stddef.h>

#include "tsr_err.h"

typedef struct tsr_strmap tsr_strmap;

TSR_WUR int tsr_strmap_new(tsr_strmap **out);
/* free_value (may be NULL) is called on every remaining value. */
void tsr_strmap_free(tsr_strmap *m, void (*free_value)(void *));
void *tsr_strmap_get(const tsr_strmap *m, const char *key);
/* Insert or replace; the replaced value (or NULL) is returned in *old. */
TSR_WUR int tsr_strmap_put(tsr_strmap *m, const char *key, void *value, void **old);
/* Remove and return the value (NULL if absent). */
void *tsr_strmap_remove(tsr_strmap *m, const char *key);
size_t tsr_strmap_count(const tsr_strmap *m);
/* Visit every entry; when fn returns 1 the entry is removed (after fn has
 * disposed of its value). */
void tsr_strmap_filter(tsr_strmap *m, int (*fn)(void *arg, const char *key, void *value),
                       void *arg);

#endif
