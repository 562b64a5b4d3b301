/* Sandbox configuration: GetSandboxConfig, GetSandboxProviderEnvironment,
 * ReportPolicyStatus, SubmitPolicyAnalysis, GetDraftPolicy, UpdateConfig. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_audit.h"
#include "gw_config.h"
#include "gw_handler.h"
#include "pol_policy.h"
#include "gw_rpcs.h"
#include "gw_svc_policy.h"
#include "tsr_time.h"

/* The service's policy status values are the wire's. */
_Static_assert((int)GW_POLICY_APPLIED == (int)TESSERA__V1__POLICY_STATUS__POLICY_STATUS_APPLIED &&
                   (int)GW_POLICY_FAILED == (int)TESSERA__V1__POLICY_STATUS__POLICY_STATUS_FAILED,
               "gw_svc_policy.h status values");

static void get_sandbox_config(const gw_call_ctx *ctx, const uint8_t *msg, size_t len,
                               gw_response *resp)
{
    Tessera__V1__GetSandboxConfigRequest *req =
        gw_unpack(&tessera__v1__get_sandbox_config_request__descriptor, msg, len, resp);
    if (req == NULL) return;
    char *policy = NULL;
    int64_t version = 0;
    gw_sandbox_rec sb;
    gw_sandbox_spec spec;
    memset(&spec, 0, sizeof spec);
    Tessera__V1__GetSandboxConfigResponse__EnvEntry **items = NULL;
    if (gw_resolve_sandbox_id(ctx, GW_RPC_GET_SANDBOX_CONFIG, req->sandbox_id, 0, &sb, resp) != 0)
        goto out;
    /* The policy and the workload's plain variables: the supervisor gives
     * these to the workload (docs/supervisor.md, "The workload"). */
    if (gw_store_policy_get(gw_worker_of(ctx)->store, sb.id, &policy, &version) != 0 ||
        gw_store_sandbox_spec_get(gw_worker_of(ctx)->store, sb.id, &spec) != 0) {
        gw_fail_from_error(resp);
        goto out;
    }
    items = gw_repeated_new(&tessera__v1__get_sandbox_config_response__env_entry__descriptor,
                            spec.n_env, resp);
    if (items == NULL) goto out;
    for (size_t i = 0; i < spec.n_env; i++) {
        items[i]->key = spec.env[i].name;
        items[i]->value = spec.env[i].value;
    }
    Tessera__V1__GetSandboxConfigResponse out_msg;
    tessera__v1__get_sandbox_config_response__init(&out_msg);
    out_msg.sandbox_id = sb.id;
    out_msg.name = sb.name;
    out_msg.policy = policy;
    out_msg.policy_version = version;
    out_msg.n_env = spec.n_env;
    out_msg.env = items;
    gw_reply(resp, &out_msg);
out:
    free(items);
    gw_store_free_spec(&spec);
    free(policy);
    gw_free_unpacked(req);
}

static void get_provider_env(const gw_call_ctx *ctx, const uint8_t *msg, size_t len,
                             gw_response *resp)
{
    Tessera__V1__GetSandboxProviderEnvironmentRequest *req = gw_unpack(
        &tessera__v1__get_sandbox_provider_environment_request__descriptor, msg, len, resp);
    if (req == NULL) return;
    gw_env_var *env = NULL;
    size_t n = 0;
    Tessera__V1__GetSandboxProviderEnvironmentResponse__EnvironmentEntry **items = NULL;
    gw_sandbox_rec sb;
    if (gw_resolve_sandbox_id(ctx, GW_RPC_GET_PROVIDER_ENV, req->sandbox_id, 0, &sb, resp) != 0)
        goto out;
    if (gw_store_env_get(gw_worker_of(ctx)->store, sb.id, &env, &n) != 0) {
        gw_fail_from_error(resp);
        goto out;
    }
    items = gw_repeated_new(
        &tessera__v1__get_sandbox_provider_environment_response__environment_entry__descriptor, n,
        resp);
    if (items == NULL) goto out;
    for (size_t i = 0; i < n; i++) {
        items[i]->key = env[i].name;
        items[i]->value = env[i].value;
    }
    Tessera__V1__GetSandboxProviderEnvironmentResponse out_msg;
    tessera__v1__get_sandbox_provider_environment_response__init(&out_msg);
    out_msg.n_environment = n;
    out_msg.environment = items;
    gw_reply(resp, &out_msg);
    resp->body_is_secret = true;
    gw_audit_event(ctx, "read-credentials", sb.id, "allow", "provider environment read", NULL);
out:
    free(items);
    gw_store_free_env(env, n);
    gw_free_unpacked(req);
}

