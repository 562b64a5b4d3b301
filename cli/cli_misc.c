/* tessera logs | cert list|revoke | bundle | health */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ca_spiffe.h"
#include "cli.h"
#include "tsr_fs.h"
#include "grpc/health/v1/health.pb-c.h"

/* ---- logs ----------------------------------------------------------------- */

#define LOGS_PAGE 1000
#define LOGS_MAX_LIMIT 10000
#define FOLLOW_INTERVAL_MS 1000

static const char logs_help[] =
    "usage: tessera logs SANDBOX [--since SEQ] [--limit N] [--follow]\n"
    "\n"
    "Print a sandbox's log lines (SANDBOX is a name or an id).\n"
    "\n"
    "  --since SEQ   only lines after sequence number SEQ\n"
    "  --limit N     at most N lines (default: all)\n"
    "  --follow      keep polling for new lines (every second) until Ctrl-C;\n"
    "                with --json, one JSON object per line\n"
    "\n"
    "Columns: SEQ, time (UTC), stream, text (bytes that are not printable\n"
    "UTF-8 are shown as \\xNN). JSON gives text (invalid UTF-8 as U+FFFD) and\n"
    "text_hex (the exact bytes).\n";

static volatile sig_atomic_t g_interrupted;

static void on_interrupt(int sig)
{
    (void)sig;
    g_interrupted = 1;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    (void)nanosleep(&ts, NULL); /* a signal ends it early */
}

static void log_time(int64_t ms, char out[40])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char base[32];
    if (ms <= 0 || gmtime_r(&t, &tm) == NULL ||
        strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
        snprintf(out, 40, "%lld", (long long)ms);
        return;
    }
    snprintf(out, 40, "%s.%03dZ", base, (int)(ms % 1000));
}

static void json_line(cli_json *j, const char *key, const Tessera__V1__LogLine *l)
{
    cj_obj(j, key);
    cj_int(j, "seq", l->seq);
    cj_int(j, "timestamp_ms", l->timestamp_ms);
    cj_str(j, "stream", l->stream);
    cj_strn(j, "text", (const char *)l->text.data, l->text.len);
    /* The exact bytes, for scripts that need them. */
    char *hex = malloc(l->text.len * 2 + 1);
    if (hex != NULL) {
        for (size_t i = 0; i < l->text.len; i++) snprintf(hex + 2 * i, 3, "%02x", l->text.data[i]);
        hex[l->text.len * 2] = '\0';
        cj_str(j, "text_hex", hex);
        free(hex);
    }
    cj_close_obj(j);
}

static void human_line(const Tessera__V1__LogLine *l)
{
    char when[40];
    log_time(l->timestamp_ms, when);
    size_t len = l->text.len;
    while (len > 0 && (l->text.data[len - 1] == '\n' || l->text.data[len - 1] == '\r')) len--;
    printf("%6lld  %s  ", (long long)l->seq, when);
    cli_puts_safe(stdout, l->stream);
    for (size_t pad = strlen(l->stream); pad < 10; pad++) putchar(' ');
    fputs("  ", stdout);
    cli_put_safe(stdout, (const char *)l->text.data, len);
    putchar('\n');
}

typedef struct logs_opts {
    const char *sandbox;
    int64_t since, limit;
    bool follow;
} logs_opts;

