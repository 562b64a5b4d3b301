/* gw_config: the gateway configuration file. Refusals first (each with its
 * exact "<file>:<line>:"), then the shipped file, defaults, path resolution
 * and listen addresses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <limits.h>
#include <ftw.h>

#include <cmocka.h>

#include "gw_config.h"
#include "tsr_fs.h"
#include "tu_fs.h"

static char tmpdir[PATH_MAX];   /* realpath of a fresh directory */
static char cfg_path[PATH_MAX + 16]; /* tmpdir/gw.yaml */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    (void)state;
    char tmpl[PATH_MAX];
    if (tu_temp_path(tmpl, sizeof tmpl, "tsr-gwcfg-XXXXXX") != 0) return -1;
    if (mkdtemp(tmpl) == NULL) return -1;
    if (realpath(tmpl, tmpdir) == NULL) return -1;
    snprintf(cfg_path, sizeof cfg_path, "%s/gw.yaml", tmpdir);
    unsetenv("TESSERA_SECRETS_KEY_FILE");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void write_cfg(const char *text)
{
    write_file(cfg_path, text, strlen(text));
}

/* msg without the column of "<cfg_path>:<line>:<column>: ..." (the
 * refusals below name lines; test_columns checks the columns). */
static void strip_column(const char *msg, char *out, size_t cap)
{
    snprintf(out, cap, "%s", msg);
    size_t base = strlen(cfg_path);
    if (strncmp(out, cfg_path, base) != 0 || out[base] != ':') return;
    char *p = out + base + 1, *q = p;
    while (*q >= '0' && *q <= '9') q++;
    if (q == p || *q != ':') return;
    char *c = q + 1, *e = c;
    while (*e >= '0' && *e <= '9') e++;
    if (e == c || *e != ':') return;
    memmove(q, e, strlen(e) + 1);
}

/* Load `text` and expect a refusal whose message is "<cfg_path>:<want>". */
static void expect_refusal(const char *text, size_t len, const char *want)
{
    write_file(cfg_path, text, len);
    gw_config *c = (gw_config *)1;
    tsr_err_clear();
    if (gw_config_load(cfg_path, &c) == 0) {
        print_error("accepted:\n%s\n", text);
        gw_config_free(c);
        fail();
    }
    assert_null(c);
    char full[PATH_MAX + 512], got[PATH_MAX + 1024];
    snprintf(full, sizeof full, "%s%s", cfg_path, want);
    strip_column(tsr_errmsg(), got, sizeof got);
    if (strncmp(got, full, strlen(full)) != 0) {
        print_error("input:\n%s\n  want prefix: %s\n  got:         %s\n", text, full,
                    tsr_errmsg());
        fail();
    }
    assert_int_equal(tsr_errcat(), TSR_E_INPUT);
}

/* Every configuration error points at file:line:column: the node's own
 * position, or where libyaml stopped. */
static void test_columns(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *want;
    } cases[] = {
        {"trust_domain: a.b\n  \nlimits:\n  max_msg: 5\n", ":4:3: unknown key \"max_msg\""},
        {"workers: 1\nlisten: \"127.0.0.1:99999\"\n", ":2:9: "},
        {"certificates:\n    sandbox_ttl: forever\n", ":2:18: "},
        {"users: {alice: root}\n", ":1:16: "},
        {"a: [1, 2\n", ":1:9: did not find expected ',' or ']'"},
        {"workers: 1\n\tbad: 2\n", ":2:1: "},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_file(cfg_path, cases[i].text, strlen(cases[i].text));
        gw_config *c = NULL;
        assert_int_equal(gw_config_load(cfg_path, &c), -1);
        char full[PATH_MAX + 128];
        snprintf(full, sizeof full, "%s%s", cfg_path, cases[i].want);
        if (strncmp(tsr_errmsg(), full, strlen(full)) != 0) {
            print_error("input:\n%s\n  want prefix: %s\n  got:         %s\n", cases[i].text,
                        full, tsr_errmsg());
            fail();
        }
    }
}

