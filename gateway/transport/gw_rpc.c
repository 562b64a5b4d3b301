/* gw_rpc.h: the handler's answer. */
#include "gw_rpc.h"

#include <stdarg.h>
#include <stdio.h>

int gw_response_fail(gw_response *resp, enum gw_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(resp->message, sizeof resp->message, fmt, ap);
    va_end(ap);
    resp->status = status;
    return -1;
}
