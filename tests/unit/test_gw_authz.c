/* The guard's table, principal by principal, independent of the transport. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "gw_app.h"
#include "gw_authz.h"
#include "gw_identity.h"
#include "gw_revocation.h"
#include "gw_rpcs.h"
#include "tsr_time.h"

enum { OK = 0, UNAUTH = GW_STATUS_UNAUTHENTICATED, DENIED = GW_STATUS_PERMISSION_DENIED };

struct who {
    const char *label;
    enum gw_principal_kind kind;
    enum gw_role role;
};

static const struct who WHO[] = {
    {"anonymous", GW_PRINCIPAL_ANONYMOUS, GW_ROLE_NONE},
    {"unauthenticated", GW_PRINCIPAL_UNAUTHENTICATED, GW_ROLE_NONE},
    {"sandbox", GW_PRINCIPAL_SANDBOX, GW_ROLE_NONE},
    {"viewer", GW_PRINCIPAL_USER, GW_ROLE_VIEWER},
    {"operator", GW_PRINCIPAL_USER, GW_ROLE_OPERATOR},
    {"admin", GW_PRINCIPAL_USER, GW_ROLE_ADMIN},
    {"user without role", GW_PRINCIPAL_USER, GW_ROLE_NONE},
    {"proxy", GW_PRINCIPAL_PROXY, GW_ROLE_NONE},
};

/* Expected status per RPC, columns in WHO order (docs/identity.md). */
static const int EXPECT[GW_RPC_COUNT][8] = {
    /* No rule: nobody's to call, not even anonymous health checkers. */
    [GW_RPC_NONE] = {DENIED, DENIED, DENIED, DENIED, DENIED, DENIED, DENIED, DENIED},
    [GW_RPC_CREATE_SANDBOX] = {UNAUTH, UNAUTH, DENIED, DENIED, OK, OK, DENIED, DENIED},
    [GW_RPC_GET_SANDBOX] = {UNAUTH, UNAUTH, DENIED, OK, OK, OK, DENIED, DENIED},
    [GW_RPC_LIST_SANDBOXES] = {UNAUTH, UNAUTH, DENIED, OK, OK, OK, DENIED, DENIED},
    [GW_RPC_DELETE_SANDBOX] = {UNAUTH, UNAUTH, DENIED, DENIED, OK, OK, DENIED, DENIED},
    [GW_RPC_GET_SANDBOX_LOGS] = {UNAUTH, UNAUTH, DENIED, OK, OK, OK, DENIED, DENIED},
    [GW_RPC_LIST_CERTIFICATES] = {UNAUTH, UNAUTH, DENIED, OK, OK, OK, DENIED, DENIED},
    [GW_RPC_REVOKE_CERTIFICATE] = {UNAUTH, UNAUTH, DENIED, DENIED, DENIED, OK, DENIED, DENIED},
    [GW_RPC_GET_SANDBOX_CONFIG] = {UNAUTH, UNAUTH, OK, OK, OK, OK, DENIED, DENIED},
    [GW_RPC_GET_PROVIDER_ENV] = {UNAUTH, UNAUTH, OK, DENIED, DENIED, OK, DENIED, DENIED},
    [GW_RPC_REPORT_POLICY_STATUS] = {UNAUTH, UNAUTH, OK, DENIED, DENIED, DENIED, DENIED, DENIED},
    [GW_RPC_SUBMIT_POLICY_ANALYSIS] = {UNAUTH, UNAUTH, OK, DENIED, DENIED, DENIED, DENIED, DENIED},
    [GW_RPC_GET_DRAFT_POLICY] = {UNAUTH, UNAUTH, OK, OK, OK, OK, DENIED, DENIED},
    [GW_RPC_UPDATE_CONFIG] = {UNAUTH, UNAUTH, OK, DENIED, OK, OK, DENIED, DENIED},
    [GW_RPC_PUSH_SANDBOX_LOGS] = {UNAUTH, UNAUTH, OK, DENIED, DENIED, DENIED, DENIED, DENIED},
    [GW_RPC_RENEW_CERTIFICATE] = {UNAUTH, UNAUTH, OK, DENIED, DENIED, DENIED, DENIED, DENIED},
    [GW_RPC_GET_TRUST_BUNDLE] = {UNAUTH, UNAUTH, OK, OK, OK, OK, DENIED, DENIED},
    [GW_RPC_HEALTH_CHECK] = {OK, OK, OK, OK, OK, OK, OK, OK},
    [GW_RPC_HEALTH_WATCH] = {OK, OK, OK, OK, OK, OK, OK, OK},
    [GW_RPC_REFLECTION_V1] = {UNAUTH, UNAUTH, OK, OK, OK, OK, DENIED, DENIED},
    [GW_RPC_REFLECTION_V1ALPHA] = {UNAUTH, UNAUTH, OK, OK, OK, OK, DENIED, DENIED},
};

