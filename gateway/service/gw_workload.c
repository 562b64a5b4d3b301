/* The workload fields of CreateSandboxRequest (gw_workload.h). */
#include "gw_workload.h"

#include <string.h>

#include "tsr_env.h"
#include "tsr_utf8.h"

bool gw_env_name_valid(const char *s)
{
    return s != NULL && tsr_env_name_valid(s, strlen(s));
}

/* ---- image references (Docker's distribution/reference grammar) ---------------- */

/* A cursor over [p, end). */
typedef struct ref_cur {
    const char *p, *end;
} ref_cur;

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
    return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static bool is_word(char c)
{
    return is_alnum(c) || c == '_';
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* [a-z0-9]+ ( ("." | "_" | "__" | "-"+) [a-z0-9]+ )*, the whole range. */
static bool path_component(const char *p, const char *end)
{
    if (p == end || !is_lower_alnum(*p)) return false;
    while (p < end) {
        while (p < end && is_lower_alnum(*p)) p++;
        if (p == end) return true;
        if (*p == '.') {
            p++;
        } else if (*p == '_') {
            p++;
            if (p < end && *p == '_') p++;
        } else if (*p == '-') {
            while (p < end && *p == '-') p++;
        } else {
            return false;
        }
        if (p == end || !is_lower_alnum(*p)) return false;
    }
    return true;
}

/* path-component ( "/" path-component )*, the whole range. */
static bool remote_name(const char *p, const char *end)
{
    if (p == end) return false;
    for (;;) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *e = slash != NULL ? slash : end;
        if (!path_component(p, e)) return false;
        if (slash == NULL) return true;
        p = slash + 1;
    }
}

/* domain-component: [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]. */
static bool domain_component(const char *p, const char *end)
{
    if (p == end || !is_alnum(*p) || !is_alnum(end[-1])) return false;
    for (; p < end; p++)
        if (!is_alnum(*p) && *p != '-') return false;
    return true;
}

/* host [":" port], the whole range; host a dotted domain name or "[" ipv6 "]". */
static bool domain_and_port(const char *p, const char *end)
{
    if (p == end) return false;
    const char *host_end;
    if (*p == '[') {
        const char *close = memchr(p, ']', (size_t)(end - p));
        if (close == NULL || close == p + 1) return false;
        for (const char *q = p + 1; q < close; q++)
            if (!is_hex(*q) && *q != ':') return false;
        host_end = close + 1;
    } else {
        const char *colon = memchr(p, ':', (size_t)(end - p));
        host_end = colon != NULL ? colon : end;
        for (const char *q = p;;) {
            const char *dot = memchr(q, '.', (size_t)(host_end - q));
            const char *e = dot != NULL ? dot : host_end;
            if (!domain_component(q, e)) return false;
            if (dot == NULL) break;
            q = dot + 1;
        }
    }
    if (host_end == end) return true;
    if (*host_end != ':' || host_end + 1 == end) return false;
    for (const char *q = host_end + 1; q < end; q++)
        if (*q < '0' || *q > '9') return false;
    return true;
}

/* [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}, the whole range. */
static bool tag_valid(const char *p, const char *end)
{
    if (p == end || end - p > 128 || !is_word(*p)) return false;
    for (p++; p < end; p++)
        if (!is_word(*p) && *p != '.' && *p != '-') return false;
    return true;
}

/* [A-Za-z][A-Za-z0-9]* ([-_+.][A-Za-z][A-Za-z0-9]*)* ":" [0-9A-Fa-f]{32,}. */
static bool digest_valid(const char *p, const char *end)
{
    const char *colon = memchr(p, ':', (size_t)(end - p));
    if (colon == NULL || end - (colon + 1) < 32) return false;
    for (const char *q = colon + 1; q < end; q++)
        if (!is_hex(*q)) return false;
    const char *q = p;
    for (;;) {
        bool letter = q < colon && ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z'));
        if (!letter) return false;
        while (q < colon && is_alnum(*q)) q++;
        if (q == colon) return true;
        if (*q != '-' && *q != '_' && *q != '+' && *q != '.') return false;
        q++;
    }
}

