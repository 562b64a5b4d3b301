#include "gw_config.h"

#include <arpa/inet.h>
#include <grp.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "gw_store.h"
#include "tsr_fs.h"
#include "tsr_name.h"
#include "tsr_yaml.h"

#define SECRETS_ENV "TESSERA_SECRETS_KEY_FILE"
#define MINUTE 60
#define HOUR 3600

/* ---- small validators --------------------------------------------------- */

static bool valid_driver_name(const char *s, size_t len)
{
    if (len == 0 || len > 32) return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
              s[i] == '-'))
            return false;
    return true;
}

/* A DNS host name (tsr_name.h), not all digits and dots. */
static bool valid_dns_name(const char *s, size_t len)
{
    return tsr_dns_name_valid(s, len, TSR_DNS_NOT_DIGITS);
}

/* "HOST:PORT" with HOST an IPv4 literal, [IPv6 literal] or DNS name. */
static int parse_listen(const char *s, char *host, size_t host_cap, uint16_t *port)
{
    TSR_ENSURE(s != NULL && s[0] != '\0', TSR_E_INPUT, "empty listen address");
    size_t len = strlen(s);
    TSR_ENSURE(len <= 300, TSR_E_INPUT, "listen address is too long");
    const char *h, *colon;
    size_t hlen;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        TSR_ENSURE(close != NULL, TSR_E_INPUT, "bad listen address \"%s\": missing ']'", s);
        h = s + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
        TSR_ENSURE(*colon == ':', TSR_E_INPUT,
                   "bad listen address \"%s\": missing port (expected [ADDR]:PORT)", s);
        char tmp[64];
        unsigned char addr[16];
        TSR_ENSURE(hlen > 0 && hlen < sizeof tmp, TSR_E_INPUT,
                   "bad listen address \"%s\": bad IPv6 address", s);
        memcpy(tmp, h, hlen);
        tmp[hlen] = '\0';
        TSR_ENSURE(inet_pton(AF_INET6, tmp, addr) == 1, TSR_E_INPUT,
                   "bad listen address \"%s\": bad IPv6 address", s);
    } else {
        colon = strrchr(s, ':');
        TSR_ENSURE(colon != NULL, TSR_E_INPUT,
                   "bad listen address \"%s\": missing port (expected HOST:PORT)", s);
        h = s;
        hlen = (size_t)(colon - s);
        TSR_ENSURE(memchr(h, ':', hlen) == NULL, TSR_E_INPUT,
                   "bad listen address \"%s\": an IPv6 address needs brackets, like [::1]:8443",
                   s);
        TSR_ENSURE(hlen > 0, TSR_E_INPUT, "bad listen address \"%s\": missing host", s);
        bool numeric = strspn(h, "0123456789.") >= hlen;
        if (numeric) {
            char tmp[16];
            unsigned char addr[4];
            TSR_ENSURE(hlen < sizeof tmp, TSR_E_INPUT,
                       "bad listen address \"%s\": bad IPv4 address", s);
            memcpy(tmp, h, hlen);
            tmp[hlen] = '\0';
            TSR_ENSURE(inet_pton(AF_INET, tmp, addr) == 1, TSR_E_INPUT,
                       "bad listen address \"%s\": bad IPv4 address", s);
        } else {
            TSR_ENSURE(valid_dns_name(h, hlen), TSR_E_INPUT,
                       "bad listen address \"%s\": bad host name", s);
        }
    }
    const char *p = colon + 1;
    size_t plen = strlen(p);
    TSR_ENSURE(plen > 0, TSR_E_INPUT, "bad listen address \"%s\": missing port", s);
    TSR_ENSURE(plen <= 5 && strspn(p, "0123456789") == plen && (p[0] != '0' || plen == 1),
               TSR_E_INPUT, "bad listen address \"%s\": bad port (expected 0..65535)", s);
    unsigned long v = strtoul(p, NULL, 10);
    TSR_ENSURE(v <= 65535, TSR_E_INPUT, "bad listen address \"%s\": bad port (expected 0..65535)",
               s);
    TSR_ENSURE(hlen < host_cap, TSR_E_INPUT, "bad listen address \"%s\": host is too long", s);
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (uint16_t)v;
    return 0;
}

int gw_config_set_listen(gw_config *c, const char *host_port)
{
    char host[sizeof c->listen_host];
    uint16_t port = 0;
    TSR_GUARD(parse_listen(host_port, host, sizeof host, &port));
    memcpy(c->listen_host, host, sizeof host);
    c->listen_port = port;
    return 0;
}

/* ---- paths -------------------------------------------------------------- */

static int copy_path(char out[GW_CONFIG_PATH_MAX], const char *s)
{
    size_t n = strlen(s);
    TSR_ENSURE(n < GW_CONFIG_PATH_MAX, TSR_E_INPUT, "path is longer than %d bytes",
               GW_CONFIG_PATH_MAX - 1);
    memcpy(out, s, n + 1);
    return 0;
}

/* Resolve `rel` against the absolute, symlink-free directory `base`.
 * Leading "./" and "../" segments are folded into base (safe: base has no
 * symlinks); what follows is appended as written. */
