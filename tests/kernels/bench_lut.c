/* Lookup-table (LUT) ternary GEMV/GEMM next to the engine's multiply-add
 * (MAD, I2_S offset trick) kernel: a measurement, not an engine change.
 *
 *   bench_lut [--quick] [--check-only]
 *
 * Checks the LUT kernel against the scalar reference (integers and floats
 * bit-exact; exit 1 on any mismatch), then prints, single thread, CPU time of
 * the calling thread (CLOCK_THREAD_CPUTIME_ID; the machine is shared), best
 * and median of several repetitions: GB/s of 2-bit weights and GOP/s (2 ops
 * per weight per token) for the LUT kernel and the engine's avx512 kernel
 * (called through the kernel table), the share of LUT time spent building
 * tables, and the cost of repacking the engine layout. A lossy variant
 * (LUT2q: halved int8 pair tables, one lookup per pair, T-MAC's trade) is
 * timed too, to show what giving up exactness would buy; its error against
 * the reference is printed by the check (bounded only loosely there).
 *
 * ---- The LUT scheme ("TL1-exact", groups of g = 2 weights) ----
 *
 * Why g = 2 with a direct 9-entry ternary index: an index 3·c0 + c1 of a
 * weight pair (c = w + 1) takes 4 bits, so two indices fill a byte and the
 * repacked matrix keeps the engine's 2 bits per weight (same memory traffic
 * at decode). g = 4 with two one-bit planes (T-MAC) needs two lookups per 4
 * weights and the same accumulate work, i.e. the same lookups per weight but
 * 16-entry tables of sums of 4 activations (range ±512, not int8); g = 3 (TL2)
 * needs 27 entries (vpermi2b, two table registers) and cols % 3 handling.
 *
 * Exactness: vpermb looks up bytes, but a pair sum w0·q0 + w1·q1 of int8
 * activations spans ±256. Each activation is split q = 16·h + l with
 * l = q & 15 ∈ [0, 15] and h = q >> 4 ∈ [-8, 7]; two tables per activation
 * group hold Σ w·l ∈ [-30, 30] and Σ w·h ∈ [-16, 16], both int8. Two lookups
 * (different groups) are added in int8 (|lo| ≤ 60, |hi| ≤ 32: no overflow),
 * then vpdpbusd with constant multipliers 1 (lo) and 16 (hi) widens and
 * accumulates them in int32: acc = Σ w·l + 16·Σ w·h = Σ w·q exactly, which is
 * the engine's (Σ c·q − Σ q). The float output then uses the reference's
 * expression (float)d · row_scale / act_scale, so it is bit-exact too.
 *
 * Tables: vpermb (AVX-512 VBMI) indexes a 64-byte register with 6 bits, so
 * one register holds four 16-entry tables (9 used) = 4 activation pairs =
 * 8 activations. Lookups must not mix rows when vpdpbusd sums 4 adjacent
 * bytes, so every 32-bit lane is one row and its 4 bytes are the 4 pair
 * slots of those 8 activations: byte 4j + s of an index vector = 16·s +
 * idx(row j, pair s). One index vector = 16 rows × 8 weights.
 *
 * Layout ("LUT2"): rows in tiles of 64 (padded with zero weights, index 4),
 * 4 blocks of 16 rows; per tile, per 16 activations, per 16-row block, 64
 * bytes: byte 4j + s holds idx(row j, activations 2s, 2s+1) in its low
 * nibble and idx(row j, activations 8 + 2s, 9 + 2s) in its high nibble.
 * Unpacking: vpternlog (x & 0x0F) | slot_offset and one shift for the high
 * nibble. Tables per token: for each 8 activations, 64 bytes lo + 64 bytes
 * hi (16 bytes per activation per token; 40 KiB at cols 2560).
 *
 * ---- Arithmetic ceilings (zmm ops per 64 weights per token) ----
 * Measured on this Sapphire Rapids class core by the probe at the start of
 * the figures (12 independent chains each; reciprocal throughput in cycles):
 * vpdpbusd 0.5, vpaddb 0.5, vpternlogd 0.5, vpermb 1.0, vpsrlvw 1.0 — i.e.
 * two 512-bit ports, of which only one runs vpermb (p5) and one the shifts —
 * and vpermt2b 2.0: a 128-entry table (g = 3, 27 entries × 4 slots) covers
 * 1.5× the weights of a vpermb lookup at twice the cost, so g = 3 would
 * lower the ceiling below; not written.
 *   MAD (engine): per 128 weights 1 broadcast load, 2 vpsrlvw, 2 vpandq
 *     (shared by the tokens of a tile), then per token 2 vpdpbusd and 2
 *     activation loads. Per 64 weights per token: 1 + 2/nt ops at 2 a cycle:
 *     nt = 1: 3 ops → 1.5 cycles (42.7 weights/cycle);
 *     nt = 4: 1.5 ops → 0.75 cycles (85.3 weights x tokens/cycle).
 *   LUT2: per 256 weights 1 load, 1 vpsrlw, 2 vpternlogd (shared by the
 *     tokens), then per token 4 vpermb, 2 vpaddb, 2 vpdpbusd and 4 table
 *     loads. Per 64 weights per token: 2 + 0.75/nt ops, vpermb ≥ 1 cycle:
 *     nt = 1: 2.75 ops → 1.375 cycles (46.5 weights/cycle, 1.09× MAD);
 *     nt = 4: 2.19 ops → 1.09 cycles (58.5 weights x tokens/cycle, 0.69× MAD).
 *   LUT2q (lossy): per 256 weights·token 2 vpermb + 2 vpdpbusd, + 3 shared:
 *     nt = 1: 73.1 weights/cycle (1.71× MAD); nt = 4: 107.8 (1.26× MAD).
 *   The LUT spends one p5-only vpermb per 32 weights·token where MAD spends
 *   half a vpdpbusd (which runs on both ports): with VNNI the multiply-add
 *   is already a 64-wide "lookup" per op, so exact int8 lookups do not beat
 *   it. Table building comes on top (per token, amortized over the rows):
 *   per 8 activations 2 loads, 4 vpermb, 8 masked add/sub, 2 stores.
 * These ceilings ignore loads, loop overhead and the final reduction; the
 * figures print weights per cycle next to them. */
