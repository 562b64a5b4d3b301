/* sqlite3 storage for the gateway. See gw_store.h for the contract.
 *
 * Structure: every SQL text lives in stmt_sql[] (prepared once per
 * connection, always bound with parameters); every use of a statement goes
 * through struct query (gw_q_open, positional binds, then gw_q_exec /
 * gw_q_row / gw_q_each, which always reset it) and row readers are row_fn
 * callbacks; small return-style helpers run one statement each; the
 * operations validate their input, then run helpers inside one transaction
 * (BEGIN IMMEDIATE for writes, so concurrent writers queue on the busy
 * timeout instead of failing on a lock upgrade) and roll back on any
 * failure.
 *
 * Files: this one (statements, helpers, transactions, the ops table),
 * gw_sqlite_open.c (open, close and migrations), then one per record type:
 * gw_sqlite_sandbox.c, _cert.c, _policy.c, _log.c, _env.c
 * (gw_sqlite_internal.h between them). */
#include "gw_sqlite_internal.h"

#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_secretbox.h"



#define SB_COLS                                                                                \
    "id, name, driver, state, created_at, deleted_at, policy_version, image, exit_code, owner"
#define CERT_COLS                                                                              \
    "serial, spiffe_id, sandbox_id, not_before, not_after, issued_at, revoked_at, "            \
    "revocation_reason, renewed_from"

static const char *const stmt_sql[ST__COUNT] = {
    [ST_BEGIN_WRITE] = "BEGIN IMMEDIATE",
    [ST_BEGIN_READ] = "BEGIN DEFERRED",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_MIGRATIONS_TABLE_EXISTS] =
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'",
    [ST_SCHEMA_VERSION] = "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
    [ST_MIGRATION_INSERT] = "INSERT INTO schema_migrations(version, applied_at) VALUES (?1, ?2)",
    [ST_SB_INSERT] = "INSERT INTO sandboxes(id, name, driver, state, created_at, deleted_at, "
                     "policy_version, image, owner) VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6, ?7, ?8)",
    [ST_SB_TEARDOWNS] = "SELECT " SB_COLS " FROM sandboxes WHERE teardown = 1 AND owner = ?1 "
                        "ORDER BY id LIMIT ?2",
    [ST_SB_TEARDOWN_DONE] = "UPDATE sandboxes SET teardown = 0 WHERE id = ?1",
    [ST_SB_GET] = "SELECT " SB_COLS " FROM sandboxes WHERE id = ?1",
    [ST_SB_FIND] = "SELECT " SB_COLS " FROM sandboxes WHERE name = ?1 AND deleted_at IS NULL",
    [ST_SB_LIST] = "SELECT " SB_COLS " FROM sandboxes WHERE deleted_at IS NULL AND id > ?1 "
                   "ORDER BY id LIMIT ?2",
    [ST_SB_META] = "SELECT deleted_at IS NULL, policy_version, log_seq, draft_seq "
                   "FROM sandboxes WHERE id = ?1",
    [ST_SB_SET_STATE] = "UPDATE sandboxes SET state = ?2 WHERE id = ?1",
    [ST_SB_MARK_DELETED] = "UPDATE sandboxes SET deleted_at = ?2, teardown = 1 "
                           "WHERE id = ?1 AND deleted_at IS NULL",
    [ST_SB_SET_POLICY_VERSION] = "UPDATE sandboxes SET policy_version = ?2 WHERE id = ?1",
    [ST_SB_SET_LOG_SEQ] = "UPDATE sandboxes SET log_seq = ?2 WHERE id = ?1",
    [ST_SB_SET_DRAFT_SEQ] = "UPDATE sandboxes SET draft_seq = ?2 WHERE id = ?1",
    [ST_SB_LOG_BATCH] = "SELECT log_session, log_batch FROM sandboxes WHERE id = ?1",
    [ST_SB_SET_LOG_BATCH] = "UPDATE sandboxes SET log_session = ?2, log_batch = ?3 WHERE id = ?1",
    [ST_CERT_INSERT] = "INSERT INTO certificates(" CERT_COLS ") "
                       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, NULL, ?7)",
    [ST_CERT_GET] = "SELECT " CERT_COLS " FROM certificates WHERE serial = ?1",
    [ST_CERT_LIST_SB] = "SELECT " CERT_COLS " FROM certificates WHERE sandbox_id = ?1 "
                        "ORDER BY issued_at, serial",
    [ST_CERT_LIST_ALL] = "SELECT " CERT_COLS " FROM certificates ORDER BY issued_at, serial",
    /* Issue order by rowid: rows are never deleted, so a new row's rowid is
     * always above every existing one (sqlite takes max(rowid) + 1) and a
     * certificate issued while a client pages lands after its cursor. */
    [ST_CERT_PAGE] = "SELECT " CERT_COLS ", rowid FROM certificates WHERE sandbox_id = ?1 "
                     "AND rowid > ?2 ORDER BY rowid LIMIT ?3",
    [ST_CERT_REVOKE] = "UPDATE certificates SET revoked_at = ?2, revocation_reason = ?3 "
                       "WHERE serial = ?1 AND revoked_at IS NULL",
    [ST_CERT_REVOKE_SB] = "UPDATE certificates SET revoked_at = ?2, revocation_reason = ?3 "
                          "WHERE sandbox_id = ?1 AND revoked_at IS NULL",
    [ST_CERT_PARENT] = "SELECT sandbox_id, revoked_at IS NULL FROM certificates WHERE serial = ?1",
    /* Everything renewed from ?1, transitively (UNION: each row once). */
