/* Peer verification (docs/identity.md).
 *
 * Order: (1) OpenSSL builds and checks the chain against the bundle roots
 * only (strict, purpose, explicit time, no partial chains, name constraints);
 * (2) the X509-SVID rules OpenSSL does not enforce, on the verified chain;
 * (3) the SPIFFE ID -> trust domain -> principal kind. Every step refuses on
 * anything unexpected; the first refusal names its reason. The subject is
 * never read.
 *
 * Error categories: every refusal of the peer is TSR_E_UNAUTH. A failure of
 * our own (allocation, a NULL argument from the caller) is TSR_E_INTERNAL,
 * still with -1 and *reason set (CA_VERIFY_BAD_CHAIN): fail closed. */
#include "ca_verify.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ca_pem.h"

/* Intermediates a peer may send, and may be used between leaf and root.
 * Tessera's chains have one (the issuing CA); room for rotation/cross-signing. */
#define CA_VERIFY_MAX_UNTRUSTED 8
#define CA_VERIFY_MAX_DEPTH 4

/* Verified chains (ca_trust_enable_cache): a successful verification,
 * remembered under the exact bytes it was made from. */
#define CA_VCACHE_SHARDS 16
#define CA_VCACHE_MAX_KEY 16384    /* bytes of certificates; longer inputs are not cached */

/* What a full verification gave, compactly: the ca_peer is rebuilt from it
 * (the identity by the same parse and classification, from the SPIFFE ID's
 * text), byte for byte what the full verification returned. */
typedef struct vc_entry {
    uint64_t hash;             /* of key[0..key_len): the scan's first test */
    uint8_t *key;              /* purpose, kind, then each certificate's DER, length-prefixed */
    size_t key_len;
    uint64_t used;             /* shard clock at the last hit: the oldest is replaced */
    int64_t not_before_max;    /* latest notBefore over the verified chain */
    char *id_text;             /* the leaf's SPIFFE ID */
    char serial_hex[41];
    char fingerprint[96];
    int64_t not_before, not_after, chain_not_after;
    unsigned char anchor_sha256[32];
} vc_entry;

typedef struct vc_shard {
    pthread_mutex_t lock;
    vc_entry *slots;
    size_t n_slots, used_slots;
    uint64_t clock;
    uint64_t hits;
} vc_shard;

struct ca_trust {
    X509_STORE *store;
    char trust_domain[CA_TRUST_DOMAIN_MAX + 1];
    vc_shard *cache;           /* NULL: every call verifies in full */
    size_t cache_shards;
};

/* ---- trust bundle ---------------------------------------------------------- */

/* A trust anchor: v3, self-signed (signature checked), CA:TRUE, keyCertSign. */
static int check_anchor(X509 *cert, int index)
{
    TSR_ENSURE(X509_get_version(cert) == X509_VERSION_3, TSR_E_INPUT,
               "trust bundle certificate %d is not X.509 v3", index);
    uint32_t flags = X509_get_extension_flags(cert);
    TSR_ENSURE((flags & EXFLAG_INVALID) == 0, TSR_E_INPUT,
               "trust bundle certificate %d has invalid extensions", index);
    TSR_ENSURE(X509_self_signed(cert, 1) == 1, TSR_E_INPUT,
               "trust bundle certificate %d is not a self-signed root", index);
    TSR_ENSURE((flags & EXFLAG_CA) != 0, TSR_E_INPUT,
               "trust bundle certificate %d is not a CA (basicConstraints CA:TRUE)", index);
    TSR_ENSURE((flags & EXFLAG_KUSAGE) != 0 && (X509_get_key_usage(cert) & KU_KEY_CERT_SIGN) != 0,
               TSR_E_INPUT, "trust bundle certificate %d has no keyUsage keyCertSign", index);
    TSR_ENSURE(X509_check_ca(cert) == 1, TSR_E_INPUT, "trust bundle certificate %d is not a CA",
               index);
    return 0;
}

/* Takes ownership of `certs`. */
static int trust_build(STACK_OF(X509) *certs, const char *trust_domain, ca_trust **out)
{
    int rc = -1;
    ca_trust *trust = NULL;

    TSR_TRY_ENSURE(certs != NULL && out != NULL, TSR_E_INTERNAL, "ca_trust: missing argument");
    for (int i = 0; i < sk_X509_num(certs); i++)
        TSR_TRY(check_anchor(sk_X509_value(certs, i), i + 1));
    trust = calloc(1, sizeof *trust);
    TSR_TRY_ENSURE(trust != NULL, TSR_E_INTERNAL, "out of memory");
    memcpy(trust->trust_domain, trust_domain, strlen(trust_domain) + 1);
    trust->store = X509_STORE_new();
    TSR_TRY_ENSURE(trust->store != NULL, TSR_E_INTERNAL, "out of memory");
    for (int i = 0; i < sk_X509_num(certs); i++)
        TSR_TRY_OSSL(X509_STORE_add_cert(trust->store, sk_X509_value(certs, i)), TSR_E_INTERNAL,
                     "trust bundle certificate %d: X509_STORE_add_cert", i + 1);
    /* For TLS stacks that use this store directly: strict, and never partial. */
    TSR_TRY_OSSL(X509_STORE_set_flags(trust->store, X509_V_FLAG_X509_STRICT), TSR_E_INTERNAL,
                 "X509_STORE_set_flags");
    *out = trust;
    trust = NULL;
    rc = 0;
out:
    ERR_clear_error();
    sk_X509_pop_free(certs, X509_free);
    ca_trust_free(trust);
    return rc;
}

