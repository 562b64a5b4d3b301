#include "pol_policy.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "tsr_name.h"
#include "tsr_yaml.h"

#define POLICY_NAME "policy"
#define MAX_PATH_BYTES 4096
#define MAX_LIST 256          /* paths, rules, ports, models per list */
#define MAX_PROVIDERS 32
#define MAX_ENV 64            /* env names per provider */
#define MAX_ENV_BYTES 128
#define MAX_MODEL_BYTES 128
#define MAX_NAME_BYTES 64

static const tsr_yaml_limits policy_limits = {
    .max_input = POL_MAX_BYTES,
    .max_depth = TSR_YAML_MAX_DEPTH,
    .max_nodes = TSR_YAML_MAX_NODES,
    .max_scalar = POL_MAX_BYTES,
};

#define KEYS(...) ((const char *const[]){__VA_ARGS__}), \
    (sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))

typedef int (*domain_fn)(const tsr_yaml_node *body);

/* ---- shared helpers ----------------------------------------------------- */

static bool has_control(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return true;
    return false;
}

/* A list under `key` with at most `max` entries; *out NULL if absent/null. */
static int get_list(const tsr_yaml_node *map, const char *key, const char *label, size_t max,
                    const tsr_yaml_node **out)
{
    const tsr_yaml_node *v = tsr_yaml_get(map, key);
    *out = NULL;
    if (v == NULL || tsr_yaml_is_null(v)) return 0;
    TSR_GUARD(tsr_yaml_expect(v, TSR_YAML_SEQUENCE, label));
    if (tsr_yaml_count(v) > max)
        return tsr_yaml_fail(v, "\"%s\" has %zu entries, more than the %zu allowed", label,
                             tsr_yaml_count(v), max);
    *out = v;
    return 0;
}

/* The i-th string of a list, refusing a duplicate of an earlier entry. */
static int list_str(const tsr_yaml_node *list, size_t i, const char *label, const char **s,
                    size_t *len)
{
    char what[128];
    snprintf(what, sizeof what, "%s[%zu]", label, i);
    TSR_GUARD(tsr_yaml_to_str(tsr_yaml_item(list, i), what, s, len));
    for (size_t j = 0; j < i; j++) {
        size_t olen;
        const char *o = tsr_yaml_scalar(tsr_yaml_item(list, j), &olen);
        if (o != NULL && olen == *len && memcmp(o, *s, olen) == 0) {
            char q[96];
            tsr_yaml_quote_bytes(*s, *len, q, sizeof q);
            return tsr_yaml_fail(tsr_yaml_item(list, i), "%s is listed twice in \"%s\"", q,
                                 label);
        }
    }
    return 0;
}

/* An absolute path in canonical form: starts with '/', no empty, "." or ".."
 * segment, no trailing slash (except "/" itself), no control character. */
static int check_abs_path(const tsr_yaml_node *n, const char *label, const char *s, size_t len)
{
    char q[96];
    tsr_yaml_quote_bytes(s, len, q, sizeof q);
    if (len > MAX_PATH_BYTES)
        return tsr_yaml_fail(n, "%s: path %s is longer than %d bytes", label, q, MAX_PATH_BYTES);
    if (len == 0 || s[0] != '/')
        return tsr_yaml_fail(n, "%s: path %s must be absolute", label, q);
    if (has_control(s, len))
        return tsr_yaml_fail(n, "%s: path %s contains a control character", label, q);
    if (len == 1) return 0;
    if (s[len - 1] == '/')
        return tsr_yaml_fail(n, "%s: path %s must not end with '/'", label, q);
    size_t i = 1;
    while (i <= len) {
        size_t start = i;
        while (i < len && s[i] != '/') i++;
        size_t seg = i - start;
        if (seg == 0)
            return tsr_yaml_fail(n, "%s: path %s has an empty segment (\"//\")", label, q);
        if (seg == 1 && s[start] == '.')
            return tsr_yaml_fail(n, "%s: path %s has a \".\" segment", label, q);
        if (seg == 2 && s[start] == '.' && s[start + 1] == '.')
            return tsr_yaml_fail(n, "%s: path %s has a \"..\" segment", label, q);
        i++;
    }
    return 0;
}

