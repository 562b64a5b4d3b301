/* The sqlite store: sandbox logs, exactly once per batch. */
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "gw_secretbox.h"
#include "gw_sqlite_internal.h"

/* ---- logs --------------------------------------------------------------------------- */

struct log_batch_mark {
    char session[GW_LOG_SESSION_MAX + 1];
    int64_t batch;
};

static int row_log_batch(void *ctx, gw_row *st, void *elem)
{
    (void)ctx;
    struct log_batch_mark *m = elem;
    TSR_GUARD(gw_sql_col_text(st, 0, m->session, sizeof m->session, "log session"));
    m->batch = gw_col_i64(st, 1);
    return 0;
}

static int check_log_session(const char *session, int64_t batch_seq)
{
    size_t len = session != NULL ? strnlen(session, GW_LOG_SESSION_MAX + 1) : 0;
    if (len == 0) {
        TSR_ENSURE(batch_seq == 0, TSR_E_INPUT, "a log batch number needs a session");
        return 0;
    }
    TSR_ENSURE(len <= GW_LOG_SESSION_MAX, TSR_E_INPUT, "log session longer than %d",
               GW_LOG_SESSION_MAX);
    for (size_t i = 0; i < len; i++)
        TSR_ENSURE((session[i] >= '0' && session[i] <= '9') || (session[i] >= 'a' && session[i] <= 'f'),
                   TSR_E_INPUT, "log session must be lowercase hex");
    TSR_ENSURE(batch_seq > 0, TSR_E_INPUT, "a log session needs a batch number above 0");
    return 0;
}

int gw_sqlite_logs_append_batch(gw_store *base, const char *sandbox_id, const char *session,
                                int64_t batch_seq, const gw_log_line *lines, size_t n,
                                int64_t dropped, int64_t now, int *duplicate)
{
    gw_sqlite *s = gw_sqlite_of(base);
    int rc = -1;
    struct gw_sql_sb_meta m;
    struct log_batch_mark mark;
    int dup = 0;
    TSR_TRY(gw_sql_check_sandbox_id(sandbox_id));
    TSR_TRY(check_log_session(session, batch_seq));
    TSR_TRY_ENSURE(n == 0 || lines != NULL, TSR_E_INPUT, "log lines are missing");
    TSR_TRY_ENSURE(dropped >= 0, TSR_E_INPUT, "dropped count is negative");
    for (size_t i = 0; i < n; i++)
        TSR_TRY_ENSURE(lines[i].text != NULL, TSR_E_INPUT, "log line %zu has no text", i);
    TSR_TRY(gw_sql_tx_begin(s, 1));
    TSR_TRY(gw_sql_sb_meta(s, sandbox_id, &m));
    if (batch_seq > 0) {
        struct query bq;
        memset(&mark, 0, sizeof mark);
        TSR_TRY(gw_q_open(s, ST_SB_LOG_BATCH, "read log batch mark", &bq));
        gw_q_text(&bq, sandbox_id);
        int r = gw_q_row(&bq, row_log_batch, NULL, &mark);
        if (r < 0) goto out; /* recorded */
        TSR_TRY_ENSURE(r == 1, TSR_E_NOTFOUND, "sandbox %s not found", sandbox_id);
        if (strcmp(mark.session, session) == 0 && batch_seq <= mark.batch) {
            dup = 1; /* stored already: acknowledge, write nothing */
            TSR_TRY(gw_sql_tx_commit(s));
            rc = 0;
            goto out;
        }
    }
    int64_t seq = m.log_seq;
    for (size_t i = 0; i < n; i++) {
        struct query q;
        TSR_TRY_ENSURE(seq < INT64_MAX, TSR_E_LIMIT, "log sequence overflow");
        TSR_TRY(gw_q_open(s, ST_LOG_INSERT, "insert log line", &q));
        gw_q_text(&q, sandbox_id);
        gw_q_i64(&q, ++seq);
        gw_q_i64(&q, lines[i].timestamp_ms);
        gw_q_text(&q, lines[i].stream != NULL ? lines[i].stream : "");
        gw_q_text(&q, lines[i].text);
        gw_q_i64(&q, now);
        TSR_TRY(gw_q_exec(&q));
    }
    if (n > 0) TSR_TRY(gw_sql_set_counter(s, ST_SB_SET_LOG_SEQ, sandbox_id, seq, "update log seq"));
    if (dropped > 0) {
        struct query q;
        TSR_TRY(gw_q_open(s, ST_DROP_INSERT, "record dropped log lines", &q));
        gw_q_text(&q, sandbox_id);
        gw_q_i64(&q, dropped);
        gw_q_i64(&q, now);
        TSR_TRY(gw_q_exec(&q));
    }
    if (batch_seq > 0) {
        struct query q;
        TSR_TRY(gw_q_open(s, ST_SB_SET_LOG_BATCH, "record log batch mark", &q));
        gw_q_text(&q, sandbox_id);
        gw_q_text(&q, session);
        gw_q_i64(&q, batch_seq);
        TSR_TRY(gw_q_exec(&q));
    }
    TSR_TRY(gw_sql_tx_commit(s));
    rc = 0;
out:
    if (rc != 0) gw_sql_tx_abort(s);
    else if (duplicate != NULL) *duplicate = dup;
    return rc;
}

