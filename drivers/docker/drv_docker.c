/* The docker driver: one container per sandbox, named tessera-<id>, driven
 * through the Docker Engine API on the engine's unix socket (libcurl,
 * HTTP/1.1; JSON with jansson). Docker and podman's Docker-compatible API
 * both serve it (docs/drivers.md, "docker").
 *
 * version  GET    /version (unversioned), once per driver instance: the
 *                 requests below go to /v1.<N>/..., N = min(the engine's
 *                 ApiVersion, 43); an engine below 1.41 is refused
 * create   POST   /containers/create?name=tessera-<id>
 *                 entrypoint: the supervisor inside the image, run as
 *                 supervisor_uid with only CAP_SETUID, CAP_SETGID and
 *                 CAP_KILL and no-new-privileges; an anonymous volume at
 *                 /run/tessera; labels tessera.sandbox-id, ...
 *          PUT    /containers/<Id>/archive?path=/run/tessera
 *                 the identity as an in-memory tar (identity/ 0700, three
 *                 files 0600, owned by supervisor_uid), before start;
 *                 on failure the container is removed again
 * start    POST   /containers/tessera-<id>/start        (204; 304 = running), then
 *          after start_check_ms GET /containers/tessera-<id>/json: gone
 *          already is a failed start, with the last lines of
 *          GET /containers/tessera-<id>/logs in the reason
 * stop     POST   /containers/tessera-<id>/stop?t=N     (204; 304 = stopped)
 * destroy  POST   .../stop?t=N, then
 *          DELETE /containers/tessera-<id>?force=true&v=true  (404 = gone)
 * status   GET    /containers/tessera-<id>/json         State.Status, State.ExitCode
 *          (and the logs' last lines once it has ended)
 *
 * Why a volume and not a tmpfs at /run/tessera: the engine cannot copy into
 * a tmpfs mount (docker cp documents it; moby#22020). Before start the
 * archive would land in the container's writable layer, on disk, where a
 * `docker commit` would capture it into an image layer, and the tmpfs
 * mounted at start would hide it from the supervisor. An anonymous volume is
 * mounted for the copy, is never part of a commit, and goes with the
 * container (DELETE ...&v=true).
 *
 * Key bytes are only ever in the archive body; never in the create body
 * (Env, Cmd, Labels), a URL or a log line. The archive buffer is wiped after
 * the upload (libcurl's own send buffer is outside our reach). */
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <sys/stat.h>

#include "drv_docker.h"
#include "drv_util.h"
#include "tsr_time.h"

/* Engine API versions (docs/drivers.md, "Engine API version"): the newest
 * this driver speaks and the oldest it accepts (the oldest it was tested
 * against: Debian 12's docker.io 20.10 and podman 4.3 both speak 1.41). The
 * major version is 1. */
#define DK_API_MAX_MINOR 43u
#define DK_API_MIN_MINOR 41u
#define DK_MAX_BODY (1024u * 1024u)
#define DK_IDENTITY_PARENT_Q "%2Frun%2Ftessera" /* /run/tessera, URL-encoded as Go encodes it */

typedef struct dk_ctx {
    drv_logger log;
    char socket[108]; /* sockaddr_un.sun_path */
    char image[256];
    char supervisor[256];
    char network[128]; /* "" = the engine's default */
    char gateway[DRV_MAX_ADDR + 1];
    char td[DRV_MAX_TD + 1];
    uint64_t uid, gid;
    uint64_t stop_timeout_s;
    uint64_t timeout_ms;
    char extra_args[4096]; /* supervisor_args */
    uint64_t start_check_ms;
    /* The negotiated Engine API version, 1.<api_minor>; 0 until the first
     * request (init does not need the engine to be up). */
    pthread_mutex_t api_lock;
    unsigned api_minor;
} dk_ctx;

static const char *const dk_options[] = {
    "socket",         "image",          "supervisor_path", "network",
    "gateway",        "supervisor_uid", "supervisor_gid",  "stop_timeout_s",
    "request_timeout_ms", "supervisor_args", "start_check_ms", NULL};

/* How many of the container's last log lines a reason or a status carries. */
#define DK_LOG_LINES 20
/* status asks with this timeout at most: GetSandbox waits for it. */
#define DK_STATUS_TIMEOUT_MS 5000

/* What this driver enforces of a sandbox policy's domains, told to the
 * supervisor for its ReportPolicyStatus message (docs/policy.md,
 * "Enforcement"): nothing yet; the domains are recorded only. */
#define DK_ENFORCED "none"

static pthread_once_t dk_curl_once = PTHREAD_ONCE_INIT;
static CURLcode dk_curl_rc = CURLE_FAILED_INIT;

