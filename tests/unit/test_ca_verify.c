/* Peer verification: every certificate is forged here with raw OpenSSL calls
 * (tu_certforge), one field tweaked per case, so each refusal is pinned to its
 * reason and each acceptance to its principal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/pem.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "ca_pem.h"
#include "ca_verify.h"
#include "tu_certforge.h"
#include "tu_fs.h"

#define NOW ((int64_t)1767225600) /* 2026-01-01T00:00:00Z */
#define TD "tessera.local"
#define UUID "0f8fad5b-d9cb-469f-a165-70867728950e"
#define SANDBOX_URI "spiffe://" TD "/sandbox/" UUID

static void assert_contains(const char *hay, const char *needle, const char *what)
{
    if (strstr(hay, needle) == NULL) {
        print_error("%s: \"%s\" does not contain \"%s\"\n", what, hay, needle);
        fail();
    }
}

/* ---- a world: root -> issuing (name-constrained) -> leaf, and the bundle ---- */

enum signer {
    SIGN_ISSUING, /* the issuing CA, as it should be */
    SIGN_FORGED,  /* issuer name/AKI of the issuing CA, signed by another key */
    SIGN_SELF,    /* self-signed leaf */
};

struct world {
    tu_cert_spec root, issuing, leaf;
    enum signer signer;
    int send_intermediate;
    int trust_other_root; /* the bundle holds another root with the same name */
    const char *trust_domain;
    enum ca_purpose purpose;
    enum ca_kind expect;
    int64_t now;
};

struct built {
    EVP_PKEY *root_key, *issuing_key, *leaf_key, *other_key;
    X509 *root, *issuing, *leaf, *other_root;
    STACK_OF(X509) *untrusted;
    ca_trust *trust;
};

static void world_default(struct world *w, int64_t now, const char *uri)
{
    memset(w, 0, sizeof *w);
    tu_spec_root(&w->root, now);
    tu_spec_issuing(&w->issuing, now, TD);
    tu_spec_leaf(&w->leaf, now, uri);
    w->signer = SIGN_ISSUING;
    w->send_intermediate = 1;
    w->trust_domain = TD;
    w->purpose = CA_PURPOSE_CLIENT;
    w->expect = CA_KIND_NONE;
    w->now = now;
}

static ca_trust *trust_of(X509 *root, const char *td)
{
    size_t len = 0;
    char *pem = tu_pem_of(&root, 1, &len);
    assert_non_null(pem);
    ca_trust *trust = NULL;
    int rc = ca_trust_from_pem((const uint8_t *)pem, len, td, &trust);
    if (rc != 0) print_error("ca_trust_from_pem: %s\n", tsr_errmsg());
    assert_int_equal(rc, 0);
    free(pem);
    return trust;
}

static void build(const struct world *w, struct built *b)
{
    memset(b, 0, sizeof *b);
    b->root_key = tu_key_new();
    b->issuing_key = tu_key_new();
    b->leaf_key = tu_key_new();
    b->other_key = tu_key_new();
    assert_non_null(b->root_key);
    assert_non_null(b->issuing_key);
    assert_non_null(b->leaf_key);
    assert_non_null(b->other_key);
    b->root = tu_forge(&w->root, b->root_key, NULL, NULL);
    assert_non_null(b->root);
    b->other_root = tu_forge(&w->root, b->other_key, NULL, NULL);
    assert_non_null(b->other_root);
    b->issuing = tu_forge(&w->issuing, b->issuing_key, b->root, b->root_key);
    assert_non_null(b->issuing);
    switch (w->signer) {
    case SIGN_ISSUING: b->leaf = tu_forge(&w->leaf, b->leaf_key, b->issuing, b->issuing_key); break;
    case SIGN_FORGED: b->leaf = tu_forge(&w->leaf, b->leaf_key, b->issuing, b->other_key); break;
    case SIGN_SELF: b->leaf = tu_forge(&w->leaf, b->leaf_key, NULL, NULL); break;
    }
    assert_non_null(b->leaf);
    b->untrusted = sk_X509_new_null();
    assert_non_null(b->untrusted);
    if (w->send_intermediate) {
        assert_int_equal(X509_up_ref(b->issuing), 1);
        assert_true(sk_X509_push(b->untrusted, b->issuing) > 0);
    }
    b->trust = trust_of(w->trust_other_root ? b->other_root : b->root, w->trust_domain);
}

static void built_free(struct built *b)
{
    ca_trust_free(b->trust);
    sk_X509_pop_free(b->untrusted, X509_free);
    X509_free(b->leaf);
    X509_free(b->issuing);
    X509_free(b->other_root);
    X509_free(b->root);
    EVP_PKEY_free(b->root_key);
    EVP_PKEY_free(b->issuing_key);
    EVP_PKEY_free(b->leaf_key);
    EVP_PKEY_free(b->other_key);
}

static int verify(const struct world *w, struct built *b, enum ca_verify_reason *reason,
                  ca_peer *peer)
{
    *reason = CA_VERIFY_OK;
    memset(peer, 0x5a, sizeof *peer);
    tsr_err_clear();
    return ca_verify_peer(b->trust, b->leaf, b->untrusted, w->purpose, w->expect, w->now, reason,
                          peer);
}

/* ---- tweaks: one field each -------------------------------------------------------- */

