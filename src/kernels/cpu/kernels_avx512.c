/* AVX-512 (F, BW, VL, DQ) + VNNI kernels.
 *
 * Ternary GEMV and small GEMM (n_tok < GEMM_MIN_TOKENS): a 32-byte block is
 * broadcast to both halves of a zmm; masking it with (0xC0 | 0x30) and
 * (0x0C | 0x03) leaves [codes 0..31 | codes 32..63] and [codes 64..95 |
 * codes 96..127], each still scaled by its power of two, which line up with
 * two plain 64-byte loads of the activations. vpdpbusd multiplies the
 * unsigned (scaled) codes by the signed int8 activations and accumulates in
 * int32 without overflow; one exact shift per half at the end removes the
 * scale, so the integers equal the reference's. Two blocks are in flight
 * with separate accumulators for each half (four independent dependency
 * chains per token), so one-token GEMV is not bound by vpdpbusd latency; one
 * token takes rows in pairs (each activation load serves both), a tile of up
 * to four tokens reuses every decoded block, then each (row, token) is
 * reduced horizontally.
 *
 * Prompt GEMM (n_tok ≥ GEMM_MIN_TOKENS): the codes of 32 rows × 512 weights
 * are expanded once into a byte panel laid out [k/4][row][4] (a dword gather
 * across 16 rows is the transpose; the same shifts and masks expand it), and
 * a register tile of 2 × 12 accumulators multiplies each panel vector by a
 * broadcast of 4 activation bytes of each token. No horizontal sums: each
 * accumulator is 16 rows of one token, finished with vector float math in the
 * reference's expression. See "Prompt GEMM" below.
 *
 * Output head: Q8_0 rows four at a time against int8-quantized activations,
 * exact integer block sums (see "The int8 (Q8_0) output head" below); F16 at
 * decode with whole-line loads and interleaved prefetch ("The F16 output head
 * at decode"); F16 prompts and the other types use the AVX2 kernels
 * (kernels_x86.h). */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "format/ggml_types.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/kernels_ref.h"
#include "kernels/cpu/kernels_x86.h"

#define TOK_TILE 4
#define ROW_GROUP 32

/* Prompt GEMM (below): rows per panel, weights per panel chunk, tokens per
 * register tile; from GEMM_MIN_TOKENS tokens on it beats the block kernel. */
#define PANEL_ROWS 32
#define PANEL_K 512
#define GEMM_TILE 12
#define GEMM_MIN_TOKENS 5

#ifndef T_HINT
#define T_HINT _MM_HINT_T1
#endif

/* A 32-byte block broadcast to both halves of a zmm and ANDed with a
 * per-half mask: no shift. The codes stay in place, so each byte holds
 * code << (6 - 2·run): vpdpbusd then accumulates 2^(6-2·run) × Σ code·q,
 * a multiple of the power of two, and since every 256-bit half of an
 * accumulator sees one run only, one exact arithmetic shift per half at the
 * end recovers Σ code·q (see row_dots). A shift per block would put a
 * second uop on the port that vpdpbusd needs (p0); the AND goes to p5, which
 * doubles the cache-resident GEMV rate. Bounds: |code·2^6·q| ≤ 192·128, so
 * an accumulator lane stays far from 2^31 for rows of up to ~10^5 inputs. */
static inline __m512i codes_of(const uint8_t *blk, __m512i mask) {
    return _mm512_and_si512(_mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)blk)), mask);
}

