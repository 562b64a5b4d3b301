#include "tu_drv.h"
#include "tu_fs.h"

#include <errno.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tu_certforge.h"

static char *key_pem_of(EVP_PKEY *key, size_t *len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *out = NULL, *data = NULL;
    if (bio == NULL) return NULL;
    if (PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) == 1) {
        long n = BIO_get_mem_data(bio, &data);
        out = n > 0 ? malloc((size_t)n + 1) : NULL;
        if (out != NULL) {
            memcpy(out, data, (size_t)n);
            out[n] = '\0';
            *len = (size_t)n;
        }
    }
    BIO_free(bio);
    return out;
}

int tu_ident_make(tu_ident *out, const char *uri)
{
    int rc = -1;
    tu_cert_spec spec;
    int64_t now = (int64_t)time(NULL);
    EVP_PKEY *rk = tu_key_new(), *lk = tu_key_new();
    X509 *root = NULL, *leaf = NULL;
    memset(out, 0, sizeof *out);
    if (rk == NULL || lk == NULL) goto done;
    tu_spec_root(&spec, now);
    root = tu_forge(&spec, rk, NULL, NULL);
    tu_spec_leaf(&spec, now, uri);
    leaf = root != NULL ? tu_forge(&spec, lk, root, rk) : NULL;
    if (leaf == NULL) goto done;
    X509 *chain[2] = {leaf, root};
    out->cert = tu_pem_of(chain, 2, &out->cert_len);
    out->bundle = tu_pem_of(&root, 1, &out->bundle_len);
    out->key = key_pem_of(lk, &out->key_len);
    if (out->cert != NULL && out->bundle != NULL && out->key != NULL) rc = 0;
done:
    X509_free(root);
    X509_free(leaf);
    EVP_PKEY_free(rk);
    EVP_PKEY_free(lk);
    if (rc != 0) tu_ident_free(out);
    return rc;
}

void tu_ident_free(tu_ident *id)
{
    if (id->key != NULL) OPENSSL_cleanse(id->key, id->key_len);
    free(id->cert);
    free(id->key);
    free(id->bundle);
    memset(id, 0, sizeof *id);
}

char *tu_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    size_t cap = 4096, n = 0, r;
    char *buf = malloc(cap + 1);
    while (buf != NULL && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *nb = realloc(buf, cap * 2 + 1);
            if (nb == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf == NULL) return NULL;
    buf[n] = '\0';
    if (len != NULL) *len = n;
    return buf;
}

int tu_contains(const char *hay, size_t hay_len, const char *needle, size_t nlen)
{
    if (nlen == 0 || nlen > hay_len) return 0;
    for (size_t i = 0; i + nlen <= hay_len; i++)
        if (memcmp(hay + i, needle, nlen) == 0) return 1;
    return 0;
}

int tu_has_key_bytes(const char *blob, size_t blob_len, const char *key)
{
    if (tu_contains(blob, blob_len, "PRIVATE KEY", 11)) return 1;
    const char *p = key;
    while (p != NULL && *p != '\0') {
        const char *e = strchr(p, '\n');
        size_t l = e != NULL ? (size_t)(e - p) : strlen(p);
        if (l >= 16 && p[0] != '-' && tu_contains(blob, blob_len, p, l)) return 1;
        p = e != NULL ? e + 1 : NULL;
    }
    return 0;
}

void tu_uuid(char out[37])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof b) != 1) abort();
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}