static int resolve_path(const char *base, const char *p, char out[GW_CONFIG_PATH_MAX])
{
    if (p[0] == '/') return copy_path(out, p);
    char dir[GW_CONFIG_PATH_MAX];
    TSR_GUARD(copy_path(dir, base));
    for (;;) {
        if (p[0] == '.' && (p[1] == '/' || p[1] == '\0')) {
            p += 1;
        } else if (p[0] == '.' && p[1] == '.' && (p[2] == '/' || p[2] == '\0')) {
            p += 2;
            char *slash = strrchr(dir, '/');
            if (slash == dir) dir[1] = '\0';
            else if (slash != NULL) *slash = '\0';
        } else {
            break;
        }
        while (*p == '/') p++;
    }
    if (*p == '\0') return copy_path(out, dir);
    int n = snprintf(out, GW_CONFIG_PATH_MAX, "%s%s%s", dir,
                     dir[strlen(dir) - 1] == '/' ? "" : "/", p);
    TSR_ENSURE(n > 0 && n < GW_CONFIG_PATH_MAX, TSR_E_INPUT, "path is longer than %d bytes",
               GW_CONFIG_PATH_MAX - 1);
    return 0;
}

/* The absolute directory holding the config file. */
static int config_dir(const char *path, char out[GW_CONFIG_PATH_MAX])
{
    char dir[GW_CONFIG_PATH_MAX];
    TSR_GUARD(copy_path(dir, path));
    char *slash = strrchr(dir, '/');
    if (slash == NULL) strcpy(dir, ".");
    else if (slash == dir) dir[1] = '\0';
    else *slash = '\0';
    char real[PATH_MAX];
    TSR_ENSURE(realpath(dir, real) != NULL, TSR_E_IO, "%s: cannot resolve its directory", path);
    return copy_path(out, real);
}

/* A path-valued key: a non-empty string without control characters,
 * resolved against base. Absent: out unchanged. */
static int get_path(const tsr_yaml_node *map, const char *key, const char *base, bool allow_empty,
                    bool allow_dash, char out[GW_CONFIG_PATH_MAX], bool *found)
{
    const tsr_yaml_node *v = tsr_yaml_get(map, key);
    if (found != NULL) *found = v != NULL;
    if (v == NULL) return 0;
    const char *s;
    size_t len;
    TSR_GUARD(tsr_yaml_to_str(v, key, &s, &len));
    if (len == 0) {
        if (!allow_empty) return tsr_yaml_fail(v, "\"%s\" must not be empty", key);
        out[0] = '\0';
        return 0;
    }
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return tsr_yaml_fail(v, "\"%s\" contains a control character", key);
    if (allow_dash && strcmp(s, "-") == 0) {
        strcpy(out, "-");
        return 0;
    }
    if (resolve_path(base, s, out) != 0)
        return tsr_yaml_fail(v, "\"%s\" is longer than %d bytes once resolved", key,
                             GW_CONFIG_PATH_MAX - 1);
    return 0;
}

/* ---- defaults ----------------------------------------------------------- */

static void set_numeric_defaults(gw_config *c)
{
    strcpy(c->trust_domain, "tessera.local");
    strcpy(c->listen_host, "127.0.0.1");
    c->listen_port = 8443;
    c->workers = 0;
    c->sandbox_cert_ttl = HOUR;
    c->renew_limit = 10;
    c->crl_validity = 6 * HOUR;
    c->renew_window = HOUR;
    c->max_message_bytes = 4u * 1024 * 1024;
    c->max_concurrent_streams = 100;
    c->max_connections = 10000;
    c->handshake_timeout_ms = 10 * 1000;
    c->idle_timeout_ms = 5 * MINUTE * 1000;
    c->log_lines_per_batch = 1000;
    c->log_line_bytes = 16384;
    strcpy(c->default_driver, "process");
    c->drivers_dir[0] = '\0';
    strcpy(c->proxy_header, GW_CONFIG_DEFAULT_PROXY_HEADER);
    c->proxy_format = GW_FORWARD_ESCAPED_PEM;
    c->proxy_socket_path[0] = '\0';
    c->proxy_socket_mode = 0600;
    c->metrics_host[0] = '\0';
    c->metrics_port = 0;
}

static const struct {
    size_t offset;
    const char *key;
    const char *file;
} pki_files[] = {
    {offsetof(gw_config, bundle_path), "bundle", "bundle.pem"},
    {offsetof(gw_config, issuing_cert_path), "issuing_cert", "issuing.pem"},
    {offsetof(gw_config, issuing_key_path), "issuing_key", "issuing.key"},
    {offsetof(gw_config, server_cert_path), "server_cert", "gateway.pem"},
    {offsetof(gw_config, server_key_path), "server_key", "gateway.key"},
};
#define N_PKI (sizeof pki_files / sizeof pki_files[0])

static char *field(gw_config *c, size_t offset)
{
    return (char *)c + offset;
}

static int apply_secrets_env(gw_config *c)
{
    const char *env = getenv(SECRETS_ENV);
    if (env == NULL || env[0] == '\0') return 0;
    TSR_ENSURE(strlen(env) < sizeof c->secrets_key_path, TSR_E_INPUT,
               "%s is longer than %zu bytes", SECRETS_ENV, sizeof c->secrets_key_path - 1);
    strcpy(c->secrets_key_path, env);
    return 0;
}