static void dk_curl_init(void)
{
    dk_curl_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- HTTP ------------------------------------------------------------------------- */

typedef struct dk_resp {
    long status;
    char *body;
    size_t len;
    size_t cap;
    int overflow;
} dk_resp;

static void dk_resp_free(dk_resp *r)
{
    free(r->body);
    memset(r, 0, sizeof *r);
}

static size_t dk_write_cb(char *ptr, size_t size, size_t n, void *ud)
{
    dk_resp *r = ud;
    size_t add = size * n;
    if (add > DK_MAX_BODY || r->len + add > DK_MAX_BODY) {
        r->overflow = 1;
        return 0; /* aborts the transfer */
    }
    if (r->len + add + 1 > r->cap) {
        size_t cap = r->cap != 0 ? r->cap : 4096;
        while (cap < r->len + add + 1) cap *= 2;
        char *nb = realloc(r->body, cap);
        if (nb == NULL) return 0;
        r->body = nb;
        r->cap = cap;
    }
    memcpy(r->body + r->len, ptr, add);
    r->len += add;
    r->body[r->len] = '\0';
    return add;
}

#define DK_SETOPT(h, opt, val)                                                                 \
    TSR_TRY_ENSURE(curl_easy_setopt((h), (opt), (val)) == CURLE_OK, TSR_E_INTERNAL,            \
                   "libcurl refused option " #opt)

/* One request to the engine, on /<api>/<path> ("" api: unversioned). A
 * transport failure is an error; any HTTP status is returned in out->status
 * for the caller to judge. */
TSR_WUR static int dk_request_at(const dk_ctx *c, const char *api, const char *method,
                                 const char *path, const char *ctype, const void *body,
                                 size_t body_len, uint64_t timeout_ms, dk_resp *out)
{
    int rc = -1;
    CURL *h = NULL;
    struct curl_slist *hdrs = NULL;
    char url[1024], ct[128], errbuf[CURL_ERROR_SIZE];
    errbuf[0] = '\0';
    memset(out, 0, sizeof *out);

    int n = snprintf(url, sizeof url, "http://localhost%s%s", api, path);
    TSR_TRY_ENSURE(n > 0 && (size_t)n < sizeof url, TSR_E_LIMIT, "URL too long");
    h = curl_easy_init();
    TSR_TRY_ENSURE(h != NULL, TSR_E_INTERNAL, "curl_easy_init failed");
    DK_SETOPT(h, CURLOPT_URL, url);
    DK_SETOPT(h, CURLOPT_UNIX_SOCKET_PATH, c->socket);
    DK_SETOPT(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    DK_SETOPT(h, CURLOPT_PROTOCOLS_STR, "http");
    DK_SETOPT(h, CURLOPT_PROXY, ""); /* never an http_proxy from the environment */
    DK_SETOPT(h, CURLOPT_FOLLOWLOCATION, 0L);
    DK_SETOPT(h, CURLOPT_NOSIGNAL, 1L);
    DK_SETOPT(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    DK_SETOPT(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    DK_SETOPT(h, CURLOPT_ERRORBUFFER, errbuf);
    DK_SETOPT(h, CURLOPT_USERAGENT, "tessera-gateway");
    DK_SETOPT(h, CURLOPT_WRITEFUNCTION, dk_write_cb);
    DK_SETOPT(h, CURLOPT_WRITEDATA, out);
    hdrs = curl_slist_append(hdrs, "Expect:");
    TSR_TRY_ENSURE(hdrs != NULL, TSR_E_INTERNAL, "out of memory");
    if (strcmp(method, "GET") == 0) {
        DK_SETOPT(h, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "DELETE") == 0) {
        DK_SETOPT(h, CURLOPT_CUSTOMREQUEST, "DELETE");
    } else {
        /* POST and PUT carry a body (possibly empty: Content-Length: 0). */
        DK_SETOPT(h, CURLOPT_POST, 1L);
        DK_SETOPT(h, CURLOPT_POSTFIELDS, body != NULL ? (const char *)body : "");
        DK_SETOPT(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body != NULL ? body_len : 0));
        if (strcmp(method, "POST") != 0) DK_SETOPT(h, CURLOPT_CUSTOMREQUEST, method);
        n = snprintf(ct, sizeof ct, "Content-Type: %s", ctype != NULL ? ctype : "text/plain");
        TSR_TRY_ENSURE(n > 0 && (size_t)n < sizeof ct, TSR_E_INTERNAL, "content type");
        struct curl_slist *nh = curl_slist_append(hdrs, ct);
        TSR_TRY_ENSURE(nh != NULL, TSR_E_INTERNAL, "out of memory");
        hdrs = nh;
    }
    DK_SETOPT(h, CURLOPT_HTTPHEADER, hdrs);

    CURLcode cc = curl_easy_perform(h);
    if (cc != CURLE_OK) {
        long os_errno = 0;
        if (curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os_errno) != CURLE_OK) os_errno = 0;
        if (out->overflow)
            (void)TSR_FAIL(TSR_E_PROTO, "%s %s: the engine's answer is larger than %u bytes",
                           method, path, DK_MAX_BODY);
        else if (cc == CURLE_OPERATION_TIMEDOUT)
            (void)TSR_FAIL(TSR_E_IO, "%s %s: no answer from the Docker engine within %llu ms",
                           method, path, (unsigned long long)timeout_ms);
        else if (cc == CURLE_COULDNT_CONNECT && os_errno != 0)
            /* The socket's own errno (libcurl's text names a TCP port). */
            (void)TSR_FAIL(TSR_E_IO, "cannot reach the engine at %s: %s", c->socket,
                           strerror((int)os_errno));
        else
            (void)TSR_FAIL(TSR_E_IO, "cannot reach the engine at %s: %s", c->socket,
                           errbuf[0] != '\0' ? errbuf : curl_easy_strerror(cc));
        goto out;
    }
    TSR_TRY_ENSURE(curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status) == CURLE_OK,
                   TSR_E_INTERNAL, "no response code");
    rc = 0;
out:
    if (rc != 0) dk_resp_free(out);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    return rc;
}

/* An engine-supplied string as printable ASCII, at most 300 bytes (engine
 * text goes into errors and log lines). NULL becomes `none`. */
static void dk_printable(const char *m, const char *none, char *out, size_t cap)
{
    if (m == NULL) {
        snprintf(out, cap, "%s", none);
        return;
    }
    size_t i = 0;
    for (; m[i] != '\0' && i + 1 < cap && i < 300; i++)
        out[i] = ((unsigned char)m[i] >= 0x20 && (unsigned char)m[i] < 0x7f) ? m[i] : '?';
    out[i] = '\0';
}

/* The engine's {"message": "..."} as printable text (bounded). */
static void dk_engine_message(const dk_resp *r, char *out, size_t cap)
{
    snprintf(out, cap, "(no message)");
    if (r->body == NULL || r->len == 0) return;
    json_t *j = json_loadb(r->body, r->len, JSON_REJECT_DUPLICATES, NULL);
    dk_printable(json_string_value(json_object_get(j, "message")), "(no message)", out, cap);
    json_decref(j);
}

static int dk_fail_status(const char *what, const dk_resp *r)
{
    char msg[320];
    dk_engine_message(r, msg, sizeof msg);
    enum tsr_errcat cat = r->status == 404   ? TSR_E_NOTFOUND
                          : r->status == 409 ? TSR_E_EXISTS
                          : r->status == 400 ? TSR_E_INPUT
                                             : TSR_E_IO;
    return TSR_FAIL(cat, "%s: the engine answered %ld: %s", what, r->status, msg);
}

/* ---- Engine API version ---------------------------------------------------------- */

/* "1.<minor>", minor of 1..3 digits. */
static int dk_api_parse(const char *v, unsigned *minor)
{
    if (v == NULL || strncmp(v, "1.", 2) != 0) return 0;
    size_t n = strspn(v + 2, "0123456789");
    if (n == 0 || n > 3 || v[2 + n] != '\0') return 0;
    *minor = (unsigned)strtoul(v + 2, NULL, 10);
    return 1;
}

/* As the Docker clients do: read the engine's version (GET /version, which
 * every engine serves unversioned) and use the highest API version both
 * sides speak; refuse an engine below DK_API_MIN_MINOR, or one whose oldest
 * accepted version is newer than ours. */
TSR_WUR static int dk_version_answer(dk_ctx *c, const dk_resp *r);

TSR_WUR static int dk_negotiate(dk_ctx *c)
{
    dk_resp r = {0};
    TSR_GUARD(dk_request_at(c, "", "GET", "/version", NULL, NULL, 0, c->timeout_ms, &r));
    int rc = dk_version_answer(c, &r);
    dk_resp_free(&r);
    return rc;
}

/* The engine's answer to GET /version: c->api_minor, or an error. */
TSR_WUR static int dk_version_answer(dk_ctx *c, const dk_resp *r)
{
    int rc = -1;
    json_t *j = NULL;
    char ver[80], api[80], min[80];
    unsigned engine_max = 0, engine_min = 0;
    if (r->status != 200) {
        (void)dk_fail_status("read the engine's version (GET /version)", r);
        goto out;
    }
    json_error_t jerr;
    j = json_loadb(r->body != NULL ? r->body : "", r->len, JSON_REJECT_DUPLICATES, &jerr);
    TSR_TRY_ENSURE(json_is_object(j), TSR_E_PROTO,
                   "the engine's GET /version answer is not a JSON object");
    const char *api_s = json_string_value(json_object_get(j, "ApiVersion"));
    const char *min_s = json_string_value(json_object_get(j, "MinAPIVersion"));
    dk_printable(json_string_value(json_object_get(j, "Version")), "unknown", ver, sizeof ver);
    dk_printable(api_s, "(none)", api, sizeof api);
    dk_printable(min_s, "(none)", min, sizeof min);
    TSR_TRY_ENSURE(dk_api_parse(api_s, &engine_max), TSR_E_PROTO,
                   "the Docker engine at %s (version %s) answered GET /version without a usable "
                   "ApiVersion (%s)",
                   c->socket, ver, api);
    unsigned use = engine_max < DK_API_MAX_MINOR ? engine_max : DK_API_MAX_MINOR;
    TSR_TRY_ENSURE(use >= DK_API_MIN_MINOR, TSR_E_STATE,
                   "the Docker engine at %s (version %s) speaks Engine API up to %s; this driver "
                   "needs 1.%u or newer (it speaks 1.%u to 1.%u)",
                   c->socket, ver, api, DK_API_MIN_MINOR, DK_API_MIN_MINOR, DK_API_MAX_MINOR);
    if (min_s != NULL) {
        TSR_TRY_ENSURE(dk_api_parse(min_s, &engine_min), TSR_E_PROTO,
                       "the Docker engine at %s (version %s) answered GET /version with an "
                       "unusable MinAPIVersion (%s)",
                       c->socket, ver, min);
        TSR_TRY_ENSURE(engine_min <= use, TSR_E_STATE,
                       "the Docker engine at %s (version %s) accepts Engine API %s and newer; "
                       "this driver speaks 1.%u to 1.%u",
                       c->socket, ver, min, DK_API_MIN_MINOR, DK_API_MAX_MINOR);
    }
    c->api_minor = use;
    drv_logf(&c->log, "Docker engine at %s: version %s, Engine API %s; using 1.%u", c->socket,
             ver, api, use);
    rc = 0;
out:
    json_decref(j);
    return rc;
}

/* A request on the negotiated API version, negotiated on first use (and
 * again after the engine could not be reached: it may come back as another
 * version). */
TSR_WUR static int dk_request(dk_ctx *c, const char *method, const char *path,
                              const char *ctype, const void *body, size_t body_len,
                              uint64_t timeout_ms, dk_resp *out)
{
    char api[16];
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&c->api_lock);
    int rc = c->api_minor == 0 ? dk_negotiate(c) : 0;
    unsigned minor = c->api_minor;
    pthread_mutex_unlock(&c->api_lock);
    TSR_GUARD(rc);
    snprintf(api, sizeof api, "/v1.%u", minor);
    if (dk_request_at(c, api, method, path, ctype, body, body_len, timeout_ms, out) != 0) {
        pthread_mutex_lock(&c->api_lock);
        c->api_minor = 0;
        pthread_mutex_unlock(&c->api_lock);
        return -1;
    }
    return 0;
}

/* ---- init / fini ------------------------------------------------------------------ */

static int dk_text_ok(const char *s, size_t max, const char *extra)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (n == 0 || n > max) return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              strchr(extra, ch) != NULL))
            return 0;
    }
    return 1;
}

