/* Schema migrations. Append only: a released migration is never edited;
 * change the schema with a new numbered one and bump GW_STORE_SCHEMA_VERSION.
 *
 * Conventions: STRICT tables; NULL only where it means "absent"
 * (sandboxes.deleted_at = live, certificates.revoked_at = valid,
 * certificates.sandbox_id = not a sandbox cert, sandboxes.exit_code = no
 * exit known). Rows are never deleted except provider_env (secrets of a
 * deleted sandbox). */
#include "gw_store_schema.h"

#include "gw_store.h"

static const char migration_1[] =
    "CREATE TABLE sandboxes ("
    "  id             TEXT PRIMARY KEY NOT NULL,"
    "  name           TEXT NOT NULL,"
    "  driver         TEXT NOT NULL,"
    "  state          TEXT NOT NULL,"
    "  created_at     INTEGER NOT NULL,"
    "  deleted_at     INTEGER,"
    "  policy_version INTEGER NOT NULL DEFAULT 0,"
    "  log_seq        INTEGER NOT NULL DEFAULT 0,"   /* last seq given to a log line */
    "  draft_seq      INTEGER NOT NULL DEFAULT 0"    /* last seq given to a draft chunk */
    ") STRICT;"
    "CREATE UNIQUE INDEX sandboxes_live_name ON sandboxes(name) WHERE deleted_at IS NULL;"

    "CREATE TABLE certificates ("
    "  serial            TEXT PRIMARY KEY NOT NULL,"
    "  spiffe_id         TEXT NOT NULL,"
    "  sandbox_id        TEXT REFERENCES sandboxes(id),"
    "  not_before        INTEGER NOT NULL,"
    "  not_after         INTEGER NOT NULL,"
    "  issued_at         INTEGER NOT NULL,"
    "  revoked_at        INTEGER,"
    "  revocation_reason TEXT"
    ") STRICT;"
    "CREATE INDEX certificates_sandbox ON certificates(sandbox_id);"
    "CREATE INDEX certificates_revoked ON certificates(not_after) WHERE revoked_at IS NOT NULL;"

    "CREATE TABLE policies ("
    "  sandbox_id TEXT NOT NULL REFERENCES sandboxes(id),"
    "  version    INTEGER NOT NULL CHECK (version > 0),"
    "  yaml       TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  PRIMARY KEY (sandbox_id, version)"
    ") STRICT;"

    "CREATE TABLE policy_status ("
    "  id          INTEGER PRIMARY KEY,"
    "  sandbox_id  TEXT NOT NULL,"
    "  version     INTEGER NOT NULL,"
    "  status      INTEGER NOT NULL,"
    "  message     TEXT NOT NULL,"
    "  reported_at INTEGER NOT NULL,"
    "  FOREIGN KEY (sandbox_id, version) REFERENCES policies(sandbox_id, version)"
    ") STRICT;"
    "CREATE INDEX policy_status_policy ON policy_status(sandbox_id, version);"

    "CREATE TABLE draft_chunks ("
    "  sandbox_id   TEXT NOT NULL REFERENCES sandboxes(id),"
    "  seq          INTEGER NOT NULL,"
    "  domain       TEXT NOT NULL,"
    "  content      TEXT NOT NULL,"
    "  submitted_at INTEGER NOT NULL,"
    "  PRIMARY KEY (sandbox_id, seq)"
    ") STRICT;"

    "CREATE TABLE logs ("
    "  sandbox_id   TEXT NOT NULL REFERENCES sandboxes(id),"
    "  seq          INTEGER NOT NULL CHECK (seq > 0),"
    "  timestamp_ms INTEGER NOT NULL,"
    "  stream       TEXT NOT NULL,"
    "  text         TEXT NOT NULL,"
    "  received_at  INTEGER NOT NULL,"
    "  PRIMARY KEY (sandbox_id, seq)"
    ") STRICT;"

    "CREATE TABLE log_drops ("
    "  id          INTEGER PRIMARY KEY,"
    "  sandbox_id  TEXT NOT NULL REFERENCES sandboxes(id),"
    "  dropped     INTEGER NOT NULL CHECK (dropped > 0),"
    "  reported_at INTEGER NOT NULL"
    ") STRICT;"
    "CREATE INDEX log_drops_sandbox ON log_drops(sandbox_id);"

    "CREATE TABLE provider_env ("
    "  sandbox_id  TEXT NOT NULL REFERENCES sandboxes(id),"
    "  name        TEXT NOT NULL,"
    "  key_version INTEGER NOT NULL CHECK (key_version > 0),"
    "  nonce       BLOB NOT NULL CHECK (length(nonce) = 12),"
    "  ciphertext  BLOB NOT NULL CHECK (length(ciphertext) >= 16),"
    "  PRIMARY KEY (sandbox_id, name)"
    ") STRICT;";

