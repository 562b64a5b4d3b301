/* The trust bundle as a SPIFFE bundle: the JWK Set of the SPIFFE Trust
 * Domain and Bundle standard (§4), served by GetTrustBundle next to the PEM.
 *
 *   {"keys":[{"use":"x509-svid","kty":"EC","crv":"P-256","x":"..","y":"..",
 *             "x5c":["<base64 DER>"]}, ...],
 *    "spiffe_sequence":N,"spiffe_refresh_hint":S}
 *
 * One key per root certificate, `use` "x509-svid", `x5c` exactly that root
 * (standard base64 of its DER, RFC 7517 §4.7). Key parameters (base64url,
 * no padding, RFC 7518 §6): EC P-256/P-384/P-521 crv/x/y with coordinates
 * padded to the field size; RSA n/e; Ed25519/Ed448 as OKP crv/x
 * (RFC 8037). Any other key type is refused. */
#ifndef GW_BUNDLE_H
#define GW_BUNDLE_H

#include <openssl/x509.h>
#include <stddef.h>
#include <stdint.h>

#include "tsr_err.h"

#define GW_BUNDLE_REFRESH_HINT 300   /* seconds: how often relying parties should re-fetch */

/* The JSON text (malloc'd, NUL-terminated, no trailing newline). `roots`:
 * at least one certificate. sequence >= 0, refresh_hint > 0. */
TSR_WUR int gw_spiffe_bundle_json(STACK_OF(X509) *roots, int64_t sequence, int64_t refresh_hint,
                                  char **out, size_t *len);

#endif
