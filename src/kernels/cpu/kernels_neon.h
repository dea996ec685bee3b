/* NEON kernels shared by the "neon" and "neon_dotprod" levels (aarch64). */
#ifndef BN_KERNELS_CPU_KERNELS_NEON_H
#define BN_KERNELS_CPU_KERNELS_NEON_H

#include "kernels/tensors.h"

/* Σ code·q of one row (nb blocks) against nt ≤ 4 token rows q + t*ldq. */
typedef void (*bn_neon_row_fn)(const uint8_t *wr, int64_t nb, const int8_t *q, int64_t ldq, int nt, int32_t *out);

/* The ternary GEMM loop (row groups, token tiles, the reference's float
 * conversion) around a row kernel. */
void bn_neon_ternary_driver(const bn_ternary *w, int64_t r0, int64_t r1, const bn_qact *a, int n_tok, float *y,
                            int64_t ldy, bn_neon_row_fn row);

void bn_quantize_row_i8_neon(const float *x, int64_t n, int8_t *q, float *scale, int32_t *sum);
float bn_dot_f32_neon(const float *a, const float *b, int64_t n);
float bn_dot_f16_neon(const float *a, const uint16_t *b, int64_t n);
void bn_axpy_f32_neon(float s, const float *x, float *y, int64_t n);
void bn_axpy_f16_neon(float s, const uint16_t *x, float *y, int64_t n);
void bn_f32_to_f16_neon(const float *x, uint16_t *y, int64_t n);
void bn_dense_gemm_neon(const bn_dense *w, int64_t r0, int64_t r1, const float *x, int n_tok, float *y, int64_t ldy,
                        float *scratch);

#endif
