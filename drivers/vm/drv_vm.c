/* The vm driver: each sandbox is a QEMU virtual machine whose guest runs
 * tessera-supervisor.
 *
 *   <data_dir>/sandboxes/<id>/            0700, QEMU's working directory
 *       identity/  cert.pem key.pem bundle.pem   (0700 / 0600)
 *       console.log                       the guest's serial console
 *       qemu.log                          QEMU's own stdout and stderr
 *       qmp.sock                          QMP, for system_powerdown
 *       qemu.pid                          QEMU's pid file (locked by QEMU)
 *       pid                               "<pid> <starttime> qemu"
 *       driver                            "vm"
 *
 * Identity reaches the guest only through fw_cfg files
 * (opt/tessera/cert.pem, key.pem, bundle.pem; QEMU reads them from identity/
 * at start), never the kernel command line or an argument's content. The
 * gateway address, trust domain and sandbox id (not secret) are fw_cfg
 * strings too (opt/tessera/gateway, trust_domain, sandbox_id).
 *
 * Options: qemu (default qemu-system-x86_64, looked up in PATH), kernel
 * (required), initrd, append, memory_mb (512), cpus (1), accel (tcg),
 * network user|none (user), qemu_sandbox on|off (on), gateway (the address
 * the guest dials; with user networking the host is 10.0.2.2),
 * stop_grace_ms (30000), start_check_ms (250). See docs/drivers.md. */
#include "drv_vm.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "drv_local.h"

typedef struct vm_ctx {
    drv_local local;
    drv_logger log;
    drv_vm_config cfg;
    uint64_t grace_ms;
    uint64_t start_check_ms;
} vm_ctx;

static const char *const vm_options[] = {"qemu",    "kernel",       "initrd",        "append",
                                         "memory_mb", "cpus",       "accel",         "network",
                                         "qemu_sandbox", "gateway", "stop_grace_ms",
                                         "start_check_ms", NULL};

/* ---- argv ------------------------------------------------------------------------ */

