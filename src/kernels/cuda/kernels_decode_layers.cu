/* The layers of a one-token decode step in one persistent launch.
 *
 * Why: a decode step of 2B4T is 150 small kernels whose weights are read in
 * ~6 µs per layer at HBM speed, but each kernel is a chain of dependent
 * latencies (launch, wait for the previous kernel, activation row from L2,
 * three block reductions, dot products, store) on a fraction of the GPU, so a
 * layer took ~65 µs. Here one block per multiprocessor runs every layer:
 *
 *   per layer  A  RMSNorm(x) -> int8 (every block, redundantly) -> its rows
 *                 of q/k/v                                        | barrier
 *              B  attention: block = (kv head x group of <= 4 query heads,
 *                 split of positions); RoPE, the new k/v into the cache, the
 *                 last block of a group combines the splits        | barrier
 *              C  [sub-norm](att) -> int8 -> its rows of o; x += o | barrier
 *              D  RMSNorm(x) -> int8 -> its rows of gate and up -> act·up
 *                                                                  | barrier
 *              E  [sub-norm](h) -> int8 -> its rows of down; x += down
 *                                                                  | barrier
 *
 * The barriers are grid-wide (a counter in global memory; the launch is
 * cooperative, so every block is resident). Each block's rows of each phase
 * are a contiguous slice of the weight (and scale) arrays; a bulk copy (TMA,
 * completing on an mbarrier) brings the slice of layer l + 1 into shared
 * memory as soon as the block has used layer l's, so the weights stream from
 * HBM a layer ahead and the dependent chain reads them from shared memory.
 * What does not depend on the step's activations (norm weights, the RoPE
 * angles, the first chunk of cached keys and values) is loaded before the
 * barrier that precedes its use.
 *
 * Arithmetic: the activation side is k_tern_gemv_pro's (act_prologue: sum of
 * squares in double, products rounded as the CPU does, quant_one), the
 * matmul results are the same expression, the GLU is glu_one, RoPE and the
 * f16 cache rounding are k_attn_decode's; the attention's f32 sums run in
 * another order than k_attn_decode's (differences of a few ulp).
 *
 * Compute capability 9.0+ only (bulk copies, mbarrier transaction counts);
 * the backend probes the kernel at start-up and keeps the per-kernel path
 * elsewhere or when the shapes do not fit (bn_k_decode_layers_fits). */
#include <cuda_fp16.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.cuh"

extern "C" {
#include "kernels/cuda/cuda_backend.h"
}

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define DL_ARCH 1
#endif

#define DL_THREADS 512 /* 16 warps */
#define DL_WARPS (DL_THREADS / 32)
#define DL_NPT 16      /* activation elements per thread: rows of up to 8192 */
#define DL_CH 64       /* attention positions per chunk: 8 threads per position */
#define DL_MAXSPLIT 256

/* ------------------------------------------------------------ geometry -- */

/* Rows per block of a phase: a multiple of 4, so that every slice of the
 * f32 scales is 16-byte aligned and sized (bulk copies need both). */
__host__ __device__ inline int dl_rows(int rows, int grid) {
    int r = (rows + grid - 1) / grid;
    return (r + 3) & ~3;
}

__host__ __device__ inline unsigned dl_al(unsigned x) { return (x + 127u) & ~127u; }

/* Floats of the attention's scratch: sq [4][hd], kn, vn [hd], scores
 * [4][DL_CH], the sub-sums [<= 4 x 1024], the combine's weights [4][256]. */
__host__ __device__ inline unsigned dl_fscratch(int hd) {
    return 4u * hd + 2u * hd + 4u * DL_CH + 4096u + 4u * DL_MAXSPLIT;
}

/* Shared memory of a block: 4 mbarriers, the four weight slices (codes,
 * then scales), the quantized activations, the attention scratch, the RoPE
 * table. Host and device compute it alike. */
struct dl_geo {
    int E, Q, KV, F, hd, rA, rO, rG, rD;
    unsigned offA, offO, offG, offD, offXq, offF, offCs, total;
};

__host__ __device__ inline dl_geo dl_geometry(const bn_dl_args &a, int grid) {
    dl_geo g;
    g.E = a.n_embd, g.hd = a.head_dim, g.Q = a.n_head * a.head_dim, g.KV = a.n_kv * a.head_dim, g.F = a.n_ff;
    g.rA = dl_rows(g.Q + 2 * g.KV, grid), g.rO = dl_rows(g.E, grid), g.rG = dl_rows(g.F, grid);
    g.rD = dl_rows(g.E, grid);
    unsigned o = 128;
    g.offA = o, o = dl_al(o + (unsigned)g.rA * (g.E / 4 + 4));
    g.offO = o, o = dl_al(o + (unsigned)g.rO * (g.Q / 4 + 4));
    g.offG = o, o = dl_al(o + 2u * g.rG * (g.E / 4 + 4));
    g.offD = o, o = dl_al(o + (unsigned)g.rD * (g.F / 4 + 4));
    int w = g.E > g.Q ? g.E : g.Q;
    w = w > g.F ? w : g.F;
    g.offXq = o, o = dl_al(o + (unsigned)w);
    g.offF = o, o = dl_al(o + 4u * dl_fscratch(g.hd));
    g.offCs = o, o = dl_al(o + 4u * g.hd);
    g.total = o;
    return g;
}

/* ------------------------------------------------------ PTX primitives -- */

#ifdef DL_ARCH
__device__ __forceinline__ unsigned dl_smem(const void *p) { return (unsigned)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void mbar_init(uint64_t *b, unsigned count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(dl_smem(b)), "r"(count) : "memory");
}

/* One arrival that also expects `bytes` of bulk copies on the barrier. */
__device__ __forceinline__ void mbar_expect(uint64_t *b, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(dl_smem(b)), "r"(bytes)
                 : "memory");
}

__device__ __forceinline__ void mbar_wait(uint64_t *b, unsigned parity) {
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "DL_WAIT:\n"
        "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
        "@!p bra DL_WAIT;\n"
        "}\n" ::"r"(dl_smem(b)),
        "r"(parity)
        : "memory");
}

__device__ __forceinline__ unsigned long long dl_now() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;\n" : "=l"(t));
    return t;
}

/* L2 policy for the weight stream: evict first (each byte is read once per
 * step; the KV cache and activations should keep their lines). */
__device__ __forceinline__ uint64_t dl_evict_first() {
    uint64_t pol;
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(pol));
    return pol;
}

/* Bulk copy of `bytes` (a multiple of 16, both addresses 16-byte aligned)
 * from global to this block's shared memory, completing on b. */
__device__ __forceinline__ void bulk_load(void *dst, const void *src, unsigned bytes, uint64_t *b, uint64_t pol) {
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1], %2, [%3], %4;\n" ::"r"(
            dl_smem(dst)),
        "l"(src), "r"(bytes), "r"(dl_smem(b)), "l"(pol)
        : "memory");
}

/* The grid barrier: every block adds 1 (release: its writes before it are
 * visible to whoever sees the count) and waits until all have (acquire).
 * `gen` is the count this barrier completes at. The launch is cooperative,
 * so every block is resident; a barrier that still does not complete within
 * 2^36 clocks (~30 s: far beyond a debugger's or sanitizer's slowdown)
 * traps, an error rather than a hang. */
