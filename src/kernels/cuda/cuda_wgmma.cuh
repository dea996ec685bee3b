/* Warpgroup MMA (wgmma, sm_90a only) helpers for the ternary GEMM
 * (kernels_ternary_wgmma.cu).
 *
 * wgmma is an arch-specific feature: it exists in code built for sm_90a
 * (not sm_90, not later GPUs' PTX), where nvcc defines
 * __CUDA_ARCH_FEAT_SM90_ALL; BN_HAVE_WGMMA below follows it. Elsewhere the
 * helpers compile to nothing and the host never launches the kernels (it
 * asks bn_k_wgmma_usable first).
 *
 * Layouts (PTX ISA, "Register Fragments and Shared Memory Matrix Layouts"),
 * for a warpgroup of 4 warps, w = warp % 4, g = lane / 4, tg = lane % 4:
 *   A (64 x 32 int8, in registers): warp w holds rows 16w..16w+15 exactly as
 *     mma.m16n8k32 holds its A (cuda_mma.cuh): reg 0 = row g, bytes 4tg..;
 *     reg 1 = row g + 8; regs 2, 3 = the same 16 bytes further along k;
 *   D (64 x N int32): d[4j + i] = row 16w + g + 8 (i / 2), column
 *     8j + 2tg + (i % 2) — mma.sync's C per 8-column tile;
 *   B (32 x N int8, in shared memory, "K-major": N rows of k bytes — the
 *     activations' own [token][k] order), described by a 64-bit descriptor.
 *     We store each token's 128-byte k-tile as one 128-byte row of a
 *     "128-byte swizzle" atom (8 rows x 128 bytes, 1024-byte aligned): the
 *     16-byte chunk c of row r sits at chunk c ^ (r % 8). The descriptor's
 *     start address moves 32 bytes per k-step inside the row (the hardware
 *     applies the XOR to the address bits), the stride between 8-row
 *     groups (SBO) is 1024 bytes, and the leading offset is unused for this
 *     layout. */
#ifndef BN_KERNELS_CUDA_CUDA_WGMMA_CUH
#define BN_KERNELS_CUDA_CUDA_WGMMA_CUH

#include <cuda_runtime.h>

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define BN_HAVE_WGMMA 1
#endif

/* Descriptor of a 128-byte-swizzled K-major tile starting at smem (which
 * lies in a 1024-byte aligned atom; k-step offsets of 32 bytes allowed). */
__device__ __forceinline__ unsigned long long bn_wgmma_desc_sw128(const void *smem) {
    unsigned a = (unsigned)__cvta_generic_to_shared(smem);
    unsigned long long d = (unsigned long long)((a & 0x3FFFF) >> 4);
    d |= 1ull << 16;                 /* leading byte offset: unused here, 16 bytes */
    d |= (1024ull >> 4) << 32;       /* stride byte offset: 8-row groups */
    d |= 1ull << 62;                 /* 128-byte swizzle */
    return d;
}

/* Orders this thread's earlier register writes (A fragments, accumulators)
 * before the wgmma that follows. */
__device__ __forceinline__ void bn_wgmma_fence() {
#ifdef BN_HAVE_WGMMA
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void bn_wgmma_commit() {
#ifdef BN_HAVE_WGMMA
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
template <int N>
__device__ __forceinline__ void bn_wgmma_wait() {
#ifdef BN_HAVE_WGMMA
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}
/* Shared memory written by ordinary stores or cp.async (the generic proxy)
 * must be fenced before wgmma reads it (through the async proxy). */
__device__ __forceinline__ void bn_fence_proxy_async() {
#ifdef BN_HAVE_WGMMA
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}
/* Keeps the compiler from moving reads or writes of r across this point
 * (the accumulators belong to the tensor core until the wait). */
__device__ __forceinline__ void bn_reg_fence(int &r) { asm volatile("" : "+r"(r)::"memory"); }

/* d += a · b: 64 x 32 x 32, a from registers (see above), b from the descriptor. */
__device__ __forceinline__ void bn_wgmma_s8_n32(int (&d)[16], unsigned a0, unsigned a1, unsigned a2, unsigned a3,
                                              unsigned long long bdesc) {
#ifdef BN_HAVE_WGMMA
    asm volatile(
        "wgmma.mma_async.sync.aligned.m64n32k32.s32.s8.s8 "
        "{"
        "%0, %1, %2, %3, %4, %5, %6, %7, "
        "%8, %9, %10, %11, %12, %13, %14, %15"
        "}, {%16, %17, %18, %19}, %20, 1;\n"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]),
          "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(bdesc));
#else
    (void)d, (void)a0, (void)a1, (void)a2, (void)a3, (void)bdesc;
#endif
}

/* d += a · b: 64 x 64 x 32, a from registers (see above), b from the descriptor. */
__device__ __forceinline__ void bn_wgmma_s8_n64(int (&d)[32], unsigned a0, unsigned a1, unsigned a2, unsigned a3,
                                              unsigned long long bdesc) {
#ifdef BN_HAVE_WGMMA
    asm volatile(
        "wgmma.mma_async.sync.aligned.m64n64k32.s32.s8.s8 "
        "{"
        "%0, %1, %2, %3, %4, %5, %6, %7, "
        "%8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, "
        "%24, %25, %26, %27, %28, %29, %30, %31"
        "}, {%32, %33, %34, %35}, %36, 1;\n"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]),
          "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]),
          "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]),
          "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(bdesc));
#else
    (void)d, (void)a0, (void)a1, (void)a2, (void)a3, (void)bdesc;
#endif
}

