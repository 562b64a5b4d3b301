/* Driver plugins on the gateway side: loading (dlopen, ABI check), and the
 * calls CreateSandbox / DeleteSandbox / start-up make into them. */
#ifndef GW_DRIVER_H
#define GW_DRIVER_H

#include <stddef.h>

#include "drv_abi.h"
#include "tsr_err.h"

typedef struct gw_drivers gw_drivers;

typedef struct gw_drivers_env {
    const char *dir;              /* where <name>.so live */
    const char *data_dir;
    const char *supervisor_path;
    const char *gateway_addr;     /* what supervisors dial */
    const char *trust_domain;
    const char *default_driver;   /* must load and initialise */
    const struct gw_driver_option *options; /* from the config, for every driver */
    size_t n_options;
    /* What a driver's tsr_driver_env.mint_identity calls, with the driver's
     * name (gw_sandbox_mint_for_driver); NULL: drivers get no minting. */
    int (*mint)(void *arg, const char *driver, const char *sandbox_id, tsr_driver_identity *out,
                char *err, size_t err_cap);
    void (*release)(void *arg, tsr_driver_identity *identity);
    void *mint_arg;
} gw_drivers_env;

/* Load every <name>.so in env->dir. A plugin with another ABI version, a
 * wrong table size or no entry point is an error (the gateway refuses to
 * start), and so is a failing init of the default driver or of one the
 * config gives options for (docs/drivers.md); another driver whose init
 * fails is kept as unavailable with its reason. */
TSR_WUR int gw_drivers_load(const gw_drivers_env *env, gw_drivers **out);
void gw_drivers_free(gw_drivers *d);

/* A driver by name, or NULL with TSR_E_STATE ("driver docker is unavailable:
 * ...") or TSR_E_INPUT ("no driver named x"). */
typedef struct gw_driver gw_driver;
gw_driver *gw_drivers_find(gw_drivers *d, const char *name);
/* Comma-separated names of the loaded drivers, for messages. */
const char *gw_drivers_names(const gw_drivers *d);

const char *gw_driver_name(const gw_driver *drv);
/* The driver's check of sb's workload (drv_abi.h, check), before anything is
 * minted: TSR_E_INPUT with its reason when it cannot run it. */
TSR_WUR int gw_driver_check(gw_driver *drv, const tsr_driver_sandbox *sb);
/* create + start; on failure the driver has cleaned up what it made.
 * TSR_E_STATE when retrying as is will not help (an image missing in the
 * engine, a sandbox gone at once: the driver said TSR_DRIVER_PRECONDITION),
 * TSR_E_IO otherwise. */
TSR_WUR int gw_driver_launch(gw_driver *drv, const tsr_driver_sandbox *sb,
                             const tsr_driver_identity *identity);
TSR_WUR int gw_driver_destroy(gw_driver *drv, const char *sandbox_id);
/* Destroy on a background thread: DeleteSandbox has already revoked every
 * certificate, and a driver's stop may take its whole grace period, which
 * must not stall a gateway worker. gw_drivers_free waits for these. */
TSR_WUR int gw_driver_destroy_async(gw_drivers *all, gw_driver *drv, const char *sandbox_id);
/* st->want_detail is the caller's; everything else is the driver's answer. */
TSR_WUR int gw_driver_status(gw_driver *drv, const char *sandbox_id, tsr_driver_status *st);

#endif