static void t_leaf_expired(struct world *w)
{
    w->leaf.not_before = NOW - 7200;
    w->leaf.not_after = NOW - 1;
}
static void t_issuing_expired(struct world *w)
{
    w->issuing.not_before = NOW - 86400;
    w->issuing.not_after = NOW - 1;
}
static void t_root_expired(struct world *w)
{
    w->root.not_before = NOW - 86400;
    w->root.not_after = NOW - 1;
}
static void t_leaf_not_yet_valid(struct world *w)
{
    w->leaf.not_before = NOW + 60;
    w->leaf.not_after = NOW + 3600;
}
static void t_issuing_not_yet_valid(struct world *w) { w->issuing.not_before = NOW + 60; }
static void t_other_root(struct world *w) { w->trust_other_root = 1; }
static void t_no_intermediate(struct world *w) { w->send_intermediate = 0; }
static void t_self_signed_leaf(struct world *w) { w->signer = SIGN_SELF; }
static void t_forged_signature(struct world *w) { w->signer = SIGN_FORGED; }
static void t_foreign_td(struct world *w)
{
    w->issuing.name_constraints = NULL; /* else the chain check refuses first */
    w->leaf.n_sans = 0;
    tu_spec_add_san(&w->leaf, GEN_URI, "spiffe://other.example/sandbox/" UUID, 0);
}
static void t_configured_other_td(struct world *w)
{
    w->issuing.name_constraints = NULL;
    w->trust_domain = "other.example";
}
static void t_two_uris(struct world *w)
{
    tu_spec_add_san(&w->leaf, GEN_URI, "spiffe://" TD "/user/admin", 0);
}
static void t_three_uris(struct world *w)
{
    tu_spec_add_san(&w->leaf, GEN_DNS, "sb.tessera.local", 0);
    tu_spec_add_san(&w->leaf, GEN_URI, SANDBOX_URI, 0); /* the same one twice */
    tu_spec_add_san(&w->leaf, GEN_URI, "spiffe://" TD "/gateway", 0);
}
static void t_dns_only(struct world *w)
{
    w->leaf.n_sans = 0;
    tu_spec_add_san(&w->leaf, GEN_DNS, "gateway.tessera.local", 0);
}
static void t_no_san(struct world *w)
{
    w->leaf.n_sans = 0;
    w->leaf.cn = "spiffe://tessera.local/user/admin"; /* never read as identity */
}
static void t_leaf_ca_true(struct world *w)
{
    w->leaf.basic_constraints = "critical,CA:TRUE";
    w->leaf.cn = "leaf"; /* strict: a CA needs a subject; isolate the CA:TRUE rule */
}
static void t_leaf_key_cert_sign(struct world *w)
{
    w->leaf.key_usage = "critical,digitalSignature,keyCertSign";
}
static void t_leaf_crl_sign(struct world *w)
{
    w->leaf.key_usage = "critical,digitalSignature,cRLSign";
    w->leaf.cn = "leaf"; /* strict: cRLSign needs a subject; isolate the KU rule */
}
static void t_leaf_key_agreement_only(struct world *w)
{
    w->leaf.key_usage = "critical,keyAgreement";
}
static void t_leaf_key_encipherment_only(struct world *w)
{
    w->leaf.key_usage = "critical,keyEncipherment";
}
static void t_leaf_no_key_usage(struct world *w) { w->leaf.key_usage = NULL; }
static void set_uri(struct world *w, const char *uri, size_t len)
{
    w->leaf.n_sans = 0;
    tu_spec_add_san(&w->leaf, GEN_URI, uri, len);
}
static void t_uppercase_td(struct world *w)
{
    set_uri(w, "spiffe://TESSERA.local/sandbox/" UUID, 0);
}
static void t_uppercase_scheme(struct world *w)
{
    set_uri(w, "SPIFFE://tessera.local/sandbox/" UUID, 0);
}
static void t_port(struct world *w) { set_uri(w, "spiffe://tessera.local:8443/sandbox/" UUID, 0); }
static void t_query(struct world *w) { set_uri(w, SANDBOX_URI "?admin=1", 0); }
static void t_dot_segment(struct world *w)
{
    set_uri(w, "spiffe://tessera.local/sandbox/../gateway", 0);
}
static const char NUL_PATH_URI[] = SANDBOX_URI "\0/../../gateway";
static void t_nul_in_path(struct world *w) { set_uri(w, NUL_PATH_URI, sizeof NUL_PATH_URI - 1); }
static const char NUL_TD_URI[] = "spiffe://tessera.local\0.evil.example/gateway";
static void t_nul_in_td(struct world *w)
{
    w->issuing.name_constraints = NULL;
    set_uri(w, NUL_TD_URI, sizeof NUL_TD_URI - 1);
}
static void t_nul_in_td_constrained(struct world *w)
{
    set_uri(w, NUL_TD_URI, sizeof NUL_TD_URI - 1);
}
static void t_root_id(struct world *w) { set_uri(w, "spiffe://tessera.local", 0); }
static void t_issuing_no_key_cert_sign(struct world *w)
{
    w->issuing.key_usage = "critical,cRLSign";
}
static void t_issuing_ca_false(struct world *w)
{
    w->issuing.basic_constraints = "critical,CA:FALSE";
}
static void t_issuing_no_bc(struct world *w) { w->issuing.basic_constraints = NULL; }
static void t_server_eku_as_client(struct world *w) { w->leaf.ext_key_usage = "serverAuth"; }
static void t_client_eku_as_server(struct world *w)
{
    w->leaf.ext_key_usage = "clientAuth";
    set_uri(w, "spiffe://tessera.local/gateway", 0);
    w->purpose = CA_PURPOSE_SERVER;
}
static void t_any_eku(struct world *w) { w->leaf.ext_key_usage = "anyExtendedKeyUsage"; }
static void t_issuing_eku_server(struct world *w) { w->issuing.ext_key_usage = "serverAuth"; }
static void t_outside_nc(struct world *w) { set_uri(w, "spiffe://evil.example/sandbox/" UUID, 0); }
static void t_outside_nc_subdomain(struct world *w)
{
    set_uri(w, "spiffe://x.tessera.local/gateway", 0);
}
static void t_outside_nc_suffix(struct world *w)
{
    set_uri(w, "spiffe://tessera.local.evil.example/gateway", 0);
}
static void t_wrong_kind_gateway(struct world *w) { w->expect = CA_KIND_GATEWAY; }
static void t_user_as_sandbox(struct world *w)
{
    set_uri(w, "spiffe://tessera.local/user/alice", 0);
    w->expect = CA_KIND_SANDBOX;
}
static void t_sandbox_as_user(struct world *w) { w->expect = CA_KIND_USER; }
static void t_unknown_kind(struct world *w) { set_uri(w, "spiffe://tessera.local/service/web", 0); }
static void t_uppercase_uuid(struct world *w)
{
    set_uri(w, "spiffe://tessera.local/sandbox/0F8FAD5B-D9CB-469F-A165-70867728950E", 0);
}
static void t_sandbox_extra(struct world *w) { set_uri(w, SANDBOX_URI "/extra", 0); }
static void t_san_not_critical(struct world *w) { w->leaf.san_critical = 0; }
static void t_second_san_extension(struct world *w)
{
    w->leaf.extra_san_ext_uri = "spiffe://tessera.local/gateway";
}

struct refusal {
    const char *name;
    void (*tweak)(struct world *w);
    enum ca_verify_reason reason;
    const char *msg; /* substring of tsr_errmsg() */
};

