/* tessera-gateway: the control-plane gRPC server. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>

#include "ca_pem.h"
#include "gw_app.h"
#include "gw_authz.h"
#include "gw_bundle_endpoint.h"
#include "gw_config.h"
#include "gw_forward.h"
#include "gw_health.h"
#include "gw_metrics_grpc.h"
#include "gw_identity.h"
#include "gw_lock.h"
#include "gw_metrics.h"
#include "gw_metrics_server.h"
#include "gw_notify.h"
#include "gw_rpcs.h"
#include "gw_reload.h"
#include "ca_gwcert.h"
#include "gw_selfrenew.h"
#include "gw_store.h"
#include "gw_server.h"
#include "gw_tls.h"
#include "tsr_fs.h"
#include "tsr_log.h"
#include "tsr_time.h"
#include "tsr_version.h"
#include "gw_revocation.h"

static gw_server *running_server;
static atomic_int stop_seen;   /* SIGTERM/SIGINT arrived: the reload thread notifies */
static char ready_status[600];

static void on_signal(int sig)
{
    (void)sig;
    /* Health says NOT_SERVING from now on (Check, and Watch streams at
     * their next tick), while the drain runs. */
    gw_health_set_draining();
    atomic_store(&stop_seen, 1);
    if (running_server != NULL) gw_server_stop(running_server);
}

/* SIGHUP: a thread of its own waits for it (sigwait; SIGHUP is blocked in
 * every thread) and reloads outside any signal handler. */
typedef struct reloader {
    pthread_t thread;
    atomic_int quit;
    gw_app *app;
    gw_server *server;
    gw_reload_opts opts;
    gw_selfrenew *renew;   /* ticked once a second on this thread */
} reloader;

static void log_line(const char *line)
{
    fprintf(stderr, "tessera-gateway: %s\n", line);
}

static void *reload_thread(void *arg)
{
    reloader *r = arg;
    sigset_t hup;
    sigemptyset(&hup);
    sigaddset(&hup, SIGHUP);
    for (;;) {
        /* Once a second: the gateway's own certificate and the expiry
         * gauges (gw_selfrenew.h), on this thread so never during a reload. */
        struct timespec tick = {.tv_sec = 1, .tv_nsec = 0};
        int sig = sigtimedwait(&hup, NULL, &tick);
        if (atomic_load(&r->quit)) break;
        if (atomic_load(&stop_seen)) gw_notify_stopping();
        if (sig != SIGHUP) {
            gw_selfrenew_tick(r->renew, 0);
            continue;
        }
        fprintf(stderr, "tessera-gateway: SIGHUP: reloading %s\n", r->opts.config_path);
        gw_notify_reloading();
        /* logrotate moved the audit log away: write to a new file. */
        if (gw_audit_reopen(r->app->audit) != 0)
            fprintf(stderr, "<3>tessera-gateway: %s\n", tsr_errmsg());
        if (gw_reload(r->app, r->server, &r->opts) != 0) {
            fprintf(stderr, "<4>tessera-gateway: reload refused, still serving with the previous "
                            "PKI and config: %s\n",
                    tsr_errmsg());
            gw_notify_ready(ready_status);
            continue;
        }
        gw_pki *pki = gw_app_pki(r->app);
        char serial[41];
        if (ca_cert_serial_hex(pki->issuer->cert, serial) != 0)
            snprintf(serial, sizeof serial, "?");
        fprintf(stderr, "tessera-gateway: reloaded: issuing CA serial %s, %zu users, "
                        "sandbox certificates %llds; open connections kept\n",
                serial, pki->cfg->n_users, (long long)pki->cfg->sandbox_cert_ttl);
        gw_pki_release(pki);
        gw_notify_ready(ready_status);
        gw_selfrenew_tick(r->renew, 0);
    }
    return NULL;
}

/* Each connection is a descriptor: lift the soft limit to the hard one so
 * max_connections is reachable, and say so when it still is not. */
static void raise_fd_limit(uint32_t max_connections)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur < (rlim_t)max_connections + 64)
        fprintf(stderr,
                "tessera-gateway: warning: open-file limit %llu is below max_connections %u "
                "(raise it with ulimit -n or LimitNOFILE=)\n",
                (unsigned long long)rl.rlim_cur, max_connections);
}

