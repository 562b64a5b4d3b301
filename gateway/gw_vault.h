/* First identities minted at CreateSandbox, held in memory (never on disk,
 * never logged) until a driver takes them to place inside the sandbox. */
#ifndef GW_VAULT_H
#define GW_VAULT_H

#include <stddef.h>

#include "tsr_err.h"

typedef struct gw_identity_vault gw_identity_vault;

typedef struct gw_identity {
    char *cert_pem;    /* leaf then issuing CA */
    size_t cert_len;
    char *key_pem;     /* secret: cleansed on free */
    size_t key_len;
} gw_identity;

TSR_WUR int gw_vault_new(gw_identity_vault **out);
void gw_vault_free(gw_identity_vault *v);
/* Takes ownership of id's buffers (also on failure). */
TSR_WUR int gw_vault_put(gw_identity_vault *v, const char *sandbox_id, gw_identity *id);
/* Hands the identity over (caller frees with gw_identity_clear); NOTFOUND if none. */
TSR_WUR int gw_vault_take(gw_identity_vault *v, const char *sandbox_id, gw_identity *out);
void gw_vault_drop(gw_identity_vault *v, const char *sandbox_id);
size_t gw_vault_count(gw_identity_vault *v);
void gw_identity_clear(gw_identity *id);

#endif
