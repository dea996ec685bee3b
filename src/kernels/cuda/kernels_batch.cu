/* Kernels of multi-sequence batch steps: every token has its own position and
 * sequence (device arrays pos[], seq[] of n_tok entries).
 *
 * Cache layout (kernels/backend.h): sequence s's cache starts at element
 * s * seq_stride and is the single-sequence [kv head][position][head_dim]
 * f16 layout.
 * 1. k_rope_batch: RoPE of token t at pos[t] (the arithmetic of k_rope).
 * 2. k_kv_store_batch: token t's keys and values at (seq[t], pos[t]).
 * 3. k_attn_batch: block (token t, KV head, chunk of up to KB_GROUP of the
 *    query heads sharing that KV head) attends over positions 0..pos[t] of
 *    its sequence in tiles of KB_TILE positions: the tile's keys are staged
 *    in shared memory with coalesced 16-byte loads (each key read once for
 *    all the block's heads, where one block per query head read it G
 *    times), scores are one key per thread pair against every head's query,
 *    an online softmax per head runs in one warp per head, and P·V reads the
 *    values straight from global memory (coalesced along head_dim), the
 *    positions split over thread slices that are summed at the end. Decode
 *    steps of many short sequences are bound by reading K and V once.
 */
#include <cuda_fp16.h>
#include <math.h>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.cuh"

#define KB_THREADS 128 /* 4 warps */
#define KB_GROUP 4     /* query heads per block: one softmax warp each */
#define KB_TILE 64     /* positions per tile: two threads per key */
#define KB_KPAD 16     /* halfs of padding per staged key row (bank spread) */

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

/* Shared memory of k_attn_batch for head_dim hd (bytes): the staged keys,
 * the block's queries, the tile's scores and the slices' partial outputs. */
static size_t kb_smem(int hd) {
    return (size_t)KB_TILE * (hd + KB_KPAD) * sizeof(__half) +
           ((size_t)KB_GROUP * hd + KB_GROUP * KB_TILE + (size_t)KB_THREADS * 2 * KB_GROUP) * sizeof(float);
}

