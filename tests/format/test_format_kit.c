/* The conformance kit's GGUF files (../shared/conformance): facts about their
 * metadata and tensors, agreement of the three ternary encodings with each
 * other and with the Hugging Face packed checkpoint (which pins down the
 * I2_S/TQ1_0/TQ2_0 layouts on real data), and robustness: truncated copies and
 * header byte flips must open or fail cleanly, never crash or over-read (all
 * mutated copies are exact-size malloc buffers, so ASan sees over-reads). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/ggml_types.h"
#include "format/gguf.h"
#include "format/safetensors.h"
#include "util/mapped_file.h"

#define KIT BITNET_SHARED_DIR "/conformance"

typedef struct kit_file {
    const char *model, *fmt, *arch;
    uint32_t type, file_type;
    int n_tensors, n_kv;
} kit_file;

static const kit_file KIT_FILES[] = {
    {"tiny-bitnet", "i2_s", "bitnet-b1.58", BN_GGML_I2_S, 40, 46, 24},
    {"tiny-bitnet", "tq1_0", "bitnet-b1.58", BN_GGML_TQ1_0, 36, 46, 24},
    {"tiny-bitnet", "tq2_0", "bitnet-b1.58", BN_GGML_TQ2_0, 37, 46, 24},
    {"tiny-llama-ternary", "i2_s", "llama", BN_GGML_I2_S, 40, 39, 27},
    {"tiny-llama-ternary", "tq1_0", "llama", BN_GGML_TQ1_0, 36, 39, 27},
    {"tiny-llama-ternary", "tq2_0", "llama", BN_GGML_TQ2_0, 37, 39, 27},
};
#define N_KIT 6

static const char *const MATS[7] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
static const char *const HF_MATS[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                       "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

static void kit_path(char *buf, size_t n, const kit_file *k) {
    snprintf(buf, n, KIT "/%s/gguf/%s-%s.gguf", k->model, k->model, k->fmt);
}

static bn_gguf *open_kit(const kit_file *k, int use_mmap) {
    char path[1024];
    kit_path(path, sizeof path, k);
    bn_gguf *g = NULL;
    bitnet_error e = {0};
    if (bn_gguf_open(&g, path, use_mmap, &e) != BITNET_OK) fail_msg("%s: %s", path, e.message);
    return g;
}

static uint32_t get_u32(const bn_gguf *g, const char *arch, const char *suffix) {
    char key[128];
    uint32_t v = 0;
    snprintf(key, sizeof key, "%s%s", arch, suffix);
    assert_int_equal(bn_gguf_get_u32(g, key, &v), 1);
    return v;
}

/* ------------------------------------------------------------- facts -- */

static void check_tokenizer_keys(const bn_gguf *g, const kit_file *k) {
    bn_str s;
    int b;
    uint32_t et, u;
    uint64_t n;
    assert_int_equal(bn_gguf_get_str(g, "tokenizer.ggml.model", &s), 1);
    assert_true(bn_str_eq(s, "gpt2"));
    assert_int_equal(bn_gguf_get_str(g, "tokenizer.ggml.pre", &s), strcmp(k->arch, "llama") == 0 ? 1 : 0);
    assert_int_equal(bn_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b), 1);
    assert_int_equal(b, 1);
    assert_int_equal(bn_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &u), 1), assert_int_equal(u, 4091);
    assert_int_equal(bn_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &u), 1), assert_int_equal(u, 4092);
    assert_int_equal(bn_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n), 1);
    assert_int_equal(et, BN_GGUF_STRING), assert_int_equal(n, 4096);
    const bn_gguf_kv *tok = bn_gguf_find_kv(g, "tokenizer.ggml.tokens");
    assert_true(bn_str_eq(bn_gguf_arr_str(g, tok, 0), "!"));
    assert_true(bn_str_eq(bn_gguf_arr_str(g, tok, 4091), "<|begin_of_text|>"));
    assert_int_equal(bn_gguf_get_arr(g, "tokenizer.ggml.merges", &et, &n), 1);
    assert_int_equal(n, 3835);
    assert_true(bn_str_eq(bn_gguf_arr_str(g, bn_gguf_find_kv(g, "tokenizer.ggml.merges"), 0), "h e"));
    assert_int_equal(bn_gguf_get_arr(g, "tokenizer.ggml.scores", &et, &n), 1);
    assert_int_equal(et, BN_GGUF_FLOAT32), assert_int_equal(n, 4096);
    assert_int_equal(bn_gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &n), 1);
    assert_int_equal(et, BN_GGUF_INT32);
    assert_int_equal(bn_gguf_arr_int(bn_gguf_find_kv(g, "tokenizer.ggml.token_type"), 0), 1);
    assert_int_equal(bn_gguf_get_str(g, "tokenizer.chat_template", &s), 1);
}

