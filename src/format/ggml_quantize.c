#include "format/ggml_quantize.h"

#include <math.h>
#include <string.h>

#include "format/ggml_types.h"

#define QK_K 256

static void put_f16(uint8_t *p, float v) {
    uint16_t h = bn_fp32_to_fp16(v);
    p[0] = (uint8_t)(h & 0xFF);
    p[1] = (uint8_t)(h >> 8);
}

static void put_f32(uint8_t *p, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(u >> (8 * i));
}

/* ------------------------------------------------------------- ternary -- */

/* TQ2_0: 64 bytes in two 32-byte chunks; byte m of chunk c holds elements
 * 128c + m + 32l at bits 2l, then the fp16 scale. */
static void pack_tq2_block(const uint8_t *c, float d, uint8_t *out) {
    for (int j = 0; j < 2; j++)
        for (int m = 0; m < 32; m++) {
            uint8_t q = 0;
            for (int l = 0; l < 4; l++) q |= (uint8_t)((c[128 * j + m + 32 * l] & 3) << (2 * l));
            out[32 * j + m] = q;
        }
    put_f16(out + 64, d);
}

/* Five trits as a base-3 number (first trit most significant), stored as the
 * fixed-point fraction ceil(v·256/243) so that a multiply by 3^n followed by
 * (·3)>>8 extracts trit n without a division. */
static uint8_t pack_trits(const uint8_t *c, int stride, int count) {
    unsigned v = 0;
    for (int n = 0; n < 5; n++) v = v * 3 + (n < count ? c[n * stride] : 0);
    return (uint8_t)((v * 256 + 242) / 243);
}

/* TQ1_0: qs[0..31] elements m+32n, qs[32..47] elements 160+m+16n,
 * qh[0..3] elements 240+j+4m (four trits and a zero), then the fp16 scale. */
static void pack_tq1_block(const uint8_t *c, float d, uint8_t *out) {
    for (int m = 0; m < 32; m++) out[m] = pack_trits(c + m, 32, 5);
    for (int m = 0; m < 16; m++) out[32 + m] = pack_trits(c + 160 + m, 16, 5);
    for (int j = 0; j < 4; j++) out[48 + j] = pack_trits(c + 240 + j, 4, 4);
    put_f16(out + 52, d);
}

void bn_i2s_pack_block(const uint8_t codes[128], uint8_t out[32]) {
    for (int b = 0; b < 32; b++)
        out[b] = (uint8_t)(((codes[b] & 3) << 6) | ((codes[32 + b] & 3) << 4) | ((codes[64 + b] & 3) << 2) |
                           (codes[96 + b] & 3));
}

void bn_i2s_trailer(float scale, uint8_t out[BN_I2S_TRAILER_BYTES]) {
    memset(out, 0, BN_I2S_TRAILER_BYTES);
    put_f32(out, scale);
}

static int any_nonzero(const uint8_t *c, int n) {
    for (int i = 0; i < n; i++)
        if (c[i] != 1) return 1;
    return 0;
}

size_t bn_encode_ternary_row(uint32_t type, const uint8_t *codes, float scale, void *dst, int64_t ne0) {
    uint8_t *out = dst;
    switch (type) {
    case BN_GGML_I2_S:
        if (ne0 <= 0 || ne0 % 128) return 0;
        for (int64_t b = 0; b < ne0 / 128; b++) bn_i2s_pack_block(codes + 128 * b, out + 32 * b);
        return (size_t)(ne0 / 4);
    case BN_GGML_TQ1_0:
    case BN_GGML_TQ2_0: {
        if (ne0 <= 0 || ne0 % QK_K) return 0;
        size_t bb = type == BN_GGML_TQ1_0 ? 54 : 66;
        for (int64_t b = 0; b < ne0 / QK_K; b++) {
            const uint8_t *c = codes + QK_K * b;
            /* llama.cpp's block scale is the block's absmax: 0 for an all-zero block. */
            float d = any_nonzero(c, QK_K) ? scale : 0.0f;
            if (type == BN_GGML_TQ1_0) pack_tq1_block(c, d, out + bb * b);
            else pack_tq2_block(c, d, out + bb * b);
        }
        return bb * (size_t)(ne0 / QK_K);
    }
    default:
        return 0;
    }
}

