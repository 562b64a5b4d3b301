/* gw_forward: forwarded client certificates (docs/operations.md). The decoders first
 * (refusals, then acceptances), then the decision with a real trust bundle,
 * revocation set and configuration: who may forward, and what the forwarded
 * certificate becomes. Certificates are forged with raw OpenSSL
 * (tu_certforge), valid around the current time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "ca_pem.h"
#include "ca_verify.h"
#include "gw_app.h"
#include "gw_config.h"
#include "gw_forward.h"
#include "gw_metrics.h"
#include "gw_revocation.h"
#include "tu_certforge.h"

#define TD "tessera.local"
#define UUID "0f8fad5b-d9cb-469f-a165-70867728950e"

static const uint8_t *u8(const char *s)
{
    return (const uint8_t *)s;
}

/* Percent-encode everything but [A-Za-z0-9-._~], as nginx's
 * $ssl_client_escaped_cert does for PEM. */
static char *escape(const char *in, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = malloc(3 * len + 1);
    assert_non_null(out);
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
    return out;
}

/* ---- percent-decoding --------------------------------------------------- */

static void test_unescape_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t len; /* 0 = strlen */
        const char *why;
    } cases[] = {
        {"", 0, "empty certificate"},
        {"%", 0, "bad percent-escape at byte 0"},
        {"ab%4", 0, "bad percent-escape at byte 2"},
        {"%zz", 0, "bad percent-escape at byte 0"},
        {"%4g", 0, "bad percent-escape at byte 0"},
        {"% 41", 0, "bad percent-escape"},
        {"%00", 0, "byte 0x00 is not PEM text"},
        {"a%01", 0, "byte 0x01 is not PEM text"},
        {"%7f", 0, "byte 0x7f is not PEM text"},
        {"%80", 0, "byte 0x80 is not PEM text"},
        {"%FF", 0, "byte 0xff is not PEM text"},
        {"ab\x01", 0, "byte 0x01 is not PEM text (at byte 2)"},
        {"a\0b", 3, "byte 0x00 is not PEM text (at byte 1)"},
        {"\x7f", 0, "byte 0x7f"},
        {"\xc3\xa9", 0, "byte 0xc3"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *out = (uint8_t *)1;
        size_t out_len = 99;
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].in);
        if (gw_forward_unescape(u8(cases[i].in), len, &out, &out_len) == 0) {
            print_error("accepted case %zu\n", i);
            fail();
        }
        assert_null(out);
        assert_int_equal(out_len, 0);
        assert_int_equal(tsr_errcat(), TSR_E_INPUT);
        if (strstr(tsr_errmsg(), cases[i].why) == NULL) {
            print_error("case %zu: \"%s\" lacks \"%s\"\n", i, tsr_errmsg(), cases[i].why);
            fail();
        }
    }
    /* Oversized: one byte over the limit, even if valid. */
    size_t big = GW_FORWARD_MAX_HEADER + 1;
    char *text = malloc(big);
    assert_non_null(text);
    memset(text, 'A', big);
    uint8_t *out;
    size_t out_len;
    assert_int_equal(gw_forward_unescape(u8(text), big, &out, &out_len), -1);
    assert_non_null(strstr(tsr_errmsg(), "exceeds 16384 bytes"));
    /* At the limit: fine. */
    assert_int_equal(gw_forward_unescape(u8(text), big - 1, &out, &out_len), 0);
    assert_int_equal(out_len, big - 1);
    free(out);
    free(text);
}

static void test_unescape(void **state)
{
    (void)state;
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"a", "a"},
        {"%41", "A"},
        {"%2b+", "++"},          /* '+' is a literal plus, never a space */
        {"%2F%2f", "//"},
        {"-----BEGIN%20CERTIFICATE-----%0AMII%3D%0D%0A", "-----BEGIN CERTIFICATE-----\nMII=\r\n"},
        {"a b\tc", "a b\tc"},
        {"%25", "%"},
        {"%7e~", "~~"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *out = NULL;
        size_t len = 0;
        if (gw_forward_unescape(u8(cases[i].in), strlen(cases[i].in), &out, &len) != 0) {
            print_error("refused \"%s\": %s\n", cases[i].in, tsr_errmsg());
            fail();
        }
        assert_int_equal(len, strlen(cases[i].want));
        assert_memory_equal(out, cases[i].want, len);
        assert_int_equal(out[len], '\0');
        free(out);
    }
}

