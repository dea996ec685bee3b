/* The backend interface: the operations the model's forward pass is written
 * against. A backend (CPU, CUDA, ...) implements this table; adding one never
 * touches the model code (src/model/forward.c).
 *
 * Buffers passed to the operations are backend memory obtained from `alloc`
 * (host memory for the CPU backend, device memory for CUDA). Weights are the
 * model's host descriptors (kernels/tensors.h); a backend that needs its own
 * copy makes it in `prepare_model` and keeps it behind the descriptors' `dev`
 * fields. Operations are asynchronous in stream order; `to_host` waits.
 *
 * Shapes: activations are row-major [n_tok x dim]. */
#ifndef BN_KERNELS_BACKEND_H
#define BN_KERNELS_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "bitnet.h"
#include "kernels/tensors.h"

struct bitnet_model;
typedef struct bn_backend bn_backend;

/* One layer's KV cache: keys and values of n_kv_head heads for n_ctx
 * positions, laid out [head][pos][head_dim] so that attention streams one
 * head's keys contiguously. A context of several sequences holds n_seq such
 * caches back to back ([seq][head][pos][head_dim]): one sequence's cache is
 * the single-sequence layout at an offset, so the single-sequence operations
 * serve it unchanged. */
typedef struct bn_kv_layer {
    void *k, *v;
} bn_kv_layer;

typedef struct bn_attn_shape {
    int n_head, n_head_kv, head_dim, n_ctx;
} bn_attn_shape;

typedef enum bn_glu_act { BN_GLU_SILU = 0, BN_GLU_RELU2 = 1 } bn_glu_act;