__global__ void __launch_bounds__(KB_THREADS)
    k_attn_batch(const float *q, const __half *K, const __half *V, int n_head, int n_kv, int n_ctx, int hd,
                 const int32_t *seq, const int32_t *pos, int64_t seq_stride, float *out) {
    extern __shared__ __align__(16) unsigned char kb_sh[];
    const int ks = hd + KB_KPAD; /* staged key row stride (halfs) */
    __half *sk = (__half *)kb_sh;
    float *sq = (float *)(sk + (size_t)KB_TILE * ks); /* [KB_GROUP][hd], scaled by 1/sqrt(hd) */
    float *sp = sq + KB_GROUP * hd;                  /* [KB_GROUP][KB_TILE]: scores, then weights */
    float *sred = sp + KB_GROUP * KB_TILE;           /* [slice][g][hd] partial outputs */
    __shared__ float s_m[KB_GROUP], s_l[KB_GROUP], s_corr[KB_GROUP];
    pdl_wait();
    pdl_launch();
    const int t = blockIdx.x, hk = blockIdx.y, G = n_head / n_kv, h0 = hk * G + blockIdx.z * KB_GROUP;
    const int gc = min(KB_GROUP, G - (int)blockIdx.z * KB_GROUP), tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
    const int n = pos[t] + 1;
    const size_t base = (size_t)seq[t] * (size_t)seq_stride + (size_t)hk * n_ctx * hd;
    const __half *Kh = K + base, *Vh = V + base;
    const float inv_sqrt = 1.0f / sqrtf((float)hd);
    for (int i = tid; i < gc * hd; i += KB_THREADS) sq[i] = q[((size_t)t * n_head + h0) * hd + i] * inv_sqrt;
    if (tid < KB_GROUP) s_m[tid] = -INFINITY, s_l[tid] = 0.0f;
    /* P·V mapping: thread = (slice j, column pair c); hd / 2 <= KB_THREADS. */
    const int npair = hd / 2, nsl = KB_THREADS / npair, j = tid / npair, c = tid % npair;
    float acc[KB_GROUP][2];
    for (int g = 0; g < KB_GROUP; g++) acc[g][0] = acc[g][1] = 0.0f;
    const int nch = hd / 8; /* 16-byte chunks per key row */
    for (int p0 = 0; p0 < n; p0 += KB_TILE) {
        const int np = min(KB_TILE, n - p0);
        __syncthreads(); /* the previous tile's keys and weights are no longer read */
        for (int i = tid; i < np * nch; i += KB_THREADS) {
            int r = i / nch, ch = i % nch;
            *(uint4 *)(sk + (size_t)r * ks + ch * 8) = *(const uint4 *)(Kh + (size_t)(p0 + r) * hd + ch * 8);
        }
        __syncthreads();
        { /* scores: key r = tid / 2; the pair splits its 16-byte chunks */
            int r = tid >> 1, hf = tid & 1;
            float d[KB_GROUP];
            for (int g = 0; g < KB_GROUP; g++) d[g] = 0.0f;
            if (r < np)
                for (int ch = hf; ch < nch; ch += 2) {
                    uint4 raw = *(const uint4 *)(sk + (size_t)r * ks + ch * 8);
                    const __half2 *k2 = (const __half2 *)&raw;
                    for (int u = 0; u < 4; u++) {
                        float2 kf = __half22float2(k2[u]);
                        int e = ch * 8 + 2 * u;
                        for (int g = 0; g < KB_GROUP; g++)
                            if (g < gc) d[g] = fmaf(sq[g * hd + e], kf.x, fmaf(sq[g * hd + e + 1], kf.y, d[g]));
                    }
                }
            for (int g = 0; g < KB_GROUP; g++) {
                float v = d[g] + __shfl_xor_sync(0xffffffffu, d[g], 1);
                if (hf == 0 && r < KB_TILE) sp[g * KB_TILE + r] = r < np ? v : -INFINITY;
            }
        }
        __syncthreads();
        if (w < gc) { /* online softmax of head w over this tile */
            float mx = -INFINITY;
            for (int r = lane; r < KB_TILE; r += 32) mx = fmaxf(mx, sp[w * KB_TILE + r]);
            for (int o = 16; o; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
            float m_old = s_m[w], m_new = fmaxf(m_old, mx), sum = 0.0f;
            for (int r = lane; r < KB_TILE; r += 32) {
                float e = r < np ? expf(sp[w * KB_TILE + r] - m_new) : 0.0f;
                sp[w * KB_TILE + r] = e;
                sum += e;
            }
            for (int o = 16; o; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
            if (lane == 0) {
                float corr = expf(m_old - m_new); /* 0 on the first tile (m_old = -inf) */
                s_corr[w] = corr, s_l[w] = s_l[w] * corr + sum, s_m[w] = m_new;
            }
        }
        __syncthreads();
        if (j < nsl) {
            for (int g = 0; g < KB_GROUP; g++) /* g < gc: constant indices keep acc in registers */
                if (g < gc) acc[g][0] *= s_corr[g], acc[g][1] *= s_corr[g];
            for (int r = j; r < np; r += nsl) {
                float2 vf = __half22float2(*(const __half2 *)(Vh + (size_t)(p0 + r) * hd + 2 * c));
                for (int g = 0; g < KB_GROUP; g++)
                    if (g < gc) {
                        float pw = sp[g * KB_TILE + r];
                        acc[g][0] = fmaf(pw, vf.x, acc[g][0]), acc[g][1] = fmaf(pw, vf.y, acc[g][1]);
                    }
            }
        }
    }
    if (j < nsl)
        for (int g = 0; g < KB_GROUP; g++) {
            if (g >= gc) break;
            float *r = sred + ((size_t)j * KB_GROUP + g) * hd + 2 * c;
            r[0] = acc[g][0], r[1] = acc[g][1];
        }
    __syncthreads();
    for (int i = tid; i < gc * hd; i += KB_THREADS) {
        int g = i / hd, e = i % hd;
        float o = 0.0f;
        for (int s2 = 0; s2 < nsl; s2++) o += sred[((size_t)s2 * KB_GROUP + g) * hd + e];
        out[((size_t)t * n_head + h0 + g) * hd + e] = o / s_l[g];
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
    if (!bn_k_attention_supported(hd) || hd / 2 > KB_THREADS || s->n_head % s->n_head_kv)
        return cudaErrorInvalidValue;
    bn_launch(k_kv_store_batch, dim3(n_tok, s->n_head_kv), 128, 0, st, k, v, (__half *)kv->k, (__half *)kv->v,
              s->n_head_kv, s->n_ctx, hd, seq, pos, seq_stride);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    int G = s->n_head / s->n_head_kv;
    bn_launch(k_attn_batch, dim3(n_tok, s->n_head_kv, (G + KB_GROUP - 1) / KB_GROUP), KB_THREADS, kb_smem(hd), st,
              q, (const __half *)kv->k, (const __half *)kv->v, s->n_head, s->n_head_kv, s->n_ctx, hd, seq, pos, seq_stride, out);
    return cudaGetLastError();
}
