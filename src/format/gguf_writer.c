#include "format/gguf_writer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format/ggml_types.h"

/* A growable byte buffer for the parts of the header that must be complete
 * before the first byte goes to the file (their counts come first). */
typedef struct bytebuf {
    uint8_t *p;
    size_t n, cap;
} bytebuf;

typedef struct tensor_rec {
    char *name;
    uint64_t n_bytes;
} tensor_rec;

struct bn_gguf_writer {
    char *path, *tmp;
    FILE *f;
    char *iobuf;
    int overwrite;
    bitnet_status status;
    bitnet_error err;

    bytebuf meta, infos;
    char **keys;
    int64_t n_kv;
    tensor_rec *tensors;
    int n_tensors;
    uint64_t data_total;    /* padded size of the data section */

    int data_started, finished;
    int cur;                /* tensor being written */
    uint64_t cur_done;      /* its bytes written so far */
    uint64_t data_written;  /* unpadded tensor bytes written */
};

static uint64_t pad_to(uint64_t x, uint64_t a) { return x + (a - x % a) % a; }

/* Records the first error; later ones keep the first message. */
static bitnet_status fail(bn_gguf_writer *w, bitnet_status code, const char *fmt, const char *arg) {
    if (w->status == BITNET_OK) {
        char msg[400];
        snprintf(msg, sizeof msg, fmt, arg ? arg : "");
        w->status = bn_fail(&w->err, code, "%s: %s", w->path, msg);
    }
    return w->status;
}

static bitnet_status io_fail(bn_gguf_writer *w, const char *what) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s: %s", what, strerror(errno));
    return fail(w, BITNET_E_IO, "%s", msg);
}

static int buf_reserve(bytebuf *b, size_t more) {
    if (more <= b->cap - b->n) return 1;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->n < more) {
        if (cap > SIZE_MAX / 2) return 0;
        cap *= 2;
    }
    uint8_t *p = realloc(b->p, cap);
    if (!p) return 0;
    b->p = p;
    b->cap = cap;
    return 1;
}

/* Appends v as `size` little-endian bytes. */
static int buf_le(bytebuf *b, uint64_t v, int size) {
    if (!buf_reserve(b, (size_t)size)) return 0;
    for (int i = 0; i < size; i++) b->p[b->n++] = (uint8_t)(v >> (8 * i));
    return 1;
}

static int buf_bytes(bytebuf *b, const void *p, size_t n) {
    if (!buf_reserve(b, n)) return 0;
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
    return 1;
}

static int buf_str(bytebuf *b, const char *s, size_t len) { return buf_le(b, len, 8) && buf_bytes(b, s, len); }

