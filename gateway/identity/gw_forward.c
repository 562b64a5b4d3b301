#include "gw_forward.h"

#include <openssl/crypto.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca_pem.h"
#include "gw_app.h"
#include "gw_audit.h"
#include "gw_identity.h"
#include "gw_metrics.h"

/* ---- percent-decoding ----------------------------------------------------- */

static int hex_value(uint8_t c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool pem_byte(uint8_t c)
{
    return (c >= 0x20 && c <= 0x7e) || c == '\t' || c == '\r' || c == '\n';
}

int gw_forward_unescape(const uint8_t *in, size_t len, uint8_t **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    TSR_ENSURE(len > 0, TSR_E_INPUT, "empty certificate");
    TSR_ENSURE(len <= GW_FORWARD_MAX_HEADER, TSR_E_INPUT, "certificate exceeds %d bytes",
               GW_FORWARD_MAX_HEADER);
    uint8_t *buf = malloc(len + 1);
    TSR_ENSURE(buf != NULL, TSR_E_INTERNAL, "out of memory");
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = in[i];
        if (c == '%') {
            if (len - i < 3 || hex_value(in[i + 1]) < 0 || hex_value(in[i + 2]) < 0) {
                free(buf);
                return TSR_FAIL(TSR_E_INPUT, "bad percent-escape at byte %zu", i);
            }
            c = (uint8_t)(hex_value(in[i + 1]) << 4 | hex_value(in[i + 2]));
            i += 2;
        }
        if (!pem_byte(c)) {
            free(buf);
            return TSR_FAIL(TSR_E_INPUT, "byte 0x%02x is not PEM text (at byte %zu)", c, i);
        }
        buf[o++] = c;
    }
    buf[o] = '\0';
    *out = buf;
    *out_len = o;
    return 0;
}

/* ---- x-forwarded-client-cert ---------------------------------------------- */

static bool key_is(const uint8_t *k, size_t klen, const char *lit)
{
    size_t n = strlen(lit);
    if (klen != n) return false;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = k[i];
        if (c >= 'A' && c <= 'Z') c = (uint8_t)(c - 'A' + 'a');
        if (c != (uint8_t)lit[i]) return false;
    }
    return true;
}

int gw_forward_parse_xfcc(const uint8_t *in, size_t len, gw_xfcc *out)
{
    memset(out, 0, sizeof *out);
    TSR_ENSURE(len > 0, TSR_E_INPUT, "empty x-forwarded-client-cert");
    TSR_ENSURE(len <= GW_FORWARD_MAX_HEADER, TSR_E_INPUT,
               "x-forwarded-client-cert exceeds %d bytes", GW_FORWARD_MAX_HEADER);
    /* Printable ASCII only, quoted or not (tab, CR, LF, NUL: never). */
    for (size_t j = 0; j < len; j++)
        TSR_ENSURE(in[j] >= 0x20 && in[j] <= 0x7e, TSR_E_INPUT,
                   "x-forwarded-client-cert: byte 0x%02x at byte %zu", in[j], j);
    size_t i = 0, pairs = 0;
    for (;;) {
        TSR_ENSURE(++pairs <= GW_FORWARD_MAX_XFCC_PAIRS, TSR_E_INPUT,
                   "x-forwarded-client-cert: more than %d pairs", GW_FORWARD_MAX_XFCC_PAIRS);
        /* key */
        size_t k0 = i;
        while (i < len && ((in[i] >= 'a' && in[i] <= 'z') || (in[i] >= 'A' && in[i] <= 'Z')))
            i++;
        size_t klen = i - k0;
        TSR_ENSURE(klen > 0 && klen <= 16, TSR_E_INPUT,
                   "x-forwarded-client-cert: bad key at byte %zu", k0);
        TSR_ENSURE(i < len && in[i] == '=', TSR_E_INPUT,
                   "x-forwarded-client-cert: missing '=' after a key at byte %zu", k0);
        i++;
        /* value */
        const uint8_t *v;
        size_t vlen;
        bool escapes = false;
        if (i < len && in[i] == '"') {
            size_t v0 = ++i;
            while (i < len && in[i] != '"') {
                if (in[i] == '\\') {
                    escapes = true;
                    TSR_ENSURE(i + 1 < len, TSR_E_INPUT,
                               "x-forwarded-client-cert: unterminated quoted value");
                    i++;
                }
                i++;
            }
            TSR_ENSURE(i < len, TSR_E_INPUT, "x-forwarded-client-cert: unterminated quoted value");
            v = in + v0;
            vlen = i - v0;
            i++;   /* the closing quote */
        } else {
            size_t v0 = i;
            while (i < len && in[i] != ';' && in[i] != ',') {
                TSR_ENSURE(in[i] != '"' && in[i] != '\\', TSR_E_INPUT,
                           "x-forwarded-client-cert: '%c' in an unquoted value at byte %zu",
                           in[i], i);
                i++;
            }
            v = in + v0;
            vlen = i - v0;
        }
        const uint8_t *k = in + k0;
        bool is_cert = key_is(k, klen, "cert"), is_chain = key_is(k, klen, "chain");
        if (is_cert || is_chain) {
            TSR_ENSURE(!escapes, TSR_E_INPUT,
                       "x-forwarded-client-cert: backslash in %s", is_cert ? "Cert" : "Chain");
            TSR_ENSURE(vlen > 0, TSR_E_INPUT, "x-forwarded-client-cert: empty %s",
                       is_cert ? "Cert" : "Chain");
            const uint8_t **slot = is_cert ? &out->cert : &out->chain;
            size_t *slot_len = is_cert ? &out->cert_len : &out->chain_len;
            TSR_ENSURE(*slot == NULL, TSR_E_INPUT, "x-forwarded-client-cert: repeated %s",
                       is_cert ? "Cert" : "Chain");
            *slot = v;
            *slot_len = vlen;
        }
        /* separator */
        if (i == len) break;
        TSR_ENSURE(in[i] != ',', TSR_E_INPUT,
                   "x-forwarded-client-cert: more than one element (one proxy hop only)");
        TSR_ENSURE(in[i] == ';', TSR_E_INPUT,
                   "x-forwarded-client-cert: unexpected byte 0x%02x at byte %zu", in[i], i);
        i++;
        TSR_ENSURE(i < len, TSR_E_INPUT, "x-forwarded-client-cert: trailing ';'");
    }
    TSR_ENSURE(out->cert != NULL || out->chain != NULL, TSR_E_INPUT,
               "x-forwarded-client-cert: no Cert or Chain");
    return 0;
}

