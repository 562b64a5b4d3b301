/* The sqlite store: certificates, their lineage and revocation. */
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "gw_secretbox.h"
#include "gw_sqlite_internal.h"

/* ---- certificates --------------------------------------------------------------------- */

int gw_sqlite_cert_insert(gw_store *base, const gw_cert_rec *c)
{
    gw_sqlite *s = gw_sqlite_of(base);
    int rc = -1;
    struct gw_sql_sb_meta m;
    TSR_TRY(gw_sql_check_cert(c));
    TSR_TRY(gw_sql_tx_begin(s, 1));
    /* Same transaction as the insert: a concurrent DeleteSandbox either
     * revokes this cert too or makes this insert fail. */
    if (c->sandbox_id[0] != '\0') TSR_TRY(gw_sql_sb_meta_live(s, c->sandbox_id, &m));
    TSR_TRY(gw_sql_cert_insert_row(s, c));
    TSR_TRY(gw_sql_tx_commit(s));
    rc = 0;
out:
    if (rc != 0) gw_sql_tx_abort(s);
    return rc;
}

/* Group commit: one transaction (one fsync) for n records. A record refused
 * on its own (bad input, sandbox missing or deleted, serial taken) only
 * fails itself: its statement is undone, the others go on. Any other failure
 * (I/O, busy, the commit) fails the whole batch and nothing is written. */
int gw_sqlite_cert_insert_batch(gw_store *base, const gw_cert_rec *const *certs, size_t n,
                                enum tsr_errcat *results)
{
    gw_sqlite *s = gw_sqlite_of(base);
    int rc = -1;
    struct gw_sql_sb_meta m;
    TSR_TRY_ENSURE(n > 0 && certs != NULL && results != NULL, TSR_E_INPUT, "empty batch");
    for (size_t i = 0; i < n; i++) results[i] = TSR_E_NONE;
    TSR_TRY(gw_sql_tx_begin(s, 1));
    for (size_t i = 0; i < n; i++) {
        const gw_cert_rec *c = certs[i];
        TSR_TRY(gw_sql_savepoint(s));
        if (gw_sql_check_cert(c) == 0 &&
            (c->sandbox_id[0] == '\0' || gw_sql_sb_meta_live(s, c->sandbox_id, &m) == 0) &&
            gw_sql_cert_insert_row(s, c) == 0) {
            TSR_TRY(gw_sql_savepoint_release(s));
            continue;
        }
        enum tsr_errcat cat = tsr_errcat();
        if (cat != TSR_E_INPUT && cat != TSR_E_NOTFOUND && cat != TSR_E_STATE &&
            cat != TSR_E_EXISTS && cat != TSR_E_UNAUTH)
            goto out;
        /* Undo this record alone (PostgreSQL would end the transaction). */
        if (gw_sql_savepoint_undo(s) != 0 && tsr_errcat() != cat) goto out;
        results[i] = cat;
    }
    TSR_TRY(gw_sql_tx_commit(s));
    rc = 0;
out:
    if (rc != 0) gw_sql_tx_abort(s);
    return rc;
}

static int cert_read_one(gw_sqlite *s, const char *serial, gw_cert_rec *out)
{
    struct query q;
    TSR_GUARD(gw_q_open(s, ST_CERT_GET, "read certificate", &q));
    gw_q_text(&q, serial);
    int r = gw_q_row(&q, gw_sql_row_cert, NULL, out);
    if (r < 0) return -1;
    TSR_ENSURE(r == 1, TSR_E_NOTFOUND, "certificate %s not found", serial);
    return 0;
}

int gw_sqlite_cert_get(gw_store *base, const char *serial, gw_cert_rec *out)
{
    gw_sqlite *s = gw_sqlite_of(base);
    TSR_GUARD(gw_sql_check_str(serial, sizeof out->serial, 0, "certificate serial"));
    return cert_read_one(s, serial, out);
}

