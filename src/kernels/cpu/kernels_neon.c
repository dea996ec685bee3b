/* NEON (Advanced SIMD, ARMv8.0-A) kernels.
 *
 * Ternary GEMM on the native layout: a 32-byte block is two 16-byte vectors;
 * byte shifts and masks give the codes (0..2, valid as signed bytes) of
 * weights b, 32+b, 64+b, 96+b, lined up with q[32j .. 32j+32). vmull/vmlal
 * multiply signed bytes into int16: one block adds 16 products of magnitude
 * ≤ 2·128 per lane (≤ 4096), then vpadal widens into int32 — exact.
 *
 * The float helpers and the dense head are shared with the dot-product level
 * (kernels_neon_dotprod.c), which replaces only the ternary kernel. */
#if defined(__aarch64__)
#include <arm_neon.h>
#include <math.h>

#include "format/ggml_types.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/kernels_neon.h"
#include "kernels/cpu/kernels_ref.h"

#define TOK_TILE 4
#define ROW_GROUP 32

static inline __attribute__((always_inline)) void row_dots(const uint8_t *wr, int64_t nb, const int8_t *q,
                                                           int64_t ldq, int nt, int32_t *out) {
    const uint8x16_t m3 = vdupq_n_u8(3);
    int32x4_t acc[TOK_TILE];
    for (int t = 0; t < nt; t++) acc[t] = vdupq_n_s32(0);
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
            int16x8_t s = vdupq_n_s16(0);
            for (int j = 0; j < 8; j++) { /* c[j] covers q[16j .. 16j+16) */
                int8x16_t qv = vld1q_s8(qb + 16 * j);
                s = vmlal_s8(s, vget_low_s8(c[j]), vget_low_s8(qv));
                s = vmlal_high_s8(s, c[j], qv);
            }
            acc[t] = vpadalq_s16(acc[t], s);
        }
    }
    for (int t = 0; t < nt; t++) out[t] = vaddvq_s32(acc[t]);
}

/* Shared driver: rows in cache-sized groups, tokens in tiles of ≤ 4. */
void bn_neon_ternary_driver(const bn_ternary *w, int64_t r0, int64_t r1, const bn_qact *a, int n_tok, float *y,
                            int64_t ldy, bn_neon_row_fn row) {
    int64_t nb = w->cols / BN_TERNARY_BLOCK, row_bytes = w->cols / 4;
    for (int64_t g0 = r0; g0 < r1; g0 += ROW_GROUP) {
        int64_t g1 = g0 + ROW_GROUP < r1 ? g0 + ROW_GROUP : r1;
        for (int t0 = 0; t0 < n_tok; t0 += TOK_TILE) {
            int nt = n_tok - t0 < TOK_TILE ? n_tok - t0 : TOK_TILE;
            const int8_t *q = a->q + (int64_t)t0 * w->cols;
            for (int64_t r = g0; r < g1; r++) {
                int32_t d[TOK_TILE];
                row(w->codes + r * row_bytes, nb, q, w->cols, nt, d);
                float ws = bn_ternary_row_scale(w, r);
                for (int t = 0; t < nt; t++)
                    y[(int64_t)(t0 + t) * ldy + r] = (float)(d[t] - a->sum[t0 + t]) * ws / a->scale[t0 + t];
            }
        }
    }
}

static void row_dots_any(const uint8_t *wr, int64_t nb, const int8_t *q, int64_t ldq, int nt, int32_t *out) {
    switch (nt) {
    case 1: row_dots(wr, nb, q, ldq, 1, out); break;
    case 2: row_dots(wr, nb, q, ldq, 2, out); break;
    case 3: row_dots(wr, nb, q, ldq, 3, out); break;
    default: row_dots(wr, nb, q, ldq, 4, out); break;
    }
}

static void ternary_gemm_neon(const bn_ternary *w, int64_t r0, int64_t r1, const bn_qact *a, int n_tok, float *y,
                              int64_t ldy) {
    bn_neon_ternary_driver(w, r0, r1, a, n_tok, y, ldy, row_dots_any);
}

