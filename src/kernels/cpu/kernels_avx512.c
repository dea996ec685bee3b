/* AVX-512 (F, BW, VL, DQ) + VNNI kernels.
 *
 * Ternary GEMM: a 32-byte block is broadcast to both halves of a zmm; shifting
 * the 16-bit lanes right by (6 | 4) and (2 | 0) and masking with 3 gives
 * [codes 0..31 | codes 32..63] and [codes 64..95 | codes 96..127], which line
 * up with two plain 64-byte loads of the activations. vpdpbusd multiplies the
 * unsigned codes by the signed int8 activations and accumulates in int32, so
 * there is no overflow to manage and the integers equal the reference's.
 *
 * Two blocks are in flight with separate accumulators for each half (four
 * independent dependency chains per token), so one-token GEMV is not bound by
 * vpdpbusd latency; a tile of up to four tokens reuses every decoded block. */
#include <immintrin.h>
#include <math.h>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/kernels_ref.h"
#include "kernels/cpu/kernels_x86.h"

#define TOK_TILE 4
#define ROW_GROUP 32

static inline __m512i codes_of(const uint8_t *blk, __m512i shift, __m512i m3) {
    __m512i raw = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)blk));
    return _mm512_and_si512(_mm512_srlv_epi16(raw, shift), m3);
}

static inline __attribute__((always_inline)) void row_dots(const uint8_t *wr, int64_t nb, const int8_t *q,
                                                           int64_t ldq, int nt, int32_t *out) {
    const __m512i m3 = _mm512_set1_epi8(3);
    /* Lanes 0-15 (the low 256 bits) shift by the first count, 16-31 by the second. */
    const __m512i sh01 = _mm512_inserti64x4(_mm512_set1_epi16(6), _mm256_set1_epi16(4), 1);
    const __m512i sh23 = _mm512_inserti64x4(_mm512_set1_epi16(2), _mm256_set1_epi16(0), 1);
    __m512i acc[TOK_TILE][4];
    for (int t = 0; t < nt; t++) acc[t][0] = acc[t][1] = acc[t][2] = acc[t][3] = _mm512_setzero_si512();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        __m512i a01 = codes_of(wr + b * 32, sh01, m3), a23 = codes_of(wr + b * 32, sh23, m3);
        __m512i b01 = codes_of(wr + b * 32 + 32, sh01, m3), b23 = codes_of(wr + b * 32 + 32, sh23, m3);
        for (int t = 0; t < nt; t++) {
            const int8_t *qb = q + t * ldq + b * BN_TERNARY_BLOCK;
            acc[t][0] = _mm512_dpbusd_epi32(acc[t][0], a01, _mm512_loadu_si512(qb));
            acc[t][1] = _mm512_dpbusd_epi32(acc[t][1], a23, _mm512_loadu_si512(qb + 64));
            acc[t][2] = _mm512_dpbusd_epi32(acc[t][2], b01, _mm512_loadu_si512(qb + 128));
            acc[t][3] = _mm512_dpbusd_epi32(acc[t][3], b23, _mm512_loadu_si512(qb + 192));
        }
    }
    if (b < nb) {
        __m512i a01 = codes_of(wr + b * 32, sh01, m3), a23 = codes_of(wr + b * 32, sh23, m3);
        for (int t = 0; t < nt; t++) {
            const int8_t *qb = q + t * ldq + b * BN_TERNARY_BLOCK;
            acc[t][0] = _mm512_dpbusd_epi32(acc[t][0], a01, _mm512_loadu_si512(qb));
            acc[t][1] = _mm512_dpbusd_epi32(acc[t][1], a23, _mm512_loadu_si512(qb + 64));
        }
    }
    for (int t = 0; t < nt; t++) {
        __m512i s = _mm512_add_epi32(_mm512_add_epi32(acc[t][0], acc[t][1]), _mm512_add_epi32(acc[t][2], acc[t][3]));
        out[t] = _mm512_reduce_add_epi32(s);
    }
}

/* Streaming from DRAM, one row at a time leaves too few misses in flight
 * for a single core to reach its bandwidth; asking for a row a few rows
 * ahead (first token tile only: later tiles find the rows in cache) fixes
 * that at the cost of one prefetch per cache line. */
#define PREFETCH_ROWS 4

static inline void prefetch_row(const uint8_t *p, int64_t bytes) {
    for (int64_t o = 0; o < bytes; o += 64) _mm_prefetch((const char *)p + o, _MM_HINT_T0);
}

static void ternary_gemm_avx512(const bn_ternary *w, int64_t r0, int64_t r1, const bn_qact *a, int n_tok, float *y,
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

/* Bit-exact with bn_quantize_row_i8_ref (same product, round half to even,
 * clamp, int32 sum); the tail uses masked loads and stores. */
static void quantize_row_i8_avx512(const float *x, int64_t n, int8_t *q, float *scale, int32_t *sum) {
    __m512 vmax = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_maskz_loadu_ps(m, x + i)));
    }
    float amax = _mm512_reduce_max_ps(vmax);
    float s = 127.0f / fmaxf(amax, 1e-5f);

    const __m512 vs = _mm512_set1_ps(s), lo = _mm512_set1_ps(-128.0f), hi = _mm512_set1_ps(127.0f);
    __m512i acc = _mm512_setzero_si512();
    for (i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 f = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vs);
        f = _mm512_roundscale_ps(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        f = _mm512_min_ps(_mm512_max_ps(f, lo), hi);
        __m512i v = _mm512_cvtps_epi32(f); /* masked-off lanes are 0 */
        acc = _mm512_add_epi32(acc, v);
        _mm_mask_storeu_epi8(q + i, m, _mm512_cvtsepi32_epi8(v));
    }
    *scale = s;
    *sum = _mm512_reduce_add_epi32(acc);
}

const bn_cpu_kernels bn_cpu_kernels_avx512_table = {
    .name = "avx512",
    .quantize_row_i8 = quantize_row_i8_avx512,
    .ternary_gemm = ternary_gemm_avx512,
    .dense_gemm = bn_dense_gemm_avx2,
    .dot_f32 = bn_dot_f32_avx2,
    .dot_f16 = bn_dot_f16_avx2,
    .axpy_f32 = bn_axpy_f32_avx2,
    .axpy_f16 = bn_axpy_f16_avx2,
    .f32_to_f16 = bn_f32_to_f16_avx2,
};
