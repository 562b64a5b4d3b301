/* sqlite3 storage for the gateway. See gw_store.h for the contract.
 *
 * Structure: every SQL text lives in stmt_sql[] (prepared once per
 * connection, always bound with parameters); small return-style helpers run
 * one statement each and always reset it; public functions validate their
 * input, then run helpers inside one transaction (BEGIN IMMEDIATE for
 * writes, so concurrent writers queue on the busy timeout instead of failing
 * on a lock upgrade) and roll back on any failure. */
#include "gw_store.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <openssl/crypto.h>
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
    ST_CERT_INSERT,
    ST_CERT_GET,
    ST_CERT_LIST_SB,
    ST_CERT_LIST_ALL,
    ST_CERT_REVOKE,
    ST_CERT_REVOKE_SB,
    ST_REVOKED_EACH,
    ST_POLICY_INSERT,
    ST_POLICY_GET,
    ST_PSTATUS_INSERT,
    ST_PSTATUS_LATEST,
    ST_DRAFT_INSERT,
    ST_DRAFT_GET,
    ST_LOG_INSERT,
    ST_LOG_GET,
    ST_DROP_INSERT,
    ST_DROP_SUM,
    ST_ENV_DELETE,
    ST_ENV_INSERT,
    ST_ENV_GET,
    ST_ENV_STALE,
    ST_ENV_UPDATE,
    ST__COUNT
};

#define SB_COLS "id, name, driver, state, created_at, deleted_at, policy_version"
#define CERT_COLS                                                                              \
    "serial, spiffe_id, sandbox_id, not_before, not_after, issued_at, revoked_at, "            \
    "revocation_reason"

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
                     "policy_version) VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6)",
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
    [ST_CERT_INSERT] = "INSERT INTO certificates(" CERT_COLS ") "
                       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, NULL)",
    [ST_CERT_GET] = "SELECT " CERT_COLS " FROM certificates WHERE serial = ?1",
    [ST_CERT_LIST_SB] = "SELECT " CERT_COLS " FROM certificates WHERE sandbox_id = ?1 "
                        "ORDER BY issued_at, serial",
    [ST_CERT_LIST_ALL] = "SELECT " CERT_COLS " FROM certificates ORDER BY issued_at, serial",
    [ST_CERT_REVOKE] = "UPDATE certificates SET revoked_at = ?2, revocation_reason = ?3 "
                       "WHERE serial = ?1 AND revoked_at IS NULL",
    [ST_CERT_REVOKE_SB] = "UPDATE certificates SET revoked_at = ?2, revocation_reason = ?3 "
                          "WHERE sandbox_id = ?1 AND revoked_at IS NULL",
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
    /* A revoked row must never read as valid. */
    TSR_ENSURE(sqlite3_column_type(st, 6) == SQLITE_NULL || out->revoked_at > 0, TSR_E_IO,
               "database is corrupt: certificate %s has revoked_at %lld", out->serial,
               (long long)out->revoked_at);
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

