/* gRPC wire pieces of grpc/grpc_frame.h on untrusted bytes: the length-prefixed
 * message deframer fed in chunk sizes drawn from the input (as DATA frames
 * split a stream arbitrarily), the grpc-timeout header and grpc-message
 * percent-decoding.
 *
 * Input: [max selector][budget selector][chunking seed][take mask] stream...
 * Invariants: whatever the chunking, the deframer yields exactly the messages
 * a one-shot reference parse finds, never one over the maximum, and the
 * connection budget comes back whole once everything is freed; grpc-timeout
 * agrees with a reference; percent-decoding inverts percent-encoding. */
#include <string.h>

#include "fuzz/fuzz.h"
#include "grpc_frame.h"

static const uint32_t MAX_MESSAGE[] = {0, 1, 5, 100, 16384, 16385, 40000, 1u << 20};
static const size_t BUDGET[] = {0, 10, 16384, 20000, 65536, 1u << 20, 4u << 20, 64u << 20};

/* The reference: message i of the stream, or why the stream is broken. */
enum ref_end { REF_CLEAN, REF_TRUNCATED, REF_BAD_FLAG, REF_COMPRESSED, REF_TOO_BIG };

typedef struct ref_msg {
    size_t off, len;
} ref_msg;

static size_t reference(const uint8_t *s, size_t len, uint32_t max, ref_msg *msgs, size_t cap,
                        enum ref_end *end)
{
    size_t i = 0, n = 0;
    for (;;) {
        if (i == len) {
            *end = REF_CLEAN;
            return n;
        }
        if (len - i < GRPC_PREFIX_LEN) {
            *end = REF_TRUNCATED;
            return n;
        }
        uint32_t mlen = (uint32_t)s[i + 1] << 24 | (uint32_t)s[i + 2] << 16 |
                        (uint32_t)s[i + 3] << 8 | s[i + 4];
        if (s[i] == 1) {
            *end = REF_COMPRESSED;
            return n;
        }
        if (s[i] > 1) {
            *end = REF_BAD_FLAG;
            return n;
        }
        if (mlen > max) {
            *end = REF_TOO_BIG;
            return n;
        }
        i += GRPC_PREFIX_LEN;
        if (len - i < mlen) {
            *end = REF_TRUNCATED;
            return n;
        }
        FUZZ_CHECK(n < cap);
        msgs[n].off = i;
        msgs[n].len = mlen;
        n++;
        i += mlen;
    }
}

