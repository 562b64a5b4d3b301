/* Sandbox logs as the service layer (no protobuf): one PushSandboxLogs
 * batch, checked whole and stored exactly once. The RPC layer
 * (gateway/rpc/gw_rpc_logs.c) pins the stream to the sandbox its first
 * batch names, through the guard's target check, before this runs. */
#ifndef GW_SVC_LOGS_H
#define GW_SVC_LOGS_H

#include <stddef.h>
#include <stdint.h>

#include "gw_app.h"
#include "gw_rpc.h"

typedef struct gw_svc_log_line {
    int64_t timestamp_ms;
    const char *stream;        /* "", "stdout", "stderr" or "supervisor" */
    const uint8_t *text;       /* not NUL-terminated; NULL when text_len is 0 */
    size_t text_len;
} gw_svc_log_line;

typedef struct gw_svc_log_batch {
    const char *sandbox_id;    /* the stream's pinned sandbox, authorized */
    const char *session;       /* exactly-once key (gw_store_logs_append_batch) */
    int64_t batch_seq;
    const gw_svc_log_line *lines;
    size_t n_lines;
    int64_t dropped;
} gw_svc_log_batch;

/* RESOURCE_EXHAUSTED for a batch over log_lines_per_batch or a line over
 * log_line_bytes, INVALID_ARGUMENT for negative dropped_lines, a NUL byte
 * or an unknown stream (each naming the line); nothing of a refused batch is
 * stored. A batch stored before (its acknowledgement lost) is acknowledged
 * again without a second copy. */
TSR_WUR int gw_svc_logs_push(const gw_call_ctx *ctx, const gw_svc_log_batch *b,
                             gw_response *resp);

#endif
