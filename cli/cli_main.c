/* tessera: the operator CLI. Global options, dispatch, the connection and
 * error reporting. See docs/cli.md. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ca_spiffe.h"
#include "cli.h"
#include "tsr_time.h"
#include "tsr_version.h"

#define DEFAULT_ADDR "127.0.0.1:8443"
#define DEFAULT_PKI "var/pki"
#define DEFAULT_USER "admin"
#define DEFAULT_TIMEOUT_MS 10000
#define CONNECT_TIMEOUT_MS 5000

static const char main_help[] =
    "usage: tessera [GLOBAL OPTIONS] COMMAND [ARGS]\n"
    "\n"
    "Operate a Tessera gateway over mTLS with an operator certificate.\n"
    "\n"
    "Commands:\n"
    "  sandbox create NAME [--policy FILE] [--env KEY=VALUE]... [--driver NAME]\n"
    "  sandbox list\n"
    "  sandbox get NAME|ID\n"
    "  sandbox delete NAME|ID\n"
    "  logs SANDBOX [--since SEQ] [--limit N] [--follow]\n"
    "  cert list SANDBOX\n"
    "  cert revoke SERIAL [--reason TEXT]\n"
    "  bundle                 print the gateway's trust bundle (PEM)\n"
    "  health                 check the gateway (no certificate needed)\n"
    "SANDBOX is a name or an id (a lowercase UUID is an id).\n"
    "\n"
    "Global options (also accepted after the command):\n"
    "  --addr HOST:PORT       gateway address, or unix:PATH (env TESSERA_ADDR;\n"
    "                         default " DEFAULT_ADDR ")\n"
    "  --pki DIR              PKI directory from certgen (env TESSERA_PKI; default " DEFAULT_PKI
    ")\n"
    "  --user NAME            operator certificate DIR/users/NAME.pem + .key\n"
    "                         (env TESSERA_USER; default " DEFAULT_USER ")\n"
    "  --cert FILE --key FILE another client certificate chain and key\n"
    "  --bundle FILE          trust bundle (default DIR/bundle.pem)\n"
    "  --trust-domain TD      trust domain of the gateway's SPIFFE ID\n"
    "                         (default " CL_TLS_DEFAULT_TRUST_DOMAIN ")\n"
    "  --timeout DURATION     per call, e.g. 10s, 1m (default 10s)\n"
    "  --no-host-check        accept a gateway certificate without a DNS/IP SAN\n"
    "                         for the address (its SPIFFE ID is still checked)\n"
    "  --json                 one JSON document on stdout instead of tables\n"
    "  -h, --help             this help; COMMAND --help for a command's\n"
    "  -V, --version          version, git describe and OpenSSL version\n"
    "\n"
    "Exit status: 0 success, 1 the call failed (the gRPC status is printed),\n"
    "2 usage error.\n";

/* ---- arguments ------------------------------------------------------------- */

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("tessera: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nRun 'tessera%s%s --help' for usage.\n", cmd != NULL ? " " : "",
            cmd != NULL ? cmd : "");
    return CLI_USAGE;
}

int cli_fail(cli_ctx *c, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fputs("tessera: ", stderr);
    cli_puts_safe(stderr, msg);
    fputc('\n', stderr);
    if (c != NULL && c->json) {
        cli_json j;
        cj_begin(&j, stdout);
        cj_obj(&j, "error");
        cj_str(&j, "status", "LOCAL");
        cj_str(&j, "message", msg);
        cj_close_obj(&j);
        cj_end(&j);
    }
    return CLI_RPC;
}

bool cli_parse_int(const char *s, int64_t max, int64_t *out)
{
    if (s == NULL || *s == '\0' || strlen(s) > 19) return false;
    int64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') return false;
        if (v > (max - (*p - '0')) / 10) return false;
        v = v * 10 + (*p - '0');
    }
    *out = v;
    return true;
}

/* ---- global options ------------------------------------------------------- */

enum { G_ADDR, G_PKI, G_USER, G_CERT, G_KEY, G_BUNDLE, G_TD, G_TIMEOUT, G_JSON, G_NOHOST };
static const cli_optdef global_opts[] = {
    {"addr", true},   {"pki", true},          {"user", true},    {"cert", true},
    {"key", true},    {"bundle", true},       {"trust-domain", true}, {"timeout", true},
    {"json", false},  {"no-host-check", false}, {NULL, false},
};

