/* Kernels of multi-sequence batch steps: every token has its own position and
 * sequence (device arrays pos[], seq[] of n_tok entries).
 *
 * Cache layout (kernels/backend.h): sequence s's cache starts at element
 * s * seq_stride and is the single-sequence [kv head][position][head_dim]
 * f16 layout.
 * 1. k_rope_batch: RoPE of token t at pos[t] (the arithmetic of k_rope).
 * 2. k_kv_store_batch: token t's keys and values at (seq[t], pos[t]).
 *    k_rope_kv_store_batch: both in one launch for the q and k of a step.
 * 3. k_attn_batch: block (token t, KV head, chunk of up to KB_GROUP of the
 *    query heads sharing that KV head) attends over positions 0..pos[t] of
 *    its sequence in tiles of KB_TILE positions: the tile's keys are staged
 *    in shared memory with coalesced 16-byte loads (each key read once for
 *    all the block's heads, where one block per query head read it G
 *    times), scores are one key per thread pair against every head's query,
 *    an online softmax per head runs in one warp per head, and P·V reads the
 *    values straight from global memory (coalesced along head_dim, 4 columns
 *    per thread), the positions split over thread slices that are summed at
 *    the end.
 */
#include <cuda_fp16.h>
#include <math.h>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.cuh"
#include "kernels/cuda/cuda_mma.cuh"

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

/* RoPE of q and k at pos[t] and the store of k, v at (seq[t], pos[t]) in one
 * launch: block (token t, head h) rotates query head h (h < n_head) or key
 * head h - n_head, which it also stores with its value row. The arithmetic
 * of k_rope_batch followed by k_kv_store_batch, so the same bits. */
__global__ void k_rope_kv_store_batch(float *q, float *k, const float *v, __half *K, __half *V, int n_head, int n_kv,
                                      int n_ctx, int hd, const int32_t *seq, const int32_t *pos, int64_t seq_stride,
                                      float theta, int neox) {
    pdl_wait();
    pdl_launch();
    if ((int)threadIdx.x >= hd / 2) return;
    int t = blockIdx.x;
    size_t off = (size_t)seq[t] * (size_t)seq_stride;
    rope_pair_store(q, k, v, K + off, V + off, t, blockIdx.y, threadIdx.x, n_head, n_kv, hd, pos[t], theta, neox, n_ctx);
}

/* Shared memory of k_attn_batch for head_dim hd (bytes): the staged keys,
 * the block's queries (KB_GROUP heads, zero past the block's own), the
 * tile's scores [head][position], the weights [position][head] and the
 * slices' partial outputs (KB_THREADS / (hd / 4) slices). */
static size_t kb_smem(int hd) {
    return (size_t)KB_TILE * (hd + KB_KPAD) * sizeof(__half) +
           ((size_t)KB_GROUP * hd + 2 * KB_GROUP * KB_TILE + (size_t)KB_THREADS * 4 * KB_GROUP) * sizeof(float);
}

/* Latency, not bandwidth, bounds this kernel (a decode step of 256
 * sequences reads ~86 MB per layer, 29 us at 3 TB/s; the first version took
 * 113 us, mostly waiting on loads): so the next tile's keys are fetched with
 * cp.async into the key buffer as soon as the scores have read it (they land
 * during the softmax and P·V), each thread's values of the tile are loaded
 * into registers before the scores (up to KB_VPF rows; any more are read in
 * the P·V loop), every head of the group is computed branch-free (missing
 * heads have zero queries), and queries and weights are read from shared
 * memory 4 floats at a time, each P·V thread owning 4 columns. */
#define KB_VPF 8 /* value rows prefetched per thread and tile */

