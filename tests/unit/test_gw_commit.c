/* gw_commit: group commit of certificate records, and the store's batch
 * insert under it. Failure cases first. Each test gets a fresh temp dir and
 * database (one live sandbox SB1, one deleted SB2, none SB3). */
#include <ftw.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#include "gw_commit.h"
#include "gw_store.h"
#include "tsr_err.h"
#include "tu_fs.h"

#define SB1 "11111111-1111-4111-8111-111111111111"
#define SB2 "22222222-2222-4222-8222-222222222222"
#define SB3 "33333333-3333-4333-8333-333333333333"

#define EXPECT_OK(call)                                                                        \
    do {                                                                                       \
        if ((call) != 0) {                                                                     \
            print_error("%s failed: %s (%s)\n", #call, tsr_errmsg(), tsr_errloc());            \
            _fail(__FILE__, __LINE__);                                                         \
        }                                                                                      \
    } while (0)

struct fx {
    char dir[64];
    char path[128];
    gw_store *s;        /* the test's own connection (main thread, or a callback) */
};

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(p);
}

static void create_sb(gw_store *s, const char *id, const char *name)
{
    gw_sandbox_rec r;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "%s", id);
    snprintf(r.name, sizeof r.name, "%s", name);
    strcpy(r.driver, "process");
    strcpy(r.state, "running");
    r.created_at = 1000;
    EXPECT_OK(gw_store_sandbox_create(s, &r, NULL, NULL, 0, NULL));
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(tu_temp_path(f->dir, sizeof f->dir, "tsr-commit-XXXXXX"), 0);
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/data/gateway.db", f->dir);
    EXPECT_OK(gw_store_open(f->path, NULL, &f->s));
    create_sb(f->s, SB1, "one");
    create_sb(f->s, SB2, "two");
    int revoked = 0;
    EXPECT_OK(gw_store_sandbox_delete(f->s, SB2, 2000, &revoked));
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    gw_store_close(f->s);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static gw_cert_rec cert_rec(unsigned n, const char *sandbox_id)
{
    gw_cert_rec c;
    memset(&c, 0, sizeof c);
    snprintf(c.serial, sizeof c.serial, "%032x", n + 1);
    snprintf(c.sandbox_id, sizeof c.sandbox_id, "%s", sandbox_id);
    snprintf(c.spiffe_id, sizeof c.spiffe_id, "spiffe://tessera.local/sandbox/%s", sandbox_id);
    c.not_before = 1000;
    c.not_after = 5000;
    c.issued_at = 1000;
    return c;
}

static gw_committer *start(struct fx *f, bool read_only)
{
    gw_store *s = NULL;
    EXPECT_OK(gw_store_open(f->path, NULL, &s));
    if (read_only) EXPECT_OK(gw_store_set_read_only(s, true));
    gw_committer *c = NULL;
    EXPECT_OK(gw_committer_start(s, &c));
    return c;
}

static bool recorded(gw_store *s, const char *serial)
{
    gw_cert_rec out;
    return gw_store_cert_get(s, serial, &out) == 0;
}

/* ---- items -------------------------------------------------------------------- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int n_done;
static gw_store *check_store;       /* when set, done checks durability through it */
static bool gate_closed;            /* the first done waits until it opens */
static bool gate_waiting;

typedef struct item {
    gw_commit_item it;
    int calls, rc;
    enum tsr_errcat cat;
    char msg[300];
    bool durable_at_done;
} item;

