/* bitnet_gen_model: a GGUF file with the exact shapes of a real model and
 * random contents — ternary weights with a third of zeros and per-tensor
 * scales like trained ones, norms near 1, a small random embedding — written
 * one tensor (one row) at a time, so memory does not grow with the model.
 *
 * Scales: a ternary row of K inputs with 2/3 non-zero weights turns unit-RMS
 * inputs into outputs of RMS scale·sqrt(2K/3). Drawing scale as
 * u / sqrt(2K/3) with u in [0.7, 1.3] keeps every layer's output near unit
 * RMS (finite, non-degenerate activations through any depth) and gives
 * 0.006–0.04 for the real shapes, the range trained checkpoints show. Scales
 * are rounded to bf16 (as 2B4T's are), so TQ types' fp16 holds them exactly. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert/convert_internal.h"
#include "format/ggml_types.h"
#include "util/error.h"

typedef struct preset {
    const char *name, *arch, *model_name;
    int n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx;
    float rms_eps, rope_theta;
    int tied;
} preset;

static const preset presets[] = {
    /* microsoft/bitnet-b1.58-2B-4T */
    {"2b4t", "bitnet-b1.58", "bitnet2b", 128256, 2560, 30, 20, 5, 128, 6912, 4096, 1e-5f, 500000.0f, 1},
    /* 1bitLLM/bitnet_b1_58-large (SiLU, Llama-2 vocabulary + 2 added tokens) */
    {"large-0.7b", "bitnet", "bitnet_b1_58-large", 32002, 1536, 24, 16, 16, 96, 4096, 2048, 1e-5f, 10000.0f, 1},
    /* 1bitLLM/bitnet_b1_58-3B */
    {"3b", "bitnet", "bitnet_b1_58-3B", 32002, 3200, 26, 32, 32, 100, 8640, 2048, 1e-5f, 10000.0f, 1},
    /* tiiuae/Falcon3-7B-Instruct-1.58bit */
    {"falcon3-7b", "llama", "Falcon3-7B-1.58bit", 131072, 3072, 28, 12, 4, 256, 23040, 32768, 1e-6f, 1000042.0f, 0},
    /* HF1BitLLM/Llama3-8B-1.58-100B-tokens */
    {"llama3-8b", "llama", "Llama3-8B-1.58", 128256, 4096, 32, 32, 8, 128, 14336, 8192, 1e-5f, 500000.0f, 0},
    /* a tiny 2B4T-style model, to edit with flags */
    {"custom", "bitnet-b1.58", "custom", 1024, 256, 2, 4, 2, 64, 768, 512, 1e-5f, 500000.0f, 1},
};

#define N_PRESETS ((int)(sizeof presets / sizeof presets[0]))

const char *bitnet_gen_preset_name(int i) { return i >= 0 && i < N_PRESETS ? presets[i].name : NULL; }

bitnet_status bitnet_gen_params_preset(bitnet_gen_params *p, const char *name, bitnet_error *err) {
    const preset *ps = NULL;
    for (int i = 0; i < N_PRESETS; i++)
        if (name && !strcmp(name, presets[i].name)) ps = &presets[i];
    if (!ps) return bn_fail(err, BITNET_E_INVALID_ARG, "unknown preset '%s'", name ? name : "(null)");
    memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->arch = ps->arch;
    p->name = ps->model_name;
    p->n_vocab = ps->n_vocab;
    p->n_embd = ps->n_embd;
    p->n_layer = ps->n_layer;
    p->n_head = ps->n_head;
    p->n_head_kv = ps->n_head_kv;
    p->head_dim = ps->head_dim;
    p->n_ff = ps->n_ff;
    p->n_ctx = ps->n_ctx;
    p->rms_eps = ps->rms_eps;
    p->rope_theta = ps->rope_theta;
    p->tied_output = ps->tied;
    p->weight_type = BITNET_TYPE_I2_S;
    p->embd_type = BITNET_TYPE_F16;
    p->seed = 42;
    return BITNET_OK;
}

