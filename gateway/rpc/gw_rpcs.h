/* The tessera.v1.Gateway methods (and health), one gw_method each, and the
 * request checks shared between them. */
#ifndef GW_RPCS_H
#define GW_RPCS_H

#include <stdlib.h>

#include "drv_abi.h"
#include "gw_rpc.h"
#include "gw_store.h"
#include "gw_svc_sandbox.h"

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

/* The request checks and the driver mint are the service's: gw_svc_sandbox.h. */

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
