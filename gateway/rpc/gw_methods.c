/* The method table the gateway serves. */
#include "gw_authz.h"
#include "gw_health.h"
#include "gw_reflection.h"
#include "gw_rpcs.h"

/* The standard health check: the dispatcher admits anonymous callers for
 * this one method (its rule in gw_authz.c). */
const gw_method gw_rpc_health_check = {
    .path = GW_HEALTH_CHECK_PATH,
    .rule = GW_RPC_HEALTH_CHECK,
    .unary = gw_health_check,
};

const gw_method gw_rpc_health_watch = {
    .path = GW_HEALTH_WATCH_PATH,
    .rule = GW_RPC_HEALTH_WATCH,
    .stream = &gw_health_watch_ops,
};

const gw_method gw_rpc_reflection_v1 = {
    .path = GW_REFLECTION_V1_PATH,
    .rule = GW_RPC_REFLECTION_V1,
    .stream = &gw_reflection_ops,
};

const gw_method gw_rpc_reflection_v1alpha = {
    .path = GW_REFLECTION_V1ALPHA_PATH,
    .rule = GW_RPC_REFLECTION_V1ALPHA,
    .stream = &gw_reflection_ops,
};

const gw_method *gw_methods(size_t *count)
{
    static gw_method table[GW_RPC_COUNT - 1];
    static const gw_method *const all[] = {
        &gw_rpc_create_sandbox,      &gw_rpc_get_sandbox,          &gw_rpc_list_sandboxes,
        &gw_rpc_delete_sandbox,      &gw_rpc_get_sandbox_logs,     &gw_rpc_list_certificates,
        &gw_rpc_revoke_certificate,  &gw_rpc_get_sandbox_config,   &gw_rpc_get_provider_env,
        &gw_rpc_report_policy_status, &gw_rpc_submit_policy_analysis, &gw_rpc_get_draft_policy,
        &gw_rpc_update_config,       &gw_rpc_push_sandbox_logs,    &gw_rpc_renew_certificate,
        &gw_rpc_get_trust_bundle,    &gw_rpc_health_check,         &gw_rpc_health_watch,
        &gw_rpc_reflection_v1,       &gw_rpc_reflection_v1alpha,
    };
    _Static_assert(sizeof all / sizeof all[0] == GW_RPC_COUNT - 1, "one method per guarded RPC");
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) table[i] = *all[i];
    *count = sizeof all / sizeof all[0];
    return table;
}