bool gw_image_ref_valid(const char *s, size_t len)
{
    if (s == NULL || len == 0 || len > GW_IMAGE_MAX || memchr(s, '\0', len) != NULL) return false;
    const char *end = s + len;
    /* The name and tag hold no '@': the first one starts the digest. */
    const char *at = memchr(s, '@', len);
    if (at != NULL && !digest_valid(at + 1, end)) return false;
    const char *name_end = at != NULL ? at : end;
    /* A ':' after the last '/' starts the tag (one before it is a port). */
    const char *last_slash = NULL;
    for (const char *q = s; q < name_end; q++)
        if (*q == '/') last_slash = q;
    const char *from = last_slash != NULL ? last_slash + 1 : s;
    const char *colon = memchr(from, ':', (size_t)(name_end - from));
    if (colon != NULL) {
        if (!tag_valid(colon + 1, name_end)) return false;
        name_end = colon;
    }
    if (name_end - s > GW_IMAGE_NAME_MAX) return false;
    /* As the anchored expression matches: the first component as a domain
     * followed by a remote name, or the whole name as a remote name. */
    const char *first = memchr(s, '/', (size_t)(name_end - s));
    if (first != NULL && domain_and_port(s, first) && remote_name(first + 1, name_end))
        return true;
    return remote_name(s, name_end);
}

/* ---- the wire: NUL bytes in strings --------------------------------------------------- */

enum { WIRE_VARINT = 0, WIRE_I64 = 1, WIRE_LEN = 2, WIRE_I32 = 5 };
enum { FIELD_IMAGE = 5, FIELD_COMMAND = 6, FIELD_ENV = 7 };

/* A base-128 varint of at most 10 bytes; false when truncated or too long. */
static bool wire_varint(ref_cur *c, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 70 && c->p < c->end; shift += 7) {
        unsigned char b = (unsigned char)*c->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* The next field: its number, wire type and, for WIRE_LEN, its bytes.
 * 1 read, 0 at the end, -1 malformed. */
static int wire_next(ref_cur *c, uint32_t *field, unsigned *type, ref_cur *val)
{
    uint64_t key = 0, n = 0;
    if (c->p == c->end) return 0;
    if (!wire_varint(c, &key) || (key >> 3) == 0 || (key >> 3) > UINT32_MAX) return -1;
    *field = (uint32_t)(key >> 3);
    *type = (unsigned)(key & 7);
    size_t left = (size_t)(c->end - c->p);
    switch (*type) {
    case WIRE_VARINT: return wire_varint(c, &n) ? 1 : -1;
    case WIRE_I64: n = 8; break;
    case WIRE_I32: n = 4; break;
    case WIRE_LEN:
        if (!wire_varint(c, &n)) return -1;
        left = (size_t)(c->end - c->p);
        break;
    default: return -1;   /* groups: not in this message */
    }
    if (n > left) return -1;
    val->p = c->p;
    val->end = c->p + n;
    c->p += n;
    return 1;
}

static bool has_nul(const ref_cur *v)
{
    return memchr(v->p, '\0', (size_t)(v->end - v->p)) != NULL;
}

int gw_workload_wire_check(const uint8_t *msg, size_t len, gw_response *resp)
{
    ref_cur c = {(const char *)msg, (const char *)msg + len}, v;
    size_t n_command = 0, n_env = 0;
    uint32_t field;
    unsigned type;
    int r;
    if (len == 0) return 0;
    while ((r = wire_next(&c, &field, &type, &v)) == 1) {
        if (type != WIRE_LEN) continue;
        if (field == FIELD_IMAGE && has_nul(&v))
            return gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT,
                                    "image contains a NUL byte");
        if (field == FIELD_COMMAND) {
            if (has_nul(&v))
                return gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT,
                                        "command[%zu] contains a NUL byte", n_command);
            n_command++;
        }
        if (field == FIELD_ENV) {
            /* A map entry: key (1) and value (2), both strings. */
            ref_cur e = v, kv;
            uint32_t f;
            unsigned t;
            int er;
            while ((er = wire_next(&e, &f, &t, &kv)) == 1)
                if (t == WIRE_LEN && (f == 1 || f == 2) && has_nul(&kv))
                    return gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT,
                                            "env entry %zu: its %s contains a NUL byte", n_env,
                                            f == 1 ? "name" : "value");
            if (er < 0) {
                r = -1;
                break;
            }
            n_env++;
        }
    }
    if (r < 0 || c.p != c.end)
        return gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT,
                                "malformed tessera.v1.CreateSandboxRequest message");
    return 0;
}

