/* The workload's environment and its start with dropped privileges
 * (sup_workload.h). */
#include "sup_workload.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tsr_env.h"
#include "tsr_spawn.h"

/* ---- environment ------------------------------------------------------------ */

static bool has_prefix_ci(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && strncasecmp(s, prefix, n) == 0;
}

bool sup_env_inherit_ok(const char *entry)
{
    if (entry == NULL) return false;
    const char *eq = strchr(entry, '=');
    if (eq == NULL || eq == entry) return false;
    size_t nlen = (size_t)(eq - entry);
    if (has_prefix_ci(entry, nlen, "TESSERA_")) return false;
    if (tsr_env_name_secretlike(entry, nlen)) return false;
    if (tsr_env_value_secretlike(eq + 1)) return false;
    return true;
}

bool sup_env_name_valid(const char *name)
{
    if (name == NULL) return false;
    size_t len = strlen(name);
    if (!tsr_env_name_valid(name, len)) return false;
    if (has_prefix_ci(name, len, "TESSERA_")) return false;
    if (has_prefix_ci(name, len, "LD_")) return false;
    return true;
}

const char *sup_env_get(char *const *env, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; env != NULL && env[i] != NULL; i++)
        if (strncmp(env[i], name, n) == 0 && env[i][n] == '=') return env[i] + n + 1;
    return NULL;
}

void sup_env_free(char **env)
{
    if (env == NULL) return;
    for (size_t i = 0; env[i] != NULL; i++) {
        OPENSSL_cleanse(env[i], strlen(env[i]));
        free(env[i]);
    }
    free(env);
}

static bool name_is(const char *entry, const char *name)
{
    size_t n = strlen(name);
    return strncmp(entry, name, n) == 0 && entry[n] == '=';
}

static bool list_has(const sup_env_list *l, const char *entry)
{
    for (size_t i = 0; l != NULL && i < l->n; i++)
        if (sup_env_name_valid(l->vars[i].name) && name_is(entry, l->vars[i].name)) return true;
    return false;
}

static int env_add(char **env, size_t *n, const char *name, const char *value)
{
    size_t len = strlen(name) + 1 + strlen(value) + 1;
    char *e = malloc(len);
    TSR_ENSURE(e != NULL, TSR_E_INTERNAL, "out of memory");
    snprintf(e, len, "%s=%s", name, value);
    env[(*n)++] = e;
    return 0;
}

static void note_rejected(char *out, size_t cap, const char *name)
{
    if (out == NULL || cap == 0) return;
    size_t used = strlen(out);
    /* Names only, truncated: never a value. The list is logged, and a name
     * comes from the gateway's answer: any byte that is not printable ASCII
     * (a terminal escape, a line break), and the backslash, as \xNN. */
    if (used > 0 && used + 1 < cap) out[used++] = ',';
    for (size_t i = 0; name[i] != '\0' && i < 64; i++) {
        unsigned char c = (unsigned char)name[i];
        char shown[5];
        int n = c >= 0x20 && c < 0x7f && c != '\\' ? snprintf(shown, sizeof shown, "%c", c)
                                                   : snprintf(shown, sizeof shown, "\\x%02x", c);
        if (used + (size_t)n >= cap) break;
        memcpy(out + used, shown, (size_t)n);
        used += (size_t)n;
    }
    out[used] = '\0';
}

int sup_env_build(char *const *parent, const sup_env_list *provider, const char *home,
                  char ***out, char *rejected, size_t rejected_cap)
{
    return sup_env_build_with(parent, NULL, provider, home, out, rejected, rejected_cap);
}

