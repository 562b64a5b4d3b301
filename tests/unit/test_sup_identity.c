/* sup_identity: the identity directory's refusals first (each with its
 * message), then loading and verification, then the crash-safe pair write
 * and the recovery from a crash between its steps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../supervisor/sup_identity.c"
#include "tsr_time.h"
#include "tu_suppki.h"

#define TD "tessera.local"
#define SB_UUID "0f8e6c4a-3b1d-4e2f-9a7c-5d6e7f809a1b"
#define SB_ID "spiffe://" TD "/sandbox/" SB_UUID
#define OTHER_ID "spiffe://" TD "/sandbox/11111111-2222-4333-8444-555555555555"

static int64_t g_now;

typedef struct fixture {
    tu_pki pki;
    tu_leaf leaf;
    char *dir;
} fixture;

/* A valid identity directory: 0700, cert/key/bundle 0600. */
static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(tu_pki_init(&f->pki, TD, g_now), 0);
    assert_int_equal(tu_pki_leaf(&f->pki, SB_ID, NULL, g_now, 3600, &f->leaf), 0);
    f->dir = tu_scratch_dir("supid");
    assert_non_null(f->dir);
    assert_int_equal(tu_write_identity(f->dir, &f->pki, &f->leaf), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    tu_rm_rf(f->dir);
    free(f->dir);
    tu_leaf_free(&f->leaf);
    tu_pki_free(&f->pki);
    free(f);
    return 0;
}

static void expect_refusal(fixture *f, const char *needle)
{
    sup_identity *id = NULL;
    enum ca_verify_reason reason;
    tsr_err_clear();
    int rc = sup_identity_load(f->dir, TD, 0, &reason, &id);
    if (rc == 0) {
        sup_identity_free(id);
        fail_msg("loaded; expected a refusal containing \"%s\"", needle);
    }
    assert_null(id);
    if (strstr(tsr_errmsg(), needle) == NULL)
        fail_msg("error \"%s\" does not contain \"%s\"", tsr_errmsg(), needle);
}

/* Alternating buffers, so one call can take two paths. */
static char *path_of(const fixture *f, const char *name)
{
    static char bufs[2][4096];
    static int next;
    char *p = bufs[next];
    next ^= 1;
    snprintf(p, sizeof bufs[0], "%s/%s", f->dir, name);
    return p;
}

/* ---- refusals ------------------------------------------------------------------- */

static void test_dir_0755_refused(void **state)
{
    fixture *f = *state;
    assert_int_equal(chmod(f->dir, 0755), 0);
    assert_int_equal(sup_identity_check_dir(f->dir), -1);
    assert_non_null(strstr(tsr_errmsg(), "mode 0755"));
    expect_refusal(f, "must be 0700");
    /* 0710 and 0701 too: any group/other bit. */
    assert_int_equal(chmod(f->dir, 0710), 0);
    expect_refusal(f, "mode 0710");
    assert_int_equal(chmod(f->dir, 0701), 0);
    expect_refusal(f, "mode 0701");
}

static void test_dir_symlink_refused(void **state)
{
    fixture *f = *state;
    char link[4200];
    snprintf(link, sizeof link, "%s-link", f->dir);
    assert_int_equal(symlink(f->dir, link), 0);
    tsr_err_clear();
    assert_int_equal(sup_identity_check_dir(link), -1);
    assert_non_null(strstr(tsr_errmsg(), "is a symlink"));
    unlink(link);
}

static void test_dir_missing_or_file(void **state)
{
    fixture *f = *state;
    char p[4200];
    snprintf(p, sizeof p, "%s/nope", f->dir);
    assert_int_equal(sup_identity_check_dir(p), -1);
    assert_int_equal(tsr_errcat(), TSR_E_NOTFOUND);
    assert_int_equal(sup_identity_check_dir(path_of(f, "cert.pem")), -1);
    assert_non_null(strstr(tsr_errmsg(), "not a directory"));
    assert_int_equal(sup_identity_check_dir(""), -1);
}

static void test_key_0640_refused(void **state)
{
    fixture *f = *state;
    assert_int_equal(chmod(path_of(f, "key.pem"), 0640), 0);
    expect_refusal(f, "key.pem has mode 0640");
}

