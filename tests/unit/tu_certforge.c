#include "tu_certforge.h"

#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void spec_base(tu_cert_spec *spec)
{
    memset(spec, 0, sizeof *spec);
    spec->san_critical = -1;
    spec->ski = 1;
}

void tu_spec_root(tu_cert_spec *spec, int64_t now)
{
    spec_base(spec);
    spec->cn = "Tessera Test Root CA";
    spec->not_before = now - 3600;
    spec->not_after = now + 365 * 86400;
    spec->basic_constraints = "critical,CA:TRUE,pathlen:1";
    spec->key_usage = "critical,keyCertSign,cRLSign";
}

void tu_spec_issuing(tu_cert_spec *spec, int64_t now, const char *trust_domain)
{
    spec_base(spec);
    spec->cn = "Tessera Test Issuing CA";
    spec->not_before = now - 3600;
    spec->not_after = now + 30 * 86400;
    spec->basic_constraints = "critical,CA:TRUE,pathlen:0";
    spec->key_usage = "critical,keyCertSign,cRLSign";
    snprintf(spec->nc_buf, sizeof spec->nc_buf, "critical,permitted;URI:%s", trust_domain);
    spec->name_constraints = spec->nc_buf;
    spec->aki = 1;
}

void tu_spec_leaf(tu_cert_spec *spec, int64_t now, const char *uri)
{
    spec_base(spec);
    spec->cn = NULL; /* empty subject: the SAN extension is critical */
    spec->not_before = now - 60;
    spec->not_after = now + 3600;
    spec->basic_constraints = "critical,CA:FALSE";
    spec->key_usage = "critical,digitalSignature";
    spec->ext_key_usage = "serverAuth,clientAuth";
    spec->aki = 1;
    if (uri != NULL) tu_spec_add_san(spec, GEN_URI, uri, 0);
}

void tu_spec_add_san(tu_cert_spec *spec, int type, const char *value, size_t len)
{
    if (spec->n_sans >= TU_MAX_SANS) {
        fprintf(stderr, "tu_spec_add_san: more than %d SANs\n", TU_MAX_SANS);
        abort();
    }
    spec->sans[spec->n_sans].type = type;
    spec->sans[spec->n_sans].value = value;
    spec->sans[spec->n_sans].len = len;
    spec->n_sans++;
}

EVP_PKEY *tu_key_new(void)
{
    return EVP_EC_gen("P-256");
}

static int add_conf_ext(X509 *cert, X509V3_CTX *ctx, int nid, const char *value)
{
    if (value == NULL) return 1;
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, ctx, nid, value);
    if (ext == NULL) {
        fprintf(stderr, "tu_forge: bad extension value \"%s\"\n", value);
        return 0;
    }
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

static GENERAL_NAME *make_san(const tu_san *san)
{
    GENERAL_NAME *gen = GENERAL_NAME_new();
    if (gen == NULL) return NULL;
    if (san->type == GEN_IPADD) {
        ASN1_OCTET_STRING *ip = a2i_IPADDRESS(san->value);
        if (ip == NULL) goto fail;
        GENERAL_NAME_set0_value(gen, GEN_IPADD, ip);
        return gen;
    }
    ASN1_IA5STRING *s = ASN1_IA5STRING_new();
    size_t len = san->len != 0 ? san->len : strlen(san->value);
    if (s == NULL || ASN1_STRING_set(s, san->value, (int)len) != 1) {
        ASN1_IA5STRING_free(s);
        goto fail;
    }
    GENERAL_NAME_set0_value(gen, san->type, s);
    return gen;
fail:
    GENERAL_NAME_free(gen);
    return NULL;
}