#define LINEAGE_OF_1                                                                           \
    "WITH RECURSIVE lineage(serial) AS (SELECT serial FROM certificates WHERE renewed_from = ?1 " \
    "UNION SELECT c.serial FROM certificates c JOIN lineage l ON c.renewed_from = l.serial) "
    [ST_CERT_REVOKE_LINEAGE] = LINEAGE_OF_1
        "UPDATE certificates SET revoked_at = ?2, revocation_reason = ?3 "
        "WHERE serial IN (SELECT serial FROM lineage) AND revoked_at IS NULL",
    [ST_CERT_LINEAGE] = LINEAGE_OF_1
        "SELECT c.serial, c.not_after FROM certificates c JOIN lineage l ON c.serial = l.serial",
    [ST_REVOKED_EACH] = "SELECT serial, not_after FROM certificates "
                        "WHERE revoked_at IS NOT NULL AND not_after >= ?1 ORDER BY not_after",
    [ST_POLICY_INSERT] = "INSERT INTO policies(sandbox_id, version, yaml, created_at) "
                         "VALUES (?1, ?2, ?3, ?4)",
    [ST_POLICY_GET] = "SELECT yaml FROM policies WHERE sandbox_id = ?1 AND version = ?2",
    [ST_PSTATUS_INSERT] = "INSERT INTO policy_status(sandbox_id, version, status, message, "
                          "reported_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_PSTATUS_LATEST] = "SELECT status, message, reported_at FROM policy_status "
                          "WHERE sandbox_id = ?1 AND version = ?2 ORDER BY id DESC LIMIT 1",
    [ST_DRAFT_INSERT] = "INSERT INTO draft_chunks(sandbox_id, seq, domain, content, "
                        "submitted_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_DRAFT_GET] = "SELECT domain, content FROM draft_chunks WHERE sandbox_id = ?1 "
                     "ORDER BY seq",
    [ST_DRAFT_PAGE] = "SELECT domain, content, seq FROM draft_chunks WHERE sandbox_id = ?1 "
                      "AND seq > ?2 ORDER BY seq LIMIT ?3",
    [ST_LOG_INSERT] = "INSERT INTO logs(sandbox_id, seq, timestamp_ms, stream, text, "
                      "received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_LOG_GET] = "SELECT seq, timestamp_ms, stream, text FROM logs "
                   "WHERE sandbox_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    [ST_DROP_INSERT] = "INSERT INTO log_drops(sandbox_id, dropped, reported_at) "
                       "VALUES (?1, ?2, ?3)",
    [ST_DROP_SUM] = "SELECT COALESCE(SUM(dropped), 0) FROM log_drops WHERE sandbox_id = ?1",
    [ST_ENV_DELETE] = "DELETE FROM provider_env WHERE sandbox_id = ?1",
    [ST_ENV_INSERT] = "INSERT INTO provider_env(sandbox_id, name, key_version, nonce, "
                      "ciphertext) VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_ENV_GET] = "SELECT name, key_version, nonce, ciphertext FROM provider_env "
                   "WHERE sandbox_id = ?1 ORDER BY name",
    [ST_ENV_STALE] = "SELECT sandbox_id, name, key_version, nonce, ciphertext "
                     "FROM provider_env WHERE key_version <> ?1 ORDER BY sandbox_id, name",
    [ST_ENV_UPDATE] = "UPDATE provider_env SET key_version = ?3, nonce = ?4, ciphertext = ?5 "
                      "WHERE sandbox_id = ?1 AND name = ?2",
    [ST_SB_SET_STATUS] = "UPDATE sandboxes SET state = ?2, exit_code = ?3, state_detail = ?4 "
                         "WHERE id = ?1 AND deleted_at IS NULL",
    [ST_SB_SET_STATUS_KEEP] = "UPDATE sandboxes SET state = ?2, exit_code = ?3 "
                              "WHERE id = ?1 AND deleted_at IS NULL",
    [ST_SB_DETAIL] = "SELECT state_detail FROM sandboxes WHERE id = ?1",
    [ST_CMD_INSERT] = "INSERT INTO sandbox_command(sandbox_id, pos, arg) VALUES (?1, ?2, ?3)",
    [ST_CMD_GET] = "SELECT arg FROM sandbox_command WHERE sandbox_id = ?1 ORDER BY pos",
    [ST_SENV_INSERT] = "INSERT INTO sandbox_env(sandbox_id, name, value) VALUES (?1, ?2, ?3)",
    [ST_SENV_GET] = "SELECT name, value FROM sandbox_env WHERE sandbox_id = ?1 ORDER BY name",
};



/* ---- errors ----------------------------------------------------------------- */

static enum tsr_errcat category_of(int rc)
{
    switch (rc) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY: return TSR_E_EXISTS;
    case SQLITE_CONSTRAINT_FOREIGNKEY: return TSR_E_NOTFOUND;
    case SQLITE_CONSTRAINT_CHECK:
    case SQLITE_CONSTRAINT_NOTNULL:
    case SQLITE_TOOBIG: return TSR_E_INPUT;
    default: return TSR_E_IO;
    }
}

int gw_sql_fail_at(gw_sqlite *s, int rc, const char *file, int line, const char *what)
{
    if (category_of(rc) == TSR_E_IO) gw_store_io_error();
    return tsr_fail_at(category_of(rc), file, line, "database: %s: %s (%s)", what,
                       sqlite3_errmsg(s->db), sqlite3_errstr(rc));
}

/* ---- statements --------------------------------------------------------------- */

static int stmt(gw_sqlite *s, enum stmt_id id, sqlite3_stmt **out)
{
    if (s->stmts[id] == NULL) {
        int rc = sqlite3_prepare_v3(s->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                    &s->stmts[id], NULL);
        if (rc != SQLITE_OK) {
            s->stmts[id] = NULL;
            return DB_FAIL(s, rc, "prepare");
        }
    }
    *out = s->stmts[id];
    return 0;
}

