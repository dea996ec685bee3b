/* bitnet_convert: any model bitnet_model_load reads → a GGUF file like the
 * official BitNet ones. The model is loaded as the engine would run it (so
 * every source convention — packed HF weights with either scale convention,
 * float master weights ternarized by absmean, GGUF ternary types — is already
 * resolved into the engine's ternary layout) and its tensors are re-encoded
 * one at a time into the output stream. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "convert/convert_internal.h"
#include "format/ggml_quantize.h"
#include "format/ggml_types.h"
#include "util/error.h"

void bitnet_convert_params_default(bitnet_convert_params *p) {
    memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->weight_type = BITNET_TYPE_I2_S;
    p->embd_type = BITNET_TYPE_DEFAULT;
}

int bitnet_type_from_name(const char *name) {
    static const struct { const char *name; bitnet_type t; } types[] = {
        {"f32", BITNET_TYPE_F32},   {"f16", BITNET_TYPE_F16},     {"bf16", BITNET_TYPE_BF16},
        {"q4_0", BITNET_TYPE_Q4_0}, {"q8_0", BITNET_TYPE_Q8_0},   {"q6_k", BITNET_TYPE_Q6_K},
        {"tq1_0", BITNET_TYPE_TQ1_0}, {"tq2_0", BITNET_TYPE_TQ2_0}, {"i2_s", BITNET_TYPE_I2_S},
    };
    if (!name) return -1;
    char low[16];
    size_t n = strlen(name);
    if (n >= sizeof low) return -1;
    for (size_t i = 0; i <= n; i++) low[i] = (char)tolower((unsigned char)name[i]);
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(low, types[i].name)) return types[i].t;
    return -1;
}

/* ------------------------------------------------------------ tensors -- */

typedef struct conv_ctx {
    const bitnet_model *m;
    int permute_qk;    /* HF llama → GGUF llama: q/k rows for interleaved RoPE */
} conv_ctx;

typedef struct ternary_rows {
    const bn_ternary *w;
    int head_dim;      /* > 0: permute rows within each head */
} ternary_rows;

/* llama.cpp's converter reorders each head's rows from rotate-half pairs
 * (i, i + d/2) to adjacent pairs (2i, 2i + 1): output row 2j + p of a head is
 * source row p·d/2 + j. */
static int64_t permuted_row(int64_t r, int head_dim) {
    int64_t h = r / head_dim, i = r % head_dim;
    return h * head_dim + (i % 2) * (head_dim / 2) + i / 2;
}

static void ternary_row(void *ctx, int64_t r, uint8_t *codes, float *scale) {
    const ternary_rows *tr = ctx;
    const bn_ternary *w = tr->w;
    int64_t src = tr->head_dim > 0 ? permuted_row(r, tr->head_dim) : r;
    const uint8_t *row = w->codes + src * (w->cols / 4);
    for (int64_t b = 0; b < w->cols / 128; b++)
        for (int j = 0; j < 32; j++) {
            uint8_t byte = row[32 * b + j];
            for (int g = 0; g < 4; g++) codes[128 * b + 32 * g + j] = (uint8_t)((byte >> (6 - 2 * g)) & 3);
        }
    *scale = bn_ternary_row_scale(w, src);
}

/* The scale I2_S stores: the one every non-zero row shares (checked while
 * writing). */
static float tensor_scale(const bn_ternary *w) {
    if (!w->row_scale) return w->scale;
    for (int64_t r = 0; r < w->rows; r++)
        if (w->row_scale[r] != 0.0f) return w->row_scale[r];
    return 0.0f;
}

static const bn_ternary *layer_ternary(const bn_layer *L, cv_role role) {
    switch (role) {
    case CV_Q: return &L->wq;
    case CV_K: return &L->wk;
    case CV_V: return &L->wv;
    case CV_O: return &L->wo;
    case CV_GATE: return &L->w_gate;
    case CV_UP: return &L->w_up;
    default: return &L->w_down;
    }
}

