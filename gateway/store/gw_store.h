/* The gateway's storage: one sqlite3 file (WAL mode) under the data dir.
 *
 * This is the interface the rest of the gateway calls; every operation
 * dispatches to a backend through gw_store_ops (gw_store_backend.h, which
 * also states what a backend must guarantee). The sqlite backend is
 * gw_sqlite.c and gw_sqlite_open.c (open, close, migrations) with one file
 * per record type (gw_sqlite_sandbox.c, _cert.c, _policy.c, _log.c, _env.c).
 *
 * One gw_store is one sqlite connection, used by one thread at a time; each
 * gateway worker opens its own handle on the same file. Every write is one
 * IMMEDIATE transaction with synchronous=FULL: when a write returns 0 it is
 * durable, and when it fails nothing of it was written (multi-row writes are
 * rolled back as a whole).
 *
 * Errors (tsr_err.h):
 *   TSR_E_INPUT     a field is NULL, empty where it may not be, too long for
 *                   its record buffer, or an argument is out of range
 *   TSR_E_NOTFOUND  the named sandbox / certificate / policy does not exist
 *   TSR_E_EXISTS    a UNIQUE key is taken (sandbox id, live sandbox name,
 *                   certificate serial, duplicate env name)
 *   TSR_E_STATE     the sandbox is deleted (for writes that need a live one),
 *                   a newer schema, no keyring, a secret that will not decrypt
 *   TSR_E_IO        any other sqlite failure (busy past the 5 s timeout,
 *                   disk full, read-only file, I/O error), with its message
 *
 * Strings in records are NUL-terminated and fit their buffers; the store
 * refuses longer ones on write and fails closed (TSR_E_IO "corrupt") if the
 * file holds something that does not fit on read. Timestamps are Unix
 * seconds unless the name says _ms. */
#ifndef GW_STORE_H
#define GW_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tsr_err.h"

typedef struct gw_store gw_store;
typedef struct gw_keyring gw_keyring;           /* gw_secretbox.h */

/* The newest schema this code knows (numbered migrations 1..N). */
#define GW_STORE_SCHEMA_VERSION 5
/* List calls return at most this many rows; a larger limit is clamped. */
#define GW_STORE_MAX_PAGE 10000
#define GW_STORE_BUSY_TIMEOUT_MS 5000

/* A variable: a provider_env value is secret, a sandbox's plain env is not. */
typedef struct gw_env_var { char *name; char *value; } gw_env_var;
typedef struct gw_sandbox_rec {
    char id[37]; char name[129]; char driver[33]; char state[17];
    int64_t created_at; int64_t deleted_at;      /* 0 = live */
    int64_t policy_version;                      /* 0 = no policy */
    char image[513];                             /* "" = the driver's default */
    bool exited; int exit_code;                  /* exit_code is known when exited */
    /* The replica whose driver runs it ("" = not recorded: a store of one
     * gateway); docs/operations.md, "The owner replica". */
    char owner[129];
} gw_sandbox_rec;
/* The rest of what a sandbox runs and how it ended (GetSandbox): its
 * command, its plain env (not secret: stored as is, by name) and its
 * driver's last report (the supervisor's last lines). */
typedef struct gw_sandbox_spec {
    char **command; size_t n_command;
    gw_env_var *env; size_t n_env;
    char *state_detail;                          /* "" when none; never NULL after a get */
} gw_sandbox_spec;
typedef struct gw_cert_rec {
    char serial[41]; char spiffe_id[2049]; char sandbox_id[37];  /* "" = not a sandbox cert */
    int64_t not_before, not_after, issued_at, revoked_at;        /* revoked_at 0 = valid */
    char revocation_reason[129];
    /* The certificate whose holder renewed into this one ("" = a first
     * certificate): its lineage. Revoking a certificate revokes every
     * certificate renewed from it, transitively. */
    char renewed_from[41];
    int64_t row;  /* position in issue order (the table's rowid); set by gw_store_cert_page */
} gw_cert_rec;
/* A revoked serial and its certificate's notAfter (for the in-memory set). */
typedef struct gw_revoked_serial { char serial[41]; int64_t not_after; } gw_revoked_serial;
typedef struct gw_log_line { int64_t seq; int64_t timestamp_ms; char *stream; char *text; } gw_log_line;
typedef struct gw_policy_chunk { char *domain; char *content; } gw_policy_chunk;

/* Where the store is: a sqlite file path, or GW_STORE_PG_PREFIX followed by
 * a libpq connection string (PostgreSQL; the configuration's `store:
 * {backend: postgres, dsn: ...}` makes it). */
#define GW_STORE_PG_PREFIX "postgres:"
/* The libpq connection string of a PostgreSQL locator, or NULL for a sqlite
 * path: the one test of the prefix, for every caller. */
