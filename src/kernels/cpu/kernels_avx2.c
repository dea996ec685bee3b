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
 * Rows go in pairs, and each decoded block is reused across a tile of up to
 * four tokens (GEMM); with one token this is a GEMV streaming each row once.
 * The output head: F16 rows four at a time (decode), Q8_0 rows against
 * int8-quantized activations (integer block dots). */
#include <immintrin.h>
#include <math.h>
#include <string.h>

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

/* Two rows at once against nt (≤ TOK_TILE) token rows: each activation
 * vector loaded feeds both rows, halving the loads of row_dots (measured on
 * Zen 3: GEMV from L2 9.5-14.6 → 15.6-16.7 GB/s; GEMM unchanged, ~225
 * GOP/s). The codes are decoded a quarter block at a time (two registers
 * live); the int16 sums go to scalars at each flush so that no int32 vector
 * stays live, and an empty asm keeps GCC from re-associating the adds into
 * trees that hold all 32 products at once (it spilled them: 160 GOP/s). */
static inline __attribute__((always_inline)) void row2_dots(const uint8_t *wa, const uint8_t *wb, int64_t nb,
                                                            const int8_t *q, int64_t ldq, int nt, int32_t *oa,
                                                            int32_t *ob) {
    const __m256i m3 = _mm256_set1_epi8(3), ones = _mm256_set1_epi16(1);
    int32_t sa[TOK_TILE] = {0}, sb[TOK_TILE] = {0};
    for (int64_t b0 = 0; b0 < nb; b0 += BLOCKS_PER_FLUSH) {
        int64_t b1 = b0 + BLOCKS_PER_FLUSH < nb ? b0 + BLOCKS_PER_FLUSH : nb;
        __m256i a16[TOK_TILE], b16[TOK_TILE];
        for (int t = 0; t < nt; t++) a16[t] = b16[t] = _mm256_setzero_si256();
        for (int64_t b = b0; b < b1; b++) {
            __m256i ra = _mm256_loadu_si256((const __m256i *)(wa + b * 32));
            __m256i rb = _mm256_loadu_si256((const __m256i *)(wb + b * 32));
            const int8_t *qb = q + b * BN_TERNARY_BLOCK;
#define BN_QUARTER(SH, OFF)                                                                          \
    do {                                                                                             \
        __m256i ca = _mm256_and_si256(_mm256_srli_epi16(ra, SH), m3);                                \
        __m256i cb = _mm256_and_si256(_mm256_srli_epi16(rb, SH), m3);                                \
        for (int t = 0; t < nt; t++) {                                                               \
            __m256i x = _mm256_loadu_si256((const __m256i *)(qb + t * ldq + OFF));                   \
            a16[t] = _mm256_add_epi16(a16[t], _mm256_maddubs_epi16(ca, x));                          \
            b16[t] = _mm256_add_epi16(b16[t], _mm256_maddubs_epi16(cb, x));                          \
            __asm__("" : "+x"(a16[t]), "+x"(b16[t])); /* no re-association into spilled trees */     \
        }                                                                                            \
    } while (0)
            BN_QUARTER(6, 0);
            BN_QUARTER(4, 32);
            BN_QUARTER(2, 64);
            BN_QUARTER(0, 96);
#undef BN_QUARTER
        }
        /* Reduced to scalars at each flush: no int32 vectors stay live. */
        for (int t = 0; t < nt; t++) {
            sa[t] += hsum_i32(_mm256_madd_epi16(a16[t], ones));
            sb[t] += hsum_i32(_mm256_madd_epi16(b16[t], ones));
        }
    }
    for (int t = 0; t < nt; t++) oa[t] = sa[t], ob[t] = sb[t];
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
            int64_t r = g0;
            /* Pairs of rows: each activation load feeds two rows. */
            for (; r + 2 <= g1; r += 2) {
                int32_t da[TOK_TILE], db[TOK_TILE];
                const uint8_t *wa = w->codes + r * row_bytes, *wb = wa + row_bytes;
                if (t0 == 0 && r + 1 + PREFETCH_ROWS < w->rows) {
                    prefetch_row(wa + PREFETCH_ROWS * row_bytes, row_bytes);
                    prefetch_row(wb + PREFETCH_ROWS * row_bytes, row_bytes);
                }
                /* Constant tile widths let the compiler keep everything in registers. */
                switch (nt) {
                case 1: row2_dots(wa, wb, nb, q, w->cols, 1, da, db); break;
                case 2: row2_dots(wa, wb, nb, q, w->cols, 2, da, db); break;
                case 3: row2_dots(wa, wb, nb, q, w->cols, 3, da, db); break;
                default: row2_dots(wa, wb, nb, q, w->cols, 4, da, db); break;
                }
                float wsa = bn_ternary_row_scale(w, r), wsb = bn_ternary_row_scale(w, r + 1);
                for (int t = 0; t < nt; t++) {
                    y[(int64_t)(t0 + t) * ldy + r] = (float)(da[t] - a->sum[t0 + t]) * wsa / a->scale[t0 + t];
                    y[(int64_t)(t0 + t) * ldy + r + 1] = (float)(db[t] - a->sum[t0 + t]) * wsb / a->scale[t0 + t];
                }
            }
            for (; r < g1; r++) {
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

/* ---- Prompt attention: a tile of query rows per KV head ----
 *
 * The per-row path (backend_cpu.c: attend) converts every cached key and
 * value from f16 once per query row and ends each 128-wide dot with a
 * horizontal sum. Here up to BN_ATTN_TILE_ROWS rows that read the same KV
 * head (the G query heads of a group × a few tokens) share one conversion:
 * keys go 8 at a time into a transposed block Kt[d][8], so a register of 8
 * scores per row accumulates q[d] · Kt[d] with no horizontal sums (8 rows
 * per pass: 8 FMA chains); values go BN_ATTN_VBLOCK at a time into f32 rows,
 * and each output row accumulates w_p · v_p in the order of the per-row path
 * (same FMA per element, same order of p: the weighted sum is bit-identical
 * to it; only the dot products are summed in another order). */

/* 8 × 8 floats: rows r[0..8) become columns. */
static inline void transpose8(__m256 r[8]) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20), r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20), r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31), r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31), r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/* Kt[d·8 + j] = key p0 + j, dimension d, for j < cnt (zeros past cnt). */
static void keys_transposed(const uint16_t *K, int p0, int cnt, int hd, float *Kt) {
    for (int d0 = 0; d0 < hd; d0 += 8) {
        __m256 r[8];
        for (int j = 0; j < 8; j++) r[j] = j < cnt ? load_f16(K + (int64_t)(p0 + j) * hd + d0) : _mm256_setzero_ps();
        transpose8(r);
        for (int i = 0; i < 8; i++) _mm256_storeu_ps(Kt + (d0 + i) * 8, r[i]);
    }
}

