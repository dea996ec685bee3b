/* Encoders (format/ggml_quantize.h) round-tripped through the reader's
 * decoders (format/ggml_types.h) on random data, plus hand-computed bytes
 * that pin the bit layouts independently of the decoder. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "format/ggml_quantize.h"
#include "format/ggml_types.h"

static uint64_t rng = 0x12345678u;

static uint32_t rnd(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng >> 33);
}

static float rndf(void) { return (float)rnd() / 2147483648.0f * 2.0f - 1.0f; } /* [-1, 1) */

/* Ternary codes with every value present and, in one block, none but zeros. */
static void random_codes(uint8_t *c, int64_t n, int zero_block_at) {
    for (int64_t i = 0; i < n; i++) c[i] = (uint8_t)(rnd() % 3);
    if (zero_block_at >= 0)
        for (int i = 0; i < 256 && zero_block_at + i < n; i++) c[zero_block_at + i] = 1;
}

static float f16_round(float x) { return bn_fp16_to_fp32(bn_fp32_to_fp16(x)); }

/* --------------------------------------------------------------- ternary -- */

static void check_ternary_type(uint32_t type, int64_t ne0, float scale) {
    uint8_t *codes = malloc((size_t)ne0);
    uint8_t *row = calloc(1, (size_t)ne0);
    float *out = malloc((size_t)ne0 * sizeof *out);
    random_codes(codes, ne0, type == BN_GGML_I2_S ? -1 : 256);
    size_t nb = bn_encode_ternary_row(type, codes, scale, row, ne0);
    assert_int_equal(nb, bn_ggml_row_bytes(type, ne0));
    float d = type == BN_GGML_I2_S ? scale : f16_round(scale);
    bn_ggml_dequantize_row(type, row, out, ne0, scale);
    int nonzero = 0;
    for (int64_t i = 0; i < ne0; i++) {
        assert_true(out[i] == (float)((int)codes[i] - 1) * d);
        float bs = -1.0f;
        assert_int_equal(bn_ternary_code(type, row, i, &bs), codes[i]);
        nonzero += codes[i] != 1;
        if (type != BN_GGML_I2_S) {
            /* llama.cpp's block scale is the block absmax: 0 for the all-zero block */
            int zero_block = i >= 256 && i < 512;
            assert_true(bs == (zero_block ? 0.0f : d));
        }
    }
    assert_true(nonzero > ne0 / 2);
    free(codes);
    free(row);
    free(out);
}

static void test_ternary_round_trip(void **state) {
    (void)state;
    check_ternary_type(BN_GGML_I2_S, 128 * 7, 0.0273f);
    check_ternary_type(BN_GGML_TQ2_0, 256 * 5, 0.0412f);
    check_ternary_type(BN_GGML_TQ1_0, 256 * 5, 1.0f / 37.0f);
    /* bad lengths are refused */
    uint8_t c[512] = {0}, out[512];
    assert_int_equal(bn_encode_ternary_row(BN_GGML_I2_S, c, 1.0f, out, 100), 0);
    assert_int_equal(bn_encode_ternary_row(BN_GGML_TQ2_0, c, 1.0f, out, 128), 0);
    assert_int_equal(bn_encode_ternary_row(BN_GGML_F16, c, 1.0f, out, 256), 0);
}

