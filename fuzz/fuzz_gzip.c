/* gzip message decompression (gateway/gw_gzip.h): a caller's compressed
 * gRPC message, inflated under the message limit. Input: two bytes of
 * limit (0..65535), then the message.
 *
 * Invariants, against a one-shot zlib inflate into a buffer of limit + 1
 * bytes (the reference): OK exactly when the reference reaches the end of
 * one gzip member within the limit with no byte left over, with the same
 * bytes; RESOURCE_EXHAUSTED exactly when the reference fills more than the
 * limit before the member ends; INTERNAL otherwise; nothing is returned on
 * an error. */
#include <zlib.h>

#include "fuzz/fuzz.h"
#include "gw_gzip.h"

enum ref { REF_OK, REF_TOO_BIG, REF_BAD };

static enum ref reference(const uint8_t *in, size_t len, size_t max, uint8_t *out,
                          size_t *out_len)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    FUZZ_CHECK(inflateInit2(&zs, 16 + MAX_WBITS) == Z_OK);
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)(max + 1);
    int rc = inflate(&zs, Z_FINISH);
    *out_len = max + 1 - zs.avail_out;
    enum ref r;
    if (rc == Z_STREAM_END)
        r = *out_len > max ? REF_TOO_BIG : zs.avail_in != 0 ? REF_BAD : REF_OK;
    else if ((rc == Z_BUF_ERROR || rc == Z_OK) && zs.avail_out == 0)
        r = REF_TOO_BIG;   /* the limit was crossed before the member ended */
    else
        r = REF_BAD;
    inflateEnd(&zs);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = {data, size};
    size_t max = fuzz_u16(&in);
    uint8_t *ref_out = malloc(max + 1);
    FUZZ_CHECK(ref_out != NULL);
    size_t ref_len = 0;
    enum ref want = reference(in.p, in.len, max, ref_out, &ref_len);

    uint8_t *out = NULL;
    size_t out_len = 0;
    char why[160];
    enum gw_status st = gw_gzip_inflate(in.p, in.len, max, &out, &out_len, why, sizeof why);
    switch (want) {
    case REF_OK:
        FUZZ_CHECK(st == GW_STATUS_OK);
        FUZZ_CHECK(out_len == ref_len && out_len <= max);
        FUZZ_CHECK((out_len == 0) == (out == NULL));
        if (out_len > 0) FUZZ_CHECK(memcmp(out, ref_out, out_len) == 0);
        break;
    case REF_TOO_BIG:
        FUZZ_CHECK(st == GW_STATUS_RESOURCE_EXHAUSTED && out == NULL && out_len == 0);
        break;
    case REF_BAD:
        FUZZ_CHECK(st == GW_STATUS_INTERNAL && out == NULL && out_len == 0);
        break;
    }
    if (st != GW_STATUS_OK) FUZZ_CHECK(why[0] != '\0');
    free(out);
    free(ref_out);
    return 0;
}
