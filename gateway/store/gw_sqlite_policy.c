/* The sqlite store: policies, their status reports and drafts. */
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "gw_secretbox.h"
#include "gw_sqlite_internal.h"

/* ---- policies ------------------------------------------------------------------------- */

static int row_policy(void *ctx, gw_row *st, void *elem)
{
    (void)ctx;
    return gw_sql_col_text_dup(st, 0, elem, "policy");
}

static int policy_read(gw_sqlite *s, const char *sandbox_id, int64_t version, char **yaml)
{
    struct query q;
    if (yaml != NULL) *yaml = NULL;
    TSR_GUARD(gw_q_open(s, ST_POLICY_GET, "read policy", &q));
    gw_q_text(&q, sandbox_id);
    gw_q_i64(&q, version);
    int r = gw_q_row(&q, yaml != NULL ? row_policy : NULL, NULL, yaml);
    if (r < 0) return -1;
    TSR_ENSURE(r == 1, TSR_E_NOTFOUND, "sandbox %s has no policy version %lld", sandbox_id,
               (long long)version);
    return 0;
}

int gw_sqlite_policy_get(gw_store *base, const char *sandbox_id, char **yaml, int64_t *version)
{
    gw_sqlite *s = gw_sqlite_of(base);
    int rc = -1;
    struct gw_sql_sb_meta m;
    char *text = NULL;
    *yaml = NULL;
    *version = 0;
    TSR_TRY(gw_sql_check_sandbox_id(sandbox_id));
    TSR_TRY(gw_sql_tx_begin(s, 0));
    TSR_TRY(gw_sql_sb_meta(s, sandbox_id, &m));
    TSR_TRY_ENSURE(m.policy_version > 0, TSR_E_NOTFOUND, "sandbox %s has no policy",
                   sandbox_id);
    TSR_TRY(policy_read(s, sandbox_id, m.policy_version, &text));
    TSR_TRY(gw_sql_tx_commit(s));
    *yaml = text;
    *version = m.policy_version;
    text = NULL;
    rc = 0;
out:
    free(text);
    if (rc != 0) gw_sql_tx_abort(s);
    return rc;
}

int gw_sqlite_policy_set(gw_store *base, const char *sandbox_id, const char *yaml, int64_t now,
                         int64_t *new_version)
{
    gw_sqlite *s = gw_sqlite_of(base);
    int rc = -1;
    struct gw_sql_sb_meta m;
    TSR_TRY(gw_sql_check_sandbox_id(sandbox_id));
    TSR_TRY_ENSURE(yaml != NULL, TSR_E_INPUT, "policy is missing");
    TSR_TRY(gw_sql_tx_begin(s, 1));
    TSR_TRY(gw_sql_sb_meta_live(s, sandbox_id, &m));
    TSR_TRY_ENSURE(m.policy_version < INT64_MAX, TSR_E_LIMIT, "policy version overflow");
    TSR_TRY(gw_sql_policy_insert_row(s, sandbox_id, m.policy_version + 1, yaml, now));
    TSR_TRY(gw_sql_tx_commit(s));
    if (new_version != NULL) *new_version = m.policy_version + 1;
    rc = 0;
out:
    if (rc != 0) gw_sql_tx_abort(s);
    return rc;
}

int gw_sqlite_policy_status_add(gw_store *base, const char *sandbox_id, int64_t version, int status,
                                const char *message, int64_t now)
{
    gw_sqlite *s = gw_sqlite_of(base);
    int rc = -1;
    struct gw_sql_sb_meta m;
    struct query q;
    if (message == NULL) message = "";
    TSR_TRY(gw_sql_check_sandbox_id(sandbox_id));
    TSR_TRY(gw_sql_tx_begin(s, 1));
    TSR_TRY(gw_sql_sb_meta(s, sandbox_id, &m));
    TSR_TRY(policy_read(s, sandbox_id, version, NULL));
    TSR_TRY(gw_q_open(s, ST_PSTATUS_INSERT, "insert policy status", &q));
    gw_q_text(&q, sandbox_id);
    gw_q_i64(&q, version);
    gw_q_i64(&q, status);
    gw_q_text(&q, message);
    gw_q_i64(&q, now);
    TSR_TRY(gw_q_exec(&q));
    TSR_TRY(gw_sql_tx_commit(s));
    rc = 0;
out:
    if (rc != 0) gw_sql_tx_abort(s);
    return rc;
}

