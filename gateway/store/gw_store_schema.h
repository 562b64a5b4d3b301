/* The store's numbered schema migrations (internal to the sqlite backend, run by gw_sqlite_open.c). */
#ifndef GW_STORE_SCHEMA_H
#define GW_STORE_SCHEMA_H

#include <stddef.h>

typedef struct gw_migration {
    int version;        /* 1, 2, ... in order, no gaps */
    const char *sql;    /* one or more statements, run inside one transaction */
} gw_migration;

/* Every migration, version i+1 at index i; the last one's version is
 * GW_STORE_SCHEMA_VERSION. */
const gw_migration *gw_store_migrations(size_t *n);

#endif
