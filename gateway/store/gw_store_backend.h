/* The seam of the store (gw_store.h): what a backend implements. Each
 * backend's handle starts with a struct gw_store whose ops point at its
 * implementation of every operation; gw_store.c dispatches through them.
 * Two backends implement it: sqlite (gw_sqlite*.c, the embedded default)
 * and PostgreSQL (gw_pg.c: several gateways on one database), sharing the
 * operations' code (gw_sqlite_internal.h), with the same contract, per
 * operation, as gw_store.h states it:
 *
 *  - every operation is one transaction inside the backend: when a write
 *    returns 0 it is durable, when it fails nothing of it was written;
 *  - uniqueness (certificate serials, live sandbox names, log sequence
 *    numbers, the exactly-once (session, batch) of log batches) and the
 *    lineage check of a renewal are decided by the database, in that
 *    transaction, so that several writers cannot both win;
 *  - the group commit of certificates is one operation (cert_insert_batch):
 *    one transaction, per-record results;
 *  - errors are typed (tsr_err.h): TSR_E_IO for a database that is
 *    unavailable or failed, TSR_E_EXISTS, _NOTFOUND, _STATE, _INPUT,
 *    _UNAUTH for what the operation refused, as gw_store.h lists them. */
#ifndef GW_STORE_BACKEND_H
#define GW_STORE_BACKEND_H

#include "gw_store.h"

typedef struct gw_store_ops {
    void (*close)(gw_store *s);
    void (*set_keyring)(gw_store *s, const gw_keyring *keys);
    int (*schema_version)(gw_store *s, int64_t *version);
    int (*set_read_only)(gw_store *s, bool on);
    int (*sandbox_create)(gw_store *s, const gw_sandbox_rec *sb, const char *policy_yaml,
                          const gw_env_var *env, size_t n_env, const gw_cert_rec *first_cert);
    int (*sandbox_create_spec)(gw_store *s, const gw_sandbox_rec *sb, const char *policy_yaml,
                               const gw_env_var *env, size_t n_env, const gw_cert_rec *first_cert,
                               const gw_sandbox_spec *spec);
    int (*sandbox_spec_get)(gw_store *s, const char *id, gw_sandbox_spec *out);
    int (*sandbox_get)(gw_store *s, const char *id, gw_sandbox_rec *out);
    int (*sandbox_find_by_name)(gw_store *s, const char *name, gw_sandbox_rec *out);
    int (*sandbox_list)(gw_store *s, const char *after_id, int limit, gw_sandbox_rec **out,
                        size_t *n);
    int (*sandbox_set_state)(gw_store *s, const char *id, const char *state);
    int (*sandbox_set_status)(gw_store *s, const char *id, const char *state, bool exited,
                              int exit_code, const char *detail);
    int (*teardowns)(gw_store *s, const char *owner, int limit, gw_sandbox_rec **out,
                     size_t *n);
    int (*teardown_done)(gw_store *s, const char *id);
    int (*sandbox_delete)(gw_store *s, const char *id, int64_t now, int *revoked_count);
    int (*cert_insert)(gw_store *s, const gw_cert_rec *c);
    int (*cert_insert_batch)(gw_store *s, const gw_cert_rec *const *certs, size_t n,
                             enum tsr_errcat *results);
    int (*cert_get)(gw_store *s, const char *serial, gw_cert_rec *out);
    int (*cert_list)(gw_store *s, const char *sandbox_id, gw_cert_rec **out, size_t *n);
    int (*cert_page)(gw_store *s, const char *sandbox_id, int64_t after_row, int limit,
                     gw_cert_rec **out, size_t *n, int *more);
    int (*cert_revoke)(gw_store *s, const char *serial, const char *reason, int64_t now,
                       gw_cert_rec *out, gw_revoked_serial **lineage, size_t *n_lineage);
    int (*revoked_each)(gw_store *s, int64_t now,
                        int (*cb)(void *arg, const char *serial, int64_t not_after), void *arg);
    int (*policy_get)(gw_store *s, const char *sandbox_id, char **yaml, int64_t *version);
    int (*policy_set)(gw_store *s, const char *sandbox_id, const char *yaml, int64_t now,
                      int64_t *new_version);
    int (*policy_status_add)(gw_store *s, const char *sandbox_id, int64_t version, int status,
                             const char *message, int64_t now);
    int (*policy_status_latest)(gw_store *s, const char *sandbox_id, int64_t version, int *status,
                                char **message, int64_t *reported_at);
    int (*draft_add)(gw_store *s, const char *sandbox_id, const gw_policy_chunk *chunks, size_t n,
                     int64_t now);
    int (*draft_get)(gw_store *s, const char *sandbox_id, gw_policy_chunk **out, size_t *n);
    int (*draft_page)(gw_store *s, const char *sandbox_id, int64_t after_seq, int limit,
                      size_t max_bytes, gw_policy_chunk **out, size_t *n, int64_t *next_seq);
    int (*logs_append)(gw_store *s, const char *sandbox_id, const gw_log_line *lines, size_t n,
                       int64_t dropped, int64_t now);
    int (*logs_append_batch)(gw_store *s, const char *sandbox_id, const char *session,
                             int64_t batch_seq, const gw_log_line *lines, size_t n, int64_t dropped,
                             int64_t now, int *duplicate);
    int (*logs_get)(gw_store *s, const char *sandbox_id, int64_t after_seq, int limit,
                    gw_log_line **out, size_t *n);
    int (*logs_dropped)(gw_store *s, const char *sandbox_id, int64_t *total);
    int (*env_get)(gw_store *s, const char *sandbox_id, gw_env_var **out, size_t *n);
    int (*env_set)(gw_store *s, const char *sandbox_id, const gw_env_var *env, size_t n);
    int (*env_reencrypt)(gw_store *s, size_t *count);
    int (*crl_number_next)(gw_store *s, uint64_t floor, uint64_t *number, bool *shared);
    int (*renew_take)(gw_store *s, const char *sandbox_id, int limit, int64_t window_ms,
                      bool *shared, bool *allowed);
} gw_store_ops;

struct gw_store {
    const gw_store_ops *ops;
};

/* The sqlite backend (gw_sqlite.c; opened in gw_sqlite_open.c). */
extern const gw_store_ops gw_sqlite_ops;
TSR_WUR int gw_sqlite_open(const char *path, const gw_keyring *keys, gw_store **out);
/* The PostgreSQL backend (gw_pg.c): dsn is a libpq connection string. */
TSR_WUR int gw_pg_open(const char *dsn, const gw_keyring *keys, gw_store **out);

#endif
