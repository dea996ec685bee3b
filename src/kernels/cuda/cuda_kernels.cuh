/* Launchers of the CUDA kernels (CUDA C++, internal to src/kernels/cuda).
 *
 * Every launcher enqueues on `st` and returns cudaGetLastError() of its
 * launch(es), so that the backend checks each one. Pointers are device
 * memory. Numerics follow the CPU reference (kernels/cpu/kernels_ref.c,
 * backend_cpu.c): the integer parts and the activation quantization are
 * bit-exact; float reductions differ only in summation order. */
#ifndef BN_KERNELS_CUDA_CUDA_KERNELS_CUH
#define BN_KERNELS_CUDA_CUDA_KERNELS_CUH

#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>

extern "C" {
#include "kernels/backend.h"
}

/* A position known on the host (eager launches) or, when ptr is not NULL,
 * read from device memory when the kernel runs (replayed CUDA graphs). */
struct bn_pos {
    int val;
    const int *ptr;
};

/* One ternary matrix of a (possibly fused) matmul: y[t*rows + r] (+)= ... */
struct bn_tern_job {
    const uint8_t *codes;
    const float *scale; /* rows floats */
    float *y;
    int rows;
    int accumulate;     /* 1: y += result (a fused residual add) */
};

#define BN_TERN_MAX_JOBS 3

/* The activation side of a fused one-token ternary GEMV: x [-> act(x)·u]
 * [-> RMSNorm with w] -> int8 quantization (the rules of bn_k_row_fused),
 * recomputed by every block of the GEMV into its shared memory, so that the
 * norm needs no launch of its own. Block 0 also writes the quantized row to
 * qa and, when out is not NULL, the float row (GLU'd, normed) to out; out
 * must not overlap x or u. */
struct bn_prologue {
    const float *x, *u, *w; /* u: GLU up operand or NULL; w: norm weight or NULL */
    float *out;
    bn_qact qa;
    float eps;
    int relu2;
};

#define BN_PRO_MAX_COLS 8192

cudaError_t bn_k_embed(cudaStream_t st, uint32_t type, const void *emb, uint64_t row_bytes, int cols,
                       const int32_t *tokens, int n_tok, float *x);
/* out = rmsnorm(x) * w; when qa is not NULL, also quantizes out into qa. */
cudaError_t bn_k_rmsnorm(cudaStream_t st, const float *x, const float *w, int n_tok, int dim, float eps, float *out,
                         const bn_qact *qa);
/* Per row: x = act(x)·u when u is not NULL (the GLU), then RMSNorm with w
 * when w is not NULL, written to out (may equal x), then quantized into qa
 * when qa is not NULL. */
cudaError_t bn_k_row_fused(cudaStream_t st, const float *x, const float *u, int act, const float *w, int n_tok,
                           int dim, float eps, float *out, const bn_qact *qa);
/* RoPE of q (n_head heads) and k (n_kv heads), and k, v stored into the f16
 * cache (K, V: [n_kv][n_ctx][head_dim]) at positions pos.. */
cudaError_t bn_k_rope_qk_store(cudaStream_t st, float *q, float *k, const float *v, int n_tok, int n_head, int n_kv,
                               int head_dim, bn_pos pos, float theta, int neox, void *K, void *V, int n_ctx);
cudaError_t bn_k_quantize(cudaStream_t st, const float *x, int n_tok, int dim, const bn_qact *qa);
/* n_jobs matrices of `cols` inputs sharing the activations a. */
/* n_tok <= 8: the dp4a GEMV; above, the int8 tensor-core GEMM with tiles
 * chosen by shape (kernels_ternary_mma.cu), every job in one launch. */
cudaError_t bn_k_ternary(cudaStream_t st, const bn_tern_job *jobs, int n_jobs, int cols, const bn_qact *a, int n_tok);
/* The GEMM: tile = 0 chooses by shape; 1..11 force an mma.sync tile
 * (kernels_ternary_mma.cu), 12..11 + TW_N a wgmma tile (kernels_ternary_
 * wgmma.cu; the first mma.sync tile where the GPU cannot run wgmma).
 * Bit-identical to every other tiling and to the GEMV (integer
 * accumulation, same epilogue). */
cudaError_t bn_k_ternary_mma(cudaStream_t st, const bn_tern_job *jobs, int n_jobs, int cols, const bn_qact *a,
                             int n_tok, int tile);
/* The wgmma GEMM (kernels_ternary_wgmma.cu). */
/* Its tiles (rows x tokens [/kN: N k-groups][/sN: N stages, else 4 or 3]):
 * 128x128, 128x64, 64x128, 64x64, 64x32, 64x32/k2, 64x32/k4, 64x64/k2, 128x32,
 * 128x32/k2, 128x64/k2, 64x32/s8, 64x32/k2/s6, 64x64/s6. */
