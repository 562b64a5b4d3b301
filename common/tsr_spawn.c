#include "tsr_spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* What the child (or the detaching intermediate process) tells the parent. */
typedef struct spawn_msg {
    int32_t what; /* MSG_PID: pid of the detached process; MSG_FAIL: failure */
    int32_t step;
    int32_t err;
    int32_t pid;
} spawn_msg;
enum { MSG_PID = 1, MSG_FAIL = 2 };

const char *tsr_spawn_step_name(const tsr_spawn *sp, int step)
{
    switch (step) {
    case TSR_SPAWN_PIPE: return "pipe";
    case TSR_SPAWN_FORK: return "fork";
    case TSR_SPAWN_SIGNALS: return "reset signals";
    case TSR_SPAWN_SESSION: return "setsid";
    case TSR_SPAWN_STDIO: return "set up stdin/stdout/stderr";
    case TSR_SPAWN_FDS: return "close inherited descriptors";
    case TSR_SPAWN_GROUPS: return "setgroups([])";
    case TSR_SPAWN_GID: return "setgid";
    case TSR_SPAWN_UID: return "setuid";
    case TSR_SPAWN_VERIFY: return "verify the dropped ids";
    case TSR_SPAWN_NO_NEW_PRIVS: return "PR_SET_NO_NEW_PRIVS";
    case TSR_SPAWN_PDEATHSIG: return "PR_SET_PDEATHSIG";
    case TSR_SPAWN_CWD: return "chdir";
    case TSR_SPAWN_BEFORE_EXEC:
        return sp != NULL && sp->before_exec_what != NULL ? sp->before_exec_what : "prepare";
    case TSR_SPAWN_EXEC: return "exec";
    default: return "start";
    }
}

/* ---- child side: async-signal-safe calls only ------------------------------- */

static void report(int fd, int32_t what, int32_t step, int32_t err, int32_t pid)
{
    spawn_msg m = {what, step, err, pid};
    ssize_t r;
    do r = write(fd, &m, sizeof m);
    while (r < 0 && errno == EINTR);
}

static _Noreturn void child_fail(int errfd, int step)
{
    report(errfd, MSG_FAIL, step, errno, 0);
    _exit(127);
}

/* Close [lo, hi]: close_range, or one by one below the descriptor limit on
 * kernels before 5.9. */
static void close_from(unsigned lo, unsigned hi)
{
    if (lo > hi || close_range(lo, hi, 0) == 0) return;
    struct rlimit rl;
    rlim_t max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
                     ? rl.rlim_cur
                     : 65536;
    for (rlim_t fd = lo; fd < max && fd < 1048576 && fd <= hi; fd++) (void)close((int)fd);
}

/* 0-2 (and 3) placed from copies above every target slot, then every other
 * descriptor closed but the error pipe (close-on-exec). Returns the error
 * pipe's new number, or -1. */
static int place_fds(const tsr_spawn *sp, int errfd)
{
    int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (nul < 0) return -1;
    int keep_nul = fcntl(nul, F_DUPFD_CLOEXEC, 10);
    int keep_out = fcntl(sp->stdout_fd, F_DUPFD_CLOEXEC, 10);
    int keep_err = fcntl(sp->stderr_fd, F_DUPFD_CLOEXEC, 10);
    int keep_extra = sp->extra_fd >= 0 ? fcntl(sp->extra_fd, F_DUPFD_CLOEXEC, 10) : -1;
    int keep_pipe = fcntl(errfd, F_DUPFD_CLOEXEC, 10);
    if (keep_nul < 0 || keep_out < 0 || keep_err < 0 || keep_pipe < 0 ||
        (sp->extra_fd >= 0 && keep_extra < 0))
        return -1;
    if (dup2(keep_nul, 0) < 0 || dup2(keep_out, 1) < 0 || dup2(keep_err, 2) < 0) return -1;
    unsigned first_free = 3;
    if (keep_extra >= 0) {
        if (dup2(keep_extra, 3) < 0) return -1;
        first_free = 4;
    }
    if ((unsigned)keep_pipe > first_free) close_from(first_free, (unsigned)keep_pipe - 1);
    close_from((unsigned)keep_pipe + 1, ~0u);
    return keep_pipe;
}