/* ---- x-forwarded-client-cert -------------------------------------------- */

static void test_xfcc_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t len;
        const char *why;
    } cases[] = {
        {"", 0, "empty x-forwarded-client-cert"},
        {"Cert", 0, "missing '=' after a key at byte 0"},
        {"=abc", 0, "bad key at byte 0"},
        {"C3rt=a", 0, "missing '='"},
        {"Certificateeeeeee=a", 0, "bad key at byte 0"},   /* 17 letters */
        {" Cert=a", 0, "bad key at byte 0"},
        {"Cert=", 0, "empty Cert"},
        {"Chain=\"\"", 0, "empty Chain"},
        {"Cert=\"abc", 0, "unterminated quoted value"},
        {"Cert=\"abc\\", 0, "unterminated quoted value"},
        {"Cert=\"a\\\"b\"", 0, "backslash in Cert"},
        {"Cert=a\"b", 0, "'\"' in an unquoted value"},
        {"Cert=a\\b", 0, "'\\' in an unquoted value"},
        {"Cert=\"a\"x", 0, "unexpected byte 0x78"},
        {"Cert=a;", 0, "trailing ';'"},
        {"Cert=a;;Hash=b", 0, "bad key at byte 7"},
        {"Cert=a,Cert=b", 0, "more than one element"},
        {"By=x;Cert=a,By=y", 0, "more than one element"},
        {"By=x;Cert=a;cert=b", 0, "repeated Cert"},
        {"Chain=a;CHAIN=b", 0, "repeated Chain"},
        {"Hash=abc;By=spiffe://x", 0, "no Cert or Chain"},
        {"Cert=a\0b", 8, "byte 0x00 at byte 6"},
        {"Cert=\"a\tb\"", 0, "byte 0x09 at byte 7"},
        {"Cert=a\x7f", 0, "byte 0x7f at byte 6"},
        {"Cert=\xc3\xa9", 0, "byte 0xc3 at byte 5"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gw_xfcc x;
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].in);
        if (gw_forward_parse_xfcc(u8(cases[i].in), len, &x) == 0) {
            print_error("accepted \"%s\"\n", cases[i].in);
            fail();
        }
        assert_int_equal(tsr_errcat(), TSR_E_INPUT);
        if (strstr(tsr_errmsg(), cases[i].why) == NULL) {
            print_error("\"%s\": \"%s\" lacks \"%s\"\n", cases[i].in, tsr_errmsg(), cases[i].why);
            fail();
        }
    }
    /* Too many pairs. */
    char many[2048] = "Cert=a";
    for (int i = 0; i < GW_FORWARD_MAX_XFCC_PAIRS; i++) strcat(many, ";DNS=x");
    gw_xfcc x;
    assert_int_equal(gw_forward_parse_xfcc(u8(many), strlen(many), &x), -1);
    assert_non_null(strstr(tsr_errmsg(), "more than 64 pairs"));
    /* Oversized. */
    size_t big = GW_FORWARD_MAX_HEADER + 1;
    char *text = malloc(big);
    assert_non_null(text);
    memcpy(text, "Cert=", 5);
    memset(text + 5, 'A', big - 5);
    assert_int_equal(gw_forward_parse_xfcc(u8(text), big, &x), -1);
    assert_non_null(strstr(tsr_errmsg(), "exceeds 16384 bytes"));
    free(text);
}

