/* Lock-free counters and the Prometheus text exposition (format 0.0.4:
 * https://prometheus.io/docs/instrumenting/exposition_formats/).
 *
 * Histograms keep one non-cumulative atomic count per bucket; the renderer
 * accumulates them and derives _count from the same snapshot, so a scrape
 * racing an observation still satisfies count == bucket{le="+Inf"}. Counts
 * are relaxed atomics: a scrape sees each value whole, not a consistent
 * cross-metric instant (Prometheus clients give no more). */
#include "gw_metrics.h"
#include "gw_metrics_grpc.h"
#include "gw_selfrenew.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RELAXED memory_order_relaxed

/* The counters below must never fall back to a lock. */
_Static_assert(ATOMIC_LONG_LOCK_FREE == 2 && ATOMIC_LLONG_LOCK_FREE == 2,
               "64-bit atomics are not lock-free on this platform");

/* Upper bounds (seconds) of tessera_rpc_duration_seconds, then +Inf. */
static const double BUCKETS[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                 0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
#define N_BUCKETS (sizeof BUCKETS / sizeof BUCKETS[0])
/* The same bounds in nanoseconds, for the comparison on the hot path. */
static const int64_t BUCKETS_NS[N_BUCKETS] = {
    100000,     250000,     500000,     1000000,    2500000,     5000000,
    10000000,   25000000,   50000000,   100000000,  250000000,   500000000,
    1000000000, 2500000000, 5000000000, 10000000000};

#define N_CODES (GW_STATUS_UNAUTHENTICATED + 1)

struct method_stats {
    atomic_uint_fast64_t buckets[N_BUCKETS + 1];   /* last: above every bound */
    atomic_uint_fast64_t sum_ns;
    atomic_uint_fast64_t codes[N_CODES];
};

static struct {
    atomic_uint_fast64_t issued[GW_ISSUE_KIND_COUNT];
    atomic_uint_fast64_t revoked;
    atomic_uint_fast64_t denials[GW_DENY_COUNT];
    atomic_uint_fast64_t store_errors;
    atomic_uint_fast64_t audit_write_failures;
    atomic_uint_fast64_t forwarded[GW_FORWARD_RESULT_COUNT];
    atomic_uint_fast64_t events[GW_EV_COUNT];   /* OPEN/CLOSE make the gauge */
    /* Written once by gw_metrics_set_methods before serving, then read-only. */
    const char *method_paths[GW_METRICS_MAX_METHODS];
    atomic_size_t n_methods;
    struct method_stats methods[GW_METRICS_MAX_METHODS];
} M;

static void add(atomic_uint_fast64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, RELAXED);
}

static uint64_t get(atomic_uint_fast64_t *c)
{
    return atomic_load_explicit(c, RELAXED);
}

void gw_metrics_cert_issued(enum gw_issue_kind kind)
{
    if ((unsigned)kind < GW_ISSUE_KIND_COUNT) add(&M.issued[kind], 1);
}

void gw_metrics_certs_revoked(uint64_t n)
{
    add(&M.revoked, n);
}

void gw_metrics_denial(enum gw_denial reason)
{
    if ((unsigned)reason < GW_DENY_COUNT) add(&M.denials[reason], 1);
}

void gw_metrics_store_error(void)
{
    add(&M.store_errors, 1);
}

void gw_metrics_audit_write_failure(void)
{
    add(&M.audit_write_failures, 1);
}

void gw_metrics_forward(enum gw_forward_result result)
{
    if ((unsigned)result < GW_FORWARD_RESULT_COUNT) add(&M.forwarded[result], 1);
}

void gw_metrics_server_event(void *app, enum gw_server_event ev)
{
    (void)app;
    if ((unsigned)ev < GW_EV_COUNT) add(&M.events[ev], 1);
}

