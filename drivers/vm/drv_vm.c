/* The vm driver: each sandbox is a QEMU virtual machine whose guest runs
 * tessera-supervisor (docs/drivers.md, "vm").
 *
 *   <data_dir>/sandboxes/<id>/            0700, QEMU's working directory
 *       identity/  cert.pem key.pem bundle.pem   (0700 / 0600), only until
 *                                         QEMU has read them (see below)
 *       console.log                       the guest's serial console
 *       qemu.log                          QEMU's own stdout and stderr
 *       qmp.sock                          QMP, for readiness and system_powerdown
 *       qemu.pid                          QEMU's pid file (locked by QEMU)
 *       relay.lock                        tessera-vm-relay's connection slots
 *       pid                               "<pid> <starttime> qemu"
 *       driver                            "vm"
 *       image                             the guest image's name (when not the default)
 *       command                           the sandbox's workload argv (NUL after each)
 *       command.fw                        the workload for fw_cfg opt/tessera/command
 *
 * Identity reaches the guest only through fw_cfg files
 * (opt/tessera/cert.pem, key.pem, bundle.pem), never the kernel command line
 * or an argument's content. QEMU reads the files once, at start; the driver
 * deletes them as soon as QEMU answers on QMP (its start-up, fw_cfg included,
 * is over by then). So the host keeps no key of a running VM, and an identity
 * boots at most once: the guest rotates its own (fw_cfg is read-only and the
 * guest's copy dies with it), and starting a VM again asks the gateway for a
 * fresh one (tsr_driver_env.mint_identity) instead of booting the first,
 * perhaps expired or revoked, one. A guest reboot ends QEMU (-no-reboot): the
 * same fw_cfg is never read twice.
 *
 * Options: see vm_options and docs/drivers.md. Without options it boots the
 * guest `make vm-image` builds (beside the gateway's bin/: ../vm/) with
 * gateway networking through ../bin/tessera-vm-relay. */
#include "drv_vm.h"

#include <jansson.h>
#include <linux/kvm.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "drv_local.h"

/* How long QEMU may take to answer on QMP after its start (its start-up
 * reads the kernel, the initrd and the fw_cfg files). */
#define VM_QMP_READY_MS 30000
/* How far before its issue the gateway dates a certificate's notBefore. */
#define VM_BACKDATE_S 60

typedef struct vm_ctx {
    drv_local local;
    drv_logger log;
    drv_vm_config cfg;
    drv_vm_image images[DRV_VM_MAX_IMAGES];
    size_t n_images;
    uint64_t grace_ms;
    uint64_t start_check_ms;
    int (*mint)(void *arg, const char *sandbox_id, tsr_driver_identity *out, char *err,
                size_t err_cap);
    void (*release)(void *arg, tsr_driver_identity *identity);
    void *mint_arg;
} vm_ctx;

static const char *const vm_options[] = {
    "qemu",          "kernel",  "initrd",          "append",        "memory_mb",
    "cpus",          "accel",   "network",         "qemu_sandbox",  "gateway",
    "relay",         "supervisor_args", "stop_grace_ms", "start_check_ms", "images", NULL};

/* console.log: the supervisor's lines and tessera-init's (the kernel's are
 * left out); tessera-init says how the supervisor ended. */
static const drv_local_log vm_log = {
    .file = "console.log",
    .only = "tessera-",
    .exit_marker = "tessera-init: tessera-supervisor exited with status ",
};

static const char *const vm_identity_files[] = {"cert.pem", "key.pem", "bundle.pem"};

static int vm_chars_ok(const char *s, const char *extra);

/* ---- argv ------------------------------------------------------------------------ */

/* An fw_cfg string value: QEMU's option parser ends a value at a comma and
 * reads ",," as one comma. */
TSR_WUR static int vm_add_fw_string(drv_argv *a, const char *name, const char *value)
{
    char esc[2 * 1024 + 1];
    size_t n = 0;
    for (const char *p = value; *p != '\0'; p++) {
        TSR_ENSURE(n + 2 < sizeof esc, TSR_E_LIMIT, "fw_cfg %s is too long", name);
        esc[n++] = *p;
        if (*p == ',') esc[n++] = ',';
    }
    esc[n] = '\0';
    TSR_GUARD(drv_argv_add(a, "-fw_cfg"));
    return drv_argv_addf(a, "name=opt/tessera/%s,string=%s", name, esc);
}

/* The port of "HOST:PORT" (validated by drv_addr_valid). */
static const char *vm_addr_port(const char *addr)
{
    return strrchr(addr, ':') + 1;
}

/* The guest's address of the i-th forward to the relay: 10.0.2.(100+i). */
static void vm_guest_forward_ip(size_t i, char *out, size_t cap)
{
    snprintf(out, cap, "%s%zu", DRV_VM_GUEST_GATEWAY_NET, DRV_VM_GUEST_GATEWAY_HOST + i);
}

int drv_vm_guest_gateway(enum drv_vm_network net, const char *host_gateway, char *out,
                         size_t cap)
{
    TSR_ENSURE(drv_addr_list_valid(host_gateway), TSR_E_INPUT,
               "gateway address must be HOST:PORT[,HOST:PORT...]");
    TSR_ENSURE(cap > 0, TSR_E_LIMIT, "gateway address too long");
    out[0] = '\0';
    size_t used = 0;
    char one[DRV_MAX_ADDR + 1];
    for (size_t i = 0; drv_addr_list_item(host_gateway, i, one, sizeof one); i++) {
        const char *port = vm_addr_port(one);
        size_t hl = (size_t)(port - 1 - one);
        const char *sep = i > 0 ? "," : "";
        int n;
        if (net == DRV_VM_NET_GATEWAY) {
            char ip[32];
            vm_guest_forward_ip(i, ip, sizeof ip);
            n = snprintf(out + used, cap - used, "%s%s:%s", sep, ip, port);
        } else {
            static const char *const loopback[] = {"127.0.0.1", "localhost", "[::1]"};
            int lo = 0;
            for (size_t k = 0; k < sizeof loopback / sizeof loopback[0]; k++)
                if (hl == strlen(loopback[k]) && memcmp(one, loopback[k], hl) == 0) lo = 1;
            n = lo ? snprintf(out + used, cap - used, "%s%s:%s", sep, DRV_VM_HOST_ALIAS_IP, port)
                   : snprintf(out + used, cap - used, "%s%s", sep, one);
        }
        TSR_ENSURE(n > 0 && (size_t)n < cap - used, TSR_E_LIMIT, "gateway address too long");
        used += (size_t)n;
    }
    return 0;
}

