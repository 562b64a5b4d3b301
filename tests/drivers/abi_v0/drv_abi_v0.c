/* A plugin built against another ABI version (the one before this
 * gateway's): the gateway must refuse to start with it in its driver
 * directory. */
#include <stddef.h>

#include "drv_abi.h"

__attribute__((visibility("default"))) const tsr_driver_ops *tessera_driver_entry(void);

static const tsr_driver_ops ops = {
    .abi_version = TSR_DRIVER_ABI_VERSION - 1,
    .struct_size = sizeof(tsr_driver_ops),
    .name = "abi_v0",
};

const tsr_driver_ops *tessera_driver_entry(void)
{
    return &ops;
}
