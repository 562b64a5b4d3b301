/* CSR checking and signing: refusals first (proof of possession, key policy,
 * malformed bytes, identity in the CSR), then what a signed CSR yields. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

#include "ca_issue.h"
#include "ca_pem.h"
#include "tsr_err.h"
#include "tsr_time.h"

#define TD "tessera.local"
#define SANDBOX_ID "spiffe://" TD "/sandbox/0f8e6c4a-3b1d-4e2f-9a7c-5d6e7f809a1b"
#define OTHER_ID "spiffe://" TD "/sandbox/11111111-2222-4333-8444-555555555555"

static ca_issuer *g_issuing;
static ca_issuer *g_root;

/* ---- helpers ------------------------------------------------------------------ */

typedef struct der {
    uint8_t *data;
    size_t len;
} der;

static void der_free(der *d)
{
    free(d->data);
    d->data = NULL;
    d->len = 0;
}

static EVP_PKEY *keygen(const char *alg, const char *curve, size_t rsa_bits)
{
    EVP_PKEY *key = NULL;
    if (curve != NULL)
        key = EVP_PKEY_Q_keygen(NULL, NULL, alg, curve);
    else if (rsa_bits != 0)
        key = EVP_PKEY_Q_keygen(NULL, NULL, alg, rsa_bits);
    else
        key = EVP_PKEY_Q_keygen(NULL, NULL, alg);
    assert_non_null(key);
    return key;
}

static const EVP_MD *md_for(const EVP_PKEY *key)
{
    int id = EVP_PKEY_get_base_id(key);
    return id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448 ? NULL : EVP_sha256();
}

static void add_conf_ext(STACK_OF(X509_EXTENSION) *exts, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, nid, value);
    assert_non_null(ext);
    assert_true(sk_X509_EXTENSION_push(exts, ext) > 0);
}

/* A SAN extension with one URI of exactly `len` bytes (may hold a NUL). */
static void add_raw_uri_san(STACK_OF(X509_EXTENSION) *exts, const char *uri, size_t len)
{
    GENERAL_NAMES *names = GENERAL_NAMES_new();
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_IA5STRING *s = ASN1_IA5STRING_new();
    assert_int_equal(ASN1_STRING_set(s, uri, (int)len), 1);
    GENERAL_NAME_set0_value(gn, GEN_URI, s);
    assert_true(sk_GENERAL_NAME_push(names, gn) > 0);
    X509_EXTENSION *ext = X509V3_EXT_i2d(NID_subject_alt_name, 0, names);
    assert_non_null(ext);
    GENERAL_NAMES_free(names);
    assert_true(sk_X509_EXTENSION_push(exts, ext) > 0);
}

typedef struct csr_opts {
    const char *subject_cn;               /* NULL: empty subject */
    STACK_OF(X509_EXTENSION) *exts;       /* NULL: no extension request */
    STACK_OF(X509_EXTENSION) *exts2;      /* a second (Microsoft OID) extension request */
    EVP_PKEY *sign_with;                  /* NULL: the CSR's own key */
} csr_opts;

static der make_csr(EVP_PKEY *key, const csr_opts *o)
{
    X509_REQ *req = X509_REQ_new();
    assert_non_null(req);
    assert_int_equal(X509_REQ_set_pubkey(req, key), 1);
    if (o != NULL && o->subject_cn != NULL) {
        X509_NAME *name = X509_REQ_get_subject_name(req);
        assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                                    (const unsigned char *)o->subject_cn, -1,
                                                    -1, 0),
                         1);
        assert_int_equal(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                                    (const unsigned char *)"Evil Corp", -1, -1,
                                                    0),
                         1);
    }
    if (o != NULL && o->exts != NULL) assert_int_equal(X509_REQ_add_extensions(req, o->exts), 1);
    /* OpenSSL refuses a duplicate attribute when building, but a peer's DER
     * can carry both the PKCS#9 and the Microsoft extension request. */
    if (o != NULL && o->exts2 != NULL)
        assert_int_equal(X509_REQ_add_extensions_nid(req, o->exts2, NID_ms_ext_req), 1);
    EVP_PKEY *signer = (o != NULL && o->sign_with != NULL) ? o->sign_with : key;
    assert_true(X509_REQ_sign(req, signer, md_for(signer)) > 0);
    der d = {0};
    unsigned char *buf = NULL;
    int n = i2d_X509_REQ(req, &buf);
    assert_true(n > 0);
    d.data = malloc((size_t)n + 64);
    assert_non_null(d.data);
    memcpy(d.data, buf, (size_t)n);
    d.len = (size_t)n;
    OPENSSL_free(buf);
    X509_REQ_free(req);
    return d;
}

