/* GGUF reader: small files built here byte by byte (a writer independent of
 * src/format/gguf_writer.c), then a battery of hostile variants — each must
 * fail cleanly with a message, and never read outside the buffer (every
 * variant is parsed from an exact-size malloc'd copy, so ASan sees any
 * over-read). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/ggml_types.h"
#include "format/gguf.h"

/* ---------------------------------------------------------------- writer -- */

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void put_u8(buf *b, uint8_t v) { put(b, &v, 1); }
static void put_u16(buf *b, uint16_t v) { uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)}; put(b, x, 2); }
static void put_u32(buf *b, uint32_t v) {
    for (int i = 0; i < 4; i++) put_u8(b, (uint8_t)(v >> (8 * i)));
}
static void put_u64(buf *b, uint64_t v) {
    for (int i = 0; i < 8; i++) put_u8(b, (uint8_t)(v >> (8 * i)));
}
static void put_f32(buf *b, float f) { uint32_t u; memcpy(&u, &f, 4); put_u32(b, u); }
static void put_f64(buf *b, double f) { uint64_t u; memcpy(&u, &f, 8); put_u64(b, u); }
static void put_str(buf *b, const char *s) { put_u64(b, strlen(s)); put(b, s, strlen(s)); }

static void patch_u32(buf *b, size_t at, uint32_t v) {
    for (int i = 0; i < 4; i++) b->p[at + i] = (uint8_t)(v >> (8 * i));
}
static void patch_u64(buf *b, size_t at, uint64_t v) {
    for (int i = 0; i < 8; i++) b->p[at + i] = (uint8_t)(v >> (8 * i));
}

/* Knobs for building variants that a byte patch cannot express. */
typedef struct opts {
    uint32_t version;
    int align_kv;   /* 0: absent, 1: u32, 2: u64 */
    uint64_t align; /* value written; also the layout alignment when it is usable */
    int dup_key, dup_tensor;
    int nest;        /* levels of the nested array (default 2) */
    const char *name_b; /* name of tensor 'b' */
} opts;

#define N_T 4
/* Where interesting fields landed, for patching. */
typedef struct layout {
    size_t n_tensors, n_kv, key0_len, arch_len, u8_type, bool_val, boolarr1, strarr_type, strarr_n, u32arr_n,
        str1_len, nested_start, nested_end;
    size_t t_name[N_T + 1], t_ndims[N_T + 1], t_dim[N_T + 1], t_type[N_T + 1], t_off[N_T + 1];
    uint64_t off[N_T + 1];
    size_t infos_end, data_start;
    uint32_t align;
} layout;

static void kv_head(buf *b, const char *key, uint32_t type) {
    put_str(b, key);
    put_u32(b, type);
}

static void put_nested(buf *b, int level, int total) {
    if (level == total - 1) {
        put_u32(b, BN_GGUF_UINT8);
        put_u64(b, 2);
        put_u8(b, 1);
        put_u8(b, 2);
        return;
    }
    put_u32(b, BN_GGUF_ARRAY);
    put_u64(b, 2);
    put_nested(b, level + 1, total);
    put_nested(b, level + 1, total);
}

static void put_scalars(buf *b, layout *L) {
    L->key0_len = b->n;
    kv_head(b, "general.architecture", BN_GGUF_STRING);
    L->arch_len = b->n;
    put_str(b, "bitnet-b1.58");
    put_str(b, "test.u8");
    L->u8_type = b->n;
    put_u32(b, BN_GGUF_UINT8);
    put_u8(b, 200);
    kv_head(b, "test.i8", BN_GGUF_INT8), put_u8(b, (uint8_t)-5);
    kv_head(b, "test.u16", BN_GGUF_UINT16), put_u16(b, 60000);
    kv_head(b, "test.i16", BN_GGUF_INT16), put_u16(b, (uint16_t)-300);
    kv_head(b, "test.u32", BN_GGUF_UINT32), put_u32(b, 4000000000u);
    kv_head(b, "test.i32", BN_GGUF_INT32), put_u32(b, (uint32_t)-7);
    kv_head(b, "test.f32", BN_GGUF_FLOAT32), put_f32(b, 1.5f);
    kv_head(b, "test.bool", BN_GGUF_BOOL);
    L->bool_val = b->n;
    put_u8(b, 1);
    kv_head(b, "test.u64", BN_GGUF_UINT64), put_u64(b, 1ull << 40);
    kv_head(b, "test.i64", BN_GGUF_INT64), put_u64(b, (uint64_t)-(1ll << 40));
    kv_head(b, "test.f64", BN_GGUF_FLOAT64), put_f64(b, 0.25);
}

