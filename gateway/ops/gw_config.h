/* The gateway's configuration file (config/gateway.yaml), loaded strictly:
 * every key is optional and has a default, but an unknown key, a wrong type,
 * an out-of-range value, a bad user name or role or a bad listen address is
 * refused at load with TSR_E_INPUT "<file>:<line>:<column>: reason".
 *
 * Relative paths in the file resolve against the directory of the file
 * (made absolute with realpath(3)); absolute paths stay as written. Path
 * keys left out get their default as if it had been written in the file:
 * var/data, var/pki/... under the file's directory; store, secrets and audit
 * under data_dir. An empty file (or one with only comments) means all
 * defaults. See config/gateway.yaml for every key. */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "gw_principal.h"
#include "tsr_err.h"

#define GW_CONFIG_MAX_BYTES (1024 * 1024)
#define GW_CONFIG_MAX_USERS 1024
#define GW_CONFIG_PATH_MAX 4096
#define GW_CONFIG_MAX_PROXIES 64
#define GW_CONFIG_HEADER_MAX 64
#define GW_CONFIG_DEFAULT_PROXY_HEADER "x-client-cert"

typedef struct gw_user_entry {
    char name[65];
    enum gw_role role;
} gw_user_entry;

/* How a trusted proxy encodes the client certificate in proxy.header. */
enum gw_forward_format {
    GW_FORWARD_ESCAPED_PEM = 0,  /* URL-encoded PEM: nginx $ssl_client_escaped_cert */
    GW_FORWARD_XFCC,             /* Envoy x-forwarded-client-cert: Cert="..."; Chain="..." */
};

typedef struct gw_proxy_entry {
    char name[65];                   /* <name> of spiffe://<td>/proxy/<name> */
} gw_proxy_entry;

#define GW_CONFIG_MAX_DRIVER_OPTIONS 256

/* One option handed to a driver plugin at load (see drivers/abi/drv_abi.h). */
typedef struct gw_driver_option {
    char driver[33];
    char key[65];
    char value[1024];
} gw_driver_option;

typedef struct gw_config {
    char path[4096];                 /* the file loaded ("" for gw_config_defaults) */
    char trust_domain[256];          /* default tessera.local, validated [a-z0-9._-]+ */
    char listen_host[256];           /* without brackets: "::1" */
    uint16_t listen_port;            /* default 127.0.0.1:8443; 0 = ephemeral */
    int workers;                     /* 0 = number of online CPUs; 0..64 */
    char data_dir[4096];
    char bundle_path[4096], issuing_cert_path[4096], issuing_key_path[4096];
    char server_cert_path[4096], server_key_path[4096];
    char store_path[4096];           /* sqlite file (default <data_dir>/tessera.db), or
                                        GW_STORE_PG_PREFIX + a libpq DSN */
    char secrets_key_path[4096];     /* keyring; default <data_dir>/secrets.key;
                                        env TESSERA_SECRETS_KEY_FILE overrides */
    char audit_path[4096];           /* "-" = stderr; default <data_dir>/audit.log */
    int64_t sandbox_cert_ttl;        /* seconds; default 1h; range 5m..24h */
    int64_t crl_validity;            /* seconds: CRL nextUpdate - now; default 6h; 10m..7d */
    int renew_limit;                 /* renewals per sandbox per window; default 10; 1..1000 */
    int64_t renew_window;            /* seconds; default 1h; 1m..24h */
    uint32_t max_message_bytes;      /* default 4 MiB; 1 KiB..64 MiB */
    uint32_t max_concurrent_streams; /* default 100; 1..1000 */
    uint32_t max_connections;        /* default 10000; 1..1,000,000 */
    int64_t handshake_timeout_ms;    /* default 10s; 1s..5m */
    int64_t idle_timeout_ms;         /* default 5m; 10s..24h */
    uint32_t log_lines_per_batch;    /* default 1000; 1..100000 */
    uint32_t log_line_bytes;         /* default 16384; 64..1 MiB */
    gw_user_entry *users;            /* name -> role, at most 1024 */
    size_t n_users;
    char default_driver[33];         /* default "process"; [a-z0-9_-]{1,32} */
    char drivers_dir[4096];          /* "" if unset */
    char supervisor_path[4096];      /* "" = tessera-supervisor beside tessera-gateway */
    gw_driver_option *driver_options; /* drivers.options.<driver>.<key>: value */
    size_t n_driver_options;
    /* proxy: TLS terminators allowed to forward client certificates (docs/operations.md) */
    gw_proxy_entry *proxies;         /* proxy.trusted, at most 64, no duplicates */
    size_t n_proxies;
    char proxy_header[GW_CONFIG_HEADER_MAX + 1]; /* lowercase [a-z0-9-]; default x-client-cert */
    enum gw_forward_format proxy_format;  /* default: xfcc for x-forwarded-client-cert,
                                             else escaped-pem */
    /* proxy.unix_socket: a listener for a local proxy (h2c, no TLS); every
     * call on it must forward a client certificate */
    char proxy_socket_path[GW_CONFIG_PATH_MAX]; /* "" = none; resolved; < 108 bytes */
    uint32_t proxy_socket_mode;      /* default 0600; a subset of 0660 */
    bool proxy_socket_set_group;     /* proxy.unix_socket.group given */
    gid_t proxy_socket_gid;          /* resolved at load */
    /* metrics: Prometheus text over plain HTTP, loopback only */
    char metrics_host[256];          /* "" = disabled (the default) */
    uint16_t metrics_port;           /* 0 = ephemeral (tests) */
    /* bundle_endpoint: the SPIFFE bundle over HTTPS (gw_bundle_endpoint.h) */
    char bundle_host[256];           /* "" = disabled (the default) */
    uint16_t bundle_port;
    char bundle_cert_path[GW_CONFIG_PATH_MAX]; /* "" = pki.server_cert (https_spiffe) */
    char bundle_key_path[GW_CONFIG_PATH_MAX];  /* with bundle_cert_path (https_web) */
} gw_config;

/* Load and validate `path` (at most 1 MiB). */
TSR_WUR int gw_config_load(const char *path, gw_config **out);

/* All defaults; paths relative to the working directory under ./var:
 * var/data, var/pki/{bundle,issuing,gateway}.{pem,key}, var/data/tessera.db,
 * var/data/secrets.key (or $TESSERA_SECRETS_KEY_FILE), var/data/audit.log. */
TSR_WUR int gw_config_defaults(gw_config **out);

/* Replace the listen address: "127.0.0.1:8443", "[::1]:0", "localhost:9000".
 * Host: IPv4 literal, bracketed IPv6 literal, or DNS name; port 0..65535.
 * On error (TSR_E_INPUT) the config is unchanged. */
TSR_WUR int gw_config_set_listen(gw_config *c, const char *host_port);

/* The configured role of user `name`; GW_ROLE_NONE if unknown. */
enum gw_role gw_config_user_role(const gw_config *c, const char *name);

/* Is `name` a proxy listed in proxy.trusted? */
bool gw_config_proxy_trusted(const gw_config *c, const char *name);

void gw_config_free(gw_config *c);

#endif