__device__ __forceinline__ void dl_grid_sync(unsigned *bar, unsigned &gen) {
    __syncthreads();
    gen += gridDim.x;
    if (threadIdx.x == 0) {
        asm volatile("red.release.gpu.global.add.u32 [%0], 1;\n" ::"l"(bar) : "memory");
        long long t0 = clock64();
        for (;;) {
            unsigned v;
            asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(v) : "l"(bar) : "memory");
            if ((int)(v - gen) >= 0) break;
            if (clock64() - t0 > (1ll << 36)) __trap();
        }
    }
    __syncthreads();
}
#endif

/* Where activation i of a row of `nch` 16-byte code chunks goes in shared
 * memory: run r (of 4) of chunk c at (r * nch + c) * 16, so that a warp's
 * 32 lanes (consecutive chunks) read consecutive 16-byte words. */
__host__ __device__ inline int dl_perm(int i, int nch) {
    int bk = i >> 7, j = i & 127, r = j >> 5, b = j & 31;
    return ((r * nch + bk * 2 + (b >> 4)) << 4) + (b & 15);
}

/* Lanes per row of a phase with n rows a block and nch 16-byte code chunks
 * a row: 8, 16 or 32, whichever needs the fewest rounds of chunk dots per
 * thread (2B4T on 132 SMs: q/k/v and o 16, gate/up 8, down 16 lanes; one
 * warp a row would leave 3/8 of the lanes idle in a second round of a
 * 40-chunk row). */
__host__ __device__ inline int dl_lanes(int n, int nch) {
    int best = 32, cost = 1 << 30;
    for (int L = 32; L >= 8; L >>= 1) {
        int per_round = DL_THREADS / L, c = (n + per_round - 1) / per_round * ((nch + L - 1) / L);
        if (c < cost) cost = c, best = L;
    }
    return best;
}

#ifdef DL_ARCH
/* Unsigned bytes of a times signed bytes of b, summed into c. */
__device__ __forceinline__ int dp4a_us(unsigned a, int b, int c) {
    int d;
    asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}

/* dot64's products with the codes masked in place instead of shifted down:
 * run r's products come scaled by 64, 16, 4, 1 into acc[r] (exact: below
 * 2^31 for rows of up to 8192 codes), one mask per 32-bit word and run
 * instead of a shift and a mask. dl_unscale undoes the scales. */
__device__ __forceinline__ void dot64m(uint4 w, int4 a0, int4 a1, int4 a2, int4 a3, int (&acc)[4]) {
    const unsigned ws[4] = {w.x, w.y, w.z, w.w};
    const int q0[4] = {a0.x, a0.y, a0.z, a0.w}, q1[4] = {a1.x, a1.y, a1.z, a1.w};
    const int q2[4] = {a2.x, a2.y, a2.z, a2.w}, q3[4] = {a3.x, a3.y, a3.z, a3.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        acc[0] = dp4a_us(ws[i] & 0xC0C0C0C0u, q0[i], acc[0]);
        acc[1] = dp4a_us(ws[i] & 0x30303030u, q1[i], acc[1]);
        acc[2] = dp4a_us(ws[i] & 0x0C0C0C0Cu, q2[i], acc[2]);
        acc[3] = dp4a_us(ws[i] & 0x03030303u, q3[i], acc[3]);
    }
}

__device__ __forceinline__ int dl_unscale(const int (&acc)[4]) {
    return (acc[0] >> 6) + (acc[1] >> 4) + (acc[2] >> 2) + acc[3];
}

/* The four runs of chunk c's activations (dl_perm's layout). */
__device__ __forceinline__ void dl_act(const int8_t *xq, int nch, int c, int4 (&a)[4]) {
#pragma unroll
    for (int r = 0; r < 4; r++) a[r] = *(const int4 *)(xq + ((r * nch + c) << 4));
}

/* Σ code · activation over the rows at w1 (and w2: gate and up share the
 * activation loads) of nch chunks, by the L lanes of a group (sub = lane
 * within it); every lane of the group gets the sums. Every lane of the warp
 * must call it (the shuffles); a lane without a row passes nch = 0. */
