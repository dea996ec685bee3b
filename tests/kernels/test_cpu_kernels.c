/* Every CPU kernel level this machine can run against the plain C reference,
 * on random data of awkward shapes (row counts that are not multiples of the
 * SIMD widths, 1..40 tokens, widths with tails).
 *
 * Integer paths (activation quantization, ternary dot products) must match
 * bit-exactly, including the float outputs of ternary_gemm, which use the
 * reference's expression. Float paths (dense head, dot, axpy) may sum in a
 * different order: their error is bounded relative to Σ|a·b|. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/ggml_types.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/kernels_ref.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

static float rndf(void) { return (float)(rnd() >> 8) / 8388608.0f - 1.0f; } /* in [-1, 1) */

/* The levels this CPU runs, other than scalar; printed once. */
static const bn_cpu_kernels *levels[8];
static int n_levels;

static int setup_levels(void **state) {
    (void)state;
    int n;
    const bn_cpu_kernels *const *all = bn_cpu_kernels_all(&n);
    printf("# kernel levels:");
    for (int i = 0; i < n; i++) {
        int ok = bn_cpu_kernels_supported(all[i]);
        printf(" %s%s", all[i]->name, ok ? "" : "(unsupported here)");
        if (ok && n_levels < 8) levels[n_levels++] = all[i];
    }
    printf("\n");
    return 0;
}

/* Random ternary matrix with codes 0..2 in the native layout. */
static uint8_t *random_codes(int64_t rows, int64_t cols) {
    int64_t n = rows * cols / 4;
    uint8_t *c = malloc((size_t)n);
    for (int64_t i = 0; i < n; i++) {
        uint8_t b = 0;
        for (int j = 0; j < 4; j++) b = (uint8_t)(b << 2 | (rnd() % 3));
        c[i] = b;
    }
    return c;
}

static void fill(float *x, int64_t n, float amp) {
    for (int64_t i = 0; i < n; i++) x[i] = rndf() * amp;
}

static void test_quantize_exact(void **state) {
    (void)state;
    const int64_t sizes[] = {1, 7, 16, 31, 32, 33, 100, 128, 255, 2560, 6912, 6913};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        int64_t n = sizes[si];
        float *x = malloc((size_t)n * sizeof *x);
        int8_t *qr = malloc((size_t)n), *qk = malloc((size_t)n);
        for (int trial = 0; trial < 4; trial++) {
            fill(x, n, trial == 0 ? 1e-3f : 3.0f);
            /* Exact ties at the rounding boundary: the max maps to ±127 and
             * half-integers appear where x·s lands on k + 0.5. */
            if (trial == 2)
                for (int64_t i = 0; i < n; i++) x[i] = (float)((int)(rnd() % 255) - 127) * 0.5f;
            if (trial == 3 && n > 2) x[n - 1] = -50.0f; /* a large value in the tail */
            float sr, sk;
            int32_t ur, uk;
            bn_quantize_row_i8_ref(x, n, qr, &sr, &ur);
            for (int l = 0; l < n_levels; l++) {
                memset(qk, 0x55, (size_t)n);
                levels[l]->quantize_row_i8(x, n, qk, &sk, &uk);
                if (memcmp(qr, qk, (size_t)n) || sr != sk || ur != uk)
                    fail_msg("quantize %s n=%lld trial %d differs from the reference", levels[l]->name, (long long)n,
                             trial);
            }
        }
        free(x), free(qr), free(qk);
    }
}

/* Integer results of ternary_gemm for extreme activations: all −128 against
 * codes 2 is the int16 worst case of the AVX2 kernel. */