static int trust_domain_arg(const char *trust_domain)
{
    TSR_ENSURE(trust_domain != NULL, TSR_E_INPUT, "missing trust domain");
    if (ca_trust_domain_validate(trust_domain, strlen(trust_domain)) != 0)
        return TSR_FAIL(TSR_E_INPUT, "configured trust domain: %s", tsr_errmsg());
    return 0;
}

int ca_trust_from_pem(const uint8_t *pem, size_t len, const char *trust_domain, ca_trust **out)
{
    STACK_OF(X509) *certs = NULL;
    TSR_GUARD(trust_domain_arg(trust_domain));
    if (ca_certs_from_pem(pem, len, &certs) != 0)
        return TSR_FAIL(tsr_errcat(), "trust bundle: %s", tsr_errmsg());
    return trust_build(certs, trust_domain, out);
}

int ca_trust_load(const char *bundle_path, const char *trust_domain, ca_trust **out)
{
    STACK_OF(X509) *certs = NULL;
    TSR_GUARD(trust_domain_arg(trust_domain));
    TSR_ENSURE(bundle_path != NULL, TSR_E_INPUT, "missing trust bundle path");
    TSR_GUARD(ca_certs_load_file(bundle_path, &certs));
    if (trust_build(certs, trust_domain, out) != 0)
        return TSR_FAIL(tsr_errcat(), "%s: %s", bundle_path, tsr_errmsg());
    return 0;
}

static void vcache_free(ca_trust *trust)
{
    for (size_t i = 0; trust->cache != NULL && i < trust->cache_shards; i++) {
        vc_shard *sh = &trust->cache[i];
        for (size_t j = 0; j < sh->used_slots; j++) {
            free(sh->slots[j].key);
            free(sh->slots[j].id_text);
        }
        free(sh->slots);
        pthread_mutex_destroy(&sh->lock);
    }
    free(trust->cache);
    trust->cache = NULL;
    trust->cache_shards = 0;
}

void ca_trust_free(ca_trust *trust)
{
    if (trust == NULL) return;
    vcache_free(trust);
    X509_STORE_free(trust->store);
    free(trust);
}

int ca_trust_enable_cache(ca_trust *trust, size_t entries)
{
    TSR_ENSURE(trust != NULL && trust->cache == NULL, TSR_E_INTERNAL,
               "ca_trust_enable_cache: no trust, or a cache already");
    if (entries == 0) return 0;
    size_t per = (entries + CA_VCACHE_SHARDS - 1) / CA_VCACHE_SHARDS;
    trust->cache = calloc(CA_VCACHE_SHARDS, sizeof *trust->cache);
    TSR_ENSURE(trust->cache != NULL, TSR_E_INTERNAL, "out of memory");
    for (size_t i = 0; i < CA_VCACHE_SHARDS; i++) {
        vc_shard *sh = &trust->cache[i];
        sh->slots = calloc(per, sizeof *sh->slots);
        if (sh->slots == NULL || pthread_mutex_init(&sh->lock, NULL) != 0) {
            free(sh->slots);
            trust->cache_shards = i;
            vcache_free(trust);
            return TSR_FAIL(TSR_E_INTERNAL, "out of memory");
        }
        sh->n_slots = per;
        trust->cache_shards = i + 1;
    }
    return 0;
}

const char *ca_trust_domain(const ca_trust *trust) { return trust->trust_domain; }

X509_STORE *ca_trust_store(const ca_trust *trust) { return trust->store; }

void ca_trust_cache_stats(const ca_trust *trust, size_t *entries, uint64_t *hits)
{
    *entries = 0;
    *hits = 0;
    for (size_t i = 0; trust->cache != NULL && i < trust->cache_shards; i++) {
        vc_shard *sh = &trust->cache[i];
        TSR_ASSERT(pthread_mutex_lock(&sh->lock) == 0);
        *entries += sh->used_slots;
        *hits += sh->hits;
        (void)pthread_mutex_unlock(&sh->lock);
    }
}

/* ---- reasons --------------------------------------------------------------- */

