/* The vm driver's pure parts, by including its source: the QEMU argv
 * (drv_vm_build_argv), the QMP reader, and the identity files create places.
 * Failure cases first. (The lifecycle against a fake QEMU is in
 * tests/integration/test_drv_vm.py.) */
#include "drivers/vm/drv_vm.c"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <setjmp.h>
#include <cmocka.h>

#include "tu_drv.h"
#include "tu_fs.h"

#define ID "3f1c2a9e-7b4d-4e8a-9c0f-1a2b3c4d5e6f"

static void base_cfg(drv_vm_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    strcpy(cfg->qemu, "/usr/bin/qemu-system-x86_64");
    strcpy(cfg->kernel, "/var/lib/tessera/vmlinuz");
    strcpy(cfg->host_gateway, "127.0.0.1:8443");
    strcpy(cfg->guest_gateway, "10.0.2.100:8443");
    strcpy(cfg->relay, "/usr/lib/tessera/tessera-vm-relay");
    strcpy(cfg->td, "tessera.local");
    strcpy(cfg->accel, "tcg");
    cfg->network = DRV_VM_NET_GATEWAY;
    cfg->qemu_sandbox = 1;
    cfg->memory_mb = 512;
    cfg->cpus = 1;
}

static int argv_index(const drv_argv *a, const char *s)
{
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->v[i], s) == 0) return (int)i;
    return -1;
}

/* ---- failures first ------------------------------------------------------------ */

static void test_argv_refuses(void **state)
{
    (void)state;
    struct {
        const char *what, *id, *qemu, *kernel, *gateway, *td, *relay, *host, *accel;
    } cases[] = {
        {"id not a UUID", "not-a-uuid", NULL, NULL, NULL, NULL, NULL, NULL, NULL},
        {"uppercase id", "3F1C2A9E-7B4D-4E8A-9C0F-1A2B3C4D5E6F", NULL, NULL, NULL, NULL, NULL,
         NULL, NULL},
        {"id with a comma", "3f1c2a9e-7b4d-4e8a-9c0f-1a2b3c4d5e,f", NULL, NULL, NULL, NULL, NULL,
         NULL, NULL},
        {"relative qemu", ID, "qemu-system-x86_64", NULL, NULL, NULL, NULL, NULL, NULL},
        {"relative kernel", ID, NULL, "vmlinuz", NULL, NULL, NULL, NULL, NULL},
        /* A comma would start a new QEMU sub-option (e.g. a second file=). */
        {"comma in gateway", ID, NULL, NULL, "10.0.2.2:8443,file=identity/key.pem", NULL, NULL,
         NULL, NULL},
        {"space in gateway", ID, NULL, NULL, "10.0.2.2 :8443", NULL, NULL, NULL, NULL},
        {"gateway without port", ID, NULL, NULL, "10.0.2.2", NULL, NULL, NULL, NULL},
        {"uppercase trust domain", ID, NULL, NULL, NULL, "Tessera.local", NULL, NULL, NULL},
        {"comma in trust domain", ID, NULL, NULL, NULL, "a,b", NULL, NULL, NULL},
        {"relative relay", ID, NULL, NULL, NULL, NULL, "tessera-vm-relay", NULL, NULL},
        {"no relay", ID, NULL, NULL, NULL, NULL, "", NULL, NULL},
        {"comma in the relay's gateway", ID, NULL, NULL, NULL, NULL, NULL,
         "127.0.0.1:8443,guestfwd=tcp:10.0.2.101:22-cmd:/bin/sh", NULL},
        {"accelerator not kvm or tcg", ID, NULL, NULL, NULL, NULL, NULL, NULL, "kvm,x=y"},
        {"fewer guest than host addresses", ID, NULL, NULL, NULL, NULL, NULL,
         "127.0.0.1:8443,127.0.0.1:9443", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        drv_vm_config cfg;
        base_cfg(&cfg);
        if (cases[i].qemu) strcpy(cfg.qemu, cases[i].qemu);
        if (cases[i].kernel) strcpy(cfg.kernel, cases[i].kernel);
        if (cases[i].gateway) strcpy(cfg.guest_gateway, cases[i].gateway);
        if (cases[i].td) strcpy(cfg.td, cases[i].td);
        if (cases[i].relay) strcpy(cfg.relay, cases[i].relay);
        if (cases[i].host) strcpy(cfg.host_gateway, cases[i].host);
        if (cases[i].accel) strcpy(cfg.accel, cases[i].accel);
        drv_argv *a = drv_argv_new();
        assert_non_null(a);
        tsr_err_clear();
        if (drv_vm_build_argv(&cfg, cases[i].id, NULL, a) == 0)
            fail_msg("accepted: %s", cases[i].what);
        assert_int_equal(tsr_errcat(), TSR_E_INPUT);
        drv_argv_free(a);
    }
}

/* A fake QMP peer on a socketpair, saying n bytes (0: strlen). */
static int qmp_run_n(const char *peer_says, size_t n, const char *cmd)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    if (n == 0) n = strlen(peer_says);
    assert_int_equal(write(sv[1], peer_says, n), (ssize_t)n);
    shutdown(sv[1], SHUT_WR);
    tsr_err_clear();
    int rc = vm_qmp_exec(sv[0], cmd);
    close(sv[0]);
    close(sv[1]);
    return rc;
}

