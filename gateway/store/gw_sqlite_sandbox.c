/* The sqlite store: sandboxes, what they run and their state. */
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "gw_secretbox.h"
#include "gw_sqlite_internal.h"

/* ---- sandboxes ------------------------------------------------------------------- */

static int check_sandbox_rec(const gw_sandbox_rec *sb)
{
    TSR_ENSURE(sb != NULL, TSR_E_INPUT, "sandbox record is missing");
    TSR_GUARD(gw_sql_check_str(sb->id, sizeof sb->id, 0, "sandbox id"));
    TSR_GUARD(gw_sql_check_str(sb->name, sizeof sb->name, 0, "sandbox name"));
    TSR_GUARD(gw_sql_check_str(sb->driver, sizeof sb->driver, 0, "sandbox driver"));
    TSR_GUARD(gw_sql_check_str(sb->state, sizeof sb->state, 0, "sandbox state"));
    TSR_GUARD(gw_sql_check_str(sb->image, sizeof sb->image, 1, "sandbox image"));
    TSR_GUARD(gw_sql_check_str(sb->owner, sizeof sb->owner, 1, "sandbox owner"));
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
        TSR_GUARD(gw_sql_check_str(spec->env[i].name, ENV_NAME_MAX + 1, 0, "env name"));
        TSR_ENSURE(spec->env[i].value != NULL, TSR_E_INPUT, "env %s has no value",
                   spec->env[i].name);
    }
    return 0;
}

/* The command's arguments and the plain env, in the caller's transaction. */
static int spec_insert_rows(gw_sqlite *s, const char *sandbox_id, const gw_sandbox_spec *spec)
{
    struct query q;
    for (size_t i = 0; spec != NULL && i < spec->n_command; i++) {
        TSR_GUARD(gw_q_open(s, ST_CMD_INSERT, "insert command", &q));
        gw_q_text(&q, sandbox_id);
        gw_q_i64(&q, (int64_t)i);
        gw_q_text(&q, spec->command[i]);
        TSR_GUARD(gw_q_exec(&q));
    }
    for (size_t i = 0; spec != NULL && i < spec->n_env; i++) {
        TSR_GUARD(gw_q_open(s, ST_SENV_INSERT, "insert env", &q));
        gw_q_text(&q, sandbox_id);
        gw_q_text(&q, spec->env[i].name);
        gw_q_text(&q, spec->env[i].value);
        if (gw_q_exec(&q) != 0) {
            if (tsr_errcat() == TSR_E_EXISTS)
                return TSR_FAIL(TSR_E_INPUT, "env name %s is given twice", spec->env[i].name);
            return -1;
        }
    }
    return 0;
}

int gw_sqlite_sandbox_create(gw_store *base, const gw_sandbox_rec *sb, const char *policy_yaml,
                             const gw_env_var *env, size_t n_env, const gw_cert_rec *first_cert)
{
    gw_sqlite *s = gw_sqlite_of(base);
    return gw_sqlite_sandbox_create_spec(&s->base, sb, policy_yaml, env, n_env, first_cert, NULL);
}

int gw_sqlite_sandbox_create_spec(gw_store *base, const gw_sandbox_rec *sb, const char *policy_yaml,
                                  const gw_env_var *env, size_t n_env,
                                  const gw_cert_rec *first_cert, const gw_sandbox_spec *spec)
{
    gw_sqlite *s = gw_sqlite_of(base);
    int rc = -1;
    TSR_TRY(check_sandbox_rec(sb));
    TSR_TRY(gw_sql_check_env(env, n_env));
    TSR_TRY(check_spec(spec));
    TSR_TRY_ENSURE(n_env == 0 || s->keys != NULL, TSR_E_STATE,
                   "no keyring: provider env cannot be stored");
    if (first_cert != NULL) {
        TSR_TRY(gw_sql_check_cert(first_cert));
        TSR_TRY_ENSURE(strcmp(first_cert->sandbox_id, sb->id) == 0, TSR_E_INPUT,
                       "first certificate belongs to sandbox '%s', not %s",
                       first_cert->sandbox_id, sb->id);
    }
    int64_t now = sb->created_at;

    TSR_TRY(gw_sql_tx_begin(s, 1));
    struct query q;
    TSR_TRY(gw_q_open(s, ST_SB_INSERT, "insert sandbox", &q));
    gw_q_text(&q, sb->id);
    gw_q_text(&q, sb->name);
    gw_q_text(&q, sb->driver);
    gw_q_text(&q, sb->state);
    gw_q_i64(&q, sb->created_at);
    gw_q_i64(&q, 0);
    gw_q_text(&q, sb->image);
    gw_q_text(&q, sb->owner);
    if (gw_q_exec(&q) != 0) {
        /* The recorded detail carries sqlite's message, which names the
         * column whose UNIQUE constraint failed. */
        if (tsr_errcat() == TSR_E_EXISTS && (strstr(tsr_errmsg(), "sandboxes.name") != NULL ||
                                                  strstr(tsr_errmsg(), "sandboxes_live_name") != NULL))
            (void)TSR_FAIL(TSR_E_EXISTS, "a sandbox named %s already exists", sb->name);
        else if (tsr_errcat() == TSR_E_EXISTS)
            (void)TSR_FAIL(TSR_E_EXISTS, "sandbox id %s already exists", sb->id);
        goto out; /* recorded by gw_q_exec() */
    }
    if (policy_yaml != NULL) TSR_TRY(gw_sql_policy_insert_row(s, sb->id, 1, policy_yaml, now));
    TSR_TRY(gw_sql_env_insert_all(s, sb->id, env, n_env));
    TSR_TRY(spec_insert_rows(s, sb->id, spec));
    if (first_cert != NULL) TSR_TRY(gw_sql_cert_insert_row(s, first_cert));
    TSR_TRY(gw_sql_tx_commit(s));
    rc = 0;
out:
    if (rc != 0) gw_sql_tx_abort(s);
    return rc;
}

