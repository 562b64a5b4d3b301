/* SPIFFE IDs per the SPIFFE-ID standard (spiffe/spiffe standards/SPIFFE-ID.md)
 * and Tessera's principal kinds (docs/identity.md, "Identities").
 *
 * Everything here treats its input as untrusted bytes: (ptr, len), checked
 * against a hard maximum first, every byte classified, nothing folded or
 * decoded. A failure names the first rule broken. */
#include "ca_spiffe.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "tsr_name.h"

static const char SCHEME[] = "spiffe://";
#define SCHEME_LEN (sizeof SCHEME - 1)

static int is_upper(char c) { return c >= 'A' && c <= 'Z'; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* A character that is not allowed where it stands: say why, as precisely as
 * the character allows. `where` is "trust domain" or "path". */
static int bad_char(char c, const char *where)
{
    switch (c) {
    case '\0': return TSR_FAIL(TSR_E_INPUT, "embedded NUL byte in %s", where);
    case '%': return TSR_FAIL(TSR_E_INPUT, "percent-encoding not allowed (in %s)", where);
    case '?': return TSR_FAIL(TSR_E_INPUT, "query not allowed");
    case '#': return TSR_FAIL(TSR_E_INPUT, "fragment not allowed");
    default: break;
    }
    unsigned char u = (unsigned char)c;
    if (u > 0x20 && u < 0x7f)
        return TSR_FAIL(TSR_E_INPUT, "invalid character '%c' in %s", c, where);
    return TSR_FAIL(TSR_E_INPUT, "invalid byte 0x%02x in %s", u, where);
}

/* [a-z0-9._-]{1,255}. */
static int check_trust_domain(const char *td, size_t len)
{
    TSR_ENSURE(len > 0, TSR_E_INPUT, "missing trust domain");
    TSR_ENSURE(len <= CA_TRUST_DOMAIN_MAX, TSR_E_INPUT, "trust domain longer than %d bytes",
               CA_TRUST_DOMAIN_MAX);
    /* "user:secret@host": name the userinfo, not the ':' inside it. */
    TSR_ENSURE(memchr(td, '@', len) == NULL, TSR_E_INPUT, "userinfo not allowed");
    for (size_t i = 0; i < len; i++) {
        char c = td[i];
        if (tsr_name_char(c)) continue;
        if (is_upper(c)) return TSR_FAIL(TSR_E_INPUT, "uppercase letter in trust domain");
        if (c == ':') return TSR_FAIL(TSR_E_INPUT, "port not allowed");
        return bad_char(c, "trust domain");
    }
    return 0;
}

int ca_trust_domain_validate(const char *td, size_t len)
{
    TSR_ENSURE(td != NULL || len == 0, TSR_E_INPUT, "missing trust domain");
    return check_trust_domain(td, len);
}

/* "" or ("/" segment)+ with segment [A-Za-z0-9._-]+, not "." or "..". */
static int check_path(const char *path, size_t len)
{
    size_t i = 0;
    while (i < len) {
        TSR_ENSURE(path[i] == '/', TSR_E_INPUT, "path must start with '/'");
        size_t start = ++i;
        while (i < len && path[i] != '/') {
            char c = path[i];
            if (!(tsr_name_char(c) || is_upper(c)))  /* [A-Za-z0-9._-] */
                return bad_char(c, "path");
            i++;
        }
        size_t seg = i - start;
        if (seg == 0) {
            if (i == len) return TSR_FAIL(TSR_E_INPUT, "trailing slash");
            return TSR_FAIL(TSR_E_INPUT, "empty path segment");
        }
        if ((seg == 1 && path[start] == '.') ||
            (seg == 2 && path[start] == '.' && path[start + 1] == '.'))
            return TSR_FAIL(TSR_E_INPUT, "dot segment ('.' or '..') not allowed in path");
    }
    return 0;
}

int ca_spiffe_parse(const char *s, size_t len, ca_spiffe_id *out)
{
    TSR_ENSURE(out != NULL, TSR_E_INTERNAL, "ca_spiffe_parse: no output");
    TSR_ENSURE(s != NULL && len > 0, TSR_E_INPUT, "empty SPIFFE ID");
    TSR_ENSURE(len <= CA_SPIFFE_ID_MAX, TSR_E_INPUT, "SPIFFE ID longer than %d bytes",
               CA_SPIFFE_ID_MAX);
    /* A NUL anywhere would let a C-string reader see a different ID. */
    TSR_ENSURE(memchr(s, '\0', len) == NULL, TSR_E_INPUT, "embedded NUL byte in SPIFFE ID");

    if (len < SCHEME_LEN || memcmp(s, SCHEME, SCHEME_LEN) != 0) {
        if (len >= SCHEME_LEN && strncasecmp(s, SCHEME, SCHEME_LEN) == 0)
            return TSR_FAIL(TSR_E_INPUT, "scheme must be lowercase \"spiffe\"");
        if (len >= 7 && memcmp(s, "spiffe:", 7) == 0)
            return TSR_FAIL(TSR_E_INPUT, "missing \"//\" after \"spiffe:\"");
        return TSR_FAIL(TSR_E_INPUT, "scheme must be \"spiffe://\"");
    }

    const char *td = s + SCHEME_LEN;
    size_t rest = len - SCHEME_LEN;
    const char *slash = memchr(td, '/', rest);
    size_t td_len = slash != NULL ? (size_t)(slash - td) : rest;
    TSR_GUARD(check_trust_domain(td, td_len));
    const char *path = td + td_len;
    size_t path_len = rest - td_len;
    TSR_GUARD(check_path(path, path_len));

    memcpy(out->text, s, len);
    out->text[len] = '\0';
    memcpy(out->trust_domain, td, td_len);
    out->trust_domain[td_len] = '\0';
    memcpy(out->path, path, path_len);
    out->path[path_len] = '\0';
    return 0;
}

const char *ca_kind_name(enum ca_kind kind)
{
    switch (kind) {
    case CA_KIND_NONE: return "none";
    case CA_KIND_SANDBOX: return "sandbox";
    case CA_KIND_USER: return "user";
    case CA_KIND_GATEWAY: return "gateway";
    case CA_KIND_PROXY: return "proxy";
    }
    return "unknown";
}

int ca_uuid_validate(const char *s, size_t len)
{
    TSR_ENSURE(s != NULL && len == CA_UUID_LEN, TSR_E_INPUT, "UUID must be %d bytes, not %zu",
               CA_UUID_LEN, s != NULL ? len : 0);
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            TSR_ENSURE(c == '-', TSR_E_INPUT, "UUID must be 8-4-4-4-12 hex digits");
            continue;
        }
        if (is_digit(c) || (c >= 'a' && c <= 'f')) continue;
        if (c >= 'A' && c <= 'F') return TSR_FAIL(TSR_E_INPUT, "UUID must be lowercase");
        return TSR_FAIL(TSR_E_INPUT, "UUID must be 8-4-4-4-12 hex digits");
    }
    return 0;
}

