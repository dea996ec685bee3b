/* ggml type decoding against hand-built blocks.
 *
 * Every block here is written byte by byte from the layout facts in
 * ../shared/docs/FORMATS.md §2, and every expected value is worked out by
 * hand (in the comments) — nothing goes through bitnet.c's own encoders, so
 * an encoder and decoder that agree on a wrong layout cannot pass. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "format/ggml_types.h"

static float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ------------------------------------------------------------------ fp16 -- */

static void test_fp16_to_fp32_values(void **state) {
    (void)state;
    assert_true(bn_fp16_to_fp32(0x0000) == 0.0f && !signbit(bn_fp16_to_fp32(0x0000)));
    assert_true(bn_fp16_to_fp32(0x8000) == 0.0f && signbit(bn_fp16_to_fp32(0x8000))); /* -0 */
    assert_true(bn_fp16_to_fp32(0x3C00) == 1.0f);
    assert_true(bn_fp16_to_fp32(0xC000) == -2.0f);
    assert_true(bn_fp16_to_fp32(0x3555) == 0.333251953125f);       /* 1365/4096 */
    assert_true(bn_fp16_to_fp32(0x7BFF) == 65504.0f);              /* max */
    assert_true(bn_fp16_to_fp32(0xFBFF) == -65504.0f);
    assert_true(bn_fp16_to_fp32(0x0400) == ldexpf(1.0f, -14));     /* smallest normal */
    assert_true(bn_fp16_to_fp32(0x0001) == ldexpf(1.0f, -24));     /* smallest subnormal */
    assert_true(bn_fp16_to_fp32(0x03FF) == ldexpf(1023.0f, -24));  /* largest subnormal */
    assert_true(bn_fp16_to_fp32(0x0200) == ldexpf(1.0f, -15));
    assert_true(bn_fp16_to_fp32(0x8201) == -ldexpf(513.0f, -24));
    assert_true(isinf(bn_fp16_to_fp32(0x7C00)) && bn_fp16_to_fp32(0x7C00) > 0);
    assert_true(isinf(bn_fp16_to_fp32(0xFC00)) && bn_fp16_to_fp32(0xFC00) < 0);
    assert_true(isnan(bn_fp16_to_fp32(0x7E00)));
    assert_true(isnan(bn_fp16_to_fp32(0x7C01))); /* signalling NaN stays NaN */
    assert_true(isnan(bn_fp16_to_fp32(0xFFFF)));
}

/* Every half, against the definition: (-1)^s · (exp ? 1024 + m : m) · 2^(max(exp,1) - 25). */
static void test_fp16_to_fp32_exhaustive(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 0x10000; h++) {
        uint32_t e = (h >> 10) & 31, m = h & 1023;
        float got = bn_fp16_to_fp32((uint16_t)h);
        if (e == 31) {
            assert_true(m ? isnan(got) : isinf(got));
            continue;
        }
        double want = ldexp((double)(e ? 1024 + m : m), (e ? (int)e : 1) - 25);
        if (h & 0x8000) want = -want;
        assert_true((double)got == want);
        assert_int_equal(!!signbit(got), !!(h & 0x8000));
        assert_int_equal(bn_fp32_to_fp16(got), h); /* and back, exactly */
    }
}

