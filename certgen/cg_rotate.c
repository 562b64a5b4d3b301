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

/* One rotation, step by step. A step returns STEP_OK to go on, STEP_STOP
 * when it has said why not, STEP_FAIL for "rotate-issuing" failures that
 * only the recorded error explains. */
enum { STEP_OK = 0, STEP_STOP = 1, STEP_FAIL = -1 };

typedef struct rotate_run {
    const char *pki;
    int64_t issuing_ttl, leaf_ttl;
    enum ca_key_type type;
    int have_type, have_gateway;
    ca_issuer *root, *old, *fresh;
    STACK_OF(X509) *bundle, *gw_chain;
    EVP_PKEY *gw_key;
    X509 *gw_cert;
    cg_file files[3];
    size_t n_files;
    ca_leaf_names names;
    char root_pem[CG_PATH_MAX], root_key[CG_PATH_MAX], iss_pem[CG_PATH_MAX],
        iss_key[CG_PATH_MAX], bundle_path[CG_PATH_MAX], gw_pem[CG_PATH_MAX],
        gw_key_path[CG_PATH_MAX], archive[CG_PATH_MAX], arch_pem[CG_PATH_MAX],
        arch_key[CG_PATH_MAX], td[CA_TRUST_DOMAIN_MAX + 1], old_serial[41], new_serial[41];
} rotate_run;

/* CG_OK, -1 after --help, or a usage error's status. */
static int parse_rotate_args(int argc, char **argv, rotate_run *r)
{
    static const struct option longopts[] = {
        {"pki", required_argument, NULL, 'p'},
        {"key-type", required_argument, NULL, 'k'},
        {"issuing-ttl", required_argument, NULL, 'I'},
        {"leaf-ttl", required_argument, NULL, 'L'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    r->issuing_ttl = CG_ISSUING_TTL;
    r->leaf_ttl = CG_LEAF_TTL;
    r->type = CA_KEY_P256;
    int c, rc;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'p': r->pki = optarg; break;
        case 'k':
            if ((rc = cg_parse_key_type(CMD, optarg, &r->type)) != CG_OK) return rc;
            r->have_type = 1;
            break;
        case 'I':
            if ((rc = cg_parse_ttl(CMD, "--issuing-ttl", optarg, &r->issuing_ttl)) != CG_OK)
                return rc;
            break;
        case 'L':
            if ((rc = cg_parse_ttl(CMD, "--leaf-ttl", optarg, &r->leaf_ttl)) != CG_OK) return rc;
            break;
        case 'h': fputs(help, stdout); return -1;
        default: return cg_bad_option(CMD, argc, argv, c);
        }
    }
    if (optind < argc) return cg_usage_error(CMD, "unexpected argument \"%s\"", argv[optind]);
    if (r->pki == NULL || r->pki[0] == '\0')
        return cg_usage_error(CMD, "--pki DIR is required (the directory of certgen init)");
    return CG_OK;
}

/* 1. The root, with its key, and the trust bundle. */
static int load_root(rotate_run *r)
{
    const char *pki = r->pki;
    if (cg_path(r->root_pem, pki, "root.pem") != 0 || cg_path(r->root_key, pki, "root.key") != 0 ||
        cg_path(r->iss_pem, pki, "issuing.pem") != 0 ||
        cg_path(r->iss_key, pki, "issuing.key") != 0 ||
        cg_path(r->bundle_path, pki, "bundle.pem") != 0 ||
        cg_path(r->gw_pem, pki, "gateway.pem") != 0 ||
        cg_path(r->gw_key_path, pki, "gateway.key") != 0 ||
        cg_path(r->archive, pki, "archive") != 0)
        return STEP_FAIL;
    if (!tsr_path_exists(r->root_pem)) {
        cg_error(CMD, "%s not found: is %s a PKI directory made by certgen init?", r->root_pem,
                 pki);
        return STEP_STOP;
    }
    if (!tsr_path_exists(r->root_key)) {
        cg_error(CMD, "%s not found: signing a new issuing CA needs the root key.", r->root_key);
        fprintf(stderr,
                "If you moved the root key offline, copy it back to %s (mode 0600) for the\n"
                "rotation, run this command again, then move it offline again.\n",
                r->root_key);
        return STEP_STOP;
    }
    if (ca_issuer_load(r->root_pem, r->root_key, &r->root) != 0) {
        cg_fail(CMD, "load the root CA");
        return STEP_STOP;
    }
    if (ca_certs_load_file(r->bundle_path, &r->bundle) != 0) {
        cg_fail(CMD, "load the trust bundle");
        return STEP_STOP;
    }
    return STEP_OK;
}