static void test_xfcc(void **state)
{
    (void)state;
    gw_xfcc x;
    /* Envoy's shape: quoted values, repeated URI/DNS, keys in any case. */
    const char *v = "By=spiffe://tessera.local/gateway;Hash=468ed33be74eee6556d90c0149c1309e;"
                    "Cert=\"-----BEGIN%20CERTIFICATE-----%0AMIIB\";"
                    "Subject=\"CN=a, O=\\\"x;y\\\"\";URI=spiffe://a/b;DNS=a;dns=b";
    assert_int_equal(gw_forward_parse_xfcc(u8(v), strlen(v), &x), 0);
    assert_int_equal(x.cert_len, strlen("-----BEGIN%20CERTIFICATE-----%0AMIIB"));
    assert_memory_equal(x.cert, "-----BEGIN%20CERTIFICATE-----%0AMIIB", x.cert_len);
    assert_null(x.chain);

    v = "chain=abc%3D";
    assert_int_equal(gw_forward_parse_xfcc(u8(v), strlen(v), &x), 0);
    assert_null(x.cert);
    assert_int_equal(x.chain_len, 6);
    assert_memory_equal(x.chain, "abc%3D", 6);

    v = "CERT=a=b;Chain=\"c,d\"";   /* '=' in a plain value; ',' inside quotes */
    assert_int_equal(gw_forward_parse_xfcc(u8(v), strlen(v), &x), 0);
    assert_int_equal(x.cert_len, 3);
    assert_memory_equal(x.cert, "a=b", 3);
    assert_int_equal(x.chain_len, 3);
    assert_memory_equal(x.chain, "c,d", 3);

    /* A space is just a byte of an unquoted value (it then fails PEM decoding). */
    v = "Cert=a ;Hash=b";
    assert_int_equal(gw_forward_parse_xfcc(u8(v), strlen(v), &x), 0);
    assert_int_equal(x.cert_len, 2);
}

/* ---- a PKI: root -> issuing -> leaves ------------------------------------- */

struct pki {
    int64_t now;
    EVP_PKEY *root_key, *issuing_key, *foreign_key, *leaf_key;
    X509 *root, *issuing, *foreign_root;
    ca_trust *trust;
};

static struct pki P;

static X509 *leaf(const char *uri, int64_t nb, int64_t na, X509 *issuer, EVP_PKEY *issuer_key)
{
    tu_cert_spec spec;
    tu_spec_leaf(&spec, P.now, uri);
    if (nb != 0) spec.not_before = nb;
    if (na != 0) spec.not_after = na;
    X509 *c = tu_forge(&spec, P.leaf_key, issuer ? issuer : P.issuing,
                       issuer_key ? issuer_key : P.issuing_key);
    assert_non_null(c);
    return c;
}

static int pki_setup(void **state)
{
    (void)state;
    P.now = (int64_t)time(NULL);
    tu_cert_spec spec;
    P.root_key = tu_key_new();
    P.issuing_key = tu_key_new();
    P.foreign_key = tu_key_new();
    P.leaf_key = tu_key_new();
    if (!P.root_key || !P.issuing_key || !P.foreign_key || !P.leaf_key) return -1;
    tu_spec_root(&spec, P.now);
    P.root = tu_forge(&spec, P.root_key, NULL, NULL);
    P.foreign_root = tu_forge(&spec, P.foreign_key, NULL, NULL);
    tu_spec_issuing(&spec, P.now, TD);
    P.issuing = tu_forge(&spec, P.issuing_key, P.root, P.root_key);
    if (!P.root || !P.foreign_root || !P.issuing) return -1;
    size_t len;
    char *pem = tu_pem_of(&P.root, 1, &len);
    int rc = ca_trust_from_pem((const uint8_t *)pem, len, TD, &P.trust);
    free(pem);
    return rc;
}

static int pki_teardown(void **state)
{
    (void)state;
    ca_trust_free(P.trust);
    X509_free(P.root);
    X509_free(P.issuing);
    X509_free(P.foreign_root);
    EVP_PKEY_free(P.root_key);
    EVP_PKEY_free(P.issuing_key);
    EVP_PKEY_free(P.foreign_key);
    EVP_PKEY_free(P.leaf_key);
    return 0;
}

/* The escaped PEM of certs. */
static char *escaped(X509 *const *certs, size_t n)
{
    size_t len;
    char *pem = tu_pem_of(certs, n, &len);
    assert_non_null(pem);
    char *e = escape(pem, len);
    free(pem);
    return e;
}

