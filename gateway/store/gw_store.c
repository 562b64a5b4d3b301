/* The store's interface (gw_store.h), dispatched to its backend
 * (gw_store_backend.h). */
#include "gw_store.h"

#include <openssl/crypto.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "gw_store_backend.h"

const char *gw_store_pg_dsn(const char *locator)
{
    size_t plen = strlen(GW_STORE_PG_PREFIX);
    return strncmp(locator, GW_STORE_PG_PREFIX, plen) == 0 ? locator + plen : NULL;
}

bool gw_store_is_pg(const char *locator)
{
    return gw_store_pg_dsn(locator) != NULL;
}

int gw_store_open(const char *path, const gw_keyring *keys, gw_store **out)
{
    const char *dsn = gw_store_pg_dsn(path);
    if (dsn != NULL) return gw_pg_open(dsn, keys, out);
    return gw_sqlite_open(path, keys, out);
}

static _Atomic(void (*)(void)) g_io_error_hook;

void gw_store_on_io_error(void (*hook)(void))
{
    atomic_store(&g_io_error_hook, hook);
}

void gw_store_io_error(void)
{
    void (*hook)(void) = atomic_load(&g_io_error_hook);
    if (hook != NULL) hook();
}

void gw_store_close(gw_store *s)
{
    if (s != NULL) s->ops->close(s);
}

void gw_store_set_keyring(gw_store *s, const gw_keyring *keys)
{
    s->ops->set_keyring(s, keys);
}

int gw_store_schema_version(gw_store *s, int64_t *version)
{
    return s->ops->schema_version(s, version);
}

int gw_store_set_read_only(gw_store *s, bool on)
{
    return s->ops->set_read_only(s, on);
}

int gw_store_sandbox_create(gw_store *s, const gw_sandbox_rec *sb, const char *policy_yaml,
                            const gw_env_var *env, size_t n_env, const gw_cert_rec *first_cert)
{
    return s->ops->sandbox_create(s, sb, policy_yaml, env, n_env, first_cert);
}

int gw_store_sandbox_create_spec(gw_store *s, const gw_sandbox_rec *sb, const char *policy_yaml,
                                 const gw_env_var *env, size_t n_env, const gw_cert_rec *first_cert,
                                 const gw_sandbox_spec *spec)
{
    return s->ops->sandbox_create_spec(s, sb, policy_yaml, env, n_env, first_cert, spec);
}

int gw_store_sandbox_spec_get(gw_store *s, const char *id, gw_sandbox_spec *out)
{
    return s->ops->sandbox_spec_get(s, id, out);
}

int gw_store_sandbox_get(gw_store *s, const char *id, gw_sandbox_rec *out)
{
    return s->ops->sandbox_get(s, id, out);
}

int gw_store_sandbox_find_by_name(gw_store *s, const char *name, gw_sandbox_rec *out)
{
    return s->ops->sandbox_find_by_name(s, name, out);
}

int gw_store_sandbox_list(gw_store *s, const char *after_id, int limit, gw_sandbox_rec **out,
                          size_t *n)
{
    return s->ops->sandbox_list(s, after_id, limit, out, n);
}

int gw_store_sandbox_set_state(gw_store *s, const char *id, const char *state)
{
    return s->ops->sandbox_set_state(s, id, state);
}

int gw_store_sandbox_set_status(gw_store *s, const char *id, const char *state, bool exited,
                                int exit_code, const char *detail)
{
    return s->ops->sandbox_set_status(s, id, state, exited, exit_code, detail);
}

int gw_store_teardowns(gw_store *s, const char *owner, int limit, gw_sandbox_rec **out,
                       size_t *n)
{
    return s->ops->teardowns(s, owner, limit, out, n);
}

int gw_store_teardown_done(gw_store *s, const char *id)
{
    return s->ops->teardown_done(s, id);
}

int gw_store_sandbox_delete(gw_store *s, const char *id, int64_t now, int *revoked_count)
{
    return s->ops->sandbox_delete(s, id, now, revoked_count);
}

int gw_store_cert_insert(gw_store *s, const gw_cert_rec *c)
{
    return s->ops->cert_insert(s, c);
}

int gw_store_cert_insert_batch(gw_store *s, const gw_cert_rec *const *certs, size_t n,
                               enum tsr_errcat *results)
{
    return s->ops->cert_insert_batch(s, certs, n, results);
}

int gw_store_cert_get(gw_store *s, const char *serial, gw_cert_rec *out)
{
    return s->ops->cert_get(s, serial, out);
}

