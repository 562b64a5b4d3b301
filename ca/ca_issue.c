/* Certificate issuance: the root, the issuing CA and leaves, exactly per the
 * X509-SVID profile of docs/identity.md. Every certificate is signed, re-parsed from
 * its DER, and its signature checked with the issuer's public key before it
 * is returned, so what callers see is exactly what goes on the wire. */
#include "ca_issue.h"

#include <arpa/inet.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca_pem.h"
#include "ca_spiffe.h"
#include "tsr_name.h"
#include "tsr_time.h"

#define BACKDATE_SECONDS 60
#define TTL_MAX_SECONDS (100LL * 366 * 24 * 3600)
#define SERIAL_BYTES 16
#define LEAF_MAX_DNS 32
#define LEAF_MAX_IP 32
#define DNS_NAME_MAX TSR_DNS_NAME_MAX
#define CN_MAX 64 /* ub-common-name (RFC 5280) */

/* What every leaf from one issuer shares, built once in ca_issuer_new (see
 * ca_issuer.prep) instead of per certificate: the constant extensions as
 * X509V3_EXT_conf_nid built them per call before, the AKI (it depends only
 * on the issuer's certificate), the issuer's parsed name constraints, the
 * signing digest and a fetched SHA-1 for the SKI. Never modified after it is
 * built: X509_add_ext copies an extension, NAME_CONSTRAINTS_check only reads. */
struct ca_issuer_prep {
    const X509 *built_from;     /* the issuer certificate it was built from */
    const EVP_MD *sign_md;      /* NULL for Ed25519 */
    EVP_MD *sha1;               /* SKI, RFC 5280 4.2.1.2 method (1) */
    X509_EXTENSION *basic;      /* critical, CA:FALSE */
    X509_EXTENSION *key_usage;  /* critical, digitalSignature */
    X509_EXTENSION *ext_key_usage; /* serverAuth, clientAuth */
    X509_EXTENSION *aki;        /* keyid:always; NULL: built per leaf (and fails as before) */
    NAME_CONSTRAINTS *nc;       /* the issuer's, NULL when it has none or they do not parse */
    bool nc_bad;                /* present but unparsable: every leaf is refused */
};

static int64_t resolve_now(int64_t now)
{
    return now != 0 ? now : tsr_now_unix();
}

static int check_ttl(int64_t ttl_seconds)
{
    TSR_ENSURE(ttl_seconds > 0, TSR_E_INPUT, "certificate lifetime must be positive");
    TSR_ENSURE(ttl_seconds <= TTL_MAX_SECONDS, TSR_E_INPUT,
               "certificate lifetime of %lld s exceeds 100 years", (long long)ttl_seconds);
    return 0;
}

static int check_trust_domain(const char *td)
{
    TSR_ENSURE(td != NULL, TSR_E_INPUT, "empty trust domain");
    return ca_trust_domain_validate(td, strnlen(td, CA_TRUST_DOMAIN_MAX + 1));
}

/* A leaf's SPIFFE ID: valid per the SPIFFE-ID standard, with a path. */
static int check_spiffe_id(const char *id)
{
    TSR_ENSURE(id != NULL, TSR_E_INPUT, "missing SPIFFE ID");
    size_t len = strnlen(id, CA_SPIFFE_ID_MAX + 1);
    ca_spiffe_id parsed;
    TSR_GUARD(ca_spiffe_parse(id, len, &parsed));
    TSR_ENSURE(parsed.path[0] != '\0', TSR_E_INPUT,
               "SPIFFE ID %s has no path (a certificate needs a path such as /user/NAME)", id);
    return 0;
}

/* A DNS name for a gateway certificate: LDH labels, no wildcard. */
static int check_dns_name(const char *name)
{
    TSR_ENSURE(name != NULL && name[0] != '\0', TSR_E_INPUT, "empty DNS name");
    size_t len = strnlen(name, DNS_NAME_MAX + 1);
    TSR_ENSURE(len <= DNS_NAME_MAX, TSR_E_INPUT, "DNS name longer than %d bytes", DNS_NAME_MAX);
    TSR_ENSURE(tsr_dns_name_valid(name, len, 0), TSR_E_INPUT,
               "bad DNS name \"%s\" (letters, digits and '-' inside dot-separated labels of "
               "1-63 bytes)",
               name);
    return 0;
}

/* Digest for signing with `key`: SHA-256 for P-256, SHA-384 for P-384, none
 * for Ed25519. Any other key is not one of our CA keys. */
static int signing_md(const EVP_PKEY *key, const EVP_MD **md)
{
    char desc[128];
    ca_key_describe(key, desc, sizeof desc);
    switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_ED25519: *md = NULL; return 0;
    case EVP_PKEY_EC: {
        TSR_GUARD(ca_key_check_accepted(key));
        int bits = EVP_PKEY_get_bits(key);
        if (bits == 256) {
            *md = EVP_sha256();
            return 0;
        }
        if (bits == 384) {
            *md = EVP_sha384();
            return 0;
        }
        break;
    }
    default: break;
    }
    return TSR_FAIL(TSR_E_INPUT, "a CA key must be ECDSA P-256, P-384 or Ed25519, not %s", desc);
}

