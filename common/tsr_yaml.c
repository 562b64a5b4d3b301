#include "tsr_yaml.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "tsr_time.h"

const tsr_yaml_limits tsr_yaml_limits_config = {
    .max_input = TSR_YAML_MAX_INPUT_CONFIG,
    .max_depth = TSR_YAML_MAX_DEPTH,
    .max_nodes = TSR_YAML_MAX_NODES,
    .max_scalar = TSR_YAML_MAX_SCALAR,
};

/* The only tags a document may carry (after %TAG resolution). */
enum scalar_tag { TAG_NONE = 0, TAG_STR, TAG_INT, TAG_BOOL, TAG_NULL, TAG_FLOAT };

#define YAML_TAG_PREFIX "tag:yaml.org,2002:"

struct tsr_yaml_node {
    enum tsr_yaml_kind kind;
    int line, column;
    size_t seq;                      /* creation order = document order */
    const tsr_yaml_doc *doc;
    /* scalar */
    char *value;
    size_t len;
    bool quoted;
    enum scalar_tag tag;
    /* sequence: items; mapping: key, value, key, value, ... */
    tsr_yaml_node **items;
    size_t n_items, cap_items;
};

struct tsr_yaml_doc {
    char *name;
    size_t last_line;                /* lines in the input: messages never point past it */
    tsr_yaml_node *root;
    tsr_yaml_node **all;             /* every node, for freeing and the node cap */
    size_t n_all, cap_all;
    bool columns;                    /* messages carry the column (tsr_yaml_limits) */
    size_t last_col;                 /* the column just past the last line's end */
};

/* ---- messages ---------------------------------------------------------- */

void tsr_yaml_quote_bytes(const char *s, size_t len, char *out, size_t cap)
{
    const size_t max_in = 64;
    size_t o = 0;
    if (cap < 8) {
        if (cap > 0) out[0] = '\0';
        return;
    }
    out[o++] = '"';
    size_t i;
    for (i = 0; i < len && i < max_in; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[5];
        if (c == '"' || c == '\\') {
            esc[0] = '\\'; esc[1] = (char)c; esc[2] = '\0';
        } else if (c == '\n') {
            memcpy(esc, "\\n", 3);
        } else if (c == '\t') {
            memcpy(esc, "\\t", 3);
        } else if (c < 0x20 || c >= 0x7f) {
            snprintf(esc, sizeof esc, "\\x%02x", c);
        } else {
            esc[0] = (char)c; esc[1] = '\0';
        }
        size_t el = strlen(esc);
        if (o + el + 5 > cap) break; /* room for ...", NUL */
        memcpy(out + o, esc, el);
        o += el;
    }
    if (i < len) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o++] = '"';
    out[o] = '\0';
}

/* "<name>:<line>:<column>: reason" when the document's limits ask for
 * columns and one is known, else "<name>:<line>: reason" or "<name>: reason". */
__attribute__((format(printf, 5, 0)))
static int fail_line(const char *name, size_t line, size_t col, bool columns, const char *fmt,
                     va_list ap)
{
    char reason[400];
    vsnprintf(reason, sizeof reason, fmt, ap);
    if (line == 0) return TSR_FAIL(TSR_E_INPUT, "%s: %s", name, reason);
    if (columns && col > 0) return TSR_FAIL(TSR_E_INPUT, "%s:%zu:%zu: %s", name, line, col, reason);
    return TSR_FAIL(TSR_E_INPUT, "%s:%zu: %s", name, line, reason);
}

__attribute__((format(printf, 4, 5))) static int doc_fail(const tsr_yaml_doc *d, size_t line,
                                                          size_t col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (line > d->last_line) {   /* libyaml's end of input: the last line's end */
        line = d->last_line;
        col = d->last_col;
    }
    int rc = fail_line(d->name, line, col, d->columns, fmt, ap);
    va_end(ap);
    return rc;
}

int tsr_yaml_fail(const tsr_yaml_node *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = fail_line(n != NULL ? n->doc->name : "yaml", n != NULL ? (size_t)n->line : 0,
                       n != NULL ? (size_t)n->column : 0, n != NULL && n->doc->columns, fmt, ap);
    va_end(ap);
    return rc;
}

/* ---- the tree ----------------------------------------------------------- */

static void node_free(tsr_yaml_node *n)
{
    if (n == NULL) return;
    free(n->value);
    free(n->items);
    free(n);
}