static void test_key_0604_refused(void **state)
{
    fixture *f = *state;
    assert_int_equal(chmod(path_of(f, "key.pem"), 0604), 0);
    expect_refusal(f, "key.pem has mode 0604");
}

static void test_key_group_writable_refused(void **state)
{
    fixture *f = *state;
    assert_int_equal(chmod(path_of(f, "key.pem"), 0620), 0);
    expect_refusal(f, "must not be readable or writable by group or others");
}

static void test_mismatched_pair_refused(void **state)
{
    fixture *f = *state;
    tu_leaf other;
    assert_int_equal(tu_pki_leaf(&f->pki, SB_ID, NULL, g_now, 3600, &other), 0);
    assert_int_equal(tu_write(f->dir, "key.pem", other.key_pem, other.key_len, 0600), 0);
    char note[200];
    assert_int_equal(sup_identity_recover(f->dir, note, sizeof note), 0);
    assert_string_equal(note, ""); /* no staged files: nothing to recover from */
    expect_refusal(f, "do not match");
    tu_leaf_free(&other);
}

static void test_symlinked_key_refused(void **state)
{
    fixture *f = *state;
    /* The real key, elsewhere, 0600 and ours: only the link is wrong. */
    char *other = tu_scratch_dir("supid-target");
    assert_non_null(other);
    assert_int_equal(tu_write(other, "key.pem", f->leaf.key_pem, f->leaf.key_len, 0600), 0);
    char target[4200];
    snprintf(target, sizeof target, "%s/key.pem", other);
    assert_int_equal(unlink(path_of(f, "key.pem")), 0);
    assert_int_equal(symlink(target, path_of(f, "key.pem")), 0);
    expect_refusal(f, "key.pem is a symlink");
    tu_rm_rf(other);
    free(other);
}

static void test_symlinked_cert_refused(void **state)
{
    fixture *f = *state;
    assert_int_equal(rename(path_of(f, "cert.pem"), path_of(f, "real-cert")), 0);
    assert_int_equal(symlink("real-cert", path_of(f, "cert.pem")), 0);
    expect_refusal(f, "cert.pem is a symlink");
}

static void test_missing_files_refused(void **state)
{
    fixture *f = *state;
    static const char *const names[] = {"cert.pem", "key.pem", "bundle.pem"};
    for (size_t i = 0; i < 3; i++) {
        char saved[4200];
        snprintf(saved, sizeof saved, "%s.saved", path_of(f, names[i]));
        assert_int_equal(rename(path_of(f, names[i]), saved), 0);
        char want[64];
        snprintf(want, sizeof want, "%s: missing", names[i]);
        expect_refusal(f, want);
        assert_int_equal(tsr_errcat(), TSR_E_NOTFOUND);
        assert_int_equal(rename(saved, path_of(f, names[i])), 0);
    }
}

static void test_not_regular_refused(void **state)
{
    fixture *f = *state;
    assert_int_equal(unlink(path_of(f, "bundle.pem")), 0);
    assert_int_equal(mkdir(path_of(f, "bundle.pem"), 0700), 0);
    expect_refusal(f, "bundle.pem is not a regular file");
    assert_int_equal(rmdir(path_of(f, "bundle.pem")), 0);
    assert_int_equal(mkfifo(path_of(f, "bundle.pem"), 0600), 0);
    expect_refusal(f, "bundle.pem is not a regular file"); /* and no hang on the FIFO */
}

static void test_foreign_owner_refused(void **state)
{
    fixture *f = *state;
    if (geteuid() != 0) skip();
    assert_int_equal(chown(path_of(f, "cert.pem"), 65534, 65534), 0);
    expect_refusal(f, "cert.pem is owned by uid 65534");
    assert_int_equal(chown(path_of(f, "cert.pem"), 0, 0), 0);
    assert_int_equal(chown(f->dir, 65534, 65534), 0);
    expect_refusal(f, "is owned by uid 65534, not by us");
}

