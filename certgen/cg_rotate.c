/* certgen rotate-issuing: a new issuing CA under the same root. The old one
 * is archived (its leaves keep verifying against bundle.pem until they
 * expire: their chain files carry the old issuing certificate), and the
 * gateway certificate is re-issued under the new one with the same key. */
#include <arpa/inet.h>
#include <getopt.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca_pem.h"
#include "ca_spiffe.h"
#include "ca_gwcert.h"
#include "cg.h"
#include "tsr_fs.h"

#define CMD "rotate-issuing"

static const char help[] =
    "Usage: certgen rotate-issuing --pki DIR [OPTIONS]\n"
    "\n"
    "Replace the issuing CA in DIR with a new one signed by the same root\n"
    "(DIR/root.key is needed). The old issuing.pem/.key move to\n"
    "DIR/archive/issuing-SERIAL.pem/.key; certificates it issued keep verifying\n"
    "against bundle.pem until they expire. The gateway certificate is re-issued\n"
    "under the new issuing CA (same key, same DNS/IP names). User certificates\n"
    "are not touched: re-issue them with certgen issue-user NAME --force.\n"
    "\n"
    "Options:\n"
    "  --pki DIR            the PKI directory made by certgen init (required)\n"
    "  --key-type TYPE      p256, p384 or ed25519 (default: the old issuing CA's)\n"
    "  --issuing-ttl D      new issuing CA lifetime (default 365d; never past the root)\n"
    "  --leaf-ttl D         new gateway certificate lifetime (default 90d)\n"
    "  -h, --help           show this help\n";

/* Copy `src` byte for byte to `dst` (mode from the start); an identical
 * `dst` left by an interrupted earlier run is fine, a different one is not. */
int cg_archive_copy(const char *src, const char *dst, unsigned mode)
{
    uint8_t *data = NULL, *old = NULL;
    size_t len = 0, old_len = 0;
    TSR_GUARD(tsr_read_file(src, CA_PEM_MAX_BYTES, &data, &len));
    int rc = tsr_write_file_atomic(dst, data, len, mode, TSR_WRITE_NOREPLACE);
    if (rc != 0 && tsr_errcat() == TSR_E_EXISTS &&
        tsr_read_file(dst, CA_PEM_MAX_BYTES, &old, &old_len) == 0) {
        if (old_len == len && memcmp(old, data, len) == 0)
            rc = 0;
        else
            rc = TSR_FAIL(TSR_E_EXISTS, "%s exists with other contents", dst);
    }
    ca_secret_free(old, old_len);
    ca_secret_free(data, len);
    return rc;
}

