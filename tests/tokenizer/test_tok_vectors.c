/* Real tokenizers against reference data (../shared): the tokenizer vectors
 * made by HF tokenizers (Llama 3) and sentencepiece (Llama 2), run in process
 * through every file format we read (tokenizer.json, tokenizer.model, tiktoken,
 * GGUF written from them), with decoding giving each text back; the kit
 * models' reference prompt ids; end-of-generation ids; and a long input that
 * must not go quadratic. The CLI runs of the same vectors are
 * tests/tokenizer/run_vectors.sh. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format/gguf_writer.h"
#include "tokenizer/tok_internal.h"

#define SHARED BITNET_SHARED_DIR
#define KIT SHARED "/conformance"
#define TOKS SHARED "/data/tokenizers"

static cJSON *read_json(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    cJSON *j = cJSON_ParseWithLength(buf, (size_t)n);
    free(buf);
    if (!j) fail_msg("bad JSON in %s", path);
    return j;
}

static bitnet_tokenizer *load(const char *path) {
    bitnet_tokenizer *t = NULL;
    bitnet_error err = {0};
    if (bitnet_tokenizer_load(path, &t, &err)) fail_msg("%s", err.message);
    return t;
}

/* Every case of a vectors file: exact ids without BOS, special tokens parsed,
 * and decoding (specials shown, the prefix space stripped) gives the text. */
static void check_vectors(const bitnet_tokenizer *t, const char *vectors, const char *what) {
    cJSON *v = read_json(vectors);
    const cJSON *c;
    int n_cases = 0, bad = 0;
    int32_t *ids = malloc(65536 * sizeof *ids);
    char *text = malloc(1 << 20);
    assert_non_null(ids);
    assert_non_null(text);
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(v, "cases")) {
        const char *s = cJSON_GetObjectItem(c, "text")->valuestring;
        const cJSON *want = cJSON_GetObjectItem(c, "ids");
        int n = 0, nw = cJSON_GetArraySize(want), ok;
        bitnet_error err = {0};
        ok = bitnet_tokenize(t, s, strlen(s), 0, 1, ids, 65536, &n, &err) == BITNET_OK && n == nw;
        for (int i = 0; ok && i < n; i++) ok = ids[i] == (int32_t)cJSON_GetArrayItem(want, i)->valuedouble;
        for (int i = 0; i < nw; i++) ids[i] = (int32_t)cJSON_GetArrayItem(want, i)->valuedouble;
        int64_t len = bitnet_detokenize(t, ids, nw, BITNET_DETOK_SPECIAL | BITNET_DETOK_STRIP_SPACE, text, 1 << 20);
        int dec_ok = len == (int64_t)strlen(s) && !memcmp(text, s, (size_t)len);
        if ((!ok || !dec_ok) && bad++ < 5)
            print_message("%s case %d (%.40s): %s\n", what, n_cases, s, !ok ? "ids differ" : "decoding differs");
        n_cases++;
    }
    print_message("%s: %d/%d cases exact\n", what, n_cases - bad, n_cases);
    free(ids);
    free(text);
    cJSON_Delete(v);
    assert_int_equal(bad, 0);
    assert_true(n_cases > 400);
}

static void test_llama3_json(void **state) {
    (void)state;
    bitnet_tokenizer *t = load(TOKS "/llama3/tokenizer.json");
    check_vectors(t, KIT "/tokenizer-vectors/llama3-vectors.json", "llama3 tokenizer.json");
    assert_int_equal(bitnet_tokenizer_n_vocab(t), 128256);
    assert_int_equal(bitnet_tokenizer_bos(t), 128000);
    assert_int_equal(bitnet_tokenizer_eos(t), 128009); /* tokenizer_config.json says <|eot_id|> */
    assert_true(bitnet_tokenizer_is_eog(t, 128009));
    assert_true(bitnet_tokenizer_is_eog(t, 128001));
    assert_false(bitnet_tokenizer_is_eog(t, 128000));
    assert_int_equal(bitnet_tokenizer_find(t, "<|eot_id|>"), 128009);
    assert_true(t->ignore_merges);
    assert_string_equal(t->pre.name, "llama3");
    bitnet_tokenizer_free(t);
}

