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

/* Expected status per RPC, columns in WHO order (DESIGN §5). */
static const int EXPECT[GW_RPC_COUNT][8] = {
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_call_table),
        cmocka_unit_test(test_target_same_answer_for_any_other_sandbox),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
