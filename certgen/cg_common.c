/* Helpers shared by the certgen commands: messages, argument checks, files
 * with the right modes, and the self-check of every issued chain. */
#include "ca_gwcert.h"
#include "cg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <openssl/err.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "ca_pem.h"
#include "tsr_fs.h"
#include "tsr_name.h"
#include "tsr_time.h"

void cg_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "certgen %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int cg_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "certgen %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nRun 'certgen %s --help' for usage.\n", cmd);
    return CG_USAGE;
}

int cg_fail(const char *cmd, const char *what)
{
    cg_error(cmd, "%s: %s", what, tsr_errmsg());
    return CG_FAIL;
}

int cg_bad_option(const char *cmd, int argc, char **argv, int opt)
{
    const char *arg = (optind > 0 && optind <= argc) ? argv[optind - 1] : "?";
    if (opt == ':') {
        if (optopt > 0 && optopt < 128 && arg[0] == '-' && arg[1] != '-')
            return cg_usage_error(cmd, "option '-%c' needs a value", optopt);
        return cg_usage_error(cmd, "option '%s' needs a value", arg);
    }
    if (optopt > 0 && optopt < 128)
        return cg_usage_error(cmd, "unknown option '-%c'", optopt);
    return cg_usage_error(cmd, "unknown option '%s'", arg);
}

int cg_check_trust_domain(const char *cmd, const char *td)
{
    size_t len = strlen(td);
    if (len == 0) return cg_usage_error(cmd, "--trust-domain is empty");
    if (!tsr_name_chars(td, len))
        return cg_usage_error(cmd,
                              "bad trust domain \"%s\": only lowercase letters, digits, '.', "
                              "'_' and '-' are allowed (e.g. tessera.local)",
                              td);
    if (len > CG_TD_MAX)
        return cg_usage_error(cmd,
                              "trust domain \"%s\" is %zu bytes; at most %d fit the CA names",
                              td, len, CG_TD_MAX);
    return CG_OK;
}

int cg_check_user_name(const char *cmd, const char *name)
{
    size_t len = strlen(name);
    if (!tsr_name_valid(name, len, 64))
        return cg_usage_error(cmd,
                              "bad user name \"%s\": use 1-64 lowercase letters, digits, '.', "
                              "'_' or '-' (not \".\" or \"..\")",
                              name);
    return CG_OK;
}

int cg_check_dns_name(const char *cmd, const char *name)
{
    if (!tsr_dns_name_valid(name, strlen(name), 0))
        return cg_usage_error(cmd,
                              "bad DNS name \"%s\": use letters, digits and '-' in dot-separated "
                              "labels (no wildcards, no trailing dot)",
                              name);
    return CG_OK;
}

int cg_check_ip(const char *cmd, const char *ip)
{
    unsigned char buf[16];
    if (inet_pton(AF_INET, ip, buf) == 1 || inet_pton(AF_INET6, ip, buf) == 1) return CG_OK;
    return cg_usage_error(cmd, "bad IP address \"%s\" (e.g. 127.0.0.1 or ::1)", ip);
}

int cg_parse_ttl(const char *cmd, const char *flag, const char *text, int64_t *out)
{
    if (tsr_duration_parse(text, out) != 0)
        return cg_usage_error(cmd, "%s: %s", flag, tsr_errmsg());
    return CG_OK;
}

int cg_parse_key_type(const char *cmd, const char *text, enum ca_key_type *out)
{
    if (ca_key_type_parse(text, out) != 0)
        return cg_usage_error(cmd, "--key-type: %s", tsr_errmsg());
    return CG_OK;
}

int cg_key_type_of(const EVP_PKEY *key, enum ca_key_type *out)
{
    return ca_key_type_of(key, out);
}

int cg_path(char out[CG_PATH_MAX], const char *dir, const char *name)
{
    return tsr_path_join(out, CG_PATH_MAX, dir, name);
}

int cg_private_dir(const char *cmd, const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0) {
        TSR_ENSURE(S_ISDIR(st.st_mode), TSR_E_IO, "%s exists and is not a directory", path);
        /* An existing directory is the user's: say so, do not change it. */
        if ((st.st_mode & 077) != 0)
            fprintf(stderr,
                    "certgen %s: warning: %s is mode %04o; a PKI directory should be 0700 "
                    "(chmod 700 %s)\n",
                    cmd, path, (unsigned)(st.st_mode & 07777), path);
        return 0;
    }
    TSR_GUARD(tsr_mkdir_p(path, 0700));
    /* Exactly 0700 whatever the umask (it may have removed bits we need). */
    TSR_ENSURE(chmod(path, 0700) == 0, TSR_E_IO, "chmod 0700 %s: %s", path, strerror(errno));
    return 0;
}

