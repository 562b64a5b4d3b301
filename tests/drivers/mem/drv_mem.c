/* "mem": an in-memory driver plugin for the rpc fuzz harness
 * (fuzz/fuzz_rpc.c), loaded through the gateway's normal gw_driver path
 * (dlopen, ABI and table checks, init with the configured environment).
 *
 * It starts nothing: a sandbox is a row in a table holding copies of the
 * identity the gateway handed over. A fuzzer executes thousands of
 * CreateSandbox calls a second; forking bubblewrap or a supervisor for each
 * would make it a few a second, leave processes behind on every crash, and
 * test the process driver rather than the gateway's side of the ABI, which
 * is what is fuzzed here (the real process driver has its own tests, and
 * the soak runs it 200 times over).
 *
 * Injected failures, chosen by the sandbox name so that inputs reach them:
 * a name starting with "fail-create" fails create, one starting with
 * "fail-start" fails start (the gateway must then destroy and roll back),
 * an image starting with "invalid" is refused by check (INVALID_ARGUMENT,
 * before anything is minted).
 *
 * The ABI contract is checked on every call, as an error (a failing driver
 * call, which the harness then sees as a CreateSandbox that is not OK):
 * identity buffers present and non-empty, a lowercase UUID id, the SPIFFE
 * ID spiffe://<td>/sandbox/<id>, no create of an id that exists, no start of
 * one that does not. Destroy of an unknown id succeeds (idempotent, as the
 * gateway's rollback and DeleteSandbox expect).
 *
 * Besides the ABI entry, three inspection functions are exported for the
 * harness (dlsym on the same handle): tessera_mem_inspect,
 * tessera_mem_count_named, tessera_mem_last_id. One instance at a time. */
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drv_abi.h"

#define EXPORT __attribute__((visibility("default")))
#define MEM_MAX_SANDBOXES 100000

EXPORT const tsr_driver_ops *tessera_driver_entry(void);
EXPORT int tessera_mem_inspect(const char *id, int *state, char **cert, char **key, char **bundle);
EXPORT size_t tessera_mem_count_named(const char *name);
EXPORT void tessera_mem_last_id(char *out, size_t cap);

struct mem_sb {
    char id[37];
    char name[65];
    enum tsr_driver_state state;
    char *cert, *key, *bundle;
    size_t cert_len, key_len, bundle_len;
};

struct mem_ctx {
    pthread_mutex_t lock;
    char td[256];
    struct mem_sb *sbs;
    size_t n, cap;
    char last_id[37];
};

static struct mem_ctx *g_ctx; /* the loaded instance, for the inspection calls */

static int fail(char *err, size_t cap, const char *what)
{
    snprintf(err, cap, "%s", what);
    return -1;
}

static bool uuid_ok(const char *s)
{
    if (s == NULL || strlen(s) != 36) return false;
    for (size_t i = 0; i < 36; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-') return false;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return false;
        }
    }
    return true;
}

static char *copy(const char *p, size_t len)
{
    char *c = malloc(len + 1);
    if (c == NULL) return NULL;
    memcpy(c, p, len);
    c[len] = '\0';
    return c;
}

static void sb_clear(struct mem_sb *sb)
{
    if (sb->key != NULL) OPENSSL_cleanse(sb->key, sb->key_len);
    free(sb->key);
    free(sb->cert);
    free(sb->bundle);
    memset(sb, 0, sizeof *sb);
}

/* Caller holds the lock. */
static struct mem_sb *find(struct mem_ctx *c, const char *id)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->sbs[i].id, id) == 0) return &c->sbs[i];
    return NULL;
}

static int mem_init(const tsr_driver_env *env, void **ctx, char *err, size_t cap)
{
    if (g_ctx != NULL) return fail(err, cap, "one instance at a time");
    if (env == NULL || env->trust_domain == NULL || strlen(env->trust_domain) >= 256)
        return fail(err, cap, "no trust domain");
    struct mem_ctx *c = calloc(1, sizeof *c);
    if (c == NULL) return fail(err, cap, "out of memory");
    pthread_mutex_init(&c->lock, NULL);
    snprintf(c->td, sizeof c->td, "%s", env->trust_domain);
    *ctx = c;
    g_ctx = c;
    return 0;
}

