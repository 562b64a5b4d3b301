/* RenewCertificate's CSR path: ca_csr_check and ca_sign_csr (or
 * ca_sign_csr_unparsed) with a fixed issuing CA, on the DER bytes a sandbox
 * sends, for the identity the gateway takes from the caller's certificate.
 *
 * A mutated request almost never carries a valid self-signature, so the
 * harness can re-sign what it parsed with one of its fixed keys
 * (fuzz/fuzz_keys.h) before the code under test sees it: mutations then
 * reach everything after the proof of possession (the requested-identity
 * check, the signing) and the key construction from the SubjectPublicKeyInfo
 * (P-256 / P-384 points, Ed25519; everything else through OpenSSL's
 * decoders). The seeds (fuzz/mkcorpus.py) carry these keys' public keys in
 * several encodings (uncompressed and compressed points, explicit curve
 * parameters), so a re-signed request verifies whenever its SPKI still
 * encodes the fixed key.
 *
 * Input: [flags][DER CSR]
 * flags: bit 0-1 0: the request as given; 1: re-sign with the fixed key of
 *                the SPKI's algorithm (P-256, P-384, Ed25519, RSA), keeping
 *                the fuzzed SPKI; 2: replace the SPKI with a fixed key's
 *                (bits 2-3) and re-sign; 3: like 1
 *        bit 2-3 the fixed key for mode 2: P-256, P-384, Ed25519, RSA-2048
 *        bit 4-5 signature digest (EC, RSA): SHA-256, SHA-384, SHA-512, SHA-1
 *        bit 6  ca_sign_csr_unparsed instead of ca_sign_csr
 * Bytes after the request stay after the re-signed one (the parser must
 * refuse them).
 *
 * Invariants (a reference written independently with OpenSSL's ordinary
 * decoders): ca_csr_check accepts exactly the requests that parse whole, are
 * version 1, within the count caps, with an accepted key (its BIT STRING
 * without unused bits) whose signature verifies; its key equals the one OpenSSL's decoder builds from the same
 * SPKI. A request is signed exactly when it passes that check and every URI
 * SAN it asks for (in its one extension request) is the caller's ID; the
 * certificate carries the CSR's key (the CSR's key bits as they are in the
 * forms ca_issue.h copies, else that key's canonical encoding), an empty
 * subject, the issuer's usual extensions, and verifies as exactly the
 * caller's sandbox. */
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>
#include <string.h>

#include "fuzz/fuzz_keys.h"
#include "fuzz/fuzz_pki.h"

#define SANDBOX_UUID "0b7e4c1a-9f2d-4e8b-a6c3-5d1f2e3a4b5c"
#define SANDBOX_ID "spiffe://" FUZZ_TD "/sandbox/" SANDBOX_UUID

enum { KEY_P256, KEY_P384, KEY_ED25519, KEY_RSA, N_KEYS };

static EVP_PKEY *fixed_key(int which)
{
    static EVP_PKEY *keys[N_KEYS];
    static const char *const pems[N_KEYS] = {FUZZ_KEY_P256, FUZZ_KEY_P384, FUZZ_KEY_ED25519,
                                             FUZZ_KEY_RSA2048};
    if (keys[which] == NULL)
        FUZZ_CHECK(ca_key_from_pem((const uint8_t *)pems[which], strlen(pems[which]),
                                   &keys[which]) == 0);
    return keys[which];
}

/* The fixed key of the SPKI's algorithm, or NULL. */
static EVP_PKEY *key_for_spki(X509_REQ *req)
{
    ASN1_OBJECT *alg = NULL;
    X509_ALGOR *algor = NULL;
    X509_PUBKEY *spki = X509_REQ_get_X509_PUBKEY(req);
    if (spki == NULL || X509_PUBKEY_get0_param(&alg, NULL, NULL, &algor, spki) != 1) return NULL;
    int ptype = V_ASN1_UNDEF;
    const void *pval = NULL;
    X509_ALGOR_get0(NULL, &ptype, &pval, algor);
    switch (OBJ_obj2nid(alg)) {
    case NID_ED25519: return fixed_key(KEY_ED25519);
    case NID_rsaEncryption: return fixed_key(KEY_RSA);
    case NID_X9_62_id_ecPublicKey:
        /* A named curve says which; explicit parameters: try P-256. */
        if (ptype == V_ASN1_OBJECT && OBJ_obj2nid(pval) == NID_secp384r1)
            return fixed_key(KEY_P384);
        if (ptype == V_ASN1_SEQUENCE) {
            const ASN1_STRING *params = pval;
            if (ASN1_STRING_length(params) > 300) return fixed_key(KEY_P384);
        }
        return fixed_key(KEY_P256);
    default: return NULL;
    }
}