static void assert_err_contains(const char *needle)
{
    if (strstr(tsr_errmsg(), needle) == NULL)
        fail_msg("error \"%s\" does not contain \"%s\"", tsr_errmsg(), needle);
}

static void assert_check_refused(const uint8_t *data, size_t len, const char *why)
{
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    assert_int_equal(ca_csr_check(data, len, &key), -1);
    assert_int_equal(tsr_errcat(), TSR_E_INPUT);
    if (why != NULL) assert_err_contains(why);
    assert_null(key);
    assert_int_equal(ca_sign_csr(g_issuing, data, len, SANDBOX_ID, 3600, 0, &cert), -1);
    assert_int_equal(tsr_errcat(), TSR_E_INPUT);
    if (why != NULL) assert_err_contains(why);
    assert_null(cert);
}

static void assert_sign_refused(const der *d, const char *why)
{
    X509 *cert = NULL;
    assert_int_equal(ca_sign_csr(g_issuing, d->data, d->len, SANDBOX_ID, 3600, 0, &cert), -1);
    assert_int_equal(tsr_errcat(), TSR_E_INPUT);
    assert_err_contains(why);
    assert_null(cert);
}

/* The issued certificate is the leaf profile for `id` and nothing from the CSR. */
static void assert_leaf_only_caller_identity(X509 *cert, const char *id, EVP_PKEY *key)
{
    assert_int_equal(X509_NAME_entry_count(X509_get_subject_name(cert)), 0);
    assert_int_equal(X509_get_ext_count(cert), 6);
    int crit = -1;
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, &crit, NULL);
    assert_non_null(names);
    assert_int_equal(crit, 1);
    assert_int_equal(sk_GENERAL_NAME_num(names), 1);
    const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, 0);
    assert_int_equal(gn->type, GEN_URI);
    const ASN1_STRING *uri = gn->d.uniformResourceIdentifier;
    assert_int_equal((size_t)ASN1_STRING_length(uri), strlen(id));
    assert_memory_equal(ASN1_STRING_get0_data(uri), id, strlen(id));
    GENERAL_NAMES_free(names);
    assert_int_equal(X509_check_ca(cert), 0);
    assert_int_equal(X509_get_key_usage(cert), KU_DIGITAL_SIGNATURE);
    assert_int_equal(X509_get_extended_key_usage(cert), XKU_SSL_SERVER | XKU_SSL_CLIENT);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(cert), key), 1);
    assert_int_equal(X509_verify(cert, X509_get0_pubkey(g_issuing->cert)), 1);
}

/* ---- refusals ------------------------------------------------------------------ */

static void test_empty_and_oversized(void **state)
{
    (void)state;
    static const uint8_t one = 0x30;
    assert_check_refused(NULL, 0, "empty CSR");
    assert_check_refused(&one, 0, "empty CSR");
    assert_check_refused(NULL, 10, "empty CSR");
    uint8_t *big = calloc(1, CA_CSR_MAX_DER + 1);
    assert_non_null(big);
    /* A plausible DER header claiming the whole buffer. */
    big[0] = 0x30;
    big[1] = 0x82;
    big[2] = (uint8_t)((CA_CSR_MAX_DER + 1 - 4) >> 8);
    big[3] = (uint8_t)((CA_CSR_MAX_DER + 1 - 4) & 0xff);
    assert_check_refused(big, CA_CSR_MAX_DER + 1, "exceeds");
    assert_check_refused(big, SIZE_MAX, "exceeds");
    free(big);
}