static void test_llama3_tiktoken(void **state) {
    (void)state;
    bitnet_tokenizer *t = load(TOKS "/llama3/tokenizer.model");
    assert_string_equal(t->source, "tiktoken");
    check_vectors(t, KIT "/tokenizer-vectors/llama3-vectors.json", "llama3 tiktoken");
    assert_int_equal(bitnet_tokenizer_find(t, "<|start_header_id|>"), 128006);
    assert_int_equal(bitnet_tokenizer_find(t, "<|reserved_special_token_250|>"), 128255);
    assert_int_equal(bitnet_tokenizer_find(t, "\xC4\xA0the"), 279); /* "Ġthe", as the JSON spells it */
    bitnet_tokenizer_free(t);
}

static void test_llama2_json(void **state) {
    (void)state;
    bitnet_tokenizer *t = load(TOKS "/llama2/tokenizer.json");
    assert_int_equal(t->kind, BN_TOK_SPM);
    check_vectors(t, KIT "/tokenizer-vectors/llama2-vectors.json", "llama2 tokenizer.json");
    assert_int_equal(bitnet_tokenizer_bos(t), 1);
    assert_int_equal(bitnet_tokenizer_eos(t), 2);
    bitnet_tokenizer_free(t);
}

static void test_llama2_model(void **state) {
    (void)state;
    bitnet_tokenizer *t = load(TOKS "/llama2/tokenizer.model");
    assert_string_equal(t->source, "tokenizer.model");
    check_vectors(t, KIT "/tokenizer-vectors/llama2-vectors.json", "llama2 tokenizer.model");
    assert_int_equal(bitnet_tokenizer_bos(t), 1);
    assert_true(bitnet_tokenizer_is_eog(t, 2));
    int32_t ids[8];
    int n;
    assert_int_equal(bitnet_tokenize(t, "Hello", 5, -1, 1, ids, 8, &n, NULL), BITNET_OK);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 15043);
    bitnet_tokenizer_free(t);
}

/* ------------------------------------------------------------------ GGUF -- */

/* Writes the vocabulary of t (and merges from a tokenizer.json, for gpt2) as
 * a GGUF file without tensors. pre = NULL leaves tokenizer.ggml.pre out. */
static void write_gguf(const char *path, const bitnet_tokenizer *t, const char *model, const char *pre,
                       const char *merges_json) {
    bn_gguf_writer *w = NULL;
    bitnet_error err = {0};
    assert_int_equal(bn_gguf_writer_open(&w, path, 1, &err), BITNET_OK);
    int n = t->n_vocab;
    const char **texts = malloc((size_t)n * sizeof *texts);
    size_t *lens = malloc((size_t)n * sizeof *lens);
    float *scores = malloc((size_t)n * sizeof *scores);
    int32_t *types = malloc((size_t)n * sizeof *types);
    for (int i = 0; i < n; i++) {
        texts[i] = bn_tok_text(t, i);
        lens[i] = t->tokens[i].text_len;
        scores[i] = t->tokens[i].score;
        types[i] = t->tokens[i].type;
    }
    bn_gguf_writer_set_str(w, "general.architecture", "llama");
    bn_gguf_writer_set_str(w, "tokenizer.ggml.model", model);
    if (pre) bn_gguf_writer_set_str(w, "tokenizer.ggml.pre", pre);
    bn_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", texts, lens, (uint64_t)n);
    bn_gguf_writer_set_arr(w, "tokenizer.ggml.scores", BN_GGUF_FLOAT32, scores, (uint64_t)n);
    bn_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", BN_GGUF_INT32, types, (uint64_t)n);
    if (merges_json) {
        cJSON *j = read_json(merges_json);
        const cJSON *m = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "model"), "merges"), *e;
        int nm = cJSON_GetArraySize(m), i = 0;
        const char **ms = malloc((size_t)nm * sizeof *ms);
        cJSON_ArrayForEach(e, m) ms[i++] = e->valuestring;
        bn_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", ms, NULL, (uint64_t)nm);
        free(ms);
        cJSON_Delete(j);
    }
    bn_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)t->bos);
    bn_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)t->eos);
    assert_int_equal(bn_gguf_writer_begin_data(w), BITNET_OK);
    if (bn_gguf_writer_finish(w)) fail_msg("%s", bn_gguf_writer_error(w)->message);
    bn_gguf_writer_free(w);
    free(texts);
    free(lens);
    free(scores);
    free(types);
}