/* 128 random bits, top bit cleared (positive in DER without padding), never 0. */
static int set_random_serial(X509 *cert)
{
    unsigned char buf[SERIAL_BYTES];
    int nonzero = 0;
    do {
        TSR_GUARD_OSSL(RAND_bytes(buf, sizeof buf), TSR_E_INTERNAL, "random serial");
        buf[0] &= 0x7f;
        nonzero = 0;
        for (size_t i = 0; i < sizeof buf; i++) nonzero |= buf[i];
    } while (!nonzero);
    BIGNUM *bn = BN_bin2bn(buf, sizeof buf, NULL);
    TSR_ENSURE(bn != NULL, TSR_E_INTERNAL, "out of memory");
    ASN1_INTEGER *serial = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert));
    BN_free(bn);
    TSR_ENSURE(serial != NULL, TSR_E_INTERNAL, "set serial");
    return 0;
}

/* "O=Tessera, CN=<prefix> <td>"; CN is at most 64 bytes. */
static int ca_subject(const char *prefix, const char *td, X509_NAME **out)
{
    char cn[CN_MAX + 1];
    int n = snprintf(cn, sizeof cn, "%s %s", prefix, td);
    TSR_ENSURE(n > 0 && (size_t)n <= CN_MAX, TSR_E_INPUT,
               "trust domain \"%.64s\" is too long for the CA name \"%s <td>\" (at most %d "
               "bytes in all, so a trust domain of at most %zu bytes)",
               td, prefix, CN_MAX, (size_t)CN_MAX - strlen(prefix) - 1);
    X509_NAME *name = X509_NAME_new();
    TSR_ENSURE(name != NULL, TSR_E_INTERNAL, "out of memory");
    if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)"Tessera",
                                   -1, -1, 0) != 1 ||
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                   0) != 1) {
        X509_NAME_free(name);
        return TSR_FAIL_OSSL(TSR_E_INTERNAL, "build CA name");
    }
    *out = name;
    return 0;
}

/* Put an already encoded SubjectPublicKeyInfo (a CSR's, checked to be the
 * key's own by the CSR's self-signature) into the certificate as it is.
 * X509_set_pubkey would encode the EVP_PKEY and then decode it again
 * through OpenSSL 3.0's encoder and decoder machinery: on an issuance the
 * most expensive step after the signatures. Only for forms whose encoding
 * the decoder already pinned down exactly: EC on a named curve with an
 * uncompressed point (its length is checked against the curve) and keys
 * without parameters (Ed25519: exactly 32 bytes). RSA (whose decoder
 * tolerates trailing bytes in the BIT STRING), compressed points and
 * anything else: *copied false, nothing changed, and the caller re-encodes
 * the EVP_PKEY canonically. */
static int copy_spki(X509 *cert, const X509_PUBKEY *spki, bool *copied)
{
    *copied = false;
    ASN1_OBJECT *alg = NULL;
    const unsigned char *pk = NULL;
    int pklen = 0;
    X509_ALGOR *algor = NULL;
    TSR_GUARD_OSSL(X509_PUBKEY_get0_param(&alg, &pk, &pklen, &algor, spki), TSR_E_INTERNAL,
                   "read the CSR's public key");
    const ASN1_OBJECT *aobj = NULL;
    int ptype = V_ASN1_UNDEF;
    const void *pval = NULL;
    X509_ALGOR_get0(&aobj, &ptype, &pval, algor);
    int nid = OBJ_obj2nid(aobj);
    bool ec = nid == NID_X9_62_id_ecPublicKey && ptype == V_ASN1_OBJECT && pklen > 0 &&
              pk != NULL && pk[0] == 0x04;
    bool ed = nid == NID_ED25519 && ptype == V_ASN1_UNDEF && pklen == 32 && pk != NULL;
    if (!ec && !ed) return 0;
    ASN1_OBJECT *alg_copy = OBJ_dup(aobj);
    ASN1_OBJECT *param_copy = ec ? OBJ_dup(pval) : NULL;
    unsigned char *bits = OPENSSL_memdup(pk, (size_t)pklen);
    if (alg_copy == NULL || bits == NULL || (ec && param_copy == NULL) ||
        X509_PUBKEY_set0_param(X509_get_X509_PUBKEY(cert), alg_copy, ptype, param_copy, bits,
                               pklen) != 1) {
        /* set0_param takes nothing when it fails */
        ASN1_OBJECT_free(alg_copy);
        ASN1_OBJECT_free(param_copy);
        OPENSSL_free(bits);
        return TSR_FAIL_OSSL(TSR_E_INTERNAL, "copy the CSR's public key");
    }
    *copied = true;
    return 0;
}

/* Version 3, random serial, names, validity and public key (spki as
 * encoded when given, else public_key); no extensions. */