typedef struct bn_backend_ops {
    const char *name;
    void (*destroy)(bn_backend *be);

    /* Zeroed backend memory; NULL on failure. */
    void *(*alloc)(bn_backend *be, size_t bytes);
    void (*free)(bn_backend *be, void *p);
    /* Host memory that to_host copies into fastest (page-locked for a GPU:
     * the copy goes straight there, with no staging); optional: NULL means
     * plain malloc/free. host_alloc returns NULL on failure (the caller then
     * uses malloc); host_free takes only host_alloc's blocks, before destroy. */
    void *(*host_alloc)(bn_backend *be, size_t bytes);
    void (*host_free)(bn_backend *be, void *p);
    /* Bytes of one KV-cache element (4 for f32, 2 for f16). */
    size_t kv_elem_size;

    /* Makes the backend's copies of the model's weights (no-op on CPU). */
    bitnet_status (*prepare_model)(bn_backend *be, struct bitnet_model *m, bitnet_error *err);

    /* x[t] = row tokens[t] of emb, as f32. `tokens` is host memory. */
    void (*embed)(bn_backend *be, const bn_dense *emb, const int32_t *tokens, int n_tok, float *x);
    /* out[t] = x[t] * rsqrt(mean(x[t]^2) + eps) * w. out may equal x. */
    void (*rmsnorm)(bn_backend *be, const float *x, const bn_vec *w, int n_tok, int dim, float eps, float *out);
    /* Per-token int8 quantization (see kernels_ref.h for the exact rule). */
    void (*quantize)(bn_backend *be, const float *x, int n_tok, int dim, const bn_qact *out);
    /* y[t] = W · dequant(a[t]) for a ternary W (rows = output dim). */
    void (*matmul_ternary)(bn_backend *be, const bn_ternary *w, const bn_qact *a, int n_tok, float *y);
    /* y[t] = W · x[t] for a dense W (the output head). */
    void (*matmul_dense)(bn_backend *be, const bn_dense *w, const float *x, int n_tok, float *y);
    /* Rotary embedding on n_head heads of x[t], position pos0 + t.
     * neox = 1 pairs (i, i + head_dim/2); 0 pairs (2i, 2i+1). */
    void (*rope)(bn_backend *be, float *x, int n_tok, int n_head, int head_dim, int pos0, float theta, int neox);
    /* Stores k, v ([n_tok x n_head_kv*head_dim]) at positions pos0.. and
     * computes causal attention of q ([n_tok x n_head*head_dim]) over
     * positions 0..pos0+t, writing out ([n_tok x n_head*head_dim]). */
    void (*attention)(bn_backend *be, const bn_kv_layer *kv, const bn_attn_shape *s, const float *q,
                      const float *k, const float *v, int n_tok, int pos0, float *out);
    /* Multi-sequence batches (optional: NULL when the backend has none; the
     * forward pass then fails such batches with BITNET_E_UNSUPPORTED). Token
     * t has its own position pos[t] and sequence seq[t]; both arrays are host
     * memory of n_tok entries, read before the call returns.
     * rope_batch: as rope, token t at position pos[t]. */
    void (*rope_batch)(bn_backend *be, float *x, int n_tok, int n_head, int head_dim, const int32_t *pos,
                       float theta, int neox);
    /* attention_batch: kv holds every sequence's cache, sequence s's at
     * element offset s * seq_stride (s->n_ctx positions each). Stores each
     * token's k, v at (seq[t], pos[t]); then token t attends causally over
     * positions 0..pos[t] of sequence seq[t] (tokens of one sequence in the
     * batch see each other's keys, as in `attention`). */
    void (*attention_batch)(bn_backend *be, const bn_kv_layer *kv, int64_t seq_stride, const bn_attn_shape *s,
                            const float *q, const float *k, const float *v, int n_tok, const int32_t *seq,
                            const int32_t *pos, float *out);
    /* g = act(g) * u, n elements. */
    void (*glu)(bn_backend *be, float *g, const float *u, int64_t n, bn_glu_act act);
    /* x += y, n elements. */
    void (*add)(bn_backend *be, float *x, const float *y, int64_t n);
    /* Copies n_bytes from backend memory to host memory (waits for the work). */
    void (*to_host)(bn_backend *be, void *dst, const void *src, size_t n_bytes);
    /* out_host[r] = the column of the largest of x[r][0..n_cols), for n_rows
     * rows of backend memory: NaN counts as -inf and the lowest column wins
     * ties (bn_argmax_ref, the greedy sampler's pick). Waits like to_host.
     * Lets greedy decoding copy 4 bytes per row instead of a row of logits
     * (131 MB per step for 256 sequences of a 128k vocabulary). On a failed
     * backend every entry is -1. */
    void (*argmax)(bn_backend *be, const float *x, int n_rows, int n_cols, int32_t *out_host);
    /* Waits until queued work is done (optional: NULL for synchronous
     * backends). Used only when profiling, to time each operation. */
    void (*sync)(bn_backend *be);
    /* Reports a failure of any operation since the backend was created
     * (optional: NULL for backends whose operations cannot fail). Operations
     * return nothing so that a device backend can queue them; a failed one
     * makes the rest no-ops, and the context turns this status into the
     * error of bitnet_eval. */
    bitnet_status (*status)(bn_backend *be, bitnet_error *err);
} bn_backend_ops;

struct bn_backend {
    const bn_backend_ops *ops;
};

#ifdef BITNET_HAVE_CUDA
/* The CUDA backend on GPU `device` (kernels/cuda). BITNET_E_DEVICE when no
 * usable GPU is there. */
bitnet_status bn_backend_cuda_create(bn_backend **out, int device, bitnet_error *err);
/* Number of usable CUDA devices (0 when there is no driver or GPU). */
int bn_cuda_device_count(void);
#endif

/* The CPU backend; n_threads <= 0 means "physical cores". */
bitnet_status bn_backend_cpu_create(bn_backend **out, int n_threads, bitnet_error *err);
/* Sizes the CPU backend's per-thread scratch for rows of up to n floats (the
 * widest dense row, the context length), so that no op allocates. */
bitnet_status bn_backend_cpu_reserve(bn_backend *be, size_t max_row_floats, bitnet_error *err);
/* The CPU kernel level in use ("scalar", "avx2", ...). */
const char *bn_backend_cpu_kernels_name(const bn_backend *be);

#endif