int drv_vm_build_argv(const drv_vm_config *cfg, const char *sandbox_id, drv_argv *a)
{
    TSR_ENSURE(drv_id_valid(sandbox_id), TSR_E_INPUT, "sandbox id is not a lowercase UUID");
    TSR_ENSURE(cfg->qemu[0] == '/' && cfg->kernel[0] == '/', TSR_E_INPUT,
               "qemu and kernel must be absolute paths");
    TSR_ENSURE(drv_addr_valid(cfg->gateway) && drv_td_valid(cfg->td), TSR_E_INPUT,
               "bad gateway address or trust domain");
    TSR_GUARD(drv_argv_add(a, cfg->qemu));
    TSR_GUARD(drv_argv_add(a, "-name"));
    TSR_GUARD(drv_argv_addf(a, "tessera-%s", sandbox_id));
    TSR_GUARD(drv_argv_add(a, "-machine"));
    TSR_GUARD(drv_argv_add(a, "q35"));
    TSR_GUARD(drv_argv_add(a, "-accel"));
    TSR_GUARD(drv_argv_add(a, cfg->accel));
    TSR_GUARD(drv_argv_add(a, "-m"));
    TSR_GUARD(drv_argv_addf(a, "%llu", (unsigned long long)cfg->memory_mb));
    TSR_GUARD(drv_argv_add(a, "-smp"));
    TSR_GUARD(drv_argv_addf(a, "%llu", (unsigned long long)cfg->cpus));
    static const char *const fixed[] = {"-nodefaults", "-no-user-config", "-nographic",
                                        "-monitor",    "none",            "-serial",
                                        "file:console.log", "-no-reboot"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        TSR_GUARD(drv_argv_add(a, fixed[i]));
    if (cfg->qemu_sandbox) {
        TSR_GUARD(drv_argv_add(a, "-sandbox"));
        TSR_GUARD(drv_argv_add(
            a, "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"));
    }
    TSR_GUARD(drv_argv_add(a, "-kernel"));
    TSR_GUARD(drv_argv_add(a, cfg->kernel));
    if (cfg->initrd[0] != '\0') {
        TSR_GUARD(drv_argv_add(a, "-initrd"));
        TSR_GUARD(drv_argv_add(a, cfg->initrd));
    }
    TSR_GUARD(drv_argv_add(a, "-append"));
    TSR_GUARD(drv_argv_addf(a, "console=ttyS0 panic=-1%s%s", cfg->append[0] != '\0' ? " " : "",
                            cfg->append));
    static const char *const files[] = {"cert.pem", "key.pem", "bundle.pem"};
    for (size_t i = 0; i < 3; i++) {
        TSR_GUARD(drv_argv_add(a, "-fw_cfg"));
        TSR_GUARD(drv_argv_addf(a, "name=opt/tessera/%s,file=identity/%s", files[i], files[i]));
    }
    /* Validated above: none of these holds a comma (QEMU's option separator). */
    TSR_GUARD(drv_argv_add(a, "-fw_cfg"));
    TSR_GUARD(drv_argv_addf(a, "name=opt/tessera/gateway,string=%s", cfg->gateway));
    TSR_GUARD(drv_argv_add(a, "-fw_cfg"));
    TSR_GUARD(drv_argv_addf(a, "name=opt/tessera/trust_domain,string=%s", cfg->td));
    TSR_GUARD(drv_argv_add(a, "-fw_cfg"));
    TSR_GUARD(drv_argv_addf(a, "name=opt/tessera/sandbox_id,string=%s", sandbox_id));
    TSR_GUARD(drv_argv_add(a, "-nic"));
    TSR_GUARD(drv_argv_add(a, cfg->network_user ? "user,model=virtio-net-pci" : "none"));
    TSR_GUARD(drv_argv_add(a, "-qmp"));
    TSR_GUARD(drv_argv_add(a, "unix:qmp.sock,server=on,wait=off"));
    TSR_GUARD(drv_argv_add(a, "-pidfile"));
    TSR_GUARD(drv_argv_add(a, "qemu.pid"));
    return 0;
}

/* ---- init -------------------------------------------------------------------------- */

TSR_WUR static int vm_abs_file(const char *what, const char *v, char *out, size_t cap, int exec)
{
    TSR_ENSURE(v != NULL && v[0] == '/', TSR_E_INPUT, "%s must be an absolute path", what);
    char real[4096];
    TSR_ENSURE(realpath(v, real) != NULL, TSR_E_INPUT, "%s %s: %s", what, v, strerror(errno));
    struct stat st;
    TSR_ENSURE(stat(real, &st) == 0 && S_ISREG(st.st_mode) &&
                   access(real, exec ? X_OK : R_OK) == 0,
               TSR_E_INPUT, "%s %s is not a %s file", what, real, exec ? "executable" : "readable");
    TSR_ENSURE(strlen(real) < cap, TSR_E_LIMIT, "%s path too long", what);
    strcpy(out, real);
    return 0;
}

/* A bare name is looked up in PATH, as a shell would. */
TSR_WUR static int vm_find_qemu(const char *name, char *out, size_t cap)
{
    if (strchr(name, '/') != NULL) return vm_abs_file("qemu", name, out, cap, 1);
    const char *path = getenv("PATH");
    if (path == NULL || path[0] == '\0') path = "/usr/local/bin:/usr/bin:/bin";
    char cand[4096];
    for (const char *p = path; *p != '\0';) {
        const char *e = strchr(p, ':');
        size_t l = e != NULL ? (size_t)(e - p) : strlen(p);
        if (l > 0 && l + strlen(name) + 2 < sizeof cand && p[0] == '/') {
            memcpy(cand, p, l);
            cand[l] = '/';
            strcpy(cand + l + 1, name);
            if (access(cand, X_OK) == 0) return vm_abs_file("qemu", cand, out, cap, 1);
        }
        p = e != NULL ? e + 1 : p + l;
    }
    return TSR_FAIL(TSR_E_INPUT, "qemu: %s not found in PATH (install QEMU or set the qemu option)",
                    name);
}

static int vm_word_ok(const char *s, size_t max, const char *extra)
{
    size_t n = strlen(s);
    if (n == 0 || n > max) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
              strchr(extra, s[i]) != NULL))
            return 0;
    return 1;
}

