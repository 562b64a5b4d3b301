/* tsr_yaml: the strict YAML reader. Refusals first, then the tree and the
 * typed accessors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tsr_yaml.h"

/* Parse `len` bytes (or strlen) under the name "t". */
static int parse_n(const char *in, size_t len, const tsr_yaml_limits *lim, tsr_yaml_doc **doc)
{
    tsr_err_clear();
    return tsr_yaml_parse("t", in, len, lim, doc);
}

static int parse(const char *in, tsr_yaml_doc **doc)
{
    return parse_n(in, strlen(in), NULL, doc);
}

/* The recorded message must start with `want`. */
static void assert_msg_prefix(const char *want, const char *input)
{
    const char *got = tsr_errmsg();
    if (strncmp(got, want, strlen(want)) != 0) {
        print_error("input %s\n  want prefix: %s\n  got:         %s\n", input, want, got);
        fail();
    }
    assert_int_equal(tsr_errcat(), TSR_E_INPUT);
}

static void assert_msg(const char *want)
{
    if (strcmp(tsr_errmsg(), want) != 0) {
        print_error("want: %s\n got:  %s\n", want, tsr_errmsg());
        fail();
    }
}

static char *repeat(const char *unit, size_t n, const char *tail)
{
    size_t ul = strlen(unit), tl = strlen(tail);
    char *s = malloc(ul * n + tl + 1);
    assert_non_null(s);
    for (size_t i = 0; i < n; i++) memcpy(s + i * ul, unit, ul);
    memcpy(s + ul * n, tail, tl + 1);
    return s;
}

/* ---- refusals ------------------------------------------------------------ */

static void test_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        const char *want;
    } cases[] = {
        /* anchors and aliases (billion laughs) */
        {"a: &x [1, 2]\nb: *x\n", "t:1: anchors are not allowed"},
        {"a: 1\nb: *x\n", "t:2: "}, /* an alias to nothing: libyaml or us, refused */
        {"- &a x\n", "t:1: anchors are not allowed"},
        {"lol: &a [x]\nlol2: [*a, *a, *a]\n", "t:1: anchors are not allowed"},
        /* tags */
        {"a: !foo x\n", "t:1: tag \"!foo\" is not allowed"},
        {"a: ! x\n", "t:1: tag \"!\" is not allowed"},
        {"a: !!binary aGVsbG8=\n", "t:1: tag \"tag:yaml.org,2002:binary\" is not allowed"},
        {"a: !!python/object:os.system x\n", "t:1: tag "},
        {"%TAG !! tag:evil.example,2024:\n---\na: !!str x\n",
         "t:3: tag \"tag:evil.example,2024:str\" is not allowed"},
        {"a: !!map [1]\n", "t:1: tag !!map does not fit this node"},
        {"a: !!str {b: 1}\n", "t:1: tag !!str does not fit this node"},
        /* more than one document: trailing garbage document */
        {"a: 1\n---\nb: 2\n", "t:2: more than one document"},
        {"---\na: 1\n...\n---\na: 2\n", "t:4: more than one document"},
        {"a: 1\n...\ngarbage: [\n", "t:3: did not find expected <document start>"},
        {"a: 1\n--- x\n", "t:2: more than one document"},
        /* duplicate and non-scalar keys */
        {"a: 1\nb: 2\na: 3\n", "t:3: duplicate key \"a\""},
        {"x:\n  'a': 1\n  \"a\": 2\n", "t:3: duplicate key \"a\""},
        {"{a: 1, a: 2}\n", "t:1: duplicate key \"a\""},
        {"? [a]\n: b\n", "t:1: mapping keys must be scalars"},
        {"? {a: 1}\n: b\n", "t:1: mapping keys must be scalars"},
        /* truncated input and syntax errors, with libyaml's line */
        {"a: [1, 2\n", "t:1: did not find expected ',' or ']'"},
        {"a:\n  b:\n    - 'x\n", "t:3: found unexpected end of stream"},
        {"a: \"unterminated\n", "t:1: found unexpected end of stream"},
        {"a: {b: 1\n", "t:1: did not find expected ',' or '}'"},
        {"a: 1\n\tb: 2\n", "t:2: found a tab character that violates indentation"},
        {"a:\n\tb: 2\n", "t:2: found character that cannot start any token"},
        {"a: 1\n b: 2\n", "t:2: mapping values are not allowed in this context"},
        {"a: b: c\n", "t:1: mapping values are not allowed in this context"},
        {"- a\nb: 1\n", "t:2: did not find expected '-' indicator"},
        /* NUL in a scalar through an escape */
        {"a: \"x\\0y\"\n", "t:1: NUL character in a scalar"},
        {"a: 1\nb: \"\\x00\"\n", "t:2: NUL character in a scalar"},
        /* invalid UTF-8 and escapes (libyaml reports) */
        {"a: 1\nb: \xff\n", "t:2: invalid leading UTF-8 octet"},
        {"a: \xc3\n", "t:1: "},
        {"a: \xed\xa0\x80\n", "t:1: "}, /* a UTF-16 surrogate encoded in UTF-8 */
        {"a: \"\\ud800\"\n", "t:1: found invalid Unicode character escape code"},
        {"a: \x01\n", "t:1: control characters are not allowed"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tsr_yaml_doc *doc = (tsr_yaml_doc *)1;
        if (parse(cases[i].in, &doc) == 0) {
            print_error("case %zu accepted: %s\n", i, cases[i].in);
            tsr_yaml_free(doc);
            fail();
        }
        assert_null(doc);
        assert_msg_prefix(cases[i].want, cases[i].in);
    }
}

