/* The descriptors gRPC server reflection serves, generated at build time
 * ($(O)/gen/gw_reflection_data.c, scripts/gen_reflection.py). */
#ifndef GW_REFLECTION_DATA_H
#define GW_REFLECTION_DATA_H

#include <stddef.h>
#include <stdint.h>

typedef struct gw_refl_file {
    const char *name;          /* "tessera/v1/gateway.proto" */
    const uint8_t *data;       /* its serialized FileDescriptorProto */
    size_t len;
    const int *deps;           /* indices into gw_refl_files of its imports */
    size_t n_deps;
} gw_refl_file;

typedef struct gw_refl_symbol {
    const char *name;          /* fully qualified, no leading dot; sorted */
    int file;                  /* index into gw_refl_files */
} gw_refl_symbol;

extern const gw_refl_file gw_refl_files[];
extern const size_t gw_refl_n_files;
extern const gw_refl_symbol gw_refl_symbols[];
extern const size_t gw_refl_n_symbols;
extern const char *const gw_refl_services[];
extern const size_t gw_refl_n_services;

#endif