static inline __attribute__((always_inline)) void row_dots(const uint8_t *wr, int64_t nb, const int8_t *q,
                                                           int64_t ldq, int nt, int64_t pf, int32_t *out) {
    /* Lanes 0-15 (the low 256 bits) hold the first run, 16-31 the second. */
    const __m512i m01 = _mm512_inserti64x4(_mm512_set1_epi8((char)0xC0), _mm256_set1_epi8(0x30), 1);
    const __m512i m23 = _mm512_inserti64x4(_mm512_set1_epi8(0x0C), _mm256_set1_epi8(0x03), 1);
    const __m512i sh01 = _mm512_inserti64x4(_mm512_set1_epi32(6), _mm256_set1_epi32(4), 1);
    const __m512i sh23 = _mm512_inserti64x4(_mm512_set1_epi32(2), _mm256_set1_epi32(0), 1);
    __m512i acc[TOK_TILE][4];
    for (int t = 0; t < nt; t++) acc[t][0] = acc[t][1] = acc[t][2] = acc[t][3] = _mm512_setzero_si512();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        if (pf) _mm_prefetch((const char *)(uintptr_t)((uintptr_t)wr + (uintptr_t)(b * 32 + pf)), T_HINT);
        __m512i a01 = codes_of(wr + b * 32, m01), a23 = codes_of(wr + b * 32, m23);
        __m512i b01 = codes_of(wr + b * 32 + 32, m01), b23 = codes_of(wr + b * 32 + 32, m23);
        for (int t = 0; t < nt; t++) {
            const int8_t *qb = q + t * ldq + b * BN_TERNARY_BLOCK;
            acc[t][0] = _mm512_dpbusd_epi32(acc[t][0], a01, _mm512_loadu_si512(qb));
            acc[t][1] = _mm512_dpbusd_epi32(acc[t][1], a23, _mm512_loadu_si512(qb + 64));
            acc[t][2] = _mm512_dpbusd_epi32(acc[t][2], b01, _mm512_loadu_si512(qb + 128));
            acc[t][3] = _mm512_dpbusd_epi32(acc[t][3], b23, _mm512_loadu_si512(qb + 192));
        }
    }
    if (b < nb) {
        __m512i a01 = codes_of(wr + b * 32, m01), a23 = codes_of(wr + b * 32, m23);
        for (int t = 0; t < nt; t++) {
            const int8_t *qb = q + t * ldq + b * BN_TERNARY_BLOCK;
            acc[t][0] = _mm512_dpbusd_epi32(acc[t][0], a01, _mm512_loadu_si512(qb));
            acc[t][1] = _mm512_dpbusd_epi32(acc[t][1], a23, _mm512_loadu_si512(qb + 64));
        }
    }
    for (int t = 0; t < nt; t++) {
        __m512i s = _mm512_add_epi32(_mm512_srav_epi32(_mm512_add_epi32(acc[t][0], acc[t][2]), sh01),
                                     _mm512_srav_epi32(_mm512_add_epi32(acc[t][1], acc[t][3]), sh23));
        out[t] = _mm512_reduce_add_epi32(s);
    }
}

/* One token, two rows: each activation vector loaded once for both rows,
 * so a 64-byte step of weights costs two activation loads instead of four
 * (loads, not vpdpbusd, then bound the cache-resident rate). Same integers
 * as row_dots. */
static inline __attribute__((always_inline)) void row_dots_x2(const uint8_t *w0, const uint8_t *w1, int64_t nb,
                                                              const int8_t *q, int64_t pf, int32_t *out) {
    const __m512i m01 = _mm512_inserti64x4(_mm512_set1_epi8((char)0xC0), _mm256_set1_epi8(0x30), 1);
    const __m512i m23 = _mm512_inserti64x4(_mm512_set1_epi8(0x0C), _mm256_set1_epi8(0x03), 1);
    const __m512i sh01 = _mm512_inserti64x4(_mm512_set1_epi32(6), _mm256_set1_epi32(4), 1);
    const __m512i sh23 = _mm512_inserti64x4(_mm512_set1_epi32(2), _mm256_set1_epi32(0), 1);
    __m512i acc[2][4];
    for (int r = 0; r < 2; r++) acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = _mm512_setzero_si512();
    const uint8_t *wr[2] = {w0, w1};
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        if (pf) {
            _mm_prefetch((const char *)(uintptr_t)((uintptr_t)w0 + (uintptr_t)(b * 32 + pf)), T_HINT);
            _mm_prefetch((const char *)(uintptr_t)((uintptr_t)w1 + (uintptr_t)(b * 32 + pf)), T_HINT);
        }
        const int8_t *qb = q + b * BN_TERNARY_BLOCK;
        __m512i q0 = _mm512_loadu_si512(qb), q1 = _mm512_loadu_si512(qb + 64);
        __m512i q2 = _mm512_loadu_si512(qb + 128), q3 = _mm512_loadu_si512(qb + 192);
        for (int r = 0; r < 2; r++) {
            acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], codes_of(wr[r] + b * 32, m01), q0);
            acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], codes_of(wr[r] + b * 32, m23), q1);
            acc[r][2] = _mm512_dpbusd_epi32(acc[r][2], codes_of(wr[r] + b * 32 + 32, m01), q2);
            acc[r][3] = _mm512_dpbusd_epi32(acc[r][3], codes_of(wr[r] + b * 32 + 32, m23), q3);
        }
    }
    if (b < nb) {
        const int8_t *qb = q + b * BN_TERNARY_BLOCK;
        __m512i q0 = _mm512_loadu_si512(qb), q1 = _mm512_loadu_si512(qb + 64);
        for (int r = 0; r < 2; r++) {
            acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], codes_of(wr[r] + b * 32, m01), q0);
            acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], codes_of(wr[r] + b * 32, m23), q1);
        }
    }
    for (int r = 0; r < 2; r++) {
        __m512i s = _mm512_add_epi32(_mm512_srav_epi32(_mm512_add_epi32(acc[r][0], acc[r][2]), sh01),
                                     _mm512_srav_epi32(_mm512_add_epi32(acc[r][1], acc[r][3]), sh23));
        out[r] = _mm512_reduce_add_epi32(s);
    }
}