int ca_uuid_generate(char out[CA_UUID_LEN + 1])
{
    unsigned char b[16];
    TSR_GUARD_OSSL(RAND_bytes(b, sizeof b), TSR_E_INTERNAL, "RAND_bytes");
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < sizeof b; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
    TSR_ASSERT(o == CA_UUID_LEN);
    return 0;
}

int ca_name_validate(const char *s, size_t len)
{
    TSR_ENSURE(s != NULL && len > 0, TSR_E_INPUT, "empty name");
    TSR_ENSURE(len <= CA_NAME_MAX, TSR_E_INPUT, "name longer than %d bytes", CA_NAME_MAX);
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (tsr_name_char(c)) continue;
        if (is_upper(c)) return TSR_FAIL(TSR_E_INPUT, "uppercase letter in name");
        return bad_char(c, "name");
    }
    /* They could never appear as a path segment of a valid ID. */
    TSR_ENSURE(!(len == 1 && s[0] == '.') && !(len == 2 && s[0] == '.' && s[1] == '.'),
               TSR_E_INPUT, "name may not be '.' or '..'");
    return 0;
}

/* The kind word and the segments after it, from a validated path. */
struct path_split {
    const char *kind;
    size_t kind_len;
    const char *name; /* the second segment, or NULL */
    size_t name_len;
    int extra; /* more than two segments */
};

static void split_path(const char *path, struct path_split *sp)
{
    memset(sp, 0, sizeof *sp);
    /* path is "/a[/b[/...]]" (validated: non-empty segments). */
    sp->kind = path + 1;
    const char *p = strchr(sp->kind, '/');
    if (p == NULL) {
        sp->kind_len = strlen(sp->kind);
        return;
    }
    sp->kind_len = (size_t)(p - sp->kind);
    sp->name = p + 1;
    const char *q = strchr(sp->name, '/');
    sp->name_len = q != NULL ? (size_t)(q - sp->name) : strlen(sp->name);
    sp->extra = q != NULL;
}

static int word_is(const char *p, size_t n, const char *word)
{
    return n == strlen(word) && memcmp(p, word, n) == 0;
}

