/* The supervisor's side of the gateway: connecting, what a failed call
 * means for us, and the calls about our own sandbox (config, provider
 * environment, policy status). Every call names only our own sandbox id,
 * the one from our verified certificate. */
#ifndef SUP_GATEWAY_H
#define SUP_GATEWAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cl_grpc.h"
#include "tsr_err.h"

#define SUP_CONNECT_TIMEOUT_MS 10000
#define SUP_CALL_TIMEOUT_MS 15000

/* A status the gateway returned for a call about our own sandbox that means
 * we no longer have an identity there: UNAUTHENTICATED (revoked, expired,
 * deleted), PERMISSION_DENIED, NOT_FOUND (our sandbox is gone). Everything
 * else (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INTERNAL, ...)
 * is worth a retry with backoff. A failure to *connect* is never fatal:
 * cl_conn_open's UNAUTHENTICATED means the server's identity was refused,
 * not ours. */
bool sup_status_is_fatal(enum gw_status code);

/* ---- our sandbox ------------------------------------------------------------ */

typedef struct sup_env_var {
    char *name;
    char *value;      /* secret: cleansed on free, by value_len */
    size_t value_len; /* strlen(value): the copy holds no NUL (it ends at the first) */
} sup_env_var;

typedef struct sup_env_list {
    sup_env_var *vars;
    size_t n;
} sup_env_list;
void sup_env_list_free(sup_env_list *l);

typedef struct sup_config {
    char *policy;             /* YAML text */
    int64_t policy_version;
    char name[80];
    sup_env_list env;         /* the workload's plain variables (CreateSandbox env) */
} sup_config;
void sup_config_free(sup_config *c);

TSR_WUR int sup_get_config(cl_conn *conn, const char *sandbox_id, sup_config *out,
                           cl_status *st);
TSR_WUR int sup_get_provider_env(cl_conn *conn, const char *sandbox_id, sup_env_list *out,
                                 cl_status *st);

/* ---- what is enforced (docs/policy.md, "Enforcement") ------------------------ */

/* The policy domains a driver enforces, as bits (--enforced). */
#define SUP_ENF_FILESYSTEM 1u
#define SUP_ENF_NETWORK 2u
#define SUP_ENF_PROCESS 4u

/* `none`, or a comma-separated list of filesystem, network, process (each
 * at most once) -> bits. */
TSR_WUR int sup_enforced_parse(const char *list, unsigned *out);

/* "enforced by the <driver> driver: <domains|none>; recorded only, not
 * enforced: <domains|none>" (driver NULL: "by the driver"). */
void sup_enforced_describe(const char *driver, unsigned enforced, char *out, size_t cap);

/* Validate the policy (pol_validate, the supervisor's own check) and
 * report APPLIED with "validated by tessera-supervisor; <enforcement>"
 * (sup_enforced_describe), or FAILED with the reason. *applied says which;
 * the return value is the call's. */
TSR_WUR int sup_report_policy(cl_conn *conn, const char *sandbox_id, const sup_config *cfg,
                              const char *enforcement, bool *applied, char *why,
                              size_t why_cap, cl_status *st);

#endif