static void put_arrays(buf *b, const opts *o, layout *L) {
    kv_head(b, "test.strarr", BN_GGUF_ARRAY);
    L->strarr_type = b->n;
    put_u32(b, BN_GGUF_STRING);
    L->strarr_n = b->n;
    put_u64(b, 3);
    put_str(b, "a");
    L->str1_len = b->n;
    put_str(b, "bc");
    put_str(b, "");
    kv_head(b, "test.f32arr", BN_GGUF_ARRAY), put_u32(b, BN_GGUF_FLOAT32), put_u64(b, 3);
    put_f32(b, 1.0f), put_f32(b, -2.0f), put_f32(b, 3.5f);
    kv_head(b, "test.u32arr", BN_GGUF_ARRAY), put_u32(b, BN_GGUF_UINT32);
    L->u32arr_n = b->n;
    put_u64(b, 2);
    put_u32(b, 7), put_u32(b, 4000000000u);
    kv_head(b, "test.boolarr", BN_GGUF_ARRAY), put_u32(b, BN_GGUF_BOOL), put_u64(b, 3);
    put_u8(b, 0);
    L->boolarr1 = b->n;
    put_u8(b, 1), put_u8(b, 1);
    kv_head(b, "test.nested", BN_GGUF_ARRAY);
    L->nested_start = b->n + 12; /* elements start after the element type and count */
    put_nested(b, 0, o->nest ? o->nest : 2);
    L->nested_end = b->n;
}

static uint64_t align_up(uint64_t x, uint64_t a) { return x + (a - x % a) % a; }

static const char *const T_NAME[N_T + 1] = {"a", "b", "c", "d", "a"};
static const uint32_t T_TYPE[N_T + 1] = {BN_GGML_F32, BN_GGML_F16, BN_GGML_I2_S, BN_GGML_TQ2_0, BN_GGML_F32};
static const uint64_t T_NE[N_T + 1][2] = {{4, 2}, {8, 1}, {128, 2}, {256, 1}, {8, 1}};
static const int T_NDIMS[N_T + 1] = {2, 1, 2, 1, 1};
static const uint64_t T_BYTES[N_T + 1] = {32, 16, 96, 66, 32};

static void put_tensor_infos(buf *b, const opts *o, layout *L, int nt) {
    uint64_t off = 0;
    for (int i = 0; i < nt; i++) {
        L->t_name[i] = b->n;
        put_str(b, i == 1 && o->name_b ? o->name_b : T_NAME[i]);
        L->t_ndims[i] = b->n;
        put_u32(b, (uint32_t)T_NDIMS[i]);
        L->t_dim[i] = b->n;
        for (int j = 0; j < T_NDIMS[i]; j++) put_u64(b, T_NE[i][j]);
        L->t_type[i] = b->n;
        put_u32(b, T_TYPE[i]);
        L->t_off[i] = b->n;
        off = align_up(off, L->align);
        L->off[i] = off;
        put_u64(b, off);
        off += T_BYTES[i];
    }
}

/* Recognisable tensor bytes: a = 1..8 (f32), b = 1..8 (f16), c = I2_S with
 * scale 2, d = TQ2_0 all-zero codes with d = 1; the dup tensor = zeros. */
static void put_tensor_data(buf *b, layout *L, int nt) {
    static const uint16_t halves[8] = {0x3C00, 0x4000, 0x4200, 0x4400, 0x4500, 0x4600, 0x4700, 0x4800};
    for (int i = 0; i < nt; i++) {
        while (b->n < L->data_start + L->off[i]) put_u8(b, 0);
        if (i == 0) for (int k = 0; k < 8; k++) put_f32(b, (float)(k + 1));
        if (i == 1) for (int k = 0; k < 8; k++) put_u16(b, halves[k]);
        if (i == 2) {
            for (int k = 0; k < 64; k++) put_u8(b, (uint8_t)(k * 7 + 1));
            put_f32(b, 2.0f);
            for (int k = 0; k < 28; k++) put_u8(b, 0);
        }
        if (i == 3) {
            for (int k = 0; k < 64; k++) put_u8(b, 0x55);
            put_u16(b, 0x3C00);
        }
        if (i == 4) for (int k = 0; k < 32; k++) put_u8(b, 0);
    }
}