int gw_metrics_set_methods(const gw_method *methods, size_t n)
{
    TSR_ENSURE(n <= GW_METRICS_MAX_METHODS, TSR_E_INPUT, "metrics: more than %d methods",
               GW_METRICS_MAX_METHODS);
    TSR_ENSURE(atomic_load(&M.n_methods) == 0, TSR_E_STATE, "metrics: methods already set");
    for (size_t i = 0; i < n; i++) {
        TSR_ENSURE(methods[i].path != NULL, TSR_E_INPUT, "metrics: method %zu has no path", i);
        M.method_paths[i] = methods[i].path;
    }
    atomic_store(&M.n_methods, n);   /* publishes the paths (seq_cst) */
    gw_metrics_grpc_set_methods(methods, n);
    return 0;
}

void gw_metrics_call_done(void *app, size_t method, enum gw_status status, int64_t handler_ns,
                          bool handler_ran)
{
    (void)app;
    if (method >= atomic_load_explicit(&M.n_methods, memory_order_acquire)) return;
    struct method_stats *ms = &M.methods[method];
    add(&ms->codes[(unsigned)status < N_CODES ? (unsigned)status : GW_STATUS_UNKNOWN], 1);
    if (!handler_ran) return;
    if (handler_ns < 0) handler_ns = 0;
    size_t b = 0;
    while (b < N_BUCKETS && handler_ns > BUCKETS_NS[b]) b++;
    add(&ms->buckets[b], 1);
    add(&ms->sum_ns, (uint64_t)handler_ns);
}

void gw_metrics_reset(void)
{
    memset(&M, 0, sizeof M);
    gw_metrics_grpc_reset();
}

/* ---- exposition ---------------------------------------------------------- */

static const char *const ISSUE_KIND[GW_ISSUE_KIND_COUNT] = {"create", "renew", "restart"};
static const char *const FORWARD_RESULT[GW_FORWARD_RESULT_COUNT] = {"accepted", "rejected",
                                                                    "ignored"};
static const char *const CODE_NAME[N_CODES] = {
    "OK",        "CANCELLED",         "UNKNOWN",           "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
    "UNIMPLEMENTED", "INTERNAL",     "UNAVAILABLE",       "DATA_LOSS",
    "UNAUTHENTICATED",
};