static void test_empty_and_garbage_files_refused(void **state)
{
    fixture *f = *state;
    assert_int_equal(tu_write(f->dir, "cert.pem", "", 0, 0600), 0);
    expect_refusal(f, "cert.pem is empty");
    assert_int_equal(tu_write(f->dir, "cert.pem", "garbage\n", 8, 0600), 0);
    expect_refusal(f, "cert.pem");
    assert_int_equal(tu_write(f->dir, "cert.pem", f->leaf.chain_pem, f->leaf.chain_len, 0600), 0);
    assert_int_equal(tu_write(f->dir, "key.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n", 33, 0600),
                     0);
    expect_refusal(f, "key.pem");
}

static void test_expired_refused_with_reason(void **state)
{
    fixture *f = *state;
    tu_leaf old;
    assert_int_equal(tu_pki_leaf(&f->pki, SB_ID, NULL, g_now - 7200, 600, &old), 0);
    assert_int_equal(tu_write(f->dir, "cert.pem", old.chain_pem, old.chain_len, 0600), 0);
    assert_int_equal(tu_write(f->dir, "key.pem", old.key_pem, old.key_len, 0600), 0);
    sup_identity *id = NULL;
    enum ca_verify_reason reason = CA_VERIFY_OK;
    assert_int_equal(sup_identity_load(f->dir, TD, 0, &reason, &id), -1);
    assert_int_equal(reason, CA_VERIFY_EXPIRED);
    assert_int_equal(tsr_errcat(), TSR_E_UNAUTH);
    tu_leaf_free(&old);
}

static void test_user_cert_refused(void **state)
{
    fixture *f = *state;
    tu_leaf user;
    assert_int_equal(tu_pki_leaf(&f->pki, "spiffe://" TD "/user/alice", NULL, g_now, 3600, &user),
                     0);
    assert_int_equal(tu_write(f->dir, "cert.pem", user.chain_pem, user.chain_len, 0600), 0);
    assert_int_equal(tu_write(f->dir, "key.pem", user.key_pem, user.key_len, 0600), 0);
    sup_identity *id = NULL;
    enum ca_verify_reason reason = CA_VERIFY_OK;
    assert_int_equal(sup_identity_load(f->dir, TD, 0, &reason, &id), -1);
    assert_int_equal(reason, CA_VERIFY_WRONG_KIND);
    tu_leaf_free(&user);
}

static void test_foreign_bundle_refused(void **state)
{
    fixture *f = *state;
    tu_pki other;
    assert_int_equal(tu_pki_init(&other, TD, g_now), 0);
    assert_int_equal(tu_write(f->dir, "bundle.pem", other.bundle_pem, other.bundle_len, 0600), 0);
    sup_identity *id = NULL;
    enum ca_verify_reason reason = CA_VERIFY_OK;
    assert_int_equal(sup_identity_load(f->dir, TD, 0, &reason, &id), -1);
    assert_int_equal(reason, CA_VERIFY_UNKNOWN_ISSUER);
    /* A bundle for another trust domain than ours is refused too. */
    assert_int_equal(sup_identity_load(f->dir, "example.org", 0, &reason, &id), -1);
    tu_pki_free(&other);
}

/* ---- loading -------------------------------------------------------------------- */

static void test_load_valid(void **state)
{
    fixture *f = *state;
    sup_identity *id = NULL;
    enum ca_verify_reason reason = CA_VERIFY_BAD_CHAIN;
    if (sup_identity_load(f->dir, TD, 0, &reason, &id) != 0) fail_msg("load: %s", tsr_errmsg());
    assert_int_equal(reason, CA_VERIFY_OK);
    assert_int_equal(id->peer.identity.kind, CA_KIND_SANDBOX);
    assert_string_equal(id->peer.identity.name, SB_UUID);
    assert_string_equal(id->peer.identity.id.text, SB_ID);
    assert_string_equal(id->peer.serial_hex, f->leaf.serial);
    assert_int_equal(sk_X509_num(id->chain), 1);
    assert_true(sup_key_matches_cert(id->key, id->leaf));
    assert_int_equal(id->key_pem_len, f->leaf.key_len);
    assert_memory_equal(id->key_pem, f->leaf.key_pem, f->leaf.key_len);
    assert_true(id->peer.not_after > g_now + 3000);
    sup_identity_free(id);
    /* cert.pem may be 0644 (certificates are public); only the key is strict. */
    assert_int_equal(chmod(path_of(f, "cert.pem"), 0644), 0);
    assert_int_equal(sup_identity_load(f->dir, TD, 0, &reason, &id), 0);
    sup_identity_free(id);
}

