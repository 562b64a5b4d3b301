/* Certificates: RenewCertificate, RevokeCertificate, ListCertificates,
 * GetTrustBundle. Renewal and revocation are the service's (gw_svc_cert.h). */
#include <openssl/crypto.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca_issue.h"
#include "ca_pem.h"
#include "gw_audit.h"
#include "gw_commit.h"
#include "gw_config.h"
#include "gw_crl.h"
#include "gw_handler.h"
#include "gw_metrics.h"
#include "gw_ratelimit.h"
#include "gw_revocation.h"
#include "gw_rpcs.h"
#include "tsr_time.h"
#include "tsr_utf8.h"

static void renew_certificate(const gw_call_ctx *ctx, const uint8_t *msg, size_t len,
                              gw_response *resp)
{
    Tessera__V1__RenewCertificateRequest *req =
        gw_unpack(&tessera__v1__renew_certificate_request__descriptor, msg, len, resp);
    if (req == NULL) return;
    gw_svc_renewal r;
    gw_response ok;
    memset(&ok, 0, sizeof ok);
    if (gw_svc_cert_renew_sign(ctx, req->csr.data, req->csr.len, &r, resp) != 0) goto out;
    /* The answer, sent only once the record is durable. */
    Tessera__V1__RenewCertificateResponse out_msg;
    tessera__v1__renew_certificate_response__init(&out_msg);
    out_msg.certificate_pem = r.leaf_pem;
    out_msg.chain_pem = r.pki->chain_pem;
    out_msg.bundle_pem = r.pki->bundle_pem;
    out_msg.serial = r.rec.serial;
    out_msg.not_after = r.rec.not_after;
    gw_reply(&ok, &out_msg);
    if (ok.status != GW_STATUS_OK) {
        *resp = ok;
        ok.body = NULL;
    } else {
        gw_svc_cert_renew_record(ctx, &r.rec, &ok, resp);
    }
    gw_svc_renewal_clear(&r);
out:
    free(ok.body);
    gw_free_unpacked(req);
}

static void cert_to_proto(gw_cert_rec *c, Tessera__V1__Certificate *out)
{
    tessera__v1__certificate__init(out);
    out->serial = c->serial;
    out->spiffe_id = c->spiffe_id;
    out->sandbox_id = c->sandbox_id;
    out->not_before = c->not_before;
    out->not_after = c->not_after;
    out->revoked_at = c->revoked_at;
    out->revocation_reason = c->revocation_reason;
    out->renewed_from = c->renewed_from;
}

static void revoke_certificate(const gw_call_ctx *ctx, const uint8_t *msg, size_t len,
                               gw_response *resp)
{
    Tessera__V1__RevokeCertificateRequest *req =
        gw_unpack(&tessera__v1__revoke_certificate_request__descriptor, msg, len, resp);
    if (req == NULL) return;
    gw_cert_rec rec;
    if (gw_svc_cert_revoke(ctx, req->serial, req->reason, &rec, resp) == 0) {
        Tessera__V1__RevokeCertificateResponse out_msg;
        tessera__v1__revoke_certificate_response__init(&out_msg);
        Tessera__V1__Certificate c;
        cert_to_proto(&rec, &c);
        out_msg.certificate = &c;
        gw_reply(resp, &out_msg);
    }
    gw_free_unpacked(req);
}

