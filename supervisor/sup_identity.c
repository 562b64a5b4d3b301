/* Identity files: checked, loaded, verified, and replaced crash-safely.
 * See sup_identity.h for the rules and the staged write protocol. */
#include "sup_identity.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ca_pem.h"
#include "tsr_fs.h"
#include "tsr_time.h"

#define STAGED_KEY SUP_KEY_FILE SUP_STAGE_SUFFIX
#define STAGED_CERT SUP_CERT_FILE SUP_STAGE_SUFFIX

/* ---- the directory ------------------------------------------------------------ */

static int check_dir_stat(const char *dir, const struct stat *st)
{
    TSR_ENSURE(S_ISDIR(st->st_mode), TSR_E_INPUT, "identity directory %s is not a directory",
               dir);
    TSR_ENSURE(st->st_uid == geteuid(), TSR_E_INPUT,
               "identity directory %s is owned by uid %u, not by us (uid %u)", dir,
               (unsigned)st->st_uid, (unsigned)geteuid());
    TSR_ENSURE((st->st_mode & 077) == 0, TSR_E_INPUT,
               "identity directory %s has mode %04o: it must be 0700 (chmod 700 %s)", dir,
               (unsigned)(st->st_mode & 07777), dir);
    return 0;
}

/* Open the directory without following a symlink, and check what was opened. */
static int open_dir_checked(const char *dir, int *fd_out)
{
    TSR_ENSURE(dir != NULL && dir[0] != '\0', TSR_E_INPUT, "no identity directory given");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ELOOP || e == ENOTDIR) {
            struct stat lst;
            if (lstat(dir, &lst) == 0 && S_ISLNK(lst.st_mode))
                return TSR_FAIL(TSR_E_INPUT, "identity directory %s is a symlink", dir);
            return TSR_FAIL(TSR_E_INPUT, "identity directory %s is not a directory", dir);
        }
        return TSR_FAIL(e == ENOENT ? TSR_E_NOTFOUND : TSR_E_IO, "identity directory %s: %s",
                        dir, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return TSR_FAIL(TSR_E_IO, "stat %s: %s", dir, strerror(e));
    }
    if (check_dir_stat(dir, &st) != 0) {
        close(fd);
        return -1;
    }
    *fd_out = fd;
    return 0;
}

int sup_identity_check_dir(const char *dir)
{
    int fd = -1;
    TSR_GUARD(open_dir_checked(dir, &fd));
    close(fd);
    return 0;
}

static int fsync_dirfd(int dirfd, const char *dir)
{
    TSR_ENSURE(fsync(dirfd) == 0, TSR_E_IO, "fsync %s: %s", dir, strerror(errno));
    return 0;
}

/* ---- one file --------------------------------------------------------------------- */

/* Read `name` inside dirfd: a regular file owned by us (never through a
 * symlink), at most CA_PEM_MAX_BYTES; `secret` files must have no
 * group/other bits. The buffer is NUL-terminated past *len. */
static int read_checked(int dirfd, const char *dir, const char *name, bool secret,
                        uint8_t **out, size_t *len)
{
    int rc = -1;
    uint8_t *buf = NULL;
    size_t cap = CA_PEM_MAX_BYTES;
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        if (e == ELOOP) return TSR_FAIL(TSR_E_INPUT, "%s/%s is a symlink", dir, name);
        return TSR_FAIL(e == ENOENT ? TSR_E_NOTFOUND : TSR_E_IO, "%s/%s: %s", dir, name,
                        e == ENOENT ? "missing" : strerror(e));
    }
    struct stat st;
    TSR_TRY_ENSURE(fstat(fd, &st) == 0, TSR_E_IO, "stat %s/%s: %s", dir, name, strerror(errno));
    TSR_TRY_ENSURE(S_ISREG(st.st_mode), TSR_E_INPUT, "%s/%s is not a regular file", dir, name);
    TSR_TRY_ENSURE(st.st_uid == geteuid(), TSR_E_INPUT, "%s/%s is owned by uid %u, not by us (uid %u)",
                   dir, name, (unsigned)st.st_uid, (unsigned)geteuid());
    TSR_TRY_ENSURE(!secret || (st.st_mode & 077) == 0, TSR_E_INPUT,
                   "%s/%s has mode %04o: a private key must not be readable or writable by "
                   "group or others (chmod 600 %s/%s)",
                   dir, name, (unsigned)(st.st_mode & 07777), dir, name);
    TSR_TRY_ENSURE((uint64_t)st.st_size <= cap, TSR_E_LIMIT, "%s/%s is larger than %zu bytes",
                   dir, name, cap);
    buf = malloc(cap + 1);
    TSR_TRY_ENSURE(buf != NULL, TSR_E_INTERNAL, "out of memory");
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fd, buf + got, cap + 1 - got);
        if (r < 0 && errno == EINTR) continue;
        TSR_TRY_ENSURE(r >= 0, TSR_E_IO, "read %s/%s: %s", dir, name, strerror(errno));
        if (r == 0) break;
        got += (size_t)r;
        TSR_TRY_ENSURE(got <= cap, TSR_E_LIMIT, "%s/%s is larger than %zu bytes", dir, name, cap);
    }
    TSR_TRY_ENSURE(got > 0, TSR_E_INPUT, "%s/%s is empty", dir, name);
    buf[got] = '\0';
    *out = buf;
    *len = got;
    buf = NULL;
    rc = 0;