/* Directory of this executable: plugins and the supervisor are found
 * relative to it (build/bin/../drivers) unless the config says otherwise. */
static int exe_dir(char *out, size_t cap)
{
    ssize_t n = readlink("/proc/self/exe", out, cap - 1);
    if (n <= 0) return -1;
    out[n] = '\0';
    char *slash = strrchr(out, '/');
    if (slash == NULL) return -1;
    *slash = '\0';
    return 0;
}

/* Where the driver plugins and the supervisor are: the config's paths, or
 * beside this executable (build/bin/../drivers, build/bin/tessera-supervisor). */
static int plugin_paths(const gw_config *cfg, char *drivers_dir, size_t dcap, char *supervisor,
                        size_t scap)
{
    char bin_dir[2048];
    if (exe_dir(bin_dir, sizeof bin_dir) != 0) {
        fprintf(stderr, "tessera-gateway: cannot find my own executable\n");
        return -1;
    }
    if (cfg->drivers_dir[0] != '\0') {
        snprintf(drivers_dir, dcap, "%s", cfg->drivers_dir);
    } else {
        /* The build tree (build/bin/../drivers), else an installed layout
         * (PREFIX/bin/../lib/tessera/drivers, `make install`). */
        snprintf(drivers_dir, dcap, "%s/../drivers", bin_dir);
        if (!tsr_path_exists(drivers_dir))
            snprintf(drivers_dir, dcap, "%s/../lib/tessera/drivers", bin_dir);
    }
    if (cfg->supervisor_path[0] != '\0')
        snprintf(supervisor, scap, "%s", cfg->supervisor_path);
    else
        snprintf(supervisor, scap, "%s/tessera-supervisor", bin_dir);
    return 0;
}

/* "HOST:PORT" a supervisor dials for a gateway listening on host:port. */
static void dial_addr(const char *host, unsigned port, char *out, size_t cap)
{
    int v6 = strchr(host, ':') != NULL;
    if (strcmp(host, "0.0.0.0") == 0) host = "127.0.0.1";
    if (strcmp(host, "::") == 0) host = "::1";
    snprintf(out, cap, "%s%s%s:%u", v6 ? "[" : "", host, v6 ? "]" : "", port);
}

static void log_transport_event(void *app, const char *line)
{
    (void)app;
    fprintf(stderr, "tessera-gateway: %s\n", line);
}

/* A PKI file the configuration names is missing: say how to make one.
 * `make run` only for the checkout's own layout (var/pki beside
 * config/gateway.yaml); a production configuration gets certgen. */
static void pki_hint(const gw_config *cfg)
{
    const char *files[] = {cfg->bundle_path, cfg->issuing_cert_path, cfg->issuing_key_path,
                           cfg->server_cert_path, cfg->server_key_path};
    const char *missing = NULL;
    for (size_t i = 0; i < sizeof files / sizeof files[0] && missing == NULL; i++)
        if (!tsr_path_exists(files[i])) missing = files[i];
    if (missing == NULL) return;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", cfg->bundle_path);
    char *slash = strrchr(dir, '/');
    if (slash != NULL) *slash = '\0';
    static const char dev_bundle[] = "/var/pki/bundle.pem";
    size_t n = strlen(cfg->bundle_path), k = sizeof dev_bundle - 1;
    int dev = n >= k && strcmp(cfg->bundle_path + n - k, dev_bundle) == 0;
    fprintf(stderr,
            "<3>tessera-gateway: %s does not exist: create the PKI with `certgen init --out %s` "
            "(docs/certgen.md)%s\n",
            missing, dir, dev ? ", or run `make run` in the source tree" : "");
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: tessera-gateway --config FILE [--listen HOST:PORT] [--check]\n"
            "\n"
            "Serves the tessera.v1.Gateway gRPC API over mutual TLS. Every caller's\n"
            "identity comes from its verified client certificate (a SPIFFE ID).\n"
            "\n"
            "  -c, --config FILE     gateway configuration (YAML), e.g. config/gateway.yaml\n"
            "  -l, --listen ADDR     override the listen address (127.0.0.1:8443, [::1]:0)\n"
            "      --check           validate the configuration, the PKI it names and the\n"
            "                        driver plugins with their options, then exit\n"
            "  -V, --version         version, git describe and OpenSSL version\n"
            "  -h, --help            this text\n");
}

