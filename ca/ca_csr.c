/* Certificate signing requests: the bytes come from a sandbox (RenewCertificate),
 * so they are parsed bounded and exactly, the self-signature is the proof of
 * possession, and nothing in the request decides the identity: the caller
 * supplies it, and no CSR extension or subject is ever copied. */
#include "ca_issue.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdbool.h>
#include <string.h>

/* Untrusted bytes for an error message: printable ASCII, the rest as \xNN,
 * at most ~120 bytes of input. */
static void escape_for_message(const unsigned char *data, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 5 < cap; i++) {
        if (i == 120) {
            o += (size_t)snprintf(out + o, cap - o, "...");
            break;
        }
        unsigned char c = data[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
    }
    out[o < cap ? o : cap - 1] = '\0';
}

/* The public key of a CSR is decoded by OpenSSL 3.0 while it parses the
 * request, through its provider decoder chain, which it builds anew for
 * every key: on an issuance that cost more than both signatures together.
 * So the CSR is first parsed (by the same d2i, the same ASN.1 templates) in
 * a library context that has only the null provider: nothing to decode the
 * key with, so the request parses with the key left undecoded (the decode
 * is opportunistic and its failure is not a parse failure). The key is then
 * built from the SubjectPublicKeyInfo as OpenSSL parsed it, for the two
 * exact forms a sandbox sends: an uncompressed point of exactly the curve's
 * length on the named curve P-256 or P-384 (a copy of prebuilt domain
 * parameters given the point with EVP_PKEY_set1_encoded_public_key, or
 * EVP_PKEY_fromdata; either way EC_POINT_oct2point refuses a point off the
 * curve, as the decoder's does),
 * and a 32-byte Ed25519 key without parameters. Anything else, or any
 * failure there, parses the CSR again the ordinary way, so RSA, compressed
 * points, explicit parameters and malformed keys behave exactly as before. */
static OSSL_LIB_CTX *g_keyless;
static pthread_once_t g_keyless_once = PTHREAD_ONCE_INIT;

static void keyless_init(void)
{
    OSSL_LIB_CTX *ctx = OSSL_LIB_CTX_new();
    /* A context with a provider loaded never falls back to the default one. */
    if (ctx != NULL && OSSL_PROVIDER_load(ctx, "null") != NULL) {
        g_keyless = ctx; /* process lifetime */
        return;
    }
    OSSL_LIB_CTX_free(ctx);
    ERR_clear_error();
}

static OSSL_LIB_CTX *keyless_ctx(void)
{
    if (pthread_once(&g_keyless_once, keyless_init) != 0) return NULL;
    return g_keyless;
}

/* Domain parameters only (no key) of P-256 and P-384, built once: a CSR's
 * key starts as a copy of one, which copies the prepared curve instead of
 * building it from its name again (EC_GROUP_new_by_curve_name). Never
 * modified after they are built. */
static EVP_PKEY *g_curve[2];
static pthread_once_t g_curve_once = PTHREAD_ONCE_INIT;

static void curves_init(void)
{
    static const char *const names[2] = {"P-256", "P-384"};
    for (int i = 0; i < 2; i++) {
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
                                             (char *)(uintptr_t)names[i], 0),
            OSSL_PARAM_construct_end(),
        };
        if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
            EVP_PKEY_fromdata(ctx, &g_curve[i], EVP_PKEY_KEY_PARAMETERS, params) != 1) {
            EVP_PKEY_free(g_curve[i]);
            g_curve[i] = NULL; /* ec_key_from_point builds it from the name */
        }
        EVP_PKEY_CTX_free(ctx);
    }
    ERR_clear_error();
}

/* An EC public key on the named curve `group` (index 0 P-256, 1 P-384) from
 * an encoded point; EC_POINT_oct2point refuses one off the curve. */
