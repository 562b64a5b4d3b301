/* Process-wide gateway state shared by every worker thread, and the
 * per-worker state (each worker owns its sqlite connection). */
#ifndef GW_APP_H
#define GW_APP_H

#include <openssl/x509.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>

#include "ca_issue.h"
#include "ca_verify.h"
#include "gw_rpc.h"

struct gw_config;
struct gw_keyring;
struct gw_store;
struct gw_audit;
struct gw_revocations;
struct gw_ratelimit;
struct gw_drivers;
struct gw_crl_cache;
struct gw_committer;
struct gw_states;
struct gw_reconciler;

/* What a reload (SIGHUP) may replace, as one immutable, refcounted
 * snapshot: the PKI the gateway trusts and issues with, and the config
 * whose reloadable parts (users/roles, proxy.trusted, sandbox_cert_ttl)
 * handlers read. A handler takes a reference for the whole call
 * (gw_app_pki ... gw_pki_release), so a reload never changes the PKI under a
 * call in progress; the old snapshot is freed when its last call ends. */
typedef struct gw_pki {
    atomic_int refs;
    uint64_t generation;                 /* 1 at start, +1 per installed reload */
    const struct gw_config *cfg;         /* reloadable settings (see above) */
    struct gw_config *owned_cfg;         /* cfg, when this snapshot owns it (reloads) */
    ca_trust *trust;                     /* bundle roots + trust domain */
    ca_issuer *issuer;                   /* online issuing CA */
    char *chain_pem;                     /* the issuing CA cert, for leaf chains */
    char *bundle_pem;                    /* the trust bundle as served */
    char *spiffe_bundle_json;            /* the same roots as a SPIFFE bundle (JWKS) */
    int64_t spiffe_sequence;             /* its spiffe_sequence (gw_bundle_endpoint.h) */
    STACK_OF(X509) *intermediates;       /* the issuing CA chain: untrusted path hints
                                            for forwarded leaves (gw_forward.h) */
    STACK_OF(X509) *roots;               /* the bundle's roots, in file order */
    unsigned char (*root_sha256)[32];    /* SHA-256 of each root's DER */
} gw_pki;

typedef struct gw_app {
    const struct gw_config *cfg;         /* as started: what a reload cannot change */
    pthread_mutex_t pki_lock;            /* guards the pki pointer (not its contents) */
    gw_pki *pki;                         /* current snapshot; use gw_app_pki() */
    struct gw_keyring *keyring;          /* provider-env encryption keys */
    struct gw_audit *audit;
    struct gw_revocations *revoked;      /* in-memory set, loaded from the store */
    struct gw_revfeed *revfeed;          /* other replicas' revocations (PostgreSQL); or NULL */
    struct gw_ratelimit *renew_limit;    /* per-sandbox renewals */
    struct gw_drivers *drivers;          /* loaded plugins; set once serving starts */
    struct gw_crl_cache *crl;            /* the CRL GetTrustBundle serves (gw_crl.h) */
    atomic_uint_fast64_t pki_generation; /* generation of the current snapshot */
    struct gw_committer *committer;      /* group commit of renewed certificates (gw_commit.h) */
    struct gw_states *states;            /* sandbox state refreshes (gw_state.h) */
    struct gw_reconciler *reconciler;    /* its periodic thread; NULL until started */
    bool keyring_created;                /* gw_app_init made a new keyring file */
    /* This replica's name on a shared store: "<host>:<data_dir>" (or the
     * host and a hash of a long data_dir); "" on sqlite (one gateway). */
    char replica[129];
} gw_app;

typedef struct gw_worker {
    gw_app *app;
    struct gw_store *store;
    int index;
} gw_worker;

/* Load everything the gateway serves with: PKI, keyring (created on first
 * run), audit log, revocation set (from the store), rate limits. Messages
 * name the file and what to do. */
TSR_WUR int gw_app_init(gw_app *app, const struct gw_config *cfg);
void gw_app_fini(gw_app *app);

/* Build a snapshot from the files `cfg` names: bundle (trust), issuing CA
 * (certificate + key, which must match and chain to a root of the bundle).
 * refs = 1; cfg is borrowed (set owned_cfg to hand it over). */
TSR_WUR int gw_pki_load(const struct gw_config *cfg, gw_pki **out);
/* A reference to the current snapshot; never NULL after gw_app_init. */
gw_pki *gw_app_pki(gw_app *app);
void gw_pki_release(gw_pki *pki);
/* Install `pki` (the caller's reference moves to the app) and release the
 * previous one. Calls in progress keep the snapshot they took. */
void gw_app_swap_pki(gw_app *app, gw_pki *pki);

/* Load the driver plugins (the listen port is known by now) and re-attach
 * to the sandboxes a previous gateway process started: their state is
 * refreshed from the driver, nothing is re-created or re-minted. */
TSR_WUR int gw_app_attach_drivers(gw_app *app, const char *drivers_dir,
                                  const char *supervisor_path, const char *gateway_addr);
/* `tessera-gateway --check`: load and initialise every driver plugin as a
 * start would (a configured driver whose options are wrong is an error),
 * then unload them; no sandbox is touched. */
TSR_WUR int gw_app_check_drivers(gw_app *app, const char *drivers_dir,
                                 const char *supervisor_path, const char *gateway_addr);
/* Start the periodic state reconcile (gw_state.h); gw_app_fini stops it. */
TSR_WUR int gw_app_start_reconcile(gw_app *app);

/* gw_server_config.worker_init / worker_fini: each worker opens its own
 * store connection. NULL on failure (the error is logged). */
void *gw_app_worker_init(void *app, int index);
void gw_app_worker_fini(void *worker);

/* Typed access to the void pointers the transport hands back (fail closed). */
gw_app *gw_app_of(const gw_call_ctx *ctx);
gw_worker *gw_worker_of(const gw_call_ctx *ctx);

#endif