static void test_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *want; /* after the file name */
    } cases[] = {
        /* unknown keys */
        {"trust_domain: a.b\nbogus: 1\n",
         ":2: unknown key \"bogus\" (expected one of: trust_domain, listen, workers, data_dir, "
         "pki, store, secrets, audit, certificates, limits, users, drivers, proxy, metrics, bundle_endpoint)"},
        {"limits:\n  max_message_bytes: 2048\n  max_msg: 5\n",
         ":3: unknown key \"max_msg\" (expected one of: max_message_bytes, "
         "max_concurrent_streams, max_connections, handshake_timeout, idle_timeout, "
         "log_lines_per_batch, log_line_bytes)"},
        {"pki:\n  bundle: b.pem\n  root_key: r.key\n", ":3: unknown key \"root_key\""},
        {"store: {path: x.db, wal: true}\n",
         ":1: unknown key \"wal\" (expected one of: backend, path, dsn)"},
        {"store: {backend: mysql}\n", ":1: store.backend must be sqlite or postgres"},
        {"store: {backend: postgres}\n", ":1: store backend postgres needs a dsn"},
        {"store: {backend: postgres, dsn: x, path: y}\n", ":1: store.path is for backend sqlite"},
        {"store: {dsn: \"host=/x\"}\n", ":1: store.dsn is for backend postgres"},
        {"certificates:\n  ttl: 1h\n", ":2: unknown key \"ttl\""},
        {"drivers:\n  default: process\n  docker: {}\n", ":3: unknown key \"docker\""},
        {"proxy:\n  trusted: [nginx]\n  unix: /run/x\n",
         ":3: unknown key \"unix\" (expected one of: trusted, header, format, unix_socket)"},
        {"proxy:\n  unix_socket: {path: /run/x, owner: root}\n",
         ":2: unknown key \"owner\" (expected one of: path, mode, group)"},
        {"certificates:\n  crl: 1h\n", ":2: unknown key \"crl\""},
        {"metrics: {listen: \"127.0.0.1:9443\", path: /m}\n",
         ":1: unknown key \"path\" (expected one of: listen)"},
        /* wrong types */
        {"workers: [1]\n", ":1: \"workers\" must be an integer"},
        {"workers: \"4\"\n", ":1: \"workers\" must be an integer"},
        {"workers: 1.5\n", ":1: \"workers\" must be an integer"},
        {"pki: var/pki\n", ":1: \"pki\" must be a mapping"},
        {"users: [alice]\n", ":1: \"users\" must be a mapping"},
        {"trust_domain:\n  a: b\n", ":2: \"trust_domain\" must be a string"},
        {"data_dir:\n", ":1: \"data_dir\" must be a string"},
        {"listen: [\"::1\"]\n", ":1: \"listen\" must be a string"},
        {"\n\n- a\n- b\n", ":3: \"configuration\" must be a mapping"},
        {"certificates: {sandbox_ttl: 3600}\n", ":1: \"sandbox_ttl\": bad duration \"3600\""},
        {"certificates: {sandbox_ttl: [1h]}\n", ":1: \"sandbox_ttl\" must be a duration"},
        /* out of range */
        {"certificates:\n  sandbox_ttl: 4m\n", ":2: \"sandbox_ttl\" must be between 5m and 1d"},
        {"certificates:\n  sandbox_ttl: 25h\n", ":2: \"sandbox_ttl\" must be between 5m and 1d"},
        {"certificates:\n  sandbox_ttl: 1d1s\n", ":2: \"sandbox_ttl\" must be between"},
        {"certificates:\n  renew_limit: 0\n", ":2: \"renew_limit\" must be between 1 and 1000"},
        {"certificates:\n  renew_window: 59s\n", ":2: \"renew_window\" must be between 1m and 1d"},
        {"certificates:\n  crl_validity: 9m59s\n", ":2: \"crl_validity\" must be between 10m and"},
        {"certificates:\n  crl_validity: 7d1s\n", ":2: \"crl_validity\" must be between 10m and"},
        {"certificates:\n  crl_validity: 3600\n", ":2: \"crl_validity\": bad duration"},
        /* proxy.unix_socket */
        {"proxy:\n  unix_socket: /run/x\n", ":2: \"unix_socket\" must be a mapping"},
        {"proxy:\n  unix_socket: {mode: \"0600\"}\n", ":2: proxy.unix_socket needs a path"},
        {"proxy:\n  unix_socket: {path: \"\"}\n", ":2: \"path\" must not be empty"},
        {"proxy:\n  unix_socket: {path: [a]}\n", ":2: \"path\" must be a string"},
        {"proxy:\n  unix_socket: {path: /run/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock}\n",
         ":2: unix socket path longer than 107 bytes once resolved"},
        {"proxy:\n  unix_socket: {path: /r/s, mode: 0600}\n", ":2: mode must be an octal string"},
        {"proxy:\n  unix_socket: {path: /r/s, mode: \"060\"}\n", ":2: mode 060: allowed are"},
        {"proxy:\n  unix_socket: {path: /r/s, mode: \"06000\"}\n", ":2: mode must be an octal"},
        {"proxy:\n  unix_socket: {path: /r/s, mode: \"0608\"}\n", ":2: mode must be an octal"},
        {"proxy:\n  unix_socket: {path: /r/s, mode: \"\"}\n", ":2: mode must be an octal"},
        {"proxy:\n  unix_socket: {path: /r/s, mode: \"0666\"}\n", ":2: mode 0666: allowed are"},
        {"proxy:\n  unix_socket: {path: /r/s, mode: \"0602\"}\n", ":2: mode 0602: allowed are"},
        {"proxy:\n  unix_socket: {path: /r/s, mode: \"0400\"}\n", ":2: mode 0400: allowed are"},
        {"proxy:\n  unix_socket: {path: /r/s, mode: \"0200\"}\n", ":2: mode 0200: allowed are"},
        {"proxy:\n  unix_socket: {path: /r/s, mode: \"0700\"}\n", ":2: mode 0700: allowed are"},
        {"proxy:\n  unix_socket: {path: /r/s, mode: \"4600\"}\n", ":2: mode 4600: allowed are"},
        {"proxy:\n  unix_socket: {path: /r/s, group: \"\"}\n", ":2: bad group \"\""},
        {"proxy:\n  unix_socket: {path: /r/s, group: Wheel}\n", ":2: bad group \"Wheel\""},
        {"proxy:\n  unix_socket: {path: /r/s, group: \"a b\"}\n", ":2: bad group \"a b\""},
        {"proxy:\n  unix_socket: {path: /r/s, group: -x}\n", ":2: bad group \"-x\""},
        {"proxy:\n  unix_socket: {path: /r/s, group: 1234567890}\n", ":2: bad group"},
        {"proxy:\n  unix_socket: {path: /r/s, group: no-such-group-tsr}\n",
         ":2: group \"no-such-group-tsr\" does not exist"},
        {"proxy:\n  unix_socket: {path: /r/s, group: \"99999999\"}\n",
         ":2: group \"99999999\" does not exist"},
        {"workers: 65\n", ":1: \"workers\" must be between 0 and 64"},
        {"workers: -1\n", ":1: \"workers\" must be between 0 and 64"},
        {"limits:\n  max_message_bytes: 1023\n",
         ":2: \"max_message_bytes\" must be between 1024 and 67108864"},
        {"limits:\n  max_message_bytes: 67108865\n", ":2: \"max_message_bytes\" must be between"},
        {"limits:\n  max_concurrent_streams: 1001\n", ":2: \"max_concurrent_streams\" must be"},
        {"limits:\n  max_connections: 0\n", ":2: \"max_connections\" must be between"},
        {"limits:\n  handshake_timeout: 0s\n", ":2: \"handshake_timeout\": duration \"0s\" must "
                                               "be positive"},
        {"limits:\n  handshake_timeout: 6m\n", ":2: \"handshake_timeout\" must be between 1s and "
                                               "5m"},
        {"limits:\n  idle_timeout: 9s\n", ":2: \"idle_timeout\" must be between 10s and 1d"},
        {"limits:\n  log_lines_per_batch: 100001\n", ":2: \"log_lines_per_batch\" must be"},
        {"limits:\n  log_line_bytes: 63\n", ":2: \"log_line_bytes\" must be between 64 and"},
        /* users */
        {"users:\n  alice: root\n",
         ":2: bad role \"root\" for user \"alice\" (expected admin, operator or viewer)"},
        {"users:\n  alice: Admin\n", ":2: bad role \"Admin\""},
        {"users:\n  alice: [admin]\n", ":2: role of user \"alice\" must be"},
        {"users:\n  alice:\n", ":2: role of user \"alice\" must be"},
        {"users:\n  admin: admin\n  Alice: viewer\n",
         ":3: bad user name \"Alice\" (expected [a-z0-9._-]{1,64})"},
        {"users:\n  \"..\": viewer\n", ":2: bad user name \"..\""},
        {"users:\n  \"a/b\": viewer\n", ":2: bad user name \"a/b\""},
        {"users:\n  \"\": viewer\n", ":2: bad user name \"\""},
        {"users:\n  aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa: viewer\n",
         ":2: bad user name"},
        /* listen */
        {"listen: 127.0.0.1\n", ":1: bad listen address \"127.0.0.1\": missing port"},
        {"listen: 127.0.0.1:70000\n", ":1: bad listen address \"127.0.0.1:70000\": bad port"},
        {"listen: ::1:8443\n", ":1: bad listen address \"::1:8443\": an IPv6 address needs "
                               "brackets"},
        {"listen: 300.0.0.1:80\n", ":1: bad listen address \"300.0.0.1:80\": bad IPv4 address"},
        {"listen: 8443\n", ":1: bad listen address \"8443\": missing port"},
        /* other values */
        {"trust_domain: Tessera.Local\n", ":1: bad trust_domain \"Tessera.Local\""},
        {"trust_domain: \"\"\n", ":1: bad trust_domain \"\""},
        {"drivers: {default: ../evil}\n", ":1: bad driver name \"../evil\""},
        {"store:\n  path: \"\"\n", ":2: \"path\" must not be empty"},
        {"audit: {path: \"a\\nb\"}\n", ":1: \"path\" contains a control character"},
        /* proxy */
        {"proxy: [nginx]\n", ":1: \"proxy\" must be a mapping"},
        {"proxy:\n  trusted: nginx\n", ":2: \"trusted\" must be a list"},
        {"proxy:\n  trusted: [nginx, Envoy]\n", ":2: bad proxy name \"Envoy\""},
        {"proxy:\n  trusted:\n    - nginx\n    - \"..\"\n", ":4: bad proxy name \"..\""},
        {"proxy:\n  trusted:\n    - \"\"\n", ":3: bad proxy name \"\""},
        {"proxy:\n  trusted:\n    - a/b\n", ":3: bad proxy name \"a/b\""},
        {"proxy:\n  trusted: [~]\n", ":2: a trusted proxy must be a name"},
        {"proxy:\n  trusted: [[nginx]]\n", ":2: a trusted proxy must be a name"},
        {"proxy:\n  trusted: [{a: b}]\n", ":2: a trusted proxy must be a name"},
        {"proxy:\n  trusted:\n    - nginx\n    - nginx\n", ":4: proxy \"nginx\" listed twice"},
        {"proxy: {header: X-Client-Cert}\n", ":1: bad header name \"X-Client-Cert\" (expected "
                                             "lowercase [a-z0-9-]{1,64})"},
        {"proxy: {header: \"\"}\n", ":1: bad header name \"\""},
        {"proxy: {header: \"x-client-cert \"}\n", ":1: bad header name \"x-client-cert \""},
        {"proxy: {header: \":path\"}\n", ":1: bad header name \":path\""},
        {"proxy: {header: -x}\n", ":1: bad header name \"-x\""},
        {"proxy: {header: x_client_cert}\n", ":1: bad header name \"x_client_cert\""},
        {"proxy: {header: "
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}\n",
         ":1: bad header name"},
        {"proxy: {header: grpc-client-cert}\n", ":1: header \"grpc-client-cert\" is reserved by "
                                                "HTTP/2 or gRPC"},
        {"proxy: {header: content-type}\n", ":1: header \"content-type\" is reserved"},
        {"proxy: {header: te}\n", ":1: header \"te\" is reserved"},
        {"proxy: {format: pem}\n", ":1: bad format \"pem\" (expected escaped-pem or xfcc)"},
        {"proxy: {format: XFCC}\n", ":1: bad format \"XFCC\""},
        {"proxy: {header: [a]}\n", ":1: \"header\" must be a string"},
        /* metrics */
        {"metrics: \"127.0.0.1:9443\"\n", ":1: \"metrics\" must be a mapping"},
        {"metrics:\n  listen: 0.0.0.0:9443\n", ":2: metrics: listen address 0.0.0.0 is not a "
                                               "loopback address"},
        {"metrics:\n  listen: 10.0.0.1:9443\n", ":2: metrics: listen address 10.0.0.1 is not"},
        {"metrics:\n  listen: \"[::]:9443\"\n", ":2: metrics: listen address :: is not"},
        {"metrics:\n  listen: \"[::2]:9443\"\n", ":2: metrics: listen address ::2 is not"},
        {"metrics:\n  listen: example.com:9443\n", ":2: metrics: listen address example.com"},
        {"metrics:\n  listen: 127.0.0.1\n", ":2: metrics: bad listen address \"127.0.0.1\": "
                                            "missing port"},
        {"metrics:\n  listen: 127.0.0.1:65536\n", ":2: metrics: bad listen address"},
        {"metrics:\n  listen:\n", ":2: \"listen\" must be a string (\"\" disables metrics)"},
        {"metrics:\n  listen: [a]\n", ":2: \"listen\" must be a string"},
        /* YAML-level refusals */
        {"workers: 1\nworkers: 2\n", ":2: duplicate key \"workers\""},
        {"users:\n  alice: admin\n  alice: viewer\n", ":3: duplicate key \"alice\""},
        {"data_dir: &d /x\nstore: {path: *d}\n", ":1: anchors are not allowed"},
        {"workers: 1\n---\nworkers: 2\n", ":2: more than one document"},
        {"limits:\n\tmax_connections: 5\n", ":2: found character that cannot start any token"},
        {"limits:\n  max_connections: [1\n", ":2: "},
        {"listen: !!binary eA==\n", ":1: tag "},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_refusal(cases[i].text, strlen(cases[i].text), cases[i].want);

    /* A NUL byte in the file. */
    static const char nul[] = "workers: 1\nlisten: a\0b\n";
    expect_refusal(nul, sizeof nul - 1, ":2: NUL byte in input");
    /* Invalid UTF-8. */
    static const char bad1[] = "# ok\ntrust_domain: \xc0\xaf\n"; /* overlong '/' */
    expect_refusal(bad1, strlen(bad1), ":2: invalid length of a UTF-8 sequence");
    static const char bad2[] = "# ok\n\ntrust_domain: \xff\n";
    expect_refusal(bad2, strlen(bad2), ":3: invalid leading UTF-8 octet");
}