int gw_config_defaults(gw_config **out)
{
    *out = NULL;
    gw_config *c = calloc(1, sizeof *c);
    TSR_ENSURE(c != NULL, TSR_E_INTERNAL, "out of memory");
    set_numeric_defaults(c);
    strcpy(c->data_dir, "var/data");
    for (size_t i = 0; i < N_PKI; i++)
        snprintf(field(c, pki_files[i].offset), GW_CONFIG_PATH_MAX, "var/pki/%s",
                 pki_files[i].file);
    strcpy(c->store_path, "var/data/tessera.db");
    strcpy(c->secrets_key_path, "var/data/secrets.key");
    strcpy(c->audit_path, "var/data/audit.log");
    if (apply_secrets_env(c) != 0) {
        gw_config_free(c);
        return -1;
    }
    *out = c;
    return 0;
}

/* ---- loading ------------------------------------------------------------ */

#define KEYS(...) ((const char *const[]){__VA_ARGS__}), \
    (sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))

static int load_users(gw_config *c, const tsr_yaml_node *users)
{
    size_t n = tsr_yaml_count(users);
    if (n == 0) return 0;
    if (n > GW_CONFIG_MAX_USERS)
        return tsr_yaml_fail(users, "more than %d users", GW_CONFIG_MAX_USERS);
    c->users = calloc(n, sizeof *c->users);
    TSR_ENSURE(c->users != NULL, TSR_E_INTERNAL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const tsr_yaml_node *k = tsr_yaml_pair_key(users, i);
        const tsr_yaml_node *v = tsr_yaml_pair_value(users, i);
        size_t klen;
        const char *name = tsr_yaml_scalar(k, &klen);
        char q[96];
        tsr_yaml_quote_bytes(name, klen, q, sizeof q);
        if (!tsr_name_valid(name, klen, sizeof c->users[i].name - 1))
            return tsr_yaml_fail(k, "bad user name %s (expected [a-z0-9._-]{1,64})", q);
        const char *role;
        size_t rlen;
        if (tsr_yaml_kind(v) != TSR_YAML_SCALAR || tsr_yaml_is_null(v))
            return tsr_yaml_fail(v, "role of user %s must be admin, operator or viewer", q);
        TSR_GUARD(tsr_yaml_to_str(v, "role", &role, &rlen));
        enum gw_role r = GW_ROLE_NONE;
        if (strcmp(role, "admin") == 0) r = GW_ROLE_ADMIN;
        else if (strcmp(role, "operator") == 0) r = GW_ROLE_OPERATOR;
        else if (strcmp(role, "viewer") == 0) r = GW_ROLE_VIEWER;
        if (r == GW_ROLE_NONE) {
            char rq[96];
            tsr_yaml_quote_bytes(role, rlen, rq, sizeof rq);
            return tsr_yaml_fail(v, "bad role %s for user %s (expected admin, operator or viewer)",
                                 rq, q);
        }
        memcpy(c->users[i].name, name, klen + 1);
        c->users[i].role = r;
        c->n_users = i + 1;
    }
    return 0;
}

static int load_limits(gw_config *c, const tsr_yaml_node *lim)
{
    if (lim == NULL) return 0;
    TSR_GUARD(tsr_yaml_check_keys(lim, KEYS("max_message_bytes", "max_concurrent_streams",
                                            "max_connections", "handshake_timeout",
                                            "idle_timeout", "log_lines_per_batch",
                                            "log_line_bytes")));
    int64_t v;
    v = c->max_message_bytes;
    TSR_GUARD(tsr_yaml_get_int(lim, "max_message_bytes", 1024, 64 * 1024 * 1024, &v));
    c->max_message_bytes = (uint32_t)v;
    v = c->max_concurrent_streams;
    TSR_GUARD(tsr_yaml_get_int(lim, "max_concurrent_streams", 1, 1000, &v));
    c->max_concurrent_streams = (uint32_t)v;
    v = c->max_connections;
    TSR_GUARD(tsr_yaml_get_int(lim, "max_connections", 1, 1000000, &v));
    c->max_connections = (uint32_t)v;
    v = c->handshake_timeout_ms / 1000;
    TSR_GUARD(tsr_yaml_get_duration(lim, "handshake_timeout", 1, 5 * MINUTE, &v));
    c->handshake_timeout_ms = v * 1000;
    v = c->idle_timeout_ms / 1000;
    TSR_GUARD(tsr_yaml_get_duration(lim, "idle_timeout", 10, 24 * HOUR, &v));
    c->idle_timeout_ms = v * 1000;
    v = c->log_lines_per_batch;
    TSR_GUARD(tsr_yaml_get_int(lim, "log_lines_per_batch", 1, 100000, &v));
    c->log_lines_per_batch = (uint32_t)v;
    v = c->log_line_bytes;
    TSR_GUARD(tsr_yaml_get_int(lim, "log_line_bytes", 64, 1024 * 1024, &v));
    c->log_line_bytes = (uint32_t)v;
    return 0;
}

/* A sub-mapping holding exactly one path key (store, secrets, audit):
 * the given path, or <data_dir>/<file>. */