static EVP_PKEY *ec_key_from_point(int index, const char *group, const unsigned char *pk,
                                   size_t pklen)
{
    EVP_PKEY *key = NULL;
    if (pthread_once(&g_curve_once, curves_init) == 0 && g_curve[index] != NULL) {
        key = EVP_PKEY_dup(g_curve[index]);
        if (key != NULL && EVP_PKEY_set1_encoded_public_key(key, pk, pklen) == 1) return key;
        EVP_PKEY_free(key);
        return NULL;
    }
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)(uintptr_t)group, 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)(uintptr_t)pk, pklen),
        OSSL_PARAM_construct_end(),
    };
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) != 1) {
        EVP_PKEY_free(key);
        key = NULL;
    }
    EVP_PKEY_CTX_free(ctx);
    return key;
}

/* See above: the key for the two exact forms, else NULL (no error). */
static EVP_PKEY *key_from_spki(const X509_PUBKEY *spki)
{
    ASN1_OBJECT *alg = NULL;
    const unsigned char *pk = NULL;
    int pklen = 0;
    X509_ALGOR *algor = NULL;
    if (spki == NULL || X509_PUBKEY_get0_param(&alg, &pk, &pklen, &algor, spki) != 1 ||
        pk == NULL || pklen <= 0)
        return NULL;
    const ASN1_OBJECT *aobj = NULL;
    int ptype = V_ASN1_UNDEF;
    const void *pval = NULL;
    X509_ALGOR_get0(&aobj, &ptype, &pval, algor);
    int nid = OBJ_obj2nid(aobj);
    if (nid == NID_ED25519 && ptype == V_ASN1_UNDEF && pklen == 32)
        return EVP_PKEY_new_raw_public_key_ex(NULL, "ED25519", NULL, pk, 32);
    if (nid != NID_X9_62_id_ecPublicKey || ptype != V_ASN1_OBJECT || pval == NULL) return NULL;
    int curve = OBJ_obj2nid(pval);
    const char *group = curve == NID_X9_62_prime256v1 ? "P-256"
                        : curve == NID_secp384r1     ? "P-384"
                                                     : NULL;
    int want_len = curve == NID_X9_62_prime256v1 ? 65 : 97; /* 0x04 || X || Y */
    if (group == NULL || pklen != want_len || pk[0] != 0x04) return NULL;
    return ec_key_from_point(curve == NID_X9_62_prime256v1 ? 0 : 1, group, pk, (size_t)pklen);
}

/* The subjectPublicKey BIT STRING holds whole bytes (its unused-bits
 * octet is 0), as every key form we accept encodes it (RFC 5480 section 2.2,
 * RFC 8410 section 4). X509_PUBKEY_get0_param hides that octet, and the
 * parse clears the bits it names, so without this check such a request was
 * accepted or refused by the chance of its key's last bits. Read from the
 * encoding, where the octet sits just before the key's bytes. */
static bool spki_whole_bytes(const X509_PUBKEY *spki)
{
    const unsigned char *pk = NULL;
    int pklen = 0;
    if (X509_PUBKEY_get0_param(NULL, &pk, &pklen, NULL, spki) != 1 || pklen < 0) return false;
    unsigned char *der = NULL;
    int n = i2d_X509_PUBKEY(spki, &der);
    bool ok = n > pklen && der[n - pklen - 1] == 0x00;
    OPENSSL_free(der);
    return ok;
}

/* d2i_X509_REQ, and the request's public key (a new reference; NULL when
 * it does not decode). Tries the keyless parse first (see above). */
static X509_REQ *csr_d2i(const uint8_t *der, size_t len, const unsigned char **end,
                         EVP_PKEY **key)
{
    *key = NULL;
    OSSL_LIB_CTX *keyless = keyless_ctx();
    if (keyless != NULL) {
        const unsigned char *p = der;
        X509_REQ *req = (X509_REQ *)ASN1_item_d2i_ex(NULL, &p, (long)len,
                                                     ASN1_ITEM_rptr(X509_REQ), keyless, NULL);
        if (req != NULL) {
            *key = key_from_spki(X509_REQ_get_X509_PUBKEY(req));
            if (*key != NULL) {
                *end = p;
                return req;
            }
            X509_REQ_free(req);
        }
        ERR_clear_error();
    }
    const unsigned char *p = der;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)len);
    if (req == NULL) return NULL;
    *end = p;
    *key = X509_REQ_get_pubkey(req);
    return req;
}

/* The CSR, checked, and its public key (a new reference): never
 * X509_REQ_get0_pubkey on it, which is NULL after a keyless parse. */
