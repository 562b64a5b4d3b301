/* The control thread: keeps the identity fresh (rotation on the sup_rotate
 * schedule, with backoff while the gateway is unreachable) and watches the
 * sandbox's standing and policy (GetSandboxConfig every poll interval; a
 * new policy version is validated and its status reported).
 *
 * It decides two of the supervisor's fatal ends, reported through on_fatal:
 *   SUP_EXIT_EXPIRED  the certificate expired while the gateway stayed
 *                     unreachable ("certificate expired at ...; gateway
 *                     unreachable since ...");
 *   SUP_EXIT_REVOKED  the gateway refused our identity (UNAUTHENTICATED,
 *                     PERMISSION_DENIED, or NOT_FOUND for our own sandbox). */
#ifndef SUP_CONTROL_H
#define SUP_CONTROL_H

#include <stdint.h>

#include "cl_grpc.h"
#include "sup_gwlist.h"
#include "sup_identity.h"
#include "tsr_err.h"

enum sup_exit {
    SUP_EXIT_OK = 0,
    SUP_EXIT_INTERNAL = 1,
    SUP_EXIT_USAGE = 2,      /* bad flags, or refused to start (identity files, uid) */
    SUP_EXIT_EXPIRED = 3,    /* certificate expired, gateway unreachable */
    SUP_EXIT_REVOKED = 4,    /* identity refused by the gateway (revoked, deleted) */
    SUP_EXIT_POLICY = 5,     /* the sandbox policy failed the supervisor's validation */
    SUP_EXIT_NOEXEC = 126,   /* workload found but could not be started */
    SUP_EXIT_NOTFOUND = 127, /* workload command not found */
};

typedef struct sup_control sup_control;

typedef struct sup_control_config {
    const char *identity_dir;
    const char *trust_domain;
    sup_gateways *gateways;      /* shared with the start-up calls and the log sender */
    cl_tls *tls;                 /* shared with the log sender; reloaded here */
    int64_t min_rotate_s;
    int64_t renew_before_s;      /* 0 = half of the remaining lifetime only */
    int64_t poll_s;              /* 0 = no config poll */
    int64_t policy_version;      /* the version reported at start */
    const char *enforcement;     /* sup_enforced_describe(), for policy reports */
    void (*on_fatal)(void *arg, enum sup_exit code, const char *message);
    void *arg;
} sup_control_config;

/* Takes ownership of `id` (also on failure). */
TSR_WUR int sup_control_start(const sup_control_config *cfg, sup_identity *id,
                              sup_control **out);
/* Rotate as soon as possible (SIGUSR1). */
void sup_control_rotate_now(sup_control *c);
void sup_control_stop(sup_control *c);   /* join and free */

/* "2024-05-01T12:00:00Z" */
void sup_format_time(int64_t unix_seconds, char *out, size_t cap);

#endif