/* Every use of a statement ends here: no lingering read locks, no dangling
 * pointers to the caller's strings. */
static void done(sqlite3_stmt *st)
{
    if (st == NULL) return;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* Binders accumulate the first failure in *rc (SQLITE_OK while all is well).
 * Bound data is SQLITE_STATIC: it must live until done(). */
static void bind_text(sqlite3_stmt *st, int i, const char *v, int *rc)
{
    if (*rc != SQLITE_OK) return;
    *rc = v == NULL ? sqlite3_bind_null(st, i)
                    : sqlite3_bind_text64(st, i, v, strlen(v), SQLITE_STATIC, SQLITE_UTF8);
}

static void bind_i64(sqlite3_stmt *st, int i, int64_t v, int *rc)
{
    if (*rc != SQLITE_OK) return;
    *rc = sqlite3_bind_int64(st, i, v);
}

static void bind_blob(sqlite3_stmt *st, int i, const void *v, size_t len, int *rc)
{
    if (*rc != SQLITE_OK) return;
    *rc = sqlite3_bind_blob64(st, i, v, len, SQLITE_STATIC);
}

/* Step a bound statement once: 1 = a row, 0 = done, -1 = failure (recorded).
 * `bound` is the binders' accumulated result. */
static int step(gw_sqlite *s, sqlite3_stmt *st, int bound, const char *what)
{
    int rc = bound == SQLITE_OK ? sqlite3_step(st) : bound;
    if (rc == SQLITE_ROW) return 1;
    if (rc == SQLITE_DONE) return 0;
    return DB_FAIL(s, rc, what);
}

/* Run a statement that returns no rows, then reset it. */
static int exec_done(gw_sqlite *s, sqlite3_stmt *st, int bound, const char *what)
{
    int r = step(s, st, bound, what);
    done(st);
    if (r < 0) return -1;
    TSR_ENSURE(r == 0, TSR_E_INTERNAL, "database: %s returned rows", what);
    return 0;
}

static int exec_plain(gw_sqlite *s, enum stmt_id id, const char *what)
{
    sqlite3_stmt *st = NULL;
    TSR_GUARD(stmt(s, id, &st));
    return exec_done(s, st, SQLITE_OK, what);
}

static int grow(void *v, size_t *cap, size_t n, size_t size);

/* ---- one use of a cached statement ------------------------------------------------ */

/* The query API and its row_fn readers are in gw_sqlite_internal.h. */

int gw_q_open(gw_sqlite *s, enum stmt_id id, const char *what, struct query *q)
{
    *q = (struct query){.s = s, .st = NULL, .bound = SQLITE_OK, .next = 1, .what = what,
                        .id = id};
    if (s->pg != NULL) {
        q->sql = gw_pg_sql(id, stmt_sql[id]);
        return gw_pg_prepare(s, id, q->sql);
    }
    return stmt(s, id, &q->st);
}

/* A PostgreSQL parameter: text (len -1) or binary; NULL is SQL NULL. The
 * data is borrowed, as sqlite's SQLITE_STATIC, until the query ends. */
static void pg_param(struct query *q, const char *v, int len, int binary)
{
    if (q->next > GW_Q_MAX_PARAMS) {
        q->bound = SQLITE_RANGE;
        return;
    }
    q->pv[q->next - 1] = v;
    q->pl[q->next - 1] = len;
    q->pf[q->next - 1] = binary;
    q->next++;
}

void gw_q_text(struct query *q, const char *v)
{
    if (q->s->pg != NULL) pg_param(q, v, -1, 0);
    else bind_text(q->st, q->next++, v, &q->bound);
}

void gw_q_i64(struct query *q, int64_t v)
{
    if (q->s->pg == NULL) {
        bind_i64(q->st, q->next++, v, &q->bound);
        return;
    }
    if (q->next > GW_Q_MAX_PARAMS) {
        q->bound = SQLITE_RANGE;
        return;
    }
    char *buf = q->num[q->next - 1];
    snprintf(buf, sizeof q->num[0], "%lld", (long long)v);
    pg_param(q, buf, -1, 0);
}

static void q_blob(struct query *q, const void *v, size_t len)
{
    if (q->s->pg == NULL) {
        bind_blob(q->st, q->next++, v, len, &q->bound);
        return;
    }
    if (len > INT32_MAX) q->bound = SQLITE_TOOBIG;
    else pg_param(q, v, (int)len, 1);
}

static void row_done(gw_row *r)
{
    for (size_t i = 0; i < GW_ROW_BLOBS; i++) {
        if (r->blob[i] != NULL) PQfreemem(r->blob[i]);
        r->blob[i] = NULL;
        r->blob_len[i] = 0;
    }
}

/* PostgreSQL: run q, then hand each row (up to `max`, 0 = all) to `each`.
 * Returns the row count seen, or -1 (recorded). */
static int pg_rows(struct query *q, int max, int (*each)(void *arg, gw_row *r), void *arg)
{
    PGresult *res = NULL;
    if (gw_pg_run(q, &res) != 0) return -1;
    int n = PQntuples(res), rc = 0;
    if (max > 0 && n > max) n = max;
    for (int i = 0; i < n && rc == 0; i++) {
        gw_row r = {.res = res, .i = i};
        rc = each(arg, &r);
        row_done(&r);
    }
    PQclear(res);
    return rc != 0 ? -1 : n;
}

int gw_q_exec(struct query *q)
{
    if (q->s->pg == NULL) return exec_done(q->s, q->st, q->bound, q->what);
    PGresult *res = NULL;
    if (gw_pg_run(q, &res) != 0) return -1;
    int rows = PQntuples(res);
    PQclear(res);
    TSR_ENSURE(rows == 0, TSR_E_INTERNAL, "database: %s returned rows", q->what);
    return 0;
}

struct one_row { row_fn read; void *ctx; void *elem; };

static int pg_one_row(void *arg, gw_row *r)
{
    struct one_row *o = arg;
    return o->read != NULL ? o->read(o->ctx, r, o->elem) : 0;
}

/* The first row, read by `read` when not NULL: 1 = a row, 0 = none,
 * -1 = failure (recorded). */
int gw_q_row(struct query *q, row_fn read, void *ctx, void *elem)
{
    if (q->s->pg != NULL) {
        struct one_row o = {read, ctx, elem};
        int n = pg_rows(q, 1, pg_one_row, &o);
        return n < 0 ? -1 : n > 0;
    }
    gw_row row = {.st = q->st};
    int r = step(q->s, q->st, q->bound, q->what);
    if (r == 1 && read != NULL && read(ctx, &row, elem) != 0) r = -1;
    done(q->st);
    return r;
}

struct each_rows { row_fn read; void *ctx; void *v; size_t *cnt; size_t size; size_t cap; };

static int pg_each_row(void *arg, gw_row *r)
{
    struct each_rows *e = arg;
    TSR_GUARD(grow(e->v, &e->cap, *e->cnt, e->size));
    char *elem = (char *)*(void **)e->v + *e->cnt * e->size;
    (*e->cnt)++;
    return e->read(e->ctx, r, elem);
}

/* Every row, appended to the array *v (a T **, NULL and *cnt 0 at first) of
 * elements of `size`. An element is zeroed and counted before it is read,
 * so the caller's free function also releases a half-read one. */
int gw_q_each(struct query *q, row_fn read, void *ctx, void *v, size_t *cnt, size_t size)
{
    int rc = -1;
    size_t cap = 0;
    TSR_TRY_ENSURE(*(void **)v == NULL && *cnt == 0, TSR_E_INTERNAL,
                   "gw_q_each: array not empty");
    if (q->s->pg != NULL) {
        struct each_rows e = {read, ctx, v, cnt, size, 0};
        return pg_rows(q, 0, pg_each_row, &e) < 0 ? -1 : 0;
    }
    for (;;) {
        int r = step(q->s, q->st, q->bound, q->what);
        if (r < 0) goto out; /* recorded by step() */
        if (r == 0) break;
        TSR_TRY(grow(v, &cap, *cnt, size));
        char *elem = (char *)*(void **)v + *cnt * size;
        (*cnt)++;
        gw_row row = {.st = q->st};
        TSR_TRY(read(ctx, &row, elem));
    }
    rc = 0;
out:
    done(q->st);
    return rc;
}

/* ---- columns ------------------------------------------------------------------- */

/* Copy a TEXT column into a fixed buffer; NULL reads as "". Anything that
 * does not fit, or holds a NUL, is corruption: fail closed. */
/* A text column, whichever engine: *v NULL for SQL NULL (or sqlite out of
 * memory: *oom set). */
static void col_text(gw_row *r, int i, const unsigned char **v, size_t *n, int *oom)
{
    *oom = 0;
    if (r->res != NULL) {
        bool null = PQgetisnull(r->res, r->i, i) != 0;
        *v = null ? NULL : (const unsigned char *)PQgetvalue(r->res, r->i, i);
        *n = null ? 0 : (size_t)PQgetlength(r->res, r->i, i);
        return;
    }
    *v = sqlite3_column_text(r->st, i);
    *n = (size_t)sqlite3_column_bytes(r->st, i);
    *oom = *v == NULL && sqlite3_column_type(r->st, i) != SQLITE_NULL;
}

int64_t gw_col_i64(gw_row *r, int i)
{
    if (r->res == NULL) return sqlite3_column_int64(r->st, i);
    if (PQgetisnull(r->res, r->i, i)) return 0;
    return strtoll(PQgetvalue(r->res, r->i, i), NULL, 10);
}

bool gw_col_null(gw_row *r, int i)
{
    if (r->res == NULL) return sqlite3_column_type(r->st, i) == SQLITE_NULL;
    return PQgetisnull(r->res, r->i, i) != 0;
}

/* PostgreSQL sends bytea as hex text; decoded once per row and column. */
static void pg_blob(gw_row *r, int i)
{
    if (i < 0 || i >= GW_ROW_BLOBS || r->blob[i] != NULL || PQgetisnull(r->res, r->i, i)) return;
    size_t len = 0;
    r->blob[i] = PQunescapeBytea((const unsigned char *)PQgetvalue(r->res, r->i, i), &len);
    r->blob_len[i] = r->blob[i] != NULL ? len : 0;
}

const void *gw_col_blob(gw_row *r, int i)
{
    if (r->res == NULL) return sqlite3_column_blob(r->st, i);
    pg_blob(r, i);
    return i >= 0 && i < GW_ROW_BLOBS ? r->blob[i] : NULL;
}

size_t gw_col_bytes(gw_row *r, int i)
{
    if (r->res == NULL) return (size_t)sqlite3_column_bytes(r->st, i);
    pg_blob(r, i);
    return i >= 0 && i < GW_ROW_BLOBS ? r->blob_len[i] : 0;
}

int64_t gw_sql_changes(gw_sqlite *s)
{
    return s->pg != NULL ? s->changes : sqlite3_changes(s->db);
}

int gw_sql_col_text(gw_row *st, int i, char *buf, size_t cap, const char *what)
{
    const unsigned char *v = NULL;
    size_t n = 0;
    int oom = 0;
    col_text(st, i, &v, &n, &oom);
    if (v == NULL) {
        TSR_ENSURE(!oom, TSR_E_INTERNAL, "out of memory");
        buf[0] = '\0';
        return 0;
    }
    TSR_ENSURE(n < cap && strlen((const char *)v) == n, TSR_E_IO,
               "database is corrupt: %s does not fit", what);
    memcpy(buf, v, n + 1);
    return 0;
}

int gw_sql_col_text_dup(gw_row *st, int i, char **out, const char *what)
{
    *out = NULL;
    const unsigned char *v = NULL;
    size_t n = 0;
    int oom = 0;
    col_text(st, i, &v, &n, &oom);
    TSR_ENSURE(!oom, TSR_E_INTERNAL, "out of memory");
    TSR_ENSURE(v == NULL || strlen((const char *)v) == n, TSR_E_IO,
               "database is corrupt: %s holds a NUL byte", what);
    char *p = malloc(n + 1);
    TSR_ENSURE(p != NULL, TSR_E_INTERNAL, "out of memory");
    if (n > 0) memcpy(p, v, n);
    p[n] = '\0';
    *out = p;
    return 0;
}

static int read_sandbox(gw_row *st, gw_sandbox_rec *out)
{
    memset(out, 0, sizeof *out);
    TSR_GUARD(gw_sql_col_text(st, 0, out->id, sizeof out->id, "sandbox id"));
    TSR_GUARD(gw_sql_col_text(st, 1, out->name, sizeof out->name, "sandbox name"));
    TSR_GUARD(gw_sql_col_text(st, 2, out->driver, sizeof out->driver, "sandbox driver"));
    TSR_GUARD(gw_sql_col_text(st, 3, out->state, sizeof out->state, "sandbox state"));
    out->created_at = gw_col_i64(st, 4);
    out->deleted_at = gw_col_i64(st, 5); /* NULL reads as 0 = live */
    out->policy_version = gw_col_i64(st, 6);
    TSR_GUARD(gw_sql_col_text(st, 7, out->image, sizeof out->image, "sandbox image"));
    TSR_GUARD(gw_sql_col_text(st, 9, out->owner, sizeof out->owner, "sandbox owner"));
    out->exited = !gw_col_null(st, 8); /* NULL: no exit known */
    int64_t code = gw_col_i64(st, 8);
    TSR_ENSURE(code >= INT32_MIN && code <= INT32_MAX, TSR_E_IO,
               "database is corrupt: sandbox %s has exit code %lld", out->id, (long long)code);
    out->exit_code = (int)code;
    return 0;
}

static int read_cert(gw_row *st, gw_cert_rec *out)
{
    memset(out, 0, sizeof *out);
    TSR_GUARD(gw_sql_col_text(st, 0, out->serial, sizeof out->serial, "certificate serial"));
    TSR_GUARD(gw_sql_col_text(st, 1, out->spiffe_id, sizeof out->spiffe_id,
                              "certificate SPIFFE ID"));
    TSR_GUARD(gw_sql_col_text(st, 2, out->sandbox_id, sizeof out->sandbox_id,
                              "certificate sandbox"));
    out->not_before = gw_col_i64(st, 3);
    out->not_after = gw_col_i64(st, 4);
    out->issued_at = gw_col_i64(st, 5);
    out->revoked_at = gw_col_i64(st, 6);
    TSR_GUARD(gw_sql_col_text(st, 7, out->revocation_reason, sizeof out->revocation_reason,
                       "revocation reason"));
    TSR_GUARD(gw_sql_col_text(st, 8, out->renewed_from, sizeof out->renewed_from, "renewed_from"));
    /* A revoked row must never read as valid. */
    TSR_ENSURE(gw_col_null(st, 6) || out->revoked_at > 0, TSR_E_IO,
               "database is corrupt: certificate %s has revoked_at %lld", out->serial,
               (long long)out->revoked_at);
    return 0;
}
/* row_fn adapters */
int gw_sql_row_sandbox(void *ctx, gw_row *st, void *elem)
{
    (void)ctx;
    return read_sandbox(st, elem);
}

int gw_sql_row_cert(void *ctx, gw_row *st, void *elem)
{
    (void)ctx;
    return read_cert(st, elem);
}

/* A certificate followed by its rowid (column 9). */
int gw_sql_row_cert_pos(void *ctx, gw_row *st, void *elem)
{
    (void)ctx;
    gw_cert_rec *c = elem;
    TSR_GUARD(read_cert(st, c));
    c->row = gw_col_i64(st, 9);
    return 0;
}

/* Column 0 as an int64_t. */
int gw_sql_row_i64(void *ctx, gw_row *st, void *elem)
{
    (void)ctx;
    *(int64_t *)elem = gw_col_i64(st, 0);
    return 0;
}

/* Grow *v (elements of `size`) so that index n fits. */
static int grow(void *v, size_t *cap, size_t n, size_t size)
{
    void **pv = v;
    if (n < *cap) return 0;
    size_t ncap = *cap == 0 ? 16 : *cap * 2;
    TSR_ENSURE(ncap <= SIZE_MAX / size, TSR_E_LIMIT, "result too large");
    void *p = realloc(*pv, ncap * size);
    TSR_ENSURE(p != NULL, TSR_E_INTERNAL, "out of memory");
    memset((char *)p + *cap * size, 0, (ncap - *cap) * size);
    *pv = p;
    *cap = ncap;
    return 0;
}

/* ---- input checks ---------------------------------------------------------------- */

/* A NUL-terminated string of at most cap-1 bytes (and at least one unless
 * may_be_empty). Reads at most cap bytes of v. */
int gw_sql_check_str(const char *v, size_t cap, int may_be_empty, const char *what)
{
    TSR_ENSURE(v != NULL, TSR_E_INPUT, "%s is missing", what);
    size_t n = strnlen(v, cap);
    TSR_ENSURE(n < cap, TSR_E_INPUT, "%s is longer than %zu bytes", what, cap - 1);
    TSR_ENSURE(may_be_empty || n > 0, TSR_E_INPUT, "%s is empty", what);
    return 0;
}


int gw_sql_check_sandbox_id(const char *id)
{
    return gw_sql_check_str(id, SB_ID_CAP, 0, "sandbox id");
}

int gw_sql_check_cert(const gw_cert_rec *c)
{
    TSR_ENSURE(c != NULL, TSR_E_INPUT, "certificate record is missing");
    TSR_GUARD(gw_sql_check_str(c->serial, sizeof c->serial, 0, "certificate serial"));
    TSR_GUARD(gw_sql_check_str(c->spiffe_id, sizeof c->spiffe_id, 0, "certificate SPIFFE ID"));
    TSR_GUARD(gw_sql_check_str(c->sandbox_id, sizeof c->sandbox_id, 1, "certificate sandbox id"));
    TSR_GUARD(gw_sql_check_str(c->renewed_from, sizeof c->renewed_from, 1, "renewed_from serial"));
    TSR_ENSURE(c->renewed_from[0] == '\0' || c->sandbox_id[0] != '\0', TSR_E_INPUT,
               "certificate %s: only sandbox certificates are renewed", c->serial);
    TSR_ENSURE(c->revoked_at == 0, TSR_E_INPUT, "a new certificate cannot be revoked");
    TSR_ENSURE(c->not_before <= c->not_after, TSR_E_INPUT,
               "certificate %s: notBefore is after notAfter", c->serial);
    return 0;
}

int gw_sql_check_env(const gw_env_var *env, size_t n)
{
    TSR_ENSURE(n == 0 || env != NULL, TSR_E_INPUT, "provider env is missing");
    for (size_t i = 0; i < n; i++) {
        TSR_GUARD(gw_sql_check_str(env[i].name, ENV_NAME_MAX + 1, 0, "provider env name"));
        TSR_ENSURE(env[i].value != NULL, TSR_E_INPUT, "provider env %s has no value",
                   env[i].name);
        TSR_ENSURE(strlen(env[i].value) <= GW_SECRETBOX_MAX_PLAINTEXT, TSR_E_LIMIT,
                   "provider env %s is too large", env[i].name);
    }
    return 0;
}

int gw_sql_clamp_limit(int limit, int64_t *out)
{
    TSR_ENSURE(limit > 0, TSR_E_INPUT, "limit must be positive, not %d", limit);
    *out = limit > GW_STORE_MAX_PAGE ? GW_STORE_MAX_PAGE : limit;
    return 0;
}

/* ---- transactions ------------------------------------------------------------------ */

int gw_sql_tx_begin(gw_sqlite *s, int write)
{
    if (s->pg != NULL) return gw_pg_tx_begin(s, write);
    return exec_plain(s, write ? ST_BEGIN_WRITE : ST_BEGIN_READ, "begin transaction");
}

int gw_sql_tx_commit(gw_sqlite *s)
{
    if (s->pg != NULL) return gw_pg_tx_commit(s);
    return exec_plain(s, ST_COMMIT, "commit");
}

int gw_sql_savepoint(gw_sqlite *s)
{
    return s->pg != NULL ? gw_pg_simple(s, "SAVEPOINT gw_record", "savepoint") : 0;
}

int gw_sql_savepoint_release(gw_sqlite *s)
{
    return s->pg != NULL ? gw_pg_simple(s, "RELEASE SAVEPOINT gw_record", "release savepoint")
                         : 0;
}

/* Keeps the recorded error: it is the caller's. */
int gw_sql_savepoint_undo(gw_sqlite *s)
{
    if (s->pg == NULL) return 0;
    char msg[512];
    enum tsr_errcat cat = tsr_errcat();
    snprintf(msg, sizeof msg, "%s", tsr_errmsg());
    TSR_GUARD(gw_pg_simple(s, "ROLLBACK TO SAVEPOINT gw_record", "undo savepoint"));
    return TSR_FAIL(cat, "%s", msg);
}

/* Roll back whatever is open. Keeps the recorded error: it is the caller's. */
void gw_sql_tx_abort(gw_sqlite *s)
{
    if (s != NULL && s->pg != NULL) {
        gw_pg_tx_abort(s);
        return;
    }
    if (s == NULL || s->db == NULL || sqlite3_get_autocommit(s->db)) return;
    sqlite3_stmt *st = NULL;
    if (s->stmts[ST_ROLLBACK] != NULL) {
        st = s->stmts[ST_ROLLBACK];
        (void)sqlite3_step(st);
        sqlite3_reset(st);
    } else {
        (void)sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    }
}

/* ---- shared row helpers --------------------------------------------------------------- */

static int row_sb_meta(void *ctx, gw_row *st, void *elem)
{
    (void)ctx;
    struct gw_sql_sb_meta *m = elem;
    m->live = (int)gw_col_i64(st, 0);
    m->policy_version = gw_col_i64(st, 1);
    m->log_seq = gw_col_i64(st, 2);
    m->draft_seq = gw_col_i64(st, 3);
    return 0;
}

int gw_sql_sb_meta(gw_sqlite *s, const char *id, struct gw_sql_sb_meta *m)
{
    struct query q;
    TSR_GUARD(gw_q_open(s, ST_SB_META, "read sandbox", &q));
    gw_q_text(&q, id);
    int r = gw_q_row(&q, row_sb_meta, NULL, m);
    if (r < 0) return -1;
    TSR_ENSURE(r == 1, TSR_E_NOTFOUND, "sandbox %s not found", id);
    return 0;
}

int gw_sql_sb_meta_live(gw_sqlite *s, const char *id, struct gw_sql_sb_meta *m)
{
    TSR_GUARD(gw_sql_sb_meta(s, id, m));
    TSR_ENSURE(m->live, TSR_E_STATE, "sandbox %s is deleted", id);
    return 0;
}

/* Every row of q (opened and bound by the caller; always ended here) in one
 * read transaction that first checks the sandbox exists (NOTFOUND
 * otherwise; sandbox_id NULL: no check). On failure the caller frees *v's
 * first *cnt elements. */
int gw_sql_list_of_sandbox(gw_sqlite *s, const char *sandbox_id, struct query *q, row_fn read,
                           void *ctx, void *v, size_t *cnt, size_t size)
{
    int rc = -1;
    struct gw_sql_sb_meta m;
    TSR_TRY(gw_sql_tx_begin(s, 0));
    if (sandbox_id != NULL) TSR_TRY(gw_sql_sb_meta(s, sandbox_id, &m));
    rc = gw_q_each(q, read, ctx, v, cnt, size); /* ends q */
    q = NULL;
    if (rc == 0) rc = gw_sql_tx_commit(s);
out:
    if (q != NULL) done(q->st);
    if (rc != 0) gw_sql_tx_abort(s);
    return rc;
}

int gw_sql_set_counter(gw_sqlite *s, enum stmt_id id, const char *sandbox_id, int64_t v,
                       const char *what)
{
    struct query q;
    TSR_GUARD(gw_q_open(s, id, what, &q));
    gw_q_text(&q, sandbox_id);
    gw_q_i64(&q, v);
    return gw_q_exec(&q);
}

struct cert_parent {
    char sandbox_id[SB_ID_CAP];
    int live;
};

static int row_parent(void *ctx, gw_row *st, void *elem)
{
    (void)ctx;
    struct cert_parent *p = elem;
    TSR_GUARD(gw_sql_col_text(st, 0, p->sandbox_id, sizeof p->sandbox_id, "certificate sandbox"));
    p->live = (int)gw_col_i64(st, 1) != 0;
    return 0;
}

/* The certificate a renewal was made from: recorded, of the same sandbox,
 * not revoked. Called inside the insert's transaction. */
static int check_renewed_from(gw_sqlite *s, const gw_cert_rec *c)
{
    if (c->renewed_from[0] == '\0') return 0;
    struct query q;
    struct cert_parent parent;
    TSR_GUARD(gw_q_open(s, ST_CERT_PARENT, "read renewed certificate", &q));
    gw_q_text(&q, c->renewed_from);
    int r = gw_q_row(&q, row_parent, NULL, &parent);
    if (r < 0) return -1;
    /* Never true of a renewal the gateway made: fail closed all the same. */
    TSR_ENSURE(r == 1 && strcmp(parent.sandbox_id, c->sandbox_id) == 0, TSR_E_UNAUTH,
               "certificate not recorded for this sandbox");
    TSR_ENSURE(parent.live, TSR_E_UNAUTH, "certificate revoked");
    return 0;
}

int gw_sql_cert_insert_row(gw_sqlite *s, const gw_cert_rec *c)
{
    struct query q;
    TSR_GUARD(check_renewed_from(s, c));
    TSR_GUARD(gw_q_open(s, ST_CERT_INSERT, "insert certificate", &q));
    gw_q_text(&q, c->serial);
    gw_q_text(&q, c->spiffe_id);
    gw_q_text(&q, c->sandbox_id[0] ? c->sandbox_id : NULL);
    gw_q_i64(&q, c->not_before);
    gw_q_i64(&q, c->not_after);
    gw_q_i64(&q, c->issued_at);
    gw_q_text(&q, c->renewed_from[0] ? c->renewed_from : NULL);
    if (gw_q_exec(&q) == 0) return 0;
    if (tsr_errcat() == TSR_E_EXISTS)
        return TSR_FAIL(TSR_E_EXISTS, "certificate serial %s is already recorded", c->serial);
    return -1;
}

int gw_sql_policy_insert_row(gw_sqlite *s, const char *sandbox_id, int64_t version,
                             const char *yaml, int64_t now)
{
    struct query q;
    TSR_GUARD(gw_q_open(s, ST_POLICY_INSERT, "insert policy", &q));
    gw_q_text(&q, sandbox_id);
    gw_q_i64(&q, version);
    gw_q_text(&q, yaml);
    gw_q_i64(&q, now);
    TSR_GUARD(gw_q_exec(&q));
    return gw_sql_set_counter(s, ST_SB_SET_POLICY_VERSION, sandbox_id, version,
                       "update policy version");
}

/* AAD = "tessera-env-v1\0" || sandbox_id || "\0" || name: a sealed value is
 * bound to its row and cannot be moved to another sandbox or variable. */
static int env_aad(const char *sandbox_id, const char *name, uint8_t **out, size_t *len)
{
    static const char prefix[] = "tessera-env-v1"; /* sizeof includes the NUL */
    size_t a = strlen(sandbox_id), n = strlen(name);
    size_t total = sizeof prefix + a + 1 + n;
    uint8_t *p = malloc(total);
    TSR_ENSURE(p != NULL, TSR_E_INTERNAL, "out of memory");
    memcpy(p, prefix, sizeof prefix);
    memcpy(p + sizeof prefix, sandbox_id, a);
    p[sizeof prefix + a] = '\0';
    memcpy(p + sizeof prefix + a + 1, name, n);
    *out = p;
    *len = total;
    return 0;
}

/* Seal value for (sandbox_id, name) and run `id` (ST_ENV_INSERT or
 * ST_ENV_UPDATE: same parameter order). */
int gw_sql_env_write_row(gw_sqlite *s, enum stmt_id id, const char *sandbox_id,
                         const char *name, const uint8_t *value, size_t value_len)
{
    int rc = -1;
    uint8_t *aad = NULL, *ct = NULL;
    size_t aad_len = 0, ct_len = 0;
    uint8_t nonce[GW_SECRETBOX_NONCE_LEN];
    uint32_t version = 0;
    struct query q;

    TSR_TRY(env_aad(sandbox_id, name, &aad, &aad_len));
    TSR_TRY(gw_secretbox_seal(s->keys, aad, aad_len, value, value_len, &version, nonce, &ct,
                              &ct_len));
    TSR_TRY(gw_q_open(s, id, "write provider env", &q));
    gw_q_text(&q, sandbox_id);
    gw_q_text(&q, name);
    gw_q_i64(&q, version);
    q_blob(&q, nonce, sizeof nonce);
    q_blob(&q, ct, ct_len);
    if (gw_q_exec(&q) != 0) {
        if (tsr_errcat() == TSR_E_EXISTS)
            (void)TSR_FAIL(TSR_E_EXISTS, "provider env %s is given twice", name);
        goto out; /* recorded by gw_q_exec() */
    }
    TSR_TRY_ENSURE(id != ST_ENV_UPDATE || gw_sql_changes(s) == 1, TSR_E_INTERNAL,
                   "provider env %s of sandbox %s vanished", name, sandbox_id);
    rc = 0;
out:
    free(aad);
    free(ct);
    return rc;
}

/* Decrypt one provider_env row's value; failures become TSR_E_STATE (the
 * stored secret is unusable, not the caller's input). */
int gw_sql_env_open_value(gw_sqlite *s, const char *sandbox_id, const char *name,
                          int64_t version, const void *nonce, size_t nonce_len,
                          const void *ct, size_t ct_len, uint8_t **value, size_t *len)
{
    uint8_t *aad = NULL;
    size_t aad_len = 0;
    TSR_ENSURE(nonce_len == GW_SECRETBOX_NONCE_LEN && version > 0 && version <= UINT32_MAX,
               TSR_E_STATE, "provider env %s of sandbox %s is corrupt", name, sandbox_id);
    TSR_GUARD(env_aad(sandbox_id, name, &aad, &aad_len));
    int rc = gw_secretbox_open(s->keys, (uint32_t)version, nonce, aad, aad_len, ct, ct_len,
                               value, len);
    free(aad);
    if (rc != 0) {
        char why[512];
        strncpy(why, tsr_errmsg(), sizeof why - 1);
        why[sizeof why - 1] = '\0';
        return TSR_FAIL(TSR_E_STATE, "provider env %s of sandbox %s cannot be decrypted: %s",
                        name, sandbox_id, why);
    }
    return 0;
}

int gw_sql_env_insert_all(gw_sqlite *s, const char *sandbox_id, const gw_env_var *env, size_t n)
{
    for (size_t i = 0; i < n; i++)
        TSR_GUARD(gw_sql_env_write_row(s, ST_ENV_INSERT, sandbox_id, env[i].name,
                                (const uint8_t *)env[i].value, strlen(env[i].value)));
    return 0;
}

int gw_sql_env_delete_all(gw_sqlite *s, const char *sandbox_id)
{
    struct query q;
    TSR_GUARD(gw_q_open(s, ST_ENV_DELETE, "delete provider env", &q));
    gw_q_text(&q, sandbox_id);
    return gw_q_exec(&q);
}

/* One table, two engines: the operations branch on the handle's engine
 * where they must (gw_sqlite_internal.h). */
#define SQL_STORE_OPS { \
    .close = gw_sqlite_close, \
    .set_keyring = gw_sqlite_set_keyring, \
    .schema_version = gw_sqlite_schema_version, \
    .set_read_only = gw_sqlite_set_read_only, \
    .sandbox_create = gw_sqlite_sandbox_create, \
    .sandbox_create_spec = gw_sqlite_sandbox_create_spec, \
    .sandbox_spec_get = gw_sqlite_sandbox_spec_get, \
    .sandbox_get = gw_sqlite_sandbox_get, \
    .sandbox_find_by_name = gw_sqlite_sandbox_find_by_name, \
    .sandbox_list = gw_sqlite_sandbox_list, \
    .sandbox_set_state = gw_sqlite_sandbox_set_state, \
    .sandbox_set_status = gw_sqlite_sandbox_set_status, \
    .sandbox_delete = gw_sqlite_sandbox_delete, \
    .teardowns = gw_sqlite_teardowns, \
    .teardown_done = gw_sqlite_teardown_done, \
    .cert_insert = gw_sqlite_cert_insert, \
    .cert_insert_batch = gw_sqlite_cert_insert_batch, \
    .cert_get = gw_sqlite_cert_get, \
    .cert_list = gw_sqlite_cert_list, \
    .cert_page = gw_sqlite_cert_page, \
    .cert_revoke = gw_sqlite_cert_revoke, \
    .revoked_each = gw_sqlite_revoked_each, \
    .policy_get = gw_sqlite_policy_get, \
    .policy_set = gw_sqlite_policy_set, \
    .policy_status_add = gw_sqlite_policy_status_add, \
    .policy_status_latest = gw_sqlite_policy_status_latest, \
    .draft_add = gw_sqlite_draft_add, \
    .draft_get = gw_sqlite_draft_get, \
    .draft_page = gw_sqlite_draft_page, \
    .logs_append = gw_sqlite_logs_append, \
    .logs_append_batch = gw_sqlite_logs_append_batch, \
    .logs_get = gw_sqlite_logs_get, \
    .logs_dropped = gw_sqlite_logs_dropped, \
    .env_get = gw_sqlite_env_get, \
    .env_set = gw_sqlite_env_set, \
    .env_reencrypt = gw_sqlite_env_reencrypt, \
    .renew_take = gw_sqlite_renew_take, \
    .crl_number_next = gw_sqlite_crl_number_next, \
}

const gw_store_ops gw_sqlite_ops = SQL_STORE_OPS;
const gw_store_ops gw_pg_ops = SQL_STORE_OPS;