static int csr_parse(const uint8_t *der, size_t len, X509_REQ **out, EVP_PKEY **key_out)
{
    TSR_ENSURE(der != NULL && len > 0, TSR_E_INPUT, "empty CSR");
    TSR_ENSURE(len <= CA_CSR_MAX_DER, TSR_E_INPUT, "CSR of %zu bytes exceeds the %d-byte limit",
               len, CA_CSR_MAX_DER);
    int rc = -1;
    STACK_OF(X509_EXTENSION) *exts = NULL;
    const unsigned char *p = der;
    EVP_PKEY *key = NULL;
    X509_REQ *req = csr_d2i(der, len, &p, &key);
    if (req == NULL) return TSR_FAIL_OSSL(TSR_E_INPUT, "CSR is not a DER PKCS#10 request");
    TSR_TRY_ENSURE(p == der + len, TSR_E_INPUT, "%zu trailing bytes after the CSR",
                   (size_t)(der + len - p));
    TSR_TRY_ENSURE(X509_REQ_get_version(req) == X509_REQ_VERSION_1, TSR_E_INPUT,
                   "unsupported CSR version %ld", X509_REQ_get_version(req));
    /* Count caps before any signature work: 16 KiB is room for thousands of
     * empty extensions, attributes or name entries. */
    int n_attrs = X509_REQ_get_attr_count(req);
    TSR_TRY_ENSURE(n_attrs <= CA_CSR_MAX_ATTRIBUTES, TSR_E_INPUT,
                   "CSR carries %d attributes (at most %d)", n_attrs, CA_CSR_MAX_ATTRIBUTES);
    int n_names = X509_NAME_entry_count(X509_REQ_get_subject_name(req));
    TSR_TRY_ENSURE(n_names <= CA_CSR_MAX_SUBJECT_ENTRIES, TSR_E_INPUT,
                   "CSR subject has %d entries (at most %d)", n_names, CA_CSR_MAX_SUBJECT_ENTRIES);
    exts = X509_REQ_get_extensions(req);
    int n_exts = exts != NULL ? sk_X509_EXTENSION_num(exts) : 0;
    TSR_TRY_ENSURE(n_exts <= CA_CSR_MAX_EXTENSIONS, TSR_E_INPUT,
                   "CSR requests %d extensions (at most %d)", n_exts, CA_CSR_MAX_EXTENSIONS);
    TSR_TRY_ENSURE(spki_whole_bytes(X509_REQ_get_X509_PUBKEY(req)), TSR_E_INPUT,
                   "the CSR's public key BIT STRING has unused bits");
    TSR_TRY_ENSURE(key != NULL, TSR_E_INPUT, "the CSR's public key does not parse");
    /* Key first: refusing an unaccepted key is cheaper than verifying with it. */
    TSR_TRY(ca_key_check_accepted(key));
    /* The default library context, whichever context the CSR was parsed in. */
    TSR_TRY_ENSURE(X509_REQ_verify_ex(req, key, NULL, NULL) == 1, TSR_E_INPUT,
                   "CSR signature does not verify (no proof of possession)");
    *out = req;
    *key_out = key;
    req = NULL;
    key = NULL;
    rc = 0;
out:
    ERR_clear_error();
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    EVP_PKEY_free(key);
    X509_REQ_free(req);
    return rc;
}

int ca_csr_check(const uint8_t *der, size_t len, EVP_PKEY **pubkey_out)
{
    X509_REQ *req = NULL;
    EVP_PKEY *key = NULL;
    TSR_GUARD(csr_parse(der, len, &req, &key));
    X509_REQ_free(req);
    *pubkey_out = key;
    return 0;
}

/* Any URI SAN the CSR asks for must be exactly the caller's ID. The request's
 * extensions are read only for this check; none goes into the certificate. */
