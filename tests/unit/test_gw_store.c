/* gw_store: the store's contract. Failure cases first. Each test gets a
 * fresh temp dir under /tmp (removed afterwards) and its own database file.
 *
 * The same tests run against PostgreSQL (test_gw_store_pg.c includes this
 * file with STORE_PG defined): the binary starts its own cluster
 * (tests/pg/cluster.sh: initdb + pg_ctl under TMPDIR, a unix socket), each
 * test gets an empty schema, and the raw access goes through libpq. The
 * tests of sqlite's file (its modes, WAL, locks) run on sqlite only. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#include "gw_secretbox.h"
#include "gw_store.h"
#include "gw_store_schema.h"
#include "tsr_err.h"
#include "tu_fs.h"

#define HEX_A "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define HEX_B "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"

#define SB1 "11111111-1111-4111-8111-111111111111"
#define SB2 "22222222-2222-4222-8222-222222222222"
#define SB3 "33333333-3333-4333-8333-333333333333"

static void check_fail(int rc, enum tsr_errcat cat, const char *expr, const char *file,
                       int line)
{
    if (rc != -1 || tsr_errcat() != cat) {
        print_error("%s: rc %d, category '%s' (%s), expected '%s'\n", expr, rc,
                    tsr_errcat_name(tsr_errcat()), tsr_errmsg(), tsr_errcat_name(cat));
        _fail(file, line);
    }
}
#define EXPECT_FAIL(call, cat)                                                                 \
    do {                                                                                       \
        tsr_err_clear();                                                                       \
        check_fail((call), (cat), #call, __FILE__, __LINE__);                                  \
    } while (0)
#define EXPECT_OK(call)                                                                        \
    do {                                                                                       \
        if ((call) != 0) {                                                                     \
            print_error("%s failed: %s (%s)\n", #call, tsr_errmsg(), tsr_errloc());            \
            _fail(__FILE__, __LINE__);                                                         \
        }                                                                                      \
    } while (0)

/* The records take char *; literals are const under -Wwrite-strings. */
#define S(lit) ((char *)(uintptr_t)(lit))

/* PostgreSQL: the cluster's DSN (main() starts it). */
static char pg_dsn[512];

static void raw_exec(const char *path, const char *sql);

/* Tests of sqlite's file, left out of the PostgreSQL run. */
#ifdef STORE_PG
#define SQLITE_ONLY __attribute__((unused))
#else
#define SQLITE_ONLY
#endif

/* ---- fixture ------------------------------------------------------------------- */

struct fx {
    char dir[64];
    char path[640];     /* <dir>/data/gateway.db, or postgres:<dsn> */
    gw_keyring *keys;   /* versions 1 (A) */
    gw_store *s;        /* opened on path */
};

static gw_keyring *keyring(const char *text)
{
    gw_keyring *k = NULL;
    EXPECT_OK(gw_keyring_parse("test", (const uint8_t *)text, strlen(text), &k));
    return k;
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(p);
}

/* PostgreSQL: an empty schema, and its locator in path. */
static void fresh_pg(char *path, size_t cap)
{
    snprintf(path, cap, GW_STORE_PG_PREFIX "%s", pg_dsn);
    raw_exec(path, "DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public");
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(tu_temp_path(f->dir, sizeof f->dir, "tsr-store-XXXXXX"), 0);
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/data/gateway.db", f->dir);
    if (pg_dsn[0] != '\0') fresh_pg(f->path, sizeof f->path);
    f->keys = keyring("1 " HEX_A "\n");
    EXPECT_OK(gw_store_open(f->path, f->keys, &f->s));
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    gw_store_close(f->s);
    gw_keyring_free(f->keys);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static gw_sandbox_rec sb_rec(const char *id, const char *name)
{
    gw_sandbox_rec r;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "%s", id);
    snprintf(r.name, sizeof r.name, "%s", name);
    strcpy(r.driver, "process");
    strcpy(r.state, "creating");
    r.created_at = 1000;
    return r;
}

static gw_cert_rec cert_rec(const char *serial, const char *sandbox_id)
{
    gw_cert_rec c;
    memset(&c, 0, sizeof c);
    snprintf(c.serial, sizeof c.serial, "%s", serial);
    snprintf(c.sandbox_id, sizeof c.sandbox_id, "%s", sandbox_id);
    if (sandbox_id[0])
        snprintf(c.spiffe_id, sizeof c.spiffe_id, "spiffe://tessera.local/sandbox/%s", sandbox_id);
    else
        strcpy(c.spiffe_id, "spiffe://tessera.local/user/alice");
    c.not_before = 1000;
    c.not_after = 5000;
    c.issued_at = 1000;
    return c;
}

static void create_sb(gw_store *s, const char *id, const char *name)
{
    gw_sandbox_rec r = sb_rec(id, name);
    EXPECT_OK(gw_store_sandbox_create(s, &r, "version: 1\n", NULL, 0, NULL));
}

/* ---- raw access (a second, plain sqlite connection) ---------------------------- */


static PGconn *pg_raw(const char *path)
{
    PGconn *c = PQconnectdb(gw_store_pg_dsn(path));
    if (PQstatus(c) != CONNECTION_OK) {
        print_error("raw connect: %s\n", PQerrorMessage(c));
        fail();
    }
    PQclear(PQexec(c, "SET client_min_messages = warning"));
    return c;
}

static PGresult *pg_raw_run(const char *path, const char *sql)
{
    PGconn *c = pg_raw(path);
    PGresult *res = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        print_error("%s: %s\n", sql, PQerrorMessage(c));
        fail();
    }
    PQfinish(c);
    return res;
}

static sqlite3 *raw_open(const char *path)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static int64_t raw_int(const char *path, const char *sql)
{
    if (gw_store_is_pg(path)) {
        PGresult *res = pg_raw_run(path, sql);
        assert_int_equal(PQntuples(res), 1);
        int64_t v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
        return v;
    }
    sqlite3 *db = raw_open(path);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        print_error("%s: %s\n", sql, sqlite3_errmsg(db));
        fail();
    }
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void raw_exec(const char *path, const char *sql)
{
    if (gw_store_is_pg(path)) {
        PQclear(pg_raw_run(path, sql));
        return;
    }
    sqlite3 *db = raw_open(path);
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        print_error("%s: %s\n", sql, err);
        sqlite3_free(err);
        fail();
    }
    sqlite3_close(db);
}

static mode_t file_mode(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 07777;
}

/* ---- open and migrations ------------------------------------------------------- */

SQLITE_ONLY static void test_open_refusals(void **state)
{
    struct fx *f = *state;
    gw_store *s = (gw_store *)1;
    EXPECT_FAIL(gw_store_open("", f->keys, &s), TSR_E_INPUT);
    assert_null(s);
    /* a directory where the file should be */
    char p[256];
    snprintf(p, sizeof p, "%s/adir", f->dir);
    assert_int_equal(mkdir(p, 0700), 0);
    EXPECT_FAIL(gw_store_open(p, f->keys, &s), TSR_E_IO);
    /* a parent that is a file */
    snprintf(p, sizeof p, "%s/data/gateway.db/x.db", f->dir);
    EXPECT_FAIL(gw_store_open(p, f->keys, &s), TSR_E_IO);
    /* a file that is not a database */
    snprintf(p, sizeof p, "%s/junk.db", f->dir);
    FILE *fp = fopen(p, "w");
    assert_non_null(fp);
    for (int i = 0; i < 200; i++) fputs("this is not an sqlite database\n", fp);
    fclose(fp);
    EXPECT_FAIL(gw_store_open(p, f->keys, &s), TSR_E_IO);
    assert_null(s);
}

static void test_open_newer_schema(void **state)
{
    struct fx *f = *state;
    gw_store_close(f->s);
    f->s = NULL;
    raw_exec(f->path, "INSERT INTO schema_migrations(version, applied_at) VALUES (7, 1)");
    gw_store *s = NULL;
    EXPECT_FAIL(gw_store_open(f->path, f->keys, &s), TSR_E_STATE);
    assert_null(s);
    char want[128];
    snprintf(want, sizeof want, "database schema version 7 is newer than this gateway (%d)",
             GW_STORE_SCHEMA_VERSION);
    assert_string_equal(tsr_errmsg(), want);
    /* and it touched nothing */
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM schema_migrations"),
                     GW_STORE_SCHEMA_VERSION + 1);
}

SQLITE_ONLY static void test_open_creates_private_files(void **state)
{
    struct fx *f = *state;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/data", f->dir);
    assert_int_equal(file_mode(dir), 0700);
    assert_int_equal(file_mode(f->path), 0600);
    char wal[700];
    snprintf(wal, sizeof wal, "%s-wal", f->path);
    create_sb(f->s, SB1, "one"); /* something in the WAL */
    assert_int_equal(file_mode(wal), 0600);

    /* migration 1 from empty, recorded once; WAL mode is persistent */
    int64_t v = 0;
    EXPECT_OK(gw_store_schema_version(f->s, &v));
    assert_int_equal(v, GW_STORE_SCHEMA_VERSION);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM schema_migrations"),
                     GW_STORE_SCHEMA_VERSION);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM pragma_journal_mode "
                                      "WHERE journal_mode = 'wal'"), 1);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_schema WHERE name IN "
                                      "('sandboxes','certificates','policies','policy_status',"
                                      "'draft_chunks','logs','log_drops','provider_env',"
                                      "'sandboxes_live_name','certificates_sandbox')"), 10);

    /* an existing world-readable file is tightened */
    gw_store_close(f->s);
    f->s = NULL;
    assert_int_equal(chmod(f->path, 0644), 0);
    EXPECT_OK(gw_store_open(f->path, f->keys, &f->s));
    assert_int_equal(file_mode(f->path), 0600);
}

static void test_reopen_idempotent(void **state)
{
    struct fx *f = *state;
    create_sb(f->s, SB1, "one");
    for (int i = 0; i < 3; i++) {
        gw_store_close(f->s);
        f->s = NULL;
        EXPECT_OK(gw_store_open(f->path, f->keys, &f->s));
    }
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM schema_migrations"),
                     GW_STORE_SCHEMA_VERSION);
    gw_sandbox_rec r;
    EXPECT_OK(gw_store_sandbox_get(f->s, SB1, &r));
    assert_string_equal(r.name, "one");
    /* two handles at once */
    gw_store *s2 = NULL;
    EXPECT_OK(gw_store_open(f->path, f->keys, &s2));
    EXPECT_OK(gw_store_sandbox_get(s2, SB1, &r));
    gw_store_close(s2);
}

struct open_arg {
    const char *path;
    const gw_keyring *keys;
    pthread_barrier_t *barrier;
    int rc;
    char err[256];
};

static void *open_thread(void *p)
{
    struct open_arg *a = p;
    gw_store *s = NULL;
    pthread_barrier_wait(a->barrier);
    a->rc = gw_store_open(a->path, a->keys, &s);
    if (a->rc != 0) snprintf(a->err, sizeof a->err, "%s", tsr_errmsg());
    gw_store_close(s);
    return NULL;
}

