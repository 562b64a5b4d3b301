/* The process driver, loaded with dlopen as the gateway loads it
 * ($TSR_BUILD_DIR/drivers/process.so). The supervisor it starts is a test
 * double (tests/bin/fake_supervisor) that reports what it sees. Failure
 * cases first. Each test gets a fresh directory under /tmp. */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#include "drv_abi.h"
#include "tu_drv.h"
#include "tu_fs.h"

/* The line each start writes into supervisor.log first (drv_local.h). */
#define DRV_START_MARK "--- tessera: started by the driver ---"

#define TD "tessera.local"
#define GW "127.0.0.1:1"

static char g_build[1024];
static void *g_dl;
static const tsr_driver_ops *g_ops;

/* ---- log capture (the driver logs from any thread) ---------------------------- */

static pthread_mutex_t g_log_mu = PTHREAD_MUTEX_INITIALIZER;
static char g_log[1 << 16];
static size_t g_log_len;

static void log_cb(void *arg, const char *line)
{
    (void)arg;
    pthread_mutex_lock(&g_log_mu);
    size_t n = strlen(line);
    if (g_log_len + n + 2 < sizeof g_log) {
        memcpy(g_log + g_log_len, line, n);
        g_log_len += n;
        g_log[g_log_len++] = '\n';
        g_log[g_log_len] = '\0';
    }
    pthread_mutex_unlock(&g_log_mu);
}

/* ---- fixture ---------------------------------------------------------------------- */

struct inst {
    tsr_driver_env env;
    const char *keys[8];
    const char *vals[8];
    void *ctx;
};

struct fx {
    char dir[128];
    char data[192];
    char sup[1200];
    char probe_arg[256];
};

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof *fx);
    if (fx == NULL) return -1;
    if (tu_temp_path(fx->dir, sizeof fx->dir, "tsr-drvp-XXXXXX") != 0) return -1;
    if (mkdtemp(fx->dir) == NULL) return -1;
    snprintf(fx->data, sizeof fx->data, "%s/data", fx->dir);
    snprintf(fx->sup, sizeof fx->sup, "%s/tests/bin/fake_supervisor", g_build);
    snprintf(fx->probe_arg, sizeof fx->probe_arg, "--probe %s", fx->dir);
    pthread_mutex_lock(&g_log_mu);
    g_log_len = 0;
    g_log[0] = '\0';
    pthread_mutex_unlock(&g_log_mu);
    *state = fx;
    return 0;
}

/* Kill whatever a failed test left running (anything whose command line
 * names this fixture's directory), then remove the directory. */
static void kill_leftovers(const char *needle)
{
    DIR *d = opendir("/proc");
    if (d == NULL) return;
    const struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        if (*end != '\0' || pid <= 1 || pid == (long)getpid()) continue;
        char path[64];
        snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
        size_t n = 0;
        char *cmd = tu_slurp(path, &n);
        if (cmd != NULL && tu_contains(cmd, n, needle, strlen(needle))) kill((pid_t)pid, SIGKILL);
        free(cmd);
    }
    closedir(d);
}

static int teardown(void **state)
{
    struct fx *fx = *state;
    kill_leftovers(fx->dir);
    (void)tu_rm_rf(fx->dir);
    free(fx);
    return 0;
}

/* A driver instance; opts are key, value pairs ending with NULL. */
static int inst_init(struct inst *in, const struct fx *fx, char *err, size_t cap, ...)
{
    memset(in, 0, sizeof *in);
    in->env.data_dir = fx->data;
    in->env.supervisor_path = fx->sup;
    in->env.gateway_addr = GW;
    in->env.trust_domain = TD;
    in->env.log = log_cb;
    va_list ap;
    va_start(ap, cap);
    size_t n = 0;
    const char *k;
    while (n < 8 && (k = va_arg(ap, const char *)) != NULL) {
        in->keys[n] = k;
        in->vals[n] = va_arg(ap, const char *);
        n++;
    }
    va_end(ap);
    in->env.option_keys = in->keys;
    in->env.option_values = in->vals;
    in->env.n_options = n;
    err[0] = '\0';
    return g_ops->init(&in->env, &in->ctx, err, cap);
}

static void inst_fini(struct inst *in)
{
    if (in->ctx != NULL) g_ops->fini(in->ctx);
    in->ctx = NULL;
}

static void must_init(struct inst *in, const struct fx *fx, const char *bwrap, const char *grace,
                      const char *extra)
{
    char err[512];
    int rc = inst_init(in, fx, err, sizeof err, "bubblewrap", bwrap, "stop_grace_ms", grace,
                       "supervisor_args", extra, (const char *)NULL);
    if (rc != 0) fail_msg("init: %s", err);
}

/* The driver's status as a state (NULL: the call with no status at all). */
static int status_of(void *ctx, const char *id, enum tsr_driver_state *state, char *err,
                     size_t cap)
{
    if (state == NULL) return g_ops->status(ctx, id, NULL, err, cap);
    tsr_driver_status st;
    memset(&st, 0, sizeof st);
    int r = g_ops->status(ctx, id, &st, err, cap);
    *state = st.state;
    return r;
}

static enum tsr_driver_state state_of(struct inst *in, const char *id)
{
    enum tsr_driver_state st = (enum tsr_driver_state)99;
    char err[512] = "";
    if (status_of(in->ctx, id, &st, err, sizeof err) != 0) fail_msg("status: %s", err);
    return st;
}

