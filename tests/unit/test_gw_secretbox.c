/* gw_secretbox: keyring files and AES-256-GCM sealing. Failure cases first. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#include "gw_secretbox.h"
#include "tsr_err.h"
#include "tu_fs.h"

#define HEX_A "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define HEX_B "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
#define HEX_C "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"

static void check_fail(int rc, enum tsr_errcat cat, const char *expr, const char *file,
                       int line)
{
    if (rc != -1 || tsr_errcat() != cat) {
        print_error("%s: rc %d, category '%s' (%s), expected '%s'\n", expr, rc,
                    tsr_errcat_name(tsr_errcat()), tsr_errmsg(), tsr_errcat_name(cat));
        _fail(file, line);
    }
}
#define EXPECT_FAIL(call, cat)                                                                 \
    do {                                                                                       \
        tsr_err_clear();                                                                       \
        check_fail((call), (cat), #call, __FILE__, __LINE__);                                  \
    } while (0)
#define EXPECT_OK(call)                                                                        \
    do {                                                                                       \
        if ((call) != 0) {                                                                     \
            print_error("%s failed: %s (%s)\n", #call, tsr_errmsg(), tsr_errloc());            \
            _fail(__FILE__, __LINE__);                                                         \
        }                                                                                      \
    } while (0)

/* ---- temp dirs ---------------------------------------------------------------- */

struct fx {
    char dir[64];
    char path[128];
};

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(p);
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(tu_temp_path(f->dir, sizeof f->dir, "tsr-secretbox-XXXXXX"), 0);
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/keyring", f->dir);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void write_file(const char *path, const char *text, size_t len, mode_t mode)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static gw_keyring *parse_ok(const char *text)
{
    gw_keyring *k = NULL;
    EXPECT_OK(gw_keyring_parse("test", (const uint8_t *)text, strlen(text), &k));
    return k;
}

/* ---- keyring parsing ------------------------------------------------------------ */

static void test_parse_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *what, *text;
        enum tsr_errcat cat;
    } cases[] = {
        {"empty", "", TSR_E_INPUT},
        {"comments only", "# nothing\n\n   \n", TSR_E_INPUT},
        {"version only", "1\n", TSR_E_INPUT},
        {"version and space", "1 \n", TSR_E_INPUT},
        {"no version", HEX_A "\n", TSR_E_INPUT},
        {"version 0", "0 " HEX_A "\n", TSR_E_INPUT},
        {"leading zero", "01 " HEX_A "\n", TSR_E_INPUT},
        {"negative", "-1 " HEX_A "\n", TSR_E_INPUT},
        {"plus sign", "+1 " HEX_A "\n", TSR_E_INPUT},
        {"version too large", "1000000000 " HEX_A "\n", TSR_E_INPUT},
        {"letters in version", "1a " HEX_A "\n", TSR_E_INPUT},
        {"truncated key", "1 00112233445566778899aabbccddeeff\n", TSR_E_INPUT},
        {"65 hex chars", "1 " HEX_A "0\n", TSR_E_INPUT},
        {"bad hex", "1 g0112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n",
         TSR_E_INPUT},
        {"uppercase hex", "1 00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff\n",
         TSR_E_INPUT},
        {"trailing garbage", "1 " HEX_A " extra\n", TSR_E_INPUT},
        {"trailing comment", "1 " HEX_A " # mine\n", TSR_E_INPUT},
        {"duplicate version", "1 " HEX_A "\n1 " HEX_B "\n", TSR_E_INPUT},
        {"duplicate after others", "3 " HEX_A "\n1 " HEX_B "\n3 " HEX_C "\n", TSR_E_INPUT},
        {"good then bad", "1 " HEX_A "\n2 " HEX_B "x\n", TSR_E_INPUT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gw_keyring *k = (gw_keyring *)1;
        tsr_err_clear();
        int rc = gw_keyring_parse("test", (const uint8_t *)cases[i].text,
                                  strlen(cases[i].text), &k);
        if (rc != -1 || tsr_errcat() != cases[i].cat || k != NULL) {
            print_error("case '%s': rc %d cat %s (%s)\n", cases[i].what, rc,
                        tsr_errcat_name(tsr_errcat()), tsr_errmsg());
            fail();
        }
    }
    /* 63 hex chars */
    char text[128];
    snprintf(text, sizeof text, "1 %.63s\n", HEX_A);
    gw_keyring *k = NULL;
    EXPECT_FAIL(gw_keyring_parse("test", (const uint8_t *)text, strlen(text), &k), TSR_E_INPUT);
    assert_null(k);
    /* the line number is in the message */
    const char *two = "# a\n1 " HEX_A "\n2 zz\n";
    EXPECT_FAIL(gw_keyring_parse("ring", (const uint8_t *)two, strlen(two), &k), TSR_E_INPUT);
    assert_non_null(strstr(tsr_errmsg(), "ring line 3"));
}

