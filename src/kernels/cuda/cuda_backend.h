/* Internals of the CUDA backend shared by its C part (cuda_model.c, which
 * walks the model to upload its weights) and its CUDA part (*.cu). Not public.
 *
 * Weights on the GPU. Each host descriptor's `dev` field points to:
 *   bn_ternary.dev -> bn_cuda_ternary (host struct): the 2-bit codes in the
 *                     engine's own layout (kernels/tensors.h, unchanged: a
 *                     16-byte load gives 64 weights, 4 runs of 16, ready for
 *                     dp4a and for the int8 mma fragments) and one f32 scale
 *                     per row (a uniform scale is expanded);
 *   bn_dense.dev   -> bn_cuda_dense (host struct): F32, F16 or BF16 rows as in
 *                     the file; other types (Q8_0, Q4_0, Q6_K) are decoded on
 *                     the host at upload and stored as F16 (documented loss:
 *                     < 2^-11 relative per element);
 *   bn_vec.dev     -> the n floats on the device.
 * A model's weights are uploaded once per GPU and shared by every CUDA
 * backend (context) of that model; the last backend destroyed frees them and
 * clears the `dev` fields. One GPU per model at a time. */
#ifndef BN_KERNELS_CUDA_CUDA_BACKEND_H
#define BN_KERNELS_CUDA_CUDA_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

struct bitnet_model;

typedef struct bn_cuda_ternary {
    const uint8_t *codes; /* device: rows * cols/4 bytes */
    const float *scale;   /* device: rows floats */
} bn_cuda_ternary;

typedef struct bn_cuda_dense {
    uint32_t type;        /* BN_GGML_F32, _F16 or _BF16 */
    const void *data;     /* device: rows * row_bytes bytes */
    uint64_t row_bytes;
} bn_cuda_dense;

/* Registers backend `be` as a user of model m's GPU weights. *fresh = 1 when
 * they are not on the GPU yet (the caller uploads them, into storage owned by
 * the shared entry). BITNET_E_UNSUPPORTED when m is on another GPU. */
bitnet_status bn_cuda_weights_acquire(bn_backend *be, struct bitnet_model *m, int *fresh, bitnet_error *err);
/* Drops be's reference; the last one frees the weights and clears m's `dev`
 * fields. Called by the backend's destroy; a no-op when be holds none. */
void bn_cuda_weights_release(bn_backend *be);

/* Uploads one tensor and sets its `dev` field. Storage belongs to the model's
 * shared entry while acquired, else to the backend itself (tests). */
bitnet_status bn_cuda_upload_ternary(bn_backend *be, bn_ternary *w, bitnet_error *err);
bitnet_status bn_cuda_upload_vec(bn_backend *be, bn_vec *v, bitnet_error *err);
/* type must be F32, F16 or BF16; data holds rows * row_bytes bytes. */
bitnet_status bn_cuda_upload_dense_raw(bn_backend *be, uint32_t type, const void *data, int64_t rows,
                                       uint64_t row_bytes, void **dev, bitnet_error *err);

/* Sizes the attention work space for n_head heads of head_dim (also grown on
 * demand by prefill; never during a decode step). */
bitnet_status bn_cuda_reserve(bn_backend *be, int n_head, int head_dim, bitnet_error *err);

/* Copies n host bytes to backend memory from alloc, in stream order (tests
 * and benchmarks: the ops table has no host-to-device copy). */
bitnet_status bn_cuda_copy_to_device(bn_backend *be, void *dst, const void *src, size_t n, bitnet_error *err);

/* How many one-token steps (chunks of up to 40 layers) this backend has run
 * as the persistent layers kernel (kernels_decode_layers.cu): tests and
 * benchmarks tell which path ran. Runs a pending recorded step first. */
long bn_cuda_layers_runs(bn_backend *be);
/* Host-side check of that kernel's work plan for a shape on n_sm blocks
 * (needs no GPU): every weight row read once by one block, from where its
 * bulk copy lands, 16-byte aligned; the activation permutation; the
 * attention splits at every position below n_ctx. 1 when sound, else 0 with
 * the first problem in msg. *smem_bytes: the block's shared memory. */
