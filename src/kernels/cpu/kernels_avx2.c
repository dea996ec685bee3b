/* AVX2 + FMA + F16C kernels (x86-64 v3).
 *
 * Ternary GEMM on the native layout (kernels/tensors.h): one 32-byte block
 * expands by shifts and masks to four 32-lane vectors of codes c ∈ {0,1,2}
 * that line up with q[0..32), q[32..64), q[64..96), q[96..128). maddubs
 * multiplies unsigned codes by signed activations and adds pairs to int16:
 * |2·(−128)·2| = 512 at most, so it never saturates. Four of them per block
 * give at most 2048 per int16 lane, so 16 blocks (64 products of ≤ 512, the
 * extreme −512·64 = −32768 still fits) accumulate in int16 before one
 * widening madd to int32. The result is the reference's integer exactly.
 *
 * Each decoded block is reused across a tile of up to four tokens (GEMM);
 * with one token this is a GEMV streaming each row once. */
#include <immintrin.h>
#include <math.h>

#include "format/ggml_types.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/kernels_ref.h"
#include "kernels/cpu/kernels_x86.h"

#define TOK_TILE 4
#define BLOCKS_PER_FLUSH 16

static inline int32_t hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Σ code·q of one row against nt (≤ TOK_TILE) token rows q + t*ldq. */
static inline __attribute__((always_inline)) void row_dots(const uint8_t *wr, int64_t nb, const int8_t *q,
                                                           int64_t ldq, int nt, int32_t *out) {
    const __m256i m3 = _mm256_set1_epi8(3), ones = _mm256_set1_epi16(1);
    __m256i acc[TOK_TILE];
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_si256();
    for (int64_t b0 = 0; b0 < nb; b0 += BLOCKS_PER_FLUSH) {
        int64_t b1 = b0 + BLOCKS_PER_FLUSH < nb ? b0 + BLOCKS_PER_FLUSH : nb;
        __m256i a16[TOK_TILE];
        for (int t = 0; t < nt; t++) a16[t] = _mm256_setzero_si256();
        for (int64_t b = b0; b < b1; b++) {
            __m256i raw = _mm256_loadu_si256((const __m256i *)(wr + b * 32));
            __m256i c0 = _mm256_and_si256(_mm256_srli_epi16(raw, 6), m3);
            __m256i c1 = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m3);
            __m256i c2 = _mm256_and_si256(_mm256_srli_epi16(raw, 2), m3);
            __m256i c3 = _mm256_and_si256(raw, m3);
            for (int t = 0; t < nt; t++) {
                const int8_t *qb = q + t * ldq + b * BN_TERNARY_BLOCK;
                __m256i s0 = _mm256_maddubs_epi16(c0, _mm256_loadu_si256((const __m256i *)qb));
                __m256i s1 = _mm256_maddubs_epi16(c1, _mm256_loadu_si256((const __m256i *)(qb + 32)));
                __m256i s2 = _mm256_maddubs_epi16(c2, _mm256_loadu_si256((const __m256i *)(qb + 64)));
                __m256i s3 = _mm256_maddubs_epi16(c3, _mm256_loadu_si256((const __m256i *)(qb + 96)));
                a16[t] = _mm256_add_epi16(a16[t], _mm256_add_epi16(_mm256_add_epi16(s0, s1), _mm256_add_epi16(s2, s3)));
            }
        }
        for (int t = 0; t < nt; t++) acc[t] = _mm256_add_epi32(acc[t], _mm256_madd_epi16(a16[t], ones));
    }
    for (int t = 0; t < nt; t++) out[t] = hsum_i32(acc[t]);
}

/* Rows are visited in groups so that a group's weights stay in cache while
 * every token tile passes over them. */
#define ROW_GROUP 32

/* Streaming from DRAM, one row at a time leaves too few misses in flight
 * for a single core to reach its bandwidth; asking for a row a few rows
 * ahead (first token tile only: later tiles find the rows in cache) fixes
 * that at the cost of one prefetch per cache line. */
#define PREFETCH_ROWS 4

static inline void prefetch_row(const uint8_t *p, int64_t bytes) {
    for (int64_t o = 0; o < bytes; o += 64) _mm_prefetch((const char *)p + o, _MM_HINT_T0);
}

