/* The PostgreSQL engine of the SQL store (gw_sqlite_internal.h): several
 * gateways on one database (docs/operations.md, "Replicas on PostgreSQL").
 *
 * The operations are the sqlite backend's code; this file gives them a
 * connection, statements, parameters, transactions and errors:
 *
 *  - Statements are the sqlite texts with ?N written $N, except the few
 *    rewritten below (pg_sql); prepared once per connection.
 *  - A write transaction is BEGIN, then pg_advisory_xact_lock(the store's
 *    key): writers of every gateway queue on that one lock, as sqlite's
 *    writers queue on the file (BEGIN IMMEDIATE). Each reads, under READ
 *    COMMITTED, everything committed before it took the lock; so the checks
 *    the operations make before they write (a live sandbox, a renewal's
 *    unrevoked parent, the next log sequence, the last log batch) hold at
 *    commit, and sequence numbers (certificate rows, revocations) are given
 *    in commit order. Uniqueness is also enforced by the schema.
 *  - Commit is synchronous (synchronous_commit = on for the session): a
 *    write that returned 0 is on the server's disk.
 *  - A lost connection fails the call with TSR_E_IO (UNAVAILABLE); the next
 *    call reconnects (at most one attempt a second), so the gateway recovers
 *    by itself when the database is back.
 *  - Migrations are PostgreSQL's text of the same numbered migrations, each
 *    in a write transaction: under the same advisory lock, so replicas that
 *    start at once apply each exactly once. */
#include "gw_sqlite_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_store_schema.h"
#include "tsr_time.h"

/* pg_advisory_xact_lock key of the store's writers ("tsr1"). */
#define PG_WRITE_LOCK "1953722929"
#define PG_RECONNECT_MS 1000

/* ---- statements ---------------------------------------------------------------- */

static const char *const pg_override[ST__COUNT] = {
    [ST_MIGRATIONS_TABLE_EXISTS] =
        "SELECT count(*) FROM pg_catalog.pg_tables "
        "WHERE schemaname = current_schema() AND tablename = 'schema_migrations'",
    [ST_SB_META] = "SELECT CASE WHEN deleted_at IS NULL THEN 1 ELSE 0 END, policy_version, "
                   "log_seq, draft_seq FROM sandboxes WHERE id = ?1",
    [ST_CERT_PARENT] = "SELECT sandbox_id, CASE WHEN revoked_at IS NULL THEN 1 ELSE 0 END "
                       "FROM certificates WHERE serial = ?1",
    /* row_id is PostgreSQL's rowid: given under the write lock, so in commit
     * order, and a certificate issued while a client pages sorts after its
     * cursor. */
    /* The renewal rate limit across replicas: a sliding window of the
     * renewals taken, by the database's clock, under the write lock. */
#define PG_NOW_MS "(extract(epoch from clock_timestamp()) * 1000)::bigint"
    [ST_RENEW_PRUNE] = "DELETE FROM renew_events WHERE sandbox_id = ?1 "
                       "AND at_ms <= " PG_NOW_MS " - ?2::bigint",
    [ST_RENEW_TAKE] = "INSERT INTO renew_events(sandbox_id, at_ms) SELECT ?1, " PG_NOW_MS " "
                      "WHERE (SELECT count(*) FROM renew_events WHERE sandbox_id = ?1) < "
                      "?2::bigint",
    [ST_CRL_NUMBER] = "UPDATE crl_state SET number = GREATEST(number + 1, ?1::bigint) "
                      "WHERE id = 1 RETURNING number",
    [ST_CERT_PAGE] = "SELECT serial, spiffe_id, sandbox_id, not_before, not_after, issued_at, "
                     "revoked_at, revocation_reason, renewed_from, row_id FROM certificates "
                     "WHERE sandbox_id = ?1 AND row_id > ?2 ORDER BY row_id LIMIT ?3",
};

const char *gw_pg_sql(enum stmt_id id, const char *sqlite_sql)
{
    return pg_override[id] != NULL ? pg_override[id] : sqlite_sql;
}