static void test_garbage(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        size_t len;
    } cases[] = {
        {"hello", 5},
        {"\x30", 1},
        {"\x30\x00", 2},
        {"\x30\x80\x00\x00", 4},                 /* indefinite length */
        {"\x30\x84\xff\xff\xff\xff\x30\x00", 8}, /* length far past the end */
        {"\x31\x03\x02\x01\x00", 5},
        {"-----BEGIN CERTIFICATE REQUEST-----\n", 36}, /* PEM is not DER */
        {"\x00\x00\x00\x00\x00\x00\x00\x00", 8},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_check_refused((const uint8_t *)cases[i].bytes, cases[i].len, NULL);
    uint8_t random[4096];
    for (int round = 0; round < 50; round++) {
        assert_int_equal(RAND_bytes(random, sizeof random), 1);
        random[0] = 0x30; /* at least look like a SEQUENCE */
        assert_check_refused(random, (size_t)(round * 81 + 1), NULL);
    }
    /* A certificate is not a CSR. */
    unsigned char *cert_der = NULL;
    int n = i2d_X509(g_issuing->cert, &cert_der);
    assert_true(n > 0);
    assert_check_refused(cert_der, (size_t)n, NULL);
    OPENSSL_free(cert_der);
}

static void test_truncated_and_trailing(void **state)
{
    (void)state;
    EVP_PKEY *key = keygen("EC", "P-256", 0);
    der d = make_csr(key, NULL);
    for (size_t len = 1; len < d.len; len++) assert_check_refused(d.data, len, NULL);
    /* Trailing bytes: one zero, one 0x30, a second copy of the CSR. */
    d.data[d.len] = 0x00;
    assert_check_refused(d.data, d.len + 1, "trailing");
    d.data[d.len] = 0x30;
    assert_check_refused(d.data, d.len + 1, "trailing");
    uint8_t *twice = malloc(2 * d.len);
    assert_non_null(twice);
    memcpy(twice, d.data, d.len);
    memcpy(twice + d.len, d.data, d.len);
    assert_check_refused(twice, 2 * d.len, "trailing");
    free(twice);
    /* The exact bytes are fine. */
    EVP_PKEY *pub = NULL;
    assert_int_equal(ca_csr_check(d.data, d.len, &pub), 0);
    EVP_PKEY_free(pub);
    der_free(&d);
    EVP_PKEY_free(key);
}

static void test_bad_signature(void **state)
{
    (void)state;
    static const struct {
        const char *alg;
        const char *curve;
        size_t bits;
    } keys[] = {{"EC", "P-256", 0}, {"EC", "P-384", 0}, {"ED25519", NULL, 0}, {"RSA", NULL, 2048}};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        EVP_PKEY *key = keygen(keys[i].alg, keys[i].curve, keys[i].bits);
        der d = make_csr(key, NULL);
        /* The signature BIT STRING ends the DER: flip a byte of it. */
        d.data[d.len - 1] ^= 0x01;
        assert_check_refused(d.data, d.len, "CSR signature does not verify (no proof of possession)");
        d.data[d.len - 1] ^= 0x01;
        d.data[d.len - 8] ^= 0x80;
        assert_check_refused(d.data, d.len, NULL);
        der_free(&d);

        /* Well-formed, but signed by a key other than the one it carries. */
        EVP_PKEY *other = keygen(keys[i].alg, keys[i].curve, keys[i].bits);
        csr_opts o = {.sign_with = other};
        d = make_csr(key, &o);
        assert_check_refused(d.data, d.len, "no proof of possession");
        der_free(&d);
        EVP_PKEY_free(other);
        EVP_PKEY_free(key);
    }
}

static void test_refused_keys(void **state)
{
    (void)state;
    static const struct {
        const char *alg;
        const char *curve;
        size_t bits;
        const char *why;
    } cases[] = {
        {"RSA", NULL, 1024, "RSA key of 1024 bits is too small (minimum 2048)"},
        {"EC", "secp256k1", 0, "unsupported key ECDSA secp256k1"},
        {"EC", "P-521", 0, "unsupported key ECDSA P-521"},
        {"EC", "brainpoolP256r1", 0, "unsupported key ECDSA brainpoolP256r1"},
        {"EC", "P-224", 0, "unsupported key ECDSA"},
        {"ED448", NULL, 0, "unsupported key Ed448"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        EVP_PKEY *key = keygen(cases[i].alg, cases[i].curve, cases[i].bits);
        der d = make_csr(key, NULL);
        assert_check_refused(d.data, d.len, cases[i].why);
        der_free(&d);
        EVP_PKEY_free(key);
    }
}

static EVP_PKEY *rsa_with_exponent(unsigned long exponent)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    BIGNUM *e = BN_new();
    EVP_PKEY *key = NULL;
    assert_non_null(ctx);
    assert_non_null(e);
    assert_int_equal(BN_set_word(e, exponent), 1);
    assert_int_equal(EVP_PKEY_keygen_init(ctx), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, 2048), 1);
    assert_int_equal(EVP_PKEY_CTX_set1_rsa_keygen_pubexp(ctx, e), 1);
    assert_int_equal(EVP_PKEY_generate(ctx, &key), 1);
    BN_free(e);
    EVP_PKEY_CTX_free(ctx);
    return key;
}