/* 2. The current issuing CA: it must load, match its key and chain to the root. */
static int check_current(rotate_run *r)
{
    if (ca_issuer_load(r->iss_pem, r->iss_key, &r->old) != 0) {
        cg_error(CMD, "cannot load the current issuing CA: %s", tsr_errmsg());
        fprintf(stderr, "Restore %s and %s (an earlier rotation archived them in %s) and try "
                        "again.\n",
                r->iss_pem, r->iss_key, r->archive);
        return STEP_STOP;
    }
    if (X509_check_issued(r->root->cert, r->old->cert) != X509_V_OK) {
        cg_error(CMD, "%s was not issued by %s; refusing to rotate a PKI whose files do not "
                      "belong together",
                 r->iss_pem, r->root_pem);
        return STEP_STOP;
    }
    if (ca_issuing_trust_domain(r->old->cert, r->td, sizeof r->td) != 0 ||
        ca_cert_serial_hex(r->old->cert, r->old_serial) != 0) {
        cg_fail(CMD, r->iss_pem);
        return STEP_STOP;
    }
    if (!r->have_type && cg_key_type_of(r->old->key, &r->type) != 0) r->type = CA_KEY_P256;
    return STEP_OK;
}

/* 3. The new issuing CA, and its files' bytes. */
static int make_issuing(rotate_run *r)
{
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    if (ca_create_issuing(r->root, r->type, r->td, r->issuing_ttl, 0, &key, &cert) != 0) {
        EVP_PKEY_free(key);
        X509_free(cert);
        cg_fail(CMD, "create the new issuing CA");
        return STEP_STOP;
    }
    if (ca_issuer_new(cert, key, &r->fresh) != 0) return STEP_FAIL; /* takes ownership */
    if (ca_cert_serial_hex(r->fresh->cert, r->new_serial) != 0) return STEP_FAIL;
    if (cg_file_key(&r->files[r->n_files++], r->pki, "issuing.key", r->fresh->key) != 0 ||
        cg_file_certs(&r->files[r->n_files++], r->pki, "issuing.pem", r->fresh->cert, NULL) != 0)
        return STEP_FAIL;
    return STEP_OK;
}

/* 4. The gateway certificate, same key and names, under the new CA. */
static int reissue_gateway(rotate_run *r)
{
    r->have_gateway = tsr_path_exists(r->gw_pem);
    if (!r->have_gateway) return STEP_OK;
    if (ca_certs_load_file(r->gw_pem, &r->gw_chain) != 0 ||
        ca_key_load_file(r->gw_key_path, &r->gw_key) != 0) {
        cg_fail(CMD, "load the gateway certificate and key");
        return STEP_STOP;
    }
    if (X509_check_private_key(sk_X509_value(r->gw_chain, 0), r->gw_key) != 1) {
        cg_error(CMD, "%s does not match %s; fix the gateway files first", r->gw_key_path,
                 r->gw_pem);
        return STEP_STOP;
    }
    if (ca_leaf_names_from(sk_X509_value(r->gw_chain, 0), &r->names) != 0) {
        cg_fail(CMD, r->gw_pem);
        return STEP_STOP;
    }
    char id[CG_PATH_MAX];
    snprintf(id, sizeof id, "spiffe://%s/gateway", r->td);
    ca_leaf_request req = {
        .spiffe_id = id,
        .public_key = r->gw_key,
        .ttl_seconds = r->leaf_ttl,
        .dns_names = (const char *const *)r->names.dns,
        .n_dns_names = r->names.n_dns,
        .ip_addresses = r->names.ip_ptrs,
        .n_ip_addresses = r->names.n_ips,
    };
    if (ca_issue_leaf(r->fresh, &req, &r->gw_cert) != 0 ||
        cg_self_verify(r->bundle, r->fresh->cert, r->gw_cert, 1) != 0) {
        cg_fail(CMD, "re-issue the gateway certificate");
        return STEP_STOP;
    }
    if (cg_file_certs(&r->files[r->n_files++], r->pki, "gateway.pem", r->gw_cert,
                      r->fresh->cert) != 0)
        return STEP_FAIL;
    return STEP_OK;
}