static const char OWN[] = "6f1c1a52-9d3e-4b8a-a1f0-2c4d5e6f7a8b";
static const char OTHER[] = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";

static void make_ctx(gw_app *app, gw_principal *p, const struct who *w, gw_call_ctx *ctx)
{
    memset(p, 0, sizeof *p);
    p->kind = w->kind;
    p->role = w->role;
    if (w->kind == GW_PRINCIPAL_SANDBOX) snprintf(p->name, sizeof p->name, "%s", OWN);
    memset(ctx, 0, sizeof *ctx);
    ctx->principal = p;
    ctx->method = "/test";
    ctx->app = app;
}

static void test_call_table(void **state)
{
    (void)state;
    gw_app app = {0}; /* no audit sink: denials are not written */
    for (int rpc = 0; rpc < GW_RPC_COUNT; rpc++) {
        for (size_t i = 0; i < sizeof WHO / sizeof WHO[0]; i++) {
            gw_principal p;
            gw_call_ctx ctx;
            make_ctx(&app, &p, &WHO[i], &ctx);
            gw_response resp = {0};
            int rc = gw_authz_call(&ctx, (enum gw_rpc_id)rpc, &resp);
            int got = rc == 0 ? OK : (int)resp.status;
            if (got != EXPECT[rpc][i])
                fail_msg("%s by %s: got %d, want %d", gw_rpc_name((enum gw_rpc_id)rpc),
                         WHO[i].label, got, EXPECT[rpc][i]);
            assert_int_equal(rc == 0, got == OK);
        }
    }
}

static void test_target_same_answer_for_any_other_sandbox(void **state)
{
    (void)state;
    gw_app app = {0};
    gw_principal p;
    gw_call_ctx ctx;
    make_ctx(&app, &p, &WHO[2], &ctx);
    const char *others[] = {OTHER, "", "not-a-uuid", "6F1C1A52-9D3E-4B8A-A1F0-2C4D5E6F7A8B",
                            "6f1c1a52-9d3e-4b8a-a1f0-2c4d5e6f7a8b\n", NULL};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        gw_response resp = {0};
        assert_int_equal(gw_authz_target(&ctx, GW_RPC_GET_SANDBOX_CONFIG, others[i], &resp), -1);
        assert_int_equal(resp.status, GW_STATUS_PERMISSION_DENIED);
        assert_string_equal(resp.message, GW_CROSS_SANDBOX_MESSAGE);
    }
    gw_response resp = {0};
    assert_int_equal(gw_authz_target(&ctx, GW_RPC_GET_SANDBOX_CONFIG, OWN, &resp), 0);
    /* A sandbox-denied RPC never passes the target check, even for itself. */
    assert_int_equal(gw_authz_target(&ctx, GW_RPC_DELETE_SANDBOX, OWN, &resp), -1);
    assert_int_equal(resp.status, GW_STATUS_PERMISSION_DENIED);
    /* Users pass the target check (their role was checked by gw_authz_call). */
    make_ctx(&app, &p, &WHO[3], &ctx);
    assert_int_equal(gw_authz_target(&ctx, GW_RPC_GET_SANDBOX_CONFIG, OTHER, &resp), 0);
    /* Anyone else fails closed. */
    make_ctx(&app, &p, &WHO[0], &ctx);
    assert_int_equal(gw_authz_target(&ctx, GW_RPC_GET_SANDBOX_CONFIG, OWN, &resp), -1);
    assert_int_equal(resp.status, GW_STATUS_UNAUTHENTICATED);
}

/* Every method the gateway serves carries a rule, each rule is served by
 * exactly one method, and a method without one is refused by the
 * dispatcher: a handler cannot be reached unguarded. */
