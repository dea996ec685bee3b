/* Ternary × int8 GEMM for steps of more than 8 tokens (prompts, batches) on
 * the int8 tensor cores (mma.sync.m16n8k32.s8), with the block tile chosen by
 * shape and every matrix of a fused matmul (q/k/v, gate/up) in one launch.
 *
 * Why: the first GEMM (k_tern_mma in kernels_matmul.cu) uses one 128 x 64
 * tile and one launch per matrix; on the 2B4T shapes at 256 tokens that is
 * 80 blocks for q/o/down, 20 for k/v and 216 for gate/up on 132 SMs: most
 * launches fill under one wave (and 64-token steps far less). Here the tile
 * is 128x64, 64x64, 128x32 or 64x32 (rows x tokens; warps of 32x32, so the
 * per-warp inner loop is the same for all), picked by a small cost model
 * (tm_pick) so that the grid covers the SMs.
 *
 * Operands are as in kernels_matmul.cu: a 32-bit word of codes shifted by
 * 6 - 2ks and masked with 0x03030303 is one A-fragment register (codes
 * c = w + 1 of 4 consecutive weights of k-step ks), loaded once per 128-wide
 * k-tile; activations are int8 rows, loaded with ldmatrix (two n-tiles'
 * b0/b1 per instruction). Σ w·q = Σ c·q − Σ q exactly in int32, and the float
 * epilogue is the same expression as store_result, so every tiling gives the
 * same bits as the GEMV and the CPU reference. */
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.cuh"
#include "kernels/cuda/cuda_mma.cuh"
#include "kernels/cuda/ternary_gemm.cuh"

#define TM_BS 144 /* smem bytes per token row of a stage (128 used; 9 x 16: ldmatrix rows on distinct banks) */
#define TM_ST 3   /* pipeline stages */

/* B chunks in rows of TM_BS bytes (ldmatrix reads them). */
struct tm_b_padded {
    static __device__ __forceinline__ int at(int t, int p) { return t * TM_BS + p * 16; }
};

/* WM x WN warps, each 32 rows x 32 tokens (2 x 4 mma tiles), times KS
 * k-groups: group kg does k-steps [kg * 4/KS, (kg + 1) * 4/KS) of every
 * 128-wide k-tile, and the groups' int32 sums are added at the end (exact:
 * integer addition in any order). Small GEMMs (a layer's matrices at a
 * few hundred tokens) have too few warps per SM to cover the mma and
 * shared-memory latencies; k-groups add warps without adding blocks. */
template <int WM, int WN, int KS>
__global__ void __launch_bounds__(WM *WN *KS * 32)
    k_tern_mma2(tm_jobs J, int cols, const int8_t *__restrict__ q, const float *__restrict__ as,
                const int32_t *__restrict__ asum, int n_tok) {
    constexpr int BM = WM * 32, BN = WN * 32, NW = WM * WN, T = NW * KS * 32;
    constexpr int SA = BM * TM_AS, SB = BN * TM_BS, KPG = 4 / KS;        /* k-steps per group */
    static_assert(KS == 1 || KS == 2 || KS == 4, "k-groups must divide the 4 k-steps of a tile");
    static_assert(KS == 1 || NW * 32 * 32 * 4 <= TM_ST * (SA + SB), "no room to add the k-groups' sums");
    __shared__ __align__(16) uint8_t smem[TM_ST * (SA + SB)];
    pdl_wait();
    pdl_launch();
    int b = blockIdx.x, fb;
    const bn_tern_job j = tm_job_of(J, b, &fb);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int kg = warp / NW, wi = warp % NW, wm = wi % WM, wn = wi / WM, g = lane >> 2, tg = lane & 3;
    const int row0 = (b - fb) * BM, tok0 = blockIdx.y * BN, nk = cols / 128;

    const tm_loader<BM, BN, T, tm_b_padded> ld(j, q, cols, row0, tok0, n_tok, tid);
    auto stage_a = [&](int s) { return smem + s * SA; };
    auto stage_b = [&](int s) { return smem + TM_ST * SA + s * SB; };
    auto load = [&](int s, int kt) { ld.load(stage_a(s), stage_b(s), kt); };

    int acc[2][4][4];
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int nt = 0; nt < 4; nt++)
#pragma unroll
            for (int i = 0; i < 4; i++) acc[mt][nt][i] = 0;