out:
    if (buf != NULL) {
        OPENSSL_cleanse(buf, cap + 1);
        free(buf);
    }
    close(fd);
    return rc;
}

int sup_key_matches_cert(EVP_PKEY *key, X509 *cert)
{
    if (key == NULL || cert == NULL) return 0;
    EVP_PKEY *pub = X509_get0_pubkey(cert);
    return pub != NULL && EVP_PKEY_eq(pub, key) == 1;
}

/* Does the pair (key_name, cert_name) in dirfd hold a matching key and leaf? */
static bool pair_matches(int dirfd, const char *dir, const char *key_name, const char *cert_name)
{
    uint8_t *kb = NULL, *cb = NULL;
    size_t kl = 0, cl = 0;
    EVP_PKEY *key = NULL;
    STACK_OF(X509) *certs = NULL;
    bool ok = false;
    if (read_checked(dirfd, dir, key_name, true, &kb, &kl) == 0 &&
        read_checked(dirfd, dir, cert_name, false, &cb, &cl) == 0 &&
        ca_key_from_pem(kb, kl, &key) == 0 && ca_certs_from_pem(cb, cl, &certs) == 0)
        ok = sup_key_matches_cert(key, sk_X509_value(certs, 0));
    if (kb != NULL) ca_secret_free(kb, kl);
    free(cb);
    EVP_PKEY_free(key);
    sk_X509_pop_free(certs, X509_free);
    return ok;
}

static bool exists_at(int dirfd, const char *name)
{
    struct stat st;
    return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static int unlink_if_present(int dirfd, const char *dir, const char *name, bool *removed)
{
    *removed = false;
    if (unlinkat(dirfd, name, 0) == 0) {
        *removed = true;
        return 0;
    }
    TSR_ENSURE(errno == ENOENT, TSR_E_IO, "remove %s/%s: %s", dir, name, strerror(errno));
    return 0;
}

/* "<base>.tmp.XXXXXX" of one of our names: a tsr_write_file_atomic leftover. */
static bool is_our_temp(const char *name)
{
    static const char *const bases[] = {SUP_CERT_FILE, SUP_KEY_FILE, SUP_BUNDLE_FILE, STAGED_CERT,
                                        STAGED_KEY};
    for (size_t i = 0; i < sizeof bases / sizeof bases[0]; i++) {
        size_t n = strlen(bases[i]);
        if (strncmp(name, bases[i], n) == 0 && strncmp(name + n, ".tmp.", 5) == 0 &&
            strlen(name + n + 5) == 6)
            return true;
    }
    return false;
}

static int remove_temp_leftovers(int dirfd, const char *dir, int *removed)
{
    *removed = 0;
    int dup_fd = dup(dirfd);
    TSR_ENSURE(dup_fd >= 0, TSR_E_IO, "dup: %s", strerror(errno));
    DIR *d = fdopendir(dup_fd);
    if (d == NULL) {
        int e = errno;
        close(dup_fd);
        return TSR_FAIL(TSR_E_IO, "read directory %s: %s", dir, strerror(e));
    }
    char names[16][NAME_MAX + 1];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && n < 16)
        if (is_our_temp(de->d_name)) snprintf(names[n++], sizeof names[0], "%s", de->d_name);
    closedir(d);
    for (int i = 0; i < n; i++) {
        if (unlinkat(dirfd, names[i], 0) != 0 && errno != ENOENT)
            return TSR_FAIL(TSR_E_IO, "remove %s/%s: %s", dir, names[i], strerror(errno));
        (*removed)++;
    }
    return 0;
}