int cg_cmd_rotate_issuing(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"pki", required_argument, NULL, 'p'},
        {"key-type", required_argument, NULL, 'k'},
        {"issuing-ttl", required_argument, NULL, 'I'},
        {"leaf-ttl", required_argument, NULL, 'L'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *pki = NULL;
    int64_t issuing_ttl = CG_ISSUING_TTL, leaf_ttl = CG_LEAF_TTL;
    enum ca_key_type type = CA_KEY_P256;
    int have_type = 0, c, rc;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'p': pki = optarg; break;
        case 'k':
            if ((rc = cg_parse_key_type(CMD, optarg, &type)) != CG_OK) return rc;
            have_type = 1;
            break;
        case 'I':
            if ((rc = cg_parse_ttl(CMD, "--issuing-ttl", optarg, &issuing_ttl)) != CG_OK)
                return rc;
            break;
        case 'L':
            if ((rc = cg_parse_ttl(CMD, "--leaf-ttl", optarg, &leaf_ttl)) != CG_OK) return rc;
            break;
        case 'h': fputs(help, stdout); return CG_OK;
        default: return cg_bad_option(CMD, argc, argv, c);
        }
    }
    if (optind < argc) return cg_usage_error(CMD, "unexpected argument \"%s\"", argv[optind]);
    if (pki == NULL || pki[0] == '\0')
        return cg_usage_error(CMD, "--pki DIR is required (the directory of certgen init)");

    int status = CG_FAIL;
    ca_issuer *root = NULL, *old = NULL, *fresh = NULL;
    STACK_OF(X509) *bundle = NULL, *gw_chain = NULL;
    EVP_PKEY *new_key = NULL, *gw_key = NULL;
    X509 *new_cert = NULL, *gw_cert = NULL;
    cg_file files[3] = {0};
    size_t n_files = 0, written = 0;
    ca_leaf_names names = {0};
    char root_pem[CG_PATH_MAX], root_key[CG_PATH_MAX], iss_pem[CG_PATH_MAX],
        iss_key[CG_PATH_MAX], bundle_path[CG_PATH_MAX], gw_pem[CG_PATH_MAX],
        gw_key_path[CG_PATH_MAX], archive[CG_PATH_MAX], arch_pem[CG_PATH_MAX],
        arch_key[CG_PATH_MAX], rel[CG_PATH_MAX], td[CA_TRUST_DOMAIN_MAX + 1],
        old_serial[41], new_serial[41], id[CG_PATH_MAX], until[32];
    if (cg_path(root_pem, pki, "root.pem") != 0 || cg_path(root_key, pki, "root.key") != 0 ||
        cg_path(iss_pem, pki, "issuing.pem") != 0 || cg_path(iss_key, pki, "issuing.key") != 0 ||
        cg_path(bundle_path, pki, "bundle.pem") != 0 || cg_path(gw_pem, pki, "gateway.pem") != 0 ||
        cg_path(gw_key_path, pki, "gateway.key") != 0 || cg_path(archive, pki, "archive") != 0)
        goto fail;

    /* 1. The root, with its key. */
    if (!tsr_path_exists(root_pem)) {
        cg_error(CMD, "%s not found: is %s a PKI directory made by certgen init?", root_pem, pki);
        goto out;
    }
    if (!tsr_path_exists(root_key)) {
        cg_error(CMD, "%s not found: signing a new issuing CA needs the root key.", root_key);
        fprintf(stderr,
                "If you moved the root key offline, copy it back to %s (mode 0600) for the\n"
                "rotation, run this command again, then move it offline again.\n",
                root_key);
        goto out;
    }
    if (ca_issuer_load(root_pem, root_key, &root) != 0) {
        cg_fail(CMD, "load the root CA");
        goto out;
    }
    if (ca_certs_load_file(bundle_path, &bundle) != 0) {
        cg_fail(CMD, "load the trust bundle");
        goto out;
    }

    /* 2. The current issuing CA: it must load, match its key and chain to the root. */
    if (ca_issuer_load(iss_pem, iss_key, &old) != 0) {
        cg_error(CMD, "cannot load the current issuing CA: %s", tsr_errmsg());
        fprintf(stderr, "Restore %s and %s (an earlier rotation archived them in %s) and try "
                        "again.\n",
                iss_pem, iss_key, archive);
        goto out;
    }
    if (X509_check_issued(root->cert, old->cert) != X509_V_OK) {
        cg_error(CMD, "%s was not issued by %s; refusing to rotate a PKI whose files do not "
                      "belong together",
                 iss_pem, root_pem);
        goto out;
    }
    if (ca_issuing_trust_domain(old->cert, td, sizeof td) != 0 ||
        ca_cert_serial_hex(old->cert, old_serial) != 0) {
        cg_fail(CMD, iss_pem);
        goto out;
    }
    if (!have_type && cg_key_type_of(old->key, &type) != 0) type = CA_KEY_P256;

    /* 3. The new issuing CA. */
    if (ca_create_issuing(root, type, td, issuing_ttl, 0, &new_key, &new_cert) != 0) {
        cg_fail(CMD, "create the new issuing CA");
        goto out;
    }
    if (ca_issuer_new(new_cert, new_key, &fresh) != 0) {
        new_cert = NULL;
        new_key = NULL;
        goto fail;
    }
    new_cert = NULL;
    new_key = NULL;
    if (ca_cert_serial_hex(fresh->cert, new_serial) != 0) goto fail;
    if (cg_file_key(&files[n_files++], pki, "issuing.key", fresh->key) != 0 ||
        cg_file_certs(&files[n_files++], pki, "issuing.pem", fresh->cert, NULL) != 0)
        goto fail;

    /* 4. The gateway certificate, same key and names, under the new CA. */
    int have_gateway = tsr_path_exists(gw_pem);
    if (have_gateway) {
        if (ca_certs_load_file(gw_pem, &gw_chain) != 0 ||
            ca_key_load_file(gw_key_path, &gw_key) != 0) {
            cg_fail(CMD, "load the gateway certificate and key");
            goto out;
        }
        if (X509_check_private_key(sk_X509_value(gw_chain, 0), gw_key) != 1) {
            cg_error(CMD, "%s does not match %s; fix the gateway files first", gw_key_path,
                     gw_pem);
            goto out;
        }
        if (ca_leaf_names_from(sk_X509_value(gw_chain, 0), &names) != 0) {
            cg_fail(CMD, gw_pem);
            goto out;
        }
        snprintf(id, sizeof id, "spiffe://%s/gateway", td);
        ca_leaf_request req = {
            .spiffe_id = id,
            .public_key = gw_key,
            .ttl_seconds = leaf_ttl,
            .dns_names = (const char *const *)names.dns,
            .n_dns_names = names.n_dns,
            .ip_addresses = names.ip_ptrs,
            .n_ip_addresses = names.n_ips,
        };
        if (ca_issue_leaf(fresh, &req, &gw_cert) != 0 ||
            cg_self_verify(bundle, fresh->cert, gw_cert, 1) != 0) {
            cg_fail(CMD, "re-issue the gateway certificate");
            goto out;
        }
        if (cg_file_certs(&files[n_files++], pki, "gateway.pem", gw_cert, fresh->cert) != 0)
            goto fail;
    }

    /* 5. Archive the old issuing CA, then replace: key before certificate. */
    snprintf(rel, sizeof rel, "issuing-%s.pem", old_serial);
    if (cg_path(arch_pem, archive, rel) != 0) goto fail;
    snprintf(rel, sizeof rel, "issuing-%s.key", old_serial);
    if (cg_path(arch_key, archive, rel) != 0) goto fail;
    if (cg_private_dir(CMD, archive) != 0 || cg_archive_copy(iss_key, arch_key, 0600) != 0 ||
        cg_archive_copy(iss_pem, arch_pem, 0644) != 0) {
        cg_fail(CMD, "archive the old issuing CA");
        goto out;
    }
    if (cg_files_write(files, n_files, 1, &written) != 0) {
        cg_error(CMD, "%s", tsr_errmsg());
        fprintf(stderr, "The old issuing CA is archived in %s and %s.\n", arch_pem, arch_key);
        for (size_t i = 0; i < written; i++) fprintf(stderr, "  written: %s\n", files[i].path);
        goto out;
    }

    int64_t nb = 0, na = 0;
    if (ca_cert_validity(fresh->cert, &nb, &na) != 0) goto fail;
    cg_format_time(na, until);
    printf("Rotated the issuing CA of %s (trust domain %s)\n", pki, td);
    printf("  new issuing CA   %s  serial %s, %s key, valid until %s\n", iss_pem, new_serial,
           ca_key_type_name(type), until);
    printf("  old issuing CA   archived as %s and %s\n", arch_pem, arch_key);
    if (have_gateway)
        printf("  gateway          %s re-issued under the new issuing CA (same key)\n", gw_pem);
    else
        printf("  gateway          no %s: nothing re-issued\n", gw_pem);
    printf("Certificates issued by the old issuing CA keep verifying until they expire (their "
           "chain\nfiles carry it). Re-issue users with: certgen issue-user NAME --pki %s "
           "--force\n",
           pki);
    status = CG_OK;
    goto out;