static void test_nul_bytes(void **state)
{
    (void)state;
    tsr_yaml_doc *doc;
    static const char in1[] = "a: 1\nb: 2\nc: x\0y\n";
    assert_int_equal(parse_n(in1, sizeof in1 - 1, NULL, &doc), -1);
    assert_msg("t:3: NUL byte in input");
    static const char in2[] = "\0";
    assert_int_equal(parse_n(in2, 1, NULL, &doc), -1);
    assert_msg("t:1: NUL byte in input");
    /* A NUL in a key, after the end of a document, in a comment: all refused. */
    static const char in3[] = "a: 1\n# c\0mment\n";
    assert_int_equal(parse_n(in3, sizeof in3 - 1, NULL, &doc), -1);
    assert_msg("t:2: NUL byte in input");
    /* UTF-16 (the BOM is not honoured: UTF-8 only) is full of NULs. */
    static const char in4[] = "\xff\xfe" "a\0:\0 \0" "1\0";
    assert_int_equal(parse_n(in4, sizeof in4 - 1, NULL, &doc), -1);
    assert_msg_prefix("t:1: ", "utf-16");
}

static void test_depth_limit(void **state)
{
    (void)state;
    tsr_yaml_doc *doc;
    /* 32 nested flow sequences: fine; 33: refused at the 33rd. */
    char *ok = repeat("[", 32, "");
    char *ok_full = malloc(32 * 2 + 2);
    assert_non_null(ok_full);
    snprintf(ok_full, 32 * 2 + 2, "%s%s", ok, "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]");
    assert_int_equal(parse(ok_full, &doc), 0);
    tsr_yaml_free(doc);

    char *deep = repeat("[", 33, "]");
    assert_int_equal(parse(deep, &doc), -1);
    assert_msg("t:1: nested deeper than 32 levels");
    free(deep);

    /* A much deeper, truncated bomb stops at the limit, not at the end. */
    deep = repeat("[", 100000, "");
    assert_int_equal(parse(deep, &doc), -1);
    assert_msg("t:1: nested deeper than 32 levels");
    free(deep);

    /* Block mappings count as well, with the line of the offending level. */
    char block[4096] = "";
    size_t used = 0;
    for (int i = 0; i < 33; i++)
        used += (size_t)snprintf(block + used, sizeof block - used, "%*sk%d:\n", i, "", i);
    snprintf(block + used, sizeof block - used, "%*sleaf: 1\n", 33, "");
    assert_int_equal(parse(block, &doc), -1);
    assert_msg("t:33: nested deeper than 32 levels");

    /* A lower caller-set limit. */
    tsr_yaml_limits lim = tsr_yaml_limits_config;
    lim.max_depth = 2;
    assert_int_equal(parse_n("a: {b: 1}\n", 10, &lim, &doc), 0);
    tsr_yaml_free(doc);
    assert_int_equal(parse_n("a: {b: [1]}\n", 12, &lim, &doc), -1);
    assert_msg("t:1: nested deeper than 2 levels");
    free(ok);
    free(ok_full);
}

