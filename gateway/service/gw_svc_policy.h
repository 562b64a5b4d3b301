/* Sandbox policies as the service layer (no protobuf): status reports,
 * draft submissions and UpdateConfig. The RPC layer resolves the sandbox
 * through the guard (gw_resolve_sandbox_id / _name: the target check before
 * any store read) and hands it over resolved. */
#ifndef GW_SVC_POLICY_H
#define GW_SVC_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "gw_app.h"
#include "gw_rpc.h"
#include "gw_store.h"

/* A policy status a supervisor reports (the wire's values). */
enum { GW_POLICY_APPLIED = 1, GW_POLICY_FAILED = 2 };

/* ReportPolicyStatus: APPLIED or FAILED, of a version the sandbox has, a
 * message of at most 4096 bytes (INVALID_ARGUMENT otherwise). */
TSR_WUR int gw_svc_policy_report(const gw_call_ctx *ctx, const gw_sandbox_rec *sb, int status,
                                 int64_t version, const char *message, gw_response *resp);

/* SubmitPolicyAnalysis: 1..64 chunks, each of a known domain and valid for
 * it (INVALID_ARGUMENT naming the chunk), appended to the draft together. */
TSR_WUR int gw_svc_policy_submit(const gw_call_ctx *ctx, const gw_sandbox_rec *sb,
                                 const gw_policy_chunk *chunks, size_t n, gw_response *resp);

/* UpdateConfig: a new policy version and/or provider environment. A sandbox
 * principal may change its own policy and nothing else (PERMISSION_DENIED,
 * audited); nothing to update is INVALID_ARGUMENT. *version: the policy
 * version after the update. */
TSR_WUR int gw_svc_policy_update(const gw_call_ctx *ctx, const gw_sandbox_rec *sb,
                                 const char *policy, const gw_env_var *env, size_t n_env,
                                 int64_t *version, gw_response *resp);

#endif