/* A public RSA key with modulus n and exponent e, built from parameters. */
static EVP_PKEY *rsa_public(const BIGNUM *n, unsigned long exponent)
{
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    BIGNUM *e = BN_new();
    assert_non_null(bld);
    assert_non_null(e);
    assert_int_equal(BN_set_word(e, exponent), 1);
    assert_int_equal(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n), 1);
    assert_int_equal(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e), 1);
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    assert_non_null(params);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    EVP_PKEY *key = NULL;
    assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
    assert_int_equal(EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params), 1);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(e);
    return key;
}

static void test_rsa_exponent_refused(void **state)
{
    (void)state;
    /* e = 3 in a well-signed CSR. */
    EVP_PKEY *key = rsa_with_exponent(3);
    der d = make_csr(key, NULL);
    assert_check_refused(d.data, d.len, "bad public exponent");
    der_free(&d);
    /* e = 1 (signatures forgeable by anyone), e = 65536 (even), an even
     * modulus: refused by the key check itself. */
    BIGNUM *n = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_N, &n), 1);
    static const unsigned long bad_e[] = {1, 65536, 257};
    for (size_t i = 0; i < sizeof bad_e / sizeof bad_e[0]; i++) {
        EVP_PKEY *pub = rsa_public(n, bad_e[i]);
        assert_int_equal(ca_key_check_accepted(pub), -1);
        assert_err_contains("bad public exponent");
        EVP_PKEY_free(pub);
    }
    EVP_PKEY *good = rsa_public(n, 65537);
    assert_int_equal(ca_key_check_accepted(good), 0);
    EVP_PKEY_free(good);
    assert_int_equal(BN_add_word(n, 1), 1); /* even modulus */
    EVP_PKEY *even = rsa_public(n, 65537);
    assert_int_equal(ca_key_check_accepted(even), -1);
    assert_err_contains("even modulus");
    EVP_PKEY_free(even);
    BN_free(n);
    EVP_PKEY_free(key);
}


/* Replace the first occurrence of `old` (n bytes) in d by `new`. */
static void der_patch(der *d, const unsigned char *old, const unsigned char *new, size_t n)
{
    for (size_t i = 0; i + n <= d->len; i++) {
        if (memcmp(d->data + i, old, n) == 0) {
            memcpy(d->data + i, new, n);
            return;
        }
    }
    fail_msg("bytes to patch not found");
}

/* The CSR key built without OpenSSL's decoder (uncompressed P-256/P-384,
 * Ed25519; see csr_d2i in ca_csr.c) is the CSR's key, and its
 * SubjectPublicKeyInfo goes into the certificate unchanged; a point off the
 * curve is refused as a key that does not parse (not as a bad signature, as
 * it would be if the point were accepted), exactly as by the decoder. */
