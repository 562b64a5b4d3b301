#include "gw_handler.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca_pem.h"
#include "ca_spiffe.h"
#include "gw_config.h"
#include "tsr_err.h"
#include "tsr_time.h"

gw_app *gw_app_of(const gw_call_ctx *ctx)
{
    TSR_ASSERT(ctx != NULL && ctx->app != NULL);
    return ctx->app;
}

gw_worker *gw_worker_of(const gw_call_ctx *ctx)
{
    TSR_ASSERT(ctx != NULL && ctx->worker != NULL);
    gw_worker *w = ctx->worker;
    TSR_ASSERT(w->app == ctx->app && w->store != NULL);
    return w;
}

void *gw_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *msg, size_t len,
                gw_response *resp)
{
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, len, msg);
    if (m == NULL)
        gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT, "malformed %s message", desc->name);
    return m;
}

void gw_free_unpacked(void *msg)
{
    if (msg != NULL) protobuf_c_message_free_unpacked(msg, NULL);
}

void gw_reply(gw_response *resp, const void *msg)
{
    const ProtobufCMessage *m = msg;
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n > 0 ? n : 1);
    if (buf == NULL) {
        gw_response_fail(resp, GW_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    protobuf_c_message_pack(m, buf);
    resp->status = GW_STATUS_OK;
    resp->message[0] = '\0';
    resp->body = buf;
    resp->body_len = n;
}

void *gw_repeated_new(const ProtobufCMessageDescriptor *desc, size_t n, gw_response *resp)
{
    TSR_ASSERT(desc != NULL && desc->sizeof_message > 0);
    const size_t align = _Alignof(max_align_t);
    size_t item = (desc->sizeof_message + align - 1) / align * align;
    /* Room for n + 1 pointers, rounded up so the elements are aligned. */
    if (n >= (SIZE_MAX / 2) / sizeof(void *) || (n > 0 && item > (SIZE_MAX / 2) / n)) {
        gw_response_fail(resp, GW_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return NULL;
    }
    size_t head = ((n + 1) * sizeof(void *) + align - 1) / align * align;
    unsigned char *block = calloc(1, head + n * item);
    if (block == NULL) {
        gw_response_fail(resp, GW_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return NULL;
    }
    ProtobufCMessage **ptrs = (ProtobufCMessage **)(void *)block;
    for (size_t i = 0; i < n; i++) {
        ptrs[i] = (ProtobufCMessage *)(void *)(block + head + i * item);
        protobuf_c_message_init(desc, ptrs[i]);
    }
    ptrs[n] = NULL;
    return block;
}

int gw_page_size(int32_t requested, int *page, gw_response *resp)
{
    if (requested < 0 || requested > GW_PAGE_MAX)
        return gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT, "page_size must be 0..%d",
                                GW_PAGE_MAX);
    *page = requested == 0 ? GW_PAGE_DEFAULT : (int)requested;
    return 0;
}

/* A canonical decimal int64 >= 0 of [p, end): digits only, no leading zero. */
static int parse_count(const char *p, const char *end, int64_t *out)
{
    size_t len = (size_t)(end - p);
    if (len == 0 || len > 19 || (p[0] == '0' && len > 1)) return -1;
    int64_t v = 0;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9') return -1;
        if (v > (INT64_MAX - (*p - '0')) / 10) return -1;
        v = v * 10 + (*p - '0');
    }
    *out = v;
    return 0;
}

int gw_page_token_parse(const char *token, const char *sandbox_id, int with_key,
                        gw_page_cursor *out, gw_response *resp)
{
    memset(out, 0, sizeof *out);
    if (token == NULL || token[0] == '\0') return 0;
    size_t len = strnlen(token, GW_PAGE_TOKEN_MAX + 1);
    size_t id_len = strlen(sandbox_id);
    const char *p = token, *end = token + len;
    if (len > GW_PAGE_TOKEN_MAX || strncmp(p, "v1.", 3) != 0) goto bad;
    p += 3;
    if ((size_t)(end - p) <= id_len || memcmp(p, sandbox_id, id_len) != 0 || p[id_len] != '.')
        goto bad;
    p += id_len + 1;
    const char *dot = memchr(p, '.', (size_t)(end - p));
    if ((dot != NULL) != (with_key != 0)) goto bad;
    if (parse_count(p, dot != NULL ? dot : end, &out->n) != 0) goto bad;
    if (dot != NULL) {
        size_t klen = (size_t)(end - dot - 1);
        if (klen == 0 || klen >= sizeof out->key) goto bad;
        for (size_t i = 0; i < klen; i++) {
            char c = dot[1 + i];
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) goto bad;
        }
        memcpy(out->key, dot + 1, klen);
        out->key[klen] = '\0';
    }
    return 0;
bad:
    memset(out, 0, sizeof *out);
    return gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT, "bad page_token");
}

