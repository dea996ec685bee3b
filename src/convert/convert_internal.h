/* Internals of `bitnet convert` and `bitnet gen-model`: writing a model as a
 * GGUF file laid out like the official BitNet files (FORMATS.md §3.1):
 * metadata keys in the official order, tensors in the official order and
 * types (norms F32, token_embd F16 by default, ternary linears I2_S/TQ*).
 *
 * The pieces: a tensor plan (names, shapes, types, in file order) shared by
 * both commands; a sink that streams tensor bytes to the GGUF writer and
 * reports progress; row encoders for ternary and float tensors; vocabulary
 * readers (tokenizer.json, a source GGUF, a synthetic byte-level BPE). */
#ifndef BN_CONVERT_INTERNAL_H
#define BN_CONVERT_INTERNAL_H

#include <stdint.h>

#include "bitnet.h"
#include "format/gguf.h"
#include "format/gguf_writer.h"
#include "model/model.h"

/* ------------------------------------------------------------------ plan -- */

typedef enum cv_role {
    CV_TOK_EMBD, CV_OUTPUT_NORM, CV_OUTPUT,
    CV_ATTN_NORM, CV_FFN_NORM, CV_ATTN_SUB_NORM, CV_FFN_SUB_NORM,
    CV_Q, CV_K, CV_V, CV_O, CV_GATE, CV_UP, CV_DOWN
} cv_role;

typedef struct cv_tensor {
    char name[64];
    cv_role role;
    int layer;        /* -1 for the model-wide tensors */
    int n_dims;       /* 1 (norms) or 2 */
    int64_t ne[2];    /* ne[0] = row length (input features), ne[1] = rows */
    uint32_t type;    /* ggml type written */
} cv_tensor;

/* 1 for the ternary linear roles (q, k, v, o, gate, up, down). */
int cv_role_is_ternary(cv_role r);

/* Number of tensors a model with these hyperparameters has. */
int cv_plan_count(const bn_hparams *hp, int tied);

/* Fills `out` (cv_plan_count entries) in the official order: token_embd,
 * output_norm, [output], then per layer attn_norm, ffn_norm, [attn_sub_norm,
 * ffn_sub_norm], q, k, v, o, gate, up, down. */
void cv_plan(const bn_hparams *hp, int tied, uint32_t weight_type, uint32_t embd_type, cv_tensor *out);

/* Checks that every tensor of the plan can be stored in its type (row
 * lengths vs block sizes) and that the types are valid for their role. */
bitnet_status cv_plan_check(const cv_tensor *plan, int n, bitnet_error *err);

/* --------------------------------------------------------------- header -- */

/* general.file_type for a ternary weight type (I2_S 40, TQ1_0 36, TQ2_0 37,
 * F16 1, F32 0; BitNet fork's llama_ftype). */
uint32_t cv_file_type(uint32_t weight_type);

/* general.architecture … general.file_type, in the official order. add_bos
 * (tokenizer.ggml.add_bos_token, which the official file keeps among them) is
 * skipped when < 0. */
bitnet_status cv_write_arch_kvs(bn_gguf_writer *w, const char *arch, const char *name, const bn_hparams *hp,
                                uint32_t weight_type, int add_bos);

/* ---------------------------------------------------------------- sink -- */

/* Streams tensor bytes to the writer and reports progress. */
typedef struct cv_sink {
    bn_gguf_writer *w;
    bitnet_progress_fn progress;
    void *user;
    int index, count;
    const char *tensor;
    uint64_t next_report;
    int cancelled;
} cv_sink;

/* Announces tensor `index` (calls the progress callback). */
bitnet_status cv_sink_begin(cv_sink *s, int index, const char *tensor);
bitnet_status cv_sink_write(cv_sink *s, const void *data, size_t n);
/* The status to return after a failed sink call (writer error or cancel), with err filled. */
bitnet_status cv_sink_error(const cv_sink *s, bitnet_error *err);

