/* bitnet_convert on the conformance kit: every output type holds exactly the
 * source's ternary weights; ternary types convert into each other losslessly
 * (I2_S → TQ1_0 → TQ2_0 → I2_S gives the kit's I2_S tensors back byte for
 * byte); HF → TQ matches llama.cpp's own quantizer byte for byte; HF llama →
 * GGUF llama permutes q/k exactly like the kit's (llama.cpp-converted) file;
 * damaged inputs fail cleanly and leave no output file. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bitnet.h"
#include "format/ggml_types.h"
#include "format/gguf.h"
#include "kernels/tensors.h"
#include "model/model.h"

#define KIT BITNET_SHARED_DIR "/conformance"
#define BITNET_HF KIT "/tiny-bitnet"
#define LLAMA_HF KIT "/tiny-llama-ternary"

static void convert(const char *src, const char *dst, bitnet_type wt, bitnet_type et) {
    bitnet_convert_params p;
    bitnet_convert_params_default(&p);
    p.weight_type = wt;
    p.embd_type = et;
    p.overwrite = 1;
    bitnet_error err;
    bitnet_status rc = bitnet_convert(src, dst, &p, &err);
    if (rc) fprintf(stderr, "convert %s → %s: %s\n", src, dst, err.message);
    assert_int_equal(rc, BITNET_OK);
}

static bitnet_model *load(const char *path) {
    bitnet_model *m = NULL;
    bitnet_error err;
    bitnet_status rc = bitnet_model_load(path, NULL, &m, &err);
    if (rc) fprintf(stderr, "load %s: %s\n", path, err.message);
    assert_int_equal(rc, BITNET_OK);
    return m;
}

/* ------------------------------------------------------------ comparing -- */

static float f16_round(float x) { return bn_fp16_to_fp32(bn_fp32_to_fp16(x)); }

/* Same codes everywhere a row is non-zero; scales equal, or equal after the
 * fp16 rounding that TQ/F16 storage applies when fp16_scales is set. */
static void same_ternary(const bn_ternary *a, const bn_ternary *b, int fp16_scales) {
    assert_int_equal(a->rows, b->rows);
    assert_int_equal(a->cols, b->cols);
    int64_t nonzero = 0;
    for (int64_t r = 0; r < a->rows; r++) {
        float sa = bn_ternary_row_scale(a, r), sb = bn_ternary_row_scale(b, r);
        if (fp16_scales) sa = f16_round(sa);
        if (sa == 0.0f || sb == 0.0f) continue;
        assert_true(sa == sb);
        for (int64_t k = 0; k < a->cols; k++) {
            int ca = bn_ternary_get_code(a, r, k);
            assert_int_equal(ca, bn_ternary_get_code(b, r, k));
            nonzero += ca != 1;
        }
    }
    assert_true(nonzero > a->rows * a->cols / 3);
}

static void same_vec(const bn_vec *a, const bn_vec *b) {
    assert_int_equal(a->n, b->n);
    assert_memory_equal(a->data, b->data, (size_t)a->n * sizeof(float));
}

/* Dense rows decode to the same values up to fp16 rounding (BF16 → F16). */
static void same_dense(const bn_dense *a, const bn_dense *b) {
    assert_int_equal(a->rows, b->rows);
    assert_int_equal(a->cols, b->cols);
    float *x = malloc((size_t)a->cols * sizeof *x), *y = malloc((size_t)a->cols * sizeof *y);
    for (int64_t r = 0; r < a->rows; r++) {
        bn_ggml_dequantize_row(a->type, a->data + r * a->row_bytes, x, a->cols, 0);
        bn_ggml_dequantize_row(b->type, b->data + r * b->row_bytes, y, b->cols, 0);
        for (int64_t k = 0; k < a->cols; k++) assert_true(fabsf(x[k] - y[k]) <= fabsf(x[k]) / 1024.0f + 1e-7f);
    }
    free(x);
    free(y);
}