/* CLI_OK, CLI_IT_HELP after --help, or CLI_USAGE. */
static int logs_args(int argc, char **argv, logs_opts *o)
{
    static const char *cmd = "logs";
    enum { O_SINCE, O_LIMIT, O_FOLLOW };
    static const cli_optdef defs[] = {{"since", true}, {"limit", true}, {"follow", false},
                                      {NULL, false}};
    cli_iter it = {.argc = argc, .argv = argv, .i = 1, .cmd = cmd};
    const char *v = NULL;
    memset(o, 0, sizeof *o);
    for (;;) {
        int r = cli_next(&it, defs, &v);
        if (r == CLI_IT_END) break;
        if (r == CLI_IT_HELP) {
            fputs(logs_help, stdout);
            return CLI_IT_HELP;
        }
        if (r == CLI_IT_ERR) return CLI_USAGE;
        if (r == CLI_IT_POS) {
            if (o->sandbox != NULL) return cli_usage_error(cmd, "unexpected argument '%s'", v);
            o->sandbox = v;
        } else if (r == O_SINCE) {
            if (!cli_parse_int(v, INT64_MAX, &o->since))
                return cli_usage_error(cmd, "--since needs a sequence number, not '%s'", v);
        } else if (r == O_LIMIT) {
            if (!cli_parse_int(v, INT32_MAX, &o->limit) || o->limit == 0)
                return cli_usage_error(cmd, "--limit needs a positive number, not '%s'", v);
        } else if (r == O_FOLLOW) {
            o->follow = true;
        }
    }
    if (o->sandbox == NULL || *o->sandbox == '\0') return cli_usage_error(cmd, "missing SANDBOX");
    return CLI_OK;
}

/* The lines of one page after *since (never a line twice), printed at once
 * unless they are kept for one document; *since and *printed advance. */
static void logs_page(const cli_ctx *c, const Tessera__V1__GetSandboxLogsResponse *r,
                      bool whole_doc, int64_t *since, int64_t *printed)
{
    for (size_t i = 0; i < r->n_lines; i++) {
        const Tessera__V1__LogLine *l = r->lines[i];
        if (l->seq <= *since) continue;
        *since = l->seq;
        (*printed)++;
        if (whole_doc) continue;
        if (c->json) {
            cli_json one;
            cj_begin(&one, stdout);
            json_line(&one, "line", l);
            cj_end(&one);
        } else {
            human_line(l);
        }
    }
}

/* --json without --follow: the kept pages as one document. */
static void logs_document(const char *id, ProtobufCMessage *const *kept, size_t n_kept,
                          int64_t start, int64_t since)
{
    cli_json j;
    cj_begin(&j, stdout);
    cj_str(&j, "sandbox_id", id);
    cj_arr(&j, "lines");
    int64_t last = start;
    for (size_t p = 0; p < n_kept; p++) {
        const Tessera__V1__GetSandboxLogsResponse *r =
            (const Tessera__V1__GetSandboxLogsResponse *)kept[p];
        for (size_t i = 0; i < r->n_lines; i++) {
            if (r->lines[i]->seq <= last) continue;
            last = r->lines[i]->seq;
            json_line(&j, NULL, r->lines[i]);
        }
    }
    cj_close_arr(&j);
    cj_int(&j, "next_since", since);
    cj_end(&j);
}

int cli_cmd_logs(cli_ctx *c, int argc, char **argv)
{
    logs_opts o;
    int rc = logs_args(argc, argv, &o);
    if (rc == CLI_IT_HELP) return CLI_OK;
    if (rc != CLI_OK) return rc;

    char id[CA_UUID_LEN + 1];
    rc = cli_resolve_sandbox(c, o.sandbox, id);
    if (rc != CLI_OK) return rc;

    if (o.follow) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_interrupt;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
    }
    /* --json without --follow is one document: pages are kept and printed at
     * the end, so that a failure midway leaves only the error document. */
    bool whole_doc = c->json && !o.follow;
    ProtobufCMessage **kept = NULL;
    size_t n_kept = 0, cap_kept = 0;
    int64_t printed = 0, since = o.since;
    rc = CLI_OK;
    while (!g_interrupted) {
        int64_t page = LOGS_PAGE;
        if (o.limit > 0 && o.limit - printed < page) page = o.limit - printed;
        Tessera__V1__GetSandboxLogsRequest req;
        tessera__v1__get_sandbox_logs_request__init(&req);
        req.sandbox_id = id;
        req.since = since;
        req.limit = (int32_t)page;
        ProtobufCMessage *out = NULL;
        rc = cli_call(c, "GetSandboxLogs", &req.base,
                      &tessera__v1__get_sandbox_logs_response__descriptor, &out);
        if (rc != CLI_OK) break;
        const Tessera__V1__GetSandboxLogsResponse *r = (Tessera__V1__GetSandboxLogsResponse *)out;
        size_t got = r->n_lines;
        logs_page(c, r, whole_doc, &since, &printed);
        if (whole_doc) {
            if (n_kept == cap_kept) {
                size_t ncap = cap_kept != 0 ? cap_kept * 2 : 16;
                ProtobufCMessage **nk = realloc(kept, ncap * sizeof *nk);
                if (nk == NULL) {
                    protobuf_c_message_free_unpacked(out, NULL);
                    rc = cli_fail(c, "out of memory");
                    break;
                }
                kept = nk;
                cap_kept = ncap;
            }
            kept[n_kept++] = out;
        } else {
            protobuf_c_message_free_unpacked(out, NULL);
        }
        fflush(stdout);
        if (o.limit > 0 && printed >= o.limit) break;
        if ((int64_t)got < page) {
            if (!o.follow) break;
            sleep_ms(FOLLOW_INTERVAL_MS);
        }
    }
    if (whole_doc && rc == CLI_OK) logs_document(id, kept, n_kept, o.since, since);
    for (size_t p = 0; p < n_kept; p++) protobuf_c_message_free_unpacked(kept[p], NULL);
    free(kept);
    return rc;
}