static void test_concurrent_first_open(void **state)
{
    struct fx *f = *state;
    enum { N = 6 };
    for (int round = 0; round < 3; round++) {
        char path[640];
        snprintf(path, sizeof path, "%s/fresh%d/g.db", f->dir, round);
        if (gw_store_is_pg(f->path)) fresh_pg(path, sizeof path);
        pthread_t t[N];
        struct open_arg a[N];
        pthread_barrier_t b;
        pthread_barrier_init(&b, NULL, N);
        for (int i = 0; i < N; i++) {
            a[i] = (struct open_arg){.path = path, .keys = f->keys, .barrier = &b, .rc = -2};
            assert_int_equal(pthread_create(&t[i], NULL, open_thread, &a[i]), 0);
        }
        for (int i = 0; i < N; i++) pthread_join(t[i], NULL);
        pthread_barrier_destroy(&b);
        for (int i = 0; i < N; i++) {
            if (a[i].rc != 0) print_error("thread %d: %s\n", i, a[i].err);
            assert_int_equal(a[i].rc, 0);
        }
        assert_int_equal(raw_int(path, "SELECT count(*) FROM schema_migrations"),
                         GW_STORE_SCHEMA_VERSION);
    }
}

/* ---- sandboxes ------------------------------------------------------------------ */

static void test_sandbox_create_refusals(void **state)
{
    struct fx *f = *state;
    gw_sandbox_rec r = sb_rec(SB1, "one");
    gw_cert_rec c = cert_rec("aa01", SB1);

    gw_sandbox_rec bad = r;
    bad.id[0] = '\0';
    EXPECT_FAIL(gw_store_sandbox_create(f->s, &bad, "p", NULL, 0, NULL), TSR_E_INPUT);
    bad = r;
    bad.name[0] = '\0';
    EXPECT_FAIL(gw_store_sandbox_create(f->s, &bad, "p", NULL, 0, NULL), TSR_E_INPUT);
    bad = r;
    memset(bad.name, 'x', sizeof bad.name); /* no terminator */
    EXPECT_FAIL(gw_store_sandbox_create(f->s, &bad, "p", NULL, 0, NULL), TSR_E_INPUT);
    bad = r;
    memset(bad.id, 'x', sizeof bad.id);
    EXPECT_FAIL(gw_store_sandbox_create(f->s, &bad, "p", NULL, 0, NULL), TSR_E_INPUT);
    bad = r;
    bad.deleted_at = 5;
    EXPECT_FAIL(gw_store_sandbox_create(f->s, &bad, "p", NULL, 0, NULL), TSR_E_INPUT);
    EXPECT_FAIL(gw_store_sandbox_create(f->s, NULL, "p", NULL, 0, NULL), TSR_E_INPUT);
    /* the first cert must be this sandbox's */
    gw_cert_rec other = cert_rec("aa01", SB2);
    EXPECT_FAIL(gw_store_sandbox_create(f->s, &r, "p", NULL, 0, &other), TSR_E_INPUT);
    other = cert_rec("aa01", "");
    EXPECT_FAIL(gw_store_sandbox_create(f->s, &r, "p", NULL, 0, &other), TSR_E_INPUT);
    gw_cert_rec revoked = c;
    revoked.revoked_at = 9;
    EXPECT_FAIL(gw_store_sandbox_create(f->s, &r, "p", NULL, 0, &revoked), TSR_E_INPUT);
    /* env needs names and values */
    gw_env_var env[] = {{S(""), S("v")}};
    EXPECT_FAIL(gw_store_sandbox_create(f->s, &r, "p", env, 1, &c), TSR_E_INPUT);
    gw_env_var env2[] = {{S("K"), NULL}};
    EXPECT_FAIL(gw_store_sandbox_create(f->s, &r, "p", env2, 1, &c), TSR_E_INPUT);
    EXPECT_FAIL(gw_store_sandbox_create(f->s, &r, "p", NULL, 2, &c), TSR_E_INPUT);

    /* none of that left anything */
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sandboxes"), 0);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM certificates"), 0);

    EXPECT_OK(gw_store_sandbox_create(f->s, &r, "p", NULL, 0, &c));
    /* same id, same name, either */
    gw_sandbox_rec again = sb_rec(SB1, "other");
    EXPECT_FAIL(gw_store_sandbox_create(f->s, &again, "p", NULL, 0, NULL), TSR_E_EXISTS);
    again = sb_rec(SB2, "one");
    EXPECT_FAIL(gw_store_sandbox_create(f->s, &again, "p", NULL, 0, NULL), TSR_E_EXISTS);
    assert_non_null(strstr(tsr_errmsg(), "named one"));
}

static void test_sandbox_half_written_create(void **state)
{
    struct fx *f = *state;
    /* a cert serial already taken makes the whole CreateSandbox fail late
     * (after the sandbox, policy and env rows were written) */
    gw_cert_rec taken = cert_rec("cafe01", "");
    EXPECT_OK(gw_store_cert_insert(f->s, &taken));
    gw_sandbox_rec r = sb_rec(SB1, "one");
    gw_env_var env[] = {{S("API_KEY"), S("secret-value")}};
    gw_cert_rec dup = cert_rec("cafe01", SB1);
    EXPECT_FAIL(gw_store_sandbox_create(f->s, &r, "policy", env, 1, &dup), TSR_E_EXISTS);
    gw_sandbox_rec out;
    EXPECT_FAIL(gw_store_sandbox_get(f->s, SB1, &out), TSR_E_NOTFOUND);
    EXPECT_FAIL(gw_store_sandbox_find_by_name(f->s, "one", &out), TSR_E_NOTFOUND);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sandboxes"), 0);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM policies"), 0);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM provider_env"), 0);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM certificates"), 1);
    /* the store stays usable and the name free */
    gw_cert_rec ok = cert_rec("cafe02", SB1);
    EXPECT_OK(gw_store_sandbox_create(f->s, &r, "policy", env, 1, &ok));
    EXPECT_OK(gw_store_sandbox_get(f->s, SB1, &out));
    assert_int_equal(out.policy_version, 1);
}

static void test_sandbox_get_find_list(void **state)
{
    struct fx *f = *state;
    gw_sandbox_rec out;
    gw_sandbox_rec *v = NULL;
    size_t n = 0;
    EXPECT_FAIL(gw_store_sandbox_get(f->s, SB1, &out), TSR_E_NOTFOUND);
    EXPECT_FAIL(gw_store_sandbox_get(f->s, "", &out), TSR_E_INPUT);
    EXPECT_FAIL(gw_store_sandbox_get(f->s, NULL, &out), TSR_E_INPUT);
    EXPECT_FAIL(gw_store_sandbox_find_by_name(f->s, "nope", &out), TSR_E_NOTFOUND);
    EXPECT_FAIL(gw_store_sandbox_list(f->s, NULL, 0, &v, &n), TSR_E_INPUT);
    EXPECT_FAIL(gw_store_sandbox_list(f->s, NULL, -1, &v, &n), TSR_E_INPUT);
    EXPECT_OK(gw_store_sandbox_list(f->s, NULL, 10, &v, &n));
    assert_int_equal(n, 0);
    assert_null(v);

    /* created out of order; listed by id */
    static const char *const ids[] = {
        "55555555-0000-4000-8000-000000000000", "11111111-0000-4000-8000-000000000000",
        "44444444-0000-4000-8000-000000000000", "22222222-0000-4000-8000-000000000000",
        "33333333-0000-4000-8000-000000000000",
    };
    for (int i = 0; i < 5; i++) {
        char name[16];
        snprintf(name, sizeof name, "sb-%c", ids[i][0]);
        gw_sandbox_rec r = sb_rec(ids[i], name);
        r.created_at = 100 + i;
        EXPECT_OK(gw_store_sandbox_create(f->s, &r, NULL, NULL, 0, NULL));
    }
    EXPECT_OK(gw_store_sandbox_get(f->s, ids[2], &out));
    assert_string_equal(out.name, "sb-4");
    assert_string_equal(out.driver, "process");
    assert_string_equal(out.state, "creating");
    assert_int_equal(out.created_at, 102);
    assert_int_equal(out.deleted_at, 0);
    assert_int_equal(out.policy_version, 0); /* created without a policy */
    EXPECT_OK(gw_store_sandbox_find_by_name(f->s, "sb-2", &out));
    assert_string_equal(out.id, ids[3]);

    /* pages of 2 */
    char after[37] = "";
    const char expect[] = "12345";
    size_t seen = 0;
    for (int page = 0; page < 4; page++) {
        EXPECT_OK(gw_store_sandbox_list(f->s, after, 2, &v, &n));
        assert_true(n <= 2);
        for (size_t i = 0; i < n; i++) assert_int_equal(v[i].id[0], expect[seen + i]);
        seen += n;
        if (n > 0) strcpy(after, v[n - 1].id);
        gw_store_free_sandboxes(v, n);
        if (n < 2) break;
    }
    assert_int_equal(seen, 5);
    /* a huge limit is clamped, not refused */
    EXPECT_OK(gw_store_sandbox_list(f->s, "", 1 << 30, &v, &n));
    assert_int_equal(n, 5);
    gw_store_free_sandboxes(v, n);

    /* set_state */
    EXPECT_FAIL(gw_store_sandbox_set_state(f->s, SB3, "running"), TSR_E_NOTFOUND);
    EXPECT_FAIL(gw_store_sandbox_set_state(f->s, ids[0], ""), TSR_E_INPUT);
    EXPECT_FAIL(gw_store_sandbox_set_state(f->s, ids[0], "a-state-longer-than-16"),
                TSR_E_INPUT);
    EXPECT_OK(gw_store_sandbox_set_state(f->s, ids[0], "running"));
    EXPECT_OK(gw_store_sandbox_get(f->s, ids[0], &out));
    assert_string_equal(out.state, "running");

    /* deleted: out of list and find, still in get, its name reusable */
    int revoked = -1;
    EXPECT_OK(gw_store_sandbox_delete(f->s, ids[1], 2000, &revoked));
    assert_int_equal(revoked, 0);
    EXPECT_OK(gw_store_sandbox_list(f->s, NULL, 100, &v, &n));
    assert_int_equal(n, 4);
    for (size_t i = 0; i < n; i++) assert_string_not_equal(v[i].id, ids[1]);
    gw_store_free_sandboxes(v, n);
    EXPECT_FAIL(gw_store_sandbox_find_by_name(f->s, "sb-1", &out), TSR_E_NOTFOUND);
    EXPECT_OK(gw_store_sandbox_get(f->s, ids[1], &out));
    assert_int_equal(out.deleted_at, 2000);
    gw_sandbox_rec reuse = sb_rec(SB3, "sb-1");
    EXPECT_OK(gw_store_sandbox_create(f->s, &reuse, NULL, NULL, 0, NULL));
    EXPECT_OK(gw_store_sandbox_find_by_name(f->s, "sb-1", &out));
    assert_string_equal(out.id, SB3);
    /* but only one live sandbox per name */
    gw_sandbox_rec third = sb_rec("66666666-0000-4000-8000-000000000000", "sb-1");
    EXPECT_FAIL(gw_store_sandbox_create(f->s, &third, NULL, NULL, 0, NULL), TSR_E_EXISTS);
}

/* ---- certificates ------------------------------------------------------------------ */

