/* The vm driver's pure parts, exposed for its unit test
 * (tests/unit/test_drv_vm.c includes drv_vm.c); hidden inside vm.so. */
#ifndef DRV_VM_H
#define DRV_VM_H

#include <stdint.h>

#include "drv_util.h"

#define DRV_VM_PATH_MAX 1024
/* Where the guest reaches the gateway with `network: gateway`: addresses of
 * QEMU's user-mode network that only the guestfwd relay answers, the i-th
 * gateway address at 10.0.2.(100+i). */
#define DRV_VM_GUEST_GATEWAY_NET "10.0.2."
#define DRV_VM_GUEST_GATEWAY_HOST 100u
/* QEMU's alias for the host's loopback with `network: user`. */
#define DRV_VM_HOST_ALIAS_IP "10.0.2.2"

enum drv_vm_network {
    DRV_VM_NET_GATEWAY = 0, /* restrict=on, one forward to the gateway (the default) */
    DRV_VM_NET_USER,        /* plain user-mode networking: all the host reaches */
    DRV_VM_NET_NONE,
};

typedef struct drv_vm_config {
    char qemu[DRV_VM_PATH_MAX];   /* absolute path of the QEMU binary */
    char kernel[DRV_VM_PATH_MAX]; /* absolute path */
    char initrd[DRV_VM_PATH_MAX]; /* "" = none */
    char relay[DRV_VM_PATH_MAX];  /* tessera-vm-relay, for DRV_VM_NET_GATEWAY */
    char append[1024];            /* extra kernel command line, "" = none */
    char supervisor_args[1024];   /* extra supervisor flags for the guest, "" = none (what
                                     followed "--" in the option: default_command) */
    char default_command[1024];   /* the workload of a sandbox without its own, split on
                                     spaces; "" = none */
    char host_gateway[DRV_MAX_ADDR + 1];  /* the gateway as the host reaches it */
    char guest_gateway[DRV_MAX_ADDR + 1]; /* ... and as the guest dials it */
    char td[DRV_MAX_TD + 1];
    char accel[8];                /* "kvm" or "tcg" (auto is resolved at init) */
    enum drv_vm_network network;
    int qemu_sandbox;             /* 1: -sandbox on,... (QEMU's seccomp filter) */
    uint64_t memory_mb;
    uint64_t cpus;
} drv_vm_config;

/* A guest image named in the `images` option. */
#define DRV_VM_MAX_IMAGES 16
typedef struct drv_vm_image {
    char name[65];                /* [a-z0-9][a-z0-9._-]{0,63} */
    char kernel[DRV_VM_PATH_MAX];
    char initrd[DRV_VM_PATH_MAX]; /* "" = none */
} drv_vm_image;

/* What one boot runs: its guest image (NULL: cfg's kernel and initrd) and
 * the file, relative to the sandbox directory, holding the workload's argv
 * for fw_cfg opt/tessera/command (NULL: no workload). */
typedef struct drv_vm_boot {
    const drv_vm_image *image;
    const char *command_file;
} drv_vm_boot;

/* The argv of one sandbox's QEMU. Pure (no I/O). QEMU runs with the
 * sandbox directory as its working directory, so every per-sandbox file is
 * named relative to it. The identity reaches the guest as fw_cfg files
 * (opt/tessera/cert.pem, key.pem, bundle.pem) that QEMU reads from
 * identity/; the kernel command line never carries identity material or
 * its paths. boot may be NULL. */
TSR_WUR int drv_vm_build_argv(const drv_vm_config *cfg, const char *sandbox_id,
                              const drv_vm_boot *boot, drv_argv *out);

/* The workload's argv as the guest's tessera-init reads fw_cfg
 * opt/tessera/command: one line per argument, each byte outside
 * [A-Za-z0-9_./-], and a '-' that would start the line, written as a
 * backslash and three octal digits (the init decodes a line with printf; no
 * shell splits or evaluates it). *out is malloc'd. Pure. */
TSR_WUR int drv_vm_encode_command(const char *const *argv, size_t n, char **out, size_t *len);

/* The `images` option: space-separated NAME:KERNEL[:INITRD] entries, at
 * most DRV_VM_MAX_IMAGES, names unique; the paths as given (the driver
 * checks the files). Pure. */
TSR_WUR int drv_vm_parse_images(const char *text, drv_vm_image *out, size_t *n);

/* 1 when the text of /proc/cpuinfo has a "flags" line with the word vmx or
 * svm (hardware virtualisation that KVM can use). Pure. */
int drv_vm_cpuinfo_has_virt(const char *text, size_t len);

/* The addresses the guest dials for the gateway addresses `host_gateway`
 * (a drv_addr_list_valid list, as the host reaches them), in the same order:
 * with `gateway` networking the i-th is 10.0.2.(100+i):<its port> (each a
 * forward of its own to the relay); with `user` networking the same
 * address, a loopback host replaced by 10.0.2.2. Pure. */
TSR_WUR int drv_vm_guest_gateway(enum drv_vm_network net, const char *host_gateway, char *out,
                                 size_t cap);

#endif