static void test_oversize_and_missing(void **state)
{
    (void)state;
    size_t len = GW_CONFIG_MAX_BYTES + 1;
    char *big = malloc(len);
    assert_non_null(big);
    memset(big, '#', len);
    big[len - 1] = '\n';
    write_file(cfg_path, big, len);
    gw_config *c = (gw_config *)1;
    assert_int_equal(gw_config_load(cfg_path, &c), -1);
    assert_null(c);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "%s: file is larger than 1048576 bytes", cfg_path);
    assert_string_equal(tsr_errmsg(), want);
    assert_int_equal(tsr_errcat(), TSR_E_INPUT);

    /* Exactly 1 MiB of comments: an empty configuration, accepted. */
    write_file(cfg_path, big, len - 1);
    assert_int_equal(gw_config_load(cfg_path, &c), 0);
    gw_config_free(c);
    free(big);

    char missing[PATH_MAX + 16];
    snprintf(missing, sizeof missing, "%s/nope.yaml", tmpdir);
    assert_int_equal(gw_config_load(missing, &c), -1);
    assert_int_equal(tsr_errcat(), TSR_E_NOTFOUND);
    assert_int_equal(gw_config_load(tmpdir, &c), -1); /* a directory */
    assert_int_equal(gw_config_load("", &c), -1);
}

