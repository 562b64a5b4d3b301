/* Issuance per docs/identity.md: every profile field parsed back with OpenSSL, and
 * an independent check with the `openssl verify` command line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ca_issue.h"
#include "ca_pem.h"
#include "tsr_err.h"
#include "tsr_fs.h"
#include "tsr_time.h"
#include "tu_fs.h"

#define TD "tessera.local"
/* One clock reading for the whole run, passed explicitly so validity can be
 * checked exactly; real time so that `openssl verify` accepts the chains. */
static int64_t g_now;
#define NOW g_now
#define DAY 86400LL
#define SANDBOX_ID "spiffe://" TD "/sandbox/0f8e6c4a-3b1d-4e2f-9a7c-5d6e7f809a1b"
#define USER_ID "spiffe://" TD "/user/alice"
#define GATEWAY_ID "spiffe://" TD "/gateway"

static const enum ca_key_type all_types[] = {CA_KEY_P256, CA_KEY_P384, CA_KEY_ED25519};
#define N_TYPES (sizeof all_types / sizeof all_types[0])

/* ---- helpers -------------------------------------------------------------------- */

typedef struct pki {
    ca_issuer *root;
    ca_issuer *issuing;
} pki;

static void pki_make(pki *p, enum ca_key_type type, int64_t root_ttl, int64_t issuing_ttl)
{
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    assert_int_equal(ca_create_root(type, TD, root_ttl, NOW, &key, &cert), 0);
    assert_int_equal(ca_issuer_new(cert, key, &p->root), 0);
    assert_int_equal(ca_create_issuing(p->root, type, TD, issuing_ttl, NOW, &key, &cert), 0);
    assert_int_equal(ca_issuer_new(cert, key, &p->issuing), 0);
}

static void pki_free(pki *p)
{
    ca_issuer_free(p->root);
    ca_issuer_free(p->issuing);
}

static EVP_PKEY *gen(enum ca_key_type type)
{
    EVP_PKEY *key = NULL;
    assert_int_equal(ca_key_generate(type, &key), 0);
    return key;
}

static void assert_err_contains(const char *needle)
{
    if (strstr(tsr_errmsg(), needle) == NULL)
        fail_msg("error \"%s\" does not contain \"%s\"", tsr_errmsg(), needle);
}

static X509 *issue(const ca_issuer *issuer, const char *id, EVP_PKEY *key, int64_t ttl,
                   const char *const *dns, size_t n_dns, const char *const *ips, size_t n_ips)
{
    ca_leaf_request req = {
        .spiffe_id = id, .public_key = key, .ttl_seconds = ttl, .dns_names = dns,
        .n_dns_names = n_dns, .ip_addresses = ips, .n_ip_addresses = n_ips, .now = NOW,
    };
    X509 *cert = NULL;
    if (ca_issue_leaf(issuer, &req, &cert) != 0) fail_msg("issue %s: %s", id, tsr_errmsg());
    return cert;
}

static int ext_critical(const X509 *cert, int nid)
{
    int idx = X509_get_ext_by_NID(cert, nid, -1);
    assert_true(idx >= 0);
    assert_int_equal(X509_get_ext_by_NID(cert, nid, idx), -1); /* exactly one */
    return X509_EXTENSION_get_critical(X509_get_ext(cert, idx));
}

static void assert_serial(const X509 *cert)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
    assert_non_null(bn);
    assert_false(BN_is_negative(bn));
    assert_false(BN_is_zero(bn));
    assert_true(BN_num_bits(bn) <= 127); /* 128 random bits, top one cleared */
    BN_free(bn);
    char hex[41];
    assert_int_equal(ca_cert_serial_hex(cert, hex), 0);
}

static void assert_validity(const X509 *cert, int64_t nb, int64_t na)
{
    int64_t got_nb = 0, got_na = 0;
    assert_int_equal(ca_cert_validity(cert, &got_nb, &got_na), 0);
    assert_int_equal(got_nb, nb);
    assert_int_equal(got_na, na);
}

static void assert_basic_constraints(const X509 *cert, int ca, long pathlen)
{
    int crit = -1;
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(cert, NID_basic_constraints, &crit, NULL);
    assert_non_null(bc);
    assert_int_equal(crit, 1);
    assert_int_equal(bc->ca != 0, ca);
    if (pathlen < 0)
        assert_null(bc->pathlen);
    else
        assert_int_equal(ASN1_INTEGER_get(bc->pathlen), pathlen);
    BASIC_CONSTRAINTS_free(bc);
}

static void assert_key_usage(X509 *cert, uint32_t bits)
{
    assert_int_equal(ext_critical(cert, NID_key_usage), 1);
    assert_int_equal(X509_get_key_usage(cert), bits);
}

static void assert_ski_aki(X509 *cert, X509 *issuer)
{
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(cert);
    const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(cert);
    const ASN1_OCTET_STRING *issuer_ski = X509_get0_subject_key_id(issuer);
    assert_non_null(ski);
    assert_non_null(aki);
    assert_non_null(issuer_ski);
    assert_int_equal(ASN1_OCTET_STRING_cmp(aki, issuer_ski), 0);
    assert_int_equal(ext_critical(cert, NID_subject_key_identifier), 0);
    assert_int_equal(ext_critical(cert, NID_authority_key_identifier), 0);
}

static int expected_sig_nid(enum ca_key_type issuer_type)
{
    switch (issuer_type) {
    case CA_KEY_P256: return NID_ecdsa_with_SHA256;
    case CA_KEY_P384: return NID_ecdsa_with_SHA384;
    case CA_KEY_ED25519: return NID_ED25519;
    }
    return NID_undef;
}

static void assert_ca_name(const X509_NAME *name, const char *cn)
{
    char buf[256];
    assert_int_equal(X509_NAME_entry_count(name), 2);
    assert_true(X509_NAME_get_text_by_NID(name, NID_organizationName, buf, sizeof buf) > 0);
    assert_string_equal(buf, "Tessera");
    assert_true(X509_NAME_get_text_by_NID(name, NID_commonName, buf, sizeof buf) > 0);
    assert_string_equal(buf, cn);
}

