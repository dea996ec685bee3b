/* The streaming GGUF writer: every metadata type, tensor infos, alignment and
 * data read back through the GGUF reader; failures leave no file behind. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format/ggml_quantize.h"
#include "format/ggml_types.h"
#include "format/gguf.h"
#include "format/gguf_writer.h"

static void assert_no_output(const char *p) {
    char tmp[400];
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    assert_false(tu_exists(p));
    assert_false(tu_exists(tmp));
}

/* ------------------------------------------------------------ round trip -- */

#define N_TOKENS 5
static const char *const tokens[N_TOKENS] = {"a", "Ġthe", "", "<|eot_id|>", "\xe2\x96\x81x"};

static void write_metadata(bn_gguf_writer *w) {
    uint8_t u8 = 200; int8_t i8 = -100; uint16_t u16 = 60000; int16_t i16 = -30000;
    uint64_t u64 = 0x123456789ABCDEFull; int64_t i64 = -5000000000ll; double f64 = 3.25e-300;
    bn_gguf_writer_set_scalar(w, "t.u8", BN_GGUF_UINT8, &u8);
    bn_gguf_writer_set_scalar(w, "t.i8", BN_GGUF_INT8, &i8);
    bn_gguf_writer_set_scalar(w, "t.u16", BN_GGUF_UINT16, &u16);
    bn_gguf_writer_set_scalar(w, "t.i16", BN_GGUF_INT16, &i16);
    bn_gguf_writer_set_u32(w, "t.u32", 4000000000u);
    bn_gguf_writer_set_i32(w, "t.i32", -7);
    bn_gguf_writer_set_f32(w, "t.f32", 1e-5f);
    bn_gguf_writer_set_bool(w, "t.bool", 1);
    bn_gguf_writer_set_str(w, "t.str", "héllo");
    bn_gguf_writer_set_strn(w, "t.strn", "ab\0cd", 5);
    bn_gguf_writer_set_scalar(w, "t.u64", BN_GGUF_UINT64, &u64);
    bn_gguf_writer_set_scalar(w, "t.i64", BN_GGUF_INT64, &i64);
    bn_gguf_writer_set_scalar(w, "t.f64", BN_GGUF_FLOAT64, &f64);
    float scores[3] = {0.5f, -1.0f, 3.0f};
    int32_t types[3] = {1, 3, 6};
    bn_gguf_writer_set_arr(w, "t.arr_f32", BN_GGUF_FLOAT32, scores, 3);
    bn_gguf_writer_set_arr(w, "t.arr_i32", BN_GGUF_INT32, types, 3);
    bn_gguf_writer_set_arr_str(w, "t.arr_str", tokens, NULL, N_TOKENS);
    bn_gguf_writer_set_arr_str(w, "t.arr_empty", tokens, NULL, 0);
    /* raw: two GGUF-encoded u16 elements */
    const uint8_t raw[4] = {0x01, 0x02, 0x03, 0x04};
    bn_gguf_writer_set_arr_raw(w, "t.arr_raw", BN_GGUF_UINT16, 2, raw, sizeof raw);
}

