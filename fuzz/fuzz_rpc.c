/* Every gateway RPC handler on untrusted request bytes, with a real gw_app
 * and store (sqlite in a private temporary directory, /dev/shm when there
 * is one), for principals of every kind: the path an authenticated but
 * malicious caller (a compromised sandbox above all) has into the gateway.
 *
 * Two fixture sandboxes A and B exist with fixed ids and certificate
 * serials (a1, b1) so inputs can name them. Principals: users admin,
 * operator, viewer and one without a role; sandbox A, sandbox B, a sandbox
 * that does not exist; a proxy; anonymous; unauthenticated. State builds
 * up across inputs (a replayed directory runs in name order in one process)
 * and is thrown away every RESET_EVERY inputs.
 *
 * Input: [principal][method] then the request: for a unary method the rest
 * is the message; for PushSandboxLogs (client stream) a sequence of
 * [u16 length][message].
 *
 * Invariants (docs/identity.md, "Who may call what", written out here
 * independently of gw_authz.c):
 * an OK answer only for a principal the table allows; a sandbox gets an OK
 * only about itself (ids and names in the request, checked against the
 * store after the call), and a sandbox naming anything else gets
 * PERMISSION_DENIED "cross-sandbox access denied"; a renewed certificate
 * verifies as exactly the caller's sandbox; provider environments are only
 * ever sent as secret bodies; every OK body parses as the method's
 * response with valid UTF-8 in every string; every audit line is one JSON
 * object on one line, in UTF-8.
 *
 * CreateSandbox goes through a real driver plugin: the in-memory "mem"
 * driver (tests/drivers/mem/, why in-memory: see there), loaded by the
 * gateway's own gw_app_attach_drivers (dlopen, ABI check, init) from a
 * private directory holding only it, and the default driver. It fails
 * create for names starting "fail-create" and start for "fail-start". After
 * an OK CreateSandbox: the driver holds the sandbox RUNNING, with a
 * certificate that verifies as exactly that sandbox, the key of that
 * certificate and the gateway's bundle; the store says running; the answer's
 * serial is the certificate's. After any other answer: no live sandbox of
 * that name appeared in the store or in the driver, and when the driver was
 * called (and failed), every certificate minted for the attempt is revoked,
 * in the store and in memory (the rollback). */
#include <dlfcn.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ca_pem.h"
#include "fuzz/fuzz_pki.h"
#include "gw_app.h"
#include "gw_authz.h"
#include "gw_config.h"
#include "gw_driver.h"
#include "gw_revocation.h"
#include "gw_rpcs.h"
#include "gw_store.h"
#include "tessera/v1/gateway.pb-c.h"
#include "tsr_fs.h"

#define RESET_EVERY 4096
#define ID_A "00000000-0000-4000-8000-00000000000a"
#define ID_B "00000000-0000-4000-8000-00000000000b"
#define ID_GHOST "00000000-0000-4000-8000-0000000000ff"
#define NAME_A "sb-a"
#define NAME_B "sb-b"

/* ---- the table of docs/identity.md ------------------------------------- */

enum sb_rule { SB_DENIED, SB_OWN, SB_SELF };
#define R(x) (1u << (x))
#define ANY_ROLE (R(GW_ROLE_VIEWER) | R(GW_ROLE_OPERATOR) | R(GW_ROLE_ADMIN))

struct rule {
    const char *path;
    enum sb_rule sandbox;
    unsigned roles;
    bool anonymous;
    const ProtobufCMessageDescriptor *response;
};

