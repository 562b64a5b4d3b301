/* Calls about our own sandbox (sup_gateway.h). */
#include "sup_gateway.h"

#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pol_policy.h"
#include "tessera/v1/gateway.pb-c.h"
#include "tsr_yaml.h"

#define ENV_MAX_VARS 256
#define ENV_MAX_VALUE (64u << 10)

bool sup_status_is_fatal(enum gw_status code)
{
    return code == GW_STATUS_UNAUTHENTICATED || code == GW_STATUS_PERMISSION_DENIED ||
           code == GW_STATUS_NOT_FOUND;
}

static void set_local(cl_status *st, enum gw_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_local(cl_status *st, enum gw_status code, const char *fmt, ...)
{
    st->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->message, sizeof st->message, fmt, ap);
    va_end(ap);
}

void sup_config_free(sup_config *c)
{
    if (c == NULL) return;
    free(c->policy);
    c->policy = NULL;
    sup_env_list_free(&c->env);
}

/* Room for n variables in out (empty), bounded; 0 or -1 with st set. */
static int env_list_alloc(sup_env_list *out, size_t n, const char *what, cl_status *st)
{
    memset(out, 0, sizeof *out);
    if (n > ENV_MAX_VARS) {
        set_local(st, GW_STATUS_RESOURCE_EXHAUSTED, "%s of %zu variables (max %d)", what, n,
                  ENV_MAX_VARS);
        return -1;
    }
    out->vars = calloc(n + 1, sizeof *out->vars);
    if (out->vars == NULL) {
        set_local(st, GW_STATUS_INTERNAL, "%s", "out of memory");
        return -1;
    }
    return 0;
}

/* Append a copy of key=value to out (room made by env_list_alloc). */
static int env_list_add(sup_env_list *out, const char *key, const char *value, const char *what,
                        cl_status *st)
{
    if (strlen(value) > ENV_MAX_VALUE) {
        /* The name is the gateway's bytes: quoted, never raw in our log. */
        char shown[64 * 4 + 8];
        tsr_yaml_quote_bytes(key, strnlen(key, 64), shown, sizeof shown);
        set_local(st, GW_STATUS_RESOURCE_EXHAUSTED, "%s: variable %s is too long", what, shown);
        return -1;
    }
    sup_env_var *v = &out->vars[out->n++];
    v->name = strdup(key);
    v->value = strdup(value);
    v->value_len = v->value != NULL ? strlen(v->value) : 0;
    if (v->name == NULL || v->value == NULL) {
        set_local(st, GW_STATUS_INTERNAL, "%s", "out of memory");
        return -1;
    }
    return 0;
}

int sup_get_config(cl_conn *conn, const char *sandbox_id, sup_config *out, cl_status *st)
{
    memset(out, 0, sizeof *out);
    Tessera__V1__GetSandboxConfigRequest req;
    tessera__v1__get_sandbox_config_request__init(&req);
    req.sandbox_id = (char *)(uintptr_t)sandbox_id;
    ProtobufCMessage *m = NULL;
    if (cl_call(conn, "/tessera.v1.Gateway/GetSandboxConfig", &req.base,
                &tessera__v1__get_sandbox_config_response__descriptor, SUP_CALL_TIMEOUT_MS, &m,
                st) != 0)
        return -1;
    const Tessera__V1__GetSandboxConfigResponse *r = (const Tessera__V1__GetSandboxConfigResponse *)m;
    int rc = -1;
    if (r == NULL || strcmp(r->sandbox_id, sandbox_id) != 0) {
        /* An answer about another sandbox is a gateway bug; never act on it.
         * The id is the answer's: quoted and escaped for the log. */
        char shown[64 * 4 + 8];
        tsr_yaml_quote_bytes(r ? r->sandbox_id : "", r ? strlen(r->sandbox_id) : 0, shown,
                             sizeof shown);
        set_local(st, GW_STATUS_INTERNAL, "GetSandboxConfig answered for another sandbox (%s)",
                  shown);
        goto out;
    }
    out->policy = strdup(r->policy);
    if (out->policy == NULL) {
        set_local(st, GW_STATUS_INTERNAL, "%s", "out of memory");
        goto out;
    }
    out->policy_version = r->policy_version;
    snprintf(out->name, sizeof out->name, "%s", r->name);
    if (env_list_alloc(&out->env, r->n_env, "sandbox env", st) != 0) goto out;
    for (size_t i = 0; i < r->n_env; i++)
        if (env_list_add(&out->env, r->env[i]->key, r->env[i]->value, "sandbox env", st) != 0)
            goto out;
    rc = 0;
out:
    if (rc != 0) sup_config_free(out);
    protobuf_c_message_free_unpacked(m, NULL);
    return rc;
}

void sup_env_list_free(sup_env_list *l)
{
    if (l == NULL) return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->vars[i].name);
        if (l->vars[i].value != NULL) {
            OPENSSL_cleanse(l->vars[i].value, l->vars[i].value_len);
            free(l->vars[i].value);
        }
    }
    free(l->vars);
    l->vars = NULL;
    l->n = 0;
}