/* Size in bytes of a fixed-size GGUF value type; 0 for STRING/ARRAY/unknown. */
static int vtype_size(uint32_t t) {
    switch (t) {
    case BN_GGUF_UINT8: case BN_GGUF_INT8: case BN_GGUF_BOOL: return 1;
    case BN_GGUF_UINT16: case BN_GGUF_INT16: return 2;
    case BN_GGUF_UINT32: case BN_GGUF_INT32: case BN_GGUF_FLOAT32: return 4;
    case BN_GGUF_UINT64: case BN_GGUF_INT64: case BN_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

/* Host value of a fixed-size type → its bits, for little-endian output. */
static uint64_t host_bits(const void *p, int size) {
    uint8_t u8; uint16_t u16; uint32_t u32; uint64_t u64;
    switch (size) {
    case 1: memcpy(&u8, p, 1); return u8;
    case 2: memcpy(&u16, p, 2); return u16;
    case 4: memcpy(&u32, p, 4); return u32;
    default: memcpy(&u64, p, 8); return u64;
    }
}

bitnet_status bn_gguf_writer_open(bn_gguf_writer **out, const char *path, int overwrite, bitnet_error *err) {
    *out = NULL;
    if (!path || !*path) return bn_fail(err, BITNET_E_INVALID_ARG, "no output path");
    if (!overwrite && access(path, F_OK) == 0)
        return bn_fail(err, BITNET_E_IO, "%s: file exists (use --force to overwrite)", path);
    bn_gguf_writer *w = calloc(1, sizeof *w);
    if (!w) return bn_fail(err, BITNET_E_NOMEM, "out of memory");
    size_t len = strlen(path);
    w->path = malloc(len + 1);
    w->tmp = malloc(len + 5);
    w->iobuf = malloc(1 << 22);
    if (!w->path || !w->tmp || !w->iobuf) {
        bn_gguf_writer_free(w);
        return bn_fail(err, BITNET_E_NOMEM, "out of memory");
    }
    memcpy(w->path, path, len + 1);
    snprintf(w->tmp, len + 5, "%s.tmp", path);
    w->overwrite = overwrite;
    w->f = fopen(w->tmp, "wb");
    if (!w->f) {
        bitnet_status rc = bn_fail(err, BITNET_E_IO, "%s: cannot create: %s", w->tmp, strerror(errno));
        bn_gguf_writer_free(w);
        return rc;
    }
    setvbuf(w->f, w->iobuf, _IOFBF, 1 << 22);
    *out = w;
    return BITNET_OK;
}

void bn_gguf_writer_free(bn_gguf_writer *w) {
    if (!w) return;
    if (w->f) {
        fclose(w->f);
        if (!w->finished) remove(w->tmp);
    }
    for (int64_t i = 0; i < w->n_kv; i++) free(w->keys[i]);
    for (int i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->keys);
    free(w->tensors);
    free(w->meta.p);
    free(w->infos.p);
    free(w->iobuf);
    free(w->path);
    free(w->tmp);
    free(w);
}

const char *bn_gguf_writer_tmp_path(const bn_gguf_writer *w) { return w->tmp; }
bitnet_status bn_gguf_writer_status(const bn_gguf_writer *w) { return w->status; }
const bitnet_error *bn_gguf_writer_error(const bn_gguf_writer *w) { return &w->err; }

/* --------------------------------------------------------------- metadata -- */

/* Checks the key and writes it and the value type. */
static bitnet_status begin_kv(bn_gguf_writer *w, const char *key, uint32_t type) {
    if (w->status) return w->status;
    if (w->data_started) return fail(w, BITNET_E_INTERNAL, "metadata key '%s' set after the tensor data began", key);
    size_t len = key ? strlen(key) : 0;
    if (len == 0 || len > 65535) return fail(w, BITNET_E_INVALID_ARG, "bad metadata key '%s'", key);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)key[i] < 0x21 || (unsigned char)key[i] > 0x7E)
            return fail(w, BITNET_E_INVALID_ARG, "metadata key '%s' is not printable ASCII", key);
    for (int64_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->keys[i], key)) return fail(w, BITNET_E_INVALID_ARG, "duplicate metadata key '%s'", key);
    char **keys = realloc(w->keys, (size_t)(w->n_kv + 1) * sizeof *keys);
    if (!keys) return fail(w, BITNET_E_NOMEM, "out of memory%s", "");
    w->keys = keys;
    if (!(w->keys[w->n_kv] = malloc(len + 1))) return fail(w, BITNET_E_NOMEM, "out of memory%s", "");
    memcpy(w->keys[w->n_kv++], key, len + 1);
    if (!buf_str(&w->meta, key, len) || !buf_le(&w->meta, type, 4)) return fail(w, BITNET_E_NOMEM, "out of memory%s", "");
    return BITNET_OK;
}

static bitnet_status oom(bn_gguf_writer *w) { return fail(w, BITNET_E_NOMEM, "out of memory%s", ""); }

