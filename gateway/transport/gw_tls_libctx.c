/* The library context the server's TLS runs in (see gw_tls_libctx.h).
 *
 * Why (docs/performance.md, "Handshakes"): OpenSSL 3.0 decodes the public
 * key of every certificate a client sends while it parses the Certificate
 * message (d2i_X509 in tls_process_client_certificate), and each decode
 * builds a decoder chain from scratch: OSSL_DECODER_CTX_new_for_pkey walks
 * every key manager and every decoder of the library context, and each such
 * walk first copies every algorithm of the context's method store. With the
 * default provider that is 210 algorithms and 40 decoders, twice per
 * handshake (leaf and issuing CA): 28% of a server handshake's instructions
 * (callgrind), more than the three ECDSA verifications together.
 *
 * So the SSL_CTX gets its own library context holding one provider,
 * "tessera-tls", which is the default provider seen through a filter: it
 * hands out the default provider's own algorithm tables (same functions,
 * same provider context, so the same implementations run) but only the
 * entries a TLS 1.2/1.3 server with gw_tls.c's settings can reach:
 *
 *   digests SHA-1 (certificate fingerprints) and SHA-2; the three AEAD
 *   ciphers of our suites; HMAC; the TLS KDFs; a DRBG and its seed source;
 *   key management, key exchange and signatures for our groups and for
 *   every key type a client certificate can sign a CertificateVerify with,
 *   so that every such certificate decodes and verifies exactly as before;
 *   of the 40 decoders, those that read a DER SubjectPublicKeyInfo of those
 *   types (the only thing decoded in a handshake); no encoder, no store
 *   loader: 28 algorithms and 6 decoders in all.
 *
 * Nothing about what is checked changes: the same implementations verify
 * the same signatures; the peer's chain is verified by ca_verify_peer in the
 * default library context as before. An algorithm left out simply does not
 * exist for TLS: a suite or group we never configure. The filtered
 * provider's context is the default provider's own (loaded once into a
 * private base context that lives as long as the process), which is what
 * its functions expect; the filter has nothing to tear down. */
#include "gw_tls_libctx.h"

#include <openssl/core_dispatch.h>
#include <openssl/err.h>
#include <openssl/provider.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Per operation, the algorithms let through, by the first name of each
 * one's name list. Key types: the groups we configure (X25519, EC) and every
 * type a client certificate may carry and sign a CertificateVerify with
 * (EC, Ed25519, Ed448, RSA, RSA-PSS, DSA in TLS 1.2). Not SM2: OpenSSL 3.0's
 * TLS has no SM2 signature algorithm, and with an SM2 key manager present
 * every EC key is decoded twice (SM2 shares EC's OID, so both decoders try
 * it). */
static const char *const digests[] = {"SHA1", "SHA2-224", "SHA2-256", "SHA2-384", "SHA2-512",
                                      NULL};
static const char *const ciphers[] = {"AES-128-GCM", "AES-256-GCM", "ChaCha20-Poly1305", NULL};
static const char *const macs[] = {"HMAC", NULL};
static const char *const kdfs[] = {"HKDF", "TLS13-KDF", "TLS1-PRF", NULL};
static const char *const rands[] = {"CTR-DRBG", "SEED-SRC", NULL};
static const char *const keytypes[] = {"EC", "X25519", "ED25519", "ED448", "RSA", "RSA-PSS",
                                       "DSA", NULL};
static const char *const kex[] = {"ECDH", "X25519", NULL};
static const char *const sigs[] = {"ECDSA", "ED25519", "ED448", "RSA", "DSA", NULL};
/* Decoders: from a DER SubjectPublicKeyInfo straight to one of keytypes.
 * Not the default provider's "DER" step that reads the algorithm first: it
 * decodes the whole key only to name its type (which OpenSSL already passes
 * in, from the certificate's algorithm OID), so every key was decoded twice. */
static const char *const spki_decoders[] = {"EC", "ED25519", "ED448", "RSA", "RSA-PSS", "DSA",
                                            NULL};

struct op_rule {
    int op;
    const char *const *names;
    int spki_only;
};

static const struct op_rule rules[] = {
    {OSSL_OP_DIGEST, digests, 0},   {OSSL_OP_CIPHER, ciphers, 0},
    {OSSL_OP_MAC, macs, 0},         {OSSL_OP_KDF, kdfs, 0},
    {OSSL_OP_RAND, rands, 0},       {OSSL_OP_KEYMGMT, keytypes, 0},
    {OSSL_OP_KEYEXCH, kex, 0},      {OSSL_OP_SIGNATURE, sigs, 0},
    {OSSL_OP_DECODER, spki_decoders, 1},
};

