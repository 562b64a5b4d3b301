/* The pure (no I/O) parts of the gRPC client: what a response's headers,
 * trailers and HTTP/2 events mean as a gRPC status (PROTOCOL-HTTP2.md and
 * http-grpc-status-mapping.md), grpc-status parsing, grpc-timeout
 * formatting, and grpc-message decoding. Unit-tested in
 * tests/unit/test_cl_proto.c. */
#ifndef CL_PROTO_H
#define CL_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cl_grpc.h"

/* What one stream saw of the server's answer. */
typedef struct cl_resp {
    int http_status;            /* final :status; 0 = none seen */
    bool content_type_seen;
    bool content_type_ok;       /* application/grpc[+x|;x] */
    bool have_grpc_status;      /* grpc-status in a header block that ended the stream */
    bool grpc_status_bad;       /* ... whose value did not parse */
    int grpc_status;            /* parsed value (may exceed 16) */
    char grpc_message[CL_STATUS_MESSAGE_MAX];  /* decoded, sanitized */
    bool reset;                 /* the stream was reset (RST_STREAM) */
    uint32_t reset_code;        /* its HTTP/2 error code */
    size_t messages;            /* complete response messages received */
    bool truncated;             /* the stream ended inside a message */
} cl_resp;

/* The status of a finished stream. want_one_message: unary and
 * client-streaming calls need exactly one response message with OK. */
void cl_resp_status(const cl_resp *r, bool want_one_message, cl_status *st);

/* HTTP :status -> gRPC code when no grpc-status came (400 INTERNAL,
 * 401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 404 UNIMPLEMENTED,
 * 429/502/503/504 UNAVAILABLE, anything else UNKNOWN). */
enum gw_status cl_http_to_grpc(int http_status);
/* RST_STREAM error code -> gRPC code (REFUSED_STREAM UNAVAILABLE, CANCEL
 * CANCELLED, ENHANCE_YOUR_CALM RESOURCE_EXHAUSTED, INADEQUATE_SECURITY
 * PERMISSION_DENIED, the rest INTERNAL). */
enum gw_status cl_h2_error_to_grpc(uint32_t h2_error);

/* grpc-status value: 1..3 ASCII digits, nothing else. */
TSR_WUR int cl_grpc_status_parse(const char *v, size_t len, int *code);

/* grpc-timeout for a deadline of ms (> 0): at most 8 digits and a unit,
 * never shorter than asked ("100m", "100000S"). out holds 16 bytes. */
TSR_WUR int cl_grpc_timeout_format(int64_t ms, char out[16]);

/* Percent-decode a grpc-message into out (NUL-terminated), replacing
 * control characters (and decoded NULs) with '?'. */
void cl_message_decode(const char *v, size_t len, char *out, size_t cap);

/* Fill a status; printf-style message. */
void cl_status_set(cl_status *st, enum gw_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
