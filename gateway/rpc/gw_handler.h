/* Helpers every RPC handler uses: decoding, encoding, status mapping and
 * sandbox resolution through the guard. */
#ifndef GW_HANDLER_H
#define GW_HANDLER_H

#include <protobuf-c/protobuf-c.h>

#include "gw_app.h"
#include "gw_authz.h"
#include "gw_rpc.h"
#include "gw_store.h"
#include "gw_svc_cert.h"
#include "tessera/v1/gateway.pb-c.h"

/* Decode a request; NULL (with INVALID_ARGUMENT in resp) if malformed. */
void *gw_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *msg, size_t len,
                gw_response *resp);
void gw_free_unpacked(void *msg);
/* Encode the reply into resp->body with status OK. */
void gw_reply(gw_response *resp, const void *msg);

/* Backing store of a repeated message field of n elements, in one block:
 * a NULL-terminated array of n pointers, each to its own element already
 * initialised from desc. Assign the result to a `T **` field directly and
 * release it with free() (one block, nothing inside is owned). NULL with
 * RESOURCE_EXHAUSTED in resp on overflow or out of memory. */
void *gw_repeated_new(const ProtobufCMessageDescriptor *desc, size_t n, gw_response *resp);

/* ---- pagination of List RPCs ---- */
#define GW_PAGE_DEFAULT 100
#define GW_PAGE_MAX 1000
/* Room for a per-sandbox page token: "v1.<uuid>.<int64>.<40 hex>". */
#define GW_PAGE_TOKEN_MAX 128

/* A List request's page_size: 0 -> GW_PAGE_DEFAULT; 1..GW_PAGE_MAX; anything
 * else INVALID_ARGUMENT. */
int gw_page_size(int32_t requested, int *page, gw_response *resp);

/* Where the next page of a per-sandbox list starts: after the row whose
 * order is (n, key) (key "" when the order is n alone). */
typedef struct gw_page_cursor {
    int64_t n;
    char key[41];
} gw_page_cursor;

/* Page tokens are opaque to callers and bound to one sandbox:
 * "v1.<sandbox-id>.<n>" or, with_key, "v1.<sandbox-id>.<n>.<key>" (key 1..40
 * lowercase hex digits). "" is the first page (n 0, key ""). A token that is
 * malformed, or was issued for another sandbox -> INVALID_ARGUMENT. The token
 * only positions a cursor: the rows are those of the sandbox the guard
 * admitted, whatever it says. */
int gw_page_token_parse(const char *token, const char *sandbox_id, int with_key,
                        gw_page_cursor *out, gw_response *resp);
void gw_page_token_format(char out[GW_PAGE_TOKEN_MAX + 1], const char *sandbox_id, int64_t n,
                          const char *key);


/* Id-keyed RPCs: the guard on the raw id first (before any store read), then
 * the id's format, then the store. Deleted sandboxes are NOT_FOUND unless
 * include_deleted. 0 with *sb filled, or -1 with resp set. */
int gw_resolve_sandbox_id(const gw_call_ctx *ctx, enum gw_rpc_id rpc, const char *id,
                          int include_deleted, gw_sandbox_rec *sb, gw_response *resp);
/* Name-keyed RPCs: resolve the name to a live sandbox, then the guard on its
 * id. A sandbox naming something that is not itself gets the same
 * cross-sandbox denial whether the name exists or not. */
int gw_resolve_sandbox_name(const gw_call_ctx *ctx, enum gw_rpc_id rpc, const char *name,
                            gw_sandbox_rec *sb, gw_response *resp);
/* GetSandbox / DeleteSandbox: exactly one of id, name. */
int gw_resolve_sandbox_ref(const gw_call_ctx *ctx, enum gw_rpc_id rpc, const char *id,
                           const char *name, gw_sandbox_rec *sb, gw_response *resp);

/* Fill a Sandbox message from a record (strings point into rec and spiffe). */
void gw_sandbox_to_proto(gw_sandbox_rec *rec, char *spiffe, size_t spiffe_cap,
                         const char *trust_domain, Tessera__V1__Sandbox *out);
#endif