static void test_key_built_without_decoder(void **state)
{
    (void)state;
    static const struct { const char *alg, *curve; } keys[] = {
        {"EC", "P-256"}, {"EC", "P-384"}, {"ED25519", NULL}};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        EVP_PKEY *key = keygen(keys[i].alg, keys[i].curve, 0);
        der d = make_csr(key, NULL);
        EVP_PKEY *got = NULL;
        assert_int_equal(ca_csr_check(d.data, d.len, &got), 0);
        assert_int_equal(EVP_PKEY_eq(got, key), 1);
        X509 *cert = NULL;
        assert_int_equal(ca_sign_csr_unparsed(g_issuing, d.data, d.len, SANDBOX_ID, 3600, 0,
                                              &cert, NULL, NULL),
                         0);
        unsigned char *a = NULL, *b = NULL;
        int la = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &a);
        int lb = i2d_PUBKEY(key, &b);
        assert_true(la > 0 && la == lb);
        assert_memory_equal(a, b, (size_t)la);
        OPENSSL_free(a);
        OPENSSL_free(b);
        X509_free(cert);

        /* The same CSR with its public key's last byte changed. */
        unsigned char pub[200], bad[200];
        size_t publen = 0;
        assert_int_equal(EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, pub,
                                                         sizeof pub, &publen),
                         1);
        memcpy(bad, pub, publen);
        bad[publen - 1] ^= 0x01;
        der_patch(&d, pub, bad, publen);
        if (keys[i].curve != NULL) {
            /* For this X the curve has only Y and p - Y: the new Y is off it. */
            assert_check_refused(d.data, d.len, "public key does not parse");
        } else {
            assert_check_refused(d.data, d.len, "does not verify");
        }
        EVP_PKEY_free(got);
        der_free(&d);
        EVP_PKEY_free(key);
    }
}

/* A key whose BIT STRING says some bits of its last byte are unused: the
 * key's bytes are those of a good key, but the encoding is not one any
 * accepted key form has, and the SubjectPublicKeyInfo would go into the
 * certificate as it came. Re-signed, so that the refusal is not the
 * signature's. */
static void test_spki_unused_bits_refused(void **state)
{
    (void)state;
    static const struct { const char *alg, *curve; unsigned char head[4]; } keys[] = {
        {"EC", "P-256", {0x03, 0x42, 0x00, 0x04}},
        {"EC", "P-384", {0x03, 0x62, 0x00, 0x04}},
        {"ED25519", NULL, {0x03, 0x21, 0x00, 0x00}},
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        EVP_PKEY *key = keygen(keys[i].alg, keys[i].curve, 0);
        der d = make_csr(key, NULL);
        /* The BIT STRING header: tag, length, unused bits (then 0x04 for EC). */
        size_t hl = keys[i].curve != NULL ? 4 : 3;
        unsigned char bad[4];
        memcpy(bad, keys[i].head, hl);
        bad[2] = 0x01;
        der_patch(&d, keys[i].head, bad, hl);
        const unsigned char *p = d.data;
        X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)d.len);
        assert_non_null(req);
        assert_true(X509_REQ_sign(req, key, md_for(key)) > 0);
        unsigned char *buf = NULL;
        int n = i2d_X509_REQ(req, &buf);
        assert_true(n > 0);
        assert_check_refused(buf, (size_t)n, "BIT STRING has unused bits");
        OPENSSL_free(buf);
        X509_REQ_free(req);
        der_free(&d);
        EVP_PKEY_free(key);
    }
}

static void test_explicit_curve_parameters_refused(void **state)
{
    (void)state;
    EVP_PKEY *key = keygen("EC", "P-256", 0);
    assert_int_equal(EVP_PKEY_set_utf8_string_param(key, OSSL_PKEY_PARAM_EC_ENCODING,
                                                    OSSL_PKEY_EC_ENCODING_EXPLICIT),
                     1);
    der d = make_csr(key, NULL);
    assert_check_refused(d.data, d.len, "explicit parameters");
    der_free(&d);
    EVP_PKEY_free(key);
}

static void test_bad_version_refused(void **state)
{
    (void)state;
    EVP_PKEY *key = keygen("EC", "P-256", 0);
    X509_REQ *req = X509_REQ_new();
    assert_non_null(req);
    assert_int_equal(X509_REQ_set_pubkey(req, key), 1);
    assert_int_equal(X509_REQ_set_version(req, 2), 1);
    assert_true(X509_REQ_sign(req, key, EVP_sha256()) > 0);
    unsigned char *buf = NULL;
    int n = i2d_X509_REQ(req, &buf);
    assert_true(n > 0);
    assert_check_refused(buf, (size_t)n, NULL);
    OPENSSL_free(buf);
    X509_REQ_free(req);
    EVP_PKEY_free(key);
}