const char *ca_verify_reason_name(enum ca_verify_reason reason)
{
    switch (reason) {
    case CA_VERIFY_OK: return "ok";
    case CA_VERIFY_NO_CERTIFICATE: return "no certificate";
    case CA_VERIFY_EXPIRED: return "expired";
    case CA_VERIFY_NOT_YET_VALID: return "not yet valid";
    case CA_VERIFY_UNKNOWN_ISSUER: return "unknown issuer";
    case CA_VERIFY_BAD_SIGNATURE: return "bad signature";
    case CA_VERIFY_BAD_CHAIN: return "bad chain";
    case CA_VERIFY_NO_URI_SAN: return "no URI SAN";
    case CA_VERIFY_MULTIPLE_URI_SANS: return "two URI SANs";
    case CA_VERIFY_BAD_SPIFFE_ID: return "bad SPIFFE ID";
    case CA_VERIFY_FOREIGN_TRUST_DOMAIN: return "foreign trust domain";
    case CA_VERIFY_UNKNOWN_KIND: return "unknown identity kind";
    case CA_VERIFY_WRONG_KIND: return "wrong identity kind";
    case CA_VERIFY_LEAF_IS_CA: return "leaf is a CA";
    case CA_VERIFY_LEAF_KEY_USAGE: return "bad leaf key usage";
    case CA_VERIFY_BAD_EKU: return "bad extended key usage";
    case CA_VERIFY_SIGNER_NOT_CA: return "signer not a CA";
    }
    return "unknown reason";
}

/* Record a refusal: *reason, and a TSR_E_UNAUTH error "<reason name>: <detail>"
 * (just "<detail>" when the detail already starts with the name). */