TSR_WUR static int vm_setup(vm_ctx *c, const tsr_driver_env *env)
{
    drv_vm_config *cfg = &c->cfg;
    TSR_GUARD(drv_options_check(env, vm_options));
    const char *v = drv_option(env, "qemu");
    TSR_GUARD(vm_find_qemu(v != NULL ? v : "qemu-system-x86_64", cfg->qemu, sizeof cfg->qemu));
    v = drv_option(env, "kernel");
    TSR_ENSURE(v != NULL, TSR_E_INPUT, "option kernel is required (the guest kernel image)");
    TSR_GUARD(vm_abs_file("kernel", v, cfg->kernel, sizeof cfg->kernel, 0));
    v = drv_option(env, "initrd");
    if (v != NULL) TSR_GUARD(vm_abs_file("initrd", v, cfg->initrd, sizeof cfg->initrd, 0));
    v = drv_option(env, "append");
    if (v != NULL) {
        TSR_ENSURE(strlen(v) < 900, TSR_E_LIMIT, "option append is too long");
        /* The kernel command line is world-readable in the guest (and in
         * QEMU's argv on the host): refuse anything that looks like identity. */
        TSR_ENSURE(strstr(v, ".pem") == NULL && strstr(v, "identity") == NULL &&
                       strstr(v, "PRIVATE") == NULL,
                   TSR_E_INPUT, "option append must not name identity files");
        strcpy(cfg->append, v);
    }
    v = drv_option(env, "accel");
    if (v == NULL) v = "tcg";
    TSR_ENSURE(vm_word_ok(v, sizeof cfg->accel - 1, ",=_-"), TSR_E_INPUT,
               "option accel: \"%.32s\" is not an accelerator", v);
    strcpy(cfg->accel, v);
    v = drv_option(env, "network");
    cfg->network_user = 1;
    if (v != NULL) {
        TSR_ENSURE(strcmp(v, "user") == 0 || strcmp(v, "none") == 0, TSR_E_INPUT,
                   "option network: user or none");
        cfg->network_user = strcmp(v, "user") == 0;
    }
    v = drv_option(env, "qemu_sandbox");
    cfg->qemu_sandbox = 1;
    if (v != NULL) {
        TSR_ENSURE(strcmp(v, "on") == 0 || strcmp(v, "off") == 0, TSR_E_INPUT,
                   "option qemu_sandbox: on or off");
        cfg->qemu_sandbox = strcmp(v, "on") == 0;
    }
    v = drv_option(env, "gateway");
    if (v == NULL) v = env->gateway_addr;
    TSR_ENSURE(drv_addr_valid(v), TSR_E_INPUT, "gateway address must be HOST:PORT");
    strcpy(cfg->gateway, v);
    TSR_ENSURE(drv_td_valid(env->trust_domain), TSR_E_INPUT, "bad trust domain");
    strcpy(cfg->td, env->trust_domain);
    TSR_GUARD(drv_option_u64(env, "memory_mb", 512, 64, 262144, &cfg->memory_mb));
    TSR_GUARD(drv_option_u64(env, "cpus", 1, 1, 64, &cfg->cpus));
    TSR_GUARD(drv_option_u64(env, "stop_grace_ms", 30000, 0, 600000, &c->grace_ms));
    TSR_GUARD(drv_option_u64(env, "start_check_ms", 250, 0, 60000, &c->start_check_ms));
    TSR_GUARD(drv_local_init(&c->local, env->data_dir, "vm", &c->log));
    drv_logf(&c->log, "QEMU %s, kernel %s, sandboxes under %s", cfg->qemu, cfg->kernel,
             c->local.root);
    return 0;
}

static int vm_init(const tsr_driver_env *env, void **ctx, char *err, size_t err_cap)
{
    if (env == NULL || ctx == NULL) return drv_errf(err, err_cap, "vm: no environment");
    vm_ctx *c = calloc(1, sizeof *c);
    if (c == NULL) return drv_errf(err, err_cap, "vm: out of memory");
    c->log.log = env->log;
    c->log.arg = env->log_arg;
    c->log.prefix = "vm";
    if (vm_setup(c, env) != 0) {
        free(c);
        return drv_err_recorded(err, err_cap, "vm: init", NULL);
    }
    *ctx = c;
    return 0;
}

/* Virtual machines keep running: they must survive a gateway restart. */
static void vm_fini(void *ctx)
{
    free(ctx);
}

/* ---- QMP ---------------------------------------------------------------------------- */

/* Read one line (without the newline) into buf; 0 on success. */
TSR_WUR static int vm_qmp_line(int fd, char *buf, size_t cap, size_t *have)
{
    for (;;) {
        char *nl = memchr(buf, '\n', *have);
        if (nl != NULL) {
            *nl = '\0';
            return 0;
        }
        TSR_ENSURE(*have + 1 < cap, TSR_E_PROTO, "QMP line too long");
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, 2000);
        if (r < 0 && errno == EINTR) continue;
        TSR_ENSURE(r > 0, TSR_E_IO, "QMP: no answer");
        ssize_t n = read(fd, buf + *have, cap - 1 - *have);
        if (n < 0 && errno == EINTR) continue;
        TSR_ENSURE(n > 0, TSR_E_IO, "QMP: connection closed");
        *have += (size_t)n;
    }
}

