/* sandbox_probe: a hostile workload for the docker driver's live tests
 * (tests/integration/test_docker_engines.py). Started by tessera-supervisor
 * inside a sandbox container, it tries to reach the identity the supervisor
 * holds and prints one line per attempt to stdout, which the supervisor
 * ships to the gateway as the sandbox's log:
 *
 *   probe: ids uid=65534 euid=65534 suid=65534 gid=65534 groups=0
 *   probe: status CapEff=0000000000000000 CapPrm=... CapBnd=... CapAmb=... NoNewPrivs=1
 *   probe: open /run/tessera/identity/key.pem: EACCES
 *   ...
 *   probe: done
 *
 * Each attempt prints `ok` (it worked: the test fails on it) or the errno
 * name. The supervisor is our parent. With --sleep the probe then waits for
 * SIGTERM (prints `probe: SIGTERM, exiting`, exit 0), so the sandbox keeps
 * running. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static const char *errname(int e)
{
    switch (e) {
    case 0: return "ok";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EFAULT: return "EFAULT";
    case EINVAL: return "EINVAL";
    default: return "other";
    }
}

static void report(const char *what, int rc, int e)
{
    printf("probe: %s: %s\n", what, errname(rc == 0 ? 0 : e));
    fflush(stdout);
}

static void try_open(const char *path)
{
    char what[300];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int e = errno;
    if (fd >= 0) close(fd);
    snprintf(what, sizeof what, "open %s", path);
    report(what, fd >= 0 ? 0 : -1, e);
}

static void try_opendir(const char *path)
{
    char what[300];
    DIR *d = opendir(path);
    int e = errno;
    if (d != NULL) closedir(d);
    snprintf(what, sizeof what, "opendir %s", path);
    report(what, d != NULL ? 0 : -1, e);
}

static void status_line(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256], out[512] = "";
    if (f == NULL) return;
    while (fgets(line, sizeof line, f) != NULL) {
        static const char *const keys[] = {"CapEff:", "CapPrm:", "CapBnd:", "CapAmb:",
                                           "CapInh:", "NoNewPrivs:"};
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
            size_t n = strlen(keys[i]);
            if (strncmp(line, keys[i], n) != 0) continue;
            char *v = line + n;
            v += strspn(v, " \t");
            v[strcspn(v, "\n")] = '\0';
            size_t used = strlen(out);
            snprintf(out + used, sizeof out - used, " %.*s=%s", (int)(n - 1), keys[i], v);
        }
    }
    fclose(f);
    printf("probe: status%s\n", out);
}

int main(int argc, char **argv)
{
    int sleep_after = argc > 1 && strcmp(argv[1], "--sleep") == 0;
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    if (sleep_after) sigprocmask(SIG_BLOCK, &term, NULL); /* taken by sigwait below */
    pid_t sup = getppid();
    char path[128], what[160];
    uid_t r, e, s;
    gid_t gr, ge, gs;
    getresuid(&r, &e, &s);
    getresgid(&gr, &ge, &gs);
    printf("probe: ids uid=%u euid=%u suid=%u gid=%u groups=%d\n", (unsigned)r, (unsigned)e,
           (unsigned)s, (unsigned)gr, getgroups(0, NULL));
    status_line();

    try_opendir("/run/tessera/identity");
    try_open("/run/tessera/identity/key.pem");
    try_open("/run/tessera/identity/cert.pem");
    /* The supervisor's process: its environment, memory, descriptors, root. */
    static const char *const files[] = {"environ", "mem", "maps", "root/run/tessera/identity/key.pem"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "/proc/%d/%s", (int)sup, files[i]);
        try_open(path);
    }
    snprintf(path, sizeof path, "/proc/%d/fd", (int)sup);
    try_opendir(path);
    for (int fd = 0; fd < 16; fd++) {
        snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)sup, fd);
        int f = open(path, O_RDONLY | O_CLOEXEC);
        if (f >= 0) {
            printf("probe: open /proc/<supervisor>/fd/%d: ok\n", fd);
            close(f);
        }
    }
    errno = 0;
    long pr = ptrace(PTRACE_ATTACH, sup, NULL, NULL);
    snprintf(what, sizeof what, "ptrace attach <supervisor>");
    report(what, pr == 0 ? 0 : -1, errno);
    if (pr == 0) (void)ptrace(PTRACE_DETACH, sup, NULL, NULL);
    pr = ptrace(PTRACE_SEIZE, sup, NULL, NULL);
    report("ptrace seize <supervisor>", pr == 0 ? 0 : -1, errno);
    if (pr == 0) (void)ptrace(PTRACE_DETACH, sup, NULL, NULL);
    char buf[16];
    struct iovec local = {buf, sizeof buf}, remote = {(void *)0x400000, sizeof buf};
    ssize_t n = process_vm_readv(sup, &local, 1, &remote, 1, 0);
    report("process_vm_readv <supervisor>", n >= 0 ? 0 : -1, errno);
    report("kill -0 <supervisor>", kill(sup, 0), errno);
    report("setuid 0", setuid(0), errno);
    report("setgid 0", setgid(0), errno);
    printf("probe: done\n");
    fflush(stdout);

    if (!sleep_after) return 0;
    int sig = 0;
    while (sigwait(&term, &sig) != 0 || sig != SIGTERM) {
    }
    printf("probe: SIGTERM, exiting\n");
    return 0;
}
