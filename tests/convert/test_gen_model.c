/* bitnet_gen_model: every preset (few layers, small vocabulary) loads with
 * the right hyperparameters; a tiny model gives finite, non-degenerate logits,
 * identical across ternary types; generation is deterministic, streams and
 * cancels cleanly. */
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

#define KIT BITNET_SHARED_DIR "/conformance"

static bitnet_model *load(const char *path) {
    bitnet_model *m = NULL;
    bitnet_error err;
    bitnet_status rc = bitnet_model_load(path, NULL, &m, &err);
    if (rc) fprintf(stderr, "load %s: %s\n", path, err.message);
    assert_int_equal(rc, BITNET_OK);
    return m;
}

static void gen(const char *out, bitnet_gen_params *p) {
    bitnet_error err;
    p->overwrite = 1;
    bitnet_status rc = bitnet_gen_model(out, p, &err);
    if (rc) fprintf(stderr, "gen %s: %s\n", out, err.message);
    assert_int_equal(rc, BITNET_OK);
}

/* --------------------------------------------------------------- presets -- */

static void check_preset(const char *preset, const char *arch, int n_embd, int n_ff, int n_head, int n_head_kv,
                         int head_dim, float theta, float eps, int tied, bitnet_ffn_act act) {
    bitnet_gen_params p;
    assert_int_equal(bitnet_gen_params_preset(&p, preset, NULL), BITNET_OK);
    assert_string_equal(p.arch, arch);
    p.n_layer = 1;
    p.n_vocab = 512;
    const char *out = tu_path("preset.gguf");
    gen(out, &p);
    bitnet_model *m = load(out);
    bitnet_model_info i;
    bitnet_model_get_info(m, &i);
    assert_string_equal(i.arch, arch);
    assert_string_equal(i.source_format, "gguf");
    assert_int_equal(i.n_vocab, 512);
    assert_int_equal(i.n_embd, n_embd);
    assert_int_equal(i.n_layer, 1);
    assert_int_equal(i.n_ff, n_ff);
    assert_int_equal(i.n_head, n_head);
    assert_int_equal(i.n_head_kv, n_head_kv);
    assert_int_equal(i.head_dim, head_dim);
    assert_true(i.rope_theta == theta);
    assert_true(i.rms_eps == eps);
    assert_int_equal(i.tied_output, tied);
    assert_int_equal(i.ffn_act, act);
    assert_int_equal(i.has_sub_norms, strcmp(arch, "llama") != 0);
    assert_int_equal(bitnet_model_n_tensors(m), 2 + !tied + (strcmp(arch, "llama") ? 11 : 9));
    bitnet_tensor_info t;
    assert_int_equal(bitnet_model_tensor(m, 0, &t), 1);
    assert_string_equal(t.name, "token_embd.weight");
    assert_string_equal(t.type, "F16");
    const bitnet_tokenizer *tok = bitnet_model_tokenizer(m);
    assert_non_null(tok);
    assert_int_equal(bitnet_tokenizer_n_vocab(tok), 512);
    assert_int_equal(bitnet_tokenizer_find(tok, "<|eot_id|>"), i.eot_id);
    assert_true(i.eot_id > 0);
    bitnet_model_free(m);
}

static void test_presets(void **state) {
    (void)state;
    check_preset("2b4t", "bitnet-b1.58", 2560, 6912, 20, 5, 128, 500000.0f, 1e-5f, 1, BITNET_FFN_RELU2);
    check_preset("large-0.7b", "bitnet", 1536, 4096, 16, 16, 96, 10000.0f, 1e-5f, 1, BITNET_FFN_SILU);
    check_preset("falcon3-7b", "llama", 3072, 23040, 12, 4, 256, 1000042.0f, 1e-6f, 0, BITNET_FFN_SILU);
    check_preset("llama3-8b", "llama", 4096, 14336, 32, 8, 128, 500000.0f, 1e-5f, 0, BITNET_FFN_SILU);
    /* full-size defaults are the real models' */
    bitnet_gen_params p;
    bitnet_gen_params_preset(&p, "2b4t", NULL);
    assert_int_equal(p.n_vocab, 128256);
    assert_int_equal(p.n_layer, 30);
    assert_int_equal(p.n_ctx, 4096);
    assert_int_equal(bitnet_gen_params_preset(&p, "nope", NULL), BITNET_E_INVALID_ARG);
    for (int i = 0; bitnet_gen_preset_name(i); i++)
        assert_int_equal(bitnet_gen_params_preset(&p, bitnet_gen_preset_name(i), NULL), BITNET_OK);
}

