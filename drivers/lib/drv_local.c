/* drv_local.h: the local sandbox directory, its lock, the detached
 * spawner and pid files, shared by the process and vm drivers. */
#include "drv_local.h"

#include "tsr_spawn.h"

TSR_WUR int drv_local_path(const drv_local *l, const char *id, const char *sub,
                           char *out, size_t cap)
{
    TSR_ENSURE(drv_id_valid(id), TSR_E_INPUT, "sandbox id is not a lowercase UUID");
    int n = sub != NULL ? snprintf(out, cap, "%s/%s/%s", l->root, id, sub)
                        : snprintf(out, cap, "%s/%s", l->root, id);
    TSR_ENSURE(n > 0 && (size_t)n < cap, TSR_E_LIMIT, "path too long under %s", l->root);
    return 0;
}

int drv_rm_tree_at(int parent, const char *name, int depth)
{
    if (depth > 256) return ELOOP;
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == EACCES && fchmodat(parent, name, 0700, 0) == 0)
        fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT) return 0;
        if (e == ENOTDIR || e == ELOOP)
            return (unlinkat(parent, name, 0) == 0 || errno == ENOENT) ? 0 : errno;
        return e;
    }
    (void)fchmod(fd, 0700); /* entries of a 0500 directory could not be unlinked */
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        int e = errno;
        close(fd);
        return e;
    }
    int rc = 0;
    const struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        int r;
        if (de->d_type == DT_DIR || de->d_type == DT_UNKNOWN)
            r = drv_rm_tree_at(dirfd(d), de->d_name, depth + 1);
        else
            r = (unlinkat(dirfd(d), de->d_name, 0) == 0 || errno == ENOENT) ? 0 : errno;
        if (r != 0 && rc == 0) rc = r;
    }
    closedir(d);
    if (unlinkat(parent, name, AT_REMOVEDIR) != 0 && errno != ENOENT && rc == 0) rc = errno;
    return rc;
}

int drv_fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return TSR_FAIL(TSR_E_IO, "open %s: %s", path, strerror(errno));
    int r = fsync(fd), e = errno;
    close(fd);
    TSR_ENSURE(r == 0, TSR_E_IO, "fsync %s: %s", path, strerror(e));
    return 0;
}

void drv_local_sweep(const drv_local *l, const drv_logger *lg)
{
    DIR *d = opendir(l->root);
    if (d == NULL) return;
    const struct dirent *de;
    time_t now = time(NULL);
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (n[0] != '.' || strlen(n) < 38 || !(strstr(n, ".new.") || strstr(n, ".gone.")))
            continue;
        char id[37];
        memcpy(id, n + 1, 36);
        id[36] = '\0';
        if (!drv_id_valid(id)) continue;
        struct stat st;
        if (fstatat(dirfd(d), n, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode)) continue;
        if (now - st.st_mtime < DRV_STALE_SECONDS) continue;
        int r = drv_rm_tree_at(dirfd(d), n, 0);
        drv_logf(lg, "removed stale %s%s%s", n, r != 0 ? ": " : "", r != 0 ? strerror(r) : "");
    }
    closedir(d);
}

TSR_WUR int drv_local_init(drv_local *l, const char *data_dir, const char *driver,
                           const drv_logger *lg)
{
    TSR_ENSURE(strlen(driver) < sizeof l->driver, TSR_E_INTERNAL, "driver name too long");
    strcpy(l->driver, driver);
    TSR_ENSURE(data_dir != NULL && data_dir[0] == '/', TSR_E_INPUT,
               "data_dir must be an absolute path");
    TSR_ENSURE(strlen(data_dir) < DRV_ROOT_MAX, TSR_E_LIMIT, "data_dir is too long");
    TSR_GUARD(tsr_path_join(l->root, sizeof l->root, data_dir, "sandboxes"));
    TSR_GUARD(tsr_mkdir_p(l->root, 0700));
    drv_local_sweep(l, lg);
    return 0;
}

