/* GGUF → model. Hyperparameters come from the `{arch}.*` keys, tensors from
 * the GGUF tensor table; ternary I2_S weights are used in place. */
#include <stdio.h>
#include <string.h>

#include "format/ggml_types.h"
#include "format/gguf.h"
#include "model/build.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

/* Reads `{arch}.suffix` as a positive int; missing and !required → *out kept. */
static bitnet_status get_int(const bn_gguf *g, const char *arch, const char *suffix, int required, int *out,
                             bitnet_error *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    uint32_t v;
    int r = bn_gguf_get_u32(g, key, &v);
    if (r == 0 && !required) return BITNET_OK;
    if (r == 0) return bn_fail(err, BITNET_E_FORMAT, "missing metadata key '%s'", key);
    if (r < 0 || v > (uint32_t)INT32_MAX) return bn_fail(err, BITNET_E_FORMAT, "metadata key '%s' has a bad type or value", key);
    *out = (int)v;
    return BITNET_OK;
}

static bitnet_status get_float(const bn_gguf *g, const char *arch, const char *suffix, float *out, bitnet_error *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int r = bn_gguf_get_f32(g, key, out);
    if (r < 0) return bn_fail(err, BITNET_E_FORMAT, "metadata key '%s' has a bad type", key);
    return BITNET_OK;
}

static bitnet_status read_hparams(bitnet_model *m, const bn_gguf *g, bitnet_error *err) {
    const char *a = m->arch_name;
    bn_hparams *hp = &m->hp;
    bitnet_status rc;
    hp->rms_eps = 1e-5f;
    hp->rope_theta = 10000.0f;
    hp->n_ctx_train = 2048;
    if ((rc = get_int(g, a, "embedding_length", 1, &hp->n_embd, err)) ||
        (rc = get_int(g, a, "block_count", 1, &hp->n_layer, err)) ||
        (rc = get_int(g, a, "feed_forward_length", 1, &hp->n_ff, err)) ||
        (rc = get_int(g, a, "attention.head_count", 1, &hp->n_head, err)) ||
        (rc = get_int(g, a, "context_length", 0, &hp->n_ctx_train, err)))
        return rc;
    hp->n_head_kv = hp->n_head;
    if ((rc = get_int(g, a, "attention.head_count_kv", 0, &hp->n_head_kv, err))) return rc;
    hp->head_dim = hp->n_head > 0 ? hp->n_embd / hp->n_head : 0;
    if ((rc = get_int(g, a, "attention.key_length", 0, &hp->head_dim, err))) return rc;
    int vlen = hp->head_dim, rope_dim = hp->head_dim;
    if ((rc = get_int(g, a, "attention.value_length", 0, &vlen, err)) ||
        (rc = get_int(g, a, "rope.dimension_count", 0, &rope_dim, err)))
        return rc;
    if (vlen != hp->head_dim) return bn_fail(err, BITNET_E_UNSUPPORTED, "key length %d differs from value length %d", hp->head_dim, vlen);
    if (rope_dim != hp->head_dim) return bn_fail(err, BITNET_E_UNSUPPORTED, "partial RoPE (%d of %d dimensions) is not supported", rope_dim, hp->head_dim);
    if ((rc = get_float(g, a, "attention.layer_norm_rms_epsilon", &hp->rms_eps, err)) ||
        (rc = get_float(g, a, "rope.freq_base", &hp->rope_theta, err)))
        return rc;
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", a);
    bn_str s;
    if (bn_gguf_get_str(g, key, &s) == 1 && !bn_str_eq(s, "none"))
        return bn_fail(err, BITNET_E_UNSUPPORTED, "RoPE scaling '%.*s' is not supported", (int)(s.len > 32 ? 32 : s.len), s.ptr);
    /* The vocabulary size is the embedding's row count; the key is optional. */
    const bn_gguf_tensor *emb = bn_gguf_find_tensor(g, "token_embd.weight");
    if (!emb) return bn_fail(err, BITNET_E_FORMAT, "missing tensor 'token_embd.weight'");
    hp->n_vocab = emb->ne[1] > INT32_MAX ? -1 : (int)emb->ne[1];
    int kv_vocab = hp->n_vocab;
    if ((rc = get_int(g, a, "vocab_size", 0, &kv_vocab, err))) return rc;
    if (kv_vocab != hp->n_vocab)
        return bn_fail(err, BITNET_E_FORMAT, "vocab_size %d disagrees with token_embd rows %d", kv_vocab, hp->n_vocab);
    hp->rope_neox = m->arch != BN_ARCH_LLAMA; /* llama GGUFs have q/k permuted for interleaved RoPE */
    hp->has_sub_norms = m->arch != BN_ARCH_LLAMA;
    hp->ffn_act = m->arch == BN_ARCH_BITNET_B158 ? BN_GLU_RELU2 : BN_GLU_SILU;
    return bn_hparams_validate(hp, err);
}