static void test_parse_nul_embedded(void **state)
{
    (void)state;
    char text[] = "1 " HEX_A "\n# x\n";
    size_t len = sizeof text - 1;
    gw_keyring *k = NULL;
    for (size_t pos = 0; pos < len; pos++) {
        char copy[sizeof text];
        memcpy(copy, text, sizeof text);
        copy[pos] = '\0';
        EXPECT_FAIL(gw_keyring_parse("t", (const uint8_t *)copy, len, &k), TSR_E_INPUT);
        assert_null(k);
    }
}

static void test_parse_limits(void **state)
{
    (void)state;
    /* 65 keys: refused; 64: accepted */
    size_t cap = 80 * 70;
    char *text = calloc(1, cap);
    assert_non_null(text);
    size_t len = 0;
    for (int v = 1; v <= 65; v++)
        len += (size_t)snprintf(text + len, cap - len, "%d %s\n", v, v % 2 ? HEX_A : HEX_B);
    gw_keyring *k = NULL;
    EXPECT_FAIL(gw_keyring_parse("t", (const uint8_t *)text, len, &k), TSR_E_LIMIT);
    assert_null(k);
    char *last = strstr(text, "\n65 ");
    assert_non_null(last);
    EXPECT_OK(gw_keyring_parse("t", (const uint8_t *)text, (size_t)(last - text) + 1, &k));
    assert_int_equal(gw_keyring_key_count(k), 64);
    assert_int_equal(gw_keyring_current_version(k), 64);
    gw_keyring_free(k);
    free(text);

    /* over 64 KiB (comments), even though the key itself is fine */
    size_t big = GW_KEYRING_MAX_FILE + 1;
    text = malloc(big);
    assert_non_null(text);
    memset(text, '#', big);
    const char *line = "1 " HEX_A "\n";
    memcpy(text, line, strlen(line));
    text[big - 1] = '\n';
    EXPECT_FAIL(gw_keyring_parse("t", (const uint8_t *)text, big, &k), TSR_E_LIMIT);
    EXPECT_OK(gw_keyring_parse("t", (const uint8_t *)text, big - 1, &k));
    gw_keyring_free(k);
    free(text);
}

static void test_parse_accepts(void **state)
{
    (void)state;
    gw_keyring *k = parse_ok("# header\n\n  1 " HEX_A "  \r\n\t# c\n5\t" HEX_B "\n2 " HEX_C);
    assert_int_equal(gw_keyring_key_count(k), 3);
    assert_int_equal(gw_keyring_current_version(k), 5); /* highest, not last */
    gw_keyring_free(k);
    k = parse_ok("999999999 " HEX_A "\n");
    assert_int_equal(gw_keyring_current_version(k), 999999999u);
    gw_keyring_free(k);
}

/* ---- keyring files --------------------------------------------------------------- */