static int qmp_run(const char *peer_says, const char *cmd)
{
    return qmp_run_n(peer_says, 0, cmd);
}

static void test_qmp_reader(void **state)
{
    (void)state;
    const char *cmd = "{\"execute\":\"system_powerdown\"}\n";
    /* Failures first: an error answer, the peer hanging up, a line that
     * never ends, only events. */
    assert_int_not_equal(qmp_run("{\"error\": {\"class\": \"GenericError\"}}\r\n", cmd), 0);
    assert_int_equal(tsr_errcat(), TSR_E_IO);
    assert_string_equal(tsr_errmsg(),
                        "QMP refused {\"execute\":\"system_powerdown\"}\n: no description");
    assert_int_not_equal(
        qmp_run("{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}}\n", cmd), 0);
    assert_string_equal(tsr_errmsg(), "QMP refused {\"execute\":\"system_powerdown\"}\n: no");
    /* Each line is parsed as JSON (jansson): a line that only mentions
     * "return" is not an answer, an event whose data says "error" is no
     * refusal, and a line that is not one QMP object is a protocol error. */
    static const char *const not_qmp[] = {
        "\"return\"\r\n",                                   /* not an object */
        "garbage \"return\": {}\r\n",                        /* not JSON */
        "{\"return\": {}} {\"return\": {}}\r\n",              /* two values */
        "{\"return\": {}, \"return\": {}}\r\n",               /* a duplicate member */
        "{\"return\": {}, \"error\": {}}\r\n",                /* both */
        "{\"id\": 1}\r\n",                                    /* neither */
        "{\"QMP\": {}}\r\n",                                  /* a greeting */
    };
    for (size_t i = 0; i < sizeof not_qmp / sizeof not_qmp[0]; i++) {
        if (qmp_run(not_qmp[i], cmd) == 0) fail_msg("accepted: %s", not_qmp[i]);
        assert_int_equal(tsr_errcat(), TSR_E_PROTO);
    }
    /* An event that quotes "return", then the peer hangs up: no answer. */
    assert_int_not_equal(qmp_run("{\"event\": \"X\", \"data\": \"\\\"return\\\"\"}\r\n", cmd), 0);
    assert_string_equal(tsr_errmsg(), "QMP: connection closed");
    assert_int_equal(qmp_run("{\"event\": \"X\", \"data\": {\"error\": 1}}\r\n"
                             "{\"return\": {\"status\": \"running\"}, \"id\": 7}\r\n", cmd), 0);
    assert_int_not_equal(qmp_run("", cmd), 0);
    assert_int_not_equal(qmp_run("{\"return\": {}", cmd), 0); /* truncated: no newline */
    char *big = malloc(70000);
    assert_non_null(big);
    memset(big, 'x', 69999);
    big[69999] = '\0';
    assert_int_not_equal(qmp_run(big, cmd), 0);
    assert_int_equal(tsr_errcat(), TSR_E_PROTO);
    free(big);
    char events[8192] = "";
    for (int i = 0; i < 70; i++) strcat(events, "{\"event\": \"RTC_CHANGE\"}\r\n");
    assert_int_not_equal(qmp_run(events, cmd), 0);
    assert_int_equal(tsr_errcat(), TSR_E_PROTO);
    /* A NUL byte is not QMP: refused, not read as the end of the line (which
     * lost where the next line started and took the answer from a fragment:
     * fuzz/fuzz_qmp.c, crash-nul-in-line-takes-answer-from-fragment). */
    static const char nul[] = "{\"event\": \"X\"}\0{\"return\": {}}\r\n{\"event\": \"Y\"}\r\n";
    assert_int_not_equal(qmp_run_n(nul, sizeof nul - 1, cmd), 0);
    assert_int_equal(tsr_errcat(), TSR_E_PROTO);
    assert_string_equal(tsr_errmsg(), "QMP: NUL byte in a line");

    /* Answers, with events before them, split or not. */
    assert_int_equal(qmp_run("{\"return\": {}}\r\n", cmd), 0);
    assert_int_equal(qmp_run("{\"event\": \"POWERDOWN\"}\r\n{\"return\": {}}\r\n", cmd), 0);
    assert_int_equal(qmp_run("{\"return\": {}}\n{\"event\": \"SHUTDOWN\"}\n", cmd), 0);
}

