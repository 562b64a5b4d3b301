/* Sandbox lifecycle RPCs: CreateSandbox, GetSandbox, ListSandboxes, DeleteSandbox.
 * Decode, call the service (gateway/service/gw_svc_sandbox.h), encode. */
#include <openssl/x509.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca_issue.h"
#include "ca_pem.h"
#include "ca_spiffe.h"
#include "gw_audit.h"
#include "gw_metrics.h"
#include "gw_config.h"
#include "gw_handler.h"
#include "pol_policy.h"
#include "gw_ratelimit.h"
#include "gw_revocation.h"
#include "gw_rpcs.h"
#include "gw_driver.h"
#include "grpc_frame.h"
#include "gw_state.h"
#include "gw_svc_sandbox.h"
#include "gw_workload.h"
#include "tsr_time.h"
#include "tsr_utf8.h"

#define MAX_ENV_VARS 256
#define MAX_ENV_VALUE (32 * 1024)

/* ---- a Sandbox message with what it runs ------------------------------------ */

/* The Sandbox message of rec, with the spec's command, env and state detail
 * when spec is not NULL (borrowed: rec and spec outlive the message). */
/* "" where the generated code wants a char * (it is never written). */
static char no_detail[] = "";

typedef struct sandbox_msg {
    Tessera__V1__Sandbox msg;
    char spiffe[CA_SPIFFE_ID_MAX + 1];
    Tessera__V1__Sandbox__EnvEntry *entries;
    Tessera__V1__Sandbox__EnvEntry **ptrs;
} sandbox_msg;

static int sandbox_msg_fill(sandbox_msg *m, gw_sandbox_rec *rec, const gw_sandbox_spec *spec,
                            const char *trust_domain)
{
    memset(m, 0, sizeof *m);
    gw_sandbox_to_proto(rec, m->spiffe, sizeof m->spiffe, trust_domain, &m->msg);
    if (spec == NULL) return 0;
    m->msg.n_command = spec->n_command;
    m->msg.command = spec->command;
    m->msg.state_detail = spec->state_detail != NULL ? spec->state_detail : no_detail;
    if (spec->n_env == 0) return 0;
    m->entries = calloc(spec->n_env, sizeof *m->entries);
    m->ptrs = calloc(spec->n_env, sizeof *m->ptrs);
    TSR_ENSURE(m->entries != NULL && m->ptrs != NULL, TSR_E_INTERNAL, "out of memory");
    for (size_t i = 0; i < spec->n_env; i++) {
        tessera__v1__sandbox__env_entry__init(&m->entries[i]);
        m->entries[i].key = spec->env[i].name;
        m->entries[i].value = spec->env[i].value;
        m->ptrs[i] = &m->entries[i];
    }
    m->msg.n_env = spec->n_env;
    m->msg.env = m->ptrs;
    return 0;
}

static void sandbox_msg_clear(sandbox_msg *m)
{
    free(m->entries);
    free(m->ptrs);
    memset(m, 0, sizeof *m);
}

/* rec and its spec from the store, refreshed from its driver first. */
static int sandbox_read_full(gw_app *app, gw_store *store, gw_sandbox_rec *rec,
                             gw_sandbox_spec *spec, int refresh)
{
    if (refresh && gw_state_refresh(app, store, rec, GW_STATE_MAX_AGE_MS))
        TSR_GUARD(gw_store_sandbox_get(store, rec->id, rec));
    return gw_store_sandbox_spec_get(store, rec->id, spec);
}

/* ---- CreateSandbox ---------------------------------------------------------------- */