static void test_load_refusals(void **state)
{
    struct fx *f = *state;
    const char *good = "1 " HEX_A "\n";
    gw_keyring *k = NULL;

    EXPECT_FAIL(gw_keyring_load(f->path, &k), TSR_E_NOTFOUND);

    static const mode_t bad_modes[] = {0640, 0604, 0644, 0620, 0602, 0660, 0610, 0601};
    for (size_t i = 0; i < sizeof bad_modes / sizeof bad_modes[0]; i++) {
        write_file(f->path, good, strlen(good), bad_modes[i]);
        EXPECT_FAIL(gw_keyring_load(f->path, &k), TSR_E_DENIED);
        assert_null(k);
        char want[512];
        snprintf(want, sizeof want, "keyring %s is readable by others: chmod 600 %s", f->path,
                 f->path);
        assert_string_equal(tsr_errmsg(), want);
    }

    /* a symlink to a good keyring is not followed */
    char real[160];
    snprintf(real, sizeof real, "%s/real", f->dir);
    write_file(real, good, strlen(good), 0600);
    unlink(f->path);
    assert_int_equal(symlink(real, f->path), 0);
    EXPECT_FAIL(gw_keyring_load(f->path, &k), TSR_E_IO);
    unlink(f->path);

    /* a directory */
    assert_int_equal(mkdir(f->path, 0700), 0);
    EXPECT_FAIL(gw_keyring_load(f->path, &k), TSR_E_INPUT);
    assert_int_equal(rmdir(f->path), 0);

    /* too large a file */
    size_t big = GW_KEYRING_MAX_FILE + 10;
    char *text = malloc(big);
    assert_non_null(text);
    memset(text, '\n', big);
    memcpy(text, good, strlen(good));
    write_file(f->path, text, big, 0600);
    free(text);
    EXPECT_FAIL(gw_keyring_load(f->path, &k), TSR_E_LIMIT);

    /* content errors come through too */
    write_file(f->path, "1 " HEX_A "\n1 " HEX_B "\n", 2 * (strlen(good)), 0600);
    EXPECT_FAIL(gw_keyring_load(f->path, &k), TSR_E_INPUT);
    write_file(f->path, "", 0, 0600);
    EXPECT_FAIL(gw_keyring_load(f->path, &k), TSR_E_INPUT);
    assert_null(k);

    write_file(f->path, good, strlen(good), 0600);
    EXPECT_OK(gw_keyring_load(f->path, &k));
    assert_int_equal(gw_keyring_current_version(k), 1);
    gw_keyring_free(k);
    write_file(f->path, good, strlen(good), 0400);
    EXPECT_OK(gw_keyring_load(f->path, &k));
    gw_keyring_free(k);
}

static void test_create_file(void **state)
{
    struct fx *f = *state;
    gw_keyring *k = NULL;
    EXPECT_OK(gw_keyring_create_file(f->path));
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    EXPECT_OK(gw_keyring_load(f->path, &k));
    assert_int_equal(gw_keyring_key_count(k), 1);
    assert_int_equal(gw_keyring_current_version(k), 1);

    /* refuses to overwrite: the old key still opens what it sealed */
    uint8_t nonce[GW_SECRETBOX_NONCE_LEN], *ct = NULL, *pt = NULL;
    size_t ct_len = 0, pt_len = 0;
    uint32_t ver = 0;
    EXPECT_OK(gw_secretbox_seal(k, NULL, 0, (const uint8_t *)"x", 1, &ver, nonce, &ct, &ct_len));
    EXPECT_FAIL(gw_keyring_create_file(f->path), TSR_E_EXISTS);
    gw_keyring *k2 = NULL;
    EXPECT_OK(gw_keyring_load(f->path, &k2));
    EXPECT_OK(gw_secretbox_open(k2, ver, nonce, NULL, 0, ct, ct_len, &pt, &pt_len));
    assert_int_equal(pt_len, 1);
    free(pt);
    free(ct);
    gw_keyring_free(k);
    gw_keyring_free(k2);

    /* two fresh keyrings hold different keys */
    char other[160];
    snprintf(other, sizeof other, "%s/other", f->dir);
    EXPECT_OK(gw_keyring_create_file(other));
    EXPECT_OK(gw_keyring_load(other, &k2));
    EXPECT_OK(gw_keyring_load(f->path, &k));
    EXPECT_OK(gw_secretbox_seal(k, NULL, 0, (const uint8_t *)"x", 1, &ver, nonce, &ct, &ct_len));
    EXPECT_FAIL(gw_secretbox_open(k2, ver, nonce, NULL, 0, ct, ct_len, &pt, &pt_len),
                TSR_E_INPUT);
    free(ct);
    gw_keyring_free(k);
    gw_keyring_free(k2);
}