/* The request, re-signed per flags, as DER (malloc'd) followed by whatever
 * followed the original; NULL to use the input as it is. */
static uint8_t *resign(uint8_t flags, const uint8_t *der, size_t len, size_t *out_len)
{
    int mode = flags & 3;
    if (mode == 0) return NULL;
    const unsigned char *p = der;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)len);
    if (req == NULL) {
        ERR_clear_error();
        return NULL;
    }
    size_t tail = len - (size_t)(p - der);
    EVP_PKEY *key = NULL;
    if (mode == 2) {
        key = fixed_key((flags >> 2) & 3);
        if (X509_REQ_set_pubkey(req, key) != 1) key = NULL;
    } else {
        key = key_for_spki(req);
    }
    static const char *const mds[4] = {"SHA256", "SHA384", "SHA512", "SHA1"};
    const EVP_MD *md = NULL;
    if (key != NULL && EVP_PKEY_get_id(key) != EVP_PKEY_ED25519)
        md = EVP_get_digestbyname(mds[(flags >> 4) & 3]);
    uint8_t *out = NULL;
    unsigned char *enc = NULL;
    int n = 0;
    if (key != NULL && X509_REQ_sign(req, key, md) > 0 && (n = i2d_X509_REQ(req, &enc)) > 0) {
        out = malloc((size_t)n + tail + 1);
        FUZZ_CHECK(out != NULL);
        memcpy(out, enc, (size_t)n);
        memcpy(out + n, p, tail);
        *out_len = (size_t)n + tail;
    }
    OPENSSL_free(enc);
    X509_REQ_free(req);
    ERR_clear_error();
    return out;
}

/* The SubjectPublicKeyInfo's BIT STRING has no unused bits: walked TLV by
 * TLV (SEQUENCE { AlgorithmIdentifier, BIT STRING }). */
static bool reference_spki_whole_bytes(X509_REQ *req)
{
    unsigned char *der = NULL;
    int n = i2d_X509_PUBKEY(X509_REQ_get_X509_PUBKEY(req), &der);
    const unsigned char *p = der;
    long len = 0;
    int tag = 0, cls = 0;
    bool ok = n > 0 && !(ASN1_get_object(&p, &len, &tag, &cls, n) & 0x80) &&
              tag == V_ASN1_SEQUENCE;
    if (ok) { /* skip the AlgorithmIdentifier */
        const unsigned char *q = p;
        ok = !(ASN1_get_object(&q, &len, &tag, &cls, n - (p - der)) & 0x80);
        p = q + len;
    }
    ok = ok && !(ASN1_get_object(&p, &len, &tag, &cls, n - (p - der)) & 0x80) &&
         tag == V_ASN1_BIT_STRING && len >= 1 && p[0] == 0;
    OPENSSL_free(der);
    return ok;
}

/* The reference check, with OpenSSL's ordinary parse and key decoder: the
 * request's key (a new reference) if it passes, else NULL. */
static EVP_PKEY *reference_check(const uint8_t *der, size_t len, X509_REQ **req_out)
{
    *req_out = NULL;
    if (len == 0 || len > CA_CSR_MAX_DER) return NULL;
    const unsigned char *p = der;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)len);
    EVP_PKEY *key = NULL;
    STACK_OF(X509_EXTENSION) *exts = NULL;
    bool ok = req != NULL && p == der + len && X509_REQ_get_version(req) == X509_REQ_VERSION_1 &&
              X509_REQ_get_attr_count(req) <= CA_CSR_MAX_ATTRIBUTES &&
              X509_NAME_entry_count(X509_REQ_get_subject_name(req)) <= CA_CSR_MAX_SUBJECT_ENTRIES;
    if (ok) {
        exts = X509_REQ_get_extensions(req);
        ok = exts == NULL || sk_X509_EXTENSION_num(exts) <= CA_CSR_MAX_EXTENSIONS;
        sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    }
    ok = ok && reference_spki_whole_bytes(req);
    if (ok) key = X509_REQ_get_pubkey(req);
    ok = ok && key != NULL && ca_key_check_accepted(key) == 0 && X509_REQ_verify(req, key) == 1;
    ERR_clear_error();
    tsr_err_clear();
    if (!ok) {
        EVP_PKEY_free(key);
        X509_REQ_free(req);
        return NULL;
    }
    *req_out = req;
    return key;
}

/* Does the request ask only for the caller's identity? Exactly one
 * extension request (PKCS#9 or Microsoft's) with one value, whose
 * subjectAltName extensions all parse and name no URI but SANDBOX_ID. */