static void test_identity_in_csr_refused(void **state)
{
    (void)state;
    EVP_PKEY *key = keygen("EC", "P-256", 0);

    /* Another sandbox's ID. */
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    add_conf_ext(exts, NID_subject_alt_name, "URI:" OTHER_ID);
    csr_opts o = {.exts = exts};
    der d = make_csr(key, &o);
    assert_sign_refused(&d, "CSR requests URI SAN \"" OTHER_ID "\"");
    assert_err_contains(SANDBOX_ID); /* names both */
    der_free(&d);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);

    /* The caller's ID plus another one in the same SAN. */
    exts = sk_X509_EXTENSION_new_null();
    add_conf_ext(exts, NID_subject_alt_name, "URI:" SANDBOX_ID ",URI:spiffe://" TD "/user/admin");
    o.exts = exts;
    d = make_csr(key, &o);
    assert_sign_refused(&d, "spiffe://" TD "/user/admin");
    der_free(&d);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);

    /* Two SAN extensions: the second asks for another ID. */
    exts = sk_X509_EXTENSION_new_null();
    add_conf_ext(exts, NID_subject_alt_name, "URI:" SANDBOX_ID);
    add_conf_ext(exts, NID_subject_alt_name, "URI:" OTHER_ID);
    o.exts = exts;
    d = make_csr(key, &o);
    assert_sign_refused(&d, OTHER_ID);
    der_free(&d);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);

    /* The caller's ID with an embedded NUL and a suffix; and a prefix of it. */
    static const char with_nul[] = SANDBOX_ID "\0.evil";
    exts = sk_X509_EXTENSION_new_null();
    add_raw_uri_san(exts, with_nul, sizeof with_nul - 1);
    o.exts = exts;
    d = make_csr(key, &o);
    assert_sign_refused(&d, "\\x00.evil");
    der_free(&d);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    exts = sk_X509_EXTENSION_new_null();
    add_raw_uri_san(exts, SANDBOX_ID, strlen(SANDBOX_ID) - 1);
    o.exts = exts;
    d = make_csr(key, &o);
    assert_sign_refused(&d, "CSR requests URI SAN");
    der_free(&d);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);

    /* A second extension request hiding another ID behind a harmless first. */
    STACK_OF(X509_EXTENSION) *first = sk_X509_EXTENSION_new_null();
    STACK_OF(X509_EXTENSION) *second = sk_X509_EXTENSION_new_null();
    add_conf_ext(first, NID_basic_constraints, "CA:FALSE");
    add_conf_ext(second, NID_subject_alt_name, "URI:" OTHER_ID);
    o.exts = first;
    o.exts2 = second;
    d = make_csr(key, &o);
    assert_sign_refused(&d, "more than one extension request");
    der_free(&d);
    sk_X509_EXTENSION_pop_free(first, X509_EXTENSION_free);
    sk_X509_EXTENSION_pop_free(second, X509_EXTENSION_free);

    /* No identity, or a bad one, from the caller. */
    d = make_csr(key, NULL);
    X509 *cert = NULL;
    assert_int_equal(ca_sign_csr(g_issuing, d.data, d.len, NULL, 3600, 0, &cert), -1);
    assert_int_equal(ca_sign_csr(g_issuing, d.data, d.len, "spiffe://" TD, 3600, 0, &cert), -1);
    assert_int_equal(ca_sign_csr(g_issuing, d.data, d.len, "spiffe://other.td/sandbox/x", 3600, 0,
                                 &cert),
                     -1);
    assert_int_equal(ca_sign_csr(g_issuing, d.data, d.len, SANDBOX_ID, 0, 0, &cert), -1);
    assert_null(cert);
    der_free(&d);
    EVP_PKEY_free(key);
}

/* ---- what is accepted, and what comes out -------------------------------------- */

