/* The docker driver's internal pieces (hidden inside docker.so). */
#ifndef DRV_DOCKER_H
#define DRV_DOCKER_H

#include <stddef.h>
#include <stdint.h>

#include "drv_abi.h"
#include "tsr_err.h"

/* A byte buffer that may hold key material: wiped before it is freed. */
typedef struct dk_buf {
    unsigned char *p;
    size_t len;
    size_t cap;
} dk_buf;

void dk_buf_free_secret(dk_buf *b);

/* The identity as an in-memory ustar archive, to be extracted at
 * /run/tessera:
 *   identity/             directory, 0700
 *   identity/cert.pem     0600
 *   identity/key.pem      0600
 *   identity/bundle.pem   0600
 * every entry owned by uid:gid (numeric; no user or group names). The buffer
 * is allocated once at its exact size (no realloc leaves key copies behind). */
TSR_WUR int dk_tar_identity(const tsr_driver_identity *ident, uint32_t uid, uint32_t gid,
                            int64_t mtime, dk_buf *out);

#endif