/* Everything one run of the gateway holds, in the order it is made. */
typedef struct gateway {
    const char *config_path, *listen;
    int check_only;
    gw_config *cfg;
    int lock_fd;
    gw_app app;
    int app_ready;
    SSL_CTX *ssl_ctx;
    char gateway_addr[300], drivers_dir[4096], supervisor[4096];
    gw_server *server;
    reloader rl;
    int rl_started;
    gw_metrics_server *metrics;
    gw_bundle_endpoint *bundle_ep;
} gateway;

#define GO_ON (-1)

/* The command line. GO_ON, or the exit status (help, usage error). */
static int parse_args(int argc, char **argv, gateway *g)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"listen", required_argument, NULL, 'l'},
        {"check", no_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "c:l:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': g->config_path = optarg; break;
        case 'l': g->listen = optarg; break;
        case 'k': g->check_only = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (g->config_path == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }
    return GO_ON;
}

static int load_config(gateway *g)
{
    if (gw_config_load(g->config_path, &g->cfg) != 0) {
        fprintf(stderr, "<3>tessera-gateway: %s\n", tsr_errmsg());
        return -1;
    }
    if (g->listen != NULL && gw_config_set_listen(g->cfg, g->listen) != 0) {
        fprintf(stderr, "tessera-gateway: --listen: %s\n", tsr_errmsg());
        return -1;
    }
    return 0;
}

/* The data directory (locked), the PKI, the store and the drivers' paths. */
static int open_state(gateway *g)
{
    gw_config *cfg = g->cfg;
    /* One gateway per data directory (--check reads, it may run beside the
     * gateway it checks). */
    if (!g->check_only && (tsr_mkdir_p(cfg->data_dir, 0700) != 0 ||
                           gw_datadir_lock(cfg->data_dir, &g->lock_fd) != 0)) {
        fprintf(stderr, "<3>tessera-gateway: %s\n", tsr_errmsg());
        return -1;
    }
    /* A renewal of the gateway's certificate interrupted by a crash is
     * finished (or undone) before the PKI is loaded (gw_selfrenew.h). */
    int recovered = 0;
    if (!g->check_only &&
        ca_gwcert_recover(cfg->server_cert_path, cfg->server_key_path, &recovered) != 0) {
        fprintf(stderr, "<3>tessera-gateway: %s\n", tsr_errmsg());
        return -1;
    }
    if (recovered)
        fprintf(stderr, "tessera-gateway: finished installing the renewed gateway certificate "
                        "%s.new\n", cfg->server_cert_path);
    if (gw_app_init(&g->app, cfg) != 0) {
        fprintf(stderr, "<3>tessera-gateway: %s\n", tsr_errmsg());
        pki_hint(cfg);
        return -1;
    }
    g->app_ready = 1;
    if (g->app.keyring_created)
        fprintf(stderr, "tessera-gateway: created secrets keyring %s\n", cfg->secrets_key_path);
    if (gw_reload_ssl_ctx(g->app.pki, &g->ssl_ctx) != 0) {
        fprintf(stderr, "tessera-gateway: TLS: %s\n", tsr_errmsg());
        return -1;
    }
    return plugin_paths(cfg, g->drivers_dir, sizeof g->drivers_dir, g->supervisor,
                        sizeof g->supervisor);
}

/* --check: the drivers as a start would load them (a configured driver
 * whose options are wrong is reported here), then the summary. */
static int check_drivers(gateway *g)
{
    gw_config *cfg = g->cfg;
    dial_addr(cfg->listen_host, cfg->listen_port, g->gateway_addr, sizeof g->gateway_addr);
    if (gw_app_check_drivers(&g->app, g->drivers_dir, g->supervisor, g->gateway_addr) != 0) {
        fprintf(stderr, "<3>tessera-gateway: %s\n", tsr_errmsg());
        return -1;
    }
    printf("configuration OK: %s (trust domain %s, %zu users, %zu trusted proxies, "
           "%zu revoked serials, drivers in %s)\n",
           g->config_path, cfg->trust_domain, cfg->n_users, cfg->n_proxies,
           gw_revocations_count(g->app.revoked), g->drivers_dir);
    return 0;
}

