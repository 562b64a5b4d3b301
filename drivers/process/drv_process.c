/* The process driver: each sandbox is a tessera-supervisor running as a
 * local process, inside bubblewrap namespaces when bwrap is available.
 *
 *   <data_dir>/sandboxes/<id>/            0700
 *       identity/  cert.pem key.pem bundle.pem   (0700 / 0600)
 *       workspace/                        1777, the workload's /workspace
 *       supervisor.log                    the supervisor's stdout and stderr
 *       pid                               "<pid> <starttime> plain|bwrap"
 *       driver                            "process"
 *       command                           the workload's argv, NUL after each
 *                                         argument (when the sandbox has one)
 *
 * Options: bubblewrap auto|always|never (default auto: used when a probe run
 * of bwrap works), stop_grace_ms (default 10000), start_check_ms (default
 * 250: a sandbox that exits this soon failed to start), supervisor_args
 * (extra arguments, space separated). See docs/drivers.md. */
#include <poll.h>
#include <sys/stat.h>

#include "drv_local.h"
#include "tsr_spawn.h"

#define PROC_SUP_IN_SANDBOX "/run/tessera/bin/tessera-supervisor"
#define PROC_ID_IN_SANDBOX "/run/tessera/identity"
/* What this driver enforces of a policy's domains, for the supervisor's
 * report (docs/policy.md, "Enforcement"): none; they are recorded only. */
#define PROC_ENFORCED "none"

/* supervisor.log: every line is the supervisor's; its last says how it ended. */
static const drv_local_log proc_log = {
    .file = "supervisor.log",
    .only = NULL,
    .exit_marker = "tessera-supervisor: exiting with code ",
};

enum proc_bwrap_mode { PROC_BWRAP_AUTO, PROC_BWRAP_ALWAYS, PROC_BWRAP_NEVER };

typedef struct proc_ctx {
    drv_local local;
    drv_logger log;
    char supervisor[DRV_PATH_MAX];
    char gateway[DRV_MAX_ADDR + 1];
    char td[DRV_MAX_TD + 1];
    char bwrap[DRV_PATH_MAX]; /* "" = plain processes */
    uint64_t grace_ms;
    uint64_t start_check_ms;
    char extra_args[4096];
} proc_ctx;

static const char *const proc_options[] = {"bubblewrap", "stop_grace_ms", "start_check_ms",
                                           "supervisor_args", "gateway", NULL};

/* ---- bubblewrap -------------------------------------------------------------------- */

/* Read-only system directories for the sandbox. Where the host has /bin etc.
 * as symlinks into /usr (merged /usr), the sandbox gets the same symlinks. */
TSR_WUR static int proc_bwrap_system(drv_argv *a)
{
    TSR_GUARD(drv_argv_add(a, "--ro-bind"));
    TSR_GUARD(drv_argv_add(a, "/usr"));
    TSR_GUARD(drv_argv_add(a, "/usr"));
    static const char *const top[] = {"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"};
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++) {
        struct stat st;
        if (lstat(top[i], &st) != 0) continue;
        if (S_ISLNK(st.st_mode)) {
            char target[256];
            ssize_t n = readlink(top[i], target, sizeof target - 1);
            if (n <= 0) continue;
            target[n] = '\0';
            TSR_GUARD(drv_argv_add(a, "--symlink"));
            TSR_GUARD(drv_argv_add(a, target));
            TSR_GUARD(drv_argv_add(a, top[i]));
        } else if (S_ISDIR(st.st_mode)) {
            TSR_GUARD(drv_argv_add(a, "--ro-bind"));
            TSR_GUARD(drv_argv_add(a, top[i]));
            TSR_GUARD(drv_argv_add(a, top[i]));
        }
    }
    /* What TLS, name resolution and the dynamic loader need from /etc; the
     * rest of /etc (and the whole host file system) stays out. */
    static const char *const etc[] = {
        "/etc/ssl",         "/etc/ca-certificates", "/etc/alternatives", "/etc/ld.so.cache",
        "/etc/resolv.conf", "/etc/hosts",           "/etc/nsswitch.conf", "/etc/host.conf",
        "/etc/gai.conf",    "/etc/passwd",          "/etc/group",        "/etc/localtime"};
    for (size_t i = 0; i < sizeof etc / sizeof etc[0]; i++) {
        TSR_GUARD(drv_argv_add(a, "--ro-bind-try"));
        TSR_GUARD(drv_argv_add(a, etc[i]));
        TSR_GUARD(drv_argv_add(a, etc[i]));
    }
    return 0;
}