fail:
    cg_fail(CMD, "rotate-issuing");
out:
    for (size_t i = 0; i < n_files; i++) cg_file_release(&files[i]);
    ca_leaf_names_free(&names);
    EVP_PKEY_free(new_key);
    EVP_PKEY_free(gw_key);
    X509_free(new_cert);
    X509_free(gw_cert);
    ca_issuer_free(root);
    ca_issuer_free(old);
    ca_issuer_free(fresh);
    sk_X509_pop_free(bundle, X509_free);
    sk_X509_pop_free(gw_chain, X509_free);
    return status;
}

int cg_gateway_reissue(const char *gw_pem, const char *gw_key_path, const ca_issuer *issuer,
                       const char *td, int64_t leaf_ttl, X509 **out)
{
    int rc = -1;
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *key = NULL;
    ca_leaf_names names = {0};
    char id[CG_PATH_MAX];
    TSR_TRY(ca_certs_load_file(gw_pem, &chain));
    TSR_TRY(ca_key_load_file(gw_key_path, &key));
    TSR_TRY_ENSURE(X509_check_private_key(sk_X509_value(chain, 0), key) == 1, TSR_E_INPUT,
                   "%s does not match %s", gw_key_path, gw_pem);
    TSR_TRY(ca_leaf_names_from(sk_X509_value(chain, 0), &names));
    snprintf(id, sizeof id, "spiffe://%s/gateway", td);
    ca_leaf_request req = {
        .spiffe_id = id,
        .public_key = key,
        .ttl_seconds = leaf_ttl,
        .dns_names = (const char *const *)names.dns,
        .n_dns_names = names.n_dns,
        .ip_addresses = names.ip_ptrs,
        .n_ip_addresses = names.n_ips,
    };
    TSR_TRY(ca_issue_leaf(issuer, &req, out));
    rc = 0;
out:
    ca_leaf_names_free(&names);
    EVP_PKEY_free(key);
    sk_X509_pop_free(chain, X509_free);
    return rc;
}
