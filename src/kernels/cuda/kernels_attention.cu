/* Causal grouped-query attention over the f16 KV cache, flash-decoding style.
 *
 * Cache layout (kernels/backend.h): [kv head][position][head_dim], f16.
 * 1. k_kv_store writes the new keys and values at positions pos..pos+n_tok-1.
 * 2. k_attn_partial: block (split, kv head × head group, token) attends the
 *    query heads of one group (up to ATT_GROUP heads sharing the kv head, so
 *    each key and value is read once for all of them) over one split of the
 *    positions, 128 at a time: one position per thread for the scores, an
 *    online softmax per head, values read coalesced. Writes the split's
 *    unnormalized output, max and sum.
 * 3. k_attn_combine merges the chunks of each (token, head).
 * Splitting the positions keeps the whole GPU busy for one decode token over
 * a long context. The position may be read from device memory (bn_pos), so
 * that a captured graph replays for any position: chunks past the end exit
 * early. Softmax and products in f32, as the CPU (which keeps f32 keys). */
#include <cuda_fp16.h>
#include <math.h>

#include "kernels/cuda/cuda_kernels.cuh"

#define ATT_GROUP 4 /* query heads per block (= warps of a block) */

__global__ void k_kv_store(const float *k, const float *v, __half *K, __half *V, int n_kv, int n_ctx, int hd,
                           bn_pos pos) {
    int t = blockIdx.x, h = blockIdx.y, p = (pos.ptr ? *pos.ptr : pos.val) + t;
    size_t src = ((size_t)t * n_kv + h) * hd, dst = ((size_t)h * n_ctx + p) * hd;
    for (int i = threadIdx.x; i < hd; i += blockDim.x) {
        K[dst + i] = __float2half_rn(k[src + i]);
        V[dst + i] = __float2half_rn(v[src + i]);
    }
}

#define ATT_CHUNK 128 /* positions scored at once (one per thread) */

/* Block (split, kv head x head group, token): the up-to-ATT_GROUP query heads
 * of one group over positions [p0, p1) of the split, in chunks of ATT_CHUNK:
 *  1. each thread scores one position for every head of the group (its key
 *     row read with 16-byte loads; q broadcast from shared memory);
 *  2. warp g turns head g's scores into exp(s - running max), rescaling the
 *     running sum (online softmax);
 *  3. each thread accumulates output elements (values read coalesced).
 * Writes the split's unnormalized output, its max and its sum. */