static void header(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value: backslash, double quote and newline escaped. */
static void label_value(FILE *f, const char *v)
{
    for (const char *p = v; *p; p++) {
        if (*p == '\\') fputs("\\\\", f);
        else if (*p == '"') fputs("\\\"", f);
        else if (*p == '\n') fputs("\\n", f);
        else fputc(*p, f);
    }
}

static void render_methods(FILE *f, size_t n)
{
    header(f, "tessera_rpc_duration_seconds", "histogram",
           "Time spent in the RPC handler (server processing, without network transfer).");
    for (size_t i = 0; i < n; i++) {
        struct method_stats *ms = &M.methods[i];
        uint64_t cum = 0;
        for (size_t b = 0; b <= N_BUCKETS; b++) {
            cum += get(&ms->buckets[b]);
            fputs("tessera_rpc_duration_seconds_bucket{method=\"", f);
            label_value(f, M.method_paths[i]);
            if (b < N_BUCKETS)
                fprintf(f, "\",le=\"%g\"} %llu\n", BUCKETS[b], (unsigned long long)cum);
            else
                fprintf(f, "\",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
        }
        fputs("tessera_rpc_duration_seconds_sum{method=\"", f);
        label_value(f, M.method_paths[i]);
        fprintf(f, "\"} %.9f\n", (double)get(&ms->sum_ns) / 1e9);
        fputs("tessera_rpc_duration_seconds_count{method=\"", f);
        label_value(f, M.method_paths[i]);
        fprintf(f, "\"} %llu\n", (unsigned long long)cum);
    }
    header(f, "tessera_rpcs_total", "counter",
           "Finished calls by method and gRPC status code (only pairs seen so far).");
    for (size_t i = 0; i < n; i++) {
        for (size_t c = 0; c < N_CODES; c++) {
            uint64_t v = get(&M.methods[i].codes[c]);
            if (v == 0) continue;
            fputs("tessera_rpcs_total{method=\"", f);
            label_value(f, M.method_paths[i]);
            fprintf(f, "\",code=\"%s\"} %llu\n", CODE_NAME[c], (unsigned long long)v);
        }
    }
}

int gw_metrics_render(char **out, size_t *len)
{
    char *buf = NULL;
    size_t size = 0;
    *out = NULL;
    *len = 0;
    FILE *f = open_memstream(&buf, &size);
    TSR_ENSURE(f != NULL, TSR_E_INTERNAL, "out of memory");

    header(f, "tessera_certificates_issued_total", "counter",
           "Certificates issued: create (a sandbox's first, at CreateSandbox), renew "
           "(RenewCertificate), restart (for a driver booting a sandbox again).");
    for (size_t k = 0; k < GW_ISSUE_KIND_COUNT; k++)
        fprintf(f, "tessera_certificates_issued_total{kind=\"%s\"} %llu\n", ISSUE_KIND[k],
                (unsigned long long)get(&M.issued[k]));
    header(f, "tessera_certificates_revoked_total", "counter",
           "Certificates revoked (RevokeCertificate, and every certificate of a deleted "
           "sandbox).");
    fprintf(f, "tessera_certificates_revoked_total %llu\n", (unsigned long long)get(&M.revoked));
    header(f, "tessera_denials_total", "counter", "Calls denied, by reason class.");
    for (size_t d = 0; d < GW_DENY_COUNT; d++)
        fprintf(f, "tessera_denials_total{reason=\"%s\"} %llu\n",
                gw_denial_name((enum gw_denial)d), (unsigned long long)get(&M.denials[d]));
    header(f, "tessera_handshake_failures_total", "counter",
           "TLS handshakes that failed: timeout, closed (by the peer), tls (alert or protocol "
           "error).");
    static const struct {
        const char *reason;
        enum gw_server_event ev;
    } hs[] = {{"timeout", GW_EV_HANDSHAKE_TIMEOUT},
              {"closed", GW_EV_HANDSHAKE_CLOSED},
              {"tls", GW_EV_HANDSHAKE_TLS}};
    for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++)
        fprintf(f, "tessera_handshake_failures_total{reason=\"%s\"} %llu\n", hs[i].reason,
                (unsigned long long)get(&M.events[hs[i].ev]));
    header(f, "tessera_open_connections", "gauge",
           "Client connections open now (handshaking or established).");
    uint64_t closed = get(&M.events[GW_EV_CONN_CLOSE]);
    uint64_t opened = get(&M.events[GW_EV_CONN_OPEN]);   /* read second: never below closed */
    fprintf(f, "tessera_open_connections %llu\n",
            (unsigned long long)(opened >= closed ? opened - closed : 0));
    header(f, "tessera_connections_rejected_total", "counter",
           "Connections closed at accept because max_connections was reached.");
    fprintf(f, "tessera_connections_rejected_total %llu\n",
            (unsigned long long)get(&M.events[GW_EV_CONN_REJECTED]));
    header(f, "tessera_forwarded_certificates_total", "counter",
           "Requests carrying the proxy's client-certificate header: accepted (trusted proxy, "
           "valid identity), rejected (trusted proxy, identifies nobody), ignored (not a "
           "trusted proxy).");
    for (size_t r = 0; r < GW_FORWARD_RESULT_COUNT; r++)
        fprintf(f, "tessera_forwarded_certificates_total{result=\"%s\"} %llu\n",
                FORWARD_RESULT[r], (unsigned long long)get(&M.forwarded[r]));
    header(f, "tessera_store_errors_total", "counter",
           "Storage (sqlite) failures: I/O, busy, full, corrupt.");
    fprintf(f, "tessera_store_errors_total %llu\n", (unsigned long long)get(&M.store_errors));
    header(f, "tessera_audit_write_failures_total", "counter",
           "Audit lines not (fully) written: disk full, I/O error, closed descriptor.");
    fprintf(f, "tessera_audit_write_failures_total %llu\n",
            (unsigned long long)get(&M.audit_write_failures));
    gw_expiry_render(f);
    gw_metrics_grpc_render(f);
    render_methods(f, atomic_load_explicit(&M.n_methods, memory_order_acquire));

    int failed = ferror(f);
    if (fclose(f) != 0 || failed || buf == NULL) {
        free(buf);
        return TSR_FAIL(TSR_E_INTERNAL, "metrics: out of memory");
    }
    *out = buf;
    *len = size;
    return 0;
}