static int sb_meta(gw_store *s, const char *id, struct sb_meta *m)
{
    sqlite3_stmt *st = NULL;
    int b = SQLITE_OK;
    TSR_GUARD(stmt(s, ST_SB_META, &st));
    bind_text(st, 1, id, &b);
    int r = step(s, st, b, "read sandbox");
    if (r == 1) {
        m->live = sqlite3_column_int(st, 0);
        m->policy_version = sqlite3_column_int64(st, 1);
        m->log_seq = sqlite3_column_int64(st, 2);
        m->draft_seq = sqlite3_column_int64(st, 3);
    }
    done(st);
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

static int set_counter(gw_store *s, enum stmt_id id, const char *sandbox_id, int64_t v,
                       const char *what)
{
    sqlite3_stmt *st = NULL;
    int b = SQLITE_OK;
    TSR_GUARD(stmt(s, id, &st));
    bind_text(st, 1, sandbox_id, &b);
    bind_i64(st, 2, v, &b);
    return exec_done(s, st, b, what);
}

static int cert_insert_row(gw_store *s, const gw_cert_rec *c)
{
    sqlite3_stmt *st = NULL;
    int b = SQLITE_OK;
    TSR_GUARD(stmt(s, ST_CERT_INSERT, &st));
    bind_text(st, 1, c->serial, &b);
    bind_text(st, 2, c->spiffe_id, &b);
    bind_text(st, 3, c->sandbox_id[0] ? c->sandbox_id : NULL, &b);
    bind_i64(st, 4, c->not_before, &b);
    bind_i64(st, 5, c->not_after, &b);
    bind_i64(st, 6, c->issued_at, &b);
    int r = step(s, st, b, "insert certificate");
    done(st);
    if (r < 0 && tsr_errcat() == TSR_E_EXISTS)
        return TSR_FAIL(TSR_E_EXISTS, "certificate serial %s is already recorded", c->serial);
    if (r < 0) return -1;
    return 0;
}

static int policy_insert_row(gw_store *s, const char *sandbox_id, int64_t version,
                             const char *yaml, int64_t now)
{
    sqlite3_stmt *st = NULL;
    int b = SQLITE_OK;
    TSR_GUARD(stmt(s, ST_POLICY_INSERT, &st));
    bind_text(st, 1, sandbox_id, &b);
    bind_i64(st, 2, version, &b);
    bind_text(st, 3, yaml, &b);
    bind_i64(st, 4, now, &b);
    TSR_GUARD(exec_done(s, st, b, "insert policy"));
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
    int rc = -1, b = SQLITE_OK;
    uint8_t *aad = NULL, *ct = NULL;
    size_t aad_len = 0, ct_len = 0;
    uint8_t nonce[GW_SECRETBOX_NONCE_LEN];
    uint32_t version = 0;
    sqlite3_stmt *st = NULL;

    TSR_TRY(env_aad(sandbox_id, name, &aad, &aad_len));
    TSR_TRY(gw_secretbox_seal(s->keys, aad, aad_len, value, value_len, &version, nonce, &ct,
                              &ct_len));
    TSR_TRY(stmt(s, id, &st));
    bind_text(st, 1, sandbox_id, &b);
    bind_text(st, 2, name, &b);
    bind_i64(st, 3, version, &b);
    bind_blob(st, 4, nonce, sizeof nonce, &b);
    bind_blob(st, 5, ct, ct_len, &b);
    int r = step(s, st, b, "write provider env");
    if (r < 0 && tsr_errcat() == TSR_E_EXISTS)
        (void)TSR_FAIL(TSR_E_EXISTS, "provider env %s is given twice", name);
    if (r < 0) goto out; /* recorded by step() */
    TSR_TRY_ENSURE(id != ST_ENV_UPDATE || sqlite3_changes(s->db) == 1, TSR_E_INTERNAL,
                   "provider env %s of sandbox %s vanished", name, sandbox_id);
    rc = 0;
out:
    done(st);
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
    sqlite3_stmt *st = NULL;
    int b = SQLITE_OK;
    TSR_GUARD(stmt(s, ST_ENV_DELETE, &st));
    bind_text(st, 1, sandbox_id, &b);
    return exec_done(s, st, b, "delete provider env");
}

/* ---- open / close / migrations ------------------------------------------------------- */

/* Create the file 0600 (and its directory 0700) before sqlite does: sqlite
 * gives the -wal and -shm files the database file's mode. */
static int prepare_file(const char *path)
{
    char copy[4096];
    TSR_ENSURE(strlen(path) < sizeof copy, TSR_E_INPUT, "database path too long");
    strcpy(copy, path);
    const char *dir = dirname(copy);
    if (strcmp(dir, ".") != 0 && strcmp(dir, "/") != 0) TSR_GUARD(tsr_mkdir_p(dir, 0700));

    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
    if (fd < 0 && (errno == EACCES || errno == EROFS)) {
        /* Write-protected: sqlite opens it read-only and every write fails. */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        TSR_ENSURE(fd >= 0, TSR_E_IO, "open database %s: %s", path, strerror(errno));
        close(fd);
        return 0;
    }
    TSR_ENSURE(fd >= 0, TSR_E_IO, "open database %s: %s", path, strerror(errno));
    struct stat st;
    int rc = fstat(fd, &st);
    if (rc == 0 && !S_ISREG(st.st_mode)) {
        close(fd);
        return TSR_FAIL(TSR_E_IO, "database %s is not a regular file", path);
    }
    if (rc == 0 && (st.st_mode & 077) != 0) rc = fchmod(fd, st.st_mode & 0700);
    int saved = errno;
    close(fd);
    TSR_ENSURE(rc == 0, TSR_E_IO, "chmod database %s: %s", path, strerror(saved));
    return 0;
}

/* A pragma that answers one row; checks its text equals `want`. */
static int pragma_expect(gw_store *s, const char *sql, const char *want)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) return DB_FAIL(s, rc, sql);
    rc = sqlite3_step(st);
    int ok = rc == SQLITE_ROW && sqlite3_column_text(st, 0) != NULL &&
             strcmp((const char *)sqlite3_column_text(st, 0), want) == 0;
    char got[32] = "";
    if (rc == SQLITE_ROW && sqlite3_column_text(st, 0) != NULL)
        strncpy(got, (const char *)sqlite3_column_text(st, 0), sizeof got - 1);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        (void)DB_FAIL(s, rc, sql);
        sqlite3_finalize(st);
        return -1;
    }
    sqlite3_finalize(st);
    TSR_ENSURE(ok, TSR_E_IO, "database: %s gave '%s', need '%s'", sql, got, want);
    return 0;
}

