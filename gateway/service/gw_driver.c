#include "gw_driver.h"

#include "gw_config.h"

#include <dirent.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DRIVERS 16
#define ERR_CAP 1024 /* a reason with a supervisor's last lines (drv_abi.h) */

struct gw_driver {
    char name[33];
    struct gw_drivers *all;
    const char *option_keys[64];
    const char *option_values[64];
    size_t n_options;
    void *handle;
    const tsr_driver_ops *ops;
    void *ctx;
    int ready;
    char unavailable[ERR_CAP];
};

struct gw_drivers {
    pthread_mutex_t lock;
    pthread_cond_t idle;
    int destroys_in_flight;
    struct gw_driver drivers[MAX_DRIVERS];
    size_t n;
    char names[MAX_DRIVERS * 34];
    tsr_driver_env env;
    int (*mint)(void *arg, const char *driver, const char *sandbox_id, tsr_driver_identity *out,
                char *err, size_t err_cap);
    void (*release)(void *arg, tsr_driver_identity *identity);
    void *mint_arg;
};

static void driver_log(void *arg, const char *line)
{
    fprintf(stderr, "tessera-gateway: driver %s: %s\n", (const char *)arg, line);
}

/* tsr_driver_env.mint_identity of one driver (arg): the gateway's mint,
 * told which driver asks (it mints only for that driver's own sandboxes). */
static int driver_mint(void *arg, const char *sandbox_id, tsr_driver_identity *out, char *err,
                       size_t err_cap)
{
    struct gw_driver *d = arg;
    return d->all->mint(d->all->mint_arg, d->name, sandbox_id, out, err, err_cap);
}

static void driver_release(void *arg, tsr_driver_identity *identity)
{
    struct gw_driver *d = arg;
    d->all->release(d->all->mint_arg, identity);
}

