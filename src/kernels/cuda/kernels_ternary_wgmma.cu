/* Ternary × int8 GEMM on the warpgroup tensor-core instructions of sm_90a
 * (wgmma.mma_async m64nNk32 s8), for steps of 64 or more tokens.
 *
 * Why: the mma.sync GEMM (kernels_ternary_mma.cu) stays latency-bound on an
 * H100 (ncu on a 256-sequence decode step: 25 % occupancy, 0.68 eligible
 * warps of 3.5, 250–345 TOP/s): every warp issues its own chain of 16x8x32
 * products, each fed by ldmatrix. One wgmma multiplies 64 rows by up to 128
 * tokens by 32 k-values, reads its activations straight from shared memory
 * and runs asynchronously, so a warpgroup issues 4 instructions per 128-wide
 * k-tile instead of 32 per warp.
 *
 * Operands: A (weights) from registers, built exactly as for mma.sync — the
 * fragment layout of one warp of the warpgroup is mma.m16n8k32's (see
 * cuda_wgmma.cuh) — from 32-bit words of 2-bit codes (shift 6 - 2ks, mask
 * 0x03030303: codes c = w + 1 of 4 consecutive weights). B (activations)
 * from shared memory in the 128-byte swizzled layout that cp.async fills one
 * 16-byte chunk at a time. Σ w·q = Σ c·q − Σ q in int32 and the same float
 * epilogue as the other kernels (tm_store), so every tile gives the same
 * bits as the GEMV and the CPU reference.
 *
 * Block: NWG warpgroups along rows (64 rows each) sharing one B tile of BN
 * tokens, times KG k-groups (KG warpgroups on alternate k-tiles of the same
 * output tile, their int32 sums added at the end), ST-stage cp.async
 * pipeline whose stages hold KG consecutive 128-wide k-tiles. Each stage:
 * wait for it, fence it for the async proxy, barrier, start loading the one
 * ST - 1 ahead, then per warpgroup 4 wgmma (one per 32-wide k-step of its
 * k-tile) and a wait for them (the A registers are rebuilt for the next
 * tile, so a warpgroup never overlaps two tiles: more warpgroups per SM,
 * from more blocks or from k-groups, are what hides that latency). */
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_mma.cuh"
#include "kernels/cuda/cuda_wgmma.cuh"
#include "kernels/cuda/ternary_gemm.cuh"

/* B chunks in the 128-byte swizzle (cuda_wgmma.cuh): chunk p of token t at
 * chunk p ^ (t % 8) of its 128-byte row. */
struct tw_b_swizzled {
    static __device__ __forceinline__ int at(int t, int p) { return t * 128 + ((p ^ (t & 7)) << 4); }
};

/* d += a · b over a 64 x BN tile: the instruction of that width. */
template <int BN>
__device__ __forceinline__ void tw_mma(int (&d)[BN / 2], unsigned a0, unsigned a1, unsigned a2, unsigned a3,
                                       unsigned long long b) {
    static_assert(BN == 32 || BN == 64 || BN == 128, "a tile width with a wgmma wrapper");
    if constexpr (BN == 32) bn_wgmma_s8_n32(d, a0, a1, a2, a3, b);
    else if constexpr (BN == 64) bn_wgmma_s8_n64(d, a0, a1, a2, a3, b);
    else bn_wgmma_s8_n128(d, a0, a1, a2, a3, b);
}

/* NWG warpgroups along rows (64 rows each) x KG k-groups, BN tokens, ST
 * pipeline stages of KG consecutive 128-wide k-tiles each. */
template <int NWG, int BN, int KG, int ST>
struct tw_shape {
    static constexpr int BM = NWG * 64, T = NWG * KG * 128;
    static constexpr int SB = BN * 128, SA = BM * TM_AS; /* bytes per k-tile; SB is a multiple of 1024 */
    static constexpr int RED = (KG - 1) * NWG * 128 * (BN / 2) * 4; /* k-group sums at the end */
    static constexpr size_t smem = (size_t)ST * KG * (SB + SA) + 1024; /* + room to align the B stages */
    static_assert((size_t)RED <= (size_t)ST * KG * (SB + SA), "the k-group sums reuse the stages");
};