static void test_csr_extensions_and_subject_never_copied(void **state)
{
    (void)state;
    EVP_PKEY *key = keygen("EC", "P-256", 0);
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    add_conf_ext(exts, NID_subject_alt_name,
                 "DNS:evil.example.com,DNS:localhost,IP:10.0.0.1,email:a@b.c");
    add_conf_ext(exts, NID_basic_constraints, "critical,CA:TRUE");
    add_conf_ext(exts, NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature");
    add_conf_ext(exts, NID_ext_key_usage, "codeSigning,OCSPSigning");
    add_conf_ext(exts, NID_name_constraints, "permitted;DNS:example.com");
    csr_opts o = {.subject_cn = "admin", .exts = exts};
    der d = make_csr(key, &o);
    X509 *cert = NULL;
    if (ca_sign_csr(g_issuing, d.data, d.len, SANDBOX_ID, 3600, 0, &cert) != 0)
        fail_msg("sign: %s", tsr_errmsg());
    assert_leaf_only_caller_identity(cert, SANDBOX_ID, key);
    assert_int_equal(X509_get_ext_by_NID(cert, NID_name_constraints, -1), -1);
    X509_free(cert);
    der_free(&d);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);

    /* Asking for exactly the caller's ID is fine; it still appears once. */
    exts = sk_X509_EXTENSION_new_null();
    add_conf_ext(exts, NID_subject_alt_name, "URI:" SANDBOX_ID ",DNS:x.example");
    o.exts = exts;
    d = make_csr(key, &o);
    assert_int_equal(ca_sign_csr(g_issuing, d.data, d.len, SANDBOX_ID, 3600, 0, &cert), 0);
    assert_leaf_only_caller_identity(cert, SANDBOX_ID, key);
    X509_free(cert);
    der_free(&d);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    EVP_PKEY_free(key);
}

static void test_accepted_keys(void **state)
{
    (void)state;
    static const struct {
        const char *alg;
        const char *curve;
        size_t bits;
    } keys[] = {{"RSA", NULL, 2048}, {"EC", "P-256", 0}, {"EC", "P-384", 0}, {"ED25519", NULL, 0}};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        EVP_PKEY *key = keygen(keys[i].alg, keys[i].curve, keys[i].bits);
        csr_opts o = {.subject_cn = "sandbox"};
        der d = make_csr(key, &o);
        EVP_PKEY *pub = NULL;
        if (ca_csr_check(d.data, d.len, &pub) != 0) fail_msg("check: %s", tsr_errmsg());
        assert_int_equal(EVP_PKEY_eq(pub, key), 1);
        EVP_PKEY_free(pub);
        int64_t now = tsr_now_unix();
        X509 *cert = NULL;
        assert_int_equal(ca_sign_csr(g_issuing, d.data, d.len, SANDBOX_ID, 3600, now, &cert), 0);
        assert_leaf_only_caller_identity(cert, SANDBOX_ID, key);
        int64_t nb = 0, na = 0;
        assert_int_equal(ca_cert_validity(cert, &nb, &na), 0);
        assert_int_equal(nb, now - 60);
        assert_int_equal(na, now + 3600);
        X509_free(cert);
        der_free(&d);
        EVP_PKEY_free(key);
    }
}

/* The unparsed fast path (RenewCertificate): the same certificate as the
 * re-parsed one once its DER is parsed, for every accepted key, including
 * the forms that are re-encoded rather than copied (RSA, a compressed EC
 * point). */
