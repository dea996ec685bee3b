/* Matrix products: ternary × int8 (GEMV for decode, int8 tensor-core GEMM for
 * prompts and batches) and the dense output head.
 *
 * Ternary weights stay in the engine's layout (kernels/tensors.h): per row,
 * 128-weight blocks of 32 bytes where byte b holds weights b, 32+b, 64+b and
 * 96+b at shifts 6, 4, 2, 0. So a 32-bit word of codes shifted right by
 * 6-2r and masked with 0x03030303 holds four consecutive codes (of run r)
 * as bytes: the operand of dp4a, and exactly one int8 A-fragment register of
 * mma.m16n8k32 — weights are "expanded to int8" by one shift and one AND.
 * Codes c = w + 1 are multiplied with the int8 activations q and the result
 * corrected with the activation sum: Σ w·q = Σ c·q − Σ q (int32, exact), then
 * y = acc · scale_row / scale_act, computed as the CPU does.
 * Decode steps use k_tern_gemv_pro: the same GEMV with the activation side
 * (GLU, RMSNorm, quantization) recomputed per block from the float row. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.cuh"

extern "C" {
#include "format/ggml_types.h"
}

#define CODE_MASK 0x03030303u

__device__ __forceinline__ void store_result(const bn_tern_job &j, int r, int t, int acc, const float *as,
                                             const int32_t *asum) {
    float v = (float)(acc - asum[t]) * j.scale[r] / as[t];
    float *y = j.y + (size_t)t * j.rows + r;
    *y = j.accumulate ? __fadd_rn(*y, v) : v;
}

/* ----------------------------------------------------------------- GEMV -- */

struct tern_jobs {
    bn_tern_job job[BN_TERN_MAX_JOBS];
    int first_block[BN_TERN_MAX_JOBS + 1];
    int n;
};

#define GEMV_WARPS 4
#define GEMV_ROWS 2 /* rows per warp */

/* One warp computes GEMV_ROWS rows for NT tokens; its lanes stride over the
 * rows' 16-byte chunks, so each weight byte is read once, with 16-byte
 * streaming loads, and each activation chunk is loaded once per warp for all
 * of its rows. */
template <int NT>
__global__ void __launch_bounds__(GEMV_WARPS * 32)
    k_tern_gemv(tern_jobs J, int cols, const int8_t *__restrict__ q, const float *__restrict__ as,
                const int32_t *__restrict__ asum) {
    pdl_wait();
    pdl_launch();
    /* Constant indices only: a run-time index would copy J to local memory. */
    int b = blockIdx.x, fb = 0;
    bn_tern_job j = J.job[0];
    if (J.n > 1 && b >= J.first_block[1]) j = J.job[1], fb = J.first_block[1];
    if (J.n > 2 && b >= J.first_block[2]) j = J.job[2], fb = J.first_block[2];
    int row0 = ((b - fb) * GEMV_WARPS + (int)(threadIdx.x >> 5)) * GEMV_ROWS;
    if (row0 >= j.rows) return;
    int lane = threadIdx.x & 31, nch = cols >> 6;
    const uint4 *wp[GEMV_ROWS];
#pragma unroll
    for (int r = 0; r < GEMV_ROWS; r++)
        wp[r] = (const uint4 *)(j.codes + (size_t)min(row0 + r, j.rows - 1) * (size_t)(cols >> 2));
    int acc[GEMV_ROWS][NT];
#pragma unroll
    for (int r = 0; r < GEMV_ROWS; r++)
#pragma unroll
        for (int t = 0; t < NT; t++) acc[r][t] = 0;
#pragma unroll 2
    for (int c = lane; c < nch; c += 32) {
        uint4 w[GEMV_ROWS];
#pragma unroll
        for (int r = 0; r < GEMV_ROWS; r++) w[r] = __ldcs(wp[r] + c);
        const int8_t *qb = q + (c >> 1) * 128 + (c & 1) * 16;
#pragma unroll
        for (int t = 0; t < NT; t++) {
            const int8_t *qt = qb + (size_t)t * cols;
            int4 a0 = __ldg((const int4 *)qt), a1 = __ldg((const int4 *)(qt + 32));
            int4 a2 = __ldg((const int4 *)(qt + 64)), a3 = __ldg((const int4 *)(qt + 96));
#pragma unroll
            for (int r = 0; r < GEMV_ROWS; r++) acc[r][t] = dot64(w[r], a0, a1, a2, a3, acc[r][t]);
        }
    }
#pragma unroll
    for (int r = 0; r < GEMV_ROWS; r++)
#pragma unroll
        for (int t = 0; t < NT; t++) {
            int v = acc[r][t];
            for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
            if (lane == r * NT + t && row0 + r < j.rows) store_result(j, row0 + r, t, v, as, asum);
        }
}