static int path_list(const tsr_yaml_node *map, const char *key, const char *label,
                     const tsr_yaml_node **out)
{
    TSR_GUARD(get_list(map, key, label, MAX_LIST, out));
    for (size_t i = 0; i < tsr_yaml_count(*out); i++) {
        const char *s;
        size_t len;
        TSR_GUARD(list_str(*out, i, label, &s, &len));
        TSR_GUARD(check_abs_path(tsr_yaml_item(*out, i), label, s, len));
    }
    return 0;
}

/* [a-z0-9._-]{1,64}, not "." or ".." (tsr_name.h). */
static bool valid_name(const char *s, size_t len)
{
    return tsr_name_valid(s, len, MAX_NAME_BYTES);
}

/* ---- filesystem --------------------------------------------------------- */

static int check_filesystem(const tsr_yaml_node *fs)
{
    const tsr_yaml_node *ro, *rw, *deny;
    TSR_GUARD(tsr_yaml_check_keys(fs, KEYS("read_only", "read_write", "deny")));
    TSR_GUARD(path_list(fs, "read_only", "filesystem.read_only", &ro));
    TSR_GUARD(path_list(fs, "read_write", "filesystem.read_write", &rw));
    TSR_GUARD(path_list(fs, "deny", "filesystem.deny", &deny));
    /* The same path both read-only and read-write is ambiguous. */
    for (size_t i = 0; i < tsr_yaml_count(rw); i++) {
        size_t a_len;
        const char *a = tsr_yaml_scalar(tsr_yaml_item(rw, i), &a_len);
        for (size_t j = 0; j < tsr_yaml_count(ro); j++) {
            size_t b_len;
            const char *b = tsr_yaml_scalar(tsr_yaml_item(ro, j), &b_len);
            if (a_len == b_len && memcmp(a, b, a_len) == 0) {
                char q[96];
                tsr_yaml_quote_bytes(a, a_len, q, sizeof q);
                return tsr_yaml_fail(tsr_yaml_item(rw, i),
                                     "%s is in both filesystem.read_only and "
                                     "filesystem.read_write",
                                     q);
            }
        }
    }
    return 0;
}

/* ---- network ------------------------------------------------------------ */

/* A DNS name, optionally with one leading "*." wildcard label: labels
 * [A-Za-z0-9-]{1,63} without a hyphen at either end, at most 253 bytes, and
 * a last label that is not all digits (so "1.2.3" is not taken for a name). */
static bool valid_dns_name(const char *s, size_t len)
{
    return tsr_dns_name_valid(s, len, TSR_DNS_WILDCARD | TSR_DNS_LAST_NOT_DIGITS);
}

/* IPv4/IPv6 literal, or a CIDR "addr/prefix" whose host bits are zero. */
static bool valid_ip_or_cidr(const char *s, size_t len, const char **why)
{
    char buf[64];
    unsigned char addr[16];
    *why = "not an IP address";
    if (len == 0 || len >= sizeof buf) return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *slash = strchr(buf, '/');
    long prefix = -1;
    if (slash != NULL) {
        const char *p = slash + 1;
        size_t plen = strlen(p);
        *why = "bad CIDR prefix length";
        if (plen == 0 || plen > 3 || strspn(p, "0123456789") != plen || (p[0] == '0' && plen > 1))
            return false;
        prefix = 0;
        for (size_t i = 0; i < plen; i++) prefix = prefix * 10 + (p[i] - '0');
        *slash = '\0';
    }
    int family = strchr(buf, ':') != NULL ? AF_INET6 : AF_INET;
    if (inet_pton(family, buf, addr) != 1) {
        *why = family == AF_INET6 ? "bad IPv6 address" : "bad IPv4 address";
        return false;
    }
    if (prefix < 0) return true;
    int bits = family == AF_INET6 ? 128 : 32;
    if (prefix > bits) {
        *why = family == AF_INET6 ? "CIDR prefix longer than 128" : "CIDR prefix longer than 32";
        return false;
    }
    for (int b = (int)prefix; b < bits; b++) {
        if (addr[b / 8] & (0x80 >> (b % 8))) {
            *why = "CIDR has bits set past its prefix length";
            return false;
        }
    }
    return true;
}