template <int L, int NW>
__device__ __forceinline__ void dl_dot(const uint8_t *w1, const uint8_t *w2, const int8_t *xq, int nch, int nchr,
                                       int sub, int (&out)[NW]) {
    int acc[NW][4] = {};
#pragma unroll 2
    for (int c = sub; c < nch; c += L) {
        int4 a[4];
        dl_act(xq, nchr, c, a);
        dot64m(*(const uint4 *)(w1 + (c << 4)), a[0], a[1], a[2], a[3], acc[0]);
        if (NW == 2) dot64m(*(const uint4 *)(w2 + (c << 4)), a[0], a[1], a[2], a[3], acc[NW - 1]);
    }
#pragma unroll
    for (int k = 0; k < NW; k++) {
        int v = dl_unscale(acc[k]);
#pragma unroll
        for (int o = L / 2; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        out[k] = v;
    }
}

/* Rows of a phase, L lanes a row: calls row(rr, sums) for each of the
 * block's n rows (rb bytes of codes a row at w; with NW = 2 the second row
 * is R rows further: up after gate) on the group's first lane. */
template <int L, int NW, class Row>
__device__ __forceinline__ void dl_rows_l(const uint8_t *w, int R, int n, int rb, const int8_t *xq, int nch,
                                          Row row) {
    const int lane = threadIdx.x & 31, sub = lane & (L - 1);
    for (int base = (threadIdx.x >> 5) * (32 / L); base < n; base += DL_THREADS / L) {
        const int rr = base + lane / L, ok = rr < n;
        const uint8_t *w1 = w + (size_t)(ok ? rr : 0) * rb;
        int v[NW];
        dl_dot<L, NW>(w1, w1 + (size_t)R * rb, xq, ok ? nch : 0, nch, sub, v);
        if (ok && sub == 0) row(rr, v);
    }
}

template <int NW, class Row>
__device__ __forceinline__ void dl_rows(const uint8_t *w, int R, int n, int rb, const int8_t *xq, int nch, Row row) {
    switch (dl_lanes(n, nch)) {
    case 8: dl_rows_l<8, NW>(w, R, n, rb, xq, nch, row); break;
    case 16: dl_rows_l<16, NW>(w, R, n, rb, xq, nch, row); break;
    default: dl_rows_l<32, NW>(w, R, n, rb, xq, nch, row); break;
    }
}

/* The block's rows of a matmul whose result is added to the residual
 * stream x (o, down): R rows per block of `rows`, `cols` inputs, the slice
 * at w (codes, then scales). x's rows are this block's alone in the phase. */
__device__ __forceinline__ void dl_residual(const uint8_t *w, int R, int rows, int cols, const int8_t *xq, float s,
                                            int sum, float *x) {
    const int r0 = blockIdx.x * R, n = min(R, rows - r0), rb = cols / 4;
    const float *sc = (const float *)(w + (size_t)R * rb);
    dl_rows<1>(w, R, n, rb, xq, cols >> 6, [&](int rr, const int (&acc)[1]) {
        float *y = x + r0 + rr;
        *y = __fadd_rn(__ldcg(y), (float)(acc[0] - sum) * sc[rr] / s);
    });
}

/* The block's rows of q, k and v (one numbering over the three, as
 * dl_slices cuts them), the slice at w. */
__device__ __forceinline__ void dl_qkv(const bn_dl_args &a, const dl_geo &g, const uint8_t *w, const int8_t *xq,
                                       float s, int sum) {
    const int r0 = blockIdx.x * g.rA, n = min(g.rA, g.Q + 2 * g.KV - r0), rb = g.E / 4;
    const float *sc = (const float *)(w + (size_t)g.rA * rb);
    dl_rows<1>(w, g.rA, n, rb, xq, g.E >> 6, [&](int rr, const int (&acc)[1]) {
        int r = r0 + rr;
        float *y = r < g.Q ? a.q + r : r < g.Q + g.KV ? a.k + (r - g.Q) : a.v + (r - g.Q - g.KV);
        *y = (float)(acc[0] - sum) * sc[rr] / s;
    });
}

/* The block's rows of gate and up (the same rows of both, so the GLU needs
 * nothing from other blocks): h = act(gate)·up. */
__device__ __forceinline__ void dl_gate_up(const bn_dl_args &a, const dl_geo &g, const uint8_t *w, const int8_t *xq,
                                           float s, int sum) {
    const int r0 = blockIdx.x * g.rG, n = min(g.rG, g.F - r0), rb = g.E / 4;
    const float *sc = (const float *)(w + 2 * (size_t)g.rG * rb);
    dl_rows<2>(w, g.rG, n, rb, xq, g.E >> 6, [&](int rr, const int (&acc)[2]) {
        float gv = (float)(acc[0] - sum) * sc[rr] / s, uv = (float)(acc[1] - sum) * sc[g.rG + rr] / s;
        a.h[r0 + rr] = glu_one(gv, uv, a.relu2);
    });
}
#endif

/* Norm weight (or NULL) of the next prologue, into registers. */
__device__ __forceinline__ void dl_load_vec(float (&wn)[DL_NPT], const float *w, int cols) {
#pragma unroll
    for (int k = 0; k < DL_NPT; k++) {
        int i = threadIdx.x + k * DL_THREADS;
        wn[k] = w && i < cols ? __ldg(w + i) : 1.0f;
    }
}

/* A block-wide reduction with one barrier: the warps' partials in sh, then
 * every warp combines all DL_WARPS of them (lane i and i + 16 hold partial
 * i % 16; four shuffles). sh must not be in use by another reduction: the
 * prologue gives each of its three its own array, and the grid barrier
 * between prologues orders their reuse. (block_reduce takes a barrier more
 * and sums the partials one after another, ~0.5 µs a reduction here.) */
template <typename T, typename Op> __device__ __forceinline__ T dl_reduce(T v, Op op, T *sh) {
    static_assert(DL_WARPS == 16, "the tail combines 16 partials");
    for (int o = 16; o; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    const int lane = threadIdx.x & 31;
    if (lane == 0) sh[threadIdx.x >> 5] = v;
    __syncthreads();
    v = sh[lane & 15];
    for (int o = 8; o; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* [RMSNorm with the weight in wn] -> int8 of the row src (written by other
 * blocks: read through L2) into xq; act_prologue's arithmetic (its sum of
 * squares in another order). */
__device__ void dl_prologue(const float *src, const float (&wn)[DL_NPT], bool norm, int cols, float eps, int8_t *xq,
                            float &s_out, int &sum_out) {
    __shared__ double shd[DL_WARPS];
    __shared__ float shf[DL_WARPS];
    __shared__ int shi[DL_WARPS];
    const int tid = threadIdx.x, nk = (cols + DL_THREADS - 1) / DL_THREADS;
    float v[DL_NPT];
#pragma unroll
    for (int k = 0; k < DL_NPT; k++) {
        int i = tid + k * DL_THREADS;
        v[k] = k < nk && i < cols ? __ldcg(src + i) : 0.0f;
    }
    if (norm) {
        double ss = 0.0;
#pragma unroll
        for (int k = 0; k < DL_NPT; k++)
            if (k < nk) ss += (double)v[k] * (double)v[k];
        ss = dl_reduce(ss, op_sum(), shd);
        float r = (float)(1.0 / sqrt(ss / cols + (double)eps));
#pragma unroll
        for (int k = 0; k < DL_NPT; k++) v[k] = __fmul_rn(__fmul_rn(v[k], r), wn[k]);
    }
    float amax = 0.0f;
#pragma unroll
    for (int k = 0; k < DL_NPT; k++) amax = fmaxf(amax, fabsf(v[k]));
    amax = dl_reduce(amax, op_max(), shf);
    float s = 127.0f / fmaxf(amax, 1e-5f);
    int sum = 0, nch = cols >> 6;
#pragma unroll
    for (int k = 0; k < DL_NPT; k++) {
        int i = tid + k * DL_THREADS;
        if (k < nk && i < cols) {
            int q = quant_one(v[k], s);
            xq[dl_perm(i, nch)] = (int8_t)q;
            sum += q;
        }
    }
    sum = dl_reduce(sum, op_sum(), shi); /* its barrier also publishes xq */
    s_out = s;
    sum_out = sum;
}

/* ----------------------------------------------------- weight streaming -- */

/* A contiguous piece of a block's slice of phase p: rows [lo, hi) of matrix
 * m (0..6: q k v o gate up down, in its own numbering), rb bytes of codes a
 * row, going to shared-memory offsets w_off (codes) and s_off (scales). The
 * phases read row rr of their slice at off + rr * rb and its scale at
 * off + R * rb + 4 * rr (off, R: the phase's offset and rows per block;
 * gate/up: up's rows follow gate's, as do their scales). */
struct dl_slice {
    int m, lo, hi, rb;
    unsigned w_off, s_off;
};

__host__ __device__ inline int dl_slices(const dl_geo &g, int b, int p, dl_slice *out) {
    int n = 0;
    if (p == 0) {
        int r0 = b * g.rA, r1 = min(r0 + g.rA, g.Q + 2 * g.KV), rb = g.E / 4;
        const int off[3] = {0, g.Q, g.Q + g.KV}, rows[3] = {g.Q, g.KV, g.KV};
        for (int m = 0; m < 3; m++) {
            int lo = max(r0, off[m]), hi = min(r1, off[m] + rows[m]);
            if (lo < hi)
                out[n++] = {m, lo - off[m], hi - off[m], rb, g.offA + (unsigned)((lo - r0) * rb),
                            g.offA + (unsigned)(g.rA * rb + 4 * (lo - r0))};
        }
    } else if (p == 1) {
        int r0 = b * g.rO, r1 = min(r0 + g.rO, g.E), rb = g.Q / 4;
        if (r0 < r1) out[n++] = {3, r0, r1, rb, g.offO, g.offO + (unsigned)(g.rO * rb)};
    } else if (p == 2) {
        int r0 = b * g.rG, r1 = min(r0 + g.rG, g.F), rb = g.E / 4;
        if (r0 < r1) {
            out[n++] = {4, r0, r1, rb, g.offG, g.offG + (unsigned)(2 * g.rG * rb)};
            out[n++] = {5, r0, r1, rb, g.offG + (unsigned)(g.rG * rb), g.offG + (unsigned)(2 * g.rG * rb + 4 * g.rG)};
        }
    } else {
        int r0 = b * g.rD, r1 = min(r0 + g.rD, g.E), rb = g.F / 4;
        if (r0 < r1) out[n++] = {6, r0, r1, rb, g.offD, g.offD + (unsigned)(g.rD * rb)};
    }
    return n;
}

#ifdef DL_ARCH
/* Phase p's slice of layer l for this block (thread 0 only): the arrival
 * with the byte count, then the copies. A block without rows in the phase
 * arrives with 0 bytes, which completes the barrier's phase at once. */
__device__ void dl_issue(const bn_dl_args &a, const dl_geo &g, int l, int p, uint8_t *sm, uint64_t *mb) {
    const bn_dl_layer &L = a.L[l];
    dl_slice sl[3];
    int n = dl_slices(g, blockIdx.x, p, sl);
    unsigned bytes = 0;
    for (int i = 0; i < n; i++) bytes += (unsigned)(sl[i].hi - sl[i].lo) * (sl[i].rb + 4u);
    mbar_expect(mb + p, bytes); /* before the copies that complete it */
    const uint64_t pol = dl_evict_first();
    for (int i = 0; i < n; i++) {
        unsigned rows = (unsigned)(sl[i].hi - sl[i].lo);
        bulk_load(sm + sl[i].w_off, L.codes[sl[i].m] + (size_t)sl[i].lo * sl[i].rb, rows * sl[i].rb, mb + p, pol);
        bulk_load(sm + sl[i].s_off, L.scale[sl[i].m] + sl[i].lo, rows * 4u, mb + p, pol);
    }
}

/* After the block's last read of phase p's slice: refill it with layer l's. */
__device__ __forceinline__ void dl_refill(const bn_dl_args &a, const dl_geo &g, int l, int p, uint8_t *sm,
                                          uint64_t *mb) {
    __syncthreads();
    if (threadIdx.x == 0 && l < a.n_layer) {
        /* The slice was read through the generic proxy; the copy writes
         * through the async proxy. */
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
        dl_issue(a, g, l, p, sm, mb);
    }
}
#endif

/* ------------------------------------------------------------ attention -- */

/* The split of the step's n = P + 1 positions: items (group, split), groups
 * fastest, at most one per block; splits of whole multiples of 32
 * positions, at most ceil(n / 32) of them (the work space the backend
 * reserves for k_attn_decode holds that many). */
struct dl_att {
    int n, G, ngc, groups, S, live;
};

__host__ __device__ inline dl_att dl_att_plan(const bn_dl_args &a, int P, int grid) {
    dl_att t;
    t.n = P + 1;
    t.G = a.n_head / a.n_kv;
    t.ngc = (t.G + 3) / 4;
    t.groups = a.n_kv * t.ngc;
    int nsp = grid / t.groups > 1 ? grid / t.groups : 1;
    int S = (t.n + nsp - 1) / nsp;
    t.S = (S + 31) / 32 * 32;
    t.live = (t.n + t.S - 1) / t.S;
    return t;
}

/* One chunk of cached keys and values into registers: thread (position
 * tid / 8, part tid % 8) holds 16-byte pieces part, part + 8, ... of its
 * key; thread (pair e2, subset sub) the value pairs of positions sub,
 * sub + nsub, ... The new position P is skipped (it comes from shared
 * memory). */
__device__ __forceinline__ void dl_att_load(uint4 (&kc)[4], __half2 (&vr)[16], const __half *Kh, const __half *Vh,
                                            int c0, int np, int P, int hd) {
    const int tid = threadIdx.x, pi = tid >> 3, part = tid & 7, nc8 = hd >> 3, p = c0 + pi;
    const int half = hd >> 1, nsub = DL_THREADS / half, e2 = tid % half, sub = tid / half;
#pragma unroll
    for (int k = 0; k < 4; k++) {
        int ci = part + 8 * k;
        kc[k] = pi < np && ci < nc8 && p != P ? *(const uint4 *)(Kh + (size_t)p * hd + ci * 8)
                                               : make_uint4(0u, 0u, 0u, 0u);
    }
#pragma unroll
    for (int k = 0; k < 16; k++) {
        int jj = sub + nsub * k;
        vr[k] = sub < nsub && jj < np && c0 + jj != P ? *(const __half2 *)(Vh + (size_t)(c0 + jj) * hd + 2 * e2)
                                                       : __floats2half2_rn(0.0f, 0.0f);
    }
}

/* Block's attention item (gi = kv head x query-head group, split), its
 * first chunk already in kc / vr. */
__device__ void dl_attention(const bn_dl_args &a, const bn_dl_layer &L, const dl_att &t, int gi, int split, int P,
                             float *F, const float *cs, const float *sn, uint4 (&kc)[4], __half2 (&vr)[16]) {
    __shared__ float s_m[4], s_l[4], s_a[4], c_L[4];
    __shared__ int s_last;
    const int hd = a.head_dim, half = hd >> 1, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int hk = gi / t.ngc, gc = gi % t.ngc, h0 = hk * t.G + gc * 4, nh = min(4, t.G - gc * 4);
    const int p0 = split * t.S, p1 = min(p0 + t.S, t.n), nc8 = hd >> 3;
    const int pi = tid >> 3, part = tid & 7, nsub = DL_THREADS / half, e2 = tid % half, sub = tid / half;
    float *sq = F, *kn = sq + 4 * hd, *vn = kn + hd, *sc = vn + hd, *red = sc + 4 * DL_CH, *cw = red + 4096;
    __half *K = (__half *)L.K + (size_t)hk * a.n_ctx * hd, *V = (__half *)L.V + (size_t)hk * a.n_ctx * hd;

    /* 0. RoPE of the group's q; the new k and v where this split holds P */
    for (int idx = tid; idx < 4 * half; idx += DL_THREADS) {
        int g = idx / half, i = idx - g * half;
        int ia = a.neox ? i : 2 * i, ib = a.neox ? i + half : 2 * i + 1;
        float y0 = 0.0f, y1 = 0.0f;
        if (g < nh) {
            const float *row = a.q + (size_t)(h0 + g) * hd;
            float x0 = __ldcg(row + ia), x1 = __ldcg(row + ib), c = cs[i], s = sn[i];
            y0 = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
            y1 = __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c));
        }
        sq[g * hd + ia] = y0, sq[g * hd + ib] = y1;
    }
    if (P >= p0 && P < p1) {
        const float *kr = a.k + (size_t)hk * hd, *vr0 = a.v + (size_t)hk * hd;
        for (int i = tid; i < half; i += DL_THREADS) {
            int ia = a.neox ? i : 2 * i, ib = a.neox ? i + half : 2 * i + 1;
            float x0 = __ldcg(kr + ia), x1 = __ldcg(kr + ib), c = cs[i], s = sn[i];
            float y0 = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
            float y1 = __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c));
            __half k0 = __float2half_rn(y0), k1 = __float2half_rn(y1);
            __half v0 = __float2half_rn(__ldcg(vr0 + ia)), v1 = __float2half_rn(__ldcg(vr0 + ib));
            kn[ia] = __half2float(k0), kn[ib] = __half2float(k1);
            vn[ia] = __half2float(v0), vn[ib] = __half2float(v1);
            if (gc == 0) {
                K[(size_t)P * hd + ia] = k0, K[(size_t)P * hd + ib] = k1;
                V[(size_t)P * hd + ia] = v0, V[(size_t)P * hd + ib] = v1;
            }
        }
    }
    if (tid < 4) s_m[tid] = -INFINITY, s_l[tid] = 0.0f, s_a[tid] = 0.0f;
    __syncthreads();

    const float inv_sqrt = 1.0f / sqrtf((float)hd);
    float2 o[4];