static int load_one(gw_drivers *all, const char *dir, const char *file)
{
    struct gw_driver *d = &all->drivers[all->n];
    char path[4096];
    size_t len = strlen(file);
    TSR_ENSURE(len > 3 && len - 3 < sizeof d->name, TSR_E_INPUT, "driver file name %s", file);
    int n = snprintf(path, sizeof path, "%s/%s", dir, file);
    TSR_ENSURE(n > 0 && (size_t)n < sizeof path, TSR_E_INPUT, "driver path too long");
    memcpy(d->name, file, len - 3);
    d->name[len - 3] = '\0';
    d->all = all;

    /* RTLD_NODELETE: a plugin's code stays mapped after dlclose. A driver may
     * have left a detached thread or an atexit handler behind, and
     * instrumented builds (libFuzzer, sanitizer coverage) keep pointers into
     * every loaded module's counters: unmapping one crashes the process. */
    d->handle = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    TSR_ENSURE(d->handle != NULL, TSR_E_STATE, "driver %s: cannot load: %s", path, dlerror());
    tsr_driver_entry_fn entry;
    *(void **)&entry = dlsym(d->handle, TSR_DRIVER_ENTRY_SYMBOL);
    if (entry == NULL) {
        dlclose(d->handle);
        return TSR_FAIL(TSR_E_STATE, "driver %s: no %s entry point (not a Tessera driver?)", path,
                        TSR_DRIVER_ENTRY_SYMBOL);
    }
    const tsr_driver_ops *ops = entry();
    if (ops == NULL || ops->abi_version != TSR_DRIVER_ABI_VERSION ||
        ops->struct_size != sizeof(tsr_driver_ops)) {
        unsigned version = ops ? ops->abi_version : 0, size = ops ? ops->struct_size : 0;
        dlclose(d->handle);
        return TSR_FAIL(TSR_E_STATE,
                        "driver %s: ABI version %u (table of %u bytes), but this gateway needs ABI "
                        "version %u (%zu bytes): rebuild the driver with this gateway",
                        path, version, size, TSR_DRIVER_ABI_VERSION, sizeof(tsr_driver_ops));
    }
    if (ops->name == NULL || strcmp(ops->name, d->name) != 0 || ops->init == NULL ||
        ops->fini == NULL || ops->check == NULL || ops->create == NULL || ops->start == NULL ||
        ops->stop == NULL || ops->destroy == NULL || ops->status == NULL) {
        dlclose(d->handle);
        return TSR_FAIL(TSR_E_STATE, "driver %s: incomplete operations table or name mismatch",
                        path);
    }
    d->ops = ops;
    all->n++;
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int gw_drivers_load(const gw_drivers_env *env, gw_drivers **out)
{
    gw_drivers *all = calloc(1, sizeof *all);
    TSR_ENSURE(all != NULL, TSR_E_INTERNAL, "out of memory");
    pthread_mutex_init(&all->lock, NULL);
    pthread_cond_init(&all->idle, NULL);
    int rc = -1;
    DIR *dir = NULL;
    char *files[MAX_DRIVERS + 1] = {0};
    size_t n_files = 0;

    all->env.data_dir = env->data_dir;
    all->env.supervisor_path = env->supervisor_path;
    all->env.gateway_addr = env->gateway_addr;
    all->env.trust_domain = env->trust_domain;
    all->env.log = driver_log;
    all->mint = env->mint;
    all->release = env->release;
    all->mint_arg = env->mint_arg;

    dir = opendir(env->dir);
    TSR_TRY_ENSURE(dir != NULL, TSR_E_STATE, "driver directory %s: cannot open it", env->dir);
    for (struct dirent *e; (e = readdir(dir)) != NULL;) {
        size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 3, ".so") != 0) continue;
        TSR_TRY_ENSURE(n_files < MAX_DRIVERS, TSR_E_LIMIT, "more than %d drivers in %s",
                       MAX_DRIVERS, env->dir);
        files[n_files] = strdup(e->d_name);
        TSR_TRY_ENSURE(files[n_files] != NULL, TSR_E_INTERNAL, "out of memory");
        n_files++;
    }
    qsort(files, n_files, sizeof files[0], by_name);
    for (size_t i = 0; i < n_files; i++) TSR_TRY(load_one(all, env->dir, files[i]));

    /* An option for a driver that is not there is a configuration mistake. */
    for (size_t k = 0; k < env->n_options; k++) {
        int found = 0;
        for (size_t i = 0; i < all->n; i++) {
            struct gw_driver *d = &all->drivers[i];
            if (strcmp(d->name, env->options[k].driver) != 0) continue;
            found = 1;
            TSR_TRY_ENSURE(d->n_options < sizeof d->option_keys / sizeof d->option_keys[0],
                           TSR_E_LIMIT, "too many options for driver %s", d->name);
            d->option_keys[d->n_options] = env->options[k].key;
            d->option_values[d->n_options] = env->options[k].value;
            d->n_options++;
        }
        TSR_TRY_ENSURE(found, TSR_E_INPUT, "options given for driver %s, which is not in %s",
                       env->options[k].driver, env->dir);
    }

    for (size_t i = 0; i < all->n; i++) {
        struct gw_driver *d = &all->drivers[i];
        tsr_driver_env denv = all->env;
        denv.log_arg = d->name;
        denv.option_keys = d->option_keys;
        denv.option_values = d->option_values;
        denv.n_options = d->n_options;
        if (all->mint != NULL && all->release != NULL) {
            denv.mint_identity = driver_mint;
            denv.release_identity = driver_release;
            denv.mint_arg = d;
        }
        char err[ERR_CAP] = "";
        if (d->ops->init(&denv, &d->ctx, err, sizeof err) == 0) {
            d->ready = 1;
        } else {
            /* A driver the config names (options given) or the default one
             * must start: a typo in its options stops the gateway here.
             * Another may be missing what it needs on this host (QEMU, an
             * engine's image): it is unavailable, and says why. */
            snprintf(d->unavailable, sizeof d->unavailable, "%s", err[0] ? err : "init failed");
            TSR_TRY_ENSURE(strcmp(d->name, env->default_driver) != 0, TSR_E_STATE,
                           "default driver %s failed to start: %s", d->name, d->unavailable);
            TSR_TRY_ENSURE(d->n_options == 0, TSR_E_INPUT,
                           "driver %s, configured under drivers.options, failed to start: %s",
                           d->name, d->unavailable);
            fprintf(stderr, "<4>tessera-gateway: driver %s unavailable: %s\n", d->name,
                    d->unavailable);
        }
        size_t used = strlen(all->names);
        snprintf(all->names + used, sizeof all->names - used, "%s%s", used ? ", " : "", d->name);
    }
    TSR_TRY_ENSURE(gw_drivers_find(all, env->default_driver) != NULL, TSR_E_STATE,
                   "default driver %s not found in %s (found: %s)", env->default_driver, env->dir,
                   all->names[0] ? all->names : "none");
    *out = all;
    all = NULL;
    rc = 0;
out:
    for (size_t i = 0; i < n_files; i++) free(files[i]);
    if (dir != NULL) closedir(dir);
    if (all != NULL) {
        char msg[512];
        enum tsr_errcat cat = tsr_errcat();
        snprintf(msg, sizeof msg, "%s", tsr_errmsg());
        gw_drivers_free(all);
        (void)TSR_FAIL(cat, "%s", msg);
    }
    return rc;
}

void gw_drivers_free(gw_drivers *all)
{
    if (all == NULL) return;
    pthread_mutex_lock(&all->lock);
    while (all->destroys_in_flight > 0) pthread_cond_wait(&all->idle, &all->lock);
    pthread_mutex_unlock(&all->lock);
    for (size_t i = 0; i < all->n; i++) {
        struct gw_driver *d = &all->drivers[i];
        if (d->ready) d->ops->fini(d->ctx);
        if (d->handle != NULL) dlclose(d->handle);
    }
    pthread_cond_destroy(&all->idle);
    pthread_mutex_destroy(&all->lock);
    free(all);
}

