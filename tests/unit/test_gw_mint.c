/* The gateway's mint for a driver's restart (gw_sandbox_mint_for_driver,
 * drivers/abi/drv_abi.h mint_identity): only a live sandbox of the asking
 * driver gets one, under renewal's rate limit; the certificate is recorded
 * before it is handed out, audited with the gateway as the caller, and
 * revoked with the others when the sandbox is deleted. Refusals first.
 * Replicas on one PostgreSQL count a sandbox's mints together: the limit is
 * decided by the database, not by each gateway's own limiter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_app.h"
#include "gw_audit.h"
#include "gw_config.h"
#include "gw_ratelimit.h"
#include "gw_rpcs.h"
#include "gw_store.h"
#include "tsr_time.h"
#include "tu_drv.h"
#include "tu_fs.h"
#include "tu_pg.h"
#include "tu_suppki.h"

#define TD "tessera.local"
#define VM_SB "3f1c2a9e-7b4d-4e8a-9c0f-1a2b3c4d5e6f"
#define PROC_SB "00000000-0000-4000-8000-000000000001"
#define GONE_SB "00000000-0000-4000-8000-000000000002"
#define NO_SB "00000000-0000-4000-8000-000000000003"

typedef struct fixture {
    char *dir, audit[128];
    gw_config cfg;
    tu_pki ca;
    gw_pki pki;
    gw_app app;
    gw_app replica;     /* PostgreSQL: a second gateway on the same database */
    gw_store *store;
    tu_pg pg;
} fixture;

static void create_sb(gw_store *s, const char *id, const char *name, const char *driver)
{
    gw_sandbox_rec r;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "%s", id);
    snprintf(r.name, sizeof r.name, "%s", name);
    snprintf(r.driver, sizeof r.driver, "%s", driver);
    snprintf(r.state, sizeof r.state, "running");
    r.created_at = tsr_now_unix();
    r.policy_version = 1;
    assert_int_equal(gw_store_sandbox_create(s, &r, "version: 1\n", NULL, 0, NULL), 0);
}

static void app_init(fixture *f, gw_app *app)
{
    app->cfg = &f->cfg;
    app->pki = &f->pki;
    pthread_mutex_init(&app->pki_lock, NULL);
    assert_int_equal(gw_ratelimit_new(3, 3600 * 1000, &app->renew_limit), 0);
    assert_int_equal(gw_audit_open(f->audit, &app->audit), 0);
}

static void app_fini(gw_app *app)
{
    if (app->cfg == NULL) return;
    gw_audit_close(app->audit);
    gw_ratelimit_free(app->renew_limit);
    pthread_mutex_destroy(&app->pki_lock);
}

static int setup_on(void **state, bool pg)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->dir = tu_scratch_dir("mint");
    assert_non_null(f->dir);
    snprintf(f->audit, sizeof f->audit, "%s/audit.log", f->dir);
    assert_int_equal(tu_pki_init(&f->ca, TD, tsr_now_unix()), 0);

    snprintf(f->cfg.trust_domain, sizeof f->cfg.trust_domain, "%s", TD);
    snprintf(f->cfg.store_path, sizeof f->cfg.store_path, "%s/tessera.db", f->dir);
    if (pg) {
        if (tu_pg_start(&f->pg) != 0) fail_msg("cannot start a PostgreSQL cluster (make deps)");
        int n = snprintf(f->cfg.store_path, sizeof f->cfg.store_path, GW_STORE_PG_PREFIX "%s",
                         f->pg.dsn);
        assert_true(n > 0 && (size_t)n < sizeof f->cfg.store_path);
    }
    f->cfg.sandbox_cert_ttl = 3600;
    f->cfg.renew_limit = 3;
    f->cfg.renew_window = 3600;
    atomic_init(&f->pki.refs, 1); /* the fixture's own reference: never freed by a release */
    f->pki.cfg = &f->cfg;
    f->pki.issuer = f->ca.issuing;
    f->pki.chain_pem = f->ca.issuing_pem;
    f->pki.bundle_pem = f->ca.bundle_pem;
    app_init(f, &f->app);
    if (pg) app_init(f, &f->replica);

    assert_int_equal(gw_store_open(f->cfg.store_path, NULL, &f->store), 0);
    create_sb(f->store, VM_SB, "a-vm", "vm");
    create_sb(f->store, PROC_SB, "a-process", "process");
    create_sb(f->store, GONE_SB, "gone", "vm");
    int revoked = 0;
    assert_int_equal(gw_store_sandbox_delete(f->store, GONE_SB, tsr_now_unix(), &revoked), 0);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_on(state, false);
}