/* ---- the argv ------------------------------------------------------------------ */

static void expect_argv(const drv_argv *a, const char *const *want, size_t nwant)
{
    for (size_t i = 0; i < nwant && i < a->n; i++) assert_string_equal(a->v[i], want[i]);
    assert_int_equal(a->n, nwant);
    assert_null(a->v[a->n]); /* execve's terminator */
}

/* The default: gateway networking (restrict=on, one forward to the relay). */
static void test_argv_exact(void **state)
{
    (void)state;
    drv_vm_config cfg;
    base_cfg(&cfg);
    strcpy(cfg.initrd, "/var/lib/tessera/initrd.img");
    strcpy(cfg.append, "quiet loglevel=3");
    strcpy(cfg.supervisor_args, "--poll-seconds 5,6");
    cfg.memory_mb = 1024;
    cfg.cpus = 2;
    strcpy(cfg.accel, "kvm");
    drv_argv *a = drv_argv_new();
    assert_non_null(a);
    /* A named guest image and a workload. */
    drv_vm_image im = {"second", "/var/lib/tessera/second/vmlinuz",
                       "/var/lib/tessera/second/initrd.img"};
    drv_vm_boot boot = {&im, "command.fw"};
    assert_int_equal(drv_vm_build_argv(&cfg, ID, &boot, a), 0);
    const char *want[] = {
        "/usr/bin/qemu-system-x86_64",
        "-name", "tessera-" ID,
        "-machine", "q35",
        "-accel", "kvm",
        "-cpu", "host",
        "-m", "1024",
        "-smp", "2",
        "-nodefaults", "-no-user-config", "-nographic",
        "-monitor", "none",
        "-chardev", "file,id=console,path=console.log,append=on",
        "-serial", "chardev:console",
        "-no-reboot",
        "-sandbox", "on,obsolete=deny,elevateprivileges=allow,spawn=allow,resourcecontrol=deny",
        "-kernel", "/var/lib/tessera/second/vmlinuz",
        "-initrd", "/var/lib/tessera/second/initrd.img",
        "-append", "console=ttyS0 panic=-1 quiet loglevel=3",
        "-fw_cfg", "name=opt/tessera/cert.pem,file=identity/cert.pem",
        "-fw_cfg", "name=opt/tessera/key.pem,file=identity/key.pem",
        "-fw_cfg", "name=opt/tessera/bundle.pem,file=identity/bundle.pem",
        "-fw_cfg", "name=opt/tessera/gateway,string=10.0.2.100:8443",
        "-fw_cfg", "name=opt/tessera/trust_domain,string=tessera.local",
        "-fw_cfg", "name=opt/tessera/sandbox_id,string=" ID,
        /* QEMU reads ",," as one comma inside a value. */
        "-fw_cfg", "name=opt/tessera/supervisor_args,string=--poll-seconds 5,,6",
        "-fw_cfg", "name=opt/tessera/command,file=command.fw",
        "-netdev", "user,id=net0,ipv6=off,restrict=on,guestfwd=tcp:10.0.2.100:8443-cmd:"
                   "/usr/lib/tessera/tessera-vm-relay 127.0.0.1:8443 " ID,
        "-device", "virtio-net-pci,netdev=net0,romfile=",
        "-device", "virtio-rng-pci",
        "-qmp", "unix:qmp.sock,server=on,wait=off",
        "-pidfile", "qemu.pid",
    };
    expect_argv(a, want, sizeof want / sizeof want[0]);
    drv_argv_free(a);
}

