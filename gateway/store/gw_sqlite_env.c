/* The sqlite store: provider environments, encrypted at rest (gw_secretbox.h). */
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "gw_secretbox.h"
#include "gw_sqlite_internal.h"

/* ---- provider environment -------------------------------------------------------------- */

struct env_read_ctx {
    gw_sqlite *s;
    const char *sandbox_id;
};

/* Decrypts as it reads: the value never exists in the clear in the store. */
static int row_env(void *ctx, gw_row *st, void *elem)
{
    const struct env_read_ctx *c = ctx;
    gw_env_var *e = elem;
    uint8_t *value = NULL;
    size_t len = 0;
    TSR_GUARD(gw_sql_col_text_dup(st, 0, &e->name, "provider env name"));
    TSR_GUARD(gw_sql_env_open_value(c->s, c->sandbox_id, e->name, gw_col_i64(st, 1),
                             gw_col_blob(st, 2), gw_col_bytes(st, 2),
                             gw_col_blob(st, 3), gw_col_bytes(st, 3),
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

int gw_sqlite_env_get(gw_store *base, const char *sandbox_id, gw_env_var **out, size_t *n)
{
    gw_sqlite *s = gw_sqlite_of(base);
    gw_env_var *v = NULL;
    size_t cnt = 0;
    struct env_read_ctx ctx = {s, sandbox_id};
    struct query q;
    *out = NULL;
    *n = 0;
    TSR_GUARD(gw_sql_check_sandbox_id(sandbox_id));
    TSR_ENSURE(s->keys != NULL, TSR_E_STATE, "no keyring: provider env cannot be read");
    TSR_GUARD(gw_q_open(s, ST_ENV_GET, "read provider env", &q));
    gw_q_text(&q, sandbox_id);
    if (gw_sql_list_of_sandbox(s, sandbox_id, &q, row_env, &ctx, &v, &cnt, sizeof *v) != 0) {
        gw_store_free_env(v, cnt);
        return -1;
    }
    *out = v;
    *n = cnt;
    return 0;
}

int gw_sqlite_env_set(gw_store *base, const char *sandbox_id, const gw_env_var *env, size_t n)
{
    gw_sqlite *s = gw_sqlite_of(base);
    int rc = -1;
    struct gw_sql_sb_meta m;
    TSR_TRY(gw_sql_check_sandbox_id(sandbox_id));
    TSR_TRY(gw_sql_check_env(env, n));
    TSR_TRY_ENSURE(s->keys != NULL, TSR_E_STATE, "no keyring: provider env cannot be stored");
    TSR_TRY(gw_sql_tx_begin(s, 1));
    TSR_TRY(gw_sql_sb_meta_live(s, sandbox_id, &m));
    TSR_TRY(gw_sql_env_delete_all(s, sandbox_id));
    TSR_TRY(gw_sql_env_insert_all(s, sandbox_id, env, n));
    TSR_TRY(gw_sql_tx_commit(s));
    rc = 0;
out:
    if (rc != 0) gw_sql_tx_abort(s);
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

static int row_stale(void *ctx, gw_row *st, void *elem)
{
    (void)ctx;
    struct stale_env *e = elem;
    TSR_GUARD(gw_sql_col_text_dup(st, 0, &e->sandbox_id, "provider env sandbox"));
    TSR_GUARD(gw_sql_col_text_dup(st, 1, &e->name, "provider env name"));
    e->version = gw_col_i64(st, 2);
    e->nonce_len = gw_col_bytes(st, 3);
    TSR_ENSURE(e->nonce_len == sizeof e->nonce, TSR_E_STATE,
               "provider env %s of sandbox %s is corrupt", e->name, e->sandbox_id);
    memcpy(e->nonce, gw_col_blob(st, 3), sizeof e->nonce);
    e->ct_len = gw_col_bytes(st, 4);
    e->ct = malloc(e->ct_len + 1);
    TSR_ENSURE(e->ct != NULL, TSR_E_INTERNAL, "out of memory");
    if (e->ct_len > 0) memcpy(e->ct, gw_col_blob(st, 4), e->ct_len);
    return 0;
}

int gw_sqlite_env_reencrypt(gw_store *base, size_t *count)
{
    gw_sqlite *s = gw_sqlite_of(base);
    int rc = -1;
    struct stale_env *v = NULL;
    size_t cnt = 0;
    struct query q;
    uint8_t *value = NULL;
    size_t value_len = 0;
    if (count != NULL) *count = 0;
    TSR_TRY_ENSURE(s->keys != NULL, TSR_E_STATE, "no keyring: provider env cannot be read");
    uint32_t current = gw_keyring_current_version(s->keys);

    TSR_TRY(gw_sql_tx_begin(s, 1));
    /* Read every stale row first: updating rows under a live cursor on the
     * same table is undefined in sqlite. */
    TSR_TRY(gw_q_open(s, ST_ENV_STALE, "read provider env", &q));
    gw_q_i64(&q, current);
    TSR_TRY(gw_q_each(&q, row_stale, NULL, &v, &cnt, sizeof *v));
    for (size_t i = 0; i < cnt; i++) {
        struct stale_env *e = &v[i];
        TSR_TRY(gw_sql_env_open_value(s, e->sandbox_id, e->name, e->version, e->nonce, e->nonce_len,
                               e->ct, e->ct_len, &value, &value_len));
        TSR_TRY(gw_sql_env_write_row(s, ST_ENV_UPDATE, e->sandbox_id, e->name, value, value_len));
        OPENSSL_cleanse(value, value_len + 1);
        free(value);
        value = NULL;
    }
    TSR_TRY(gw_sql_tx_commit(s));
    if (count != NULL) *count = cnt;
    rc = 0;
out:
    if (value != NULL) {
        OPENSSL_cleanse(value, value_len + 1);
        free(value);
    }
    free_stale(v, cnt);
    if (rc != 0) gw_sql_tx_abort(s);
    return rc;
}