static void check_metadata(const bn_gguf *g) {
    uint32_t u32;
    int64_t i64;
    float f;
    int b;
    bn_str s;
    assert_int_equal(bn_gguf_n_kv(g), 18);
    assert_int_equal(bn_gguf_get_u32(g, "t.u8", &u32), 1);
    assert_int_equal(u32, 200);
    assert_int_equal(bn_gguf_get_i64(g, "t.i8", &i64), 1);
    assert_int_equal(i64, -100);
    assert_int_equal(bn_gguf_get_u32(g, "t.u16", &u32), 1);
    assert_int_equal(u32, 60000);
    assert_int_equal(bn_gguf_get_i64(g, "t.i16", &i64), 1);
    assert_int_equal(i64, -30000);
    assert_int_equal(bn_gguf_get_u32(g, "t.u32", &u32), 1);
    assert_int_equal(u32, 4000000000u);
    assert_int_equal(bn_gguf_get_i64(g, "t.i32", &i64), 1);
    assert_int_equal(i64, -7);
    assert_int_equal(bn_gguf_get_f32(g, "t.f32", &f), 1);
    assert_true(f == 1e-5f);
    assert_int_equal(bn_gguf_get_bool(g, "t.bool", &b), 1);
    assert_int_equal(b, 1);
    assert_int_equal(bn_gguf_get_str(g, "t.str", &s), 1);
    assert_true(bn_str_eq(s, "héllo"));
    assert_int_equal(bn_gguf_get_str(g, "t.strn", &s), 1);
    assert_int_equal(s.len, 5);
    assert_memory_equal(s.ptr, "ab\0cd", 5);
    assert_int_equal(bn_gguf_get_i64(g, "t.u64", &i64), 1);
    assert_true(i64 == 0x123456789ABCDEFll);
    assert_int_equal(bn_gguf_get_i64(g, "t.i64", &i64), 1);
    assert_true(i64 == -5000000000ll);
    const bn_gguf_kv *kv = bn_gguf_find_kv(g, "t.f64");
    assert_non_null(kv);
    assert_int_equal(kv->type, BN_GGUF_FLOAT64);
    double d;
    memcpy(&d, kv->data, 8);
    assert_true(d == 3.25e-300);
    uint32_t et;
    uint64_t n;
    assert_int_equal(bn_gguf_get_arr(g, "t.arr_f32", &et, &n), 1);
    assert_int_equal(et, BN_GGUF_FLOAT32);
    assert_int_equal(n, 3);
    kv = bn_gguf_find_kv(g, "t.arr_f32");
    assert_true(bn_gguf_arr_f32(kv, 1) == -1.0f && bn_gguf_arr_f32(kv, 2) == 3.0f);
    kv = bn_gguf_find_kv(g, "t.arr_i32");
    assert_int_equal(bn_gguf_arr_int(kv, 2), 6);
    kv = bn_gguf_find_kv(g, "t.arr_str");
    assert_int_equal(kv->arr_n, N_TOKENS);
    for (int i = 0; i < N_TOKENS; i++) assert_true(bn_str_eq(bn_gguf_arr_str(g, kv, (uint64_t)i), tokens[i]));
    assert_int_equal(bn_gguf_get_arr(g, "t.arr_empty", &et, &n), 1);
    assert_int_equal(n, 0);
    kv = bn_gguf_find_kv(g, "t.arr_raw");
    assert_int_equal(kv->arr_type, BN_GGUF_UINT16);
    assert_int_equal(bn_gguf_arr_int(kv, 0), 0x0201);
    assert_int_equal(bn_gguf_arr_int(kv, 1), 0x0403);
}

/* Tensors whose sizes are not multiples of the alignment: F32 [5] (20 B),
 * F16 [3 x 7] (42 B), I2_S [128 x 3] (96 + 32 B), TQ2_0 [256 x 2] (132 B). */
typedef struct tdesc {
    const char *name;
    uint32_t type;
    int n_dims;
    int64_t ne[2];
} tdesc;

static const tdesc tdescs[] = {
    {"a.weight", BN_GGML_F32, 1, {5, 1}},
    {"blk.0.b.weight", BN_GGML_F16, 2, {3, 7}},
    {"blk.0.c.weight", BN_GGML_I2_S, 2, {128, 3}},
    {"blk.0.d.weight", BN_GGML_TQ2_0, 2, {256, 2}},
};
#define N_T ((int)(sizeof tdescs / sizeof tdescs[0]))