static void test_node_limit(void **state)
{
    (void)state;
    tsr_yaml_doc *doc;
    /* The sequence itself is one node: 9,999 items make 10,000 nodes. */
    char *ok = repeat("1,", 9998, "1]");
    char *in = malloc(strlen(ok) + 2);
    assert_non_null(in);
    sprintf(in, "[%s", ok);
    assert_int_equal(parse(in, &doc), 0);
    assert_int_equal(tsr_yaml_count(tsr_yaml_root(doc)), 9999);
    tsr_yaml_free(doc);
    free(in);
    free(ok);

    char *over = repeat("- 1\n", 10000, "");
    assert_int_equal(parse(over, &doc), -1);
    assert_msg("t:10000: more than 10000 nodes");
    free(over);

    /* Keys count: a mapping of 5,000 pairs is 10,001 nodes. */
    char *map = malloc(5000 * 16);
    assert_non_null(map);
    size_t used = 0;
    for (int i = 0; i < 5000; i++) used += (size_t)sprintf(map + used, "k%d: 1\n", i);
    assert_int_equal(parse(map, &doc), -1);
    assert_msg("t:5000: more than 10000 nodes");
    free(map);

    tsr_yaml_limits lim = tsr_yaml_limits_config;
    lim.max_nodes = 3;
    assert_int_equal(parse_n("[1, 2]", 6, &lim, &doc), 0);
    tsr_yaml_free(doc);
    assert_int_equal(parse_n("[1, 2, 3]", 9, &lim, &doc), -1);
    assert_msg("t:1: more than 3 nodes");
}

static void test_size_limits(void **state)
{
    (void)state;
    tsr_yaml_doc *doc;
    tsr_yaml_limits lim = tsr_yaml_limits_config;
    lim.max_input = 10;
    assert_int_equal(parse_n("a: 1234567", 10, &lim, &doc), 0);
    tsr_yaml_free(doc);
    assert_int_equal(parse_n("a: 12345678", 11, &lim, &doc), -1);
    assert_msg("t: input is 11 bytes, more than the 10 allowed");

    /* Default: 1 MiB. */
    char *big = repeat("#", TSR_YAML_MAX_INPUT_CONFIG + 1, "");
    assert_int_equal(parse(big, &doc), -1);
    assert_msg("t: input is 1048577 bytes, more than the 1048576 allowed");
    big[TSR_YAML_MAX_INPUT_CONFIG] = '\0';
    assert_int_equal(parse(big, &doc), 0);
    assert_null(tsr_yaml_root(doc));
    tsr_yaml_free(doc);
    free(big);

    /* Scalars: 64 KiB after unescaping. */
    char *s = repeat("x", TSR_YAML_MAX_SCALAR + 1, "\n");
    char *in = malloc(strlen(s) + 16);
    assert_non_null(in);
    sprintf(in, "a: b\nc: %s", s);
    assert_int_equal(parse(in, &doc), -1);
    assert_msg("t:2: scalar of 65537 bytes, more than the 65536 allowed");
    sprintf(in, "a: b\nc: %s", s + 1);
    assert_int_equal(parse(in, &doc), 0);
    tsr_yaml_free(doc);
    free(in);
    free(s);
}