static void list_certificates(const gw_call_ctx *ctx, const uint8_t *msg, size_t len,
                              gw_response *resp)
{
    Tessera__V1__ListCertificatesRequest *req =
        gw_unpack(&tessera__v1__list_certificates_request__descriptor, msg, len, resp);
    if (req == NULL) return;
    gw_cert_rec *certs = NULL;
    size_t n = 0;
    int page = 0, more = 0;
    gw_page_cursor cursor;
    Tessera__V1__Certificate **items = NULL;
    gw_sandbox_rec sb;
    /* Certificates of deleted sandboxes stay listable, for audit. */
    if (gw_resolve_sandbox_id(ctx, GW_RPC_LIST_CERTIFICATES, req->sandbox_id, 1, &sb, resp) != 0)
        goto out;
    /* The rows are always the admitted sandbox's: the token only positions
     * the cursor, and one issued for another sandbox is refused. */
    if (gw_page_size(req->page_size, &page, resp) != 0 ||
        gw_page_token_parse(req->page_token, sb.id, 0, &cursor, resp) != 0)
        goto out;
    if (gw_store_cert_page(gw_worker_of(ctx)->store, sb.id, cursor.n, page, &certs, &n, &more) !=
        0) {
        gw_fail_from_error(resp);
        goto out;
    }
    items = gw_repeated_new(&tessera__v1__certificate__descriptor, n, resp);
    if (items == NULL) goto out;
    /* Within what a stock gRPC client accepts: stop before the first
     * certificate that would not fit (never before the first). */
    size_t budget = gw_app_of(ctx)->cfg->max_message_bytes, used = 512, shown = 0;
    for (; shown < n; shown++) {
        cert_to_proto(&certs[shown], items[shown]);
        used += protobuf_c_message_get_packed_size(&items[shown]->base) + 6;
        if (shown > 0 && used > budget) break;
    }
    if (shown < n) {
        items[shown] = NULL;
        more = 1;
        n = shown;   /* the rest of certs is plain data: freed with the array */
    }
    Tessera__V1__ListCertificatesResponse out_msg;
    tessera__v1__list_certificates_response__init(&out_msg);
    out_msg.n_certificates = n;
    out_msg.certificates = items;
    char next[GW_PAGE_TOKEN_MAX + 1] = "";
    if (more && n > 0)
        gw_page_token_format(next, sb.id, certs[n - 1].row, NULL);
    out_msg.next_page_token = next;
    gw_reply(resp, &out_msg);
out:
    free(items);
    gw_store_free_certs(certs, n);
    gw_free_unpacked(req);
}

static void get_trust_bundle(const gw_call_ctx *ctx, const uint8_t *msg, size_t len,
                             gw_response *resp)
{
    gw_app *app = gw_app_of(ctx);
    Tessera__V1__GetTrustBundleRequest *req =
        gw_unpack(&tessera__v1__get_trust_bundle_request__descriptor, msg, len, resp);
    if (req == NULL) return;
    Tessera__V1__GetTrustBundleResponse out_msg;
    tessera__v1__get_trust_bundle_response__init(&out_msg);
    gw_pki *pki = gw_app_pki(app);
    gw_crl *crl = NULL;
    /* Cached: signed again only when revocations or the PKI changed. */
    if (gw_crl_current(app->crl, pki, app->revoked, gw_worker_of(ctx)->store, 0, &crl) != 0) {
        gw_fail_from_error(resp);
        goto out;
    }
    out_msg.bundle_pem = pki->bundle_pem;
    out_msg.spiffe_bundle_json = pki->spiffe_bundle_json;
    out_msg.crl_pem = crl->pem;
    char trust_domain[CA_TRUST_DOMAIN_MAX + 1];
    snprintf(trust_domain, sizeof trust_domain, "%s", app->cfg->trust_domain);
    out_msg.trust_domain = trust_domain;
    gw_reply(resp, &out_msg);
out:
    gw_crl_release(crl);
    gw_pki_release(pki);
    gw_free_unpacked(req);
}

const gw_method gw_rpc_renew_certificate = {
    .path = "/tessera.v1.Gateway/RenewCertificate",
    .rule = GW_RPC_RENEW_CERTIFICATE,
    .unary = renew_certificate,
};
const gw_method gw_rpc_revoke_certificate = {
    .path = "/tessera.v1.Gateway/RevokeCertificate",
    .rule = GW_RPC_REVOKE_CERTIFICATE,
    .unary = revoke_certificate,
};
const gw_method gw_rpc_list_certificates = {
    .path = "/tessera.v1.Gateway/ListCertificates",
    .rule = GW_RPC_LIST_CERTIFICATES,
    .unary = list_certificates,
};
const gw_method gw_rpc_get_trust_bundle = {
    .path = "/tessera.v1.Gateway/GetTrustBundle",
    .rule = GW_RPC_GET_TRUST_BUNDLE,
    .unary = get_trust_bundle,
};