static int check_host(const tsr_yaml_node *n, const char *label, const char *s, size_t len)
{
    char q[96];
    tsr_yaml_quote_bytes(s, len, q, sizeof q);
    bool ip_like = memchr(s, ':', len) != NULL || memchr(s, '/', len) != NULL ||
                   strspn(s, "0123456789.") == len;
    if (ip_like) {
        const char *why;
        if (!valid_ip_or_cidr(s, len, &why))
            return tsr_yaml_fail(n, "%s: bad host %s: %s", label, q, why);
        return 0;
    }
    if (!valid_dns_name(s, len))
        return tsr_yaml_fail(n, "%s: bad host %s (expected a DNS name, \"*.\" + a DNS name, "
                                "an IP address or a CIDR)", label, q);
    return 0;
}

static int check_rules(const tsr_yaml_node *net, const char *key)
{
    char label[64];
    const tsr_yaml_node *rules;
    snprintf(label, sizeof label, "network.%s", key);
    TSR_GUARD(get_list(net, key, label, MAX_LIST, &rules));
    for (size_t i = 0; i < tsr_yaml_count(rules); i++) {
        const tsr_yaml_node *rule = tsr_yaml_item(rules, i);
        char what[96];
        snprintf(what, sizeof what, "%s[%zu]", label, i);
        TSR_GUARD(tsr_yaml_expect(rule, TSR_YAML_MAPPING, what));
        TSR_GUARD(tsr_yaml_check_keys(rule, KEYS("host", "ports")));

        const tsr_yaml_node *host = tsr_yaml_get(rule, "host");
        if (host == NULL) return tsr_yaml_fail(rule, "%s: \"host\" is required", what);
        char hwhat[128];
        snprintf(hwhat, sizeof hwhat, "%s.host", what);
        const char *s;
        size_t len;
        TSR_GUARD(tsr_yaml_to_str(host, hwhat, &s, &len));
        TSR_GUARD(check_host(host, hwhat, s, len));

        const tsr_yaml_node *ports;
        char pwhat[128];
        snprintf(pwhat, sizeof pwhat, "%s.ports", what);
        TSR_GUARD(get_list(rule, "ports", pwhat, MAX_LIST, &ports));
        if (ports == NULL) {
            if (tsr_yaml_get(rule, "ports") != NULL)
                return tsr_yaml_fail(tsr_yaml_get(rule, "ports"),
                                     "\"%s\" must list ports (leave it out for every port)",
                                     pwhat);
            continue;
        }
        if (tsr_yaml_count(ports) == 0)
            return tsr_yaml_fail(ports, "\"%s\" must list ports (leave it out for every port)",
                                 pwhat);
        for (size_t j = 0; j < tsr_yaml_count(ports); j++) {
            char one[160];
            int64_t port;
            snprintf(one, sizeof one, "%s[%zu]", pwhat, j);
            TSR_GUARD(tsr_yaml_to_int(tsr_yaml_item(ports, j), one, 1, 65535, &port));
        }
    }
    return 0;
}

static int check_network(const tsr_yaml_node *net)
{
    TSR_GUARD(tsr_yaml_check_keys(net, KEYS("default", "allow", "deny")));
    const tsr_yaml_node *def = tsr_yaml_get(net, "default");
    if (def != NULL) {
        const char *s;
        size_t len;
        TSR_GUARD(tsr_yaml_to_str(def, "network.default", &s, &len));
        if (strcmp(s, "deny") != 0 && strcmp(s, "allow") != 0) {
            char q[96];
            tsr_yaml_quote_bytes(s, len, q, sizeof q);
            return tsr_yaml_fail(def, "\"network.default\" must be deny or allow, not %s", q);
        }
    }
    TSR_GUARD(check_rules(net, "allow"));
    TSR_GUARD(check_rules(net, "deny"));
    return 0;
}

/* ---- process ------------------------------------------------------------ */

static int check_process(const tsr_yaml_node *proc)
{
    const tsr_yaml_node *exec, *v;
    int64_t n;
    bool b;
    TSR_GUARD(tsr_yaml_check_keys(proc, KEYS("allow_exec", "max_processes",
                                             "allow_privilege_escalation")));
    TSR_GUARD(path_list(proc, "allow_exec", "process.allow_exec", &exec));
    if ((v = tsr_yaml_get(proc, "max_processes")) != NULL)
        TSR_GUARD(tsr_yaml_to_int(v, "process.max_processes", 1, 65536, &n));
    if ((v = tsr_yaml_get(proc, "allow_privilege_escalation")) != NULL)
        TSR_GUARD(tsr_yaml_to_bool(v, "process.allow_privilege_escalation", &b));
    return 0;
}

