/* Run-time choice of the CPU kernel level: cpuid on x86 (through the
 * compiler's __builtin_cpu_supports, which also checks that the OS saves the
 * wider registers), HWCAP on aarch64. */
#include "kernels/cpu/cpu_kernels.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/kernels_ref.h"

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

const bn_cpu_kernels bn_cpu_kernels_scalar_table = {
    .name = "scalar",
    .quantize_row_i8 = bn_quantize_row_i8_ref,
    .ternary_gemm = bn_ternary_gemm_scalar,
    .dense_gemm = bn_dense_gemm_scalar,
    .dot_f32 = bn_dot_f32_ref,
    .dot_f16 = bn_dot_f16_ref,
    .axpy_f32 = bn_axpy_f32_ref,
    .axpy_f16 = bn_axpy_f16_ref,
    .f32_to_f16 = bn_f32_to_f16_ref,
};

static const bn_cpu_kernels *const levels[] = {
    &bn_cpu_kernels_scalar_table,
#if defined(__x86_64__) || defined(__i386__)
    &bn_cpu_kernels_avx2_table,
    &bn_cpu_kernels_avx512_table,
#endif
#if defined(__aarch64__)
    &bn_cpu_kernels_neon_table,
    &bn_cpu_kernels_neon_dotprod_table,
#endif
};

const bn_cpu_kernels *const *bn_cpu_kernels_all(int *count) {
    *count = (int)(sizeof levels / sizeof levels[0]);
    return levels;
}

int bn_cpu_kernels_supported(const bn_cpu_kernels *k) {
    if (k == &bn_cpu_kernels_scalar_table) return 1;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (k == &bn_cpu_kernels_avx2_table) return avx2;
    if (k == &bn_cpu_kernels_avx512_table)
        return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512vnni");
#endif
#if defined(__aarch64__)
    if (k == &bn_cpu_kernels_neon_table) return 1; /* Advanced SIMD is part of ARMv8-A */
    if (k == &bn_cpu_kernels_neon_dotprod_table) {
#if defined(__linux__)
        return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#else
        return 0;
#endif
    }
#endif
    return 0;
}

const bn_cpu_kernels *bn_cpu_kernels_scalar(void) { return &bn_cpu_kernels_scalar_table; }

const bn_cpu_kernels *bn_cpu_kernels_get(const char *name) {
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
        if (!strcmp(name, levels[i]->name)) return bn_cpu_kernels_supported(levels[i]) ? levels[i] : NULL;
    return NULL;
}

static const bn_cpu_kernels *best_supported(void) {
    for (size_t i = sizeof levels / sizeof levels[0]; i-- > 0;)
        if (bn_cpu_kernels_supported(levels[i])) return levels[i];
    return &bn_cpu_kernels_scalar_table;
}

const bn_cpu_kernels *bn_cpu_kernels_select(void) {
    static atomic_int warned;
    const char *forced = getenv("BITNET_CPU");
    if (forced && *forced) {
        const bn_cpu_kernels *k = bn_cpu_kernels_get(forced);
        if (k) return k;
        if (!atomic_exchange(&warned, 1))
            fprintf(stderr, "bitnet: BITNET_CPU=%s is unknown or not supported on this CPU; choosing automatically\n",
                    forced);
    }
    return best_supported();
}
