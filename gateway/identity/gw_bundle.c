#include "gw_bundle.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca_pem.h"
#include "tsr_json.h"

#define KEY_BYTES_MAX 1024   /* RSA moduli up to 8192 bits */

/* Standard base64 (url = false) or base64url without padding (url = true)
 * of `len` bytes, as a JSON string. */
static json_t *base64_json(const uint8_t *data, size_t len, bool url)
{
    if (len == 0 || len > 64 * 1024) {
        (void)TSR_FAIL(TSR_E_INTERNAL, "base64: %zu bytes", len);
        return NULL;
    }
    size_t cap = 4 * ((len + 2) / 3) + 1;
    unsigned char *b = malloc(cap);
    if (b == NULL) {
        (void)TSR_FAIL(TSR_E_INTERNAL, "out of memory");
        return NULL;
    }
    int n = EVP_EncodeBlock(b, data, (int)len);
    if (n <= 0) {
        free(b);
        (void)TSR_FAIL(TSR_E_INTERNAL, "base64 encoding failed");
        return NULL;
    }
    if (url) {
        while (n > 0 && b[n - 1] == '=') n--;
        for (int i = 0; i < n; i++) {
            if (b[i] == '+') b[i] = '-';
            else if (b[i] == '/') b[i] = '_';
        }
    }
    json_t *v = json_stringn_nocheck((const char *)b, (size_t)n);
    free(b);
    if (v == NULL) (void)TSR_FAIL(TSR_E_INTERNAL, "out of memory");
    return v;
}

static int set_base64(json_t *jwk, const char *member, const uint8_t *data, size_t len, bool url)
{
    json_t *v = base64_json(data, len, url);
    if (v == NULL) return -1;
    return tsr_json_set_new(jwk, member, v);
}

/* A big number parameter as base64url: `pad` bytes (0 = minimal). */
static int set_bn(json_t *jwk, const char *member, const EVP_PKEY *pkey, const char *param,
                  size_t pad)
{
    BIGNUM *bn = NULL;
    uint8_t buf[KEY_BYTES_MAX];
    TSR_GUARD_OSSL(EVP_PKEY_get_bn_param(pkey, param, &bn), TSR_E_INPUT,
                   "bundle: key parameter %s", param);
    size_t n = pad != 0 ? pad : (size_t)BN_num_bytes(bn);
    int ok = n > 0 && n <= sizeof buf && BN_bn2binpad(bn, buf, (int)n) == (int)n;
    BN_free(bn);
    TSR_ENSURE(ok, TSR_E_INPUT, "bundle: key parameter %s does not fit %zu bytes", param, n);
    return set_base64(jwk, member, buf, n, true);
}

static const char *jwk_curve(const char *group)
{
    if (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0) return "P-256";
    if (strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0) return "P-384";
    if (strcmp(group, "secp521r1") == 0 || strcmp(group, "P-521") == 0) return "P-521";
    return NULL;
}

