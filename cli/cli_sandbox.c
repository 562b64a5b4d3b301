/* tessera sandbox create|list|get|delete */
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "tsr_env.h"
#include "tsr_fs.h"

#define POLICY_MAX (1024 * 1024)
#define ENV_MAX 256
#define DEFAULT_POLICY "version: 1\n"   /* deny by default: nothing allowed */

static const char sandbox_help[] =
    "usage: tessera sandbox create NAME [--policy FILE] [--image IMAGE] [--env NAME=VALUE]...\n"
    "                              [--secret NAME[=VALUE]]... [--driver NAME]\n"
    "                              [-- COMMAND [ARGS...]]\n"
    "       tessera sandbox list\n"
    "       tessera sandbox get NAME|ID\n"
    "       tessera sandbox delete NAME|ID\n"
    "Run 'tessera sandbox COMMAND --help' for one command.\n";

static const char create_help[] =
    "usage: tessera sandbox create NAME [--policy FILE] [--image IMAGE] [--env NAME=VALUE]...\n"
    "                              [--secret NAME[=VALUE]]... [--driver NAME]\n"
    "                              [-- COMMAND [ARGS...]]\n"
    "\n"
    "Create a sandbox; the gateway mints its identity (SPIFFE ID and first\n"
    "certificate) and starts it with the driver, running COMMAND.\n"
    "\n"
    "  --policy FILE      YAML policy (see docs/policy.md); '-' reads stdin.\n"
    "                     Default: 'version: 1' (deny by default).\n"
    "  --image IMAGE      what the sandbox runs from: an engine image (docker),\n"
    "                     a guest image named in the driver's config (vm).\n"
    "                     Default: the driver's. The process driver takes none.\n"
    "  --env NAME=VALUE   a plain variable of the workload; repeatable. Not secret:\n"
    "                     'sandbox get' shows it. Credential-like names are refused.\n"
    "  --secret NAME=VALUE  a provider credential, stored encrypted and never\n"
    "                     shown; repeatable.\n"
    "  --secret NAME      the same, with the value of $NAME in this shell\n"
    "                     (keeps secrets off the command line).\n"
    "  --driver NAME      process, docker or vm (default: the gateway's).\n"
    "  -- COMMAND [ARGS...]  the workload, run by the supervisor as another uid;\n"
    "                     each argument as it is (no shell). Default: the driver's.\n";

static const char list_help[] =
    "usage: tessera sandbox list\n\nList every sandbox (all pages).\n";
static const char get_help[] =
    "usage: tessera sandbox get NAME|ID\n\nShow one sandbox: what it runs, its state "
    "as its driver reports it,\nand how it ended (exit status, the supervisor's last lines).\n"
    "A lowercase UUID is an id.\n";
static const char delete_help[] =
    "usage: tessera sandbox delete NAME|ID\n\n"
    "Delete a sandbox and revoke every certificate it holds.\n";

/* ---- create ------------------------------------------------------------------ */

/* NAME=VALUE pairs of one flag: owned copies "NAME\0VALUE". Secrets
 * (--secret) are cleansed when freed. */
typedef struct kv_list {
    char *owned[ENV_MAX];
    size_t n;
    bool secret;
    const char *flag;      /* "--env", "--secret" */
} kv_list;

static const char *kv_key(const kv_list *l, size_t i)
{
    return l->owned[i];
}

static const char *kv_value(const kv_list *l, size_t i)
{
    return l->owned[i] + strlen(l->owned[i]) + 1;
}

static void kv_free(kv_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        if (l->secret)
            OPENSSL_cleanse(l->owned[i], strlen(kv_key(l, i)) + 1 + strlen(kv_value(l, i)));
        free(l->owned[i]);
    }
    l->n = 0;
}

static bool kv_has(const kv_list *l, const char *key, size_t klen)
{
    for (size_t i = 0; i < l->n; i++)
        if (strlen(kv_key(l, i)) == klen && strncmp(kv_key(l, i), key, klen) == 0) return true;
    return false;
}

/* One --env or --secret argument into l; `other` is the other flag's list
 * (a name in both is refused). */