/* Streaming from DRAM, one row at a time leaves too few misses in flight
 * for a single core to reach its bandwidth (at 2 threads each core is the
 * limit, not the memory system: a read probe gets 2 × its one-thread
 * figure). The GEMV asks for the line T_PF bytes ahead of the one it reads,
 * one prefetch per cache line interleaved with the work (first token tile
 * only: later tiles find the rows in cache), into L2 (T_HINT): an L2
 * prefetch does not hold one of the few L1 fill buffers until its line
 * arrives, so it can run further ahead. Measured at 2 threads over 2B4T's
 * 210 matrices: 8 KB ahead into L2 beats the former whole row 4 rows ahead
 * into L1 (T_PF 0) by 5-10 %; 2 KB into L2 gains less, into L1 at 0.5-1 KB
 * nothing. */
#define PREFETCH_ROWS 4
#ifndef T_PF
#define T_PF 8192
#endif

static inline void prefetch_row(const uint8_t *p, int64_t bytes) {
    for (int64_t o = 0; o < bytes; o += 64) _mm_prefetch((const char *)p + o, _MM_HINT_T0);
}

static void ternary_gemm_panel(const bn_ternary *w, int64_t r0, int64_t r1, const bn_qact *a, int n_tok, float *y,
                               int64_t ldy);

static void ternary_gemm_avx512(const bn_ternary *w, int64_t r0, int64_t r1, const bn_qact *a, int n_tok, float *y,
                                int64_t ldy) {
    if (n_tok >= GEMM_MIN_TOKENS) {
        ternary_gemm_panel(w, r0, r1, a, n_tok, y, ldy);
        return;
    }
    int64_t nb = w->cols / BN_TERNARY_BLOCK, row_bytes = w->cols / 4;
    for (int64_t g0 = r0; g0 < r1; g0 += ROW_GROUP) {
        int64_t g1 = g0 + ROW_GROUP < r1 ? g0 + ROW_GROUP : r1;
        for (int t0 = 0; t0 < n_tok; t0 += TOK_TILE) {
            int nt = n_tok - t0 < TOK_TILE ? n_tok - t0 : TOK_TILE;
            const int8_t *q = a->q + (int64_t)t0 * w->cols;
            int64_t r = g0;
            if (nt == 1) { /* decode: rows in pairs */
                int64_t pf = t0 == 0 && T_PF > 0 ? T_PF : 0;
                for (; r + 2 <= g1; r += 2) {
                    int32_t d[2];
                    const uint8_t *wr = w->codes + r * row_bytes;
                    row_dots_x2(wr, wr + row_bytes, nb, q, pf, d);
                    for (int k = 0; k < 2; k++)
                        y[r + k] = (float)(d[k] - a->sum[t0]) * bn_ternary_row_scale(w, r + k) / a->scale[t0];
                }
            }
            for (; r < g1; r++) {
                int32_t d[TOK_TILE];
                const uint8_t *wr = w->codes + r * row_bytes;
#if T_PF == 0
                if (t0 == 0 && r + PREFETCH_ROWS < w->rows) prefetch_row(wr + PREFETCH_ROWS * row_bytes, row_bytes);
#endif
                int64_t pf = t0 == 0 && T_PF > 0 ? T_PF : 0;
                switch (nt) {
                case 1: row_dots(wr, nb, q, w->cols, 1, pf, d); break;
                case 2: row_dots(wr, nb, q, w->cols, 2, pf, d); break;
                case 3: row_dots(wr, nb, q, w->cols, 3, pf, d); break;
                default: row_dots(wr, nb, q, w->cols, 4, pf, d); break;
                }
                float ws = bn_ternary_row_scale(w, r);
                for (int t = 0; t < nt; t++)
                    y[(int64_t)(t0 + t) * ldy + r] = (float)(d[t] - a->sum[t0 + t]) * ws / a->scale[t0 + t];
            }
        }
    }
}