/* Send a command and read until its answer ("return" or "error"), skipping
 * asynchronous events. */
TSR_WUR static int vm_qmp_exec(int fd, const char *cmd)
{
    char buf[65536];
    size_t have = 0;
    size_t len = strlen(cmd);
    TSR_ENSURE(write(fd, cmd, len) == (ssize_t)len, TSR_E_IO, "QMP: write: %s", strerror(errno));
    for (int lines = 0; lines < 64; lines++) {
        TSR_GUARD(vm_qmp_line(fd, buf, sizeof buf, &have));
        size_t l = strlen(buf) + 1;
        int ret = strstr(buf, "\"return\"") != NULL, bad = strstr(buf, "\"error\"") != NULL;
        memmove(buf, buf + l, have - l);
        have -= l;
        if (ret) return 0;
        TSR_ENSURE(!bad, TSR_E_IO, "QMP refused %.40s", cmd);
    }
    return TSR_FAIL(TSR_E_PROTO, "QMP: no answer to %.40s", cmd);
}

/* Ask the guest to power down (ACPI), as a power button press would. */
TSR_WUR static int vm_qmp_powerdown(int sbfd)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    /* Through the locked directory's descriptor: short, and the same
     * directory even if the data dir path is long. */
    snprintf(sa.sun_path, sizeof sa.sun_path, "/proc/self/fd/%d/qmp.sock", sbfd);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    TSR_ENSURE(fd >= 0, TSR_E_IO, "socket: %s", strerror(errno));
    int rc = -1;
    char greet[4096];
    size_t have = 0;
    TSR_TRY_ENSURE(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0, TSR_E_IO,
                   "QMP: connect: %s", strerror(errno));
    TSR_TRY(vm_qmp_line(fd, greet, sizeof greet, &have));
    TSR_TRY_ENSURE(strstr(greet, "\"QMP\"") != NULL, TSR_E_PROTO, "QMP: no greeting");
    TSR_TRY_ENSURE(have == strlen(greet) + 1, TSR_E_PROTO, "QMP: data after the greeting");
    TSR_TRY(vm_qmp_exec(fd, "{\"execute\":\"qmp_capabilities\"}\n"));
    TSR_TRY(vm_qmp_exec(fd, "{\"execute\":\"system_powerdown\"}\n"));
    rc = 0;
out:
    close(fd);
    return rc;
}

/* ---- operations ------------------------------------------------------------------- */

static int vm_create(void *ctx, const tsr_driver_sandbox *sb, const tsr_driver_identity *ident,
                     char *err, size_t err_cap)
{
    vm_ctx *c = ctx;
    const char *id = sb != NULL ? sb->id : NULL;
    if (!drv_id_valid(id)) return drv_errf(err, err_cap, "vm: create: bad sandbox id");
    if (drv_identity_check(c->cfg.td, sb, ident) != 0 ||
        drv_local_create(&c->local, id, ident, 0) != 0)
        return drv_err_recorded(err, err_cap, "vm: create", id);
    drv_logf(&c->log, "created sandbox %s", id);
    return 0;
}