/* Two gateway addresses (replicas): a forward each, both in fw_cfg. */
static void test_argv_two_gateways(void **state)
{
    (void)state;
    drv_vm_config cfg;
    base_cfg(&cfg);
    strcpy(cfg.host_gateway, "127.0.0.1:8443,gw-b.example:9443");
    assert_int_equal(drv_vm_guest_gateway(cfg.network, cfg.host_gateway, cfg.guest_gateway,
                                          sizeof cfg.guest_gateway), 0);
    drv_argv *a = drv_argv_new();
    assert_non_null(a);
    assert_int_equal(drv_vm_build_argv(&cfg, ID, NULL, a), 0);
    const char *fw = NULL, *netdev = NULL;
    for (size_t i = 0; i + 1 < a->n; i++) {
        if (strcmp(a->v[i], "-netdev") == 0) netdev = a->v[i + 1];
        if (strncmp(a->v[i + 1], "name=opt/tessera/gateway,", 25) == 0) fw = a->v[i + 1];
    }
    assert_non_null(fw);
    assert_non_null(netdev);
    assert_string_equal(fw, "name=opt/tessera/gateway,string=10.0.2.100:8443,,10.0.2.101:9443");
    assert_string_equal(netdev, "user,id=net0,ipv6=off,restrict=on,"
                                "guestfwd=tcp:10.0.2.100:8443-cmd:/usr/lib/tessera/tessera-vm-relay "
                                "127.0.0.1:8443 " ID ","
                                "guestfwd=tcp:10.0.2.101:9443-cmd:/usr/lib/tessera/tessera-vm-relay "
                                "gw-b.example:9443 " ID);
    drv_argv_free(a);
}

/* User networking (everything the host reaches), TCG, no seccomp filter. */
static void test_argv_user_network(void **state)
{
    (void)state;
    drv_vm_config cfg;
    base_cfg(&cfg);
    cfg.network = DRV_VM_NET_USER;
    cfg.relay[0] = '\0';
    strcpy(cfg.guest_gateway, "10.0.2.2:8443");
    cfg.qemu_sandbox = 0;
    drv_argv *a = drv_argv_new();
    assert_non_null(a);
    assert_int_equal(drv_vm_build_argv(&cfg, ID, NULL, a), 0);
    const char *want[] = {
        "/usr/bin/qemu-system-x86_64",
        "-name", "tessera-" ID,
        "-machine", "q35",
        "-accel", "tcg",
        "-m", "512",
        "-smp", "1",
        "-nodefaults", "-no-user-config", "-nographic",
        "-monitor", "none",
        "-chardev", "file,id=console,path=console.log,append=on",
        "-serial", "chardev:console",
        "-no-reboot",
        "-kernel", "/var/lib/tessera/vmlinuz",
        "-append", "console=ttyS0 panic=-1",
        "-fw_cfg", "name=opt/tessera/cert.pem,file=identity/cert.pem",
        "-fw_cfg", "name=opt/tessera/key.pem,file=identity/key.pem",
        "-fw_cfg", "name=opt/tessera/bundle.pem,file=identity/bundle.pem",
        "-fw_cfg", "name=opt/tessera/gateway,string=10.0.2.2:8443",
        "-fw_cfg", "name=opt/tessera/trust_domain,string=tessera.local",
        "-fw_cfg", "name=opt/tessera/sandbox_id,string=" ID,
        "-netdev", "user,id=net0,ipv6=off",
        "-device", "virtio-net-pci,netdev=net0,romfile=",
        "-device", "virtio-rng-pci",
        "-qmp", "unix:qmp.sock,server=on,wait=off",
        "-pidfile", "qemu.pid",
    };
    expect_argv(a, want, sizeof want / sizeof want[0]);
    drv_argv_free(a);
}