int gw_sqlite_logs_append(gw_store *base, const char *sandbox_id, const gw_log_line *lines,
                          size_t n, int64_t dropped, int64_t now)
{
    gw_sqlite *s = gw_sqlite_of(base);
    return gw_sqlite_logs_append_batch(&s->base, sandbox_id, NULL, 0, lines, n, dropped, now, NULL);
}

static int row_log(void *ctx, gw_row *st, void *elem)
{
    (void)ctx;
    gw_log_line *l = elem;
    l->seq = gw_col_i64(st, 0);
    l->timestamp_ms = gw_col_i64(st, 1);
    TSR_GUARD(gw_sql_col_text_dup(st, 2, &l->stream, "log stream"));
    return gw_sql_col_text_dup(st, 3, &l->text, "log text");
}

int gw_sqlite_logs_get(gw_store *base, const char *sandbox_id, int64_t after_seq, int limit,
                       gw_log_line **out, size_t *n)
{
    gw_sqlite *s = gw_sqlite_of(base);
    int rc = -1;
    int64_t lim = 0;
    struct gw_sql_sb_meta m;
    gw_log_line *v = NULL;
    size_t cnt = 0;
    struct query q;
    *out = NULL;
    *n = 0;
    TSR_TRY(gw_sql_check_sandbox_id(sandbox_id));
    TSR_TRY(gw_sql_clamp_limit(limit, &lim));
    TSR_TRY(gw_sql_tx_begin(s, 0));
    TSR_TRY(gw_sql_sb_meta(s, sandbox_id, &m));
    TSR_TRY(gw_q_open(s, ST_LOG_GET, "read logs", &q));
    gw_q_text(&q, sandbox_id);
    gw_q_i64(&q, after_seq);
    gw_q_i64(&q, lim);
    TSR_TRY(gw_q_each(&q, row_log, NULL, &v, &cnt, sizeof *v));
    TSR_TRY(gw_sql_tx_commit(s));
    *out = v;
    *n = cnt;
    v = NULL;
    rc = 0;
out:
    gw_store_free_logs(v, cnt);
    if (rc != 0) gw_sql_tx_abort(s);
    return rc;
}

int gw_sqlite_logs_dropped(gw_store *base, const char *sandbox_id, int64_t *total)
{
    gw_sqlite *s = gw_sqlite_of(base);
    int rc = -1;
    struct gw_sql_sb_meta m;
    struct query q;
    int64_t sum = 0;
    *total = 0;
    TSR_TRY(gw_sql_check_sandbox_id(sandbox_id));
    TSR_TRY(gw_sql_tx_begin(s, 0));
    TSR_TRY(gw_sql_sb_meta(s, sandbox_id, &m));
    TSR_TRY(gw_q_open(s, ST_DROP_SUM, "sum dropped log lines", &q));
    gw_q_text(&q, sandbox_id);
    int r = gw_q_row(&q, gw_sql_row_i64, NULL, &sum);
    if (r < 0) goto out; /* recorded by gw_q_row() */
    TSR_TRY_ENSURE(r == 1, TSR_E_INTERNAL, "database: SUM returned no row");
    TSR_TRY(gw_sql_tx_commit(s));
    *total = sum;
    rc = 0;
out:
    if (rc != 0) gw_sql_tx_abort(s);
    return rc;
}
