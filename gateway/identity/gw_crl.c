/* CRL cache: see gw_crl.h. */
#include "gw_crl.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca_crl.h"
#include "gw_config.h"
#include "gw_revocation.h"
#include "gw_store.h"
#include "tsr_fs.h"
#include "tsr_strmap.h"
#include "tsr_time.h"

#define CRL_BACKDATE 60   /* seconds: thisUpdate = now - 60 s, as leaves' notBefore */

typedef struct known {
    int64_t revoked_at;
    int reason;
} known;

struct gw_crl_cache {
    pthread_mutex_t lock;
    char number_path[4096];
    uint64_t last_number;      /* persisted */
    gw_crl *crl;               /* current; NULL before the first build */
    uint64_t pki_generation;   /* of the snapshot it was signed for */
    uint64_t rev_generation;   /* of the revocation set it lists */
    int64_t refresh_at;        /* half its validity: sign a new one from then on */
    tsr_strmap *known;         /* serial -> known: what the store said */
};

void gw_crl_release(gw_crl *crl)
{
    if (crl == NULL || atomic_fetch_sub(&crl->refs, 1) != 1) return;
    free(crl->pem);
    free(crl);
}

int gw_crl_number_parse(const uint8_t *text, size_t len, uint64_t *out)
{
    /* Digits, then at most one newline, nothing else (a NUL byte ends no
     * number: the file is text); the value leaves room for the next number
     * (last + 1 must not wrap to 0). */
    size_t n = len > 0 && text[len - 1] == '\n' ? len - 1 : len;
    TSR_ENSURE(len <= GW_CRL_NUMBER_MAX && n > 0, TSR_E_INPUT, "not a CRL number");
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        TSR_ENSURE(text[i] >= '0' && text[i] <= '9', TSR_E_INPUT, "not a CRL number");
        unsigned d = (unsigned)(text[i] - '0');
        TSR_ENSURE(v <= (UINT64_MAX - 1 - d) / 10, TSR_E_INPUT, "CRL number out of range");
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int read_number(const char *path, uint64_t *out)
{
    *out = 0;
    if (!tsr_path_exists(path)) return 0;
    uint8_t *buf = NULL;
    size_t len = 0;
    TSR_GUARD(tsr_read_file(path, GW_CRL_NUMBER_MAX, &buf, &len));
    int rc = gw_crl_number_parse(buf, len, out);
    free(buf);
    TSR_ENSURE(rc == 0, TSR_E_INPUT,
               "%s: not a CRL number (delete it: numbering restarts from the clock)", path);
    return 0;
}

int gw_crl_cache_new(const char *number_path, gw_crl_cache **out)
{
    gw_crl_cache *c = calloc(1, sizeof *c);
    TSR_ENSURE(c != NULL, TSR_E_INTERNAL, "out of memory");
    if (strlen(number_path) >= sizeof c->number_path || read_number(number_path, &c->last_number) != 0 ||
        tsr_strmap_new(&c->known) != 0) {
        if (strlen(number_path) >= sizeof c->number_path)
            (void)TSR_FAIL(TSR_E_INPUT, "CRL number path too long");
        free(c);
        return -1;
    }
    snprintf(c->number_path, sizeof c->number_path, "%s", number_path);
    pthread_mutex_init(&c->lock, NULL);
    *out = c;
    return 0;
}

void gw_crl_cache_free(gw_crl_cache *c)
{
    if (c == NULL) return;
    gw_crl_release(c->crl);
    tsr_strmap_free(c->known, free);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* ---- building ----------------------------------------------------------- */

typedef struct collect {
    ca_crl_entry *v;
    size_t n, cap;
    int64_t now;
} collect;

static int collect_one(void *arg, const char *serial, int64_t not_after)
{
    collect *col = arg;
    if (not_after < col->now) return 0;   /* expired: may be left out */
    if (col->n == col->cap) {
        size_t ncap = col->cap ? col->cap * 2 : 64;
        TSR_ENSURE(ncap <= CA_CRL_MAX_ENTRIES, TSR_E_LIMIT, "more than %d revoked certificates",
                   CA_CRL_MAX_ENTRIES);
        ca_crl_entry *nv = realloc(col->v, ncap * sizeof *nv);
        TSR_ENSURE(nv != NULL, TSR_E_INTERNAL, "out of memory");
        col->v = nv;
        col->cap = ncap;
    }
    ca_crl_entry *e = &col->v[col->n++];
    memset(e, 0, sizeof *e);
    snprintf(e->serial_hex, sizeof e->serial_hex, "%s", serial);
    return 0;
}

static int reason_of(const char *text)
{
    if (strcmp(text, "sandbox deleted") == 0) return CA_CRL_CESSATION_OF_OPERATION;
    return ca_crl_reason_from_text(text);
}

/* Revocation time and reason of each entry: remembered, else from the store.
 * `fresh` receives exactly the entries listed now (expired ones fall away). */
static int fill_details(gw_crl_cache *c, gw_store *store, collect *col, int64_t now,
                        tsr_strmap *fresh)
{
    for (size_t i = 0; i < col->n; i++) {
        ca_crl_entry *e = &col->v[i];
        known *k = tsr_strmap_remove(c->known, e->serial_hex);
        if (k == NULL) {
            k = malloc(sizeof *k);
            TSR_ENSURE(k != NULL, TSR_E_INTERNAL, "out of memory");
            gw_cert_rec rec;
            int got = gw_store_cert_get(store, e->serial_hex, &rec);
            if (got == 0 && rec.revoked_at > 0) {
                k->revoked_at = rec.revoked_at;
                k->reason = reason_of(rec.revocation_reason);
            } else if (got == 0 || tsr_errcat() == TSR_E_NOTFOUND) {
                /* Revoked in memory, unknown to the store (cannot happen:
                 * the store is written first). Listed, never left out. */
                k->revoked_at = now;
                k->reason = CA_CRL_REASON_NONE;
            } else {
                free(k);
                return -1;   /* store failure, recorded */
            }
        }
        e->revoked_at = k->revoked_at;
        e->reason = k->reason;
        void *old = NULL;
        if (tsr_strmap_put(fresh, e->serial_hex, k, &old) != 0) {
            free(k);
            return -1;
        }
        free(old);
    }
    return 0;
}

static int persist_number(const gw_crl_cache *c, uint64_t number)
{
    char text[32];
    int n = snprintf(text, sizeof text, "%" PRIu64 "\n", number);
    return tsr_write_file_atomic(c->number_path, text, (size_t)n, 0600, TSR_WRITE_REPLACE);
}

static int merge_back(void *arg, const char *serial, void *value)
{
    void *old = NULL;
    if (tsr_strmap_put(arg, serial, value, &old) != 0) free(value);
    free(old);
    return 1;
}

static int rebuild(gw_crl_cache *c, const gw_pki *pki, gw_revocations *rev, gw_store *store,
                   int64_t now, uint64_t rev_gen)
{
    int rc = -1;
    collect col = {.now = now};
    tsr_strmap *fresh = NULL;
    X509_CRL *x = NULL;
    gw_crl *crl = NULL;

    TSR_TRY(tsr_strmap_new(&fresh));
    TSR_TRY(gw_revocations_each(rev, collect_one, &col));
    TSR_TRY(fill_details(c, store, &col, now, fresh));

    uint64_t number = c->last_number + 1;
    uint64_t floor_ms = (uint64_t)tsr_now_unix_ms();
    if (number < floor_ms) number = floor_ms;
    /* Replicas on one database number their CRLs in one sequence there. */
    bool shared = false;
    uint64_t shared_number = 0;
    if (store != NULL) TSR_TRY(gw_store_crl_number_next(store, number, &shared_number, &shared));
    if (shared) number = shared_number;
    int64_t validity = pki->cfg->crl_validity;
    ca_crl_params prm = {.number = number, .this_update = now - CRL_BACKDATE,
                         .next_update = now + validity};
    TSR_TRY(ca_crl_build(pki->issuer, col.v, col.n, &prm, &x));
    TSR_TRY_ENSURE((crl = calloc(1, sizeof *crl)) != NULL, TSR_E_INTERNAL, "out of memory");
    atomic_init(&crl->refs, 1);
    TSR_TRY(ca_crl_to_pem(x, &crl->pem, &crl->len));
    crl->number = number;
    crl->this_update = prm.this_update;
    crl->next_update = prm.next_update;
    crl->entries = col.n;
    /* Monotonic across restarts: by the clock floor when the number is
     * the current time in ms, else (CRLs signed faster than one per ms)
     * only by the file, which must then be durable before the CRL is
     * served. A failed write (a full disk) is not fatal in the first case:
     * GetTrustBundle keeps working while the store cannot write. */
    if (persist_number(c, number) != 0 && number > floor_ms) goto out;
    c->last_number = number;

    gw_crl_release(c->crl);
    c->crl = crl;
    crl = NULL;
    c->pki_generation = pki->generation;
    c->rev_generation = rev_gen;
    c->refresh_at = now + validity / 2;
    tsr_strmap_free(c->known, free);
    c->known = fresh;
    fresh = NULL;
    rc = 0;
out:
    if (fresh != NULL) {
        /* Keep what was learned from the store for the next attempt. */
        tsr_strmap_filter(fresh, merge_back, c->known);
        tsr_strmap_free(fresh, free);
    }
    gw_crl_release(crl);
    X509_CRL_free(x);
    free(col.v);
    return rc;
}

int gw_crl_current(gw_crl_cache *c, const gw_pki *pki, gw_revocations *rev, gw_store *store,
                   int64_t now, gw_crl **out)
{
    if (now == 0) now = tsr_now_unix();
    *out = NULL;
    TSR_ASSERT(pthread_mutex_lock(&c->lock) == 0);
    /* Read the generation before listing: a revocation racing the build
     * makes the next call build again rather than be missed. */
    uint64_t rev_gen = gw_revocations_generation(rev);
    int rc = 0;
    bool stale = c->crl == NULL || c->pki_generation != pki->generation ||
                 c->rev_generation != rev_gen || now >= c->refresh_at;
    if (stale) rc = rebuild(c, pki, rev, store, now, rev_gen);
    if (rc == 0) {
        atomic_fetch_add(&c->crl->refs, 1);
        *out = c->crl;
    }
    (void)pthread_mutex_unlock(&c->lock);
    return rc;
}