int sup_get_provider_env(cl_conn *conn, const char *sandbox_id, sup_env_list *out, cl_status *st)
{
    memset(out, 0, sizeof *out);
    Tessera__V1__GetSandboxProviderEnvironmentRequest req;
    tessera__v1__get_sandbox_provider_environment_request__init(&req);
    req.sandbox_id = (char *)(uintptr_t)sandbox_id;
    ProtobufCMessage *m = NULL;
    /* The values are credentials: the response is decoded with the client's
     * secret allocator, which wipes every decoded byte when it is freed (a
     * value with a NUL inside too: protobuf-c keeps it whole, a wipe by
     * strlen would stop at the NUL). */
    if (cl_call_secret(conn, "/tessera.v1.Gateway/GetSandboxProviderEnvironment", &req.base,
                       &tessera__v1__get_sandbox_provider_environment_response__descriptor,
                       SUP_CALL_TIMEOUT_MS, &m, st) != 0)
        return -1;
    Tessera__V1__GetSandboxProviderEnvironmentResponse *r =
        (Tessera__V1__GetSandboxProviderEnvironmentResponse *)m;
    int rc = -1;
    size_t n = r ? r->n_environment : 0;
    if (env_list_alloc(out, n, "provider environment", st) != 0) goto out;
    for (size_t i = 0; i < n; i++)
        if (env_list_add(out, r->environment[i]->key, r->environment[i]->value,
                         "provider environment", st) != 0)
            goto out;
    rc = 0;
out:
    if (rc != 0) sup_env_list_free(out);
    cl_secret_free(m);
    return rc;
}

static const struct {
    const char *name;
    unsigned bit;
} sup_domains[] = {
    {"filesystem", SUP_ENF_FILESYSTEM},
    {"network", SUP_ENF_NETWORK},
    {"process", SUP_ENF_PROCESS},
};
#define SUP_N_DOMAINS (sizeof sup_domains / sizeof sup_domains[0])

int sup_enforced_parse(const char *list, unsigned *out)
{
    *out = 0;
    TSR_ENSURE(list != NULL && list[0] != '\0', TSR_E_INPUT, "empty list");
    if (strcmp(list, "none") == 0) return 0;
    const char *p = list;
    for (;;) {
        size_t n = strcspn(p, ",");
        unsigned bit = 0;
        for (size_t i = 0; i < SUP_N_DOMAINS; i++)
            if (strlen(sup_domains[i].name) == n && strncmp(p, sup_domains[i].name, n) == 0)
                bit = sup_domains[i].bit;
        TSR_ENSURE(bit != 0, TSR_E_INPUT,
                   "\"%.*s\" is not a policy domain (filesystem, network, process) or none",
                   (int)(n < 32 ? n : 32), p);
        TSR_ENSURE((*out & bit) == 0, TSR_E_INPUT, "%.*s given twice", (int)n, p);
        *out |= bit;
        if (p[n] == '\0') return 0;
        p += n + 1;
    }
}

/* The domains whose bit in `set` equals `want`, comma-separated, or "none". */
static void domain_list(unsigned set, bool want, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < SUP_N_DOMAINS; i++) {
        if (((set & sup_domains[i].bit) != 0) != want) continue;
        int n = snprintf(out + used, cap - used, "%s%s", used ? ", " : "", sup_domains[i].name);
        if (n < 0 || (size_t)n >= cap - used) break;
        used += (size_t)n;
    }
    if (used == 0) snprintf(out, cap, "none");
}

void sup_enforced_describe(const char *driver, unsigned enforced, char *out, size_t cap)
{
    char yes[64], no[64], by[64];
    domain_list(enforced, true, yes, sizeof yes);
    domain_list(enforced, false, no, sizeof no);
    if (driver != NULL) snprintf(by, sizeof by, "the %s driver", driver);
    else snprintf(by, sizeof by, "the driver");
    snprintf(out, cap, "enforced by %s: %s; recorded only, not enforced: %s", by, yes, no);
}

int sup_report_policy(cl_conn *conn, const char *sandbox_id, const sup_config *cfg,
                      const char *enforcement, bool *applied, char *why, size_t why_cap,
                      cl_status *st)
{
    tsr_err_clear();
    *applied = pol_validate(cfg->policy, strlen(cfg->policy)) == 0;
    snprintf(why, why_cap, "%s", *applied ? "" : tsr_errmsg());
    char applied_msg[256];
    snprintf(applied_msg, sizeof applied_msg, "validated by tessera-supervisor; %s", enforcement);
    Tessera__V1__ReportPolicyStatusRequest req;
    tessera__v1__report_policy_status_request__init(&req);
    req.sandbox_id = (char *)(uintptr_t)sandbox_id;
    req.version = cfg->policy_version;
    req.status = *applied ? TESSERA__V1__POLICY_STATUS__POLICY_STATUS_APPLIED
                          : TESSERA__V1__POLICY_STATUS__POLICY_STATUS_FAILED;
    req.message = *applied ? applied_msg : why;
    ProtobufCMessage *m = NULL;
    if (cl_call(conn, "/tessera.v1.Gateway/ReportPolicyStatus", &req.base,
                &tessera__v1__report_policy_status_response__descriptor, SUP_CALL_TIMEOUT_MS, &m,
                st) != 0)
        return -1;
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}
