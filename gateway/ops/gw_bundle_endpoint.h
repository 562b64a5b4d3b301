/* The SPIFFE bundle endpoint (SPIFFE Trust Domain and Bundle, §5): the
 * trust domain's bundle (the JWK Set of gw_bundle.h, with spiffe_sequence
 * and spiffe_refresh_hint) over HTTPS at `GET /`, without a client
 * certificate, on a listener of its own (config bundle_endpoint.listen; off
 * by default). docs/operations.md, "Federation: the bundle endpoint".
 *
 * Profile: https_spiffe by default — the server authenticates with the
 * gateway's own X509-SVID (pki.server_cert, spiffe://<td>/gateway), which a
 * federating party checks against the bundle it was bootstrapped with;
 * https_web when bundle_endpoint.cert/key name a Web PKI certificate.
 * Either certificate file is read again when it changes (a renewal, a
 * reload), for new connections.
 *
 * Bounded: at most GW_BUNDLE_EP_MAX_CONNS connections at a time (more are
 * closed at accept), each with GW_BUNDLE_EP_DEADLINE_MS for the handshake,
 * the request head (at most GW_BUNDLE_EP_REQUEST_MAX bytes) and the answer;
 * one request per connection. */
#ifndef GW_BUNDLE_ENDPOINT_H
#define GW_BUNDLE_ENDPOINT_H

#include <stdint.h>

#include "gw_app.h"
#include "tsr_err.h"

#define GW_BUNDLE_EP_MAX_CONNS 16
#define GW_BUNDLE_EP_DEADLINE_MS 3000
#define GW_BUNDLE_EP_REQUEST_MAX 8192

typedef struct gw_bundle_endpoint gw_bundle_endpoint;

/* Bind cfg->bundle_host:bundle_port, load the certificate, start serving. */
TSR_WUR int gw_bundle_endpoint_start(gw_app *app, gw_bundle_endpoint **out);
uint16_t gw_bundle_endpoint_port(const gw_bundle_endpoint *ep);
/* Stop accepting, wait for the connections in progress (at most one
 * deadline), free. NULL ok. */
void gw_bundle_endpoint_stop(gw_bundle_endpoint *ep);

/* spiffe_sequence must grow whenever the bundle changes (the standard,
 * §4.1.1). It is the bundle file's modification time; a reload whose bundle
 * differs from `prev`'s but whose file time is not later (two rewrites in
 * one second) gets prev's sequence + 1 instead. */
TSR_WUR int gw_bundle_sequence_follow(const gw_pki *prev, gw_pki *next);

#endif