#define TW_N 14
/* 1 when this process's GPU runs the wgmma kernels (built for sm_90a and
 * running on compute capability 9.0); checked once per device. */
int bn_k_wgmma_usable(void);
/* Finds out (a probe kernel: synchronizes; never call inside a stream
 * capture) and sets the kernels' shared-memory limit; per device, once.
 * BITNET_CUDA_WGMMA=0 answers no. */
void bn_k_wgmma_init(void);
/* Tile 1..TW_N; cudaErrorNotSupported when !bn_k_wgmma_usable(). */
cudaError_t bn_k_ternary_wgmma(cudaStream_t st, const bn_tern_job *jobs, int n_jobs, int cols, const bn_qact *a,
                               int n_tok, int tile);
/* The tile chosen for a step of n_tok tokens (1..TW_N; measured rule). */
int bn_k_wgmma_pick(int n_tok);
/* The previous GEMM (one launch per job, 128x64 tiles; tests, benchmarks). */
cudaError_t bn_k_ternary_mma_v1(cudaStream_t st, const bn_tern_job *jobs, int n_jobs, int cols, const bn_qact *a,
                                int n_tok);
/* One token: jobs sharing the activations that prologue p computes. The
 * results equal those of the unfused ops (same integer dot products, same
 * quantization rule). cols <= BN_PRO_MAX_COLS. */
cudaError_t bn_k_ternary_pro(cudaStream_t st, const bn_tern_job *jobs, int n_jobs, int cols, const bn_prologue *p);
/* The output head. With n_tok >= BN_DENSE_MMA_MIN_TOK, an F16/BF16 head
 * that bn_k_dense_mma_ok accepts and scratch of bn_k_dense_mma_scratch
 * bytes (16-byte aligned; stream-ordered use only), the tensor-core GEMM
 * (kernels_dense_mma.cu); otherwise the GEMV, 4 tokens per pass. */
cudaError_t bn_k_dense(cudaStream_t st, uint32_t type, const void *w, uint64_t row_bytes, int rows, int cols,
                       const float *x, int n_tok, float *y, void *scratch, size_t scratch_bytes);
/* The GEMV alone (the kernel bn_k_dense used before the GEMM; tests, benchmarks). */
cudaError_t bn_k_dense_gemv(cudaStream_t st, uint32_t type, const void *w, uint64_t row_bytes, int rows, int cols,
                            const float *x, int n_tok, float *y);
#define BN_DENSE_MMA_MIN_TOK 8
int bn_k_dense_mma_ok(uint32_t type, const void *w, uint64_t row_bytes, int rows, int cols, int n_tok);
size_t bn_k_dense_mma_scratch(int n_tok, int cols);
/* The GEMM: wgmma for more than 64 tokens where usable, unless mma_only;
 * else mma.sync. */
cudaError_t bn_k_dense_mma(cudaStream_t st, uint32_t type, const void *w, uint64_t row_bytes, int rows, int cols,
                           const float *x, int n_tok, float *y, void *scratch, int mma_only);
cudaError_t bn_k_rope(cudaStream_t st, float *x, int n_tok, int n_head, int head_dim, bn_pos pos, float theta,
                      int neox);
cudaError_t bn_k_glu(cudaStream_t st, float *g, const float *u, int64_t n, int act);
cudaError_t bn_k_add(cudaStream_t st, float *x, const float *y, int64_t n);
/* out[r] = argmax of row r of x ([n_rows x n_cols]), bn_argmax_ref's rule. */
cudaError_t bn_k_argmax(cudaStream_t st, const float *x, int n_rows, int n_cols, int32_t *out);

/* Attention over an f16 KV cache. Stores k, v at positions pos.. then, for
 * each token t, attends over positions 0..pos+t split into n_split chunks of
 * split_len (flash-decoding), combining the chunks. ws holds
 * n_tok * n_head * n_split * (head_dim + 2) floats. */
cudaError_t bn_k_attention(cudaStream_t st, const bn_kv_layer *kv, const bn_attn_shape *s, const float *q,
                           const float *k, const float *v, int n_tok, bn_pos pos, int n_split, int split_len,
                           float *ws, float *out);
/* The same without the store (k and v already in the cache). */
cudaError_t bn_k_attention_stored(cudaStream_t st, const bn_kv_layer *kv, const bn_attn_shape *s, const float *q,
                                  int n_tok, bn_pos pos, int n_split, int split_len, float *ws, float *out);
/* Decode attention of one token in one launch: RoPE of q and k at the
 * position, k and v stored into the f16 cache, attention over positions
 * 0..pos split across blocks, and the splits combined by the last block of
 * each head group to finish (counters: zeroed ints, left zeroed). q and k are
 * not rotated in place. len bounds the position + 1 (n_ctx when the position
 * is read from device memory). */