template <int NT>
static void launch_gemv(cudaStream_t st, const tern_jobs &J, int cols, const bn_qact *a) {
    bn_launch(k_tern_gemv<NT>, J.first_block[J.n], GEMV_WARPS * 32, 0, st, J, cols, a->q, a->scale, a->sum);
}

/* ------------------------------------- fused one-token GEMV (decode) -- */

#define PRO_WARPS 8
#define PRO_UNROLL 8 /* prologue elements per thread loaded together */

/* The prologue (see bn_prologue): the row is staged in shared memory as
 * floats (srow), then quantized into sq; every thread gets the scale s and
 * the sum of the quantized row. Same arithmetic as k_row_fused. */
__device__ void act_prologue(const bn_prologue &P, int cols, float *srow, int8_t *sq, float &s_out, int &sum_out) {
    __shared__ double shd[32];
    __shared__ float shf[32];
    __shared__ int shi[32];
    const bool first = blockIdx.x == 0;
    const int tid = threadIdx.x, nt = blockDim.x;
    /* Loads in batches of PRO_UNROLL per thread, so that they are in flight
     * together (the row comes from L2; the loop is latency-bound). */
    double ss = 0.0;
    for (int base = 0; base < cols; base += PRO_UNROLL * nt) {
        float v[PRO_UNROLL], u[PRO_UNROLL];
#pragma unroll
        for (int k = 0; k < PRO_UNROLL; k++) {
            int i = base + k * nt + tid;
            v[k] = i < cols ? P.x[i] : 0.0f;
            u[k] = P.u && i < cols ? P.u[i] : 0.0f;
        }
#pragma unroll
        for (int k = 0; k < PRO_UNROLL; k++) {
            int i = base + k * nt + tid;
            if (i < cols) {
                float x = P.u ? glu_one(v[k], u[k], P.relu2) : v[k];
                srow[i] = x;
                ss += (double)x * (double)x;
            }
        }
    }
    float r = 1.0f;
    if (P.w) {
        ss = block_reduce(ss, op_sum(), shd);
        r = (float)(1.0 / sqrt(ss / cols + (double)P.eps));
    }
    float amax = 0.0f;
    for (int base = 0; base < cols; base += PRO_UNROLL * nt) {
        float wv[PRO_UNROLL];
#pragma unroll
        for (int k = 0; k < PRO_UNROLL; k++) {
            int i = base + k * nt + tid;
            wv[k] = P.w && i < cols ? P.w[i] : 1.0f;
        }
#pragma unroll
        for (int k = 0; k < PRO_UNROLL; k++) {
            int i = base + k * nt + tid;
            if (i < cols) {
                float x = srow[i];
                if (P.w) {
                    x = __fmul_rn(__fmul_rn(x, r), wv[k]);
                    srow[i] = x;
                }
                if (first && P.out) P.out[i] = x;
                amax = fmaxf(amax, fabsf(x));
            }
        }
    }
    amax = block_reduce(amax, op_max(), shf);
    float s = 127.0f / fmaxf(amax, 1e-5f);
    int sum = 0;
    for (int i = tid; i < cols; i += nt) {
        int q = quant_one(srow[i], s);
        sq[i] = (int8_t)q;
        if (first) P.qa.q[i] = (int8_t)q;
        sum += q;
    }
    sum = block_reduce(sum, op_sum(), shi);
    if (first && tid == 0) P.qa.scale[0] = s, P.qa.sum[0] = sum;
    __syncthreads(); /* sq complete */
    s_out = s;
    sum_out = sum;
}

