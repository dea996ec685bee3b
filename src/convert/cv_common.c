/* Pieces shared by `convert` and `gen-model`: the tensor plan, the
 * architecture keys, the progress-reporting sink and the row encoders. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert/convert_internal.h"
#include "format/ggml_quantize.h"
#include "format/ggml_types.h"
#include "util/error.h"

/* ------------------------------------------------------------------ plan -- */

int cv_role_is_ternary(cv_role r) { return r >= CV_Q; }

int cv_plan_count(const bn_hparams *hp, int tied) {
    return 2 + !tied + hp->n_layer * (9 + 2 * !!hp->has_sub_norms);
}

static cv_tensor *add(cv_tensor *t, cv_role role, int layer, const char *name, int64_t ne0, int64_t ne1,
                      uint32_t type) {
    memset(t, 0, sizeof *t);
    if (layer >= 0) snprintf(t->name, sizeof t->name, "blk.%d.%s.weight", layer, name);
    else snprintf(t->name, sizeof t->name, "%s.weight", name);
    t->role = role;
    t->layer = layer;
    t->n_dims = ne1 ? 2 : 1;
    t->ne[0] = ne0;
    t->ne[1] = ne1 ? ne1 : 1;
    t->type = type;
    return t + 1;
}

void cv_plan(const bn_hparams *hp, int tied, uint32_t wt, uint32_t et, cv_tensor *t) {
    int64_t E = hp->n_embd, V = hp->n_vocab, F = hp->n_ff;
    int64_t Q = (int64_t)hp->n_head * hp->head_dim, KV = (int64_t)hp->n_head_kv * hp->head_dim;
    t = add(t, CV_TOK_EMBD, -1, "token_embd", E, V, et);
    t = add(t, CV_OUTPUT_NORM, -1, "output_norm", E, 0, BN_GGML_F32);
    if (!tied) t = add(t, CV_OUTPUT, -1, "output", E, V, et);
    for (int l = 0; l < hp->n_layer; l++) {
        t = add(t, CV_ATTN_NORM, l, "attn_norm", E, 0, BN_GGML_F32);
        t = add(t, CV_FFN_NORM, l, "ffn_norm", E, 0, BN_GGML_F32);
        if (hp->has_sub_norms) {
            t = add(t, CV_ATTN_SUB_NORM, l, "attn_sub_norm", Q, 0, BN_GGML_F32);
            t = add(t, CV_FFN_SUB_NORM, l, "ffn_sub_norm", F, 0, BN_GGML_F32);
        }
        t = add(t, CV_Q, l, "attn_q", E, Q, wt);
        t = add(t, CV_K, l, "attn_k", E, KV, wt);
        t = add(t, CV_V, l, "attn_v", E, KV, wt);
        t = add(t, CV_O, l, "attn_output", Q, E, wt);
        t = add(t, CV_GATE, l, "ffn_gate", E, F, wt);
        t = add(t, CV_UP, l, "ffn_up", E, F, wt);
        t = add(t, CV_DOWN, l, "ffn_down", F, E, wt);
    }
}

static int is_ternary_type(uint32_t t) {
    return t == BN_GGML_I2_S || t == BN_GGML_TQ1_0 || t == BN_GGML_TQ2_0 || t == BN_GGML_F16 ||
           t == BN_GGML_F32 || t == BN_GGML_BF16;
}

static int is_embd_type(uint32_t t) {
    return t == BN_GGML_F32 || t == BN_GGML_F16 || t == BN_GGML_BF16 || t == BN_GGML_Q8_0 || t == BN_GGML_Q6_K ||
           t == BN_GGML_Q4_0;
}