/* The journal mode as text into buf ("" if sqlite answered no row). Returns
 * the sqlite code. */
static int journal_mode(gw_store *s, const char *sql, char *buf, size_t cap)
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

/* WAL is a property of the file: set once, seen by every later connection.
 * Switching needs an exclusive lock and sqlite answers SQLITE_BUSY at once
 * (no busy handler) while other connections are opening, so retry until
 * the busy timeout. */
static int enable_wal(gw_store *s)
{
    char mode[32];
    int64_t deadline = tsr_monotonic_ms() + GW_STORE_BUSY_TIMEOUT_MS;
    for (;;) {
        int rc = journal_mode(s, "PRAGMA journal_mode", mode, sizeof mode);
        if (rc == SQLITE_OK && strcmp(mode, "wal") == 0) return 0;
        if (rc == SQLITE_OK) rc = journal_mode(s, "PRAGMA journal_mode=WAL", mode, sizeof mode);
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
    sqlite3_stmt *st = NULL;
    *version = 0;
    TSR_GUARD(stmt(s, ST_MIGRATIONS_TABLE_EXISTS, &st));
    int r = step(s, st, SQLITE_OK, "read schema");
    int exists = r == 1 && sqlite3_column_int(st, 0) > 0;
    done(st);
    if (r < 0) return -1;
    if (!exists) return 0;
    TSR_GUARD(stmt(s, ST_SCHEMA_VERSION, &st));
    r = step(s, st, SQLITE_OK, "read schema version");
    if (r == 1) *version = sqlite3_column_int64(st, 0);
    done(st);
    if (r < 0) return -1;
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
    int rc = -1, b = SQLITE_OK;
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
        sqlite3_stmt *st = NULL;
        TSR_TRY(stmt(s, ST_MIGRATION_INSERT, &st));
        bind_i64(st, 1, next->version, &b);
        bind_i64(st, 2, tsr_now_unix(), &b);
        TSR_TRY(exec_done(s, st, b, "record migration"));
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
    TSR_TRY(prepare_file(path));
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
    TSR_ENSURE(sb->deleted_at == 0, TSR_E_INPUT, "a new sandbox cannot be deleted");
    return 0;
}

int gw_store_sandbox_create(gw_store *s, const gw_sandbox_rec *sb, const char *policy_yaml,
                            const gw_env_var *env, size_t n_env, const gw_cert_rec *first_cert)
{
    int rc = -1, b = SQLITE_OK;
    TSR_TRY(check_sandbox_rec(sb));
    TSR_TRY(check_env(env, n_env));
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
    sqlite3_stmt *st = NULL;
    TSR_TRY(stmt(s, ST_SB_INSERT, &st));
    bind_text(st, 1, sb->id, &b);
    bind_text(st, 2, sb->name, &b);
    bind_text(st, 3, sb->driver, &b);
    bind_text(st, 4, sb->state, &b);
    bind_i64(st, 5, sb->created_at, &b);
    bind_i64(st, 6, 0, &b);
    int r = step(s, st, b, "insert sandbox");
    int name_taken = r < 0 && strstr(sqlite3_errmsg(s->db), "sandboxes.name") != NULL;
    done(st);
    if (r < 0 && tsr_errcat() == TSR_E_EXISTS) {
        if (name_taken)
            (void)TSR_FAIL(TSR_E_EXISTS, "a sandbox named %s already exists", sb->name);
        else
            (void)TSR_FAIL(TSR_E_EXISTS, "sandbox id %s already exists", sb->id);
    }
    if (r < 0) goto out; /* recorded by step() */
    if (policy_yaml != NULL) TSR_TRY(policy_insert_row(s, sb->id, 1, policy_yaml, now));
    TSR_TRY(env_insert_all(s, sb->id, env, n_env));
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
    sqlite3_stmt *st = NULL;
    int b = SQLITE_OK;
    TSR_GUARD(stmt(s, id, &st));
    bind_text(st, 1, key, &b);
    int r = step(s, st, b, "read sandbox");
    if (r == 1 && read_sandbox(st, out) != 0) r = -1;
    done(st);
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
    int rc = -1, b = SQLITE_OK;
    int64_t lim = 0;
    gw_sandbox_rec *v = NULL;
    size_t cnt = 0, cap = 0;
    sqlite3_stmt *st = NULL;
    *out = NULL;
    *n = 0;
    if (after_id == NULL) after_id = "";
    TSR_TRY(check_str(after_id, SB_ID_CAP, 1, "page token"));
    TSR_TRY(clamp_limit(limit, &lim));
    TSR_TRY(stmt(s, ST_SB_LIST, &st));
    bind_text(st, 1, after_id, &b);
    bind_i64(st, 2, lim, &b);
    for (;;) {
        int r = step(s, st, b, "list sandboxes");
        if (r < 0) goto out; /* recorded by step() */
        if (r == 0) break;
        TSR_TRY(grow(&v, &cap, cnt, sizeof *v));
        TSR_TRY(read_sandbox(st, &v[cnt]));
        cnt++;
    }
    *out = v;
    *n = cnt;
    v = NULL;
    rc = 0;
out:
    done(st);
    free(v);
    return rc;
}

int gw_store_sandbox_set_state(gw_store *s, const char *id, const char *state)
{
    int b = SQLITE_OK;
    sqlite3_stmt *st = NULL;
    TSR_GUARD(check_sandbox_id(id));
    TSR_GUARD(check_str(state, sizeof((gw_sandbox_rec *)0)->state, 0, "sandbox state"));
    TSR_GUARD(stmt(s, ST_SB_SET_STATE, &st));
    bind_text(st, 1, id, &b);
    bind_text(st, 2, state, &b);
    TSR_GUARD(exec_done(s, st, b, "update sandbox state"));
    TSR_ENSURE(sqlite3_changes(s->db) == 1, TSR_E_NOTFOUND, "sandbox %s not found", id);
    return 0;
}

int gw_store_sandbox_delete(gw_store *s, const char *id, int64_t now, int *revoked_count)
{
    int rc = -1, b = SQLITE_OK;
    struct sb_meta m;
    sqlite3_stmt *st = NULL;
    if (revoked_count != NULL) *revoked_count = 0;
    TSR_TRY(check_sandbox_id(id));
    TSR_TRY_ENSURE(now > 0, TSR_E_INPUT, "deletion time must be positive");
    TSR_TRY(tx_begin(s, 1));
    TSR_TRY(sb_meta(s, id, &m));
    TSR_TRY_ENSURE(m.live, TSR_E_NOTFOUND, "sandbox %s is already deleted", id);
    TSR_TRY(set_counter(s, ST_SB_MARK_DELETED, id, now, "mark sandbox deleted"));
    TSR_TRY_ENSURE(sqlite3_changes(s->db) == 1, TSR_E_INTERNAL, "sandbox %s vanished", id);

    TSR_TRY(stmt(s, ST_CERT_REVOKE_SB, &st));
    bind_text(st, 1, id, &b);
    bind_i64(st, 2, now, &b);
    bind_text(st, 3, REVOKED_BY_DELETE, &b);
    TSR_TRY(exec_done(s, st, b, "revoke sandbox certificates"));
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
            cat != TSR_E_EXISTS)
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
    sqlite3_stmt *st = NULL;
    int b = SQLITE_OK;
    TSR_GUARD(stmt(s, ST_CERT_GET, &st));
    bind_text(st, 1, serial, &b);
    int r = step(s, st, b, "read certificate");
    if (r == 1 && read_cert(st, out) != 0) r = -1;
    done(st);
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
    int rc = -1, b = SQLITE_OK;
    gw_cert_rec *v = NULL;
    size_t cnt = 0, cap = 0;
    sqlite3_stmt *st = NULL;
    struct sb_meta m;
    *out = NULL;
    *n = 0;
    if (sandbox_id != NULL) TSR_TRY(check_sandbox_id(sandbox_id));
    TSR_TRY(tx_begin(s, 0));
    if (sandbox_id != NULL) TSR_TRY(sb_meta(s, sandbox_id, &m));
    TSR_TRY(stmt(s, sandbox_id != NULL ? ST_CERT_LIST_SB : ST_CERT_LIST_ALL, &st));
    if (sandbox_id != NULL) bind_text(st, 1, sandbox_id, &b);
    for (;;) {
        int r = step(s, st, b, "list certificates");
        if (r < 0) goto out; /* recorded by step() */
        if (r == 0) break;
        TSR_TRY(grow(&v, &cap, cnt, sizeof *v));
        TSR_TRY(read_cert(st, &v[cnt]));
        cnt++;
    }
    done(st);
    st = NULL;
    TSR_TRY(tx_commit(s));
    *out = v;
    *n = cnt;
    v = NULL;
    rc = 0;
out:
    done(st);
    free(v);
    if (rc != 0) tx_abort(s);
    return rc;
}