static int setup_pg(void **state)
{
    return setup_on(state, true);
}

static int teardown(void **state)
{
    fixture *f = *state;
    gw_store_close(f->store);
    app_fini(&f->app);
    app_fini(&f->replica);
    tu_pg_stop(&f->pg);
    tu_pki_free(&f->ca);
    assert_int_equal(tu_rm_rf(f->dir), 0);
    free(f->dir);
    free(f);
    return 0;
}

static void expect_refused_by(gw_app *app, const char *driver, const char *id, const char *why)
{
    tsr_driver_identity out;
    char err[256] = "";
    memset(&out, 0xff, sizeof out);
    assert_int_equal(gw_sandbox_mint_for_driver(app, driver, id, &out, err, sizeof err), -1);
    assert_string_equal(err, why);
    assert_null(out.cert_pem);
    assert_null(out.key_pem);
    assert_null(out.bundle_pem);
}

static void expect_refused(fixture *f, const char *driver, const char *id, const char *why)
{
    expect_refused_by(&f->app, driver, id, why);
}

static size_t certs_of(fixture *f, const char *id, gw_cert_rec **certs)
{
    size_t n = 0;
    assert_int_equal(gw_store_cert_list(f->store, id, certs, &n), 0);
    return n;
}

/* The minted identity: a leaf for the sandbox's SPIFFE ID (chain: the
 * issuing CA), the key of that leaf, our bundle; its serial into serial. */
static void expect_identity(fixture *f, const tsr_driver_identity *id, char *serial, size_t cap)
{
    BIO *b = BIO_new_mem_buf(id->cert_pem, (int)id->cert_len);
    X509 *leaf = PEM_read_bio_X509(b, NULL, NULL, NULL);
    X509 *chain = PEM_read_bio_X509(b, NULL, NULL, NULL);
    assert_non_null(leaf);
    assert_non_null(chain);
    BIO_free(b);
    b = BIO_new_mem_buf(id->key_pem, (int)id->key_len);
    EVP_PKEY *key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(key);
    assert_int_equal(X509_check_private_key(leaf, key), 1);
    GENERAL_NAMES *sans = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    assert_non_null(sans);
    assert_int_equal(sk_GENERAL_NAME_num(sans), 1);
    const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, 0);
    assert_int_equal(gn->type, GEN_URI);
    const char *want = "spiffe://" TD "/sandbox/" VM_SB;
    assert_int_equal(ASN1_STRING_length(gn->d.uniformResourceIdentifier), (int)strlen(want));
    assert_memory_equal(ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier), want,
                        strlen(want));
    assert_int_equal(id->bundle_len, f->ca.bundle_len);
    assert_memory_equal(id->bundle_pem, f->ca.bundle_pem, id->bundle_len);
    ASN1_INTEGER *sn = X509_get_serialNumber(leaf);
    BIGNUM *bn = ASN1_INTEGER_to_BN(sn, NULL);
    char *hex = BN_bn2hex(bn);
    for (char *p = hex; *p != '\0'; p++) *p = (char)(*p >= 'A' && *p <= 'F' ? *p + 32 : *p);
    snprintf(serial, cap, "%s", hex);
    OPENSSL_free(hex);
    BN_free(bn);
    GENERAL_NAMES_free(sans);
    EVP_PKEY_free(key);
    X509_free(leaf);
    X509_free(chain);
}

static void test_refusals(void **state)
{
    fixture *f = *state;
    expect_refused(f, "vm", "not-a-uuid", "bad sandbox id");
    expect_refused(f, "vm", NO_SB, "no such sandbox");
    expect_refused(f, "vm", PROC_SB, "not a sandbox of this driver");
    expect_refused(f, "vm", GONE_SB, "sandbox deleted");
    gw_cert_rec *certs = NULL;
    assert_int_equal(certs_of(f, PROC_SB, &certs), 0);
    gw_store_free_certs(certs, 0);
    assert_int_equal(certs_of(f, GONE_SB, &certs), 0);
    gw_store_free_certs(certs, 0);
    size_t n = 0;
    char *audit = tu_slurp(f->audit, &n);
    assert_non_null(audit);
    assert_non_null(strstr(audit, "\"event\":\"issue\",\"peer\":\"spiffe://" TD "/gateway\","
                                  "\"peer_addr\":\"\",\"method\":\"driver vm: start\",\"sandbox\":"
                                  "\"" GONE_SB "\",\"decision\":\"deny\",\"reason\":\"sandbox "
                                  "deleted\"}"));
    free(audit);
}