__attribute__((format(printf, 5, 6))) static int refuse_at(enum ca_verify_reason *reason,
                                                           enum ca_verify_reason r,
                                                           const char *file, int line,
                                                           const char *fmt, ...)
{
    char detail[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    *reason = r;
    const char *name = ca_verify_reason_name(r);
    if (strncmp(detail, name, strlen(name)) == 0)
        return tsr_fail_at(TSR_E_UNAUTH, file, line, "%s", detail);
    return tsr_fail_at(TSR_E_UNAUTH, file, line, "%s: %s", name, detail);
}
#define REFUSE(r, ...) refuse_at(reason, (r), __FILE__, __LINE__, __VA_ARGS__)

static const char *depth_name(int depth) { return depth == 0 ? "leaf" : "CA certificate"; }

/* ---- step 1: the chain (OpenSSL) --------------------------------------------- */

static unsigned long purpose_xku(enum ca_purpose purpose)
{
    return purpose == CA_PURPOSE_SERVER ? XKU_SSL_SERVER : XKU_SSL_CLIENT;
}

static const char *purpose_name(enum ca_purpose purpose)
{
    return purpose == CA_PURPOSE_SERVER ? "serverAuth" : "clientAuth";
}

/* OpenSSL's verdict as a reason, as precisely as the error and its depth say. */
static int map_chain_error(X509_STORE_CTX *ctx, X509 *leaf, enum ca_purpose purpose,
                           enum ca_verify_reason *reason)
{
    int err = X509_STORE_CTX_get_error(ctx);
    int depth = X509_STORE_CTX_get_error_depth(ctx);
    const char *what = X509_verify_cert_error_string(err);

    switch (err) {
    case X509_V_OK:
        return REFUSE(CA_VERIFY_BAD_CHAIN, "verification failed without an error code");
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return REFUSE(CA_VERIFY_EXPIRED, "%s at depth %d has expired", depth_name(depth), depth);
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return REFUSE(CA_VERIFY_NOT_YET_VALID, "%s at depth %d is not yet valid",
                      depth_name(depth), depth);
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_UNTRUSTED:
        return REFUSE(CA_VERIFY_UNKNOWN_ISSUER, "%s (depth %d)", what, depth);
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE:
    case X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY:
        return REFUSE(CA_VERIFY_BAD_SIGNATURE, "%s (depth %d)", what, depth);
    case X509_V_ERR_INVALID_PURPOSE:
        if (depth == 0) {
            uint32_t flags = X509_get_extension_flags(leaf);
            int eku_ok = (flags & EXFLAG_XKUSAGE) == 0 ||
                         (X509_get_extended_key_usage(leaf) & purpose_xku(purpose)) != 0;
            int ku_ok = (flags & EXFLAG_KUSAGE) == 0 ||
                        (X509_get_key_usage(leaf) & KU_DIGITAL_SIGNATURE) != 0;
            if (eku_ok && !ku_ok)
                return REFUSE(CA_VERIFY_LEAF_KEY_USAGE,
                              "leaf keyUsage lacks digitalSignature (%s)", what);
            return REFUSE(CA_VERIFY_BAD_EKU, "leaf not valid for %s (%s)", purpose_name(purpose),
                          what);
        }
        return REFUSE(CA_VERIFY_BAD_EKU, "CA certificate at depth %d not valid for %s (%s)",
                      depth, purpose_name(purpose), what);
    case X509_V_ERR_KU_KEY_CERT_SIGN_INVALID_FOR_NON_CA:
        if (depth == 0)
            return REFUSE(CA_VERIFY_LEAF_KEY_USAGE, "leaf keyUsage has keyCertSign (%s)", what);
        return REFUSE(CA_VERIFY_SIGNER_NOT_CA, "certificate at depth %d: %s", depth, what);
    case X509_V_ERR_INVALID_CA:
    case X509_V_ERR_KEYUSAGE_NO_CERTSIGN:
    case X509_V_ERR_CA_CERT_MISSING_KEY_USAGE:
    case X509_V_ERR_PATHLEN_WITHOUT_KU_KEY_CERT_SIGN:
    case X509_V_ERR_PATHLEN_INVALID_FOR_NON_CA:
        if (depth == 0)
            return REFUSE(CA_VERIFY_LEAF_IS_CA, "leaf is marked as a CA (%s)", what);
        return REFUSE(CA_VERIFY_SIGNER_NOT_CA, "certificate at depth %d: %s", depth, what);
    default:
        return REFUSE(CA_VERIFY_BAD_CHAIN, "%s (depth %d)", what, depth);
    }
}

static int verify_chain(const ca_trust *trust, X509_STORE_CTX *ctx, X509 *leaf,
                        STACK_OF(X509) *untrusted, enum ca_purpose purpose, int64_t now,
                        enum ca_verify_reason *reason)
{
    int xpurpose;
    switch (purpose) {
    case CA_PURPOSE_CLIENT: xpurpose = X509_PURPOSE_SSL_CLIENT; break;
    case CA_PURPOSE_SERVER: xpurpose = X509_PURPOSE_SSL_SERVER; break;
    default: return REFUSE(CA_VERIFY_BAD_CHAIN, "unknown verification purpose %d", (int)purpose);
    }
    if (untrusted != NULL && sk_X509_num(untrusted) > CA_VERIFY_MAX_UNTRUSTED)
        return REFUSE(CA_VERIFY_BAD_CHAIN, "peer sent %d intermediate certificates (max %d)",
                      sk_X509_num(untrusted), CA_VERIFY_MAX_UNTRUSTED);

    /* OpenSSL would refuse such a leaf as "unable to get issuer": say what it is. */
    if ((X509_get_extension_flags(leaf) & EXFLAG_INVALID) != 0)
        return REFUSE(CA_VERIFY_BAD_CHAIN, "leaf has malformed or duplicate extensions");

    if (X509_STORE_CTX_init(ctx, trust->store, leaf, untrusted) != 1) {
        *reason = CA_VERIFY_BAD_CHAIN;
        return TSR_FAIL_OSSL(TSR_E_INTERNAL, "bad chain: X509_STORE_CTX_init failed");
    }
    X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
    if (param == NULL || X509_STORE_CTX_set_purpose(ctx, xpurpose) != 1 ||
        X509_VERIFY_PARAM_clear_flags(param, X509_V_FLAG_PARTIAL_CHAIN | X509_V_FLAG_NO_CHECK_TIME |
                                                 X509_V_FLAG_IGNORE_CRITICAL |
                                                 X509_V_FLAG_ALLOW_PROXY_CERTS) != 1 ||
        X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_X509_STRICT) != 1) {
        *reason = CA_VERIFY_BAD_CHAIN;
        return TSR_FAIL_OSSL(TSR_E_INTERNAL, "bad chain: cannot set verification parameters");
    }
    X509_VERIFY_PARAM_set_depth(param, CA_VERIFY_MAX_DEPTH);
    X509_VERIFY_PARAM_set_time(param, (time_t)now);

    int ok = X509_verify_cert(ctx);
    ERR_clear_error(); /* the verdict is in ctx; leave no residue for the caller */
    if (ok == 1 && X509_STORE_CTX_get_error(ctx) == X509_V_OK) return 0;
    return map_chain_error(ctx, leaf, purpose, reason);
}

/* ---- step 2: X509-SVID rules on the verified chain ----------------------------- */