static buf build(const opts *o, layout *L) {
    buf b = {0};
    memset(L, 0, sizeof *L);
    int nt = N_T + (o->dup_tensor ? 1 : 0);
    uint64_t nkv = 17 + (o->align_kv ? 1 : 0) + (o->dup_key ? 1 : 0);
    L->align = 32;
    if (o->align_kv && o->align && o->align <= 4096 && !(o->align & (o->align - 1))) L->align = (uint32_t)o->align;
    put(&b, "GGUF", 4);
    put_u32(&b, o->version ? o->version : 3);
    L->n_tensors = b.n;
    put_u64(&b, (uint64_t)nt);
    L->n_kv = b.n;
    put_u64(&b, nkv);
    put_scalars(&b, L);
    put_arrays(&b, o, L);
    if (o->align_kv == 1) kv_head(&b, "general.alignment", BN_GGUF_UINT32), put_u32(&b, (uint32_t)o->align);
    if (o->align_kv == 2) kv_head(&b, "general.alignment", BN_GGUF_UINT64), put_u64(&b, o->align);
    if (o->dup_key) kv_head(&b, "test.u32", BN_GGUF_UINT32), put_u32(&b, 1);
    put_tensor_infos(&b, o, L, nt);
    L->infos_end = b.n;
    L->data_start = align_up(b.n, L->align);
    put_tensor_data(&b, L, nt);
    return b;
}

static buf build_default(layout *L) {
    opts o = {0};
    return build(&o, L);
}

/* ------------------------------------------------------------- helpers -- */

/* Parses an exact-size copy of p[0..n); a failure must leave a one-line message. */
static bitnet_status try_open(const uint8_t *p, size_t n, bitnet_error *e) {
    uint8_t *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    if (n) memcpy(copy, p, n);
    bn_gguf *g = NULL;
    memset(e, 0, sizeof *e);
    bitnet_status rc = bn_gguf_open_memory(&g, copy, n, e);
    if (rc == BITNET_OK) {
        assert_non_null(g);
        bn_gguf_close(g);
    } else {
        assert_null(g);
        assert_int_equal(e->code, rc);
        assert_true(e->message[0] != '\0');
        assert_null(strchr(e->message, '\n')); /* one line */
    }
    free(copy);
    return rc;
}

static void expect_fail(const buf *b, bitnet_status code, const char *substr) {
    bitnet_error e;
    bitnet_status rc = try_open(b->p, b->n, &e);
    if (rc == BITNET_OK || (code && rc != code) || (substr && !strstr(e.message, substr)))
        fail_msg("expected failure %d containing '%s', got %d: '%s'", code, substr ? substr : "", rc, e.message);
}

static void expect_ok(const buf *b) {
    bitnet_error e;
    bitnet_status rc = try_open(b->p, b->n, &e);
    if (rc != BITNET_OK) fail_msg("expected success, got %d: %s", rc, e.message);
}

/* ---------------------------------------------------------- valid files -- */

static void check_scalars(const bn_gguf *g) {
    uint32_t u;
    int64_t i;
    float f;
    int bo;
    bn_str s;
    assert_int_equal(bn_gguf_get_str(g, "general.architecture", &s), 1);
    assert_true(bn_str_eq(s, "bitnet-b1.58"));
    assert_false(bn_str_eq(s, "bitnet-b1.5"));
    assert_int_equal(bn_gguf_get_u32(g, "test.u8", &u), 1), assert_int_equal(u, 200);
    assert_int_equal(bn_gguf_get_u32(g, "test.u16", &u), 1), assert_int_equal(u, 60000);
    assert_int_equal(bn_gguf_get_u32(g, "test.u32", &u), 1), assert_int_equal(u, 4000000000u);
    assert_int_equal(bn_gguf_get_u32(g, "test.i8", &u), -1);   /* negative */
    assert_int_equal(bn_gguf_get_u32(g, "test.u64", &u), -1);  /* too big */
    assert_int_equal(bn_gguf_get_u32(g, "test.f32", &u), -1);  /* not an integer */
    assert_int_equal(bn_gguf_get_u32(g, "test.strarr", &u), -1);
    assert_int_equal(bn_gguf_get_u32(g, "no.such.key", &u), 0);
    assert_int_equal(bn_gguf_get_i64(g, "test.i8", &i), 1), assert_int_equal(i, -5);
    assert_int_equal(bn_gguf_get_i64(g, "test.i16", &i), 1), assert_int_equal(i, -300);
    assert_int_equal(bn_gguf_get_i64(g, "test.i32", &i), 1), assert_int_equal(i, -7);
    assert_int_equal(bn_gguf_get_i64(g, "test.i64", &i), 1), assert_true(i == -(1ll << 40));
    assert_int_equal(bn_gguf_get_i64(g, "test.u64", &i), 1), assert_true(i == (1ll << 40));
    assert_int_equal(bn_gguf_get_f32(g, "test.f32", &f), 1), assert_true(f == 1.5f);
    assert_int_equal(bn_gguf_get_f32(g, "test.f64", &f), 1), assert_true(f == 0.25f);
    assert_int_equal(bn_gguf_get_f32(g, "test.u32", &f), -1);
    assert_int_equal(bn_gguf_get_bool(g, "test.bool", &bo), 1), assert_int_equal(bo, 1);
    assert_int_equal(bn_gguf_get_bool(g, "test.u8", &bo), -1);
    assert_int_equal(bn_gguf_get_str(g, "test.u8", &s), -1);
}