/* ---- cert ------------------------------------------------------------------------ */

static const char cert_help[] =
    "usage: tessera cert list SANDBOX\n"
    "       tessera cert revoke SERIAL [--reason TEXT]\n";
static const char cert_list_help[] =
    "usage: tessera cert list SANDBOX\n\n"
    "List every certificate issued to a sandbox (name or id), with its state and\n"
    "the certificate it was renewed from (revoking one revokes its renewals).\n";
static const char cert_revoke_help[] =
    "usage: tessera cert revoke SERIAL [--reason TEXT]\n\n"
    "Revoke one certificate (admin only). SERIAL is hex, as 'cert list' shows it.\n"
    "Connections using it are closed within a second.\n";

static const char *cert_state(const Tessera__V1__Certificate *ce, int64_t now)
{
    if (ce->revoked_at != 0) return "revoked";
    if (ce->not_after != 0 && ce->not_after < now) return "expired";
    return "valid";
}

static void cj_cert(cli_json *j, const char *key, const Tessera__V1__Certificate *ce, int64_t now)
{
    cj_obj(j, key);
    cj_str(j, "serial", ce->serial);
    cj_str(j, "spiffe_id", ce->spiffe_id);
    cj_str(j, "sandbox_id", ce->sandbox_id);
    cj_int(j, "not_before", ce->not_before);
    cj_int(j, "not_after", ce->not_after);
    cj_int(j, "revoked_at", ce->revoked_at);
    cj_str(j, "revocation_reason", ce->revocation_reason);
    cj_str(j, "renewed_from", ce->renewed_from);
    cj_str(j, "state", cert_state(ce, now));
    cj_close_obj(j);
}

#define CERT_PAGE 500
#define CERT_MAX_PAGES 1000

static void cert_row(const Tessera__V1__Certificate *ce, int64_t now)
{
    char nb[32], na[32], ra[32];
    cli_time(ce->not_before, nb);
    cli_time(ce->not_after, na);
    cli_puts_safe(stdout, ce->serial);
    for (size_t pad = strlen(ce->serial); pad < 32; pad++) putchar(' ');
    printf("  %-20s  %-20s  ", nb, na);
    const char *from = ce->renewed_from != NULL && ce->renewed_from[0] != '\0' ? ce->renewed_from
                                                                              : "-";
    cli_puts_safe(stdout, from);
    for (size_t pad = strlen(from); pad < 32; pad++) putchar(' ');
    printf("  %s", cert_state(ce, now));
    if (ce->revoked_at != 0) {
        cli_time(ce->revoked_at, ra);
        printf(" %s", ra);
        if (ce->revocation_reason != NULL && ce->revocation_reason[0] != '\0') {
            fputs(" (", stdout);
            cli_puts_safe(stdout, ce->revocation_reason);
            putchar(')');
        }
    }
    putchar('\n');
}