__global__ void __launch_bounds__(ATT_CHUNK)
    k_attn_partial(const float *q, const __half *K, const __half *V, int n_head, int n_kv, int n_ctx, int hd,
                   bn_pos pos, int split_len, int n_split, float *po, float *pml) {
    extern __shared__ float sq[]; /* [ATT_GROUP][hd] */
    __shared__ float sp[ATT_GROUP][ATT_CHUNK];
    __shared__ float s_m[ATT_GROUP], s_l[ATT_GROUP], s_a[ATT_GROUP];
    int split = blockIdx.x, t = blockIdx.z, G = n_head / n_kv, ngc = (G + ATT_GROUP - 1) / ATT_GROUP;
    int hk = blockIdx.y / ngc, h0 = hk * G + (blockIdx.y % ngc) * ATT_GROUP;
    int nh = min(ATT_GROUP, hk * G + G - h0);
    int n = (pos.ptr ? *pos.ptr : pos.val) + t + 1, p0 = split * split_len, p1 = min(p0 + split_len, n);
    int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const float inv_sqrt = 1.0f / sqrtf((float)hd);
    for (int i = tid; i < ATT_GROUP * hd; i += blockDim.x) {
        int g = i / hd;
        sq[i] = g < nh ? q[((size_t)t * n_head + h0 + g) * hd + i % hd] : 0.0f;
    }
    if (tid < ATT_GROUP) s_m[tid] = -INFINITY, s_l[tid] = 0.0f;
    float o[ATT_GROUP][2]; /* output elements tid and tid + 128 (hd <= 256) */
#pragma unroll
    for (int g = 0; g < ATT_GROUP; g++) o[g][0] = o[g][1] = 0.0f;
    const __half *Kh = K + (size_t)hk * n_ctx * hd, *Vh = V + (size_t)hk * n_ctx * hd;
    __syncthreads();
    for (int c0 = p0; c0 < p1; c0 += ATT_CHUNK) {
        int np = min(ATT_CHUNK, p1 - c0);
        if (tid < np) { /* 1. scores */
            const uint4 *kr = (const uint4 *)(Kh + (size_t)(c0 + tid) * hd);
            float acc[ATT_GROUP] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll 8
            for (int i8 = 0; i8 < hd / 8; i8++) {
                uint4 u = kr[i8];
                const __half2 *h2 = (const __half2 *)&u;
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    float2 kf = __half22float2(h2[e]);
#pragma unroll
                    for (int g = 0; g < ATT_GROUP; g++)
                        acc[g] = fmaf(sq[g * hd + i8 * 8 + 2 * e + 1], kf.y, fmaf(sq[g * hd + i8 * 8 + 2 * e], kf.x, acc[g]));
                }
            }
#pragma unroll
            for (int g = 0; g < ATT_GROUP; g++) sp[g][tid] = acc[g] * inv_sqrt;
        }
        __syncthreads();
        if (warp < nh) { /* 2. softmax of head `warp` over the chunk */
            float mx = -INFINITY;
            for (int j = lane; j < np; j += 32) mx = fmaxf(mx, sp[warp][j]);
            for (int off = 16; off; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
            float m_new = fmaxf(s_m[warp], mx), sum = 0.0f;
            for (int j = lane; j < np; j += 32) {
                float e = expf(sp[warp][j] - m_new);
                sp[warp][j] = e;
                sum += e;
            }
            for (int off = 16; off; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
            if (lane == 0) {
                float a = expf(s_m[warp] - m_new); /* 0 on the first chunk */
                s_a[warp] = a;
                s_l[warp] = s_l[warp] * a + sum;
                s_m[warp] = m_new;
            }
        }
        __syncthreads();
#pragma unroll
        for (int k = 0; k < 2; k++) { /* 3. values */
            int i = tid + k * ATT_CHUNK;
            if (i >= hd) break;
            float a[ATT_GROUP];
#pragma unroll
            for (int g = 0; g < ATT_GROUP; g++) a[g] = g < nh ? o[g][k] * s_a[g] : 0.0f;
#pragma unroll 16
            for (int j = 0; j < np; j++) {
                float v = __half2float(Vh[(size_t)(c0 + j) * hd + i]);
#pragma unroll
                for (int g = 0; g < ATT_GROUP; g++) a[g] = fmaf(sp[g][j], v, a[g]);
            }
#pragma unroll
            for (int g = 0; g < ATT_GROUP; g++) o[g][k] = a[g];
        }
        __syncthreads(); /* sp is rewritten by the next chunk */
    }
    for (int g = 0; g < nh; g++) {
        size_t row = ((size_t)t * n_head + h0 + g) * n_split + split;
#pragma unroll
        for (int k = 0; k < 2; k++)
            if (tid + k * ATT_CHUNK < hd) po[row * hd + tid + k * ATT_CHUNK] = o[g][k];
        if (tid == 0) pml[2 * row] = s_m[g], pml[2 * row + 1] = s_l[g];
    }
}

/* Merges the splits of each (token, head); only splits holding positions
 * (those before pos + t + 1) are read. */
__global__ void k_attn_combine(const float *po, const float *pml, int n_head, int hd, int n_split, int split_len,
                               bn_pos pos, float *out) {
    int h = blockIdx.x, t = blockIdx.y;
    int n = (pos.ptr ? *pos.ptr : pos.val) + t + 1, live = min(n_split, (n + split_len - 1) / split_len);
    size_t base = ((size_t)t * n_head + h) * n_split;
    float M = -INFINITY;
#pragma unroll 8
    for (int s = 0; s < live; s++)
        if (pml[2 * (base + s) + 1] > 0.0f) M = fmaxf(M, pml[2 * (base + s)]);
    for (int i = threadIdx.x; i < hd; i += blockDim.x) {
        float L = 0.0f, O = 0.0f;
#pragma unroll 8
        for (int s = 0; s < live; s++) {
            float ls = pml[2 * (base + s) + 1];
            if (ls > 0.0f) {
                float c = expf(pml[2 * (base + s)] - M);
                L += ls * c;
                O += po[(base + s) * hd + i] * c;
            }
        }
        out[((size_t)t * n_head + h) * hd + i] = O / L;
    }
}

int bn_k_attention_supported(int head_dim) { return head_dim % 8 == 0 && head_dim >= 8 && head_dim <= 256; }

cudaError_t bn_k_attention(cudaStream_t st, const bn_kv_layer *kv, const bn_attn_shape *s, const float *q,
                           const float *k, const float *v, int n_tok, bn_pos pos, int n_split, int split_len,
                           float *ws, float *out) {
    int hd = s->head_dim;
    if (!bn_k_attention_supported(hd) || s->n_head % s->n_head_kv) return cudaErrorInvalidValue;
    k_kv_store<<<dim3(n_tok, s->n_head_kv), 128, 0, st>>>(k, v, (__half *)kv->k, (__half *)kv->v, s->n_head_kv,
                                                          s->n_ctx, hd, pos);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    return bn_k_attention_stored(st, kv, s, q, n_tok, pos, n_split, split_len, ws, out);
}

cudaError_t bn_k_attention_stored(cudaStream_t st, const bn_kv_layer *kv, const bn_attn_shape *s, const float *q,
                                  int n_tok, bn_pos pos, int n_split, int split_len, float *ws, float *out) {
    int hd = s->head_dim;
    if (!bn_k_attention_supported(hd) || s->n_head % s->n_head_kv) return cudaErrorInvalidValue;
    const __half *K = (const __half *)kv->k, *V = (const __half *)kv->v;
    cudaError_t e;
    int G = s->n_head / s->n_head_kv, ngc = (G + ATT_GROUP - 1) / ATT_GROUP;
    float *po = ws, *pml = ws + (size_t)n_tok * s->n_head * n_split * hd;
    dim3 grid(n_split, s->n_head_kv * ngc, n_tok);
    size_t smem = (size_t)ATT_GROUP * hd * sizeof(float);
    k_attn_partial<<<grid, ATT_CHUNK, smem, st>>>(q, K, V, s->n_head, s->n_head_kv, s->n_ctx, hd, pos, split_len,
                                                  n_split, po, pml);
    if ((e = cudaGetLastError()) != cudaSuccess) return e;
    k_attn_combine<<<dim3(s->n_head, n_tok), 128, 0, st>>>(po, pml, s->n_head, hd, n_split, split_len, pos, out);
    return cudaGetLastError();
}