/* ?N -> $N (no statement holds a '?' inside a literal). */
static int to_pg_params(const char *in, char *out, size_t cap)
{
    size_t n = strlen(in);
    TSR_ENSURE(n < cap, TSR_E_INTERNAL, "statement too long");
    for (size_t i = 0; i <= n; i++) out[i] = in[i] == '?' ? '$' : in[i];
    return 0;
}

/* ---- errors -------------------------------------------------------------------- */

static enum tsr_errcat pg_category(const char *state)
{
    if (state == NULL) return TSR_E_IO;
    if (strcmp(state, "23505") == 0) return TSR_E_EXISTS;      /* unique_violation */
    if (strcmp(state, "23503") == 0) return TSR_E_NOTFOUND;    /* foreign_key_violation */
    if (strcmp(state, "23514") == 0 || strcmp(state, "23502") == 0 || /* check, not null */
        strcmp(state, "22001") == 0 || strcmp(state, "22021") == 0)   /* too long, encoding */
        return TSR_E_INPUT;
    return TSR_E_IO;
}

/* The one line of a libpq message (it ends with a newline). */
static void one_line(const char *msg, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s", msg != NULL && msg[0] != '\0' ? msg : "connection lost");
    buf[strcspn(buf, "\n")] = '\0';
}

static int pg_fail_at(gw_sqlite *s, const PGresult *res, const char *file, int line,
                      const char *what)
{
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    char text[512];
    one_line(msg != NULL ? msg : PQerrorMessage(s->pg), text, sizeof text);
    enum tsr_errcat cat = pg_category(state);
    if (cat == TSR_E_IO) gw_store_io_error();
    if (PQstatus(s->pg) != CONNECTION_OK)
        return tsr_fail_at(TSR_E_IO, file, line, "database unavailable: %s: %s", what, text);
    return tsr_fail_at(cat, file, line, "database: %s: %s (%s)", what, text,
                       state != NULL ? state : "no SQLSTATE");
}
#define PG_FAIL(s, res, what) pg_fail_at((s), (res), __FILE__, __LINE__, (what))

/* PQexec of one or more statements; the last result must be a success. */
int gw_pg_simple(gw_sqlite *s, const char *sql, const char *what)
{
    PGresult *res = PQexec(s->pg, sql);
    ExecStatusType st = PQresultStatus(res);
    int rc = 0;
    if (res == NULL || (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK))
        rc = PG_FAIL(s, res, what);
    PQclear(res);
    return rc;
}

/* ---- connection ---------------------------------------------------------------- */

/* The session every connection runs with. */
static int session_setup(gw_sqlite *s)
{
    TSR_GUARD(gw_pg_simple(s,
                           "SET client_encoding = 'UTF8';"
                           "SET client_min_messages = warning;"
                           "SET synchronous_commit = on;"
                           "SET lock_timeout = '5s';"
                           "SET statement_timeout = '30s';"
                           "SET idle_in_transaction_session_timeout = '60s'",
                           "configure session"));
    if (s->pg_read_only)
        TSR_GUARD(gw_pg_simple(s, "SET default_transaction_read_only = on", "set read-only"));
    memset(s->pg_prepared, 0, sizeof s->pg_prepared);
    return 0;
}

/* A standby (or a database that refuses writes) cannot hold the store. */
static int check_writable(gw_sqlite *s)
{
    PGresult *res = PQexec(s->pg, "SELECT pg_is_in_recovery(), "
                                  "current_setting('default_transaction_read_only')");
    int rc = 0;
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        rc = PG_FAIL(s, res, "check the server");
    } else if (strcmp(PQgetvalue(res, 0, 0), "t") == 0) {
        rc = TSR_FAIL(TSR_E_STATE, "database is a read-only standby (in recovery): the store "
                                   "needs the primary");
    } else if (strcmp(PQgetvalue(res, 0, 1), "on") == 0) {
        rc = TSR_FAIL(TSR_E_STATE, "database refuses writes (default_transaction_read_only "
                                   "is on)");
    }
    PQclear(res);
    return rc;
}