bitnet_status bn_gguf_writer_set_scalar(bn_gguf_writer *w, const char *key, bn_gguf_vtype type, const void *value) {
    int size = vtype_size(type);
    if (!size) return fail(w, BITNET_E_INTERNAL, "metadata key '%s': not a scalar type", key);
    if (type == BN_GGUF_BOOL && *(const uint8_t *)value > 1)
        return fail(w, BITNET_E_INVALID_ARG, "metadata key '%s': bool must be 0 or 1", key);
    if (begin_kv(w, key, type)) return w->status;
    if (!buf_le(&w->meta, host_bits(value, size), size)) return oom(w);
    return BITNET_OK;
}

bitnet_status bn_gguf_writer_set_u32(bn_gguf_writer *w, const char *key, uint32_t v) {
    return bn_gguf_writer_set_scalar(w, key, BN_GGUF_UINT32, &v);
}
bitnet_status bn_gguf_writer_set_i32(bn_gguf_writer *w, const char *key, int32_t v) {
    return bn_gguf_writer_set_scalar(w, key, BN_GGUF_INT32, &v);
}
bitnet_status bn_gguf_writer_set_f32(bn_gguf_writer *w, const char *key, float v) {
    return bn_gguf_writer_set_scalar(w, key, BN_GGUF_FLOAT32, &v);
}
bitnet_status bn_gguf_writer_set_bool(bn_gguf_writer *w, const char *key, int v) {
    uint8_t b = v ? 1 : 0;
    return bn_gguf_writer_set_scalar(w, key, BN_GGUF_BOOL, &b);
}

bitnet_status bn_gguf_writer_set_strn(bn_gguf_writer *w, const char *key, const char *s, size_t len) {
    if (begin_kv(w, key, BN_GGUF_STRING)) return w->status;
    if (!buf_str(&w->meta, s, len)) return oom(w);
    return BITNET_OK;
}

bitnet_status bn_gguf_writer_set_str(bn_gguf_writer *w, const char *key, const char *s) {
    return bn_gguf_writer_set_strn(w, key, s, strlen(s));
}

bitnet_status bn_gguf_writer_set_arr(bn_gguf_writer *w, const char *key, bn_gguf_vtype elem_type, const void *data,
                                     uint64_t n) {
    int size = vtype_size(elem_type);
    if (!size) return fail(w, BITNET_E_INTERNAL, "metadata key '%s': not a numeric element type", key);
    if (begin_kv(w, key, BN_GGUF_ARRAY)) return w->status;
    if (!buf_le(&w->meta, elem_type, 4) || !buf_le(&w->meta, n, 8) || !buf_reserve(&w->meta, (size_t)(n * size)))
        return oom(w);
    const uint8_t *p = data;
    for (uint64_t i = 0; i < n; i++) buf_le(&w->meta, host_bits(p + i * size, size), size);
    return BITNET_OK;
}

bitnet_status bn_gguf_writer_set_arr_str(bn_gguf_writer *w, const char *key, const char *const *strs,
                                         const size_t *lens, uint64_t n) {
    if (begin_kv(w, key, BN_GGUF_ARRAY)) return w->status;
    if (!buf_le(&w->meta, BN_GGUF_STRING, 4) || !buf_le(&w->meta, n, 8)) return oom(w);
    for (uint64_t i = 0; i < n; i++)
        if (!buf_str(&w->meta, strs[i], lens ? lens[i] : strlen(strs[i]))) return oom(w);
    return BITNET_OK;
}

bitnet_status bn_gguf_writer_set_arr_raw(bn_gguf_writer *w, const char *key, uint32_t elem_type, uint64_t n,
                                         const void *bytes, size_t n_bytes) {
    if (begin_kv(w, key, BN_GGUF_ARRAY)) return w->status;
    if (!buf_le(&w->meta, elem_type, 4) || !buf_le(&w->meta, n, 8) || !buf_bytes(&w->meta, bytes, n_bytes))
        return oom(w);
    return BITNET_OK;
}

/* ---------------------------------------------------------------- tensors -- */

