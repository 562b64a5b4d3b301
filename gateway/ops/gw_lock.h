/* One gateway per data directory and per listening port
 * (docs/operations.md, "One gateway per data directory"). */
#ifndef GW_LOCK_H
#define GW_LOCK_H

#include <stdint.h>

#include "tsr_err.h"

/* Take <data_dir>/gateway.lock with flock(LOCK_EX | LOCK_NB) and write our
 * pid into it. The descriptor is held (close-on-exec) until the process
 * exits; the kernel drops the lock with it, even after SIGKILL. A second
 * gateway on the same directory fails with TSR_E_EXISTS naming the holder's
 * pid. The sqlite file itself is never opened for this: closing any
 * descriptor of it would drop sqlite's POSIX locks (see gw_store.c,
 * prepare_file). */
TSR_WUR int gw_datadir_lock(const char *data_dir, int *fd_out);

/* Before the workers bind host:port with SO_REUSEPORT: bind it once without
 * SO_REUSEPORT. Linux lets a socket join a reuseport group only when every
 * socket already bound there set the option, and refuses a plain bind on a
 * port someone listens on, so this fails (TSR_E_EXISTS) when any process —
 * another gateway of the same user included — already serves the port,
 * instead of silently sharing its connections. Port 0 is not probed. */
TSR_WUR int gw_listen_probe(const char *host, uint16_t port);

#endif
