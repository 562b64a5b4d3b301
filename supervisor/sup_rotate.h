/* Certificate rotation: when to rotate, how long to back off, the CSR, and
 * the check of what RenewCertificate returns.
 *
 * Schedule: the next rotation is due after half of the certificate's
 * remaining lifetime, times a jitter factor in [0.9, 1.1), or earlier once
 * no more than --renew-before is left (when given), never earlier than
 * --min-rotate-seconds, unless that floor would let the certificate expire
 * first: then at 90% of the remaining lifetime (docs/supervisor.md,
 * "Rotation").
 *
 * Backoff (gateway unreachable, rate limited, server errors): 1 s doubling
 * up to 60 s, each delay times a jitter factor in [0.9, 1.1) and capped at
 * 60 s. The caller never sleeps past the certificate's notAfter.
 *
 * The new key is made here (P-256, ca_key_generate) and never leaves the
 * process except into key.pem; the CSR has an empty subject and no
 * extensions: the gateway takes the identity from the caller's certificate. */
#ifndef SUP_ROTATE_H
#define SUP_ROTATE_H

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cl_grpc.h"
#include "sup_identity.h"
#include "tsr_err.h"

#define SUP_BACKOFF_FIRST_MS 1000
#define SUP_BACKOFF_MAX_MS 60000
#define SUP_MIN_ROTATE_DEFAULT_S 60
/* --renew-before: up to the longest sandbox certificate lifetime (24 h). */
#define SUP_RENEW_BEFORE_MAX_S (24 * 3600)

/* A uniform random number in [0, 1) from the OpenSSL CSRNG. */
double sup_rand_unit(void);

/* Milliseconds from now_ms until the next rotation of a certificate valid
 * until not_after (Unix seconds). renew_before_s > 0: due at the latest when
 * that many seconds of its lifetime are left (0: off). `u` in [0, 1) picks
 * the jitter. When the certificate has already expired, *expired is set and
 * 0 returned. */
int64_t sup_rotate_delay_ms(int64_t now_ms, int64_t not_after, int64_t min_rotate_s,
                            int64_t renew_before_s, double u, bool *expired);

/* Delay before retry number `attempt` (0 = the first retry). */
int64_t sup_backoff_ms(unsigned attempt, double u);

/* DER PKCS#10 for `key`: version 1, empty subject, no attributes, signed by
 * the key (SHA-256 for EC/RSA). *der is malloc'd. */
TSR_WUR int sup_csr_build(EVP_PKEY *key, uint8_t **der, size_t *len);

/* Check a RenewCertificate answer against the identity we have and the key
 * we generated: exactly one leaf in leaf_pem, optional intermediates in
 * chain_pem, and bundle_pem (empty = keep ours). The leaf must verify
 * against the new bundle as a sandbox X509-SVID at `now` (0 = current time),
 * carry exactly our current SPIFFE ID and `new_key`'s public key. On success
 * *out is the new identity (it takes a reference to new_key), ready for
 * sup_identity_store and the TLS reload. */
TSR_WUR int sup_renewal_check(const sup_identity *cur, EVP_PKEY *new_key,
                              const char *trust_domain, const char *leaf_pem,
                              const char *chain_pem, const char *bundle_pem, int64_t now,
                              sup_identity **out);

/* One renewal over `conn`: a fresh key, the CSR, RenewCertificate, the check.
 * Returns 0 with *out on success. On -1, st->code is the call's status, or
 * INTERNAL when the gateway's answer failed the check (st->message says why). */
TSR_WUR int sup_rotate_renew(cl_conn *conn, const sup_identity *cur, const char *trust_domain,
                             int64_t timeout_ms, sup_identity **out, cl_status *st);

#endif