static void test_cert_insert_refusals(void **state)
{
    struct fx *f = *state;
    gw_cert_rec c = cert_rec("01", SB1);
    /* no such sandbox */
    EXPECT_FAIL(gw_store_cert_insert(f->s, &c), TSR_E_NOTFOUND);
    create_sb(f->s, SB1, "one");
    gw_cert_rec bad = c;
    bad.serial[0] = '\0';
    EXPECT_FAIL(gw_store_cert_insert(f->s, &bad), TSR_E_INPUT);
    bad = c;
    bad.spiffe_id[0] = '\0';
    EXPECT_FAIL(gw_store_cert_insert(f->s, &bad), TSR_E_INPUT);
    bad = c;
    memset(bad.serial, 'f', sizeof bad.serial);
    EXPECT_FAIL(gw_store_cert_insert(f->s, &bad), TSR_E_INPUT);
    bad = c;
    bad.revoked_at = 1;
    EXPECT_FAIL(gw_store_cert_insert(f->s, &bad), TSR_E_INPUT);
    bad = c;
    bad.not_after = bad.not_before - 1;
    EXPECT_FAIL(gw_store_cert_insert(f->s, &bad), TSR_E_INPUT);
    EXPECT_FAIL(gw_store_cert_insert(f->s, NULL), TSR_E_INPUT);

    EXPECT_OK(gw_store_cert_insert(f->s, &c));
    gw_cert_rec dup = cert_rec("01", "");
    EXPECT_FAIL(gw_store_cert_insert(f->s, &dup), TSR_E_EXISTS);
    assert_non_null(strstr(tsr_errmsg(), "01"));

    /* a deleted sandbox gets no new certificate */
    EXPECT_OK(gw_store_sandbox_delete(f->s, SB1, 3000, NULL));
    gw_cert_rec late = cert_rec("02", SB1);
    EXPECT_FAIL(gw_store_cert_insert(f->s, &late), TSR_E_STATE);
    gw_cert_rec out;
    EXPECT_FAIL(gw_store_cert_get(f->s, "02", &out), TSR_E_NOTFOUND);
}

static void test_cert_get_list(void **state)
{
    struct fx *f = *state;
    gw_cert_rec out, *v = NULL;
    size_t n = 0;
    EXPECT_FAIL(gw_store_cert_get(f->s, "", &out), TSR_E_INPUT);
    EXPECT_FAIL(gw_store_cert_get(f->s, "ab", &out), TSR_E_NOTFOUND);
    EXPECT_FAIL(gw_store_cert_list(f->s, SB1, &v, &n), TSR_E_NOTFOUND);
    create_sb(f->s, SB1, "one");
    create_sb(f->s, SB2, "two");
    EXPECT_OK(gw_store_cert_list(f->s, SB1, &v, &n));
    assert_int_equal(n, 0);
    gw_cert_rec a = cert_rec("0a", SB1), b = cert_rec("0b", SB1), u = cert_rec("0c", "");
    gw_cert_rec o = cert_rec("0d", SB2);
    b.issued_at = 900; /* older than a */
    b.not_after = 4000;
    EXPECT_OK(gw_store_cert_insert(f->s, &a));
    EXPECT_OK(gw_store_cert_insert(f->s, &b));
    EXPECT_OK(gw_store_cert_insert(f->s, &u));
    EXPECT_OK(gw_store_cert_insert(f->s, &o));
    EXPECT_OK(gw_store_cert_get(f->s, "0c", &out));
    assert_string_equal(out.sandbox_id, "");
    assert_string_equal(out.spiffe_id, "spiffe://tessera.local/user/alice");
    assert_int_equal(out.revoked_at, 0);
    EXPECT_OK(gw_store_cert_get(f->s, "0b", &out));
    assert_string_equal(out.sandbox_id, SB1);
    assert_int_equal(out.not_before, 1000);
    assert_int_equal(out.not_after, 4000);
    assert_int_equal(out.issued_at, 900);
    assert_string_equal(out.revocation_reason, "");

    EXPECT_OK(gw_store_cert_list(f->s, SB1, &v, &n));
    assert_int_equal(n, 2);
    assert_string_equal(v[0].serial, "0b"); /* oldest first */
    assert_string_equal(v[1].serial, "0a");
    gw_store_free_certs(v, n);
    EXPECT_OK(gw_store_cert_list(f->s, NULL, &v, &n));
    assert_int_equal(n, 4);
    gw_store_free_certs(v, n);
}

static void test_cert_revoke(void **state)
{
    struct fx *f = *state;
    gw_cert_rec out;
    EXPECT_FAIL(gw_store_cert_revoke(f->s, "77", "x", 100, &out, NULL, NULL), TSR_E_NOTFOUND);
    gw_cert_rec c = cert_rec("77", "");
    EXPECT_OK(gw_store_cert_insert(f->s, &c));
    EXPECT_FAIL(gw_store_cert_revoke(f->s, "77", "x", 0, &out, NULL, NULL), TSR_E_INPUT);
    char long_reason[200];
    memset(long_reason, 'r', sizeof long_reason - 1);
    long_reason[sizeof long_reason - 1] = '\0';
    EXPECT_FAIL(gw_store_cert_revoke(f->s, "77", long_reason, 100, &out, NULL, NULL), TSR_E_INPUT);
    EXPECT_OK(gw_store_cert_get(f->s, "77", &out));
    assert_int_equal(out.revoked_at, 0);

    EXPECT_OK(gw_store_cert_revoke(f->s, "77", "key compromise", 100, &out, NULL, NULL));
    assert_int_equal(out.revoked_at, 100);
    assert_string_equal(out.revocation_reason, "key compromise");
    /* again: keeps the first time and reason */
    EXPECT_OK(gw_store_cert_revoke(f->s, "77", "other", 200, &out, NULL, NULL));
    assert_int_equal(out.revoked_at, 100);
    assert_string_equal(out.revocation_reason, "key compromise");
    EXPECT_OK(gw_store_cert_revoke(f->s, "77", NULL, 300, NULL, NULL, NULL));
    EXPECT_OK(gw_store_cert_get(f->s, "77", &out));
    assert_int_equal(out.revoked_at, 100);
}

/* A renewed certificate records the certificate it was renewed from;
 * revoking a certificate revokes its whole lineage below it, transitively,
 * in the same transaction, and nothing beside or above it. */
static void test_cert_lineage_revoked_whole(void **state)
{
    struct fx *f = *state;
    create_sb(f->s, SB1, "one");
    static const struct {
        const char *serial, *from;
    } tree[] = {{"c0", ""}, {"c1", "c0"}, {"c2", "c1"}, {"c3", "c2"}, {"d1", "c0"}, {"u0", ""}};
    for (size_t i = 0; i < sizeof tree / sizeof tree[0]; i++) {
        gw_cert_rec c = cert_rec(tree[i].serial, SB1);
        snprintf(c.renewed_from, sizeof c.renewed_from, "%s", tree[i].from);
        EXPECT_OK(gw_store_cert_insert(f->s, &c));
    }
    gw_cert_rec out;
    EXPECT_OK(gw_store_cert_get(f->s, "c2", &out));
    assert_string_equal(out.renewed_from, "c1");
    EXPECT_OK(gw_store_cert_get(f->s, "c0", &out));
    assert_string_equal(out.renewed_from, "");

    /* Revoking c1 takes c2 and c3 with it; c0, d1 and u0 live on. */
    gw_revoked_serial *lineage = NULL;
    size_t n = 0;
    EXPECT_OK(gw_store_cert_revoke(f->s, "c1", "key compromise", 100, &out, &lineage, &n));
    assert_string_equal(out.serial, "c1");
    assert_int_equal(n, 2);
    assert_true((strcmp(lineage[0].serial, "c2") == 0 && strcmp(lineage[1].serial, "c3") == 0) ||
                (strcmp(lineage[0].serial, "c3") == 0 && strcmp(lineage[1].serial, "c2") == 0));
    assert_int_equal(lineage[0].not_after, 5000);
    free(lineage);
    static const struct {
        const char *serial;
        int64_t revoked_at;
        const char *reason;
    } want[] = {{"c0", 0, ""},
                {"c1", 100, "key compromise"},
                {"c2", 100, "renewed from revoked certificate c1"},
                {"c3", 100, "renewed from revoked certificate c1"},
                {"d1", 0, ""},
                {"u0", 0, ""}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        EXPECT_OK(gw_store_cert_get(f->s, want[i].serial, &out));
        assert_int_equal(out.revoked_at, want[i].revoked_at);
        assert_string_equal(out.revocation_reason, want[i].reason);
    }

    /* Revoking the first one: the rest of its tree; the earlier revocations
     * keep their time and reason, and are listed again (idempotent). */
    EXPECT_OK(gw_store_cert_revoke(f->s, "c0", "superseded", 200, NULL, &lineage, &n));
    assert_int_equal(n, 4);
    free(lineage);
    EXPECT_OK(gw_store_cert_get(f->s, "d1", &out));
    assert_int_equal(out.revoked_at, 200);
    assert_string_equal(out.revocation_reason, "renewed from revoked certificate c0");
    EXPECT_OK(gw_store_cert_get(f->s, "c3", &out));
    assert_int_equal(out.revoked_at, 100);
    EXPECT_OK(gw_store_cert_get(f->s, "u0", &out));
    assert_int_equal(out.revoked_at, 0);
    /* A leaf of the tree has no lineage. */
    EXPECT_OK(gw_store_cert_revoke(f->s, "c3", "x", 300, NULL, &lineage, &n));
    assert_int_equal(n, 0);
    assert_null(lineage);
}

/* A renewal is recorded only while the certificate it was renewed from is
 * recorded for the same sandbox and not revoked, checked in the insert's
 * own transaction, alone and in a group commit. */
static void test_cert_renewal_of_revoked_refused(void **state)
{
    struct fx *f = *state;
    create_sb(f->s, SB1, "one");
    create_sb(f->s, SB2, "two");
    gw_cert_rec p1 = cert_rec("a1", SB1), p2 = cert_rec("b1", SB2), gone = cert_rec("a0", SB1);
    EXPECT_OK(gw_store_cert_insert(f->s, &p1));
    EXPECT_OK(gw_store_cert_insert(f->s, &p2));
    EXPECT_OK(gw_store_cert_insert(f->s, &gone));
    EXPECT_OK(gw_store_cert_revoke(f->s, "a0", "x", 100, NULL, NULL, NULL));

    gw_cert_rec c = cert_rec("a2", SB1);
    snprintf(c.renewed_from, sizeof c.renewed_from, "a0");
    EXPECT_FAIL(gw_store_cert_insert(f->s, &c), TSR_E_UNAUTH);
    assert_string_equal(tsr_errmsg(), "certificate revoked");
    snprintf(c.renewed_from, sizeof c.renewed_from, "ffff");
    EXPECT_FAIL(gw_store_cert_insert(f->s, &c), TSR_E_UNAUTH);
    assert_string_equal(tsr_errmsg(), "certificate not recorded for this sandbox");
    snprintf(c.renewed_from, sizeof c.renewed_from, "b1");   /* another sandbox's */
    EXPECT_FAIL(gw_store_cert_insert(f->s, &c), TSR_E_UNAUTH);
    gw_cert_rec user = cert_rec("e1", "");
    snprintf(user.renewed_from, sizeof user.renewed_from, "a1");
    EXPECT_FAIL(gw_store_cert_insert(f->s, &user), TSR_E_INPUT);
    EXPECT_FAIL(gw_store_cert_get(f->s, "a2", &c), TSR_E_NOTFOUND);

    /* In a batch, the refused renewal fails alone. */
    gw_cert_rec ok = cert_rec("a3", SB1), bad = cert_rec("a4", SB1);
    snprintf(ok.renewed_from, sizeof ok.renewed_from, "a1");
    snprintf(bad.renewed_from, sizeof bad.renewed_from, "a0");
    const gw_cert_rec *batch[] = {&ok, &bad};
    enum tsr_errcat res[2];
    EXPECT_OK(gw_store_cert_insert_batch(f->s, batch, 2, res));
    assert_int_equal(res[0], TSR_E_NONE);
    assert_int_equal(res[1], TSR_E_UNAUTH);
    EXPECT_OK(gw_store_cert_get(f->s, "a3", &c));
    assert_string_equal(c.renewed_from, "a1");
    EXPECT_FAIL(gw_store_cert_get(f->s, "a4", &c), TSR_E_NOTFOUND);
}