static int has_user(const gw_config *c, const char *name)
{
    return gw_config_user_role(c, name) == GW_ROLE_VIEWER;
}

static int has_proxy(const gw_config *c, const char *name)
{
    return gw_config_proxy_trusted(c, name);
}

/* A list one entry over its cap is refused at the list's line; at the cap
 * it loads, with every entry up to the last. */
static void test_list_caps(void **state)
{
    (void)state;
    static const struct {
        const char *head;   /* the keys above the list */
        const char *before; /* an entry is before, name<index>, after */
        const char *name;
        const char *after;
        int cap;
        const char *want; /* the refusal of cap + 1 entries */
        size_t count_at;  /* offsetof the entry count in gw_config */
        int (*has)(const gw_config *c, const char *name);
    } cases[] = {
        {"users:\n", "  ", "user", ": viewer\n", 1024, ":2: more than 1024 users",
         offsetof(gw_config, n_users), has_user},
        {"proxy:\n  trusted:\n", "    - ", "p", "\n", 64, ":3: more than 64 trusted proxies",
         offsetof(gw_config, n_proxies), has_proxy},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        size_t cap = 64 + (size_t)(cases[k].cap + 1) * 32;
        char *text = malloc(cap);
        assert_non_null(text);
        size_t used = (size_t)snprintf(text, cap, "%s", cases[k].head);
        size_t at_cap = 0;
        for (int i = 0; i <= cases[k].cap; i++) {
            if (i == cases[k].cap) at_cap = used;
            used += (size_t)snprintf(text + used, cap - used, "%s%s%d%s", cases[k].before,
                                     cases[k].name, i, cases[k].after);
        }
        assert_true(used < cap);
        expect_refusal(text, used, cases[k].want);

        text[at_cap] = '\0';
        write_cfg(text);
        gw_config *c;
        if (gw_config_load(cfg_path, &c) != 0) {
            print_error("%s: %s\n", cases[k].want, tsr_errmsg());
            fail();
        }
        size_t n;
        memcpy(&n, (const char *)c + cases[k].count_at, sizeof n);
        assert_int_equal(n, (size_t)cases[k].cap);
        char name[32];
        snprintf(name, sizeof name, "%s%d", cases[k].name, 0);
        assert_true(cases[k].has(c, name));
        snprintf(name, sizeof name, "%s%d", cases[k].name, cases[k].cap - 1);
        assert_true(cases[k].has(c, name));
        snprintf(name, sizeof name, "%s%d", cases[k].name, cases[k].cap);
        assert_false(cases[k].has(c, name));
        gw_config_free(c);
        free(text);
    }
}