/* ---- the unpacked fields ----------------------------------------------------------------- */

int gw_workload_validate(const char *image, char *const *command, size_t n_command,
                         const gw_env_var *env, size_t n_env, gw_response *resp)
{
    size_t ilen = image != NULL ? strlen(image) : 0;
    if (ilen > GW_IMAGE_MAX)
        return gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT,
                                "image of %zu bytes exceeds %d", ilen, GW_IMAGE_MAX);
    if (ilen > 0 && !gw_image_ref_valid(image, ilen))
        return gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT,
                                "image \"%.128s\" is not an image reference "
                                "([HOST[:PORT]/]NAME[:TAG][@DIGEST], NAME in lowercase)",
                                tsr_utf8_valid(image, ilen) ? image : "(not UTF-8)");

    if (n_command > GW_COMMAND_MAX_ARGS)
        return gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT,
                                "command has %zu arguments (maximum %d)", n_command,
                                GW_COMMAND_MAX_ARGS);
    size_t bytes = 0;
    for (size_t i = 0; i < n_command; i++) {
        size_t alen = strlen(command[i]);
        bytes += alen + 1;
        if (bytes > GW_COMMAND_MAX_BYTES)
            return gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT,
                                    "command exceeds %d bytes (its arguments with a NUL each)",
                                    GW_COMMAND_MAX_BYTES);
        if (!tsr_utf8_valid(command[i], alen))
            return gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT,
                                    "command[%zu] is not valid UTF-8", i);
    }
    if (n_command > 0 && command[0][0] == '\0')
        return gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT,
                                "command[0] (the program) is empty");

    static const gw_env_bounds plain = {"env", GW_WORKLOAD_ENV_MAX_VARS,
                                        GW_WORKLOAD_ENV_MAX_VALUE, GW_WORKLOAD_ENV_MAX_BYTES};
    return gw_env_check(env, n_env, &plain, resp);
}

int gw_env_check(const gw_env_var *env, size_t n, const gw_env_bounds *b, gw_response *resp)
{
    if (n > b->max_vars)
        return gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT,
                                "%s has %zu variables (maximum %zu)", b->field, n, b->max_vars);
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        if (!gw_env_name_valid(env[i].name))
            return gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT,
                                    "%s name \"%.64s\" must match [A-Za-z_][A-Za-z0-9_]*",
                                    b->field,
                                    tsr_utf8_valid(env[i].name, strlen(env[i].name))
                                        ? env[i].name
                                        : "(not UTF-8)");
        for (size_t k = 0; k < i; k++)
            if (strcmp(env[k].name, env[i].name) == 0)
                return gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT,
                                        "%s name %s is given twice", b->field, env[i].name);
        size_t vlen = strlen(env[i].value);
        if (vlen > b->max_value)
            return gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT,
                                    "%s value of %s exceeds %zu bytes", b->field, env[i].name,
                                    b->max_value);
        /* Served again as a proto3 string, which must be UTF-8. */
        if (!tsr_utf8_valid(env[i].value, vlen))
            return gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT,
                                    "%s value of %s is not valid UTF-8", b->field, env[i].name);
        bytes += strlen(env[i].name) + 1 + vlen + 1;
        if (b->max_bytes > 0 && bytes > b->max_bytes)
            return gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT,
                                    "%s exceeds %zu bytes (NAME=VALUE with a NUL each)", b->field,
                                    b->max_bytes);
    }
    return 0;
}
