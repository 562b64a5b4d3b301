/* Internal to the SQL backends of the store (gw_sqlite*.c, gw_pg.c): their
 * handle, their statements and the helpers their files share. One handle
 * type serves two engines: sqlite (the embedded default) and PostgreSQL
 * (several gateways on one database, docs/operations.md); the operations in
 * gw_sqlite_sandbox.c, _cert.c, _policy.c, _log.c and _env.c are the same
 * code on both, so the contract of gw_store.h is implemented once. What
 * differs per engine is here: statements (a few rewritten for PostgreSQL in
 * gw_pg.c), parameters, rows, transactions and errors. Nothing outside
 * gateway/store/ includes this; the rest of the gateway sees gw_store.h. */
#ifndef GW_SQLITE_INTERNAL_H
#define GW_SQLITE_INTERNAL_H

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gw_store.h"
#include "gw_store_backend.h"

#define ENV_NAME_MAX 4096
#define REVOKED_BY_DELETE "sandbox deleted"
#define SB_ID_CAP sizeof(((gw_sandbox_rec *)0)->id)

enum stmt_id {
    ST_BEGIN_WRITE,
    ST_BEGIN_READ,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_MIGRATIONS_TABLE_EXISTS,
    ST_SCHEMA_VERSION,
    ST_MIGRATION_INSERT,
    ST_SB_INSERT,
    ST_SB_GET,
    ST_SB_FIND,
    ST_SB_LIST,
    ST_SB_META,
    ST_SB_SET_STATE,
    ST_SB_MARK_DELETED,
    ST_SB_SET_POLICY_VERSION,
    ST_SB_SET_LOG_SEQ,
    ST_SB_SET_DRAFT_SEQ,
    ST_SB_LOG_BATCH,
    ST_SB_SET_LOG_BATCH,
    ST_CERT_INSERT,
    ST_CERT_GET,
    ST_CERT_LIST_SB,
    ST_CERT_LIST_ALL,
    ST_CERT_PAGE,
    ST_CERT_REVOKE,
    ST_CERT_REVOKE_SB,
    ST_CERT_PARENT,
    ST_CERT_REVOKE_LINEAGE,
    ST_CERT_LINEAGE,
    ST_REVOKED_EACH,
    ST_POLICY_INSERT,
    ST_POLICY_GET,
    ST_PSTATUS_INSERT,
    ST_PSTATUS_LATEST,
    ST_DRAFT_INSERT,
    ST_DRAFT_GET,
    ST_DRAFT_PAGE,
    ST_LOG_INSERT,
    ST_LOG_GET,
    ST_DROP_INSERT,
    ST_DROP_SUM,
    ST_ENV_DELETE,
    ST_ENV_INSERT,
    ST_ENV_GET,
    ST_ENV_STALE,
    ST_ENV_UPDATE,
    ST_SB_SET_STATUS,
    ST_SB_SET_STATUS_KEEP,
    ST_SB_DETAIL,
    ST_CMD_INSERT,
    ST_CMD_GET,
    ST_SENV_INSERT,
    ST_SENV_GET,
    ST_SB_TEARDOWNS,
    ST_SB_TEARDOWN_DONE,
    ST_RENEW_PRUNE,   /* PostgreSQL only (gw_pg.c) */
    ST_RENEW_TAKE,
    ST_CRL_NUMBER,
    ST__COUNT
};

/* A SQL store: the backend-independent head first (gw_store_backend.h).
 * Exactly one of db (sqlite) and pg (PostgreSQL) is set. */
typedef struct gw_sqlite {
    gw_store base;
    sqlite3 *db;
    const gw_keyring *keys;
    sqlite3_stmt *stmts[ST__COUNT];
    /* PostgreSQL (gw_pg.c) */
    PGconn *pg;
    bool pg_prepared[ST__COUNT];      /* per connection: reset on reconnect */
    bool pg_in_tx;
    bool pg_read_only;
    int64_t pg_retry_after_ms;        /* no reconnect attempt before (monotonic) */
    int64_t changes;                  /* rows the last statement changed */
} gw_sqlite;

/* One result row, whichever engine read it. Blobs PostgreSQL sends as text
 * are decoded on first use and freed when the row is done. */
