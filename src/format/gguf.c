/* GGUF v2/v3 reader. Facts: ../shared/docs/FORMATS.md §1.
 *
 * Everything is validated once, in bn_gguf_open*: every length and count is
 * checked against the bytes that remain before it is used (so a hostile count
 * can never drive an allocation larger than the file could justify), and the
 * accessors afterwards trust the parsed records. All reads are byte-wise
 * little-endian, independent of host byte order and alignment. */
#include "format/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/ggml_types.h"
#include "util/mapped_file.h"

#define GGUF_DEFAULT_ALIGNMENT 32u
#define GGUF_MAX_ALIGNMENT (1u << 24) /* far above any real file; keeps padding arithmetic small */
#define GGUF_MAX_KEY_LEN 65535u       /* spec limit */
#define GGUF_MAX_NAME_LEN 63u         /* ggml's GGML_MAX_NAME (64) includes the NUL */
#define GGUF_MAX_ARRAY_DEPTH 4        /* an array may hold arrays, 4 levels in all */
#define GGUF_N_VTYPES 13

/* Open-addressing table from names to record indices (keys, tensor names). */
typedef struct strmap {
    bn_str *keys;
    int64_t *idx;
    uint64_t mask;
} strmap;

struct bn_gguf {
    bn_mapped_file file; /* empty for bn_gguf_open_memory */
    const uint8_t *base;
    uint64_t size;
    uint32_t version, alignment;
    uint64_t data_start;
    int64_t n_kv, cap_kv;
    bn_gguf_kv *kv;
    uint64_t *kv_bytes;   /* byte length of each value (arrays: of the elements) */
    uint64_t **str_index; /* per kv: file offsets of each string of a string array, else NULL */
    int64_t n_tensors;
    bn_gguf_tensor *tensors;
    strmap kv_map, tensor_map;
};

/* ------------------------------------------------------------ reading -- */

typedef struct rd {
    const uint8_t *p;
    uint64_t size, pos; /* invariant: pos <= size */
} rd;

static uint64_t rd_left(const rd *r) { return r->size - r->pos; }

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | ((uint64_t)le32(p + 4) << 32); }

/* These return 0 (and consume nothing) when the bytes are not there. */
static int rd_bytes(rd *r, uint64_t n, const uint8_t **out) {
    if (n > rd_left(r)) return 0;
    *out = r->p + r->pos;
    r->pos += n;
    return 1;
}

static int rd_u32(rd *r, uint32_t *v) {
    const uint8_t *b;
    if (!rd_bytes(r, 4, &b)) return 0;
    *v = le32(b);
    return 1;
}

static int rd_u64(rd *r, uint64_t *v) {
    const uint8_t *b;
    if (!rd_bytes(r, 8, &b)) return 0;
    *v = le64(b);
    return 1;
}

/* A GGUF string (u64 length + bytes); consumes nothing on failure. */
static int rd_str(rd *r, bn_str *s) {
    uint64_t save = r->pos, n;
    const uint8_t *b;
    if (!rd_u64(r, &n)) return 0;
    if (!rd_bytes(r, n, &b)) {
        r->pos = save;
        return 0;
    }
    s->ptr = (const char *)b;
    s->len = n;
    return 1;
}