static void test_sandbox_delete_revokes(void **state)
{
    struct fx *f = *state;
    int revoked = -1;
    EXPECT_FAIL(gw_store_sandbox_delete(f->s, SB1, 100, &revoked), TSR_E_NOTFOUND);
    gw_sandbox_rec r = sb_rec(SB1, "one");
    gw_cert_rec first = cert_rec("f1", SB1);
    gw_env_var env[] = {{S("TOKEN"), S("abc")}};
    EXPECT_OK(gw_store_sandbox_create(f->s, &r, "p", env, 1, &first));
    create_sb(f->s, SB2, "two");
    gw_cert_rec c2 = cert_rec("f2", SB1), c3 = cert_rec("f3", SB1), o = cert_rec("f4", SB2);
    gw_cert_rec u = cert_rec("f5", "");
    EXPECT_OK(gw_store_cert_insert(f->s, &c2));
    EXPECT_OK(gw_store_cert_insert(f->s, &c3));
    EXPECT_OK(gw_store_cert_insert(f->s, &o));
    EXPECT_OK(gw_store_cert_insert(f->s, &u));
    EXPECT_OK(gw_store_cert_revoke(f->s, "f3", "superseded", 1500, NULL, NULL, NULL));

    EXPECT_FAIL(gw_store_sandbox_delete(f->s, SB1, 0, &revoked), TSR_E_INPUT);
    EXPECT_OK(gw_store_sandbox_delete(f->s, SB1, 2000, &revoked));
    assert_int_equal(revoked, 2);
    gw_cert_rec out;
    EXPECT_OK(gw_store_cert_get(f->s, "f1", &out));
    assert_int_equal(out.revoked_at, 2000);
    assert_string_equal(out.revocation_reason, "sandbox deleted");
    EXPECT_OK(gw_store_cert_get(f->s, "f2", &out));
    assert_int_equal(out.revoked_at, 2000);
    EXPECT_OK(gw_store_cert_get(f->s, "f3", &out));
    assert_int_equal(out.revoked_at, 1500);
    assert_string_equal(out.revocation_reason, "superseded");
    /* others untouched */
    EXPECT_OK(gw_store_cert_get(f->s, "f4", &out));
    assert_int_equal(out.revoked_at, 0);
    EXPECT_OK(gw_store_cert_get(f->s, "f5", &out));
    assert_int_equal(out.revoked_at, 0);
    /* a second delete finds nothing to delete */
    EXPECT_FAIL(gw_store_sandbox_delete(f->s, SB1, 2100, &revoked), TSR_E_NOTFOUND);
    gw_sandbox_rec sb;
    EXPECT_OK(gw_store_sandbox_get(f->s, SB1, &sb));
    assert_int_equal(sb.deleted_at, 2000);
    /* its secrets are gone; its config can no longer change */
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM provider_env"), 0);
    EXPECT_FAIL(gw_store_env_set(f->s, SB1, env, 1), TSR_E_STATE);
    EXPECT_FAIL(gw_store_policy_set(f->s, SB1, "x", 1, NULL), TSR_E_STATE);
}

struct collect {
    char serials[16][41];
    int64_t not_after[16];
    int n, fail_at;
};

static int collect_cb(void *arg, const char *serial, int64_t not_after)
{
    struct collect *c = arg;
    if (c->n == c->fail_at) return TSR_FAIL(TSR_E_INTERNAL, "callback says stop");
    assert_true(c->n < 16);
    snprintf(c->serials[c->n], sizeof c->serials[0], "%s", serial);
    c->not_after[c->n++] = not_after;
    return 0;
}

static void test_revoked_each(void **state)
{
    struct fx *f = *state;
    static const struct {
        const char *serial;
        int64_t not_after;
        int revoke;
    } certs[] = {
        {"e1", 500, 1},  /* revoked, expired: skipped */
        {"e2", 1000, 1}, /* revoked, expires exactly now: kept */
        {"e3", 9000, 1}, /* revoked, live: kept */
        {"e4", 9000, 0}, /* valid: skipped */
    };
    for (size_t i = 0; i < 4; i++) {
        gw_cert_rec c = cert_rec(certs[i].serial, "");
        c.not_before = 0;
        c.not_after = certs[i].not_after;
        EXPECT_OK(gw_store_cert_insert(f->s, &c));
        if (certs[i].revoke) EXPECT_OK(gw_store_cert_revoke(f->s, c.serial, "r", 400, NULL, NULL, NULL));
    }
    struct collect c = {.fail_at = -1};
    EXPECT_FAIL(gw_store_revoked_each(f->s, 1000, NULL, &c), TSR_E_INPUT);
    EXPECT_OK(gw_store_revoked_each(f->s, 1000, collect_cb, &c));
    assert_int_equal(c.n, 2);
    assert_string_equal(c.serials[0], "e2");
    assert_int_equal(c.not_after[0], 1000);
    assert_string_equal(c.serials[1], "e3");
    /* a callback error stops the walk and comes back */
    struct collect stop = {.fail_at = 1};
    EXPECT_FAIL(gw_store_revoked_each(f->s, 0, collect_cb, &stop), TSR_E_INTERNAL);
    assert_int_equal(stop.n, 1);
    /* the store is still usable after that */
    gw_cert_rec out;
    EXPECT_OK(gw_store_cert_get(f->s, "e4", &out));
}

/* ---- policies and drafts ------------------------------------------------------------ */

static void test_policy_versions(void **state)
{
    struct fx *f = *state;
    char *yaml = NULL;
    int64_t v = -1;
    EXPECT_FAIL(gw_store_policy_get(f->s, SB1, &yaml, &v), TSR_E_NOTFOUND);
    EXPECT_FAIL(gw_store_policy_set(f->s, SB1, "x", 1, &v), TSR_E_NOTFOUND);
    EXPECT_FAIL(gw_store_policy_status_add(f->s, SB1, 1, 0, "ok", 1), TSR_E_NOTFOUND);
    gw_sandbox_rec r = sb_rec(SB2, "two");
    EXPECT_OK(gw_store_sandbox_create(f->s, &r, NULL, NULL, 0, NULL));
    EXPECT_FAIL(gw_store_policy_get(f->s, SB2, &yaml, &v), TSR_E_NOTFOUND);
    assert_null(yaml);
    create_sb(f->s, SB1, "one");
    EXPECT_FAIL(gw_store_policy_set(f->s, SB1, NULL, 1, &v), TSR_E_INPUT);

    EXPECT_OK(gw_store_policy_get(f->s, SB1, &yaml, &v));
    assert_int_equal(v, 1);
    assert_string_equal(yaml, "version: 1\n");
    free(yaml);
    for (int64_t want = 2; want <= 4; want++) {
        char text[32];
        snprintf(text, sizeof text, "rev: %lld\n", (long long)want);
        int64_t nv = 0;
        EXPECT_OK(gw_store_policy_set(f->s, SB1, text, 2000 + want, &nv));
        assert_int_equal(nv, want);
        EXPECT_OK(gw_store_policy_get(f->s, SB1, &yaml, &v));
        assert_int_equal(v, want);
        assert_string_equal(yaml, text);
        free(yaml);
    }
    gw_sandbox_rec sb;
    EXPECT_OK(gw_store_sandbox_get(f->s, SB1, &sb));
    assert_int_equal(sb.policy_version, 4);
    EXPECT_OK(gw_store_policy_set(f->s, SB2, "first", 1, &v));
    assert_int_equal(v, 1);

    /* status reports */
    int status = -1;
    char *msg = NULL;
    int64_t at = 0;
    EXPECT_FAIL(gw_store_policy_status_add(f->s, SB1, 9, 1, "no such version", 5),
                TSR_E_NOTFOUND);
    EXPECT_FAIL(gw_store_policy_status_latest(f->s, SB1, 2, &status, &msg, &at),
                TSR_E_NOTFOUND);
    EXPECT_OK(gw_store_policy_status_add(f->s, SB1, 2, 1, "loading", 10));
    EXPECT_OK(gw_store_policy_status_add(f->s, SB1, 2, 2, NULL, 11));
    EXPECT_OK(gw_store_policy_status_add(f->s, SB1, 3, 3, "bad rule", 12));
    EXPECT_OK(gw_store_policy_status_latest(f->s, SB1, 2, &status, &msg, &at));
    assert_int_equal(status, 2);
    assert_string_equal(msg, "");
    assert_int_equal(at, 11);
    free(msg);
    EXPECT_OK(gw_store_policy_status_latest(f->s, SB1, 3, &status, &msg, NULL));
    assert_string_equal(msg, "bad rule");
    free(msg);
}

static void test_drafts(void **state)
{
    struct fx *f = *state;
    gw_policy_chunk *v = NULL;
    size_t n = 0;
    gw_policy_chunk in1[] = {{S("net"), S("allow: a")}, {S("fs"), S("ro: /")}};
    gw_policy_chunk in2[] = {{S(""), S("third\nmultiline")}};
    gw_policy_chunk bad[] = {{S("net"), NULL}};
    EXPECT_FAIL(gw_store_draft_add(f->s, SB1, in1, 2, 1), TSR_E_NOTFOUND);
    EXPECT_FAIL(gw_store_draft_get(f->s, SB1, &v, &n), TSR_E_NOTFOUND);
    create_sb(f->s, SB1, "one");
    create_sb(f->s, SB2, "two");
    EXPECT_FAIL(gw_store_draft_add(f->s, SB1, bad, 1, 1), TSR_E_INPUT);
    EXPECT_FAIL(gw_store_draft_add(f->s, SB1, NULL, 1, 1), TSR_E_INPUT);
    EXPECT_OK(gw_store_draft_get(f->s, SB1, &v, &n));
    assert_int_equal(n, 0);
    EXPECT_OK(gw_store_draft_add(f->s, SB1, in1, 2, 10));
    EXPECT_OK(gw_store_draft_add(f->s, SB1, NULL, 0, 11));
    EXPECT_OK(gw_store_draft_add(f->s, SB2, in2, 1, 11));
    EXPECT_OK(gw_store_draft_add(f->s, SB1, in2, 1, 12));
    EXPECT_OK(gw_store_draft_get(f->s, SB1, &v, &n));
    assert_int_equal(n, 3);
    assert_string_equal(v[0].domain, "net");
    assert_string_equal(v[0].content, "allow: a");
    assert_string_equal(v[1].domain, "fs");
    assert_string_equal(v[1].content, "ro: /");
    assert_string_equal(v[2].domain, "");
    assert_string_equal(v[2].content, "third\nmultiline");
    gw_store_free_chunks(v, n);
    EXPECT_OK(gw_store_draft_get(f->s, SB2, &v, &n));
    assert_int_equal(n, 1);
    gw_store_free_chunks(v, n);
}

/* Pages of certificates: issue (rowid) order whatever issued_at and serial
 * say, strict cursor, look-ahead, and a row inserted between two pages. */