template <int NWG, int BN, int KG, int ST>
__global__ void __launch_bounds__(NWG * KG * 128)
    k_tern_wgmma(tm_jobs J, int cols, const int8_t *__restrict__ q, const float *__restrict__ as,
                 const int32_t *__restrict__ asum, int n_tok) {
#ifdef BN_HAVE_WGMMA
    using S = tw_shape<NWG, BN, KG, ST>;
    constexpr int BM = S::BM, T = S::T, SB = S::SB, SA = S::SA;
    constexpr int NACC = BN / 2; /* accumulators per thread: 64 x BN over 128 threads */
    extern __shared__ uint8_t tw_dyn[];
    /* The swizzle pattern repeats every 1024 bytes from a 1024-byte boundary. */
    uint8_t *smem = (uint8_t *)(((uintptr_t)tw_dyn + 1023) & ~(uintptr_t)1023);
    pdl_wait();
    pdl_launch();
    int b = blockIdx.x, fb;
    const bn_tern_job j = tm_job_of(J, b, &fb);
    const int tid = threadIdx.x, lane = tid & 31, wgi = tid >> 7, wq = (tid >> 5) & 3, g = lane >> 2, tg = lane & 3;
    const int wr = wgi % NWG, kg = wgi / NWG; /* row warpgroup, k-group (uniform per warpgroup) */
    const int row0 = (b - fb) * BM, tok0 = blockIdx.y * BN, nk = cols / 128, nks = (nk + KG - 1) / KG;

    const tm_loader<BM, BN, T, tw_b_swizzled> ld(j, q, cols, row0, tok0, n_tok, tid);
    /* Stage s holds k-tiles KG s' .. KG s' + KG - 1 of super-tile s'. */
    auto tile_b = [&](int s, int i) { return smem + (s * KG + i) * SB; };
    auto tile_a = [&](int s, int i) { return smem + ST * KG * SB + (s * KG + i) * SA; };
    auto load = [&](int s, int ks) {
#pragma unroll
        for (int i = 0; i < KG; i++)
            if (ks * KG + i < nk) ld.load(tile_a(s, i), tile_b(s, i), ks * KG + i);
    };

    int acc[NACC];
#pragma unroll
    for (int i = 0; i < NACC; i++) acc[i] = 0;
#pragma unroll
    for (int s = 0; s < ST - 1; s++) {
        if (s < nks) load(s, s);
        bn_cp_async_commit();
    }
    const int ar = wr * 64 + wq * 16 + g; /* this thread's A rows: ar, ar + 8 */
    for (int ks = 0; ks < nks; ks++) {
        bn_cp_async_wait<ST - 2>();
        bn_fence_proxy_async(); /* this thread's copies of stage ks, visible to the tensor core */
        __syncthreads();        /* ... and every other thread's; stage ks-1 is no longer read */
        int nx = ks + ST - 1;
        if (nx < nks) load(nx % ST, nx);
        bn_cp_async_commit();
        if (ks * KG + kg >= nk) continue; /* a k-group past the last k-tile (warpgroup-uniform) */
        const uint8_t *A = tile_a(ks % ST, kg) + ar * TM_AS + tg * 4, *B = tile_b(ks % ST, kg);
        unsigned w0 = *(const unsigned *)A, w1 = *(const unsigned *)(A + 8 * TM_AS);
        unsigned w2 = *(const unsigned *)(A + 16), w3 = *(const unsigned *)(A + 8 * TM_AS + 16);
        /* All A fragments first: a register written between two wgmma
         * would make ptxas fence the second one. */
        unsigned af[4][4];
#pragma unroll
        for (int k4 = 0; k4 < 4; k4++) {
            const int sh = 6 - 2 * k4;
            af[k4][0] = (w0 >> sh) & TM_MASK, af[k4][1] = (w1 >> sh) & TM_MASK;
            af[k4][2] = (w2 >> sh) & TM_MASK, af[k4][3] = (w3 >> sh) & TM_MASK;
        }
        bn_wgmma_fence();
#pragma unroll
        for (int k4 = 0; k4 < 4; k4++)
            tw_mma<BN>(acc, af[k4][0], af[k4][1], af[k4][2], af[k4][3], bn_wgmma_desc_sw128(B + k4 * 32));
        bn_wgmma_commit();
        bn_wgmma_wait<0>();
#pragma unroll
        for (int i = 0; i < NACC; i++) bn_reg_fence(acc[i]);
    }
    bn_cp_async_wait<0>();
    if constexpr (KG > 1) {
        /* k-groups 1.. hand their sums to k-group 0 through the (now idle)
         * stage memory, thread-major so that a warp's stores are consecutive
         * words; integer sums, so the order does not change the result. */
        int *red = (int *)smem;
        const int t = tid & 127;
        __syncthreads(); /* every warpgroup is done with the stages */
        if (kg > 0) {
#pragma unroll
            for (int i = 0; i < NACC; i++) red[(((kg - 1) * NWG + wr) * NACC + i) * 128 + t] = acc[i];
        }
        __syncthreads();
        if (kg > 0) return;
#pragma unroll
        for (int k = 1; k < KG; k++)
#pragma unroll
            for (int i = 0; i < NACC; i++) acc[i] += red[(((k - 1) * NWG + wr) * NACC + i) * 128 + t];
    }
#pragma unroll
    for (int jn = 0; jn < BN / 8; jn++)
#pragma unroll
        for (int i = 0; i < 4; i++) {
            int r = row0 + ar + (i >> 1) * 8, t = tok0 + jn * 8 + tg * 2 + (i & 1);
            if (r < j.rows && t < n_tok) tm_store(j, r, t, acc[jn * 4 + i], as, asum);
        }
#else
    (void)J, (void)cols, (void)q, (void)as, (void)asum, (void)n_tok;
#endif
}

