/* Sandbox state from the drivers (gw_state.h). */
#include "gw_state.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ca_spiffe.h"
#include "gw_config.h"
#include "gw_driver.h"
#include "tsr_strmap.h"
#include "tsr_time.h"

/* Entries not refreshed for this long are dropped (deleted sandboxes). */
#define PRUNE_AFTER_MS (10 * 60 * 1000)
#define PAGE 500

struct entry {
    int64_t checked_ms;  /* when a refresh last asked the driver (monotonic) */
    int creating;        /* a CreateSandbox is still running */
    int failing;         /* the last refresh failed (logged once) */
};

/* A driver that failed to answer, and when. */
struct backoff {
    char driver[33];
    int64_t failed_ms;
};

struct gw_states {
    pthread_mutex_t lock;
    tsr_strmap *map;     /* sandbox id -> struct entry */
    struct backoff backoff[16];
};

int gw_states_new(gw_states **out)
{
    gw_states *st = calloc(1, sizeof *st);
    TSR_ENSURE(st != NULL, TSR_E_INTERNAL, "out of memory");
    if (pthread_mutex_init(&st->lock, NULL) != 0) {
        free(st);
        return TSR_FAIL(TSR_E_INTERNAL, "pthread_mutex_init failed");
    }
    if (tsr_strmap_new(&st->map) != 0) {
        pthread_mutex_destroy(&st->lock);
        free(st);
        return -1;
    }
    *out = st;
    return 0;
}

void gw_states_free(gw_states *st)
{
    if (st == NULL) return;
    tsr_strmap_free(st->map, free);
    pthread_mutex_destroy(&st->lock);
    free(st);
}

/* The entry of id, made when missing; NULL when memory ran out. Caller
 * holds the lock. */
static struct entry *entry_of(gw_states *st, const char *id)
{
    struct entry *e = tsr_strmap_get(st->map, id);
    if (e != NULL) return e;
    e = calloc(1, sizeof *e);
    void *old = NULL;
    if (e == NULL || tsr_strmap_put(st->map, id, e, &old) != 0) {
        free(e);
        tsr_err_clear();
        return NULL;
    }
    return e;
}

int gw_states_creating(gw_states *st, const char *sandbox_id)
{
    TSR_ASSERT(pthread_mutex_lock(&st->lock) == 0);
    struct entry *e = entry_of(st, sandbox_id);
    if (e != NULL) e->creating = 1;
    (void)pthread_mutex_unlock(&st->lock);
    TSR_ENSURE(e != NULL, TSR_E_INTERNAL, "out of memory");
    return 0;
}

void gw_states_created(gw_states *st, const char *sandbox_id)
{
    TSR_ASSERT(pthread_mutex_lock(&st->lock) == 0);
    struct entry *e = tsr_strmap_get(st->map, sandbox_id);
    if (e != NULL) e->creating = 0;
    (void)pthread_mutex_unlock(&st->lock);
}

void gw_states_forget(gw_states *st, const char *sandbox_id)
{
    TSR_ASSERT(pthread_mutex_lock(&st->lock) == 0);
    free(tsr_strmap_remove(st->map, sandbox_id));
    (void)pthread_mutex_unlock(&st->lock);
}

const char *gw_state_name(enum tsr_driver_state state)
{
    switch (state) {
    case TSR_DRIVER_STATE_CREATED: return "pending";
    case TSR_DRIVER_STATE_RUNNING: return "running";
    case TSR_DRIVER_STATE_STOPPED: return "stopped";
    case TSR_DRIVER_STATE_FAILED:
    case TSR_DRIVER_STATE_UNKNOWN: return "failed";
    }
    return "failed";
}

/* The backoff slot of a driver (caller holds the lock); NULL when full. */
static struct backoff *backoff_of(gw_states *st, const char *driver)
{
    for (size_t i = 0; i < sizeof st->backoff / sizeof st->backoff[0]; i++) {
        struct backoff *b = &st->backoff[i];
        if (strcmp(b->driver, driver) == 0) return b;
        if (b->driver[0] == '\0') {
            snprintf(b->driver, sizeof b->driver, "%s", driver);
            return b;
        }
    }
    return NULL;
}

/* Claim a refresh of id: 1 when this caller should ask the driver. */
static int claim(gw_states *st, const char *id, const char *driver, int64_t max_age_ms,
                 int64_t now)
{
    int go = 0;
    TSR_ASSERT(pthread_mutex_lock(&st->lock) == 0);
    struct entry *e = entry_of(st, id);
    struct backoff *b = backoff_of(st, driver);
    int resting = max_age_ms > 0 && b != NULL && b->failed_ms != 0 &&
                  now - b->failed_ms < GW_STATE_DRIVER_BACKOFF_MS;
    if (e != NULL && !e->creating && !resting &&
        (max_age_ms == 0 || e->checked_ms == 0 || now - e->checked_ms >= max_age_ms)) {
        e->checked_ms = now;
        go = 1;
    }
    (void)pthread_mutex_unlock(&st->lock);
    return go;
}