static void on_done(gw_commit_item *ci, int rc, enum tsr_errcat cat, const char *msg)
{
    item *x = (item *)ci;
    if (check_store != NULL) x->durable_at_done = recorded(check_store, ci->rec.serial);
    pthread_mutex_lock(&mu);
    x->calls++;
    x->rc = rc;
    x->cat = cat;
    snprintf(x->msg, sizeof x->msg, "%s", msg);
    n_done++;
    if (gate_closed) {
        gate_waiting = true;
        pthread_cond_broadcast(&cv);
        while (gate_closed) pthread_cond_wait(&cv, &mu);
    }
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void reset(void)
{
    n_done = 0;
    check_store = NULL;
    gate_closed = gate_waiting = false;
}

static void wait_done(int n)
{
    pthread_mutex_lock(&mu);
    while (n_done < n) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}

static item *items_new(size_t n, const char *sandbox_id)
{
    item *v = calloc(n, sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) {
        v[i].it.rec = cert_rec((unsigned)i, sandbox_id);
        v[i].it.done = on_done;
        v[i].rc = 99;
    }
    return v;
}

/* ---- store batch -------------------------------------------------------------- */

static void test_batch_refuses_bad_arguments(void **state)
{
    struct fx *f = *state;
    enum tsr_errcat res[1];
    const gw_cert_rec *none[1] = {NULL};
    tsr_err_clear();
    assert_int_equal(gw_store_cert_insert_batch(f->s, none, 0, res), -1);
    assert_int_equal(tsr_errcat(), TSR_E_INPUT);
    assert_int_equal(gw_store_cert_insert_batch(f->s, NULL, 1, res), -1);
    assert_int_equal(gw_store_cert_insert_batch(f->s, none, 1, NULL), -1);
}

static void test_batch_io_failure_writes_nothing(void **state)
{
    struct fx *f = *state;
    gw_cert_rec a = cert_rec(1, SB1), b = cert_rec(2, SB1);
    const gw_cert_rec *v[] = {&a, &b};
    enum tsr_errcat res[2];
    EXPECT_OK(gw_store_set_read_only(f->s, true));
    tsr_err_clear();
    assert_int_equal(gw_store_cert_insert_batch(f->s, v, 2, res), -1);
    assert_int_equal(tsr_errcat(), TSR_E_IO);
    EXPECT_OK(gw_store_set_read_only(f->s, false));
    assert_false(recorded(f->s, a.serial));
    assert_false(recorded(f->s, b.serial));
}

/* One record refused on its own fails only itself, in every way it can. */
static void test_batch_refusals_are_per_record(void **state)
{
    struct fx *f = *state;
    gw_cert_rec ok1 = cert_rec(1, SB1), deleted = cert_rec(2, SB2), missing = cert_rec(3, SB3),
                dup = cert_rec(1, SB1), bad = cert_rec(5, SB1), ok2 = cert_rec(6, SB1);
    bad.not_before = bad.not_after + 1;
    const gw_cert_rec *v[] = {&ok1, &deleted, &missing, &dup, &bad, &ok2};
    enum tsr_errcat res[6];
    EXPECT_OK(gw_store_cert_insert_batch(f->s, v, 6, res));
    assert_int_equal(res[0], TSR_E_NONE);
    assert_int_equal(res[1], TSR_E_STATE);
    assert_int_equal(res[2], TSR_E_NOTFOUND);
    assert_int_equal(res[3], TSR_E_EXISTS);
    assert_int_equal(res[4], TSR_E_INPUT);
    assert_int_equal(res[5], TSR_E_NONE);
    assert_true(recorded(f->s, ok1.serial));
    assert_true(recorded(f->s, ok2.serial));
    assert_false(recorded(f->s, deleted.serial));
    assert_false(recorded(f->s, missing.serial));
    assert_false(recorded(f->s, bad.serial));
}

/* ---- committer ---------------------------------------------------------------- */

static void test_start_needs_a_store(void **state)
{
    (void)state;
    gw_committer *c = (gw_committer *)&c;
    tsr_err_clear();
    assert_int_equal(gw_committer_start(NULL, &c), -1);
    assert_int_equal(tsr_errcat(), TSR_E_INPUT);
    assert_null(c);
    gw_committer_stop(NULL);
}

/* A store that cannot write: every waiter hears of it, nothing is recorded. */
static void test_failure_reaches_every_waiter(void **state)
{
    struct fx *f = *state;
    reset();
    enum { N = 40 };
    item *v = items_new(N, SB1);
    gw_committer *c = start(f, true);
    for (int i = 0; i < N; i++) EXPECT_OK(gw_committer_submit(c, &v[i].it));
    wait_done(N);
    gw_commit_stats st;
    gw_committer_stats(c, &st);
    gw_committer_stop(c);
    for (int i = 0; i < N; i++) {
        assert_int_equal(v[i].calls, 1);
        assert_int_equal(v[i].rc, -1);
        assert_int_equal(v[i].cat, TSR_E_IO);
        assert_true(v[i].msg[0] != '\0');
        assert_false(recorded(f->s, v[i].it.rec.serial));
    }
    assert_int_equal(st.records, N);
    assert_int_equal(st.failed_batches, st.batches);
    free(v);
}

/* Refusals through the committer: the caller learns which and why. */
static void test_refused_record_fails_alone(void **state)
{
    struct fx *f = *state;
    reset();
    item *v = items_new(3, SB1);
    v[1].it.rec = cert_rec(1, SB2);     /* deleted sandbox */
    gw_committer *c = start(f, false);
    for (int i = 0; i < 3; i++) EXPECT_OK(gw_committer_submit(c, &v[i].it));
    wait_done(3);
    gw_committer_stop(c);
    assert_int_equal(v[0].rc, 0);
    assert_int_equal(v[1].rc, -1);
    assert_int_equal(v[1].cat, TSR_E_STATE);
    assert_string_equal(v[1].msg, "sandbox deleted");
    assert_int_equal(v[2].rc, 0);
    assert_true(recorded(f->s, v[0].it.rec.serial));
    assert_true(recorded(f->s, v[2].it.rec.serial));
    free(v);
}

/* done runs only once the record can be read back by another connection. */
static void test_done_only_after_durable(void **state)
{
    struct fx *f = *state;
    reset();
    enum { N = 20 };
    item *v = items_new(N, SB1);
    check_store = f->s;   /* the main thread only waits meanwhile */
    gw_committer *c = start(f, false);
    for (int i = 0; i < N; i++) EXPECT_OK(gw_committer_submit(c, &v[i].it));
    wait_done(N);
    gw_committer_stop(c);
    check_store = NULL;
    for (int i = 0; i < N; i++) {
        assert_int_equal(v[i].rc, 0);
        assert_true(v[i].durable_at_done);
    }
    free(v);
}

/* Records queued while a batch is in flight go out together, in one batch. */
static void test_queued_records_share_one_commit(void **state)
{
    struct fx *f = *state;
    reset();
    enum { N = 50 };
    item *v = items_new(N + 1, SB1);
    gw_committer *c = start(f, false);
    gate_closed = true;
    EXPECT_OK(gw_committer_submit(c, &v[0].it));
    pthread_mutex_lock(&mu);
    while (!gate_waiting) pthread_cond_wait(&cv, &mu);   /* batch 1 is being answered */
    pthread_mutex_unlock(&mu);
    for (int i = 1; i <= N; i++) EXPECT_OK(gw_committer_submit(c, &v[i].it));
    pthread_mutex_lock(&mu);
    gate_closed = false;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    wait_done(N + 1);
    gw_commit_stats st;
    gw_committer_stats(c, &st);
    gw_committer_stop(c);
    assert_int_equal(st.batches, 2);
    assert_int_equal(st.max_batch, N);
    assert_int_equal(st.records, N + 1);
    for (int i = 0; i <= N; i++) {
        assert_int_equal(v[i].calls, 1);
        assert_int_equal(v[i].rc, 0);
        assert_true(recorded(f->s, v[i].it.rec.serial));
    }
    free(v);
}

/* More than one batch's worth: split at GW_COMMIT_MAX_BATCH, all recorded. */
static void test_large_queue_is_split(void **state)
{
    struct fx *f = *state;
    reset();
    enum { N = GW_COMMIT_MAX_BATCH * 2 + 7 };
    item *v = items_new(N, SB1);
    gw_committer *c = start(f, false);
    gate_closed = true;
    EXPECT_OK(gw_committer_submit(c, &v[0].it));
    pthread_mutex_lock(&mu);
    while (!gate_waiting) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    for (int i = 1; i < N; i++) EXPECT_OK(gw_committer_submit(c, &v[i].it));
    pthread_mutex_lock(&mu);
    gate_closed = false;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    wait_done(N);
    gw_commit_stats st;
    gw_committer_stats(c, &st);
    gw_committer_stop(c);
    assert_int_equal(st.max_batch, GW_COMMIT_MAX_BATCH);
    assert_int_equal(st.batches, 4);
    for (int i = 0; i < N; i++) assert_int_equal(v[i].rc, 0);
    free(v);
}

/* stop commits what is queued and answers everyone before it returns. */
static void test_stop_commits_pending_items(void **state)
{
    struct fx *f = *state;
    reset();
    enum { N = 200 };
    item *v = items_new(N, SB1);
    gw_committer *c = start(f, false);
    for (int i = 0; i < N; i++) EXPECT_OK(gw_committer_submit(c, &v[i].it));
    gw_committer_stop(c);   /* no wait_done: stop itself must drain */
    assert_int_equal(n_done, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(v[i].calls, 1);
        assert_int_equal(v[i].rc, 0);
        assert_true(recorded(f->s, v[i].it.rec.serial));
    }
    free(v);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_batch_refuses_bad_arguments),
        T(test_batch_io_failure_writes_nothing),
        T(test_batch_refusals_are_per_record),
        T(test_start_needs_a_store),
        T(test_failure_reaches_every_waiter),
        T(test_refused_record_fails_alone),
        T(test_done_only_after_durable),
        T(test_queued_records_share_one_commit),
        T(test_large_queue_is_split),
        T(test_stop_commits_pending_items),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
