/* sqlite3 storage for the gateway. See gw_store.h for the contract.
 *
 * Structure: every SQL text lives in stmt_sql[] (prepared once per
 * connection, always bound with parameters); every use of a statement goes
 * through struct query (q_open, positional binds, then q_exec / q_row /
 * q_each, which always reset it) and row readers are row_fn callbacks;
 * small return-style helpers run one statement each; public functions
 * validate their input, then run helpers inside one transaction (BEGIN
 * IMMEDIATE for writes, so concurrent writers queue on the busy timeout
 * instead of failing on a lock upgrade) and roll back on any failure. */
#include "gw_store.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gw_metrics.h"
#include "gw_secretbox.h"
#include "gw_store_schema.h"
#include "tsr_fs.h"
#include "tsr_time.h"

#define ENV_NAME_MAX 4096
#define REVOKED_BY_DELETE "sandbox deleted"

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
    ST__COUNT
};

#define SB_COLS "id, name, driver, state, created_at, deleted_at, policy_version, image, exit_code"
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
                     "policy_version, image) VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6, ?7)",
    [ST_SB_GET] = "SELECT " SB_COLS " FROM sandboxes WHERE id = ?1",
    [ST_SB_FIND] = "SELECT " SB_COLS " FROM sandboxes WHERE name = ?1 AND deleted_at IS NULL",
    [ST_SB_LIST] = "SELECT " SB_COLS " FROM sandboxes WHERE deleted_at IS NULL AND id > ?1 "
                   "ORDER BY id LIMIT ?2",
    [ST_SB_META] = "SELECT deleted_at IS NULL, policy_version, log_seq, draft_seq "
                   "FROM sandboxes WHERE id = ?1",
    [ST_SB_SET_STATE] = "UPDATE sandboxes SET state = ?2 WHERE id = ?1",
    [ST_SB_MARK_DELETED] =
        "UPDATE sandboxes SET deleted_at = ?2 WHERE id = ?1 AND deleted_at IS NULL",
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

struct gw_store {
    sqlite3 *db;
    const gw_keyring *keys;
    sqlite3_stmt *stmts[ST__COUNT];
};

