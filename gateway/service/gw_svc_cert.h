/* Certificates as the service layer sees them (no protobuf). */
#ifndef GW_SVC_CERT_H
#define GW_SVC_CERT_H

#include <openssl/x509.h>

#include "gw_app.h"
#include "gw_rpc.h"
#include "gw_store.h"
#include "tsr_err.h"

/* A certificate record for the store, from an issued certificate. */
TSR_WUR int gw_cert_rec_from_x509(X509 *cert, const char *spiffe_id, const char *sandbox_id,
                                  gw_cert_rec *out);

/* One new certificate of the sandbox against its rate limit
 * (certificates.renew_limit per renew_window), shared by renewals and a
 * driver's restart mints: counted by the database when replicas share it
 * (gw_store_renew_take: exact across replicas), else by this gateway's own
 * limiter. 0 with *allowed, or -1 when the store failed (tsr error set). */
TSR_WUR int gw_svc_renew_allowed(gw_app *app, gw_store *store, const char *sandbox_id,
                                 bool *allowed);

/* RenewCertificate, in two steps around the encoding of the answer (the
 * RPC layer's): sign, then record. Only a sandbox principal reaches it
 * (the guard's rule); the identity is ctx->principal's, never the CSR's. */
typedef struct gw_svc_renewal {
    gw_cert_rec rec;          /* serial, validity, sandbox, renewed_from: the caller's serial */
    char *leaf_pem;           /* the PEM of the very DER whose signature was checked */
    gw_pki *pki;              /* the snapshot that signed it: chain_pem, bundle_pem */
} gw_svc_renewal;

/* Check the CSR's size, that the caller's sandbox lives (UNAUTHENTICATED
 * otherwise, a deleted one audited), the renewal rate limit (before any
 * signature work; RESOURCE_EXHAUSTED, audited), then sign the CSR for the
 * caller's SPIFFE ID (INVALID_ARGUMENT "bad CSR: ..." audited). */
TSR_WUR int gw_svc_cert_renew_sign(const gw_call_ctx *ctx, const uint8_t *csr, size_t csr_len,
                                   gw_svc_renewal *out, gw_response *resp);
void gw_svc_renewal_clear(gw_svc_renewal *r);

/* Record the certificate, then answer `ok` (the encoded response; its body
 * is taken): through the group commit with the call held when a transport
 * holds it (the answer leaves once the record is durable), else at once
 * into resp. The store refuses a renewal from a revoked certificate or for
 * a deleted sandbox in the same transaction (UNAUTHENTICATED). */
void gw_svc_cert_renew_record(const gw_call_ctx *ctx, const gw_cert_rec *rec, gw_response *ok,
                              gw_response *resp);

/* RevokeCertificate: the serial (1..40 hex digits, case folded) and the
 * reason (at most 128 bytes of UTF-8; "" becomes "revoked by <caller>")
 * checked, the certificate and its renewal lineage revoked in the store and
 * then in memory, each audited. *rec is the certificate as stored. */
TSR_WUR int gw_svc_cert_revoke(const gw_call_ctx *ctx, const char *serial, const char *reason,
                               gw_cert_rec *rec, gw_response *resp);

#endif
