#include "gw_reflection.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/reflection/v1/reflection.pb-c.h"
#include "gw_reflection_data.h"

/* More files than this would be a build problem, not a request's. */
#define REFL_MAX_FILES 64
/* gRPC status codes carried in ErrorResponse.error_code. */
#define REFL_NOT_FOUND 5
#define REFL_INVALID_ARGUMENT 3

static int find_file(const char *name)
{
    for (size_t i = 0; i < gw_refl_n_files; i++)
        if (strcmp(gw_refl_files[i].name, name) == 0) return (int)i;
    return -1;
}

static int find_symbol(const char *name)
{
    if (name[0] == '.') name++;
    size_t lo = 0, hi = gw_refl_n_symbols;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(gw_refl_symbols[mid].name, name);
        if (c == 0) return gw_refl_symbols[mid].file;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

/* The file, then its imports transitively, each once. */
static size_t closure(int file, int *order, bool *seen)
{
    size_t n = 0, at = 0;
    order[n++] = file;
    seen[file] = true;
    while (at < n) {
        const gw_refl_file *f = &gw_refl_files[order[at++]];
        for (size_t d = 0; d < f->n_deps; d++) {
            int dep = f->deps[d];
            if (dep < 0 || (size_t)dep >= gw_refl_n_files || seen[dep]) continue;
            seen[dep] = true;
            order[n++] = dep;
        }
    }
    return n;
}

/* A name from a request, quoted in an error message, bounded. */
static void error_text(char *out, size_t cap, const char *what, const char *name)
{
    snprintf(out, cap, "%s not found: %.200s%s", what, name, strlen(name) > 200 ? "..." : "");
}

int gw_reflection_answer(const uint8_t *msg, size_t len, uint8_t **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    TSR_ENSURE(gw_refl_n_files <= REFL_MAX_FILES, TSR_E_INTERNAL, "too many descriptor files");
    Grpc__Reflection__V1__ServerReflectionRequest *req =
        grpc__reflection__v1__server_reflection_request__unpack(NULL, len, msg);
    TSR_ENSURE(req != NULL, TSR_E_INPUT, "malformed ServerReflectionRequest");

    /* The _init functions, not the INIT macros (their casts drop const). */
    Grpc__Reflection__V1__ServerReflectionResponse resp;
    Grpc__Reflection__V1__FileDescriptorResponse fdr;
    Grpc__Reflection__V1__ListServiceResponse lsr;
    Grpc__Reflection__V1__ExtensionNumberResponse enr;
    Grpc__Reflection__V1__ErrorResponse err;
    grpc__reflection__v1__server_reflection_response__init(&resp);
    grpc__reflection__v1__file_descriptor_response__init(&fdr);
    grpc__reflection__v1__list_service_response__init(&lsr);
    grpc__reflection__v1__extension_number_response__init(&enr);
    grpc__reflection__v1__error_response__init(&err);
    Grpc__Reflection__V1__ServiceResponse services[REFL_MAX_FILES * 4];
    Grpc__Reflection__V1__ServiceResponse *service_ptrs[REFL_MAX_FILES * 4];
    ProtobufCBinaryData files[REFL_MAX_FILES];
    int order[REFL_MAX_FILES];
    bool seen[REFL_MAX_FILES] = {0};
    char why[300];
    int file = -1;
    int rc = -1;

    /* The request as we understood it (known fields only: protobuf-c keeps
     * unknown ones, which need not survive a repack). */
    Grpc__Reflection__V1__ServerReflectionRequest orig;
    Grpc__Reflection__V1__ExtensionRequest ext;
    grpc__reflection__v1__server_reflection_request__init(&orig);
    grpc__reflection__v1__extension_request__init(&ext);
    orig.host = req->host;
    orig.message_request_case = req->message_request_case;
    switch (req->message_request_case) {
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
        orig.file_by_filename = req->file_by_filename;
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
        orig.file_containing_symbol = req->file_containing_symbol;
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
        if (req->file_containing_extension != NULL) {
            ext.containing_type = req->file_containing_extension->containing_type;
            ext.extension_number = req->file_containing_extension->extension_number;
        }
        orig.file_containing_extension = &ext;
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
        orig.all_extension_numbers_of_type = req->all_extension_numbers_of_type;
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
        orig.list_services = req->list_services;
        break;
    default:
        orig.message_request_case =
            GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST__NOT_SET;
        break;
    }
    resp.valid_host = req->host;
    resp.original_request = &orig;
    switch (req->message_request_case) {
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
        TSR_TRY_ENSURE(gw_refl_n_services <= sizeof services / sizeof services[0],
                       TSR_E_INTERNAL, "too many services");
        for (size_t i = 0; i < gw_refl_n_services; i++) {
            grpc__reflection__v1__service_response__init(&services[i]);
            services[i].name = (char *)(uintptr_t)gw_refl_services[i];
            service_ptrs[i] = &services[i];
        }
        lsr.n_service = gw_refl_n_services;
        lsr.service = service_ptrs;
        resp.message_response_case =
            GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
        resp.list_services_response = &lsr;
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
        file = find_file(req->file_by_filename);
        if (file < 0) error_text(why, sizeof why, "file", req->file_by_filename);
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
        file = find_symbol(req->file_containing_symbol);
        if (file < 0) error_text(why, sizeof why, "symbol", req->file_containing_symbol);
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
        /* A message we know has no extensions: an empty list. */
        if (find_symbol(req->all_extension_numbers_of_type) >= 0) {
            enr.base_type_name = req->all_extension_numbers_of_type;
            resp.message_response_case =
                GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE;
            resp.all_extension_numbers_response = &enr;
        } else {
            error_text(why, sizeof why, "type", req->all_extension_numbers_of_type);
        }
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
        snprintf(why, sizeof why, "extension not found: no extensions are defined");
        break;
    default:
        snprintf(why, sizeof why, "empty or unknown reflection request");
        err.error_code = REFL_INVALID_ARGUMENT;
        break;
    }
    if (file >= 0) {
        size_t n = closure(file, order, seen);
        for (size_t i = 0; i < n; i++) {
            files[i].data = (uint8_t *)(uintptr_t)gw_refl_files[order[i]].data;
            files[i].len = gw_refl_files[order[i]].len;
        }
        fdr.n_file_descriptor_proto = n;
        fdr.file_descriptor_proto = files;
        resp.message_response_case =
            GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
        resp.file_descriptor_response = &fdr;
    } else if (resp.message_response_case ==
               GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE__NOT_SET) {
        if (err.error_code == 0) err.error_code = REFL_NOT_FOUND;
        err.error_message = why;
        resp.message_response_case =
            GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
        resp.error_response = &err;
    }
    size_t n = grpc__reflection__v1__server_reflection_response__get_packed_size(&resp);
    uint8_t *buf = malloc(n > 0 ? n : 1);
    TSR_TRY_ENSURE(buf != NULL, TSR_E_INTERNAL, "out of memory");
    grpc__reflection__v1__server_reflection_response__pack(&resp, buf);
    *out = buf;
    *out_len = n;
    rc = 0;
out:
    grpc__reflection__v1__server_reflection_request__free_unpacked(req, NULL);
    return rc;
}

/* ---- the stream -------------------------------------------------------------- */

static void *refl_open(const gw_call_ctx *ctx)
{
    (void)ctx;
    static int token;   /* no state; non-NULL */
    return &token;
}

static int refl_message(void *state, const gw_call_ctx *ctx, const uint8_t *msg, size_t len,
                        gw_response *resp)
{
    (void)state;
    uint8_t *body = NULL;
    size_t n = 0;
    if (gw_reflection_answer(msg, len, &body, &n) != 0)
        return gw_response_fail(resp, tsr_errcat() == TSR_E_INPUT ? GW_STATUS_INVALID_ARGUMENT
                                                                  : GW_STATUS_INTERNAL,
                                "%s", tsr_errmsg());
    if (gw_stream_send(ctx, body, n) != 0)
        return gw_response_fail(resp, GW_STATUS_RESOURCE_EXHAUSTED,
                                "too many reflection answers unread");
    return 0;
}

static int refl_finish(void *state, const gw_call_ctx *ctx, gw_response *resp)
{
    (void)state;
    (void)ctx;
    (void)resp;
    return 0;   /* the client is done: OK */
}

const gw_stream_ops gw_reflection_ops = {
    .client_streams = true,
    .open = refl_open,
    .message = refl_message,
    .finish = refl_finish,
};