/* Only the forwards, one per gateway address: a guest connection to
 * 10.0.2.(100+i):<port> starts one relay to the i-th (QEMU splits the command
 * on spaces; the paths and the addresses hold no comma, space or quote). */
TSR_WUR static int vm_add_netdev_forwards(drv_argv *a, const drv_vm_config *cfg,
                                          const char *sandbox_id)
{
    char netdev[4096] = "user,id=net0,ipv6=off,restrict=on";
    size_t used = strlen(netdev);
    char guest[DRV_MAX_ADDR + 1], host[DRV_MAX_ADDR + 1];
    for (size_t i = 0; drv_addr_list_item(cfg->host_gateway, i, host, sizeof host); i++) {
        TSR_ENSURE(drv_addr_list_item(cfg->guest_gateway, i, guest, sizeof guest), TSR_E_INPUT,
                   "fewer guest than host gateway addresses");
        int n = snprintf(netdev + used, sizeof netdev - used, ",guestfwd=tcp:%s-cmd:%s %s %s",
                         guest, cfg->relay, host, sandbox_id);
        TSR_ENSURE(n > 0 && (size_t)n < sizeof netdev - used, TSR_E_LIMIT, "netdev too long");
        used += (size_t)n;
    }
    return drv_argv_add(a, netdev);
}

int drv_vm_build_argv(const drv_vm_config *cfg, const char *sandbox_id, const drv_vm_boot *boot,
                      drv_argv *a)
{
    const char *kernel = boot != NULL && boot->image != NULL ? boot->image->kernel : cfg->kernel;
    const char *initrd = boot != NULL && boot->image != NULL ? boot->image->initrd : cfg->initrd;
    const char *command_file = boot != NULL ? boot->command_file : NULL;
    TSR_ENSURE(drv_id_valid(sandbox_id), TSR_E_INPUT, "sandbox id is not a lowercase UUID");
    TSR_ENSURE(cfg->qemu[0] == '/' && kernel[0] == '/', TSR_E_INPUT,
               "qemu and kernel must be absolute paths");
    TSR_ENSURE(command_file == NULL || vm_chars_ok(command_file, "._-"), TSR_E_INPUT,
               "bad command file name");
    TSR_ENSURE(drv_addr_list_valid(cfg->guest_gateway) && drv_td_valid(cfg->td), TSR_E_INPUT,
               "bad gateway address or trust domain");
    int gw_net = cfg->network == DRV_VM_NET_GATEWAY;
    TSR_ENSURE(!gw_net || (cfg->relay[0] == '/' && drv_addr_list_valid(cfg->host_gateway)),
               TSR_E_INPUT, "gateway networking needs the relay and the gateway's address");
    int kvm = strcmp(cfg->accel, "kvm") == 0;
    TSR_ENSURE(kvm || strcmp(cfg->accel, "tcg") == 0, TSR_E_INPUT, "accel must be kvm or tcg");
    TSR_GUARD(drv_argv_add(a, cfg->qemu));
    TSR_GUARD(drv_argv_add(a, "-name"));
    TSR_GUARD(drv_argv_addf(a, "tessera-%s", sandbox_id));
    TSR_GUARD(drv_argv_add(a, "-machine"));
    TSR_GUARD(drv_argv_add(a, "q35"));
    TSR_GUARD(drv_argv_add(a, "-accel"));
    TSR_GUARD(drv_argv_add(a, cfg->accel));
    if (kvm) {
        TSR_GUARD(drv_argv_add(a, "-cpu"));
        TSR_GUARD(drv_argv_add(a, "host"));
    }
    TSR_GUARD(drv_argv_add(a, "-m"));
    TSR_GUARD(drv_argv_addf(a, "%llu", (unsigned long long)cfg->memory_mb));
    TSR_GUARD(drv_argv_add(a, "-smp"));
    TSR_GUARD(drv_argv_addf(a, "%llu", (unsigned long long)cfg->cpus));
    /* The console log is appended to: a boot's predecessors stay readable. */
    static const char *const fixed[] = {
        "-nodefaults", "-no-user-config", "-nographic", "-monitor", "none", "-chardev",
        "file,id=console,path=console.log,append=on", "-serial", "chardev:console", "-no-reboot"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        TSR_GUARD(drv_argv_add(a, fixed[i]));
    if (cfg->qemu_sandbox) {
        /* The relay is started by QEMU (slirp forks, calls setsid, execs it):
         * gateway networking needs spawn and set*id allowed. The driver runs
         * QEMU with no_new_privs, so nothing it execs gains privileges. */
        TSR_GUARD(drv_argv_add(a, "-sandbox"));
        TSR_GUARD(drv_argv_addf(a, "on,obsolete=deny,elevateprivileges=%s,spawn=%s,"
                                   "resourcecontrol=deny",
                                gw_net ? "allow" : "deny", gw_net ? "allow" : "deny"));
    }
    TSR_GUARD(drv_argv_add(a, "-kernel"));
    TSR_GUARD(drv_argv_add(a, kernel));
    if (initrd[0] != '\0') {
        TSR_GUARD(drv_argv_add(a, "-initrd"));
        TSR_GUARD(drv_argv_add(a, initrd));
    }
    TSR_GUARD(drv_argv_add(a, "-append"));
    TSR_GUARD(drv_argv_addf(a, "console=ttyS0 panic=-1%s%s", cfg->append[0] != '\0' ? " " : "",
                            cfg->append));
    for (size_t i = 0; i < 3; i++) {
        TSR_GUARD(drv_argv_add(a, "-fw_cfg"));
        TSR_GUARD(drv_argv_addf(a, "name=opt/tessera/%s,file=identity/%s", vm_identity_files[i],
                                vm_identity_files[i]));
    }
    TSR_GUARD(vm_add_fw_string(a, "gateway", cfg->guest_gateway));
    TSR_GUARD(vm_add_fw_string(a, "trust_domain", cfg->td));
    TSR_GUARD(vm_add_fw_string(a, "sandbox_id", sandbox_id));
    if (cfg->supervisor_args[0] != '\0')
        TSR_GUARD(vm_add_fw_string(a, "supervisor_args", cfg->supervisor_args));
    if (command_file != NULL) {
        TSR_GUARD(drv_argv_add(a, "-fw_cfg"));
        TSR_GUARD(drv_argv_addf(a, "name=opt/tessera/command,file=%s", command_file));
    }
    if (cfg->network == DRV_VM_NET_NONE) {
        TSR_GUARD(drv_argv_add(a, "-nic"));
        TSR_GUARD(drv_argv_add(a, "none"));
    } else {
        TSR_GUARD(drv_argv_add(a, "-netdev"));
        if (gw_net)
            TSR_GUARD(vm_add_netdev_forwards(a, cfg, sandbox_id));
        else
            TSR_GUARD(drv_argv_add(a, "user,id=net0,ipv6=off"));
        TSR_GUARD(drv_argv_add(a, "-device"));
        TSR_GUARD(drv_argv_add(a, "virtio-net-pci,netdev=net0,romfile="));
    }
    /* Entropy for the keys the guest's supervisor makes. */
    TSR_GUARD(drv_argv_add(a, "-device"));
    TSR_GUARD(drv_argv_add(a, "virtio-rng-pci"));
    TSR_GUARD(drv_argv_add(a, "-qmp"));
    TSR_GUARD(drv_argv_add(a, "unix:qmp.sock,server=on,wait=off"));
    TSR_GUARD(drv_argv_add(a, "-pidfile"));
    TSR_GUARD(drv_argv_add(a, "qemu.pid"));
    return 0;
}

/* Is the byte at p of the argument arg written as it is? [A-Za-z0-9_./-],
 * but never a '-' that would start the line: no printf may take it for an
 * option. */
static int vm_plain_byte(const unsigned char *arg, const unsigned char *p)
{
    unsigned char c = *p;
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == '/' || (c == '-' && p != arg);
}

int drv_vm_encode_command(const char *const *argv, size_t n, char **out, size_t *len)
{
    size_t need = 1;
    for (size_t i = 0; i < n; i++) {
        TSR_ENSURE(argv[i] != NULL, TSR_E_INPUT, "command[%zu] is missing", i);
        const unsigned char *arg = (const unsigned char *)argv[i];
        for (const unsigned char *p = arg; *p != '\0'; p++) need += vm_plain_byte(arg, p) ? 1 : 4;
        need += 1;
    }
    char *b = malloc(need);
    TSR_ENSURE(b != NULL, TSR_E_INTERNAL, "out of memory");
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        const unsigned char *arg = (const unsigned char *)argv[i];
        for (const unsigned char *p = arg; *p != '\0'; p++) {
            if (vm_plain_byte(arg, p)) {
                b[o++] = (char)*p;
            } else {
                b[o++] = '\\';
                b[o++] = (char)('0' + (*p >> 6));
                b[o++] = (char)('0' + ((*p >> 3) & 7));
                b[o++] = (char)('0' + (*p & 7));
            }
        }
        b[o++] = '\n';
    }
    TSR_ASSERT(o + 1 == need); /* both passes take the same bytes as they are */
    b[o] = '\0';
    *out = b;
    *len = o;
    return 0;
}