static void test_round_trip(void **state) {
    (void)state;
    const char *out = tu_path("rt.gguf");
    bn_gguf_writer *w = NULL;
    bitnet_error err;
    assert_int_equal(bn_gguf_writer_open(&w, out, 0, &err), BITNET_OK);
    write_metadata(w);
    for (int i = 0; i < N_T; i++)
        assert_int_equal(bn_gguf_writer_add_tensor(w, tdescs[i].name, tdescs[i].type, tdescs[i].n_dims, tdescs[i].ne), 0);
    assert_int_equal(bn_gguf_writer_tensor_bytes(w, 2), 128 * 3 / 4 + 32);
    assert_int_equal(bn_gguf_writer_begin_data(w), BITNET_OK);
    assert_true(tu_exists(bn_gguf_writer_tmp_path(w)));
    assert_false(tu_exists(out)); /* nothing at the final path until finish */
    /* Data: byte i of tensor t = (t*37 + i*11) & 0xFF, written in odd chunks
     * that straddle tensor boundaries. */
    uint8_t all[1024];
    size_t total = 0;
    for (int t = 0; t < N_T; t++)
        for (uint64_t i = 0; i < bn_gguf_writer_tensor_bytes(w, t); i++) all[total++] = (uint8_t)(t * 37 + i * 11 + 1);
    for (size_t off = 0; off < total; off += 13)
        assert_int_equal(bn_gguf_writer_write(w, all + off, total - off < 13 ? total - off : 13), BITNET_OK);
    assert_int_equal(bn_gguf_writer_finish(w), BITNET_OK);
    bn_gguf_writer_free(w);
    assert_true(tu_exists(out));
    char tmp[400];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    assert_false(tu_exists(tmp));

    bn_gguf *g = NULL;
    assert_int_equal(bn_gguf_open(&g, out, 0, &err), BITNET_OK);
    assert_int_equal(bn_gguf_version(g), 3);
    assert_int_equal(bn_gguf_alignment(g), 32);
    check_metadata(g);
    assert_int_equal(bn_gguf_n_tensors(g), N_T);
    size_t at = 0;
    for (int t = 0; t < N_T; t++) {
        const bn_gguf_tensor *gt = bn_gguf_tensor_at(g, t);
        assert_true(bn_str_eq(gt->name, tdescs[t].name));
        assert_int_equal(gt->type, tdescs[t].type);
        assert_int_equal(gt->n_dims, (uint32_t)tdescs[t].n_dims);
        assert_int_equal(gt->ne[0], tdescs[t].ne[0]);
        assert_int_equal(gt->ne[1], tdescs[t].ne[1]);
        assert_int_equal(gt->offset % 32, 0);
        assert_int_equal((uintptr_t)gt->data % 32, ((uintptr_t)bn_gguf_tensor_at(g, 0)->data) % 32);
        assert_memory_equal(gt->data, all + at, (size_t)gt->n_bytes);
        at += (size_t)gt->n_bytes;
    }
    assert_int_equal(at, total);
    bn_gguf_close(g);
}

/* ---------------------------------------------------------------- errors -- */

static bn_gguf_writer *start(const char *out, int overwrite) {
    bn_gguf_writer *w = NULL;
    bitnet_error err;
    assert_int_equal(bn_gguf_writer_open(&w, out, overwrite, &err), BITNET_OK);
    int64_t ne[1] = {8};
    bn_gguf_writer_set_u32(w, "k", 1);
    bn_gguf_writer_add_tensor(w, "x", BN_GGML_F32, 1, ne);
    return w;
}

static void test_abandoned_write_leaves_nothing(void **state) {
    (void)state;
    const char *out = tu_path("abandoned.gguf");
    bn_gguf_writer *w = start(out, 0);
    assert_int_equal(bn_gguf_writer_begin_data(w), BITNET_OK);
    float v[4] = {1, 2, 3, 4};
    assert_int_equal(bn_gguf_writer_write(w, v, sizeof v), BITNET_OK);
    bn_gguf_writer_free(w); /* e.g. the source turned out corrupt */
    assert_no_output(out);
    /* finishing with a tensor short is an error, and leaves nothing */
    w = start(out, 0);
    bn_gguf_writer_begin_data(w);
    bn_gguf_writer_write(w, v, sizeof v);
    assert_int_equal(bn_gguf_writer_finish(w), BITNET_E_INTERNAL);
    assert_non_null(strstr(bn_gguf_writer_error(w)->message, "incomplete"));
    bn_gguf_writer_free(w);
    assert_no_output(out);
    /* too much data */
    w = start(out, 0);
    bn_gguf_writer_begin_data(w);
    float big[9] = {0};
    assert_int_not_equal(bn_gguf_writer_write(w, big, sizeof big), BITNET_OK);
    assert_int_not_equal(bn_gguf_writer_finish(w), BITNET_OK);
    bn_gguf_writer_free(w);
    assert_no_output(out);
}

