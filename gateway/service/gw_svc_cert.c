#include "gw_svc_cert.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca_issue.h"
#include "ca_pem.h"
#include "gw_audit.h"
#include "gw_commit.h"
#include "gw_config.h"
#include "gw_metrics.h"
#include "gw_ratelimit.h"
#include "gw_revocation.h"
#include "tsr_time.h"
#include "tsr_utf8.h"

#define MAX_REASON 128

int gw_cert_rec_from_x509(X509 *cert, const char *spiffe_id, const char *sandbox_id,
                          gw_cert_rec *out)
{
    memset(out, 0, sizeof *out);
    TSR_GUARD(ca_cert_serial_hex(cert, out->serial));
    TSR_GUARD(ca_cert_validity(cert, &out->not_before, &out->not_after));
    TSR_ENSURE(strlen(spiffe_id) < sizeof out->spiffe_id, TSR_E_INTERNAL, "SPIFFE ID too long");
    strcpy(out->spiffe_id, spiffe_id);
    snprintf(out->sandbox_id, sizeof out->sandbox_id, "%s", sandbox_id ? sandbox_id : "");
    out->issued_at = tsr_now_unix();
    return 0;
}

/* ---- RenewCertificate ---------------------------------------------------------- */

/* A renewal waiting for its record's group commit (gw_commit.h). The answer
 * is built before the commit and sent only after it: a certificate the
 * store does not know could never be listed or revoked. What the audit line
 * needs of the call is copied: the stream may be gone by then (a recorded
 * certificate that was never returned is harmless: it is listed and
 * revocable like any other). */
typedef struct renew_job {
    gw_commit_item item;       /* first: the committer hands it back */
    gw_held_call *held;
    gw_response ok;            /* the answer once durable */
    gw_principal principal;
    gw_call_ctx ctx;           /* for the audit line; principal/peer point here */
    char peer[64];
} renew_job;

static void renew_job_free(renew_job *j)
{
    free(j->ok.body);
    OPENSSL_cleanse(&j->principal, sizeof j->principal);
    free(j);
}

/* The store refused the record or failed: the status a caller sees. */
static void renew_store_failure(gw_response *resp, enum tsr_errcat cat, const char *msg)
{
    /* The store re-checks liveness in the same transaction, so a renewal
     * racing a DeleteSandbox never records a live certificate. */
    if (cat == TSR_E_STATE) {
        gw_response_fail(resp, GW_STATUS_UNAUTHENTICATED, "sandbox deleted");
        return;
    }
    char copy[300];   /* msg may be this thread's own error text */
    snprintf(copy, sizeof copy, "%s", msg);
    (void)TSR_FAIL(cat, "%s", copy);
    gw_fail_from_error(resp);
}

/* On the committer thread, after the batch holding this record committed. */
static void renew_committed(gw_commit_item *item, int rc, enum tsr_errcat cat, const char *msg)
{
    renew_job *j = (renew_job *)item;
    TSR_ASSERT(j->held != NULL);
    gw_response r;
    memset(&r, 0, sizeof r);
    if (rc == 0) {
        gw_audit_event(&j->ctx, "renew", j->principal.name, "allow", "certificate renewed",
                       j->item.rec.serial);
        gw_metrics_cert_issued(GW_ISSUE_RENEW);
        r = j->ok;
        j->ok.body = NULL;
    } else {
        renew_store_failure(&r, cat, msg);
    }
    gw_held_call_complete(j->held, &r);
    renew_job_free(j);
}

/* Queue the record and hold the call; 0 if the answer now comes later. */
static int renew_defer(const gw_call_ctx *ctx, gw_app *app, const gw_cert_rec *rec,
                       gw_response *ok)
{
    if (app->committer == NULL) return -1;
    renew_job *j = calloc(1, sizeof *j);
    if (j == NULL) return -1;
    j->held = gw_call_hold(ctx);
    if (j->held == NULL) {
        free(j);
        return -1;
    }
    j->item.rec = *rec;
    j->item.done = renew_committed;
    j->principal = *ctx->principal;
    snprintf(j->peer, sizeof j->peer, "%s", ctx->peer_addr != NULL ? ctx->peer_addr : "");
    j->ctx = *ctx;
    j->ctx.principal = &j->principal;
    j->ctx.peer_addr = j->peer;
    j->ctx.transport = NULL;
    j->ok = *ok;
    ok->body = NULL;
    if (gw_committer_submit(app->committer, &j->item) != 0) {
        gw_response r;
        memset(&r, 0, sizeof r);
        gw_response_fail(&r, GW_STATUS_UNAVAILABLE, "storage unavailable: %s", tsr_errmsg());
        gw_held_call_complete(j->held, &r);
        renew_job_free(j);
    }
    return 0;
}