static int cert_skeleton(const X509_NAME *issuer_name, const X509_NAME *subject,
                         EVP_PKEY *public_key, const X509_PUBKEY *spki, int64_t not_before,
                         int64_t not_after, X509 **out)
{
    bool copied = false;
    int rc = -1;
    X509 *cert = X509_new();
    TSR_TRY_ENSURE(cert != NULL, TSR_E_INTERNAL, "out of memory");
    TSR_TRY_OSSL(X509_set_version(cert, X509_VERSION_3), TSR_E_INTERNAL, "set version");
    TSR_TRY(set_random_serial(cert));
    TSR_TRY_OSSL(X509_set_issuer_name(cert, issuer_name), TSR_E_INTERNAL, "set issuer");
    if (subject != NULL)
        TSR_TRY_OSSL(X509_set_subject_name(cert, subject), TSR_E_INTERNAL, "set subject");
    TSR_TRY_ENSURE(ASN1_TIME_set(X509_getm_notBefore(cert), (time_t)not_before) != NULL,
                   TSR_E_INTERNAL, "set notBefore");
    TSR_TRY_ENSURE(ASN1_TIME_set(X509_getm_notAfter(cert), (time_t)not_after) != NULL,
                   TSR_E_INTERNAL, "set notAfter");
    if (spki != NULL) TSR_TRY(copy_spki(cert, spki, &copied));
    if (!copied)
        TSR_TRY_OSSL(X509_set_pubkey(cert, public_key), TSR_E_INTERNAL, "set public key");
    *out = cert;
    cert = NULL;
    rc = 0;
out:
    X509_free(cert);
    return rc;
}

/* One extension from a fixed OpenSSL config string (never caller text). */
static int add_conf_ext(X509 *cert, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    TSR_ENSURE(ext != NULL, TSR_E_INTERNAL, "build extension %s", OBJ_nid2sn(nid));
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    TSR_ENSURE(ok == 1, TSR_E_INTERNAL, "add extension %s", OBJ_nid2sn(nid));
    return 0;
}

static int push_name(GENERAL_NAMES *names, int type, const void *data, size_t len)
{
    TSR_ENSURE(len <= INT32_MAX, TSR_E_INPUT, "name too long");
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_STRING *value = type == GEN_IPADD ? ASN1_OCTET_STRING_new() : ASN1_IA5STRING_new();
    if (gn == NULL || value == NULL || ASN1_STRING_set(value, data, (int)len) != 1) {
        GENERAL_NAME_free(gn);
        ASN1_STRING_free(value);
        return TSR_FAIL(TSR_E_INTERNAL, "out of memory");
    }
    GENERAL_NAME_set0_value(gn, type, value);
    if (sk_GENERAL_NAME_push(names, gn) <= 0) {
        GENERAL_NAME_free(gn);
        return TSR_FAIL(TSR_E_INTERNAL, "out of memory");
    }
    return 0;
}

static int parse_ip(const char *text, unsigned char buf[16], size_t *len)
{
    TSR_ENSURE(text != NULL && text[0] != '\0', TSR_E_INPUT, "empty IP address");
    TSR_ENSURE(strnlen(text, INET6_ADDRSTRLEN) < INET6_ADDRSTRLEN, TSR_E_INPUT,
               "IP address text too long");
    if (inet_pton(AF_INET, text, buf) == 1) {
        *len = 4;
        return 0;
    }
    if (inet_pton(AF_INET6, text, buf) == 1) {
        *len = 16;
        return 0;
    }
    return TSR_FAIL(TSR_E_INPUT, "\"%s\" is not an IPv4 or IPv6 address", text);
}

/* subjectAltName: the one URI, then DNS names and IP addresses. */
static int add_san(X509 *cert, const ca_leaf_request *req)
{
    int rc = -1;
    GENERAL_NAMES *names = GENERAL_NAMES_new();
    TSR_TRY_ENSURE(names != NULL, TSR_E_INTERNAL, "out of memory");
    TSR_TRY(push_name(names, GEN_URI, req->spiffe_id, strlen(req->spiffe_id)));
    for (size_t i = 0; i < req->n_dns_names; i++)
        TSR_TRY(push_name(names, GEN_DNS, req->dns_names[i], strlen(req->dns_names[i])));
    for (size_t i = 0; i < req->n_ip_addresses; i++) {
        unsigned char ip[16];
        size_t len = 0;
        TSR_TRY(parse_ip(req->ip_addresses[i], ip, &len));
        TSR_TRY(push_name(names, GEN_IPADD, ip, len));
    }
    /* The subject is empty, so the SAN extension is critical (RFC 5280 4.2.1.6). */
    TSR_TRY_OSSL(X509_add1_ext_i2d(cert, NID_subject_alt_name, names, 1, X509V3_ADD_DEFAULT),
                 TSR_E_INTERNAL, "add subjectAltName");
    rc = 0;
out:
    GENERAL_NAMES_free(names);
    return rc;
}

/* Sign with `signer_key`, then return a fresh parse of the DER after checking
 * the signature with `verify_key` (the issuer certificate's public key). */
static int sign_and_reparse(X509 *cert, EVP_PKEY *signer_key, EVP_PKEY *verify_key, X509 **out)
{
    const EVP_MD *md = NULL;
    TSR_GUARD(signing_md(signer_key, &md));
    if (X509_sign(cert, signer_key, md) <= 0)
        return TSR_FAIL_OSSL(TSR_E_INTERNAL, "sign certificate");
    unsigned char *der = NULL;
    int len = i2d_X509(cert, &der);
    TSR_ENSURE(len > 0, TSR_E_INTERNAL, "encode certificate");
    X509 *parsed = NULL;
    int rc = ca_cert_from_der(der, (size_t)len, &parsed);
    OPENSSL_free(der);
    TSR_GUARD(rc);
    if (X509_verify(parsed, verify_key) != 1) {
        X509_free(parsed);
        return TSR_FAIL_OSSL(TSR_E_INTERNAL, "issued certificate does not verify with the "
                                             "issuer's public key");
    }
    *out = parsed;
    return 0;
}

