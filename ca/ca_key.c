/* Key types: the ones Tessera generates (P-256, P-384, Ed25519; never RSA),
 * their names, and the check of keys that come from outside (CSRs, peers). */
#include "ca_issue.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <stdio.h>
#include <string.h>

#define RSA_MIN_BITS 2048
#define RSA_MAX_BITS 8192

static const struct {
    const char *name;
    enum ca_key_type type;
} key_type_names[] = {
    {"p256", CA_KEY_P256},       {"ecdsa-p256", CA_KEY_P256}, {"p384", CA_KEY_P384},
    {"ecdsa-p384", CA_KEY_P384}, {"ed25519", CA_KEY_ED25519},
};

int ca_key_type_parse(const char *name, enum ca_key_type *out)
{
    TSR_ENSURE(name != NULL, TSR_E_INPUT, "missing key type");
    for (size_t i = 0; i < sizeof key_type_names / sizeof key_type_names[0]; i++) {
        if (strcmp(name, key_type_names[i].name) == 0) {
            *out = key_type_names[i].type;
            return 0;
        }
    }
    return TSR_FAIL(TSR_E_INPUT, "unknown key type \"%.64s\" (use p256, p384 or ed25519)", name);
}

const char *ca_key_type_name(enum ca_key_type type)
{
    switch (type) {
    case CA_KEY_P256: return "p256";
    case CA_KEY_P384: return "p384";
    case CA_KEY_ED25519: return "ed25519";
    }
    return "unknown";
}

int ca_key_generate(enum ca_key_type type, EVP_PKEY **out)
{
    EVP_PKEY *key = NULL;
    switch (type) {
    case CA_KEY_P256: key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"); break;
    case CA_KEY_P384: key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384"); break;
    case CA_KEY_ED25519: key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"); break;
    default: return TSR_FAIL(TSR_E_INPUT, "unknown key type %d", (int)type);
    }
    if (key == NULL)
        return TSR_FAIL_OSSL(TSR_E_INTERNAL, "generate %s key", ca_key_type_name(type));
    *out = key;
    return 0;
}

/* What an EC key's curve is: its NID (NID_undef when unknown) and a printable
 * name; *explicit_params is set when the key carries explicit parameters
 * instead of a named curve (refused: RFC 5480, and OpenSSL's strict mode). */
static void ec_curve_of(const EVP_PKEY *key, int *nid, char *name, size_t cap,
                        int *explicit_params)
{
    char group[80] = "";
    char encoding[32] = "";
    size_t n = 0;
    *nid = NID_undef;
    *explicit_params = 0;
    snprintf(name, cap, "unknown curve");
    if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_EC_ENCODING, encoding,
                                       sizeof encoding, &n) == 1 &&
        strcmp(encoding, OSSL_PKEY_EC_ENCODING_EXPLICIT) == 0)
        *explicit_params = 1;
    if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                       &n) != 1) {
        ERR_clear_error();
        if (*explicit_params) snprintf(name, cap, "explicit curve parameters");
        return;
    }
    ERR_clear_error();
    *nid = OBJ_sn2nid(group);
    if (*nid == NID_undef) *nid = OBJ_ln2nid(group);
    switch (*nid) {
    case NID_X9_62_prime256v1: snprintf(name, cap, "P-256"); break;
    case NID_secp384r1: snprintf(name, cap, "P-384"); break;
    case NID_secp521r1: snprintf(name, cap, "P-521"); break;
    default: snprintf(name, cap, "%s", group); break;
    }
}

/* The public exponent and modulus of an RSA key from outside: with e = 1 (or
 * another degenerate value) anyone could forge its signatures. Exponent per
 * the CA/Browser Forum baseline: odd, 2^16+1 <= e < 2^256; modulus odd. */
static int check_rsa_public(const EVP_PKEY *key)
{
    BIGNUM *e = NULL, *n = NULL;
    int rc = -1;
    TSR_TRY_ENSURE(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_E, &e) == 1 &&
                       EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_N, &n) == 1,
                   TSR_E_INPUT, "RSA key parameters do not parse");
    TSR_TRY_ENSURE(BN_is_odd(e) && BN_num_bits(e) >= 17 && BN_num_bits(e) <= 256, TSR_E_INPUT,
                   "RSA key has a bad public exponent (must be odd, at least 65537)");
    TSR_TRY_ENSURE(BN_is_odd(n), TSR_E_INPUT, "RSA key has an even modulus");
    rc = 0;
out:
    ERR_clear_error();
    BN_free(e);
    BN_free(n);
    return rc;
}

void ca_key_describe(const EVP_PKEY *key, char *out, size_t cap)
{
    if (cap == 0) return;
    if (key == NULL) {
        snprintf(out, cap, "no key");
        return;
    }
    char curve[80];
    int nid = NID_undef, explicit_params = 0;
    switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_EC:
        ec_curve_of(key, &nid, curve, sizeof curve, &explicit_params);
        snprintf(out, cap, "ECDSA %s%s", curve,
                 explicit_params && nid != NID_undef ? " (explicit parameters)" : "");
        break;
    case EVP_PKEY_ED25519: snprintf(out, cap, "Ed25519"); break;
    case EVP_PKEY_ED448: snprintf(out, cap, "Ed448"); break;
    case EVP_PKEY_RSA: snprintf(out, cap, "RSA %d", EVP_PKEY_get_bits(key)); break;
    case EVP_PKEY_RSA_PSS: snprintf(out, cap, "RSA-PSS %d", EVP_PKEY_get_bits(key)); break;
    case EVP_PKEY_DSA: snprintf(out, cap, "DSA %d", EVP_PKEY_get_bits(key)); break;
    default: {
        const char *name = EVP_PKEY_get0_type_name(key);
        snprintf(out, cap, "%s key", name != NULL ? name : "unknown");
        break;
    }
    }
}

int ca_key_check_accepted(const EVP_PKEY *key)
{
    TSR_ENSURE(key != NULL, TSR_E_INPUT, "no public key");
    char desc[128];
    ca_key_describe(key, desc, sizeof desc);
    switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_EC: {
        char curve[80];
        int nid = NID_undef, explicit_params = 0;
        ec_curve_of(key, &nid, curve, sizeof curve, &explicit_params);
        TSR_ENSURE(!explicit_params, TSR_E_INPUT,
                   "unsupported key %s: EC keys must name their curve, not carry explicit "
                   "parameters",
                   desc);
        TSR_ENSURE(nid == NID_X9_62_prime256v1 || nid == NID_secp384r1, TSR_E_INPUT,
                   "unsupported key %s (accepted: ECDSA P-256, ECDSA P-384, Ed25519, RSA "
                   "2048-8192)",
                   desc);
        return 0;
    }
    case EVP_PKEY_ED25519: return 0;
    case EVP_PKEY_RSA: {
        int bits = EVP_PKEY_get_bits(key);
        TSR_ENSURE(bits >= RSA_MIN_BITS, TSR_E_INPUT,
                   "RSA key of %d bits is too small (minimum %d)", bits, RSA_MIN_BITS);
        TSR_ENSURE(bits <= RSA_MAX_BITS, TSR_E_INPUT,
                   "RSA key of %d bits is too large (maximum %d)", bits, RSA_MAX_BITS);
        return check_rsa_public(key);
    }
    default:
        return TSR_FAIL(TSR_E_INPUT,
                        "unsupported key %s (accepted: ECDSA P-256, ECDSA P-384, Ed25519, RSA "
                        "2048-8192)",
                        desc);
    }
}
