/* Rotation schedule, backoff, CSR and the renewal check (sup_rotate.h). */
#include "sup_rotate.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca_issue.h"
#include "ca_pem.h"
#include "tessera/v1/gateway.pb-c.h"

double sup_rand_unit(void)
{
    uint32_t r = 0;
    /* RAND_bytes only fails when the CSPRNG cannot be seeded: then use no
     * jitter at all (0.5) rather than a predictable one. */
    if (RAND_bytes((unsigned char *)&r, sizeof r) != 1) {
        ERR_clear_error();
        return 0.5;
    }
    return (double)r / 4294967296.0;
}

static double jitter(double u)
{
    if (!(u >= 0.0 && u < 1.0)) u = 0.5; /* also catches NaN */
    return 0.9 + 0.2 * u;
}

int64_t sup_rotate_delay_ms(int64_t now_ms, int64_t not_after, int64_t min_rotate_s,
                            int64_t renew_before_s, double u, bool *expired)
{
    int64_t remaining = not_after * 1000 - now_ms;
    *expired = remaining <= 0;
    if (*expired) return 0;
    int64_t d = (int64_t)((double)(remaining / 2) * jitter(u));
    /* --renew-before: due at the latest when that much lifetime is left. */
    if (renew_before_s > 0 && remaining - renew_before_s * 1000 < d)
        d = remaining - renew_before_s * 1000;
    int64_t floor_ms = min_rotate_s > 0 ? min_rotate_s * 1000 : 0;
    if (d < floor_ms) d = floor_ms;
    /* The floor must not let the certificate run out first. */
    int64_t latest = remaining / 10 * 9;
    if (d > latest) d = latest;
    return d < 0 ? 0 : d;
}

int64_t sup_backoff_ms(unsigned attempt, double u)
{
    int64_t base = SUP_BACKOFF_MAX_MS;
    if (attempt < 16) {
        base = (int64_t)SUP_BACKOFF_FIRST_MS << attempt;
        if (base > SUP_BACKOFF_MAX_MS) base = SUP_BACKOFF_MAX_MS;
    }
    int64_t d = (int64_t)((double)base * jitter(u));
    return d > SUP_BACKOFF_MAX_MS ? SUP_BACKOFF_MAX_MS : d;
}

int sup_csr_build(EVP_PKEY *key, uint8_t **der, size_t *len)
{
    int rc = -1;
    X509_REQ *req = NULL;
    uint8_t *buf = NULL;
    TSR_TRY_ENSURE(key != NULL && der != NULL && len != NULL, TSR_E_INTERNAL,
                   "sup_csr_build: missing argument");
    req = X509_REQ_new();
    TSR_TRY_ENSURE(req != NULL, TSR_E_INTERNAL, "out of memory");
    TSR_TRY_OSSL(X509_REQ_set_version(req, X509_REQ_VERSION_1), TSR_E_INTERNAL, "CSR version");
    TSR_TRY_OSSL(X509_REQ_set_pubkey(req, key), TSR_E_INTERNAL, "CSR public key");
    /* The subject stays the empty name; no attributes, no requested SAN. */
    const EVP_MD *md = EVP_PKEY_get_id(key) == EVP_PKEY_ED25519 ? NULL : EVP_sha256();
    TSR_TRY_ENSURE(X509_REQ_sign(req, key, md) > 0, TSR_E_INTERNAL, "CSR signature failed");
    int n = i2d_X509_REQ(req, NULL);
    TSR_TRY_ENSURE(n > 0 && n <= CA_CSR_MAX_DER, TSR_E_INTERNAL, "CSR encoding (%d bytes)", n);
    buf = malloc((size_t)n);
    TSR_TRY_ENSURE(buf != NULL, TSR_E_INTERNAL, "out of memory");
    unsigned char *p = buf;
    TSR_TRY_ENSURE(i2d_X509_REQ(req, &p) == n, TSR_E_INTERNAL, "CSR encoding");
    *der = buf;
    *len = (size_t)n;
    buf = NULL;
    rc = 0;
out:
    free(buf);
    X509_REQ_free(req);
    ERR_clear_error();
    return rc;
}