int gw_pg_conn_open(const char *dsn, PGconn **out)
{
    char *err = NULL;
    *out = NULL;
    PQconninfoOption *opts = PQconninfoParse(dsn, &err);
    if (opts == NULL) {
        char text[512];
        one_line(err != NULL ? err : "out of memory", text, sizeof text);
        PQfreemem(err);
        return TSR_FAIL(TSR_E_INPUT, "invalid database DSN: %s", text);
    }
    PQconninfoFree(opts);
    /* Defaults first: what the DSN says (the last dbname, expanded) wins. */
    const char *const keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *const vals[] = {"5", "tessera-gateway", dsn, NULL};
    *out = PQconnectdbParams(keys, vals, 1);
    TSR_ENSURE(*out != NULL, TSR_E_INTERNAL, "out of memory");
    if (PQstatus(*out) != CONNECTION_OK) {
        char text[512];
        one_line(PQerrorMessage(*out), text, sizeof text);
        return TSR_FAIL(TSR_E_IO, "cannot connect to the database: %s", text);
    }
    return 0;
}

int gw_pg_connect(gw_sqlite *s, const char *dsn)
{
    TSR_GUARD(gw_pg_conn_open(dsn, &s->pg));
    TSR_GUARD(session_setup(s));
    return check_writable(s);
}

void gw_pg_disconnect(gw_sqlite *s)
{
    if (s->pg == NULL) return;
    PQfinish(s->pg);
    s->pg = NULL;
}

/* A usable connection: reconnect after a loss, outside a transaction (a
 * transaction cut by a lost connection was rolled back by the server). */
int gw_pg_ready(gw_sqlite *s)
{
    /* A server that ended the session while it was idle (a restart, an
     * administrator) left its goodbye on the socket: read it now, so that
     * this call reconnects instead of failing on a dead connection. */
    if (PQstatus(s->pg) == CONNECTION_OK && !s->pg_in_tx) {
        (void)PQconsumeInput(s->pg);
        PGnotify *n;
        while ((n = PQnotifies(s->pg)) != NULL) PQfreemem(n);
    }
    if (PQstatus(s->pg) == CONNECTION_OK) return 0;
    TSR_ENSURE(!s->pg_in_tx, TSR_E_IO, "database unavailable: connection lost");
    int64_t now = tsr_monotonic_ms();
    TSR_ENSURE(now >= s->pg_retry_after_ms, TSR_E_IO,
               "database unavailable: reconnecting");
    PQreset(s->pg);
    if (PQstatus(s->pg) != CONNECTION_OK) {
        char text[512];
        one_line(PQerrorMessage(s->pg), text, sizeof text);
        s->pg_retry_after_ms = now + PG_RECONNECT_MS;
        gw_store_io_error();
        return TSR_FAIL(TSR_E_IO, "database unavailable: %s", text);
    }
    return session_setup(s);
}

/* ---- statements and transactions ------------------------------------------------ */

int gw_pg_prepare(gw_sqlite *s, enum stmt_id id, const char *sql)
{
    if (!s->pg_in_tx) TSR_GUARD(gw_pg_ready(s));
    if (s->pg_prepared[id]) return 0;
    char name[16], text[2048];
    snprintf(name, sizeof name, "gw%d", (int)id);
    TSR_GUARD(to_pg_params(sql, text, sizeof text));
    PGresult *res = PQprepare(s->pg, name, text, 0, NULL);
    if (PQresultStatus(res) != PGRES_COMMAND_OK && !s->pg_in_tx &&
        PQstatus(s->pg) != CONNECTION_OK) {
        /* closed by the server while idle: preparing changed nothing */
        PQclear(res);
        s->pg_retry_after_ms = 0;
        TSR_GUARD(gw_pg_ready(s));
        res = PQprepare(s->pg, name, text, 0, NULL);
    }
    int rc = 0;
    if (PQresultStatus(res) != PGRES_COMMAND_OK) rc = PG_FAIL(s, res, "prepare");
    else s->pg_prepared[id] = true;
    PQclear(res);
    return rc;
}

/* A read outside a transaction that failed because the server had closed
 * an idle connection (a restart): nothing was done, so connect again and
 * run it once more. Writes are never run twice. */
