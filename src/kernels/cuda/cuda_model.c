/* The CUDA backend's prepare_model: walks the model and uploads every weight
 * once (see cuda_backend.h for the device representations). Written in C
 * because the model's structures (model/model.h) are C11.
 * Compiled only when the CUDA backend is built (BITNET_HAVE_CUDA). */
typedef int bn_cuda_model_unused; /* keeps this unit non-empty without CUDA */

#ifdef BITNET_HAVE_CUDA

#include <pthread.h>
#include <stdlib.h>

#include "format/ggml_types.h"
#include "kernels/cuda/cuda_backend.h"
#include "model/model.h"
#include "util/error.h"

/* Types the kernels read as they are. */
static int dense_native(uint32_t type) {
    return type == BN_GGML_F32 || type == BN_GGML_F16 || type == BN_GGML_BF16;
}

/* Decodes every row to f32 and stores it as F16 (round to nearest even). */
static bitnet_status upload_as_f16(bn_backend *be, bn_dense *w, bitnet_error *err) {
    size_t n = (size_t)w->rows * (size_t)w->cols;
    uint16_t *h = malloc(n * sizeof *h);
    float *row = malloc((size_t)w->cols * sizeof *row);
    bitnet_status rc = BITNET_OK;
    if (!h || !row) {
        rc = bn_fail(err, BITNET_E_NOMEM, "out of host memory converting a %lldx%lld %s tensor for the GPU",
                     (long long)w->rows, (long long)w->cols, bn_ggml_type_name(w->type));
    } else {
        for (int64_t r = 0; r < w->rows; r++) {
            bn_ggml_dequantize_row(w->type, w->data + r * w->row_bytes, row, w->cols, 0.0f);
            for (int64_t k = 0; k < w->cols; k++) h[r * w->cols + k] = bn_fp32_to_fp16(row[k]);
        }
        rc = bn_cuda_upload_dense_raw(be, BN_GGML_F16, h, w->rows, (uint64_t)w->cols * 2, &w->dev, err);
    }
    free(h);
    free(row);
    return rc;
}

bitnet_status bn_cuda_upload_dense(bn_backend *be, bn_dense *w, bitnet_error *err) {
    if (dense_native(w->type))
        return bn_cuda_upload_dense_raw(be, w->type, w->data, w->rows, w->row_bytes, &w->dev, err);
    return upload_as_f16(be, w, err);
}

static bitnet_status upload_layer(bn_backend *be, bn_layer *L, bitnet_error *err) {
    bn_vec *vecs[] = {&L->attn_norm, &L->attn_sub_norm, &L->ffn_norm, &L->ffn_sub_norm};
    bn_ternary *mats[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
    bitnet_status rc = BITNET_OK;
    for (size_t i = 0; i < sizeof vecs / sizeof vecs[0] && !rc; i++)
        if (vecs[i]->data) rc = bn_cuda_upload_vec(be, vecs[i], err);
    for (size_t i = 0; i < sizeof mats / sizeof mats[0] && !rc; i++) rc = bn_cuda_upload_ternary(be, mats[i], err);
    return rc;
}

static bitnet_status upload_model(bn_backend *be, bitnet_model *m, bitnet_error *err) {
    bitnet_status rc = bn_cuda_upload_dense(be, &m->tok_embd, err);
    if (!rc && m->output.data == m->tok_embd.data && m->output.type == m->tok_embd.type)
        m->output.dev = m->tok_embd.dev; /* tied head: one copy */
    else if (!rc)
        rc = bn_cuda_upload_dense(be, &m->output, err);
    if (!rc) rc = bn_cuda_upload_vec(be, &m->output_norm, err);
    for (int l = 0; l < m->hp.n_layer && !rc; l++) rc = upload_layer(be, &m->layers[l], err);
    return rc;
}

/* Serializes preparation: a context created while another one is still
 * uploading the same model must wait for the weights, not see half of them. */
static pthread_mutex_t prepare_lock = PTHREAD_MUTEX_INITIALIZER;

bitnet_status bn_cuda_prepare_model(bn_backend *be, struct bitnet_model *m, bitnet_error *err) {
    int fresh = 0;
    pthread_mutex_lock(&prepare_lock);
    bitnet_status rc = bn_cuda_weights_acquire(be, m, &fresh, err);
    if (!rc && fresh) rc = upload_model(be, m, err);
    if (!rc) rc = bn_cuda_reserve(be, m->hp.n_head, m->hp.head_dim, err);
    if (rc) bn_cuda_weights_release(be);
    pthread_mutex_unlock(&prepare_lock);
    return rc;
}

void bn_cuda_model_clear(struct bitnet_model *m) {
    m->tok_embd.dev = m->output.dev = m->output_norm.dev = NULL;
    for (int l = 0; l < m->hp.n_layer; l++) {
        bn_layer *L = &m->layers[l];
        L->attn_norm.dev = L->attn_sub_norm.dev = L->ffn_norm.dev = L->ffn_sub_norm.dev = NULL;
        L->wq.dev = L->wk.dev = L->wv.dev = L->wo.dev = L->w_gate.dev = L->w_up.dev = L->w_down.dev = NULL;
    }
}

#endif /* BITNET_HAVE_CUDA */
