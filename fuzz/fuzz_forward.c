/* The forwarded client certificate (gateway/identity/gw_forward.h), on the identity
 * path of every call a trusted proxy forwards: the header value through
 * gw_forward_unescape, gw_forward_parse_xfcc, gw_forward_decode (both
 * formats) and the decision, gw_forward_authenticate, with a gateway
 * application on the fixed test PKI (fuzz_app_get: proxy egress trusted).
 *
 * Input: [flags] then the header value.
 * flags: bit 0   format: escaped-pem, else xfcc (proxy.format)
 *        bit 1-2 the caller: proxy egress (trusted by name), a caller on the
 *                proxy unix socket (local_proxy), proxy other (not trusted),
 *                sandbox (not a proxy)
 *        bit 3   the header appears twice
 *        bit 4   re-sign: when the value decodes, its leaf is signed by the
 *                fixed issuing CA and the value encoded again (so mutated
 *                certificates reach the verification with a valid signature)
 *        bit 5   ... keeping the leaf's authorityKeyIdentifier
 *        bit 6   ... with the issuing CA after the leaf
 *        bit 7   ... xfcc: Cert only (else Chain, and Cert too when bit 6)
 *
 * Invariants: the unescaped text is the percent-decoding of the input
 * (reference below) and only PEM bytes; a parsed XFCC's Cert and Chain lie
 * inside the input, hold no quote or backslash, and parse again the same
 * from a canonical rewrite; a decoded value holds 1..8 certificates (for
 * escaped-pem exactly what ca_certs_from_pem reads from the unescaped text;
 * for xfcc with both, Chain starts with Cert). The decision: a caller that is
 * not a trusted proxy is ignored (1); otherwise the call runs as a sandbox or
 * a user only when gw_identity_from_chain says so for the same leaf and path
 * (with the issuing CA added), never as a proxy, carrying via_proxy when the
 * proxy is trusted by name; anything else is UNAUTHENTICATED with a
 * "forwarded certificate: " reason. */
#include <openssl/err.h>
#include <string.h>

#include "fuzz/fuzz_fwd.h"
#include "fuzz/fuzz_pki.h"
#include "gw_forward.h"
#include "gw_identity.h"

/* ---- references ------------------------------------------------------------- */

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decoding as RFC 3986 has it; -1 on a bad escape or a byte that is
 * not printable ASCII, tab, CR or LF (decoded or not). */
static long ref_unescape(const uint8_t *in, size_t len, uint8_t *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int c = in[i];
        if (c == '%') {
            if (len - i < 3) return -1;
            int h = hexval(in[i + 1]), l = hexval(in[i + 2]);
            if (h < 0 || l < 0) return -1;
            c = h * 16 + l;
            i += 2;
        }
        if (!((c >= 0x20 && c <= 0x7e) || c == '\t' || c == '\r' || c == '\n')) return -1;
        out[o++] = (uint8_t)c;
    }
    return (long)o;
}

static bool inside(const uint8_t *p, size_t n, const uint8_t *base, size_t len)
{
    return p >= base && p + n <= base + len;
}

/* ---- the decoders ------------------------------------------------------------- */

static void check_unescape(const uint8_t *v, size_t len)
{
    uint8_t *out = NULL;
    size_t out_len = 0;
    uint8_t *ref = malloc(len + 1);
    FUZZ_CHECK(ref != NULL);
    long ref_len = ref_unescape(v, len, ref);
    bool want = len > 0 && len <= GW_FORWARD_MAX_HEADER && ref_len >= 0;
    if (gw_forward_unescape(v, len, &out, &out_len) == 0) {
        FUZZ_CHECK(want && out_len == (size_t)ref_len && memcmp(out, ref, out_len) == 0);
        FUZZ_CHECK(out[out_len] == '\0');
        free(out);
    } else {
        FUZZ_CHECK(!want && out == NULL && out_len == 0 && tsr_errcat() == TSR_E_INPUT);
    }
    free(ref);
}