/* ---- the tree ------------------------------------------------------------ */

static void test_empty_documents(void **state)
{
    (void)state;
    static const char *const empties[] = {"", "\n\n", "# only a comment\n", "   \n# x\n"};
    for (size_t i = 0; i < sizeof empties / sizeof empties[0]; i++) {
        tsr_yaml_doc *doc;
        assert_int_equal(parse(empties[i], &doc), 0);
        assert_null(tsr_yaml_root(doc));
        assert_string_equal(tsr_yaml_doc_name(doc), "t");
        tsr_yaml_free(doc);
    }
    /* "---" alone is a document whose root is null. */
    tsr_yaml_doc *doc;
    assert_int_equal(parse("---\n", &doc), 0);
    assert_non_null(tsr_yaml_root(doc));
    assert_true(tsr_yaml_is_null(tsr_yaml_root(doc)));
    tsr_yaml_free(doc);
    /* No input pointer with length 0 is the empty input. */
    assert_int_equal(tsr_yaml_parse("t", NULL, 0, NULL, &doc), 0);
    assert_null(tsr_yaml_root(doc));
    tsr_yaml_free(doc);
}

static void test_tree(void **state)
{
    (void)state;
    tsr_yaml_doc *doc;
    const char *in = "# config\n"
                     "name: demo\n"
                     "list:\n"
                     "  - one\n"
                     "  - 'two'\n"
                     "  - ~\n"
                     "nested: {x: 1, y: [a, b]}\n"
                     "empty:\n"
                     "text: |\n"
                     "  line one\n"
                     "  line two\n";
    assert_int_equal(parse(in, &doc), 0);
    const tsr_yaml_node *root = tsr_yaml_root(doc);
    assert_int_equal(tsr_yaml_kind(root), TSR_YAML_MAPPING);
    assert_int_equal(tsr_yaml_count(root), 5);
    assert_int_equal(tsr_yaml_line(root), 2);
    size_t len;
    assert_string_equal(tsr_yaml_scalar(tsr_yaml_pair_key(root, 0), &len), "name");
    assert_int_equal(len, 4);
    const tsr_yaml_node *name = tsr_yaml_get(root, "name");
    assert_string_equal(tsr_yaml_scalar(name, NULL), "demo");
    assert_int_equal(tsr_yaml_line(name), 2);
    assert_int_equal(tsr_yaml_column(name), 7);
    assert_false(tsr_yaml_is_quoted(name));

    const tsr_yaml_node *list = tsr_yaml_get(root, "list");
    assert_int_equal(tsr_yaml_kind(list), TSR_YAML_SEQUENCE);
    assert_int_equal(tsr_yaml_count(list), 3);
    assert_int_equal(tsr_yaml_line(tsr_yaml_item(list, 1)), 5);
    assert_int_equal(tsr_yaml_column(tsr_yaml_item(list, 1)), 5);
    assert_true(tsr_yaml_is_quoted(tsr_yaml_item(list, 1)));
    assert_true(tsr_yaml_is_null(tsr_yaml_item(list, 2)));
    assert_null(tsr_yaml_item(list, 3));
    assert_null(tsr_yaml_pair_key(list, 0));

    const tsr_yaml_node *nested = tsr_yaml_get(root, "nested");
    assert_int_equal(tsr_yaml_kind(nested), TSR_YAML_MAPPING);
    assert_int_equal(tsr_yaml_count(tsr_yaml_get(nested, "y")), 2);
    assert_null(tsr_yaml_get(nested, "z"));
    assert_null(tsr_yaml_scalar(nested, NULL));

    assert_true(tsr_yaml_is_null(tsr_yaml_get(root, "empty")));
    assert_string_equal(tsr_yaml_scalar(tsr_yaml_get(root, "text"), NULL),
                        "line one\nline two\n");
    assert_true(tsr_yaml_is_quoted(tsr_yaml_get(root, "text")));
    tsr_yaml_free(doc);

    /* Standard tags are accepted. */
    assert_int_equal(parse("a: !!str 12\nb: !!int 5\nc: !!null\nd: !!seq [1]\n", &doc), 0);
    root = tsr_yaml_root(doc);
    assert_true(tsr_yaml_is_quoted(tsr_yaml_get(root, "a")));
    assert_true(tsr_yaml_is_null(tsr_yaml_get(root, "c")));
    tsr_yaml_free(doc);

    /* Many keys (the sorted duplicate check) and a late duplicate. */
    char big[40 * 32];
    size_t used = 0;
    for (int i = 0; i < 30; i++) used += (size_t)sprintf(big + used, "key%02d: %d\n", i, i);
    assert_int_equal(parse(big, &doc), 0);
    assert_int_equal(tsr_yaml_count(tsr_yaml_root(doc)), 30);
    tsr_yaml_free(doc);
    sprintf(big + used, "key07: again\nkey03: again\n");
    assert_int_equal(parse(big, &doc), -1);
    assert_msg("t:31: duplicate key \"key07\"");
}