static const struct refusal refusals[] = {
    {"leaf expired", t_leaf_expired, CA_VERIFY_EXPIRED, "expired: leaf at depth 0 has expired"},
    {"issuing expired", t_issuing_expired, CA_VERIFY_EXPIRED, "depth 1 has expired"},
    {"root expired", t_root_expired, CA_VERIFY_EXPIRED, "depth 2 has expired"},
    {"leaf not yet valid", t_leaf_not_yet_valid, CA_VERIFY_NOT_YET_VALID,
     "not yet valid: leaf at depth 0"},
    {"issuing not yet valid", t_issuing_not_yet_valid, CA_VERIFY_NOT_YET_VALID, "depth 1"},
    {"other root, same name", t_other_root, CA_VERIFY_UNKNOWN_ISSUER, "unknown issuer"},
    {"intermediate not sent", t_no_intermediate, CA_VERIFY_UNKNOWN_ISSUER, "unknown issuer"},
    {"self-signed leaf", t_self_signed_leaf, CA_VERIFY_UNKNOWN_ISSUER, "self-signed"},
    {"forged signature", t_forged_signature, CA_VERIFY_BAD_SIGNATURE, "bad signature"},
    {"foreign trust domain", t_foreign_td, CA_VERIFY_FOREIGN_TRUST_DOMAIN,
     "foreign trust domain other.example"},
    {"configured for another TD", t_configured_other_td, CA_VERIFY_FOREIGN_TRUST_DOMAIN,
     "foreign trust domain tessera.local (expected other.example)"},
    {"two URI SANs", t_two_uris, CA_VERIFY_MULTIPLE_URI_SANS, "leaf has 2 URI SANs"},
    {"three URI SANs", t_three_uris, CA_VERIFY_MULTIPLE_URI_SANS, "leaf has 3 URI SANs"},
    {"DNS SAN only", t_dns_only, CA_VERIFY_NO_URI_SAN,
     "no URI SAN: leaf subjectAltName has no URI"},
    {"no SAN, SPIFFE ID in CN", t_no_san, CA_VERIFY_NO_URI_SAN, "no subjectAltName"},
    {"CA:TRUE leaf", t_leaf_ca_true, CA_VERIFY_LEAF_IS_CA, "CA:TRUE"},
    {"keyCertSign leaf", t_leaf_key_cert_sign, CA_VERIFY_LEAF_KEY_USAGE, "keyCertSign"},
    {"cRLSign leaf", t_leaf_crl_sign, CA_VERIFY_LEAF_KEY_USAGE, "cRLSign"},
    {"keyAgreement only", t_leaf_key_agreement_only, CA_VERIFY_LEAF_KEY_USAGE,
     "lacks digitalSignature"},
    {"keyEncipherment only", t_leaf_key_encipherment_only, CA_VERIFY_LEAF_KEY_USAGE,
     "lacks digitalSignature"},
    {"no keyUsage", t_leaf_no_key_usage, CA_VERIFY_LEAF_KEY_USAGE, "no keyUsage"},
    {"uppercase TD in SAN", t_uppercase_td, CA_VERIFY_BAD_SPIFFE_ID,
     "uppercase letter in trust domain"},
    {"uppercase scheme in SAN", t_uppercase_scheme, CA_VERIFY_BAD_SPIFFE_ID, "lowercase"},
    {"port in SAN", t_port, CA_VERIFY_BAD_SPIFFE_ID, "port not allowed"},
    {"query in SAN", t_query, CA_VERIFY_BAD_SPIFFE_ID, "query not allowed"},
    {"dot segment in SAN", t_dot_segment, CA_VERIFY_BAD_SPIFFE_ID, "dot segment"},
    {"NUL in SAN path", t_nul_in_path, CA_VERIFY_BAD_SPIFFE_ID, "embedded NUL"},
    {"NUL in SAN trust domain", t_nul_in_td, CA_VERIFY_BAD_SPIFFE_ID, "embedded NUL"},
    {"NUL in SAN TD, constrained CA", t_nul_in_td_constrained, CA_VERIFY_BAD_CHAIN,
     "permitted subtree violation"},
    {"root SPIFFE ID", t_root_id, CA_VERIFY_BAD_SPIFFE_ID, "no path"},
    {"intermediate without keyCertSign", t_issuing_no_key_cert_sign, CA_VERIFY_SIGNER_NOT_CA,
     "depth 1"},
    {"intermediate CA:FALSE", t_issuing_ca_false, CA_VERIFY_SIGNER_NOT_CA, "depth 1"},
    {"intermediate without basicConstraints", t_issuing_no_bc, CA_VERIFY_SIGNER_NOT_CA, "depth 1"},
    {"serverAuth-only leaf as client", t_server_eku_as_client, CA_VERIFY_BAD_EKU, "clientAuth"},
    {"clientAuth-only leaf as server", t_client_eku_as_server, CA_VERIFY_BAD_EKU, "serverAuth"},
    {"anyExtendedKeyUsage leaf", t_any_eku, CA_VERIFY_BAD_EKU, "clientAuth"},
    {"serverAuth-only intermediate", t_issuing_eku_server, CA_VERIFY_BAD_EKU, "depth 1"},
    {"URI outside name constraints", t_outside_nc, CA_VERIFY_BAD_CHAIN,
     "permitted subtree violation"},
    {"subdomain outside name constraints", t_outside_nc_subdomain, CA_VERIFY_BAD_CHAIN,
     "permitted subtree violation"},
    {"suffix outside name constraints", t_outside_nc_suffix, CA_VERIFY_BAD_CHAIN,
     "permitted subtree violation"},
    {"sandbox where gateway expected", t_wrong_kind_gateway, CA_VERIFY_WRONG_KIND,
     "expected a gateway certificate, got sandbox"},
    {"user where sandbox expected", t_user_as_sandbox, CA_VERIFY_WRONG_KIND,
     "expected a sandbox certificate, got user"},
    {"sandbox where user expected", t_sandbox_as_user, CA_VERIFY_WRONG_KIND,
     "expected a user certificate, got sandbox"},
    {"unknown kind", t_unknown_kind, CA_VERIFY_UNKNOWN_KIND, "unknown identity kind \"service\""},
    {"uppercase sandbox UUID", t_uppercase_uuid, CA_VERIFY_UNKNOWN_KIND, "lowercase"},
    {"sandbox ID with extra segment", t_sandbox_extra, CA_VERIFY_UNKNOWN_KIND,
     "exactly /sandbox/<uuid>"},
    {"second subjectAltName extension", t_second_san_extension, CA_VERIFY_BAD_CHAIN,
     "duplicate extensions"},
    {"empty subject, SAN not critical (strict)", t_san_not_critical, CA_VERIFY_BAD_CHAIN,
     "not critical"},
};