/* ---- Prompt GEMM: panels of expanded codes, a register-blocked tile ----
 *
 * For a group of PANEL_ROWS rows and a chunk of PANEL_K weights, the codes
 * are expanded once into a panel of bytes laid out [k/4][row][4]: one zmm
 * holds 4 consecutive k of 16 rows. A gather of one dword from each of 16
 * rows gives 4 raw bytes = 16 codes per row, and the shift/mask trick turns
 * it into the panel vectors of 4 k-steps; the transpose is done by the gather.
 * The tile then multiplies each panel vector by a broadcast of 4 activation
 * bytes of every token: acc[h][t] += codes(16 rows, 4 k) · q_t(4 k), so no
 * horizontal sums are needed and each acc zmm is 16 rows of one token.
 * Per k-step: 2 panel loads and nt broadcasts feed 2·nt vpdpbusd.
 *
 * The panel lives on the stack (PANEL_ROWS·PANEL_K bytes, L1-sized); across
 * the K chunks of a row group the int32 partial sums are parked in y (the
 * tile's own outputs, 4 bytes each, rows of this call only), and the last
 * chunk turns them into floats with the reference's expression. */

/* Expands rows [g0, g1) (≤ PANEL_ROWS) × weights [k0, k0 + kc) into panel;
 * rows past g1 get code 0, which adds nothing to the integer sums. */
static void build_panel(const bn_ternary *w, int64_t g0, int64_t g1, int64_t k0, int64_t kc, __m512i *panel) {
    const int64_t row_bytes = w->cols / 4;
    const __m512i m3 = _mm512_set1_epi8(3);
    const __m512i idx = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32((int)row_bytes));
    for (int h = 0; h < 2; h++) {
        int64_t n = g1 - (g0 + 16 * h);
        if (n <= 0) {
            for (int64_t kk = 0; kk < kc / 4; kk++) panel[2 * kk + h] = _mm512_setzero_si512();
            continue;
        }
        __mmask16 m = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
        const uint8_t *base = w->codes + (g0 + 16 * h) * row_bytes + k0 / 4;
        for (int64_t blk = 0; blk < kc / BN_TERNARY_BLOCK; blk++)
            for (int d = 0; d < 8; d++) {
                __m512i raw = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, idx, base + blk * 32 + 4 * d, 1);
                /* Byte i of dword d holds weights 32j + 4d + i at shift 6 - 2j. */
                __m512i *dst = panel + 2 * (blk * 32 + d) + h;
                dst[0] = _mm512_and_si512(_mm512_srli_epi16(raw, 6), m3);
                dst[16] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), m3);
                dst[32] = _mm512_and_si512(_mm512_srli_epi16(raw, 2), m3);
                dst[48] = _mm512_and_si512(raw, m3);
            }
    }
}

/* acc += codes · q by vpdpbusd through inline asm: with the intrinsic,
 * GCC 12 copies every accumulator through another register and the stack
 * each k-step (measured at 128 tokens: 236-352 GOP/s, 680 with this). */
static inline __attribute__((always_inline)) __m512i dpbusd(__m512i acc, __m512i codes, __m512i q) {
    __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(codes), "v"(q));
    return acc;
}

static inline __m512i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* Where this chunk's sums go: parked as int32 in y until the last chunk,
 * then (acc − Σq) · row_scale / act_scale, as in the reference. */
typedef struct tile_out {
    float *y;
    int64_t ldy;
    __mmask16 mask[2]; /* valid rows of each half */
    __m512 ws[2];      /* row scales of each half */
    const float *scale;
    const int32_t *sum;
    int first, last;
} tile_out;

static inline void tile_store(const tile_out *o, int t, int h, __m512i v) {
    float *p = o->y + (int64_t)t * o->ldy + 16 * h;
    if (!o->mask[h]) return;
    if (!o->first) v = _mm512_add_epi32(v, _mm512_maskz_loadu_epi32(o->mask[h], p));
    if (!o->last) {
        _mm512_mask_storeu_epi32(p, o->mask[h], v);
        return;
    }
    __m512 f = _mm512_cvtepi32_ps(_mm512_sub_epi32(v, _mm512_set1_epi32(o->sum[t])));
    f = _mm512_div_ps(_mm512_mul_ps(f, o->ws[h]), _mm512_set1_ps(o->scale[t]));
    _mm512_mask_storeu_ps(p, o->mask[h], f);
}

/* nt tokens (q + t·ldq) against a panel of nkk k-steps. */
static inline __attribute__((always_inline)) void gemm_tile(const __m512i *panel, int64_t nkk, const int8_t *q,
                                                            int64_t ldq, int nt, const tile_out *o) {
    __m512i lo[GEMM_TILE], hi[GEMM_TILE];
    for (int t = 0; t < nt; t++) lo[t] = hi[t] = _mm512_setzero_si512();
    for (int64_t kk = 0; kk < nkk; kk++) {
        __m512i p0 = _mm512_load_si512(panel + 2 * kk), p1 = _mm512_load_si512(panel + 2 * kk + 1);
#pragma GCC unroll 16
        for (int t = 0; t < nt; t++) {
            __m512i b = bcast4(q + t * ldq + 4 * kk);
            lo[t] = dpbusd(lo[t], p0, b);
            hi[t] = dpbusd(hi[t], p1, b);
        }
    }
    for (int t = 0; t < nt; t++) tile_store(o, t, 0, lo[t]), tile_store(o, t, 1, hi[t]);
}