struct pstatus {
    int status;
    char *message;
    int64_t reported_at;
};

static int row_pstatus(void *ctx, gw_row *st, void *elem)
{
    (void)ctx;
    struct pstatus *p = elem;
    p->status = (int)gw_col_i64(st, 0);
    p->reported_at = gw_col_i64(st, 2);
    return gw_sql_col_text_dup(st, 1, &p->message, "policy status message");
}

int gw_sqlite_policy_status_latest(gw_store *base, const char *sandbox_id, int64_t version,
                                   int *status, char **message, int64_t *reported_at)
{
    gw_sqlite *s = gw_sqlite_of(base);
    struct query q;
    struct pstatus p = {0};
    if (message != NULL) *message = NULL;
    TSR_GUARD(gw_sql_check_sandbox_id(sandbox_id));
    TSR_GUARD(gw_q_open(s, ST_PSTATUS_LATEST, "read policy status", &q));
    gw_q_text(&q, sandbox_id);
    gw_q_i64(&q, version);
    int r = gw_q_row(&q, row_pstatus, NULL, &p);
    if (r != 1) free(p.message);
    if (r < 0) return -1;
    TSR_ENSURE(r == 1, TSR_E_NOTFOUND, "no status reported for policy %lld of sandbox %s",
               (long long)version, sandbox_id);
    if (status != NULL) *status = p.status;
    if (reported_at != NULL) *reported_at = p.reported_at;
    if (message != NULL)
        *message = p.message;
    else
        free(p.message);
    return 0;
}

int gw_sqlite_draft_add(gw_store *base, const char *sandbox_id, const gw_policy_chunk *chunks,
                        size_t n, int64_t now)
{
    gw_sqlite *s = gw_sqlite_of(base);
    int rc = -1;
    struct gw_sql_sb_meta m;
    TSR_TRY(gw_sql_check_sandbox_id(sandbox_id));
    TSR_TRY_ENSURE(n == 0 || chunks != NULL, TSR_E_INPUT, "chunks are missing");
    for (size_t i = 0; i < n; i++)
        TSR_TRY_ENSURE(chunks[i].domain != NULL && chunks[i].content != NULL, TSR_E_INPUT,
                       "draft chunk %zu is incomplete", i);
    TSR_TRY(gw_sql_tx_begin(s, 1));
    TSR_TRY(gw_sql_sb_meta(s, sandbox_id, &m));
    int64_t seq = m.draft_seq;
    for (size_t i = 0; i < n; i++) {
        struct query q;
        TSR_TRY(gw_q_open(s, ST_DRAFT_INSERT, "insert draft chunk", &q));
        gw_q_text(&q, sandbox_id);
        gw_q_i64(&q, ++seq);
        gw_q_text(&q, chunks[i].domain);
        gw_q_text(&q, chunks[i].content);
        gw_q_i64(&q, now);
        TSR_TRY(gw_q_exec(&q));
    }
    if (n > 0)
        TSR_TRY(gw_sql_set_counter(s, ST_SB_SET_DRAFT_SEQ, sandbox_id, seq, "update draft seq"));
    TSR_TRY(gw_sql_tx_commit(s));
    rc = 0;
out:
    if (rc != 0) gw_sql_tx_abort(s);
    return rc;
}

static int row_chunk(void *ctx, gw_row *st, void *elem)
{
    (void)ctx;
    gw_policy_chunk *c = elem;
    TSR_GUARD(gw_sql_col_text_dup(st, 0, &c->domain, "draft domain"));
    return gw_sql_col_text_dup(st, 1, &c->content, "draft content");
}

