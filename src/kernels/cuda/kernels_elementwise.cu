/* Row-wise and element-wise CUDA kernels: embedding lookup, RMSNorm (fused
 * with int8 quantization), quantization, RoPE, activation·up, residual add.
 *
 * Numerics mirror the CPU backend: RMSNorm sums squares in double, the scale
 * and rounding rule of the quantization are the reference's
 * (s = 127 / max(max|x|, 1e-5), round half to even, clamp to [-128, 127]),
 * RoPE angles are computed in double. Products that the CPU computes
 * separately are written with __fmul_rn/__fadd_rn so that nvcc cannot
 * contract them into FMAs. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.cuh"

extern "C" {
#include "format/ggml_types.h"
}

#define ROW_THREADS 512
#define ROW_SMALL_MIN 64 /* rows from which k_row_fused runs with fewer threads per row */

/* Quantizes row t (already in `xt`, written by this same thread pattern). */
__device__ void quantize_row(const float *xt, int dim, int t, float amax, const bn_qact &qa) {
    __shared__ int shi[32];
    float s = 127.0f / fmaxf(amax, 1e-5f);
    int8_t *qt = qa.q + (size_t)t * dim;
    int sum = 0;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        int v = quant_one(xt[i], s);
        qt[i] = (int8_t)v;
        sum += v;
    }
    sum = block_reduce(sum, op_sum(), shi);
    if (threadIdx.x == 0) {
        qa.scale[t] = s;
        qa.sum[t] = sum;
    }
}

/* One block per row, the row held in registers (PER elements per thread,
 * so memory is read once): optionally x = act(x)·u first (the GLU), then
 * optionally RMSNorm with w, then optionally int8 quantization into qa.
 * out receives the (GLU'd, normed) row; it may equal x. */
template <int PER, int NT>
__global__ void __launch_bounds__(NT)
    k_row_fused(const float *x, const float *u, int relu2, const float *w, int dim, float eps, float *out, bn_qact qa,
                int quant) {
    pdl_wait();
    pdl_launch();
    __shared__ double shd[32];
    __shared__ float shf[32];
    __shared__ int shi[32];
    int t = blockIdx.x;
    const float *xt = x + (size_t)t * dim;
    float v[PER];
#pragma unroll
    for (int k = 0; k < PER; k++) {
        int i = threadIdx.x + k * NT;
        v[k] = i < dim ? xt[i] : 0.0f;
        if (u && i < dim) v[k] = glu_one(v[k], u[(size_t)t * dim + i], relu2);
    }
    if (w) {
        double ss = 0.0;
#pragma unroll
        for (int k = 0; k < PER; k++) ss += (double)v[k] * (double)v[k];
        ss = block_reduce(ss, op_sum(), shd);
        float r = (float)(1.0 / sqrt(ss / dim + (double)eps));
#pragma unroll
        for (int k = 0; k < PER; k++) {
            int i = threadIdx.x + k * NT;
            if (i < dim) v[k] = __fmul_rn(__fmul_rn(v[k], r), w[i]);
        }
    }
    float amax = 0.0f;
#pragma unroll
    for (int k = 0; k < PER; k++) {
        int i = threadIdx.x + k * NT;
        if (i < dim) out[(size_t)t * dim + i] = v[k];
        amax = fmaxf(amax, fabsf(v[k]));
    }
    if (!quant) return;
    amax = block_reduce(amax, op_max(), shf);
    float s = 127.0f / fmaxf(amax, 1e-5f);
    int sum = 0;
#pragma unroll
    for (int k = 0; k < PER; k++) {
        int i = threadIdx.x + k * NT;
        if (i < dim) {
            int q = quant_one(v[k], s);
            qa.q[(size_t)t * dim + i] = (int8_t)q;
            sum += q;
        }
    }
    sum = block_reduce(sum, op_sum(), shi);
    if (threadIdx.x == 0) qa.scale[t] = s, qa.sum[t] = sum;
}

/* Any width: loops over the row in memory. */
__global__ void k_rmsnorm(const float *x, const float *w, int dim, float eps, float *out, bn_qact qa, int quant) {
    pdl_wait();
    pdl_launch();
    __shared__ double shd[32];
    __shared__ float shf[32];
    int t = blockIdx.x;
    const float *xt = x + (size_t)t * dim;
    float *ot = out + (size_t)t * dim;
    double ss = 0.0;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += (double)xt[i] * (double)xt[i];
    ss = block_reduce(ss, op_sum(), shd);
    float r = (float)(1.0 / sqrt(ss / dim + (double)eps));
    float amax = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        float o = __fmul_rn(__fmul_rn(xt[i], r), w[i]);
        ot[i] = o;
        amax = fmaxf(amax, fabsf(o));
    }
    if (!quant) return;
    amax = block_reduce(amax, op_max(), shf);
    quantize_row(ot, dim, t, amax, qa);
}