/* The tiles, numbered 1..TW_N: (tile, warpgroups along rows, tokens,
 * k-groups, stages). 1-5 are the first five (one k-group); 6-11 add k-groups
 * (several warpgroups on alternate k-tiles of one output tile, summed at the
 * end) and 128x32, for grids that would leave warps idle otherwise; 12-14
 * are deeper pipelines (64x32 with 8 stages, 64x32/k2 with 6, 64x64 with 6). */
#define TW_TILES(X)                                                                                                   \
    X(1, 2, 128, 1, 4) X(2, 2, 64, 1, 4) X(3, 1, 128, 1, 4) X(4, 1, 64, 1, 4) X(5, 1, 32, 1, 4) X(6, 1, 32, 2, 4)    \
        X(7, 1, 32, 4, 3) X(8, 1, 64, 2, 4) X(9, 2, 32, 1, 4) X(10, 2, 32, 2, 4) X(11, 2, 64, 2, 3)          \
            X(12, 1, 32, 1, 8) X(13, 1, 32, 2, 6) X(14, 1, 64, 1, 6)

template <int NWG, int BN, int KG, int ST>
static cudaError_t tw_launch(cudaStream_t st, const bn_tern_job *jobs, int n_jobs, int cols, const bn_qact *a,
                             int n_tok) {
    using S = tw_shape<NWG, BN, KG, ST>;
    tm_jobs J;
    dim3 grid((unsigned)tm_make_jobs(jobs, n_jobs, S::BM, &J), (unsigned)((n_tok + BN - 1) / BN));
    cudaError_t e = bn_launch(k_tern_wgmma<NWG, BN, KG, ST>, grid, S::T, S::smem, st, J, cols, a->q, a->scale, a->sum,
                              n_tok);
    return e != cudaSuccess ? e : cudaGetLastError();
}

