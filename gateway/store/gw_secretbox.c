#include "gw_secretbox.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tsr_fs.h"

struct gw_key {
    uint32_t version;
    uint8_t key[GW_SECRETBOX_KEY_LEN];
};

struct gw_keyring {
    size_t n;
    uint32_t current; /* index into keys of the highest version */
    struct gw_key keys[GW_KEYRING_MAX_KEYS];
};

/* ---- parsing -------------------------------------------------------------- */

static int hex_nibble(uint8_t c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

static int is_blank(uint8_t c) { return c == ' ' || c == '\t' || c == '\r'; }

/* One line [p, end) without its '\n'. Adds a key to k, or nothing for a
 * blank or comment line. */
static int parse_line(const char *name, size_t lineno, const uint8_t *p, const uint8_t *end,
                      gw_keyring *k)
{
    while (p < end && is_blank(*p)) p++;
    if (p == end || *p == '#') return 0;

    /* version: 1..GW_KEYRING_MAX_VERSION, no sign, no leading zero */
    const uint8_t *v0 = p;
    uint64_t version = 0;
    while (p < end && *p >= '0' && *p <= '9') {
        version = version * 10 + (uint64_t)(*p - '0');
        p++;
        TSR_ENSURE(p - v0 <= 9, TSR_E_INPUT, "%s line %zu: key version too large", name, lineno);
    }
    TSR_ENSURE(p > v0, TSR_E_INPUT, "%s line %zu: expected '<version> <64 hex chars>'", name,
               lineno);
    TSR_ENSURE(*v0 != '0', TSR_E_INPUT,
               "%s line %zu: key version must be a positive integer without leading zeros",
               name, lineno);
    TSR_ENSURE(p < end && is_blank(*p) && *p != '\r', TSR_E_INPUT,
               "%s line %zu: expected '<version> <64 hex chars>'", name, lineno);
    while (p < end && is_blank(*p)) p++;

    const uint8_t *h0 = p;
    while (p < end && !is_blank(*p)) p++;
    size_t hex_len = (size_t)(p - h0);
    const uint8_t *rest = p;
    while (rest < end && is_blank(*rest)) rest++;
    TSR_ENSURE(rest == end, TSR_E_INPUT, "%s line %zu: trailing garbage after the key", name,
               lineno);
    TSR_ENSURE(hex_len == 2 * GW_SECRETBOX_KEY_LEN, TSR_E_INPUT,
               "%s line %zu: key must be %d hex chars, not %zu", name, lineno,
               2 * GW_SECRETBOX_KEY_LEN, hex_len);

    for (size_t i = 0; i < k->n; i++)
        TSR_ENSURE(k->keys[i].version != version, TSR_E_INPUT,
                   "%s line %zu: duplicate key version %llu", name, lineno,
                   (unsigned long long)version);
    TSR_ENSURE(k->n < GW_KEYRING_MAX_KEYS, TSR_E_LIMIT, "%s: more than %d keys", name,
               GW_KEYRING_MAX_KEYS);

    struct gw_key *key = &k->keys[k->n];
    for (size_t i = 0; i < GW_SECRETBOX_KEY_LEN; i++) {
        int hi = hex_nibble(h0[2 * i]), lo = hex_nibble(h0[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            OPENSSL_cleanse(key->key, sizeof key->key);
            return TSR_FAIL(TSR_E_INPUT, "%s line %zu: key is not lowercase hex", name, lineno);
        }
        key->key[i] = (uint8_t)(hi << 4 | lo);
    }
    key->version = (uint32_t)version;
    if (k->n == 0 || key->version > k->keys[k->current].version) k->current = (uint32_t)k->n;
    k->n++;
    return 0;
}

int gw_keyring_parse(const char *name, const uint8_t *text, size_t len, gw_keyring **out)
{
    int rc = -1;
    gw_keyring *k = NULL;
    *out = NULL;
    TSR_TRY_ENSURE(len <= GW_KEYRING_MAX_FILE, TSR_E_LIMIT, "%s is larger than %d bytes", name,
                   GW_KEYRING_MAX_FILE);
    TSR_TRY_ENSURE(text != NULL || len == 0, TSR_E_INPUT, "%s: no text", name);
    TSR_TRY_ENSURE(len == 0 || memchr(text, '\0', len) == NULL, TSR_E_INPUT,
                   "%s contains a NUL byte", name);
    k = OPENSSL_zalloc(sizeof *k);
    TSR_TRY_ENSURE(k != NULL, TSR_E_INTERNAL, "out of memory");

    const uint8_t *p = text, *end = text + len;
    size_t lineno = 0;
    while (p < end) {
        const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
        const uint8_t *line_end = nl ? nl : end;
        lineno++;
        TSR_TRY(parse_line(name, lineno, p, line_end, k));
        p = nl ? nl + 1 : end;
    }
    TSR_TRY_ENSURE(k->n > 0, TSR_E_INPUT, "%s holds no keys", name);
    *out = k;
    k = NULL;
    rc = 0;
out:
    gw_keyring_free(k);
    return rc;
}

/* Read a keyring file, refusing one that others could read. */
static int read_keyring_file(const char *path, uint8_t **out, size_t *len)
{
    int rc = -1;
    uint8_t *buf = NULL;
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
    TSR_ENSURE(fd >= 0, errno == ENOENT ? TSR_E_NOTFOUND : TSR_E_IO, "open keyring %s: %s",
               path, strerror(errno));
    struct stat st;
    TSR_TRY_ENSURE(fstat(fd, &st) == 0, TSR_E_IO, "stat %s: %s", path, strerror(errno));
    TSR_TRY_ENSURE(S_ISREG(st.st_mode), TSR_E_INPUT, "keyring %s is not a regular file", path);
    TSR_TRY_ENSURE((st.st_mode & 077) == 0, TSR_E_DENIED,
                   "keyring %s is readable by others: chmod 600 %s", path, path);
    TSR_TRY_ENSURE(st.st_size <= GW_KEYRING_MAX_FILE, TSR_E_LIMIT,
                   "keyring %s is larger than %d bytes", path, GW_KEYRING_MAX_FILE);
    buf = OPENSSL_malloc(GW_KEYRING_MAX_FILE + 1);
    TSR_TRY_ENSURE(buf != NULL, TSR_E_INTERNAL, "out of memory");
    for (;;) {
        ssize_t r = read(fd, buf + got, GW_KEYRING_MAX_FILE + 1 - got);
        if (r < 0 && errno == EINTR) continue;
        TSR_TRY_ENSURE(r >= 0, TSR_E_IO, "read %s: %s", path, strerror(errno));
        if (r == 0) break;
        got += (size_t)r;
        TSR_TRY_ENSURE(got <= GW_KEYRING_MAX_FILE, TSR_E_LIMIT,
                       "keyring %s is larger than %d bytes", path, GW_KEYRING_MAX_FILE);
    }
    *out = buf;
    *len = got;
    buf = NULL;
    rc = 0;
out:
    if (buf != NULL) OPENSSL_clear_free(buf, GW_KEYRING_MAX_FILE + 1);
    close(fd);
    return rc;
}

int gw_keyring_load(const char *path, gw_keyring **out)
{
    uint8_t *text = NULL;
    size_t len = 0;
    *out = NULL;
    TSR_GUARD(read_keyring_file(path, &text, &len));
    int rc = gw_keyring_parse(path, text, len, out);
    OPENSSL_clear_free(text, GW_KEYRING_MAX_FILE + 1);
    return rc;
}

void gw_keyring_free(gw_keyring *k)
{
    if (k != NULL) OPENSSL_clear_free(k, sizeof *k);
}

uint32_t gw_keyring_current_version(const gw_keyring *k)
{
    return k->keys[k->current].version;
}

size_t gw_keyring_key_count(const gw_keyring *k) { return k->n; }

/* ---- key files ------------------------------------------------------------ */

/* "<version> <hex>\n" for a fresh random key into line (cap >= 80). */
static int random_key_line(uint32_t version, char *line, size_t cap)
{
    uint8_t key[GW_SECRETBOX_KEY_LEN];
    static const char digits[] = "0123456789abcdef";
    TSR_GUARD_OSSL(RAND_bytes(key, sizeof key), TSR_E_INTERNAL, "RAND_bytes");
    int n = snprintf(line, cap, "%u ", (unsigned)version);
    TSR_ASSERT(n > 0 && (size_t)n + 2 * sizeof key + 2 <= cap);
    char *p = line + n;
    for (size_t i = 0; i < sizeof key; i++) {
        *p++ = digits[key[i] >> 4];
        *p++ = digits[key[i] & 15];
    }
    *p++ = '\n';
    *p = '\0';
    OPENSSL_cleanse(key, sizeof key);
    return 0;
}

int gw_keyring_create_file(const char *path)
{
    static const char header[] =
        "# Tessera provider-secret keyring: '<version> <64 hex chars>' per line.\n"
        "# The highest version encrypts; keep older keys until re-encrypted.\n";
    char text[sizeof header + 96];
    TSR_ENSURE(!tsr_path_exists(path), TSR_E_EXISTS, "keyring %s already exists", path);
    memcpy(text, header, sizeof header);
    int rc = random_key_line(1, text + sizeof header - 1, sizeof text - (sizeof header - 1));
    if (rc == 0)
        rc = tsr_write_file_atomic(path, text, strlen(text), 0600, TSR_WRITE_NOREPLACE);
    OPENSSL_cleanse(text, sizeof text);
    return rc;
}

int gw_keyring_add_key_file(const char *path, uint32_t *new_version)
{
    int rc = -1;
    uint8_t *old = NULL;
    size_t old_len = 0;
    gw_keyring *k = NULL;
    char *text = NULL;
    size_t cap = 0;
    char line[96];

    TSR_TRY(read_keyring_file(path, &old, &old_len));
    TSR_TRY(gw_keyring_parse(path, old, old_len, &k));
    TSR_TRY_ENSURE(k->n < GW_KEYRING_MAX_KEYS, TSR_E_LIMIT,
                   "keyring %s already holds %d keys: re-encrypt and drop old ones first", path,
                   GW_KEYRING_MAX_KEYS);
    uint32_t version = gw_keyring_current_version(k);
    TSR_TRY_ENSURE(version < GW_KEYRING_MAX_VERSION, TSR_E_LIMIT,
                   "keyring %s: no key version left after %u", path, (unsigned)version);
    version++;
    TSR_TRY(random_key_line(version, line, sizeof line));

    size_t line_len = strlen(line);
    cap = old_len + 1 + line_len + 1;
    text = OPENSSL_malloc(cap);
    TSR_TRY_ENSURE(text != NULL, TSR_E_INTERNAL, "out of memory");
    size_t len = old_len;
    memcpy(text, old, old_len);
    if (len > 0 && text[len - 1] != '\n') text[len++] = '\n';
    memcpy(text + len, line, line_len);
    len += line_len;
    TSR_TRY_ENSURE(len <= GW_KEYRING_MAX_FILE, TSR_E_LIMIT,
                   "keyring %s would grow past %d bytes", path, GW_KEYRING_MAX_FILE);
    TSR_TRY(tsr_write_file_atomic(path, text, len, 0600, TSR_WRITE_REPLACE));
    if (new_version != NULL) *new_version = version;
    rc = 0;
out:
    OPENSSL_cleanse(line, sizeof line);
    if (old != NULL) OPENSSL_clear_free(old, GW_KEYRING_MAX_FILE + 1);
    if (text != NULL) OPENSSL_clear_free(text, cap);
    gw_keyring_free(k);
    return rc;
}

/* ---- AEAD ----------------------------------------------------------------- */

static const struct gw_key *find_key(const gw_keyring *k, uint32_t version)
{
    for (size_t i = 0; i < k->n; i++)
        if (k->keys[i].version == version) return &k->keys[i];
    return NULL;
}

int gw_secretbox_seal(const gw_keyring *k, const uint8_t *aad, size_t aad_len,
                      const uint8_t *plaintext, size_t len, uint32_t *key_version,
                      uint8_t nonce[GW_SECRETBOX_NONCE_LEN], uint8_t **ciphertext,
                      size_t *ct_len)
{
    int rc = -1, outl = 0;
    EVP_CIPHER_CTX *ctx = NULL;
    uint8_t *ct = NULL;
    *ciphertext = NULL;
    *ct_len = 0;
    TSR_TRY_ENSURE(k != NULL && k->n > 0, TSR_E_STATE, "no keyring loaded");
    TSR_TRY_ENSURE(len <= GW_SECRETBOX_MAX_PLAINTEXT && aad_len <= INT_MAX, TSR_E_LIMIT,
                   "secret of %zu bytes is too large", len);
    TSR_TRY_ENSURE(aad_len == 0 || aad != NULL, TSR_E_INPUT, "AAD missing");
    TSR_TRY_ENSURE(len == 0 || plaintext != NULL, TSR_E_INPUT, "plaintext missing");
    const struct gw_key *key = &k->keys[k->current];

    ct = malloc(len + GW_SECRETBOX_TAG_LEN);
    TSR_TRY_ENSURE(ct != NULL, TSR_E_INTERNAL, "out of memory");
    TSR_TRY_OSSL(RAND_bytes(nonce, GW_SECRETBOX_NONCE_LEN), TSR_E_INTERNAL, "RAND_bytes");
    ctx = EVP_CIPHER_CTX_new();
    TSR_TRY_ENSURE(ctx != NULL, TSR_E_INTERNAL, "out of memory");
    TSR_TRY_OSSL(EVP_EncryptInit_ex2(ctx, EVP_aes_256_gcm(), key->key, nonce, NULL),
                 TSR_E_INTERNAL, "AES-256-GCM init");
    if (aad_len > 0)
        TSR_TRY_OSSL(EVP_EncryptUpdate(ctx, NULL, &outl, aad, (int)aad_len), TSR_E_INTERNAL,
                     "AES-256-GCM AAD");
    size_t done = 0;
    if (len > 0) {
        TSR_TRY_OSSL(EVP_EncryptUpdate(ctx, ct, &outl, plaintext, (int)len), TSR_E_INTERNAL,
                     "AES-256-GCM encrypt");
        done = (size_t)outl;
    }
    TSR_TRY_OSSL(EVP_EncryptFinal_ex(ctx, ct + done, &outl), TSR_E_INTERNAL,
                 "AES-256-GCM final");
    done += (size_t)outl;
    TSR_TRY_ENSURE(done == len, TSR_E_INTERNAL, "AES-256-GCM produced %zu bytes for %zu", done,
                   len);
    TSR_TRY_OSSL(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, GW_SECRETBOX_TAG_LEN, ct + len),
                 TSR_E_INTERNAL, "AES-256-GCM tag");
    *key_version = key->version;
    *ciphertext = ct;
    *ct_len = len + GW_SECRETBOX_TAG_LEN;
    ct = NULL;
    rc = 0;
out:
    EVP_CIPHER_CTX_free(ctx);
    free(ct);
    return rc;
}

int gw_secretbox_open(const gw_keyring *k, uint32_t key_version,
                      const uint8_t nonce[GW_SECRETBOX_NONCE_LEN], const uint8_t *aad,
                      size_t aad_len, const uint8_t *ciphertext, size_t ct_len,
                      uint8_t **plaintext, size_t *len)
{
    int rc = -1, outl = 0;
    EVP_CIPHER_CTX *ctx = NULL;
    uint8_t *pt = NULL;
    size_t pt_len = 0;
    *plaintext = NULL;
    *len = 0;
    TSR_TRY_ENSURE(k != NULL && k->n > 0, TSR_E_STATE, "no keyring loaded");
    const struct gw_key *key = find_key(k, key_version);
    TSR_TRY_ENSURE(key != NULL, TSR_E_STATE, "secret was sealed with key version %u, which "
                   "is not in the keyring", (unsigned)key_version);
    TSR_TRY_ENSURE(ciphertext != NULL && ct_len >= GW_SECRETBOX_TAG_LEN, TSR_E_INPUT,
                   "sealed secret is truncated");
    TSR_TRY_ENSURE(ct_len - GW_SECRETBOX_TAG_LEN <= GW_SECRETBOX_MAX_PLAINTEXT &&
                       aad_len <= INT_MAX,
                   TSR_E_LIMIT, "sealed secret of %zu bytes is too large", ct_len);
    TSR_TRY_ENSURE(aad_len == 0 || aad != NULL, TSR_E_INPUT, "AAD missing");
    pt_len = ct_len - GW_SECRETBOX_TAG_LEN;
    pt = malloc(pt_len + 1);
    TSR_TRY_ENSURE(pt != NULL, TSR_E_INTERNAL, "out of memory");

    ctx = EVP_CIPHER_CTX_new();
    TSR_TRY_ENSURE(ctx != NULL, TSR_E_INTERNAL, "out of memory");
    TSR_TRY_OSSL(EVP_DecryptInit_ex2(ctx, EVP_aes_256_gcm(), key->key, nonce, NULL),
                 TSR_E_INTERNAL, "AES-256-GCM init");
    if (aad_len > 0)
        TSR_TRY_OSSL(EVP_DecryptUpdate(ctx, NULL, &outl, aad, (int)aad_len), TSR_E_INTERNAL,
                     "AES-256-GCM AAD");
    size_t done = 0;
    if (pt_len > 0) {
        TSR_TRY_OSSL(EVP_DecryptUpdate(ctx, pt, &outl, ciphertext, (int)pt_len),
                     TSR_E_INTERNAL, "AES-256-GCM decrypt");
        done = (size_t)outl;
    }
    uint8_t tag[GW_SECRETBOX_TAG_LEN];
    memcpy(tag, ciphertext + pt_len, sizeof tag);
    TSR_TRY_OSSL(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, sizeof tag, tag),
                 TSR_E_INTERNAL, "AES-256-GCM tag");
    if (EVP_DecryptFinal_ex(ctx, pt + done, &outl) != 1) {
        (void)TSR_FAIL_OSSL(TSR_E_INPUT,
                            "sealed secret failed authentication (tampered, moved, or "
                            "sealed under another key)");
        goto out;
    }
    done += (size_t)outl;
    TSR_TRY_ENSURE(done == pt_len, TSR_E_INTERNAL, "AES-256-GCM produced %zu bytes for %zu",
                   done, pt_len);
    pt[pt_len] = '\0';
    *plaintext = pt;
    *len = pt_len;
    pt = NULL;
    rc = 0;
out:
    EVP_CIPHER_CTX_free(ctx);
    if (pt != NULL) {
        OPENSSL_cleanse(pt, pt_len + 1);
        free(pt);
    }
    return rc;
}
