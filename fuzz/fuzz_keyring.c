/* The provider-secret keyring file (gw_keyring_parse: the checks of
 * gw_keyring_load on bytes already read).
 * Invariants: a parsed ring holds 1..GW_KEYRING_MAX_KEYS keys, every
 * version line of the input that loaded is openable, the current version is
 * the highest one, and a seal under it opens again (and fails with another
 * AAD or a flipped bit). */
#include <stdbool.h>
#include <string.h>

#include "fuzz/fuzz.h"
#include "gw_secretbox.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gw_keyring *k = NULL;
    if (gw_keyring_parse("fuzz.key", data, size, &k) != 0) {
        FUZZ_CHECK(k == NULL && tsr_errmsg()[0] != '\0');
        return 0;
    }
    FUZZ_CHECK(k != NULL && memchr(data, '\0', size) == NULL && size <= GW_KEYRING_MAX_FILE);
    size_t n = gw_keyring_key_count(k);
    uint32_t cur = gw_keyring_current_version(k);
    FUZZ_CHECK(n >= 1 && n <= GW_KEYRING_MAX_KEYS);
    FUZZ_CHECK(cur >= 1 && cur <= GW_KEYRING_MAX_VERSION);

    /* Every key line's version is in the ring, and the highest one encrypts. */
    uint8_t zero_nonce[GW_SECRETBOX_NONCE_LEN] = {0};
    uint8_t junk[GW_SECRETBOX_TAG_LEN + 1] = {0};
    uint32_t max = 0;
    size_t lines = 0;
    for (size_t i = 0; i < size;) {
        size_t j = i;
        while (j < size && (data[j] == ' ' || data[j] == '\t' || data[j] == '\r')) j++;
        uint32_t v = 0;
        bool digits = false;
        while (j < size && data[j] >= '0' && data[j] <= '9') {
            v = v * 10 + (uint32_t)(data[j++] - '0');
            digits = true;
        }
        if (digits) {
            lines++;
            if (v > max) max = v;
            uint8_t *pt = NULL;
            size_t pt_len = 0;
            FUZZ_CHECK(gw_secretbox_open(k, v, zero_nonce, NULL, 0, junk, sizeof junk, &pt,
                                         &pt_len) != 0);
            FUZZ_CHECK(pt == NULL && tsr_errcat() == TSR_E_INPUT);
        }
        while (i < size && data[i] != '\n') i++;
        i++;
    }
    FUZZ_CHECK(lines == n && max == cur);
    uint8_t *none = NULL;
    size_t none_len = 0;
    if (max < GW_KEYRING_MAX_VERSION) {
        FUZZ_CHECK(gw_secretbox_open(k, max + 1, zero_nonce, NULL, 0, junk, sizeof junk, &none,
                                     &none_len) != 0);
        FUZZ_CHECK(none == NULL && tsr_errcat() == TSR_E_STATE);
    }

    static const uint8_t aad[] = "sandbox-id\0OPENAI_API_KEY";
    static const uint8_t secret[] = "sk-fuzz-0123456789";
    uint32_t ver = 0;
    uint8_t nonce[GW_SECRETBOX_NONCE_LEN];
    uint8_t *ct = NULL, *pt = NULL;
    size_t ct_len = 0, pt_len = 0;
    FUZZ_CHECK(gw_secretbox_seal(k, aad, sizeof aad, secret, sizeof secret, &ver, nonce, &ct,
                                 &ct_len) == 0);
    FUZZ_CHECK(ver == cur && ct_len == sizeof secret + GW_SECRETBOX_TAG_LEN);
    FUZZ_CHECK(gw_secretbox_open(k, ver, nonce, aad, sizeof aad, ct, ct_len, &pt, &pt_len) == 0);
    FUZZ_CHECK(pt_len == sizeof secret && memcmp(pt, secret, pt_len) == 0);
    free(pt);
    pt = NULL;
    FUZZ_CHECK(gw_secretbox_open(k, ver, nonce, aad, sizeof aad - 1, ct, ct_len, &pt, &pt_len) != 0);
    FUZZ_CHECK(pt == NULL);
    ct[0] ^= 1;
    FUZZ_CHECK(gw_secretbox_open(k, ver, nonce, aad, sizeof aad, ct, ct_len, &pt, &pt_len) != 0);
    FUZZ_CHECK(pt == NULL);
    free(ct);
    gw_keyring_free(k);
    return 0;
}
