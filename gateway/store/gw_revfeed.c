/* The revocation feed of a shared PostgreSQL store (gw_revfeed.h). */
#include "gw_revfeed.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gw_sqlite_internal.h"
#include "tsr_time.h"

#define FEED_PAGE 10000

struct gw_revfeed {
    char *dsn;
    int (*add)(void *arg, const char *serial, int64_t not_after);
    void *arg;
    PGconn *conn;               /* the thread's; NULL while disconnected */
    int64_t last_seq;           /* the highest revocation number read */
    atomic_int_fast64_t caught_up_ms; /* monotonic time of the last full catch-up */
    atomic_bool stop;
    int wake[2];                /* stop: a byte on wake[1] */
    pthread_t thread;
    bool started;
};

/* Read every revocation numbered above last_seq (pages of FEED_PAGE), adding
 * those whose certificate has not expired. 0 when it read to the end. */
static int catch_up(gw_revfeed *f)
{
    for (;;) {
        char after[24], now[24];
        snprintf(after, sizeof after, "%" PRId64, f->last_seq);
        snprintf(now, sizeof now, "%" PRId64, tsr_now_unix());
        const char *params[2] = {after, now};
        PGresult *res = PQexecParams(f->conn,
                                     "SELECT seq, serial, not_after FROM revocations "
                                     "WHERE seq > $1::bigint ORDER BY seq LIMIT 10000",
                                     1, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            char text[256];
            snprintf(text, sizeof text, "%s", PQerrorMessage(f->conn));
            text[strcspn(text, "\n")] = '\0';
            PQclear(res);
            return TSR_FAIL(TSR_E_IO, "revocation feed: %s", text);
        }
        int n = PQntuples(res), rc = 0;
        int64_t expired_before = strtoll(now, NULL, 10);
        for (int i = 0; i < n && rc == 0; i++) {
            int64_t seq = strtoll(PQgetvalue(res, i, 0), NULL, 10);
            const char *serial = PQgetvalue(res, i, 1);
            int64_t not_after = strtoll(PQgetvalue(res, i, 2), NULL, 10);
            if (not_after >= expired_before) rc = f->add(f->arg, serial, not_after);
            if (rc == 0) f->last_seq = seq;
        }
        PQclear(res);
        if (rc != 0) return -1;
        if (n < FEED_PAGE) return 0;
    }
}

static void disconnect(gw_revfeed *f)
{
    PQfinish(f->conn);
    f->conn = NULL;
}

/* Connect, LISTEN, catch up: only then is the feed current. */
static int connect_feed(gw_revfeed *f)
{
    if (gw_pg_conn_open(f->dsn, &f->conn) != 0) {
        disconnect(f);
        return -1;
    }
    PGresult *res = PQexec(f->conn, "SET client_min_messages = warning; "
                                    "LISTEN tessera_revocations");
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    if (!ok) {
        (void)TSR_FAIL(TSR_E_IO, "revocation feed: LISTEN: %s", PQerrorMessage(f->conn));
        disconnect(f);
        return -1;
    }
    if (catch_up(f) != 0) {
        disconnect(f);
        return -1;
    }
    atomic_store(&f->caught_up_ms, tsr_monotonic_ms());
    return 0;
}

/* Wait up to ms for a notification (or stop); drains what arrived. -1 when
 * the connection broke. */
static int wait_notified(gw_revfeed *f, int ms)
{
    struct pollfd p[2] = {{.fd = PQsocket(f->conn), .events = POLLIN},
                          {.fd = f->wake[0], .events = POLLIN}};
    if (p[0].fd < 0) return -1;
    int r = poll(p, 2, ms);
    if (r < 0 && errno != EINTR) return -1;
    if (r > 0 && (p[0].revents & (POLLIN | POLLERR | POLLHUP))) {
        if (!PQconsumeInput(f->conn)) return -1;
        PGnotify *n;
        while ((n = PQnotifies(f->conn)) != NULL) PQfreemem(n);
    }
    return PQstatus(f->conn) == CONNECTION_OK ? 0 : -1;
}

static void sleep_or_stop(gw_revfeed *f, int ms)
{
    struct pollfd p = {.fd = f->wake[0], .events = POLLIN};
    (void)poll(&p, 1, ms);
}

static void *feed_main(void *arg)
{
    gw_revfeed *f = arg;
    while (!atomic_load(&f->stop)) {
        if (f->conn == NULL) {
            if (connect_feed(f) != 0) {
                fprintf(stderr, "tessera-gateway: %s\n", tsr_errmsg());
                sleep_or_stop(f, GW_REVFEED_POLL_MS);
                continue;
            }
            fprintf(stderr, "tessera-gateway: revocation feed connected\n");
        }
        if (wait_notified(f, GW_REVFEED_POLL_MS) != 0 || catch_up(f) != 0) {
            fprintf(stderr, "tessera-gateway: revocation feed lost the database\n");
            disconnect(f);
            continue;
        }
        atomic_store(&f->caught_up_ms, tsr_monotonic_ms());
    }
    return NULL;
}

int gw_revfeed_start(const char *locator,
                     int (*add)(void *arg, const char *serial, int64_t not_after), void *arg,
                     gw_revfeed **out)
{
    *out = NULL;
    const char *dsn = gw_store_pg_dsn(locator);
    if (dsn == NULL) return 0;
    gw_revfeed *f = calloc(1, sizeof *f);
    TSR_ENSURE(f != NULL, TSR_E_INTERNAL, "out of memory");
    f->wake[0] = f->wake[1] = -1;
    f->add = add;
    f->arg = arg;
    f->dsn = strdup(dsn);
    if (f->dsn == NULL || pipe2(f->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        gw_revfeed_stop(f);
        return TSR_FAIL(TSR_E_INTERNAL, "revocation feed: out of resources");
    }
    if (connect_feed(f) != 0) {
        char msg[512];
        enum tsr_errcat cat = tsr_errcat();
        snprintf(msg, sizeof msg, "%s", tsr_errmsg());
        gw_revfeed_stop(f);
        return TSR_FAIL(cat, "%s", msg);
    }
    if (pthread_create(&f->thread, NULL, feed_main, f) != 0) {
        gw_revfeed_stop(f);
        return TSR_FAIL(TSR_E_INTERNAL, "revocation feed: cannot start its thread");
    }
    f->started = true;
    *out = f;
    return 0;
}

void gw_revfeed_stop(gw_revfeed *f)
{
    if (f == NULL) return;
    atomic_store(&f->stop, true);
    if (f->wake[1] >= 0) (void)!write(f->wake[1], "x", 1);
    if (f->started) pthread_join(f->thread, NULL);
    disconnect(f);
    if (f->wake[0] >= 0) close(f->wake[0]);
    if (f->wake[1] >= 0) close(f->wake[1]);
    if (f->dsn != NULL) OPENSSL_cleanse(f->dsn, strlen(f->dsn)); /* may hold a password */
    free(f->dsn);
    free(f);
}

bool gw_revfeed_current(const gw_revfeed *f)
{
    if (f == NULL) return true;
    int64_t at = atomic_load(&f->caught_up_ms);
    return tsr_monotonic_ms() - at <= GW_REVFEED_FRESH_MS;
}