static void same_model(const bitnet_model *a, const bitnet_model *b, int fp16_scales) {
    assert_int_equal(a->hp.n_layer, b->hp.n_layer);
    assert_int_equal(a->hp.n_vocab, b->hp.n_vocab);
    assert_int_equal(a->tied_output, b->tied_output);
    same_dense(&a->tok_embd, &b->tok_embd);
    if (!a->tied_output) same_dense(&a->output, &b->output);
    same_vec(&a->output_norm, &b->output_norm);
    for (int l = 0; l < a->hp.n_layer; l++) {
        const bn_layer *x = &a->layers[l], *y = &b->layers[l];
        same_vec(&x->attn_norm, &y->attn_norm);
        same_vec(&x->ffn_norm, &y->ffn_norm);
        if (a->hp.has_sub_norms) {
            same_vec(&x->attn_sub_norm, &y->attn_sub_norm);
            same_vec(&x->ffn_sub_norm, &y->ffn_sub_norm);
        }
        same_ternary(&x->wq, &y->wq, fp16_scales);
        same_ternary(&x->wk, &y->wk, fp16_scales);
        same_ternary(&x->wv, &y->wv, fp16_scales);
        same_ternary(&x->wo, &y->wo, fp16_scales);
        same_ternary(&x->w_gate, &y->w_gate, fp16_scales);
        same_ternary(&x->w_up, &y->w_up, fp16_scales);
        same_ternary(&x->w_down, &y->w_down, fp16_scales);
    }
}

/* Every tensor's bytes of two GGUF files are identical (names, types, shapes
 * too); ternary_only restricts the byte comparison to ternary tensors. */
static void same_gguf_tensors(const char *pa, const char *pb, int ternary_only) {
    bn_gguf *a = NULL, *b = NULL;
    bitnet_error err;
    assert_int_equal(bn_gguf_open(&a, pa, 1, &err), BITNET_OK);
    assert_int_equal(bn_gguf_open(&b, pb, 1, &err), BITNET_OK);
    assert_int_equal(bn_gguf_n_tensors(a), bn_gguf_n_tensors(b));
    for (int64_t i = 0; i < bn_gguf_n_tensors(a); i++) {
        const bn_gguf_tensor *x = bn_gguf_tensor_at(a, i), *y = bn_gguf_tensor_at(b, i);
        assert_int_equal(x->name.len, y->name.len);
        assert_memory_equal(x->name.ptr, y->name.ptr, (size_t)x->name.len);
        assert_int_equal(x->type, y->type);
        assert_int_equal(x->n_dims, y->n_dims);
        assert_memory_equal(x->ne, y->ne, sizeof x->ne);
        assert_int_equal(x->n_bytes, y->n_bytes);
        int ternary = x->type == BN_GGML_I2_S || x->type == BN_GGML_TQ1_0 || x->type == BN_GGML_TQ2_0;
        if (ternary || !ternary_only) {
            if (memcmp(x->data, y->data, (size_t)x->n_bytes))
                fail_msg("tensor %.*s differs between %s and %s", (int)x->name.len, x->name.ptr, pa, pb);
        }
    }
    bn_gguf_close(a);
    bn_gguf_close(b);
}

/* ---------------------------------------------------------------- tests -- */

static void test_hf_bitnet_every_type(void **state) {
    (void)state;
    bitnet_model *src = load(BITNET_HF);
    const struct { bitnet_type t; const char *name; int fp16; } types[] = {
        {BITNET_TYPE_I2_S, "i2_s", 0}, {BITNET_TYPE_TQ2_0, "tq2_0", 1}, {BITNET_TYPE_TQ1_0, "tq1_0", 1},
        {BITNET_TYPE_F16, "f16", 1},   {BITNET_TYPE_F32, "f32", 0},
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "bitnet-%s.gguf", types[i].name);
        const char *out = tu_path(name);
        convert(BITNET_HF, out, types[i].t, BITNET_TYPE_DEFAULT);
        bitnet_model *m = load(out);
        assert_string_equal(m->arch_name, "bitnet-b1.58");
        assert_int_equal(m->tok_embd.type, BN_GGML_F16);
        same_model(src, m, types[i].fp16);
        bitnet_model_free(m);
    }
    bitnet_model_free(src);
    /* The kit's TQ files were packed by llama.cpp's quantizer: same bytes. */
    same_gguf_tensors(tu_path("bitnet-tq1_0.gguf"), KIT "/tiny-bitnet/gguf/tiny-bitnet-tq1_0.gguf", 1);
    same_gguf_tensors(tu_path("bitnet-tq2_0.gguf"), KIT "/tiny-bitnet/gguf/tiny-bitnet-tq2_0.gguf", 1);
    same_gguf_tensors(tu_path("bitnet-i2_s.gguf"), KIT "/tiny-bitnet/gguf/tiny-bitnet-i2_s.gguf", 1);
}