/* This invocation's global options: main takes those before the command's
 * first option (take_globals), cli_next those after it, and each one is
 * applied to the context here (setup() checks them all again). */
static struct {
    cli_ctx *ctx;
    const char *cert, *key, *bundle, *timeout;
} g_opts;

static int setup(cli_ctx *c);

/* argv[*i] as a global option: its index (*val its value, *i past it),
 * CLI_IT_END when it is not one, CLI_IT_ERR (message printed) when it is
 * one used wrongly. */
static int global_index(const char *a, char **argv, int argc, int *i, const char **val)
{
    *val = NULL;
    if (a[0] != '-' || a[1] != '-' || a[2] == '\0') return CLI_IT_END;
    const char *name = a + 2, *eq = strchr(name, '=');
    size_t nlen = eq != NULL ? (size_t)(eq - name) : strlen(name);
    for (int k = 0; global_opts[k].name != NULL; k++) {
        if (strlen(global_opts[k].name) != nlen || strncmp(global_opts[k].name, name, nlen) != 0)
            continue;
        if (!global_opts[k].has_arg) {
            if (eq == NULL) return k;
            cli_usage_error(NULL, "option --%s takes no value", global_opts[k].name);
            return CLI_IT_ERR;
        }
        if (eq != NULL) {
            *val = eq + 1;
        } else if (*i + 1 < argc) {
            *val = argv[++*i];
        } else {
            cli_usage_error(NULL, "option --%s needs a value", global_opts[k].name);
            return CLI_IT_ERR;
        }
        return k;
    }
    return CLI_IT_END;
}

static void apply_global(int k, const char *val)
{
    cli_ctx *c = g_opts.ctx;
    switch (k) {
    case G_ADDR: c->addr_text = val; break;
    case G_PKI: c->pki = val; break;
    case G_USER: c->user = val; break;
    case G_CERT: g_opts.cert = val; break;
    case G_KEY: g_opts.key = val; break;
    case G_BUNDLE: g_opts.bundle = val; break;
    case G_TD: c->trust_domain = val; break;
    case G_TIMEOUT: g_opts.timeout = val; break;
    case G_JSON: c->json = true; break;
    case G_NOHOST: c->verify_host = false; break;
    }
}

int cli_next(cli_iter *it, const cli_optdef *defs, const char **val)
{
    *val = NULL;
    if (it->i >= it->argc) return CLI_IT_END;
    char *a = it->argv[it->i++];
    if (it->no_more_opts || a[0] != '-' || a[1] == '\0') {
        *val = a;
        return CLI_IT_POS;
    }
    if (strcmp(a, "--") == 0) {
        it->no_more_opts = true;
        return cli_next(it, defs, val);
    }
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) return CLI_IT_HELP;
    if (g_opts.ctx != NULL) {
        /* A global option after the command's own: applied, and checked
         * with the rest again (setup). Names are the global ones' first. */
        int i = it->i - 1;
        const char *gval = NULL;
        int k = global_index(a, it->argv, it->argc, &i, &gval);
        if (k == CLI_IT_ERR) return CLI_IT_ERR;
        if (k >= 0) {
            it->i = i + 1;
            apply_global(k, gval);
            if (setup(g_opts.ctx) != CLI_OK) return CLI_IT_ERR;
            return cli_next(it, defs, val);
        }
    }
    if (a[1] != '-') {
        cli_usage_error(it->cmd, "unknown option %s", a);
        return CLI_IT_ERR;
    }
    const char *name = a + 2;
    const char *eq = strchr(name, '=');
    size_t nlen = eq != NULL ? (size_t)(eq - name) : strlen(name);
    for (int k = 0; defs != NULL && defs[k].name != NULL; k++) {
        if (strlen(defs[k].name) != nlen || strncmp(defs[k].name, name, nlen) != 0) continue;
        if (!defs[k].has_arg) {
            if (eq != NULL) {
                cli_usage_error(it->cmd, "option --%s takes no value", defs[k].name);
                return CLI_IT_ERR;
            }
            return k;
        }
        if (eq != NULL) {
            *val = eq + 1;
        } else if (it->i < it->argc) {
            *val = it->argv[it->i++];
        } else {
            cli_usage_error(it->cmd, "option --%s needs a value", defs[k].name);
            return CLI_IT_ERR;
        }
        return k;
    }
    cli_usage_error(it->cmd, "unknown option --%.*s", (int)nlen, name);
    return CLI_IT_ERR;
}