/* The listeners, then the drivers (which dial the address we listen on). */
static int start_server(gateway *g)
{
    gw_config *cfg = g->cfg;
    raise_fd_limit(cfg->max_connections);
    size_t n_methods = 0;
    const gw_method *methods = gw_methods(&n_methods);
    if (gw_metrics_set_methods(methods, n_methods) != 0) {
        fprintf(stderr, "<3>tessera-gateway: %s\n", tsr_errmsg());
        return -1;
    }
    gw_server_config scfg = {
        .listen_host = cfg->listen_host,
        .listen_port = cfg->listen_port,
        .workers = cfg->workers,
        .ssl_ctx = g->ssl_ctx,
        .methods = methods,
        .n_methods = n_methods,
        .max_message_bytes = cfg->max_message_bytes,
        .max_concurrent_streams = cfg->max_concurrent_streams,
        .max_connections = cfg->max_connections,
        .handshake_timeout_ms = cfg->handshake_timeout_ms,
        .idle_timeout_ms = cfg->idle_timeout_ms,
        .app = &g->app,
        .worker_init = gw_app_worker_init,
        .worker_fini = gw_app_worker_fini,
        .authenticate = gw_identity_authenticate,
        .still_valid = gw_identity_still_valid,
        .authorize = gw_authz_dispatch,
        .log = log_transport_event,
        .event = gw_metrics_server_event,
        .call_done = gw_metrics_call_done,
        .call_started = gw_metrics_grpc_started,
        .call_finished = gw_metrics_grpc_finished,
        .forward_header = cfg->proxy_header,
        .authenticate_forwarded = gw_forward_authenticate,
        .unix_path = cfg->proxy_socket_path[0] != '\0' ? cfg->proxy_socket_path : NULL,
        .unix_mode = cfg->proxy_socket_mode,
        .unix_set_group = cfg->proxy_socket_set_group,
        .unix_gid = cfg->proxy_socket_gid,
        .authenticate_local = gw_identity_authenticate_local,
    };
    if (gw_listen_probe(cfg->listen_host, cfg->listen_port) != 0 ||
        gw_server_new(&scfg, &g->server) != 0) {
        fprintf(stderr, "<3>tessera-gateway: %s\n", tsr_errmsg());
        return -1;
    }
    /* Supervisors dial the address we actually listen on. */
    dial_addr(cfg->listen_host, gw_server_port(g->server), g->gateway_addr,
              sizeof g->gateway_addr);
    if (gw_app_attach_drivers(&g->app, g->drivers_dir, g->supervisor, g->gateway_addr) != 0 ||
        gw_app_start_reconcile(&g->app) != 0) {
        fprintf(stderr, "<3>tessera-gateway: %s\n", tsr_errmsg());
        return -1;
    }
    return 0;
}

/* Signals, the reload thread with the self-renewal tick, the metrics
 * listener and the bundle endpoint. */
static int start_background(gateway *g)
{
    running_server = g->server;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    g->rl.app = &g->app;
    g->rl.server = g->server;
    if (gw_selfrenew_new(&g->app, g->server, &g->rl.renew) != 0) {
        fprintf(stderr, "<3>tessera-gateway: %s\n", tsr_errmsg());
        return -1;
    }
    gw_selfrenew_tick(g->rl.renew, 0);
    g->rl.opts = (gw_reload_opts){.config_path = g->config_path,
                                  .listen_overridden = g->listen != NULL,
                                  .note = log_line};
    if (pthread_create(&g->rl.thread, NULL, reload_thread, &g->rl) != 0) {
        fprintf(stderr, "tessera-gateway: cannot start the reload thread\n");
        return -1;
    }
    g->rl_started = 1;

    gw_config *cfg = g->cfg;
    if (cfg->metrics_host[0] != '\0' &&
        gw_metrics_server_start(cfg->metrics_host, cfg->metrics_port, &g->metrics) != 0) {
        fprintf(stderr, "<3>tessera-gateway: %s\n", tsr_errmsg());
        return -1;
    }
    if (cfg->bundle_host[0] != '\0' && gw_bundle_endpoint_start(&g->app, &g->bundle_ep) != 0) {
        fprintf(stderr, "<3>tessera-gateway: %s\n", tsr_errmsg());
        return -1;
    }
    return 0;
}