/* 2: exactly-once log batches. A supervisor names its stream of batches
 * (log_session) and numbers them; log_batch is the last number stored for
 * that session, so a batch resent after a lost acknowledgement is
 * recognised and not stored twice. */
static const char migration_2[] =
    "ALTER TABLE sandboxes ADD COLUMN log_session TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE sandboxes ADD COLUMN log_batch INTEGER NOT NULL DEFAULT 0;";

/* 3: renewal lineage. A renewed certificate records the serial of the
 * certificate that authenticated its RenewCertificate call; revoking a
 * certificate revokes everything renewed from it, transitively. NULL: a
 * first certificate (CreateSandbox) or a user's. */
static const char migration_3[] =
    "ALTER TABLE certificates ADD COLUMN renewed_from TEXT REFERENCES certificates(serial);"
    "CREATE INDEX certificates_renewed_from ON certificates(renewed_from) "
    "WHERE renewed_from IS NOT NULL;";

/* 4: what a sandbox runs and how it ended (docs/drivers.md, "The
 * workload"): its image, its command (one row per argument, in order) and
 * plain env (not secret, unlike provider_env), and its driver's last report
 * of an exit: exit_code (NULL: none known) and the supervisor's last lines. */
static const char migration_4[] =
    "ALTER TABLE sandboxes ADD COLUMN image TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE sandboxes ADD COLUMN exit_code INTEGER;"
    "ALTER TABLE sandboxes ADD COLUMN state_detail TEXT NOT NULL DEFAULT '';"
    "CREATE TABLE sandbox_command ("
    "  sandbox_id TEXT NOT NULL REFERENCES sandboxes(id),"
    "  pos        INTEGER NOT NULL CHECK (pos >= 0),"
    "  arg        TEXT NOT NULL,"
    "  PRIMARY KEY (sandbox_id, pos)"
    ") STRICT;"
    "CREATE TABLE sandbox_env ("
    "  sandbox_id TEXT NOT NULL REFERENCES sandboxes(id),"
    "  name       TEXT NOT NULL,"
    "  value      TEXT NOT NULL,"
    "  PRIMARY KEY (sandbox_id, name)"
    ") STRICT;";

/* 5: replicas on one database (docs/operations.md, "The owner replica"):
 * the replica whose driver runs a sandbox ('' = not recorded: a store of
 * one gateway), and teardown = 1 from its deletion until that driver has
 * removed it. */
static const char migration_5[] =
    "ALTER TABLE sandboxes ADD COLUMN owner TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE sandboxes ADD COLUMN teardown INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX sandboxes_teardown ON sandboxes(owner) WHERE teardown = 1;";

static const gw_migration migrations[] = {
    {1, migration_1},
    {2, migration_2},
    {3, migration_3},
    {4, migration_4},
    {5, migration_5},
};

_Static_assert(sizeof migrations / sizeof migrations[0] == GW_STORE_SCHEMA_VERSION,
               "GW_STORE_SCHEMA_VERSION must equal the number of migrations");

const gw_migration *gw_store_migrations(size_t *n)
{
    *n = sizeof migrations / sizeof migrations[0];
    return migrations;
}
