/* Tensor-core and asynchronous-copy helpers (compute capability 8.0+) shared
 * by the batched GEMM kernels (kernels_dense_mma.cu, kernels_ternary_mma.cu).
 *
 * Fragment layouts of mma.sync (PTX ISA, "Matrix fragments for mma.m16n8k16"
 * and ".m16n8k32"): with g = lane / 4 and tg = lane % 4,
 *   A (16 x K, row-major): reg 0 = row g, reg 1 = row g + 8, reg 2 = row g at
 *     K/2 further, reg 3 = row g + 8 at K/2 further; each reg holds the
 *     32-bit word tg of its 16-byte row piece;
 *   B (K x 8, "col" = stored as 8 rows of K): reg 0 = column g, word tg of
 *     the first K/2; reg 1 = the same of the second K/2;
 *   C (16 x 8, 32-bit): c0, c1 = row g, columns 2tg, 2tg + 1; c2, c3 = row g + 8.
 * ldmatrix.x4 loads four 8 x 16-byte matrices; lane l gives the address of
 * row l % 8 of matrix l / 8, and register i of every lane receives word
 * (lane % 4) of row (lane / 4) of matrix i: exactly the A/B register layout
 * above when the matrices are chosen as the fragment's pieces. */
#ifndef BN_KERNELS_CUDA_CUDA_MMA_CUH
#define BN_KERNELS_CUDA_CUDA_MMA_CUH

#include <cuda_runtime.h>

/* 16-byte global -> shared copy that bypasses L1; !valid fills 16 zero bytes
 * (the source address must still be a valid pointer: callers clamp it). */
__device__ __forceinline__ void bn_cp_async16(void *smem, const void *gmem, bool valid) {
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    int n = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n) : "memory");
}
__device__ __forceinline__ void bn_cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void bn_cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void bn_ldmatrix_x4(unsigned (&r)[4], const void *smem) {
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s)
                 : "memory");
}

/* c += a · b, 16 x 8 x 16, f16 or bf16 inputs, f32 accumulation. */
template <bool BF16>
__device__ __forceinline__ void bn_mma_16816(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    if (BF16)
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                     "{%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    else
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                     "{%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* c += a · b, 16 x 8 x 32, int8 inputs, int32 accumulation (exact). */
__device__ __forceinline__ void bn_mma_s8(int (&c)[4], unsigned a0, unsigned a1, unsigned a2, unsigned a3,
                                          unsigned b0, unsigned b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

#endif
