/* grpc.health.v1.Health/Check (grpc/doc/health-checking.md). */
#ifndef GW_HEALTH_H
#define GW_HEALTH_H

#include "gw_rpc.h"

#define GW_HEALTH_CHECK_PATH "/grpc.health.v1.Health/Check"
#define GW_HEALTH_WATCH_PATH "/grpc.health.v1.Health/Watch"
#define GW_HEALTH_SERVICE "tessera.v1.Gateway"

/* service "" (the whole server) or "tessera.v1.Gateway" -> SERVING; any other
 * service -> NOT_FOUND, as the standard says. No authorization of its own:
 * the dispatcher admits anonymous callers to it (gw_authz.c). */
void gw_health_check(const gw_call_ctx *ctx, const uint8_t *msg, size_t len, gw_response *resp);

/* From SIGTERM on (async-signal-safe): every service is NOT_SERVING, for
 * Check and Watch (docs/operations.md, "Running under systemd"). */
void gw_health_set_draining(void);

/* grpc.health.v1.Health/Watch: a server stream. The current status at
 * once (SERVICE_UNKNOWN for a service we do not serve), then each change,
 * checked every transport tick: when the gateway starts draining, one
 * NOT_SERVING, then the call ends with UNAVAILABLE "the gateway is shutting
 * down" so that the drain need not wait for it. */
extern const gw_stream_ops gw_health_watch_ops;

#endif
