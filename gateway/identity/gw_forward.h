/* Forwarded client certificates: the gateway behind a TLS terminator
 * (docs/operations.md, "Behind nginx").
 *
 * A trusted proxy (a caller whose principal is spiffe://TD/proxy/<name>
 * with <name> in the config's proxy.trusted, or any caller on the
 * configured unix socket: principal.local_proxy) terminates the client's TLS
 * and forwards the client's certificate in one request header
 * (proxy.header), per request. The gateway trusts the proxy for one thing
 * only: that its client proved possession of that certificate's key in
 * the proxy's handshake. Everything else is re-checked here as for a
 * direct peer: the chain against the bundle, the X509-SVID rules, the trust
 * domain, revocation and validity (gw_identity_from_chain), and the call
 * then runs as that identity: a sandbox, a user, or nobody
 * (UNAUTHENTICATED). A proxy call without the header is the proxy itself,
 * which the guard denies everything (PERMISSION_DENIED); a call on the unix
 * socket without it is UNAUTHENTICATED (its connection identifies nobody).
 *
 * From any other caller the header is ignored (the call runs as the caller)
 * and the attempt is logged by the transport and audited here.
 *
 * Encodings (proxy.format):
 *  - escaped-pem: the URL-encoded (percent-encoded) PEM of the leaf,
 *    optionally followed by intermediates: nginx's $ssl_client_escaped_cert.
 *  - xfcc: Envoy's x-forwarded-client-cert with exactly one element;
 *    its Cert="<escaped PEM leaf>" and/or Chain="<escaped PEM chain>"
 *    (leaf first) are read, every other key (By, Hash, Subject, URI, DNS)
 *    is ignored: identity comes only from the re-verified certificate.
 * The gateway's own issuing CA is added to the intermediates (as an
 * untrusted path hint only), since nginx forwards the leaf alone. */
#ifndef GW_FORWARD_H
#define GW_FORWARD_H

#include <openssl/x509.h>
#include <stddef.h>
#include <stdint.h>

#include "gw_config.h"
#include "gw_rpc.h"
#include "tsr_err.h"

#define GW_FORWARD_MAX_HEADER 16384   /* bytes of the header value */
#define GW_FORWARD_MAX_CERTS 8        /* leaf + intermediates */
#define GW_FORWARD_MAX_XFCC_PAIRS 64

/* Percent-decode `len` bytes (not NUL-terminated). '%' must be followed by
 * two hex digits; '+' stays '+'. Every decoded byte must be printable ASCII,
 * tab, CR or LF: PEM needs nothing else, so a NUL, another control byte or
 * a byte above 0x7e (raw or escaped) is TSR_E_INPUT. *out is malloc'd,
 * NUL-terminated, *out_len excludes the NUL; an empty result is an error. */
TSR_WUR int gw_forward_unescape(const uint8_t *in, size_t len, uint8_t **out, size_t *out_len);

/* One XFCC element's Cert and Chain values, still URL-encoded, pointing into
 * the input ({NULL, 0} when absent). */
typedef struct gw_xfcc {
    const uint8_t *cert;
    size_t cert_len;
    const uint8_t *chain;
    size_t chain_len;
} gw_xfcc;

/* Parse an x-forwarded-client-cert value strictly: printable ASCII only,
 * key=value pairs joined by ';', keys [A-Za-z]{1,16} (case-insensitive),
 * values plain (no '"', '\\', ',' or ';') or double-quoted (backslash
 * escapes; Cert and Chain may not contain any). More than one element (a
 * ',' outside quotes), an empty pair, a repeated Cert or Chain, or neither
 * of them is TSR_E_INPUT. */
TSR_WUR int gw_forward_parse_xfcc(const uint8_t *in, size_t len, gw_xfcc *out);

/* The certificates in a header value, leaf first: at least 1, at most
 * GW_FORWARD_MAX_CERTS, each parsed by ca_certs_from_pem. For xfcc with
 * both Cert and Chain, Chain's first certificate must be Cert. */
TSR_WUR int gw_forward_decode(enum gw_forward_format format, const uint8_t *value, size_t len,
                              STACK_OF(X509) **out);

/* gw_server_config.authenticate_forwarded (see gw_server.h for the return
 * values): 1 unless ctx->principal is a trusted proxy; else 0 with *out the
 * forwarded identity (UNAUTHENTICATED with a reason when it identifies
 * nobody, the header is repeated, too long or malformed). */
int gw_forward_authenticate(const gw_call_ctx *ctx, const uint8_t *value, size_t len,
                            unsigned count, gw_principal *out);

#endif