static void test_refusals(void **state)
{
    (void)state;
    int failures = 0;
    for (size_t i = 0; i < sizeof refusals / sizeof refusals[0]; i++) {
        const struct refusal *c = &refusals[i];
        struct world w;
        struct built b;
        world_default(&w, NOW, SANDBOX_URI);
        c->tweak(&w);
        build(&w, &b);
        enum ca_verify_reason reason;
        ca_peer peer;
        int rc = verify(&w, &b, &reason, &peer);
        const char *msg = tsr_errmsg();
        if (rc != -1 || reason != c->reason || tsr_errcat() != TSR_E_UNAUTH ||
            strstr(msg, c->msg) == NULL ||
            strncmp(msg, ca_verify_reason_name(c->reason),
                    strlen(ca_verify_reason_name(c->reason))) != 0) {
            print_error("case \"%s\": rc %d, reason \"%s\" (want \"%s\"), error \"%s\" (want "
                        "\"%s\")\n",
                        c->name, rc, ca_verify_reason_name(reason),
                        ca_verify_reason_name(c->reason), msg, c->msg);
            failures++;
        }
        print_message("%-42s -> %s\n", c->name, msg);
        /* Nothing of the refused peer leaks into the output. */
        if (peer.identity.kind != CA_KIND_NONE || peer.identity.id.text[0] != '\0' ||
            peer.serial_hex[0] != '\0') {
            print_error("case \"%s\": peer not cleared\n", c->name);
            failures++;
        }
        built_free(&b);
    }
    assert_int_equal(failures, 0);
}

static void test_no_certificate(void **state)
{
    (void)state;
    struct world w;
    struct built b;
    world_default(&w, NOW, SANDBOX_URI);
    build(&w, &b);
    enum ca_verify_reason reason = CA_VERIFY_OK;
    ca_peer peer;
    assert_int_equal(ca_verify_peer(b.trust, NULL, NULL, CA_PURPOSE_CLIENT, CA_KIND_NONE, NOW,
                                    &reason, &peer),
                     -1);
    assert_int_equal(reason, CA_VERIFY_NO_CERTIFICATE);
    assert_int_equal(tsr_errcat(), TSR_E_UNAUTH);
    assert_contains(tsr_errmsg(), "no certificate", "NULL leaf");

    /* Caller mistakes fail closed too. */
    reason = CA_VERIFY_OK;
    assert_int_equal(ca_verify_peer(NULL, b.leaf, b.untrusted, CA_PURPOSE_CLIENT, CA_KIND_NONE,
                                    NOW, &reason, &peer),
                     -1);
    assert_int_not_equal(reason, CA_VERIFY_OK);
    assert_int_equal(ca_verify_peer(b.trust, b.leaf, b.untrusted, CA_PURPOSE_CLIENT,
                                    CA_KIND_NONE, NOW, NULL, &peer),
                     -1);
    reason = CA_VERIFY_OK;
    assert_int_equal(ca_verify_peer(b.trust, b.leaf, b.untrusted, CA_PURPOSE_CLIENT,
                                    CA_KIND_NONE, NOW, &reason, NULL),
                     -1);
    assert_int_not_equal(reason, CA_VERIFY_OK);
    reason = CA_VERIFY_OK;
    assert_int_equal(ca_verify_peer(b.trust, b.leaf, b.untrusted, (enum ca_purpose)7,
                                    CA_KIND_NONE, NOW, &reason, &peer),
                     -1);
    assert_int_equal(reason, CA_VERIFY_BAD_CHAIN);
    built_free(&b);
}

/* More intermediates than any Tessera chain needs are refused before OpenSSL. */
static void test_too_many_intermediates(void **state)
{
    (void)state;
    struct world w;
    struct built b;
    world_default(&w, NOW, SANDBOX_URI);
    build(&w, &b);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(X509_up_ref(b.issuing), 1);
        assert_true(sk_X509_push(b.untrusted, b.issuing) > 0);
    }
    enum ca_verify_reason reason;
    ca_peer peer;
    assert_int_equal(verify(&w, &b, &reason, &peer), -1);
    assert_int_equal(reason, CA_VERIFY_BAD_CHAIN);
    assert_contains(tsr_errmsg(), "intermediate", "9 intermediates");
    built_free(&b);
}

/* ---- acceptances ------------------------------------------------------------------ */

static const char *const GW_DNS[] = {"gateway.tessera.local", "localhost"};

static void t_ok_sandbox(struct world *w) { w->expect = CA_KIND_SANDBOX; }
static void t_ok_any(struct world *w) { (void)w; }
static void t_ok_user(struct world *w)
{
    set_uri(w, "spiffe://tessera.local/user/alice", 0);
    w->expect = CA_KIND_USER;
}
static void t_ok_proxy(struct world *w)
{
    set_uri(w, "spiffe://tessera.local/proxy/edge-1", 0);
    w->expect = CA_KIND_PROXY;
}
static void t_ok_gateway(struct world *w)
{
    set_uri(w, "spiffe://tessera.local/gateway", 0);
    tu_spec_add_san(&w->leaf, GEN_DNS, GW_DNS[0], 0);
    tu_spec_add_san(&w->leaf, GEN_DNS, GW_DNS[1], 0);
    tu_spec_add_san(&w->leaf, GEN_IPADD, "127.0.0.1", 0);
    tu_spec_add_san(&w->leaf, GEN_IPADD, "::1", 0);
    w->purpose = CA_PURPOSE_SERVER;
    w->expect = CA_KIND_GATEWAY;
}
static void t_ok_no_eku(struct world *w) { w->leaf.ext_key_usage = NULL; }
static void t_ok_client_eku_only(struct world *w) { w->leaf.ext_key_usage = "clientAuth"; }
static void t_ok_no_bc(struct world *w) { w->leaf.basic_constraints = NULL; }
static void t_ok_subject_cn(struct world *w) { w->leaf.cn = "spiffe://tessera.local/gateway"; }
static void t_ok_short_issuing(struct world *w) { w->issuing.not_after = NOW + 1800; }

struct acceptance {
    const char *name;
    void (*tweak)(struct world *w);
    enum ca_kind kind;
    const char *id;
    const char *principal_name;
};

static const struct acceptance acceptances[] = {
    {"sandbox", t_ok_sandbox, CA_KIND_SANDBOX, SANDBOX_URI, UUID},
    {"sandbox, any kind", t_ok_any, CA_KIND_SANDBOX, SANDBOX_URI, UUID},
    {"user", t_ok_user, CA_KIND_USER, "spiffe://tessera.local/user/alice", "alice"},
    {"proxy", t_ok_proxy, CA_KIND_PROXY, "spiffe://tessera.local/proxy/edge-1", "edge-1"},
    {"gateway with DNS/IP SANs", t_ok_gateway, CA_KIND_GATEWAY, "spiffe://tessera.local/gateway",
     ""},
    {"no EKU", t_ok_no_eku, CA_KIND_SANDBOX, SANDBOX_URI, UUID},
    {"clientAuth EKU only", t_ok_client_eku_only, CA_KIND_SANDBOX, SANDBOX_URI, UUID},
    {"no basicConstraints", t_ok_no_bc, CA_KIND_SANDBOX, SANDBOX_URI, UUID},
    /* A CN naming another principal changes nothing: the URI SAN decides. */
    {"misleading subject CN", t_ok_subject_cn, CA_KIND_SANDBOX, SANDBOX_URI, UUID},
    {"issuing CA expires first", t_ok_short_issuing, CA_KIND_SANDBOX, SANDBOX_URI, UUID},
};