/* ---- typed accessors ---------------------------------------------------- */

static void test_accessor_refusals(void **state)
{
    (void)state;
    tsr_yaml_doc *doc;
    const char *in = "s: text\n"           /* 1 */
                     "q: \"5\"\n"           /* 2 */
                     "y: yes\n"             /* 3 */
                     "T: True\n"            /* 4 */
                     "hex: 0x10\n"          /* 5 */
                     "oct: 010\n"           /* 6 */
                     "plus: +5\n"           /* 7 */
                     "big: 9223372036854775808\n" /* 8 */
                     "f: 1.5\n"             /* 9 */
                     "n: 70000\n"           /* 10 */
                     "d: 5\n"               /* 11 */
                     "dl: 25h\n"            /* 12 */
                     "m: {a: 1}\n"          /* 13 */
                     "l: [1]\n"             /* 14 */
                     "nul:\n"               /* 15 */
                     "long: abcdefgh\n"     /* 16 */
                     "qb: 'true'\n"         /* 17 */
                     "neg: -1\n"            /* 18 */
                     "ti: !!int 12\n";      /* 19 */
    assert_int_equal(parse(in, &doc), 0);
    const tsr_yaml_node *r = tsr_yaml_root(doc);
    int64_t v = 42;
    bool b = true;
    char buf[8];
    const tsr_yaml_node *n;

    assert_int_equal(tsr_yaml_get_bool(r, "s", &b), -1);
    assert_msg("t:1: \"s\" must be true or false");
    assert_int_equal(tsr_yaml_get_bool(r, "y", &b), -1);
    assert_msg("t:3: \"y\" must be true or false");
    assert_int_equal(tsr_yaml_get_bool(r, "T", &b), -1);
    assert_msg("t:4: \"T\" must be true or false");
    assert_int_equal(tsr_yaml_get_bool(r, "qb", &b), -1);
    assert_msg("t:17: \"qb\" must be true or false");
    assert_true(b);

    static const struct {
        const char *key;
        const char *want;
    } ints[] = {
        {"s", "t:1: \"s\" must be an integer"},
        {"q", "t:2: \"q\" must be an integer"},
        {"hex", "t:5: \"hex\" must be an integer"},
        {"oct", "t:6: \"oct\" must be an integer"},
        {"plus", "t:7: \"plus\" must be an integer"},
        {"big", "t:8: \"big\" must be an integer"},
        {"f", "t:9: \"f\" must be an integer"},
        {"n", "t:10: \"n\" must be between 1 and 65535"},
        {"neg", "t:18: \"neg\" must be between 1 and 65535"},
        {"m", "t:13: \"m\" must be an integer"},
        {"l", "t:14: \"l\" must be an integer"},
        {"nul", "t:15: \"nul\" must be an integer"},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        tsr_err_clear();
        assert_int_equal(tsr_yaml_get_int(r, ints[i].key, 1, 65535, &v), -1);
        assert_msg(ints[i].want);
    }
    assert_int_equal(v, 42);

    assert_int_equal(tsr_yaml_get_duration(r, "d", 60, 86400, &v), -1);
    assert_msg_prefix("t:11: \"d\": bad duration \"5\"", "d: 5");
    assert_int_equal(tsr_yaml_get_duration(r, "dl", 300, 86400, &v), -1);
    assert_msg("t:12: \"dl\" must be between 5m and 1d");
    assert_int_equal(tsr_yaml_get_duration(r, "m", 300, 86400, &v), -1);
    assert_msg("t:13: \"m\" must be a duration like 30s, 5m, 1h");
    assert_int_equal(tsr_yaml_get_duration(r, "ti", 1, 86400, &v), -1);
    assert_msg("t:19: \"ti\" must be a duration like 30s, 5m, 1h");

    assert_int_equal(tsr_yaml_get_strbuf(r, "long", buf, sizeof buf), -1);
    assert_msg("t:16: \"long\" is longer than 7 bytes");
    assert_int_equal(tsr_yaml_get_strbuf(r, "m", buf, sizeof buf), -1);
    assert_msg("t:13: \"m\" must be a string");
    assert_int_equal(tsr_yaml_get_strbuf(r, "nul", buf, sizeof buf), -1);
    assert_msg("t:15: \"nul\" must be a string");

    assert_int_equal(tsr_yaml_get_map(r, "l", &n), -1);
    assert_msg("t:14: \"l\" must be a mapping");
    assert_int_equal(tsr_yaml_get_map(r, "s", &n), -1);
    assert_msg("t:1: \"s\" must be a mapping");
    assert_int_equal(tsr_yaml_get_seq(r, "m", &n), -1);
    assert_msg("t:13: \"m\" must be a list");
    assert_int_equal(tsr_yaml_expect(r, TSR_YAML_SEQUENCE, "root"), -1);
    assert_msg("t:1: \"root\" must be a list");

    static const char *const allowed[] = {"s", "q", "y"};
    assert_int_equal(tsr_yaml_check_keys(r, allowed, 3), -1);
    assert_msg("t:4: unknown key \"T\" (expected one of: s, q, y)");
    tsr_yaml_free(doc);

    /* Unknown keys with odd bytes are quoted safely in the message. */
    assert_int_equal(parse("\"a\\tb\\u00e9\\\"\": 1\n", &doc), 0);
    assert_int_equal(tsr_yaml_check_keys(tsr_yaml_root(doc), allowed, 1), -1);
    assert_msg("t:1: unknown key \"a\\tb\\xc3\\xa9\\\"\" (expected one of: s)");
    tsr_yaml_free(doc);
}