static void test_fp32_to_fp16_rounding(void **state) {
    (void)state;
    const float eps11 = ldexpf(1.0f, -11);                          /* half an ulp of fp16 at 1.0 */
    assert_int_equal(bn_fp32_to_fp16(1.0f), 0x3C00);
    assert_int_equal(bn_fp32_to_fp16(1.0f + eps11), 0x3C00);        /* tie → even (0x3C00) */
    assert_int_equal(bn_fp32_to_fp16(1.0f + 3 * eps11), 0x3C02);    /* tie between 3C01 and 3C02 → even */
    assert_int_equal(bn_fp32_to_fp16(1.0f + eps11 + ldexpf(1, -20)), 0x3C01); /* just above the tie */
    assert_int_equal(bn_fp32_to_fp16(-0.0f), 0x8000);
    assert_int_equal(bn_fp32_to_fp16(65504.0f), 0x7BFF);
    assert_int_equal(bn_fp32_to_fp16(65519.99f), 0x7BFF);           /* below the tie with 65536 */
    assert_int_equal(bn_fp32_to_fp16(65520.0f), 0x7C00);            /* tie: 0x7BFF is odd → rounds to inf */
    assert_int_equal(bn_fp32_to_fp16(1e10f), 0x7C00);
    assert_int_equal(bn_fp32_to_fp16(-1e10f), 0xFC00);
    assert_int_equal(bn_fp32_to_fp16(INFINITY), 0x7C00);
    assert_int_equal(bn_fp32_to_fp16(-INFINITY), 0xFC00);
    uint16_t n = bn_fp32_to_fp16(NAN);
    assert_true((n & 0x7C00) == 0x7C00 && (n & 0x3FF) != 0);
    n = bn_fp32_to_fp16(u2f(0x7F800001u)); /* NaN whose payload lies below fp16's mantissa bits */
    assert_true((n & 0x7C00) == 0x7C00 && (n & 0x3FF) != 0);
    /* Subnormals: results are k·2^-24. */
    assert_int_equal(bn_fp32_to_fp16(ldexpf(1, -24)), 0x0001);
    assert_int_equal(bn_fp32_to_fp16(ldexpf(1, -25)), 0x0000);                  /* tie 0|1 → 0 */
    assert_int_equal(bn_fp32_to_fp16(ldexpf(1.0000001f, -25)), 0x0001);         /* above the tie */
    assert_int_equal(bn_fp32_to_fp16(-ldexpf(3, -25)), 0x8002);                 /* 1.5 → tie 1|2 → 2 */
    assert_int_equal(bn_fp32_to_fp16(ldexpf(5, -25)), 0x0002);                  /* 2.5 → tie 2|3 → 2 */
    assert_int_equal(bn_fp32_to_fp16(ldexpf(1023.25f, -24)), 0x03FF);
    assert_int_equal(bn_fp32_to_fp16(ldexpf(1023.5f, -24)), 0x0400);            /* tie → even = smallest normal */
    assert_int_equal(bn_fp32_to_fp16(ldexpf(1, -14)), 0x0400);
    assert_int_equal(bn_fp32_to_fp16(ldexpf(1, -30)), 0x0000);
    assert_int_equal(bn_fp32_to_fp16(ldexpf(-1, -30)), 0x8000);
}

/* Random floats in fp16's range: the result must be a nearest half, ties to an even mantissa. */
static void test_fp32_to_fp16_nearest(void **state) {
    (void)state;
    srand(1234);
    for (int i = 0; i < 200000; i++) {
        uint32_t u = ((uint32_t)rand() << 16) ^ (uint32_t)rand();
        u = (u & 0x80000000u) | (0x33000000u + u % (0x477FE000u - 0x33000000u)); /* |f| in [2^-25, 65504) */
        float f = u2f(u);
        uint16_t h = bn_fp32_to_fp16(f);
        double x = fabs((double)f), got = fabs((double)bn_fp16_to_fp32(h));
        uint16_t mag = h & 0x7FFF;
        double below = mag ? fabs((double)bn_fp16_to_fp32((uint16_t)(mag - 1))) : 0.0;
        double above = mag < 0x7C00 ? fabs((double)bn_fp16_to_fp32((uint16_t)(mag + 1))) : INFINITY;
        assert_true(fabs(got - x) <= fabs(below - x));
        assert_true(fabs(got - x) <= fabs(above - x));
        if (fabs(got - x) == fabs(below - x) || fabs(got - x) == fabs(above - x)) assert_int_equal(h & 1, 0);
        assert_int_equal(h >> 15, u >> 31);
    }
}

/* ------------------------------------------------------------------ bf16 -- */

