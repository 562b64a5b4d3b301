/* Several gateways (sup_gwlist.h). */
#include "sup_gwlist.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "grpc/health/v1/health.pb-c.h"
#include "sup_gateway.h"
#include "sup_logs.h"

void sup_gateways_init(sup_gateways *g)
{
    memset(g, 0, sizeof *g);
    pthread_mutex_init(&g->mu, NULL);
}

void sup_gateways_fini(sup_gateways *g)
{
    pthread_mutex_destroy(&g->mu);
}

static void addr_key(const cl_addr *a, char *out, size_t cap)
{
    if (a->is_unix) snprintf(out, cap, "unix:%s", a->host);
    else if (strchr(a->host, ':') != NULL) snprintf(out, cap, "[%s]:%u", a->host, a->port);
    else snprintf(out, cap, "%s:%u", a->host, a->port);
}

static bool same_addr(const cl_addr *x, const cl_addr *y)
{
    return x->is_unix == y->is_unix && x->port == y->port && strcmp(x->host, y->host) == 0;
}

int sup_gateways_add(sup_gateways *g, const char *text)
{
    cl_addr a;
    TSR_GUARD(cl_addr_parse(text, CL_DEFAULT_PORT, &a));
    for (size_t i = 0; i < g->n; i++)
        if (same_addr(&g->given[i], &a)) return 0;
    TSR_ENSURE(g->n < SUP_GATEWAYS_MAX, TSR_E_INPUT, "more than %d gateway addresses",
               SUP_GATEWAYS_MAX);
    g->given[g->n++] = a;
    return 0;
}

static bool host_is_numeric(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* Append t unless its key is there already; false when out is full. */
static bool add_target(sup_target *out, size_t cap, size_t *n, const cl_addr *a,
                       const char *name)
{
    if (*n >= cap) return false;
    sup_target *t = &out[*n];
    memset(t, 0, sizeof *t);
    t->addr = *a;
    addr_key(a, t->key, sizeof t->key);
    for (size_t i = 0; i < *n; i++)
        if (strcmp(out[i].key, t->key) == 0) return true;
    if (name != NULL) snprintf(t->label, sizeof t->label, "%s (%s)", name, t->key);
    else snprintf(t->label, sizeof t->label, "%s", t->key);
    (*n)++;
    return true;
}

size_t sup_gateways_expand(const sup_gateways *g, sup_target *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < g->n; i++) {
        const cl_addr *a = &g->given[i];
        if (a->is_unix || host_is_numeric(a->host)) {
            if (!add_target(out, cap, &n, a, NULL)) return n;
            continue;
        }
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_ADDRCONFIG;
        if (getaddrinfo(a->host, NULL, &hints, &res) != 0 || res == NULL) {
            /* Dialled as a name: the dial says why it does not resolve. */
            if (!add_target(out, cap, &n, a, NULL)) return n;
            continue;
        }
        bool room = true;
        for (struct addrinfo *ai = res; ai != NULL && room; ai = ai->ai_next) {
            cl_addr r = {.port = a->port, .is_unix = false};
            const void *src = NULL;
            if (ai->ai_family == AF_INET)
                src = &((const struct sockaddr_in *)(const void *)ai->ai_addr)->sin_addr;
            else if (ai->ai_family == AF_INET6)
                src = &((const struct sockaddr_in6 *)(const void *)ai->ai_addr)->sin6_addr;
            if (src == NULL || inet_ntop(ai->ai_family, src, r.host, sizeof r.host) == NULL)
                continue;
            room = add_target(out, cap, &n, &r, a->host);
        }
        freeaddrinfo(res);
        if (!room) return n;
    }
    return n;
}

static size_t find_key(const sup_target *t, size_t n, const char *key)
{
    if (key == NULL || key[0] == '\0') return n;
    for (size_t i = 0; i < n; i++)
        if (strcmp(t[i].key, key) == 0) return i;
    return n;
}

/* Rotate t left by k. */
static void rotate_left(sup_target *t, size_t n, size_t k)
{
    for (size_t r = 0; r < k; r++) {
        sup_target first = t[0];
        memmove(t, t + 1, (n - 1) * sizeof *t);
        t[n - 1] = first;
    }
}

void sup_targets_order(sup_target *t, size_t n, const char *current, const char *failed)
{
    if (n < 2) return;
    size_t i = find_key(t, n, current);
    if (i < n) {
        rotate_left(t, n, i);
        return;
    }
    i = find_key(t, n, failed);
    if (i < n) rotate_left(t, n, (i + 1) % n);
}

static bool round_has(const sup_round *r, const char *key)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->tried[i], key) == 0) return true;
    return false;
}

/* False when the round is full (it then ends: sup_gateways_next_now). */
static bool round_mark(sup_round *r, const char *key)
{
    if (round_has(r, key)) return true;
    if (r->n >= SUP_TARGETS_MAX) return false;
    snprintf(r->tried[r->n++], sizeof r->tried[0], "%s", key);
    return true;
}

size_t sup_round_untried(const sup_round *r, sup_target *t, size_t n)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (round_has(r, t[i].key)) continue;
        if (m != i) t[m] = t[i];
        m++;
    }
    return m;
}

void sup_round_reset(sup_round *r)
{
    r->n = 0;
}

bool sup_status_is_unreachable(enum gw_status code)
{
    return code == GW_STATUS_UNAVAILABLE || code == GW_STATUS_DEADLINE_EXCEEDED;
}