/* Writes every declared tensor via `write_tensor` and finishes the file. */
typedef bitnet_status (*cv_tensor_fn)(void *ctx, const cv_tensor *t, cv_sink *s, bitnet_error *err);
bitnet_status cv_write_all(bn_gguf_writer *w, const cv_tensor *plan, int n, cv_tensor_fn fn, void *ctx,
                           bitnet_progress_fn progress, void *user, bitnet_error *err);

/* ------------------------------------------------------------ encoders -- */

/* Row r of a ternary matrix: `codes` (cols entries, c = w + 1) and its real
 * scale. Rows whose scale is 0 are written as zeros. */
typedef void (*cv_ternary_row_fn)(void *ctx, int64_t r, uint8_t *codes, float *scale);

/* A [rows x cols] ternary tensor as I2_S (tensor_scale goes to the trailer;
 * every non-zero row must have that scale), TQ1_0/TQ2_0 (per-row scale) or
 * F16/F32/BF16 (the values code·scale). */
bitnet_status cv_write_ternary(cv_sink *s, uint32_t type, int64_t rows, int64_t cols, float tensor_scale,
                               cv_ternary_row_fn fn, void *ctx, bitnet_error *err);

/* Row r of a float matrix as f32. */
typedef void (*cv_float_row_fn)(void *ctx, int64_t r, float *dst);

/* A [rows x cols] float tensor in any bn_quantize_row type. */
bitnet_status cv_write_floats(cv_sink *s, uint32_t type, int64_t rows, int64_t cols, cv_float_row_fn fn, void *ctx,
                              bitnet_error *err);

/* ----------------------------------------------------------- vocabulary -- */

typedef struct cv_vocab {
    char model[16];         /* tokenizer.ggml.model: "gpt2" or "llama" */
    char pre[32];           /* tokenizer.ggml.pre; "" = not written */
    int n_tokens;
    char **tokens;          /* owned */
    float *scores;
    int32_t *types;         /* 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte */
    int n_merges;
    char **merges;          /* "left right", owned */
    int bos, eos, eot, pad, unk; /* -1: none */
    int add_bos, add_eos;   /* -1: not written */
    char *chat_template;    /* owned; NULL: none */
} cv_vocab;

/* From a Hugging Face tokenizer.json (BPE: byte-level → "gpt2", byte-fallback
 * SentencePiece-style → "llama"), plus config.json / tokenizer_config.json /
 * chat_template.jinja in `dir` when present (dir may be NULL). The vocabulary
 * is padded with unused "[PADn]" tokens to n_vocab entries when n_vocab > 0;
 * more tokens than n_vocab is an error. */
bitnet_status cv_vocab_from_hf(cv_vocab *v, const char *tokenizer_json, const char *dir, int n_vocab,
                               bitnet_error *err);

/* A valid byte-level BPE vocabulary of exactly n_vocab tokens: the 256 byte
 * tokens, merged fill tokens with their merges, and Llama-3-named special
 * tokens at the end (n_vocab >= 320). */
bitnet_status cv_vocab_synthetic(cv_vocab *v, int n_vocab, bitnet_error *err);

/* The tokenizer.* keys (all but add_bos, which goes with the arch keys). */
bitnet_status cv_vocab_write(const cv_vocab *v, bn_gguf_writer *w);
void cv_vocab_free(cv_vocab *v);

/* Copies the tokenizer.* keys of a GGUF file unchanged, adding
 * tokenizer.ggml.pre = "llama-bpe" to a Llama-3-style byte-level vocabulary
 * that lacks it (as the official 2B4T file does), and the general.* keys
 * other than those cv_write_arch_kvs writes. */
bitnet_status cv_copy_gguf_kvs(const bn_gguf *g, bn_gguf_writer *w, int general, int tokenizer, bitnet_error *err);

/* ----------------------------------------------------------------- misc -- */

bitnet_status cv_check_output_path(const char *dst, int overwrite, bitnet_error *err);

#endif
