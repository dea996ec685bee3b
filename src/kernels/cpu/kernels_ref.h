/* Plain C reference kernels. They define the numerics every fast kernel must
 * reproduce (bit-exactly for the integer parts) and serve as the fallback on
 * CPUs without a SIMD implementation. */
#ifndef BN_KERNELS_CPU_KERNELS_REF_H
#define BN_KERNELS_CPU_KERNELS_REF_H

#include "kernels/tensors.h"

/* Per-token absmax int8 quantization of one row of n floats, exactly as the
 * BitNet reference defines it: s = 127 / max(max|x|, 1e-5),
 * q = clamp(round_half_even(x * s), -128, 127). Writes q[0..n), *scale = s and
 * *sum = Σq. */
void bn_quantize_row_i8_ref(const float *x, int64_t n, int8_t *q, float *scale, int32_t *sum);

/* y[t*ldy + r] = (Σ_k code(r,k)·q_t[k] − Σq_t) · scale_r / act_scale[t]
 * for r in [r0, r1) and t in [0, n_tok); q_t = q + t*w->cols. */
void bn_ternary_gemm_ref(const bn_ternary *w, int64_t r0, int64_t r1, const bn_qact *a, int n_tok,
                         float *y, int64_t ldy);

/* The integer part alone for one row and one token: Σ code·q − Σq. */
int32_t bn_ternary_dot_ref(const bn_ternary *w, int64_t r, const int8_t *q, int32_t qsum);

/* y[t*ldy + r] = dot(row r of w, x_t) for r in [r0, r1), x_t = x + t*w->cols.
 * Rows are decoded to f32 (scratch must hold w->cols floats). */
void bn_dense_gemm_ref(const bn_dense *w, int64_t r0, int64_t r1, const float *x, int n_tok, float *y,
                       int64_t ldy, float *scratch);

/* The int8 output head (Q8_0 weights): activations are quantized per
 * 32-element block, d = max|x| / 127, q = round_half_even(x · 127 / max|x|)
 * (all zeros when max|x| ≤ 1e-30), and each block's integer dot is scaled by
 * d_w · d_x. n % 32 == 0; q gets n bytes, d gets n / 32 floats. */
void bn_quantize_row_q8_blocks_ref(const float *x, int64_t n, int8_t *q, float *d);

/* y[t*ldy + r] = Σ_b (Σ_j qw·qx) · (d_w · d_x), summed block after block,
 * for a Q8_0 matrix. scratch: w->cols floats (holds one quantized token). */
void bn_dense_gemm_q8_0_ref(const bn_dense *w, int64_t r0, int64_t r1, const float *x, int n_tok, float *y,
                            int64_t ldy, float *scratch);

/* The scalar level's dense kernel: bn_dense_gemm_q8_0_ref for Q8_0,
 * bn_dense_gemm_ref for every other type. */
void bn_dense_gemm_scalar(const bn_dense *w, int64_t r0, int64_t r1, const float *x, int n_tok, float *y,
                          int64_t ldy, float *scratch);

/* Float helpers in plain sequential order (the scalar level uses them). */
float bn_dot_f32_ref(const float *a, const float *b, int64_t n);
float bn_dot_f16_ref(const float *a, const uint16_t *b, int64_t n);
void bn_axpy_f32_ref(float s, const float *x, float *y, int64_t n);
void bn_axpy_f16_ref(float s, const uint16_t *x, float *y, int64_t n);
void bn_f32_to_f16_ref(const float *x, uint16_t *y, int64_t n);

/* Causal attention of nt tokens × G query heads sharing one KV head. Row
 * (tt, g) of q is q + tt·ldq + g·hd (hd floats; out has the same layout);
 * token tt attends over cached positions [0, n0 + tt) of K and V (IEEE
 * halves, hd per position): softmax(q·k / √hd) · v, scores and sums in f32,
 * as the per-row path (attend in backend_cpu.c) computes them. scratch:
 * bn_attend_tile_scratch(nt·G, n0 + nt − 1, hd) floats. */
void bn_attend_tile_ref(const float *q, int64_t ldq, int G, int nt, int n0, int hd, const uint16_t *K,
                        const uint16_t *V, float *scratch, float *out);

/* s[p] = exp(s[p] − max s) for p < n, summed in order; returns 1 / sum. The
 * softmax step of every attention path, so that they agree. */
float bn_softmax_exp(float *s, int n);

/* The index of the largest of x[0..n) (n >= 1): NaN counts as -inf and the
 * lowest index wins ties, so it is the greedy sampler's pick (0 when every
 * entry is NaN or -inf). The backends' argmax op follows it. */
int32_t bn_argmax_ref(const float *x, int64_t n);

/* The scalar level's ternary kernel: the reference's integers, computed a
 * 32-byte block at a time (portable C, no per-weight index arithmetic). */
void bn_ternary_gemm_scalar(const bn_ternary *w, int64_t r0, int64_t r1, const bn_qact *a, int n_tok, float *y,
                            int64_t ldy);

#endif
