/* Internal definition of struct bitnet_tokenizer, shared by the files of
 * src/tokenizer/ only (everyone else goes through tokenizer.h / bitnet.h).
 *
 * One struct serves two families (facts: ../shared/docs/FORMATS.md §4):
 *  - BN_TOK_BYTE_BPE: byte-level BPE (GGUF model "gpt2", tokenizer.json BPE
 *    without byte_fallback, tiktoken files). Text is split by special tokens,
 *    then by a pre-tokenizer regex; each piece is merged from single bytes by
 *    the rank of adjacent pairs.
 *  - BN_TOK_SPM: SentencePiece-style BPE (GGUF model "llama", tokenizer.model,
 *    tokenizer.json BPE with byte_fallback). Spaces become U+2581, a space
 *    prefix may be added, the whole text is merged from UTF-8 characters, and
 *    what never becomes a token falls back to <0xNN> byte tokens. Files with
 *    scores (GGUF, tokenizer.model) merge by score as sentencepiece does;
 *    tokenizer.json has no scores and merges by its listed pairs, as HF does
 *    (both reproduce sentencepiece's ids on the Llama 2 vectors).
 *
 * Invariants once a loader returns a tokenizer:
 *  1. tokens[0..n_vocab) all exist; ids without an entry in the file are
 *     BN_TT_UNUSED with empty text.
 *  2. Every token's `text` is its spelling in the file (GPT-2-mapped for
 *     byte-level vocabularies, with U+2581 for SentencePiece) and `bytes` the
 *     raw bytes it stands for when decoded.
 *  3. The tokenizer is immutable: encode/decode keep all state on the stack or
 *     in per-call allocations, so one tokenizer serves many threads. */
#ifndef BN_TOKENIZER_TOK_INTERNAL_H
#define BN_TOKENIZER_TOK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

/* Token types, numbered as GGUF's tokenizer.ggml.token_type. */
enum {
    BN_TT_NORMAL = 1,
    BN_TT_UNKNOWN = 2,
    BN_TT_CONTROL = 3,      /* special: BOS/EOS/<|eot_id|>...; matched in text only when asked */
    BN_TT_USER_DEFINED = 4, /* always matched in text, never merged */
    BN_TT_UNUSED = 5,
    BN_TT_BYTE = 6          /* <0xNN> byte-fallback token */
};

typedef enum bn_tok_kind { BN_TOK_BYTE_BPE = 1, BN_TOK_SPM = 2 } bn_tok_kind;

/* How adjacent symbols are scored for merging. */
typedef enum bn_merge_mode {
    BN_MERGE_PAIR_RANK = 1,  /* (left id, right id) must be a listed merge; lowest rank first (HF, GGUF gpt2) */
    BN_MERGE_CONCAT_SCORE = 2 /* concatenation must be a vocabulary piece; highest score first (sentencepiece) */
} bn_merge_mode;

typedef struct bn_tok_token {
    uint32_t text_off, text_len;   /* into bitnet_tokenizer.arena */
    uint32_t bytes_off, bytes_len; /* into bitnet_tokenizer.arena */
    float score;                   /* SentencePiece log-probability; 0 when the file has none */
    uint8_t type;                  /* BN_TT_* */
} bn_tok_token;

/* Open-addressing string set over token ids, keyed by a token's text or
 * bytes. Hash and id share a slot so that a probe touches one cache line. */
typedef struct bn_tok_strslot {
    uint32_t hash;
    int32_t id; /* -1 = empty */
} bn_tok_strslot;

typedef struct bn_tok_strmap {
    bn_tok_strslot *slot;
    uint32_t mask;  /* capacity - 1 (power of two) */
    int use_bytes;  /* 1: key is the token's bytes; 0: its text */
} bn_tok_strmap;

/* Open-addressing map (left id, right id) -> (rank, merged id). */
typedef struct bn_tok_pairslot {
    uint64_t key;   /* left << 32 | right; UINT64_MAX = empty */
    int32_t rank;
    int32_t result;
} bn_tok_pairslot;

typedef struct bn_tok_pairmap {
    bn_tok_pairslot *slot;
    uint32_t mask;
    uint32_t count;
} bn_tok_pairmap;

#define BN_TOK_MAX_REGEX 8

/* A pre-tokenizer: regexes applied in turn, each splitting every piece into
 * its matches and the stretches between them (HF Split "Isolated"). */