static void test_rotation(void **state)
{
    struct fx *f = *state;
    gw_keyring *k1 = NULL, *k2 = NULL;
    uint32_t v = 0;
    EXPECT_FAIL(gw_keyring_add_key_file(f->path, &v), TSR_E_NOTFOUND);
    /* a file without a final newline keeps its comment and gains a line */
    const char *orig = "# mine\n1 " HEX_A;
    write_file(f->path, orig, strlen(orig), 0600);
    EXPECT_OK(gw_keyring_load(f->path, &k1));
    EXPECT_OK(gw_keyring_add_key_file(f->path, &v));
    assert_int_equal(v, 2);
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    EXPECT_OK(gw_keyring_load(f->path, &k2));
    assert_int_equal(gw_keyring_key_count(k2), 2);
    assert_int_equal(gw_keyring_current_version(k2), 2);

    /* old ciphertext opens with the rotated ring; new seals use v2, which
     * the old ring cannot open */
    uint8_t nonce[GW_SECRETBOX_NONCE_LEN], *ct = NULL, *pt = NULL;
    size_t ct_len = 0, pt_len = 0;
    uint32_t ver = 0;
    const char *secret = "hunter2";
    EXPECT_OK(gw_secretbox_seal(k1, NULL, 0, (const uint8_t *)secret, 7, &ver, nonce, &ct,
                                &ct_len));
    assert_int_equal(ver, 1);
    EXPECT_OK(gw_secretbox_open(k2, ver, nonce, NULL, 0, ct, ct_len, &pt, &pt_len));
    assert_memory_equal(pt, secret, 7);
    free(pt);
    free(ct);
    EXPECT_OK(gw_secretbox_seal(k2, NULL, 0, (const uint8_t *)secret, 7, &ver, nonce, &ct,
                                &ct_len));
    assert_int_equal(ver, 2);
    EXPECT_FAIL(gw_secretbox_open(k1, ver, nonce, NULL, 0, ct, ct_len, &pt, &pt_len),
                TSR_E_STATE);
    assert_null(pt);
    free(ct);
    gw_keyring_free(k1);
    gw_keyring_free(k2);

    EXPECT_OK(gw_keyring_add_key_file(f->path, &v));
    assert_int_equal(v, 3);

    /* refusals: group-readable file, full ring, invalid content */
    assert_int_equal(chmod(f->path, 0640), 0);
    EXPECT_FAIL(gw_keyring_add_key_file(f->path, &v), TSR_E_DENIED);
    char *text = calloc(1, 80 * 64);
    assert_non_null(text);
    size_t len = 0;
    for (int i = 1; i <= 64; i++)
        len += (size_t)snprintf(text + len, 80 * 64 - len, "%d %s\n", i, HEX_A);
    write_file(f->path, text, len, 0600);
    EXPECT_FAIL(gw_keyring_add_key_file(f->path, &v), TSR_E_LIMIT);
    free(text);
    write_file(f->path, "1 nothex\n", 9, 0600);
    EXPECT_FAIL(gw_keyring_add_key_file(f->path, &v), TSR_E_INPUT);
}

/* ---- sealing ---------------------------------------------------------------------- */

static const uint8_t aad_fixed[] = "tessera-env-v1\0sandbox\0NAME";

