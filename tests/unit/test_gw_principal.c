/* Re-evaluation of principals after a reload (gw_principal.c): a principal
 * verified against an older PKI snapshot stays valid only while the root
 * its chain ends in is still in the bundle and (users) its role is
 * unchanged; a new issuing CA under the same root changes nothing. Plus the
 * unix-socket principal (never anyone by itself). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca_issue.h"
#include "ca_pem.h"
#include "ca_verify.h"
#include "gw_app.h"
#include "gw_config.h"
#include "gw_identity.h"
#include "gw_revocation.h"
#include "tsr_time.h"
#include "tu_certforge.h"

#define TD "tessera.local"

static int64_t g_now;

typedef struct ca_pair {
    ca_issuer *root, *issuing;
} ca_pair;

static void ca_make(ca_pair *p)
{
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    assert_int_equal(ca_create_root(CA_KEY_P256, TD, 86400 * 30, g_now, &key, &cert), 0);
    assert_int_equal(ca_issuer_new(cert, key, &p->root), 0);
    assert_int_equal(ca_create_issuing(p->root, CA_KEY_P256, TD, 86400 * 7, g_now, &key, &cert), 0);
    assert_int_equal(ca_issuer_new(cert, key, &p->issuing), 0);
}

static void ca_free(ca_pair *p)
{
    ca_issuer_free(p->root);
    ca_issuer_free(p->issuing);
}

static X509 *leaf(const ca_issuer *issuing, const char *id)
{
    EVP_PKEY *key = NULL;
    assert_int_equal(ca_key_generate(CA_KEY_P256, &key), 0);
    ca_leaf_request req = {.spiffe_id = id, .public_key = key, .ttl_seconds = 3600, .now = g_now};
    X509 *cert = NULL;
    assert_int_equal(ca_issue_leaf(issuing, &req, &cert), 0);
    EVP_PKEY_free(key);
    return cert;
}

/* A snapshot trusting `roots` (n of them), with alice's role. */
static gw_pki *snapshot(X509 *const *roots, size_t n, enum gw_role alice, const ca_issuer *issuing)
{
    gw_config *cfg = NULL;
    assert_int_equal(gw_config_defaults(&cfg), 0);
    cfg->users = calloc(1, sizeof *cfg->users);
    assert_non_null(cfg->users);
    snprintf(cfg->users[0].name, sizeof cfg->users[0].name, "alice");
    cfg->users[0].role = alice;
    cfg->n_users = 1;
    STACK_OF(X509) *sk = sk_X509_new_null();
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(X509_up_ref(roots[i]), 1);
        assert_true(sk_X509_push(sk, roots[i]) > 0);
    }
    char *pem = NULL;
    size_t len = 0;
    assert_int_equal(ca_certs_to_pem(sk, &pem, &len), 0);
    gw_pki *pki = calloc(1, sizeof *pki);
    assert_non_null(pki);
    atomic_init(&pki->refs, 1);
    pki->cfg = pki->owned_cfg = cfg;
    assert_int_equal(ca_trust_from_pem((const uint8_t *)pem, len, TD, &pki->trust), 0);
    free(pem);
    pki->roots = sk;
    pki->root_sha256 = calloc(n, sizeof *pki->root_sha256);
    for (size_t i = 0; i < n; i++) {
        unsigned int dlen = 0;
        assert_int_equal(X509_digest(roots[i], EVP_sha256(), pki->root_sha256[i], &dlen), 1);
    }
    /* Not used here, but released with the snapshot. */
    assert_int_equal(X509_up_ref(issuing->cert), 1);
    assert_int_equal(EVP_PKEY_up_ref(issuing->key), 1);
    assert_int_equal(ca_issuer_new(issuing->cert, issuing->key, &pki->issuer), 0);
    return pki;
}

/* An application on its first PKI snapshot (generation 1). */
static void app_init(gw_app *app, gw_pki *pki)
{
    memset(app, 0, sizeof *app);
    assert_int_equal(pthread_mutex_init(&app->pki_lock, NULL), 0);
    assert_int_equal(gw_revocations_new(&app->revoked), 0);
    app->pki = pki;
    app->pki->generation = 1;
    atomic_store(&app->pki_generation, 1);
}

static void app_fini(gw_app *app)
{
    gw_pki_release(app->pki);
    gw_revocations_free(app->revoked);
    pthread_mutex_destroy(&app->pki_lock);
}

static gw_principal principal_of(gw_app *app, X509 *cert, X509 *issuing)
{
    STACK_OF(X509) *untrusted = sk_X509_new_null();
    assert_true(sk_X509_push(untrusted, issuing) > 0);
    gw_principal p;
    assert_int_equal(gw_identity_from_chain(app, cert, untrusted, 0, &p), 0);
    sk_X509_free(untrusted);
    return p;
}