/* Hand-computed bytes (FORMATS.md §2.3-2.4). */
static void test_ternary_bit_layouts(void **state) {
    (void)state;
    uint8_t c[256], out[80];
    /* I2_S: element 0 → bits 7-6 of byte 0, element 32 → bits 5-4, 64 → 3-2, 96 → 1-0. */
    memset(c, 1, sizeof c);
    c[0] = 2; c[32] = 0; c[64] = 2; c[96] = 0; c[5] = 0;
    bn_encode_ternary_row(BN_GGML_I2_S, c, 1.0f, out, 128);
    assert_int_equal(out[0], (2 << 6) | (0 << 4) | (2 << 2) | 0);
    assert_int_equal(out[5], (0 << 6) | (1 << 4) | (1 << 2) | 1);
    assert_int_equal(out[1], 0x55);
    uint8_t tail[BN_I2S_TRAILER_BYTES];
    bn_i2s_trailer(0.5f, tail);
    assert_int_equal(tail[3], 0x3F); /* 0.5f = 0x3F000000, little-endian */
    assert_int_equal(tail[2], 0x00);
    for (int i = 4; i < BN_I2S_TRAILER_BYTES; i++) assert_int_equal(tail[i], 0);
    /* TQ2_0: byte m of chunk j holds elements 128j + m + 32l at bits 2l. */
    memset(c, 1, sizeof c);
    c[0] = 2; c[32] = 0; c[128] = 2; c[128 + 3 + 96] = 0;
    bn_encode_ternary_row(BN_GGML_TQ2_0, c, 1.0f, out, 256);
    assert_int_equal(out[0], 2 | (0 << 2) | (1 << 4) | (1 << 6));
    assert_int_equal(out[32], 2 | (1 << 2) | (1 << 4) | (1 << 6));
    assert_int_equal(out[35], 1 | (1 << 2) | (1 << 4) | (0 << 6));
    assert_int_equal(out[64] | (out[65] << 8), 0x3C00); /* fp16 1.0 at the end */
    /* TQ1_0: five trits, first most significant, stored as ceil(v·256/243). */
    memset(c, 1, sizeof c); /* every trit 1: v = 121 → ceil(121·256/243) = 128 */
    c[0] = 2;               /* qs[0] trits 2,1,1,1,1 (elements 0,32,64,96,128): v = 202 → 213 */
    c[160] = 0;             /* qs[32] trits 0,1,1,1,1 (elements 160,176,...): v = 40 → 43 */
    c[240] = 2; c[244] = 0; /* qh[0] trits 2,0,1,1 + a zero trit: v = 2·81+0+9+3 = 174 → 184 */
    bn_encode_ternary_row(BN_GGML_TQ1_0, c, 1.0f, out, 256);
    assert_int_equal(out[0], 213);
    assert_int_equal(out[1], 128);
    assert_int_equal(out[32], 43);
    assert_int_equal(out[33], 128);
    assert_int_equal(out[48], 184);
    assert_int_equal(out[49], (1 * 81 + 1 * 27 + 1 * 9 + 1 * 3) * 256 / 243 + 1); /* 120 → 127 */
    assert_int_equal(out[52] | (out[53] << 8), 0x3C00);
}

/* TQ from floats behaves like llama.cpp: d = block absmax, trits by rounding. */
static void test_tq_from_floats(void **state) {
    (void)state;
    const int64_t n = 512;
    float x[512], y[512];
    uint8_t codes[512], row[200];
    random_codes(codes, n, -1);
    for (int64_t i = 0; i < n; i++) x[i] = (float)((int)codes[i] - 1) * (i < 256 ? 0.25f : 0.75f);
    for (int t = 0; t < 2; t++) {
        uint32_t type = t ? BN_GGML_TQ1_0 : BN_GGML_TQ2_0;
        assert_int_equal(bn_quantize_row(type, x, row, n), bn_ggml_row_bytes(type, n));
        bn_ggml_dequantize_row(type, row, y, n, 0.0f);
        for (int64_t i = 0; i < n; i++) assert_true(y[i] == x[i]);
    }
}

/* ----------------------------------------------------------------- floats -- */

