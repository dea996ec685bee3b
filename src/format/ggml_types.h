/* ggml tensor types as stored in GGUF files: ids, block geometry, byte sizes,
 * and decoding of rows to float32.
 *
 * Block layouts follow ../shared/docs/FORMATS.md §2 (ggml / llama.cpp /
 * microsoft BitNet). I2_S is special: one f32 scale for the whole tensor,
 * stored after the packed codes, so its byte size is n/4 + 32 rather than a
 * multiple of a block size. */
#ifndef BN_FORMAT_GGML_TYPES_H
#define BN_FORMAT_GGML_TYPES_H

#include <stddef.h>
#include <stdint.h>

typedef enum bn_ggml_type {
    BN_GGML_F32 = 0,
    BN_GGML_F16 = 1,
    BN_GGML_Q4_0 = 2,
    BN_GGML_Q8_0 = 8,
    BN_GGML_Q6_K = 14,
    BN_GGML_BF16 = 30,
    BN_GGML_TQ1_0 = 34,
    BN_GGML_TQ2_0 = 35,
    BN_GGML_I2_S = 36
} bn_ggml_type;

/* 1 when bitnet.c can read this type id. */
int bn_ggml_type_supported(uint32_t type);

/* "F32", "TQ2_0", ...; for an unsupported id a static "type N (unknown|name)"
 * string naming it as well as we can (e.g. "Q4_K (12)"). Never NULL. */
const char *bn_ggml_type_name(uint32_t type);

/* Elements per block and bytes per block (I2_S: 128 / 32, its per-tensor
 * trailer counted separately by bn_ggml_tensor_bytes). 0 for unsupported. */
int bn_ggml_block_elems(uint32_t type);
int bn_ggml_block_bytes(uint32_t type);

/* Bytes of one row of ne0 elements (I2_S: ne0/4, trailer excluded).
 * 0 when ne0 is not a multiple of the block size or the type is unsupported. */
uint64_t bn_ggml_row_bytes(uint32_t type, int64_t ne0);

/* Total bytes of a tensor with n_elems elements whose rows have ne0 elements
 * (I2_S: n/4 + 32). Returns 0 on overflow / bad geometry. */
uint64_t bn_ggml_tensor_bytes(uint32_t type, int64_t ne0, int64_t n_elems);

/* Decodes one row of ne0 elements starting at `row` into dst.
 * For I2_S the caller passes the tensor-wide scale (read from the trailer with
 * bn_i2s_scale); other types ignore `i2s_scale`. ne0 must be a multiple of the
 * block size (callers check with bn_ggml_row_bytes first). */
void bn_ggml_dequantize_row(uint32_t type, const void *row, float *dst, int64_t ne0, float i2s_scale);

/* The I2_S per-tensor scale: the f32 at byte n_elems/4 of the tensor data. */
float bn_i2s_scale(const void *tensor_data, int64_t n_elems);

/* Ternary code of element i (0..ne0-1) of one row, as w + 1 ∈ {0,1,2}
 * (3 = invalid for the 2-bit types). Used to repack ternary types into the
 * engine's own layout without going through floats. For TQ1_0/TQ2_0 the
 * block scale is returned through *block_scale for the block holding i. */
int bn_ternary_code(uint32_t type, const void *row, int64_t i, float *block_scale);

/* IEEE half / bfloat16 conversions (scalar, exact). */
float bn_fp16_to_fp32(uint16_t h);
uint16_t bn_fp32_to_fp16(float f);   /* round to nearest even */
float bn_bf16_to_fp32(uint16_t h);
uint16_t bn_fp32_to_bf16(float f);   /* round to nearest even, NaN kept quiet */

#endif