/* Namespaces and the minimal file system every bwrap run here uses. The
 * network namespace is shared: the supervisor dials the gateway, which may
 * listen on loopback.
 *
 * Run by root, bwrap needs no user namespace, and the supervisor keeps just
 * CAP_SETUID/CAP_SETGID so it can run its workload as another uid (inside a
 * user namespace only one uid is mapped and that separation is impossible)
 * and CAP_KILL to signal that uid: without it the kernel refuses the
 * forwarded SIGTERM, the kill of what the workload leaves behind, and the
 * workload's parent-death SIGKILL, so a workload outlived a killed
 * supervisor (as in the docker driver, docs/drivers.md).
 * Run by anyone else, a user namespace is the only way in, with no caps. */
TSR_WUR static int proc_bwrap_base(const proc_ctx *c, drv_argv *a)
{
    static const char *const base[] = {
        "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--hostname", "tessera", "--new-session", "--cap-drop", "ALL",
        "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"};
    static const char *const as_root[] = {"--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
                                          "--cap-add", "CAP_KILL"};
    TSR_GUARD(drv_argv_add(a, c->bwrap));
    if (geteuid() != 0) TSR_GUARD(drv_argv_add(a, "--unshare-user"));
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++) TSR_GUARD(drv_argv_add(a, base[i]));
    /* After --cap-drop ALL: bwrap applies them in order. */
    if (geteuid() == 0)
        for (size_t i = 0; i < sizeof as_root / sizeof as_root[0]; i++)
            TSR_GUARD(drv_argv_add(a, as_root[i]));
    return proc_bwrap_system(a);
}

/* Run `bwrap ... /usr/bin/true` once: bwrap may be installed but unable to
 * create namespaces (a container without user namespaces, a seccomp filter). */
