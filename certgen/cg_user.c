/* certgen issue-user: an operator client certificate signed by DIR/issuing.* */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "ca_pem.h"
#include "ca_spiffe.h"
#include "cg.h"
#include "tsr_fs.h"

#define CMD "issue-user"

static const char help[] =
    "Usage: certgen issue-user NAME --pki DIR [OPTIONS]\n"
    "\n"
    "Issue a client certificate for operator NAME (SPIFFE ID spiffe://TD/user/NAME),\n"
    "signed by the issuing CA in DIR, into DIR/users/NAME.pem (chain: leaf, issuing)\n"
    "and DIR/users/NAME.key. The trust domain is the issuing CA's.\n"
    "\n"
    "Options:\n"
    "  --pki DIR          the PKI directory made by certgen init (required)\n"
    "  --ttl D            certificate lifetime (default 90d; never past the issuing CA)\n"
    "  --key-type TYPE    p256, p384 or ed25519 (default: the issuing CA's key type)\n"
    "  --force            replace an existing certificate and key of NAME\n"
    "  -h, --help         show this help\n"
    "\n"
    "NAME: 1-64 of a-z 0-9 . _ -. The user's role is set in the gateway config.\n";

int cg_cmd_issue_user(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"pki", required_argument, NULL, 'p'},      {"ttl", required_argument, NULL, 't'},
        {"key-type", required_argument, NULL, 'k'}, {"force", no_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    const char *pki = NULL;
    int64_t ttl = CG_LEAF_TTL;
    enum ca_key_type type = CA_KEY_P256;
    int have_type = 0, force = 0, c, rc;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'p': pki = optarg; break;
        case 't':
            if ((rc = cg_parse_ttl(CMD, "--ttl", optarg, &ttl)) != CG_OK) return rc;
            break;
        case 'k':
            if ((rc = cg_parse_key_type(CMD, optarg, &type)) != CG_OK) return rc;
            have_type = 1;
            break;
        case 'f': force = 1; break;
        case 'h': fputs(help, stdout); return CG_OK;
        default: return cg_bad_option(CMD, argc, argv, c);
        }
    }
    if (optind >= argc) return cg_usage_error(CMD, "missing the user NAME");
    if (argc - optind > 1) return cg_usage_error(CMD, "unexpected argument \"%s\"", argv[optind + 1]);
    const char *name = argv[optind];
    if ((rc = cg_check_user_name(CMD, name)) != CG_OK) return rc;
    if (pki == NULL || pki[0] == '\0')
        return cg_usage_error(CMD, "--pki DIR is required (the directory of certgen init)");

    int status = CG_FAIL;
    ca_issuer *issuing = NULL;
    STACK_OF(X509) *bundle = NULL;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    cg_file files[2] = {0};
    char cert_path[CG_PATH_MAX], key_path[CG_PATH_MAX], bundle_path[CG_PATH_MAX];
    char users_dir[CG_PATH_MAX], rel_key[CG_PATH_MAX], rel_pem[CG_PATH_MAX];
    char td[CA_TRUST_DOMAIN_MAX + 1], id[CG_PATH_MAX], pem_path[CG_PATH_MAX];
    char user_key_path[CG_PATH_MAX];
    snprintf(rel_key, sizeof rel_key, "users/%s.key", name);
    snprintf(rel_pem, sizeof rel_pem, "users/%s.pem", name);
    if (cg_path(cert_path, pki, "issuing.pem") != 0 || cg_path(key_path, pki, "issuing.key") != 0 ||
        cg_path(bundle_path, pki, "bundle.pem") != 0 || cg_path(users_dir, pki, "users") != 0 ||
        cg_path(pem_path, pki, rel_pem) != 0 || cg_path(user_key_path, pki, rel_key) != 0) {
        cg_fail(CMD, "path");
        goto out;
    }

    /* Existing files first: nothing is replaced without --force. */
    int key_exists = tsr_path_exists(user_key_path), pem_exists = tsr_path_exists(pem_path);
    if ((key_exists || pem_exists) && !force) {
        cg_error(CMD, "user %s already exists in %s:", name, pki);
        if (pem_exists) fprintf(stderr, "  %s\n", pem_path);
        if (key_exists) fprintf(stderr, "  %s\n", user_key_path);
        fprintf(stderr, "Nothing was written. Use --force to replace them with a new key and "
                        "certificate.\n");
        goto out;
    }

    if (ca_issuer_load(cert_path, key_path, &issuing) != 0) {
        cg_error(CMD, "cannot load the issuing CA of %s: %s", pki, tsr_errmsg());
        fprintf(stderr, "Is %s a PKI directory made by certgen init?\n", pki);
        goto out;
    }
    if (ca_issuing_trust_domain(issuing->cert, td, sizeof td) != 0) {
        cg_fail(CMD, cert_path);
        goto out;
    }
    if (!have_type && cg_key_type_of(issuing->key, &type) != 0) type = CA_KEY_P256;
    if (ca_certs_load_file(bundle_path, &bundle) != 0) {
        cg_fail(CMD, "load the trust bundle");
        goto out;
    }
    snprintf(id, sizeof id, "spiffe://%s/user/%s", td, name);
    if (cg_issue_leaf(issuing, type, id, ttl, NULL, 0, NULL, 0, &key, &cert) != 0 ||
        cg_self_verify(bundle, issuing->cert, cert, 0) != 0) {
        cg_fail(CMD, "issue the certificate");
        goto out;
    }
    if (cg_file_key(&files[0], pki, rel_key, key) != 0 ||
        cg_file_certs(&files[1], pki, rel_pem, cert, issuing->cert) != 0)
        goto fail;
    size_t written = 0;
    if (cg_private_dir(CMD, users_dir) != 0 || cg_files_write(files, 2, force, &written) != 0) {
        cg_fail(CMD, "write");
        goto out;
    }
    char serial[41], until[32];
    int64_t nb = 0, na = 0;
    if (ca_cert_serial_hex(cert, serial) != 0 || ca_cert_validity(cert, &nb, &na) != 0) goto fail;
    cg_format_time(na, until);
    printf("Issued %s for %s\n  serial %s, valid until %s\n  key %s\n", pem_path, id, serial,
           until, files[0].path);
    status = CG_OK;
    goto out;
fail:
    cg_fail(CMD, "issue-user");
out:
    cg_file_release(&files[0]);
    cg_file_release(&files[1]);
    EVP_PKEY_free(key);
    X509_free(cert);
    ca_issuer_free(issuing);
    sk_X509_pop_free(bundle, X509_free);
    return status;
}
