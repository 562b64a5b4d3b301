/* Logs: PushSandboxLogs (client stream from a supervisor) and GetSandboxLogs. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_audit.h"
#include "gw_config.h"
#include "gw_handler.h"
#include "gw_rpcs.h"
#include "gw_svc_logs.h"
#include "tsr_time.h"

#define LOGS_DEFAULT_LIMIT 1000
#define LOGS_MAX_LIMIT 10000

/* One PushSandboxLogs stream. The dispatcher admits the caller before
 * open and again before every batch and the finish (gw_authz_dispatch). */
struct push_state {
    char pinned[CA_UUID_LEN + 1]; /* the first batch's sandbox id */
    int64_t accepted;
};

static void *push_open(const gw_call_ctx *ctx)
{
    (void)ctx;
    return calloc(1, sizeof(struct push_state));
}

static int push_message(void *state, const gw_call_ctx *ctx, const uint8_t *msg, size_t len,
                        gw_response *resp)
{
    struct push_state *st = state;
    if (st == NULL) return gw_response_fail(resp, GW_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    int rc = -1;
    gw_svc_log_line *lines = NULL;
    Tessera__V1__PushSandboxLogsRequest *req =
        gw_unpack(&tessera__v1__push_sandbox_logs_request__descriptor, msg, len, resp);
    if (req == NULL) return -1;

    if (st->pinned[0] == '\0') {
        /* The first batch pins the stream: it must name the caller itself. */
        if (gw_authz_target(ctx, GW_RPC_PUSH_SANDBOX_LOGS, req->sandbox_id, resp) != 0) goto out;
        snprintf(st->pinned, sizeof st->pinned, "%s", req->sandbox_id);
    } else if (strcmp(req->sandbox_id, st->pinned) != 0) {
        /* Nothing from this batch is stored; the stream ends here. */
        gw_audit_denial(ctx, GW_DENY_CROSS_SANDBOX, req->sandbox_id,
                        "log stream switched sandbox");
        gw_response_fail(resp, GW_STATUS_PERMISSION_DENIED, GW_CROSS_SANDBOX_MESSAGE);
        goto out;
    }
    lines = calloc(req->n_lines + 1, sizeof *lines);
    if (lines == NULL) {
        gw_response_fail(resp, GW_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < req->n_lines; i++) {
        const Tessera__V1__LogLine *l = req->lines[i];
        lines[i] = (gw_svc_log_line){.timestamp_ms = l->timestamp_ms, .stream = l->stream,
                                     .text = l->text.data, .text_len = l->text.len};
    }
    gw_svc_log_batch batch = {
        .sandbox_id = st->pinned, .session = req->session, .batch_seq = req->batch_seq,
        .lines = lines, .n_lines = req->n_lines, .dropped = req->dropped_lines,
    };
    if (gw_svc_logs_push(ctx, &batch, resp) != 0) goto out;
    st->accepted += (int64_t)req->n_lines;
    rc = 0;
out:
    free(lines);
    gw_free_unpacked(req);
    return rc;
}

static void push_finish(void *state, const gw_call_ctx *ctx, gw_response *resp)
{
    (void)ctx;
    struct push_state *st = state;
    if (st == NULL) {
        gw_response_fail(resp, GW_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    Tessera__V1__PushSandboxLogsResponse out_msg;
    tessera__v1__push_sandbox_logs_response__init(&out_msg);
    out_msg.accepted_lines = st->accepted;
    gw_reply(resp, &out_msg);
}

static void push_close(void *state)
{
    free(state);
}

static const gw_client_stream_ops push_ops = {push_open, push_message, push_finish, push_close};

/* Bytes of one LogLine inside a GetSandboxLogsResponse: field tag, length
 * prefix, the message. */
static size_t line_wire_size(const Tessera__V1__LogLine *l)
{
    size_t n = protobuf_c_message_get_packed_size(&l->base);
    size_t prefix = 1;
    for (size_t v = n; v >= 0x80; v >>= 7) prefix++;
    return 1 + prefix + n;
}

static void log_line_view(gw_log_line *row, Tessera__V1__LogLine *out)
{
    tessera__v1__log_line__init(out);
    out->seq = row->seq;
    out->timestamp_ms = row->timestamp_ms;
    out->stream = row->stream;
    out->text.data = (uint8_t *)row->text;
    out->text.len = strlen(row->text);
}

/* The answer never exceeds max_message_bytes (a stock gRPC client refuses
 * larger messages, and the transport holds every unsent answer in memory):
 * lines are read in chunks of about that size and the answer stops before
 * the first line that would not fit. It always holds at least one line when
 * there is one, so a caller paging with since = last seq makes progress.
 * Fewer lines than `limit` therefore does not mean there are no more. */
static int read_logs_bounded(const gw_call_ctx *ctx, const char *sandbox_id, int64_t since,
                             int limit, gw_log_line **out, size_t *n_out)
{
    const gw_config *cfg = gw_app_of(ctx)->cfg;
    gw_store *store = gw_worker_of(ctx)->store;
    size_t budget = cfg->max_message_bytes > 64 ? cfg->max_message_bytes - 64 : 1;
    size_t per_fetch = cfg->max_message_bytes / ((size_t)cfg->log_line_bytes + 64);
    if (per_fetch < 1) per_fetch = 1;
    if (per_fetch > LOGS_MAX_LIMIT) per_fetch = LOGS_MAX_LIMIT;
    gw_log_line *rows = NULL;
    size_t n = 0, total = 0;
    int64_t after = since;
    bool full = false;
    *out = NULL;
    *n_out = 0;
    while (n < (size_t)limit && !full) {
        size_t want = (size_t)limit - n < per_fetch ? (size_t)limit - n : per_fetch;
        gw_log_line *chunk = NULL;
        size_t got = 0, i = 0;
        if (gw_store_logs_get(store, sandbox_id, after, (int)want, &chunk, &got) != 0) {
            gw_store_free_logs(rows, n);
            return -1;
        }
        gw_log_line *grown = got > 0 ? realloc(rows, (n + got) * sizeof *rows) : rows;
        if (got > 0 && grown == NULL) {
            gw_store_free_logs(chunk, got);
            gw_store_free_logs(rows, n);
            return TSR_FAIL(TSR_E_LIMIT, "out of memory");
        }
        rows = grown;
        for (; i < got; i++) {
            Tessera__V1__LogLine view;
            log_line_view(&chunk[i], &view);
            size_t size = line_wire_size(&view);
            if (n > 0 && total + size > budget) {
                full = true;
                break;
            }
            rows[n++] = chunk[i];          /* moves stream and text */
            total += size;
            after = chunk[i].seq;
        }
        for (size_t j = i; j < got; j++) {
            free(chunk[j].stream);
            free(chunk[j].text);
        }
        free(chunk);
        if (got < want) break;             /* no more lines */
    }
    *out = rows;
    *n_out = n;
    return 0;
}

static void get_sandbox_logs(const gw_call_ctx *ctx, const uint8_t *msg, size_t len,
                             gw_response *resp)
{
    Tessera__V1__GetSandboxLogsRequest *req =
        gw_unpack(&tessera__v1__get_sandbox_logs_request__descriptor, msg, len, resp);
    if (req == NULL) return;
    gw_log_line *rows = NULL;
    size_t n = 0;
    Tessera__V1__LogLine **items = NULL;
    gw_sandbox_rec sb;
    if (gw_resolve_sandbox_id(ctx, GW_RPC_GET_SANDBOX_LOGS, req->sandbox_id, 1, &sb, resp) != 0)
        goto out;
    int limit = req->limit == 0 ? LOGS_DEFAULT_LIMIT : req->limit;
    if (limit < 0 || limit > LOGS_MAX_LIMIT || req->since < 0) {
        gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT,
                         "limit must be 0..%d and since not negative", LOGS_MAX_LIMIT);
        goto out;
    }
    if (read_logs_bounded(ctx, sb.id, req->since, limit, &rows, &n) != 0) {
        gw_fail_from_error(resp);
        goto out;
    }
    items = gw_repeated_new(&tessera__v1__log_line__descriptor, n, resp);
    if (items == NULL) goto out;
    for (size_t i = 0; i < n; i++) log_line_view(&rows[i], items[i]);
    Tessera__V1__GetSandboxLogsResponse out_msg;
    tessera__v1__get_sandbox_logs_response__init(&out_msg);
    out_msg.n_lines = n;
    out_msg.lines = items;
    gw_reply(resp, &out_msg);
out:
    free(items);
    gw_store_free_logs(rows, n);
    gw_free_unpacked(req);
}

const gw_method gw_rpc_push_sandbox_logs = {
    .path = "/tessera.v1.Gateway/PushSandboxLogs",
    .rule = GW_RPC_PUSH_SANDBOX_LOGS,
    .client_stream = &push_ops,
};
const gw_method gw_rpc_get_sandbox_logs = {
    .path = "/tessera.v1.Gateway/GetSandboxLogs",
    .rule = GW_RPC_GET_SANDBOX_LOGS,
    .unary = get_sandbox_logs,
};
