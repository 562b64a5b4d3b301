#include "gw_health.h"

#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"

void gw_health_check(const gw_call_ctx *ctx, const uint8_t *msg, size_t len, gw_response *resp)
{
    (void)ctx;
    /* msg is one complete message, bounded by the transport's maximum. */
    Grpc__Health__V1__HealthCheckRequest *req =
        grpc__health__v1__health_check_request__unpack(NULL, len, msg);
    if (req == NULL) {
        (void)gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT, "malformed HealthCheckRequest");
        return;
    }
    const char *svc = req->service != NULL ? req->service : "";
    bool known = svc[0] == '\0' || strcmp(svc, GW_HEALTH_SERVICE) == 0;
    grpc__health__v1__health_check_request__free_unpacked(req, NULL);
    if (!known) {
        (void)gw_response_fail(resp, GW_STATUS_NOT_FOUND, "unknown service");
        return;
    }

    Grpc__Health__V1__HealthCheckResponse out;
    grpc__health__v1__health_check_response__init(&out);
    out.status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    size_t n = grpc__health__v1__health_check_response__get_packed_size(&out);
    uint8_t *body = malloc(n > 0 ? n : 1);
    if (body == NULL) {
        (void)gw_response_fail(resp, GW_STATUS_INTERNAL, "out of memory");
        return;
    }
    grpc__health__v1__health_check_response__pack(&out, body);
    resp->status = GW_STATUS_OK;
    resp->body = body;
    resp->body_len = n;
}