/* Bit-exact with the reference: vrndnq rounds half to even, like nearbyintf
 * under the default rounding mode. */
void bn_quantize_row_i8_neon(const float *x, int64_t n, int8_t *q, float *scale, int32_t *sum) {
    float32x4_t vmax = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vmax = vmaxq_f32(vmax, vabsq_f32(vld1q_f32(x + i)));
    float amax = vmaxvq_f32(vmax);
    for (; i < n; i++) amax = fmaxf(amax, fabsf(x[i]));
    float s = 127.0f / fmaxf(amax, 1e-5f);
    const float32x4_t vs = vdupq_n_f32(s), lo = vdupq_n_f32(-128.0f), hi = vdupq_n_f32(127.0f);
    int32x4_t acc = vdupq_n_s32(0);
    for (i = 0; i + 8 <= n; i += 8) {
        int32x4_t v[2];
        for (int j = 0; j < 2; j++) {
            float32x4_t f = vrndnq_f32(vmulq_f32(vld1q_f32(x + i + 4 * j), vs));
            v[j] = vcvtq_s32_f32(vminq_f32(vmaxq_f32(f, lo), hi));
            acc = vaddq_s32(acc, v[j]);
        }
        vst1_s8(q + i, vqmovn_s16(vcombine_s16(vqmovn_s32(v[0]), vqmovn_s32(v[1]))));
    }
    int32_t total = vaddvq_s32(acc);
    for (; i < n; i++) {
        float v = nearbyintf(x[i] * s);
        v = v < -128.0f ? -128.0f : (v > 127.0f ? 127.0f : v);
        q[i] = (int8_t)v;
        total += q[i];
    }
    *scale = s;
    *sum = total;
}

static inline float32x4_t load_f16(const uint16_t *p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }

float bn_dot_f32_neon(const float *a, const float *b, int64_t n) {
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
        s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
    }
    float acc = vaddvq_f32(vaddq_f32(s0, s1));
    for (; i < n; i++) acc += a[i] * b[i];
    return acc;
}

float bn_dot_f16_neon(const float *a, const uint16_t *b, int64_t n) {
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        s0 = vfmaq_f32(s0, vld1q_f32(a + i), load_f16(b + i));
        s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), load_f16(b + i + 4));
    }
    float acc = vaddvq_f32(vaddq_f32(s0, s1));
    for (; i < n; i++) acc += a[i] * bn_fp16_to_fp32(b[i]);
    return acc;
}

void bn_axpy_f32_neon(float s, const float *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vld1q_f32(x + i), s));
    for (; i < n; i++) y[i] += s * x[i];
}

void bn_axpy_f16_neon(float s, const uint16_t *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), load_f16(x + i), s));
    for (; i < n; i++) y[i] += s * bn_fp16_to_fp32(x[i]);
}