static int add_sans(X509 *cert, const tu_cert_spec *spec)
{
    if (spec->n_sans == 0) return 1;
    int ok = 0;
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    if (gens == NULL) return 0;
    for (size_t i = 0; i < spec->n_sans; i++) {
        GENERAL_NAME *gen = make_san(&spec->sans[i]);
        if (gen == NULL || sk_GENERAL_NAME_push(gens, gen) <= 0) {
            GENERAL_NAME_free(gen);
            goto out;
        }
    }
    int crit = spec->san_critical >= 0 ? spec->san_critical : (spec->cn == NULL);
    ok = X509_add1_ext_i2d(cert, NID_subject_alt_name, gens, crit, X509V3_ADD_DEFAULT) == 1;
    if (ok && spec->extra_san_ext_uri != NULL) {
        GENERAL_NAMES_free(gens);
        gens = sk_GENERAL_NAME_new_null();
        tu_san extra = {GEN_URI, spec->extra_san_ext_uri, 0};
        GENERAL_NAME *gen = gens != NULL ? make_san(&extra) : NULL;
        ok = gen != NULL && sk_GENERAL_NAME_push(gens, gen) > 0;
        if (!ok) GENERAL_NAME_free(gen);
        /* APPEND: a duplicate extension, which X509V3_ADD_DEFAULT would refuse */
        ok =
            ok && X509_add1_ext_i2d(cert, NID_subject_alt_name, gens, crit, X509V3_ADD_APPEND) == 1;
    }
out:
    GENERAL_NAMES_free(gens);
    return ok;
}

static int set_serial(X509 *cert)
{
    unsigned char b[8];
    if (RAND_bytes(b, sizeof b) != 1) return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < sizeof b; i++) v = (v << 8) | b[i];
    v = (v >> 1) | 1; /* positive, non-zero */
    return ASN1_INTEGER_set_uint64(X509_get_serialNumber(cert), v) == 1;
}

X509 *tu_forge(const tu_cert_spec *spec, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key)
{
    X509 *cert = X509_new();
    X509_NAME *subject = X509_NAME_new();
    if (cert == NULL || subject == NULL) goto fail;
    if (spec->cn != NULL &&
        X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8, (const unsigned char *)spec->cn,
                                   -1, -1, 0) != 1)
        goto fail;
    if (X509_set_version(cert, X509_VERSION_3) != 1 || !set_serial(cert) ||
        X509_set_subject_name(cert, subject) != 1 ||
        X509_set_issuer_name(cert, issuer != NULL ? X509_get_subject_name(issuer) : subject) != 1 ||
        ASN1_TIME_set(X509_getm_notBefore(cert), (time_t)spec->not_before) == NULL ||
        ASN1_TIME_set(X509_getm_notAfter(cert), (time_t)spec->not_after) == NULL ||
        X509_set_pubkey(cert, key) != 1)
        goto fail;

    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer != NULL ? issuer : cert, cert, NULL, NULL, 0);
    if (!add_conf_ext(cert, &ctx, NID_basic_constraints, spec->basic_constraints) ||
        !add_conf_ext(cert, &ctx, NID_key_usage, spec->key_usage) ||
        !add_conf_ext(cert, &ctx, NID_ext_key_usage, spec->ext_key_usage) ||
        !add_conf_ext(cert, &ctx, NID_name_constraints, spec->name_constraints) ||
        !add_conf_ext(cert, &ctx, NID_subject_key_identifier, spec->ski ? "hash" : NULL) ||
        !add_conf_ext(cert, &ctx, NID_authority_key_identifier,
                      spec->aki ? "keyid:always" : NULL) ||
        !add_sans(cert, spec))
        goto fail;
    if (X509_sign(cert, issuer != NULL ? issuer_key : key, EVP_sha256()) <= 0) goto fail;
    X509_NAME_free(subject);
    return cert;
fail:
    X509_NAME_free(subject);
    X509_free(cert);
    return NULL;
}

char *tu_pem_of(X509 *const *certs, size_t n, size_t *len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *out = NULL;
    if (bio == NULL) return NULL;
    for (size_t i = 0; i < n; i++)
        if (PEM_write_bio_X509(bio, certs[i]) != 1) goto done;
    char *data = NULL;
    long dlen = BIO_get_mem_data(bio, &data);
    if (dlen <= 0) goto done;
    out = malloc((size_t)dlen + 1);
    if (out == NULL) goto done;
    memcpy(out, data, (size_t)dlen);
    out[dlen] = '\0';
    if (len != NULL) *len = (size_t)dlen;
done:
    BIO_free(bio);
    return out;
}
