/* certgen: the PKI bootstrap CLI (docs/certgen.md). One file per command, shared
 * helpers in cg_common.c. Exit codes: 0 ok, 1 failure, 2 usage. */
#ifndef CG_H
#define CG_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <stdint.h>

#include "ca_issue.h"
#include "tsr_err.h"

enum { CG_OK = 0, CG_FAIL = 1, CG_USAGE = 2 };

#define CG_DEFAULT_TD "tessera.local"
#define CG_ROOT_TTL (3650LL * 86400)
#define CG_ISSUING_TTL (365LL * 86400)
#define CG_LEAF_TTL (90LL * 86400)
#define CG_MAX_NAMES 32  /* --gateway-dns, --gateway-ip */
#define CG_MAX_USERS 64
#define CG_PATH_MAX 4096
/* The CA common names are "Tessera Issuing CA <td>", at most 64 bytes. */
#define CG_TD_MAX 45

int cg_cmd_init(int argc, char **argv);
int cg_cmd_issue_user(int argc, char **argv);
int cg_cmd_inspect(int argc, char **argv);
int cg_cmd_rotate_issuing(int argc, char **argv);
int cg_cmd_rotate_root(int argc, char **argv);
int cg_cmd_retire_root(int argc, char **argv);
int cg_cmd_renew_gateway(int argc, char **argv);
int cg_cmd_issue_proxy(int argc, char **argv);
int cg_cmd_list(int argc, char **argv);

/* issue-user / issue-proxy: a certificate for spiffe://TD/<kind>/<name>
 * into DIR/<subdir>/<name>.pem (chain: leaf, issuing) and .key, recorded in
 * `store` first when it is not NULL. Prints what it did; CG_OK or CG_FAIL. */
typedef struct cg_named_leaf {
    const char *cmd;      /* "issue-user", for messages */
    const char *kind;     /* "user" | "proxy" */
    const char *subdir;   /* "users" | "proxies" */
    const char *pki, *name, *store;
    int64_t ttl;
    enum ca_key_type type;
    int have_type, force;
} cg_named_leaf;
int cg_issue_named(const cg_named_leaf *o);
/* `certgen <o->cmd> NAME --pki DIR [--ttl D] [--key-type T] [--force]`, and
 * `--store DB` (required) when o->kind is "proxy", into o (cmd, kind and
 * subdir set by the caller). CG_OK with *done = 0: issue; *done = 1: help
 * printed; else the usage error's status. */
int cg_parse_named(int argc, char **argv, const char *help, cg_named_leaf *o, int *done);

/* Record `cert` (SPIFFE ID spiffe_id, no sandbox) in the gateway's database
 * at store_path, which must exist (cg_proxy.c). */
TSR_WUR int cg_record(const char *store_path, X509 *cert, const char *spiffe_id);
/* --store: a sqlite file that must exist, or a postgres:// / postgresql://
 * URI (the replicas' database). */
typedef struct gw_store gw_store;
TSR_WUR int cg_store_open(const char *store, gw_store **out);

/* Messages: "certgen <cmd>: ..." on stderr. */
void cg_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints the message and a pointer to --help; returns CG_USAGE. */
int cg_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "<what>: <recorded tsr error>"; returns CG_FAIL. */
int cg_fail(const char *cmd, const char *what);
/* The getopt failure for argv (unknown option, missing value); CG_USAGE. */
int cg_bad_option(const char *cmd, int argc, char **argv, int opt);

/* Argument checks; on failure they print a usage error and return CG_USAGE. */
int cg_check_trust_domain(const char *cmd, const char *td);
int cg_check_user_name(const char *cmd, const char *name);
int cg_check_dns_name(const char *cmd, const char *name);
int cg_check_ip(const char *cmd, const char *ip);
int cg_parse_ttl(const char *cmd, const char *flag, const char *text, int64_t *out);
int cg_parse_key_type(const char *cmd, const char *text, enum ca_key_type *out);

/* The key type an existing CA key has (for keeping it across rotations). */
TSR_WUR int cg_key_type_of(const EVP_PKEY *key, enum ca_key_type *out);

/* Paths inside the PKI directory; TSR_E_LIMIT when too long. */
TSR_WUR int cg_path(char out[CG_PATH_MAX], const char *dir, const char *name);

/* A directory for keys: created 0700 (with parents). An existing one is left
 * as it is, with a warning if others may read it. */
TSR_WUR int cg_private_dir(const char *cmd, const char *path);

/* Serialized files, written atomically with their final mode from the start. */
typedef struct cg_file {
    char path[CG_PATH_MAX];
    char *data;
    size_t len;
    int is_key; /* 0600 and cleansed on free; certificates are 0644 */
} cg_file;

TSR_WUR int cg_file_key(cg_file *f, const char *dir, const char *name, EVP_PKEY *key);
/* One certificate, or a chain (leaf first) when `chain` is not NULL. */
TSR_WUR int cg_file_certs(cg_file *f, const char *dir, const char *name, X509 *cert,
                          X509 *chain);
void cg_file_release(cg_file *f);
/* Writes files in order (TSR_WRITE_NOREPLACE unless replace). On failure,
 * *written says how many were written before it. */
TSR_WUR int cg_files_write(cg_file *files, size_t n, int replace, size_t *written);

/* Verify `leaf` (+ `issuing`) against the trusted certificates of the bundle,
 * as OpenSSL's strict verifier would, for TLS client or server use. */
TSR_WUR int cg_self_verify(STACK_OF(X509) *bundle, X509 *issuing, X509 *leaf, int server);

/* "2026-05-01T12:00:00Z" */
void cg_format_time(int64_t t, char out[32]);

/* Issue a leaf with a fresh key under `issuer`. */
TSR_WUR int cg_issue_leaf(const ca_issuer *issuer, enum ca_key_type type, const char *spiffe_id,
                          int64_t ttl, const char *const *dns, size_t n_dns,
                          const char *const *ips, size_t n_ips, EVP_PKEY **key_out,
                          X509 **cert_out);

/* Copy `src` byte for byte to `dst` (mode from the start); an identical
 * `dst` (an interrupted earlier run) is fine, a different one TSR_E_EXISTS. */
TSR_WUR int cg_archive_copy(const char *src, const char *dst, unsigned mode);

/* The gateway certificate in gw_pem re-issued under `issuer`: same key
 * (gw_key_path, which must match), same DNS/IP names. */
TSR_WUR int cg_gateway_reissue(const char *gw_pem, const char *gw_key_path,
                               const ca_issuer *issuer, const char *td, int64_t leaf_ttl,
                               X509 **out);

#endif
