/* The one process spawner (docs/architecture.md, "Layers"): the
 * supervisor starts its workload with it (supervisor/sup_workload.c) and the
 * process and vm drivers their supervisor or QEMU, detached from the gateway
 * (drivers/lib/drv_local.c).
 *
 * The child, between fork and exec, makes only async-signal-safe calls (the
 * callers are multithreaded), in this order: default signal dispositions
 * and an empty mask; a new session; the umask; stdin from /dev/null, stdout
 * and stderr (and optionally fd 3) placed, every other descriptor closed;
 * the ids dropped and verified; no_new_privs; the parent-death signal; the
 * working directory (as the dropped user); the caller's last step; exec. A
 * failing step is reported to the parent over a close-on-exec pipe with its
 * errno, and nothing of the child is left running. */
#ifndef TSR_SPAWN_H
#define TSR_SPAWN_H

#include <stdbool.h>
#include <sys/types.h>

#include "tsr_err.h"

typedef struct tsr_spawn {
    const char *path;          /* executed; NULL: argv[0] */
    char *const *argv;
    char *const *envp;         /* the whole environment */
    int stdout_fd, stderr_fd;  /* become 1 and 2 */
    int extra_fd;              /* becomes 3, or -1 */
    const char *cwd;           /* NULL: unchanged */
    int umask;                 /* -1: unchanged */
    bool detach;               /* double fork: init adopts it, no zombie of ours */
    bool drop;                 /* setgroups([]), setresgid(gid), setresuid(uid), verified */
    uid_t uid;
    gid_t gid;
    bool no_new_privs;         /* nothing it execs (setuid binaries too) gains privileges */
    bool die_with_parent;      /* SIGKILL when the spawning thread's process dies */
    /* The caller's last step before exec (async-signal-safe): 0 or an errno. */
    int (*before_exec)(void *arg);
    void *before_exec_arg;
    const char *before_exec_what;   /* its name in messages */
} tsr_spawn;

enum tsr_spawn_step {
    TSR_SPAWN_PIPE = 1,
    TSR_SPAWN_FORK,
    TSR_SPAWN_SIGNALS,
    TSR_SPAWN_SESSION,
    TSR_SPAWN_STDIO,
    TSR_SPAWN_FDS,
    TSR_SPAWN_GROUPS,
    TSR_SPAWN_GID,
    TSR_SPAWN_UID,
    TSR_SPAWN_VERIFY,
    TSR_SPAWN_NO_NEW_PRIVS,
    TSR_SPAWN_PDEATHSIG,
    TSR_SPAWN_CWD,
    TSR_SPAWN_BEFORE_EXEC,
    TSR_SPAWN_EXEC,
};

/* The failed step and its errno (step 0: none). */
typedef struct tsr_spawn_failure {
    int step;
    int err;
} tsr_spawn_failure;

/* Start sp. 0: it has exec'd, *pid is its pid (with detach: not our child).
 * -1: nothing runs (the child was reaped, or died before exec), *fail says
 * where and why; the recorded error is TSR_E_IO "<step>: <errno text>" and
 * the caller says what it was starting. */
TSR_WUR int tsr_spawn_run(const tsr_spawn *sp, pid_t *pid, tsr_spawn_failure *fail);

/* "setsid", "exec", ...; sp names the caller's own step. */
const char *tsr_spawn_step_name(const tsr_spawn *sp, int step);

#endif
