/* Identity decided once per connection, right after the TLS handshake. */
#include "gw_principal.h"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

#include "ca_verify.h"
#include "gw_app.h"
#include "gw_config.h"
#include "gw_identity.h"
#include "gw_revocation.h"
#include "tsr_time.h"

const char *gw_principal_kind_name(enum gw_principal_kind kind)
{
    switch (kind) {
    case GW_PRINCIPAL_ANONYMOUS: return "anonymous";
    case GW_PRINCIPAL_UNAUTHENTICATED: return "unauthenticated";
    case GW_PRINCIPAL_SANDBOX: return "sandbox";
    case GW_PRINCIPAL_USER: return "user";
    case GW_PRINCIPAL_PROXY: return "proxy";
    }
    return "unknown";
}

const char *gw_role_name(enum gw_role role)
{
    switch (role) {
    case GW_ROLE_NONE: return "none";
    case GW_ROLE_VIEWER: return "viewer";
    case GW_ROLE_OPERATOR: return "operator";
    case GW_ROLE_ADMIN: return "admin";
    }
    return "unknown";
}

static void unauthenticated(gw_principal *out, const char *reason)
{
    out->kind = GW_PRINCIPAL_UNAUTHENTICATED;
    out->role = GW_ROLE_NONE;
    out->name[0] = '\0';
    snprintf(out->reason, sizeof out->reason, "%s", reason);
}

/* After a reload (another PKI snapshot): would this principal still be
 * given? The root its verified chain ended in must still be in the bundle
 * (a retired root's leaves are refused), a user's role must be unchanged,
 * and a call forwarded by a proxy needs that proxy still trusted. A new
 * issuing CA under the same root changes nothing: older leaves still chain. */
static enum gw_identity_verdict reevaluate(gw_app *app, const gw_principal *p)
{
    static const unsigned char none[32];
    gw_pki *pki = gw_app_pki(app);
    enum gw_identity_verdict v = GW_IDENTITY_ROOT_RETIRED;
    if (memcmp(p->anchor, none, sizeof none) != 0)
        for (int r = 0; v != GW_IDENTITY_CURRENT && r < sk_X509_num(pki->roots); r++)
            if (memcmp(pki->root_sha256[r], p->anchor, sizeof p->anchor) == 0)
                v = GW_IDENTITY_CURRENT;
    if (v == GW_IDENTITY_CURRENT && p->kind == GW_PRINCIPAL_USER &&
        gw_config_user_role(pki->cfg, p->name) != p->role)
        v = GW_IDENTITY_ROLE_CHANGED;
    if (v == GW_IDENTITY_CURRENT && p->via_proxy[0] != '\0' &&
        !gw_config_proxy_trusted(pki->cfg, p->via_proxy))
        v = GW_IDENTITY_PROXY_UNTRUSTED;
    gw_pki_release(pki);
    return v;
}

static int from_chain(gw_app *app, const gw_pki *pki, X509 *leaf,
                      STACK_OF(X509) *untrusted, int64_t now, gw_principal *out)
{
    memset(out, 0, sizeof *out);
    if (leaf == NULL) {
        out->kind = GW_PRINCIPAL_ANONYMOUS;
        return 0;
    }
    enum ca_verify_reason reason = CA_VERIFY_OK;
    ca_peer peer;
    if (ca_verify_peer(pki->trust, leaf, untrusted, CA_PURPOSE_CLIENT, CA_KIND_NONE, now, &reason,
                       &peer) != 0) {
        unauthenticated(out, tsr_errmsg());
        return 0;
    }
    out->pki_generation = pki->generation;
    memcpy(out->anchor, peer.anchor_sha256, sizeof out->anchor);
    snprintf(out->spiffe_id, sizeof out->spiffe_id, "%s", peer.identity.id.text);
    snprintf(out->serial_hex, sizeof out->serial_hex, "%s", peer.serial_hex);
    out->not_after = peer.chain_not_after;

    if (gw_revocations_contains(app->revoked, peer.serial_hex)) {
        unauthenticated(out, "certificate revoked");
        return 0;
    }
    switch (peer.identity.kind) {
    case CA_KIND_SANDBOX:
        out->kind = GW_PRINCIPAL_SANDBOX;
        break;
    case CA_KIND_USER:
        out->kind = GW_PRINCIPAL_USER;
        out->role = gw_config_user_role(pki->cfg, peer.identity.name);
        break;
    case CA_KIND_PROXY:
        out->kind = GW_PRINCIPAL_PROXY;
        break;
    case CA_KIND_GATEWAY:
    case CA_KIND_NONE:
    default:
        /* The gateway's own identity is a server identity, never a caller. */
        unauthenticated(out, "gateway identity cannot be used as a client");
        return 0;
    }
    snprintf(out->name, sizeof out->name, "%s", peer.identity.name);
    return 0;
}