int gw_svc_renew_allowed(gw_app *app, gw_store *store, const char *sandbox_id, bool *allowed)
{
    bool shared = false;
    *allowed = false;
    TSR_GUARD(gw_store_renew_take(store, sandbox_id, app->cfg->renew_limit,
                                  (int64_t)app->cfg->renew_window * 1000, &shared, allowed));
    if (!shared) *allowed = gw_ratelimit_take(app->renew_limit, sandbox_id, tsr_monotonic_ms());
    return 0;
}

int gw_svc_cert_renew_sign(const gw_call_ctx *ctx, const uint8_t *csr, size_t csr_len,
                           gw_svc_renewal *out, gw_response *resp)
{
    gw_app *app = gw_app_of(ctx);
    gw_worker *w = gw_worker_of(ctx);
    const gw_principal *p = ctx->principal;
    /* The guard admits only sandbox principals here; never trust that alone. */
    TSR_ASSERT(p->kind == GW_PRINCIPAL_SANDBOX);
    int rc = -1;
    X509 *cert = NULL;
    uint8_t *cert_der = NULL;
    size_t cert_der_len = 0, leaf_len = 0;
    gw_pki *pki = NULL;
    memset(out, 0, sizeof *out);

    if (csr_len == 0 || csr_len > CA_CSR_MAX_DER) {
        gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT, "csr must be 1..%d bytes of DER",
                         CA_CSR_MAX_DER);
        goto out;
    }
    /* The identity is the caller's certificate's, and only while its sandbox lives. */
    gw_sandbox_rec sb;
    if (gw_store_sandbox_get(w->store, p->name, &sb) != 0) {
        if (tsr_errcat() == TSR_E_NOTFOUND)
            gw_response_fail(resp, GW_STATUS_UNAUTHENTICATED, "sandbox does not exist");
        else
            gw_fail_from_error(resp);
        goto out;
    }
    if (sb.deleted_at != 0) {
        gw_audit_denial(ctx, GW_DENY_DELETED_SANDBOX, p->name,
                        "renewal for a deleted sandbox");
        gw_response_fail(resp, GW_STATUS_UNAUTHENTICATED, "sandbox deleted");
        goto out;
    }
    /* Rate limit before any signature work, so CSRs cannot burn CPU;
     * counted by the database when gateways share it (gw_store.h). */
    bool allowed = false;
    if (gw_svc_renew_allowed(app, w->store, p->name, &allowed) != 0) {
        gw_fail_from_error(resp);
        goto out;
    }
    if (!allowed) {
        gw_audit_denial(ctx, GW_DENY_RATE_LIMIT, p->name, "renewal rate limit");
        gw_response_fail(resp, GW_STATUS_RESOURCE_EXHAUSTED,
                         "renewal rate limit: at most %d per %llds", app->cfg->renew_limit,
                         (long long)app->cfg->renew_window);
        goto out;
    }
    /* One snapshot for the signature and the chain and bundle sent back. */
    pki = gw_app_pki(app);
    if (ca_sign_csr_unparsed(pki->issuer, csr, csr_len, p->spiffe_id,
                             pki->cfg->sandbox_cert_ttl, 0, &cert, &cert_der,
                             &cert_der_len) != 0) {
        char why[300];
        snprintf(why, sizeof why, "bad CSR: %s", tsr_errmsg());
        gw_audit_denial(ctx, GW_DENY_BAD_REQUEST, p->name, why);
        gw_response_fail(resp, tsr_errcat() == TSR_E_INPUT || tsr_errcat() == TSR_E_LIMIT
                                   ? GW_STATUS_INVALID_ARGUMENT
                                   : GW_STATUS_INTERNAL,
                         "%s", why);
        goto out;
    }
    /* The PEM of the very DER whose signature was checked. */
    if (gw_cert_rec_from_x509(cert, p->spiffe_id, p->name, &out->rec) != 0 ||
        ca_cert_der_to_pem(cert_der, cert_der_len, &out->leaf_pem, &leaf_len) != 0) {
        gw_fail_from_error(resp);
        goto out;
    }
    /* Its lineage: the store refuses the record if the caller's own
     * certificate is revoked by the time it commits, and a revocation of the
     * caller's certificate after that revokes this one too. */
    snprintf(out->rec.renewed_from, sizeof out->rec.renewed_from, "%s", p->serial_hex);
    out->pki = pki;
    pki = NULL;
    rc = 0;