int gw_store_cert_revoke(gw_store *s, const char *serial, const char *reason, int64_t now,
                         gw_cert_rec *out)
{
    int rc = -1, b = SQLITE_OK;
    gw_cert_rec rec;
    sqlite3_stmt *st = NULL;
    if (reason == NULL) reason = "";
    TSR_TRY(check_str(serial, sizeof rec.serial, 0, "certificate serial"));
    TSR_TRY(check_str(reason, sizeof rec.revocation_reason, 1, "revocation reason"));
    TSR_TRY_ENSURE(now > 0, TSR_E_INPUT, "revocation time must be positive");
    TSR_TRY(tx_begin(s, 1));
    TSR_TRY(stmt(s, ST_CERT_REVOKE, &st));
    bind_text(st, 1, serial, &b);
    bind_i64(st, 2, now, &b);
    bind_text(st, 3, reason, &b);
    TSR_TRY(exec_done(s, st, b, "revoke certificate"));
    TSR_TRY(cert_read_one(s, serial, &rec)); /* NOTFOUND if it never existed */
    TSR_TRY_ENSURE(rec.revoked_at > 0, TSR_E_INTERNAL, "certificate %s not revoked", serial);
    TSR_TRY(tx_commit(s));
    if (out != NULL) *out = rec;
    rc = 0;
out:
    if (rc != 0) tx_abort(s);
    return rc;
}

