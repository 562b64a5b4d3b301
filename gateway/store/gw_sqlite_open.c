/* The sqlite and PostgreSQL store handle: opening it (the database file
 * created private, the connection hardened, WAL switched on), the schema
 * migrations run at open, and closing it. The statements, helpers and ops
 * table are in gw_sqlite.c (gw_sqlite_internal.h between them). */
#include "gw_sqlite_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gw_store_schema.h"
#include "tsr_fs.h"
#include "tsr_time.h"

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
static int pragma_text(gw_sqlite *s, const char *sql, char *buf, size_t cap)
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
static int pragma_expect(gw_sqlite *s, const char *sql, const char *want)
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
static int enable_wal(gw_sqlite *s)
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

static int read_schema_version(gw_sqlite *s, int64_t *version)
{
    struct query q;
    int64_t tables = 0;
    *version = 0;
    TSR_GUARD(gw_q_open(s, ST_MIGRATIONS_TABLE_EXISTS, "read schema", &q));
    if (gw_q_row(&q, gw_sql_row_i64, NULL, &tables) < 0) return -1;
    if (tables <= 0) return 0;
    TSR_GUARD(gw_q_open(s, ST_SCHEMA_VERSION, "read schema version", &q));
    if (gw_q_row(&q, gw_sql_row_i64, NULL, version) < 0) return -1;
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
static int migrate_one(gw_sqlite *s, int64_t *version)
{
    int rc = -1;
    char *errmsg = NULL;
    size_t n = 0;
    int erc = SQLITE_OK;
    const gw_migration *m = gw_store_migrations(&n);

    TSR_TRY(gw_sql_tx_begin(s, 1));
    if (s->pg != NULL) {
        TSR_TRY(gw_pg_migrations_table(s));
    } else {
        erc = sqlite3_exec(s->db,
                               "CREATE TABLE IF NOT EXISTS schema_migrations ("
                               "  version    INTEGER PRIMARY KEY NOT NULL,"
                               "  applied_at INTEGER NOT NULL) STRICT",
                               NULL, NULL, NULL);
        if (erc != SQLITE_OK) {
            (void)DB_FAIL(s, erc, "create schema_migrations");
            goto out;
        }
    }
    TSR_TRY(read_schema_version(s, version));
    TSR_TRY(check_not_newer(*version));
    if (*version < GW_STORE_SCHEMA_VERSION) {
        const gw_migration *next = &m[*version];
        TSR_TRY_ENSURE(next->version == *version + 1, TSR_E_INTERNAL,
                       "migration table out of order at %lld", (long long)*version);
        if (s->pg != NULL) {
            TSR_TRY(gw_pg_migration_run(s, next->version, "migration"));
        } else if ((erc = sqlite3_exec(s->db, next->sql, NULL, NULL, &errmsg)) != SQLITE_OK) {
            (void)TSR_FAIL(TSR_E_IO, "database: migration %d failed: %s", next->version,
                           errmsg ? errmsg : sqlite3_errstr(erc));
            goto out;
        }
        struct query q;
        TSR_TRY(gw_q_open(s, ST_MIGRATION_INSERT, "record migration", &q));
        gw_q_i64(&q, next->version);
        gw_q_i64(&q, tsr_now_unix());
        TSR_TRY(gw_q_exec(&q));
        *version = next->version;
    }
    TSR_TRY(gw_sql_tx_commit(s));
    rc = 0;
out:
    sqlite3_free(errmsg);
    if (rc != 0) gw_sql_tx_abort(s);
    return rc;
}

static int migrate(gw_sqlite *s)
{
    int64_t version = 0;
    /* Read-only first: an up-to-date database is opened without a write
     * lock (and so also when the file is write-protected). */
    TSR_GUARD(read_schema_version(s, &version));
    TSR_GUARD(check_not_newer(version));
    while (version < GW_STORE_SCHEMA_VERSION) TSR_GUARD(migrate_one(s, &version));
    return 0;
}

static int configure(gw_sqlite *s)
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

gw_sqlite *gw_sqlite_of(gw_store *base)
{
    /* The head of every handle gw_sqlite_open made (NULL stays NULL). */
    TSR_ASSERT(base == NULL || base->ops == &gw_sqlite_ops || base->ops == &gw_pg_ops);
    return (gw_sqlite *)base;
}

int gw_sqlite_open(const char *path, const gw_keyring *keys, gw_store **out)
{
    int rc = -1;
    gw_sqlite *s = NULL;
    *out = NULL;
    TSR_TRY(gw_sql_check_str(path, 4096, 0, "database path"));
    TSR_TRY_ENSURE(sqlite3_threadsafe() != 0, TSR_E_INTERNAL,
                   "sqlite was built without thread support");
    TSR_TRY(prepare_file_once(path));
    s = calloc(1, sizeof *s);
    TSR_TRY_ENSURE(s != NULL, TSR_E_INTERNAL, "out of memory");
    s->base.ops = &gw_sqlite_ops;
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
    *out = &s->base;
    s = NULL;
    rc = 0;
out:
    if (s != NULL) gw_sqlite_close(&s->base);
    return rc;
}

int gw_pg_open(const char *dsn, const gw_keyring *keys, gw_store **out)
{
    int rc = -1;
    gw_sqlite *s = NULL;
    *out = NULL;
    TSR_TRY(gw_sql_check_str(dsn, 4096, 0, "database DSN"));
    s = calloc(1, sizeof *s);
    TSR_TRY_ENSURE(s != NULL, TSR_E_INTERNAL, "out of memory");
    s->base.ops = &gw_pg_ops;
    s->keys = keys;
    TSR_TRY(gw_pg_connect(s, dsn));
    TSR_TRY(migrate(s));
    *out = &s->base;
    s = NULL;
    rc = 0;
out:
    if (s != NULL) gw_sqlite_close(&s->base);
    return rc;
}

void gw_sqlite_close(gw_store *base)
{
    gw_sqlite *s = gw_sqlite_of(base);
    if (s == NULL) return;
    gw_sql_tx_abort(s);
    for (size_t i = 0; i < ST__COUNT; i++) sqlite3_finalize(s->stmts[i]);
    sqlite3_close(s->db);
    gw_pg_disconnect(s);
    free(s);
}

void gw_sqlite_set_keyring(gw_store *base, const gw_keyring *keys)
{
    gw_sqlite_of(base)->keys = keys;
}

int gw_sqlite_schema_version(gw_store *base, int64_t *version)
{
    return read_schema_version(gw_sqlite_of(base), version);
}

int gw_sqlite_set_read_only(gw_store *base, bool on)
{
    gw_sqlite *s = gw_sqlite_of(base);
    if (s->pg != NULL) {
        s->pg_read_only = on;
        return gw_pg_simple(s, on ? "SET default_transaction_read_only = on"
                                  : "SET default_transaction_read_only = off",
                            "set read-only");
    }
    int rc = sqlite3_exec(s->db, on ? "PRAGMA query_only=1" : "PRAGMA query_only=0", NULL,
                          NULL, NULL);
    if (rc != SQLITE_OK) return DB_FAIL(s, rc, "PRAGMA query_only");
    return 0;
}
