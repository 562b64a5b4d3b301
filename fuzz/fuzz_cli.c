/* The tessera CLI's command line: the global options (before or after the
 * command, never as another option's value), each command's options and
 * arguments, and what it sends. The harness includes cli/cli_main.c (its
 * main renamed) and links the other CLI sources; the commands' cli_call is
 * the harness's: it records the request a command would send and fails as
 * an unreachable gateway. (cli_main.c's own callers, which resolve a name,
 * keep the real one, which finds no PKI: TESSERA_PKI names none, and no
 * argument can name a file outside the working directory.)
 *
 * Input: the arguments, separated by NUL bytes (at most 24; a '/' becomes
 * '_', so no argument names a file outside the working directory; stdin is
 * /dev/null).
 *
 * Invariants, against a reference parser written from docs/cli.md: global
 * options (--addr, --pki, --user, --cert, --key, --bundle, --trust-domain,
 * --timeout, --json, --no-host-check) may come anywhere before "--", except
 * as the value of an option; a command's options take the next argument as
 * their value whatever it looks like. When a command sends a request, the
 * global options in force are the reference's, and RevokeCertificate and
 * CreateSandbox carry the serial, reason, name, driver, image, --env and
 * --secret values and the workload command (after "--") the reference read;
 * a well-formed cert revoke always sends its request. */
#include <fcntl.h>
#include <stdbool.h>
#include <unistd.h>

#include "fuzz/fuzz.h"

/* cli_main.c's main and cli_call renamed: the harness has its own
 * cli_call, which the other CLI sources call. */
int tessera_cli_main(int argc, char **argv);
#define main tessera_cli_main
#define cli_call cli_call_main
#include "cli/cli_main.c"
#undef main
#undef cli_call

int cli_call(cli_ctx *c, const char *method, const ProtobufCMessage *req,
             const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp);

#define MAX_ARGS 24

/* ---- what the commands sent ------------------------------------------------- */

typedef struct sent {
    int calls;
    char method[64];
    bool json, verify_host;
    const char *addr, *pki, *user, *td;
    int64_t timeout_ms;
    ProtobufCMessage *req;   /* a copy (packed and unpacked again) */
} sent;

static sent got;

int cli_call(cli_ctx *c, const char *method, const ProtobufCMessage *req,
             const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp)
{
    (void)resp_desc;
    *resp = NULL;
    if (got.calls++ == 0) {
        snprintf(got.method, sizeof got.method, "%s", method);
        got.json = c->json;
        got.verify_host = c->verify_host;
        got.addr = c->addr_text;
        got.pki = c->pki;
        got.user = c->user;
        got.td = c->trust_domain;
        got.timeout_ms = c->timeout_ms;
        size_t n = protobuf_c_message_get_packed_size(req);
        uint8_t *buf = malloc(n + 1);
        FUZZ_CHECK(buf != NULL && protobuf_c_message_pack(req, buf) == n);
        got.req = protobuf_c_message_unpack(req->descriptor, NULL, n, buf);
        FUZZ_CHECK(got.req != NULL);
        free(buf);
    }
    return cli_fail(c, "fuzz: no gateway");
}

/* ---- the reference ------------------------------------------------------------- */

typedef struct optdef {
    const char *name;
    bool has_arg;
} optdef;

static const optdef globals[] = {
    {"addr", true}, {"pki", true},     {"user", true},         {"cert", true},
    {"key", true},  {"bundle", true},  {"trust-domain", true}, {"timeout", true},
    {"json", false}, {"no-host-check", false}, {NULL, false},
};
enum { R_ADDR, R_PKI, R_USER, R_CERT, R_KEY, R_BUNDLE, R_TD, R_TIMEOUT, R_JSON, R_NOHOST };

/* docs/cli.md's commands and their options. */
static const optdef create_opts[] = {{"policy", true}, {"env", true},   {"secret", true},
                                     {"driver", true}, {"image", true}, {NULL, 0}};
enum { C_POLICY, C_ENV, C_SECRET, C_DRIVER, C_IMAGE };
static const optdef logs_opts[] = {{"since", true}, {"limit", true}, {"follow", false}, {NULL, 0}};
static const optdef revoke_opts[] = {{"reason", true}, {NULL, false}};
static const optdef bundle_opts[] = {{"crl", true}, {"format", true}, {NULL, false}};
static const optdef no_opts[] = {{NULL, false}};

typedef struct model {
    bool ok;                   /* the command line parses */
    const char *global[10];    /* last value of each global with a value */
    bool json, nohost;
    const char *words[2];      /* command, subcommand */
    const char *pos[MAX_ARGS];
    int n_pos;
    int n_pos_before_dd;       /* positionals before "--" */
    const char *reason, *driver, *policy, *image;
    const char *env[MAX_ARGS], *secret[MAX_ARGS];
    int n_env, n_secret;
} model;

