/* The transport's identity hooks: certificate -> principal at the handshake,
 * and the periodic revocation / notAfter check of open connections. */
#ifndef GW_IDENTITY_H
#define GW_IDENTITY_H

#include <openssl/ssl.h>
#include <stdbool.h>

#include "gw_app.h"
#include "gw_principal.h"
#include "gw_server.h"

/* Verify a peer (leaf + untrusted intermediates) and fill the principal:
 * ANONYMOUS without a leaf, UNAUTHENTICATED with a reason for anything that
 * identifies nobody (bad chain, X509-SVID violation, foreign trust domain,
 * revoked, gateway identity). now = 0: current time. Returns -1 only on an
 * internal failure. */
int gw_identity_from_chain(gw_app *app, X509 *leaf, STACK_OF(X509) *untrusted, int64_t now,
                           gw_principal *out);

/* gw_server_config.authenticate */
int gw_identity_authenticate(void *app, void *worker, SSL *ssl, gw_principal *out);
/* gw_server_config.authenticate_local: a caller on the unix socket is
 * UNAUTHENTICATED with local_proxy set (see gw_principal.h): every call
 * must carry a forwarded client certificate (gw_forward.h). */
int gw_identity_authenticate_local(void *app, void *worker, const gw_local_peer *peer,
                                   gw_principal *out);
/* Is an identity given earlier still what it was? Checked on every tick
 * for every connection and forwarded call, and by the dispatcher right
 * before every method callback (gw_authz_dispatch): notAfter of the
 * verified chain, the revocation set, and after a reload the root its
 * verified chain ended in, a user's role and the forwarding proxy. */
enum gw_identity_verdict {
    GW_IDENTITY_CURRENT = 0,
    GW_IDENTITY_EXPIRED,
    GW_IDENTITY_REVOKED,
    GW_IDENTITY_ROOT_RETIRED,
    GW_IDENTITY_ROLE_CHANGED,
    GW_IDENTITY_PROXY_UNTRUSTED,
};
enum gw_identity_verdict gw_identity_recheck(gw_app *app, const gw_principal *p, int64_t now);
/* "certificate revoked", ...: the message a refused call carries. */
const char *gw_identity_verdict_text(enum gw_identity_verdict v);
/* gw_server_config.still_valid: gw_identity_recheck(...) == GW_IDENTITY_CURRENT,
 * else *why (may be NULL) = its gw_identity_verdict_text. */
bool gw_identity_still_valid(void *app, const gw_principal *p, int64_t now, const char **why);

#endif