struct revoked_entry {
    char serial[41];
    int64_t not_after;
};

int gw_store_revoked_each(gw_store *s, int64_t now,
                          int (*cb)(void *arg, const char *serial, int64_t not_after), void *arg)
{
    int rc = -1, b = SQLITE_OK;
    struct revoked_entry *v = NULL;
    size_t cnt = 0, cap = 0;
    sqlite3_stmt *st = NULL;
    TSR_TRY_ENSURE(cb != NULL, TSR_E_INPUT, "no callback");
    /* Collect first, call back after: the callback may use the store. */
    TSR_TRY(stmt(s, ST_REVOKED_EACH, &st));
    bind_i64(st, 1, now, &b);
    for (;;) {
        int r = step(s, st, b, "list revoked certificates");
        if (r < 0) goto out; /* recorded by step() */
        if (r == 0) break;
        TSR_TRY(grow(&v, &cap, cnt, sizeof *v));
        TSR_TRY(col_text(st, 0, v[cnt].serial, sizeof v[cnt].serial, "certificate serial"));
        v[cnt].not_after = sqlite3_column_int64(st, 1);
        cnt++;
    }
    done(st);
    st = NULL;
    for (size_t i = 0; i < cnt; i++) TSR_TRY(cb(arg, v[i].serial, v[i].not_after));
    rc = 0;
out:
    done(st);
    free(v);
    return rc;
}

/* ---- policies ------------------------------------------------------------------------- */

static int policy_read(gw_store *s, const char *sandbox_id, int64_t version, char **yaml)
{
    sqlite3_stmt *st = NULL;
    int b = SQLITE_OK;
    if (yaml != NULL) *yaml = NULL;
    TSR_GUARD(stmt(s, ST_POLICY_GET, &st));
    bind_text(st, 1, sandbox_id, &b);
    bind_i64(st, 2, version, &b);
    int r = step(s, st, b, "read policy");
    if (r == 1 && yaml != NULL && col_text_dup(st, 0, yaml, "policy") != 0) r = -1;
    done(st);
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
    int rc = -1, b = SQLITE_OK;
    struct sb_meta m;
    sqlite3_stmt *st = NULL;
    if (message == NULL) message = "";
    TSR_TRY(check_sandbox_id(sandbox_id));
    TSR_TRY(tx_begin(s, 1));
    TSR_TRY(sb_meta(s, sandbox_id, &m));
    TSR_TRY(policy_read(s, sandbox_id, version, NULL));
    TSR_TRY(stmt(s, ST_PSTATUS_INSERT, &st));
    bind_text(st, 1, sandbox_id, &b);
    bind_i64(st, 2, version, &b);
    bind_i64(st, 3, status, &b);
    bind_text(st, 4, message, &b);
    bind_i64(st, 5, now, &b);
    TSR_TRY(exec_done(s, st, b, "insert policy status"));
    TSR_TRY(tx_commit(s));
    rc = 0;
out:
    if (rc != 0) tx_abort(s);
    return rc;
}

