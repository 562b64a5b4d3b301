/* gw_bundle: the SPIFFE bundle (JWKS) of the trust bundle. The expected
 * JSON is built here independently: key material from the encoded public
 * key (not the per-coordinate parameters the code reads), base64 by a
 * local encoder, DER by i2d. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>

#include "gw_bundle.h"
#include "tu_certforge.h"

static EVP_PKEY *signer;   /* signs every test root: only their public keys matter */

static void b64(const uint8_t *in, size_t len, bool url, char *out)
{
    static const char std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    static const char web[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const char *a = url ? web : std;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len) v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len) v |= in[i + 2];
        out[o++] = a[(v >> 18) & 63];
        out[o++] = a[(v >> 12) & 63];
        if (i + 1 < len) out[o++] = a[(v >> 6) & 63];
        else if (!url) out[o++] = '=';
        if (i + 2 < len) out[o++] = a[v & 63];
        else if (!url) out[o++] = '=';
    }
    out[o] = '\0';
}

static X509 *root_with(EVP_PKEY *key)
{
    tu_cert_spec spec;
    tu_spec_root(&spec, (int64_t)time(NULL));
    X509 *c = tu_forge(&spec, key, NULL, NULL);
    if (c == NULL) {
        /* Keys that cannot sign with SHA-256 (or at all): issued by `signer`. */
        X509 *issuer = tu_forge(&spec, signer, NULL, NULL);
        assert_non_null(issuer);
        c = tu_forge(&spec, key, issuer, signer);
        X509_free(issuer);
    }
    assert_non_null(c);
    return c;
}

/* The JWK members after "use" for this key, built independently. */
static void expect_key(EVP_PKEY *key, char *out, size_t cap)
{
    uint8_t enc[1200];
    size_t n = 0;
    char a[1700], b[1700];
    if (EVP_PKEY_is_a(key, "EC")) {
        assert_int_equal(EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
                                                         enc, sizeof enc, &n), 1);
        assert_int_equal(enc[0], 0x04);   /* uncompressed: 04 || X || Y */
        size_t half = (n - 1) / 2;
        int bits = EVP_PKEY_get_bits(key);
        const char *crv = bits == 256 ? "P-256" : bits == 384 ? "P-384" : "P-521";
        b64(enc + 1, half, true, a);
        b64(enc + 1 + half, half, true, b);
        snprintf(out, cap, ",\"kty\":\"EC\",\"crv\":\"%s\",\"x\":\"%s\",\"y\":\"%s\"", crv, a, b);
    } else if (EVP_PKEY_is_a(key, "RSA")) {
        /* Minimal big-endian n and e (the code pads nothing for RSA). */
        BIGNUM *nn = NULL, *e = NULL;
        assert_int_equal(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_N, &nn), 1);
        assert_int_equal(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_E, &e), 1);
        uint8_t nb[1024], eb[16];
        int nl = BN_bn2bin(nn, nb), el = BN_bn2bin(e, eb);
        assert_true(nb[0] != 0 && eb[0] != 0);   /* minimal encodings */
        b64(nb, (size_t)nl, true, a);
        b64(eb, (size_t)el, true, b);
        snprintf(out, cap, ",\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"", a, b);
        BN_free(nn);
        BN_free(e);
    } else {
        n = sizeof enc;
        assert_int_equal(EVP_PKEY_get_raw_public_key(key, enc, &n), 1);
        b64(enc, n, true, a);
        snprintf(out, cap, ",\"kty\":\"OKP\",\"crv\":\"%s\",\"x\":\"%s\"",
                 EVP_PKEY_is_a(key, "ED25519") ? "Ed25519" : "Ed448", a);
    }
}

static char *expected(X509 *const *roots, EVP_PKEY *const *keys, size_t n, long long seq,
                      long long hint)
{
    size_t cap = 64 * 1024;
    char *out = malloc(cap);
    assert_non_null(out);
    size_t o = (size_t)snprintf(out, cap, "{\"keys\":[");
    for (size_t i = 0; i < n; i++) {
        char key[4000], der64[8000];
        expect_key(keys[i], key, sizeof key);
        unsigned char *der = NULL;
        int dl = i2d_X509(roots[i], &der);
        assert_true(dl > 0);
        b64(der, (size_t)dl, false, der64);
        OPENSSL_free(der);
        o += (size_t)snprintf(out + o, cap - o, "%s{\"use\":\"x509-svid\"%s,\"x5c\":[\"%s\"]}",
                              i ? "," : "", key, der64);
    }
    snprintf(out + o, cap - o, "],\"spiffe_sequence\":%lld,\"spiffe_refresh_hint\":%lld}", seq,
             hint);
    return out;
}

