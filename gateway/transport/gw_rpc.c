/* gw_rpc.h: the handler's answer. */
#include "gw_rpc.h"

#include <stdarg.h>
#include <stdio.h>

#include "tsr_err.h"

int gw_response_fail(gw_response *resp, enum gw_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(resp->message, sizeof resp->message, fmt, ap);
    va_end(ap);
    resp->status = status;
    return -1;
}

void gw_fail_from_error(gw_response *resp)
{
    enum gw_status status;
    switch (tsr_errcat()) {
    case TSR_E_INPUT: status = GW_STATUS_INVALID_ARGUMENT; break;
    case TSR_E_UNAUTH: status = GW_STATUS_UNAUTHENTICATED; break;
    case TSR_E_DENIED: status = GW_STATUS_PERMISSION_DENIED; break;
    case TSR_E_NOTFOUND: status = GW_STATUS_NOT_FOUND; break;
    case TSR_E_EXISTS: status = GW_STATUS_ALREADY_EXISTS; break;
    case TSR_E_LIMIT: status = GW_STATUS_RESOURCE_EXHAUSTED; break;
    case TSR_E_STATE: status = GW_STATUS_FAILED_PRECONDITION; break;
    case TSR_E_IO: status = GW_STATUS_UNAVAILABLE; break;
    case TSR_E_PROTO:
    case TSR_E_INTERNAL:
    case TSR_E_NONE:
    default: status = GW_STATUS_INTERNAL; break;
    }
    if (status == GW_STATUS_UNAVAILABLE)
        gw_response_fail(resp, status, "storage unavailable: %s", tsr_errmsg());
    else
        gw_response_fail(resp, status, "%s", tsr_errmsg());
}