typedef struct bn_tok_pretok {
    int n;
    void *code[BN_TOK_MAX_REGEX]; /* pcre2_code_8 *, JIT-compiled when possible */
    char name[32];                /* "llama3", "gpt2", "default", "tokenizer.json", "none" */
    int add_prefix_space;         /* HF ByteLevel add_prefix_space */
} bn_tok_pretok;

struct bitnet_tokenizer {
    bn_tok_kind kind;
    bn_merge_mode merge_mode;
    int n_vocab;
    bn_tok_token *tokens; /* [n_vocab] */
    char *arena;          /* token texts and bytes; owned */
    size_t arena_len, arena_cap;

    bn_tok_strmap by_text;  /* every token with non-empty text */
    bn_tok_strmap by_bytes; /* BYTE_BPE: NORMAL tokens by their bytes (whole-piece lookups) */
    bn_tok_pairmap merges;
    int n_merges;           /* merges accepted into the map */

    int32_t byte_token[256];    /* BYTE_BPE: token of each single byte; SPM: the <0xNN> token; -1 if none */
    int32_t *special;           /* ids matchable in text, sorted by first byte then length (longest first) */
    int n_special;
    int32_t special_first[257]; /* special[special_first[b] .. special_first[b+1]) start with byte b */

    bn_tok_pretok pre;
    int ignore_merges;      /* a pre-token that is itself a token is emitted whole (Llama 3) */
    int byte_fallback;      /* SPM: unknown pieces become <0xNN> tokens */
    int add_space_prefix;   /* SPM: prepend U+2581 to non-empty text */
    int escape_spaces;      /* SPM: ' ' -> U+2581 */
    int remove_extra_ws;    /* SPM (tokenizer.model): collapse runs of spaces, trim the ends */
    int strip_decoded_space;/* decoding from the start drops the space the prefix added */
    int spm_word_split;     /* SPM: no mergeable token has U+2581 right after another character, so no
                               merge crosses the start of a word and words can be merged one by one */

    int32_t bos, eos, unk, eot; /* -1 when none */
    int add_bos;
    int32_t eog[16];        /* end-of-generation ids */
    int n_eog;

    char source[32];        /* "gguf", "tokenizer.json", "tokenizer.model", "tiktoken" */
};

/* ---------------------------------------------------------------- utf-8 -- */

/* Length of the UTF-8 sequence that starts with byte c (1..4); 1 for a byte
 * that cannot start one (so that invalid input advances byte by byte). */
int bn_utf8_len(uint8_t c);
/* Length of the valid UTF-8 character at s (1..4), or 0 when the bytes at s
 * are not a complete, valid encoding (n = bytes available). */
int bn_utf8_valid_len(const uint8_t *s, size_t n);
/* Encodes code point cp; returns the byte count (1..4). */
int bn_utf8_encode(uint32_t cp, char *out);

/* GPT-2 byte <-> unicode map (FORMATS.md §4.1). */
uint32_t bn_bytemap_cp(uint8_t byte);
/* The byte a code point stands for, or -1 when cp is not in the map. */
int bn_bytemap_byte(uint32_t cp);

/* ---------------------------------------------------------------- build -- */

/* Allocates an empty tokenizer of n_vocab tokens, all BN_TT_UNUSED. */
bitnet_status bn_tok_create(bitnet_tokenizer **out, bn_tok_kind kind, int n_vocab, bitnet_error *err);
/* Sets token id's text (copied) and type; bytes are derived in bn_tok_index. */
bitnet_status bn_tok_set(bitnet_tokenizer *t, int32_t id, const char *text, size_t len, int type, float score,
                         bitnet_error *err);
/* Derives every token's bytes and builds the lookup maps and byte tokens. Call
 * once, after every bn_tok_set and before merges are added. */
bitnet_status bn_tok_index(bitnet_tokenizer *t, bitnet_error *err);
/* Adds merge "a b" at `rank` (lower merges first). Merges whose parts or
 * result are not tokens are skipped (they could never apply). The first
 * listing of a pair wins. */
bitnet_status bn_tok_add_merge(bitnet_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen,
                               int32_t rank, bitnet_error *err);
/* Sizes the merge table for n merges (optional; saves rehashing). */
bitnet_status bn_tok_reserve_merges(bitnet_tokenizer *t, uint64_t n, bitnet_error *err);
/* Every pair of tokens whose concatenation is a token, ranked by that token's
 * rank (= id): the tiktoken rule. */