/* ---- accepted files ----------------------------------------------------- */

static void test_proxy_and_metrics(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        size_t n_proxies;
        const char *header;
        enum gw_forward_format format;
        const char *metrics_host;
        uint16_t metrics_port;
    } cases[] = {
        {"proxy:\n", 0, "x-client-cert", GW_FORWARD_ESCAPED_PEM, "", 0},
        {"proxy: {trusted: []}\n", 0, "x-client-cert", GW_FORWARD_ESCAPED_PEM, "", 0},
        {"proxy:\n  trusted:\n", 0, "x-client-cert", GW_FORWARD_ESCAPED_PEM, "", 0},
        {"proxy: {trusted: [nginx, envoy-1, a.b_c]}\n", 3, "x-client-cert",
         GW_FORWARD_ESCAPED_PEM, "", 0},
        {"proxy: {header: x-forwarded-client-cert}\n", 0, "x-forwarded-client-cert",
         GW_FORWARD_XFCC, "", 0},
        {"proxy: {header: x-forwarded-client-cert, format: escaped-pem}\n", 0,
         "x-forwarded-client-cert", GW_FORWARD_ESCAPED_PEM, "", 0},
        {"proxy: {format: xfcc, header: x-ssl-client-cert}\n", 0, "x-ssl-client-cert",
         GW_FORWARD_XFCC, "", 0},
        {"proxy: {header: 0x}\n", 0, "0x", GW_FORWARD_ESCAPED_PEM, "", 0},
        {"metrics:\n", 0, "x-client-cert", GW_FORWARD_ESCAPED_PEM, "", 0},
        {"metrics: {listen: \"\"}\n", 0, "x-client-cert", GW_FORWARD_ESCAPED_PEM, "", 0},
        {"metrics: {listen: 127.0.0.1:9443}\n", 0, "x-client-cert", GW_FORWARD_ESCAPED_PEM,
         "127.0.0.1", 9443},
        {"metrics: {listen: 127.1.2.3:0}\n", 0, "x-client-cert", GW_FORWARD_ESCAPED_PEM,
         "127.1.2.3", 0},
        {"metrics: {listen: \"[::1]:9100\"}\n", 0, "x-client-cert", GW_FORWARD_ESCAPED_PEM,
         "::1", 9100},
        {"metrics: {listen: localhost:9100}\n", 0, "x-client-cert", GW_FORWARD_ESCAPED_PEM,
         "localhost", 9100},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_cfg(cases[i].text);
        gw_config *c;
        if (gw_config_load(cfg_path, &c) != 0) {
            print_error("refused:\n%s\n%s\n", cases[i].text, tsr_errmsg());
            fail();
        }
        assert_int_equal(c->n_proxies, cases[i].n_proxies);
        assert_string_equal(c->proxy_header, cases[i].header);
        assert_int_equal(c->proxy_format, cases[i].format);
        assert_string_equal(c->metrics_host, cases[i].metrics_host);
        assert_int_equal(c->metrics_port, cases[i].metrics_port);
        if (cases[i].n_proxies == 3) {
            assert_true(gw_config_proxy_trusted(c, "nginx"));
            assert_true(gw_config_proxy_trusted(c, "envoy-1"));
            assert_true(gw_config_proxy_trusted(c, "a.b_c"));
            assert_false(gw_config_proxy_trusted(c, "envoy"));
            assert_false(gw_config_proxy_trusted(c, "nginx "));
        }
        assert_false(gw_config_proxy_trusted(c, ""));
        assert_false(gw_config_proxy_trusted(c, NULL));
        gw_config_free(c);
    }
    assert_false(gw_config_proxy_trusted(NULL, "nginx"));
}

/* The values gw_config_defaults gives and config/gateway.yaml spells out:
 * the paths relative to `base` ("" for the defaults, "<root>/" for the
 * shipped file). */
static void assert_default_values(const gw_config *c, const char *base)
{
    static const struct {
        size_t at; /* offsetof a char[4096] path in gw_config */
        const char *rel;
    } paths[] = {
        {offsetof(gw_config, data_dir), "var/data"},
        {offsetof(gw_config, bundle_path), "var/pki/bundle.pem"},
        {offsetof(gw_config, issuing_cert_path), "var/pki/issuing.pem"},
        {offsetof(gw_config, issuing_key_path), "var/pki/issuing.key"},
        {offsetof(gw_config, server_cert_path), "var/pki/gateway.pem"},
        {offsetof(gw_config, server_key_path), "var/pki/gateway.key"},
        {offsetof(gw_config, store_path), "var/data/tessera.db"},
        {offsetof(gw_config, secrets_key_path), "var/data/secrets.key"},
        {offsetof(gw_config, audit_path), "var/data/audit.log"},
    };
    char want[PATH_MAX + 64];
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        snprintf(want, sizeof want, "%s%s", base, paths[i].rel);
        assert_string_equal((const char *)c + paths[i].at, want);
    }
    assert_string_equal(c->trust_domain, "tessera.local");
    assert_string_equal(c->listen_host, "127.0.0.1");
    assert_int_equal(c->listen_port, 8443);
    assert_int_equal(c->workers, 0);
    assert_int_equal(c->sandbox_cert_ttl, 3600);
    assert_int_equal(c->renew_limit, 10);
    assert_int_equal(c->renew_window, 3600);
    assert_int_equal(c->crl_validity, 6 * 3600);
    assert_string_equal(c->proxy_socket_path, "");
    assert_int_equal(c->proxy_socket_mode, 0600);
    assert_false(c->proxy_socket_set_group);
    assert_int_equal(c->max_message_bytes, 4 * 1024 * 1024);
    assert_int_equal(c->max_concurrent_streams, 100);
    assert_int_equal(c->max_connections, 10000);
    assert_int_equal(c->handshake_timeout_ms, 10000);
    assert_int_equal(c->idle_timeout_ms, 300000);
    assert_int_equal(c->log_lines_per_batch, 1000);
    assert_int_equal(c->log_line_bytes, 16384);
    assert_string_equal(c->default_driver, "process");
    assert_string_equal(c->drivers_dir, "");
    assert_int_equal(c->n_proxies, 0);
    assert_string_equal(c->proxy_header, "x-client-cert");
    assert_int_equal(c->proxy_format, GW_FORWARD_ESCAPED_PEM);
    assert_string_equal(c->metrics_host, "");
    assert_int_equal(c->metrics_port, 0);
}

