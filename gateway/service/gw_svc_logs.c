/* Sandbox logs without protobuf (gw_svc_logs.h). */
#include "gw_svc_logs.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gw_config.h"
#include "gw_store.h"
#include "tsr_time.h"

static int valid_stream_name(const char *s)
{
    return s[0] == '\0' || strcmp(s, "stdout") == 0 || strcmp(s, "stderr") == 0 ||
           strcmp(s, "supervisor") == 0;
}

int gw_svc_logs_push(const gw_call_ctx *ctx, const gw_svc_log_batch *req, gw_response *resp)
{
    const gw_app *app = gw_app_of(ctx);
    int rc = -1;
    gw_log_line *lines = NULL;
    if (req->n_lines > app->cfg->log_lines_per_batch) {
        gw_response_fail(resp, GW_STATUS_RESOURCE_EXHAUSTED, "batch of %zu lines exceeds %u",
                         req->n_lines, app->cfg->log_lines_per_batch);
        goto out;
    }
    if (req->dropped < 0) {
        gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT, "dropped_lines must not be negative");
        goto out;
    }
    lines = calloc(req->n_lines + 1, sizeof *lines);
    if (lines == NULL) {
        gw_response_fail(resp, GW_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    /* Check the whole batch before storing any of it. */
    for (size_t i = 0; i < req->n_lines; i++) {
        const gw_svc_log_line *l = &req->lines[i];
        if (l->text_len > app->cfg->log_line_bytes) {
            gw_response_fail(resp, GW_STATUS_RESOURCE_EXHAUSTED, "line %zu of %zu bytes exceeds %u",
                             i, l->text_len, app->cfg->log_line_bytes);
            goto out;
        }
        /* An empty bytes field has data == NULL: memchr(NULL, ...) is undefined. */
        if (l->text_len > 0 && memchr(l->text, '\0', l->text_len) != NULL) {
            gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT, "line %zu contains a NUL byte", i);
            goto out;
        }
        if (!valid_stream_name(l->stream)) {
            gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT,
                             "line %zu: stream must be stdout, stderr or supervisor", i);
            goto out;
        }
        lines[i].timestamp_ms = l->timestamp_ms;
        static char default_stream[] = "stdout";
        lines[i].stream = l->stream[0] ? (char *)(uintptr_t)l->stream : default_stream;
        /* The text is not NUL-terminated: copy it with its length. */
        lines[i].text = malloc(l->text_len + 1);
        if (lines[i].text != NULL) {
            if (l->text_len > 0) memcpy(lines[i].text, l->text, l->text_len);
            lines[i].text[l->text_len] = '\0';
        }
        if (lines[i].text == NULL) {
            gw_response_fail(resp, GW_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            goto out;
        }
    }
    int duplicate = 0;
    if (gw_store_logs_append_batch(gw_worker_of(ctx)->store, req->sandbox_id, req->session,
                                   req->batch_seq, lines, req->n_lines, req->dropped,
                                   tsr_now_unix(), &duplicate) != 0) {
        gw_fail_from_error(resp);
        goto out;
    }
    (void)duplicate; /* stored before: acknowledged all the same */
    rc = 0;
out:
    if (lines != NULL)
        for (size_t i = 0; i < req->n_lines; i++) free(lines[i].text);
    free(lines);
    return rc;
}
