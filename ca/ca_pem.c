#include "ca_pem.h"

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>

#include "tsr_fs.h"

static int is_space(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Find `needle` in [p, end); NULL if absent. */
static const uint8_t *find(const uint8_t *p, const uint8_t *end, const char *needle)
{
    size_t n = strlen(needle);
    while ((size_t)(end - p) >= n) {
        if (memcmp(p, needle, n) == 0) return p;
        p++;
    }
    return NULL;
}

static const char BEGIN_CERT[] = "-----BEGIN CERTIFICATE-----";
static const char END_CERT[] = "-----END CERTIFICATE-----";

int ca_certs_from_pem(const uint8_t *pem, size_t len, STACK_OF(X509) **out)
{
    int rc = -1;
    STACK_OF(X509) *certs = NULL;
    BIO *bio = NULL;
    X509 *cert = NULL;
    char *name = NULL, *header = NULL;
    unsigned char *der = NULL;
    long der_len = 0;

    TSR_ENSURE(pem != NULL && len > 0, TSR_E_INPUT, "empty PEM input");
    TSR_ENSURE(len <= CA_PEM_MAX_BYTES, TSR_E_LIMIT, "PEM input of %zu bytes exceeds %d", len,
               CA_PEM_MAX_BYTES);
    certs = sk_X509_new_null();
    TSR_TRY_ENSURE(certs != NULL, TSR_E_INTERNAL, "out of memory");

    const uint8_t *p = pem, *end = pem + len;
    for (;;) {
        while (p < end && is_space(*p)) p++;
        if (p == end) break;
        /* Only CERTIFICATE blocks, back to back; anything else is refused so a
         * private key or junk pasted into a bundle is never silently skipped. */
        TSR_TRY_ENSURE((size_t)(end - p) >= sizeof BEGIN_CERT - 1 &&
                           memcmp(p, BEGIN_CERT, sizeof BEGIN_CERT - 1) == 0,
                       TSR_E_INPUT, "PEM: expected a CERTIFICATE block at byte %zu",
                       (size_t)(p - pem));
        const uint8_t *body = p + sizeof BEGIN_CERT - 1;
        const uint8_t *stop = find(body, end, END_CERT);
        TSR_TRY_ENSURE(stop != NULL, TSR_E_INPUT, "PEM: truncated CERTIFICATE block");
        /* Between the markers only base64 and whitespace, never a '-': a
         * damaged END line ("-----END> CERTIFICATE-----") would otherwise make
         * this block run on to the next END, and OpenSSL's base64 decoder,
         * which stops at the first '-', would return the first certificate
         * and silently drop everything up to that END (the next one). */
        TSR_TRY_ENSURE(memchr(body, '-', (size_t)(stop - body)) == NULL, TSR_E_INPUT,
                       "PEM: malformed CERTIFICATE block at byte %zu", (size_t)(p - pem));
        stop += sizeof END_CERT - 1;
        TSR_TRY_ENSURE(sk_X509_num(certs) < CA_PEM_MAX_CERTS, TSR_E_LIMIT,
                       "PEM: more than %d certificates", CA_PEM_MAX_CERTS);
        bio = BIO_new_mem_buf(p, (int)(stop - p));
        TSR_TRY_ENSURE(bio != NULL, TSR_E_INTERNAL, "out of memory");
        /* The block's bytes, then the one DER reader (ca_cert_from_der:
         * bounded, consumed exactly), as for a certificate that comes as
         * DER: PEM_read_bio_X509 would ignore bytes after the certificate
         * inside the block. */
        TSR_TRY_ENSURE(PEM_read_bio(bio, &name, &header, &der, &der_len) == 1 &&
                           strcmp(name, "CERTIFICATE") == 0 && header[0] == '\0',
                       TSR_E_INPUT, "PEM: certificate %d does not parse", sk_X509_num(certs) + 1);
        TSR_TRY_ENSURE(BIO_pending(bio) == 0, TSR_E_INPUT,
                       "PEM: certificate %d: bytes left over in its block", sk_X509_num(certs) + 1);
        if (ca_cert_from_der(der, (size_t)der_len, &cert) != 0) {
            (void)TSR_FAIL(tsr_errcat(), "PEM: certificate %d: %s", sk_X509_num(certs) + 1,
                           tsr_errmsg());
            goto out;
        }
        BIO_free(bio);
        bio = NULL;
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_free(der);
        name = header = NULL;
        der = NULL;
        TSR_TRY_ENSURE(sk_X509_push(certs, cert) > 0, TSR_E_INTERNAL, "out of memory");
        cert = NULL;
        p = stop;
    }
    TSR_TRY_ENSURE(sk_X509_num(certs) > 0, TSR_E_INPUT, "PEM: no certificate found");
    *out = certs;
    certs = NULL;
    rc = 0;
out:
    ERR_clear_error();
    BIO_free(bio);
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(der);
    X509_free(cert);
    sk_X509_pop_free(certs, X509_free);
    return rc;
}

int ca_certs_load_file(const char *path, STACK_OF(X509) **out)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    TSR_GUARD(tsr_read_file(path, CA_PEM_MAX_BYTES, &buf, &len));
    int rc = ca_certs_from_pem(buf, len, out);
    free(buf);
    if (rc != 0) return TSR_FAIL(tsr_errcat(), "%s: %s", path, tsr_errmsg());
    return 0;
}