/* Every page of ListCertificates, then the output. */
static int cert_list(cli_ctx *c, int argc, char **argv)
{
    const char *arg = NULL;
    int rc = cli_positional("cert list", cert_list_help, argc, argv, 1, &arg);
    if (rc == -1) return CLI_OK;
    if (rc != CLI_OK) return rc;
    char id[CA_UUID_LEN + 1];
    if ((rc = cli_resolve_sandbox(c, arg, id)) != CLI_OK) return rc;
    ProtobufCMessage **pages = calloc(CERT_MAX_PAGES, sizeof *pages);
    if (pages == NULL) return cli_fail(c, "out of memory");
    size_t n_pages = 0, total = 0;
    Tessera__V1__ListCertificatesRequest req;
    tessera__v1__list_certificates_request__init(&req);
    req.sandbox_id = id;
    req.page_size = CERT_PAGE;
    rc = cli_call_pages(c, "ListCertificates", &req.base, &req.page_token,
                        &tessera__v1__list_certificates_response__descriptor, pages,
                        CERT_MAX_PAGES, &n_pages, "certificates");
    if (rc != CLI_OK) goto out;
    for (size_t p = 0; p < n_pages; p++)
        total += ((Tessera__V1__ListCertificatesResponse *)pages[p])->n_certificates;
    int64_t now = (int64_t)time(NULL);
    if (c->json) {
        cli_json j;
        cj_begin(&j, stdout);
        cj_str(&j, "sandbox_id", id);
        cj_arr(&j, "certificates");
        for (size_t p = 0; p < n_pages; p++) {
            Tessera__V1__ListCertificatesResponse *r =
                (Tessera__V1__ListCertificatesResponse *)pages[p];
            for (size_t i = 0; i < r->n_certificates; i++)
                cj_cert(&j, NULL, r->certificates[i], now);
        }
        cj_close_arr(&j);
        cj_end(&j);
    } else if (total == 0) {
        printf("No certificates.\n");
    } else {
        printf("%-32s  %-20s  %-20s  %-32s  %s\n", "SERIAL", "NOT BEFORE", "NOT AFTER",
               "RENEWED FROM", "STATE");
        for (size_t p = 0; p < n_pages; p++) {
            Tessera__V1__ListCertificatesResponse *r =
                (Tessera__V1__ListCertificatesResponse *)pages[p];
            for (size_t i = 0; i < r->n_certificates; i++) cert_row(r->certificates[i], now);
        }
    }
    rc = CLI_OK;
out:
    for (size_t p = 0; p < n_pages; p++) protobuf_c_message_free_unpacked(pages[p], NULL);
    free(pages);
    return rc;
}

static int cert_revoke(cli_ctx *c, int argc, char **argv)
{
    static const char *cmd = "cert revoke";
    static const cli_optdef defs[] = {{"reason", true}, {NULL, false}};
    cli_iter it = {.argc = argc, .argv = argv, .i = 1, .cmd = cmd};
    const char *serial = NULL, *reason = "", *v = NULL;
    for (;;) {
        int r = cli_next(&it, defs, &v);
        if (r == CLI_IT_END) break;
        if (r == CLI_IT_HELP) {
            fputs(cert_revoke_help, stdout);
            return CLI_OK;
        }
        if (r == CLI_IT_ERR) return CLI_USAGE;
        if (r == CLI_IT_POS) {
            if (serial != NULL) return cli_usage_error(cmd, "unexpected argument '%s'", v);
            serial = v;
        } else {
            reason = v;
        }
    }
    if (serial == NULL) return cli_usage_error(cmd, "missing SERIAL");
    /* Hex, any case, optional ':' separators as openssl prints them. */
    char hex[41];
    size_t n = 0;
    for (const char *p = serial; *p; p++) {
        char ch = *p;
        if (ch == ':') continue;
        if (ch >= 'A' && ch <= 'F') ch = (char)(ch - 'A' + 'a');
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')) || n == 40)
            return cli_usage_error(cmd, "SERIAL must be hex, at most 40 digits: '%s'", serial);
        hex[n++] = ch;
    }
    hex[n] = '\0';
    if (n == 0) return cli_usage_error(cmd, "empty SERIAL");
    if (strlen(reason) > 256) return cli_usage_error(cmd, "--reason is limited to 256 bytes");

    Tessera__V1__RevokeCertificateRequest req;
    tessera__v1__revoke_certificate_request__init(&req);
    req.serial = hex;
    req.reason = (char *)(uintptr_t)reason;
    ProtobufCMessage *out = NULL;
    int rc = cli_call(c, "RevokeCertificate", &req.base,
                      &tessera__v1__revoke_certificate_response__descriptor, &out);
    if (rc != CLI_OK) return rc;
    Tessera__V1__RevokeCertificateResponse *r = (Tessera__V1__RevokeCertificateResponse *)out;
    int64_t now = (int64_t)time(NULL);
    if (c->json) {
        cli_json j;
        cj_begin(&j, stdout);
        if (r->certificate != NULL) cj_cert(&j, "certificate", r->certificate, now);
        cj_end(&j);
    } else {
        printf("Revoked certificate %s", hex);
        if (r->certificate != NULL) {
            char when[32];
            cli_time(r->certificate->revoked_at, when);
            fputs(" (", stdout);
            cli_puts_safe(stdout, r->certificate->spiffe_id);
            printf(") at %s", when);
        }
        putchar('\n');
    }
    protobuf_c_message_free_unpacked(out, NULL);
    return CLI_OK;
}