static bool retry_read(gw_sqlite *s, const struct query *q)
{
    if (s->pg_in_tx || PQstatus(s->pg) == CONNECTION_OK || q->sql == NULL ||
        strncmp(q->sql, "SELECT ", 7) != 0)
        return false;
    s->pg_retry_after_ms = 0;
    if (gw_pg_ready(s) != 0 || gw_pg_prepare(s, q->id, q->sql) != 0) return false;
    return true;
}

int gw_pg_run(struct query *q, PGresult **out)
{
    gw_sqlite *s = q->s;
    char name[16];
    *out = NULL;
    TSR_ENSURE(q->bound == 0, TSR_E_INTERNAL, "database: %s: bad parameters", q->what);
    snprintf(name, sizeof name, "gw%d", (int)q->id);
    PGresult *res = PQexecPrepared(s->pg, name, q->next - 1, q->pv, q->pl, q->pf, 0);
    ExecStatusType st = PQresultStatus(res);
    if ((res == NULL || (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)) && retry_read(s, q)) {
        PQclear(res);
        res = PQexecPrepared(s->pg, name, q->next - 1, q->pv, q->pl, q->pf, 0);
        st = PQresultStatus(res);
    }
    if (res == NULL || (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)) {
        int rc = PG_FAIL(s, res, q->what);
        PQclear(res);
        return rc;
    }
    const char *changed = PQcmdTuples(res);
    s->changes = changed[0] != '\0' ? strtoll(changed, NULL, 10) : 0;
    *out = res;
    return 0;
}

int gw_pg_tx_begin(gw_sqlite *s, int write)
{
    const char *sql = write ? "BEGIN ISOLATION LEVEL READ COMMITTED;"
                              "SELECT pg_advisory_xact_lock(" PG_WRITE_LOCK ")"
                            : "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
    TSR_GUARD(gw_pg_ready(s));
    s->pg_in_tx = true;
    int rc = gw_pg_simple(s, sql, "begin transaction");
    if (rc != 0) gw_pg_tx_abort(s);
    /* A connection the server closed while idle: nothing began; once more
     * on a new one. */
    if (rc != 0 && PQstatus(s->pg) != CONNECTION_OK) {
        s->pg_retry_after_ms = 0;
        TSR_GUARD(gw_pg_ready(s));
        s->pg_in_tx = true;
        rc = gw_pg_simple(s, sql, "begin transaction");
        if (rc != 0) gw_pg_tx_abort(s);
    }
    return rc;
}

/* A COMMIT of a failed transaction answers ROLLBACK: only "COMMIT" is one. */
int gw_pg_tx_commit(gw_sqlite *s)
{
    PGresult *res = PQexec(s->pg, "COMMIT");
    int rc = 0;
    if (PQresultStatus(res) != PGRES_COMMAND_OK) rc = PG_FAIL(s, res, "commit");
    else if (strcmp(PQcmdStatus(res), "COMMIT") != 0)
        rc = TSR_FAIL(TSR_E_IO, "database: commit was rolled back");
    PQclear(res);
    s->pg_in_tx = false;
    return rc;
}

/* Keeps the recorded error: it is the caller's. */
void gw_pg_tx_abort(gw_sqlite *s)
{
    if (s->pg == NULL) return;
    PGTransactionStatusType ts = PQtransactionStatus(s->pg);
    if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR) PQclear(PQexec(s->pg, "ROLLBACK"));
    s->pg_in_tx = false;
}

/* ---- migrations ------------------------------------------------------------------ */

/* The same numbered migrations as gw_store_schema.c, in PostgreSQL's types:
 * BIGINT for INTEGER, BYTEA for BLOB, BIGSERIAL for sqlite's implicit
 * rowid where the code orders by it. Append only, as there. */