static const struct rule RULES[] = {
    {"/tessera.v1.Gateway/CreateSandbox", SB_DENIED, R(GW_ROLE_ADMIN) | R(GW_ROLE_OPERATOR), false,
     &tessera__v1__create_sandbox_response__descriptor},
    {"/tessera.v1.Gateway/GetSandbox", SB_DENIED, ANY_ROLE, false,
     &tessera__v1__get_sandbox_response__descriptor},
    {"/tessera.v1.Gateway/ListSandboxes", SB_DENIED, ANY_ROLE, false,
     &tessera__v1__list_sandboxes_response__descriptor},
    {"/tessera.v1.Gateway/DeleteSandbox", SB_DENIED, R(GW_ROLE_ADMIN) | R(GW_ROLE_OPERATOR), false,
     &tessera__v1__delete_sandbox_response__descriptor},
    {"/tessera.v1.Gateway/GetSandboxLogs", SB_DENIED, ANY_ROLE, false,
     &tessera__v1__get_sandbox_logs_response__descriptor},
    {"/tessera.v1.Gateway/ListCertificates", SB_DENIED, ANY_ROLE, false,
     &tessera__v1__list_certificates_response__descriptor},
    {"/tessera.v1.Gateway/RevokeCertificate", SB_DENIED, R(GW_ROLE_ADMIN), false,
     &tessera__v1__revoke_certificate_response__descriptor},
    {"/tessera.v1.Gateway/GetSandboxConfig", SB_OWN, ANY_ROLE, false,
     &tessera__v1__get_sandbox_config_response__descriptor},
    {"/tessera.v1.Gateway/GetSandboxProviderEnvironment", SB_OWN, R(GW_ROLE_ADMIN), false,
     &tessera__v1__get_sandbox_provider_environment_response__descriptor},
    {"/tessera.v1.Gateway/ReportPolicyStatus", SB_OWN, 0, false,
     &tessera__v1__report_policy_status_response__descriptor},
    {"/tessera.v1.Gateway/SubmitPolicyAnalysis", SB_OWN, 0, false,
     &tessera__v1__submit_policy_analysis_response__descriptor},
    {"/tessera.v1.Gateway/GetDraftPolicy", SB_OWN, ANY_ROLE, false,
     &tessera__v1__get_draft_policy_response__descriptor},
    {"/tessera.v1.Gateway/UpdateConfig", SB_OWN, R(GW_ROLE_ADMIN) | R(GW_ROLE_OPERATOR), false,
     &tessera__v1__update_config_response__descriptor},
    {"/tessera.v1.Gateway/PushSandboxLogs", SB_OWN, 0, false,
     &tessera__v1__push_sandbox_logs_response__descriptor},
    {"/tessera.v1.Gateway/RenewCertificate", SB_SELF, 0, false,
     &tessera__v1__renew_certificate_response__descriptor},
    {"/tessera.v1.Gateway/GetTrustBundle", SB_SELF, ANY_ROLE, false,
     &tessera__v1__get_trust_bundle_response__descriptor},
    {"/grpc.health.v1.Health/Check", SB_SELF, ANY_ROLE, true, NULL},
};
#define N_RULES (sizeof RULES / sizeof RULES[0])

static bool allowed(const struct rule *r, const gw_principal *p)
{
    if (r->anonymous) return true;
    switch (p->kind) {
    case GW_PRINCIPAL_SANDBOX: return r->sandbox != SB_DENIED;
    case GW_PRINCIPAL_USER: return p->role != GW_ROLE_NONE && (r->roles & R(p->role)) != 0;
    default: return false;
    }
}

/* ---- principals ---------------------------------------------------------- */

static gw_app app;

static gw_principal principal(int which)
{
    gw_principal p;
    memset(&p, 0, sizeof p);
    const char *user = NULL, *sandbox = NULL;
    switch (which) {
    case 0: user = "admin"; p.role = GW_ROLE_ADMIN; break;
    case 1: user = "op"; p.role = GW_ROLE_OPERATOR; break;
    case 2: user = "viewer"; p.role = GW_ROLE_VIEWER; break;
    case 3: user = "mallory"; break;
    case 4: sandbox = ID_A; break;
    case 5: sandbox = ID_B; break;
    case 6: sandbox = ID_GHOST; break;
    case 7:
        p.kind = GW_PRINCIPAL_PROXY;
        snprintf(p.name, sizeof p.name, "egress");
        snprintf(p.spiffe_id, sizeof p.spiffe_id, "spiffe://" FUZZ_TD "/proxy/egress");
        break;
    case 8: p.kind = GW_PRINCIPAL_ANONYMOUS; break;
    default:
        p.kind = GW_PRINCIPAL_UNAUTHENTICATED;
        snprintf(p.reason, sizeof p.reason, "certificate revoked");
        break;
    }
    if (user != NULL) {
        p.kind = GW_PRINCIPAL_USER;
        snprintf(p.name, sizeof p.name, "%s", user);
        snprintf(p.spiffe_id, sizeof p.spiffe_id, "spiffe://" FUZZ_TD "/user/%s", user);
    }
    if (sandbox != NULL) {
        p.kind = GW_PRINCIPAL_SANDBOX;
        snprintf(p.name, sizeof p.name, "%s", sandbox);
        snprintf(p.spiffe_id, sizeof p.spiffe_id, "spiffe://" FUZZ_TD "/sandbox/%s", sandbox);
    }
    if (p.kind != GW_PRINCIPAL_ANONYMOUS && p.kind != GW_PRINCIPAL_UNAUTHENTICATED) {
        snprintf(p.serial_hex, sizeof p.serial_hex, "0badc0de%02x", which);
        /* The dispatcher re-checks validity against the wall clock, not
         * FUZZ_NOW: these identities stay valid, and current for the PKI
         * snapshot in use (the re-check itself is fuzzed elsewhere). */
        p.not_after = INT64_MAX;
        p.pki_generation = atomic_load(&app.pki_generation);
    }
    return p;
}
#define N_PRINCIPALS 10

/* ---- the gateway under test ----------------------------------------------- */

