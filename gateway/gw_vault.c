#include "gw_vault.h"

#include <openssl/crypto.h>
#include <pthread.h>
#include <stdlib.h>

#include "tsr_strmap.h"

struct gw_identity_vault {
    pthread_mutex_t lock;
    tsr_strmap *pending; /* sandbox id -> gw_identity* */
};

void gw_identity_clear(gw_identity *id)
{
    if (id == NULL) return;
    free(id->cert_pem);
    if (id->key_pem != NULL) OPENSSL_cleanse(id->key_pem, id->key_len);
    free(id->key_pem);
    id->cert_pem = id->key_pem = NULL;
    id->cert_len = id->key_len = 0;
}

static void free_identity(void *p)
{
    gw_identity_clear(p);
    free(p);
}

int gw_vault_new(gw_identity_vault **out)
{
    gw_identity_vault *v = calloc(1, sizeof *v);
    TSR_ENSURE(v != NULL, TSR_E_INTERNAL, "out of memory");
    if (tsr_strmap_new(&v->pending) != 0) {
        free(v);
        return -1;
    }
    pthread_mutex_init(&v->lock, NULL);
    *out = v;
    return 0;
}

void gw_vault_free(gw_identity_vault *v)
{
    if (v == NULL) return;
    tsr_strmap_free(v->pending, free_identity);
    pthread_mutex_destroy(&v->lock);
    free(v);
}

int gw_vault_put(gw_identity_vault *v, const char *sandbox_id, gw_identity *id)
{
    gw_identity *copy = malloc(sizeof *copy);
    if (copy == NULL) {
        gw_identity_clear(id);
        return TSR_FAIL(TSR_E_INTERNAL, "out of memory");
    }
    *copy = *id;
    id->cert_pem = id->key_pem = NULL;
    void *old = NULL;
    pthread_mutex_lock(&v->lock);
    int rc = tsr_strmap_put(v->pending, sandbox_id, copy, &old);
    pthread_mutex_unlock(&v->lock);
    free_identity(rc == 0 ? old : copy);
    return rc;
}

int gw_vault_take(gw_identity_vault *v, const char *sandbox_id, gw_identity *out)
{
    pthread_mutex_lock(&v->lock);
    gw_identity *id = tsr_strmap_remove(v->pending, sandbox_id);
    pthread_mutex_unlock(&v->lock);
    TSR_ENSURE(id != NULL, TSR_E_NOTFOUND, "no pending identity for sandbox %s", sandbox_id);
    *out = *id;
    free(id);
    return 0;
}

void gw_vault_drop(gw_identity_vault *v, const char *sandbox_id)
{
    pthread_mutex_lock(&v->lock);
    gw_identity *id = tsr_strmap_remove(v->pending, sandbox_id);
    pthread_mutex_unlock(&v->lock);
    if (id != NULL) free_identity(id);
}

size_t gw_vault_count(gw_identity_vault *v)
{
    pthread_mutex_lock(&v->lock);
    size_t n = tsr_strmap_count(v->pending);
    pthread_mutex_unlock(&v->lock);
    return n;
}