/* Scores of R rows against the 8 keys of Kt, scaled: one register each. R
 * is a constant (8, or 4 for small groups at decode) so that the
 * accumulators stay in registers; callers pad with repeated rows and a
 * scratch destination. Each row's sum runs over d in order whatever R is:
 * a row's scores do not depend on the tile it is in. */
static inline __attribute__((always_inline)) void scores_r(const float *const *qr, const float *Kt, int hd,
                                                           float inv_sqrt, float *const *dst, int R) {
    __m256 acc[8];
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    for (int d = 0; d < hd; d++) {
        __m256 k = _mm256_loadu_ps(Kt + d * 8);
        for (int r = 0; r < R; r++) acc[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(qr[r] + d), k, acc[r]);
    }
    for (int r = 0; r < R; r++) _mm256_storeu_ps(dst[r], _mm256_mul_ps(acc[r], _mm256_set1_ps(inv_sqrt)));
}

/* o[0..8·NV) += Σ_{p<cnt} w[p] · Vf[p][0..8·NV), p in order. */
static inline __attribute__((always_inline)) void wsum_rows(const float *w, const float *Vf, int hd, int cnt, int NV,
                                                            float *o) {
    __m256 acc[8];
    for (int i = 0; i < NV; i++) acc[i] = _mm256_loadu_ps(o + 8 * i);
    for (int p = 0; p < cnt; p++) {
        __m256 wp = _mm256_broadcast_ss(w + p);
        for (int i = 0; i < NV; i++) acc[i] = _mm256_fmadd_ps(wp, _mm256_loadu_ps(Vf + (int64_t)p * hd + 8 * i), acc[i]);
    }
    for (int i = 0; i < NV; i++) _mm256_storeu_ps(o + 8 * i, acc[i]);
}