/* Block of PRO_WARPS warps, ROWS rows per warp, one token. Each lane loads
 * its CPL 16-byte chunks of each of its rows' codes into registers before
 * waiting for the previous kernel (weights do not depend on it: with
 * programmatic launch the weight stream overlaps the previous kernel), then
 * computes the activations (prologue) and the dot products from shared
 * memory. ROWS is 8 for rows of up to 4096 inputs (CPL <= 2; two blocks
 * per SM, so that the 2B4T gate/up matmul is one wave) and 4 above. */
template <int CPL, int ROWS>
__global__ void __launch_bounds__(PRO_WARPS * 32, 2) k_tern_gemv_pro(tern_jobs J, int cols, bn_prologue P) {
    extern __shared__ __align__(16) unsigned char pro_smem[];
    int b = blockIdx.x, fb = 0;
    bn_tern_job j = J.job[0];
    if (J.n > 1 && b >= J.first_block[1]) j = J.job[1], fb = J.first_block[1];
    if (J.n > 2 && b >= J.first_block[2]) j = J.job[2], fb = J.first_block[2];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nch = cols >> 6;
    int row0 = ((b - fb) * PRO_WARPS + warp) * ROWS;
    uint4 w[CPL][ROWS];
#pragma unroll
    for (int r = 0; r < ROWS; r++) {
        const uint4 *wp = (const uint4 *)(j.codes + (size_t)min(row0 + r, j.rows - 1) * (size_t)(cols >> 2));
#pragma unroll
        for (int k = 0; k < CPL; k++) {
            int c = lane + 32 * k;
            w[k][r] = c < nch ? __ldcs(wp + c) : make_uint4(0u, 0u, 0u, 0u);
        }
    }
    pdl_wait();
    pdl_launch();
    float *srow = (float *)pro_smem;
    int8_t *sq = (int8_t *)(pro_smem + (size_t)cols * sizeof(float));
    float s;
    int sum;
    act_prologue(P, cols, srow, sq, s, sum);
    int acc[ROWS];
#pragma unroll
    for (int r = 0; r < ROWS; r++) acc[r] = 0;
#pragma unroll
    for (int k = 0; k < CPL; k++) {
        int c = lane + 32 * k;
        if (c < nch) {
            const int8_t *qb = sq + (c >> 1) * 128 + (c & 1) * 16;
            int4 a0 = *(const int4 *)qb, a1 = *(const int4 *)(qb + 32);
            int4 a2 = *(const int4 *)(qb + 64), a3 = *(const int4 *)(qb + 96);
#pragma unroll
            for (int r = 0; r < ROWS; r++) acc[r] = dot64(w[k][r], a0, a1, a2, a3, acc[r]);
        }
    }
#pragma unroll
    for (int r = 0; r < ROWS; r++) {
        int v = acc[r];
        for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == r && row0 + r < j.rows) {
            float res = (float)(v - sum) * j.scale[row0 + r] / s;
            float *y = j.y + row0 + r;
            *y = j.accumulate ? __fadd_rn(*y, res) : res;
        }
    }
}

template <int CPL, int ROWS>
static cudaError_t launch_pro(cudaStream_t st, const bn_tern_job *jobs, int n_jobs, int cols, const bn_prologue *p) {
    const int block_rows = PRO_WARPS * ROWS;
    tern_jobs J;
    J.n = n_jobs;
    J.first_block[0] = 0;
    for (int i = 0; i < n_jobs; i++) {
        J.job[i] = jobs[i];
        J.first_block[i + 1] = J.first_block[i] + (jobs[i].rows + block_rows - 1) / block_rows;
    }
    size_t smem = (size_t)cols * (sizeof(float) + 1);
    cudaError_t e = bn_launch(k_tern_gemv_pro<CPL, ROWS>, (unsigned)J.first_block[n_jobs], PRO_WARPS * 32, smem, st,
                              J, cols, *p);
    return e != cudaSuccess ? e : cudaGetLastError();
}

