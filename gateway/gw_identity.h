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
/* gw_server_config.still_valid */
bool gw_identity_still_valid(void *app, const gw_principal *p, int64_t now);

#endif