#define OK(call)                                                                               \
    do {                                                                                       \
        char err_[512] = "";                                                                   \
        if ((call) != 0) fail_msg("%s: %s", #call, err_);                                      \
    } while (0)
/* The ops take (…, err, cap) last: E is that pair inside OK(). */
#define E err_, sizeof err_

static void sandbox_of(const char *id, char *spiffe, size_t cap, tsr_driver_sandbox *sb)
{
    snprintf(spiffe, cap, "spiffe://%s/sandbox/%s", TD, id);
    memset(sb, 0, sizeof *sb);
    sb->id = id;
    sb->name = "test";
    sb->spiffe_id = spiffe;
    sb->image = "";
}

static tsr_driver_identity ident_of(const tu_ident *t)
{
    tsr_driver_identity i = {t->cert, t->cert_len, t->key, t->key_len, t->bundle, t->bundle_len};
    return i;
}

static void make_ident(tu_ident *t, const char *id)
{
    char uri[128];
    snprintf(uri, sizeof uri, "spiffe://%s/sandbox/%s", TD, id);
    assert_int_equal(tu_ident_make(t, uri), 0);
}

static void create_ok(struct inst *in, const char *id, tu_ident *t)
{
    char spiffe[128];
    tsr_driver_sandbox sb;
    sandbox_of(id, spiffe, sizeof spiffe, &sb);
    make_ident(t, id);
    tsr_driver_identity ident = ident_of(t);
    OK(g_ops->create(in->ctx, &sb, &ident, E));
}

static void sb_path(const struct fx *fx, const char *id, const char *sub, char *out, size_t cap)
{
    if (sub != NULL) snprintf(out, cap, "%s/sandboxes/%s/%s", fx->data, id, sub);
    else snprintf(out, cap, "%s/sandboxes/%s", fx->data, id);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int count_lines(const char *text, const char *line)
{
    int n = 0;
    size_t l = strlen(line);
    for (const char *p = text; p != NULL && *p != '\0';) {
        const char *e = strchr(p, '\n');
        size_t pl = e != NULL ? (size_t)(e - p) : strlen(p);
        if (pl == l && memcmp(p, line, l) == 0) n++;
        p = e != NULL ? e + 1 : NULL;
    }
    return n;
}

/* supervisor.log once it has `n` "ready" lines (fails after 10 s). */
static char *wait_ready(const struct fx *fx, const char *id, int n)
{
    char path[512];
    sb_path(fx, id, "supervisor.log", path, sizeof path);
    int64_t deadline = now_ms() + 10000;
    for (;;) {
        char *log = tu_slurp(path, NULL);
        if (log != NULL && count_lines(log, "ready") >= n) return log;
        if (now_ms() > deadline) fail_msg("no \"ready\" #%d in %s:\n%s", n, path, log ? log : "");
        free(log);
        sleep_ms(20);
    }
}

static void expect_line(const char *text, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (count_lines(text, line) != 1) fail_msg("expected the line \"%s\" in:\n%s", line, text);
}

/* Live processes whose command line names `id`; each one's command line and
 * environment are checked for key bytes. */
static int procs_with(const char *id, const char *key)
{
    int found = 0;
    DIR *d = opendir("/proc");
    assert_non_null(d);
    const struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        if (*end != '\0' || pid <= 1) continue;
        char path[64];
        snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
        size_t n = 0, en = 0;
        char *cmd = tu_slurp(path, &n);
        if (cmd != NULL && tu_contains(cmd, n, id, strlen(id))) {
            found++;
            if (key != NULL) {
                assert_false(tu_has_key_bytes(cmd, n, key));
                snprintf(path, sizeof path, "/proc/%ld/environ", pid);
                char *env = tu_slurp(path, &en);
                assert_non_null(env);
                assert_false(tu_has_key_bytes(env, en, key));
                assert_false(tu_contains(env, en, "-----BEGIN", 10));
                free(env);
            }
        }
        free(cmd);
    }
    closedir(d);
    return found;
}

static void expect_mode(const char *path, unsigned mode, int dir)
{
    struct stat st;
    if (lstat(path, &st) != 0) fail_msg("stat %s: %s", path, strerror(errno));
    assert_true(dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode));
    if ((st.st_mode & 07777) != mode)
        fail_msg("%s has mode %04o, expected %04o", path, (unsigned)(st.st_mode & 07777), mode);
    assert_int_equal(st.st_uid, getuid());
}

static void expect_file(const char *path, const char *content, size_t len)
{
    size_t n = 0;
    char *got = tu_slurp(path, &n);
    assert_non_null(got);
    assert_int_equal(n, len);
    assert_memory_equal(got, content, len);
    free(got);
}

static void expect_log_clean(const tu_ident *t)
{
    pthread_mutex_lock(&g_log_mu);
    assert_false(tu_has_key_bytes(g_log, g_log_len, t->key));
    pthread_mutex_unlock(&g_log_mu);
}

/* ---- ABI ----------------------------------------------------------------------------- */

static void test_abi(void **state)
{
    (void)state;
    assert_non_null(g_ops);
    assert_int_equal(g_ops->abi_version, TSR_DRIVER_ABI_VERSION);
    assert_int_equal(g_ops->struct_size, sizeof(tsr_driver_ops));
    assert_string_equal(g_ops->name, "process");
    assert_non_null(g_ops->init);
    assert_non_null(g_ops->fini);
    assert_non_null(g_ops->create);
    assert_non_null(g_ops->start);
    assert_non_null(g_ops->stop);
    assert_non_null(g_ops->destroy);
    assert_non_null(g_ops->status);
    /* Only the entry point is exported: helpers and the common modules are
     * hidden inside the .so. */
    assert_null(dlsym(g_dl, "tsr_errmsg"));
    assert_null(dlsym(g_dl, "tsr_write_file_atomic"));
    assert_null(dlsym(g_dl, "proc_ops"));
}

/* ---- failures first ------------------------------------------------------------------ */