static int sandbox_read_one(gw_sqlite *s, enum stmt_id id, const char *key, gw_sandbox_rec *out,
                            const char *what)
{
    struct query q;
    TSR_GUARD(gw_q_open(s, id, "read sandbox", &q));
    gw_q_text(&q, key);
    int r = gw_q_row(&q, gw_sql_row_sandbox, NULL, out);
    if (r < 0) return -1;
    TSR_ENSURE(r == 1, TSR_E_NOTFOUND, "%s %s not found", what, key);
    return 0;
}

int gw_sqlite_sandbox_get(gw_store *base, const char *id, gw_sandbox_rec *out)
{
    gw_sqlite *s = gw_sqlite_of(base);
    TSR_GUARD(gw_sql_check_sandbox_id(id));
    return sandbox_read_one(s, ST_SB_GET, id, out, "sandbox");
}

int gw_sqlite_sandbox_find_by_name(gw_store *base, const char *name, gw_sandbox_rec *out)
{
    gw_sqlite *s = gw_sqlite_of(base);
    TSR_GUARD(gw_sql_check_str(name, sizeof out->name, 0, "sandbox name"));
    return sandbox_read_one(s, ST_SB_FIND, name, out, "sandbox named");
}

/* The sandboxes `id` (a statement of one text key and a limit) returns. */
static int sandbox_rows(gw_sqlite *s, enum stmt_id id, const char *what, const char *key,
                        int limit, gw_sandbox_rec **out, size_t *n)
{
    int rc = -1;
    int64_t lim = 0;
    gw_sandbox_rec *v = NULL;
    size_t cnt = 0;
    struct query q;
    TSR_TRY(gw_sql_clamp_limit(limit, &lim));
    TSR_TRY(gw_q_open(s, id, what, &q));
    gw_q_text(&q, key);
    gw_q_i64(&q, lim);
    TSR_TRY(gw_q_each(&q, gw_sql_row_sandbox, NULL, &v, &cnt, sizeof *v));
    *out = v;
    *n = cnt;
    v = NULL;
    rc = 0;
out:
    free(v);
    return rc;
}

int gw_sqlite_sandbox_list(gw_store *base, const char *after_id, int limit, gw_sandbox_rec **out,
                           size_t *n)
{
    if (after_id == NULL) after_id = "";
    *out = NULL;
    *n = 0;
    TSR_GUARD(gw_sql_check_str(after_id, SB_ID_CAP, 1, "page token"));
    return sandbox_rows(gw_sqlite_of(base), ST_SB_LIST, "list sandboxes", after_id, limit, out,
                        n);
}

int gw_sqlite_sandbox_set_state(gw_store *base, const char *id, const char *state)
{
    gw_sqlite *s = gw_sqlite_of(base);
    struct query q;
    TSR_GUARD(gw_sql_check_sandbox_id(id));
    TSR_GUARD(gw_sql_check_str(state, sizeof((gw_sandbox_rec *)0)->state, 0, "sandbox state"));
    TSR_GUARD(gw_q_open(s, ST_SB_SET_STATE, "update sandbox state", &q));
    gw_q_text(&q, id);
    gw_q_text(&q, state);
    TSR_GUARD(gw_q_exec(&q));
    TSR_ENSURE(gw_sql_changes(s) == 1, TSR_E_NOTFOUND, "sandbox %s not found", id);
    return 0;
}

int gw_sqlite_sandbox_set_status(gw_store *base, const char *id, const char *state, bool exited,
                                 int exit_code, const char *detail)
{
    gw_sqlite *s = gw_sqlite_of(base);
    struct query q;
    TSR_GUARD(gw_sql_check_sandbox_id(id));
    TSR_GUARD(gw_sql_check_str(state, sizeof((gw_sandbox_rec *)0)->state, 0, "sandbox state"));
    TSR_GUARD(gw_q_open(s, detail != NULL ? ST_SB_SET_STATUS : ST_SB_SET_STATUS_KEEP,
                     "update sandbox state", &q));
    gw_q_text(&q, id);
    gw_q_text(&q, state);
    if (exited) gw_q_i64(&q, exit_code);
    else gw_q_text(&q, NULL);
    if (detail != NULL) gw_q_text(&q, detail);
    TSR_GUARD(gw_q_exec(&q));
    TSR_ENSURE(gw_sql_changes(s) == 1, TSR_E_NOTFOUND, "no live sandbox %s", id);
    return 0;
}