int sup_identity_recover(const char *dir, char *note, size_t note_cap)
{
    int dirfd = -1, rc = -1;
    char scratch[8];
    if (note == NULL || note_cap == 0) {
        note = scratch;
        note_cap = sizeof scratch;
    }
    note[0] = '\0';
    TSR_GUARD(open_dir_checked(dir, &dirfd));

    int temps = 0;
    bool r1 = false, r2 = false;
    TSR_TRY(remove_temp_leftovers(dirfd, dir, &temps));
    bool staged_key = exists_at(dirfd, STAGED_KEY), staged_cert = exists_at(dirfd, STAGED_CERT);
    if (!staged_key && !staged_cert) {
        if (temps > 0) snprintf(note, note_cap, "removed %d unfinished temporary file(s)", temps);
        rc = 0;
        goto out;
    }
    if (pair_matches(dirfd, dir, SUP_KEY_FILE, SUP_CERT_FILE)) {
        /* The renames never started (or both finished and a stale staging
         * file remains): the current pair stands. */
        TSR_TRY(unlink_if_present(dirfd, dir, STAGED_KEY, &r1));
        TSR_TRY(unlink_if_present(dirfd, dir, STAGED_CERT, &r2));
        TSR_TRY(fsync_dirfd(dirfd, dir));
        snprintf(note, note_cap, "discarded an unfinished rotation (staged files removed)");
    } else if (staged_cert && pair_matches(dirfd, dir, SUP_KEY_FILE, STAGED_CERT)) {
        /* Crashed between the two renames: the key is new, roll the cert forward. */
        TSR_TRY_ENSURE(renameat(dirfd, STAGED_CERT, dirfd, SUP_CERT_FILE) == 0, TSR_E_IO,
                       "rename %s/%s: %s", dir, STAGED_CERT, strerror(errno));
        TSR_TRY(unlink_if_present(dirfd, dir, STAGED_KEY, &r1));
        TSR_TRY(fsync_dirfd(dirfd, dir));
        snprintf(note, note_cap, "completed an interrupted rotation (cert.pem.new -> cert.pem)");
    } else if (staged_key && staged_cert && pair_matches(dirfd, dir, STAGED_KEY, STAGED_CERT)) {
        /* The current pair is broken but a complete staged pair exists. */
        TSR_TRY_ENSURE(renameat(dirfd, STAGED_KEY, dirfd, SUP_KEY_FILE) == 0, TSR_E_IO,
                       "rename %s/%s: %s", dir, STAGED_KEY, strerror(errno));
        TSR_TRY_ENSURE(renameat(dirfd, STAGED_CERT, dirfd, SUP_CERT_FILE) == 0, TSR_E_IO,
                       "rename %s/%s: %s", dir, STAGED_CERT, strerror(errno));
        TSR_TRY(fsync_dirfd(dirfd, dir));
        snprintf(note, note_cap, "installed a complete staged key/cert pair");
    }
    /* Otherwise leave everything as found: loading reports the mismatch. */
    rc = 0;
out:
    close(dirfd);
    return rc;
}

/* ---- loading -------------------------------------------------------------------- */

void sup_identity_free(sup_identity *id)
{
    if (id == NULL) return;
    X509_free(id->leaf);
    sk_X509_pop_free(id->chain, X509_free);
    EVP_PKEY_free(id->key);
    ca_trust_free(id->trust);
    free(id->cert_pem);
    if (id->key_pem != NULL) ca_secret_free(id->key_pem, id->key_pem_len);
    free(id->bundle_pem);
    free(id);
}

int64_t sup_judge_time(const X509 *leaf, int64_t now)
{
    if (now == 0) now = tsr_now_unix();
    int64_t nb = 0, na = 0;
    if (leaf == NULL || ca_cert_validity(leaf, &nb, &na) != 0) return now;
    return nb > now && nb - now <= SUP_MAX_CLOCK_SKEW_S ? nb : now;
}

int64_t sup_clock_behind_s(int64_t not_before, int64_t now)
{
    int64_t behind = not_before + SUP_GATEWAY_BACKDATE_S - now;
    if (behind < 0) return 0;
    return behind > SUP_MAX_CLOCK_SKEW_S ? SUP_MAX_CLOCK_SKEW_S : behind;
}

int sup_identity_load(const char *dir, const char *trust_domain, int64_t now,
                      enum ca_verify_reason *reason, sup_identity **out)
{
    int rc = -1, dirfd = -1;
    enum ca_verify_reason scratch;
    if (reason == NULL) reason = &scratch;
    *reason = CA_VERIFY_BAD_CHAIN;
    sup_identity *id = calloc(1, sizeof *id);
    TSR_ENSURE(id != NULL, TSR_E_INTERNAL, "out of memory");
    TSR_TRY(open_dir_checked(dir, &dirfd));
    TSR_TRY(read_checked(dirfd, dir, SUP_CERT_FILE, false, &id->cert_pem, &id->cert_pem_len));
    TSR_TRY(read_checked(dirfd, dir, SUP_KEY_FILE, true, &id->key_pem, &id->key_pem_len));
    TSR_TRY(read_checked(dirfd, dir, SUP_BUNDLE_FILE, false, &id->bundle_pem,
                         &id->bundle_pem_len));

