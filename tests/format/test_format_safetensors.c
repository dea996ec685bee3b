/* Safetensors reader: hand-built files (valid and hostile), sharded
 * checkpoints in a temporary folder, and the conformance kit's checkpoints.
 * Buffers are exact-size malloc copies so ASan catches any over-read. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format/ggml_types.h"
#include "format/safetensors.h"

#define KIT BITNET_SHARED_DIR "/conformance"

typedef struct buf {
    uint8_t *p;
    size_t n;
} buf;

/* u64 header length, the JSON text, then n_data bytes of a non-zero pattern. */
static buf make(const char *json, size_t n_data) {
    size_t h = strlen(json);
    buf b = {malloc(8 + h + n_data), 8 + h + n_data};
    assert_non_null(b.p);
    for (int i = 0; i < 8; i++) b.p[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(b.p + 8, json, h);
    for (size_t i = 0; i < n_data; i++) b.p[8 + h + i] = (uint8_t)(i * 31 + 7);
    return b;
}

static void set_hlen(buf *b, uint64_t v) {
    for (int i = 0; i < 8; i++) b->p[i] = (uint8_t)(v >> (8 * i));
}

static bitnet_status try_open(const uint8_t *p, size_t n, bitnet_error *e) {
    uint8_t *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    if (n) memcpy(copy, p, n);
    bn_safetensors *st = NULL;
    memset(e, 0, sizeof *e);
    bitnet_status rc = bn_safetensors_open_memory(&st, copy, n, e);
    if (rc == BITNET_OK) {
        for (int i = 0; i < bn_safetensors_n(st); i++) { /* touch every byte handed out */
            const bn_st_tensor *t = bn_safetensors_at(st, i);
            volatile uint8_t s = t->n_bytes ? t->data[0] ^ t->data[t->n_bytes - 1] : 0;
            (void)s;
        }
        bn_safetensors_close(st);
    } else {
        assert_null(st);
        assert_true(e->message[0] != '\0');
        assert_null(strchr(e->message, '\n'));
    }
    free(copy);
    return rc;
}

static void expect_fail_json(const char *json, size_t n_data, bitnet_status code, const char *substr) {
    buf b = make(json, n_data);
    bitnet_error e;
    bitnet_status rc = try_open(b.p, b.n, &e);
    if (rc == BITNET_OK || (code && rc != code) || (substr && !strstr(e.message, substr)))
        fail_msg("%s: expected error %d with '%s', got %d '%s'", json, code, substr ? substr : "", rc, e.message);
    free(b.p);
}

/* ---------------------------------------------------------------- valid -- */

#define VALID_JSON                                                                                               \
    "{\"__metadata__\":{\"format\":\"pt\"},"                                                                   \
    "\"w\":{\"dtype\":\"U8\",\"shape\":[2,3],\"data_offsets\":[0,6]},"                                         \
    "\"s\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[6,8]},"                                         \
    "\"e\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[8,8]},"                                        \
    "\"x\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[8,12]}}   "

static void test_valid(void **state) {
    (void)state;
    buf b = make(VALID_JSON, 12);
    b.p[8 + strlen(VALID_JSON) + 6] = 0x80, b.p[8 + strlen(VALID_JSON) + 7] = 0x3F; /* s = bf16 1.0 */
    bn_safetensors *st = NULL;
    bitnet_error e = {0};
    assert_int_equal(bn_safetensors_open_memory(&st, b.p, b.n, &e), BITNET_OK);
    assert_int_equal(bn_safetensors_n(st), 4);
    assert_int_equal(bn_safetensors_total_bytes(st), b.n);
    const uint8_t *data = b.p + 8 + strlen(VALID_JSON);
    const bn_st_tensor *w = bn_safetensors_find(st, "w"), *s = bn_safetensors_find(st, "s");
    const bn_st_tensor *em = bn_safetensors_find(st, "e"), *x = bn_safetensors_find(st, "x");
    assert_non_null(w), assert_non_null(s), assert_non_null(em), assert_non_null(x);
    assert_null(bn_safetensors_find(st, "__metadata__"));
    assert_null(bn_safetensors_find(st, "W"));
    assert_string_equal(w->name, "w");
    assert_int_equal(w->dtype, BN_ST_U8), assert_int_equal(w->n_dims, 2);
    assert_int_equal(w->shape[0], 2), assert_int_equal(w->shape[1], 3), assert_int_equal(w->n_elems, 6);
    assert_ptr_equal(w->data, data), assert_int_equal(w->n_bytes, 6);
    assert_int_equal(w->data[5], (uint8_t)(5 * 31 + 7));
    assert_int_equal(s->dtype, BN_ST_BF16);
    assert_true(bn_bf16_to_fp32((uint16_t)(s->data[0] | s->data[1] << 8)) == 1.0f);
    assert_int_equal(em->n_elems, 0), assert_int_equal(em->n_bytes, 0);
    assert_int_equal(x->n_dims, 0), assert_int_equal(x->n_elems, 1), assert_ptr_equal(x->data, data + 8);
    assert_null(bn_safetensors_at(st, 4));
    bn_safetensors_close(st);
    free(b.p);
}

static void test_dtypes(void **state) {
    (void)state;
    static const struct { const char *name; bn_st_dtype t; int size; } all[] = {
        {"BOOL", BN_ST_BOOL, 1}, {"U8", BN_ST_U8, 1},   {"I8", BN_ST_I8, 1},     {"I16", BN_ST_I16, 2},
        {"U16", BN_ST_U16, 2},   {"F16", BN_ST_F16, 2}, {"BF16", BN_ST_BF16, 2}, {"I32", BN_ST_I32, 4},
        {"U32", BN_ST_U32, 4},   {"F32", BN_ST_F32, 4}, {"F64", BN_ST_F64, 8},   {"I64", BN_ST_I64, 8},
        {"U64", BN_ST_U64, 8},
    };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        char json[160];
        snprintf(json, sizeof json, "{\"t\":{\"dtype\":\"%s\",\"shape\":[3],\"data_offsets\":[0,%d]}}", all[i].name,
                 3 * all[i].size);
        buf b = make(json, (size_t)(3 * all[i].size));
        bn_safetensors *st = NULL;
        bitnet_error e = {0};
        assert_int_equal(bn_safetensors_open_memory(&st, b.p, b.n, &e), BITNET_OK);
        assert_int_equal(bn_safetensors_at(st, 0)->dtype, all[i].t);
        assert_string_equal(bn_st_dtype_name(all[i].t), all[i].name);
        assert_int_equal(bn_st_dtype_size(all[i].t), all[i].size);
        bn_safetensors_close(st);
        free(b.p);
    }
}