/* 1 when the gateway answers health NOT_SERVING (draining), 0 otherwise
 * (SERVING, or no usable answer: the real call will tell), -1 when the
 * connection itself failed (st set). */
static int health_draining(cl_conn *conn, cl_status *st)
{
    Grpc__Health__V1__HealthCheckRequest req;
    grpc__health__v1__health_check_request__init(&req);
    char all[] = "";   /* the server as a whole */
    req.service = all;
    ProtobufCMessage *m = NULL;
    if (cl_call(conn, "/grpc.health.v1.Health/Check", &req.base,
                &grpc__health__v1__health_check_response__descriptor, SUP_CALL_TIMEOUT_MS, &m,
                st) != 0)
        return sup_status_is_unreachable(st->code) || !cl_conn_alive(conn) ? -1 : 0;
    const Grpc__Health__V1__HealthCheckResponse *r = (const Grpc__Health__V1__HealthCheckResponse *)m;
    int draining = r != NULL &&
                   r->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
    protobuf_c_message_free_unpacked(m, NULL);
    return draining;
}

int sup_gateways_connect(sup_gateways *g, sup_round *r, cl_tls *tls, int64_t timeout_ms,
                         cl_conn **out, char *key, cl_status *st)
{
    *out = NULL;
    key[0] = '\0';
    sup_target *t = calloc(SUP_TARGETS_MAX, sizeof *t);
    if (t == NULL) {
        st->code = GW_STATUS_INTERNAL;
        snprintf(st->message, sizeof st->message, "out of memory");
        return -1;
    }
    /* The order under the lock; the dialling without it (the control
     * thread and the log sender each connect on their own). */
    char was[SUP_TARGET_KEY_MAX];
    pthread_mutex_lock(&g->mu);
    size_t n = sup_gateways_expand(g, t, SUP_TARGETS_MAX);
    sup_targets_order(t, n, g->current, g->failed);
    snprintf(was, sizeof was, "%s", g->current[0] != '\0' ? g->current : g->failed);
    pthread_mutex_unlock(&g->mu);
    size_t m = sup_round_untried(r, t, n);
    st->code = GW_STATUS_UNAVAILABLE;
    snprintf(st->message, sizeof st->message,
             m < n ? "every gateway address was tried in this round" : "no gateway address");
    int rc = -1;
    size_t i = 0;
    for (; i < m && rc != 0; i++) {
        cl_conn *conn = NULL;
        if (!round_mark(r, t[i].key)) {
            snprintf(st->message, sizeof st->message, "more than %d addresses in one round",
                     SUP_TARGETS_MAX);
            break;
        }
        if (cl_conn_open_addr(&t[i].addr, tls, timeout_ms, &conn, st) != 0) continue;
        int d = health_draining(conn, st);
        if (d != 0) {
            if (d > 0) {
                st->code = GW_STATUS_UNAVAILABLE;
                snprintf(st->message, sizeof st->message, "%s is draining (health NOT_SERVING)",
                         t[i].label);
            }
            cl_conn_close(conn);
            continue;
        }
        *out = conn;
        snprintf(key, SUP_TARGET_KEY_MAX, "%s", t[i].key);
        rc = 0;
    }
    if (rc == 0) {
        pthread_mutex_lock(&g->mu);
        snprintf(g->current, sizeof g->current, "%s", key);
        g->failed[0] = '\0';
        pthread_mutex_unlock(&g->mu);
        if (n > 1 && strcmp(was, key) != 0)
            sup_log("gateway: using %s%s%s%s", t[i - 1].label, was[0] != '\0' ? " (failed over from " : "",
                    was, was[0] != '\0' ? ")" : "");
    } else {
        if (n > 1 && m > 0) {
            char last[sizeof st->message];
            snprintf(last, sizeof last, "%s", st->message);
            if (m == n)
                snprintf(st->message, sizeof st->message,
                         "none of %zu gateway addresses answered; last: %.900s", n, last);
            else
                snprintf(st->message, sizeof st->message,
                         "none of %zu gateway addresses answered (%zu tried before in this "
                         "round); last: %.900s", n, n - m, last);
        }
        sup_round_reset(r);   /* every address failed: the caller backs off */
    }
    free(t);
    return rc;
}

void sup_gateways_failed(sup_gateways *g, const char *key)
{
    if (key == NULL || key[0] == '\0') return;
    pthread_mutex_lock(&g->mu);
    if (strcmp(g->current, key) == 0) g->current[0] = '\0';
    snprintf(g->failed, sizeof g->failed, "%s", key);
    pthread_mutex_unlock(&g->mu);
}

bool sup_gateways_next_now(sup_gateways *g, sup_round *r, const char *key)
{
    bool now = false;
    if (key != NULL && key[0] != '\0') {
        sup_gateways_failed(g, key);
        if (round_mark(r, key)) {
            sup_target *t = calloc(SUP_TARGETS_MAX, sizeof *t);
            if (t != NULL) {
                pthread_mutex_lock(&g->mu);
                size_t n = sup_gateways_expand(g, t, SUP_TARGETS_MAX);
                pthread_mutex_unlock(&g->mu);
                now = sup_round_untried(r, t, n) > 0;
                free(t);
            }
        }
    }
    if (!now) sup_round_reset(r);
    return now;
}