/* ---- storing and crash recovery --------------------------------------------------- */

static void assert_mode(const fixture *f, const char *name, mode_t want)
{
    struct stat st;
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", f->dir, name);
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, want);
}

static void assert_loads_serial(fixture *f, const char *serial)
{
    sup_identity *id = NULL;
    enum ca_verify_reason reason;
    if (sup_identity_load(f->dir, TD, 0, &reason, &id) != 0) fail_msg("load: %s", tsr_errmsg());
    assert_string_equal(id->peer.serial_hex, serial);
    sup_identity_free(id);
}

static void test_store_replaces_pair(void **state)
{
    fixture *f = *state;
    tu_leaf next;
    assert_int_equal(tu_pki_leaf(&f->pki, SB_ID, NULL, g_now, 3600, &next), 0);
    assert_int_equal(sup_identity_store(f->dir, (uint8_t *)next.chain_pem, next.chain_len,
                                        (uint8_t *)next.key_pem, next.key_len,
                                        (uint8_t *)f->pki.bundle_pem, f->pki.bundle_len),
                     0);
    assert_loads_serial(f, next.serial);
    /* Exactly the three files, all 0600: no staging or temp file left. */
    assert_int_equal(tu_count_entries(f->dir), 3);
    assert_mode(f, "cert.pem", 0600);
    assert_mode(f, "key.pem", 0600);
    assert_mode(f, "bundle.pem", 0600);
    size_t len = 0;
    char *key = tu_read(f->dir, "key.pem", &len);
    assert_non_null(key);
    assert_int_equal(len, next.key_len);
    assert_memory_equal(key, next.key_pem, len);
    free(key);
    tu_leaf_free(&next);
}

static void test_crash_before_renames_keeps_old_pair(void **state)
{
    fixture *f = *state;
    tu_leaf next;
    assert_int_equal(tu_pki_leaf(&f->pki, SB_ID, NULL, g_now, 3600, &next), 0);
    assert_int_equal(sup_identity_stage_pair(f->dir, (uint8_t *)next.chain_pem, next.chain_len,
                                             (uint8_t *)next.key_pem, next.key_len),
                     0);
    /* crash: no rename happened */
    assert_int_equal(tu_count_entries(f->dir), 5);
    assert_mode(f, "key.pem.new", 0600);
    char note[200];
    assert_int_equal(sup_identity_recover(f->dir, note, sizeof note), 0);
    assert_non_null(strstr(note, "discarded"));
    assert_int_equal(tu_count_entries(f->dir), 3);
    assert_loads_serial(f, f->leaf.serial);
    tu_leaf_free(&next);
}

static void test_crash_between_renames_rolls_forward(void **state)
{
    fixture *f = *state;
    tu_leaf next;
    assert_int_equal(tu_pki_leaf(&f->pki, SB_ID, NULL, g_now, 3600, &next), 0);
    assert_int_equal(sup_identity_stage_pair(f->dir, (uint8_t *)next.chain_pem, next.chain_len,
                                             (uint8_t *)next.key_pem, next.key_len),
                     0);
    assert_int_equal(sup_identity_commit_key(f->dir), 0);
    /* crash: key.pem is new, cert.pem old -> they do not match */
    expect_refusal(f, "do not match");
    char note[200];
    assert_int_equal(sup_identity_recover(f->dir, note, sizeof note), 0);
    assert_non_null(strstr(note, "completed"));
    assert_int_equal(tu_count_entries(f->dir), 3);
    assert_mode(f, "cert.pem", 0600);
    assert_loads_serial(f, next.serial);
    /* Recovery is idempotent. */
    assert_int_equal(sup_identity_recover(f->dir, note, sizeof note), 0);
    assert_string_equal(note, "");
    tu_leaf_free(&next);
}

