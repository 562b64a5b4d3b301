/* The sandbox lifecycle, without protobuf (gw_svc_sandbox.h). */
#include "gw_svc_sandbox.h"

#include <openssl/x509.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca_issue.h"
#include "ca_pem.h"
#include "ca_spiffe.h"
#include "grpc_frame.h"
#include "gw_audit.h"
#include "gw_config.h"
#include "gw_driver.h"
#include "gw_metrics.h"
#include "gw_revocation.h"
#include "gw_state.h"
#include "gw_svc_cert.h"
#include "gw_store.h"
#include "gw_workload.h"
#include "pol_policy.h"
#include "tsr_time.h"

#define MAX_ENV_VARS 256
#define MAX_ENV_VALUE (32 * 1024)

/* ---- request checks ---------------------------------------------------------------- */

int gw_env_validate(const gw_env_var *env, size_t n, gw_response *resp)
{
    static const gw_env_bounds provider = {"provider_env", MAX_ENV_VARS, MAX_ENV_VALUE, 0};
    return gw_env_check(env, n, &provider, resp);
}

int gw_policy_check(const char *policy, gw_response *resp)
{
    if (policy == NULL || policy[0] == '\0')
        return gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT, "policy is required");
    size_t len = strlen(policy);
    if (len > POL_MAX_BYTES)
        return gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT,
                                "policy of %zu bytes exceeds %d", len, POL_MAX_BYTES);
    if (pol_validate(policy, len) != 0)
        return gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT, "%s", tsr_errmsg());
    return 0;
}

/* A freshly minted identity, in memory only until the driver places it. */
struct minted {
    char *cert_pem; /* leaf then issuing CA */
    size_t cert_len;
    char *key_pem;  /* secret */
    size_t key_len;
};

static void minted_clear(struct minted *m)
{
    free(m->cert_pem);
    ca_secret_free(m->key_pem, m->key_len);
    memset(m, 0, sizeof *m);
}

/* Mint the sandbox's first key and certificate (the driver will place them). */
static int mint_identity(const gw_pki *pki, const char *spiffe_id, X509 **cert_out,
                         struct minted *id_out)
{
    int rc = -1;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    char *leaf_pem = NULL;
    size_t leaf_len = 0;
    memset(id_out, 0, sizeof *id_out);

    TSR_TRY(ca_key_generate(CA_KEY_P256, &key));
    ca_leaf_request req = {
        .spiffe_id = spiffe_id,
        .public_key = key,
        .ttl_seconds = pki->cfg->sandbox_cert_ttl,
    };
    TSR_TRY(ca_issue_leaf(pki->issuer, &req, &cert));
    TSR_TRY(ca_key_to_pem(key, &id_out->key_pem, &id_out->key_len));
    TSR_TRY(ca_cert_to_pem(cert, &leaf_pem, &leaf_len));
    size_t chain_len = strlen(pki->chain_pem);
    id_out->cert_pem = malloc(leaf_len + chain_len + 1);
    TSR_TRY_ENSURE(id_out->cert_pem != NULL, TSR_E_INTERNAL, "out of memory");
    memcpy(id_out->cert_pem, leaf_pem, leaf_len);
    memcpy(id_out->cert_pem + leaf_len, pki->chain_pem, chain_len + 1);
    id_out->cert_len = leaf_len + chain_len;
    *cert_out = cert;
    cert = NULL;
    rc = 0;
out:
    if (rc != 0) minted_clear(id_out);
    free(leaf_pem);
    X509_free(cert);
    EVP_PKEY_free(key);
    return rc;
}

/* ---- a fresh identity for a driver's restart (tsr_driver_env.mint_identity) ---- */

/* The buffers handed to a driver are ours: const in the ABI, freed here. */
static void *unconst(const char *p)
{
    return (void *)(uintptr_t)p;
}

void gw_sandbox_release_for_driver(void *arg, tsr_driver_identity *identity)
{
    (void)arg;
    if (identity == NULL) return;
    free(unconst(identity->cert_pem));
    if (identity->key_pem != NULL) ca_secret_free(unconst(identity->key_pem), identity->key_len);
    free(unconst(identity->bundle_pem));
    memset(identity, 0, sizeof *identity);
}

