/* Certificate revocation lists (RFC 5280 §5) signed by an issuing CA.
 *
 * Profile: X.509 v2 CRL, issuer = the CA's subject, signed with the CA's
 * key (SHA-256 for P-256, SHA-384 for P-384, pure Ed25519), thisUpdate and
 * nextUpdate, the CRL extensions authorityKeyIdentifier (keyIdentifier, from
 * the CA's SKI) and cRLNumber; one entry per revoked serial, sorted by serial
 * (ascending, numerically), each with its revocationDate and, when the reason
 * is known, a reasonCode entry extension (RFC 5280 §5.3.1: "unspecified" is
 * left out rather than encoded). No delta CRLs, no indirect CRL, no issuing
 * distribution point: it is a complete CRL for every certificate the CA
 * issued. */
#ifndef CA_CRL_H
#define CA_CRL_H

#include <openssl/x509.h>
#include <stddef.h>
#include <stdint.h>

#include "ca_issue.h"
#include "tsr_err.h"

#define CA_CRL_MAX_ENTRIES 1000000
#define CA_CRL_REASON_NONE (-1)  /* no reasonCode extension */

/* RFC 5280 CRLReason values (certificateHold / removeFromCRL are not
 * produced: every revocation here is permanent). */
enum ca_crl_reason {
    CA_CRL_KEY_COMPROMISE = 1,
    CA_CRL_CA_COMPROMISE = 2,
    CA_CRL_AFFILIATION_CHANGED = 3,
    CA_CRL_SUPERSEDED = 4,
    CA_CRL_CESSATION_OF_OPERATION = 5,
    CA_CRL_PRIVILEGE_WITHDRAWN = 9,
    CA_CRL_AA_COMPROMISE = 10,
};

typedef struct ca_crl_entry {
    char serial_hex[41];   /* hex, 1..40 digits (case-insensitive), positive */
    int64_t revoked_at;    /* Unix seconds, > 0 */
    int reason;            /* CA_CRL_REASON_NONE or an enum ca_crl_reason */
} ca_crl_entry;

/* The reason a free-text revocation reason names, matched case-insensitively
 * with '_', '-' and ' ' ignored against the RFC 5280 names ("keyCompromise",
 * "key_compromise", "Key compromise", ...); CA_CRL_REASON_NONE otherwise. */
int ca_crl_reason_from_text(const char *text);
const char *ca_crl_reason_name(int reason);   /* "keyCompromise", ..., "none" */

typedef struct ca_crl_params {
    uint64_t number;        /* cRLNumber: > 0, larger than any earlier CRL's */
    int64_t this_update;    /* Unix seconds, > 0 */
    int64_t next_update;    /* Unix seconds, > this_update */
} ca_crl_params;

/* Build and sign the CRL. `entries` (n <= CA_CRL_MAX_ENTRIES, may be 0) is
 * sorted in place; a bad serial, a revocation date <= 0, an unknown reason or
 * a repeated serial is TSR_E_INPUT. The issuer must be a CA with a subject
 * key identifier. */
TSR_WUR int ca_crl_build(const ca_issuer *issuer, ca_crl_entry *entries, size_t n,
                         const ca_crl_params *params, X509_CRL **out);

/* PEM ("X509 CRL" block) into a fresh NUL-terminated malloc'd buffer. */
TSR_WUR int ca_crl_to_pem(X509_CRL *crl, char **out, size_t *len);

#endif