static uint64_t tensor_bytes(uint32_t type, int64_t ne0, int64_t n) {
    if (type == BN_GGML_I2_S) return n > 0 && n % 128 == 0 ? (uint64_t)n / 4 + 32 : 0;
    return bn_ggml_tensor_bytes(type, ne0, n);
}

bitnet_status bn_gguf_writer_add_tensor(bn_gguf_writer *w, const char *name, uint32_t type, int n_dims,
                                        const int64_t *ne) {
    if (w->status) return w->status;
    if (w->data_started) return fail(w, BITNET_E_INTERNAL, "tensor '%s' added after the tensor data began", name);
    size_t len = strlen(name);
    if (len == 0 || len >= 64) return fail(w, BITNET_E_INVALID_ARG, "tensor name '%s' must have 1..63 bytes", name);
    if (n_dims < 1 || n_dims > BN_GGUF_MAX_DIMS) return fail(w, BITNET_E_INVALID_ARG, "tensor '%s': bad dimension count", name);
    for (int i = 0; i < w->n_tensors; i++)
        if (!strcmp(w->tensors[i].name, name)) return fail(w, BITNET_E_INVALID_ARG, "duplicate tensor '%s'", name);
    int64_t n = 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] <= 0 || n > INT64_MAX / ne[d]) return fail(w, BITNET_E_INVALID_ARG, "tensor '%s': bad shape", name);
        n *= ne[d];
    }
    uint64_t nb = tensor_bytes(type, ne[0], n);
    if (!nb) return fail(w, BITNET_E_INVALID_ARG, "tensor '%s': its shape does not fit its type", name);
    tensor_rec *t = realloc(w->tensors, (size_t)(w->n_tensors + 1) * sizeof *t);
    if (!t) return oom(w);
    w->tensors = t;
    char *copy = malloc(len + 1);
    if (!copy) return oom(w);
    memcpy(copy, name, len + 1);
    w->tensors[w->n_tensors++] = (tensor_rec){.name = copy, .n_bytes = nb};
    int ok = buf_str(&w->infos, name, len) && buf_le(&w->infos, (uint64_t)n_dims, 4);
    for (int d = 0; d < n_dims && ok; d++) ok = buf_le(&w->infos, (uint64_t)ne[d], 8);
    ok = ok && buf_le(&w->infos, type, 4) && buf_le(&w->infos, w->data_total, 8);
    if (!ok) return oom(w);
    w->data_total += pad_to(nb, BN_GGUF_WRITER_ALIGNMENT);
    return BITNET_OK;
}

uint64_t bn_gguf_writer_tensor_bytes(const bn_gguf_writer *w, int i) {
    return i >= 0 && i < w->n_tensors ? w->tensors[i].n_bytes : 0;
}
int bn_gguf_writer_n_tensors(const bn_gguf_writer *w) { return w->n_tensors; }
uint64_t bn_gguf_writer_data_written(const bn_gguf_writer *w) { return w->data_written; }
uint64_t bn_gguf_writer_data_total(const bn_gguf_writer *w) { return w->data_total; }

static bitnet_status put(bn_gguf_writer *w, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, w->f) != n) return io_fail(w, "write failed");
    return BITNET_OK;
}

static bitnet_status put_zeros(bn_gguf_writer *w, uint64_t n) {
    static const uint8_t zeros[4096];
    while (n) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        if (put(w, zeros, k)) return w->status;
        n -= k;
    }
    return BITNET_OK;
}