#pragma unroll
    for (int s = 0; s < TM_ST - 1; s++) {
        if (s < nk) load(s, s);
        bn_cp_async_commit();
    }
    /* ldmatrix rows of this lane: matrices (tokens 0-7, bytes 0-15),
     * (0-7, 16-31), (8-15, 0-15), (8-15, 16-31) of a 16-token pair of
     * n-tiles = b0, b1 of n-tile 2np, b0, b1 of n-tile 2np + 1. */
    const int b_row = wn * 32 + (lane & 7) + (lane >> 4) * 8, b_byte = ((lane >> 3) & 1) * 16;
    for (int kt = 0; kt < nk; kt++) {
        bn_cp_async_wait<TM_ST - 2>();
        __syncthreads(); /* stage kt landed for every thread; stage kt-1 is free */
        int nx = kt + TM_ST - 1;
        if (nx < nk) load(nx % TM_ST, nx);
        bn_cp_async_commit();
        const uint8_t *A = stage_a(kt % TM_ST), *B = stage_b(kt % TM_ST);
        unsigned aw[2][4];
#pragma unroll
        for (int mt = 0; mt < 2; mt++) {
            const uint8_t *p = A + (wm * 32 + mt * 16 + g) * TM_AS + tg * 4;
            aw[mt][0] = *(const unsigned *)p;
            aw[mt][1] = *(const unsigned *)(p + 8 * TM_AS);
            aw[mt][2] = *(const unsigned *)(p + 16);
            aw[mt][3] = *(const unsigned *)(p + 8 * TM_AS + 16);
        }
#pragma unroll
        for (int kk = 0; kk < KPG; kk++) {
            const int ks = kg * KPG + kk, sh = 6 - 2 * ks;
            unsigned bf[2][4];
#pragma unroll
            for (int np = 0; np < 2; np++) bn_ldmatrix_x4(bf[np], B + (b_row + np * 16) * TM_BS + ks * 32 + b_byte);
#pragma unroll
            for (int mt = 0; mt < 2; mt++) {
                unsigned a0 = (aw[mt][0] >> sh) & TM_MASK, a1 = (aw[mt][1] >> sh) & TM_MASK;
                unsigned a2 = (aw[mt][2] >> sh) & TM_MASK, a3 = (aw[mt][3] >> sh) & TM_MASK;
#pragma unroll
                for (int nt = 0; nt < 4; nt++)
                    bn_mma_s8(acc[mt][nt], a0, a1, a2, a3, bf[nt >> 1][(nt & 1) * 2], bf[nt >> 1][(nt & 1) * 2 + 1]);
            }
        }
    }
    bn_cp_async_wait<0>();
    if (KS > 1) { /* group 0 adds the other groups' sums, one group at a time, in the stage memory */
        int *red = (int *)smem;
        for (int gq = 1; gq < KS; gq++) {
            __syncthreads(); /* the stages (first round) or the previous round's sums are no longer read */
            if (kg == gq)
#pragma unroll
                for (int e = 0; e < 32; e++) red[(wi * 32 + e) * 32 + lane] = acc[e >> 4][(e >> 2) & 3][e & 3];
            __syncthreads();
            if (kg == 0)
#pragma unroll
                for (int e = 0; e < 32; e++) acc[e >> 4][(e >> 2) & 3][e & 3] += red[(wi * 32 + e) * 32 + lane];
        }
        if (kg != 0) return;
    }
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int nt = 0; nt < 4; nt++) {
            int r = row0 + wm * 32 + mt * 16 + g, t = tok0 + wn * 32 + nt * 8 + tg * 2;
#pragma unroll
            for (int i = 0; i < 4; i++) {
                int rr = r + (i >> 1) * 8, tt = t + (i & 1);
                if (rr < j.rows && tt < n_tok) tm_store(j, rr, tt, acc[mt][nt][i], as, asum);
            }
        }
}

/* Tiles 1..TM_N: warps along rows x tokens x k-groups, in order of
 * preference on equal cost (larger first). */