static void check_tensor_types(const bn_gguf *g, const kit_file *k) {
    int n_tern = 0, n_f32 = 0, n_f16 = 0;
    for (int64_t i = 0; i < bn_gguf_n_tensors(g); i++) {
        const bn_gguf_tensor *t = bn_gguf_tensor_at(g, i);
        if (t->type == k->type) n_tern++;
        else if (t->type == BN_GGML_F32) n_f32++, assert_int_equal(t->n_dims, 1);
        else if (t->type == BN_GGML_F16) n_f16++;
        else fail_msg("unexpected type %s", bn_ggml_type_name(t->type));
        assert_int_equal(t->offset % 32, 0);
    }
    int llama = strcmp(k->arch, "llama") == 0;
    assert_int_equal(n_tern, 28);
    assert_int_equal(n_f16, llama ? 2 : 1);  /* token_embd (+ output for the untied llama) */
    assert_int_equal(n_f32, llama ? 9 : 17); /* norms; bitnet adds 2 sub-norms per layer */
    const bn_gguf_tensor *e = bn_gguf_find_tensor(g, "token_embd.weight");
    assert_non_null(e);
    assert_int_equal(e->type, BN_GGML_F16), assert_int_equal(e->ne[0], 512), assert_int_equal(e->ne[1], 4096);
    assert_true((bn_gguf_find_tensor(g, "output.weight") != NULL) == llama);
    const bn_gguf_tensor *d = bn_gguf_find_tensor(g, "blk.3.ffn_down.weight");
    assert_non_null(d);
    assert_int_equal(d->ne[0], 1536), assert_int_equal(d->ne[1], 512);
    assert_int_equal(d->n_bytes, bn_ggml_tensor_bytes(k->type, 1536, 1536 * 512));
}

static void test_kit_facts(void **state) {
    (void)state;
    for (int f = 0; f < N_KIT; f++) {
        const kit_file *k = &KIT_FILES[f];
        bn_gguf *g = open_kit(k, f % 2);
        bn_str s;
        float eps;
        uint32_t ft;
        assert_int_equal(bn_gguf_version(g), 3);
        assert_int_equal(bn_gguf_alignment(g), 32);
        assert_null(bn_gguf_find_kv(g, "general.alignment"));
        assert_int_equal(bn_gguf_n_tensors(g), k->n_tensors);
        assert_int_equal(bn_gguf_n_kv(g), k->n_kv);
        assert_int_equal(bn_gguf_get_str(g, "general.architecture", &s), 1);
        assert_true(bn_str_eq(s, k->arch));
        assert_int_equal(get_u32(g, k->arch, ".block_count"), 4);
        assert_int_equal(get_u32(g, k->arch, ".embedding_length"), 512);
        assert_int_equal(get_u32(g, k->arch, ".feed_forward_length"), 1536);
        assert_int_equal(get_u32(g, k->arch, ".attention.head_count"), 8);
        assert_int_equal(get_u32(g, k->arch, ".attention.head_count_kv"), 2);
        assert_int_equal(get_u32(g, k->arch, ".vocab_size"), 4096);
        char key[128];
        snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", k->arch);
        assert_int_equal(bn_gguf_get_f32(g, key, &eps), 1);
        assert_true(eps == (strcmp(k->arch, "llama") == 0 ? 1e-6f : 1e-5f));
        assert_int_equal(bn_gguf_get_u32(g, "general.file_type", &ft), 1);
        assert_int_equal(ft, k->file_type);
        assert_int_equal(bn_gguf_get_u32(g, "general.quantization_version", &ft), 1), assert_int_equal(ft, 2);
        check_tokenizer_keys(g, k);
        check_tensor_types(g, k);
        bn_gguf_close(g);
    }
}