static int drop_ids(const tsr_spawn *sp)
{
    if (setgroups(0, NULL) != 0) return TSR_SPAWN_GROUPS;
    if (setresgid(sp->gid, sp->gid, sp->gid) != 0) return TSR_SPAWN_GID;
    if (setresuid(sp->uid, sp->uid, sp->uid) != 0) return TSR_SPAWN_UID;
    uid_t r, e, s;
    gid_t rg, eg, sg;
    if (getresuid(&r, &e, &s) != 0 || r != sp->uid || e != sp->uid || s != sp->uid ||
        getresgid(&rg, &eg, &sg) != 0 || rg != sp->gid || eg != sp->gid || sg != sp->gid ||
        getgroups(0, NULL) != 0 || (sp->uid != 0 && setuid(0) == 0)) {
        errno = EPERM;
        return TSR_SPAWN_VERIFY;
    }
    return 0;
}

static _Noreturn void child_main(const tsr_spawn *sp, int errfd, pid_t parent)
{
    sigset_t none;
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) != 0) child_fail(errfd, TSR_SPAWN_SIGNALS);
    /* The caller may ignore SIGPIPE or block signals in its threads; what
     * it starts must not inherit that. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP) (void)sigaction(sig, &dfl, NULL);

    if (setsid() < 0) child_fail(errfd, TSR_SPAWN_SESSION);
    if (sp->umask >= 0) umask((mode_t)sp->umask);
    int placed = place_fds(sp, errfd);
    if (placed < 0) child_fail(errfd, TSR_SPAWN_FDS);
    errfd = placed;
    if (sp->drop) {
        int step = drop_ids(sp);
        if (step != 0) child_fail(errfd, step);
    }
    if (sp->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        child_fail(errfd, TSR_SPAWN_NO_NEW_PRIVS);
    if (sp->die_with_parent) {
        /* After the id change (which clears it), then check the parent did
         * not die in between. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) child_fail(errfd, TSR_SPAWN_PDEATHSIG);
        if (getppid() != parent) _exit(127);
    }
    if (sp->cwd != NULL && chdir(sp->cwd) != 0) child_fail(errfd, TSR_SPAWN_CWD);
    if (sp->before_exec != NULL) {
        int e = sp->before_exec(sp->before_exec_arg);
        if (e != 0) {
            errno = e;
            child_fail(errfd, TSR_SPAWN_BEFORE_EXEC);
        }
    }
    execve(sp->path != NULL ? sp->path : sp->argv[0], sp->argv, sp->envp);
    child_fail(errfd, TSR_SPAWN_EXEC);
}

/* ---- parent side ------------------------------------------------------------ */

int tsr_spawn_run(const tsr_spawn *sp, pid_t *pid, tsr_spawn_failure *fail)
{
    fail->step = fail->err = 0;
    TSR_ENSURE(sp->argv != NULL && sp->argv[0] != NULL && sp->envp != NULL, TSR_E_INTERNAL,
               "spawn: missing argument");
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        fail->step = TSR_SPAWN_PIPE;
        fail->err = errno;
        return TSR_FAIL(TSR_E_IO, "pipe: %s", strerror(fail->err));
    }
    pid_t parent = getpid();
    pid_t a = fork();
    if (a == 0) {
        close(p[0]);
        if (!sp->detach) child_main(sp, p[1], parent);
        pid_t b = fork();
        if (b < 0) {
            report(p[1], MSG_FAIL, TSR_SPAWN_FORK, errno, 0);
            _exit(1);
        }
        if (b == 0) child_main(sp, p[1], getpid());
        report(p[1], MSG_PID, 0, 0, (int32_t)b);
        _exit(0);
    }
    int fork_errno = errno;
    close(p[1]);
    if (a < 0) {
        close(p[0]);
        fail->step = TSR_SPAWN_FORK;
        fail->err = fork_errno;
        return TSR_FAIL(TSR_E_IO, "fork: %s", strerror(fork_errno));
    }
    pid_t child = sp->detach ? 0 : a;
    for (;;) {
        spawn_msg m;
        ssize_t r = read(p[0], &m, sizeof m);
        if (r < 0 && errno == EINTR) continue;
        if (r != (ssize_t)sizeof m) break; /* EOF: exec'd (close-on-exec) or died */
        if (m.what == MSG_PID) child = (pid_t)m.pid;
        if (m.what == MSG_FAIL && fail->step == 0) {
            fail->step = m.step;
            fail->err = m.err;
        }
    }
    close(p[0]);
    if (sp->detach || fail->step != 0) {
        int st;
        while (waitpid(a, &st, 0) < 0 && errno == EINTR) {
        }
    }
    if (fail->step != 0)
        return TSR_FAIL(TSR_E_IO, "%s: %s", tsr_spawn_step_name(sp, fail->step),
                        strerror(fail->err));
    TSR_ENSURE(child > 0, TSR_E_IO, "spawn %s: the intermediate process died", sp->argv[0]);
    *pid = child;
    return 0;
}