/* Concatenate PEM texts (either may be empty) into one malloc'd buffer. */
static int concat_pem(const char *a, const char *b, uint8_t **out, size_t *len)
{
    size_t la = strlen(a), lb = strlen(b);
    bool sep = la > 0 && a[la - 1] != '\n' && lb > 0;
    size_t n = la + (sep ? 1 : 0) + lb;
    TSR_ENSURE(n > 0 && n <= CA_PEM_MAX_BYTES, TSR_E_INPUT, "certificate PEM of %zu bytes", n);
    uint8_t *buf = malloc(n + 1);
    TSR_ENSURE(buf != NULL, TSR_E_INTERNAL, "out of memory");
    memcpy(buf, a, la);
    if (sep) buf[la] = '\n';
    memcpy(buf + la + (sep ? 1 : 0), b, lb);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

static int copy_bytes(const uint8_t *src, size_t len, uint8_t **out)
{
    uint8_t *buf = malloc(len + 1);
    TSR_ENSURE(buf != NULL, TSR_E_INTERNAL, "out of memory");
    memcpy(buf, src, len);
    buf[len] = '\0';
    *out = buf;
    return 0;
}

static bool only_space(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\n' && *s != '\r' && *s != '\t') return false;
    return true;
}

int sup_renewal_check(const sup_identity *cur, EVP_PKEY *new_key, const char *trust_domain,
                      const char *leaf_pem, const char *chain_pem, const char *bundle_pem,
                      int64_t now, sup_identity **out)
{
    int rc = -1;
    STACK_OF(X509) *leaves = NULL;
    char *key_text = NULL;
    size_t key_text_len = 0;
    sup_identity *id = calloc(1, sizeof *id);
    TSR_ENSURE(id != NULL, TSR_E_INTERNAL, "out of memory");
    TSR_TRY_ENSURE(cur != NULL && new_key != NULL && leaf_pem != NULL, TSR_E_INTERNAL,
                   "sup_renewal_check: missing argument");
    if (chain_pem == NULL) chain_pem = "";
    if (bundle_pem == NULL) bundle_pem = "";

    if (ca_certs_from_pem((const uint8_t *)leaf_pem, strlen(leaf_pem), &leaves) != 0) {
        (void)TSR_FAIL(TSR_E_INPUT, "renewed certificate: %s", tsr_errmsg());
        goto out;
    }
    TSR_TRY_ENSURE(sk_X509_num(leaves) == 1, TSR_E_INPUT,
                   "renewed certificate: %d certificates where one leaf was expected",
                   sk_X509_num(leaves));
    id->leaf = sk_X509_shift(leaves);
    if (only_space(chain_pem)) {
        id->chain = sk_X509_new_null();
        TSR_TRY_ENSURE(id->chain != NULL, TSR_E_INTERNAL, "out of memory");
    } else if (ca_certs_from_pem((const uint8_t *)chain_pem, strlen(chain_pem), &id->chain) != 0) {
        (void)TSR_FAIL(TSR_E_INPUT, "renewed chain: %s", tsr_errmsg());
        goto out;
    }

    if (only_space(bundle_pem)) {
        TSR_TRY(copy_bytes(cur->bundle_pem, cur->bundle_pem_len, &id->bundle_pem));
        id->bundle_pem_len = cur->bundle_pem_len;
    } else {
        id->bundle_pem_len = strlen(bundle_pem);
        TSR_TRY(copy_bytes((const uint8_t *)bundle_pem, id->bundle_pem_len, &id->bundle_pem));
    }
    if (ca_trust_from_pem(id->bundle_pem, id->bundle_pem_len, trust_domain, &id->trust) != 0) {
        (void)TSR_FAIL(TSR_E_INPUT, "renewed bundle: %s", tsr_errmsg());
        goto out;
    }

    /* The new key must be the one we made, the identity the one we had. */
    TSR_TRY_ENSURE(sup_key_matches_cert(new_key, id->leaf), TSR_E_INPUT,
                   "renewed certificate does not carry the public key we sent");
    enum ca_verify_reason reason = CA_VERIFY_OK;
    /* Just issued by the gateway we authenticated: a notBefore a little in
     * our future means our clock is behind, not that the answer is bad. */
    if (ca_verify_peer(id->trust, id->leaf, id->chain, CA_PURPOSE_CLIENT, CA_KIND_SANDBOX,
                       sup_judge_time(id->leaf, now), &reason, &id->peer) != 0) {
        (void)TSR_FAIL(TSR_E_INPUT, "renewed certificate does not verify: %s", tsr_errmsg());
        goto out;
    }
    TSR_TRY_ENSURE(strcmp(id->peer.identity.id.text, cur->peer.identity.id.text) == 0,
                   TSR_E_INPUT, "renewed certificate is for %s, not for %s",
                   id->peer.identity.id.text, cur->peer.identity.id.text);

    TSR_TRY(concat_pem(leaf_pem, chain_pem, &id->cert_pem, &id->cert_pem_len));
    TSR_TRY(ca_key_to_pem(new_key, &key_text, &key_text_len));
    id->key_pem = (uint8_t *)key_text;
    id->key_pem_len = key_text_len;
    key_text = NULL;
    TSR_TRY_OSSL(EVP_PKEY_up_ref(new_key), TSR_E_INTERNAL, "key reference");
    id->key = new_key;
    *out = id;
    id = NULL;
    rc = 0;
out:
    sk_X509_pop_free(leaves, X509_free);
    if (key_text != NULL) ca_secret_free(key_text, key_text_len);
    sup_identity_free(id);
    return rc;
}

static void local_failure(cl_status *st, const char *what)
{
    st->code = GW_STATUS_INTERNAL;
    snprintf(st->message, sizeof st->message, "%s: %s", what, tsr_errmsg());
}

int sup_rotate_renew(cl_conn *conn, const sup_identity *cur, const char *trust_domain,
                     int64_t timeout_ms, sup_identity **out, cl_status *st)
{
    int rc = -1;
    EVP_PKEY *key = NULL;
    uint8_t *der = NULL;
    size_t der_len = 0;
    ProtobufCMessage *resp_msg = NULL;

    st->code = GW_STATUS_OK;
    st->message[0] = '\0';
    if (ca_key_generate(CA_KEY_P256, &key) != 0) {
        local_failure(st, "new key");
        goto out;
    }
    if (sup_csr_build(key, &der, &der_len) != 0) {
        local_failure(st, "CSR");
        goto out;
    }
    Tessera__V1__RenewCertificateRequest req;
    tessera__v1__renew_certificate_request__init(&req);
    req.csr.data = der;
    req.csr.len = der_len;
    if (cl_call(conn, "/tessera.v1.Gateway/RenewCertificate", &req.base,
                &tessera__v1__renew_certificate_response__descriptor, timeout_ms, &resp_msg,
                st) != 0)
        goto out;
    const Tessera__V1__RenewCertificateResponse *resp =
        (const Tessera__V1__RenewCertificateResponse *)resp_msg;
    if (resp == NULL) {
        st->code = GW_STATUS_INTERNAL;
        snprintf(st->message, sizeof st->message, "empty RenewCertificate response");
        goto out;
    }
    if (sup_renewal_check(cur, key, trust_domain, resp->certificate_pem, resp->chain_pem,
                          resp->bundle_pem, 0, out) != 0) {
        local_failure(st, "refused the renewed certificate");
        goto out;
    }
    rc = 0;
out:
    if (resp_msg != NULL) protobuf_c_message_free_unpacked(resp_msg, NULL);
    free(der);
    EVP_PKEY_free(key);
    return rc;
}