static void tmp_path(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "/tmp/bitnet-tok-%d-%s.gguf", (int)getpid(), name);
}

static void test_gguf_spm(void **state) {
    (void)state;
    bitnet_tokenizer *src = load(TOKS "/llama2/tokenizer.model");
    char path[256];
    tmp_path(path, sizeof path, "spm");
    write_gguf(path, src, "llama", NULL, NULL);
    bitnet_tokenizer *t = load(path);
    assert_string_equal(t->source, "gguf");
    assert_int_equal(t->kind, BN_TOK_SPM);
    assert_true(t->byte_fallback);
    assert_true(t->add_bos);
    check_vectors(t, KIT "/tokenizer-vectors/llama2-vectors.json", "llama2 gguf");
    bitnet_tokenizer_free(t);
    bitnet_tokenizer_free(src);
    unlink(path);
}

static void test_gguf_gpt2(void **state) {
    (void)state;
    bitnet_tokenizer *src = load(TOKS "/llama3/tokenizer.json");
    char path[256];
    tmp_path(path, sizeof path, "gpt2");
    /* No tokenizer.ggml.pre, as in the official 2B4T file: Llama 3 it is. */
    write_gguf(path, src, "gpt2", NULL, TOKS "/llama3/tokenizer.json");
    bitnet_tokenizer *t = load(path);
    assert_string_equal(t->pre.name, "llama3");
    assert_true(t->ignore_merges);
    assert_true(t->add_bos);
    check_vectors(t, KIT "/tokenizer-vectors/llama3-vectors.json", "llama3 gguf (no pre)");
    bitnet_tokenizer_free(t);
    unlink(path);

    /* GPT-2's regex splits digit runs whole, Llama 3's in threes. */
    write_gguf(path, src, "gpt2", "gpt2", TOKS "/llama3/tokenizer.json");
    t = load(path);
    assert_string_equal(t->pre.name, "gpt2");
    int32_t ids[16];
    int n;
    assert_int_equal(bitnet_tokenize(t, "12345", 5, 0, 1, ids, 16, &n, NULL), BITNET_OK);
    assert_int_equal(n, 2); /* "123" "45" by merges of the whole digit run */
    bitnet_tokenizer_free(t);
    unlink(path);

    write_gguf(path, src, "gpt2", "no-such-pre", TOKS "/llama3/tokenizer.json");
    bitnet_tokenizer *bad = NULL;
    bitnet_error err = {0};
    assert_int_equal(bitnet_tokenizer_load(path, &bad, &err), BITNET_E_UNSUPPORTED);
    assert_non_null(strstr(err.message, "no-such-pre"));
    assert_null(bad);
    unlink(path);
    bitnet_tokenizer_free(src);
}

/* ------------------------------------------------------------ kit models -- */

static void check_reference(const bitnet_tokenizer *t, const char *model, const char *what) {
    char path[512];
    snprintf(path, sizeof path, KIT "/%s/reference/reference.json", model);
    cJSON *r = read_json(path);
    const cJSON *c;
    int cases = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(r, "cases")) {
        const char *prompt = cJSON_GetObjectItem(c, "prompt")->valuestring;
        const cJSON *want = cJSON_GetObjectItem(c, "prompt_ids");
        int32_t ids[512];
        int n = 0;
        assert_int_equal(bitnet_tokenize(t, prompt, strlen(prompt), -1, 1, ids, 512, &n, NULL), BITNET_OK);
        if (n != cJSON_GetArraySize(want)) fail_msg("%s: '%s': %d ids, want %d", what, prompt, n, cJSON_GetArraySize(want));
        for (int i = 0; i < n; i++)
            if (ids[i] != (int32_t)cJSON_GetArrayItem(want, i)->valuedouble) fail_msg("%s: '%s': id %d", what, prompt, i);
        cases++;
    }
    assert_true(cases >= 8);
    cJSON_Delete(r);
}