static void test_bf16(void **state) {
    (void)state;
    assert_true(bn_bf16_to_fp32(0x3F80) == 1.0f);
    assert_true(bn_bf16_to_fp32(0x4049) == 3.140625f);
    assert_true(bn_bf16_to_fp32(0xC2F7) == -123.5f);
    assert_true(bn_bf16_to_fp32(0x0001) == u2f(0x00010000u)); /* a subnormal, exact */
    assert_true(isinf(bn_bf16_to_fp32(0xFF80)));
    assert_int_equal(bn_fp32_to_bf16(1.0f), 0x3F80);
    assert_int_equal(bn_fp32_to_bf16(1.0f + ldexpf(1, -8)), 0x3F80);               /* tie → even */
    assert_int_equal(bn_fp32_to_bf16(1.0f + 3 * ldexpf(1, -8)), 0x3F82);           /* tie → even */
    assert_int_equal(bn_fp32_to_bf16(1.0f + ldexpf(1, -8) + ldexpf(1, -20)), 0x3F81);
    assert_int_equal(bn_fp32_to_bf16(-123.5f), 0xC2F7);
    assert_int_equal(bn_fp32_to_bf16(-0.0f), 0x8000);
    assert_int_equal(bn_fp32_to_bf16(INFINITY), 0x7F80);
    assert_int_equal(bn_fp32_to_bf16(u2f(0x7F7FFFFFu)), 0x7F80); /* FLT_MAX rounds up to inf */
    assert_int_equal(bn_fp32_to_bf16(u2f(0x7F800001u)), 0x7FC0); /* signalling NaN → quiet, not inf */
    assert_int_equal(bn_fp32_to_bf16(u2f(0xFFC00000u)), 0xFFC0);
    assert_int_equal(bn_fp32_to_bf16(u2f(0x00018000u)), 0x0002); /* subnormal tie 1|2 → 2 */
}

/* -------------------------------------------------------------- geometry -- */

static void test_geometry(void **state) {
    (void)state;
    assert_int_equal(bn_ggml_row_bytes(BN_GGML_F32, 7), 28);
    assert_int_equal(bn_ggml_row_bytes(BN_GGML_BF16, 3), 6);
    assert_int_equal(bn_ggml_row_bytes(BN_GGML_Q8_0, 64), 68);
    assert_int_equal(bn_ggml_row_bytes(BN_GGML_Q8_0, 33), 0);
    assert_int_equal(bn_ggml_row_bytes(BN_GGML_Q4_0, 32), 18);
    assert_int_equal(bn_ggml_row_bytes(BN_GGML_Q6_K, 512), 420);
    assert_int_equal(bn_ggml_row_bytes(BN_GGML_TQ1_0, 512), 108);
    assert_int_equal(bn_ggml_row_bytes(BN_GGML_TQ2_0, 2560), 660);
    assert_int_equal(bn_ggml_row_bytes(BN_GGML_I2_S, 2560), 640);
    assert_int_equal(bn_ggml_row_bytes(BN_GGML_I2_S, 64), 0);
    assert_int_equal(bn_ggml_row_bytes(12, 256), 0);
    assert_int_equal(bn_ggml_row_bytes(BN_GGML_F32, 0), 0);
    assert_int_equal(bn_ggml_row_bytes(BN_GGML_F32, -4), 0);
    assert_int_equal(bn_ggml_tensor_bytes(BN_GGML_I2_S, 2560, 2560LL * 6912), 2560LL * 6912 / 4 + 32);
    assert_int_equal(bn_ggml_tensor_bytes(BN_GGML_TQ2_0, 512, 512 * 3), 3 * 132);
    assert_int_equal(bn_ggml_tensor_bytes(BN_GGML_F32, 4, 10), 0);               /* not whole rows */
    assert_int_equal(bn_ggml_tensor_bytes(BN_GGML_F32, INT64_MAX, INT64_MAX), 0); /* overflow */
    assert_int_equal(bn_ggml_tensor_bytes(BN_GGML_F32, 1LL << 40, 1LL << 62), 0); /* 2^64 bytes: overflow */
    assert_true(bn_ggml_tensor_bytes(BN_GGML_F16, 1LL << 40, 1LL << 62) == 1ull << 63); /* 2^63 still fits */
    assert_true(bn_ggml_type_supported(36) && bn_ggml_type_supported(34) && bn_ggml_type_supported(30));
    assert_false(bn_ggml_type_supported(12) || bn_ggml_type_supported(38) || bn_ggml_type_supported(39));
    assert_string_equal(bn_ggml_type_name(36), "I2_S");
    assert_string_equal(bn_ggml_type_name(35), "TQ2_0");
    assert_string_equal(bn_ggml_type_name(12), "Q4_K (12)");
    assert_non_null(strstr(bn_ggml_type_name(38), "TL1"));
    assert_non_null(strstr(bn_ggml_type_name(39), "TL2"));
    assert_non_null(strstr(bn_ggml_type_name(39), "MXFP4"));
    assert_string_equal(bn_ggml_type_name(1000), "type 1000 (unknown)");
    assert_string_equal(bn_ggml_type_name(4000000000u), "type 4000000000 (unknown)");
}