static void test_accessors(void **state)
{
    (void)state;
    tsr_yaml_doc *doc;
    const char *in = "t: true\nf: false\ntb: !!bool true\n"
                     "zero: 0\nneg: -12\nmax: 9223372036854775807\nmin: -9223372036854775808\n"
                     "d: 1h30m\ndq: '90s'\n"
                     "s: hello\nnum: 123\nempty: ''\n"
                     "m: {}\nl: []\nnm:\nns: ~\n";
    assert_int_equal(parse(in, &doc), 0);
    const tsr_yaml_node *r = tsr_yaml_root(doc);
    bool b = false;
    assert_int_equal(tsr_yaml_get_bool(r, "t", &b), 0);
    assert_true(b);
    assert_int_equal(tsr_yaml_get_bool(r, "f", &b), 0);
    assert_false(b);
    assert_int_equal(tsr_yaml_get_bool(r, "tb", &b), 0);
    assert_true(b);
    b = false;
    assert_int_equal(tsr_yaml_get_bool(r, "absent", &b), 0);
    assert_false(b);

    int64_t v = 7;
    assert_int_equal(tsr_yaml_get_int(r, "absent", 0, 10, &v), 0);
    assert_int_equal(v, 7);
    assert_int_equal(tsr_yaml_get_int(r, "zero", 0, 10, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(tsr_yaml_get_int(r, "neg", -12, 10, &v), 0);
    assert_int_equal(v, -12);
    assert_int_equal(tsr_yaml_get_int(r, "max", INT64_MIN, INT64_MAX, &v), 0);
    assert_true(v == INT64_MAX);
    assert_int_equal(tsr_yaml_get_int(r, "min", INT64_MIN, INT64_MAX, &v), 0);
    assert_true(v == INT64_MIN);
    assert_int_equal(tsr_yaml_get_duration(r, "d", 60, 86400, &v), 0);
    assert_int_equal(v, 5400);
    assert_int_equal(tsr_yaml_get_duration(r, "dq", 60, 86400, &v), 0);
    assert_int_equal(v, 90);

    char buf[16] = "unchanged";
    assert_int_equal(tsr_yaml_get_strbuf(r, "absent", buf, sizeof buf), 0);
    assert_string_equal(buf, "unchanged");
    assert_int_equal(tsr_yaml_get_strbuf(r, "s", buf, sizeof buf), 0);
    assert_string_equal(buf, "hello");
    assert_int_equal(tsr_yaml_get_strbuf(r, "num", buf, sizeof buf), 0);
    assert_string_equal(buf, "123");
    assert_int_equal(tsr_yaml_get_strbuf(r, "empty", buf, sizeof buf), 0);
    assert_string_equal(buf, "");

    const tsr_yaml_node *n = (const tsr_yaml_node *)1;
    assert_int_equal(tsr_yaml_get_map(r, "m", &n), 0);
    assert_non_null(n);
    assert_int_equal(tsr_yaml_count(n), 0);
    assert_int_equal(tsr_yaml_get_seq(r, "l", &n), 0);
    assert_non_null(n);
    assert_int_equal(tsr_yaml_get_map(r, "nm", &n), 0);
    assert_null(n);
    assert_int_equal(tsr_yaml_get_seq(r, "ns", &n), 0);
    assert_null(n);
    assert_int_equal(tsr_yaml_get_seq(r, "absent", &n), 0);
    assert_null(n);

    static const char *const allowed[] = {"t", "f", "tb", "zero", "neg", "max", "min", "d",
                                          "dq", "s", "num", "empty", "m", "l", "nm", "ns"};
    assert_int_equal(tsr_yaml_check_keys(r, allowed, sizeof allowed / sizeof allowed[0]), 0);
    tsr_yaml_free(doc);
}

static void test_quote_bytes(void **state)
{
    (void)state;
    char out[96];
    tsr_yaml_quote_bytes("plain", 5, out, sizeof out);
    assert_string_equal(out, "\"plain\"");
    tsr_yaml_quote_bytes("a\nb\x01\"\\", 6, out, sizeof out);
    assert_string_equal(out, "\"a\\nb\\x01\\\"\\\\\"");
    char longs[200];
    memset(longs, 'x', sizeof longs);
    tsr_yaml_quote_bytes(longs, sizeof longs, out, sizeof out);
    assert_int_equal(strlen(out), 1 + 64 + 3 + 1);
    assert_string_equal(out + 65, "...\"");
    char tiny[10];
    tsr_yaml_quote_bytes(longs, sizeof longs, tiny, sizeof tiny);
    assert_true(strlen(tiny) < sizeof tiny);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_nul_bytes),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_node_limit),
        cmocka_unit_test(test_size_limits),
        cmocka_unit_test(test_empty_documents),
        cmocka_unit_test(test_tree),
        cmocka_unit_test(test_accessor_refusals),
        cmocka_unit_test(test_accessors),
        cmocka_unit_test(test_quote_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
