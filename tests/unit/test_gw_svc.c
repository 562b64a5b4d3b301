/* The service layer (gateway/service/gw_svc_sandbox.c, gw_svc_cert.c)
 * driven with plain C structs, no protobuf: what CreateSandbox,
 * DeleteSandbox, RenewCertificate, RevokeCertificate, PushSandboxLogs and the policy RPCs decide, record, hand
 * to the driver (the in-memory test plugin, tests/drivers/mem) and answer.
 * Refusals first, with their exact status and message; then a create, a
 * rollback after a driver failure, a delete, a renewal, a revocation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gw_app.h"
#include "gw_audit.h"
#include "gw_config.h"
#include "gw_driver.h"
#include "gw_ratelimit.h"
#include "gw_revocation.h"
#include "gw_state.h"
#include "gw_store.h"
#include "gw_svc_cert.h"
#include "gw_svc_logs.h"
#include "gw_svc_policy.h"
#include "gw_svc_sandbox.h"
#include "ca_issue.h"
#include "tsr_time.h"
#include "tu_fs.h"
#include "tu_suppki.h"

#define TD "tessera.local"
#define POLICY "version: 1\n"

typedef struct fixture {
    char *dir, audit[PATH_MAX];
    gw_config cfg;
    tu_pki ca;
    gw_pki pki;
    gw_app app;
    gw_worker worker;
    gw_principal admin;
    gw_call_ctx ctx;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->dir = tu_scratch_dir("svc");
    assert_non_null(f->dir);
    char drivers[PATH_MAX], so[PATH_MAX], link[PATH_MAX + 16], data[PATH_MAX], real[PATH_MAX];
    const char *build = getenv("TSR_BUILD_DIR");
    snprintf(so, sizeof so, "%s/tests/drivers/mem.so", build != NULL ? build : "build");
    snprintf(drivers, sizeof drivers, "%s/drivers", f->dir);
    snprintf(data, sizeof data, "%s/data", f->dir);
    assert_int_equal(mkdir(drivers, 0700), 0);
    assert_int_equal(mkdir(data, 0700), 0);
    assert_non_null(realpath(so, real));
    snprintf(link, sizeof link, "%s/mem.so", drivers);
    assert_int_equal(symlink(real, link), 0);
    snprintf(f->audit, sizeof f->audit, "%s/audit.log", f->dir);
    assert_int_equal(tu_pki_init(&f->ca, TD, tsr_now_unix()), 0);

    snprintf(f->cfg.trust_domain, sizeof f->cfg.trust_domain, "%s", TD);
    snprintf(f->cfg.store_path, sizeof f->cfg.store_path, "%s/tessera.db", f->dir);
    snprintf(f->cfg.default_driver, sizeof f->cfg.default_driver, "mem");
    f->cfg.sandbox_cert_ttl = 3600;
    f->cfg.renew_limit = 3;
    f->cfg.renew_window = 3600;
    f->cfg.log_lines_per_batch = 4;
    f->cfg.log_line_bytes = 16;
    atomic_init(&f->pki.refs, 1); /* the fixture's own reference: never freed by a release */
    f->pki.cfg = &f->cfg;
    f->pki.issuer = f->ca.issuing;
    f->pki.chain_pem = f->ca.issuing_pem;
    f->pki.bundle_pem = f->ca.bundle_pem;
    f->app.cfg = &f->cfg;
    f->app.pki = &f->pki;
    pthread_mutex_init(&f->app.pki_lock, NULL);
    assert_int_equal(gw_ratelimit_new(3, 3600 * 1000, &f->app.renew_limit), 0);
    assert_int_equal(gw_audit_open(f->audit, &f->app.audit), 0);
    assert_int_equal(gw_revocations_new(&f->app.revoked), 0);
    assert_int_equal(gw_states_new(&f->app.states), 0);
    gw_drivers_env env = {
        .dir = drivers, .data_dir = data, .supervisor_path = "/nonexistent",
        .gateway_addr = "127.0.0.1:1", .trust_domain = TD, .default_driver = "mem",
    };
    assert_int_equal(gw_drivers_load(&env, &f->app.drivers), 0);
    assert_int_equal(gw_store_open(f->cfg.store_path, NULL, &f->worker.store), 0);
    f->worker.app = &f->app;

    f->admin.kind = GW_PRINCIPAL_USER;
    f->admin.role = GW_ROLE_ADMIN;
    snprintf(f->admin.name, sizeof f->admin.name, "alice");
    snprintf(f->admin.spiffe_id, sizeof f->admin.spiffe_id, "spiffe://%s/user/alice", TD);
    f->ctx = (gw_call_ctx){.principal = &f->admin, .method = "/tessera.v1.Gateway/CreateSandbox",
                           .app = &f->app, .worker = &f->worker, .peer_addr = "127.0.0.1:1"};
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    gw_drivers_free(f->app.drivers);   /* waits for background destroys */
    gw_store_close(f->worker.store);
    gw_states_free(f->app.states);
    gw_revocations_free(f->app.revoked);
    gw_audit_close(f->app.audit);
    gw_ratelimit_free(f->app.renew_limit);
    pthread_mutex_destroy(&f->app.pki_lock);
    tu_pki_free(&f->ca);
    assert_int_equal(tu_rm_rf(f->dir), 0);
    free(f->dir);
    free(f);
    return 0;
}