/* -------------------------------------------------------------- hostile -- */

#define T(body) "{\"t\":" body "}"

static void test_bad_json(void **state) {
    (void)state;
    expect_fail_json("[1,2]", 0, BITNET_E_FORMAT, "does not start");
    expect_fail_json("{\"a\":", 0, BITNET_E_FORMAT, "not valid JSON");
    expect_fail_json("{} x", 0, BITNET_E_FORMAT, "after the JSON");
    expect_fail_json("{}{}", 0, BITNET_E_FORMAT, "after the JSON");
    expect_fail_json("{", 0, BITNET_E_FORMAT, NULL);
    expect_fail_json(T("5"), 0, BITNET_E_FORMAT, "tensor 't'");
    expect_fail_json("{\"__metadata__\":5}", 0, BITNET_E_FORMAT, "__metadata__");
    expect_fail_json(T("{\"shape\":[1],\"data_offsets\":[0,1]}"), 1, BITNET_E_FORMAT, "dtype");
    expect_fail_json(T("{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,1]}"), 1, BITNET_E_FORMAT, "dtype");
    expect_fail_json(T("{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}"), 1, BITNET_E_UNSUPPORTED,
                     "tensor 't' has dtype 'F8_E4M3'");
}

static void test_bad_shapes(void **state) {
    (void)state;
    expect_fail_json(T("{\"dtype\":\"U8\",\"data_offsets\":[0,1]}"), 1, BITNET_E_FORMAT, "shape");
    expect_fail_json(T("{\"dtype\":\"U8\",\"shape\":5,\"data_offsets\":[0,1]}"), 1, BITNET_E_FORMAT, "shape");
    expect_fail_json(T("{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}"), 1, BITNET_E_FORMAT, "shape");
    expect_fail_json(T("{\"dtype\":\"U8\",\"shape\":[1.5],\"data_offsets\":[0,1]}"), 1, BITNET_E_FORMAT, "shape");
    expect_fail_json(T("{\"dtype\":\"U8\",\"shape\":[\"1\"],\"data_offsets\":[0,1]}"), 1, BITNET_E_FORMAT, "shape");
    expect_fail_json(T("{\"dtype\":\"U8\",\"shape\":[1e300],\"data_offsets\":[0,1]}"), 1, BITNET_E_FORMAT, "shape");
    expect_fail_json(T("{\"dtype\":\"U8\",\"shape\":[9007199254740992,9007199254740992],\"data_offsets\":[0,1]}"),
                     1, BITNET_E_FORMAT, "overflow");
    /* Above 2^53 a JSON number may not be the integer that was written. */
    expect_fail_json(T("{\"dtype\":\"U8\",\"shape\":[1152921504606846976],\"data_offsets\":[0,1]}"), 1,
                     BITNET_E_FORMAT, "2^53");
    expect_fail_json(T("{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}"), 1,
                     BITNET_E_UNSUPPORTED, "dimensions");
    /* n_elems fits int64 but × 8 bytes does not fit u64. */
    expect_fail_json(T("{\"dtype\":\"F64\",\"shape\":[4503599627370496,1024],\"data_offsets\":[0,8]}"), 8,
                     BITNET_E_FORMAT, "tensor 't'");
}