#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/kernels_ref.h"

#define LUT_TILE_ROWS 64
#define LUT_TOK_TILE 4

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Core clock while this thread runs: a chain of dependent register adds
 * retires one per cycle, so adds per CPU second ≈ cycles per second (turbo
 * included). Register, not immediate, operands: Golden Cove folds chains of
 * add-immediate at rename and runs them faster than one a cycle. Used to turn
 * GOP/s into weights per cycle, comparable to the ceilings. */
static double clock_hz(void) {
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        uint64_t x = 0, one = 1, n = 20000000;
        double t0 = cpu_s();
        for (uint64_t i = 0; i < n; i++)
            __asm__ volatile("add %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\t"
                             "add %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0"
                             : "+r"(x)
                             : "r"(one));
        double hz = 8.0 * (double)n / (cpu_s() - t0);
        if (hz > best) best = hz;
    }
    return best;
}
static double g_hz;

/* Reciprocal throughput (cycles) of one zmm instruction: 12 independent
 * chains, so latency does not count. The instruction text is asm so that the
 * compiler cannot spill, fuse or drop it. */
#define LUT_R12(op) op(0) op(1) op(2) op(3) op(4) op(5) op(6) op(7) op(8) op(9) op(10) op(11)
#define LUT_DP(i) "vpdpbusd %%zmm12, %%zmm13, %%zmm" #i "\n\t"
#define LUT_PB(i) "vpermb %%zmm12, %%zmm13, %%zmm" #i "\n\t"
#define LUT_AB(i) "vpaddb %%zmm12, %%zmm" #i ", %%zmm" #i "\n\t"
#define LUT_SR(i) "vpsrlvw %%zmm12, %%zmm13, %%zmm" #i "\n\t"
#define LUT_PT(i) "vpermt2b %%zmm12, %%zmm13, %%zmm" #i "\n\t"
#define LUT_TL(i) "vpternlogd $0xea, %%zmm12, %%zmm13, %%zmm" #i "\n\t"
#define LUT_CLOB "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11"
#define LUT_PROBE(name, body)                                                                                    \
    do {                                                                                                         \
        long n = 2000000;                                                                                        \
        double t0 = cpu_s();                                                                                     \
        for (long i = 0; i < n; i++) __asm__ volatile(body ::: LUT_CLOB);                                        \
        printf(" %s %.2f", name, (cpu_s() - t0) / n / 12 * g_hz);                                                \
    } while (0)

static void probe_ports(void) {
    __asm__ volatile("vpxord %%zmm12, %%zmm12, %%zmm12\n\tvpxord %%zmm13, %%zmm13, %%zmm13" ::: "xmm12", "xmm13");
    printf("# zmm reciprocal throughput, cycles:");
    LUT_PROBE("vpdpbusd", LUT_R12(LUT_DP));
    LUT_PROBE("vpermb", LUT_R12(LUT_PB));
    LUT_PROBE("vpermt2b", LUT_R12(LUT_PT)); /* 128-entry tables (g = 3, TL2-like) */
    LUT_PROBE("vpaddb", LUT_R12(LUT_AB));
    LUT_PROBE("vpsrlvw", LUT_R12(LUT_SR));
    LUT_PROBE("vpternlogd", LUT_R12(LUT_TL));
    LUT_PROBE("vpermb+vpdpbusd-mix", LUT_PB(0) LUT_DP(1) LUT_PB(2) LUT_DP(3) LUT_PB(4) LUT_DP(5) LUT_PB(6)
                                             LUT_DP(7) LUT_PB(8) LUT_DP(9) LUT_PB(10) LUT_DP(11));
    printf("\n");
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}