/* Commands without options and with `want` (0 or 1) positional arguments.
 * Returns CLI_OK, CLI_USAGE, or -1 after printing the help. */
int cli_positional(const char *cmd, const char *help, int argc, char **argv, int want,
                      const char **arg)
{
    cli_iter it = {.argc = argc, .argv = argv, .i = 1, .cmd = cmd};
    const char *v = NULL;
    int have = 0;
    *arg = NULL;
    for (;;) {
        int r = cli_next(&it, NULL, &v);
        if (r == CLI_IT_END) break;
        if (r == CLI_IT_HELP) {
            fputs(help, stdout);
            return -1;
        }
        if (r == CLI_IT_ERR) return CLI_USAGE;
        if (have == want) return cli_usage_error(cmd, "unexpected argument '%s'", v);
        *arg = v;
        have++;
    }
    if (have < want || (want > 0 && **arg == '\0'))
        return cli_usage_error(cmd, "missing argument");
    return CLI_OK;
}

/* ---- connection -------------------------------------------------------------- */

static int path_join(char *out, const char *dir, const char *a, const char *b, const char *c)
{
    int n = snprintf(out, CLI_PATH_MAX, "%s/%s%s%s", dir, a, b, c);
    return n > 0 && n < CLI_PATH_MAX ? 0 : -1;
}

/* The checkout's layout (`make run` makes var/pki): only then do hints
 * name make targets; an installed CLI gets the certgen command instead. */
static bool dev_layout(const cli_ctx *c)
{
    return strcmp(c->pki, DEFAULT_PKI) == 0;
}

static int check_readable(cli_ctx *c, const char *path, const char *what)
{
    if (access(path, R_OK) == 0) return CLI_OK;
    int e = errno;
    if (strcmp(what, "trust bundle") == 0)
        return cli_fail(c, "cannot read the trust bundle %s: %s — %s", path, strerror(e),
                        dev_layout(c) ? "run 'make run' once to create the PKI, or pass --pki DIR"
                                      : "pass --pki DIR (the directory of certgen init) or "
                                        "--bundle FILE");
    if (g_opts.cert != NULL)   /* --cert/--key given: the user named the files */
        return cli_fail(c, "cannot read the %s %s: %s", what, path, strerror(e));
    return cli_fail(c,
                    "cannot read the %s %s: %s — no certificate for user %s in %s: issue one "
                    "with `certgen issue-user %s --pki %s` (and give %s a role in the "
                    "gateway's users:), or pass --user NAME or --cert FILE --key FILE",
                    what, path, strerror(e), c->user, c->pki, c->user, c->pki, c->user);
}

int cli_connect(cli_ctx *c, bool anonymous)
{
    if (c->conn != NULL && cl_conn_alive(c->conn) && c->anonymous == anonymous) return CLI_OK;
    cl_conn_close(c->conn);
    c->conn = NULL;
    if (c->tls == NULL || c->anonymous != anonymous) {
        cl_tls_free(c->tls);
        c->tls = NULL;
        int rc = check_readable(c, c->bundle, "trust bundle");
        if (rc == CLI_OK && !anonymous) rc = check_readable(c, c->cert, "certificate");
        if (rc == CLI_OK && !anonymous) rc = check_readable(c, c->key, "key");
        if (rc != CLI_OK) return rc;
        cl_tls_config tc = {
            .bundle_file = c->bundle,
            .cert_file = anonymous ? NULL : c->cert,
            .key_file = anonymous ? NULL : c->key,
            .trust_domain = c->trust_domain,
            .verify_host = c->verify_host,
        };
        if (cl_tls_new(&tc, &c->tls) != 0)
            return cli_fail(c, "cannot load the TLS credentials: %s", tsr_errmsg());
        c->anonymous = anonymous;
    }
    cl_status st;
    if (cl_conn_open_addr(&c->addr, c->tls, CONNECT_TIMEOUT_MS, &c->conn, &st) != 0) {
        cli_report(c, NULL, &st);
        return CLI_RPC;
    }
    return CLI_OK;
}

