/* certgen rotate-root / retire-root: replace the root CA without downtime,
 * in three steps, each followed by a gateway reload (SIGHUP):
 *
 *   1. rotate-root            a new root, an issuing CA and a gateway
 *                             certificate under it, staged in DIR/next/;
 *                             bundle.pem gets the new root beside the old.
 *                             Clients learn both roots (supervisors from
 *                             RenewCertificate's bundle_pem).
 *   2. rotate-root --activate the staged files replace root, issuing CA and
 *                             gateway certificate (old ones archived): new
 *                             certificates chain to the new root; old ones
 *                             still verify, the bundle trusts both.
 *   3. retire-root            bundle.pem holds the current root only: what
 *                             still chains to the old root is refused at the
 *                             next handshake. */
#include <getopt.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ca_pem.h"
#include "ca_spiffe.h"
#include "cg.h"
#include "tsr_fs.h"

#define CG_ROOT_STAGED 5
static const char *const staged[CG_ROOT_STAGED] = {"root.key", "root.pem", "issuing.key",
                                                   "issuing.pem", "gateway.pem"};

static const char rotate_help[] =
    "Usage: certgen rotate-root --pki DIR [--activate] [OPTIONS]\n"
    "\n"
    "Step 1 (without --activate): make a new root CA, an issuing CA and a gateway\n"
    "certificate (same key and names) under it in DIR/next/, and add the new root\n"
    "to DIR/bundle.pem beside the old one. Reload the gateway (SIGHUP) and wait\n"
    "until every client has the new bundle (sandboxes: one renewal, half a\n"
    "certificate lifetime).\n"
    "Step 2 (--activate): archive the old root and issuing CA in DIR/archive/ and\n"
    "move the staged files into place; reload the gateway. New certificates chain\n"
    "to the new root; old ones keep verifying (the bundle holds both roots).\n"
    "Re-issue user certificates (certgen issue-user NAME --force), wait until the\n"
    "old sandbox certificates have expired, then run certgen retire-root.\n"
    "\n"
    "Options:\n"
    "  --pki DIR            the PKI directory made by certgen init (required)\n"
    "  --activate           step 2: put the staged root and issuing CA in use\n"
    "  --key-type TYPE      p256, p384 or ed25519 (default: the current issuing CA's)\n"
    "  --root-ttl D         new root lifetime (default 3650d)\n"
    "  --issuing-ttl D      new issuing CA lifetime (default 365d)\n"
    "  --leaf-ttl D         new gateway certificate lifetime (default 90d)\n"
    "  -h, --help           show this help\n";

static const char retire_help[] =
    "Usage: certgen retire-root --pki DIR\n"
    "\n"
    "Rewrite DIR/bundle.pem with DIR/root.pem only: every other root (the one a\n"
    "rotate-root replaced) stops being trusted at the next gateway reload, and\n"
    "whatever still chains to it is refused. Refused while a rotation is staged\n"
    "(DIR/next exists) or when issuing.pem does not chain to root.pem.\n"
    "\n"
    "Options:\n"
    "  --pki DIR            the PKI directory (required)\n"
    "  -h, --help           show this help\n";

static int bundle_file(cg_file *f, const char *dir, STACK_OF(X509) *roots)
{
    memset(f, 0, sizeof *f);
    TSR_GUARD(cg_path(f->path, dir, "bundle.pem"));
    return ca_certs_to_pem(roots, &f->data, &f->len);
}

static int contains(STACK_OF(X509) *certs, const X509 *cert)
{
    for (int i = 0; i < sk_X509_num(certs); i++)
        if (X509_cmp(sk_X509_value(certs, i), cert) == 0) return 1;
    return 0;
}