static void *xalloc(size_t n) {
    void *p = aligned_alloc(64, (n + 63) & ~(size_t)63);
    if (!p) {
        fprintf(stderr, "bench_lut: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

/* ---- repack: engine layout → LUT2 ---- */

typedef struct lut2_matrix {
    int64_t rows, cols, tiles; /* tiles of 64 rows; rows padded up to tiles * 64 */
    uint8_t *idx;              /* tiles * cols/16 * 4 * 64 bytes = 2 bits per (padded) weight */
    float scale;
    const float *row_scale;
} lut2_matrix;

static size_t lut2_bytes(int64_t rows, int64_t cols) {
    return (size_t)((rows + LUT_TILE_ROWS - 1) / LUT_TILE_ROWS * LUT_TILE_ROWS * cols / 4);
}

/* Scalar and row at a time: the layout, not its speed, is under test; its
 * cost per MB is printed so a load-time repack can be judged. */
static void lut2_repack(const bn_ternary *w, lut2_matrix *m, uint8_t *codes_scratch) {
    int64_t nk16 = w->cols / 16, row_bytes = w->cols / 4;
    m->rows = w->rows, m->cols = w->cols, m->scale = w->scale, m->row_scale = w->row_scale;
    m->tiles = (w->rows + LUT_TILE_ROWS - 1) / LUT_TILE_ROWS;
    uint8_t *c = codes_scratch;
    for (int64_t r = 0; r < m->tiles * LUT_TILE_ROWS; r++) {
        if (r < w->rows) {
            const uint8_t *wr = w->codes + r * row_bytes;
            for (int64_t b = 0; b < w->cols / 128; b++)
                for (int i = 0; i < 32; i++) {
                    unsigned v = wr[b * 32 + i];
                    c[b * 128 + i] = (uint8_t)(v >> 6), c[b * 128 + 32 + i] = (uint8_t)(v >> 4 & 3);
                    c[b * 128 + 64 + i] = (uint8_t)(v >> 2 & 3), c[b * 128 + 96 + i] = (uint8_t)(v & 3);
                }
        } else {
            memset(c, 1, (size_t)w->cols); /* padding rows: weight 0 */
        }
        int64_t tile = r / LUT_TILE_ROWS;
        int rb = (int)(r % LUT_TILE_ROWS) / 16, j = (int)(r % 16);
        for (int64_t k = 0; k < nk16; k++) {
            uint8_t *dst = m->idx + ((tile * nk16 + k) * 4 + rb) * 64 + 4 * j;
            const uint8_t *ck = c + k * 16;
            for (int s = 0; s < 4; s++) {
                unsigned lo = 3u * ck[2 * s] + ck[2 * s + 1], hi = 3u * ck[8 + 2 * s] + ck[9 + 2 * s];
                dst[s] = (uint8_t)(lo | hi << 4);
            }
        }
    }
}

/* ---- tables ---- */

/* Constant vectors, built once. */
static __m512i k_even, k_odd;          /* vpermb indices: byte j ← activation 2(j/16), 2(j/16)+1 */
static __mmask64 k_pos0, k_neg0, k_pos1, k_neg1; /* entry i = j%16: w0 = i/3 - 1, w1 = i%3 - 1 (i < 9) */
static __m512i k_slot;                 /* byte 4j + s = 16 s */

static void lut_init_constants(void) {
    uint8_t e[64], o[64], sl[64];
    k_pos0 = k_neg0 = k_pos1 = k_neg1 = 0;
    for (int j = 0; j < 64; j++) {
        e[j] = (uint8_t)(2 * (j / 16)), o[j] = (uint8_t)(2 * (j / 16) + 1), sl[j] = (uint8_t)(16 * (j % 4));
        int i = j % 16;
        if (i < 9) {
            __mmask64 bit = (__mmask64)1 << j;
            if (i / 3 == 2) k_pos0 |= bit;
            if (i / 3 == 0) k_neg0 |= bit;
            if (i % 3 == 2) k_pos1 |= bit;
            if (i % 3 == 0) k_neg1 |= bit;
        }
    }
    k_even = _mm512_loadu_si512(e), k_odd = _mm512_loadu_si512(o), k_slot = _mm512_loadu_si512(sl);
}

/* One 64-byte register of four 16-entry pair tables from 8 activations
 * (x = 64 bytes starting at the group; only the first 8 are used). */
static inline __m512i pair_tables(__m512i x) {
    __m512i xe = _mm512_permutexvar_epi8(k_even, x), xo = _mm512_permutexvar_epi8(k_odd, x);
    __m512i t = _mm512_maskz_mov_epi8(k_pos0, xe);
    t = _mm512_mask_sub_epi8(t, k_neg0, t, xe);
    t = _mm512_mask_add_epi8(t, k_pos1, t, xo);
    return _mm512_mask_sub_epi8(t, k_neg1, t, xo);
}

/* Tables of one token: tab[k8 * 128 + 0..63] = lo tables, + 64..127 = hi
 * tables of activations 8 k8 .. 8 k8 + 7. lh: 2 * (cols + 64) bytes scratch. */
static void lut2_build_tables(const int8_t *q, int64_t cols, int8_t *tab, int8_t *lh) {
    int8_t *l = lh, *h = lh + cols + 64;
    const __m512i m15 = _mm512_set1_epi8(15), bias = _mm512_set1_epi8((char)0x80), eight = _mm512_set1_epi8(8);
    for (int64_t i = 0; i < cols; i += 64) {
        __mmask64 m = cols - i >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (cols - i)) - 1);
        __m512i v = _mm512_maskz_loadu_epi8(m, q + i);
        /* h = floor(q / 16): (q + 128) >> 4 as unsigned bytes, minus 8. */
        __m512i hv = _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(_mm512_xor_si512(v, bias), 4), m15), eight);
        _mm512_storeu_si512(l + i, _mm512_and_si512(v, m15));
        _mm512_storeu_si512(h + i, hv);
    }
    for (int64_t k8 = 0; k8 < cols / 8; k8++) {
        _mm512_storeu_si512(tab + k8 * 128, pair_tables(_mm512_loadu_si512(l + k8 * 8)));
        _mm512_storeu_si512(tab + k8 * 128 + 64, pair_tables(_mm512_loadu_si512(h + k8 * 8)));
    }
}