#define GW_ROW_BLOBS 8
typedef struct gw_row {
    sqlite3_stmt *st;
    const PGresult *res;
    int i;
    unsigned char *blob[GW_ROW_BLOBS];
    size_t blob_len[GW_ROW_BLOBS];
} gw_row;

int64_t gw_col_i64(gw_row *r, int i);
bool gw_col_null(gw_row *r, int i);
const void *gw_col_blob(gw_row *r, int i);
size_t gw_col_bytes(gw_row *r, int i);
/* Rows changed by the last statement run on s. */
int64_t gw_sql_changes(gw_sqlite *s);

gw_sqlite *gw_sqlite_of(gw_store *base);

struct query;

/* ---- the PostgreSQL engine (gw_pg.c) ---- */
extern const gw_store_ops gw_pg_ops;
const char *gw_pg_sql(enum stmt_id id, const char *sqlite_sql);
/* A new connection with the store's defaults (connect timeout, application
 * name); *out is set (and must be PQfinish'ed) even when this fails. */
int gw_pg_conn_open(const char *dsn, PGconn **out);
int gw_pg_connect(gw_sqlite *s, const char *dsn);
void gw_pg_disconnect(gw_sqlite *s);
int gw_pg_ready(gw_sqlite *s);
int gw_pg_prepare(gw_sqlite *s, enum stmt_id id, const char *sql);
int gw_pg_run(struct query *q, PGresult **out);
int gw_pg_simple(gw_sqlite *s, const char *sql, const char *what);
int gw_pg_tx_begin(gw_sqlite *s, int write);
int gw_pg_tx_commit(gw_sqlite *s);
void gw_pg_tx_abort(gw_sqlite *s);
int gw_pg_migrations_table(gw_sqlite *s);
int gw_pg_migration_run(gw_sqlite *s, int version, const char *what);

/* What the other tables need to know about a sandbox. */
struct gw_sql_sb_meta {
    int live;
    int64_t policy_version, log_seq, draft_seq;
};

/* gw_q_open, then the parameters in order (gw_q_text, gw_q_i64, q_blob), then one of
 * gw_q_exec (no rows), gw_q_row (the first row) or gw_q_each (every row). Bind
 * failures accumulate and surface at the step, so call sites check nothing
 * in between; the last call always ends the use (reset, bindings cleared),
 * so SQLITE_STATIC data need only live until it returns. */
#define GW_Q_MAX_PARAMS 12
struct query {
    gw_sqlite *s;
    sqlite3_stmt *st;
    int bound;        /* the first bind failure; SQLITE_OK while all is well */
    int next;         /* the next parameter index */
    const char *what; /* names the statement in error messages */
    /* PostgreSQL: the statement and its parameters (text, or binary blobs) */
    enum stmt_id id;
    const char *sql;  /* its text (to prepare again on a new connection) */
    const char *pv[GW_Q_MAX_PARAMS];
    int pl[GW_Q_MAX_PARAMS], pf[GW_Q_MAX_PARAMS];
    char num[GW_Q_MAX_PARAMS][24];
};

/* Reads the current row into elem; ctx is the caller's. */
typedef int (*row_fn)(void *ctx, gw_row *st, void *elem);

int gw_sql_fail_at(gw_sqlite *s, int rc, const char *file, int line, const char *what);
#define DB_FAIL(s, rc, what) gw_sql_fail_at((s), (rc), __FILE__, __LINE__, (what))

/* One use of a cached statement: gw_q_open, the parameters in order, then
 * gw_q_exec (no rows), gw_q_row (the first row) or gw_q_each (every row). */
int gw_q_each(struct query *q, row_fn read, void *ctx, void *v, size_t *cnt, size_t size);
int gw_q_exec(struct query *q);
void gw_q_i64(struct query *q, int64_t v);
int gw_q_open(gw_sqlite *s, enum stmt_id id, const char *what, struct query *q);
int gw_q_row(struct query *q, row_fn read, void *ctx, void *elem);
void gw_q_text(struct query *q, const char *v);

