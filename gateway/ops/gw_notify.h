/* systemd readiness (Type=notify, docs/operations.md "Running under
 * systemd"): sd_notify(3) from libsystemd. Without $NOTIFY_SOCKET (not
 * started by systemd) every call does nothing. */
#ifndef GW_NOTIFY_H
#define GW_NOTIFY_H

/* READY=1 with a STATUS= line: the listeners are bound, calls are served. */
void gw_notify_ready(const char *status);
/* RELOADING=1 before a SIGHUP reload (READY=1 again after it). */
void gw_notify_reloading(void);
/* STOPPING=1 once the drain has begun (at most once). */
void gw_notify_stopping(void);

#endif
