/* gRPC-over-HTTP/2 wire pieces that need no I/O (PROTOCOL-HTTP2.md):
 * the length-prefixed message deframer, response framing, grpc-timeout,
 * grpc-message percent-encoding, content-type check and status names.
 * Everything here is pure and unit-tested (tests/unit/test_grpc_frame.c). */
#ifndef GRPC_FRAME_H
#define GRPC_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "grpc_status.h"
#include "tsr_err.h"

#define GRPC_PREFIX_LEN 5                     /* flag(1) + length(4, big-endian) */
#define GRPC_DEFAULT_MAX_MESSAGE (4u << 20)   /* docs/identity.md: 4 MiB */
#define GRPC_MAX_MESSAGE_LIMIT (64u << 20)    /* hard ceiling for any configuration */
#define GRPC_MESSAGE_MAX 1024                 /* grpc-message text we send */
/* Worst case of grpc_percent_encode() for a message of GRPC_MESSAGE_MAX. */
#define GRPC_MESSAGE_ENCODED_MAX (3 * GRPC_MESSAGE_MAX + 1)

/* ---- deframer ----------------------------------------------------------- */

/* Incremental parser of one stream's request bytes. It holds at most one
 * partial message; its buffer grows with the bytes that actually arrived
 * (never to the declared length up front), so a peer that announces 4 MiB and
 * sends 5 bytes costs us 5 bytes. The declared length is checked against the
 * maximum before any allocation. An optional shared `budget` (bytes a whole
 * connection may hold in partial messages) is charged for the buffer's
 * capacity and refunded when it is freed or taken. Errors are sticky. */
typedef struct grpc_deframer {
    uint32_t max_message;
    size_t *budget;            /* NULL = only max_message bounds the buffer */
    uint8_t hdr[GRPC_PREFIX_LEN];
    uint8_t hdr_have;
    uint32_t msg_len;          /* declared length, valid when hdr_have == 5 */
    uint8_t *buf;
    size_t cap, have;
    bool ready;                /* a complete message sits in buf (returned last call) */
    bool allow_compressed;     /* the call's grpc-encoding is gzip: flag 1 is accepted */
    bool compressed;           /* the message returned last has flag 1 (gw_gzip.h) */
    enum gw_status err;        /* OK until the first error */
    char errmsg[128];
} grpc_deframer;

enum grpc_deframe_result {
    GRPC_DEFRAME_MORE = 0,  /* all input consumed, no complete message yet */
    GRPC_DEFRAME_MESSAGE,   /* one complete message; more input may remain */
    GRPC_DEFRAME_ERROR,     /* d->err / d->errmsg say why; stream must be ended */
};

void grpc_deframer_init(grpc_deframer *d, uint32_t max_message, size_t *budget);
/* Release the buffer (and refund the budget). The deframer may be re-initialised. */
void grpc_deframer_free(grpc_deframer *d);

/* Consume bytes from `in` until one message is complete or the input ends.
 * *consumed is how many bytes were used; on GRPC_DEFRAME_MESSAGE, msg and msg_len
 * point at the message, valid until the next call (or grpc_deframer_take).
 * Call again with the rest of the input to get further messages. */
enum grpc_deframe_result grpc_deframer_feed(grpc_deframer *d, const uint8_t *in, size_t len,
                                        size_t *consumed, const uint8_t **msg,
                                        size_t *msg_len);

/* Take ownership of the message just returned by grpc_deframer_feed (malloc'd;
 * NULL for an empty message). *charged is what it still costs the budget:
 * give it back with grpc_deframer_refund() when the buffer is freed. */
uint8_t *grpc_deframer_take(grpc_deframer *d, size_t *charged);
void grpc_deframer_refund(size_t *budget, size_t charged);

/* End of the stream: OK if it ended between messages, else INTERNAL
 * ("truncated message") recorded in d->err/errmsg. */
enum gw_status grpc_deframer_finish(grpc_deframer *d);

/* True when nothing of a message is pending (between messages). */
bool grpc_deframer_idle(const grpc_deframer *d);

/* ---- framing ------------------------------------------------------------ */

/* The 5-byte prefix of an uncompressed message of `len` bytes;
 * TSR_E_LIMIT if len does not fit 32 bits. */
TSR_WUR int grpc_frame_prefix(size_t len, uint8_t out[GRPC_PREFIX_LEN]);

/* ---- headers ------------------------------------------------------------ */

/* grpc-timeout: 1..8 ASCII digits then one unit of H M S m u n. Converted to
 * milliseconds, rounding sub-millisecond values up (1n -> 1 ms, 0n -> 0).
 * Anything else (empty, 9+ digits, sign, spaces, no or bad unit, trailing
 * bytes, NUL) is TSR_E_INPUT. */
TSR_WUR int grpc_timeout_parse(const char *v, size_t len, int64_t *ms);

/* application/grpc, application/grpc+<subtype>, application/grpc;<params>. */
bool grpc_content_type_ok(const char *v, size_t len);

/* grpc-message encoding: bytes outside 0x20..0x7E and '%' become %XX
 * (uppercase hex). Returns the encoded length; the output is always
 * NUL-terminated and truncated (never mid-escape) if cap is too small. */
size_t grpc_percent_encode(const char *in, size_t len, char *out, size_t cap);
/* The reverse, lenient as the spec asks: a '%' not followed by two hex
 * digits is kept literally. Returns the decoded length (NUL-terminated). */
size_t grpc_percent_decode(const char *in, size_t len, char *out, size_t cap);

/* "OK", "CANCELLED", ... "UNAUTHENTICATED"; "UNKNOWN" for out-of-range codes. */
const char *grpc_status_name(int status);
/* The status as a decimal string ("0".."16"); out-of-range -> "2" (UNKNOWN). */
const char *grpc_status_code_text(int status);

#endif