/* ---- lossy variant (for its ceiling only; NOT exact) ----
 * T-MAC's route: one int8 table of the pair sums themselves, halved to fit
 * (w0·q0 + w1·q1 spans ±256), so one lookup per pair instead of two and the
 * result doubled at the end. Halving alternates rounding up (even groups of 8)
 * and down (odd groups), so the rounding bias cancels on average; negating
 * -128 saturates to 127. The outputs differ from the reference by the rounding
 * (printed); this variant shows what an inexact LUT buys, not a candidate. */
static inline __m512i pair_tables_lossy(__m512i x, int round_up) {
    const __m512i zero = _mm512_setzero_si512(), bias = _mm512_set1_epi8((char)0x80), one = _mm512_set1_epi8(1);
    __m512i xe = _mm512_permutexvar_epi8(k_even, x), xo = _mm512_permutexvar_epi8(k_odd, x);
    __m512i u = _mm512_mask_subs_epi8(_mm512_maskz_mov_epi8(k_pos0, xe), k_neg0, zero, xe);
    __m512i v = _mm512_mask_subs_epi8(_mm512_maskz_mov_epi8(k_pos1, xo), k_neg1, zero, xo);
    /* signed (u + v + 1) >> 1 through the unsigned average of biased bytes */
    __m512i up = _mm512_xor_si512(_mm512_avg_epu8(_mm512_xor_si512(u, bias), _mm512_xor_si512(v, bias)), bias);
    return round_up ? up : _mm512_sub_epi8(up, _mm512_and_si512(_mm512_xor_si512(u, v), one));
}

/* tab[k8 * 128 + 0..63]: the halved pair tables of activations 8 k8 .. +7
 * (same stride as the exact tables; bytes 64..127 unused). */
static void lut2q_build_tables(const int8_t *q, int64_t cols, int8_t *tab, int8_t *pad) {
    memcpy(pad, q, (size_t)cols); /* pad: cols + 64 bytes, so the 64-byte loads stay in bounds */
    for (int64_t k8 = 0; k8 < cols / 8; k8++)
        _mm512_storeu_si512(tab + k8 * 128, pair_tables_lossy(_mm512_loadu_si512(pad + k8 * 8), !(k8 & 1)));
}

static inline __attribute__((always_inline)) void lut2q_tile(const uint8_t *wt, int64_t nk16, const int8_t *tabs,
                                                              int64_t tab_stride, int nt, __m512i acc[][4]) {
    const __m512i m0f = _mm512_set1_epi8(0x0F), ones = _mm512_set1_epi8(1);
    __m512i c[LUT_TOK_TILE][4];
    for (int t = 0; t < nt; t++) c[t][0] = c[t][1] = c[t][2] = c[t][3] = _mm512_setzero_si512();
    for (int64_t k = 0; k < nk16; k++) {
        const uint8_t *p = wt + k * 256;
        for (int rb = 0; rb < 4; rb++) {
            __m512i pk = _mm512_loadu_si512(p + rb * 64);
            __m512i va = _mm512_ternarylogic_epi32(pk, m0f, k_slot, 0xEA);
            __m512i vb = _mm512_ternarylogic_epi32(_mm512_srli_epi16(pk, 4), m0f, k_slot, 0xEA);
            for (int t = 0; t < nt; t++) {
                const int8_t *tb = tabs + t * tab_stride + k * 256;
                c[t][rb] = _mm512_dpbusd_epi32(
                    _mm512_dpbusd_epi32(c[t][rb], ones, _mm512_permutexvar_epi8(va, _mm512_loadu_si512(tb))), ones,
                    _mm512_permutexvar_epi8(vb, _mm512_loadu_si512(tb + 128)));
            }
        }
    }
    for (int t = 0; t < nt; t++)
        for (int rb = 0; rb < 4; rb++) acc[t][rb] = _mm512_slli_epi32(c[t][rb], 1); /* undo the halving */
}

