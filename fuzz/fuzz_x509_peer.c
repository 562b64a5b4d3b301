/* Peer certificates as the gateway authenticates them: DER certificates
 * (leaf + intermediates) through ca_verify_peer against a fixed bundle, and
 * gw_identity_from_chain (certificate -> principal, with a configuration
 * that has users and a revocation set).
 *
 * Input: [flags][time offset: 4 bytes, halved][u16 len][leaf DER] ([u16 len][DER])*
 * flags: bit 0  re-sign the leaf with the fixed issuing CA, which joins the
 *               untrusted certificates (so the X509-SVID checks see fuzzed
 *               extensions on a chain that verifies)
 *        bit 1  forge the first intermediate: give it the issuing CA's key,
 *               sign it with the root and the leaf with that key (fuzzed CA
 *               extensions on a chain that verifies)
 *        bit 2  server purpose (else client)
 *        bit 3-5 expected kind (mod 5)
 *        bit 6  add the real issuing CA to the untrusted certificates
 *        bit 7  keep the fuzzed authorityKeyIdentifier when re-signing
 *               (else it is made to match the new signer)
 * Invariants: identity is never wrong. A verified peer has a known kind of
 * the bundle's trust domain (the expected one if any), its SPIFFE ID is the
 * leaf's one URI SAN byte for byte, it is valid at `now`; a principal with
 * authority comes only from a chain ca_verify_peer accepts, with the same
 * name; a refused chain never yields anything but UNAUTHENTICATED. */
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <string.h>

#include "fuzz/fuzz_pki.h"
#include "gw_app.h"
#include "gw_config.h"
#include "gw_identity.h"
#include "gw_revocation.h"

#define MAX_INTERMEDIATES 4

/* The leaf's URI SANs: how many, and a copy of the last one. */
static int uri_sans(X509 *leaf, char *out, size_t cap, size_t *len)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    int n = 0;
    *len = 0;
    for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type != GEN_URI) continue;
        n++;
        int l = ASN1_STRING_length(g->d.uniformResourceIdentifier);
        *len = l > 0 && (size_t)l < cap ? (size_t)l : 0;
        memcpy(out, ASN1_STRING_get0_data(g->d.uniformResourceIdentifier), *len);
    }
    GENERAL_NAMES_free(gens);
    return n;
}

static void check_verified(const fuzz_pki *pki, X509 *leaf, enum ca_kind expected, int64_t now,
                           const ca_peer *peer)
{
    FUZZ_CHECK(peer->identity.kind != CA_KIND_NONE);
    if (expected != CA_KIND_NONE) FUZZ_CHECK(peer->identity.kind == expected);
    FUZZ_CHECK(strcmp(peer->identity.id.trust_domain, ca_trust_domain(pki->trust)) == 0);
    char uri[CA_SPIFFE_ID_MAX + 1];
    size_t len = 0;
    FUZZ_CHECK(uri_sans(leaf, uri, sizeof uri, &len) == 1);
    FUZZ_CHECK(len > 0 && strlen(peer->identity.id.text) == len &&
               memcmp(peer->identity.id.text, uri, len) == 0);
    FUZZ_CHECK(peer->not_before <= now && now < peer->not_after);
    FUZZ_CHECK(peer->chain_not_after <= peer->not_after && now < peer->chain_not_after);
    FUZZ_CHECK(X509_check_ca(leaf) == 0);
    FUZZ_CHECK(peer->serial_hex[0] != '\0' && strlen(peer->fingerprint) == 95);
}