TSR_WUR static int dk_setup(dk_ctx *c, const tsr_driver_env *env)
{
    TSR_GUARD(drv_options_check(env, dk_options));
    const char *v = drv_option(env, "socket");
    if (v == NULL) v = "/var/run/docker.sock";
    TSR_ENSURE(v[0] == '/' && strlen(v) < sizeof c->socket, TSR_E_INPUT,
               "option socket: an absolute path of at most %zu bytes", sizeof c->socket - 1);
    strcpy(c->socket, v);

    v = drv_option(env, "image");
    if (v == NULL) v = "tessera-sandbox:latest";
    TSR_ENSURE(dk_text_ok(v, sizeof c->image - 1, "._-/:@"), TSR_E_INPUT,
               "option image: \"%.64s\" is not an image reference", v);
    strcpy(c->image, v);

    v = drv_option(env, "supervisor_path");
    if (v == NULL) v = "/usr/local/bin/tessera-supervisor";
    TSR_ENSURE(v[0] == '/' && dk_text_ok(v, sizeof c->supervisor - 1, "._-/"), TSR_E_INPUT,
               "option supervisor_path: an absolute path inside the image");
    strcpy(c->supervisor, v);

    v = drv_option(env, "network");
    c->network[0] = '\0';
    if (v != NULL) {
        TSR_ENSURE(dk_text_ok(v, sizeof c->network - 1, "._-"), TSR_E_INPUT,
                   "option network: \"%.64s\" is not a network name", v);
        strcpy(c->network, v);
    }

    /* The address a supervisor dials from inside its container (the
     * gateway's own listen address is often loopback, which inside a
     * container is the container itself). */
    v = drv_option(env, "gateway");
    if (v == NULL) v = env->gateway_addr;
    TSR_ENSURE(drv_addr_list_valid(v), TSR_E_INPUT,
               "gateway address must be HOST:PORT[,HOST:PORT...]");
    strcpy(c->gateway, v);
    TSR_ENSURE(drv_td_valid(env->trust_domain), TSR_E_INPUT, "bad trust domain");
    strcpy(c->td, env->trust_domain);

    TSR_GUARD(drv_option_u64(env, "supervisor_uid", 0, 0, 0x7fffffff, &c->uid));
    TSR_GUARD(drv_option_u64(env, "supervisor_gid", c->uid, 0, 0x7fffffff, &c->gid));
    TSR_GUARD(drv_option_u64(env, "stop_timeout_s", 10, 0, 3600, &c->stop_timeout_s));
    TSR_GUARD(drv_option_u64(env, "request_timeout_ms", 60000, 100, 3600000, &c->timeout_ms));
    TSR_GUARD(drv_option_supervisor_args(env, c->extra_args, sizeof c->extra_args));
    TSR_GUARD(drv_option_u64(env, "start_check_ms", 500, 0, 60000, &c->start_check_ms));

    /* No socket at all: nothing this driver does can work, so it is not
     * ready (the gateway reports it unavailable with this, or refuses to
     * start when its options name it). An engine that is only down (the
     * socket is there, nobody answers) is asked again at each operation. */
    struct stat st;
    if (stat(c->socket, &st) != 0)
        return TSR_FAIL(TSR_E_STATE,
                        "no Docker engine socket at %s: %s (start the engine, or set "
                        "drivers.options.docker.socket to its socket)",
                        c->socket, strerror(errno));
    TSR_ENSURE(S_ISSOCK(st.st_mode), TSR_E_STATE,
               "%s is not a socket (set drivers.options.docker.socket to the engine's socket)",
               c->socket);

    pthread_once(&dk_curl_once, dk_curl_init);
    TSR_ENSURE(dk_curl_rc == CURLE_OK, TSR_E_INTERNAL, "curl_global_init: %s",
               curl_easy_strerror(dk_curl_rc));
    drv_logf(&c->log, "Docker engine at %s, image %s", c->socket, c->image);
    return 0;
}

