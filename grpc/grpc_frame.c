#include "grpc_frame.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* First allocation for a message body; doubled as bytes arrive, never past
 * the declared length. */
#define DEFRAMER_FIRST_CHUNK 16384u

static const uint8_t empty_message[1];

/* ---- deframer ----------------------------------------------------------- */

void grpc_deframer_refund(size_t *budget, size_t charged)
{
    if (budget != NULL) *budget += charged;
}

void grpc_deframer_init(grpc_deframer *d, uint32_t max_message, size_t *budget)
{
    memset(d, 0, sizeof *d);
    d->max_message = max_message;
    d->budget = budget;
    d->err = GW_STATUS_OK;
}

static void release_buffer(grpc_deframer *d)
{
    free(d->buf);
    grpc_deframer_refund(d->budget, d->cap);
    d->buf = NULL;
    d->cap = 0;
}

static void next_message(grpc_deframer *d)
{
    release_buffer(d);
    d->have = 0;
    d->hdr_have = 0;
    d->msg_len = 0;
    d->ready = false;
}

void grpc_deframer_free(grpc_deframer *d)
{
    release_buffer(d);
    d->have = 0;
    d->hdr_have = 0;
    d->ready = false;
}

static enum grpc_deframe_result fail(grpc_deframer *d, enum gw_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum grpc_deframe_result fail(grpc_deframer *d, enum gw_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->errmsg, sizeof d->errmsg, fmt, ap);
    va_end(ap);
    d->err = st;
    release_buffer(d);
    return GRPC_DEFRAME_ERROR;
}

/* Make room for `need` bytes (need <= msg_len <= max_message). */
static int grow(grpc_deframer *d, size_t need)
{
    if (need <= d->cap) return 0;
    size_t ncap = d->cap != 0 ? d->cap : DEFRAMER_FIRST_CHUNK;
    while (ncap < need) ncap *= 2;  /* need <= 64 MiB: cannot overflow */
    if (ncap > d->msg_len) ncap = d->msg_len;
    size_t extra = ncap - d->cap;
    if (d->budget != NULL && *d->budget < extra) return -1;
    uint8_t *nb = realloc(d->buf, ncap);
    if (nb == NULL) return -1;
    if (d->budget != NULL) *d->budget -= extra;
    d->buf = nb;
    d->cap = ncap;
    return 0;
}

enum grpc_deframe_result grpc_deframer_feed(grpc_deframer *d, const uint8_t *in, size_t len,
                                        size_t *consumed, const uint8_t **msg,
                                        size_t *msg_len)
{
    *consumed = 0;
    *msg = NULL;
    *msg_len = 0;
    if (d->err != GW_STATUS_OK) return GRPC_DEFRAME_ERROR;
    if (d->ready) next_message(d);

    size_t off = 0;
    if (d->hdr_have < GRPC_PREFIX_LEN) {
        size_t n = GRPC_PREFIX_LEN - d->hdr_have;
        if (n > len) n = len;
        if (n > 0) memcpy(d->hdr + d->hdr_have, in, n);
        d->hdr_have = (uint8_t)(d->hdr_have + n);
        off = n;
        *consumed = off;
        if (d->hdr_have < GRPC_PREFIX_LEN) return GRPC_DEFRAME_MORE;

        uint8_t flag = d->hdr[0];
        uint32_t mlen = (uint32_t)d->hdr[1] << 24 | (uint32_t)d->hdr[2] << 16 |
                        (uint32_t)d->hdr[3] << 8 | (uint32_t)d->hdr[4];
        /* Compressed-Flag 1 means the message is compressed with the
         * grpc-encoding of the call; we accept only "identity", so this is
         * "compressed by an algorithm the server does not support", which
         * compression.md answers with UNIMPLEMENTED (+ grpc-accept-encoding,
         * added by the transport). Any other flag value is a broken frame. */
        d->compressed = flag == 1 && d->allow_compressed;
        if (flag == 1 && !d->allow_compressed)
            return fail(d, GW_STATUS_UNIMPLEMENTED,
                        "compressed messages are not supported (grpc-accept-encoding: identity)");
        if (flag > 1)
            return fail(d, GW_STATUS_INTERNAL, "invalid gRPC message flags 0x%02x", flag);
        /* Checked before anything is allocated. */
        if (mlen > d->max_message)
            return fail(d, GW_STATUS_RESOURCE_EXHAUSTED,
                        "received message larger than max (%u vs. %u)", mlen, d->max_message);
        d->msg_len = mlen;
        d->have = 0;
    }

    size_t want = d->msg_len - d->have;
    size_t n = len - off;
    if (n > want) n = want;
    if (n > 0) {
        if (grow(d, d->have + n) != 0)
            return fail(d, GW_STATUS_RESOURCE_EXHAUSTED,
                        "too much buffered request data on this connection");
        memcpy(d->buf + d->have, in + off, n);
        d->have += n;
        off += n;
    }
    *consumed = off;
    if (d->have < d->msg_len) return GRPC_DEFRAME_MORE;
    d->ready = true;
    *msg = d->buf != NULL ? d->buf : empty_message;
    *msg_len = d->msg_len;
    return GRPC_DEFRAME_MESSAGE;
}