static void test_decode(void **state)
{
    (void)state;
    X509 *l = leaf("spiffe://" TD "/sandbox/" UUID, 0, 0, NULL, NULL);
    X509 *both[2] = {l, P.issuing};
    STACK_OF(X509) *certs = NULL;

    /* escaped-pem: one, two, nine certificates; garbage; trailing garbage. */
    char *e1 = escaped(&l, 1), *e2 = escaped(both, 2);
    assert_int_equal(gw_forward_decode(GW_FORWARD_ESCAPED_PEM, u8(e1), strlen(e1), &certs), 0);
    assert_int_equal(sk_X509_num(certs), 1);
    assert_int_equal(X509_cmp(sk_X509_value(certs, 0), l), 0);
    sk_X509_pop_free(certs, X509_free);
    assert_int_equal(gw_forward_decode(GW_FORWARD_ESCAPED_PEM, u8(e2), strlen(e2), &certs), 0);
    assert_int_equal(sk_X509_num(certs), 2);
    sk_X509_pop_free(certs, X509_free);
    X509 *nine[9];
    for (int i = 0; i < 9; i++) nine[i] = l;
    char *e9 = escaped(nine, 9), *e8 = escaped(nine, 8);
    assert_int_equal(gw_forward_decode(GW_FORWARD_ESCAPED_PEM, u8(e9), strlen(e9), &certs), -1);
    assert_null(certs);
    assert_non_null(strstr(tsr_errmsg(), "more than 8 certificates"));
    assert_int_equal(gw_forward_decode(GW_FORWARD_ESCAPED_PEM, u8(e8), strlen(e8), &certs), 0);
    sk_X509_pop_free(certs, X509_free);
    static const char *const bad[] = {
        "hello", "-----BEGIN%20CERTIFICATE-----%0AAAAA%0A-----END%20CERTIFICATE-----%0A",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(gw_forward_decode(GW_FORWARD_ESCAPED_PEM, u8(bad[i]), strlen(bad[i]),
                                           &certs), -1);
        assert_int_equal(tsr_errcat(), TSR_E_INPUT);
    }
    char *trailing = malloc(strlen(e1) + 8);
    assert_non_null(trailing);
    sprintf(trailing, "%sjunk", e1);
    assert_int_equal(gw_forward_decode(GW_FORWARD_ESCAPED_PEM, u8(trailing), strlen(trailing),
                                       &certs), -1);
    /* Truncated in the middle of the base64. */
    assert_int_equal(gw_forward_decode(GW_FORWARD_ESCAPED_PEM, u8(e1), strlen(e1) / 2, &certs),
                     -1);

    /* xfcc: Cert, Chain, both consistent, both inconsistent, Cert with two. */
    char *x = malloc(strlen(e1) + strlen(e2) * 2 + 64);
    assert_non_null(x);
    sprintf(x, "Hash=00;Cert=\"%s\"", e1);
    assert_int_equal(gw_forward_decode(GW_FORWARD_XFCC, u8(x), strlen(x), &certs), 0);
    assert_int_equal(sk_X509_num(certs), 1);
    sk_X509_pop_free(certs, X509_free);
    sprintf(x, "Chain=\"%s\"", e2);
    assert_int_equal(gw_forward_decode(GW_FORWARD_XFCC, u8(x), strlen(x), &certs), 0);
    assert_int_equal(sk_X509_num(certs), 2);
    sk_X509_pop_free(certs, X509_free);
    sprintf(x, "Cert=\"%s\";Chain=\"%s\"", e1, e2);
    assert_int_equal(gw_forward_decode(GW_FORWARD_XFCC, u8(x), strlen(x), &certs), 0);
    assert_int_equal(sk_X509_num(certs), 2);
    assert_int_equal(X509_cmp(sk_X509_value(certs, 0), l), 0);
    sk_X509_pop_free(certs, X509_free);
    char *ei = escaped(&P.issuing, 1);
    sprintf(x, "Cert=\"%s\";Chain=\"%s\"", ei, e2);
    assert_int_equal(gw_forward_decode(GW_FORWARD_XFCC, u8(x), strlen(x), &certs), -1);
    assert_non_null(strstr(tsr_errmsg(), "Chain does not start with Cert"));
    sprintf(x, "Cert=\"%s\"", e2);
    assert_int_equal(gw_forward_decode(GW_FORWARD_XFCC, u8(x), strlen(x), &certs), -1);
    assert_non_null(strstr(tsr_errmsg(), "Cert holds more than one certificate"));
    /* escaped PEM given to the xfcc decoder: no key. */
    assert_int_equal(gw_forward_decode(GW_FORWARD_XFCC, u8(e1), strlen(e1), &certs), -1);
    assert_null(certs);

    free(x);
    free(ei);
    free(trailing);
    free(e1);
    free(e2);
    free(e8);
    free(e9);
    X509_free(l);
}

/* ---- the decision -------------------------------------------------------- */