/* ---------------------------------------------------------- float types -- */

static void test_f32_f16_bf16_rows(void **state) {
    (void)state;
    const uint8_t f32[8] = {0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x20, 0xC1}; /* 1.0, -10.0 */
    const uint8_t f16[6] = {0x00, 0x3C, 0xFF, 0x7B, 0x01, 0x80};             /* 1, 65504, -2^-24 */
    const uint8_t bf16[4] = {0x49, 0x40, 0x80, 0xBF};                        /* 3.140625, -1 */
    float y[3];
    bn_ggml_dequantize_row(BN_GGML_F32, f32 + 0, y, 2, 0.0f);
    assert_true(y[0] == 1.0f && y[1] == -10.0f);
    bn_ggml_dequantize_row(BN_GGML_F16, f16, y, 3, 0.0f);
    assert_true(y[0] == 1.0f && y[1] == 65504.0f && y[2] == -ldexpf(1, -24));
    bn_ggml_dequantize_row(BN_GGML_BF16, bf16, y, 2, 0.0f);
    assert_true(y[0] == 3.140625f && y[1] == -1.0f);
}

/* ------------------------------------------------------------ Q8_0/Q4_0 -- */

static void test_q8_0(void **state) {
    (void)state;
    uint8_t b[2 * 34];
    float y[64];
    /* block 0: d = 0.5 (fp16 0x3800), q[j] = j - 16 except q[0] = -128, q[31] = 127 */
    b[0] = 0x00, b[1] = 0x38;
    for (int j = 0; j < 32; j++) b[2 + j] = (uint8_t)(int8_t)(j - 16);
    b[2] = 0x80, b[33] = 0x7F;
    /* block 1: d = -3 (fp16 0xC200), q[j] = 1 */
    b[34] = 0x00, b[35] = 0xC2;
    memset(b + 36, 1, 32);
    bn_ggml_dequantize_row(BN_GGML_Q8_0, b, y, 64, 0.0f);
    assert_true(y[0] == -64.0f);  /* -128 · 0.5 */
    assert_true(y[1] == -7.5f);   /* (1 - 16) · 0.5 */
    assert_true(y[16] == 0.0f);
    assert_true(y[20] == 2.0f);   /* 4 · 0.5 */
    assert_true(y[31] == 63.5f);  /* 127 · 0.5 */
    for (int j = 32; j < 64; j++) assert_true(y[j] == -3.0f);
}

static void test_q4_0(void **state) {
    (void)state;
    uint8_t b[18];
    float y[32];
    /* d = 2 (fp16 0x4000); byte j: low nibble j → element j, high nibble 15-j → element j+16 */
    b[0] = 0x00, b[1] = 0x40;
    for (int j = 0; j < 16; j++) b[2 + j] = (uint8_t)(j | ((15 - j) << 4));
    bn_ggml_dequantize_row(BN_GGML_Q4_0, b, y, 32, 0.0f);
    assert_true(y[0] == -16.0f);  /* (0 - 8) · 2 */
    assert_true(y[8] == 0.0f);    /* (8 - 8) · 2 */
    assert_true(y[15] == 14.0f);  /* (15 - 8) · 2 */
    assert_true(y[16] == 14.0f);  /* high nibble of byte 0 = 15 */
    assert_true(y[19] == 8.0f);   /* high nibble of byte 3 = 12 → (12 - 8) · 2 */
    assert_true(y[31] == -16.0f); /* high nibble of byte 15 = 0 */
}

/* ------------------------------------------------------------------ Q6_K -- */

/* Base block: d = 0.5, scales[k] = ±(k+1) alternating, every 6-bit value 32
 * (ql nibbles 0, qh pairs 2 = 0xAA) so every element decodes to 0. Each case
 * changes one byte and names the element(s) that must change. */