/* ---- the LUT kernel ---- */

/* acc[t][rb] (int32, lane j = row 16 rb + j of the tile) += Σ w·q over the
 * tile's 64 rows for nt tokens; tables of token t at tabs + t * tab_stride. */
static inline __attribute__((always_inline)) void lut2_tile(const uint8_t *wt, int64_t nk16, const int8_t *tabs,
                                                             int64_t tab_stride, int nt, __m512i acc[][4]) {
    const __m512i m0f = _mm512_set1_epi8(0x0F), ones = _mm512_set1_epi8(1), sixteen = _mm512_set1_epi8(16);
    /* Local accumulators, copied out at the end: writing through acc in the
     * loop made GCC store them to the stack every iteration. */
    __m512i c[LUT_TOK_TILE][4];
    for (int t = 0; t < nt; t++) c[t][0] = c[t][1] = c[t][2] = c[t][3] = _mm512_setzero_si512();
    for (int64_t k = 0; k < nk16; k++) {
        const uint8_t *p = wt + k * 256;
        for (int rb = 0; rb < 4; rb++) {
            __m512i pk = _mm512_loadu_si512(p + rb * 64);
            /* 0xEA: (A & B) | C — the nibble plus its slot's table offset. */
            __m512i va = _mm512_ternarylogic_epi32(pk, m0f, k_slot, 0xEA);
            __m512i vb = _mm512_ternarylogic_epi32(_mm512_srli_epi16(pk, 4), m0f, k_slot, 0xEA);
            for (int t = 0; t < nt; t++) {
                const int8_t *tb = tabs + t * tab_stride + k * 256;
                __m512i lo = _mm512_add_epi8(_mm512_permutexvar_epi8(va, _mm512_loadu_si512(tb)),
                                             _mm512_permutexvar_epi8(vb, _mm512_loadu_si512(tb + 128)));
                __m512i hi = _mm512_add_epi8(_mm512_permutexvar_epi8(va, _mm512_loadu_si512(tb + 64)),
                                             _mm512_permutexvar_epi8(vb, _mm512_loadu_si512(tb + 192)));
                c[t][rb] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(c[t][rb], ones, lo), sixteen, hi);
            }
        }
    }
    for (int t = 0; t < nt; t++)
        for (int rb = 0; rb < 4; rb++) acc[t][rb] = c[t][rb];
}

/* Scratch for one call: tables of LUT_TOK_TILE tokens and the l/h split. */
typedef struct lut2_scratch {
    int8_t *tab, *lh;
    int64_t tab_stride;
} lut2_scratch;

static void lut2_scratch_init(lut2_scratch *s, int64_t cols) {
    s->tab_stride = cols * 16;
    s->tab = xalloc((size_t)(s->tab_stride * LUT_TOK_TILE));
    s->lh = xalloc((size_t)(2 * (cols + 64)));
    memset(s->lh, 0, (size_t)(2 * (cols + 64)));
}

static void lut2_scratch_free(lut2_scratch *s) { free(s->tab), free(s->lh); }

/* y[t*ldy + r] for every row and token, as bn_ternary_gemm_ref; d (optional)
 * receives the integers Σ w·q, d[t * rows + r]. Token tiles of 4: their
 * tables are built, then every row tile passes with its indices unpacked once
 * for the 4 tokens. */
static void lut2_gemm_any(const lut2_matrix *m, const bn_qact *a, int n_tok, float *y, int64_t ldy, int32_t *d,
                          lut2_scratch *s, int lossy) {
    int64_t nk16 = m->cols / 16;
    for (int t0 = 0; t0 < n_tok; t0 += LUT_TOK_TILE) {
        int nt = n_tok - t0 < LUT_TOK_TILE ? n_tok - t0 : LUT_TOK_TILE;
        for (int t = 0; t < nt; t++) {
            const int8_t *qt = a->q + (int64_t)(t0 + t) * m->cols;
            if (lossy) lut2q_build_tables(qt, m->cols, s->tab + t * s->tab_stride, s->lh);
            else lut2_build_tables(qt, m->cols, s->tab + t * s->tab_stride, s->lh);
        }
        for (int64_t tile = 0; tile < m->tiles; tile++) {
            __m512i acc[LUT_TOK_TILE][4];
            const uint8_t *wt = m->idx + tile * nk16 * 256;
            if (lossy) switch (nt) {
                case 1: lut2q_tile(wt, nk16, s->tab, s->tab_stride, 1, acc); break;
                case 2: lut2q_tile(wt, nk16, s->tab, s->tab_stride, 2, acc); break;
                case 3: lut2q_tile(wt, nk16, s->tab, s->tab_stride, 3, acc); break;
                default: lut2q_tile(wt, nk16, s->tab, s->tab_stride, 4, acc); break;
                }
            else switch (nt) {
                case 1: lut2_tile(wt, nk16, s->tab, s->tab_stride, 1, acc); break;
                case 2: lut2_tile(wt, nk16, s->tab, s->tab_stride, 2, acc); break;
                case 3: lut2_tile(wt, nk16, s->tab, s->tab_stride, 3, acc); break;
                default: lut2_tile(wt, nk16, s->tab, s->tab_stride, 4, acc); break;
                }
            for (int rb = 0; rb < 4; rb++) {
                int64_t r = tile * LUT_TILE_ROWS + rb * 16;
                if (r >= m->rows) break;
                __mmask16 mk = m->rows - r >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (m->rows - r)) - 1);
                __m512 ws = m->row_scale ? _mm512_maskz_loadu_ps(mk, m->row_scale + r) : _mm512_set1_ps(m->scale);
                for (int t = 0; t < nt; t++) {
                    /* The reference's expression, op for op: (float)d * ws / act_scale. */
                    __m512 f = _mm512_div_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(acc[t][rb]), ws),
                                             _mm512_set1_ps(a->scale[t0 + t]));
                    _mm512_mask_storeu_ps(y + (int64_t)(t0 + t) * ldy + r, mk, f);
                    if (d) _mm512_mask_storeu_epi32(d + (int64_t)(t0 + t) * m->rows + r, mk, acc[t][rb]);
                }
            }
        }
    }
}

