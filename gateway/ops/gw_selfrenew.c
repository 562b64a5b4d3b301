#include "gw_selfrenew.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ca_gwcert.h"
#include "ca_pem.h"
#include "gw_config.h"
#include "gw_crl.h"
#include "gw_reload.h"
#include "gw_store.h"
#include "tsr_fs.h"
#include "tsr_time.h"

/* A failed renewal is tried again this much later (and logged each time). */
#define RETRY_SECONDS 60
/* A certificate short of life is reported again this often. */
#define WARN_EVERY_SECONDS 3600

enum { EXP_GATEWAY = 0, EXP_ISSUING, EXP_ROOT, EXP_CRL, EXP_COUNT };
static const char *const EXP_NAME[EXP_COUNT] = {"gateway", "issuing", "root", "crl"};
/* 0 = not known yet (not rendered). Atomics: the metrics thread reads them. */
static _Atomic int64_t expiry[EXP_COUNT];

struct gw_selfrenew {
    gw_app *app;
    gw_server *server;
    gw_store *store;
    X509 *served;               /* the first certificate of pki.server_cert */
    struct stat served_st;      /* of the file it was read from */
    int64_t retry_at;           /* no renewal attempt before this */
    struct {
        char serial[41];
        int64_t at;
    } warned[EXP_CRL];          /* last warning per certificate kind */
};

void gw_expiry_render(FILE *f)
{
    fputs("# HELP tessera_certificate_expiry_timestamp_seconds When a certificate the gateway "
          "serves with expires (Unix time): gateway (its serving certificate), issuing (the "
          "issuing CA), root (the bundle's root that expires first), crl (nextUpdate of the "
          "CRL it serves).\n"
          "# TYPE tessera_certificate_expiry_timestamp_seconds gauge\n",
          f);
    for (int i = 0; i < EXP_COUNT; i++) {
        int64_t v = atomic_load(&expiry[i]);
        if (v > 0)
            fprintf(f, "tessera_certificate_expiry_timestamp_seconds{cert=\"%s\"} %lld\n",
                    EXP_NAME[i], (long long)v);
    }
}

int gw_selfrenew_new(gw_app *app, gw_server *server, gw_selfrenew **out)
{
    gw_selfrenew *r = calloc(1, sizeof *r);
    TSR_ENSURE(r != NULL, TSR_E_INTERNAL, "out of memory");
    r->app = app;
    r->server = server;
    if (gw_store_open(app->cfg->store_path, app->keyring, &r->store) != 0) {
        free(r);
        return -1;
    }
    *out = r;
    return 0;
}

void gw_selfrenew_free(gw_selfrenew *r)
{
    if (r == NULL) return;
    gw_store_close(r->store);
    X509_free(r->served);
    free(r);
}