/* Leaf SANs: exactly one URI (the ID), the DNS names and IPs given, in order. */
static void assert_leaf_sans(const X509 *cert, const char *id, const char *const *dns,
                             size_t n_dns, const unsigned char (*ips)[16], const size_t *ip_lens,
                             size_t n_ips)
{
    int crit = -1;
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, &crit, NULL);
    assert_non_null(names);
    assert_int_equal(crit, 1); /* empty subject: SAN critical */
    size_t uris = 0, d = 0, ip = 0;
    for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        const ASN1_STRING *s = NULL;
        switch (gn->type) {
        case GEN_URI:
            s = gn->d.uniformResourceIdentifier;
            assert_int_equal((size_t)ASN1_STRING_length(s), strlen(id));
            assert_memory_equal(ASN1_STRING_get0_data(s), id, strlen(id));
            uris++;
            break;
        case GEN_DNS:
            s = gn->d.dNSName;
            assert_true(d < n_dns);
            assert_int_equal((size_t)ASN1_STRING_length(s), strlen(dns[d]));
            assert_memory_equal(ASN1_STRING_get0_data(s), dns[d], strlen(dns[d]));
            d++;
            break;
        case GEN_IPADD:
            s = gn->d.iPAddress;
            assert_true(ip < n_ips);
            assert_int_equal((size_t)ASN1_STRING_length(s), ip_lens[ip]);
            assert_memory_equal(ASN1_STRING_get0_data(s), ips[ip], ip_lens[ip]);
            ip++;
            break;
        default: fail_msg("unexpected SAN type %d", gn->type);
        }
    }
    assert_int_equal(uris, 1);
    assert_int_equal(d, n_dns);
    assert_int_equal(ip, n_ips);
    GENERAL_NAMES_free(names);
}

static void assert_leaf_profile(X509 *leaf, const pki *p, enum ca_key_type issuer_type,
                                int64_t ttl)
{
    assert_int_equal(X509_get_version(leaf), X509_VERSION_3);
    assert_serial(leaf);
    assert_validity(leaf, NOW - 60, NOW + ttl);
    assert_basic_constraints(leaf, 0, -1);
    assert_key_usage(leaf, KU_DIGITAL_SIGNATURE);
    assert_int_equal(ext_critical(leaf, NID_ext_key_usage), 0);
    assert_int_equal(X509_get_extended_key_usage(leaf), XKU_SSL_SERVER | XKU_SSL_CLIENT);
    assert_ski_aki(leaf, p->issuing->cert);
    assert_int_equal(X509_NAME_entry_count(X509_get_subject_name(leaf)), 0);
    assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(leaf),
                                   X509_get_subject_name(p->issuing->cert)),
                     0);
    assert_int_equal(X509_get_ext_by_NID(leaf, NID_name_constraints, -1), -1);
    assert_int_equal(X509_get_signature_nid(leaf), expected_sig_nid(issuer_type));
    assert_int_equal(X509_verify(leaf, X509_get0_pubkey(p->issuing->cert)), 1);
    /* Nothing else: bc, ku, eku, ski, aki, san. */
    assert_int_equal(X509_get_ext_count(leaf), 6);
}

/* ---- a scratch directory and `openssl verify` --------------------------------- */

typedef struct scratch {
    char dir[64];
} scratch;

static void scratch_make(scratch *s)
{
    assert_int_equal(tu_temp_path(s->dir, sizeof s->dir, "tsr-test-ca-XXXXXX"), 0);
    assert_non_null(mkdtemp(s->dir));
}

static void scratch_remove(scratch *s)
{
    static const char *const files[] = {"bundle.pem", "issuing.pem", "leaf.pem",
                                        "issuing.key", "two.pem"};
    char path[128];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        assert_int_equal(tsr_path_join(path, sizeof path, s->dir, files[i]), 0);
        unlink(path);
    }
    assert_int_equal(rmdir(s->dir), 0);
}

static void write_cert(const scratch *s, const char *name, X509 *cert)
{
    char path[128], *pem = NULL;
    size_t len = 0;
    assert_int_equal(tsr_path_join(path, sizeof path, s->dir, name), 0);
    assert_int_equal(ca_cert_to_pem(cert, &pem, &len), 0);
    assert_int_equal(tsr_write_file_atomic(path, pem, len, 0644, TSR_WRITE_REPLACE), 0);
    free(pem);
}

/* Runs openssl verify on leaf.pem; returns its exit status, output in `out`. */
static int openssl_verify(const scratch *s, const char *purpose, char *out, size_t cap)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "openssl verify -x509_strict -purpose %s -CAfile %s/bundle.pem -untrusted "
             "%s/issuing.pem %s/leaf.pem 2>&1",
             purpose, s->dir, s->dir, s->dir);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    int status = pclose(f);
    assert_true(status != -1);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 255;
}

static void assert_openssl_ok(const scratch *s, const pki *p, X509 *leaf, const char *purpose)
{
    char out[2048];
    write_cert(s, "bundle.pem", p->root->cert);
    write_cert(s, "issuing.pem", p->issuing->cert);
    write_cert(s, "leaf.pem", leaf);
    int rc = openssl_verify(s, purpose, out, sizeof out);
    if (rc != 0 || strstr(out, "leaf.pem: OK") == NULL)
        fail_msg("openssl verify (%s) failed: %s", purpose, out);
}

/* ---- failure cases ---------------------------------------------------------------- */

static void test_key_type_parse(void **state)
{
    (void)state;
    static const char *const bad[] = {"", "rsa", "P256", "p-256", "p521", "ed448", "p256 "};
    enum ca_key_type t;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(ca_key_type_parse(bad[i], &t), -1);
        assert_int_equal(tsr_errcat(), TSR_E_INPUT);
    }
    assert_int_equal(ca_key_type_parse(NULL, &t), -1);
    static const struct {
        const char *name;
        enum ca_key_type type;
    } good[] = {{"p256", CA_KEY_P256},       {"ecdsa-p256", CA_KEY_P256},
                {"p384", CA_KEY_P384},       {"ecdsa-p384", CA_KEY_P384},
                {"ed25519", CA_KEY_ED25519}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(ca_key_type_parse(good[i].name, &t), 0);
        assert_int_equal(t, good[i].type);
    }
    for (size_t i = 0; i < N_TYPES; i++) {
        assert_int_equal(ca_key_type_parse(ca_key_type_name(all_types[i]), &t), 0);
        assert_int_equal(t, all_types[i]);
    }
}

