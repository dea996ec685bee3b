/* Turning stored weights into the engine's representation (kernels/tensors.h).
 * All functions check shapes against the model's hyperparameters and return a
 * message naming the tensor on mismatch. Repacked data lives in the model arena. */
#ifndef BN_MODEL_WEIGHTS_H
#define BN_MODEL_WEIGHTS_H

#include "model/model.h"

/* A ternary matrix [rows x cols] from a GGUF tensor of any ternary type
 * (I2_S in place; TQ1_0/TQ2_0 repacked) or a float type (F32/F16/BF16:
 * exactly-ternary values are repacked losslessly; other values are ternarized
 * with the BitNet absmean rule). `data` is the tensor's bytes. */
bitnet_status bn_ternary_from_ggml(bitnet_model *m, const char *name, uint32_t type, const uint8_t *data,
                                   int64_t rows, int64_t cols, bn_ternary *out,
                                   bitnet_error *err);

/* A ternary matrix from a Hugging Face packed uint8 weight of shape
 * (rows/4, cols): packed row r holds rows r + i·rows/4 in bits 2i..2i+1 as
 * code = w + 1. scale is the real-valued multiplier. */
bitnet_status bn_ternary_from_hf_packed(bitnet_model *m, const char *name, const uint8_t *packed, int64_t rows,
                                        int64_t cols, float scale, bn_ternary *out, bitnet_error *err);

/* A ternary matrix from float values (f32), ternarizing as bn_ternary_from_ggml does. */
bitnet_status bn_ternary_from_f32(bitnet_model *m, const char *name, const float *w, int64_t rows, int64_t cols,
                                  bn_ternary *out, bitnet_error *err);

/* An f32 vector; converted into the arena unless `type` is F32 and aligned. */
bitnet_status bn_vec_from_data(bitnet_model *m, const char *name, uint32_t type, const uint8_t *data, int64_t n,
                               bn_vec *out, bitnet_error *err);

#endif