static void mem_fini(void *ctx)
{
    struct mem_ctx *c = ctx;
    for (size_t i = 0; i < c->n; i++) sb_clear(&c->sbs[i]);
    free(c->sbs);
    pthread_mutex_destroy(&c->lock);
    if (g_ctx == c) g_ctx = NULL;
    free(c);
}

static int mem_check(void *ctx, const tsr_driver_sandbox *sb, char *err, size_t cap)
{
    (void)ctx;
    if (sb == NULL || sb->image == NULL || (sb->n_command > 0 && sb->command == NULL))
        return fail(err, cap, "bad sandbox description");
    for (size_t i = 0; i < sb->n_command; i++)
        if (sb->command[i] == NULL) return fail(err, cap, "command argument missing");
    if (strncmp(sb->image, "invalid", 7) == 0) {
        fail(err, cap, "image: injected refusal");
        return TSR_DRIVER_INVALID;
    }
    return TSR_DRIVER_OK;
}

static int mem_create(void *ctx, const tsr_driver_sandbox *sb, const tsr_driver_identity *id,
                      char *err, size_t cap)
{
    struct mem_ctx *c = ctx;
    if (sb == NULL || id == NULL || !uuid_ok(sb->id) || sb->name == NULL || sb->spiffe_id == NULL)
        return fail(err, cap, "bad sandbox description");
    char want[400];
    snprintf(want, sizeof want, "spiffe://%s/sandbox/%s", c->td, sb->id);
    if (strcmp(sb->spiffe_id, want) != 0) return fail(err, cap, "SPIFFE ID does not match the id");
    if (id->cert_pem == NULL || id->cert_len == 0 || id->key_pem == NULL || id->key_len == 0 ||
        id->bundle_pem == NULL || id->bundle_len == 0)
        return fail(err, cap, "identity buffers missing");
    if (strlen(sb->name) >= sizeof c->sbs[0].name) return fail(err, cap, "name too long");

    pthread_mutex_lock(&c->lock);
    snprintf(c->last_id, sizeof c->last_id, "%s", sb->id);
    int rc = -1;
    if (strncmp(sb->name, "fail-create", 11) == 0) {
        fail(err, cap, "injected create failure");
    } else if (find(c, sb->id) != NULL) {
        fail(err, cap, "sandbox exists");
    } else if (c->n >= MEM_MAX_SANDBOXES) {
        fail(err, cap, "too many sandboxes");
    } else {
        if (c->n == c->cap) {
            size_t ncap = c->cap ? c->cap * 2 : 64;
            struct mem_sb *p = realloc(c->sbs, ncap * sizeof *p);
            if (p == NULL) {
                pthread_mutex_unlock(&c->lock);
                return fail(err, cap, "out of memory");
            }
            c->sbs = p;
            c->cap = ncap;
        }
        struct mem_sb *s = &c->sbs[c->n];
        memset(s, 0, sizeof *s);
        snprintf(s->id, sizeof s->id, "%s", sb->id);
        snprintf(s->name, sizeof s->name, "%s", sb->name);
        s->state = TSR_DRIVER_STATE_CREATED;
        s->cert = copy(id->cert_pem, id->cert_len);
        s->key = copy(id->key_pem, id->key_len);
        s->bundle = copy(id->bundle_pem, id->bundle_len);
        s->cert_len = id->cert_len;
        s->key_len = id->key_len;
        s->bundle_len = id->bundle_len;
        if (s->cert == NULL || s->key == NULL || s->bundle == NULL) {
            sb_clear(s);
            fail(err, cap, "out of memory");
        } else {
            c->n++;
            rc = 0;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

static int mem_start(void *ctx, const char *sandbox_id, char *err, size_t cap)
{
    struct mem_ctx *c = ctx;
    pthread_mutex_lock(&c->lock);
    struct mem_sb *s = sandbox_id ? find(c, sandbox_id) : NULL;
    int rc = -1;
    if (s == NULL) fail(err, cap, "no such sandbox");
    else if (strncmp(s->name, "fail-start", 10) == 0) fail(err, cap, "injected start failure");
    else {
        s->state = TSR_DRIVER_STATE_RUNNING;
        rc = 0;
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

static int mem_stop(void *ctx, const char *sandbox_id, char *err, size_t cap)
{
    struct mem_ctx *c = ctx;
    pthread_mutex_lock(&c->lock);
    struct mem_sb *s = sandbox_id ? find(c, sandbox_id) : NULL;
    if (s != NULL) s->state = TSR_DRIVER_STATE_STOPPED;
    pthread_mutex_unlock(&c->lock);
    return s != NULL ? 0 : fail(err, cap, "no such sandbox");
}

static int mem_destroy(void *ctx, const char *sandbox_id, char *err, size_t cap)
{
    struct mem_ctx *c = ctx;
    if (sandbox_id == NULL) return fail(err, cap, "no id");
    pthread_mutex_lock(&c->lock);
    struct mem_sb *s = find(c, sandbox_id);
    if (s != NULL) {
        sb_clear(s);
        *s = c->sbs[--c->n];
    }
    pthread_mutex_unlock(&c->lock);
    return 0;
}

static int mem_status(void *ctx, const char *sandbox_id, tsr_driver_status *st, char *err,
                      size_t cap)
{
    struct mem_ctx *c = ctx;
    if (sandbox_id == NULL || st == NULL) return fail(err, cap, "bad arguments");
    pthread_mutex_lock(&c->lock);
    struct mem_sb *s = find(c, sandbox_id);
    st->state = s != NULL ? s->state : TSR_DRIVER_STATE_UNKNOWN;
    pthread_mutex_unlock(&c->lock);
    return 0;
}

static const tsr_driver_ops ops = {
    .abi_version = TSR_DRIVER_ABI_VERSION,
    .struct_size = sizeof(tsr_driver_ops),
    .name = "mem",
    .init = mem_init,
    .fini = mem_fini,
    .check = mem_check,
    .create = mem_create,
    .start = mem_start,
    .stop = mem_stop,
    .destroy = mem_destroy,
    .status = mem_status,
};

const tsr_driver_ops *tessera_driver_entry(void)
{
    return &ops;
}

/* ---- inspection (the harness) ------------------------------------------ */

/* Copies (NUL-terminated, malloc'd; the key is the caller's to cleanse) of
 * what the driver holds for id. 0 if known, -1 if not. */
int tessera_mem_inspect(const char *id, int *state, char **cert, char **key, char **bundle)
{
    struct mem_ctx *c = g_ctx;
    *cert = *key = *bundle = NULL;
    *state = TSR_DRIVER_STATE_UNKNOWN;
    if (c == NULL) return -1;
    pthread_mutex_lock(&c->lock);
    struct mem_sb *s = find(c, id);
    int rc = -1;
    if (s != NULL) {
        *state = (int)s->state;
        *cert = copy(s->cert, s->cert_len);
        *key = copy(s->key, s->key_len);
        *bundle = copy(s->bundle, s->bundle_len);
        rc = 0;
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

size_t tessera_mem_count_named(const char *name)
{
    struct mem_ctx *c = g_ctx;
    if (c == NULL) return 0;
    size_t n = 0;
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < c->n; i++) n += strcmp(c->sbs[i].name, name) == 0;
    pthread_mutex_unlock(&c->lock);
    return n;
}

/* The id of the last create call ("" if none). */
void tessera_mem_last_id(char *out, size_t cap)
{
    struct mem_ctx *c = g_ctx;
    if (cap == 0) return;
    out[0] = '\0';
    if (c == NULL) return;
    pthread_mutex_lock(&c->lock);
    snprintf(out, cap, "%s", c->last_id);
    pthread_mutex_unlock(&c->lock);
}