int cli_cmd_cert(cli_ctx *c, int argc, char **argv)
{
    if (argc < 2) {
        fputs(cert_help, stderr);
        return CLI_USAGE;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0) {
        fputs(cert_help, stdout);
        return CLI_OK;
    }
    if (strcmp(sub, "list") == 0) return cert_list(c, argc - 1, argv + 1);
    if (strcmp(sub, "revoke") == 0) return cert_revoke(c, argc - 1, argv + 1);
    return cli_usage_error("cert", "unknown cert command '%s'", sub);
}

/* ---- bundle / health -------------------------------------------------------------- */

static const char bundle_help[] =
    "usage: tessera bundle [--format pem|spiffe] [--crl FILE]\n\n"
    "Print the gateway's current trust bundle (PEM), e.g. to refresh\n"
    "DIR/bundle.pem after a CA rotation: tessera bundle > bundle.pem\n\n"
    "  --format F   pem (default): the roots as PEM; spiffe: the SPIFFE bundle\n"
    "               (JWK Set with spiffe_sequence and spiffe_refresh_hint), the\n"
    "               document the bundle endpoint serves (docs/operations.md)\n"
    "  --crl FILE   also write the gateway's CRL (PEM, one per issuing CA) to\n"
    "               FILE (replaced atomically, mode 0644), e.g. for\n"
    "               openssl verify -crl_check -CRLfile FILE\n";

/* PEM is ASCII text: refuse to pass anything else on. */
static bool pem_text(const char *p)
{
    for (; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (!((ch >= 0x20 && ch < 0x7f) || ch == '\n' || ch == '\r')) return false;
    }
    return true;
}

