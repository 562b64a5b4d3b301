/* drv_run: load a driver plugin as the gateway does (dlopen, ABI checks) and
 * run a sequence of operations from the command line. Used by the
 * integration tests of the docker and vm drivers.
 *
 *   drv_run DRIVER.so [--data-dir DIR] [--supervisor PATH] [--gateway ADDR]
 *           [--trust-domain TD] [--opt KEY=VALUE]... [--identity DIR]
 *           [--spiffe-id URI] [--mint DIR] [--image IMAGE] [--arg ARG]... OP...
 *
 *   OP: check:ID create:ID  start:ID  stop:ID  destroy:ID  status:ID  detail:ID
 *       sleep:MS
 *
 * --identity DIR holds cert.pem, key.pem and bundle.pem for create (the
 * buffers a gateway would pass); --spiffe-id overrides the sandbox's SPIFFE
 * ID (default spiffe://TD/sandbox/ID). --mint DIR gives the driver a
 * mint_identity (as the gateway does): its n-th call hands out DIR/<n>/
 * (cert.pem, key.pem, bundle.pem), logged as "mint <id>: DIR/<n>"; once none
 * is left it fails with "no identity left in DIR". Without --mint the driver
 * gets no mint_identity.
 *
 * --image and --arg (the workload's argv, one --arg per argument) are the
 * sandbox's for check and create.
 *
 * Prints one line per operation: "<op> <id>: ok", "status <id>: RUNNING",
 * or "<op> <id>: error: <reason>" ("error (precondition)" or "error
 * (invalid)" for those ABI results); detail asks status for the last lines:
 * "detail <id>: STOPPED exit 3" (or "exit unknown"), then each line as
 * "detail | <line>". Driver log lines go to stderr as "log: ...". Exit 0
 * when every operation succeeded, 1 when one failed, 2 on a usage or
 * loading error. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "drv_abi.h"

#define MAX_OPTS 32
#define MAX_ARGS 300

static void log_line(void *arg, const char *line)
{
    (void)arg;
    fprintf(stderr, "log: %s\n", line);
}

static char *slurp(const char *dir, const char *name, size_t *len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    char *buf = malloc(1 << 20);
    size_t n = buf != NULL ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    if (buf != NULL) buf[n] = '\0';
    *len = n;
    return buf;
}

/* --mint: the test's stand-in for the gateway's mint. */
static const char *mint_dir;
static int mint_count;

static int mint_identity(void *arg, const char *sandbox_id, tsr_driver_identity *out, char *err,
                         size_t err_cap)
{
    (void)arg;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%d", mint_dir, ++mint_count);
    size_t cl = 0, kl = 0, bl = 0;
    char *cert = slurp(dir, "cert.pem", &cl), *key = slurp(dir, "key.pem", &kl),
         *bundle = slurp(dir, "bundle.pem", &bl);
    if (cert == NULL || key == NULL || bundle == NULL) {
        free(cert);
        free(key);
        free(bundle);
        snprintf(err, err_cap, "no identity left in %s", mint_dir);
        fprintf(stderr, "log: mint %s: none left\n", sandbox_id);
        return -1;
    }
    fprintf(stderr, "log: mint %s: %s\n", sandbox_id, dir);
    *out = (tsr_driver_identity){cert, cl, key, kl, bundle, bl};
    return 0;
}

static void release_identity(void *arg, tsr_driver_identity *id)
{
    (void)arg;
    char *key = (char *)(uintptr_t)id->key_pem;
    if (key != NULL) memset(key, 0, id->key_len);
    free((void *)(uintptr_t)id->cert_pem);
    free(key);
    free((void *)(uintptr_t)id->bundle_pem);
    memset(id, 0, sizeof *id);
}