__global__ void __launch_bounds__(KB_THREADS)
    k_attn_batch(const float *q, const __half *K, const __half *V, int n_head, int n_kv, int n_ctx, int hd,
                 const int32_t *seq, const int32_t *pos, int64_t seq_stride, float *out) {
    extern __shared__ __align__(16) unsigned char kb_sh[];
    const int ks = hd + KB_KPAD; /* staged key row stride (halfs) */
    __half *sk = (__half *)kb_sh;
    float *sq = (float *)(sk + (size_t)KB_TILE * ks); /* [KB_GROUP][hd], scaled by 1/sqrt(hd) */
    float *sp = sq + KB_GROUP * hd;                  /* [KB_GROUP][KB_TILE]: scores */
    float *sw = sp + KB_GROUP * KB_TILE;             /* [KB_TILE][KB_GROUP]: weights */
    float *sred = sw + KB_GROUP * KB_TILE;           /* [slice][g][hd] partial outputs */
    __shared__ float s_m[KB_GROUP], s_l[KB_GROUP], s_corr[KB_GROUP];
    pdl_wait();
    pdl_launch();
    const int t = blockIdx.x, hk = blockIdx.y, G = n_head / n_kv, h0 = hk * G + blockIdx.z * KB_GROUP;
    const int gc = min(KB_GROUP, G - (int)blockIdx.z * KB_GROUP), tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
    const int n = pos[t] + 1;
    const size_t base = (size_t)seq[t] * (size_t)seq_stride + (size_t)hk * n_ctx * hd;
    const __half *Kh = K + base, *Vh = V + base;
    const int nch = hd / 8; /* 16-byte chunks per key row */
    auto fetch_keys = [&](int p0) {
        int np = min(KB_TILE, n - p0);
        for (int i = tid; i < np * nch; i += KB_THREADS) {
            int r = i / nch, ch = i - r * nch;
            bn_cp_async16(sk + (size_t)r * ks + ch * 8, Kh + (size_t)(p0 + r) * hd + ch * 8, true);
        }
        bn_cp_async_commit();
    };
    fetch_keys(0);
    const float inv_sqrt = 1.0f / sqrtf((float)hd);
    for (int i = tid; i < KB_GROUP * hd; i += KB_THREADS)
        sq[i] = i < gc * hd ? q[((size_t)t * n_head + h0) * hd + i] * inv_sqrt : 0.0f;
    if (tid < KB_GROUP) s_m[tid] = -INFINITY, s_l[tid] = 0.0f;
    /* P·V mapping: thread = (slice j, column quad c); hd / 4 <= KB_THREADS. */
    const int nquad = hd / 4, nsl = KB_THREADS / nquad, j = tid / nquad, c = tid % nquad;
    float acc[KB_GROUP][4];
#pragma unroll
    for (int g = 0; g < KB_GROUP; g++) acc[g][0] = acc[g][1] = acc[g][2] = acc[g][3] = 0.0f;
    for (int p0 = 0; p0 < n; p0 += KB_TILE) {
        const int np = min(KB_TILE, n - p0);
        bn_cp_async_wait<0>();
        __syncthreads(); /* this tile's keys landed; the previous tile's weights are no longer read */
        uint2 vpf[KB_VPF];
#pragma unroll
        for (int u = 0; u < KB_VPF; u++) {
            int r = j + u * nsl;
            if (j < nsl && r < np) vpf[u] = *(const uint2 *)(Vh + (size_t)(p0 + r) * hd + 4 * c);
        }
        { /* scores: key r = tid / 2; the pair splits its 16-byte chunks */
            int r = tid >> 1, hf = tid & 1;
            float d[KB_GROUP];
#pragma unroll
            for (int g = 0; g < KB_GROUP; g++) d[g] = 0.0f;
            if (r < np)
                for (int ch = hf; ch < nch; ch += 2) {
                    uint4 raw = *(const uint4 *)(sk + (size_t)r * ks + ch * 8);
                    const __half2 *k2 = (const __half2 *)&raw;
                    float kf[8];
#pragma unroll
                    for (int u = 0; u < 4; u++) {
                        float2 f = __half22float2(k2[u]);
                        kf[2 * u] = f.x, kf[2 * u + 1] = f.y;
                    }
#pragma unroll
                    for (int g = 0; g < KB_GROUP; g++) {
                        const float4 *qa = (const float4 *)(sq + g * hd + ch * 8);
                        float4 x0 = qa[0], x1 = qa[1];
                        float e = d[g];
                        e = fmaf(x0.x, kf[0], e), e = fmaf(x0.y, kf[1], e), e = fmaf(x0.z, kf[2], e);
                        e = fmaf(x0.w, kf[3], e), e = fmaf(x1.x, kf[4], e), e = fmaf(x1.y, kf[5], e);
                        e = fmaf(x1.z, kf[6], e), e = fmaf(x1.w, kf[7], e);
                        d[g] = e;
                    }
                }
#pragma unroll
            for (int g = 0; g < KB_GROUP; g++) {
                float v = d[g] + __shfl_xor_sync(0xffffffffu, d[g], 1);
                if (hf == 0 && r < KB_TILE) sp[g * KB_TILE + r] = r < np ? v : -INFINITY;
            }
        }
        __syncthreads(); /* scores written; the key buffer is free */
        if (p0 + KB_TILE < n) fetch_keys(p0 + KB_TILE);
        if (w < KB_GROUP) { /* online softmax of head w over this tile (heads past gc: harmless zeros) */
            float mx = -INFINITY;
            for (int r = lane; r < KB_TILE; r += 32) mx = fmaxf(mx, sp[w * KB_TILE + r]);
            for (int o = 16; o; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
            float m_old = s_m[w], m_new = fmaxf(m_old, mx), sum = 0.0f;
            for (int r = lane; r < KB_TILE; r += 32) {
                float e = r < np ? expf(sp[w * KB_TILE + r] - m_new) : 0.0f;
                sw[r * KB_GROUP + w] = e;
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
#pragma unroll
            for (int g = 0; g < KB_GROUP; g++) {
                float cr = s_corr[g];
                acc[g][0] *= cr, acc[g][1] *= cr, acc[g][2] *= cr, acc[g][3] *= cr;
            }
            auto pv = [&](int r, uint2 raw) {
                float2 v01 = __half22float2(*(const __half2 *)&raw.x), v23 = __half22float2(*(const __half2 *)&raw.y);
                float4 pw = *(const float4 *)(sw + r * KB_GROUP);
                float pg[KB_GROUP] = {pw.x, pw.y, pw.z, pw.w};
#pragma unroll
                for (int g = 0; g < KB_GROUP; g++) {
                    acc[g][0] = fmaf(pg[g], v01.x, acc[g][0]), acc[g][1] = fmaf(pg[g], v01.y, acc[g][1]);
                    acc[g][2] = fmaf(pg[g], v23.x, acc[g][2]), acc[g][3] = fmaf(pg[g], v23.y, acc[g][3]);
                }
            };
#pragma unroll
            for (int u = 0; u < KB_VPF; u++)
                if (j + u * nsl < np) pv(j + u * nsl, vpf[u]);
#pragma unroll 4
            for (int r = j + KB_VPF * nsl; r < np; r += nsl) pv(r, *(const uint2 *)(Vh + (size_t)(p0 + r) * hd + 4 * c));
        }
    }
    if (j < nsl)
#pragma unroll
        for (int g = 0; g < KB_GROUP; g++)
            *(float4 *)(sred + ((size_t)j * KB_GROUP + g) * hd + 4 * c) =
                make_float4(acc[g][0], acc[g][1], acc[g][2], acc[g][3]);
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

/* Lets k_attn_batch take the largest shared memory it needs (49 KB at
 * head_dim 256, above the 48 KB default), once per device. */
static cudaError_t kb_allow_smem(void) {
    static bool allowed[64]; /* a racing first call sets the same attribute */
    int dev = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e != cudaSuccess || (dev >= 0 && dev < 64 && allowed[dev])) return e;
    e = cudaFuncSetAttribute(k_attn_batch, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)kb_smem(256));
    if (e == cudaSuccess && dev >= 0 && dev < 64) allowed[dev] = true;
    return e;
}

static cudaError_t kb_launch(cudaStream_t st, const bn_kv_layer *kv, int64_t seq_stride, const bn_attn_shape *s,
                             const float *q, int n_tok, const int32_t *seq, const int32_t *pos, float *out) {
    int G = s->n_head / s->n_head_kv;
    cudaError_t e = kb_allow_smem();
    if (e != cudaSuccess) return e;
    bn_launch(k_attn_batch, dim3(n_tok, s->n_head_kv, (G + KB_GROUP - 1) / KB_GROUP), KB_THREADS, kb_smem(s->head_dim),
              st, q, (const __half *)kv->k, (const __half *)kv->v, s->n_head, s->n_head_kv, s->n_ctx, s->head_dim, seq,
              pos, seq_stride, out);
    return cudaGetLastError();
}

static int kb_supported(const bn_attn_shape *s) {
    return bn_k_attention_supported(s->head_dim) && s->head_dim / 4 <= KB_THREADS && s->n_head % s->n_head_kv == 0;
}

cudaError_t bn_k_attention_batch(cudaStream_t st, const bn_kv_layer *kv, int64_t seq_stride, const bn_attn_shape *s,
                                 const float *q, const float *k, const float *v, int n_tok, const int32_t *seq,
                                 const int32_t *pos, float *out) {
    if (!kb_supported(s)) return cudaErrorInvalidValue;
    int hd = s->head_dim;
    bn_launch(k_kv_store_batch, dim3(n_tok, s->n_head_kv), 128, 0, st, k, v, (__half *)kv->k, (__half *)kv->v,
              s->n_head_kv, s->n_ctx, hd, seq, pos, seq_stride);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    return kb_launch(st, kv, seq_stride, s, q, n_tok, seq, pos, out);
}

cudaError_t bn_k_rope_attention_batch(cudaStream_t st, const bn_kv_layer *kv, int64_t seq_stride,
                                      const bn_attn_shape *s, float *q, float *k, const float *v, int n_tok,
                                      const int32_t *seq, const int32_t *pos, float theta, int neox, float *out) {
    if (!kb_supported(s)) return cudaErrorInvalidValue;
    int hd = s->head_dim, threads = (hd / 2 + 31) / 32 * 32;
    bn_launch(k_rope_kv_store_batch, dim3(n_tok, s->n_head + s->n_head_kv), threads, 0, st, q, k, v, (__half *)kv->k,
              (__half *)kv->v, s->n_head, s->n_head_kv, s->n_ctx, hd, seq, pos, seq_stride, theta, neox);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    return kb_launch(st, kv, seq_stride, s, q, n_tok, seq, pos, out);
}