static void test_key_describe_and_accept(void **state)
{
    (void)state;
    static const struct {
        const char *alg;
        const char *curve; /* or NULL */
        size_t bits;       /* RSA */
        const char *describe;
        int accepted;
        const char *why;
    } cases[] = {
        {"EC", "secp256k1", 0, "ECDSA secp256k1", 0, "unsupported key ECDSA secp256k1"},
        {"EC", "P-521", 0, "ECDSA P-521", 0, "unsupported key ECDSA P-521"},
        {"EC", "brainpoolP256r1", 0, "ECDSA brainpoolP256r1", 0, "unsupported key"},
        {"ED448", NULL, 0, "Ed448", 0, "unsupported key Ed448"},
        {"RSA", NULL, 1024, "RSA 1024", 0,
         "RSA key of 1024 bits is too small (minimum 2048)"},
        {"EC", "P-256", 0, "ECDSA P-256", 1, NULL},
        {"EC", "P-384", 0, "ECDSA P-384", 1, NULL},
        {"ED25519", NULL, 0, "Ed25519", 1, NULL},
        {"RSA", NULL, 2048, "RSA 2048", 1, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        EVP_PKEY *key = NULL;
        if (cases[i].curve != NULL)
            key = EVP_PKEY_Q_keygen(NULL, NULL, cases[i].alg, cases[i].curve);
        else if (cases[i].bits != 0)
            key = EVP_PKEY_Q_keygen(NULL, NULL, cases[i].alg, cases[i].bits);
        else
            key = EVP_PKEY_Q_keygen(NULL, NULL, cases[i].alg);
        assert_non_null(key);
        char desc[128];
        ca_key_describe(key, desc, sizeof desc);
        assert_string_equal(desc, cases[i].describe);
        if (cases[i].accepted) {
            assert_int_equal(ca_key_check_accepted(key), 0);
        } else {
            assert_int_equal(ca_key_check_accepted(key), -1);
            assert_int_equal(tsr_errcat(), TSR_E_INPUT);
            assert_err_contains(cases[i].why);
        }
        EVP_PKEY_free(key);
    }
    assert_int_equal(ca_key_check_accepted(NULL), -1);
    char desc[16];
    ca_key_describe(NULL, desc, sizeof desc);
    assert_string_equal(desc, "no key");
}

static void test_root_refusals(void **state)
{
    (void)state;
    static const char *const bad_td[] = {
        "", "Tessera.local", "tessera.local/x", "a,DNS:evil", "td:443", "t d", "tëst",
        "a-very-long-trust-domain-that-does-not-fit-a-cn.example", /* CN > 64 bytes */
    };
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    for (size_t i = 0; i < sizeof bad_td / sizeof bad_td[0]; i++) {
        assert_int_equal(ca_create_root(CA_KEY_P256, bad_td[i], DAY, NOW, &key, &cert), -1);
        assert_int_equal(tsr_errcat(), TSR_E_INPUT);
        assert_null(key);
        assert_null(cert);
    }
    assert_int_equal(ca_create_root(CA_KEY_P256, NULL, DAY, NOW, &key, &cert), -1);
    static const int64_t bad_ttl[] = {0, -1, 101LL * 366 * DAY};
    for (size_t i = 0; i < sizeof bad_ttl / sizeof bad_ttl[0]; i++)
        assert_int_equal(ca_create_root(CA_KEY_P256, TD, bad_ttl[i], NOW, &key, &cert), -1);
    assert_int_equal(ca_create_root((enum ca_key_type)7, TD, DAY, NOW, &key, &cert), -1);
    assert_null(key);
    assert_null(cert);
}

static void test_leaf_refusals(void **state)
{
    (void)state;
    pki p = {0};
    pki_make(&p, CA_KEY_P256, 3650 * DAY, 365 * DAY);
    EVP_PKEY *key = gen(CA_KEY_P256);
    char long_id[2100];
    memset(long_id, 'a', sizeof long_id);
    memcpy(long_id, "spiffe://" TD "/x/", strlen("spiffe://" TD "/x/"));
    long_id[2049] = '\0'; /* 2049 bytes */
    static const char *const bad_ids[] = {
        "",
        "spiffe://",
        "spiffe://" TD,
        "spiffe://" TD "/",
        "spiffe://" TD "/user/",
        "spiffe://" TD "/user//alice",
        "spiffe://" TD "/./alice",
        "spiffe://" TD "/user/..",
        "spiffe://Tessera.local/user/alice",
        "spiffe://" TD ":443/user/alice",
        "spiffe://bob@" TD "/user/alice",
        "spiffe://" TD "/user/alice?x=1",
        "spiffe://" TD "/user/alice#f",
        "spiffe://" TD "/user/al%20ice",
        "spiffe://" TD "/user/alice,URI:spiffe://x/y",
        "SPIFFE://" TD "/user/alice",
        "https://" TD "/user/alice",
        "spiffe:///user/alice",
        NULL,
    };
    X509 *cert = NULL;
    for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
        ca_leaf_request req = {.spiffe_id = bad_ids[i], .public_key = key, .ttl_seconds = 3600,
                               .now = NOW};
        if (ca_issue_leaf(p.issuing, &req, &cert) != -1) fail_msg("accepted \"%s\"", bad_ids[i]);
        assert_int_equal(tsr_errcat(), TSR_E_INPUT);
        assert_null(cert);
    }
    ca_leaf_request req = {.spiffe_id = long_id, .public_key = key, .ttl_seconds = 3600,
                           .now = NOW};
    assert_int_equal(ca_issue_leaf(p.issuing, &req, &cert), -1);
    assert_err_contains("longer than 2048");
    long_id[2048] = '\0'; /* exactly 2048: fine */
    assert_int_equal(ca_issue_leaf(p.issuing, &req, &cert), 0);
    X509_free(cert);
    cert = NULL;

    /* Another trust domain through the name-constrained issuing CA, and a
     * subdomain of it, or a suffix match: outside, with the same refusal
     * whether the leaf is re-parsed or checked on a probe before signing
     * (unparsed). */
    static const char *const outside[] = {
        "spiffe://other.td/sandbox/0f8e6c4a-3b1d-4e2f-9a7c-5d6e7f809a1b",
        "spiffe://sub." TD "/user/x",
        "spiffe://x" TD "/user/x",
    };
    for (int unparsed = 0; unparsed < 2; unparsed++) {
        req.unparsed = unparsed;
        for (size_t i = 0; i < sizeof outside / sizeof outside[0]; i++) {
            req.spiffe_id = outside[i];
            assert_int_equal(ca_issue_leaf(p.issuing, &req, &cert), -1);
            assert_int_equal(tsr_errcat(), TSR_E_INPUT);
            char want[300];
            snprintf(want, sizeof want,
                     "%s is outside the issuing CA's name constraints (permitted subtree "
                     "violation)",
                     outside[i]);
            assert_string_equal(tsr_errmsg(), want);
            assert_null(cert);
        }
        req.spiffe_id = USER_ID;   /* inside: issued on both paths */
        assert_int_equal(ca_issue_leaf(p.issuing, &req, &cert), 0);
        X509_free(cert);
        cert = NULL;
    }
    req.unparsed = false;

    /* TTL, keys, DNS names, IPs. */
    req.spiffe_id = USER_ID;
    static const int64_t bad_ttl[] = {0, -60, 101LL * 366 * DAY};
    for (size_t i = 0; i < sizeof bad_ttl / sizeof bad_ttl[0]; i++) {
        req.ttl_seconds = bad_ttl[i];
        assert_int_equal(ca_issue_leaf(p.issuing, &req, &cert), -1);
    }
    req.ttl_seconds = 3600;
    EVP_PKEY *weak = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    EVP_PKEY *k1 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp256k1");
    assert_non_null(weak);
    assert_non_null(k1);
    req.public_key = weak;
    assert_int_equal(ca_issue_leaf(p.issuing, &req, &cert), -1);
    assert_err_contains("too small");
    req.public_key = k1;
    assert_int_equal(ca_issue_leaf(p.issuing, &req, &cert), -1);
    assert_err_contains("unsupported key");
    req.public_key = NULL;
    assert_int_equal(ca_issue_leaf(p.issuing, &req, &cert), -1);
    req.public_key = key;

    static const char *const bad_dns[] = {
        "", "a..b", "-a.example", "a-.example", "*.example", "a b", "a_b.example",
        "example.", "0123456789012345678901234567890123456789012345678901234567890123.x",
    };
    for (size_t i = 0; i < sizeof bad_dns / sizeof bad_dns[0]; i++) {
        req.dns_names = &bad_dns[i];
        req.n_dns_names = 1;
        if (ca_issue_leaf(p.issuing, &req, &cert) != -1) fail_msg("accepted DNS \"%s\"", bad_dns[i]);
        assert_int_equal(tsr_errcat(), TSR_E_INPUT);
    }
    const char *many[33];
    for (size_t i = 0; i < 33; i++) many[i] = "localhost";
    req.dns_names = many;
    req.n_dns_names = 33;
    assert_int_equal(ca_issue_leaf(p.issuing, &req, &cert), -1);
    assert_int_equal(tsr_errcat(), TSR_E_LIMIT);
    req.dns_names = NULL;
    req.n_dns_names = 0;
    static const char *const bad_ip[] = {"", "1.2.3", "256.1.1.1", "::g", "1.2.3.4 ",
                                         "localhost", "01.2.3.4x", "1.2.3.4/24"};
    for (size_t i = 0; i < sizeof bad_ip / sizeof bad_ip[0]; i++) {
        req.ip_addresses = &bad_ip[i];
        req.n_ip_addresses = 1;
        if (ca_issue_leaf(p.issuing, &req, &cert) != -1) fail_msg("accepted IP \"%s\"", bad_ip[i]);
        assert_int_equal(tsr_errcat(), TSR_E_INPUT);
    }
    req.ip_addresses = NULL;
    req.n_ip_addresses = 0;

    /* The issuing CA expired (or not yet valid) at `now`: nothing issued. */
    int64_t nb = 0, na = 0;
    assert_int_equal(ca_cert_validity(p.issuing->cert, &nb, &na), 0);
    req.now = na;
    assert_int_equal(ca_issue_leaf(p.issuing, &req, &cert), -1);
    assert_int_equal(tsr_errcat(), TSR_E_STATE);
    req.now = nb - 1;
    assert_int_equal(ca_issue_leaf(p.issuing, &req, &cert), -1);
    assert_int_equal(tsr_errcat(), TSR_E_STATE);
    assert_null(cert);
    assert_int_equal(ca_issue_leaf(NULL, &req, &cert), -1);
    assert_int_equal(ca_issue_leaf(p.issuing, NULL, &cert), -1);

    EVP_PKEY_free(weak);
    EVP_PKEY_free(k1);
    EVP_PKEY_free(key);
    pki_free(&p);
}