bitnet_status bn_tok_merges_from_ranks(bitnet_tokenizer *t, bitnet_error *err);
/* Adds an end-of-generation id (ignored when out of range or a duplicate). */
void bn_tok_add_eog(bitnet_tokenizer *t, int32_t id);
/* Special-token table, end-of-generation set, defaults. Call last. */
bitnet_status bn_tok_finish(bitnet_tokenizer *t, bitnet_error *err);

/* Lookups; -1 when absent. */
int32_t bn_tok_find_text(const bitnet_tokenizer *t, const char *s, size_t len);
int32_t bn_tok_find_bytes(const bitnet_tokenizer *t, const char *s, size_t len);
int bn_tok_pair(const bitnet_tokenizer *t, int32_t a, int32_t b, int32_t *rank, int32_t *result);

static inline const char *bn_tok_text(const bitnet_tokenizer *t, int32_t id) { return t->arena + t->tokens[id].text_off; }
static inline const char *bn_tok_bytes(const bitnet_tokenizer *t, int32_t id) { return t->arena + t->tokens[id].bytes_off; }

/* ---------------------------------------------------------- pre-tokenizer -- */

/* Selects a named pre-tokenizer (llama.cpp's tokenizer.ggml.pre names);
 * BITNET_E_UNSUPPORTED for an unknown name. */
bitnet_status bn_pretok_set_named(bn_tok_pretok *p, const char *name, bitnet_error *err);
/* Appends a regex (HF/Oniguruma syntax, adapted to PCRE2). literal = 1: the
 * pattern is a plain string (HF Split with a String pattern). */
bitnet_status bn_pretok_add(bn_tok_pretok *p, const char *pattern, int literal, bitnet_error *err);
void bn_pretok_free(bn_tok_pretok *p);
/* 1 when the name selects the Llama 3 regex (ignore_merges, add_bos). */
int bn_pretok_is_llama3(const char *name);

/* Calls fn(piece, len, user) for each pre-token of text[0..len), in order.
 * Returns the first non-OK status from fn, or an error of its own. */
typedef bitnet_status (*bn_pretok_fn)(const char *piece, size_t len, void *user);
bitnet_status bn_pretok_split(const bn_tok_pretok *p, const char *text, size_t len, bn_pretok_fn fn, void *user,
                              bitnet_error *err);

/* --------------------------------------------------------------- encoding -- */

/* Growable id list used while encoding. */
typedef struct bn_tok_ids {
    int32_t *v;
    size_t n, cap;
} bn_tok_ids;

bitnet_status bn_tok_ids_push(bn_tok_ids *ids, int32_t id, bitnet_error *err);

/* Scratch buffers reused across the pieces of one encode call (zero-initialise;
 * free with bn_tok_work_free). */
typedef struct bn_tok_work {
    void *sym;  /* merge symbols */
    size_t sym_cap;
    void *heap; /* merge candidates */
    size_t heap_cap;
    void *rec;  /* SPM: how unused pieces were formed */
    size_t rec_cap;
    char *text; /* SPM: the normalized text */
    size_t text_cap;
} bn_tok_work;

void bn_tok_work_free(bn_tok_work *w);

/* Byte-level BPE of one pre-token. */
bitnet_status bn_bpe_encode_piece(const bitnet_tokenizer *t, bn_tok_work *w, const char *s, size_t len,
                                  bn_tok_ids *out, bitnet_error *err);
/* SentencePiece-style encoding of a whole text (normalization included). */
bitnet_status bn_spm_encode(const bitnet_tokenizer *t, bn_tok_work *w, const char *s, size_t len, bn_tok_ids *out,
                            bitnet_error *err);

/* ----------------------------------------------------------------- loaders -- */

bitnet_status bn_tok_load_spm_model(bitnet_tokenizer **out, const uint8_t *data, size_t size, bitnet_error *err);
/* 1 when data looks like a tiktoken file ("base64 rank" lines). */
int bn_tok_is_tiktoken(const char *data, size_t size);
bitnet_status bn_tok_load_tiktoken(bitnet_tokenizer **out, const char *data, size_t size, bitnet_error *err);
/* tokenizer.json text; the others (each may be NULL) are the NUL-terminated
 * texts of tokenizer_config.json, config.json and generation_config.json. */
bitnet_status bn_tok_load_hf_json(bitnet_tokenizer **out, const char *json, size_t len, const char *config_json,
                                  const char *model_config_json, const char *gen_config_json, bitnet_error *err);

#endif