/* 5. Archive the old issuing CA, then replace: key before certificate. */
static int archive_and_write(rotate_run *r)
{
    char rel[CG_PATH_MAX];
    size_t written = 0;
    snprintf(rel, sizeof rel, "issuing-%s.pem", r->old_serial);
    if (cg_path(r->arch_pem, r->archive, rel) != 0) return STEP_FAIL;
    snprintf(rel, sizeof rel, "issuing-%s.key", r->old_serial);
    if (cg_path(r->arch_key, r->archive, rel) != 0) return STEP_FAIL;
    if (cg_private_dir(CMD, r->archive) != 0 ||
        cg_archive_copy(r->iss_key, r->arch_key, 0600) != 0 ||
        cg_archive_copy(r->iss_pem, r->arch_pem, 0644) != 0) {
        cg_fail(CMD, "archive the old issuing CA");
        return STEP_STOP;
    }
    if (cg_files_write(r->files, r->n_files, 1, &written) != 0) {
        cg_error(CMD, "%s", tsr_errmsg());
        fprintf(stderr, "The old issuing CA is archived in %s and %s.\n", r->arch_pem,
                r->arch_key);
        for (size_t i = 0; i < written; i++) fprintf(stderr, "  written: %s\n", r->files[i].path);
        return STEP_STOP;
    }
    return STEP_OK;
}

static int report_rotation(const rotate_run *r)
{
    char until[32];
    int64_t nb = 0, na = 0;
    if (ca_cert_validity(r->fresh->cert, &nb, &na) != 0) return STEP_FAIL;
    cg_format_time(na, until);
    printf("Rotated the issuing CA of %s (trust domain %s)\n", r->pki, r->td);
    printf("  new issuing CA   %s  serial %s, %s key, valid until %s\n", r->iss_pem,
           r->new_serial, ca_key_type_name(r->type), until);
    printf("  old issuing CA   archived as %s and %s\n", r->arch_pem, r->arch_key);
    if (r->have_gateway)
        printf("  gateway          %s re-issued under the new issuing CA (same key)\n", r->gw_pem);
    else
        printf("  gateway          no %s: nothing re-issued\n", r->gw_pem);
    printf("Certificates issued by the old issuing CA keep verifying until they expire (their "
           "chain\nfiles carry it). Re-issue users with: certgen issue-user NAME --pki %s "
           "--force\n",
           r->pki);
    return STEP_OK;
}

int cg_cmd_rotate_issuing(int argc, char **argv)
{
    rotate_run r;
    memset(&r, 0, sizeof r);
    int rc = parse_rotate_args(argc, argv, &r);
    if (rc == -1) return CG_OK; /* --help */
    if (rc != CG_OK) return rc;

    int step;
    if ((step = load_root(&r)) == STEP_OK && (step = check_current(&r)) == STEP_OK &&
        (step = make_issuing(&r)) == STEP_OK && (step = reissue_gateway(&r)) == STEP_OK &&
        (step = archive_and_write(&r)) == STEP_OK)
        step = report_rotation(&r);
    if (step == STEP_FAIL) cg_fail(CMD, "rotate-issuing");
    for (size_t i = 0; i < r.n_files; i++) cg_file_release(&r.files[i]);
    ca_leaf_names_free(&r.names);
    EVP_PKEY_free(r.gw_key);
    X509_free(r.gw_cert);
    ca_issuer_free(r.root);
    ca_issuer_free(r.old);
    ca_issuer_free(r.fresh);
    sk_X509_pop_free(r.bundle, X509_free);
    sk_X509_pop_free(r.gw_chain, X509_free);
    return step == STEP_OK ? CG_OK : CG_FAIL;
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