#pragma unroll
    for (int g = 0; g < 4; g++) o[g] = make_float2(0.0f, 0.0f);
    for (int c0 = p0; c0 < p1; c0 += DL_CH) {
        const int np = min(DL_CH, p1 - c0);
        { /* 1. scores: 8 threads per position, shuffles over the 8 */
            const int p = c0 + pi;
            float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
            for (int k = 0; k < 4; k++) {
                int ci = part + 8 * k;
                if (pi < np && ci < nc8) {
                    float kf[8];
                    key8(kf, p == P, kn + ci * 8, kc[k]);
#pragma unroll
                    for (int g = 0; g < 4; g++)
#pragma unroll
                        for (int e = 0; e < 8; e++) acc[g] = fmaf(sq[g * hd + ci * 8 + e], kf[e], acc[g]);
                }
            }
#pragma unroll
            for (int g = 0; g < 4; g++) {
                acc[g] += __shfl_xor_sync(0xffffffffu, acc[g], 1);
                acc[g] += __shfl_xor_sync(0xffffffffu, acc[g], 2);
                acc[g] += __shfl_xor_sync(0xffffffffu, acc[g], 4);
            }
            if (part == 0) {
#pragma unroll
                for (int g = 0; g < 4; g++) sc[g * DL_CH + pi] = pi < np ? acc[g] * inv_sqrt : -INFINITY;
            }
        }
        __syncthreads();
        if (warp < nh) { /* 2. online softmax of head `warp`: two positions per lane */
            float x0 = sc[warp * DL_CH + lane], x1 = sc[warp * DL_CH + lane + 32], mx = fmaxf(x0, x1);
            for (int off = 16; off; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
            float m_old = s_m[warp], m_new = fmaxf(m_old, mx);
            float e0 = lane < np ? expf(x0 - m_new) : 0.0f, e1 = lane + 32 < np ? expf(x1 - m_new) : 0.0f;
            sc[warp * DL_CH + lane] = e0, sc[warp * DL_CH + lane + 32] = e1;
            float sum = e0 + e1;
            for (int off = 16; off; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
            if (lane == 0) {
                float al = expf(m_old - m_new); /* 0 on the first chunk */
                s_a[warp] = al;
                s_l[warp] = s_l[warp] * al + sum;
                s_m[warp] = m_new;
            }
        }
        __syncthreads();
        if (sub < nsub) { /* 3. values: a pair of outputs x a subset of the positions */
#pragma unroll
            for (int g = 0; g < 4; g++) {
                float al = g < nh ? s_a[g] : 0.0f;
                o[g].x *= al, o[g].y *= al;
            }
#pragma unroll
            for (int k = 0; k < 16; k++) {
                int jj = sub + nsub * k;
                if (jj < np) {
                    float2 vf = c0 + jj == P ? make_float2(vn[2 * e2], vn[2 * e2 + 1]) : __half22float2(vr[k]);
#pragma unroll
                    for (int g = 0; g < 4; g++) {
                        float pg = g < nh ? sc[g * DL_CH + jj] : 0.0f;
                        o[g].x = fmaf(pg, vf.x, o[g].x), o[g].y = fmaf(pg, vf.y, o[g].y);
                    }
                }
            }
        }
        __syncthreads(); /* sc is rewritten by the next chunk */
        if (c0 + DL_CH < p1) dl_att_load(kc, vr, K, V, c0 + DL_CH, min(DL_CH, p1 - c0 - DL_CH), P, hd);
    }
    if (sub < nsub) {
#pragma unroll
        for (int g = 0; g < 4; g++)
            if (g < nh) {
                red[(sub * 4 + g) * hd + 2 * e2] = o[g].x;
                red[(sub * 4 + g) * hd + 2 * e2 + 1] = o[g].y;
            }
    }
    __syncthreads();
    float *po = a.ws, *pml = a.ws + (size_t)a.n_head * t.live * hd;
    for (int idx = tid; idx < nh * hd; idx += DL_THREADS) {
        int g = idx / hd, i = idx - g * hd;
        float s = 0.0f;
        for (int u = 0; u < nsub; u++) s += red[(u * 4 + g) * hd + i];
        po[((size_t)(h0 + g) * t.live + split) * hd + i] = s;
    }
    if (tid < nh) {
        size_t row = (size_t)(h0 + tid) * t.live + split;
        pml[2 * row] = s_m[tid], pml[2 * row + 1] = s_l[tid];
    }
    /* The last block of the group combines the splits, in split order. */
    __threadfence();
    __syncthreads();
    if (tid == 0) s_last = atomicAdd(a.cnt + gi, 1) == t.live - 1;
    __syncthreads();
    if (!s_last) return;
    __threadfence();
    if (tid == 0) a.cnt[gi] = 0;
    if (warp < nh) {
        const float *pm = pml + 2 * (size_t)(h0 + warp) * t.live;
        float M = -INFINITY;
        for (int s2 = lane; s2 < t.live; s2 += 32)
            if (__ldcg(pm + 2 * s2 + 1) > 0.0f) M = fmaxf(M, __ldcg(pm + 2 * s2));
        for (int off = 16; off; off >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, off));
        float Ls = 0.0f;
        for (int s2 = lane; s2 < t.live; s2 += 32) {
            float l = __ldcg(pm + 2 * s2 + 1), c = l > 0.0f ? expf(__ldcg(pm + 2 * s2) - M) : 0.0f;
            cw[warp * DL_MAXSPLIT + s2] = c;
            Ls += l * c;
        }
        for (int off = 16; off; off >>= 1) Ls += __shfl_xor_sync(0xffffffffu, Ls, off);
        if (lane == 0) c_L[warp] = Ls;
    }
    __syncthreads();
    for (int idx = tid; idx < nh * hd; idx += DL_THREADS) {
        int g = idx / hd, i = idx - g * hd;
        const float *pp = po + (size_t)(h0 + g) * t.live * hd + i;
        float O = 0.0f;
#pragma unroll 4
        for (int s2 = 0; s2 < t.live; s2++) O = fmaf(__ldcg(pp + (size_t)s2 * hd), cw[g * DL_MAXSPLIT + s2], O);
        a.att[(size_t)h0 * hd + idx] = O / c_L[g];
    }
}