static void test_cert_pages(void **state)
{
    struct fx *f = *state;
    gw_cert_rec *v = NULL;
    size_t n = 0;
    int more = -1;
    EXPECT_FAIL(gw_store_cert_page(f->s, SB1, 0, 10, &v, &n, &more), TSR_E_NOTFOUND);
    create_sb(f->s, SB1, "one");
    create_sb(f->s, SB2, "two");
    EXPECT_FAIL(gw_store_cert_page(f->s, SB1, 0, 0, &v, &n, &more), TSR_E_INPUT);
    EXPECT_FAIL(gw_store_cert_page(f->s, SB1, -1, 10, &v, &n, &more), TSR_E_INPUT);
    EXPECT_OK(gw_store_cert_page(f->s, SB1, 0, 10, &v, &n, &more));
    assert_int_equal(n, 0);
    assert_null(v);
    assert_int_equal(more, 0);
    /* Five of SB1 with issued_at and serials out of order; one of SB2 among them. */
    static const struct {
        const char *serial;
        int64_t issued_at;
    } rows[] = {{"0b", 1000}, {"01", 1100}, {"0e", 900}, {"0c", 1000}, {"0a", 1000}};
    static const char *const order[] = {"0b", "01", "0e", "0c", "0a", "00"};
    for (size_t i = 0; i < 5; i++) {
        gw_cert_rec c = cert_rec(rows[i].serial, SB1);
        c.issued_at = rows[i].issued_at;
        EXPECT_OK(gw_store_cert_insert(f->s, &c));
        if (i == 2) {
            gw_cert_rec o = cert_rec("0f", SB2);
            EXPECT_OK(gw_store_cert_insert(f->s, &o));
        }
    }
    /* Pages of two; after the first page a certificate is issued in an
     * earlier second and with the smallest serial: it still comes after the
     * cursor, on a later page. */
    size_t seen = 0;
    int64_t after = 0;
    for (int pages = 0;; pages++) {
        assert_true(pages < 4);
        EXPECT_OK(gw_store_cert_page(f->s, SB1, after, 2, &v, &n, &more));
        assert_true(n >= 1 && n <= 2);
        for (size_t i = 0; i < n; i++) {
            assert_string_equal(v[i].serial, order[seen + i]);
            assert_true(v[i].row > after);
            if (i > 0) assert_true(v[i].row > v[i - 1].row);
        }
        seen += n;
        after = v[n - 1].row;
        gw_store_free_certs(v, n);
        if (pages == 0) {
            assert_int_equal(more, 1);
            gw_cert_rec late = cert_rec("00", SB1);
            late.issued_at = 1;
            EXPECT_OK(gw_store_cert_insert(f->s, &late));
        }
        assert_int_equal(more, seen < 6);
        if (!more) break;
    }
    assert_int_equal(seen, 6);
    for (int limit = 1; limit <= 7; limit++) {
        seen = 0;
        after = 0;
        for (int pages = 0;; pages++) {
            assert_true(pages < 8);
            EXPECT_OK(gw_store_cert_page(f->s, SB1, after, limit, &v, &n, &more));
            assert_true(n >= 1 && n <= (size_t)limit);
            for (size_t i = 0; i < n; i++) assert_string_equal(v[i].serial, order[seen + i]);
            seen += n;
            after = v[n - 1].row;
            gw_store_free_certs(v, n);
            assert_int_equal(more, seen < 6);
            if (!more) break;
        }
        assert_int_equal(seen, 6);
    }
    /* A cursor past the end: an empty last page. */
    EXPECT_OK(gw_store_cert_page(f->s, SB1, INT64_MAX, 3, &v, &n, &more));
    assert_int_equal(n, 0);
    assert_int_equal(more, 0);
}

/* Pages of a draft: seq order, next_seq cursor, the byte budget. */
static void test_draft_pages(void **state)
{
    struct fx *f = *state;
    gw_policy_chunk *v = NULL;
    size_t n = 0;
    int64_t next = -1;
    EXPECT_FAIL(gw_store_draft_page(f->s, SB1, 0, 10, 0, &v, &n, &next), TSR_E_NOTFOUND);
    create_sb(f->s, SB1, "one");
    EXPECT_FAIL(gw_store_draft_page(f->s, SB1, -1, 10, 0, &v, &n, &next), TSR_E_INPUT);
    EXPECT_OK(gw_store_draft_page(f->s, SB1, 0, 10, 0, &v, &n, &next));
    assert_int_equal(n, 0);
    assert_int_equal(next, 0);
    gw_policy_chunk in[] = {{S("a"), S("0123456789")}, {S("b"), S("0123456789")},
                            {S("c"), S("0123456789")}, {S("d"), S("0123456789")},
                            {S("e"), S("0123456789")}};
    EXPECT_OK(gw_store_draft_add(f->s, SB1, in, 3, 1));
    EXPECT_OK(gw_store_draft_add(f->s, SB1, in + 3, 2, 2));
    /* By count. */
    EXPECT_OK(gw_store_draft_page(f->s, SB1, 0, 2, 0, &v, &n, &next));
    assert_int_equal(n, 2);
    assert_string_equal(v[1].domain, "b");
    assert_int_equal(next, 2);
    gw_store_free_chunks(v, n);
    EXPECT_OK(gw_store_draft_page(f->s, SB1, next, 2, 0, &v, &n, &next));
    assert_int_equal(n, 2);
    assert_string_equal(v[0].domain, "c");
    assert_int_equal(next, 4);
    gw_store_free_chunks(v, n);
    EXPECT_OK(gw_store_draft_page(f->s, SB1, next, 2, 0, &v, &n, &next));
    assert_int_equal(n, 1);
    assert_string_equal(v[0].domain, "e");
    assert_int_equal(next, 0);
    gw_store_free_chunks(v, n);
    /* By bytes: each chunk costs 1 + 10 + 18 = 29. */
    static const struct {
        size_t budget, n;
        int64_t next;
    } budgets[] = {{1, 1, 1}, {29, 1, 1}, {57, 1, 1}, {58, 2, 2}, {145, 5, 0}, {0, 5, 0}};
    for (size_t i = 0; i < sizeof budgets / sizeof budgets[0]; i++) {
        EXPECT_OK(gw_store_draft_page(f->s, SB1, 0, 100, budgets[i].budget, &v, &n, &next));
        assert_int_equal(n, budgets[i].n);
        assert_int_equal(next, budgets[i].next);
        gw_store_free_chunks(v, n);
    }
}

/* ---- logs ------------------------------------------------------------------------------ */

static void test_logs(void **state)
{
    struct fx *f = *state;
    gw_log_line *v = NULL;
    size_t n = 0;
    int64_t dropped = -1;
    gw_log_line b1[] = {{99, 1, S("stdout"), S("one")},
                        {99, 2, S("stderr"), S("two")},
                        {99, 3, NULL, S("three")}};
    gw_log_line b2[] = {{0, 4, S("stdout"), S("four")},
                        {0, 5, S("stdout"), S("")}};
    gw_log_line bad[] = {{0, 6, S("stdout"), S("ok")}, {0, 7, S("x"), NULL}};

    EXPECT_FAIL(gw_store_logs_append(f->s, SB1, b1, 3, 0, 100), TSR_E_NOTFOUND);
    EXPECT_FAIL(gw_store_logs_get(f->s, SB1, 0, 10, &v, &n), TSR_E_NOTFOUND);
    EXPECT_FAIL(gw_store_logs_dropped(f->s, SB1, &dropped), TSR_E_NOTFOUND);
    create_sb(f->s, SB1, "one");
    create_sb(f->s, SB2, "two");
    EXPECT_FAIL(gw_store_logs_append(f->s, SB1, bad, 2, 0, 100), TSR_E_INPUT);
    EXPECT_FAIL(gw_store_logs_append(f->s, SB1, NULL, 2, 0, 100), TSR_E_INPUT);
    EXPECT_FAIL(gw_store_logs_append(f->s, SB1, b1, 3, -1, 100), TSR_E_INPUT);
    EXPECT_FAIL(gw_store_logs_get(f->s, SB1, 0, 0, &v, &n), TSR_E_INPUT);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM logs"), 0);

    EXPECT_OK(gw_store_logs_append(f->s, SB1, b1, 3, 0, 100));
    EXPECT_OK(gw_store_logs_append(f->s, SB2, b1, 1, 0, 100)); /* own sequence */
    EXPECT_OK(gw_store_logs_append(f->s, SB1, b2, 2, 5, 101));
    EXPECT_OK(gw_store_logs_append(f->s, SB1, NULL, 0, 2, 102));

    EXPECT_OK(gw_store_logs_get(f->s, SB1, 0, 100, &v, &n));
    assert_int_equal(n, 5);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(v[i].seq, (int64_t)i + 1);
        assert_int_equal(v[i].timestamp_ms, (int64_t)i + 1);
    }
    assert_string_equal(v[0].text, "one");
    assert_string_equal(v[1].stream, "stderr");
    assert_string_equal(v[2].stream, "");
    assert_string_equal(v[3].text, "four");
    assert_string_equal(v[4].text, "");
    gw_store_free_logs(v, n);

    EXPECT_OK(gw_store_logs_get(f->s, SB1, 2, 2, &v, &n));
    assert_int_equal(n, 2);
    assert_int_equal(v[0].seq, 3);
    assert_int_equal(v[1].seq, 4);
    gw_store_free_logs(v, n);
    EXPECT_OK(gw_store_logs_get(f->s, SB1, 5, 10, &v, &n));
    assert_int_equal(n, 0);
    EXPECT_OK(gw_store_logs_get(f->s, SB2, 0, 10, &v, &n));
    assert_int_equal(n, 1);
    assert_int_equal(v[0].seq, 1);
    gw_store_free_logs(v, n);

    EXPECT_OK(gw_store_logs_dropped(f->s, SB1, &dropped));
    assert_int_equal(dropped, 7);
    EXPECT_OK(gw_store_logs_dropped(f->s, SB2, &dropped));
    assert_int_equal(dropped, 0);

    /* seq continues across reopen */
    gw_store_close(f->s);
    f->s = NULL;
    EXPECT_OK(gw_store_open(f->path, f->keys, &f->s));
    EXPECT_OK(gw_store_logs_append(f->s, SB1, b2, 1, 0, 103));
    EXPECT_OK(gw_store_logs_get(f->s, SB1, 4, 10, &v, &n));
    assert_int_equal(n, 2);
    assert_int_equal(v[1].seq, 6);
    gw_store_free_logs(v, n);
}

/* A batch resent after its acknowledgement was lost is recognised by
 * (session, batch_seq) and not stored again: neither its lines nor its
 * dropped count. Refusals first. */