static gw_svc_create_req request(const char *name)
{
    return (gw_svc_create_req){.name = name, .policy = POLICY, .driver = "", .image = ""};
}

static void expect_refused(fixture *f, const gw_svc_create_req *req, enum gw_status status,
                           const char *message)
{
    gw_response resp;
    memset(&resp, 0, sizeof resp);
    gw_svc_created made;
    assert_int_equal(gw_svc_sandbox_create(&f->ctx, req, &made, &resp), -1);
    assert_int_equal(resp.status, status);
    assert_string_equal(resp.message, message);
    assert_null(resp.body);
    /* Nothing recorded: no live sandbox of that name. */
    gw_sandbox_rec sb;
    assert_int_equal(gw_store_sandbox_find_by_name(f->worker.store, req->name, &sb), -1);
    assert_int_equal(tsr_errcat(), TSR_E_NOTFOUND);
}

static void test_refusals(void **state)
{
    fixture *f = *state;
    gw_svc_create_req r = request("Bad-Name");
    expect_refused(f, &r, GW_STATUS_INVALID_ARGUMENT, "name must match [a-z0-9._-]{1,64}");
    r = request("no-policy");
    r.policy = "";
    expect_refused(f, &r, GW_STATUS_INVALID_ARGUMENT, "policy is required");
    r = request("bad-driver");
    r.driver = "nope";
    expect_refused(f, &r, GW_STATUS_INVALID_ARGUMENT,
                   "no driver named \"nope\" (available: mem)");
    gw_env_var bad_env[] = {{(char *)(uintptr_t)"1BAD", (char *)(uintptr_t)"x"}};
    r = request("bad-env");
    r.provider_env = bad_env;
    r.n_provider_env = 1;
    gw_response resp;
    memset(&resp, 0, sizeof resp);
    gw_svc_created made;
    assert_int_equal(gw_svc_sandbox_create(&f->ctx, &r, &made, &resp), -1);
    assert_int_equal(resp.status, GW_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(resp.message, "provider_env"));
    assert_int_equal(gw_revocations_count(f->app.revoked), 0);
}