static void check_peer(const struct built *b, const ca_peer *peer, const tu_cert_spec *leaf,
                       int64_t chain_not_after)
{
    char serial[41], fp[96];
    assert_int_equal(ca_cert_serial_hex(b->leaf, serial), 0);
    assert_int_equal(ca_cert_fingerprint(b->leaf, fp), 0);
    assert_string_equal(peer->serial_hex, serial);
    assert_string_equal(peer->fingerprint, fp);
    assert_int_equal(peer->not_before, leaf->not_before);
    assert_int_equal(peer->not_after, leaf->not_after);
    assert_int_equal(peer->chain_not_after, chain_not_after);
}

static void test_acceptances(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof acceptances / sizeof acceptances[0]; i++) {
        const struct acceptance *c = &acceptances[i];
        struct world w;
        struct built b;
        world_default(&w, NOW, SANDBOX_URI);
        c->tweak(&w);
        build(&w, &b);
        enum ca_verify_reason reason;
        ca_peer peer;
        int rc = verify(&w, &b, &reason, &peer);
        if (rc != 0) {
            print_error("case \"%s\": refused: %s\n", c->name, tsr_errmsg());
            fail();
        }
        assert_int_equal(reason, CA_VERIFY_OK);
        assert_int_equal(peer.identity.kind, c->kind);
        assert_string_equal(peer.identity.id.text, c->id);
        assert_string_equal(peer.identity.id.trust_domain, TD);
        assert_string_equal(peer.identity.name, c->principal_name);
        int64_t chain_na = w.leaf.not_after;
        if (w.issuing.not_after < chain_na) chain_na = w.issuing.not_after;
        if (w.root.not_after < chain_na) chain_na = w.root.not_after;
        check_peer(&b, &peer, &w.leaf, chain_na);
        built_free(&b);
    }
}

/* The verification time is the caller's `now`, and 0 means the clock. */
static void test_verification_time(void **state)
{
    (void)state;
    struct world w;
    struct built b;
    enum ca_verify_reason reason;
    ca_peer peer;

    world_default(&w, NOW, SANDBOX_URI); /* leaf notBefore NOW-60, notAfter NOW+3600 */
    build(&w, &b);
    w.now = NOW - 60;
    assert_int_equal(verify(&w, &b, &reason, &peer), 0);
    w.now = NOW + 3599;
    assert_int_equal(verify(&w, &b, &reason, &peer), 0);
    w.now = NOW + 3600; /* OpenSSL: valid while now < notAfter */
    assert_int_equal(verify(&w, &b, &reason, &peer), -1);
    assert_int_equal(reason, CA_VERIFY_EXPIRED);
    w.now = NOW - 61;
    assert_int_equal(verify(&w, &b, &reason, &peer), -1);
    assert_int_equal(reason, CA_VERIFY_NOT_YET_VALID);
    /* 2026 certificates seen from the real clock (later than 2026-01-01T01:00Z). */
    w.now = 0;
    if ((int64_t)time(NULL) > NOW + 3600) {
        assert_int_equal(verify(&w, &b, &reason, &peer), -1);
        assert_int_equal(reason, CA_VERIFY_EXPIRED);
    }
    built_free(&b);

    /* Certificates around the real clock verify with now = 0. */
    world_default(&w, (int64_t)time(NULL), SANDBOX_URI);
    build(&w, &b);
    w.now = 0;
    assert_int_equal(verify(&w, &b, &reason, &peer), 0);
    assert_int_equal(peer.identity.kind, CA_KIND_SANDBOX);
    built_free(&b);
}

/* ---- trust bundles ------------------------------------------------------------------- */

struct bundle_case {
    const char *name;
    const char *pem; /* NULL: built by the test */
    const char *td;
    const char *err;
};

static void expect_bundle_refused(const char *name, const char *pem, size_t len, const char *td,
                                  const char *err)
{
    ca_trust *trust = NULL;
    tsr_err_clear();
    int rc = ca_trust_from_pem((const uint8_t *)pem, len, td, &trust);
    if (rc != -1 || trust != NULL) {
        print_error("bundle \"%s\": accepted\n", name);
        ca_trust_free(trust);
        fail();
    }
    assert_contains(tsr_errmsg(), err, name);
}

