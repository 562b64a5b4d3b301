/* A named client certificate under the issuing CA of a PKI directory: the
 * one flow behind issue-user and issue-proxy (cg.h, cg_issue_named). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "ca_pem.h"
#include "ca_spiffe.h"
#include "cg.h"
#include "tsr_fs.h"

int cg_issue_named(const cg_named_leaf *o)
{
    int status = CG_FAIL;
    ca_issuer *issuing = NULL;
    STACK_OF(X509) *bundle = NULL;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    cg_file files[2] = {0};
    enum ca_key_type type = o->type;
    char cert_path[CG_PATH_MAX], key_path[CG_PATH_MAX], bundle_path[CG_PATH_MAX];
    char dir[CG_PATH_MAX], rel_key[CG_PATH_MAX], rel_pem[CG_PATH_MAX];
    char td[CA_TRUST_DOMAIN_MAX + 1], id[CG_PATH_MAX], pem_path[CG_PATH_MAX];
    char leaf_key_path[CG_PATH_MAX];
    snprintf(rel_key, sizeof rel_key, "%s/%s.key", o->subdir, o->name);
    snprintf(rel_pem, sizeof rel_pem, "%s/%s.pem", o->subdir, o->name);
    if (cg_path(cert_path, o->pki, "issuing.pem") != 0 ||
        cg_path(key_path, o->pki, "issuing.key") != 0 ||
        cg_path(bundle_path, o->pki, "bundle.pem") != 0 || cg_path(dir, o->pki, o->subdir) != 0 ||
        cg_path(pem_path, o->pki, rel_pem) != 0 || cg_path(leaf_key_path, o->pki, rel_key) != 0) {
        cg_fail(o->cmd, "path");
        goto out;
    }

    /* Existing files first: nothing is replaced without --force. */
    int key_exists = tsr_path_exists(leaf_key_path), pem_exists = tsr_path_exists(pem_path);
    if ((key_exists || pem_exists) && !o->force) {
        cg_error(o->cmd, "%s %s already exists in %s:", o->kind, o->name, o->pki);
        if (pem_exists) fprintf(stderr, "  %s\n", pem_path);
        if (key_exists) fprintf(stderr, "  %s\n", leaf_key_path);
        fprintf(stderr, "Nothing was written. Use --force to replace them with a new key and "
                        "certificate.\n");
        goto out;
    }

    if (ca_issuer_load(cert_path, key_path, &issuing) != 0) {
        cg_error(o->cmd, "cannot load the issuing CA of %s: %s", o->pki, tsr_errmsg());
        fprintf(stderr, "Is %s a PKI directory made by certgen init?\n", o->pki);
        goto out;
    }
    if (ca_issuing_trust_domain(issuing->cert, td, sizeof td) != 0) {
        cg_fail(o->cmd, cert_path);
        goto out;
    }
    if (!o->have_type && cg_key_type_of(issuing->key, &type) != 0) type = CA_KEY_P256;
    if (ca_certs_load_file(bundle_path, &bundle) != 0) {
        cg_fail(o->cmd, "load the trust bundle");
        goto out;
    }
    snprintf(id, sizeof id, "spiffe://%s/%s/%s", td, o->kind, o->name);
    if (cg_issue_leaf(issuing, type, id, o->ttl, NULL, 0, NULL, 0, &key, &cert) != 0 ||
        cg_self_verify(bundle, issuing->cert, cert, 0) != 0) {
        cg_fail(o->cmd, "issue the certificate");
        goto out;
    }
    /* Recorded before its files exist: a certificate that exists is known. */
    if (o->store != NULL && cg_record(o->store, cert, id) != 0) {
        cg_error(o->cmd, "cannot record the certificate in %s: %s", o->store, tsr_errmsg());
        fprintf(stderr, "Nothing was written.\n");
        goto out;
    }
    if (cg_file_key(&files[0], o->pki, rel_key, key) != 0 ||
        cg_file_certs(&files[1], o->pki, rel_pem, cert, issuing->cert) != 0)
        goto fail;
    size_t written = 0;
    if (cg_private_dir(o->cmd, dir) != 0 || cg_files_write(files, 2, o->force, &written) != 0) {
        cg_fail(o->cmd, "write");
        goto out;
    }
    char serial[41], until[32];
    int64_t nb = 0, na = 0;
    if (ca_cert_serial_hex(cert, serial) != 0 || ca_cert_validity(cert, &nb, &na) != 0) goto fail;
    cg_format_time(na, until);
    printf("Issued %s for %s\n  serial %s, valid until %s%s%s\n  key %s\n", pem_path, id, serial,
           until, o->store != NULL ? ", recorded in " : "", o->store != NULL ? o->store : "",
           files[0].path);
    status = CG_OK;
    goto out;
fail:
    cg_fail(o->cmd, o->cmd);
out:
    cg_file_release(&files[0]);
    cg_file_release(&files[1]);
    EVP_PKEY_free(key);
    X509_free(cert);
    ca_issuer_free(issuing);
    sk_X509_pop_free(bundle, X509_free);
    return status;
}

int cg_parse_named(int argc, char **argv, const char *help, cg_named_leaf *o, int *done)
{
    static const struct option longopts[] = {
        {"pki", required_argument, NULL, 'p'},      {"ttl", required_argument, NULL, 't'},
        {"key-type", required_argument, NULL, 'k'}, {"force", no_argument, NULL, 'f'},
        {"store", required_argument, NULL, 's'},    {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *cmd = o->cmd;
    int with_store = strcmp(o->kind, "proxy") == 0, c, rc;
    *done = 0;
    o->ttl = CG_LEAF_TTL;
    o->type = CA_KEY_P256;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'p': o->pki = optarg; break;
        case 's':
            if (!with_store) return cg_usage_error(cmd, "unknown option '--store'");
            o->store = optarg;
            break;
        case 't':
            if ((rc = cg_parse_ttl(cmd, "--ttl", optarg, &o->ttl)) != CG_OK) return rc;
            break;
        case 'k':
            if ((rc = cg_parse_key_type(cmd, optarg, &o->type)) != CG_OK) return rc;
            o->have_type = 1;
            break;
        case 'f': o->force = 1; break;
        case 'h':
            fputs(help, stdout);
            *done = 1;
            return CG_OK;
        default: return cg_bad_option(cmd, argc, argv, c);
        }
    }
    if (optind >= argc) return cg_usage_error(cmd, "missing the %s NAME", o->kind);
    if (argc - optind > 1) return cg_usage_error(cmd, "unexpected argument \"%s\"", argv[optind + 1]);
    o->name = argv[optind];
    if ((rc = cg_check_user_name(cmd, o->name)) != CG_OK) return rc;
    if (o->pki == NULL || o->pki[0] == '\0')
        return cg_usage_error(cmd, "--pki DIR is required (the directory of certgen init)");
    if (with_store && (o->store == NULL || o->store[0] == '\0'))
        return cg_usage_error(cmd, "--store DB is required: the certificate is recorded in the "
                                   "gateway's database (<data_dir>/tessera.db) so that it can be "
                                   "listed and revoked");
    return CG_OK;
}