static void test_log_batches_exactly_once(void **state)
{
    struct fx *f = *state;
    gw_log_line *v = NULL;
    size_t n = 0;
    int dup = -1;
    int64_t dropped = -1;
    gw_log_line b1[] = {{0, 1, S("stdout"), S("one")}, {0, 2, S("stdout"), S("two")}};
    gw_log_line b2[] = {{0, 3, S("stdout"), S("three")}};
    char long_session[GW_LOG_SESSION_MAX + 2];
    memset(long_session, 'a', sizeof long_session - 1);
    long_session[sizeof long_session - 1] = '\0';
    static const struct {
        const char *session;
        int64_t seq;
    } bad[] = {
        {"", 1}, {NULL, 2}, {"ab", 0}, {"ab", -1}, {"AB", 1}, {"a-b", 1}, {"zz", 1}, {" ab", 1},
    };
    EXPECT_FAIL(gw_store_logs_append_batch(f->s, SB1, "ab", 1, b1, 2, 0, 100, &dup),
                TSR_E_NOTFOUND);
    create_sb(f->s, SB1, "one");
    create_sb(f->s, SB2, "two");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        EXPECT_FAIL(gw_store_logs_append_batch(f->s, SB1, bad[i].session, bad[i].seq, b1, 2, 0,
                                               100, &dup),
                    TSR_E_INPUT);
    EXPECT_FAIL(gw_store_logs_append_batch(f->s, SB1, long_session, 1, b1, 2, 0, 100, &dup),
                TSR_E_INPUT);
    long_session[GW_LOG_SESSION_MAX] = '\0'; /* exactly the maximum */
    EXPECT_OK(gw_store_logs_append_batch(f->s, SB2, long_session, 1, b1, 1, 0, 100, &dup));
    assert_int_equal(dup, 0);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM logs WHERE sandbox_id = '" SB1 "'"),
                     0);

    /* Batch 1 stored; sent again (the acknowledgement was lost): nothing new. */
    EXPECT_OK(gw_store_logs_append_batch(f->s, SB1, "0a1b", 1, b1, 2, 4, 100, &dup));
    assert_int_equal(dup, 0);
    EXPECT_OK(gw_store_logs_append_batch(f->s, SB1, "0a1b", 1, b1, 2, 4, 101, &dup));
    assert_int_equal(dup, 1);
    /* Batch 2, then batch 1 and 2 again (a whole window resent). */
    EXPECT_OK(gw_store_logs_append_batch(f->s, SB1, "0a1b", 2, b2, 1, 1, 102, &dup));
    assert_int_equal(dup, 0);
    EXPECT_OK(gw_store_logs_append_batch(f->s, SB1, "0a1b", 1, b1, 2, 4, 103, &dup));
    assert_int_equal(dup, 1);
    EXPECT_OK(gw_store_logs_append_batch(f->s, SB1, "0a1b", 2, b2, 1, 1, 103, &dup));
    assert_int_equal(dup, 1);
    EXPECT_OK(gw_store_logs_get(f->s, SB1, 0, 100, &v, &n));
    assert_int_equal(n, 3);
    assert_string_equal(v[0].text, "one");
    assert_string_equal(v[2].text, "three");
    assert_int_equal(v[2].seq, 3);
    gw_store_free_logs(v, n);
    EXPECT_OK(gw_store_logs_dropped(f->s, SB1, &dropped));
    assert_int_equal(dropped, 5);
    /* A new session (a restarted supervisor) starts again at 1; another
     * sandbox's marks are its own; no session = no check. */
    EXPECT_OK(gw_store_logs_append_batch(f->s, SB1, "ff", 1, b2, 1, 0, 104, &dup));
    assert_int_equal(dup, 0);
    EXPECT_OK(gw_store_logs_append_batch(f->s, SB1, NULL, 0, b2, 1, 0, 105, &dup));
    assert_int_equal(dup, 0);
    EXPECT_OK(gw_store_logs_append(f->s, SB1, b2, 1, 0, 105));
    EXPECT_OK(gw_store_logs_append_batch(f->s, SB1, "ff", 1, b2, 1, 0, 106, &dup));
    assert_int_equal(dup, 1);
    EXPECT_OK(gw_store_logs_append_batch(f->s, SB1, "ff", 3, b2, 1, 0, 106, &dup));
    assert_int_equal(dup, 0);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM logs WHERE sandbox_id = '" SB1 "'"),
                     7);
    EXPECT_OK(gw_store_logs_append_batch(f->s, SB2, long_session, 1, b1, 1, 0, 100, &dup));
    assert_int_equal(dup, 1);
}

/* A database at schema version 1 (as a session-1 gateway left it) migrates
 * to the current version on open, keeps its rows, and takes numbered batches. */
SQLITE_ONLY static void test_migrate_from_version_1(void **state)
{
    struct fx *f = *state;
    char old[160];
    snprintf(old, sizeof old, "%s/old.db", f->dir);
    size_t nm = 0;
    const gw_migration *m = gw_store_migrations(&nm);
    assert_true(nm >= 2);
    int fd = open(old, O_WRONLY | O_CREAT | O_EXCL, 0600); /* raw_exec opens, never creates */
    assert_true(fd >= 0);
    close(fd);
    raw_exec(old, "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY NOT NULL,"
                  " applied_at INTEGER NOT NULL) STRICT");
    raw_exec(old, m[0].sql);
    raw_exec(old, "INSERT INTO schema_migrations(version, applied_at) VALUES (1, 1);"
                  "INSERT INTO sandboxes(id, name, driver, state, created_at, log_seq) VALUES ('" SB1
                  "', 'one', 'process', 'running', 1, 1);"
                  "INSERT INTO logs(sandbox_id, seq, timestamp_ms, stream, text, received_at) "
                  "VALUES ('" SB1 "', 1, 1, 'stdout', 'before', 1);"
                  "INSERT INTO certificates(serial, spiffe_id, sandbox_id, not_before, not_after,"
                  " issued_at) VALUES ('0b', 'spiffe://x/sandbox/" SB1 "', '" SB1 "', 1, 2, 5);");
    gw_store *s = NULL;
    EXPECT_OK(gw_store_open(old, f->keys, &s));
    assert_int_equal(raw_int(old, "SELECT MAX(version) FROM schema_migrations"),
                     GW_STORE_SCHEMA_VERSION);
    assert_int_equal(raw_int(old, "SELECT log_batch FROM sandboxes"), 0);
    int dup = -1;
    gw_log_line b[] = {{0, 2, S("stdout"), S("after")}};
    EXPECT_OK(gw_store_logs_append_batch(s, SB1, "01", 1, b, 1, 0, 2, &dup));
    assert_int_equal(dup, 0);
    EXPECT_OK(gw_store_logs_append_batch(s, SB1, "01", 1, b, 1, 0, 2, &dup));
    assert_int_equal(dup, 1);
    gw_log_line *v = NULL;
    size_t n = 0;
    EXPECT_OK(gw_store_logs_get(s, SB1, 0, 10, &v, &n));
    assert_int_equal(n, 2);
    assert_string_equal(v[0].text, "before");
    assert_string_equal(v[1].text, "after");
    assert_int_equal(v[1].seq, 2);
    gw_store_free_logs(v, n);
    /* The old certificate pages, and one issued after it comes later. */
    gw_cert_rec c = cert_rec("01", SB1);
    c.issued_at = 1;
    EXPECT_OK(gw_store_cert_insert(s, &c));
    gw_cert_rec *certs = NULL;
    int more = -1;
    EXPECT_OK(gw_store_cert_page(s, SB1, 0, 1, &certs, &n, &more));
    assert_int_equal(n, 1);
    assert_string_equal(certs[0].serial, "0b");
    assert_int_equal(more, 1);
    int64_t after = certs[0].row;
    gw_store_free_certs(certs, n);
    EXPECT_OK(gw_store_cert_page(s, SB1, after, 1, &certs, &n, &more));
    assert_int_equal(n, 1);
    assert_string_equal(certs[0].serial, "01");
    assert_int_equal(more, 0);
    gw_store_free_certs(certs, n);
    gw_store_close(s);
}

/* ---- what a sandbox runs, how it ended --------------------------------------------- */

static void test_sandbox_spec_and_status(void **state)
{
    struct fx *f = *state;
    gw_sandbox_rec r = sb_rec(SB1, "spec");
    strcpy(r.image, "registry.example.com/tessera/sandbox:1.2");
    char *cmd[] = {S("/bin/sh"), S("-c"), S("id; echo \"a b\""), S("")};
    gw_env_var plain[] = {
        {S("ZED"), S("last")}, {S("GREETING"), S("hello world")}, {S("E"), S("")}};
    gw_sandbox_spec spec = {.command = cmd, .n_command = 4, .env = plain, .n_env = 3};
    /* A name twice in the plain env: nothing of the sandbox is written. */
    gw_env_var twice[] = {{S("A"), S("1")}, {S("A"), S("2")}};
    gw_sandbox_spec bad = {.command = cmd, .n_command = 4, .env = twice, .n_env = 2};
    EXPECT_FAIL(gw_store_sandbox_create_spec(f->s, &r, "version: 1\n", NULL, 0, NULL, &bad),
                TSR_E_INPUT);
    gw_sandbox_rec got;
    EXPECT_FAIL(gw_store_sandbox_get(f->s, SB1, &got), TSR_E_NOTFOUND);
    EXPECT_OK(gw_store_sandbox_create_spec(f->s, &r, "version: 1\n", NULL, 0, NULL, &spec));

    EXPECT_OK(gw_store_sandbox_get(f->s, SB1, &got));
    assert_string_equal(got.image, "registry.example.com/tessera/sandbox:1.2");
    assert_false(got.exited);
    gw_sandbox_spec out;
    EXPECT_OK(gw_store_sandbox_spec_get(f->s, SB1, &out));
    assert_int_equal(out.n_command, 4);
    for (size_t i = 0; i < 4; i++) assert_string_equal(out.command[i], cmd[i]);
    assert_int_equal(out.n_env, 3); /* by name */
    assert_string_equal(out.env[0].name, "E");
    assert_string_equal(out.env[0].value, "");
    assert_string_equal(out.env[1].name, "GREETING");
    assert_string_equal(out.env[1].value, "hello world");
    assert_string_equal(out.env[2].name, "ZED");
    assert_string_equal(out.state_detail, "");
    gw_store_free_spec(&out);
    EXPECT_FAIL(gw_store_sandbox_spec_get(f->s, SB2, &out), TSR_E_NOTFOUND);
    assert_null(out.command);

    /* It ended: state, exit status and last lines; then a state change
     * that keeps the detail (NULL), then one that clears it. */
    EXPECT_OK(gw_store_sandbox_set_status(f->s, SB1, "stopped", true, 3, "line 1\nline 2"));
    EXPECT_OK(gw_store_sandbox_get(f->s, SB1, &got));
    assert_string_equal(got.state, "stopped");
    assert_true(got.exited);
    assert_int_equal(got.exit_code, 3);
    EXPECT_OK(gw_store_sandbox_spec_get(f->s, SB1, &out));
    assert_string_equal(out.state_detail, "line 1\nline 2");
    gw_store_free_spec(&out);
    EXPECT_OK(gw_store_sandbox_set_status(f->s, SB1, "failed", true, 3, NULL));
    EXPECT_OK(gw_store_sandbox_spec_get(f->s, SB1, &out));
    assert_string_equal(out.state_detail, "line 1\nline 2");
    gw_store_free_spec(&out);
    EXPECT_OK(gw_store_sandbox_set_status(f->s, SB1, "running", false, 0, ""));
    EXPECT_OK(gw_store_sandbox_get(f->s, SB1, &got));
    assert_string_equal(got.state, "running");
    assert_false(got.exited);
    assert_int_equal(got.exit_code, 0);

    /* A deleted sandbox's state is history: not written; what it ran stays. */
    int revoked = 0;
    EXPECT_OK(gw_store_sandbox_delete(f->s, SB1, 2000, &revoked));
    EXPECT_FAIL(gw_store_sandbox_set_status(f->s, SB1, "stopped", true, 0, "x"), TSR_E_NOTFOUND);
    EXPECT_FAIL(gw_store_sandbox_set_status(f->s, SB2, "stopped", true, 0, "x"), TSR_E_NOTFOUND);
    EXPECT_OK(gw_store_sandbox_spec_get(f->s, SB1, &out));
    assert_int_equal(out.n_command, 4);
    gw_store_free_spec(&out);
    /* A sandbox without a spec has an empty one; exit codes fit an int. */
    create_sb(f->s, SB3, "plain");
    EXPECT_OK(gw_store_sandbox_spec_get(f->s, SB3, &out));
    assert_int_equal(out.n_command, 0);
    assert_int_equal(out.n_env, 0);
    gw_store_free_spec(&out);
    raw_exec(f->path, "UPDATE sandboxes SET exit_code = 4294967296 WHERE id = '" SB3 "'");
    EXPECT_FAIL(gw_store_sandbox_get(f->s, SB3, &got), TSR_E_IO);
}

/* ---- provider env ----------------------------------------------------------------------- */

#define SECRET "sk-live-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"