static void gemm_tile_n(const __m512i *panel, int64_t nkk, const int8_t *q, int64_t ldq, int nt, const tile_out *o) {
    /* Constant widths let the compiler keep the 2·nt accumulators in registers. */
    switch (nt) {
    case 1: gemm_tile(panel, nkk, q, ldq, 1, o); break;
    case 2: gemm_tile(panel, nkk, q, ldq, 2, o); break;
    case 3: gemm_tile(panel, nkk, q, ldq, 3, o); break;
    case 4: gemm_tile(panel, nkk, q, ldq, 4, o); break;
    case 5: gemm_tile(panel, nkk, q, ldq, 5, o); break;
    case 6: gemm_tile(panel, nkk, q, ldq, 6, o); break;
    case 7: gemm_tile(panel, nkk, q, ldq, 7, o); break;
    case 8: gemm_tile(panel, nkk, q, ldq, 8, o); break;
    case 9: gemm_tile(panel, nkk, q, ldq, 9, o); break;
    case 10: gemm_tile(panel, nkk, q, ldq, 10, o); break;
    case 11: gemm_tile(panel, nkk, q, ldq, 11, o); break;
    default: gemm_tile(panel, nkk, q, ldq, 12, o); break;
    }
}

static void ternary_gemm_panel(const bn_ternary *w, int64_t r0, int64_t r1, const bn_qact *a, int n_tok, float *y,
                               int64_t ldy) {
    _Alignas(64) __m512i panel[PANEL_K / 4 * 2];
    /* Tiles of near-equal width: no thin last tile. */
    int n_tiles = (n_tok + GEMM_TILE - 1) / GEMM_TILE;
    for (int64_t g0 = r0; g0 < r1; g0 += PANEL_ROWS) {
        int64_t g1 = g0 + PANEL_ROWS < r1 ? g0 + PANEL_ROWS : r1;
        tile_out o = {.ldy = ldy, .scale = a->scale, .sum = a->sum};
        for (int h = 0; h < 2; h++) {
            int64_t n = g1 - (g0 + 16 * h);
            o.mask[h] = n <= 0 ? 0 : n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
            o.ws[h] = !o.mask[h] ? _mm512_setzero_ps()
                      : w->row_scale ? _mm512_maskz_loadu_ps(o.mask[h], w->row_scale + g0 + 16 * h)
                                     : _mm512_set1_ps(w->scale);
        }
        for (int64_t k0 = 0; k0 < w->cols; k0 += PANEL_K) {
            int64_t kc = w->cols - k0 < PANEL_K ? w->cols - k0 : PANEL_K;
            build_panel(w, g0, g1, k0, kc, panel);
            o.first = k0 == 0, o.last = k0 + kc == w->cols;
            for (int i = 0, t0 = 0; i < n_tiles; i++) {
                int nt = n_tok / n_tiles + (i < n_tok % n_tiles);
                tile_out ot = o;
                ot.y = y + (int64_t)t0 * ldy + g0, ot.scale = a->scale + t0, ot.sum = a->sum + t0;
                gemm_tile_n(panel, kc / 4, a->q + (int64_t)t0 * w->cols + k0, w->cols, nt, &ot);
                t0 += nt;
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

/* ---- The int8 (Q8_0) output head ----
 *
 * Same integer rule as bn_dense_gemm_q8_0_ref: activations quantized once per
 * call to int8 blocks of 32 (bn_quantize_q8_blocks_avx2, bit-exact), block
 * dots in integers, one FMA by d_w·d_x. One zmm holds two 32-byte blocks;
 * vpdpbusd wants unsigned × signed, so it takes |w| and x negated where w < 0
 * (a masked subtract; |w| ≤ 128, |x| ≤ 127, no overflow). Its 8 dwords per
 * block are exact partial sums (|·| ≤ 4·128·127 < 2^24, exact as floats), each
 * scaled by d_w·d_x and added in float lanes: the float order differs from
 * the reference (as on AVX2), the integers do not.
 *
 * At decode the head is a stream from DRAM: four rows share each load of x
 * and its scales; each row prefetches the lines Q8_PF bytes ahead of the 16
 * blocks it reads (like the F16 head; the former burst of the next four rows
 * measured 12 % slower at 2 threads). */
#define Q8_ROWS 4
#ifndef Q8_PF
#define Q8_PF 768
#endif

/* 8 lanes of d_w of block b, 8 of block b + 1 (fp16 at each block's start). */
static inline __m512 q8_pair_scales(const uint8_t *b0) {
    uint16_t h0, h1;
    memcpy(&h0, b0, 2);
    memcpy(&h1, b0 + 34, 2);
    __m256i h = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16((short)h0)), _mm_set1_epi16((short)h1), 1);
    return _mm512_cvtph_ps(h);
}

/* Σ w·x per 4-byte group of two blocks (w: 64 signed bytes, x likewise). */
static inline __m512 q8_pair_dot(__m512i w, __m512i x) {
    __m512i xs = _mm512_mask_sub_epi8(x, _mm512_movepi8_mask(w), _mm512_setzero_si512(), x);
    return _mm512_cvtepi32_ps(dpbusd(_mm512_setzero_si512(), _mm512_abs_epi8(w), xs));
}

static inline __m512i q8_pair_load(const uint8_t *b0) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(b0 + 2))),
                              _mm256_loadu_si256((const __m256i *)(b0 + 36)), 1);
}