/* 1bitLLM 3B: hidden 3200 is not a multiple of 256 (no TQ types), and its
 * FFN width 8640 is not a multiple of 128. */
static void test_3b(void **state) {
    (void)state;
    bitnet_gen_params p;
    bitnet_error err;
    bitnet_gen_params_preset(&p, "3b", NULL);
    p.n_layer = 1;
    p.n_vocab = 512;
    p.weight_type = BITNET_TYPE_TQ2_0;
    const char *out = tu_path("3b.gguf");
    assert_int_equal(bitnet_gen_model(out, &p, &err), BITNET_E_UNSUPPORTED);
    assert_non_null(strstr(err.message, "256"));
    assert_int_not_equal(access(out, F_OK), 0);
    p.weight_type = BITNET_TYPE_I2_S;
    gen(out, &p);
    bitnet_model *m = NULL;
    bitnet_status rc = bitnet_model_load(out, NULL, &m, &err);
    if (rc == BITNET_OK) { /* an engine that learns this layout must report the shapes */
        bitnet_model_info i;
        bitnet_model_get_info(m, &i);
        assert_int_equal(i.n_embd, 3200);
        assert_int_equal(i.n_ff, 8640);
        bitnet_model_free(m);
    } else {
        assert_true(strlen(err.message) > 0);
        assert_null(strchr(err.message, '\n'));
    }
}

/* ---------------------------------------------------------------- logits -- */

/* Logits of a fixed sequence, all positions. */
static float *run_logits(const char *path, int n_tokens, int *n_vocab) {
    bitnet_model *m = load(path);
    bitnet_context_params cp;
    bitnet_context_params_default(&cp);
    cp.n_ctx = 64;
    cp.n_threads = 2;
    cp.device = "cpu";
    bitnet_context *ctx = NULL;
    bitnet_error err;
    assert_int_equal(bitnet_context_create(m, &cp, &ctx, &err), BITNET_OK);
    bitnet_model_info info;
    bitnet_model_get_info(m, &info);
    *n_vocab = info.n_vocab;
    int32_t ids[16];
    for (int i = 0; i < n_tokens; i++) ids[i] = (int32_t)((i * 97 + 5) % info.n_vocab);
    assert_int_equal(bitnet_eval(ctx, ids, n_tokens, BITNET_LOGITS_ALL, &err), BITNET_OK);
    float *all = malloc((size_t)n_tokens * (size_t)info.n_vocab * sizeof *all);
    for (int i = 0; i < n_tokens; i++) {
        const float *l = bitnet_get_logits(ctx, i);
        assert_non_null(l);
        memcpy(all + (size_t)i * info.n_vocab, l, (size_t)info.n_vocab * sizeof *l);
    }
    bitnet_context_free(ctx);
    bitnet_model_free(m);
    return all;
}

static void test_tiny_logits(void **state) {
    (void)state;
    const bitnet_type types[] = {BITNET_TYPE_I2_S, BITNET_TYPE_TQ2_0, BITNET_TYPE_TQ1_0, BITNET_TYPE_F16};
    const int nt = 8;
    float *ref = NULL;
    int nv = 0;
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        bitnet_gen_params p;
        bitnet_gen_params_preset(&p, "custom", NULL);
        p.n_layer = 4;
        p.weight_type = types[k];
        const char *out = tu_path("tiny.gguf");
        gen(out, &p);
        float *l = run_logits(out, nt, &nv);
        if (!ref) {
            /* finite, spread out, and different from position to position */
            double sum = 0, sum2 = 0, amax = 0, diff = 0;
            for (size_t i = 0; i < (size_t)nt * nv; i++) {
                assert_true(isfinite(l[i]));
                sum += l[i];
                sum2 += (double)l[i] * l[i];
                amax = fmax(amax, fabs(l[i]));
            }
            for (int i = 0; i < nv; i++) diff = fmax(diff, fabs(l[i] - l[(size_t)(nt - 1) * nv + i]));
            double sd = sqrt(sum2 / ((double)nt * nv) - pow(sum / ((double)nt * nv), 2));
            assert_true(sd > 0.05);
            assert_true(amax < 100.0);
            assert_true(diff > 0.01);
            ref = l;
            continue;
        }
        /* the same weights in another ternary type give the same logits */
        double worst = 0;
        for (size_t i = 0; i < (size_t)nt * nv; i++) worst = fmax(worst, fabs(l[i] - ref[i]));
        assert_true(worst < 1e-3);
        free(l);
    }
    free(ref);
}