void tsr_yaml_free(tsr_yaml_doc *doc)
{
    if (doc == NULL) return;
    for (size_t i = 0; i < doc->n_all; i++) node_free(doc->all[i]);
    free(doc->all);
    free(doc->name);
    free(doc);
}

static int new_node(tsr_yaml_doc *d, const tsr_yaml_limits *lim, enum tsr_yaml_kind kind,
                    const yaml_mark_t *mark, tsr_yaml_node **out)
{
    size_t line = mark->line + 1;
    /* libyaml puts the end of an unterminated last line one line further. */
    if (line > d->last_line) line = d->last_line;
    if (d->n_all >= lim->max_nodes)
        return doc_fail(d, line, mark->column + 1, "more than %zu nodes", lim->max_nodes);
    if (d->n_all == d->cap_all) {
        size_t cap = d->cap_all ? d->cap_all * 2 : 64;
        if (cap > lim->max_nodes) cap = lim->max_nodes;
        tsr_yaml_node **all = realloc(d->all, cap * sizeof *all);
        TSR_ENSURE(all != NULL, TSR_E_INTERNAL, "out of memory");
        d->all = all;
        d->cap_all = cap;
    }
    tsr_yaml_node *n = calloc(1, sizeof *n);
    TSR_ENSURE(n != NULL, TSR_E_INTERNAL, "out of memory");
    n->kind = kind;
    n->line = line > (size_t)INT32_MAX ? INT32_MAX : (int)line;
    n->column = mark->column + 1 > (size_t)INT32_MAX ? INT32_MAX : (int)(mark->column + 1);
    n->seq = d->n_all;
    n->doc = d;
    d->all[d->n_all++] = n;
    *out = n;
    return 0;
}

static int append_item(tsr_yaml_node *parent, tsr_yaml_node *child)
{
    if (parent->n_items == parent->cap_items) {
        size_t cap = parent->cap_items ? parent->cap_items * 2 : 8;
        tsr_yaml_node **items = realloc(parent->items, cap * sizeof *items);
        TSR_ENSURE(items != NULL, TSR_E_INTERNAL, "out of memory");
        parent->items = items;
        parent->cap_items = cap;
    }
    parent->items[parent->n_items++] = child;
    return 0;
}

static bool scalar_eq(const tsr_yaml_node *a, const tsr_yaml_node *b)
{
    return a->len == b->len && memcmp(a->value, b->value, a->len) == 0;
}

static int cmp_keys(const void *pa, const void *pb)
{
    const tsr_yaml_node *a = *(tsr_yaml_node *const *)pa;
    const tsr_yaml_node *b = *(tsr_yaml_node *const *)pb;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->value, b->value, n);
    if (c != 0) return c;
    if (a->len != b->len) return a->len < b->len ? -1 : 1;
    return a->seq < b->seq ? -1 : (a->seq > b->seq ? 1 : 0);
}

/* Refuse duplicate keys; report the earliest second occurrence. */
static int check_duplicates(const tsr_yaml_node *map)
{
    size_t n = map->n_items / 2;
    if (n < 2) return 0;
    const tsr_yaml_node *dup = NULL;
    if (n <= 16) {
        for (size_t i = 1; i < n && dup == NULL; i++)
            for (size_t j = 0; j < i; j++)
                if (scalar_eq(map->items[2 * i], map->items[2 * j])) {
                    dup = map->items[2 * i];
                    break;
                }
    } else {
        tsr_yaml_node **keys = malloc(n * sizeof *keys);
        TSR_ENSURE(keys != NULL, TSR_E_INTERNAL, "out of memory");
        for (size_t i = 0; i < n; i++) keys[i] = map->items[2 * i];
        qsort(keys, n, sizeof *keys, cmp_keys);
        for (size_t i = 1; i < n; i++)
            if (scalar_eq(keys[i - 1], keys[i]) && (dup == NULL || keys[i]->seq < dup->seq))
                dup = keys[i];
        free(keys);
    }
    if (dup == NULL) return 0;
    char q[96];
    tsr_yaml_quote_bytes(dup->value, dup->len, q, sizeof q);
    return tsr_yaml_fail(dup, "duplicate key %s", q);
}

/* ---- parsing ------------------------------------------------------------ */