static int load_data_file(const tsr_yaml_node *root, const char *section, const char *key,
                          const char *base, const char *data_dir, const char *file,
                          bool allow_dash, char out[GW_CONFIG_PATH_MAX])
{
    const tsr_yaml_node *m;
    bool found = false;
    TSR_GUARD(tsr_yaml_get_map(root, section, &m));
    if (m != NULL) {
        TSR_GUARD(tsr_yaml_check_keys(m, &key, 1));
        TSR_GUARD(get_path(m, key, base, false, allow_dash, out, &found));
    }
    if (found) return 0;
    if (tsr_path_join(out, GW_CONFIG_PATH_MAX, data_dir, file) == 0) return 0;
    const tsr_yaml_node *dd = tsr_yaml_get(root, "data_dir");
    if (dd != NULL) return tsr_yaml_fail(dd, "\"data_dir\" is too long");
    return TSR_FAIL(TSR_E_INPUT, "data_dir is too long");
}

/* store: {path: FILE} (sqlite, the default backend) or {backend: postgres,
 * dsn: "libpq connection string"} (docs/operations.md, "Replicas on
 * PostgreSQL"); store_path is then GW_STORE_PG_PREFIX + the DSN. */
static int load_store(const tsr_yaml_node *root, const char *base, gw_config *c)
{
    const tsr_yaml_node *m, *n;
    char backend[16] = "sqlite";
    TSR_GUARD(tsr_yaml_get_map(root, "store", &m));
    if (m != NULL) {
        TSR_GUARD(tsr_yaml_check_keys(m, KEYS("backend", "path", "dsn")));
        TSR_GUARD(tsr_yaml_get_strbuf(m, "backend", backend, sizeof backend));
    }
    if (strcmp(backend, "postgres") == 0) {
        if (tsr_yaml_get(m, "path") != NULL)
            return tsr_yaml_fail(tsr_yaml_get(m, "path"), "store.path is for backend sqlite");
        if ((n = tsr_yaml_get(m, "dsn")) == NULL)
            return tsr_yaml_fail(m, "store backend postgres needs a dsn");
        const char *dsn;
        size_t len;
        TSR_GUARD(tsr_yaml_to_str(n, "dsn", &dsn, &len));
        if (len == 0 || strlen(GW_STORE_PG_PREFIX) + len >= sizeof c->store_path)
            return tsr_yaml_fail(n, "store.dsn is empty or too long");
        snprintf(c->store_path, sizeof c->store_path, "%s%s", GW_STORE_PG_PREFIX, dsn);
        return 0;
    }
    if (strcmp(backend, "sqlite") != 0)
        return tsr_yaml_fail(tsr_yaml_get(m, "backend"),
                             "store.backend must be sqlite or postgres");
    if (m != NULL && tsr_yaml_get(m, "dsn") != NULL)
        return tsr_yaml_fail(tsr_yaml_get(m, "dsn"), "store.dsn is for backend postgres");
    const tsr_yaml_node *path = m != NULL ? tsr_yaml_get(m, "path") : NULL;
    if (path != NULL) return get_path(m, "path", base, false, false, c->store_path, NULL);
    if (tsr_path_join(c->store_path, GW_CONFIG_PATH_MAX, c->data_dir, "tessera.db") == 0)
        return 0;
    return TSR_FAIL(TSR_E_INPUT, "data_dir is too long");
}

/* Header names that already mean something to HTTP/2 or gRPC: a proxy
 * header must not alias one of them. */
static bool reserved_header(const char *s, size_t len)
{
    static const char *const reserved[] = {
        "content-type", "te", "user-agent", "host", "connection", "keep-alive",
        "transfer-encoding", "upgrade", "proxy-connection", "content-length",
    };
    if (len >= 5 && memcmp(s, "grpc-", 5) == 0) return true;
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        if (strlen(reserved[i]) == len && memcmp(reserved[i], s, len) == 0) return true;
    return false;
}