/* ---- decoding ----------------------------------------------------------- */

static int certs_of_escaped(const uint8_t *v, size_t len, STACK_OF(X509) **out)
{
    uint8_t *pem = NULL;
    size_t pem_len = 0;
    TSR_GUARD(gw_forward_unescape(v, len, &pem, &pem_len));
    int rc = ca_certs_from_pem(pem, pem_len, out);
    free(pem);
    if (rc != 0) return -1;
    if (sk_X509_num(*out) > GW_FORWARD_MAX_CERTS) {
        sk_X509_pop_free(*out, X509_free);
        *out = NULL;
        return TSR_FAIL(TSR_E_INPUT, "more than %d certificates", GW_FORWARD_MAX_CERTS);
    }
    return 0;
}

int gw_forward_decode(enum gw_forward_format format, const uint8_t *value, size_t len,
                      STACK_OF(X509) **out)
{
    *out = NULL;
    if (format == GW_FORWARD_ESCAPED_PEM) return certs_of_escaped(value, len, out);
    TSR_ENSURE(format == GW_FORWARD_XFCC, TSR_E_INTERNAL, "unknown forward format %d", format);

    gw_xfcc x;
    TSR_GUARD(gw_forward_parse_xfcc(value, len, &x));
    STACK_OF(X509) *chain = NULL, *cert = NULL;
    int rc = -1;
    if (x.chain != NULL) TSR_TRY(certs_of_escaped(x.chain, x.chain_len, &chain));
    if (x.cert != NULL) {
        TSR_TRY(certs_of_escaped(x.cert, x.cert_len, &cert));
        TSR_TRY_ENSURE(sk_X509_num(cert) == 1, TSR_E_INPUT,
                       "x-forwarded-client-cert: Cert holds more than one certificate");
        TSR_TRY_ENSURE(chain == NULL ||
                           X509_cmp(sk_X509_value(chain, 0), sk_X509_value(cert, 0)) == 0,
                       TSR_E_INPUT, "x-forwarded-client-cert: Chain does not start with Cert");
    }
    if (chain != NULL) {
        *out = chain;
        chain = NULL;
    } else {
        *out = cert;
        cert = NULL;
    }
    rc = 0;
out:
    sk_X509_pop_free(chain, X509_free);
    sk_X509_pop_free(cert, X509_free);
    return rc;
}

/* ---- the decision ------------------------------------------------------- */

/* UNAUTHENTICATED, "forwarded certificate: <why>". */
static void reject(gw_principal *out, const char *why)
{
    memset(out, 0, sizeof *out);
    out->kind = GW_PRINCIPAL_UNAUTHENTICATED;
    snprintf(out->reason, sizeof out->reason, "forwarded certificate: %.136s", why);
}