static void test_shipped_config(void **state)
{
    (void)state;
    const char *root = getenv("TSR_ROOT");
    char path[PATH_MAX], rroot[PATH_MAX], base[PATH_MAX + 2];
    snprintf(path, sizeof path, "%s/config/gateway.yaml", root != NULL ? root : ".");
    assert_non_null(realpath(root != NULL ? root : ".", rroot));
    snprintf(base, sizeof base, "%s/", rroot);
    gw_config *c = NULL;
    if (gw_config_load(path, &c) != 0) {
        print_error("%s\n", tsr_errmsg());
        fail();
    }
    assert_string_equal(c->path, path);
    assert_default_values(c, base);
    assert_int_equal(c->n_users, 3);
    assert_int_equal(gw_config_user_role(c, "admin"), GW_ROLE_ADMIN);
    assert_int_equal(gw_config_user_role(c, "alice"), GW_ROLE_OPERATOR);
    assert_int_equal(gw_config_user_role(c, "bob"), GW_ROLE_VIEWER);
    assert_int_equal(gw_config_user_role(c, "mallory"), GW_ROLE_NONE);
    assert_int_equal(gw_config_user_role(c, ""), GW_ROLE_NONE);
    assert_int_equal(gw_config_user_role(c, NULL), GW_ROLE_NONE);
    gw_config_free(c);
}

static void test_every_key(void **state)
{
    (void)state;
    write_cfg("trust_domain: prod.example-1_x\n"
              "listen: \"[::1]:0\"\n"
              "workers: 64\n"
              "data_dir: /srv/tessera\n"
              "pki: {bundle: /p/b.pem, issuing_cert: /p/i.pem, issuing_key: /p/i.key,\n"
              "      server_cert: /p/s.pem, server_key: /p/s.key}\n"
              "store: {path: /db/t.db}\n"
              "secrets: {key_file: /k/s.key}\n"
              "audit: {path: \"-\"}\n"
              "certificates: {sandbox_ttl: 5m, renew_limit: 1000, renew_window: 24h,\n"
              "  crl_validity: 7d}\n"
              "limits: {max_message_bytes: 1024, max_concurrent_streams: 1000,\n"
              "  max_connections: 1000000, handshake_timeout: 1s, idle_timeout: 1d,\n"
              "  log_lines_per_batch: 1, log_line_bytes: 1048576}\n"
              "users: {root.ops: admin, ci-bot_1: viewer}\n"
              "drivers: {default: docker, dir: /usr/lib/tessera}\n"
              "proxy: {trusted: [nginx], header: x-forwarded-client-cert, format: xfcc,\n"
              "  unix_socket: {path: /run/t/gw.sock, mode: \"0660\", group: \"0\"}}\n"
              "metrics: {listen: \"127.0.0.1:9443\"}\n");
    gw_config *c;
    if (gw_config_load(cfg_path, &c) != 0) {
        print_error("%s\n", tsr_errmsg());
        fail();
    }
    assert_string_equal(c->trust_domain, "prod.example-1_x");
    assert_string_equal(c->listen_host, "::1");
    assert_int_equal(c->listen_port, 0);
    assert_int_equal(c->workers, 64);
    assert_string_equal(c->data_dir, "/srv/tessera");
    assert_string_equal(c->bundle_path, "/p/b.pem");
    assert_string_equal(c->server_key_path, "/p/s.key");
    assert_string_equal(c->store_path, "/db/t.db");
    assert_string_equal(c->secrets_key_path, "/k/s.key");
    assert_string_equal(c->audit_path, "-");
    assert_int_equal(c->sandbox_cert_ttl, 300);
    assert_int_equal(c->renew_limit, 1000);
    assert_int_equal(c->renew_window, 86400);
    assert_int_equal(c->max_message_bytes, 1024);
    assert_int_equal(c->max_concurrent_streams, 1000);
    assert_int_equal(c->max_connections, 1000000);
    assert_int_equal(c->handshake_timeout_ms, 1000);
    assert_int_equal(c->idle_timeout_ms, 86400000);
    assert_int_equal(c->log_lines_per_batch, 1);
    assert_int_equal(c->log_line_bytes, 1048576);
    assert_int_equal(gw_config_user_role(c, "root.ops"), GW_ROLE_ADMIN);
    assert_int_equal(gw_config_user_role(c, "ci-bot_1"), GW_ROLE_VIEWER);
    assert_string_equal(c->default_driver, "docker");
    assert_string_equal(c->drivers_dir, "/usr/lib/tessera");
    assert_int_equal(c->n_proxies, 1);
    assert_true(gw_config_proxy_trusted(c, "nginx"));
    assert_string_equal(c->proxy_header, "x-forwarded-client-cert");
    assert_int_equal(c->proxy_format, GW_FORWARD_XFCC);
    assert_string_equal(c->proxy_socket_path, "/run/t/gw.sock");
    assert_int_equal(c->proxy_socket_mode, 0660);
    assert_true(c->proxy_socket_set_group);
    assert_int_equal(c->proxy_socket_gid, 0);
    assert_int_equal(c->crl_validity, 7 * 86400);
    assert_string_equal(c->metrics_host, "127.0.0.1");
    assert_int_equal(c->metrics_port, 9443);
    gw_config_free(c);
}

