#include "gw_gzip.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Output grows from this (or 4x the input) by doubling, never past max + 1. */
#define GZ_FIRST 4096u

enum gw_status gw_gzip_inflate(const uint8_t *in, size_t len, size_t max, uint8_t **out,
                               size_t *out_len, char *why, size_t why_cap)
{
    *out = NULL;
    *out_len = 0;
    if (len > UINT32_MAX || max > UINT32_MAX - 1) {
        snprintf(why, why_cap, "gzip message too large");
        return GW_STATUS_RESOURCE_EXHAUSTED;
    }
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    /* 16 + MAX_WBITS: a gzip wrapper only (not zlib, not raw deflate). */
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
        snprintf(why, why_cap, "gzip: out of memory");
        return GW_STATUS_RESOURCE_EXHAUSTED;
    }
    enum gw_status st = GW_STATUS_INTERNAL;
    /* The limit is max decompressed bytes: room for max + 1 tells "more
     * than max" apart from "exactly max". */
    size_t limit = max + 1;
    size_t cap = len * 4 > GZ_FIRST ? len * 4 : GZ_FIRST;
    if (cap > limit) cap = limit;
    uint8_t *buf = malloc(cap);
    if (buf == NULL) {
        snprintf(why, why_cap, "gzip: out of memory");
        st = GW_STATUS_RESOURCE_EXHAUSTED;
        goto out;
    }
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)len;
    size_t have = 0;
    for (;;) {
        if (have == cap) {
            if (cap == limit) {
                snprintf(why, why_cap,
                         "received message larger than max after decompression (more than %zu "
                         "bytes)",
                         max);
                st = GW_STATUS_RESOURCE_EXHAUSTED;
                goto out;
            }
            size_t ncap = cap > limit / 2 ? limit : cap * 2;
            uint8_t *nb = realloc(buf, ncap);
            if (nb == NULL) {
                snprintf(why, why_cap, "gzip: out of memory");
                st = GW_STATUS_RESOURCE_EXHAUSTED;
                goto out;
            }
            buf = nb;
            cap = ncap;
        }
        zs.next_out = buf + have;
        zs.avail_out = (uInt)(cap - have);
        int rc = inflate(&zs, Z_NO_FLUSH);
        have = cap - zs.avail_out;
        if (rc == Z_STREAM_END) break;
        if (rc == Z_OK) continue;
        if (rc == Z_BUF_ERROR && zs.avail_out == 0) continue;   /* needs more room */
        snprintf(why, why_cap, "invalid gzip message: %s",
                 rc == Z_BUF_ERROR ? "truncated" : zs.msg != NULL ? zs.msg : "corrupt");
        goto out;
    }
    if (have > max) {
        snprintf(why, why_cap,
                 "received message larger than max after decompression (more than %zu bytes)",
                 max);
        st = GW_STATUS_RESOURCE_EXHAUSTED;
        goto out;
    }
    if (zs.avail_in != 0) {
        snprintf(why, why_cap, "invalid gzip message: %u bytes after the gzip member",
                 (unsigned)zs.avail_in);
        goto out;
    }
    if (have == 0) {
        free(buf);
        buf = NULL;
    }
    *out = buf;
    *out_len = have;
    buf = NULL;
    st = GW_STATUS_OK;
out:
    free(buf);
    inflateEnd(&zs);
    return st;
}