static void check_ternary(int64_t rows, int64_t cols, int n_tok, int extreme, int per_row_scale) {
    uint8_t *codes = random_codes(rows, cols);
    if (extreme == 1) memset(codes, 0xAA, (size_t)(rows * cols / 4)); /* every code 2 */
    float *rs = malloc((size_t)rows * sizeof *rs);
    fill(rs, rows, 1.0f);
    bn_ternary w = {.rows = rows, .cols = cols, .codes = codes, .scale = 0.37f, .row_scale = per_row_scale ? rs : NULL};
    float *x = malloc((size_t)(n_tok * cols) * sizeof *x);
    fill(x, n_tok * cols, 2.0f);
    if (extreme)
        for (int64_t i = 0; i < n_tok * cols; i++) x[i] = (i % 97 == 5) ? 1.0f : -1.0f; /* q mostly −127 */
    if (extreme == 2)
        for (int64_t i = 0; i < n_tok * cols; i++) x[i] = (i % 3 == 0) ? 1.0f : -1.0f;
    bn_qact a = {malloc((size_t)(n_tok * cols)), malloc((size_t)n_tok * sizeof(float)),
                 malloc((size_t)n_tok * sizeof(int32_t))};
    for (int t = 0; t < n_tok; t++)
        bn_quantize_row_i8_ref(x + t * cols, cols, a.q + t * cols, &a.scale[t], &a.sum[t]);
    if (extreme) /* force the true extreme: −128 everywhere but one */
        for (int64_t i = 0; i < n_tok * cols; i++)
            if (a.q[i] < 0) a.q[i] = -128;
    for (int t = 0; t < n_tok && extreme; t++) {
        int32_t s = 0;
        for (int64_t k = 0; k < cols; k++) s += a.q[t * cols + k];
        a.sum[t] = s;
    }
    int64_t ldy = rows + 3;
    float *yr = malloc((size_t)(n_tok * ldy) * sizeof *yr), *yk = malloc((size_t)(n_tok * ldy) * sizeof *yk);
    /* Rows [r0, r1) only, as the thread pool calls it. */
    int64_t r0 = rows > 5 ? 3 : 0, r1 = rows;
    for (int64_t i = 0; i < n_tok * ldy; i++) yr[i] = -1.0f;
    bn_ternary_gemm_ref(&w, r0, r1, &a, n_tok, yr, ldy);
    for (int l = -1; l < n_levels; l++) {
        const char *name = l < 0 ? "scalar-table" : levels[l]->name;
        void (*gemm)(const bn_ternary *, int64_t, int64_t, const bn_qact *, int, float *, int64_t) =
            l < 0 ? bn_ternary_gemm_scalar : levels[l]->ternary_gemm;
        for (int64_t i = 0; i < n_tok * ldy; i++) yk[i] = -1.0f;
        gemm(&w, r0, r1, &a, n_tok, yk, ldy);
        for (int t = 0; t < n_tok; t++)
            for (int64_t r = 0; r < ldy; r++) {
                float e = yr[t * ldy + r], g = yk[t * ldy + r];
                if (memcmp(&e, &g, sizeof e))
                    fail_msg("ternary_gemm %s rows=%lld cols=%lld n_tok=%d extreme=%d: y[%d][%lld] = %.9g, want %.9g",
                             name, (long long)rows, (long long)cols, n_tok, extreme, t, (long long)r, g, e);
            }
    }
    /* The reference itself against a direct Σ w·q on one entry (guards the oracle). */
    if (r1 > r0) {
        int64_t acc = 0;
        for (int64_t k = 0; k < cols; k++) acc += (int64_t)(bn_ternary_get_code(&w, r0, k) - 1) * a.q[k];
        assert_int_equal(acc, bn_ternary_dot_ref(&w, r0, a.q, a.sum[0]));
    }
    free(codes), free(rs), free(x), free(a.q), free(a.scale), free(a.sum), free(yr), free(yk);
}

static void test_ternary_gemm_shapes(void **state) {
    (void)state;
    const int64_t rows[] = {1, 5, 16, 17, 33, 67, 130};
    const int64_t cols[] = {128, 256, 384, 640, 1152, 2560, 6912};
    /* Token counts on both sides of the AVX-512 panel GEMM's threshold (8)
     * and around its 12-token tiles (13 = 7 + 6, 25 = 9 + 8 + 8, 40). */
    const int toks[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 16, 24, 25, 37, 40};
    const int toks_wide[] = {1, 4, 7, 8, 13, 40};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        for (size_t j = 0; j < sizeof cols / sizeof cols[0]; j++) {
            int wide = cols[j] > 2000;
            size_t nt = wide ? sizeof toks_wide / sizeof toks_wide[0] : sizeof toks / sizeof toks[0];
            for (size_t k = 0; k < nt; k++)
                check_ternary(rows[i], cols[j], wide ? toks_wide[k] : toks[k], 0, (int)((i + j + k) & 1));
        }
}