static char dir[PATH_MAX];
static gw_config *cfg;
static gw_worker *worker;
static int audit_fd = -1;
static off_t audit_seen;
static unsigned long runs;
static char drivers_dir[PATH_MAX];

/* The mem driver's inspection calls (tests/drivers/mem/drv_mem.c), from
 * the handle the gateway loaded. */
static void *mem_handle;
static int (*mem_inspect)(const char *id, int *state, char **cert, char **key, char **bundle);
static size_t (*mem_count_named)(const char *name);
static void (*mem_last_id)(char *out, size_t cap);

static void path_in(char out[GW_CONFIG_PATH_MAX], const char *name)
{
    size_t d = strlen(dir), n = strlen(name);
    FUZZ_CHECK(d + 1 + n < GW_CONFIG_PATH_MAX);
    memcpy(out, dir, d);
    out[d] = '/';
    memcpy(out + d + 1, name, n + 1);
}

static void write_pem(const char *name, char *pem, size_t len, bool secret)
{
    char p[GW_CONFIG_PATH_MAX];
    path_in(p, name);
    FUZZ_CHECK(tsr_write_file_atomic(p, pem, len, 0600, TSR_WRITE_REPLACE) == 0);
    if (secret) ca_secret_free(pem, len);
    else free(pem);
}

static void remove_state(void)
{
    static const char *const files[] = {"tessera.db", "tessera.db-wal", "tessera.db-shm",
                                        "secrets.key", "audit.log"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char p[GW_CONFIG_PATH_MAX];
        path_in(p, files[i]);
        unlink(p);
    }
}

/* A live sandbox with a policy, one secret and one certificate (serial
 * `serial`, so inputs can name it). */
static void fixture(const char *id, const char *name, const char *serial)
{
    gw_sandbox_rec sb;
    memset(&sb, 0, sizeof sb);
    snprintf(sb.id, sizeof sb.id, "%s", id);
    snprintf(sb.name, sizeof sb.name, "%s", name);
    snprintf(sb.driver, sizeof sb.driver, "mem");
    snprintf(sb.state, sizeof sb.state, "running");
    sb.created_at = FUZZ_NOW;
    char key[] = "API_KEY", value[] = "secret-value";
    gw_env_var env = {key, value};
    gw_cert_rec cert;
    memset(&cert, 0, sizeof cert);
    snprintf(cert.serial, sizeof cert.serial, "%s", serial);
    snprintf(cert.spiffe_id, sizeof cert.spiffe_id, "spiffe://" FUZZ_TD "/sandbox/%s", id);
    snprintf(cert.sandbox_id, sizeof cert.sandbox_id, "%s", id);
    cert.not_before = cert.issued_at = FUZZ_NOW;
    cert.not_after = FUZZ_NOW + 3600;
    FUZZ_CHECK(gw_store_sandbox_create(worker->store, &sb, "version: 1\n", &env, 1, &cert) == 0);
}

static void stop(void)
{
    if (mem_handle != NULL) dlclose(mem_handle);
    mem_handle = NULL;
    gw_app_worker_fini(worker);
    worker = NULL;
    gw_app_fini(&app);
    if (audit_fd >= 0) close(audit_fd);
    audit_fd = -1;
    remove_state();
}

static void start(void)
{
    FUZZ_CHECK(gw_app_init(&app, cfg) == 0);
    FUZZ_CHECK(gw_app_attach_drivers(&app, drivers_dir, "/nonexistent/tessera-supervisor",
                                     "127.0.0.1:1") == 0);
    char so[PATH_MAX];
    FUZZ_CHECK(snprintf(so, sizeof so, "%s/mem.so", drivers_dir) < (int)sizeof so);
    mem_handle = dlopen(so, RTLD_NOW | RTLD_NOLOAD);
    FUZZ_CHECK(mem_handle != NULL);
    *(void **)&mem_inspect = dlsym(mem_handle, "tessera_mem_inspect");
    *(void **)&mem_count_named = dlsym(mem_handle, "tessera_mem_count_named");
    *(void **)&mem_last_id = dlsym(mem_handle, "tessera_mem_last_id");
    FUZZ_CHECK(mem_inspect != NULL && mem_count_named != NULL && mem_last_id != NULL);
    worker = gw_app_worker_init(&app, 0);
    FUZZ_CHECK(worker != NULL);
    fixture(ID_A, NAME_A, "a1");
    fixture(ID_B, NAME_B, "b1");
    audit_fd = open(cfg->audit_path, O_RDONLY | O_CLOEXEC);
    FUZZ_CHECK(audit_fd >= 0);
    audit_seen = 0;
}