/* No network: no NIC, and QEMU may neither spawn nor change ids. */
static void test_argv_no_network(void **state)
{
    (void)state;
    drv_vm_config cfg;
    base_cfg(&cfg);
    cfg.network = DRV_VM_NET_NONE;
    drv_argv *a = drv_argv_new();
    assert_non_null(a);
    assert_int_equal(drv_vm_build_argv(&cfg, ID, NULL, a), 0);
    int nic = argv_index(a, "-nic");
    assert_true(nic > 0);
    assert_string_equal(a->v[nic + 1], "none");
    assert_int_equal(argv_index(a, "-netdev"), -1);
    assert_string_equal(a->v[argv_index(a, "-sandbox") + 1],
                        "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
    assert_int_equal(argv_index(a, "-cpu"), -1);
    drv_argv_free(a);
}

/* What the guest dials for the gateway, per network mode. */
static void test_guest_gateway(void **state)
{
    (void)state;
    char out[300];
    /* Failures first. */
    assert_int_not_equal(drv_vm_guest_gateway(DRV_VM_NET_GATEWAY, "127.0.0.1", out, sizeof out),
                         0);
    assert_int_not_equal(drv_vm_guest_gateway(DRV_VM_NET_USER, "a b:1", out, sizeof out), 0);
    assert_int_not_equal(drv_vm_guest_gateway(DRV_VM_NET_USER, "gw.example:8443", out, 10), 0);
    assert_int_not_equal(drv_vm_guest_gateway(DRV_VM_NET_USER, "a:1,,b:2", out, sizeof out), 0);
    assert_int_not_equal(drv_vm_guest_gateway(DRV_VM_NET_GATEWAY, "a:1,b:2", out, 16), 0);
    struct {
        enum drv_vm_network net;
        const char *host, *guest;
    } cases[] = {
        {DRV_VM_NET_GATEWAY, "127.0.0.1:8443", "10.0.2.100:8443"},
        {DRV_VM_NET_GATEWAY, "gw.example:9443", "10.0.2.100:9443"},
        {DRV_VM_NET_GATEWAY, "[::1]:8443", "10.0.2.100:8443"},
        {DRV_VM_NET_USER, "127.0.0.1:8443", "10.0.2.2:8443"},
        {DRV_VM_NET_USER, "localhost:8443", "10.0.2.2:8443"},
        {DRV_VM_NET_USER, "[::1]:8443", "10.0.2.2:8443"},
        {DRV_VM_NET_USER, "127.0.0.10:8443", "127.0.0.10:8443"},
        {DRV_VM_NET_USER, "gw.example:8443", "gw.example:8443"},
        /* Replicas: one guest address per gateway address, in order. */
        {DRV_VM_NET_GATEWAY, "127.0.0.1:8443,gw.example:9443,[::1]:7443",
         "10.0.2.100:8443,10.0.2.101:9443,10.0.2.102:7443"},
        {DRV_VM_NET_USER, "127.0.0.1:8443,gw.example:9443", "10.0.2.2:8443,gw.example:9443"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(drv_vm_guest_gateway(cases[i].net, cases[i].host, out, sizeof out), 0);
        assert_string_equal(out, cases[i].guest);
    }
}

/* The workload for fw_cfg opt/tessera/command: one line per argument, only
 * [A-Za-z0-9_./-] as it is, every other byte as \ooo (the guest's init
 * decodes a line with printf: no '%', no other escape reaches it). */
static void test_encode_command(void **state)
{
    (void)state;
    static const char *const argv[] = {"/bin/sh", "-c", "id; echo \"a b\" $HOME *\n", "",
                                       "x%s\\n'", "\xc3\xa9t\xc3\xa9", NULL};
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(drv_vm_encode_command(argv, 6, &out, &len), 0);
    static const char want[] =
        "/bin/sh\n\\055c\n"
        "id\\073\\040echo\\040\\042a\\040b\\042\\040\\044HOME\\040\\052\\012\n"
        "\n"
        "x\\045s\\134n\\047\n"
        "\\303\\251t\\303\\251\n";
    assert_int_equal(len, sizeof want - 1);
    assert_string_equal(out, want);
    free(out);
    /* A missing argument is refused. */
    static const char *const holes[] = {"a", NULL, "b"};
    assert_int_not_equal(drv_vm_encode_command(holes, 3, &out, &len), 0);
}

/* The images option: NAME:KERNEL[:INITRD], space separated. */
static void test_parse_images(void **state)
{
    (void)state;
    drv_vm_image im[DRV_VM_MAX_IMAGES];
    size_t n = 99;
    static const char *const bad[] = {
        "nocolon", "Upper:/k", ":/k", "-x:/k", "a b:/k", "a:relative", "a:/k:relative",
        "a:/k:/i:/x", "a:/k a:/k2", "a:", "a:/k:",
        "x0:/k x1:/k x2:/k x3:/k x4:/k x5:/k x6:/k x7:/k x8:/k x9:/k x10:/k x11:/k x12:/k "
        "x13:/k x14:/k x15:/k x16:/k",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tsr_err_clear();
        if (drv_vm_parse_images(bad[i], im, &n) == 0) fail_msg("accepted: %s", bad[i]);
        assert_true(tsr_errcat() == TSR_E_INPUT || tsr_errcat() == TSR_E_LIMIT);
    }
    assert_int_equal(drv_vm_parse_images("  second:/v/k:/v/i  third.x_1-y:/v/k2 ", im, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(im[0].name, "second");
    assert_string_equal(im[0].kernel, "/v/k");
    assert_string_equal(im[0].initrd, "/v/i");
    assert_string_equal(im[1].name, "third.x_1-y");
    assert_string_equal(im[1].kernel, "/v/k2");
    assert_string_equal(im[1].initrd, "");
    assert_int_equal(drv_vm_parse_images("", im, &n), 0);
    assert_int_equal(n, 0);
}

/* KVM only where the CPU shows vmx or svm as a word of a flags line. */
static void test_cpuinfo_flags(void **state)
{
    (void)state;
    static const char *const no[] = {
        "",
        "processor\t: 0\nflags\t\t: fpu vme de pse tsc msr hypervisor lahf_lm svm_lock\n",
        "model name\t: Intel vmx-capable\nflags\t\t: fpu sse2\n", /* not a flags line */
        "flags\t\t: fpu vmxe svmx\n",
        "vmx flags\t: ept\n",
    };
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        assert_int_equal(drv_vm_cpuinfo_has_virt(no[i], strlen(no[i])), 0);
    static const char *const yes[] = {
        "processor\t: 0\nflags\t\t: fpu vme vmx ssse3\n",
        "flags\t\t: fpu svm\n",
        "flags\t\t:vmx",
        "processor\t: 0\nflags\t\t: fpu\n\nprocessor\t: 1\nflags\t\t: fpu svm\n",
    };
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        assert_int_equal(drv_vm_cpuinfo_has_virt(yes[i], strlen(yes[i])), 1);
}

/* Identity only through fw_cfg files: the kernel command line holds no key
 * content, no path to the identity, and no argument holds PEM text. */
static void test_argv_keeps_identity_off_the_command_line(void **state)
{
    (void)state;
    drv_vm_config cfg;
    base_cfg(&cfg);
    strcpy(cfg.append, "quiet");
    drv_argv *a = drv_argv_new();
    assert_non_null(a);
    assert_int_equal(drv_vm_build_argv(&cfg, ID, NULL, a), 0);
    int app = argv_index(a, "-append");
    assert_true(app > 0);
    const char *line = a->v[app + 1];
    assert_null(strstr(line, "pem"));
    assert_null(strstr(line, "identity"));
    assert_null(strstr(line, "key"));
    int files = 0;
    for (size_t i = 0; i < a->n; i++) {
        assert_null(strstr(a->v[i], "-----BEGIN"));
        assert_null(strstr(a->v[i], "PRIVATE"));
        if (strcmp(a->v[i], "-fw_cfg") == 0 && strstr(a->v[i + 1], ",file=") != NULL) {
            files++;
            /* name=opt/tessera/X.pem,file=identity/X.pem: a relative path
             * QEMU reads in the sandbox directory. */
            const char *f = strstr(a->v[i + 1], ",file=") + 6;
            assert_memory_equal(f, "identity/", 9);
            assert_null(strchr(f, ','));
        }
    }
    assert_int_equal(files, 3);
    drv_argv_free(a);
}

/* ---- create through the driver's operations ---------------------------------- */

struct fx {
    char dir[128];
    char data[192];
    char kernel[192];
};

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof *fx);
    if (fx == NULL) return -1;
    if (tu_temp_path(fx->dir, sizeof fx->dir, "tsr-drvvm-XXXXXX") != 0) return -1;
    if (mkdtemp(fx->dir) == NULL) return -1;
    snprintf(fx->data, sizeof fx->data, "%s/data", fx->dir);
    snprintf(fx->kernel, sizeof fx->kernel, "%s/vmlinuz", fx->dir);
    FILE *f = fopen(fx->kernel, "w");
    if (f == NULL) return -1;
    fputs("kernel\n", f);
    fclose(f);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fx *fx = *state;
    (void)tu_rm_rf(fx->dir);
    free(fx);
    return 0;
}

static void *vm_new(struct fx *fx, char *err, size_t cap)
{
    static const char *keys[] = {"qemu", "kernel", "relay", "accel"};
    static const char *vals[4];
    vals[0] = "/bin/true";
    vals[1] = fx->kernel;
    vals[2] = "/bin/true";
    vals[3] = "tcg";
    tsr_driver_env env = {.data_dir = fx->data,
                          .supervisor_path = "/bin/true",
                          .gateway_addr = "127.0.0.1:8443",
                          .trust_domain = "tessera.local",
                          .option_keys = keys,
                          .option_values = vals,
                          .n_options = 4};
    void *ctx = NULL;
    if (tessera_driver_entry()->init(&env, &ctx, err, cap) != 0) return NULL;
    return ctx;
}

static void expect_file(const char *path, unsigned mode, const char *content, size_t len)
{
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, mode);
    size_t n = 0;
    char *got = tu_slurp(path, &n);
    assert_non_null(got);
    assert_int_equal(n, len);
    assert_memory_equal(got, content, len);
    free(got);
}

static void test_create_places_identity(void **state)
{
    struct fx *fx = *state;
    const tsr_driver_ops *ops = tessera_driver_entry();
    assert_int_equal(ops->abi_version, TSR_DRIVER_ABI_VERSION);
    assert_int_equal(ops->struct_size, sizeof(tsr_driver_ops));
    assert_string_equal(ops->name, "vm");
    char err[512] = "";
    void *ctx = vm_new(fx, err, sizeof err);
    if (ctx == NULL) fail_msg("init: %s", err);

    char uri[128], p[512];
    snprintf(uri, sizeof uri, "spiffe://tessera.local/sandbox/%s", ID);
    tu_ident t, other;
    assert_int_equal(tu_ident_make(&t, uri), 0);
    assert_int_equal(tu_ident_make(&other, "spiffe://tessera.local/sandbox/"
                                           "00000000-0000-4000-8000-000000000000"),
                     0);
    static const char *const cmd[] = {"/bin/sh", "-c", "echo a,b", NULL};
    tsr_driver_sandbox sb = {ID, "vm-test", uri, "", cmd, 3};
    assert_int_equal(ops->check(ctx, &sb, err, sizeof err), TSR_DRIVER_OK);
    /* Refused first: a certificate for another sandbox leaves nothing. */
    tsr_driver_identity bad = {other.cert, other.cert_len, other.key, other.key_len, other.bundle,
                               other.bundle_len};
    assert_int_not_equal(ops->create(ctx, &sb, &bad, err, sizeof err), 0);
    snprintf(p, sizeof p, "%s/sandboxes/%s", fx->data, ID);
    assert_int_not_equal(access(p, F_OK), 0);

    tsr_driver_identity ident = {t.cert, t.cert_len, t.key, t.key_len, t.bundle, t.bundle_len};
    if (ops->create(ctx, &sb, &ident, err, sizeof err) != 0) fail_msg("create: %s", err);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    snprintf(p, sizeof p, "%s/sandboxes/%s/identity", fx->data, ID);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    snprintf(p, sizeof p, "%s/sandboxes/%s/identity/cert.pem", fx->data, ID);
    expect_file(p, 0600, t.cert, t.cert_len);
    snprintf(p, sizeof p, "%s/sandboxes/%s/identity/key.pem", fx->data, ID);
    expect_file(p, 0600, t.key, t.key_len);
    snprintf(p, sizeof p, "%s/sandboxes/%s/identity/bundle.pem", fx->data, ID);
    expect_file(p, 0600, t.bundle, t.bundle_len);
    snprintf(p, sizeof p, "%s/sandboxes/%s/driver", fx->data, ID);
    expect_file(p, 0600, "vm\n", 3);
    /* No workspace for a VM: the guest has its own disk. */
    snprintf(p, sizeof p, "%s/sandboxes/%s/workspace", fx->data, ID);
    assert_int_not_equal(access(p, F_OK), 0);

    /* The workload create keeps: the argv, a NUL after each argument. */
    snprintf(p, sizeof p, "%s/sandboxes/%s/command", fx->data, ID);
    expect_file(p, 0600, "/bin/sh\0-c\0echo a,b\0", 20);
    snprintf(p, sizeof p, "%s/sandboxes/%s/image", fx->data, ID);
    assert_int_not_equal(access(p, F_OK), 0); /* the default image */

    tsr_driver_status s;
    memset(&s, 0, sizeof s);
    s.want_detail = 1;
    assert_int_equal(ops->status(ctx, ID, &s, err, sizeof err), 0);
    assert_int_equal(s.state, TSR_DRIVER_STATE_CREATED);
    assert_int_equal(s.exited, 0);
    assert_string_equal(s.detail, "");
    assert_int_equal(ops->destroy(ctx, ID, err, sizeof err), 0);
    snprintf(p, sizeof p, "%s/sandboxes/%s", fx->data, ID);
    assert_int_not_equal(access(p, F_OK), 0);
    assert_int_equal(ops->status(ctx, ID, &s, err, sizeof err), 0);
    assert_int_equal(s.state, TSR_DRIVER_STATE_UNKNOWN);

    /* An image that is not in the images option: refused by check and by
     * create, and nothing is made. */
    sb.image = "nope";
    assert_int_equal(ops->check(ctx, &sb, err, sizeof err), TSR_DRIVER_INVALID);
    assert_string_equal(err, "vm: image: no guest image named \"nope\" in the vm driver's "
                             "images option (none configured)");
    assert_int_equal(ops->create(ctx, &sb, &ident, err, sizeof err), TSR_DRIVER_INVALID);
    snprintf(p, sizeof p, "%s/sandboxes/%s", fx->data, ID);
    assert_int_not_equal(access(p, F_OK), 0);
    ops->fini(ctx);
    tu_ident_free(&t);
    tu_ident_free(&other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_argv_refuses),
        cmocka_unit_test(test_qmp_reader),
        cmocka_unit_test(test_argv_exact),
        cmocka_unit_test(test_argv_user_network),
        cmocka_unit_test(test_argv_no_network),
        cmocka_unit_test(test_guest_gateway),
        cmocka_unit_test(test_argv_two_gateways),
        cmocka_unit_test(test_cpuinfo_flags),
        cmocka_unit_test(test_encode_command),
        cmocka_unit_test(test_parse_images),
        cmocka_unit_test(test_argv_keeps_identity_off_the_command_line),
        cmocka_unit_test_setup_teardown(test_create_places_identity, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