int cli_cmd_bundle(cli_ctx *c, int argc, char **argv)
{
    static const char *cmd = "bundle";
    static const cli_optdef defs[] = {{"crl", true}, {"format", true}, {NULL, false}};
    cli_iter it = {.argc = argc, .argv = argv, .i = 1, .cmd = cmd};
    const char *crl_path = NULL, *v = NULL;
    bool spiffe = false;
    for (;;) {
        int r = cli_next(&it, defs, &v);
        if (r == CLI_IT_END) break;
        if (r == CLI_IT_HELP) {
            fputs(bundle_help, stdout);
            return CLI_OK;
        }
        if (r == CLI_IT_ERR) return CLI_USAGE;
        if (r == CLI_IT_POS) return cli_usage_error(cmd, "unexpected argument '%s'", v);
        if (r == 1) {
            if (v == NULL || (strcmp(v, "pem") != 0 && strcmp(v, "spiffe") != 0))
                return cli_usage_error(cmd, "--format is pem or spiffe");
            spiffe = strcmp(v, "spiffe") == 0;
            continue;
        }
        if (v == NULL || *v == '\0') return cli_usage_error(cmd, "--crl needs a file name");
        crl_path = v;
    }
    Tessera__V1__GetTrustBundleRequest req;
    tessera__v1__get_trust_bundle_request__init(&req);
    ProtobufCMessage *out = NULL;
    int rc = cli_call(c, "GetTrustBundle", &req.base,
                      &tessera__v1__get_trust_bundle_response__descriptor, &out);
    if (rc != CLI_OK) return rc;
    Tessera__V1__GetTrustBundleResponse *r = (Tessera__V1__GetTrustBundleResponse *)out;
    if (!pem_text(r->bundle_pem) || !pem_text(r->crl_pem)) {
        protobuf_c_message_free_unpacked(out, NULL);
        return cli_fail(c, "the gateway's bundle or CRL is not PEM text");
    }
    if (crl_path != NULL) {
        if (strstr(r->crl_pem, "-----BEGIN X509 CRL-----") == NULL) {
            protobuf_c_message_free_unpacked(out, NULL);
            return cli_fail(c, "the gateway sent no CRL (is it older than this tessera?)");
        }
        if (tsr_write_file_atomic(crl_path, r->crl_pem, strlen(r->crl_pem), 0644,
                                  TSR_WRITE_REPLACE) != 0) {
            protobuf_c_message_free_unpacked(out, NULL);
            return cli_fail(c, "cannot write %s: %s", crl_path, tsr_errmsg());
        }
    }
    if (c->json) {
        cli_json j;
        cj_begin(&j, stdout);
        cj_str(&j, "trust_domain", r->trust_domain);
        cj_str(&j, "bundle_pem", r->bundle_pem);
        cj_str(&j, "crl_pem", r->crl_pem);
        cj_str(&j, "spiffe_bundle_json", r->spiffe_bundle_json);
        cj_end(&j);
    } else if (spiffe) {
        if (!pem_text(r->spiffe_bundle_json) || r->spiffe_bundle_json[0] != '{') {
            protobuf_c_message_free_unpacked(out, NULL);
            return cli_fail(c, "the gateway sent no SPIFFE bundle");
        }
        fputs(r->spiffe_bundle_json, stdout);
        fputc('\n', stdout);
    } else {
        fputs(r->bundle_pem, stdout);
    }
    protobuf_c_message_free_unpacked(out, NULL);
    return CLI_OK;
}

static const char health_help[] =
    "usage: tessera health\n\n"
    "grpc.health.v1.Health/Check without a client certificate. Prints SERVING\n"
    "and exits 0 when the gateway serves; exits 1 otherwise.\n";

int cli_cmd_health(cli_ctx *c, int argc, char **argv)
{
    const char *arg = NULL;
    int rc = cli_positional("health", health_help, argc, argv, 0, &arg);
    if (rc == -1) return CLI_OK;
    if (rc != CLI_OK) return rc;
    Grpc__Health__V1__HealthCheckRequest req;
    grpc__health__v1__health_check_request__init(&req);
    ProtobufCMessage *out = NULL;
    rc = cli_call(c, "/grpc.health.v1.Health/Check", &req.base,
                  &grpc__health__v1__health_check_response__descriptor, &out);
    if (rc != CLI_OK) return rc;
    Grpc__Health__V1__HealthCheckResponse *r = (Grpc__Health__V1__HealthCheckResponse *)out;
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(
        &grpc__health__v1__health_check_response__serving_status__descriptor, (int)r->status);
    const char *name = ev != NULL ? ev->name : "UNKNOWN";
    bool serving = r->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    if (c->json) {
        cli_json j;
        cj_begin(&j, stdout);
        cj_str(&j, "status", name);
        cj_str(&j, "gateway", cl_conn_peer(c->conn)->identity.id.text);
        cj_end(&j);
    } else {
        printf("%s (", name);
        cli_puts_safe(stdout, cl_conn_peer(c->conn)->identity.id.text);
        printf(" at %s)\n", c->addr_text);
    }
    protobuf_c_message_free_unpacked(out, NULL);
    return serving ? CLI_OK : CLI_RPC;
}
