/* A session's memory while its connection is idle (gw_h2_park).
 *
 * Two allocations nghttp2 makes when a session is created are as large as
 * everything else it keeps per connection together: its output frame buffer
 * (one frame of up to 16 KiB, NGHTTP2_FRAMEBUF_CHUNKLEN = 9 + 1 + 16384
 * bytes in 1.52) and its stream map (256 buckets of 16 bytes). Both are
 * placed on whole pages by this session's allocator, and an idle connection
 * (gw_h2_park) gives those pages back to the kernel with MADV_DONTNEED; the
 * next touch maps a zeroed page. That is exact, not a guess about nghttp2:
 *   - the map is released only when every byte of it is zero (no stream
 *     is open), so its contents do not change;
 *   - the frame buffer is released only when nghttp2 has nothing to send
 *     (nghttp2_session_want_write() is 0 and our last mem_send returned 0,
 *     i.e. every frame in it has been copied out): it then holds only bytes
 *     already sent, which nghttp2 overwrites before it reads them again.
 * Any other size or any allocation after the session is created goes to
 * malloc as before. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "gw_server_int.h"
#define GW_PAGE 4096u
#define GW_H2_FRAMEBUF (9u + 1u + 16384u)
#define GW_H2_MAP_BYTES 4096u

static void *h2_place(gw_conn *c, size_t size)
{
    if (c->h2_creating && (size == GW_H2_FRAMEBUF || size == GW_H2_MAP_BYTES)) {
        void *p = NULL;
        if (posix_memalign(&p, GW_PAGE, size) != 0) return NULL;
        if (size == GW_H2_FRAMEBUF && c->h2_framebuf == NULL) c->h2_framebuf = p;
        else if (size == GW_H2_MAP_BYTES && c->h2_map == NULL) c->h2_map = p;
        return p;
    }
    return malloc(size);
}

static void *h2_malloc(size_t size, void *user)
{
    return h2_place(user, size);
}

static void *h2_calloc(size_t n, size_t size, void *user)
{
    if (size != 0 && n > SIZE_MAX / size) return NULL;
    void *p = h2_place(user, n * size);
    if (p != NULL) memset(p, 0, n * size);
    return p;
}

static void *h2_realloc(void *ptr, size_t size, void *user)
{
    gw_conn *c = user;
    /* nghttp2 makes its buffers with realloc(NULL, n) (nghttp2_buf_reserve). */
    if (ptr == NULL) return h2_place(c, size);
    /* Never the placed buffers (nghttp2 does not resize them); if it ever
     * did, they simply stop being released. */
    if (ptr != NULL && ptr == c->h2_framebuf) c->h2_framebuf = NULL;
    if (ptr != NULL && ptr == c->h2_map) c->h2_map = NULL;
    return realloc(ptr, size);
}

static void h2_free(void *ptr, void *user)
{
    gw_conn *c = user;
    if (ptr != NULL && ptr == c->h2_framebuf) c->h2_framebuf = NULL;
    if (ptr != NULL && ptr == c->h2_map) c->h2_map = NULL;
    free(ptr);
}

static bool all_zero(const uint8_t *p, size_t n)
{
    static const uint8_t zero[GW_PAGE];
    for (size_t off = 0; off < n; off += GW_PAGE) {
        size_t k = n - off < GW_PAGE ? n - off : GW_PAGE;
        if (memcmp(p + off, zero, k) != 0) return false;
    }
    return true;
}

bool gw_h2_park(gw_conn *c)
{
    if (c->h2 == NULL || c->streams != NULL || nghttp2_session_want_write(c->h2)) return false;
    if (c->h2_framebuf != NULL)
        (void)madvise(c->h2_framebuf, GW_H2_FRAMEBUF / GW_PAGE * GW_PAGE, MADV_DONTNEED);
    if (c->h2_map != NULL && all_zero(c->h2_map, GW_H2_MAP_BYTES))
        (void)madvise(c->h2_map, GW_H2_MAP_BYTES, MADV_DONTNEED);
    return true;
}

nghttp2_mem gw_h2_mem(gw_conn *c)
{
    return (nghttp2_mem){.mem_user_data = c, .malloc = h2_malloc, .free = h2_free,
                         .calloc = h2_calloc, .realloc = h2_realloc};
}