uint8_t *grpc_deframer_take(grpc_deframer *d, size_t *charged)
{
    *charged = 0;
    if (!d->ready) return NULL;
    uint8_t *p = d->buf;
    *charged = d->cap;
    d->buf = NULL;
    d->cap = 0;
    next_message(d);
    return p;
}

enum gw_status grpc_deframer_finish(grpc_deframer *d)
{
    if (d->err != GW_STATUS_OK) return d->err;
    if (grpc_deframer_idle(d)) return GW_STATUS_OK;
    if (d->hdr_have < GRPC_PREFIX_LEN)
        (void)fail(d, GW_STATUS_INTERNAL, "truncated message prefix at end of stream (%u of 5 bytes)",
                   (unsigned)d->hdr_have);
    else
        (void)fail(d, GW_STATUS_INTERNAL, "truncated message at end of stream (%zu of %u bytes)",
                   d->have, d->msg_len);
    return d->err;
}

bool grpc_deframer_idle(const grpc_deframer *d)
{
    return d->ready || d->hdr_have == 0;
}

/* ---- framing ------------------------------------------------------------ */

int grpc_frame_prefix(size_t len, uint8_t out[GRPC_PREFIX_LEN])
{
    TSR_ENSURE(len <= UINT32_MAX, TSR_E_LIMIT, "response message of %zu bytes too large", len);
    out[0] = 0;
    out[1] = (uint8_t)(len >> 24);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 8);
    out[4] = (uint8_t)len;
    return 0;
}

/* ---- headers ------------------------------------------------------------ */

int grpc_timeout_parse(const char *v, size_t len, int64_t *ms)
{
    /* TimeoutValue = 1*8 DIGIT, TimeoutUnit = H / M / S / m / u / n */
    TSR_ENSURE(len >= 2 && len <= 9, TSR_E_INPUT, "grpc-timeout must be 1-8 digits and a unit");
    int64_t value = 0;
    for (size_t i = 0; i + 1 < len; i++) {
        TSR_ENSURE(v[i] >= '0' && v[i] <= '9', TSR_E_INPUT, "grpc-timeout: not a digit");
        value = value * 10 + (v[i] - '0');
    }
    switch (v[len - 1]) {
    case 'H': *ms = value * 3600000; break;
    case 'M': *ms = value * 60000; break;
    case 'S': *ms = value * 1000; break;
    case 'm': *ms = value; break;
    case 'u': *ms = (value + 999) / 1000; break;
    case 'n': *ms = (value + 999999) / 1000000; break;
    default: return TSR_FAIL(TSR_E_INPUT, "grpc-timeout: unknown unit");
    }
    return 0;
}

bool grpc_content_type_ok(const char *v, size_t len)
{
    static const char base[] = "application/grpc";
    const size_t blen = sizeof base - 1;
    if (len < blen || memcmp(v, base, blen) != 0) return false;
    for (size_t i = blen; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c < 0x20 || c > 0x7e) return false;
    }
    if (len == blen) return true;
    if (v[blen] == ';') return true;
    return v[blen] == '+' && len > blen + 1;
}

static const char hexdig[] = "0123456789ABCDEF";

size_t grpc_percent_encode(const char *in, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    if (cap == 0) return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c >= 0x20 && c <= 0x7e && c != '%') {
            if (o + 1 >= cap) break;
            out[o++] = (char)c;
        } else {
            if (o + 3 >= cap) break;
            out[o++] = '%';
            out[o++] = hexdig[c >> 4];
            out[o++] = hexdig[c & 15];
        }
    }
    out[o] = '\0';
    return o;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

size_t grpc_percent_decode(const char *in, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    if (cap == 0) return 0;
    for (size_t i = 0; i < len && o + 1 < cap; i++) {
        if (in[i] == '%' && len - i >= 3) {
            int hi = hexval(in[i + 1]), lo = hexval(in[i + 2]);
            if (hi >= 0 && lo >= 0) {
                out[o++] = (char)(hi << 4 | lo);
                i += 2;
                continue;
            }
        }
        out[o++] = in[i];
    }
    out[o] = '\0';
    return o;
}

static const char *const status_names[] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

static const char *const status_codes[] = {"0", "1", "2",  "3",  "4",  "5",  "6",  "7", "8",
                                           "9", "10", "11", "12", "13", "14", "15", "16"};

const char *grpc_status_name(int status)
{
    if (status < 0 || (size_t)status >= sizeof status_names / sizeof status_names[0])
        return "UNKNOWN";
    return status_names[status];
}

const char *grpc_status_code_text(int status)
{
    if (status < 0 || (size_t)status >= sizeof status_codes / sizeof status_codes[0])
        return "2";
    return status_codes[status];
}