static int kv_add(kv_list *l, const kv_list *other, const char *arg)
{
    const char *cmd = "sandbox create";
    if (l->n >= ENV_MAX) return cli_usage_error(cmd, "at most %d %s values", ENV_MAX, l->flag);
    const char *eq = strchr(arg, '=');
    size_t klen = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
    if (!tsr_env_name_valid(arg, klen))
        return cli_usage_error(cmd, "%s needs NAME=VALUE with NAME like [A-Za-z_][A-Za-z0-9_]*",
                               l->flag);
    if (!l->secret && eq == NULL)
        return cli_usage_error(cmd,
                               "--env %s: give NAME=VALUE (a secret from this shell's "
                               "environment: --secret %s)",
                               arg, arg);
    /* A plain variable is shown by `sandbox get` and stored as it is: keep
     * credentials where they are encrypted. */
    if (!l->secret && tsr_env_name_secretlike(arg, klen))
        return cli_usage_error(cmd,
                               "--env %.*s: the name looks like a credential; pass it with "
                               "--secret (stored encrypted, never shown), or rename it",
                               (int)klen, arg);
    if (kv_has(l, arg, klen) || kv_has(other, arg, klen))
        return cli_usage_error(cmd, "%.*s is given twice (--env and --secret share names)",
                               (int)klen, arg);
    const char *v = eq != NULL ? eq + 1 : getenv(arg);
    if (v == NULL)
        return cli_usage_error(cmd, "--secret %s: no such variable in the environment", arg);
    size_t vlen = strlen(v);
    char *copy = malloc(klen + 1 + vlen + 1);
    if (copy == NULL) {
        fputs("tessera: out of memory\n", stderr);
        return CLI_RPC;
    }
    memcpy(copy, arg, klen);
    copy[klen] = '\0';
    memcpy(copy + klen + 1, v, vlen + 1);
    l->owned[l->n++] = copy;
    return CLI_OK;
}

static int read_policy(cli_ctx *c, const char *file, char **out)
{
    *out = NULL;
    uint8_t *data = NULL;
    size_t len = 0;
    if (strcmp(file, "-") == 0) {
        size_t cap = 4096;
        data = malloc(cap);
        while (data != NULL) {
            size_t n = fread(data + len, 1, cap - len, stdin);
            len += n;
            if (n == 0) break;
            if (len > POLICY_MAX) break;
            if (len == cap) {
                uint8_t *nd = realloc(data, cap * 2);
                if (nd == NULL) {
                    free(data);
                    data = NULL;
                }
                data = nd;
                cap *= 2;
            }
        }
        if (data == NULL) return cli_fail(c, "out of memory");
        if (ferror(stdin)) {
            free(data);
            return cli_fail(c, "cannot read the policy from stdin");
        }
    } else if (tsr_read_file(file, POLICY_MAX, &data, &len) != 0) {
        return cli_fail(c, "cannot read the policy %s: %s", file, tsr_errmsg());
    }
    if (len > POLICY_MAX) {
        free(data);
        return cli_fail(c, "the policy is larger than %d bytes", POLICY_MAX);
    }
    if (memchr(data, '\0', len) != NULL) {
        free(data);
        return cli_fail(c, "the policy %s contains a NUL byte", file);
    }
    char *text = malloc(len + 1);
    if (text == NULL) {
        free(data);
        return cli_fail(c, "out of memory");
    }
    if (len > 0) memcpy(text, data, len);
    text[len] = '\0';
    free(data);
    *out = text;
    return CLI_OK;
}

/* The request's map entries, pointing into the lists (freed by the caller). */
typedef struct create_maps {
    Tessera__V1__CreateSandboxRequest__ProviderEnvEntry secrets[ENV_MAX], *secret_ptrs[ENV_MAX];
    Tessera__V1__CreateSandboxRequest__EnvEntry plain[ENV_MAX], *plain_ptrs[ENV_MAX];
} create_maps;