/* I2_S → TQ1_0 → TQ2_0 → I2_S: decoded weights bit-identical at every step,
 * and the final file's tensors are the kit's, byte for byte. */
static void test_requantize_chain(void **state) {
    (void)state;
    const char *kit = KIT "/tiny-bitnet/gguf/tiny-bitnet-i2_s.gguf";
    const char *tq1 = tu_path("chain-tq1_0.gguf"), *tq2 = tu_path("chain-tq2_0.gguf"),
               *back = tu_path("chain-i2_s.gguf");
    convert(kit, tq1, BITNET_TYPE_TQ1_0, BITNET_TYPE_DEFAULT);
    convert(tq1, tq2, BITNET_TYPE_TQ2_0, BITNET_TYPE_DEFAULT);
    convert(tq2, back, BITNET_TYPE_I2_S, BITNET_TYPE_DEFAULT);
    bitnet_model *a = load(kit), *b = load(tq1), *c = load(tq2), *d = load(back);
    same_model(a, b, 1);
    same_model(b, c, 0);
    same_model(c, d, 0);
    same_model(a, d, 0);
    /* the kit's scales come from bf16, which fp16 holds exactly: no loss at all */
    for (int l = 0; l < a->hp.n_layer; l++) assert_true(a->layers[l].wq.scale == f16_round(a->layers[l].wq.scale));
    bitnet_model_free(a);
    bitnet_model_free(b);
    bitnet_model_free(c);
    bitnet_model_free(d);
    same_gguf_tensors(back, kit, 0);
}

/* HF llama (bitlinear convention: inverse scales) → GGUF llama with q/k
 * permuted for interleaved RoPE, like the kit's llama.cpp-made files. */
static void test_hf_llama(void **state) {
    (void)state;
    const char *out = tu_path("llama-i2_s.gguf");
    convert(LLAMA_HF, out, BITNET_TYPE_I2_S, BITNET_TYPE_DEFAULT);
    bitnet_model *m = load(out), *kit = load(KIT "/tiny-llama-ternary/gguf/tiny-llama-ternary-i2_s.gguf");
    assert_string_equal(m->arch_name, "llama");
    assert_int_equal(m->hp.rope_neox, 0);
    assert_int_equal(m->tied_output, 0);
    same_model(kit, m, 0);
    bitnet_model_free(m);
    bitnet_model_free(kit);
    const char *tq = tu_path("llama-tq2_0.gguf");
    convert(LLAMA_HF, tq, BITNET_TYPE_TQ2_0, BITNET_TYPE_DEFAULT);
    m = load(tq);
    kit = load(KIT "/tiny-llama-ternary/gguf/tiny-llama-ternary-tq2_0.gguf");
    same_model(kit, m, 0);
    bitnet_model_free(m);
    bitnet_model_free(kit);
    /* GGUF llama → GGUF llama keeps the (already permuted) rows */
    const char *again = tu_path("llama-again.gguf");
    convert(out, again, BITNET_TYPE_TQ1_0, BITNET_TYPE_Q8_0);
    m = load(again);
    kit = load(out);
    assert_int_equal(m->tok_embd.type, BN_GGML_Q8_0);
    same_ternary(&kit->layers[1].wq, &m->layers[1].wq, 1);
    same_ternary(&kit->layers[1].wk, &m->layers[1].wk, 1);
    bitnet_model_free(m);
    bitnet_model_free(kit);
}

/* ------------------------------------------------------------- failures -- */

static void copy_prefix(const char *from, const char *to, long n) {
    FILE *f = fopen(from, "rb"), *g = fopen(to, "wb");
    assert_non_null(f);
    assert_non_null(g);
    char buf[65536];
    long done = 0;
    while (n < 0 || done < n) {
        size_t want = sizeof buf;
        if (n >= 0 && (long)want > n - done) want = (size_t)(n - done);
        size_t got = fread(buf, 1, want, f);
        if (!got) break;
        assert_int_equal(fwrite(buf, 1, got, g), got);
        done += (long)got;
    }
    fclose(f);
    fclose(g);
}

