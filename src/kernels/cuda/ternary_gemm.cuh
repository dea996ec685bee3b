/* What the two ternary GEMM kernels share (kernels_ternary_mma.cu: mma.sync,
 * any sm_80+ GPU; kernels_ternary_wgmma.cu: wgmma, sm_90a): the jobs of one
 * launch, the block -> job mapping and the output expression. */
#ifndef BN_KERNELS_CUDA_TERNARY_GEMM_CUH
#define BN_KERNELS_CUDA_TERNARY_GEMM_CUH

#include "kernels/cuda/cuda_kernels.cuh"

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

/* Must stay the same arithmetic as store_result (kernels_matmul.cu): the
 * tests compare the two bit for bit. */
__device__ __forceinline__ void tm_store(const bn_tern_job &j, int r, int t, int acc, const float *as,
                                         const int32_t *asum) {
    float v = (float)(acc - asum[t]) * j.scale[r] / as[t];
    float *y = j.y + (size_t)t * j.rows + r;
    *y = j.accumulate ? __fadd_rn(*y, v) : v;
}

#endif