static void test_init_refuses(void **state)
{
    struct fx *fx = *state;
    char notexec[256], err[512];
    snprintf(notexec, sizeof notexec, "%s/notexec", fx->dir);
    FILE *f = fopen(notexec, "w");
    assert_non_null(f);
    fclose(f);
    chmod(notexec, 0644);

    struct {
        const char *what, *key, *val, *data, *sup, *gw, *td;
    } cases[] = {
        {"unknown option", "bogus", "1", NULL, NULL, NULL, NULL},
        {"bad bubblewrap", "bubblewrap", "sometimes", NULL, NULL, NULL, NULL},
        {"grace not a number", "stop_grace_ms", "abc", NULL, NULL, NULL, NULL},
        {"negative grace", "stop_grace_ms", "-1", NULL, NULL, NULL, NULL},
        {"grace too large", "stop_grace_ms", "600001", NULL, NULL, NULL, NULL},
        {"start check too large", "start_check_ms", "60001", NULL, NULL, NULL, NULL},
        {"empty grace", "stop_grace_ms", "", NULL, NULL, NULL, NULL},
        {"control char", "supervisor_args", "a\tb", NULL, NULL, NULL, NULL},
        {"relative data dir", NULL, NULL, "data", NULL, NULL, NULL},
        {"missing supervisor", NULL, NULL, NULL, "/nonexistent/tessera-supervisor", NULL, NULL},
        {"relative supervisor", NULL, NULL, NULL, "fake_supervisor", NULL, NULL},
        {"supervisor not executable", NULL, NULL, NULL, notexec, NULL, NULL},
        {"supervisor is a directory", NULL, NULL, NULL, "/usr", NULL, NULL},
        {"gateway without port", NULL, NULL, NULL, NULL, "localhost", NULL},
        {"gateway with space", NULL, NULL, NULL, NULL, "local host:1", NULL},
        {"gateway port not numeric", NULL, NULL, NULL, NULL, "localhost:http", NULL},
        {"gateway list with an empty entry", NULL, NULL, NULL, NULL, "a:1,,b:2", NULL},
        {"gateway list ending in a comma", NULL, NULL, NULL, NULL, "a:1,", NULL},
        {"gateway option without port", "gateway", "a:1,b", NULL, NULL, NULL, NULL},
        {"gateway option of 17", "gateway",
         "h:1,h:2,h:3,h:4,h:5,h:6,h:7,h:8,h:9,h:10,h:11,h:12,h:13,h:14,h:15,h:16,h:17", NULL, NULL,
         NULL, NULL},
        {"uppercase trust domain", NULL, NULL, NULL, NULL, NULL, "Tessera.local"},
        {"empty trust domain", NULL, NULL, NULL, NULL, NULL, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct inst in;
        memset(&in, 0, sizeof in);
        in.env.data_dir = cases[i].data ? cases[i].data : fx->data;
        in.env.supervisor_path = cases[i].sup ? cases[i].sup : fx->sup;
        in.env.gateway_addr = cases[i].gw ? cases[i].gw : GW;
        in.env.trust_domain = cases[i].td ? cases[i].td : TD;
        in.keys[0] = "bubblewrap";
        in.vals[0] = "never";
        size_t n = 1;
        if (cases[i].key != NULL) {
            in.keys[n] = cases[i].key;
            in.vals[n++] = cases[i].val;
        }
        in.env.option_keys = in.keys;
        in.env.option_values = in.vals;
        in.env.n_options = n;
        err[0] = '\0';
        void *ctx = NULL;
        if (g_ops->init(&in.env, &ctx, err, sizeof err) == 0) {
            g_ops->fini(ctx);
            fail_msg("init accepted: %s", cases[i].what);
        }
        assert_true(err[0] != '\0');
        assert_null(strchr(err, '\n'));
    }
    /* The same option twice. */
    struct inst in;
    assert_int_not_equal(inst_init(&in, fx, err, sizeof err, "bubblewrap", "never", "bubblewrap",
                                   "never", (const char *)NULL),
                         0);
    assert_non_null(strstr(err, "twice"));
    /* A NULL environment. */
    void *ctx = NULL;
    assert_int_not_equal(g_ops->init(NULL, &ctx, err, sizeof err), 0);
}

static void expect_no_sandboxes(const struct fx *fx)
{
    char root[512];
    snprintf(root, sizeof root, "%s/sandboxes", fx->data);
    DIR *d = opendir(root);
    assert_non_null(d);
    const struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            fail_msg("left behind: %s/%s", root, de->d_name);
    closedir(d);
}

static void test_create_refuses_bad_identity(void **state)
{
    struct fx *fx = *state;
    struct inst in;
    must_init(&in, fx, "never", "1000", "");
    char id[37], other[37], spiffe[128], err[512];
    tu_uuid(id);
    tu_uuid(other);
    tu_ident good, wrong_san, no_san, other_td, stranger;
    make_ident(&good, id);
    make_ident(&stranger, other);
    char uri[160];
    snprintf(uri, sizeof uri, "spiffe://%s/sandbox/%s", TD, other);
    assert_int_equal(tu_ident_make(&wrong_san, uri), 0);
    assert_int_equal(tu_ident_make(&no_san, NULL), 0);
    snprintf(uri, sizeof uri, "spiffe://other.td/sandbox/%s", id);
    assert_int_equal(tu_ident_make(&other_td, uri), 0);

    char *nul_key = malloc(good.key_len);
    assert_non_null(nul_key);
    memcpy(nul_key, good.key, good.key_len);
    nul_key[40] = '\0';
    size_t big_len = 300 * 1024;
    char *big = malloc(big_len);
    assert_non_null(big);
    memset(big, 'A', big_len);

    tsr_driver_identity g = ident_of(&good);
    struct {
        const char *what;
        const char *id;
        const char *spiffe;
        tsr_driver_identity ident;
    } cases[] = {
        {"id not a UUID", "not-a-uuid", NULL, g},
        {"uppercase id", "AAAAAAAA-1111-4111-8111-111111111111", NULL, g},
        {"path in id", "../../../../../../../../tmp/xxxxxxxxx", NULL, g},
        {"SPIFFE ID of another sandbox", id, "other", g},
        {"leaf names another sandbox", id, NULL, ident_of(&wrong_san)},
        {"leaf without URI SAN", id, NULL, ident_of(&no_san)},
        {"leaf in another trust domain", id, NULL, ident_of(&other_td)},
        {"key of another leaf", id, NULL,
         {good.cert, good.cert_len, stranger.key, stranger.key_len, good.bundle, good.bundle_len}},
        {"empty certificate", id, NULL,
         {good.cert, 0, good.key, good.key_len, good.bundle, good.bundle_len}},
        {"NULL key", id, NULL,
         {good.cert, good.cert_len, NULL, good.key_len, good.bundle, good.bundle_len}},
        {"NUL inside the key", id, NULL,
         {good.cert, good.cert_len, nul_key, good.key_len, good.bundle, good.bundle_len}},
        {"oversized bundle", id, NULL,
         {good.cert, good.cert_len, good.key, good.key_len, big, big_len}},
        {"bundle not PEM", id, NULL,
         {good.cert, good.cert_len, good.key, good.key_len, "not pem", 7}},
        {"truncated certificate", id, NULL,
         {good.cert, good.cert_len / 2, good.key, good.key_len, good.bundle, good.bundle_len}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tsr_driver_sandbox sb;
        char osp[160];
        sandbox_of(cases[i].id, spiffe, sizeof spiffe, &sb);
        if (cases[i].spiffe != NULL) {
            snprintf(osp, sizeof osp, "spiffe://%s/sandbox/%s", TD, other);
            sb.spiffe_id = osp;
        }
        err[0] = '\0';
        if (g_ops->create(in.ctx, &sb, &cases[i].ident, err, sizeof err) == 0)
            fail_msg("create accepted: %s", cases[i].what);
        assert_true(err[0] != '\0');
        assert_false(tu_has_key_bytes(err, strlen(err), good.key));
        expect_no_sandboxes(fx);
    }
    /* No identity at all. */
    tsr_driver_sandbox sb;
    sandbox_of(id, spiffe, sizeof spiffe, &sb);
    assert_int_not_equal(g_ops->create(in.ctx, &sb, NULL, err, sizeof err), 0);
    assert_int_not_equal(g_ops->create(in.ctx, NULL, &g, err, sizeof err), 0);
    expect_no_sandboxes(fx);
    expect_log_clean(&good);

    free(nul_key);
    free(big);
    tu_ident_free(&good);
    tu_ident_free(&stranger);
    tu_ident_free(&wrong_san);
    tu_ident_free(&no_san);
    tu_ident_free(&other_td);
    inst_fini(&in);
}

static void test_status_unknown_and_bad_ids(void **state)
{
    struct fx *fx = *state;
    struct inst in;
    must_init(&in, fx, "never", "1000", "");
    char id[37], err[512];
    tu_uuid(id);
    assert_int_equal(state_of(&in, id), TSR_DRIVER_STATE_UNKNOWN);
    assert_int_not_equal(g_ops->start(in.ctx, id, err, sizeof err), 0);
    assert_non_null(strstr(err, "no such sandbox"));
    assert_int_not_equal(g_ops->stop(in.ctx, id, err, sizeof err), 0);
    OK(g_ops->destroy(in.ctx, id, E)); /* nothing to destroy: done */

    const char *bad[] = {"", "x", "../etc", "11111111-1111-4111-8111-11111111111",
                         "11111111-1111-4111-8111-1111111111111",
                         "11111111_1111-4111-8111-111111111111", NULL};
    for (size_t i = 0; bad[i] != NULL; i++) {
        enum tsr_driver_state st;
        assert_int_not_equal(status_of(in.ctx, bad[i], &st, err, sizeof err), 0);
        assert_int_not_equal(g_ops->start(in.ctx, bad[i], err, sizeof err), 0);
        assert_int_not_equal(g_ops->stop(in.ctx, bad[i], err, sizeof err), 0);
        assert_int_not_equal(g_ops->destroy(in.ctx, bad[i], err, sizeof err), 0);
    }
    assert_int_not_equal(status_of(in.ctx, NULL, NULL, err, sizeof err), 0);
    inst_fini(&in);
}

static void test_exec_failure_plain(void **state)
{
    struct fx *fx = *state;
    /* Executable bit, but not a program: execve fails with ENOEXEC. */
    snprintf(fx->sup, sizeof fx->sup, "%s/not-a-program", fx->dir);
    FILE *f = fopen(fx->sup, "w");
    assert_non_null(f);
    fputs("\x01\x02garbage\n", f);
    fclose(f);
    chmod(fx->sup, 0755);
    struct inst in;
    must_init(&in, fx, "never", "1000", "");
    char id[37], err[512];
    tu_uuid(id);
    tu_ident t;
    create_ok(&in, id, &t);
    assert_int_not_equal(g_ops->start(in.ctx, id, err, sizeof err), 0);
    assert_non_null(strstr(err, "exec"));
    assert_non_null(strstr(err, strerror(ENOEXEC)));
    assert_int_equal(state_of(&in, id), TSR_DRIVER_STATE_CREATED);
    OK(g_ops->destroy(in.ctx, id, E));
    tu_ident_free(&t);
    inst_fini(&in);
}

/* A supervisor that dies on its arguments: start reports it (both modes). */
static void test_supervisor_exits_at_once(void **state)
{
    struct fx *fx = *state;
    const char *modes[2] = {"never", "always"};
    for (int m = 0; m < 2; m++) {
        if (m == 1 && access("/usr/bin/bwrap", X_OK) != 0) continue;
        struct inst in;
        char err[512];
        /* A generous window: the supervisor is slow to start under ASan. */
        if (inst_init(&in, fx, err, sizeof err, "bubblewrap", modes[m], "start_check_ms", "5000",
                      "supervisor_args", "--no-such-flag", (const char *)NULL) != 0)
            fail_msg("init: %s", err);
        char id[37];
        tu_uuid(id);
        tu_ident t;
        create_ok(&in, id, &t);
        assert_int_not_equal(g_ops->start(in.ctx, id, err, sizeof err), 0);
        assert_non_null(strstr(err, "exited at once"));
        assert_non_null(strstr(err, "supervisor.log"));
        assert_int_equal(state_of(&in, id), TSR_DRIVER_STATE_CREATED);
        assert_int_equal(procs_with(id, NULL), 0);
        OK(g_ops->destroy(in.ctx, id, E));
        tu_ident_free(&t);
        inst_fini(&in);
    }
}

static void test_bwrap_setup_failure(void **state)
{
    struct fx *fx = *state;
    if (access("/usr/bin/bwrap", X_OK) != 0) skip();
    /* The supervisor disappears after init: bwrap cannot bind it and exits
     * before reporting; start says so and leaves nothing running. */
    char copy[256], cmd[1800];
    snprintf(copy, sizeof copy, "%s/sup-copy", fx->dir);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", fx->sup, copy);
    assert_int_equal(system(cmd), 0);
    strcpy(fx->sup, copy);
    struct inst in;
    must_init(&in, fx, "always", "1000", "");
    char id[37], err[512];
    tu_uuid(id);
    tu_ident t;
    create_ok(&in, id, &t);
    assert_int_equal(unlink(copy), 0);
    assert_int_not_equal(g_ops->start(in.ctx, id, err, sizeof err), 0);
    assert_non_null(strstr(err, "exited at once"));
    assert_int_equal(state_of(&in, id), TSR_DRIVER_STATE_CREATED);
    assert_int_equal(procs_with(id, NULL), 0);
    OK(g_ops->destroy(in.ctx, id, E));
    tu_ident_free(&t);
    inst_fini(&in);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_pidfile_reuse_and_corrupt(void **state)
{
    struct fx *fx = *state;
    struct inst in;
    must_init(&in, fx, "never", "1000", "");
    char id[37], pidp[512], line[128];
    tu_uuid(id);
    tu_ident t;
    create_ok(&in, id, &t);
    sb_path(fx, id, "pid", pidp, sizeof pidp);

    /* A live PID with another start time: the PID was reused, not ours. */
    snprintf(line, sizeof line, "%ld 1 plain\n", (long)getppid());
    write_text(pidp, line);
    assert_int_equal(state_of(&in, id), TSR_DRIVER_STATE_STOPPED);

    const char *corrupt[] = {"", "garbage\n", "123\n", "123 456\n", "123 456 plain",
                             "123 456 plain\nextra", "-5 456 plain\n", "0 456 plain\n",
                             "123 456 PLAIN\n", "99999999999999999999999 1 plain\n", NULL};
    for (size_t i = 0; corrupt[i] != NULL; i++) {
        write_text(pidp, corrupt[i]);
        if (state_of(&in, id) != TSR_DRIVER_STATE_FAILED)
            fail_msg("pid file \"%s\" not reported as FAILED", corrupt[i]);
    }
    /* A reused PID never gets signalled: start runs a new supervisor. */
    snprintf(line, sizeof line, "%ld 1 plain\n", (long)getpid());
    write_text(pidp, line);
    OK(g_ops->start(in.ctx, id, E));
    assert_int_equal(state_of(&in, id), TSR_DRIVER_STATE_RUNNING);
    free(wait_ready(fx, id, 1));
    OK(g_ops->destroy(in.ctx, id, E));
    tu_ident_free(&t);
    inst_fini(&in);
}

/* ---- layout and lifecycle -------------------------------------------------------------- */

static void test_create_layout(void **state)
{
    struct fx *fx = *state;
    struct inst in;
    must_init(&in, fx, "never", "1000", "");
    char id[37], p[512], err[512], spiffe[128];
    tu_uuid(id);
    tu_ident t;
    create_ok(&in, id, &t);

    sb_path(fx, id, NULL, p, sizeof p);
    expect_mode(p, 0700, 1);
    sb_path(fx, id, "identity", p, sizeof p);
    expect_mode(p, 0700, 1);
    sb_path(fx, id, "workspace", p, sizeof p);
    expect_mode(p, 01777, 1); /* the workload runs as another uid */
    sb_path(fx, id, "identity/cert.pem", p, sizeof p);
    expect_mode(p, 0600, 0);
    expect_file(p, t.cert, t.cert_len);
    sb_path(fx, id, "identity/key.pem", p, sizeof p);
    expect_mode(p, 0600, 0);
    expect_file(p, t.key, t.key_len);
    sb_path(fx, id, "identity/bundle.pem", p, sizeof p);
    expect_mode(p, 0600, 0);
    expect_file(p, t.bundle, t.bundle_len);
    /* Exactly these entries: no stray temp files. */
    sb_path(fx, id, "identity", p, sizeof p);
    DIR *d = opendir(p);
    assert_non_null(d);
    int n = 0;
    const struct dirent *de;
    while ((de = readdir(d)) != NULL) n += de->d_name[0] != '.';
    closedir(d);
    assert_int_equal(n, 3);
    sb_path(fx, id, "driver", p, sizeof p);
    expect_mode(p, 0600, 0);
    expect_file(p, "process\n", 8);
    sb_path(fx, id, "pid", p, sizeof p);
    assert_int_not_equal(access(p, F_OK), 0);
    assert_int_equal(state_of(&in, id), TSR_DRIVER_STATE_CREATED);

    /* Another driver's sandbox (the vm driver shares the directory) is not
     * touched: every operation refuses it, destroy included. */
    sb_path(fx, id, "driver", p, sizeof p);
    write_text(p, "vm\n");
    enum tsr_driver_state st;
    assert_int_not_equal(status_of(in.ctx, id, &st, err, sizeof err), 0);
    assert_non_null(strstr(err, "is not a process sandbox (driver: vm)"));
    assert_int_not_equal(g_ops->start(in.ctx, id, err, sizeof err), 0);
    assert_int_not_equal(g_ops->stop(in.ctx, id, err, sizeof err), 0);
    assert_int_not_equal(g_ops->destroy(in.ctx, id, err, sizeof err), 0);
    sb_path(fx, id, "identity/key.pem", p, sizeof p);
    expect_file(p, t.key, t.key_len);
    sb_path(fx, id, "driver", p, sizeof p);
    assert_int_equal(unlink(p), 0);
    assert_int_not_equal(status_of(in.ctx, id, &st, err, sizeof err), 0);
    assert_non_null(strstr(err, "(driver: none)"));
    write_text(p, "process\n");
    assert_int_equal(state_of(&in, id), TSR_DRIVER_STATE_CREATED);

    /* The same id again is refused and leaves the first one intact. */
    tsr_driver_sandbox sb;
    sandbox_of(id, spiffe, sizeof spiffe, &sb);
    tsr_driver_identity ident = ident_of(&t);
    assert_int_not_equal(g_ops->create(in.ctx, &sb, &ident, err, sizeof err), 0);
    assert_non_null(strstr(err, "already exists"));
    sb_path(fx, id, "identity/key.pem", p, sizeof p);
    expect_file(p, t.key, t.key_len);

    /* stop of a sandbox never started is a no-op. */
    OK(g_ops->stop(in.ctx, id, E));
    assert_int_equal(state_of(&in, id), TSR_DRIVER_STATE_CREATED);
    OK(g_ops->destroy(in.ctx, id, E));
    sb_path(fx, id, NULL, p, sizeof p);
    assert_int_not_equal(access(p, F_OK), 0);
    assert_int_equal(state_of(&in, id), TSR_DRIVER_STATE_UNKNOWN);
    expect_no_sandboxes(fx);
    expect_log_clean(&t);
    tu_ident_free(&t);
    inst_fini(&in);
}

static void lifecycle(struct fx *fx, const char *mode)
{
    int bw = strcmp(mode, "always") == 0;
    if (bw && access("/usr/bin/bwrap", X_OK) != 0) skip();
    struct inst a, b;
    must_init(&a, fx, mode, "3000", fx->probe_arg);
    char id[37], p[512], sbdir[512];
    tu_uuid(id);
    tu_ident t;
    create_ok(&a, id, &t);
    sb_path(fx, id, NULL, sbdir, sizeof sbdir);

    OK(g_ops->start(a.ctx, id, E));
    assert_int_equal(state_of(&a, id), TSR_DRIVER_STATE_RUNNING);
    char *log = wait_ready(fx, id, 1);
    expect_line(log, "spiffe_id=spiffe://%s/sandbox/%s", TD, id);
    expect_line(log, "key_matches_cert=1");
    expect_line(log, "dir_mode=0700");
    expect_line(log, "dir_mode_owner_is_me=1");
    expect_line(log, "key_mode=0600");
    expect_line(log, "key_mode_owner_is_me=1");
    expect_line(log, "cert_mode=0600");
    expect_line(log, "bundle_mode=0600");
    expect_line(log, "env_has_key=0");
    expect_line(log, "cmdline_has_key=0");
    expect_line(log, "env_has_pem=0");
    expect_line(log, "extra_fds=0");
    /* bwrap --chdir adds PWD; nothing else reaches the supervisor. */
    expect_line(log, bw ? "env_names=HOME,PATH,PWD" : "env_names=HOME,PATH");
    expect_line(log, "gateway=%s", GW);
    expect_line(log, "trust_domain=%s", TD);
    expect_line(log, "sandbox_id=%s", id);
    expect_line(log, "uid=%u", (unsigned)getuid());
    if (bw) {
        expect_line(log, "identity_dir=/run/tessera/identity");
        expect_line(log, "cwd=/workspace");
        expect_line(log, "hostname=tessera");
        expect_line(log, "pid=2"); /* its own pid namespace */
        /* The host's files (this test's directory, the data dir with every
         * other sandbox's identity) are not visible inside. */
        expect_line(log, "probe %s=0", fx->dir);
    } else {
        expect_line(log, "identity_dir=%s/identity", sbdir);
        expect_line(log, "cwd=%s/workspace", sbdir);
        expect_line(log, "probe %s=1", fx->dir);
    }
    free(log);
    /* No process of the sandbox carries key bytes in argv or environ. */
    assert_true(procs_with(id, t.key) >= (bw ? 3 : 1));

    sb_path(fx, id, "pid", p, sizeof p);
    char *pid1 = tu_slurp(p, NULL);
    assert_non_null(pid1);
    assert_non_null(strstr(pid1, bw ? " bwrap\n" : " plain\n"));

    /* A second driver instance (a restarted gateway) sees it running and
     * does not start another supervisor. */
    must_init(&b, fx, mode, "3000", fx->probe_arg);
    assert_int_equal(state_of(&b, id), TSR_DRIVER_STATE_RUNNING);
    OK(g_ops->start(b.ctx, id, E));
    char *pid2 = tu_slurp(p, NULL);
    assert_non_null(pid2);
    assert_string_equal(pid1, pid2);
    free(pid2);
    sleep_ms(300);
    log = wait_ready(fx, id, 1);
    assert_int_equal(count_lines(log, "ready"), 1);
    free(log);
    inst_fini(&b);

    OK(g_ops->stop(a.ctx, id, E));
    assert_int_equal(state_of(&a, id), TSR_DRIVER_STATE_STOPPED);
    sb_path(fx, id, "supervisor.log", p, sizeof p);
    log = tu_slurp(p, NULL);
    assert_non_null(log);
    assert_int_equal(count_lines(log, "got SIGTERM"), 1);
    free(log);
    assert_int_equal(procs_with(id, NULL), 0);
    OK(g_ops->stop(a.ctx, id, E)); /* stopping a stopped sandbox: no-op */

    /* Start again: a new supervisor with the same identity. */
    OK(g_ops->start(a.ctx, id, E));
    assert_int_equal(state_of(&a, id), TSR_DRIVER_STATE_RUNNING);
    free(wait_ready(fx, id, 2));
    sb_path(fx, id, "pid", p, sizeof p);
    pid2 = tu_slurp(p, NULL);
    assert_non_null(pid2);
    assert_string_not_equal(pid1, pid2);
    free(pid1);
    free(pid2);

    /* Destroy a running sandbox: stopped, every file gone. */
    OK(g_ops->destroy(a.ctx, id, E));
    assert_int_not_equal(access(sbdir, F_OK), 0);
    assert_int_equal(state_of(&a, id), TSR_DRIVER_STATE_UNKNOWN);
    assert_int_equal(procs_with(id, NULL), 0);
    OK(g_ops->destroy(a.ctx, id, E));
    expect_no_sandboxes(fx);
    expect_log_clean(&t);
    tu_ident_free(&t);
    inst_fini(&a);
}

static void test_lifecycle_plain(void **state)
{
    lifecycle(*state, "never");
}

static void test_lifecycle_bwrap(void **state)
{
    lifecycle(*state, "always");
}

static void stop_escalates(struct fx *fx, const char *mode)
{
    if (strcmp(mode, "always") == 0 && access("/usr/bin/bwrap", X_OK) != 0) skip();
    struct inst in;
    must_init(&in, fx, mode, "300", "--ignore-term");
    char id[37], p[512];
    tu_uuid(id);
    tu_ident t;
    create_ok(&in, id, &t);
    OK(g_ops->start(in.ctx, id, E));
    free(wait_ready(fx, id, 1));
    int64_t t0 = now_ms();
    OK(g_ops->stop(in.ctx, id, E));
    int64_t took = now_ms() - t0;
    assert_true(took >= 300);
    assert_true(took < 5000);
    assert_int_equal(state_of(&in, id), TSR_DRIVER_STATE_STOPPED);
    assert_int_equal(procs_with(id, NULL), 0);
    sb_path(fx, id, "supervisor.log", p, sizeof p);
    char *log = tu_slurp(p, NULL);
    assert_non_null(log);
    assert_true(count_lines(log, "ignoring SIGTERM") >= 1);
    assert_int_equal(count_lines(log, "got SIGTERM"), 0);
    free(log);
    OK(g_ops->destroy(in.ctx, id, E));
    tu_ident_free(&t);
    inst_fini(&in);
}

static void test_stop_escalates_plain(void **state)
{
    stop_escalates(*state, "never");
}

static void test_stop_escalates_bwrap(void **state)
{
    stop_escalates(*state, "always");
}

/* The workload: check refuses an image; the command create keeps goes to the
 * supervisor as its argv after "--" (each argument as it is), after its own
 * flags, --driver process --enforced none and supervisor_args' flags; a
 * sandbox without one gets supervisor_args' default. After it ended, status
 * asked for detail gives this run's lines (after the driver's start mark). */
/* The gateway option (replicas): one --gateway per address, in order. */
static void test_gateway_list(void **state)
{
    struct fx *fx = *state;
    struct inst in;
    char err[512];
    if (inst_init(&in, fx, err, sizeof err, "bubblewrap", "never", "gateway",
                  "127.0.0.1:9001,gw-b.example:9002,[::1]:9003", (const char *)NULL) != 0)
        fail_msg("init: %s", err);
    char id[37];
    tu_uuid(id);
    tu_ident t;
    create_ok(&in, id, &t);
    OK(g_ops->start(in.ctx, id, E));
    char *log = wait_ready(fx, id, 1);
    expect_line(log, "gateway=127.0.0.1:9001");
    expect_line(log, "gateway=gw-b.example:9002");
    expect_line(log, "gateway=[::1]:9003");
    assert_int_equal(count_lines(log, "gateway=" GW), 0);   /* the option, not the default */
    free(log);
    OK(g_ops->stop(in.ctx, id, E));
    OK(g_ops->destroy(in.ctx, id, E));
    tu_ident_free(&t);
    inst_fini(&in);
}

static void test_workload_argv_and_detail(void **state)
{
    struct fx *fx = *state;
    struct inst in;
    must_init(&in, fx, "never", "1000", "--probe /tmp -- /default/workload x");
    char id[37], id2[37], spiffe[128], err[512];
    tu_uuid(id);
    tu_uuid(id2);
    tsr_driver_sandbox sb;
    sandbox_of(id, spiffe, sizeof spiffe, &sb);
    sb.image = "debian:12";
    assert_int_equal(g_ops->check(in.ctx, &sb, err, sizeof err), TSR_DRIVER_INVALID);
    assert_string_equal(err, "process: image: the process driver runs no images (a process "
                             "sandbox runs this host's programs); leave image empty or use the "
                             "docker or vm driver");
    static const char *const cmd[] = {"/bin/sh", "-c", "echo \"a b\"; exit 3", "", "--", NULL};
    sb.image = "";
    sb.command = cmd;
    sb.n_command = 5;
    assert_int_equal(g_ops->check(in.ctx, &sb, err, sizeof err), TSR_DRIVER_OK);
    tu_ident t, t2;
    make_ident(&t, id);
    tsr_driver_identity ident = ident_of(&t);
    OK(g_ops->create(in.ctx, &sb, &ident, E));
    char p[512];
    sb_path(fx, id, "command", p, sizeof p);
    size_t n = 0;
    char *kept = tu_slurp(p, &n);
    assert_non_null(kept);
    assert_int_equal(n, 34);
    assert_memory_equal(kept, "/bin/sh\0-c\0echo \"a b\"; exit 3\0\0--\0", 34);
    free(kept);
    OK(g_ops->start(in.ctx, id, E));
    char *log = wait_ready(fx, id, 1);
    expect_line(log, "driver=process");
    expect_line(log, "enforced=none");
    expect_line(log, "command[0]=/bin/sh");
    expect_line(log, "command[1]=-c");
    expect_line(log, "command[2]=echo \"a b\"; exit 3");
    expect_line(log, "command[3]=");
    expect_line(log, "command[4]=--");
    assert_int_equal(count_lines(log, "command[5]=/default/workload"), 0);
    assert_int_equal(count_lines(log, DRV_START_MARK), 1);
    expect_line(log, "probe /tmp=1"); /* supervisor_args' flags, before the workload */
    free(log);
    OK(g_ops->stop(in.ctx, id, E));
    tsr_driver_status st;
    memset(&st, 0, sizeof st);
    st.want_detail = 1;
    OK(g_ops->status(in.ctx, id, &st, E));
    assert_int_equal(st.state, TSR_DRIVER_STATE_STOPPED);
    assert_int_equal(st.exited, 0); /* the double says nothing of its exit */
    assert_non_null(strstr(st.detail, "ready\n"));
    assert_true(strlen(st.detail) > 0 && st.detail[strlen(st.detail) - 1] != '\n');
    assert_non_null(strstr(st.detail, "got SIGTERM"));
    assert_null(strstr(st.detail, DRV_START_MARK));
    /* Without want_detail, none. */
    memset(&st, 0, sizeof st);
    OK(g_ops->status(in.ctx, id, &st, E));
    assert_string_equal(st.detail, "");
    OK(g_ops->destroy(in.ctx, id, E));

    /* No command: supervisor_args' default workload. */
    create_ok(&in, id2, &t2);
    OK(g_ops->start(in.ctx, id2, E));
    log = wait_ready(fx, id2, 1);
    expect_line(log, "command[0]=/default/workload");
    expect_line(log, "command[1]=x");
    free(log);
    OK(g_ops->destroy(in.ctx, id2, E));
    tu_ident_free(&t);
    tu_ident_free(&t2);
    inst_fini(&in);
}

static void test_destroy_does_not_follow_symlinks(void **state)
{
    struct fx *fx = *state;
    struct inst in;
    must_init(&in, fx, "never", "1000", "");
    char id[37], ws[512], p[768], outside[256], outdir[256], cmd[2400];
    tu_uuid(id);
    tu_ident t;
    create_ok(&in, id, &t);
    snprintf(outside, sizeof outside, "%s/outside.txt", fx->dir);
    snprintf(outdir, sizeof outdir, "%s/outdir", fx->dir);
    write_text(outside, "keep me");
    assert_int_equal(mkdir(outdir, 0700), 0);
    snprintf(p, sizeof p, "%s/file", outdir);
    write_text(p, "keep me too");

    /* What a workload could leave in its workspace. */
    sb_path(fx, id, "workspace", ws, sizeof ws);
    snprintf(p, sizeof p, "%s/link-to-file", ws);
    assert_int_equal(symlink(outside, p), 0);
    snprintf(p, sizeof p, "%s/link-to-dir", ws);
    assert_int_equal(symlink(outdir, p), 0);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/a/b/c' && echo x > '%s/a/b/c/f' && chmod 0500 '%s/a/b'"
                              " && chmod 0 '%s/a/b/c'",
             ws, ws, ws, ws);
    assert_int_equal(system(cmd), 0);

    OK(g_ops->destroy(in.ctx, id, E));
    sb_path(fx, id, NULL, p, sizeof p);
    assert_int_not_equal(access(p, F_OK), 0);
    expect_file(outside, "keep me", 7);
    snprintf(p, sizeof p, "%s/file", outdir);
    expect_file(p, "keep me too", 11);
    expect_no_sandboxes(fx);
    tu_ident_free(&t);
    inst_fini(&in);
}

/* ---- concurrency ------------------------------------------------------------------------- */

struct worker {
    struct inst *in;
    const struct fx *fx;
    char ids[5][37];
    tu_ident idents[5];
    int failures;
    char why[640];
    pthread_barrier_t *barrier;
};

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    char err[512], spiffe[128];
    pthread_barrier_wait(w->barrier);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 5; i++) {
            tsr_driver_sandbox sb;
            sandbox_of(w->ids[i], spiffe, sizeof spiffe, &sb);
            tsr_driver_identity ident = ident_of(&w->idents[i]);
            if (g_ops->create(w->in->ctx, &sb, &ident, err, sizeof err) != 0) {
                w->failures++;
                snprintf(w->why, sizeof w->why, "create: %s", err);
            }
            enum tsr_driver_state st;
            if (status_of(w->in->ctx, w->ids[i], &st, err, sizeof err) != 0 ||
                st != TSR_DRIVER_STATE_CREATED) {
                w->failures++;
                snprintf(w->why, sizeof w->why, "status after create: %d %s", (int)st, err);
            }
        }
        for (int i = 0; i < 5; i++) {
            enum tsr_driver_state st;
            if (g_ops->destroy(w->in->ctx, w->ids[i], err, sizeof err) != 0) {
                w->failures++;
                snprintf(w->why, sizeof w->why, "destroy: %s", err);
            }
            if (status_of(w->in->ctx, w->ids[i], &st, err, sizeof err) != 0 ||
                st != TSR_DRIVER_STATE_UNKNOWN) {
                w->failures++;
                snprintf(w->why, sizeof w->why, "status after destroy: %d", (int)st);
            }
        }
    }
    return NULL;
}