__global__ void k_quantize(const float *x, int dim, bn_qact qa) {
    pdl_wait();
    pdl_launch();
    __shared__ float shf[32];
    const float *xt = x + (size_t)blockIdx.x * dim;
    float amax = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) amax = fmaxf(amax, fabsf(xt[i]));
    amax = block_reduce(amax, op_max(), shf);
    quantize_row(xt, dim, blockIdx.x, amax, qa);
}

cudaError_t bn_k_row_fused(cudaStream_t st, const float *x, const float *u, int act, const float *w, int n_tok,
                           int dim, float eps, float *out, const bn_qact *qa) {
    bn_qact none = {NULL, NULL, NULL};
    bn_qact q = qa ? *qa : none;
    int relu2 = act == BN_GLU_RELU2, quant = qa != NULL;
    /* Steps of many rows (prompts, batches): a row per block of 128 or 256
     * threads, whose three block reductions wait on 4 or 8 warps instead of
     * 16. One-token steps keep 512 threads (the decode GEMV prologues mirror
     * that kernel). A given n_tok always takes the same kernel, so fused and
     * op-by-op steps still agree bit for bit. */
    if (n_tok >= ROW_SMALL_MIN && dim <= 8 * 128)
        bn_launch(k_row_fused<8, 128>, n_tok, 128, 0, st, x, u, relu2, w, dim, eps, out, q, quant);
    else if (n_tok >= ROW_SMALL_MIN && dim <= 20 * 128)
        bn_launch(k_row_fused<20, 128>, n_tok, 128, 0, st, x, u, relu2, w, dim, eps, out, q, quant);
    else if (n_tok >= ROW_SMALL_MIN && dim <= 32 * 128)
        bn_launch(k_row_fused<32, 128>, n_tok, 128, 0, st, x, u, relu2, w, dim, eps, out, q, quant);
    else if (n_tok >= ROW_SMALL_MIN && dim <= 32 * 256)
        bn_launch(k_row_fused<32, 256>, n_tok, 256, 0, st, x, u, relu2, w, dim, eps, out, q, quant);
    else if (dim <= 4 * ROW_THREADS)
        bn_launch(k_row_fused<4, ROW_THREADS>, n_tok, ROW_THREADS, 0, st, x, u, relu2, w, dim, eps, out, q, quant);
    else if (dim <= 12 * ROW_THREADS)
        bn_launch(k_row_fused<12, ROW_THREADS>, n_tok, ROW_THREADS, 0, st, x, u, relu2, w, dim, eps, out, q, quant);
    else if (dim <= 32 * ROW_THREADS)
        bn_launch(k_row_fused<32, ROW_THREADS>, n_tok, ROW_THREADS, 0, st, x, u, relu2, w, dim, eps, out, q, quant);
    else if (!u && w)
        bn_launch(k_rmsnorm, n_tok, ROW_THREADS, 0, st, x, w, dim, eps, out, q, quant);
    else
        return cudaErrorInvalidValue;
    return cudaGetLastError();
}

cudaError_t bn_k_rmsnorm(cudaStream_t st, const float *x, const float *w, int n_tok, int dim, float eps, float *out,
                         const bn_qact *qa) {
    return bn_k_row_fused(st, x, NULL, 0, w, n_tok, dim, eps, out, qa);
}

cudaError_t bn_k_quantize(cudaStream_t st, const float *x, int n_tok, int dim, const bn_qact *qa) {
    bn_launch(k_quantize, n_tok, ROW_THREADS, 0, st, x, dim, *qa);
    return cudaGetLastError();
}

/* ------------------------------------------------------------- embedding -- */

template <int TYPE>
__device__ __forceinline__ float load_elem(const uint8_t *row, int i) {
    if (TYPE == BN_GGML_F32) return ((const float *)row)[i];
    if (TYPE == BN_GGML_F16) return __half2float(((const __half *)row)[i]);
    return __bfloat162float(((const __nv_bfloat16 *)row)[i]);
}

template <int TYPE>
__global__ void k_embed(const uint8_t *emb, uint64_t row_bytes, int cols, const int32_t *tokens, float *x) {
    pdl_wait();
    pdl_launch();
    int t = blockIdx.x;
    const uint8_t *row = emb + (uint64_t)tokens[t] * row_bytes;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) x[(size_t)t * cols + i] = load_elem<TYPE>(row, i);
}