out:
    if (rc != 0) gw_svc_renewal_clear(out);
    OPENSSL_free(cert_der);
    X509_free(cert);
    gw_pki_release(pki);
    return rc;
}

void gw_svc_renewal_clear(gw_svc_renewal *r)
{
    free(r->leaf_pem);
    if (r->pki != NULL) gw_pki_release(r->pki);
    memset(r, 0, sizeof *r);
}

void gw_svc_cert_renew_record(const gw_call_ctx *ctx, const gw_cert_rec *rec, gw_response *ok,
                              gw_response *resp)
{
    gw_app *app = gw_app_of(ctx);
    gw_worker *w = gw_worker_of(ctx);
    const gw_principal *p = ctx->principal;
    /* Group commit: the worker serves other calls while the record is
     * written with others in one transaction. */
    if (renew_defer(ctx, app, rec, ok) == 0) return;
    /* No transport to hold the call (direct handler calls): commit here. */
    if (gw_store_cert_insert(w->store, rec) != 0) {
        renew_store_failure(resp, tsr_errcat(), tsr_errmsg());
        return;
    }
    gw_audit_event(ctx, "renew", p->name, "allow", "certificate renewed", rec->serial);
    gw_metrics_cert_issued(GW_ISSUE_RENEW);
    *resp = *ok;
    ok->body = NULL;
}

/* ---- RevokeCertificate --------------------------------------------------------- */

/* Lowercase hex, 1..40 digits; uppercase accepted and folded. */
static int normalize_serial(const char *in, char out[41])
{
    size_t n = strlen(in);
    if (n == 0 || n > 40) return -1;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (c >= 'A' && c <= 'F') c = (char)(c - 'A' + 'a');
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return -1;
        out[i] = c;
    }
    out[n] = '\0';
    return 0;
}

/* The revoked certificate's renewal lineage into the in-memory set. */
static int revoke_lineage_in_memory(gw_app *app, const gw_revoked_serial *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        TSR_GUARD(gw_revocations_add(app->revoked, v[i].serial, v[i].not_after));
    return 0;
}

int gw_svc_cert_revoke(const gw_call_ctx *ctx, const char *serial_in, const char *reason_in,
                       gw_cert_rec *rec, gw_response *resp)
{
    gw_app *app = gw_app_of(ctx);
    gw_worker *w = gw_worker_of(ctx);
    int rc = -1;
    char serial[41];
    char reason[MAX_REASON + 1];
    gw_revoked_serial *lineage = NULL;
    size_t n_lineage = 0;
    if (normalize_serial(serial_in, serial) != 0) {
        gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT, "serial must be 1..40 hex digits");
        goto out;
    }
    if (strlen(reason_in) > MAX_REASON) {
        gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT, "reason exceeds %d bytes", MAX_REASON);
        goto out;
    }
    /* Served again in Certificate.revocation_reason, a proto3 string. */
    if (!tsr_utf8_valid(reason_in, strlen(reason_in))) {
        gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT, "reason is not valid UTF-8");
        goto out;
    }
    if (reason_in[0])
        snprintf(reason, sizeof reason, "%s", reason_in);
    else
        snprintf(reason, sizeof reason, "revoked by %s", ctx->principal->name);
    if (gw_store_cert_revoke(w->store, serial, reason, tsr_now_unix(), rec, &lineage,
                             &n_lineage) != 0) {
        if (tsr_errcat() == TSR_E_NOTFOUND)
            gw_response_fail(resp, GW_STATUS_NOT_FOUND, "certificate %s not found", serial);
        else
            gw_fail_from_error(resp);
        goto out;
    }
    /* Durable first, then every worker sees it (and every certificate
     * renewed from it) within one validity tick. */
    if (gw_revocations_add(app->revoked, rec->serial, rec->not_after) != 0 ||
        revoke_lineage_in_memory(app, lineage, n_lineage) != 0) {
        gw_fail_from_error(resp);
        goto out;
    }
    gw_audit_event(ctx, "revoke", rec->sandbox_id, "allow", reason, rec->serial);
    for (size_t i = 0; i < n_lineage; i++)
        gw_audit_event(ctx, "revoke", rec->sandbox_id, "allow", "renewed from a revoked certificate",
                       lineage[i].serial);
    gw_metrics_certs_revoked(1 + n_lineage);
    rc = 0;
out:
    free(lineage);
    return rc;
}
