/* Safetensors reader: single files and sharded checkpoints.
 *
 * File layout: u64 little-endian header length N, N bytes of JSON (an object
 * of name → {dtype, shape, data_offsets: [begin, end]}, plus an optional
 * "__metadata__" object), then the data; offsets are relative to the first
 * byte after the header. Everything is validated at open: a tensor record
 * that is handed out always points at n_bytes bytes inside its file.
 * Data pointers are not necessarily aligned (the format packs tensors back
 * to back), so readers must use memcpy-style loads. */
#include "format/safetensors.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/mapped_file.h"

#define ST_MAX_HEADER (100u * 1000u * 1000u) /* the reference implementation's limit */
#define ST_MAX_INDEX (100u * 1000u * 1000u)
#define ST_MAX_EXACT 9007199254740992.0 /* 2^53: the largest integer a JSON double holds exactly */
#define ST_MAX_SHARDS 4096               /* real checkpoints have tens; bounds the linear de-duplication */

struct bn_safetensors {
    bn_mapped_file *files;
    char **file_names; /* for messages and the shard check */
    int n_files;
    bn_st_tensor *t;
    int *file_of; /* which file each tensor came from */
    int n, cap;
    const char **map_keys; /* open addressing: name → tensor index */
    int *map_idx;
    size_t map_mask;
    uint64_t total_bytes;
};

typedef struct dtype_info {
    const char *name;
    bn_st_dtype dtype;
    int size;
} dtype_info;

static const dtype_info DTYPES[] = {
    {"BOOL", BN_ST_BOOL, 1}, {"U8", BN_ST_U8, 1},   {"I8", BN_ST_I8, 1},     {"I16", BN_ST_I16, 2},
    {"U16", BN_ST_U16, 2},   {"F16", BN_ST_F16, 2}, {"BF16", BN_ST_BF16, 2}, {"I32", BN_ST_I32, 4},
    {"U32", BN_ST_U32, 4},   {"F32", BN_ST_F32, 4}, {"F64", BN_ST_F64, 8},   {"I64", BN_ST_I64, 8},
    {"U64", BN_ST_U64, 8},
};
#define N_DTYPES ((int)(sizeof DTYPES / sizeof DTYPES[0]))

const char *bn_st_dtype_name(bn_st_dtype t) {
    for (int i = 0; i < N_DTYPES; i++)
        if (DTYPES[i].dtype == t) return DTYPES[i].name;
    return "unknown";
}

int bn_st_dtype_size(bn_st_dtype t) {
    for (int i = 0; i < N_DTYPES; i++)
        if (DTYPES[i].dtype == t) return DTYPES[i].size;
    return 0;
}

/* ---------------------------------------------------------- name table -- */

static size_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (size_t)h;
}

static size_t map_slot(const bn_safetensors *st, const char *name) {
    size_t i = hash_str(name) & st->map_mask;
    while (st->map_idx[i] >= 0 && strcmp(st->map_keys[i], name) != 0) i = (i + 1) & st->map_mask;
    return i;
}

/* Indexes every tensor by name; a name seen twice is an error (a JSON object
 * with a repeated key, or a tensor stored in two shards). */
static bitnet_status build_map(bn_safetensors *st, bitnet_error *err) {
    size_t cap = 16;
    while (cap < (size_t)st->n * 2) cap *= 2;
    st->map_keys = calloc(cap, sizeof *st->map_keys);
    st->map_idx = malloc(cap * sizeof *st->map_idx);
    if (!st->map_keys || !st->map_idx) return bn_fail(err, BITNET_E_NOMEM, "out of memory indexing tensors");
    for (size_t i = 0; i < cap; i++) st->map_idx[i] = -1;
    st->map_mask = cap - 1;
    for (int i = 0; i < st->n; i++) {
        size_t s = map_slot(st, st->t[i].name);
        if (st->map_idx[s] >= 0)
            return bn_fail(err, BITNET_E_FORMAT, "tensor '%s' appears twice (in %s and %s)", st->t[i].name,
                           st->file_names[st->file_of[st->map_idx[s]]], st->file_names[st->file_of[i]]);
        st->map_keys[s] = st->t[i].name;
        st->map_idx[s] = i;
    }
    return BITNET_OK;
}

/* --------------------------------------------------------- tensor entry -- */

/* A JSON number that is an exact non-negative integer (<= 2^53). */
static int json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= ST_MAX_EXACT) || d != (double)(uint64_t)d) return 0;
    *out = (uint64_t)d;
    return 1;
}