static void test_concurrent_create_destroy(void **state)
{
    struct fx *fx = *state;
    struct inst in;
    must_init(&in, fx, "never", "1000", "");
    struct worker w[4];
    pthread_t th[4];
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, 4);
    memset(w, 0, sizeof w);
    for (int i = 0; i < 4; i++) {
        w[i].in = &in;
        w[i].fx = fx;
        w[i].barrier = &barrier;
        for (int j = 0; j < 5; j++) {
            tu_uuid(w[i].ids[j]);
            make_ident(&w[i].idents[j], w[i].ids[j]);
        }
    }
    for (int i = 0; i < 4; i++) assert_int_equal(pthread_create(&th[i], NULL, worker_run, &w[i]), 0);
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&barrier);
    for (int i = 0; i < 4; i++) {
        if (w[i].failures != 0) fail_msg("worker %d: %d failures, last: %s", i, w[i].failures, w[i].why);
        for (int j = 0; j < 5; j++) tu_ident_free(&w[i].idents[j]);
    }
    expect_no_sandboxes(fx);
    inst_fini(&in);
}

struct racer {
    struct inst *in;
    const char *id;
    tu_ident *t;
    int create_rc, destroy_rc;
    char err[512];
    pthread_barrier_t *barrier;
};

static void *racer_run(void *arg)
{
    struct racer *r = arg;
    char spiffe[128], err[512];
    tsr_driver_sandbox sb;
    sandbox_of(r->id, spiffe, sizeof spiffe, &sb);
    tsr_driver_identity ident = ident_of(r->t);
    pthread_barrier_wait(r->barrier);
    r->create_rc = g_ops->create(r->in->ctx, &sb, &ident, r->err, sizeof r->err);
    pthread_barrier_wait(r->barrier);
    r->destroy_rc = g_ops->destroy(r->in->ctx, r->id, err, sizeof err);
    return NULL;
}