/* One NAME:KERNEL[:INITRD] entry of the images option into im. */
TSR_WUR static int vm_parse_image(const char *p, drv_vm_image *im)
{
    const char *e = p + strlen(p);
    memset(im, 0, sizeof *im);
    const char *c1 = strchr(p, ':');
    TSR_ENSURE(c1 != NULL, TSR_E_INPUT, "option images: \"%.80s\" is not NAME:KERNEL[:INITRD]",
               p);
    const char *c2 = strchr(c1 + 1, ':');
    size_t nl = (size_t)(c1 - p);
    int name_ok = nl > 0 && nl < sizeof im->name && ((*p >= 'a' && *p <= 'z') ||
                                                   (*p >= '0' && *p <= '9'));
    for (size_t i = 0; name_ok && i < nl; i++)
        name_ok = (p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9') ||
                  p[i] == '.' || p[i] == '_' || p[i] == '-';
    TSR_ENSURE(name_ok, TSR_E_INPUT,
               "option images: the name \"%.*s\" is not [a-z0-9][a-z0-9._-]{0,63}",
               (int)(nl > 64 ? 64 : nl), p);
    memcpy(im->name, p, nl);
    const char *k = c1 + 1, *ke = c2 != NULL ? c2 : e;
    TSR_ENSURE(ke > k && (size_t)(ke - k) < sizeof im->kernel && *k == '/', TSR_E_INPUT,
               "option images: image %s: the kernel must be an absolute path", im->name);
    memcpy(im->kernel, k, (size_t)(ke - k));
    if (c2 != NULL) {
        TSR_ENSURE(e > c2 + 1 && (size_t)(e - c2 - 1) < sizeof im->initrd && c2[1] == '/' &&
                       strchr(c2 + 1, ':') == NULL,
                   TSR_E_INPUT, "option images: image %s: the initrd must be an absolute path",
                   im->name);
        memcpy(im->initrd, c2 + 1, (size_t)(e - c2 - 1));
    }
    return 0;
}

int drv_vm_parse_images(const char *text, drv_vm_image *out, size_t *n)
{
    *n = 0;
    drv_argv *a = drv_argv_new();
    TSR_ENSURE(a != NULL, TSR_E_INTERNAL, "out of memory");
    int rc = -1;
    TSR_TRY(drv_argv_add_split(a, text));
    TSR_TRY_ENSURE(a->n <= DRV_VM_MAX_IMAGES, TSR_E_LIMIT, "option images: more than %d images",
                   DRV_VM_MAX_IMAGES);
    for (size_t i = 0; i < a->n; i++) {
        TSR_TRY(vm_parse_image(a->v[i], &out[i]));
        for (size_t k = 0; k < i; k++)
            TSR_TRY_ENSURE(strcmp(out[k].name, out[i].name) != 0, TSR_E_INPUT,
                           "option images: %s is named twice", out[i].name);
    }
    *n = a->n;
    rc = 0;
out:
    drv_argv_free(a);
    return rc;
}

/* ---- accelerator ------------------------------------------------------------------- */

int drv_vm_cpuinfo_has_virt(const char *text, size_t len)
{
    const char *end = text + len;
    for (const char *line = text; line < end;) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        const char *le = nl != NULL ? nl : end;
        if ((size_t)(le - line) > 5 && memcmp(line, "flags", 5) == 0) {
            const char *p = memchr(line, ':', (size_t)(le - line));
            while (p != NULL && p < le) {
                while (p < le && (*p == ' ' || *p == '\t' || *p == ':')) p++;
                const char *w = p;
                while (p < le && *p != ' ' && *p != '\t') p++;
                if (p - w == 3 && (memcmp(w, "vmx", 3) == 0 || memcmp(w, "svm", 3) == 0))
                    return 1;
            }
        }
        line = nl != NULL ? nl + 1 : end;
    }
    return 0;
}

