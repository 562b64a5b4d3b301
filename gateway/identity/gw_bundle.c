#include "gw_bundle.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca_pem.h"

#define KEY_BYTES_MAX 1024   /* RSA moduli up to 8192 bits */

/* Standard base64 (url = false) or base64url without padding (url = true)
 * of `len` bytes, appended to f. */
static int put_base64(FILE *f, const uint8_t *data, size_t len, bool url)
{
    TSR_ENSURE(len > 0 && len <= 64 * 1024, TSR_E_INTERNAL, "base64: %zu bytes", len);
    size_t cap = 4 * ((len + 2) / 3) + 1;
    unsigned char *b = malloc(cap);
    TSR_ENSURE(b != NULL, TSR_E_INTERNAL, "out of memory");
    int n = EVP_EncodeBlock(b, data, (int)len);
    if (n <= 0) {
        free(b);
        return TSR_FAIL(TSR_E_INTERNAL, "base64 encoding failed");
    }
    if (url) {
        while (n > 0 && b[n - 1] == '=') n--;
        for (int i = 0; i < n; i++) {
            if (b[i] == '+') b[i] = '-';
            else if (b[i] == '/') b[i] = '_';
        }
    }
    fwrite(b, 1, (size_t)n, f);
    free(b);
    return 0;
}

/* A big number parameter as base64url: `pad` bytes (0 = minimal). */
static int put_bn(FILE *f, const char *member, const EVP_PKEY *pkey, const char *param,
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
    fprintf(f, ",\"%s\":\"", member);
    TSR_GUARD(put_base64(f, buf, n, true));
    fputc('"', f);
    return 0;
}

static const char *jwk_curve(const char *group)
{
    if (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0) return "P-256";
    if (strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0) return "P-384";
    if (strcmp(group, "secp521r1") == 0 || strcmp(group, "P-521") == 0) return "P-521";
    return NULL;
}

/* The key members of one JWK (after "use"). */
static int put_key(FILE *f, const EVP_PKEY *pkey)
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
        fprintf(f, ",\"kty\":\"EC\",\"crv\":\"%s\"", crv);
        TSR_GUARD(put_bn(f, "x", pkey, OSSL_PKEY_PARAM_EC_PUB_X, field));
        return put_bn(f, "y", pkey, OSSL_PKEY_PARAM_EC_PUB_Y, field);
    }
    if (EVP_PKEY_is_a(pkey, "RSA")) {
        fputs(",\"kty\":\"RSA\"", f);
        TSR_GUARD(put_bn(f, "n", pkey, OSSL_PKEY_PARAM_RSA_N, 0));
        return put_bn(f, "e", pkey, OSSL_PKEY_PARAM_RSA_E, 0);
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
    fprintf(f, ",\"kty\":\"OKP\",\"crv\":\"%s\",\"x\":\"", crv);
    TSR_GUARD(put_base64(f, pub, plen, true));
    fputc('"', f);
    return 0;
}

static int put_root(FILE *f, X509 *cert)
{
    EVP_PKEY *pkey = X509_get0_pubkey(cert);
    TSR_ENSURE(pkey != NULL, TSR_E_INPUT, "bundle: root without a usable public key");
    fputs("{\"use\":\"x509-svid\"", f);
    TSR_GUARD(put_key(f, pkey));
    unsigned char *der = NULL;
    int n = i2d_X509(cert, &der);
    TSR_ENSURE(n > 0 && n <= CA_CERT_MAX_DER, TSR_E_INPUT, "bundle: root DER encoding");
    fputs(",\"x5c\":[\"", f);
    int rc = put_base64(f, der, (size_t)n, false);
    OPENSSL_free(der);
    TSR_GUARD(rc);
    fputs("\"]}", f);
    return 0;
}

int gw_spiffe_bundle_json(STACK_OF(X509) *roots, int64_t sequence, int64_t refresh_hint,
                          char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    TSR_ENSURE(roots != NULL && sk_X509_num(roots) > 0, TSR_E_INPUT, "bundle: no roots");
    TSR_ENSURE(sequence >= 0 && refresh_hint > 0, TSR_E_INPUT,
               "bundle: bad sequence or refresh hint");
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    TSR_ENSURE(f != NULL, TSR_E_INTERNAL, "out of memory");
    int rc = 0;
    fputs("{\"keys\":[", f);
    for (int i = 0; i < sk_X509_num(roots) && rc == 0; i++) {
        if (i > 0) fputc(',', f);
        rc = put_root(f, sk_X509_value(roots, i));
    }
    fprintf(f, "],\"spiffe_sequence\":%lld,\"spiffe_refresh_hint\":%lld}", (long long)sequence,
            (long long)refresh_hint);
    int failed = ferror(f);
    if (fclose(f) != 0 || failed || buf == NULL) {
        free(buf);
        return rc != 0 ? -1 : TSR_FAIL(TSR_E_INTERNAL, "bundle: out of memory");
    }
    if (rc != 0) {
        free(buf);
        return -1;
    }
    *out = buf;
    *len = size;
    return 0;
}