static void check_xfcc(const uint8_t *v, size_t len)
{
    gw_xfcc x;
    if (gw_forward_parse_xfcc(v, len, &x) != 0) {
        FUZZ_CHECK(tsr_errcat() == TSR_E_INPUT);
        return;
    }
    FUZZ_CHECK(x.cert != NULL || x.chain != NULL);
    const uint8_t *parts[2] = {x.cert, x.chain};
    size_t lens[2] = {x.cert_len, x.chain_len};
    fuzz_buf b = {NULL, 0, 0};
    for (int i = 0; i < 2; i++) {
        if (parts[i] == NULL) continue;
        FUZZ_CHECK(lens[i] > 0 && inside(parts[i], lens[i], v, len));
        FUZZ_CHECK(memchr(parts[i], '"', lens[i]) == NULL && memchr(parts[i], '\\', lens[i]) == NULL);
        fuzz_buf_puts(&b, b.len > 0 ? ";" : "");
        fuzz_buf_puts(&b, i == 0 ? "cert=\"" : "CHAIN=\"");
        fuzz_buf_put(&b, parts[i], lens[i]);
        fuzz_buf_puts(&b, "\"");
    }
    gw_xfcc y;
    FUZZ_CHECK(gw_forward_parse_xfcc(b.p, b.len, &y) == 0);
    FUZZ_CHECK(y.cert_len == x.cert_len && y.chain_len == x.chain_len);
    if (x.cert != NULL) FUZZ_CHECK(memcmp(y.cert, x.cert, x.cert_len) == 0);
    if (x.chain != NULL) FUZZ_CHECK(memcmp(y.chain, x.chain, x.chain_len) == 0);
    free(b.p);
}

/* gw_forward_decode, checked; the certificates or NULL. */
static STACK_OF(X509) *check_decode(enum gw_forward_format format, const uint8_t *v, size_t len)
{
    STACK_OF(X509) *certs = NULL;
    if (gw_forward_decode(format, v, len, &certs) != 0) {
        FUZZ_CHECK(certs == NULL && tsr_errcat() != TSR_E_INTERNAL);
        return NULL;
    }
    int n = sk_X509_num(certs);
    FUZZ_CHECK(n >= 1 && n <= GW_FORWARD_MAX_CERTS);
    if (format == GW_FORWARD_ESCAPED_PEM) {
        uint8_t *pem = NULL;
        size_t pem_len = 0;
        STACK_OF(X509) *ref = NULL;
        FUZZ_CHECK(gw_forward_unescape(v, len, &pem, &pem_len) == 0);
        FUZZ_CHECK(ca_certs_from_pem(pem, pem_len, &ref) == 0 && sk_X509_num(ref) == n);
        for (int i = 0; i < n; i++)
            FUZZ_CHECK(X509_cmp(sk_X509_value(ref, i), sk_X509_value(certs, i)) == 0);
        sk_X509_pop_free(ref, X509_free);
        free(pem);
    } else {
        gw_xfcc x;
        FUZZ_CHECK(gw_forward_parse_xfcc(v, len, &x) == 0);
        if (x.cert != NULL) {
            STACK_OF(X509) *cert = NULL;
            FUZZ_CHECK(gw_forward_decode(GW_FORWARD_ESCAPED_PEM, x.cert, x.cert_len, &cert) == 0);
            FUZZ_CHECK(sk_X509_num(cert) == 1);
            FUZZ_CHECK(X509_cmp(sk_X509_value(cert, 0), sk_X509_value(certs, 0)) == 0);
            sk_X509_pop_free(cert, X509_free);
        }
    }
    return certs;
}

/* ---- the decision ------------------------------------------------------------- */

