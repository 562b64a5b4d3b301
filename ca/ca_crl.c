/* CRL construction (RFC 5280 §5). See ca_crl.h for the profile. */
#include "ca_crl.h"

#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct {
    int code;
    const char *name;
} reasons[] = {
    {CA_CRL_KEY_COMPROMISE, "keyCompromise"},
    {CA_CRL_CA_COMPROMISE, "cACompromise"},
    {CA_CRL_AFFILIATION_CHANGED, "affiliationChanged"},
    {CA_CRL_SUPERSEDED, "superseded"},
    {CA_CRL_CESSATION_OF_OPERATION, "cessationOfOperation"},
    {CA_CRL_PRIVILEGE_WITHDRAWN, "privilegeWithdrawn"},
    {CA_CRL_AA_COMPROMISE, "aACompromise"},
};

/* Lowercase letters and digits of `in` only, at most cap-1 of them. */
static void fold(const char *in, char *out, size_t cap)
{
    size_t n = 0;
    for (; *in != '\0' && n + 1 < cap; in++) {
        char c = *in;
        if (c == '_' || c == '-' || c == ' ') continue;
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        out[n++] = c;
    }
    out[n] = '\0';
}

int ca_crl_reason_from_text(const char *text)
{
    if (text == NULL || strlen(text) > 64) return CA_CRL_REASON_NONE;
    char a[65], b[65];
    fold(text, a, sizeof a);
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++) {
        fold(reasons[i].name, b, sizeof b);
        if (strcmp(a, b) == 0) return reasons[i].code;
    }
    return CA_CRL_REASON_NONE;
}

const char *ca_crl_reason_name(int reason)
{
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
        if (reasons[i].code == reason) return reasons[i].name;
    return "none";
}

static bool reason_known(int reason)
{
    return reason == CA_CRL_REASON_NONE || strcmp(ca_crl_reason_name(reason), "none") != 0;
}

/* The serial without leading zeros, lowercase, into out[41]. */
static int normalize_serial(const char *in, char out[41])
{
    size_t n = strnlen(in, 41);   /* the field holds 40 + NUL */
    TSR_ENSURE(n >= 1 && n <= 40, TSR_E_INPUT, "CRL entry: serial must be 1..40 hex digits");
    while (n > 1 && *in == '0') {
        in++;
        n--;
    }
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (c >= 'A' && c <= 'F') c = (char)(c - 'A' + 'a');
        TSR_ENSURE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'), TSR_E_INPUT,
                   "CRL entry: serial must be 1..40 hex digits");
        out[i] = c;
    }
    out[n] = '\0';
    TSR_ENSURE(strcmp(out, "0") != 0, TSR_E_INPUT, "CRL entry: serial must be positive");
    return 0;
}

/* Numeric order of normalized hex: shorter is smaller, then lexical. */
static int serial_cmp(const void *a, const void *b)
{
    const ca_crl_entry *x = a, *y = b;
    size_t lx = strlen(x->serial_hex), ly = strlen(y->serial_hex);
    if (lx != ly) return lx < ly ? -1 : 1;
    return strcmp(x->serial_hex, y->serial_hex);
}

static int set_time(X509_CRL *crl, int64_t t, bool next)
{
    ASN1_TIME *at = ASN1_TIME_set(NULL, (time_t)t);
    TSR_ENSURE(at != NULL, TSR_E_INTERNAL, "ASN1_TIME_set");
    int ok = next ? X509_CRL_set1_nextUpdate(crl, at) : X509_CRL_set1_lastUpdate(crl, at);
    ASN1_TIME_free(at);
    TSR_ENSURE(ok == 1, TSR_E_INTERNAL, "set CRL %s", next ? "nextUpdate" : "thisUpdate");
    return 0;
}

