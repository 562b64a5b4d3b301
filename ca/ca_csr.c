/* Certificate signing requests: the bytes come from a sandbox (RenewCertificate),
 * so they are parsed bounded and exactly, the self-signature is the proof of
 * possession, and nothing in the request decides the identity: the caller
 * supplies it, and no CSR extension or subject is ever copied. */
#include "ca_issue.h"

#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdbool.h>
#include <string.h>

/* Untrusted bytes for an error message: printable ASCII, the rest as \xNN,
 * at most ~120 bytes of input. */
static void escape_for_message(const unsigned char *data, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 5 < cap; i++) {
        if (i == 120) {
            o += (size_t)snprintf(out + o, cap - o, "...");
            break;
        }
        unsigned char c = data[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
    }
    out[o < cap ? o : cap - 1] = '\0';
}

static int csr_parse(const uint8_t *der, size_t len, X509_REQ **out)
{
    TSR_ENSURE(der != NULL && len > 0, TSR_E_INPUT, "empty CSR");
    TSR_ENSURE(len <= CA_CSR_MAX_DER, TSR_E_INPUT, "CSR of %zu bytes exceeds the %d-byte limit",
               len, CA_CSR_MAX_DER);
    int rc = -1;
    STACK_OF(X509_EXTENSION) *exts = NULL;
    const unsigned char *p = der;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)len);
    if (req == NULL) return TSR_FAIL_OSSL(TSR_E_INPUT, "CSR is not a DER PKCS#10 request");
    TSR_TRY_ENSURE(p == der + len, TSR_E_INPUT, "%zu trailing bytes after the CSR",
                   (size_t)(der + len - p));
    TSR_TRY_ENSURE(X509_REQ_get_version(req) == X509_REQ_VERSION_1, TSR_E_INPUT,
                   "unsupported CSR version %ld", X509_REQ_get_version(req));
    /* Count caps before any signature work: 16 KiB is room for thousands of
     * empty extensions, attributes or name entries. */
    int n_attrs = X509_REQ_get_attr_count(req);
    TSR_TRY_ENSURE(n_attrs <= CA_CSR_MAX_ATTRIBUTES, TSR_E_INPUT,
                   "CSR carries %d attributes (at most %d)", n_attrs, CA_CSR_MAX_ATTRIBUTES);
    int n_names = X509_NAME_entry_count(X509_REQ_get_subject_name(req));
    TSR_TRY_ENSURE(n_names <= CA_CSR_MAX_SUBJECT_ENTRIES, TSR_E_INPUT,
                   "CSR subject has %d entries (at most %d)", n_names, CA_CSR_MAX_SUBJECT_ENTRIES);
    exts = X509_REQ_get_extensions(req);
    int n_exts = exts != NULL ? sk_X509_EXTENSION_num(exts) : 0;
    TSR_TRY_ENSURE(n_exts <= CA_CSR_MAX_EXTENSIONS, TSR_E_INPUT,
                   "CSR requests %d extensions (at most %d)", n_exts, CA_CSR_MAX_EXTENSIONS);
    EVP_PKEY *key = X509_REQ_get0_pubkey(req);
    TSR_TRY_ENSURE(key != NULL, TSR_E_INPUT, "the CSR's public key does not parse");
    /* Key first: refusing an unaccepted key is cheaper than verifying with it. */
    TSR_TRY(ca_key_check_accepted(key));
    TSR_TRY_ENSURE(X509_REQ_verify(req, key) == 1, TSR_E_INPUT,
                   "CSR signature does not verify (no proof of possession)");
    *out = req;
    req = NULL;
    rc = 0;
out:
    ERR_clear_error();
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(req);
    return rc;
}

int ca_csr_check(const uint8_t *der, size_t len, EVP_PKEY **pubkey_out)
{
    X509_REQ *req = NULL;
    TSR_GUARD(csr_parse(der, len, &req));
    EVP_PKEY *key = X509_REQ_get_pubkey(req); /* a new reference */
    X509_REQ_free(req);
    TSR_ENSURE(key != NULL, TSR_E_INTERNAL, "CSR public key");
    *pubkey_out = key;
    return 0;
}

/* Any URI SAN the CSR asks for must be exactly the caller's ID. The request's
 * extensions are read only for this check; none goes into the certificate. */