TSR_WUR int drv_local_create(const drv_local *l, const char *id,
                             const tsr_driver_identity *ident, int workspace,
                             const drv_local_file *extra, size_t n_extra)
{
    int rc = -1, staged = 0;
    char stage[DRV_PATH_MAX], final[DRV_PATH_MAX], p[DRV_PATH_MAX];

    TSR_TRY(drv_local_path(l, id, NULL, final, sizeof final));
    int n = snprintf(stage, sizeof stage, "%s/.%s.new.XXXXXX", l->root, id);
    TSR_TRY_ENSURE(n > 0 && (size_t)n < sizeof stage, TSR_E_LIMIT, "path too long");
    TSR_TRY_ENSURE(!tsr_path_exists(final), TSR_E_EXISTS, "sandbox %s already exists", id);
    TSR_TRY_ENSURE(mkdtemp(stage) != NULL, TSR_E_IO, "create a directory in %s: %s", l->root,
                   strerror(errno));
    staged = 1;
    TSR_TRY_ENSURE(chmod(stage, 0700) == 0, TSR_E_IO, "chmod %s: %s", stage, strerror(errno));

    TSR_TRY(tsr_path_join(p, sizeof p, stage, "identity"));
    TSR_TRY_ENSURE(mkdir(p, 0700) == 0 && chmod(p, 0700) == 0, TSR_E_IO, "mkdir %s: %s", p,
                   strerror(errno));
    const struct {
        const char *name;
        const char *buf;
        size_t len;
    } files[3] = {{"key.pem", ident->key_pem, ident->key_len},
                  {"cert.pem", ident->cert_pem, ident->cert_len},
                  {"bundle.pem", ident->bundle_pem, ident->bundle_len}};
    for (size_t i = 0; i < 3; i++) {
        n = snprintf(p, sizeof p, "%s/identity/%s", stage, files[i].name);
        TSR_TRY_ENSURE(n > 0 && (size_t)n < sizeof p, TSR_E_LIMIT, "path too long");
        TSR_TRY(tsr_write_file_atomic(p, files[i].buf, files[i].len, 0600, TSR_WRITE_NOREPLACE));
    }
    for (size_t i = 0; i < n_extra; i++) {
        TSR_TRY(tsr_path_join(p, sizeof p, stage, extra[i].name));
        TSR_TRY(tsr_write_file_atomic(p, extra[i].buf, extra[i].len, 0600, TSR_WRITE_NOREPLACE));
    }
    TSR_TRY(tsr_path_join(p, sizeof p, stage, "driver"));
    char owner[32];
    n = snprintf(owner, sizeof owner, "%s\n", l->driver);
    TSR_TRY(tsr_write_file_atomic(p, owner, (size_t)n, 0600, TSR_WRITE_NOREPLACE));
    if (workspace) {
        /* 1777 like /tmp: the workload runs as another uid than the
         * supervisor and must write here; only this sandbox mounts it. */
        TSR_TRY(tsr_path_join(p, sizeof p, stage, "workspace"));
        TSR_TRY_ENSURE(mkdir(p, 0700) == 0 && chmod(p, 01777) == 0, TSR_E_IO, "mkdir %s: %s",
                       p, strerror(errno));
    }

    /* The sandbox appears complete or not at all. A sandbox directory is
     * never empty (identity/ is made first), so where RENAME_NOREPLACE is not
     * supported a plain rename cannot replace one either. */
    int r = renameat2(AT_FDCWD, stage, AT_FDCWD, final, RENAME_NOREPLACE);
    if (r != 0 && (errno == EINVAL || errno == ENOSYS)) r = rename(stage, final);
    if (r != 0) {
        int e = errno;
        (void)TSR_FAIL(e == EEXIST || e == ENOTEMPTY ? TSR_E_EXISTS : TSR_E_IO, "sandbox %s: %s",
                       id, e == EEXIST || e == ENOTEMPTY ? "already exists" : strerror(e));
        goto out;
    }
    staged = 0;
    TSR_TRY(drv_fsync_dir(l->root));
    rc = 0;
out:
    if (staged) (void)drv_rm_tree_at(AT_FDCWD, stage, 0);
    return rc;
}