static void lut2_gemm(const lut2_matrix *m, const bn_qact *a, int n_tok, float *y, int64_t ldy, int32_t *d,
                      lut2_scratch *s) {
    lut2_gemm_any(m, a, n_tok, y, ldy, d, s, 0);
}

/* ---- test data ---- */

typedef struct problem {
    bn_ternary w;
    uint8_t *codes;
    float *row_scale;
    bn_qact a;
    int n_tok;
} problem;

/* Random codes in {0,1,2}, int8 activations over the whole range (so that
 * -128 and 127 occur), random positive scales. */
static void problem_init(problem *p, int64_t rows, int64_t cols, int n_tok, int with_row_scale) {
    size_t nb = (size_t)(rows * cols / 4);
    p->codes = xalloc(nb);
    for (size_t i = 0; i < nb; i++)
        p->codes[i] = (uint8_t)((rnd() % 3) << 6 | (rnd() % 3) << 4 | (rnd() % 3) << 2 | (rnd() % 3));
    p->row_scale = NULL;
    if (with_row_scale) {
        p->row_scale = xalloc((size_t)rows * 4);
        for (int64_t r = 0; r < rows; r++) p->row_scale[r] = 0.25f + (float)(rnd() % 1000) / 1000.0f;
    }
    p->w = (bn_ternary){.rows = rows, .cols = cols, .codes = p->codes, .scale = 0.37f, .row_scale = p->row_scale};
    p->n_tok = n_tok;
    p->a.q = xalloc((size_t)(n_tok * cols));
    p->a.scale = xalloc((size_t)n_tok * 4);
    p->a.sum = xalloc((size_t)n_tok * 4);
    for (int t = 0; t < n_tok; t++) {
        int32_t s = 0;
        for (int64_t k = 0; k < cols; k++) s += p->a.q[t * cols + k] = (int8_t)(rnd() & 0xFF);
        /* every few tokens, an extreme one: all -128 or all 127 */
        if (t % 5 == 4) {
            int8_t v = (t / 5) % 2 ? 127 : -128;
            memset(p->a.q + t * cols, (unsigned char)v, (size_t)cols);
            s = v * (int32_t)cols;
        }
        p->a.sum[t] = s;
        p->a.scale[t] = 1.0f + (float)(rnd() % 1000) / 10.0f;
    }
}

static void problem_free(problem *p) {
    free(p->codes), free(p->row_scale), free(p->a.q), free(p->a.scale), free(p->a.sum);
}