typedef struct q6_case {
    int byte;
    uint8_t value;
    int elem;
    float want;
} q6_case;

static void q6_base(uint8_t b[210]) {
    static const int8_t sc[16] = {1, -2, 3, -4, 5, -6, 7, -8, 9, -10, 11, -12, 13, -14, 15, -16};
    memset(b, 0, 128);         /* ql */
    memset(b + 128, 0xAA, 64); /* qh */
    memcpy(b + 192, sc, 16);
    b[208] = 0x00, b[209] = 0x38; /* d = 0.5 */
}

static void test_q6_k(void **state) {
    (void)state;
    static const q6_case cases[] = {
        {5, 0x07, 5, 3.5f},               /* ql[5] low → elem 5, q 7, sc[0]=1: 7·.5·1 */
        {20, 0x30, 84, -9.0f},            /* ql[20] high → elem 20+64, q 3, sc[1+4]=-6 */
        {40, 0x01, 40, 1.5f},             /* ql[8+32] low → elem 8+32, q 1, sc[0+2]=3 */
        {63, 0xF0, 127, -60.0f},          /* ql[31+32] high → elem 31+96, q 15, sc[1+6]=-8 */
        {128 + 3, 0xA9, 3, -8.0f},        /* qh[3] bits 0-1 = 1 → elem 3, q 16-32, sc[0]=1 */
        {128 + 17, 0xEA, 113, -64.0f},    /* qh[17] bits 6-7 = 3 → elem 17+96, q 48-32, sc[1+6]=-8 */
        {64 + 2, 0x05, 130, 22.5f},       /* 2nd half ql[2] low → elem 128+2, q 5, sc[8]=9 */
        {128 + 32 + 31, 0x8A, 223, 224.0f}, /* 2nd half qh[31] bits 4-5 = 0 → elem 128+95, q -32, sc[8+1+4]=-14 */
        {64 + 48, 0xA0, 240, -80.0f},     /* 2nd half ql[16+32] high → elem 128+16+96, q 10, sc[8+1+6]=-16 */
    };
    uint8_t b[210];
    float y[256];
    q6_base(b);
    bn_ggml_dequantize_row(BN_GGML_Q6_K, b, y, 256, 0.0f);
    for (int j = 0; j < 256; j++) assert_true(y[j] == 0.0f);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        q6_base(b);
        b[cases[c].byte] = cases[c].value;
        bn_ggml_dequantize_row(BN_GGML_Q6_K, b, y, 256, 0.0f);
        for (int j = 0; j < 256; j++) {
            if (j == cases[c].elem) assert_true(y[j] == cases[c].want);
            else assert_true(y[j] == 0.0f);
        }
    }
}

/* ----------------------------------------------------------------- TQ2_0 -- */

static void test_tq2_0(void **state) {
    (void)state;
    uint8_t b[66];
    float y[256];
    memset(b, 0x55, 64);          /* every 2-bit code 1 → 0 */
    b[64] = 0x00, b[65] = 0x34;   /* d = 0.25 */
    b[0] = 0x16;                  /* bits 1-0 = 2 → elem 0 = +d; bits 7-6 = 0 → elem 96 = -d */
    b[5] = 0x59;                  /* bits 3-2 = 2 → elem 5+32 = 37 = +d */
    b[32 + 7] = 0x45;             /* chunk 1, bits 5-4 = 0 → elem 128+7+64 = 199 = -d */
    b[63] = 0x95;                 /* chunk 1, bits 7-6 = 2 → elem 128+31+96 = 255 = +d */
    bn_ggml_dequantize_row(BN_GGML_TQ2_0, b, y, 256, 0.0f);
    for (int j = 0; j < 256; j++) {
        float want = 0.0f;
        if (j == 0 || j == 37 || j == 255) want = 0.25f;
        if (j == 96 || j == 199) want = -0.25f;
        assert_true(y[j] == want);
    }
    float d = 0;
    assert_int_equal(bn_ternary_code(BN_GGML_TQ2_0, b, 37, &d), 2);
    assert_true(d == 0.25f);
    assert_int_equal(bn_ternary_code(BN_GGML_TQ2_0, b, 199, &d), 0);
    assert_int_equal(bn_ternary_code(BN_GGML_TQ2_0, b, 198, &d), 1);
}

