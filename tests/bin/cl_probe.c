/* cl_probe: drives the client library (client/cl_grpc.h) for
 * tests/integration/test_client.py.
 *
 *   cl_probe --addr HOST:PORT|unix:PATH --bundle PEM [--cert PEM --key PEM]
 *            [--trust-domain TD] [--verify-host] [--connect-timeout-ms N]
 *            [--timeout-ms N] [--max-response N]  STEP...
 *
 * Steps run in order; each prints one JSON line to stdout:
 *   open                    open a new connection and make it current
 *                           {"step":"open","conn":N,"code":C,"name":..,"message":..,"peer":..}
 *   call PATH MSG           unary call on the current connection (opened on
 *                           demand) {"step":"call","conn":N,"code":..,"name":..,
 *                           "message":..,"response":HEX,"alive":true|false}
 *   stream PATH MSG,MSG,..  client stream: one "send" line per failed send
 *                           ({"step":"send","index":I,...}) and a "finish" line
 *   sopen PATH              open a client stream on the current connection
 *                           (one at a time) and keep it open while other
 *   ssend MSG               steps run; ssend sends one message on it
 *   sfinish                 ({"step":"ssend",...}); sfinish prints "finish"
 *   use N                   make connection N current
 *   close                   close the current connection
 *   reload CERT KEY         swap the client identity (new connections use it)
 *   timeout MS              per-call timeout from now on
 *   delay MS                pause between the sends of a stream from now on
 *   sleep MS                pause
 * MSG is hex ("" or "-" for empty) or zeros:N (N zero bytes).
 * Exit status: 0 when every step ran (whatever the gRPC statuses), 2 usage,
 * 1 setup failure (TLS context). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cl_grpc.h"
#include "tsr_err.h"

#define MAX_CONNS 16

static void usage(void)
{
    fprintf(stderr, "usage: cl_probe --addr ADDR --bundle PEM [--cert PEM --key PEM] "
                    "[--trust-domain TD] [--verify-host] [--connect-timeout-ms N] "
                    "[--timeout-ms N] [--max-response N] STEP...\n");
    exit(2);
}

static long long num(const char *s)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 0) usage();
    return v;
}

static void json_str(const char *s, size_t len)
{
    putchar('"');
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20 || c == 0x7f) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

static void print_status(const cl_status *st)
{
    printf("\"code\":%d,\"name\":\"%s\",\"message\":", (int)st->code, cl_status_name(st->code));
    json_str(st->message, strlen(st->message));
}

static void print_hex(const uint8_t *p, size_t n)
{
    putchar('"');
    for (size_t i = 0; i < n; i++) printf("%02x", p[i]);
    putchar('"');
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* MSG argument (len bytes of text) -> malloc'd bytes. */
static uint8_t *parse_msg(const char *s, size_t len, size_t *out_len)
{
    *out_len = 0;
    if (len >= 6 && memcmp(s, "zeros:", 6) == 0) {
        char tmp[32];
        if (len - 6 >= sizeof tmp) usage();
        memcpy(tmp, s + 6, len - 6);
        tmp[len - 6] = '\0';
        size_t n = (size_t)num(tmp);
        uint8_t *b = calloc(1, n > 0 ? n : 1);
        if (b == NULL) exit(1);
        *out_len = n;
        return b;
    }
    if (len == 1 && s[0] == '-') len = 0;
    if (len % 2 != 0) usage();
    uint8_t *b = malloc(len / 2 + 1);
    if (b == NULL) exit(1);
    for (size_t i = 0; i < len / 2; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0) usage();
        b[i] = (uint8_t)(hi << 4 | lo);
    }
    *out_len = len / 2;
    return b;
}