/* ------------------------------------------- encodings agree with HF -- */

/* Code of element (r, c) of an HF-packed (rows/4, cols) uint8 matrix: packed
 * row r % (rows/4) holds row r at bits 2·(r / (rows/4)) (FORMATS.md §3.5). */
static int hf_code(const bn_st_tensor *w, int64_t rows, int64_t cols, int64_t r, int64_t c) {
    int64_t q = rows / 4;
    return (w->data[(r % q) * cols + c] >> (2 * (r / q))) & 3;
}

static float bf16_at(const bn_st_tensor *t) {
    uint16_t h = (uint16_t)(t->data[0] | (t->data[1] << 8));
    return bn_bf16_to_fp32(h);
}

/* One ternary matrix in the three GGUF encodings against the HF checkpoint. */
static void compare_matrix(bn_gguf *g[3], const bn_safetensors *st, int layer, int m, int llama) {
    char name[96], hf[128];
    snprintf(name, sizeof name, "blk.%d.%s.weight", layer, MATS[m]);
    snprintf(hf, sizeof hf, "model.layers.%d.%s.weight", layer, HF_MATS[m]);
    const bn_st_tensor *w = bn_safetensors_find(st, hf);
    snprintf(hf, sizeof hf, "model.layers.%d.%s.weight_scale", layer, HF_MATS[m]);
    const bn_st_tensor *ws = bn_safetensors_find(st, hf);
    assert_non_null(w), assert_non_null(ws);
    float hf_scale = llama ? 1.0f / bf16_at(ws) : bf16_at(ws); /* bitlinear stores the inverse */
    const bn_gguf_tensor *t[3];
    for (int i = 0; i < 3; i++) assert_non_null(t[i] = bn_gguf_find_tensor(g[i], name));
    int64_t cols = t[0]->ne[0], rows = t[0]->ne[1];
    assert_int_equal(w->shape[0], rows / 4), assert_int_equal(w->shape[1], cols);
    float s_i2 = bn_i2s_scale(t[0]->data, t[0]->n_elems);
    assert_true(fabsf(s_i2 - hf_scale) <= 1e-6f * hf_scale);
    int permuted = llama && m < 2; /* llama.cpp's converter permutes q/k rows */
    assert_int_equal(t[0]->type, BN_GGML_I2_S);
    assert_int_equal(t[1]->type, BN_GGML_TQ1_0);
    assert_int_equal(t[2]->type, BN_GGML_TQ2_0);
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *row[3];
        for (int i = 0; i < 3; i++) row[i] = t[i]->data + r * bn_ggml_row_bytes(t[i]->type, cols);
        for (int64_t c = 0; c < cols; c++) {
            float d1 = 0, d2 = 0;
            int c0 = bn_ternary_code(BN_GGML_I2_S, row[0], c, NULL);
            int c1 = bn_ternary_code(BN_GGML_TQ1_0, row[1], c, &d1);
            int c2 = bn_ternary_code(BN_GGML_TQ2_0, row[2], c, &d2);
            if (c0 != c1 || c0 != c2 || (!permuted && c0 != hf_code(w, rows, cols, r, c)))
                fail_msg("%s (%lld, %lld): codes i2_s %d tq1_0 %d tq2_0 %d hf %d", name, (long long)r, (long long)c,
                         c0, c1, c2, hf_code(w, rows, cols, r, c));
            assert_true(fabsf(d1 - hf_scale) <= 1e-3f * hf_scale && d1 == d2); /* fp16 block scales */
        }
    }
}

