/* The dense output head for several tokens as a tensor-core GEMM:
 *   y[t][r] = Σ_k W[r][k] · x[t][k],  W: rows x cols F16 or BF16 (the file's
 *   rows), x: n_tok x cols f32, y: n_tok x rows f32.
 *
 * Why: the GEMV (kernels_matmul.cu) reads the whole head once per 4 tokens,
 * so 256 tokens of a 128256 x 2560 F16 head read 656 MB 64 times (~23 ms on
 * an H100). Here each weight tile is read from memory once per block of
 * 32-128 tokens and multiplied on the tensor cores
 * (mma.sync.m16n8k16, f32 accumulation).
 *
 * Steps:
 * 1. k_dense_act_half converts x to the weights' half type once, into a
 *    scratch buffer of n_tok rows of ldx = cols rounded up to 64 elements
 *    (zero padded), each row scaled by a power of two (no f16 overflow; the
 *    result is scaled back exactly), so the GEMM streams 16-byte chunks of
 *    both operands with cp.async and never converts in its inner loop.
 *    Rounding x to f16 costs ~2^-12 relative per element (2^-9 for bf16, the
 *    type a BF16 head needs: mma takes one type for both operands).
 * 2. k_dense_mma: block = 128 weight rows x BN tokens (BN = 32, 64 or 128,
 *    chosen by n_tok), 8 warps; k-tiles of 64 elements (128 bytes per row)
 *    through a 3-4 stage cp.async pipeline; shared-memory rows are XOR
 *    swizzled by 16-byte chunk (chunk c of row r at c ^ (r % 8)), so that
 *    both the cp.async stores and the ldmatrix reads of 8 rows at one chunk
 *    hit distinct banks without padding. Rows and tokens past the end are
 *    zero-filled and their results not stored; k past cols is zero on both
 *    sides. The token tile is the fast grid index, so the blocks sharing a
 *    weight tile run together and read it from DRAM once (L2 serves the rest).
 *
 * 3. On sm_90a (bn_k_wgmma_usable) and more than 64 tokens, k_dense_wgmma
 *    instead: the same stages (the swizzle above is the hardware's 128-byte
 *    pattern once a stage starts on a 1024-byte boundary), read by
 *    wgmma.m64n128k16 straight from shared memory, 128 rows (two
 *    warpgroups) x 128 tokens per block; since no operand lives in
 *    registers, the products of one k-tile run while the next is issued
 *    (wait for all but the newest group), and a stage is refilled once the
 *    products that read it are done.
 *
 * Requirements (else bn_k_dense uses the GEMV): F16/BF16, cols % 8 == 0,
 * 16-byte aligned rows (row_bytes % 16 == 0, aligned base). */
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.cuh"
#include "kernels/cuda/cuda_mma.cuh"
#include "kernels/cuda/cuda_wgmma.cuh"

extern "C" {
#include "format/ggml_types.h"
}

#define DM_BM 128     /* weight rows per block */
#define DM_BK 64      /* elements per k-tile (128 bytes per row) */
#define DM_THREADS 256

static inline int dm_ldx(int cols) { return (cols + DM_BK - 1) / DM_BK * DM_BK; }

/* Block t: row t of x (cols f32) -> xh row t (ldx halves, f16 or bf16, zero
 * padded), scaled by a power of two 1/ts[t] that brings the row's largest
 * magnitude into [256, 512): f16 then cannot overflow (65504) whatever the
 * activations' range, small rows keep their precision, and the scaling is
 * exact (the GEMM multiplies its f32 result by ts[t], also exact). */
template <bool BF16>
__global__ void __launch_bounds__(256) k_dense_act_half(const float *__restrict__ x, int cols, int ldx,
                                                        unsigned short *__restrict__ xh, float *__restrict__ ts) {
    __shared__ float sh[32];
    pdl_wait();
    pdl_launch();
    const int t = blockIdx.x;
    const float *xr = x + (size_t)t * cols;
    float amax = 0.0f;
    for (int k = threadIdx.x; k < cols; k += blockDim.x) amax = fmaxf(amax, fabsf(xr[k]));
    amax = block_reduce(amax, op_max(), sh);
    float scale = 1.0f, inv = 1.0f;
    if (amax > 0.0f && amax <= 3.0e38f) { /* else (0, inf, NaN): unscaled */
        int e;
        frexpf(amax, &e); /* amax < 2^e */
        e = max(e, -100);
        scale = ldexpf(1.0f, e - 9), inv = ldexpf(1.0f, 9 - e);
    }
    unsigned short *hr = xh + (size_t)t * ldx;
    for (int k = threadIdx.x; k < ldx; k += blockDim.x) {
        float v = k < cols ? __fmul_rn(xr[k], inv) : 0.0f;
        hr[k] = BF16 ? __bfloat16_as_ushort(__float2bfloat16_rn(v)) : __half_as_ushort(__float2half_rn(v));
    }
    if (threadIdx.x == 0) ts[t] = scale;
}