static const char *state_name(enum tsr_driver_state s)
{
    switch (s) {
    case TSR_DRIVER_STATE_UNKNOWN: return "UNKNOWN";
    case TSR_DRIVER_STATE_CREATED: return "CREATED";
    case TSR_DRIVER_STATE_RUNNING: return "RUNNING";
    case TSR_DRIVER_STATE_STOPPED: return "STOPPED";
    case TSR_DRIVER_STATE_FAILED: return "FAILED";
    }
    return "?";
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: drv_run DRIVER.so [options] OP...\n");
        return 2;
    }
    const char *so = argv[1];
    tsr_driver_env env;
    memset(&env, 0, sizeof env);
    env.data_dir = "/tmp";
    env.supervisor_path = "/usr/local/bin/tessera-supervisor";
    env.gateway_addr = "127.0.0.1:8443";
    env.trust_domain = "tessera.local";
    env.log = log_line;
    const char *keys[MAX_OPTS], *vals[MAX_OPTS];
    char *optbuf[MAX_OPTS];
    size_t nopt = 0;
    const char *ident_dir = NULL, *spiffe_override = NULL, *image = "";
    const char *cmd[MAX_ARGS + 1];
    size_t n_cmd = 0;
    int i = 2;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) {
            fprintf(stderr, "%s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        if (strcmp(a, "--data-dir") == 0) env.data_dir = v;
        else if (strcmp(a, "--supervisor") == 0) env.supervisor_path = v;
        else if (strcmp(a, "--gateway") == 0) env.gateway_addr = v;
        else if (strcmp(a, "--trust-domain") == 0) env.trust_domain = v;
        else if (strcmp(a, "--identity") == 0) ident_dir = v;
        else if (strcmp(a, "--spiffe-id") == 0) spiffe_override = v;
        else if (strcmp(a, "--image") == 0) image = v;
        else if (strcmp(a, "--arg") == 0 && n_cmd < MAX_ARGS) cmd[n_cmd++] = v;
        else if (strcmp(a, "--mint") == 0) {
            mint_dir = v;
            env.mint_identity = mint_identity;
            env.release_identity = release_identity;
        }
        else if (strcmp(a, "--opt") == 0 && nopt < MAX_OPTS) {
            char *kv = strdup(v);
            char *eq = kv != NULL ? strchr(kv, '=') : NULL;
            if (eq == NULL) {
                fprintf(stderr, "--opt wants KEY=VALUE\n");
                free(kv);
                return 2;
            }
            *eq = '\0';
            optbuf[nopt] = kv;
            keys[nopt] = kv;
            vals[nopt] = eq + 1;
            nopt++;
        } else {
            fprintf(stderr, "unknown option %s\n", a);
            return 2;
        }
    }
    env.option_keys = keys;
    env.option_values = vals;
    env.n_options = nopt;

    void *dl = dlopen(so, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (dl == NULL) {
        fprintf(stderr, "dlopen %s: %s\n", so, dlerror());
        return 2;
    }
    tsr_driver_entry_fn entry =
        (tsr_driver_entry_fn)(uintptr_t)dlsym(dl, TSR_DRIVER_ENTRY_SYMBOL);
    const tsr_driver_ops *ops = entry != NULL ? entry() : NULL;
    if (ops == NULL || ops->abi_version != TSR_DRIVER_ABI_VERSION ||
        ops->struct_size != sizeof(tsr_driver_ops)) {
        fprintf(stderr, "%s: no compatible %s\n", so, TSR_DRIVER_ENTRY_SYMBOL);
        return 2;
    }
    char err[1024] = "";
    void *ctx = NULL;
    if (ops->init(&env, &ctx, err, sizeof err) != 0) {
        printf("init: error: %s\n", err);
        dlclose(dl);
        for (size_t k = 0; k < nopt; k++) free(optbuf[k]);
        return 1;
    }
    printf("init: ok %s\n", ops->name);

    int failed = 0;
    for (; i < argc; i++) {
        char op[32];
        const char *colon = strchr(argv[i], ':');
        if (colon == NULL || (size_t)(colon - argv[i]) >= sizeof op) {
            fprintf(stderr, "bad operation %s\n", argv[i]);
            failed = 2;
            break;
        }
        memcpy(op, argv[i], (size_t)(colon - argv[i]));
        op[colon - argv[i]] = '\0';
        const char *id = colon + 1;
        int rc = 0;
        err[0] = '\0';
        cmd[n_cmd] = NULL;
        char spiffe[512];
        snprintf(spiffe, sizeof spiffe, "spiffe://%s/sandbox/%s", env.trust_domain, id);
        tsr_driver_sandbox sb = {id, "drv-run", spiffe_override ? spiffe_override : spiffe,
                                 image, cmd, n_cmd};
        if (strcmp(op, "check") == 0) {
            rc = ops->check(ctx, &sb, err, sizeof err);
        } else if (strcmp(op, "create") == 0) {
            size_t cl = 0, kl = 0, bl = 0;
            char *cert = ident_dir ? slurp(ident_dir, "cert.pem", &cl) : NULL;
            char *key = ident_dir ? slurp(ident_dir, "key.pem", &kl) : NULL;
            char *bundle = ident_dir ? slurp(ident_dir, "bundle.pem", &bl) : NULL;
            tsr_driver_identity ident = {cert, cl, key, kl, bundle, bl};
            rc = ops->create(ctx, &sb, &ident, err, sizeof err);
            if (key != NULL) memset(key, 0, kl);
            free(cert);
            free(key);
            free(bundle);
        } else if (strcmp(op, "start") == 0) {
            rc = ops->start(ctx, id, err, sizeof err);
        } else if (strcmp(op, "stop") == 0) {
            rc = ops->stop(ctx, id, err, sizeof err);
        } else if (strcmp(op, "destroy") == 0) {
            rc = ops->destroy(ctx, id, err, sizeof err);
        } else if (strcmp(op, "status") == 0 || strcmp(op, "detail") == 0) {
            tsr_driver_status st;
            memset(&st, 0, sizeof st);
            st.want_detail = strcmp(op, "detail") == 0;
            rc = ops->status(ctx, id, &st, err, sizeof err);
            if (rc == 0 && !st.want_detail) {
                printf("status %s: %s\n", id, state_name(st.state));
                fflush(stdout);
                continue;
            }
            if (rc == 0) {
                printf("detail %s: %s exit ", id, state_name(st.state));
                if (st.exited) printf("%d\n", st.exit_code);
                else printf("unknown\n");
                for (char *line = st.detail; *line != '\0';) {
                    char *nl = strchr(line, '\n');
                    printf("detail | %.*s\n", (int)(nl ? nl - line : (long)strlen(line)), line);
                    line = nl ? nl + 1 : line + strlen(line);
                }
                fflush(stdout);
                continue;
            }
        } else if (strcmp(op, "sleep") == 0) {
            long ms = atol(id);
            struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
            continue;
        } else {
            fprintf(stderr, "bad operation %s\n", argv[i]);
            failed = 2;
            break;
        }
        if (rc == 0) {
            printf("%s %s: ok\n", op, id);
        } else {
            printf("%s %s: error%s: %s\n", op, id,
                   rc == TSR_DRIVER_PRECONDITION ? " (precondition)"
                   : rc == TSR_DRIVER_INVALID   ? " (invalid)"
                                                : "",
                   err);
            if (failed == 0) failed = 1;
        }
        fflush(stdout);
    }
    ops->fini(ctx);
    dlclose(dl);
    for (size_t k = 0; k < nopt; k++) free(optbuf[k]);
    return failed;
}