int ca_key_from_pem(const uint8_t *pem, size_t len, EVP_PKEY **out)
{
    TSR_ENSURE(pem != NULL && len > 0 && len <= 64 * 1024, TSR_E_INPUT, "bad key PEM size");
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    TSR_ENSURE(bio != NULL, TSR_E_INTERNAL, "out of memory");
    /* An empty passphrase: an encrypted key fails instead of prompting. */
    static char no_passphrase[] = "";
    EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, NULL, no_passphrase);
    BIO_free(bio);
    if (key == NULL) return TSR_FAIL_OSSL(TSR_E_INPUT, "private key does not parse");
    *out = key;
    return 0;
}

int ca_key_load_file(const char *path, EVP_PKEY **out)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    TSR_GUARD(tsr_read_file(path, 64 * 1024, &buf, &len));
    int rc = ca_key_from_pem(buf, len, out);
    ca_secret_free(buf, len);
    if (rc != 0) return TSR_FAIL(tsr_errcat(), "%s: %s", path, tsr_errmsg());
    return 0;
}

/* Copy a memory BIO into a fresh NUL-terminated buffer. */
static int bio_to_buffer(BIO *bio, char **out, size_t *len)
{
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    TSR_ENSURE(n > 0, TSR_E_INTERNAL, "empty PEM output");
    char *copy = malloc((size_t)n + 1);
    TSR_ENSURE(copy != NULL, TSR_E_INTERNAL, "out of memory");
    memcpy(copy, data, (size_t)n);
    copy[n] = '\0';
    *out = copy;
    *len = (size_t)n;
    return 0;
}

int ca_cert_to_pem(X509 *cert, char **out, size_t *len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    TSR_ENSURE(bio != NULL, TSR_E_INTERNAL, "out of memory");
    int rc = -1;
    TSR_TRY_OSSL(PEM_write_bio_X509(bio, cert), TSR_E_INTERNAL, "PEM encode certificate");
    TSR_TRY(bio_to_buffer(bio, out, len));
    rc = 0;
out:
    BIO_free(bio);
    return rc;
}

int ca_cert_der_to_pem(const uint8_t *der, size_t der_len, char **out, size_t *len)
{
    static const char head[] = "-----BEGIN CERTIFICATE-----\n";
    static const char tail[] = "-----END CERTIFICATE-----\n";
    TSR_ENSURE(der != NULL && der_len > 0 && der_len <= CA_CERT_MAX_DER, TSR_E_INPUT,
               "bad certificate DER size");
    /* PEM_write_bio's layout: base64 in lines of 64 characters (48 bytes). */
    size_t lines = (der_len + 47) / 48;
    size_t cap = sizeof head - 1 + (der_len + 2) / 3 * 4 + lines + sizeof tail;
    char *pem = malloc(cap);
    TSR_ENSURE(pem != NULL, TSR_E_INTERNAL, "out of memory");
    size_t o = 0;
    memcpy(pem, head, sizeof head - 1);
    o += sizeof head - 1;
    for (size_t i = 0; i < der_len; i += 48) {
        size_t n = der_len - i < 48 ? der_len - i : 48;
        o += (size_t)EVP_EncodeBlock((unsigned char *)pem + o, der + i, (int)n);
        pem[o++] = '\n';
    }
    memcpy(pem + o, tail, sizeof tail);   /* with its NUL */
    o += sizeof tail - 1;
    TSR_ASSERT(o < cap);
    *out = pem;
    *len = o;
    return 0;
}