/* The TBSCertificate inside a certificate's DER: the first element of the
 * outer SEQUENCE, as encoded (tag and length included). */
static int tbs_of(const uint8_t *der, size_t len, const uint8_t **tbs, size_t *tbs_len)
{
    const unsigned char *p = der, *q;
    long n = 0, m = 0;
    int tag = 0, xclass = 0;
    int r = ASN1_get_object(&p, &n, &tag, &xclass, (long)len);
    TSR_ENSURE(!(r & 0x80) && tag == V_ASN1_SEQUENCE && (r & V_ASN1_CONSTRUCTED) &&
                   p + n == der + len,
               TSR_E_INTERNAL, "issued certificate: not one DER SEQUENCE");
    q = p;
    r = ASN1_get_object(&q, &m, &tag, &xclass, n);
    TSR_ENSURE(!(r & 0x80) && tag == V_ASN1_SEQUENCE && (r & V_ASN1_CONSTRUCTED) &&
                   q + m <= p + n,
               TSR_E_INTERNAL, "issued certificate: no TBSCertificate");
    *tbs = p;
    *tbs_len = (size_t)(q - p) + (size_t)m;
    return 0;
}

/* Sign, encode once, and check the signature with `verify_key` over the
 * TBSCertificate exactly as those bytes carry it, with the checks
 * X509_verify makes (both algorithm fields equal; the algorithm's digest and
 * key type are the ones signed with), but without encoding the certificate
 * again for it (see ca_leaf_request.unparsed). *der_out: the DER. */
static int sign_and_check(X509 *cert, EVP_PKEY *signer_key, const EVP_MD *md,
                          EVP_PKEY *verify_key, uint8_t **der_out, size_t *der_len)
{
    int rc = -1;
    unsigned char *der = NULL;
    EVP_MD_CTX *ctx = NULL;
    if (X509_sign(cert, signer_key, md) <= 0)
        return TSR_FAIL_OSSL(TSR_E_INTERNAL, "sign certificate");
    int len = i2d_X509(cert, &der);
    TSR_TRY_ENSURE(len > 0, TSR_E_INTERNAL, "encode certificate");
    const uint8_t *tbs = NULL;
    size_t tbs_len = 0;
    TSR_TRY(tbs_of(der, (size_t)len, &tbs, &tbs_len));
    const ASN1_BIT_STRING *sig = NULL;
    const X509_ALGOR *alg = NULL;
    X509_get0_signature(&sig, &alg, cert);
    int mdnid = NID_undef, pknid = NID_undef;
    TSR_TRY_ENSURE(sig != NULL && alg != NULL &&
                       X509_ALGOR_cmp(alg, X509_get0_tbs_sigalg(cert)) == 0 &&
                       OBJ_find_sigid_algs(OBJ_obj2nid(alg->algorithm), &mdnid, &pknid) == 1 &&
                       mdnid == (md != NULL ? EVP_MD_get_type(md) : NID_undef) &&
                       EVP_PKEY_is_a(verify_key, OBJ_nid2sn(pknid)),
                   TSR_E_INTERNAL, "issued certificate: unexpected signature algorithm");
    TSR_TRY_ENSURE((ctx = EVP_MD_CTX_new()) != NULL, TSR_E_INTERNAL, "out of memory");
    if (EVP_DigestVerifyInit(ctx, NULL, md, NULL, verify_key) != 1 ||
        EVP_DigestVerify(ctx, sig->data, (size_t)sig->length, tbs, tbs_len) != 1) {
        (void)TSR_FAIL_OSSL(TSR_E_INTERNAL, "issued certificate does not verify with the "
                                            "issuer's public key");
        goto out;
    }
    *der_out = der;
    *der_len = (size_t)len;
    der = NULL;
    rc = 0;
out:
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);
    return rc;
}

/* The issuer's name constraints (if any) must permit the leaf: never hand
 * out a certificate that a verifier would refuse. The check reads the
 * leaf's subject and subjectAltName only, so it runs on a probe made of
 * exactly those (same empty subject, same SAN extension by add_san), before
 * anything is signed: the constraints' verdict is the leaf's, without
 * decoding the whole certificate's extensions and hashing it afterwards. */
static int add_san(X509 *cert, const ca_leaf_request *req);
static int check_issuer_constraints(const struct ca_issuer_prep *prep, X509 *leaf,
                                    const char *spiffe_id);
