/* The workload: its environment, and starting it with fewer privileges.
 *
 * Environment (docs/supervisor.md, "The workload"): nothing of the
 * supervisor's own but its PATH (as the command is looked up with it; not
 * when sup_env_inherit_ok refuses it), then the sandbox's plain env
 * (CreateSandbox env, from GetSandboxConfig) and the provider environment
 * from the gateway (validated names; the provider's override the plain
 * ones), PATH when still missing, and HOME set to the working directory
 * unless the env gives one. An engine's or image's variables (HOSTNAME,
 * TERM, container=...), a host's, and any TESSERA_* never reach it.
 *
 * Start (fork + exec, no shell): new session (setsid: no controlling
 * terminal, its own process group, which receives forwarded signals),
 * stdin /dev/null, stdout/stderr to the given pipes, every other descriptor
 * closed (close_range), signal mask and dispositions reset, setgroups([]),
 * setgid, setuid (then checked: real, effective and saved ids are the
 * workload's and setuid(0) fails), PR_SET_NO_NEW_PRIVS, PR_SET_PDEATHSIG
 * SIGKILL (the workload does not outlive the supervisor), cwd /workspace if
 * it exists (else /). A failure before exec is reported back through a
 * close-on-exec pipe with the step and errno. */
#ifndef SUP_WORKLOAD_H
#define SUP_WORKLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "sup_gateway.h"
#include "tsr_env.h"
#include "tsr_err.h"

#define SUP_NOBODY_ID 65534
#define SUP_WORKSPACE_DIR "/workspace"
#define SUP_DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define SUP_ENV_NAME_MAX TSR_ENV_NAME_MAX

/* A provider variable name: [A-Za-z_][A-Za-z0-9_]{0,127}, not TESSERA_*
 * and not a dynamic-loader variable (LD_*). */
bool sup_env_name_valid(const char *name);

/* Could this "NAME=value" of the supervisor's environment reach the
 * workload at all? Not a TESSERA_* one (any case), not a key-like name
 * (tsr_env_name_secretlike), not a value holding PEM or "PRIVATE KEY", not
 * one without '='. (Only PATH is ever taken: sup_env_build.) */
bool sup_env_inherit_ok(const char *entry);

/* Build the workload's environment (a NULL-terminated array; free with
 * sup_env_free, which wipes the values) from the supervisor's environment
 * `parent` (only its PATH is taken), the provider env and the home
 * directory (may be NULL: no HOME unless given). Invalid names are skipped
 * and listed in `rejected` (comma-separated, truncated to rejected_cap). */
TSR_WUR int sup_env_build(char *const *parent, const sup_env_list *provider, const char *home,
                          char ***out, char *rejected, size_t rejected_cap);
/* The same with the sandbox's plain env (may be NULL) under the provider's. */
TSR_WUR int sup_env_build_with(char *const *parent, const sup_env_list *plain,
                               const sup_env_list *provider, const char *home, char ***out,
                               char *rejected, size_t rejected_cap);
void sup_env_free(char **env);
/* The value of NAME in env, or NULL. */
const char *sup_env_get(char *const *env, const char *name);

/* Resolve argv0 like execvp would, with the PATH of `env` (default
 * SUP_DEFAULT_PATH): an executable regular file. *out is malloc'd. A missing
 * command is TSR_E_NOTFOUND. */
TSR_WUR int sup_resolve_command(const char *argv0, char *const *env, char **out);

typedef struct sup_spawn {
    const char *path;        /* resolved executable */
    char *const *argv;
    char *const *envp;
    bool drop;               /* change to uid/gid (false only with --allow-same-uid) */
    uid_t uid;
    gid_t gid;
    const char *cwd;         /* NULL: / */
    int stdout_fd, stderr_fd;
} sup_spawn;

/* Start the workload. On failure before exec the child is reaped and the
 * error says which step failed; *exec_errno is that errno (0 otherwise). */
TSR_WUR int sup_workload_spawn(const sup_spawn *sp, pid_t *pid_out, int *exec_errno);

/* Exit code for a wait status: the exit status, or 128 + signal. */
int sup_exit_code(int wstatus);

#endif