static bool reference_identity_ok(X509_REQ *req)
{
    int count = 0, loc = -1;
    for (int i = 0; i < X509_REQ_get_attr_count(req); i++) {
        int nid = OBJ_obj2nid(X509_ATTRIBUTE_get0_object(X509_REQ_get_attr(req, i)));
        if (nid == NID_ext_req || nid == NID_ms_ext_req) {
            count++;
            loc = i;
        }
    }
    if (count == 0) return true;
    if (count > 1 || X509_ATTRIBUTE_count(X509_REQ_get_attr(req, loc)) != 1) return false;
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
    bool ok = exts != NULL;
    for (int i = 0; ok && i < sk_X509_EXTENSION_num(exts); i++) {
        X509_EXTENSION *ext = sk_X509_EXTENSION_value(exts, i);
        if (OBJ_obj2nid(X509_EXTENSION_get_object(ext)) != NID_subject_alt_name) continue;
        GENERAL_NAMES *names = X509V3_EXT_d2i(ext);
        ok = names != NULL;
        for (int j = 0; ok && j < sk_GENERAL_NAME_num(names); j++) {
            const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, j);
            if (gn->type != GEN_URI) continue;
            const ASN1_IA5STRING *uri = gn->d.uniformResourceIdentifier;
            ok = (size_t)ASN1_STRING_length(uri) == strlen(SANDBOX_ID) &&
                 memcmp(ASN1_STRING_get0_data(uri), SANDBOX_ID, strlen(SANDBOX_ID)) == 0;
        }
        GENERAL_NAMES_free(names);
    }
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    ERR_clear_error();
    return ok;
}

/* The extensions of a leaf the CA issues for a key of its own. */
static int reference_ext_count(const fuzz_pki *pki)
{
    static int count = -1;
    if (count >= 0) return count;
    X509 *leaf = NULL;
    ca_leaf_request req = {.spiffe_id = SANDBOX_ID, .public_key = fixed_key(KEY_P256),
                           .ttl_seconds = 3600, .now = FUZZ_NOW};
    FUZZ_CHECK(ca_issue_leaf(pki->issuing, &req, &leaf) == 0);
    count = X509_get_ext_count(leaf);
    X509_free(leaf);
    return count;
}

/* The SPKI a certificate for this request must carry: the request's own
 * key bits, algorithm and curve when they are one of the exact forms
 * ca_issue.h copies (EC on a named curve with an uncompressed point,
 * Ed25519 without parameters; the BIT STRING is written again, with no
 * unused bits), else the canonical encoding of the request's key. */
static bool spki_as_expected(X509 *cert, X509_REQ *req, EVP_PKEY *key)
{
    X509_PUBKEY *spki = X509_REQ_get_X509_PUBKEY(req);
    ASN1_OBJECT *alg = NULL;
    const unsigned char *pk = NULL;
    int pklen = 0;
    X509_ALGOR *algor = NULL;
    FUZZ_CHECK(X509_PUBKEY_get0_param(&alg, &pk, &pklen, &algor, spki) == 1);
    int ptype = V_ASN1_UNDEF;
    const void *pval = NULL;
    X509_ALGOR_get0(NULL, &ptype, &pval, algor);
    int nid = OBJ_obj2nid(alg);
    bool exact = (nid == NID_X9_62_id_ecPublicKey && ptype == V_ASN1_OBJECT && pklen > 0 &&
                  pk[0] == 0x04) ||
                 (nid == NID_ED25519 && ptype == V_ASN1_UNDEF && pklen == 32);
    if (exact) {
        ASN1_OBJECT *calg = NULL;
        const unsigned char *cpk = NULL;
        int cpklen = 0;
        X509_ALGOR *calgor = NULL;
        FUZZ_CHECK(X509_PUBKEY_get0_param(&calg, &cpk, &cpklen, &calgor,
                                          X509_get_X509_PUBKEY(cert)) == 1);
        int cptype = V_ASN1_UNDEF;
        const void *cpval = NULL;
        X509_ALGOR_get0(NULL, &cptype, &cpval, calgor);
        return OBJ_cmp(alg, calg) == 0 && ptype == cptype &&
               (ptype != V_ASN1_OBJECT || OBJ_cmp(pval, cpval) == 0) && pklen == cpklen &&
               memcmp(pk, cpk, (size_t)pklen) == 0;
    }
    unsigned char *a = NULL, *b = NULL;
    int la = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &a);
    int lb = i2d_PUBKEY(key, &b);
    bool same = la > 0 && la == lb && memcmp(a, b, (size_t)la) == 0;
    OPENSSL_free(a);
    OPENSSL_free(b);
    return same;
}