const char *gw_store_pg_dsn(const char *locator);
/* Whether the locator names PostgreSQL (gateways that may share the store). */
bool gw_store_is_pg(const char *locator);
/* Open (creating if missing: the file 0600, its parent dir 0700) and migrate.
 * PostgreSQL: connect, refuse a read-only standby, and migrate under the
 * store's advisory lock (several gateways may start at once).
 * `keys` may be NULL (then env calls fail with TSR_E_STATE); it is borrowed
 * and must outlive the store. A database whose schema is newer than
 * GW_STORE_SCHEMA_VERSION -> TSR_E_STATE "database schema version N is newer
 * than this gateway (M)". Several threads may open the same file at once. */
/* Called on every database error of category TSR_E_IO (the database is
 * unavailable), by any backend: the gateway counts them in its metrics.
 * Process-wide; set once before the first store is opened (NULL: none). The
 * store itself knows nothing of metrics (docs/architecture.md). */
void gw_store_on_io_error(void (*hook)(void));
void gw_store_io_error(void);

TSR_WUR int gw_store_open(const char *path, const gw_keyring *keys, gw_store **out);
void gw_store_close(gw_store *s);                                       /* NULL is fine */
/* Swap the borrowed keyring (e.g. after loading a rotated one). */
void gw_store_set_keyring(gw_store *s, const gw_keyring *keys);
/* The schema version recorded in the file. */
TSR_WUR int gw_store_schema_version(gw_store *s, int64_t *version);
/* Refuse every write on this connection (PRAGMA query_only): for read-only
 * inspection tools and tests. Writes then fail with TSR_E_IO. */
TSR_WUR int gw_store_set_read_only(gw_store *s, bool on);

/* ---- sandboxes ---------------------------------------------------------- */
/* CreateSandbox in ONE transaction: sandbox row, policy v1 (none if
 * policy_yaml is NULL), encrypted env (n_env may be 0), first cert (may be
 * NULL; its sandbox_id must equal sb->id). sb->deleted_at must be 0; the
 * stored policy_version is 1 (or 0 without a policy) whatever sb says. */
TSR_WUR int gw_store_sandbox_create(gw_store *s, const gw_sandbox_rec *sb, const char *policy_yaml,
        const gw_env_var *env, size_t n_env, const gw_cert_rec *first_cert);
/* The same, with what it runs: sb->image and spec's command and env (spec
 * may be NULL: none; its state_detail is ignored), in the same transaction. */
TSR_WUR int gw_store_sandbox_create_spec(gw_store *s, const gw_sandbox_rec *sb,
        const char *policy_yaml, const gw_env_var *env, size_t n_env,
        const gw_cert_rec *first_cert, const gw_sandbox_spec *spec);
/* A sandbox's command, plain env (by name) and state detail, deleted ones
 * too; free with gw_store_free_spec. Unknown id -> TSR_E_NOTFOUND. */
TSR_WUR int gw_store_sandbox_spec_get(gw_store *s, const char *id, gw_sandbox_spec *out);
void gw_store_free_spec(gw_sandbox_spec *spec);
TSR_WUR int gw_store_sandbox_get(gw_store *s, const char *id, gw_sandbox_rec *out);          /* also deleted ones */
TSR_WUR int gw_store_sandbox_find_by_name(gw_store *s, const char *name, gw_sandbox_rec *out); /* live only */
/* Live sandboxes with id > after_id (NULL or "" = from the start), by id,
 * at most `limit` (1.., clamped to GW_STORE_MAX_PAGE). *out is NULL when *n is 0. */
TSR_WUR int gw_store_sandbox_list(gw_store *s, const char *after_id, int limit, gw_sandbox_rec **out, size_t *n); /* live, by id */
TSR_WUR int gw_store_sandbox_set_state(gw_store *s, const char *id, const char *state);
/* A live sandbox's state as its driver reported it: state, exit status
 * (exited false: none) and detail (NULL: keep the stored one). A deleted or
 * unknown sandbox -> TSR_E_NOTFOUND (nothing written). */
TSR_WUR int gw_store_sandbox_set_status(gw_store *s, const char *id, const char *state,
                                        bool exited, int exit_code, const char *detail);
/* Marks deleted and revokes every unrevoked cert of the sandbox (reason
 * "sandbox deleted"), one transaction; also erases its provider env. An
 * already deleted sandbox -> TSR_E_NOTFOUND. now must be > 0. The sandbox
 * is then due for teardown by its owner (gw_store_teardowns). */
TSR_WUR int gw_store_sandbox_delete(gw_store *s, const char *id, int64_t now, int *revoked_count);

/* Deleted sandboxes of `owner` whose processes its driver has not removed
 * yet (deleted on another replica, or the owner stopped before it could),
 * at most `limit`, by id; *out NULL when *n is 0. */