struct app_fixture {
    gw_app app;
    gw_pki pki;   /* the fixture's reference keeps it alive: never freed by release */
    gw_config *cfg;
};

static void app_init(struct app_fixture *f, enum gw_forward_format format)
{
    memset(f, 0, sizeof *f);
    assert_int_equal(gw_config_defaults(&f->cfg), 0);
    f->cfg->proxies = calloc(1, sizeof *f->cfg->proxies);
    assert_non_null(f->cfg->proxies);
    strcpy(f->cfg->proxies[0].name, "nginx");
    f->cfg->n_proxies = 1;
    f->cfg->users = calloc(1, sizeof *f->cfg->users);
    assert_non_null(f->cfg->users);
    strcpy(f->cfg->users[0].name, "admin");
    f->cfg->users[0].role = GW_ROLE_ADMIN;
    f->cfg->n_users = 1;
    f->cfg->proxy_format = format;
    f->app.cfg = f->cfg;
    assert_int_equal(pthread_mutex_init(&f->app.pki_lock, NULL), 0);
    atomic_init(&f->pki.refs, 1);
    f->pki.cfg = f->cfg;
    f->pki.trust = P.trust;   /* borrowed */
    f->app.pki = &f->pki;
    assert_int_equal(gw_revocations_new(&f->app.revoked), 0);
    f->pki.intermediates = sk_X509_new_null();
    assert_non_null(f->pki.intermediates);
    assert_true(sk_X509_push(f->pki.intermediates, P.issuing) > 0);
}

static void app_fini(struct app_fixture *f)
{
    sk_X509_free(f->pki.intermediates);
    gw_revocations_free(f->app.revoked);
    assert_int_equal(atomic_load(&f->pki.refs), 1);   /* every call released its reference */
    pthread_mutex_destroy(&f->app.pki_lock);
    gw_config_free(f->cfg);
}

static void caller(gw_principal *p, enum gw_principal_kind kind, const char *name)
{
    memset(p, 0, sizeof *p);
    p->kind = kind;
    snprintf(p->name, sizeof p->name, "%s", name);
}

/* Run the hook as `conn`; returns its result. */
static int forward_as(struct app_fixture *f, const gw_principal *conn, const char *value,
                      size_t len, unsigned count, gw_principal *out)
{
    gw_call_ctx ctx = {.principal = conn, .method = "/tessera.v1.Gateway/GetTrustBundle",
                       .app = &f->app, .peer_addr = "127.0.0.1:1"};
    memset(out, 0x5a, sizeof *out);
    return gw_forward_authenticate(&ctx, u8(value), len, count, out);
}

static void expect_unauth(struct app_fixture *f, const gw_principal *proxy, const char *value,
                          size_t len, unsigned count, const char *why)
{
    gw_principal out;
    assert_int_equal(forward_as(f, proxy, value, len, count, &out), 0);
    if (out.kind != GW_PRINCIPAL_UNAUTHENTICATED || strstr(out.reason, why) == NULL ||
        strncmp(out.reason, "forwarded certificate: ", 23) != 0) {
        print_error("kind %d reason \"%s\", want \"%s\"\n", out.kind, out.reason, why);
        fail();
    }
    assert_int_equal(out.role, GW_ROLE_NONE);
    assert_string_equal(out.name, "");
}

