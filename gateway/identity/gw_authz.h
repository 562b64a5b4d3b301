/* The guard: the single place that decides who may call what
 * (docs/identity.md, "Who may call what").
 *
 * The dispatcher (the transport, gw_h2.c) calls gw_authz_dispatch right
 * before it runs any callback of a method: a unary handler, a client
 * stream's open, each of its messages and its finish, and the completion of
 * a held call. It re-checks the caller's identity at that moment
 * (revocation, notAfter, the PKI snapshot, role, forwarding proxy:
 * gw_identity_recheck) and applies the method's rule (gw_method.rule, one
 * of enum gw_rpc_id). Handlers never call the guard themselves, so none can
 * forget it. Calls that name a sandbox then call gw_authz_target() with the
 * id they were given (id-keyed RPCs: straight from the request, before any
 * store read; name-keyed RPCs: after resolving the name, "" when it does
 * not resolve). A sandbox principal naming anything but itself gets
 * PERMISSION_DENIED "cross-sandbox access denied", identical whether the
 * other sandbox exists or not. */
#ifndef GW_AUTHZ_H
#define GW_AUTHZ_H

#include "gw_rpc.h"

enum gw_rpc_id {
    GW_RPC_NONE = 0,              /* no rule: the dispatcher refuses the call */
    GW_RPC_CREATE_SANDBOX,
    GW_RPC_GET_SANDBOX,
    GW_RPC_LIST_SANDBOXES,
    GW_RPC_DELETE_SANDBOX,
    GW_RPC_GET_SANDBOX_LOGS,
    GW_RPC_LIST_CERTIFICATES,
    GW_RPC_REVOKE_CERTIFICATE,
    GW_RPC_GET_SANDBOX_CONFIG,
    GW_RPC_GET_PROVIDER_ENV,
    GW_RPC_REPORT_POLICY_STATUS,
    GW_RPC_SUBMIT_POLICY_ANALYSIS,
    GW_RPC_GET_DRAFT_POLICY,
    GW_RPC_UPDATE_CONFIG,
    GW_RPC_PUSH_SANDBOX_LOGS,
    GW_RPC_RENEW_CERTIFICATE,
    GW_RPC_GET_TRUST_BUNDLE,
    GW_RPC_HEALTH_CHECK,
    GW_RPC_HEALTH_WATCH,
    GW_RPC_REFLECTION_V1,
    GW_RPC_REFLECTION_V1ALPHA,
    GW_RPC_COUNT
};

#define GW_CROSS_SANDBOX_MESSAGE "cross-sandbox access denied"

const char *gw_rpc_name(enum gw_rpc_id rpc);

/* May this principal call this RPC at all, by its kind and role? 0 if yes;
 * else -1 with resp set (UNAUTHENTICATED or PERMISSION_DENIED) and the
 * denial audited. GW_RPC_NONE or an unknown id: PERMISSION_DENIED. */
int gw_authz_call(const gw_call_ctx *ctx, enum gw_rpc_id rpc, gw_response *resp);

/* gw_server_config.authorize: the caller's identity is still what it was
 * (else UNAUTHENTICATED with the reason, e.g. "certificate revoked"), then
 * gw_authz_call with the method's rule. */
int gw_authz_dispatch(const gw_call_ctx *ctx, const gw_method *m, gw_response *resp);

/* For a sandbox principal: is `target_sandbox_id` itself? Users pass (their
 * role was checked by gw_authz_call). 0 if allowed, else -1 with resp set. */
int gw_authz_target(const gw_call_ctx *ctx, enum gw_rpc_id rpc, const char *target_sandbox_id,
                    gw_response *resp);

/* True when the principal is a sandbox (handlers use it to pick the
 * own-sandbox code path, never to grant anything). */
int gw_authz_is_sandbox(const gw_call_ctx *ctx);

#endif