cudaError_t bn_k_ternary_pro(cudaStream_t st, const bn_tern_job *jobs, int n_jobs, int cols, const bn_prologue *p) {
    if (n_jobs < 1 || n_jobs > BN_TERN_MAX_JOBS || cols % 128 || cols <= 0 || cols > BN_PRO_MAX_COLS)
        return cudaErrorInvalidValue;
    int nch = cols >> 6;
    if (nch <= 32) return launch_pro<1, 8>(st, jobs, n_jobs, cols, p);
    if (nch <= 64) return launch_pro<2, 8>(st, jobs, n_jobs, cols, p);
    if (nch <= 96) return launch_pro<3, 4>(st, jobs, n_jobs, cols, p);
    return launch_pro<4, 4>(st, jobs, n_jobs, cols, p);
}

/* ------------------------------------------------- tensor-core GEMM ------ */

#define MM_BM 128 /* weight rows per block */
#define MM_BN 64  /* tokens per block */
#define MM_ST 3   /* pipeline stages */
#define MM_AS 48  /* smem bytes per weight row of a stage (32 used; padded against bank conflicts) */
#define MM_BS 144 /* smem bytes per token row of a stage (128 used) */

struct mm_smem {
    uint8_t a[MM_ST][MM_BM * MM_AS];
    uint8_t b[MM_ST][MM_BN * MM_BS];
};

__device__ __forceinline__ void cp_async16(void *smem, const void *gmem, bool valid) {
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    int n = valid ? 16 : 0; /* 0: fill with zeros */
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

__device__ __forceinline__ void mma_s8(int (&c)[4], unsigned a0, unsigned a1, unsigned a2, unsigned a3, unsigned b0,
                                       unsigned b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/* One k-tile (128 inputs = one block of codes) of a warp's 32x32 tile:
 * 4 k-steps of 32, each 2 (rows) x 4 (tokens) mma.m16n8k32. */
__device__ __forceinline__ void mm_tile(const uint8_t *A, const uint8_t *B, int wm, int wn, int g, int tg,
                                        int (&acc)[2][4][4]) {
    unsigned aw[2][4];
#pragma unroll
    for (int mt = 0; mt < 2; mt++) {
        const uint8_t *p = A + (wm * 32 + mt * 16 + g) * MM_AS + tg * 4;
        aw[mt][0] = *(const unsigned *)p;
        aw[mt][1] = *(const unsigned *)(p + 8 * MM_AS);
        aw[mt][2] = *(const unsigned *)(p + 16);
        aw[mt][3] = *(const unsigned *)(p + 8 * MM_AS + 16);
    }
#pragma unroll
    for (int ks = 0; ks < 4; ks++) {
        const int sh = 6 - 2 * ks;
        unsigned bf[4][2];
#pragma unroll
        for (int nt = 0; nt < 4; nt++) {
            const uint8_t *p = B + (wn * 32 + nt * 8 + g) * MM_BS + ks * 32 + tg * 4;
            bf[nt][0] = *(const unsigned *)p;
            bf[nt][1] = *(const unsigned *)(p + 16);
        }
#pragma unroll
        for (int mt = 0; mt < 2; mt++) {
            unsigned a0 = (aw[mt][0] >> sh) & CODE_MASK, a1 = (aw[mt][1] >> sh) & CODE_MASK;
            unsigned a2 = (aw[mt][2] >> sh) & CODE_MASK, a3 = (aw[mt][3] >> sh) & CODE_MASK;
#pragma unroll
            for (int nt = 0; nt < 4; nt++) mma_s8(acc[mt][nt], a0, a1, a2, a3, bf[nt][0], bf[nt][1]);
        }
    }
}

/* Block: 128 rows x 64 tokens, 8 warps as 4 (rows) x 2 (tokens), each 32x32.
 * Codes and activations stream through a 3-stage cp.async pipeline; rows and
 * tokens past the end are zero-filled and their results dropped. */
__global__ void __launch_bounds__(256) k_tern_mma(bn_tern_job j, int cols, const int8_t *__restrict__ q,
                                                  const float *__restrict__ as, const int32_t *__restrict__ asum,
                                                  int n_tok) {
    pdl_wait();
    pdl_launch();
    __shared__ __align__(16) mm_smem sm;
    int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    int wm = warp & 3, wn = warp >> 2, g = lane >> 2, tg = lane & 3;
    int row0 = blockIdx.x * MM_BM, tok0 = blockIdx.y * MM_BN, nk = cols / 128;
    int ar = tid >> 1, ap = tid & 1, bt = tid >> 3, bp = tid & 7;
    bool av = row0 + ar < j.rows, bv0 = tok0 + bt < n_tok, bv1 = tok0 + bt + 32 < n_tok;
    const uint8_t *asrc = j.codes + (size_t)(av ? row0 + ar : 0) * (size_t)(cols / 4) + ap * 16;
    const int8_t *bsrc0 = q + (size_t)(bv0 ? tok0 + bt : 0) * cols + bp * 16;
    const int8_t *bsrc1 = q + (size_t)(bv1 ? tok0 + bt + 32 : 0) * cols + bp * 16;
    auto load = [&](int s, int kt) {
        cp_async16(&sm.a[s][ar * MM_AS + ap * 16], asrc + kt * 32, av);
        cp_async16(&sm.b[s][bt * MM_BS + bp * 16], bsrc0 + kt * 128, bv0);
        cp_async16(&sm.b[s][(bt + 32) * MM_BS + bp * 16], bsrc1 + kt * 128, bv1);
    };
    int acc[2][4][4];
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int nt = 0; nt < 4; nt++)
#pragma unroll
            for (int i = 0; i < 4; i++) acc[mt][nt][i] = 0;
#pragma unroll
    for (int s = 0; s < MM_ST - 1; s++) {
        if (s < nk) load(s, s);
        cp_async_commit();
    }
    for (int kt = 0; kt < nk; kt++) {
        cp_async_wait<MM_ST - 2>();
        __syncthreads();
        int nx = kt + MM_ST - 1;
        if (nx < nk) load(nx % MM_ST, nx);
        cp_async_commit();
        mm_tile(sm.a[kt % MM_ST], sm.b[kt % MM_ST], wm, wn, g, tg, acc);
    }
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int nt = 0; nt < 4; nt++) {
            int r = row0 + wm * 32 + mt * 16 + g, t = tok0 + wn * 32 + nt * 8 + tg * 2;
#pragma unroll
            for (int i = 0; i < 4; i++) {
                int rr = r + (i >> 1) * 8, tt = t + (i & 1);
                if (rr < j.rows && tt < n_tok) store_result(j, rr, tt, acc[mt][nt][i], as, asum);
            }
        }
}