static void test_ternary_gemm_extremes(void **state) {
    (void)state;
    /* 16+ blocks per row hit the AVX2 int16 flush boundary; 6912 = 54 blocks. */
    check_ternary(19, 2048, 5, 1, 0);
    check_ternary(19, 6912, 3, 1, 1);
    check_ternary(7, 2176, 6, 2, 0);
    check_ternary(40, 128 * 33, 9, 0, 0);
    /* 33 blocks: the panel GEMM's last K chunk is a single block. */
    check_ternary(45, 128 * 33, 29, 0, 1);
    check_ternary(19, 6912, 17, 1, 0);
}

static float rel_err(float got, float want, float mag) { return fabsf(got - want) / (mag > 1e-20f ? mag : 1e-20f); }

/* off: bytes by which the rows start past a 64-byte boundary (the AVX-512
 * F16 head reads whole lines and first takes a row's part up to its first
 * line's end; GGUF tensors are only 32-byte aligned). */
static void check_dense_at(uint32_t type, int64_t rows, int64_t cols, int n_tok, size_t off) {
    uint64_t rb = bn_ggml_row_bytes(type, cols);
    uint8_t *block = aligned_alloc(64, ((size_t)(rb * rows) + off + 63) / 64 * 64);
    uint8_t *data = block + off;
    /* Valid encodings of random values: go through the format's own decoder's
     * inverse where one exists; F16/BF16/F32/Q8_0 bytes are built directly. */
    float *tmp = malloc((size_t)cols * sizeof *tmp);
    for (int64_t r = 0; r < rows; r++) {
        uint8_t *row = data + r * rb;
        if (type == BN_GGML_F16) {
            for (int64_t k = 0; k < cols; k++) ((uint16_t *)row)[k] = bn_fp32_to_fp16(rndf());
        } else if (type == BN_GGML_Q8_0) {
            for (int64_t b = 0; b < cols / 32; b++) {
                uint16_t d = bn_fp32_to_fp16(0.01f + 0.02f * (rndf() + 1.0f));
                row[b * 34] = (uint8_t)d, row[b * 34 + 1] = (uint8_t)(d >> 8);
                for (int j = 0; j < 32; j++) row[b * 34 + 2 + j] = (uint8_t)(int8_t)((int)(rnd() % 256) - 128);
            }
        } else if (type == BN_GGML_F32) {
            fill(tmp, cols, 1.0f);
            memcpy(row, tmp, (size_t)cols * 4);
        } else {
            for (uint64_t i = 0; i < rb; i++) row[i] = (uint8_t)rnd();
        }
    }
    bn_dense w = {.type = type, .rows = rows, .cols = cols, .data = data, .row_bytes = rb};
    float *x = malloc((size_t)(n_tok * cols) * sizeof *x);
    fill(x, n_tok * cols, 1.0f);
    float *yr = calloc((size_t)(n_tok * rows), sizeof *yr), *yk = calloc((size_t)(n_tok * rows), sizeof *yk);
    float *yq = calloc((size_t)(n_tok * rows), sizeof *yq);
    bn_dense_gemm_ref(&w, 0, rows, x, n_tok, yr, rows, tmp);
    if (type == BN_GGML_Q8_0) {
        /* The int8 head: activations quantized per 32-block. Its reference
         * against the float one (quantization error, |Δ| ≲ 1/254 per term)... */
        bn_dense_gemm_q8_0_ref(&w, 0, rows, x, n_tok, yq, rows, tmp);
        for (int64_t r = 0; r < rows; r++) {
            bn_ggml_dequantize_row(type, data + r * rb, tmp, cols, 0.0f);
            for (int t = 0; t < n_tok; t++) {
                float mag = 0.0f;
                for (int64_t k = 0; k < cols; k++) mag += fabsf(tmp[k] * x[t * cols + k]);
                if (!(rel_err(yq[t * rows + r], yr[t * rows + r], mag) < 8e-3f))
                    fail_msg("q8_0 int8 reference cols=%lld y[%d][%lld] = %g, float reference %g", (long long)cols, t,
                             (long long)r, yq[t * rows + r], yr[t * rows + r]);
            }
        }
    }
    for (int l = 0; l < n_levels; l++) {
        /* ...and every level that uses it (the scalar and x86 levels; NEON
         * still converts Q8_0 weights to float) against that reference. */
        const float *want = type == BN_GGML_Q8_0 && strncmp(levels[l]->name, "neon", 4) ? yq : yr;
        memset(yk, 0, (size_t)(n_tok * rows) * sizeof *yk);
        levels[l]->dense_gemm(&w, 0, rows, x, n_tok, yk, rows, tmp);
        for (int64_t r = 0; r < rows; r++) {
            bn_ggml_dequantize_row(type, data + r * rb, tmp, cols, 0.0f);
            for (int t = 0; t < n_tok; t++) {
                float mag = 0.0f;
                for (int64_t k = 0; k < cols; k++) mag += fabsf(tmp[k] * x[t * cols + k]);
                float e = rel_err(yk[t * rows + r], want[t * rows + r], mag);
                if (!(e < 1e-5f))
                    fail_msg("dense_gemm %s type %u rows=%lld cols=%lld n_tok=%d: y[%d][%lld] = %g, want %g (rel %g)",
                             levels[l]->name, type, (long long)rows, (long long)cols, n_tok, t, (long long)r,
                             yk[t * rows + r], want[t * rows + r], e);
            }
        }
    }
    free(block), free(tmp), free(x), free(yr), free(yk), free(yq);
}