static void check(EVP_PKEY *const *keys, size_t n, long long seq, long long hint)
{
    X509 *roots[4];
    STACK_OF(X509) *sk = sk_X509_new_null();
    assert_non_null(sk);
    for (size_t i = 0; i < n; i++) {
        roots[i] = root_with(keys[i]);
        assert_true(sk_X509_push(sk, roots[i]) > 0);
    }
    char *json = NULL;
    size_t len = 0;
    assert_int_equal(gw_spiffe_bundle_json(sk, seq, hint, &json, &len), 0);
    char *want = expected(roots, keys, n, seq, hint);
    if (strcmp(json, want) != 0) {
        print_error("got:  %s\nwant: %s\n", json, want);
        fail();
    }
    assert_int_equal(len, strlen(json));
    free(want);
    free(json);
    sk_X509_pop_free(sk, X509_free);
}

static void test_refusals(void **state)
{
    (void)state;
    char *json = (char *)1;
    size_t len = 1;
    STACK_OF(X509) *sk = sk_X509_new_null();
    assert_non_null(sk);
    assert_int_equal(gw_spiffe_bundle_json(NULL, 1, 300, &json, &len), -1);
    assert_null(json);
    assert_int_equal(gw_spiffe_bundle_json(sk, 1, 300, &json, &len), -1);   /* empty */
    X509 *r = root_with(signer);
    assert_true(sk_X509_push(sk, r) > 0);
    assert_int_equal(gw_spiffe_bundle_json(sk, -1, 300, &json, &len), -1);
    assert_int_equal(gw_spiffe_bundle_json(sk, 1, 0, &json, &len), -1);
    /* A key type with no JWK form here (X25519 cannot sign: forged by `signer`). */
    EVP_PKEY *x = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
    assert_non_null(x);
    X509 *rx = root_with(x);
    assert_true(sk_X509_push(sk, rx) > 0);
    assert_int_equal(gw_spiffe_bundle_json(sk, 1, 300, &json, &len), -1);
    assert_null(json);
    assert_non_null(strstr(tsr_errmsg(), "unsupported root key type X25519"));
    /* A curve without a JWK name. */
    EVP_PKEY *k1 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp256k1");
    assert_non_null(k1);
    X509 *r1 = root_with(k1);
    STACK_OF(X509) *sk1 = sk_X509_new_null();
    assert_true(sk_X509_push(sk1, r1) > 0);
    assert_int_equal(gw_spiffe_bundle_json(sk1, 1, 300, &json, &len), -1);
    assert_non_null(strstr(tsr_errmsg(), "curve secp256k1 has no JWK name"));
    sk_X509_pop_free(sk1, X509_free);
    sk_X509_pop_free(sk, X509_free);
    EVP_PKEY_free(x);
    EVP_PKEY_free(k1);
}

static void test_key_types(void **state)
{
    (void)state;
    EVP_PKEY *p256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    EVP_PKEY *p521 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521");
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    EVP_PKEY *ed448 = EVP_PKEY_Q_keygen(NULL, NULL, "ED448");
    assert_true(p256 && p384 && p521 && rsa && ed && ed448);
    check(&p256, 1, 1767225600, 300);
    check(&p384, 1, 0, 1);
    check(&p521, 1, 5, 300);
    check(&rsa, 1, 5, 300);
    check(&ed, 1, 5, 300);
    check(&ed448, 1, 5, 300);
    EVP_PKEY *two[] = {p256, rsa};
    check(two, 2, 42, 3600);

    /* P-521 coordinates are 66 bytes whose top byte is 0 or 1: the padding
     * must keep leading zero bytes. Make sure a key whose X starts with two
     * near-zero bytes (a shorter minimal encoding) is among those checked. */
    for (int tries = 0; tries < 2000; tries++) {
        EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521");
        assert_non_null(k);
        uint8_t enc[200];
        size_t n = 0;
        assert_int_equal(EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
                                                         enc, sizeof enc, &n), 1);
        assert_int_equal(n, 1 + 2 * 66);
        if (enc[1] == 0 && enc[2] < 0x80) {   /* X has at least 9 leading zero bits */
            check(&k, 1, 1, 300);
            EVP_PKEY_free(k);
            break;
        }
        EVP_PKEY_free(k);
    }
    EVP_PKEY_free(p256);
    EVP_PKEY_free(p384);
    EVP_PKEY_free(p521);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ed);
    EVP_PKEY_free(ed448);
}

static int setup(void **state)
{
    (void)state;
    signer = tu_key_new();
    return signer != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(signer);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_key_types),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