cudaError_t bn_k_ternary_mma_v1(cudaStream_t st, const bn_tern_job *jobs, int n_jobs, int cols, const bn_qact *a,
                                int n_tok) {
    if (n_jobs < 1 || n_jobs > BN_TERN_MAX_JOBS || cols % 128 || n_tok < 1) return cudaErrorInvalidValue;
    for (int i = 0; i < n_jobs; i++) {
        dim3 grid((jobs[i].rows + MM_BM - 1) / MM_BM, (n_tok + MM_BN - 1) / MM_BN);
        bn_launch(k_tern_mma, grid, 256, 0, st, jobs[i], cols, a->q, a->scale, a->sum, n_tok);
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
}

/* Up to this many tokens the GEMV (weights read once, dp4a) is used; above,
 * the tensor-core GEMM. */
#define GEMV_MAX_TOK 8

cudaError_t bn_k_ternary(cudaStream_t st, const bn_tern_job *jobs, int n_jobs, int cols, const bn_qact *a,
                         int n_tok) {
    if (n_jobs < 1 || n_jobs > BN_TERN_MAX_JOBS || cols % 128) return cudaErrorInvalidValue;
    if (n_tok > GEMV_MAX_TOK) return bn_k_ternary_mma(st, jobs, n_jobs, cols, a, n_tok, 0);
    tern_jobs J;
    J.n = n_jobs;
    J.first_block[0] = 0;
    for (int i = 0; i < n_jobs; i++) {
        J.job[i] = jobs[i];
        J.first_block[i + 1] = J.first_block[i] + (jobs[i].rows + GEMV_WARPS * GEMV_ROWS - 1) / (GEMV_WARPS * GEMV_ROWS);
    }
    switch (n_tok) {
    case 1: launch_gemv<1>(st, J, cols, a); break;
    case 2: launch_gemv<2>(st, J, cols, a); break;
    case 3: launch_gemv<3>(st, J, cols, a); break;
    case 4: launch_gemv<4>(st, J, cols, a); break;
    case 5: launch_gemv<5>(st, J, cols, a); break;
    case 6: launch_gemv<6>(st, J, cols, a); break;
    case 7: launch_gemv<7>(st, J, cols, a); break;
    default: launch_gemv<8>(st, J, cols, a); break;
    }
    return cudaGetLastError();
}

/* ------------------------------------------------------ dense head GEMV -- */

#define DENSE_WARPS 8
#define DENSE_ROWS 2
#define DENSE_NT 4 /* tokens per pass; more tokens take several passes */

/* 8 consecutive elements of a row as floats (16 bytes of F16/BF16, 32 of F32). */
template <int TYPE>
__device__ __forceinline__ void load8(const uint8_t *row, int c, float (&f)[8]) {
    if (TYPE == BN_GGML_F32) {
        float4 u = __ldcs((const float4 *)row + 2 * c), v = __ldcs((const float4 *)row + 2 * c + 1);
        f[0] = u.x, f[1] = u.y, f[2] = u.z, f[3] = u.w, f[4] = v.x, f[5] = v.y, f[6] = v.z, f[7] = v.w;
    } else {
        uint4 u = __ldcs((const uint4 *)row + c);
        const unsigned w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            if (TYPE == BN_GGML_F16) {
                float2 p = __half22float2(*(const __half2 *)&w[i]);
                f[2 * i] = p.x, f[2 * i + 1] = p.y;
            } else {
                f[2 * i] = __uint_as_float(w[i] << 16), f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
            }
        }
    }
}