static void cleanup(void)
{
    stop();
    const char *pki[] = {"bundle.pem", "issuing.pem", "issuing.key"};
    for (size_t i = 0; i < 3; i++) {
        char p[GW_CONFIG_PATH_MAX];
        path_in(p, pki[i]);
        unlink(p);
    }
    char link[PATH_MAX + 8];
    snprintf(link, sizeof link, "%s/mem.so", drivers_dir);
    unlink(link);
    rmdir(drivers_dir);
    rmdir(dir);
    free(cfg->users);
    cfg->users = NULL;
    gw_config_free(cfg);
}

/* The mem driver built next to this binary: build/tests/drivers/mem.so
 * beside build/tests/fuzzreplay_rpc, build/fuzz/tests/drivers/mem.so for
 * build/fuzz/bin/fuzz_rpc; TSR_FUZZ_MEM_DRIVER overrides. A missing driver
 * is an error, never a silent skip of the success path. */
static void find_mem_driver(char out[PATH_MAX])
{
    const char *env = getenv("TSR_FUZZ_MEM_DRIVER");
    if (env != NULL && env[0] != '\0') {
        FUZZ_CHECK(realpath(env, out) != NULL);
        return;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    FUZZ_CHECK(n > 0);
    exe[n] = '\0';
    const char *d = dirname(exe);
    static const char *const rel[] = {"drivers/mem.so", "../tests/drivers/mem.so"};
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
        char p[PATH_MAX];
        if (snprintf(p, sizeof p, "%s/%s", d, rel[i]) >= (int)sizeof p) continue;
        if (realpath(p, out) != NULL) return;
    }
    fprintf(stderr, "fuzz_rpc: the mem driver (tests/drivers/mem) is not built next to %s\n", d);
    FUZZ_CHECK(0);
}

static void setup(void)
{
    if (cfg != NULL) {
        if (++runs % RESET_EVERY == 0) {
            stop();
            start();
        }
        return;
    }
    const fuzz_pki *pki = fuzz_pki_get();
    struct stat st;
    const char *tmp = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof dir, "%s/tsr-fuzz-rpc.XXXXXX", tmp);
    FUZZ_CHECK(mkdtemp(dir) != NULL);

    char *pem = NULL;
    size_t len = 0;
    FUZZ_CHECK(ca_cert_to_pem(pki->root->cert, &pem, &len) == 0);
    write_pem("bundle.pem", pem, len, false);
    FUZZ_CHECK(ca_cert_to_pem(pki->issuing->cert, &pem, &len) == 0);
    write_pem("issuing.pem", pem, len, false);
    FUZZ_CHECK(ca_key_to_pem(pki->issuing->key, &pem, &len) == 0);
    write_pem("issuing.key", pem, len, true);

    /* A driver directory with only the mem driver in it (gw_drivers_load
     * loads every .so of its directory). */
    char so[PATH_MAX];
    find_mem_driver(so);
    FUZZ_CHECK(snprintf(drivers_dir, sizeof drivers_dir, "%s/drivers", dir) < (int)sizeof drivers_dir);
    FUZZ_CHECK(mkdir(drivers_dir, 0700) == 0);
    char link[PATH_MAX];
    FUZZ_CHECK(snprintf(link, sizeof link, "%s/mem.so", drivers_dir) < (int)sizeof link);
    FUZZ_CHECK(symlink(so, link) == 0);

    unsetenv("TESSERA_SECRETS_KEY_FILE");
    FUZZ_CHECK(gw_config_defaults(&cfg) == 0);
    snprintf(cfg->trust_domain, sizeof cfg->trust_domain, FUZZ_TD);
    snprintf(cfg->data_dir, sizeof cfg->data_dir, "%s", dir);
    path_in(cfg->bundle_path, "bundle.pem");
    path_in(cfg->issuing_cert_path, "issuing.pem");
    path_in(cfg->issuing_key_path, "issuing.key");
    path_in(cfg->store_path, "tessera.db");
    path_in(cfg->secrets_key_path, "secrets.key");
    path_in(cfg->audit_path, "audit.log");
    cfg->log_lines_per_batch = 64;
    cfg->log_line_bytes = 256;
    cfg->renew_limit = 1000;
    snprintf(cfg->default_driver, sizeof cfg->default_driver, "mem");
    cfg->users = calloc(3, sizeof *cfg->users);
    FUZZ_CHECK(cfg->users != NULL);
    static const struct { const char *name; enum gw_role role; } users[] = {
        {"admin", GW_ROLE_ADMIN}, {"op", GW_ROLE_OPERATOR}, {"viewer", GW_ROLE_VIEWER}};
    for (size_t i = 0; i < 3; i++) {
        snprintf(cfg->users[i].name, sizeof cfg->users[i].name, "%s", users[i].name);
        cfg->users[i].role = users[i].role;
    }
    cfg->n_users = 3;
    start();
    atexit(cleanup);
}

