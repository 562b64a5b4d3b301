/* grpc.health.v1.Health/Check (grpc/doc/health-checking.md). */
#ifndef GW_HEALTH_H
#define GW_HEALTH_H

#include "gw_rpc.h"

#define GW_HEALTH_CHECK_PATH "/grpc.health.v1.Health/Check"
#define GW_HEALTH_SERVICE "tessera.v1.Gateway"

/* service "" (the whole server) or "tessera.v1.Gateway" -> SERVING; any other
 * service -> NOT_FOUND, as the standard says. No authorization of its own:
 * the dispatcher admits anonymous callers to it (gw_authz.c). */
void gw_health_check(const gw_call_ctx *ctx, const uint8_t *msg, size_t len, gw_response *resp);

#endif