static void compare_model(const char *model, int llama) {
    bn_gguf *g[3];
    for (int i = 0; i < 3; i++) g[i] = open_kit(&KIT_FILES[(llama ? 3 : 0) + i], 1);
    bn_safetensors *st = NULL;
    bitnet_error e = {0};
    char dir[512];
    snprintf(dir, sizeof dir, KIT "/%s", model);
    if (bn_safetensors_open_dir(&st, dir, 1, &e)) fail_msg("%s", e.message);
    for (int layer = 0; layer < 4; layer++)
        for (int m = 0; m < 7; m++) compare_matrix(g, st, layer, m, llama);
    /* Float tensors: F32 norms are the bf16 checkpoint values, exactly. */
    const bn_gguf_tensor *n = bn_gguf_find_tensor(g[0], "output_norm.weight");
    const bn_st_tensor *hn = bn_safetensors_find(st, "model.norm.weight");
    assert_non_null(n), assert_non_null(hn);
    float y[512];
    bn_ggml_dequantize_row(n->type, n->data, y, 512, 0);
    for (int i = 0; i < 512; i++)
        assert_true(y[i] == bn_bf16_to_fp32((uint16_t)(hn->data[2 * i] | (hn->data[2 * i + 1] << 8))));
    bn_safetensors_close(st);
    for (int i = 0; i < 3; i++) bn_gguf_close(g[i]);
}

static void test_kit_encodings_agree(void **state) {
    (void)state;
    compare_model("tiny-bitnet", 0);
    compare_model("tiny-llama-ternary", 1);
}

/* -------------------------------------------------------- robustness -- */

static bn_mapped_file read_kit(const kit_file *k) {
    char path[1024];
    kit_path(path, sizeof path, k);
    bn_mapped_file f;
    bitnet_error e = {0};
    if (bn_mapped_file_open(&f, path, 0, &e)) fail_msg("%s", e.message); /* malloc'd, exact size */
    return f;
}

static void expect_prefix_fails(const uint8_t *p, size_t n) {
    uint8_t *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, p, n);
    bn_gguf *g = NULL;
    bitnet_error e = {0};
    bitnet_status rc = bn_gguf_open_memory(&g, copy, n, &e);
    if (rc == BITNET_OK) fail_msg("a %zu-byte prefix opened", n);
    assert_null(g);
    assert_true(e.message[0] != '\0');
    free(copy);
}

static void test_kit_truncated(void **state) {
    (void)state;
    for (int f = 0; f < N_KIT; f++) {
        bn_mapped_file file = read_kit(&KIT_FILES[f]);
        bn_gguf *g = NULL;
        bitnet_error e = {0};
        assert_int_equal(bn_gguf_open_memory(&g, file.data, file.size, &e), BITNET_OK);
        uint64_t ds = bn_gguf_data_offset(g);
        bn_gguf_close(g);
        /* The last tensor ends at the end of the file, so every prefix must fail. */
        for (uint64_t i = 0; i < 200; i++) expect_prefix_fails(file.data, (size_t)(ds * i / 200 + i % 7));
        for (uint64_t i = 0; i < 20; i++) expect_prefix_fails(file.data, (size_t)(ds + (file.size - ds) * i / 20));
        expect_prefix_fails(file.data, file.size - 1);
        if (f == 0)
            for (size_t n = 0; n < 4096; n++) expect_prefix_fails(file.data, n);
        bn_mapped_file_close(&file);
    }
}