/* Step 1: stage. */
static int stage(const char *pki, enum ca_key_type type, int have_type, int64_t root_ttl,
                 int64_t issuing_ttl, int64_t leaf_ttl)
{
#define CMD "rotate-root"
    int status = CG_FAIL;
    ca_issuer *cur = NULL, *root = NULL, *iss = NULL;
    STACK_OF(X509) *bundle = NULL;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL, *gw_cert = NULL;
    cg_file files[CG_ROOT_STAGED + 1] = {0};
    size_t n = 0, written = 0;
    char next[CG_PATH_MAX], iss_pem[CG_PATH_MAX], iss_key[CG_PATH_MAX], bundle_path[CG_PATH_MAX],
        gw_pem[CG_PATH_MAX], gw_key[CG_PATH_MAX], td[CA_TRUST_DOMAIN_MAX + 1], serial[41];
    if (cg_path(next, pki, "next") != 0 || cg_path(iss_pem, pki, "issuing.pem") != 0 ||
        cg_path(iss_key, pki, "issuing.key") != 0 ||
        cg_path(bundle_path, pki, "bundle.pem") != 0 ||
        cg_path(gw_pem, pki, "gateway.pem") != 0 || cg_path(gw_key, pki, "gateway.key") != 0)
        goto fail;
    if (tsr_path_exists(next)) {
        cg_error(CMD, "%s exists: a root rotation is already staged; finish it with "
                      "certgen rotate-root --pki %s --activate (or remove %s to start over)",
                 next, pki, next);
        goto out;
    }
    if (ca_issuer_load(iss_pem, iss_key, &cur) != 0 ||
        ca_issuing_trust_domain(cur->cert, td, sizeof td) != 0) {
        cg_fail(CMD, "load the current issuing CA");
        goto out;
    }
    if (!have_type && cg_key_type_of(cur->key, &type) != 0) type = CA_KEY_P256;
    if (ca_certs_load_file(bundle_path, &bundle) != 0) {
        cg_fail(CMD, "load the trust bundle");
        goto out;
    }
    if (ca_create_root(type, td, root_ttl, 0, &key, &cert) != 0) goto fail;
    if (ca_issuer_new(cert, key, &root) != 0) goto fail_owned;
    cert = NULL;
    key = NULL;
    if (ca_create_issuing(root, type, td, issuing_ttl, 0, &key, &cert) != 0) goto fail;
    if (ca_issuer_new(cert, key, &iss) != 0) goto fail_owned;
    cert = NULL;
    key = NULL;
    if (X509_up_ref(root->cert) != 1) goto fail;
    if (sk_X509_push(bundle, root->cert) <= 0) {
        X509_free(root->cert);   /* the reference taken for the bundle */
        goto fail;
    }
    if (cg_gateway_reissue(gw_pem, gw_key, iss, td, leaf_ttl, &gw_cert) != 0 ||
        cg_self_verify(bundle, iss->cert, gw_cert, 1) != 0) {
        cg_fail(CMD, "issue the gateway certificate under the new root");
        goto out;
    }
    if (cg_file_key(&files[n++], next, "root.key", root->key) != 0 ||
        cg_file_certs(&files[n++], next, "root.pem", root->cert, NULL) != 0 ||
        cg_file_key(&files[n++], next, "issuing.key", iss->key) != 0 ||
        cg_file_certs(&files[n++], next, "issuing.pem", iss->cert, NULL) != 0 ||
        cg_file_certs(&files[n++], next, "gateway.pem", gw_cert, iss->cert) != 0 ||
        bundle_file(&files[n++], pki, bundle) != 0)
        goto fail;
    if (cg_private_dir(CMD, next) != 0) goto out;
    /* The staged files first (never replacing anything), the bundle last. */
    if (cg_files_write(files, CG_ROOT_STAGED, 0, &written) != 0 ||
        cg_files_write(&files[CG_ROOT_STAGED], 1, 1, &written) != 0) {
        cg_fail(CMD, "write the staged files");
        goto out;
    }
    if (ca_cert_serial_hex(root->cert, serial) != 0) goto fail;
    printf("Staged a new root CA for %s (trust domain %s)\n", pki, td);
    printf("  new root         %s/root.pem  serial %s (key %s/root.key: move it offline after "
           "--activate)\n",
           next, serial, next);
    printf("  bundle           %s now holds %d roots (old and new)\n", bundle_path,
           sk_X509_num(bundle));
    printf("Next: reload the gateway (systemctl reload tessera-gateway, or kill -HUP), wait until\n"
           "every client has the new bundle (sandboxes renew at half their certificate\n"
           "lifetime), then run: certgen rotate-root --pki %s --activate\n",
           pki);
    status = CG_OK;
    goto out;
fail_owned:
    X509_free(cert);
    EVP_PKEY_free(key);
    cert = NULL;
    key = NULL;
fail:
    cg_fail(CMD, "rotate-root");
out:
    for (size_t i = 0; i < n; i++) cg_file_release(&files[i]);
    X509_free(cert);
    X509_free(gw_cert);
    EVP_PKEY_free(key);
    ca_issuer_free(cur);
    ca_issuer_free(root);
    ca_issuer_free(iss);
    sk_X509_pop_free(bundle, X509_free);
    return status;
}