static void check_dense(uint32_t type, int64_t rows, int64_t cols, int n_tok) {
    check_dense_at(type, rows, cols, n_tok, 0);
}

static void test_dense_gemm(void **state) {
    (void)state;
    const uint32_t types[] = {BN_GGML_F16, BN_GGML_Q8_0, BN_GGML_F32};
    /* Q8_0 on AVX-512 takes runs of 16 blocks, then pairs, then one block:
     * 544 = 16 + 1 blocks, 4160 = 8·16 + 2, 6912 = 13·16 + 8. */
    const int64_t cols[] = {32, 96, 136, 544, 2560, 4160, 6912};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        for (size_t j = 0; j < sizeof cols / sizeof cols[0]; j++) {
            if (types[i] == BN_GGML_Q8_0 && cols[j] % 32) continue;
            for (int n_tok = 1; n_tok <= 7; n_tok++) check_dense(types[i], n_tok & 1 ? 37 : 6, cols[j], n_tok);
        }
    /* Rows starting inside a line, rows shorter than one line's remainder. */
    const int64_t fcols[] = {8, 16, 40, 2560, 2568};
    const size_t offs[] = {2, 32, 34, 62};
    for (size_t j = 0; j < sizeof fcols / sizeof fcols[0]; j++)
        for (size_t o = 0; o < sizeof offs / sizeof offs[0]; o++) {
            check_dense_at(BN_GGML_F16, 37, fcols[j], 1, offs[o]);
            check_dense_at(BN_GGML_F16, 6, fcols[j], 2, offs[o]);
        }
}

/* The int8 head's activation quantizer: |q| ≤ 127, the block max maps to
 * ±127, zero blocks give zeros, d·q reconstructs x within d/2. */
static void test_quantize_q8_blocks(void **state) {
    (void)state;
    const int64_t n = 32 * 9;
    float x[32 * 9], d[9];
    int8_t q[32 * 9];
    fill(x, n, 4.0f);
    for (int j = 0; j < 32; j++) x[64 + j] = 0.0f;  /* an all-zero block */
    x[100] = -9.0f;                                 /* a block whose max is negative */
    for (int j = 0; j < 32; j++) x[160 + j] = 1e-38f * (float)(j - 16); /* subnormal-sized */
    bn_quantize_row_q8_blocks_ref(x, n, q, d);
    for (int64_t b = 0; b < n / 32; b++) {
        int maxq = 0;
        for (int j = 0; j < 32; j++) {
            int v = q[b * 32 + j];
            assert_true(v >= -127 && v <= 127);
            if (abs(v) > maxq) maxq = abs(v);
            if (b == 5) assert_int_equal(v, 0); /* max ≤ 1e-30: all zeros, no inf */
            else assert_true(fabsf(d[b] * (float)v - x[b * 32 + j]) <= d[b] * 0.5001f);
        }
        assert_true(d[b] == 0.0f || maxq == 127 || b == 5);
    }
    assert_int_equal(q[100], -127);
    assert_true(d[2] == 0.0f && q[70] == 0);
}

