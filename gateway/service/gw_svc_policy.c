/* Sandbox policies without protobuf (gw_svc_policy.h). */
#include "gw_svc_policy.h"

#include <string.h>

#include "gw_audit.h"
#include "gw_authz.h"
#include "gw_svc_sandbox.h"
#include "pol_policy.h"
#include "tsr_time.h"

#define MAX_STATUS_MESSAGE 4096
#define MAX_DRAFT_CHUNKS 64

int gw_svc_policy_report(const gw_call_ctx *ctx, const gw_sandbox_rec *sb, int status,
                         int64_t version, const char *message, gw_response *resp)
{
    if (status != GW_POLICY_APPLIED && status != GW_POLICY_FAILED) {
        gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT, "status must be APPLIED or FAILED");
        return -1;
    }
    if (version < 1 || version > sb->policy_version) {
        gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT, "no policy version %lld",
                         (long long)version);
        return -1;
    }
    if (strlen(message) > MAX_STATUS_MESSAGE) {
        gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT, "message exceeds %d bytes",
                         MAX_STATUS_MESSAGE);
        return -1;
    }
    if (gw_store_policy_status_add(gw_worker_of(ctx)->store, sb->id, version,
                                   status, message, tsr_now_unix()) != 0) {
        gw_fail_from_error(resp);
        return -1;
    }
    return 0;
}

int gw_svc_policy_submit(const gw_call_ctx *ctx, const gw_sandbox_rec *sb,
                         const gw_policy_chunk *chunks, size_t n, gw_response *resp)
{
    if (n == 0 || n > MAX_DRAFT_CHUNKS) {
        gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT, "chunks must number 1..%d",
                         MAX_DRAFT_CHUNKS);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const gw_policy_chunk *c = &chunks[i];
        if (!pol_is_domain(c->domain)) {
            gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT,
                             "chunk %zu: unknown domain \"%.32s\" (filesystem, network, process, "
                             "inference)",
                             i, c->domain);
            return -1;
        }
        if (pol_validate_domain(c->domain, c->content, strlen(c->content)) != 0) {
            gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT, "chunk %zu: %s", i, tsr_errmsg());
            return -1;
        }
    }
    if (gw_store_draft_add(gw_worker_of(ctx)->store, sb->id, chunks, n,
                           tsr_now_unix()) != 0) {
        gw_fail_from_error(resp);
        return -1;
    }
    return 0;
}

int gw_svc_policy_update(const gw_call_ctx *ctx, const gw_sandbox_rec *sb, const char *policy,
                         const gw_env_var *env, size_t n_env, int64_t *version,
                         gw_response *resp)
{
    gw_worker *w = gw_worker_of(ctx);
    /* A sandbox may change its own policy and nothing else. */
    if (gw_authz_is_sandbox(ctx) && n_env > 0) {
        gw_audit_denial(ctx, GW_DENY_PERMISSION, sb->id,
                        "sandbox tried to change its provider environment");
        gw_response_fail(resp, GW_STATUS_PERMISSION_DENIED,
                         "a sandbox may only change its own policy");
        return -1;
    }
    if (policy[0] == '\0' && n_env == 0) {
        gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT, "nothing to update");
        return -1;
    }
    if (policy[0] != '\0' && gw_policy_check(policy, resp) != 0) return -1;
    if (n_env > 0 && gw_env_validate(env, n_env, resp) != 0) return -1;
    *version = sb->policy_version;
    if (policy[0] != '\0' &&
        gw_store_policy_set(w->store, sb->id, policy, tsr_now_unix(), version) != 0) {
        gw_fail_from_error(resp);
        return -1;
    }
    if (n_env > 0 && gw_store_env_set(w->store, sb->id, env, n_env) != 0) {
        gw_fail_from_error(resp);
        return -1;
    }
    gw_audit_event(ctx, "update-config", sb->id, "allow",
                   n_env > 0 ? "policy and provider environment updated" : "policy updated",
                   NULL);
    return 0;
}