/* Columns and row readers. */
int gw_sql_col_text(gw_row *st, int i, char *buf, size_t cap, const char *what);
int gw_sql_col_text_dup(gw_row *st, int i, char **out, const char *what);
int gw_sql_row_cert(void *ctx, gw_row *st, void *elem);
int gw_sql_row_cert_pos(void *ctx, gw_row *st, void *elem);
int gw_sql_row_i64(void *ctx, gw_row *st, void *elem);
int gw_sql_row_sandbox(void *ctx, gw_row *st, void *elem);

/* Input checks (TSR_E_INPUT). */
int gw_sql_check_cert(const gw_cert_rec *c);
int gw_sql_check_env(const gw_env_var *env, size_t n);
int gw_sql_check_sandbox_id(const char *id);
int gw_sql_check_str(const char *v, size_t cap, int may_be_empty, const char *what);
int gw_sql_clamp_limit(int limit, int64_t *out);

/* Transactions: BEGIN IMMEDIATE for writes, DEFERRED for reads (sqlite);
 * on PostgreSQL a write transaction first takes the store's transaction
 * advisory lock, so writers from every gateway queue on it as sqlite's
 * writers queue on the file (gw_pg.c says why). A savepoint marks where a
 * refused statement is undone without ending the transaction (PostgreSQL
 * ends it otherwise; on sqlite the failed statement alone is undone, so the
 * savepoint calls do nothing there). */
int gw_sql_savepoint(gw_sqlite *s);
int gw_sql_savepoint_release(gw_sqlite *s);
int gw_sql_savepoint_undo(gw_sqlite *s);
void gw_sql_tx_abort(gw_sqlite *s);
int gw_sql_tx_begin(gw_sqlite *s, int write);
int gw_sql_tx_commit(gw_sqlite *s);

/* Rows more than one record type writes (a sandbox's first certificate,
 * policy and provider environment at create). */
int gw_sql_cert_insert_row(gw_sqlite *s, const gw_cert_rec *c);
int gw_sql_env_delete_all(gw_sqlite *s, const char *sandbox_id);
int gw_sql_env_insert_all(gw_sqlite *s, const char *sandbox_id, const gw_env_var *env, size_t n);
int gw_sql_env_open_value(gw_sqlite *s, const char *sandbox_id, const char *name, int64_t version,
                          const void *nonce, size_t nonce_len, const void *ct, size_t ct_len,
                          uint8_t **value, size_t *len);
int gw_sql_env_write_row(gw_sqlite *s, enum stmt_id id, const char *sandbox_id, const char *name,
                         const uint8_t *value, size_t value_len);
int gw_sql_list_of_sandbox(gw_sqlite *s, const char *sandbox_id, struct query *q, row_fn read,
                           void *ctx, void *v, size_t *cnt, size_t size);
int gw_sql_policy_insert_row(gw_sqlite *s, const char *sandbox_id, int64_t version,
                             const char *yaml, int64_t now);
int gw_sql_sb_meta(gw_sqlite *s, const char *id, struct gw_sql_sb_meta *m);
int gw_sql_sb_meta_live(gw_sqlite *s, const char *id, struct gw_sql_sb_meta *m);
int gw_sql_set_counter(gw_sqlite *s, enum stmt_id id, const char *sandbox_id, int64_t v,
                       const char *what);

/* The operations (gw_store.h says what each does). */
void gw_sqlite_close(gw_store *base);
void gw_sqlite_set_keyring(gw_store *base, const gw_keyring *keys);
int gw_sqlite_schema_version(gw_store *base, int64_t *version);
int gw_sqlite_set_read_only(gw_store *base, bool on);
int gw_sqlite_sandbox_create(gw_store *base, const gw_sandbox_rec *sb, const char *policy_yaml,
                             const gw_env_var *env, size_t n_env, const gw_cert_rec *first_cert);
int gw_sqlite_sandbox_create_spec(gw_store *base, const gw_sandbox_rec *sb, const char *policy_yaml,
                                  const gw_env_var *env, size_t n_env,
                                  const gw_cert_rec *first_cert, const gw_sandbox_spec *spec);