template <int BN>
struct dm_cfg {
    static constexpr int WARPS_M = BN == 128 ? 2 : 4;
    static constexpr int WARPS_N = 8 / WARPS_M;
    static constexpr int WTM = DM_BM / WARPS_M; /* warp tile rows */
    static constexpr int WTN = BN / WARPS_N;    /* warp tile tokens */
    static constexpr int MT = WTM / 16, NT = WTN / 8;
    static constexpr int STAGES = BN == 128 ? 3 : 4;
    static constexpr int A_BYTES = DM_BM * DM_BK * 2, B_BYTES = BN * DM_BK * 2;
    static constexpr int SMEM = STAGES * (A_BYTES + B_BYTES);
    static_assert(NT % 2 == 0, "B fragments are loaded for pairs of n-tiles");
};

/* Byte offset of 16-byte chunk c of row r in a swizzled 128-byte-row tile. */
__device__ __forceinline__ int dm_swz(int r, int c) { return r * 128 + ((c ^ (r & 7)) << 4); }

/* One thread's cp.async copies of a k-tile, for both GEMM kernels: chunk
 * tid % 8 of rows tid / 8 + 32 j (A: 4 of 128 weight rows, B: BN / 32 of BN
 * tokens), so the swizzled offset differs between j only by 32 rows. Rows
 * past the end read row 0 (a valid address) with a zero fill. */
template <int BN>
struct dm_loader {
    static constexpr int A_PER = DM_BM / 32, B_PER = BN / 32;
    const uint8_t *w, *abase;
    const unsigned short *bbase;
    uint64_t row_bytes;
    int rows, cols, ldx, n_tok, row0, tok0, ld_r, ld_c, ld_off;

    __device__ __forceinline__ dm_loader(const uint8_t *w_, uint64_t row_bytes_, int rows_, int cols_,
                                         const unsigned short *xh, int ldx_, int n_tok_, int row0_, int tok0_,
                                         int tid)
        : w(w_), abase(w_ + (tid & 7) * 16), bbase(xh + (tid & 7) * 8), row_bytes(row_bytes_), rows(rows_),
          cols(cols_), ldx(ldx_), n_tok(n_tok_), row0(row0_), tok0(tok0_), ld_r(tid >> 3), ld_c(tid & 7),
          ld_off(dm_swz(tid >> 3, tid & 7)) {}

    /* Starts the copies of k-tile kt into sa (A) and sb (B). */
    __device__ __forceinline__ void load(uint8_t *sa, uint8_t *sb, int kt) const {
        const int k0 = kt * DM_BK;
        const bool kin = k0 + ld_c * 8 < cols; /* cols % 8 == 0: a chunk is all in or all out */
#pragma unroll
        for (int j = 0; j < A_PER; j++) {
            int r = row0 + ld_r + 32 * j;
            bool v = kin && r < rows;
            bn_cp_async16(sa + ld_off + j * 32 * 128, v ? abase + (uint64_t)r * row_bytes + (size_t)k0 * 2 : w, v);
        }
#pragma unroll
        for (int j = 0; j < B_PER; j++) {
            int t = tok0 + ld_r + 32 * j;
            bool v = t < n_tok;
            bn_cp_async16(sb + ld_off + j * 32 * 128, bbase + (size_t)(v ? t : 0) * ldx + k0, v);
        }
    }
};