static void test_vector_helpers(void **state) {
    (void)state;
    const int64_t sizes[] = {1, 7, 8, 15, 16, 17, 64, 100, 128, 1031};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        int64_t n = sizes[si];
        float *a = malloc((size_t)n * 4), *b = malloc((size_t)n * 4), *y0 = malloc((size_t)n * 4),
              *y1 = malloc((size_t)n * 4);
        uint16_t *h0 = malloc((size_t)n * 2), *h1 = malloc((size_t)n * 2);
        fill(a, n, 3.0f), fill(b, n, 2.0f);
        for (int l = 0; l < n_levels; l++) {
            const bn_cpu_kernels *k = levels[l];
            fill(y0, n, 70000.0f); /* overflows f16 in places: ±inf must match too */
            y0[0] = 1e-6f;         /* subnormal in f16 */
            if (n > 3) y0[3] = 2.98023224e-08f; /* exactly half the smallest subnormal: ties to even */
            bn_f32_to_f16_ref(y0, h0, n);
            k->f32_to_f16(y0, h1, n);
            if (memcmp(h0, h1, (size_t)n * 2)) fail_msg("f32_to_f16 %s n=%lld differs", k->name, (long long)n);
            fill(y0, n, 1.0f);
            bn_f32_to_f16_ref(y0, h0, n); /* finite halves for the dot/axpy checks */
            float mag = 0.0f, magh = 0.0f;
            for (int64_t i = 0; i < n; i++) mag += fabsf(a[i] * b[i]), magh += fabsf(a[i] * bn_fp16_to_fp32(h0[i]));
            assert_true(rel_err(k->dot_f32(a, b, n), bn_dot_f32_ref(a, b, n), mag) < 1e-5f);
            assert_true(rel_err(k->dot_f16(a, h0, n), bn_dot_f16_ref(a, h0, n), magh) < 1e-5f);
            memcpy(y1, b, (size_t)n * 4);
            memcpy(y0, b, (size_t)n * 4);
            bn_axpy_f32_ref(0.3f, a, y0, n);
            k->axpy_f32(0.3f, a, y1, n);
            /* FMA rounds once where the reference rounds twice. */
            for (int64_t i = 0; i < n; i++) assert_true(fabsf(y0[i] - y1[i]) <= 1e-6f * (fabsf(b[i]) + fabsf(a[i])));
            memcpy(y1, b, (size_t)n * 4);
            memcpy(y0, b, (size_t)n * 4);
            bn_axpy_f16_ref(-0.7f, h0, y0, n);
            k->axpy_f16(-0.7f, h0, y1, n);
            for (int64_t i = 0; i < n; i++)
                if (!(fabsf(y0[i] - y1[i]) <= 1e-6f * (fabsf(b[i]) + 1.0f)))
                    fail_msg("axpy_f16 %s n=%lld: y[%lld] = %g, want %g", k->name, (long long)n, (long long)i, y1[i],
                             y0[i]);
        }
        free(a), free(b), free(y0), free(y1), free(h0), free(h1);
    }
}

/* Attention tiles: the reference against a direct double-precision
 * softmax attention, then every level's attend_tile against the reference,
 * on odd shapes (head dims that are not multiples of 64 or of 8, tokens
 * that leave a partial tile, rows far past the 8-key blocks). Rows sit
 * ldq apart with a gap after each token's heads, which must stay as it was. */