static void report_policy_status(const gw_call_ctx *ctx, const uint8_t *msg, size_t len,
                                 gw_response *resp)
{
    Tessera__V1__ReportPolicyStatusRequest *req =
        gw_unpack(&tessera__v1__report_policy_status_request__descriptor, msg, len, resp);
    if (req == NULL) return;
    gw_sandbox_rec sb;
    if (gw_resolve_sandbox_id(ctx, GW_RPC_REPORT_POLICY_STATUS, req->sandbox_id, 0, &sb, resp) != 0)
        goto out;
    if (gw_svc_policy_report(ctx, &sb, (int)req->status, req->version, req->message, resp) != 0)
        goto out;
    Tessera__V1__ReportPolicyStatusResponse out_msg;
    tessera__v1__report_policy_status_response__init(&out_msg);
    gw_reply(resp, &out_msg);
out:
    gw_free_unpacked(req);
}

static void submit_policy_analysis(const gw_call_ctx *ctx, const uint8_t *msg, size_t len,
                                   gw_response *resp)
{
    Tessera__V1__SubmitPolicyAnalysisRequest *req =
        gw_unpack(&tessera__v1__submit_policy_analysis_request__descriptor, msg, len, resp);
    if (req == NULL) return;
    gw_policy_chunk *chunks = NULL;
    gw_sandbox_rec sb;
    if (gw_resolve_sandbox_name(ctx, GW_RPC_SUBMIT_POLICY_ANALYSIS, req->sandbox_name, &sb, resp) != 0)
        goto out;
    chunks = calloc(req->n_chunks + 1, sizeof *chunks);
    if (chunks == NULL) {
        gw_response_fail(resp, GW_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < req->n_chunks; i++) {
        chunks[i].domain = req->chunks[i]->domain;
        chunks[i].content = req->chunks[i]->content;
    }
    if (gw_svc_policy_submit(ctx, &sb, chunks, req->n_chunks, resp) != 0) goto out;
    Tessera__V1__SubmitPolicyAnalysisResponse out_msg;
    tessera__v1__submit_policy_analysis_response__init(&out_msg);
    out_msg.accepted_chunks = (int32_t)req->n_chunks;
    gw_reply(resp, &out_msg);
out:
    free(chunks);
    gw_free_unpacked(req);
}

static void get_draft_policy(const gw_call_ctx *ctx, const uint8_t *msg, size_t len,
                             gw_response *resp)
{
    Tessera__V1__GetDraftPolicyRequest *req =
        gw_unpack(&tessera__v1__get_draft_policy_request__descriptor, msg, len, resp);
    if (req == NULL) return;
    gw_policy_chunk *chunks = NULL;
    size_t n = 0;
    int page = 0;
    int64_t next_seq = 0;
    gw_page_cursor cursor;
    Tessera__V1__PolicyChunk **items = NULL;
    gw_sandbox_rec sb;
    if (gw_resolve_sandbox_name(ctx, GW_RPC_GET_DRAFT_POLICY, req->name, &sb, resp) != 0) goto out;
    /* Drafts accumulate with every SubmitPolicyAnalysis: paged like the lists. */
    if (gw_page_size(req->page_size, &page, resp) != 0 ||
        gw_page_token_parse(req->page_token, sb.id, 0, &cursor, resp) != 0)
        goto out;
    /* Within what a stock gRPC client accepts (the name and token aside). */
    size_t budget = gw_app_of(ctx)->cfg->max_message_bytes;
    budget = budget > 512 ? budget - 512 : 1;
    if (gw_store_draft_page(gw_worker_of(ctx)->store, sb.id, cursor.n, page, budget, &chunks,
                            &n, &next_seq) != 0) {
        gw_fail_from_error(resp);
        goto out;
    }
    items = gw_repeated_new(&tessera__v1__policy_chunk__descriptor, n, resp);
    if (items == NULL) goto out;
    for (size_t i = 0; i < n; i++) {
        items[i]->domain = chunks[i].domain;
        items[i]->content = chunks[i].content;
    }
    Tessera__V1__GetDraftPolicyResponse out_msg;
    tessera__v1__get_draft_policy_response__init(&out_msg);
    out_msg.name = sb.name;
    out_msg.n_chunks = n;
    out_msg.chunks = items;
    char next[GW_PAGE_TOKEN_MAX + 1] = "";
    if (next_seq > 0) gw_page_token_format(next, sb.id, next_seq, NULL);
    out_msg.next_page_token = next;
    gw_reply(resp, &out_msg);
out:
    free(items);
    gw_store_free_chunks(chunks, n);
    gw_free_unpacked(req);
}

static void update_config(const gw_call_ctx *ctx, const uint8_t *msg, size_t len,
                          gw_response *resp)
{
    Tessera__V1__UpdateConfigRequest *req =
        gw_unpack(&tessera__v1__update_config_request__descriptor, msg, len, resp);
    if (req == NULL) return;
    gw_env_var *env = NULL;
    gw_sandbox_rec sb;
    if (gw_resolve_sandbox_name(ctx, GW_RPC_UPDATE_CONFIG, req->name, &sb, resp) != 0) goto out;
    GW_ENV_FROM_ENTRIES(req->provider_env, req->n_provider_env, env);
    if (env == NULL) {
        gw_response_fail(resp, GW_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    int64_t version = 0;
    if (gw_svc_policy_update(ctx, &sb, req->policy, env, req->n_provider_env, &version, resp) != 0)
        goto out;
    Tessera__V1__UpdateConfigResponse out_msg;
    tessera__v1__update_config_response__init(&out_msg);
    out_msg.policy_version = version;
    gw_reply(resp, &out_msg);
out:
    free(env);
    gw_free_unpacked(req);
}

const gw_method gw_rpc_get_sandbox_config = {
    .path = "/tessera.v1.Gateway/GetSandboxConfig",
    .rule = GW_RPC_GET_SANDBOX_CONFIG,
    .unary = get_sandbox_config,
};
const gw_method gw_rpc_get_provider_env = {
    .path = "/tessera.v1.Gateway/GetSandboxProviderEnvironment",
    .rule = GW_RPC_GET_PROVIDER_ENV,
    .unary = get_provider_env,
};
const gw_method gw_rpc_report_policy_status = {
    .path = "/tessera.v1.Gateway/ReportPolicyStatus",
    .rule = GW_RPC_REPORT_POLICY_STATUS,
    .unary = report_policy_status,
};
const gw_method gw_rpc_submit_policy_analysis = {
    .path = "/tessera.v1.Gateway/SubmitPolicyAnalysis",
    .rule = GW_RPC_SUBMIT_POLICY_ANALYSIS,
    .unary = submit_policy_analysis,
};
const gw_method gw_rpc_get_draft_policy = {
    .path = "/tessera.v1.Gateway/GetDraftPolicy",
    .rule = GW_RPC_GET_DRAFT_POLICY,
    .unary = get_draft_policy,
};
const gw_method gw_rpc_update_config = {
    .path = "/tessera.v1.Gateway/UpdateConfig",
    .rule = GW_RPC_UPDATE_CONFIG,
    .unary = update_config,
};