/* ---- inference ---------------------------------------------------------- */

/* [A-Z_][A-Z0-9_]*, at most 128 bytes. */
static bool valid_env_name(const char *s, size_t len)
{
    if (len == 0 || len > MAX_ENV_BYTES) return false;
    if (!((s[0] >= 'A' && s[0] <= 'Z') || s[0] == '_')) return false;
    for (size_t i = 1; i < len; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return false;
    return true;
}

static bool same_scalar(const tsr_yaml_node *a, const tsr_yaml_node *b)
{
    size_t al, bl;
    const char *as = tsr_yaml_scalar(a, &al), *bs = tsr_yaml_scalar(b, &bl);
    return as != NULL && bs != NULL && al == bl && memcmp(as, bs, al) == 0;
}

static int check_provider(const tsr_yaml_node *providers, size_t i)
{
    const tsr_yaml_node *p = tsr_yaml_item(providers, i);
    char what[64], label[96];
    const char *s;
    size_t len;
    snprintf(what, sizeof what, "inference.providers[%zu]", i);
    TSR_GUARD(tsr_yaml_expect(p, TSR_YAML_MAPPING, what));
    TSR_GUARD(tsr_yaml_check_keys(p, KEYS("name", "models", "env")));

    const tsr_yaml_node *name = tsr_yaml_get(p, "name");
    if (name == NULL) return tsr_yaml_fail(p, "%s: \"name\" is required", what);
    snprintf(label, sizeof label, "%s.name", what);
    TSR_GUARD(tsr_yaml_to_str(name, label, &s, &len));
    if (!valid_name(s, len)) {
        char q[96];
        tsr_yaml_quote_bytes(s, len, q, sizeof q);
        return tsr_yaml_fail(name, "bad provider name %s (expected [a-z0-9._-]{1,64})", q);
    }
    for (size_t j = 0; j < i; j++) {
        if (same_scalar(name, tsr_yaml_get(tsr_yaml_item(providers, j), "name"))) {
            char q[96];
            tsr_yaml_quote_bytes(s, len, q, sizeof q);
            return tsr_yaml_fail(name, "provider %s is listed twice", q);
        }
    }

    const tsr_yaml_node *models;
    snprintf(label, sizeof label, "%s.models", what);
    if (tsr_yaml_get(p, "models") == NULL)
        return tsr_yaml_fail(p, "%s: \"models\" is required", what);
    TSR_GUARD(get_list(p, "models", label, MAX_LIST, &models));
    if (tsr_yaml_count(models) == 0)
        return tsr_yaml_fail(models != NULL ? models : tsr_yaml_get(p, "models"),
                             "\"%s\" must list at least one model", label);
    for (size_t j = 0; j < tsr_yaml_count(models); j++) {
        TSR_GUARD(list_str(models, j, label, &s, &len));
        const tsr_yaml_node *m = tsr_yaml_item(models, j);
        if (len == 0 || len > MAX_MODEL_BYTES)
            return tsr_yaml_fail(m, "%s[%zu]: a model name is 1 to %d bytes", label, j,
                                 MAX_MODEL_BYTES);
        if (has_control(s, len))
            return tsr_yaml_fail(m, "%s[%zu]: control character in a model name", label, j);
    }

    const tsr_yaml_node *env;
    snprintf(label, sizeof label, "%s.env", what);
    TSR_GUARD(get_list(p, "env", label, MAX_ENV, &env));
    for (size_t j = 0; j < tsr_yaml_count(env); j++) {
        const tsr_yaml_node *e = tsr_yaml_item(env, j);
        TSR_GUARD(list_str(env, j, label, &s, &len));
        char q[96];
        tsr_yaml_quote_bytes(s, len, q, sizeof q);
        if (!valid_env_name(s, len))
            return tsr_yaml_fail(e, "bad environment variable name %s (expected "
                                    "[A-Z_][A-Z0-9_]*, at most %d bytes)",
                                 q, MAX_ENV_BYTES);
        if (len >= 8 && memcmp(s, "TESSERA_", 8) == 0)
            return tsr_yaml_fail(e, "environment variable %s: TESSERA_* names are reserved", q);
        /* One variable comes from one provider only. */
        for (size_t k = 0; k < i; k++) {
            const tsr_yaml_node *other = tsr_yaml_get(tsr_yaml_item(providers, k), "env");
            for (size_t m = 0; m < tsr_yaml_count(other); m++)
                if (same_scalar(e, tsr_yaml_item(other, m)))
                    return tsr_yaml_fail(e, "environment variable %s is already given by "
                                            "inference.providers[%zu]",
                                         q, k);
        }
    }
    return 0;
}

static int check_inference(const tsr_yaml_node *inf)
{
    const tsr_yaml_node *providers;
    TSR_GUARD(tsr_yaml_check_keys(inf, KEYS("providers")));
    TSR_GUARD(get_list(inf, "providers", "inference.providers", MAX_PROVIDERS, &providers));
    for (size_t i = 0; i < tsr_yaml_count(providers); i++)
        TSR_GUARD(check_provider(providers, i));
    return 0;
}

/* ---- documents ---------------------------------------------------------- */

static const struct {
    const char *name;
    domain_fn check;
} domains[] = {
    {"filesystem", check_filesystem},
    {"network", check_network},
    {"process", check_process},
    {"inference", check_inference},
};
#define N_DOMAINS (sizeof domains / sizeof domains[0])

int pol_is_domain(const char *name)
{
    if (name == NULL) return 0;
    for (size_t i = 0; i < N_DOMAINS; i++)
        if (strcmp(name, domains[i].name) == 0) return 1;
    return 0;
}

/* A domain's body: null (nothing allowed) or a mapping checked by fn. */
static int check_domain_body(const tsr_yaml_node *body, size_t d)
{
    if (body == NULL || tsr_yaml_is_null(body)) return 0;
    TSR_GUARD(tsr_yaml_expect(body, TSR_YAML_MAPPING, domains[d].name));
    return domains[d].check(body);
}

static int parse(const char *yaml, size_t len, tsr_yaml_doc **doc)
{
    TSR_GUARD(tsr_yaml_parse(POLICY_NAME, yaml, len, &policy_limits, doc));
    const tsr_yaml_node *root = tsr_yaml_root(*doc);
    if (root == NULL || tsr_yaml_is_null(root)) {
        tsr_yaml_free(*doc);
        *doc = NULL;
        return TSR_FAIL(TSR_E_INPUT, POLICY_NAME ": empty document");
    }
    return 0;
}

static int check_policy(const tsr_yaml_node *root)
{
    TSR_GUARD(tsr_yaml_expect(root, TSR_YAML_MAPPING, POLICY_NAME));
    TSR_GUARD(tsr_yaml_check_keys(root, KEYS("version", "filesystem", "network", "process",
                                             "inference")));
    const tsr_yaml_node *version = tsr_yaml_get(root, "version");
    if (version == NULL) return tsr_yaml_fail(root, "\"version\" is required (version: 1)");
    int64_t v;
    TSR_GUARD(tsr_yaml_to_int(version, "version", INT64_MIN, INT64_MAX, &v));
    if (v != 1)
        return tsr_yaml_fail(version, "unsupported policy version %lld (expected 1)",
                             (long long)v);
    for (size_t d = 0; d < N_DOMAINS; d++)
        TSR_GUARD(check_domain_body(tsr_yaml_get(root, domains[d].name), d));
    return 0;
}

int pol_validate(const char *yaml, size_t len)
{
    tsr_yaml_doc *doc = NULL;
    TSR_GUARD(parse(yaml, len, &doc));
    int rc = check_policy(tsr_yaml_root(doc));
    tsr_yaml_free(doc);
    return rc;
}

int pol_validate_domain(const char *domain, const char *yaml, size_t len)
{
    size_t d = 0;
    while (d < N_DOMAINS && (domain == NULL || strcmp(domain, domains[d].name) != 0)) d++;
    if (d == N_DOMAINS) {
        char q[96];
        tsr_yaml_quote_bytes(domain != NULL ? domain : "", domain != NULL ? strlen(domain) : 0,
                             q, sizeof q);
        return TSR_FAIL(TSR_E_INPUT,
                        POLICY_NAME ": unknown domain %s (expected one of: filesystem, network, "
                                    "process, inference)",
                        q);
    }
    tsr_yaml_doc *doc = NULL;
    TSR_GUARD(parse(yaml, len, &doc));
    int rc = check_domain_body(tsr_yaml_root(doc), d);
    tsr_yaml_free(doc);
    return rc;
}