static int check_constraints_probe(const struct ca_issuer_prep *prep, const ca_leaf_request *req)
{
    if (!prep->nc_bad && prep->nc == NULL) return 0;
    int rc = -1;
    X509 *probe = X509_new();
    X509_NAME *empty = X509_NAME_new();
    TSR_TRY_ENSURE(probe != NULL && empty != NULL, TSR_E_INTERNAL, "out of memory");
    TSR_TRY_OSSL(X509_set_version(probe, X509_VERSION_3), TSR_E_INTERNAL, "set version");
    TSR_TRY_OSSL(X509_set_subject_name(probe, empty), TSR_E_INTERNAL, "set subject");
    TSR_TRY(add_san(probe, req));
    TSR_TRY(check_issuer_constraints(prep, probe, req->spiffe_id));
    rc = 0;
out:
    X509_NAME_free(empty);
    X509_free(probe);
    return rc;
}

/* Issuer validity at `now`: usable, and its notAfter for clamping. */
static int issuer_window(const X509 *issuer, int64_t now, int64_t *issuer_not_after)
{
    int64_t nb = 0, na = 0;
    TSR_GUARD(ca_cert_validity(issuer, &nb, &na));
    TSR_ENSURE(na > now, TSR_E_STATE, "the signing CA certificate expired (notAfter %lld)",
               (long long)na);
    TSR_ENSURE(nb <= now, TSR_E_STATE, "the signing CA certificate is not valid yet "
                                       "(notBefore %lld)",
               (long long)nb);
    *issuer_not_after = na;
    return 0;
}

/* ---- issuers ------------------------------------------------------------ */

static void prep_free(struct ca_issuer_prep *prep)
{
    if (prep == NULL) return;
    EVP_MD_free(prep->sha1);
    X509_EXTENSION_free(prep->basic);
    X509_EXTENSION_free(prep->key_usage);
    X509_EXTENSION_free(prep->ext_key_usage);
    X509_EXTENSION_free(prep->aki);
    NAME_CONSTRAINTS_free(prep->nc);
    free(prep);
}

static int conf_ext(X509V3_CTX *ctx, int nid, const char *value, X509_EXTENSION **out)
{
    *out = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    TSR_ENSURE(*out != NULL, TSR_E_INTERNAL, "build extension %s", OBJ_nid2sn(nid));
    return 0;
}

/* Build issuer->prep (see struct ca_issuer_prep). */
static int issuer_prepare(ca_issuer *issuer, const EVP_MD *sign_md)
{
    int rc = -1, crit = -1;
    X509V3_CTX ctx;
    struct ca_issuer_prep *prep = calloc(1, sizeof *prep);
    TSR_TRY_ENSURE(prep != NULL, TSR_E_INTERNAL, "out of memory");
    prep->built_from = issuer->cert;
    prep->sign_md = sign_md;
    prep->sha1 = EVP_MD_fetch(NULL, SN_sha1, NULL);
    TSR_TRY_ENSURE(prep->sha1 != NULL, TSR_E_INTERNAL, "fetch SHA-1");
    /* The same context a leaf had, minus the leaf: none of these extensions
     * reads the subject certificate. */
    X509V3_set_ctx(&ctx, issuer->cert, NULL, NULL, NULL, 0);
    TSR_TRY(conf_ext(&ctx, NID_basic_constraints, "critical,CA:FALSE", &prep->basic));
    TSR_TRY(conf_ext(&ctx, NID_key_usage, "critical,digitalSignature", &prep->key_usage));
    TSR_TRY(conf_ext(&ctx, NID_ext_key_usage, "serverAuth,clientAuth", &prep->ext_key_usage));
    /* An issuer without a subject key identifier: no shared AKI, and each
     * leaf builds (and fails to build) it as before. */
    prep->aki = X509V3_EXT_conf_nid(NULL, &ctx, NID_authority_key_identifier, "keyid:always");
    prep->nc = X509_get_ext_d2i(issuer->cert, NID_name_constraints, &crit, NULL);
    prep->nc_bad = prep->nc == NULL && crit != -1;
    issuer->prep = prep;
    prep = NULL;
    rc = 0;
out:
    ERR_clear_error();
    prep_free(prep);
    return rc;
}

int ca_issuer_signing(const ca_issuer *issuer, const EVP_MD **md, const X509_EXTENSION **aki)
{
    TSR_ENSURE(issuer != NULL && issuer->prep != NULL && issuer->prep->built_from == issuer->cert,
               TSR_E_INPUT, "issuer not prepared by ca_issuer_new");
    *md = issuer->prep->sign_md;
    *aki = issuer->prep->aki;
    return 0;
}

