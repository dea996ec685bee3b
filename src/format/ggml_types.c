/* ggml tensor types: geometry, names, row decoding, fp16/bf16 conversions.
 * Layouts: ../shared/docs/FORMATS.md §2. All multi-byte fields are read
 * byte by byte as little-endian, so the code does not depend on the host's
 * byte order or on the alignment of the data (safetensors and GGUF data may
 * be unaligned). */
#include "format/ggml_types.h"

#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------ helpers -- */

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t bits_from_f32(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* ------------------------------------------------- fp16 / bf16 scalars -- */

float bn_fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
    if (exp == 0x1F) return f32_from_bits(sign | 0x7F800000u | (mant << 13)); /* inf, NaN (payload kept) */
    if (exp != 0) return f32_from_bits(sign | ((exp + 112) << 23) | (mant << 13));
    if (mant == 0) return f32_from_bits(sign);
    /* Subnormal: mant·2^-24. Normalise so the leading 1 lands on bit 10;
     * every half subnormal is a normal float, so this is exact. */
    uint32_t e = 113;
    while (!(mant & 0x400)) {
        mant <<= 1;
        e--;
    }
    return f32_from_bits(sign | (e << 23) | ((mant & 0x3FF) << 13));
}

/* |f| below 2^-14: the result is a half subnormal q·2^-24, q = round(|f|·2^24). */
static uint16_t fp16_subnormal(uint32_t ax) {
    if (ax < 0x33000000u) return 0; /* below 2^-25: rounds to zero (2^-25 itself is a tie, handled below) */
    uint32_t e = ax >> 23, m = (ax & 0x7FFFFF) | 0x800000;
    uint32_t shift = 126 - e; /* 14..24 */
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) q++; /* q may reach 0x400: the smallest normal, correctly encoded */
    return (uint16_t)q;
}

