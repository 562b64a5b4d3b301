#include "gw_tls.h"

#include <openssl/err.h>
#include <openssl/x509.h>
#include <string.h>

#include "ca_pem.h"
#include "ca_tls.h"
#include "gw_tls_libctx.h"

static const unsigned char session_id_ctx[] = "tessera-gateway";

/* One full chain verification per handshake, and it is the application's.
 *
 * OpenSSL's own chain building and verification is skipped here: the
 * `authenticate` hook verifies the chain itself (the gateway: ca_verify_peer
 * in gw_principal.c, which is also what verifies a certificate forwarded by a
 * proxy, gw_forward.c). Chosen over the other way round (keep OpenSSL's
 * verification and apply only the X509-SVID profile rules to its chain)
 * because ca_verify_peer must exist anyway for forwarded certificates and
 * is the one place that holds all the rules (X509_STRICT, purpose,
 * depth and intermediate caps, the trust of the current PKI snapshot, then
 * the SVID profile, revocation, notAfter); a second configuration of the
 * same checks in the SSL_CTX would have to be kept identical to it, and
 * OpenSSL's verdict was never used by the gateway anyway: verifying twice
 * cost ~15% of a handshake (docs/performance.md).
 *
 * So that nothing can mistake this for a verified chain, the verdict left
 * in SSL_get_verify_result() is X509_V_ERR_APPLICATION_VERIFICATION, never
 * X509_V_OK. Proof of possession of the leaf's key is unaffected: OpenSSL
 * still checks the client's CertificateVerify with the leaf's public key. */
static int app_verifies_chain(X509_STORE_CTX *ctx, void *arg)
{
    (void)arg;
    X509_STORE_CTX_set_error(ctx, X509_V_ERR_APPLICATION_VERIFICATION);
    return 1;
}

/* A ClientHello without the ALPN extension never reaches the ALPN select
 * callback; refuse it here with the same alert. */
static int client_hello_cb(SSL *s, int *al, void *arg)
{
    (void)arg;
    const unsigned char *ext = NULL;
    size_t extlen = 0;
    if (SSL_client_hello_get0_ext(s, TLSEXT_TYPE_application_layer_protocol_negotiation, &ext,
                                  &extlen) != 1) {
        *al = SSL_AD_NO_APPLICATION_PROTOCOL;
        ERR_raise_data(ERR_LIB_SSL, SSL_R_NO_APPLICATION_PROTOCOL, "client offered no ALPN");
        return SSL_CLIENT_HELLO_ERROR;
    }
    return SSL_CLIENT_HELLO_SUCCESS;
}

/* Walk the client's protocol list (untrusted: each entry is a length byte and
 * that many bytes, all within `inlen`) and select "h2" if present. */