static bitnet_status read_dtype(const cJSON *e, const char *name, bn_st_tensor *t, bitnet_error *err) {
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    if (!cJSON_IsString(d)) return bn_fail(err, BITNET_E_FORMAT, "tensor '%s': missing or non-string \"dtype\"", name);
    for (int i = 0; i < N_DTYPES; i++)
        if (strcmp(d->valuestring, DTYPES[i].name) == 0) {
            t->dtype = DTYPES[i].dtype;
            return BITNET_OK;
        }
    return bn_fail(err, BITNET_E_UNSUPPORTED, "tensor '%s' has dtype '%.32s', which bitnet.c does not read", name,
                   d->valuestring);
}

static bitnet_status read_shape(const cJSON *e, const char *name, bn_st_tensor *t, bitnet_error *err) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(e, "shape");
    if (!cJSON_IsArray(s)) return bn_fail(err, BITNET_E_FORMAT, "tensor '%s': missing or non-array \"shape\"", name);
    int nd = cJSON_GetArraySize(s);
    if (nd > BN_ST_MAX_DIMS)
        return bn_fail(err, BITNET_E_UNSUPPORTED, "tensor '%s': %d dimensions (at most %d)", name, nd, BN_ST_MAX_DIMS);
    t->n_dims = 0;
    t->n_elems = 1; /* a 0-d tensor is a scalar */
    const cJSON *v;
    cJSON_ArrayForEach(v, s) {
        uint64_t d;
        if (!json_uint(v, &d))
            return bn_fail(err, BITNET_E_FORMAT, "tensor '%s': shape entry %d is not an integer in 0..2^53", name,
                           t->n_dims);
        if (d && (int64_t)d > INT64_MAX / (t->n_elems ? t->n_elems : 1))
            return bn_fail(err, BITNET_E_FORMAT, "tensor '%s': element count overflows", name);
        t->shape[t->n_dims++] = (int64_t)d;
        t->n_elems *= (int64_t)d;
    }
    return BITNET_OK;
}

/* data_offsets inside the data section and matching shape × dtype size. */
static bitnet_status read_span(const cJSON *e, const char *name, const uint8_t *data, uint64_t data_size,
                               bn_st_tensor *t, bitnet_error *err) {
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    uint64_t b, en;
    if (!cJSON_IsArray(o) || cJSON_GetArraySize(o) != 2 || !json_uint(o->child, &b) || !json_uint(o->child->next, &en))
        return bn_fail(err, BITNET_E_FORMAT, "tensor '%s': \"data_offsets\" must be two integers in 0..2^53", name);
    if (b > en || en > data_size)
        return bn_fail(err, BITNET_E_FORMAT, "tensor '%s': data_offsets [%llu, %llu] outside the %llu data bytes", name,
                       (unsigned long long)b, (unsigned long long)en, (unsigned long long)data_size);
    uint64_t es = (uint64_t)bn_st_dtype_size(t->dtype);
    if ((uint64_t)t->n_elems > UINT64_MAX / es || (uint64_t)t->n_elems * es != en - b)
        return bn_fail(err, BITNET_E_FORMAT, "tensor '%s': %llu bytes stored but its shape and dtype %s need %llu%s",
                       name, (unsigned long long)(en - b), bn_st_dtype_name(t->dtype),
                       (unsigned long long)t->n_elems * es, (uint64_t)t->n_elems > UINT64_MAX / es ? " (overflow)" : "");
    t->data = data + b;
    t->n_bytes = en - b;
    return BITNET_OK;
}

static bitnet_status add_tensor(bn_safetensors *st, const cJSON *e, int file, const uint8_t *data, uint64_t size,
                                bitnet_error *err) {
    char name[128];
    snprintf(name, sizeof name, "%s", e->string);
    if (!cJSON_IsObject(e)) return bn_fail(err, BITNET_E_FORMAT, "tensor '%s': entry is not a JSON object", name);
    if (st->n == st->cap) {
        int cap = st->cap ? st->cap * 2 : 64;
        bn_st_tensor *t = realloc(st->t, (size_t)cap * sizeof *t);
        if (t) st->t = t;
        int *f = realloc(st->file_of, (size_t)cap * sizeof *f);
        if (f) st->file_of = f;
        if (!t || !f) return bn_fail(err, BITNET_E_NOMEM, "out of memory reading tensor list");
        st->cap = cap;
    }
    bn_st_tensor *t = &st->t[st->n];
    memset(t, 0, sizeof *t);
    bitnet_status rc;
    if ((rc = read_dtype(e, name, t, err)) || (rc = read_shape(e, name, t, err)) ||
        (rc = read_span(e, name, data, size, t, err)))
        return rc;
    if (!(t->name = strdup(e->string))) return bn_fail(err, BITNET_E_NOMEM, "out of memory");
    st->file_of[st->n++] = file;
    return BITNET_OK;
}