/* --------------------------------------------------------------- floats -- */

static float absmax(const float *x, int n) {
    float m = 0.0f;
    for (int i = 0; i < n; i++) m = fmaxf(m, fabsf(x[i]));
    return m;
}

/* The element of largest magnitude, with its sign (Q4_0 and Q6_K map it to
 * the most negative level, which has no positive twin). */
static float signed_max(const float *x, int n) {
    float m = 0.0f, am = 0.0f;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > am) { am = fabsf(x[i]); m = x[i]; }
    return m;
}

static int nearest_int(float v) { return (int)lroundf(v); }

static void quantize_tq_block(uint32_t type, const float *x, uint8_t *out) {
    float d = absmax(x, QK_K), id = d ? 1.0f / d : 0.0f;
    uint8_t c[QK_K];
    for (int i = 0; i < QK_K; i++) {
        int q = nearest_int(x[i] * id) + 1;
        c[i] = (uint8_t)(q < 0 ? 0 : q > 2 ? 2 : q);
    }
    if (type == BN_GGML_TQ1_0) pack_tq1_block(c, d, out);
    else pack_tq2_block(c, d, out);
}

/* Q8_0: d = absmax/127, q = round(x/d). */
static void quantize_q8_0_block(const float *x, uint8_t *out) {
    float d = absmax(x, 32) / 127.0f, id = d ? 1.0f / d : 0.0f;
    put_f16(out, d);
    for (int i = 0; i < 32; i++) out[2 + i] = (uint8_t)(int8_t)nearest_int(x[i] * id);
}

/* Q4_0: d = max/-8, q = min(15, trunc(x/d + 8.5)); byte j = elements j (low)
 * and j+16 (high). */
static void quantize_q4_0_block(const float *x, uint8_t *out) {
    float d = signed_max(x, 32) / -8.0f, id = d ? 1.0f / d : 0.0f;
    put_f16(out, d);
    for (int j = 0; j < 16; j++) {
        int lo = (int)(x[j] * id + 8.5f), hi = (int)(x[j + 16] * id + 8.5f);
        lo = lo < 0 ? 0 : lo > 15 ? 15 : lo;
        hi = hi < 0 ? 0 : hi > 15 ? 15 : hi;
        out[2 + j] = (uint8_t)(lo | (hi << 4));
    }
}

/* The best scale for one Q6_K sub-block of 16 values: among candidate
 * steps around max/32 (the signed extreme on level -32, as llama.cpp starts
 * its search), quantize, refit the step by least squares (sum x·q / sum q²)
 * and keep the one with the smallest squared error. */
static float q6_sub_scale(const float *x) {
    float mx = signed_max(x, 16);
    if (mx == 0.0f) return 0.0f;
    float best = 0.0f, best_err = INFINITY;
    for (int t = -9; t <= 9; t++) {
        float iscale = -(32.0f + 0.1f * (float)t) / mx, sxq = 0.0f, sqq = 0.0f;
        int q[16];
        for (int j = 0; j < 16; j++) {
            int v = nearest_int(iscale * x[j]);
            q[j] = v < -32 ? -32 : v > 31 ? 31 : v;
            float w = x[j] * x[j];
            sxq += w * x[j] * (float)q[j];
            sqq += w * (float)(q[j] * q[j]);
        }
        float scale = sqq > 0 ? sxq / sqq : 0.0f, err = 0.0f;
        for (int j = 0; j < 16; j++) err += x[j] * x[j] * (x[j] - scale * (float)q[j]) * (x[j] - scale * (float)q[j]);
        if (err < best_err) { best_err = err; best = scale; }
    }
    return best;
}

