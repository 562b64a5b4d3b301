#include "gw_metrics_grpc.h"

#include <dirent.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "grpc_frame.h"
#include "gw_metrics.h"
#include "tsr_fs.h"
#include "tsr_version.h"

#include <openssl/crypto.h>

#define N_CODES 17
/* go-grpc-prometheus's default buckets (prometheus.DefBuckets), seconds. */
static const double BUCKETS[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define N_BUCKETS (sizeof BUCKETS / sizeof BUCKETS[0])

struct per_method {
    atomic_uint_fast64_t started;
    atomic_uint_fast64_t handled[N_CODES];
    atomic_uint_fast64_t buckets[N_BUCKETS + 1];   /* non-cumulative; last: +Inf */
    atomic_uint_fast64_t sum_ns;
};

static struct {
    struct per_method m[GW_METRICS_MAX_METHODS];
    const gw_method *methods;
    atomic_size_t n;
} G;

void gw_metrics_grpc_set_methods(const gw_method *methods, size_t n)
{
    if (n > GW_METRICS_MAX_METHODS) n = GW_METRICS_MAX_METHODS;
    G.methods = methods;
    atomic_store(&G.n, n);
}

void gw_metrics_grpc_started(void *app, size_t method)
{
    (void)app;
    if (method < atomic_load(&G.n)) atomic_fetch_add(&G.m[method].started, 1);
}

void gw_metrics_grpc_finished(void *app, size_t method, enum gw_status status, int64_t elapsed_ns)
{
    (void)app;
    if (method >= atomic_load(&G.n)) return;
    struct per_method *pm = &G.m[method];
    size_t code = (unsigned)status < N_CODES ? (size_t)status : (size_t)GW_STATUS_UNKNOWN;
    atomic_fetch_add(&pm->handled[code], 1);
    if (elapsed_ns < 0) elapsed_ns = 0;
    double secs = (double)elapsed_ns / 1e9;
    size_t b = 0;
    while (b < N_BUCKETS && secs > BUCKETS[b]) b++;
    atomic_fetch_add(&pm->buckets[b], 1);
    atomic_fetch_add(&pm->sum_ns, (uint_fast64_t)elapsed_ns);
}

void gw_metrics_grpc_reset(void)
{
    memset(G.m, 0, sizeof G.m);
    G.methods = NULL;
    atomic_store(&G.n, 0);
}

static const char *type_of(const gw_method *m)
{
    if (m->unary != NULL) return "unary";
    if (m->client_stream != NULL) return "client_stream";
    return m->stream != NULL && m->stream->client_streams ? "bidi_stream" : "server_stream";
}

/* grpc_type="unary",grpc_service="pkg.Svc",grpc_method="M" of a path. */
static void labels(FILE *f, const gw_method *m)
{
    const char *path = m->path + 1, *slash = strrchr(path, '/');
    int svc_len = slash != NULL ? (int)(slash - path) : 0;
    fprintf(f, "grpc_type=\"%s\",grpc_service=\"%.*s\",grpc_method=\"%s\"", type_of(m), svc_len,
            path, slash != NULL ? slash + 1 : path);
}

static void render_grpc(FILE *f, size_t n)
{
    fputs("# HELP grpc_server_started_total Total number of RPCs started on the server.\n"
          "# TYPE grpc_server_started_total counter\n", f);
    for (size_t i = 0; i < n; i++) {
        fputs("grpc_server_started_total{", f);
        labels(f, &G.methods[i]);
        fprintf(f, "} %llu\n", (unsigned long long)atomic_load(&G.m[i].started));
    }
    fputs("# HELP grpc_server_handled_total Total number of RPCs completed on the server, "
          "regardless of success or failure.\n"
          "# TYPE grpc_server_handled_total counter\n", f);
    for (size_t i = 0; i < n; i++) {
        for (size_t c = 0; c < N_CODES; c++) {
            uint64_t v = atomic_load(&G.m[i].handled[c]);
            if (v == 0 && c != 0) continue;   /* OK always; others once seen */
            fputs("grpc_server_handled_total{", f);
            labels(f, &G.methods[i]);
            fprintf(f, ",grpc_code=\"%s\"} %llu\n", grpc_status_name((int)c),
                    (unsigned long long)v);
        }
    }
    fputs("# HELP grpc_server_handling_seconds Histogram of response latency (seconds) of gRPC "
          "that had been application-level handled by the server.\n"
          "# TYPE grpc_server_handling_seconds histogram\n", f);
    for (size_t i = 0; i < n; i++) {
        uint64_t cum = 0;
        for (size_t b = 0; b <= N_BUCKETS; b++) {
            cum += atomic_load(&G.m[i].buckets[b]);
            fputs("grpc_server_handling_seconds_bucket{", f);
            labels(f, &G.methods[i]);
            if (b < N_BUCKETS) fprintf(f, ",le=\"%g\"} %llu\n", BUCKETS[b], (unsigned long long)cum);
            else fprintf(f, ",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
        }
        fputs("grpc_server_handling_seconds_sum{", f);
        labels(f, &G.methods[i]);
        fprintf(f, "} %.9f\n", (double)atomic_load(&G.m[i].sum_ns) / 1e9);
        fputs("grpc_server_handling_seconds_count{", f);
        labels(f, &G.methods[i]);
        fprintf(f, "} %llu\n", (unsigned long long)cum);
    }
}

/* ---- process_* ------------------------------------------------------------- */

/* The start time: now, less the time since the process started
 * (CLOCK_BOOTTIME now minus /proc/self/stat field 22, starttime in clock
 * ticks since boot). Not /proc/stat's btime: that is the host's boot time,
 * which a time namespace does not shift. 0 when unknown. */
static double start_time(void)
{
    uint8_t *pstat = NULL;
    size_t plen = 0;
    double t = 0;
    struct timespec boot, now;
    if (tsr_read_file("/proc/self/stat", 4096, &pstat, &plen) != 0 ||
        clock_gettime(CLOCK_BOOTTIME, &boot) != 0 || clock_gettime(CLOCK_REALTIME, &now) != 0)
        goto out;
    const char *rp = strrchr((const char *)pstat, ')');
    if (rp == NULL) goto out;
    /* After "pid (comm)": field 3 is the state; starttime is field 22. */
    const char *p = rp + 1;
    for (int field = 3; field < 22 && p != NULL; field++) p = strchr(p + 1, ' ');
    if (p == NULL) goto out;
    unsigned long long ticks = strtoull(p + 1, NULL, 10);
    long hz = sysconf(_SC_CLK_TCK);
    if (hz <= 0) goto out;
    double age = (double)boot.tv_sec + (double)boot.tv_nsec / 1e9 - (double)ticks / (double)hz;
    t = (double)now.tv_sec + (double)now.tv_nsec / 1e9 - age;
out:
    free(pstat);
    return t;
}

static void render_process(FILE *f)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        fprintf(f, "# HELP process_cpu_seconds_total Total user and system CPU time spent in "
                   "seconds.\n# TYPE process_cpu_seconds_total counter\n"
                   "process_cpu_seconds_total %.6f\n",
                (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
    uint8_t *statm = NULL;
    size_t len = 0;
    unsigned long long vsz = 0, rss = 0;
    if (tsr_read_file("/proc/self/statm", 4096, &statm, &len) == 0 &&
        sscanf((const char *)statm, "%llu %llu", &vsz, &rss) == 2) {
        long page = sysconf(_SC_PAGESIZE);
        fprintf(f, "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
                   "# TYPE process_virtual_memory_bytes gauge\n"
                   "process_virtual_memory_bytes %llu\n"
                   "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
                   "# TYPE process_resident_memory_bytes gauge\n"
                   "process_resident_memory_bytes %llu\n",
                vsz * (unsigned long long)page, rss * (unsigned long long)page);
    }
    free(statm);
    DIR *d = opendir("/proc/self/fd");
    if (d != NULL) {
        unsigned long long n = 0;
        for (struct dirent *e; (e = readdir(d)) != NULL;)
            if (e->d_name[0] != '.') n++;
        closedir(d);
        /* Less the one opendir held. */
        fprintf(f, "# HELP process_open_fds Number of open file descriptors.\n"
                   "# TYPE process_open_fds gauge\nprocess_open_fds %llu\n",
                n > 0 ? n - 1 : 0);
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        fprintf(f, "# HELP process_max_fds Maximum number of open file descriptors.\n"
                   "# TYPE process_max_fds gauge\nprocess_max_fds %llu\n",
                (unsigned long long)rl.rlim_cur);
    double st = start_time();
    if (st > 0)
        fprintf(f, "# HELP process_start_time_seconds Start time of the process since unix "
                   "epoch in seconds.\n# TYPE process_start_time_seconds gauge\n"
                   "process_start_time_seconds %.2f\n",
                st);
}

void gw_metrics_grpc_render(FILE *f)
{
    render_grpc(f, atomic_load(&G.n));
    render_process(f);
    /* Label values from our own build: no quote or backslash, but escape anyway. */
    fputs("# HELP tessera_build_info The gateway's version (1 per running build).\n"
          "# TYPE tessera_build_info gauge\ntessera_build_info{version=\"", f);
    const char *const vals[3] = {tsr_version(), tsr_git_describe(),
                                 OpenSSL_version(OPENSSL_VERSION)};
    for (int i = 0; i < 3; i++) {
        for (const char *p = vals[i]; *p; p++) {
            if (*p == '"' || *p == '\\') fputc('\\', f);
            if (*p != '\n') fputc(*p, f);
        }
        fputs(i == 0 ? "\",git=\"" : i == 1 ? "\",openssl=\"" : "\"} 1\n", f);
    }
}