static void test_unparsed_issuance_matches(void **state)
{
    (void)state;
    static const struct {
        const char *alg;
        const char *curve;
        size_t bits;
        bool compressed;
    } keys[] = {{"RSA", NULL, 2048, false}, {"EC", "P-256", 0, false},
                {"EC", "P-256", 0, true},   {"EC", "P-384", 0, false},
                {"ED25519", NULL, 0, false}};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        EVP_PKEY *key = keygen(keys[i].alg, keys[i].curve, keys[i].bits);
        if (keys[i].compressed)
            assert_int_equal(EVP_PKEY_set_utf8_string_param(
                                 key, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, "compressed"),
                             1);
        csr_opts o = {.subject_cn = "sandbox"};
        der d = make_csr(key, &o);
        int64_t now = tsr_now_unix();
        X509 *fast = NULL;
        uint8_t *fast_der = NULL;
        size_t fast_len = 0;
        if (ca_sign_csr_unparsed(g_issuing, d.data, d.len, SANDBOX_ID, 3600, now, &fast,
                                 &fast_der, &fast_len) != 0)
            fail_msg("unparsed: %s", tsr_errmsg());
        unsigned char *enc = NULL;
        int n = i2d_X509(fast, &enc);
        assert_true(n > 0);
        /* The DER handed back is the certificate's encoding, its signature
         * verifies with the issuer's key, and its PEM is ca_cert_to_pem's. */
        assert_int_equal(fast_len, (size_t)n);
        assert_memory_equal(fast_der, enc, (size_t)n);
        X509 *cert = NULL;
        assert_int_equal(ca_cert_from_der(fast_der, fast_len, &cert), 0);
        assert_int_equal(X509_verify(cert, X509_get0_pubkey(g_issuing->cert)), 1);
        char *pem_a = NULL, *pem_b = NULL;
        size_t pem_la = 0, pem_lb = 0;
        assert_int_equal(ca_cert_der_to_pem(fast_der, fast_len, &pem_a, &pem_la), 0);
        assert_int_equal(ca_cert_to_pem(cert, &pem_b, &pem_lb), 0);
        assert_int_equal(pem_la, pem_lb);
        assert_string_equal(pem_a, pem_b);
        free(pem_a);
        free(pem_b);
        OPENSSL_free(fast_der);
        assert_leaf_only_caller_identity(cert, SANDBOX_ID, key);
        /* The same SubjectPublicKeyInfo as the re-parsed path puts there. */
        X509 *slow = NULL;
        assert_int_equal(ca_sign_csr(g_issuing, d.data, d.len, SANDBOX_ID, 3600, now, &slow), 0);
        unsigned char *spki = NULL, *want = NULL;
        int sn = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &spki);
        int wn = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(slow), &want);
        assert_true(sn > 0 && sn == wn);
        assert_memory_equal(spki, want, (size_t)sn);
        X509_free(slow);
        int64_t nb = 0, na = 0;
        assert_int_equal(ca_cert_validity(fast, &nb, &na), 0);
        assert_int_equal(nb, now - 60);
        assert_int_equal(na, now + 3600);
        OPENSSL_free(spki);
        OPENSSL_free(want);
        OPENSSL_free(enc);
        X509_free(cert);
        X509_free(fast);
        der_free(&d);
        EVP_PKEY_free(key);
    }
}

static int setup(void **state)
{
    (void)state;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    if (ca_create_root(CA_KEY_P256, TD, 86400 * 30, 0, &key, &cert) != 0) return -1;
    if (ca_issuer_new(cert, key, &g_root) != 0) return -1;
    if (ca_create_issuing(g_root, CA_KEY_P256, TD, 86400 * 7, 0, &key, &cert) != 0) return -1;
    if (ca_issuer_new(cert, key, &g_issuing) != 0) return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ca_issuer_free(g_issuing);
    ca_issuer_free(g_root);
    return 0;
}

/* ca_cert_der_to_pem lays the text out exactly as PEM_write_bio does, for
 * every length (lines of 64, the last one short, one newline each). */
static void test_der_to_pem_layout(void **state)
{
    (void)state;
    uint8_t data[300];
    assert_int_equal(RAND_bytes(data, sizeof data), 1);
    for (size_t n = 1; n <= sizeof data; n++) {
        char *pem = NULL;
        size_t len = 0;
        assert_int_equal(ca_cert_der_to_pem(data, n, &pem, &len), 0);
        BIO *b = BIO_new(BIO_s_mem());
        assert_non_null(b);
        assert_true(PEM_write_bio(b, "CERTIFICATE", "", data, (long)n) > 0);
        char *want = NULL;
        long wl = BIO_get_mem_data(b, &want);
        assert_int_equal(len, (size_t)wl);
        assert_memory_equal(pem, want, len);
        assert_int_equal(pem[len], '\0');
        BIO_free(b);
        free(pem);
    }
    char *pem = NULL;
    size_t len = 0;
    assert_int_equal(ca_cert_der_to_pem(data, 0, &pem, &len), -1);
    assert_int_equal(ca_cert_der_to_pem(data, CA_CERT_MAX_DER + 1, &pem, &len), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_and_oversized),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_truncated_and_trailing),
        cmocka_unit_test(test_bad_signature),
        cmocka_unit_test(test_refused_keys),
        cmocka_unit_test(test_rsa_exponent_refused),
        cmocka_unit_test(test_explicit_curve_parameters_refused),
        cmocka_unit_test(test_spki_unused_bits_refused),
        cmocka_unit_test(test_key_built_without_decoder),
        cmocka_unit_test(test_bad_version_refused),
        cmocka_unit_test(test_identity_in_csr_refused),
        cmocka_unit_test(test_csr_extensions_and_subject_never_copied),
        cmocka_unit_test(test_accepted_keys),
        cmocka_unit_test(test_unparsed_issuance_matches),
        cmocka_unit_test(test_der_to_pem_layout),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