void cli_close(cli_ctx *c)
{
    cl_conn_close(c->conn);
    c->conn = NULL;
    cl_tls_free(c->tls);
    c->tls = NULL;
}

static const char *method_name(const char *path)
{
    const char *slash = path != NULL ? strrchr(path, '/') : NULL;
    return slash != NULL ? slash + 1 : "";
}

/* What to do about a failed call. */
static const char *hint(cli_ctx *c, const char *method, const cl_status *st, char *buf,
                        size_t cap)
{
    const char *m = method_name(method);
    switch (st->code) {
    case GW_STATUS_UNAVAILABLE:
        if (method == NULL) {
            snprintf(buf, cap, "cannot reach the gateway at %s — is it running%s",
                     c->addr_text,
                     dev_layout(c) ? "? (make run)" : " and listening there? (--addr HOST:PORT)");
            return buf;
        }
        /* CreateSandbox: the message says which driver failed and how. */
        if (strcmp(m, "CreateSandbox") == 0 && strncmp(st->message, "driver ", 7) == 0)
            return "the sandbox's driver failed (above) — retry once that is fixed";
        return "the gateway or its storage is unavailable — retry in a moment";
    case GW_STATUS_PERMISSION_DENIED:
        if (strstr(st->message, "no role") != NULL) {
            snprintf(buf, cap,
                     "add user '%s' to users: in the gateway config, or "
                     "use another certificate (--user)",
                     c->user);
            return buf;
        }
        if (strcmp(m, "RevokeCertificate") == 0 || strcmp(m, "GetSandboxProviderEnvironment") == 0)
            return "use an admin certificate (--user)";
        if (strcmp(m, "CreateSandbox") == 0 || strcmp(m, "DeleteSandbox") == 0 ||
            strcmp(m, "UpdateConfig") == 0)
            return "use an admin or operator certificate (--user)";
        return "this certificate may not call this method (--user)";
    case GW_STATUS_UNAUTHENTICATED:
        if (method == NULL)
            return "the gateway's certificate was refused — check --addr, --trust-domain and "
                   "the bundle (--pki/--bundle)";
        return "the gateway did not accept the client certificate — check --pki/--user, and "
               "whether it expired or was revoked (certgen issue-user makes a new one)";
    case GW_STATUS_NOT_FOUND: return "check the name or id (tessera sandbox list)";
    case GW_STATUS_ALREADY_EXISTS: return "choose another name";
    case GW_STATUS_INVALID_ARGUMENT: return "fix the request (see tessera COMMAND --help)";
    case GW_STATUS_DEADLINE_EXCEEDED:
        return "the gateway did not answer in time — retry, or raise --timeout";
    case GW_STATUS_RESOURCE_EXHAUSTED: return "a size or rate limit was hit — retry later";
    case GW_STATUS_UNIMPLEMENTED:
        return "the gateway does not know this method — is it an older version?";
    case GW_STATUS_FAILED_PRECONDITION:
        if (strcmp(m, "CreateSandbox") == 0)
            return "fix what the message names (the driver's environment or the workload), "
                   "then create it again";
        return "the sandbox is not in a state that allows this";
    default: return NULL;
    }
}

void cli_report(cli_ctx *c, const char *method, const cl_status *st)
{
    char buf[512];
    const char *h = hint(c, method, st, buf, sizeof buf);
    bool connect_failure = method == NULL && st->code == GW_STATUS_UNAVAILABLE;
    fprintf(stderr, "tessera: %s: ", cl_status_name(st->code));
    if (connect_failure) {
        /* "cannot reach the gateway at ... — is it running?" then the detail. */
        cli_puts_safe(stderr, h);
        fputs("\n  (", stderr);
        cli_puts_safe(stderr, st->message);
        fputs(")\n", stderr);
    } else {
        cli_puts_safe(stderr, st->message[0] ? st->message : "(no message)");
        if (h != NULL) fprintf(stderr, " — %s", h);
        fputc('\n', stderr);
    }
    if (c->json) {
        cli_json j;
        cj_begin(&j, stdout);
        cj_obj(&j, "error");
        cj_int(&j, "code", st->code);
        cj_str(&j, "status", cl_status_name(st->code));
        cj_str(&j, "message", st->message);
        if (method != NULL) cj_str(&j, "method", method_name(method));
        if (h != NULL) cj_str(&j, "hint", h);
        cj_close_obj(&j);
        cj_end(&j);
    }
}