static void test_issuer_refusals(void **state)
{
    (void)state;
    pki p = {0}, q = {0};
    pki_make(&p, CA_KEY_P256, 3650 * DAY, 365 * DAY);
    pki_make(&q, CA_KEY_P256, 3650 * DAY, 365 * DAY);
    ca_issuer *iss = NULL;

    /* Key of another CA. */
    X509_up_ref(p.issuing->cert);
    EVP_PKEY_up_ref(q.issuing->key);
    assert_int_equal(ca_issuer_new(p.issuing->cert, q.issuing->key, &iss), -1);
    assert_err_contains("does not belong");
    assert_null(iss);

    /* A leaf is not a CA. */
    EVP_PKEY *key = gen(CA_KEY_P256);
    X509 *leaf = issue(p.issuing, USER_ID, key, 3600, NULL, 0, NULL, 0);
    assert_int_equal(ca_issuer_new(leaf, key, &iss), -1); /* takes ownership of both */
    assert_err_contains("not a CA");

    /* An RSA key cannot be a Tessera CA key. */
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    assert_non_null(rsa);
    X509_up_ref(p.issuing->cert);
    assert_int_equal(ca_issuer_new(p.issuing->cert, rsa, &iss), -1);
    assert_err_contains("CA key must be");

    assert_int_equal(ca_issuer_new(NULL, NULL, &iss), -1);
    assert_int_equal(ca_issuer_load("/nonexistent/issuing.pem", "/nonexistent/issuing.key", &iss),
                     -1);
    assert_int_equal(tsr_errcat(), TSR_E_NOTFOUND);

    /* The root has no trust-domain constraint. */
    char td[256];
    assert_int_equal(ca_issuing_trust_domain(p.root->cert, td, sizeof td), -1);
    assert_int_equal(ca_issuing_trust_domain(p.issuing->cert, td, 4), -1);
    assert_int_equal(ca_issuing_trust_domain(p.issuing->cert, td, sizeof td), 0);
    assert_string_equal(td, TD);
    ca_issuer_free(NULL);
    pki_free(&p);
    pki_free(&q);
}