static void format_utc(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Read pki.server_cert again when the file changed (a reload, a renewal,
 * certgen). Keeps the previous one when the file cannot be read. */
static void load_served(gw_selfrenew *r, const gw_config *cfg)
{
    struct stat st;
    if (stat(cfg->server_cert_path, &st) != 0) return;
    if (r->served != NULL && st.st_ino == r->served_st.st_ino &&
        st.st_dev == r->served_st.st_dev && st.st_size == r->served_st.st_size &&
        st.st_mtim.tv_sec == r->served_st.st_mtim.tv_sec &&
        st.st_mtim.tv_nsec == r->served_st.st_mtim.tv_nsec)
        return;
    STACK_OF(X509) *chain = NULL;
    if (ca_certs_load_file(cfg->server_cert_path, &chain) != 0 || sk_X509_num(chain) < 1) {
        sk_X509_pop_free(chain, X509_free);
        return;
    }
    X509_free(r->served);
    r->served = sk_X509_shift(chain);
    sk_X509_pop_free(chain, X509_free);
    r->served_st = st;
}

/* Record one expiry and warn when less than 1/6 of the lifetime is left. */
static void watch(gw_selfrenew *r, int kind, X509 *cert, int64_t now, const char *what,
                  const char *fix)
{
    int64_t nb = 0, na = 0;
    char serial[41];
    if (cert == NULL || ca_cert_validity(cert, &nb, &na) != 0 ||
        ca_cert_serial_hex(cert, serial) != 0)
        return;
    atomic_store(&expiry[kind], na);
    if (now < ca_expiry_warn_at(nb, na)) return;
    if (strcmp(r->warned[kind].serial, serial) == 0 && now - r->warned[kind].at < WARN_EVERY_SECONDS)
        return;
    snprintf(r->warned[kind].serial, sizeof r->warned[kind].serial, "%s", serial);
    r->warned[kind].at = now;
    char until[32], left[32];
    format_utc(na, until);
    if (na > now) tsr_duration_format(na - now, left, sizeof left);
    else snprintf(left, sizeof left, "0s");
    fprintf(stderr,
            "<4>tessera-gateway: warning: %s (serial %s) expires at %s, in %s: less than 1/6 of "
            "its lifetime is left; %s\n",
            what, serial, until, left, fix);
}

static int renew(gw_selfrenew *r, gw_pki *pki, int64_t now)
{
    const gw_config *cfg = pki->cfg;
    int rc = -1;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    SSL_CTX *ctx = NULL;
    char old_serial[41], until[32];
    int64_t old_na = 0, issuer_na = 0, nb = 0;
    gw_cert_rec rec;
    memset(&rec, 0, sizeof rec);
    TSR_TRY(ca_cert_serial_hex(r->served, old_serial));
    TSR_TRY(ca_cert_validity(r->served, &nb, &old_na));
    TSR_TRY(ca_cert_validity(pki->issuer->cert, &nb, &issuer_na));
    /* A new certificate cannot outlive the issuing CA: when that is what
     * limits it, renewing again would not help (the warning says what does). */
    TSR_TRY_ENSURE(issuer_na > old_na, TSR_E_STATE,
                   "the issuing CA expires (%lld) no later than the gateway certificate: rotate "
                   "it (certgen rotate-issuing)",
                   (long long)issuer_na);
    TSR_TRY(ca_gateway_renew(pki->issuer, r->served, cfg->trust_domain, now, &key, &cert));
    /* Recorded (durably) before it is written or served. */
    TSR_TRY(ca_cert_serial_hex(cert, rec.serial));
    TSR_TRY(ca_cert_validity(cert, &rec.not_before, &rec.not_after));
    snprintf(rec.spiffe_id, sizeof rec.spiffe_id, "spiffe://%s/gateway", cfg->trust_domain);
    rec.issued_at = now;
    TSR_TRY(gw_store_cert_insert(r->store, &rec));
    TSR_TRY(ca_gwcert_install(cfg->server_cert_path, cfg->server_key_path, cert, pki->chain_pem,
                              key));
    /* New connections get it; open ones keep the context they have. */
    TSR_TRY(gw_reload_ssl_ctx(pki, &ctx));
    TSR_TRY(gw_server_set_ssl_ctx(r->server, ctx));
    format_utc(rec.not_after, until);
    fprintf(stderr,
            "tessera-gateway: renewed the gateway certificate: serial %s (was %s), valid until "
            "%s, new key; new connections get it, open ones keep theirs\n",
            rec.serial, old_serial, until);
    rc = 0;
out:
    SSL_CTX_free(ctx);
    X509_free(cert);
    EVP_PKEY_free(key);
    return rc;
}

void gw_selfrenew_tick(gw_selfrenew *r, int64_t now)
{
    if (r == NULL) return;
    if (now == 0) now = tsr_now_unix();
    gw_pki *pki = gw_app_pki(r->app);
    load_served(r, pki->cfg);

    watch(r, EXP_GATEWAY, r->served, now, "the gateway certificate",
          "it renews itself at 2/3 of its lifetime: see the errors above, or run certgen "
          "renew-gateway and reload");
    watch(r, EXP_ISSUING, pki->issuer->cert, now, "the issuing CA certificate",
          "rotate it with certgen rotate-issuing and reload (docs/operations.md, \"Rotating the "
          "issuing CA\")");
    X509 *first_root = NULL;
    int64_t first_na = 0;
    for (int i = 0; i < sk_X509_num(pki->roots); i++) {
        int64_t nb = 0, na = 0;
        X509 *root = sk_X509_value(pki->roots, i);
        if (ca_cert_validity(root, &nb, &na) == 0 && (first_root == NULL || na < first_na)) {
            first_root = root;
            first_na = na;
        }
    }
    watch(r, EXP_ROOT, first_root, now, "a root CA certificate of the trust bundle",
          "rotate it with certgen rotate-root (docs/operations.md, \"Rotating the root CA\")");
    gw_crl *crl = NULL;
    if (gw_crl_current(r->app->crl, pki, r->app->revoked, r->store, now, &crl) == 0) {
        atomic_store(&expiry[EXP_CRL], crl->next_update);
        gw_crl_release(crl);
    }

    int64_t nb = 0, na = 0;
    if (r->served != NULL && now >= r->retry_at && ca_cert_validity(r->served, &nb, &na) == 0 &&
        now >= ca_renew_due(nb, na)) {
        if (renew(r, pki, now) != 0) {
            fprintf(stderr,
                    "<3>tessera-gateway: cannot renew the gateway certificate %s: %s (trying "
                    "again in %ds)\n",
                    pki->cfg->server_cert_path, tsr_errmsg(), RETRY_SECONDS);
            r->retry_at = now + RETRY_SECONDS;
        } else {
            load_served(r, pki->cfg);
            int64_t nnb = 0, nna = 0;
            if (r->served != NULL && ca_cert_validity(r->served, &nnb, &nna) == 0)
                atomic_store(&expiry[EXP_GATEWAY], nna);
        }
    }
    gw_pki_release(pki);
}
