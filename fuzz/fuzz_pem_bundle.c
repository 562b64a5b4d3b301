/* PEM as the gateway and certgen read it: a certificate list
 * (ca_certs_from_pem), a trust bundle (ca_trust_from_pem) and a private key
 * (ca_key_from_pem), all on the same bytes.
 *
 * Two input forms. PEM text as it is (any first byte but 0x00). Or, since
 * mutated base64 rarely decodes, raw DER that the harness wraps:
 *   [0x00][flags] ([u16 len][DER])*
 * every DER becomes a CERTIFICATE block, in order; the first one is also
 * wrapped as a key of the label flags bits 0-1 pick (PRIVATE KEY, EC PRIVATE
 * KEY, RSA PRIVATE KEY, ENCRYPTED PRIVATE KEY). flags bit 2: 76-column base64
 * lines (else 64); bit 3: CRLF line ends; bit 4: a blank line between blocks.
 *
 * Invariants: a parsed list holds exactly the CERTIFICATE blocks of the
 * input and nothing was skipped (one BEGIN and one END line per
 * certificate); it survives a write/read round trip unchanged; a bundle
 * loads only if its certificates do; a parsed key round-trips to an equal
 * key. For wrapped DER: the list loads exactly when every DER is a
 * certificate ca_cert_from_der accepts (one DER reader, whatever the
 * transport), and holds those certificates in order. */
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <string.h>

#include "ca_issue.h"
#include "ca_pem.h"
#include "ca_verify.h"
#include "fuzz/fuzz.h"

static size_t count(const uint8_t *p, size_t len, const char *needle)
{
    size_t n = strlen(needle), c = 0;
    for (size_t i = 0; i + n <= len; i++) c += memcmp(p + i, needle, n) == 0;
    return c;
}

#define MAX_BLOCKS (CA_PEM_MAX_CERTS + 2)

/* The DER blocks a wrapped input carries. */
typedef struct der_list {
    fuzz_in der[MAX_BLOCKS];
    size_t n;
} der_list;

static void certs(const uint8_t *data, size_t size, const der_list *wrapped)
{
    STACK_OF(X509) *list = NULL;
    int rc = ca_certs_from_pem(data, size, &list);
    ca_trust *trust = NULL;
    if (ca_trust_from_pem(data, size, "tessera.local", &trust) == 0) {
        FUZZ_CHECK(rc == 0);
        FUZZ_CHECK(ca_trust_store(trust) != NULL);
        FUZZ_CHECK(strcmp(ca_trust_domain(trust), "tessera.local") == 0);
    }
    ca_trust_free(trust);
    if (wrapped != NULL) {
        /* The reference: each block through the DER reader on its own. */
        bool all = wrapped->n >= 1 && wrapped->n <= CA_PEM_MAX_CERTS;
        if (rc == 0) FUZZ_CHECK(sk_X509_num(list) == (int)wrapped->n);
        for (size_t i = 0; all && i < wrapped->n; i++) {
            X509 *c = NULL;
            all = ca_cert_from_der(wrapped->der[i].p, wrapped->der[i].len, &c) == 0;
            if (all && rc == 0) FUZZ_CHECK(X509_cmp(c, sk_X509_value(list, (int)i)) == 0);
            X509_free(c);
        }
        FUZZ_CHECK((rc == 0) == all);
    }
    if (rc != 0) return;

    int n = sk_X509_num(list);
    FUZZ_CHECK(n >= 1 && n <= CA_PEM_MAX_CERTS);
    FUZZ_CHECK(count(data, size, "-----BEGIN ") == (size_t)n);
    FUZZ_CHECK(count(data, size, "-----END ") == (size_t)n);

    char *pem = NULL;
    size_t len = 0;
    FUZZ_CHECK(ca_certs_to_pem(list, &pem, &len) == 0);
    STACK_OF(X509) *again = NULL;
    FUZZ_CHECK(ca_certs_from_pem((const uint8_t *)pem, len, &again) == 0);
    FUZZ_CHECK(sk_X509_num(again) == n);
    for (int i = 0; i < n; i++) {
        X509 *a = sk_X509_value(list, i), *b = sk_X509_value(again, i);
        FUZZ_CHECK(X509_cmp(a, b) == 0);
        char serial[41], fp[96];
        if (ca_cert_serial_hex(a, serial) == 0) FUZZ_CHECK(strlen(serial) <= 40);
        FUZZ_CHECK(ca_cert_fingerprint(a, fp) == 0 && strlen(fp) == 95);
        int64_t nb, na;
        FUZZ_IGNORE(ca_cert_validity(a, &nb, &na));
    }
    free(pem);
    sk_X509_pop_free(again, X509_free);
    sk_X509_pop_free(list, X509_free);
}