/* ---- the profile ------------------------------------------------------------------ */

static void check_ca_profiles(enum ca_key_type type)
{
    pki p = {0};
    pki_make(&p, type, 3650 * DAY, 365 * DAY);
    X509 *root = p.root->cert, *issuing = p.issuing->cert;

    /* Root. */
    assert_int_equal(X509_get_version(root), X509_VERSION_3);
    assert_serial(root);
    assert_validity(root, NOW - 60, NOW + 3650 * DAY);
    assert_basic_constraints(root, 1, 1);
    assert_key_usage(root, KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    assert_ski_aki(root, root);
    assert_ca_name(X509_get_subject_name(root), "Tessera Root CA " TD);
    assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(root), X509_get_subject_name(root)), 0);
    assert_int_equal(X509_get_signature_nid(root), expected_sig_nid(type));
    assert_int_equal(X509_verify(root, X509_get0_pubkey(root)), 1);
    assert_int_equal(X509_get_ext_by_NID(root, NID_name_constraints, -1), -1);
    assert_int_equal(X509_get_ext_by_NID(root, NID_ext_key_usage, -1), -1);
    assert_int_equal(X509_get_ext_count(root), 4);
    assert_int_equal(X509_check_private_key(root, p.root->key), 1);

    /* Issuing CA. */
    assert_int_equal(X509_get_version(issuing), X509_VERSION_3);
    assert_serial(issuing);
    assert_validity(issuing, NOW - 60, NOW + 365 * DAY);
    assert_basic_constraints(issuing, 1, 0);
    assert_key_usage(issuing, KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    assert_ski_aki(issuing, root);
    assert_ca_name(X509_get_subject_name(issuing), "Tessera Issuing CA " TD);
    assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(issuing), X509_get_subject_name(root)),
                     0);
    assert_int_equal(X509_get_signature_nid(issuing), expected_sig_nid(type));
    assert_int_equal(X509_verify(issuing, X509_get0_pubkey(root)), 1);
    int crit = -1;
    NAME_CONSTRAINTS *nc = X509_get_ext_d2i(issuing, NID_name_constraints, &crit, NULL);
    assert_non_null(nc);
    assert_int_equal(crit, 1);
    assert_int_equal(sk_GENERAL_SUBTREE_num(nc->permittedSubtrees), 1);
    assert_true(sk_GENERAL_SUBTREE_num(nc->excludedSubtrees) <= 0);
    const GENERAL_SUBTREE *st = sk_GENERAL_SUBTREE_value(nc->permittedSubtrees, 0);
    assert_int_equal(st->base->type, GEN_URI);
    const ASN1_STRING *base = st->base->d.uniformResourceIdentifier;
    assert_int_equal(ASN1_STRING_length(base), strlen(TD));
    assert_memory_equal(ASN1_STRING_get0_data(base), TD, strlen(TD));
    assert_null(st->minimum);
    assert_null(st->maximum);
    NAME_CONSTRAINTS_free(nc);
    assert_int_equal(X509_get_ext_count(issuing), 5);
    assert_int_equal(ASN1_INTEGER_cmp(X509_get0_serialNumber(root),
                                      X509_get0_serialNumber(issuing)) != 0,
                     1);
    pki_free(&p);
}

static void test_ca_profile_p256(void **state) { (void)state; check_ca_profiles(CA_KEY_P256); }
static void test_ca_profile_p384(void **state) { (void)state; check_ca_profiles(CA_KEY_P384); }
static void test_ca_profile_ed25519(void **state)
{
    (void)state;
    check_ca_profiles(CA_KEY_ED25519);
}

static void check_leaf_profiles(enum ca_key_type type)
{
    pki p = {0};
    scratch s;
    scratch_make(&s);
    pki_make(&p, type, 3650 * DAY, 365 * DAY);
    for (size_t k = 0; k < N_TYPES; k++) {
        EVP_PKEY *key = gen(all_types[k]);
        X509 *sandbox = issue(p.issuing, SANDBOX_ID, key, 3600, NULL, 0, NULL, 0);
        assert_leaf_profile(sandbox, &p, type, 3600);
        assert_leaf_sans(sandbox, SANDBOX_ID, NULL, 0, NULL, NULL, 0);
        assert_int_equal(X509_check_private_key(sandbox, key), 1);
        assert_openssl_ok(&s, &p, sandbox, "sslclient");

        X509 *user = issue(p.issuing, USER_ID, key, 90 * DAY, NULL, 0, NULL, 0);
        assert_leaf_profile(user, &p, type, 90 * DAY);
        assert_leaf_sans(user, USER_ID, NULL, 0, NULL, NULL, 0);
        assert_openssl_ok(&s, &p, user, "sslclient");

        static const char *const dns[] = {"localhost", "gw.example.com"};
        static const char *const ips[] = {"127.0.0.1", "::1", "10.1.2.3"};
        static const unsigned char ip_bytes[3][16] = {
            {127, 0, 0, 1}, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, {10, 1, 2, 3}};
        static const size_t ip_lens[] = {4, 16, 4};
        X509 *gw = issue(p.issuing, GATEWAY_ID, key, 90 * DAY, dns, 2, ips, 3);
        assert_leaf_profile(gw, &p, type, 90 * DAY);
        assert_leaf_sans(gw, GATEWAY_ID, dns, 2, ip_bytes, ip_lens, 3);
        assert_openssl_ok(&s, &p, gw, "sslserver");
        assert_openssl_ok(&s, &p, gw, "sslclient");

        assert_int_equal(ASN1_INTEGER_cmp(X509_get0_serialNumber(sandbox),
                                          X509_get0_serialNumber(user)) != 0,
                         1);
        X509_free(sandbox);
        X509_free(user);
        X509_free(gw);
        EVP_PKEY_free(key);
    }
    pki_free(&p);
    scratch_remove(&s);
}

