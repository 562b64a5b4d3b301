#include "gw_health.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"

static atomic_int draining;

void gw_health_set_draining(void)
{
    atomic_store(&draining, 1);
}

static int serving_status(bool known)
{
    if (!known) return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
    return atomic_load(&draining)
               ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
               : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
}

/* A HealthCheckResponse with `status`, packed into a fresh buffer. */
static uint8_t *pack_status(int status, size_t *len)
{
    Grpc__Health__V1__HealthCheckResponse out;
    grpc__health__v1__health_check_response__init(&out);
    out.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)status;
    size_t n = grpc__health__v1__health_check_response__get_packed_size(&out);
    uint8_t *body = malloc(n > 0 ? n : 1);
    if (body == NULL) return NULL;
    grpc__health__v1__health_check_response__pack(&out, body);
    *len = n;
    return body;
}

/* The service a request names: 1 served, 0 not, -1 malformed. */
static int requested_service(const uint8_t *msg, size_t len)
{
    Grpc__Health__V1__HealthCheckRequest *req =
        grpc__health__v1__health_check_request__unpack(NULL, len, msg);
    if (req == NULL) return -1;
    const char *svc = req->service != NULL ? req->service : "";
    int known = svc[0] == '\0' || strcmp(svc, GW_HEALTH_SERVICE) == 0;
    grpc__health__v1__health_check_request__free_unpacked(req, NULL);
    return known;
}

void gw_health_check(const gw_call_ctx *ctx, const uint8_t *msg, size_t len, gw_response *resp)
{
    (void)ctx;
    /* msg is one complete message, bounded by the transport's maximum. */
    int known = requested_service(msg, len);
    if (known < 0) {
        (void)gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT, "malformed HealthCheckRequest");
        return;
    }
    if (!known) {
        (void)gw_response_fail(resp, GW_STATUS_NOT_FOUND, "unknown service");
        return;
    }
    size_t n = 0;
    uint8_t *body = pack_status(serving_status(true), &n);
    if (body == NULL) {
        (void)gw_response_fail(resp, GW_STATUS_INTERNAL, "out of memory");
        return;
    }
    resp->status = GW_STATUS_OK;
    resp->body = body;
    resp->body_len = n;
}

/* ---- Watch ----------------------------------------------------------------- */

typedef struct watch {
    bool have_request;
    bool known;
    int sent;          /* last status sent; -1 none */
} watch;

static void *watch_open(const gw_call_ctx *ctx)
{
    (void)ctx;
    watch *w = calloc(1, sizeof *w);
    if (w != NULL) w->sent = -1;
    return w;
}

/* Send the status when it changed; -1 (resp set) to end the call. */
static int watch_update(watch *w, const gw_call_ctx *ctx, gw_response *resp)
{
    int now = serving_status(w->known);
    if (now != w->sent) {
        size_t n = 0;
        uint8_t *body = pack_status(now, &n);
        if (body == NULL || gw_stream_send(ctx, body, n) != 0)
            return gw_response_fail(resp, GW_STATUS_RESOURCE_EXHAUSTED, "cannot send the status");
        w->sent = now;
    }
    if (atomic_load(&draining))
        return gw_response_fail(resp, GW_STATUS_UNAVAILABLE, "the gateway is shutting down");
    return 0;
}

static int watch_message(void *state, const gw_call_ctx *ctx, const uint8_t *msg, size_t len,
                         gw_response *resp)
{
    watch *w = state;
    if (w == NULL) return gw_response_fail(resp, GW_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    if (w->have_request)
        return gw_response_fail(resp, GW_STATUS_UNIMPLEMENTED,
                                "more than one request message for a server-streaming method");
    int known = requested_service(msg, len);
    if (known < 0)
        return gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT, "malformed HealthCheckRequest");
    w->have_request = true;
    w->known = known == 1;
    return watch_update(w, ctx, resp);
}

static int watch_finish(void *state, const gw_call_ctx *ctx, gw_response *resp)
{
    (void)ctx;
    watch *w = state;
    if (w == NULL || !w->have_request) {
        (void)gw_response_fail(resp, GW_STATUS_INTERNAL, "missing request message");
        return 0;
    }
    return 1;   /* the stream goes on: changes are sent from poll */
}

static int watch_poll(void *state, const gw_call_ctx *ctx, gw_response *resp)
{
    watch *w = state;
    if (w == NULL || !w->have_request) return 0;
    return watch_update(w, ctx, resp);
}

static void watch_close(void *state)
{
    free(state);
}

const gw_stream_ops gw_health_watch_ops = {
    .open = watch_open,
    .message = watch_message,
    .finish = watch_finish,
    .poll = watch_poll,
    .close = watch_close,
};