int gw_sqlite_draft_get(gw_store *base, const char *sandbox_id, gw_policy_chunk **out, size_t *n)
{
    gw_sqlite *s = gw_sqlite_of(base);
    gw_policy_chunk *v = NULL;
    size_t cnt = 0;
    struct query q;
    *out = NULL;
    *n = 0;
    TSR_GUARD(gw_sql_check_sandbox_id(sandbox_id));
    TSR_GUARD(gw_q_open(s, ST_DRAFT_GET, "read draft", &q));
    gw_q_text(&q, sandbox_id);
    if (gw_sql_list_of_sandbox(s, sandbox_id, &q, row_chunk, NULL, &v, &cnt, sizeof *v) != 0) {
        gw_store_free_chunks(v, cnt);
        return -1;
    }
    *out = v;
    *n = cnt;
    return 0;
}

/* The seq of every row read, in order (at most limit + 1 of them). */
struct draft_page {
    int64_t *seqs;
    size_t seen, cap;
};

static int row_chunk_page(void *ctx, gw_row *st, void *elem)
{
    struct draft_page *p = ctx;
    TSR_ENSURE(p->seen < p->cap, TSR_E_INTERNAL, "draft page: more rows than its limit");
    p->seqs[p->seen++] = gw_col_i64(st, 2);
    return row_chunk(NULL, st, elem);
}

/* Bytes of one chunk inside a message: two string fields and the chunk's
 * own tag and length, each length prefix at most 5 bytes. */
#define CHUNK_OVERHEAD 18

int gw_sqlite_draft_page(gw_store *base, const char *sandbox_id, int64_t after_seq, int limit,
                         size_t max_bytes, gw_policy_chunk **out, size_t *n, int64_t *next_seq)
{
    gw_sqlite *s = gw_sqlite_of(base);
    gw_policy_chunk *v = NULL;
    size_t cnt = 0;
    int64_t lim = 0;
    struct query q;
    *out = NULL;
    *n = 0;
    *next_seq = 0;
    TSR_GUARD(gw_sql_check_sandbox_id(sandbox_id));
    TSR_GUARD(gw_sql_clamp_limit(limit, &lim));
    TSR_ENSURE(after_seq >= 0, TSR_E_INPUT, "page cursor is negative");
    struct draft_page page = {calloc((size_t)lim + 1, sizeof(int64_t)), 0, (size_t)lim + 1};
    TSR_ENSURE(page.seqs != NULL, TSR_E_INTERNAL, "out of memory");
    if (gw_q_open(s, ST_DRAFT_PAGE, "read draft", &q) != 0) {
        free(page.seqs);
        return -1;
    }
    gw_q_text(&q, sandbox_id);
    gw_q_i64(&q, after_seq);
    gw_q_i64(&q, lim + 1); /* one more row tells whether another page follows */
    if (gw_sql_list_of_sandbox(s, sandbox_id, &q, row_chunk_page, &page, &v, &cnt,
                               sizeof *v) != 0) {
        gw_store_free_chunks(v, cnt);
        free(page.seqs);
        return -1;
    }
    /* Keep at most lim rows, and with max_bytes only those that fit (always
     * the first, so a caller following the tokens makes progress). */
    size_t keep = 0, bytes = 0;
    while (keep < cnt && keep < (size_t)lim) {
        size_t b = strlen(v[keep].domain) + strlen(v[keep].content) + CHUNK_OVERHEAD;
        if (max_bytes > 0 && keep > 0 && bytes + b > max_bytes) break;
        bytes += b;
        keep++;
    }
    if (keep < cnt) *next_seq = page.seqs[keep - 1];
    for (size_t i = keep; i < cnt; i++) {
        free(v[i].domain);
        free(v[i].content);
    }
    free(page.seqs);
    *out = keep > 0 ? v : NULL;
    if (keep == 0) free(v);
    *n = keep;
    return 0;
}