/* One warp computes DENSE_ROWS rows for up to DENSE_NT tokens; lanes stride
 * over 8-element chunks (cols % 8 == 0 and 16-byte aligned rows). */
template <int TYPE, int NT>
__global__ void __launch_bounds__(DENSE_WARPS * 32)
    k_dense_gemv(const uint8_t *w, uint64_t row_bytes, int rows, int cols, const float *__restrict__ x, float *y) {
    pdl_wait();
    pdl_launch();
    int row0 = (blockIdx.x * DENSE_WARPS + (int)(threadIdx.x >> 5)) * DENSE_ROWS;
    if (row0 >= rows) return;
    int lane = threadIdx.x & 31, nch = cols >> 3;
    float acc[DENSE_ROWS][NT];
#pragma unroll
    for (int r = 0; r < DENSE_ROWS; r++)
#pragma unroll
        for (int t = 0; t < NT; t++) acc[r][t] = 0.0f;
#pragma unroll 2
    for (int c = lane; c < nch; c += 32) {
        float wf[DENSE_ROWS][8];
#pragma unroll
        for (int r = 0; r < DENSE_ROWS; r++) load8<TYPE>(w + (uint64_t)min(row0 + r, rows - 1) * row_bytes, c, wf[r]);
#pragma unroll
        for (int t = 0; t < NT; t++) {
            const float4 *xp = (const float4 *)(x + (size_t)t * cols) + 2 * c;
            float4 u = __ldg(xp), v = __ldg(xp + 1);
            const float xf[8] = {u.x, u.y, u.z, u.w, v.x, v.y, v.z, v.w};
#pragma unroll
            for (int r = 0; r < DENSE_ROWS; r++)
#pragma unroll
                for (int i = 0; i < 8; i++) acc[r][t] = fmaf(wf[r][i], xf[i], acc[r][t]);
        }
    }
#pragma unroll
    for (int r = 0; r < DENSE_ROWS; r++)
#pragma unroll
        for (int t = 0; t < NT; t++) {
            float v = acc[r][t];
            for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
            if (lane == r * NT + t && row0 + r < rows) y[(size_t)t * rows + row0 + r] = v;
        }
}