/* What the other tables need to know about a sandbox. */
struct sb_meta {
    int live;
    int64_t policy_version, log_seq, draft_seq;
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

static int db_fail_at(gw_store *s, int rc, const char *file, int line, const char *what)
{
    if (category_of(rc) == TSR_E_IO) gw_metrics_store_error();
    return tsr_fail_at(category_of(rc), file, line, "database: %s: %s (%s)", what,
                       sqlite3_errmsg(s->db), sqlite3_errstr(rc));
}
#define DB_FAIL(s, rc, what) db_fail_at((s), (rc), __FILE__, __LINE__, (what))

/* ---- statements --------------------------------------------------------------- */

static int stmt(gw_store *s, enum stmt_id id, sqlite3_stmt **out)
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
static int step(gw_store *s, sqlite3_stmt *st, int bound, const char *what)
{
    int rc = bound == SQLITE_OK ? sqlite3_step(st) : bound;
    if (rc == SQLITE_ROW) return 1;
    if (rc == SQLITE_DONE) return 0;
    return DB_FAIL(s, rc, what);
}

/* Run a statement that returns no rows, then reset it. */
static int exec_done(gw_store *s, sqlite3_stmt *st, int bound, const char *what)
{
    int r = step(s, st, bound, what);
    done(st);
    if (r < 0) return -1;
    TSR_ENSURE(r == 0, TSR_E_INTERNAL, "database: %s returned rows", what);
    return 0;
}

static int exec_plain(gw_store *s, enum stmt_id id, const char *what)
{
    sqlite3_stmt *st = NULL;
    TSR_GUARD(stmt(s, id, &st));
    return exec_done(s, st, SQLITE_OK, what);
}

static int grow(void *v, size_t *cap, size_t n, size_t size);

/* ---- one use of a cached statement ------------------------------------------------ */

/* q_open, then the parameters in order (q_text, q_i64, q_blob), then one of
 * q_exec (no rows), q_row (the first row) or q_each (every row). Bind
 * failures accumulate and surface at the step, so call sites check nothing
 * in between; the last call always ends the use (reset, bindings cleared),
 * so SQLITE_STATIC data need only live until it returns. */
struct query {
    gw_store *s;
    sqlite3_stmt *st;
    int bound;        /* the first bind failure; SQLITE_OK while all is well */
    int next;         /* the next parameter index */
    const char *what; /* names the statement in error messages */
};

/* Reads the current row into elem; ctx is the caller's. */
typedef int (*row_fn)(void *ctx, sqlite3_stmt *st, void *elem);

static int q_open(gw_store *s, enum stmt_id id, const char *what, struct query *q)
{
    *q = (struct query){.s = s, .st = NULL, .bound = SQLITE_OK, .next = 1, .what = what};
    return stmt(s, id, &q->st);
}

static void q_text(struct query *q, const char *v) { bind_text(q->st, q->next++, v, &q->bound); }

static void q_i64(struct query *q, int64_t v) { bind_i64(q->st, q->next++, v, &q->bound); }

static void q_blob(struct query *q, const void *v, size_t len)
{
    bind_blob(q->st, q->next++, v, len, &q->bound);
}

static int q_exec(struct query *q) { return exec_done(q->s, q->st, q->bound, q->what); }

/* The first row, read by `read` when not NULL: 1 = a row, 0 = none,
 * -1 = failure (recorded). */
static int q_row(struct query *q, row_fn read, void *ctx, void *elem)
{
    int r = step(q->s, q->st, q->bound, q->what);
    if (r == 1 && read != NULL && read(ctx, q->st, elem) != 0) r = -1;
    done(q->st);
    return r;
}

/* Every row, appended to the array *v (a T **, NULL and *cnt 0 at first) of
 * elements of `size`. An element is zeroed and counted before it is read,
 * so the caller's free function also releases a half-read one. */
static int q_each(struct query *q, row_fn read, void *ctx, void *v, size_t *cnt, size_t size)
{
    int rc = -1;
    size_t cap = 0;
    TSR_TRY_ENSURE(*(void **)v == NULL && *cnt == 0, TSR_E_INTERNAL, "q_each: array not empty");
    for (;;) {
        int r = step(q->s, q->st, q->bound, q->what);
        if (r < 0) goto out; /* recorded by step() */
        if (r == 0) break;
        TSR_TRY(grow(v, &cap, *cnt, size));
        char *elem = (char *)*(void **)v + *cnt * size;
        (*cnt)++;
        TSR_TRY(read(ctx, q->st, elem));
    }
    rc = 0;
out:
    done(q->st);
    return rc;
}

/* ---- columns ------------------------------------------------------------------- */

/* Copy a TEXT column into a fixed buffer; NULL reads as "". Anything that
 * does not fit, or holds a NUL, is corruption: fail closed. */
static int col_text(sqlite3_stmt *st, int i, char *buf, size_t cap, const char *what)
{
    const unsigned char *v = sqlite3_column_text(st, i);
    size_t n = (size_t)sqlite3_column_bytes(st, i);
    if (v == NULL) {
        TSR_ENSURE(sqlite3_column_type(st, i) == SQLITE_NULL, TSR_E_INTERNAL, "out of memory");
        buf[0] = '\0';
        return 0;
    }
    TSR_ENSURE(n < cap && strlen((const char *)v) == n, TSR_E_IO,
               "database is corrupt: %s does not fit", what);
    memcpy(buf, v, n + 1);
    return 0;
}

static int col_text_dup(sqlite3_stmt *st, int i, char **out, const char *what)
{
    *out = NULL;
    const unsigned char *v = sqlite3_column_text(st, i);
    size_t n = (size_t)sqlite3_column_bytes(st, i);
    if (v == NULL) TSR_ENSURE(sqlite3_column_type(st, i) == SQLITE_NULL, TSR_E_INTERNAL,
                              "out of memory");
    TSR_ENSURE(v == NULL || strlen((const char *)v) == n, TSR_E_IO,
               "database is corrupt: %s holds a NUL byte", what);
    char *p = malloc(n + 1);
    TSR_ENSURE(p != NULL, TSR_E_INTERNAL, "out of memory");
    if (n > 0) memcpy(p, v, n);
    p[n] = '\0';
    *out = p;
    return 0;
}

static int read_sandbox(sqlite3_stmt *st, gw_sandbox_rec *out)
{
    memset(out, 0, sizeof *out);
    TSR_GUARD(col_text(st, 0, out->id, sizeof out->id, "sandbox id"));
    TSR_GUARD(col_text(st, 1, out->name, sizeof out->name, "sandbox name"));
    TSR_GUARD(col_text(st, 2, out->driver, sizeof out->driver, "sandbox driver"));
    TSR_GUARD(col_text(st, 3, out->state, sizeof out->state, "sandbox state"));
    out->created_at = sqlite3_column_int64(st, 4);
    out->deleted_at = sqlite3_column_int64(st, 5); /* NULL reads as 0 = live */
    out->policy_version = sqlite3_column_int64(st, 6);
    TSR_GUARD(col_text(st, 7, out->image, sizeof out->image, "sandbox image"));
    out->exited = sqlite3_column_type(st, 8) != SQLITE_NULL; /* NULL: no exit known */
    int64_t code = sqlite3_column_int64(st, 8);
    TSR_ENSURE(code >= INT32_MIN && code <= INT32_MAX, TSR_E_IO,
               "database is corrupt: sandbox %s has exit code %lld", out->id, (long long)code);
    out->exit_code = (int)code;
    return 0;
}

static int read_cert(sqlite3_stmt *st, gw_cert_rec *out)
{
    memset(out, 0, sizeof *out);
    TSR_GUARD(col_text(st, 0, out->serial, sizeof out->serial, "certificate serial"));
    TSR_GUARD(col_text(st, 1, out->spiffe_id, sizeof out->spiffe_id, "certificate SPIFFE ID"));
    TSR_GUARD(col_text(st, 2, out->sandbox_id, sizeof out->sandbox_id, "certificate sandbox"));
    out->not_before = sqlite3_column_int64(st, 3);
    out->not_after = sqlite3_column_int64(st, 4);
    out->issued_at = sqlite3_column_int64(st, 5);
    out->revoked_at = sqlite3_column_int64(st, 6);
    TSR_GUARD(col_text(st, 7, out->revocation_reason, sizeof out->revocation_reason,
                       "revocation reason"));
    TSR_GUARD(col_text(st, 8, out->renewed_from, sizeof out->renewed_from, "renewed_from"));
    /* A revoked row must never read as valid. */
    TSR_ENSURE(sqlite3_column_type(st, 6) == SQLITE_NULL || out->revoked_at > 0, TSR_E_IO,
               "database is corrupt: certificate %s has revoked_at %lld", out->serial,
               (long long)out->revoked_at);
    return 0;
}
/* row_fn adapters */
static int row_sandbox(void *ctx, sqlite3_stmt *st, void *elem)
{
    (void)ctx;
    return read_sandbox(st, elem);
}

static int row_cert(void *ctx, sqlite3_stmt *st, void *elem)
{
    (void)ctx;
    return read_cert(st, elem);
}

/* A certificate followed by its rowid (column 9). */
static int row_cert_pos(void *ctx, sqlite3_stmt *st, void *elem)
{
    (void)ctx;
    gw_cert_rec *c = elem;
    TSR_GUARD(read_cert(st, c));
    c->row = sqlite3_column_int64(st, 9);
    return 0;
}

/* Column 0 as an int64_t. */
static int row_i64(void *ctx, sqlite3_stmt *st, void *elem)
{
    (void)ctx;
    *(int64_t *)elem = sqlite3_column_int64(st, 0);
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
static int check_str(const char *v, size_t cap, int may_be_empty, const char *what)
{
    TSR_ENSURE(v != NULL, TSR_E_INPUT, "%s is missing", what);
    size_t n = strnlen(v, cap);
    TSR_ENSURE(n < cap, TSR_E_INPUT, "%s is longer than %zu bytes", what, cap - 1);
    TSR_ENSURE(may_be_empty || n > 0, TSR_E_INPUT, "%s is empty", what);
    return 0;
}

#define SB_ID_CAP sizeof(((gw_sandbox_rec *)0)->id)

static int check_sandbox_id(const char *id) { return check_str(id, SB_ID_CAP, 0, "sandbox id"); }

static int check_cert(const gw_cert_rec *c)
{
    TSR_ENSURE(c != NULL, TSR_E_INPUT, "certificate record is missing");
    TSR_GUARD(check_str(c->serial, sizeof c->serial, 0, "certificate serial"));
    TSR_GUARD(check_str(c->spiffe_id, sizeof c->spiffe_id, 0, "certificate SPIFFE ID"));
    TSR_GUARD(check_str(c->sandbox_id, sizeof c->sandbox_id, 1, "certificate sandbox id"));
    TSR_GUARD(check_str(c->renewed_from, sizeof c->renewed_from, 1, "renewed_from serial"));
    TSR_ENSURE(c->renewed_from[0] == '\0' || c->sandbox_id[0] != '\0', TSR_E_INPUT,
               "certificate %s: only sandbox certificates are renewed", c->serial);
    TSR_ENSURE(c->revoked_at == 0, TSR_E_INPUT, "a new certificate cannot be revoked");
    TSR_ENSURE(c->not_before <= c->not_after, TSR_E_INPUT,
               "certificate %s: notBefore is after notAfter", c->serial);
    return 0;
}

static int check_env(const gw_env_var *env, size_t n)
{
    TSR_ENSURE(n == 0 || env != NULL, TSR_E_INPUT, "provider env is missing");
    for (size_t i = 0; i < n; i++) {
        TSR_GUARD(check_str(env[i].name, ENV_NAME_MAX + 1, 0, "provider env name"));
        TSR_ENSURE(env[i].value != NULL, TSR_E_INPUT, "provider env %s has no value",
                   env[i].name);
        TSR_ENSURE(strlen(env[i].value) <= GW_SECRETBOX_MAX_PLAINTEXT, TSR_E_LIMIT,
                   "provider env %s is too large", env[i].name);
    }
    return 0;
}

static int clamp_limit(int limit, int64_t *out)
{
    TSR_ENSURE(limit > 0, TSR_E_INPUT, "limit must be positive, not %d", limit);
    *out = limit > GW_STORE_MAX_PAGE ? GW_STORE_MAX_PAGE : limit;
    return 0;
}

/* ---- transactions ------------------------------------------------------------------ */

static int tx_begin(gw_store *s, int write)
{
    return exec_plain(s, write ? ST_BEGIN_WRITE : ST_BEGIN_READ, "begin transaction");
}

static int tx_commit(gw_store *s) { return exec_plain(s, ST_COMMIT, "commit"); }

/* Roll back whatever is open. Keeps the recorded error: it is the caller's. */
static void tx_abort(gw_store *s)
{
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

static int row_sb_meta(void *ctx, sqlite3_stmt *st, void *elem)
{
    (void)ctx;
    struct sb_meta *m = elem;
    m->live = sqlite3_column_int(st, 0);
    m->policy_version = sqlite3_column_int64(st, 1);
    m->log_seq = sqlite3_column_int64(st, 2);
    m->draft_seq = sqlite3_column_int64(st, 3);
    return 0;
}

static int sb_meta(gw_store *s, const char *id, struct sb_meta *m)
{
    struct query q;
    TSR_GUARD(q_open(s, ST_SB_META, "read sandbox", &q));
    q_text(&q, id);
    int r = q_row(&q, row_sb_meta, NULL, m);
    if (r < 0) return -1;
    TSR_ENSURE(r == 1, TSR_E_NOTFOUND, "sandbox %s not found", id);
    return 0;
}

static int sb_meta_live(gw_store *s, const char *id, struct sb_meta *m)
{
    TSR_GUARD(sb_meta(s, id, m));
    TSR_ENSURE(m->live, TSR_E_STATE, "sandbox %s is deleted", id);
    return 0;
}

/* Every row of q (opened and bound by the caller; always ended here) in one
 * read transaction that first checks the sandbox exists (NOTFOUND
 * otherwise; sandbox_id NULL: no check). On failure the caller frees *v's
 * first *cnt elements. */
static int list_of_sandbox(gw_store *s, const char *sandbox_id, struct query *q, row_fn read,
                           void *ctx, void *v, size_t *cnt, size_t size)
{
    int rc = -1;
    struct sb_meta m;
    TSR_TRY(tx_begin(s, 0));
    if (sandbox_id != NULL) TSR_TRY(sb_meta(s, sandbox_id, &m));
    rc = q_each(q, read, ctx, v, cnt, size); /* ends q */
    q = NULL;
    if (rc == 0) rc = tx_commit(s);
out:
    if (q != NULL) done(q->st);
    if (rc != 0) tx_abort(s);
    return rc;
}

static int set_counter(gw_store *s, enum stmt_id id, const char *sandbox_id, int64_t v,
                       const char *what)
{
    struct query q;
    TSR_GUARD(q_open(s, id, what, &q));
    q_text(&q, sandbox_id);
    q_i64(&q, v);
    return q_exec(&q);
}

struct cert_parent {
    char sandbox_id[SB_ID_CAP];
    int live;
};

static int row_parent(void *ctx, sqlite3_stmt *st, void *elem)
{
    (void)ctx;
    struct cert_parent *p = elem;
    TSR_GUARD(col_text(st, 0, p->sandbox_id, sizeof p->sandbox_id, "certificate sandbox"));
    p->live = sqlite3_column_int(st, 1) != 0;
    return 0;
}

/* The certificate a renewal was made from: recorded, of the same sandbox,
 * not revoked. Called inside the insert's transaction. */
static int check_renewed_from(gw_store *s, const gw_cert_rec *c)
{
    if (c->renewed_from[0] == '\0') return 0;
    struct query q;
    struct cert_parent parent;
    TSR_GUARD(q_open(s, ST_CERT_PARENT, "read renewed certificate", &q));
    q_text(&q, c->renewed_from);
    int r = q_row(&q, row_parent, NULL, &parent);
    if (r < 0) return -1;
    /* Never true of a renewal the gateway made: fail closed all the same. */
    TSR_ENSURE(r == 1 && strcmp(parent.sandbox_id, c->sandbox_id) == 0, TSR_E_UNAUTH,
               "certificate not recorded for this sandbox");
    TSR_ENSURE(parent.live, TSR_E_UNAUTH, "certificate revoked");
    return 0;
}

static int cert_insert_row(gw_store *s, const gw_cert_rec *c)
{
    struct query q;
    TSR_GUARD(check_renewed_from(s, c));
    TSR_GUARD(q_open(s, ST_CERT_INSERT, "insert certificate", &q));
    q_text(&q, c->serial);
    q_text(&q, c->spiffe_id);
    q_text(&q, c->sandbox_id[0] ? c->sandbox_id : NULL);
    q_i64(&q, c->not_before);
    q_i64(&q, c->not_after);
    q_i64(&q, c->issued_at);
    q_text(&q, c->renewed_from[0] ? c->renewed_from : NULL);
    if (q_exec(&q) == 0) return 0;
    if (tsr_errcat() == TSR_E_EXISTS)
        return TSR_FAIL(TSR_E_EXISTS, "certificate serial %s is already recorded", c->serial);
    return -1;
}

static int policy_insert_row(gw_store *s, const char *sandbox_id, int64_t version,
                             const char *yaml, int64_t now)
{
    struct query q;
    TSR_GUARD(q_open(s, ST_POLICY_INSERT, "insert policy", &q));
    q_text(&q, sandbox_id);
    q_i64(&q, version);
    q_text(&q, yaml);
    q_i64(&q, now);
    TSR_GUARD(q_exec(&q));
    return set_counter(s, ST_SB_SET_POLICY_VERSION, sandbox_id, version,
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
static int env_write_row(gw_store *s, enum stmt_id id, const char *sandbox_id,
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
    TSR_TRY(q_open(s, id, "write provider env", &q));
    q_text(&q, sandbox_id);
    q_text(&q, name);
    q_i64(&q, version);
    q_blob(&q, nonce, sizeof nonce);
    q_blob(&q, ct, ct_len);
    if (q_exec(&q) != 0) {
        if (tsr_errcat() == TSR_E_EXISTS)
            (void)TSR_FAIL(TSR_E_EXISTS, "provider env %s is given twice", name);
        goto out; /* recorded by q_exec() */
    }
    TSR_TRY_ENSURE(id != ST_ENV_UPDATE || sqlite3_changes(s->db) == 1, TSR_E_INTERNAL,
                   "provider env %s of sandbox %s vanished", name, sandbox_id);
    rc = 0;
out:
    free(aad);
    free(ct);
    return rc;
}

/* Decrypt one provider_env row's value; failures become TSR_E_STATE (the
 * stored secret is unusable, not the caller's input). */
static int env_open_value(gw_store *s, const char *sandbox_id, const char *name,
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

static int env_insert_all(gw_store *s, const char *sandbox_id, const gw_env_var *env, size_t n)
{
    for (size_t i = 0; i < n; i++)
        TSR_GUARD(env_write_row(s, ST_ENV_INSERT, sandbox_id, env[i].name,
                                (const uint8_t *)env[i].value, strlen(env[i].value)));
    return 0;
}

static int env_delete_all(gw_store *s, const char *sandbox_id)
{
    struct query q;
    TSR_GUARD(q_open(s, ST_ENV_DELETE, "delete provider env", &q));
    q_text(&q, sandbox_id);
    return q_exec(&q);
}

/* ---- open / close / migrations ------------------------------------------------------- */

/* Create the file 0600 (and its directory 0700) before sqlite does: sqlite
 * gives the -wal and -shm files the database file's mode. */
/* Create the file 0600 if missing, and keep it private. Never through an
 * open() and close() of an existing database: POSIX record locks belong to
 * the process, and closing ANY descriptor of the file drops every lock the
 * process's sqlite connections hold on it. Another process (a sqlite3 CLI,
 * a backup) then sees no one using the database and, when it closes,
 * checkpoints and deletes the WAL our connections go on writing into: their
 * later commits would be lost at the next start. */
static int prepare_file(const char *path)
{
    char copy[4096];
    TSR_ENSURE(strlen(path) < sizeof copy, TSR_E_INPUT, "database path too long");
    strcpy(copy, path);
    const char *dir = dirname(copy);
    if (strcmp(dir, ".") != 0 && strcmp(dir, "/") != 0) TSR_GUARD(tsr_mkdir_p(dir, 0700));

    struct stat st;
    if (lstat(path, &st) != 0) {
        TSR_ENSURE(errno == ENOENT, TSR_E_IO, "database %s: %s", path, strerror(errno));
        int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
        TSR_ENSURE(fd >= 0, TSR_E_IO, "create database %s: %s", path, strerror(errno));
        close(fd);   /* a new, empty file: no connection of ours has it open */
        return 0;
    }
    TSR_ENSURE(S_ISREG(st.st_mode), TSR_E_IO, "database %s is not a regular file", path);
    /* A write-protected file is left as it is: sqlite opens it read-only
     * and every write fails. */
    if ((st.st_mode & 077) != 0 && access(path, W_OK) == 0)
        TSR_ENSURE(chmod(path, st.st_mode & 0700) == 0, TSR_E_IO, "chmod database %s: %s", path,
                   strerror(errno));
    return 0;
}

/* Create or check the file, one thread at a time: a thread that created it
 * closes its descriptor before any other thread's connection can open it. */
static int prepare_file_once(const char *path)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    TSR_ENSURE(pthread_mutex_lock(&lock) == 0, TSR_E_INTERNAL, "store open lock");
    int rc = prepare_file(path);
    (void)pthread_mutex_unlock(&lock);
    return rc;
}

/* The first column of a pragma's first row as text into buf ("" if sqlite
 * answered no row or NULL). Returns the sqlite code. */
static int pragma_text(gw_store *s, const char *sql, char *buf, size_t cap)
{
    sqlite3_stmt *st = NULL;
    buf[0] = '\0';
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        if (t != NULL) snprintf(buf, cap, "%s", (const char *)t);
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

/* A pragma that answers one row; checks its text equals `want`. */
static int pragma_expect(gw_store *s, const char *sql, const char *want)
{
    char got[32];
    int rc = pragma_text(s, sql, got, sizeof got);
    if (rc != SQLITE_OK) return DB_FAIL(s, rc, sql);
    TSR_ENSURE(strcmp(got, want) == 0, TSR_E_IO, "database: %s gave '%s', need '%s'", sql, got,
               want);
    return 0;
}

/* WAL is a property of the file: set once, seen by every later connection.
 * Switching needs an exclusive lock and sqlite answers SQLITE_BUSY at once
 * (no busy handler) while other connections are opening, so retry until
 * the busy timeout. */
static int enable_wal(gw_store *s)
{
    char mode[32];
    int64_t deadline = tsr_monotonic_ms() + GW_STORE_BUSY_TIMEOUT_MS;
    for (;;) {
        int rc = pragma_text(s, "PRAGMA journal_mode", mode, sizeof mode);
        if (rc == SQLITE_OK && strcmp(mode, "wal") == 0) return 0;
        if (rc == SQLITE_OK) rc = pragma_text(s, "PRAGMA journal_mode=WAL", mode, sizeof mode);
        if (rc == SQLITE_OK && strcmp(mode, "wal") == 0) return 0;
        if ((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED && rc != SQLITE_OK)
            return DB_FAIL(s, rc, "enable WAL");
        TSR_ENSURE(rc != SQLITE_OK, TSR_E_IO, "database: journal mode is '%s', need 'wal'",
                   mode);
        TSR_ENSURE(tsr_monotonic_ms() < deadline, TSR_E_IO,
                   "database: enable WAL: %s (%s)", sqlite3_errmsg(s->db), sqlite3_errstr(rc));
        usleep(2000);
    }
}

static int read_schema_version(gw_store *s, int64_t *version)
{
    struct query q;
    int64_t tables = 0;
    *version = 0;
    TSR_GUARD(q_open(s, ST_MIGRATIONS_TABLE_EXISTS, "read schema", &q));
    if (q_row(&q, row_i64, NULL, &tables) < 0) return -1;
    if (tables <= 0) return 0;
    TSR_GUARD(q_open(s, ST_SCHEMA_VERSION, "read schema version", &q));
    if (q_row(&q, row_i64, NULL, version) < 0) return -1;
    return 0;
}

static int check_not_newer(int64_t version)
{
    TSR_ENSURE(version <= GW_STORE_SCHEMA_VERSION, TSR_E_STATE,
               "database schema version %lld is newer than this gateway (%d)",
               (long long)version, GW_STORE_SCHEMA_VERSION);
    return 0;
}

/* Apply the next migration, if one is due, in its own IMMEDIATE transaction
 * (so concurrent openers serialize and each migration runs exactly once).
 * *version is the version after. */
static int migrate_one(gw_store *s, int64_t *version)
{
    int rc = -1;
    char *errmsg = NULL;
    size_t n = 0;
    const gw_migration *m = gw_store_migrations(&n);

    TSR_TRY(tx_begin(s, 1));
    int erc = sqlite3_exec(s->db,
                           "CREATE TABLE IF NOT EXISTS schema_migrations ("
                           "  version    INTEGER PRIMARY KEY NOT NULL,"
                           "  applied_at INTEGER NOT NULL) STRICT",
                           NULL, NULL, NULL);
    if (erc != SQLITE_OK) {
        (void)DB_FAIL(s, erc, "create schema_migrations");
        goto out;
    }
    TSR_TRY(read_schema_version(s, version));
    TSR_TRY(check_not_newer(*version));
    if (*version < GW_STORE_SCHEMA_VERSION) {
        const gw_migration *next = &m[*version];
        TSR_TRY_ENSURE(next->version == *version + 1, TSR_E_INTERNAL,
                       "migration table out of order at %lld", (long long)*version);
        erc = sqlite3_exec(s->db, next->sql, NULL, NULL, &errmsg);
        if (erc != SQLITE_OK) {
            (void)TSR_FAIL(TSR_E_IO, "database: migration %d failed: %s", next->version,
                           errmsg ? errmsg : sqlite3_errstr(erc));
            goto out;
        }
        struct query q;
        TSR_TRY(q_open(s, ST_MIGRATION_INSERT, "record migration", &q));
        q_i64(&q, next->version);
        q_i64(&q, tsr_now_unix());
        TSR_TRY(q_exec(&q));
        *version = next->version;
    }
    TSR_TRY(tx_commit(s));
    rc = 0;
out:
    sqlite3_free(errmsg);
    if (rc != 0) tx_abort(s);
    return rc;
}

static int migrate(gw_store *s)
{
    int64_t version = 0;
    /* Read-only first: an up-to-date database is opened without a write
     * lock (and so also when the file is write-protected). */
    TSR_GUARD(read_schema_version(s, &version));
    TSR_GUARD(check_not_newer(version));
    while (version < GW_STORE_SCHEMA_VERSION) TSR_GUARD(migrate_one(s, &version));
    return 0;
}

static int configure(gw_store *s)
{
    int on = 0;
    sqlite3_extended_result_codes(s->db, 1);
    int rc = sqlite3_busy_timeout(s->db, GW_STORE_BUSY_TIMEOUT_MS);
    if (rc != SQLITE_OK) return DB_FAIL(s, rc, "busy timeout");
    /* Hardening: no schema tricks, no double-quoted string literals. */
    rc = sqlite3_db_config(s->db, SQLITE_DBCONFIG_DEFENSIVE, 1, &on);
    if (rc == SQLITE_OK) rc = sqlite3_db_config(s->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, &on);
    if (rc == SQLITE_OK) rc = sqlite3_db_config(s->db, SQLITE_DBCONFIG_DQS_DML, 0, &on);
    if (rc == SQLITE_OK) rc = sqlite3_db_config(s->db, SQLITE_DBCONFIG_DQS_DDL, 0, &on);
    if (rc == SQLITE_OK) rc = sqlite3_db_config(s->db, SQLITE_DBCONFIG_ENABLE_FKEY, 1, &on);
    if (rc != SQLITE_OK) return DB_FAIL(s, rc, "configure");
    TSR_ENSURE(on == 1, TSR_E_IO, "database: foreign keys cannot be enabled");
    TSR_GUARD(enable_wal(s));
    rc = sqlite3_exec(s->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
    if (rc != SQLITE_OK) return DB_FAIL(s, rc, "PRAGMA synchronous");
    TSR_GUARD(pragma_expect(s, "PRAGMA synchronous", "2"));
    rc = sqlite3_exec(s->db, "PRAGMA foreign_keys=ON", NULL, NULL, NULL);
    if (rc != SQLITE_OK) return DB_FAIL(s, rc, "PRAGMA foreign_keys");
    TSR_GUARD(pragma_expect(s, "PRAGMA foreign_keys", "1"));
    return 0;
}

int gw_store_open(const char *path, const gw_keyring *keys, gw_store **out)
{
    int rc = -1;
    gw_store *s = NULL;
    *out = NULL;
    TSR_TRY(check_str(path, 4096, 0, "database path"));
    TSR_TRY_ENSURE(sqlite3_threadsafe() != 0, TSR_E_INTERNAL,
                   "sqlite was built without thread support");
    TSR_TRY(prepare_file_once(path));
    s = calloc(1, sizeof *s);
    TSR_TRY_ENSURE(s != NULL, TSR_E_INTERNAL, "out of memory");
    s->keys = keys;
    int orc = sqlite3_open_v2(path, &s->db,
                              SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX |
                                  SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_EXRESCODE,
                              NULL);
    if (orc != SQLITE_OK) {
        (void)TSR_FAIL(TSR_E_IO, "open database %s: %s", path,
                       s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(orc));
        goto out;
    }
    TSR_TRY(configure(s));
    TSR_TRY(migrate(s));
    *out = s;
    s = NULL;
    rc = 0;
out:
    gw_store_close(s);
    return rc;
}

void gw_store_close(gw_store *s)
{
    if (s == NULL) return;
    tx_abort(s);
    for (size_t i = 0; i < ST__COUNT; i++) sqlite3_finalize(s->stmts[i]);
    sqlite3_close(s->db);
    free(s);
}

void gw_store_set_keyring(gw_store *s, const gw_keyring *keys) { s->keys = keys; }

int gw_store_schema_version(gw_store *s, int64_t *version)
{
    return read_schema_version(s, version);
}

int gw_store_set_read_only(gw_store *s, bool on)
{
    int rc = sqlite3_exec(s->db, on ? "PRAGMA query_only=1" : "PRAGMA query_only=0", NULL,
                          NULL, NULL);
    if (rc != SQLITE_OK) return DB_FAIL(s, rc, "PRAGMA query_only");
    return 0;
}

/* ---- sandboxes ------------------------------------------------------------------- */

static int check_sandbox_rec(const gw_sandbox_rec *sb)
{
    TSR_ENSURE(sb != NULL, TSR_E_INPUT, "sandbox record is missing");
    TSR_GUARD(check_str(sb->id, sizeof sb->id, 0, "sandbox id"));
    TSR_GUARD(check_str(sb->name, sizeof sb->name, 0, "sandbox name"));
    TSR_GUARD(check_str(sb->driver, sizeof sb->driver, 0, "sandbox driver"));
    TSR_GUARD(check_str(sb->state, sizeof sb->state, 0, "sandbox state"));
    TSR_GUARD(check_str(sb->image, sizeof sb->image, 1, "sandbox image"));
    TSR_ENSURE(sb->deleted_at == 0, TSR_E_INPUT, "a new sandbox cannot be deleted");
    return 0;
}

static int check_spec(const gw_sandbox_spec *spec)
{
    if (spec == NULL) return 0;
    TSR_ENSURE(spec->n_command == 0 || spec->command != NULL, TSR_E_INPUT, "command is missing");
    for (size_t i = 0; i < spec->n_command; i++)
        TSR_ENSURE(spec->command[i] != NULL, TSR_E_INPUT, "command[%zu] is missing", i);
    TSR_ENSURE(spec->n_env == 0 || spec->env != NULL, TSR_E_INPUT, "env is missing");
    for (size_t i = 0; i < spec->n_env; i++) {
        TSR_GUARD(check_str(spec->env[i].name, ENV_NAME_MAX + 1, 0, "env name"));
        TSR_ENSURE(spec->env[i].value != NULL, TSR_E_INPUT, "env %s has no value",
                   spec->env[i].name);
    }
    return 0;
}

/* The command's arguments and the plain env, in the caller's transaction. */
static int spec_insert_rows(gw_store *s, const char *sandbox_id, const gw_sandbox_spec *spec)
{
    struct query q;
    for (size_t i = 0; spec != NULL && i < spec->n_command; i++) {
        TSR_GUARD(q_open(s, ST_CMD_INSERT, "insert command", &q));
        q_text(&q, sandbox_id);
        q_i64(&q, (int64_t)i);
        q_text(&q, spec->command[i]);
        TSR_GUARD(q_exec(&q));
    }
    for (size_t i = 0; spec != NULL && i < spec->n_env; i++) {
        TSR_GUARD(q_open(s, ST_SENV_INSERT, "insert env", &q));
        q_text(&q, sandbox_id);
        q_text(&q, spec->env[i].name);
        q_text(&q, spec->env[i].value);
        if (q_exec(&q) != 0) {
            if (tsr_errcat() == TSR_E_EXISTS)
                return TSR_FAIL(TSR_E_INPUT, "env name %s is given twice", spec->env[i].name);
            return -1;
        }
    }
    return 0;
}

int gw_store_sandbox_create(gw_store *s, const gw_sandbox_rec *sb, const char *policy_yaml,
                            const gw_env_var *env, size_t n_env, const gw_cert_rec *first_cert)
{
    return gw_store_sandbox_create_spec(s, sb, policy_yaml, env, n_env, first_cert, NULL);
}

int gw_store_sandbox_create_spec(gw_store *s, const gw_sandbox_rec *sb, const char *policy_yaml,
                                 const gw_env_var *env, size_t n_env,
                                 const gw_cert_rec *first_cert, const gw_sandbox_spec *spec)
{
    int rc = -1;
    TSR_TRY(check_sandbox_rec(sb));
    TSR_TRY(check_env(env, n_env));
    TSR_TRY(check_spec(spec));
    TSR_TRY_ENSURE(n_env == 0 || s->keys != NULL, TSR_E_STATE,
                   "no keyring: provider env cannot be stored");
    if (first_cert != NULL) {
        TSR_TRY(check_cert(first_cert));
        TSR_TRY_ENSURE(strcmp(first_cert->sandbox_id, sb->id) == 0, TSR_E_INPUT,
                       "first certificate belongs to sandbox '%s', not %s",
                       first_cert->sandbox_id, sb->id);
    }
    int64_t now = sb->created_at;

    TSR_TRY(tx_begin(s, 1));
    struct query q;
    TSR_TRY(q_open(s, ST_SB_INSERT, "insert sandbox", &q));
    q_text(&q, sb->id);
    q_text(&q, sb->name);
    q_text(&q, sb->driver);
    q_text(&q, sb->state);
    q_i64(&q, sb->created_at);
    q_i64(&q, 0);
    q_text(&q, sb->image);
    if (q_exec(&q) != 0) {
        /* The recorded detail carries sqlite's message, which names the
         * column whose UNIQUE constraint failed. */
        if (tsr_errcat() == TSR_E_EXISTS && strstr(tsr_errmsg(), "sandboxes.name") != NULL)
            (void)TSR_FAIL(TSR_E_EXISTS, "a sandbox named %s already exists", sb->name);
        else if (tsr_errcat() == TSR_E_EXISTS)
            (void)TSR_FAIL(TSR_E_EXISTS, "sandbox id %s already exists", sb->id);
        goto out; /* recorded by q_exec() */
    }
    if (policy_yaml != NULL) TSR_TRY(policy_insert_row(s, sb->id, 1, policy_yaml, now));
    TSR_TRY(env_insert_all(s, sb->id, env, n_env));
    TSR_TRY(spec_insert_rows(s, sb->id, spec));
    if (first_cert != NULL) TSR_TRY(cert_insert_row(s, first_cert));
    TSR_TRY(tx_commit(s));
    rc = 0;
out:
    if (rc != 0) tx_abort(s);
    return rc;
}

static int sandbox_read_one(gw_store *s, enum stmt_id id, const char *key, gw_sandbox_rec *out,
                            const char *what)
{
    struct query q;
    TSR_GUARD(q_open(s, id, "read sandbox", &q));
    q_text(&q, key);
    int r = q_row(&q, row_sandbox, NULL, out);
    if (r < 0) return -1;
    TSR_ENSURE(r == 1, TSR_E_NOTFOUND, "%s %s not found", what, key);
    return 0;
}

int gw_store_sandbox_get(gw_store *s, const char *id, gw_sandbox_rec *out)
{
    TSR_GUARD(check_sandbox_id(id));
    return sandbox_read_one(s, ST_SB_GET, id, out, "sandbox");
}

int gw_store_sandbox_find_by_name(gw_store *s, const char *name, gw_sandbox_rec *out)
{
    TSR_GUARD(check_str(name, sizeof out->name, 0, "sandbox name"));
    return sandbox_read_one(s, ST_SB_FIND, name, out, "sandbox named");
}

int gw_store_sandbox_list(gw_store *s, const char *after_id, int limit, gw_sandbox_rec **out,
                          size_t *n)
{
    int rc = -1;
    int64_t lim = 0;
    gw_sandbox_rec *v = NULL;
    size_t cnt = 0;
    struct query q;
    *out = NULL;
    *n = 0;
    if (after_id == NULL) after_id = "";
    TSR_TRY(check_str(after_id, SB_ID_CAP, 1, "page token"));
    TSR_TRY(clamp_limit(limit, &lim));
    TSR_TRY(q_open(s, ST_SB_LIST, "list sandboxes", &q));
    q_text(&q, after_id);
    q_i64(&q, lim);
    TSR_TRY(q_each(&q, row_sandbox, NULL, &v, &cnt, sizeof *v));
    *out = v;
    *n = cnt;
    v = NULL;
    rc = 0;
out:
    free(v);
    return rc;
}

int gw_store_sandbox_set_state(gw_store *s, const char *id, const char *state)
{
    struct query q;
    TSR_GUARD(check_sandbox_id(id));
    TSR_GUARD(check_str(state, sizeof((gw_sandbox_rec *)0)->state, 0, "sandbox state"));
    TSR_GUARD(q_open(s, ST_SB_SET_STATE, "update sandbox state", &q));
    q_text(&q, id);
    q_text(&q, state);
    TSR_GUARD(q_exec(&q));
    TSR_ENSURE(sqlite3_changes(s->db) == 1, TSR_E_NOTFOUND, "sandbox %s not found", id);
    return 0;
}

int gw_store_sandbox_set_status(gw_store *s, const char *id, const char *state, bool exited,
                                int exit_code, const char *detail)
{
    struct query q;
    TSR_GUARD(check_sandbox_id(id));
    TSR_GUARD(check_str(state, sizeof((gw_sandbox_rec *)0)->state, 0, "sandbox state"));
    TSR_GUARD(q_open(s, detail != NULL ? ST_SB_SET_STATUS : ST_SB_SET_STATUS_KEEP,
                     "update sandbox state", &q));
    q_text(&q, id);
    q_text(&q, state);
    if (exited) q_i64(&q, exit_code);
    else q_text(&q, NULL);
    if (detail != NULL) q_text(&q, detail);
    TSR_GUARD(q_exec(&q));
    TSR_ENSURE(sqlite3_changes(s->db) == 1, TSR_E_NOTFOUND, "no live sandbox %s", id);
    return 0;
}

/* row_fn adapters for the spec: the state detail, an argument, a name and
 * value pair (malloc'd strings). */
static int row_detail(void *ctx, sqlite3_stmt *st, void *elem)
{
    (void)ctx;
    return col_text_dup(st, 0, elem, "state detail");
}

static int row_arg(void *ctx, sqlite3_stmt *st, void *elem)
{
    (void)ctx;
    return col_text_dup(st, 0, elem, "command argument");
}

static int row_plain_env(void *ctx, sqlite3_stmt *st, void *elem)
{
    (void)ctx;
    gw_env_var *v = elem;
    TSR_GUARD(col_text_dup(st, 0, &v->name, "env name"));
    return col_text_dup(st, 1, &v->value, "env value");
}

int gw_store_sandbox_spec_get(gw_store *s, const char *id, gw_sandbox_spec *out)
{
    int rc = -1;
    struct query q;
    memset(out, 0, sizeof *out);
    TSR_TRY(check_sandbox_id(id));
    TSR_TRY(tx_begin(s, 0));
    TSR_TRY(q_open(s, ST_SB_DETAIL, "read sandbox", &q));
    q_text(&q, id);
    char *detail = NULL;
    int r = q_row(&q, row_detail, NULL, &detail);
    if (r < 0) goto out;
    TSR_TRY_ENSURE(r == 1, TSR_E_NOTFOUND, "sandbox %s not found", id);
    out->state_detail = detail;
    TSR_TRY(q_open(s, ST_CMD_GET, "read command", &q));
    q_text(&q, id);
    TSR_TRY(q_each(&q, row_arg, NULL, &out->command, &out->n_command,
                   sizeof *out->command));
    TSR_TRY(q_open(s, ST_SENV_GET, "read env", &q));
    q_text(&q, id);
    TSR_TRY(q_each(&q, row_plain_env, NULL, &out->env, &out->n_env, sizeof *out->env));
    TSR_TRY(tx_commit(s));
    rc = 0;
out:
    if (rc != 0) {
        tx_abort(s);
        gw_store_free_spec(out);
    }
    return rc;
}

void gw_store_free_spec(gw_sandbox_spec *spec)
{
    if (spec == NULL) return;
    for (size_t i = 0; i < spec->n_command; i++) free(spec->command[i]);
    free(spec->command);
    for (size_t i = 0; i < spec->n_env; i++) {
        free(spec->env[i].name);
        free(spec->env[i].value);
    }
    free(spec->env);
    free(spec->state_detail);
    memset(spec, 0, sizeof *spec);
}

int gw_store_sandbox_delete(gw_store *s, const char *id, int64_t now, int *revoked_count)
{
    int rc = -1;
    struct sb_meta m;
    struct query q;
    if (revoked_count != NULL) *revoked_count = 0;
    TSR_TRY(check_sandbox_id(id));
    TSR_TRY_ENSURE(now > 0, TSR_E_INPUT, "deletion time must be positive");
    TSR_TRY(tx_begin(s, 1));
    TSR_TRY(sb_meta(s, id, &m));
    TSR_TRY_ENSURE(m.live, TSR_E_NOTFOUND, "sandbox %s is already deleted", id);
    TSR_TRY(set_counter(s, ST_SB_MARK_DELETED, id, now, "mark sandbox deleted"));
    TSR_TRY_ENSURE(sqlite3_changes(s->db) == 1, TSR_E_INTERNAL, "sandbox %s vanished", id);

    TSR_TRY(q_open(s, ST_CERT_REVOKE_SB, "revoke sandbox certificates", &q));
    q_text(&q, id);
    q_i64(&q, now);
    q_text(&q, REVOKED_BY_DELETE);
    TSR_TRY(q_exec(&q));
    int revoked = sqlite3_changes(s->db);
    TSR_TRY(env_delete_all(s, id));
    TSR_TRY(tx_commit(s));
    if (revoked_count != NULL) *revoked_count = revoked;
    rc = 0;
out:
    if (rc != 0) tx_abort(s);
    return rc;
}

/* ---- certificates --------------------------------------------------------------------- */

int gw_store_cert_insert(gw_store *s, const gw_cert_rec *c)
{
    int rc = -1;
    struct sb_meta m;
    TSR_TRY(check_cert(c));
    TSR_TRY(tx_begin(s, 1));
    /* Same transaction as the insert: a concurrent DeleteSandbox either
     * revokes this cert too or makes this insert fail. */
    if (c->sandbox_id[0] != '\0') TSR_TRY(sb_meta_live(s, c->sandbox_id, &m));
    TSR_TRY(cert_insert_row(s, c));
    TSR_TRY(tx_commit(s));
    rc = 0;
out:
    if (rc != 0) tx_abort(s);
    return rc;
}

/* Group commit: one transaction (one fsync) for n records. A record refused
 * on its own (bad input, sandbox missing or deleted, serial taken) only
 * fails itself: its statement is undone, the others go on. Any other failure
 * (I/O, busy, the commit) fails the whole batch and nothing is written. */
int gw_store_cert_insert_batch(gw_store *s, const gw_cert_rec *const *certs, size_t n,
                               enum tsr_errcat *results)
{
    int rc = -1;
    struct sb_meta m;
    TSR_TRY_ENSURE(n > 0 && certs != NULL && results != NULL, TSR_E_INPUT, "empty batch");
    for (size_t i = 0; i < n; i++) results[i] = TSR_E_NONE;
    TSR_TRY(tx_begin(s, 1));
    for (size_t i = 0; i < n; i++) {
        const gw_cert_rec *c = certs[i];
        if (check_cert(c) == 0 &&
            (c->sandbox_id[0] == '\0' || sb_meta_live(s, c->sandbox_id, &m) == 0) &&
            cert_insert_row(s, c) == 0)
            continue;
        enum tsr_errcat cat = tsr_errcat();
        if (cat != TSR_E_INPUT && cat != TSR_E_NOTFOUND && cat != TSR_E_STATE &&
            cat != TSR_E_EXISTS && cat != TSR_E_UNAUTH)
            goto out;
        results[i] = cat;
    }
    TSR_TRY(tx_commit(s));
    rc = 0;
out:
    if (rc != 0) tx_abort(s);
    return rc;
}

static int cert_read_one(gw_store *s, const char *serial, gw_cert_rec *out)
{
    struct query q;
    TSR_GUARD(q_open(s, ST_CERT_GET, "read certificate", &q));
    q_text(&q, serial);
    int r = q_row(&q, row_cert, NULL, out);
    if (r < 0) return -1;
    TSR_ENSURE(r == 1, TSR_E_NOTFOUND, "certificate %s not found", serial);
    return 0;
}

int gw_store_cert_get(gw_store *s, const char *serial, gw_cert_rec *out)
{
    TSR_GUARD(check_str(serial, sizeof out->serial, 0, "certificate serial"));
    return cert_read_one(s, serial, out);
}

int gw_store_cert_list(gw_store *s, const char *sandbox_id, gw_cert_rec **out, size_t *n)
{
    gw_cert_rec *v = NULL;
    size_t cnt = 0;
    struct query q;
    *out = NULL;
    *n = 0;
    if (sandbox_id != NULL) TSR_GUARD(check_sandbox_id(sandbox_id));
    TSR_GUARD(q_open(s, sandbox_id != NULL ? ST_CERT_LIST_SB : ST_CERT_LIST_ALL,
                     "list certificates", &q));
    if (sandbox_id != NULL) q_text(&q, sandbox_id);
    if (list_of_sandbox(s, sandbox_id, &q, row_cert, NULL, &v, &cnt, sizeof *v) != 0) {
        gw_store_free_certs(v, cnt);
        return -1;
    }
    *out = v;
    *n = cnt;
    return 0;
}

int gw_store_cert_page(gw_store *s, const char *sandbox_id, int64_t after_row, int limit,
                       gw_cert_rec **out, size_t *n, int *more)
{
    gw_cert_rec *v = NULL;
    size_t cnt = 0;
    int64_t lim = 0;
    struct query q;
    *out = NULL;
    *n = 0;
    *more = 0;
    TSR_GUARD(check_sandbox_id(sandbox_id));
    TSR_GUARD(clamp_limit(limit, &lim));
    TSR_ENSURE(after_row >= 0, TSR_E_INPUT, "page cursor is negative");
    TSR_GUARD(q_open(s, ST_CERT_PAGE, "list certificates", &q));
    q_text(&q, sandbox_id);
    q_i64(&q, after_row);
    q_i64(&q, lim + 1); /* one more row tells whether another page follows */
    if (list_of_sandbox(s, sandbox_id, &q, row_cert_pos, NULL, &v, &cnt, sizeof *v) != 0) {
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

static int row_revoked_serial(void *ctx, sqlite3_stmt *st, void *elem)
{
    (void)ctx;
    gw_revoked_serial *e = elem;
    TSR_GUARD(col_text(st, 0, e->serial, sizeof e->serial, "certificate serial"));
    e->not_after = sqlite3_column_int64(st, 1);
    return 0;
}

int gw_store_cert_revoke(gw_store *s, const char *serial, const char *reason, int64_t now,
                         gw_cert_rec *out, gw_revoked_serial **lineage, size_t *n_lineage)
{
    int rc = -1;
    gw_cert_rec rec;
    gw_revoked_serial *v = NULL;
    size_t cnt = 0;
    char lineage_reason[sizeof rec.revocation_reason];
    struct query q;
    if (lineage != NULL) *lineage = NULL;
    if (n_lineage != NULL) *n_lineage = 0;
    if (reason == NULL) reason = "";
    TSR_TRY(check_str(serial, sizeof rec.serial, 0, "certificate serial"));
    TSR_TRY(check_str(reason, sizeof rec.revocation_reason, 1, "revocation reason"));
    TSR_TRY_ENSURE(now > 0, TSR_E_INPUT, "revocation time must be positive");
    TSR_TRY(tx_begin(s, 1));
    TSR_TRY(q_open(s, ST_CERT_REVOKE, "revoke certificate", &q));
    q_text(&q, serial);
    q_i64(&q, now);
    q_text(&q, reason);
    TSR_TRY(q_exec(&q));
    TSR_TRY(cert_read_one(s, serial, &rec)); /* NOTFOUND if it never existed */
    TSR_TRY_ENSURE(rec.revoked_at > 0, TSR_E_INTERNAL, "certificate %s not revoked", serial);
    /* Its lineage, in the same transaction: a renewal committed before this
     * is revoked here; one committed after finds its parent revoked. */
    snprintf(lineage_reason, sizeof lineage_reason, "renewed from revoked certificate %s",
             rec.serial);
    TSR_TRY(q_open(s, ST_CERT_REVOKE_LINEAGE, "revoke renewal lineage", &q));
    q_text(&q, rec.serial);
    q_i64(&q, now);
    q_text(&q, lineage_reason);
    TSR_TRY(q_exec(&q));
    TSR_TRY(q_open(s, ST_CERT_LINEAGE, "read renewal lineage", &q));
    q_text(&q, rec.serial);
    TSR_TRY(q_each(&q, row_revoked_serial, NULL, &v, &cnt, sizeof *v));
    TSR_TRY(tx_commit(s));
    if (out != NULL) *out = rec;
    if (lineage != NULL && n_lineage != NULL) {
        *lineage = v;
        *n_lineage = cnt;
        v = NULL;
    }
    rc = 0;
out:
    if (rc != 0) tx_abort(s);
    free(v);
    return rc;
}

int gw_store_revoked_each(gw_store *s, int64_t now,
                          int (*cb)(void *arg, const char *serial, int64_t not_after), void *arg)
{
    int rc = -1;
    gw_revoked_serial *v = NULL;
    size_t cnt = 0;
    struct query q;
    TSR_TRY_ENSURE(cb != NULL, TSR_E_INPUT, "no callback");
    /* Collect first, call back after: the callback may use the store. */
    TSR_TRY(q_open(s, ST_REVOKED_EACH, "list revoked certificates", &q));
    q_i64(&q, now);
    TSR_TRY(q_each(&q, row_revoked_serial, NULL, &v, &cnt, sizeof *v));
    for (size_t i = 0; i < cnt; i++) TSR_TRY(cb(arg, v[i].serial, v[i].not_after));
    rc = 0;
out:
    free(v);
    return rc;
}

/* ---- policies ------------------------------------------------------------------------- */

static int row_policy(void *ctx, sqlite3_stmt *st, void *elem)
{
    (void)ctx;
    return col_text_dup(st, 0, elem, "policy");
}

static int policy_read(gw_store *s, const char *sandbox_id, int64_t version, char **yaml)
{
    struct query q;
    if (yaml != NULL) *yaml = NULL;
    TSR_GUARD(q_open(s, ST_POLICY_GET, "read policy", &q));
    q_text(&q, sandbox_id);
    q_i64(&q, version);
    int r = q_row(&q, yaml != NULL ? row_policy : NULL, NULL, yaml);
    if (r < 0) return -1;
    TSR_ENSURE(r == 1, TSR_E_NOTFOUND, "sandbox %s has no policy version %lld", sandbox_id,
               (long long)version);
    return 0;
}

int gw_store_policy_get(gw_store *s, const char *sandbox_id, char **yaml, int64_t *version)
{
    int rc = -1;
    struct sb_meta m;
    char *text = NULL;
    *yaml = NULL;
    *version = 0;
    TSR_TRY(check_sandbox_id(sandbox_id));
    TSR_TRY(tx_begin(s, 0));
    TSR_TRY(sb_meta(s, sandbox_id, &m));
    TSR_TRY_ENSURE(m.policy_version > 0, TSR_E_NOTFOUND, "sandbox %s has no policy",
                   sandbox_id);
    TSR_TRY(policy_read(s, sandbox_id, m.policy_version, &text));
    TSR_TRY(tx_commit(s));
    *yaml = text;
    *version = m.policy_version;
    text = NULL;
    rc = 0;
out:
    free(text);
    if (rc != 0) tx_abort(s);
    return rc;
}

int gw_store_policy_set(gw_store *s, const char *sandbox_id, const char *yaml, int64_t now,
                        int64_t *new_version)
{
    int rc = -1;
    struct sb_meta m;
    TSR_TRY(check_sandbox_id(sandbox_id));
    TSR_TRY_ENSURE(yaml != NULL, TSR_E_INPUT, "policy is missing");
    TSR_TRY(tx_begin(s, 1));
    TSR_TRY(sb_meta_live(s, sandbox_id, &m));
    TSR_TRY_ENSURE(m.policy_version < INT64_MAX, TSR_E_LIMIT, "policy version overflow");
    TSR_TRY(policy_insert_row(s, sandbox_id, m.policy_version + 1, yaml, now));
    TSR_TRY(tx_commit(s));
    if (new_version != NULL) *new_version = m.policy_version + 1;
    rc = 0;
out:
    if (rc != 0) tx_abort(s);
    return rc;
}

int gw_store_policy_status_add(gw_store *s, const char *sandbox_id, int64_t version, int status,
                               const char *message, int64_t now)
{
    int rc = -1;
    struct sb_meta m;
    struct query q;
    if (message == NULL) message = "";
    TSR_TRY(check_sandbox_id(sandbox_id));
    TSR_TRY(tx_begin(s, 1));
    TSR_TRY(sb_meta(s, sandbox_id, &m));
    TSR_TRY(policy_read(s, sandbox_id, version, NULL));
    TSR_TRY(q_open(s, ST_PSTATUS_INSERT, "insert policy status", &q));
    q_text(&q, sandbox_id);
    q_i64(&q, version);
    q_i64(&q, status);
    q_text(&q, message);
    q_i64(&q, now);
    TSR_TRY(q_exec(&q));
    TSR_TRY(tx_commit(s));
    rc = 0;
out:
    if (rc != 0) tx_abort(s);
    return rc;
}

struct pstatus {
    int status;
    char *message;
    int64_t reported_at;
};

static int row_pstatus(void *ctx, sqlite3_stmt *st, void *elem)
{
    (void)ctx;
    struct pstatus *p = elem;
    p->status = sqlite3_column_int(st, 0);
    p->reported_at = sqlite3_column_int64(st, 2);
    return col_text_dup(st, 1, &p->message, "policy status message");
}

int gw_store_policy_status_latest(gw_store *s, const char *sandbox_id, int64_t version,
                                  int *status, char **message, int64_t *reported_at)
{
    struct query q;
    struct pstatus p = {0};
    if (message != NULL) *message = NULL;
    TSR_GUARD(check_sandbox_id(sandbox_id));
    TSR_GUARD(q_open(s, ST_PSTATUS_LATEST, "read policy status", &q));
    q_text(&q, sandbox_id);
    q_i64(&q, version);
    int r = q_row(&q, row_pstatus, NULL, &p);
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

int gw_store_draft_add(gw_store *s, const char *sandbox_id, const gw_policy_chunk *chunks,
                       size_t n, int64_t now)
{
    int rc = -1;
    struct sb_meta m;
    TSR_TRY(check_sandbox_id(sandbox_id));
    TSR_TRY_ENSURE(n == 0 || chunks != NULL, TSR_E_INPUT, "chunks are missing");
    for (size_t i = 0; i < n; i++)
        TSR_TRY_ENSURE(chunks[i].domain != NULL && chunks[i].content != NULL, TSR_E_INPUT,
                       "draft chunk %zu is incomplete", i);
    TSR_TRY(tx_begin(s, 1));
    TSR_TRY(sb_meta(s, sandbox_id, &m));
    int64_t seq = m.draft_seq;
    for (size_t i = 0; i < n; i++) {
        struct query q;
        TSR_TRY(q_open(s, ST_DRAFT_INSERT, "insert draft chunk", &q));
        q_text(&q, sandbox_id);
        q_i64(&q, ++seq);
        q_text(&q, chunks[i].domain);
        q_text(&q, chunks[i].content);
        q_i64(&q, now);
        TSR_TRY(q_exec(&q));
    }
    if (n > 0) TSR_TRY(set_counter(s, ST_SB_SET_DRAFT_SEQ, sandbox_id, seq, "update draft seq"));
    TSR_TRY(tx_commit(s));
    rc = 0;
out:
    if (rc != 0) tx_abort(s);
    return rc;
}

static int row_chunk(void *ctx, sqlite3_stmt *st, void *elem)
{
    (void)ctx;
    gw_policy_chunk *c = elem;
    TSR_GUARD(col_text_dup(st, 0, &c->domain, "draft domain"));
    return col_text_dup(st, 1, &c->content, "draft content");
}

int gw_store_draft_get(gw_store *s, const char *sandbox_id, gw_policy_chunk **out, size_t *n)
{
    gw_policy_chunk *v = NULL;
    size_t cnt = 0;
    struct query q;
    *out = NULL;
    *n = 0;
    TSR_GUARD(check_sandbox_id(sandbox_id));
    TSR_GUARD(q_open(s, ST_DRAFT_GET, "read draft", &q));
    q_text(&q, sandbox_id);
    if (list_of_sandbox(s, sandbox_id, &q, row_chunk, NULL, &v, &cnt, sizeof *v) != 0) {
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

static int row_chunk_page(void *ctx, sqlite3_stmt *st, void *elem)
{
    struct draft_page *p = ctx;
    TSR_ENSURE(p->seen < p->cap, TSR_E_INTERNAL, "draft page: more rows than its limit");
    p->seqs[p->seen++] = sqlite3_column_int64(st, 2);
    return row_chunk(NULL, st, elem);
}

/* Bytes of one chunk inside a message: two string fields and the chunk's
 * own tag and length, each length prefix at most 5 bytes. */
#define CHUNK_OVERHEAD 18

int gw_store_draft_page(gw_store *s, const char *sandbox_id, int64_t after_seq, int limit,
                        size_t max_bytes, gw_policy_chunk **out, size_t *n, int64_t *next_seq)
{
    gw_policy_chunk *v = NULL;
    size_t cnt = 0;
    int64_t lim = 0;
    struct query q;
    *out = NULL;
    *n = 0;
    *next_seq = 0;
    TSR_GUARD(check_sandbox_id(sandbox_id));
    TSR_GUARD(clamp_limit(limit, &lim));
    TSR_ENSURE(after_seq >= 0, TSR_E_INPUT, "page cursor is negative");
    struct draft_page page = {calloc((size_t)lim + 1, sizeof(int64_t)), 0, (size_t)lim + 1};
    TSR_ENSURE(page.seqs != NULL, TSR_E_INTERNAL, "out of memory");
    if (q_open(s, ST_DRAFT_PAGE, "read draft", &q) != 0) {
        free(page.seqs);
        return -1;
    }
    q_text(&q, sandbox_id);
    q_i64(&q, after_seq);
    q_i64(&q, lim + 1); /* one more row tells whether another page follows */
    if (list_of_sandbox(s, sandbox_id, &q, row_chunk_page, &page, &v, &cnt, sizeof *v) != 0) {
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

/* ---- logs --------------------------------------------------------------------------- */

struct log_batch_mark {
    char session[GW_LOG_SESSION_MAX + 1];
    int64_t batch;
};

static int row_log_batch(void *ctx, sqlite3_stmt *st, void *elem)
{
    (void)ctx;
    struct log_batch_mark *m = elem;
    TSR_GUARD(col_text(st, 0, m->session, sizeof m->session, "log session"));
    m->batch = sqlite3_column_int64(st, 1);
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

int gw_store_logs_append_batch(gw_store *s, const char *sandbox_id, const char *session,
                               int64_t batch_seq, const gw_log_line *lines, size_t n,
                               int64_t dropped, int64_t now, int *duplicate)
{
    int rc = -1;
    struct sb_meta m;
    struct log_batch_mark mark;
    int dup = 0;
    TSR_TRY(check_sandbox_id(sandbox_id));
    TSR_TRY(check_log_session(session, batch_seq));
    TSR_TRY_ENSURE(n == 0 || lines != NULL, TSR_E_INPUT, "log lines are missing");
    TSR_TRY_ENSURE(dropped >= 0, TSR_E_INPUT, "dropped count is negative");
    for (size_t i = 0; i < n; i++)
        TSR_TRY_ENSURE(lines[i].text != NULL, TSR_E_INPUT, "log line %zu has no text", i);
    TSR_TRY(tx_begin(s, 1));
    TSR_TRY(sb_meta(s, sandbox_id, &m));
    if (batch_seq > 0) {
        struct query bq;
        memset(&mark, 0, sizeof mark);
        TSR_TRY(q_open(s, ST_SB_LOG_BATCH, "read log batch mark", &bq));
        q_text(&bq, sandbox_id);
        int r = q_row(&bq, row_log_batch, NULL, &mark);
        if (r < 0) goto out; /* recorded */
        TSR_TRY_ENSURE(r == 1, TSR_E_NOTFOUND, "sandbox %s not found", sandbox_id);
        if (strcmp(mark.session, session) == 0 && batch_seq <= mark.batch) {
            dup = 1; /* stored already: acknowledge, write nothing */
            TSR_TRY(tx_commit(s));
            rc = 0;
            goto out;
        }
    }
    int64_t seq = m.log_seq;
    for (size_t i = 0; i < n; i++) {
        struct query q;
        TSR_TRY_ENSURE(seq < INT64_MAX, TSR_E_LIMIT, "log sequence overflow");
        TSR_TRY(q_open(s, ST_LOG_INSERT, "insert log line", &q));
        q_text(&q, sandbox_id);
        q_i64(&q, ++seq);
        q_i64(&q, lines[i].timestamp_ms);
        q_text(&q, lines[i].stream != NULL ? lines[i].stream : "");
        q_text(&q, lines[i].text);
        q_i64(&q, now);
        TSR_TRY(q_exec(&q));
    }
    if (n > 0) TSR_TRY(set_counter(s, ST_SB_SET_LOG_SEQ, sandbox_id, seq, "update log seq"));
    if (dropped > 0) {
        struct query q;
        TSR_TRY(q_open(s, ST_DROP_INSERT, "record dropped log lines", &q));
        q_text(&q, sandbox_id);
        q_i64(&q, dropped);
        q_i64(&q, now);
        TSR_TRY(q_exec(&q));
    }
    if (batch_seq > 0) {
        struct query q;
        TSR_TRY(q_open(s, ST_SB_SET_LOG_BATCH, "record log batch mark", &q));
        q_text(&q, sandbox_id);
        q_text(&q, session);
        q_i64(&q, batch_seq);
        TSR_TRY(q_exec(&q));
    }
    TSR_TRY(tx_commit(s));
    rc = 0;
out:
    if (rc != 0) tx_abort(s);
    else if (duplicate != NULL) *duplicate = dup;
    return rc;
}

int gw_store_logs_append(gw_store *s, const char *sandbox_id, const gw_log_line *lines, size_t n,
                         int64_t dropped, int64_t now)
{
    return gw_store_logs_append_batch(s, sandbox_id, NULL, 0, lines, n, dropped, now, NULL);
}

static int row_log(void *ctx, sqlite3_stmt *st, void *elem)
{
    (void)ctx;
    gw_log_line *l = elem;
    l->seq = sqlite3_column_int64(st, 0);
    l->timestamp_ms = sqlite3_column_int64(st, 1);
    TSR_GUARD(col_text_dup(st, 2, &l->stream, "log stream"));
    return col_text_dup(st, 3, &l->text, "log text");
}

int gw_store_logs_get(gw_store *s, const char *sandbox_id, int64_t after_seq, int limit,
                      gw_log_line **out, size_t *n)
{
    int rc = -1;
    int64_t lim = 0;
    struct sb_meta m;
    gw_log_line *v = NULL;
    size_t cnt = 0;
    struct query q;
    *out = NULL;
    *n = 0;
    TSR_TRY(check_sandbox_id(sandbox_id));
    TSR_TRY(clamp_limit(limit, &lim));
    TSR_TRY(tx_begin(s, 0));
    TSR_TRY(sb_meta(s, sandbox_id, &m));
    TSR_TRY(q_open(s, ST_LOG_GET, "read logs", &q));
    q_text(&q, sandbox_id);
    q_i64(&q, after_seq);
    q_i64(&q, lim);
    TSR_TRY(q_each(&q, row_log, NULL, &v, &cnt, sizeof *v));
    TSR_TRY(tx_commit(s));
    *out = v;
    *n = cnt;
    v = NULL;
    rc = 0;
out:
    gw_store_free_logs(v, cnt);
    if (rc != 0) tx_abort(s);
    return rc;
}

int gw_store_logs_dropped(gw_store *s, const char *sandbox_id, int64_t *total)
{
    int rc = -1;
    struct sb_meta m;
    struct query q;
    int64_t sum = 0;
    *total = 0;
    TSR_TRY(check_sandbox_id(sandbox_id));
    TSR_TRY(tx_begin(s, 0));
    TSR_TRY(sb_meta(s, sandbox_id, &m));
    TSR_TRY(q_open(s, ST_DROP_SUM, "sum dropped log lines", &q));
    q_text(&q, sandbox_id);
    int r = q_row(&q, row_i64, NULL, &sum);
    if (r < 0) goto out; /* recorded by q_row() */
    TSR_TRY_ENSURE(r == 1, TSR_E_INTERNAL, "database: SUM returned no row");
    TSR_TRY(tx_commit(s));
    *total = sum;
    rc = 0;
out:
    if (rc != 0) tx_abort(s);
    return rc;
}

/* ---- provider environment -------------------------------------------------------------- */

struct env_read_ctx {
    gw_store *s;
    const char *sandbox_id;
};

/* Decrypts as it reads: the value never exists in the clear in the store. */
static int row_env(void *ctx, sqlite3_stmt *st, void *elem)
{
    const struct env_read_ctx *c = ctx;
    gw_env_var *e = elem;
    uint8_t *value = NULL;
    size_t len = 0;
    TSR_GUARD(col_text_dup(st, 0, &e->name, "provider env name"));
    TSR_GUARD(env_open_value(c->s, c->sandbox_id, e->name, sqlite3_column_int64(st, 1),
                             sqlite3_column_blob(st, 2), (size_t)sqlite3_column_bytes(st, 2),
                             sqlite3_column_blob(st, 3), (size_t)sqlite3_column_bytes(st, 3),
                             &value, &len));
    if (strlen((const char *)value) != len) {
        OPENSSL_cleanse(value, len);
        free(value);
        return TSR_FAIL(TSR_E_STATE, "provider env %s of sandbox %s holds a NUL byte", e->name,
                        c->sandbox_id);
    }
    e->value = (char *)value;
    return 0;
}

int gw_store_env_get(gw_store *s, const char *sandbox_id, gw_env_var **out, size_t *n)
{
    gw_env_var *v = NULL;
    size_t cnt = 0;
    struct env_read_ctx ctx = {s, sandbox_id};
    struct query q;
    *out = NULL;
    *n = 0;
    TSR_GUARD(check_sandbox_id(sandbox_id));
    TSR_ENSURE(s->keys != NULL, TSR_E_STATE, "no keyring: provider env cannot be read");
    TSR_GUARD(q_open(s, ST_ENV_GET, "read provider env", &q));
    q_text(&q, sandbox_id);
    if (list_of_sandbox(s, sandbox_id, &q, row_env, &ctx, &v, &cnt, sizeof *v) != 0) {
        gw_store_free_env(v, cnt);
        return -1;
    }
    *out = v;
    *n = cnt;
    return 0;
}

int gw_store_env_set(gw_store *s, const char *sandbox_id, const gw_env_var *env, size_t n)
{
    int rc = -1;
    struct sb_meta m;
    TSR_TRY(check_sandbox_id(sandbox_id));
    TSR_TRY(check_env(env, n));
    TSR_TRY_ENSURE(s->keys != NULL, TSR_E_STATE, "no keyring: provider env cannot be stored");
    TSR_TRY(tx_begin(s, 1));
    TSR_TRY(sb_meta_live(s, sandbox_id, &m));
    TSR_TRY(env_delete_all(s, sandbox_id));
    TSR_TRY(env_insert_all(s, sandbox_id, env, n));
    TSR_TRY(tx_commit(s));
    rc = 0;
out:
    if (rc != 0) tx_abort(s);
    return rc;
}

struct stale_env {
    char *sandbox_id, *name;
    int64_t version;
    uint8_t nonce[GW_SECRETBOX_NONCE_LEN];
    size_t nonce_len;
    uint8_t *ct;
    size_t ct_len;
};

static void free_stale(struct stale_env *v, size_t n)
{
    for (size_t i = 0; v != NULL && i < n; i++) {
        free(v[i].sandbox_id);
        free(v[i].name);
        free(v[i].ct);
    }
    free(v);
}

static int row_stale(void *ctx, sqlite3_stmt *st, void *elem)
{
    (void)ctx;
    struct stale_env *e = elem;
    TSR_GUARD(col_text_dup(st, 0, &e->sandbox_id, "provider env sandbox"));
    TSR_GUARD(col_text_dup(st, 1, &e->name, "provider env name"));
    e->version = sqlite3_column_int64(st, 2);
    e->nonce_len = (size_t)sqlite3_column_bytes(st, 3);
    TSR_ENSURE(e->nonce_len == sizeof e->nonce, TSR_E_STATE,
               "provider env %s of sandbox %s is corrupt", e->name, e->sandbox_id);
    memcpy(e->nonce, sqlite3_column_blob(st, 3), sizeof e->nonce);
    e->ct_len = (size_t)sqlite3_column_bytes(st, 4);
    e->ct = malloc(e->ct_len + 1);
    TSR_ENSURE(e->ct != NULL, TSR_E_INTERNAL, "out of memory");
    if (e->ct_len > 0) memcpy(e->ct, sqlite3_column_blob(st, 4), e->ct_len);
    return 0;
}

int gw_store_env_reencrypt(gw_store *s, size_t *count)
{
    int rc = -1;
    struct stale_env *v = NULL;
    size_t cnt = 0;
    struct query q;
    uint8_t *value = NULL;
    size_t value_len = 0;
    if (count != NULL) *count = 0;
    TSR_TRY_ENSURE(s->keys != NULL, TSR_E_STATE, "no keyring: provider env cannot be read");
    uint32_t current = gw_keyring_current_version(s->keys);

    TSR_TRY(tx_begin(s, 1));
    /* Read every stale row first: updating rows under a live cursor on the
     * same table is undefined in sqlite. */
    TSR_TRY(q_open(s, ST_ENV_STALE, "read provider env", &q));
    q_i64(&q, current);
    TSR_TRY(q_each(&q, row_stale, NULL, &v, &cnt, sizeof *v));
    for (size_t i = 0; i < cnt; i++) {
        struct stale_env *e = &v[i];
        TSR_TRY(env_open_value(s, e->sandbox_id, e->name, e->version, e->nonce, e->nonce_len,
                               e->ct, e->ct_len, &value, &value_len));
        TSR_TRY(env_write_row(s, ST_ENV_UPDATE, e->sandbox_id, e->name, value, value_len));
        OPENSSL_cleanse(value, value_len + 1);
        free(value);
        value = NULL;
    }
    TSR_TRY(tx_commit(s));
    if (count != NULL) *count = cnt;
    rc = 0;
out:
    if (value != NULL) {
        OPENSSL_cleanse(value, value_len + 1);
        free(value);
    }
    free_stale(v, cnt);
    if (rc != 0) tx_abort(s);
    return rc;
}

/* ---- freeing ------------------------------------------------------------------------- */

void gw_store_free_sandboxes(gw_sandbox_rec *v, size_t n)
{
    (void)n;
    free(v);
}

void gw_store_free_certs(gw_cert_rec *v, size_t n)
{
    (void)n;
    free(v);
}

void gw_store_free_env(gw_env_var *v, size_t n)
{
    for (size_t i = 0; v != NULL && i < n; i++) {
        if (v[i].value != NULL) {
            OPENSSL_cleanse(v[i].value, strlen(v[i].value));
            free(v[i].value);
        }
        free(v[i].name);
    }
    free(v);
}

void gw_store_free_logs(gw_log_line *v, size_t n)
{
    for (size_t i = 0; v != NULL && i < n; i++) {
        free(v[i].stream);
        free(v[i].text);
    }
    free(v);
}

void gw_store_free_chunks(gw_policy_chunk *v, size_t n)
{
    for (size_t i = 0; v != NULL && i < n; i++) {
        free(v[i].domain);
        free(v[i].content);
    }
    free(v);
}