static void test_who_may_forward(void **state)
{
    (void)state;
    struct app_fixture f;
    app_init(&f, GW_FORWARD_ESCAPED_PEM);
    gw_metrics_reset();
    X509 *admin = leaf("spiffe://" TD "/user/admin", 0, 0, NULL, NULL);
    char *e = escaped(&admin, 1);
    gw_principal conn, out;

    /* Everyone but a trusted proxy: ignored (1), *out untouched. */
    static const struct {
        enum gw_principal_kind kind;
        const char *name;
    } others[] = {
        {GW_PRINCIPAL_ANONYMOUS, ""},   {GW_PRINCIPAL_UNAUTHENTICATED, ""},
        {GW_PRINCIPAL_SANDBOX, UUID},   {GW_PRINCIPAL_USER, "admin"},
        {GW_PRINCIPAL_USER, "nginx"},   {GW_PRINCIPAL_PROXY, "envoy"},
        {GW_PRINCIPAL_PROXY, "nginx2"}, {GW_PRINCIPAL_PROXY, ""},
    };
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        caller(&conn, others[i].kind, others[i].name);
        assert_int_equal(forward_as(&f, &conn, e, strlen(e), 1, &out), 1);
        assert_int_equal(((unsigned char *)&out)[0], 0x5a);
    }
    /* The trusted proxy: the forwarded identity. */
    caller(&conn, GW_PRINCIPAL_PROXY, "nginx");
    assert_int_equal(forward_as(&f, &conn, e, strlen(e), 1, &out), 0);
    assert_int_equal(out.kind, GW_PRINCIPAL_USER);
    assert_int_equal(out.role, GW_ROLE_ADMIN);
    assert_string_equal(out.name, "admin");
    assert_string_equal(out.spiffe_id, "spiffe://" TD "/user/admin");
    assert_true(out.not_after > P.now);

    /* Counted: 8 ignored, 1 accepted. */
    char *text;
    size_t len;
    assert_int_equal(gw_metrics_render(&text, &len), 0);
    assert_non_null(strstr(text, "tessera_forwarded_certificates_total{result=\"ignored\"} 8\n"));
    assert_non_null(strstr(text, "tessera_forwarded_certificates_total{result=\"accepted\"} 1\n"));
    assert_non_null(strstr(text, "tessera_forwarded_certificates_total{result=\"rejected\"} 0\n"));
    free(text);
    free(e);
    X509_free(admin);
    app_fini(&f);
}

static void test_forwarded_identities(void **state)
{
    (void)state;
    struct app_fixture f;
    app_init(&f, GW_FORWARD_ESCAPED_PEM);
    gw_principal proxy, out;
    caller(&proxy, GW_PRINCIPAL_PROXY, "nginx");

    /* Refusals first. */
    X509 *revoked = leaf("spiffe://" TD "/sandbox/" UUID, 0, 0, NULL, NULL);
    char serial[41];
    assert_int_equal(ca_cert_serial_hex(revoked, serial), 0);
    assert_int_equal(gw_revocations_add(f.app.revoked, serial, P.now + 3600), 0);
    X509 *expired = leaf("spiffe://" TD "/sandbox/" UUID, P.now - 7200, P.now - 3600, NULL, NULL);
    X509 *foreign = leaf("spiffe://" TD "/sandbox/" UUID, 0, 0, P.foreign_root, P.foreign_key);
    X509 *other_td = leaf("spiffe://example.org/sandbox/" UUID, 0, 0, P.foreign_root,
                          P.foreign_key);
    X509 *proxy_cert = leaf("spiffe://" TD "/proxy/nginx", 0, 0, NULL, NULL);
    X509 *gateway = leaf("spiffe://" TD "/gateway", 0, 0, NULL, NULL);
    X509 *bad_id = leaf("spiffe://" TD "/sandbox/NOT-A-UUID", 0, 0, NULL, NULL);
    X509 *with_root[2] = {foreign, P.foreign_root};
    struct {
        X509 *const *certs;
        size_t n;
        const char *why;
    } refusals[] = {
        {&revoked, 1, "certificate revoked"},
        {&expired, 1, "expired"},
        {&foreign, 1, "forwarded certificate: "},
        {with_root, 2, "forwarded certificate: "},   /* a foreign root sent along: no trust */
        {&other_td, 1, "forwarded certificate: "},
        {&proxy_cert, 1, "a proxy identity, not a sandbox or a user"},
        {&gateway, 1, "gateway identity cannot be used as a client"},
        {&bad_id, 1, "forwarded certificate: "},
    };
    for (size_t i = 0; i < sizeof refusals / sizeof refusals[0]; i++) {
        char *e = escaped(refusals[i].certs, refusals[i].n);
        expect_unauth(&f, &proxy, e, strlen(e), 1, refusals[i].why);
        free(e);
    }
    /* Header-level refusals: repeated, oversized, empty, malformed. */
    X509 *sb = leaf("spiffe://" TD "/sandbox/" UUID, 0, 0, NULL, NULL);
    char *good = escaped(&sb, 1);
    expect_unauth(&f, &proxy, good, strlen(good), 2, "the header appears more than once");
    expect_unauth(&f, &proxy, good, GW_FORWARD_MAX_HEADER + 1, 1, "exceeds 16384 bytes");
    expect_unauth(&f, &proxy, "", 0, 1, "empty certificate");
    expect_unauth(&f, &proxy, "%zz", 3, 1, "bad percent-escape");
    expect_unauth(&f, &proxy, good, strlen(good) - 10, 1, "forwarded certificate: ");

    /* Acceptances: a sandbox (leaf alone: our issuing CA completes the
     * path), with its chain, a user with and without a role. */
    assert_int_equal(forward_as(&f, &proxy, good, strlen(good), 1, &out), 0);
    assert_int_equal(out.kind, GW_PRINCIPAL_SANDBOX);
    assert_string_equal(out.name, UUID);
    assert_string_equal(out.spiffe_id, "spiffe://" TD "/sandbox/" UUID);
    char sb_serial[41];
    assert_int_equal(ca_cert_serial_hex(sb, sb_serial), 0);
    assert_string_equal(out.serial_hex, sb_serial);
    X509 *chain[2] = {sb, P.issuing};
    char *e2 = escaped(chain, 2);
    assert_int_equal(forward_as(&f, &proxy, e2, strlen(e2), 1, &out), 0);
    assert_int_equal(out.kind, GW_PRINCIPAL_SANDBOX);
    X509 *bob = leaf("spiffe://" TD "/user/bob", 0, 0, NULL, NULL);
    char *eb = escaped(&bob, 1);
    assert_int_equal(forward_as(&f, &proxy, eb, strlen(eb), 1, &out), 0);
    assert_int_equal(out.kind, GW_PRINCIPAL_USER);
    assert_int_equal(out.role, GW_ROLE_NONE);
    assert_string_equal(out.name, "bob");

    /* Without our issuing CA as a hint, a leaf alone does not verify. */
    STACK_OF(X509) *saved = f.pki.intermediates;
    f.pki.intermediates = NULL;
    expect_unauth(&f, &proxy, good, strlen(good), 1, "forwarded certificate: ");
    assert_int_equal(forward_as(&f, &proxy, e2, strlen(e2), 1, &out), 0);
    assert_int_equal(out.kind, GW_PRINCIPAL_SANDBOX);
    f.pki.intermediates = saved;

    free(good);
    free(e2);
    free(eb);
    X509_free(bob);
    X509_free(sb);
    X509_free(revoked);
    X509_free(expired);
    X509_free(foreign);
    X509_free(other_td);
    X509_free(proxy_cert);
    X509_free(gateway);
    X509_free(bad_id);
    app_fini(&f);
}