static int gguf_find(void *ctx, const char *name, bn_src_tensor *out, bitnet_error *err) {
    (void)err;
    const bn_gguf *g = ctx;
    const bn_gguf_tensor *t = bn_gguf_find_tensor(g, name);
    if (!t) return 0;
    out->type = t->type;
    out->n_dims = (int)t->n_dims;
    memcpy(out->ne, t->ne, sizeof out->ne);
    out->data = t->data;
    /* Some converters store a ternary tensor's scale as a separate one-element
     * tensor next to it ("blk.0.attn_q.scale"). */
    size_t len = strlen(name);
    if (len > 7 && !strcmp(name + len - 7, ".weight")) {
        char sname[96];
        snprintf(sname, sizeof sname, "%.*s.scale", (int)(len - 7), name);
        const bn_gguf_tensor *st = bn_gguf_find_tensor(g, sname);
        if (st && st->n_elems == 1 && st->type == BN_GGML_F32) memcpy(&out->scale, st->data, sizeof(float));
    }
    return 1;
}

bitnet_status bn_load_gguf(bitnet_model *m, const char *path, const bitnet_model_params *p, bitnet_error *err) {
    bitnet_status rc = bn_gguf_open(&m->gguf, path, p->use_mmap, err);
    if (rc) return rc;
    const bn_gguf *g = m->gguf;
    m->source_format = "gguf";
    m->file_bytes = bn_gguf_file_size(g);
    bn_str s;
    if (bn_gguf_get_str(g, "general.architecture", &s) != 1)
        return bn_fail(err, BITNET_E_FORMAT, "missing metadata key 'general.architecture'");
    if (s.len > 64 || !(m->arch_name = bn_model_strdup(m, s.ptr, s.len)))
        return bn_fail(err, BITNET_E_FORMAT, "bad 'general.architecture'");
    int arch = bn_arch_from_name(m->arch_name);
    if (arch < 0)
        return bn_fail(err, BITNET_E_UNSUPPORTED,
                       "unknown architecture '%s' (bitnet.c runs bitnet-b1.58, bitnet-25, bitnet and ternary llama)",
                       m->arch_name);
    m->arch = (bn_arch)arch;
    if (bn_gguf_get_str(g, "general.name", &s) == 1) m->name = bn_model_strdup(m, s.ptr, s.len);
    if (bn_gguf_get_str(g, "tokenizer.chat_template", &s) == 1) m->chat_template = bn_model_strdup(m, s.ptr, s.len);
    if ((rc = read_hparams(m, g, err))) return rc;
    for (int64_t i = 0; i < bn_gguf_n_tensors(g); i++) {
        const bn_gguf_tensor *t = bn_gguf_tensor_at(g, i);
        if ((rc = bn_model_add_tensor_entry(m, t->name.ptr, t->name.len, bn_ggml_type_name(t->type), (int)t->n_dims,
                                            t->ne, t->n_bytes, err)))
            return rc;
    }
    bn_tensor_source src = {.ctx = m->gguf, .find = gguf_find};
    if ((rc = bn_model_build(m, &src, err))) return rc;
    if (bn_gguf_find_kv(g, "tokenizer.ggml.model")) {
        if ((rc = bn_tokenizer_from_gguf(&m->tokenizer, g, err))) {
            bn_err_prefix(err, "tokenizer");
            return rc;
        }
    }
    return BITNET_OK;
}