static void test_open_tampered(void **state)
{
    (void)state;
    gw_keyring *k = parse_ok("1 " HEX_A "\n2 " HEX_B "\n");
    const char *secret = "sk-live-0123456789abcdef";
    size_t slen = strlen(secret);
    uint8_t nonce[GW_SECRETBOX_NONCE_LEN], *ct = NULL, *pt = NULL;
    size_t ct_len = 0, pt_len = 0;
    uint32_t ver = 0;
    EXPECT_OK(gw_secretbox_seal(k, aad_fixed, sizeof aad_fixed, (const uint8_t *)secret, slen,
                                &ver, nonce, &ct, &ct_len));
    assert_int_equal(ver, 2);
    assert_int_equal(ct_len, slen + GW_SECRETBOX_TAG_LEN);
    assert_null(memmem(ct, ct_len, secret, slen));

    /* every bit position of ciphertext and tag */
    for (size_t i = 0; i < ct_len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            ct[i] ^= (uint8_t)(1u << bit);
            pt = (uint8_t *)1;
            EXPECT_FAIL(gw_secretbox_open(k, ver, nonce, aad_fixed, sizeof aad_fixed, ct,
                                          ct_len, &pt, &pt_len),
                        TSR_E_INPUT);
            assert_null(pt);
            ct[i] ^= (uint8_t)(1u << bit);
        }
    }
    /* nonce */
    for (size_t i = 0; i < sizeof nonce; i++) {
        nonce[i] ^= 0x01;
        EXPECT_FAIL(gw_secretbox_open(k, ver, nonce, aad_fixed, sizeof aad_fixed, ct, ct_len,
                                      &pt, &pt_len),
                    TSR_E_INPUT);
        nonce[i] ^= 0x01;
    }
    /* AAD: each byte changed, shorter, longer, absent */
    uint8_t aad[sizeof aad_fixed + 1];
    memcpy(aad, aad_fixed, sizeof aad_fixed);
    aad[sizeof aad_fixed] = 'X';
    for (size_t i = 0; i < sizeof aad_fixed; i++) {
        aad[i] ^= 0x20;
        EXPECT_FAIL(gw_secretbox_open(k, ver, nonce, aad, sizeof aad_fixed, ct, ct_len, &pt,
                                      &pt_len),
                    TSR_E_INPUT);
        aad[i] ^= 0x20;
    }
    EXPECT_FAIL(gw_secretbox_open(k, ver, nonce, aad, sizeof aad_fixed - 1, ct, ct_len, &pt,
                                  &pt_len),
                TSR_E_INPUT);
    EXPECT_FAIL(gw_secretbox_open(k, ver, nonce, aad, sizeof aad, ct, ct_len, &pt, &pt_len),
                TSR_E_INPUT);
    EXPECT_FAIL(gw_secretbox_open(k, ver, nonce, NULL, 0, ct, ct_len, &pt, &pt_len),
                TSR_E_INPUT);
    /* truncated / extended ciphertext */
    EXPECT_FAIL(gw_secretbox_open(k, ver, nonce, aad_fixed, sizeof aad_fixed, ct, ct_len - 1,
                                  &pt, &pt_len),
                TSR_E_INPUT);
    EXPECT_FAIL(gw_secretbox_open(k, ver, nonce, aad_fixed, sizeof aad_fixed, ct,
                                  GW_SECRETBOX_TAG_LEN - 1, &pt, &pt_len),
                TSR_E_INPUT);
    EXPECT_FAIL(gw_secretbox_open(k, ver, nonce, aad_fixed, sizeof aad_fixed, ct, 0, &pt,
                                  &pt_len),
                TSR_E_INPUT);
    uint8_t *longer = malloc(ct_len + 1);
    assert_non_null(longer);
    memcpy(longer, ct, ct_len);
    longer[ct_len] = 0;
    EXPECT_FAIL(gw_secretbox_open(k, ver, nonce, aad_fixed, sizeof aad_fixed, longer,
                                  ct_len + 1, &pt, &pt_len),
                TSR_E_INPUT);
    free(longer);
    /* other key version of the same ring, unknown version */
    EXPECT_FAIL(gw_secretbox_open(k, 1, nonce, aad_fixed, sizeof aad_fixed, ct, ct_len, &pt,
                                  &pt_len),
                TSR_E_INPUT);
    EXPECT_FAIL(gw_secretbox_open(k, 3, nonce, aad_fixed, sizeof aad_fixed, ct, ct_len, &pt,
                                  &pt_len),
                TSR_E_STATE);
    EXPECT_FAIL(gw_secretbox_open(k, 0, nonce, aad_fixed, sizeof aad_fixed, ct, ct_len, &pt,
                                  &pt_len),
                TSR_E_STATE);
    assert_null(pt);
    /* no keyring */
    EXPECT_FAIL(gw_secretbox_open(NULL, ver, nonce, aad_fixed, sizeof aad_fixed, ct, ct_len,
                                  &pt, &pt_len),
                TSR_E_STATE);

    /* and the untouched one still opens */
    EXPECT_OK(gw_secretbox_open(k, ver, nonce, aad_fixed, sizeof aad_fixed, ct, ct_len, &pt,
                                &pt_len));
    assert_int_equal(pt_len, slen);
    assert_memory_equal(pt, secret, slen);
    assert_int_equal(pt[pt_len], 0);
    OPENSSL_cleanse(pt, pt_len);
    free(pt);
    free(ct);
    gw_keyring_free(k);
}