static struct {
    OSSL_LIB_CTX *base;       /* holds the default provider */
    OSSL_PROVIDER *dflt;
    OSSL_LIB_CTX *tls;        /* holds "tessera-tls" */
    OSSL_PROVIDER *filter;
    OSSL_ALGORITHM *algs[OSSL_OP__HIGHEST + 1];   /* NULL-terminated tables */
    int failed;
} g;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* The first name of "A:B:C" is exactly `name`. */
static int first_name_is(const char *names, const char *name)
{
    size_t n = strlen(name);
    return strncmp(names, name, n) == 0 && (names[n] == '\0' || names[n] == ':');
}

/* A decoder from a DER SubjectPublicKeyInfo (to a key, or to the
 * type-specific form the key decoders read next). */
static int spki_decoder(const OSSL_ALGORITHM *a)
{
    const char *p = a->property_definition;
    return p != NULL && strstr(p, "input=der") != NULL &&
           strstr(p, "structure=SubjectPublicKeyInfo") != NULL;
}

static int passes(const struct op_rule *r, const OSSL_ALGORITHM *a)
{
    if (r->spki_only && !spki_decoder(a)) return 0;
    for (const char *const *n = r->names; *n != NULL; n++)
        if (first_name_is(a->algorithm_names, *n)) return 1;
    return 0;
}

static int build_tables(void)
{
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
        const struct op_rule *r = &rules[i];
        int no_cache = 0;
        const OSSL_ALGORITHM *all = OSSL_PROVIDER_query_operation(g.dflt, r->op, &no_cache);
        size_t n = 0, kept = 0;
        for (const OSSL_ALGORITHM *a = all; a != NULL && a->algorithm_names != NULL; a++) n++;
        OSSL_ALGORITHM *t = calloc(n + 1, sizeof *t);
        if (t == NULL) return -1;
        for (size_t j = 0; j < n; j++)
            if (passes(r, &all[j])) t[kept++] = all[j];
        g.algs[r->op] = t;   /* the terminator is the zeroed entry */
    }
    return 0;
}

/* ---- the filtering provider ---------------------------------------------- */

static const OSSL_ALGORITHM *filter_query(void *provctx, int op, int *no_cache)
{
    (void)provctx;
    *no_cache = 0;
    if (op < 0 || op > OSSL_OP__HIGHEST) return NULL;
    const OSSL_ALGORITHM *t = g.algs[op];
    return t != NULL && t->algorithm_names != NULL ? t : NULL;
}

static int filter_get_capabilities(void *provctx, const char *capability,
                                   OSSL_CALLBACK *cb, void *arg)
{
    (void)provctx;
    /* TLS-GROUP (and any other) as the default provider reports them. */
    return OSSL_PROVIDER_get_capabilities(g.dflt, capability, cb, arg);
}

static const OSSL_PARAM *filter_gettable_params(void *provctx)
{
    (void)provctx;
    return OSSL_PROVIDER_gettable_params(g.dflt);
}

static int filter_get_params(void *provctx, OSSL_PARAM params[])
{
    (void)provctx;
    return OSSL_PROVIDER_get_params(g.dflt, params);
}

static void filter_teardown(void *provctx)
{
    (void)provctx;   /* the default provider's context: the base context owns it */
}

typedef void (*gw_fn)(void);
static const OSSL_DISPATCH filter_dispatch[] = {
    {OSSL_FUNC_PROVIDER_QUERY_OPERATION, (gw_fn)filter_query},
    {OSSL_FUNC_PROVIDER_GET_CAPABILITIES, (gw_fn)filter_get_capabilities},
    {OSSL_FUNC_PROVIDER_GETTABLE_PARAMS, (gw_fn)filter_gettable_params},
    {OSSL_FUNC_PROVIDER_GET_PARAMS, (gw_fn)filter_get_params},
    {OSSL_FUNC_PROVIDER_TEARDOWN, (gw_fn)filter_teardown},
    {0, NULL},
};

static int filter_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                       const OSSL_DISPATCH **out, void **provctx)
{
    (void)handle;
    (void)in;
    *out = filter_dispatch;
    *provctx = OSSL_PROVIDER_get0_provider_ctx(g.dflt);
    return *provctx != NULL;
}

static void setup(void)
{
    g.failed = 1;
    if ((g.base = OSSL_LIB_CTX_new()) == NULL ||
        (g.dflt = OSSL_PROVIDER_load(g.base, "default")) == NULL || build_tables() != 0 ||
        (g.tls = OSSL_LIB_CTX_new()) == NULL ||
        OSSL_PROVIDER_add_builtin(g.tls, "tessera-tls", filter_init) != 1 ||
        (g.filter = OSSL_PROVIDER_load(g.tls, "tessera-tls")) == NULL)
        return;   /* process lifetime: what was made stays, unused */
    g.failed = 0;
}

int gw_tls_libctx(OSSL_LIB_CTX **out)
{
    *out = NULL;
    TSR_ENSURE(pthread_once(&g_once, setup) == 0, TSR_E_INTERNAL, "pthread_once failed");
    if (g.failed) {
        ERR_clear_error();
        return TSR_FAIL(TSR_E_INTERNAL, "cannot set up the TLS library context");
    }
    *out = g.tls;
    return 0;
}
