#include "model/weights.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "format/ggml_types.h"
#include "util/error.h"

static inline void put_code(uint8_t *codes, int64_t cols, int64_t r, int64_t k, int c) {
    int j = (int)(k % 128);
    codes[r * (cols / 4) + (k / 128) * 32 + j % 32] |= (uint8_t)(c << (6 - 2 * (j / 32)));
}

static bitnet_status check_geometry(const char *name, int64_t rows, int64_t cols, bitnet_error *err) {
    if (rows <= 0 || cols <= 0)
        return bn_fail(err, BITNET_E_FORMAT, "tensor '%s': empty shape %lldx%lld", name, (long long)rows,
                       (long long)cols);
    if (cols % BN_TERNARY_BLOCK)
        return bn_fail(err, BITNET_E_UNSUPPORTED,
                       "tensor '%s': %lld input features is not a multiple of %d, which bitnet.c's ternary "
                       "layout needs", name, (long long)cols, BN_TERNARY_BLOCK);
    return BITNET_OK;
}

static uint8_t *alloc_codes(bitnet_model *m, const char *name, int64_t rows, int64_t cols, bitnet_error *err) {
    uint8_t *codes = bn_model_alloc(m, (size_t)(rows * (cols / 4)));
    if (!codes) bn_fail(err, BITNET_E_NOMEM, "tensor '%s': out of memory repacking %lldx%lld weights", name,
                        (long long)rows, (long long)cols);
    return codes;
}

/* Values already ternary up to storage rounding: every |w| is ~0 or ~max.
 * The tolerance covers fp16/bf16 rounding of w·scale (relative 2^-8 for bf16). */
static int is_ternary(const float *w, int64_t n, float amax) {
    float tol = amax * (1.0f / 64.0f);
    for (int64_t i = 0; i < n; i++) {
        float a = fabsf(w[i]);
        if (a > tol && fabsf(a - amax) > tol) return 0;
    }
    return 1;
}

bitnet_status bn_ternary_from_f32(bitnet_model *m, const char *name, const float *w, int64_t rows, int64_t cols,
                                  bn_ternary *out, bitnet_error *err) {
    bitnet_status rc = check_geometry(name, rows, cols, err);
    if (rc) return rc;
    int64_t n = rows * cols;
    float amax = 0.0f;
    double asum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        float a = fabsf(w[i]);
        if (!isfinite(a)) return bn_fail(err, BITNET_E_FORMAT, "tensor '%s': non-finite weight at %lld", name, (long long)i);
        amax = fmaxf(amax, a);
        asum += a;
    }
    /* Exactly-ternary tensors (a dequantized ternary checkpoint) keep their
     * scale; anything else is a master-weight tensor and gets the BitNet
     * absmean rule: scale = mean|W|, w_q = clamp(round(w/scale), -1, 1). */
    float scale;
    int ternary = is_ternary(w, n, amax);
    if (ternary) {
        double nz = 0.0, cnt = 0.0;
        for (int64_t i = 0; i < n; i++)
            if (fabsf(w[i]) > amax * (1.0f / 64.0f)) { nz += fabsf(w[i]); cnt += 1.0; }
        scale = cnt > 0 ? (float)(nz / cnt) : 0.0f;
    } else {
        scale = (float)fmax(asum / (double)n, 1e-5);
    }
    uint8_t *codes = alloc_codes(m, name, rows, cols, err);
    if (!codes) return BITNET_E_NOMEM;
    float inv = scale > 0 ? 1.0f / scale : 0.0f;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < cols; k++) {
            float v = nearbyintf(w[r * cols + k] * inv);
            int c = v > 0.5f ? 2 : (v < -0.5f ? 0 : 1);
            put_code(codes, cols, r, k, c);
        }
    *out = (bn_ternary){.rows = rows, .cols = cols, .codes = codes, .scale = scale};
    return BITNET_OK;
}

/* TQ1_0/TQ2_0 carry an fp16 scale per 256-block (its last two bytes);
 * ternary models have the same scale in every block (all-zero blocks aside).
 * The engine keeps one scale per row, so blocks of one row that disagree
 * cannot be represented. Rows are decoded to floats by the format's own
 * decoder; a value's sign gives its code. */
static bitnet_status repack_tq(bitnet_model *m, const char *name, uint32_t type, const uint8_t *data, int64_t rows,
                               int64_t cols, bn_ternary *out, bitnet_error *err) {
    uint8_t *codes = alloc_codes(m, name, rows, cols, err);
    float *row_scale = bn_model_alloc(m, (size_t)rows * sizeof(float));
    float *vals = malloc((size_t)cols * sizeof(float));
    if (!codes || !row_scale || !vals) {
        free(vals);
        return bn_fail(err, BITNET_E_NOMEM, "tensor '%s': out of memory", name);
    }
    uint64_t row_bytes = bn_ggml_row_bytes(type, cols);
    int block = bn_ggml_block_elems(type), block_bytes = bn_ggml_block_bytes(type);
    float first = 0.0f; /* the first non-zero row scale */
    int uniform = 1;
    bitnet_status rc = BITNET_OK;
    for (int64_t r = 0; r < rows && !rc; r++) {
        const uint8_t *row = data + r * row_bytes;
        bn_ggml_dequantize_row(type, row, vals, cols, 0.0f);
        float rs = 0.0f;
        for (int64_t b = 0; b < cols / block && !rc; b++) {
            uint16_t h;
            memcpy(&h, row + (b + 1) * block_bytes - 2, 2);
            float d = fabsf(bn_fp16_to_fp32(h));
            int any = 0;
            for (int64_t k = b * block; k < (b + 1) * block; k++) {
                int c = vals[k] > 0.0f ? 2 : (vals[k] < 0.0f ? 0 : 1);
                any |= c != 1;
                put_code(codes, cols, r, k, c);
            }
            if (!any) continue;
            if (rs == 0.0f) rs = d;
            else if (fabsf(d - rs) > rs * 1e-3f)
                rc = bn_fail(err, BITNET_E_UNSUPPORTED,
                             "tensor '%s': row %lld mixes block scales %g and %g; bitnet.c needs one scale per row "
                             "for ternary weights", name, (long long)r, (double)rs, (double)d);
        }
        row_scale[r] = rs;
        if (rs != 0.0f && first == 0.0f) first = rs;
        else if (rs != 0.0f && rs != first) uniform = 0;
    }
    free(vals);
    if (rc) return rc;
    *out = (bn_ternary){.rows = rows, .cols = cols, .codes = codes, .scale = first,
                        .row_scale = uniform ? NULL : row_scale};
    return BITNET_OK;
}