static int dk_init(const tsr_driver_env *env, void **ctx, char *err, size_t err_cap)
{
    if (env == NULL || ctx == NULL) return drv_errf(err, err_cap, "docker: no environment");
    dk_ctx *c = calloc(1, sizeof *c);
    if (c == NULL) return drv_errf(err, err_cap, "docker: out of memory");
    c->log.log = env->log;
    c->log.arg = env->log_arg;
    c->log.prefix = "docker";
    if (pthread_mutex_init(&c->api_lock, NULL) != 0) {
        free(c);
        return drv_errf(err, err_cap, "docker: init: pthread_mutex_init failed");
    }
    if (dk_setup(c, env) != 0) {
        pthread_mutex_destroy(&c->api_lock);
        free(c);
        return drv_err_recorded(err, err_cap, "docker: init", NULL);
    }
    *ctx = c;
    return 0;
}

/* Containers keep running; libcurl's global state stays (other users). */
static void dk_fini(void *ctx)
{
    dk_ctx *c = ctx;
    if (c == NULL) return;
    pthread_mutex_destroy(&c->api_lock);
    free(c);
}

/* ---- create ------------------------------------------------------------------------ */

/* The create body: no key material, only paths and names.
 *
 * The supervisor runs as supervisor_uid (0 by default: root in the
 * container's namespaces, with only CAP_SETUID and CAP_SETGID, to drop its
 * workload to another uid, and CAP_KILL, to signal it) under
 * no-new-privileges; the workload it starts has no capability at all and
 * cannot read the identity (docs/drivers.md, "Inside the container"). */