void gw_page_token_format(char out[GW_PAGE_TOKEN_MAX + 1], const char *sandbox_id, int64_t n,
                          const char *key)
{
    if (key != NULL && key[0] != '\0')
        snprintf(out, GW_PAGE_TOKEN_MAX + 1, "v1.%s.%lld.%s", sandbox_id, (long long)n, key);
    else
        snprintf(out, GW_PAGE_TOKEN_MAX + 1, "v1.%s.%lld", sandbox_id, (long long)n);
}

static int load_sandbox(const gw_call_ctx *ctx, const char *id, int include_deleted,
                        gw_sandbox_rec *sb, gw_response *resp)
{
    gw_worker *w = gw_worker_of(ctx);
    if (gw_store_sandbox_get(w->store, id, sb) != 0) {
        if (tsr_errcat() == TSR_E_NOTFOUND)
            return gw_response_fail(resp, GW_STATUS_NOT_FOUND, "sandbox %s not found", id);
        gw_fail_from_error(resp);
        return -1;
    }
    if (sb->deleted_at != 0 && !include_deleted)
        return gw_response_fail(resp, GW_STATUS_NOT_FOUND, "sandbox %s not found", id);
    return 0;
}

int gw_resolve_sandbox_id(const gw_call_ctx *ctx, enum gw_rpc_id rpc, const char *id,
                          int include_deleted, gw_sandbox_rec *sb, gw_response *resp)
{
    if (gw_authz_target(ctx, rpc, id, resp) != 0) return -1;
    if (id == NULL || ca_uuid_validate(id, strlen(id)) != 0)
        return gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT,
                                "sandbox_id must be a lowercase UUID");
    return load_sandbox(ctx, id, include_deleted, sb, resp);
}

int gw_resolve_sandbox_name(const gw_call_ctx *ctx, enum gw_rpc_id rpc, const char *name,
                            gw_sandbox_rec *sb, gw_response *resp)
{
    int is_sandbox = gw_authz_is_sandbox(ctx);
    if (name == NULL || ca_name_validate(name, strlen(name)) != 0) {
        /* A sandbox learns nothing from a malformed name either. */
        if (is_sandbox) return gw_authz_target(ctx, rpc, "", resp);
        return gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT,
                                "name must match [a-z0-9._-]{1,64}");
    }
    gw_worker *w = gw_worker_of(ctx);
    if (gw_store_sandbox_find_by_name(w->store, name, sb) != 0) {
        if (tsr_errcat() != TSR_E_NOTFOUND) {
            gw_fail_from_error(resp);
            return -1;
        }
        if (is_sandbox) return gw_authz_target(ctx, rpc, "", resp);
        return gw_response_fail(resp, GW_STATUS_NOT_FOUND, "sandbox named %s not found", name);
    }
    return gw_authz_target(ctx, rpc, sb->id, resp);
}

int gw_resolve_sandbox_ref(const gw_call_ctx *ctx, enum gw_rpc_id rpc, const char *id,
                           const char *name, gw_sandbox_rec *sb, gw_response *resp)
{
    int has_id = id != NULL && id[0] != '\0';
    int has_name = name != NULL && name[0] != '\0';
    if (has_id == has_name)
        return gw_response_fail(resp, GW_STATUS_INVALID_ARGUMENT,
                                "set exactly one of id or name");
    return has_id ? gw_resolve_sandbox_id(ctx, rpc, id, 0, sb, resp)
                  : gw_resolve_sandbox_name(ctx, rpc, name, sb, resp);
}

void gw_sandbox_to_proto(gw_sandbox_rec *rec, char *spiffe, size_t spiffe_cap,
                         const char *trust_domain, Tessera__V1__Sandbox *out)
{
    tessera__v1__sandbox__init(out);
    if (ca_spiffe_format(CA_KIND_SANDBOX, trust_domain, rec->id, spiffe, spiffe_cap) != 0)
        spiffe[0] = '\0';
    out->id = rec->id;
    out->name = rec->name;
    out->spiffe_id = spiffe;
    out->driver = rec->driver;
    out->state = rec->state;
    out->created_at = rec->created_at;
    out->policy_version = rec->policy_version;
    out->image = rec->image;
    out->exited = rec->exited;
    out->exit_code = rec->exit_code;
}
