/* certgen issue-proxy and list: proxy certificates recorded in the
 * gateway's store, so that they are listed and revoked like every
 * certificate the gateway issues (docs/certgen.md, "Recorded certificates").
 *
 * Where the record lives: the gateway's own database (--store, normally
 * <data_dir>/tessera.db), written through the same store code the gateway
 * uses (gateway/gw_store.c: sqlite WAL, so a running gateway and certgen may
 * both write). The certificate is recorded before its files are written:
 * a certificate that exists is always known to the gateway. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca_pem.h"
#include "ca_spiffe.h"
#include "cg.h"
#include "gw_store.h"
#include "tsr_fs.h"
#include "tsr_time.h"

/* --store: the gateway's sqlite file, or its PostgreSQL database as a
 * postgres:// or postgresql:// URI (the replicas' store: docs/operations.md). */
static bool store_is_dsn(const char *store)
{
    return strncmp(store, "postgres://", 11) == 0 || strncmp(store, "postgresql://", 13) == 0;
}

int cg_store_open(const char *store, gw_store **out)
{
    *out = NULL;
    if (store_is_dsn(store)) {
        /* The store's own locator for a database (gw_store.h). */
        char locator[4096];
        TSR_ENSURE((size_t)snprintf(locator, sizeof locator, "%s%s", GW_STORE_PG_PREFIX, store) <
                       sizeof locator,
                   TSR_E_LIMIT, "--store: the URI is too long");
        return gw_store_open(locator, NULL, out);
    }
    /* gw_store_open would create a missing file: a mistyped path must not
     * become a second, empty database. */
    TSR_ENSURE(tsr_path_exists(store), TSR_E_NOTFOUND,
               "%s does not exist: --store is the gateway's database (<data_dir>/tessera.db, "
               "or a postgresql:// URI; start the gateway once to create it)",
               store);
    return gw_store_open(store, NULL, out);
}

int cg_record(const char *store_path, X509 *cert, const char *spiffe_id)
{
    gw_store *s = NULL;
    gw_cert_rec rec;
    memset(&rec, 0, sizeof rec);
    TSR_GUARD(ca_cert_serial_hex(cert, rec.serial));
    TSR_GUARD(ca_cert_validity(cert, &rec.not_before, &rec.not_after));
    snprintf(rec.spiffe_id, sizeof rec.spiffe_id, "%s", spiffe_id);
    rec.issued_at = rec.not_before + 60;   /* notBefore is backdated 60 s */
    TSR_GUARD(cg_store_open(store_path, &s));
    int rc = gw_store_cert_insert(s, &rec);
    gw_store_close(s);
    return rc;
}

#define CMD "issue-proxy"

static const char help[] =
    "Usage: certgen issue-proxy NAME --pki DIR --store DB [OPTIONS]\n"
    "\n"
    "Issue a client certificate for the TLS-terminating proxy NAME (SPIFFE ID\n"
    "spiffe://TD/proxy/NAME), signed by the issuing CA in DIR, into\n"
    "DIR/proxies/NAME.pem (chain: leaf, issuing) and DIR/proxies/NAME.key, and\n"
    "record it in the gateway's database DB first, so that `certgen list` lists\n"
    "it and `tessera cert revoke SERIAL` revokes it. The gateway trusts it once\n"
    "NAME is in proxy.trusted of its config (docs/operations.md).\n"
    "\n"
    "Options:\n"
    "  --pki DIR          the PKI directory made by certgen init (required)\n"
    "  --store DB         the gateway's database, <data_dir>/tessera.db, or the\n"
    "                     replicas' postgresql://... URI (required); run certgen\n"
    "                     as the gateway's user\n"
    "  --ttl D            certificate lifetime (default 90d; never past the issuing CA)\n"
    "  --key-type TYPE    p256, p384 or ed25519 (default: the issuing CA's key type)\n"
    "  --force            replace an existing certificate and key of NAME (the old\n"
    "                     certificate stays valid until revoked)\n"
    "  -h, --help         show this help\n"
    "\n"
    "NAME: 1-64 of a-z 0-9 . _ -.\n";

int cg_cmd_issue_proxy(int argc, char **argv)
{
    cg_named_leaf o = {.cmd = CMD, .kind = "proxy", .subdir = "proxies"};
    int done = 0, rc = cg_parse_named(argc, argv, help, &o, &done);
    if (rc != CG_OK || done) return rc;
    int status = cg_issue_named(&o);
    if (status == CG_OK) printf("Trust it in the gateway config: proxy: {trusted: [%s]}\n", o.name);
    return status;
}

#undef CMD
#define CMD "list"

static const char list_help[] =
    "Usage: certgen list --store DB\n"
    "\n"
    "List the recorded certificates that belong to no sandbox: the gateway's own\n"
    "(certgen renew-gateway, and the gateway's self-renewals) and proxies'\n"
    "(certgen issue-proxy), oldest first: serial, SPIFFE ID, notAfter and state.\n"
    "Sandbox certificates are listed by `tessera cert list SANDBOX`. Revoke any of\n"
    "them with `tessera cert revoke SERIAL`.\n"
    "\n"
    "Options:\n"
    "  --store DB         the gateway's database, <data_dir>/tessera.db, or the\n"
    "                     replicas' postgresql://... URI (required)\n"
    "  -h, --help         show this help\n";

int cg_cmd_list(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"store", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *store = NULL;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 's': store = optarg; break;
        case 'h': fputs(list_help, stdout); return CG_OK;
        default: return cg_bad_option(CMD, argc, argv, c);
        }
    }
    if (optind < argc) return cg_usage_error(CMD, "unexpected argument \"%s\"", argv[optind]);
    if (store == NULL || store[0] == '\0')
        return cg_usage_error(CMD, "--store DB is required (<data_dir>/tessera.db)");
    gw_store *s = NULL;
    gw_cert_rec *certs = NULL;
    size_t n = 0;
    if (cg_store_open(store, &s) != 0 || gw_store_cert_list(s, NULL, &certs, &n) != 0) {
        gw_store_close(s);
        return cg_fail(CMD, store);
    }
    gw_store_close(s);
    int64_t now = tsr_now_unix();
    printf("%-32s  %-20s  %-8s  %s\n", "SERIAL", "NOT AFTER", "STATE", "SPIFFE ID");
    for (size_t i = 0; i < n; i++) {
        if (certs[i].sandbox_id[0] != '\0') continue;
        char until[32];
        cg_format_time(certs[i].not_after, until);
        printf("%-32s  %-20s  %-8s  %s\n", certs[i].serial, until,
               certs[i].revoked_at != 0 ? "revoked" : certs[i].not_after <= now ? "expired" : "valid",
               certs[i].spiffe_id);
    }
    gw_store_free_certs(certs, n);
    return fflush(stdout) == 0 ? CG_OK : CG_FAIL;
}