void bn_f32_to_f16_neon(const float *x, uint16_t *y, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1_u16(y + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
    for (; i < n; i++) y[i] = bn_fp32_to_fp16(x[i]);
}

/* Dense head: F16 and Q8_0 rows converted in registers, others decoded to
 * scratch; one row is reused for up to TOK_TILE tokens. */
static void f16_row_dots(const uint16_t *wr, int64_t cols, const float *x, int nt, float *out) {
    float32x4_t acc[TOK_TILE][2];
    for (int t = 0; t < nt; t++) acc[t][0] = acc[t][1] = vdupq_n_f32(0.0f);
    int64_t k = 0;
    for (; k + 8 <= cols; k += 8) {
        float32x4_t w0 = load_f16(wr + k), w1 = load_f16(wr + k + 4);
        for (int t = 0; t < nt; t++) {
            acc[t][0] = vfmaq_f32(acc[t][0], w0, vld1q_f32(x + t * cols + k));
            acc[t][1] = vfmaq_f32(acc[t][1], w1, vld1q_f32(x + t * cols + k + 4));
        }
    }
    for (int t = 0; t < nt; t++) {
        float s = vaddvq_f32(vaddq_f32(acc[t][0], acc[t][1]));
        for (int64_t j = k; j < cols; j++) s += bn_fp16_to_fp32(wr[j]) * x[t * cols + j];
        out[t] = s;
    }
}

static void q8_0_row_dots(const uint8_t *wr, int64_t cols, const float *x, int nt, float *out) {
    float32x4_t acc[TOK_TILE];
    for (int t = 0; t < nt; t++) acc[t] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < cols / 32; b++) {
        const uint8_t *blk = wr + b * 34;
        float d = bn_fp16_to_fp32((uint16_t)(blk[0] | blk[1] << 8));
        float32x4_t wv[8];
        for (int h = 0; h < 2; h++) {
            int8x16_t qs = vld1q_s8((const int8_t *)blk + 2 + 16 * h);
            int16x8_t lo = vmovl_s8(vget_low_s8(qs)), hi = vmovl_s8(vget_high_s8(qs));
            wv[4 * h + 0] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo)));
            wv[4 * h + 1] = vcvtq_f32_s32(vmovl_s16(vget_high_s16(lo)));
            wv[4 * h + 2] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi)));
            wv[4 * h + 3] = vcvtq_f32_s32(vmovl_s16(vget_high_s16(hi)));
        }
        for (int t = 0; t < nt; t++) {
            const float *xb = x + t * cols + b * 32;
            float32x4_t s = vmulq_f32(wv[0], vld1q_f32(xb));
            for (int j = 1; j < 8; j++) s = vfmaq_f32(s, wv[j], vld1q_f32(xb + 4 * j));
            acc[t] = vfmaq_n_f32(acc[t], s, d);
        }
    }
    for (int t = 0; t < nt; t++) out[t] = vaddvq_f32(acc[t]);
}

void bn_dense_gemm_neon(const bn_dense *w, int64_t r0, int64_t r1, const float *x, int n_tok, float *y, int64_t ldy,
                        float *scratch) {
    int64_t cols = w->cols;
    if (w->type != BN_GGML_F16 && w->type != BN_GGML_Q8_0) {
        for (int64_t r = r0; r < r1; r++) {
            bn_ggml_dequantize_row(w->type, w->data + r * w->row_bytes, scratch, cols, 0.0f);
            for (int t = 0; t < n_tok; t++) y[(int64_t)t * ldy + r] = bn_dot_f32_neon(scratch, x + (int64_t)t * cols, cols);
        }
        return;
    }
    for (int t0 = 0; t0 < n_tok; t0 += TOK_TILE) {
        int nt = n_tok - t0 < TOK_TILE ? n_tok - t0 : TOK_TILE;
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *wr = w->data + r * w->row_bytes;
            float d[TOK_TILE] = {0}; /* every slot below nt is written; zeroed so that GCC -O3 sees it */
            if (w->type == BN_GGML_F16) f16_row_dots((const uint16_t *)wr, cols, x + (int64_t)t0 * cols, nt, d);
            else q8_0_row_dots(wr, cols, x + (int64_t)t0 * cols, nt, d);
            for (int t = 0; t < nt; t++) y[(int64_t)(t0 + t) * ldy + r] = d[t];
        }
    }
}

const bn_cpu_kernels bn_cpu_kernels_neon_table = {
    .name = "neon",
    .quantize_row_i8 = bn_quantize_row_i8_neon,
    .ternary_gemm = ternary_gemm_neon,
    .dense_gemm = bn_dense_gemm_neon,
    .dot_f32 = bn_dot_f32_neon,
    .dot_f16 = bn_dot_f16_neon,
    .axpy_f32 = bn_axpy_f32_neon,
    .axpy_f16 = bn_axpy_f16_neon,
    .f32_to_f16 = bn_f32_to_f16_neon,
};

#else
typedef int bn_kernels_neon_unused; /* not an aarch64 build */
#endif
