/* Hugging Face folder → model: config.json + safetensors (+ tokenizer.json).
 * Packed BitNet weights (uint8 (out/4, in) + weight_scale) are repacked into
 * the engine's ternary layout; bf16/f16/f32 linears are ternarized. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format/ggml_types.h"
#include "format/safetensors.h"
#include "model/build.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/mapped_file.h"

typedef struct hf_source {
    bitnet_model *m;
    const bn_safetensors *st;
    int scale_divides; /* linear_class "bitlinear": weight_scale is the inverse */
} hf_source;

static bitnet_status read_json(const char *path, cJSON **out, bitnet_error *err) {
    bn_mapped_file f;
    bitnet_status rc = bn_mapped_file_open(&f, path, 0, err);
    if (rc) return rc;
    *out = cJSON_ParseWithLength((const char *)f.data, f.size);
    bn_mapped_file_close(&f);
    if (!*out) return bn_fail(err, BITNET_E_FORMAT, "%s: invalid JSON", path);
    return BITNET_OK;
}

static const cJSON *obj(const cJSON *o, const char *key) { return cJSON_GetObjectItemCaseSensitive(o, key); }

static bitnet_status cfg_int(const cJSON *cfg, const char *key, int required, int *out, bitnet_error *err) {
    const cJSON *v = obj(cfg, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) return bn_fail(err, BITNET_E_FORMAT, "config.json: missing '%s'", key);
        return BITNET_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 || v->valuedouble > INT32_MAX)
        return bn_fail(err, BITNET_E_FORMAT, "config.json: '%s' is not a valid integer", key);
    *out = (int)v->valuedouble;
    return BITNET_OK;
}

static bitnet_status cfg_float(const cJSON *cfg, const char *key, float *out, bitnet_error *err) {
    const cJSON *v = obj(cfg, key);
    if (!v || cJSON_IsNull(v)) return BITNET_OK;
    if (!cJSON_IsNumber(v)) return bn_fail(err, BITNET_E_FORMAT, "config.json: '%s' is not a number", key);
    *out = (float)v->valuedouble;
    return BITNET_OK;
}

static bitnet_status read_arch(bitnet_model *m, const cJSON *cfg, bitnet_error *err) {
    const cJSON *archs = obj(cfg, "architectures");
    const cJSON *a0 = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
    const char *arch = cJSON_IsString(a0) ? a0->valuestring : "";
    const cJSON *act = obj(cfg, "hidden_act");
    const char *hidden_act = cJSON_IsString(act) ? act->valuestring : "silu";
    if (!strcmp(arch, "BitNetForCausalLM") || !strcmp(arch, "BitnetForCausalLM")) {
        /* 2B4T (relu2) and 1bitLLM (silu) share the class name; the activation tells them apart. */
        m->arch = !strcmp(hidden_act, "relu2") ? BN_ARCH_BITNET_B158 : BN_ARCH_BITNET;
        m->arch_name = m->arch == BN_ARCH_BITNET_B158 ? "bitnet-b1.58" : "bitnet";
    } else if (!strcmp(arch, "LlamaForCausalLM")) {
        m->arch = BN_ARCH_LLAMA;
        m->arch_name = "llama";
    } else {
        return bn_fail(err, BITNET_E_UNSUPPORTED, "config.json: unsupported architecture '%s'", arch);
    }
    if (strcmp(hidden_act, "relu2") && strcmp(hidden_act, "silu"))
        return bn_fail(err, BITNET_E_UNSUPPORTED, "config.json: unsupported hidden_act '%s'", hidden_act);
    m->hp.ffn_act = !strcmp(hidden_act, "relu2") ? BN_GLU_RELU2 : BN_GLU_SILU;
    m->hp.has_sub_norms = m->arch != BN_ARCH_LLAMA;
    m->hp.rope_neox = 1; /* HF uses rotate_half with unpermuted q/k for every family */
    return BITNET_OK;
}