static void check_arrays(const bn_gguf *g, const layout *L) {
    uint32_t et;
    uint64_t n;
    assert_int_equal(bn_gguf_get_arr(g, "test.strarr", &et, &n), 1);
    assert_int_equal(et, BN_GGUF_STRING), assert_int_equal(n, 3);
    assert_int_equal(bn_gguf_get_arr(g, "test.u8", &et, &n), -1);
    assert_int_equal(bn_gguf_get_arr(g, "nope", &et, &n), 0);
    const bn_gguf_kv *kv = bn_gguf_find_kv(g, "test.strarr");
    assert_true(bn_str_eq(bn_gguf_arr_str(g, kv, 0), "a"));
    assert_true(bn_str_eq(bn_gguf_arr_str(g, kv, 1), "bc"));
    assert_true(bn_str_eq(bn_gguf_arr_str(g, kv, 2), ""));
    kv = bn_gguf_find_kv(g, "test.f32arr");
    assert_true(bn_gguf_arr_f32(kv, 0) == 1.0f && bn_gguf_arr_f32(kv, 1) == -2.0f && bn_gguf_arr_f32(kv, 2) == 3.5f);
    kv = bn_gguf_find_kv(g, "test.u32arr");
    assert_int_equal(bn_gguf_arr_int(kv, 0), 7);
    assert_int_equal(bn_gguf_arr_int(kv, 1), 4000000000ll);
    kv = bn_gguf_find_kv(g, "test.boolarr");
    assert_int_equal(bn_gguf_arr_int(kv, 0), 0);
    assert_int_equal(bn_gguf_arr_int(kv, 1), 1);
    kv = bn_gguf_find_kv(g, "test.nested");
    assert_int_equal(kv->arr_type, BN_GGUF_ARRAY);
    assert_int_equal(kv->arr_n, 2);
    assert_int_equal(bn_gguf_kv_value_bytes(g, kv), L->nested_end - L->nested_start);
    assert_int_equal(bn_gguf_kv_value_bytes(g, bn_gguf_find_kv(g, "test.u16")), 2);
    assert_int_equal(bn_gguf_kv_value_bytes(g, bn_gguf_find_kv(g, "general.architecture")), 8 + 12);
}

static void check_tensors(const bn_gguf *g, const uint8_t *base, const layout *L) {
    assert_int_equal(bn_gguf_n_tensors(g), N_T);
    assert_int_equal(bn_gguf_data_offset(g), L->data_start);
    const bn_gguf_tensor *a = bn_gguf_find_tensor(g, "a"), *b = bn_gguf_find_tensor(g, "b");
    const bn_gguf_tensor *c = bn_gguf_find_tensor(g, "c"), *d = bn_gguf_find_tensor(g, "d");
    assert_non_null(a), assert_non_null(b), assert_non_null(c), assert_non_null(d);
    assert_null(bn_gguf_find_tensor(g, "e"));
    assert_ptr_equal(bn_gguf_tensor_at(g, 2), c);
    assert_null(bn_gguf_tensor_at(g, 4));
    assert_int_equal(a->n_dims, 2), assert_int_equal(a->ne[0], 4), assert_int_equal(a->ne[1], 2);
    assert_int_equal(a->ne[2], 1), assert_int_equal(a->n_elems, 8), assert_int_equal(a->n_bytes, 32);
    assert_int_equal(c->type, BN_GGML_I2_S), assert_int_equal(c->n_bytes, 96), assert_int_equal(c->n_elems, 256);
    assert_int_equal(d->type, BN_GGML_TQ2_0), assert_int_equal(d->n_bytes, 66);
    for (int i = 0; i < N_T; i++) {
        const bn_gguf_tensor *t = bn_gguf_tensor_at(g, i);
        assert_int_equal(t->offset, L->off[i]);
        assert_ptr_equal(t->data, base + L->data_start + L->off[i]);
    }
    float y[8];
    bn_ggml_dequantize_row(a->type, a->data, y, 8, 0);
    for (int k = 0; k < 8; k++) assert_true(y[k] == (float)(k + 1));
    bn_ggml_dequantize_row(b->type, b->data, y, 8, 0);
    for (int k = 0; k < 8; k++) assert_true(y[k] == (float)(k + 1));
    assert_true(bn_i2s_scale(c->data, c->n_elems) == 2.0f);
}