static const char pg_migration_1[] =
    "CREATE TABLE sandboxes ("
    "  id             TEXT PRIMARY KEY NOT NULL,"
    "  name           TEXT NOT NULL,"
    "  driver         TEXT NOT NULL,"
    "  state          TEXT NOT NULL,"
    "  created_at     BIGINT NOT NULL,"
    "  deleted_at     BIGINT,"
    "  policy_version BIGINT NOT NULL DEFAULT 0,"
    "  log_seq        BIGINT NOT NULL DEFAULT 0,"
    "  draft_seq      BIGINT NOT NULL DEFAULT 0);"
    "CREATE UNIQUE INDEX sandboxes_live_name ON sandboxes(name) WHERE deleted_at IS NULL;"
    "CREATE TABLE certificates ("
    "  serial            TEXT PRIMARY KEY NOT NULL,"
    "  spiffe_id         TEXT NOT NULL,"
    "  sandbox_id        TEXT REFERENCES sandboxes(id),"
    "  not_before        BIGINT NOT NULL,"
    "  not_after         BIGINT NOT NULL,"
    "  issued_at         BIGINT NOT NULL,"
    "  revoked_at        BIGINT,"
    "  revocation_reason TEXT,"
    "  row_id            BIGSERIAL NOT NULL UNIQUE);"
    "CREATE INDEX certificates_sandbox ON certificates(sandbox_id);"
    "CREATE INDEX certificates_revoked ON certificates(not_after) WHERE revoked_at IS NOT NULL;"
    /* The revocation feed: every revocation numbered in commit order (the
     * revoking transactions hold the write lock), announced by NOTIFY at
     * commit; other gateways read it by number (gw_pg_watch.c). */
    "CREATE TABLE revocations ("
    "  seq       BIGSERIAL PRIMARY KEY,"
    "  serial    TEXT NOT NULL REFERENCES certificates(serial),"
    "  not_after BIGINT NOT NULL);"
    "CREATE FUNCTION tessera_revoked() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "  INSERT INTO revocations(serial, not_after) VALUES (NEW.serial, NEW.not_after);"
    "  PERFORM pg_notify('tessera_revocations', '');"
    "  RETURN NEW; END $$;"
    "CREATE TRIGGER certificates_revoked AFTER UPDATE OF revoked_at ON certificates "
    "  FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL) "
    "  EXECUTE FUNCTION tessera_revoked();"
    /* The renewals each sandbox took, for the rate limit across replicas
     * (gw_store_renew_take); pruned as they leave the window. */
    "CREATE TABLE renew_events ("
    "  sandbox_id TEXT NOT NULL,"
    "  at_ms      BIGINT NOT NULL);"
    "CREATE INDEX renew_events_sandbox ON renew_events(sandbox_id, at_ms);"
    /* The last cRLNumber any replica took (gw_store_crl_number_next). */
    "CREATE TABLE crl_state ("
    "  id     BIGINT PRIMARY KEY CHECK (id = 1),"
    "  number BIGINT NOT NULL);"
    "INSERT INTO crl_state(id, number) VALUES (1, 0);"
    "CREATE TABLE policies ("
    "  sandbox_id TEXT NOT NULL REFERENCES sandboxes(id),"
    "  version    BIGINT NOT NULL CHECK (version > 0),"
    "  yaml       TEXT NOT NULL,"
    "  created_at BIGINT NOT NULL,"
    "  PRIMARY KEY (sandbox_id, version));"
    "CREATE TABLE policy_status ("
    "  id          BIGSERIAL PRIMARY KEY,"
    "  sandbox_id  TEXT NOT NULL,"
    "  version     BIGINT NOT NULL,"
    "  status      BIGINT NOT NULL,"
    "  message     TEXT NOT NULL,"
    "  reported_at BIGINT NOT NULL,"
    "  FOREIGN KEY (sandbox_id, version) REFERENCES policies(sandbox_id, version));"
    "CREATE INDEX policy_status_policy ON policy_status(sandbox_id, version);"
    "CREATE TABLE draft_chunks ("
    "  sandbox_id   TEXT NOT NULL REFERENCES sandboxes(id),"
    "  seq          BIGINT NOT NULL,"
    "  domain       TEXT NOT NULL,"
    "  content      TEXT NOT NULL,"
    "  submitted_at BIGINT NOT NULL,"
    "  PRIMARY KEY (sandbox_id, seq));"
    "CREATE TABLE logs ("
    "  sandbox_id   TEXT NOT NULL REFERENCES sandboxes(id),"
    "  seq          BIGINT NOT NULL CHECK (seq > 0),"
    "  timestamp_ms BIGINT NOT NULL,"
    "  stream       TEXT NOT NULL,"
    "  text         TEXT NOT NULL,"
    "  received_at  BIGINT NOT NULL,"
    "  PRIMARY KEY (sandbox_id, seq));"
    "CREATE TABLE log_drops ("
    "  id          BIGSERIAL PRIMARY KEY,"
    "  sandbox_id  TEXT NOT NULL REFERENCES sandboxes(id),"
    "  dropped     BIGINT NOT NULL CHECK (dropped > 0),"
    "  reported_at BIGINT NOT NULL);"
    "CREATE INDEX log_drops_sandbox ON log_drops(sandbox_id);"
    "CREATE TABLE provider_env ("
    "  sandbox_id  TEXT NOT NULL REFERENCES sandboxes(id),"
    "  name        TEXT NOT NULL,"
    "  key_version BIGINT NOT NULL CHECK (key_version > 0),"
    "  nonce       BYTEA NOT NULL CHECK (octet_length(nonce) = 12),"
    "  ciphertext  BYTEA NOT NULL CHECK (octet_length(ciphertext) >= 16),"
    "  PRIMARY KEY (sandbox_id, name));";