/* Step 2: activate what step 1 staged. */
static int activate(const char *pki)
{
    int status = CG_FAIL;
    ca_issuer *root = NULL, *iss = NULL;
    STACK_OF(X509) *bundle = NULL, *gw_chain = NULL;
    EVP_PKEY *gw_key = NULL;
    char next[CG_PATH_MAX], src[CG_PATH_MAX], dst[CG_PATH_MAX], archive[CG_PATH_MAX],
        rel[CG_PATH_MAX], serial[41], p1[CG_PATH_MAX], p2[CG_PATH_MAX];
    if (cg_path(next, pki, "next") != 0 || cg_path(archive, pki, "archive") != 0) goto fail;
    if (!tsr_path_exists(next)) {
        cg_error(CMD, "nothing staged in %s: run certgen rotate-root --pki %s first", next, pki);
        goto out;
    }
    /* The staged set must belong together and its root must be in the bundle
     * the clients have (step 1 + reload). */
    if (cg_path(p1, next, "root.pem") != 0 || cg_path(p2, next, "root.key") != 0) goto fail;
    if (ca_issuer_load(p1, p2, &root) != 0) {
        cg_fail(CMD, "load the staged root");
        goto out;
    }
    if (cg_path(p1, next, "issuing.pem") != 0 || cg_path(p2, next, "issuing.key") != 0) goto fail;
    if (ca_issuer_load(p1, p2, &iss) != 0 ||
        X509_check_issued(root->cert, iss->cert) != X509_V_OK) {
        cg_error(CMD, "the staged issuing CA does not load or is not issued by the staged root");
        goto out;
    }
    if (cg_path(p1, pki, "bundle.pem") != 0) goto fail;
    if (ca_certs_load_file(p1, &bundle) != 0) {
        cg_fail(CMD, "load the trust bundle");
        goto out;
    }
    if (!contains(bundle, root->cert)) {
        cg_error(CMD, "%s does not hold the staged root: clients would not trust what the "
                      "gateway issues next. Run rotate-root step 1 again.",
                 p1);
        goto out;
    }
    if (cg_path(p1, next, "gateway.pem") != 0 || cg_path(p2, pki, "gateway.key") != 0) goto fail;
    if (ca_certs_load_file(p1, &gw_chain) != 0 || ca_key_load_file(p2, &gw_key) != 0 ||
        X509_check_private_key(sk_X509_value(gw_chain, 0), gw_key) != 1 ||
        cg_self_verify(bundle, iss->cert, sk_X509_value(gw_chain, 0), 1) != 0) {
        cg_error(CMD, "the staged gateway certificate does not match %s or does not verify", p2);
        goto out;
    }

    /* Archive the current root and issuing CA (certificate and key, where
     * present), then move the staged files into place: keys first. */
    if (cg_private_dir(CMD, archive) != 0) goto out;
    static const char *const kinds[] = {"root", "issuing"};
    for (size_t k = 0; k < 2; k++) {
        STACK_OF(X509) *c = NULL;
        snprintf(rel, sizeof rel, "%s.pem", kinds[k]);
        if (cg_path(src, pki, rel) != 0 || ca_certs_load_file(src, &c) != 0) goto fail;
        int ok = ca_cert_serial_hex(sk_X509_value(c, 0), serial) == 0;
        sk_X509_pop_free(c, X509_free);
        if (!ok) goto fail;
        for (int is_key = 0; is_key < 2; is_key++) {
            snprintf(rel, sizeof rel, "%s.%s", kinds[k], is_key ? "key" : "pem");
            if (cg_path(src, pki, rel) != 0) goto fail;
            if (is_key && !tsr_path_exists(src)) continue;   /* an offline root key */
            snprintf(rel, sizeof rel, "%s-%s.%s", kinds[k], serial, is_key ? "key" : "pem");
            if (cg_path(dst, archive, rel) != 0 ||
                cg_archive_copy(src, dst, is_key ? 0600 : 0644) != 0) {
                cg_fail(CMD, "archive the current CA files");
                goto out;
            }
        }
    }
    for (size_t i = 0; i < CG_ROOT_STAGED; i++) {
        if (cg_path(src, next, staged[i]) != 0 || cg_path(dst, pki, staged[i]) != 0) goto fail;
        uint8_t *data = NULL;
        size_t len = 0;
        int is_key = strstr(staged[i], ".key") != NULL;
        int rc = tsr_read_file(src, CA_PEM_MAX_BYTES, &data, &len);
        if (rc == 0)
            rc = tsr_write_file_atomic(dst, data, len, is_key ? 0600 : 0644, TSR_WRITE_REPLACE);
        ca_secret_free(data, len);
        if (rc != 0) {
            cg_error(CMD, "%s: %s (the old files are archived in %s; run --activate again)",
                     dst, tsr_errmsg(), archive);
            goto out;
        }
    }
    for (size_t i = 0; i < CG_ROOT_STAGED; i++)
        if (cg_path(src, next, staged[i]) == 0) (void)unlink(src);
    if (rmdir(next) != 0) cg_error(CMD, "warning: cannot remove %s", next);
    if (ca_cert_serial_hex(root->cert, serial) != 0) goto fail;
    printf("Activated the new root of %s (serial %s)\n", pki, serial);
    printf("  root, issuing CA and gateway certificate replaced; old ones in %s\n", archive);
    printf("Next: reload the gateway; move %s/root.key offline; re-issue user certificates\n"
           "(certgen issue-user NAME --pki %s --force); once every certificate under the old\n"
           "root has expired, run: certgen retire-root --pki %s\n",
           pki, pki, pki);
    status = CG_OK;
    goto out;
fail:
    cg_fail(CMD, "rotate-root --activate");
out:
    ca_issuer_free(root);
    ca_issuer_free(iss);
    EVP_PKEY_free(gw_key);
    sk_X509_pop_free(gw_chain, X509_free);
    sk_X509_pop_free(bundle, X509_free);
    return status;
#undef CMD
}