static void test_bundle_refusals(void **state)
{
    (void)state;
    const int64_t now = NOW;
    EVP_PKEY *root_key = tu_key_new(), *issuing_key = tu_key_new(), *leaf_key = tu_key_new();
    assert_non_null(root_key);
    assert_non_null(issuing_key);
    assert_non_null(leaf_key);
    tu_cert_spec spec;
    tu_spec_root(&spec, now);
    X509 *root = tu_forge(&spec, root_key, NULL, NULL);
    tu_spec_issuing(&spec, now, TD);
    X509 *issuing = tu_forge(&spec, issuing_key, root, root_key);
    tu_spec_leaf(&spec, now, SANDBOX_URI);
    X509 *leaf = tu_forge(&spec, leaf_key, issuing, issuing_key);
    tu_spec_root(&spec, now);
    spec.key_usage = "critical,cRLSign,digitalSignature";
    X509 *root_no_kcs = tu_forge(&spec, root_key, NULL, NULL);
    tu_spec_root(&spec, now);
    spec.basic_constraints = "critical,CA:FALSE";
    spec.key_usage = "critical,digitalSignature";
    X509 *self_signed_ee = tu_forge(&spec, leaf_key, NULL, NULL);
    tu_spec_root(&spec, now);
    spec.basic_constraints = NULL;
    X509 *root_no_bc = tu_forge(&spec, root_key, NULL, NULL);
    assert_non_null(root);
    assert_non_null(issuing);
    assert_non_null(leaf);
    assert_non_null(root_no_kcs);
    assert_non_null(self_signed_ee);
    assert_non_null(root_no_bc);

    size_t n = 0;
    char *root_pem = tu_pem_of(&root, 1, &n);
    assert_non_null(root_pem);

    /* garbage, empty, trailing garbage, a key block */
    static const char garbage[] = "this is not a PEM bundle\n";
    expect_bundle_refused("garbage", garbage, strlen(garbage), TD, "CERTIFICATE");
    expect_bundle_refused("empty", "", 0, TD, "empty");
    char *buf = malloc(n + 64);
    assert_non_null(buf);
    memcpy(buf, root_pem, n);
    memcpy(buf + n, "junk\n", 6);
    expect_bundle_refused("trailing garbage", buf, n + 5, TD, "CERTIFICATE");
    /* truncated */
    expect_bundle_refused("truncated", root_pem, n / 2, TD, "truncated");
    free(buf);

    BIO *bio = BIO_new(BIO_s_mem());
    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_X509(bio, root), 1);
    assert_int_equal(PEM_write_bio_PrivateKey(bio, root_key, NULL, NULL, 0, NULL, NULL), 1);
    char *data = NULL;
    long dlen = BIO_get_mem_data(bio, &data);
    expect_bundle_refused("root + its key", data, (size_t)dlen, TD, "CERTIFICATE");
    BIO_free(bio);

    struct {
        const char *name;
        X509 *certs[2];
        size_t n;
        const char *err;
    } rows[] = {
        {"leaf in bundle", {leaf}, 1, "not a self-signed root"},
        {"issuing CA in bundle", {issuing}, 1, "not a self-signed root"},
        {"root + leaf", {root, leaf}, 2, "certificate 2 is not a self-signed root"},
        {"self-signed CA:FALSE", {self_signed_ee}, 1, "not a CA"},
        {"self-signed, no basicConstraints", {root_no_bc}, 1, "not a CA"},
        {"root without keyCertSign", {root_no_kcs}, 1, "keyCertSign"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        size_t len = 0;
        char *pem = tu_pem_of(rows[i].certs, rows[i].n, &len);
        assert_non_null(pem);
        expect_bundle_refused(rows[i].name, pem, len, TD, rows[i].err);
        free(pem);
    }

    /* the configured trust domain is validated too */
    expect_bundle_refused("uppercase TD", root_pem, n, "Tessera.local", "uppercase");
    expect_bundle_refused("empty TD", root_pem, n, "", "missing trust domain");
    expect_bundle_refused("NULL TD", root_pem, n, NULL, "missing trust domain");
    expect_bundle_refused("TD with port", root_pem, n, "tessera.local:1", "port");

    free(root_pem);
    X509_free(root);
    X509_free(issuing);
    X509_free(leaf);
    X509_free(root_no_kcs);
    X509_free(self_signed_ee);
    X509_free(root_no_bc);
    EVP_PKEY_free(root_key);
    EVP_PKEY_free(issuing_key);
    EVP_PKEY_free(leaf_key);
}

/* A CERTIFICATE block is read as one DER certificate, by the reader DER
 * takes (ca_cert_from_der): bytes after the certificate inside the block,
 * or a block over the DER size limit, are refused, not ignored (found by
 * fuzz/fuzz_pem_bundle.c's wrapped-DER mode: crash-der-bytes-after-
 * certificate-in-block). */
static char *pem_block(const unsigned char *der, long len, size_t *out_len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    assert_non_null(bio);
    assert_true(PEM_write_bio(bio, "CERTIFICATE", "", der, len) > 0);
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    char *copy = malloc((size_t)n + 1);
    assert_non_null(copy);
    memcpy(copy, data, (size_t)n);
    copy[n] = '\0';
    *out_len = (size_t)n;
    BIO_free(bio);
    return copy;
}

static void test_pem_block_is_one_der_certificate(void **state)
{
    (void)state;
    EVP_PKEY *key = tu_key_new();
    assert_non_null(key);
    tu_cert_spec spec;
    tu_spec_root(&spec, NOW);
    X509 *root = tu_forge(&spec, key, NULL, NULL);
    assert_non_null(root);
    unsigned char *der = NULL;
    int der_len = i2d_X509(root, &der);
    assert_true(der_len > 0);
    unsigned char *big = calloc(CA_CERT_MAX_DER + 1, 1);
    assert_non_null(big);
    memcpy(big, der, (size_t)der_len);

    static const struct {
        const char *name;
        long extra;        /* zero bytes after the DER, inside the block */
        const char *err;   /* NULL: accepted */
    } rows[] = {
        {"trailing zero byte", 1, "PEM: certificate 1: trailing bytes after certificate DER"},
        {"trailing kilobyte", 1024, "PEM: certificate 1: trailing bytes after certificate DER"},
        {"over the DER limit", -1, "PEM: certificate 1: certificate of 16385 bytes exceeds 16384"},
        {"exact", 0, NULL},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        long len = rows[i].extra < 0 ? CA_CERT_MAX_DER + 1 : der_len + rows[i].extra;
        size_t pem_len = 0;
        char *pem = pem_block(big, len, &pem_len);
        STACK_OF(X509) *certs = NULL;
        tsr_err_clear();
        int rc = ca_certs_from_pem((const uint8_t *)pem, pem_len, &certs);
        if (rows[i].err == NULL) {
            assert_int_equal(rc, 0);
            assert_int_equal(sk_X509_num(certs), 1);
            assert_int_equal(X509_cmp(sk_X509_value(certs, 0), root), 0);
        } else {
            if (rc != -1 || certs != NULL) {
                print_error("%s: accepted\n", rows[i].name);
                fail();
            }
            assert_string_equal(tsr_errmsg(), rows[i].err);
        }
        sk_X509_pop_free(certs, X509_free);
        free(pem);
    }
    free(big);
    OPENSSL_free(der);
    X509_free(root);
    EVP_PKEY_free(key);
}