TSR_WUR static int dk_create_body(const dk_ctx *c, const tsr_driver_sandbox *sb, char **out)
{
    int rc = -1;
    json_t *root = NULL, *hc = NULL;
    drv_argv *extra = NULL;
    const char *image = sb->image[0] != '\0' ? sb->image : c->image;
    char user[48];
    snprintf(user, sizeof user, "%llu:%llu", (unsigned long long)c->uid,
             (unsigned long long)c->gid);
    root = json_pack("{s:s, s:[s], s:[], s:s, s:s, s:I, "
                     "s:{s:s, s:s, s:s}, s:{s:{}}}",
                     "Image", image, "Entrypoint", c->supervisor, "Cmd",
                     "User", user, "StopSignal", "SIGTERM", "StopTimeout",
                     (json_int_t)c->stop_timeout_s, "Labels", "tessera.sandbox-id", sb->id,
                     "tessera.spiffe-id", sb->spiffe_id, "tessera.managed-by",
                     "tessera-gateway", "Volumes", "/run/tessera");
    TSR_TRY_ENSURE(root != NULL, TSR_E_INTERNAL, "build the create request");
    /* The supervisor's flags (one --gateway per address), supervisor_args,
     * then the workload after "--": one Cmd entry per argument (the engine
     * execs them; no shell). */
    extra = drv_argv_new();
    TSR_TRY_ENSURE(extra != NULL, TSR_E_INTERNAL, "out of memory");
    static const char *const head[] = {"--identity-dir", "/run/tessera/identity"};
    for (size_t i = 0; i < sizeof head / sizeof head[0]; i++)
        TSR_TRY(drv_argv_add(extra, head[i]));
    TSR_TRY(drv_argv_add_gateways(extra, c->gateway));
    const char *const tail[] = {"--trust-domain", c->td,     "--sandbox-id", sb->id,
                                "--driver",       "docker",  "--enforced",   DK_ENFORCED};
    for (size_t i = 0; i < sizeof tail / sizeof tail[0]; i++)
        TSR_TRY(drv_argv_add(extra, tail[i]));
    TSR_TRY(drv_argv_add_workload(extra, c->extra_args, sb->command, sb->n_command));
    json_t *cmd = json_object_get(root, "Cmd");
    for (size_t i = 0; i < extra->n; i++)
        TSR_TRY_ENSURE(json_array_append_new(cmd, json_string(extra->v[i])) == 0,
                       TSR_E_INTERNAL, "build the create request");
    hc = json_pack("{s:[s], s:[s,s,s], s:[s]}", "CapDrop", "ALL", "CapAdd", "CAP_SETUID",
                   "CAP_SETGID", "CAP_KILL", "SecurityOpt", "no-new-privileges");
    TSR_TRY_ENSURE(hc != NULL, TSR_E_INTERNAL, "build the create request");
    if (c->network[0] != '\0')
        TSR_TRY_ENSURE(json_object_set_new(hc, "NetworkMode", json_string(c->network)) == 0,
                       TSR_E_INTERNAL, "build the create request");
    TSR_TRY_ENSURE(json_object_set_new(root, "HostConfig", hc) == 0, TSR_E_INTERNAL,
                   "build the create request");
    hc = NULL;
    *out = json_dumps(root, JSON_COMPACT);
    TSR_TRY_ENSURE(*out != NULL, TSR_E_INTERNAL, "serialise the create request");
    rc = 0;
out:
    drv_argv_free(extra);
    json_decref(hc);
    json_decref(root);
    return rc;
}

