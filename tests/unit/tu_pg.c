/* tu_pg.h */
#include "tu_pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tu_fs.h"

static const char *cluster_script(char *buf, size_t cap)
{
    const char *root = getenv("TSR_ROOT");
    snprintf(buf, cap, "%s/tests/pg/cluster.sh", root != NULL ? root : ".");
    return buf;
}

int tu_pg_start(tu_pg *pg)
{
    char script[512], cmd[1024];
    memset(pg, 0, sizeof *pg);
    if (tu_temp_path(pg->dir, sizeof pg->dir, "tsr-pg-XXXXXX") != 0 || mkdtemp(pg->dir) == NULL)
        return -1;
    snprintf(cmd, sizeof cmd, "%s start %s", cluster_script(script, sizeof script), pg->dir);
    FILE *p = popen(cmd, "r");
    if (p == NULL) return -1;
    if (fgets(pg->dsn, sizeof pg->dsn, p) == NULL) pg->dsn[0] = '\0';
    int rc = pclose(p);
    pg->dsn[strcspn(pg->dsn, "\n")] = '\0';
    return rc == 0 && pg->dsn[0] != '\0' ? 0 : -1;
}

void tu_pg_stop(tu_pg *pg)
{
    char script[512], cmd[1024];
    if (pg->dir[0] == '\0') return;
    snprintf(cmd, sizeof cmd, "%s stop %s", cluster_script(script, sizeof script), pg->dir);
    if (system(cmd) != 0) fprintf(stderr, "cluster stop failed: %s\n", cmd);
}
