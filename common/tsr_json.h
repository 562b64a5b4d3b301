/* JSON output through jansson, for every writer in the tree: the audit log
 * (gateway/ops/gw_audit.c), the SPIFFE bundle (gateway/identity/gw_bundle.c)
 * and the CLI's --json (cli/cli_out.c). Strings from requests or peers are
 * any bytes (protobuf-c does not check proto3 strings): they enter JSON
 * through tsr_json_bytes, which keeps valid UTF-8 and turns every other byte
 * into U+FFFD, so each document is valid JSON (RFC 8259 §8.1). */
#ifndef TSR_JSON_H
#define TSR_JSON_H

#include <jansson.h>
#include <stddef.h>

#include "tsr_err.h"

/* A JSON string of at most `max` bytes of s[0..len) (never a sequence cut
 * in two); s NULL is "". NULL when out of memory. */
json_t *tsr_json_bytes(const char *s, size_t len, size_t max);
/* obj[key] = tsr_json_bytes(s, strlen(s), max) / a new reference v; the key
 * itself sanitized the same way. 0, or -1 (TSR_E_INTERNAL) when out of memory. */
TSR_WUR int tsr_json_set_str(json_t *obj, const char *key, const char *s, size_t max);
TSR_WUR int tsr_json_set_bytes(json_t *obj, const char *key, const char *s, size_t len,
                               size_t max);
TSR_WUR int tsr_json_set_new(json_t *obj, const char *key, json_t *v);
/* Append a new reference to an array; 0/-1 as above. */
TSR_WUR int tsr_json_append_new(json_t *arr, json_t *v);

/* Compact text (no spaces, insertion order, UTF-8 as is), malloc'd; *len
 * its length. NULL (TSR_E_INTERNAL) when out of memory. */
char *tsr_json_dump(const json_t *v, size_t *len);

#endif