static int add_entry(X509_CRL *crl, const ca_crl_entry *e)
{
    int rc = -1;
    BIGNUM *bn = NULL;
    ASN1_INTEGER *serial = NULL;
    ASN1_TIME *when = NULL;
    ASN1_ENUMERATED *reason = NULL;
    X509_REVOKED *rev = X509_REVOKED_new();
    TSR_TRY_ENSURE(rev != NULL, TSR_E_INTERNAL, "out of memory");
    TSR_TRY_ENSURE(BN_hex2bn(&bn, e->serial_hex) == (int)strlen(e->serial_hex), TSR_E_INPUT,
                   "CRL entry: bad serial");
    TSR_TRY_ENSURE((serial = BN_to_ASN1_INTEGER(bn, NULL)) != NULL, TSR_E_INTERNAL,
                   "BN_to_ASN1_INTEGER");
    TSR_TRY_OSSL(X509_REVOKED_set_serialNumber(rev, serial), TSR_E_INTERNAL, "set serial");
    TSR_TRY_ENSURE((when = ASN1_TIME_set(NULL, (time_t)e->revoked_at)) != NULL, TSR_E_INTERNAL,
                   "ASN1_TIME_set");
    TSR_TRY_OSSL(X509_REVOKED_set_revocationDate(rev, when), TSR_E_INTERNAL,
                 "set revocationDate");
    if (e->reason != CA_CRL_REASON_NONE) {
        TSR_TRY_ENSURE((reason = ASN1_ENUMERATED_new()) != NULL, TSR_E_INTERNAL, "out of memory");
        TSR_TRY_OSSL(ASN1_ENUMERATED_set(reason, e->reason), TSR_E_INTERNAL, "reasonCode");
        TSR_TRY_OSSL(X509_REVOKED_add1_ext_i2d(rev, NID_crl_reason, reason, 0, 0),
                     TSR_E_INTERNAL, "add reasonCode");
    }
    TSR_TRY_OSSL(X509_CRL_add0_revoked(crl, rev), TSR_E_INTERNAL, "add CRL entry");
    rev = NULL;
    rc = 0;
out:
    X509_REVOKED_free(rev);
    ASN1_ENUMERATED_free(reason);
    ASN1_TIME_free(when);
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    return rc;
}

/* Validate, normalize, sort and de-duplicate the input. */
static int check_input(const ca_issuer *issuer, ca_crl_entry *entries, size_t n,
                       const ca_crl_params *params, const EVP_MD **md,
                       const X509_EXTENSION **aki)
{
    TSR_ENSURE(issuer != NULL && issuer->cert != NULL && issuer->key != NULL, TSR_E_INPUT,
               "CRL: no issuer");
    TSR_ENSURE(n == 0 || entries != NULL, TSR_E_INPUT, "CRL: no entries");
    TSR_ENSURE(n <= CA_CRL_MAX_ENTRIES, TSR_E_LIMIT, "CRL: more than %d entries",
               CA_CRL_MAX_ENTRIES);
    TSR_ENSURE(params != NULL && params->number > 0 && params->this_update > 0 &&
                   params->next_update > params->this_update,
               TSR_E_INPUT, "CRL: number > 0 and 0 < thisUpdate < nextUpdate required");
    TSR_ENSURE(X509_get0_subject_key_id(issuer->cert) != NULL, TSR_E_INPUT,
               "CRL: the issuing CA has no subject key identifier");
    for (size_t i = 0; i < n; i++) {
        char norm[41];
        TSR_GUARD(normalize_serial(entries[i].serial_hex, norm));
        memcpy(entries[i].serial_hex, norm, sizeof norm);
        TSR_ENSURE(entries[i].revoked_at > 0, TSR_E_INPUT,
                   "CRL entry %s: revocation date must be > 0", norm);
        TSR_ENSURE(reason_known(entries[i].reason), TSR_E_INPUT,
                   "CRL entry %s: unknown reason %d", norm, entries[i].reason);
    }
    if (n > 1) qsort(entries, n, sizeof *entries, serial_cmp);
    for (size_t i = 1; i < n; i++)
        TSR_ENSURE(strcmp(entries[i - 1].serial_hex, entries[i].serial_hex) != 0, TSR_E_INPUT,
                   "CRL: serial %s listed twice", entries[i].serial_hex);
    TSR_GUARD(ca_issuer_signing(issuer, md, aki));
    TSR_ENSURE(*aki != NULL, TSR_E_INPUT, "CRL: no authorityKeyIdentifier for the issuing CA");

    return 0;
}