static int find(const optdef *defs, const char *name, size_t len)
{
    for (int k = 0; defs != NULL && defs[k].name != NULL; k++)
        if (strlen(defs[k].name) == len && strncmp(defs[k].name, name, len) == 0) return k;
    return -1;
}

static const optdef *opts_of(const model *m)
{
    const char *c = m->words[0], *s = m->words[1];
    if (c == NULL) return NULL;
    if (strcmp(c, "sandbox") == 0 || strcmp(c, "cert") == 0) {
        if (s == NULL) return NULL;
        if (strcmp(c, "sandbox") == 0 && strcmp(s, "create") == 0) return create_opts;
        if (strcmp(c, "cert") == 0 && strcmp(s, "revoke") == 0) return revoke_opts;
        return no_opts;
    }
    if (strcmp(c, "logs") == 0) return logs_opts;
    if (strcmp(c, "bundle") == 0) return bundle_opts;
    return no_opts;
}

static void reference(int argc, char **argv, model *m)
{
    memset(m, 0, sizeof *m);
    m->ok = true;
    bool no_more = false;
    for (int i = 1; i < argc && m->ok; i++) {
        const char *a = argv[i];
        if (!no_more && strcmp(a, "--") == 0) {
            /* Before the command word it is the command ("unknown"). */
            if (m->words[0] == NULL) m->ok = false;
            no_more = true;
            continue;
        }
        if (no_more || a[0] != '-' || a[1] == '\0') {
            bool sub = m->words[0] != NULL && (strcmp(m->words[0], "sandbox") == 0 ||
                                               strcmp(m->words[0], "cert") == 0);
            if (m->words[0] == NULL) m->words[0] = a;
            else if (sub && m->words[1] == NULL) m->words[1] = a;
            else {
                m->pos[m->n_pos++] = a;
                if (!no_more) m->n_pos_before_dd++;
            }
            continue;
        }
        if (a[1] != '-') { /* -h or an unknown short option */
            m->ok = false;
            continue;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t nlen = eq != NULL ? (size_t)(eq - name) : strlen(name);
        const optdef *defs = globals;
        int k = find(globals, name, nlen);
        if (k < 0) {
            defs = opts_of(m);
            k = find(defs, name, nlen);
        }
        if (k < 0 || (!defs[k].has_arg && eq != NULL) ||
            (defs[k].has_arg && eq == NULL && i + 1 >= argc)) {
            m->ok = false;
            continue;
        }
        const char *val = !defs[k].has_arg ? NULL : eq != NULL ? eq + 1 : argv[++i];
        if (defs == globals) {
            if (k == R_JSON) m->json = true;
            else if (k == R_NOHOST) m->nohost = true;
            else m->global[k] = val;
        } else if (defs == create_opts) {
            if (k == C_POLICY) m->policy = val;
            else if (k == C_ENV) m->env[m->n_env++] = val;
            else if (k == C_SECRET) m->secret[m->n_secret++] = val;
            else if (k == C_IMAGE) m->image = val;
            else m->driver = val;
        } else if (defs == revoke_opts) {
            m->reason = val;
        }
    }
}

/* ---- the checks --------------------------------------------------------------- */

static bool same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* A SERIAL as cert revoke takes it: hex in any case, ':' separators
 * dropped, 1 to 40 digits, lowercased. */
static bool serial_of(const char *arg, char out[41])
{
    size_t n = 0;
    for (const char *p = arg; *p; p++) {
        char ch = *p;
        if (ch == ':') continue;
        if (ch >= 'A' && ch <= 'F') ch = (char)(ch - 'A' + 'a');
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')) || n == 40) return false;
        out[n++] = ch;
    }
    out[n] = '\0';
    return n > 0;
}

/* Would the command send a request? Only judged for cert revoke with no
 * global option that takes a value (those are checked by setup). */
static bool must_call(const model *m)
{
    char serial[41];
    if (!m->ok || m->words[0] == NULL || m->words[1] == NULL ||
        strcmp(m->words[0], "cert") != 0 || strcmp(m->words[1], "revoke") != 0)
        return false;
    for (int k = 0; k < 10; k++)
        if (m->global[k] != NULL) return false;
    return m->n_pos == 1 && serial_of(m->pos[0], serial) &&
           (m->reason == NULL || strlen(m->reason) <= 256);
}

static void check_sent(const model *m)
{
    FUZZ_CHECK(m->ok);
    FUZZ_CHECK(got.json == m->json && got.verify_host == !m->nohost);
    if (m->global[R_ADDR] != NULL) FUZZ_CHECK(same(got.addr, m->global[R_ADDR]));
    if (m->global[R_PKI] != NULL) FUZZ_CHECK(same(got.pki, m->global[R_PKI]));
    if (m->global[R_USER] != NULL) FUZZ_CHECK(same(got.user, m->global[R_USER]));
    FUZZ_CHECK(same(got.td, m->global[R_TD]));
    if (m->global[R_TIMEOUT] == NULL) FUZZ_CHECK(got.timeout_ms == 10000);
    if (strcmp(got.method, "RevokeCertificate") == 0) {
        const Tessera__V1__RevokeCertificateRequest *r = (const void *)got.req;
        char serial[41];
        FUZZ_CHECK(m->n_pos == 1 && serial_of(m->pos[0], serial) && strcmp(r->serial, serial) == 0);
        FUZZ_CHECK(strcmp(r->reason, m->reason != NULL ? m->reason : "") == 0);
    } else if (strcmp(got.method, "CreateSandbox") == 0) {
        const Tessera__V1__CreateSandboxRequest *r = (const void *)got.req;
        /* NAME before "--", the workload's argv after it. */
        FUZZ_CHECK(m->n_pos_before_dd == 1 && strcmp(r->name, m->pos[0]) == 0);
        FUZZ_CHECK((int)r->n_command == m->n_pos - 1);
        for (size_t i = 0; i < r->n_command; i++)
            FUZZ_CHECK(strcmp(r->command[i], m->pos[i + 1]) == 0);
        FUZZ_CHECK(strcmp(r->driver, m->driver != NULL ? m->driver : "") == 0);
        FUZZ_CHECK(strcmp(r->image, m->image != NULL ? m->image : "") == 0);
        /* --env: NAME=VALUE as given. */
        FUZZ_CHECK((int)r->n_env == m->n_env);
        for (size_t i = 0; i < r->n_env; i++) {
            const char *e = m->env[i];
            size_t klen = strlen(r->env[i]->key);
            FUZZ_CHECK(strncmp(e, r->env[i]->key, klen) == 0 && e[klen] == '=');
            FUZZ_CHECK(strcmp(r->env[i]->value, e + klen + 1) == 0);
        }
        /* --secret: NAME=VALUE as given, or NAME's value from the environment. */
        FUZZ_CHECK((int)r->n_provider_env == m->n_secret);
        for (size_t i = 0; i < r->n_provider_env; i++) {
            const char *e = m->secret[i];
            size_t klen = strlen(r->provider_env[i]->key);
            FUZZ_CHECK(strncmp(e, r->provider_env[i]->key, klen) == 0);
            const char *v = e[klen] == '=' ? e + klen + 1 : getenv(e);
            FUZZ_CHECK(v != NULL && strcmp(r->provider_env[i]->value, v) == 0);
        }
    }
}

static int null_fd = -1, saved_out = -1, saved_err = -1;

static void setup_once(void)
{
    if (null_fd >= 0) return;
    /* No gateway, no PKI, no stdin. */
    setenv("TESSERA_ADDR", "unix:/nonexistent/tessera-fuzz.sock", 1);
    setenv("TESSERA_PKI", "/nonexistent/tessera-fuzz-pki", 1);
    unsetenv("TESSERA_USER");
    setenv("FUZZ_ENV_VALUE", "from-the-environment", 1);
    FUZZ_CHECK(freopen("/dev/null", "r", stdin) != NULL);
    null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    saved_out = dup(STDOUT_FILENO);
    saved_err = dup(STDERR_FILENO);
    FUZZ_CHECK(null_fd >= 0 && saved_out >= 0 && saved_err >= 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup_once();
    char *copy = malloc(size + 1);
    FUZZ_CHECK(copy != NULL);
    for (size_t i = 0; i < size; i++) copy[i] = data[i] == '/' ? '_' : (char)data[i];
    copy[size] = '\0';
    char *argv[MAX_ARGS + 2], *orig[MAX_ARGS + 2];
    int argc = 0;
    argv[argc++] = (char *)(uintptr_t)"tessera";
    for (size_t off = 0; off < size && argc <= MAX_ARGS; off += strlen(copy + off) + 1)
        argv[argc++] = copy + off;
    argv[argc] = NULL;
    memcpy(orig, argv, sizeof argv);

    model m;
    reference(argc, orig, &m);
    memset(&got, 0, sizeof got);
    fflush(stdout);
    fflush(stderr);
    dup2(null_fd, STDOUT_FILENO);
    dup2(null_fd, STDERR_FILENO);
    int rc = tessera_cli_main(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, STDOUT_FILENO);
    dup2(saved_err, STDERR_FILENO);
    FUZZ_CHECK(rc == CLI_OK || rc == CLI_RPC || rc == CLI_USAGE);
    if (got.calls > 0) {
        check_sent(&m);
        protobuf_c_message_free_unpacked(got.req, NULL);
    } else {
        FUZZ_CHECK(!must_call(&m));
    }
    free(copy);
    return 0;
}
