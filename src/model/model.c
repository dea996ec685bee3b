#include "model/model.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "format/ggml_quantize.h"
#include "format/ggml_types.h"
#include "format/gguf.h"
#include "format/safetensors.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

bitnet_status bn_model_convert_head(bitnet_model *m, const char *head_type, bitnet_error *err) {
    if (!head_type || !strcmp(head_type, "auto")) return BITNET_OK;
    if (strcmp(head_type, "q8_0"))
        return bn_fail(err, BITNET_E_INVALID_ARG, "unknown output head type '%s' (use auto or q8_0)", head_type);
    bn_dense *o = &m->output;
    if (o->type == BN_GGML_Q8_0) return BITNET_OK;
    uint64_t rb = bn_ggml_row_bytes(BN_GGML_Q8_0, o->cols);
    if (!rb) return bn_fail(err, BITNET_E_UNSUPPORTED, "a q8_0 head needs rows of a multiple of 32 elements");
    /* A tied head gets its own copy: the embedding lookup keeps the stored rows. */
    uint8_t *q = bn_model_alloc(m, (size_t)(rb * (uint64_t)o->rows));
    float *row = malloc((size_t)o->cols * sizeof *row);
    if (!q || !row) {
        free(row);
        return bn_fail(err, BITNET_E_NOMEM, "out of memory for the q8_0 output head");
    }
    for (int64_t r = 0; r < o->rows; r++) {
        bn_ggml_dequantize_row(o->type, o->data + r * o->row_bytes, row, o->cols, 0.0f);
        bn_quantize_row(BN_GGML_Q8_0, row, q + r * rb, o->cols);
    }
    free(row);
    *o = (bn_dense){.type = BN_GGML_Q8_0, .rows = o->rows, .cols = o->cols, .data = q, .row_bytes = rb};
    return BITNET_OK;
}

bitnet_model *bn_model_new(void) {
    return calloc(1, sizeof(bitnet_model));
}

void *bn_model_alloc(bitnet_model *m, size_t size) {
    if (size > SIZE_MAX - sizeof(bn_arena_block) - 64) return NULL;
    bn_arena_block *b = aligned_alloc(64, (sizeof(bn_arena_block) + size + 63) & ~(size_t)63);
    if (!b) return NULL;
    memset(b->data, 0, size);
    b->size = size;
    b->next = m->arena;
    m->arena = b;
    return b->data;
}

char *bn_model_strdup(bitnet_model *m, const char *s, size_t len) {
    char *d = bn_model_alloc(m, len + 1);
    if (d) { memcpy(d, s, len); d[len] = '\0'; }
    return d;
}

bitnet_status bn_model_add_tensor_entry(bitnet_model *m, const char *name, size_t name_len, const char *type,
                                        int n_dims, const int64_t *ne, uint64_t n_bytes, bitnet_error *err) {
    if (m->n_tensors == m->tensors_cap) {
        int cap = m->tensors_cap ? m->tensors_cap * 2 : 64;
        bn_tensor_entry *t = realloc(m->tensors, (size_t)cap * sizeof *t);
        if (!t) return bn_fail(err, BITNET_E_NOMEM, "out of memory");
        m->tensors = t;
        m->tensors_cap = cap;
    }
    bn_tensor_entry *e = &m->tensors[m->n_tensors];
    memset(e, 0, sizeof *e);
    e->name = bn_model_strdup(m, name, name_len);
    if (!e->name) return bn_fail(err, BITNET_E_NOMEM, "out of memory");
    e->type = type;
    e->n_dims = n_dims;
    int64_t elems = 1;
    for (int i = 0; i < 4; i++) {
        e->ne[i] = i < n_dims ? ne[i] : 1;
        elems *= e->ne[i];
    }
    e->n_bytes = n_bytes;
    m->n_params += elems;
    m->n_tensors++;
    return BITNET_OK;
}

int bn_arch_from_name(const char *name) {
    if (!strcmp(name, "bitnet-b1.58") || !strcmp(name, "bitnet-25")) return BN_ARCH_BITNET_B158;
    if (!strcmp(name, "bitnet")) return BN_ARCH_BITNET;
    if (!strcmp(name, "llama")) return BN_ARCH_LLAMA;
    return -1;
}

bitnet_status bn_hparams_validate(const bn_hparams *hp, bitnet_error *err) {
    /* Generous upper bounds: far above any real model, low enough that the
     * products below cannot overflow and a hostile file cannot make us
     * allocate absurd KV caches. */
    struct { const char *what; int v, max; } f[] = {
        {"vocabulary size", hp->n_vocab, 1 << 22}, {"embedding length", hp->n_embd, 1 << 16},
        {"block count", hp->n_layer, 1024},        {"head count", hp->n_head, 1024},
        {"KV head count", hp->n_head_kv, 1024},    {"head dimension", hp->head_dim, 4096},
        {"feed-forward length", hp->n_ff, 1 << 18}, {"context length", hp->n_ctx_train, 1 << 24},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].v <= 0 || f[i].v > f[i].max)
            return bn_fail(err, BITNET_E_FORMAT, "%s %d is out of range (1..%d)", f[i].what, f[i].v, f[i].max);
    if (hp->n_head % hp->n_head_kv)
        return bn_fail(err, BITNET_E_FORMAT, "head count %d is not a multiple of the KV head count %d", hp->n_head,
                       hp->n_head_kv);
    if (hp->head_dim % 2) return bn_fail(err, BITNET_E_FORMAT, "head dimension %d is odd", hp->head_dim);
    if (!(hp->rms_eps > 0.0f && hp->rms_eps < 1.0f))
        return bn_fail(err, BITNET_E_FORMAT, "RMS norm epsilon %g is out of range", (double)hp->rms_eps);
    if (!(hp->rope_theta > 0.0f && hp->rope_theta < 1e12f))
        return bn_fail(err, BITNET_E_FORMAT, "RoPE base %g is out of range", (double)hp->rope_theta);
    return BITNET_OK;
}