/* Two roots in one bundle (rotation): chains under either verify; from a file too. */
static void test_bundle_two_roots_and_file(void **state)
{
    (void)state;
    struct world w;
    struct built a, b;
    world_default(&w, NOW, SANDBOX_URI);
    build(&w, &a);
    build(&w, &b);
    X509 *roots[2] = {a.root, b.root};
    size_t len = 0;
    char *pem = tu_pem_of(roots, 2, &len);
    assert_non_null(pem);

    char path[256];
    assert_int_equal(tu_temp_path(path, sizeof path, "tsr_bundle_XXXXXX"), 0);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, pem, len), (ssize_t)len);
    close(fd);

    ca_trust *from_file = NULL;
    int rc = ca_trust_load(path, TD, &from_file);
    if (rc != 0) print_error("ca_trust_load: %s\n", tsr_errmsg());
    assert_int_equal(rc, 0);
    assert_string_equal(ca_trust_domain(from_file), TD);
    assert_non_null(ca_trust_store(from_file));
    unlink(path);

    struct built *chains[2] = {&a, &b};
    for (int i = 0; i < 2; i++) {
        enum ca_verify_reason reason;
        ca_peer peer;
        rc = ca_verify_peer(from_file, chains[i]->leaf, chains[i]->untrusted, CA_PURPOSE_CLIENT,
                            CA_KIND_SANDBOX, NOW, &reason, &peer);
        if (rc != 0) print_error("chain %d: %s\n", i, tsr_errmsg());
        assert_int_equal(rc, 0);
    }
    /* b's leaf with a's intermediate: the issuer names match, the keys do not. */
    {
        enum ca_verify_reason reason;
        ca_peer peer;
        assert_int_equal(ca_verify_peer(from_file, b.leaf, a.untrusted, CA_PURPOSE_CLIENT,
                                        CA_KIND_NONE, NOW, &reason, &peer),
                         -1);
        assert_true(reason == CA_VERIFY_UNKNOWN_ISSUER || reason == CA_VERIFY_BAD_SIGNATURE);
    }
    ca_trust_free(from_file);

    /* missing file, garbage file: the path is named */
    ca_trust *t = NULL;
    assert_int_equal(ca_trust_load("/nonexistent/tsr/bundle.pem", TD, &t), -1);
    assert_null(t);
    assert_contains(tsr_errmsg(), "/nonexistent/tsr/bundle.pem", "missing file");
    char gpath[256];
    assert_int_equal(tu_temp_path(gpath, sizeof gpath, "tsr_bundle_XXXXXX"), 0);
    fd = mkstemp(gpath);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "garbage\n", 8), 8);
    close(fd);
    assert_int_equal(ca_trust_load(gpath, TD, &t), -1);
    assert_contains(tsr_errmsg(), gpath, "garbage file");
    assert_contains(tsr_errmsg(), "CERTIFICATE", "garbage file");
    unlink(gpath);

    free(pem);
    built_free(&a);
    built_free(&b);
}

/* ---- one trust, many threads ----------------------------------------------------------- */

struct thread_arg {
    const struct built *b;
    int ok;
};

static void *verify_thread(void *p)
{
    struct thread_arg *arg = p;
    arg->ok = 0;
    for (int i = 0; i < 50; i++) {
        enum ca_verify_reason reason;
        ca_peer peer;
        if (ca_verify_peer(arg->b->trust, arg->b->leaf, arg->b->untrusted, CA_PURPOSE_CLIENT,
                           CA_KIND_SANDBOX, NOW, &reason, &peer) != 0)
            return NULL;
        if (strcmp(peer.identity.name, UUID) != 0) return NULL;
        /* and a refusal on the same shared trust */
        if (ca_verify_peer(arg->b->trust, arg->b->leaf, arg->b->untrusted, CA_PURPOSE_CLIENT,
                           CA_KIND_GATEWAY, NOW, &reason, &peer) != -1 ||
            reason != CA_VERIFY_WRONG_KIND)
            return NULL;
    }
    arg->ok = 1;
    return NULL;
}

static void shared_trust_threads(size_t cache)
{
    struct world w;
    struct built b;
    world_default(&w, NOW, SANDBOX_URI);
    build(&w, &b);
    if (cache > 0) assert_int_equal(ca_trust_enable_cache(b.trust, cache), 0);
    pthread_t th[4];
    struct thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i].b = &b;
        assert_int_equal(pthread_create(&th[i], NULL, verify_thread, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(args[i].ok, 1);
    }
    if (cache > 0) {
        size_t entries = 0;
        uint64_t hits = 0;
        ca_trust_cache_stats(b.trust, &entries, &hits);
        /* 4 x 50 accepted calls; only those racing the first insert miss. */
        assert_int_equal(entries, 1);
        assert_true(hits >= 200 - 4 && hits <= 200 - 1);
    }
    built_free(&b);
}

static void test_shared_trust_threads(void **state)
{
    (void)state;
    shared_trust_threads(0);
}

/* The same with kept verifications: the kind refusal is never answered
 * from them. */
static void test_shared_trust_threads_cached(void **state)
{
    (void)state;
    shared_trust_threads(64);
}

/* ---- verified chains (ca_trust_enable_cache) ------------------------------------------ */

static void enable_cache(struct built *b, size_t entries)
{
    int rc = ca_trust_enable_cache(b->trust, entries);
    if (rc != 0) print_error("ca_trust_enable_cache: %s\n", tsr_errmsg());
    assert_int_equal(rc, 0);
}

static uint64_t cache_hits(const struct built *b)
{
    size_t entries = 0;
    uint64_t hits = 0;
    ca_trust_cache_stats(b->trust, &entries, &hits);
    return hits;
}

/* A copy of `x` parsed from its DER with one bit of its signature flipped. */
static X509 *with_flipped_signature(X509 *x)
{
    unsigned char *der = NULL;
    int len = i2d_X509(x, &der);
    assert_true(len > 10);
    der[len - 1] ^= 0x01;   /* the last byte is the signature's */
    const unsigned char *p = der;
    X509 *y = d2i_X509(NULL, &p, len);
    OPENSSL_free(der);
    assert_non_null(y);
    return y;
}

/* A kept verification answers only byte-for-byte the same question, inside
 * the chain's validity; everything else is verified in full and refused or
 * accepted with the same reason and result as without the cache. */
