/* Assembling a model's weights from a tensor source, shared by the GGUF and
 * Hugging Face loaders. Tensors are asked for by their GGUF names
 * ("blk.3.attn_q.weight"); each loader maps those names onto its file. */
#ifndef BN_MODEL_BUILD_H
#define BN_MODEL_BUILD_H

#include "model/model.h"

typedef struct bn_src_tensor {
    uint32_t type;        /* ggml type id of `data` (ignored when hf_packed) */
    int n_dims;
    int64_t ne[4];        /* logical shape, ne[0] contiguous (GGUF order) */
    const uint8_t *data;
    int hf_packed;        /* 1: HF packed ternary uint8 (rows/4, cols) */
    float scale;          /* hf_packed: real multiplier; otherwise an extra
                             multiplier for ternary weights (1 = none) */
} bn_src_tensor;

typedef struct bn_tensor_source {
    void *ctx;
    /* 1 and *out when found, 0 when absent, -1 with err set on a bad tensor. */
    int (*find)(void *ctx, const char *gguf_name, bn_src_tensor *out, bitnet_error *err);
} bn_tensor_source;

/* Describes the token embedding, output head, norms and every layer from src,
 * checking each shape against m->hp (which must be set and validated). */
bitnet_status bn_model_build(bitnet_model *m, const bn_tensor_source *src, bitnet_error *err);

#endif