static void create_maps_fill(create_maps *m, const kv_list *secrets, const kv_list *plain,
                             Tessera__V1__CreateSandboxRequest *req)
{
    for (size_t i = 0; i < secrets->n; i++) {
        tessera__v1__create_sandbox_request__provider_env_entry__init(&m->secrets[i]);
        m->secrets[i].key = (char *)(uintptr_t)kv_key(secrets, i);
        m->secrets[i].value = (char *)(uintptr_t)kv_value(secrets, i);
        m->secret_ptrs[i] = &m->secrets[i];
    }
    for (size_t i = 0; i < plain->n; i++) {
        tessera__v1__create_sandbox_request__env_entry__init(&m->plain[i]);
        m->plain[i].key = (char *)(uintptr_t)kv_key(plain, i);
        m->plain[i].value = (char *)(uintptr_t)kv_value(plain, i);
        m->plain_ptrs[i] = &m->plain[i];
    }
    req->n_provider_env = secrets->n;
    req->provider_env = m->secret_ptrs;
    req->n_env = plain->n;
    req->env = m->plain_ptrs;
}

static int cmd_create(cli_ctx *c, int argc, char **argv)
{
    static const char *cmd = "sandbox create";
    enum { O_POLICY, O_ENV, O_SECRET, O_DRIVER, O_IMAGE };
    static const cli_optdef defs[] = {{"policy", true}, {"env", true},   {"secret", true},
                                      {"driver", true}, {"image", true}, {NULL, false}};
    cli_iter it = {.argc = argc, .argv = argv, .i = 1, .cmd = cmd};
    const char *name = NULL, *policy_file = NULL, *driver = NULL, *image = NULL, *v = NULL;
    kv_list *secrets = calloc(1, sizeof *secrets), *plain = calloc(1, sizeof *plain);
    create_maps *maps = calloc(1, sizeof *maps);
    char **command = calloc((size_t)argc + 1, sizeof *command);
    size_t n_command = 0;
    char *policy = NULL;
    ProtobufCMessage *out = NULL;
    int rc = CLI_OK;
    if (secrets == NULL || plain == NULL || maps == NULL || command == NULL) {
        rc = cli_fail(c, "out of memory");
        goto out;
    }
    secrets->secret = true;
    secrets->flag = "--secret";
    plain->flag = "--env";
    for (;;) {
        int r = cli_next(&it, defs, &v);
        if (r == CLI_IT_END) break;
        if (r == CLI_IT_HELP) {
            fputs(create_help, stdout);
            goto out;
        }
        if (r == CLI_IT_ERR) {
            rc = CLI_USAGE;
            goto out;
        }
        if (r == CLI_IT_POS && it.no_more_opts) {
            if (name == NULL) {
                rc = cli_usage_error(cmd, "missing NAME (it comes before --)");
                goto out;
            }
            command[n_command++] = (char *)(uintptr_t)v; /* after "--": the workload */
        } else if (r == CLI_IT_POS) {
            if (name != NULL) {
                rc = cli_usage_error(cmd, "unexpected argument '%s' (put the workload after --)",
                                     v);
                goto out;
            }
            name = v;
        } else if (r == O_POLICY) {
            policy_file = v;
        } else if (r == O_DRIVER) {
            driver = v;
        } else if (r == O_IMAGE) {
            image = v;
        } else if (r == O_ENV) {
            if ((rc = kv_add(plain, secrets, v)) != CLI_OK) goto out;
        } else if (r == O_SECRET) {
            if ((rc = kv_add(secrets, plain, v)) != CLI_OK) goto out;
        }
    }
    if (name == NULL || *name == '\0') {
        rc = cli_usage_error(cmd, "missing NAME");
        goto out;
    }
    if (it.no_more_opts && n_command == 0) {
        rc = cli_usage_error(cmd, "nothing after --: give the workload's COMMAND [ARGS...]");
        goto out;
    }
    if (policy_file != NULL && (rc = read_policy(c, policy_file, &policy)) != CLI_OK) goto out;

    Tessera__V1__CreateSandboxRequest req;
    tessera__v1__create_sandbox_request__init(&req);
    req.name = (char *)(uintptr_t)name;
    req.policy = policy != NULL ? policy : (char *)(uintptr_t)DEFAULT_POLICY;
    req.driver = (char *)(uintptr_t)(driver != NULL ? driver : "");
    req.image = (char *)(uintptr_t)(image != NULL ? image : "");
    req.n_command = n_command;
    req.command = command;
    create_maps_fill(maps, secrets, plain, &req);
    if ((rc = cli_call(c, "CreateSandbox", &req.base,
                       &tessera__v1__create_sandbox_response__descriptor, &out)) != CLI_OK)
        goto out;
    Tessera__V1__CreateSandboxResponse *r = (Tessera__V1__CreateSandboxResponse *)out;
    if (c->json) {
        cli_json j;
        cj_begin(&j, stdout);
        cj_sandbox(&j, "sandbox", r->sandbox);
        cj_str(&j, "certificate_serial", r->certificate_serial);
        cj_end(&j);
    } else {
        printf("Created sandbox ");
        cli_puts_safe(stdout, r->sandbox != NULL ? r->sandbox->name : name);
        printf("\n");
        cli_print_sandbox(r->sandbox);
        printf("%-15s ", "certificate");
        cli_puts_safe(stdout, r->certificate_serial);
        putchar('\n');
    }
out:
    if (out != NULL) protobuf_c_message_free_unpacked(out, NULL);
    free(policy);
    if (secrets != NULL) kv_free(secrets);
    if (plain != NULL) kv_free(plain);
    free(secrets);
    free(plain);
    free(maps);
    free(command);
    return rc;
}