/* 1 when KVM looks usable: /dev/kvm opens read-write, speaks API 12,
 * creates a VM, and the CPU shows vmx or svm. A /dev/kvm without hardware
 * virtualisation (e.g. a PVM host) creates VMs whose ordinary guest never
 * boots, hence the flag check. 0 with the reason in why. */
static int vm_kvm_usable(char *why, size_t cap)
{
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, cap, "/dev/kvm: %s", strerror(errno));
        return 0;
    }
    int ok = 0;
    int api = ioctl(fd, KVM_GET_API_VERSION, 0);
    int vm = api == KVM_API_VERSION ? ioctl(fd, KVM_CREATE_VM, 0) : -1;
    if (api != KVM_API_VERSION) {
        snprintf(why, cap, "/dev/kvm speaks API %d, not %d", api, KVM_API_VERSION);
    } else if (vm < 0) {
        snprintf(why, cap, "/dev/kvm cannot create a VM: %s", strerror(errno));
    } else {
        char buf[65536];
        ssize_t n = drv_read_small("/proc/cpuinfo", buf, sizeof buf);
        if (n > 0 && drv_vm_cpuinfo_has_virt(buf, (size_t)n)) ok = 1;
        else snprintf(why, cap, "the CPU shows no vmx or svm flag in /proc/cpuinfo");
    }
    if (vm >= 0) close(vm);
    close(fd);
    return ok;
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

/* Only [A-Za-z0-9] and `extra`: what QEMU's option parser and the relay's
 * command line take literally. */
static int vm_chars_ok(const char *s, const char *extra)
{
    if (s[0] == '\0') return 0;
    for (const char *p = s; *p != '\0'; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr(extra, *p) != NULL))
            return 0;
    return 1;
}

/* <directory of the running program (the gateway's bin/)>/<rel> into out. */
TSR_WUR static int vm_beside_self(const char *rel, char *out, size_t cap)
{
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    TSR_ENSURE(n > 0, TSR_E_IO, "readlink /proc/self/exe: %s", strerror(errno));
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    TSR_ENSURE(slash != NULL, TSR_E_INTERNAL, "odd /proc/self/exe %s", self);
    *slash = '\0';
    int w = snprintf(out, cap, "%s/%s", self, rel);
    TSR_ENSURE(w > 0 && (size_t)w < cap, TSR_E_LIMIT, "path too long beside %s", self);
    return 0;
}

/* tessera-vm-relay: the option, or next to the running program (the
 * gateway's bin directory). */
TSR_WUR static int vm_find_relay(const char *opt, char *out, size_t cap)
{
    char cand[4096 + 32];
    if (opt == NULL) {
        TSR_GUARD(vm_beside_self("tessera-vm-relay", cand, sizeof cand));
        opt = cand;
    }
    TSR_GUARD(vm_abs_file("relay", opt, out, cap, 1));
    TSR_ENSURE(vm_chars_ok(out, "/._+-"), TSR_E_INPUT,
               "relay path %s: only letters, digits and / . _ + - (QEMU runs it by its "
               "command line)", out);
    return 0;
}

TSR_WUR static int vm_setup_accel(vm_ctx *c, const char *v)
{
    char why[256] = "";
    if (v == NULL) v = "auto";
    if (strcmp(v, "tcg") == 0) {
        strcpy(c->cfg.accel, "tcg");
    } else if (strcmp(v, "kvm") == 0) {
        int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        TSR_ENSURE(fd >= 0, TSR_E_STATE, "accel kvm: /dev/kvm: %s", strerror(errno));
        close(fd);
        if (!vm_kvm_usable(why, sizeof why))
            drv_logf(&c->log, "accel kvm as configured, although %s", why);
        strcpy(c->cfg.accel, "kvm");
    } else {
        TSR_ENSURE(strcmp(v, "auto") == 0, TSR_E_INPUT, "option accel: auto, kvm or tcg");
        int kvm = vm_kvm_usable(why, sizeof why);
        strcpy(c->cfg.accel, kvm ? "kvm" : "tcg");
        if (!kvm) drv_logf(&c->log, "KVM is not usable (%s): using TCG", why);
    }
    return 0;
}

/* supervisor_args: the flags go to the guest as fw_cfg supervisor_args,
 * what follows "--" is the default workload (fw_cfg command). */
TSR_WUR static int vm_setup_supervisor_args(drv_vm_config *cfg, const tsr_driver_env *env)
{
    char all[4096];
    TSR_GUARD(drv_option_supervisor_args(env, all, sizeof all));
    drv_argv *a = drv_argv_new();
    TSR_ENSURE(a != NULL, TSR_E_INTERNAL, "out of memory");
    int rc = -1;
    TSR_TRY(drv_argv_add_split(a, all));
    char *dst = cfg->supervisor_args;
    size_t cap = sizeof cfg->supervisor_args, used = 0;
    cfg->supervisor_args[0] = cfg->default_command[0] = '\0';
    for (size_t i = 0; i < a->n; i++) {
        if (dst == cfg->supervisor_args && strcmp(a->v[i], "--") == 0) {
            dst = cfg->default_command;
            cap = sizeof cfg->default_command;
            used = 0;
            continue;
        }
        int n = snprintf(dst + used, cap - used, "%s%s", used > 0 ? " " : "", a->v[i]);
        TSR_TRY_ENSURE(n > 0 && (size_t)n < cap - used, TSR_E_LIMIT, "supervisor_args too long");
        used += (size_t)n;
    }
    rc = 0;
out:
    drv_argv_free(a);
    return rc;
}