static void test_reevaluation_after_reload(void **state)
{
    (void)state;
    ca_pair a, b;
    ca_make(&a);
    ca_make(&b);
    X509 *both[] = {a.root->cert, b.root->cert};
    X509 *only_b[] = {b.root->cert};

    gw_app app;
    app_init(&app, snapshot(both, 2, GW_ROLE_ADMIN, a.issuing));

    X509 *alice_a = leaf(a.issuing, "spiffe://" TD "/user/alice");
    X509 *sb_a = leaf(a.issuing, "spiffe://" TD "/sandbox/0f8e6c4a-3b1d-4e2f-9a7c-5d6e7f809a1b");
    X509 *sb_b = leaf(b.issuing, "spiffe://" TD "/sandbox/1f8e6c4a-3b1d-4e2f-9a7c-5d6e7f809a1b");
    gw_principal pa = principal_of(&app, alice_a, a.issuing->cert);
    gw_principal psa = principal_of(&app, sb_a, a.issuing->cert);
    gw_principal psb = principal_of(&app, sb_b, b.issuing->cert);
    assert_int_equal(pa.kind, GW_PRINCIPAL_USER);
    assert_int_equal(pa.role, GW_ROLE_ADMIN);
    assert_int_equal(psa.kind, GW_PRINCIPAL_SANDBOX);
    assert_int_equal(psb.kind, GW_PRINCIPAL_SANDBOX);
    assert_true(pa.pki_generation == 1);
    assert_memory_equal(psa.anchor, app.pki->root_sha256[0], 32);
    assert_memory_equal(psb.anchor, app.pki->root_sha256[1], 32);
    int64_t now = tsr_now_unix();
    assert_true(gw_identity_still_valid(&app, &pa, now, NULL));
    assert_true(gw_identity_still_valid(&app, &psa, now, NULL));
    assert_true(gw_identity_still_valid(&app, &psb, now, NULL));

    /* Reload, same roots and roles (e.g. a new issuing CA): all stay. */
    gw_app_swap_pki(&app, snapshot(both, 2, GW_ROLE_ADMIN, b.issuing));
    assert_true(atomic_load(&app.pki_generation) == 2);
    assert_true(gw_identity_still_valid(&app, &pa, now, NULL));
    assert_true(gw_identity_still_valid(&app, &psa, now, NULL));
    assert_true(gw_identity_still_valid(&app, &psb, now, NULL));

    /* alice demoted: her principal (admin) is no longer what she would get. */
    gw_app_swap_pki(&app, snapshot(both, 2, GW_ROLE_VIEWER, b.issuing));
    assert_false(gw_identity_still_valid(&app, &pa, now, NULL));
    assert_true(gw_identity_still_valid(&app, &psa, now, NULL));
    gw_principal pa2 = principal_of(&app, alice_a, a.issuing->cert);
    assert_int_equal(pa2.role, GW_ROLE_VIEWER);
    assert_true(gw_identity_still_valid(&app, &pa2, now, NULL));

    /* Root A retired: everything under it is out, B's leaves stay. */
    gw_app_swap_pki(&app, snapshot(only_b, 1, GW_ROLE_VIEWER, b.issuing));
    assert_false(gw_identity_still_valid(&app, &pa2, now, NULL));
    assert_false(gw_identity_still_valid(&app, &psa, now, NULL));
    assert_true(gw_identity_still_valid(&app, &psb, now, NULL));
    /* ... and the same certificate verified afresh is nobody now. */
    gw_principal again = principal_of(&app, sb_a, a.issuing->cert);
    assert_int_equal(again.kind, GW_PRINCIPAL_UNAUTHENTICATED);

    /* A principal with no anchor found is never carried across a reload. */
    gw_principal lost = psb;
    memset(lost.anchor, 0, sizeof lost.anchor);
    assert_false(gw_identity_still_valid(&app, &lost, now, NULL));
    /* Revocation and expiry are checked first, whatever the generation. */
    gw_principal cur = principal_of(&app, sb_b, b.issuing->cert);
    assert_true(gw_identity_still_valid(&app, &cur, now, NULL));
    assert_false(gw_identity_still_valid(&app, &cur, cur.not_after, NULL));
    assert_int_equal(gw_revocations_add(app.revoked, cur.serial_hex, cur.not_after), 0);
    assert_false(gw_identity_still_valid(&app, &cur, now, NULL));

    X509_free(alice_a);
    X509_free(sb_a);
    X509_free(sb_b);
    app_fini(&app);
    ca_free(&a);
    ca_free(&b);
}

/* The root a connection is kept under after a reload is the anchor of the
 * chain that was verified, never a root the peer merely listed. A client
 * whose chain really ends in root A lists, before its real intermediate,
 * (1) root B itself, (2) B's issuing CA, (3) an intermediate minted with A's
 * key that names B as its issuer (name and key identifier, no valid
 * signature): each must be recorded under A and closed when A is retired. */