int cg_cmd_rotate_root(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"pki", required_argument, NULL, 'p'},
        {"activate", no_argument, NULL, 'a'},
        {"key-type", required_argument, NULL, 'k'},
        {"root-ttl", required_argument, NULL, 'R'},
        {"issuing-ttl", required_argument, NULL, 'I'},
        {"leaf-ttl", required_argument, NULL, 'L'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *pki = NULL;
    int64_t root_ttl = CG_ROOT_TTL, issuing_ttl = CG_ISSUING_TTL, leaf_ttl = CG_LEAF_TTL;
    enum ca_key_type type = CA_KEY_P256;
    int have_type = 0, act = 0, c, rc;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'p': pki = optarg; break;
        case 'a': act = 1; break;
        case 'k':
            if ((rc = cg_parse_key_type("rotate-root", optarg, &type)) != CG_OK) return rc;
            have_type = 1;
            break;
        case 'R':
            if ((rc = cg_parse_ttl("rotate-root", "--root-ttl", optarg, &root_ttl)) != CG_OK)
                return rc;
            break;
        case 'I':
            if ((rc = cg_parse_ttl("rotate-root", "--issuing-ttl", optarg, &issuing_ttl)) != CG_OK)
                return rc;
            break;
        case 'L':
            if ((rc = cg_parse_ttl("rotate-root", "--leaf-ttl", optarg, &leaf_ttl)) != CG_OK)
                return rc;
            break;
        case 'h': fputs(rotate_help, stdout); return CG_OK;
        default: return cg_bad_option("rotate-root", argc, argv, c);
        }
    }
    if (optind < argc)
        return cg_usage_error("rotate-root", "unexpected argument \"%s\"", argv[optind]);
    if (pki == NULL || pki[0] == '\0')
        return cg_usage_error("rotate-root", "--pki DIR is required");
    if (act && (have_type || root_ttl != CG_ROOT_TTL || issuing_ttl != CG_ISSUING_TTL ||
                leaf_ttl != CG_LEAF_TTL))
        return cg_usage_error("rotate-root", "--activate takes no key or lifetime options "
                                             "(they were chosen when staging)");
    return act ? activate(pki) : stage(pki, type, have_type, root_ttl, issuing_ttl, leaf_ttl);
}