/* The one URI SAN of the leaf, parsed with its exact length. */
static int leaf_spiffe_id(X509 *leaf, enum ca_verify_reason *reason, ca_spiffe_id *id)
{
    int rc = -1;
    int crit = 0;
    GENERAL_NAMES *gens = X509_get_ext_d2i(leaf, NID_subject_alt_name, &crit, NULL);
    if (gens == NULL) {
        if (crit == -1)
            (void)REFUSE(CA_VERIFY_NO_URI_SAN, "leaf has no subjectAltName extension");
        else
            (void)REFUSE(CA_VERIFY_BAD_CHAIN, "leaf subjectAltName is malformed or repeated");
        goto out;
    }
    const ASN1_IA5STRING *uri = NULL;
    int n_uri = 0;
    for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *gen = sk_GENERAL_NAME_value(gens, i);
        if (gen != NULL && gen->type == GEN_URI) {
            n_uri++;
            uri = gen->d.uniformResourceIdentifier;
        }
    }
    if (n_uri == 0) {
        (void)REFUSE(CA_VERIFY_NO_URI_SAN, "leaf subjectAltName has no URI");
        goto out;
    }
    if (n_uri > 1) {
        (void)REFUSE(CA_VERIFY_MULTIPLE_URI_SANS,
                     "leaf has %d URI SANs; an X509-SVID has exactly one", n_uri);
        goto out;
    }
    int len = uri != NULL ? ASN1_STRING_length(uri) : -1;
    const unsigned char *data = uri != NULL ? ASN1_STRING_get0_data(uri) : NULL;
    if (data == NULL || len <= 0) {
        (void)REFUSE(CA_VERIFY_BAD_SPIFFE_ID, "leaf URI SAN is empty");
        goto out;
    }
    /* Exact length: an embedded NUL reaches the parser, which refuses it. */
    if (ca_spiffe_parse((const char *)data, (size_t)len, id) != 0) {
        (void)REFUSE(CA_VERIFY_BAD_SPIFFE_ID, "leaf URI SAN: %s", tsr_errmsg());
        goto out;
    }
    if (id->path[0] == '\0') {
        (void)REFUSE(CA_VERIFY_BAD_SPIFFE_ID, "leaf URI SAN %s has no path (root ID)", id->text);
        goto out;
    }
    rc = 0;
out:
    GENERAL_NAMES_free(gens);
    return rc;
}

static int check_svid(STACK_OF(X509) *chain, int n_untrusted, enum ca_purpose purpose,
                      enum ca_verify_reason *reason, ca_spiffe_id *id)
{
    int n = chain != NULL ? sk_X509_num(chain) : 0;
    if (n < 1) return REFUSE(CA_VERIFY_BAD_CHAIN, "empty verified chain");
    /* Without partial chains OpenSSL only succeeds on a trusted top; check anyway. */
    if (n_untrusted < 0 || n_untrusted >= n)
        return REFUSE(CA_VERIFY_BAD_CHAIN, "verified chain does not end at a bundle root");
    X509 *leaf = sk_X509_value(chain, 0);
    if (leaf == NULL) return REFUSE(CA_VERIFY_BAD_CHAIN, "verified chain has no leaf");

    TSR_GUARD(leaf_spiffe_id(leaf, reason, id));

    uint32_t flags = X509_get_extension_flags(leaf);
    if ((flags & EXFLAG_INVALID) != 0)
        return REFUSE(CA_VERIFY_BAD_CHAIN, "leaf has invalid extensions");
    if ((flags & EXFLAG_CA) != 0)
        return REFUSE(CA_VERIFY_LEAF_IS_CA, "leaf has basicConstraints CA:TRUE");
    if ((flags & EXFLAG_KUSAGE) == 0)
        return REFUSE(CA_VERIFY_LEAF_KEY_USAGE, "leaf has no keyUsage extension");
    uint32_t ku = X509_get_key_usage(leaf);
    if ((ku & KU_DIGITAL_SIGNATURE) == 0)
        return REFUSE(CA_VERIFY_LEAF_KEY_USAGE, "leaf keyUsage lacks digitalSignature");
    if ((ku & (KU_KEY_CERT_SIGN | KU_CRL_SIGN)) != 0)
        return REFUSE(CA_VERIFY_LEAF_KEY_USAGE, "leaf keyUsage has keyCertSign or cRLSign");
    if (X509_check_ca(leaf) != 0)
        return REFUSE(CA_VERIFY_LEAF_IS_CA, "leaf is marked as a CA");
    if (n < 2) return REFUSE(CA_VERIFY_BAD_CHAIN, "leaf is itself a trust anchor");

    for (int i = 1; i < n; i++) {
        X509 *signer = sk_X509_value(chain, i);
        if (signer == NULL) return REFUSE(CA_VERIFY_BAD_CHAIN, "hole in verified chain");
        uint32_t f = X509_get_extension_flags(signer);
        if ((f & EXFLAG_INVALID) != 0)
            return REFUSE(CA_VERIFY_BAD_CHAIN, "certificate at depth %d has invalid extensions",
                          i);
        if ((f & EXFLAG_CA) == 0)
            return REFUSE(CA_VERIFY_SIGNER_NOT_CA,
                          "certificate at depth %d lacks basicConstraints CA:TRUE", i);
        if ((f & EXFLAG_KUSAGE) == 0 || (X509_get_key_usage(signer) & KU_KEY_CERT_SIGN) == 0)
            return REFUSE(CA_VERIFY_SIGNER_NOT_CA, "certificate at depth %d lacks keyCertSign",
                          i);
    }