static void test_valid_file(void **state) {
    (void)state;
    layout L;
    buf b = build_default(&L);
    bn_gguf *g = NULL;
    bitnet_error e = {0};
    assert_int_equal(bn_gguf_open_memory(&g, b.p, b.n, &e), BITNET_OK);
    assert_int_equal(bn_gguf_version(g), 3);
    assert_int_equal(bn_gguf_alignment(g), 32);
    assert_int_equal(bn_gguf_file_size(g), b.n);
    assert_int_equal(bn_gguf_n_kv(g), 17);
    assert_true(bn_str_eq(bn_gguf_kv_at(g, 0)->key, "general.architecture"));
    assert_null(bn_gguf_kv_at(g, 17));
    check_scalars(g);
    check_arrays(g, &L);
    check_tensors(g, b.p, &L);
    bn_gguf_close(g);
    free(b.p);
}

static void test_valid_variants(void **state) {
    (void)state;
    layout L;
    static const uint64_t aligns[] = {1, 8, 64, 4096};
    for (size_t i = 0; i < sizeof aligns / sizeof aligns[0]; i++) {
        opts o = {.align_kv = 1, .align = aligns[i]};
        buf b = build(&o, &L);
        bn_gguf *g = NULL;
        bitnet_error e = {0};
        assert_int_equal(bn_gguf_open_memory(&g, b.p, b.n, &e), BITNET_OK);
        assert_int_equal(bn_gguf_alignment(g), aligns[i]);
        check_tensors(g, b.p, &L);
        bn_gguf_close(g);
        free(b.p);
    }
    opts v2 = {.version = 2}, deep = {.nest = 4};
    opts long_name = {.name_b = "b123456789b123456789b123456789b123456789b123456789b123456789abc"}; /* 63 bytes */
    buf b = build(&v2, &L);
    expect_ok(&b);
    free(b.p);
    b = build(&deep, &L);
    expect_ok(&b);
    free(b.p);
    b = build(&long_name, &L);
    expect_ok(&b);
    free(b.p);
    /* A file with no tensors need not have a padded data section. */
    b = (buf){0};
    put(&b, "GGUF", 4), put_u32(&b, 3), put_u64(&b, 0), put_u64(&b, 1);
    kv_head(&b, "k", BN_GGUF_BOOL), put_u8(&b, 0);
    expect_ok(&b);
    free(b.p);
}

static void test_open_file(void **state) {
    (void)state;
    layout L;
    buf b = build_default(&L);
    char path[] = "/tmp/bitnet_test_gguf_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "wb");
    assert_int_equal(fwrite(b.p, 1, b.n, f), b.n);
    fclose(f);
    for (int mm = 0; mm < 2; mm++) {
        bn_gguf *g = NULL;
        bitnet_error e = {0};
        assert_int_equal(bn_gguf_open(&g, path, mm, &e), BITNET_OK);
        check_scalars(g);
        bn_gguf_close(g);
    }
    /* Errors from a file name the file. */
    f = fopen(path, "wb");
    fwrite(b.p, 1, 100, f);
    fclose(f);
    bn_gguf *g = NULL;
    bitnet_error e = {0};
    assert_int_equal(bn_gguf_open(&g, path, 1, &e), BITNET_E_FORMAT);
    assert_non_null(strstr(e.message, path));
    remove(path);
    assert_int_equal(bn_gguf_open(&g, path, 1, &e), BITNET_E_IO);
    free(b.p);
}

/* ------------------------------------------------------------- hostile -- */