int gw_sandbox_mint_for_driver(void *arg, const char *driver, const char *sandbox_id,
                               tsr_driver_identity *out, char *err, size_t err_cap)
{
    gw_app *app = arg;
    gw_store *store = NULL;
    gw_pki *pki = NULL;
    X509 *cert = NULL;
    struct minted m = {0};
    char spiffe[CA_SPIFFE_ID_MAX + 1], why[300] = "";
    gw_sandbox_rec sb;
    gw_cert_rec rec;
    int rc = -1;
    memset(out, 0, sizeof *out);

    if (sandbox_id == NULL || ca_uuid_validate(sandbox_id, strlen(sandbox_id)) != 0) {
        snprintf(why, sizeof why, "bad sandbox id");
        goto out;
    }
    if (gw_store_open(app->cfg->store_path, app->keyring, &store) != 0 ||
        gw_store_sandbox_get(store, sandbox_id, &sb) != 0) {
        snprintf(why, sizeof why, "%s",
                 tsr_errcat() == TSR_E_NOTFOUND ? "no such sandbox" : tsr_errmsg());
        goto out;
    }
    /* Only the driver's own, live sandboxes; renewal's rate limit bounds a
     * driver that restarts in a loop (counted across replicas by the
     * database they share, as renewals are). */
    if (sb.deleted_at != 0 || strcmp(sb.driver, driver) != 0) {
        snprintf(why, sizeof why, "%s", sb.deleted_at != 0 ? "sandbox deleted"
                                                           : "not a sandbox of this driver");
        goto out;
    }
    bool allowed = false;
    if (gw_svc_renew_allowed(app, store, sandbox_id, &allowed) != 0) {
        snprintf(why, sizeof why, "%s", tsr_errmsg());
        goto out;
    }
    if (!allowed) {
        snprintf(why, sizeof why, "renewal rate limit: at most %d per %llds",
                 app->cfg->renew_limit, (long long)app->cfg->renew_window);
        goto out;
    }
    pki = gw_app_pki(app);
    /* Recorded (the store re-checks that the sandbox lives, in the same
     * transaction) before anything leaves: a DeleteSandbox racing this
     * revokes it with the others. */
    if (ca_spiffe_format(CA_KIND_SANDBOX, app->cfg->trust_domain, sandbox_id, spiffe,
                         sizeof spiffe) != 0 ||
        mint_identity(pki, spiffe, &cert, &m) != 0 ||
        gw_cert_rec_from_x509(cert, spiffe, sandbox_id, &rec) != 0 ||
        gw_store_cert_insert(store, &rec) != 0) {
        snprintf(why, sizeof why, "%s",
                 tsr_errcat() == TSR_E_STATE ? "sandbox deleted" : tsr_errmsg());
        goto out;
    }
    char *bundle = strdup(pki->bundle_pem);
    if (bundle == NULL) {
        snprintf(why, sizeof why, "out of memory");
        goto out;
    }
    out->cert_pem = m.cert_pem;
    out->cert_len = m.cert_len;
    out->key_pem = m.key_pem;
    out->key_len = m.key_len;
    out->bundle_pem = bundle;
    out->bundle_len = strlen(bundle);
    memset(&m, 0, sizeof m);
    rc = 0;
out:;
    /* The audit line names the gateway itself as the one who asked. */
    gw_principal self;
    memset(&self, 0, sizeof self);
    if (ca_spiffe_format(CA_KIND_GATEWAY, app->cfg->trust_domain, NULL, self.spiffe_id,
                         sizeof self.spiffe_id) != 0)
        self.spiffe_id[0] = '\0';
    char method[64];
    snprintf(method, sizeof method, "driver %.32s: start", driver);
    gw_call_ctx ctx = {.principal = &self, .method = method, .app = app, .peer_addr = ""};
    if (rc == 0) {
        gw_audit_event(&ctx, "issue", sandbox_id, "allow", "fresh identity for a restart",
                       rec.serial);
        gw_metrics_cert_issued(GW_ISSUE_RESTART);
    } else {
        gw_audit_event(&ctx, "issue", sandbox_id != NULL ? sandbox_id : "", "deny", why, NULL);
        if (err != NULL && err_cap > 0) snprintf(err, err_cap, "%s", why);
    }
    minted_clear(&m);
    X509_free(cert);
    if (pki != NULL) gw_pki_release(pki);
    gw_store_close(store);
    return rc;
}

/* ---- CreateSandbox ---------------------------------------------------------------- */

/* The answer for a failed create: INVALID_ARGUMENT (the driver cannot run
 * it), FAILED_PRECONDITION (retrying as is will not help), or UNAVAILABLE. */