/* ---- list -------------------------------------------------------------------- */

#define LIST_PAGE 500
#define LIST_MAX_PAGES 1000

static int cmd_list(cli_ctx *c, int argc, char **argv)
{
    const char *arg = NULL;
    int rc = cli_positional("sandbox list", list_help, argc, argv, 0, &arg);
    if (rc == -1) return CLI_OK;
    if (rc != CLI_OK) return rc;

    ProtobufCMessage **pages = calloc(LIST_MAX_PAGES, sizeof *pages);
    if (pages == NULL) return cli_fail(c, "out of memory");
    size_t n_pages = 0, total = 0;
    Tessera__V1__ListSandboxesRequest req;
    tessera__v1__list_sandboxes_request__init(&req);
    req.page_size = LIST_PAGE;
    rc = cli_call_pages(c, "ListSandboxes", &req.base, &req.page_token,
                        &tessera__v1__list_sandboxes_response__descriptor, pages, LIST_MAX_PAGES,
                        &n_pages, "sandboxes");
    if (rc != CLI_OK) goto out;
    for (size_t p = 0; p < n_pages; p++)
        total += ((Tessera__V1__ListSandboxesResponse *)pages[p])->n_sandboxes;
    if (c->json) {
        cli_json j;
        cj_begin(&j, stdout);
        cj_arr(&j, "sandboxes");
        for (size_t p = 0; p < n_pages; p++) {
            Tessera__V1__ListSandboxesResponse *r = (Tessera__V1__ListSandboxesResponse *)pages[p];
            for (size_t i = 0; i < r->n_sandboxes; i++) cj_sandbox(&j, NULL, r->sandboxes[i]);
        }
        cj_close_arr(&j);
        cj_end(&j);
    } else if (total == 0) {
        printf("No sandboxes.\n");
    } else {
        printf("%-36s  %-24s  %-8s  %-8s  %-20s  %s\n", "ID", "NAME", "STATE", "DRIVER",
               "CREATED", "POLICY");
        for (size_t p = 0; p < n_pages; p++) {
            Tessera__V1__ListSandboxesResponse *r = (Tessera__V1__ListSandboxesResponse *)pages[p];
            for (size_t i = 0; i < r->n_sandboxes; i++) {
                const Tessera__V1__Sandbox *sb = r->sandboxes[i];
                char when[32];
                cli_time(sb->created_at, when);
                const char *cols[] = {sb->id, sb->name, sb->state, sb->driver};
                const int widths[] = {36, 24, 8, 8};
                for (size_t k = 0; k < 4; k++) {
                    size_t len = strlen(cols[k]);
                    cli_puts_safe(stdout, cols[k]);
                    for (size_t pad = len; pad < (size_t)widths[k]; pad++) putchar(' ');
                    fputs("  ", stdout);
                }
                printf("%-20s  %lld\n", when, (long long)sb->policy_version);
            }
        }
    }
    rc = CLI_OK;
out:
    for (size_t p = 0; p < n_pages; p++) protobuf_c_message_free_unpacked(pages[p], NULL);
    free(pages);
    return rc;
}