void bitnet_model_params_default(bitnet_model_params *p) {
    memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->use_mmap = 1;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

bitnet_status bitnet_model_load(const char *path, const bitnet_model_params *params, bitnet_model **out,
                                bitnet_error *err) {
    bn_err_clear(err);
    if (!path || !out) return bn_fail(err, BITNET_E_INVALID_ARG, "bitnet_model_load: path and out are required");
    *out = NULL;
    bitnet_model_params p;
    bitnet_model_params_default(&p);
    if (params) memcpy(&p, params, params->struct_size < sizeof p ? params->struct_size : sizeof p);
    struct stat st;
    if (stat(path, &st) != 0) return bn_fail(err, BITNET_E_IO, "%s: no such file or folder", path);
    bitnet_model *m = bn_model_new();
    if (!m) return bn_fail(err, BITNET_E_NOMEM, "out of memory");
    double t0 = now_ms();
    bitnet_status rc = S_ISDIR(st.st_mode) ? bn_load_hf(m, path, &p, err) : bn_load_gguf(m, path, &p, err);
    if (rc == BITNET_OK) rc = bn_model_convert_head(m, p.head_type, err);
    /* Token ids from the tokenizer index the embedding: it must cover them all. */
    if (rc == BITNET_OK && m->tokenizer && bitnet_tokenizer_n_vocab(m->tokenizer) > m->hp.n_vocab)
        rc = bn_fail(err, BITNET_E_FORMAT, "the tokenizer has %d tokens but the model only %d embeddings",
                     bitnet_tokenizer_n_vocab(m->tokenizer), m->hp.n_vocab);
    if (rc != BITNET_OK) {
        /* Readers name the file themselves; add it only where they did not. */
        if (err && strncmp(err->message, path, strlen(path))) bn_err_prefix(err, "%s", path);
        bitnet_model_free(m);
        return rc;
    }
    m->load_ms = now_ms() - t0;
    *out = m;
    return BITNET_OK;
}

void bitnet_model_free(bitnet_model *m) {
    if (!m) return;
    if (m->tokenizer) bitnet_tokenizer_free(m->tokenizer);
    if (m->gguf) bn_gguf_close(m->gguf);
    if (m->st) bn_safetensors_close(m->st);
    free(m->layers);
    free(m->tensors);
    for (bn_arena_block *b = m->arena, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(m);
}

void bitnet_model_get_info(const bitnet_model *m, bitnet_model_info *o) {
    memset(o, 0, sizeof *o);
    const bn_hparams *hp = &m->hp;
    o->arch = m->arch_name;
    o->name = m->name ? m->name : "";
    o->source_format = m->source_format;
    o->n_vocab = hp->n_vocab;
    o->n_embd = hp->n_embd;
    o->n_layer = hp->n_layer;
    o->n_head = hp->n_head;
    o->n_head_kv = hp->n_head_kv;
    o->head_dim = hp->head_dim;
    o->n_ff = hp->n_ff;
    o->n_ctx_train = hp->n_ctx_train;
    o->rms_eps = hp->rms_eps;
    o->rope_theta = hp->rope_theta;
    o->ffn_act = hp->ffn_act == BN_GLU_RELU2 ? BITNET_FFN_RELU2 : BITNET_FFN_SILU;
    o->has_sub_norms = hp->has_sub_norms;
    o->rope_neox = hp->rope_neox;
    o->tied_output = m->tied_output;
    o->n_params = m->n_params;
    o->file_bytes = m->file_bytes;
    o->bos_id = m->tokenizer ? bitnet_tokenizer_bos(m->tokenizer) : -1;
    o->eos_id = m->tokenizer ? bitnet_tokenizer_eos(m->tokenizer) : -1;
    o->eot_id = m->tokenizer ? bitnet_tokenizer_find(m->tokenizer, "<|eot_id|>") : -1;
}

int bitnet_model_n_tensors(const bitnet_model *m) { return m->n_tensors; }

int bitnet_model_tensor(const bitnet_model *m, int i, bitnet_tensor_info *o) {
    if (i < 0 || i >= m->n_tensors) return 0;
    const bn_tensor_entry *e = &m->tensors[i];
    o->name = e->name;
    o->type = e->type;
    o->n_dims = e->n_dims;
    memcpy(o->ne, e->ne, sizeof o->ne);
    o->n_bytes = e->n_bytes;
    return 1;
}

const bitnet_tokenizer *bitnet_model_tokenizer(const bitnet_model *m) { return m->tokenizer; }

bitnet_status bn_model_prepare_backend(bitnet_model *m, bn_backend *be, bitnet_error *err) {
    return be->ops->prepare_model ? be->ops->prepare_model(be, m, err) : BITNET_OK;
}
