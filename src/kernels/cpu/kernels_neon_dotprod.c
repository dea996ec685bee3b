/* NEON with the ARMv8.2 dot-product extension (SDOT): the ternary kernel
 * only; everything else is the plain NEON level's. SDOT multiplies signed
 * bytes (codes 0..2 are valid as such) and adds groups of four into int32
 * lanes, so the integers equal the reference's with no overflow to manage.
 * Two accumulators per token hide SDOT's latency. */
#if defined(__aarch64__)
#include <arm_neon.h>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/kernels_neon.h"

#define TOK_TILE 4

static inline __attribute__((always_inline)) void row_dots(const uint8_t *wr, int64_t nb, const int8_t *q,
                                                           int64_t ldq, int nt, int32_t *out) {
    const uint8x16_t m3 = vdupq_n_u8(3);
    int32x4_t acc[TOK_TILE][2];
    for (int t = 0; t < nt; t++) acc[t][0] = acc[t][1] = vdupq_n_s32(0);
    for (int64_t b = 0; b < nb; b++) {
        int8x16_t c[8];
        for (int h = 0; h < 2; h++) {
            uint8x16_t raw = vld1q_u8(wr + b * 32 + 16 * h);
            c[0 + h] = vreinterpretq_s8_u8(vshrq_n_u8(raw, 6));
            c[2 + h] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(raw, 4), m3));
            c[4 + h] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(raw, 2), m3));
            c[6 + h] = vreinterpretq_s8_u8(vandq_u8(raw, m3));
        }
        for (int t = 0; t < nt; t++) {
            const int8_t *qb = q + t * ldq + b * BN_TERNARY_BLOCK;
            for (int j = 0; j < 8; j++) acc[t][j & 1] = vdotq_s32(acc[t][j & 1], c[j], vld1q_s8(qb + 16 * j));
        }
    }
    for (int t = 0; t < nt; t++) out[t] = vaddvq_s32(vaddq_s32(acc[t][0], acc[t][1]));
}

static void row_dots_any(const uint8_t *wr, int64_t nb, const int8_t *q, int64_t ldq, int nt, int32_t *out) {
    switch (nt) {
    case 1: row_dots(wr, nb, q, ldq, 1, out); break;
    case 2: row_dots(wr, nb, q, ldq, 2, out); break;
    case 3: row_dots(wr, nb, q, ldq, 3, out); break;
    default: row_dots(wr, nb, q, ldq, 4, out); break;
    }
}

static void ternary_gemm_neon_dotprod(const bn_ternary *w, int64_t r0, int64_t r1, const bn_qact *a, int n_tok,
                                      float *y, int64_t ldy) {
    bn_neon_ternary_driver(w, r0, r1, a, n_tok, y, ldy, row_dots_any);
}

const bn_cpu_kernels bn_cpu_kernels_neon_dotprod_table = {
    .name = "neon_dotprod",
    .quantize_row_i8 = bn_quantize_row_i8_neon,
    .ternary_gemm = ternary_gemm_neon_dotprod,
    .dense_gemm = bn_dense_gemm_neon,
    .dot_f32 = bn_dot_f32_neon,
    .dot_f16 = bn_dot_f16_neon,
    .axpy_f32 = bn_axpy_f32_neon,
    .axpy_f16 = bn_axpy_f16_neon,
    .f32_to_f16 = bn_f32_to_f16_neon,
};

#else
typedef int bn_kernels_neon_dotprod_unused; /* not an aarch64 build */
#endif
