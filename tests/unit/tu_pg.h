/* A PostgreSQL cluster of a unit test's own (tests/pg/cluster.sh: initdb +
 * pg_ctl under TMPDIR, a unix socket), for the tests of the replicas' store. */
#ifndef TU_PG_H
#define TU_PG_H

#include <stddef.h>

typedef struct tu_pg {
    char dir[128];      /* the cluster's directory under TMPDIR */
    char dsn[512];      /* its libpq DSN */
} tu_pg;

/* Start a fresh cluster: 0, or -1 (pg->dir may exist: tu_pg_stop it). */
int tu_pg_start(tu_pg *pg);
/* Stop it and remove its directory. */
void tu_pg_stop(tu_pg *pg);

#endif