static void ternary_gemm_avx2(const bn_ternary *w, int64_t r0, int64_t r1, const bn_qact *a, int n_tok, float *y,
                              int64_t ldy) {
    int64_t nb = w->cols / BN_TERNARY_BLOCK, row_bytes = w->cols / 4;
    for (int64_t g0 = r0; g0 < r1; g0 += ROW_GROUP) {
        int64_t g1 = g0 + ROW_GROUP < r1 ? g0 + ROW_GROUP : r1;
        for (int t0 = 0; t0 < n_tok; t0 += TOK_TILE) {
            int nt = n_tok - t0 < TOK_TILE ? n_tok - t0 : TOK_TILE;
            const int8_t *q = a->q + (int64_t)t0 * w->cols;
            for (int64_t r = g0; r < g1; r++) {
                int32_t d[TOK_TILE];
                const uint8_t *wr = w->codes + r * row_bytes;
                if (t0 == 0 && r + PREFETCH_ROWS < w->rows) prefetch_row(wr + PREFETCH_ROWS * row_bytes, row_bytes);
                /* Constant tile widths let the compiler keep everything in registers. */
                switch (nt) {
                case 1: row_dots(wr, nb, q, w->cols, 1, d); break;
                case 2: row_dots(wr, nb, q, w->cols, 2, d); break;
                case 3: row_dots(wr, nb, q, w->cols, 3, d); break;
                default: row_dots(wr, nb, q, w->cols, 4, d); break;
                }
                float ws = bn_ternary_row_scale(w, r);
                for (int t = 0; t < nt; t++)
                    y[(int64_t)(t0 + t) * ldy + r] = (float)(d[t] - a->sum[t0 + t]) * ws / a->scale[t0 + t];
            }
        }
    }
}

/* Absmax int8 quantization, bit-exact with bn_quantize_row_i8_ref: the same
 * float product, rounded half-to-even by _mm256_round_ps, clamped, and summed
 * in int32. */
static void quantize_row_i8_avx2(const float *x, int64_t n, int8_t *q, float *scale, int32_t *sum) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 vmax = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) vmax = _mm256_max_ps(vmax, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    float amax = _mm_cvtss_f32(m4);
    for (; i < n; i++) amax = fmaxf(amax, fabsf(x[i]));
    float s = 127.0f / fmaxf(amax, 1e-5f);

    const __m256 vs = _mm256_set1_ps(s), lo = _mm256_set1_ps(-128.0f), hi = _mm256_set1_ps(127.0f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    __m256i acc = _mm256_setzero_si256();
    for (i = 0; i + 32 <= n; i += 32) {
        __m256i v[4];
        for (int j = 0; j < 4; j++) {
            __m256 f = _mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * j), vs);
            f = _mm256_round_ps(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            f = _mm256_min_ps(_mm256_max_ps(f, lo), hi);
            v[j] = _mm256_cvtps_epi32(f);
            acc = _mm256_add_epi32(acc, v[j]);
        }
        /* packs work within 128-bit lanes; the permute restores element order. */
        __m256i p16a = _mm256_packs_epi32(v[0], v[1]), p16b = _mm256_packs_epi32(v[2], v[3]);
        __m256i p8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p16a, p16b), perm);
        _mm256_storeu_si256((__m256i *)(q + i), p8);
    }
    int32_t total = hsum_i32(acc);
    for (; i < n; i++) {
        float v = nearbyintf(x[i] * s);
        v = v < -128.0f ? -128.0f : (v > 127.0f ? 127.0f : v);
        q[i] = (int8_t)v;
        total += q[i];
    }
    *scale = s;
    *sum = total;
}

float bn_dot_f32_avx2(const float *a, const float *b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    float acc = hsum_ps(_mm256_add_ps(s0, s1));
    for (; i < n; i++) acc += a[i] * b[i];
    return acc;
}

static inline __m256 load_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

/* Four accumulators: with one token (the decode head) the FMA latency chain,
 * not the F16 conversion, would otherwise bound the speed. */
float bn_dot_f16_avx2(const float *a, const uint16_t *b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), load_f16(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), load_f16(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), load_f16(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), load_f16(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), load_f16(b + i), s0);
    float acc = hsum_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) acc += a[i] * bn_fp16_to_fp32(b[i]);
    return acc;
}

void bn_axpy_f32_avx2(float s, const float *x, float *y, int64_t n) {
    __m256 vs = _mm256_set1_ps(s);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(vs, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += s * x[i];
}

void bn_axpy_f16_avx2(float s, const uint16_t *x, float *y, int64_t n) {
    __m256 vs = _mm256_set1_ps(s);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(vs, load_f16(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += s * bn_fp16_to_fp32(x[i]);
}

void bn_f32_to_f16_avx2(const float *x, uint16_t *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) y[i] = bn_fp32_to_fp16(x[i]);
}

/* Dense rows (the output head). F16 and Q8_0 rows are converted in registers
 * and reused across a tile of tokens; other types are decoded to scratch. */

/* Dots of one F16 row with nt (≤ TOK_TILE) token rows x + t*cols. */
static inline __attribute__((always_inline)) void f16_row_dots(const uint16_t *wr, int64_t cols, const float *x,
                                                               int nt, float *out) {
    __m256 acc[TOK_TILE][2];
    for (int t = 0; t < nt; t++) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= cols; k += 16) {
        __m256 w0 = load_f16(wr + k), w1 = load_f16(wr + k + 8);
        for (int t = 0; t < nt; t++) {
            acc[t][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + t * cols + k), acc[t][0]);
            acc[t][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + t * cols + k + 8), acc[t][1]);
        }
    }
    for (int t = 0; t < nt; t++) {
        float s = hsum_ps(_mm256_add_ps(acc[t][0], acc[t][1]));
        for (int64_t j = k; j < cols; j++) s += bn_fp16_to_fp32(wr[j]) * x[t * cols + j];
        out[t] = s;
    }
}