static void check_principal(gw_app *app, X509 *leaf, STACK_OF(X509) *untrusted, int64_t now)
{
    gw_principal p;
    FUZZ_CHECK(gw_identity_from_chain(app, leaf, untrusted, now, &p) == 0);
    enum ca_verify_reason reason;
    ca_peer peer;
    int ok = ca_verify_peer(app->pki->trust, leaf, untrusted, CA_PURPOSE_CLIENT, CA_KIND_NONE, now,
                            &reason, &peer);
    switch (p.kind) {
    case GW_PRINCIPAL_SANDBOX:
    case GW_PRINCIPAL_USER:
    case GW_PRINCIPAL_PROXY:
        FUZZ_CHECK(ok == 0);
        FUZZ_CHECK(strcmp(p.name, peer.identity.name) == 0 && p.name[0] != '\0');
        FUZZ_CHECK(strcmp(p.spiffe_id, peer.identity.id.text) == 0);
        FUZZ_CHECK(strcmp(p.serial_hex, peer.serial_hex) == 0);
        FUZZ_CHECK(!gw_revocations_contains(app->revoked, p.serial_hex));
        FUZZ_CHECK(p.not_after == peer.chain_not_after);
        FUZZ_CHECK((p.kind == GW_PRINCIPAL_SANDBOX) == (peer.identity.kind == CA_KIND_SANDBOX));
        FUZZ_CHECK((p.kind == GW_PRINCIPAL_USER) == (peer.identity.kind == CA_KIND_USER));
        if (p.kind == GW_PRINCIPAL_USER) FUZZ_CHECK(p.role == gw_config_user_role(app->cfg, p.name));
        else FUZZ_CHECK(p.role == GW_ROLE_NONE);
        break;
    case GW_PRINCIPAL_UNAUTHENTICATED:
        FUZZ_CHECK(p.role == GW_ROLE_NONE && p.name[0] == '\0' && p.reason[0] != '\0');
        break;
    case GW_PRINCIPAL_ANONYMOUS:
    default:
        FUZZ_CHECK(0);  /* there is a leaf */
    }
    if (ok != 0) FUZZ_CHECK(p.kind == GW_PRINCIPAL_UNAUTHENTICATED);
}

static X509 *parse(fuzz_in der)
{
    X509 *c = NULL;
    if (ca_cert_from_der(der.p, der.len, &c) != 0) return NULL;
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const fuzz_pki *pki = fuzz_pki_get();
    gw_app *app = fuzz_app_get();
    fuzz_in in = {data, size};
    uint8_t flags = fuzz_u8(&in);
    int64_t now = FUZZ_NOW + (int32_t)fuzz_u32(&in) / 2;  /* about +-34 years: always > 0 */
    X509 *leaf = parse(fuzz_lp16(&in));
    if (leaf == NULL) return 0;
    STACK_OF(X509) *untrusted = sk_X509_new_null();
    FUZZ_CHECK(untrusted != NULL);
    for (int i = 0; i < MAX_INTERMEDIATES && in.len > 0; i++) {
        X509 *c = parse(fuzz_lp16(&in));
        if (c != NULL && sk_X509_push(untrusted, c) <= 0) X509_free(c);
    }

    bool keep_aki = (flags & 128) != 0;
    if ((flags & 2) && sk_X509_num(untrusted) > 0) {
        X509 *ca = sk_X509_value(untrusted, 0);
        if (X509_set_pubkey(ca, pki->issuing->key) == 1 &&
            X509_set_issuer_name(ca, X509_get_subject_name(pki->root->cert)) == 1 &&
            fuzz_set_key_id(ca, NULL, NID_subject_key_identifier) &&
            (keep_aki || fuzz_set_key_id(ca, pki->root->cert, NID_authority_key_identifier)) &&
            X509_sign(ca, pki->root->key, EVP_sha256()) > 0 &&
            X509_set_issuer_name(leaf, X509_get_subject_name(ca)) == 1 &&
            (keep_aki || fuzz_set_key_id(leaf, ca, NID_authority_key_identifier)))
            (void)X509_sign(leaf, pki->issuing->key, EVP_sha256());
    } else if (flags & 1) {
        (void)fuzz_resign_leaf(pki, leaf, keep_aki);
    }
    if (flags & (1 | 64)) {
        X509_up_ref(pki->issuing->cert);
        if (sk_X509_push(untrusted, pki->issuing->cert) <= 0) X509_free(pki->issuing->cert);
    }
    ERR_clear_error();

    enum ca_purpose purpose = (flags & 4) ? CA_PURPOSE_SERVER : CA_PURPOSE_CLIENT;
    enum ca_kind expected = (enum ca_kind)(((flags >> 3) & 7) % 5);
    enum ca_verify_reason reason = CA_VERIFY_OK;
    ca_peer peer;
    if (ca_verify_peer(pki->trust, leaf, untrusted, purpose, expected, now, &reason, &peer) == 0) {
        FUZZ_CHECK(reason == CA_VERIFY_OK);
        check_verified(pki, leaf, expected, now, &peer);
    } else {
        FUZZ_CHECK(reason != CA_VERIFY_OK && tsr_errcat() == TSR_E_UNAUTH);
        FUZZ_CHECK(ca_verify_reason_name(reason) != NULL);
    }
    check_principal(app, leaf, untrusted, now);
    /* Without intermediates at all (what a peer sending only its leaf gets). */
    check_principal(app, leaf, NULL, now);

    sk_X509_pop_free(untrusted, X509_free);
    X509_free(leaf);
    return 0;
}