/* Sums of the 8 dwords of each block of 8 pair vectors (16 blocks), in the
 * lane order Q8_LANE_BLOCK gives: 21 shuffles and adds instead of a float
 * multiply per 8 partial sums. */
static inline __m512i q8_block_sums(const __m512i p[8]) {
    __m512i a[4], b[2];
    for (int i = 0; i < 4; i++)
        a[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(p[2 * i], p[2 * i + 1]),
                                _mm512_unpackhi_epi32(p[2 * i], p[2 * i + 1]));
    for (int i = 0; i < 2; i++)
        b[i] = _mm512_add_epi32(_mm512_unpacklo_epi64(a[2 * i], a[2 * i + 1]),
                                _mm512_unpackhi_epi64(a[2 * i], a[2 * i + 1]));
    return _mm512_add_epi32(_mm512_shuffle_i32x4(b[0], b[1], _MM_SHUFFLE(2, 0, 2, 0)),
                            _mm512_shuffle_i32x4(b[0], b[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

/* Block of lane i after q8_block_sums. */
#define Q8_LANE_BLOCK(i) (((i) / 8) * 8 + ((i) % 4) * 2 + ((i) / 4) % 2)

static inline __m512i q8_lane_blocks(void) {
    return _mm512_setr_epi32(Q8_LANE_BLOCK(0), Q8_LANE_BLOCK(1), Q8_LANE_BLOCK(2), Q8_LANE_BLOCK(3), Q8_LANE_BLOCK(4),
                             Q8_LANE_BLOCK(5), Q8_LANE_BLOCK(6), Q8_LANE_BLOCK(7), Q8_LANE_BLOCK(8), Q8_LANE_BLOCK(9),
                             Q8_LANE_BLOCK(10), Q8_LANE_BLOCK(11), Q8_LANE_BLOCK(12), Q8_LANE_BLOCK(13),
                             Q8_LANE_BLOCK(14), Q8_LANE_BLOCK(15));
}

/* Dots of nr (≤ Q8_ROWS) rows (stride ld bytes) with one quantized token.
 * Runs of 16 blocks reduce to exact block integers, scaled as the reference
 * does ((float)s · (d_w·d_x)); the remaining blocks go a pair at a time with
 * the scale applied to each lane's partial sum. */
static inline __attribute__((always_inline)) void q8_rows_dot(const uint8_t *wr, int64_t ld, int64_t nb,
                                                              const int8_t *qx, const float *dx, int nr,
                                                              float *out) {
    const __m512i lanes = q8_lane_blocks(), offs = _mm512_mullo_epi32(lanes, _mm512_set1_epi32(34));
    __m512 acc[Q8_ROWS];
    for (int i = 0; i < nr; i++) acc[i] = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 16 <= nb; b += 16) {
        /* x and −x, shared by the rows: x takes w's sign by a blend. */
        __m512i x[8], nx[8];
        for (int k = 0; k < 8; k++) {
            x[k] = _mm512_loadu_si512(qx + (b + 2 * k) * 32);
            nx[k] = _mm512_sub_epi8(_mm512_setzero_si512(), x[k]);
        }
        __m512 dxl = _mm512_permutexvar_ps(lanes, _mm512_loadu_ps(dx + b));
        for (int i = 0; i < nr; i++) {
            const uint8_t *b0 = wr + i * ld + b * 34;
#if Q8_PF > 0
            for (int j = 0; j < 16 * 34; j += 64) _mm_prefetch((const char *)(uintptr_t)((uintptr_t)b0 + Q8_PF + j), _MM_HINT_T0);
#endif
            __m512i p[8];
            for (int k = 0; k < 8; k++) {
                __m512i w = q8_pair_load(b0 + k * 68);
                __m512i xs = _mm512_mask_blend_epi8(_mm512_movepi8_mask(w), x[k], nx[k]);
                p[k] = dpbusd(_mm512_setzero_si512(), _mm512_abs_epi8(w), xs);
            }
            /* Each block's fp16 d, gathered as the low half of a dword. */
            __m512i dh = _mm512_i32gather_epi32(offs, b0, 1);
            __m512 dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dh));
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(q8_block_sums(p)), _mm512_mul_ps(dw, dxl), acc[i]);
        }
    }
    for (; b + 2 <= nb; b += 2) {
        __m512i x = _mm512_loadu_si512(qx + b * 32);
        __m512 dxp = _mm512_insertf32x8(_mm512_set1_ps(dx[b]), _mm256_set1_ps(dx[b + 1]), 1);
        for (int i = 0; i < nr; i++) {
            const uint8_t *b0 = wr + i * ld + b * 34;
            __m512 s = _mm512_mul_ps(q8_pair_scales(b0), dxp);
            acc[i] = _mm512_fmadd_ps(q8_pair_dot(q8_pair_load(b0), x), s, acc[i]);
        }
    }
    if (b < nb) { /* an odd last block: the high half is zero */
        __m512i x = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(qx + b * 32)));
        for (int i = 0; i < nr; i++) {
            const uint8_t *b0 = wr + i * ld + b * 34;
            uint16_t h;
            memcpy(&h, b0, 2);
            __m512i w = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(b0 + 2)));
            __m512 s = _mm512_maskz_mov_ps(0x00FF, _mm512_set1_ps(_cvtsh_ss(h) * dx[b]));
            acc[i] = _mm512_fmadd_ps(q8_pair_dot(w, x), s, acc[i]);
        }
    }
    for (int i = 0; i < nr; i++) out[i] = _mm512_reduce_add_ps(acc[i]);
}