static bitnet_status read_config(bitnet_model *m, const cJSON *cfg, hf_source *hs, bitnet_error *err) {
    bn_hparams *hp = &m->hp;
    bitnet_status rc;
    if ((rc = read_arch(m, cfg, err))) return rc;
    hp->rms_eps = 1e-6f;
    hp->rope_theta = 10000.0f;
    hp->n_ctx_train = 2048;
    if ((rc = cfg_int(cfg, "vocab_size", 1, &hp->n_vocab, err)) ||
        (rc = cfg_int(cfg, "hidden_size", 1, &hp->n_embd, err)) ||
        (rc = cfg_int(cfg, "intermediate_size", 1, &hp->n_ff, err)) ||
        (rc = cfg_int(cfg, "num_hidden_layers", 1, &hp->n_layer, err)) ||
        (rc = cfg_int(cfg, "num_attention_heads", 1, &hp->n_head, err)) ||
        (rc = cfg_int(cfg, "max_position_embeddings", 0, &hp->n_ctx_train, err)))
        return rc;
    hp->n_head_kv = hp->n_head;
    hp->head_dim = hp->n_head ? hp->n_embd / hp->n_head : 0;
    if ((rc = cfg_int(cfg, "num_key_value_heads", 0, &hp->n_head_kv, err)) ||
        (rc = cfg_int(cfg, "head_dim", 0, &hp->head_dim, err)) ||
        (rc = cfg_float(cfg, "rms_norm_eps", &hp->rms_eps, err)) ||
        (rc = cfg_float(cfg, "rope_theta", &hp->rope_theta, err)))
        return rc;
    const cJSON *rp = obj(cfg, "rope_parameters");
    if (cJSON_IsObject(rp) && (rc = cfg_float(rp, "rope_theta", &hp->rope_theta, err))) return rc;
    const cJSON *rs = obj(cfg, "rope_scaling");
    if (rs && !cJSON_IsNull(rs)) return bn_fail(err, BITNET_E_UNSUPPORTED, "config.json: rope_scaling is not supported");
    /* transformers' BitNet integration defaults to the BitLinear class, whose
     * stored weight_scale is the inverse; 2B4T says "autobitlinear". */
    const cJSON *q = obj(cfg, "quantization_config");
    const cJSON *lc = cJSON_IsObject(q) ? obj(q, "linear_class") : NULL;
    const char *linear_class = cJSON_IsString(lc) ? lc->valuestring : "bitlinear";
    if (!strcmp(linear_class, "autobitlinear")) hs->scale_divides = 0;
    else if (!strcmp(linear_class, "bitlinear")) hs->scale_divides = 1;
    else return bn_fail(err, BITNET_E_UNSUPPORTED, "config.json: unknown linear_class '%s'", linear_class);
    return bn_hparams_validate(hp, err);
}

/* GGUF tensor names → Hugging Face names. */
static int hf_name(const char *gguf, char *out, size_t cap) {
    static const struct { const char *g, *h; } layer_map[] = {
        {"attn_norm", "input_layernorm"},          {"ffn_norm", "post_attention_layernorm"},
        {"attn_sub_norm", "self_attn.attn_sub_norm"}, {"ffn_sub_norm", "mlp.ffn_sub_norm"},
        {"attn_q", "self_attn.q_proj"},            {"attn_k", "self_attn.k_proj"},
        {"attn_v", "self_attn.v_proj"},            {"attn_output", "self_attn.o_proj"},
        {"ffn_gate", "mlp.gate_proj"},             {"ffn_up", "mlp.up_proj"},
        {"ffn_down", "mlp.down_proj"},
    };
    if (!strcmp(gguf, "token_embd.weight")) return snprintf(out, cap, "model.embed_tokens.weight") > 0;
    if (!strcmp(gguf, "output.weight")) return snprintf(out, cap, "lm_head.weight") > 0;
    if (!strcmp(gguf, "output_norm.weight")) return snprintf(out, cap, "model.norm.weight") > 0;
    int il, n = 0;
    char part[64];
    if (sscanf(gguf, "blk.%d.%63[a-z_].weight%n", &il, part, &n) == 2 && gguf[n] == '\0')
        for (size_t i = 0; i < sizeof layer_map / sizeof layer_map[0]; i++)
            if (!strcmp(part, layer_map[i].g)) return snprintf(out, cap, "model.layers.%d.%s.weight", il, layer_map[i].h) > 0;
    return 0;
}

static int st_to_ggml(bn_st_dtype t, uint32_t *out) {
    switch (t) {
    case BN_ST_F32: *out = BN_GGML_F32; return 1;
    case BN_ST_F16: *out = BN_GGML_F16; return 1;
    case BN_ST_BF16: *out = BN_GGML_BF16; return 1;
    default: return 0;
    }
}

static int read_scale(const bn_st_tensor *t, float *out) {
    if (t->n_elems != 1) return 0;
    uint16_t h;
    switch (t->dtype) {
    case BN_ST_F32: memcpy(out, t->data, 4); return 1;
    case BN_ST_BF16: memcpy(&h, t->data, 2); *out = bn_bf16_to_fp32(h); return 1;
    case BN_ST_F16: memcpy(&h, t->data, 2); *out = bn_fp16_to_fp32(h); return 1;
    default: return 0;
    }
}

