#include "gw_app.h"

#include <errno.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ca_pem.h"
#include "ca_spiffe.h"
#include "gw_audit.h"
#include "gw_bundle.h"
#include "gw_config.h"
#include "gw_crl.h"
#include "gw_ratelimit.h"
#include "gw_revocation.h"
#include "gw_svc_sandbox.h"
#include "gw_secretbox.h"
#include "gw_commit.h"
#include "gw_state.h"
#include "gw_revfeed.h"
#include "gw_store.h"
#include "gw_driver.h"
#include "tsr_fs.h"
#include "tsr_time.h"

/* Verified client chains kept per PKI snapshot (ca_trust_enable_cache):
 * a leaf and its issuing CA are ~1.3 KiB, so at most ~6 MiB. */
#define GW_PKI_VERIFY_CACHE 4096

static int load_revocations_cb(void *arg, const char *serial, int64_t not_after)
{
    return gw_revocations_add(arg, serial, not_after);
}

/* docs/operations.md, "The owner replica". */
static int replica_name(gw_app *app, const gw_config *cfg)
{
    char host[65] = "";
    if (!gw_store_is_pg(cfg->store_path)) return 0;
    TSR_ENSURE(gethostname(host, sizeof host - 1) == 0, TSR_E_IO, "gethostname: %s",
               strerror(errno));
    int n = snprintf(app->replica, sizeof app->replica, "%s:%s", host, cfg->data_dir);
    if (n < 0 || (size_t)n >= sizeof app->replica) {
        unsigned char md[32];
        TSR_ENSURE(SHA256((const unsigned char *)cfg->data_dir, strlen(cfg->data_dir), md) != NULL,
                   TSR_E_INTERNAL, "sha256");
        snprintf(app->replica, sizeof app->replica, "%s:", host);
        size_t at = strlen(app->replica);
        for (size_t i = 0; i < 16 && at + 2 < sizeof app->replica; i++, at += 2)
            snprintf(app->replica + at, 3, "%02x", md[i]);
    }
    return 0;
}

static int open_keyring(gw_app *app, const gw_config *cfg)
{
    if (!tsr_path_exists(cfg->secrets_key_path)) {
        /* First run: make the provider-secret key (0600, never printed). */
        char dir[GW_CONFIG_PATH_MAX];
        snprintf(dir, sizeof dir, "%s", cfg->secrets_key_path);
        char *slash = strrchr(dir, '/');
        if (slash != NULL && slash != dir) {
            *slash = '\0';
            TSR_GUARD(tsr_mkdir_p(dir, 0700));
        }
        TSR_GUARD(gw_keyring_create_file(cfg->secrets_key_path));
        app->keyring_created = true;
    }
    return gw_keyring_load(cfg->secrets_key_path, &app->keyring);
}

/* The bundle's roots (kept, with their SHA-256, for re-evaluating open
 * connections after a reload) and the SPIFFE bundle. Its sequence is the
 * bundle file's modification time: it grows whenever the file is rewritten. */
static int load_roots(gw_pki *pki, const gw_config *cfg)
{
    struct stat st;
    size_t len = 0;
    TSR_ENSURE(stat(cfg->bundle_path, &st) == 0, TSR_E_IO, "%s: cannot stat", cfg->bundle_path);
    TSR_GUARD(ca_certs_from_pem((const uint8_t *)pki->bundle_pem, strlen(pki->bundle_pem),
                                &pki->roots));
    int n = sk_X509_num(pki->roots);
    pki->root_sha256 = calloc((size_t)n, sizeof *pki->root_sha256);
    TSR_ENSURE(pki->root_sha256 != NULL, TSR_E_INTERNAL, "out of memory");
    for (int i = 0; i < n; i++) {
        unsigned int dlen = 0;
        TSR_ENSURE(X509_digest(sk_X509_value(pki->roots, i), EVP_sha256(), pki->root_sha256[i],
                               &dlen) == 1 && dlen == 32,
                   TSR_E_INTERNAL, "X509_digest failed");
    }
    pki->spiffe_sequence = st.st_mtime > 0 ? (int64_t)st.st_mtime : 0;
    return gw_spiffe_bundle_json(pki->roots, pki->spiffe_sequence, GW_BUNDLE_REFRESH_HINT,
                                 &pki->spiffe_bundle_json, &len);
}

/* The issuing CA must chain to a root of the bundle now: otherwise every
 * certificate it signs would be refused at the next handshake. */
