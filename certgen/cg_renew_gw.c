/* certgen renew-gateway: the gateway's serving certificate renewed offline
 * (the gateway does the same by itself at 2/3 of the certificate's life:
 * gateway/gw_selfrenew.c). Same SPIFFE ID and DNS/IP names, a new key. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca_gwcert.h"
#include "ca_pem.h"
#include "ca_spiffe.h"
#include "cg.h"
#include "tsr_fs.h"

#define CMD "renew-gateway"

static const char help[] =
    "Usage: certgen renew-gateway --pki DIR [--store DB]\n"
    "\n"
    "Renew the gateway certificate DIR/gateway.pem under the issuing CA in DIR:\n"
    "a new key (DIR/gateway.key), the same SPIFFE ID spiffe://TD/gateway, the same\n"
    "DNS and IP names and the same lifetime (never past the issuing CA). The\n"
    "running gateway renews its own certificate at 2/3 of its lifetime; this is\n"
    "the same, offline. Reload the gateway afterwards (SIGHUP, systemctl reload):\n"
    "new connections get the new certificate, open ones keep theirs.\n"
    "\n"
    "The files are replaced so that a crash at any point leaves a matching pair\n"
    "(or DIR/gateway.pem.new, which the gateway and the next renew-gateway finish).\n"
    "\n"
    "Options:\n"
    "  --pki DIR          the PKI directory made by certgen init (required)\n"
    "  --store DB         also record the certificate in the gateway's database\n"
    "                     (<data_dir>/tessera.db, or the replicas' postgresql://... URI),\n"
    "                     as the gateway records its own\n"
    "                     renewals; `certgen list --store DB` lists them\n"
    "  -h, --help         show this help\n";

int cg_cmd_renew_gateway(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"pki", required_argument, NULL, 'p'},
        {"store", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *pki = NULL, *store = NULL;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'p': pki = optarg; break;
        case 's': store = optarg; break;
        case 'h': fputs(help, stdout); return CG_OK;
        default: return cg_bad_option(CMD, argc, argv, c);
        }
    }
    if (optind < argc) return cg_usage_error(CMD, "unexpected argument \"%s\"", argv[optind]);
    if (pki == NULL || pki[0] == '\0')
        return cg_usage_error(CMD, "--pki DIR is required (the directory of certgen init)");

    int status = CG_FAIL, recovered = 0;
    ca_issuer *issuing = NULL;
    STACK_OF(X509) *bundle = NULL, *current = NULL;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    char *chain_pem = NULL;
    size_t chain_len = 0;
    char iss_pem[CG_PATH_MAX], iss_key[CG_PATH_MAX], bundle_path[CG_PATH_MAX];
    char gw_pem[CG_PATH_MAX], gw_key[CG_PATH_MAX], td[CA_TRUST_DOMAIN_MAX + 1];
    char old_serial[41], serial[41], until[32], id[CG_PATH_MAX];
    if (cg_path(iss_pem, pki, "issuing.pem") != 0 || cg_path(iss_key, pki, "issuing.key") != 0 ||
        cg_path(bundle_path, pki, "bundle.pem") != 0 || cg_path(gw_pem, pki, "gateway.pem") != 0 ||
        cg_path(gw_key, pki, "gateway.key") != 0) {
        cg_fail(CMD, "path");
        goto out;
    }
    if (ca_gwcert_recover(gw_pem, gw_key, &recovered) != 0) {
        cg_fail(CMD, "finish an interrupted renewal");
        goto out;
    }
    if (recovered)
        printf("Finished an interrupted renewal: %s.new is now %s\n", gw_pem, gw_pem);
    if (ca_issuer_load(iss_pem, iss_key, &issuing) != 0) {
        cg_error(CMD, "cannot load the issuing CA of %s: %s", pki, tsr_errmsg());
        fprintf(stderr, "Is %s a PKI directory made by certgen init?\n", pki);
        goto out;
    }
    if (ca_issuing_trust_domain(issuing->cert, td, sizeof td) != 0 ||
        ca_certs_load_file(bundle_path, &bundle) != 0 ||
        ca_certs_load_file(gw_pem, &current) != 0 || sk_X509_num(current) < 1 ||
        ca_cert_serial_hex(sk_X509_value(current, 0), old_serial) != 0) {
        cg_fail(CMD, "load the PKI");
        goto out;
    }
    if (ca_gateway_renew(issuing, sk_X509_value(current, 0), td, 0, &key, &cert) != 0 ||
        cg_self_verify(bundle, issuing->cert, cert, 1) != 0) {
        cg_fail(CMD, "issue the certificate");
        goto out;
    }
    snprintf(id, sizeof id, "spiffe://%s/gateway", td);
    if (store != NULL && cg_record(store, cert, id) != 0) {
        cg_error(CMD, "cannot record the certificate in %s: %s", store, tsr_errmsg());
        fprintf(stderr, "Nothing was written.\n");
        goto out;
    }
    if (ca_cert_to_pem(issuing->cert, &chain_pem, &chain_len) != 0 ||
        ca_gwcert_install(gw_pem, gw_key, cert, chain_pem, key) != 0) {
        cg_fail(CMD, "write");
        goto out;
    }
    int64_t nb = 0, na = 0;
    if (ca_cert_serial_hex(cert, serial) != 0 || ca_cert_validity(cert, &nb, &na) != 0) {
        cg_fail(CMD, CMD);
        goto out;
    }
    cg_format_time(na, until);
    printf("Renewed %s for %s\n  serial %s (was %s), valid until %s, new key %s%s%s\n"
           "Reload the gateway (SIGHUP, systemctl reload tessera-gateway) to serve it.\n",
           gw_pem, id, serial, old_serial, until, gw_key, store != NULL ? "\n  recorded in " : "",
           store != NULL ? store : "");
    status = CG_OK;
out:
    free(chain_pem);
    EVP_PKEY_free(key);
    X509_free(cert);
    ca_issuer_free(issuing);
    sk_X509_pop_free(bundle, X509_free);
    sk_X509_pop_free(current, X509_free);
    return status;
}