static void test_bad_offsets(void **state) {
    (void)state;
    expect_fail_json(T("{\"dtype\":\"U8\",\"shape\":[2]}"), 2, BITNET_E_FORMAT, "data_offsets");
    expect_fail_json(T("{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0]}"), 2, BITNET_E_FORMAT, "data_offsets");
    expect_fail_json(T("{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,1,2]}"), 2, BITNET_E_FORMAT, "data_offsets");
    expect_fail_json(T("{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[-1,1]}"), 2, BITNET_E_FORMAT, "data_offsets");
    expect_fail_json(T("{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,0]}"), 2, BITNET_E_FORMAT, "outside");
    expect_fail_json(T("{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[1,3]}"), 2, BITNET_E_FORMAT, "outside");
    expect_fail_json(T("{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,9007199254740992]}"), 2,
                     BITNET_E_FORMAT, "outside");
    expect_fail_json(T("{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,1152921504606846976]}"), 2,
                     BITNET_E_FORMAT, "2^53");
    expect_fail_json(T("{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,1]}"), 2, BITNET_E_FORMAT, "need 2");
    expect_fail_json(T("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,2]}"), 8, BITNET_E_FORMAT, "need 8");
    expect_fail_json("{\"a\":{\"dtype\":\"U8\",\"shape\":[6],\"data_offsets\":[0,6]},"
                     "\"b\":{\"dtype\":\"U8\",\"shape\":[6],\"data_offsets\":[4,10]}}",
                     12, BITNET_E_FORMAT, "overlap");
    expect_fail_json("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]},"
                     "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[5,7]}}",
                     12, BITNET_E_FORMAT, "overlap");
    expect_fail_json("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
                     "\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}",
                     4, BITNET_E_FORMAT, "appears twice");
}

static void test_bad_header_length(void **state) {
    (void)state;
    bitnet_error e;
    uint8_t tiny[8] = {2, 0, 0, 0, 0, 0, 0, 0};
    for (size_t n = 0; n < 8; n++) assert_int_equal(try_open(tiny, n, &e), BITNET_E_FORMAT);
    buf b = make(VALID_JSON, 12);
    static const uint64_t lens[] = {1ull << 63, UINT64_MAX, 0, 1, 10000};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        set_hlen(&b, lens[i]);
        assert_int_equal(try_open(b.p, b.n, &e), BITNET_E_FORMAT);
    }
    set_hlen(&b, strlen(VALID_JSON) - 5); /* cuts the JSON short */
    assert_int_equal(try_open(b.p, b.n, &e), BITNET_E_FORMAT);
    free(b.p);
    /* Over the 100 MB header limit (and inside the file). */
    size_t big = 100u * 1000u * 1000u + 64;
    uint8_t *p = calloc(1, big);
    assert_non_null(p);
    uint64_t h = 100u * 1000u * 1000u + 1;
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(h >> (8 * i));
    p[8] = '{';
    bn_safetensors *st = NULL;
    assert_int_equal(bn_safetensors_open_memory(&st, p, big, &e), BITNET_E_FORMAT);
    assert_non_null(strstr(e.message, "limit"));
    free(p);
}

