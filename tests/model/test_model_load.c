/* Model loading end to end through the public API: kit files load with the
 * right hyperparameters; damaged files (truncated, bit-flipped, hostile
 * configs) fail with a clean error and a message — run under ASan/UBSan in CI. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bitnet.h"
#include "test_util.h"

#define KIT BITNET_SHARED_DIR "/conformance"
#define TINY_I2S KIT "/tiny-bitnet/gguf/tiny-bitnet-i2_s.gguf"

/* Loads path; a failure must carry a non-empty one-line message. Returns the status. */
static bitnet_status try_load(const char *path) {
    bitnet_model *m = NULL;
    bitnet_error err;
    bitnet_model_params p;
    bitnet_model_params_default(&p);
    p.use_mmap = 0; /* an exact-size heap copy lets ASan catch over-reads */
    bitnet_status rc = bitnet_model_load(path, &p, &m, &err);
    if (rc == BITNET_OK) {
        assert_non_null(m);
        bitnet_model_free(m);
    } else {
        assert_null(m);
        assert_true(strlen(err.message) > 0);
        assert_null(strchr(err.message, '\n'));
    }
    return rc;
}

static void test_kit_models_load(void **state) {
    (void)state;
    const char *paths[] = {KIT "/tiny-bitnet", TINY_I2S, KIT "/tiny-bitnet/gguf/tiny-bitnet-tq1_0.gguf",
                           KIT "/tiny-bitnet/gguf/tiny-bitnet-tq2_0.gguf", KIT "/tiny-llama-ternary",
                           KIT "/tiny-llama-ternary/gguf/tiny-llama-ternary-i2_s.gguf"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        bitnet_model *m = NULL;
        bitnet_error err;
        bitnet_status rc = bitnet_model_load(paths[i], NULL, &m, &err);
        if (rc) fail_msg("%s: %s", paths[i], err.message);
        bitnet_model_info info;
        bitnet_model_get_info(m, &info);
        assert_int_equal(info.n_layer, 4);
        assert_int_equal(info.n_embd, 512);
        assert_int_equal(info.n_head, 8);
        assert_int_equal(info.n_head_kv, 2);
        assert_int_equal(info.n_ff, 1536);
        assert_int_equal(info.n_vocab, 4096);
        int llama = strstr(paths[i], "llama") != NULL;
        assert_int_equal(info.ffn_act, llama ? BITNET_FFN_SILU : BITNET_FFN_RELU2);
        assert_int_equal(info.has_sub_norms, !llama);
        assert_int_equal(info.tied_output, !llama);
        bitnet_model_free(m);
    }
}

static void test_missing_and_not_a_model(void **state) {
    (void)state;
    assert_int_equal(try_load("/nonexistent/model.gguf"), BITNET_E_IO);
    char dir[] = "/tmp/bitnet-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/text.gguf", dir);
    tu_write_file(path, "hello, I am not a GGUF file at all", 34);
    assert_int_not_equal(try_load(path), BITNET_OK);
    tu_write_file(path, "", 0);
    assert_int_not_equal(try_load(path), BITNET_OK);
    assert_int_not_equal(try_load(dir), BITNET_OK); /* a folder without config.json */
    unlink(path);
    rmdir(dir);
}

static void test_truncated_gguf(void **state) {
    (void)state;
    size_t len;
    unsigned char *data = tu_read_file(TINY_I2S, &len);
    char dir[] = "/tmp/bitnet-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/cut.gguf", dir);
    /* Every offset in the first 4 KiB of header, then 300 spread over the file. */
    for (size_t cut = 0; cut < len; cut += cut < 4096 ? 7 : len / 300) {
        tu_write_file(path, data, cut);
        assert_int_not_equal(try_load(path), BITNET_OK);
    }
    unlink(path);
    rmdir(dir);
    free(data);
}

static void test_bitflipped_gguf(void **state) {
    (void)state;
    size_t len;
    unsigned char *data = tu_read_file(TINY_I2S, &len);
    unsigned char *copy = malloc(len);
    assert_non_null(copy);
    char dir[] = "/tmp/bitnet-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/flip.gguf", dir);
    srand(1234);
    /* Flip bytes in the header region (metadata and tensor infos): the loader
     * must either accept the file or reject it cleanly — never crash. */
    size_t header = len < 200000 ? len : 200000;
    for (int i = 0; i < 300; i++) {
        memcpy(copy, data, len);
        size_t at = (size_t)rand() % header;
        copy[at] ^= (unsigned char)(1u << (rand() % 8));
        if (i % 3 == 0) copy[(size_t)rand() % 64] = (unsigned char)rand();
        tu_write_file(path, copy, len);
        (void)try_load(path);
    }
    unlink(path);
    rmdir(dir);
    free(copy);
    free(data);
}