static void test_truncated_everywhere(void **state) {
    (void)state;
    layout L;
    buf b = build_default(&L);
    for (size_t n = 0; n < b.n; n++) {
        bitnet_error e;
        if (try_open(b.p, n, &e) == BITNET_OK) fail_msg("prefix of %zu bytes (of %zu) opened", n, b.n);
    }
    free(b.p);
}

static void test_bad_header(void **state) {
    (void)state;
    layout L;
    buf b = build_default(&L);
    b.p[0] = 'X';
    expect_fail(&b, BITNET_E_FORMAT, "not a GGUF");
    memcpy(b.p, "FUGG", 4);
    expect_fail(&b, BITNET_E_UNSUPPORTED, "big-endian");
    memcpy(b.p, "GGUF", 4);
    patch_u32(&b, 4, 1);
    expect_fail(&b, BITNET_E_UNSUPPORTED, "version 1");
    patch_u32(&b, 4, 4);
    expect_fail(&b, BITNET_E_UNSUPPORTED, "version 4");
    patch_u32(&b, 4, 0);
    expect_fail(&b, BITNET_E_FORMAT, "version 0");
    patch_u32(&b, 4, 0x03000000u); /* version 3 written big-endian */
    expect_fail(&b, BITNET_E_UNSUPPORTED, "big-endian");
    patch_u32(&b, 4, 3);
    patch_u64(&b, L.n_tensors, 1ull << 62);
    expect_fail(&b, BITNET_E_FORMAT, "tensor count");
    patch_u64(&b, L.n_tensors, UINT64_MAX);
    expect_fail(&b, BITNET_E_FORMAT, "tensor count");
    patch_u64(&b, L.n_tensors, N_T);
    patch_u64(&b, L.n_kv, 1ull << 60);
    expect_fail(&b, BITNET_E_FORMAT, "metadata count");
    patch_u64(&b, L.n_kv, 18); /* one more kv than present: the tensor infos get read as a kv */
    expect_fail(&b, 0, NULL);
    patch_u64(&b, L.n_kv, 16); /* one fewer: the last kv gets read as a tensor info */
    expect_fail(&b, BITNET_E_FORMAT, NULL);
    free(b.p);
}

static void test_bad_strings(void **state) {
    (void)state;
    layout L;
    buf b = build_default(&L);
    static const uint64_t key_lens[] = {0, 65536, 1ull << 60, UINT64_MAX};
    for (size_t i = 0; i < 4; i++) {
        patch_u64(&b, L.key0_len, key_lens[i]);
        expect_fail(&b, BITNET_E_FORMAT, "key");
    }
    patch_u64(&b, L.key0_len, 20);
    static const uint64_t str_lens[] = {1ull << 62, UINT64_MAX, 100000};
    for (size_t i = 0; i < 3; i++) {
        patch_u64(&b, L.arch_len, str_lens[i]);
        expect_fail(&b, BITNET_E_FORMAT, "general.architecture");
    }
    patch_u64(&b, L.arch_len, 12);
    patch_u64(&b, L.str1_len, 1ull << 61); /* a string inside an array */
    expect_fail(&b, BITNET_E_FORMAT, "test.strarr");
    patch_u64(&b, L.str1_len, 2);
    expect_ok(&b);
    free(b.p);
}

static void test_bad_values(void **state) {
    (void)state;
    layout L;
    buf b = build_default(&L);
    b.p[L.bool_val] = 2;
    expect_fail(&b, BITNET_E_FORMAT, "test.bool");
    b.p[L.bool_val] = 1;
    b.p[L.boolarr1] = 7;
    expect_fail(&b, BITNET_E_FORMAT, "test.boolarr");
    b.p[L.boolarr1] = 1;
    patch_u32(&b, L.u8_type, 13);
    expect_fail(&b, BITNET_E_FORMAT, "unknown value type");
    patch_u32(&b, L.u8_type, 0xFFFFFFFFu);
    expect_fail(&b, BITNET_E_FORMAT, "unknown value type");
    patch_u32(&b, L.u8_type, BN_GGUF_UINT8);
    patch_u32(&b, L.strarr_type, 99);
    expect_fail(&b, BITNET_E_FORMAT, "element type");
    patch_u32(&b, L.strarr_type, BN_GGUF_STRING);
    patch_u64(&b, L.strarr_n, 1ull << 60); /* 2^60 strings: must not allocate an index */
    expect_fail(&b, BITNET_E_FORMAT, "test.strarr");
    patch_u64(&b, L.strarr_n, 3);
    patch_u64(&b, L.u32arr_n, 1ull << 60); /* 2^60 u32 */
    expect_fail(&b, BITNET_E_FORMAT, "test.u32arr");
    patch_u64(&b, L.u32arr_n, (UINT64_MAX / 4) + 2); /* count·4 would wrap */
    expect_fail(&b, BITNET_E_FORMAT, "test.u32arr");
    patch_u64(&b, L.u32arr_n, 2);
    expect_ok(&b);
    free(b.p);
    opts deep = {.nest = 5};
    b = build(&deep, &L);
    expect_fail(&b, BITNET_E_FORMAT, "nested");
    free(b.p);
}