static void check_once_upon(const bitnet_tokenizer *t) {
    int32_t ids[8];
    int n;
    assert_int_equal(bitnet_tokenize(t, "Once upon a time", 16, 0, 1, ids, 8, &n, NULL), BITNET_OK);
    assert_int_equal(n, 4);
    assert_memory_equal(ids, ((const int32_t[]){390, 413, 258, 372}), 4 * sizeof(int32_t));
    assert_int_equal(bitnet_tokenize(t, "Once upon a time", 16, -1, 1, ids, 8, &n, NULL), BITNET_OK);
    assert_int_equal(n, 5);
    assert_int_equal(ids[0], 4091);
    assert_int_equal(bitnet_tokenizer_bos(t), 4091);
    assert_int_equal(bitnet_tokenizer_eos(t), 4092);
    assert_true(bitnet_tokenizer_is_eog(t, 4092));
    assert_true(bitnet_tokenizer_is_eog(t, 4093)); /* <|eot_id|> */
}

static void test_kit_models(void **state) {
    (void)state;
    static const char *const models[] = {"tiny-bitnet", "tiny-llama-ternary"};
    static const char *const fmts[] = {"i2_s", "tq1_0", "tq2_0"};
    for (int m = 0; m < 2; m++) {
        char path[512];
        snprintf(path, sizeof path, KIT "/%s/tokenizer.json", models[m]);
        bitnet_tokenizer *t = load(path);
        check_once_upon(t);
        check_reference(t, models[m], path);
        bitnet_tokenizer_free(t);
        snprintf(path, sizeof path, KIT "/%s", models[m]); /* the folder */
        bitnet_tokenizer *d = NULL;
        bitnet_error err = {0};
        if (bn_tokenizer_from_hf_dir(&d, path, &err)) fail_msg("%s", err.message);
        check_once_upon(d);
        check_reference(d, models[m], path);
        bitnet_tokenizer_free(d);
        for (int f = 0; f < 3; f++) {
            snprintf(path, sizeof path, KIT "/%s/gguf/%s-%s.gguf", models[m], models[m], fmts[f]);
            t = load(path);
            check_once_upon(t);
            check_reference(t, models[m], path);
            assert_string_equal(t->pre.name, "llama3"); /* tiny-bitnet: key missing; tiny-llama-ternary: llama-bpe */
            bitnet_tokenizer_free(t);
        }
    }
}

/* A megabyte of letters without a space (one pre-token) and one of spaces:
 * the heap-based merge keeps this fast; a quadratic loop would take minutes. */
static void test_long_runs(void **state) {
    (void)state;
    bitnet_tokenizer *t = load(TOKS "/llama2/tokenizer.model");
    bitnet_tokenizer *l3 = load(TOKS "/llama3/tokenizer.json");
    size_t len = 1 << 20;
    char *text = malloc(len);
    int32_t *ids = malloc((len + 1) * sizeof *ids);
    char *back = malloc(len + 1);
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < len; i++) text[i] = pass ? ' ' : "abcdefghij"[i % 10];
        const bitnet_tokenizer *tk[2] = {t, l3};
        for (int k = 0; k < 2; k++) {
            int n = 0;
            assert_int_equal(bitnet_tokenize(tk[k], text, len, 0, 1, ids, (int)len + 1, &n, NULL), BITNET_OK);
            assert_true(n > 0 && n < (int)len);
            int64_t blen = bitnet_detokenize(tk[k], ids, n, BITNET_DETOK_STRIP_SPACE, back, len + 1);
            assert_int_equal(blen, (int64_t)len);
            assert_memory_equal(back, text, len);
        }
    }
    free(text);
    free(ids);
    free(back);
    bitnet_tokenizer_free(t);
    bitnet_tokenizer_free(l3);
}