TSR_WUR int drv_local_command_blob(const tsr_driver_sandbox *sb, char **out,
                                   size_t *len)
{
    size_t n = 0;
    for (size_t i = 0; i < sb->n_command; i++) n += strlen(sb->command[i]) + 1;
    char *b = malloc(n > 0 ? n : 1);
    TSR_ENSURE(b != NULL, TSR_E_INTERNAL, "out of memory");
    size_t off = 0;
    for (size_t i = 0; i < sb->n_command; i++) {
        size_t l = strlen(sb->command[i]) + 1;
        memcpy(b + off, sb->command[i], l);
        off += l;
    }
    *out = b;
    *len = n;
    return 0;
}

TSR_WUR int drv_local_command_read(int sbfd, char **blob, const char **argv,
                                   size_t *n)
{
    *blob = NULL;
    *n = 0;
    int fd = openat(sbfd, "command", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        TSR_ENSURE(errno == ENOENT, TSR_E_IO, "open command: %s", strerror(errno));
        return 0;
    }
    char *b = malloc(TSR_DRIVER_MAX_COMMAND_BYTES + 1);
    size_t got = 0;
    ssize_t r = 0;
    while (b != NULL && got <= TSR_DRIVER_MAX_COMMAND_BYTES) {
        r = read(fd, b + got, TSR_DRIVER_MAX_COMMAND_BYTES + 1 - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (b == NULL) return TSR_FAIL(TSR_E_INTERNAL, "out of memory");
    if (r < 0 || got == 0 || got > TSR_DRIVER_MAX_COMMAND_BYTES || b[got - 1] != '\0') {
        free(b);
        return TSR_FAIL(TSR_E_STATE, "the sandbox's command file is unreadable or corrupt");
    }
    for (size_t off = 0; off < got; off += strlen(b + off) + 1) {
        if (*n == TSR_DRIVER_MAX_COMMAND_ARGS) {
            free(b);
            return TSR_FAIL(TSR_E_STATE, "the sandbox's command has too many arguments");
        }
        argv[(*n)++] = b + off;
    }
    argv[*n] = NULL;
    *blob = b;
    return 0;
}

TSR_WUR int drv_local_lock(const drv_local *l, const char *id, int *out)
{
    char path[DRV_PATH_MAX];
    *out = -1;
    TSR_GUARD(drv_local_path(l, id, NULL, path, sizeof path));
    for (int tries = 0; tries < 1000; tries++) {
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            if (errno == ENOENT) return 0;
            return TSR_FAIL(TSR_E_IO, "open %s: %s", path, strerror(errno));
        }
        int r;
        do r = flock(fd, LOCK_EX);
        while (r != 0 && errno == EINTR);
        struct stat a, b;
        if (r != 0 || fstat(fd, &a) != 0) {
            int e = errno;
            close(fd);
            return TSR_FAIL(TSR_E_IO, "lock %s: %s", path, strerror(e));
        }
        if (lstat(path, &b) != 0) {
            int e = errno;
            close(fd);
            if (e == ENOENT) return 0; /* destroyed while we waited */
            return TSR_FAIL(TSR_E_IO, "stat %s: %s", path, strerror(e));
        }
        if (a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
            /* Only this driver's sandboxes. */
            char owner[32], want[32];
            int n = snprintf(want, sizeof want, "%s\n", l->driver);
            int dfd = openat(fd, "driver", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
            ssize_t got = -1;
            if (dfd >= 0) {
                got = read(dfd, owner, sizeof owner - 1);
                close(dfd);
            }
            if (n <= 0 || (size_t)n >= sizeof want || got != (ssize_t)n ||
                memcmp(owner, want, (size_t)n) != 0) {
                close(fd);
                if (got > 0 && (size_t)got < sizeof owner) owner[got] = '\0';
                else strcpy(owner, "?\n");
                owner[strcspn(owner, "\n")] = '\0';
                return TSR_FAIL(TSR_E_STATE, "sandbox %s is not a %s sandbox (driver: %.16s)", id,
                                l->driver, got > 0 ? owner : "none");
            }
            *out = fd;
            return 0;
        }
        close(fd); /* destroyed and created again while we waited: lock the new one */
    }
    return TSR_FAIL(TSR_E_INTERNAL, "could not lock %s", path);
}

TSR_WUR int drv_local_remove(const drv_local *l, const char *id, int sbfd)
{
    char path[DRV_PATH_MAX], tomb[DRV_PATH_MAX];
    int idfd = openat(sbfd, "identity", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (idfd >= 0) {
        const char *names[3] = {"key.pem", "cert.pem", "bundle.pem"};
        for (size_t i = 0; i < 3; i++) {
            if (unlinkat(idfd, names[i], 0) != 0 && errno != ENOENT) {
                int e = errno;
                close(idfd);
                return TSR_FAIL(TSR_E_IO, "unlink identity/%s: %s", names[i], strerror(e));
            }
        }
        close(idfd);
    } else {
        TSR_ENSURE(errno == ENOENT, TSR_E_IO, "open identity/: %s", strerror(errno));
    }
    int r = drv_rm_tree_at(sbfd, "identity", 0);
    TSR_ENSURE(r == 0, TSR_E_IO, "remove identity/: %s", strerror(r));

    TSR_GUARD(drv_local_path(l, id, NULL, path, sizeof path));
    int n = snprintf(tomb, sizeof tomb, "%s/.%s.gone.XXXXXX", l->root, id);
    TSR_ENSURE(n > 0 && (size_t)n < sizeof tomb, TSR_E_LIMIT, "path too long");
    TSR_ENSURE(mkdtemp(tomb) != NULL, TSR_E_IO, "create a directory in %s: %s", l->root,
               strerror(errno));
    /* rename(2) replaces the empty placeholder atomically. */
    if (rename(path, tomb) != 0) {
        int e = errno;
        (void)rmdir(tomb);
        return TSR_FAIL(TSR_E_IO, "rename %s: %s", path, strerror(e));
    }
    TSR_GUARD(drv_fsync_dir(l->root));
    r = drv_rm_tree_at(AT_FDCWD, tomb, 0);
    TSR_ENSURE(r == 0, TSR_E_IO, "identity removed, but files are left in %s: %s", tomb,
               strerror(r));
    return 0;
}

int drv_stat_parse(const char *buf, size_t len, drv_procinfo *pi)
{
    const char *rp = NULL;
    for (size_t i = len; i > 0; i--) {
        if (buf[i - 1] == ')') {
            rp = buf + i - 1;
            break;
        }
    }
    if (rp == NULL) return -1;
    const char *p = rp + 1, *end = buf + len;
    int field = 2; /* comm */
    int have = 0;
    while (p < end && field < 22) {
        if (*p != ' ') return -1;
        p++;
        field++;
        const char *t = p;
        while (p < end && *p != ' ' && *p != '\n') p++;
        size_t tl = (size_t)(p - t);
        if (tl == 0) return -1;
        if (field == 3) {
            if (tl != 1) return -1;
            pi->state = t[0];
            have++;
            continue;
        }
        if (field != 4 && field != 5 && field != 22) continue;
        unsigned long long v = 0;
        for (size_t i = 0; i < tl; i++) {
            if (t[i] < '0' || t[i] > '9' || v > 1000000000000000000ull) return -1;
            v = v * 10 + (unsigned long long)(t[i] - '0');
        }
        if (field == 4) pi->ppid = (long)v;
        if (field == 5) pi->pgrp = (long)v;
        if (field == 22) pi->start = v;
        have++;
    }
    return have == 4 ? 0 : -1;
}

size_t drv_utoa(unsigned long long v, char *buf)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++) buf[i] = tmp[n - 1 - i];
    return n;
}

ssize_t drv_read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return -1;
    size_t got = 0;
    while (got < cap) {
        ssize_t r = read(fd, buf + got, cap - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    return (ssize_t)got;
}

int drv_proc_read(pid_t pid, drv_procinfo *pi)
{
    char path[64], buf[2048];
    if (pid <= 0) return 0;
    (void)snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    ssize_t n = drv_read_small(path, buf, sizeof buf);
    if (n <= 0 || (size_t)n >= sizeof buf) return 0;
    return drv_stat_parse(buf, (size_t)n, pi) == 0 ? 1 : 0;
}

int drv_proc_alive(pid_t pid, unsigned long long start)
{
    drv_procinfo pi;
    memset(&pi, 0, sizeof pi);
    if (!drv_proc_read(pid, &pi)) return 0;
    return pi.start == start && pi.state != 'Z' && pi.state != 'X' && pi.state != 'x';
}

int drv_proc_wait_gone(pid_t pid, unsigned long long start, uint64_t timeout_ms)
{
    int64_t deadline = tsr_monotonic_ms() + (int64_t)timeout_ms;
    for (;;) {
        if (!drv_proc_alive(pid, start)) return 1;
        if (tsr_monotonic_ms() >= deadline) return 0;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

pid_t drv_proc_child_of(pid_t ppid, drv_procinfo *out)
{
    DIR *d = opendir("/proc");
    if (d == NULL) return 0;
    pid_t found = 0;
    const struct dirent *de;
    while (found == 0 && (de = readdir(d)) != NULL) {
        long v = 0;
        const char *p = de->d_name;
        if (*p == '\0') continue;
        for (; *p >= '0' && *p <= '9' && v < 100000000; p++) v = v * 10 + (*p - '0');
        if (*p != '\0') continue;
        drv_procinfo pi;
        if (drv_proc_read((pid_t)v, &pi) && pi.ppid == (long)ppid && pi.state != 'Z') {
            found = (pid_t)v;
            *out = pi;
        }
    }
    closedir(d);
    return found;
}

TSR_WUR int drv_pidfile_read(int sbfd, const char *name, drv_pidrec *rec,
                             int *present)
{
    char buf[128];
    *present = 0;
    int fd = openat(sbfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        TSR_ENSURE(errno == ENOENT, TSR_E_IO, "open %s: %s", name, strerror(errno));
        return 0;
    }
    ssize_t n;
    do n = read(fd, buf, sizeof buf - 1);
    while (n < 0 && errno == EINTR);
    close(fd);
    TSR_ENSURE(n > 0 && (size_t)n < sizeof buf - 1, TSR_E_INPUT, "%s is empty or too long", name);
    buf[n] = '\0';
    *present = 1;
    unsigned long long v[2] = {0, 0};
    const char *p = buf;
    for (int f = 0; f < 2; f++) {
        const char *s = p;
        while (*p >= '0' && *p <= '9' && p - s < 20) v[f] = v[f] * 10 + (unsigned)(*p++ - '0');
        TSR_ENSURE(p > s && *p == ' ', TSR_E_INPUT, "%s is corrupt", name);
        p++;
    }
    const char *k = p;
    while ((*p >= 'a' && *p <= 'z') && p - k < (ptrdiff_t)sizeof rec->kind - 1) p++;
    TSR_ENSURE(p > k && p[0] == '\n' && p[1] == '\0', TSR_E_INPUT, "%s is corrupt", name);
    TSR_ENSURE(v[0] > 1 && v[0] < 0x40000000ull, TSR_E_INPUT, "%s has a bad pid", name);
    rec->pid = (pid_t)v[0];
    rec->start = v[1];
    memcpy(rec->kind, k, (size_t)(p - k));
    rec->kind[p - k] = '\0';
    return 0;
}

void drv_local_signal(const drv_pidrec *rec, int sig)
{
    drv_procinfo pi;
    if (!drv_proc_alive(rec->pid, rec->start)) return;
    if (strcmp(rec->kind, "bwrap") == 0) {
        pid_t init = drv_proc_child_of(rec->pid, &pi);
        if (init > 0) {
            drv_procinfo si;
            pid_t sup = sig == SIGKILL ? 0 : drv_proc_child_of(init, &si);
            if (sig == SIGKILL) (void)kill(init, SIGKILL);
            else if (sup > 0) (void)kill(si.pgrp == (long)sup ? -sup : sup, sig);
            else (void)kill(pi.pgrp == (long)init ? -init : init, sig);
            return;
        }
        (void)kill(rec->pid, sig);
        return;
    }
    if (drv_proc_read(rec->pid, &pi) && pi.pgrp == (long)rec->pid)
        (void)kill(-rec->pid, sig);
    else
        (void)kill(rec->pid, sig);
}

TSR_WUR int drv_local_terminate(const drv_pidrec *rec, uint64_t grace_ms,
                                int *killed)
{
    *killed = 0;
    drv_local_signal(rec, SIGTERM);
    if (drv_proc_wait_gone(rec->pid, rec->start, grace_ms)) return 0;
    *killed = 1;
    drv_local_signal(rec, SIGKILL);
    if (drv_proc_wait_gone(rec->pid, rec->start, 5000)) return 0;
    if (drv_proc_alive(rec->pid, rec->start)) (void)kill(rec->pid, SIGKILL);
    if (drv_proc_wait_gone(rec->pid, rec->start, 2000)) return 0;
    return TSR_FAIL(TSR_E_IO, "process %ld is still there after SIGKILL", (long)rec->pid);
}

enum tsr_driver_state drv_local_state(int sbfd, drv_pidrec *rec)
{
    int present = 0;
    if (drv_pidfile_read(sbfd, "pid", rec, &present) != 0) return TSR_DRIVER_STATE_FAILED;
    if (!present) return TSR_DRIVER_STATE_CREATED;
    return drv_proc_alive(rec->pid, rec->start) ? TSR_DRIVER_STATE_RUNNING
                                                 : TSR_DRIVER_STATE_STOPPED;
}

int drv_local_run(const drv_local *l, const char *what, const char *id,
                  drv_locked_op op, void *ctx, char *err, size_t err_cap)
{
    char label[48];
    snprintf(label, sizeof label, "%s: %s", l->driver, what);
    int fd = -1;
    if (drv_local_lock(l, id, &fd) != 0) return drv_err_recorded(err, err_cap, label, id);
    if (fd < 0) return drv_errf(err, err_cap, "%s %s: no such sandbox", label, id);
    int r = op(ctx, id, fd);
    close(fd);
    return r != 0 ? drv_fail_recorded(err, err_cap, label, id) : TSR_DRIVER_OK;
}

int drv_local_destroy(const drv_local *l, const drv_logger *lg, const char *id,
                      drv_locked_op stop, void *ctx, char *err, size_t err_cap)
{
    char label[48];
    snprintf(label, sizeof label, "%s: destroy", l->driver);
    int fd = -1;
    if (drv_local_lock(l, id, &fd) != 0) return drv_err_recorded(err, err_cap, label, id);
    if (fd < 0) return 0;
    int r = stop(ctx, id, fd);
    if (r == 0) r = drv_local_remove(l, id, fd);
    close(fd);
    if (r != 0) return drv_err_recorded(err, err_cap, label, id);
    drv_logf(lg, "destroyed sandbox %s", id);
    return 0;
}

void drv_local_mark(int fd)
{
    static const char mark[] = DRV_START_MARK "\n";
    ssize_t w;
    do w = write(fd, mark, sizeof mark - 1);
    while (w < 0 && errno == EINTR);
}

void drv_local_tail(int sbfd, const char *name, char **out)
{
    *out = NULL;
    int fd = openat(sbfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return;
    struct stat st;
    char *buf = NULL;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        off_t from = st.st_size > DRV_TAIL_BYTES ? st.st_size - DRV_TAIL_BYTES : 0;
        buf = malloc(DRV_TAIL_BYTES + 1);
        size_t got = 0;
        while (buf != NULL && got < DRV_TAIL_BYTES) {
            ssize_t r = pread(fd, buf + got, DRV_TAIL_BYTES - got, from + (off_t)got);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break;
            got += (size_t)r;
        }
        if (buf != NULL) {
            buf[got] = '\0';
            for (size_t i = 0; i < got; i++)
                if (buf[i] == '\0') buf[i] = '?';
            const char *mark = NULL;
            for (const char *p = strstr(buf, DRV_START_MARK); p != NULL;
                 p = strstr(p + 1, DRV_START_MARK))
                mark = p;
            if (mark != NULL) {
                const char *after = mark + strlen(DRV_START_MARK);
                memmove(buf, after, strlen(after) + 1);
            }
        }
    }
    close(fd);
    *out = buf;
}

void drv_local_detail(int sbfd, const drv_local_log *log, char *detail,
                      size_t cap, int *exited, int *code)
{
    char *text = NULL;
    detail[0] = '\0';
    *exited = 0;
    drv_local_tail(sbfd, log->file, &text);
    if (text == NULL) return;
    drv_tail_lines(text, strlen(text), 20, log->only, detail, cap);
    if (log->exit_marker != NULL) *exited = drv_exit_after(text, log->exit_marker, code);
    free(text);
}

void drv_local_last_words(int sbfd, const drv_local_log *log, char *out,
                          size_t cap)
{
    char detail[TSR_DRIVER_DETAIL_MAX];
    int exited = 0, code = 0;
    drv_local_detail(sbfd, log, detail, sizeof detail, &exited, &code);
    drv_one_line(detail, out, cap);
}

int drv_local_status(const drv_local *l, const char *id, tsr_driver_status *st,
                     const drv_local_log *log, char *err, size_t err_cap)
{
    char label[48];
    snprintf(label, sizeof label, "%s: status", l->driver);
    int fd = -1;
    if (st == NULL) return drv_errf(err, err_cap, "%s: no status", label);
    if (drv_local_lock(l, id, &fd) != 0) return drv_err_recorded(err, err_cap, label, id);
    if (fd < 0) {
        st->state = TSR_DRIVER_STATE_UNKNOWN;
        return 0;
    }
    drv_pidrec rec;
    st->state = drv_local_state(fd, &rec);
    if (st->want_detail &&
        (st->state == TSR_DRIVER_STATE_STOPPED || st->state == TSR_DRIVER_STATE_FAILED))
        drv_local_detail(fd, log, st->detail, sizeof st->detail, &st->exited, &st->exit_code);
    close(fd);
    return 0;
}

int drv_spawn_write_pidfile(void *arg)
{
    const drv_spawn *sp = arg;
    char st[2048], line[96];
    ssize_t n = drv_read_small("/proc/self/stat", st, sizeof st);
    drv_procinfo pi;
    if (n <= 0 || (size_t)n >= sizeof st || drv_stat_parse(st, (size_t)n, &pi) != 0)
        return EINVAL;
    size_t len = drv_utoa((unsigned long long)getpid(), line);
    line[len++] = ' ';
    len += drv_utoa(pi.start, line + len);
    line[len++] = ' ';
    for (const char *k = sp->kind; *k != '\0' && len < sizeof line - 2; k++) line[len++] = *k;
    line[len++] = '\n';
    (void)unlink(sp->pid_tmp);
    int fd = open(sp->pid_tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return errno;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, line + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            return e != 0 ? e : EIO;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) return errno;
    if (rename(sp->pid_tmp, sp->pid_path) != 0) return errno;
    return 0;
}

int drv_spawn_detached(const drv_spawn *sp, pid_t *out_pid)
{
    tsr_spawn ts = {
        .argv = sp->argv,
        .envp = sp->envp,
        .stdout_fd = sp->log_fd,
        .stderr_fd = sp->log_fd,
        .extra_fd = sp->extra_fd,
        .cwd = sp->cwd,
        .umask = 077,
        .detach = true,
        .no_new_privs = sp->no_new_privs != 0,
        .before_exec = drv_spawn_write_pidfile,
        .before_exec_arg = (void *)(uintptr_t)sp,
        .before_exec_what = "write the pid file",
    };
    tsr_spawn_failure fail;
    if (tsr_spawn_run(&ts, out_pid, &fail) == 0) return 0;
    if (fail.step == 0) return -1;
    /* The pid file was written just before the exec that failed. */
    if (fail.step == TSR_SPAWN_EXEC) (void)unlink(sp->pid_path);
    return TSR_FAIL(TSR_E_IO, "%s %s: %s", tsr_spawn_step_name(&ts, fail.step), sp->argv[0],
                    strerror(fail.err));
}