static void test_forwarded_xfcc(void **state)
{
    (void)state;
    struct app_fixture f;
    app_init(&f, GW_FORWARD_XFCC);
    gw_principal proxy, out;
    caller(&proxy, GW_PRINCIPAL_PROXY, "nginx");
    X509 *admin = leaf("spiffe://" TD "/user/admin", 0, 0, NULL, NULL);
    char *e = escaped(&admin, 1);
    char *x = malloc(strlen(e) + 200);
    assert_non_null(x);
    /* The claims Envoy adds (URI, Subject) are never believed: only Cert. */
    sprintf(x, "By=spiffe://" TD "/gateway;Hash=00;Cert=\"%s\";Subject=\"\";"
               "URI=spiffe://" TD "/sandbox/" UUID, e);
    assert_int_equal(forward_as(&f, &proxy, x, strlen(x), 1, &out), 0);
    assert_int_equal(out.kind, GW_PRINCIPAL_USER);
    assert_string_equal(out.name, "admin");
    /* The nginx encoding is not XFCC. */
    expect_unauth(&f, &proxy, e, strlen(e), 1, "x-forwarded-client-cert: ");
    sprintf(x, "Cert=\"%s\",Cert=\"%s\"", "a", "b");
    expect_unauth(&f, &proxy, x, strlen(x), 1, "more than one element");
    free(x);
    free(e);
    X509_free(admin);
    app_fini(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unescape_refusals),
        cmocka_unit_test(test_unescape),
        cmocka_unit_test(test_xfcc_refusals),
        cmocka_unit_test(test_xfcc),
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_who_may_forward),
        cmocka_unit_test(test_forwarded_identities),
        cmocka_unit_test(test_forwarded_xfcc),
    };
    return cmocka_run_group_tests(tests, pki_setup, pki_teardown);
}
