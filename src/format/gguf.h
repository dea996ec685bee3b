/* GGUF reader (versions 2 and 3, little-endian).
 *
 * The whole file is mapped (or read) once; every key, string, array and tensor
 * record is validated against the file size when the file is opened, so that
 * the accessors below never read out of bounds and never fail on structure.
 * Strings returned are views into the file: NOT NUL-terminated, valid until
 * bn_gguf_close. Facts: ../shared/docs/FORMATS.md §1.
 *
 * Ownership: bn_gguf_open* returns a handle the caller frees with bn_gguf_close. */
#ifndef BN_FORMAT_GGUF_H
#define BN_FORMAT_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

typedef enum bn_gguf_vtype {
    BN_GGUF_UINT8 = 0, BN_GGUF_INT8 = 1, BN_GGUF_UINT16 = 2, BN_GGUF_INT16 = 3,
    BN_GGUF_UINT32 = 4, BN_GGUF_INT32 = 5, BN_GGUF_FLOAT32 = 6, BN_GGUF_BOOL = 7,
    BN_GGUF_STRING = 8, BN_GGUF_ARRAY = 9, BN_GGUF_UINT64 = 10, BN_GGUF_INT64 = 11,
    BN_GGUF_FLOAT64 = 12
} bn_gguf_vtype;

typedef struct bn_str {
    const char *ptr;
    uint64_t len;
} bn_str;

/* 1 when s equals the NUL-terminated c string. */
int bn_str_eq(bn_str s, const char *c);

typedef struct bn_gguf_kv {
    bn_str key;
    uint32_t type;      /* bn_gguf_vtype */
    uint32_t arr_type;  /* element type when type == ARRAY */
    uint64_t arr_n;     /* element count when type == ARRAY */
    const uint8_t *data;/* first byte of the value (for ARRAY: of the first element) */
} bn_gguf_kv;

#define BN_GGUF_MAX_DIMS 4

typedef struct bn_gguf_tensor {
    bn_str name;
    uint32_t n_dims;
    int64_t ne[BN_GGUF_MAX_DIMS]; /* unused dims are 1 */
    int64_t n_elems;
    uint32_t type;                /* ggml type id (format/ggml_types.h) */
    uint64_t offset;              /* relative to the data section */
    uint64_t n_bytes;             /* bn_ggml_tensor_bytes */
    const uint8_t *data;          /* start of the tensor's bytes in the file */
} bn_gguf_tensor;

typedef struct bn_gguf bn_gguf;

bitnet_status bn_gguf_open(bn_gguf **out, const char *path, int use_mmap, bitnet_error *err);
/* Parses a buffer the caller keeps alive until bn_gguf_close (tests, fuzzing). */
bitnet_status bn_gguf_open_memory(bn_gguf **out, const void *data, size_t size, bitnet_error *err);
void bn_gguf_close(bn_gguf *g);

uint32_t bn_gguf_version(const bn_gguf *g);
uint32_t bn_gguf_alignment(const bn_gguf *g);
uint64_t bn_gguf_file_size(const bn_gguf *g);

int64_t bn_gguf_n_kv(const bn_gguf *g);
const bn_gguf_kv *bn_gguf_kv_at(const bn_gguf *g, int64_t i);
const bn_gguf_kv *bn_gguf_find_kv(const bn_gguf *g, const char *key); /* NULL if absent */

/* Typed getters. Return 1 and set *out when the key exists with a compatible
 * type, 0 when it is absent, -1 when it has an incompatible type or the value
 * does not fit (e.g. a negative int for a u32, a u64 above UINT32_MAX).
 * Integers accept every GGUF integer type; floats accept F32 and F64. */
int bn_gguf_get_u32(const bn_gguf *g, const char *key, uint32_t *out);
int bn_gguf_get_i64(const bn_gguf *g, const char *key, int64_t *out);
int bn_gguf_get_f32(const bn_gguf *g, const char *key, float *out);
int bn_gguf_get_bool(const bn_gguf *g, const char *key, int *out);
int bn_gguf_get_str(const bn_gguf *g, const char *key, bn_str *out);

/* Array access. bn_gguf_get_arr: 1 and the element type/count when `key` is an
 * array, 0 absent, -1 not an array. Elements of fixed-size numeric types are
 * read with bn_gguf_arr_*; string elements by index in O(1). i must be < n. */
int bn_gguf_get_arr(const bn_gguf *g, const char *key, uint32_t *elem_type, uint64_t *n);
bn_str bn_gguf_arr_str(const bn_gguf *g, const bn_gguf_kv *kv, uint64_t i);
float bn_gguf_arr_f32(const bn_gguf_kv *kv, uint64_t i);   /* F32 arrays */
int64_t bn_gguf_arr_int(const bn_gguf_kv *kv, uint64_t i); /* any integer array */

/* Byte length of kv's value in the file, starting at kv->data (for arrays:
 * the encoded elements after the element type and count, nested arrays
 * included), e.g. to copy an array unchanged with bn_gguf_writer_set_arr_raw. */
uint64_t bn_gguf_kv_value_bytes(const bn_gguf *g, const bn_gguf_kv *kv);

/* File offset of the tensor data section (tensor offsets are relative to it). */
uint64_t bn_gguf_data_offset(const bn_gguf *g);

int64_t bn_gguf_n_tensors(const bn_gguf *g);
const bn_gguf_tensor *bn_gguf_tensor_at(const bn_gguf *g, int64_t i);
const bn_gguf_tensor *bn_gguf_find_tensor(const bn_gguf *g, const char *name); /* NULL if absent */

#endif
