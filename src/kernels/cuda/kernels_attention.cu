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
 * early. Softmax and products in f32, as the CPU (which keeps f32 keys).
 * Decode steps (one token, recorded) use k_attn_decode instead: RoPE, the
 * store, 32-position splits and their combine in one launch (see below). */
#include <cuda_fp16.h>
#include <math.h>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.cuh"

#define ATT_GROUP 4 /* query heads per block (= warps of a block) */

__global__ void k_kv_store(const float *k, const float *v, __half *K, __half *V, int n_kv, int n_ctx, int hd,
                           bn_pos pos) {
    pdl_wait();
    pdl_launch();
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
    pdl_wait();
    pdl_launch();
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
    pdl_wait();
    pdl_launch();
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
    bn_launch(k_kv_store, dim3(n_tok, s->n_head_kv), 128, 0, st, k, v, (__half *)kv->k, (__half *)kv->v, s->n_head_kv,
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
    bn_launch(k_attn_partial, grid, ATT_CHUNK, smem, st, q, K, V, s->n_head, s->n_head_kv, s->n_ctx, hd, pos, split_len,
                                                  n_split, po, pml);
    if ((e = cudaGetLastError()) != cudaSuccess) return e;
    bn_launch(k_attn_combine, dim3(s->n_head, n_tok), 128, 0, st, po, pml, s->n_head, hd, n_split, split_len, pos, out);
    return cudaGetLastError();
}

/* ------------------------------------------------ one-token decode path -- */

#define DA_CHUNK 32    /* positions per chunk: one per lane in the softmax */
#define DA_NMAX 256    /* most splits per head */
#define DA_THREADS 128 /* 4 warps; ATT_GROUP heads per block */
#define DA_KCH 8       /* key chunks of 8 per scoring thread: 4 threads x 8 x 8 = 256 >= hd */
#define DA_VR 32       /* value pairs per thread and chunk (hd 256: one subset of 32 positions) */
#define DA_OUT 8       /* combine: outputs per thread (ATT_GROUP x 256 / DA_THREADS) */

struct dattn {
    const float *q, *k, *v;
    __half *K, *V;
    int n_head, n_kv, n_ctx, hd, neox;
    float theta;
    bn_pos pos;
    float *po, *pml, *out;
    int *cnt;
};

/* Positions per split for n = pos + 1 positions: chunks of 32, as few per
 * split as DA_NMAX splits allow. Every block and the combine agree on it. */
__device__ __forceinline__ int da_split_len(int n) {
    return DA_CHUNK * ((n + DA_CHUNK * DA_NMAX - 1) / (DA_CHUNK * DA_NMAX));
}

/* One chunk's keys and values in registers: thread (position pi, quarter
 * part) holds its quarter of the key (16-byte loads, interleaved chunks of
 * 8 halves), thread (pair e2, subset sub) the value pairs of the positions
 * sub, sub + nsub, ... The new position P is not loaded (it comes from
 * shared memory). */
__device__ __forceinline__ void da_load(uint4 (&kc)[DA_KCH], __half2 (&vr)[DA_VR], const __half *Kh, const __half *Vh,
                                        int c0, int np, int P, int hd, int pi, int part, int e2, int sub, int nsub) {
    const int nc8 = hd >> 3, p = c0 + pi;
#pragma unroll
    for (int k = 0; k < DA_KCH; k++) {
        int ci = part + 4 * k;
        kc[k] = pi < np && ci < nc8 && p != P ? *(const uint4 *)(Kh + (size_t)p * hd + ci * 8)
                                               : make_uint4(0u, 0u, 0u, 0u);
    }
#pragma unroll
    for (int k = 0; k < DA_VR; k++) {
        int jj = sub + nsub * k;
        vr[k] = sub < nsub && jj < np && c0 + jj != P ? *(const __half2 *)(Vh + (size_t)(c0 + jj) * hd + 2 * e2)
                                                       : __floats2half2_rn(0.0f, 0.0f);
    }
}

/* Block (kv head x head group, split): up to ATT_GROUP query heads of one
 * group over the split's positions, 32 at a time.
 * Before waiting for the previous kernel (programmatic launch), the block
 * does all that depends only on the position and on earlier steps: the RoPE
 * angles (double, as the CPU) and the first chunk's keys and values (cache
 * positions before the new one, written by earlier steps), into registers.
 * Then:
 *  0. q of the group rotated into shared memory; the block whose split holds
 *     the new position also rotates k, rounds k and v to f16 (what the cache
 *     holds) and uses them from shared memory; the first group's block
 *     stores them into the cache;
 *  1. scores: 4 threads per position, each a quarter of the key, summed with
 *     two shuffles;
 *  2. warp g: online softmax of head g over the chunk (one position per lane);
 *  3. values: thread = 2 adjacent output elements x a subset of the
 *     positions, the subsets summed at the end.
 * The split's unnormalized output, max and sum go to the work space; the
 * last block of the group to finish (atomic counter) combines the splits in
 * split order (the result does not depend on which block is last) and
 * resets the counter. */
__global__ void __launch_bounds__(DA_THREADS) k_attn_decode(dattn a) {
    extern __shared__ float dsm[]; /* sq [ATT_GROUP][hd], kn [hd], vn [hd], red [<= 1024] */
    __shared__ float sp[ATT_GROUP][DA_CHUNK];
    __shared__ float s_cs[128], s_sn[128];
    __shared__ float s_m[ATT_GROUP], s_l[ATT_GROUP], s_a[ATT_GROUP];
    __shared__ float c_w[ATT_GROUP][DA_NMAX];
    __shared__ float c_L[ATT_GROUP];
    __shared__ int s_last;
    const int hd = a.hd, half = hd >> 1, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int G = a.n_head / a.n_kv, ngc = (G + ATT_GROUP - 1) / ATT_GROUP;
    const int hk = blockIdx.x / ngc, gc = blockIdx.x % ngc, h0 = hk * G + gc * ATT_GROUP;
    const int nh = min(ATT_GROUP, G - gc * ATT_GROUP);
    /* The position: written by a host copy before the step. */
    const int P = a.pos.ptr ? *a.pos.ptr : a.pos.val, n = P + 1;
    const int S = da_split_len(n), live = (n + S - 1) / S, split = blockIdx.y;
    if (split >= live) return; /* (the other blocks wait; the grid completes after them) */
    const int p0 = split * S, p1 = min(p0 + S, n);
    float *sq = dsm, *kn = dsm + ATT_GROUP * hd, *vn = kn + hd, *red = vn + hd;
    const __half *Kh = a.K + (size_t)hk * a.n_ctx * hd, *Vh = a.V + (size_t)hk * a.n_ctx * hd;
    const int nsub = DA_THREADS / half, e2 = tid % half, sub = tid / half, nc8 = hd >> 3;
    const int pi = tid >> 2, part = tid & 3;

    for (int i = tid; i < half; i += DA_THREADS) {
        double ang = (double)P * pow((double)a.theta, -2.0 * i / hd);
        s_cs[i] = (float)cos(ang), s_sn[i] = (float)sin(ang);
    }
    if (tid < ATT_GROUP) s_m[tid] = -INFINITY, s_l[tid] = 0.0f, s_a[tid] = 0.0f;
    uint4 kc[DA_KCH];
    __half2 vr[DA_VR];
    da_load(kc, vr, Kh, Vh, p0, min(DA_CHUNK, p1 - p0), P, hd, pi, part, e2, sub, nsub);

    pdl_wait();
    pdl_launch();
    __syncthreads(); /* s_cs, s_sn */
    /* 0. RoPE of q (and of the new k) */
    for (int idx = tid; idx < ATT_GROUP * half; idx += DA_THREADS) {
        int g = idx / half, i = idx - g * half;
        int ia = a.neox ? i : 2 * i, ib = a.neox ? i + half : 2 * i + 1;
        float y0 = 0.0f, y1 = 0.0f;
        if (g < nh) {
            const float *row = a.q + (size_t)(h0 + g) * hd;
            float x0 = row[ia], x1 = row[ib], cs = s_cs[i], sn = s_sn[i];
            y0 = __fsub_rn(__fmul_rn(x0, cs), __fmul_rn(x1, sn));
            y1 = __fadd_rn(__fmul_rn(x0, sn), __fmul_rn(x1, cs));
        }
        sq[g * hd + ia] = y0, sq[g * hd + ib] = y1;
    }
    if (P < p1) { /* the new position is in this split */
        size_t dst = ((size_t)hk * a.n_ctx + P) * hd;
        const float *kr = a.k + (size_t)hk * hd, *vr0 = a.v + (size_t)hk * hd;
        for (int i = tid; i < half; i += DA_THREADS) {
            int ia = a.neox ? i : 2 * i, ib = a.neox ? i + half : 2 * i + 1;
            float x0 = kr[ia], x1 = kr[ib], cs = s_cs[i], sn = s_sn[i];
            float y0 = __fsub_rn(__fmul_rn(x0, cs), __fmul_rn(x1, sn));
            float y1 = __fadd_rn(__fmul_rn(x0, sn), __fmul_rn(x1, cs));
            __half k0 = __float2half_rn(y0), k1 = __float2half_rn(y1);
            __half v0 = __float2half_rn(vr0[ia]), v1 = __float2half_rn(vr0[ib]);
            kn[ia] = __half2float(k0), kn[ib] = __half2float(k1);
            vn[ia] = __half2float(v0), vn[ib] = __half2float(v1);
            if (gc == 0) {
                a.K[dst + ia] = k0, a.K[dst + ib] = k1;
                a.V[dst + ia] = v0, a.V[dst + ib] = v1;
            }
        }
    }
    __syncthreads();

    const float inv_sqrt = 1.0f / sqrtf((float)hd);
    float2 o[ATT_GROUP];
#pragma unroll
    for (int g = 0; g < ATT_GROUP; g++) o[g] = make_float2(0.0f, 0.0f);
    for (int c0 = p0; c0 < p1; c0 += DA_CHUNK) {
        const int np = min(DA_CHUNK, p1 - c0);
        /* 1. scores */
        {
            const int p = c0 + pi;
            float acc[ATT_GROUP];
#pragma unroll
            for (int g = 0; g < ATT_GROUP; g++) acc[g] = 0.0f;
#pragma unroll
            for (int k = 0; k < DA_KCH; k++) {
                int ci = part + 4 * k;
                if (pi < np && ci < nc8) {
                    float kf[8];
                    key8(kf, p == P, kn + ci * 8, kc[k]);
#pragma unroll
                    for (int g = 0; g < ATT_GROUP; g++)
#pragma unroll
                        for (int e = 0; e < 8; e++) acc[g] = fmaf(sq[g * hd + ci * 8 + e], kf[e], acc[g]);
                }
            }
#pragma unroll
            for (int g = 0; g < ATT_GROUP; g++) {
                acc[g] += __shfl_xor_sync(0xffffffffu, acc[g], 1);
                acc[g] += __shfl_xor_sync(0xffffffffu, acc[g], 2);
            }
            if (part == 0) {
#pragma unroll
                for (int g = 0; g < ATT_GROUP; g++) sp[g][pi] = pi < np ? acc[g] * inv_sqrt : -INFINITY;
            }
        }
        __syncthreads();
        /* 2. softmax of head `warp` over the chunk */
        if (warp < nh) {
            float sc = sp[warp][lane], mx = sc;
            for (int off = 16; off; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
            float m_old = s_m[warp], m_new = fmaxf(m_old, mx);
            float e = lane < np ? expf(sc - m_new) : 0.0f, sum = e;
            sp[warp][lane] = e;
            for (int off = 16; off; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
            if (lane == 0) {
                float al = expf(m_old - m_new); /* 0 on the first chunk */
                s_a[warp] = al;
                s_l[warp] = s_l[warp] * al + sum;
                s_m[warp] = m_new;
            }
        }
        __syncthreads();
        /* 3. values */
        if (sub < nsub) {
#pragma unroll
            for (int g = 0; g < ATT_GROUP; g++) {
                float al = g < nh ? s_a[g] : 0.0f;
                o[g].x *= al, o[g].y *= al;
            }
#pragma unroll
            for (int k = 0; k < DA_VR; k++) {
                int jj = sub + nsub * k;
                if (jj < np) {
                    float2 vf = c0 + jj == P ? make_float2(vn[2 * e2], vn[2 * e2 + 1]) : __half22float2(vr[k]);
#pragma unroll
                    for (int g = 0; g < ATT_GROUP; g++) {
                        float pg = g < nh ? sp[g][jj] : 0.0f;
                        o[g].x = fmaf(pg, vf.x, o[g].x), o[g].y = fmaf(pg, vf.y, o[g].y);
                    }
                }
            }
        }
        __syncthreads(); /* sp is rewritten by the next chunk */
        if (c0 + DA_CHUNK < p1)
            da_load(kc, vr, Kh, Vh, c0 + DA_CHUNK, min(DA_CHUNK, p1 - c0 - DA_CHUNK), P, hd, pi, part, e2, sub, nsub);
    }
    if (sub < nsub) {
#pragma unroll
        for (int g = 0; g < ATT_GROUP; g++)
            if (g < nh) {
                red[(sub * ATT_GROUP + g) * hd + 2 * e2] = o[g].x;
                red[(sub * ATT_GROUP + g) * hd + 2 * e2 + 1] = o[g].y;
            }
    }
    __syncthreads();
    const int ns = gridDim.y;
    for (int idx = tid; idx < nh * hd; idx += DA_THREADS) {
        int g = idx / hd, i = idx - g * hd;
        float t = 0.0f;
        for (int u = 0; u < nsub; u++) t += red[(u * ATT_GROUP + g) * hd + i];
        a.po[((size_t)(h0 + g) * ns + split) * hd + i] = t;
    }
    if (tid < nh) {
        size_t row = (size_t)(h0 + tid) * ns + split;
        a.pml[2 * row] = s_m[tid], a.pml[2 * row + 1] = s_l[tid];
    }

    /* The last block of the group combines. */
    __threadfence();
    __syncthreads();
    if (tid == 0) s_last = atomicAdd(a.cnt + blockIdx.x, 1) == live - 1;
    __syncthreads();
    if (!s_last) return;
    __threadfence();
    if (tid == 0) a.cnt[blockIdx.x] = 0;
    if (warp < nh) {
        const float *pm = a.pml + 2 * (size_t)(h0 + warp) * ns;
        float M = -INFINITY;
        for (int s2 = lane; s2 < live; s2 += 32)
            if (__ldcg(pm + 2 * s2 + 1) > 0.0f) M = fmaxf(M, __ldcg(pm + 2 * s2));
        for (int off = 16; off; off >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, off));
        float L = 0.0f;
        for (int s2 = lane; s2 < live; s2 += 32) {
            float l = __ldcg(pm + 2 * s2 + 1), c = l > 0.0f ? expf(__ldcg(pm + 2 * s2) - M) : 0.0f;
            c_w[warp][s2] = c;
            L += l * c;
        }
        for (int off = 16; off; off >>= 1) L += __shfl_xor_sync(0xffffffffu, L, off);
        if (lane == 0) c_L[warp] = L;
    }
    __syncthreads();
    /* Each thread: up to DA_OUT outputs (g, i), their splits' loads in flight together. */
    const float *pp[DA_OUT];
    int go[DA_OUT];
    float O[DA_OUT];
#pragma unroll
    for (int k = 0; k < DA_OUT; k++) {
        int idx = tid + k * DA_THREADS, g = idx / hd, i = idx - g * hd;
        go[k] = idx < nh * hd ? g : -1;
        pp[k] = a.po + (size_t)(h0 + (idx < nh * hd ? g : 0)) * ns * hd + i;
        O[k] = 0.0f;
    }
#pragma unroll 4
    for (int s2 = 0; s2 < live; s2++) {
#pragma unroll
        for (int k = 0; k < DA_OUT; k++)
            if (go[k] >= 0) O[k] = fmaf(__ldcg(pp[k] + (size_t)s2 * hd), c_w[go[k]][s2], O[k]);
    }
#pragma unroll
    for (int k = 0; k < DA_OUT; k++)
        if (go[k] >= 0) {
            int idx = tid + k * DA_THREADS;
            a.out[(size_t)h0 * hd + idx] = O[k] / c_L[go[k]];
        }
}

static int da_grid_x(int len) {
    int chunks = (len + DA_CHUNK - 1) / DA_CHUNK;
    return chunks < 1 ? 1 : (chunks > DA_NMAX ? DA_NMAX : chunks);
}

size_t bn_k_attention_decode_ws(const bn_attn_shape *s, int len) {
    return (size_t)s->n_head * da_grid_x(len) * (s->head_dim + 2);
}

int bn_k_attention_decode_counters(const bn_attn_shape *s) {
    int G = s->n_head / s->n_head_kv;
    return s->n_head_kv * ((G + ATT_GROUP - 1) / ATT_GROUP);
}

cudaError_t bn_k_attention_decode(cudaStream_t st, const bn_kv_layer *kv, const bn_attn_shape *s, const float *q,
                                  const float *k, const float *v, bn_pos pos, float theta, int neox, int len,
                                  float *ws, int *counters, float *out) {
    int hd = s->head_dim;
    if (!bn_k_attention_supported(hd) || s->n_head % s->n_head_kv) return cudaErrorInvalidValue;
    int gx = da_grid_x(len);
    dattn a;
    a.q = q, a.k = k, a.v = v;
    a.K = (__half *)kv->k, a.V = (__half *)kv->v;
    a.n_head = s->n_head, a.n_kv = s->n_head_kv, a.n_ctx = s->n_ctx, a.hd = hd, a.neox = neox;
    a.theta = theta;
    a.pos = pos;
    a.po = ws;
    a.pml = ws + (size_t)s->n_head * gx * hd;
    a.out = out;
    a.cnt = counters;
    size_t smem = (size_t)(ATT_GROUP * hd + 2 * hd + 1024) * sizeof(float);
    dim3 grid(bn_k_attention_decode_counters(s), gx); /* groups fastest: live splits first */
    cudaError_t e = bn_launch(k_attn_decode, grid, DA_THREADS, smem, st, a);
    return e != cudaSuccess ? e : cudaGetLastError();
}
