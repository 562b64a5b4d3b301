/* gRPC server reflection (grpc.reflection.v1 and v1alpha, the same wire
 * format): ServerReflectionInfo, a bidirectional stream answering each
 * request in order from the descriptors embedded at build time
 * (gw_reflection_data.h): list_services, file_by_filename,
 * file_containing_symbol (with the file's imports, transitively),
 * all_extension_numbers_of_type (none: the protos define no extensions),
 * file_containing_extension (NOT_FOUND). Authenticated callers only (its
 * rule in gw_authz.c): it reveals nothing a caller could not read from the
 * protos, but anonymous callers get the health service only. */
#ifndef GW_REFLECTION_H
#define GW_REFLECTION_H

#include <stddef.h>
#include <stdint.h>

#include "gw_rpc.h"
#include "tsr_err.h"

#define GW_REFLECTION_V1_PATH "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
#define GW_REFLECTION_V1ALPHA_PATH \
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"

extern const gw_stream_ops gw_reflection_ops;

/* The answer to one serialized ServerReflectionRequest (also the fuzz
 * harness's entry): 0 with *out (malloc'd) the serialized response, or -1
 * (TSR_E_INPUT) when the request does not parse. */
TSR_WUR int gw_reflection_answer(const uint8_t *req, size_t len, uint8_t **out, size_t *out_len);

#endif