/* 1 if `needle` appears in the file's bytes. */
static int file_contains(const char *path, const char *needle)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) return 0;
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t r;
    while ((r = fread(buf + len, 1, cap - len, fp)) > 0) {
        len += r;
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    fclose(fp);
    int found = memmem(buf, len, needle, strlen(needle)) != NULL;
    free(buf);
    return found;
}

static void test_env_round_trip(void **state)
{
    struct fx *f = *state;
    gw_env_var *v = NULL;
    size_t n = 0;
    EXPECT_FAIL(gw_store_env_get(f->s, SB1, &v, &n), TSR_E_NOTFOUND);
    gw_env_var env[] = {{S("OPENAI_API_KEY"), S(SECRET)},
                        {S("EMPTY"), S("")},
                        {S("ANTHROPIC_KEY"), S("second-" SECRET)}};
    gw_sandbox_rec r = sb_rec(SB1, "one");
    EXPECT_OK(gw_store_sandbox_create(f->s, &r, "p", env, 3, NULL));
    EXPECT_OK(gw_store_env_get(f->s, SB1, &v, &n));
    assert_int_equal(n, 3);
    assert_string_equal(v[0].name, "ANTHROPIC_KEY"); /* by name */
    assert_string_equal(v[0].value, "second-" SECRET);
    assert_string_equal(v[1].name, "EMPTY");
    assert_string_equal(v[1].value, "");
    assert_string_equal(v[2].name, "OPENAI_API_KEY");
    assert_string_equal(v[2].value, SECRET);
    gw_store_free_env(v, n);

    /* the stored column is ciphertext: the raw bytes never hold the secret */
    assert_int_equal(raw_int(f->path, gw_store_is_pg(f->path)
                                          ? "SELECT count(*) FROM provider_env WHERE position("
                                            "convert_to('" SECRET "', 'UTF8') in ciphertext) > 0"
                                          : "SELECT count(*) FROM provider_env WHERE "
                                            "instr(ciphertext, CAST('" SECRET "' AS BLOB)) > 0"),
                     0);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM provider_env WHERE "
                                      "length(ciphertext) = length('" SECRET "') + 16 "
                                      "AND length(nonce) = 12 AND key_version = 1"), 1);
    /* nor do the database files (sqlite's: the server's are not ours to read) */
    char wal[700];
    snprintf(wal, sizeof wal, "%s-wal", f->path);
    if (!gw_store_is_pg(f->path)) {
        assert_int_equal(file_contains(f->path, "4f9a8b7c6d5e"), 0);
        assert_int_equal(file_contains(wal, "4f9a8b7c6d5e"), 0);
        assert_int_equal(file_contains(wal, "OPENAI_API_KEY"), 1); /* the scan can see text */
    }

    /* replace all; a failing replacement (duplicate name) keeps the old set */
    gw_env_var dup[] = {{S("A"), S("1")}, {S("A"), S("2")}};
    EXPECT_FAIL(gw_store_env_set(f->s, SB1, dup, 2), TSR_E_EXISTS);
    EXPECT_OK(gw_store_env_get(f->s, SB1, &v, &n));
    assert_int_equal(n, 3);
    gw_store_free_env(v, n);
    gw_env_var repl[] = {{S("ONLY"), S("this")}};
    EXPECT_FAIL(gw_store_env_set(f->s, SB2, repl, 1), TSR_E_NOTFOUND);
    EXPECT_OK(gw_store_env_set(f->s, SB1, repl, 1));
    EXPECT_OK(gw_store_env_get(f->s, SB1, &v, &n));
    assert_int_equal(n, 1);
    assert_string_equal(v[0].name, "ONLY");
    assert_string_equal(v[0].value, "this");
    gw_store_free_env(v, n);
    EXPECT_OK(gw_store_env_set(f->s, SB1, NULL, 0));
    EXPECT_OK(gw_store_env_get(f->s, SB1, &v, &n));
    assert_int_equal(n, 0);
}

static void test_env_moved_ciphertext(void **state)
{
    struct fx *f = *state;
    gw_env_var *v = (gw_env_var *)1;
    size_t n = 7;
    gw_env_var a[] = {{S("KEY"), S("alpha-secret")}, {S("OTHER"), S("o")}};
    gw_env_var b[] = {{S("KEY"), S("bravo-secret")}};
    gw_sandbox_rec ra = sb_rec(SB1, "a"), rb = sb_rec(SB2, "b");
    EXPECT_OK(gw_store_sandbox_create(f->s, &ra, "p", a, 2, NULL));
    EXPECT_OK(gw_store_sandbox_create(f->s, &rb, "p", b, 1, NULL));

    /* copy A's KEY ciphertext into B's KEY row */
    raw_exec(f->path,
             "UPDATE provider_env SET (key_version, nonce, ciphertext) = "
             "(SELECT key_version, nonce, ciphertext FROM provider_env "
             " WHERE sandbox_id = '" SB1 "' AND name = 'KEY') "
             "WHERE sandbox_id = '" SB2 "' AND name = 'KEY'");
    EXPECT_FAIL(gw_store_env_get(f->s, SB2, &v, &n), TSR_E_STATE);
    assert_null(v);
    assert_int_equal(n, 0);
    /* A's KEY ciphertext under another name of A */
    raw_exec(f->path,
             "UPDATE provider_env SET (key_version, nonce, ciphertext) = "
             "(SELECT key_version, nonce, ciphertext FROM provider_env "
             " WHERE sandbox_id = '" SB1 "' AND name = 'KEY') "
             "WHERE sandbox_id = '" SB1 "' AND name = 'OTHER'");
    EXPECT_FAIL(gw_store_env_get(f->s, SB1, &v, &n), TSR_E_STATE);
    assert_null(v);
    /* a flipped ciphertext byte */
    raw_exec(f->path, gw_store_is_pg(f->path)
                          ? "UPDATE provider_env SET ciphertext = "
                            "set_byte(ciphertext, 0, get_byte(ciphertext, 0) # 1) "
                            "WHERE sandbox_id = '" SB1 "' AND name = 'OTHER'"
                          : "UPDATE provider_env SET ciphertext = "
                            "CAST(('x' || substr(ciphertext, 2)) AS BLOB) "
                            "WHERE sandbox_id = '" SB1 "' AND name = 'OTHER'");
    EXPECT_FAIL(gw_store_env_get(f->s, SB1, &v, &n), TSR_E_STATE);
    /* an unknown key version */
    raw_exec(f->path, "UPDATE provider_env SET key_version = 9 WHERE sandbox_id = '" SB2 "'");
    EXPECT_FAIL(gw_store_env_get(f->s, SB2, &v, &n), TSR_E_STATE);
    assert_non_null(strstr(tsr_errmsg(), "key version 9"));
}

static void test_env_no_keyring(void **state)
{
    struct fx *f = *state;
    gw_store_close(f->s);
    f->s = NULL;
    EXPECT_OK(gw_store_open(f->path, NULL, &f->s));
    gw_sandbox_rec r = sb_rec(SB1, "one");
    gw_env_var env[] = {{S("K"), S("v")}};
    gw_env_var *v = NULL;
    size_t n = 0;
    EXPECT_FAIL(gw_store_sandbox_create(f->s, &r, "p", env, 1, NULL), TSR_E_STATE);
    EXPECT_OK(gw_store_sandbox_create(f->s, &r, "p", NULL, 0, NULL));
    EXPECT_FAIL(gw_store_env_set(f->s, SB1, env, 1), TSR_E_STATE);
    EXPECT_FAIL(gw_store_env_get(f->s, SB1, &v, &n), TSR_E_STATE);
    EXPECT_FAIL(gw_store_env_reencrypt(f->s, &n), TSR_E_STATE);
    gw_store_set_keyring(f->s, f->keys);
    EXPECT_OK(gw_store_env_set(f->s, SB1, env, 1));
}

static void test_env_reencrypt(void **state)
{
    struct fx *f = *state;
    gw_env_var env1[] = {{S("K1"), S("v1")}, {S("K2"), S("v2")}};
    gw_env_var env2[] = {{S("K3"), S("v3")}};
    gw_sandbox_rec r1 = sb_rec(SB1, "one"), r2 = sb_rec(SB2, "two");
    EXPECT_OK(gw_store_sandbox_create(f->s, &r1, "p", env1, 2, NULL));
    EXPECT_OK(gw_store_sandbox_create(f->s, &r2, "p", env2, 1, NULL));

    gw_keyring *rotated = keyring("1 " HEX_A "\n2 " HEX_B "\n");
    gw_keyring *only_new = keyring("2 " HEX_B "\n");
    gw_env_var *v = NULL;
    size_t n = 0, count = 99;

    /* before: the new-only ring cannot read the old values */
    gw_store_set_keyring(f->s, only_new);
    EXPECT_FAIL(gw_store_env_get(f->s, SB1, &v, &n), TSR_E_STATE);
    EXPECT_FAIL(gw_store_env_reencrypt(f->s, &count), TSR_E_STATE);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM provider_env WHERE key_version = 1"),
                     3);

    gw_store_set_keyring(f->s, rotated);
    EXPECT_OK(gw_store_env_reencrypt(f->s, &count));
    assert_int_equal(count, 3);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM provider_env WHERE key_version = 2"),
                     3);
    EXPECT_OK(gw_store_env_reencrypt(f->s, &count));
    assert_int_equal(count, 0);

    /* after: readable with the new key alone, values intact */
    gw_store_set_keyring(f->s, only_new);
    EXPECT_OK(gw_store_env_get(f->s, SB1, &v, &n));
    assert_int_equal(n, 2);
    assert_string_equal(v[0].value, "v1");
    assert_string_equal(v[1].value, "v2");
    gw_store_free_env(v, n);
    EXPECT_OK(gw_store_env_get(f->s, SB2, &v, &n));
    assert_string_equal(v[0].value, "v3");
    gw_store_free_env(v, n);
    gw_store_set_keyring(f->s, f->keys);
    gw_keyring_free(rotated);
    gw_keyring_free(only_new);
}

/* ---- failures of the database itself ----------------------------------------------------- */

static void test_read_only_connection(void **state)
{
    struct fx *f = *state;
    create_sb(f->s, SB1, "one");
    EXPECT_OK(gw_store_set_read_only(f->s, true));
    gw_sandbox_rec r = sb_rec(SB2, "two");
    gw_cert_rec c = cert_rec("c1", SB2);
    gw_log_line l[] = {{0, 1, S("o"), S("x")}};
    gw_env_var env[] = {{S("K"), S("v")}};
    EXPECT_FAIL(gw_store_sandbox_create(f->s, &r, "p", env, 1, &c), TSR_E_IO);
    EXPECT_FAIL(gw_store_logs_append(f->s, SB1, l, 1, 3, 1), TSR_E_IO);
    EXPECT_FAIL(gw_store_sandbox_delete(f->s, SB1, 5, NULL), TSR_E_IO);
    EXPECT_FAIL(gw_store_sandbox_set_state(f->s, SB1, "x"), TSR_E_IO);
    gw_sandbox_rec out;
    EXPECT_OK(gw_store_sandbox_get(f->s, SB1, &out)); /* reads work */
    assert_int_equal(out.deleted_at, 0);
    EXPECT_OK(gw_store_set_read_only(f->s, false));
    EXPECT_OK(gw_store_logs_append(f->s, SB1, l, 1, 0, 1));
    EXPECT_FAIL(gw_store_sandbox_get(f->s, SB2, &out), TSR_E_NOTFOUND);
}