TSR_WUR static int proc_bwrap_probe(const proc_ctx *c)
{
    int rc = -1, nul = -1;
    drv_argv *a = drv_argv_new(), *e = drv_argv_new();
    TSR_TRY_ENSURE(a != NULL && e != NULL, TSR_E_INTERNAL, "out of memory");
    TSR_TRY(proc_bwrap_base(c, a));
    TSR_TRY(drv_argv_add(a, "--"));
    TSR_TRY(drv_argv_add(a, "true"));
    TSR_TRY(drv_argv_add(e, "PATH=/usr/bin:/bin"));
    TSR_TRY_ENSURE((nul = open("/dev/null", O_WRONLY | O_CLOEXEC)) >= 0, TSR_E_IO,
                   "open /dev/null: %s", strerror(errno));
    tsr_spawn ts = {.argv = a->v, .envp = e->v, .stdout_fd = nul, .stderr_fd = nul,
                    .extra_fd = -1, .umask = -1};
    tsr_spawn_failure fail;
    pid_t pid = 0;
    TSR_TRY(tsr_spawn_run(&ts, &pid, &fail));
    int st = 0;
    pid_t w;
    do w = waitpid(pid, &st, 0);
    while (w < 0 && errno == EINTR);
    TSR_TRY_ENSURE(w == pid, TSR_E_IO, "wait for bwrap: %s", strerror(errno));
    TSR_TRY_ENSURE(WIFEXITED(st) && WEXITSTATUS(st) == 0, TSR_E_IO,
                   "%s cannot create namespaces here (probe %s %d)", c->bwrap,
                   WIFEXITED(st) ? "exit status" : "signal",
                   WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    rc = 0;
out:
    if (nul >= 0) close(nul);
    drv_argv_free(a);
    drv_argv_free(e);
    return rc;
}

static int proc_find_bwrap(char *out, size_t cap)
{
    static const char *const dirs[] = {"/usr/bin", "/bin", "/usr/local/bin"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        int n = snprintf(out, cap, "%s/bwrap", dirs[i]);
        if (n > 0 && (size_t)n < cap && access(out, X_OK) == 0) return 1;
    }
    out[0] = '\0';
    return 0;
}

/* ---- init / fini ---------------------------------------------------------------- */

TSR_WUR static int proc_setup(proc_ctx *c, const tsr_driver_env *env)
{
    TSR_GUARD(drv_options_check(env, proc_options));
    TSR_ENSURE(env->supervisor_path != NULL && env->supervisor_path[0] == '/', TSR_E_INPUT,
               "supervisor_path must be an absolute path");
    TSR_ENSURE(realpath(env->supervisor_path, c->supervisor) != NULL, TSR_E_INPUT,
               "supervisor %s: %s", env->supervisor_path, strerror(errno));
    struct stat st;
    TSR_ENSURE(stat(c->supervisor, &st) == 0 && S_ISREG(st.st_mode) &&
                   access(c->supervisor, X_OK) == 0,
               TSR_E_INPUT, "supervisor %s is not an executable file", c->supervisor);
    /* The addresses supervisors dial: the option (replicas behind several
     * addresses, docs/drivers.md "Gateway addresses"), else the gateway's own. */
    const char *gw = drv_option(env, "gateway");
    if (gw == NULL) gw = env->gateway_addr;
    TSR_ENSURE(drv_addr_list_valid(gw), TSR_E_INPUT,
               "gateway address must be HOST:PORT[,HOST:PORT...] without spaces");
    TSR_ENSURE(drv_td_valid(env->trust_domain), TSR_E_INPUT, "bad trust domain");
    strcpy(c->gateway, gw);
    strcpy(c->td, env->trust_domain);
    TSR_GUARD(drv_option_u64(env, "stop_grace_ms", 10000, 0, 600000, &c->grace_ms));
    TSR_GUARD(drv_option_u64(env, "start_check_ms", 250, 0, 60000, &c->start_check_ms));

    TSR_GUARD(drv_option_supervisor_args(env, c->extra_args, sizeof c->extra_args));

    const char *mode_s = drv_option(env, "bubblewrap");
    enum proc_bwrap_mode mode = PROC_BWRAP_AUTO;
    if (mode_s != NULL) {
        if (strcmp(mode_s, "always") == 0) mode = PROC_BWRAP_ALWAYS;
        else if (strcmp(mode_s, "never") == 0) mode = PROC_BWRAP_NEVER;
        else TSR_ENSURE(strcmp(mode_s, "auto") == 0, TSR_E_INPUT,
                        "option bubblewrap: \"%.32s\" is not auto, always or never", mode_s);
    }
    c->bwrap[0] = '\0';
    if (mode != PROC_BWRAP_NEVER) {
        if (!proc_find_bwrap(c->bwrap, sizeof c->bwrap)) {
            TSR_ENSURE(mode == PROC_BWRAP_AUTO, TSR_E_INPUT,
                       "bubblewrap: always, but no bwrap binary was found");
            drv_logf(&c->log, "bwrap not found: sandboxes run as plain processes");
        } else if (proc_bwrap_probe(c) != 0) {
            TSR_ENSURE(mode == PROC_BWRAP_AUTO, TSR_E_IO, "bubblewrap: always, but %s",
                       tsr_errmsg());
            drv_logf(&c->log, "%s; sandboxes run as plain processes", tsr_errmsg());
            c->bwrap[0] = '\0';
        }
    }
    TSR_GUARD(drv_local_init(&c->local, env->data_dir, "process", &c->log));
    drv_logf(&c->log, "sandboxes under %s, %s", c->local.root,
             c->bwrap[0] != '\0' ? "in bubblewrap namespaces" : "as plain processes");
    return 0;
}

static int proc_init(const tsr_driver_env *env, void **ctx, char *err, size_t err_cap)
{
    if (env == NULL || ctx == NULL) return drv_errf(err, err_cap, "process: no environment");
    proc_ctx *c = calloc(1, sizeof *c);
    if (c == NULL) return drv_errf(err, err_cap, "process: out of memory");
    c->log.log = env->log;
    c->log.arg = env->log_arg;
    c->log.prefix = "process";
    if (proc_setup(c, env) != 0) {
        free(c);
        return drv_err_recorded(err, err_cap, "process: init", NULL);
    }
    *ctx = c;
    return 0;
}

/* Sandboxes keep running: they must survive a gateway restart. */
static void proc_fini(void *ctx)
{
    free(ctx);
}

/* ---- operations ------------------------------------------------------------------- */

/* No image: a process sandbox runs what this host has. */
TSR_WUR static int proc_check_sb(const tsr_driver_sandbox *sb)
{
    TSR_GUARD(drv_command_check(sb));
    TSR_ENSURE(sb->image[0] == '\0', TSR_E_INPUT,
               "image: the process driver runs no images (a process sandbox runs this host's "
               "programs); leave image empty or use the docker or vm driver");
    return 0;
}

static int proc_check(void *ctx, const tsr_driver_sandbox *sb, char *err, size_t err_cap)
{
    (void)ctx;
    return proc_check_sb(sb) != 0 ? drv_invalid_recorded(err, err_cap, "process", NULL)
                                  : TSR_DRIVER_OK;
}

static int proc_create(void *ctx, const tsr_driver_sandbox *sb, const tsr_driver_identity *ident,
                       char *err, size_t err_cap)
{
    proc_ctx *c = ctx;
    const char *id = sb != NULL ? sb->id : NULL;
    char *blob = NULL;
    size_t blob_len = 0;
    if (!drv_id_valid(id)) return drv_errf(err, err_cap, "process: create: bad sandbox id");
    if (proc_check_sb(sb) != 0) return drv_invalid_recorded(err, err_cap, "process: create", id);
    int rc = drv_identity_check(c->td, sb, ident);
    if (rc == 0 && sb->n_command > 0) rc = drv_local_command_blob(sb, &blob, &blob_len);
    if (rc == 0) {
        drv_local_file cmd = {"command", blob, blob_len};
        rc = drv_local_create(&c->local, id, ident, 1, &cmd, sb->n_command > 0 ? 1 : 0);
    }
    free(blob);
    if (rc != 0) return drv_fail_recorded(err, err_cap, "process: create", id);
    drv_logf(&c->log, "created sandbox %s", id);
    return TSR_DRIVER_OK;
}

/* The supervisor's argv and environment (caller holds the lock): bwrap's
 * arguments first when it is used, then the supervisor, its flags, the
 * driver-wide supervisor_args and the workload after "--". */
TSR_WUR static int proc_build_argv(const proc_ctx *c, const char *id, const char *sbdir,
                                   const char *const *command, size_t n_command, drv_argv *a,
                                   drv_argv *e)
{
    char path[DRV_PATH_MAX];
    const char *sup = c->supervisor, *iddir = PROC_ID_IN_SANDBOX;
    if (c->bwrap[0] != '\0') {
        TSR_GUARD(proc_bwrap_base(c, a));
        TSR_GUARD(drv_argv_add(a, "--info-fd"));
        TSR_GUARD(drv_argv_add(a, "3"));
        TSR_GUARD(drv_argv_add(a, "--bind"));
        TSR_GUARD(drv_argv_addf(a, "%s/identity", sbdir));
        TSR_GUARD(drv_argv_add(a, PROC_ID_IN_SANDBOX));
        TSR_GUARD(drv_argv_add(a, "--bind"));
        TSR_GUARD(drv_argv_addf(a, "%s/workspace", sbdir));
        TSR_GUARD(drv_argv_add(a, "/workspace"));
        TSR_GUARD(drv_argv_add(a, "--ro-bind"));
        TSR_GUARD(drv_argv_add(a, c->supervisor));
        TSR_GUARD(drv_argv_add(a, PROC_SUP_IN_SANDBOX));
        TSR_GUARD(drv_argv_add(a, "--chdir"));
        TSR_GUARD(drv_argv_add(a, "/workspace"));
        TSR_GUARD(drv_argv_add(a, "--"));
        sup = PROC_SUP_IN_SANDBOX;
        TSR_GUARD(drv_argv_add(e, "HOME=/workspace"));
    } else {
        int n = snprintf(path, sizeof path, "%s/identity", sbdir);
        TSR_ENSURE(n > 0 && (size_t)n < sizeof path, TSR_E_LIMIT, "path too long");
        iddir = path;
        TSR_GUARD(drv_argv_addf(e, "HOME=%s/workspace", sbdir));
    }
    TSR_GUARD(drv_argv_add(e, "PATH=/usr/local/bin:/usr/bin:/bin"));
    TSR_GUARD(drv_argv_add(a, sup));
    TSR_GUARD(drv_argv_add(a, "--identity-dir"));
    TSR_GUARD(drv_argv_add(a, iddir));
    TSR_GUARD(drv_argv_add_gateways(a, c->gateway));
    TSR_GUARD(drv_argv_add(a, "--trust-domain"));
    TSR_GUARD(drv_argv_add(a, c->td));
    TSR_GUARD(drv_argv_add(a, "--sandbox-id"));
    TSR_GUARD(drv_argv_add(a, id));
    TSR_GUARD(drv_argv_add(a, "--driver"));
    TSR_GUARD(drv_argv_add(a, "process"));
    TSR_GUARD(drv_argv_add(a, "--enforced"));
    TSR_GUARD(drv_argv_add(a, PROC_ENFORCED));
    TSR_GUARD(drv_argv_add_workload(a, c->extra_args, command, n_command));
    return 0;
}

/* Wait for bwrap's --info-fd report: it comes once the namespaces exist
 * (before the file system is set up); EOF without it means bwrap failed
 * (its message is in supervisor.log). */
TSR_WUR static int proc_bwrap_wait_info(int fd)
{
    char buf[1024];
    size_t got = 0;
    int64_t deadline = tsr_monotonic_ms() + 10000;
    for (;;) {
        int64_t left = deadline - tsr_monotonic_ms();
        TSR_ENSURE(left > 0, TSR_E_IO, "bubblewrap did not report within 10 s");
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, (int)left);
        if (r < 0 && errno == EINTR) continue;
        TSR_ENSURE(r >= 0, TSR_E_IO, "poll: %s", strerror(errno));
        if (r == 0) continue;
        ssize_t n = read(fd, buf + got, sizeof buf - 1 - got);
        if (n < 0 && errno == EINTR) continue;
        TSR_ENSURE(n >= 0, TSR_E_IO, "read bwrap info: %s", strerror(errno));
        if (n == 0) break;
        got += (size_t)n;
        if (got == sizeof buf - 1) break;
    }
    buf[got] = '\0';
    TSR_ENSURE(strstr(buf, "\"child-pid\"") != NULL, TSR_E_IO, "bubblewrap did not start");
    return 0;
}