/* The 1-based column of a byte offset (bytes since the line's start). */
static size_t col_of_offset(const unsigned char *data, size_t len, size_t offset)
{
    if (offset > len) offset = len;
    size_t col = 1;
    while (offset > 0 && data[offset - 1] != '\n') {
        offset--;
        col++;
    }
    return col;
}

static size_t line_of_offset(const unsigned char *data, size_t len, size_t offset)
{
    size_t line = 1;
    if (offset > len) offset = len;
    for (size_t i = 0; i < offset; i++)
        if (data[i] == '\n') line++;
    return line;
}

static int parser_error(tsr_yaml_doc *d, const yaml_parser_t *p, const unsigned char *data,
                        size_t len)
{
    const char *problem = p->problem != NULL ? p->problem : "syntax error";
    switch (p->error) {
    case YAML_MEMORY_ERROR:
        return TSR_FAIL(TSR_E_INTERNAL, "%s: out of memory while parsing", d->name);
    case YAML_READER_ERROR:
        /* Invalid UTF-8 and control characters: libyaml gives a byte offset. */
        if (p->problem_value >= 0)
            return doc_fail(d, line_of_offset(data, len, p->problem_offset),
                            col_of_offset(data, len, p->problem_offset), "%s (byte 0x%02x)",
                            problem, (unsigned)(p->problem_value & 0xff));
        return doc_fail(d, line_of_offset(data, len, p->problem_offset),
                        col_of_offset(data, len, p->problem_offset), "%s", problem);
    default:
        if (p->context != NULL)
            return doc_fail(d, p->problem_mark.line + 1, p->problem_mark.column + 1, "%s (%s)",
                            problem, p->context);
        return doc_fail(d, p->problem_mark.line + 1, p->problem_mark.column + 1, "%s", problem);
    }
}

/* Resolve an event's tag: NULL (none) or one of the standard ones. */
static int check_tag(tsr_yaml_doc *d, const yaml_char_t *tag, enum tsr_yaml_kind kind,
                     size_t line, size_t col, enum scalar_tag *out)
{
    *out = TAG_NONE;
    if (tag == NULL) return 0;
    static const struct {
        const char *name;
        enum tsr_yaml_kind kind;
        enum scalar_tag tag;
    } known[] = {
        {YAML_TAG_PREFIX "str", TSR_YAML_SCALAR, TAG_STR},
        {YAML_TAG_PREFIX "int", TSR_YAML_SCALAR, TAG_INT},
        {YAML_TAG_PREFIX "bool", TSR_YAML_SCALAR, TAG_BOOL},
        {YAML_TAG_PREFIX "null", TSR_YAML_SCALAR, TAG_NULL},
        {YAML_TAG_PREFIX "float", TSR_YAML_SCALAR, TAG_FLOAT},
        {YAML_TAG_PREFIX "seq", TSR_YAML_SEQUENCE, TAG_NONE},
        {YAML_TAG_PREFIX "map", TSR_YAML_MAPPING, TAG_NONE},
    };
    const char *t = (const char *)tag;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (strcmp(t, known[i].name) != 0) continue;
        if (known[i].kind != kind)
            return doc_fail(d, line, col, "tag !!%s does not fit this node",
                            t + strlen(YAML_TAG_PREFIX));
        *out = known[i].tag;
        return 0;
    }
    char q[96];
    tsr_yaml_quote_bytes(t, strlen(t), q, sizeof q);
    return doc_fail(d, line, col, "tag %s is not allowed (only the standard !!str, !!int, !!bool, "
                             "!!null, !!float, !!seq, !!map)", q);
}

struct parse_state {
    tsr_yaml_doc *doc;
    const tsr_yaml_limits *lim;
    tsr_yaml_node *stack[TSR_YAML_MAX_DEPTH + 1];
    size_t depth;
    bool seen_document;
};

/* Attach a freshly made node to the open container (or make it the root). */
static int attach(struct parse_state *st, tsr_yaml_node *n)
{
    if (st->depth == 0) {
        TSR_ASSERT(st->doc->root == NULL);
        st->doc->root = n;
        return 0;
    }
    tsr_yaml_node *parent = st->stack[st->depth - 1];
    if (parent->kind == TSR_YAML_MAPPING && parent->n_items % 2 == 0 &&
        n->kind != TSR_YAML_SCALAR)
        return tsr_yaml_fail(n, "mapping keys must be scalars");
    return append_item(parent, n);
}

