/* Test utilities for the supervisor tests: a small PKI made with the CA
 * library (root + issuing), sandbox leaves as a driver would receive them,
 * and scratch identity directories. Every helper aborts the test on failure
 * (cmocka fail_msg is not available here, so they return -1 and the caller
 * asserts). */
#ifndef TU_SUPPKI_H
#define TU_SUPPKI_H

#include "tu_fs.h"

#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ca_issue.h"
#include "cl_tls.h"

typedef struct tu_pki {
    char trust_domain[64];
    ca_issuer *root;
    ca_issuer *issuing;
    char *bundle_pem;      /* the root */
    size_t bundle_len;
    char *issuing_pem;     /* the issuing CA (goes after a leaf) */
    size_t issuing_len;
} tu_pki;

int tu_pki_init(tu_pki *p, const char *trust_domain, int64_t now);
void tu_pki_free(tu_pki *p);
/* A TLS client that trusts the pki's bundle (and has no identity). */
int tu_pki_client_tls(const tu_pki *p, cl_tls **out);

typedef struct tu_leaf {
    char *chain_pem;       /* leaf + issuing CA */
    size_t chain_len;
    char *leaf_pem;        /* the leaf alone */
    size_t leaf_len;
    char *key_pem;         /* PKCS#8 */
    size_t key_len;
    EVP_PKEY *key;
    X509 *cert;
    char serial[41];
} tu_leaf;

/* A leaf for `spiffe_id` (key NULL = a fresh P-256 key, else a reference is
 * taken), valid from now-60 to now+ttl. */
int tu_pki_leaf(const tu_pki *p, const char *spiffe_id, EVP_PKEY *key, int64_t now, int64_t ttl,
                tu_leaf *out);
void tu_leaf_free(tu_leaf *l);

/* A fresh 0700 directory under /tmp; free the string. */
char *tu_scratch_dir(const char *tag);
/* Write dir/name with exactly `mode` (not atomically). */
int tu_write(const char *dir, const char *name, const void *data, size_t len, mode_t mode);
/* The identity files a supervisor reads: dir/cert.pem (the leaf's chain),
 * key.pem and bundle.pem (the pki's roots), each 0600. */
int tu_write_identity(const char *dir, const tu_pki *p, const tu_leaf *l);
/* Read dir/name into a malloc'd NUL-terminated buffer, NULL if absent. */
char *tu_read(const char *dir, const char *name, size_t *len);
/* Number of directory entries besides . and .. */
int tu_count_entries(const char *dir);

#endif