/* ----------------------------------------------------------------- TQ1_0 -- */

/* Bytes are base-3 numbers (first trit most significant) stored as
 * ceil(v·256/243). Worked out by hand:
 *   (1,1,1,1,1)  v=121 → 128      (1,1,1,1,0) v=120 → 127
 *   (2,1,1,1,1)  v=202 → 213      (0,1,1,1,1) v=40  → 43
 *   (1,1,0,1,2)  v=113 → 120      (1,2,1,0,0) v=144 → 152
 *   (2,2,2,2,0)  v=240 → 253 */
static void test_tq1_0(void **state) {
    (void)state;
    uint8_t b[54];
    float y[256];
    memset(b, 128, 48);          /* all trits 1 → 0 */
    memset(b + 48, 127, 4);      /* qh: four 1-trits and the unused 0 */
    b[52] = 0x00, b[53] = 0x3A; /* d = 0.75 */
    bn_ggml_dequantize_row(BN_GGML_TQ1_0, b, y, 256, 0.0f);
    for (int j = 0; j < 256; j++) assert_true(y[j] == 0.0f);

    b[0] = 213;      /* region 1, byte 0, trit 0 = 2 → elem 0 = +d */
    b[31] = 127;     /* region 1, byte 31, trit 4 = 0 → elem 31+4·32 = 159 = -d */
    b[32] = 43;      /* region 2, byte 0, trit 0 = 0 → elem 160 = -d */
    b[47] = 120;     /* region 2, byte 15: trit 2 = 0 → elem 160+15+32 = 207 = -d; trit 4 = 2 → 239 = +d */
    b[48 + 2] = 152; /* region 3, qh[2]: trit 1 = 2 → elem 240+2+4 = 246 = +d; trit 3 = 0 → 254 = -d */
    b[48 + 0] = 253; /* region 3, qh[0]: trits 0..3 = 2 → elems 240, 244, 248, 252 = +d */
    bn_ggml_dequantize_row(BN_GGML_TQ1_0, b, y, 256, 0.0f);
    for (int j = 0; j < 256; j++) {
        float want = 0.0f;
        if (j == 0 || j == 239 || j == 246 || j == 240 || j == 244 || j == 248 || j == 252) want = 0.75f;
        if (j == 159 || j == 160 || j == 207 || j == 254) want = -0.75f;
        assert_true(y[j] == want);
    }
    float d = 0;
    assert_int_equal(bn_ternary_code(BN_GGML_TQ1_0, b, 207, &d), 0);
    assert_true(d == 0.75f);
    assert_int_equal(bn_ternary_code(BN_GGML_TQ1_0, b, 246, &d), 2);
    assert_int_equal(bn_ternary_code(BN_GGML_TQ1_0, b, 100, &d), 1);
}

/* Every 5-trit pattern packed by the spec's formula reads back trit by trit. */
static void test_tq1_0_all_patterns(void **state) {
    (void)state;
    uint8_t b[54];
    memset(b, 128, 48);
    memset(b + 48, 127, 4);
    b[52] = 0x00, b[53] = 0x3C;
    for (int v = 0; v < 243; v++) {
        int t[5] = {v / 81, v / 27 % 3, v / 9 % 3, v / 3 % 3, v % 3};
        b[7] = (uint8_t)((v * 256 + 242) / 243); /* ceil(v·256/243) */
        for (int n = 0; n < 5; n++) assert_int_equal(bn_ternary_code(BN_GGML_TQ1_0, b, 7 + 32 * n, NULL), t[n]);
    }
}

/* ------------------------------------------------------------------ I2_S -- */