static const char pg_migration_2[] =
    "ALTER TABLE sandboxes ADD COLUMN log_session TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE sandboxes ADD COLUMN log_batch BIGINT NOT NULL DEFAULT 0;";

static const char pg_migration_3[] =
    "ALTER TABLE certificates ADD COLUMN renewed_from TEXT REFERENCES certificates(serial);"
    "CREATE INDEX certificates_renewed_from ON certificates(renewed_from) "
    "WHERE renewed_from IS NOT NULL;";

static const char pg_migration_4[] =
    "ALTER TABLE sandboxes ADD COLUMN image TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE sandboxes ADD COLUMN exit_code BIGINT;"
    "ALTER TABLE sandboxes ADD COLUMN state_detail TEXT NOT NULL DEFAULT '';"
    "CREATE TABLE sandbox_command ("
    "  sandbox_id TEXT NOT NULL REFERENCES sandboxes(id),"
    "  pos        BIGINT NOT NULL CHECK (pos >= 0),"
    "  arg        TEXT NOT NULL,"
    "  PRIMARY KEY (sandbox_id, pos));"
    "CREATE TABLE sandbox_env ("
    "  sandbox_id TEXT NOT NULL REFERENCES sandboxes(id),"
    "  name       TEXT NOT NULL,"
    "  value      TEXT NOT NULL,"
    "  PRIMARY KEY (sandbox_id, name));";

static const char pg_migration_5[] =
    "ALTER TABLE sandboxes ADD COLUMN owner TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE sandboxes ADD COLUMN teardown BIGINT NOT NULL DEFAULT 0;"
    "CREATE INDEX sandboxes_teardown ON sandboxes(owner) WHERE teardown = 1;";

static const char *const pg_migrations[] = {pg_migration_1, pg_migration_2, pg_migration_3,
                                            pg_migration_4, pg_migration_5};

_Static_assert(sizeof pg_migrations / sizeof pg_migrations[0] == GW_STORE_SCHEMA_VERSION,
               "every migration has its PostgreSQL text");

int gw_pg_migrations_table(gw_sqlite *s)
{
    return gw_pg_simple(s,
                        "CREATE TABLE IF NOT EXISTS schema_migrations ("
                        "  version    BIGINT PRIMARY KEY NOT NULL,"
                        "  applied_at BIGINT NOT NULL)",
                        "create schema_migrations");
}

int gw_pg_migration_run(gw_sqlite *s, int version, const char *what)
{
    TSR_ENSURE(version >= 1 && version <= GW_STORE_SCHEMA_VERSION, TSR_E_INTERNAL,
               "no migration %d", version);
    char label[64];
    snprintf(label, sizeof label, "%s %d", what, version);
    return gw_pg_simple(s, pg_migrations[version - 1], label);
}