bitnet_status cv_plan_check(const cv_tensor *plan, int n, bitnet_error *err) {
    for (int i = 0; i < n; i++) {
        const cv_tensor *t = &plan[i];
        int ternary = cv_role_is_ternary(t->role);
        if (ternary ? !is_ternary_type(t->type) : t->role <= CV_OUTPUT && t->role != CV_OUTPUT_NORM && !is_embd_type(t->type))
            return bn_fail(err, BITNET_E_INVALID_ARG, "type %s cannot be used for '%s'", bn_ggml_type_name(t->type),
                           t->name);
        if (t->type == BN_GGML_I2_S) {
            if ((t->ne[0] * t->ne[1]) % 128)
                return bn_fail(err, BITNET_E_UNSUPPORTED, "'%s' has %lld weights, not a multiple of 128 as I2_S needs",
                               t->name, (long long)(t->ne[0] * t->ne[1]));
            continue;
        }
        int be = bn_ggml_block_elems(t->type);
        if (be <= 0 || t->ne[0] % be)
            return bn_fail(err, BITNET_E_UNSUPPORTED,
                           "%s needs rows that are a multiple of %d elements, but '%s' has rows of %lld%s",
                           bn_ggml_type_name(t->type), be, t->name, (long long)t->ne[0],
                           ternary ? " (use --type i2_s)" : " (choose another --embd-type)");
    }
    return BITNET_OK;
}

/* --------------------------------------------------------------- header -- */

uint32_t cv_file_type(uint32_t wt) {
    switch (wt) {
    case BN_GGML_I2_S: return 40;
    case BN_GGML_TQ1_0: return 36;
    case BN_GGML_TQ2_0: return 37;
    case BN_GGML_F16: return 1;
    case BN_GGML_BF16: return 32;
    default: return 0;
    }
}

static void set_arch_u32(bn_gguf_writer *w, const char *arch, const char *key, int v) {
    char k[160];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    bn_gguf_writer_set_u32(w, k, (uint32_t)v);
}

static void set_arch_f32(bn_gguf_writer *w, const char *arch, const char *key, float v) {
    char k[160];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    bn_gguf_writer_set_f32(w, k, v);
}

bitnet_status cv_write_arch_kvs(bn_gguf_writer *w, const char *arch, const char *name, const bn_hparams *hp,
                                uint32_t weight_type, int add_bos) {
    bn_gguf_writer_set_str(w, "general.architecture", arch);
    bn_gguf_writer_set_str(w, "general.name", name ? name : "");
    set_arch_u32(w, arch, "vocab_size", hp->n_vocab);
    set_arch_u32(w, arch, "context_length", hp->n_ctx_train);
    set_arch_u32(w, arch, "embedding_length", hp->n_embd);
    set_arch_u32(w, arch, "block_count", hp->n_layer);
    set_arch_u32(w, arch, "feed_forward_length", hp->n_ff);
    set_arch_u32(w, arch, "rope.dimension_count", hp->head_dim);
    set_arch_u32(w, arch, "attention.head_count", hp->n_head);
    set_arch_u32(w, arch, "attention.head_count_kv", hp->n_head_kv);
    if (add_bos >= 0) bn_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", add_bos);
    set_arch_f32(w, arch, "attention.layer_norm_rms_epsilon", hp->rms_eps);
    set_arch_f32(w, arch, "rope.freq_base", hp->rope_theta);
    /* llama.cpp's llama converter always writes the head sizes; readers
     * default them to n_embd/n_head, so other arches need them only when
     * they differ (Falcon3: 3072/12 = 256 = head_dim). */
    if (!strcmp(arch, "llama") || hp->head_dim * hp->n_head != hp->n_embd) {
        set_arch_u32(w, arch, "attention.key_length", hp->head_dim);
        set_arch_u32(w, arch, "attention.value_length", hp->head_dim);
    }
    return bn_gguf_writer_set_u32(w, "general.file_type", cv_file_type(weight_type));
}

/* ---------------------------------------------------------------- sink -- */

#define CV_REPORT_EVERY ((uint64_t)64 << 20)

static int report(cv_sink *s) {
    if (!s->progress) return 0;
    s->next_report = bn_gguf_writer_data_written(s->w) + CV_REPORT_EVERY;
    if (s->progress(s->user, s->tensor, s->index, s->count, bn_gguf_writer_data_written(s->w),
                    bn_gguf_writer_data_total(s->w)))
        s->cancelled = 1;
    return s->cancelled;
}

bitnet_status cv_sink_begin(cv_sink *s, int index, const char *tensor) {
    s->index = index;
    s->tensor = tensor;
    if (report(s)) return BITNET_E_CANCELLED;
    return BITNET_OK;
}

bitnet_status cv_sink_write(cv_sink *s, const void *data, size_t n) {
    bitnet_status rc = bn_gguf_writer_write(s->w, data, n);
    if (rc) return rc;
    if (s->progress && bn_gguf_writer_data_written(s->w) >= s->next_report && report(s)) return BITNET_E_CANCELLED;
    return BITNET_OK;
}

