/* The supervisor's gateway list (docs/supervisor.md, "Several gateways"):
 * repeated --gateway values, a name expanded into its addresses, and the
 * order one connection round tries them in (the last that answered first,
 * the one that failed last), and when a failure moves on at once and when
 * it backs off. */
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

/* Nothing listens on either port: one round tries both and says so, and
 * the round is over (reset: the caller backs off). A round that tried one
 * already (its call failed) dials only the other; one that tried both
 * dials nothing. */
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
    sup_round *r = calloc(1, sizeof *r);
    assert_non_null(r);
    cl_conn *conn = (cl_conn *)&g;
    char key[SUP_TARGET_KEY_MAX] = "x";
    cl_status st;
    assert_int_equal(sup_gateways_connect(&g, r, tls, 500, &conn, key, &st), -1);
    assert_null(conn);
    assert_string_equal(key, "");
    assert_int_equal(st.code, GW_STATUS_UNAVAILABLE);
    assert_string_equal(st.message, "none of 2 gateway addresses answered; last: cannot connect "
                                    "to 127.0.0.1:2: Connection refused");
    assert_int_equal(r->n, 0);

    snprintf(r->tried[0], sizeof r->tried[0], "127.0.0.1:2");
    r->n = 1;
    assert_int_equal(sup_gateways_connect(&g, r, tls, 500, &conn, key, &st), -1);
    assert_string_equal(st.message, "none of 2 gateway addresses answered (1 tried before in "
                                    "this round); last: cannot connect to 127.0.0.1:1: "
                                    "Connection refused");
    assert_int_equal(r->n, 0);

    snprintf(r->tried[0], sizeof r->tried[0], "127.0.0.1:2");
    snprintf(r->tried[1], sizeof r->tried[1], "127.0.0.1:1");
    r->n = 2;
    assert_int_equal(sup_gateways_connect(&g, r, tls, 500, &conn, key, &st), -1);
    assert_int_equal(st.code, GW_STATUS_UNAVAILABLE);
    assert_string_equal(st.message, "every gateway address was tried in this round");
    assert_int_equal(r->n, 0);
    free(r);
    sup_gateways_fini(&g);
    cl_tls_free(tls);
    tu_pki_free(&pki);
}

/* The targets a round has not tried, in the round's order. */
static void test_round_untried(void **state)
{
    (void)state;
    sup_round *r = calloc(1, sizeof *r);
    assert_non_null(r);
    sup_target t[SUP_TARGETS_MAX];
    size_t n = three(t);
    sup_targets_order(t, n, "", "127.0.0.1:1");
    assert_int_equal(sup_round_untried(r, t, n), 3);
    snprintf(r->tried[r->n++], sizeof r->tried[0], "127.0.0.1:3");
    size_t m = sup_round_untried(r, t, n);
    char keys[256];
    keys_of(t, m, keys, sizeof keys);
    assert_string_equal(keys, "127.0.0.1:2 127.0.0.1:1");
    snprintf(r->tried[r->n++], sizeof r->tried[0], "127.0.0.1:1");
    snprintf(r->tried[r->n++], sizeof r->tried[0], "127.0.0.1:2");
    assert_int_equal(sup_round_untried(r, t, m), 0);
    sup_round_reset(r);
    assert_int_equal(sup_round_untried(r, t, n), 3);
    free(r);
}

/* One round as a thread makes it when every call fails as unreachable:
 * the connection goes to the first untried target of the round's order
 * (what sup_gateways_connect dials first when it connects); the failure
 * moves on at once while a target is untried, and the round where every
 * target failed ends in a backoff (false), after exactly one attempt per
 * target; the next round starts afresh, after the last failed one. */
static void test_next_now_once_per_target(void **state)
{
    (void)state;
    sup_gateways g;
    sup_gateways_init(&g);
    assert_int_equal(sup_gateways_add(&g, "127.0.0.1:1"), 0);
    assert_int_equal(sup_gateways_add(&g, "127.0.0.1:2"), 0);
    assert_int_equal(sup_gateways_add(&g, "127.0.0.1:3"), 0);
    snprintf(g.current, sizeof g.current, "127.0.0.1:2");
    sup_round *r = calloc(1, sizeof *r);
    assert_non_null(r);
    char order[256] = "";
    for (int round = 0; round < 2; round++) {
        order[0] = '\0';
        for (int attempt = 0;; attempt++) {
            assert_true(attempt < 3);
            sup_target t[SUP_TARGETS_MAX];
            size_t n = sup_gateways_expand(&g, t, SUP_TARGETS_MAX);
            sup_targets_order(t, n, g.current, g.failed);
            size_t m = sup_round_untried(r, t, n);
            assert_true(m > 0);
            snprintf(r->tried[r->n++], sizeof r->tried[0], "%s", t[0].key); /* dialled */
            snprintf(g.current, sizeof g.current, "%s", t[0].key);         /* it connected */
            strcat(order, t[0].key);
            strcat(order, " ");
            if (!sup_gateways_next_now(&g, r, t[0].key)) {
                assert_int_equal(attempt, 2);
                break;
            }
            assert_string_equal(g.current, "");
            assert_string_equal(g.failed, t[0].key);
        }
        assert_int_equal(r->n, 0);
        /* Round 0 from the current one; round 1 from the one after the
         * last that failed (:1): the same order here. */
        assert_string_equal(order, "127.0.0.1:2 127.0.0.1:3 127.0.0.1:1 ");
    }
    free(r);
    sup_gateways_fini(&g);
}

/* Only an unreachable call moves on at once: any other failure, or a
 * single address, backs off; and the round a success reset tries the
 * failed one's neighbours again. */
static void test_next_now_backs_off(void **state)
{
    (void)state;
    sup_gateways g;
    sup_gateways_init(&g);
    assert_int_equal(sup_gateways_add(&g, "127.0.0.1:1"), 0);
    sup_round *r = calloc(1, sizeof *r);
    assert_non_null(r);
    /* One address: nothing else to try. */
    assert_false(sup_gateways_next_now(&g, r, "127.0.0.1:1"));
    assert_string_equal(g.failed, "127.0.0.1:1");
    assert_int_equal(r->n, 0);
    assert_int_equal(sup_gateways_add(&g, "127.0.0.1:2"), 0);
    /* Not an unreachable call (NULL, ""): back off, round reset. */
    snprintf(r->tried[r->n++], sizeof r->tried[0], "127.0.0.1:1");
    assert_false(sup_gateways_next_now(&g, r, NULL));
    assert_int_equal(r->n, 0);
    assert_false(sup_gateways_next_now(&g, r, ""));
    /* Two addresses: the first failure moves on, the second backs off... */
    assert_true(sup_gateways_next_now(&g, r, "127.0.0.1:1"));
    assert_string_equal(g.failed, "127.0.0.1:1");
    assert_false(sup_gateways_next_now(&g, r, "127.0.0.1:2"));
    assert_string_equal(g.failed, "127.0.0.1:2");
    assert_int_equal(r->n, 0);
    /* ...and in the next round (a backoff or a success reset it) a failure
     * moves on at once again. */
    snprintf(r->tried[r->n++], sizeof r->tried[0], "127.0.0.1:2");
    sup_round_reset(r);
    assert_true(sup_gateways_next_now(&g, r, "127.0.0.1:2"));
    assert_int_equal(r->n, 1);
    free(r);
    sup_gateways_fini(&g);
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
        cmocka_unit_test(test_round_untried),
        cmocka_unit_test(test_next_now_once_per_target),
        cmocka_unit_test(test_next_now_backs_off),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