/* Empty file (or comments only, or "---"): every default, paths resolved
 * against the file's directory. */
static void test_empty_file_is_defaults(void **state)
{
    (void)state;
    static const char *const empties[] = {"", "# nothing\n", "---\n", "users:\n"};
    for (size_t i = 0; i < sizeof empties / sizeof empties[0]; i++) {
        write_cfg(empties[i]);
        gw_config *c;
        assert_int_equal(gw_config_load(cfg_path, &c), 0);
        char want[PATH_MAX + 64];
        assert_string_equal(c->trust_domain, "tessera.local");
        assert_string_equal(c->listen_host, "127.0.0.1");
        assert_int_equal(c->listen_port, 8443);
        snprintf(want, sizeof want, "%s/var/data", tmpdir);
        assert_string_equal(c->data_dir, want);
        snprintf(want, sizeof want, "%s/var/data/tessera.db", tmpdir);
        assert_string_equal(c->store_path, want);
        snprintf(want, sizeof want, "%s/var/pki/gateway.key", tmpdir);
        assert_string_equal(c->server_key_path, want);
        assert_int_equal(c->sandbox_cert_ttl, 3600);
        assert_int_equal(c->n_users, 0);
        assert_null(c->users);
        assert_int_equal(gw_config_user_role(c, "admin"), GW_ROLE_NONE);
        gw_config_free(c);
    }
}

/* store: {backend: postgres, dsn: ...} names the database, not a file. */
static void test_store_postgres(void **state)
{
    (void)state;
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/pg.yaml", tmpdir);
    const char *text = "store: {backend: postgres, dsn: \"host=/run/pg dbname=tessera\"}\n";
    write_file(path, text, strlen(text));
    gw_config *c;
    if (gw_config_load(path, &c) != 0) {
        print_error("%s\n", tsr_errmsg());
        fail();
    }
    assert_string_equal(c->store_path, "postgres:host=/run/pg dbname=tessera");
    gw_config_free(c);
}

static void test_relative_paths(void **state)
{
    (void)state;
    char sub[PATH_MAX + 8], path[PATH_MAX + 16], want[PATH_MAX + 64];
    snprintf(sub, sizeof sub, "%s/etc", tmpdir);
    assert_int_equal(tsr_mkdir_p(sub, 0700), 0);
    snprintf(path, sizeof path, "%s/gw.yaml", sub);
    const char *text = "data_dir: ../state\n"
                       "pki:\n"
                       "  bundle: certs/bundle.pem\n"
                       "  issuing_cert: ./certs/../i.pem\n"
                       "  issuing_key: ../../k/i.key\n"
                       "  server_cert: /abs/s.pem\n"
                       "audit: {path: ./logs/audit.log}\n"
                       "drivers: {dir: ..}\n";
    write_file(path, text, strlen(text));
    gw_config *c;
    if (gw_config_load(path, &c) != 0) {
        print_error("%s\n", tsr_errmsg());
        fail();
    }
    snprintf(want, sizeof want, "%s/state", tmpdir);
    assert_string_equal(c->data_dir, want);
    snprintf(want, sizeof want, "%s/state/tessera.db", tmpdir); /* default under data_dir */
    assert_string_equal(c->store_path, want);
    snprintf(want, sizeof want, "%s/state/secrets.key", tmpdir);
    assert_string_equal(c->secrets_key_path, want);
    snprintf(want, sizeof want, "%s/etc/certs/bundle.pem", tmpdir);
    assert_string_equal(c->bundle_path, want);
    /* Only leading ./ and ../ are folded; later ones stay for the kernel. */
    snprintf(want, sizeof want, "%s/etc/certs/../i.pem", tmpdir);
    assert_string_equal(c->issuing_cert_path, want);
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", tmpdir);
    *strrchr(parent, '/') = '\0';
    snprintf(want, sizeof want, "%s/k/i.key", parent[0] ? parent : "");
    assert_string_equal(c->issuing_key_path, want);
    assert_string_equal(c->server_cert_path, "/abs/s.pem");
    snprintf(want, sizeof want, "%s/etc/var/pki/gateway.key", tmpdir); /* default */
    assert_string_equal(c->server_key_path, want);
    snprintf(want, sizeof want, "%s/etc/logs/audit.log", tmpdir);
    assert_string_equal(c->audit_path, want);
    assert_string_equal(c->drivers_dir, tmpdir);
    gw_config_free(c);

    /* A relative config path resolves against its real directory too. */
    char cwd[PATH_MAX];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(tmpdir), 0);
    int rc = gw_config_load("etc/gw.yaml", &c);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(rc, 0);
    assert_string_equal(c->path, "etc/gw.yaml");
    snprintf(want, sizeof want, "%s/state", tmpdir);
    assert_string_equal(c->data_dir, want);
    gw_config_free(c);
}