int cli_call(cli_ctx *c, const char *method, const ProtobufCMessage *req,
             const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp)
{
    char path[256];
    snprintf(path, sizeof path, "%s%s", method[0] == '/' ? "" : CLI_GATEWAY, method);
    bool anonymous = strcmp(path, "/grpc.health.v1.Health/Check") == 0;
    int rc = cli_connect(c, anonymous);
    if (rc != CLI_OK) return rc;
    cl_status st;
    if (cl_call(c->conn, path, req, resp_desc, c->timeout_ms, resp, &st) != 0) {
        cli_report(c, path, &st);
        return CLI_RPC;
    }
    return CLI_OK;
}

int cli_call_pages(cli_ctx *c, const char *method, ProtobufCMessage *req, char **token,
                   const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **pages,
                   size_t max_pages, size_t *n_pages, const char *what)
{
    const ProtobufCFieldDescriptor *next =
        protobuf_c_message_descriptor_get_field_by_name(resp_desc, "next_page_token");
    if (next == NULL || next->type != PROTOBUF_C_TYPE_STRING)
        return cli_fail(c, "%s: no next_page_token in %s", method, resp_desc->name);
    static char first[] = "";
    *token = first;
    *n_pages = 0;
    for (;;) {
        if (*n_pages == max_pages) return cli_fail(c, "more than %zu pages of %s", max_pages, what);
        int rc = cli_call(c, method, req, resp_desc, &pages[*n_pages]);
        if (rc != CLI_OK) return rc;
        const char *tok;
        memcpy(&tok, (const char *)pages[(*n_pages)++] + next->offset, sizeof tok);
        if (tok == NULL || tok[0] == '\0') return CLI_OK;
        if (strcmp(tok, *token) == 0) return cli_fail(c, "the gateway repeated a page token");
        *token = (char *)(uintptr_t)tok;
    }
}

bool cli_is_id(const char *arg)
{
    return ca_uuid_validate(arg, strlen(arg)) == 0;
}

int cli_resolve_sandbox(cli_ctx *c, const char *arg, char id[CA_UUID_LEN + 1])
{
    if (cli_is_id(arg)) {
        memcpy(id, arg, CA_UUID_LEN + 1);
        return CLI_OK;
    }
    tsr_err_clear();
    Tessera__V1__GetSandboxRequest req;
    tessera__v1__get_sandbox_request__init(&req);
    req.name = (char *)(uintptr_t)arg;
    ProtobufCMessage *out = NULL;
    int rc = cli_call(c, "GetSandbox", &req.base, &tessera__v1__get_sandbox_response__descriptor,
                      &out);
    if (rc != CLI_OK) return rc;
    Tessera__V1__GetSandboxResponse *r = (Tessera__V1__GetSandboxResponse *)out;
    if (r->sandbox == NULL || !cli_is_id(r->sandbox->id)) {
        protobuf_c_message_free_unpacked(out, NULL);
        return cli_fail(c, "the gateway returned no valid id for sandbox %s", arg);
    }
    memcpy(id, r->sandbox->id, CA_UUID_LEN + 1);
    protobuf_c_message_free_unpacked(out, NULL);
    return CLI_OK;
}

/* ---- main ------------------------------------------------------------------------ */

/* Take the global options out of argv, up to the first option that is not
 * a global one (or "--"): before it nothing can be an option's value, so a
 * token that names a global option is one. Everything from there on stays,
 * in order, for the command, whose own option parsing (cli_next) knows which
 * tokens are its options' values and applies the global options among the
 * rest. Returns CLI_OK or CLI_USAGE. */
static int take_globals(int *argc, char **argv)
{
    int out = 1, i = 1;
    for (; i < *argc; i++) {
        char *a = argv[i];
        if (a[0] != '-' || a[1] == '\0') {
            argv[out++] = a; /* a command word or argument */
            continue;
        }
        const char *val = NULL;
        int k = global_index(a, argv, *argc, &i, &val);
        if (k == CLI_IT_ERR) return CLI_USAGE;
        if (k < 0) break; /* "--", -h, a command's option: the rest is the command's */
        apply_global(k, val);
    }
    while (i < *argc) argv[out++] = argv[i++];
    *argc = out;
    argv[out] = NULL;
    return CLI_OK;
}