bitnet_status bn_gguf_writer_begin_data(bn_gguf_writer *w) {
    if (w->status) return w->status;
    if (w->data_started) return fail(w, BITNET_E_INTERNAL, "tensor data begun twice%s", "");
    bytebuf head = {0};
    int ok = buf_bytes(&head, "GGUF", 4) && buf_le(&head, 3, 4) && buf_le(&head, (uint64_t)w->n_tensors, 8) &&
             buf_le(&head, (uint64_t)w->n_kv, 8);
    if (!ok) {
        free(head.p);
        return oom(w);
    }
    w->data_started = 1;
    put(w, head.p, head.n);
    free(head.p);
    put(w, w->meta.p, w->meta.n);
    put(w, w->infos.p, w->infos.n);
    uint64_t at = 24 + w->meta.n + w->infos.n;
    put_zeros(w, pad_to(at, BN_GGUF_WRITER_ALIGNMENT) - at);
    free(w->meta.p);
    free(w->infos.p);
    w->meta = w->infos = (bytebuf){0};
    return w->status;
}

/* Feeds n bytes (data or zeros when data is NULL) into the current tensors. */
static bitnet_status feed(bn_gguf_writer *w, const uint8_t *data, size_t n) {
    if (w->status) return w->status;
    if (!w->data_started || w->finished) return fail(w, BITNET_E_INTERNAL, "tensor data written out of order%s", "");
    while (n) {
        if (w->cur >= w->n_tensors)
            return fail(w, BITNET_E_INTERNAL, "more tensor data than the declared tensors hold%s", "");
        tensor_rec *t = &w->tensors[w->cur];
        uint64_t room = t->n_bytes - w->cur_done;
        size_t k = n < room ? n : (size_t)room;
        if (data ? put(w, data, k) : put_zeros(w, k)) return w->status;
        if (data) data += k;
        n -= k;
        w->cur_done += k;
        w->data_written += k;
        if (w->cur_done == t->n_bytes) {
            if (put_zeros(w, pad_to(t->n_bytes, BN_GGUF_WRITER_ALIGNMENT) - t->n_bytes)) return w->status;
            w->cur++;
            w->cur_done = 0;
        }
    }
    return BITNET_OK;
}

bitnet_status bn_gguf_writer_write(bn_gguf_writer *w, const void *data, size_t n) { return feed(w, data, n); }
bitnet_status bn_gguf_writer_write_zeros(bn_gguf_writer *w, size_t n) { return feed(w, NULL, n); }

/* Moves the finished temporary file into place. Without overwrite, link()
 * refuses atomically when the target appeared meanwhile. */
static bitnet_status publish(bn_gguf_writer *w) {
    if (w->overwrite) {
        if (rename(w->tmp, w->path) != 0) return io_fail(w, "cannot rename the temporary file");
        return BITNET_OK;
    }
    if (link(w->tmp, w->path) == 0) {
        remove(w->tmp);
        return BITNET_OK;
    }
    if (errno == EEXIST) return fail(w, BITNET_E_IO, "file exists (use --force to overwrite)%s", "");
    if (access(w->path, F_OK) == 0) return fail(w, BITNET_E_IO, "file exists (use --force to overwrite)%s", "");
    if (rename(w->tmp, w->path) != 0) return io_fail(w, "cannot rename the temporary file");
    return BITNET_OK;
}

bitnet_status bn_gguf_writer_finish(bn_gguf_writer *w) {
    if (w->status) return w->status;
    if (!w->data_started && bn_gguf_writer_begin_data(w)) return w->status;
    if (w->cur < w->n_tensors) {
        char msg[128];
        snprintf(msg, sizeof msg, "tensor '%.63s' incomplete (%llu of %llu bytes)", w->tensors[w->cur].name,
                 (unsigned long long)w->cur_done, (unsigned long long)w->tensors[w->cur].n_bytes);
        return fail(w, BITNET_E_INTERNAL, "%s", msg);
    }
    if (fflush(w->f) != 0 || fsync(fileno(w->f)) != 0) return io_fail(w, "write failed");
    FILE *f = w->f;
    w->f = NULL;
    if (fclose(f) != 0) {
        remove(w->tmp);
        return io_fail(w, "write failed");
    }
    if (publish(w)) {
        remove(w->tmp);
        return w->status;
    }
    w->finished = 1;
    return BITNET_OK;
}
