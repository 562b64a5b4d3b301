/* UTF-8 validation (RFC 3629) for strings that leave the gateway: proto3
 * `string` fields must be valid UTF-8 (stock gRPC clients refuse to decode a
 * response that is not), and so must every JSON audit line. protobuf-c does
 * not check request strings, so anything stored and served again is
 * checked here first. */
#ifndef TSR_UTF8_H
#define TSR_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Bytes of the valid UTF-8 sequence at s[0..n) (1..4), or 0 if s does not
 * start one: an overlong form, a surrogate, a code point past U+10FFFF, a
 * stray continuation byte or a truncated sequence. n must be > 0. */
size_t tsr_utf8_seq_len(const unsigned char *s, size_t n);

/* True when all len bytes of s are valid UTF-8 (NUL bytes count as valid:
 * callers that refuse them check separately). */
bool tsr_utf8_valid(const char *s, size_t len);

/* Copy at most `max` bytes of s[0..len) into out as valid UTF-8: a valid
 * sequence is kept whole (never split at `max`), any other byte becomes
 * U+FFFD (3 bytes). out must hold 3 * min(len, max) bytes; returns the bytes
 * written (out is not NUL-terminated). */
size_t tsr_utf8_sanitize(const char *s, size_t len, size_t max, char *out);

#endif