    if ((flags & EXFLAG_XKUSAGE) != 0 &&
        (X509_get_extended_key_usage(leaf) & purpose_xku(purpose)) == 0)
        return REFUSE(CA_VERIFY_BAD_EKU, "leaf extendedKeyUsage lacks %s", purpose_name(purpose));
    return 0;
}

/* ---- step 3: principal ----------------------------------------------------------- */

static int identify(const ca_trust *trust, const ca_spiffe_id *id, enum ca_kind expected,
                    enum ca_verify_reason *reason, ca_identity *identity)
{
    if (strcmp(id->trust_domain, trust->trust_domain) != 0)
        return REFUSE(CA_VERIFY_FOREIGN_TRUST_DOMAIN, "foreign trust domain %s (expected %s)",
                      id->trust_domain, trust->trust_domain);
    if (ca_identity_classify(id, trust->trust_domain, identity) != 0)
        return REFUSE(CA_VERIFY_UNKNOWN_KIND, "%s (%s)", tsr_errmsg(), id->text);
    if (identity->kind == CA_KIND_NONE)
        return REFUSE(CA_VERIFY_UNKNOWN_KIND, "no principal kind for %s", id->text);
    if (expected != CA_KIND_NONE && identity->kind != expected)
        return REFUSE(CA_VERIFY_WRONG_KIND, "expected a %s certificate, got %s (%s)",
                      ca_kind_name(expected), ca_kind_name(identity->kind), id->text);
    return 0;
}

static int fill_peer(STACK_OF(X509) *chain, int64_t now, enum ca_verify_reason *reason,
                     ca_peer *peer, int64_t *not_before_max)
{
    X509 *leaf = sk_X509_value(chain, 0);
    if (ca_cert_serial_hex(leaf, peer->serial_hex) != 0)
        return REFUSE(CA_VERIFY_BAD_CHAIN, "leaf serial: %s", tsr_errmsg());
    if (ca_cert_fingerprint(leaf, peer->fingerprint) != 0)
        return REFUSE(CA_VERIFY_BAD_CHAIN, "leaf fingerprint: %s", tsr_errmsg());
    int64_t min_after = INT64_MAX, max_before = INT64_MIN;
    for (int i = 0; i < sk_X509_num(chain); i++) {
        int64_t nb = 0, na = 0;
        if (ca_cert_validity(sk_X509_value(chain, i), &nb, &na) != 0)
            return REFUSE(CA_VERIFY_BAD_CHAIN, "certificate at depth %d: %s", i, tsr_errmsg());
        /* OpenSSL checked this already (valid while notBefore <= now < notAfter);
         * a second opinion costs nothing. */
        if (nb > now)
            return REFUSE(CA_VERIFY_NOT_YET_VALID, "%s at depth %d is not yet valid",
                          depth_name(i), i);
        if (na <= now)
            return REFUSE(CA_VERIFY_EXPIRED, "%s at depth %d has expired", depth_name(i), i);
        if (i == 0) {
            peer->not_before = nb;
            peer->not_after = na;
        }
        if (na < min_after) min_after = na;
        if (nb > max_before) max_before = nb;
    }
    peer->chain_not_after = min_after;
    *not_before_max = max_before;
    /* The anchor is read from the chain that was verified, never from what
     * the peer sent: a listed certificate of another root proves nothing. */
    X509 *anchor = sk_X509_value(chain, sk_X509_num(chain) - 1);
    unsigned int md_len = 0;
    if (anchor == NULL ||
        X509_digest(anchor, EVP_sha256(), peer->anchor_sha256, &md_len) != 1 ||
        md_len != sizeof peer->anchor_sha256) {
        ERR_clear_error();
        return REFUSE(CA_VERIFY_BAD_CHAIN, "cannot digest the trust anchor");
    }
    return 0;
}

/* ---- verified chains ------------------------------------------------------------------ *
 *
 * The chain check and the X509-SVID rules (steps 1-3) depend only on the
 * trust (fixed for a ca_trust: its roots never change), the certificates,
 * the purpose, the expected kind and the time. So once a chain verified,
 * the outcome is kept under the exact bytes it came from: the purpose, the
 * expected kind and the DER of the leaf and of every untrusted certificate,
 * in the order given (chain building may depend on it), each prefixed by
 * its length. A later call with byte-for-byte the same input (compared in
 * full, not by hash alone) gets the same ca_peer, including the trust
 * anchor of the chain that was verified, provided the time is still inside
 * every certificate's validity: latest notBefore <= now < earliest
 * notAfter. Outside it, or on any other input, the full verification runs
 * (and refuses with its exact reason). Only successes are kept; a refusal
 * is never cached. Revocation is not part of this function (the caller
 * checks it on every call), and a new trust bundle is a new ca_trust with
 * an empty cache. Bounded: a fixed number of entries, the least recently
 * used one replaced (docs/performance.md, "Handshakes"). */