TSR_WUR int gw_store_teardowns(gw_store *s, const char *owner, int limit, gw_sandbox_rec **out,
                               size_t *n);
/* The owner's driver removed the sandbox (or was told to): no longer due. */
TSR_WUR int gw_store_teardown_done(gw_store *s, const char *id);

/* ---- certificates ------------------------------------------------------- */
/* Durable when it returns 0. revoked_at must be 0. A sandbox cert needs its
 * sandbox to exist (TSR_E_NOTFOUND) and be live (TSR_E_STATE), checked in the
 * same transaction as the insert, so a cert can never be recorded for a
 * sandbox after its deletion revoked the others. A renewal (renewed_from set)
 * needs that certificate recorded for the same sandbox and not revoked
 * (TSR_E_UNAUTH), in the same transaction: a revocation either comes first
 * and refuses the renewal, or comes after and revokes it with its lineage. */
TSR_WUR int gw_store_cert_insert(gw_store *s, const gw_cert_rec *c);   /* durable when it returns 0 */
/* Group commit of n >= 1 records in one transaction, each checked as by
 * gw_store_cert_insert. 0: the batch committed (durable); results[i] is
 * TSR_E_NONE for a recorded certificate, or the category that refused that
 * one record (TSR_E_INPUT, _NOTFOUND, _STATE, _EXISTS, _UNAUTH). -1: nothing of the
 * batch was written (TSR_E_IO, ...). */
TSR_WUR int gw_store_cert_insert_batch(gw_store *s, const gw_cert_rec *const *certs, size_t n,
                                       enum tsr_errcat *results);
TSR_WUR int gw_store_cert_get(gw_store *s, const char *serial, gw_cert_rec *out);
/* The certificates of one sandbox (NULL = every certificate), oldest first.
 * A sandbox that never existed -> TSR_E_NOTFOUND. */
TSR_WUR int gw_store_cert_list(gw_store *s, const char *sandbox_id, gw_cert_rec **out, size_t *n);
/* One page of a sandbox's certificates in issue order (the table's rowid,
 * returned in each record's `row`), strictly after the cursor after_row
 * (0 = from the start; negative -> TSR_E_INPUT). Certificates are never
 * deleted, so one issued while a client pages always sorts after its cursor.
 * At most `limit` (1.., clamped to GW_STORE_MAX_PAGE); *more = 1 when rows
 * follow the last one returned. One read transaction; a sandbox that never
 * existed -> TSR_E_NOTFOUND. */
TSR_WUR int gw_store_cert_page(gw_store *s, const char *sandbox_id, int64_t after_row, int limit,
                               gw_cert_rec **out, size_t *n, int *more);
/* Revoke a certificate and, in the same transaction, its lineage: every
 * certificate renewed from it, transitively (reason "renewed from revoked
 * certificate <serial>"). Idempotent: each keeps its first revoked_at and
 * reason. now must be > 0. out (may be NULL) receives the named record as
 * stored; *lineage (may be NULL) a malloc'd array of every certificate of
 * the lineage, revoked now or before, n_lineage of them (NULL when none). */
TSR_WUR int gw_store_cert_revoke(gw_store *s, const char *serial, const char *reason, int64_t now,
                                 gw_cert_rec *out, gw_revoked_serial **lineage, size_t *n_lineage);
/* Every revoked serial whose not_after >= now (to load the in-memory
 * revocation set). A callback returning non-zero stops the walk; its error
 * (recorded by the callback) is returned as -1. */
TSR_WUR int gw_store_revoked_each(gw_store *s, int64_t now, int (*cb)(void *arg, const char *serial, int64_t not_after), void *arg);

/* ---- policies ----------------------------------------------------------- */
/* The newest policy. No policy yet -> TSR_E_NOTFOUND. *yaml: free(). */
TSR_WUR int gw_store_policy_get(gw_store *s, const char *sandbox_id, char **yaml, int64_t *version);
/* Stores the next version (current + 1) for a live sandbox (TSR_E_STATE if deleted). */
TSR_WUR int gw_store_policy_set(gw_store *s, const char *sandbox_id, const char *yaml, int64_t now, int64_t *new_version);
/* The version must exist for that sandbox (TSR_E_NOTFOUND). message may be NULL. */
TSR_WUR int gw_store_policy_status_add(gw_store *s, const char *sandbox_id, int64_t version, int status, const char *message, int64_t now);
/* The newest status report for (sandbox, version); none -> TSR_E_NOTFOUND.
 * *message: free(); any out pointer may be NULL. */
TSR_WUR int gw_store_policy_status_latest(gw_store *s, const char *sandbox_id, int64_t version,
        int *status, char **message, int64_t *reported_at);