int gw_sqlite_sandbox_spec_get(gw_store *base, const char *id, gw_sandbox_spec *out);
int gw_sqlite_sandbox_get(gw_store *base, const char *id, gw_sandbox_rec *out);
int gw_sqlite_sandbox_find_by_name(gw_store *base, const char *name, gw_sandbox_rec *out);
int gw_sqlite_sandbox_list(gw_store *base, const char *after_id, int limit, gw_sandbox_rec **out,
                           size_t *n);
int gw_sqlite_sandbox_set_state(gw_store *base, const char *id, const char *state);
int gw_sqlite_sandbox_set_status(gw_store *base, const char *id, const char *state, bool exited,
                                 int exit_code, const char *detail);
int gw_sqlite_teardowns(gw_store *base, const char *owner, int limit, gw_sandbox_rec **out,
                        size_t *n);
int gw_sqlite_teardown_done(gw_store *base, const char *id);
int gw_sqlite_sandbox_delete(gw_store *base, const char *id, int64_t now, int *revoked_count);
int gw_sqlite_cert_insert(gw_store *base, const gw_cert_rec *c);
int gw_sqlite_cert_insert_batch(gw_store *base, const gw_cert_rec *const *certs, size_t n,
                                enum tsr_errcat *results);
int gw_sqlite_cert_get(gw_store *base, const char *serial, gw_cert_rec *out);
int gw_sqlite_cert_list(gw_store *base, const char *sandbox_id, gw_cert_rec **out, size_t *n);
int gw_sqlite_cert_page(gw_store *base, const char *sandbox_id, int64_t after_row, int limit,
                        gw_cert_rec **out, size_t *n, int *more);
int gw_sqlite_cert_revoke(gw_store *base, const char *serial, const char *reason, int64_t now,
                          gw_cert_rec *out, gw_revoked_serial **lineage, size_t *n_lineage);
int gw_sqlite_revoked_each(gw_store *base, int64_t now,
                           int (*cb)(void *arg, const char *serial, int64_t not_after), void *arg);
int gw_sqlite_policy_get(gw_store *base, const char *sandbox_id, char **yaml, int64_t *version);
int gw_sqlite_policy_set(gw_store *base, const char *sandbox_id, const char *yaml, int64_t now,
                         int64_t *new_version);
int gw_sqlite_policy_status_add(gw_store *base, const char *sandbox_id, int64_t version, int status,
                                const char *message, int64_t now);
int gw_sqlite_policy_status_latest(gw_store *base, const char *sandbox_id, int64_t version,
                                   int *status, char **message, int64_t *reported_at);
int gw_sqlite_draft_add(gw_store *base, const char *sandbox_id, const gw_policy_chunk *chunks,
                        size_t n, int64_t now);
int gw_sqlite_draft_get(gw_store *base, const char *sandbox_id, gw_policy_chunk **out, size_t *n);
int gw_sqlite_draft_page(gw_store *base, const char *sandbox_id, int64_t after_seq, int limit,
                         size_t max_bytes, gw_policy_chunk **out, size_t *n, int64_t *next_seq);
int gw_sqlite_logs_append(gw_store *base, const char *sandbox_id, const gw_log_line *lines,
                          size_t n, int64_t dropped, int64_t now);
int gw_sqlite_logs_append_batch(gw_store *base, const char *sandbox_id, const char *session,
                                int64_t batch_seq, const gw_log_line *lines, size_t n,
                                int64_t dropped, int64_t now, int *duplicate);
int gw_sqlite_logs_get(gw_store *base, const char *sandbox_id, int64_t after_seq, int limit,
                       gw_log_line **out, size_t *n);
int gw_sqlite_logs_dropped(gw_store *base, const char *sandbox_id, int64_t *total);
int gw_sqlite_env_get(gw_store *base, const char *sandbox_id, gw_env_var **out, size_t *n);
int gw_sqlite_env_set(gw_store *base, const char *sandbox_id, const gw_env_var *env, size_t n);
int gw_sqlite_env_reencrypt(gw_store *base, size_t *count);
int gw_sqlite_crl_number_next(gw_store *base, uint64_t floor, uint64_t *number, bool *shared);
int gw_sqlite_renew_take(gw_store *base, const char *sandbox_id, int limit, int64_t window_ms,
                         bool *shared, bool *allowed);

#endif