int gw_store_policy_status_latest(gw_store *s, const char *sandbox_id, int64_t version,
                                  int *status, char **message, int64_t *reported_at)
{
    int rc = -1, b = SQLITE_OK, r = -1;
    sqlite3_stmt *st = NULL;
    char *msg = NULL;
    if (message != NULL) *message = NULL;
    TSR_TRY(check_sandbox_id(sandbox_id));
    TSR_TRY(stmt(s, ST_PSTATUS_LATEST, &st));
    bind_text(st, 1, sandbox_id, &b);
    bind_i64(st, 2, version, &b);
    r = step(s, st, b, "read policy status");
    if (r < 0) goto out; /* recorded by step() */
    TSR_TRY_ENSURE(r == 1, TSR_E_NOTFOUND, "no status reported for policy %lld of sandbox %s",
                   (long long)version, sandbox_id);
    if (message != NULL) TSR_TRY(col_text_dup(st, 1, &msg, "policy status message"));
    if (status != NULL) *status = sqlite3_column_int(st, 0);
    if (reported_at != NULL) *reported_at = sqlite3_column_int64(st, 2);
    if (message != NULL) *message = msg;
    msg = NULL;
    rc = 0;
out:
    done(st);
    free(msg);
    return rc;
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
        sqlite3_stmt *st = NULL;
        int b = SQLITE_OK;
        TSR_TRY(stmt(s, ST_DRAFT_INSERT, &st));
        bind_text(st, 1, sandbox_id, &b);
        bind_i64(st, 2, ++seq, &b);
        bind_text(st, 3, chunks[i].domain, &b);
        bind_text(st, 4, chunks[i].content, &b);
        bind_i64(st, 5, now, &b);
        TSR_TRY(exec_done(s, st, b, "insert draft chunk"));
    }
    if (n > 0) TSR_TRY(set_counter(s, ST_SB_SET_DRAFT_SEQ, sandbox_id, seq, "update draft seq"));
    TSR_TRY(tx_commit(s));
    rc = 0;
out:
    if (rc != 0) tx_abort(s);
    return rc;
}

int gw_store_draft_get(gw_store *s, const char *sandbox_id, gw_policy_chunk **out, size_t *n)
{
    int rc = -1, b = SQLITE_OK;
    struct sb_meta m;
    gw_policy_chunk *v = NULL;
    size_t cnt = 0, cap = 0;
    sqlite3_stmt *st = NULL;
    *out = NULL;
    *n = 0;
    TSR_TRY(check_sandbox_id(sandbox_id));
    TSR_TRY(tx_begin(s, 0));
    TSR_TRY(sb_meta(s, sandbox_id, &m));
    TSR_TRY(stmt(s, ST_DRAFT_GET, &st));
    bind_text(st, 1, sandbox_id, &b);
    for (;;) {
        int r = step(s, st, b, "read draft");
        if (r < 0) goto out; /* recorded by step() */
        if (r == 0) break;
        TSR_TRY(grow(&v, &cap, cnt, sizeof *v));
        cnt++;
        TSR_TRY(col_text_dup(st, 0, &v[cnt - 1].domain, "draft domain"));
        TSR_TRY(col_text_dup(st, 1, &v[cnt - 1].content, "draft content"));
    }
    done(st);
    st = NULL;
    TSR_TRY(tx_commit(s));
    *out = v;
    *n = cnt;
    v = NULL;
    rc = 0;
out:
    done(st);
    gw_store_free_chunks(v, cnt);
    if (rc != 0) tx_abort(s);
    return rc;
}

/* ---- logs --------------------------------------------------------------------------- */