static int on_event(struct parse_state *st, const yaml_event_t *ev)
{
    tsr_yaml_doc *d = st->doc;
    const tsr_yaml_limits *lim = st->lim;
    size_t line = ev->start_mark.line + 1, col = ev->start_mark.column + 1;
    tsr_yaml_node *n = NULL;
    enum scalar_tag tag;

    switch (ev->type) {
    case YAML_STREAM_START_EVENT:
    case YAML_STREAM_END_EVENT:
    case YAML_NO_EVENT:
        return 0;
    case YAML_DOCUMENT_START_EVENT:
        if (st->seen_document) return doc_fail(d, line, col, "more than one document");
        st->seen_document = true;
        return 0;
    case YAML_DOCUMENT_END_EVENT:
        return 0;
    case YAML_ALIAS_EVENT:
        return doc_fail(d, line, col, "aliases are not allowed");
    case YAML_SCALAR_EVENT:
        if (ev->data.scalar.anchor != NULL)
            return doc_fail(d, line, col, "anchors are not allowed");
        TSR_GUARD(check_tag(d, ev->data.scalar.tag, TSR_YAML_SCALAR, line, col, &tag));
        if (ev->data.scalar.length > lim->max_scalar)
            return doc_fail(d, line, col, "scalar of %zu bytes, more than the %zu allowed",
                            ev->data.scalar.length, lim->max_scalar);
        if (memchr(ev->data.scalar.value, '\0', ev->data.scalar.length) != NULL)
            return doc_fail(d, line, col, "NUL character in a scalar");
        TSR_GUARD(new_node(d, lim, TSR_YAML_SCALAR, &ev->start_mark, &n));
        n->value = malloc(ev->data.scalar.length + 1);
        TSR_ENSURE(n->value != NULL, TSR_E_INTERNAL, "out of memory");
        memcpy(n->value, ev->data.scalar.value, ev->data.scalar.length);
        n->value[ev->data.scalar.length] = '\0';
        n->len = ev->data.scalar.length;
        n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || tag == TAG_STR;
        n->tag = tag;
        return attach(st, n);
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        bool is_seq = ev->type == YAML_SEQUENCE_START_EVENT;
        const yaml_char_t *anchor =
            is_seq ? ev->data.sequence_start.anchor : ev->data.mapping_start.anchor;
        const yaml_char_t *t = is_seq ? ev->data.sequence_start.tag : ev->data.mapping_start.tag;
        enum tsr_yaml_kind kind = is_seq ? TSR_YAML_SEQUENCE : TSR_YAML_MAPPING;
        if (anchor != NULL) return doc_fail(d, line, col, "anchors are not allowed");
        TSR_GUARD(check_tag(d, t, kind, line, col, &tag));
        if (st->depth + 1 > lim->max_depth || st->depth + 1 > TSR_YAML_MAX_DEPTH)
            return doc_fail(d, line, col, "nested deeper than %zu levels",
                            lim->max_depth < TSR_YAML_MAX_DEPTH ? lim->max_depth
                                                                : (size_t)TSR_YAML_MAX_DEPTH);
        TSR_GUARD(new_node(d, lim, kind, &ev->start_mark, &n));
        TSR_GUARD(attach(st, n));
        st->stack[st->depth++] = n;
        return 0;
    }
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        TSR_ASSERT(st->depth > 0);
        n = st->stack[--st->depth];
        if (n->kind == TSR_YAML_MAPPING) return check_duplicates(n);
        return 0;
    }
    return doc_fail(d, line, col, "unexpected YAML event");
}