/* ---- checks ---------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (RFC 3629: no overlongs, no
 * surrogates, nothing past U+10FFFF), 0 if there is none. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80) return 1;
    size_t len;
    uint32_t cp;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) len = 2, cp = s[0] & 0x1f;
    else if (s[0] >= 0xe0 && s[0] <= 0xef) len = 3, cp = s[0] & 0x0f;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4) len = 4, cp = s[0] & 0x07;
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

/* New audit lines: each one JSON object on one line, valid UTF-8 (RFC 8259
 * §8.1: what JSON readers accept), no control bytes. */
static void check_audit(void)
{
    char buf[8192];
    for (;;) {
        ssize_t n = pread(audit_fd, buf, sizeof buf, audit_seen);
        FUZZ_CHECK(n >= 0);
        if (n == 0) return;
        size_t used = 0;
        while (used < (size_t)n) {
            char *nl = memchr(buf + used, '\n', (size_t)n - used);
            if (nl == NULL) {
                FUZZ_CHECK(used > 0);  /* one line never exceeds the buffer */
                break;
            }
            size_t len = (size_t)(nl - (buf + used));
            const char *line = buf + used;
            FUZZ_CHECK(len >= 2 && line[0] == '{' && line[len - 1] == '}');
            bool in_string = false;
            int depth = 0;
            for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)line[i];
                FUZZ_CHECK(c >= 0x20);
                if (c >= 0x80) {
                    size_t u = utf8_len((const unsigned char *)line + i, len - i);
                    FUZZ_CHECK(u > 0);
                    i += u - 1;
                    continue;
                }
                if (in_string) {
                    if (c == '\\') i++;
                    else if (c == '"') in_string = false;
                } else if (c == '"') {
                    in_string = true;
                } else if (c == '{') {
                    depth++;
                } else if (c == '}') {
                    depth--;
                    FUZZ_CHECK(depth > 0 || i == len - 1);
                }
            }
            FUZZ_CHECK(!in_string && depth == 0);
            used += len + 1;
        }
        audit_seen += (off_t)used;
    }
}

/* Every string field of a message (nested, repeated and map ones too) is
 * valid UTF-8: proto3 requires it, and stock gRPC clients refuse to decode
 * a response that breaks it. */
static void check_strings(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const char *base = (const char *)m;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        /* Only pointers are read below: a scalar (an int32 or a bool at a
         * 4-byte offset) is not one. */
        if (f->type != PROTOBUF_C_TYPE_MESSAGE && f->type != PROTOBUF_C_TYPE_STRING) continue;
        size_t n = 1;
        const void *const *vals;
        const void *single;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            n = *(const size_t *)(base + f->quantifier_offset);
            vals = *(const void *const *const *)(base + f->offset);
        } else {
            single = *(const void *const *)(base + f->offset);
            vals = &single;
        }
        for (size_t j = 0; j < n; j++) {
            if (vals[j] == NULL) continue;
            if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
                check_strings(vals[j]);
            } else if (f->type == PROTOBUF_C_TYPE_STRING) {
                const unsigned char *str = vals[j];
                size_t len = strlen(vals[j]);
                for (size_t k = 0; k < len;) {
                    size_t u = utf8_len(str + k, len - k);
                    FUZZ_CHECK(u > 0);
                    k += u;
                }
            }
        }
    }
}

/* The sandbox a request names, for the own-only checks. */
struct target {
    bool by_name;
    char *ref;   /* id or name; NULL if the request does not parse */
};

static void target_free(struct target *t)
{
    free(t->ref);
    t->ref = NULL;
}

static void request_target(const struct rule *r, const uint8_t *msg, size_t len,
                           struct target *t)
{
    memset(t, 0, sizeof *t);
    const char *path = r->path + strlen("/tessera.v1.Gateway/");
    ProtobufCMessage *m = NULL;
    const char *ref = NULL;
#define TARGET(desc, type, field, name_keyed)                               \
    do {                                                                    \
        m = protobuf_c_message_unpack(&desc, NULL, len, msg);               \
        if (m != NULL) ref = ((type *)m)->field;                            \
        t->by_name = name_keyed;                                            \
    } while (0)
    if (strcmp(path, "GetSandboxConfig") == 0)
        TARGET(tessera__v1__get_sandbox_config_request__descriptor,
               Tessera__V1__GetSandboxConfigRequest, sandbox_id, false);
    else if (strcmp(path, "GetSandboxProviderEnvironment") == 0)
        TARGET(tessera__v1__get_sandbox_provider_environment_request__descriptor,
               Tessera__V1__GetSandboxProviderEnvironmentRequest, sandbox_id, false);
    else if (strcmp(path, "ReportPolicyStatus") == 0)
        TARGET(tessera__v1__report_policy_status_request__descriptor,
               Tessera__V1__ReportPolicyStatusRequest, sandbox_id, false);
    else if (strcmp(path, "SubmitPolicyAnalysis") == 0)
        TARGET(tessera__v1__submit_policy_analysis_request__descriptor,
               Tessera__V1__SubmitPolicyAnalysisRequest, sandbox_name, true);
    else if (strcmp(path, "GetDraftPolicy") == 0)
        TARGET(tessera__v1__get_draft_policy_request__descriptor,
               Tessera__V1__GetDraftPolicyRequest, name, true);
    else if (strcmp(path, "UpdateConfig") == 0)
        TARGET(tessera__v1__update_config_request__descriptor, Tessera__V1__UpdateConfigRequest,
               name, true);
    else if (strcmp(path, "PushSandboxLogs") == 0)
        TARGET(tessera__v1__push_sandbox_logs_request__descriptor,
               Tessera__V1__PushSandboxLogsRequest, sandbox_id, false);
#undef TARGET
    if (ref != NULL) {
        t->ref = strdup(ref);
        FUZZ_CHECK(t->ref != NULL);
    }
    if (m != NULL) protobuf_c_message_free_unpacked(m, NULL);
}