int gw_store_logs_append(gw_store *s, const char *sandbox_id, const gw_log_line *lines, size_t n,
                         int64_t dropped, int64_t now)
{
    int rc = -1;
    struct sb_meta m;
    TSR_TRY(check_sandbox_id(sandbox_id));
    TSR_TRY_ENSURE(n == 0 || lines != NULL, TSR_E_INPUT, "log lines are missing");
    TSR_TRY_ENSURE(dropped >= 0, TSR_E_INPUT, "dropped count is negative");
    for (size_t i = 0; i < n; i++)
        TSR_TRY_ENSURE(lines[i].text != NULL, TSR_E_INPUT, "log line %zu has no text", i);
    TSR_TRY(tx_begin(s, 1));
    TSR_TRY(sb_meta(s, sandbox_id, &m));
    int64_t seq = m.log_seq;
    for (size_t i = 0; i < n; i++) {
        sqlite3_stmt *st = NULL;
        int b = SQLITE_OK;
        TSR_TRY_ENSURE(seq < INT64_MAX, TSR_E_LIMIT, "log sequence overflow");
        TSR_TRY(stmt(s, ST_LOG_INSERT, &st));
        bind_text(st, 1, sandbox_id, &b);
        bind_i64(st, 2, ++seq, &b);
        bind_i64(st, 3, lines[i].timestamp_ms, &b);
        bind_text(st, 4, lines[i].stream != NULL ? lines[i].stream : "", &b);
        bind_text(st, 5, lines[i].text, &b);
        bind_i64(st, 6, now, &b);
        TSR_TRY(exec_done(s, st, b, "insert log line"));
    }
    if (n > 0) TSR_TRY(set_counter(s, ST_SB_SET_LOG_SEQ, sandbox_id, seq, "update log seq"));
    if (dropped > 0) {
        sqlite3_stmt *st = NULL;
        int b = SQLITE_OK;
        TSR_TRY(stmt(s, ST_DROP_INSERT, &st));
        bind_text(st, 1, sandbox_id, &b);
        bind_i64(st, 2, dropped, &b);
        bind_i64(st, 3, now, &b);
        TSR_TRY(exec_done(s, st, b, "record dropped log lines"));
    }
    TSR_TRY(tx_commit(s));
    rc = 0;
out:
    if (rc != 0) tx_abort(s);
    return rc;
}

int gw_store_logs_get(gw_store *s, const char *sandbox_id, int64_t after_seq, int limit,
                      gw_log_line **out, size_t *n)
{
    int rc = -1, b = SQLITE_OK;
    int64_t lim = 0;
    struct sb_meta m;
    gw_log_line *v = NULL;
    size_t cnt = 0, cap = 0;
    sqlite3_stmt *st = NULL;
    *out = NULL;
    *n = 0;
    TSR_TRY(check_sandbox_id(sandbox_id));
    TSR_TRY(clamp_limit(limit, &lim));
    TSR_TRY(tx_begin(s, 0));
    TSR_TRY(sb_meta(s, sandbox_id, &m));
    TSR_TRY(stmt(s, ST_LOG_GET, &st));
    bind_text(st, 1, sandbox_id, &b);
    bind_i64(st, 2, after_seq, &b);
    bind_i64(st, 3, lim, &b);
    for (;;) {
        int r = step(s, st, b, "read logs");
        if (r < 0) goto out; /* recorded by step() */
        if (r == 0) break;
        TSR_TRY(grow(&v, &cap, cnt, sizeof *v));
        gw_log_line *l = &v[cnt++];
        l->seq = sqlite3_column_int64(st, 0);
        l->timestamp_ms = sqlite3_column_int64(st, 1);
        TSR_TRY(col_text_dup(st, 2, &l->stream, "log stream"));
        TSR_TRY(col_text_dup(st, 3, &l->text, "log text"));
    }
    done(st);
    st = NULL;
    TSR_TRY(tx_commit(s));
    *out = v;
    *n = cnt;
    v = NULL;
    rc = 0;
out:
    done(st);
    gw_store_free_logs(v, cnt);
    if (rc != 0) tx_abort(s);
    return rc;
}

int gw_store_logs_dropped(gw_store *s, const char *sandbox_id, int64_t *total)
{
    int rc = -1, b = SQLITE_OK;
    struct sb_meta m;
    sqlite3_stmt *st = NULL;
    *total = 0;
    TSR_TRY(check_sandbox_id(sandbox_id));
    TSR_TRY(tx_begin(s, 0));
    TSR_TRY(sb_meta(s, sandbox_id, &m));
    TSR_TRY(stmt(s, ST_DROP_SUM, &st));
    bind_text(st, 1, sandbox_id, &b);
    int r = step(s, st, b, "sum dropped log lines");
    if (r < 0) goto out; /* recorded by step() */
    TSR_TRY_ENSURE(r == 1, TSR_E_INTERNAL, "database: SUM returned no row");
    int64_t sum = sqlite3_column_int64(st, 0);
    done(st);
    st = NULL;
    TSR_TRY(tx_commit(s));
    *total = sum;
    rc = 0;
out:
    done(st);
    if (rc != 0) tx_abort(s);
    return rc;
}