static long file_size(const char *p) {
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

static void expect_clean_failure(const char *src, const char *dst) {
    bitnet_convert_params p;
    bitnet_convert_params_default(&p);
    bitnet_error err;
    bitnet_status rc = bitnet_convert(src, dst, &p, &err);
    assert_int_not_equal(rc, BITNET_OK);
    assert_true(strlen(err.message) > 0);
    assert_null(strchr(err.message, '\n'));
    char tmp[400];
    snprintf(tmp, sizeof tmp, "%s.tmp", dst);
    assert_false(tu_exists(dst));
    assert_false(tu_exists(tmp));
}

static void test_corrupt_inputs(void **state) {
    (void)state;
    const char *kit = KIT "/tiny-bitnet/gguf/tiny-bitnet-tq2_0.gguf";
    long size = file_size(kit);
    const long cuts[] = {0, 3, 100, size / 3, size - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        const char *bad = tu_path("truncated.gguf");
        copy_prefix(kit, bad, cuts[i]);
        expect_clean_failure(bad, tu_path("out.gguf"));
    }
    /* an HF folder with a truncated model.safetensors */
    char cmd[1024];
    const char *hf = tu_path("hf-bad");
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s'/config.json '%s'/tokenizer.json '%s'/tokenizer_config.json '%s'/",
             hf, BITNET_HF, BITNET_HF, BITNET_HF, hf);
    assert_int_equal(system(cmd), 0);
    char st[400];
    snprintf(st, sizeof st, "%s/model.safetensors", hf);
    copy_prefix(BITNET_HF "/model.safetensors", st, file_size(BITNET_HF "/model.safetensors") / 2);
    expect_clean_failure(hf, tu_path("out.gguf"));
    /* ... and one with a broken tokenizer.json */
    copy_prefix(BITNET_HF "/model.safetensors", st, -1);
    char tj[400];
    snprintf(tj, sizeof tj, "%s/tokenizer.json", hf);
    copy_prefix(BITNET_HF "/tokenizer.json", tj, 5000);
    expect_clean_failure(hf, tu_path("out.gguf"));
    /* a source that does not exist, an output folder that does not exist */
    expect_clean_failure(tu_path("missing.gguf"), tu_path("out.gguf"));
    expect_clean_failure(kit, tu_path("no/such/dir/out.gguf"));
    /* a type the weights cannot take: TQ2_0 rows of 256 on a model whose rows
     * are 128-multiples only would fail; here, a bad embedding type */
    bitnet_convert_params p;
    bitnet_convert_params_default(&p);
    p.embd_type = BITNET_TYPE_TQ2_0;
    bitnet_error err;
    assert_int_equal(bitnet_convert(kit, tu_path("out.gguf"), &p, &err), BITNET_E_INVALID_ARG);
    assert_false(tu_exists(tu_path("out.gguf")));
}

static void test_refuses_overwrite(void **state) {
    (void)state;
    const char *out = tu_path("keep.gguf");
    FILE *f = fopen(out, "wb");
    fputs("keep me", f);
    fclose(f);
    bitnet_convert_params p;
    bitnet_convert_params_default(&p);
    bitnet_error err;
    assert_int_equal(bitnet_convert(KIT "/tiny-bitnet/gguf/tiny-bitnet-i2_s.gguf", out, &p, &err), BITNET_E_IO);
    assert_non_null(strstr(err.message, "--force"));
    assert_int_equal(file_size(out), 7);
    p.overwrite = 1;
    assert_int_equal(bitnet_convert(KIT "/tiny-bitnet/gguf/tiny-bitnet-i2_s.gguf", out, &p, &err), BITNET_OK);
    assert_true(file_size(out) > 1000000);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hf_bitnet_every_type), cmocka_unit_test(test_requantize_chain),
        cmocka_unit_test(test_hf_llama),             cmocka_unit_test(test_corrupt_inputs),
        cmocka_unit_test(test_refuses_overwrite),
    };
    return cmocka_run_group_tests(tests, tu_setup, tu_teardown);
}