/* Four threads create the same sandbox: exactly one wins, the others are
 * told it exists; then all four destroy it: all succeed, nothing is left. */
static void test_concurrent_same_id(void **state)
{
    struct fx *fx = *state;
    struct inst in;
    must_init(&in, fx, "never", "1000", "");
    char id[37];
    tu_uuid(id);
    tu_ident t;
    make_ident(&t, id);
    for (int round = 0; round < 5; round++) {
        struct racer r[4];
        pthread_t th[4];
        pthread_barrier_t barrier;
        pthread_barrier_init(&barrier, NULL, 4);
        for (int i = 0; i < 4; i++) {
            memset(&r[i], 0, sizeof r[i]);
            r[i].in = &in;
            r[i].id = id;
            r[i].t = &t;
            r[i].barrier = &barrier;
            assert_int_equal(pthread_create(&th[i], NULL, racer_run, &r[i]), 0);
        }
        int won = 0;
        for (int i = 0; i < 4; i++) {
            pthread_join(th[i], NULL);
            if (r[i].create_rc == 0) won++;
            else assert_non_null(strstr(r[i].err, "already exists"));
            assert_int_equal(r[i].destroy_rc, 0);
        }
        pthread_barrier_destroy(&barrier);
        assert_int_equal(won, 1);
        assert_int_equal(state_of(&in, id), TSR_DRIVER_STATE_UNKNOWN);
        expect_no_sandboxes(fx);
    }
    tu_ident_free(&t);
    inst_fini(&in);
}

