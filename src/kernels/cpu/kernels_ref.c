#include "kernels/cpu/kernels_ref.h"

#include <math.h>

#include "format/ggml_types.h"
#include "kernels/cpu/cpu_kernels.h"

void bn_quantize_row_i8_ref(const float *x, int64_t n, int8_t *q, float *scale, int32_t *sum) {
    float amax = 0.0f;
    for (int64_t i = 0; i < n; i++) amax = fmaxf(amax, fabsf(x[i]));
    float s = 127.0f / fmaxf(amax, 1e-5f);
    int32_t acc = 0;
    for (int64_t i = 0; i < n; i++) {
        /* nearbyintf rounds half to even under the default rounding mode, as
         * torch.round does in the reference. */
        float v = nearbyintf(x[i] * s);
        v = v < -128.0f ? -128.0f : (v > 127.0f ? 127.0f : v);
        q[i] = (int8_t)v;
        acc += q[i];
    }
    *scale = s;
    *sum = acc;
}

int32_t bn_ternary_dot_ref(const bn_ternary *w, int64_t r, const int8_t *q, int32_t qsum) {
    int32_t acc = 0;
    for (int64_t k = 0; k < w->cols; k++) acc += bn_ternary_get_code(w, r, k) * (int32_t)q[k];
    return acc - qsum;
}

void bn_ternary_gemm_ref(const bn_ternary *w, int64_t r0, int64_t r1, const bn_qact *a, int n_tok,
                         float *y, int64_t ldy) {
    for (int t = 0; t < n_tok; t++) {
        const int8_t *q = a->q + (int64_t)t * w->cols;
        for (int64_t r = r0; r < r1; r++) {
            int32_t d = bn_ternary_dot_ref(w, r, q, a->sum[t]);
            y[(int64_t)t * ldy + r] = (float)d * bn_ternary_row_scale(w, r) / a->scale[t];
        }
    }
}

void bn_dense_gemm_ref(const bn_dense *w, int64_t r0, int64_t r1, const float *x, int n_tok, float *y,
                       int64_t ldy, float *scratch) {
    for (int64_t r = r0; r < r1; r++) {
        bn_ggml_dequantize_row(w->type, w->data + r * w->row_bytes, scratch, w->cols, 0.0f);
        for (int t = 0; t < n_tok; t++) {
            const float *xt = x + (int64_t)t * w->cols;
            float acc = 0.0f;
            for (int64_t k = 0; k < w->cols; k++) acc += scratch[k] * xt[k];
            y[(int64_t)t * ldy + r] = acc;
        }
    }
}

void bn_quantize_row_q8_blocks_ref(const float *x, int64_t n, int8_t *q, float *d) {
    for (int64_t b = 0; b < n / 32; b++) {
        const float *xb = x + b * 32;
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(xb[j]));
        float id = amax > 1e-30f ? 127.0f / amax : 0.0f; /* no inf from a subnormal max */
        for (int j = 0; j < 32; j++) {
            float v = nearbyintf(xb[j] * id);
            q[b * 32 + j] = (int8_t)(v < -127.0f ? -127.0f : (v > 127.0f ? 127.0f : v));
        }
        d[b] = amax / 127.0f;
    }
}

void bn_dense_gemm_q8_0_ref(const bn_dense *w, int64_t r0, int64_t r1, const float *x, int n_tok, float *y,
                            int64_t ldy, float *scratch) {
    int64_t nb = w->cols / 32;
    int8_t *qx = (int8_t *)scratch;
    float *dx = scratch + w->cols / 4; /* after the cols bytes of qx */
    for (int t = 0; t < n_tok; t++) {
        bn_quantize_row_q8_blocks_ref(x + (int64_t)t * w->cols, w->cols, qx, dx);
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *wr = w->data + r * w->row_bytes;
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *blk = wr + b * 34;
                const int8_t *qw = (const int8_t *)(blk + 2);
                int32_t s = 0;
                for (int j = 0; j < 32; j++) s += (int32_t)qw[j] * qx[b * 32 + j];
                acc += (float)s * (bn_fp16_to_fp32((uint16_t)(blk[0] | blk[1] << 8)) * dx[b]);
            }
            y[(int64_t)t * ldy + r] = acc;
        }
    }
}

void bn_dense_gemm_scalar(const bn_dense *w, int64_t r0, int64_t r1, const float *x, int n_tok, float *y,
                          int64_t ldy, float *scratch) {
    if (w->type == BN_GGML_Q8_0) bn_dense_gemm_q8_0_ref(w, r0, r1, x, n_tok, y, ldy, scratch);
    else bn_dense_gemm_ref(w, r0, r1, x, n_tok, y, ldy, scratch);
}