/* Q6_K: 16 sub-blocks of 16 with int8 scales under one fp16 d; 6-bit values
 * q + 32 split into low nibbles (ql) and high bit pairs (qh). The sub-block
 * scales come from a small search (q6_sub_scale); the layout is llama.cpp's. */
static void quantize_q6_k_block(const float *x, uint8_t *out) {
    uint8_t *ql = out, *qh = out + 128;
    int8_t *sc = (int8_t *)(out + 192);
    float sub[16], smax = 0.0f, samax = 0.0f;
    for (int i = 0; i < 16; i++) {
        sub[i] = q6_sub_scale(x + 16 * i);
        if (fabsf(sub[i]) > samax) { samax = fabsf(sub[i]); smax = sub[i]; }
    }
    /* The largest scale takes int8 level -128 (which has no positive twin). */
    float d = smax / -128.0f, id = d ? 1.0f / d : 0.0f;
    put_f16(out + 208, d);
    float dq = bn_fp16_to_fp32(bn_fp32_to_fp16(d));
    uint8_t L[QK_K];
    for (int i = 0; i < 16; i++) {
        int s = nearest_int(sub[i] * id);
        sc[i] = (int8_t)(s < -128 ? -128 : s > 127 ? 127 : s);
        float step = dq * sc[i], is = step ? 1.0f / step : 0.0f;
        for (int j = 0; j < 16; j++) {
            int q = nearest_int(x[16 * i + j] * is);
            L[16 * i + j] = (uint8_t)((q < -32 ? -32 : q > 31 ? 31 : q) + 32);
        }
    }
    for (int n = 0; n < 2; n++) {
        const uint8_t *l = L + 128 * n;
        for (int j = 0; j < 32; j++) {
            ql[64 * n + j] = (uint8_t)((l[j] & 0xF) | ((l[j + 64] & 0xF) << 4));
            ql[64 * n + j + 32] = (uint8_t)((l[j + 32] & 0xF) | ((l[j + 96] & 0xF) << 4));
            qh[32 * n + j] = (uint8_t)((l[j] >> 4) | ((l[j + 32] >> 4) << 2) | ((l[j + 64] >> 4) << 4) |
                                       ((l[j + 96] >> 4) << 6));
        }
    }
}

int bn_quantize_supported(uint32_t type) {
    switch (type) {
    case BN_GGML_F32: case BN_GGML_F16: case BN_GGML_BF16: case BN_GGML_Q4_0: case BN_GGML_Q8_0:
    case BN_GGML_Q6_K: case BN_GGML_TQ1_0: case BN_GGML_TQ2_0:
        return 1;
    default:
        return 0;
    }
}

size_t bn_quantize_row(uint32_t type, const float *src, void *dst, int64_t ne0) {
    uint8_t *out = dst;
    if (!bn_quantize_supported(type) || ne0 <= 0) return 0;
    int64_t be = bn_ggml_block_elems(type), bb = bn_ggml_block_bytes(type);
    if (be <= 0 || ne0 % be) return 0;
    for (int64_t b = 0; b < ne0 / be; b++) {
        const float *x = src + b * be;
        uint8_t *o = out + b * bb;
        switch (type) {
        case BN_GGML_F32: put_f32(o, x[0]); break;
        case BN_GGML_F16: put_f16(o, x[0]); break;
        case BN_GGML_BF16: {
            uint16_t h = bn_fp32_to_bf16(x[0]);
            o[0] = (uint8_t)(h & 0xFF);
            o[1] = (uint8_t)(h >> 8);
            break;
        }
        case BN_GGML_Q4_0: quantize_q4_0_block(x, o); break;
        case BN_GGML_Q8_0: quantize_q8_0_block(x, o); break;
        case BN_GGML_Q6_K: quantize_q6_k_block(x, o); break;
        default: quantize_tq_block(type, x, o); break;
        }
    }
    return (size_t)(ne0 / be * bb);
}
