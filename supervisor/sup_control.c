/* The control thread (sup_control.h). */
#include "sup_control.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sup_gateway.h"
#include "sup_logs.h"
#include "sup_rotate.h"
#include "tsr_time.h"

struct sup_control {
    sup_control_config cfg;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cond;     /* CLOCK_MONOTONIC */
    bool stop, rotate_now;
    /* Control thread only. */
    sup_identity *id;
    cl_conn *conn;
    char conn_key[SUP_TARGET_KEY_MAX];   /* the gateway address conn reached */
    uint64_t conn_gen;
    sup_round round;             /* this thread's round over the gateway addresses */
    bool fatal;
    int64_t unreachable_since;   /* Unix seconds of the first failure of an outage; 0 = reachable */
    bool poll_failing;           /* log a poll failure once per outage */
};

void sup_format_time(int64_t t, char *out, size_t cap)
{
    time_t secs = (time_t)t;
    struct tm tm;
    if (gmtime_r(&secs, &tm) == NULL) {
        snprintf(out, cap, "%lld", (long long)t);
        return;
    }
    snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static void fatal(sup_control *c, enum sup_exit code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fatal(sup_control *c, enum sup_exit code, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->fatal = true;
    sup_log("%s", msg);
    if (c->cfg.on_fatal) c->cfg.on_fatal(c->cfg.arg, code, msg);
}

/* Wait until deadline (monotonic ms), stop, or a rotate-now request.
 * Returns true when woken by stop or rotate-now. */
static bool wait_until(sup_control *c, int64_t deadline_ms)
{
    pthread_mutex_lock(&c->mu);
    while (!c->stop && !c->rotate_now) {
        int64_t left = deadline_ms - tsr_monotonic_ms();
        if (left <= 0) break;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t)(left / 1000);
        ts.tv_nsec += (long)(left % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&c->cond, &c->mu, &ts);
    }
    bool woken = c->stop || c->rotate_now;
    pthread_mutex_unlock(&c->mu);
    return woken;
}

static bool stopping(sup_control *c)
{
    pthread_mutex_lock(&c->mu);
    bool s = c->stop;
    pthread_mutex_unlock(&c->mu);
    return s;
}

static bool take_rotate_now(sup_control *c)
{
    pthread_mutex_lock(&c->mu);
    bool r = c->rotate_now;
    c->rotate_now = false;
    pthread_mutex_unlock(&c->mu);
    return r;
}

static void drop_conn(sup_control *c)
{
    cl_conn_close(c->conn);
    c->conn = NULL;
}

/* The gateway of our connection could not be reached or is going away:
 * the next connection tries another one first. True when a call failed on
 * the connection (call_failed) and an address of this round is not tried
 * yet: the next attempt goes there at once, without backoff
 * (sup_gateways_next_now). */
static bool drop_unreachable(sup_control *c, bool call_failed)
{
    bool next_now = sup_gateways_next_now(c->cfg.gateways, &c->round,
                                          call_failed && c->conn != NULL ? c->conn_key : NULL);
    if (!call_failed && c->conn != NULL) sup_gateways_failed(c->cfg.gateways, c->conn_key);
    drop_conn(c);
    return next_now;
}

static int ensure_conn(sup_control *c, cl_status *st)
{
    uint64_t gen = cl_tls_generation(c->cfg.tls);
    if (c->conn != NULL && (!cl_conn_alive(c->conn) || gen != c->conn_gen)) drop_conn(c);
    if (c->conn != NULL) return 0;
    if (sup_gateways_connect(c->cfg.gateways, &c->round, c->cfg.tls, SUP_CONNECT_TIMEOUT_MS,
                             &c->conn, c->conn_key, st) != 0) {
        if (c->unreachable_since == 0) c->unreachable_since = tsr_now_unix();
        return -1;
    }
    c->conn_gen = gen;
    return 0;
}

/* A call the gateway answered: whatever it said, it is reachable, and the
 * round over the addresses starts afresh. */
static void reachable(sup_control *c)
{
    c->unreachable_since = 0;
    sup_round_reset(&c->round);
}

static void unreachable_now(sup_control *c)
{
    if (c->unreachable_since == 0) c->unreachable_since = tsr_now_unix();
}

static int64_t expiry(const sup_control *c)
{
    return c->id->peer.chain_not_after;
}

/* Install a renewed identity: files first (durable), then the TLS context. */
static int install(sup_control *c, sup_identity *next)
{
    if (sup_identity_store(c->cfg.identity_dir, next->cert_pem, next->cert_pem_len,
                           next->key_pem, next->key_pem_len, next->bundle_pem,
                           next->bundle_pem_len) != 0) {
        sup_log("rotation: cannot store the new identity: %s", tsr_errmsg());
        return -1;
    }
    bool new_bundle = next->bundle_pem_len != c->id->bundle_pem_len ||
                      memcmp(next->bundle_pem, c->id->bundle_pem, next->bundle_pem_len) != 0;
    if (new_bundle && cl_tls_reload_bundle(c->cfg.tls, next->bundle_pem, next->bundle_pem_len) != 0)
        sup_log("rotation: the TLS client kept its old bundle: %s", tsr_errmsg());
    if (cl_tls_reload(c->cfg.tls, next->cert_pem, next->cert_pem_len, next->key_pem,
                      next->key_pem_len) != 0) {
        /* The files hold the new pair; the old one stays valid until it
         * expires, and the next start loads the new one. */
        sup_log("rotation: the TLS client kept its old identity: %s", tsr_errmsg());
    }
    char until[40];
    sup_format_time(next->peer.not_after, until, sizeof until);
    sup_log("rotated certificate: serial %s -> %s, valid until %s", c->id->peer.serial_hex,
            next->peer.serial_hex, until);
    sup_identity_free(c->id);
    c->id = next;
    return 0;
}

/* One rotation, retried with backoff until it succeeds, stop, or a fatal end. */
static void rotate(sup_control *c)
{
    unsigned attempt = 0;
    cl_status st;
    for (;;) {
        if (stopping(c)) return;
        int64_t now = tsr_now_unix();
        if (now >= expiry(c)) {
            char at[40], since[40];
            sup_format_time(expiry(c), at, sizeof at);
            sup_format_time(c->unreachable_since ? c->unreachable_since : now, since,
                            sizeof since);
            fatal(c, SUP_EXIT_EXPIRED, "certificate expired at %s; gateway unreachable since %s",
                  at, since);
            return;
        }
        bool from_server = false;
        sup_identity *next = NULL;
        int rc = ensure_conn(c, &st);
        if (rc == 0) {
            from_server = true;
            rc = sup_rotate_renew(c->conn, c->id, c->cfg.trust_domain, SUP_CALL_TIMEOUT_MS, &next,
                                  &st);
        }
        if (from_server && (rc == 0 || !sup_status_is_unreachable(st.code)))
            reachable(c);
        if (rc == 0) {
            rc = install(c, next);
            if (rc == 0) {
                drop_conn(c); /* our next calls present the new certificate */
                return;
            }
            sup_identity_free(next);
            st.code = GW_STATUS_INTERNAL;
            snprintf(st.message, sizeof st.message, "cannot store the new identity");
            from_server = false;
        }
        if (from_server && st.code != GW_STATUS_INTERNAL && sup_status_is_fatal(st.code)) {
            fatal(c, SUP_EXIT_REVOKED, "gateway refused our identity on RenewCertificate: %s: %s",
                  cl_status_name(st.code), st.message);
            return;
        }
        if (sup_status_is_unreachable(st.code) || !from_server) {
            unreachable_now(c);
            if (drop_unreachable(c, from_server && sup_status_is_unreachable(st.code))) {
                sup_log("rotation failed: %s: %s; trying the next gateway address now",
                        cl_status_name(st.code), st.message);
                continue;
            }
        }
        int64_t d = sup_backoff_ms(attempt, sup_rand_unit());
        if (attempt < 16) attempt++;
        int64_t left_ms = (expiry(c) - now) * 1000;
        if (d > left_ms) d = left_ms > 0 ? left_ms : 0;
        sup_log("rotation failed: %s: %s; retrying in %lld ms", cl_status_name(st.code), st.message,
                (long long)d);
        (void)wait_until(c, tsr_monotonic_ms() + d);
        (void)take_rotate_now(c);
    }
}

/* Our standing and policy: one GetSandboxConfig, and a report on a new
 * version. Returns true when the poll failed as unreachable and another
 * address of this round is still to try: poll again at once. */
static bool poll_config(sup_control *c)
{
    cl_status st;
    sup_config cfg;
    const char *sid = c->id->peer.identity.name;
    bool connected = ensure_conn(c, &st) == 0;
    if (!connected || sup_get_config(c->conn, sid, &cfg, &st) != 0) {
        if (connected && sup_status_is_fatal(st.code)) {
            fatal(c, SUP_EXIT_REVOKED, "gateway refused our identity on GetSandboxConfig: %s: %s",
                  cl_status_name(st.code), st.message);
            return false;
        }
        bool next_now = false;
        if (!connected || sup_status_is_unreachable(st.code)) {
            unreachable_now(c);
            next_now = drop_unreachable(c, connected);
        }
        if (next_now) {
            sup_log("config poll: %s: %s; trying the next gateway address now",
                    cl_status_name(st.code), st.message);
            return true;
        }
        /* Once per outage; the next success says it is over. */
        if (!c->poll_failing)
            sup_log("config poll: %s: %s (retrying every %llds)", cl_status_name(st.code),
                    st.message, (long long)c->cfg.poll_s);
        c->poll_failing = true;
        return false;
    }
    reachable(c);
    if (c->poll_failing) sup_log("config poll: the gateway answers again");
    c->poll_failing = false;
    if (cfg.policy_version != c->cfg.policy_version) {
        bool applied = false;
        char why[300];
        if (sup_report_policy(c->conn, sid, &cfg, c->cfg.enforcement, &applied, why, sizeof why,
                              &st) == 0) {
            c->cfg.policy_version = cfg.policy_version;
            if (applied)
                sup_log("policy version %lld validated and reported APPLIED (%s)",
                        (long long)cfg.policy_version, c->cfg.enforcement);
            else
                sup_log("policy version %lld refused (%s); reported FAILED, the previous version "
                        "stays the applied one",
                        (long long)cfg.policy_version, why);
        } else if (sup_status_is_fatal(st.code)) {
            fatal(c, SUP_EXIT_REVOKED, "gateway refused our identity on ReportPolicyStatus: %s: %s",
                  cl_status_name(st.code), st.message);
        } else {
            sup_log("policy report: %s: %s", cl_status_name(st.code), st.message);
        }
    }
    sup_config_free(&cfg);
    return false;
}

static void *control_main(void *arg)
{
    sup_control *c = arg;
    int64_t next_poll = c->cfg.poll_s > 0 ? tsr_monotonic_ms() + c->cfg.poll_s * 1000 : INT64_MAX;
    while (!c->fatal && !stopping(c)) {
        bool expired = false;
        /* Scheduled on the gateway's clock as far as our certificate tells
         * it: a clock behind would otherwise wait past the real expiry. */
        int64_t behind_ms = 1000 * sup_clock_behind_s(c->id->peer.not_before, tsr_now_unix());
        int64_t delay = sup_rotate_delay_ms(tsr_now_unix_ms() + behind_ms, expiry(c),
                                            c->cfg.min_rotate_s, c->cfg.renew_before_s,
                                            sup_rand_unit(), &expired);
        int64_t rotate_at = tsr_monotonic_ms() + delay;
        char when[40];
        sup_format_time(tsr_now_unix() + delay / 1000, when, sizeof when);
        sup_log("next rotation of certificate %s at about %s (in %lld s)", c->id->peer.serial_hex,
                when, (long long)(delay / 1000));
        for (;;) {
            int64_t until = rotate_at < next_poll ? rotate_at : next_poll;
            bool woken = wait_until(c, until);
            if (stopping(c)) break;
            bool now_req = woken && take_rotate_now(c);
            int64_t now = tsr_monotonic_ms();
            if (now_req || now >= rotate_at) {
                if (now_req) sup_log("rotation requested (SIGUSR1)");
                rotate(c);
                break;
            }
            if (now >= next_poll) {
                bool again = poll_config(c);
                next_poll = tsr_monotonic_ms() + (again ? 0 : c->cfg.poll_s * 1000);
                if (c->fatal) break;
            }
        }
    }
    drop_conn(c);
    return NULL;
}

int sup_control_start(const sup_control_config *cfg, sup_identity *id, sup_control **out)
{
    sup_control *c = calloc(1, sizeof *c);
    if (c == NULL) {
        sup_identity_free(id);
        return TSR_FAIL(TSR_E_INTERNAL, "out of memory");
    }
    c->cfg = *cfg;
    c->id = id;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&c->mu, NULL);
    int e = pthread_create(&c->th, NULL, control_main, c);
    if (e != 0) {
        pthread_cond_destroy(&c->cond);
        pthread_mutex_destroy(&c->mu);
        sup_identity_free(c->id);
        free(c);
        return TSR_FAIL(TSR_E_INTERNAL, "control thread: %s", strerror(e));
    }
    *out = c;
    return 0;
}

void sup_control_rotate_now(sup_control *c)
{
    if (c == NULL) return;
    pthread_mutex_lock(&c->mu);
    c->rotate_now = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
}

void sup_control_stop(sup_control *c)
{
    if (c == NULL) return;
    pthread_mutex_lock(&c->mu);
    c->stop = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->th, NULL);
    sup_identity_free(c->id);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->mu);
    free(c);
}
