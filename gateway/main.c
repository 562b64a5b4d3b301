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

int main(int argc, char **argv)
{
    const char *config_path = NULL, *listen = NULL;
    int check_only = 0;
    if (tsr_version_requested(argc, argv)) return tsr_version_print(stdout, "tessera-gateway");
    gw_store_on_io_error(gw_metrics_store_error);   /* counted in the metrics */
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
        case 'c': config_path = optarg; break;
        case 'l': listen = optarg; break;
        case 'k': check_only = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (config_path == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }

    /* Every stderr line gets a time and a level (journald priorities under
     * systemd): tsr_log.h. */
    (void)tsr_log_stderr_init();

    /* Before any thread exists, so that every thread inherits it. */
    sigset_t hup;
    sigemptyset(&hup);
    sigaddset(&hup, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &hup, NULL);

    int rc = 1;
    reloader rl = {0};
    int rl_started = 0;
    gw_config *cfg = NULL;
    gw_app app = {0};
    int app_ready = 0;
    int lock_fd = -1;
    SSL_CTX *ssl_ctx = NULL;
    gw_server *server = NULL;
    gw_metrics_server *metrics = NULL;
    gw_bundle_endpoint *bundle_ep = NULL;

    if (gw_config_load(config_path, &cfg) != 0) {
        fprintf(stderr, "<3>tessera-gateway: %s\n", tsr_errmsg());
        goto out;
    }
    if (listen != NULL && gw_config_set_listen(cfg, listen) != 0) {
        fprintf(stderr, "tessera-gateway: --listen: %s\n", tsr_errmsg());
        goto out;
    }
    /* One gateway per data directory (--check reads, it may run beside the
     * gateway it checks). */
    if (!check_only && (tsr_mkdir_p(cfg->data_dir, 0700) != 0 ||
                        gw_datadir_lock(cfg->data_dir, &lock_fd) != 0)) {
        fprintf(stderr, "<3>tessera-gateway: %s\n", tsr_errmsg());
        goto out;
    }
    /* A renewal of the gateway's certificate interrupted by a crash is
     * finished (or undone) before the PKI is loaded (gw_selfrenew.h). */
    int recovered = 0;
    if (!check_only &&
        ca_gwcert_recover(cfg->server_cert_path, cfg->server_key_path, &recovered) != 0) {
        fprintf(stderr, "<3>tessera-gateway: %s\n", tsr_errmsg());
        goto out;
    }
    if (recovered)
        fprintf(stderr, "tessera-gateway: finished installing the renewed gateway certificate "
                        "%s.new\n", cfg->server_cert_path);
    if (gw_app_init(&app, cfg) != 0) {
        fprintf(stderr, "<3>tessera-gateway: %s\n", tsr_errmsg());
        pki_hint(cfg);
        goto out;
    }
    app_ready = 1;
    if (app.keyring_created)
        fprintf(stderr, "tessera-gateway: created secrets keyring %s\n", cfg->secrets_key_path);
    if (gw_reload_ssl_ctx(app.pki, &ssl_ctx) != 0) {
        fprintf(stderr, "tessera-gateway: TLS: %s\n", tsr_errmsg());
        goto out;
    }
    char gateway_addr[300], drivers_dir[4096], supervisor[4096];
    if (plugin_paths(cfg, drivers_dir, sizeof drivers_dir, supervisor, sizeof supervisor) != 0)
        goto out;
    if (check_only) {
        /* The drivers as a start would load them: a configured driver whose
         * options are wrong is reported here. */
        dial_addr(cfg->listen_host, cfg->listen_port, gateway_addr, sizeof gateway_addr);
        if (gw_app_check_drivers(&app, drivers_dir, supervisor, gateway_addr) != 0) {
            fprintf(stderr, "<3>tessera-gateway: %s\n", tsr_errmsg());
            goto out;
        }
        printf("configuration OK: %s (trust domain %s, %zu users, %zu trusted proxies, "
               "%zu revoked serials, drivers in %s)\n",
               config_path, cfg->trust_domain, cfg->n_users, cfg->n_proxies,
               gw_revocations_count(app.revoked), drivers_dir);
        rc = 0;
        goto out;
    }

    raise_fd_limit(cfg->max_connections);
    size_t n_methods = 0;
    const gw_method *methods = gw_methods(&n_methods);
    if (gw_metrics_set_methods(methods, n_methods) != 0) {
        fprintf(stderr, "<3>tessera-gateway: %s\n", tsr_errmsg());
        goto out;
    }
    gw_server_config scfg = {
        .listen_host = cfg->listen_host,
        .listen_port = cfg->listen_port,
        .workers = cfg->workers,
        .ssl_ctx = ssl_ctx,
        .methods = methods,
        .n_methods = n_methods,
        .max_message_bytes = cfg->max_message_bytes,
        .max_concurrent_streams = cfg->max_concurrent_streams,
        .max_connections = cfg->max_connections,
        .handshake_timeout_ms = cfg->handshake_timeout_ms,
        .idle_timeout_ms = cfg->idle_timeout_ms,
        .app = &app,
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
        gw_server_new(&scfg, &server) != 0) {
        fprintf(stderr, "<3>tessera-gateway: %s\n", tsr_errmsg());
        goto out;
    }
    /* Supervisors dial the address we actually listen on. */
    dial_addr(cfg->listen_host, gw_server_port(server), gateway_addr, sizeof gateway_addr);
    if (gw_app_attach_drivers(&app, drivers_dir, supervisor, gateway_addr) != 0 ||
        gw_app_start_reconcile(&app) != 0) {
        fprintf(stderr, "<3>tessera-gateway: %s\n", tsr_errmsg());
        goto out;
    }

    running_server = server;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    rl.app = &app;
    rl.server = server;
    if (gw_selfrenew_new(&app, server, &rl.renew) != 0) {
        fprintf(stderr, "<3>tessera-gateway: %s\n", tsr_errmsg());
        goto out;
    }
    gw_selfrenew_tick(rl.renew, 0);
    rl.opts = (gw_reload_opts){.config_path = config_path,
                               .listen_overridden = listen != NULL,
                               .note = log_line};
    if (pthread_create(&rl.thread, NULL, reload_thread, &rl) != 0) {
        fprintf(stderr, "tessera-gateway: cannot start the reload thread\n");
        goto out;
    }
    rl_started = 1;

    if (cfg->metrics_host[0] != '\0' &&
        gw_metrics_server_start(cfg->metrics_host, cfg->metrics_port, &metrics) != 0) {
        fprintf(stderr, "<3>tessera-gateway: %s\n", tsr_errmsg());
        goto out;
    }
    if (cfg->bundle_host[0] != '\0' && gw_bundle_endpoint_start(&app, &bundle_ep) != 0) {
        fprintf(stderr, "<3>tessera-gateway: %s\n", tsr_errmsg());
        goto out;
    }
    printf("tessera-gateway listening on %s (trust domain %s)\n", gateway_addr,
           cfg->trust_domain);
    if (metrics != NULL) {
        int mv6 = strchr(cfg->metrics_host, ':') != NULL;
        printf("tessera-gateway metrics on http://%s%s%s:%u/metrics\n", mv6 ? "[" : "",
               cfg->metrics_host, mv6 ? "]" : "", gw_metrics_server_port(metrics));
    }
    if (cfg->proxy_socket_path[0] != '\0')
        printf("tessera-gateway proxy socket on unix:%s\n", cfg->proxy_socket_path);
    if (bundle_ep != NULL) {
        int bv6 = strchr(cfg->bundle_host, ':') != NULL;
        printf("tessera-gateway SPIFFE bundle endpoint on https://%s%s%s:%u/ (%s)\n",
               bv6 ? "[" : "", cfg->bundle_host, bv6 ? "]" : "",
               gw_bundle_endpoint_port(bundle_ep),
               cfg->bundle_cert_path[0] ? "https_web" : "https_spiffe");
    }
    fflush(stdout);
    snprintf(ready_status, sizeof ready_status, "serving on %s (trust domain %s)", gateway_addr,
             cfg->trust_domain);
    gw_notify_ready(ready_status);
    if (gw_server_run(server) != 0) {
        fprintf(stderr, "<3>tessera-gateway: %s\n", tsr_errmsg());
        goto out;
    }
    gw_notify_stopping();
    fprintf(stderr, "tessera-gateway: stopped\n");
    rc = 0;
out:
    running_server = NULL;
    if (rl_started) {
        /* No reload may run past this point: wake the thread and wait. */
        atomic_store(&rl.quit, 1);
        pthread_kill(rl.thread, SIGHUP);
        pthread_join(rl.thread, NULL);
    }
    gw_selfrenew_free(rl.renew);
    gw_metrics_server_stop(metrics);
    gw_bundle_endpoint_stop(bundle_ep);
    gw_server_free(server);
    SSL_CTX_free(ssl_ctx);
    if (app_ready) gw_app_fini(&app);
    gw_config_free(cfg);
    if (lock_fd >= 0) close(lock_fd);
    return rc;
}