uint16_t bn_fp32_to_fp16(float f) {
    uint32_t x = bits_from_f32(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7FFFFFFF;
    if (ax > 0x7F800000u) return (uint16_t)(sign | 0x7E00 | ((ax >> 13) & 0x3FF)); /* NaN stays a (quiet) NaN */
    if (ax >= 0x477FF000u) return (uint16_t)(sign | 0x7C00); /* >= 65520 (inf included) rounds to inf */
    if (ax < 0x38800000u) return (uint16_t)(sign | fp16_subnormal(ax));
    /* Normal: rebias the exponent, round the 13 dropped bits to nearest even;
     * a carry out of the mantissa correctly bumps the exponent. */
    uint32_t r = ax + 0xFFF + ((ax >> 13) & 1) - (112u << 23);
    return (uint16_t)(sign | (r >> 13));
}

float bn_bf16_to_fp32(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }

uint16_t bn_fp32_to_bf16(float f) {
    uint32_t x = bits_from_f32(f);
    if ((x & 0x7FFFFFFF) > 0x7F800000u) return (uint16_t)((x >> 16) | 0x40); /* keep NaN a quiet NaN */
    return (uint16_t)((x + 0x7FFF + ((x >> 16) & 1)) >> 16);
}

/* ------------------------------------------------------ type geometry -- */

int bn_ggml_type_supported(uint32_t type) {
    switch (type) {
    case BN_GGML_F32: case BN_GGML_F16: case BN_GGML_BF16: case BN_GGML_Q4_0: case BN_GGML_Q8_0:
    case BN_GGML_Q6_K: case BN_GGML_TQ1_0: case BN_GGML_TQ2_0: case BN_GGML_I2_S:
        return 1;
    default:
        return 0;
    }
}

/* Names of ids we cannot read, so an error can say what the file holds.
 * 36..39 follow the BitNet fork (the ids bitnet.c is about); mainline used
 * 36..38 for since-removed repacked IQ4_NL types and 39 for MXFP4. */
static const char *unsupported_name(uint32_t type) {
    static const char *const names[] = {
        [3] = "Q4_1 (3)", [4] = "Q4_2 (4, removed)", [5] = "Q4_3 (5, removed)", [6] = "Q5_0 (6)",
        [7] = "Q5_1 (7)", [9] = "Q8_1 (9)", [10] = "Q2_K (10)", [11] = "Q3_K (11)", [12] = "Q4_K (12)",
        [13] = "Q5_K (13)", [15] = "Q8_K (15)", [16] = "IQ2_XXS (16)", [17] = "IQ2_XS (17)",
        [18] = "IQ3_XXS (18)", [19] = "IQ1_S (19)", [20] = "IQ4_NL (20)", [21] = "IQ3_S (21)",
        [22] = "IQ2_S (22)", [23] = "IQ4_XS (23)", [24] = "I8 (24)", [25] = "I16 (25)", [26] = "I32 (26)",
        [27] = "I64 (27)", [28] = "F64 (28)", [29] = "IQ1_M (29)", [31] = "Q4_0_4_4 (31, removed)",
        [32] = "Q4_0_4_8 (32, removed)", [33] = "Q4_0_8_8 (33, removed)", [37] = "I8_S (37, BitNet fork)",
        [38] = "TL1 (38, BitNet fork)", [39] = "TL2 (39, BitNet fork; MXFP4 in newer ggml)",
    };
    if (type < sizeof names / sizeof names[0] && names[type]) return names[type];
    switch (type) { /* ik_llama.cpp's BitNet types */
    case 134: return "IQ1_BN (134, ik_llama.cpp)";
    case 135: return "IQ2_BN (135, ik_llama.cpp)";
    case 335: return "IQ2_BN_R4 (335, ik_llama.cpp)";
    default: return NULL;
    }
}

const char *bn_ggml_type_name(uint32_t type) {
    switch (type) {
    case BN_GGML_F32: return "F32";
    case BN_GGML_F16: return "F16";
    case BN_GGML_BF16: return "BF16";
    case BN_GGML_Q4_0: return "Q4_0";
    case BN_GGML_Q8_0: return "Q8_0";
    case BN_GGML_Q6_K: return "Q6_K";
    case BN_GGML_TQ1_0: return "TQ1_0";
    case BN_GGML_TQ2_0: return "TQ2_0";
    case BN_GGML_I2_S: return "I2_S";
    default: break;
    }
    const char *s = unsupported_name(type);
    if (s) return s;
    /* A few per-thread buffers, so that two names in one printf still work. */
    static _Thread_local char buf[4][32];
    static _Thread_local unsigned next;
    char *b = buf[next++ % 4];
    snprintf(b, sizeof buf[0], "type %u (unknown)", (unsigned)type);
    return b;
}

int bn_ggml_block_elems(uint32_t type) {
    switch (type) {
    case BN_GGML_F32: case BN_GGML_F16: case BN_GGML_BF16: return 1;
    case BN_GGML_Q4_0: case BN_GGML_Q8_0: return 32;
    case BN_GGML_I2_S: return 128;
    case BN_GGML_Q6_K: case BN_GGML_TQ1_0: case BN_GGML_TQ2_0: return 256;
    default: return 0;
    }
}

int bn_ggml_block_bytes(uint32_t type) {
    switch (type) {
    case BN_GGML_F32: return 4;
    case BN_GGML_F16: case BN_GGML_BF16: return 2;
    case BN_GGML_Q4_0: return 18;
    case BN_GGML_Q8_0: return 34;
    case BN_GGML_I2_S: return 32;
    case BN_GGML_Q6_K: return 210;
    case BN_GGML_TQ1_0: return 54;
    case BN_GGML_TQ2_0: return 66;
    default: return 0;
    }
}

uint64_t bn_ggml_row_bytes(uint32_t type, int64_t ne0) {
    int64_t be = bn_ggml_block_elems(type), bb = bn_ggml_block_bytes(type);
    if (be == 0 || ne0 <= 0 || ne0 % be) return 0;
    uint64_t blocks = (uint64_t)(ne0 / be);
    if (blocks > UINT64_MAX / (uint64_t)bb) return 0;
    return blocks * (uint64_t)bb;
}

uint64_t bn_ggml_tensor_bytes(uint32_t type, int64_t ne0, int64_t n_elems) {
    uint64_t rb = bn_ggml_row_bytes(type, ne0);
    if (rb == 0 || n_elems <= 0 || n_elems % ne0) return 0;
    uint64_t rows = (uint64_t)(n_elems / ne0);
    if (rows > UINT64_MAX / rb) return 0;
    uint64_t n = rows * rb;
    if (type == BN_GGML_I2_S) { /* packed codes, then the f32 scale and padding */
        if (n > UINT64_MAX - 32) return 0;
        n += 32;
    }
    return n;
}

/* -------------------------------------------------------- row decoding -- */

static void dequant_q4_0(const uint8_t *b, float *y) {
    float d = bn_fp16_to_fp32(le16(b));
    for (int j = 0; j < 16; j++) {
        y[j] = (float)((b[2 + j] & 0xF) - 8) * d;
        y[j + 16] = (float)((b[2 + j] >> 4) - 8) * d;
    }
}

static void dequant_q8_0(const uint8_t *b, float *y) {
    float d = bn_fp16_to_fp32(le16(b));
    for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)b[2 + j] * d;
}

/* Q6_K: ql[128] low nibbles, qh[64] high 2-bit pairs, scales[16] int8, d. */
static void dequant_q6_k(const uint8_t *b, float *y) {
    float d = bn_fp16_to_fp32(le16(b + 208));
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b + 64 * h, *qh = b + 128 + 32 * h;
        const int8_t *sc = (const int8_t *)(b + 192 + 8 * h);
        float *o = y + 128 * h;
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            o[l] = d * (float)sc[is + 0] * (float)q1;
            o[l + 32] = d * (float)sc[is + 2] * (float)q2;
            o[l + 64] = d * (float)sc[is + 4] * (float)q3;
            o[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
    }
}

/* Trit n (0 = most significant) of a TQ1_0 byte: the byte is a base-3
 * fraction scaled to 256, so multiplying by 3^n (mod 256) shifts trit n to
 * the top and ×3 >> 8 reads it. */
