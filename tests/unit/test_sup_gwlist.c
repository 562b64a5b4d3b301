/* The supervisor's gateway list (docs/supervisor.md, "Several gateways"):
 * repeated --gateway values, a name expanded into its addresses, and the
 * order one connection round tries them in (the last that answered first,
 * the one that failed last). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../supervisor/sup_gateway.c"
#include "../../supervisor/sup_gwlist.c"
#include "../../supervisor/sup_identity.c"
#include "../../supervisor/sup_logs.c"
#include "../../supervisor/sup_rotate.c"
#include "tu_suppki.h"

/* The keys of a round, joined by spaces. */
static void keys_of(const sup_target *t, size_t n, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        int w = snprintf(out + used, cap - used, "%s%s", i ? " " : "", t[i].key);
        assert_true(w > 0 && (size_t)w < cap - used);
        used += (size_t)w;
    }
}

static void test_add_and_expand(void **state)
{
    (void)state;
    sup_gateways g;
    sup_gateways_init(&g);
    assert_int_equal(sup_gateways_add(&g, "127.0.0.1:8443"), 0);
    assert_int_equal(sup_gateways_add(&g, "[::1]:9443"), 0);
    assert_int_equal(sup_gateways_add(&g, "unix:/run/gw.sock"), 0);
    assert_int_equal(sup_gateways_add(&g, "10.0.0.7"), 0);          /* default port */
    assert_int_equal(sup_gateways_add(&g, "127.0.0.1:8443"), 0);    /* twice: kept once */
    assert_int_equal(g.n, 4);
    sup_target t[SUP_TARGETS_MAX];
    size_t n = sup_gateways_expand(&g, t, SUP_TARGETS_MAX);
    char keys[1024];
    keys_of(t, n, keys, sizeof keys);
    assert_string_equal(keys, "127.0.0.1:8443 [::1]:9443 unix:/run/gw.sock 10.0.0.7:8443");
    assert_string_equal(t[1].addr.host, "::1");
    assert_int_equal(t[1].addr.port, 9443);
    assert_true(t[2].addr.is_unix);
    assert_string_equal(t[0].label, "127.0.0.1:8443");
    /* A cap smaller than the list: the first ones, no more. */
    assert_int_equal(sup_gateways_expand(&g, t, 2), 2);
    sup_gateways_fini(&g);
}

static void test_add_refusals(void **state)
{
    (void)state;
    sup_gateways g;
    sup_gateways_init(&g);
    assert_int_equal(sup_gateways_add(&g, ""), -1);
    assert_string_equal(tsr_errmsg(), "empty address");
    assert_int_equal(sup_gateways_add(&g, "::1:8443"), -1);
    assert_string_equal(tsr_errmsg(), "IPv6 addresses need brackets: [ADDR]:PORT");
    assert_int_equal(sup_gateways_add(&g, "host:0"), -1);
    assert_int_equal(g.n, 0);
    char a[32];
    for (int i = 0; i < SUP_GATEWAYS_MAX; i++) {
        snprintf(a, sizeof a, "127.0.0.1:%d", 1000 + i);
        assert_int_equal(sup_gateways_add(&g, a), 0);
    }
    assert_int_equal(sup_gateways_add(&g, "127.0.0.1:2000"), -1);
    assert_string_equal(tsr_errmsg(), "more than 16 gateway addresses");
    assert_int_equal(g.n, SUP_GATEWAYS_MAX);
    sup_gateways_fini(&g);
}

/* A name stands for every address it resolves to, labelled with the name. */
static void test_name_expands(void **state)
{
    (void)state;
    sup_gateways g;
    sup_gateways_init(&g);
    assert_int_equal(sup_gateways_add(&g, "localhost:7443"), 0);
    assert_int_equal(sup_gateways_add(&g, "127.0.0.1:7443"), 0);
    sup_target t[SUP_TARGETS_MAX];
    size_t n = sup_gateways_expand(&g, t, SUP_TARGETS_MAX);
    /* localhost gives 127.0.0.1 at least (and ::1 where IPv6 is configured);
     * the numeric entry that repeats it is not tried twice. */
    size_t v4 = 0;
    for (size_t i = 0; i < n; i++) {
        assert_string_not_equal(t[i].addr.host, "localhost");
        if (strcmp(t[i].key, "127.0.0.1:7443") == 0) {
            v4++;
            assert_string_equal(t[i].label, "localhost (127.0.0.1:7443)");
        }
    }
    assert_int_equal(v4, 1);
    /* A name that does not resolve stays: the dial reports why. */
    sup_gateways h;
    sup_gateways_init(&h);
    assert_int_equal(sup_gateways_add(&h, "no-such-host.invalid:7443"), 0);
    assert_int_equal(sup_gateways_expand(&h, t, SUP_TARGETS_MAX), 1);
    assert_string_equal(t[0].key, "no-such-host.invalid:7443");
    sup_gateways_fini(&h);
    sup_gateways_fini(&g);
}