gw_driver *gw_drivers_find(gw_drivers *all, const char *name)
{
    if (all == NULL) {
        (void)TSR_FAIL(TSR_E_STATE, "no driver plugins are loaded");
        return NULL;
    }
    for (size_t i = 0; i < all->n; i++) {
        struct gw_driver *d = &all->drivers[i];
        if (strcmp(d->name, name) != 0) continue;
        if (!d->ready) {
            (void)TSR_FAIL(TSR_E_STATE, "driver %s is unavailable: %s", name, d->unavailable);
            return NULL;
        }
        return d;
    }
    (void)TSR_FAIL(TSR_E_INPUT, "no driver named \"%.32s\" (available: %s)", name, all->names);
    return NULL;
}

const char *gw_drivers_names(const gw_drivers *all)
{
    return all->names;
}

const char *gw_driver_name(const gw_driver *d)
{
    return d->name;
}

int gw_driver_check(gw_driver *d, const tsr_driver_sandbox *sb)
{
    char err[ERR_CAP] = "";
    int r = d->ops->check(d->ctx, sb, err, sizeof err);
    if (r == TSR_DRIVER_OK) return 0;
    return TSR_FAIL(r == TSR_DRIVER_INVALID ? TSR_E_INPUT : TSR_E_IO, "driver %s: %s", d->name,
                    err[0] ? err : "refused the sandbox (no reason given)");
}

/* A failed create or start: FAILED_PRECONDITION for what retrying will not
 * mend (drv_abi.h), UNAVAILABLE otherwise. */
static enum tsr_errcat launch_category(int r)
{
    return r == TSR_DRIVER_PRECONDITION ? TSR_E_STATE : TSR_E_IO;
}

int gw_driver_launch(gw_driver *d, const tsr_driver_sandbox *sb,
                     const tsr_driver_identity *identity)
{
    char err[ERR_CAP] = "";
    int r = d->ops->create(d->ctx, sb, identity, err, sizeof err);
    if (r != TSR_DRIVER_OK)
        return TSR_FAIL(launch_category(r), "driver %s: create failed: %s", d->name, err);
    r = d->ops->start(d->ctx, sb->id, err, sizeof err);
    if (r != TSR_DRIVER_OK) {
        char ignored[ERR_CAP];
        (void)d->ops->destroy(d->ctx, sb->id, ignored, sizeof ignored);
        return TSR_FAIL(launch_category(r), "driver %s: start failed: %s", d->name, err);
    }
    return 0;
}

int gw_driver_destroy(gw_driver *d, const char *sandbox_id)
{
    char err[ERR_CAP] = "";
    TSR_ENSURE(d->ops->destroy(d->ctx, sandbox_id, err, sizeof err) == 0, TSR_E_IO,
               "driver %s: destroy failed: %s", d->name, err);
    return 0;
}

struct destroy_job {
    gw_drivers *all;
    gw_driver *drv;
    char sandbox_id[64];
};

static void *destroy_thread(void *arg)
{
    struct destroy_job *job = arg;
    if (gw_driver_destroy(job->drv, job->sandbox_id) != 0)
        fprintf(stderr, "tessera-gateway: sandbox %s: %s\n", job->sandbox_id, tsr_errmsg());
    pthread_mutex_lock(&job->all->lock);
    if (--job->all->destroys_in_flight == 0) pthread_cond_broadcast(&job->all->idle);
    pthread_mutex_unlock(&job->all->lock);
    free(job);
    return NULL;
}

int gw_driver_destroy_async(gw_drivers *all, gw_driver *drv, const char *sandbox_id)
{
    struct destroy_job *job = calloc(1, sizeof *job);
    TSR_ENSURE(job != NULL, TSR_E_INTERNAL, "out of memory");
    job->all = all;
    job->drv = drv;
    snprintf(job->sandbox_id, sizeof job->sandbox_id, "%s", sandbox_id);
    pthread_mutex_lock(&all->lock);
    all->destroys_in_flight++;
    pthread_mutex_unlock(&all->lock);
    pthread_attr_t attr;
    pthread_t t;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int err = pthread_create(&t, &attr, destroy_thread, job);
    pthread_attr_destroy(&attr);
    if (err != 0) {
        /* No thread: do it here rather than not at all. */
        destroy_thread(job);
        return 0;
    }
    return 0;
}

int gw_driver_status(gw_driver *d, const char *sandbox_id, tsr_driver_status *st)
{
    char err[ERR_CAP] = "";
    int want = st->want_detail;
    memset(st, 0, sizeof *st);
    st->want_detail = want;
    TSR_ENSURE(d->ops->status(d->ctx, sandbox_id, st, err, sizeof err) == 0, TSR_E_IO,
               "driver %s: status failed: %s", d->name, err);
    st->detail[sizeof st->detail - 1] = '\0'; /* whatever the driver wrote */
    return 0;
}