static void test_create_then_delete(void **state)
{
    fixture *f = *state;
    gw_svc_create_req r = request("web-1");
    gw_response resp;
    memset(&resp, 0, sizeof resp);
    gw_svc_created made;
    assert_int_equal(gw_svc_sandbox_create(&f->ctx, &r, &made, &resp), 0);
    assert_string_equal(made.sb.name, "web-1");
    assert_string_equal(made.sb.driver, "mem");
    assert_string_equal(made.sb.state, "running");
    assert_int_equal(made.sb.policy_version, 1);
    assert_int_equal(strlen(made.serial) > 0, 1);

    /* Recorded: the sandbox, running, and its first certificate. */
    gw_sandbox_rec sb;
    assert_int_equal(gw_store_sandbox_find_by_name(f->worker.store, "web-1", &sb), 0);
    assert_string_equal(sb.id, made.sb.id);
    assert_string_equal(sb.state, "running");
    gw_cert_rec cert;
    assert_int_equal(gw_store_cert_get(f->worker.store, made.serial, &cert), 0);
    assert_string_equal(cert.sandbox_id, made.sb.id);
    char want_id[128];
    snprintf(want_id, sizeof want_id, "spiffe://%s/sandbox/%s", TD, made.sb.id);
    assert_string_equal(cert.spiffe_id, want_id);
    assert_int_equal(cert.revoked_at, 0);

    /* The same name again: ALREADY_EXISTS, nothing else recorded. */
    memset(&resp, 0, sizeof resp);
    gw_svc_created again;
    assert_int_equal(gw_svc_sandbox_create(&f->ctx, &r, &again, &resp), -1);
    assert_int_equal(resp.status, GW_STATUS_ALREADY_EXISTS);
    assert_string_equal(resp.message, "sandbox named web-1 already exists");

    /* Delete: every certificate revoked, in the store and in memory. */
    gw_svc_deleted gone;
    memset(&resp, 0, sizeof resp);
    assert_int_equal(gw_svc_sandbox_delete(&f->ctx, &sb, &gone, &resp), 0);
    assert_int_equal(gone.revoked, 1);
    assert_string_equal(gone.sb.id, made.sb.id);
    assert_true(gone.sb.deleted_at != 0);
    gw_store_free_spec(&gone.spec);
    assert_int_equal(gw_store_cert_get(f->worker.store, made.serial, &cert), 0);
    assert_true(cert.revoked_at != 0);
    assert_string_equal(cert.revocation_reason, "sandbox deleted");
    assert_true(gw_revocations_contains(f->app.revoked, made.serial));
    assert_int_equal(gw_store_sandbox_find_by_name(f->worker.store, "web-1", &sb), -1);
}

/* A driver that fails to start: the sandbox is rolled back, its
 * certificate revoked in the store and in memory. */
static void test_driver_failure_rolls_back(void **state)
{
    fixture *f = *state;
    gw_svc_create_req r = request("fail-start-1");
    gw_response resp;
    memset(&resp, 0, sizeof resp);
    gw_svc_created made;
    assert_int_equal(gw_svc_sandbox_create(&f->ctx, &r, &made, &resp), -1);
    assert_int_equal(resp.status, GW_STATUS_UNAVAILABLE);
    assert_non_null(strstr(resp.message, "injected start failure"));
    gw_sandbox_rec sb;
    assert_int_equal(gw_store_sandbox_find_by_name(f->worker.store, "fail-start-1", &sb), -1);
    gw_cert_rec *certs = NULL;
    size_t n = 0;
    assert_int_equal(gw_store_cert_list(f->worker.store, NULL, &certs, &n), 0);
    assert_int_equal(n, 1);
    assert_true(certs[0].revoked_at != 0);
    assert_true(gw_revocations_contains(f->app.revoked, certs[0].serial));
    gw_store_free_certs(certs, n);
}

/* A CSR (DER) for a fresh P-256 key, with no identity in it. */
static uint8_t *make_csr(size_t *len)
{
    EVP_PKEY *key = NULL;
    assert_int_equal(ca_key_generate(CA_KEY_P256, &key), 0);
    X509_REQ *req = X509_REQ_new();
    assert_non_null(req);
    assert_int_equal(X509_REQ_set_pubkey(req, key), 1);
    assert_true(X509_REQ_sign(req, key, EVP_sha256()) > 0);
    uint8_t *der = NULL;
    int n = i2d_X509_REQ(req, &der);
    assert_true(n > 0);
    *len = (size_t)n;
    X509_REQ_free(req);
    EVP_PKEY_free(key);
    return der;
}

static gw_svc_created create_ok(fixture *f, const char *name)
{
    gw_svc_create_req r = request(name);
    gw_response resp;
    memset(&resp, 0, sizeof resp);
    gw_svc_created made;
    assert_int_equal(gw_svc_sandbox_create(&f->ctx, &r, &made, &resp), 0);
    return made;
}

/* The sandbox renews as itself: the identity is its principal's, the new
 * certificate records its lineage; a deleted sandbox gets none. */