void bn_attend_tile_avx2(const float *q, int64_t ldq, int G, int nt, int n0, int hd, const uint16_t *K,
                             const uint16_t *V, float *scratch, float *out) {
    if (hd % 8) {
        bn_attend_tile_ref(q, ldq, G, nt, n0, hd, K, V, scratch, out);
        return;
    }
    int nr = nt * G, n = n0 + nt - 1, lds = (n + 7) / 8 * 8;
    float inv_sqrt = 1.0f / sqrtf((float)hd);
    float *S = scratch, *Kt = S + (int64_t)nr * lds, *Vf = Kt + 8 * hd;
    const float *qr[BN_ATTN_TILE_ROWS];
    float *orow[BN_ATTN_TILE_ROWS];
    int len[BN_ATTN_TILE_ROWS];
    for (int r = 0; r < nr; r++) {
        qr[r] = q + (r / G) * ldq + (int64_t)(r % G) * hd;
        orow[r] = out + (r / G) * ldq + (int64_t)(r % G) * hd;
        len[r] = n0 + r / G;
    }
    /* Scores, 8 keys at a time; rows past their length compute a few
     * scores they then ignore. */
    for (int p0 = 0; p0 < n; p0 += 8) {
        keys_transposed(K, p0, n - p0 < 8 ? n - p0 : 8, hd, Kt);
        for (int r0 = 0; r0 < nr; r0 += 8) {
            const float *src[8];
            float *dst[8], pad[8];
            for (int r = 0; r < 8; r++) {
                int ok = r0 + r < nr;
                src[r] = qr[ok ? r0 + r : r0];
                dst[r] = ok ? S + (int64_t)(r0 + r) * lds + p0 : pad;
            }
            if (nr - r0 <= 4) scores_r(src, Kt, hd, inv_sqrt, dst, 4);
            else scores_r(src, Kt, hd, inv_sqrt, dst, 8);
        }
    }
    /* Softmax per row; the weights w_p = e_p / Σe as in the per-row path. */
    for (int r = 0; r < nr; r++) {
        float *sr = S + (int64_t)r * lds, inv_sum = bn_softmax_exp(sr, len[r]);
        for (int p = 0; p < len[r]; p++) sr[p] *= inv_sum;
        memset(orow[r], 0, (size_t)hd * sizeof(float));
    }
    for (int p0 = 0; p0 < n; p0 += BN_ATTN_VBLOCK) {
        int cnt = n - p0 < BN_ATTN_VBLOCK ? n - p0 : BN_ATTN_VBLOCK;
        for (int p = 0; p < cnt; p++)
            for (int d = 0; d < hd; d += 8) _mm256_storeu_ps(Vf + (int64_t)p * hd + d, load_f16(V + (int64_t)(p0 + p) * hd + d));
        for (int r = 0; r < nr; r++) {
            int c = len[r] - p0 < cnt ? len[r] - p0 : cnt;
            if (c <= 0) continue;
            const float *w = S + (int64_t)r * lds + p0;
            int d = 0;
            for (; d + 64 <= hd; d += 64) wsum_rows(w, Vf + d, hd, c, 8, orow[r] + d);
            for (; d < hd; d += 8) wsum_rows(w, Vf + d, hd, c, 1, orow[r] + d);
        }
    }
}

/* Dense rows (the output head). F16 and Q8_0 rows are converted in registers
 * and reused across a tile of tokens; other types are decoded to scratch. */

/* Decode head: dots of NR consecutive F16 rows (stride ld elements) with
 * one token; each x vector loaded feeds NR rows, and the NR chains of FMAs
 * are independent (two per row hide the FMA latency). Software prefetch:
 * one line F16_PF bytes ahead per 64 bytes read, per row, into L1, as in
 * the AVX-512 kernel. Measured on Zen 3 (2 threads, 2B4T's 657 MB head):
 * 27-28 ms against 30-31 with the former burst of the next four rows; 384
 * bytes ahead ties, 1536 is slower. (The same idea for the ternary GEMV,
 * 1-8 KB ahead into L1 or L2, was 5-10 % slower there than its burst.) */
#ifndef F16_PF
#define F16_PF 768
#endif

