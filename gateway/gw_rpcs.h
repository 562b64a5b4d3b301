/* The tessera.v1.Gateway methods (and health), one gw_method each, and the
 * request checks shared between them. */
#ifndef GW_RPCS_H
#define GW_RPCS_H

#include <stdlib.h>

#include "drv_abi.h"
#include "gw_rpc.h"
#include "gw_store.h"

extern const gw_method gw_rpc_create_sandbox, gw_rpc_get_sandbox, gw_rpc_list_sandboxes,
    gw_rpc_delete_sandbox;
extern const gw_method gw_rpc_list_certificates, gw_rpc_revoke_certificate,
    gw_rpc_renew_certificate, gw_rpc_get_trust_bundle;
extern const gw_method gw_rpc_get_sandbox_config, gw_rpc_get_provider_env,
    gw_rpc_report_policy_status, gw_rpc_submit_policy_analysis, gw_rpc_get_draft_policy,
    gw_rpc_update_config;
extern const gw_method gw_rpc_get_sandbox_logs, gw_rpc_push_sandbox_logs;
extern const gw_method gw_rpc_health_check;
extern const gw_method gw_rpc_health_watch;
extern const gw_method gw_rpc_reflection_v1;
extern const gw_method gw_rpc_reflection_v1alpha;

/* Every method the gateway serves. */
const gw_method *gw_methods(size_t *count);

/* INVALID_ARGUMENT unless the policy is a valid, bounded policy document. */
int gw_policy_check(const char *policy, gw_response *resp);
/* INVALID_ARGUMENT unless names and sizes of a provider environment are valid. */
int gw_env_validate(const gw_env_var *env, size_t n, gw_response *resp);

/* gw_drivers_env.mint / release (drivers/drv_abi.h, mint_identity): a fresh
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

/* Borrow a request's map entries as gw_env_var (no copies of the secrets);
 * out is NULL when memory ran out. */
#define GW_ENV_FROM_ENTRIES(entries, n, out)                                                      \
    do {                                                                                          \
        (out) = calloc((n) + 1, sizeof *(out));                                                   \
        for (size_t i_ = 0; (out) != NULL && i_ < (n); i_++) {                                    \
            (out)[i_].name = (entries)[i_]->key;                                                  \
            (out)[i_].value = (entries)[i_]->value;                                               \
        }                                                                                         \
    } while (0)

#endif
