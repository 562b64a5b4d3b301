/* A growable byte buffer with a consumed prefix: bytes are appended at
 * `len`, taken from `off`. The one growable output buffer of the gateway's
 * connections (gateway/transport/gw_server.c) and the client's
 * (client/cl_grpc.c). Wire plaintext may be secret (a provider environment
 * on its way out), so memory the buffer leaves is wiped first. */
#ifndef TSR_BUF_H
#define TSR_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct tsr_buf {
    uint8_t *p;    /* NULL until the first append */
    size_t off;    /* bytes taken */
    size_t len;    /* bytes appended */
    size_t cap;
} tsr_buf;

/* Append n bytes. The taken prefix is dropped first (the pending bytes may
 * move); the capacity starts at `first` and doubles. -1 when out of memory
 * (nothing appended). */
int tsr_buf_append(tsr_buf *b, const void *data, size_t n, size_t first);
/* Bytes appended and not yet taken. */
size_t tsr_buf_pending(const tsr_buf *b);
/* Wipe and free; the buffer is empty (and reusable) afterwards. */
void tsr_buf_free(tsr_buf *b);

#endif