/* ---- get / delete -------------------------------------------------------------------- */

static int cmd_get(cli_ctx *c, int argc, char **argv)
{
    const char *arg = NULL;
    int rc = cli_positional("sandbox get", get_help, argc, argv, 1, &arg);
    if (rc == -1) return CLI_OK;
    if (rc != CLI_OK) return rc;
    Tessera__V1__GetSandboxRequest req;
    tessera__v1__get_sandbox_request__init(&req);
    if (cli_is_id(arg)) req.id = (char *)(uintptr_t)arg;
    else req.name = (char *)(uintptr_t)arg;
    ProtobufCMessage *out = NULL;
    rc = cli_call(c, "GetSandbox", &req.base, &tessera__v1__get_sandbox_response__descriptor,
                  &out);
    if (rc != CLI_OK) return rc;
    Tessera__V1__GetSandboxResponse *r = (Tessera__V1__GetSandboxResponse *)out;
    if (c->json) {
        cli_json j;
        cj_begin(&j, stdout);
        cj_sandbox(&j, "sandbox", r->sandbox);
        cj_end(&j);
    } else {
        cli_print_sandbox(r->sandbox);
    }
    protobuf_c_message_free_unpacked(out, NULL);
    return CLI_OK;
}

static int cmd_delete(cli_ctx *c, int argc, char **argv)
{
    const char *arg = NULL;
    int rc = cli_positional("sandbox delete", delete_help, argc, argv, 1, &arg);
    if (rc == -1) return CLI_OK;
    if (rc != CLI_OK) return rc;
    Tessera__V1__DeleteSandboxRequest req;
    tessera__v1__delete_sandbox_request__init(&req);
    if (cli_is_id(arg)) req.id = (char *)(uintptr_t)arg;
    else req.name = (char *)(uintptr_t)arg;
    ProtobufCMessage *out = NULL;
    rc = cli_call(c, "DeleteSandbox", &req.base,
                  &tessera__v1__delete_sandbox_response__descriptor, &out);
    if (rc != CLI_OK) return rc;
    Tessera__V1__DeleteSandboxResponse *r = (Tessera__V1__DeleteSandboxResponse *)out;
    if (c->json) {
        cli_json j;
        cj_begin(&j, stdout);
        cj_sandbox(&j, "sandbox", r->sandbox);
        cj_int(&j, "revoked_certificates", r->revoked_certificates);
        cj_end(&j);
    } else {
        printf("Deleted sandbox ");
        cli_puts_safe(stdout, r->sandbox != NULL ? r->sandbox->name : arg);
        if (r->sandbox != NULL) {
            printf(" (");
            cli_puts_safe(stdout, r->sandbox->id);
            printf(")");
        }
        printf("; revoked %d certificate%s\n", (int)r->revoked_certificates,
               r->revoked_certificates == 1 ? "" : "s");
    }
    protobuf_c_message_free_unpacked(out, NULL);
    return CLI_OK;
}

int cli_cmd_sandbox(cli_ctx *c, int argc, char **argv)
{
    if (argc < 2) {
        fputs(sandbox_help, stderr);
        return CLI_USAGE;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0) {
        fputs(sandbox_help, stdout);
        return CLI_OK;
    }
    if (strcmp(sub, "create") == 0) return cmd_create(c, argc - 1, argv + 1);
    if (strcmp(sub, "list") == 0) return cmd_list(c, argc - 1, argv + 1);
    if (strcmp(sub, "get") == 0) return cmd_get(c, argc - 1, argv + 1);
    if (strcmp(sub, "delete") == 0) return cmd_delete(c, argc - 1, argv + 1);
    return cli_usage_error("sandbox", "unknown sandbox command '%s'", sub);
}