bitnet_status cv_sink_error(const cv_sink *s, bitnet_error *err) {
    if (s->cancelled) return bn_fail(err, BITNET_E_CANCELLED, "cancelled");
    const bitnet_error *we = bn_gguf_writer_error(s->w);
    return bn_fail(err, we->code ? we->code : BITNET_E_INTERNAL, "%s", we->code ? we->message : "write failed");
}

bitnet_status cv_write_all(bn_gguf_writer *w, const cv_tensor *plan, int n, cv_tensor_fn fn, void *ctx,
                           bitnet_progress_fn progress, void *user, bitnet_error *err) {
    for (int i = 0; i < n; i++)
        bn_gguf_writer_add_tensor(w, plan[i].name, plan[i].type, plan[i].n_dims, plan[i].ne);
    cv_sink s = {.w = w, .progress = progress, .user = user, .count = n};
    if (bn_gguf_writer_begin_data(w)) return cv_sink_error(&s, err);
    for (int i = 0; i < n; i++) {
        if (cv_sink_begin(&s, i, plan[i].name)) return cv_sink_error(&s, err);
        bitnet_status rc = fn(ctx, &plan[i], &s, err);
        if (rc) return rc;
    }
    if (bn_gguf_writer_finish(w)) return cv_sink_error(&s, err);
    s.index = n;
    s.tensor = "";
    if (progress) progress(user, "", n, n, bn_gguf_writer_data_total(w), bn_gguf_writer_data_total(w));
    return BITNET_OK;
}

/* ------------------------------------------------------------ encoders -- */

/* Output is gathered in chunks of about this many bytes per write call. */
#define CV_CHUNK ((size_t)1 << 20)

typedef struct chunk {
    uint8_t *p;
    size_t n, cap;
} chunk;

static bitnet_status chunk_flush(cv_sink *s, chunk *c) {
    bitnet_status rc = c->n ? cv_sink_write(s, c->p, c->n) : BITNET_OK;
    c->n = 0;
    return rc;
}

static bitnet_status write_fail(cv_sink *s, const char *tensor, bitnet_error *err) {
    bitnet_status rc = cv_sink_error(s, err);
    if (rc != BITNET_E_CANCELLED) bn_err_prefix(err, "tensor '%s'", tensor);
    return rc;
}

/* I2_S is defined on the flattened tensor: 128-code blocks may straddle rows
 * when the row length is not a multiple of 128 (1bitLLM 3B's 8640). */
static bitnet_status i2s_rows(cv_sink *s, int64_t rows, int64_t cols, float tensor_scale, cv_ternary_row_fn fn,
                              void *ctx, uint8_t *codes, chunk *out, bitnet_error *err) {
    uint8_t block[128];
    int fill = 0;
    for (int64_t r = 0; r < rows; r++) {
        float scale = 0.0f;
        fn(ctx, r, codes, &scale);
        if (scale == 0.0f) memset(codes, 1, (size_t)cols);
        else if (scale != tensor_scale)
            return bn_fail(err, BITNET_E_UNSUPPORTED, "row %lld has scale %g, not the tensor's %g: I2_S holds one "
                           "scale per tensor (use --type tq2_0)", (long long)r, (double)scale, (double)tensor_scale);
        for (int64_t k = 0; k < cols; k++) {
            block[fill++] = codes[k];
            if (fill < 128) continue;
            bn_i2s_pack_block(block, out->p + out->n);
            out->n += 32;
            fill = 0;
            if (out->n + 32 > out->cap && chunk_flush(s, out)) return BITNET_E_IO;
        }
    }
    if (chunk_flush(s, out)) return BITNET_E_IO;
    uint8_t tail[BN_I2S_TRAILER_BYTES];
    bn_i2s_trailer(tensor_scale, tail);
    return cv_sink_write(s, tail, sizeof tail) ? BITNET_E_IO : BITNET_OK;
}