/* Is this request's target the calling sandbox itself (now, in the store)? */
static bool names_self(const struct target *t, const gw_principal *p)
{
    if (t->ref == NULL) return false;
    if (!t->by_name) return strcmp(t->ref, p->name) == 0;
    gw_sandbox_rec sb;
    if (gw_store_sandbox_find_by_name(worker->store, t->ref, &sb) != 0) return false;
    return strcmp(sb.id, p->name) == 0;
}

static void check_renewal(const gw_principal *p, const uint8_t *body, size_t len)
{
    Tessera__V1__RenewCertificateResponse *r =
        tessera__v1__renew_certificate_response__unpack(NULL, len, body);
    FUZZ_CHECK(r != NULL);
    STACK_OF(X509) *certs = NULL, *chain = NULL;
    FUZZ_CHECK(ca_certs_from_pem((const uint8_t *)r->certificate_pem, strlen(r->certificate_pem),
                                 &certs) == 0);
    FUZZ_CHECK(ca_certs_from_pem((const uint8_t *)r->chain_pem, strlen(r->chain_pem), &chain) == 0);
    enum ca_verify_reason reason;
    ca_peer peer;
    FUZZ_CHECK(sk_X509_num(certs) == 1);
    FUZZ_CHECK(ca_verify_peer(app.pki->trust, sk_X509_value(certs, 0), chain, CA_PURPOSE_CLIENT,
                              CA_KIND_SANDBOX, 0, &reason, &peer) == 0);
    FUZZ_CHECK(strcmp(peer.identity.name, p->name) == 0);
    FUZZ_CHECK(strcmp(peer.serial_hex, r->serial) == 0);
    sk_X509_pop_free(certs, X509_free);
    sk_X509_pop_free(chain, X509_free);
    tessera__v1__renew_certificate_response__free_unpacked(r, NULL);
}