static uint32_t next_rand(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

static void deframe(fuzz_in hdr, fuzz_in stream)
{
    uint32_t max = MAX_MESSAGE[fuzz_u8(&hdr) & 7];
    uint8_t bsel = fuzz_u8(&hdr);
    uint32_t seed = fuzz_u8(&hdr) * 2654435761u + 1;
    uint8_t take_mask = fuzz_u8(&hdr);

    size_t budget_start = BUDGET[bsel & 7];
    size_t budget = budget_start;
    size_t *budget_p = (bsel & 8) ? &budget : NULL;

    size_t ref_cap = stream.len / GRPC_PREFIX_LEN + 1;
    ref_msg *ref = malloc(ref_cap * sizeof *ref);
    FUZZ_CHECK(ref != NULL);
    enum ref_end end;
    size_t n_ref = reference(stream.p, stream.len, max, ref, ref_cap, &end);

    grpc_deframer d;
    grpc_deframer_init(&d, max, budget_p);
    size_t got = 0, off = 0;
    bool error = false;
    uint8_t *taken[4] = {NULL, NULL, NULL, NULL};
    size_t taken_charge[4] = {0, 0, 0, 0};
    while (off < stream.len && !error) {
        size_t chunk = next_rand(&seed) % 64;
        if (chunk % 8 == 7) chunk = next_rand(&seed) % 70000;  /* now and then a big one */
        if (chunk > stream.len - off) chunk = stream.len - off;
        size_t coff = 0;
        /* As on_data_chunk does: feed until the chunk is used up. */
        do {
            size_t used = 0, mlen = 0;
            const uint8_t *msg = NULL;
            enum grpc_deframe_result r =
                grpc_deframer_feed(&d, stream.p + off + coff, chunk - coff, &used, &msg, &mlen);
            FUZZ_CHECK(used <= chunk - coff);
            coff += used;
            if (budget_p != NULL) FUZZ_CHECK(budget <= budget_start);
            if (r == GRPC_DEFRAME_MORE) {
                FUZZ_CHECK(coff == chunk);
                break;
            }
            if (r == GRPC_DEFRAME_ERROR) {
                FUZZ_CHECK(d.err != GW_STATUS_OK && d.errmsg[0] != '\0');
                error = true;
                break;
            }
            FUZZ_CHECK(msg != NULL && mlen <= max);
            FUZZ_CHECK(got < n_ref && ref[got].len == mlen &&
                       memcmp(stream.p + ref[got].off, msg, mlen) == 0);
            if (take_mask & (1u << (got % 8))) {
                /* As a unary call does: the message leaves the deframer. */
                size_t slot = got % 4;
                free(taken[slot]);
                grpc_deframer_refund(budget_p, taken_charge[slot]);
                taken[slot] = grpc_deframer_take(&d, &taken_charge[slot]);
                FUZZ_CHECK(taken[slot] != NULL || mlen == 0);
                if (taken[slot] != NULL) FUZZ_CHECK(memcmp(taken[slot], msg, mlen) == 0);
            }
            got++;
        } while (coff < chunk);
        off += chunk;
    }
    if (!error) {
        enum gw_status st = grpc_deframer_finish(&d);
        FUZZ_CHECK(got == n_ref);
        FUZZ_CHECK((st == GW_STATUS_OK) == (end == REF_CLEAN));
    } else {
        /* Only the reference's own reasons, or the connection budget. */
        FUZZ_CHECK(got <= n_ref);
        switch (d.err) {
        case GW_STATUS_UNIMPLEMENTED: FUZZ_CHECK(got == n_ref && end == REF_COMPRESSED); break;
        case GW_STATUS_INTERNAL: FUZZ_CHECK(got == n_ref && end == REF_BAD_FLAG); break;
        case GW_STATUS_RESOURCE_EXHAUSTED:
            FUZZ_CHECK((got == n_ref && end == REF_TOO_BIG) || budget_p != NULL);
            break;
        default: FUZZ_CHECK(0);
        }
        FUZZ_CHECK(grpc_deframer_finish(&d) == d.err);  /* sticky */
    }
    grpc_deframer_free(&d);
    for (size_t i = 0; i < 4; i++) {
        free(taken[i]);
        grpc_deframer_refund(budget_p, taken_charge[i]);
    }
    if (budget_p != NULL) FUZZ_CHECK(budget == budget_start);
    free(ref);
}

static void timeout(fuzz_in in)
{
    int64_t ms = -1;
    int rc = grpc_timeout_parse((const char *)in.p, in.len, &ms);
    /* Reference: 1..8 digits, one unit. */
    bool ok = in.len >= 2 && in.len <= 9;
    int64_t v = 0;
    for (size_t i = 0; ok && i + 1 < in.len; i++) {
        ok = in.p[i] >= '0' && in.p[i] <= '9';
        v = v * 10 + (in.p[i] - '0');
    }
    int64_t want = -1;
    if (ok) {
        switch (in.p[in.len - 1]) {
        case 'H': want = v * 3600 * 1000; break;
        case 'M': want = v * 60 * 1000; break;
        case 'S': want = v * 1000; break;
        case 'm': want = v; break;
        case 'u': want = v / 1000 + (v % 1000 != 0); break;
        case 'n': want = v / 1000000 + (v % 1000000 != 0); break;
        default: ok = false; break;
        }
    }
    FUZZ_CHECK((rc == 0) == ok);
    if (ok) FUZZ_CHECK(ms == want && ms >= 0);
}

static void percent(fuzz_in in)
{
    char dec[512], enc[3 * 256 + 1], back[512];
    size_t n = in.len > 256 ? 256 : in.len;
    size_t dlen = grpc_percent_decode((const char *)in.p, in.len, dec, sizeof dec);
    FUZZ_CHECK(dlen < sizeof dec && dec[dlen] == '\0');
    size_t elen = grpc_percent_encode((const char *)in.p, n, enc, sizeof enc);
    FUZZ_CHECK(elen < sizeof enc && enc[elen] == '\0' && strlen(enc) == elen);
    for (size_t i = 0; i < elen; i++)
        FUZZ_CHECK(enc[i] >= 0x20 && enc[i] <= 0x7e);
    size_t blen = grpc_percent_decode(enc, elen, back, sizeof back);
    FUZZ_CHECK(blen == n && memcmp(back, in.p, n) == 0);
    /* A small buffer truncates, never mid-escape, always terminated. */
    char small[8];
    size_t slen = grpc_percent_encode((const char *)in.p, n, small, sizeof small);
    FUZZ_CHECK(slen < sizeof small && small[slen] == '\0' && memcmp(small, enc, slen) == 0);
    (void)grpc_content_type_ok((const char *)in.p, in.len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = {data, size};
    fuzz_in hdr = fuzz_bytes(&in, 4);
    deframe(hdr, in);
    fuzz_in all = {data, size};
    timeout(all);
    percent(all);
    return 0;
}