/* Tokens are quantized into scratch (cols floats) as many at a time as fit
 * (cols bytes of q and cols/32 floats of d each); rows go Q8_ROWS at a time,
 * and every token of the group passes over them while they are in L1. */
static void dense_q8_0_avx512(const bn_dense *w, int64_t r0, int64_t r1, const float *x, int n_tok, float *y,
                              int64_t ldy, float *scratch) {
    int64_t cols = w->cols, nb = cols / 32, ld = (int64_t)w->row_bytes;
    int per = (int)(cols * 4 / (cols + nb * 4));
    int8_t *qx = (int8_t *)scratch;
    float *dx = (float *)(qx + per * cols);
    for (int t0 = 0; t0 < n_tok; t0 += per) {
        int nt = n_tok - t0 < per ? n_tok - t0 : per;
        for (int t = 0; t < nt; t++)
            bn_quantize_q8_blocks_avx2(x + (int64_t)(t0 + t) * cols, cols, qx + t * cols, dx + t * nb);
        int64_t r = r0;
        for (; r + Q8_ROWS <= r1; r += Q8_ROWS) {
            const uint8_t *wr = w->data + r * ld;
#if Q8_PF == 0
            if (r + 2 * Q8_ROWS <= w->rows) prefetch_row(wr + Q8_ROWS * ld, Q8_ROWS * ld);
#endif
            for (int t = 0; t < nt; t++) {
                float d[Q8_ROWS];
                q8_rows_dot(wr, ld, nb, qx + t * cols, dx + t * nb, Q8_ROWS, d);
                for (int i = 0; i < Q8_ROWS; i++) y[(int64_t)(t0 + t) * ldy + r + i] = d[i];
            }
        }
        for (; r < r1; r++)
            for (int t = 0; t < nt; t++)
                q8_rows_dot(w->data + r * ld, ld, nb, qx + t * cols, dx + t * nb, 1, &y[(int64_t)(t0 + t) * ldy + r]);
    }
}

/* ---- The F16 output head at decode ----
 *
 * One token against rows streamed from DRAM. What limits it is how many
 * cache-line misses a core keeps in flight, and that falls with the number of
 * load instructions per line: a read probe gets 22 / 28 / 33 GB/s at 2
 * threads with 16 / 32 / 64-byte loads (the AVX2 kernel converts 8 halves
 * = 16 bytes per load). So every load here is one whole 64-byte line of a
 * row (32 halves, two vcvtph2ps): rows that start inside a line (a GGUF
 * tensor is aligned to 32 bytes) first take the part up to the line's end
 * with a masked load, so that no load is split across two lines. Four rows
 * share each load of x; two FMA chains per row. Software prefetch: one
 * line F16_PF bytes ahead per line read, per row, into L1 (into L2 or
 * further ahead measured slower); this, not the load width, is most of the
 * gain over the AVX2 kernel's burst of the next four rows (measured: the
 * 64-byte loads with that burst ran at the AVX2 kernel's speed). */
