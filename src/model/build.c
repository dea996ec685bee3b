#include "model/build.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/ggml_types.h"
#include "model/weights.h"
#include "util/error.h"

static int find_tensor(const bn_tensor_source *src, const char *name, bn_src_tensor *t, bitnet_error *err) {
    memset(t, 0, sizeof *t);
    t->scale = 1.0f;
    return src->find(src->ctx, name, t, err);
}

/* Finds `name` and checks it is a matrix/vector of the given GGUF shape
 * (ne1 = 0 for a vector). Returns 1 found, 0 absent (when optional), -1 error. */
static int get_shaped(const bn_tensor_source *src, const char *name, int64_t ne0, int64_t ne1, int optional,
                      bn_src_tensor *t, bitnet_error *err) {
    int r = find_tensor(src, name, t, err);
    if (r < 0) return -1;
    if (r == 0) {
        if (optional) return 0;
        bn_fail(err, BITNET_E_FORMAT, "missing tensor '%s'", name);
        return -1;
    }
    int want_dims = ne1 ? 2 : 1;
    int64_t got1 = t->n_dims >= 2 ? t->ne[1] : 1;
    int extra = 0;
    for (int i = want_dims; i < t->n_dims; i++) extra |= (i >= 2 && t->ne[i] != 1);
    if (t->ne[0] != ne0 || got1 != (ne1 ? ne1 : 1) || extra) {
        bn_fail(err, BITNET_E_FORMAT, "tensor '%s' has shape [%lld, %lld], expected [%lld, %lld]", name,
                (long long)t->ne[0], (long long)got1, (long long)ne0, (long long)(ne1 ? ne1 : 1));
        return -1;
    }
    return 1;
}

static bitnet_status get_vec(bitnet_model *m, const bn_tensor_source *src, const char *name, int64_t n, int optional,
                             bn_vec *out, bitnet_error *err) {
    bn_src_tensor t;
    int r = get_shaped(src, name, n, 0, optional, &t, err);
    if (r < 0) return err ? err->code : BITNET_E_FORMAT;
    if (r == 0) { memset(out, 0, sizeof *out); return BITNET_OK; }
    return bn_vec_from_data(m, name, t.type, t.data, n, out, err);
}

static bitnet_status get_ternary(bitnet_model *m, const bn_tensor_source *src, const char *name, int64_t cols,
                                 int64_t rows, bn_ternary *out, bitnet_error *err) {
    bn_src_tensor t;
    if (get_shaped(src, name, cols, rows, 0, &t, err) < 0) return err ? err->code : BITNET_E_FORMAT;
    bitnet_status rc = t.hf_packed ? bn_ternary_from_hf_packed(m, name, t.data, rows, cols, t.scale, out, err)
                                   : bn_ternary_from_ggml(m, name, t.type, t.data, rows, cols, out, err);
    if (rc) return rc;
    if (!t.hf_packed && t.scale != 1.0f) {
        if (out->row_scale) return bn_fail(err, BITNET_E_UNSUPPORTED, "tensor '%s': per-row scales and a .scale tensor", name);
        out->scale *= t.scale;
    }
    return BITNET_OK;
}

static bitnet_status get_dense(const bn_tensor_source *src, const char *name, int64_t cols, int64_t rows,
                               int optional, bn_dense *out, int *found, bitnet_error *err) {
    bn_src_tensor t;
    int r = get_shaped(src, name, cols, rows, optional, &t, err);
    *found = r == 1;
    if (r < 0) return err ? err->code : BITNET_E_FORMAT;
    if (r == 0) return BITNET_OK;
    switch (t.type) {
    case BN_GGML_F32: case BN_GGML_F16: case BN_GGML_BF16: case BN_GGML_Q8_0: case BN_GGML_Q4_0: case BN_GGML_Q6_K:
        break;
    default:
        return bn_fail(err, BITNET_E_UNSUPPORTED, "tensor '%s': type %s is not supported for embeddings/output",
                       name, bn_ggml_type_name(t.type));
    }
    uint64_t rb = bn_ggml_row_bytes(t.type, cols);
    if (!rb) return bn_fail(err, BITNET_E_FORMAT, "tensor '%s': row length %lld does not fit type %s", name,
                            (long long)cols, bn_ggml_type_name(t.type));
    *out = (bn_dense){.type = t.type, .rows = rows, .cols = cols, .data = t.data, .row_bytes = rb};
    return BITNET_OK;
}

static bitnet_status build_layer(bitnet_model *m, const bn_tensor_source *src, int il, bn_layer *L, bitnet_error *err) {
    const bn_hparams *hp = &m->hp;
    int64_t E = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim, KV = (int64_t)hp->n_head_kv * hp->head_dim;
    int64_t F = hp->n_ff;
    char name[96];
    bitnet_status rc;
#define NAME(s) (snprintf(name, sizeof name, "blk.%d." s ".weight", il), name)
    if ((rc = get_vec(m, src, NAME("attn_norm"), E, 0, &L->attn_norm, err))) return rc;
    if ((rc = get_vec(m, src, NAME("ffn_norm"), E, 0, &L->ffn_norm, err))) return rc;
    if (hp->has_sub_norms) {
        if ((rc = get_vec(m, src, NAME("attn_sub_norm"), Q, 0, &L->attn_sub_norm, err))) return rc;
        if ((rc = get_vec(m, src, NAME("ffn_sub_norm"), F, 0, &L->ffn_sub_norm, err))) return rc;
    }
    if ((rc = get_ternary(m, src, NAME("attn_q"), E, Q, &L->wq, err))) return rc;
    if ((rc = get_ternary(m, src, NAME("attn_k"), E, KV, &L->wk, err))) return rc;
    if ((rc = get_ternary(m, src, NAME("attn_v"), E, KV, &L->wv, err))) return rc;
    if ((rc = get_ternary(m, src, NAME("attn_output"), Q, E, &L->wo, err))) return rc;
    if ((rc = get_ternary(m, src, NAME("ffn_gate"), E, F, &L->w_gate, err))) return rc;
    if ((rc = get_ternary(m, src, NAME("ffn_up"), E, F, &L->w_up, err))) return rc;
    if ((rc = get_ternary(m, src, NAME("ffn_down"), F, E, &L->w_down, err))) return rc;
#undef NAME
    return BITNET_OK;
}

bitnet_status bn_model_build(bitnet_model *m, const bn_tensor_source *src, bitnet_error *err) {
    const bn_hparams *hp = &m->hp;
    int found = 0;
    bitnet_status rc = get_dense(src, "token_embd.weight", hp->n_embd, hp->n_vocab, 0, &m->tok_embd, &found, err);
    if (rc) return rc;
    /* An output.weight, when present, is the head — even for architectures
     * that are normally tied (bitnet.cpp ignores it; that is a bug). */
    if ((rc = get_dense(src, "output.weight", hp->n_embd, hp->n_vocab, 1, &m->output, &found, err))) return rc;
    m->tied_output = !found;
    if (!found) m->output = m->tok_embd;
    if ((rc = get_vec(m, src, "output_norm.weight", hp->n_embd, 0, &m->output_norm, err))) return rc;
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return bn_fail(err, BITNET_E_NOMEM, "out of memory");
    for (int il = 0; il < hp->n_layer; il++)
        if ((rc = build_layer(m, src, il, &m->layers[il], err))) return rc;
    return BITNET_OK;
}