static int check_requested_identity(X509_REQ *req, const char *spiffe_id)
{
    int rc = -1, count = 0, loc = -1;
    STACK_OF(X509_EXTENSION) *exts = NULL;
    GENERAL_NAMES *names = NULL;
    static const int ext_req_nids[] = {NID_ext_req, NID_ms_ext_req};
    for (size_t i = 0; i < sizeof ext_req_nids / sizeof ext_req_nids[0]; i++) {
        int idx = -1;
        while ((idx = X509_REQ_get_attr_by_NID(req, ext_req_nids[i], idx)) >= 0) {
            count++;
            loc = idx;
        }
    }
    if (count == 0) return 0;
    /* OpenSSL reads only the first; an attacker could hide a second one. */
    TSR_TRY_ENSURE(count == 1 && X509_ATTRIBUTE_count(X509_REQ_get_attr(req, loc)) == 1,
                   TSR_E_INPUT, "CSR carries more than one extension request");
    exts = X509_REQ_get_extensions(req);
    TSR_TRY_ENSURE(exts != NULL, TSR_E_INPUT, "the CSR's extension request does not parse");
    size_t id_len = strlen(spiffe_id);
    for (int i = 0; i < sk_X509_EXTENSION_num(exts); i++) {
        X509_EXTENSION *ext = sk_X509_EXTENSION_value(exts, i);
        if (OBJ_obj2nid(X509_EXTENSION_get_object(ext)) != NID_subject_alt_name) continue;
        names = X509V3_EXT_d2i(ext);
        TSR_TRY_ENSURE(names != NULL, TSR_E_INPUT, "the CSR's subjectAltName does not parse");
        for (int j = 0; j < sk_GENERAL_NAME_num(names); j++) {
            const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, j);
            if (gn->type != GEN_URI) continue;
            const ASN1_IA5STRING *uri = gn->d.uniformResourceIdentifier;
            int n = ASN1_STRING_length(uri);
            const unsigned char *data = ASN1_STRING_get0_data(uri);
            if (n >= 0 && (size_t)n == id_len && memcmp(data, spiffe_id, id_len) == 0) continue;
            char shown[128 * 4 + 8];
            escape_for_message(data, n > 0 ? (size_t)n : 0, shown, sizeof shown);
            TSR_TRY_ENSURE(0, TSR_E_INPUT,
                           "CSR requests URI SAN \"%s\" but the caller's identity is %s", shown,
                           spiffe_id);
        }
        GENERAL_NAMES_free(names);
        names = NULL;
    }
    rc = 0;
out:
    ERR_clear_error();
    GENERAL_NAMES_free(names);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return rc;
}

static int sign_csr(const ca_issuer *issuer, const uint8_t *der, size_t len,
                    const char *spiffe_id, int64_t ttl_seconds, int64_t now, bool unparsed,
                    X509 **out, uint8_t **der_out, size_t *der_len)
{
    int rc = -1;
    X509_REQ *req = NULL;
    EVP_PKEY *key = NULL;
    TSR_TRY_ENSURE(spiffe_id != NULL, TSR_E_INPUT, "no SPIFFE ID for the certificate");
    TSR_TRY(csr_parse(der, len, &req, &key));
    TSR_TRY(check_requested_identity(req, spiffe_id));
    ca_leaf_request leaf = {
        .spiffe_id = spiffe_id,
        .public_key = key,
        .spki = X509_REQ_get_X509_PUBKEY(req),
        .unparsed = unparsed,
        .der_out = der_out,
        .der_len = der_len,
        .ttl_seconds = ttl_seconds,
        .now = now,
    };
    TSR_TRY(ca_issue_leaf(issuer, &leaf, out));
    rc = 0;
out:
    EVP_PKEY_free(key);
    X509_REQ_free(req);
    return rc;
}

int ca_sign_csr(const ca_issuer *issuer, const uint8_t *der, size_t len, const char *spiffe_id,
                int64_t ttl_seconds, int64_t now, X509 **out)
{
    return sign_csr(issuer, der, len, spiffe_id, ttl_seconds, now, false, out, NULL, NULL);
}

int ca_sign_csr_unparsed(const ca_issuer *issuer, const uint8_t *der, size_t len,
                         const char *spiffe_id, int64_t ttl_seconds, int64_t now, X509 **out,
                         uint8_t **der_out, size_t *der_len)
{
    return sign_csr(issuer, der, len, spiffe_id, ttl_seconds, now, true, out, der_out, der_len);
}