static void copy_kit_hf(const char *dir) {
    const char *files[] = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"};
    for (size_t i = 0; i < 4; i++) {
        char src[512], dst[512];
        snprintf(src, sizeof src, "%s/tiny-bitnet/%s", KIT, files[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, files[i]);
        size_t len;
        unsigned char *b = tu_read_file(src, &len);
        tu_write_file(dst, b, len);
        free(b);
    }
}

static void test_damaged_hf_folder(void **state) {
    (void)state;
    char dir[] = "/tmp/bitnet-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    copy_kit_hf(dir);
    assert_int_equal(try_load(dir), BITNET_OK);
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    size_t clen;
    unsigned char *cfg = tu_read_file(path, &clen);
    const char *bad_configs[] = {
        "{", "[]", "{\"architectures\": [\"GPT2LMHeadModel\"]}",
        "{\"architectures\": [\"BitNetForCausalLM\"], \"hidden_act\": \"relu2\", \"vocab_size\": 4096}",
        "{\"architectures\": [\"BitNetForCausalLM\"], \"hidden_act\": \"relu2\", \"vocab_size\": 4096, "
        "\"hidden_size\": 512, \"intermediate_size\": 1536, \"num_hidden_layers\": 4000000000, "
        "\"num_attention_heads\": 8}",
        "{\"architectures\": [\"BitNetForCausalLM\"], \"hidden_act\": \"relu2\", \"vocab_size\": 4096, "
        "\"hidden_size\": 512, \"intermediate_size\": 1536, \"num_hidden_layers\": 4, \"num_attention_heads\": 7}",
        "{\"architectures\": [\"BitNetForCausalLM\"], \"hidden_act\": \"relu2\", \"vocab_size\": 4096, "
        "\"hidden_size\": 512, \"intermediate_size\": 1024, \"num_hidden_layers\": 4, \"num_attention_heads\": 8, "
        "\"num_key_value_heads\": 2}",
    };
    for (size_t i = 0; i < sizeof bad_configs / sizeof bad_configs[0]; i++) {
        tu_write_file(path, bad_configs[i], strlen(bad_configs[i]));
        assert_int_not_equal(try_load(dir), BITNET_OK);
    }
    tu_write_file(path, cfg, clen);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    size_t slen;
    unsigned char *st = tu_read_file(path, &slen);
    for (size_t cut = 0; cut < slen; cut += cut < 8192 ? 13 : slen / 100) {
        tu_write_file(path, st, cut);
        assert_int_not_equal(try_load(dir), BITNET_OK);
    }
    free(st);
    free(cfg);
    const char *files[] = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

static void test_eval_errors(void **state) {
    (void)state;
    bitnet_model *m = NULL;
    bitnet_context *c = NULL;
    bitnet_error err;
    assert_int_equal(bitnet_model_load(TINY_I2S, NULL, &m, &err), BITNET_OK);
    bitnet_context_params cp;
    bitnet_context_params_default(&cp);
    cp.n_ctx = 8;
    cp.n_threads = 2;
    assert_int_equal(bitnet_context_create(m, &cp, &c, &err), BITNET_OK);
    int32_t bad[] = {1, 5000};
    assert_int_equal(bitnet_eval(c, bad, 2, BITNET_LOGITS_LAST, &err), BITNET_E_INVALID_ARG);
    assert_int_equal(bitnet_context_n_past(c), 0);
    int32_t toks[9] = {4091, 390, 413, 258, 372, 11, 373, 276, 258};
    assert_int_equal(bitnet_eval(c, toks, 9, BITNET_LOGITS_LAST, &err), BITNET_E_CONTEXT_FULL);
    assert_int_equal(bitnet_context_n_past(c), 0);
    assert_int_equal(bitnet_eval(c, toks, 5, BITNET_LOGITS_ALL, &err), BITNET_OK);
    const float *l4 = bitnet_get_logits(c, 4);
    assert_non_null(l4);
    float first[4096];
    memcpy(first, l4, sizeof first);
    /* Re-evaluating the last token after truncation reproduces its logits. */
    assert_int_equal(bitnet_kv_truncate(c, 4, &err), BITNET_OK);
    assert_int_equal(bitnet_eval(c, toks + 4, 1, BITNET_LOGITS_LAST, &err), BITNET_OK);
    const float *again = bitnet_get_logits(c, -1);
    for (int i = 0; i < 4096; i++) assert_float_equal(again[i], first[i], 1e-4f);
    assert_int_equal(bitnet_eval(c, toks, 4, BITNET_LOGITS_LAST, &err), BITNET_E_CONTEXT_FULL);
    assert_null(bitnet_get_logits(c, 7));
    cp.device = "tpu";
    bitnet_context *c2 = NULL;
    assert_int_equal(bitnet_context_create(m, &cp, &c2, &err), BITNET_E_INVALID_ARG);
    assert_null(c2);
    bitnet_context_free(c);
    bitnet_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kit_models_load),   cmocka_unit_test(test_missing_and_not_a_model),
        cmocka_unit_test(test_truncated_gguf),    cmocka_unit_test(test_bitflipped_gguf),
        cmocka_unit_test(test_damaged_hf_folder), cmocka_unit_test(test_eval_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