static void fail_driver(gw_response *resp, enum tsr_errcat cat, const char *why)
{
    gw_response_fail(resp, cat == TSR_E_INPUT   ? GW_STATUS_INVALID_ARGUMENT
                           : cat == TSR_E_STATE ? GW_STATUS_FAILED_PRECONDITION
                                                : GW_STATUS_UNAVAILABLE,
                     "%s", why);
}

int gw_svc_sandbox_create(const gw_call_ctx *ctx, const gw_svc_create_req *req,
                          gw_svc_created *made, gw_response *resp)
{
    gw_app *app = gw_app_of(ctx);
    gw_worker *w = gw_worker_of(ctx);
    int rc = -1;
    X509 *cert = NULL;
    struct minted identity = {0};
    gw_driver *drv = NULL;
    gw_pki *pki = gw_app_pki(app);   /* issuer, chain and bundle of one reload */
    int creating = 0;
    gw_sandbox_rec sb = {0};
    memset(made, 0, sizeof *made);

    if (ca_name_validate(req->name, strlen(req->name)) != 0) {
        gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT, "name must match [a-z0-9._-]{1,64}");
        goto out;
    }
    if (gw_policy_check(req->policy, resp) != 0) goto out;
    if (gw_env_validate(req->provider_env, req->n_provider_env, resp) != 0) goto out;
    /* What it runs: bounded and well-formed before any driver sees it. */
    if ((req->wire != NULL && gw_workload_wire_check(req->wire, req->wire_len, resp) != 0) ||
        gw_workload_validate(req->image, req->command, req->n_command, req->env, req->n_env,
                             resp) != 0)
        goto out;
    const char *driver = req->driver != NULL && req->driver[0] ? req->driver
                                                               : app->cfg->default_driver;
    drv = gw_drivers_find(app->drivers, driver);
    if (drv == NULL) {
        gw_response_fail(resp, tsr_errcat() == TSR_E_INPUT ? GW_STATUS_INVALID_ARGUMENT
                                                           : GW_STATUS_FAILED_PRECONDITION,
                         "%s", tsr_errmsg());
        goto out;
    }

    char spiffe[CA_SPIFFE_ID_MAX + 1];
    gw_cert_rec rec;
    if (ca_uuid_generate(sb.id) != 0 ||
        ca_spiffe_format(CA_KIND_SANDBOX, app->cfg->trust_domain, sb.id, spiffe,
                         sizeof spiffe) != 0) {
        gw_fail_from_error(resp);
        goto out;
    }
    tsr_driver_sandbox dsb = {
        .id = sb.id, .name = req->name, .spiffe_id = spiffe, .image = req->image,
        .command = (const char *const *)req->command, .n_command = req->n_command,
    };
    /* The driver's word on the workload, before anything is minted. */
    if (gw_driver_check(drv, &dsb) != 0) {
        fail_driver(resp, tsr_errcat(), tsr_errmsg());
        goto out;
    }
    if (mint_identity(pki, spiffe, &cert, &identity) != 0 ||
        gw_cert_rec_from_x509(cert, spiffe, sb.id, &rec) != 0) {
        gw_fail_from_error(resp);
        goto out;
    }
    snprintf(sb.name, sizeof sb.name, "%s", req->name);
    snprintf(sb.driver, sizeof sb.driver, "%s", driver);
    snprintf(sb.state, sizeof sb.state, "pending");
    snprintf(sb.image, sizeof sb.image, "%s", req->image);
    snprintf(sb.owner, sizeof sb.owner, "%s", app->replica);
    sb.created_at = tsr_now_unix();
    sb.policy_version = 1;
    char no_detail[] = "";
    gw_sandbox_spec spec = {
        .command = req->command, .n_command = req->n_command,
        .env = (gw_env_var *)(uintptr_t)req->env, .n_env = req->n_env,
        .state_detail = no_detail,
    };

    /* Refreshes leave it to us until it runs or is rolled back. */
    if (gw_states_creating(app->states, sb.id) != 0) {
        gw_fail_from_error(resp);
        goto out;
    }
    creating = 1;
    /* One transaction: the sandbox, its policy, its environments, its
     * command and its first certificate are recorded together or not at all. */
    if (gw_store_sandbox_create_spec(w->store, &sb, req->policy, req->provider_env,
                                     req->n_provider_env, &rec, &spec) != 0) {
        if (tsr_errcat() == TSR_E_EXISTS)
            gw_response_fail(resp, GW_STATUS_ALREADY_EXISTS, "sandbox named %s already exists",
                             sb.name);
        else
            gw_fail_from_error(resp);
        goto out;
    }
    gw_audit_event(ctx, "issue", sb.id, "allow", "sandbox created", rec.serial);
    gw_metrics_cert_issued(GW_ISSUE_CREATE);

    /* The driver places the identity (in memory until now) and starts it. */
    tsr_driver_identity did = {
        .cert_pem = identity.cert_pem, .cert_len = identity.cert_len,
        .key_pem = identity.key_pem, .key_len = identity.key_len,
        .bundle_pem = pki->bundle_pem, .bundle_len = strlen(pki->bundle_pem),
    };
    if (gw_driver_launch(drv, &dsb, &did) != 0) {
        /* No half-made sandbox: delete it and revoke its certificate. */
        char why[GRPC_MESSAGE_MAX];
        enum tsr_errcat cat = tsr_errcat();
        snprintf(why, sizeof why, "%s", tsr_errmsg());
        int revoked = 0;
        if (gw_store_sandbox_delete(w->store, sb.id, tsr_now_unix(), &revoked) != 0 ||
            gw_revocations_add(app->revoked, rec.serial, rec.not_after) != 0)
            fprintf(stderr, "tessera-gateway: rollback of sandbox %s: %s\n", sb.id, tsr_errmsg());
        gw_audit_event(ctx, "revoke", sb.id, "allow", "driver failed; sandbox rolled back",
                       rec.serial);
        gw_metrics_certs_revoked(1);
        fail_driver(resp, cat, why);
        goto out;
    }
    snprintf(sb.state, sizeof sb.state, "running");
    if (gw_store_sandbox_set_state(w->store, sb.id, sb.state) != 0)
        fprintf(stderr, "tessera-gateway: sandbox %s: %s\n", sb.id, tsr_errmsg());
    made->sb = sb;
    memcpy(made->serial, rec.serial, sizeof made->serial);
    rc = 0;