/* Verify the forwarded chain exactly as a direct peer's. -1: internal. */
static int verify_forwarded(gw_app *app, STACK_OF(X509) *certs, gw_principal *out)
{
    int rc = -1;
    gw_pki *pki = NULL;   /* holds the intermediates in `pool` alive */
    STACK_OF(X509) *pool = sk_X509_new_null();
    TSR_TRY_ENSURE(pool != NULL, TSR_E_INTERNAL, "out of memory");
    /* Untrusted path hints: what the proxy forwarded after the leaf, then
     * our own issuing CA. Anchors come from the bundle alone. */
    for (int i = 1; i < sk_X509_num(certs); i++)
        TSR_TRY_ENSURE(sk_X509_push(pool, sk_X509_value(certs, i)) > 0, TSR_E_INTERNAL,
                       "out of memory");
    pki = gw_app_pki(app);
    for (int i = 0; pki->intermediates != NULL && i < sk_X509_num(pki->intermediates); i++)
        TSR_TRY_ENSURE(sk_X509_push(pool, sk_X509_value(pki->intermediates, i)) > 0,
                       TSR_E_INTERNAL, "out of memory");
    TSR_TRY(gw_identity_from_chain(app, sk_X509_value(certs, 0), pool, 0, out));
    if (out->kind == GW_PRINCIPAL_UNAUTHENTICATED) {
        char why[sizeof out->reason];
        snprintf(why, sizeof why, "%s", out->reason);
        snprintf(out->reason, sizeof out->reason, "forwarded certificate: %.136s", why);
    } else if (out->kind != GW_PRINCIPAL_SANDBOX && out->kind != GW_PRINCIPAL_USER) {
        /* Another proxy's certificate: proxies do not chain. */
        char id[sizeof out->spiffe_id];
        snprintf(id, sizeof id, "%s", out->spiffe_id);
        reject(out, "a proxy identity, not a sandbox or a user");
        snprintf(out->spiffe_id, sizeof out->spiffe_id, "%s", id);
    }
    rc = 0;
out:
    sk_X509_free(pool);   /* borrowed references only */
    gw_pki_release(pki);
    return rc;
}

int gw_forward_authenticate(const gw_call_ctx *ctx, const uint8_t *value, size_t len,
                            unsigned count, gw_principal *out)
{
    gw_app *app = gw_app_of(ctx);
    const gw_principal *conn = ctx->principal;
    TSR_ASSERT(conn != NULL && out != NULL && (value != NULL || len == 0));

    /* A trusted proxy: on the unix socket, or a Proxy principal listed in
     * proxy.trusted (reloadable). */
    bool trusted = conn->local_proxy;
    if (!trusted && conn->kind == GW_PRINCIPAL_PROXY) {
        gw_pki *pki = gw_app_pki(app);
        trusted = gw_config_proxy_trusted(pki->cfg, conn->name);
        gw_pki_release(pki);
    }
    if (!trusted) {
        gw_metrics_forward(GW_FORWARD_IGNORED);
        gw_audit_event(ctx, "forward", "", "ignore",
                       "client certificate header from a caller that is not a trusted proxy",
                       NULL);
        return 1;
    }

    STACK_OF(X509) *certs = NULL;
    if (count != 1) {
        reject(out, "the header appears more than once");
    } else if (len > GW_FORWARD_MAX_HEADER) {
        reject(out, "the header exceeds 16384 bytes");
    } else if (gw_forward_decode(app->cfg->proxy_format, value, len, &certs) != 0) {
        if (tsr_errcat() == TSR_E_INTERNAL) return -1;
        char why[sizeof out->reason];
        snprintf(why, sizeof why, "%s", tsr_errmsg());
        reject(out, why);
    } else {
        int rc = verify_forwarded(app, certs, out);
        sk_X509_pop_free(certs, X509_free);
        if (rc != 0) return -1;
        /* Trusted by name (not by position on the unix socket): the call
         * lives only as long as that proxy stays trusted. */
        if (!conn->local_proxy && out->kind != GW_PRINCIPAL_UNAUTHENTICATED)
            snprintf(out->via_proxy, sizeof out->via_proxy, "%s", conn->name);
    }

    if (out->kind == GW_PRINCIPAL_UNAUTHENTICATED) {
        gw_metrics_forward(GW_FORWARD_REJECTED);
        gw_audit_event(ctx, "forward", "", "deny", out->reason, NULL);
    } else {
        gw_metrics_forward(GW_FORWARD_ACCEPTED);
    }
    return 0;
}