static void test_renew(void **state)
{
    fixture *f = *state;
    gw_svc_created made = create_ok(f, "renew-1");
    gw_principal sbp;
    memset(&sbp, 0, sizeof sbp);
    sbp.kind = GW_PRINCIPAL_SANDBOX;
    snprintf(sbp.name, sizeof sbp.name, "%s", made.sb.id);
    snprintf(sbp.spiffe_id, sizeof sbp.spiffe_id, "spiffe://%s/sandbox/%s", TD, made.sb.id);
    snprintf(sbp.serial_hex, sizeof sbp.serial_hex, "%s", made.serial);
    gw_call_ctx ctx = f->ctx;
    ctx.principal = &sbp;
    ctx.method = "/tessera.v1.Gateway/RenewCertificate";

    gw_response resp;
    gw_svc_renewal r;
    memset(&resp, 0, sizeof resp);
    assert_int_equal(gw_svc_cert_renew_sign(&ctx, (const uint8_t *)"", 0, &r, &resp), -1);
    assert_int_equal(resp.status, GW_STATUS_INVALID_ARGUMENT);
    assert_string_equal(resp.message, "csr must be 1..16384 bytes of DER");
    memset(&resp, 0, sizeof resp);
    assert_int_equal(gw_svc_cert_renew_sign(&ctx, (const uint8_t *)"junk", 4, &r, &resp), -1);
    assert_int_equal(resp.status, GW_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(resp.message, "bad CSR: "));

    size_t csr_len = 0;
    uint8_t *csr = make_csr(&csr_len);
    memset(&resp, 0, sizeof resp);
    assert_int_equal(gw_svc_cert_renew_sign(&ctx, csr, csr_len, &r, &resp), 0);
    assert_string_equal(r.rec.spiffe_id, sbp.spiffe_id);
    assert_string_equal(r.rec.sandbox_id, made.sb.id);
    assert_string_equal(r.rec.renewed_from, made.serial);
    assert_non_null(strstr(r.leaf_pem, "BEGIN CERTIFICATE"));
    /* No transport holds the call here: recorded at once, ok answered. */
    gw_response ok;
    memset(&ok, 0, sizeof ok);
    ok.body = malloc(3);
    assert_non_null(ok.body);
    memcpy(ok.body, "abc", 3);
    ok.body_len = 3;
    memset(&resp, 0, sizeof resp);
    gw_svc_cert_renew_record(&ctx, &r.rec, &ok, &resp);
    assert_int_equal(resp.status, GW_STATUS_OK);
    assert_int_equal(resp.body_len, 3);
    assert_null(ok.body);
    free(resp.body);
    gw_cert_rec stored;
    assert_int_equal(gw_store_cert_get(f->worker.store, r.rec.serial, &stored), 0);
    assert_string_equal(stored.renewed_from, made.serial);
    gw_svc_renewal_clear(&r);

    /* Deleted: UNAUTHENTICATED, nothing signed. */
    gw_sandbox_rec sb;
    assert_int_equal(gw_store_sandbox_get(f->worker.store, made.sb.id, &sb), 0);
    gw_svc_deleted gone;
    memset(&resp, 0, sizeof resp);
    assert_int_equal(gw_svc_sandbox_delete(&f->ctx, &sb, &gone, &resp), 0);
    assert_int_equal(gone.revoked, 2);
    gw_store_free_spec(&gone.spec);
    memset(&resp, 0, sizeof resp);
    assert_int_equal(gw_svc_cert_renew_sign(&ctx, csr, csr_len, &r, &resp), -1);
    assert_int_equal(resp.status, GW_STATUS_UNAUTHENTICATED);
    assert_string_equal(resp.message, "sandbox deleted");
    OPENSSL_free(csr);
}