/* --------------------------------------------------------- one file -- */

typedef struct span {
    const uint8_t *begin, *end;
    int idx;
} span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    return (x->begin > y->begin) - (x->begin < y->begin);
}

/* Tensors [first, st->n) all come from one file: none may share bytes. */
static bitnet_status check_overlaps(const bn_safetensors *st, int first, bitnet_error *err) {
    int n = 0;
    span *s = malloc((size_t)(st->n - first + 1) * sizeof *s);
    if (!s) return bn_fail(err, BITNET_E_NOMEM, "out of memory");
    for (int i = first; i < st->n; i++)
        if (st->t[i].n_bytes) s[n++] = (span){st->t[i].data, st->t[i].data + st->t[i].n_bytes, i};
    qsort(s, (size_t)n, sizeof *s, span_cmp);
    bitnet_status rc = BITNET_OK;
    for (int i = 0; i + 1 < n && !rc; i++)
        if (s[i].end > s[i + 1].begin)
            rc = bn_fail(err, BITNET_E_FORMAT, "tensors '%s' and '%s' overlap in the file", st->t[s[i].idx].name,
                         st->t[s[i + 1].idx].name);
    free(s);
    return rc;
}

/* The JSON header, parsed from a NUL-terminated copy so cJSON can never read
 * past it, and with only whitespace allowed after the object (the format pads
 * with spaces). */
static bitnet_status parse_header(const uint8_t *p, uint64_t len, cJSON **out, bitnet_error *err) {
    char *text = malloc((size_t)len + 1);
    if (!text) return bn_fail(err, BITNET_E_NOMEM, "out of memory for a %llu-byte header", (unsigned long long)len);
    memcpy(text, p, (size_t)len);
    text[len] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, (size_t)len, &end, 0);
    bitnet_status rc = BITNET_OK;
    if (!root) {
        rc = bn_fail(err, BITNET_E_FORMAT, "header is not valid JSON (error near byte %llu of the file)",
                     (unsigned long long)(end ? (uint64_t)(end - text) + 8 : 8));
    } else if (!cJSON_IsObject(root)) {
        rc = bn_fail(err, BITNET_E_FORMAT, "header is not a JSON object");
    } else {
        for (; end && *end; end++)
            if (*end != ' ' && *end != '\t' && *end != '\n' && *end != '\r') {
                rc = bn_fail(err, BITNET_E_FORMAT, "unexpected bytes after the JSON header (byte %llu of the file)",
                             (unsigned long long)(end - text) + 8);
                break;
            }
    }
    free(text);
    if (rc) cJSON_Delete(root);
    else *out = root;
    return rc;
}

static bitnet_status parse_file(bn_safetensors *st, int file, const uint8_t *p, uint64_t size, bitnet_error *err) {
    if (size < 8)
        return bn_fail(err, BITNET_E_FORMAT, "file too small for a safetensors header (%llu bytes)", (unsigned long long)size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | p[i];
    if (hlen > size - 8)
        return bn_fail(err, BITNET_E_FORMAT, "header length %llu exceeds the file size (%llu bytes)",
                       (unsigned long long)hlen, (unsigned long long)size);
    if (hlen > ST_MAX_HEADER)
        return bn_fail(err, BITNET_E_FORMAT, "header length %llu is over the %u-byte limit", (unsigned long long)hlen,
                       ST_MAX_HEADER);
    if (hlen < 2 || p[8] != '{') return bn_fail(err, BITNET_E_FORMAT, "header does not start with a JSON object");
    cJSON *root = NULL;
    bitnet_status rc = parse_header(p + 8, hlen, &root, err);
    if (rc) return rc;
    int first = st->n;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(e)) rc = bn_fail(err, BITNET_E_FORMAT, "\"__metadata__\" is not a JSON object");
        } else {
            rc = add_tensor(st, e, file, p + 8 + hlen, size - 8 - hlen, err);
        }
        if (rc) break;
    }
    cJSON_Delete(root);
    return rc ? rc : check_overlaps(st, first, err);
}