static void test_seal_refusals(void **state)
{
    (void)state;
    uint8_t nonce[GW_SECRETBOX_NONCE_LEN], *ct = (uint8_t *)1;
    size_t ct_len = 0;
    uint32_t ver = 0;
    EXPECT_FAIL(gw_secretbox_seal(NULL, NULL, 0, (const uint8_t *)"x", 1, &ver, nonce, &ct,
                                  &ct_len),
                TSR_E_STATE);
    assert_null(ct);
    gw_keyring *k = parse_ok("1 " HEX_A "\n");
    EXPECT_FAIL(gw_secretbox_seal(k, NULL, 0, (const uint8_t *)"x",
                                  (size_t)GW_SECRETBOX_MAX_PLAINTEXT + 1, &ver, nonce, &ct,
                                  &ct_len),
                TSR_E_LIMIT);
    EXPECT_FAIL(gw_secretbox_seal(k, NULL, 3, (const uint8_t *)"x", 1, &ver, nonce, &ct,
                                  &ct_len),
                TSR_E_INPUT);
    gw_keyring_free(k);
}

static void test_seal_round_trip(void **state)
{
    (void)state;
    gw_keyring *k = parse_ok("7 " HEX_C "\n");
    static const size_t sizes[] = {0, 1, 15, 16, 17, 4096, 1024 * 1024};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        uint8_t *msg = malloc(n + 1);
        assert_non_null(msg);
        for (size_t j = 0; j < n; j++) msg[j] = (uint8_t)(j * 31 + 7);
        uint8_t n1[GW_SECRETBOX_NONCE_LEN], n2[GW_SECRETBOX_NONCE_LEN];
        uint8_t *c1 = NULL, *c2 = NULL, *pt = NULL;
        size_t l1 = 0, l2 = 0, pl = 0;
        uint32_t v1 = 0, v2 = 0;
        EXPECT_OK(gw_secretbox_seal(k, (const uint8_t *)"a", 1, msg, n, &v1, n1, &c1, &l1));
        EXPECT_OK(gw_secretbox_seal(k, (const uint8_t *)"a", 1, msg, n, &v2, n2, &c2, &l2));
        assert_int_equal(v1, 7);
        assert_int_equal(l1, n + GW_SECRETBOX_TAG_LEN);
        /* fresh nonce per seal, so equal plaintexts seal differently */
        assert_memory_not_equal(n1, n2, sizeof n1);
        assert_memory_not_equal(c1, c2, l1);
        EXPECT_OK(gw_secretbox_open(k, v1, n1, (const uint8_t *)"a", 1, c1, l1, &pt, &pl));
        assert_int_equal(pl, n);
        if (n > 0) assert_memory_equal(pt, msg, n);
        free(pt);
        /* swapping nonces between the two fails */
        EXPECT_FAIL(gw_secretbox_open(k, v1, n2, (const uint8_t *)"a", 1, c1, l1, &pt, &pl),
                    TSR_E_INPUT);
        free(c1);
        free(c2);
        free(msg);
    }
    gw_keyring_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_refusals),
        cmocka_unit_test(test_parse_nul_embedded),
        cmocka_unit_test(test_parse_limits),
        cmocka_unit_test(test_parse_accepts),
        cmocka_unit_test_setup_teardown(test_load_refusals, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_create_file, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_rotation, fx_setup, fx_teardown),
        cmocka_unit_test(test_open_tampered),
        cmocka_unit_test(test_seal_refusals),
        cmocka_unit_test(test_seal_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