static void test_revoke(void **state)
{
    fixture *f = *state;
    gw_svc_created made = create_ok(f, "revoke-1");
    gw_cert_rec rec;
    gw_response resp;
    memset(&resp, 0, sizeof resp);
    assert_int_equal(gw_svc_cert_revoke(&f->ctx, "xyz", "", &rec, &resp), -1);
    assert_int_equal(resp.status, GW_STATUS_INVALID_ARGUMENT);
    assert_string_equal(resp.message, "serial must be 1..40 hex digits");
    char long_reason[200];
    memset(long_reason, 'r', sizeof long_reason - 1);
    long_reason[sizeof long_reason - 1] = '\0';
    memset(&resp, 0, sizeof resp);
    assert_int_equal(gw_svc_cert_revoke(&f->ctx, made.serial, long_reason, &rec, &resp), -1);
    assert_int_equal(resp.status, GW_STATUS_INVALID_ARGUMENT);
    assert_string_equal(resp.message, "reason exceeds 128 bytes");
    memset(&resp, 0, sizeof resp);
    assert_int_equal(gw_svc_cert_revoke(&f->ctx, made.serial, "bad \xff", &rec, &resp), -1);
    assert_int_equal(resp.status, GW_STATUS_INVALID_ARGUMENT);
    assert_string_equal(resp.message, "reason is not valid UTF-8");
    memset(&resp, 0, sizeof resp);
    assert_int_equal(gw_svc_cert_revoke(&f->ctx, "abcdef", "", &rec, &resp), -1);
    assert_int_equal(resp.status, GW_STATUS_NOT_FOUND);
    assert_string_equal(resp.message, "certificate abcdef not found");
    assert_false(gw_revocations_contains(f->app.revoked, made.serial));

    /* Upper case is folded; an empty reason names the caller. */
    char upper[41];
    for (size_t i = 0; i <= strlen(made.serial); i++)
        upper[i] = (char)(made.serial[i] >= 'a' && made.serial[i] <= 'f' ? made.serial[i] - 32
                                                                          : made.serial[i]);
    memset(&resp, 0, sizeof resp);
    assert_int_equal(gw_svc_cert_revoke(&f->ctx, upper, "", &rec, &resp), 0);
    assert_string_equal(rec.serial, made.serial);
    assert_true(rec.revoked_at != 0);
    assert_string_equal(rec.revocation_reason, "revoked by alice");
    assert_true(gw_revocations_contains(f->app.revoked, made.serial));
}

/* A batch is checked whole (nothing stored of a refused one) and stored
 * exactly once per (session, batch). */
