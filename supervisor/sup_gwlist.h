/* The gateways a supervisor may use (docs/supervisor.md, "Several
 * gateways"): every --gateway given, a host name expanded into each address
 * it resolves to, tried one after the other. The one that answered last is
 * tried first (sticky); one whose call failed as unreachable is tried last
 * the next time. A gateway that says it is draining (health NOT_SERVING) is
 * skipped. Every replica must serve spiffe://<td>/gateway: the client
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

/* Open a connection to the first target of this round's order that
 * connects, whose TLS handshake proves spiffe://<td>/gateway, and whose
 * health Check does not answer NOT_SERVING (a gateway that does not answer
 * the Check at all is used: the call it gets will tell). timeout_ms bounds
 * each target. On success *out, and key (cap SUP_TARGET_KEY_MAX) names the
 * target for sup_gateways_failed. On failure the last target's status, with
 * how many were tried. */
TSR_WUR int sup_gateways_connect(sup_gateways *g, cl_tls *tls, int64_t timeout_ms,
                                 cl_conn **out, char *key, cl_status *st);

/* A call on the connection to `key` failed as unreachable (UNAVAILABLE,
 * DEADLINE_EXCEEDED): the next round starts with the target after it. */
void sup_gateways_failed(sup_gateways *g, const char *key);

/* A status that means the gateway could not be reached or is going away:
 * worth another replica. */
bool sup_status_is_unreachable(enum gw_status code);

#endif