/* --------------------------------------------------------------- kernel -- */

__global__ void __launch_bounds__(DL_THREADS, 1) k_decode_layers(const __grid_constant__ bn_dl_args a) {
#ifdef DL_ARCH
    extern __shared__ __align__(128) uint8_t sm[];
    if (a.n_layer == 0) { /* the probe: this code runs */
        if (blockIdx.x == 0 && threadIdx.x == 0) *(int *)a.ws = 1;
        return;
    }
    const dl_geo g = dl_geometry(a, gridDim.x);
    uint64_t *mb = (uint64_t *)sm;
    int8_t *xq = (int8_t *)(sm + g.offXq);
    float *F = (float *)(sm + g.offF), *cs = (float *)(sm + g.offCs), *sn = cs + g.hd / 2;
    const int tid = threadIdx.x, b = blockIdx.x;
    const int P = a.pos.ptr ? *a.pos.ptr : a.pos.val;
    if (tid == 0) {
        for (int i = 0; i < 4; i++) mbar_init(mb + i, 1);
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();
    if (tid == 0)
        for (int p = 0; p < 4; p++) dl_issue(a, g, 0, p, sm, mb);
    for (int i = tid; i < g.hd / 2; i += DL_THREADS) {
        double ang = (double)P * pow((double)a.theta, -2.0 * i / g.hd);
        cs[i] = (float)cos(ang), sn[i] = (float)sin(ang);
    }
    const dl_att t = dl_att_plan(a, P, gridDim.x);
    const int item = b < t.groups * t.live ? b : -1, gi = item % t.groups, split = item / t.groups;
    /* Profiling (a.prof): block 0's thread 0 stamps the global timer at the
     * start and after each step of each layer (BN_DL_STAMPS a layer). */
#define DL_STAMP(k)                                                                    \
    do {                                                                               \
        if (a.prof && b == 0 && tid == 0) a.prof[1 + l * BN_DL_STAMPS + (k)] = dl_now(); \
    } while (0)
    if (a.prof && b == 0 && tid == 0) a.prof[0] = dl_now();
    unsigned gen = 0;
    float wn[DL_NPT], s;
    int sum;
    dl_load_vec(wn, a.L[0].attn_norm, g.E);
    for (int l = 0; l < a.n_layer; l++) {
        const bn_dl_layer &L = a.L[l];
        const unsigned par = l & 1;
        /* A: q, k, v */
        dl_prologue(a.x, wn, true, g.E, a.eps, xq, s, sum);
        DL_STAMP(0);
        mbar_wait(mb + 0, par);
        DL_STAMP(1);
        dl_qkv(a, g, sm + g.offA, xq, s, sum);
        dl_refill(a, g, l + 1, 0, sm, mb);
        DL_STAMP(2);
        uint4 kc[4];
        __half2 vr[16];
        if (item >= 0) {
            int hk = gi / t.ngc, p0 = split * t.S;
            const __half *K = (const __half *)L.K + (size_t)hk * a.n_ctx * g.hd;
            const __half *V = (const __half *)L.V + (size_t)hk * a.n_ctx * g.hd;
            dl_att_load(kc, vr, K, V, p0, min(DL_CH, min(p0 + t.S, t.n) - p0), P, g.hd);
        }
        dl_grid_sync(a.bar, gen);
        DL_STAMP(3);
        /* B: attention */
        if (item >= 0) dl_attention(a, L, t, gi, split, P, F, cs, sn, kc, vr);
        DL_STAMP(4);
        dl_load_vec(wn, L.attn_sub, g.Q);
        dl_grid_sync(a.bar, gen);
        DL_STAMP(5);
        /* C: o, x += o */
        dl_prologue(a.att, wn, L.attn_sub != NULL, g.Q, a.eps, xq, s, sum);
        DL_STAMP(6);
        mbar_wait(mb + 1, par);
        DL_STAMP(7);
        dl_residual(sm + g.offO, g.rO, g.E, g.Q, xq, s, sum, a.x);
        dl_refill(a, g, l + 1, 1, sm, mb);
        DL_STAMP(8);
        dl_load_vec(wn, L.ffn_norm, g.E);
        dl_grid_sync(a.bar, gen);
        DL_STAMP(9);
        /* D: gate, up, h = act(gate)·up */
        dl_prologue(a.x, wn, true, g.E, a.eps, xq, s, sum);
        DL_STAMP(10);
        mbar_wait(mb + 2, par);
        DL_STAMP(11);
        dl_gate_up(a, g, sm + g.offG, xq, s, sum);
        dl_refill(a, g, l + 1, 2, sm, mb);
        DL_STAMP(12);
        dl_load_vec(wn, L.ffn_sub, g.F);
        dl_grid_sync(a.bar, gen);
        DL_STAMP(13);
        /* E: down, x += down */
        dl_prologue(a.h, wn, L.ffn_sub != NULL, g.F, a.eps, xq, s, sum);
        DL_STAMP(14);
        mbar_wait(mb + 3, par);
        DL_STAMP(15);
        dl_residual(sm + g.offD, g.rD, g.E, g.F, xq, s, sum, a.x);
        dl_refill(a, g, l + 1, 3, sm, mb);
        DL_STAMP(16);
        if (l + 1 < a.n_layer) {
            dl_load_vec(wn, a.L[l + 1].attn_norm, g.E);
            dl_grid_sync(a.bar, gen);
            DL_STAMP(17);
        }
    }
#undef DL_STAMP
#endif
}

/* ----------------------------------------------------------------- host -- */

/* Per device: 0 not yet known, 1 usable, 2 not; and the dynamic shared
 * memory a block may have (the opt-in limit less the kernel's static
 * arrays). Filled by bn_k_decode_layers_init; a racing fill stores the same
 * values. */
static int dl_state[64], dl_smem_max[64];

static int dl_device(void) {
    int dev = -1;
    return cudaGetDevice(&dev) == cudaSuccess && dev >= 0 && dev < 64 ? dev : -1;
}

static cudaError_t dl_launch(cudaStream_t st, const bn_dl_args *a, int grid, size_t smem) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(grid);
    cfg.blockDim = dim3(DL_THREADS);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = st;
    cudaLaunchAttribute attr[1] = {};
    attr[0].id = cudaLaunchAttributeCooperative; /* every block resident: the grid barriers need it */
    attr[0].val.cooperative = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    return cudaLaunchKernelEx(&cfg, k_decode_layers, *a);
}

