/* Tokenizer loaders for the rest of the library (the model loaders) and a
 * summary for `bitnet info`. Encoding, decoding and the accessors are the
 * public bitnet_tokenizer_* / bitnet_tokenize / bitnet_detok_* functions of
 * include/bitnet.h. Facts: ../shared/docs/FORMATS.md §1.6 (GGUF keys), §4.
 *
 * Ownership: every loader returns a tokenizer the caller frees with
 * bitnet_tokenizer_free. On failure *out is NULL and nothing leaks. */
#ifndef BN_TOKENIZER_TOKENIZER_H
#define BN_TOKENIZER_TOKENIZER_H

#include "bitnet.h"
#include "format/gguf.h"
#include "util/error.h"

/* From the tokenizer.ggml.* keys of an open GGUF file (copied: the tokenizer
 * does not refer to the file afterwards). */
bitnet_status bn_tokenizer_from_gguf(bitnet_tokenizer **out, const bn_gguf *g, bitnet_error *err);

/* From a Hugging Face folder: tokenizer.json, plus tokenizer_config.json
 * (bos/eos/add_bos) and config.json / generation_config.json (eos ids) when
 * present. */
bitnet_status bn_tokenizer_from_hf_dir(bitnet_tokenizer **out, const char *dir, bitnet_error *err);

/* From one file, by content: a GGUF file, a tokenizer.json (its folder's
 * tokenizer_config.json is read too), a SentencePiece tokenizer.model
 * (protobuf) or a tiktoken file (base64 + rank lines, Llama 3 specials). */
bitnet_status bn_tokenizer_from_file(bitnet_tokenizer **out, const char *path, bitnet_error *err);

typedef struct bn_tokenizer_summary {
    const char *model;  /* "gpt2" (byte-level BPE) or "llama" (SentencePiece-style BPE) */
    const char *pre;    /* pre-tokenizer: "llama3", "gpt2", "default", "tokenizer.json", "none" */
    const char *source; /* "gguf", "tokenizer.json", "tokenizer.model", "tiktoken" */
    int n_vocab, n_merges, n_special;
    int bos, eos, add_bos;
    int add_space_prefix, byte_fallback, ignore_merges;
} bn_tokenizer_summary;

/* Strings point into the tokenizer or are static. */
void bn_tokenizer_summarize(const bitnet_tokenizer *tok, bn_tokenizer_summary *out);

#endif
