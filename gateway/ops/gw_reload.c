#include "gw_reload.h"

#include <stdio.h>
#include <string.h>

#include "gw_bundle_endpoint.h"
#include "gw_config.h"
#include "gw_tls.h"

int gw_reload_ssl_ctx(const gw_pki *pki, SSL_CTX **out)
{
    gw_tls_config tls = {
        .cert_file = pki->cfg->server_cert_path,
        .key_file = pki->cfg->server_key_path,
        .client_trust = ca_trust_store(pki->trust),
    };
    return gw_tls_ctx_new(&tls, out);
}

static void note_changed(const gw_reload_opts *o, const char *key)
{
    if (o->note == NULL) return;
    char line[200];
    snprintf(line, sizeof line, "reload: %s changed: it needs a restart; keeping the running value",
             key);
    o->note(line);
}

/* Report restart-only settings that differ in the new file. */
static void check_restart_only(const gw_config *old, const gw_config *nw, const gw_reload_opts *o)
{
#define STR_FIELD(f, key) if (strcmp(old->f, nw->f) != 0) note_changed(o, key)
#define NUM_FIELD(f, key) if (old->f != nw->f) note_changed(o, key)
    STR_FIELD(data_dir, "data_dir");
    STR_FIELD(store_path, "store");
    STR_FIELD(secrets_key_path, "secrets_key");
    STR_FIELD(audit_path, "audit_log");
    STR_FIELD(default_driver, "drivers.default");
    STR_FIELD(drivers_dir, "drivers.dir");
    STR_FIELD(supervisor_path, "drivers.supervisor");
    STR_FIELD(proxy_header, "proxy.header");
    STR_FIELD(metrics_host, "metrics");
    STR_FIELD(proxy_socket_path, "proxy.unix_socket");
    NUM_FIELD(proxy_socket_mode, "proxy.unix_socket");
    NUM_FIELD(proxy_socket_set_group, "proxy.unix_socket");
    NUM_FIELD(proxy_socket_gid, "proxy.unix_socket");
    NUM_FIELD(metrics_port, "metrics");
    STR_FIELD(bundle_host, "bundle_endpoint");
    NUM_FIELD(bundle_port, "bundle_endpoint");
    STR_FIELD(bundle_cert_path, "bundle_endpoint");
    STR_FIELD(bundle_key_path, "bundle_endpoint");
    NUM_FIELD(workers, "workers");
    NUM_FIELD(renew_limit, "renew_limit");
    NUM_FIELD(renew_window, "renew_window");
    NUM_FIELD(max_message_bytes, "max_message_bytes");
    NUM_FIELD(max_concurrent_streams, "max_concurrent_streams");
    NUM_FIELD(max_connections, "max_connections");
    NUM_FIELD(handshake_timeout_ms, "handshake_timeout");
    NUM_FIELD(idle_timeout_ms, "idle_timeout");
    NUM_FIELD(log_lines_per_batch, "log_lines_per_batch");
    NUM_FIELD(log_line_bytes, "log_line_bytes");
    NUM_FIELD(proxy_format, "proxy.format");
    NUM_FIELD(n_driver_options, "drivers.options");
#undef STR_FIELD
#undef NUM_FIELD
    /* With --listen the file's address was never in use: nothing to say. */
    if (!o->listen_overridden &&
        (strcmp(old->listen_host, nw->listen_host) != 0 || old->listen_port != nw->listen_port))
        note_changed(o, "listen");
}

int gw_reload(gw_app *app, gw_server *server, const gw_reload_opts *opts)
{
    int rc = -1;
    gw_config *cfg = NULL;
    gw_pki *pki = NULL;
    SSL_CTX *ctx = NULL;

    TSR_TRY(gw_config_load(opts->config_path, &cfg));
    TSR_TRY_ENSURE(strcmp(cfg->trust_domain, app->cfg->trust_domain) == 0, TSR_E_INPUT,
                   "trust_domain changed (%s -> %s): a new trust domain needs a restart",
                   app->cfg->trust_domain, cfg->trust_domain);
    check_restart_only(app->cfg, cfg, opts);
    /* Listening sockets stay as they are, whatever the file now says. */
    if (strcmp(cfg->listen_host, app->cfg->listen_host) != 0 ||
        cfg->listen_port != app->cfg->listen_port) {
        snprintf(cfg->listen_host, sizeof cfg->listen_host, "%s", app->cfg->listen_host);
        cfg->listen_port = app->cfg->listen_port;
    }

    TSR_TRY(gw_pki_load(cfg, &pki));
    pki->owned_cfg = cfg;
    cfg = NULL;
    TSR_TRY(gw_reload_ssl_ctx(pki, &ctx));
    {
        gw_pki *prev = gw_app_pki(app);
        int seq_rc = gw_bundle_sequence_follow(prev, pki);
        gw_pki_release(prev);
        TSR_TRY(seq_rc);
    }

    /* Everything is loaded and checked: swap. The transport first, so that
     * a failure there (an up-ref) leaves both halves as they were. */
    TSR_TRY(gw_server_set_ssl_ctx(server, ctx));
    gw_app_swap_pki(app, pki);
    pki = NULL;
    rc = 0;
out:
    SSL_CTX_free(ctx);
    gw_pki_release(pki);
    gw_config_free(cfg);
    return rc;
}