/* ---- provider environment -------------------------------------------------------------- */

int gw_store_env_get(gw_store *s, const char *sandbox_id, gw_env_var **out, size_t *n)
{
    int rc = -1, b = SQLITE_OK;
    struct sb_meta m;
    gw_env_var *v = NULL;
    size_t cnt = 0, cap = 0;
    sqlite3_stmt *st = NULL;
    *out = NULL;
    *n = 0;
    TSR_TRY(check_sandbox_id(sandbox_id));
    TSR_TRY_ENSURE(s->keys != NULL, TSR_E_STATE, "no keyring: provider env cannot be read");
    TSR_TRY(tx_begin(s, 0));
    TSR_TRY(sb_meta(s, sandbox_id, &m));
    TSR_TRY(stmt(s, ST_ENV_GET, &st));
    bind_text(st, 1, sandbox_id, &b);
    for (;;) {
        int r = step(s, st, b, "read provider env");
        if (r < 0) goto out; /* recorded by step() */
        if (r == 0) break;
        TSR_TRY(grow(&v, &cap, cnt, sizeof *v));
        gw_env_var *e = &v[cnt++];
        TSR_TRY(col_text_dup(st, 0, &e->name, "provider env name"));
        uint8_t *value = NULL;
        size_t len = 0;
        TSR_TRY(env_open_value(s, sandbox_id, e->name, sqlite3_column_int64(st, 1),
                               sqlite3_column_blob(st, 2), (size_t)sqlite3_column_bytes(st, 2),
                               sqlite3_column_blob(st, 3), (size_t)sqlite3_column_bytes(st, 3),
                               &value, &len));
        if (strlen((const char *)value) != len) {
            OPENSSL_cleanse(value, len);
            free(value);
            (void)TSR_FAIL(TSR_E_STATE, "provider env %s of sandbox %s holds a NUL byte",
                           e->name, sandbox_id);
            goto out;
        }
        e->value = (char *)value;
    }
    done(st);
    st = NULL;
    TSR_TRY(tx_commit(s));
    *out = v;
    *n = cnt;
    v = NULL;
    rc = 0;
out:
    done(st);
    gw_store_free_env(v, cnt);
    if (rc != 0) tx_abort(s);
    return rc;
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

int gw_store_env_reencrypt(gw_store *s, size_t *count)
{
    int rc = -1, b = SQLITE_OK;
    struct stale_env *v = NULL;
    size_t cnt = 0, cap = 0;
    sqlite3_stmt *st = NULL;
    uint8_t *value = NULL;
    size_t value_len = 0;
    if (count != NULL) *count = 0;
    TSR_TRY_ENSURE(s->keys != NULL, TSR_E_STATE, "no keyring: provider env cannot be read");
    uint32_t current = gw_keyring_current_version(s->keys);

    TSR_TRY(tx_begin(s, 1));
    /* Read every stale row first: updating rows under a live cursor on the
     * same table is undefined in sqlite. */
    TSR_TRY(stmt(s, ST_ENV_STALE, &st));
    bind_i64(st, 1, current, &b);
    for (;;) {
        int r = step(s, st, b, "read provider env");
        if (r < 0) goto out; /* recorded by step() */
        if (r == 0) break;
        TSR_TRY(grow(&v, &cap, cnt, sizeof *v));
        struct stale_env *e = &v[cnt++];
        TSR_TRY(col_text_dup(st, 0, &e->sandbox_id, "provider env sandbox"));
        TSR_TRY(col_text_dup(st, 1, &e->name, "provider env name"));
        e->version = sqlite3_column_int64(st, 2);
        e->nonce_len = (size_t)sqlite3_column_bytes(st, 3);
        TSR_TRY_ENSURE(e->nonce_len == sizeof e->nonce, TSR_E_STATE,
                       "provider env %s of sandbox %s is corrupt", e->name, e->sandbox_id);
        memcpy(e->nonce, sqlite3_column_blob(st, 3), sizeof e->nonce);
        e->ct_len = (size_t)sqlite3_column_bytes(st, 4);
        e->ct = malloc(e->ct_len + 1);
        TSR_TRY_ENSURE(e->ct != NULL, TSR_E_INTERNAL, "out of memory");
        if (e->ct_len > 0) memcpy(e->ct, sqlite3_column_blob(st, 4), e->ct_len);
    }
    done(st);
    st = NULL;
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
    done(st);
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