int tsr_yaml_parse(const char *name, const void *data, size_t len, const tsr_yaml_limits *limits,
                   tsr_yaml_doc **out)
{
    int rc = -1;
    const unsigned char *bytes = data;
    yaml_parser_t parser;
    bool parser_ready = false;
    yaml_event_t ev;
    bool have_event = false;
    struct parse_state st;
    tsr_yaml_doc *d = NULL;

    *out = NULL;
    if (limits == NULL) limits = &tsr_yaml_limits_config;
    if (name == NULL) name = "yaml";
    TSR_TRY_ENSURE(data != NULL || len == 0, TSR_E_INPUT, "%s: no input", name);

    d = calloc(1, sizeof *d);
    TSR_TRY_ENSURE(d != NULL, TSR_E_INTERNAL, "out of memory");
    d->name = strdup(name);
    TSR_TRY_ENSURE(d->name != NULL, TSR_E_INTERNAL, "out of memory");
    d->columns = limits->columns;

    d->last_line = 1;
    if (len > limits->max_input) {
        (void)doc_fail(d, 0, 0, "input is %zu bytes, more than the %zu allowed", len,
                       limits->max_input);
        goto out;
    }
    d->last_line = line_of_offset(bytes, len, len);
    if (len > 0 && bytes[len - 1] == '\n' && d->last_line > 1) d->last_line--;
    d->last_col = col_of_offset(bytes, len, len > 0 && bytes[len - 1] == '\n' ? len - 1 : len);

    const unsigned char *nul = len > 0 ? memchr(bytes, '\0', len) : NULL;
    if (nul != NULL) {
        (void)doc_fail(d, line_of_offset(bytes, len, (size_t)(nul - bytes)),
                       col_of_offset(bytes, len, (size_t)(nul - bytes)), "NUL byte in input");
        goto out;
    }

    TSR_TRY_ENSURE(yaml_parser_initialize(&parser) == 1, TSR_E_INTERNAL,
                   "yaml parser initialization failed");
    parser_ready = true;
    yaml_parser_set_input_string(&parser, len > 0 ? bytes : (const unsigned char *)"", len);
    /* UTF-8 only: no UTF-16 guessing from a BOM. */
    yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);

    memset(&st, 0, sizeof st);
    st.doc = d;
    st.lim = limits;
    for (;;) {
        if (yaml_parser_parse(&parser, &ev) != 1) {
            (void)parser_error(d, &parser, bytes, len);
            goto out;
        }
        have_event = true;
        TSR_TRY(on_event(&st, &ev));
        bool end = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
        have_event = false;
        if (end) break;
    }
    TSR_TRY_ENSURE(st.depth == 0, TSR_E_INTERNAL, "%s: unbalanced YAML events", name);
    *out = d;
    d = NULL;
    rc = 0;
out:
    if (have_event) yaml_event_delete(&ev);
    if (parser_ready) yaml_parser_delete(&parser);
    tsr_yaml_free(d);
    return rc;
}

/* ---- structure accessors ----------------------------------------------- */

const tsr_yaml_node *tsr_yaml_root(const tsr_yaml_doc *doc)
{
    return doc != NULL ? doc->root : NULL;
}

const char *tsr_yaml_doc_name(const tsr_yaml_doc *doc)
{
    return doc != NULL ? doc->name : "";
}

enum tsr_yaml_kind tsr_yaml_kind(const tsr_yaml_node *n) { return n->kind; }
int tsr_yaml_line(const tsr_yaml_node *n) { return n->line; }
int tsr_yaml_column(const tsr_yaml_node *n) { return n->column; }

size_t tsr_yaml_count(const tsr_yaml_node *n)
{
    if (n == NULL) return 0;
    switch (n->kind) {
    case TSR_YAML_SEQUENCE: return n->n_items;
    case TSR_YAML_MAPPING: return n->n_items / 2;
    case TSR_YAML_SCALAR: return 0;
    }
    return 0;
}

const tsr_yaml_node *tsr_yaml_item(const tsr_yaml_node *seq, size_t i)
{
    if (seq == NULL || seq->kind != TSR_YAML_SEQUENCE || i >= seq->n_items) return NULL;
    return seq->items[i];
}

const tsr_yaml_node *tsr_yaml_pair_key(const tsr_yaml_node *map, size_t i)
{
    if (map == NULL || map->kind != TSR_YAML_MAPPING || i >= map->n_items / 2) return NULL;
    return map->items[2 * i];
}

const tsr_yaml_node *tsr_yaml_pair_value(const tsr_yaml_node *map, size_t i)
{
    if (map == NULL || map->kind != TSR_YAML_MAPPING || i >= map->n_items / 2) return NULL;
    return map->items[2 * i + 1];
}

const char *tsr_yaml_scalar(const tsr_yaml_node *n, size_t *len)
{
    if (n == NULL || n->kind != TSR_YAML_SCALAR) return NULL;
    if (len != NULL) *len = n->len;
    return n->value;
}

int tsr_yaml_is_null(const tsr_yaml_node *n)
{
    if (n == NULL || n->kind != TSR_YAML_SCALAR) return 0;
    if (n->tag == TAG_NULL) return 1;
    if (n->quoted || n->tag != TAG_NONE) return 0;
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
    for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++)
        if (strcmp(n->value, nulls[i]) == 0) return 1;
    return 0;
}