bitnet_status bn_ternary_from_ggml(bitnet_model *m, const char *name, uint32_t type, const uint8_t *data,
                                   int64_t rows, int64_t cols, bn_ternary *out, bitnet_error *err) {
    bitnet_status rc = check_geometry(name, rows, cols, err);
    if (rc) return rc;
    switch (type) {
    case BN_GGML_I2_S: {
        float scale = bn_i2s_scale(data, rows * cols);
        if (!isfinite(scale)) return bn_fail(err, BITNET_E_FORMAT, "tensor '%s': I2_S scale is not finite", name);
        *out = (bn_ternary){.rows = rows, .cols = cols, .codes = data, .scale = scale};
        return BITNET_OK;
    }
    case BN_GGML_TQ1_0:
    case BN_GGML_TQ2_0:
        return repack_tq(m, name, type, data, rows, cols, out, err);
    case BN_GGML_F32:
    case BN_GGML_F16:
    case BN_GGML_BF16: {
        float *w = malloc((size_t)(rows * cols) * sizeof(float));
        if (!w) return bn_fail(err, BITNET_E_NOMEM, "tensor '%s': out of memory", name);
        uint64_t row_bytes = bn_ggml_row_bytes(type, cols);
        for (int64_t r = 0; r < rows; r++) bn_ggml_dequantize_row(type, data + r * row_bytes, w + r * cols, cols, 0.0f);
        rc = bn_ternary_from_f32(m, name, w, rows, cols, out, err);
        free(w);
        return rc;
    }
    default:
        return bn_fail(err, BITNET_E_UNSUPPORTED, "tensor '%s': type %s cannot hold a ternary linear layer", name,
                       bn_ggml_type_name(type));
    }
}

bitnet_status bn_ternary_from_hf_packed(bitnet_model *m, const char *name, const uint8_t *packed, int64_t rows,
                                        int64_t cols, float scale, bn_ternary *out, bitnet_error *err) {
    bitnet_status rc = check_geometry(name, rows, cols, err);
    if (rc) return rc;
    if (rows % 4) return bn_fail(err, BITNET_E_FORMAT, "tensor '%s': %lld rows is not a multiple of 4", name, (long long)rows);
    if (!isfinite(scale)) return bn_fail(err, BITNET_E_FORMAT, "tensor '%s': weight_scale is not finite", name);
    uint8_t *codes = alloc_codes(m, name, rows, cols, err);
    if (!codes) return BITNET_E_NOMEM;
    int64_t quarter = rows / 4;
    for (int64_t pr = 0; pr < quarter; pr++)
        for (int64_t k = 0; k < cols; k++) {
            uint8_t b = packed[pr * cols + k];
            for (int i = 0; i < 4; i++) {
                int c = (b >> (2 * i)) & 3;
                if (c == 3) return bn_fail(err, BITNET_E_FORMAT, "tensor '%s': invalid packed code 3", name);
                put_code(codes, cols, pr + i * quarter, k, c);
            }
        }
    *out = (bn_ternary){.rows = rows, .cols = cols, .codes = codes, .scale = scale};
    return BITNET_OK;
}

bitnet_status bn_vec_from_data(bitnet_model *m, const char *name, uint32_t type, const uint8_t *data, int64_t n,
                               bn_vec *out, bitnet_error *err) {
    if (type == BN_GGML_F32 && ((uintptr_t)data % _Alignof(float)) == 0) {
        *out = (bn_vec){.n = n, .data = (const float *)data};
        return BITNET_OK;
    }
    if (type != BN_GGML_F32 && type != BN_GGML_F16 && type != BN_GGML_BF16)
        return bn_fail(err, BITNET_E_UNSUPPORTED, "tensor '%s': type %s is not valid for a norm weight", name,
                       bn_ggml_type_name(type));
    float *v = bn_model_alloc(m, (size_t)n * sizeof(float));
    if (!v) return bn_fail(err, BITNET_E_NOMEM, "tensor '%s': out of memory", name);
    if (type == BN_GGML_F32) memcpy(v, data, (size_t)n * sizeof(float));
    else bn_ggml_dequantize_row(type, data, v, n, 0.0f);
    *out = (bn_vec){.n = n, .data = v};
    return BITNET_OK;
}