static void test_logs(void **state)
{
    fixture *f = *state;
    gw_svc_created made = create_ok(f, "logs-1");
    const uint8_t nul[] = {'a', 0, 'b'};
    gw_svc_log_line ok_lines[] = {
        {1, "", (const uint8_t *)"hello", 5},
        {2, "stderr", (const uint8_t *)"oops", 4},
        {3, "supervisor", NULL, 0},
    };
    gw_svc_log_line too_long[] = {{1, "stdout", (const uint8_t *)"0123456789abcdefX", 17}};
    gw_svc_log_line with_nul[] = {{1, "stdout", nul, sizeof nul}};
    gw_svc_log_line bad_stream[] = {{1, "stdin", (const uint8_t *)"x", 1}};
    gw_svc_log_line many[5] = {{0}};
    const struct {
        const gw_svc_log_line *lines;
        size_t n;
        int64_t dropped;
        enum gw_status status;
        const char *message;
    } refused[] = {
        {many, 5, 0, GW_STATUS_RESOURCE_EXHAUSTED, "batch of 5 lines exceeds 4"},
        {ok_lines, 3, -1, GW_STATUS_INVALID_ARGUMENT, "dropped_lines must not be negative"},
        {too_long, 1, 0, GW_STATUS_RESOURCE_EXHAUSTED, "line 0 of 17 bytes exceeds 16"},
        {with_nul, 1, 0, GW_STATUS_INVALID_ARGUMENT, "line 0 contains a NUL byte"},
        {bad_stream, 1, 0, GW_STATUS_INVALID_ARGUMENT,
         "line 0: stream must be stdout, stderr or supervisor"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        gw_svc_log_batch b = {.sandbox_id = made.sb.id, .session = "ab", .batch_seq = 1,
                              .lines = refused[i].lines, .n_lines = refused[i].n,
                              .dropped = refused[i].dropped};
        gw_response resp;
        memset(&resp, 0, sizeof resp);
        assert_int_equal(gw_svc_logs_push(&f->ctx, &b, &resp), -1);
        assert_int_equal(resp.status, refused[i].status);
        assert_string_equal(resp.message, refused[i].message);
    }
    gw_svc_log_batch b = {.sandbox_id = made.sb.id, .session = "ab", .batch_seq = 1,
                          .lines = ok_lines, .n_lines = 3, .dropped = 2};
    for (int round = 0; round < 2; round++) {   /* the second is a resend: not stored again */
        gw_response resp;
        memset(&resp, 0, sizeof resp);
        assert_int_equal(gw_svc_logs_push(&f->ctx, &b, &resp), 0);
    }
    gw_log_line *rows = NULL;
    size_t n = 0;
    assert_int_equal(gw_store_logs_get(f->worker.store, made.sb.id, 0, 100, &rows, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(rows[0].stream, "stdout");
    assert_string_equal(rows[0].text, "hello");
    assert_string_equal(rows[1].stream, "stderr");
    assert_string_equal(rows[2].text, "");
    gw_store_free_logs(rows, n);
    int64_t dropped = 0;
    assert_int_equal(gw_store_logs_dropped(f->worker.store, made.sb.id, &dropped), 0);
    assert_int_equal(dropped, 2);
}

static void expect_fail(int rc, const gw_response *resp, enum gw_status status, const char *msg)
{
    assert_int_equal(rc, -1);
    assert_int_equal(resp->status, status);
    assert_string_equal(resp->message, msg);
}

static void test_policy(void **state)
{
    fixture *f = *state;
    gw_svc_created made = create_ok(f, "policy-1");
    gw_sandbox_rec sb;
    assert_int_equal(gw_store_sandbox_get(f->worker.store, made.sb.id, &sb), 0);
    gw_response r;

    /* ReportPolicyStatus */
    memset(&r, 0, sizeof r);
    expect_fail(gw_svc_policy_report(&f->ctx, &sb, 0, 1, "", &r), &r,
                GW_STATUS_INVALID_ARGUMENT, "status must be APPLIED or FAILED");
    memset(&r, 0, sizeof r);
    expect_fail(gw_svc_policy_report(&f->ctx, &sb, GW_POLICY_APPLIED, 2, "", &r), &r,
                GW_STATUS_INVALID_ARGUMENT, "no policy version 2");
    memset(&r, 0, sizeof r);
    assert_int_equal(gw_svc_policy_report(&f->ctx, &sb, GW_POLICY_FAILED, 1, "no net", &r), 0);
    int status = 0;
    char *message = NULL;
    assert_int_equal(
        gw_store_policy_status_latest(f->worker.store, sb.id, 1, &status, &message, NULL), 0);
    assert_int_equal(status, GW_POLICY_FAILED);
    assert_string_equal(message, "no net");
    free(message);

    /* SubmitPolicyAnalysis */
    gw_policy_chunk bad_domain[] = {{(char *)(uintptr_t)"disk", (char *)(uintptr_t)"x: 1\n"}};
    memset(&r, 0, sizeof r);
    expect_fail(gw_svc_policy_submit(&f->ctx, &sb, bad_domain, 0, &r), &r,
                GW_STATUS_INVALID_ARGUMENT, "chunks must number 1..64");
    memset(&r, 0, sizeof r);
    expect_fail(gw_svc_policy_submit(&f->ctx, &sb, bad_domain, 1, &r), &r,
                GW_STATUS_INVALID_ARGUMENT,
                "chunk 0: unknown domain \"disk\" (filesystem, network, process, inference)");
    gw_policy_chunk good[] = {
        {(char *)(uintptr_t)"network", (char *)(uintptr_t)"default: deny\n"}};
    memset(&r, 0, sizeof r);
    assert_int_equal(gw_svc_policy_submit(&f->ctx, &sb, good, 1, &r), 0);
    gw_policy_chunk *draft = NULL;
    size_t n = 0;
    assert_int_equal(gw_store_draft_get(f->worker.store, sb.id, &draft, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(draft[0].domain, "network");
    gw_store_free_chunks(draft, n);

    /* UpdateConfig: a sandbox changes its own policy, and nothing else. */
    gw_principal sbp;
    memset(&sbp, 0, sizeof sbp);
    sbp.kind = GW_PRINCIPAL_SANDBOX;
    snprintf(sbp.name, sizeof sbp.name, "%s", sb.id);
    gw_call_ctx as_sandbox = f->ctx;
    as_sandbox.principal = &sbp;
    gw_env_var env[] = {{(char *)(uintptr_t)"TOKEN", (char *)(uintptr_t)"s3cret"}};
    int64_t version = 0;
    memset(&r, 0, sizeof r);
    expect_fail(gw_svc_policy_update(&as_sandbox, &sb, "", env, 1, &version, &r), &r,
                GW_STATUS_PERMISSION_DENIED, "a sandbox may only change its own policy");
    memset(&r, 0, sizeof r);
    expect_fail(gw_svc_policy_update(&f->ctx, &sb, "", NULL, 0, &version, &r), &r,
                GW_STATUS_INVALID_ARGUMENT, "nothing to update");
    memset(&r, 0, sizeof r);
    assert_int_equal(gw_svc_policy_update(&as_sandbox, &sb, POLICY, NULL, 0, &version, &r), 0);
    assert_int_equal(version, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_then_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_driver_failure_rolls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_renew, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_logs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_policy, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