float bn_dot_f32_ref(const float *a, const float *b, int64_t n) {
    float acc = 0.0f;
    for (int64_t i = 0; i < n; i++) acc += a[i] * b[i];
    return acc;
}

float bn_dot_f16_ref(const float *a, const uint16_t *b, int64_t n) {
    float acc = 0.0f;
    for (int64_t i = 0; i < n; i++) acc += a[i] * bn_fp16_to_fp32(b[i]);
    return acc;
}

void bn_axpy_f32_ref(float s, const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += s * x[i];
}

void bn_axpy_f16_ref(float s, const uint16_t *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += s * bn_fp16_to_fp32(x[i]);
}

void bn_f32_to_f16_ref(const float *x, uint16_t *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = bn_fp32_to_fp16(x[i]);
}

float bn_softmax_exp(float *s, int n) {
    float mx = -INFINITY, sum = 0.0f;
    /* Not fmaxf: without -ffinite-math GCC calls it. Same result (a NaN
     * score is skipped either way). */
    for (int p = 0; p < n; p++) mx = s[p] > mx ? s[p] : mx;
    for (int p = 0; p < n; p++) sum += (s[p] = expf(s[p] - mx));
    return 1.0f / sum;
}

int32_t bn_argmax_ref(const float *x, int64_t n) {
    int32_t best = 0;
    float bv = isnan(x[0]) ? -INFINITY : x[0];
    for (int64_t i = 1; i < n; i++)
        if (x[i] > bv) bv = x[i], best = (int32_t)i; /* a NaN compares false: never picked */
    return best;
}

/* Scores of every row (rows × n, n rounded up to 8 for the SIMD tiles), a
 * transposed block of 8 keys and a block of values converted to f32. */
size_t bn_attend_tile_scratch(int rows, int n, int hd) {
    size_t lds = ((size_t)n + 7) / 8 * 8;
    return (size_t)rows * lds + (size_t)(8 + BN_ATTN_VBLOCK) * hd;
}

void bn_attend_tile_ref(const float *q, int64_t ldq, int G, int nt, int n0, int hd, const uint16_t *K,
                        const uint16_t *V, float *scratch, float *out) {
    float inv_sqrt = 1.0f / sqrtf((float)hd);
    for (int tt = 0; tt < nt; tt++)
        for (int g = 0; g < G; g++) {
            const float *qr = q + tt * ldq + (int64_t)g * hd;
            float *o = out + tt * ldq + (int64_t)g * hd, *sc = scratch;
            int n = n0 + tt;
            for (int p = 0; p < n; p++) sc[p] = bn_dot_f16_ref(qr, K + (int64_t)p * hd, hd) * inv_sqrt;
            float inv_sum = bn_softmax_exp(sc, n);
            for (int i = 0; i < hd; i++) o[i] = 0.0f;
            for (int p = 0; p < n; p++) bn_axpy_f16_ref(sc[p] * inv_sum, V + (int64_t)p * hd, o, hd);
        }
}

/* Σ code·q over one 128-weight block: byte b holds weights b, 32+b, 64+b,
 * 96+b at shifts 6, 4, 2, 0. */
static int32_t block_dot_scalar(const uint8_t *blk, const int8_t *q) {
    int32_t acc = 0;
    for (int b = 0; b < 32; b++) {
        unsigned v = blk[b];
        acc += (int32_t)(v >> 6) * q[b] + (int32_t)((v >> 4) & 3) * q[32 + b] + (int32_t)((v >> 2) & 3) * q[64 + b] +
               (int32_t)(v & 3) * q[96 + b];
    }
    return acc;
}

void bn_ternary_gemm_scalar(const bn_ternary *w, int64_t r0, int64_t r1, const bn_qact *a, int n_tok, float *y,
                            int64_t ldy) {
    int64_t nb = w->cols / BN_TERNARY_BLOCK, row_bytes = w->cols / 4;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *wr = w->codes + r * row_bytes;
        float ws = bn_ternary_row_scale(w, r);
        for (int t = 0; t < n_tok; t++) {
            const int8_t *q = a->q + (int64_t)t * w->cols;
            int32_t acc = 0;
            for (int64_t b = 0; b < nb; b++) acc += block_dot_scalar(wr + b * 32, q + b * BN_TERNARY_BLOCK);
            y[(int64_t)t * ldy + r] = (float)(acc - a->sum[t]) * ws / a->scale[t];
        }
    }
}