/* Follows the probe's kernel in the probe graph as the decode step's next
 * kernel does: programmatic launch, waiting for it. */
__global__ void k_dl_probe_next(int *d) {
    pdl_wait();
    if (threadIdx.x == 0 && blockIdx.x == 0) *d += 1;
}

/* Records memset -> the kernel's n_layer = 0 path (cooperative, the full
 * dynamic shared memory) -> a programmatic launch, as a decode step's graph
 * holds them, into a graph and replays it: this GPU has the code, takes the
 * launch, and a block of the kernel with the most shared memory fits on a
 * multiprocessor (so every shape that passes fits() does). */
static int dl_probe(int smax) {
    int ok = 0, nb = 0, *d = NULL;
    cudaStream_t st = NULL;
    cudaGraph_t gr = NULL;
    cudaGraphExec_t ge = NULL;
    bn_dl_args *a = (bn_dl_args *)calloc(1, sizeof *a);
    if (a && cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, k_decode_layers, DL_THREADS, (size_t)smax) ==
                 cudaSuccess &&
        nb >= 1 && cudaMalloc((void **)&d, 2 * sizeof *d) == cudaSuccess &&
        cudaMemset(d, 0, 2 * sizeof *d) == cudaSuccess &&
        cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking) == cudaSuccess &&
        cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal) == cudaSuccess) {
        a->ws = (float *)d;
        cudaError_t e = cudaMemsetAsync(d + 1, 0, sizeof *d, st);
        if (e == cudaSuccess) e = dl_launch(st, a, 2, (size_t)smax);
        int pdl = bn_k_pdl;
        bn_k_pdl = 1;
        if (e == cudaSuccess) e = bn_launch(k_dl_probe_next, 1, 32, 0, st, d);
        bn_k_pdl = pdl;
        int ran = cudaStreamEndCapture(st, &gr) == cudaSuccess && e == cudaSuccess &&
                  cudaGraphInstantiate(&ge, gr, 0) == cudaSuccess && cudaGraphLaunch(ge, st) == cudaSuccess &&
                  cudaStreamSynchronize(st) == cudaSuccess &&
                  cudaMemcpy(&ok, d, sizeof ok, cudaMemcpyDeviceToHost) == cudaSuccess;
        if (!ran) ok = 0;
    }
    if (ge) cudaGraphExecDestroy(ge);
    if (gr) cudaGraphDestroy(gr);
    if (st) cudaStreamDestroy(st);
    if (d) cudaFree(d);
    free(a);
    cudaGetLastError(); /* a failed probe leaves no error behind */
    return ok == 2;
}

