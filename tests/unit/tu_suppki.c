/* Test PKI and scratch directories for the supervisor tests (tu_suppki.h). */
#include "tu_suppki.h"
#include "tu_fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ca_pem.h"

#define DAY (24 * 3600)

int tu_pki_client_tls(const tu_pki *p, cl_tls **out)
{
    cl_tls_config tc = {.bundle_pem = (const uint8_t *)p->bundle_pem,
                        .bundle_pem_len = p->bundle_len,
                        .trust_domain = p->trust_domain};
    return cl_tls_new(&tc, out);
}

int tu_pki_init(tu_pki *p, const char *trust_domain, int64_t now)
{
    memset(p, 0, sizeof *p);
    snprintf(p->trust_domain, sizeof p->trust_domain, "%s", trust_domain);
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    if (ca_create_root(CA_KEY_P256, trust_domain, 30 * DAY, now - DAY, &key, &cert) != 0 ||
        ca_issuer_new(cert, key, &p->root) != 0)
        return -1;
    if (ca_create_issuing(p->root, CA_KEY_P256, trust_domain, 10 * DAY, now - DAY, &key,
                          &cert) != 0 ||
        ca_issuer_new(cert, key, &p->issuing) != 0)
        return -1;
    if (ca_cert_to_pem(p->root->cert, &p->bundle_pem, &p->bundle_len) != 0 ||
        ca_cert_to_pem(p->issuing->cert, &p->issuing_pem, &p->issuing_len) != 0)
        return -1;
    return 0;
}

void tu_pki_free(tu_pki *p)
{
    ca_issuer_free(p->root);
    ca_issuer_free(p->issuing);
    free(p->bundle_pem);
    free(p->issuing_pem);
    memset(p, 0, sizeof *p);
}

int tu_pki_leaf(const tu_pki *p, const char *spiffe_id, EVP_PKEY *key, int64_t now, int64_t ttl,
                tu_leaf *out)
{
    memset(out, 0, sizeof *out);
    if (key == NULL) {
        if (ca_key_generate(CA_KEY_P256, &out->key) != 0) return -1;
    } else {
        if (EVP_PKEY_up_ref(key) != 1) return -1;
        out->key = key;
    }
    ca_leaf_request req = {
        .spiffe_id = spiffe_id, .public_key = out->key, .ttl_seconds = ttl, .now = now,
    };
    if (ca_issue_leaf(p->issuing, &req, &out->cert) != 0) return -1;
    if (ca_cert_to_pem(out->cert, &out->leaf_pem, &out->leaf_len) != 0) return -1;
    if (ca_key_to_pem(out->key, &out->key_pem, &out->key_len) != 0) return -1;
    if (ca_cert_serial_hex(out->cert, out->serial) != 0) return -1;
    out->chain_len = out->leaf_len + p->issuing_len;
    out->chain_pem = malloc(out->chain_len + 1);
    if (out->chain_pem == NULL) return -1;
    memcpy(out->chain_pem, out->leaf_pem, out->leaf_len);
    memcpy(out->chain_pem + out->leaf_len, p->issuing_pem, p->issuing_len);
    out->chain_pem[out->chain_len] = '\0';
    return 0;
}

void tu_leaf_free(tu_leaf *l)
{
    free(l->chain_pem);
    free(l->leaf_pem);
    if (l->key_pem != NULL) ca_secret_free(l->key_pem, l->key_len);
    EVP_PKEY_free(l->key);
    X509_free(l->cert);
    memset(l, 0, sizeof *l);
}

char *tu_scratch_dir(const char *tag)
{
    char tmpl[256];
    char name[128];
    snprintf(name, sizeof name, "tsr-%s-XXXXXX", tag);
    if (tu_temp_path(tmpl, sizeof tmpl, name) != 0) return NULL;
    if (mkdtemp(tmpl) == NULL) return NULL;
    if (chmod(tmpl, 0700) != 0) return NULL;
    return strdup(tmpl);
}

int tu_write(const char *dir, const char *name, const void *data, size_t len, mode_t mode)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    (void)unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return -1;
    int rc = (write(fd, data, len) == (ssize_t)len && fchmod(fd, mode) == 0) ? 0 : -1;
    close(fd);
    return rc;
}

int tu_write_identity(const char *dir, const tu_pki *p, const tu_leaf *l)
{
    if (tu_write(dir, "cert.pem", l->chain_pem, l->chain_len, 0600) != 0 ||
        tu_write(dir, "key.pem", l->key_pem, l->key_len, 0600) != 0 ||
        tu_write(dir, "bundle.pem", p->bundle_pem, p->bundle_len, 0600) != 0)
        return -1;
    return 0;
}

char *tu_read(const char *dir, const char *name, size_t *len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    char *buf = malloc(1 << 20);
    size_t n = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    if (buf == NULL) return NULL;
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

int tu_count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) n++;
    closedir(d);
    return n;
}