/* Invalid UTF-8 is tokenized as bytes and comes back unchanged. */
static void test_invalid_utf8_roundtrip(void **state) {
    (void)state;
    static const char *const paths[] = {TOKS "/llama3/tokenizer.model", TOKS "/llama2/tokenizer.model"};
    static const char text[] = "ok \xFF\xFE caf\xC3 \xE2\x82 x\xF0\x9F\x98 \xED\xA0\x80 \xC0\xAF end\xE4\xBD";
    for (int p = 0; p < 2; p++) {
        bitnet_tokenizer *t = load(paths[p]);
        int32_t ids[128];
        int n = 0;
        assert_int_equal(bitnet_tokenize(t, text, sizeof text - 1, 0, 1, ids, 128, &n, NULL), BITNET_OK);
        char back[128];
        assert_int_equal(bitnet_detokenize(t, ids, n, BITNET_DETOK_STRIP_SPACE, back, sizeof back), sizeof text - 1);
        assert_memory_equal(back, text, sizeof text - 1);
        /* The stream gives the same bytes, in pieces of whole characters. */
        bitnet_detok *d;
        assert_int_equal(bitnet_detok_new(t, BITNET_DETOK_STRIP_SPACE, &d, NULL), BITNET_OK);
        size_t got = 0;
        for (int i = 0; i <= n; i++) {
            const char *s;
            size_t len;
            if (i < n) assert_int_equal(bitnet_detok_feed(d, ids[i], &s, &len, NULL), BITNET_OK);
            else bitnet_detok_flush(d, &s, &len);
            assert_true(got + len <= sizeof text - 1);
            assert_memory_equal(s, text + got, len);
            got += len;
        }
        assert_int_equal(got, sizeof text - 1);
        bitnet_detok_free(d);
        bitnet_tokenizer_free(t);
    }
}

/* Streaming a real multi-byte text: pieces never end inside a character. */
static void test_stream_multibyte(void **state) {
    (void)state;
    static const char *const paths[] = {TOKS "/llama3/tokenizer.model", TOKS "/llama2/tokenizer.model"};
    static const char text[] = "emoji \xF0\x9F\x98\x80\xF0\x9F\x8E\x89 \xE6\x88\x91\xE7\x88\xB1 caf\xC3\xA9 \xD7\xA9\xD7\x9C";
    for (int p = 0; p < 2; p++) {
        bitnet_tokenizer *t = load(paths[p]);
        int32_t ids[128];
        int n = 0, held = 0;
        assert_int_equal(bitnet_tokenize(t, text, sizeof text - 1, 0, 1, ids, 128, &n, NULL), BITNET_OK);
        bitnet_detok *d;
        assert_int_equal(bitnet_detok_new(t, BITNET_DETOK_STRIP_SPACE, &d, NULL), BITNET_OK);
        size_t got = 0;
        for (int i = 0; i < n; i++) {
            const char *s;
            size_t len;
            assert_int_equal(bitnet_detok_feed(d, ids[i], &s, &len, NULL), BITNET_OK);
            held += len == 0;
            for (size_t k = 0; k < len;) { /* whole, valid characters only */
                int cl = bn_utf8_valid_len((const uint8_t *)s + k, len - k);
                assert_true(cl > 0);
                k += (size_t)cl;
            }
            assert_memory_equal(s, text + got, len);
            got += len;
        }
        assert_int_equal(got, sizeof text - 1);
        assert_true(held > 0); /* some character really was split across tokens */
        bitnet_detok_free(d);
        bitnet_tokenizer_free(t);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama3_json),   cmocka_unit_test(test_llama3_tiktoken),
        cmocka_unit_test(test_llama2_json),   cmocka_unit_test(test_llama2_model),
        cmocka_unit_test(test_gguf_spm),      cmocka_unit_test(test_gguf_gpt2),
        cmocka_unit_test(test_kit_models),    cmocka_unit_test(test_long_runs),
        cmocka_unit_test(test_invalid_utf8_roundtrip), cmocka_unit_test(test_stream_multibyte),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