/* --------------------------------------------------------------- random -- */

/* splitmix64: a fast generator with a 64-bit state; one stream per tensor. */
static uint64_t next_u64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float uniform01(uint64_t *s) { return (float)(next_u64(s) >> 40) * (1.0f / 16777216.0f); }

/* Approximately N(0, 1): four 16-bit uniforms summed (Irwin-Hall), rescaled. */
static float normal(uint64_t *s) {
    uint64_t x = next_u64(s);
    float sum = 0.0f;
    for (int i = 0; i < 4; i++) sum += (float)((x >> (16 * i)) & 0xFFFF) * (1.0f / 65536.0f);
    return (sum - 2.0f) * 1.7320508f;
}

static float round_bf16(float x) { return bn_bf16_to_fp32(bn_fp32_to_bf16(x)); }

/* --------------------------------------------------------------- tensors -- */

typedef struct ternary_gen {
    uint64_t state;
    float scale;
    int64_t cols;
} ternary_gen;

static void ternary_row(void *ctx, int64_t r, uint8_t *codes, float *scale) {
    ternary_gen *g = ctx;
    (void)r; /* rows are asked for in order; the stream simply continues */
    for (int64_t k = 0; k < g->cols; k += 2) {
        uint64_t x = next_u64(&g->state);
        codes[k] = (uint8_t)(((x & 0xFFFFFFFFull) * 3) >> 32); /* 0, 1, 2 with equal odds */
        if (k + 1 < g->cols) codes[k + 1] = (uint8_t)(((x >> 32) * 3) >> 32);
    }
    *scale = g->scale;
}

typedef struct float_gen {
    uint64_t state;
    float centre, spread;
    int64_t cols;
} float_gen;

static void float_row(void *ctx, int64_t r, float *dst) {
    float_gen *f = ctx;
    (void)r;
    for (int64_t k = 0; k < f->cols; k++) dst[k] = f->centre + f->spread * normal(&f->state);
}

typedef struct gen_ctx {
    uint64_t seed;
} gen_ctx;

static bitnet_status gen_tensor(void *ctx, const cv_tensor *t, cv_sink *s, bitnet_error *err) {
    const gen_ctx *c = ctx;
    int index = s->index;
    uint64_t state = c->seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(index + 1));
    next_u64(&state);
    if (cv_role_is_ternary(t->role)) {
        float u = 0.7f + 0.6f * uniform01(&state);
        ternary_gen g = {.state = state, .cols = t->ne[0],
                         .scale = round_bf16(u / sqrtf(2.0f * (float)t->ne[0] / 3.0f))};
        return cv_write_ternary(s, t->type, t->ne[1], t->ne[0], g.scale, ternary_row, &g, err);
    }
    /* Embeddings: small values around 0; norms: around 1. */
    int embd = t->role == CV_TOK_EMBD || t->role == CV_OUTPUT;
    float_gen f = {.state = state, .centre = embd ? 0.0f : 1.0f, .spread = embd ? 0.02f : 0.05f, .cols = t->ne[0]};
    return cv_write_floats(s, t->type, t->ne[1], t->ne[0], float_row, &f, err);
}

/* ----------------------------------------------------------------- entry -- */

static bitnet_status gen_hparams(const bitnet_gen_params *p, bn_hparams *hp, bitnet_error *err) {
    if (!p->arch || bn_arch_from_name(p->arch) < 0 || !strcmp(p->arch, "bitnet-25"))
        return bn_fail(err, BITNET_E_INVALID_ARG, "architecture '%s' is not one of bitnet-b1.58, bitnet, llama",
                       p->arch ? p->arch : "(null)");
    memset(hp, 0, sizeof *hp);
    hp->n_vocab = p->n_vocab;
    hp->n_embd = p->n_embd;
    hp->n_layer = p->n_layer;
    hp->n_head = p->n_head;
    hp->n_head_kv = p->n_head_kv;
    hp->head_dim = p->head_dim;
    hp->n_ff = p->n_ff;
    hp->n_ctx_train = p->n_ctx;
    hp->rms_eps = p->rms_eps;
    hp->rope_theta = p->rope_theta;
    hp->has_sub_norms = strcmp(p->arch, "llama") != 0;
    return bn_hparams_validate(hp, err);
}