static void key(const uint8_t *data, size_t size)
{
    EVP_PKEY *k = NULL;
    if (ca_key_from_pem(data, size, &k) != 0) return;
    char desc[64];
    ca_key_describe(k, desc, sizeof desc);
    FUZZ_CHECK(strlen(desc) < sizeof desc);
    FUZZ_IGNORE(ca_key_check_accepted(k));
    char *pem = NULL;
    size_t len = 0;
    if (ca_key_to_pem(k, &pem, &len) == 0) {
        EVP_PKEY *k2 = NULL;
        FUZZ_CHECK(ca_key_from_pem((const uint8_t *)pem, len, &k2) == 0);
        FUZZ_CHECK(EVP_PKEY_eq(k, k2) == 1);
        EVP_PKEY_free(k2);
        ca_secret_free(pem, len);
    }
    EVP_PKEY_free(k);
}

/* One PEM block of `label` around `der`, as flags say. */
static void wrap(fuzz_buf *t, const char *label, fuzz_in der, uint8_t flags)
{
    const char *eol = (flags & 8) ? "\r\n" : "\n";
    size_t width = (flags & 4) ? 76 : 64;  /* base64 characters per line */
    fuzz_buf_puts(t, "-----BEGIN ");
    fuzz_buf_puts(t, label);
    fuzz_buf_puts(t, "-----");
    fuzz_buf_puts(t, eol);
    unsigned char b64[4 * 57 / 3 + 1];       /* one 76-column line */
    for (size_t off = 0; off < der.len;) {
        size_t n = der.len - off < width / 4 * 3 ? der.len - off : width / 4 * 3;
        int w = EVP_EncodeBlock(b64, der.p + off, (int)n);
        fuzz_buf_put(t, b64, (size_t)w);
        fuzz_buf_puts(t, eol);
        off += n;
    }
    fuzz_buf_puts(t, "-----END ");
    fuzz_buf_puts(t, label);
    fuzz_buf_puts(t, "-----");
    fuzz_buf_puts(t, eol);
    if (flags & 16) fuzz_buf_puts(t, eol);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || data[0] != 0x00) {
        certs(data, size, NULL);
        key(data, size);
        return 0;
    }
    fuzz_in in = {data + 1, size - 1};
    uint8_t flags = fuzz_u8(&in);
    der_list list = {.n = 0};
    while (in.len > 0 && list.n < MAX_BLOCKS) list.der[list.n++] = fuzz_lp16(&in);
    fuzz_buf t = {NULL, 0, 0};
    for (size_t i = 0; i < list.n; i++) wrap(&t, "CERTIFICATE", list.der[i], flags);
    if (t.p != NULL) certs(t.p, t.len, &list);
    free(t.p);

    static const char *const labels[] = {"PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY",
                                         "ENCRYPTED PRIVATE KEY"};
    if (list.n > 0) {
        fuzz_buf k = {NULL, 0, 0};
        wrap(&k, labels[flags & 3], list.der[0], flags);
        key(k.p, k.len);
        free(k.p);
    }
    return 0;
}