static void create_sandbox(const gw_call_ctx *ctx, const uint8_t *msg, size_t len,
                           gw_response *resp)
{
    gw_app *app = gw_app_of(ctx);
    Tessera__V1__CreateSandboxRequest *req =
        gw_unpack(&tessera__v1__create_sandbox_request__descriptor, msg, len, resp);
    if (req == NULL) return;
    gw_env_var *env = NULL, *plain = NULL;
    sandbox_msg out_sb;
    memset(&out_sb, 0, sizeof out_sb);

    GW_ENV_FROM_ENTRIES(req->provider_env, req->n_provider_env, env);
    GW_ENV_FROM_ENTRIES(req->env, req->n_env, plain);
    if (env == NULL || plain == NULL) {
        gw_response_fail(resp, GW_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    gw_svc_create_req in = {
        .name = req->name, .policy = req->policy, .driver = req->driver, .image = req->image,
        .command = req->command, .n_command = req->n_command,
        .provider_env = env, .n_provider_env = req->n_provider_env,
        .env = plain, .n_env = req->n_env, .wire = msg, .wire_len = len,
    };
    gw_svc_created made;
    if (gw_svc_sandbox_create(ctx, &in, &made, resp) != 0) goto out;

    gw_sandbox_spec spec = {
        .command = req->command, .n_command = req->n_command,
        .env = plain, .n_env = req->n_env, .state_detail = no_detail,
    };
    Tessera__V1__CreateSandboxResponse out_msg;
    tessera__v1__create_sandbox_response__init(&out_msg);
    if (sandbox_msg_fill(&out_sb, &made.sb, &spec, app->cfg->trust_domain) != 0) {
        gw_fail_from_error(resp);
        goto out;
    }
    out_msg.sandbox = &out_sb.msg;
    out_msg.certificate_serial = made.serial;
    gw_reply(resp, &out_msg);
out:
    sandbox_msg_clear(&out_sb);
    free(env);
    free(plain);
    gw_free_unpacked(req);
}

static void get_sandbox(const gw_call_ctx *ctx, const uint8_t *msg, size_t len,
                        gw_response *resp)
{
    gw_app *app = gw_app_of(ctx);
    gw_worker *w = gw_worker_of(ctx);
    Tessera__V1__GetSandboxRequest *req =
        gw_unpack(&tessera__v1__get_sandbox_request__descriptor, msg, len, resp);
    if (req == NULL) return;
    gw_sandbox_rec sb;
    gw_sandbox_spec spec;
    sandbox_msg m;
    memset(&spec, 0, sizeof spec);
    memset(&m, 0, sizeof m);
    if (gw_resolve_sandbox_ref(ctx, GW_RPC_GET_SANDBOX, req->id, req->name, &sb, resp) != 0)
        goto out;
    /* What its driver says now, not what was true at create. */
    if (sandbox_read_full(app, w->store, &sb, &spec, 1) != 0 ||
        sandbox_msg_fill(&m, &sb, &spec, app->cfg->trust_domain) != 0) {
        gw_fail_from_error(resp);
        goto out;
    }
    Tessera__V1__GetSandboxResponse out_msg;
    tessera__v1__get_sandbox_response__init(&out_msg);
    out_msg.sandbox = &m.msg;
    gw_reply(resp, &out_msg);
out:
    sandbox_msg_clear(&m);
    gw_store_free_spec(&spec);
    gw_free_unpacked(req);
}

static void list_sandboxes(const gw_call_ctx *ctx, const uint8_t *msg, size_t len,
                           gw_response *resp)
{
    gw_app *app = gw_app_of(ctx);
    gw_worker *w = gw_worker_of(ctx);
    Tessera__V1__ListSandboxesRequest *req =
        gw_unpack(&tessera__v1__list_sandboxes_request__descriptor, msg, len, resp);
    if (req == NULL) return;
    gw_sandbox_rec *rows = NULL;
    size_t n = 0;
    Tessera__V1__Sandbox **items = NULL;
    char(*spiffe)[CA_SPIFFE_ID_MAX + 1] = NULL;

    int page = 0;
    if (gw_page_size(req->page_size, &page, resp) != 0) goto out;
    if (req->page_token[0] != '\0' && ca_uuid_validate(req->page_token, strlen(req->page_token)) != 0) {
        gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT, "bad page_token");
        goto out;
    }
    /* One extra row tells whether another page follows. */
    if (gw_store_sandbox_list(w->store, req->page_token[0] ? req->page_token : NULL, page + 1,
                              &rows, &n) != 0) {
        gw_fail_from_error(resp);
        goto out;
    }
    size_t shown = n > (size_t)page ? (size_t)page : n;
    /* The states its drivers report now (the first ones of a long page;
     * the others as last reconciled). */
    for (size_t i = 0, asked = 0; i < shown && asked < GW_STATE_LIST_REFRESH_MAX; i++)
        asked += (size_t)gw_state_refresh(app, w->store, &rows[i], GW_STATE_MAX_AGE_MS);
    items = gw_repeated_new(&tessera__v1__sandbox__descriptor, shown, resp);
    if (items == NULL) goto out;
    spiffe = calloc(shown + 1, sizeof *spiffe);
    if (spiffe == NULL) {
        gw_response_fail(resp, GW_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < shown; i++)
        gw_sandbox_to_proto(&rows[i], spiffe[i], sizeof spiffe[i], app->cfg->trust_domain,
                            items[i]);
    Tessera__V1__ListSandboxesResponse out_msg;
    tessera__v1__list_sandboxes_response__init(&out_msg);
    out_msg.n_sandboxes = shown;
    out_msg.sandboxes = items;
    char next[CA_UUID_LEN + 1] = "";
    if (n > shown && shown > 0) snprintf(next, sizeof next, "%s", rows[shown - 1].id);
    out_msg.next_page_token = next;
    gw_reply(resp, &out_msg);
out:
    free(spiffe);
    free(items);
    gw_store_free_sandboxes(rows, n);
    gw_free_unpacked(req);
}

static void delete_sandbox(const gw_call_ctx *ctx, const uint8_t *msg, size_t len,
                           gw_response *resp)
{
    gw_app *app = gw_app_of(ctx);
    Tessera__V1__DeleteSandboxRequest *req =
        gw_unpack(&tessera__v1__delete_sandbox_request__descriptor, msg, len, resp);
    if (req == NULL) return;
    gw_sandbox_rec sb;
    gw_svc_deleted gone;
    sandbox_msg m;
    memset(&gone, 0, sizeof gone);
    memset(&m, 0, sizeof m);
    /* The guard's target check, before any store read (gw_handler.h). */
    if (gw_resolve_sandbox_ref(ctx, GW_RPC_DELETE_SANDBOX, req->id, req->name, &sb, resp) != 0)
        goto out;
    if (gw_svc_sandbox_delete(ctx, &sb, &gone, resp) != 0) goto out;
    if (sandbox_msg_fill(&m, &gone.sb, &gone.spec, app->cfg->trust_domain) != 0) {
        gw_fail_from_error(resp);
        goto out;
    }
    Tessera__V1__DeleteSandboxResponse out_msg;
    tessera__v1__delete_sandbox_response__init(&out_msg);
    out_msg.sandbox = &m.msg;
    out_msg.revoked_certificates = gone.revoked;
    gw_reply(resp, &out_msg);
out:
    sandbox_msg_clear(&m);
    gw_store_free_spec(&gone.spec);
    gw_free_unpacked(req);
}

const gw_method gw_rpc_create_sandbox = {
    .path = "/tessera.v1.Gateway/CreateSandbox",
    .rule = GW_RPC_CREATE_SANDBOX,
    .unary = create_sandbox,
};
const gw_method gw_rpc_get_sandbox = {
    .path = "/tessera.v1.Gateway/GetSandbox",
    .rule = GW_RPC_GET_SANDBOX,
    .unary = get_sandbox,
};
const gw_method gw_rpc_list_sandboxes = {
    .path = "/tessera.v1.Gateway/ListSandboxes",
    .rule = GW_RPC_LIST_SANDBOXES,
    .unary = list_sandboxes,
};
const gw_method gw_rpc_delete_sandbox = {
    .path = "/tessera.v1.Gateway/DeleteSandbox",
    .rule = GW_RPC_DELETE_SANDBOX,
    .unary = delete_sandbox,
};