static void test_leaf_profile_p256(void **state) { (void)state; check_leaf_profiles(CA_KEY_P256); }
static void test_leaf_profile_p384(void **state) { (void)state; check_leaf_profiles(CA_KEY_P384); }
static void test_leaf_profile_ed25519(void **state)
{
    (void)state;
    check_leaf_profiles(CA_KEY_ED25519);
}

static void test_rsa_leaf_key(void **state)
{
    (void)state;
    pki p = {0};
    pki_make(&p, CA_KEY_P256, 3650 * DAY, 365 * DAY);
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    assert_non_null(rsa);
    X509 *leaf = issue(p.issuing, SANDBOX_ID, rsa, 3600, NULL, 0, NULL, 0);
    assert_leaf_profile(leaf, &p, CA_KEY_P256, 3600);
    /* digitalSignature only, even for RSA (no keyEncipherment). */
    assert_int_equal(X509_get_key_usage(leaf), KU_DIGITAL_SIGNATURE);
    X509_free(leaf);
    EVP_PKEY_free(rsa);
    pki_free(&p);
}

static void test_validity_clamped(void **state)
{
    (void)state;
    pki p = {0};
    /* Issuing TTL longer than the root's: clamped to the root's notAfter. */
    pki_make(&p, CA_KEY_P256, 30 * DAY, 365 * DAY);
    assert_validity(p.issuing->cert, NOW - 60, NOW + 30 * DAY);
    ca_issuer_free(p.issuing);
    p.issuing = NULL;
    EVP_PKEY *ikey = NULL;
    X509 *icert = NULL;
    assert_int_equal(ca_create_issuing(p.root, CA_KEY_P256, TD, 2 * DAY, NOW, &ikey, &icert), 0);
    assert_int_equal(ca_issuer_new(icert, ikey, &p.issuing), 0);
    /* Leaf TTL longer than the issuing CA's: clamped to its notAfter. */
    EVP_PKEY *key = gen(CA_KEY_P256);
    X509 *leaf = issue(p.issuing, USER_ID, key, 90 * DAY, NULL, 0, NULL, 0);
    assert_validity(leaf, NOW - 60, NOW + 2 * DAY);
    X509_free(leaf);
    /* Issued one hour before the issuing CA expires: one hour left. */
    ca_leaf_request req = {.spiffe_id = USER_ID, .public_key = key, .ttl_seconds = 3 * DAY,
                           .now = NOW + 2 * DAY - 3600};
    assert_int_equal(ca_issue_leaf(p.issuing, &req, &leaf), 0);
    assert_validity(leaf, NOW + 2 * DAY - 3660, NOW + 2 * DAY);
    X509_free(leaf);
    /* The root expired: no new issuing CA. */
    assert_int_equal(
        ca_create_issuing(p.root, CA_KEY_P256, TD, DAY, NOW + 31 * DAY, &ikey, &icert), -1);
    assert_int_equal(tsr_errcat(), TSR_E_STATE);
    EVP_PKEY_free(key);
    pki_free(&p);
}

static void test_now_zero_is_current_time(void **state)
{
    (void)state;
    EVP_PKEY *rkey = NULL, *ikey = NULL;
    X509 *rcert = NULL, *icert = NULL, *leaf = NULL;
    ca_issuer *root = NULL, *issuing = NULL;
    int64_t t0 = tsr_now_unix();
    assert_int_equal(ca_create_root(CA_KEY_P256, TD, 10 * DAY, 0, &rkey, &rcert), 0);
    assert_int_equal(ca_issuer_new(rcert, rkey, &root), 0);
    assert_int_equal(ca_create_issuing(root, CA_KEY_P256, TD, 5 * DAY, 0, &ikey, &icert), 0);
    assert_int_equal(ca_issuer_new(icert, ikey, &issuing), 0);
    EVP_PKEY *key = gen(CA_KEY_P256);
    ca_leaf_request req = {.spiffe_id = SANDBOX_ID, .public_key = key, .ttl_seconds = 3600};
    assert_int_equal(ca_issue_leaf(issuing, &req, &leaf), 0);
    int64_t t1 = tsr_now_unix();
    int64_t nb = 0, na = 0;
    assert_int_equal(ca_cert_validity(leaf, &nb, &na), 0);
    assert_true(nb >= t0 - 60 && nb <= t1 - 60);
    assert_int_equal(na - nb, 3600 + 60);
    X509_free(leaf);
    EVP_PKEY_free(key);
    ca_issuer_free(issuing);
    ca_issuer_free(root);
}