/* Three 128-element blocks (384 elements) and the f32 scale at byte 96. */
static void test_i2_s(void **state) {
    (void)state;
    uint8_t t[96 + 32];
    float y[384];
    memset(t, 0x55, 96);                  /* all codes 1 → 0 */
    memset(t + 96, 0, 32);
    t[96 + 3] = 0x3F;                     /* f32 0.5 = 0x3F000000, little-endian */
    t[0] = 0x95;                          /* block 0, byte 0, bits 7-6 = 2 → elem 0 = +s */
    t[31] = 0x54;                         /* block 0, byte 31, bits 1-0 = 0 → elem 96+31 = 127 = -s */
    t[32 + 3] = 0x65;                     /* block 1, byte 3, bits 5-4 = 2 → elem 128+32+3 = 163 = +s */
    t[64 + 10] = 0x51;                    /* block 2, byte 10, bits 3-2 = 0 → elem 256+64+10 = 330 = -s */
    t[64 + 0] = 0x00;                     /* block 2, byte 0: elems 256, 288, 320, 352 = -s */
    float s = bn_i2s_scale(t, 384);
    assert_true(s == 0.5f);
    bn_ggml_dequantize_row(BN_GGML_I2_S, t, y, 384, s);
    for (int j = 0; j < 384; j++) {
        float want = 0.0f;
        if (j == 0 || j == 163) want = 0.5f;
        if (j == 127 || j == 330 || j == 256 || j == 288 || j == 320 || j == 352) want = -0.5f;
        assert_true(y[j] == want);
    }
    /* The same bytes as a 3-row tensor of 128: row r starts at byte 32·r. */
    bn_ggml_dequantize_row(BN_GGML_I2_S, t + 32, y, 128, s);
    assert_true(y[35] == 0.5f && y[0] == 0.0f);
    assert_int_equal(bn_ternary_code(BN_GGML_I2_S, t, 163, NULL), 2);
    assert_int_equal(bn_ternary_code(BN_GGML_I2_S, t + 64, 74, NULL), 0); /* row 2, elem 64+10 */
    assert_int_equal(bn_ternary_code(BN_GGML_I2_S, t, 1, NULL), 1);
    assert_int_equal(bn_ternary_code(BN_GGML_F32, t, 1, NULL), 3); /* not a ternary type */
}

/* ------------------------------------------ ternary_code vs dequantize -- */

static void check_codes_match(uint32_t type, const uint8_t *row, int64_t n, float scale) {
    float *y = malloc((size_t)n * sizeof *y);
    assert_non_null(y);
    bn_ggml_dequantize_row(type, row, y, n, scale);
    for (int64_t i = 0; i < n; i++) {
        float d = -1.0f;
        int c = bn_ternary_code(type, row, i, &d);
        float s = type == BN_GGML_I2_S ? scale : d;
        assert_true(c >= 0 && c <= 3);
        assert_true(y[i] == (float)(c - 1) * s);
    }
    free(y);
}

static void test_ternary_code_random(void **state) {
    (void)state;
    srand(42);
    uint8_t row[4 * 66];
    for (int rep = 0; rep < 50; rep++) {
        for (size_t i = 0; i < sizeof row; i++) row[i] = (uint8_t)rand();
        for (int blk = 0; blk < 4; blk++) { /* distinct, finite block scales */
            row[66 * blk + 64] = 0x00, row[66 * blk + 65] = (uint8_t)(0x30 + blk);
        }
        check_codes_match(BN_GGML_TQ2_0, row, 1024, 0);
        for (int blk = 0; blk < 4; blk++) row[54 * blk + 52] = 0x00, row[54 * blk + 53] = (uint8_t)(0xB0 + blk);
        check_codes_match(BN_GGML_TQ1_0, row, 1024, 0);
        check_codes_match(BN_GGML_I2_S, row, 1024, 0.125f);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fp16_to_fp32_values),  cmocka_unit_test(test_fp16_to_fp32_exhaustive),
        cmocka_unit_test(test_fp32_to_fp16_rounding), cmocka_unit_test(test_fp32_to_fp16_nearest),
        cmocka_unit_test(test_bf16),                  cmocka_unit_test(test_geometry),
        cmocka_unit_test(test_f32_f16_bf16_rows),     cmocka_unit_test(test_q8_0),
        cmocka_unit_test(test_q4_0),                  cmocka_unit_test(test_q6_k),
        cmocka_unit_test(test_tq2_0),                 cmocka_unit_test(test_tq1_0),
        cmocka_unit_test(test_tq1_0_all_patterns),    cmocka_unit_test(test_i2_s),
        cmocka_unit_test(test_ternary_code_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