static void test_anchor_is_the_verified_root(void **state)
{
    (void)state;
    ca_pair a, b;
    ca_make(&a);
    ca_make(&b);
    X509 *both[] = {a.root->cert, b.root->cert};
    X509 *only_b[] = {b.root->cert};

    gw_app app;
    app_init(&app, snapshot(both, 2, GW_ROLE_ADMIN, b.issuing));

    tu_cert_spec spec;
    tu_spec_issuing(&spec, g_now, TD);
    spec.cn = "forged under A, naming B";
    EVP_PKEY *forged_key = tu_key_new();
    assert_non_null(forged_key);
    X509 *forged = tu_forge(&spec, forged_key, b.root->cert, a.root->key);
    assert_non_null(forged);

    X509 *sb_a = leaf(a.issuing, "spiffe://" TD "/sandbox/2f8e6c4a-3b1d-4e2f-9a7c-5d6e7f809a1b");
    X509 *decoys[] = {NULL, b.root->cert, b.issuing->cert, forged};
    gw_principal p[4];
    for (size_t i = 0; i < 4; i++) {
        STACK_OF(X509) *untrusted = sk_X509_new_null();
        if (decoys[i] != NULL) assert_true(sk_X509_push(untrusted, decoys[i]) > 0);
        assert_true(sk_X509_push(untrusted, a.issuing->cert) > 0);
        assert_int_equal(gw_identity_from_chain(&app, sb_a, untrusted, 0, &p[i]), 0);
        sk_X509_free(untrusted);
        assert_int_equal(p[i].kind, GW_PRINCIPAL_SANDBOX);
        assert_memory_equal(p[i].anchor, app.pki->root_sha256[0], 32);
        assert_int_equal(gw_identity_recheck(&app, &p[i], tsr_now_unix()), GW_IDENTITY_CURRENT);
    }

    /* Root A retired: every one of them is out, whatever it listed. */
    gw_app_swap_pki(&app, snapshot(only_b, 1, GW_ROLE_ADMIN, b.issuing));
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(gw_identity_recheck(&app, &p[i], tsr_now_unix()),
                         GW_IDENTITY_ROOT_RETIRED);
    assert_string_equal(gw_identity_verdict_text(GW_IDENTITY_ROOT_RETIRED),
                        "trust root no longer in the bundle");

    X509_free(sb_a);
    X509_free(forged);
    EVP_PKEY_free(forged_key);
    app_fini(&app);
    ca_free(&a);
    ca_free(&b);
}

/* A call forwarded through a trusted proxy lives only as long as that proxy
 * is trusted: a reload that drops it from proxy.trusted ends the call. */
static void test_forwarded_identity_follows_its_proxy(void **state)
{
    (void)state;
    ca_pair a;
    ca_make(&a);
    X509 *roots[] = {a.root->cert};
    gw_pki *pki = snapshot(roots, 1, GW_ROLE_ADMIN, a.issuing);
    pki->owned_cfg->proxies = calloc(1, sizeof *pki->owned_cfg->proxies);
    assert_non_null(pki->owned_cfg->proxies);
    snprintf(pki->owned_cfg->proxies[0].name, sizeof pki->owned_cfg->proxies[0].name, "edge");
    pki->owned_cfg->n_proxies = 1;
    gw_app app;
    app_init(&app, pki);

    X509 *alice = leaf(a.issuing, "spiffe://" TD "/user/alice");
    gw_principal fwd = principal_of(&app, alice, a.issuing->cert);
    gw_principal direct = fwd;
    snprintf(fwd.via_proxy, sizeof fwd.via_proxy, "edge");
    int64_t now = tsr_now_unix();
    assert_int_equal(gw_identity_recheck(&app, &fwd, now), GW_IDENTITY_CURRENT);

    /* Reloaded without "edge" in proxy.trusted. */
    gw_app_swap_pki(&app, snapshot(roots, 1, GW_ROLE_ADMIN, a.issuing));
    assert_int_equal(gw_identity_recheck(&app, &fwd, now), GW_IDENTITY_PROXY_UNTRUSTED);
    assert_string_equal(gw_identity_verdict_text(GW_IDENTITY_PROXY_UNTRUSTED),
                        "forwarding proxy no longer trusted");
    /* The same user on a direct connection is untouched. */
    assert_int_equal(gw_identity_recheck(&app, &direct, now), GW_IDENTITY_CURRENT);

    X509_free(alice);
    app_fini(&app);
    ca_free(&a);
}

static void test_unix_socket_principal(void **state)
{
    (void)state;
    gw_local_peer peer = {.pid = 42, .uid = 33, .gid = 33};
    gw_principal p;
    memset(&p, 0xa5, sizeof p);
    assert_int_equal(gw_identity_authenticate_local(NULL, NULL, &peer, &p), 0);
    assert_int_equal(p.kind, GW_PRINCIPAL_UNAUTHENTICATED);
    assert_true(p.local_proxy);
    assert_int_equal(p.role, GW_ROLE_NONE);
    assert_string_equal(p.name, "");
    assert_string_equal(p.serial_hex, "");
    assert_string_equal(p.reason, "unix socket: every call needs a forwarded client certificate");
    /* Nothing to revoke or expire: the connection lives; its calls need the header. */
    assert_true(gw_identity_still_valid(NULL, &p, tsr_now_unix(), NULL));
}

int main(void)
{
    g_now = tsr_now_unix();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unix_socket_principal),
        cmocka_unit_test(test_reevaluation_after_reload),
        cmocka_unit_test(test_anchor_is_the_verified_root),
        cmocka_unit_test(test_forwarded_identity_follows_its_proxy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
