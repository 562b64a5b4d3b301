/* gw_metrics: counters, the histogram and the exposition format (checked
 * by a small parser of the text format), lock-free counting under
 * concurrency, and the GET /metrics listener with hostile requests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gw_metrics.h"
#include "gw_metrics_server.h"
#include "tsr_time.h"

static void noop_unary(const gw_call_ctx *ctx, const uint8_t *msg, size_t len, gw_response *r)
{
    (void)ctx;
    (void)msg;
    (void)len;
    (void)r;
}

static const gw_method METHODS[] = {
    {.path = "/tessera.v1.Gateway/GetSandbox", .unary = noop_unary},
    {.path = "/grpc.health.v1.Health/Check", .unary = noop_unary},
};

/* ---- a parser for the text format ---------------------------------------- */

struct sample {
    char name[128];
    char labels[256];   /* `a="x",b="y"` or "" */
    double value;
};

struct parsed {
    struct sample s[1024];
    size_t n;
    char typed[64][128];   /* metric names with a # TYPE line */
    size_t n_typed;
};

static bool name_char(char c, bool first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
           (!first && c >= '0' && c <= '9');
}

/* The family a sample belongs to (histograms: without the suffix). */
static bool typed(const struct parsed *p, const char *name)
{
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    for (size_t i = 0; i < p->n_typed; i++) {
        size_t n = strlen(p->typed[i]);
        if (strcmp(p->typed[i], name) == 0) return true;
        for (size_t k = 0; k < 3; k++)
            if (strncmp(name, p->typed[i], n) == 0 && strcmp(name + n, suffixes[k]) == 0)
                return true;
    }
    return false;
}

/* Parse strictly; fail the test on any malformed line. */
static void parse(const char *text, struct parsed *p)
{
    memset(p, 0, sizeof *p);
    assert_true(strlen(text) > 0 && text[strlen(text) - 1] == '\n');
    const char *line = text;
    while (*line != '\0') {
        const char *eol = strchr(line, '\n');
        assert_non_null(eol);
        size_t len = (size_t)(eol - line);
        char buf[1024];
        assert_true(len < sizeof buf);
        memcpy(buf, line, len);
        buf[len] = '\0';
        line = eol + 1;
        if (strncmp(buf, "# HELP ", 7) == 0) continue;
        if (strncmp(buf, "# TYPE ", 7) == 0) {
            char name[128], type[32];
            assert_int_equal(sscanf(buf + 7, "%127s %31s", name, type), 2);
            assert_true(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
                        strcmp(type, "histogram") == 0);
            assert_true(p->n_typed < 64);
            strcpy(p->typed[p->n_typed++], name);
            continue;
        }
        assert_true(buf[0] != '#' && buf[0] != '\0');
        struct sample *s = &p->s[p->n];
        size_t i = 0;
        while (name_char(buf[i], i == 0)) i++;
        assert_true(i > 0 && i < sizeof s->name);
        memcpy(s->name, buf, i);
        s->name[i] = '\0';
        if (buf[i] == '{') {
            const char *close = strchr(buf + i, '}');
            assert_non_null(close);
            size_t llen = (size_t)(close - buf - i - 1);
            assert_true(llen < sizeof s->labels);
            memcpy(s->labels, buf + i + 1, llen);
            s->labels[llen] = '\0';
            /* label pairs: name="value" joined by ',' */
            const char *l = s->labels;
            while (*l) {
                size_t k = 0;
                while (name_char(l[k], k == 0)) k++;
                assert_true(k > 0 && l[k] == '=' && l[k + 1] == '"');
                l += k + 2;
                while (*l && *l != '"') l += (*l == '\\') ? 2 : 1;
                assert_int_equal(*l, '"');
                l++;
                if (*l == ',') l++;
                else assert_int_equal(*l, '\0');
            }
            i = (size_t)(close - buf) + 1;
        }
        assert_int_equal(buf[i], ' ');
        char *end;
        s->value = strtod(buf + i + 1, &end);
        assert_true(end != buf + i + 1 && *end == '\0');
        assert_true(typed(p, s->name));
        assert_true(p->n < sizeof p->s / sizeof p->s[0]);
        p->n++;
    }
}

/* The value of name{labels}; fails when absent. */
static double value_of(const struct parsed *p, const char *name, const char *labels)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->s[i].name, name) == 0 && strcmp(p->s[i].labels, labels) == 0)
            return p->s[i].value;
    print_error("no sample %s{%s}\n", name, labels);
    fail();
    return -1;
}