int main(void)
{
    const char *b = getenv("TSR_BUILD_DIR");
    snprintf(g_build, sizeof g_build, "%s", b != NULL && b[0] != '\0' ? b : "build");
    char so[1200];
    snprintf(so, sizeof so, "%s/drivers/process.so", g_build);
    g_dl = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    if (g_dl == NULL) {
        fprintf(stderr, "dlopen %s: %s\n", so, dlerror());
        return 1;
    }
    tsr_driver_entry_fn entry = (tsr_driver_entry_fn)(uintptr_t)dlsym(g_dl, TSR_DRIVER_ENTRY_SYMBOL);
    if (entry == NULL) {
        fprintf(stderr, "%s: no %s\n", so, TSR_DRIVER_ENTRY_SYMBOL);
        return 1;
    }
    g_ops = entry();

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_abi),
        cmocka_unit_test_setup_teardown(test_init_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_refuses_bad_identity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_unknown_and_bad_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_failure_plain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_supervisor_exits_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bwrap_setup_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pidfile_reuse_and_corrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lifecycle_plain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lifecycle_bwrap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_escalates_plain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_escalates_bwrap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_workload_argv_and_detail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gateway_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_does_not_follow_symlinks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_create_destroy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_same_id, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    dlclose(g_dl);
    return rc;
}