#define TM_N 11
static const int tm_wm[TM_N] = {4, 2, 4, 2, 4, 2, 4, 2, 4, 2, 2}, tm_wn[TM_N] = {2, 2, 1, 1, 2, 2, 1, 1, 1, 2, 1};
static const int tm_ks[TM_N] = {1, 1, 1, 1, 2, 2, 2, 2, 4, 4, 4};
/* Relative cost per multiply of each tile's global -> shared traffic (bytes
 * per MAC: 128x64 12 KB / 8192, 64x64 10 / 4096, 128x32 8 / 4096, 64x32 6 / 2048,
 * damped: the warps' inner loop is the same for all). */
static const double tm_f[4] = {1.0, 1.1, 1.0, 1.15};

static int tm_sm_count(void) {
    static int cached[64]; /* per device; a racing first fill writes the same value */
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return 132;
    if (!cached[dev]) {
        int n = 0;
        if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || n <= 0) n = 132;
        cached[dev] = n;
    }
    return cached[dev];
}

/* Cost model: blocks spread evenly, so the busiest SM holds b = ceil(B / n_sm)
 * blocks; its time is b x (tile multiplies) / rate, where the rate grows with
 * the warps resident on the SM until 4 (one per scheduler: each warp issues 32
 * independent mma per k-tile) and the factor tm_f above. Picks among the
 * tiles without k-groups. */
static int tm_pick_mma(const bn_tern_job *jobs, int n_jobs, int n_tok, int n_sm) {
    /* Measured (H100, 2B4T shapes, 256-sequence decode steps end to end):
     * 128x64 everywhere 9.04 ms per step against 9.79 for this model's
     * choices, which the kernel benchmark (weights hot in L2) favours but a
     * real step, reading every layer's weights once, does not. So 128x64
     * whenever its grid fills at least half the SMs. */
    long big = 0;
    for (int i = 0; i < n_jobs; i++) big += (jobs[i].rows + 127) / 128;
    if (big * ((n_tok + 63) / 64) * 2 >= n_sm) return 1;
    int best = 0;
    double best_cost = 0.0;
    for (int k = 0; k < 4; k++) {
        int bm = tm_wm[k] * 32, bn = tm_wn[k] * 32;
        long blocks = 0;
        for (int i = 0; i < n_jobs; i++) blocks += (jobs[i].rows + bm - 1) / bm;
        blocks *= (n_tok + bn - 1) / bn;
        long b = (blocks + n_sm - 1) / n_sm;
        double warps = (double)b * tm_wm[k] * tm_wn[k] * tm_ks[k], rate = warps >= 4 ? 1.0 : warps / 4.0;
        double cost = (double)b * bm * bn / rate * tm_f[k];
        if (k == 0 || cost < best_cost * 0.999) best = k, best_cost = cost;
    }
    return best + 1;
}

/* Tiles TM_N + 1..TM_N + TW_N are the wgmma kernel's, taken from
 * TW_MIN_TOK tokens on when this GPU runs it. */
#define TW_MIN_TOK 64
static int tm_pick(const bn_tern_job *jobs, int n_jobs, int n_tok, int n_sm) {
    if (n_tok >= TW_MIN_TOK && bn_k_wgmma_usable()) return TM_N + bn_k_wgmma_pick(n_tok);
    return tm_pick_mma(jobs, n_jobs, n_tok, n_sm);
}

/* Benchmarking switches, read once: BITNET_CUDA_TILE=1..TM_N + TW_N forces
 * one tile for every GEMM; BITNET_CUDA_TILES=a,b,c,d one per kind of launch
 * (tm_kind; 0 leaves that kind to the rule). bn_cuda_kernel_force_tiles sets
 * the same table from a benchmark (single-threaded use). */
static int tm_forced_all = -1, tm_forced_kind[4]; /* a racing first read stores the same values */

static int tm_tile_ok(int v) { return v >= 1 && v <= TM_N + TW_N ? v : 0; }

static void tm_read_env(void) {
    if (tm_forced_all >= 0) return;
    const char *e = getenv("BITNET_CUDA_TILE"), *k = getenv("BITNET_CUDA_TILES");
    for (int i = 0; i < 4 && k && *k; i++) {
        tm_forced_kind[i] = tm_tile_ok(atoi(k));
        k = strchr(k, ',');
        k = k ? k + 1 : NULL;
    }
    tm_forced_all = e ? tm_tile_ok(atoi(e)) : 0;
}

