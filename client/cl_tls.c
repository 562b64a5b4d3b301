#include "cl_tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca_pem.h"
#include "ca_tls.h"
#include "cl_internal.h"
#include "tsr_fs.h"

static const unsigned char alpn_h2[] = {2, 'h', '2'};

#define CL_TLS_VERIFY_DEPTH 8

struct cl_tls {
    pthread_mutex_t lock;
    char trust_domain[CA_TRUST_DOMAIN_MAX + 1];
    bool verify_host;
    /* Current identity (NULL when anonymous); SSL_CTXs hold their own refs. */
    X509 *leaf;
    STACK_OF(X509) *chain;
    EVP_PKEY *key;
    /* Current bundle, kept to rebuild the trust for each generation. */
    uint8_t *bundle_pem;
    size_t bundle_len;
    cl_tls_gen *cur;
    uint64_t generation;
};

/* ---- generations ------------------------------------------------------------ */

void cl_tls_gen_release(cl_tls_gen *gen)
{
    if (gen == NULL) return;
    if (atomic_fetch_sub(&gen->refs, 1) != 1) return;
    SSL_CTX_free(gen->ctx);
    ca_trust_free(gen->trust);
    free(gen);
}

cl_tls_gen *cl_tls_acquire(cl_tls *tls)
{
    pthread_mutex_lock(&tls->lock);
    cl_tls_gen *g = tls->cur;
    atomic_fetch_add(&g->refs, 1);
    pthread_mutex_unlock(&tls->lock);
    return g;
}