    STACK_OF(X509) *certs = NULL;
    if (ca_certs_from_pem(id->cert_pem, id->cert_pem_len, &certs) != 0) {
        (void)TSR_FAIL(TSR_E_INPUT, "%s/%s: %s", dir, SUP_CERT_FILE, tsr_errmsg());
        goto out;
    }
    id->leaf = sk_X509_shift(certs);
    id->chain = certs;
    if (ca_key_from_pem(id->key_pem, id->key_pem_len, &id->key) != 0) {
        (void)TSR_FAIL(TSR_E_INPUT, "%s/%s: %s", dir, SUP_KEY_FILE, tsr_errmsg());
        goto out;
    }
    TSR_TRY_ENSURE(sup_key_matches_cert(id->key, id->leaf), TSR_E_INPUT,
                   "%s/%s and %s/%s do not match (the key is not the certificate's)", dir,
                   SUP_KEY_FILE, dir, SUP_CERT_FILE);
    if (ca_trust_from_pem(id->bundle_pem, id->bundle_pem_len, trust_domain, &id->trust) != 0) {
        (void)TSR_FAIL(tsr_errcat(), "%s/%s: %s", dir, SUP_BUNDLE_FILE, tsr_errmsg());
        goto out;
    }
    if (ca_verify_peer(id->trust, id->leaf, id->chain, CA_PURPOSE_CLIENT, CA_KIND_SANDBOX,
                       sup_judge_time(id->leaf, now), reason, &id->peer) != 0) {
        (void)TSR_FAIL(TSR_E_UNAUTH, "%s/%s is not a valid sandbox identity: %s", dir,
                       SUP_CERT_FILE, tsr_errmsg());
        goto out;
    }
    *out = id;
    id = NULL;
    rc = 0;
out:
    if (dirfd >= 0) close(dirfd);
    sup_identity_free(id);
    return rc;
}

/* ---- storing -------------------------------------------------------------------- */

static int path_in(char *out, size_t cap, const char *dir, const char *name)
{
    return tsr_path_join(out, cap, dir, name);
}

int sup_identity_stage_pair(const char *dir, const uint8_t *cert_pem, size_t cert_len,
                            const uint8_t *key_pem, size_t key_len)
{
    char kp[4096], cp[4096];
    TSR_GUARD(path_in(kp, sizeof kp, dir, STAGED_KEY));
    TSR_GUARD(path_in(cp, sizeof cp, dir, STAGED_CERT));
    TSR_GUARD(tsr_write_file_atomic(kp, key_pem, key_len, SUP_IDENTITY_FILE_MODE,
                                    TSR_WRITE_REPLACE));
    TSR_GUARD(tsr_write_file_atomic(cp, cert_pem, cert_len, SUP_IDENTITY_FILE_MODE,
                                    TSR_WRITE_REPLACE));
    return 0;
}

static int commit_one(const char *dir, const char *from, const char *to)
{
    int dirfd = -1;
    TSR_GUARD(open_dir_checked(dir, &dirfd));
    if (renameat(dirfd, from, dirfd, to) != 0) {
        int e = errno;
        close(dirfd);
        return TSR_FAIL(TSR_E_IO, "rename %s/%s to %s: %s", dir, from, to, strerror(e));
    }
    int rc = fsync_dirfd(dirfd, dir);
    close(dirfd);
    return rc;
}

int sup_identity_commit_key(const char *dir)
{
    return commit_one(dir, STAGED_KEY, SUP_KEY_FILE);
}

int sup_identity_commit_cert(const char *dir)
{
    return commit_one(dir, STAGED_CERT, SUP_CERT_FILE);
}

int sup_identity_store(const char *dir, const uint8_t *cert_pem, size_t cert_len,
                       const uint8_t *key_pem, size_t key_len, const uint8_t *bundle_pem,
                       size_t bundle_len)
{
    char bp[4096];
    TSR_GUARD(sup_identity_check_dir(dir));
    if (bundle_pem != NULL && bundle_len > 0) {
        TSR_GUARD(path_in(bp, sizeof bp, dir, SUP_BUNDLE_FILE));
        TSR_GUARD(tsr_write_file_atomic(bp, bundle_pem, bundle_len, SUP_IDENTITY_FILE_MODE,
                                        TSR_WRITE_REPLACE));
    }
    TSR_GUARD(sup_identity_stage_pair(dir, cert_pem, cert_len, key_pem, key_len));
    TSR_GUARD(sup_identity_commit_key(dir));
    TSR_GUARD(sup_identity_commit_cert(dir));
    return 0;
}