/* A printable copy of a (possibly hostile) name for error messages. */
static const char *show(bn_str s, char *buf, size_t cap) {
    size_t n = 0;
    for (uint64_t i = 0; i < s.len && n + 4 < cap; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        buf[n++] = (c >= 0x20 && c < 0x7F) ? (char)c : '?';
    }
    if (s.len > n) { /* cut short: say so */
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

#define SHOW(s) show((s), (char[80]){0}, 80)

static bitnet_status truncated(bitnet_error *err, const rd *r, const char *what) {
    return bn_fail(err, BITNET_E_FORMAT, "%s at byte %llu runs past the end of the file (%llu bytes)", what,
                   (unsigned long long)r->pos, (unsigned long long)r->size);
}

/* ------------------------------------------------------------- strmap -- */

static uint64_t hash_bytes(const char *p, uint64_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (uint64_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h;
}

static int map_init(strmap *m, int64_t n) {
    uint64_t cap = 16;
    while (cap < (uint64_t)n * 2) cap *= 2;
    m->keys = calloc(cap, sizeof *m->keys);
    m->idx = malloc(cap * sizeof *m->idx);
    if (!m->keys || !m->idx) return 0;
    for (uint64_t i = 0; i < cap; i++) m->idx[i] = -1;
    m->mask = cap - 1;
    return 1;
}

static void map_free(strmap *m) {
    free(m->keys);
    free(m->idx);
}

/* The slot holding key, or the empty slot where it would go. */
static uint64_t map_slot(const strmap *m, const char *p, uint64_t n) {
    uint64_t i = hash_bytes(p, n) & m->mask;
    while (m->idx[i] >= 0 && !(m->keys[i].len == n && memcmp(m->keys[i].ptr, p, n) == 0)) i = (i + 1) & m->mask;
    return i;
}

static int64_t map_find(const strmap *m, const char *p, uint64_t n) {
    if (!m->idx) return -1;
    return m->idx[map_slot(m, p, n)];
}

/* Inserts key → i; returns the index already there for a duplicate, else -1. */
static int64_t map_insert(strmap *m, bn_str key, int64_t i) {
    uint64_t s = map_slot(m, key.ptr, key.len);
    if (m->idx[s] >= 0) return m->idx[s];
    m->keys[s] = key;
    m->idx[s] = i;
    return -1;
}

/* ----------------------------------------------------- metadata values -- */

/* Bytes of a fixed-size value type; 0 for STRING/ARRAY. */
static uint64_t vtype_size(uint32_t t) {
    static const uint8_t sizes[GGUF_N_VTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < GGUF_N_VTYPES ? sizes[t] : 0;
}

/* The fewest bytes one element of type t can take: what bounds array counts. */
static uint64_t vtype_min_size(uint32_t t) {
    if (t == BN_GGUF_STRING) return 8;
    if (t == BN_GGUF_ARRAY) return 12;
    return vtype_size(t);
}

static const char *vtype_name(uint32_t t) {
    static const char *const names[GGUF_N_VTYPES] = {"u8",  "i8",   "u16",    "i16",   "u32", "i32", "f32",
                                                     "bool", "string", "array", "u64", "i64", "f64"};
    return t < GGUF_N_VTYPES ? names[t] : "unknown";
}

typedef struct kv_ctx {
    bitnet_error *err;
    const char *key; /* printable key, for messages */
} kv_ctx;

static bitnet_status skip_value(rd *r, uint32_t type, int depth, const kv_ctx *c);

static bitnet_status check_bools(const uint8_t *b, uint64_t n, uint64_t at, const kv_ctx *c) {
    for (uint64_t i = 0; i < n; i++)
        if (b[i] > 1)
            return bn_fail(c->err, BITNET_E_FORMAT, "key '%s': bool value %u at byte %llu (must be 0 or 1)", c->key,
                           b[i], (unsigned long long)(at + i));
    return BITNET_OK;
}

/* Elements of an array whose count and element type were already read.
 * index (may be NULL) receives the file offset of each string element. */
static bitnet_status skip_elements(rd *r, uint32_t et, uint64_t n, int depth, uint64_t *index, const kv_ctx *c) {
    uint64_t fixed = vtype_size(et);
    if (fixed) {
        const uint8_t *b;
        uint64_t at = r->pos;
        if (!rd_bytes(r, n * fixed, &b)) return truncated(c->err, r, "array data"); /* n*fixed checked by caller */
        return et == BN_GGUF_BOOL ? check_bools(b, n, at, c) : BITNET_OK;
    }
    for (uint64_t i = 0; i < n; i++) {
        if (index) index[i] = r->pos;
        bitnet_status rc = skip_value(r, et, depth, c);
        if (rc) return rc;
    }
    return BITNET_OK;
}

/* Reads an array header (element type, count) and checks the count against
 * the bytes left, so nothing is allocated or looped over for a hostile count. */
static bitnet_status array_header(rd *r, int depth, uint32_t *et, uint64_t *n, const kv_ctx *c) {
    uint64_t at = r->pos;
    if (depth >= GGUF_MAX_ARRAY_DEPTH)
        return bn_fail(c->err, BITNET_E_FORMAT, "key '%s': arrays nested more than %d deep at byte %llu", c->key,
                       GGUF_MAX_ARRAY_DEPTH, (unsigned long long)at);
    if (!rd_u32(r, et) || !rd_u64(r, n)) {
        char what[128];
        snprintf(what, sizeof what, "key '%s': array header", c->key);
        return truncated(c->err, r, what);
    }
    if (*et >= GGUF_N_VTYPES)
        return bn_fail(c->err, BITNET_E_FORMAT, "key '%s': unknown array element type %u at byte %llu", c->key, *et,
                       (unsigned long long)at);
    if (*n > rd_left(r) / vtype_min_size(*et))
        return bn_fail(c->err, BITNET_E_FORMAT,
                       "key '%s': array of %llu %s elements at byte %llu cannot fit in the %llu bytes left", c->key,
                       (unsigned long long)*n, vtype_name(*et), (unsigned long long)at,
                       (unsigned long long)rd_left(r));
    return BITNET_OK;
}

static bitnet_status skip_value(rd *r, uint32_t type, int depth, const kv_ctx *c) {
    uint64_t at = r->pos;
    if (type >= GGUF_N_VTYPES)
        return bn_fail(c->err, BITNET_E_FORMAT, "key '%s': unknown value type %u", c->key, type);
    if (type == BN_GGUF_ARRAY) {
        uint32_t et;
        uint64_t n;
        bitnet_status rc = array_header(r, depth, &et, &n, c);
        return rc ? rc : skip_elements(r, et, n, depth + 1, NULL, c);
    }
    if (type == BN_GGUF_STRING) {
        bn_str s;
        if (rd_str(r, &s)) return BITNET_OK;
        uint64_t len = 0;
        if (rd_left(r) >= 8) len = le64(r->p + r->pos);
        return bn_fail(c->err, BITNET_E_FORMAT,
                       "key '%s': string at byte %llu (length %llu) runs past the end of the file (%llu bytes)",
                       c->key, (unsigned long long)at, (unsigned long long)len, (unsigned long long)r->size);
    }
    const uint8_t *b;
    char what[128];
    snprintf(what, sizeof what, "key '%s': %s value", c->key, vtype_name(type));
    if (!rd_bytes(r, vtype_size(type), &b)) return truncated(c->err, r, what);
    return type == BN_GGUF_BOOL ? check_bools(b, 1, at, c) : BITNET_OK;
}

/* ---------------------------------------------------------- kv records -- */

static bitnet_status grow_kv(bn_gguf *g, bitnet_error *err) {
    if (g->n_kv < g->cap_kv) return BITNET_OK;
    int64_t cap = g->cap_kv ? g->cap_kv * 2 : 64;
    bn_gguf_kv *kv = realloc(g->kv, (size_t)cap * sizeof *kv);
    if (kv) g->kv = kv;
    uint64_t *kb = realloc(g->kv_bytes, (size_t)cap * sizeof *kb);
    if (kb) g->kv_bytes = kb;
    uint64_t **si = realloc(g->str_index, (size_t)cap * sizeof *si);
    if (si) g->str_index = si;
    if (!kv || !kb || !si) return bn_fail(err, BITNET_E_NOMEM, "out of memory reading GGUF metadata");
    g->cap_kv = cap;
    return BITNET_OK;
}

static bitnet_status read_key(rd *r, int64_t i, bn_str *key, bitnet_error *err) {
    uint64_t at = r->pos, len;
    if (!rd_u64(r, &len)) return bn_fail(err, BITNET_E_FORMAT, "metadata entry %lld at byte %llu: file ends in its key",
                                         (long long)i, (unsigned long long)at);
    if (len == 0 || len > GGUF_MAX_KEY_LEN)
        return bn_fail(err, BITNET_E_FORMAT, "metadata entry %lld at byte %llu: key length %llu (must be 1..%u)",
                       (long long)i, (unsigned long long)at, (unsigned long long)len, GGUF_MAX_KEY_LEN);
    r->pos = at;
    if (!rd_str(r, key))
        return bn_fail(err, BITNET_E_FORMAT,
                       "metadata entry %lld at byte %llu: key of %llu bytes runs past the end of the file (%llu bytes)",
                       (long long)i, (unsigned long long)at, (unsigned long long)len, (unsigned long long)r->size);
    return BITNET_OK;
}

/* An array value: record its element type/count and index string arrays. */
static bitnet_status read_array(bn_gguf *g, rd *r, int64_t i, const kv_ctx *c) {
    bn_gguf_kv *kv = &g->kv[i];
    bitnet_status rc = array_header(r, 0, &kv->arr_type, &kv->arr_n, c);
    if (rc) return rc;
    kv->data = r->p + r->pos;
    uint64_t *index = NULL;
    if (kv->arr_type == BN_GGUF_STRING && kv->arr_n > 0) {
        /* arr_n <= bytes left / 8, so this allocation is bounded by the file size. */
        index = malloc((size_t)kv->arr_n * sizeof *index);
        if (!index) return bn_fail(c->err, BITNET_E_NOMEM, "key '%s': out of memory indexing %llu strings", c->key,
                                   (unsigned long long)kv->arr_n);
    }
    g->str_index[i] = index; /* owned by g from here on, freed on error too */
    return skip_elements(r, kv->arr_type, kv->arr_n, 1, index, c);
}

static bitnet_status read_kv(bn_gguf *g, rd *r, bitnet_error *err) {
    bitnet_status rc = grow_kv(g, err);
    if (rc) return rc;
    int64_t i = g->n_kv;
    bn_gguf_kv *kv = &g->kv[i];
    memset(kv, 0, sizeof *kv);
    g->str_index[i] = NULL;
    if ((rc = read_key(r, i, &kv->key, err))) return rc;
    kv_ctx c = {err, SHOW(kv->key)};
    if (!rd_u32(r, &kv->type)) {
        char what[128];
        snprintf(what, sizeof what, "key '%s': value type", c.key);
        return truncated(err, r, what);
    }
    if (kv->type >= GGUF_N_VTYPES)
        return bn_fail(err, BITNET_E_FORMAT, "key '%s': unknown value type %u at byte %llu", c.key, kv->type,
                       (unsigned long long)(r->pos - 4));
    g->n_kv++; /* from here the record (and its string index) belongs to g */
    if (kv->type == BN_GGUF_ARRAY) rc = read_array(g, r, i, &c);
    else {
        kv->data = r->p + r->pos;
        rc = skip_value(r, kv->type, 0, &c);
    }
    if (rc) return rc;
    g->kv_bytes[i] = r->pos - (uint64_t)(kv->data - r->p);
    return BITNET_OK;
}

static bitnet_status index_keys(bn_gguf *g, bitnet_error *err) {
    if (!map_init(&g->kv_map, g->n_kv)) return bn_fail(err, BITNET_E_NOMEM, "out of memory indexing GGUF metadata");
    for (int64_t i = 0; i < g->n_kv; i++) {
        int64_t prev = map_insert(&g->kv_map, g->kv[i].key, i);
        if (prev >= 0)
            return bn_fail(err, BITNET_E_FORMAT, "duplicate metadata key '%s' (entries %lld and %lld)",
                           SHOW(g->kv[i].key), (long long)prev, (long long)i);
    }
    return BITNET_OK;
}

/* general.alignment: u32, a power of two (as mainline ggml requires). */
static bitnet_status read_alignment(bn_gguf *g, bitnet_error *err) {
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    const bn_gguf_kv *kv = bn_gguf_find_kv(g, "general.alignment");
    if (!kv) return BITNET_OK;
    if (kv->type != BN_GGUF_UINT32)
        return bn_fail(err, BITNET_E_FORMAT, "key 'general.alignment' has type %s (must be u32)", vtype_name(kv->type));
    uint32_t a = le32(kv->data);
    if (a == 0 || (a & (a - 1)) || a > GGUF_MAX_ALIGNMENT)
        return bn_fail(err, BITNET_E_FORMAT, "key 'general.alignment' is %u (must be a power of two, at most %u)", a,
                       GGUF_MAX_ALIGNMENT);
    g->alignment = a;
    return BITNET_OK;
}

/* ------------------------------------------------------------ tensors -- */

static bitnet_status read_dims(rd *r, bn_gguf_tensor *t, const char *name, bitnet_error *err) {
    uint64_t at = r->pos;
    if (!rd_u32(r, &t->n_dims)) return bn_fail(err, BITNET_E_FORMAT, "tensor '%s': file ends in its info", name);
    if (t->n_dims > BN_GGUF_MAX_DIMS)
        return bn_fail(err, BITNET_E_FORMAT, "tensor '%s': %u dimensions at byte %llu (at most %d)", name, t->n_dims,
                       (unsigned long long)at, BN_GGUF_MAX_DIMS);
    t->n_elems = 1;
    for (int j = 0; j < BN_GGUF_MAX_DIMS; j++) t->ne[j] = 1;
    for (uint32_t j = 0; j < t->n_dims; j++) {
        uint64_t d;
        if (!rd_u64(r, &d)) return bn_fail(err, BITNET_E_FORMAT, "tensor '%s': file ends in its info", name);
        if (d == 0 || d > (uint64_t)INT64_MAX)
            return bn_fail(err, BITNET_E_FORMAT, "tensor '%s': dimension %u is %lld (must be positive)", name, j,
                           (long long)d);
        if ((int64_t)d > INT64_MAX / t->n_elems)
            return bn_fail(err, BITNET_E_FORMAT, "tensor '%s': element count overflows", name);
        t->ne[j] = (int64_t)d;
        t->n_elems *= (int64_t)d;
    }
    return BITNET_OK;
}

/* Type and geometry: a supported type, rows made of whole blocks. */
static bitnet_status check_type(bn_gguf_tensor *t, const char *name, bitnet_error *err) {
    if (!bn_ggml_type_supported(t->type))
        return bn_fail(err, BITNET_E_UNSUPPORTED, "tensor '%s' has type %s, which bitnet.c does not support", name,
                       bn_ggml_type_name(t->type));
    int be = bn_ggml_block_elems(t->type);
    if (t->ne[0] % be)
        return bn_fail(err, BITNET_E_FORMAT, "tensor '%s': row length %lld is not a multiple of the %s block size %d",
                       name, (long long)t->ne[0], bn_ggml_type_name(t->type), be);
    t->n_bytes = bn_ggml_tensor_bytes(t->type, t->ne[0], t->n_elems);
    if (t->n_bytes == 0) return bn_fail(err, BITNET_E_FORMAT, "tensor '%s': byte size overflows", name);
    return BITNET_OK;
}

static bitnet_status read_tensor_info(rd *r, int64_t i, bn_gguf_tensor *t, bitnet_error *err) {
    uint64_t at = r->pos, len;
    memset(t, 0, sizeof *t);
    if (!rd_u64(r, &len))
        return bn_fail(err, BITNET_E_FORMAT, "tensor info %lld at byte %llu: file ends in its name", (long long)i,
                       (unsigned long long)at);
    if (len == 0 || len > GGUF_MAX_NAME_LEN)
        return bn_fail(err, BITNET_E_FORMAT, "tensor info %lld at byte %llu: name length %llu (must be 1..%u)",
                       (long long)i, (unsigned long long)at, (unsigned long long)len, GGUF_MAX_NAME_LEN);
    r->pos = at;
    if (!rd_str(r, &t->name))
        return bn_fail(err, BITNET_E_FORMAT, "tensor info %lld at byte %llu: name runs past the end of the file",
                       (long long)i, (unsigned long long)at);
    const char *name = SHOW(t->name);
    bitnet_status rc = read_dims(r, t, name, err);
    if (rc) return rc;
    if (!rd_u32(r, &t->type) || !rd_u64(r, &t->offset))
        return bn_fail(err, BITNET_E_FORMAT, "tensor '%s': file ends in its info", name);
    return check_type(t, name, err);
}

typedef struct span {
    uint64_t begin, end;
    int64_t idx;
} span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

/* Each tensor's offset aligned and its bytes inside the file. */
static bitnet_status place_tensor(bn_gguf *g, bn_gguf_tensor *t, bitnet_error *err) {
    uint64_t room = g->size - g->data_start;
    if (t->offset % g->alignment)
        return bn_fail(err, BITNET_E_FORMAT, "tensor '%s': offset %llu is not a multiple of the alignment %u",
                       SHOW(t->name), (unsigned long long)t->offset, g->alignment);
    if (t->offset > room || t->n_bytes > room - t->offset)
        return bn_fail(err, BITNET_E_FORMAT,
                       "tensor '%s': %llu bytes at offset %llu of the data section (byte %llu) run past the end of "
                       "the file (%llu bytes)",
                       SHOW(t->name), (unsigned long long)t->n_bytes, (unsigned long long)t->offset,
                       (unsigned long long)g->data_start, (unsigned long long)g->size);
    t->data = g->base + g->data_start + t->offset;
    return BITNET_OK;
}

static bitnet_status check_overlaps(bn_gguf *g, bitnet_error *err) {
    if (g->n_tensors < 2) return BITNET_OK;
    span *s = malloc((size_t)g->n_tensors * sizeof *s);
    if (!s) return bn_fail(err, BITNET_E_NOMEM, "out of memory checking GGUF tensor offsets");
    for (int64_t i = 0; i < g->n_tensors; i++)
        s[i] = (span){g->tensors[i].offset, g->tensors[i].offset + g->tensors[i].n_bytes, i};
    qsort(s, (size_t)g->n_tensors, sizeof *s, span_cmp);
    bitnet_status rc = BITNET_OK;
    for (int64_t i = 0; i + 1 < g->n_tensors && !rc; i++)
        if (s[i].end > s[i + 1].begin) {
            const bn_gguf_tensor *a = &g->tensors[s[i].idx], *b = &g->tensors[s[i + 1].idx];
            rc = bn_fail(err, BITNET_E_FORMAT, "tensors '%s' (bytes %llu..%llu) and '%s' (from byte %llu) overlap",
                         SHOW(a->name), (unsigned long long)s[i].begin, (unsigned long long)s[i].end, SHOW(b->name),
                         (unsigned long long)s[i + 1].begin);
        }
    free(s);
    return rc;
}

static bitnet_status read_tensors(bn_gguf *g, rd *r, uint64_t n, bitnet_error *err) {
    /* Grow as records parse, so a huge claimed count cannot force a huge allocation up front. */
    int64_t cap = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (g->n_tensors == cap) {
            cap = cap ? cap * 2 : 64;
            bn_gguf_tensor *t = realloc(g->tensors, (size_t)cap * sizeof *t);
            if (!t) return bn_fail(err, BITNET_E_NOMEM, "out of memory reading GGUF tensor infos");
            g->tensors = t;
        }
        bitnet_status rc = read_tensor_info(r, (int64_t)i, &g->tensors[i], err);
        if (rc) return rc;
        g->n_tensors++;
    }
    if (!map_init(&g->tensor_map, g->n_tensors)) return bn_fail(err, BITNET_E_NOMEM, "out of memory indexing tensors");
    for (int64_t i = 0; i < g->n_tensors; i++) {
        int64_t prev = map_insert(&g->tensor_map, g->tensors[i].name, i);
        if (prev >= 0)
            return bn_fail(err, BITNET_E_FORMAT, "duplicate tensor name '%s' (tensor infos %lld and %lld)",
                           SHOW(g->tensors[i].name), (long long)prev, (long long)i);
    }
    return BITNET_OK;
}

static bitnet_status place_tensors(bn_gguf *g, uint64_t infos_end, bitnet_error *err) {
    uint64_t pad = (g->alignment - infos_end % g->alignment) % g->alignment;
    g->data_start = infos_end + pad; /* infos_end <= size, pad < 2^24: no overflow */
    if (g->n_tensors == 0) return BITNET_OK;
    if (g->data_start > g->size)
        return bn_fail(err, BITNET_E_FORMAT, "data section would start at byte %llu, past the end of the file (%llu bytes)",
                       (unsigned long long)g->data_start, (unsigned long long)g->size);
    for (int64_t i = 0; i < g->n_tensors; i++) {
        bitnet_status rc = place_tensor(g, &g->tensors[i], err);
        if (rc) return rc;
    }
    return check_overlaps(g, err);
}

/* -------------------------------------------------------------- header -- */

static uint32_t bswap32(uint32_t v) {
    return (v >> 24) | ((v >> 8) & 0xFF00) | ((v << 8) & 0xFF0000) | (v << 24);
}

static bitnet_status read_magic_version(bn_gguf *g, rd *r, bitnet_error *err) {
    const uint8_t *m;
    if (!rd_bytes(r, 4, &m) || !rd_u32(r, &g->version))
        return bn_fail(err, BITNET_E_FORMAT, "file too small for a GGUF header (%llu bytes)", (unsigned long long)r->size);
    if (memcmp(m, "FUGG", 4) == 0)
        return bn_fail(err, BITNET_E_UNSUPPORTED, "big-endian GGUF file (byte-swapped magic); bitnet.c reads little-endian GGUF only");
    if (memcmp(m, "GGUF", 4) != 0)
        return bn_fail(err, BITNET_E_FORMAT, "not a GGUF file (magic bytes %02x %02x %02x %02x)", m[0], m[1], m[2], m[3]);
    uint32_t v = g->version;
    /* gguf-py writes the magic as bytes but every number in the file's byte order:
     * a big-endian file shows a version whose bytes are reversed. */
    if (v > 0xFFFF && bswap32(v) >= 1 && bswap32(v) <= 3)
        return bn_fail(err, BITNET_E_UNSUPPORTED,
                       "big-endian GGUF file (version %u byte-swapped); bitnet.c reads little-endian GGUF only",
                       bswap32(v));
    if (v == 1) return bn_fail(err, BITNET_E_UNSUPPORTED, "GGUF version 1 is not supported (bitnet.c reads versions 2 and 3)");
    if (v == 0 || v > 3)
        return bn_fail(err, v == 0 ? BITNET_E_FORMAT : BITNET_E_UNSUPPORTED,
                       "GGUF version %u is not supported (bitnet.c reads versions 2 and 3)", v);
    return BITNET_OK;
}

/* A count of records, each at least min_size bytes: must fit in what is left. */
static bitnet_status read_count(rd *r, uint64_t *n, uint64_t min_size, const char *what, bitnet_error *err) {
    uint64_t at = r->pos;
    if (!rd_u64(r, n)) return bn_fail(err, BITNET_E_FORMAT, "file too small for a GGUF header (%llu bytes)", (unsigned long long)r->size);
    if (*n > (uint64_t)INT64_MAX || *n > rd_left(r) / min_size)
        return bn_fail(err, BITNET_E_FORMAT, "%s %llu at byte %llu is impossible for a file of %llu bytes", what,
                       (unsigned long long)*n, (unsigned long long)at, (unsigned long long)r->size);
    return BITNET_OK;
}

static bitnet_status parse(bn_gguf *g, bitnet_error *err) {
    rd r = {g->base, g->size, 0};
    uint64_t n_tensors = 0, n_kv = 0;
    bitnet_status rc = read_magic_version(g, &r, err);
    if (rc) return rc;
    /* Smallest records: kv = 8 (key len) + 1 + 4 (type) + 1; tensor = 8 + 1 + 4 + 4 + 8. */
    if ((rc = read_count(&r, &n_tensors, 25, "tensor count", err))) return rc;
    if ((rc = read_count(&r, &n_kv, 14, "metadata count", err))) return rc;
    for (uint64_t i = 0; i < n_kv; i++)
        if ((rc = read_kv(g, &r, err))) return rc;
    if ((rc = index_keys(g, err)) || (rc = read_alignment(g, err))) return rc;
    if ((rc = read_tensors(g, &r, n_tensors, err))) return rc;
    return place_tensors(g, r.pos, err);
}

/* ---------------------------------------------------------------- open -- */

static bitnet_status open_common(bn_gguf **out, bn_gguf *g, bitnet_error *err) {
    bitnet_status rc = parse(g, err);
    if (rc) {
        bn_gguf_close(g);
        return rc;
    }
    *out = g;
    return BITNET_OK;
}

bitnet_status bn_gguf_open_memory(bn_gguf **out, const void *data, size_t size, bitnet_error *err) {
    *out = NULL;
    if (!data && size) return bn_fail(err, BITNET_E_INVALID_ARG, "GGUF buffer is NULL");
    bn_gguf *g = calloc(1, sizeof *g);
    if (!g) return bn_fail(err, BITNET_E_NOMEM, "out of memory");
    g->base = data;
    g->size = size;
    return open_common(out, g, err);
}

bitnet_status bn_gguf_open(bn_gguf **out, const char *path, int use_mmap, bitnet_error *err) {
    *out = NULL;
    bn_gguf *g = calloc(1, sizeof *g);
    if (!g) return bn_fail(err, BITNET_E_NOMEM, "out of memory");
    bitnet_status rc = bn_mapped_file_open(&g->file, path, use_mmap, err);
    if (rc) {
        free(g);
        return rc;
    }
    g->base = g->file.data;
    g->size = g->file.size;
    if ((rc = open_common(out, g, err))) bn_err_prefix(err, "%s", path);
    return rc;
}

void bn_gguf_close(bn_gguf *g) {
    if (!g) return;
    for (int64_t i = 0; i < g->n_kv; i++) free(g->str_index[i]);
    free(g->str_index);
    free(g->kv_bytes);
    free(g->kv);
    free(g->tensors);
    map_free(&g->kv_map);
    map_free(&g->tensor_map);
    bn_mapped_file_close(&g->file);
    free(g);
}

/* ----------------------------------------------------------- accessors -- */

int bn_str_eq(bn_str s, const char *c) {
    size_t n = strlen(c);
    return s.len == n && (n == 0 || memcmp(s.ptr, c, n) == 0);
}

uint32_t bn_gguf_version(const bn_gguf *g) { return g->version; }
uint32_t bn_gguf_alignment(const bn_gguf *g) { return g->alignment; }
uint64_t bn_gguf_file_size(const bn_gguf *g) { return g->size; }
uint64_t bn_gguf_data_offset(const bn_gguf *g) { return g->data_start; }
int64_t bn_gguf_n_kv(const bn_gguf *g) { return g->n_kv; }

const bn_gguf_kv *bn_gguf_kv_at(const bn_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_kv ? &g->kv[i] : NULL;
}

const bn_gguf_kv *bn_gguf_find_kv(const bn_gguf *g, const char *key) {
    if (!key) return NULL;
    int64_t i = map_find(&g->kv_map, key, strlen(key));
    return i >= 0 ? &g->kv[i] : NULL;
}

uint64_t bn_gguf_kv_value_bytes(const bn_gguf *g, const bn_gguf_kv *kv) {
    int64_t i = kv - g->kv;
    return i >= 0 && i < g->n_kv ? g->kv_bytes[i] : 0;
}

/* An integer scalar at p as sign + magnitude; 0 when type is not an integer type. */
static int read_int(uint32_t type, const uint8_t *p, int64_t *sv, uint64_t *uv, int *neg) {
    int64_t s;
    switch (type) {
    case BN_GGUF_UINT8: *uv = p[0]; *neg = 0; return 1;
    case BN_GGUF_UINT16: *uv = (uint64_t)p[0] | ((uint64_t)p[1] << 8); *neg = 0; return 1;
    case BN_GGUF_UINT32: *uv = le32(p); *neg = 0; return 1;
    case BN_GGUF_UINT64: *uv = le64(p); *neg = 0; return 1;
    case BN_GGUF_INT8: s = (int8_t)p[0]; break;
    case BN_GGUF_INT16: s = (int16_t)(uint16_t)(p[0] | (p[1] << 8)); break;
    case BN_GGUF_INT32: s = (int32_t)le32(p); break;
    case BN_GGUF_INT64: s = (int64_t)le64(p); break;
    default: return 0;
    }
    *sv = s;
    *neg = s < 0;
    *uv = s < 0 ? 0 : (uint64_t)s;
    return 1;
}

static const bn_gguf_kv *find_scalar(const bn_gguf *g, const char *key, int *status) {
    const bn_gguf_kv *kv = bn_gguf_find_kv(g, key);
    *status = kv ? 1 : 0;
    if (kv && (kv->type == BN_GGUF_ARRAY)) *status = -1;
    return *status == 1 ? kv : NULL;
}

int bn_gguf_get_u32(const bn_gguf *g, const char *key, uint32_t *out) {
    int st;
    const bn_gguf_kv *kv = find_scalar(g, key, &st);
    int64_t s = 0;
    uint64_t u = 0;
    int neg = 0;
    if (!kv) return st;
    if (!read_int(kv->type, kv->data, &s, &u, &neg) || neg || u > UINT32_MAX) return -1;
    *out = (uint32_t)u;
    return 1;
}

int bn_gguf_get_i64(const bn_gguf *g, const char *key, int64_t *out) {
    int st;
    const bn_gguf_kv *kv = find_scalar(g, key, &st);
    int64_t s = 0;
    uint64_t u = 0;
    int neg = 0;
    if (!kv) return st;
    if (!read_int(kv->type, kv->data, &s, &u, &neg)) return -1;
    if (neg) *out = s;
    else if (u > (uint64_t)INT64_MAX) return -1;
    else *out = (int64_t)u;
    return 1;
}

static double read_f64(const uint8_t *p) {
    uint64_t u = le64(p);
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static float read_f32(const uint8_t *p) {
    uint32_t u = le32(p);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

int bn_gguf_get_f32(const bn_gguf *g, const char *key, float *out) {
    int st;
    const bn_gguf_kv *kv = find_scalar(g, key, &st);
    if (!kv) return st;
    if (kv->type == BN_GGUF_FLOAT32) *out = read_f32(kv->data);
    else if (kv->type == BN_GGUF_FLOAT64) {
        double d = read_f64(kv->data);
        if (d > 3.4028234663852886e38 || d < -3.4028234663852886e38) return -1; /* finite but beyond float */
        *out = (float)d; /* inf and NaN pass through */
    } else return -1;
    return 1;
}

int bn_gguf_get_bool(const bn_gguf *g, const char *key, int *out) {
    int st;
    const bn_gguf_kv *kv = find_scalar(g, key, &st);
    if (!kv) return st;
    if (kv->type != BN_GGUF_BOOL) return -1;
    *out = kv->data[0];
    return 1;
}

int bn_gguf_get_str(const bn_gguf *g, const char *key, bn_str *out) {
    int st;
    const bn_gguf_kv *kv = find_scalar(g, key, &st);
    if (!kv) return st;
    if (kv->type != BN_GGUF_STRING) return -1;
    out->len = le64(kv->data);
    out->ptr = (const char *)kv->data + 8;
    return 1;
}

int bn_gguf_get_arr(const bn_gguf *g, const char *key, uint32_t *elem_type, uint64_t *n) {
    const bn_gguf_kv *kv = bn_gguf_find_kv(g, key);
    if (!kv) return 0;
    if (kv->type != BN_GGUF_ARRAY) return -1;
    if (elem_type) *elem_type = kv->arr_type;
    if (n) *n = kv->arr_n;
    return 1;
}

bn_str bn_gguf_arr_str(const bn_gguf *g, const bn_gguf_kv *kv, uint64_t i) {
    bn_str s = {"", 0};
    int64_t k = kv - g->kv;
    if (k < 0 || k >= g->n_kv || kv->type != BN_GGUF_ARRAY || kv->arr_type != BN_GGUF_STRING || i >= kv->arr_n)
        return s;
    const uint8_t *p = g->base + g->str_index[k][i];
    s.len = le64(p);
    s.ptr = (const char *)p + 8;
    return s;
}

float bn_gguf_arr_f32(const bn_gguf_kv *kv, uint64_t i) {
    if (kv->type != BN_GGUF_ARRAY || i >= kv->arr_n) return 0.0f;
    if (kv->arr_type == BN_GGUF_FLOAT32) return read_f32(kv->data + 4 * i);
    if (kv->arr_type == BN_GGUF_FLOAT64) return (float)read_f64(kv->data + 8 * i);
    return 0.0f;
}

int64_t bn_gguf_arr_int(const bn_gguf_kv *kv, uint64_t i) {
    int64_t s = 0;
    uint64_t u = 0;
    int neg = 0;
    if (kv->type != BN_GGUF_ARRAY || i >= kv->arr_n) return 0;
    if (kv->arr_type == BN_GGUF_BOOL) return kv->data[i];
    uint64_t size = vtype_size(kv->arr_type);
    if (!size || !read_int(kv->arr_type, kv->data + size * i, &s, &u, &neg)) return 0;
    if (neg) return s;
    return u > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)u; /* saturate huge u64 */
}

int64_t bn_gguf_n_tensors(const bn_gguf *g) { return g->n_tensors; }

const bn_gguf_tensor *bn_gguf_tensor_at(const bn_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const bn_gguf_tensor *bn_gguf_find_tensor(const bn_gguf *g, const char *name) {
    if (!name) return NULL;
    int64_t i = map_find(&g->tensor_map, name, strlen(name));
    return i >= 0 ? &g->tensors[i] : NULL;
}
