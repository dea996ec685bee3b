/* The CPU kernel table and its run-time selection.
 *
 * Each ISA level (scalar, AVX2, AVX-512 VNNI, NEON, NEON + dot product)
 * provides a table; bn_cpu_kernels_select() picks the best one this CPU
 * supports, or the level forced by the environment variable
 * BITNET_CPU=scalar|avx2|avx512|neon|neon_dotprod.
 *
 * Numerics: quantize_row_i8 and the integer accumulators of ternary_gemm are
 * bit-exact with the reference (kernels_ref.h) at every level, and ternary_gemm
 * converts them to float with the reference's expression, so its output is
 * bit-exact too. The float kernels (dense_gemm, dot, axpy) may sum in a
 * different order; tests bound their error relative to Σ|a·b|. */
#ifndef BN_KERNELS_CPU_CPU_KERNELS_H
#define BN_KERNELS_CPU_CPU_KERNELS_H

#include "kernels/tensors.h"

typedef struct bn_cpu_kernels {
    const char *name; /* "scalar", "avx2", "avx512", "neon", "neon_dotprod" */
    void (*quantize_row_i8)(const float *x, int64_t n, int8_t *q, float *scale, int32_t *sum);
    /* y[t*ldy + r] for rows [r0, r1) and tokens [0, n_tok); see kernels_ref.h. */
    void (*ternary_gemm)(const bn_ternary *w, int64_t r0, int64_t r1, const bn_qact *a, int n_tok, float *y,
                         int64_t ldy);
    /* scratch: w->cols floats, for types the kernel decodes a row at a time. */
    void (*dense_gemm)(const bn_dense *w, int64_t r0, int64_t r1, const float *x, int n_tok, float *y, int64_t ldy,
                       float *scratch);
    /* Σ a[i]·b[i] (attention scores against an f32 / f16 KV cache). */
    float (*dot_f32)(const float *a, const float *b, int64_t n);
    float (*dot_f16)(const float *a, const uint16_t *b, int64_t n);
    /* y[i] += s·x[i] (attention-weighted sum of values). */
    void (*axpy_f32)(float s, const float *x, float *y, int64_t n);
    void (*axpy_f16)(float s, const uint16_t *x, float *y, int64_t n);
    /* IEEE half, round to nearest even: bit-exact with bn_fp32_to_fp16. */
    void (*f32_to_f16)(const float *x, uint16_t *y, int64_t n);
    /* Causal attention of a tile of query rows that share one KV head (a
     * prompt: nt tokens × G heads of a group); see bn_attend_tile_ref for the
     * contract. Optional: NULL where the per-row path is used instead. */
    void (*attend_tile)(const float *q, int64_t ldq, int G, int nt, int n0, int hd, const uint16_t *K,
                        const uint16_t *V, float *scratch, float *out);
} bn_cpu_kernels;

/* Query rows per attention tile (nt·G ≤ BN_ATTN_TILE_ROWS) and the floats
 * of scratch a tile needs for n keys at most. */
#define BN_ATTN_TILE_ROWS 16
#define BN_ATTN_VBLOCK 64
size_t bn_attend_tile_scratch(int rows, int n, int hd);

/* The levels compiled into this binary, best last (the scalar level first). */
const bn_cpu_kernels *const *bn_cpu_kernels_all(int *count);

/* 1 when this CPU (and OS) can run the level. */
int bn_cpu_kernels_supported(const bn_cpu_kernels *k);

const bn_cpu_kernels *bn_cpu_kernels_scalar(void);

/* The table for `name`, or NULL when unknown or unsupported on this CPU. */
const bn_cpu_kernels *bn_cpu_kernels_get(const char *name);

/* Best supported level, honouring BITNET_CPU (an unknown or unsupported value
 * is reported on stderr once and ignored). */
const bn_cpu_kernels *bn_cpu_kernels_select(void);

/* Per-level tables, defined in kernels_<isa>.c; NULL-free only where compiled. */
extern const bn_cpu_kernels bn_cpu_kernels_scalar_table;
#if defined(__x86_64__) || defined(__i386__)
extern const bn_cpu_kernels bn_cpu_kernels_avx2_table;
extern const bn_cpu_kernels bn_cpu_kernels_avx512_table;
#endif
#if defined(__aarch64__)
extern const bn_cpu_kernels bn_cpu_kernels_neon_table;
extern const bn_cpu_kernels bn_cpu_kernels_neon_dotprod_table;
#endif

#endif
