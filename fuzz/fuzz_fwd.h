/* Forwarded client certificates as a proxy writes them (fuzz_forward,
 * fuzz_h2_session): a decoded header's leaf re-signed by the fixed issuing CA
 * and the value encoded again, so that a mutated certificate reaches the
 * verification with a valid signature. */
#ifndef TSR_FUZZ_FWD_H
#define TSR_FUZZ_FWD_H

#include <openssl/err.h>
#include <string.h>

#include "fuzz/fuzz_pki.h"
#include "gw_config.h"

/* Everything but [A-Za-z0-9-._~] as %XX, as nginx's $ssl_client_escaped_cert. */
static inline void fuzz_buf_put_escaped(fuzz_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            fuzz_buf_put(b, &s[i], 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            fuzz_buf_put(b, e, 3);
        }
    }
}

static inline void fuzz_buf_put_certs(fuzz_buf *b, STACK_OF(X509) *certs)
{
    char *pem = NULL;
    size_t len = 0;
    FUZZ_CHECK(ca_certs_to_pem(certs, &pem, &len) == 0);
    fuzz_buf_put_escaped(b, pem, len);
    free(pem);
}

/* certs[0] re-signed by the fixed issuing CA (keep_aki: its
 * authorityKeyIdentifier as it was), the issuing CA inserted after it when
 * add_issuing, then the value for `certs` in `format` as a proxy writes it
 * (xfcc: Chain, with Cert too when add_issuing; Cert only when cert_only). */
static inline void fuzz_fwd_reencode(const fuzz_pki *pki, STACK_OF(X509) *certs,
                                     enum gw_forward_format format, bool keep_aki,
                                     bool add_issuing, bool cert_only, fuzz_buf *out)
{
    (void)fuzz_resign_leaf(pki, sk_X509_value(certs, 0), keep_aki);
    ERR_clear_error();
    if (add_issuing) {
        X509_up_ref(pki->issuing->cert);
        if (sk_X509_insert(certs, pki->issuing->cert, 1) <= 0) X509_free(pki->issuing->cert);
    }
    if (format == GW_FORWARD_ESCAPED_PEM) {
        fuzz_buf_put_certs(out, certs);
        return;
    }
    STACK_OF(X509) *leaf = sk_X509_new_null();
    FUZZ_CHECK(leaf != NULL && sk_X509_push(leaf, sk_X509_value(certs, 0)) > 0);
    fuzz_buf_puts(out, "By=spiffe://tessera.local/gateway;Hash=00ff");
    if (cert_only || add_issuing) {
        fuzz_buf_puts(out, ";Cert=\"");
        fuzz_buf_put_certs(out, leaf);
        fuzz_buf_puts(out, "\"");
    }
    if (!cert_only) {
        fuzz_buf_puts(out, ";Chain=\"");
        fuzz_buf_put_certs(out, certs);
        fuzz_buf_puts(out, "\"");
    }
    fuzz_buf_puts(out, ";Subject=\"\";URI=spiffe://tessera.local/user/alice");
    sk_X509_free(leaf);
}

#endif