static const bn_vec *find_vec(const bitnet_model *m, const cv_tensor *t) {
    if (t->role == CV_OUTPUT_NORM) return &m->output_norm;
    const bn_layer *L = &m->layers[t->layer];
    switch (t->role) {
    case CV_ATTN_NORM: return &L->attn_norm;
    case CV_FFN_NORM: return &L->ffn_norm;
    case CV_ATTN_SUB_NORM: return &L->attn_sub_norm;
    default: return &L->ffn_sub_norm;
    }
}

static void dense_row(void *ctx, int64_t r, float *dst) {
    const bn_dense *d = ctx;
    bn_ggml_dequantize_row(d->type, d->data + r * d->row_bytes, dst, d->cols, 0.0f);
}

/* Same type: the bytes as they are (lossless); else decode and re-encode. */
static bitnet_status write_dense(cv_sink *s, const cv_tensor *t, const bn_dense *d, bitnet_error *err) {
    if (d->type != t->type) return cv_write_floats(s, t->type, d->rows, d->cols, dense_row, (void *)d, err);
    uint64_t total = d->row_bytes * (uint64_t)d->rows;
    for (uint64_t off = 0; off < total; off += (uint64_t)16 << 20) {
        size_t n = total - off < ((uint64_t)16 << 20) ? (size_t)(total - off) : (size_t)16 << 20;
        if (cv_sink_write(s, d->data + off, n)) {
            bitnet_status rc = cv_sink_error(s, err);
            if (rc != BITNET_E_CANCELLED) bn_err_prefix(err, "tensor '%s'", t->name);
            return rc;
        }
    }
    return BITNET_OK;
}

static bitnet_status write_vec(cv_sink *s, const cv_tensor *t, const bn_vec *v, bitnet_error *err) {
    if (!v->data || v->n != t->ne[0]) return bn_fail(err, BITNET_E_INTERNAL, "tensor '%s' is missing", t->name);
    if (cv_sink_write(s, v->data, (size_t)v->n * sizeof(float))) return cv_sink_error(s, err);
    return BITNET_OK;
}

static bitnet_status write_tensor(void *ctx, const cv_tensor *t, cv_sink *s, bitnet_error *err) {
    const conv_ctx *c = ctx;
    const bitnet_model *m = c->m;
    if (t->role == CV_TOK_EMBD) return write_dense(s, t, &m->tok_embd, err);
    if (t->role == CV_OUTPUT) return write_dense(s, t, &m->output, err);
    if (!cv_role_is_ternary(t->role)) return write_vec(s, t, find_vec(m, t), err);
    const bn_ternary *w = layer_ternary(&m->layers[t->layer], t->role);
    ternary_rows tr = {.w = w, .head_dim = c->permute_qk && (t->role == CV_Q || t->role == CV_K) ? m->hp.head_dim : 0};
    return cv_write_ternary(s, t->type, w->rows, w->cols, tensor_scale(w), ternary_row, &tr, err);
}

/* ------------------------------------------------------------- metadata -- */

static const char *arch_name(bn_arch a) {
    switch (a) {
    case BN_ARCH_BITNET_B158: return "bitnet-b1.58"; /* also for "bitnet-25" sources: the current name */
    case BN_ARCH_BITNET: return "bitnet";
    default: return "llama";
    }
}

/* A Hugging Face source's vocabulary, from its tokenizer.json and side files. */
static bitnet_status read_hf_vocab(const bitnet_model *m, const char *dir, cv_vocab *v, bitnet_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    struct stat st;
    if (stat(path, &st) != 0)
        return bn_fail(err, BITNET_E_UNSUPPORTED, "%s: no tokenizer.json (needed for the GGUF vocabulary)", dir);
    return cv_vocab_from_hf(v, path, dir, m->hp.n_vocab, err);
}

static bitnet_status write_metadata(const bitnet_model *m, const char *src, uint32_t wt, bn_gguf_writer *w,
                                    bitnet_error *err) {
    const char *arch = arch_name(m->arch);
    const char *name = m->name ? m->name : "";
    bitnet_status rc;
    if (m->gguf) {
        int add_bos = -1;
        if (bn_gguf_get_bool(m->gguf, "tokenizer.ggml.add_bos_token", &add_bos) != 1) add_bos = -1;
        cv_write_arch_kvs(w, arch, name, &m->hp, wt, add_bos);
        rc = cv_copy_gguf_kvs(m->gguf, w, 1, 1, err);
    } else {
        cv_vocab v;
        if ((rc = read_hf_vocab(m, src, &v, err))) return rc;
        cv_write_arch_kvs(w, arch, name, &m->hp, wt, v.add_bos);
        cv_vocab_write(&v, w);
        cv_vocab_free(&v);
    }
    if (rc) return rc;
    if (bn_gguf_writer_set_u32(w, "general.quantization_version", 2))
        return bn_fail(err, bn_gguf_writer_status(w), "%s", bn_gguf_writer_error(w)->message);
    return BITNET_OK;
}

