/* gRPC server reflection requests (gateway/gw_reflection.h): a caller's
 * ServerReflectionRequest bytes, answered from the embedded descriptors.
 *
 * Invariants: answered exactly when protobuf-c parses the request (else
 * TSR_E_INPUT and nothing); the answer parses as a ServerReflectionResponse
 * that carries the request back (host and case) and answers that case:
 * list_services -> every embedded service; file_by_filename and
 * file_containing_symbol -> the file first, then its imports, each a
 * FileDescriptorProto we embedded, or NOT_FOUND (5) when no file has that
 * name / defines that symbol; all_extension_numbers_of_type -> an empty
 * list or NOT_FOUND; file_containing_extension -> NOT_FOUND; no case ->
 * INVALID_ARGUMENT (3). */
#include "fuzz/fuzz.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "gw_reflection.h"
#include "gw_reflection_data.h"
#include "tsr_err.h"

static bool embedded(const ProtobufCBinaryData *b)
{
    for (size_t i = 0; i < gw_refl_n_files; i++)
        if (gw_refl_files[i].len == b->len && memcmp(gw_refl_files[i].data, b->data, b->len) == 0)
            return true;
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Grpc__Reflection__V1__ServerReflectionRequest *req =
        grpc__reflection__v1__server_reflection_request__unpack(NULL, size, data);
    uint8_t *out = NULL;
    size_t out_len = 0;
    tsr_err_clear();
    int rc = gw_reflection_answer(data, size, &out, &out_len);
    FUZZ_CHECK((rc == 0) == (req != NULL));
    if (req == NULL) {
        FUZZ_CHECK(out == NULL && tsr_errcat() == TSR_E_INPUT);
        return 0;
    }
    Grpc__Reflection__V1__ServerReflectionResponse *resp =
        grpc__reflection__v1__server_reflection_response__unpack(NULL, out_len, out);
    FUZZ_CHECK(resp != NULL);
    FUZZ_CHECK(strcmp(resp->valid_host, req->host) == 0);
    FUZZ_CHECK(resp->original_request != NULL &&
               resp->original_request->message_request_case == req->message_request_case);
    int err = resp->message_response_case ==
                      GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE
                  ? resp->error_response->error_code
                  : 0;
    switch (req->message_request_case) {
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
        FUZZ_CHECK(resp->message_response_case ==
                   GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE);
        FUZZ_CHECK(resp->list_services_response->n_service == gw_refl_n_services);
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL: {
        bool by_name = req->message_request_case ==
                       GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME;
        const char *q = by_name ? req->file_by_filename : req->file_containing_symbol;
        int want = -1;
        if (by_name) {
            for (size_t i = 0; i < gw_refl_n_files; i++)
                if (strcmp(gw_refl_files[i].name, q) == 0) want = (int)i;
        } else {
            const char *s = q[0] == '.' ? q + 1 : q;
            for (size_t i = 0; i < gw_refl_n_symbols; i++)
                if (strcmp(gw_refl_symbols[i].name, s) == 0) want = gw_refl_symbols[i].file;
        }
        if (want < 0) {
            FUZZ_CHECK(err == 5);
            break;
        }
        FUZZ_CHECK(resp->message_response_case ==
                   GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE);
        Grpc__Reflection__V1__FileDescriptorResponse *f = resp->file_descriptor_response;
        FUZZ_CHECK(f->n_file_descriptor_proto >= 1 && f->n_file_descriptor_proto <= gw_refl_n_files);
        FUZZ_CHECK(f->file_descriptor_proto[0].len == gw_refl_files[want].len);
        for (size_t i = 0; i < f->n_file_descriptor_proto; i++)
            FUZZ_CHECK(embedded(&f->file_descriptor_proto[i]));
        break;
    }
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
        FUZZ_CHECK(err == 5 ||
                   (resp->message_response_case ==
                        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE &&
                    resp->all_extension_numbers_response->n_extension_number == 0));
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
        FUZZ_CHECK(err == 5);
        break;
    default:
        FUZZ_CHECK(err == 3);
        break;
    }
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
    grpc__reflection__v1__server_reflection_request__free_unpacked(req, NULL);
    free(out);
    return 0;
}