int ca_crl_build(const ca_issuer *issuer, ca_crl_entry *entries, size_t n,
                 const ca_crl_params *params, X509_CRL **out)
{
    int rc = -1;
    X509_CRL *crl = NULL;
    const X509_EXTENSION *aki = NULL;
    ASN1_INTEGER *number = NULL;
    const EVP_MD *md = NULL;

    *out = NULL;
    TSR_TRY(check_input(issuer, entries, n, params, &md, &aki));
    TSR_TRY_ENSURE((crl = X509_CRL_new()) != NULL, TSR_E_INTERNAL, "out of memory");
    TSR_TRY_OSSL(X509_CRL_set_version(crl, X509_CRL_VERSION_2), TSR_E_INTERNAL, "CRL version");
    TSR_TRY_OSSL(X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuer->cert)),
                 TSR_E_INTERNAL, "CRL issuer");
    TSR_TRY(set_time(crl, params->this_update, false));
    TSR_TRY(set_time(crl, params->next_update, true));

    /* X509_CRL_add_ext copies it; the cast is for its pre-const prototype. */
    TSR_TRY_OSSL(X509_CRL_add_ext(crl, (X509_EXTENSION *)(uintptr_t)aki, -1), TSR_E_INTERNAL,
                 "add authorityKeyIdentifier");
    TSR_TRY_ENSURE((number = ASN1_INTEGER_new()) != NULL, TSR_E_INTERNAL, "out of memory");
    TSR_TRY_OSSL(ASN1_INTEGER_set_uint64(number, params->number), TSR_E_INTERNAL, "cRLNumber");
    TSR_TRY_OSSL(X509_CRL_add1_ext_i2d(crl, NID_crl_number, number, 0, 0), TSR_E_INTERNAL,
                 "add cRLNumber");
    for (size_t i = 0; i < n; i++) TSR_TRY(add_entry(crl, &entries[i]));
    /* Already in order; X509_CRL_sort also fixes the encoding order. */
    TSR_TRY_OSSL(X509_CRL_sort(crl), TSR_E_INTERNAL, "sort CRL");
    TSR_TRY_ENSURE(X509_CRL_sign(crl, issuer->key, md) > 0, TSR_E_INTERNAL, "sign CRL");
    *out = crl;
    crl = NULL;
    rc = 0;
out:
    ASN1_INTEGER_free(number);
    X509_CRL_free(crl);
    return rc;
}

int ca_crl_to_pem(X509_CRL *crl, char **out, size_t *len)
{
    int rc = -1;
    char *buf = NULL;
    BIO *bio = BIO_new(BIO_s_mem());
    TSR_ENSURE(bio != NULL, TSR_E_INTERNAL, "out of memory");
    TSR_TRY_OSSL(PEM_write_bio_X509_CRL(bio, crl), TSR_E_INTERNAL, "PEM encode CRL");
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    TSR_TRY_ENSURE(n > 0 && data != NULL, TSR_E_INTERNAL, "PEM encode CRL");
    TSR_TRY_ENSURE((buf = malloc((size_t)n + 1)) != NULL, TSR_E_INTERNAL, "out of memory");
    memcpy(buf, data, (size_t)n);
    buf[n] = '\0';
    *out = buf;
    *len = (size_t)n;
    buf = NULL;
    rc = 0;
out:
    free(buf);
    BIO_free(bio);
    return rc;
}