static int check_shape(int64_t rows, int64_t cols, int n_tok, int with_row_scale) {
    problem p;
    problem_init(&p, rows, cols, n_tok, with_row_scale);
    lut2_matrix m;
    m.idx = xalloc(lut2_bytes(rows, cols));
    uint8_t *cs = xalloc((size_t)cols);
    lut2_repack(&p.w, &m, cs);
    lut2_scratch s;
    lut2_scratch_init(&s, cols);
    float *y = xalloc((size_t)(rows * n_tok) * 4), *yr = xalloc((size_t)(rows * n_tok) * 4);
    int32_t *d = xalloc((size_t)(rows * n_tok) * 4);
    lut2_gemm(&m, &p.a, n_tok, y, rows, d, &s);
    bn_ternary_gemm_ref(&p.w, 0, rows, &p.a, n_tok, yr, rows);
    const bn_cpu_kernels *k = bn_cpu_kernels_get("avx512");
    float *ye = xalloc((size_t)(rows * n_tok) * 4);
    if (k) k->ternary_gemm(&p.w, 0, rows, &p.a, n_tok, ye, rows);
    int64_t bad_int = 0, bad_f = 0, bad_e = 0;
    for (int t = 0; t < n_tok; t++)
        for (int64_t r = 0; r < rows; r++) {
            int32_t want = bn_ternary_dot_ref(&p.w, r, p.a.q + t * cols, p.a.sum[t]);
            if (d[t * rows + r] != want) bad_int++;
            if (memcmp(&y[t * rows + r], &yr[t * rows + r], 4)) bad_f++;
            if (k && memcmp(&ye[t * rows + r], &yr[t * rows + r], 4)) bad_e++;
        }
    /* The lossy variant: error relative to the largest output, reported and
     * only bounded loosely (a wrong index or table gives errors of order 1). */
    lut2_gemm_any(&m, &p.a, n_tok, y, rows, NULL, &s, 1);
    double dmax = 0, ymax = 0;
    for (int64_t i = 0; i < rows * n_tok; i++) {
        dmax = fmax(dmax, fabs((double)y[i] - yr[i]));
        ymax = fmax(ymax, fabs((double)yr[i]));
    }
    double rel = ymax > 0 ? dmax / ymax : 0;
    int ok = !bad_int && !bad_f && !bad_e && rel < 0.05;
    printf("check %5lldx%-5lld n_tok=%-3d row_scale=%d: %s (integer mismatches %lld, float %lld; avx512 float %lld; "
           "lossy LUT2q max|err|/max|y| %.2e)\n",
           (long long)rows, (long long)cols, n_tok, with_row_scale, ok ? "PASS" : "FAIL", (long long)bad_int,
           (long long)bad_f, (long long)bad_e, rel);
    free(m.idx), free(cs), free(y), free(yr), free(ye), free(d);
    lut2_scratch_free(&s);
    problem_free(&p);
    return ok;
}

/* ---- timing ---- */

static double min_time = 0.1; /* seconds per repetition */
static int n_reps = 7;

static int cmp_double(const void *x, const void *y) {
    double u = *(const double *)x, v = *(const double *)y;
    return u < v ? -1 : u > v;
}

typedef struct timing {
    double best, median;
} timing;

typedef void (*bench_fn)(void *ctx);

/* Seconds per call: n_reps repetitions of (calls until min_time). */
static timing time_fn(bench_fn f, void *ctx) {
    double ts[32];
    f(ctx);
    for (int rep = 0; rep < n_reps; rep++) {
        int calls = 0;
        double t0 = cpu_s(), t;
        do {
            f(ctx);
            calls++;
        } while ((t = cpu_s() - t0) < min_time);
        ts[rep] = t / calls;
    }
    qsort(ts, (size_t)n_reps, sizeof *ts, cmp_double);
    return (timing){ts[0], ts[n_reps / 2]};
}

typedef struct bench_ctx {
    problem *p;
    lut2_matrix *m;
    lut2_scratch *s;
    const bn_cpu_kernels *k;
    float *y;
    uint8_t *cs;
} bench_ctx;

static void run_mad(void *c) {
    bench_ctx *b = c;
    b->k->ternary_gemm(&b->p->w, 0, b->p->w.rows, &b->p->a, b->p->n_tok, b->y, b->p->w.rows);
}
static void run_lut(void *c) {
    bench_ctx *b = c;
    lut2_gemm(b->m, &b->p->a, b->p->n_tok, b->y, b->p->w.rows, NULL, b->s);
}
static void run_lutq(void *c) {
    bench_ctx *b = c;
    lut2_gemm_any(b->m, &b->p->a, b->p->n_tok, b->y, b->p->w.rows, NULL, b->s, 1);
}
/* The table building alone, for every token of the call. */
static void run_tables(void *c) {
    bench_ctx *b = c;
    for (int t = 0; t < b->p->n_tok; t++)
        lut2_build_tables(b->p->a.q + (int64_t)t * b->p->w.cols, b->p->w.cols,
                          b->s->tab + (t % LUT_TOK_TILE) * b->s->tab_stride, b->s->lh);
}
static void run_repack(void *c) {
    bench_ctx *b = c;
    lut2_repack(&b->p->w, b->m, b->cs);
}