static int tq1_trit(uint8_t q, int n) {
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    uint8_t v = (uint8_t)(q * pow3[n]);
    return ((uint16_t)v * 3) >> 8;
}

/* Where element j (0..255) of a TQ1_0 block lives: byte index in the block
 * and trit position. qs[0..31] hold 0..159 (stride 32), qs[32..47] hold
 * 160..239 (stride 16), qh[0..3] (bytes 48..51) hold 240..255 (stride 4). */
static void tq1_locate(int j, int *byte, int *trit) {
    if (j < 160) {
        *byte = j % 32;
        *trit = j / 32;
    } else if (j < 240) {
        *byte = 32 + (j - 160) % 16;
        *trit = (j - 160) / 16;
    } else {
        *byte = 48 + (j - 240) % 4;
        *trit = (j - 240) / 4;
    }
}

static void dequant_tq1_0(const uint8_t *b, float *y) {
    float d = bn_fp16_to_fp32(le16(b + 52));
    for (int j = 0; j < 256; j++) {
        int byte, trit;
        tq1_locate(j, &byte, &trit);
        y[j] = (float)(tq1_trit(b[byte], trit) - 1) * d;
    }
}

/* TQ2_0 element j: chunk j/128 of 32 bytes, byte j%32 of it, bits 2·((j%128)/32). */
static int tq2_code(const uint8_t *b, int j) { return (b[32 * (j / 128) + j % 32] >> (2 * ((j % 128) / 32))) & 3; }

static void dequant_tq2_0(const uint8_t *b, float *y) {
    float d = bn_fp16_to_fp32(le16(b + 64));
    for (int j = 0; j < 256; j++) y[j] = (float)(tq2_code(b, j) - 1) * d;
}

/* I2_S element j of a 128-element block: byte j%32, bits 7-6 for j/32 = 0 down to 1-0 for 3. */
static int i2s_code(const uint8_t *b, int j) { return (b[j % 32] >> (6 - 2 * (j / 32))) & 3; }

/* Code 3 is not produced by any encoder; like the reference dequantizers we
 * map it arithmetically ((c-1)·scale) rather than guess. */
static void dequant_i2_s(const uint8_t *b, float *y, float scale) {
    for (int j = 0; j < 128; j++) y[j] = (float)(i2s_code(b, j) - 1) * scale;
}

void bn_ggml_dequantize_row(uint32_t type, const void *row, float *dst, int64_t ne0, float i2s_scale) {
    const uint8_t *p = row;
    int be = bn_ggml_block_elems(type), bb = bn_ggml_block_bytes(type);
    if (be == 0 || ne0 <= 0) return;
    switch (type) {
    case BN_GGML_F32: for (int64_t i = 0; i < ne0; i++) dst[i] = f32_from_bits(le32(p + 4 * i)); return;
    case BN_GGML_F16: for (int64_t i = 0; i < ne0; i++) dst[i] = bn_fp16_to_fp32(le16(p + 2 * i)); return;
    case BN_GGML_BF16: for (int64_t i = 0; i < ne0; i++) dst[i] = bn_bf16_to_fp32(le16(p + 2 * i)); return;
    default: break;
    }
    for (int64_t blk = 0; blk < ne0 / be; blk++) {
        const uint8_t *b = p + blk * bb;
        float *y = dst + blk * be;
        switch (type) {
        case BN_GGML_Q4_0: dequant_q4_0(b, y); break;
        case BN_GGML_Q8_0: dequant_q8_0(b, y); break;
        case BN_GGML_Q6_K: dequant_q6_k(b, y); break;
        case BN_GGML_TQ1_0: dequant_tq1_0(b, y); break;
        case BN_GGML_TQ2_0: dequant_tq2_0(b, y); break;
        case BN_GGML_I2_S: dequant_i2_s(b, y, i2s_scale); break;
        default: return;
        }
    }
}

float bn_i2s_scale(const void *tensor_data, int64_t n_elems) {
    return f32_from_bits(le32((const uint8_t *)tensor_data + n_elems / 4));
}

int bn_ternary_code(uint32_t type, const void *row, int64_t i, float *block_scale) {
    const uint8_t *p = row;
    if (i < 0) return 3;
    if (type == BN_GGML_I2_S) return i2s_code(p + 32 * (i / 128), (int)(i % 128));
    if (type != BN_GGML_TQ1_0 && type != BN_GGML_TQ2_0) return 3; /* not a ternary type */
    int j = (int)(i % 256);
    const uint8_t *b = p + (i / 256) * bn_ggml_block_bytes(type);
    if (type == BN_GGML_TQ2_0) {
        if (block_scale) *block_scale = bn_fp16_to_fp32(le16(b + 64));
        return tq2_code(b, j);
    }
    if (block_scale) *block_scale = bn_fp16_to_fp32(le16(b + 52));
    int byte, trit;
    tq1_locate(j, &byte, &trit);
    return tq1_trit(b[byte], trit);
}