TSR_WUR static int proc_start_locked(void *ctx, const char *id, int sbfd)
{
    proc_ctx *c = ctx;
    int rc = -1, log_fd = -1, info[2] = {-1, -1};
    drv_argv *a = NULL, *e = NULL;
    char *cmd_blob = NULL;
    const char *command[TSR_DRIVER_MAX_COMMAND_ARGS + 1];
    size_t n_command = 0;
    char sbdir[DRV_PATH_MAX], log_path[DRV_PATH_MAX], pid_path[DRV_PATH_MAX],
        pid_tmp[DRV_PATH_MAX], ws[DRV_PATH_MAX];
    drv_pidrec rec;

    enum tsr_driver_state st = drv_local_state(sbfd, &rec);
    if (st == TSR_DRIVER_STATE_RUNNING) {
        drv_logf(&c->log, "sandbox %s is already running (pid %ld)", id, (long)rec.pid);
        return 0;
    }
    TSR_TRY(drv_local_path(&c->local, id, NULL, sbdir, sizeof sbdir));
    TSR_TRY(drv_local_path(&c->local, id, "supervisor.log", log_path, sizeof log_path));
    TSR_TRY(drv_local_path(&c->local, id, "pid", pid_path, sizeof pid_path));
    TSR_TRY(drv_local_path(&c->local, id, "pid.tmp", pid_tmp, sizeof pid_tmp));
    TSR_TRY(drv_local_path(&c->local, id, "workspace", ws, sizeof ws));
    struct stat kst;
    TSR_TRY_ENSURE(fstatat(sbfd, "identity/key.pem", &kst, AT_SYMLINK_NOFOLLOW) == 0 &&
                       S_ISREG(kst.st_mode),
                   TSR_E_STATE, "identity/key.pem is missing");

    a = drv_argv_new();
    e = drv_argv_new();
    TSR_TRY_ENSURE(a != NULL && e != NULL, TSR_E_INTERNAL, "out of memory");
    TSR_TRY(drv_local_command_read(sbfd, &cmd_blob, command, &n_command));
    TSR_TRY(proc_build_argv(c, id, sbdir, command, n_command, a, e));

    log_fd = openat(sbfd, "supervisor.log", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW,
                    0600);
    TSR_TRY_ENSURE(log_fd >= 0, TSR_E_IO, "open %s: %s", log_path, strerror(errno));
    drv_local_mark(log_fd);
    if (c->bwrap[0] != '\0')
        TSR_TRY_ENSURE(pipe2(info, O_CLOEXEC) == 0, TSR_E_IO, "pipe: %s", strerror(errno));

    drv_spawn sp = {
        .argv = a->v,
        .envp = e->v,
        .cwd = ws,
        .log_fd = log_fd,
        .extra_fd = info[1],
        .pid_path = pid_path,
        .pid_tmp = pid_tmp,
        .kind = c->bwrap[0] != '\0' ? "bwrap" : "plain",
    };
    pid_t pid = 0;
    TSR_TRY(drv_spawn_detached(&sp, &pid));
    int ok = 1;
    if (info[1] >= 0) {
        close(info[1]);
        info[1] = -1;
        ok = proc_bwrap_wait_info(info[0]) == 0;
    }
    /* bwrap reports before it sets up the file system, and a supervisor can
     * die on its arguments: a sandbox gone within start_check_ms did not
     * start. (Later deaths show as STOPPED in status.) */
    drv_pidrec started;
    int present = 0;
    if (drv_pidfile_read(sbfd, "pid", &started, &present) != 0 || !present) {
        (void)TSR_FAIL(TSR_E_INTERNAL, "the started process wrote no pid file");
        goto out;
    }
    if (ok) ok = !drv_proc_wait_gone(started.pid, started.start, c->start_check_ms);
    if (!ok) {
        int killed = 0;
        if (drv_local_terminate(&started, 0, &killed) != 0)
            drv_logf(&c->log, "sandbox %s: %s", id, tsr_errmsg());
        (void)unlinkat(sbfd, "pid", 0);
        char last[600];
        drv_local_last_words(sbfd, &proc_log, last, sizeof last);
        if (c->bwrap[0] != '\0')
            (void)TSR_FAIL(TSR_E_STATE,
                           "the sandbox exited at once: bubblewrap could not set it up or the "
                           "supervisor failed (%s: %s)",
                           log_path, last[0] != '\0' ? last : "nothing in it");
        else
            (void)TSR_FAIL(TSR_E_STATE, "the supervisor exited at once (%s: %s)", log_path,
                           last[0] != '\0' ? last : "nothing in it");
        goto out;
    }
    drv_logf(&c->log, "started sandbox %s (pid %ld, %s)", id, (long)pid, sp.kind);
    rc = 0;
out:
    if (log_fd >= 0) close(log_fd);
    if (info[0] >= 0) close(info[0]);
    if (info[1] >= 0) close(info[1]);
    drv_argv_free(a);
    drv_argv_free(e);
    free(cmd_blob);
    return rc;
}

