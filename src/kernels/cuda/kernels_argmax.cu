/* Row argmax on the GPU: greedy decoding picks its tokens here, so that a
 * batched step copies one int32 per sequence to the host instead of a row of
 * logits (for 256 sequences of a 128k vocabulary, 131 MB: ~5 ms of PCIe, the
 * whole budget of a 50k tok/s step).
 *
 * The rule is bn_argmax_ref's (kernels/cpu/kernels_ref.c): NaN counts as
 * -inf, the lowest column wins ties. Every comparison below is exact, so the
 * result does not depend on how the columns are split over threads. */
#include <math.h>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.cuh"

#define ARGMAX_THREADS 1024

/* Keeps (bv, bi) the better of itself and (v, i): larger value, then lower
 * index. v is never NaN here. */
__device__ __forceinline__ void take(float &bv, int &bi, float v, int i) {
    if (v > bv || (v == bv && i < bi)) bv = v, bi = i;
}

__device__ __forceinline__ float no_nan(float v) { return isnan(v) ? -INFINITY : v; }

/* One block per row. vec4: the row starts 16-byte aligned and n_cols % 4 == 0. */
__global__ void k_argmax(const float *x, int n_cols, int vec4, int32_t *out) {
    pdl_wait();
    pdl_launch();
    const float *row = x + (int64_t)blockIdx.x * n_cols;
    float bv = -INFINITY;
    int bi = n_cols; /* past the end: any column beats it */
    if (vec4) {
        const float4 *r4 = (const float4 *)row;
        for (int j = threadIdx.x; j < n_cols / 4; j += blockDim.x) {
            float4 v = r4[j];
            take(bv, bi, no_nan(v.x), 4 * j);
            take(bv, bi, no_nan(v.y), 4 * j + 1);
            take(bv, bi, no_nan(v.z), 4 * j + 2);
            take(bv, bi, no_nan(v.w), 4 * j + 3);
        }
    } else {
        for (int j = threadIdx.x; j < n_cols; j += blockDim.x) take(bv, bi, no_nan(row[j]), j);
    }
    for (int o = 16; o; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        take(bv, bi, ov, oi);
    }
    __shared__ float sv[32];
    __shared__ int si[32];
    int w = threadIdx.x >> 5;
    if ((threadIdx.x & 31) == 0) sv[w] = bv, si[w] = bi;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int k = 1; k < (int)(blockDim.x >> 5); k++) take(bv, bi, sv[k], si[k]);
        out[blockIdx.x] = bi < n_cols ? bi : 0; /* n_cols >= 1: some column always wins */
    }
}

cudaError_t bn_k_argmax(cudaStream_t st, const float *x, int n_rows, int n_cols, int32_t *out) {
    if (n_rows <= 0 || n_cols <= 0) return cudaSuccess;
    int vec4 = n_cols % 4 == 0 && ((uintptr_t)x & 15) == 0;
    int threads = n_cols >= ARGMAX_THREADS * 4 ? ARGMAX_THREADS : 256;
    cudaError_t e = bn_launch(k_argmax, n_rows, threads, 0, st, x, n_cols, vec4, out);
    return e != cudaSuccess ? e : cudaGetLastError();
}