template <bool BF16, int BN>
__global__ void __launch_bounds__(DM_THREADS, 2)
    k_dense_mma(const uint8_t *__restrict__ w, uint64_t row_bytes, int rows, int cols,
                const unsigned short *__restrict__ xh, const float *__restrict__ ts, int ldx, int n_tok,
                float *__restrict__ y) {
    using C = dm_cfg<BN>;
    extern __shared__ __align__(128) uint8_t dm_smem[];
    pdl_wait();
    pdl_launch();
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp % C::WARPS_M, wn = warp / C::WARPS_M;
    const int tok0 = blockIdx.x * BN, row0 = blockIdx.y * DM_BM, nk = ldx / DM_BK;
    uint8_t *sa = dm_smem, *sb = dm_smem + C::STAGES * C::A_BYTES;

    const dm_loader<BN> ld(w, row_bytes, rows, cols, xh, ldx, n_tok, row0, tok0, tid);
    auto load = [&](int s, int kt) { ld.load(sa + s * C::A_BYTES, sb + s * C::B_BYTES, kt); };

    float acc[C::MT][C::NT][4];
#pragma unroll
    for (int mt = 0; mt < C::MT; mt++)
#pragma unroll
        for (int nt = 0; nt < C::NT; nt++)
#pragma unroll
            for (int i = 0; i < 4; i++) acc[mt][nt][i] = 0.0f;

#pragma unroll
    for (int s = 0; s < C::STAGES - 1; s++) {
        if (s < nk) load(s, s);
        bn_cp_async_commit();
    }
    /* ldmatrix source rows of this lane (see cuda_mma.cuh): A matrices are
     * (rows 0-7, k lo), (rows 8-15, k lo), (rows 0-7, k hi), (rows 8-15, k hi);
     * B matrices (tokens 0-7, k lo), (0-7, k hi), (8-15, k lo), (8-15, k hi). */
    const int a_r = wm * C::WTM + (lane & 7) + ((lane >> 3) & 1) * 8, a_c = lane >> 4;
    const int b_r = wn * C::WTN + (lane & 7) + (lane >> 4) * 8, b_c = (lane >> 3) & 1;
    for (int kt = 0; kt < nk; kt++) {
        bn_cp_async_wait<C::STAGES - 2>();
        __syncthreads(); /* stage kt landed for every thread; stage kt-1 is free */
        int nx = kt + C::STAGES - 1;
        if (nx < nk) load(nx % C::STAGES, nx);
        bn_cp_async_commit();
        const uint8_t *A = sa + (kt % C::STAGES) * C::A_BYTES, *B = sb + (kt % C::STAGES) * C::B_BYTES;
#pragma unroll
        for (int ks = 0; ks < DM_BK / 16; ks++) {
            /* All B fragments, then one m-tile's A fragment at a time (fewer
             * live registers: the 64 x 32 warp tile must fit 128 per thread). */
            unsigned bf[C::NT / 2][4];
#pragma unroll
            for (int np = 0; np < C::NT / 2; np++) bn_ldmatrix_x4(bf[np], B + dm_swz(b_r + np * 16, ks * 2 + b_c));
#pragma unroll
            for (int mt = 0; mt < C::MT; mt++) {
                unsigned af[4];
                bn_ldmatrix_x4(af, A + dm_swz(a_r + mt * 16, ks * 2 + a_c));
#pragma unroll
                for (int nt = 0; nt < C::NT; nt++)
                    bn_mma_16816<BF16>(acc[mt][nt], af, bf[nt >> 1][(nt & 1) * 2], bf[nt >> 1][(nt & 1) * 2 + 1]);
            }
        }
    }
    bn_cp_async_wait<0>(); /* no copy may be in flight when the block exits */

    const int g = lane >> 2, tg = lane & 3;
#pragma unroll
    for (int mt = 0; mt < C::MT; mt++)
#pragma unroll
        for (int nt = 0; nt < C::NT; nt++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                int r = row0 + wm * C::WTM + mt * 16 + g + (i >> 1) * 8;
                int t = tok0 + wn * C::WTN + nt * 8 + tg * 2 + (i & 1);
                if (r < rows && t < n_tok) y[(size_t)t * rows + r] = acc[mt][nt][i] * ts[t];
            }
}

#define DW_BN 128 /* tokens per block of the wgmma kernel */
#define DW_ST 5   /* its stages (prefetch distance DW_ST - 2) */
#define DW_STAGE (DM_BM * 128 + DW_BN * 128)
#define DW_SMEM (DW_ST * DW_STAGE + 1024) /* + room to align the stages to 1024 bytes */