/* Q8_0: blocks of an fp16 scale and 32 int8 values. */
static inline __m256 i8x8_to_ps(const int8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

static inline __attribute__((always_inline)) void q8_0_row_dots(const uint8_t *wr, int64_t cols, const float *x,
                                                                int nt, float *out) {
    __m256 acc[TOK_TILE];
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < cols / 32; b++) {
        const uint8_t *blk = wr + b * 34;
        __m256 d = _mm256_set1_ps(bn_fp16_to_fp32((uint16_t)(blk[0] | blk[1] << 8)));
        const int8_t *qs = (const int8_t *)(blk + 2);
        __m256 w0 = i8x8_to_ps(qs), w1 = i8x8_to_ps(qs + 8), w2 = i8x8_to_ps(qs + 16), w3 = i8x8_to_ps(qs + 24);
        for (int t = 0; t < nt; t++) {
            const float *xb = x + t * cols + b * 32;
            __m256 s = _mm256_mul_ps(w0, _mm256_loadu_ps(xb));
            s = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xb + 8), s);
            s = _mm256_fmadd_ps(w2, _mm256_loadu_ps(xb + 16), s);
            s = _mm256_fmadd_ps(w3, _mm256_loadu_ps(xb + 24), s);
            acc[t] = _mm256_fmadd_ps(d, s, acc[t]);
        }
    }
    for (int t = 0; t < nt; t++) out[t] = hsum_ps(acc[t]);
}

/* Head rows are several KB: two rows ahead keeps enough misses in flight. */
#define DENSE_PREFETCH_ROWS 2

void bn_dense_gemm_avx2(const bn_dense *w, int64_t r0, int64_t r1, const float *x, int n_tok, float *y,
                            int64_t ldy, float *scratch) {
    int64_t cols = w->cols;
    if (w->type != BN_GGML_F16 && w->type != BN_GGML_Q8_0) {
        /* Other types: decode each row once, then one dot per token. */
        for (int64_t r = r0; r < r1; r++) {
            bn_ggml_dequantize_row(w->type, w->data + r * w->row_bytes, scratch, cols, 0.0f);
            for (int t = 0; t < n_tok; t++) y[(int64_t)t * ldy + r] = bn_dot_f32_avx2(scratch, x + (int64_t)t * cols, cols);
        }
        return;
    }
    for (int t0 = 0; t0 < n_tok; t0 += TOK_TILE) {
        int nt = n_tok - t0 < TOK_TILE ? n_tok - t0 : TOK_TILE;
        const float *xt = x + (int64_t)t0 * cols;
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *wr = w->data + r * w->row_bytes;
            float d[TOK_TILE];
            if (t0 == 0 && r + DENSE_PREFETCH_ROWS < w->rows)
                prefetch_row(wr + DENSE_PREFETCH_ROWS * w->row_bytes, (int64_t)w->row_bytes);
            if (w->type == BN_GGML_F16) {
                switch (nt) {
                case 1: d[0] = bn_dot_f16_avx2(xt, (const uint16_t *)wr, cols); break;
                case 2: f16_row_dots((const uint16_t *)wr, cols, xt, 2, d); break;
                case 3: f16_row_dots((const uint16_t *)wr, cols, xt, 3, d); break;
                default: f16_row_dots((const uint16_t *)wr, cols, xt, 4, d); break;
                }
            } else {
                switch (nt) {
                case 1: q8_0_row_dots(wr, cols, xt, 1, d); break;
                case 2: q8_0_row_dots(wr, cols, xt, 2, d); break;
                case 3: q8_0_row_dots(wr, cols, xt, 3, d); break;
                default: q8_0_row_dots(wr, cols, xt, 4, d); break;
                }
            }
            for (int t = 0; t < nt; t++) y[(int64_t)(t0 + t) * ldy + r] = d[t];
        }
    }
}

const bn_cpu_kernels bn_cpu_kernels_avx2_table = {
    .name = "avx2",
    .quantize_row_i8 = quantize_row_i8_avx2,
    .ternary_gemm = ternary_gemm_avx2,
    .dense_gemm = bn_dense_gemm_avx2,
    .dot_f32 = bn_dot_f32_avx2,
    .dot_f16 = bn_dot_f16_avx2,
    .axpy_f32 = bn_axpy_f32_avx2,
    .axpy_f16 = bn_axpy_f16_avx2,
    .f32_to_f16 = bn_f32_to_f16_avx2,
};