/* A write-protected database file. As root (which ignores file modes) this
 * runs in a child that becomes nobody. Returns a code for the parent:
 * 0 = as expected. With `dir_writable` sqlite can make its -shm file, so the
 * store opens, reads, and fails every write with TSR_E_IO; without, a WAL
 * database cannot even be read and the open fails with TSR_E_IO. */
static int read_only_child(const char *path, const gw_keyring *keys, int drop, int dir_writable)
{
    if (drop && (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0))
        return 2;
    if (access(path, W_OK) == 0 || access(path, R_OK) != 0) return 3; /* would prove nothing */
    gw_store *s = NULL;
    int rc = gw_store_open(path, keys, &s);
    if (!dir_writable) {
        if (rc == 0 || tsr_errcat() != TSR_E_IO) {
            fprintf(stderr, "open: rc %d: %s\n", rc, tsr_errmsg());
            gw_store_close(s);
            return 9;
        }
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "open: %s\n", tsr_errmsg());
        return 4;
    }
    gw_sandbox_rec out;
    int code = 0;
    if (gw_store_sandbox_get(s, SB1, &out) != 0) code = 5;
    gw_log_line l[] = {{0, 1, S("o"), S("x")}};
    if (!code && (gw_store_logs_append(s, SB1, l, 1, 0, 1) == 0 || tsr_errcat() != TSR_E_IO))
        code = 6;
    gw_cert_rec c = cert_rec("c9", SB1);
    if (!code && (gw_store_cert_insert(s, &c) == 0 || tsr_errcat() != TSR_E_IO)) code = 7;
    if (!code && (gw_store_sandbox_delete(s, SB1, 9, NULL) == 0 || tsr_errcat() != TSR_E_IO))
        code = 8;
    if (code) fprintf(stderr, "code %d: %s\n", code, tsr_errmsg());
    gw_store_close(s);
    return code;
}

static void run_read_only_child(struct fx *f, int root, int dir_writable)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) _exit(read_only_child(f->path, f->keys, root, dir_writable));
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

SQLITE_ONLY static void test_read_only_file(void **state)
{
    struct fx *f = *state;
    create_sb(f->s, SB1, "one");
    gw_store_close(f->s);
    f->s = NULL;
    int root = geteuid() == 0;
    char data[128], p[700];
    snprintf(data, sizeof data, "%s/data", f->dir);
    const char *suffix[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", f->path, suffix[i]);
        if (access(p, F_OK) != 0) continue;
        if (root) assert_int_equal(chown(p, 65534, 65534), 0);
        assert_int_equal(chmod(p, 0400), 0);
    }
    assert_int_equal(chmod(f->dir, 0711), 0);
    if (root) assert_int_equal(chown(data, 65534, 65534), 0);
    run_read_only_child(f, root, 1);

    /* and with a read-only directory, after a clean close removed -wal/-shm */
    for (int i = 1; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", f->path, suffix[i]);
        unlink(p);
    }
    assert_int_equal(chmod(data, 0500), 0);
    run_read_only_child(f, root, 0);

    assert_int_equal(chmod(data, 0700), 0);
    assert_int_equal(chmod(f->dir, 0700), 0);
    assert_int_equal(chmod(f->path, 0600), 0);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM logs"), 0);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM certificates"), 0);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sandboxes WHERE deleted_at IS NULL"),
                     1);
}

SQLITE_ONLY static void test_busy_times_out(void **state)
{
    struct fx *f = *state;
    create_sb(f->s, SB1, "one");
    sqlite3 *db = raw_open(f->path);
    assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    gw_log_line l[] = {{0, 1, S("o"), S("x")}};
    EXPECT_FAIL(gw_store_logs_append(f->s, SB1, l, 1, 0, 1), TSR_E_IO);
    assert_non_null(strstr(tsr_errmsg(), "locked"));
    /* reads still work under a writer (WAL) */
    gw_sandbox_rec out;
    EXPECT_OK(gw_store_sandbox_get(f->s, SB1, &out));
    assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    EXPECT_OK(gw_store_logs_append(f->s, SB1, l, 1, 0, 1));
}

static void test_corrupt_rows_fail_closed(void **state)
{
    struct fx *f = *state;
    create_sb(f->s, SB1, "one");
    gw_cert_rec c = cert_rec("d1", SB1);
    EXPECT_OK(gw_store_cert_insert(f->s, &c));
    EXPECT_OK(gw_store_cert_revoke(f->s, "d1", "r", 50, NULL, NULL, NULL));
    gw_cert_rec out;
    gw_sandbox_rec sb;
    /* a revoked cert whose revoked_at reads as 0 ("valid") */
    raw_exec(f->path, "UPDATE certificates SET revoked_at = 0 WHERE serial = 'd1'");
    EXPECT_FAIL(gw_store_cert_get(f->s, "d1", &out), TSR_E_IO);
    /* text too long for the record */
    raw_exec(f->path, "UPDATE sandboxes SET state = 'a-state-that-is-far-too-long'");
    EXPECT_FAIL(gw_store_sandbox_get(f->s, SB1, &sb), TSR_E_IO);
    /* an embedded NUL (PostgreSQL's text cannot hold one) */
    if (gw_store_is_pg(f->path)) return;
    raw_exec(f->path, "UPDATE sandboxes SET state = 'ru' || char(0) || 'n'");
    EXPECT_FAIL(gw_store_sandbox_get(f->s, SB1, &sb), TSR_E_IO);
}

/* ---- two threads, two handles, one file ------------------------------------------------ */

enum { ROUNDS = 60, LINES = 5 };

struct writer {
    const char *path;
    const gw_keyring *keys;
    int id, rc;
    char err[256];
};

static void *writer_thread(void *p)
{
    struct writer *w = p;
    gw_store *s = NULL;
    w->rc = -1;
    if (gw_store_open(w->path, w->keys, &s) != 0) goto out;
    for (int r = 0; r < ROUNDS; r++) {
        gw_log_line lines[LINES];
        char text[LINES][32];
        for (int i = 0; i < LINES; i++) {
            snprintf(text[i], sizeof text[i], "w%d r%d l%d", w->id, r, i);
            lines[i] = (gw_log_line){0, r * LINES + i, S("stdout"), text[i]};
        }
        if (gw_store_logs_append(s, SB1, lines, LINES, w->id, 1000 + r) != 0) goto out;
        gw_cert_rec c;
        char serial[41];
        snprintf(serial, sizeof serial, "%02x%04x", w->id, r);
        c = cert_rec(serial, SB1);
        if (gw_store_cert_insert(s, &c) != 0) goto out;
    }
    w->rc = 0;
out:
    if (w->rc != 0) snprintf(w->err, sizeof w->err, "%s", tsr_errmsg());
    gw_store_close(s);
    return NULL;
}

static void test_two_writers(void **state)
{
    struct fx *f = *state;
    create_sb(f->s, SB1, "one");
    pthread_t t[2];
    struct writer w[2];
    for (int i = 0; i < 2; i++) {
        w[i] = (struct writer){.path = f->path, .keys = f->keys, .id = i + 1};
        assert_int_equal(pthread_create(&t[i], NULL, writer_thread, &w[i]), 0);
    }
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++) {
        if (w[i].rc != 0) print_error("writer %d: %s\n", i + 1, w[i].err);
        assert_int_equal(w[i].rc, 0);
    }
    /* nothing lost: every line, seq 1..N without gaps; every cert */
    gw_log_line *v = NULL;
    size_t n = 0;
    EXPECT_OK(gw_store_logs_get(f->s, SB1, 0, GW_STORE_MAX_PAGE, &v, &n));
    assert_int_equal(n, 2 * ROUNDS * LINES);
    int per_writer[3] = {0, 0, 0};
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(v[i].seq, (int64_t)i + 1);
        int wid = v[i].text[1] - '0';
        assert_true(wid == 1 || wid == 2);
        /* each batch stays contiguous and in order */
        if (i % LINES != 0) assert_int_equal(v[i].text[1], v[i - 1].text[1]);
        per_writer[wid]++;
    }
    assert_int_equal(per_writer[1], ROUNDS * LINES);
    assert_int_equal(per_writer[2], ROUNDS * LINES);
    gw_store_free_logs(v, n);
    gw_cert_rec *certs = NULL;
    EXPECT_OK(gw_store_cert_list(f->s, SB1, &certs, &n));
    assert_int_equal(n, 2 * ROUNDS);
    gw_store_free_certs(certs, n);
    int64_t dropped = 0;
    EXPECT_OK(gw_store_logs_dropped(f->s, SB1, &dropped));
    assert_int_equal(dropped, ROUNDS * (1 + 2));
}

/* Opening the database again in this process must not drop the locks our
 * first connection holds: else another process that opens and closes the
 * file believes it was the last user, checkpoints and deletes the WAL, and
 * every later commit of ours goes into the deleted file (lost at restart). */
SQLITE_ONLY static void test_second_open_keeps_the_wal(void **state)
{
    struct fx *f = *state;
    create_sb(f->s, SB1, "one");
    gw_store *again = NULL;
    EXPECT_OK(gw_store_open(f->path, f->keys, &again));

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {   /* another program (not a fork: sqlite's state is per process) */
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, STDOUT_FILENO);
        execlp("sqlite3", "sqlite3", f->path, "SELECT count(*) FROM sandboxes", (char *)NULL);
        _exit(127);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    char wal[sizeof f->path + 8];
    snprintf(wal, sizeof wal, "%s-wal", f->path);
    struct stat st;
    assert_int_equal(stat(wal, &st), 0);   /* still ours */
    create_sb(f->s, SB2, "two");
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sandboxes"), 2);
    gw_store_close(again);
}

/* One gateway per sqlite file: no shared renewal count (the gateway's own
 * limiter counts). */
SQLITE_ONLY static void test_renew_take_not_shared(void **state)
{
    struct fx *f = *state;
    bool shared = true, allowed = true;
    EXPECT_OK(gw_store_renew_take(f->s, SB1, 3, 60000, &shared, &allowed));
    assert_false(shared);
    assert_false(allowed);
    uint64_t number = 7;
    shared = true;
    EXPECT_OK(gw_store_crl_number_next(f->s, 1000, &number, &shared));
    assert_false(shared);
    assert_int_equal(number, 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)

/* The contract every backend keeps (test_gw_store_pg.c runs these too). */
#define CONTRACT_TESTS \
    T(test_open_newer_schema), \
    T(test_reopen_idempotent), \
    T(test_concurrent_first_open), \
    T(test_sandbox_create_refusals), \
    T(test_sandbox_half_written_create), \
    T(test_sandbox_get_find_list), \
    T(test_sandbox_spec_and_status), \
    T(test_cert_insert_refusals), \
    T(test_cert_get_list), \
    T(test_cert_revoke), \
    T(test_cert_lineage_revoked_whole), \
    T(test_cert_renewal_of_revoked_refused), \
    T(test_sandbox_delete_revokes), \
    T(test_revoked_each), \
    T(test_policy_versions), \
    T(test_drafts), \
    T(test_cert_pages), \
    T(test_draft_pages), \
    T(test_logs), \
    T(test_log_batches_exactly_once), \
    T(test_env_round_trip), \
    T(test_env_moved_ciphertext), \
    T(test_env_no_keyring), \
    T(test_env_reencrypt), \
    T(test_read_only_connection), \
    T(test_corrupt_rows_fail_closed), \
    T(test_two_writers),

#ifndef STORE_PG
int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_open_refusals),
        T(test_open_creates_private_files),
        T(test_migrate_from_version_1),
        T(test_read_only_file),
        T(test_busy_times_out),
        T(test_second_open_keeps_the_wal),
        T(test_renew_take_not_shared),
        CONTRACT_TESTS
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
#endif
