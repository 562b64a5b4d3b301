/* The sandbox lifecycle as the service layer (docs/architecture.md,
 * "Layers"): plain C structs in and out, no protobuf. The RPC layer
 * (gateway/rpc/gw_rpc_sandbox.c) decodes a request, runs the checks that
 * need the encoded bytes or the guard (the target check of gw_handler.h,
 * always before any store read), calls these, and encodes the answer.
 *
 * Failures are answered through `resp` (status and message only; its body
 * is never set here) with -1: the exact status the RPC returns. */
#ifndef GW_SVC_SANDBOX_H
#define GW_SVC_SANDBOX_H

#include <stddef.h>
#include <stdint.h>

#include "drv_abi.h"
#include "gw_app.h"
#include "gw_rpc.h"
#include "gw_store.h"

/* INVALID_ARGUMENT unless the policy is a valid, bounded policy document. */
int gw_policy_check(const char *policy, gw_response *resp);
/* INVALID_ARGUMENT unless names and sizes of a provider environment are valid. */
int gw_env_validate(const gw_env_var *env, size_t n, gw_response *resp);

/* gw_drivers_env.mint / release (drivers/abi/drv_abi.h, mint_identity): a fresh
 * key and certificate for a live sandbox of `driver`, recorded in the store
 * (the store re-checks liveness in the same transaction) before it is
 * returned, audited ("issue", the gateway as the caller) and counted
 * (tessera_certificates_issued_total{kind="restart"}); renewal's per-sandbox
 * rate limit applies. arg is the gw_app. -1 with a reason in err: unknown or
 * deleted sandbox, another driver's, rate limited, storage failure. */
int gw_sandbox_mint_for_driver(void *arg, const char *driver, const char *sandbox_id,
                               tsr_driver_identity *out, char *err, size_t err_cap);
/* Wipes the key and frees what gw_sandbox_mint_for_driver handed out. */
void gw_sandbox_release_for_driver(void *arg, tsr_driver_identity *identity);

/* CreateSandbox, as asked (every pointer borrowed for the call). */
typedef struct gw_svc_create_req {
    const char *name;
    const char *policy;                      /* YAML text */
    const char *driver;                      /* NULL or "": the configured default */
    const char *image;
    char **command;
    size_t n_command;
    const gw_env_var *provider_env;          /* secret */
    size_t n_provider_env;
    const gw_env_var *env;                   /* plain */
    size_t n_env;
    /* The encoded request, for gw_workload_wire_check's bounds on repeated
     * fields before they are decoded further (NULL: none to check). */
    const uint8_t *wire;
    size_t wire_len;
} gw_svc_create_req;

typedef struct gw_svc_created {
    gw_sandbox_rec sb;                       /* as stored, state "running" */
    char serial[41];                         /* its first certificate */
} gw_svc_created;

/* Check the request (name, policy, provider env, workload, driver), mint
 * the sandbox's UUID, key and first certificate, record everything in one
 * transaction, audit, and have the driver place the identity and start it;
 * a driver that fails rolls the sandbox back (deleted, certificate revoked
 * in the store and in memory). The caller's identity is ctx->principal
 * (audit only: who may create was decided at dispatch). */
TSR_WUR int gw_svc_sandbox_create(const gw_call_ctx *ctx, const gw_svc_create_req *req,
                                  gw_svc_created *made, gw_response *resp);

typedef struct gw_svc_deleted {
    gw_sandbox_rec sb;                       /* as stored after the delete */
    gw_sandbox_spec spec;                    /* free with gw_store_free_spec */
    int revoked;                             /* certificates revoked now */
} gw_svc_deleted;

/* DeleteSandbox of `target`, which the caller resolved through the guard
 * (gw_resolve_sandbox_ref): revoke every certificate in the store and in
 * memory, have the driver destroy it in the background, audit. */
TSR_WUR int gw_svc_sandbox_delete(const gw_call_ctx *ctx, const gw_sandbox_rec *target,
                                  gw_svc_deleted *gone, gw_response *resp);

#endif
