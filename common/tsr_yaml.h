/* A small, strict YAML document reader for untrusted input (configuration
 * files, sandbox policies).
 *
 * tsr_yaml_parse() runs libyaml's event parser over {ptr, len} and builds a
 * tree of scalar / sequence / mapping nodes, each with its 1-based line and
 * column. It refuses, with TSR_E_INPUT and a message "<name>:<line>: reason"
 * (or "<name>: reason" when no line applies), everything a configuration
 * has no use for and an attacker might: anchors and aliases, tags other than
 * the standard yaml.org,2002 ones, more than one document, duplicate or
 * non-scalar mapping keys, NUL bytes (raw or escaped), invalid UTF-8, input,
 * nesting depth, node count or scalar size over the given limits.
 *
 * The typed accessors below record errors the same way, so a caller can
 * write `TSR_GUARD(tsr_yaml_get_int(map, "workers", 0, 64, &v))` and the
 * user sees "gateway.yaml:7: \"workers\" must be between 0 and 64".
 *
 * Nodes are owned by their document and live until tsr_yaml_free(). */
#ifndef TSR_YAML_H
#define TSR_YAML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tsr_err.h"

typedef struct tsr_yaml_limits {
    size_t max_input;   /* bytes of input */
    size_t max_depth;   /* nested sequences/mappings (the root one counts as 1);
                           at most TSR_YAML_MAX_DEPTH */
    size_t max_nodes;   /* scalars (keys included), sequences and mappings */
    size_t max_scalar;  /* bytes of one scalar, after unescaping */
    bool columns;       /* messages say "<name>:<line>:<column>: reason" */
} tsr_yaml_limits;

#define TSR_YAML_MAX_INPUT_CONFIG (1024u * 1024u)
#define TSR_YAML_MAX_DEPTH 32u
#define TSR_YAML_MAX_NODES 10000u
#define TSR_YAML_MAX_SCALAR (64u * 1024u)

/* The limits for a configuration file: 1 MiB, depth 32, 10,000 nodes, 64 KiB scalars. */
extern const tsr_yaml_limits tsr_yaml_limits_config;

enum tsr_yaml_kind { TSR_YAML_SCALAR = 1, TSR_YAML_SEQUENCE, TSR_YAML_MAPPING };

typedef struct tsr_yaml_doc tsr_yaml_doc;
typedef struct tsr_yaml_node tsr_yaml_node;

/* Parse one YAML document. `name` (a file path or a label like "policy") is
 * copied and prefixes every message. An input with no document at all
 * (empty, only comments or whitespace) parses successfully and has a NULL
 * root; callers decide whether that is acceptable. */
TSR_WUR int tsr_yaml_parse(const char *name, const void *data, size_t len,
                           const tsr_yaml_limits *limits, tsr_yaml_doc **out);
void tsr_yaml_free(tsr_yaml_doc *doc);

const tsr_yaml_node *tsr_yaml_root(const tsr_yaml_doc *doc); /* NULL: no document */
const char *tsr_yaml_doc_name(const tsr_yaml_doc *doc);

/* ---- structure -------------------------------------------------------- */
enum tsr_yaml_kind tsr_yaml_kind(const tsr_yaml_node *n);
int tsr_yaml_line(const tsr_yaml_node *n);    /* 1-based */
int tsr_yaml_column(const tsr_yaml_node *n);  /* 1-based */
/* Items of a sequence, pairs of a mapping; 0 for a scalar. */
size_t tsr_yaml_count(const tsr_yaml_node *n);
/* i < count; NULL when out of range or the wrong kind. */
const tsr_yaml_node *tsr_yaml_item(const tsr_yaml_node *seq, size_t i);
const tsr_yaml_node *tsr_yaml_pair_key(const tsr_yaml_node *map, size_t i);
const tsr_yaml_node *tsr_yaml_pair_value(const tsr_yaml_node *map, size_t i);
/* A scalar's text (NUL-terminated, never with an embedded NUL) and length;
 * NULL for a non-scalar. */
