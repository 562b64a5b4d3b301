/* gzip message decompression (grpc-encoding: gzip, grpc/doc/compression.md)
 * with the message size limit applied to the decompressed bytes while they
 * are produced: a small message that would inflate past the limit is
 * refused as soon as the limit is crossed, never after inflating it. */
#ifndef GW_GZIP_H
#define GW_GZIP_H

#include <stddef.h>
#include <stdint.h>

#include "gw_rpc.h"

/* Inflate one gzip member (RFC 1952) of `len` bytes into a fresh buffer of
 * at most `max` bytes (*out malloc'd, NULL for an empty message). Returns
 * GW_STATUS_OK, RESOURCE_EXHAUSTED (more than max bytes), INTERNAL (not
 * gzip, corrupt, truncated, or bytes after the member) with the reason in
 * why; nothing is allocated then. */
enum gw_status gw_gzip_inflate(const uint8_t *in, size_t len, size_t max, uint8_t **out,
                               size_t *out_len, char *why, size_t why_cap);

#endif
