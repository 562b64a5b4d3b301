/* A fixed test PKI for the certificate harnesses (x509_peer, csr, forward,
 * h2_session), made with ca_issue.h at the first call: a root and an issuing
 * CA of trust domain tessera.local valid around FUZZ_NOW (and for 20 years
 * after: until 2045), and the bundle of the root. Keys are fresh per
 * process; inputs never depend on them (harnesses that need a signature from
 * this PKI re-sign what the input gives: fuzz_resign_leaf). fuzz_app_get is
 * a gw_app on this PKI for the code that authenticates principals. */
#ifndef TSR_FUZZ_PKI_H
#define TSR_FUZZ_PKI_H

#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdbool.h>

#include "ca_issue.h"
#include "ca_pem.h"
#include "ca_verify.h"
#include "fuzz/fuzz.h"
#include "gw_app.h"
#include "gw_config.h"
#include "gw_revocation.h"

#define FUZZ_TD "tessera.local"
#define FUZZ_NOW INT64_C(1750000000)            /* 2025-06-15 */
#define FUZZ_CA_TTL (INT64_C(20) * 365 * 86400)

typedef struct fuzz_pki {
    ca_issuer *root;      /* root cert + key */
    ca_issuer *issuing;   /* issuing CA cert + key, signed by root */
    ca_trust *trust;      /* bundle = root */
} fuzz_pki;

static inline const fuzz_pki *fuzz_pki_get(void)
{
    static fuzz_pki pki;
    if (pki.trust != NULL) return &pki;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    FUZZ_CHECK(ca_create_root(CA_KEY_P256, FUZZ_TD, FUZZ_CA_TTL, FUZZ_NOW - 86400, &key, &cert) == 0);
    FUZZ_CHECK(ca_issuer_new(cert, key, &pki.root) == 0);
    FUZZ_CHECK(ca_create_issuing(pki.root, CA_KEY_P256, FUZZ_TD, FUZZ_CA_TTL, FUZZ_NOW - 86400,
                                 &key, &cert) == 0);
    FUZZ_CHECK(ca_issuer_new(cert, key, &pki.issuing) == 0);
    char *pem = NULL;
    size_t len = 0;
    FUZZ_CHECK(ca_cert_to_pem(pki.root->cert, &pem, &len) == 0);
    FUZZ_CHECK(ca_trust_from_pem((const uint8_t *)pem, len, FUZZ_TD, &pki.trust) == 0);
    free(pem);
    return &pki;
}

/* A gateway application on the fixed PKI, without store or audit log:
 * users alice (admin) and bob (viewer), trusted proxy egress, the issuing CA
 * as the intermediates forwarded leaves are completed with, and serial
 * 1234abcd revoked. Never freed. */
static inline gw_app *fuzz_app_get(void)
{
    static gw_app app;
    static gw_config *cfg;
    if (cfg != NULL) return &app;
    const fuzz_pki *pki = fuzz_pki_get();
    FUZZ_CHECK(gw_config_defaults(&cfg) == 0);
    /* Static tables: this configuration is never freed. */
    static gw_user_entry users[] = {{"alice", GW_ROLE_ADMIN}, {"bob", GW_ROLE_VIEWER}};
    cfg->users = users;
    cfg->n_users = sizeof users / sizeof users[0];
    static gw_proxy_entry proxies[] = {{"egress"}};
    cfg->proxies = proxies;
    cfg->n_proxies = 1;
    app.cfg = cfg;
    /* One PKI snapshot for the whole run (never released). */
    static gw_pki snapshot;
    atomic_init(&snapshot.refs, 1);
    snapshot.generation = 1;
    snapshot.cfg = cfg;
    snapshot.trust = pki->trust;
    snapshot.issuer = pki->issuing;
    snapshot.intermediates = sk_X509_new_null();
    FUZZ_CHECK(snapshot.intermediates != NULL &&
               sk_X509_push(snapshot.intermediates, pki->issuing->cert) > 0);
    static unsigned char root_sha256[1][32];
    snapshot.roots = sk_X509_new_null();
    FUZZ_CHECK(snapshot.roots != NULL && sk_X509_push(snapshot.roots, pki->root->cert) > 0);
    unsigned int md_len = 0;
    FUZZ_CHECK(X509_digest(pki->root->cert, EVP_sha256(), root_sha256[0], &md_len) == 1 &&
               md_len == 32);
    snapshot.root_sha256 = root_sha256;
    FUZZ_CHECK(pthread_mutex_init(&app.pki_lock, NULL) == 0);
    app.pki = &snapshot;
    atomic_init(&app.pki_generation, snapshot.generation);
    FUZZ_CHECK(gw_revocations_new(&app.revoked) == 0);
    FUZZ_CHECK(gw_revocations_add(app.revoked, "1234abcd", FUZZ_NOW + 86400) == 0);
    return &app;
}

/* Replace cert's subject (issuer == NULL) or authority key identifier by
 * the one matching its own key / issuer's key, as a CA would write it. */
static inline bool fuzz_set_key_id(X509 *cert, X509 *issuer, int nid)
{
    int i;
    while ((i = X509_get_ext_by_NID(cert, nid, -1)) >= 0)
        X509_EXTENSION_free(X509_delete_ext(cert, i));
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer != NULL ? issuer : cert, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid,
                                              issuer != NULL ? "keyid:always" : "hash");
    bool ok = ext != NULL && X509_add_ext(cert, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok;
}

/* Sign `leaf` (whatever it says) with the fixed issuing CA: its issuer name
 * and, unless keep_aki, its authority key identifier made to match. False
 * when OpenSSL cannot (a leaf it cannot re-encode). */
static inline bool fuzz_resign_leaf(const fuzz_pki *pki, X509 *leaf, bool keep_aki)
{
    return X509_set_issuer_name(leaf, X509_get_subject_name(pki->issuing->cert)) == 1 &&
           (keep_aki || fuzz_set_key_id(leaf, pki->issuing->cert, NID_authority_key_identifier)) &&
           X509_sign(leaf, pki->issuing->key, EVP_sha256()) > 0;
}

#endif