static void check_decision(gw_app *app, const gw_principal *caller, enum gw_forward_format format,
                           const uint8_t *v, size_t len, unsigned count)
{
    gw_call_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.principal = caller;
    ctx.app = app;
    ctx.method = "/tessera.v1.Gateway/GetSandbox";
    ctx.peer_addr = "127.0.0.1:1";
    gw_principal p;
    memset(&p, 0x5a, sizeof p);
    int rc = gw_forward_authenticate(&ctx, v, len, count, &p);
    bool trusted = caller->local_proxy ||
                   (caller->kind == GW_PRINCIPAL_PROXY && strcmp(caller->name, "egress") == 0);
    if (!trusted) {
        FUZZ_CHECK(rc == 1);
        return;
    }
    FUZZ_CHECK(rc == 0);
    FUZZ_CHECK(memchr(p.reason, '\0', sizeof p.reason) != NULL);
    FUZZ_CHECK(memchr(p.name, '\0', sizeof p.name) != NULL);
    if (p.kind == GW_PRINCIPAL_UNAUTHENTICATED) {
        FUZZ_CHECK(strncmp(p.reason, "forwarded certificate: ", 23) == 0);
        FUZZ_CHECK(p.role == GW_ROLE_NONE && p.name[0] == '\0');
        return;
    }
    FUZZ_CHECK(p.kind == GW_PRINCIPAL_SANDBOX || p.kind == GW_PRINCIPAL_USER);
    FUZZ_CHECK(count == 1);
    FUZZ_CHECK(strcmp(p.via_proxy, caller->local_proxy ? "" : caller->name) == 0);
    /* The same identity gw_identity_from_chain gives the same leaf and path. */
    STACK_OF(X509) *certs = NULL;
    FUZZ_CHECK(gw_forward_decode(format, v, len, &certs) == 0);
    STACK_OF(X509) *pool = sk_X509_new_null();
    FUZZ_CHECK(pool != NULL);
    for (int i = 1; i < sk_X509_num(certs); i++)
        FUZZ_CHECK(sk_X509_push(pool, sk_X509_value(certs, i)) > 0);
    FUZZ_CHECK(sk_X509_push(pool, fuzz_pki_get()->issuing->cert) > 0);
    gw_principal ref;
    FUZZ_CHECK(gw_identity_from_chain(app, sk_X509_value(certs, 0), pool, 0, &ref) == 0);
    FUZZ_CHECK(ref.kind == p.kind && ref.role == p.role);
    FUZZ_CHECK(strcmp(ref.name, p.name) == 0 && strcmp(ref.spiffe_id, p.spiffe_id) == 0);
    FUZZ_CHECK(strcmp(ref.serial_hex, p.serial_hex) == 0 && ref.not_after == p.not_after);
    FUZZ_CHECK(memcmp(ref.anchor, p.anchor, sizeof p.anchor) == 0 &&
               ref.pki_generation == p.pki_generation);
    sk_X509_free(pool);
    sk_X509_pop_free(certs, X509_free);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const fuzz_pki *pki = fuzz_pki_get();
    gw_app *app = fuzz_app_get();
    fuzz_in in = {data, size};
    uint8_t flags = fuzz_u8(&in);
    enum gw_forward_format format = (flags & 1) ? GW_FORWARD_XFCC : GW_FORWARD_ESCAPED_PEM;
    /* gw_forward_authenticate reads the format from the configuration. */
    ((gw_config *)(uintptr_t)app->cfg)->proxy_format = format;

    check_unescape(in.p, in.len);
    check_xfcc(in.p, in.len);
    STACK_OF(X509) *certs = check_decode(format, in.p, in.len);
    STACK_OF(X509) *other = check_decode(format == GW_FORWARD_XFCC ? GW_FORWARD_ESCAPED_PEM
                                                                    : GW_FORWARD_XFCC,
                                         in.p, in.len);
    sk_X509_pop_free(other, X509_free);

    fuzz_buf value = {NULL, 0, 0};
    const uint8_t *v = in.p;
    size_t len = in.len;
    if ((flags & 16) && certs != NULL) {
        fuzz_fwd_reencode(pki, certs, format, (flags & 32) != 0, (flags & 64) != 0,
                          (flags & 128) != 0, &value);
        v = value.p;
        len = value.len;
    }
    sk_X509_pop_free(certs, X509_free);

    static const char *const names[4] = {"egress", "", "other",
                                         "0b7e4c1a-9f2d-4e8b-a6c3-5d1f2e3a4b5c"};
    gw_principal caller;
    memset(&caller, 0, sizeof caller);
    int who = (flags >> 1) & 3;
    caller.kind = who == 3 ? GW_PRINCIPAL_SANDBOX : who == 1 ? GW_PRINCIPAL_UNAUTHENTICATED
                                                              : GW_PRINCIPAL_PROXY;
    caller.local_proxy = who == 1;
    snprintf(caller.name, sizeof caller.name, "%s", names[who]);
    if (caller.kind == GW_PRINCIPAL_PROXY)
        snprintf(caller.spiffe_id, sizeof caller.spiffe_id, "spiffe://%s/proxy/%s", FUZZ_TD,
                 caller.name);
    check_decision(app, &caller, format, v != NULL ? v : (const uint8_t *)"", len,
                   (flags & 8) ? 2 : 1);
    free(value.p);
    return 0;
}