static void test_every_method_has_a_rule(void **state)
{
    (void)state;
    size_t n = 0;
    const gw_method *m = gw_methods(&n);
    assert_int_equal(n, GW_RPC_COUNT - 1);
    unsigned seen[GW_RPC_COUNT] = {0};
    for (size_t i = 0; i < n; i++) {
        if (m[i].rule <= GW_RPC_NONE || m[i].rule >= GW_RPC_COUNT)
            fail_msg("%s has no authorization rule", m[i].path);
        assert_string_not_equal(gw_rpc_name((enum gw_rpc_id)m[i].rule), "?");
        /* The rule is the method's own: its name ends the path. */
        const char *slash = strrchr(m[i].path, '/');
        assert_non_null(slash);
        assert_string_equal(slash + 1, gw_rpc_name((enum gw_rpc_id)m[i].rule));
        seen[m[i].rule]++;
    }
    for (int r = GW_RPC_NONE + 1; r < GW_RPC_COUNT; r++)
        if (seen[r] != 1) fail_msg("rule %s served by %u methods", gw_rpc_name(r), seen[r]);

    gw_app app = {0};
    gw_principal p;
    gw_call_ctx ctx;
    make_ctx(&app, &p, &WHO[5], &ctx);   /* admin */
    p.not_after = INT64_MAX;
    snprintf(p.serial_hex, sizeof p.serial_hex, "01");
    assert_int_equal(gw_revocations_new(&app.revoked), 0);
    gw_method unruled = {.path = "/tessera.v1.Gateway/GetSandbox", .unary = m[0].unary};
    gw_response resp = {0};
    assert_int_equal(gw_authz_dispatch(&ctx, &unruled, &resp), -1);
    assert_int_equal(resp.status, GW_STATUS_PERMISSION_DENIED);
    assert_string_equal(resp.message, "method has no authorization rule");
    gw_revocations_free(app.revoked);
}

/* The dispatcher re-checks the identity itself, at the moment of the call:
 * a principal admitted earlier and revoked or expired since is refused
 * with the reason, before the method's rule is even read. */
static void test_dispatch_rechecks_the_identity(void **state)
{
    (void)state;
    gw_app app = {0};
    assert_int_equal(gw_revocations_new(&app.revoked), 0);
    size_t n = 0;
    const gw_method *methods = gw_methods(&n), *renew = NULL, *health = NULL;
    for (size_t i = 0; i < n; i++) {
        if (methods[i].rule == GW_RPC_RENEW_CERTIFICATE) renew = &methods[i];
        if (methods[i].rule == GW_RPC_HEALTH_CHECK) health = &methods[i];
    }
    assert_non_null(renew);
    assert_non_null(health);
    gw_principal p;
    gw_call_ctx ctx;
    make_ctx(&app, &p, &WHO[2], &ctx);   /* a sandbox */
    snprintf(p.serial_hex, sizeof p.serial_hex, "0a1b2c");
    int64_t now = tsr_now_unix();
    p.not_after = now + 3600;

    gw_response resp = {0};
    assert_int_equal(gw_authz_dispatch(&ctx, renew, &resp), 0);

    assert_int_equal(gw_revocations_add(app.revoked, "0a1b2c", now + 3600), 0);
    memset(&resp, 0, sizeof resp);
    assert_int_equal(gw_authz_dispatch(&ctx, renew, &resp), -1);
    assert_int_equal(resp.status, GW_STATUS_UNAUTHENTICATED);
    assert_string_equal(resp.message, "certificate revoked");
    /* Not even the health check runs as a revoked identity. */
    memset(&resp, 0, sizeof resp);
    assert_int_equal(gw_authz_dispatch(&ctx, health, &resp), -1);
    assert_string_equal(resp.message, "certificate revoked");

    snprintf(p.serial_hex, sizeof p.serial_hex, "0a1b2d");
    p.not_after = now;   /* the chain's notAfter has come */
    memset(&resp, 0, sizeof resp);
    assert_int_equal(gw_authz_dispatch(&ctx, renew, &resp), -1);
    assert_int_equal(resp.status, GW_STATUS_UNAUTHENTICATED);
    assert_string_equal(resp.message, "certificate expired");
    gw_revocations_free(app.revoked);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_call_table),
        cmocka_unit_test(test_target_same_answer_for_any_other_sandbox),
        cmocka_unit_test(test_every_method_has_a_rule),
        cmocka_unit_test(test_dispatch_rechecks_the_identity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