/* Touch everything an opened (possibly mutated) file hands out. */
static void walk(const bn_gguf *g) {
    volatile uint8_t sink = 0;
    for (int64_t i = 0; i < bn_gguf_n_kv(g); i++) {
        const bn_gguf_kv *kv = bn_gguf_kv_at(g, i);
        if (kv->type != BN_GGUF_ARRAY || kv->arr_type != BN_GGUF_STRING) continue;
        for (uint64_t k = 0; k < kv->arr_n; k += 97) {
            bn_str s = bn_gguf_arr_str(g, kv, k);
            if (s.len) sink ^= (uint8_t)s.ptr[s.len - 1];
        }
    }
    for (int64_t i = 0; i < bn_gguf_n_tensors(g); i++) {
        const bn_gguf_tensor *t = bn_gguf_tensor_at(g, i);
        sink ^= t->data[0] ^ t->data[t->n_bytes - 1];
        if (bn_ggml_block_elems(t->type)) {
            int64_t last_row = t->n_elems / t->ne[0] - 1;
            const uint8_t *row = t->data + last_row * bn_ggml_row_bytes(t->type, t->ne[0]);
            sink ^= (uint8_t)bn_ternary_code(t->type, row, t->ne[0] - 1, NULL);
        }
    }
    (void)sink;
}

/* Flips bytes at positions [from, to) in steps of `step`; counts outcomes. */
static void flip_range(uint8_t *buf, size_t size, size_t from, size_t to, size_t step, int *ok, int *bad) {
    static const int how[4] = {0x01, 0x80, 0x100, 0x200}; /* xor, xor, set 0xFF, set 0 */
    for (size_t pos = from; pos < to && pos < size; pos += step) {
        uint8_t save = buf[pos];
        for (int h = 0; h < 4; h++) {
            buf[pos] = how[h] == 0x100 ? 0xFF : how[h] == 0x200 ? 0 : (uint8_t)(save ^ how[h]);
            if (buf[pos] == save) continue;
            bn_gguf *g = NULL;
            bitnet_error e = {0};
            if (bn_gguf_open_memory(&g, buf, size, &e) == BITNET_OK) {
                walk(g);
                bn_gguf_close(g);
                (*ok)++;
            } else {
                if (e.message[0] == '\0') fail_msg("flip at %zu: error %d without a message", pos, e.code);
                (*bad)++;
            }
        }
        buf[pos] = save;
    }
}

static void test_kit_header_flips(void **state) {
    (void)state;
    for (int f = 0; f < N_KIT; f += 4) { /* tiny-bitnet I2_S and tiny-llama-ternary TQ1_0 */
        bn_mapped_file file = read_kit(&KIT_FILES[f]);
        uint8_t *buf = (uint8_t *)file.data;
        bn_gguf *g = NULL;
        bitnet_error e = {0};
        assert_int_equal(bn_gguf_open_memory(&g, buf, file.size, &e), BITNET_OK);
        const bn_gguf_kv *last = bn_gguf_kv_at(g, bn_gguf_n_kv(g) - 1);
        size_t infos = (size_t)(last->data - buf + bn_gguf_kv_value_bytes(g, last));
        size_t ds = (size_t)bn_gguf_data_offset(g);
        bn_gguf_close(g);
        int ok = 0, bad = 0;
        flip_range(buf, file.size, 0, 512, 1, &ok, &bad);           /* header and first keys */
        flip_range(buf, file.size, 512, infos, 1021, &ok, &bad);   /* a sample of the vocabulary etc. */
        flip_range(buf, file.size, infos, ds, 3, &ok, &bad);       /* a third of the tensor-info bytes */
        assert_true(ok > 100 && bad > 100);
        bn_mapped_file_close(&file);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kit_facts),
        cmocka_unit_test(test_kit_encodings_agree),
        cmocka_unit_test(test_kit_truncated),
        cmocka_unit_test(test_kit_header_flips),
    };
    if (getenv("BN_TEST_FILTER")) cmocka_set_test_filter(getenv("BN_TEST_FILTER")); /* run one test by name */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