static void test_crash_during_staging_keeps_old_pair(void **state)
{
    fixture *f = *state;
    /* Only a (partial) staged key exists: the cert was never staged. */
    assert_int_equal(tu_write(f->dir, "key.pem.new", "-----BEGIN PRIV", 15, 0600), 0);
    assert_int_equal(tu_write(f->dir, "cert.pem.new.tmp.a1b2c3", "half", 4, 0600), 0);
    assert_int_equal(tu_write(f->dir, "key.pem.tmp.zzzzzz", "half", 4, 0600), 0);
    assert_int_equal(tu_write(f->dir, "unrelated.tmp.abcdef", "x", 1, 0600), 0);
    char note[200];
    assert_int_equal(sup_identity_recover(f->dir, note, sizeof note), 0);
    assert_loads_serial(f, f->leaf.serial);
    /* Our temp leftovers and the staged key are gone; other files stay. */
    assert_int_equal(tu_count_entries(f->dir), 4);
    char *keep = tu_read(f->dir, "unrelated.tmp.abcdef", NULL);
    assert_non_null(keep);
    free(keep);
}

static void test_staged_pair_with_broken_current_pair(void **state)
{
    fixture *f = *state;
    tu_leaf next, junk;
    assert_int_equal(tu_pki_leaf(&f->pki, SB_ID, NULL, g_now, 3600, &next), 0);
    assert_int_equal(tu_pki_leaf(&f->pki, SB_ID, NULL, g_now, 3600, &junk), 0);
    assert_int_equal(sup_identity_stage_pair(f->dir, (uint8_t *)next.chain_pem, next.chain_len,
                                             (uint8_t *)next.key_pem, next.key_len),
                     0);
    assert_int_equal(tu_write(f->dir, "key.pem", junk.key_pem, junk.key_len, 0600), 0);
    char note[200];
    assert_int_equal(sup_identity_recover(f->dir, note, sizeof note), 0);
    assert_non_null(strstr(note, "installed"));
    assert_loads_serial(f, next.serial);
    tu_leaf_free(&next);
    tu_leaf_free(&junk);
}

static void test_staged_files_are_checked_too(void **state)
{
    fixture *f = *state;
    tu_leaf next;
    assert_int_equal(tu_pki_leaf(&f->pki, SB_ID, NULL, g_now, 3600, &next), 0);
    assert_int_equal(sup_identity_stage_pair(f->dir, (uint8_t *)next.chain_pem, next.chain_len,
                                             (uint8_t *)next.key_pem, next.key_len),
                     0);
    assert_int_equal(sup_identity_commit_key(f->dir), 0);
    /* A staged cert that is a symlink is never rolled forward. */
    assert_int_equal(rename(path_of(f, "cert.pem.new"), path_of(f, "elsewhere")), 0);
    assert_int_equal(symlink("elsewhere", path_of(f, "cert.pem.new")), 0);
    char note[200];
    assert_int_equal(sup_identity_recover(f->dir, note, sizeof note), 0);
    assert_string_equal(note, "");
    expect_refusal(f, "do not match");
    tu_leaf_free(&next);
}

int main(void)
{
    g_now = tsr_now_unix();
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_dir_0755_refused),
        T(test_dir_symlink_refused),
        T(test_dir_missing_or_file),
        T(test_key_0640_refused),
        T(test_key_0604_refused),
        T(test_key_group_writable_refused),
        T(test_mismatched_pair_refused),
        T(test_symlinked_key_refused),
        T(test_symlinked_cert_refused),
        T(test_missing_files_refused),
        T(test_not_regular_refused),
        T(test_foreign_owner_refused),
        T(test_empty_and_garbage_files_refused),
        T(test_expired_refused_with_reason),
        T(test_user_cert_refused),
        T(test_foreign_bundle_refused),
        T(test_load_valid),
        T(test_store_replaces_pair),
        T(test_crash_before_renames_keeps_old_pair),
        T(test_crash_between_renames_rolls_forward),
        T(test_crash_during_staging_keeps_old_pair),
        T(test_staged_pair_with_broken_current_pair),
        T(test_staged_files_are_checked_too),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