static void check_answer(const struct rule *r, const gw_principal *p, const gw_response *resp,
                         bool all_self, bool any_other)
{
    FUZZ_CHECK((int)resp->status >= 0 && (int)resp->status <= GW_STATUS_UNAUTHENTICATED);
    FUZZ_CHECK(memchr(resp->message, '\0', sizeof resp->message) != NULL);
    if (resp->status != GW_STATUS_OK) {
        FUZZ_CHECK(resp->body == NULL);
        /* Whether the other sandbox exists or not: no existence oracle. */
        if (p->kind == GW_PRINCIPAL_SANDBOX && r->sandbox == SB_OWN && any_other)
            FUZZ_CHECK(resp->status == GW_STATUS_PERMISSION_DENIED &&
                       strcmp(resp->message, GW_CROSS_SANDBOX_MESSAGE) == 0);
        return;
    }
    FUZZ_CHECK(allowed(r, p));
    if (p->kind == GW_PRINCIPAL_SANDBOX && r->sandbox == SB_OWN) FUZZ_CHECK(all_self);
    FUZZ_CHECK(resp->body != NULL || resp->body_len == 0);
    if (strcmp(r->path, "/tessera.v1.Gateway/GetSandboxProviderEnvironment") == 0)
        FUZZ_CHECK(resp->body_is_secret);
    if (r->response != NULL) {
        ProtobufCMessage *m = protobuf_c_message_unpack(r->response, NULL, resp->body_len,
                                                        resp->body);
        FUZZ_CHECK(m != NULL);
        check_strings(m);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    if (strcmp(r->path, "/tessera.v1.Gateway/RenewCertificate") == 0)
        check_renewal(p, resp->body, resp->body_len);
}

/* ---- CreateSandbox through the mem driver --------------------------------- */

struct create_probe {
    bool is_create;
    char *name;            /* the request's name, NULL if it does not parse */
    bool existed;          /* a live sandbox had that name before the call */
    char last_id[64];      /* the driver's last create before the call */
};

static void create_before(const struct rule *r, const uint8_t *msg, size_t len,
                          struct create_probe *cp)
{
    memset(cp, 0, sizeof *cp);
    if (strcmp(r->path, "/tessera.v1.Gateway/CreateSandbox") != 0) return;
    cp->is_create = true;
    mem_last_id(cp->last_id, sizeof cp->last_id);
    Tessera__V1__CreateSandboxRequest *req =
        tessera__v1__create_sandbox_request__unpack(NULL, len, msg);
    if (req == NULL) return;
    cp->name = strdup(req->name);
    FUZZ_CHECK(cp->name != NULL);
    tessera__v1__create_sandbox_request__free_unpacked(req, NULL);
    gw_sandbox_rec sb;
    cp->existed = gw_store_sandbox_find_by_name(worker->store, cp->name, &sb) == 0;
}

/* What the driver holds for an OK CreateSandbox: running, the certificate
 * of exactly this sandbox with the answer's serial, its key, our bundle. */
static void check_created(const uint8_t *body, size_t len, const struct create_probe *cp)
{
    Tessera__V1__CreateSandboxResponse *r =
        tessera__v1__create_sandbox_response__unpack(NULL, len, body);
    FUZZ_CHECK(r != NULL && r->sandbox != NULL);
    const char *id = r->sandbox->id;
    FUZZ_CHECK(cp->name != NULL && !cp->existed && strcmp(r->sandbox->name, cp->name) == 0);
    FUZZ_CHECK(strncmp(cp->name, "fail-create", 11) != 0 && strncmp(cp->name, "fail-start", 10) != 0);
    FUZZ_CHECK(strcmp(r->sandbox->state, "running") == 0);
    gw_sandbox_rec sb;
    FUZZ_CHECK(gw_store_sandbox_get(worker->store, id, &sb) == 0);
    FUZZ_CHECK(strcmp(sb.state, "running") == 0 && strcmp(sb.driver, "mem") == 0);

    int state = 0;
    char *cert_pem = NULL, *key_pem = NULL, *bundle_pem = NULL;
    FUZZ_CHECK(mem_inspect(id, &state, &cert_pem, &key_pem, &bundle_pem) == 0);
    FUZZ_CHECK(state == TSR_DRIVER_STATE_RUNNING);
    FUZZ_CHECK(strcmp(bundle_pem, app.pki->bundle_pem) == 0);
    STACK_OF(X509) *certs = NULL;
    FUZZ_CHECK(ca_certs_from_pem((const uint8_t *)cert_pem, strlen(cert_pem), &certs) == 0);
    FUZZ_CHECK(sk_X509_num(certs) >= 1);
    X509 *leaf = sk_X509_shift(certs);
    enum ca_verify_reason reason;
    ca_peer peer;
    FUZZ_CHECK(ca_verify_peer(app.pki->trust, leaf, certs, CA_PURPOSE_CLIENT, CA_KIND_SANDBOX, 0,
                              &reason, &peer) == 0);
    FUZZ_CHECK(strcmp(peer.identity.name, id) == 0);
    FUZZ_CHECK(strcmp(peer.serial_hex, r->certificate_serial) == 0);
    EVP_PKEY *key = NULL;
    FUZZ_CHECK(ca_key_from_pem((const uint8_t *)key_pem, strlen(key_pem), &key) == 0);
    FUZZ_CHECK(X509_check_private_key(leaf, key) == 1);
    EVP_PKEY_free(key);
    X509_free(leaf);
    sk_X509_pop_free(certs, X509_free);
    OPENSSL_cleanse(key_pem, strlen(key_pem));
    free(key_pem);
    free(cert_pem);
    free(bundle_pem);
    tessera__v1__create_sandbox_response__free_unpacked(r, NULL);
}

/* A CreateSandbox that was not OK left nothing behind: no new live sandbox
 * of that name in the store or the driver; if the driver was called for a
 * new id, that id's certificates are all revoked (store and memory). */
static void check_not_created(const struct create_probe *cp)
{
    if (cp->name != NULL && !cp->existed) {
        gw_sandbox_rec sb;
        FUZZ_CHECK(gw_store_sandbox_find_by_name(worker->store, cp->name, &sb) != 0);
        FUZZ_CHECK(mem_count_named(cp->name) == 0);
    }
    char last[64];
    mem_last_id(last, sizeof last);
    if (last[0] == '\0' || strcmp(last, cp->last_id) == 0) return;
    int state = 0;
    char *c = NULL, *k = NULL, *b = NULL;
    FUZZ_CHECK(mem_inspect(last, &state, &c, &k, &b) != 0);   /* destroyed */
    gw_sandbox_rec sb;
    FUZZ_CHECK(gw_store_sandbox_get(worker->store, last, &sb) == 0 && sb.deleted_at != 0);
    gw_cert_rec *certs = NULL;
    size_t n = 0;
    FUZZ_CHECK(gw_store_cert_list(worker->store, last, &certs, &n) == 0);
    FUZZ_CHECK(n >= 1);
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK(certs[i].revoked_at != 0);
        FUZZ_CHECK(gw_revocations_contains(app.revoked, certs[i].serial));
    }
    gw_store_free_certs(certs, n);
}