template <bool BF16>
__global__ void __launch_bounds__(DM_THREADS)
    k_dense_wgmma(const uint8_t *__restrict__ w, uint64_t row_bytes, int rows, int cols,
                  const unsigned short *__restrict__ xh, const float *__restrict__ ts, int ldx, int n_tok,
                  float *__restrict__ y) {
#ifdef BN_HAVE_WGMMA
    extern __shared__ uint8_t dw_dyn[];
    uint8_t *smem = (uint8_t *)(((uintptr_t)dw_dyn + 1023) & ~(uintptr_t)1023);
    pdl_wait();
    pdl_launch();
    const int tid = threadIdx.x, lane = tid & 31, wg = tid >> 7, wq = (tid >> 5) & 3, g = lane >> 2, tg = lane & 3;
    const int tok0 = blockIdx.x * DW_BN, row0 = blockIdx.y * DM_BM, nk = ldx / DM_BK;
    constexpr int A_BYTES = DM_BM * 128;
    const dm_loader<DW_BN> ld(w, row_bytes, rows, cols, xh, ldx, n_tok, row0, tok0, tid);
    auto load = [&](int s, int kt) { ld.load(smem + s * DW_STAGE, smem + s * DW_STAGE + A_BYTES, kt); };
    float acc[64];
#pragma unroll
    for (int i = 0; i < 64; i++) acc[i] = 0.0f;
#pragma unroll
    for (int s = 0; s < DW_ST - 2; s++) {
        if (s < nk) load(s, s);
        bn_cp_async_commit();
    }
    for (int kt = 0; kt < nk; kt++) {
        bn_cp_async_wait<DW_ST - 3>();
        bn_fence_proxy_async(); /* this thread's copies of stage kt, visible to the tensor core */
        __syncthreads();        /* ... and every thread's; every warpgroup is past the products of kt - 2 */
        const uint8_t *A = smem + (kt % DW_ST) * DW_STAGE + wg * 64 * 128, *B = smem + (kt % DW_ST) * DW_STAGE + A_BYTES;
#pragma unroll
        for (int i = 0; i < 64; i++) bn_reg_fence(acc[i]);
        bn_wgmma_fence();
#pragma unroll
        for (int ks = 0; ks < DM_BK / 16; ks++)
            bn_wgmma_h16_n128<BF16>(acc, bn_wgmma_desc_sw128(A + ks * 32), bn_wgmma_desc_sw128(B + ks * 32));
        bn_wgmma_commit();
        bn_wgmma_wait<1>(); /* the products of kt - 1 are done: its stage may be refilled after the next barrier */
#pragma unroll
        for (int i = 0; i < 64; i++) bn_reg_fence(acc[i]);
        int nx = kt + DW_ST - 2; /* into stage (kt - 2) % DW_ST, whose products every warpgroup finished */
        if (nx < nk) load(nx % DW_ST, nx);
        bn_cp_async_commit();
    }
    bn_wgmma_wait<0>();
#pragma unroll
    for (int i = 0; i < 64; i++) bn_reg_fence(acc[i]);
    bn_cp_async_wait<0>();
#pragma unroll
    for (int jn = 0; jn < DW_BN / 8; jn++)
#pragma unroll
        for (int i = 0; i < 4; i++) {
            int r = row0 + wg * 64 + wq * 16 + g + (i >> 1) * 8, t = tok0 + jn * 8 + tg * 2 + (i & 1);
            if (r < rows && t < n_tok) y[(size_t)t * rows + r] = acc[jn * 4 + i] * ts[t];
        }
#else
    (void)w, (void)row_bytes, (void)rows, (void)cols, (void)xh, (void)ts, (void)ldx, (void)n_tok, (void)y;
#endif
}

int bn_k_dense_mma_ok(uint32_t type, const void *w, uint64_t row_bytes, int rows, int cols, int n_tok) {
    /* rows bound: the row tiles are grid y (at most 65535). */
    return (type == BN_GGML_F16 || type == BN_GGML_BF16) && n_tok >= BN_DENSE_MMA_MIN_TOK && rows > 0 &&
           rows <= 65535 * DM_BM &&
           cols > 0 && cols % 8 == 0 && row_bytes % 16 == 0 && row_bytes >= (uint64_t)cols * 2 &&
           ((uintptr_t)w & 15) == 0;
}

/* Scratch: the half activations, then n_tok float scales (16-byte aligned). */
static inline size_t dm_half_bytes(int n_tok, int cols) {
    return ((size_t)n_tok * (size_t)dm_ldx(cols) * 2 + 15) & ~(size_t)15;
}
size_t bn_k_dense_mma_scratch(int n_tok, int cols) {
    return dm_half_bytes(n_tok, cols) + (size_t)n_tok * sizeof(float);
}

