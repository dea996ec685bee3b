/* Device helpers shared by the CUDA kernel files, and the launch helper.
 *
 * Programmatic dependent launch (PDL, compute capability 9.0+): a kernel
 * launched with bn_launch while bn_k_pdl is set may start before the kernel
 * before it in the stream has finished. Every kernel therefore begins with
 * pdl_wait() (which returns once the previous kernel has completed and its
 * writes are visible; a no-op when the kernel was launched normally) before
 * it reads or writes anything another kernel touches — only immutable data
 * (weights) may be read before it — and then calls pdl_launch(), which lets
 * the next kernel be scheduled early (its blocks then wait in their own
 * pdl_wait, so one launch's latency hides behind this kernel). Waits chain:
 * a kernel that passed its wait knows every earlier kernel has completed. */
#ifndef BN_KERNELS_CUDA_CUDA_COMMON_CUH
#define BN_KERNELS_CUDA_CUDA_COMMON_CUH

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <utility>

/* Set (per host thread) by the backend around the launches of a recorded
 * decode step on a GPU of compute capability 9.0+; 0 elsewhere. */
extern thread_local int bn_k_pdl;

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

/* kernel<<<grid, block, smem, st>>>(args...), with the PDL attribute when
 * bn_k_pdl is set; returns the launch's error. */
template <typename... KArgs, typename... Args>
static inline cudaError_t bn_launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t st,
                                    Args &&...args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = st;
    cudaLaunchAttribute attr[1] = {};
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = bn_k_pdl ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

/* Reduces v over the block (blockDim.x a multiple of 32, <= 1024); every
 * thread gets the same result, combined in a fixed order. */
template <typename T, typename Op>
__device__ T block_reduce(T v, Op op, T *sh) {
    for (int o = 16; o; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    int w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads(); /* sh may still be read by a previous reduction */
    if ((threadIdx.x & 31) == 0) sh[w] = v;
    __syncthreads();
    v = sh[0];
    for (int i = 1; i < nw; i++) v = op(v, sh[i]);
    return v;
}

/* Thread i's part of RoPE + KV store for block (token t, head h) of a step:
 * rotates pair i of query head h (h < n_head) or of key head h - n_head
 * (rows of q and k for token t, in place) at position p, and for a key head
 * stores the rotated pair and the value pair at row p of the head's f16
 * cache (K and V point at the sequence's cache). The angles are computed in
 * double, as the CPU does; the products are kept apart (no FMA). */
__device__ __forceinline__ void rope_pair_store(float *q, float *k, const float *v, __half *K, __half *V, int t, int h,
                                                int i, int n_head, int n_kv, int hd, int p, float theta, int neox,
                                                int n_ctx) {
    int half = hd / 2;
    double ang = (double)p * pow((double)theta, -2.0 * i / hd);
    float cs = (float)cos(ang), sn = (float)sin(ang);
    int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
    int is_k = h >= n_head, hh = is_k ? h - n_head : h;
    float *row = is_k ? k + ((size_t)t * n_kv + hh) * hd : q + ((size_t)t * n_head + hh) * hd;
    float x0 = row[a], x1 = row[b];
    float y0 = __fsub_rn(__fmul_rn(x0, cs), __fmul_rn(x1, sn)), y1 = __fadd_rn(__fmul_rn(x0, sn), __fmul_rn(x1, cs));
    row[a] = y0, row[b] = y1;
    if (!is_k) return;
    size_t dst = ((size_t)hh * n_ctx + p) * hd;
    const float *vr = v + ((size_t)t * n_kv + hh) * hd;
    K[dst + a] = __float2half_rn(y0), K[dst + b] = __float2half_rn(y1);
    V[dst + a] = __float2half_rn(vr[a]), V[dst + b] = __float2half_rn(vr[b]);
}

struct op_sum {
    template <typename T>
    __device__ T operator()(T a, T b) const { return a + b; }
};
struct op_max {
    __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

/* The reference quantization of one value with scale s: round half to even
 * (as nearbyintf), clamp to [-128, 127]. */
__device__ __forceinline__ int quant_one(float v, float s) {
    int r = __float2int_rn(__fmul_rn(v, s));
    return r < -128 ? -128 : (r > 127 ? 127 : r);
}

/* act(a)·u as the CPU computes it (no contraction into FMAs). */
__device__ __forceinline__ float glu_one(float a, float u, int relu2) {
    if (relu2) {
        float r = a > 0.0f ? a : 0.0f;
        return __fmul_rn(__fmul_rn(r, r), u);
    }
    return __fmul_rn(a / (1.0f + expf(-a)), u);
}

/* Σ over 64 weights (one 16-byte chunk of 2-bit codes, the engine's layout:
 * byte b of a 32-byte block holds weights b, 32+b, 64+b, 96+b at shifts 6, 4,
 * 2, 0) of code · activation; a0..a3 hold the activations of the four runs
 * (16 bytes each). */
__device__ __forceinline__ int dot64(uint4 w, int4 a0, int4 a1, int4 a2, int4 a3, int acc) {
    const unsigned m = 0x03030303u, ws[4] = {w.x, w.y, w.z, w.w};
    const int q0[4] = {a0.x, a0.y, a0.z, a0.w}, q1[4] = {a1.x, a1.y, a1.z, a1.w};
    const int q2[4] = {a2.x, a2.y, a2.z, a2.w}, q3[4] = {a3.x, a3.y, a3.z, a3.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        acc = __dp4a((int)((ws[i] >> 6) & m), q0[i], acc);
        acc = __dp4a((int)((ws[i] >> 4) & m), q1[i], acc);
        acc = __dp4a((int)((ws[i] >> 2) & m), q2[i], acc);
        acc = __dp4a((int)(ws[i] & m), q3[i], acc);
    }
    return acc;
}

/* Eight key elements of a decode attention's score: the new position's
 * from shared memory (fresh: kn, already rounded as the cache holds them),
 * else the cached f16 values loaded into kc. */
__device__ __forceinline__ void key8(float (&kf)[8], bool fresh, const float *kn, uint4 kc) {
    if (fresh) {
#pragma unroll
        for (int e = 0; e < 8; e++) kf[e] = kn[e];
        return;
    }
    const __half2 *h2 = (const __half2 *)&kc;
#pragma unroll
    for (int e = 0; e < 4; e++) {
        float2 f = __half22float2(h2[e]);
        kf[2 * e] = f.x, kf[2 * e + 1] = f.y;
    }
}

#endif