int ca_identity_classify(const ca_spiffe_id *id, const char *trust_domain, ca_identity *out)
{
    TSR_ENSURE(id != NULL && trust_domain != NULL && out != NULL, TSR_E_INTERNAL,
               "ca_identity_classify: missing argument");
    /* Re-parse the text: the struct may not have come from ca_spiffe_parse, and
     * its parts must be exactly the text's parts. */
    ca_identity tmp;
    memset(&tmp, 0, sizeof tmp);
    size_t text_len = strnlen(id->text, sizeof id->text);
    TSR_ENSURE(text_len < sizeof id->text, TSR_E_UNAUTH, "SPIFFE ID is not terminated");
    if (ca_spiffe_parse(id->text, text_len, &tmp.id) != 0)
        return TSR_FAIL(TSR_E_UNAUTH, "invalid SPIFFE ID: %s", tsr_errmsg());
    TSR_ENSURE(strcmp(tmp.id.trust_domain, id->trust_domain) == 0 &&
                   strcmp(tmp.id.path, id->path) == 0,
               TSR_E_UNAUTH, "SPIFFE ID parts do not match its text");

    TSR_ENSURE(strcmp(tmp.id.trust_domain, trust_domain) == 0, TSR_E_UNAUTH,
               "foreign trust domain %s", tmp.id.trust_domain);
    TSR_ENSURE(tmp.id.path[0] != '\0', TSR_E_UNAUTH,
               "unknown identity kind: root SPIFFE ID (no path) identifies no principal");

    struct path_split sp;
    split_path(tmp.id.path, &sp);
    if (word_is(sp.kind, sp.kind_len, "gateway")) {
        TSR_ENSURE(sp.name == NULL, TSR_E_UNAUTH,
                   "unknown identity kind: a gateway ID is exactly /gateway");
        tmp.kind = CA_KIND_GATEWAY;
    } else if (word_is(sp.kind, sp.kind_len, "sandbox")) {
        TSR_ENSURE(sp.name != NULL && !sp.extra, TSR_E_UNAUTH,
                   "unknown identity kind: a sandbox ID is exactly /sandbox/<uuid>");
        if (ca_uuid_validate(sp.name, sp.name_len) != 0)
            return TSR_FAIL(TSR_E_UNAUTH, "bad sandbox id: %s", tsr_errmsg());
        tmp.kind = CA_KIND_SANDBOX;
    } else if (word_is(sp.kind, sp.kind_len, "user") || word_is(sp.kind, sp.kind_len, "proxy")) {
        int user = sp.kind_len == 4;
        TSR_ENSURE(sp.name != NULL && !sp.extra, TSR_E_UNAUTH,
                   "unknown identity kind: a %s ID is exactly /%s/<name>", user ? "user" : "proxy",
                   user ? "user" : "proxy");
        if (ca_name_validate(sp.name, sp.name_len) != 0)
            return TSR_FAIL(TSR_E_UNAUTH, "bad %s name: %s", user ? "user" : "proxy",
                            tsr_errmsg());
        tmp.kind = user ? CA_KIND_USER : CA_KIND_PROXY;
    } else {
        /* Validated path characters only, at most 2048 bytes: safe to quote. */
        return TSR_FAIL(TSR_E_UNAUTH, "unknown identity kind \"%.*s\"",
                        (int)(sp.kind_len > 64 ? 64 : sp.kind_len), sp.kind);
    }
    if (sp.name != NULL) {
        TSR_ASSERT(sp.name_len <= CA_NAME_MAX);
        memcpy(tmp.name, sp.name, sp.name_len);
        tmp.name[sp.name_len] = '\0';
    }
    *out = tmp;
    return 0;
}

/* Re-validate a built ID, and that it maps back to the principal it was built for. */
static int check_formatted(const char *text, size_t len, enum ca_kind kind,
                           const char *trust_domain)
{
    ca_spiffe_id id;
    ca_identity check;
    TSR_GUARD(ca_spiffe_parse(text, len, &id));
    TSR_GUARD(ca_identity_classify(&id, trust_domain, &check));
    TSR_ENSURE(check.kind == kind, TSR_E_INTERNAL, "formatted ID maps to another kind");
    return 0;
}

int ca_spiffe_format(enum ca_kind kind, const char *trust_domain, const char *name, char *out,
                     size_t cap)
{
    TSR_ENSURE(out != NULL && cap > 0, TSR_E_INTERNAL, "ca_spiffe_format: no output");
    out[0] = '\0';
    TSR_ENSURE(trust_domain != NULL, TSR_E_INPUT, "missing trust domain");
    TSR_GUARD(ca_trust_domain_validate(trust_domain, strlen(trust_domain)));
    const char *word = NULL;
    switch (kind) {
    case CA_KIND_GATEWAY:
        TSR_ENSURE(name == NULL || name[0] == '\0', TSR_E_INPUT, "a gateway ID takes no name");
        break;
    case CA_KIND_SANDBOX:
        TSR_ENSURE(name != NULL, TSR_E_INPUT, "missing sandbox id");
        TSR_GUARD(ca_uuid_validate(name, strlen(name)));
        word = "sandbox";
        break;
    case CA_KIND_USER:
    case CA_KIND_PROXY:
        TSR_ENSURE(name != NULL, TSR_E_INPUT, "missing name");
        TSR_GUARD(ca_name_validate(name, strlen(name)));
        word = kind == CA_KIND_USER ? "user" : "proxy";
        break;
    case CA_KIND_NONE:
    default: return TSR_FAIL(TSR_E_INPUT, "no identity kind");
    }
    int n = word != NULL ? snprintf(out, cap, "spiffe://%s/%s/%s", trust_domain, word, name)
                         : snprintf(out, cap, "spiffe://%s/gateway", trust_domain);
    if (n < 0 || (size_t)n >= cap) {
        out[0] = '\0';
        return TSR_FAIL(TSR_E_LIMIT, "SPIFFE ID does not fit in %zu bytes", cap);
    }
    if (check_formatted(out, (size_t)n, kind, trust_domain) != 0) {
        out[0] = '\0';
        return -1;
    }
    return 0;
}
