/* The engine's run-time weight representations — independent of any file format.
 *
 * bn_ternary: a ternary matrix (rows = output features, cols = input features)
 *   stored as 2-bit codes c = w + 1 ∈ {0,1,2}, row-major, cols/4 bytes a row,
 *   in blocks of 128 weights → 32 bytes: byte b of a block holds weight b in
 *   bits 7-6, weight 32+b in bits 5-4, 64+b in bits 3-2 and 96+b in bits 1-0.
 *   This is bitnet.cpp's x86 I2_S layout, chosen so that the official I2_S
 *   files are used in place (zero-copy); other formats are repacked once at
 *   load. One 32-byte block expands, by shifts and masks, to four runs of 32
 *   consecutive codes — exactly what a 32-lane byte multiply-add wants.
 *   The real value of weight (r, k) is (c - 1) * scale_r where scale_r is
 *   row_scale[r] when row_scale is not NULL, else `scale`.
 *
 * bn_dense: a float-like matrix (embeddings, output head) kept in its file type
 *   (F32, F16, BF16, Q8_0, Q4_0, Q6_K), rows of `cols` elements.
 *
 * bn_vec: an f32 vector (norm weights).
 *
 * `dev` fields belong to a non-CPU backend (its copy of the tensor); the CPU
 * backend leaves them NULL. */
#ifndef BN_KERNELS_TENSORS_H
#define BN_KERNELS_TENSORS_H

#include <stddef.h>
#include <stdint.h>

#define BN_TERNARY_BLOCK 128

typedef struct bn_ternary {
    int64_t rows, cols;     /* cols % BN_TERNARY_BLOCK == 0 */
    const uint8_t *codes;   /* rows * cols / 4 bytes */
    float scale;
    const float *row_scale; /* NULL: every row uses `scale` */
    void *dev;
} bn_ternary;

typedef struct bn_dense {
    uint32_t type;          /* ggml type id (format/ggml_types.h) */
    int64_t rows, cols;
    const uint8_t *data;
    uint64_t row_bytes;
    void *dev;
} bn_dense;

typedef struct bn_vec {
    int64_t n;
    const float *data;
    void *dev;
} bn_vec;

/* Per-token int8 activations: for token t, q[t*cols .. +cols), its scale
 * (127 / max|x|) and the sum of its q (used by the "codes minus one" trick). */
typedef struct bn_qact {
    int8_t *q;
    float *scale;
    int32_t *sum;
} bn_qact;

static inline int bn_ternary_get_code(const bn_ternary *w, int64_t r, int64_t k) {
    const uint8_t *blk = w->codes + r * (w->cols / 4) + (k / 128) * 32;
    int j = (int)(k % 128);
    return (blk[j % 32] >> (6 - 2 * (j / 32))) & 3;
}

static inline float bn_ternary_row_scale(const bn_ternary *w, int64_t r) {
    return w->row_scale ? w->row_scale[r] : w->scale;
}

#endif