static void test_duplicates_and_alignment(void **state) {
    (void)state;
    layout L;
    opts dk = {.dup_key = 1}, dt = {.dup_tensor = 1};
    buf b = build(&dk, &L);
    expect_fail(&b, BITNET_E_FORMAT, "duplicate metadata key 'test.u32'");
    free(b.p);
    b = build(&dt, &L);
    expect_fail(&b, BITNET_E_FORMAT, "duplicate tensor name 'a'");
    free(b.p);
    static const uint64_t bad[] = {0, 3, 24, 1u << 31, 0xFFFFFFFFu};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        opts o = {.align_kv = 1, .align = bad[i]};
        b = build(&o, &L);
        expect_fail(&b, BITNET_E_FORMAT, "general.alignment");
        free(b.p);
    }
    opts u64 = {.align_kv = 2, .align = 32};
    b = build(&u64, &L);
    expect_fail(&b, BITNET_E_FORMAT, "general.alignment");
    free(b.p);
}

static void test_bad_tensor_infos(void **state) {
    (void)state;
    layout L;
    buf b = build_default(&L);
    patch_u64(&b, L.t_name[1], 64);
    expect_fail(&b, BITNET_E_FORMAT, "name length 64");
    patch_u64(&b, L.t_name[1], 0);
    expect_fail(&b, BITNET_E_FORMAT, "name length 0");
    patch_u64(&b, L.t_name[1], 1);
    patch_u32(&b, L.t_ndims[0], 5);
    expect_fail(&b, BITNET_E_FORMAT, "dimensions");
    patch_u32(&b, L.t_ndims[0], 0xFFFFFFFFu);
    expect_fail(&b, BITNET_E_FORMAT, "dimensions");
    patch_u32(&b, L.t_ndims[0], 2);
    patch_u64(&b, L.t_dim[0], 0);
    expect_fail(&b, BITNET_E_FORMAT, "tensor 'a': dimension 0");
    patch_u64(&b, L.t_dim[0], 1ull << 63); /* negative as int64 */
    expect_fail(&b, BITNET_E_FORMAT, "tensor 'a'");
    patch_u64(&b, L.t_dim[0], 1ull << 32);
    patch_u64(&b, L.t_dim[0] + 8, 1ull << 32); /* product 2^64 */
    expect_fail(&b, BITNET_E_FORMAT, "overflow");
    patch_u64(&b, L.t_dim[0], 1ull << 30);
    patch_u64(&b, L.t_dim[0] + 8, 1ull << 30); /* 2^62 bytes: fits, but far past the file */
    expect_fail(&b, BITNET_E_FORMAT, "past the end");
    patch_u64(&b, L.t_dim[0], 4);
    patch_u64(&b, L.t_dim[0] + 8, 2);
    patch_u64(&b, L.t_dim[3], 128); /* TQ2_0 needs rows of 256 */
    expect_fail(&b, BITNET_E_FORMAT, "multiple of the TQ2_0 block size");
    patch_u64(&b, L.t_dim[3], 256);
    expect_ok(&b);
    free(b.p);
}

static void test_unsupported_types(void **state) {
    (void)state;
    layout L;
    buf b = build_default(&L);
    patch_u32(&b, L.t_type[2], 12);
    expect_fail(&b, BITNET_E_UNSUPPORTED, "tensor 'c' has type Q4_K (12), which bitnet.c does not support");
    patch_u32(&b, L.t_type[2], 38);
    expect_fail(&b, BITNET_E_UNSUPPORTED, "TL1");
    patch_u32(&b, L.t_type[2], 39);
    expect_fail(&b, BITNET_E_UNSUPPORTED, "TL2");
    patch_u32(&b, L.t_type[2], 1000);
    expect_fail(&b, BITNET_E_UNSUPPORTED, "type 1000");
    patch_u32(&b, L.t_type[2], 0xFFFFFFFFu);
    expect_fail(&b, BITNET_E_UNSUPPORTED, "tensor 'c'");
    free(b.p);
}