int tsr_yaml_is_quoted(const tsr_yaml_node *n)
{
    return n != NULL && n->kind == TSR_YAML_SCALAR && n->quoted;
}

const tsr_yaml_node *tsr_yaml_get(const tsr_yaml_node *map, const char *key)
{
    if (map == NULL || map->kind != TSR_YAML_MAPPING) return NULL;
    size_t klen = strlen(key);
    for (size_t i = 0; i + 1 < map->n_items; i += 2) {
        const tsr_yaml_node *k = map->items[i];
        if (k->len == klen && memcmp(k->value, key, klen) == 0) return map->items[i + 1];
    }
    return NULL;
}

int tsr_yaml_check_keys(const tsr_yaml_node *map, const char *const *allowed, size_t n_allowed)
{
    if (map == NULL || map->kind != TSR_YAML_MAPPING) return 0;
    for (size_t i = 0; i + 1 < map->n_items; i += 2) {
        const tsr_yaml_node *k = map->items[i];
        bool ok = false;
        for (size_t j = 0; j < n_allowed && !ok; j++)
            ok = strlen(allowed[j]) == k->len && memcmp(allowed[j], k->value, k->len) == 0;
        if (ok) continue;
        char q[96], list[256];
        size_t used = 0;
        list[0] = '\0';
        for (size_t j = 0; j < n_allowed; j++) {
            int w = snprintf(list + used, sizeof list - used, "%s%s", j ? ", " : "", allowed[j]);
            if (w < 0 || (size_t)w >= sizeof list - used) break;
            used += (size_t)w;
        }
        tsr_yaml_quote_bytes(k->value, k->len, q, sizeof q);
        return tsr_yaml_fail(k, "unknown key %s (expected one of: %s)", q, list);
    }
    return 0;
}

/* ---- typed conversion --------------------------------------------------- */

static const char *kind_noun(enum tsr_yaml_kind kind)
{
    switch (kind) {
    case TSR_YAML_SCALAR: return "a string";
    case TSR_YAML_SEQUENCE: return "a list";
    case TSR_YAML_MAPPING: return "a mapping";
    }
    return "?";
}

int tsr_yaml_expect(const tsr_yaml_node *n, enum tsr_yaml_kind kind, const char *what)
{
    TSR_ENSURE(n != NULL, TSR_E_INPUT, "\"%s\" is missing", what);
    if (n->kind != kind || (kind == TSR_YAML_SCALAR && tsr_yaml_is_null(n)))
        return tsr_yaml_fail(n, "\"%s\" must be %s", what, kind_noun(kind));
    return 0;
}

int tsr_yaml_to_str(const tsr_yaml_node *n, const char *what, const char **s, size_t *len)
{
    TSR_GUARD(tsr_yaml_expect(n, TSR_YAML_SCALAR, what));
    *s = n->value;
    if (len != NULL) *len = n->len;
    return 0;
}

int tsr_yaml_to_strbuf(const tsr_yaml_node *n, const char *what, char *out, size_t cap)
{
    const char *s;
    size_t len;
    TSR_GUARD(tsr_yaml_to_str(n, what, &s, &len));
    if (cap == 0 || len >= cap)
        return tsr_yaml_fail(n, "\"%s\" is longer than %zu bytes", what, cap > 0 ? cap - 1 : 0);
    memcpy(out, s, len + 1);
    return 0;
}

int tsr_yaml_to_bool(const tsr_yaml_node *n, const char *what, bool *out)
{
    TSR_ENSURE(n != NULL, TSR_E_INPUT, "\"%s\" is missing", what);
    if (n->kind == TSR_YAML_SCALAR && !n->quoted &&
        (n->tag == TAG_NONE || n->tag == TAG_BOOL)) {
        if (strcmp(n->value, "true") == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(n->value, "false") == 0) {
            *out = false;
            return 0;
        }
    }
    return tsr_yaml_fail(n, "\"%s\" must be true or false", what);
}