int ca_issuer_new(X509 *cert, EVP_PKEY *key, ca_issuer **out)
{
    int rc = -1;
    ca_issuer *issuer = NULL;
    EVP_PKEY_CTX *pctx = NULL;
    const EVP_MD *md = NULL;
    TSR_TRY_ENSURE(cert != NULL && key != NULL, TSR_E_INPUT, "CA certificate or key missing");
    TSR_TRY_ENSURE(X509_check_ca(cert) == 1 &&
                       (X509_get_extension_flags(cert) & EXFLAG_KUSAGE) != 0 &&
                       (X509_get_key_usage(cert) & KU_KEY_CERT_SIGN) != 0,
                   TSR_E_INPUT,
                   "certificate is not a CA (needs basicConstraints CA:TRUE and keyUsage "
                   "keyCertSign)");
    TSR_TRY(signing_md(key, &md));
    TSR_TRY_OSSL(X509_check_private_key(cert, key), TSR_E_INPUT,
                 "the CA key does not belong to the CA certificate");
    pctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
    TSR_TRY_ENSURE(pctx != NULL, TSR_E_INTERNAL, "out of memory");
    TSR_TRY_OSSL(EVP_PKEY_pairwise_check(pctx), TSR_E_INPUT,
                 "the CA private key is inconsistent with its public key");
    issuer = calloc(1, sizeof *issuer);
    TSR_TRY_ENSURE(issuer != NULL, TSR_E_INTERNAL, "out of memory");
    issuer->cert = cert;
    issuer->key = key;
    cert = NULL;
    key = NULL;
    TSR_TRY(issuer_prepare(issuer, md));
    *out = issuer;
    issuer = NULL;
    rc = 0;
out:
    EVP_PKEY_CTX_free(pctx);
    X509_free(cert);
    EVP_PKEY_free(key);
    ca_issuer_free(issuer);
    return rc;
}

int ca_issuer_load(const char *cert_path, const char *key_path, ca_issuer **out)
{
    int rc = -1;
    STACK_OF(X509) *certs = NULL;
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    TSR_TRY(ca_certs_load_file(cert_path, &certs));
    TSR_TRY_ENSURE(sk_X509_num(certs) == 1, TSR_E_INPUT,
                   "%s: expected exactly one CA certificate, found %d", cert_path,
                   sk_X509_num(certs));
    cert = sk_X509_shift(certs);
    TSR_TRY(ca_key_load_file(key_path, &key));
    rc = ca_issuer_new(cert, key, out); /* takes ownership either way */
    cert = NULL;
    key = NULL;
    if (rc != 0)
        (void)TSR_FAIL(tsr_errcat(), "%s / %s: %s", cert_path, key_path, tsr_errmsg());
out:
    X509_free(cert);
    EVP_PKEY_free(key);
    sk_X509_pop_free(certs, X509_free);
    return rc;
}

void ca_issuer_free(ca_issuer *issuer)
{
    if (issuer == NULL) return;
    prep_free(issuer->prep);
    X509_free(issuer->cert);
    EVP_PKEY_free(issuer->key); /* OpenSSL clears private key material on free */
    free(issuer);
}

int ca_issuing_trust_domain(const X509 *cert, char *out, size_t cap)
{
    int rc = -1, crit = -1;
    NAME_CONSTRAINTS *nc = X509_get_ext_d2i(cert, NID_name_constraints, &crit, NULL);
    TSR_TRY_ENSURE(nc != NULL, TSR_E_INPUT,
                   crit == -1 ? "the CA certificate has no name constraints (not a Tessera "
                                "issuing CA)"
                              : "the CA certificate's name constraints do not parse");
    TSR_TRY_ENSURE(sk_GENERAL_SUBTREE_num(nc->permittedSubtrees) == 1 &&
                       sk_GENERAL_SUBTREE_num(nc->excludedSubtrees) <= 0,
                   TSR_E_INPUT, "the CA certificate is not constrained to one trust domain");
    const GENERAL_SUBTREE *sub = sk_GENERAL_SUBTREE_value(nc->permittedSubtrees, 0);
    TSR_TRY_ENSURE(sub->base != NULL && sub->base->type == GEN_URI, TSR_E_INPUT,
                   "the CA certificate's name constraint is not a URI trust domain");
    const ASN1_IA5STRING *uri = sub->base->d.uniformResourceIdentifier;
    int len = ASN1_STRING_length(uri);
    const unsigned char *data = ASN1_STRING_get0_data(uri);
    TSR_TRY_ENSURE(len > 0 && len <= CA_TRUST_DOMAIN_MAX && (size_t)len < cap, TSR_E_INPUT,
                   "the CA certificate's trust-domain constraint has a bad length");
    TSR_TRY_ENSURE(tsr_name_chars((const char *)data, (size_t)len), TSR_E_INPUT,
                   "the CA certificate's trust-domain constraint is not a trust domain");
    memcpy(out, data, (size_t)len);
    out[len] = '\0';
    rc = 0;
out:
    NAME_CONSTRAINTS_free(nc);
    return rc;
}

/* ---- root and issuing CA --------------------------------------------------- */