/* d += a · b: 64 x 128 x 32, a from registers (see above), b from the descriptor. */
__device__ __forceinline__ void bn_wgmma_s8_n128(int (&d)[64], unsigned a0, unsigned a1, unsigned a2, unsigned a3,
                                              unsigned long long bdesc) {
#ifdef BN_HAVE_WGMMA
    asm volatile(
        "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 "
        "{"
        "%0, %1, %2, %3, %4, %5, %6, %7, "
        "%8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, "
        "%24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, "
        "%40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, "
        "%56, %57, %58, %59, %60, %61, %62, %63"
        "}, {%64, %65, %66, %67}, %68, 1;\n"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]),
          "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]),
          "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]),
          "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]),
          "+r"(d[32]), "+r"(d[33]), "+r"(d[34]), "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]),
          "+r"(d[40]), "+r"(d[41]), "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]),
          "+r"(d[48]), "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]),
          "+r"(d[56]), "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(bdesc));
#else
    (void)d, (void)a0, (void)a1, (void)a2, (void)a3, (void)bdesc;
#endif
}

/* d += a · b: 64 x 128 x 16 half-precision products (F16 or BF16), f32
 * accumulators (layout of D as above), both operands from 128-byte-swizzled
 * K-major shared memory through descriptors (16 halves = 32 bytes of k). */
template <bool BF16>
__device__ __forceinline__ void bn_wgmma_h16_n128(float (&d)[64], unsigned long long adesc, unsigned long long bdesc) {
#ifdef BN_HAVE_WGMMA
#define BN_WG_H16_ARGS                                                                                                \
    "{"                                                                                                               \
    "%0, %1, %2, %3, %4, %5, %6, %7, "                                                                                \
    "%8, %9, %10, %11, %12, %13, %14, %15, "                                                                          \
    "%16, %17, %18, %19, %20, %21, %22, %23, "                                                                        \
    "%24, %25, %26, %27, %28, %29, %30, %31, "                                                                        \
    "%32, %33, %34, %35, %36, %37, %38, %39, "                                                                        \
    "%40, %41, %42, %43, %44, %45, %46, %47, "                                                                        \
    "%48, %49, %50, %51, %52, %53, %54, %55, "                                                                        \
    "%56, %57, %58, %59, %60, %61, %62, %63"                                                                          \
    "}, %64, %65, 1, 1, 1, 0, 0;\n"
#define BN_WG_H16_OPS                                                                                                 \
    : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]),     \
      "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),          \
      "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),         \
      "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]),         \
      "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]),         \
      "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),         \
      "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]),         \
      "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])                       \
    : "l"(adesc), "l"(bdesc)
    if constexpr (BF16)
        asm volatile("wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " BN_WG_H16_ARGS BN_WG_H16_OPS);
    else
        asm volatile("wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 " BN_WG_H16_ARGS BN_WG_H16_OPS);
#undef BN_WG_H16_ARGS
#undef BN_WG_H16_OPS
#else
    (void)d, (void)adesc, (void)bdesc;
#endif
}

/* Keeps the compiler from moving reads or writes of r across this point. */
__device__ __forceinline__ void bn_reg_fence(float &r) { asm volatile("" : "+f"(r)::"memory"); }

#endif