/* -?[0-9]+, no leading zeros, no overflow. */
static bool parse_decimal(const char *s, size_t len, int64_t *out)
{
    size_t i = 0;
    bool neg = false;
    if (i < len && s[i] == '-') {
        neg = true;
        i++;
    }
    if (i == len) return false;
    if (s[i] == '0' && i + 1 < len) return false;
    uint64_t v = 0;
    const uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (limit - d) / 10) return false;
        v = v * 10 + d;
    }
    if (neg) *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    else *out = (int64_t)v;
    return true;
}

int tsr_yaml_to_int(const tsr_yaml_node *n, const char *what, int64_t min, int64_t max,
                    int64_t *out)
{
    TSR_ENSURE(n != NULL, TSR_E_INPUT, "\"%s\" is missing", what);
    int64_t v;
    bool ok = n->kind == TSR_YAML_SCALAR && (n->tag == TAG_INT || (n->tag == TAG_NONE &&
                                                                   !n->quoted));
    if (!ok || !parse_decimal(n->value, n->len, &v))
        return tsr_yaml_fail(n, "\"%s\" must be an integer", what);
    if (v < min || v > max)
        return tsr_yaml_fail(n, "\"%s\" must be between %lld and %lld", what, (long long)min,
                             (long long)max);
    *out = v;
    return 0;
}

int tsr_yaml_to_duration(const tsr_yaml_node *n, const char *what, int64_t min, int64_t max,
                         int64_t *out)
{
    const char *s;
    size_t len;
    int64_t v;
    TSR_ENSURE(n != NULL, TSR_E_INPUT, "\"%s\" is missing", what);
    if (n->kind != TSR_YAML_SCALAR || tsr_yaml_is_null(n) ||
        (n->tag != TAG_NONE && n->tag != TAG_STR))
        return tsr_yaml_fail(n, "\"%s\" must be a duration like 30s, 5m, 1h", what);
    TSR_GUARD(tsr_yaml_to_str(n, what, &s, &len));
    if (tsr_duration_parse(s, &v) != 0) {
        char reason[256];
        snprintf(reason, sizeof reason, "%s", tsr_errmsg());
        return tsr_yaml_fail(n, "\"%s\": %s", what, reason);
    }
    if (v < min || v > max) {
        char lo[32], hi[32];
        tsr_duration_format(min, lo, sizeof lo);
        tsr_duration_format(max, hi, sizeof hi);
        return tsr_yaml_fail(n, "\"%s\" must be between %s and %s", what, lo, hi);
    }
    *out = v;
    return 0;
}

/* ---- optional keys ------------------------------------------------------ */

int tsr_yaml_get_strbuf(const tsr_yaml_node *map, const char *key, char *out, size_t cap)
{
    const tsr_yaml_node *v = tsr_yaml_get(map, key);
    return v == NULL ? 0 : tsr_yaml_to_strbuf(v, key, out, cap);
}

int tsr_yaml_get_bool(const tsr_yaml_node *map, const char *key, bool *out)
{
    const tsr_yaml_node *v = tsr_yaml_get(map, key);
    return v == NULL ? 0 : tsr_yaml_to_bool(v, key, out);
}

int tsr_yaml_get_int(const tsr_yaml_node *map, const char *key, int64_t min, int64_t max,
                     int64_t *out)
{
    const tsr_yaml_node *v = tsr_yaml_get(map, key);
    return v == NULL ? 0 : tsr_yaml_to_int(v, key, min, max, out);
}

int tsr_yaml_get_duration(const tsr_yaml_node *map, const char *key, int64_t min, int64_t max,
                          int64_t *out)
{
    const tsr_yaml_node *v = tsr_yaml_get(map, key);
    return v == NULL ? 0 : tsr_yaml_to_duration(v, key, min, max, out);
}

static int get_container(const tsr_yaml_node *map, const char *key, enum tsr_yaml_kind kind,
                         const tsr_yaml_node **out)
{
    *out = NULL;
    const tsr_yaml_node *v = tsr_yaml_get(map, key);
    if (v == NULL || tsr_yaml_is_null(v)) return 0;
    TSR_GUARD(tsr_yaml_expect(v, kind, key));
    *out = v;
    return 0;
}

int tsr_yaml_get_map(const tsr_yaml_node *map, const char *key, const tsr_yaml_node **out)
{
    return get_container(map, key, TSR_YAML_MAPPING, out);
}

int tsr_yaml_get_seq(const tsr_yaml_node *map, const char *key, const tsr_yaml_node **out)
{
    return get_container(map, key, TSR_YAML_SEQUENCE, out);
}