int sup_env_build_with(char *const *parent, const sup_env_list *plain,
                       const sup_env_list *provider, const char *home, char ***out,
                       char *rejected, size_t rejected_cap)
{
    if (rejected != NULL && rejected_cap > 0) rejected[0] = '\0';
    size_t np = 0, nv = provider ? provider->n : 0, nl = plain ? plain->n : 0;
    while (parent != NULL && parent[np] != NULL) np++;
    /* inherited + provider + plain + PATH + HOME + NULL */
    char **env = calloc(np + nv + nl + 3, sizeof *env);
    TSR_ENSURE(env != NULL, TSR_E_INTERNAL, "out of memory");
    size_t n = 0;
    /* Of the supervisor's own environment only PATH: the workload's
     * variables are the ones its sandbox was given, nothing else of ours or
     * of whatever started us (an engine's HOSTNAME, TERM, container=...). */
    for (size_t i = 0; i < np && n == 0; i++) {
        const char *e = parent[i];
        if (!name_is(e, "PATH") || !sup_env_inherit_ok(e) || list_has(provider, e) ||
            list_has(plain, e))
            continue;
        char *copy = strdup(e);
        if (copy == NULL) goto oom;
        env[n++] = copy;
    }
    bool own_home = false;
    /* The provider's first: a name in both lists keeps the provider's value. */
    const sup_env_list *lists[2] = {provider, plain};
    for (size_t l = 0; l < 2; l++) {
        for (size_t i = 0; lists[l] != NULL && i < lists[l]->n; i++) {
            const sup_env_var *v = &lists[l]->vars[i];
            if (!sup_env_name_valid(v->name)) {
                note_rejected(rejected, rejected_cap, v->name);
                continue;
            }
            /* Duplicate names cannot come from a protobuf map; keep the first. */
            bool dup = false;
            for (size_t k = 0; k < n && !dup; k++) dup = name_is(env[k], v->name);
            if (dup) continue;
            if (strcmp(v->name, "HOME") == 0) own_home = true;
            if (env_add(env, &n, v->name, v->value) != 0) goto oom;
        }
    }
    if (sup_env_get(env, "PATH") == NULL && env_add(env, &n, "PATH", SUP_DEFAULT_PATH) != 0)
        goto oom;
    if (home != NULL && !own_home && env_add(env, &n, "HOME", home) != 0) goto oom;
    env[n] = NULL;
    *out = env;
    return 0;
oom:
    sup_env_free(env);
    return TSR_FAIL(TSR_E_INTERNAL, "out of memory");
}

/* ---- the command ---------------------------------------------------------------- */

static bool is_executable_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111) != 0;
}

int sup_resolve_command(const char *argv0, char *const *env, char **out)
{
    TSR_ENSURE(argv0 != NULL && argv0[0] != '\0', TSR_E_INPUT, "empty command");
    if (strchr(argv0, '/') != NULL) {
        TSR_ENSURE(is_executable_file(argv0), TSR_E_NOTFOUND, "%s: not an executable file",
                   argv0);
        *out = strdup(argv0);
        TSR_ENSURE(*out != NULL, TSR_E_INTERNAL, "out of memory");
        return 0;
    }
    const char *path = sup_env_get(env, "PATH");
    if (path == NULL || path[0] == '\0') path = SUP_DEFAULT_PATH;
    const char *p = path;
    for (;;) {
        const char *colon = strchr(p, ':');
        size_t dl = colon ? (size_t)(colon - p) : strlen(p);
        /* An empty PATH entry means the current directory: never for us. */
        if (dl > 0 && p[0] == '/') {
            size_t len = dl + 1 + strlen(argv0) + 1;
            char *cand = malloc(len);
            TSR_ENSURE(cand != NULL, TSR_E_INTERNAL, "out of memory");
            snprintf(cand, len, "%.*s/%s", (int)dl, p, argv0);
            if (is_executable_file(cand)) {
                *out = cand;
                return 0;
            }
            free(cand);
        }
        if (colon == NULL) break;
        p = colon + 1;
    }
    return TSR_FAIL(TSR_E_NOTFOUND, "%s: command not found in PATH", argv0);
}

/* ---- starting ------------------------------------------------------------------- */

int sup_workload_spawn(const sup_spawn *sp, pid_t *pid_out, int *exec_errno)
{
    *exec_errno = 0;
    TSR_ENSURE(sp->path != NULL && sp->argv != NULL && sp->argv[0] != NULL && sp->envp != NULL,
               TSR_E_INTERNAL, "spawn: missing argument");
    TSR_ENSURE(!sp->drop || sp->uid != 0, TSR_E_INPUT, "refusing to run the workload as root");
    tsr_spawn ts = {
        .path = sp->path,
        .argv = sp->argv,
        .envp = sp->envp,
        .stdout_fd = sp->stdout_fd,
        .stderr_fd = sp->stderr_fd,
        .extra_fd = -1,
        .cwd = sp->cwd != NULL ? sp->cwd : "/",
        .umask = -1,
        .drop = sp->drop,
        .uid = sp->uid,
        .gid = sp->gid,
        .no_new_privs = true,
        .die_with_parent = true,
    };
    tsr_spawn_failure fail;
    if (tsr_spawn_run(&ts, pid_out, &fail) == 0) return 0;
    if (fail.step == 0) return -1;
    *exec_errno = fail.err;
    return TSR_FAIL(fail.step == TSR_SPAWN_EXEC ? TSR_E_NOTFOUND : TSR_E_IO, "workload %s: %s: %s",
                    sp->path, tsr_spawn_step_name(&ts, fail.step), strerror(fail.err));
}

int sup_exit_code(int wstatus)
{
    if (WIFEXITED(wstatus)) return WEXITSTATUS(wstatus);
    if (WIFSIGNALED(wstatus)) return 128 + WTERMSIG(wstatus);
    return 1;
}
