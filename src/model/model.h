/* The loaded model: hyperparameters, weight descriptors and tokenizer.
 * Immutable after load, except the `dev` fields of the weight descriptors,
 * which a device backend sets when it uploads the weights (once per model,
 * shared by its contexts). Several contexts may share a model.
 *
 * Loading: a format-specific loader (load_gguf.c, load_hf.c) maps the file(s),
 * fills the hyperparameters and the tensor table, then describes every weight
 * in the engine's own representation (kernels/tensors.h): in place when the
 * file's layout already is that representation, repacked into the arena
 * otherwise (weights.c). */
#ifndef BN_MODEL_MODEL_H
#define BN_MODEL_MODEL_H

#include <stdint.h>

#include "bitnet.h"
#include "kernels/backend.h"
#include "kernels/tensors.h"

struct bn_gguf;
struct bn_safetensors;

typedef enum bn_arch {
    BN_ARCH_BITNET_B158, /* "bitnet-b1.58" / "bitnet-25": 2B4T — ReLU², sub-norms, NeoX RoPE */
    BN_ARCH_BITNET,      /* "bitnet": 1bitLLM — SiLU, sub-norms, NeoX RoPE */
    BN_ARCH_LLAMA        /* "llama" with ternary linears: Falcon3-1.58bit, Llama3-8B-1.58 */
} bn_arch;

typedef struct bn_hparams {
    int n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx_train;
    float rms_eps, rope_theta;
    int rope_neox;       /* 1: pairs (i, i + head_dim/2); 0: pairs (2i, 2i+1) */
    int has_sub_norms;   /* attn_sub_norm before o_proj, ffn_sub_norm before down_proj */
    bn_glu_act ffn_act;
} bn_hparams;

typedef struct bn_layer {
    bn_vec attn_norm, attn_sub_norm, ffn_norm, ffn_sub_norm; /* sub-norms: data NULL when absent */
    bn_ternary wq, wk, wv, wo, w_gate, w_up, w_down;
} bn_layer;

/* One row of `bitnet info`'s tensor table: what the file holds. */
typedef struct bn_tensor_entry {
    char *name;
    const char *type;    /* static string */
    int n_dims;
    int64_t ne[4];
    uint64_t n_bytes;
} bn_tensor_entry;

/* Memory owned by the model: every block is freed with the model. */
typedef struct bn_arena_block {
    struct bn_arena_block *next;
    size_t size;
    _Alignas(64) unsigned char data[];
} bn_arena_block;

struct bitnet_model {
    bn_arch arch;
    char *arch_name;
    char *name;
    const char *source_format; /* "gguf" | "huggingface" */
    bn_hparams hp;

    bn_dense tok_embd;
    bn_dense output;           /* == tok_embd (same data) when tied */
    int tied_output;
    bn_vec output_norm;
    bn_layer *layers;

    bitnet_tokenizer *tokenizer; /* may be NULL when the model has none */
    char *chat_template;         /* from the file; may be NULL */

    bn_tensor_entry *tensors;
    int n_tensors, tensors_cap;
    int64_t n_params;
    uint64_t file_bytes;

    struct bn_gguf *gguf;              /* kept open: zero-copy weights point into it */
    struct bn_safetensors *st;
    bn_arena_block *arena;
    double load_ms, repack_ms;

};

/* Allocates an empty, zeroed model. */
bitnet_model *bn_model_new(void);

/* size bytes of 64-byte-aligned, zeroed memory owned by the model; NULL on OOM. */
void *bn_model_alloc(bitnet_model *m, size_t size);
char *bn_model_strdup(bitnet_model *m, const char *s, size_t len);

/* Appends a row to the tensor table. */
bitnet_status bn_model_add_tensor_entry(bitnet_model *m, const char *name, size_t name_len, const char *type,
                                        int n_dims, const int64_t *ne, uint64_t n_bytes, bitnet_error *err);

/* Architecture from its name ("bitnet-b1.58", "bitnet-25", "bitnet", "llama").
 * Returns -1 for an unknown name. */
int bn_arch_from_name(const char *name);

/* Checks the hyperparameters for consistency (positive, divisible, bounded).
 * Loaders call it before describing tensors. */
bitnet_status bn_hparams_validate(const bn_hparams *hp, bitnet_error *err);

/* Replaces the output head by an int8 (Q8_0) copy when head_type is "q8_0";
 * NULL/"auto" keeps it as stored. */
bitnet_status bn_model_convert_head(bitnet_model *m, const char *head_type, bitnet_error *err);

/* Format loaders. `path` is a .gguf file / a Hugging Face folder. */
bitnet_status bn_load_gguf(bitnet_model *m, const char *path, const bitnet_model_params *p, bitnet_error *err);
bitnet_status bn_load_hf(bitnet_model *m, const char *dir, const bitnet_model_params *p, bitnet_error *err);

/* Lets a backend make (or share) its copies of the weights. Device backends
 * reference-count their copies per model and clear the `dev` fields when the
 * last backend using them is destroyed (see kernels/cuda). */
bitnet_status bn_model_prepare_backend(bitnet_model *m, bn_backend *be, bitnet_error *err);

#endif
