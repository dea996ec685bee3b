/* What the two ternary GEMM kernels share (kernels_ternary_mma.cu: mma.sync,
 * any sm_80+ GPU; kernels_ternary_wgmma.cu: wgmma, sm_90a): the jobs of one
 * launch, the block -> job mapping, the stage copies and the output
 * expression. */
#ifndef BN_KERNELS_CUDA_TERNARY_GEMM_CUH
#define BN_KERNELS_CUDA_TERNARY_GEMM_CUH

#include "kernels/cuda/cuda_kernels.cuh"
#include "kernels/cuda/cuda_mma.cuh"

#define TM_MASK 0x03030303u
#define TM_AS 48 /* smem bytes per weight row of a stage (32 used; padding spreads banks) */

/* The matrices of one launch: job i owns the row tiles (grid x) from
 * first_block[i] on. Unused entries repeat job 0 with no blocks. */
struct tm_jobs {
    bn_tern_job job[BN_TERN_MAX_JOBS];
    int first_block[BN_TERN_MAX_JOBS + 1];
    int n;
};

/* Fills J for tiles of bm rows; returns the number of row tiles. */
static inline int tm_make_jobs(const bn_tern_job *jobs, int n_jobs, int bm, tm_jobs *J) {
    J->n = n_jobs;
    J->first_block[0] = 0;
    for (int i = 0; i < BN_TERN_MAX_JOBS; i++) {
        if (i < n_jobs) {
            J->job[i] = jobs[i];
            J->first_block[i + 1] = J->first_block[i] + (jobs[i].rows + bm - 1) / bm;
        } else {
            J->job[i] = jobs[0];
            J->first_block[i + 1] = J->first_block[i];
        }
    }
    return J->first_block[n_jobs];
}

/* The job of row tile b and its first tile. Constant indices only: a
 * run-time index would copy J to local memory. */
__device__ __forceinline__ bn_tern_job tm_job_of(const tm_jobs &J, int b, int *fb) {
    bn_tern_job j = J.job[0];
    *fb = 0;
    if (J.n > 1 && b >= J.first_block[1]) j = J.job[1], *fb = J.first_block[1];
    if (J.n > 2 && b >= J.first_block[2]) j = J.job[2], *fb = J.first_block[2];
    return j;
}

/* The cp.async copies one thread makes for a stage of a k-tile: A = BM rows
 * of 32 code bytes (two 16-byte chunks a row, at r * TM_AS in the stage),
 * B = BN tokens of 128 activation bytes (eight chunks; BOFF::at(t, p) says
 * where chunk p of token t goes: the kernels lay B out differently). Rows
 * and tokens past the ends are zero-filled from a clamped address. */
template <int BM, int BN, int T, typename BOFF>
struct tm_loader {
    static constexpr int A_CH = BM * 2, B_CH = BN * 8;                        /* chunks per stage */
    static constexpr int A_PER = (A_CH + T - 1) / T, B_PER = (B_CH + T - 1) / T; /* per thread */
    const uint8_t *asrc[A_PER];
    const int8_t *bsrc[B_PER];
    int aoff[A_PER], boff[B_PER];
    bool aval[A_PER], aon[A_PER], bval[B_PER], bon[B_PER];

    __device__ __forceinline__ tm_loader(const bn_tern_job &j, const int8_t *q, int cols, int row0, int tok0,
                                         int n_tok, int tid) {
        const size_t rb = (size_t)(cols / 4); /* code bytes per row */
#pragma unroll
        for (int i = 0; i < A_PER; i++) {
            int c = tid + i * T, r = c >> 1, p = c & 1;
            aon[i] = c < A_CH;
            aval[i] = aon[i] && row0 + r < j.rows;
            asrc[i] = j.codes + (size_t)(aval[i] ? row0 + r : 0) * rb + p * 16;
            aoff[i] = aon[i] ? r * TM_AS + p * 16 : 0;
        }
#pragma unroll
        for (int i = 0; i < B_PER; i++) {
            int c = tid + i * T, t = c >> 3, p = c & 7;
            bon[i] = c < B_CH;
            bval[i] = bon[i] && tok0 + t < n_tok;
            bsrc[i] = q + (size_t)(bval[i] ? tok0 + t : 0) * cols + p * 16;
            boff[i] = bon[i] ? BOFF::at(t, p) : 0;
        }
    }
    /* Starts the copies of k-tile kt into stage memory sa (A) and sb (B). */
    __device__ __forceinline__ void load(uint8_t *sa, uint8_t *sb, int kt) const {
#pragma unroll
        for (int i = 0; i < A_PER; i++)
            if (aon[i]) bn_cp_async16(sa + aoff[i], asrc[i] + (size_t)kt * 32, aval[i]);
#pragma unroll
        for (int i = 0; i < B_PER; i++)
            if (bon[i]) bn_cp_async16(sb + boff[i], bsrc[i] + (size_t)kt * 128, bval[i]);
    }
};

/* Must stay the same arithmetic as store_result (kernels_matmul.cu): the
 * tests compare the two bit for bit. */
__device__ __forceinline__ void tm_store(const bn_tern_job &j, int r, int t, int acc, const float *as,
                                         const int32_t *asum) {
    float v = (float)(acc - asum[t]) * j.scale[r] / as[t];
    float *y = j.y + (size_t)t * j.rows + r;
    *y = j.accumulate ? __fadd_rn(*y, v) : v;
}

#endif