static int alpn_select_cb(SSL *s, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)s;
    (void)arg;
    unsigned int i = 0;
    while (i < inlen) {
        unsigned int n = in[i];
        if (n == 0 || n > inlen - i - 1) break;  /* malformed: refuse */
        if (n == 2 && in[i + 1] == 'h' && in[i + 2] == '2') {
            *out = in + i + 1;
            *outlen = 2;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + n;
    }
    /* OpenSSL sends no_application_protocol for ALERT_FATAL here. */
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

int gw_tls_alpn_is_h2(const SSL *ssl)
{
    const unsigned char *p = NULL;
    unsigned int n = 0;
    SSL_get0_alpn_selected(ssl, &p, &n);
    return p != NULL && n == 2 && p[0] == 'h' && p[1] == '2';
}

/* The subjects of the trust anchors, sent in the CertificateRequest so that
 * clients holding several certificates pick one of ours. */
static int set_client_ca_names(SSL_CTX *ctx, X509_STORE *store)
{
    int rc = -1;
    STACK_OF(X509) *certs = NULL;
    STACK_OF(X509_NAME) *names = NULL;

    TSR_TRY_ENSURE((certs = X509_STORE_get1_all_certs(store)) != NULL, TSR_E_INTERNAL,
                   "cannot list the client trust store");
    TSR_TRY_ENSURE((names = sk_X509_NAME_new_null()) != NULL, TSR_E_INTERNAL, "out of memory");
    for (int i = 0; i < sk_X509_num(certs); i++) {
        X509_NAME *n = X509_NAME_dup(X509_get_subject_name(sk_X509_value(certs, i)));
        TSR_TRY_ENSURE(n != NULL, TSR_E_INTERNAL, "out of memory");
        if (sk_X509_NAME_push(names, n) <= 0) {
            X509_NAME_free(n);
            (void)TSR_FAIL(TSR_E_INTERNAL, "out of memory");
            goto out;
        }
    }
    TSR_TRY_ENSURE(sk_X509_NAME_num(names) > 0, TSR_E_INPUT,
                   "client trust store holds no certificates");
    SSL_CTX_set_client_CA_list(ctx, names);  /* takes ownership */
    names = NULL;
    rc = 0;
out:
    sk_X509_NAME_pop_free(names, X509_NAME_free);
    sk_X509_pop_free(certs, X509_free);
    return rc;
}

int gw_tls_ctx_new(const gw_tls_config *cfg, SSL_CTX **out)
{
    int rc = -1;
    SSL_CTX *ctx = NULL;
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *key = NULL;
    X509 *leaf = NULL;

    *out = NULL;
    TSR_TRY_ENSURE(cfg != NULL && cfg->cert_file != NULL && cfg->key_file != NULL &&
                       cfg->client_trust != NULL,
                   TSR_E_INPUT, "TLS config needs cert_file, key_file and client_trust");
    OSSL_LIB_CTX *libctx = NULL;
    TSR_TRY(gw_tls_libctx(&libctx));
    TSR_TRY_ENSURE((ctx = SSL_CTX_new_ex(libctx, NULL, TLS_server_method())) != NULL,
                   TSR_E_INTERNAL, "SSL_CTX_new failed");

    /* The policy both ends share (ca_tls.h), then what only a server sets. */
    TSR_TRY(ca_tls_policy_apply(ctx));
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_QUERY_MTU |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* No resumption of any kind: no stateless tickets (TLS 1.2 and 1.3), no
     * server-side cache, no TLS 1.3 tickets issued after the handshake. */
    TSR_TRY_OSSL(SSL_CTX_set_num_tickets(ctx, 0), TSR_E_INTERNAL, "cannot disable tickets");
    TSR_TRY_OSSL(SSL_CTX_set_session_id_context(ctx, session_id_ctx, sizeof session_id_ctx - 1),
                 TSR_E_INTERNAL, "cannot set the session id context");
    SSL_CTX_set_max_early_data(ctx, 0);
    /* Partial writes + moving buffer: the transport drains its own output
     * buffer; release buffers so idle connections stay small. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    /* Read what TCP has, not a record header and then its body: one read(2)
     * for the records that arrived together instead of two per record (the
     * transport handles all buffered input: SSL_has_pending). */
    SSL_CTX_set_read_ahead(ctx, 1);

    /* Server certificate chain and key, read with the bounded PEM loaders. */
    TSR_TRY(ca_certs_load_file(cfg->cert_file, &chain));
    TSR_TRY(ca_key_load_file(cfg->key_file, &key));
    leaf = sk_X509_shift(chain);
    TSR_TRY_OSSL(SSL_CTX_use_cert_and_key(ctx, leaf, key, chain, 1), TSR_E_INPUT,
                 "server certificate and key do not match (%s)", cfg->cert_file);
    TSR_TRY_OSSL(SSL_CTX_check_private_key(ctx), TSR_E_INPUT,
                 "server key does not match its certificate");

    /* Client certificates: requested, optional, never fatal at handshake,
     * verified once, by the application (app_verifies_chain). The trust
     * store only names the acceptable CAs in the CertificateRequest. */
    TSR_TRY(set_client_ca_names(ctx, cfg->client_trust));
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_cert_verify_callback(ctx, app_verifies_chain, NULL);

    /* ALPN h2 only. */
    SSL_CTX_set_client_hello_cb(ctx, client_hello_cb, NULL);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, NULL);

    *out = ctx;
    ctx = NULL;
    rc = 0;
out:
    X509_free(leaf);
    EVP_PKEY_free(key);
    sk_X509_pop_free(chain, X509_free);
    SSL_CTX_free(ctx);
    return rc;
}