/* A lowercase HTTP/2 header name: [a-z0-9][a-z0-9-]{0,63}. */
static bool valid_header_name(const char *s, size_t len)
{
    if (len == 0 || len > GW_CONFIG_HEADER_MAX || s[0] == '-') return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

/* drivers.options: {<driver>: {<key>: <scalar>}}; what each key means is the
 * driver's business (it refuses keys it does not know at load). */
static int load_driver_options(gw_config *c, const tsr_yaml_node *opts)
{
    size_t total = 0;
    for (size_t i = 0; i < tsr_yaml_count(opts); i++)
        total += tsr_yaml_count(tsr_yaml_pair_value(opts, i));
    if (total == 0) return 0;
    if (total > GW_CONFIG_MAX_DRIVER_OPTIONS)
        return tsr_yaml_fail(opts, "more than %d driver options", GW_CONFIG_MAX_DRIVER_OPTIONS);
    c->driver_options = calloc(total, sizeof *c->driver_options);
    TSR_ENSURE(c->driver_options != NULL, TSR_E_INTERNAL, "out of memory");
    for (size_t i = 0; i < tsr_yaml_count(opts); i++) {
        const tsr_yaml_node *name = tsr_yaml_pair_key(opts, i);
        const tsr_yaml_node *kv = tsr_yaml_pair_value(opts, i);
        const char *s;
        size_t len;
        TSR_GUARD(tsr_yaml_to_str(name, "driver name", &s, &len));
        if (!valid_driver_name(s, len))
            return tsr_yaml_fail(name, "bad driver name (expected [a-z0-9_-]{1,32})");
        TSR_GUARD(tsr_yaml_expect(kv, TSR_YAML_MAPPING, "driver options"));
        for (size_t j = 0; j < tsr_yaml_count(kv); j++) {
            gw_driver_option *o = &c->driver_options[c->n_driver_options];
            memcpy(o->driver, s, len + 1);
            TSR_GUARD(tsr_yaml_to_strbuf(tsr_yaml_pair_key(kv, j), "option name", o->key,
                                         sizeof o->key));
            TSR_GUARD(tsr_yaml_to_strbuf(tsr_yaml_pair_value(kv, j), "option value", o->value,
                                         sizeof o->value));
            c->n_driver_options++;
        }
    }
    return 0;
}

/* A group name ([a-z_][a-z0-9_-]*, at most 32) or a decimal gid, which must
 * exist on this host. */
static int resolve_group(const tsr_yaml_node *n, const char *s, size_t len, gid_t *out)
{
    char q[96];
    tsr_yaml_quote_bytes(s, len, q, sizeof q);
    bool digits = len > 0 && len <= 9, name = len > 0 && len <= 32;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        digits = digits && ch >= '0' && ch <= '9';
        name = name && ((ch >= 'a' && ch <= 'z') || ch == '_' ||
                        (i > 0 && ((ch >= '0' && ch <= '9') || ch == '-')));
    }
    if (!digits && !name)
        return tsr_yaml_fail(n, "bad group %s (a group name or a numeric gid)", q);
    struct group gr, *found = NULL;
    char buf[16384];
    int e = digits ? getgrgid_r((gid_t)strtoul(s, NULL, 10), &gr, buf, sizeof buf, &found)
                   : getgrnam_r(s, &gr, buf, sizeof buf, &found);
    if (e != 0 || found == NULL) return tsr_yaml_fail(n, "group %s does not exist", q);
    *out = found->gr_gid;
    return 0;
}