/* The key: purpose, kind, then each certificate's DER with a 4-byte length.
 * NULL when it cannot be built or is too long to keep (then no caching). */
static uint8_t *vc_key(X509 *leaf, STACK_OF(X509) *untrusted, enum ca_purpose purpose,
                       enum ca_kind kind, size_t *len_out)
{
    int n = untrusted != NULL ? sk_X509_num(untrusted) : 0;
    if (n > CA_VERIFY_MAX_UNTRUSTED) return NULL;
    size_t total = 2;
    int lens[CA_VERIFY_MAX_UNTRUSTED + 1];
    for (int i = 0; i <= n; i++) {
        X509 *x = i == 0 ? leaf : sk_X509_value(untrusted, i - 1);
        lens[i] = x != NULL ? i2d_X509(x, NULL) : -1;
        if (lens[i] <= 0 || (size_t)lens[i] > CA_VCACHE_MAX_KEY) return NULL;
        total += 4 + (size_t)lens[i];
    }
    if (total > CA_VCACHE_MAX_KEY) return NULL;
    uint8_t *key = malloc(total);
    if (key == NULL) return NULL;
    key[0] = (uint8_t)purpose;
    key[1] = (uint8_t)kind;
    size_t off = 2;
    for (int i = 0; i <= n; i++) {
        X509 *x = i == 0 ? leaf : sk_X509_value(untrusted, i - 1);
        uint32_t l = (uint32_t)lens[i];
        key[off] = (uint8_t)(l >> 24);
        key[off + 1] = (uint8_t)(l >> 16);
        key[off + 2] = (uint8_t)(l >> 8);
        key[off + 3] = (uint8_t)l;
        off += 4;
        unsigned char *p = key + off;
        if (i2d_X509(x, &p) != lens[i]) {
            free(key);
            return NULL;
        }
        off += (size_t)lens[i];
    }
    *len_out = total;
    return key;
}

/* FNV-1a, 64 bits: picks the shard and screens the entries; equality is
 * decided by comparing the whole key. */