/* Row by row: TQ types with the row's scale, float types with code·scale. */
static bitnet_status encoded_rows(cv_sink *s, uint32_t type, int64_t rows, int64_t cols, cv_ternary_row_fn fn,
                                  void *ctx, uint8_t *codes, float *vals, chunk *out) {
    uint64_t rb = bn_ggml_row_bytes(type, cols);
    for (int64_t r = 0; r < rows; r++) {
        float scale = 0.0f;
        fn(ctx, r, codes, &scale);
        if (scale == 0.0f) memset(codes, 1, (size_t)cols);
        if (out->n + rb > out->cap && chunk_flush(s, out)) return BITNET_E_IO;
        if (type == BN_GGML_TQ1_0 || type == BN_GGML_TQ2_0) {
            bn_encode_ternary_row(type, codes, scale, out->p + out->n, cols);
        } else {
            for (int64_t k = 0; k < cols; k++) vals[k] = (float)((int)codes[k] - 1) * scale;
            bn_quantize_row(type, vals, out->p + out->n, cols);
        }
        out->n += rb;
    }
    return chunk_flush(s, out) ? BITNET_E_IO : BITNET_OK;
}

static int chunk_init(chunk *c, uint64_t row_bytes) {
    c->n = 0;
    c->cap = row_bytes > CV_CHUNK ? (size_t)row_bytes : CV_CHUNK;
    c->p = malloc(c->cap);
    return c->p != NULL;
}

bitnet_status cv_write_ternary(cv_sink *s, uint32_t type, int64_t rows, int64_t cols, float tensor_scale,
                               cv_ternary_row_fn fn, void *ctx, bitnet_error *err) {
    const char *name = s->tensor;
    uint8_t *codes = malloc((size_t)cols);
    float *vals = type == BN_GGML_I2_S ? NULL : malloc((size_t)cols * sizeof *vals);
    chunk out = {0};
    bitnet_status rc;
    if (!codes || (type != BN_GGML_I2_S && !vals) || !chunk_init(&out, bn_ggml_row_bytes(type, cols) + 32)) {
        rc = bn_fail(err, BITNET_E_NOMEM, "tensor '%s': out of memory", name);
    } else if (type == BN_GGML_I2_S) {
        bn_err_clear(err);
        rc = i2s_rows(s, rows, cols, tensor_scale, fn, ctx, codes, &out, err);
        if (rc == BITNET_E_UNSUPPORTED) bn_err_prefix(err, "tensor '%s'", name);
        else if (rc) rc = write_fail(s, name, err);
    } else {
        rc = encoded_rows(s, type, rows, cols, fn, ctx, codes, vals, &out);
        if (rc) rc = write_fail(s, name, err);
    }
    free(codes);
    free(vals);
    free(out.p);
    return rc;
}

bitnet_status cv_write_floats(cv_sink *s, uint32_t type, int64_t rows, int64_t cols, cv_float_row_fn fn, void *ctx,
                              bitnet_error *err) {
    const char *name = s->tensor;
    uint64_t rb = bn_ggml_row_bytes(type, cols);
    float *vals = malloc((size_t)cols * sizeof *vals);
    chunk out = {0};
    bitnet_status rc = BITNET_OK;
    if (!rb || !bn_quantize_supported(type))
        rc = bn_fail(err, BITNET_E_INTERNAL, "tensor '%s': cannot encode %s", name, bn_ggml_type_name(type));
    else if (!vals || !chunk_init(&out, rb))
        rc = bn_fail(err, BITNET_E_NOMEM, "tensor '%s': out of memory", name);
    for (int64_t r = 0; r < rows && !rc; r++) {
        fn(ctx, r, vals);
        if (out.n + rb > out.cap && chunk_flush(s, &out)) rc = write_fail(s, name, err);
        if (rc) break;
        bn_quantize_row(type, vals, out.p + out.n, cols);
        out.n += rb;
    }
    if (!rc && chunk_flush(s, &out)) rc = write_fail(s, name, err);
    free(vals);
    free(out.p);
    return rc;
}

bitnet_status cv_check_output_path(const char *dst, int overwrite, bitnet_error *err) {
    if (!dst || !*dst) return bn_fail(err, BITNET_E_INVALID_ARG, "no output path");
    FILE *f = overwrite ? NULL : fopen(dst, "rb");
    if (f) {
        fclose(f);
        return bn_fail(err, BITNET_E_IO, "%s: file exists (use --force to overwrite)", dst);
    }
    return BITNET_OK;
}
