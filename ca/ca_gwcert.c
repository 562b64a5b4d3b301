#include "ca_gwcert.h"

#include <openssl/x509v3.h>
#include <errno.h>
#include <limits.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca_pem.h"
#include "tsr_fs.h"

void ca_leaf_names_free(ca_leaf_names *g)
{
    for (size_t i = 0; i < g->n_dns; i++) free(g->dns[i]);
    g->n_dns = 0;
    g->n_ips = 0;
}

int ca_leaf_names_from(const X509 *cert, ca_leaf_names *g)
{
    int rc = -1;
    memset(g, 0, sizeof *g);
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    TSR_TRY_ENSURE(names != NULL, TSR_E_INPUT, "the gateway certificate has no subjectAltName");
    for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        if (gn->type == GEN_DNS) {
            TSR_TRY_ENSURE(g->n_dns < CA_MAX_NAMES, TSR_E_LIMIT, "too many DNS names");
            int len = ASN1_STRING_length(gn->d.dNSName);
            const unsigned char *data = ASN1_STRING_get0_data(gn->d.dNSName);
            TSR_TRY_ENSURE(len > 0 && memchr(data, '\0', (size_t)len) == NULL, TSR_E_INPUT,
                           "bad DNS name in the gateway certificate");
            g->dns[g->n_dns] = strndup((const char *)data, (size_t)len);
            TSR_TRY_ENSURE(g->dns[g->n_dns] != NULL, TSR_E_INTERNAL, "out of memory");
            g->n_dns++;
        } else if (gn->type == GEN_IPADD) {
            TSR_TRY_ENSURE(g->n_ips < CA_MAX_NAMES, TSR_E_LIMIT, "too many IP addresses");
            int len = ASN1_STRING_length(gn->d.iPAddress);
            const unsigned char *data = ASN1_STRING_get0_data(gn->d.iPAddress);
            int af = len == 4 ? AF_INET : len == 16 ? AF_INET6 : -1;
            TSR_TRY_ENSURE(af != -1 && inet_ntop(af, data, g->ips[g->n_ips],
                                                 sizeof g->ips[g->n_ips]) != NULL,
                           TSR_E_INPUT, "bad IP address in the gateway certificate");
            g->ip_ptrs[g->n_ips] = g->ips[g->n_ips];
            g->n_ips++;
        }
    }
    rc = 0;
out:
    GENERAL_NAMES_free(names);
    if (rc != 0) ca_leaf_names_free(g);
    return rc;
}

int ca_key_type_of(const EVP_PKEY *key, enum ca_key_type *out)
{
    char desc[128];
    ca_key_describe(key, desc, sizeof desc);
    if (strcmp(desc, "ECDSA P-256") == 0)
        *out = CA_KEY_P256;
    else if (strcmp(desc, "ECDSA P-384") == 0)
        *out = CA_KEY_P384;
    else if (strcmp(desc, "Ed25519") == 0)
        *out = CA_KEY_ED25519;
    else
        return TSR_FAIL(TSR_E_INPUT, "key type %s is not one certgen generates", desc);
    return 0;
}

int64_t ca_renew_due(int64_t not_before, int64_t not_after)
{
    return not_before + (not_after - not_before) / 3 * 2;
}

int64_t ca_expiry_warn_at(int64_t not_before, int64_t not_after)
{
    return not_after - (not_after - not_before) / 6;
}