int bn_cuda_layers_check_plan(int n_embd, int n_head, int n_kv, int head_dim, int n_ff, int n_ctx, int n_sm,
                              unsigned *smem_bytes, char *msg, size_t msg_len);

/* Kernel entry points for tests and benchmarks (kernels_ternary_mma.cu,
 * kernels_dense_mma.cu). Device pointers; the device is synchronized before
 * (so that copies made on a backend's stream have landed) and after. Runs
 * once, then, when reps > 0, reps more times between two events on the
 * default stream and stores the mean ms of one run in *ms. Returns a
 * cudaError_t value (0: success).
 * Ternary variant: 0 = the backend's kernel (bn_k_ternary: GEMV up to 8
 * tokens, else the GEMM with the tile chosen by shape, all n_mat matrices
 * in one launch); 1 = the previous GEMM (128x64 tiles, one launch per
 * matrix); 2..(1 + bn_cuda_kernel_ternary_tiles()) = the new GEMM with tile
 * 1.. forced: 128x64, 64x64, 128x32, 64x32 (rows x tokens), the same four
 * with 2 k-groups of warps, then 128x32, 64x64, 64x32 with 4 k-groups
 * (kernels_ternary_mma.cu), then the wgmma tiles 128x128, 128x64, 64x128,
 * 64x64, 64x32, 64x32/k2, 64x32/k4, 64x64/k2, 128x32, 128x32/k2, 128x64/k2,
 * 64x32/s8, 64x32/k2/s6, 64x64/s6 (kernels_ternary_wgmma.cu, /kN: N
 * k-groups of warpgroups, /sN: N pipeline stages; tile 1 again
 * where the GPU cannot run them). n_mat <= 3 matrices of `cols` inputs share a.
 * Dense variant: 0 = as the backend (the tensor-core GEMM when
 * n_tok >= 8 and the type and shape allow, else the GEMV); 1 = the GEMV;
 * 2 = the GEMM (fails when not applicable; wgmma for more than 64 tokens
 * where usable); 3 = the mma.sync GEMM only. scratch: the GEMM's f16
 * activations, bn_cuda_kernel_dense_scratch bytes. */
int bn_cuda_kernel_ternary(int variant, int n_mat, const bn_cuda_ternary *const *w, const int *rows, float *const *y,
                           int cols, const bn_qact *a, int n_tok, int reps, float *ms);
int bn_cuda_kernel_dense(int variant, uint32_t type, const void *w, uint64_t row_bytes, int rows, int cols,
                         const float *x, int n_tok, float *y, void *scratch, size_t scratch_bytes, int reps,
                         float *ms);
size_t bn_cuda_kernel_dense_scratch(int n_tok, int cols);
/* The tile (1.. as above) bn_k_ternary's GEMM picks for these shapes (a
 * forced one included). */
int bn_cuda_kernel_ternary_tile(int n_mat, const int *rows, int cols, int n_tok);
/* Forces tiles[k] (1.., 0 = the rule) for each kind of GEMM launch: k = 0
 * q/k/v (three matrices), 1 gate/up (two), 2 one matrix with cols <= rows,
 * 3 one with more; NULL clears. BITNET_CUDA_TILES=a,b,c,d does the same
 * from the environment (BITNET_CUDA_TILE=N, one tile for all, wins).
 * Benchmarks only: not thread-safe. */
void bn_cuda_kernel_force_tiles(const int *tiles);
/* The number of GEMM tiles (variants 2..1 + this). */
int bn_cuda_kernel_ternary_tiles(void);
/* 1 when the wgmma tiles run (an sm_90a image on a 9.0 GPU, backend made). */
int bn_cuda_kernel_wgmma_usable(void);

/* cuda_model.c: uploads every weight of m (prepare_model of the ops table). */
bitnet_status bn_cuda_prepare_model(bn_backend *be, struct bitnet_model *m, bitnet_error *err);
/* Uploads one dense tensor, converting types the kernels do not read to F16. */
bitnet_status bn_cuda_upload_dense(bn_backend *be, bn_dense *w, bitnet_error *err);
/* Sets every `dev` field of m to NULL. */
void bn_cuda_model_clear(struct bitnet_model *m);

#ifdef __cplusplus
}
#endif
#endif