template <bool BF16, int BN>
static cudaError_t dm_launch(cudaStream_t st, const uint8_t *w, uint64_t row_bytes, int rows, int cols,
                             const unsigned short *xh, const float *ts, int ldx, int n_tok, float *y) {
    using C = dm_cfg<BN>;
    /* More than 48 KB of dynamic shared memory must be allowed per kernel and
     * device, once (a racing first call sets the same value twice). */
    static bool allowed[64];
    int dev = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e != cudaSuccess) return e;
    if (dev < 0 || dev >= 64 || !allowed[dev]) {
        e = cudaFuncSetAttribute(k_dense_mma<BF16, BN>, cudaFuncAttributeMaxDynamicSharedMemorySize, C::SMEM);
        if (e != cudaSuccess) return e;
        if (dev >= 0 && dev < 64) allowed[dev] = true;
    }
    dim3 grid((unsigned)((n_tok + BN - 1) / BN), (unsigned)((rows + DM_BM - 1) / DM_BM));
    e = bn_launch(k_dense_mma<BF16, BN>, grid, DM_THREADS, (size_t)C::SMEM, st, w, row_bytes, rows, cols, xh, ts,
                  ldx, n_tok, y);
    return e != cudaSuccess ? e : cudaGetLastError();
}

template <bool BF16>
static cudaError_t dw_launch(cudaStream_t st, const uint8_t *w, uint64_t row_bytes, int rows, int cols,
                             const unsigned short *xh, const float *ts, int ldx, int n_tok, float *y) {
    static bool allowed[64]; /* as in dm_launch */
    int dev = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e != cudaSuccess) return e;
    if (dev < 0 || dev >= 64 || !allowed[dev]) {
        e = cudaFuncSetAttribute(k_dense_wgmma<BF16>, cudaFuncAttributeMaxDynamicSharedMemorySize, DW_SMEM);
        if (e != cudaSuccess) return e;
        if (dev >= 0 && dev < 64) allowed[dev] = true;
    }
    dim3 grid((unsigned)((n_tok + DW_BN - 1) / DW_BN), (unsigned)((rows + DM_BM - 1) / DM_BM));
    e = bn_launch(k_dense_wgmma<BF16>, grid, DM_THREADS, (size_t)DW_SMEM, st, w, row_bytes, rows, cols, xh, ts, ldx,
                  n_tok, y);
    return e != cudaSuccess ? e : cudaGetLastError();
}

template <bool BF16>
static cudaError_t dm_typed(cudaStream_t st, const uint8_t *w, uint64_t row_bytes, int rows, int cols,
                            const float *x, int n_tok, float *y, uint8_t *scratch, bool mma_only) {
    int ldx = dm_ldx(cols);
    unsigned short *xh = (unsigned short *)scratch;
    float *ts = (float *)(scratch + dm_half_bytes(n_tok, cols));
    cudaError_t e = bn_launch(k_dense_act_half<BF16>, (unsigned)n_tok, 256, 0, st, x, cols, ldx, xh, ts);
    if (e == cudaSuccess) e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    if (n_tok > 64 && !mma_only && bn_k_wgmma_usable())
        return dw_launch<BF16>(st, w, row_bytes, rows, cols, xh, ts, ldx, n_tok, y);
    if (n_tok <= 32) return dm_launch<BF16, 32>(st, w, row_bytes, rows, cols, xh, ts, ldx, n_tok, y);
    if (n_tok <= 64) return dm_launch<BF16, 64>(st, w, row_bytes, rows, cols, xh, ts, ldx, n_tok, y);
    return dm_launch<BF16, 128>(st, w, row_bytes, rows, cols, xh, ts, ldx, n_tok, y);
}

cudaError_t bn_k_dense_mma(cudaStream_t st, uint32_t type, const void *w, uint64_t row_bytes, int rows, int cols,
                           const float *x, int n_tok, float *y, void *scratch, int mma_only) {
    if (!bn_k_dense_mma_ok(type, w, row_bytes, rows, cols, n_tok) || !scratch || ((uintptr_t)scratch & 15))
        return cudaErrorInvalidValue;
    const uint8_t *p = (const uint8_t *)w;
    uint8_t *sc = (uint8_t *)scratch;
    return type == BN_GGML_BF16 ? dm_typed<true>(st, p, row_bytes, rows, cols, x, n_tok, y, sc, mma_only != 0)
                                : dm_typed<false>(st, p, row_bytes, rows, cols, x, n_tok, y, sc, mma_only != 0);
}