TSR_WUR static int vm_setup(vm_ctx *c, const tsr_driver_env *env)
{
    drv_vm_config *cfg = &c->cfg;
    TSR_GUARD(drv_options_check(env, vm_options));
    const char *v = drv_option(env, "qemu");
    TSR_GUARD(vm_find_qemu(v != NULL ? v : "qemu-system-x86_64", cfg->qemu, sizeof cfg->qemu));
    v = drv_option(env, "kernel");
    if (v != NULL) {
        TSR_GUARD(vm_abs_file("kernel", v, cfg->kernel, sizeof cfg->kernel, 0));
        v = drv_option(env, "initrd");
        if (v != NULL) TSR_GUARD(vm_abs_file("initrd", v, cfg->initrd, sizeof cfg->initrd, 0));
    } else {
        /* The guest `make vm-image` builds, beside the gateway's bin/. */
        char k[4096], i[4096];
        TSR_GUARD(vm_beside_self("../vm/vmlinuz", k, sizeof k));
        TSR_GUARD(vm_beside_self("../vm/initrd.img", i, sizeof i));
        TSR_ENSURE(drv_option(env, "initrd") == NULL && access(k, R_OK) == 0 &&
                       access(i, R_OK) == 0,
                   TSR_E_INPUT,
                   "option kernel is required (the guest kernel; without it the vm driver "
                   "boots the image `make vm-image` builds, %s and its initrd.img, which are "
                   "not there)", k);
        TSR_GUARD(vm_abs_file("kernel", k, cfg->kernel, sizeof cfg->kernel, 0));
        TSR_GUARD(vm_abs_file("initrd", i, cfg->initrd, sizeof cfg->initrd, 0));
    }
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
    TSR_GUARD(vm_setup_supervisor_args(cfg, env));
    v = drv_option(env, "images");
    if (v != NULL) {
        TSR_GUARD(drv_vm_parse_images(v, c->images, &c->n_images));
        for (size_t i = 0; i < c->n_images; i++) {
            drv_vm_image *im = &c->images[i];
            char what[96], given[DRV_VM_PATH_MAX];
            snprintf(what, sizeof what, "image %s: kernel", im->name);
            memcpy(given, im->kernel, sizeof given);
            TSR_GUARD(vm_abs_file(what, given, im->kernel, sizeof im->kernel, 0));
            if (im->initrd[0] != '\0') {
                snprintf(what, sizeof what, "image %s: initrd", im->name);
                memcpy(given, im->initrd, sizeof given);
                TSR_GUARD(vm_abs_file(what, given, im->initrd, sizeof im->initrd, 0));
            }
        }
    }
    v = drv_option(env, "network");
    cfg->network = DRV_VM_NET_GATEWAY;
    if (v != NULL) {
        if (strcmp(v, "user") == 0) cfg->network = DRV_VM_NET_USER;
        else if (strcmp(v, "none") == 0) cfg->network = DRV_VM_NET_NONE;
        else
            TSR_ENSURE(strcmp(v, "gateway") == 0, TSR_E_INPUT,
                       "option network: gateway, user or none");
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
    TSR_ENSURE(v != NULL && drv_addr_list_valid(v) && vm_chars_ok(v, ".:-_[],"), TSR_E_INPUT,
               "gateway address must be HOST:PORT[,HOST:PORT...]");
    strcpy(cfg->host_gateway, v);
    TSR_GUARD(drv_vm_guest_gateway(cfg->network, cfg->host_gateway, cfg->guest_gateway,
                                   sizeof cfg->guest_gateway));
    if (cfg->network == DRV_VM_NET_GATEWAY)
        TSR_GUARD(vm_find_relay(drv_option(env, "relay"), cfg->relay, sizeof cfg->relay));
    TSR_ENSURE(drv_td_valid(env->trust_domain), TSR_E_INPUT, "bad trust domain");
    strcpy(cfg->td, env->trust_domain);
    TSR_GUARD(drv_option_u64(env, "memory_mb", 512, 64, 262144, &cfg->memory_mb));
    TSR_GUARD(drv_option_u64(env, "cpus", 1, 1, 64, &cfg->cpus));
    TSR_GUARD(drv_option_u64(env, "stop_grace_ms", 30000, 0, 600000, &c->grace_ms));
    TSR_GUARD(drv_option_u64(env, "start_check_ms", 250, 0, 60000, &c->start_check_ms));
    TSR_GUARD(vm_setup_accel(c, drv_option(env, "accel")));
    c->mint = env->mint_identity;
    c->release = env->release_identity;
    c->mint_arg = env->mint_arg;
    TSR_GUARD(drv_local_init(&c->local, env->data_dir, "vm", &c->log));
    static const char *const nets[] = {"gateway", "user", "none"};
    drv_logf(&c->log,
             "QEMU %s (%s), kernel %s, network %s%s%s%s, guest dials %s, sandboxes under %s",
             cfg->qemu, cfg->accel, cfg->kernel, nets[cfg->network],
             cfg->relay[0] != '\0' ? " (relay " : "", cfg->relay,
             cfg->relay[0] != '\0' ? ")" : "", cfg->guest_gateway, c->local.root);
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

/* Read one line (without the newline) into buf, NUL-terminated, *len its
 * length; 0 on success. QMP is JSON text: a NUL byte in a line is refused
 * (the line would be read short, and where the next one starts lost). */
TSR_WUR static int vm_qmp_line(int fd, char *buf, size_t cap, size_t *have, size_t *len)
{
    for (;;) {
        char *nl = memchr(buf, '\n', *have);
        if (nl != NULL) {
            *len = (size_t)(nl - buf);
            TSR_ENSURE(memchr(buf, '\0', *len) == NULL, TSR_E_PROTO, "QMP: NUL byte in a line");
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

/* What one line of QMP is: QEMU writes each message as one JSON object on
 * a line of its own, the greeting {"QMP": ...}, a command's answer
 * {"return": ...} or {"error": {"class": ..., "desc": ...}}, or an
 * asynchronous {"event": ...}. */
enum vm_qmp_kind { VM_QMP_GREETING, VM_QMP_RETURN, VM_QMP_ERROR, VM_QMP_EVENT };

/* Parse one line (jansson: exactly one JSON value, nothing after it) into
 * its kind; an error's desc goes to why (may be empty). Anything but an
 * object with exactly one of those four members is refused. */
TSR_WUR static int vm_qmp_parse(const char *line, size_t len, enum vm_qmp_kind *kind, char *why,
                                size_t why_cap)
{
    static const struct {
        const char *key;
        enum vm_qmp_kind kind;
    } kinds[] = {{"QMP", VM_QMP_GREETING}, {"return", VM_QMP_RETURN},
                 {"error", VM_QMP_ERROR}, {"event", VM_QMP_EVENT}};
    int rc = -1, found = 0;
    json_error_t jerr;
    why[0] = '\0';
    json_t *j = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    TSR_ENSURE(j != NULL, TSR_E_PROTO, "QMP: not a JSON line: %.80s", jerr.text);
    TSR_TRY_ENSURE(json_is_object(j), TSR_E_PROTO, "QMP: a line is not a JSON object");
    enum vm_qmp_kind k = VM_QMP_EVENT;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        if (json_object_get(j, kinds[i].key) == NULL) continue;
        k = kinds[i].kind;
        found++;
    }
    TSR_TRY_ENSURE(found == 1, TSR_E_PROTO, "QMP: a message with %s of QMP, return, error, event",
                   found == 0 ? "none" : "more than one");
    *kind = k;
    if (k == VM_QMP_ERROR) {
        const char *desc = json_string_value(json_object_get(json_object_get(j, "error"), "desc"));
        if (desc != NULL) snprintf(why, why_cap, "%s", desc);
    }
    rc = 0;
out:
    json_decref(j);
    return rc;
}

/* Send a command and read until its answer ("return" or "error"), skipping
 * asynchronous events; any other line is a protocol error. */
TSR_WUR static int vm_qmp_exec(int fd, const char *cmd)
{
    char buf[65536], why[200];
    size_t have = 0;
    size_t len = strlen(cmd);
    TSR_ENSURE(write(fd, cmd, len) == (ssize_t)len, TSR_E_IO, "QMP: write: %s", strerror(errno));
    for (int lines = 0; lines < 64; lines++) {
        size_t l = 0;
        enum vm_qmp_kind kind;
        TSR_GUARD(vm_qmp_line(fd, buf, sizeof buf, &have, &l));
        TSR_GUARD(vm_qmp_parse(buf, l, &kind, why, sizeof why));
        l++; /* and its newline */
        memmove(buf, buf + l, have - l);
        have -= l;
        if (kind == VM_QMP_RETURN) return 0;
        TSR_ENSURE(kind != VM_QMP_ERROR, TSR_E_IO, "QMP refused %.40s: %s", cmd,
                   why[0] != '\0' ? why : "no description");
        TSR_ENSURE(kind == VM_QMP_EVENT, TSR_E_PROTO, "QMP: a greeting in answer to %.40s", cmd);
    }
    return TSR_FAIL(TSR_E_PROTO, "QMP: no answer to %.40s", cmd);
}

/* QEMU's greeting: one line, a {"QMP": ...} object, and nothing after it
 * (QEMU waits for qmp_capabilities). */
TSR_WUR static int vm_qmp_greeting(int fd)
{
    char greet[4096], why[200];
    size_t have = 0, len = 0;
    enum vm_qmp_kind kind;
    TSR_GUARD(vm_qmp_line(fd, greet, sizeof greet, &have, &len));
    TSR_GUARD(vm_qmp_parse(greet, len, &kind, why, sizeof why));
    TSR_ENSURE(kind == VM_QMP_GREETING, TSR_E_PROTO, "QMP: no greeting");
    TSR_ENSURE(have == len + 1, TSR_E_PROTO, "QMP: data after the greeting");
    return 0;
}

/* Connect to the sandbox's QMP socket, read the greeting, leave the
 * capabilities negotiation; *out is the connection. */
TSR_WUR static int vm_qmp_open(int sbfd, int *out)
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
    TSR_TRY_ENSURE(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0, TSR_E_IO,
                   "QMP: connect: %s", strerror(errno));
    TSR_TRY(vm_qmp_greeting(fd));
    TSR_TRY(vm_qmp_exec(fd, "{\"execute\":\"qmp_capabilities\"}\n"));
    *out = fd;
    fd = -1;
    rc = 0;
out:
    if (fd >= 0) close(fd);
    return rc;
}

/* One QMP command on a new connection. */
TSR_WUR static int vm_qmp_command(int sbfd, const char *cmd)
{
    int fd = -1;
    TSR_GUARD(vm_qmp_open(sbfd, &fd));
    int rc = vm_qmp_exec(fd, cmd);
    close(fd);
    return rc;
}

/* Wait until the QEMU of rec answers a command on QMP: commands run in its
 * main loop, which starts after its start-up (fw_cfg files read) is over. */
TSR_WUR static int vm_qmp_ready(int sbfd, const drv_pidrec *rec, uint64_t timeout_ms)
{
    int64_t deadline = tsr_monotonic_ms() + (int64_t)timeout_ms;
    for (;;) {
        if (vm_qmp_command(sbfd, "{\"execute\":\"query-status\"}\n") == 0) return 0;
        TSR_ENSURE(drv_proc_alive(rec->pid, rec->start), TSR_E_IO, "QEMU exited during start");
        TSR_ENSURE(tsr_monotonic_ms() < deadline, TSR_E_IO,
                   "QEMU did not answer on QMP within %llu ms: %s",
                   (unsigned long long)timeout_ms, tsr_errmsg());
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* ---- identity ------------------------------------------------------------------------ */

/* Delete the identity files QEMU has read (or never will). */
static void vm_identity_discard(int sbfd)
{
    for (size_t i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "identity/%s", vm_identity_files[i]);
        (void)unlinkat(sbfd, name, 0);
    }
}

/* 1 when identity/ holds the three files placed at create (QEMU's start
 * deletes them: they have never been booted) and the certificate is in the
 * first half of its lifetime, counted from its issue (notBefore + 60 s: the
 * gateway backdates notBefore by 60 s, docs/supervisor.md "Rotation") as
 * the supervisor counts it: it rotates at about half, and an identity older
 * than that gets a fresh one instead. */
static int vm_identity_unused(vm_ctx *c, const char *id, int sbfd)
{
    for (size_t i = 0; i < 3; i++) {
        char name[32];
        struct stat st;
        snprintf(name, sizeof name, "identity/%s", vm_identity_files[i]);
        if (fstatat(sbfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) return 0;
    }
    char path[DRV_PATH_MAX];
    uint8_t *pem = NULL;
    size_t len = 0;
    int ok = 0;
    if (drv_local_path(&c->local, id, "identity/cert.pem", path, sizeof path) != 0 ||
        tsr_read_file(path, DRV_MAX_PEM, &pem, &len) != 0) {
        tsr_err_clear();
        return 0;
    }
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    X509 *cert = bio != NULL ? PEM_read_bio_X509(bio, NULL, drv_no_passphrase, NULL) : NULL;
    int life_d = 0, life_s = 0, left_d = 0, left_s = 0;
    if (cert != NULL &&
        ASN1_TIME_diff(&life_d, &life_s, X509_get0_notBefore(cert), X509_get0_notAfter(cert)) &&
        ASN1_TIME_diff(&left_d, &left_s, NULL, X509_get0_notAfter(cert))) {
        int64_t life = (int64_t)life_d * 86400 + life_s, left = (int64_t)left_d * 86400 + left_s;
        ok = left > 0 && left * 2 > life - VM_BACKDATE_S;
    }
    X509_free(cert);
    BIO_free(bio);
    ERR_clear_error();
    free(pem);
    return ok;
}

/* Put a fresh identity from the gateway into identity/ (for a VM that has
 * booted before: its first identity is gone, and may be expired or revoked). */
TSR_WUR static int vm_identity_mint(vm_ctx *c, const char *id, int sbfd)
{
    TSR_ENSURE(c->mint != NULL && c->release != NULL, TSR_E_STATE,
               "this VM booted before, or its first identity is past half of its lifetime: "
               "it needs a fresh identity, and this caller cannot mint one");
    char spiffe[DRV_MAX_TD + 64], err[256] = "", path[DRV_PATH_MAX];
    snprintf(spiffe, sizeof spiffe, "spiffe://%s/sandbox/%s", c->cfg.td, id);
    tsr_driver_identity ident;
    memset(&ident, 0, sizeof ident);
    TSR_ENSURE(c->mint(c->mint_arg, id, &ident, err, sizeof err) == 0, TSR_E_STATE,
               "the gateway minted no identity: %s", err[0] ? err : "no reason given");
    int rc = -1;
    tsr_driver_sandbox sb = {.id = id, .name = NULL, .spiffe_id = spiffe};
    TSR_TRY(drv_identity_check(c->cfg.td, &sb, &ident));
    /* identity/ was made at create; it is there unless someone removed it. */
    if (mkdirat(sbfd, "identity", 0700) != 0)
        TSR_TRY_ENSURE(errno == EEXIST, TSR_E_IO, "mkdir identity/: %s", strerror(errno));
    const struct {
        const char *name;
        const char *buf;
        size_t len;
    } files[3] = {{"identity/key.pem", ident.key_pem, ident.key_len},
                  {"identity/cert.pem", ident.cert_pem, ident.cert_len},
                  {"identity/bundle.pem", ident.bundle_pem, ident.bundle_len}};
    for (size_t i = 0; i < 3; i++) {
        TSR_TRY(drv_local_path(&c->local, id, files[i].name, path, sizeof path));
        TSR_TRY(tsr_write_file_atomic(path, files[i].buf, files[i].len, 0600, TSR_WRITE_REPLACE));
    }
    drv_logf(&c->log, "sandbox %s: a fresh identity from the gateway for this boot", id);
    rc = 0;
out:
    c->release(c->mint_arg, &ident);
    if (rc != 0) vm_identity_discard(sbfd);
    return rc;
}

/* ---- operations ------------------------------------------------------------------- */

/* The guest image named `name` ("": the default, NULL). */
TSR_WUR static int vm_image_find(const vm_ctx *c, const char *name, const drv_vm_image **out)
{
    *out = NULL;
    if (name[0] == '\0') return 0;
    for (size_t i = 0; i < c->n_images; i++) {
        if (strcmp(c->images[i].name, name) == 0) {
            *out = &c->images[i];
            return 0;
        }
    }
    char names[DRV_VM_MAX_IMAGES * 66] = "";
    for (size_t i = 0; i < c->n_images; i++) {
        size_t used = strlen(names);
        snprintf(names + used, sizeof names - used, "%s%s", i > 0 ? ", " : "", c->images[i].name);
    }
    return TSR_FAIL(TSR_E_INPUT,
                    "image: no guest image named \"%.64s\" in the vm driver's images option "
                    "(%s%s)", name, c->n_images > 0 ? "configured: " : "none configured",
                    names);
}

TSR_WUR static int vm_check_sb(const vm_ctx *c, const tsr_driver_sandbox *sb)
{
    const drv_vm_image *im = NULL;
    TSR_GUARD(drv_command_check(sb));
    return vm_image_find(c, sb->image, &im);
}

static int vm_check(void *ctx, const tsr_driver_sandbox *sb, char *err, size_t err_cap)
{
    return vm_check_sb(ctx, sb) != 0 ? drv_invalid_recorded(err, err_cap, "vm", NULL)
                                     : TSR_DRIVER_OK;
}

static int vm_create(void *ctx, const tsr_driver_sandbox *sb, const tsr_driver_identity *ident,
                     char *err, size_t err_cap)
{
    vm_ctx *c = ctx;
    const char *id = sb != NULL ? sb->id : NULL;
    char *blob = NULL;
    size_t blob_len = 0, n_files = 0;
    if (!drv_id_valid(id)) return drv_errf(err, err_cap, "vm: create: bad sandbox id");
    if (vm_check_sb(c, sb) != 0) return drv_invalid_recorded(err, err_cap, "vm: create", id);
    drv_local_file files[2];
    int rc = drv_identity_check(c->cfg.td, sb, ident);
    if (rc == 0 && sb->n_command > 0) {
        rc = drv_local_command_blob(sb, &blob, &blob_len);
        files[n_files++] = (drv_local_file){"command", blob, blob_len};
    }
    if (sb->image[0] != '\0') files[n_files++] = (drv_local_file){"image", sb->image,
                                                                  strlen(sb->image)};
    if (rc == 0) rc = drv_local_create(&c->local, id, ident, 0, files, n_files);
    free(blob);
    if (rc != 0) return drv_fail_recorded(err, err_cap, "vm: create", id);
    drv_logf(&c->log, "created sandbox %s%s%s", id, sb->image[0] != '\0' ? ", guest image " : "",
             sb->image);
    return TSR_DRIVER_OK;
}

/* What this boot runs: the guest image create recorded (or the default),
 * and command.fw, the workload for fw_cfg opt/tessera/command: the
 * sandbox's own command, else the default from supervisor_args (none: no
 * file). Caller holds the lock. */
TSR_WUR static int vm_boot_prepare(vm_ctx *c, const char *id, int sbfd, drv_vm_boot *boot)
{
    int rc = -1;
    char *blob = NULL, *enc = NULL, name[TSR_DRIVER_MAX_IMAGE + 1] = "", path[DRV_PATH_MAX];
    const char *argv[TSR_DRIVER_MAX_COMMAND_ARGS + 1];
    size_t n = 0, enc_len = 0;
    drv_argv *def = NULL;
    memset(boot, 0, sizeof *boot);

    int fd = openat(sbfd, "image", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t r = read(fd, name, sizeof name - 1);
        close(fd);
        TSR_TRY_ENSURE(r > 0 && (size_t)r < sizeof name - 1, TSR_E_STATE,
                       "the sandbox's image file is unreadable or corrupt");
        name[r] = '\0';
        TSR_TRY_ENSURE(vm_image_find(c, name, &boot->image) == 0, TSR_E_STATE,
                       "this sandbox's guest image \"%s\" is no longer in the images option",
                       name);
    } else {
        TSR_TRY_ENSURE(errno == ENOENT, TSR_E_IO, "open image: %s", strerror(errno));
    }
    TSR_TRY(drv_local_command_read(sbfd, &blob, argv, &n));
    if (n == 0 && c->cfg.default_command[0] != '\0') {
        def = drv_argv_new();
        TSR_TRY_ENSURE(def != NULL, TSR_E_INTERNAL, "out of memory");
        TSR_TRY(drv_argv_add_split(def, c->cfg.default_command));
        for (n = 0; n < def->n && n < TSR_DRIVER_MAX_COMMAND_ARGS; n++) argv[n] = def->v[n];
    }
    (void)unlinkat(sbfd, "command.fw", 0);
    if (n > 0) {
        TSR_TRY(drv_vm_encode_command(argv, n, &enc, &enc_len));
        TSR_TRY(drv_local_path(&c->local, id, "command.fw", path, sizeof path));
        TSR_TRY(tsr_write_file_atomic(path, enc, enc_len, 0600, TSR_WRITE_REPLACE));
        boot->command_file = "command.fw";
    }
    rc = 0;
out:
    free(blob);
    free(enc);
    drv_argv_free(def);
    return rc;
}

TSR_WUR static int vm_start_locked(void *ctx, const char *id, int sbfd)
{
    vm_ctx *c = ctx;
    int rc = -1, log_fd = -1, spawned = 0;
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
    a = drv_argv_new();
    e = drv_argv_new();
    TSR_TRY_ENSURE(a != NULL && e != NULL, TSR_E_INTERNAL, "out of memory");
    drv_vm_boot boot;
    TSR_TRY(vm_boot_prepare(c, id, sbfd, &boot));
    TSR_TRY(drv_vm_build_argv(&c->cfg, id, &boot, a));
    TSR_TRY(drv_argv_add(e, "PATH=/usr/local/bin:/usr/bin:/bin"));
    /* The identity placed at create boots once; any later boot gets a fresh one. */
    if (!vm_identity_unused(c, id, sbfd)) {
        vm_identity_discard(sbfd);
        TSR_TRY(vm_identity_mint(c, id, sbfd));
    }
    log_fd = openat(sbfd, "qemu.log", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    TSR_TRY_ENSURE(log_fd >= 0, TSR_E_IO, "open %s: %s", log_path, strerror(errno));
    /* This boot's console lines follow the mark (status reads them). */
    int con = openat(sbfd, "console.log", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW,
                     0600);
    TSR_TRY_ENSURE(con >= 0, TSR_E_IO, "open console.log: %s", strerror(errno));
    drv_local_mark(con);
    close(con);

    drv_spawn sp = {
        .argv = a->v,
        .envp = e->v,
        .cwd = sbdir,
        .log_fd = log_fd,
        .extra_fd = -1,
        .pid_path = pid_path,
        .pid_tmp = pid_tmp,
        .kind = "qemu",
        .no_new_privs = 1,
    };
    pid_t pid = 0;
    spawned = 1; /* from here QEMU may have read the files: they go, whatever happens */
    TSR_TRY(drv_spawn_detached(&sp, &pid));
    /* QEMU refuses a bad kernel, accelerator or option at once. */
    int present = 0;
    TSR_TRY(drv_pidfile_read(sbfd, "pid", &rec, &present));
    TSR_TRY_ENSURE(present, TSR_E_INTERNAL, "QEMU wrote no pid file");
    if (drv_proc_wait_gone(rec.pid, rec.start, c->start_check_ms)) {
        (void)unlinkat(sbfd, "pid", 0);
        char *text = NULL, lines[600] = "", last[600];
        drv_local_tail(sbfd, "qemu.log", &text);
        if (text != NULL) drv_tail_lines(text, strlen(text), 1, NULL, lines, sizeof lines);
        free(text);
        drv_one_line(lines, last, sizeof last);
        (void)TSR_FAIL(TSR_E_STATE, "QEMU exited at once (%s: %s)", log_path,
                       last[0] != '\0' ? last : "nothing in it");
        goto out;
    }
    if (vm_qmp_ready(sbfd, &rec, VM_QMP_READY_MS) != 0) {
        char why[300];
        snprintf(why, sizeof why, "%s", tsr_errmsg());
        int killed = 0;
        if (drv_local_terminate(&rec, 2000, &killed) != 0)
            drv_logf(&c->log, "sandbox %s: %s", id, tsr_errmsg());
        (void)unlinkat(sbfd, "pid", 0);
        (void)TSR_FAIL(TSR_E_IO, "%s (see %s)", why, log_path);
        goto out;
    }
    drv_logf(&c->log, "started sandbox %s (QEMU pid %ld, %s)", id, (long)pid, c->cfg.accel);
    rc = 0;
out:
    if (spawned) vm_identity_discard(sbfd);
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
    if (vm_qmp_command(sbfd, "{\"execute\":\"system_powerdown\"}\n") != 0) {
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

static int vm_status(void *ctx, const char *id, tsr_driver_status *st, char *err,
                     size_t err_cap)
{
    vm_ctx *c = ctx;
    return drv_local_status(&c->local, id, st, &vm_log, err, err_cap);
}

static const tsr_driver_ops vm_ops = {
    .abi_version = TSR_DRIVER_ABI_VERSION,
    .struct_size = sizeof(tsr_driver_ops),
    .name = "vm",
    .init = vm_init,
    .fini = vm_fini,
    .check = vm_check,
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