static void create_after(const gw_response *resp, struct create_probe *cp)
{
    if (!cp->is_create) return;
    if (resp->status == GW_STATUS_OK) check_created(resp->body, resp->body_len, cp);
    else check_not_created(cp);
    free(cp->name);
    cp->name = NULL;
}

static void response_free(gw_response *resp)
{
    if (resp->body != NULL && resp->body_is_secret) OPENSSL_cleanse(resp->body, resp->body_len);
    free(resp->body);
    memset(resp, 0, sizeof *resp);
}

/* ---- one call ---------------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    fuzz_in in = {data, size};
    gw_principal p = principal(fuzz_u8(&in) % N_PRINCIPALS);
    const struct rule *r = &RULES[fuzz_u8(&in) % N_RULES];
    size_t n_methods = 0;
    const gw_method *methods = gw_methods(&n_methods), *m = NULL;
    for (size_t i = 0; i < n_methods; i++)
        if (strcmp(methods[i].path, r->path) == 0) m = &methods[i];
    FUZZ_CHECK(m != NULL);

    gw_call_ctx ctx = {
        .principal = &p, .method = m->path, .deadline_ms = 0,
        .app = &app, .worker = worker, .peer_addr = "127.0.0.1:1",
    };
    gw_response resp;
    memset(&resp, 0, sizeof resp);
    bool all_self = true, any_other = false;

    if (m->unary != NULL) {
        struct target t;
        if (r->sandbox == SB_OWN) request_target(r, in.p, in.len, &t);
        else memset(&t, 0, sizeof t);
        bool before = r->sandbox == SB_OWN && names_self(&t, &p);
        struct create_probe cp;
        create_before(r, in.p, in.len, &cp);
        /* As the transport does: the dispatcher's check, then the handler. */
        if (gw_authz_dispatch(&ctx, m, &resp) == 0)
            m->unary(&ctx, in.len > 0 ? in.p : (const uint8_t *)"", in.len, &resp);
        create_after(&resp, &cp);
        /* The target must be the caller before the call (what the guard saw)
         * and after it (a name cannot have moved to another sandbox). */
        all_self = before && names_self(&t, &p);
        any_other = t.ref != NULL && !before;
        target_free(&t);
    } else {
        FUZZ_CHECK(m->client_stream != NULL);
        bool aborted = gw_authz_dispatch(&ctx, m, &resp) != 0;
        void *state = aborted ? NULL : m->client_stream->open(&ctx);
        if (aborted) {
            /* Refused before open: nothing was read or stored. */
            check_answer(r, &p, &resp, false, false);
            response_free(&resp);
            resp.status = GW_STATUS_ABORTED;
        }
        while (in.len > 0 && !aborted) {
            fuzz_in msg = fuzz_lp16(&in);
            struct target t;
            request_target(r, msg.p, msg.len, &t);
            bool self = names_self(&t, &p);
            gw_response mr;
            memset(&mr, 0, sizeof mr);
            int rc = gw_authz_dispatch(&ctx, m, &mr);
            if (rc == 0)
                rc = m->client_stream->message(state, &ctx, msg.len > 0 ? msg.p : (const uint8_t *)"",
                                               msg.len, &mr);
            if (rc == 0) {
                FUZZ_CHECK(mr.status == GW_STATUS_OK && mr.body == NULL);
                FUZZ_CHECK(allowed(r, &p));
                if (p.kind == GW_PRINCIPAL_SANDBOX) FUZZ_CHECK(self);
            } else {
                aborted = true;
                check_answer(r, &p, &mr, false, t.ref != NULL && !self);
            }
            response_free(&mr);
            target_free(&t);
        }
        if (!aborted) {
            if (gw_authz_dispatch(&ctx, m, &resp) == 0)
                m->client_stream->finish(state, &ctx, &resp);
            all_self = true;  /* every accepted batch was checked above */
        } else {
            resp.status = GW_STATUS_ABORTED;
        }
        if (state != NULL) m->client_stream->close(state);
    }
    if (m->unary != NULL || resp.status != GW_STATUS_ABORTED)
        check_answer(r, &p, &resp, all_self, any_other);
    response_free(&resp);
    check_audit();
    return 0;
}
