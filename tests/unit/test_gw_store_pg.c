/* gw_store on PostgreSQL: the contract tests of test_gw_store.c (every one
 * that is not about sqlite's file) against a real server, and what only a
 * server has: its connection errors. The binary starts its own cluster
 * (tests/pg/cluster.sh) under TMPDIR and removes it at the end. */
#define STORE_PG 1
#include "test_gw_store.c"
#include "tu_pg.h"

static tu_pg cluster;

/* What the gateway says at start when the database is not usable. */
static void test_pg_open_refusals(void **state)
{
    struct fx *f = *state;
    gw_store *s = (gw_store *)1;
    EXPECT_FAIL(gw_store_open(GW_STORE_PG_PREFIX "postgresql://[::1", f->keys, &s), TSR_E_INPUT);
    EXPECT_FAIL(gw_store_open(GW_STORE_PG_PREFIX "nonsense", f->keys, &s), TSR_E_INPUT);
    assert_non_null(strstr(tsr_errmsg(), "invalid database DSN"));
    assert_null(s);
    /* refused: no server on that socket */
    char loc[700];
    snprintf(loc, sizeof loc, GW_STORE_PG_PREFIX "host=%s/nowhere user=tessera dbname=postgres",
             cluster.dir);
    EXPECT_FAIL(gw_store_open(loc, f->keys, &s), TSR_E_IO);
    assert_non_null(strstr(tsr_errmsg(), "cannot connect to the database"));
    /* a database that does not exist */
    snprintf(loc, sizeof loc, "%s dbname=missing", f->path);
    EXPECT_FAIL(gw_store_open(loc, f->keys, &s), TSR_E_IO);
    assert_non_null(strstr(tsr_errmsg(), "database \"missing\" does not exist"));
    /* a database that refuses writes, as a standby does */
    raw_exec(f->path, "DROP DATABASE IF EXISTS ro");
    raw_exec(f->path, "CREATE DATABASE ro");
    raw_exec(f->path, "ALTER DATABASE ro SET default_transaction_read_only = on");
    snprintf(loc, sizeof loc, "%s dbname=ro", f->path);
    EXPECT_FAIL(gw_store_open(loc, f->keys, &s), TSR_E_STATE);
    assert_string_equal(tsr_errmsg(), "database refuses writes (default_transaction_read_only "
                                      "is on)");
    assert_null(s);
}

/* The renewal rate limit is counted by the database: every handle (every
 * gateway) takes from one window. */
static void test_pg_renew_take_shared(void **state)
{
    struct fx *f = *state;
    gw_store *other = NULL;
    bool shared = false, allowed = false;
    EXPECT_OK(gw_store_open(f->path, f->keys, &other));
    EXPECT_OK(gw_store_renew_take(f->s, SB1, 3, 60000, &shared, &allowed));
    assert_true(shared && allowed);
    EXPECT_OK(gw_store_renew_take(other, SB1, 3, 60000, &shared, &allowed));
    assert_true(allowed);
    EXPECT_OK(gw_store_renew_take(f->s, SB1, 3, 60000, &shared, &allowed));
    assert_true(allowed);
    EXPECT_OK(gw_store_renew_take(other, SB1, 3, 60000, &shared, &allowed));
    assert_false(allowed);                         /* the 4th, whichever gateway */
    EXPECT_OK(gw_store_renew_take(other, SB2, 3, 60000, &shared, &allowed));
    assert_true(allowed);                          /* per sandbox */
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM renew_events"), 4);
    /* a window that has passed: pruned, and taken again */
    usleep(5000);
    EXPECT_OK(gw_store_renew_take(f->s, SB1, 3, 1, &shared, &allowed));
    assert_true(allowed);
    EXPECT_FAIL(gw_store_renew_take(f->s, SB1, 0, 1000, &shared, &allowed), TSR_E_INPUT);
    gw_store_close(other);
}

/* CRL numbers come from one sequence in the database, above the floor. */
static void test_pg_crl_number_shared(void **state)
{
    struct fx *f = *state;
    gw_store *other = NULL;
    bool shared = false;
    uint64_t n1 = 0, n2 = 0, n3 = 0;
    EXPECT_OK(gw_store_open(f->path, f->keys, &other));
    EXPECT_OK(gw_store_crl_number_next(f->s, 1000, &n1, &shared));
    assert_true(shared);
    assert_int_equal(n1, 1000);
    EXPECT_OK(gw_store_crl_number_next(other, 5, &n2, &shared));
    assert_int_equal(n2, 1001);                    /* above every number taken */
    EXPECT_OK(gw_store_crl_number_next(f->s, 2000, &n3, &shared));
    assert_int_equal(n3, 2000);                    /* the floor when it is ahead */
    gw_store_close(other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_pg_open_refusals),
        T(test_pg_renew_take_shared),
        T(test_pg_crl_number_shared),
        CONTRACT_TESTS
    };
    if (tu_pg_start(&cluster) != 0) {
        fprintf(stderr, "cannot start a PostgreSQL cluster (make deps installs it)\n");
        tu_pg_stop(&cluster);
        return 1;
    }
    snprintf(pg_dsn, sizeof pg_dsn, "%s", cluster.dsn);
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    tu_pg_stop(&cluster);
    return rc;
}
