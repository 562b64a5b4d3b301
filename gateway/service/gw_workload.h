/* What a sandbox runs (docs/drivers.md, "The workload"): the gateway's
 * checks of a CreateSandboxRequest's image, command and env, bounded and
 * done before anything is minted or recorded. Every refusal is
 * INVALID_ARGUMENT naming the field. Pure (no I/O); unit-tested in
 * tests/unit/test_gw_workload.c. */
#ifndef GW_WORKLOAD_H
#define GW_WORKLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "drv_abi.h"
#include "gw_rpc.h"
#include "gw_store.h"

#define GW_IMAGE_MAX TSR_DRIVER_MAX_IMAGE          /* the whole reference */
#define GW_IMAGE_NAME_MAX 255                      /* the name before :tag and @digest (Docker's) */
#define GW_COMMAND_MAX_ARGS TSR_DRIVER_MAX_COMMAND_ARGS
#define GW_COMMAND_MAX_BYTES TSR_DRIVER_MAX_COMMAND_BYTES
#define GW_WORKLOAD_ENV_MAX_VARS 128
#define GW_WORKLOAD_ENV_MAX_VALUE 4096
#define GW_WORKLOAD_ENV_MAX_BYTES 16384            /* names and values, '=' and a NUL each */

/* An environment variable name as provider_env takes it: [A-Za-z_][A-Za-z0-9_]*,
 * 1..128 bytes. */
bool gw_env_name_valid(const char *name);

/* True when s (len bytes) is an image reference by the grammar of Docker's
 * distribution/reference (reference.go, regexp.go):
 *   reference := name [ ":" tag ] [ "@" digest ]
 *   name      := [ domain "/" ] path-component ( "/" path-component )*
 *   domain    := ( domain-component ( "." domain-component )* | "[" ipv6 "]" ) [ ":" port ]
 *   path-component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
 *   tag       := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
 *   digest    := algorithm ":" [0-9A-Fa-f]{32,}
 * with the name at most GW_IMAGE_NAME_MAX bytes and the whole at most
 * GW_IMAGE_MAX. */
bool gw_image_ref_valid(const char *s, size_t len);

/* The raw CreateSandboxRequest: no NUL byte in the image (field 5), an
 * argument of command (6), or a name or value of env (7). protobuf-c cuts a
 * string at its first NUL, so this is checked on the wire. 0, or -1 with
 * INVALID_ARGUMENT naming the field (and malformed framing refused). */
int gw_workload_wire_check(const uint8_t *msg, size_t len, gw_response *resp);

/* An environment's bounds: the field's name for messages, at most max_vars
 * variables, values of at most max_value bytes, max_bytes in all (0: no
 * total bound). */
typedef struct gw_env_bounds {
    const char *field;
    size_t max_vars, max_value, max_bytes;
} gw_env_bounds;

/* Names as gw_env_name_valid, each once; values within the bounds and valid
 * UTF-8 (they are served again as proto3 strings). 0, or -1 with
 * INVALID_ARGUMENT naming the field. */
int gw_env_check(const gw_env_var *env, size_t n, const gw_env_bounds *b, gw_response *resp);

/* The unpacked fields: the image's syntax and size, the command's count,
 * bytes, a non-empty argv[0] and UTF-8, the env's count, names (as
 * provider_env), duplicate names, value sizes and UTF-8. 0, or -1 with
 * INVALID_ARGUMENT naming the field. */
int gw_workload_validate(const char *image, char *const *command, size_t n_command,
                         const gw_env_var *env, size_t n_env, gw_response *resp);

#endif