int ca_gateway_renew(const ca_issuer *issuer, const X509 *current, const char *td, int64_t now,
                     EVP_PKEY **key_out, X509 **cert_out)
{
    int rc = -1;
    ca_leaf_names names = {0};
    EVP_PKEY *key = NULL;
    enum ca_key_type type;
    int64_t nb = 0, na = 0;
    char id[320];
    *key_out = NULL;
    *cert_out = NULL;
    TSR_TRY(ca_key_type_of(X509_get0_pubkey(current), &type));
    TSR_TRY(ca_cert_validity(current, &nb, &na));
    TSR_TRY(ca_leaf_names_from(current, &names));
    TSR_TRY_ENSURE((size_t)snprintf(id, sizeof id, "spiffe://%s/gateway", td) < sizeof id,
                   TSR_E_INPUT, "trust domain too long");
    /* ca_issue_leaf backdates notBefore by 60 s: the lifetime asked for is
     * what the current certificate had without it. */
    int64_t ttl = na - nb - 60;
    if (ttl < 60) ttl = 60;
    TSR_TRY(ca_key_generate(type, &key));
    ca_leaf_request req = {
        .spiffe_id = id,
        .public_key = key,
        .ttl_seconds = ttl,
        .dns_names = (const char *const *)names.dns,
        .n_dns_names = names.n_dns,
        .ip_addresses = names.ip_ptrs,
        .n_ip_addresses = names.n_ips,
        .now = now,
    };
    TSR_TRY(ca_issue_leaf(issuer, &req, cert_out));
    *key_out = key;
    key = NULL;
    rc = 0;
out:
    EVP_PKEY_free(key);
    ca_leaf_names_free(&names);
    return rc;
}

/* ---- installing a renewed certificate ----------------------------------- */

int ca_gwcert_install(const char *cert_path, const char *key_path, X509 *leaf,
                      const char *chain_pem, EVP_PKEY *key)
{
    int rc = -1;
    char tmp[PATH_MAX + 8];
    char *leaf_pem = NULL, *all = NULL, *key_pem = NULL;
    size_t leaf_len = 0, key_len = 0, chain_len = chain_pem != NULL ? strlen(chain_pem) : 0;
    TSR_TRY_ENSURE((size_t)snprintf(tmp, sizeof tmp, "%s.new", cert_path) < sizeof tmp,
                   TSR_E_LIMIT, "path too long: %s", cert_path);
    TSR_TRY(ca_cert_to_pem(leaf, &leaf_pem, &leaf_len));
    TSR_TRY_ENSURE((all = malloc(leaf_len + chain_len + 1)) != NULL, TSR_E_INTERNAL,
                   "out of memory");
    memcpy(all, leaf_pem, leaf_len);
    if (chain_len > 0) memcpy(all + leaf_len, chain_pem, chain_len);
    all[leaf_len + chain_len] = '\0';
    TSR_TRY(ca_key_to_pem(key, &key_pem, &key_len));
    /* 1. the certificate beside the old one; 2. the key; 3. the certificate. */
    TSR_TRY(tsr_write_file_atomic(tmp, all, leaf_len + chain_len, 0644, TSR_WRITE_REPLACE));
    TSR_TRY(tsr_write_file_atomic(key_path, key_pem, key_len, 0600, TSR_WRITE_REPLACE));
    TSR_TRY(tsr_rename_durable(tmp, cert_path));
    rc = 0;
out:
    if (key_pem != NULL) ca_secret_free(key_pem, key_len);
    free(leaf_pem);
    free(all);
    return rc;
}

int ca_gwcert_recover(const char *cert_path, const char *key_path, int *recovered)
{
    char tmp[PATH_MAX + 8];
    *recovered = 0;
    TSR_ENSURE((size_t)snprintf(tmp, sizeof tmp, "%s.new", cert_path) < sizeof tmp, TSR_E_LIMIT,
               "path too long: %s", cert_path);
    if (!tsr_path_exists(tmp)) return 0;
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *key = NULL;
    int matches = ca_certs_load_file(tmp, &chain) == 0 && sk_X509_num(chain) >= 1 &&
                  ca_key_load_file(key_path, &key) == 0 &&
                  X509_check_private_key(sk_X509_value(chain, 0), key) == 1;
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
    if (matches) {
        TSR_GUARD(tsr_rename_durable(tmp, cert_path));
        *recovered = 1;
        return 0;
    }
    TSR_ENSURE(unlink(tmp) == 0 || errno == ENOENT, TSR_E_IO, "remove %s: %s", tmp,
               strerror(errno));
    return 0;
}