/* The key members of one JWK (after "use"). */
static int set_key(json_t *jwk, const EVP_PKEY *pkey)
{
    if (EVP_PKEY_is_a(pkey, "EC")) {
        char group[64];
        size_t glen = 0;
        TSR_GUARD_OSSL(EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group,
                                                      sizeof group, &glen),
                       TSR_E_INPUT, "bundle: EC key without a named curve");
        const char *crv = jwk_curve(group);
        TSR_ENSURE(crv != NULL, TSR_E_INPUT, "bundle: EC curve %s has no JWK name", group);
        size_t field = ((size_t)EVP_PKEY_get_bits(pkey) + 7) / 8;
        TSR_GUARD(tsr_json_set_str(jwk, "kty", "EC", 2));
        TSR_GUARD(tsr_json_set_str(jwk, "crv", crv, strlen(crv)));
        TSR_GUARD(set_bn(jwk, "x", pkey, OSSL_PKEY_PARAM_EC_PUB_X, field));
        return set_bn(jwk, "y", pkey, OSSL_PKEY_PARAM_EC_PUB_Y, field);
    }
    if (EVP_PKEY_is_a(pkey, "RSA")) {
        TSR_GUARD(tsr_json_set_str(jwk, "kty", "RSA", 3));
        TSR_GUARD(set_bn(jwk, "n", pkey, OSSL_PKEY_PARAM_RSA_N, 0));
        return set_bn(jwk, "e", pkey, OSSL_PKEY_PARAM_RSA_E, 0);
    }
    const char *crv = EVP_PKEY_is_a(pkey, "ED25519") ? "Ed25519"
                      : EVP_PKEY_is_a(pkey, "ED448") ? "Ed448"
                                                     : NULL;
    TSR_ENSURE(crv != NULL, TSR_E_INPUT, "bundle: unsupported root key type %s",
               EVP_PKEY_get0_type_name(pkey) ? EVP_PKEY_get0_type_name(pkey) : "?");
    uint8_t pub[64];
    size_t plen = 0;
    TSR_GUARD_OSSL(EVP_PKEY_get_octet_string_param(pkey, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof pub,
                                                   &plen),
                   TSR_E_INPUT, "bundle: %s public key", crv);
    TSR_GUARD(tsr_json_set_str(jwk, "kty", "OKP", 3));
    TSR_GUARD(tsr_json_set_str(jwk, "crv", crv, strlen(crv)));
    return set_base64(jwk, "x", pub, plen, true);
}

static int add_root(json_t *keys, X509 *cert)
{
    EVP_PKEY *pkey = X509_get0_pubkey(cert);
    TSR_ENSURE(pkey != NULL, TSR_E_INPUT, "bundle: root without a usable public key");
    json_t *jwk = json_object();
    TSR_ENSURE(jwk != NULL, TSR_E_INTERNAL, "out of memory");
    int rc = -1;
    unsigned char *der = NULL;
    json_t *x5c = NULL;
    TSR_TRY(tsr_json_set_str(jwk, "use", "x509-svid", 9));
    TSR_TRY(set_key(jwk, pkey));
    int n = i2d_X509(cert, &der);
    TSR_TRY_ENSURE(n > 0 && n <= CA_CERT_MAX_DER, TSR_E_INPUT, "bundle: root DER encoding");
    TSR_TRY_ENSURE((x5c = json_array()) != NULL, TSR_E_INTERNAL, "out of memory");
    TSR_TRY(tsr_json_append_new(x5c, base64_json(der, (size_t)n, false)));
    rc = tsr_json_set_new(jwk, "x5c", x5c);
    x5c = NULL;
    if (rc == 0) {
        rc = tsr_json_append_new(keys, jwk);
        jwk = NULL;
    }
out:
    OPENSSL_free(der);
    json_decref(x5c);
    json_decref(jwk);
    return rc;
}

int gw_spiffe_bundle_json(STACK_OF(X509) *roots, int64_t sequence, int64_t refresh_hint,
                          char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    TSR_ENSURE(roots != NULL && sk_X509_num(roots) > 0, TSR_E_INPUT, "bundle: no roots");
    TSR_ENSURE(sequence >= 0 && refresh_hint > 0, TSR_E_INPUT,
               "bundle: bad sequence or refresh hint");
    int rc = -1;
    json_t *doc = json_object(), *keys = json_array();
    TSR_TRY_ENSURE(doc != NULL && keys != NULL, TSR_E_INTERNAL, "out of memory");
    for (int i = 0; i < sk_X509_num(roots); i++) TSR_TRY(add_root(keys, sk_X509_value(roots, i)));
    TSR_TRY(tsr_json_set_new(doc, "keys", json_incref(keys)));
    TSR_TRY(tsr_json_set_new(doc, "spiffe_sequence", json_integer((json_int_t)sequence)));
    TSR_TRY(tsr_json_set_new(doc, "spiffe_refresh_hint", json_integer((json_int_t)refresh_hint)));
    TSR_TRY_ENSURE((*out = tsr_json_dump(doc, len)) != NULL, TSR_E_INTERNAL, "out of memory");
    rc = 0;
out:
    json_decref(keys);
    json_decref(doc);
    return rc;
}
