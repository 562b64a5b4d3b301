/* The gateway's serving certificate renewed under the issuing CA: the same
 * SPIFFE ID and DNS/IP names, a new key, the same lifetime (docs/certgen.md,
 * "renew-gateway"; docs/operations.md, "The gateway's own certificate").
 * Used by the gateway itself (gateway/gw_selfrenew.c) and by
 * `certgen renew-gateway` and `rotate-issuing`. */
#ifndef CA_GWCERT_H
#define CA_GWCERT_H

#include <netinet/in.h>
#include <arpa/inet.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <stdint.h>

#include "ca_issue.h"
#include "tsr_err.h"

#define CA_MAX_NAMES 32

/* A certificate's DNS and IP SANs, as text. */
typedef struct ca_leaf_names {
    char *dns[CA_MAX_NAMES];
    size_t n_dns;
    char ips[CA_MAX_NAMES][INET6_ADDRSTRLEN];
    const char *ip_ptrs[CA_MAX_NAMES];
    size_t n_ips;
} ca_leaf_names;

TSR_WUR int ca_leaf_names_from(const X509 *cert, ca_leaf_names *out);
void ca_leaf_names_free(ca_leaf_names *names);

/* The type of a key certgen or the gateway generates (P-256, P-384,
 * Ed25519); anything else TSR_E_INPUT. */
TSR_WUR int ca_key_type_of(const EVP_PKEY *key, enum ca_key_type *out);

/* Renew `current` (a gateway certificate): a fresh key of `current`'s key
 * type, spiffe://<td>/gateway, current's DNS and IP names, and current's
 * lifetime (notAfter - notBefore, less the 60 s notBefore backdating),
 * capped at the issuer's notAfter by ca_issue_leaf. now = 0: the clock. */
TSR_WUR int ca_gateway_renew(const ca_issuer *issuer, const X509 *current, const char *td,
                             int64_t now, EVP_PKEY **key_out, X509 **cert_out);

/* When a certificate valid [not_before, not_after] is due: at 2/3 of its
 * life. Its "short" point: 1/6 of the lifetime left. */
int64_t ca_renew_due(int64_t not_before, int64_t not_after);
int64_t ca_expiry_warn_at(int64_t not_before, int64_t not_after);

/* Write a renewed gateway certificate (leaf + chain_pem) and its key over
 * cert_path / key_path so that a crash at any point leaves a usable pair:
 * the certificate goes to <cert_path>.new first, then the key replaces
 * key_path, then <cert_path>.new is renamed over cert_path (each step
 * atomic, fsynced). ca_gwcert_recover() finishes or undoes an interrupted
 * install at start. Used by the gateway and by `certgen renew-gateway`. */
TSR_WUR int ca_gwcert_install(const char *cert_path, const char *key_path, X509 *leaf,
                              const char *chain_pem, EVP_PKEY *key);
/* If <cert_path>.new exists: renamed over cert_path when key_path holds its
 * key (the key was replaced, the certificate not yet), else removed (the
 * key was never replaced). *recovered = 1 when it renamed. */
TSR_WUR int ca_gwcert_recover(const char *cert_path, const char *key_path, int *recovered);

#endif