static const char *env_or(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v != NULL && *v != '\0' ? v : dflt;
}

static int setup(cli_ctx *c)
{
    const char *cert = g_opts.cert, *key = g_opts.key, *bundle = g_opts.bundle,
               *timeout = g_opts.timeout;
    if (c->addr_text == NULL) c->addr_text = env_or("TESSERA_ADDR", DEFAULT_ADDR);
    if (c->pki == NULL) c->pki = env_or("TESSERA_PKI", DEFAULT_PKI);
    if (c->user == NULL) c->user = env_or("TESSERA_USER", DEFAULT_USER);
    if (cl_addr_parse(c->addr_text, CL_DEFAULT_PORT, &c->addr) != 0)
        return cli_usage_error(NULL, "bad --addr %s: %s", c->addr_text, tsr_errmsg());
    if (ca_name_validate(c->user, strlen(c->user)) != 0)
        return cli_usage_error(NULL, "bad --user %s: names are [a-z0-9._-], 1-64 characters",
                               c->user);
    if (c->trust_domain != NULL &&
        ca_trust_domain_validate(c->trust_domain, strlen(c->trust_domain)) != 0)
        return cli_usage_error(NULL, "bad --trust-domain %s: %s", c->trust_domain, tsr_errmsg());
    if ((cert == NULL) != (key == NULL))
        return cli_usage_error(NULL, "--cert and --key go together");
    int bad = 0;
    if (cert != NULL) {
        bad |= snprintf(c->cert, sizeof c->cert, "%s", cert) >= (int)sizeof c->cert;
        bad |= snprintf(c->key, sizeof c->key, "%s", key) >= (int)sizeof c->key;
    } else {
        bad |= path_join(c->cert, c->pki, "users/", c->user, ".pem") != 0;
        bad |= path_join(c->key, c->pki, "users/", c->user, ".key") != 0;
    }
    if (bundle != NULL) bad |= snprintf(c->bundle, sizeof c->bundle, "%s", bundle) >= (int)sizeof c->bundle;
    else bad |= path_join(c->bundle, c->pki, "bundle.pem", "", "") != 0;
    if (bad) return cli_usage_error(NULL, "path too long");
    c->timeout_ms = DEFAULT_TIMEOUT_MS;
    if (timeout != NULL) {
        int64_t secs = 0;
        if (cli_parse_int(timeout, 86400, &secs) && secs > 0) {
            c->timeout_ms = secs * 1000;
        } else if (tsr_duration_parse(timeout, &secs) == 0 && secs > 0 && secs <= 86400) {
            c->timeout_ms = secs * 1000;
        } else {
            return cli_usage_error(NULL, "bad --timeout %s: use e.g. 10s, 2m (at most 1d)",
                                   timeout);
        }
    }
    return CLI_OK;
}

int main(int argc, char **argv)
{
    if (tsr_version_requested(argc, argv)) return tsr_version_print(stdout, "tessera");
    cli_ctx c;
    memset(&c, 0, sizeof c);
    c.verify_host = true;
    memset(&g_opts, 0, sizeof g_opts);
    g_opts.ctx = &c;

    /* A closed stdout (tessera ... | head) must not kill us mid-write. */
    signal(SIGPIPE, SIG_IGN);

    int rc = take_globals(&argc, argv);
    if (rc != CLI_OK) return rc;
    if (argc < 2) {
        fputs(main_help, stderr);
        return CLI_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        fputs(main_help, stdout);
        return CLI_OK;
    }
    rc = setup(&c);
    if (rc != CLI_OK) return rc;

    static const struct {
        const char *name;
        int (*fn)(cli_ctx *, int, char **);
    } cmds[] = {
        {"sandbox", cli_cmd_sandbox}, {"logs", cli_cmd_logs},     {"cert", cli_cmd_cert},
        {"bundle", cli_cmd_bundle},   {"health", cli_cmd_health},
    };
    rc = -1;
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(cmd, cmds[i].name) == 0) rc = cmds[i].fn(&c, argc - 1, argv + 1);
    if (rc == -1) rc = cli_usage_error(NULL, "unknown command '%s'", cmd);
    cli_close(&c);
    g_opts.ctx = NULL;
    if (fflush(stdout) != 0 && rc == CLI_OK) rc = CLI_RPC;
    return rc;
}
