/* Kernels of multi-sequence batch steps: every token has its own position and
 * sequence (device arrays pos[], seq[] of n_tok entries).
 *
 * Cache layout (kernels/backend.h): sequence s's cache starts at element
 * s * seq_stride and is the single-sequence [kv head][position][head_dim]
 * f16 layout.
 * 1. k_rope_batch: RoPE of token t at pos[t] (the arithmetic of k_rope).
 * 2. k_kv_store_batch: token t's keys and values at (seq[t], pos[t]).
 * 3. k_attn_batch: block (token, query head) attends over positions
 *    0..pos[t] of its sequence: each warp takes every nw-th position (a dot
 *    product reduced across the warp, lanes holding head_dim/32 elements
 *    each) with its own online softmax, and the warps' partial results are
 *    merged at the end. Straightforward rather than tuned: no sharing of keys
 *    between the query heads of a group, no splitting of long contexts. */
#include <cuda_fp16.h>
#include <math.h>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.cuh"

#define KB_THREADS 128             /* 4 warps */
#define KB_WARPS (KB_THREADS / 32)
#define KB_PER_LANE 8              /* head_dim <= 256 */

__global__ void k_rope_batch(float *x, int n_head, int head_dim, const int32_t *pos, float theta, int neox) {
    pdl_wait();
    pdl_launch();
    int t = blockIdx.x, i = threadIdx.x, half = head_dim / 2;
    if (i >= half) return;
    double ang = (double)pos[t] * pow((double)theta, -2.0 * i / head_dim);
    float cs = (float)cos(ang), sn = (float)sin(ang);
    int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
    for (int h = 0; h < n_head; h++) {
        float *v = x + ((size_t)t * n_head + h) * head_dim;
        float x0 = v[a], x1 = v[b];
        v[a] = __fsub_rn(__fmul_rn(x0, cs), __fmul_rn(x1, sn));
        v[b] = __fadd_rn(__fmul_rn(x0, sn), __fmul_rn(x1, cs));
    }
}

__global__ void k_kv_store_batch(const float *k, const float *v, __half *K, __half *V, int n_kv, int n_ctx, int hd,
                                 const int32_t *seq, const int32_t *pos, int64_t seq_stride) {
    pdl_wait();
    pdl_launch();
    int t = blockIdx.x, h = blockIdx.y;
    size_t src = ((size_t)t * n_kv + h) * hd;
    size_t dst = (size_t)seq[t] * (size_t)seq_stride + ((size_t)h * n_ctx + (size_t)pos[t]) * hd;
    for (int i = threadIdx.x; i < hd; i += blockDim.x) {
        K[dst + i] = __float2half_rn(k[src + i]);
        V[dst + i] = __float2half_rn(v[src + i]);
    }
}

__global__ void __launch_bounds__(KB_THREADS)
    k_attn_batch(const float *q, const __half *K, const __half *V, int n_head, int n_kv, int n_ctx, int hd,
                 const int32_t *seq, const int32_t *pos, int64_t seq_stride, float *out) {
    __shared__ float sh_acc[KB_WARPS][KB_PER_LANE * 32];
    __shared__ float sh_m[KB_WARPS], sh_l[KB_WARPS];
    pdl_wait();
    pdl_launch();
    int t = blockIdx.x, h = blockIdx.y, lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    int hk = h / (n_head / n_kv), n = pos[t] + 1;
    size_t base = (size_t)seq[t] * (size_t)seq_stride + (size_t)hk * n_ctx * hd;
    const __half *Kh = K + base, *Vh = V + base;
    const float *qt = q + ((size_t)t * n_head + h) * hd;
    float qr[KB_PER_LANE], acc[KB_PER_LANE];
    for (int j = 0; j < KB_PER_LANE; j++) {
        int e = lane + 32 * j;
        qr[j] = e < hd ? qt[e] : 0.0f;
        acc[j] = 0.0f;
    }
    float inv_sqrt = 1.0f / sqrtf((float)hd), m = -INFINITY, l = 0.0f;
    for (int p = w; p < n; p += KB_WARPS) {
        const __half *kr = Kh + (size_t)p * hd;
        float d = 0.0f;
        for (int j = 0; j < KB_PER_LANE; j++) {
            int e = lane + 32 * j;
            if (e < hd) d = fmaf(qr[j], __half2float(kr[e]), d);
        }
        for (int o = 16; o; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
        float s = d * inv_sqrt, m_new = fmaxf(m, s);
        float corr = expf(m - m_new), e_s = expf(s - m_new);
        l = l * corr + e_s;
        const __half *vr = Vh + (size_t)p * hd;
        for (int j = 0; j < KB_PER_LANE; j++) {
            int e = lane + 32 * j;
            acc[j] = acc[j] * corr + (e < hd ? e_s * __half2float(vr[e]) : 0.0f);
        }
        m = m_new;
    }
    for (int j = 0; j < KB_PER_LANE; j++) sh_acc[w][lane + 32 * j] = acc[j];
    if (lane == 0) sh_m[w] = m, sh_l[w] = l;
    __syncthreads();
    /* Merge the warps' softmax states (a warp without positions has l = 0). */
    float M = sh_m[0];
    for (int i = 1; i < KB_WARPS; i++) M = fmaxf(M, sh_m[i]);
    float L = 0.0f, f[KB_WARPS];
    for (int i = 0; i < KB_WARPS; i++) {
        f[i] = sh_l[i] > 0.0f ? expf(sh_m[i] - M) : 0.0f;
        L += sh_l[i] * f[i];
    }
    float *ot = out + ((size_t)t * n_head + h) * hd;
    for (int e = threadIdx.x; e < hd; e += KB_THREADS) {
        float o = 0.0f;
        for (int i = 0; i < KB_WARPS; i++) o += sh_acc[i][e] * f[i];
        ot[e] = o / L;
    }
}

cudaError_t bn_k_rope_batch(cudaStream_t st, float *x, int n_tok, int n_head, int head_dim, const int32_t *pos,
                            float theta, int neox) {
    int threads = (head_dim / 2 + 31) / 32 * 32;
    bn_launch(k_rope_batch, n_tok, threads, 0, st, x, n_head, head_dim, pos, theta, neox);
    return cudaGetLastError();
}

cudaError_t bn_k_attention_batch(cudaStream_t st, const bn_kv_layer *kv, int64_t seq_stride, const bn_attn_shape *s,
                                 const float *q, const float *k, const float *v, int n_tok, const int32_t *seq,
                                 const int32_t *pos, float *out) {
    int hd = s->head_dim;
    if (!bn_k_attention_supported(hd) || hd > KB_PER_LANE * 32 || s->n_head % s->n_head_kv)
        return cudaErrorInvalidValue;
    bn_launch(k_kv_store_batch, dim3(n_tok, s->n_head_kv), 128, 0, st, k, v, (__half *)kv->k, (__half *)kv->v,
              s->n_head_kv, s->n_ctx, hd, seq, pos, seq_stride);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    bn_launch(k_attn_batch, dim3(n_tok, s->n_head), KB_THREADS, 0, st, q, (const __half *)kv->k,
              (const __half *)kv->v, s->n_head, s->n_head_kv, s->n_ctx, hd, seq, pos, seq_stride, out);
    return cudaGetLastError();
}
