/* Test-only certificate forge: raw OpenSSL EVP/X509 calls, no Tessera CA code,
 * so tests of the verifier never depend on the issuer they are checking.
 *
 * A spec starts from a profile (root, issuing CA, leaf per docs/identity.md) and a
 * test tweaks one field: validity, SANs, basicConstraints, keyUsage, EKU,
 * nameConstraints; the signer is chosen at tu_forge time. */
#ifndef TU_CERTFORGE_H
#define TU_CERTFORGE_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stddef.h>
#include <stdint.h>

#define TU_MAX_SANS 6

typedef struct tu_san {
    int type;          /* GEN_URI, GEN_DNS or GEN_IPADD */
    const char *value; /* URI/DNS bytes, or IP address text */
    size_t len;        /* bytes of value; 0 = strlen (so a NUL can be embedded) */
} tu_san;

typedef struct tu_cert_spec {
    const char *cn;                /* subject CN; NULL = empty subject */
    int64_t not_before, not_after; /* Unix seconds */
    /* X509v3 config text (as in openssl.cnf), NULL = extension absent. */
    const char *basic_constraints; /* "critical,CA:TRUE,pathlen:0" */
    const char *key_usage;         /* "critical,digitalSignature" */
    const char *ext_key_usage;     /* "serverAuth,clientAuth" */
    const char *name_constraints;  /* "critical,permitted;URI:tessera.local" */
    tu_san sans[TU_MAX_SANS];
    size_t n_sans;
    int san_critical;              /* -1: critical iff the subject is empty */
    const char *extra_san_ext_uri; /* non-NULL: a second subjectAltName extension */
    int ski;                       /* subjectKeyIdentifier */
    int aki;                       /* authorityKeyIdentifier (keyid of the issuer) */
    char nc_buf[300];              /* storage for name_constraints built by tu_spec_issuing */
} tu_cert_spec;

/* Profiles of docs/identity.md, valid around `now`. */
void tu_spec_root(tu_cert_spec *spec, int64_t now);
void tu_spec_issuing(tu_cert_spec *spec, int64_t now, const char *trust_domain);
void tu_spec_leaf(tu_cert_spec *spec, int64_t now, const char *uri);
/* Append a SAN (len 0 = strlen). Aborts the test program past TU_MAX_SANS. */
void tu_spec_add_san(tu_cert_spec *spec, int type, const char *value, size_t len);

/* A fresh ECDSA P-256 key; NULL on failure. */
EVP_PKEY *tu_key_new(void);

/* Build and sign a certificate for `key`'s public half. issuer == NULL means
 * self-signed (issuer_key ignored, signed by `key`); otherwise the issuer name
 * and AKI come from `issuer` and the signature from `issuer_key` (which need
 * not match `issuer`, to forge bad signatures). NULL on failure. */
X509 *tu_forge(const tu_cert_spec *spec, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key);

/* PEM text of one or more certificates in a malloc'd NUL-terminated buffer. */
char *tu_pem_of(X509 *const *certs, size_t n, size_t *len);

#endif