static bitnet_status gen_vocab(const bitnet_gen_params *p, cv_vocab *v, bitnet_error *err) {
    if (!p->tokenizer) return cv_vocab_synthetic(v, p->n_vocab, err);
    /* The folder of tokenizer.json may hold tokenizer_config.json / config.json. */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", p->tokenizer);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    else snprintf(dir, sizeof dir, ".");
    return cv_vocab_from_hf(v, p->tokenizer, dir, p->n_vocab, err);
}

static bitnet_status check_types(const bitnet_gen_params *p, bitnet_error *err) {
    switch (p->weight_type) {
    case BITNET_TYPE_I2_S: case BITNET_TYPE_TQ1_0: case BITNET_TYPE_TQ2_0: case BITNET_TYPE_F16: case BITNET_TYPE_F32:
        break;
    default:
        return bn_fail(err, BITNET_E_INVALID_ARG, "weight type must be i2_s, tq2_0, tq1_0, f16 or f32");
    }
    switch (p->embd_type) {
    case BITNET_TYPE_F16: case BITNET_TYPE_F32: case BITNET_TYPE_BF16: case BITNET_TYPE_Q8_0: case BITNET_TYPE_Q6_K:
    case BITNET_TYPE_Q4_0:
        return BITNET_OK;
    default:
        return bn_fail(err, BITNET_E_INVALID_ARG, "embedding type must be f16, f32, bf16, q8_0, q6_k or q4_0");
    }
}

static bitnet_status gen_write(const char *dst, const bitnet_gen_params *p, const bn_hparams *hp, cv_tensor *plan,
                               int n, bitnet_error *err) {
    cv_vocab v;
    bitnet_status rc = gen_vocab(p, &v, err);
    if (rc) return rc;
    bn_gguf_writer *w = NULL;
    rc = bn_gguf_writer_open(&w, dst, p->overwrite, err);
    if (!rc) {
        cv_write_arch_kvs(w, p->arch, p->name ? p->name : "synthetic", hp, (uint32_t)p->weight_type, v.add_bos);
        cv_vocab_write(&v, w);
        bn_gguf_writer_set_u32(w, "general.quantization_version", 2);
        gen_ctx c = {.seed = p->seed};
        rc = cv_write_all(w, plan, n, gen_tensor, &c, p->progress, p->progress_user, err);
    }
    bn_gguf_writer_free(w);
    cv_vocab_free(&v);
    return rc;
}

bitnet_status bitnet_gen_model(const char *dst, const bitnet_gen_params *params, bitnet_error *err) {
    bn_err_clear(err);
    if (!params) return bn_fail(err, BITNET_E_INVALID_ARG, "no parameters");
    bitnet_gen_params p;
    bitnet_gen_params_preset(&p, "custom", NULL);
    memcpy(&p, params, params->struct_size < sizeof p ? params->struct_size : sizeof p);
    bn_hparams hp;
    bitnet_status rc = gen_hparams(&p, &hp, err);
    if (!rc) rc = check_types(&p, err);
    if (!rc) rc = cv_check_output_path(dst, p.overwrite, err);
    if (rc) return rc;
    int n = cv_plan_count(&hp, p.tied_output);
    cv_tensor *plan = malloc((size_t)n * sizeof *plan);
    if (!plan) return bn_fail(err, BITNET_E_NOMEM, "out of memory");
    cv_plan(&hp, p.tied_output, (uint32_t)p.weight_type, (uint32_t)p.embd_type, plan);
    rc = cv_plan_check(plan, n, err);
    if (!rc) rc = gen_write(dst, &p, &hp, plan, n, err);
    free(plan);
    return rc;
}