/* ---------------------------------------------------------------- open -- */

static bn_safetensors *st_new(int n_files) {
    bn_safetensors *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    st->files = calloc((size_t)n_files, sizeof *st->files);
    st->file_names = calloc((size_t)n_files, sizeof *st->file_names);
    st->n_files = n_files;
    if (!st->files || !st->file_names) {
        free(st->files);
        free(st->file_names);
        free(st);
        return NULL;
    }
    return st;
}

void bn_safetensors_close(bn_safetensors *st) {
    if (!st) return;
    for (int i = 0; i < st->n; i++) free((char *)st->t[i].name);
    for (int i = 0; i < st->n_files; i++) {
        bn_mapped_file_close(&st->files[i]);
        free(st->file_names[i]);
    }
    free(st->files);
    free(st->file_names);
    free(st->t);
    free(st->file_of);
    free(st->map_keys);
    free(st->map_idx);
    free(st);
}

static bitnet_status finish(bn_safetensors **out, bn_safetensors *st, bitnet_status rc, bitnet_error *err) {
    if (!rc) rc = build_map(st, err);
    if (rc) {
        bn_safetensors_close(st);
        return rc;
    }
    *out = st;
    return BITNET_OK;
}

bitnet_status bn_safetensors_open_memory(bn_safetensors **out, const void *data, size_t size, bitnet_error *err) {
    *out = NULL;
    if (!data && size) return bn_fail(err, BITNET_E_INVALID_ARG, "safetensors buffer is NULL");
    bn_safetensors *st = st_new(1);
    if (!st || !(st->file_names[0] = strdup("<memory>"))) {
        bn_safetensors_close(st);
        return bn_fail(err, BITNET_E_NOMEM, "out of memory");
    }
    st->total_bytes = size;
    return finish(out, st, parse_file(st, 0, data, size, err), err);
}

/* Maps path as file slot i and parses it; errors name the path. */
static bitnet_status load_file(bn_safetensors *st, int i, const char *path, int use_mmap, bitnet_error *err) {
    if (!st->file_names[i] && !(st->file_names[i] = strdup(path))) return bn_fail(err, BITNET_E_NOMEM, "out of memory");
    bitnet_status rc = bn_mapped_file_open(&st->files[i], path, use_mmap, err);
    if (rc) return rc;
    st->total_bytes += st->files[i].size;
    if ((rc = parse_file(st, i, st->files[i].data, st->files[i].size, err))) bn_err_prefix(err, "%s", path);
    return rc;
}

bitnet_status bn_safetensors_open_file(bn_safetensors **out, const char *path, int use_mmap, bitnet_error *err) {
    *out = NULL;
    bn_safetensors *st = st_new(1);
    if (!st) return bn_fail(err, BITNET_E_NOMEM, "out of memory");
    return finish(out, st, load_file(st, 0, path, use_mmap, err), err);
}

/* --------------------------------------------------------------- shards -- */

/* A shard name from the index must name a file inside the model folder. */
static int safe_shard_name(const char *s) {
    return s[0] && !strchr(s, '/') && !strchr(s, '\\') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static bitnet_status read_index(const char *path, cJSON **map_out, cJSON **root_out, bitnet_error *err) {
    bn_mapped_file f;
    bitnet_status rc = bn_mapped_file_open(&f, path, 0, err);
    if (rc) return rc;
    cJSON *root = NULL;
    if (f.size > ST_MAX_INDEX) rc = bn_fail(err, BITNET_E_FORMAT, "%s: file too large for an index", path);
    else if (!(root = cJSON_ParseWithLength((const char *)f.data, f.size)))
        rc = bn_fail(err, BITNET_E_FORMAT, "%s: not valid JSON", path);
    bn_mapped_file_close(&f);
    if (rc) return rc;
    cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(map)) {
        cJSON_Delete(root);
        return bn_fail(err, BITNET_E_FORMAT, "%s: no \"weight_map\" object", path);
    }
    *map_out = map;
    *root_out = root;
    return BITNET_OK;
}