static bool has_sample(const struct parsed *p, const char *name, const char *labels)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->s[i].name, name) == 0 && strcmp(p->s[i].labels, labels) == 0) return true;
    return false;
}

static void render_parse(struct parsed *p)
{
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(gw_metrics_render(&text, &len), 0);
    assert_int_equal(strlen(text), len);
    parse(text, p);
    free(text);
}

/* ---- tests --------------------------------------------------------------- */

static struct parsed P;

static void test_method_registration(void **state)
{
    (void)state;
    gw_metrics_reset();
    gw_method many[GW_METRICS_MAX_METHODS + 1];
    for (size_t i = 0; i <= GW_METRICS_MAX_METHODS; i++) many[i] = METHODS[0];
    assert_int_equal(gw_metrics_set_methods(many, GW_METRICS_MAX_METHODS + 1), -1);
    gw_method nameless = {.path = NULL, .unary = noop_unary};
    assert_int_equal(gw_metrics_set_methods(&nameless, 1), -1);
    assert_int_equal(gw_metrics_set_methods(METHODS, 2), 0);
    assert_int_equal(gw_metrics_set_methods(METHODS, 2), -1);   /* once */
    assert_int_equal(tsr_errcat(), TSR_E_STATE);
    /* An index outside the table is dropped, not a crash. */
    gw_metrics_call_done(NULL, 2, GW_STATUS_OK, 1000, true);
    gw_metrics_call_done(NULL, (size_t)-1, GW_STATUS_OK, 1000, true);
    render_parse(&P);
    assert_true(value_of(&P, "tessera_rpc_duration_seconds_count",
                         "method=\"/tessera.v1.Gateway/GetSandbox\"") == 0);
}

static void test_counters(void **state)
{
    (void)state;
    gw_metrics_reset();
    render_parse(&P);
    /* Every bounded label value is there from the start, at 0. */
    assert_true(value_of(&P, "tessera_certificates_issued_total", "kind=\"create\"") == 0);
    assert_true(value_of(&P, "tessera_certificates_issued_total", "kind=\"renew\"") == 0);
    assert_true(value_of(&P, "tessera_certificates_issued_total", "kind=\"restart\"") == 0);
    static const char *const denials[] = {"unauthenticated", "permission", "cross_sandbox",
                                          "rate_limit", "bad_request", "deleted_sandbox"};
    for (size_t i = 0; i < 6; i++) {
        char l[64];
        snprintf(l, sizeof l, "reason=\"%s\"", denials[i]);
        assert_true(value_of(&P, "tessera_denials_total", l) == 0);
    }
    assert_true(value_of(&P, "tessera_open_connections", "") == 0);
    assert_false(has_sample(&P, "tessera_rpc_duration_seconds_count",
                            "method=\"/tessera.v1.Gateway/GetSandbox\""));   /* no methods */

    gw_metrics_cert_issued(GW_ISSUE_CREATE);
    gw_metrics_cert_issued(GW_ISSUE_CREATE);
    gw_metrics_cert_issued(GW_ISSUE_RENEW);
    gw_metrics_cert_issued(GW_ISSUE_RESTART);
    gw_metrics_cert_issued(GW_ISSUE_KIND_COUNT);   /* out of range: ignored */
    gw_metrics_certs_revoked(3);
    gw_metrics_certs_revoked(1);
    gw_metrics_denial(GW_DENY_CROSS_SANDBOX);
    gw_metrics_denial(GW_DENY_UNAUTHENTICATED);
    gw_metrics_denial(GW_DENY_UNAUTHENTICATED);
    gw_metrics_denial(GW_DENY_COUNT);
    gw_metrics_store_error();
    gw_metrics_audit_write_failure();
    gw_metrics_audit_write_failure();
    gw_metrics_forward(GW_FORWARD_IGNORED);
    for (int i = 0; i < 5; i++) gw_metrics_server_event(NULL, GW_EV_CONN_OPEN);
    for (int i = 0; i < 2; i++) gw_metrics_server_event(NULL, GW_EV_CONN_CLOSE);
    gw_metrics_server_event(NULL, GW_EV_HANDSHAKE_TIMEOUT);
    gw_metrics_server_event(NULL, GW_EV_HANDSHAKE_TLS);
    gw_metrics_server_event(NULL, GW_EV_HANDSHAKE_TLS);
    gw_metrics_server_event(NULL, GW_EV_CONN_REJECTED);
    gw_metrics_server_event(NULL, GW_EV_COUNT);
    render_parse(&P);
    assert_true(value_of(&P, "tessera_certificates_issued_total", "kind=\"create\"") == 2);
    assert_true(value_of(&P, "tessera_certificates_issued_total", "kind=\"renew\"") == 1);
    assert_true(value_of(&P, "tessera_certificates_issued_total", "kind=\"restart\"") == 1);
    assert_true(value_of(&P, "tessera_certificates_revoked_total", "") == 4);
    assert_true(value_of(&P, "tessera_denials_total", "reason=\"cross_sandbox\"") == 1);
    assert_true(value_of(&P, "tessera_denials_total", "reason=\"unauthenticated\"") == 2);
    assert_true(value_of(&P, "tessera_denials_total", "reason=\"permission\"") == 0);
    assert_true(value_of(&P, "tessera_store_errors_total", "") == 1);
    assert_true(value_of(&P, "tessera_audit_write_failures_total", "") == 2);
    assert_true(value_of(&P, "tessera_forwarded_certificates_total", "result=\"ignored\"") == 1);
    assert_true(value_of(&P, "tessera_open_connections", "") == 3);
    assert_true(value_of(&P, "tessera_handshake_failures_total", "reason=\"timeout\"") == 1);
    assert_true(value_of(&P, "tessera_handshake_failures_total", "reason=\"tls\"") == 2);
    assert_true(value_of(&P, "tessera_handshake_failures_total", "reason=\"closed\"") == 0);
    assert_true(value_of(&P, "tessera_connections_rejected_total", "") == 1);
}

