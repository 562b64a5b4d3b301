/* The gateway's own serving certificate, renewed by the gateway itself, and
 * the expiry of everything it serves with (docs/operations.md, "The
 * gateway's own certificate" and "Watching expiry").
 *
 * gw_selfrenew_tick() runs on the reload thread (gw_main.c) once a second
 * and after every reload, so a renewal never races a SIGHUP reload:
 *   - the expiry gauges tessera_certificate_expiry_timestamp_seconds
 *     {cert="gateway|issuing|root|crl"} (root: the bundle's root that
 *     expires first; crl: nextUpdate of the CRL GetTrustBundle serves);
 *   - a warning on stderr when less than 1/6 of a lifetime is left (the
 *     gateway, issuing and root certificates), once an hour per certificate;
 *   - at 2/3 of the served certificate's lifetime, a renewal: a new key, the
 *     same SPIFFE ID and DNS/IP names (ca_gateway_renew), recorded in the
 *     store (spiffe://<td>/gateway, no sandbox) before it is used, written
 *     over pki.server_cert / server_key (ca_gwcert_install), and swapped into
 *     the TLS context for new connections; open connections keep theirs.
 *     A failed attempt is logged and retried a minute later. */
#ifndef GW_SELFRENEW_H
#define GW_SELFRENEW_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdint.h>
#include <stdio.h>

#include "gw_app.h"
#include "gw_server.h"
#include "tsr_err.h"

typedef struct gw_selfrenew gw_selfrenew;

/* Its own store connection (records and the CRL's store reads). */
TSR_WUR int gw_selfrenew_new(gw_app *app, gw_server *server, gw_selfrenew **out);
void gw_selfrenew_free(gw_selfrenew *r);
/* now = 0: the clock. */
void gw_selfrenew_tick(gw_selfrenew *r, int64_t now);

/* The expiry gauges in the Prometheus text format (gw_metrics_render). */
void gw_expiry_render(FILE *f);

#endif