cudaError_t bn_k_embed(cudaStream_t st, uint32_t type, const void *emb, uint64_t row_bytes, int cols,
                       const int32_t *tokens, int n_tok, float *x) {
    const uint8_t *e = (const uint8_t *)emb;
    if (type == BN_GGML_F32) bn_launch(k_embed<BN_GGML_F32>, n_tok, ROW_THREADS, 0, st, e, row_bytes, cols, tokens, x);
    else if (type == BN_GGML_F16) bn_launch(k_embed<BN_GGML_F16>, n_tok, ROW_THREADS, 0, st, e, row_bytes, cols, tokens, x);
    else if (type == BN_GGML_BF16) bn_launch(k_embed<BN_GGML_BF16>, n_tok, ROW_THREADS, 0, st, e, row_bytes, cols, tokens, x);
    else return cudaErrorInvalidValue;
    return cudaGetLastError();
}

/* ------------------------------------------------------------------ RoPE -- */

/* Block t, thread i: the angle of pair i at position pos + t (computed in
 * double, as the CPU does), applied to that pair of every head. */
__global__ void k_rope(float *x, int n_head, int head_dim, bn_pos pos, float theta, int neox) {
    pdl_wait();
    pdl_launch();
    int t = blockIdx.x, i = threadIdx.x, half = head_dim / 2;
    if (i >= half) return;
    double p = (double)((pos.ptr ? *pos.ptr : pos.val) + t);
    double ang = p * pow((double)theta, -2.0 * i / head_dim);
    float cs = (float)cos(ang), sn = (float)sin(ang);
    int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
    for (int h = 0; h < n_head; h++) {
        float *v = x + ((size_t)t * n_head + h) * head_dim;
        float x0 = v[a], x1 = v[b];
        v[a] = __fsub_rn(__fmul_rn(x0, cs), __fmul_rn(x1, sn));
        v[b] = __fadd_rn(__fmul_rn(x0, sn), __fmul_rn(x1, cs));
    }
}

/* RoPE of q and k and the KV-cache store in one launch: block (t, h) rotates
 * query head h (h < n_head) or key head h - n_head, which it also stores
 * with its value row into the f16 cache at position pos + t. */
__global__ void k_rope_qk_store(float *q, float *k, const float *v, int n_head, int n_kv, int head_dim, bn_pos pos,
                                float theta, int neox, __half *K, __half *V, int n_ctx) {
    pdl_wait();
    pdl_launch();
    if ((int)threadIdx.x >= head_dim / 2) return;
    int p = (pos.ptr ? *pos.ptr : pos.val) + (int)blockIdx.x;
    rope_pair_store(q, k, v, K, V, blockIdx.x, blockIdx.y, threadIdx.x, n_head, n_kv, head_dim, p, theta, neox, n_ctx);
}

cudaError_t bn_k_rope_qk_store(cudaStream_t st, float *q, float *k, const float *v, int n_tok, int n_head, int n_kv,
                               int head_dim, bn_pos pos, float theta, int neox, void *K, void *V, int n_ctx) {
    int threads = (head_dim / 2 + 31) / 32 * 32;
    bn_launch(k_rope_qk_store, dim3(n_tok, n_head + n_kv), threads, 0, st, q, k, v, n_head, n_kv, head_dim, pos, theta, neox,
                                                                   (__half *)K, (__half *)V, n_ctx);
    return cudaGetLastError();
}

cudaError_t bn_k_rope(cudaStream_t st, float *x, int n_tok, int n_head, int head_dim, bn_pos pos, float theta,
                      int neox) {
    int threads = (head_dim / 2 + 31) / 32 * 32;
    bn_launch(k_rope, n_tok, threads, 0, st, x, n_head, head_dim, pos, theta, neox);
    return cudaGetLastError();
}

/* ------------------------------------------------------- GLU, residual -- */

__global__ void k_glu(float *g, const float *u, int64_t n, int relu2) {
    pdl_wait();
    pdl_launch();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float a = g[i];
        if (relu2) {
            float r = a > 0.0f ? a : 0.0f;
            g[i] = __fmul_rn(__fmul_rn(r, r), u[i]);
        } else {
            g[i] = __fmul_rn(a / (1.0f + expf(-a)), u[i]);
        }
    }
}

__global__ void k_add(float *x, const float *y, int64_t n) {
    pdl_wait();
    pdl_launch();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        x[i] = __fadd_rn(x[i], y[i]);
}

static int elementwise_blocks(int64_t n) {
    int64_t b = (n + 255) / 256;
    return (int)(b < 4096 ? (b > 0 ? b : 1) : 4096);
}

cudaError_t bn_k_glu(cudaStream_t st, float *g, const float *u, int64_t n, int act) {
    bn_launch(k_glu, elementwise_blocks(n), 256, 0, st, g, u, n, act == BN_GLU_RELU2);
    return cudaGetLastError();
}

cudaError_t bn_k_add(cudaStream_t st, float *x, const float *y, int64_t n) {
    bn_launch(k_add, elementwise_blocks(n), 256, 0, st, x, y, n);
    return cudaGetLastError();
}