static int proc_start(void *ctx, const char *id, char *err, size_t err_cap)
{
    proc_ctx *c = ctx;
    return drv_local_run(&c->local, "start", id, proc_start_locked, c, err, err_cap);
}

TSR_WUR static int proc_stop_locked(void *ctx, const char *id, int sbfd)
{
    proc_ctx *c = ctx;
    drv_pidrec rec;
    if (drv_local_state(sbfd, &rec) != TSR_DRIVER_STATE_RUNNING) return 0;
    int killed = 0;
    TSR_GUARD(drv_local_terminate(&rec, c->grace_ms, &killed));
    drv_logf(&c->log, "stopped sandbox %s%s", id, killed ? " (SIGKILL after the grace period)" : "");
    return 0;
}

static int proc_stop(void *ctx, const char *id, char *err, size_t err_cap)
{
    proc_ctx *c = ctx;
    return drv_local_run(&c->local, "stop", id, proc_stop_locked, c, err, err_cap);
}

/* Destroying a sandbox that does not exist succeeds (nothing is left). */
static int proc_destroy(void *ctx, const char *id, char *err, size_t err_cap)
{
    proc_ctx *c = ctx;
    return drv_local_destroy(&c->local, &c->log, id, proc_stop_locked, c, err, err_cap);
}

static int proc_status(void *ctx, const char *id, tsr_driver_status *st, char *err,
                       size_t err_cap)
{
    proc_ctx *c = ctx;
    return drv_local_status(&c->local, id, st, &proc_log, err, err_cap);
}

static const tsr_driver_ops proc_ops = {
    .abi_version = TSR_DRIVER_ABI_VERSION,
    .struct_size = sizeof(tsr_driver_ops),
    .name = "process",
    .init = proc_init,
    .fini = proc_fini,
    .check = proc_check,
    .create = proc_create,
    .start = proc_start,
    .stop = proc_stop,
    .destroy = proc_destroy,
    .status = proc_status,
};

DRV_EXPORT const tsr_driver_ops *tessera_driver_entry(void)
{
    return &proc_ops;
}