/* Record whether the driver answered about id; 1 when that changed. */
static int note_failing(gw_states *st, const char *id, const char *driver, int failing)
{
    int changed = 0;
    TSR_ASSERT(pthread_mutex_lock(&st->lock) == 0);
    struct entry *e = tsr_strmap_get(st->map, id);
    if (e != NULL) {
        changed = e->failing != failing;
        e->failing = failing;
    }
    struct backoff *b = backoff_of(st, driver);
    if (b != NULL) b->failed_ms = failing ? tsr_monotonic_ms() : 0;
    (void)pthread_mutex_unlock(&st->lock);
    return changed;
}

static int is_terminal(const char *state)
{
    return strcmp(state, "stopped") == 0 || strcmp(state, "failed") == 0;
}

bool gw_sandbox_owned(const gw_app *app, const gw_sandbox_rec *rec)
{
    return strcmp(rec->owner, app->replica) == 0;
}

void gw_sandbox_teardown(gw_app *app, gw_store *store, const gw_sandbox_rec *rec)
{
    gw_driver *drv = app->drivers != NULL ? gw_drivers_find(app->drivers, rec->driver) : NULL;
    if (drv == NULL || gw_driver_destroy_async(app->drivers, drv, rec->id) != 0) {
        fprintf(stderr, "tessera-gateway: sandbox %s: %s\n", rec->id,
                drv == NULL ? "its driver is not loaded" : tsr_errmsg());
        tsr_err_clear();
        return; /* still due: the reconciler tries again */
    }
    if (gw_store_teardown_done(store, rec->id) != 0) {
        fprintf(stderr, "tessera-gateway: sandbox %s: %s\n", rec->id, tsr_errmsg());
        tsr_err_clear();
    }
}

/* Deleted sandboxes of this replica not torn down yet (deleted on another
 * replica, or before a crash): replicas on one database only; a store of
 * one gateway tears down at the delete. */
static int teardown_pass(gw_app *app, gw_store *store)
{
    if (app->replica[0] == '\0' || app->drivers == NULL) return 0;
    gw_sandbox_rec *rows = NULL;
    size_t n = 0;
    TSR_GUARD(gw_store_teardowns(store, app->replica, PAGE, &rows, &n));
    for (size_t i = 0; i < n; i++) {
        gw_states_forget(app->states, rows[i].id);
        gw_sandbox_teardown(app, store, &rows[i]);
    }
    gw_store_free_sandboxes(rows, n);
    return 0;
}

int gw_state_refresh(gw_app *app, gw_store *store, gw_sandbox_rec *rec, int64_t max_age_ms)
{
    if (rec->deleted_at != 0 || app->states == NULL || app->drivers == NULL) return 0;
    /* Only the replica whose driver runs it can ask that driver. */
    if (!gw_sandbox_owned(app, rec)) return 0;
    if (!claim(app->states, rec->id, rec->driver, max_age_ms, tsr_monotonic_ms())) return 0;

    tsr_driver_status st;
    memset(&st, 0, sizeof st);
    /* The last lines are read once, when the sandbox ends: a sandbox known
     * to have ended keeps the ones recorded then. */
    st.want_detail = !is_terminal(rec->state);
    gw_driver *drv = gw_drivers_find(app->drivers, rec->driver);
    if (drv == NULL || gw_driver_status(drv, rec->id, &st) != 0) {
        if (note_failing(app->states, rec->id, rec->driver, 1))
            fprintf(stderr, "tessera-gateway: sandbox %s: its state stays %s: %s\n", rec->id,
                    rec->state, tsr_errmsg());
        tsr_err_clear();
        return 1;
    }
    (void)note_failing(app->states, rec->id, rec->driver, 0);
    const char *name = gw_state_name(st.state);
    if (strcmp(name, rec->state) == 0) return 1;

    bool exited = false;
    int code = 0;
    const char *detail = "";
    char unknown[160];
    if (st.state == TSR_DRIVER_STATE_UNKNOWN) {
        snprintf(unknown, sizeof unknown,
                 "the %s driver has no such sandbox (removed outside Tessera?)", rec->driver);
        detail = unknown;
    } else if (st.state == TSR_DRIVER_STATE_STOPPED || st.state == TSR_DRIVER_STATE_FAILED) {
        if (st.want_detail) {
            exited = st.exited != 0;
            code = st.exit_code;
            detail = st.detail;
        } else { /* stopped <-> failed: keep how it ended */
            exited = rec->exited;
            code = rec->exit_code;
            detail = NULL;
        }
    }
    if (gw_store_sandbox_set_status(store, rec->id, name, exited, code, detail) != 0) {
        if (tsr_errcat() != TSR_E_NOTFOUND) /* NOTFOUND: deleted meanwhile */
            fprintf(stderr, "tessera-gateway: sandbox %s: %s\n", rec->id, tsr_errmsg());
        tsr_err_clear();
        return 1;
    }
    char how[48] = "";
    if (exited) snprintf(how, sizeof how, " (exit status %d)", code);
    fprintf(stderr, "tessera-gateway: sandbox %s: %s -> %s%s\n", rec->id, rec->state, name, how);
    snprintf(rec->state, sizeof rec->state, "%s", name);
    rec->exited = exited;
    rec->exit_code = exited ? code : 0;
    return 1;
}

