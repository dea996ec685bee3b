/* AVX2 kernels that the AVX-512 table reuses (every AVX-512 VNNI CPU has
 * AVX2, FMA and F16C): the float helpers, the Q8_0 activation quantizer and
 * the dense (output-head) GEMM for F16 and other types, which is bound by
 * memory bandwidth, not by vector width. */
#ifndef BN_KERNELS_CPU_KERNELS_X86_H
#define BN_KERNELS_CPU_KERNELS_X86_H

#include "kernels/tensors.h"

float bn_dot_f32_avx2(const float *a, const float *b, int64_t n);
float bn_dot_f16_avx2(const float *a, const uint16_t *b, int64_t n);
void bn_axpy_f32_avx2(float s, const float *x, float *y, int64_t n);
void bn_axpy_f16_avx2(float s, const uint16_t *x, float *y, int64_t n);
void bn_f32_to_f16_avx2(const float *x, uint16_t *y, int64_t n);
/* bn_quantize_row_q8_blocks_ref, bit-exact (the int8 head's activations). */
void bn_quantize_q8_blocks_avx2(const float *x, int64_t n, int8_t *q, float *d);
/* bn_attend_tile_ref's contract (hd % 8 != 0 falls back to it). */
void bn_attend_tile_avx2(const float *q, int64_t ldq, int G, int nt, int n0, int hd, const uint16_t *K,
                         const uint16_t *V, float *scratch, float *out);
void bn_dense_gemm_avx2(const bn_dense *w, int64_t r0, int64_t r1, const float *x, int n_tok, float *y, int64_t ldy,
                        float *scratch);

#endif