int cg_cmd_retire_root(int argc, char **argv)
{
#define CMD "retire-root"
    static const struct option longopts[] = {
        {"pki", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *pki = NULL;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'p': pki = optarg; break;
        case 'h': fputs(retire_help, stdout); return CG_OK;
        default: return cg_bad_option(CMD, argc, argv, c);
        }
    }
    if (optind < argc) return cg_usage_error(CMD, "unexpected argument \"%s\"", argv[optind]);
    if (pki == NULL || pki[0] == '\0') return cg_usage_error(CMD, "--pki DIR is required");

    int status = CG_FAIL;
    STACK_OF(X509) *root = NULL, *iss = NULL, *bundle = NULL;
    cg_file f = {0};
    size_t written = 0;
    char next[CG_PATH_MAX], p[CG_PATH_MAX], serial[41];
    if (cg_path(next, pki, "next") != 0) goto fail;
    if (tsr_path_exists(next)) {
        cg_error(CMD, "a root rotation is staged in %s: activate it first (certgen rotate-root "
                      "--pki %s --activate)",
                 next, pki);
        goto out;
    }
    if (cg_path(p, pki, "root.pem") != 0 || ca_certs_load_file(p, &root) != 0 ||
        cg_path(p, pki, "issuing.pem") != 0 || ca_certs_load_file(p, &iss) != 0 ||
        cg_path(p, pki, "bundle.pem") != 0 || ca_certs_load_file(p, &bundle) != 0) {
        cg_fail(CMD, "load root.pem, issuing.pem and bundle.pem");
        goto out;
    }
    X509 *cur = sk_X509_value(root, 0);
    if (X509_check_issued(cur, sk_X509_value(iss, 0)) != X509_V_OK) {
        cg_error(CMD, "issuing.pem is not issued by root.pem: retiring the other roots would "
                      "break the gateway");
        goto out;
    }
    while (sk_X509_num(root) > 1) X509_free(sk_X509_pop(root));
    int dropped = 0;
    for (int i = 0; i < sk_X509_num(bundle); i++) {
        if (X509_cmp(sk_X509_value(bundle, i), cur) == 0) continue;
        if (ca_cert_serial_hex(sk_X509_value(bundle, i), serial) != 0) goto fail;
        printf("  retired root     serial %s\n", serial);
        dropped++;
    }
    if (dropped == 0 && sk_X509_num(bundle) == 1) {
        printf("%s/bundle.pem already holds root.pem only: nothing to retire\n", pki);
        status = CG_OK;
        goto out;
    }
    if (bundle_file(&f, pki, root) != 0 || cg_files_write(&f, 1, 1, &written) != 0) goto fail;
    if (ca_cert_serial_hex(cur, serial) != 0) goto fail;
    printf("%s/bundle.pem now trusts root serial %s only. Reload the gateway: certificates\n"
           "under the retired roots are refused from the next handshake on.\n",
           pki, serial);
    status = CG_OK;
    goto out;
fail:
    cg_fail(CMD, "retire-root");
out:
    cg_file_release(&f);
    sk_X509_pop_free(root, X509_free);
    sk_X509_pop_free(iss, X509_free);
    sk_X509_pop_free(bundle, X509_free);
    return status;
#undef CMD
}