static void test_secrets_env(void **state)
{
    (void)state;
    write_cfg("secrets: {key_file: /from/file.key}\n");
    assert_int_equal(setenv("TESSERA_SECRETS_KEY_FILE", "/from/env.key", 1), 0);
    gw_config *c;
    assert_int_equal(gw_config_load(cfg_path, &c), 0);
    assert_string_equal(c->secrets_key_path, "/from/env.key");
    gw_config_free(c);
    assert_int_equal(gw_config_defaults(&c), 0);
    assert_string_equal(c->secrets_key_path, "/from/env.key");
    gw_config_free(c);
    /* Set but empty: ignored. */
    assert_int_equal(setenv("TESSERA_SECRETS_KEY_FILE", "", 1), 0);
    assert_int_equal(gw_config_load(cfg_path, &c), 0);
    assert_string_equal(c->secrets_key_path, "/from/file.key");
    gw_config_free(c);
    assert_int_equal(unsetenv("TESSERA_SECRETS_KEY_FILE"), 0);
}

static void test_defaults(void **state)
{
    (void)state;
    gw_config *c;
    assert_int_equal(gw_config_defaults(&c), 0);
    assert_string_equal(c->path, "");
    assert_default_values(c, "");
    assert_int_equal(c->n_users, 0);
    assert_null(c->proxies);
    gw_config_free(c);
    gw_config_free(NULL);
}

static void test_set_listen(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        const char *host; /* NULL: refused */
        uint16_t port;
    } cases[] = {
        /* refusals first */
        {"", NULL, 0},
        {"127.0.0.1", NULL, 0},
        {"127.0.0.1:", NULL, 0},
        {"127.0.0.1:65536", NULL, 0},
        {"127.0.0.1:99999999", NULL, 0},
        {"127.0.0.1:-1", NULL, 0},
        {"127.0.0.1:+80", NULL, 0},
        {"127.0.0.1:08443", NULL, 0},
        {"127.0.0.1:80x", NULL, 0},
        {"127.0.0.1:80 ", NULL, 0},
        {":8443", NULL, 0},
        {"::1:8443", NULL, 0},
        {"[::1]", NULL, 0},
        {"[::1", NULL, 0},
        {"[::1]8443", NULL, 0},
        {"[]:80", NULL, 0},
        {"[zz::1]:80", NULL, 0},
        {"[127.0.0.1]:80", NULL, 0},
        {"[fe80::1%eth0]:80", NULL, 0},
        {"256.1.1.1:80", NULL, 0},
        {"1.2.3:80", NULL, 0},
        {"01.2.3.4:80", NULL, 0},
        {"bad_host:80", NULL, 0},
        {"-host:80", NULL, 0},
        {"host-.example:80", NULL, 0},
        {"a..b:80", NULL, 0},
        {"ex ample:80", NULL, 0},
        /* accepted */
        {"127.0.0.1:8443", "127.0.0.1", 8443},
        {"0.0.0.0:1", "0.0.0.0", 1},
        {"[::1]:0", "::1", 0},
        {"[::]:65535", "::", 65535},
        {"[2001:db8::5]:443", "2001:db8::5", 443},
        {"localhost:9000", "localhost", 9000},
        {"gw-1.Example.com:8443", "gw-1.Example.com", 8443},
    };
    gw_config *c;
    assert_int_equal(gw_config_defaults(&c), 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = gw_config_set_listen(c, cases[i].in);
        if (cases[i].host == NULL) {
            if (rc == 0) {
                print_error("accepted listen address \"%s\"\n", cases[i].in);
                fail();
            }
            assert_int_equal(tsr_errcat(), TSR_E_INPUT);
            /* the refusals come first: the default is still in place */
            assert_string_equal(c->listen_host, "127.0.0.1");
            assert_int_equal(c->listen_port, 8443);
            continue;
        }
        if (rc != 0) {
            print_error("refused \"%s\": %s\n", cases[i].in, tsr_errmsg());
            fail();
        }
        assert_string_equal(c->listen_host, cases[i].host);
        assert_int_equal(c->listen_port, cases[i].port);
    }
    /* A failure leaves the previous address in place. */
    assert_int_equal(gw_config_set_listen(c, "127.0.0.2:1234"), 0);
    assert_int_equal(gw_config_set_listen(c, "[::1]"), -1);
    assert_string_equal(tsr_errmsg(), "bad listen address \"[::1]\": missing port (expected "
                                      "[ADDR]:PORT)");
    assert_string_equal(c->listen_host, "127.0.0.2");
    assert_int_equal(c->listen_port, 1234);
    assert_int_equal(gw_config_set_listen(c, "127.0.0.1:65536"), -1);
    assert_string_equal(tsr_errmsg(), "bad listen address \"127.0.0.1:65536\": bad port "
                                      "(expected 0..65535)");
    assert_int_equal(gw_config_set_listen(c, "localhost"), -1);
    assert_string_equal(tsr_errmsg(), "bad listen address \"localhost\": missing port "
                                      "(expected HOST:PORT)");
    assert_string_equal(c->listen_host, "127.0.0.2");
    gw_config_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_columns),
        cmocka_unit_test(test_oversize_and_missing),
        cmocka_unit_test(test_list_caps),
        cmocka_unit_test(test_proxy_and_metrics),
        cmocka_unit_test(test_set_listen),
        cmocka_unit_test(test_shipped_config),
        cmocka_unit_test(test_every_key),
        cmocka_unit_test(test_empty_file_is_defaults),
        cmocka_unit_test(test_relative_paths),
        cmocka_unit_test(test_store_postgres),
        cmocka_unit_test(test_secrets_env),
        cmocka_unit_test(test_defaults),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