int ca_create_root(enum ca_key_type type, const char *trust_domain, int64_t ttl_seconds,
                   int64_t now, EVP_PKEY **key_out, X509 **cert_out)
{
    int rc = -1;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL, *done = NULL;
    X509_NAME *name = NULL;
    X509V3_CTX ctx;
    now = resolve_now(now);
    TSR_TRY(check_trust_domain(trust_domain));
    TSR_TRY(check_ttl(ttl_seconds));
    TSR_TRY(ca_subject("Tessera Root CA", trust_domain, &name));
    TSR_TRY(ca_key_generate(type, &key));
    TSR_TRY(cert_skeleton(name, name, key, NULL, now - BACKDATE_SECONDS, now + ttl_seconds, &cert));
    X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
    TSR_TRY_OSSL(X509V3_set_issuer_pkey(&ctx, key), TSR_E_INTERNAL, "extension context");
    TSR_TRY(add_conf_ext(cert, &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:1"));
    TSR_TRY(add_conf_ext(cert, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign"));
    TSR_TRY(add_conf_ext(cert, &ctx, NID_subject_key_identifier, "hash"));
    TSR_TRY(add_conf_ext(cert, &ctx, NID_authority_key_identifier, "keyid:always"));
    TSR_TRY(sign_and_reparse(cert, key, key, &done));
    *key_out = key;
    *cert_out = done;
    key = NULL;
    done = NULL;
    rc = 0;
out:
    X509_NAME_free(name);
    X509_free(cert);
    X509_free(done);
    EVP_PKEY_free(key);
    return rc;
}

int ca_create_issuing(const ca_issuer *root, enum ca_key_type type, const char *trust_domain,
                      int64_t ttl_seconds, int64_t now, EVP_PKEY **key_out, X509 **cert_out)
{
    int rc = -1;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL, *done = NULL;
    X509_NAME *name = NULL;
    X509V3_CTX ctx;
    char nc[32 + CA_TRUST_DOMAIN_MAX];
    int64_t root_not_after = 0;
    now = resolve_now(now);
    TSR_TRY_ENSURE(root != NULL && root->cert != NULL && root->key != NULL, TSR_E_INPUT,
                   "no root CA");
    TSR_TRY(check_trust_domain(trust_domain));
    TSR_TRY(check_ttl(ttl_seconds));
    TSR_TRY(issuer_window(root->cert, now, &root_not_after));
    TSR_TRY(ca_subject("Tessera Issuing CA", trust_domain, &name));
    TSR_TRY(ca_key_generate(type, &key));
    int64_t not_after = now + ttl_seconds;
    if (not_after > root_not_after) not_after = root_not_after;
    TSR_TRY(cert_skeleton(X509_get_subject_name(root->cert), name, key, NULL, now - BACKDATE_SECONDS,
                          not_after, &cert));
    X509V3_set_ctx(&ctx, root->cert, cert, NULL, NULL, 0);
    TSR_TRY(add_conf_ext(cert, &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0"));
    TSR_TRY(add_conf_ext(cert, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign"));
    TSR_TRY(add_conf_ext(cert, &ctx, NID_subject_key_identifier, "hash"));
    TSR_TRY(add_conf_ext(cert, &ctx, NID_authority_key_identifier, "keyid:always"));
    /* The trust domain passed check_trust_domain: [a-z0-9._-] only, so it
     * cannot break out of the config syntax. */
    snprintf(nc, sizeof nc, "critical,permitted;URI:%s", trust_domain);
    TSR_TRY(add_conf_ext(cert, &ctx, NID_name_constraints, nc));
    TSR_TRY(sign_and_reparse(cert, root->key, X509_get0_pubkey(root->cert), &done));
    *key_out = key;
    *cert_out = done;
    key = NULL;
    done = NULL;
    rc = 0;
out:
    X509_NAME_free(name);
    X509_free(cert);
    X509_free(done);
    EVP_PKEY_free(key);
    return rc;
}

/* ---- leaves ------------------------------------------------------------------ */

static int check_leaf_request(const ca_leaf_request *req)
{
    TSR_ENSURE(req != NULL, TSR_E_INPUT, "no leaf request");
    TSR_GUARD(check_spiffe_id(req->spiffe_id));
    TSR_GUARD(ca_key_check_accepted(req->public_key));
    TSR_GUARD(check_ttl(req->ttl_seconds));
    TSR_ENSURE(req->n_dns_names <= LEAF_MAX_DNS, TSR_E_LIMIT, "more than %d DNS names",
               LEAF_MAX_DNS);
    TSR_ENSURE(req->n_ip_addresses <= LEAF_MAX_IP, TSR_E_LIMIT, "more than %d IP addresses",
               LEAF_MAX_IP);
    TSR_ENSURE(req->n_dns_names == 0 || req->dns_names != NULL, TSR_E_INPUT, "no DNS names");
    TSR_ENSURE(req->n_ip_addresses == 0 || req->ip_addresses != NULL, TSR_E_INPUT,
               "no IP addresses");
    for (size_t i = 0; i < req->n_dns_names; i++) TSR_GUARD(check_dns_name(req->dns_names[i]));
    for (size_t i = 0; i < req->n_ip_addresses; i++) {
        unsigned char ip[16];
        size_t len = 0;
        TSR_GUARD(parse_ip(req->ip_addresses[i], ip, &len));
    }
    return 0;
}

/* The issuer's name constraints (if any) must permit the leaf: never hand
 * out a certificate that a verifier would refuse. */
static int check_issuer_constraints(const struct ca_issuer_prep *prep, X509 *leaf,
                                    const char *spiffe_id)
{
    TSR_ENSURE(!prep->nc_bad, TSR_E_INPUT, "the issuing CA's name constraints do not parse");
    if (prep->nc == NULL) return 0;
    (void)X509_get_extension_flags(leaf); /* populate the SAN cache the check reads */
    int result = NAME_CONSTRAINTS_check(leaf, prep->nc);
    ERR_clear_error();
    TSR_ENSURE(result == X509_V_OK, TSR_E_INPUT,
               "%s is outside the issuing CA's name constraints (%s)", spiffe_id,
               X509_verify_cert_error_string(result));
    return 0;
}

/* subjectKeyIdentifier as X509V3_EXT_conf "hash" makes it (RFC 5280
 * 4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING's value),
 * with the issuer's prefetched SHA-1 instead of a fetch per certificate. */
static int add_ski(X509 *cert, const EVP_MD *sha1)
{
    const unsigned char *pk = NULL;
    int pklen = 0;
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    TSR_GUARD_OSSL(X509_PUBKEY_get0_param(NULL, &pk, &pklen, NULL, X509_get_X509_PUBKEY(cert)),
                   TSR_E_INTERNAL, "read the certificate's public key");
    TSR_ENSURE(pk != NULL && pklen > 0, TSR_E_INTERNAL, "the certificate has no public key");
    TSR_GUARD_OSSL(EVP_Digest(pk, (size_t)pklen, digest, &dlen, sha1, NULL), TSR_E_INTERNAL,
                   "hash the public key");
    ASN1_OCTET_STRING *ski = ASN1_OCTET_STRING_new();
    TSR_ENSURE(ski != NULL, TSR_E_INTERNAL, "out of memory");
    int ok = ASN1_OCTET_STRING_set(ski, digest, (int)dlen) == 1 &&
             X509_add1_ext_i2d(cert, NID_subject_key_identifier, ski, 0, X509V3_ADD_DEFAULT) == 1;
    ASN1_OCTET_STRING_free(ski);
    TSR_ENSURE(ok, TSR_E_INTERNAL, "add subjectKeyIdentifier");
    return 0;
}

static int add_prepared_ext(X509 *cert, const X509_EXTENSION *ext)
{
    /* X509_add_ext copies it; the cast is for its pre-const prototype. */
    TSR_GUARD_OSSL(X509_add_ext(cert, (X509_EXTENSION *)(uintptr_t)ext, -1), TSR_E_INTERNAL,
                   "add extension");
    return 0;
}

int ca_issue_leaf(const ca_issuer *issuer, const ca_leaf_request *req, X509 **out)
{
    int rc = -1;
    X509 *cert = NULL, *done = NULL;
    uint8_t *der = NULL;
    size_t der_len = 0;
    X509_NAME *empty = NULL;
    X509V3_CTX ctx;
    int64_t issuer_not_after = 0;
    TSR_TRY_ENSURE(issuer != NULL && issuer->cert != NULL && issuer->key != NULL, TSR_E_INPUT,
                   "no issuing CA");
    const struct ca_issuer_prep *prep = issuer->prep;
    /* Fail closed on an issuer not built by ca_issuer_new or whose
     * certificate was replaced after it: never another CA's extensions. */
    TSR_TRY_ENSURE(prep != NULL && prep->built_from == issuer->cert, TSR_E_INTERNAL,
                   "the issuing CA was not prepared (use ca_issuer_new)");
    TSR_TRY(check_leaf_request(req));
    int64_t now = resolve_now(req->now);
    TSR_TRY(issuer_window(issuer->cert, now, &issuer_not_after));
    int64_t not_after = now + req->ttl_seconds;
    if (not_after > issuer_not_after) not_after = issuer_not_after;
    empty = X509_NAME_new();
    TSR_TRY_ENSURE(empty != NULL, TSR_E_INTERNAL, "out of memory");
    TSR_TRY(cert_skeleton(X509_get_subject_name(issuer->cert), empty, req->public_key, req->spki,
                          now - BACKDATE_SECONDS, not_after, &cert));
    /* The order and content of session 1's per-call X509V3_EXT_conf_nid. */
    TSR_TRY(add_prepared_ext(cert, prep->basic));
    TSR_TRY(add_prepared_ext(cert, prep->key_usage));
    TSR_TRY(add_prepared_ext(cert, prep->ext_key_usage));
    TSR_TRY(add_ski(cert, prep->sha1));
    if (prep->aki != NULL) {
        TSR_TRY(add_prepared_ext(cert, prep->aki));
    } else {
        X509V3_set_ctx(&ctx, issuer->cert, cert, NULL, NULL, 0);
        TSR_TRY(add_conf_ext(cert, &ctx, NID_authority_key_identifier, "keyid:always"));
    }
    TSR_TRY(add_san(cert, req));
    if (req->unparsed) {
        TSR_TRY(check_constraints_probe(prep, req));
        TSR_TRY(sign_and_check(cert, issuer->key, prep->sign_md, X509_get0_pubkey(issuer->cert),
                               &der, &der_len));
        done = cert;
        cert = NULL;
    } else {
        TSR_TRY(sign_and_reparse(cert, issuer->key, X509_get0_pubkey(issuer->cert), &done));
        TSR_TRY(check_issuer_constraints(prep, done, req->spiffe_id));
    }
    if (req->unparsed && req->der_out != NULL) {
        TSR_TRY_ENSURE(req->der_len != NULL, TSR_E_INPUT, "der_out without der_len");
        *req->der_out = der;
        *req->der_len = der_len;
        der = NULL;
    }
    *out = done;
    done = NULL;
    rc = 0;
out:
    OPENSSL_free(der);
    X509_NAME_free(empty);
    X509_free(cert);
    X509_free(done);
    return rc;
}