static bool is_ip_literal(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* Runs inside the handshake, before our certificate is sent: the server's
 * chain and identity are checked here, with the project's X509-SVID rules,
 * instead of OpenSSL's default chain check. */
static int server_verify_cb(X509_STORE_CTX *xctx, void *arg)
{
    cl_tls_gen *gen = arg;
    SSL *ssl = X509_STORE_CTX_get_ex_data(xctx, SSL_get_ex_data_X509_STORE_CTX_idx());
    cl_tls_hs *hs = ssl != NULL ? SSL_get_app_data(ssl) : NULL;
    TSR_ASSERT(gen != NULL && hs != NULL && hs->magic == CL_TLS_HS_MAGIC);

    X509 *leaf = X509_STORE_CTX_get0_cert(xctx);
    STACK_OF(X509) *untrusted = X509_STORE_CTX_get0_untrusted(xctx);
    enum ca_verify_reason reason = CA_VERIFY_OK;
    if (ca_verify_peer(gen->trust, leaf, untrusted, CA_PURPOSE_SERVER, CA_KIND_GATEWAY, 0, &reason,
                       &hs->peer) != 0) {
        /* tsr_errmsg() starts with the reason's name ("unknown issuer: ..."). */
        snprintf(hs->reason, sizeof hs->reason, "server identity refused: %.360s", tsr_errmsg());
        goto refuse;
    }
    if (hs->check_host) {
        int ok;
        if (is_ip_literal(hs->host))
            ok = X509_check_ip_asc(leaf, hs->host, 0);
        else
            ok = X509_check_host(leaf, hs->host, 0,
                                 X509_CHECK_FLAG_NEVER_CHECK_SUBJECT |
                                     X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS,
                                 NULL);
        if (ok != 1) {
            snprintf(hs->reason, sizeof hs->reason,
                     "server identity refused: %.120s is a valid gateway but its certificate "
                     "has no DNS/IP SAN for \"%.120s\"",
                     hs->peer.identity.id.text, hs->host);
            goto refuse;
        }
    }
    hs->verified = true;
    return 1;
refuse:
    hs->refused = true;
    X509_STORE_CTX_set_error(xctx, X509_V_ERR_APPLICATION_VERIFICATION);
    ERR_clear_error();
    return 0;
}

static int gen_new(cl_tls *tls, X509 *leaf, STACK_OF(X509) *chain, EVP_PKEY *key,
                   const uint8_t *bundle, size_t bundle_len, cl_tls_gen **out)
{
    int rc = -1;
    cl_tls_gen *g = NULL;

    *out = NULL;
    TSR_TRY_ENSURE((g = calloc(1, sizeof *g)) != NULL, TSR_E_INTERNAL, "out of memory");
    atomic_init(&g->refs, 1);
    g->verify_host = tls->verify_host;
    TSR_TRY(ca_trust_from_pem(bundle, bundle_len, tls->trust_domain, &g->trust));
    TSR_TRY_ENSURE((g->ctx = SSL_CTX_new(TLS_client_method())) != NULL, TSR_E_INTERNAL,
                   "SSL_CTX_new failed");
    SSL_CTX *ctx = g->ctx;
    TSR_TRY(ca_tls_policy_apply(ctx)); /* the gateway's own policy (ca_tls.h) */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    /* set_alpn_protos returns 0 on success. */
    TSR_TRY_ENSURE(SSL_CTX_set_alpn_protos(ctx, alpn_h2, sizeof alpn_h2) == 0, TSR_E_INTERNAL,
                   "cannot set ALPN");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_verify_depth(ctx, CL_TLS_VERIFY_DEPTH);
    SSL_CTX_set_cert_verify_callback(ctx, server_verify_cb, g);
    if (leaf != NULL) {
        TSR_TRY_OSSL(SSL_CTX_use_cert_and_key(ctx, leaf, key, chain, 1), TSR_E_INPUT,
                     "client certificate and key do not match");
        TSR_TRY_OSSL(SSL_CTX_check_private_key(ctx), TSR_E_INPUT,
                     "client key does not match its certificate");
    }
    *out = g;
    g = NULL;
    rc = 0;
out:
    cl_tls_gen_release(g);
    return rc;
}

/* ---- inputs ---------------------------------------------------------------- */

static int read_pem(const char *file, const uint8_t *buf, size_t len, const char *what,
                    uint8_t **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    TSR_ENSURE(!(file != NULL && buf != NULL), TSR_E_INPUT, "%s: give a file or a buffer, not both",
               what);
    if (file != NULL) return tsr_read_file(file, CA_PEM_MAX_BYTES, out, out_len);
    TSR_ENSURE(buf != NULL && len > 0, TSR_E_INPUT, "%s: missing", what);
    TSR_ENSURE(len <= CA_PEM_MAX_BYTES, TSR_E_LIMIT, "%s: larger than %d bytes", what,
               CA_PEM_MAX_BYTES);
    TSR_ENSURE((*out = malloc(len)) != NULL, TSR_E_INTERNAL, "out of memory");
    memcpy(*out, buf, len);
    *out_len = len;
    return 0;
}

/* Parse an identity: chain (leaf first) and its key; they must match. */
static int parse_identity(const uint8_t *cert, size_t cert_len, const uint8_t *key,
                          size_t key_len, X509 **leaf_out, STACK_OF(X509) **chain_out,
                          EVP_PKEY **key_out)
{
    int rc = -1;
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *pkey = NULL;
    X509 *leaf = NULL;

    TSR_TRY(ca_certs_from_pem(cert, cert_len, &chain));
    TSR_TRY(ca_key_from_pem(key, key_len, &pkey));
    leaf = sk_X509_shift(chain);
    TSR_TRY_ENSURE(leaf != NULL, TSR_E_INPUT, "client certificate file holds no certificate");
    TSR_TRY_ENSURE(X509_check_private_key(leaf, pkey) == 1, TSR_E_INPUT,
                   "client key does not match its certificate");
    ERR_clear_error();
    *leaf_out = leaf;
    *chain_out = chain;
    *key_out = pkey;
    leaf = NULL;
    chain = NULL;
    pkey = NULL;
    rc = 0;
out:
    ERR_clear_error();
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(pkey);
    return rc;
}

/* Swap in a new identity and bundle (each argument a fresh reference or
 * buffer). On success they belong to tls and are set to NULL; on failure
 * they stay the caller's. */
static int install(cl_tls *tls, X509 **leaf, STACK_OF(X509) **chain, EVP_PKEY **key,
                   uint8_t **bundle, size_t bundle_len)
{
    cl_tls_gen *g = NULL;
    TSR_GUARD(gen_new(tls, *leaf, *chain, *key, *bundle, bundle_len, &g));

    pthread_mutex_lock(&tls->lock);
    cl_tls_gen *old = tls->cur;
    tls->cur = g;
    tls->generation += old != NULL;
    X509 *oleaf = tls->leaf;
    STACK_OF(X509) *ochain = tls->chain;
    EVP_PKEY *okey = tls->key;
    uint8_t *obundle = tls->bundle_pem;
    tls->leaf = *leaf;
    tls->chain = *chain;
    tls->key = *key;
    tls->bundle_pem = *bundle;
    tls->bundle_len = bundle_len;
    pthread_mutex_unlock(&tls->lock);

    /* The new references now belong to tls; drop the old ones. */
    *leaf = NULL;
    *chain = NULL;
    *key = NULL;
    *bundle = NULL;
    X509_free(oleaf);
    sk_X509_pop_free(ochain, X509_free);
    EVP_PKEY_free(okey);
    free(obundle);
    cl_tls_gen_release(old);
    return 0;
}

int cl_tls_new(const cl_tls_config *cfg, cl_tls **out)
{
    int rc = -1;
    cl_tls *tls = NULL;
    uint8_t *cert = NULL, *key = NULL, *bundle = NULL;
    size_t cert_len = 0, key_len = 0, bundle_len = 0;
    X509 *leaf = NULL;
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *pkey = NULL;

    TSR_TRY_ENSURE(out != NULL && cfg != NULL, TSR_E_INPUT, "cl_tls_new: missing argument");
    *out = NULL;
    const char *td = cfg->trust_domain != NULL ? cfg->trust_domain : CL_TLS_DEFAULT_TRUST_DOMAIN;
    TSR_TRY(ca_trust_domain_validate(td, strlen(td)));
    bool has_cert = cfg->cert_file != NULL || cfg->cert_pem != NULL;
    bool has_key = cfg->key_file != NULL || cfg->key_pem != NULL;
    TSR_TRY_ENSURE(has_cert == has_key, TSR_E_INPUT,
                   "a client certificate needs its key (and a key its certificate)");
    TSR_TRY(read_pem(cfg->bundle_file, cfg->bundle_pem, cfg->bundle_pem_len, "trust bundle",
                     &bundle, &bundle_len));
    if (has_cert) {
        TSR_TRY(read_pem(cfg->cert_file, cfg->cert_pem, cfg->cert_pem_len, "client certificate",
                         &cert, &cert_len));
        TSR_TRY(read_pem(cfg->key_file, cfg->key_pem, cfg->key_pem_len, "client key", &key,
                         &key_len));
        TSR_TRY(parse_identity(cert, cert_len, key, key_len, &leaf, &chain, &pkey));
    }

    TSR_TRY_ENSURE((tls = calloc(1, sizeof *tls)) != NULL, TSR_E_INTERNAL, "out of memory");
    TSR_TRY_ENSURE(pthread_mutex_init(&tls->lock, NULL) == 0, TSR_E_INTERNAL, "mutex init");
    snprintf(tls->trust_domain, sizeof tls->trust_domain, "%s", td);
    tls->verify_host = cfg->verify_host;
    TSR_TRY(install(tls, &leaf, &chain, &pkey, &bundle, bundle_len));
    *out = tls;
    tls = NULL;
    rc = 0;
out:
    if (tls != NULL) {
        pthread_mutex_destroy(&tls->lock);
        free(tls);
    }
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(pkey);
    free(cert);
    if (key != NULL) ca_secret_free(key, key_len);
    free(bundle);
    return rc;
}

void cl_tls_free(cl_tls *tls)
{
    if (tls == NULL) return;
    cl_tls_gen_release(tls->cur);
    X509_free(tls->leaf);
    sk_X509_pop_free(tls->chain, X509_free);
    EVP_PKEY_free(tls->key);
    free(tls->bundle_pem);
    pthread_mutex_destroy(&tls->lock);
    free(tls);
}

/* The current bundle, copied under the lock. */
static int copy_bundle(cl_tls *tls, uint8_t **out, size_t *len)
{
    pthread_mutex_lock(&tls->lock);
    *len = tls->bundle_len;
    *out = malloc(tls->bundle_len);
    if (*out != NULL) memcpy(*out, tls->bundle_pem, tls->bundle_len);
    pthread_mutex_unlock(&tls->lock);
    TSR_ENSURE(*out != NULL, TSR_E_INTERNAL, "out of memory");
    return 0;
}

int cl_tls_reload(cl_tls *tls, const uint8_t *cert_pem, size_t cert_len, const uint8_t *key_pem,
                  size_t key_len)
{
    int rc = -1;
    X509 *leaf = NULL;
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *pkey = NULL;
    uint8_t *bundle = NULL;
    size_t bundle_len = 0;

    TSR_TRY_ENSURE(tls != NULL, TSR_E_INPUT, "cl_tls_reload: no context");
    TSR_TRY_ENSURE((cert_pem == NULL) == (key_pem == NULL), TSR_E_INPUT,
                   "a client certificate needs its key (and a key its certificate)");
    if (cert_pem != NULL) {
        TSR_TRY_ENSURE(cert_len <= CA_PEM_MAX_BYTES && key_len <= CA_PEM_MAX_BYTES, TSR_E_LIMIT,
                       "identity PEM larger than %d bytes", CA_PEM_MAX_BYTES);
        TSR_TRY(parse_identity(cert_pem, cert_len, key_pem, key_len, &leaf, &chain, &pkey));
    }
    TSR_TRY(copy_bundle(tls, &bundle, &bundle_len));
    TSR_TRY(install(tls, &leaf, &chain, &pkey, &bundle, bundle_len));
    rc = 0;
out:
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(pkey);
    free(bundle);
    return rc;
}

int cl_tls_reload_files(cl_tls *tls, const char *cert_file, const char *key_file)
{
    int rc = -1;
    uint8_t *cert = NULL, *key = NULL;
    size_t cert_len = 0, key_len = 0;

    TSR_TRY_ENSURE(cert_file != NULL && key_file != NULL, TSR_E_INPUT,
                   "cl_tls_reload_files: certificate and key files needed");
    TSR_TRY(tsr_read_file(cert_file, CA_PEM_MAX_BYTES, &cert, &cert_len));
    TSR_TRY(tsr_read_file(key_file, CA_PEM_MAX_BYTES, &key, &key_len));
    TSR_TRY(cl_tls_reload(tls, cert, cert_len, key, key_len));
    rc = 0;
out:
    free(cert);
    if (key != NULL) ca_secret_free(key, key_len);
    return rc;
}

int cl_tls_reload_bundle(cl_tls *tls, const uint8_t *bundle_pem, size_t len)
{
    int rc = -1;
    X509 *leaf = NULL;
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *pkey = NULL;
    uint8_t *bundle = NULL;

    TSR_TRY_ENSURE(tls != NULL && bundle_pem != NULL && len > 0, TSR_E_INPUT,
                   "cl_tls_reload_bundle: no bundle");
    TSR_TRY_ENSURE(len <= CA_PEM_MAX_BYTES, TSR_E_LIMIT, "trust bundle larger than %d bytes",
                   CA_PEM_MAX_BYTES);
    TSR_TRY_ENSURE((bundle = malloc(len)) != NULL, TSR_E_INTERNAL, "out of memory");
    memcpy(bundle, bundle_pem, len);
    /* Keep the current identity: take new references to it. */
    pthread_mutex_lock(&tls->lock);
    if (tls->leaf != NULL) {
        leaf = tls->leaf;
        X509_up_ref(leaf);
        chain = X509_chain_up_ref(tls->chain);
        pkey = tls->key;
        EVP_PKEY_up_ref(pkey);
    }
    pthread_mutex_unlock(&tls->lock);
    TSR_TRY_ENSURE(leaf == NULL || chain != NULL, TSR_E_INTERNAL, "out of memory");
    TSR_TRY(install(tls, &leaf, &chain, &pkey, &bundle, len));
    rc = 0;
out:
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(pkey);
    free(bundle);
    return rc;
}

const char *cl_tls_trust_domain(const cl_tls *tls)
{
    return tls->trust_domain;
}

bool cl_tls_has_identity(cl_tls *tls)
{
    pthread_mutex_lock(&tls->lock);
    bool has = tls->leaf != NULL;
    pthread_mutex_unlock(&tls->lock);
    return has;
}

uint64_t cl_tls_generation(cl_tls *tls)
{
    pthread_mutex_lock(&tls->lock);
    uint64_t g = tls->generation;
    pthread_mutex_unlock(&tls->lock);
    return g;
}
