/* Safetensors reader: one `model.safetensors`, or the shards listed by a
 * `model.safetensors.index.json`. Files are mapped; the JSON header of each is
 * validated (dtype known, shape × dtype size == byte span, spans inside the
 * file, no overlaps, no duplicate names across shards) when opened.
 *
 * Ownership: bn_safetensors_open* returns a handle freed with bn_safetensors_close;
 * tensor records and data pointers live until then. */
#ifndef BN_FORMAT_SAFETENSORS_H
#define BN_FORMAT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

typedef enum bn_st_dtype {
    BN_ST_BOOL, BN_ST_U8, BN_ST_I8, BN_ST_I16, BN_ST_U16, BN_ST_F16, BN_ST_BF16,
    BN_ST_I32, BN_ST_U32, BN_ST_F32, BN_ST_F64, BN_ST_I64, BN_ST_U64
} bn_st_dtype;

#define BN_ST_MAX_DIMS 8

typedef struct bn_st_tensor {
    const char *name;              /* NUL-terminated, owned by the handle */
    bn_st_dtype dtype;
    int n_dims;
    int64_t shape[BN_ST_MAX_DIMS]; /* PyTorch order: shape[n_dims-1] is contiguous */
    int64_t n_elems;
    const uint8_t *data;
    uint64_t n_bytes;
} bn_st_tensor;

typedef struct bn_safetensors bn_safetensors;

/* dir holds model.safetensors or model.safetensors.index.json (index wins). */
bitnet_status bn_safetensors_open_dir(bn_safetensors **out, const char *dir, int use_mmap, bitnet_error *err);
bitnet_status bn_safetensors_open_file(bn_safetensors **out, const char *path, int use_mmap, bitnet_error *err);
/* Parses a caller-owned buffer (tests, fuzzing). */
bitnet_status bn_safetensors_open_memory(bn_safetensors **out, const void *data, size_t size, bitnet_error *err);
void bn_safetensors_close(bn_safetensors *st);

int bn_safetensors_n(const bn_safetensors *st);
const bn_st_tensor *bn_safetensors_at(const bn_safetensors *st, int i);
const bn_st_tensor *bn_safetensors_find(const bn_safetensors *st, const char *name); /* NULL if absent */
uint64_t bn_safetensors_total_bytes(const bn_safetensors *st); /* sum of file sizes */

const char *bn_st_dtype_name(bn_st_dtype t); /* "BF16", ... */
int bn_st_dtype_size(bn_st_dtype t);         /* bytes per element */

#endif