/* q/k/v (three matrices), gate/up (two), one matrix with at most as many
 * inputs as rows (o), one with more (down). */
static int tm_kind(const bn_tern_job *jobs, int n_jobs, int cols) {
    return n_jobs >= 3 ? 0 : n_jobs == 2 ? 1 : cols <= jobs[0].rows ? 2 : 3;
}

static int tm_forced(const bn_tern_job *jobs, int n_jobs, int cols) {
    tm_read_env();
    return tm_forced_all ? tm_forced_all : tm_forced_kind[tm_kind(jobs, n_jobs, cols)];
}

template <int WM, int WN, int KS>
static cudaError_t tm_launch(cudaStream_t st, const bn_tern_job *jobs, int n_jobs, int cols, const bn_qact *a,
                             int n_tok) {
    const int bn = WN * 32;
    tm_jobs J;
    dim3 grid((unsigned)tm_make_jobs(jobs, n_jobs, WM * 32, &J), (unsigned)((n_tok + bn - 1) / bn));
    cudaError_t e =
        bn_launch(k_tern_mma2<WM, WN, KS>, grid, WM * WN * KS * 32, 0, st, J, cols, a->q, a->scale, a->sum, n_tok);
    return e != cudaSuccess ? e : cudaGetLastError();
}

cudaError_t bn_k_ternary_mma(cudaStream_t st, const bn_tern_job *jobs, int n_jobs, int cols, const bn_qact *a,
                             int n_tok, int tile) {
    if (n_jobs < 1 || n_jobs > BN_TERN_MAX_JOBS || cols % 128 || cols <= 0 || n_tok < 1 || tile < 0 ||
        tile > TM_N + TW_N)
        return cudaErrorInvalidValue;
    for (int i = 0; i < n_jobs; i++)
        if (jobs[i].rows < 1) return cudaErrorInvalidValue;
    if (n_tok > 65535 * 32) return cudaErrorInvalidValue;
    if (tile == 0) tile = tm_forced(jobs, n_jobs, cols);
    if (tile == 0) tile = tm_pick(jobs, n_jobs, n_tok, tm_sm_count());
    if (tile > TM_N) { /* a wgmma tile; where the GPU cannot run it, the default mma.sync tile */
        if (bn_k_wgmma_usable()) return bn_k_ternary_wgmma(st, jobs, n_jobs, cols, a, n_tok, tile - TM_N);
        tile = 1;
    }
    switch (tile) {
    case 1: return tm_launch<4, 2, 1>(st, jobs, n_jobs, cols, a, n_tok);
    case 2: return tm_launch<2, 2, 1>(st, jobs, n_jobs, cols, a, n_tok);
    case 3: return tm_launch<4, 1, 1>(st, jobs, n_jobs, cols, a, n_tok);
    case 4: return tm_launch<2, 1, 1>(st, jobs, n_jobs, cols, a, n_tok);
    case 5: return tm_launch<4, 2, 2>(st, jobs, n_jobs, cols, a, n_tok);
    case 6: return tm_launch<2, 2, 2>(st, jobs, n_jobs, cols, a, n_tok);
    case 7: return tm_launch<4, 1, 2>(st, jobs, n_jobs, cols, a, n_tok);
    case 8: return tm_launch<2, 1, 2>(st, jobs, n_jobs, cols, a, n_tok);
    case 9: return tm_launch<4, 1, 4>(st, jobs, n_jobs, cols, a, n_tok);
    case 10: return tm_launch<2, 2, 4>(st, jobs, n_jobs, cols, a, n_tok);
    default: return tm_launch<2, 1, 4>(st, jobs, n_jobs, cols, a, n_tok);
    }
}

extern "C" int bn_cuda_kernel_ternary_tiles(void) { return TM_N + TW_N; }

extern "C" int bn_cuda_kernel_wgmma_usable(void) { return bn_k_wgmma_usable(); }

/* ------------------------------------------- test and benchmark hooks -- */

extern "C" {
#include "kernels/cuda/cuda_backend.h"
}

