/* A sandbox's state follows its driver (gateway/service/gw_state.c), against the
 * in-memory driver plugin (tests/drivers/mem) loaded as the gateway loads
 * drivers: a change is recorded, an unchanged state is not rewritten, the
 * cache, a create in flight and a deleted sandbox are left alone, an
 * unknown sandbox is `failed` with the reason, a driver that cannot answer
 * keeps the stored state and rests, the reconciler thread walks them all. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gw_app.h"
#include "gw_config.h"
#include "gw_driver.h"
#include "gw_state.h"
#include "gw_store.h"
#include "tsr_time.h"
#include "tu_fs.h"
#include "tu_suppki.h"

#define TD "tessera.local"
#define SB_A "aaaaaaaa-0000-4000-8000-000000000001"
#define SB_B "aaaaaaaa-0000-4000-8000-000000000002"
#define SB_NOPE "aaaaaaaa-0000-4000-8000-000000000003"
#define SB_NOPE2 "aaaaaaaa-0000-4000-8000-000000000004"

typedef struct fixture {
    char *dir;
    gw_config cfg;
    gw_app app;
    gw_store *store;
} fixture;

static void add_row(fixture *f, const char *id, const char *name, const char *driver,
                    const char *state)
{
    gw_sandbox_rec r;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "%s", id);
    snprintf(r.name, sizeof r.name, "%s", name);
    snprintf(r.driver, sizeof r.driver, "%s", driver);
    snprintf(r.state, sizeof r.state, "%s", state);
    r.created_at = tsr_now_unix();
    assert_int_equal(gw_store_sandbox_create(f->store, &r, "version: 1\n", NULL, 0, NULL), 0);
}

/* Create and start id in the mem driver, as a CreateSandbox would. */
static void launch(fixture *f, const char *id)
{
    char spiffe[128];
    snprintf(spiffe, sizeof spiffe, "spiffe://%s/sandbox/%s", TD, id);
    tsr_driver_sandbox sb = {id, "state-test", spiffe, "", NULL, 0};
    tsr_driver_identity ident = {"cert", 4, "key", 3, "bundle", 6};
    gw_driver *d = gw_drivers_find(f->app.drivers, "mem");
    assert_non_null(d);
    assert_int_equal(gw_driver_launch(d, &sb, &ident), 0);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->dir = tu_scratch_dir("state");
    assert_non_null(f->dir);
    char drivers[PATH_MAX], so[PATH_MAX], link[PATH_MAX + 16], data[PATH_MAX];
    const char *build = getenv("TSR_BUILD_DIR");
    snprintf(so, sizeof so, "%s/tests/drivers/mem.so", build != NULL ? build : "build");
    snprintf(drivers, sizeof drivers, "%s/drivers", f->dir);
    snprintf(data, sizeof data, "%s/data", f->dir);
    assert_int_equal(mkdir(drivers, 0700), 0);
    assert_int_equal(mkdir(data, 0700), 0);
    char real[PATH_MAX];
    assert_non_null(realpath(so, real));
    snprintf(link, sizeof link, "%s/mem.so", drivers);
    assert_int_equal(symlink(real, link), 0);

    snprintf(f->cfg.trust_domain, sizeof f->cfg.trust_domain, "%s", TD);
    snprintf(f->cfg.store_path, sizeof f->cfg.store_path, "%s/tessera.db", f->dir);
    f->app.cfg = &f->cfg;
    assert_int_equal(gw_states_new(&f->app.states), 0);
    gw_drivers_env env = {
        .dir = drivers, .data_dir = data, .supervisor_path = "/nonexistent",
        .gateway_addr = "127.0.0.1:1", .trust_domain = TD, .default_driver = "mem",
    };
    assert_int_equal(gw_drivers_load(&env, &f->app.drivers), 0);
    assert_int_equal(gw_store_open(f->cfg.store_path, NULL, &f->store), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    gw_reconciler_stop(f->app.reconciler);
    gw_store_close(f->store);
    gw_drivers_free(f->app.drivers);
    gw_states_free(f->app.states);
    assert_int_equal(tu_rm_rf(f->dir), 0);
    free(f->dir);
    free(f);
    return 0;
}

static gw_sandbox_rec row(fixture *f, const char *id)
{
    gw_sandbox_rec r;
    assert_int_equal(gw_store_sandbox_get(f->store, id, &r), 0);
    return r;
}

static char *detail_of(fixture *f, const char *id)
{
    gw_sandbox_spec spec;
    assert_int_equal(gw_store_sandbox_spec_get(f->store, id, &spec), 0);
    char *d = strdup(spec.state_detail);
    gw_store_free_spec(&spec);
    return d;
}

static void test_refusals_first(void **state)
{
    fixture *f = *state;
    /* A create in flight is the create's. */
    add_row(f, SB_A, "a", "mem", "pending");
    gw_sandbox_rec r = row(f, SB_A);
    assert_int_equal(gw_states_creating(f->app.states, SB_A), 0);
    assert_int_equal(gw_state_refresh(&f->app, f->store, &r, 0), 0);
    assert_string_equal(row(f, SB_A).state, "pending");
    gw_states_created(f->app.states, SB_A);
    /* ... then it is refreshed: the mem driver has never heard of it. */
    assert_int_equal(gw_state_refresh(&f->app, f->store, &r, 0), 1);
    assert_string_equal(r.state, "failed");
    assert_string_equal(row(f, SB_A).state, "failed");
    char *d = detail_of(f, SB_A);
    assert_string_equal(d, "the mem driver has no such sandbox (removed outside Tessera?)");
    free(d);

    /* A deleted sandbox's state is history. */
    int revoked = 0;
    assert_int_equal(gw_store_sandbox_delete(f->store, SB_A, tsr_now_unix(), &revoked), 0);
    r = row(f, SB_A);
    assert_int_equal(gw_state_refresh(&f->app, f->store, &r, 0), 0);

    /* A driver that is not there: the stored state stays, and the driver
     * rests: another sandbox of it is not asked for a while (unless forced). */
    add_row(f, SB_NOPE, "nope", "nope", "running");
    add_row(f, SB_NOPE2, "nope2", "nope", "running");
    r = row(f, SB_NOPE);
    assert_int_equal(gw_state_refresh(&f->app, f->store, &r, 1000), 1);
    assert_string_equal(row(f, SB_NOPE).state, "running");
    gw_sandbox_rec r2 = row(f, SB_NOPE2);
    assert_int_equal(gw_state_refresh(&f->app, f->store, &r2, 1000), 0);
    assert_int_equal(gw_state_refresh(&f->app, f->store, &r2, 0), 1);
    assert_string_equal(row(f, SB_NOPE2).state, "running");
}

static void test_state_follows_the_driver(void **state)
{
    fixture *f = *state;
    add_row(f, SB_A, "a", "mem", "running");
    launch(f, SB_A);
    gw_sandbox_rec r = row(f, SB_A);
    /* Unchanged: asked, nothing written; then cached. */
    assert_int_equal(gw_state_refresh(&f->app, f->store, &r, 1000), 1);
    assert_string_equal(r.state, "running");
    assert_int_equal(gw_state_refresh(&f->app, f->store, &r, 1000), 0);

    /* Removed behind the gateway's back (what `docker rm` does to a
     * container): recorded at the next refresh, with the reason. */
    gw_driver *d = gw_drivers_find(f->app.drivers, "mem");
    assert_non_null(d);
    add_row(f, SB_B, "b", "mem", "running");
    launch(f, SB_B);
    r = row(f, SB_B);
    assert_int_equal(gw_state_refresh(&f->app, f->store, &r, 0), 1);
    assert_string_equal(row(f, SB_B).state, "running");
    assert_int_equal(gw_driver_destroy(d, SB_B), 0);
    assert_int_equal(gw_state_refresh(&f->app, f->store, &r, 0), 1);
    assert_string_equal(r.state, "failed");
    gw_sandbox_rec now = row(f, SB_B);
    assert_string_equal(now.state, "failed");
    assert_false(now.exited);

    /* One pass over them all (the reconciler's), and the thread itself. */
    size_t n = 0;
    assert_int_equal(gw_state_reconcile(&f->app, f->store, 0, &n), 0);
    assert_int_equal(n, 2);
    launch(f, SB_B); /* it runs again (the same id, the mem driver allows) */
    assert_int_equal(gw_reconciler_start(&f->app, 20, &f->app.reconciler), 0);
    int64_t deadline = tsr_monotonic_ms() + 10000;
    while (strcmp(row(f, SB_B).state, "running") != 0) {
        assert_true(tsr_monotonic_ms() < deadline);
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    gw_reconciler_stop(f->app.reconciler);
    f->app.reconciler = NULL;
    assert_string_equal(row(f, SB_B).state, "running");
    assert_string_equal(gw_state_name(TSR_DRIVER_STATE_CREATED), "pending");
    assert_string_equal(gw_state_name(TSR_DRIVER_STATE_STOPPED), "stopped");
    assert_string_equal(gw_state_name(TSR_DRIVER_STATE_UNKNOWN), "failed");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_refusals_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_follows_the_driver, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
