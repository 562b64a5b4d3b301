/* The vm driver's argv builder, exposed for its unit test
 * (tests/unit/test_drv_vm.c includes drv_vm.c); hidden inside vm.so. */
#ifndef DRV_VM_H
#define DRV_VM_H

#include <stdint.h>

#include "drv_util.h"

#define DRV_VM_PATH_MAX 1024

typedef struct drv_vm_config {
    char qemu[DRV_VM_PATH_MAX];   /* absolute path of the QEMU binary */
    char kernel[DRV_VM_PATH_MAX]; /* absolute path */
    char initrd[DRV_VM_PATH_MAX]; /* "" = none */
    char append[1024];            /* extra kernel command line, "" = none */
    char gateway[DRV_MAX_ADDR + 1];
    char td[DRV_MAX_TD + 1];
    char accel[64];
    int network_user;             /* 1: -nic user (the guest reaches the host at 10.0.2.2) */
    int qemu_sandbox;             /* 1: -sandbox on,... (QEMU's seccomp filter) */
    uint64_t memory_mb;
    uint64_t cpus;
} drv_vm_config;

/* The argv of one sandbox's QEMU. Pure (no I/O). QEMU runs with the
 * sandbox directory as its working directory, so every per-sandbox file is
 * named relative to it. The identity reaches the guest as fw_cfg files
 * (opt/tessera/cert.pem, key.pem, bundle.pem) that QEMU reads from
 * identity/; the kernel command line never carries identity material or
 * its paths. */
TSR_WUR int drv_vm_build_argv(const drv_vm_config *cfg, const char *sandbox_id, drv_argv *out);

#endif
