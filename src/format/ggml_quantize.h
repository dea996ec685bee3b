/* Encoders: float rows and ternary codes → ggml tensor bytes, the inverse of
 * bn_ggml_dequantize_row / bn_ternary_code (format/ggml_types.h).
 *
 * Layouts follow ../shared/docs/FORMATS.md §2: TQ1_0/TQ2_0/Q4_0/Q8_0/Q6_K
 * blocks as in llama.cpp's ggml-common.h, I2_S as microsoft/BitNet's x86
 * layout (128-element blocks, one f32 scale after the packed data). The
 * ternary encoders write the same bytes llama.cpp's reference quantizers
 * write for a tensor whose values are exactly code·scale (the block scale of
 * an all-zero block is 0, as absmax gives). */
#ifndef BN_FORMAT_GGML_QUANTIZE_H
#define BN_FORMAT_GGML_QUANTIZE_H

#include <stddef.h>
#include <stdint.h>

/* Bytes of the I2_S tail that follows the packed codes: the f32 scale then
 * 28 zero bytes. */
#define BN_I2S_TRAILER_BYTES 32

/* 1 when bn_quantize_row can produce `type` (F32, F16, BF16, Q4_0, Q8_0, Q6_K,
 * TQ1_0, TQ2_0). I2_S has no float encoder: its scale is tensor-wide. */
int bn_quantize_supported(uint32_t type);

/* Encodes ne0 floats (a multiple of the type's block size) into dst, which
 * holds bn_ggml_row_bytes(type, ne0) bytes. Returns the bytes written, or 0
 * for an unsupported type / bad length. TQ types use the block's absmax as
 * its scale and round x/d to the nearest trit, like llama.cpp. */
size_t bn_quantize_row(uint32_t type, const float *src, void *dst, int64_t ne0);

/* Encodes one row of ternary codes (c = w + 1 ∈ {0,1,2}) with real value
 * (c - 1)·scale into a TQ1_0 or TQ2_0 row (ne0 a multiple of 256), or an
 * I2_S row (ne0 a multiple of 128; the tensor's trailer is written apart with
 * bn_i2s_trailer). Returns the bytes written, 0 on a bad type / length. */
size_t bn_encode_ternary_row(uint32_t type, const uint8_t *codes, float scale, void *dst, int64_t ne0);

/* Packs 128 codes into one 32-byte I2_S block (byte b: codes b, 32+b, 64+b,
 * 96+b at bits 7-6, 5-4, 3-2, 1-0). */
void bn_i2s_pack_block(const uint8_t codes[128], uint8_t out[32]);

/* The I2_S tail: scale as little-endian f32, then zeros. */
void bn_i2s_trailer(float scale, uint8_t out[BN_I2S_TRAILER_BYTES]);

#endif