static void test_bad_offsets(void **state) {
    (void)state;
    layout L;
    buf b = build_default(&L);
    patch_u64(&b, L.t_off[1], L.off[1] + 8);
    expect_fail(&b, BITNET_E_FORMAT, "not a multiple of the alignment");
    patch_u64(&b, L.t_off[1], 0); /* 'b' now overlaps 'a' */
    expect_fail(&b, BITNET_E_FORMAT, "overlap");
    patch_u64(&b, L.t_off[1], L.off[2]); /* 'b' inside 'c' */
    expect_fail(&b, BITNET_E_FORMAT, "overlap");
    patch_u64(&b, L.t_off[1], 4096);
    expect_fail(&b, BITNET_E_FORMAT, "past the end");
    patch_u64(&b, L.t_off[1], UINT64_MAX - 31); /* aligned, and offset + size wraps */
    expect_fail(&b, BITNET_E_FORMAT, "past the end");
    patch_u64(&b, L.t_off[1], L.off[1]);
    patch_u64(&b, L.t_off[3], L.off[3] + 32); /* last tensor now ends past EOF */
    expect_fail(&b, BITNET_E_FORMAT, "tensor 'd'");
    patch_u64(&b, L.t_off[3], L.off[3]);
    expect_ok(&b);
    /* Tensors out of offset order but disjoint are fine: a (32 bytes) moves
     * to [32, 64), b (16 bytes) to [0, 16). */
    patch_u64(&b, L.t_off[0], L.off[1]);
    patch_u64(&b, L.t_off[1], L.off[0]);
    expect_ok(&b);
    free(b.p);
}

/* Every header byte set to several values: OK or a clean error, never a crash;
 * when it opens, every accessor must stay inside the buffer. */
static void walk(const bn_gguf *g) {
    for (int64_t i = 0; i < bn_gguf_n_kv(g); i++) {
        const bn_gguf_kv *kv = bn_gguf_kv_at(g, i);
        if (kv->type != BN_GGUF_ARRAY) continue;
        for (uint64_t k = 0; k < kv->arr_n && k < 64; k++) {
            bn_str s = bn_gguf_arr_str(g, kv, k);
            volatile char sink = s.len ? s.ptr[s.len - 1] : 0;
            (void)sink;
            (void)bn_gguf_arr_int(kv, k);
            (void)bn_gguf_arr_f32(kv, k);
        }
    }
    for (int64_t i = 0; i < bn_gguf_n_tensors(g); i++) {
        const bn_gguf_tensor *t = bn_gguf_tensor_at(g, i);
        volatile uint8_t first = t->data[0], last = t->data[t->n_bytes - 1];
        (void)first, (void)last;
    }
}

static void test_byte_flips(void **state) {
    (void)state;
    layout L;
    buf b = build_default(&L);
    static const int deltas[] = {0x01, 0x80, 0xFF};
    int opened = 0, failed = 0;
    for (size_t pos = 0; pos < L.data_start; pos++) {
        for (size_t d = 0; d < 4; d++) {
            uint8_t save = b.p[pos];
            b.p[pos] = d < 3 ? (uint8_t)(save ^ deltas[d]) : 0;
            if (b.p[pos] == save) continue;
            bitnet_error e;
            bn_gguf *g = NULL;
            uint8_t *copy = malloc(b.n);
            memcpy(copy, b.p, b.n);
            if (bn_gguf_open_memory(&g, copy, b.n, &e) == BITNET_OK) {
                walk(g);
                bn_gguf_close(g);
                opened++;
            } else {
                assert_true(e.message[0] != '\0');
                failed++;
            }
            free(copy);
            b.p[pos] = save;
        }
    }
    assert_true(failed > 100 && opened > 100); /* both outcomes really happen */
    free(b.p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_file),          cmocka_unit_test(test_valid_variants),
        cmocka_unit_test(test_open_file),           cmocka_unit_test(test_truncated_everywhere),
        cmocka_unit_test(test_bad_header),          cmocka_unit_test(test_bad_strings),
        cmocka_unit_test(test_bad_values),          cmocka_unit_test(test_duplicates_and_alignment),
        cmocka_unit_test(test_bad_tensor_infos),    cmocka_unit_test(test_unsupported_types),
        cmocka_unit_test(test_bad_offsets),         cmocka_unit_test(test_byte_flips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
