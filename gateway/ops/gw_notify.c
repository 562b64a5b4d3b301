#include "gw_notify.h"

#include <stdatomic.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>

void gw_notify_ready(const char *status)
{
    char msg[600];
    snprintf(msg, sizeof msg, "READY=1\nSTATUS=%s", status);
    (void)sd_notify(0, msg);
}

void gw_notify_reloading(void)
{
    (void)sd_notify(0, "RELOADING=1\nSTATUS=reloading");
}

void gw_notify_stopping(void)
{
    static atomic_flag sent = ATOMIC_FLAG_INIT;
    if (atomic_flag_test_and_set(&sent)) return;
    (void)sd_notify(0, "STOPPING=1\nSTATUS=draining: in-flight calls finish, then exit");
}
