/* The metrics listener: a tiny HTTP/1.1 responder on its own thread that
 * serves gw_metrics_render() for `GET /metrics` and nothing else.
 *
 * Plain HTTP, meant for a loopback address (the config refuses others).
 * One connection at a time: the request (line + headers) must arrive
 * within 8 KiB and 2 s; one response, then close. Anything else gets
 * 400/404/405/431 and close; a silent client is dropped at the deadline. */
#ifndef GW_METRICS_SERVER_H
#define GW_METRICS_SERVER_H

#include <stdint.h>

#include "tsr_err.h"

#define GW_METRICS_REQUEST_MAX 8192
#define GW_METRICS_IO_TIMEOUT_MS 2000

typedef struct gw_metrics_server gw_metrics_server;

/* Bind HOST:PORT (port 0 = ephemeral) and start the thread. */
TSR_WUR int gw_metrics_server_start(const char *host, uint16_t port, gw_metrics_server **out);
uint16_t gw_metrics_server_port(const gw_metrics_server *m);
/* Stop the thread (at most one I/O timeout later), close, free. NULL ok. */
void gw_metrics_server_stop(gw_metrics_server *m);

#endif
