/* Provider-secret encryption at rest: AES-256-GCM under versioned keys.
 *
 * A keyring is a text file (mode 0600) with one key per line:
 *
 *     # comment
 *     1 <64 lowercase hex chars>
 *     2 <64 lowercase hex chars>
 *
 * The highest version encrypts; every version decrypts, so the key can be
 * rotated (gw_keyring_add_key_file, then gw_store_env_reencrypt) without
 * losing old values. A loaded keyring is read-only and may be shared by
 * threads; it must outlive every gw_store opened with it.
 *
 * Each seal draws a fresh random 96-bit nonce. The ciphertext carries the
 * 16-byte GCM tag at its end. Opening anything that was not sealed by this
 * keyring with the same AAD (tampered bytes, other AAD, unknown key version)
 * fails and never yields plaintext. */
#ifndef GW_SECRETBOX_H
#define GW_SECRETBOX_H

#include <stddef.h>
#include <stdint.h>

#include "tsr_err.h"

#define GW_SECRETBOX_KEY_LEN 32
#define GW_SECRETBOX_NONCE_LEN 12
#define GW_SECRETBOX_TAG_LEN 16
#define GW_SECRETBOX_MAX_PLAINTEXT (16u * 1024 * 1024)
#define GW_KEYRING_MAX_KEYS 64
#define GW_KEYRING_MAX_FILE (64 * 1024)
#define GW_KEYRING_MAX_VERSION 999999999u

typedef struct gw_keyring gw_keyring;

/* Load and validate a keyring file. Refused (nothing loaded): a file readable
 * or writable by group/other (TSR_E_DENIED "keyring X is readable by others:
 * chmod 600 X"), not a regular file, larger than GW_KEYRING_MAX_FILE
 * (TSR_E_LIMIT), more than GW_KEYRING_MAX_KEYS keys (TSR_E_LIMIT), and
 * (TSR_E_INPUT, with the line number) bad or uppercase hex, a key of the
 * wrong length, a version that is not 1..GW_KEYRING_MAX_VERSION without
 * leading zeros, duplicate versions, trailing garbage, NUL bytes, no keys. */
TSR_WUR int gw_keyring_load(const char *path, gw_keyring **out);

/* The same checks on text already in memory (`name` is used in messages). */
TSR_WUR int gw_keyring_parse(const char *name, const uint8_t *text, size_t len,
                             gw_keyring **out);

/* Cleanses the key material. NULL is fine. */
void gw_keyring_free(gw_keyring *k);

/* The version new seals use (the highest in the ring). */
uint32_t gw_keyring_current_version(const gw_keyring *k);
size_t gw_keyring_key_count(const gw_keyring *k);

/* Create a new keyring file, mode 0600, holding one random key, version 1.
 * An existing file is never overwritten (TSR_E_EXISTS). */
TSR_WUR int gw_keyring_create_file(const char *path);

/* Rotation: append a new random key with version (highest + 1) to an
 * existing, valid keyring file (rewritten atomically, mode 0600, comments
 * kept). `new_version` (may be NULL) receives the new key's version. */
TSR_WUR int gw_keyring_add_key_file(const char *path, uint32_t *new_version);

/* Encrypt under the current key. On success *ciphertext (malloc'd, free())
 * holds ct_len = len + GW_SECRETBOX_TAG_LEN bytes; *key_version and `nonce`
 * say how to open it. aad may be NULL when aad_len is 0. */
TSR_WUR int gw_secretbox_seal(const gw_keyring *k, const uint8_t *aad, size_t aad_len,
                              const uint8_t *plaintext, size_t len, uint32_t *key_version,
                              uint8_t nonce[GW_SECRETBOX_NONCE_LEN], uint8_t **ciphertext,
                              size_t *ct_len);

/* Decrypt and authenticate. On success *plaintext is a fresh buffer of
 * *len bytes plus a terminating NUL (it holds a secret: OPENSSL_cleanse it
 * before free()). Unknown key version -> TSR_E_STATE; short or tampered
 * ciphertext, wrong nonce or AAD -> TSR_E_INPUT. */
TSR_WUR int gw_secretbox_open(const gw_keyring *k, uint32_t key_version,
                              const uint8_t nonce[GW_SECRETBOX_NONCE_LEN], const uint8_t *aad,
                              size_t aad_len, const uint8_t *ciphertext, size_t ct_len,
                              uint8_t **plaintext, size_t *len);

#endif