/* Any shape: one warp per (row, token), lanes stride over elements. */
template <int TYPE>
__global__ void k_dense_generic(const uint8_t *w, uint64_t row_bytes, int rows, int cols, const float *x, int n_tok,
                                float *y) {
    pdl_wait();
    pdl_launch();
    int wid = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (wid >= rows * n_tok) return;
    int r = wid % rows, t = wid / rows;
    const uint8_t *row = w + (uint64_t)r * row_bytes;
    float acc = 0.0f;
    for (int i = lane; i < cols; i += 32) {
        float e = TYPE == BN_GGML_F32 ? ((const float *)row)[i]
                  : TYPE == BN_GGML_F16 ? __half2float(((const __half *)row)[i])
                                        : __bfloat162float(((const __nv_bfloat16 *)row)[i]);
        acc = fmaf(e, x[(size_t)t * cols + i], acc);
    }
    for (int o = 16; o; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (lane == 0) y[(size_t)t * rows + r] = acc;
}

template <int TYPE>
static cudaError_t dense_typed(cudaStream_t st, const uint8_t *w, uint64_t row_bytes, int rows, int cols,
                               const float *x, int n_tok, float *y) {
    bool vec = cols % 8 == 0 && row_bytes % 16 == 0 && ((uintptr_t)w & 15) == 0 && ((uintptr_t)x & 15) == 0;
    if (!vec) {
        int64_t warps = (int64_t)rows * n_tok;
        bn_launch(k_dense_generic<TYPE>, (unsigned)((warps + 7) / 8), 256, 0, st, w, row_bytes, rows, cols, x, n_tok, y);
        return cudaGetLastError();
    }
    unsigned blocks = (unsigned)((rows + DENSE_WARPS * DENSE_ROWS - 1) / (DENSE_WARPS * DENSE_ROWS));
    for (int t0 = 0; t0 < n_tok; t0 += DENSE_NT) {
        int nt = n_tok - t0 < DENSE_NT ? n_tok - t0 : DENSE_NT;
        const float *xt = x + (size_t)t0 * cols;
        float *yt = y + (size_t)t0 * rows;
        switch (nt) {
        case 1: bn_launch(k_dense_gemv<TYPE, 1>, blocks, DENSE_WARPS * 32, 0, st, w, row_bytes, rows, cols, xt, yt); break;
        case 2: bn_launch(k_dense_gemv<TYPE, 2>, blocks, DENSE_WARPS * 32, 0, st, w, row_bytes, rows, cols, xt, yt); break;
        case 3: bn_launch(k_dense_gemv<TYPE, 3>, blocks, DENSE_WARPS * 32, 0, st, w, row_bytes, rows, cols, xt, yt); break;
        default: bn_launch(k_dense_gemv<TYPE, 4>, blocks, DENSE_WARPS * 32, 0, st, w, row_bytes, rows, cols, xt, yt); break;
        }
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
}

cudaError_t bn_k_dense(cudaStream_t st, uint32_t type, const void *w, uint64_t row_bytes, int rows, int cols,
                       const float *x, int n_tok, float *y, void *scratch, size_t scratch_bytes) {
    if (scratch && bn_k_dense_mma_ok(type, w, row_bytes, rows, cols, n_tok) &&
        scratch_bytes >= bn_k_dense_mma_scratch(n_tok, cols))
        return bn_k_dense_mma(st, type, w, row_bytes, rows, cols, x, n_tok, y, scratch, 0);
    return bn_k_dense_gemv(st, type, w, row_bytes, rows, cols, x, n_tok, y);
}

cudaError_t bn_k_dense_gemv(cudaStream_t st, uint32_t type, const void *w, uint64_t row_bytes, int rows, int cols,
                            const float *x, int n_tok, float *y) {
    const uint8_t *p = (const uint8_t *)w;
    switch (type) {
    case BN_GGML_F32: return dense_typed<BN_GGML_F32>(st, p, row_bytes, rows, cols, x, n_tok, y);
    case BN_GGML_F16: return dense_typed<BN_GGML_F16>(st, p, row_bytes, rows, cols, x, n_tok, y);
    case BN_GGML_BF16: return dense_typed<BN_GGML_BF16>(st, p, row_bytes, rows, cols, x, n_tok, y);
    default: return cudaErrorInvalidValue;
    }
}