void bn_k_decode_layers_init(void) {
    int dev = dl_device();
    if (dev < 0 || dl_state[dev]) return;
    int ok = 0, major = 0, coop = 0, smax = 0;
    cudaFuncAttributes fa;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess && major >= 9 &&
        cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, dev) == cudaSuccess && coop &&
        cudaDeviceGetAttribute(&smax, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) == cudaSuccess &&
        cudaFuncGetAttributes(&fa, k_decode_layers) == cudaSuccess && (smax -= (int)fa.sharedSizeBytes) > 0 &&
        cudaFuncSetAttribute(k_decode_layers, cudaFuncAttributeMaxDynamicSharedMemorySize, smax) == cudaSuccess)
        ok = dl_probe(smax);
    cudaGetLastError();
    dl_smem_max[dev] = smax;
    dl_state[dev] = ok ? 1 : 2;
}

static int al16(const void *p) { return ((uintptr_t)p & 15) == 0; }

int bn_k_decode_layers_fits(const bn_dl_args *a, int n_sm) {
    int dev = dl_device();
    if (dev < 0 || dl_state[dev] != 1 || n_sm < 1 || n_sm > DL_MAXSPLIT) return 0;
    int E = a->n_embd, hd = a->head_dim, F = a->n_ff, Q = a->n_head * hd;
    if (a->n_layer < 1 || a->n_layer > BN_DL_MAX_LAYERS || E % 128 || Q % 128 || F % 128 || hd % 8 || hd < 8 ||
        hd > 256 || a->n_kv < 1 || a->n_head % a->n_kv)
        return 0;
    if (E > DL_NPT * DL_THREADS || Q > DL_NPT * DL_THREADS || F > DL_NPT * DL_THREADS) return 0;
    int G = a->n_head / a->n_kv;
    if (a->n_kv * ((G + 3) / 4) > n_sm) return 0; /* one attention item per block */
    if (dl_geometry(*a, n_sm).total > (unsigned)dl_smem_max[dev]) return 0;
    for (int l = 0; l < a->n_layer; l++)
        for (int m = 0; m < 7; m++)
            if (!al16(a->L[l].codes[m]) || !al16(a->L[l].scale[m])) return 0;
    return 1;
}

size_t bn_k_decode_layers_ws(const bn_dl_args *a, int n_sm) {
    int G = a->n_head / a->n_kv, groups = a->n_kv * ((G + 3) / 4), nsp = n_sm / groups;
    int most = (a->n_ctx + 31) / 32;
    if (nsp < 1) nsp = 1;
    if (nsp > most) nsp = most;
    return (size_t)a->n_head * nsp * (a->head_dim + 2);
}

cudaError_t bn_k_decode_layers(cudaStream_t st, const bn_dl_args *a, int n_sm) {
    if (!bn_k_decode_layers_fits(a, n_sm)) return cudaErrorInvalidValue;
    cudaError_t e = cudaMemsetAsync(a->bar, 0, sizeof(unsigned), st);
    if (e != cudaSuccess) return e;
    e = dl_launch(st, a, n_sm, dl_geometry(*a, n_sm).total);
    return e != cudaSuccess ? e : cudaGetLastError();
}

/* ----------------------------------------------------- the plan, on host -- */

static int dl_bad(char *msg, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (msg && n) vsnprintf(msg, n, fmt, ap);
    va_end(ap);
    return 0;
}

/* Every row of one phase is some block's, once; its pieces land where the
 * phase reads them (dl_slices' comment), inside the phase's region, 16-byte
 * aligned and sized, reading 16-byte aligned sources. */
static int dl_check_phase(const dl_geo &g, int grid, int p, char *msg, size_t n) {
    const int mrows[7] = {g.Q, g.KV, g.KV, g.E, g.F, g.F, g.E};
    const int R = p == 0 ? g.rA : p == 1 ? g.rO : p == 2 ? g.rG : g.rD;
    const unsigned base = p == 0 ? g.offA : p == 1 ? g.offO : p == 2 ? g.offG : g.offD;
    const unsigned next = p == 0 ? g.offO : p == 1 ? g.offG : p == 2 ? g.offD : g.offXq;
    const int first_m = p == 0 ? 0 : p == 1 ? 3 : p == 2 ? 4 : 6, last_m = p == 0 ? 2 : p == 2 ? 5 : first_m;
    int *seen[7] = {0};
    int ok = 1;
    for (int m = first_m; m <= last_m; m++) seen[m] = (int *)calloc((size_t)mrows[m], sizeof(int));
    for (int b = 0; b < grid && ok; b++) {
        dl_slice sl[3];
        int ns = dl_slices(g, b, p, sl);
        for (int i = 0; i < ns && ok; i++) {
            const dl_slice &s = sl[i];
            const int cols = s.rb * 4, concat0 = s.m == 1 ? g.Q : s.m == 2 ? g.Q + g.KV : 0;
            const int rr0 = p == 0 ? concat0 + s.lo - b * R : s.lo - b * R; /* slice row of lo */
            const int half_off = s.m == 5 ? R : 0;                          /* up follows gate */
            if (s.m < first_m || s.m > last_m || s.lo < 0 || s.hi > mrows[s.m] || s.lo >= s.hi)
                ok = dl_bad(msg, n, "phase %d block %d: piece of matrix %d rows %d..%d", p, b, s.m, s.lo, s.hi);
            else if (s.w_off != base + (unsigned)((half_off + rr0) * s.rb) ||
                     s.s_off != base + (unsigned)((p == 2 ? 2 : 1) * R * s.rb + 4 * (half_off + rr0)))
                ok = dl_bad(msg, n, "phase %d block %d: matrix %d lands at %u/%u, read elsewhere", p, b, s.m,
                            s.w_off, s.s_off);
            else if (rr0 < 0 || rr0 + (s.hi - s.lo) > R)
                ok = dl_bad(msg, n, "phase %d block %d: %d rows from slice row %d exceed %d", p, b, s.hi - s.lo,
                            rr0, R);
            else if (s.w_off % 16 || s.s_off % 16 || ((s.hi - s.lo) * s.rb) % 16 || ((s.hi - s.lo) * 4) % 16 ||
                     ((size_t)s.lo * s.rb) % 16 || (s.lo * 4) % 16 || cols % 128)
                ok = dl_bad(msg, n, "phase %d block %d: matrix %d piece not 16-byte aligned", p, b, s.m);
            else if (s.s_off + 4u * (s.hi - s.lo) > next || s.w_off + (unsigned)((s.hi - s.lo) * s.rb) > next)
                ok = dl_bad(msg, n, "phase %d block %d: matrix %d piece overruns its region", p, b, s.m);
            for (int r = s.lo; ok && r < s.hi; r++) seen[s.m][r]++;
        }
    }
    for (int m = first_m; m <= last_m; m++) {
        for (int r = 0; ok && r < mrows[m]; r++)
            if (seen[m][r] != 1) ok = dl_bad(msg, n, "phase %d: row %d of matrix %d taken %d times", p, r, m, seen[m][r]);
        free(seen[m]);
    }
    return ok;
}