static int cmp_serial(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static void test_serials_unique(void **state)
{
    (void)state;
    enum { N = 1000 };
    pki p = {0};
    pki_make(&p, CA_KEY_P256, 3650 * DAY, 365 * DAY);
    EVP_PKEY *key = gen(CA_KEY_P256);
    char(*serials)[41] = calloc(N, sizeof *serials);
    assert_non_null(serials);
    int long_ones = 0;
    for (int i = 0; i < N; i++) {
        X509 *leaf = issue(p.issuing, SANDBOX_ID, key, 3600, NULL, 0, NULL, 0);
        assert_serial(leaf);
        assert_int_equal(ca_cert_serial_hex(leaf, serials[i]), 0);
        if (strlen(serials[i]) >= 30) long_ones++;
        X509_free(leaf);
    }
    qsort(serials, N, sizeof *serials, cmp_serial);
    for (int i = 1; i < N; i++) assert_string_not_equal(serials[i - 1], serials[i]);
    /* Random 127-bit values: nearly all have 120+ bits (30+ hex digits). */
    assert_true(long_ones > N * 9 / 10);
    free(serials);
    EVP_PKEY_free(key);
    pki_free(&p);
}

/* A leaf of another trust domain, forced through the name-constrained
 * issuing CA by re-signing an edited copy: OpenSSL's verifier refuses it. */
static X509 *forge_with_uri(const pki *p, X509 *leaf, enum ca_key_type type, const char *uri)
{
    X509 *forged = X509_dup(leaf);
    assert_non_null(forged);
    int idx = X509_get_ext_by_NID(forged, NID_subject_alt_name, -1);
    assert_true(idx >= 0);
    X509_EXTENSION_free(X509_delete_ext(forged, idx));
    GENERAL_NAMES *names = GENERAL_NAMES_new();
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_IA5STRING *s = ASN1_IA5STRING_new();
    assert_int_equal(ASN1_STRING_set(s, uri, -1), 1);
    GENERAL_NAME_set0_value(gn, GEN_URI, s);
    assert_true(sk_GENERAL_NAME_push(names, gn) > 0);
    assert_int_equal(X509_add1_ext_i2d(forged, NID_subject_alt_name, names, 1, 0), 1);
    GENERAL_NAMES_free(names);
    const EVP_MD *md = type == CA_KEY_P256 ? EVP_sha256()
                       : type == CA_KEY_P384 ? EVP_sha384()
                                             : NULL;
    assert_true(X509_sign(forged, p->issuing->key, md) > 0);
    return forged;
}

static void test_name_constraints_enforced_by_openssl(void **state)
{
    (void)state;
    scratch s;
    scratch_make(&s);
    for (size_t t = 0; t < N_TYPES; t++) {
        pki p = {0};
        pki_make(&p, all_types[t], 3650 * DAY, 365 * DAY);
        EVP_PKEY *key = gen(CA_KEY_P256);
        ca_leaf_request req = {.spiffe_id = SANDBOX_ID, .public_key = key, .ttl_seconds = 3600};
        X509 *leaf = NULL;
        assert_int_equal(ca_issue_leaf(p.issuing, &req, &leaf), 0);
        char out[2048];

        /* Control: the same edit within the trust domain still verifies, so
         * the refusal below is the name constraint and nothing else. */
        X509 *same = forge_with_uri(&p, leaf, all_types[t], "spiffe://" TD "/sandbox/other");
        assert_openssl_ok(&s, &p, same, "sslclient");

        static const char *const foreign[] = {
            "spiffe://other.td/sandbox/0f8e6c4a-3b1d-4e2f-9a7c-5d6e7f809a1b",
            "spiffe://sub." TD "/user/alice",
            "spiffe://evil" TD "/user/alice",
        };
        for (size_t i = 0; i < sizeof foreign / sizeof foreign[0]; i++) {
            X509 *forged = forge_with_uri(&p, leaf, all_types[t], foreign[i]);
            write_cert(&s, "leaf.pem", forged);
            int rc = openssl_verify(&s, "sslclient", out, sizeof out);
            if (rc == 0 || strstr(out, "leaf.pem: OK") != NULL)
                fail_msg("openssl accepted %s: %s", foreign[i], out);
            if (strstr(out, "name constraint") == NULL && strstr(out, "subtree") == NULL)
                fail_msg("refused for another reason: %s", out);
            X509_free(forged);
        }
        X509_free(same);
        X509_free(leaf);
        EVP_PKEY_free(key);
        pki_free(&p);
    }
    scratch_remove(&s);
}


/* DER of one extension, for byte-exact comparison. */
static void assert_ext_der_equal(const X509_EXTENSION *got, const X509_EXTENSION *want,
                                 const char *what)
{
    unsigned char *a = NULL, *b = NULL;
    int la = i2d_X509_EXTENSION(got, &a), lb = i2d_X509_EXTENSION(want, &b);
    assert_true(la > 0 && lb > 0);
    if (la != lb || memcmp(a, b, (size_t)la) != 0) fail_msg("%s differs from the conf build", what);
    OPENSSL_free(a);
    OPENSSL_free(b);
}

/* The extensions an issuer prepares once (and the SKI hashed with its
 * prefetched SHA-1) are byte for byte what X509V3_EXT_conf_nid builds for
 * this very leaf, in the same order, for every CA and leaf key type, in both
 * the re-parsed and the unparsed (RenewCertificate) form. */
static void test_prepared_extensions_match_conf(void **state)
{
    (void)state;
    static const struct { int nid; const char *value; } want[] = {
        {NID_basic_constraints, "critical,CA:FALSE"},
        {NID_key_usage, "critical,digitalSignature"},
        {NID_ext_key_usage, "serverAuth,clientAuth"},
        {NID_subject_key_identifier, "hash"},
        {NID_authority_key_identifier, "keyid:always"},
    };
    for (size_t t = 0; t < N_TYPES; t++) {
        pki p = {0};
        pki_make(&p, all_types[t], 3650 * DAY, 365 * DAY);
        for (size_t k = 0; k < N_TYPES; k++) {
            for (int unparsed = 0; unparsed <= 1; unparsed++) {
                EVP_PKEY *key = gen(all_types[k]);
                ca_leaf_request req = {.spiffe_id = SANDBOX_ID, .public_key = key,
                                       .ttl_seconds = 3600, .now = NOW,
                                       .unparsed = unparsed != 0};
                X509 *leaf = NULL;
                assert_int_equal(ca_issue_leaf(p.issuing, &req, &leaf), 0);
                assert_int_equal(X509_get_ext_count(leaf), 6);
                X509V3_CTX ctx;
                X509V3_set_ctx(&ctx, p.issuing->cert, leaf, NULL, NULL, 0);
                for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
                    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, want[i].nid,
                                                              want[i].value);
                    assert_non_null(ext);
                    assert_ext_der_equal(X509_get_ext(leaf, (int)i), ext,
                                         OBJ_nid2sn(want[i].nid));
                    X509_EXTENSION_free(ext);
                }
                assert_int_equal(OBJ_obj2nid(X509_EXTENSION_get_object(X509_get_ext(leaf, 5))),
                                 NID_subject_alt_name);
                /* The AKI names this issuer's key. */
                const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(leaf);
                assert_non_null(aki);
                assert_int_equal(ASN1_OCTET_STRING_cmp(
                                     aki, X509_get0_subject_key_id(p.issuing->cert)),
                                 0);
                X509_free(leaf);
                EVP_PKEY_free(key);
            }
        }
        pki_free(&p);
    }
}