static void test_bad_metadata_is_sticky(void **state) {
    (void)state;
    const char *out = tu_path("sticky.gguf");
    bn_gguf_writer *w = start(out, 0);
    assert_int_equal(bn_gguf_writer_set_u32(w, "k", 2), BITNET_E_INVALID_ARG); /* duplicate */
    assert_non_null(strstr(bn_gguf_writer_error(w)->message, "duplicate"));
    assert_int_equal(bn_gguf_writer_set_u32(w, "fine", 2), BITNET_E_INVALID_ARG);
    assert_int_equal(bn_gguf_writer_finish(w), BITNET_E_INVALID_ARG);
    bn_gguf_writer_free(w);
    assert_no_output(out);
    w = start(out, 0);
    int64_t ne[2] = {100, 2};
    assert_int_not_equal(bn_gguf_writer_add_tensor(w, "y", BN_GGML_TQ2_0, 2, ne), BITNET_OK); /* 100 % 256 */
    bn_gguf_writer_free(w);
    w = start(out, 0);
    assert_int_not_equal(bn_gguf_writer_add_tensor(w, "x", BN_GGML_F32, 1, ne), BITNET_OK); /* duplicate name */
    bn_gguf_writer_free(w);
    w = start(out, 0);
    char longname[80];
    memset(longname, 'a', 70);
    longname[70] = '\0';
    assert_int_not_equal(bn_gguf_writer_add_tensor(w, longname, BN_GGML_F32, 1, ne), BITNET_OK);
    bn_gguf_writer_free(w);
    assert_no_output(out);
}

static void test_overwrite_rules(void **state) {
    (void)state;
    const char *out = tu_path("existing.gguf");
    FILE *f = fopen(out, "wb");
    fputs("precious", f);
    fclose(f);
    bn_gguf_writer *w = NULL;
    bitnet_error err;
    assert_int_equal(bn_gguf_writer_open(&w, out, 0, &err), BITNET_E_IO);
    assert_non_null(strstr(err.message, "exists"));
    assert_null(w);
    struct stat st;
    assert_int_equal(stat(out, &st), 0);
    assert_int_equal(st.st_size, 8);
    /* created meanwhile: finish refuses rather than clobbers */
    const char *late = tu_path("late.gguf");
    w = start(late, 0);
    bn_gguf_writer_begin_data(w);
    float v[8] = {0};
    bn_gguf_writer_write(w, v, sizeof v);
    f = fopen(late, "wb");
    fputs("x", f);
    fclose(f);
    assert_int_equal(bn_gguf_writer_finish(w), BITNET_E_IO);
    bn_gguf_writer_free(w);
    assert_int_equal(stat(late, &st), 0);
    assert_int_equal(st.st_size, 1);
    /* with overwrite the file is replaced */
    w = start(out, 1);
    bn_gguf_writer_begin_data(w);
    bn_gguf_writer_write(w, v, sizeof v);
    assert_int_equal(bn_gguf_writer_finish(w), BITNET_OK);
    bn_gguf_writer_free(w);
    assert_int_equal(stat(out, &st), 0);
    assert_true(st.st_size > 64);
    /* an unwritable place fails at open */
    assert_int_equal(bn_gguf_writer_open(&w, "/nonexistent-dir/x.gguf", 0, &err), BITNET_E_IO);
    assert_true(strlen(err.message) > 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_abandoned_write_leaves_nothing),
        cmocka_unit_test(test_bad_metadata_is_sticky),
        cmocka_unit_test(test_overwrite_rules),
    };
    return cmocka_run_group_tests(tests, tu_setup, tu_teardown);
}