/* Distinct shard names in first-seen order; each entry's file validated. */
static bitnet_status list_shards(const cJSON *map, const char *index, char ***names, int *n, bitnet_error *err) {
    int cap = 0;
    const cJSON *e;
    *names = NULL;
    *n = 0;
    cJSON_ArrayForEach(e, map) {
        if (!cJSON_IsString(e) || !safe_shard_name(e->valuestring))
            return bn_fail(err, BITNET_E_FORMAT, "%s: tensor '%.100s' maps to an invalid file name", index, e->string);
        int k = 0;
        while (k < *n && strcmp((*names)[k], e->valuestring) != 0) k++;
        if (k < *n) continue;
        if (*n == ST_MAX_SHARDS) return bn_fail(err, BITNET_E_FORMAT, "%s: more than %d shard files", index, ST_MAX_SHARDS);
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            char **p = realloc(*names, (size_t)cap * sizeof *p);
            if (!p) return bn_fail(err, BITNET_E_NOMEM, "out of memory");
            *names = p;
        }
        if (!((*names)[*n] = strdup(e->valuestring))) return bn_fail(err, BITNET_E_NOMEM, "out of memory");
        (*n)++;
    }
    if (*n == 0) return bn_fail(err, BITNET_E_FORMAT, "%s: \"weight_map\" is empty", index);
    return BITNET_OK;
}

/* Every tensor the index names must be in the shard it names. */
static bitnet_status check_index(const bn_safetensors *st, const cJSON *map, const char *index, bitnet_error *err) {
    const cJSON *e;
    cJSON_ArrayForEach(e, map) {
        const bn_st_tensor *t = bn_safetensors_find(st, e->string);
        int f = t ? st->file_of[t - st->t] : -1;
        const char *base = f >= 0 ? strrchr(st->file_names[f], '/') : NULL;
        if (!t || strcmp(base ? base + 1 : st->file_names[f], e->valuestring) != 0)
            return bn_fail(err, BITNET_E_FORMAT, "%s: tensor '%.100s' is not in %s, where the index puts it", index,
                           e->string, e->valuestring);
    }
    return BITNET_OK;
}

static bitnet_status open_sharded(bn_safetensors **out, const char *dir, const char *index, int use_mmap,
                                  bitnet_error *err) {
    cJSON *root = NULL, *map = NULL;
    char **names = NULL;
    int n = 0;
    bitnet_status rc = read_index(index, &map, &root, err);
    if (!rc) rc = list_shards(map, index, &names, &n, err);
    bn_safetensors *st = rc ? NULL : st_new(n);
    if (!rc && !st) rc = bn_fail(err, BITNET_E_NOMEM, "out of memory");
    for (int i = 0; i < n && !rc; i++) {
        size_t len = strlen(dir) + strlen(names[i]) + 2;
        if (!(st->file_names[i] = malloc(len))) rc = bn_fail(err, BITNET_E_NOMEM, "out of memory");
        else {
            snprintf(st->file_names[i], len, "%s/%s", dir, names[i]);
            rc = load_file(st, i, st->file_names[i], use_mmap, err);
        }
    }
    if (!rc) rc = build_map(st, err);
    if (!rc) rc = check_index(st, map, index, err);
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    cJSON_Delete(root);
    if (rc) {
        bn_safetensors_close(st);
        return rc;
    }
    *out = st;
    return BITNET_OK;
}

bitnet_status bn_safetensors_open_dir(bn_safetensors **out, const char *dir, int use_mmap, bitnet_error *err) {
    *out = NULL;
    char path[4096];
    struct stat sb;
    if (snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir) >= (int)sizeof path)
        return bn_fail(err, BITNET_E_INVALID_ARG, "path too long: %s", dir);
    if (stat(path, &sb) == 0) return open_sharded(out, dir, path, use_mmap, err);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (stat(path, &sb) != 0)
        return bn_fail(err, BITNET_E_IO, "%s: no model.safetensors or model.safetensors.index.json", dir);
    return bn_safetensors_open_file(out, path, use_mmap, err);
}

/* ----------------------------------------------------------- accessors -- */

int bn_safetensors_n(const bn_safetensors *st) { return st->n; }

const bn_st_tensor *bn_safetensors_at(const bn_safetensors *st, int i) {
    return i >= 0 && i < st->n ? &st->t[i] : NULL;
}

const bn_st_tensor *bn_safetensors_find(const bn_safetensors *st, const char *name) {
    if (!name || !st->map_idx) return NULL;
    int i = st->map_idx[map_slot(st, name)];
    return i >= 0 ? &st->t[i] : NULL;
}

uint64_t bn_safetensors_total_bytes(const bn_safetensors *st) { return st->total_bytes; }