cudaError_t bn_k_attention_decode(cudaStream_t st, const bn_kv_layer *kv, const bn_attn_shape *s, const float *q,
                                  const float *k, const float *v, bn_pos pos, float theta, int neox, int len,
                                  float *ws, int *counters, float *out);
/* Floats of work space bn_k_attention_decode needs for len; counters it needs. */
size_t bn_k_attention_decode_ws(const bn_attn_shape *s, int len);
int bn_k_attention_decode_counters(const bn_attn_shape *s);
/* 1 when the attention kernels support this head size. */
int bn_k_attention_supported(int head_dim);

/* Multi-sequence batch steps (kernels_batch.cu): pos and seq are device
 * arrays of n_tok entries. RoPE of token t at position pos[t]. */
cudaError_t bn_k_rope_batch(cudaStream_t st, float *x, int n_tok, int n_head, int head_dim, const int32_t *pos,
                            float theta, int neox);
/* Stores token t's k, v at (seq[t], pos[t]) of the cache (sequence s at
 * element s * seq_stride), then attends each token over positions 0..pos[t]
 * of its sequence. Needs no work space. */
cudaError_t bn_k_attention_batch(cudaStream_t st, const bn_kv_layer *kv, int64_t seq_stride, const bn_attn_shape *s,
                                 const float *q, const float *k, const float *v, int n_tok, const int32_t *seq,
                                 const int32_t *pos, float *out);
/* RoPE of q and k at pos[t] (in place, k_rope_batch's arithmetic), the
 * store of k and v, and the attention, as bn_k_attention_batch. */
cudaError_t bn_k_rope_attention_batch(cudaStream_t st, const bn_kv_layer *kv, int64_t seq_stride,
                                      const bn_attn_shape *s, float *q, float *k, const float *v, int n_tok,
                                      const int32_t *seq, const int32_t *pos, float theta, int neox, float *out);


/* The layers of a one-token decode step in one persistent launch
 * (kernels_decode_layers.cu, compute capability 9.0): one block per
 * multiprocessor, grid-wide barriers between the five phases of a layer
 * (q/k/v, attention, o + residual, gate/up + GLU, down + residual) instead
 * of kernel boundaries, and every block's slice of the weights of each phase
 * copied into its shared memory (bulk copies) a layer ahead, so the weight
 * stream never waits on the chain of dependent steps. Same arithmetic as the
 * fused decode kernels (bn_k_ternary_pro, bn_k_attention_decode); summation
 * orders of the attention differ. */
#define BN_DL_MAX_LAYERS 40
#define BN_DL_STAMPS 18 /* timestamps per layer when profiling */
#define BN_DL_PROF_N (1 + BN_DL_MAX_LAYERS * BN_DL_STAMPS)

struct bn_dl_layer {
    const float *attn_norm, *attn_sub, *ffn_norm, *ffn_sub; /* sub-norms: NULL when the model has none */
    const uint8_t *codes[7];                                /* q, k, v, o, gate, up, down */
    const float *scale[7];
    void *K, *V; /* the layer's f16 KV cache */
};

struct bn_dl_args {
    int n_layer, n_embd, n_head, n_kv, head_dim, n_ff, n_ctx, neox, relu2;
    float eps, theta;
    bn_pos pos;
    float *x;                 /* the residual stream: read and updated */
    float *q, *k, *v, *att, *h; /* scratch: n_head*hd, n_kv*hd (x2), n_head*hd, n_ff floats */
    float *ws;                /* attention partials: bn_k_decode_layers_ws floats */
    int *cnt;                 /* n_kv * ceil(G/4) counters, zero between launches */
    unsigned *bar;            /* the grid barrier's counter (zeroed by the launcher) */
    unsigned long long *prof; /* NULL, or BN_DL_PROF_N timestamps (ns) of block 0: see kernels_decode_layers.cu */
    bn_dl_layer L[BN_DL_MAX_LAYERS];
};

/* Probes the kernel on the current device (synchronizes: never inside a
 * stream capture). */
void bn_k_decode_layers_init(void);
/* 1 when the current device runs it and a's shapes fit one block per
 * multiprocessor (n_sm blocks; the layer slices in shared memory). */
int bn_k_decode_layers_fits(const bn_dl_args *a, int n_sm);
size_t bn_k_decode_layers_ws(const bn_dl_args *a, int n_sm);
cudaError_t bn_k_decode_layers(cudaStream_t st, const bn_dl_args *a, int n_sm);
/* Prints the step breakdown of a launch whose a->prof stamps were copied to
 * host memory (st: BN_DL_PROF_N entries). */
void bn_k_decode_layers_print_profile(const unsigned long long *st, int n_layer, FILE *f);

#endif