int gw_sqlite_cert_list(gw_store *base, const char *sandbox_id, gw_cert_rec **out, size_t *n)
{
    gw_sqlite *s = gw_sqlite_of(base);
    gw_cert_rec *v = NULL;
    size_t cnt = 0;
    struct query q;
    *out = NULL;
    *n = 0;
    if (sandbox_id != NULL) TSR_GUARD(gw_sql_check_sandbox_id(sandbox_id));
    TSR_GUARD(gw_q_open(s, sandbox_id != NULL ? ST_CERT_LIST_SB : ST_CERT_LIST_ALL,
                     "list certificates", &q));
    if (sandbox_id != NULL) gw_q_text(&q, sandbox_id);
    if (gw_sql_list_of_sandbox(s, sandbox_id, &q, gw_sql_row_cert, NULL, &v, &cnt,
                               sizeof *v) != 0) {
        gw_store_free_certs(v, cnt);
        return -1;
    }
    *out = v;
    *n = cnt;
    return 0;
}

int gw_sqlite_cert_page(gw_store *base, const char *sandbox_id, int64_t after_row, int limit,
                        gw_cert_rec **out, size_t *n, int *more)
{
    gw_sqlite *s = gw_sqlite_of(base);
    gw_cert_rec *v = NULL;
    size_t cnt = 0;
    int64_t lim = 0;
    struct query q;
    *out = NULL;
    *n = 0;
    *more = 0;
    TSR_GUARD(gw_sql_check_sandbox_id(sandbox_id));
    TSR_GUARD(gw_sql_clamp_limit(limit, &lim));
    TSR_ENSURE(after_row >= 0, TSR_E_INPUT, "page cursor is negative");
    TSR_GUARD(gw_q_open(s, ST_CERT_PAGE, "list certificates", &q));
    gw_q_text(&q, sandbox_id);
    gw_q_i64(&q, after_row);
    gw_q_i64(&q, lim + 1); /* one more row tells whether another page follows */
    if (gw_sql_list_of_sandbox(s, sandbox_id, &q, gw_sql_row_cert_pos, NULL, &v, &cnt,
                               sizeof *v) != 0) {
        gw_store_free_certs(v, cnt);
        return -1;
    }
    if (cnt > (size_t)lim) {
        cnt = (size_t)lim;
        *more = 1;
    }
    *out = v; /* NULL when there are no rows */
    *n = cnt;
    return 0;
}

static int row_revoked_serial(void *ctx, gw_row *st, void *elem)
{
    (void)ctx;
    gw_revoked_serial *e = elem;
    TSR_GUARD(gw_sql_col_text(st, 0, e->serial, sizeof e->serial, "certificate serial"));
    e->not_after = gw_col_i64(st, 1);
    return 0;
}

int gw_sqlite_cert_revoke(gw_store *base, const char *serial, const char *reason, int64_t now,
                          gw_cert_rec *out, gw_revoked_serial **lineage, size_t *n_lineage)
{
    gw_sqlite *s = gw_sqlite_of(base);
    int rc = -1;
    gw_cert_rec rec;
    gw_revoked_serial *v = NULL;
    size_t cnt = 0;
    char lineage_reason[sizeof rec.revocation_reason];
    struct query q;
    if (lineage != NULL) *lineage = NULL;
    if (n_lineage != NULL) *n_lineage = 0;
    if (reason == NULL) reason = "";
    TSR_TRY(gw_sql_check_str(serial, sizeof rec.serial, 0, "certificate serial"));
    TSR_TRY(gw_sql_check_str(reason, sizeof rec.revocation_reason, 1, "revocation reason"));
    TSR_TRY_ENSURE(now > 0, TSR_E_INPUT, "revocation time must be positive");
    TSR_TRY(gw_sql_tx_begin(s, 1));
    TSR_TRY(gw_q_open(s, ST_CERT_REVOKE, "revoke certificate", &q));
    gw_q_text(&q, serial);
    gw_q_i64(&q, now);
    gw_q_text(&q, reason);
    TSR_TRY(gw_q_exec(&q));
    TSR_TRY(cert_read_one(s, serial, &rec)); /* NOTFOUND if it never existed */
    TSR_TRY_ENSURE(rec.revoked_at > 0, TSR_E_INTERNAL, "certificate %s not revoked", serial);
    /* Its lineage, in the same transaction: a renewal committed before this
     * is revoked here; one committed after finds its parent revoked. */
    snprintf(lineage_reason, sizeof lineage_reason, "renewed from revoked certificate %s",
             rec.serial);
    TSR_TRY(gw_q_open(s, ST_CERT_REVOKE_LINEAGE, "revoke renewal lineage", &q));
    gw_q_text(&q, rec.serial);
    gw_q_i64(&q, now);
    gw_q_text(&q, lineage_reason);
    TSR_TRY(gw_q_exec(&q));
    TSR_TRY(gw_q_open(s, ST_CERT_LINEAGE, "read renewal lineage", &q));
    gw_q_text(&q, rec.serial);
    TSR_TRY(gw_q_each(&q, row_revoked_serial, NULL, &v, &cnt, sizeof *v));
    TSR_TRY(gw_sql_tx_commit(s));
    if (out != NULL) *out = rec;
    if (lineage != NULL && n_lineage != NULL) {
        *lineage = v;
        *n_lineage = cnt;
        v = NULL;
    }
    rc = 0;
out:
    if (rc != 0) gw_sql_tx_abort(s);
    free(v);
    return rc;
}

