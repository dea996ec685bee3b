/* Streaming GGUF v3 writer (little-endian). Facts: ../shared/docs/FORMATS.md §1.
 *
 * Usage, in this order:
 *   1. bn_gguf_writer_open        — output goes to "<path>.tmp"
 *   2. bn_gguf_writer_set_*       — metadata, written in call order
 *   3. bn_gguf_writer_add_tensor  — tensor infos, in the order their data follows
 *   4. bn_gguf_writer_begin_data  — writes header, metadata and tensor infos
 *   5. bn_gguf_writer_write       — tensor bytes, any chunking, tensor after
 *                                   tensor; alignment padding is automatic
 *   6. bn_gguf_writer_finish      — checks completeness, syncs, renames the
 *                                   temporary file to <path>
 * bn_gguf_writer_free at any point before finish deletes the temporary file,
 * so a failed or cancelled write never leaves a partial output behind.
 *
 * Only metadata and tensor infos are buffered in memory (a vocabulary of a few
 * MB); tensor data goes straight to the file.
 *
 * Errors are sticky: the first failing call records its message and every
 * later call returns the same status, so a run of set_* calls can be checked
 * once. bn_gguf_writer_error gives the message.
 *
 * Ownership: bn_gguf_writer_open returns a handle freed with bn_gguf_writer_free
 * (also after finish). Keys, names and values are copied. */
#ifndef BN_FORMAT_GGUF_WRITER_H
#define BN_FORMAT_GGUF_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "format/gguf.h"
#include "util/error.h"

#define BN_GGUF_WRITER_ALIGNMENT 32

typedef struct bn_gguf_writer bn_gguf_writer;

/* overwrite = 0: finish fails (and deletes the temporary file) if `path`
 * exists by then; open also fails at once when it exists already. */
bitnet_status bn_gguf_writer_open(bn_gguf_writer **out, const char *path, int overwrite, bitnet_error *err);
void bn_gguf_writer_free(bn_gguf_writer *w);

/* The path of the temporary file ("<path>.tmp"). */
const char *bn_gguf_writer_tmp_path(const bn_gguf_writer *w);

/* The sticky status and its message (BITNET_OK / ""). */
bitnet_status bn_gguf_writer_status(const bn_gguf_writer *w);
const bitnet_error *bn_gguf_writer_error(const bn_gguf_writer *w);

/* ------------------------------------------------------------ metadata -- */

/* A scalar of any non-string, non-array type; `value` points at a value of
 * that type in host representation (uint8_t, int8_t, ..., double; bool as
 * uint8_t 0/1). Keys must be unique, non-empty and shorter than 65536 bytes. */
bitnet_status bn_gguf_writer_set_scalar(bn_gguf_writer *w, const char *key, bn_gguf_vtype type, const void *value);
bitnet_status bn_gguf_writer_set_u32(bn_gguf_writer *w, const char *key, uint32_t v);
bitnet_status bn_gguf_writer_set_i32(bn_gguf_writer *w, const char *key, int32_t v);
bitnet_status bn_gguf_writer_set_f32(bn_gguf_writer *w, const char *key, float v);
bitnet_status bn_gguf_writer_set_bool(bn_gguf_writer *w, const char *key, int v);
bitnet_status bn_gguf_writer_set_str(bn_gguf_writer *w, const char *key, const char *s);
bitnet_status bn_gguf_writer_set_strn(bn_gguf_writer *w, const char *key, const char *s, size_t len);

/* An array of n fixed-size numeric elements (host representation). */
bitnet_status bn_gguf_writer_set_arr(bn_gguf_writer *w, const char *key, bn_gguf_vtype elem_type, const void *data,
                                     uint64_t n);
/* An array of n strings; lens may be NULL (strings NUL-terminated). */
bitnet_status bn_gguf_writer_set_arr_str(bn_gguf_writer *w, const char *key, const char *const *strs,
                                         const size_t *lens, uint64_t n);
/* An array whose n elements are already GGUF-encoded in `bytes` (used to copy
 * an array, nested ones included, from another GGUF file unchanged). */
bitnet_status bn_gguf_writer_set_arr_raw(bn_gguf_writer *w, const char *key, uint32_t elem_type, uint64_t n,
                                         const void *bytes, size_t n_bytes);

/* ------------------------------------------------------------- tensors -- */

/* Declares a tensor (ne[0] innermost, n_dims 1..4). Its byte size follows
 * bn_ggml_tensor_bytes, except I2_S, which is n/4 + 32 for any n that is a
 * multiple of 128 (the layout is defined on the flattened tensor). */
bitnet_status bn_gguf_writer_add_tensor(bn_gguf_writer *w, const char *name, uint32_t type, int n_dims,
                                        const int64_t *ne);
/* Byte size of the i-th declared tensor. */
uint64_t bn_gguf_writer_tensor_bytes(const bn_gguf_writer *w, int i);
int bn_gguf_writer_n_tensors(const bn_gguf_writer *w);

bitnet_status bn_gguf_writer_begin_data(bn_gguf_writer *w);

/* Appends n bytes of tensor data; may span tensor boundaries. Writing more
 * than the declared tensors hold is an error. */
bitnet_status bn_gguf_writer_write(bn_gguf_writer *w, const void *data, size_t n);
/* Appends n zero bytes of tensor data. */
bitnet_status bn_gguf_writer_write_zeros(bn_gguf_writer *w, size_t n);

/* Bytes of tensor data written so far / declared in all. */
uint64_t bn_gguf_writer_data_written(const bn_gguf_writer *w);
uint64_t bn_gguf_writer_data_total(const bn_gguf_writer *w);

bitnet_status bn_gguf_writer_finish(bn_gguf_writer *w);

#endif