int cg_file_key(cg_file *f, const char *dir, const char *name, EVP_PKEY *key)
{
    memset(f, 0, sizeof *f);
    f->is_key = 1;
    TSR_GUARD(cg_path(f->path, dir, name));
    return ca_key_to_pem(key, &f->data, &f->len);
}

int cg_file_certs(cg_file *f, const char *dir, const char *name, X509 *cert, X509 *chain)
{
    memset(f, 0, sizeof *f);
    TSR_GUARD(cg_path(f->path, dir, name));
    STACK_OF(X509) *certs = sk_X509_new_null();
    TSR_ENSURE(certs != NULL, TSR_E_INTERNAL, "out of memory");
    int rc = -1;
    TSR_TRY_ENSURE(sk_X509_push(certs, cert) > 0, TSR_E_INTERNAL, "out of memory");
    if (chain != NULL)
        TSR_TRY_ENSURE(sk_X509_push(certs, chain) > 0, TSR_E_INTERNAL, "out of memory");
    TSR_TRY(ca_certs_to_pem(certs, &f->data, &f->len));
    rc = 0;
out:
    sk_X509_free(certs); /* borrowed certificates */
    return rc;
}

void cg_file_release(cg_file *f)
{
    if (f->is_key)
        ca_secret_free(f->data, f->len);
    else
        free(f->data);
    f->data = NULL;
    f->len = 0;
}

int cg_files_write(cg_file *files, size_t n, int replace, size_t *written)
{
    *written = 0;
    for (size_t i = 0; i < n; i++) {
        TSR_GUARD(tsr_write_file_atomic(files[i].path, files[i].data, files[i].len,
                                        files[i].is_key ? 0600 : 0644,
                                        replace ? TSR_WRITE_REPLACE : TSR_WRITE_NOREPLACE));
        *written = i + 1;
    }
    return 0;
}

int cg_self_verify(STACK_OF(X509) *bundle, X509 *issuing, X509 *leaf, int server)
{
    int rc = -1;
    X509_STORE *store = X509_STORE_new();
    STACK_OF(X509) *untrusted = sk_X509_new_null();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    TSR_TRY_ENSURE(store != NULL && untrusted != NULL && ctx != NULL, TSR_E_INTERNAL,
                   "out of memory");
    for (int i = 0; i < sk_X509_num(bundle); i++)
        TSR_TRY_OSSL(X509_STORE_add_cert(store, sk_X509_value(bundle, i)), TSR_E_INTERNAL,
                     "trust store");
    if (issuing != NULL)
        TSR_TRY_ENSURE(sk_X509_push(untrusted, issuing) > 0, TSR_E_INTERNAL, "out of memory");
    TSR_TRY_OSSL(X509_STORE_CTX_init(ctx, store, leaf, untrusted), TSR_E_INTERNAL,
                 "verify context");
    X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(ctx), X509_V_FLAG_X509_STRICT);
    TSR_TRY_OSSL(X509_STORE_CTX_set_purpose(ctx, server ? X509_PURPOSE_SSL_SERVER
                                                         : X509_PURPOSE_SSL_CLIENT),
                 TSR_E_INTERNAL, "verify purpose");
    if (X509_verify_cert(ctx) != 1) {
        int err = X509_STORE_CTX_get_error(ctx);
        (void)TSR_FAIL(TSR_E_INPUT, "the new certificate does not verify against the trust "
                                    "bundle: %s",
                       X509_verify_cert_error_string(err));
        goto out;
    }
    rc = 0;
out:
    ERR_clear_error();
    X509_STORE_CTX_free(ctx);
    sk_X509_free(untrusted);
    X509_STORE_free(store);
    return rc;
}

void cg_format_time(int64_t t, char out[32])
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (gmtime_r(&tt, &tm) == NULL || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 32, "@%lld", (long long)t);
}

int cg_issue_leaf(const ca_issuer *issuer, enum ca_key_type type, const char *spiffe_id,
                  int64_t ttl, const char *const *dns, size_t n_dns, const char *const *ips,
                  size_t n_ips, EVP_PKEY **key_out, X509 **cert_out)
{
    EVP_PKEY *key = NULL;
    TSR_GUARD(ca_key_generate(type, &key));
    ca_leaf_request req = {
        .spiffe_id = spiffe_id,
        .public_key = key,
        .ttl_seconds = ttl,
        .dns_names = dns,
        .n_dns_names = n_dns,
        .ip_addresses = ips,
        .n_ip_addresses = n_ips,
    };
    if (ca_issue_leaf(issuer, &req, cert_out) != 0) {
        EVP_PKEY_free(key);
        return -1;
    }
    *key_out = key;
    return 0;
}