static int check_issuer_trusted(const gw_pki *pki, const gw_config *cfg)
{
    int rc = -1;
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    TSR_TRY_ENSURE(ctx != NULL, TSR_E_INTERNAL, "out of memory");
    TSR_TRY_OSSL(X509_STORE_CTX_init(ctx, ca_trust_store(pki->trust), pki->issuer->cert, NULL),
                 TSR_E_INTERNAL, "X509_STORE_CTX_init");
    if (X509_verify_cert(ctx) != 1) {
        (void)TSR_FAIL(TSR_E_INPUT, "%s does not chain to a root of %s: %s",
                       cfg->issuing_cert_path, cfg->bundle_path,
                       X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
        goto out;
    }
    rc = 0;
out:
    X509_STORE_CTX_free(ctx);
    return rc;
}

int gw_pki_load(const gw_config *cfg, gw_pki **out)
{
    int rc = -1;
    STACK_OF(X509) *chain = NULL;
    uint8_t *bundle = NULL;
    size_t bundle_len = 0, chain_len = 0;
    gw_pki *pki = calloc(1, sizeof *pki);
    TSR_TRY_ENSURE(pki != NULL, TSR_E_INTERNAL, "out of memory");
    atomic_init(&pki->refs, 1);
    pki->cfg = cfg;
    TSR_TRY(ca_trust_load(cfg->bundle_path, cfg->trust_domain, &pki->trust));
    /* Reconnections with the same certificates skip the chain's signature
     * checks (ca_verify.c, "verified chains"); revocation, expiry and the
     * root being in this bundle are still decided on every handshake. */
    TSR_TRY(ca_trust_enable_cache(pki->trust, GW_PKI_VERIFY_CACHE));
    TSR_TRY(ca_issuer_load(cfg->issuing_cert_path, cfg->issuing_key_path, &pki->issuer));
    TSR_TRY(check_issuer_trusted(pki, cfg));
    TSR_TRY(tsr_read_file(cfg->bundle_path, CA_PEM_MAX_BYTES, &bundle, &bundle_len));
    pki->bundle_pem = (char *)bundle;
    bundle = NULL;
    TSR_TRY(load_roots(pki, cfg));
    /* Leaves are served with the issuing CA as their chain. */
    TSR_TRY(ca_certs_load_file(cfg->issuing_cert_path, &chain));
    TSR_TRY(ca_certs_to_pem(chain, &pki->chain_pem, &chain_len));
    pki->intermediates = chain;
    chain = NULL;
    *out = pki;
    pki = NULL;
    rc = 0;
out:
    sk_X509_pop_free(chain, X509_free);
    free(bundle);
    gw_pki_release(pki);
    return rc;
}

void gw_pki_release(gw_pki *pki)
{
    if (pki == NULL || atomic_fetch_sub(&pki->refs, 1) != 1) return;
    free(pki->chain_pem);
    free(pki->bundle_pem);
    free(pki->spiffe_bundle_json);
    sk_X509_pop_free(pki->intermediates, X509_free);
    sk_X509_pop_free(pki->roots, X509_free);
    free(pki->root_sha256);
    ca_issuer_free(pki->issuer);
    ca_trust_free(pki->trust);
    gw_config_free(pki->owned_cfg);
    free(pki);
}

gw_pki *gw_app_pki(gw_app *app)
{
    TSR_ASSERT(pthread_mutex_lock(&app->pki_lock) == 0);
    gw_pki *pki = app->pki;
    TSR_ASSERT(pki != NULL);
    atomic_fetch_add(&pki->refs, 1);
    (void)pthread_mutex_unlock(&app->pki_lock);
    return pki;
}

void gw_app_swap_pki(gw_app *app, gw_pki *pki)
{
    TSR_ASSERT(pthread_mutex_lock(&app->pki_lock) == 0);
    gw_pki *old = app->pki;
    pki->generation = old->generation + 1;
    app->pki = pki;
    atomic_store(&app->pki_generation, pki->generation);
    (void)pthread_mutex_unlock(&app->pki_lock);
    gw_pki_release(old);
}

int gw_app_init(gw_app *app, const gw_config *cfg)
{
    memset(app, 0, sizeof *app);
    app->cfg = cfg;
    TSR_ENSURE(pthread_mutex_init(&app->pki_lock, NULL) == 0, TSR_E_INTERNAL,
               "pthread_mutex_init failed");
    gw_store *store = NULL;
    int rc = -1;

    TSR_TRY(gw_pki_load(cfg, &app->pki));
    app->pki->generation = 1;
    atomic_store(&app->pki_generation, 1);
    TSR_TRY(tsr_mkdir_p(cfg->data_dir, 0700));
    TSR_TRY(open_keyring(app, cfg));
    TSR_TRY(gw_audit_open(cfg->audit_path, &app->audit));
    TSR_TRY(gw_revocations_new(&app->revoked));
    char crl_number_path[GW_CONFIG_PATH_MAX];
    TSR_TRY(tsr_path_join(crl_number_path, sizeof crl_number_path, cfg->data_dir, "crl.number"));
    TSR_TRY(gw_crl_cache_new(crl_number_path, &app->crl));
    TSR_TRY(gw_ratelimit_new(cfg->renew_limit, cfg->renew_window * 1000, &app->renew_limit));
    TSR_TRY(gw_states_new(&app->states));

    /* Open once here so migrations run before any worker starts, and load
     * every still-relevant revoked serial into memory. */
    TSR_TRY(gw_store_open(cfg->store_path, app->keyring, &store));
    TSR_TRY(gw_store_revoked_each(store, tsr_now_unix(), load_revocations_cb, app->revoked));
    TSR_TRY(replica_name(app, cfg));
    /* On a shared database, what other gateways revoke from now on. */
    TSR_TRY(gw_revfeed_start(cfg->store_path, load_revocations_cb, app->revoked, &app->revfeed));
    /* The committer's own connection: renewals are recorded in batches. */
    TSR_TRY(gw_committer_start(store, &app->committer));
    store = NULL;
    rc = 0;
out:
    gw_store_close(store);
    if (rc != 0) {
        /* Keep the failure's message across the cleanup. */
        char msg[512];
        enum tsr_errcat cat = tsr_errcat();
        snprintf(msg, sizeof msg, "%s", tsr_errmsg());
        gw_app_fini(app);
        (void)TSR_FAIL(cat, "%s", msg);
    }
    return rc;
}

void gw_app_fini(gw_app *app)
{
    gw_reconciler_stop(app->reconciler);  /* before the drivers it calls go */
    gw_drivers_free(app->drivers);
    gw_states_free(app->states);
    gw_committer_stop(app->committer);   /* after the server: held renewals are answered */
    gw_crl_cache_free(app->crl);
    gw_ratelimit_free(app->renew_limit);
    gw_revfeed_stop(app->revfeed);       /* before the set it adds to */
    gw_revocations_free(app->revoked);
    gw_audit_close(app->audit);
    gw_keyring_free(app->keyring);
    gw_pki_release(app->pki);
    pthread_mutex_destroy(&app->pki_lock);
    memset(app, 0, sizeof *app);
}

static void drivers_env(gw_app *app, const char *drivers_dir, const char *supervisor_path,
                        const char *gateway_addr, gw_drivers_env *out)
{
    *out = (gw_drivers_env){
        .dir = drivers_dir,
        .data_dir = app->cfg->data_dir,
        .supervisor_path = supervisor_path,
        .gateway_addr = gateway_addr,
        .trust_domain = app->cfg->trust_domain,
        .default_driver = app->cfg->default_driver,
        .options = app->cfg->driver_options,
        .n_options = app->cfg->n_driver_options,
        .mint = gw_sandbox_mint_for_driver,
        .release = gw_sandbox_release_for_driver,
        .mint_arg = app,
    };
}

int gw_app_attach_drivers(gw_app *app, const char *drivers_dir, const char *supervisor_path,
                          const char *gateway_addr)
{
    gw_drivers_env env;
    drivers_env(app, drivers_dir, supervisor_path, gateway_addr, &env);
    TSR_GUARD(gw_drivers_load(&env, &app->drivers));
    gw_store *store = NULL;
    TSR_GUARD(gw_store_open(app->cfg->store_path, app->keyring, &store));
    size_t total = 0;
    int rc = gw_state_reconcile(app, store, 0, &total);
    gw_store_close(store);
    if (rc == 0 && total > 0)
        fprintf(stderr, "tessera-gateway: re-attached %zu sandboxes\n", total);
    return rc;
}

int gw_app_check_drivers(gw_app *app, const char *drivers_dir, const char *supervisor_path,
                         const char *gateway_addr)
{
    gw_drivers_env env;
    gw_drivers *drivers = NULL;
    drivers_env(app, drivers_dir, supervisor_path, gateway_addr, &env);
    env.mint = NULL; /* nothing runs: no driver will ask */
    env.release = NULL;
    TSR_GUARD(gw_drivers_load(&env, &drivers));
    gw_drivers_free(drivers);
    return 0;
}

int gw_app_start_reconcile(gw_app *app)
{
    return gw_reconciler_start(app, GW_STATE_RECONCILE_MS, &app->reconciler);
}

void *gw_app_worker_init(void *app_ptr, int index)
{
    gw_app *app = app_ptr;
    gw_worker *w = calloc(1, sizeof *w);
    if (w == NULL) return NULL;
    w->app = app;
    w->index = index;
    if (gw_store_open(app->cfg->store_path, app->keyring, &w->store) != 0) {
        fprintf(stderr, "tessera-gateway: worker %d: %s\n", index, tsr_errmsg());
        free(w);
        return NULL;
    }
    return w;
}

void gw_app_worker_fini(void *worker)
{
    gw_worker *w = worker;
    if (w == NULL) return;
    gw_store_close(w->store);
    free(w);
}