template <int NWG, int BN, int KG, int ST>
static cudaError_t tw_allow_smem(void) {
    return cudaFuncSetAttribute(k_tern_wgmma<NWG, BN, KG, ST>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)tw_shape<NWG, BN, KG, ST>::smem);
}

/* Writes 1 where this code was built with wgmma (the sm_90a image runs). */
__global__ void k_wgmma_probe(int *out) {
#ifdef BN_HAVE_WGMMA
    *out = 1;
#else
    *out = 0;
#endif
}

/* Per device: 0 not yet known, 1 usable, 2 not. Filled by bn_k_wgmma_init
 * at backend creation (never inside a stream capture); a racing fill
 * stores the same value. */
static int tw_state[64];

static int tw_device(void) {
    int dev = -1;
    return cudaGetDevice(&dev) == cudaSuccess && dev >= 0 && dev < 64 ? dev : -1;
}

int bn_k_wgmma_usable(void) {
    int dev = tw_device();
    return dev >= 0 && tw_state[dev] == 1;
}

/* BITNET_CUDA_WGMMA=0 keeps the mma.sync kernel everywhere. */
void bn_k_wgmma_init(void) {
    int dev = tw_device();
    if (dev < 0 || tw_state[dev]) return;
    int ok = 0, major = 0, minor = 0, *d = NULL;
    const char *env = getenv("BITNET_CUDA_WGMMA");
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess && major == 9 &&
        minor == 0 && !(env && !strcmp(env, "0")) && cudaMalloc((void **)&d, sizeof *d) == cudaSuccess) {
        k_wgmma_probe<<<1, 1>>>(d);
        ok = cudaMemcpy(&ok, d, sizeof ok, cudaMemcpyDeviceToHost) == cudaSuccess ? ok : 0;
        cudaFree(d);
#define TW_ALLOW(t, nwg, bn, kg, ns) ok = ok && tw_allow_smem<nwg, bn, kg, ns>() == cudaSuccess;
        TW_TILES(TW_ALLOW)
#undef TW_ALLOW
    }
    cudaGetLastError(); /* a failed probe leaves no error behind */
    tw_state[dev] = ok ? 1 : 2;
}

cudaError_t bn_k_ternary_wgmma(cudaStream_t st, const bn_tern_job *jobs, int n_jobs, int cols, const bn_qact *a,
                               int n_tok, int tile) {
    if (!bn_k_wgmma_usable()) return cudaErrorNotSupported;
    if (n_tok > 65535 * 64) return cudaErrorInvalidValue;
    switch (tile) {
#define TW_CASE(t, nwg, bn, kg, ns)                                                                                   \
    case t: return tw_launch<nwg, bn, kg, ns>(st, jobs, n_jobs, cols, a, n_tok);
        TW_TILES(TW_CASE)
#undef TW_CASE
    default: return cudaErrorInvalidValue;
    }
}

/* Measured on an H100 (whole 256-sequence decode steps, argmax on the
 * device, one tile forced for every GEMM; bench_cuda --batched-only 256
 * --tiles): at positions 3..10 / 130..137, 64x32 6.68 / 8.09 ms,
 * 64x32/k2 6.16 / 7.56, 64x64/k2 6.14 / 7.61, 128x32/k2 6.09 / 7.40, 64x64
 * 6.46 / 7.90, 128x64 6.97 / 8.54. So 128x32/k2 for steps of 129..256
 * tokens; 64x32 below (not re-measured with the k-group tiles); above,
 * 128x64, the best or near it on every 2B4T shape at 1024 tokens in the
 * kernel benchmark (455–609 TOP/s). */
int bn_k_wgmma_pick(int n_tok) { return n_tok <= 128 ? 5 : n_tok <= 256 ? 10 : 2; }