static int prune_old(void *arg, const char *key, void *value)
{
    (void)key;
    const struct entry *e = value;
    int64_t now = *(const int64_t *)arg;
    if (e->creating || now - e->checked_ms < PRUNE_AFTER_MS) return 0;
    free(value);
    return 1;
}

int gw_state_reconcile(gw_app *app, gw_store *store, int64_t max_age_ms, size_t *count)
{
    char after[CA_UUID_LEN + 1] = "";
    size_t total = 0, n = 0;
    do {
        gw_sandbox_rec *rows = NULL;
        n = 0;
        TSR_GUARD(gw_store_sandbox_list(store, after[0] ? after : NULL, PAGE, &rows, &n));
        for (size_t i = 0; i < n; i++) (void)gw_state_refresh(app, store, &rows[i], max_age_ms);
        if (n > 0) snprintf(after, sizeof after, "%s", rows[n - 1].id);
        total += n;
        gw_store_free_sandboxes(rows, n);
    } while (n == PAGE);
    TSR_GUARD(teardown_pass(app, store));
    int64_t now = tsr_monotonic_ms();
    TSR_ASSERT(pthread_mutex_lock(&app->states->lock) == 0);
    tsr_strmap_filter(app->states->map, prune_old, &now);
    (void)pthread_mutex_unlock(&app->states->lock);
    if (count != NULL) *count = total;
    return 0;
}

/* ---- the reconciler thread ------------------------------------------------------- */

struct gw_reconciler {
    gw_app *app;
    int64_t period_ms;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int quit;
};

static void *reconcile_thread(void *arg)
{
    gw_reconciler *r = arg;
    gw_store *store = NULL;
    for (;;) {
        TSR_ASSERT(pthread_mutex_lock(&r->lock) == 0);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += r->period_ms / 1000;
        until.tv_nsec += (r->period_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (!r->quit && pthread_cond_timedwait(&r->wake, &r->lock, &until) == 0) {
        }
        int quit = r->quit;
        (void)pthread_mutex_unlock(&r->lock);
        if (quit) break;
        /* Its own connection, opened again after a failure. */
        if (store == NULL && gw_store_open(r->app->cfg->store_path, r->app->keyring, &store) != 0) {
            fprintf(stderr, "tessera-gateway: state reconcile: %s\n", tsr_errmsg());
            continue;
        }
        if (gw_state_reconcile(r->app, store, GW_STATE_MAX_AGE_MS, NULL) != 0) {
            fprintf(stderr, "tessera-gateway: state reconcile: %s\n", tsr_errmsg());
            gw_store_close(store);
            store = NULL;
        }
    }
    gw_store_close(store);
    return NULL;
}

int gw_reconciler_start(gw_app *app, int64_t period_ms, gw_reconciler **out)
{
    gw_reconciler *r = calloc(1, sizeof *r);
    TSR_ENSURE(r != NULL, TSR_E_INTERNAL, "out of memory");
    r->app = app;
    r->period_ms = period_ms > 0 ? period_ms : GW_STATE_RECONCILE_MS;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int ok = pthread_mutex_init(&r->lock, NULL) == 0;
    if (ok && pthread_cond_init(&r->wake, &ca) != 0) {
        pthread_mutex_destroy(&r->lock);
        ok = 0;
    }
    pthread_condattr_destroy(&ca);
    if (!ok) {
        free(r);
        return TSR_FAIL(TSR_E_INTERNAL, "state reconcile: cannot make its lock");
    }
    if (pthread_create(&r->thread, NULL, reconcile_thread, r) != 0) {
        pthread_cond_destroy(&r->wake);
        pthread_mutex_destroy(&r->lock);
        free(r);
        return TSR_FAIL(TSR_E_INTERNAL, "state reconcile: cannot start its thread");
    }
    *out = r;
    return 0;
}

void gw_reconciler_stop(gw_reconciler *r)
{
    if (r == NULL) return;
    TSR_ASSERT(pthread_mutex_lock(&r->lock) == 0);
    r->quit = 1;
    pthread_cond_broadcast(&r->wake);
    (void)pthread_mutex_unlock(&r->lock);
    pthread_join(r->thread, NULL);
    pthread_cond_destroy(&r->wake);
    pthread_mutex_destroy(&r->lock);
    free(r);
}