/* Where we serve, on stdout (tests and scripts read the first line), and
 * READY=1 for systemd. */
static void announce(const gateway *g)
{
    const gw_config *cfg = g->cfg;
    printf("tessera-gateway listening on %s (trust domain %s)\n", g->gateway_addr,
           cfg->trust_domain);
    if (g->metrics != NULL) {
        int mv6 = strchr(cfg->metrics_host, ':') != NULL;
        printf("tessera-gateway metrics on http://%s%s%s:%u/metrics\n", mv6 ? "[" : "",
               cfg->metrics_host, mv6 ? "]" : "", gw_metrics_server_port(g->metrics));
    }
    if (cfg->proxy_socket_path[0] != '\0')
        printf("tessera-gateway proxy socket on unix:%s\n", cfg->proxy_socket_path);
    if (g->bundle_ep != NULL) {
        int bv6 = strchr(cfg->bundle_host, ':') != NULL;
        printf("tessera-gateway SPIFFE bundle endpoint on https://%s%s%s:%u/ (%s)\n",
               bv6 ? "[" : "", cfg->bundle_host, bv6 ? "]" : "",
               gw_bundle_endpoint_port(g->bundle_ep),
               cfg->bundle_cert_path[0] ? "https_web" : "https_spiffe");
    }
    fflush(stdout);
    snprintf(ready_status, sizeof ready_status, "serving on %s (trust domain %s)",
             g->gateway_addr, cfg->trust_domain);
    gw_notify_ready(ready_status);
}

/* Until SIGTERM/SIGINT, then the transport's drain (gw_server_stop). */
static int serve(gateway *g)
{
    if (gw_server_run(g->server) != 0) {
        fprintf(stderr, "<3>tessera-gateway: %s\n", tsr_errmsg());
        return -1;
    }
    gw_notify_stopping();
    fprintf(stderr, "tessera-gateway: stopped\n");
    return 0;
}

/* After the drain, or after a failed start: no reload may run past this
 * point (the thread is woken and joined), then everything in reverse. */
static void shut_down(gateway *g)
{
    running_server = NULL;
    if (g->rl_started) {
        atomic_store(&g->rl.quit, 1);
        pthread_kill(g->rl.thread, SIGHUP);
        pthread_join(g->rl.thread, NULL);
    }
    gw_selfrenew_free(g->rl.renew);
    gw_metrics_server_stop(g->metrics);
    gw_bundle_endpoint_stop(g->bundle_ep);
    gw_server_free(g->server);
    SSL_CTX_free(g->ssl_ctx);
    if (g->app_ready) gw_app_fini(&g->app);
    gw_config_free(g->cfg);
    if (g->lock_fd >= 0) close(g->lock_fd);
}

int main(int argc, char **argv)
{
    if (tsr_version_requested(argc, argv)) return tsr_version_print(stdout, "tessera-gateway");
    gw_store_on_io_error(gw_metrics_store_error);   /* counted in the metrics */
    static gateway g = {.lock_fd = -1};
    int rc = parse_args(argc, argv, &g);
    if (rc != GO_ON) return rc;

    /* Every stderr line gets a time and a level (journald priorities under
     * systemd): tsr_log.h. */
    (void)tsr_log_stderr_init();

    /* Before any thread exists, so that every thread inherits it. */
    sigset_t hup;
    sigemptyset(&hup);
    sigaddset(&hup, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &hup, NULL);

    rc = 1;
    if (load_config(&g) != 0 || open_state(&g) != 0) goto out;
    if (g.check_only) {
        if (check_drivers(&g) == 0) rc = 0;
        goto out;
    }
    if (start_server(&g) != 0 || start_background(&g) != 0) goto out;
    announce(&g);
    if (serve(&g) == 0) rc = 0;
out:
    shut_down(&g);
    return rc;
}
