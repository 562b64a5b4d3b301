/* Group commit of certificate records: see gw_commit.h. */
#include "gw_commit.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gw_committer {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    gw_commit_item *head, *tail;   /* FIFO, under lock */
    bool stopping;                 /* under lock */
    bool started;
    pthread_t thread;
    gw_store *store;               /* committer thread only */
    gw_commit_stats stats;         /* under lock */
    /* The batch being written (committer thread only). */
    const gw_cert_rec *recs[GW_COMMIT_MAX_BATCH];
    enum tsr_errcat results[GW_COMMIT_MAX_BATCH];
    gw_commit_item *items[GW_COMMIT_MAX_BATCH];
};

static const char *refusal_text(enum tsr_errcat cat)
{
    switch (cat) {
    case TSR_E_STATE: return "sandbox deleted";
    case TSR_E_NOTFOUND: return "sandbox not found";
    case TSR_E_EXISTS: return "certificate serial already recorded";
    case TSR_E_INPUT: return "invalid certificate record";
    case TSR_E_UNAUTH: return "certificate revoked";   /* the one it was renewed from */
    default: return "certificate not recorded";
    }
}

/* Write one batch and answer each of its items. */
static void commit_batch(gw_committer *c, size_t n)
{
    for (size_t i = 0; i < n; i++) c->recs[i] = &c->items[i]->rec;
    int rc = gw_store_cert_insert_batch(c->store, c->recs, n, c->results);
    char msg[300];
    enum tsr_errcat cat = TSR_E_NONE;
    if (rc != 0) {
        cat = tsr_errcat();
        if (cat == TSR_E_NONE) cat = TSR_E_INTERNAL;
        snprintf(msg, sizeof msg, "%s", tsr_errmsg());
    }
    TSR_ASSERT(pthread_mutex_lock(&c->lock) == 0);
    c->stats.batches++;
    c->stats.records += n;
    if (n > c->stats.max_batch) c->stats.max_batch = n;
    if (rc != 0) c->stats.failed_batches++;
    (void)pthread_mutex_unlock(&c->lock);
    for (size_t i = 0; i < n; i++) {
        gw_commit_item *it = c->items[i];
        c->items[i] = NULL;
        if (rc != 0)
            it->done(it, -1, cat, msg);
        else if (c->results[i] != TSR_E_NONE)
            it->done(it, -1, c->results[i], refusal_text(c->results[i]));
        else
            it->done(it, 0, TSR_E_NONE, "");
    }
}

static void *committer_main(void *arg)
{
    gw_committer *c = arg;
    TSR_ASSERT(pthread_mutex_lock(&c->lock) == 0);
    for (;;) {
        while (c->head == NULL && !c->stopping) TSR_ASSERT(pthread_cond_wait(&c->cond, &c->lock) == 0);
        if (c->head == NULL) break;   /* stopping, and nothing left */
        size_t n = 0;
        while (c->head != NULL && n < GW_COMMIT_MAX_BATCH) {
            gw_commit_item *it = c->head;
            c->head = it->next;
            it->next = NULL;
            c->items[n++] = it;
        }
        if (c->head == NULL) c->tail = NULL;
        (void)pthread_mutex_unlock(&c->lock);
        commit_batch(c, n);
        TSR_ASSERT(pthread_mutex_lock(&c->lock) == 0);
    }
    (void)pthread_mutex_unlock(&c->lock);
    return NULL;
}

int gw_committer_start(gw_store *store, gw_committer **out)
{
    *out = NULL;
    TSR_ENSURE(store != NULL, TSR_E_INPUT, "committer: no store");
    gw_committer *c = calloc(1, sizeof *c);
    TSR_ENSURE(c != NULL, TSR_E_INTERNAL, "out of memory");
    c->store = store;
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c);
        return TSR_FAIL(TSR_E_INTERNAL, "pthread_mutex_init failed");
    }
    if (pthread_cond_init(&c->cond, NULL) != 0) {
        pthread_mutex_destroy(&c->lock);
        free(c);
        return TSR_FAIL(TSR_E_INTERNAL, "pthread_cond_init failed");
    }
    /* The committer blocks no signal of its own: block them all in it, as
     * the server's workers do, so the application's handlers run elsewhere. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int e = pthread_create(&c->thread, NULL, committer_main, c);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e != 0) {
        pthread_cond_destroy(&c->cond);
        pthread_mutex_destroy(&c->lock);
        free(c);
        return TSR_FAIL(TSR_E_INTERNAL, "cannot start the committer thread");
    }
    c->started = true;
    *out = c;
    return 0;
}

int gw_committer_submit(gw_committer *c, gw_commit_item *item)
{
    TSR_ASSERT(c != NULL && item != NULL && item->done != NULL);
    item->next = NULL;
    TSR_ASSERT(pthread_mutex_lock(&c->lock) == 0);
    if (c->stopping) {
        (void)pthread_mutex_unlock(&c->lock);
        return TSR_FAIL(TSR_E_STATE, "the certificate committer is stopping");
    }
    if (c->tail != NULL) c->tail->next = item;
    else c->head = item;
    c->tail = item;
    (void)pthread_cond_signal(&c->cond);
    (void)pthread_mutex_unlock(&c->lock);
    return 0;
}

void gw_committer_stop(gw_committer *c)
{
    if (c == NULL) return;
    TSR_ASSERT(pthread_mutex_lock(&c->lock) == 0);
    c->stopping = true;
    (void)pthread_cond_signal(&c->cond);
    (void)pthread_mutex_unlock(&c->lock);
    if (c->started) pthread_join(c->thread, NULL);
    TSR_ASSERT(c->head == NULL);
    gw_store_close(c->store);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

void gw_committer_stats(gw_committer *c, gw_commit_stats *out)
{
    TSR_ASSERT(pthread_mutex_lock(&c->lock) == 0);
    *out = c->stats;
    (void)pthread_mutex_unlock(&c->lock);
}