static void test_float_types(void **state) {
    (void)state;
    enum { N = 1024 };
    float x[N], y[N];
    uint8_t row[N * 4];
    for (int i = 0; i < N; i++) x[i] = rndf() * 3.0f;
    bn_quantize_row(BN_GGML_F32, x, row, N);
    bn_ggml_dequantize_row(BN_GGML_F32, row, y, N, 0.0f);
    assert_memory_equal(x, y, sizeof x);
    bn_quantize_row(BN_GGML_F16, x, row, N);
    bn_ggml_dequantize_row(BN_GGML_F16, row, y, N, 0.0f);
    for (int i = 0; i < N; i++) {
        assert_true(fabsf(y[i] - x[i]) <= fabsf(x[i]) * (1.0f / 2048.0f) + 1e-7f);
        assert_true(y[i] == f16_round(x[i]));
    }
    bn_quantize_row(BN_GGML_BF16, x, row, N);
    bn_ggml_dequantize_row(BN_GGML_BF16, row, y, N, 0.0f);
    for (int i = 0; i < N; i++) assert_true(fabsf(y[i] - x[i]) <= fabsf(x[i]) * (1.0f / 256.0f));
}

/* Max error of a block-quantized row, relative to the absmax of each block of
 * `check` elements; returns the worst ratio. */
static float worst_block_error(uint32_t type, const float *x, int64_t n, int check) {
    uint8_t *row = malloc((size_t)bn_ggml_row_bytes(type, n));
    float *y = malloc((size_t)n * sizeof *y);
    assert_int_equal(bn_quantize_row(type, x, row, n), bn_ggml_row_bytes(type, n));
    bn_ggml_dequantize_row(type, row, y, n, 0.0f);
    float worst = 0.0f;
    for (int64_t b = 0; b < n / check; b++) {
        float amax = 0.0f, e = 0.0f;
        for (int i = 0; i < check; i++) {
            amax = fmaxf(amax, fabsf(x[b * check + i]));
            e = fmaxf(e, fabsf(y[b * check + i] - x[b * check + i]));
        }
        if (amax > 0) worst = fmaxf(worst, e / amax);
    }
    free(row);
    free(y);
    return worst;
}

static void test_block_types(void **state) {
    (void)state;
    enum { N = 256 * 8 };
    float *x = malloc(N * sizeof *x);
    /* Blocks of very different magnitudes, including an all-zero block. */
    for (int i = 0; i < N; i++) {
        float mag = powf(10.0f, (float)((i / 256) % 4) - 2.0f) * (1.0f + (float)((i / 16) % 3));
        x[i] = (i / 256 == 5) ? 0.0f : rndf() * mag;
    }
    /* Q8_0: half a step of absmax/127 (+ the fp16 rounding of d). */
    assert_true(worst_block_error(BN_GGML_Q8_0, x, N, 32) <= 0.5f / 127.0f + 1e-3f);
    /* Q4_0: one step of absmax/8 at most (the clamped positive extreme). */
    assert_true(worst_block_error(BN_GGML_Q4_0, x, N, 32) <= 1.0f / 8.0f + 1e-3f);
    /* Q6_K: half a sub-block step (absmax/32/2) plus the int8 scale rounding. */
    float q6 = worst_block_error(BN_GGML_Q6_K, x, N, 256);
    assert_true(q6 <= 0.025f);
    assert_true(q6 > 0.0f); /* a lossy type: the comparison is real */
    /* zero input stays exactly zero */
    float z[256] = {0}, y[256];
    uint8_t row[256];
    bn_quantize_row(BN_GGML_Q6_K, z, row, 256);
    bn_ggml_dequantize_row(BN_GGML_Q6_K, row, y, 256, 0.0f);
    for (int i = 0; i < 256; i++) assert_true(y[i] == 0.0f);
    /* bad lengths */
    assert_int_equal(bn_quantize_row(BN_GGML_Q6_K, x, row, 128), 0);
    assert_int_equal(bn_quantize_row(BN_GGML_Q8_0, x, row, 40), 0);
    assert_int_equal(bn_quantize_row(BN_GGML_I2_S, x, row, 128), 0);
    free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ternary_round_trip), cmocka_unit_test(test_ternary_bit_layouts),
        cmocka_unit_test(test_tq_from_floats),     cmocka_unit_test(test_float_types),
        cmocka_unit_test(test_block_types),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