const char *tsr_yaml_scalar(const tsr_yaml_node *n, size_t *len);
/* 1 for a null scalar: untagged plain "", "~", "null", "Null", "NULL", or !!null. */
int tsr_yaml_is_null(const tsr_yaml_node *n);
/* 1 if the scalar was quoted or a block scalar, or tagged !!str: always a string. */
int tsr_yaml_is_quoted(const tsr_yaml_node *n);
/* The value for `key` in a mapping, NULL if absent (or `map` is not a mapping). */
const tsr_yaml_node *tsr_yaml_get(const tsr_yaml_node *map, const char *key);

/* Quote untrusted bytes for a message: "text" with \n, \t, \", \\ and
 * \xNN escapes for anything outside printable ASCII, cut at about 64 bytes
 * of input with "..." appended. Always NUL-terminates out (cap >= 8). */
void tsr_yaml_quote_bytes(const char *s, size_t len, char *out, size_t cap);

/* Record TSR_E_INPUT "<name>:<line of n>: <formatted reason>"; returns -1. */
int tsr_yaml_fail(const tsr_yaml_node *n, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Refuse any key of `map` not in allowed[0..n_allowed):
 * "<name>:<line>: unknown key "x" (expected one of: a, b, c)". */
TSR_WUR int tsr_yaml_check_keys(const tsr_yaml_node *map, const char *const *allowed,
                                size_t n_allowed);

/* ---- typed conversion of a node ----------------------------------------
 * `what` names the value in messages: "\"<what>\" must be a string". */
TSR_WUR int tsr_yaml_expect(const tsr_yaml_node *n, enum tsr_yaml_kind kind, const char *what);
/* Any non-null scalar; *s stays valid as long as the document. */
TSR_WUR int tsr_yaml_to_str(const tsr_yaml_node *n, const char *what, const char **s,
                            size_t *len);
/* Same, copied into out[cap]: longer than cap-1 bytes is an error. */
TSR_WUR int tsr_yaml_to_strbuf(const tsr_yaml_node *n, const char *what, char *out, size_t cap);
/* Plain `true` or `false` (or !!bool-tagged); nothing else (no yes/no/on/off). */
TSR_WUR int tsr_yaml_to_bool(const tsr_yaml_node *n, const char *what, bool *out);
/* Plain decimal integer -?[0-9]+ without leading zeros, min <= v <= max. */
TSR_WUR int tsr_yaml_to_int(const tsr_yaml_node *n, const char *what, int64_t min, int64_t max,
                            int64_t *out);
/* tsr_duration_parse() text ("90s", "1h30m"), seconds, min <= v <= max. */
TSR_WUR int tsr_yaml_to_duration(const tsr_yaml_node *n, const char *what, int64_t min,
                                 int64_t max, int64_t *out);

/* ---- optional keys of a mapping ---------------------------------------
 * Absent key: return 0 and leave *out unchanged. Present: convert as above
 * (with the key as `what`) or fail. */
TSR_WUR int tsr_yaml_get_strbuf(const tsr_yaml_node *map, const char *key, char *out, size_t cap);
TSR_WUR int tsr_yaml_get_bool(const tsr_yaml_node *map, const char *key, bool *out);
TSR_WUR int tsr_yaml_get_int(const tsr_yaml_node *map, const char *key, int64_t min,
                             int64_t max, int64_t *out);
TSR_WUR int tsr_yaml_get_duration(const tsr_yaml_node *map, const char *key, int64_t min,
                                  int64_t max, int64_t *out);
/* A nested mapping or sequence: *out = NULL when the key is absent or its
 * value is null (`key:` with nothing, e.g. every entry commented out). */
TSR_WUR int tsr_yaml_get_map(const tsr_yaml_node *map, const char *key,
                             const tsr_yaml_node **out);
TSR_WUR int tsr_yaml_get_seq(const tsr_yaml_node *map, const char *key,
                             const tsr_yaml_node **out);

#endif