static void test_truncated_and_flipped(void **state) {
    (void)state;
    buf b = make(VALID_JSON, 12);
    bitnet_error e;
    for (size_t n = 0; n < b.n; n++)
        if (try_open(b.p, n, &e) == BITNET_OK) fail_msg("a %zu-byte prefix opened", n);
    int ok = 0, bad = 0;
    for (size_t pos = 0; pos < b.n; pos++) {
        uint8_t save = b.p[pos];
        static const uint8_t vals[] = {0, 0xFF, '"', '}', '9', '-', ' '};
        for (size_t v = 0; v < sizeof vals; v++) {
            b.p[pos] = vals[v];
            if (try_open(b.p, b.n, &e) == BITNET_OK) ok++;
            else bad++;
        }
        b.p[pos] = save;
    }
    assert_true(ok > 10 && bad > 100);
    free(b.p);
}

/* --------------------------------------------------------------- shards -- */

static char tmpdir[64];

static void write_file(const char *name, const void *p, size_t n) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

static void write_st(const char *name, const char *json, size_t n_data) {
    buf b = make(json, n_data);
    write_file(name, b.p, b.n);
    free(b.p);
}

static void write_index(const char *weight_map) {
    char text[1024];
    snprintf(text, sizeof text, "{\"metadata\":{\"total_size\":10},\"weight_map\":%s}", weight_map);
    write_file("model.safetensors.index.json", text, strlen(text));
}

static void clear_dir(void) {
    static const char *const names[] = {"model.safetensors.index.json", "model.safetensors", "s1.safetensors",
                                        "s2.safetensors"};
    char path[256];
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", tmpdir, names[i]);
        unlink(path);
    }
}

static bitnet_status open_tmp(bn_safetensors **st, bitnet_error *e) {
    memset(e, 0, sizeof *e);
    *st = NULL;
    bitnet_status rc = bn_safetensors_open_dir(st, tmpdir, 1, e);
    if (rc) assert_null(*st), assert_true(e->message[0] != '\0');
    return rc;
}

#define S1 "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},\"b\":{\"dtype\":\"I16\",\"shape\":[1],\"data_offsets\":[2,4]}}"
#define S2 "{\"c\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}"
#define S2_DUP "{\"c\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[4,5]}}"
#define MAP_OK "{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\",\"c\":\"s2.safetensors\"}"

static void expect_dir_fail(bitnet_status code, const char *substr) {
    bn_safetensors *st;
    bitnet_error e;
    bitnet_status rc = open_tmp(&st, &e);
    if (rc == BITNET_OK || rc != code || (substr && !strstr(e.message, substr)))
        fail_msg("expected %d with '%s', got %d '%s'", code, substr ? substr : "", rc, e.message);
}