static int check_requested_identity(X509_REQ *req, const char *spiffe_id)
{
    int rc = -1, count = 0, loc = -1;
    STACK_OF(X509_EXTENSION) *exts = NULL;
    GENERAL_NAMES *names = NULL;
    static const int ext_req_nids[] = {NID_ext_req, NID_ms_ext_req};
    for (size_t i = 0; i < sizeof ext_req_nids / sizeof ext_req_nids[0]; i++) {
        int idx = -1;
        while ((idx = X509_REQ_get_attr_by_NID(req, ext_req_nids[i], idx)) >= 0) {
            count++;
            loc = idx;
        }
    }
    if (count == 0) return 0;
    /* OpenSSL reads only the first; an attacker could hide a second one. */
    TSR_TRY_ENSURE(count == 1 && X509_ATTRIBUTE_count(X509_REQ_get_attr(req, loc)) == 1,
                   TSR_E_INPUT, "CSR carries more than one extension request");
    exts = X509_REQ_get_extensions(req);
    TSR_TRY_ENSURE(exts != NULL, TSR_E_INPUT, "the CSR's extension request does not parse");
    size_t id_len = strlen(spiffe_id);
    for (int i = 0; i < sk_X509_EXTENSION_num(exts); i++) {
        X509_EXTENSION *ext = sk_X509_EXTENSION_value(exts, i);
        if (OBJ_obj2nid(X509_EXTENSION_get_object(ext)) != NID_subject_alt_name) continue;
        names = X509V3_EXT_d2i(ext);
        TSR_TRY_ENSURE(names != NULL, TSR_E_INPUT, "the CSR's subjectAltName does not parse");
        for (int j = 0; j < sk_GENERAL_NAME_num(names); j++) {
            const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, j);
            if (gn->type != GEN_URI) continue;
            const ASN1_IA5STRING *uri = gn->d.uniformResourceIdentifier;
            int n = ASN1_STRING_length(uri);
            const unsigned char *data = ASN1_STRING_get0_data(uri);
            if (n >= 0 && (size_t)n == id_len && memcmp(data, spiffe_id, id_len) == 0) continue;
            char shown[128 * 4 + 8];
            escape_for_message(data, n > 0 ? (size_t)n : 0, shown, sizeof shown);
            TSR_TRY_ENSURE(0, TSR_E_INPUT,
                           "CSR requests URI SAN \"%s\" but the caller's identity is %s", shown,
                           spiffe_id);
        }
        GENERAL_NAMES_free(names);
        names = NULL;
    }
    rc = 0;
out:
    ERR_clear_error();
    GENERAL_NAMES_free(names);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return rc;
}

static int sign_csr(const ca_issuer *issuer, const uint8_t *der, size_t len,
                    const char *spiffe_id, int64_t ttl_seconds, int64_t now, bool unparsed,
                    X509 **out)
{
    int rc = -1;
    X509_REQ *req = NULL;
    TSR_TRY_ENSURE(spiffe_id != NULL, TSR_E_INPUT, "no SPIFFE ID for the certificate");
    TSR_TRY(csr_parse(der, len, &req));
    TSR_TRY(check_requested_identity(req, spiffe_id));
    ca_leaf_request leaf = {
        .spiffe_id = spiffe_id,
        .public_key = X509_REQ_get0_pubkey(req),
        .spki = X509_REQ_get_X509_PUBKEY(req),
        .unparsed = unparsed,
        .ttl_seconds = ttl_seconds,
        .now = now,
    };
    TSR_TRY(ca_issue_leaf(issuer, &leaf, out));
    rc = 0;
out:
    X509_REQ_free(req);
    return rc;
}

int ca_sign_csr(const ca_issuer *issuer, const uint8_t *der, size_t len, const char *spiffe_id,
                int64_t ttl_seconds, int64_t now, X509 **out)
{
    return sign_csr(issuer, der, len, spiffe_id, ttl_seconds, now, false, out);
}

int ca_sign_csr_unparsed(const ca_issuer *issuer, const uint8_t *der, size_t len,
                         const char *spiffe_id, int64_t ttl_seconds, int64_t now, X509 **out)
{
    return sign_csr(issuer, der, len, spiffe_id, ttl_seconds, now, true, out);
}