/* ------------------------------------------------------------ behaviour -- */

static void test_deterministic(void **state) {
    (void)state;
    bitnet_gen_params p;
    bitnet_gen_params_preset(&p, "custom", NULL);
    const char *a = tu_path("a.gguf"), *b = tu_path("b.gguf");
    gen(a, &p);
    gen(b, &p);
    size_t na, nb;
    unsigned char *da = tu_read_file(a, &na), *db = tu_read_file(b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(da, db, na);
    free(db);
    p.seed = 7;
    gen(b, &p);
    db = tu_read_file(b, &nb);
    assert_int_equal(na, nb);
    assert_memory_not_equal(da, db, na);
    free(da);
    free(db);
}

static int cancel_after_3(void *user, const char *tensor, int index, int count, uint64_t done, uint64_t total) {
    (void)tensor; (void)index; (void)count; (void)done; (void)total;
    return ++*(int *)user >= 3;
}

static void test_cancel_and_refuse(void **state) {
    (void)state;
    bitnet_gen_params p;
    bitnet_error err;
    bitnet_gen_params_preset(&p, "custom", NULL);
    int calls = 0;
    p.progress = cancel_after_3;
    p.progress_user = &calls;
    const char *out = tu_path("cancel.gguf");
    char tmp[400];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    assert_int_equal(bitnet_gen_model(out, &p, &err), BITNET_E_CANCELLED);
    assert_int_equal(calls, 3);
    assert_int_not_equal(access(out, F_OK), 0);
    assert_int_not_equal(access(tmp, F_OK), 0);
    /* an existing file is kept without overwrite */
    p.progress = NULL;
    gen(out, &p);
    p.overwrite = 0;
    assert_int_equal(bitnet_gen_model(out, &p, &err), BITNET_E_IO);
    assert_non_null(strstr(err.message, "exists"));
    /* bad shapes are refused up front */
    bitnet_gen_params_preset(&p, "custom", NULL);
    p.n_head_kv = 3;
    assert_int_not_equal(bitnet_gen_model(tu_path("bad.gguf"), &p, &err), BITNET_OK);
    bitnet_gen_params_preset(&p, "custom", NULL);
    p.arch = "gpt-j";
    assert_int_equal(bitnet_gen_model(tu_path("bad.gguf"), &p, &err), BITNET_E_INVALID_ARG);
    bitnet_gen_params_preset(&p, "custom", NULL);
    p.embd_type = BITNET_TYPE_Q6_K;
    p.n_embd = 128 * 3; /* not a multiple of 256 */
    p.n_head = 6;
    p.n_head_kv = 2;
    assert_int_equal(bitnet_gen_model(tu_path("bad.gguf"), &p, &err), BITNET_E_UNSUPPORTED);
    assert_int_not_equal(access(tu_path("bad.gguf"), F_OK), 0);
}

/* A real tokenizer embedded (the kit's, with its side files). */
static void test_real_tokenizer(void **state) {
    (void)state;
    bitnet_gen_params p;
    bitnet_gen_params_preset(&p, "custom", NULL);
    p.n_vocab = 4096;
    p.tokenizer = KIT "/tiny-bitnet/tokenizer.json";
    p.embd_type = BITNET_TYPE_Q8_0;
    const char *out = tu_path("tok.gguf");
    gen(out, &p);
    bitnet_model *m = load(out);
    const bitnet_tokenizer *tok = bitnet_model_tokenizer(m);
    assert_int_equal(bitnet_tokenizer_n_vocab(tok), 4096);
    assert_int_equal(bitnet_tokenizer_bos(tok), 4091);
    assert_int_equal(bitnet_tokenizer_eos(tok), 4092);
    int32_t ids[32];
    int n = 0;
    bitnet_error err;
    assert_int_equal(bitnet_tokenize(tok, "Once upon a time", 16, 0, 0, ids, 32, &n, &err), BITNET_OK);
    assert_true(n >= 2 && n < 16); /* merges work: fewer tokens than bytes */
    bitnet_model_free(m);
    /* a tokenizer larger than the model's vocabulary is refused */
    p.n_vocab = 1024;
    assert_int_equal(bitnet_gen_model(out, &p, &err), BITNET_E_FORMAT);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_presets),       cmocka_unit_test(test_3b),
        cmocka_unit_test(test_tiny_logits),   cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_cancel_and_refuse), cmocka_unit_test(test_real_tokenizer),
    };
    return cmocka_run_group_tests(tests, tu_setup, tu_teardown);
}
