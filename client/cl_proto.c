#include "cl_proto.h"

#include <arpa/inet.h>
#include <nghttp2/nghttp2.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "grpc_frame.h"

#define CL_UNIX_PATH_MAX 107   /* sizeof(sun_path) - 1 */
#define CL_HOST_NAME_MAX 253

const char *cl_status_name(enum gw_status code)
{
    return grpc_status_name((int)code);
}

enum tsr_errcat cl_status_errcat(enum gw_status code)
{
    switch (code) {
    case GW_STATUS_OK: return TSR_E_NONE;
    case GW_STATUS_INVALID_ARGUMENT:
    case GW_STATUS_OUT_OF_RANGE: return TSR_E_INPUT;
    case GW_STATUS_UNAUTHENTICATED: return TSR_E_UNAUTH;
    case GW_STATUS_PERMISSION_DENIED: return TSR_E_DENIED;
    case GW_STATUS_NOT_FOUND: return TSR_E_NOTFOUND;
    case GW_STATUS_ALREADY_EXISTS: return TSR_E_EXISTS;
    case GW_STATUS_RESOURCE_EXHAUSTED: return TSR_E_LIMIT;
    case GW_STATUS_FAILED_PRECONDITION:
    case GW_STATUS_ABORTED: return TSR_E_STATE;
    case GW_STATUS_UNAVAILABLE:
    case GW_STATUS_DEADLINE_EXCEEDED:
    case GW_STATUS_CANCELLED: return TSR_E_IO;
    case GW_STATUS_INTERNAL:
    case GW_STATUS_UNKNOWN:
    case GW_STATUS_DATA_LOSS: return TSR_E_PROTO;
    case GW_STATUS_UNIMPLEMENTED: return TSR_E_INTERNAL;
    }
    return TSR_E_PROTO;
}

void cl_status_set(cl_status *st, enum gw_status code, const char *fmt, ...)
{
    if (st == NULL) return;
    st->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->message, sizeof st->message, fmt, ap);
    va_end(ap);
}

/* ---- addresses ------------------------------------------------------------- */

static int parse_port(const char *s, size_t len, uint16_t *out)
{
    TSR_ENSURE(len >= 1 && len <= 5, TSR_E_INPUT, "port must be 1-65535");
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        TSR_ENSURE(s[i] >= '0' && s[i] <= '9', TSR_E_INPUT, "port must be a number");
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    TSR_ENSURE(v >= 1 && v <= 65535, TSR_E_INPUT, "port must be 1-65535");
    *out = (uint16_t)v;
    return 0;
}

static bool host_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '-';
}

static int set_host(cl_addr *out, const char *h, size_t len, bool v6)
{
    TSR_ENSURE(len >= 1, TSR_E_INPUT, "empty host");
    TSR_ENSURE(len <= CL_HOST_NAME_MAX, TSR_E_INPUT, "host longer than %d bytes", CL_HOST_NAME_MAX);
    memcpy(out->host, h, len);
    out->host[len] = '\0';
    if (v6) {
        struct in6_addr a6;
        TSR_ENSURE(inet_pton(AF_INET6, out->host, &a6) == 1, TSR_E_INPUT,
                   "not an IPv6 address in brackets");
        return 0;
    }
    for (size_t i = 0; i < len; i++)
        TSR_ENSURE(host_char_ok(h[i]), TSR_E_INPUT, "bad character in host name");
    TSR_ENSURE(h[0] != '-' && h[0] != '.', TSR_E_INPUT, "bad host name");
    return 0;
}

int cl_addr_parse(const char *text, uint16_t default_port, cl_addr *out)
{
    TSR_ENSURE(text != NULL && out != NULL, TSR_E_INPUT, "no address");
    memset(out, 0, sizeof *out);
    size_t len = strlen(text);
    if (len >= 5 && memcmp(text, "unix:", 5) == 0) {
        const char *p = text + 5;
        if (p[0] == '/' && p[1] == '/') p += 2; /* unix:///abs/path */
        size_t pl = strlen(p);
        TSR_ENSURE(pl >= 1, TSR_E_INPUT, "empty unix socket path");
        TSR_ENSURE(pl <= CL_UNIX_PATH_MAX, TSR_E_INPUT, "unix socket path longer than %d bytes",
                   CL_UNIX_PATH_MAX);
        memcpy(out->host, p, pl + 1);
        out->is_unix = true;
        return 0;
    }
    TSR_ENSURE(len >= 1, TSR_E_INPUT, "empty address");
    if (text[0] == '[') {
        const char *close = memchr(text, ']', len);
        TSR_ENSURE(close != NULL, TSR_E_INPUT, "missing ']' after the IPv6 address");
        TSR_GUARD(set_host(out, text + 1, (size_t)(close - text - 1), true));
        const char *rest = close + 1;
        if (*rest == '\0') {
            TSR_ENSURE(default_port != 0, TSR_E_INPUT, "no port");
            out->port = default_port;
            return 0;
        }
        TSR_ENSURE(*rest == ':', TSR_E_INPUT, "expected ':PORT' after ']'");
        return parse_port(rest + 1, strlen(rest + 1), &out->port);
    }
    const char *colon = strchr(text, ':');
    if (colon != NULL && strchr(colon + 1, ':') != NULL)
        return TSR_FAIL(TSR_E_INPUT, "IPv6 addresses need brackets: [ADDR]:PORT");
    if (colon == NULL) {
        TSR_GUARD(set_host(out, text, len, false));
        TSR_ENSURE(default_port != 0, TSR_E_INPUT, "no port");
        out->port = default_port;
        return 0;
    }
    TSR_GUARD(set_host(out, text, (size_t)(colon - text), false));
    return parse_port(colon + 1, strlen(colon + 1), &out->port);
}