static void bench_shape(int64_t rows, int64_t cols, int n_tok, const char *what) {
    problem p;
    problem_init(&p, rows, cols, n_tok, 0);
    lut2_matrix m;
    m.idx = xalloc(lut2_bytes(rows, cols));
    uint8_t *cs = xalloc((size_t)cols);
    lut2_scratch s;
    lut2_scratch_init(&s, cols);
    bench_ctx b = {&p, &m, &s, bn_cpu_kernels_get("avx512"), xalloc((size_t)(rows * n_tok) * 4), cs};
    lut2_repack(&p.w, &m, cs);
    double bytes = (double)rows * cols / 4, ops = 2.0 * rows * cols * n_tok;
    timing tm = time_fn(run_mad, &b), tl = time_fn(run_lut, &b), tt = time_fn(run_tables, &b),
           tq = time_fn(run_lutq, &b);
    printf("%-22s %5lldx%-5lld n_tok=%-3d | MAD avx512 %7.2f GB/s %7.1f GOP/s (median %7.1f) | LUT2 %7.2f GB/s "
           "%7.1f GOP/s (median %7.1f) | LUT/MAD %.2fx | tables %4.1f%% of LUT time\n",
           what, (long long)rows, (long long)cols, n_tok, bytes / tm.best / 1e9, ops / tm.best / 1e9,
           ops / tm.median / 1e9, bytes / tl.best / 1e9, ops / tl.best / 1e9, ops / tl.median / 1e9,
           tm.best / tl.best, 100 * tt.best / tl.best);
    /* Weights·tokens per cycle, next to the ceilings of the header comment;
     * LUT also without its table building (kernel part only). */
    double wc = ops / 2 / g_hz;
    printf("%-22s   weights x tokens per cycle: MAD %.1f (ceiling %.0f) | LUT2 %.1f, kernel part without tables %.1f "
           "(ceiling %.1f)\n",
           "", wc / tm.best, 128.0 / (1 + 2.0 / (n_tok < 4 ? n_tok : 4)), wc / tl.best,
           wc / (tl.best - tt.best), 128.0 / (2 + 0.75 / (n_tok < 4 ? n_tok : 4)));
    /* Lossy ceiling: per 256 weights·token 2 vpermb + 2 vpdpbusd, + 3 shared. */
    printf("%-22s   lossy LUT2q (not exact): %7.1f GOP/s (median %7.1f), %.2fx MAD, %.1f weights x tokens per cycle "
           "(ceiling %.1f)\n",
           "", ops / tq.best / 1e9, ops / tq.median / 1e9, tm.best / tq.best, wc / tq.best,
           512.0 / (4 + 3.0 / (n_tok < 4 ? n_tok : 4)));
    free(b.y), free(m.idx), free(cs);
    lut2_scratch_free(&s);
    problem_free(&p);
}

static void bench_repack(int64_t rows, int64_t cols) {
    problem p;
    problem_init(&p, rows, cols, 1, 0);
    lut2_matrix m;
    m.idx = xalloc(lut2_bytes(rows, cols));
    uint8_t *cs = xalloc((size_t)cols);
    bench_ctx b = {.p = &p, .m = &m, .cs = cs};
    timing t = time_fn(run_repack, &b);
    double mb = (double)rows * cols / 4 / 1e6;
    printf("repack engine -> LUT2 %5lldx%-5lld: %.2f ms per MB of 2-bit weights (best; median %.2f), %.0f MB/s\n",
           (long long)rows, (long long)cols, t.best * 1e3 / mb, t.median * 1e3 / mb, mb / t.best);
    free(m.idx), free(cs);
    problem_free(&p);
}

int main(int argc, char **argv) {
    int quick = 0, check_only = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--check-only")) check_only = 1;
        else {
            fprintf(stderr, "usage: bench_lut [--quick] [--check-only]\n");
            return 2;
        }
    }
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512vbmi") || !__builtin_cpu_supports("avx512vnni") ||
        !__builtin_cpu_supports("avx512bw") || !bn_cpu_kernels_get("avx512")) {
        printf("bench_lut: SKIP (needs AVX-512 BW + VBMI + VNNI)\n");
        return 0;
    }
    lut_init_constants();
    if (quick) min_time = 0.02, n_reps = 3;

    /* 1. correctness: odd row counts (tile padding), both widths, token
     * counts around the tile of 4, per-row scales. */
    static const struct { int64_t rows, cols; int n_tok, rs; } shapes[] = {
        {1, 128, 1, 0},    {37, 256, 3, 1},    {64, 2560, 4, 0},  {100, 2560, 5, 1}, {130, 6912, 1, 0},
        {130, 6912, 7, 1}, {512, 2560, 9, 0},  {2560, 6912, 2, 0}, {6912, 2560, 1, 1}, {200, 2560, 128, 0},
    };
    int ok = 1;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        ok &= check_shape(shapes[i].rows, shapes[i].cols, shapes[i].n_tok, shapes[i].rs);
    printf("bench_lut: correctness %s\n", ok ? "PASS" : "FAIL");
    if (!ok) return 1;
    if (check_only) return 0;

    /* 2. figures, one thread. */
    double la[3] = {0};
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf %lf %lf", &la[0], &la[1], &la[2]) != 3) la[0] = -1;
        fclose(f);
    }
    g_hz = clock_hz();
    printf("# one thread, CPU time; best of %d repetitions (median in brackets); load average %.2f %.2f %.2f; "
           "core clock %.2f GHz (dependent-add probe)\n",
           n_reps, la[0], la[1], la[2], g_hz / 1e9);
    probe_ports();
    bench_shape(512, 2560, 1, "GEMV cache-resident");
    bench_shape(6912, 2560, 1, "GEMV 2B4T ffn_up");
    bench_shape(2560, 6912, 1, "GEMV 2B4T ffn_down");
    bench_shape(512, 2560, 4, "GEMM tile");
    bench_shape(512, 2560, quick ? 16 : 128, "GEMM prompt");
    bench_shape(6912, 2560, quick ? 16 : 128, "GEMM 2B4T ffn_up");
    bench_shape(2560, 6912, quick ? 16 : 128, "GEMM 2B4T ffn_down");
    bench_repack(6912, 2560);
    return 0;
}