static void test_histogram(void **state)
{
    (void)state;
    gw_metrics_reset();
    assert_int_equal(gw_metrics_set_methods(METHODS, 2), 0);
    const char *gs = "method=\"/tessera.v1.Gateway/GetSandbox\"";
    /* 50 us, exactly 1 ms (le is inclusive), 3 ms, 20 s, and a call that
     * never reached its handler (counted by status only). */
    gw_metrics_call_done(NULL, 0, GW_STATUS_OK, 50000, true);
    gw_metrics_call_done(NULL, 0, GW_STATUS_OK, 1000000, true);
    gw_metrics_call_done(NULL, 0, GW_STATUS_NOT_FOUND, 3000000, true);
    gw_metrics_call_done(NULL, 0, GW_STATUS_PERMISSION_DENIED, 20000000000, true);
    gw_metrics_call_done(NULL, 0, GW_STATUS_DEADLINE_EXCEEDED, 0, false);
    gw_metrics_call_done(NULL, 1, GW_STATUS_OK, -5, true);   /* clock oddity: 0 */
    gw_metrics_call_done(NULL, 1, (enum gw_status)99, 10, true);
    render_parse(&P);
    char l[160];
    static const struct {
        const char *le;
        double want;
    } buckets[] = {{"0.0001", 1}, {"0.00025", 1}, {"0.0005", 1}, {"0.001", 2}, {"0.0025", 2},
                   {"0.005", 3},  {"0.01", 3},    {"1", 3},      {"10", 3},    {"+Inf", 4}};
    for (size_t i = 0; i < sizeof buckets / sizeof buckets[0]; i++) {
        snprintf(l, sizeof l, "%s,le=\"%s\"", gs, buckets[i].le);
        if (value_of(&P, "tessera_rpc_duration_seconds_bucket", l) != buckets[i].want) {
            print_error("bucket le=%s: %g, want %g\n", buckets[i].le,
                        value_of(&P, "tessera_rpc_duration_seconds_bucket", l), buckets[i].want);
            fail();
        }
    }
    assert_true(value_of(&P, "tessera_rpc_duration_seconds_count", gs) == 4);
    double sum = value_of(&P, "tessera_rpc_duration_seconds_sum", gs);
    assert_true(sum > 20.00404 && sum < 20.00406);
    /* Buckets are cumulative and end at _count, for every method. */
    for (size_t m = 0; m < 2; m++) {
        double prev = 0, last = -1;
        char prefix[96];
        snprintf(prefix, sizeof prefix, "method=\"%s\",le=", METHODS[m].path);
        size_t seen = 0;
        for (size_t i = 0; i < P.n; i++) {
            if (strcmp(P.s[i].name, "tessera_rpc_duration_seconds_bucket") != 0 ||
                strncmp(P.s[i].labels, prefix, strlen(prefix)) != 0)
                continue;
            assert_true(P.s[i].value >= prev);
            prev = last = P.s[i].value;
            seen++;
        }
        assert_int_equal(seen, 17);
        char ml[96];
        snprintf(ml, sizeof ml, "method=\"%s\"", METHODS[m].path);
        assert_true(value_of(&P, "tessera_rpc_duration_seconds_count", ml) == last);
    }
    snprintf(l, sizeof l, "%s,code=\"OK\"", gs);
    assert_true(value_of(&P, "tessera_rpcs_total", l) == 2);
    snprintf(l, sizeof l, "%s,code=\"DEADLINE_EXCEEDED\"", gs);
    assert_true(value_of(&P, "tessera_rpcs_total", l) == 1);
    snprintf(l, sizeof l, "%s,code=\"UNAVAILABLE\"", gs);
    assert_false(has_sample(&P, "tessera_rpcs_total", l));   /* only pairs seen */
    assert_true(value_of(&P, "tessera_rpcs_total",
                         "method=\"/grpc.health.v1.Health/Check\",code=\"UNKNOWN\"") == 1);
}