static void test_sharded(void **state) {
    (void)state;
    bn_safetensors *st;
    bitnet_error e;
    clear_dir();
    expect_dir_fail(BITNET_E_IO, "no model.safetensors");
    write_st("model.safetensors", S2, 4);
    assert_int_equal(open_tmp(&st, &e), BITNET_OK);
    assert_int_equal(bn_safetensors_n(st), 1);
    bn_safetensors_close(st);
    write_st("s1.safetensors", S1, 4);
    write_st("s2.safetensors", S2, 4);
    write_index(MAP_OK); /* the index wins over model.safetensors */
    assert_int_equal(open_tmp(&st, &e), BITNET_OK);
    assert_int_equal(bn_safetensors_n(st), 3);
    assert_int_equal(bn_safetensors_find(st, "b")->dtype, BN_ST_I16);
    assert_int_equal(bn_safetensors_find(st, "c")->n_bytes, 4);
    assert_int_equal(bn_safetensors_total_bytes(st), (8 + strlen(S1) + 4) + (8 + strlen(S2) + 4));
    bn_safetensors_close(st);

    write_index("{\"a\":\"../s1.safetensors\",\"c\":\"s2.safetensors\"}");
    expect_dir_fail(BITNET_E_FORMAT, "invalid file name");
    write_index("{\"a\":\"sub/s1.safetensors\"}");
    expect_dir_fail(BITNET_E_FORMAT, "invalid file name");
    write_index("{\"a\":\"..\"}");
    expect_dir_fail(BITNET_E_FORMAT, "invalid file name");
    write_index("{\"a\":\"\"}");
    expect_dir_fail(BITNET_E_FORMAT, "invalid file name");
    write_index("{\"a\":5}");
    expect_dir_fail(BITNET_E_FORMAT, "invalid file name");
    write_index("{\"a\":\"s1.safetensors\",\"z\":\"s2.safetensors\"}");
    expect_dir_fail(BITNET_E_FORMAT, "tensor 'z'");
    write_index("{\"a\":\"s2.safetensors\",\"c\":\"s1.safetensors\"}"); /* wrong shard named */
    expect_dir_fail(BITNET_E_FORMAT, "where the index puts it");
    write_index("{\"a\":\"s1.safetensors\",\"c\":\"s3.safetensors\"}");
    expect_dir_fail(BITNET_E_IO, "s3.safetensors");
    write_index("{}");
    expect_dir_fail(BITNET_E_FORMAT, "weight_map");
    write_file("model.safetensors.index.json", "{\"weight_map\":{\"a\":", 19);
    expect_dir_fail(BITNET_E_FORMAT, "JSON");
    write_st("s2.safetensors", S2_DUP, 5);
    write_index(MAP_OK);
    expect_dir_fail(BITNET_E_FORMAT, "appears twice");
    write_st("s2.safetensors", "{\"c\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4);
    expect_dir_fail(BITNET_E_FORMAT, "s2.safetensors"); /* a bad shard is named */
    clear_dir();
}

/* ------------------------------------------------------------------ kit -- */

static void test_kit(void **state) {
    (void)state;
    static const char *const mats[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                        "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
    static const int64_t out_in[7][2] = {{512, 512}, {128, 512}, {128, 512}, {512, 512},
                                         {1536, 512}, {1536, 512}, {512, 1536}};
    for (int llama = 0; llama < 2; llama++) {
        bn_safetensors *st = NULL;
        bitnet_error e = {0};
        const char *dir = llama ? KIT "/tiny-llama-ternary" : KIT "/tiny-bitnet";
        assert_int_equal(bn_safetensors_open_dir(&st, dir, llama, &e), BITNET_OK);
        assert_int_equal(bn_safetensors_n(st), llama ? 67 : 74);
        assert_int_equal(bn_safetensors_total_bytes(st), llama ? 11419688 : 7242528);
        const bn_st_tensor *emb = bn_safetensors_find(st, "model.embed_tokens.weight");
        assert_non_null(emb);
        assert_int_equal(emb->dtype, BN_ST_BF16), assert_int_equal(emb->shape[0], 4096), assert_int_equal(emb->shape[1], 512);
        assert_true((bn_safetensors_find(st, "lm_head.weight") != NULL) == llama);
        for (int l = 0; l < 4; l++)
            for (int m = 0; m < 7; m++) {
                char name[128];
                snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, mats[m]);
                const bn_st_tensor *w = bn_safetensors_find(st, name);
                assert_non_null(w);
                assert_int_equal(w->dtype, BN_ST_U8), assert_int_equal(w->n_dims, 2);
                assert_int_equal(w->shape[0], out_in[m][0] / 4), assert_int_equal(w->shape[1], out_in[m][1]);
                snprintf(name, sizeof name, "model.layers.%d.%s.weight_scale", l, mats[m]);
                const bn_st_tensor *s = bn_safetensors_find(st, name);
                assert_non_null(s);
                assert_int_equal(s->dtype, BN_ST_BF16), assert_int_equal(s->n_dims, 1), assert_int_equal(s->shape[0], 1);
                float v = bn_bf16_to_fp32((uint16_t)(s->data[0] | s->data[1] << 8));
                assert_true(v > 0 && v < 1000);
            }
        bn_safetensors_close(st);
    }
}

static void test_kit_truncated(void **state) {
    (void)state;
    FILE *f = fopen(KIT "/tiny-bitnet/model.safetensors", "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    size_t n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(n);
    assert_int_equal(fread(p, 1, n, f), n);
    fclose(f);
    size_t hdr = 8 + (size_t)(p[0] | p[1] << 8 | p[2] << 16);
    bitnet_error e;
    assert_int_equal(try_open(p, n, &e), BITNET_OK);
    for (size_t i = 0; i < 200; i++) assert_int_not_equal(try_open(p, hdr * i / 200 + i % 5, &e), BITNET_OK);
    for (size_t i = 1; i < 10; i++) assert_int_not_equal(try_open(p, n - (n - hdr) * i / 10, &e), BITNET_OK);
    assert_int_not_equal(try_open(p, n - 1, &e), BITNET_OK);
    free(p);
}

static int setup(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/bitnet_st_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    clear_dir();
    return rmdir(tmpdir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),         cmocka_unit_test(test_dtypes),
        cmocka_unit_test(test_bad_json),      cmocka_unit_test(test_bad_shapes),
        cmocka_unit_test(test_bad_offsets),   cmocka_unit_test(test_bad_header_length),
        cmocka_unit_test(test_truncated_and_flipped), cmocka_unit_test(test_sharded),
        cmocka_unit_test(test_kit),           cmocka_unit_test(test_kit_truncated),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