/* ---- response -> status --------------------------------------------------- */

enum gw_status cl_http_to_grpc(int http_status)
{
    switch (http_status) {
    case 400: return GW_STATUS_INTERNAL;
    case 401: return GW_STATUS_UNAUTHENTICATED;
    case 403: return GW_STATUS_PERMISSION_DENIED;
    case 404: return GW_STATUS_UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504: return GW_STATUS_UNAVAILABLE;
    default: return GW_STATUS_UNKNOWN;
    }
}

enum gw_status cl_h2_error_to_grpc(uint32_t h2_error)
{
    switch (h2_error) {
    case NGHTTP2_REFUSED_STREAM: return GW_STATUS_UNAVAILABLE;
    case NGHTTP2_CANCEL: return GW_STATUS_CANCELLED;
    case NGHTTP2_ENHANCE_YOUR_CALM: return GW_STATUS_RESOURCE_EXHAUSTED;
    case NGHTTP2_INADEQUATE_SECURITY: return GW_STATUS_PERMISSION_DENIED;
    default: return GW_STATUS_INTERNAL;
    }
}

int cl_grpc_status_parse(const char *v, size_t len, int *code)
{
    TSR_ENSURE(len >= 1 && len <= 3, TSR_E_INPUT, "grpc-status must be 1-3 digits");
    int c = 0;
    for (size_t i = 0; i < len; i++) {
        TSR_ENSURE(v[i] >= '0' && v[i] <= '9', TSR_E_INPUT, "grpc-status: not a digit");
        c = c * 10 + (v[i] - '0');
    }
    *code = c;
    return 0;
}

int cl_grpc_timeout_format(int64_t ms, char out[16])
{
    TSR_ENSURE(ms > 0, TSR_E_INPUT, "timeout must be positive");
    static const struct {
        int64_t unit_ms;
        char unit;
    } units[] = {{1, 'm'}, {1000, 'S'}, {60000, 'M'}, {3600000, 'H'}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        int64_t v = ms / units[i].unit_ms + (ms % units[i].unit_ms != 0); /* round up */
        if (v <= 99999999) {
            char tmp[32];
            snprintf(tmp, sizeof tmp, "%lld%c", (long long)v, units[i].unit);
            memcpy(out, tmp, strlen(tmp) + 1); /* at most 8 digits + unit + NUL */
            return 0;
        }
    }
    return TSR_FAIL(TSR_E_INPUT, "timeout too long for grpc-timeout");
}

void cl_message_decode(const char *v, size_t len, char *out, size_t cap)
{
    if (cap == 0) return;
    size_t n = grpc_percent_decode(v, len, out, cap);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)out[i];
        if (c < 0x20 || c == 0x7f) out[i] = '?';
    }
}

void cl_resp_status(const cl_resp *r, bool want_one_message, cl_status *st)
{
    if (r->http_status != 0 && r->http_status != 200) {
        enum gw_status code = cl_http_to_grpc(r->http_status);
        if (r->have_grpc_status && !r->grpc_status_bad && r->grpc_message[0] != '\0')
            cl_status_set(st, code, "HTTP status %d: %s", r->http_status, r->grpc_message);
        else
            cl_status_set(st, code, "HTTP status %d from the server (not a gRPC response)",
                          r->http_status);
        return;
    }
    if (r->have_grpc_status) {
        if (r->grpc_status_bad) {
            cl_status_set(st, GW_STATUS_INTERNAL, "malformed grpc-status from the server");
            return;
        }
        if (r->http_status == 0) {
            cl_status_set(st, GW_STATUS_INTERNAL, "response without :status");
            return;
        }
        if (r->content_type_seen && !r->content_type_ok) {
            cl_status_set(st, GW_STATUS_UNKNOWN, "response is not gRPC (content-type)");
            return;
        }
        int code = r->grpc_status;
        if (code < 0 || code > GW_STATUS_UNAUTHENTICATED) code = GW_STATUS_UNKNOWN;
        if (code != GW_STATUS_OK) {
            cl_status_set(st, (enum gw_status)code, "%s", r->grpc_message);
            return;
        }
        if (r->truncated) {
            cl_status_set(st, GW_STATUS_INTERNAL, "response ended inside a message");
            return;
        }
        if (want_one_message && r->messages == 0) {
            cl_status_set(st, GW_STATUS_INTERNAL, "no response message with status OK");
            return;
        }
        if (want_one_message && r->messages > 1) {
            cl_status_set(st, GW_STATUS_INTERNAL, "more than one response message");
            return;
        }
        cl_status_set(st, GW_STATUS_OK, "%s", r->grpc_message);
        return;
    }
    if (r->reset && r->reset_code != NGHTTP2_NO_ERROR) {
        cl_status_set(st, cl_h2_error_to_grpc(r->reset_code),
                      "stream reset by the server (HTTP/2 error %s)",
                      nghttp2_http2_strerror(r->reset_code));
        return;
    }
    if (r->http_status == 200 && r->content_type_seen && !r->content_type_ok) {
        cl_status_set(st, GW_STATUS_UNKNOWN, "response is not gRPC (content-type)");
        return;
    }
    cl_status_set(st, GW_STATUS_INTERNAL, "stream ended without grpc-status");
}