static int load_unix_socket(gw_config *c, const tsr_yaml_node *m, const char *base)
{
    TSR_GUARD(tsr_yaml_check_keys(m, KEYS("path", "mode", "group")));
    const tsr_yaml_node *n = tsr_yaml_get(m, "path");
    if (n == NULL) return tsr_yaml_fail(m, "proxy.unix_socket needs a path");
    TSR_GUARD(get_path(m, "path", base, false, false, c->proxy_socket_path, NULL));
    if (strlen(c->proxy_socket_path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return tsr_yaml_fail(n, "unix socket path longer than %zu bytes once resolved",
                             sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
    if ((n = tsr_yaml_get(m, "mode")) != NULL) {
        const char *s;
        size_t len;
        TSR_GUARD(tsr_yaml_to_str(n, "mode", &s, &len));
        /* Quoted: YAML would read a plain 0660 as a number. */
        bool ok = tsr_yaml_is_quoted(n) && len >= 3 && len <= 4;
        unsigned v = 0;
        for (size_t i = 0; ok && i < len; i++) {
            ok = s[i] >= '0' && s[i] <= '7';
            v = v * 8 + (unsigned)(s[i] - '0');
        }
        if (!ok) return tsr_yaml_fail(n, "mode must be an octal string such as \"0660\"");
        /* Connecting needs write permission: never for "other"; never
         * execute or special bits. */
        if ((v & ~0660u) != 0 || (v & 0600u) != 0600u)
            return tsr_yaml_fail(n, "mode %s: allowed are 0600, 0620, 0640 and 0660 (owner "
                                    "read-write, group optional, never others)", s);
        c->proxy_socket_mode = v;
    }
    if ((n = tsr_yaml_get(m, "group")) != NULL) {
        const char *s;
        size_t len;
        TSR_GUARD(tsr_yaml_to_str(n, "group", &s, &len));
        TSR_GUARD(resolve_group(n, s, len, &c->proxy_socket_gid));
        c->proxy_socket_set_group = true;
    }
    return 0;
}

static int load_proxy(gw_config *c, const tsr_yaml_node *m, const char *base)
{
    if (m == NULL) return 0;
    TSR_GUARD(tsr_yaml_check_keys(m, KEYS("trusted", "header", "format", "unix_socket")));
    const tsr_yaml_node *sock = NULL;
    TSR_GUARD(tsr_yaml_get_map(m, "unix_socket", &sock));
    if (sock != NULL) TSR_GUARD(load_unix_socket(c, sock, base));
    const tsr_yaml_node *seq, *n;
    TSR_GUARD(tsr_yaml_get_seq(m, "trusted", &seq));
    size_t count = tsr_yaml_count(seq);
    if (count > GW_CONFIG_MAX_PROXIES)
        return tsr_yaml_fail(seq, "more than %d trusted proxies", GW_CONFIG_MAX_PROXIES);
    if (count > 0) {
        c->proxies = calloc(count, sizeof *c->proxies);
        TSR_ENSURE(c->proxies != NULL, TSR_E_INTERNAL, "out of memory");
    }
    for (size_t i = 0; i < count; i++) {
        const tsr_yaml_node *item = tsr_yaml_item(seq, i);
        const char *name;
        size_t len;
        if (tsr_yaml_kind(item) != TSR_YAML_SCALAR || tsr_yaml_is_null(item))
            return tsr_yaml_fail(item, "a trusted proxy must be a name");
        TSR_GUARD(tsr_yaml_to_str(item, "trusted", &name, &len));
        char q[96];
        tsr_yaml_quote_bytes(name, len, q, sizeof q);
        if (!tsr_name_valid(name, len, sizeof c->proxies[i].name - 1))
            return tsr_yaml_fail(item, "bad proxy name %s (expected [a-z0-9._-]{1,64}, the "
                                       "<name> of spiffe://<trust_domain>/proxy/<name>)", q);
        if (gw_config_proxy_trusted(c, name))
            return tsr_yaml_fail(item, "proxy %s listed twice", q);
        memcpy(c->proxies[i].name, name, len + 1);
        c->n_proxies = i + 1;
    }
    bool format_set = false;
    if ((n = tsr_yaml_get(m, "header")) != NULL) {
        const char *s;
        size_t len;
        TSR_GUARD(tsr_yaml_to_str(n, "header", &s, &len));
        char q[96];
        tsr_yaml_quote_bytes(s, len, q, sizeof q);
        if (!valid_header_name(s, len))
            return tsr_yaml_fail(n, "bad header name %s (expected lowercase [a-z0-9-]{1,64})", q);
        if (reserved_header(s, len))
            return tsr_yaml_fail(n, "header %s is reserved by HTTP/2 or gRPC", q);
        memcpy(c->proxy_header, s, len + 1);
    }
    if ((n = tsr_yaml_get(m, "format")) != NULL) {
        const char *s;
        size_t len;
        TSR_GUARD(tsr_yaml_to_str(n, "format", &s, &len));
        if (strcmp(s, "escaped-pem") == 0) {
            c->proxy_format = GW_FORWARD_ESCAPED_PEM;
        } else if (strcmp(s, "xfcc") == 0) {
            c->proxy_format = GW_FORWARD_XFCC;
        } else {
            char q[96];
            tsr_yaml_quote_bytes(s, len, q, sizeof q);
            return tsr_yaml_fail(n, "bad format %s (expected escaped-pem or xfcc)", q);
        }
        format_set = true;
    }
    if (!format_set)
        c->proxy_format = strcmp(c->proxy_header, "x-forwarded-client-cert") == 0
                              ? GW_FORWARD_XFCC
                              : GW_FORWARD_ESCAPED_PEM;
    return 0;
}

/* 127.0.0.0/8, ::1 or localhost: metrics are never exposed beyond the host. */
static bool loopback_host(const char *host)
{
    unsigned char a4[4], a6[16];
    if (strcmp(host, "localhost") == 0) return true;
    if (inet_pton(AF_INET, host, a4) == 1) return a4[0] == 127;
    if (inet_pton(AF_INET6, host, a6) == 1) {
        static const unsigned char one[16] = {[15] = 1};
        return memcmp(a6, one, sizeof one) == 0;
    }
    return false;
}

static int load_metrics(gw_config *c, const tsr_yaml_node *m)
{
    if (m == NULL) return 0;
    TSR_GUARD(tsr_yaml_check_keys(m, KEYS("listen")));
    const tsr_yaml_node *n = tsr_yaml_get(m, "listen");
    if (n == NULL) return 0;
    const char *s;
    size_t len;
    if (tsr_yaml_kind(n) == TSR_YAML_SCALAR && tsr_yaml_is_null(n))
        return tsr_yaml_fail(n, "\"listen\" must be a string (\"\" disables metrics)");
    TSR_GUARD(tsr_yaml_to_str(n, "listen", &s, &len));
    if (len == 0) {
        c->metrics_host[0] = '\0';
        c->metrics_port = 0;
        return 0;
    }
    char host[sizeof c->metrics_host];
    uint16_t port = 0;
    if (parse_listen(s, host, sizeof host, &port) != 0) {
        char reason[400];
        snprintf(reason, sizeof reason, "metrics: %s", tsr_errmsg());
        return tsr_yaml_fail(n, "%s", reason);
    }
    if (!loopback_host(host))
        return tsr_yaml_fail(n, "metrics: listen address %s is not a loopback address "
                                "(127.0.0.0/8, [::1] or localhost)", host);
    memcpy(c->metrics_host, host, sizeof host);
    c->metrics_port = port;
    return 0;
}

/* bundle_endpoint: {listen: HOST:PORT, cert: FILE, key: FILE}; off unless
 * listen is given. cert and key go together (https_web); without them the
 * gateway's own certificate serves it (https_spiffe). */
static int load_bundle_endpoint(gw_config *c, const tsr_yaml_node *m, const char *base)
{
    if (m == NULL) return 0;
    TSR_GUARD(tsr_yaml_check_keys(m, KEYS("listen", "cert", "key")));
    const tsr_yaml_node *n = tsr_yaml_get(m, "listen");
    if (n == NULL) return tsr_yaml_fail(m, "bundle_endpoint: \"listen\" is required");
    const char *s;
    TSR_GUARD(tsr_yaml_to_str(n, "listen", &s, NULL));
    if (parse_listen(s, c->bundle_host, sizeof c->bundle_host, &c->bundle_port) != 0) {
        char reason[400];
        snprintf(reason, sizeof reason, "bundle_endpoint: %s", tsr_errmsg());
        c->bundle_host[0] = '\0';
        return tsr_yaml_fail(n, "%s", reason);
    }
    bool has_cert = false, has_key = false;
    TSR_GUARD(get_path(m, "cert", base, false, false, c->bundle_cert_path, &has_cert));
    TSR_GUARD(get_path(m, "key", base, false, false, c->bundle_key_path, &has_key));
    if (has_cert != has_key)
        return tsr_yaml_fail(m, "bundle_endpoint: \"cert\" and \"key\" go together");
    return 0;
}

/* Paths not in the file default relative to the file's directory, like
 * any path in it. */
static int load_path_defaults(gw_config *c, const char *base)
{
    TSR_GUARD(resolve_path(base, "var/data", c->data_dir));
    for (size_t i = 0; i < N_PKI; i++) {
        char rel[64];
        snprintf(rel, sizeof rel, "var/pki/%s", pki_files[i].file);
        TSR_GUARD(resolve_path(base, rel, field(c, pki_files[i].offset)));
    }
    return 0;
}

/* trust_domain, listen, workers, data_dir: the top-level scalars. */
static int load_top_level(gw_config *c, const tsr_yaml_node *root, const char *base)
{
    const tsr_yaml_node *n;
    if ((n = tsr_yaml_get(root, "trust_domain")) != NULL) {
        const char *s;
        size_t len;
        TSR_GUARD(tsr_yaml_to_str(n, "trust_domain", &s, &len));
        bool ok = len > 0 && len < sizeof c->trust_domain && tsr_name_chars(s, len);
        if (!ok) {
            char q[96];
            tsr_yaml_quote_bytes(s, len, q, sizeof q);
            return tsr_yaml_fail(n, "bad trust_domain %s (expected [a-z0-9._-]{1,255})", q);
        }
        memcpy(c->trust_domain, s, len + 1);
    }

    if ((n = tsr_yaml_get(root, "listen")) != NULL) {
        const char *s;
        TSR_GUARD(tsr_yaml_to_str(n, "listen", &s, NULL));
        if (gw_config_set_listen(c, s) != 0) {
            char reason[400];
            snprintf(reason, sizeof reason, "%s", tsr_errmsg());
            return tsr_yaml_fail(n, "%s", reason);
        }
    }

    int64_t v = c->workers;
    TSR_GUARD(tsr_yaml_get_int(root, "workers", 0, 64, &v));
    c->workers = (int)v;

    return get_path(root, "data_dir", base, false, false, c->data_dir, NULL);
}

/* pki: the five files. */
static int load_pki(gw_config *c, const tsr_yaml_node *m, const char *base)
{
    if (m == NULL) return 0;
    TSR_GUARD(tsr_yaml_check_keys(m, KEYS("bundle", "issuing_cert", "issuing_key",
                                          "server_cert", "server_key")));
    for (size_t i = 0; i < N_PKI; i++)
        TSR_GUARD(get_path(m, pki_files[i].key, base, false, false,
                           field(c, pki_files[i].offset), NULL));
    return 0;
}

/* certificates: lifetimes and the renewal rate limit. */
static int load_certificates(gw_config *c, const tsr_yaml_node *m)
{
    if (m == NULL) return 0;
    TSR_GUARD(tsr_yaml_check_keys(m, KEYS("sandbox_ttl", "renew_limit", "renew_window",
                                          "crl_validity")));
    TSR_GUARD(tsr_yaml_get_duration(m, "sandbox_ttl", 5 * MINUTE, 24 * HOUR,
                                    &c->sandbox_cert_ttl));
    int64_t v = c->renew_limit;
    TSR_GUARD(tsr_yaml_get_int(m, "renew_limit", 1, 1000, &v));
    c->renew_limit = (int)v;
    TSR_GUARD(tsr_yaml_get_duration(m, "renew_window", MINUTE, 24 * HOUR, &c->renew_window));
    return tsr_yaml_get_duration(m, "crl_validity", 10 * MINUTE, 7 * 24 * HOUR,
                                 &c->crl_validity);
}

/* drivers: the default driver, where plugins and the supervisor are, and
 * each driver's options. */
static int load_drivers(gw_config *c, const tsr_yaml_node *m, const char *base)
{
    if (m == NULL) return 0;
    TSR_GUARD(tsr_yaml_check_keys(m, KEYS("default", "dir", "supervisor", "options")));
    const tsr_yaml_node *n;
    if ((n = tsr_yaml_get(m, "default")) != NULL) {
        const char *s;
        size_t len;
        TSR_GUARD(tsr_yaml_to_str(n, "default", &s, &len));
        if (!valid_driver_name(s, len)) {
            char q[96];
            tsr_yaml_quote_bytes(s, len, q, sizeof q);
            return tsr_yaml_fail(n, "bad driver name %s (expected [a-z0-9_-]{1,32})", q);
        }
        memcpy(c->default_driver, s, len + 1);
    }
    TSR_GUARD(get_path(m, "dir", base, true, false, c->drivers_dir, NULL));
    TSR_GUARD(get_path(m, "supervisor", base, true, false, c->supervisor_path, NULL));
    const tsr_yaml_node *opts = NULL;
    TSR_GUARD(tsr_yaml_get_map(m, "options", &opts));
    if (opts != NULL) TSR_GUARD(load_driver_options(c, opts));
    return 0;
}

/* The whole file, section by section in the order the errors are found. */
static int load_tree(gw_config *c, const tsr_yaml_node *root, const char *base)
{
    const tsr_yaml_node *m;

    TSR_GUARD(load_path_defaults(c, base));
    if (root == NULL || tsr_yaml_is_null(root)) {
        root = NULL; /* an empty file: every default */
    } else {
        TSR_GUARD(tsr_yaml_expect(root, TSR_YAML_MAPPING, "configuration"));
        TSR_GUARD(tsr_yaml_check_keys(root, KEYS("trust_domain", "listen", "workers", "data_dir",
                                                 "pki", "store", "secrets", "audit",
                                                 "certificates", "limits", "users",
                                                 "drivers", "proxy", "metrics",
                                                 "bundle_endpoint")));
    }
    TSR_GUARD(load_top_level(c, root, base));
    TSR_GUARD(tsr_yaml_get_map(root, "pki", &m));
    TSR_GUARD(load_pki(c, m, base));
    TSR_GUARD(load_store(root, base, c));
    TSR_GUARD(load_data_file(root, "secrets", "key_file", base, c->data_dir, "secrets.key",
                             false, c->secrets_key_path));
    TSR_GUARD(load_data_file(root, "audit", "path", base, c->data_dir, "audit.log", true,
                             c->audit_path));
    TSR_GUARD(tsr_yaml_get_map(root, "certificates", &m));
    TSR_GUARD(load_certificates(c, m));
    TSR_GUARD(tsr_yaml_get_map(root, "limits", &m));
    TSR_GUARD(load_limits(c, m));
    TSR_GUARD(tsr_yaml_get_map(root, "users", &m));
    if (m != NULL) TSR_GUARD(load_users(c, m));
    TSR_GUARD(tsr_yaml_get_map(root, "drivers", &m));
    TSR_GUARD(load_drivers(c, m, base));
    TSR_GUARD(tsr_yaml_get_map(root, "proxy", &m));
    TSR_GUARD(load_proxy(c, m, base));
    TSR_GUARD(tsr_yaml_get_map(root, "metrics", &m));
    TSR_GUARD(load_metrics(c, m));
    TSR_GUARD(tsr_yaml_get_map(root, "bundle_endpoint", &m));
    TSR_GUARD(load_bundle_endpoint(c, m, base));
    return apply_secrets_env(c);
}

int gw_config_load(const char *path, gw_config **out)
{
    int rc = -1;
    uint8_t *buf = NULL;
    size_t len = 0;
    tsr_yaml_doc *doc = NULL;
    gw_config *c = NULL;
    char base[GW_CONFIG_PATH_MAX];

    *out = NULL;
    TSR_TRY_ENSURE(path != NULL && path[0] != '\0', TSR_E_INPUT, "no configuration file given");
    TSR_TRY_ENSURE(strlen(path) < sizeof c->path, TSR_E_INPUT, "configuration path too long");
    if (tsr_read_file(path, GW_CONFIG_MAX_BYTES, &buf, &len) != 0) {
        if (tsr_errcat() == TSR_E_LIMIT)
            (void)TSR_FAIL(TSR_E_INPUT, "%s: file is larger than %d bytes", path,
                           GW_CONFIG_MAX_BYTES);
        goto out;
    }
    /* The configuration's errors point at file:line:column. */
    tsr_yaml_limits lim = tsr_yaml_limits_config;
    lim.columns = true;
    TSR_TRY(tsr_yaml_parse(path, buf, len, &lim, &doc));
    TSR_TRY(config_dir(path, base));

    c = calloc(1, sizeof *c);
    TSR_TRY_ENSURE(c != NULL, TSR_E_INTERNAL, "out of memory");
    strcpy(c->path, path);
    set_numeric_defaults(c);
    TSR_TRY(load_tree(c, tsr_yaml_root(doc), base));
    *out = c;
    c = NULL;
    rc = 0;
out:
    gw_config_free(c);
    tsr_yaml_free(doc);
    free(buf);
    return rc;
}

enum gw_role gw_config_user_role(const gw_config *c, const char *name)
{
    if (c == NULL || name == NULL) return GW_ROLE_NONE;
    for (size_t i = 0; i < c->n_users; i++)
        if (strcmp(c->users[i].name, name) == 0) return c->users[i].role;
    return GW_ROLE_NONE;
}

bool gw_config_proxy_trusted(const gw_config *c, const char *name)
{
    if (c == NULL || name == NULL || name[0] == '\0') return false;
    for (size_t i = 0; i < c->n_proxies; i++)
        if (strcmp(c->proxies[i].name, name) == 0) return true;
    return false;
}

void gw_config_free(gw_config *c)
{
    if (c == NULL) return;
    free(c->driver_options);
    free(c->proxies);
    free(c->users);
    free(c);
}