#define THREADS 4
#define PER_THREAD 50000

static void *hammer(void *arg)
{
    (void)arg;
    for (int i = 0; i < PER_THREAD; i++) {
        gw_metrics_denial(GW_DENY_PERMISSION);
        gw_metrics_server_event(NULL, GW_EV_CONN_OPEN);
        gw_metrics_call_done(NULL, 0, GW_STATUS_OK, 1500000, true);
    }
    return NULL;
}

static void test_concurrent_counting(void **state)
{
    (void)state;
    gw_metrics_reset();
    assert_int_equal(gw_metrics_set_methods(METHODS, 2), 0);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer, NULL), 0);
    /* Scrapes racing the writers always parse and stay consistent. */
    for (int k = 0; k < 20; k++) render_parse(&P);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    render_parse(&P);
    double want = THREADS * PER_THREAD;
    assert_true(value_of(&P, "tessera_denials_total", "reason=\"permission\"") == want);
    assert_true(value_of(&P, "tessera_open_connections", "") == want);
    assert_true(value_of(&P, "tessera_rpc_duration_seconds_count",
                         "method=\"/tessera.v1.Gateway/GetSandbox\"") == want);
    assert_true(value_of(&P, "tessera_rpc_duration_seconds_bucket",
                         "method=\"/tessera.v1.Gateway/GetSandbox\",le=\"0.001\"") == 0);
    assert_true(value_of(&P, "tessera_rpc_duration_seconds_bucket",
                         "method=\"/tessera.v1.Gateway/GetSandbox\",le=\"0.0025\"") == want);
}

/* ---- the listener -------------------------------------------------------- */

static int connect_to(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* Send the parts (with a pause between them), read until EOF. */
static char *exchange(uint16_t port, const char *const *parts, const size_t *lens, size_t n)
{
    int fd = connect_to(port);
    for (size_t i = 0; i < n; i++) {
        if (i > 0) usleep(50 * 1000);
        size_t off = 0;
        while (off < lens[i]) {
            ssize_t w = send(fd, parts[i] + off, lens[i] - off, MSG_NOSIGNAL);
            if (w <= 0) break;   /* the server may close early (431) */
            off += (size_t)w;
        }
    }
    size_t cap = 1 << 20, used = 0;
    char *buf = malloc(cap + 1);
    assert_non_null(buf);
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        assert_true(poll(&p, 1, 5000) == 1);
        ssize_t r = recv(fd, buf + used, cap - used, 0);
        if (r <= 0) break;
        used += (size_t)r;
        assert_true(used < cap);
    }
    buf[used] = '\0';
    close(fd);
    return buf;
}

static char *request(uint16_t port, const char *text)
{
    size_t len = strlen(text);
    return exchange(port, &text, &len, 1);
}

static void expect_status(uint16_t port, const char *req, size_t len, const char *status)
{
    const char *parts[1] = {req};
    char *resp = exchange(port, parts, &len, 1);
    if (strncmp(resp, status, strlen(status)) != 0) {
        print_error("request \"%.40s\": got \"%.60s\", want \"%s\"\n", req, resp, status);
        fail();
    }
    assert_non_null(strstr(resp, "\r\nConnection: close\r\n"));
    free(resp);
}