#define F16_ROWS 4
#ifndef F16_HINT
#define F16_HINT _MM_HINT_T0
#endif
#ifndef F16_PF
#define F16_PF 768
#endif

static inline __attribute__((always_inline)) void f16_step(const uint16_t *wr, int64_t ld, int64_t k, const float *x,
                                                           int nr, __mmask32 m, __m512 acc[][2]) {
    __m512 x0 = _mm512_maskz_loadu_ps((__mmask16)m, x + k), x1 = _mm512_maskz_loadu_ps((__mmask16)(m >> 16), x + k + 16);
    for (int i = 0; i < nr; i++) {
        __m512i v = _mm512_maskz_loadu_epi16(m, wr + i * ld + k);
        acc[i][0] = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(v)), x0, acc[i][0]);
        acc[i][1] = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(v, 1)), x1, acc[i][1]);
    }
}

static inline __mmask32 low_mask32(int64_t n) { return n >= 32 ? ~(__mmask32)0 : ((__mmask32)1 << n) - 1; }

/* Dots of nr (≤ F16_ROWS) rows (stride ld halves, ld·2 a multiple of 64 when
 * the rows share their alignment) with x. */
static inline __attribute__((always_inline)) void f16_rows_dot512(const uint16_t *wr, int64_t ld, int64_t cols,
                                                                  const float *x, int nr, float *out) {
    __m512 acc[F16_ROWS][2];
    for (int i = 0; i < nr; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    int64_t k = 0;
    uintptr_t mis = (uintptr_t)wr & 63;
    if (mis && !(mis & 1) && (nr == 1 || ld % 32 == 0)) { /* up to the end of the first line */
        int64_t n0 = (int64_t)(64 - mis) / 2;
        if (n0 > cols) n0 = cols;
        f16_step(wr, ld, 0, x, nr, low_mask32(n0), acc);
        k = n0;
    }
    for (; k + 32 <= cols; k += 32) {
#if F16_PF > 0
        for (int i = 0; i < nr; i++) _mm_prefetch((const char *)(wr + i * ld + k) + F16_PF, F16_HINT);
#endif
        f16_step(wr, ld, k, x, nr, ~(__mmask32)0, acc);
    }
    if (k < cols) f16_step(wr, ld, k, x, nr, low_mask32(cols - k), acc);
    for (int i = 0; i < nr; i++) out[i] = _mm512_reduce_add_ps(_mm512_add_ps(acc[i][0], acc[i][1]));
}

static void dense_f16_decode_avx512(const bn_dense *w, int64_t r0, int64_t r1, const float *x, float *y) {
    int64_t ld = (int64_t)w->row_bytes / 2, cols = w->cols, r = r0;
    for (; r + F16_ROWS <= r1; r += F16_ROWS) {
        const uint8_t *wr = w->data + r * w->row_bytes;
#if F16_PF == 0
        if (r + 2 * F16_ROWS <= w->rows) prefetch_row(wr + F16_ROWS * w->row_bytes, F16_ROWS * (int64_t)w->row_bytes);
#endif
        f16_rows_dot512((const uint16_t *)wr, ld, cols, x, F16_ROWS, y + r);
    }
    for (; r < r1; r++) f16_rows_dot512((const uint16_t *)(w->data + r * w->row_bytes), ld, cols, x, 1, y + r);
}

static void dense_gemm_avx512(const bn_dense *w, int64_t r0, int64_t r1, const float *x, int n_tok, float *y,
                              int64_t ldy, float *scratch) {
    if (w->type == BN_GGML_Q8_0) dense_q8_0_avx512(w, r0, r1, x, n_tok, y, ldy, scratch);
    else if (w->type == BN_GGML_F16 && n_tok == 1 && w->row_bytes % 2 == 0) dense_f16_decode_avx512(w, r0, r1, x, y);
    else bn_dense_gemm_avx2(w, r0, r1, x, n_tok, y, ldy, scratch);
}

const bn_cpu_kernels bn_cpu_kernels_avx512_table = {
    .name = "avx512",
    .quantize_row_i8 = quantize_row_i8_avx512,
    .ternary_gemm = ternary_gemm_avx512,
    .dense_gemm = dense_gemm_avx512,
    .dot_f32 = bn_dot_f32_avx2,
    .dot_f16 = bn_dot_f16_avx2,
    .axpy_f32 = bn_axpy_f32_avx2,
    .axpy_f16 = bn_axpy_f16_avx2,
    .f32_to_f16 = bn_f32_to_f16_avx2,
    .attend_tile = bn_attend_tile_avx2,
};