/* Appends chunks (one transaction) to the sandbox's draft, in order. */
TSR_WUR int gw_store_draft_add(gw_store *s, const char *sandbox_id, const gw_policy_chunk *chunks, size_t n, int64_t now);
/* Every draft chunk in submission order. */
TSR_WUR int gw_store_draft_get(gw_store *s, const char *sandbox_id, gw_policy_chunk **out, size_t *n);
/* One page of a sandbox's draft chunks in submission order, after the chunk
 * numbered after_seq (0 = from the start), at most `limit` (1.., clamped)
 * and, when max_bytes > 0, only the chunks whose domain + content (+ 18
 * bytes of encoding each) fit in max_bytes -- always at least one.
 * *next_seq is the number of the last chunk returned when more follow (the
 * cursor of the next page), else 0. A sandbox that never existed ->
 * TSR_E_NOTFOUND. */
TSR_WUR int gw_store_draft_page(gw_store *s, const char *sandbox_id, int64_t after_seq,
                                int limit, size_t max_bytes, gw_policy_chunk **out, size_t *n,
                                int64_t *next_seq);

/* ---- logs --------------------------------------------------------------- */
/* One transaction; assigns seq (continuing after the sandbox's last; the
 * lines' own seq is ignored); records `dropped` if > 0. stream NULL = "". */
TSR_WUR int gw_store_logs_append(gw_store *s, const char *sandbox_id, const gw_log_line *lines, size_t n, int64_t dropped, int64_t now);
#define GW_LOG_SESSION_MAX 64
/* As gw_store_logs_append, exactly once per (session, batch_seq): session is
 * 1..GW_LOG_SESSION_MAX lowercase hex digits, batch_seq > 0 and increasing
 * within the session. When the sandbox's last stored batch is of the same
 * session and numbered batch_seq or above, this batch was stored already (its
 * acknowledgement was lost): nothing is written, not even `dropped`, and
 * *duplicate = 1. Otherwise the batch is stored, the (session, batch_seq)
 * recorded, *duplicate = 0. session NULL or "" (batch_seq 0): no check. */
TSR_WUR int gw_store_logs_append_batch(gw_store *s, const char *sandbox_id, const char *session,
                                       int64_t batch_seq, const gw_log_line *lines, size_t n,
                                       int64_t dropped, int64_t now, int *duplicate);
/* Lines with seq > after_seq, ascending, at most limit (1.., clamped). */
TSR_WUR int gw_store_logs_get(gw_store *s, const char *sandbox_id, int64_t after_seq, int limit, gw_log_line **out, size_t *n);
/* Sum of every `dropped` reported for the sandbox. */
TSR_WUR int gw_store_logs_dropped(gw_store *s, const char *sandbox_id, int64_t *total);

/* ---- provider environment (encrypted, AAD binds sandbox id and name) ---- */
TSR_WUR int gw_store_env_get(gw_store *s, const char *sandbox_id, gw_env_var **out, size_t *n);   /* decrypted, by name */
TSR_WUR int gw_store_env_set(gw_store *s, const char *sandbox_id, const gw_env_var *env, size_t n); /* replaces all; live sandbox */
/* Re-encrypt every stored value not already under the keyring's current key
 * (key rotation), one transaction. *count (may be NULL) = values moved. */
TSR_WUR int gw_store_env_reencrypt(gw_store *s, size_t *count);

/* ---- renewal rate limit, counted across gateways -------------------------- */
/* On a store several gateways share (PostgreSQL): take one renewal of
 * sandbox_id if fewer than `limit` were taken in the last window_ms (by the
 * database's clock), in one transaction under the store's write lock, so
 * the count is exact across replicas: *shared = true, *allowed. On sqlite
 * (one gateway) there is nothing to share: *shared = false, and the caller
 * counts with its own limiter (gw_ratelimit.h). */
TSR_WUR int gw_store_renew_take(gw_store *s, const char *sandbox_id, int limit,
                                int64_t window_ms, bool *shared, bool *allowed);

/* The next cRLNumber of gateways sharing the store (PostgreSQL): max(the
 * last one any of them took + 1, floor), in one transaction under the write
 * lock, so the CRLs of every replica are numbered in one increasing
 * sequence: *shared = true. On sqlite: *shared = false (the gateway numbers
 * its CRLs itself, gw_crl.h). */
TSR_WUR int gw_store_crl_number_next(gw_store *s, uint64_t floor, uint64_t *number,
                                     bool *shared);

/* Free what list/get calls return. NULL / 0 is fine. */
void gw_store_free_sandboxes(gw_sandbox_rec *v, size_t n);
void gw_store_free_certs(gw_cert_rec *v, size_t n);
void gw_store_free_env(gw_env_var *v, size_t n);       /* cleanses values */
void gw_store_free_logs(gw_log_line *v, size_t n);
void gw_store_free_chunks(gw_policy_chunk *v, size_t n);

#endif