/* What an issuer prepares belongs to that issuer: leaves of two CAs name
 * their own issuer, and an issuer not built by ca_issuer_new, or carrying
 * another CA's prepared state, is refused before anything is signed. */
static void test_issuer_prep_belongs_to_its_ca(void **state)
{
    (void)state;
    pki a = {0}, b = {0};
    pki_make(&a, CA_KEY_P256, 3650 * DAY, 365 * DAY);
    pki_make(&b, CA_KEY_P256, 3650 * DAY, 365 * DAY);
    EVP_PKEY *key = gen(CA_KEY_P256);
    X509 *la = issue(a.issuing, SANDBOX_ID, key, 3600, NULL, 0, NULL, 0);
    X509 *lb = issue(b.issuing, SANDBOX_ID, key, 3600, NULL, 0, NULL, 0);
    assert_int_equal(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(la),
                                           X509_get0_subject_key_id(a.issuing->cert)),
                     0);
    assert_int_equal(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(lb),
                                           X509_get0_subject_key_id(b.issuing->cert)),
                     0);
    assert_int_not_equal(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(la),
                                               X509_get0_authority_key_id(lb)),
                         0);
    assert_int_equal(X509_verify(la, X509_get0_pubkey(a.issuing->cert)), 1);
    assert_int_equal(X509_verify(lb, X509_get0_pubkey(b.issuing->cert)), 1);

    ca_leaf_request req = {.spiffe_id = SANDBOX_ID, .public_key = key, .ttl_seconds = 3600,
                           .now = NOW};
    X509 *out = NULL;
    ca_issuer mixed = {.cert = b.issuing->cert, .key = b.issuing->key, .prep = a.issuing->prep};
    assert_int_equal(ca_issue_leaf(&mixed, &req, &out), -1);
    assert_int_equal(tsr_errcat(), TSR_E_INTERNAL);
    assert_err_contains("not prepared");
    assert_null(out);
    ca_issuer bare = {.cert = a.issuing->cert, .key = a.issuing->key, .prep = NULL};
    assert_int_equal(ca_issue_leaf(&bare, &req, &out), -1);
    assert_err_contains("not prepared");
    assert_null(out);

    X509_free(la);
    X509_free(lb);
    EVP_PKEY_free(key);
    pki_free(&a);
    pki_free(&b);
}

static void test_issuer_load_roundtrip(void **state)
{
    (void)state;
    scratch s;
    scratch_make(&s);
    pki p = {0};
    pki_make(&p, CA_KEY_ED25519, 3650 * DAY, 365 * DAY);
    char cert_path[128], key_path[128], two_path[128], *pem = NULL;
    size_t len = 0;
    write_cert(&s, "issuing.pem", p.issuing->cert);
    assert_int_equal(tsr_path_join(cert_path, sizeof cert_path, s.dir, "issuing.pem"), 0);
    assert_int_equal(tsr_path_join(key_path, sizeof key_path, s.dir, "issuing.key"), 0);
    assert_int_equal(tsr_path_join(two_path, sizeof two_path, s.dir, "two.pem"), 0);
    assert_int_equal(ca_key_to_pem(p.issuing->key, &pem, &len), 0);
    assert_int_equal(tsr_write_file_atomic(key_path, pem, len, 0600, TSR_WRITE_REPLACE), 0);
    ca_secret_free(pem, len);

    ca_issuer *loaded = NULL;
    assert_int_equal(ca_issuer_load(cert_path, key_path, &loaded), 0);
    assert_int_equal(X509_cmp(loaded->cert, p.issuing->cert), 0);
    EVP_PKEY *key = gen(CA_KEY_P384);
    X509 *leaf = issue(loaded, USER_ID, key, 3600, NULL, 0, NULL, 0);
    assert_int_equal(X509_verify(leaf, X509_get0_pubkey(p.issuing->cert)), 1);
    X509_free(leaf);
    EVP_PKEY_free(key);
    ca_issuer_free(loaded);
    loaded = NULL;

    /* A file with two certificates is not one CA. */
    STACK_OF(X509) *two = sk_X509_new_null();
    assert_true(sk_X509_push(two, p.issuing->cert) > 0);
    assert_true(sk_X509_push(two, p.root->cert) > 0);
    assert_int_equal(ca_certs_to_pem(two, &pem, &len), 0);
    sk_X509_free(two);
    assert_int_equal(tsr_write_file_atomic(two_path, pem, len, 0644, TSR_WRITE_REPLACE), 0);
    free(pem);
    assert_int_equal(ca_issuer_load(two_path, key_path, &loaded), -1);
    assert_err_contains("exactly one");
    /* The root's certificate with the issuing key: mismatch. */
    write_cert(&s, "issuing.pem", p.root->cert);
    assert_int_equal(ca_issuer_load(cert_path, key_path, &loaded), -1);
    assert_err_contains("does not belong");
    assert_null(loaded);
    pki_free(&p);
    scratch_remove(&s);
}

int main(void)
{
    g_now = tsr_now_unix();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_type_parse),
        cmocka_unit_test(test_key_describe_and_accept),
        cmocka_unit_test(test_root_refusals),
        cmocka_unit_test(test_leaf_refusals),
        cmocka_unit_test(test_issuer_refusals),
        cmocka_unit_test(test_ca_profile_p256),
        cmocka_unit_test(test_ca_profile_p384),
        cmocka_unit_test(test_ca_profile_ed25519),
        cmocka_unit_test(test_leaf_profile_p256),
        cmocka_unit_test(test_leaf_profile_p384),
        cmocka_unit_test(test_leaf_profile_ed25519),
        cmocka_unit_test(test_rsa_leaf_key),
        cmocka_unit_test(test_validity_clamped),
        cmocka_unit_test(test_now_zero_is_current_time),
        cmocka_unit_test(test_serials_unique),
        cmocka_unit_test(test_name_constraints_enforced_by_openssl),
        cmocka_unit_test(test_issuer_load_roundtrip),
        cmocka_unit_test(test_prepared_extensions_match_conf),
        cmocka_unit_test(test_issuer_prep_belongs_to_its_ca),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