static void check_signed(const fuzz_pki *pki, X509 *cert, X509_REQ *ref_req, EVP_PKEY *ref_key)
{
    FUZZ_CHECK(spki_as_expected(cert, ref_req, ref_key));
    FUZZ_CHECK(X509_NAME_entry_count(X509_get_subject_name(cert)) == 0);
    FUZZ_CHECK(X509_get_ext_count(cert) == reference_ext_count(pki));
    /* Through DER, as a peer receives it (an unparsed certificate has no
     * decoded key). */
    unsigned char *der = NULL;
    int n = i2d_X509(cert, &der);
    FUZZ_CHECK(n > 0);
    X509 *peer_cert = NULL;
    FUZZ_CHECK(ca_cert_from_der(der, (size_t)n, &peer_cert) == 0);
    OPENSSL_free(der);
    FUZZ_CHECK(EVP_PKEY_eq(X509_get0_pubkey(peer_cert), ref_key) == 1);

    STACK_OF(X509) *chain = sk_X509_new_null();
    FUZZ_CHECK(chain != NULL && sk_X509_push(chain, pki->issuing->cert) > 0);
    enum ca_verify_reason reason;
    ca_peer peer;
    FUZZ_CHECK(ca_verify_peer(pki->trust, peer_cert, chain, CA_PURPOSE_CLIENT, CA_KIND_SANDBOX,
                              FUZZ_NOW + 10, &reason, &peer) == 0);
    FUZZ_CHECK(reason == CA_VERIFY_OK && peer.identity.kind == CA_KIND_SANDBOX);
    FUZZ_CHECK(strcmp(peer.identity.name, SANDBOX_UUID) == 0);
    FUZZ_CHECK(strcmp(peer.identity.id.text, SANDBOX_ID) == 0);
    FUZZ_CHECK(peer.not_after == FUZZ_NOW + 3600);
    sk_X509_free(chain);
    X509_free(peer_cert);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const fuzz_pki *pki = fuzz_pki_get();
    fuzz_in in = {data, size};
    uint8_t flags = fuzz_u8(&in);
    size_t len = in.len;
    uint8_t *resigned = resign(flags, in.p, in.len, &len);
    const uint8_t *der = resigned != NULL ? resigned : in.p;

    X509_REQ *ref_req = NULL;
    EVP_PKEY *ref_key = reference_check(der, len, &ref_req);

    EVP_PKEY *pub = NULL;
    int checked = ca_csr_check(der, len, &pub);
    FUZZ_CHECK((checked == 0) == (ref_key != NULL));
    if (checked == 0) {
        FUZZ_CHECK(pub != NULL && ca_key_check_accepted(pub) == 0);
        FUZZ_CHECK(EVP_PKEY_eq(pub, ref_key) == 1);
    } else {
        FUZZ_CHECK(pub == NULL && tsr_errcat() == TSR_E_INPUT);
    }

    bool unparsed = (flags & 64) != 0;
    X509 *cert = NULL;
    uint8_t *cert_der = NULL;
    size_t cert_der_len = 0;
    int sign = unparsed ? ca_sign_csr_unparsed(pki->issuing, der, len, SANDBOX_ID, 3600,
                                               FUZZ_NOW, &cert, &cert_der, &cert_der_len)
                        : ca_sign_csr(pki->issuing, der, len, SANDBOX_ID, 3600, FUZZ_NOW, &cert);
    bool want = ref_key != NULL && reference_identity_ok(ref_req);
    FUZZ_CHECK((sign == 0) == want);
    if (sign == 0) {
        FUZZ_CHECK(cert != NULL);
        if (unparsed) {
            /* The DER returned is the certificate's own encoding. */
            unsigned char *enc = NULL;
            int n = i2d_X509(cert, &enc);
            FUZZ_CHECK(n > 0 && (size_t)n == cert_der_len && memcmp(enc, cert_der, (size_t)n) == 0);
            OPENSSL_free(enc);
            OPENSSL_free(cert_der);
        }
        if (!unparsed) FUZZ_CHECK(EVP_PKEY_eq(X509_get0_pubkey(cert), ref_key) == 1);
        check_signed(pki, cert, ref_req, ref_key);
        X509_free(cert);
    } else {
        FUZZ_CHECK(cert == NULL && tsr_errcat() == TSR_E_INPUT);
    }
    EVP_PKEY_free(pub);
    EVP_PKEY_free(ref_key);
    X509_REQ_free(ref_req);
    free(resigned);
    return 0;
}
