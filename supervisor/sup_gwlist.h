/* The gateways a supervisor may use (docs/supervisor.md, "Several
 * gateways"): every --gateway given, a host name expanded into each address
 * it resolves to, tried one after the other. The one that answered last is
 * tried first (sticky); one whose call failed as unreachable is tried last
 * the next time. A gateway that says it is draining (health NOT_SERVING) is
 * skipped. Each thread keeps its own round (sup_round): after a call fails
 * as unreachable it goes on at once to an address it has not tried in this
 * round, and backs off only when every address failed. Every replica must serve spiffe://<td>/gateway: the client
 * library checks the server's identity on every connection, whichever
 * address it reached.
 *
 * Thread-safe: the start-up calls, the control thread and the log sender
 * share one list. */
#ifndef SUP_GWLIST_H
#define SUP_GWLIST_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cl_grpc.h"
#include "tsr_err.h"

#define SUP_GATEWAYS_MAX 16      /* --gateway given at most this often */
#define SUP_TARGETS_MAX 64       /* addresses tried in one round, after resolution */
#define SUP_TARGET_KEY_MAX 300   /* "127.0.0.1:8443", "[::1]:8443", "unix:/path" */

typedef struct sup_target {
    cl_addr addr;                      /* what is dialled (a resolved name: numeric) */
    char key[SUP_TARGET_KEY_MAX];      /* the address as text: identifies the target */
    char label[SUP_TARGET_KEY_MAX * 2]; /* for messages: "name (key)" or the key */
} sup_target;

typedef struct sup_gateways {
    cl_addr given[SUP_GATEWAYS_MAX];
    size_t n;
    pthread_mutex_t mu;
    char current[SUP_TARGET_KEY_MAX];  /* the target that answered last ("" none) */
    char failed[SUP_TARGET_KEY_MAX];   /* the target that failed last ("" none) */
} sup_gateways;

/* One thread's round over the addresses: the ones it tried since a gateway
 * last answered it or it last backed off. Each thread that connects (the
 * start-up calls, the control thread, the log sender) has its own; a
 * reset round (zeroed) tries every address. */
typedef struct sup_round {
    char tried[SUP_TARGETS_MAX][SUP_TARGET_KEY_MAX];
    size_t n;
} sup_round;

void sup_gateways_init(sup_gateways *g);
void sup_gateways_fini(sup_gateways *g);
/* One --gateway value (cl_addr_parse: HOST:PORT, [v6]:PORT, unix:/path);
 * TSR_E_INPUT when it does not parse or there are SUP_GATEWAYS_MAX already.
 * An address given twice is kept once. */
TSR_WUR int sup_gateways_add(sup_gateways *g, const char *text);

/* The targets of one round: each given address in order, a host name
 * replaced by every address it resolves to (in the resolver's order; a
 * name that does not resolve stays as it is and fails at dial time with
 * the reason), duplicates once. Returns the count (<= cap). */
size_t sup_gateways_expand(const sup_gateways *g, sup_target *out, size_t cap);

/* Reorder t[0..n) in place for one round: from `current` on when it is in
 * the list (wrapping around); else from the one after `failed` (which goes
 * last); else as given. */
void sup_targets_order(sup_target *t, size_t n, const char *current, const char *failed);

/* Keep, in order, only the targets of t[0..n) that round r has not tried
 * yet; returns their count. */
size_t sup_round_untried(const sup_round *r, sup_target *t, size_t n);
/* The round is over (a gateway answered, or the caller backs off). */
void sup_round_reset(sup_round *r);

/* Open a connection to the first target of this round's order, among
 * those round r has not tried, that connects, whose TLS handshake proves
 * spiffe://<td>/gateway, and whose health Check does not answer
 * NOT_SERVING (a gateway that does not answer the Check at all is used:
 * the call it gets will tell). Every target dialled is marked tried in r.
 * timeout_ms bounds each target. On success *out, and key (cap
 * SUP_TARGET_KEY_MAX) names the target for sup_gateways_next_now. On
 * failure the last target's status, with how many were tried; every
 * address has then failed in this round, which is reset: back off. */
TSR_WUR int sup_gateways_connect(sup_gateways *g, sup_round *r, cl_tls *tls, int64_t timeout_ms,
                                 cl_conn **out, char *key, cl_status *st);

/* A call on the connection to `key` failed as unreachable (UNAVAILABLE,
 * DEADLINE_EXCEEDED): the next round starts with the target after it. */
void sup_gateways_failed(sup_gateways *g, const char *key);

/* What follows a failed attempt. key: the address whose call failed as
 * unreachable (recorded with sup_gateways_failed and marked tried in r), or
 * NULL for any other failure. true: an address of this round is not tried
 * yet: the next attempt goes there at once. false: back off; the round is
 * over and r reset. Each true needs an address r has not tried, and
 * sup_gateways_connect marks what it dials: a round where every address
 * fails ends in a backoff after at most one attempt per address. */
bool sup_gateways_next_now(sup_gateways *g, sup_round *r, const char *key);

/* A status that means the gateway could not be reached or is going away:
 * worth another replica. */
bool sup_status_is_unreachable(enum gw_status code);

#endif