/* Runs fn once, then reps times between events; mean ms per run. */
template <typename F>
static cudaError_t tm_timed(F fn, int reps, float *ms) {
    cudaError_t e = cudaDeviceSynchronize();
    if (e == cudaSuccess) e = fn();
    if (e == cudaSuccess) e = cudaDeviceSynchronize();
    if (e != cudaSuccess || reps <= 0) return e;
    cudaEvent_t e0, e1;
    if ((e = cudaEventCreate(&e0)) != cudaSuccess) return e;
    if ((e = cudaEventCreate(&e1)) != cudaSuccess) return cudaEventDestroy(e0), e;
    e = cudaEventRecord(e0, 0);
    for (int i = 0; i < reps && e == cudaSuccess; i++) e = fn();
    if (e == cudaSuccess) e = cudaEventRecord(e1, 0);
    if (e == cudaSuccess) e = cudaEventSynchronize(e1);
    float t = 0.0f;
    if (e == cudaSuccess) e = cudaEventElapsedTime(&t, e0, e1);
    if (e == cudaSuccess && ms) *ms = t / reps;
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return e;
}

extern "C" int bn_cuda_kernel_ternary(int variant, int n_mat, const bn_cuda_ternary *const *w, const int *rows,
                                      float *const *y, int cols, const bn_qact *a, int n_tok, int reps, float *ms) {
    if (n_mat < 1 || n_mat > BN_TERN_MAX_JOBS || variant < 0 || variant > TM_N + TW_N + 1) return (int)cudaErrorInvalidValue;
    bn_tern_job jobs[BN_TERN_MAX_JOBS];
    for (int i = 0; i < n_mat; i++) {
        jobs[i].codes = w[i]->codes;
        jobs[i].scale = w[i]->scale;
        jobs[i].y = y[i];
        jobs[i].rows = rows[i];
        jobs[i].accumulate = 0;
    }
    auto fn = [&]() -> cudaError_t {
        if (variant == 0) return bn_k_ternary(0, jobs, n_mat, cols, a, n_tok);
        if (variant == 1) return bn_k_ternary_mma_v1(0, jobs, n_mat, cols, a, n_tok);
        return bn_k_ternary_mma(0, jobs, n_mat, cols, a, n_tok, variant - 1);
    };
    return (int)tm_timed(fn, reps, ms);
}

extern "C" int bn_cuda_kernel_ternary_tile(int n_mat, const int *rows, int cols, int n_tok) {
    bn_tern_job jobs[BN_TERN_MAX_JOBS];
    if (n_mat < 1 || n_mat > BN_TERN_MAX_JOBS) return 0;
    for (int i = 0; i < n_mat; i++) jobs[i].rows = rows[i];
    int forced = tm_forced(jobs, n_mat, cols);
    return forced ? forced : tm_pick(jobs, n_mat, n_tok, tm_sm_count());
}

extern "C" void bn_cuda_kernel_force_tiles(const int *tiles) {
    tm_read_env();
    for (int i = 0; i < 4; i++) tm_forced_kind[i] = tiles ? tm_tile_ok(tiles[i]) : 0;
}

extern "C" int bn_cuda_kernel_dense(int variant, uint32_t type, const void *w, uint64_t row_bytes, int rows, int cols,
                                    const float *x, int n_tok, float *y, void *scratch, size_t scratch_bytes,
                                    int reps, float *ms) {
    auto fn = [&]() -> cudaError_t {
        if (variant == 0) return bn_k_dense(0, type, w, row_bytes, rows, cols, x, n_tok, y, scratch, scratch_bytes);
        if (variant == 1) return bn_k_dense_gemv(0, type, w, row_bytes, rows, cols, x, n_tok, y);
        if (scratch_bytes < bn_k_dense_mma_scratch(n_tok, cols)) return cudaErrorInvalidValue;
        return bn_k_dense_mma(0, type, w, row_bytes, rows, cols, x, n_tok, y, scratch, variant == 3);
    };
    if (variant < 0 || variant > 3) return (int)cudaErrorInvalidValue;
    return (int)tm_timed(fn, reps, ms);
}

extern "C" size_t bn_cuda_kernel_dense_scratch(int n_tok, int cols) { return bn_k_dense_mma_scratch(n_tok, cols); }
