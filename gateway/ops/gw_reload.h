/* Graceful reload (SIGHUP): re-read the config file and the PKI it names,
 * validate all of it, then swap it in without dropping a connection.
 *
 * Reloaded: the trust bundle, the issuing CA (certificate + key + chain),
 * the server certificate and key (a new SSL_CTX for NEW connections; open
 * connections keep the one they were accepted with), and from the config:
 * users and their roles, proxy.trusted and sandbox_cert_ttl.
 * Everything else in the config (listen address, workers, data/store/
 * secrets/audit paths, renewal limits, message/stream/connection limits,
 * timeouts, log limits, drivers, proxy header/format, metrics) needs a
 * restart: a change there is reported through `note` and the running value
 * is kept. A different trust_domain refuses the whole reload.
 *
 * Nothing is swapped unless everything loaded and checked: a bad file leaves
 * the running PKI and config untouched and the error says why. */
#ifndef GW_RELOAD_H
#define GW_RELOAD_H

#include <stdint.h>

#include "gw_app.h"
#include "gw_server.h"

typedef struct gw_reload_opts {
    const char *config_path;
    int listen_overridden;          /* --listen was given: the file's address is unused */
    void (*note)(const char *line); /* one line per restart-only change; may be NULL */
} gw_reload_opts;

/* Build the server SSL_CTX for the PKI snapshot (trust for client certs). */
TSR_WUR int gw_reload_ssl_ctx(const gw_pki *pki, SSL_CTX **out);

TSR_WUR int gw_reload(gw_app *app, gw_server *server, const gw_reload_opts *opts);

#endif