int gw_store_cert_list(gw_store *s, const char *sandbox_id, gw_cert_rec **out, size_t *n)
{
    return s->ops->cert_list(s, sandbox_id, out, n);
}

int gw_store_cert_page(gw_store *s, const char *sandbox_id, int64_t after_row, int limit,
                       gw_cert_rec **out, size_t *n, int *more)
{
    return s->ops->cert_page(s, sandbox_id, after_row, limit, out, n, more);
}

int gw_store_cert_revoke(gw_store *s, const char *serial, const char *reason, int64_t now,
                         gw_cert_rec *out, gw_revoked_serial **lineage, size_t *n_lineage)
{
    return s->ops->cert_revoke(s, serial, reason, now, out, lineage, n_lineage);
}

int gw_store_revoked_each(gw_store *s, int64_t now,
                          int (*cb)(void *arg, const char *serial, int64_t not_after), void *arg)
{
    return s->ops->revoked_each(s, now, cb, arg);
}

int gw_store_policy_get(gw_store *s, const char *sandbox_id, char **yaml, int64_t *version)
{
    return s->ops->policy_get(s, sandbox_id, yaml, version);
}

int gw_store_policy_set(gw_store *s, const char *sandbox_id, const char *yaml, int64_t now,
                        int64_t *new_version)
{
    return s->ops->policy_set(s, sandbox_id, yaml, now, new_version);
}

int gw_store_policy_status_add(gw_store *s, const char *sandbox_id, int64_t version, int status,
                               const char *message, int64_t now)
{
    return s->ops->policy_status_add(s, sandbox_id, version, status, message, now);
}

int gw_store_policy_status_latest(gw_store *s, const char *sandbox_id, int64_t version, int *status,
                                  char **message, int64_t *reported_at)
{
    return s->ops->policy_status_latest(s, sandbox_id, version, status, message, reported_at);
}

int gw_store_draft_add(gw_store *s, const char *sandbox_id, const gw_policy_chunk *chunks, size_t n,
                       int64_t now)
{
    return s->ops->draft_add(s, sandbox_id, chunks, n, now);
}

int gw_store_draft_get(gw_store *s, const char *sandbox_id, gw_policy_chunk **out, size_t *n)
{
    return s->ops->draft_get(s, sandbox_id, out, n);
}

int gw_store_draft_page(gw_store *s, const char *sandbox_id, int64_t after_seq, int limit,
                        size_t max_bytes, gw_policy_chunk **out, size_t *n, int64_t *next_seq)
{
    return s->ops->draft_page(s, sandbox_id, after_seq, limit, max_bytes, out, n, next_seq);
}

int gw_store_logs_append(gw_store *s, const char *sandbox_id, const gw_log_line *lines, size_t n,
                         int64_t dropped, int64_t now)
{
    return s->ops->logs_append(s, sandbox_id, lines, n, dropped, now);
}

int gw_store_logs_append_batch(gw_store *s, const char *sandbox_id, const char *session,
                               int64_t batch_seq, const gw_log_line *lines, size_t n,
                               int64_t dropped, int64_t now, int *duplicate)
{
    return s->ops->logs_append_batch(s, sandbox_id, session, batch_seq, lines, n, dropped, now,
                                     duplicate);
}

int gw_store_logs_get(gw_store *s, const char *sandbox_id, int64_t after_seq, int limit,
                      gw_log_line **out, size_t *n)
{
    return s->ops->logs_get(s, sandbox_id, after_seq, limit, out, n);
}

int gw_store_logs_dropped(gw_store *s, const char *sandbox_id, int64_t *total)
{
    return s->ops->logs_dropped(s, sandbox_id, total);
}

int gw_store_env_get(gw_store *s, const char *sandbox_id, gw_env_var **out, size_t *n)
{
    return s->ops->env_get(s, sandbox_id, out, n);
}

int gw_store_env_set(gw_store *s, const char *sandbox_id, const gw_env_var *env, size_t n)
{
    return s->ops->env_set(s, sandbox_id, env, n);
}

int gw_store_crl_number_next(gw_store *s, uint64_t floor, uint64_t *number, bool *shared)
{
    return s->ops->crl_number_next(s, floor, number, shared);
}

int gw_store_renew_take(gw_store *s, const char *sandbox_id, int limit, int64_t window_ms,
                        bool *shared, bool *allowed)
{
    return s->ops->renew_take(s, sandbox_id, limit, window_ms, shared, allowed);
}

int gw_store_env_reencrypt(gw_store *s, size_t *count)
{
    return s->ops->env_reencrypt(s, count);
}

/* ---- freeing (the same for every backend) -------------------------------------------- */

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