int gw_sqlite_revoked_each(gw_store *base, int64_t now,
                           int (*cb)(void *arg, const char *serial, int64_t not_after), void *arg)
{
    gw_sqlite *s = gw_sqlite_of(base);
    int rc = -1;
    gw_revoked_serial *v = NULL;
    size_t cnt = 0;
    struct query q;
    TSR_TRY_ENSURE(cb != NULL, TSR_E_INPUT, "no callback");
    /* Collect first, call back after: the callback may use the store. */
    TSR_TRY(gw_q_open(s, ST_REVOKED_EACH, "list revoked certificates", &q));
    gw_q_i64(&q, now);
    TSR_TRY(gw_q_each(&q, row_revoked_serial, NULL, &v, &cnt, sizeof *v));
    for (size_t i = 0; i < cnt; i++) TSR_TRY(cb(arg, v[i].serial, v[i].not_after));
    rc = 0;
out:
    free(v);
    return rc;
}

int gw_sqlite_renew_take(gw_store *base, const char *sandbox_id, int limit, int64_t window_ms,
                         bool *shared, bool *allowed)
{
    gw_sqlite *s = gw_sqlite_of(base);
    int rc = -1;
    struct query q;
    *shared = s->pg != NULL;
    *allowed = false;
    if (!*shared) return 0;
    TSR_TRY(gw_sql_check_sandbox_id(sandbox_id));
    TSR_TRY_ENSURE(limit > 0 && window_ms > 0, TSR_E_INPUT, "bad rate limit");
    TSR_TRY(gw_sql_tx_begin(s, 1));
    /* A count lost in a crash of the server only lets a few more renewals
     * through: not worth a disk flush per renewal under the write lock. */
    TSR_TRY(gw_pg_simple(s, "SET LOCAL synchronous_commit = off", "renewal count"));
    TSR_TRY(gw_q_open(s, ST_RENEW_PRUNE, "prune renewal window", &q));
    gw_q_text(&q, sandbox_id);
    gw_q_i64(&q, window_ms);
    TSR_TRY(gw_q_exec(&q));
    TSR_TRY(gw_q_open(s, ST_RENEW_TAKE, "take a renewal", &q));
    gw_q_text(&q, sandbox_id);
    gw_q_i64(&q, limit);
    TSR_TRY(gw_q_exec(&q));
    bool took = gw_sql_changes(s) == 1;
    TSR_TRY(gw_sql_tx_commit(s));
    *allowed = took;
    rc = 0;
out:
    if (rc != 0) gw_sql_tx_abort(s);
    return rc;
}

int gw_sqlite_crl_number_next(gw_store *base, uint64_t floor, uint64_t *number, bool *shared)
{
    gw_sqlite *s = gw_sqlite_of(base);
    int rc = -1;
    struct query q;
    int64_t v = 0;
    *shared = s->pg != NULL;
    *number = 0;
    if (!*shared) return 0;
    TSR_TRY_ENSURE(floor < INT64_MAX, TSR_E_INPUT, "CRL number out of range");
    TSR_TRY(gw_sql_tx_begin(s, 1));
    TSR_TRY(gw_q_open(s, ST_CRL_NUMBER, "take a CRL number", &q));
    gw_q_i64(&q, (int64_t)floor);
    int r = gw_q_row(&q, gw_sql_row_i64, NULL, &v);
    if (r < 0) goto out;
    TSR_TRY_ENSURE(r == 1 && v > 0, TSR_E_IO, "database is corrupt: no CRL number row");
    TSR_TRY(gw_sql_tx_commit(s));
    *number = (uint64_t)v;
    rc = 0;
out:
    if (rc != 0) gw_sql_tx_abort(s);
    return rc;
}