static void sleep_ms(long long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

typedef struct probe {
    cl_addr addr;
    cl_tls *tls;
    int64_t connect_timeout, timeout, delay;
    uint32_t max_response;
    cl_conn *conns[MAX_CONNS];
    int n_conns, cur;
    cl_stream *open_stream;
    int open_stream_conn, open_stream_sent;
} probe;

static int do_open(probe *p, const char *step)
{
    if (p->n_conns >= MAX_CONNS) usage();
    cl_status st;
    cl_conn *c = NULL;
    int rc = cl_conn_open_addr(&p->addr, p->tls, p->connect_timeout, &c, &st);
    if (rc == 0 && p->max_response != 0 && cl_conn_set_max_response(c, p->max_response) != 0) {
        fprintf(stderr, "cl_probe: %s\n", tsr_errmsg());
        exit(2);
    }
    printf("{\"step\":\"%s\",\"conn\":%d,", step, rc == 0 ? p->n_conns : -1);
    print_status(&st);
    if (rc == 0) {
        printf(",\"peer\":");
        const char *id = cl_conn_peer(c)->identity.id.text;
        json_str(id, strlen(id));
        p->cur = p->n_conns;
        p->conns[p->n_conns++] = c;
    }
    printf("}\n");
    fflush(stdout);
    return rc;
}

static cl_conn *current(probe *p, const char *step)
{
    if (p->cur >= 0 && p->conns[p->cur] != NULL) return p->conns[p->cur];
    if (do_open(p, step) != 0) return NULL;
    return p->conns[p->cur];
}

static void do_call(probe *p, const char *path, const char *msg)
{
    cl_conn *c = current(p, "open");
    if (c == NULL) return;
    size_t len = 0, rlen = 0;
    uint8_t *req = parse_msg(msg, strlen(msg), &len), *resp = NULL;
    cl_status st;
    if (cl_unary(c, path, req, len, p->timeout, &resp, &rlen, &st) != 0) tsr_err_clear();
    printf("{\"step\":\"call\",\"conn\":%d,", p->cur);
    print_status(&st);
    printf(",\"response\":");
    print_hex(resp, rlen);
    printf(",\"alive\":%s}\n", cl_conn_alive(c) ? "true" : "false");
    fflush(stdout);
    free(req);
    free(resp);
}

static void do_stream(probe *p, const char *path, const char *msgs)
{
    cl_conn *c = current(p, "open");
    if (c == NULL) return;
    cl_status st;
    cl_stream *s = NULL;
    if (cl_stream_open(c, path, p->timeout, &s, &st) != 0) {
        printf("{\"step\":\"finish\",\"conn\":%d,\"sent\":0,", p->cur);
        print_status(&st);
        printf(",\"response\":\"\"}\n");
        fflush(stdout);
        return;
    }
    int index = 0, sent = 0;
    const char *q = msgs;
    for (;;) {
        const char *comma = strchr(q, ',');
        size_t n = comma != NULL ? (size_t)(comma - q) : strlen(q);
        size_t len = 0;
        uint8_t *m = parse_msg(q, n, &len);
        if (index > 0 && p->delay > 0) sleep_ms(p->delay);
        if (cl_stream_send(s, m, len, &st) != 0) {
            printf("{\"step\":\"send\",\"conn\":%d,\"index\":%d,", p->cur, index);
            print_status(&st);
            printf("}\n");
        } else {
            sent++;
        }
        free(m);
        index++;
        if (comma == NULL) break;
        q = comma + 1;
    }
    uint8_t *resp = NULL;
    size_t rlen = 0;
    if (cl_stream_finish(s, &resp, &rlen, &st) != 0) tsr_err_clear();
    printf("{\"step\":\"finish\",\"conn\":%d,\"sent\":%d,", p->cur, sent);
    print_status(&st);
    printf(",\"response\":");
    print_hex(resp, rlen);
    printf("}\n");
    fflush(stdout);
    free(resp);
}

static void do_sopen(probe *p, const char *path)
{
    cl_conn *c = current(p, "open");
    if (c == NULL || p->open_stream != NULL) usage();
    cl_status st;
    int rc = cl_stream_open(c, path, p->timeout, &p->open_stream, &st);
    printf("{\"step\":\"sopen\",\"conn\":%d,", p->cur);
    print_status(&st);
    printf("}\n");
    fflush(stdout);
    if (rc != 0) {
        tsr_err_clear();
        p->open_stream = NULL;
    }
    p->open_stream_conn = p->cur;
    p->open_stream_sent = 0;
}

static void do_ssend(probe *p, const char *msg)
{
    if (p->open_stream == NULL) usage();
    size_t len = 0;
    uint8_t *m = parse_msg(msg, strlen(msg), &len);
    cl_status st;
    if (cl_stream_send(p->open_stream, m, len, &st) == 0) p->open_stream_sent++;
    else tsr_err_clear();
    printf("{\"step\":\"ssend\",\"conn\":%d,", p->open_stream_conn);
    print_status(&st);
    printf("}\n");
    fflush(stdout);
    free(m);
}

static void do_sfinish(probe *p)
{
    if (p->open_stream == NULL) usage();
    uint8_t *resp = NULL;
    size_t rlen = 0;
    cl_status st;
    if (cl_stream_finish(p->open_stream, &resp, &rlen, &st) != 0) tsr_err_clear();
    p->open_stream = NULL;
    printf("{\"step\":\"finish\",\"conn\":%d,\"sent\":%d,", p->open_stream_conn,
           p->open_stream_sent);
    print_status(&st);
    printf(",\"response\":");
    print_hex(resp, rlen);
    printf("}\n");
    fflush(stdout);
    free(resp);
}

int main(int argc, char **argv)
{
    const char *addr = NULL;
    cl_tls_config tc = {0};
    probe p = {.connect_timeout = 5000, .timeout = 5000, .cur = -1};
    static const struct option opts[] = {
        {"addr", required_argument, NULL, 'a'},
        {"bundle", required_argument, NULL, 'b'},
        {"cert", required_argument, NULL, 'c'},
        {"key", required_argument, NULL, 'k'},
        {"trust-domain", required_argument, NULL, 'd'},
        {"verify-host", no_argument, NULL, 'v'},
        {"connect-timeout-ms", required_argument, NULL, 'C'},
        {"timeout-ms", required_argument, NULL, 't'},
        {"max-response", required_argument, NULL, 'm'},
        {NULL, 0, NULL, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        switch (o) {
        case 'a': addr = optarg; break;
        case 'b': tc.bundle_file = optarg; break;
        case 'c': tc.cert_file = optarg; break;
        case 'k': tc.key_file = optarg; break;
        case 'd': tc.trust_domain = optarg; break;
        case 'v': tc.verify_host = true; break;
        case 'C': p.connect_timeout = num(optarg); break;
        case 't': p.timeout = num(optarg); break;
        case 'm': p.max_response = (uint32_t)num(optarg); break;
        default: usage();
        }
    }
    if (addr == NULL || tc.bundle_file == NULL || optind >= argc) usage();
    if (cl_addr_parse(addr, CL_DEFAULT_PORT, &p.addr) != 0) {
        fprintf(stderr, "cl_probe: --addr: %s\n", tsr_errmsg());
        return 2;
    }
    if (cl_tls_new(&tc, &p.tls) != 0) {
        fprintf(stderr, "cl_probe: TLS setup: %s\n", tsr_errmsg());
        return 1;
    }
    for (int i = optind; i < argc; i++) {
        const char *step = argv[i];
        if (strcmp(step, "open") == 0) {
            (void)do_open(&p, "open");
        } else if (strcmp(step, "call") == 0 && i + 2 < argc) {
            do_call(&p, argv[i + 1], argv[i + 2]);
            i += 2;
        } else if (strcmp(step, "stream") == 0 && i + 2 < argc) {
            do_stream(&p, argv[i + 1], argv[i + 2]);
            i += 2;
        } else if (strcmp(step, "sopen") == 0 && i + 1 < argc) {
            do_sopen(&p, argv[++i]);
        } else if (strcmp(step, "ssend") == 0 && i + 1 < argc) {
            do_ssend(&p, argv[++i]);
        } else if (strcmp(step, "sfinish") == 0) {
            do_sfinish(&p);
        } else if (strcmp(step, "use") == 0 && i + 1 < argc) {
            long long n = num(argv[++i]);
            if (n >= p.n_conns || p.conns[n] == NULL) usage();
            p.cur = (int)n;
        } else if (strcmp(step, "close") == 0) {
            if (p.open_stream != NULL && p.open_stream_conn == p.cur) usage();
            if (p.cur >= 0) {
                cl_conn_close(p.conns[p.cur]);
                p.conns[p.cur] = NULL;
                p.cur = -1;
            }
        } else if (strcmp(step, "reload") == 0 && i + 2 < argc) {
            int rc = cl_tls_reload_files(p.tls, argv[i + 1], argv[i + 2]);
            printf("{\"step\":\"reload\",\"ok\":%s,\"generation\":%llu,\"error\":",
                   rc == 0 ? "true" : "false", (unsigned long long)cl_tls_generation(p.tls));
            const char *e = rc == 0 ? "" : tsr_errmsg();
            json_str(e, strlen(e));
            printf("}\n");
            fflush(stdout);
            i += 2;
        } else if (strcmp(step, "timeout") == 0 && i + 1 < argc) {
            p.timeout = num(argv[++i]);
        } else if (strcmp(step, "delay") == 0 && i + 1 < argc) {
            p.delay = num(argv[++i]);
        } else if (strcmp(step, "sleep") == 0 && i + 1 < argc) {
            sleep_ms(num(argv[++i]));
        } else {
            usage();
        }
    }
    cl_stream_cancel(p.open_stream);
    for (int i = 0; i < p.n_conns; i++) cl_conn_close(p.conns[i]);
    cl_tls_free(p.tls);
    return 0;
}