static void check_attend_tile(int G, int nt, int n0, int hd) {
    int n = n0 + nt - 1, rows = nt * G;
    int64_t ldq = (int64_t)(G + 1) * hd, qn = ldq * nt;
    float *q = malloc((size_t)qn * 4), *o_ref = malloc((size_t)qn * 4), *o = malloc((size_t)qn * 4);
    float *kv = malloc((size_t)n * hd * 4);
    uint16_t *K = malloc((size_t)n * hd * 2), *V = malloc((size_t)n * hd * 2);
    float *scr = malloc(bn_attend_tile_scratch(rows, n, hd) * 4);
    assert_true(q && o_ref && o && kv && K && V && scr);
    fill(q, qn, 2.0f);
    fill(kv, (int64_t)n * hd, 1.0f), bn_f32_to_f16_ref(kv, K, (int64_t)n * hd);
    fill(kv, (int64_t)n * hd, 1.0f), bn_f32_to_f16_ref(kv, V, (int64_t)n * hd);
    for (int64_t i = 0; i < qn; i++) o_ref[i] = o[i] = 12345.0f;
    bn_attend_tile_ref(q, ldq, G, nt, n0, hd, K, V, scr, o_ref);
    /* The reference against softmax(q·k/√hd)·v in double. */
    double *w = malloc((size_t)n * sizeof *w);
    assert_non_null(w);
    for (int tt = 0; tt < nt; tt++)
        for (int g = 0; g < G; g++) {
            const float *qr = q + tt * ldq + (int64_t)g * hd;
            int len = n0 + tt;
            double mx = -1e300, sum = 0.0;
            for (int p = 0; p < len; p++) {
                double d = 0.0;
                for (int i = 0; i < hd; i++) d += (double)qr[i] * bn_fp16_to_fp32(K[(int64_t)p * hd + i]);
                w[p] = d / sqrt((double)hd);
                mx = w[p] > mx ? w[p] : mx;
            }
            for (int p = 0; p < len; p++) sum += (w[p] = exp(w[p] - mx));
            for (int i = 0; i < hd; i++) {
                double v = 0.0;
                for (int p = 0; p < len; p++) v += w[p] / sum * bn_fp16_to_fp32(V[(int64_t)p * hd + i]);
                float got = o_ref[tt * ldq + (int64_t)g * hd + i];
                if (!(fabs(got - v) < 1e-5))
                    fail_msg("attend_tile_ref G=%d nt=%d n0=%d hd=%d: row (%d,%d)[%d] = %g, want %g", G, nt, n0, hd,
                             tt, g, i, got, v);
            }
        }
    free(w);
    for (int l = 0; l < n_levels; l++) {
        if (!levels[l]->attend_tile) continue;
        for (int64_t i = 0; i < qn; i++) o[i] = 12345.0f;
        levels[l]->attend_tile(q, ldq, G, nt, n0, hd, K, V, scr, o);
        for (int64_t i = 0; i < qn; i++) {
            int gap = i % ldq >= (int64_t)G * hd;
            if (gap ? o[i] != 12345.0f : !(fabsf(o[i] - o_ref[i]) <= 2e-6f))
                fail_msg("attend_tile %s G=%d nt=%d n0=%d hd=%d: out[%lld] = %g, want %g", levels[l]->name, G, nt, n0,
                         hd, (long long)i, o[i], gap ? 12345.0f : o_ref[i]);
        }
    }
    free(q), free(o_ref), free(o), free(kv), free(K), free(V), free(scr);
}

static void test_attend_tile(void **state) {
    (void)state;
    const int shapes[][4] = {/* G, nt, n0, hd */
                             {4, 4, 1, 128}, {4, 3, 37, 128}, {1, 16, 5, 64}, {5, 3, 100, 40}, {2, 8, 9, 8},
                             {4, 1, 200, 128}, {1, 1, 1, 16}, {16, 1, 20, 24}, {3, 5, 64, 72}, {2, 6, 3, 12},
                             {4, 4, 130, 256}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        check_attend_tile(shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3]);
}

/* BITNET_CPU forces a level; an unknown one falls back to the best. */
static void test_select(void **state) {
    (void)state;
    setenv("BITNET_CPU", "scalar", 1);
    assert_string_equal(bn_cpu_kernels_select()->name, "scalar");
    for (int l = 0; l < n_levels; l++) {
        setenv("BITNET_CPU", levels[l]->name, 1);
        assert_ptr_equal(bn_cpu_kernels_select(), levels[l]);
    }
    setenv("BITNET_CPU", "no-such-level", 1);
    assert_non_null(bn_cpu_kernels_select());
    unsetenv("BITNET_CPU");
    assert_ptr_equal(bn_cpu_kernels_select(), levels[n_levels - 1]);
    assert_null(bn_cpu_kernels_get("no-such-level"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantize_exact),   cmocka_unit_test(test_ternary_gemm_shapes),
        cmocka_unit_test(test_ternary_gemm_extremes), cmocka_unit_test(test_dense_gemm),
        cmocka_unit_test(test_quantize_q8_blocks),
        cmocka_unit_test(test_vector_helpers),   cmocka_unit_test(test_attend_tile),   cmocka_unit_test(test_select),
    };
    return cmocka_run_group_tests(tests, setup_levels, NULL);
}