static uint64_t vc_hash(const uint8_t *key, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= key[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static vc_shard *vc_shard_of(const ca_trust *trust, uint64_t hash)
{
    return &trust->cache[(hash >> 32) % trust->cache_shards];
}

/* A kept verification of exactly this input, still valid at `now`: its
 * SPIFFE ID text into id_text, the rest into *out (identity not set). */
static int vc_lookup(const ca_trust *trust, const uint8_t *key, size_t len, uint64_t hash,
                     int64_t now, char id_text[CA_SPIFFE_ID_MAX + 1], ca_peer *out)
{
    vc_shard *sh = vc_shard_of(trust, hash);
    int found = 0;
    TSR_ASSERT(pthread_mutex_lock(&sh->lock) == 0);
    for (size_t i = 0; i < sh->used_slots; i++) {
        vc_entry *e = &sh->slots[i];
        if (e->hash != hash || e->key_len != len || memcmp(e->key, key, len) != 0) continue;
        if (e->not_before_max <= now && now < e->chain_not_after) {
            memcpy(id_text, e->id_text, strlen(e->id_text) + 1);
            memcpy(out->serial_hex, e->serial_hex, sizeof out->serial_hex);
            memcpy(out->fingerprint, e->fingerprint, sizeof out->fingerprint);
            out->not_before = e->not_before;
            out->not_after = e->not_after;
            out->chain_not_after = e->chain_not_after;
            memcpy(out->anchor_sha256, e->anchor_sha256, sizeof out->anchor_sha256);
            e->used = ++sh->clock;
            sh->hits++;
            found = 1;
        }
        break;
    }
    (void)pthread_mutex_unlock(&sh->lock);
    return found;
}

/* Keep a successful verification (takes `key`). */
static void vc_insert(const ca_trust *trust, uint8_t *key, size_t len, uint64_t hash,
                      int64_t not_before_max, const ca_peer *peer)
{
    char *id_text = strdup(peer->identity.id.text);
    if (id_text == NULL) {
        free(key);
        return;
    }
    vc_shard *sh = vc_shard_of(trust, hash);
    TSR_ASSERT(pthread_mutex_lock(&sh->lock) == 0);
    vc_entry *e = NULL;
    for (size_t i = 0; i < sh->used_slots && e == NULL; i++)
        if (sh->slots[i].hash == hash && sh->slots[i].key_len == len &&
            memcmp(sh->slots[i].key, key, len) == 0)
            e = &sh->slots[i];   /* the same input, verified again (e.g. at a later time) */
    if (e == NULL && sh->used_slots < sh->n_slots) e = &sh->slots[sh->used_slots++];
    if (e == NULL) {
        e = &sh->slots[0];
        for (size_t i = 1; i < sh->used_slots; i++)
            if (sh->slots[i].used < e->used) e = &sh->slots[i];
    }
    free(e->key);
    free(e->id_text);
    e->key = key;
    e->key_len = len;
    e->hash = hash;
    e->not_before_max = not_before_max;
    e->id_text = id_text;
    memcpy(e->serial_hex, peer->serial_hex, sizeof e->serial_hex);
    memcpy(e->fingerprint, peer->fingerprint, sizeof e->fingerprint);
    e->not_before = peer->not_before;
    e->not_after = peer->not_after;
    e->chain_not_after = peer->chain_not_after;
    memcpy(e->anchor_sha256, peer->anchor_sha256, sizeof e->anchor_sha256);
    e->used = ++sh->clock;
    (void)pthread_mutex_unlock(&sh->lock);
}

/* A kept verification rebuilt into *peer (zeroed by the caller): the
 * identity exactly as the full path makes it, by parsing the SPIFFE ID's
 * text and classifying it for the expected kind. 1 on a hit. */
static int vc_answer(const ca_trust *trust, const uint8_t *key, size_t len, uint64_t hash,
                     int64_t now, enum ca_kind expected_kind, ca_peer *peer)
{
    char text[CA_SPIFFE_ID_MAX + 1];
    ca_spiffe_id id;
    enum ca_verify_reason reason = CA_VERIFY_OK;
    if (!vc_lookup(trust, key, len, hash, now, text, peer)) return 0;
    memset(&id, 0, sizeof id);
    if (ca_spiffe_parse(text, strlen(text), &id) != 0 ||
        identify(trust, &id, expected_kind, &reason, &peer->identity) != 0) {
        /* Cannot happen (it passed before, on the same text); verify in full. */
        tsr_err_clear();
        memset(peer, 0, sizeof *peer);
        return 0;
    }
    return 1;
}

/* ---- the entry point ---------------------------------------------------------------- */

int ca_verify_peer(const ca_trust *trust, X509 *leaf, STACK_OF(X509) *untrusted,
                   enum ca_purpose purpose, enum ca_kind expected_kind, int64_t now,
                   enum ca_verify_reason *reason, ca_peer *out)
{
    int rc = -1;
    X509_STORE_CTX *ctx = NULL;
    ca_spiffe_id id;
    ca_peer peer;
    enum ca_verify_reason scratch = CA_VERIFY_BAD_CHAIN;
    uint8_t *key = NULL;
    size_t key_len = 0;
    uint64_t hash = 0;
    int64_t not_before_max = 0;

    if (reason == NULL) reason = &scratch; /* still refuse below */
    *reason = CA_VERIFY_BAD_CHAIN;          /* until proven otherwise */
    memset(&peer, 0, sizeof peer);
    if (out != NULL) memset(out, 0, sizeof *out);
    TSR_TRY_ENSURE(trust != NULL && trust->store != NULL && out != NULL && reason != &scratch,
                   TSR_E_INTERNAL, "ca_verify_peer: missing argument");
    if (leaf == NULL) {
        (void)REFUSE(CA_VERIFY_NO_CERTIFICATE, "peer presented no certificate");
        goto out;
    }
    if (now == 0) now = (int64_t)time(NULL);
    TSR_TRY_ENSURE(now > 0, TSR_E_INTERNAL, "ca_verify_peer: bad time %lld", (long long)now);

    if (trust->cache != NULL) {
        key = vc_key(leaf, untrusted, purpose, expected_kind, &key_len);
        ERR_clear_error();
        if (key != NULL) {
            hash = vc_hash(key, key_len);
            if (vc_answer(trust, key, key_len, hash, now, expected_kind, &peer)) {
                *out = peer;
                *reason = CA_VERIFY_OK;
                rc = 0;
                goto out;
            }
        }
    }
    ctx = X509_STORE_CTX_new();
    TSR_TRY_ENSURE(ctx != NULL, TSR_E_INTERNAL, "out of memory");
    TSR_TRY(verify_chain(trust, ctx, leaf, untrusted, purpose, now, reason));
    STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(ctx);
    TSR_TRY(check_svid(chain, X509_STORE_CTX_get_num_untrusted(ctx), purpose, reason, &id));
    TSR_TRY(identify(trust, &id, expected_kind, reason, &peer.identity));
    TSR_TRY(fill_peer(chain, now, reason, &peer, &not_before_max));
    if (key != NULL) {
        vc_insert(trust, key, key_len, hash, not_before_max, &peer);
        key = NULL;
    }
    *out = peer;
    *reason = CA_VERIFY_OK;
    rc = 0;
out:
    free(key);
    X509_STORE_CTX_free(ctx);
    if (rc != 0 && *reason == CA_VERIFY_OK) *reason = CA_VERIFY_BAD_CHAIN;
    return rc;
}