TSR_WUR static int vm_start_locked(void *ctx, const char *id, int sbfd)
{
    vm_ctx *c = ctx;
    int rc = -1, log_fd = -1;
    drv_argv *a = NULL, *e = NULL;
    char sbdir[DRV_PATH_MAX], log_path[DRV_PATH_MAX], pid_path[DRV_PATH_MAX],
        pid_tmp[DRV_PATH_MAX];
    drv_pidrec rec;

    if (drv_local_state(sbfd, &rec) == TSR_DRIVER_STATE_RUNNING) {
        drv_logf(&c->log, "sandbox %s is already running (pid %ld)", id, (long)rec.pid);
        return 0;
    }
    TSR_TRY(drv_local_path(&c->local, id, NULL, sbdir, sizeof sbdir));
    TSR_TRY(drv_local_path(&c->local, id, "qemu.log", log_path, sizeof log_path));
    TSR_TRY(drv_local_path(&c->local, id, "pid", pid_path, sizeof pid_path));
    TSR_TRY(drv_local_path(&c->local, id, "pid.tmp", pid_tmp, sizeof pid_tmp));
    struct stat kst;
    TSR_TRY_ENSURE(fstatat(sbfd, "identity/key.pem", &kst, AT_SYMLINK_NOFOLLOW) == 0 &&
                       S_ISREG(kst.st_mode),
                   TSR_E_STATE, "identity/key.pem is missing");
    a = drv_argv_new();
    e = drv_argv_new();
    TSR_TRY_ENSURE(a != NULL && e != NULL, TSR_E_INTERNAL, "out of memory");
    TSR_TRY(drv_vm_build_argv(&c->cfg, id, a));
    TSR_TRY(drv_argv_add(e, "PATH=/usr/local/bin:/usr/bin:/bin"));
    log_fd = openat(sbfd, "qemu.log", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    TSR_TRY_ENSURE(log_fd >= 0, TSR_E_IO, "open %s: %s", log_path, strerror(errno));

    drv_spawn sp = {
        .argv = a->v,
        .envp = e->v,
        .cwd = sbdir,
        .log_fd = log_fd,
        .extra_fd = -1,
        .pid_path = pid_path,
        .pid_tmp = pid_tmp,
        .kind = "qemu",
    };
    pid_t pid = 0;
    TSR_TRY(drv_spawn_detached(&sp, &pid));
    /* QEMU refuses a bad kernel, accelerator or option at once. */
    int present = 0;
    TSR_TRY(drv_pidfile_read(sbfd, "pid", &rec, &present));
    TSR_TRY_ENSURE(present, TSR_E_INTERNAL, "QEMU wrote no pid file");
    if (drv_proc_wait_gone(rec.pid, rec.start, c->start_check_ms)) {
        (void)unlinkat(sbfd, "pid", 0);
        (void)TSR_FAIL(TSR_E_IO, "QEMU exited at once (see %s)", log_path);
        goto out;
    }
    drv_logf(&c->log, "started sandbox %s (QEMU pid %ld)", id, (long)pid);
    rc = 0;
out:
    if (log_fd >= 0) close(log_fd);
    drv_argv_free(a);
    drv_argv_free(e);
    return rc;
}

static int vm_start(void *ctx, const char *id, char *err, size_t err_cap)
{
    vm_ctx *c = ctx;
    return drv_local_run(&c->local, "start", id, vm_start_locked, c, err, err_cap);
}

/* ACPI power-down through QMP, up to stop_grace_ms for the guest to halt,
 * then SIGTERM (QEMU exits at once), then SIGKILL. */
TSR_WUR static int vm_stop_locked(void *ctx, const char *id, int sbfd)
{
    vm_ctx *c = ctx;
    drv_pidrec rec;
    if (drv_local_state(sbfd, &rec) != TSR_DRIVER_STATE_RUNNING) return 0;
    const char *how = "powered down";
    if (vm_qmp_powerdown(sbfd) != 0) {
        drv_logf(&c->log, "sandbox %s: %s; terminating QEMU", id, tsr_errmsg());
        how = "terminated";
    } else if (!drv_proc_wait_gone(rec.pid, rec.start, c->grace_ms)) {
        how = "terminated after the grace period";
    }
    int killed = 0;
    TSR_GUARD(drv_local_terminate(&rec, 5000, &killed));
    drv_logf(&c->log, "stopped sandbox %s (%s%s)", id, how, killed ? ", SIGKILL" : "");
    return 0;
}

static int vm_stop(void *ctx, const char *id, char *err, size_t err_cap)
{
    vm_ctx *c = ctx;
    return drv_local_run(&c->local, "stop", id, vm_stop_locked, c, err, err_cap);
}

static int vm_destroy(void *ctx, const char *id, char *err, size_t err_cap)
{
    vm_ctx *c = ctx;
    return drv_local_destroy(&c->local, &c->log, id, vm_stop_locked, c, err, err_cap);
}

static int vm_status(void *ctx, const char *id, enum tsr_driver_state *state, char *err,
                       size_t err_cap)
{
    vm_ctx *c = ctx;
    return drv_local_status(&c->local, id, state, err, err_cap);
}

static const tsr_driver_ops vm_ops = {
    .abi_version = TSR_DRIVER_ABI_VERSION,
    .struct_size = sizeof(tsr_driver_ops),
    .name = "vm",
    .init = vm_init,
    .fini = vm_fini,
    .create = vm_create,
    .start = vm_start,
    .stop = vm_stop,
    .destroy = vm_destroy,
    .status = vm_status,
};

DRV_EXPORT const tsr_driver_ops *tessera_driver_entry(void)
{
    return &vm_ops;
}