static void test_verified_chain_cache(void **state)
{
    (void)state;
    struct world w;
    struct built b;
    enum ca_verify_reason reason;
    ca_peer first, again;

    world_default(&w, NOW, SANDBOX_URI); /* leaf notBefore NOW-60, notAfter NOW+3600 */
    build(&w, &b);
    enable_cache(&b, 64);
    assert_int_equal(verify(&w, &b, &reason, &first), 0);
    assert_int_equal(cache_hits(&b), 0);
    assert_int_equal(verify(&w, &b, &reason, &again), 0);
    assert_int_equal(cache_hits(&b), 1);
    assert_int_equal(reason, CA_VERIFY_OK);
    assert_memory_equal(&first, &again, sizeof first);
    int64_t chain_na = w.leaf.not_after;
    if (w.issuing.not_after < chain_na) chain_na = w.issuing.not_after;
    if (w.root.not_after < chain_na) chain_na = w.root.not_after;
    check_peer(&b, &again, &w.leaf, chain_na);
    /* The anchor is the root the chain was verified to. */
    unsigned char root_sha[32];
    unsigned int n = 0;
    assert_int_equal(X509_digest(b.root, EVP_sha256(), root_sha, &n), 1);
    assert_memory_equal(again.anchor_sha256, root_sha, sizeof root_sha);

    /* The validity window, at its edges: the same refusals as without it. */
    w.now = NOW + 3599;
    assert_int_equal(verify(&w, &b, &reason, &again), 0);
    assert_int_equal(cache_hits(&b), 2);
    w.now = NOW + 3600;
    assert_int_equal(verify(&w, &b, &reason, &again), -1);
    assert_int_equal(reason, CA_VERIFY_EXPIRED);
    assert_contains(tsr_errmsg(), "expired: leaf at depth 0 has expired", "expired, cached");
    w.now = NOW - 61;
    assert_int_equal(verify(&w, &b, &reason, &again), -1);
    assert_int_equal(reason, CA_VERIFY_NOT_YET_VALID);
    assert_int_equal(cache_hits(&b), 2);
    w.now = NOW;

    /* Another expected kind or purpose is another question. */
    w.expect = CA_KIND_USER;
    assert_int_equal(verify(&w, &b, &reason, &again), -1);
    assert_int_equal(reason, CA_VERIFY_WRONG_KIND);
    w.expect = CA_KIND_NONE;
    w.purpose = CA_PURPOSE_SERVER;   /* the leaf has both EKUs: verified in full, kept apart */
    assert_int_equal(verify(&w, &b, &reason, &again), 0);
    assert_int_equal(cache_hits(&b), 2);
    w.purpose = CA_PURPOSE_CLIENT;

    /* The same leaf without its intermediate: no chain to the bundle. */
    STACK_OF(X509) *sent = b.untrusted;
    b.untrusted = NULL;
    assert_int_equal(verify(&w, &b, &reason, &again), -1);
    assert_int_equal(reason, CA_VERIFY_UNKNOWN_ISSUER);
    b.untrusted = sent;

    /* The same TBS with a changed signature: verified, and refused. */
    X509 *good = b.leaf;
    b.leaf = with_flipped_signature(good);
    assert_int_equal(verify(&w, &b, &reason, &again), -1);
    assert_int_equal(reason, CA_VERIFY_BAD_SIGNATURE);
    X509_free(b.leaf);
    /* ... and an intermediate with a changed signature, the leaf unchanged. */
    b.leaf = good;
    X509 *bad_issuing = with_flipped_signature(sk_X509_value(b.untrusted, 0));
    STACK_OF(X509) *bad = sk_X509_new_null();
    assert_non_null(bad);
    assert_true(sk_X509_push(bad, bad_issuing) > 0);
    b.untrusted = bad;
    assert_int_equal(verify(&w, &b, &reason, &again), -1);
    assert_int_equal(reason, CA_VERIFY_BAD_SIGNATURE);
    b.untrusted = sent;
    sk_X509_pop_free(bad, X509_free);
    assert_int_equal(cache_hits(&b), 2);

    /* Another trust (another bundle) has its own, empty cache: the same
     * certificates against a bundle without their root are refused. */
    struct world w2 = w;
    w2.trust_other_root = 1;
    ca_trust *kept = b.trust;
    b.trust = trust_of(b.other_root, TD);
    enable_cache(&b, 64);
    assert_int_equal(verify(&w2, &b, &reason, &again), -1);
    assert_int_equal(reason, CA_VERIFY_UNKNOWN_ISSUER);
    ca_trust_free(b.trust);
    b.trust = kept;

    /* Still answered from the cache, unchanged. */
    assert_int_equal(verify(&w, &b, &reason, &again), 0);
    assert_memory_equal(&first, &again, sizeof first);
    assert_int_equal(cache_hits(&b), 3);
    built_free(&b);
}

/* Bounded: more distinct leaves than entries; the least recently used go. */
static void test_verified_chain_cache_bounded(void **state)
{
    (void)state;
    struct world w;
    struct built b;
    enum ca_verify_reason reason;
    ca_peer peer;
    world_default(&w, NOW, SANDBOX_URI);
    build(&w, &b);
    enable_cache(&b, 16);   /* one per shard */
    X509 *first = b.leaf;
    assert_int_equal(verify(&w, &b, &reason, &peer), 0);
    for (int i = 0; i < 40; i++) {
        EVP_PKEY *k = tu_key_new();
        assert_non_null(k);
        b.leaf = tu_forge(&w.leaf, k, b.issuing, b.issuing_key);
        assert_non_null(b.leaf);
        assert_int_equal(verify(&w, &b, &reason, &peer), 0);
        assert_int_equal(verify(&w, &b, &reason, &peer), 0);
        X509_free(b.leaf);
        EVP_PKEY_free(k);
    }
    size_t entries = 0;
    uint64_t hits = 0;
    ca_trust_cache_stats(b.trust, &entries, &hits);
    assert_true(entries <= 16);
    assert_int_equal(hits, 40);
    b.leaf = first;
    assert_int_equal(verify(&w, &b, &reason, &peer), 0);
    built_free(&b);
}

static void test_reason_names(void **state)
{
    (void)state;
    assert_string_equal(ca_verify_reason_name(CA_VERIFY_EXPIRED), "expired");
    assert_string_equal(ca_verify_reason_name(CA_VERIFY_NOT_YET_VALID), "not yet valid");
    assert_string_equal(ca_verify_reason_name(CA_VERIFY_UNKNOWN_ISSUER), "unknown issuer");
    assert_string_equal(ca_verify_reason_name(CA_VERIFY_MULTIPLE_URI_SANS), "two URI SANs");
    assert_string_equal(ca_verify_reason_name(CA_VERIFY_NO_URI_SAN), "no URI SAN");
    /* every reason has its own name */
    for (int i = CA_VERIFY_OK; i <= CA_VERIFY_SIGNER_NOT_CA; i++) {
        const char *a = ca_verify_reason_name((enum ca_verify_reason)i);
        assert_true(a[0] != '\0');
        assert_string_not_equal(a, "unknown reason");
        for (int j = CA_VERIFY_OK; j < i; j++)
            assert_string_not_equal(a, ca_verify_reason_name((enum ca_verify_reason)j));
    }
    assert_string_equal(ca_verify_reason_name((enum ca_verify_reason)999), "unknown reason");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_no_certificate),
        cmocka_unit_test(test_too_many_intermediates),
        cmocka_unit_test(test_bundle_refusals),
        cmocka_unit_test(test_pem_block_is_one_der_certificate),
        cmocka_unit_test(test_acceptances),
        cmocka_unit_test(test_verification_time),
        cmocka_unit_test(test_bundle_two_roots_and_file),
        cmocka_unit_test(test_shared_trust_threads),
        cmocka_unit_test(test_shared_trust_threads_cached),
        cmocka_unit_test(test_verified_chain_cache),
        cmocka_unit_test(test_verified_chain_cache_bounded),
        cmocka_unit_test(test_reason_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