static void test_mint_records_then_hands_out(void **state)
{
    fixture *f = *state;
    tsr_driver_identity out;
    char err[256] = "", serial[64];
    assert_int_equal(gw_sandbox_mint_for_driver(&f->app, "vm", VM_SB, &out, err, sizeof err), 0);
    expect_identity(f, &out, serial, sizeof serial);
    gw_cert_rec *certs = NULL;
    size_t n = certs_of(f, VM_SB, &certs);
    assert_int_equal(n, 1);
    assert_string_equal(certs[0].serial, serial);
    assert_string_equal(certs[0].spiffe_id, "spiffe://" TD "/sandbox/" VM_SB);
    assert_int_equal(certs[0].revoked_at, 0);
    assert_true(certs[0].not_after - certs[0].not_before == 3600 + 60);
    gw_store_free_certs(certs, n);
    size_t alen = 0;
    char *audit = tu_slurp(f->audit, &alen);
    char line[512];
    snprintf(line, sizeof line,
             "\"method\":\"driver vm: start\",\"sandbox\":\"" VM_SB "\",\"decision\":\"allow\","
             "\"reason\":\"fresh identity for a restart\",\"serial\":\"%s\"}",
             serial);
    assert_non_null(strstr(audit, line));
    free(audit);
    /* Released: the key wiped and every buffer gone. */
    gw_sandbox_release_for_driver(&f->app, &out);
    assert_null(out.cert_pem);
    assert_null(out.key_pem);
    assert_null(out.bundle_pem);
    assert_int_equal(out.key_len, 0);

    /* Renewal's rate limit (3 per window here): two more, then refused. */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(gw_sandbox_mint_for_driver(&f->app, "vm", VM_SB, &out, err, sizeof err),
                         0);
        gw_sandbox_release_for_driver(&f->app, &out);
    }
    expect_refused(f, "vm", VM_SB, "renewal rate limit: at most 3 per 3600s");
    n = certs_of(f, VM_SB, &certs);
    assert_int_equal(n, 3);
    gw_store_free_certs(certs, n);

    /* Deleting the sandbox revokes what was minted, and no more is minted. */
    int revoked = 0;
    assert_int_equal(gw_store_sandbox_delete(f->store, VM_SB, tsr_now_unix(), &revoked), 0);
    assert_int_equal(revoked, 3);
    expect_refused(f, "vm", VM_SB, "sandbox deleted");
}

/* Two gateways on one PostgreSQL, each with its own limiter that would
 * allow 3: mints on A, B, A are taken, the 4th is refused on either — the
 * database counted them together. A renewal by CSR counts against the same
 * limit (one certificate count per sandbox). */
static void test_mint_limit_across_replicas(void **state)
{
    fixture *f = *state;
    gw_app *on[] = {&f->app, &f->replica, &f->app};
    for (size_t i = 0; i < sizeof on / sizeof on[0]; i++) {
        tsr_driver_identity out;
        char err[256] = "";
        if (gw_sandbox_mint_for_driver(on[i], "vm", VM_SB, &out, err, sizeof err) != 0)
            fail_msg("mint %zu: %s", i, err);
        gw_sandbox_release_for_driver(on[i], &out);
    }
    expect_refused_by(&f->replica, "vm", VM_SB, "renewal rate limit: at most 3 per 3600s");
    expect_refused_by(&f->app, "vm", VM_SB, "renewal rate limit: at most 3 per 3600s");
    gw_cert_rec *certs = NULL;
    size_t n = certs_of(f, VM_SB, &certs);
    assert_int_equal(n, 3);
    gw_store_free_certs(certs, n);
    /* The limit is per sandbox: another one of the driver still gets one. */
    create_sb(f->store, NO_SB, "another-vm", "vm");
    tsr_driver_identity out;
    char err[256] = "";
    assert_int_equal(gw_sandbox_mint_for_driver(&f->replica, "vm", NO_SB, &out, err, sizeof err),
                     0);
    gw_sandbox_release_for_driver(&f->replica, &out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mint_records_then_hands_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mint_limit_across_replicas, setup_pg, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