out:
    if (creating) gw_states_created(app->states, sb.id);
    minted_clear(&identity);
    X509_free(cert);
    gw_pki_release(pki);
    return rc;
}

/* ---- DeleteSandbox ---------------------------------------------------------------- */

/* After the store has revoked a sandbox's certificates, make every open
 * connection using one of them fail its next validity check. */
static int revoke_in_memory(gw_app *app, gw_store *store, const char *sandbox_id)
{
    gw_cert_rec *certs = NULL;
    size_t n = 0;
    TSR_GUARD(gw_store_cert_list(store, sandbox_id, &certs, &n));
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        if (certs[i].revoked_at != 0)
            rc = gw_revocations_add(app->revoked, certs[i].serial, certs[i].not_after);
    gw_store_free_certs(certs, n);
    return rc;
}

int gw_svc_sandbox_delete(const gw_call_ctx *ctx, const gw_sandbox_rec *target,
                          gw_svc_deleted *gone, gw_response *resp)
{
    gw_app *app = gw_app_of(ctx);
    gw_worker *w = gw_worker_of(ctx);
    gw_sandbox_rec sb = *target;
    int revoked = 0;
    memset(gone, 0, sizeof *gone);
    if (gw_store_sandbox_delete(w->store, sb.id, tsr_now_unix(), &revoked) != 0 ||
        revoke_in_memory(app, w->store, sb.id) != 0) {
        gw_fail_from_error(resp);
        return -1;
    }
    /* The certificates are revoked already (on every replica: the store's
     * revocation feed); the driver removes the rest in the background (its
     * stop may take a grace period). A sandbox another replica runs is left
     * to that replica, whose reconciler finds it due for teardown. */
    if (gw_sandbox_owned(app, &sb)) gw_sandbox_teardown(app, w->store, &sb);
    gw_states_forget(app->states, sb.id);
    char why[64];
    snprintf(why, sizeof why, "sandbox deleted, %d certificates revoked", revoked);
    gw_audit_event(ctx, "delete", sb.id, "allow", why, NULL);
    if (revoked > 0) gw_metrics_certs_revoked((uint64_t)revoked);

    /* The sandbox as it is now: deleted, with what it ran. */
    if (gw_store_sandbox_get(w->store, sb.id, &gone->sb) != 0 ||
        gw_store_sandbox_spec_get(w->store, sb.id, &gone->spec) != 0) {
        gw_fail_from_error(resp);
        return -1;
    }
    gone->revoked = revoked;
    return 0;
}