static inline __attribute__((always_inline)) void f16_rows_dot(const uint16_t *wr, int64_t ld, int64_t cols,
                                                               const float *x, int nr, float *out) {
    __m256 acc[4][2];
    for (int i = 0; i < nr; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= cols; k += 16) {
        __m256 x0 = _mm256_loadu_ps(x + k), x1 = _mm256_loadu_ps(x + k + 8);
#if F16_PF > 0
        if (!(k & 31))
            for (int i = 0; i < nr; i++) _mm_prefetch((const char *)(wr + i * ld + k) + F16_PF, _MM_HINT_T0);
#endif
        for (int i = 0; i < nr; i++) {
            acc[i][0] = _mm256_fmadd_ps(load_f16(wr + i * ld + k), x0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(load_f16(wr + i * ld + k + 8), x1, acc[i][1]);
        }
    }
    for (int i = 0; i < nr; i++) {
        float s = hsum_ps(_mm256_add_ps(acc[i][0], acc[i][1]));
        for (int64_t j = k; j < cols; j++) s += bn_fp16_to_fp32(wr[i * ld + j]) * x[j];
        out[i] = s;
    }
}

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

/* Q8_0 (the opt-in int8 head): blocks of an fp16 scale and 32 int8 values.
 * The activations are quantized once per call to int8 blocks of 32
 * (bn_quantize_row_q8_blocks_ref, bit-exact), so a block's dot is integer:
 * maddubs(|w|, sign(x, w)) (|w| ≤ 128, |x| ≤ 127: a pair never exceeds
 * 32512), madd to int32, then one float FMA by d_w·d_x. */
void bn_quantize_q8_blocks_avx2(const float *x, int64_t n, int8_t *q, float *d) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t b = 0; b < n / 32; b++) {
        const float *xb = x + b * 32;
        __m256 v[4];
        for (int j = 0; j < 4; j++) v[j] = _mm256_loadu_ps(xb + 8 * j);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                                 _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float amax = _mm_cvtss_f32(m4);
        float id = amax > 1e-30f ? 127.0f / amax : 0.0f;
        d[b] = amax / 127.0f;
        const __m256 vid = _mm256_set1_ps(id);
        __m256i iv[4];
        for (int j = 0; j < 4; j++) /* |x·id| ≤ 127 after rounding: no clamp needed */
            iv[j] = _mm256_cvtps_epi32(
                _mm256_round_ps(_mm256_mul_ps(v[j], vid), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        __m256i p16a = _mm256_packs_epi32(iv[0], iv[1]), p16b = _mm256_packs_epi32(iv[2], iv[3]);
        _mm256_storeu_si256((__m256i *)(q + b * 32),
                            _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p16a, p16b), perm));
    }
}

static inline __m256 q8_block_dot(__m256i aw, __m256i w, const int8_t *xq) {
    __m256i p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)xq), w));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

/* Dots of one Q8_0 row with nt quantized tokens (qx + t*cols, dx + t*nb).
 * Two accumulators per token (even / odd blocks) hide the FMA latency. */
static inline __attribute__((always_inline)) void q8_0_row_dots(const uint8_t *wr, int64_t nb, const int8_t *qx,
                                                                const float *dx, int nt, float *out) {
    __m256 acc[TOK_TILE][2];
    for (int t = 0; t < nt; t++) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        const uint8_t *b0 = wr + b * 34, *b1 = b0 + 34;
        float d0 = _cvtsh_ss((unsigned short)(b0[0] | b0[1] << 8)), d1 = _cvtsh_ss((unsigned short)(b1[0] | b1[1] << 8));
        __m256i w0 = _mm256_loadu_si256((const __m256i *)(b0 + 2)), w1 = _mm256_loadu_si256((const __m256i *)(b1 + 2));
        __m256i a0 = _mm256_abs_epi8(w0), a1 = _mm256_abs_epi8(w1);
        for (int t = 0; t < nt; t++) {
            const int8_t *xq = qx + (t * nb + b) * 32;
            const float *xd = dx + t * nb + b;
            acc[t][0] = _mm256_fmadd_ps(q8_block_dot(a0, w0, xq), _mm256_set1_ps(d0 * xd[0]), acc[t][0]);
            acc[t][1] = _mm256_fmadd_ps(q8_block_dot(a1, w1, xq + 32), _mm256_set1_ps(d1 * xd[1]), acc[t][1]);
        }
    }
    for (; b < nb; b++) {
        const uint8_t *b0 = wr + b * 34;
        float d0 = _cvtsh_ss((unsigned short)(b0[0] | b0[1] << 8));
        __m256i w0 = _mm256_loadu_si256((const __m256i *)(b0 + 2)), a0 = _mm256_abs_epi8(w0);
        for (int t = 0; t < nt; t++)
            acc[t][0] = _mm256_fmadd_ps(q8_block_dot(a0, w0, qx + (t * nb + b) * 32), _mm256_set1_ps(d0 * dx[t * nb + b]),
                                        acc[t][0]);
    }
    for (int t = 0; t < nt; t++) out[t] = hsum_ps(_mm256_add_ps(acc[t][0], acc[t][1]));
}