int ca_certs_to_pem(STACK_OF(X509) *certs, char **out, size_t *len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    TSR_ENSURE(bio != NULL, TSR_E_INTERNAL, "out of memory");
    int rc = -1;
    for (int i = 0; i < sk_X509_num(certs); i++)
        TSR_TRY_OSSL(PEM_write_bio_X509(bio, sk_X509_value(certs, i)), TSR_E_INTERNAL,
                     "PEM encode certificate");
    TSR_TRY(bio_to_buffer(bio, out, len));
    rc = 0;
out:
    BIO_free(bio);
    return rc;
}

int ca_key_to_pem(EVP_PKEY *key, char **out, size_t *len)
{
    BIO *bio = BIO_new(BIO_s_secmem());
    TSR_ENSURE(bio != NULL, TSR_E_INTERNAL, "out of memory");
    int rc = -1;
    TSR_TRY_OSSL(PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL), TSR_E_INTERNAL,
                 "PEM encode private key");
    TSR_TRY(bio_to_buffer(bio, out, len));
    rc = 0;
out:
    BIO_free(bio); /* secure-heap BIO: cleansed on free */
    return rc;
}

void ca_secret_free(void *buf, size_t len)
{
    if (buf == NULL) return;
    OPENSSL_cleanse(buf, len);
    free(buf);
}

int ca_cert_from_der(const uint8_t *der, size_t len, X509 **out)
{
    TSR_ENSURE(der != NULL && len > 0, TSR_E_INPUT, "empty certificate");
    TSR_ENSURE(len <= CA_CERT_MAX_DER, TSR_E_LIMIT, "certificate of %zu bytes exceeds %d", len,
               CA_CERT_MAX_DER);
    const unsigned char *p = der;
    X509 *cert = d2i_X509(NULL, &p, (long)len);
    if (cert == NULL) return TSR_FAIL_OSSL(TSR_E_INPUT, "certificate DER does not parse");
    if (p != der + len) {
        X509_free(cert);
        return TSR_FAIL(TSR_E_INPUT, "trailing bytes after certificate DER");
    }
    *out = cert;
    return 0;
}

int ca_cert_serial_hex(const X509 *cert, char out[41])
{
    const ASN1_INTEGER *serial = X509_get0_serialNumber(cert);
    BIGNUM *bn = ASN1_INTEGER_to_BN(serial, NULL);
    TSR_ENSURE(bn != NULL, TSR_E_INPUT, "certificate serial does not parse");
    int rc = -1;
    char *hex = NULL;
    TSR_TRY_ENSURE(!BN_is_negative(bn) && !BN_is_zero(bn), TSR_E_INPUT,
                   "certificate serial is not positive");
    hex = BN_bn2hex(bn);
    TSR_TRY_ENSURE(hex != NULL, TSR_E_INTERNAL, "out of memory");
    size_t n = strlen(hex);
    TSR_TRY_ENSURE(n <= 40, TSR_E_INPUT, "certificate serial longer than 20 bytes");
    for (size_t i = 0; i <= n; i++)
        out[i] = (hex[i] >= 'A' && hex[i] <= 'F') ? (char)(hex[i] - 'A' + 'a') : hex[i];
    rc = 0;
out:
    OPENSSL_free(hex);
    BN_free(bn);
    return rc;
}

int ca_cert_fingerprint(const X509 *cert, char out[96])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    TSR_GUARD_OSSL(X509_digest(cert, EVP_sha256(), md, &n), TSR_E_INTERNAL, "digest");
    static const char hexdigits[] = "0123456789abcdef";
    for (unsigned int i = 0; i < n; i++) {
        out[i * 3] = hexdigits[md[i] >> 4];
        out[i * 3 + 1] = hexdigits[md[i] & 15];
        out[i * 3 + 2] = (i + 1 < n) ? ':' : '\0';
    }
    return 0;
}

static int asn1_time_to_unix(const ASN1_TIME *t, int64_t *out)
{
    struct tm tm;
    TSR_GUARD_OSSL(ASN1_TIME_to_tm(t, &tm), TSR_E_INPUT, "certificate time does not parse");
    *out = (int64_t)timegm(&tm);
    return 0;
}

int ca_cert_validity(const X509 *cert, int64_t *not_before, int64_t *not_after)
{
    TSR_GUARD(asn1_time_to_unix(X509_get0_notBefore(cert), not_before));
    TSR_GUARD(asn1_time_to_unix(X509_get0_notAfter(cert), not_after));
    return 0;
}