/* --------------------------------------------------------------- entry -- */

static bitnet_status check_params(const bitnet_convert_params *p, bitnet_error *err) {
    switch (p->weight_type) {
    case BITNET_TYPE_I2_S: case BITNET_TYPE_TQ1_0: case BITNET_TYPE_TQ2_0: case BITNET_TYPE_F16: case BITNET_TYPE_F32:
    case BITNET_TYPE_BF16:
        break;
    default:
        return bn_fail(err, BITNET_E_INVALID_ARG, "weight type %s is not one of i2_s, tq2_0, tq1_0, f16, f32",
                       bn_ggml_type_name((uint32_t)p->weight_type));
    }
    switch (p->embd_type) {
    case BITNET_TYPE_DEFAULT: case BITNET_TYPE_F16: case BITNET_TYPE_F32: case BITNET_TYPE_BF16: case BITNET_TYPE_Q8_0:
    case BITNET_TYPE_Q6_K: case BITNET_TYPE_Q4_0:
        return BITNET_OK;
    default:
        return bn_fail(err, BITNET_E_INVALID_ARG, "embedding type %s is not one of f16, f32, bf16, q8_0, q6_k, q4_0",
                       bn_ggml_type_name((uint32_t)p->embd_type));
    }
}

static uint32_t embd_type(const bitnet_model *m, bitnet_type requested) {
    if (requested != BITNET_TYPE_DEFAULT) return (uint32_t)requested;
    return m->gguf ? m->tok_embd.type : BN_GGML_F16;
}

static bitnet_status convert_model(const bitnet_model *m, const char *src, const char *dst,
                                   const bitnet_convert_params *p, bitnet_error *err) {
    uint32_t wt = (uint32_t)p->weight_type, et = embd_type(m, p->embd_type);
    int n = cv_plan_count(&m->hp, m->tied_output);
    cv_tensor *plan = malloc((size_t)n * sizeof *plan);
    if (!plan) return bn_fail(err, BITNET_E_NOMEM, "out of memory");
    cv_plan(&m->hp, m->tied_output, wt, et, plan);
    bn_gguf_writer *w = NULL;
    bitnet_status rc = cv_plan_check(plan, n, err);
    if (!rc) rc = bn_gguf_writer_open(&w, dst, p->overwrite, err);
    if (!rc) rc = write_metadata(m, src, wt, w, err);
    conv_ctx c = {.m = m, .permute_qk = m->arch == BN_ARCH_LLAMA && m->hp.rope_neox};
    if (!rc) rc = cv_write_all(w, plan, n, write_tensor, &c, p->progress, p->progress_user, err);
    bn_gguf_writer_free(w); /* deletes the temporary file unless finished */
    free(plan);
    return rc;
}

bitnet_status bitnet_convert(const char *src, const char *dst, const bitnet_convert_params *params,
                             bitnet_error *err) {
    bn_err_clear(err);
    bitnet_convert_params p;
    bitnet_convert_params_default(&p);
    if (params) memcpy(&p, params, params->struct_size < sizeof p ? params->struct_size : sizeof p);
    p.struct_size = sizeof p;
    if (!src) return bn_fail(err, BITNET_E_INVALID_ARG, "no source model");
    bitnet_status rc = check_params(&p, err);
    if (!rc) rc = cv_check_output_path(dst, p.overwrite, err);
    if (rc) return rc;
    bitnet_model *m = NULL;
    bitnet_model_params mp;
    bitnet_model_params_default(&mp);
    if ((rc = bitnet_model_load(src, &mp, &m, err))) return rc;
    rc = convert_model(m, src, dst, &p, err);
    bitnet_model_free(m);
    return rc;
}