int gw_identity_from_chain(gw_app *app, X509 *leaf, STACK_OF(X509) *untrusted, int64_t now,
                           gw_principal *out)
{
    /* One snapshot for the whole check: trust and roles from the same reload. */
    gw_pki *pki = gw_app_pki(app);
    int rc = from_chain(app, pki, leaf, untrusted, now, out);
    gw_pki_release(pki);
    return rc;
}

int gw_identity_authenticate(void *app_ptr, void *worker, SSL *ssl, gw_principal *out)
{
    (void)worker;
    gw_app *app = app_ptr;
    TSR_ASSERT(app != NULL && ssl != NULL && out != NULL);
    /* Server side: the peer chain excludes the leaf; it is only a pool of
     * untrusted intermediates, the anchors come from our bundle alone. */
    X509 *leaf = SSL_get0_peer_certificate(ssl);
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);
    return gw_identity_from_chain(app, leaf, chain, 0, out);
}

int gw_identity_authenticate_local(void *app, void *worker, const gw_local_peer *peer,
                                   gw_principal *out)
{
    (void)app;
    (void)worker;
    TSR_ASSERT(peer != NULL && out != NULL);
    memset(out, 0, sizeof *out);
    out->local_proxy = true;
    unauthenticated(out, "unix socket: every call needs a forwarded client certificate");
    return 0;
}

const char *gw_identity_verdict_text(enum gw_identity_verdict v)
{
    switch (v) {
    case GW_IDENTITY_CURRENT: return "current";
    case GW_IDENTITY_EXPIRED: return "certificate expired";
    case GW_IDENTITY_REVOKED: return "certificate revoked";
    case GW_IDENTITY_ROOT_RETIRED: return "trust root no longer in the bundle";
    case GW_IDENTITY_ROLE_CHANGED: return "role changed";
    case GW_IDENTITY_PROXY_UNTRUSTED: return "forwarding proxy no longer trusted";
    }
    return "credentials no longer valid";
}

enum gw_identity_verdict gw_identity_recheck(gw_app *app, const gw_principal *p, int64_t now)
{
    /* Only principals that carry authority can lose it; anonymous and
     * unauthenticated connections can call nothing but the health check,
     * and keep their connection so they get a clear UNAUTHENTICATED. */
    if (p->kind != GW_PRINCIPAL_SANDBOX && p->kind != GW_PRINCIPAL_USER &&
        p->kind != GW_PRINCIPAL_PROXY)
        return GW_IDENTITY_CURRENT;
    if (p->serial_hex[0] == '\0' || now >= p->not_after) return GW_IDENTITY_EXPIRED;
    if (gw_revocations_contains(app->revoked, p->serial_hex)) return GW_IDENTITY_REVOKED;
    /* Verified against an older snapshot: re-evaluate against the current
     * one (until the connection ends; cheap: no signature work). */
    if (p->pki_generation == atomic_load(&app->pki_generation)) return GW_IDENTITY_CURRENT;
    return reevaluate(app, p);
}

bool gw_identity_still_valid(void *app, const gw_principal *p, int64_t now, const char **why)
{
    enum gw_identity_verdict v = gw_identity_recheck(app, p, now);
    if (why != NULL) *why = gw_identity_verdict_text(v);
    return v == GW_IDENTITY_CURRENT;
}