static void dense_q8_0_avx2(const bn_dense *w, int64_t r0, int64_t r1, const float *x, int n_tok, float *y,
                            int64_t ldy, float *scratch);

/* Head rows are several KB: two rows ahead keeps enough misses in flight. */
#define DENSE_PREFETCH_ROWS 2

void bn_dense_gemm_avx2(const bn_dense *w, int64_t r0, int64_t r1, const float *x, int n_tok, float *y,
                            int64_t ldy, float *scratch) {
    int64_t cols = w->cols;
    if (w->type == BN_GGML_Q8_0) {
        dense_q8_0_avx2(w, r0, r1, x, n_tok, y, ldy, scratch);
        return;
    }
    if (w->type != BN_GGML_F16) {
        /* Other types: decode each row once, then one dot per token. */
        for (int64_t r = r0; r < r1; r++) {
            bn_ggml_dequantize_row(w->type, w->data + r * w->row_bytes, scratch, cols, 0.0f);
            for (int t = 0; t < n_tok; t++) y[(int64_t)t * ldy + r] = bn_dot_f32_avx2(scratch, x + (int64_t)t * cols, cols);
        }
        return;
    }
    if (n_tok == 1 && w->row_bytes % 2 == 0) {
        /* Decode: four rows at a time share each load of x. */
        int64_t ld = (int64_t)w->row_bytes / 2, r = r0;
        for (; r + 4 <= r1; r += 4) {
            const uint8_t *wr = w->data + r * w->row_bytes;
#if F16_PF == 0
            if (r + 8 <= w->rows) prefetch_row(wr + 4 * w->row_bytes, 4 * (int64_t)w->row_bytes); /* the next 4 */
#endif
            f16_rows_dot((const uint16_t *)wr, ld, cols, x, 4, y + r);
        }
        for (; r < r1; r++) y[r] = bn_dot_f16_avx2(x, (const uint16_t *)(w->data + r * w->row_bytes), cols);
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
            switch (nt) {
            case 1: d[0] = bn_dot_f16_avx2(xt, (const uint16_t *)wr, cols); break;
            case 2: f16_row_dots((const uint16_t *)wr, cols, xt, 2, d); break;
            case 3: f16_row_dots((const uint16_t *)wr, cols, xt, 3, d); break;
            default: f16_row_dots((const uint16_t *)wr, cols, xt, 4, d); break;
            }
            for (int t = 0; t < nt; t++) y[(int64_t)(t0 + t) * ldy + r] = d[t];
        }
    }
}

/* Tokens are quantized into scratch (cols floats = 4·cols bytes) as many at
 * a time as fit (cols bytes of q and cols/32 floats of d each: 3), then
 * every row streams once per such group. */
static void dense_q8_0_avx2(const bn_dense *w, int64_t r0, int64_t r1, const float *x, int n_tok, float *y,
                            int64_t ldy, float *scratch) {
    int64_t cols = w->cols, nb = cols / 32;
    int per = (int)(cols * 4 / (cols + nb * 4));
    if (per > 3) per = 3; /* the tile widths compiled below */
    int8_t *qx = (int8_t *)scratch;
    float *dx = (float *)(qx + per * cols);
    for (int t0 = 0; t0 < n_tok; t0 += per) {
        int nt = n_tok - t0 < per ? n_tok - t0 : per;
        for (int t = 0; t < nt; t++) bn_quantize_q8_blocks_avx2(x + (int64_t)(t0 + t) * cols, cols, qx + t * cols, dx + t * nb);
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *wr = w->data + r * w->row_bytes;
            float d[TOK_TILE];
            if (r + DENSE_PREFETCH_ROWS < w->rows) prefetch_row(wr + DENSE_PREFETCH_ROWS * w->row_bytes, (int64_t)w->row_bytes);
            switch (nt) {
            case 1: q8_0_row_dots(wr, nb, qx, dx, 1, d); break;
            case 2: q8_0_row_dots(wr, nb, qx, dx, 2, d); break;
            default: q8_0_row_dots(wr, nb, qx, dx, 3, d); break;
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
    .attend_tile = bn_attend_tile_avx2,
};