static int dk_hex64(const char *s)
{
    if (s == NULL || strlen(s) != 64) return 0;
    for (size_t i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

/* Remove a container that create could not finish. */
static void dk_rollback(dk_ctx *c, const char *ref)
{
    char path[256];
    dk_resp r;
    snprintf(path, sizeof path, "/containers/%s?force=true&v=true", ref);
    if (dk_request(c, "DELETE", path, NULL, NULL, 0, c->timeout_ms, &r) != 0) {
        drv_logf(&c->log, "could not remove %s after a failed create: %s", ref, tsr_errmsg());
        return;
    }
    if (r.status != 204 && r.status != 404)
        drv_logf(&c->log, "could not remove %s after a failed create: the engine answered %ld",
                 ref, r.status);
    dk_resp_free(&r);
}

/* The engine's 201 answer to create: the container's Id (64 hex digits) into
 * cid; its warnings are logged (at most 8), as printable text like every
 * other engine string. */
TSR_WUR static int dk_create_answer(const dk_ctx *c, const char *name, const dk_resp *r,
                                    char cid[65])
{
    json_error_t jerr;
    json_t *j = json_loadb(r->body != NULL ? r->body : "", r->len, JSON_REJECT_DUPLICATES, &jerr);
    const char *id = json_string_value(json_object_get(j, "Id"));
    if (!dk_hex64(id)) {
        json_decref(j);
        return TSR_FAIL(TSR_E_PROTO, "the engine's create answer has no valid Id");
    }
    memcpy(cid, id, 65);
    json_t *warn = json_object_get(j, "Warnings");
    for (size_t i = 0; json_is_array(warn) && i < json_array_size(warn) && i < 8; i++) {
        const char *w = json_string_value(json_array_get(warn, i));
        char shown[320];
        dk_printable(w, "", shown, sizeof shown);
        if (w != NULL) drv_logf(&c->log, "%s: engine warning: %.200s", name, shown);
    }
    json_decref(j);
    return 0;
}

TSR_WUR static int dk_create_sb(dk_ctx *c, const tsr_driver_sandbox *sb,
                                const tsr_driver_identity *ident)
{
    int rc = -1, created = 0;
    char *body = NULL, path[256], name[64], cid[65] = "";
    dk_resp r = {0};
    dk_buf tar = {NULL, 0, 0};

    TSR_TRY(drv_identity_check(c->td, sb, ident));
    snprintf(name, sizeof name, "tessera-%s", sb->id);
    TSR_TRY(dk_create_body(c, sb, &body));
    snprintf(path, sizeof path, "/containers/create?name=%s", name);
    TSR_TRY(dk_request(c, "POST", path, "application/json", body, strlen(body), c->timeout_ms,
                       &r));
    if (r.status == 404) {
        /* The only thing create looks up: the image. */
        (void)TSR_FAIL(TSR_E_STATE,
                       "image %s not found in the engine at %s (make sandbox-image, or pull it)",
                       sb->image[0] != '\0' ? sb->image : c->image, c->socket);
        goto out;
    }
    if (r.status != 201) {
        (void)dk_fail_status("create the container", &r);
        goto out;
    }
    created = 1;
    TSR_TRY(dk_create_answer(c, name, &r, cid));

    /* The identity, before the supervisor can start. */
    TSR_TRY(dk_tar_identity(ident, (uint32_t)c->uid, (uint32_t)c->gid, tsr_now_unix(), &tar));
    dk_resp_free(&r);
    snprintf(path, sizeof path, "/containers/%s/archive?path=%s&noOverwriteDirNonDir=true", cid,
             DK_IDENTITY_PARENT_Q);
    TSR_TRY(dk_request(c, "PUT", path, "application/x-tar", tar.p, tar.len, c->timeout_ms, &r));
    if (r.status != 200) {
        (void)dk_fail_status("upload the identity", &r);
        goto out;
    }
    drv_logf(&c->log, "created container %s (%.12s)", name, cid);
    rc = 0;
out:
    if (rc != 0 && created) {
        /* Keep the reason; the rollback logs its own trouble. */
        char saved[512];
        snprintf(saved, sizeof saved, "%s", tsr_errmsg());
        enum tsr_errcat cat = tsr_errcat();
        dk_rollback(c, cid[0] != '\0' ? cid : name);
        (void)TSR_FAIL(cat, "%s (container removed)", saved);
    }
    dk_buf_free_secret(&tar);
    dk_resp_free(&r);
    free(body);
    return rc;
}

/* Any image reference the gateway accepted (its grammar, docs/drivers.md)
 * and a command the gateway bounded. */
TSR_WUR static int dk_check_sb(const tsr_driver_sandbox *sb)
{
    TSR_GUARD(drv_command_check(sb));
    TSR_ENSURE(strlen(sb->image) <= TSR_DRIVER_MAX_IMAGE, TSR_E_INPUT, "image is too long");
    return 0;
}

static int dk_check(void *ctx, const tsr_driver_sandbox *sb, char *err, size_t err_cap)
{
    (void)ctx;
    return dk_check_sb(sb) != 0 ? drv_invalid_recorded(err, err_cap, "docker", NULL)
                                : TSR_DRIVER_OK;
}

static int dk_create(void *ctx, const tsr_driver_sandbox *sb, const tsr_driver_identity *ident,
                     char *err, size_t err_cap)
{
    const char *id = sb != NULL ? sb->id : NULL;
    if (!drv_id_valid(id)) return drv_errf(err, err_cap, "docker: create: bad sandbox id");
    if (dk_check_sb(sb) != 0) return drv_invalid_recorded(err, err_cap, "docker: create", id);
    if (dk_create_sb(ctx, sb, ident) != 0)
        return drv_fail_recorded(err, err_cap, "docker: create", id);
    return TSR_DRIVER_OK;
}

/* ---- start / stop / destroy / status --------------------------------------------- */

/* method on /containers/tessera-<id><suffix>; `ok1`/`ok2` are the statuses
 * that mean success. */
TSR_WUR static int dk_simple(dk_ctx *c, const char *what, const char *method,
                             const char *id, const char *suffix, long ok1, long ok2,
                             uint64_t timeout_ms, long *status)
{
    char path[256];
    dk_resp r;
    TSR_ENSURE(drv_id_valid(id), TSR_E_INPUT, "bad sandbox id");
    snprintf(path, sizeof path, "/containers/tessera-%s%s", id, suffix);
    TSR_GUARD(dk_request(c, method, path, NULL, NULL, 0, timeout_ms, &r));
    *status = r.status;
    int rc = 0;
    if (r.status != ok1 && r.status != ok2) rc = dk_fail_status(what, &r);
    dk_resp_free(&r);
    return rc;
}

/* The container's last log lines (its stdout and stderr: the supervisor's
 * own lines and what it did not catch) into out, as drv_tail_lines gives
 * them; "" when the engine has none or cannot say. The engine sends a
 * container without a TTY as a multiplexed stream: frames of an 8-byte
 * header (stream 0..2, three zero bytes, a big-endian length) and that
 * many bytes. */
static void dk_last_lines(dk_ctx *c, const char *id, char *out, size_t cap)
{
    char path[256];
    dk_resp r;
    out[0] = '\0';
    snprintf(path, sizeof path, "/containers/tessera-%s/logs?stdout=true&stderr=true&tail=%d", id,
             DK_LOG_LINES);
    if (dk_request(c, "GET", path, NULL, NULL, 0, DK_STATUS_TIMEOUT_MS, &r) != 0) {
        tsr_err_clear();
        return;
    }
    char *text = r.status == 200 && r.len > 0 ? malloc(r.len) : NULL;
    if (text != NULL) {
        const unsigned char *b = (const unsigned char *)r.body;
        size_t off = 0, tl = 0;
        while (r.len - off >= 8 && b[off] <= 2 && b[off + 1] == 0 && b[off + 2] == 0 &&
               b[off + 3] == 0) {
            size_t n = (size_t)b[off + 4] << 24 | (size_t)b[off + 5] << 16 |
                       (size_t)b[off + 6] << 8 | (size_t)b[off + 7];
            if (n > r.len - off - 8) n = r.len - off - 8; /* cut short: what is there */
            memcpy(text + tl, b + off + 8, n);
            tl += n;
            off += 8 + n;
        }
        if (off == 0) { /* not multiplexed (a TTY): the bytes as they are */
            memcpy(text, r.body, r.len);
            tl = r.len;
        }
        drv_tail_lines(text, tl, DK_LOG_LINES, NULL, out, cap);
        free(text);
    }
    dk_resp_free(&r);
}

/* The inspect answer: state, and the exit status of a container that ran. */
TSR_WUR static int dk_state_of(const dk_resp *r, const char *id, tsr_driver_status *st);

/* GET /containers/tessera-<id>/json into st (UNKNOWN on 404). */
TSR_WUR static int dk_inspect(dk_ctx *c, const char *id, uint64_t timeout_ms,
                              tsr_driver_status *st)
{
    char path[256];
    dk_resp r;
    snprintf(path, sizeof path, "/containers/tessera-%s/json", id);
    TSR_GUARD(dk_request(c, "GET", path, NULL, NULL, 0, timeout_ms, &r));
    int rc = 0;
    if (r.status == 404) st->state = TSR_DRIVER_STATE_UNKNOWN;
    else if (r.status != 200) rc = dk_fail_status("inspect the container", &r);
    else rc = dk_state_of(&r, id, st);
    dk_resp_free(&r);
    return rc;
}

/* A container gone again within start_check_ms did not start: its last
 * lines (the supervisor's reason) go into the error. */
TSR_WUR static int dk_start_check(dk_ctx *c, const char *id)
{
    struct timespec ts = {(time_t)(c->start_check_ms / 1000),
                          (long)(c->start_check_ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    tsr_driver_status st;
    memset(&st, 0, sizeof st);
    TSR_GUARD(dk_inspect(c, id, c->timeout_ms, &st));
    if (st.state == TSR_DRIVER_STATE_RUNNING) return 0;
    char lines[TSR_DRIVER_DETAIL_MAX], last[TSR_DRIVER_DETAIL_MAX], how[48] = "";
    dk_last_lines(c, id, lines, sizeof lines);
    drv_one_line(lines, last, sizeof last);
    if (st.exited) snprintf(how, sizeof how, " (exit status %d)", st.exit_code);
    return TSR_FAIL(TSR_E_STATE, "the container exited at once%s: %s", how,
                    last[0] != '\0' ? last : "it logged nothing");
}

static int dk_start(void *ctx, const char *id, char *err, size_t err_cap)
{
    dk_ctx *c = ctx;
    long st = 0;
    if (dk_simple(c, "start the container", "POST", id, "/start", 204, 304, c->timeout_ms, &st) !=
        0)
        return drv_fail_recorded(err, err_cap, "docker: start", id);
    if (st == 204 && c->start_check_ms > 0 && dk_start_check(c, id) != 0)
        return drv_fail_recorded(err, err_cap, "docker: start", id);
    drv_logf(&c->log, "%s tessera-%s", st == 304 ? "already running:" : "started", id);
    return TSR_DRIVER_OK;
}

/* SIGTERM, then SIGKILL after stop_timeout_s (the engine does both). */
TSR_WUR static int dk_stop_graceful(dk_ctx *c, const char *id, long *st)
{
    char suffix[48];
    snprintf(suffix, sizeof suffix, "/stop?t=%llu", (unsigned long long)c->stop_timeout_s);
    /* The engine waits up to t seconds before SIGKILL: allow for that. */
    uint64_t timeout = c->stop_timeout_s * 1000 + c->timeout_ms;
    return dk_simple(c, "stop the container", "POST", id, suffix, 204, 304, timeout, st);
}

static int dk_stop(void *ctx, const char *id, char *err, size_t err_cap)
{
    dk_ctx *c = ctx;
    long st = 0;
    if (dk_stop_graceful(c, id, &st) != 0)
        return drv_err_recorded(err, err_cap, "docker: stop", id);
    drv_logf(&c->log, "%s tessera-%s", st == 304 ? "already stopped:" : "stopped", id);
    return 0;
}

/* The container and its anonymous volume (the identity) go; a container
 * that is already gone is success. A running container is stopped
 * gracefully first (SIGTERM, stop_timeout_s, then SIGKILL), so its
 * supervisor can deliver its last log lines. */
static int dk_destroy(void *ctx, const char *id, char *err, size_t err_cap)
{
    dk_ctx *c = ctx;
    long st = 0;
    if (dk_stop_graceful(c, id, &st) != 0 && tsr_errcat() != TSR_E_NOTFOUND)
        drv_logf(&c->log, "tessera-%s: %s; removing it anyway", id, tsr_errmsg());
    if (dk_simple(c, "remove the container", "DELETE", id, "?force=true&v=true", 204, 404,
                  c->timeout_ms, &st) != 0)
        return drv_err_recorded(err, err_cap, "docker: destroy", id);
    if (st == 204) drv_logf(&c->log, "removed tessera-%s and its volume", id);
    return 0;
}

TSR_WUR static int dk_state_of(const dk_resp *r, const char *id, tsr_driver_status *out)
{
    enum tsr_driver_state *state = &out->state;
    int rc = -1;
    json_error_t jerr;
    json_t *j = json_loadb(r->body != NULL ? r->body : "", r->len, JSON_REJECT_DUPLICATES, &jerr);
    char why[320];
    /* jansson's message quotes the offending input: engine text. */
    dk_printable(j == NULL ? jerr.text : "not an object", "", why, sizeof why);
    TSR_TRY_ENSURE(json_is_object(j), TSR_E_PROTO, "the engine's inspect answer is not JSON: %s",
                   why);
    const char *label = json_string_value(
        json_object_get(json_object_get(json_object_get(j, "Config"), "Labels"),
                        "tessera.sandbox-id"));
    TSR_TRY_ENSURE(label != NULL && strcmp(label, id) == 0, TSR_E_STATE,
                   "container tessera-%s does not belong to this sandbox (label "
                   "tessera.sandbox-id is %s)",
                   id, label != NULL ? "different" : "missing");
    const char *st = json_string_value(json_object_get(json_object_get(j, "State"), "Status"));
    TSR_TRY_ENSURE(st != NULL, TSR_E_PROTO, "the engine's inspect answer has no State.Status");
    if (strcmp(st, "created") == 0) *state = TSR_DRIVER_STATE_CREATED;
    else if (strcmp(st, "running") == 0 || strcmp(st, "paused") == 0 ||
             strcmp(st, "restarting") == 0)
        *state = TSR_DRIVER_STATE_RUNNING;
    else if (strcmp(st, "exited") == 0 || strcmp(st, "removing") == 0)
        *state = TSR_DRIVER_STATE_STOPPED;
    else *state = TSR_DRIVER_STATE_FAILED; /* "dead", or a status this driver does not know */
    /* A container that ran and ended: the engine's exit status (the
     * supervisor's, its first process). */
    json_t *code = json_object_get(json_object_get(j, "State"), "ExitCode");
    if ((*state == TSR_DRIVER_STATE_STOPPED || *state == TSR_DRIVER_STATE_FAILED) &&
        json_is_integer(code) && json_integer_value(code) >= -255 &&
        json_integer_value(code) <= 255) {
        out->exited = 1;
        out->exit_code = (int)json_integer_value(code);
    }
    rc = 0;
out:
    json_decref(j);
    return rc;
}

static int dk_status(void *ctx, const char *id, tsr_driver_status *st, char *err,
                     size_t err_cap)
{
    dk_ctx *c = ctx;
    if (st == NULL) return drv_errf(err, err_cap, "docker: status: no status");
    if (!drv_id_valid(id)) return drv_errf(err, err_cap, "docker: status: bad sandbox id");
    uint64_t timeout = c->timeout_ms < DK_STATUS_TIMEOUT_MS ? c->timeout_ms : DK_STATUS_TIMEOUT_MS;
    if (dk_inspect(c, id, timeout, st) != 0)
        return drv_err_recorded(err, err_cap, "docker: status", id);
    if (st->want_detail &&
        (st->state == TSR_DRIVER_STATE_STOPPED || st->state == TSR_DRIVER_STATE_FAILED))
        dk_last_lines(c, id, st->detail, sizeof st->detail);
    return 0;
}

static const tsr_driver_ops dk_ops = {
    .abi_version = TSR_DRIVER_ABI_VERSION,
    .struct_size = sizeof(tsr_driver_ops),
    .name = "docker",
    .init = dk_init,
    .fini = dk_fini,
    .check = dk_check,
    .create = dk_create,
    .start = dk_start,
    .stop = dk_stop,
    .destroy = dk_destroy,
    .status = dk_status,
};

DRV_EXPORT const tsr_driver_ops *tessera_driver_entry(void)
{
    return &dk_ops;
}
