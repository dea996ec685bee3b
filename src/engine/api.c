/* Library-wide public functions: status names and version. */
#include "bitnet.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/threadpool.h"

const char *bitnet_status_string(bitnet_status s) {
    switch (s) {
    case BITNET_OK: return "ok";
    case BITNET_E_INVALID_ARG: return "invalid argument";
    case BITNET_E_IO: return "I/O error";
    case BITNET_E_FORMAT: return "format error";
    case BITNET_E_UNSUPPORTED: return "unsupported";
    case BITNET_E_NOMEM: return "out of memory";
    case BITNET_E_CONTEXT_FULL: return "context full";
    case BITNET_E_DEVICE: return "device error";
    case BITNET_E_CANCELLED: return "cancelled";
    case BITNET_E_INTERNAL: return "internal error";
    }
    return "unknown status";
}

#define STR2(x) #x
#define STR(x) STR2(x)

const char *bitnet_version(void) {
    return STR(BITNET_VERSION_MAJOR) "." STR(BITNET_VERSION_MINOR) "." STR(BITNET_VERSION_PATCH);
}

const char *bitnet_cpu_kernels(void) { return bn_cpu_kernels_select()->name; }

int bitnet_physical_cores(void) { return bn_physical_cores(); }