/* row_fn adapters for the spec: the state detail, an argument, a name and
 * value pair (malloc'd strings). */
static int row_detail(void *ctx, gw_row *st, void *elem)
{
    (void)ctx;
    return gw_sql_col_text_dup(st, 0, elem, "state detail");
}

static int row_arg(void *ctx, gw_row *st, void *elem)
{
    (void)ctx;
    return gw_sql_col_text_dup(st, 0, elem, "command argument");
}

static int row_plain_env(void *ctx, gw_row *st, void *elem)
{
    (void)ctx;
    gw_env_var *v = elem;
    TSR_GUARD(gw_sql_col_text_dup(st, 0, &v->name, "env name"));
    return gw_sql_col_text_dup(st, 1, &v->value, "env value");
}

int gw_sqlite_sandbox_spec_get(gw_store *base, const char *id, gw_sandbox_spec *out)
{
    gw_sqlite *s = gw_sqlite_of(base);
    int rc = -1;
    struct query q;
    memset(out, 0, sizeof *out);
    TSR_TRY(gw_sql_check_sandbox_id(id));
    TSR_TRY(gw_sql_tx_begin(s, 0));
    TSR_TRY(gw_q_open(s, ST_SB_DETAIL, "read sandbox", &q));
    gw_q_text(&q, id);
    char *detail = NULL;
    int r = gw_q_row(&q, row_detail, NULL, &detail);
    if (r < 0) goto out;
    TSR_TRY_ENSURE(r == 1, TSR_E_NOTFOUND, "sandbox %s not found", id);
    out->state_detail = detail;
    TSR_TRY(gw_q_open(s, ST_CMD_GET, "read command", &q));
    gw_q_text(&q, id);
    TSR_TRY(gw_q_each(&q, row_arg, NULL, &out->command, &out->n_command,
                   sizeof *out->command));
    TSR_TRY(gw_q_open(s, ST_SENV_GET, "read env", &q));
    gw_q_text(&q, id);
    TSR_TRY(gw_q_each(&q, row_plain_env, NULL, &out->env, &out->n_env, sizeof *out->env));
    TSR_TRY(gw_sql_tx_commit(s));
    rc = 0;
out:
    if (rc != 0) {
        gw_sql_tx_abort(s);
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

int gw_sqlite_sandbox_delete(gw_store *base, const char *id, int64_t now, int *revoked_count)
{
    gw_sqlite *s = gw_sqlite_of(base);
    int rc = -1;
    struct gw_sql_sb_meta m;
    struct query q;
    if (revoked_count != NULL) *revoked_count = 0;
    TSR_TRY(gw_sql_check_sandbox_id(id));
    TSR_TRY_ENSURE(now > 0, TSR_E_INPUT, "deletion time must be positive");
    TSR_TRY(gw_sql_tx_begin(s, 1));
    TSR_TRY(gw_sql_sb_meta(s, id, &m));
    TSR_TRY_ENSURE(m.live, TSR_E_NOTFOUND, "sandbox %s is already deleted", id);
    TSR_TRY(gw_sql_set_counter(s, ST_SB_MARK_DELETED, id, now, "mark sandbox deleted"));
    TSR_TRY_ENSURE(gw_sql_changes(s) == 1, TSR_E_INTERNAL, "sandbox %s vanished", id);

    TSR_TRY(gw_q_open(s, ST_CERT_REVOKE_SB, "revoke sandbox certificates", &q));
    gw_q_text(&q, id);
    gw_q_i64(&q, now);
    gw_q_text(&q, REVOKED_BY_DELETE);
    TSR_TRY(gw_q_exec(&q));
    int revoked = gw_sql_changes(s);
    TSR_TRY(gw_sql_env_delete_all(s, id));
    TSR_TRY(gw_sql_tx_commit(s));
    if (revoked_count != NULL) *revoked_count = revoked;
    rc = 0;
out:
    if (rc != 0) gw_sql_tx_abort(s);
    return rc;
}

int gw_sqlite_teardowns(gw_store *base, const char *owner, int limit, gw_sandbox_rec **out,
                        size_t *n)
{
    *out = NULL;
    *n = 0;
    TSR_GUARD(gw_sql_check_str(owner, sizeof(*out)->owner, 1, "sandbox owner"));
    return sandbox_rows(gw_sqlite_of(base), ST_SB_TEARDOWNS, "list teardowns", owner, limit, out,
                        n);
}

int gw_sqlite_teardown_done(gw_store *base, const char *id)
{
    gw_sqlite *s = gw_sqlite_of(base);
    struct query q;
    TSR_GUARD(gw_sql_check_sandbox_id(id));
    TSR_GUARD(gw_q_open(s, ST_SB_TEARDOWN_DONE, "teardown done", &q));
    gw_q_text(&q, id);
    TSR_GUARD(gw_q_exec(&q));
    TSR_ENSURE(gw_sql_changes(s) == 1, TSR_E_NOTFOUND, "sandbox %s not found", id);
    return 0;
}