static void test_listener(void **state)
{
    (void)state;
    gw_metrics_reset();
    gw_metrics_cert_issued(GW_ISSUE_RENEW);
    gw_metrics_server *m = NULL;
    assert_int_equal(gw_metrics_server_start("127.0.0.1", 0, &m), 0);
    uint16_t port = gw_metrics_server_port(m);
    assert_true(port != 0);

    /* Refusals first. */
    static const struct {
        const char *req;
        const char *status;
    } bad[] = {
        {"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 405 "},
        {"HEAD /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 405 "},
        {"GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 404 "},
        {"GET /metrics/ HTTP/1.1\r\n\r\n", "HTTP/1.1 404 "},
        {"GET /metrics?x=1 HTTP/1.1\r\n\r\n", "HTTP/1.1 404 "},
        {"GET /metricsX HTTP/1.1\r\n\r\n", "HTTP/1.1 404 "},
        {"GET /metrics HTTP/2.0\r\n\r\n", "HTTP/1.1 400 "},
        {"GET /metrics\r\n\r\n", "HTTP/1.1 400 "},
        {"GET  /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 400 "},
        {"HELLO\r\n\r\n", "HTTP/1.1 400 "},
        {"\r\n\r\n", "HTTP/1.1 400 "},
        {"GET /metrics HTTP/1.1 \r\n\r\n", "HTTP/1.1 400 "},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_status(port, bad[i].req, strlen(bad[i].req), bad[i].status);
    static const char nul[] = "GET /met\0rics HTTP/1.1\r\n\r\n";
    expect_status(port, nul, sizeof nul - 1, "HTTP/1.1 400 ");
    /* A head of 8 KiB without its end (exactly: the server reads it all). */
    size_t big = GW_METRICS_REQUEST_MAX;
    char *huge = malloc(big);
    assert_non_null(huge);
    memcpy(huge, "GET /metrics HTTP/1.1\r\nX: ", 26);
    memset(huge + 26, 'a', big - 26);
    expect_status(port, huge, big, "HTTP/1.1 431 ");
    free(huge);

    /* The scrape, in one piece and split mid-line and mid-terminator. */
    char *resp = request(port, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n");
    assert_non_null(strstr(resp, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(resp, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    char *body = strstr(resp, "\r\n\r\n");
    assert_non_null(body);
    body += 4;
    char cl[64];
    snprintf(cl, sizeof cl, "Content-Length: %zu\r\n", strlen(body));
    assert_non_null(strstr(resp, cl));
    parse(body, &P);
    assert_true(value_of(&P, "tessera_certificates_issued_total", "kind=\"renew\"") == 1);
    free(resp);
    const char *parts[] = {"GET /metr", "ics HTTP/1.0\r\n\r", "\n"};
    size_t lens[] = {strlen(parts[0]), strlen(parts[1]), strlen(parts[2])};
    resp = exchange(port, parts, lens, 3);
    assert_non_null(strstr(resp, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(resp, "tessera_certificates_issued_total{kind=\"renew\"} 1\n"));
    free(resp);

    /* A silent client is dropped at the deadline; the next one is served. */
    int64_t t0 = tsr_monotonic_ms();
    int silent = connect_to(port);
    usleep(100 * 1000);
    resp = request(port, "GET /metrics HTTP/1.1\r\n\r\n");
    int64_t waited = tsr_monotonic_ms() - t0;
    assert_non_null(strstr(resp, "HTTP/1.1 200 OK\r\n"));
    assert_true(waited >= GW_METRICS_IO_TIMEOUT_MS - 200 &&
                waited < GW_METRICS_IO_TIMEOUT_MS + 3000);
    free(resp);
    char c;
    assert_int_equal(recv(silent, &c, 1, 0), 0);   /* closed without a response */
    close(silent);

    /* Stop is prompt even with a client holding the listener. */
    silent = connect_to(port);
    usleep(50 * 1000);
    t0 = tsr_monotonic_ms();
    gw_metrics_server_stop(m);
    assert_true(tsr_monotonic_ms() - t0 < 1000);
    close(silent);
    gw_metrics_server_stop(NULL);

    /* A port in use is an error with its reason. */
    int holder = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(holder, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(holder, 1), 0);
    socklen_t sl = sizeof a;
    assert_int_equal(getsockname(holder, (struct sockaddr *)&a, &sl), 0);
    m = (gw_metrics_server *)1;
    assert_int_equal(gw_metrics_server_start("127.0.0.1", ntohs(a.sin_port), &m), -1);
    assert_null(m);
    assert_non_null(strstr(tsr_errmsg(), "bind/listen"));
    close(holder);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_method_registration),
        cmocka_unit_test(test_counters),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_concurrent_counting),
        cmocka_unit_test(test_listener),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