static int hf_find(void *ctx, const char *gguf_name, bn_src_tensor *out, bitnet_error *err) {
    hf_source *hs = ctx;
    char name[160];
    if (!hf_name(gguf_name, name, sizeof name)) return 0;
    const bn_st_tensor *t = bn_safetensors_find(hs->st, name);
    if (!t) return 0;
    if (t->n_dims < 1 || t->n_dims > 2) {
        bn_fail(err, BITNET_E_FORMAT, "tensor '%s' has %d dimensions", name, t->n_dims);
        return -1;
    }
    out->n_dims = t->n_dims;
    out->ne[0] = t->shape[t->n_dims - 1];
    out->ne[1] = t->n_dims == 2 ? t->shape[0] : 1;
    out->data = t->data;
    if (t->dtype == BN_ST_U8 && t->n_dims == 2) { /* packed ternary: 4 rows per byte */
        out->hf_packed = 1;
        out->ne[1] = t->shape[0] * 4;
        char sname[176];
        snprintf(sname, sizeof sname, "%.*s_scale", (int)strlen(name), name); /* "...weight_scale" */
        const bn_st_tensor *s = bn_safetensors_find(hs->st, sname);
        float v;
        if (!s || !read_scale(s, &v) || !isfinite(v) || v == 0.0f) {
            bn_fail(err, BITNET_E_FORMAT, "tensor '%s': missing or invalid '%s'", name, sname);
            return -1;
        }
        out->scale = hs->scale_divides ? 1.0f / v : v;
        return 1;
    }
    if (!st_to_ggml(t->dtype, &out->type)) {
        bn_fail(err, BITNET_E_UNSUPPORTED, "tensor '%s' has dtype %s", name, bn_st_dtype_name(t->dtype));
        return -1;
    }
    return 1;
}

static bitnet_status add_tensor_table(bitnet_model *m, const bn_safetensors *st, bitnet_error *err) {
    for (int i = 0; i < bn_safetensors_n(st); i++) {
        const bn_st_tensor *t = bn_safetensors_at(st, i);
        int64_t ne[4] = {1, 1, 1, 1};
        int nd = t->n_dims > 4 ? 4 : t->n_dims;
        for (int d = 0; d < nd; d++) ne[d] = t->shape[t->n_dims - 1 - d];
        bitnet_status rc = bn_model_add_tensor_entry(m, t->name, strlen(t->name), bn_st_dtype_name(t->dtype), nd, ne,
                                                     t->n_bytes, err);
        if (rc) return rc;
    }
    return BITNET_OK;
}

/* tokenizer_config.json's "chat_template" string (optional file and key). */
static void read_chat_template(bitnet_model *m, const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    cJSON *tc = NULL;
    if (access(path, R_OK) != 0 || read_json(path, &tc, NULL) != BITNET_OK) return;
    const cJSON *t = obj(tc, "chat_template");
    if (cJSON_IsString(t)) m->chat_template = bn_model_strdup(m, t->valuestring, strlen(t->valuestring));
    cJSON_Delete(tc);
}

bitnet_status bn_load_hf(bitnet_model *m, const char *dir, const bitnet_model_params *p, bitnet_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *cfg = NULL;
    bitnet_status rc = read_json(path, &cfg, err);
    if (rc) return rc;
    hf_source hs = {.m = m};
    m->source_format = "huggingface";
    rc = read_config(m, cfg, &hs, err);
    cJSON_Delete(cfg);
    if (rc) return rc;
    const char *base = strrchr(dir, '/');
    base = base && base[1] ? base + 1 : dir;
    m->name = bn_model_strdup(m, base, strlen(base));
    if ((rc = bn_safetensors_open_dir(&m->st, dir, p->use_mmap, err))) return rc;
    hs.st = m->st;
    m->file_bytes = bn_safetensors_total_bytes(m->st);
    if ((rc = add_tensor_table(m, m->st, err))) return rc;
    bn_tensor_source src = {.ctx = &hs, .find = hf_find};
    if ((rc = bn_model_build(m, &src, err))) return rc;
    /* A folder without tokenizer.json still runs on token ids (bitnet logits --ids). */
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (access(path, R_OK) == 0 && (rc = bn_tokenizer_from_hf_dir(&m->tokenizer, dir, err))) {
        bn_err_prefix(err, "tokenizer");
        return rc;
    }
    read_chat_template(m, dir);
    return BITNET_OK;
}