/* The activation permutation: a bijection of [0, cols), and chunk c's run r
 * (what dot64 multiplies with the codes at shift 6 - 2r of chunk c) holds
 * activations (c / 2) * 128 + 32 r + (c % 2) * 16 + 0..15. */
static int dl_check_perm(int cols, char *msg, size_t n) {
    int nch = cols / 64, ok = 1;
    int *hit = (int *)calloc((size_t)cols, sizeof(int));
    for (int i = 0; i < cols && ok; i++) {
        int d = dl_perm(i, nch);
        if (d < 0 || d >= cols) ok = dl_bad(msg, n, "perm(%d) = %d outside %d", i, d, cols);
        else hit[d]++;
    }
    for (int c = 0; c < nch && ok; c++)
        for (int r = 0; r < 4 && ok; r++)
            for (int k = 0; k < 16 && ok; k++) {
                int i = (c / 2) * 128 + 32 * r + (c % 2) * 16 + k;
                if (dl_perm(i, nch) != (r * nch + c) * 16 + k || hit[(r * nch + c) * 16 + k] != 1)
                    ok = dl_bad(msg, n, "cols %d: chunk %d run %d byte %d misplaced", cols, c, r, k);
            }
    free(hit);
    return ok;
}

/* Every position 0..P in exactly one split, at most one item per block, the
 * partials within the work space, the scratch within its region. */
static int dl_check_attention(const bn_dl_args &a, int grid, char *msg, size_t n) {
    const int hd = a.head_dim, half = hd / 2, nsub = DL_THREADS / half;
    if (nsub * 4 * hd > 4096) return dl_bad(msg, n, "head_dim %d: value sub-sums exceed the scratch", hd);
    const size_t ws = bn_k_decode_layers_ws(&a, grid);
    for (int P = 0; P < a.n_ctx; P++) {
        dl_att t = dl_att_plan(a, P, grid);
        if (t.S % 32 || t.live < 1 || t.live > DL_MAXSPLIT || t.groups * t.live > grid)
            return dl_bad(msg, n, "position %d: %d splits of %d for %d groups on %d blocks", P, t.live, t.S, t.groups,
                          grid);
        if ((size_t)a.n_head * t.live * (hd + 2) > ws)
            return dl_bad(msg, n, "position %d: %d splits need more than %zu floats", P, t.live, ws);
        if ((t.live - 1) * t.S >= t.n || t.live * t.S < t.n)
            return dl_bad(msg, n, "position %d: splits of %d do not cover %d positions", P, t.S, t.n);
        if (t.groups * 4 < a.n_head || t.ngc * 4 < t.G)
            return dl_bad(msg, n, "position %d: head groups miss query heads", P);
    }
    return 1;
}

extern "C" int bn_cuda_layers_check_plan(int n_embd, int n_head, int n_kv, int head_dim, int n_ff, int n_ctx, int n_sm,
                                         unsigned *smem_bytes, char *msg, size_t msg_len) {
    bn_dl_args *a = (bn_dl_args *)calloc(1, sizeof *a);
    if (!a) return dl_bad(msg, msg_len, "out of memory");
    a->n_layer = 1, a->n_embd = n_embd, a->n_head = n_head, a->n_kv = n_kv, a->head_dim = head_dim;
    a->n_ff = n_ff, a->n_ctx = n_ctx;
    dl_geo g = dl_geometry(*a, n_sm);
    if (smem_bytes) *smem_bytes = g.total;
    int ok = 1;
    if (g.offA < 4 * 8 || g.offO < g.offA || g.offG < g.offO || g.offD < g.offG || g.offXq < g.offD ||
        g.offF < g.offXq + (unsigned)g.E || g.offF < g.offXq + (unsigned)g.Q || g.offF < g.offXq + (unsigned)g.F || g.offCs < g.offF + 4 * dl_fscratch(head_dim) ||
        g.total < g.offCs + 4u * head_dim)
        ok = dl_bad(msg, msg_len, "shared-memory regions overlap");
    for (int p = 0; p < 4 && ok; p++) ok = dl_check_phase(g, n_sm, p, msg, msg_len);
    const int cols[3] = {g.E, g.Q, g.F};
    for (int i = 0; i < 3 && ok; i++) ok = dl_check_perm(cols[i], msg, msg_len);
    if (ok) ok = dl_check_attention(*a, n_sm, msg, msg_len);
    free(a);
    return ok;
}

/* The breakdown of one launch from its timestamps (BN_DL_STAMPS per layer
 * after the start stamp): each step's mean over the layers, in µs. */
void bn_k_decode_layers_print_profile(const unsigned long long *st, int n_layer, FILE *f) {
    static const char *names[BN_DL_STAMPS] = {
        "A norm+quantize", "A weights wait", "A q/k/v rows",  "A barrier",       "B attention",   "B barrier",
        "C [norm]+quantize", "C weights wait", "C o rows",    "C barrier",       "D norm+quantize", "D weights wait",
        "D gate/up rows",  "D barrier",      "E [norm]+quantize", "E weights wait", "E down rows",  "E barrier"};
    if (n_layer < 1 || !st[0]) return;
    double sum[BN_DL_STAMPS] = {0};
    int cnt[BN_DL_STAMPS] = {0};
    unsigned long long prev = st[0];
    for (int l = 0; l < n_layer; l++)
        for (int k = 0; k < BN_DL_STAMPS; k++) {
            unsigned long long t = st[1 + l * BN_DL_STAMPS + k];
            if (k == BN_DL_STAMPS - 1 && l == n_layer - 1) break; /* no barrier after the last layer */
            sum[k] += (double)(t - prev) * 1e-3;
            cnt[k]++;
            prev = t;
        }
    double total = (double)(prev - st[0]) * 1e-3;
    fprintf(f, "cuda layers kernel profile (block 0, last launch: %d layers, %.1f us, %.2f us per layer):\n", n_layer,
            total, total / n_layer);
    for (int k = 0; k < BN_DL_STAMPS; k++)
        if (cnt[k]) fprintf(f, "  %-20s %8.2f us per layer\n", names[k], sum[k] / cnt[k]);
}
