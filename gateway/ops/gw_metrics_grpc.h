/* The metrics stock dashboards know (docs/operations.md, "Metrics"):
 *   grpc_server_started_total{grpc_type,grpc_service,grpc_method}
 *   grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}
 *   grpc_server_handling_seconds{grpc_type,grpc_service,grpc_method} (histogram,
 *     from the call's headers to its status; buckets of go-grpc-prometheus)
 * as go-grpc-prometheus / grpc-ecosystem name them, the Prometheus client
 * libraries' process_* collector (cpu, memory, open and max fds, start
 * time) and tessera_build_info{version,git,openssl} 1. Atomics only, like
 * gw_metrics.h; rendered by gw_metrics_render. */
#ifndef GW_METRICS_GRPC_H
#define GW_METRICS_GRPC_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "gw_rpc.h"

/* Called by gw_metrics_set_methods with the same table (same limits). */
void gw_metrics_grpc_set_methods(const gw_method *methods, size_t n);
/* gw_server_config.call_started / call_finished. */
void gw_metrics_grpc_started(void *app, size_t method);
void gw_metrics_grpc_finished(void *app, size_t method, enum gw_status status,
                              int64_t elapsed_ns);
void gw_metrics_grpc_render(FILE *f);
void gw_metrics_grpc_reset(void);

#endif