static size_t three(sup_target *t)
{
    sup_gateways g;
    sup_gateways_init(&g);
    assert_int_equal(sup_gateways_add(&g, "127.0.0.1:1"), 0);
    assert_int_equal(sup_gateways_add(&g, "127.0.0.1:2"), 0);
    assert_int_equal(sup_gateways_add(&g, "127.0.0.1:3"), 0);
    size_t n = sup_gateways_expand(&g, t, SUP_TARGETS_MAX);
    sup_gateways_fini(&g);
    return n;
}

static void test_failover_order(void **state)
{
    (void)state;
    static const struct {
        const char *current, *failed, *want;
    } cases[] = {
        {"", "", "127.0.0.1:1 127.0.0.1:2 127.0.0.1:3"},                      /* as given */
        {"127.0.0.1:2", "", "127.0.0.1:2 127.0.0.1:3 127.0.0.1:1"},           /* sticky */
        {"127.0.0.1:3", "", "127.0.0.1:3 127.0.0.1:1 127.0.0.1:2"},
        {"", "127.0.0.1:1", "127.0.0.1:2 127.0.0.1:3 127.0.0.1:1"},           /* failed: last */
        {"", "127.0.0.1:2", "127.0.0.1:3 127.0.0.1:1 127.0.0.1:2"},
        {"", "127.0.0.1:3", "127.0.0.1:1 127.0.0.1:2 127.0.0.1:3"},
        {"127.0.0.1:1", "127.0.0.1:1", "127.0.0.1:1 127.0.0.1:2 127.0.0.1:3"}, /* current wins */
        {"10.9.9.9:1", "", "127.0.0.1:1 127.0.0.1:2 127.0.0.1:3"},            /* gone: as given */
        {"", "10.9.9.9:1", "127.0.0.1:1 127.0.0.1:2 127.0.0.1:3"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sup_target t[SUP_TARGETS_MAX];
        size_t n = three(t);
        assert_int_equal(n, 3);
        sup_targets_order(t, n, cases[i].current, cases[i].failed);
        char keys[256];
        keys_of(t, n, keys, sizeof keys);
        assert_string_equal(keys, cases[i].want);
    }
}

/* sup_gateways_failed moves the next round past the failed target; a
 * failure of another one does not disturb the current target. */
static void test_failed_moves_on(void **state)
{
    (void)state;
    sup_gateways g;
    sup_gateways_init(&g);
    assert_int_equal(sup_gateways_add(&g, "127.0.0.1:1"), 0);
    assert_int_equal(sup_gateways_add(&g, "127.0.0.1:2"), 0);
    snprintf(g.current, sizeof g.current, "127.0.0.1:1");
    sup_gateways_failed(&g, "127.0.0.1:2");
    assert_string_equal(g.current, "127.0.0.1:1");
    sup_gateways_failed(&g, "127.0.0.1:1");
    assert_string_equal(g.current, "");
    sup_target t[SUP_TARGETS_MAX];
    size_t n = sup_gateways_expand(&g, t, SUP_TARGETS_MAX);
    sup_targets_order(t, n, g.current, g.failed);
    assert_string_equal(t[0].key, "127.0.0.1:2");
    assert_string_equal(t[1].key, "127.0.0.1:1");
    sup_gateways_fini(&g);
}

/* Nothing listens on either port: one round tries both and says so. */
static void test_connect_tries_every_target(void **state)
{
    (void)state;
    tu_pki pki;
    assert_int_equal(tu_pki_init(&pki, "tessera.local", tsr_now_unix()), 0);
    cl_tls *tls = NULL;
    if (tu_pki_client_tls(&pki, &tls) != 0) fail_msg("tls: %s", tsr_errmsg());
    sup_gateways g;
    sup_gateways_init(&g);
    assert_int_equal(sup_gateways_add(&g, "127.0.0.1:1"), 0);
    assert_int_equal(sup_gateways_add(&g, "127.0.0.1:2"), 0);
    cl_conn *conn = (cl_conn *)&g;
    char key[SUP_TARGET_KEY_MAX] = "x";
    cl_status st;
    assert_int_equal(sup_gateways_connect(&g, tls, 500, &conn, key, &st), -1);
    assert_null(conn);
    assert_string_equal(key, "");
    assert_int_equal(st.code, GW_STATUS_UNAVAILABLE);
    assert_string_equal(st.message, "none of 2 gateway addresses answered; last: cannot connect "
                                    "to 127.0.0.1:2: Connection refused");
    sup_gateways_fini(&g);
    cl_tls_free(tls);
    tu_pki_free(&pki);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_and_expand),
        cmocka_unit_test(test_add_refusals),
        cmocka_unit_test(test_name_expands),
        cmocka_unit_test(test_failover_order),
        cmocka_unit_test(test_failed_moves_on),
        cmocka_unit_test(test_connect_tries_every_target),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
