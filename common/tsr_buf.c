#include "tsr_buf.h"

#include <stdlib.h>
#include <string.h>

int tsr_buf_append(tsr_buf *b, const void *data, size_t n, size_t first)
{
    if (b->off > 0 && b->off == b->len) b->off = b->len = 0;
    if (n > SIZE_MAX / 2 - b->len) return -1;
    if (b->len + n > b->cap && b->off > 0) {
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
    if (b->len + n > b->cap) {
        size_t ncap = b->cap != 0 ? b->cap : (first != 0 ? first : 1);
        while (ncap < b->len + n) ncap *= 2;
        uint8_t *nb = malloc(ncap);
        if (nb == NULL) return -1;
        if (b->p != NULL) {
            memcpy(nb, b->p, b->len);
            explicit_bzero(b->p, b->cap);
            free(b->p);
        }
        b->p = nb;
        b->cap = ncap;
    }
    if (n > 0) memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

size_t tsr_buf_pending(const tsr_buf *b)
{
    return b->len - b->off;
}

void tsr_buf_free(tsr_buf *b)
{
    if (b->p != NULL) {
        explicit_bzero(b->p, b->cap);
        free(b->p);
    }
    b->p = NULL;
    b->off = b->len = b->cap = 0;
}
