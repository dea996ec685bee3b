/* bitnet.h — the public C API of bitnet.c, an inference engine for ternary
 * (BitNet b1.58) language models.
 *
 * Conventions
 *  - Opaque handles. Whoever creates a handle frees it with the matching _free
 *    function; a context must be freed before the model it was created from.
 *  - Fallible functions return a bitnet_status and take a trailing
 *    `bitnet_error *err` (may be NULL) that receives a one-line message.
 *  - Parameter structs begin with `struct_size`; fill them with the matching
 *    _default() function first, so that fields added later keep old callers
 *    working (the library reads only the fields the caller's struct has).
 *  - Token ids are int32_t. Logits are float32.
 *  - A model may be shared by several contexts, and by several threads as long
 *    as each context is used by one thread at a time.
 */
#ifndef BITNET_H
#define BITNET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BITNET_VERSION_MAJOR 0
#define BITNET_VERSION_MINOR 1
#define BITNET_VERSION_PATCH 0

/* ---------------------------------------------------------------- errors -- */

typedef enum bitnet_status {
    BITNET_OK = 0,
    BITNET_E_INVALID_ARG = 1, /* a caller passed something unusable            */
    BITNET_E_IO = 2,          /* a file could not be opened, read or written    */
    BITNET_E_FORMAT = 3,      /* a file is malformed, truncated or inconsistent */
    BITNET_E_UNSUPPORTED = 4, /* valid, but not something bitnet.c can run      */
    BITNET_E_NOMEM = 5,       /* an allocation failed                           */
    BITNET_E_CONTEXT_FULL = 6,/* the tokens do not fit in the context window    */
    BITNET_E_DEVICE = 7,      /* an accelerator is missing or failed            */
    BITNET_E_CANCELLED = 8,   /* a callback asked to stop                       */
    BITNET_E_INTERNAL = 9     /* a bug in bitnet.c                              */
} bitnet_status;

typedef struct bitnet_error {
    bitnet_status code;
    char message[512];
} bitnet_error;

/* A static English name for a status ("format error", ...). Never NULL. */
const char *bitnet_status_string(bitnet_status status);

/* "0.1.0", the library version. */
const char *bitnet_version(void);

/* The CPU kernel level this process uses ("scalar", "avx2", "avx512",
 * "neon", "neon_dotprod"), honouring BITNET_CPU. */
const char *bitnet_cpu_kernels(void);

/* Physical CPU cores (logical CPUs / SMT width): the default thread count,
 * since hardware threads of one core share the memory bandwidth decode needs. */
int bitnet_physical_cores(void);

/* ----------------------------------------------------------------- model -- */

typedef struct bitnet_model bitnet_model;

typedef struct bitnet_model_params {
    size_t struct_size;   /* = sizeof(bitnet_model_params)                    */
    int use_mmap;         /* 1 (default): map the file, weights used in place  */
    int verbose;          /* 1: progress and load timings on stderr            */
    const char *head_type;/* output head: NULL or "auto" = as stored; "q8_0" =
                             int8 copy made at load (less memory traffic per
                             token, a small quality cost: see docs/PERFORMANCE.md) */
} bitnet_model_params;

void bitnet_model_params_default(bitnet_model_params *params);

/* Loads a model from `path`: a .gguf file, or a Hugging Face folder holding
 * config.json + model.safetensors (or a sharded model.safetensors.index.json)
 * + tokenizer.json. Every header field is validated against the file size;
 * a bad file gives BITNET_E_FORMAT / BITNET_E_UNSUPPORTED with a message. */
bitnet_status bitnet_model_load(const char *path, const bitnet_model_params *params,
                                bitnet_model **out, bitnet_error *err);

void bitnet_model_free(bitnet_model *model);

typedef enum bitnet_ffn_act { BITNET_FFN_SILU = 0, BITNET_FFN_RELU2 = 1 } bitnet_ffn_act;

/* Hyperparameters, as the engine will use them. Strings are owned by the
 * model and live as long as it does. */
typedef struct bitnet_model_info {
    const char *arch;          /* architecture as named in the file            */
    const char *name;          /* general.name or the folder name; may be ""   */
    const char *source_format; /* "gguf" or "huggingface"                      */
    int n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx_train;
    float rms_eps, rope_theta;
    bitnet_ffn_act ffn_act;
    int has_sub_norms;         /* attn_sub_norm / ffn_sub_norm present          */
    int rope_neox;             /* 1: pairs (i, i+d/2); 0: interleaved pairs     */
    int tied_output;           /* 1: logits use the token embedding            */
    int64_t n_params;          /* every element of every tensor                */
    uint64_t file_bytes;       /* total size of the weight file(s)             */
    int bos_id, eos_id, eot_id;/* -1 when unknown                              */
} bitnet_model_info;

void bitnet_model_get_info(const bitnet_model *model, bitnet_model_info *out);

/* Tensor table, in file order (for `bitnet info`). Returns 0 for index out of range. */
typedef struct bitnet_tensor_info {
    const char *name;   /* owned by the model */
    const char *type;   /* "F32", "I2_S", ... */
    int n_dims;
    int64_t ne[4];      /* ne[0] is the contiguous (innermost) dimension */
    uint64_t n_bytes;   /* bytes in the file */
} bitnet_tensor_info;

int bitnet_model_n_tensors(const bitnet_model *model);
int bitnet_model_tensor(const bitnet_model *model, int index, bitnet_tensor_info *out);

/* ------------------------------------------------------------ tokenizer -- */

typedef struct bitnet_tokenizer bitnet_tokenizer;

/* Loads a tokenizer on its own: a Hugging Face tokenizer.json, a SentencePiece
 * tokenizer.model, a .gguf file (its tokenizer.ggml.* keys) or a Hugging Face
 * folder. Free with bitnet_tokenizer_free. */
bitnet_status bitnet_tokenizer_load(const char *path, bitnet_tokenizer **out, bitnet_error *err);
void bitnet_tokenizer_free(bitnet_tokenizer *tok);

/* The model's own tokenizer; owned by the model (do not free). */
const bitnet_tokenizer *bitnet_model_tokenizer(const bitnet_model *model);

int bitnet_tokenizer_n_vocab(const bitnet_tokenizer *tok);
int bitnet_tokenizer_bos(const bitnet_tokenizer *tok); /* -1 if none */
int bitnet_tokenizer_eos(const bitnet_tokenizer *tok); /* -1 if none */
/* 1 when generation should stop at this token (EOS, EOT, end-of-turn tokens). */
int bitnet_tokenizer_is_eog(const bitnet_tokenizer *tok, int32_t token);
/* Id of a token given its exact text (e.g. "<|eot_id|>"), or -1. */
int32_t bitnet_tokenizer_find(const bitnet_tokenizer *tok, const char *text);

/* Tokenizes `len` bytes of `text` (not NUL-terminated; invalid UTF-8 is
 * tokenized as bytes). add_bos: -1 = the tokenizer's default, 0 = no, 1 = yes.
 * parse_special: 1 = special-token strings in the text become those tokens.
 * Writes up to `cap` ids to `out` and the full count to *n_out; returns
 * BITNET_E_INVALID_ARG (with *n_out set) when cap is too small. */
bitnet_status bitnet_tokenize(const bitnet_tokenizer *tok, const char *text, size_t len, int add_bos,
                              int parse_special, int32_t *out, int cap, int *n_out, bitnet_error *err);

/* The bytes a token stands for (byte-fallback / byte-level pieces decoded,
 * '▁' turned into spaces). Special/control tokens give "" unless
 * `special` is 1. Returns the byte count (which may exceed cap; nothing past
 * cap is written) or -1 for an id out of range. */
int bitnet_token_to_bytes(const bitnet_tokenizer *tok, int32_t token, int special, char *buf, int cap);

/* One line for `bitnet info`, e.g. "byte-level BPE (gpt2), 128256 tokens,
 * 280147 merges, pre-tokenizer llama3, bos 128000, eos 128001, add_bos 1".
 * Writes at most cap bytes including a NUL; returns the full length. */
int bitnet_tokenizer_describe(const bitnet_tokenizer *tok, char *buf, size_t cap);

/* Detokenizer flags. */
#define BITNET_DETOK_SPECIAL 1     /* write special/control tokens as their text      */
#define BITNET_DETOK_STRIP_SPACE 2 /* the ids start a text: drop the space that a
                                      SentencePiece tokenizer's space prefix put in
                                      front of it (no effect on byte-level BPE)      */

/* Streaming detokenizer: turns tokens into text as they are generated. Text
 * comes out as soon as it forms whole UTF-8 characters; the bytes of a
 * character split across byte tokens are held back until it is complete.
 * Bytes that can never become valid UTF-8 are passed through unchanged, so
 * the concatenated output is exactly the tokens' bytes. Not thread-safe; one
 * per sequence. The tokenizer must outlive it. */
typedef struct bitnet_detok bitnet_detok;

bitnet_status bitnet_detok_new(const bitnet_tokenizer *tok, int flags, bitnet_detok **out, bitnet_error *err);
void bitnet_detok_free(bitnet_detok *d);

/* Adds one token. *text / *len receive the bytes now complete (possibly 0),
 * valid until the next call on d. An id out of range gives
 * BITNET_E_INVALID_ARG and changes nothing. */
bitnet_status bitnet_detok_feed(bitnet_detok *d, int32_t token, const char **text, size_t *len, bitnet_error *err);

/* Ends the stream: *text / *len receive the bytes still held (an unfinished
 * UTF-8 sequence, possibly 0), valid until the next call on d. d then starts
 * a new text (BITNET_DETOK_STRIP_SPACE applies again). */
void bitnet_detok_flush(bitnet_detok *d, const char **text, size_t *len);

/* Whole-sequence detokenization (flags as above). Writes at most cap bytes
 * including a NUL (buf may be NULL when cap is 0) and returns the full length
 * of the text without the NUL, or -1 for bad arguments or an id out of range. */
int64_t bitnet_detokenize(const bitnet_tokenizer *tok, const int32_t *tokens, int n_tokens, int flags, char *buf,
                          size_t cap);

/* ---------------------------------------------------------------- context -- */

typedef struct bitnet_context bitnet_context;

typedef struct bitnet_context_params {
    size_t struct_size;   /* = sizeof(bitnet_context_params)                    */
    int n_ctx;            /* KV cache length in tokens; 0 = model's n_ctx_train  */
    int n_batch;          /* most tokens evaluated in one step (default 512)     */
    int n_threads;        /* CPU threads; 0 = number of physical cores           */
    const char *device;   /* "auto" (default: a GPU when usable, else the CPU),
                             "cpu", "cuda" or "cuda:N"; NULL = "auto"            */
    int n_seq;            /* independent sequences (default 1): each has its own
                             n_ctx-token KV cache (memory grows with n_seq) and
                             its own position; see bitnet_eval_batch             */
} bitnet_context_params;

void bitnet_context_params_default(bitnet_context_params *params);

bitnet_status bitnet_context_create(bitnet_model *model, const bitnet_context_params *params,
                                    bitnet_context **out, bitnet_error *err);
void bitnet_context_free(bitnet_context *ctx);

int bitnet_context_n_ctx(const bitnet_context *ctx);
/* The backend this context runs on ("cpu", "cuda:0") and, for the CPU, the
 * kernel level ("cpu/avx512"). Static or context-owned string. */
const char *bitnet_context_device(const bitnet_context *ctx);
/* Tokens currently held in the KV cache (the position of the next token). */
int bitnet_context_n_past(const bitnet_context *ctx);

/* Which positions of an eval keep their logits. */
typedef enum bitnet_logits_mode {
    BITNET_LOGITS_LAST = 0, /* only the last token's (generation)  */
    BITNET_LOGITS_ALL = 1   /* every token's (perplexity, checks)  */
} bitnet_logits_mode;

/* Appends `n_tokens` tokens at position n_past and runs the model over them
 * (long inputs are split into n_batch-sized steps). Fails with
 * BITNET_E_CONTEXT_FULL, changing nothing, when they would not fit, and with
 * BITNET_E_INVALID_ARG for an id outside the vocabulary. */
bitnet_status bitnet_eval(bitnet_context *ctx, const int32_t *tokens, int n_tokens,
                          bitnet_logits_mode mode, bitnet_error *err);

/* Logits of the i-th token of the last bitnet_eval or bitnet_eval_batch
 * (i = -1: the last one). Valid until the next eval; NULL when that token's
 * logits were not kept. Length n_vocab. */
const float *bitnet_get_logits(const bitnet_context *ctx, int i);

/* Forgets every token of sequence 0 at position >= n_keep (0 clears it). */
bitnet_status bitnet_kv_truncate(bitnet_context *ctx, int n_keep, bitnet_error *err);

/* ------------------------------------------------ several sequences -- */

/* A context made with n_seq > 1 holds that many independent sequences (for
 * batched decoding: one step evaluates a token of each). bitnet_eval,
 * bitnet_context_n_past and bitnet_kv_truncate act on sequence 0. */

/* Tokens for one bitnet_eval_batch. Token i belongs to sequence seq[i] and
 * is appended at that sequence's next position: tokens of one sequence are
 * taken in array order, and may be interleaved with other sequences'. */
typedef struct bitnet_batch {
    int n_tokens;
    const int32_t *tokens; /* n_tokens ids                                      */
    const int32_t *seq;    /* n_tokens sequence ids in [0, n_seq); NULL: all 0   */
    const int8_t *logits;  /* logits[i] != 0: keep token i's logits; NULL: keep
                              the last token's of each sequence in the batch    */
} bitnet_batch;

/* Evaluates a batch (split into n_batch-token steps when larger). Checks
 * everything before evaluating anything: BITNET_E_INVALID_ARG for a sequence
 * id or token id out of range, BITNET_E_CONTEXT_FULL when a sequence's tokens
 * would not fit in its n_ctx; on either, nothing changes. Kept logits are
 * read with bitnet_get_logits(ctx, i), i the index in the batch. */
bitnet_status bitnet_eval_batch(bitnet_context *ctx, const bitnet_batch *batch, bitnet_error *err);

/* Greedy decoding without logits: evaluates a batch as bitnet_eval_batch
 * does and writes, for every token whose logits that call would keep, the
 * id a greedy sampler would pick from them (the largest logit, lowest id on
 * ties, NaN never picked) to out_tokens[i]; -1 for the other tokens
 * (out_tokens has batch->n_tokens entries). No logits are kept:
 * bitnet_get_logits returns NULL until the next eval. On a GPU the pick is
 * made there, so a step copies 4 bytes per sequence instead of n_vocab
 * floats. The same as sampling the kept logits with a sampler for which
 * bitnet_sampler_is_greedy holds. */
bitnet_status bitnet_eval_batch_greedy(bitnet_context *ctx, const bitnet_batch *batch, int32_t *out_tokens,
                                       bitnet_error *err);

int bitnet_context_n_seq(const bitnet_context *ctx);
/* Tokens held for sequence `seq` (its next position); -1 for a bad id. */
int bitnet_seq_n_past(const bitnet_context *ctx, int seq);
/* Forgets every token of sequence `seq` at position >= n_keep (0 clears it,
 * so that the slot can take a new sequence). Other sequences, and the logits
 * of the last eval, are untouched. */
bitnet_status bitnet_seq_truncate(bitnet_context *ctx, int seq, int n_keep, bitnet_error *err);

/* -------------------------------------------------------------- profiling -- */

/* Operation classes timed by the profiler. */
typedef enum bitnet_op_class {
    BITNET_OP_TERNARY_MATMUL = 0, /* q/k/v/o, gate/up/down                       */
    BITNET_OP_OUTPUT_HEAD = 1,    /* final norm input × embedding (the logits)    */
    BITNET_OP_ATTENTION = 2,      /* RoPE, KV-cache writes, attention             */
    BITNET_OP_NORM_QUANT = 3,     /* RMSNorms and int8 activation quantization    */
    BITNET_OP_OTHER = 4,          /* embedding lookup, activations, residuals, copies */
    BITNET_OP_COUNT = 5
} bitnet_op_class;

typedef struct bitnet_profile {
    double seconds[BITNET_OP_COUNT];
    uint64_t calls[BITNET_OP_COUNT];
} bitnet_profile;

/* Static name of an operation class ("ternary matmul", ...). */
const char *bitnet_op_class_name(bitnet_op_class cls);

/* Turns per-operation timing on or off (off by default; on costs a little, and
 * on a GPU it synchronises after every operation). Turning it on clears the
 * accumulated profile. */
void bitnet_context_set_profiling(bitnet_context *ctx, int on);

/* Time accumulated since profiling was turned on. */
void bitnet_context_get_profile(const bitnet_context *ctx, bitnet_profile *out);

/* --------------------------------------------------------------- sampling -- */

/* A sampler turns one row of logits into a token. It owns its random-number
 * generator (seeded explicitly: the same seed and the same logits give the same
 * tokens) and the history of recent tokens that the penalties look at. One
 * sampler serves one sequence; it is not thread-safe.
 *
 * Order of operations for each sample:
 *   logit bias → repetition/frequency/presence penalties → (temperature <= 0:
 *   argmax, lowest id on ties) → temperature → top-k → top-p → min-p → draw. */
typedef struct bitnet_sampler bitnet_sampler;

typedef struct bitnet_logit_bias {
    int32_t token;
    float bias;           /* added to the logit; -INFINITY bans the token */
} bitnet_logit_bias;

/* Asks bitnet_sampler_new to draw a seed (from the clock); see bitnet_sampler_seed. */
#define BITNET_SEED_RANDOM UINT64_MAX

typedef struct bitnet_sampler_params {
    size_t struct_size;      /* = sizeof(bitnet_sampler_params)                  */
    uint64_t seed;           /* default BITNET_SEED_RANDOM                        */
    float temperature;       /* <= 0: greedy (argmax). Default 0.8                */
    int top_k;               /* keep the k most likely tokens; 0 = off. Default 40 */
    float top_p;             /* keep the smallest set whose probability reaches p
                                (after top-k); 1 = off. Default 0.95              */
    float min_p;             /* drop tokens below min_p × the top probability;
                                0 = off. Default 0.05                             */
    float repeat_penalty;    /* divide positive / multiply negative logits of
                                recent tokens; 1 = off (default)                  */
    float frequency_penalty; /* subtract count × this from recent tokens; 0 = off */
    float presence_penalty;  /* subtract this once from recent tokens; 0 = off    */
    int penalty_last_n;      /* how many accepted tokens the penalties look at;
                                0 = none, -1 = all since the last reset. Default 64 */
    const bitnet_logit_bias *logit_bias; /* copied by bitnet_sampler_new      */
    int n_logit_bias;
} bitnet_sampler_params;

void bitnet_sampler_params_default(bitnet_sampler_params *params);

/* Fails with BITNET_E_INVALID_ARG for out-of-range parameters (NaN, top_p or
 * min_p outside [0, 1], repeat_penalty <= 0, a negative bias token, ...). */
bitnet_status bitnet_sampler_new(const bitnet_sampler_params *params, bitnet_sampler **out, bitnet_error *err);
void bitnet_sampler_free(bitnet_sampler *smp);

/* Picks a token from `n_vocab` logits (not modified). Returns -1 only for bad
 * arguments or memory exhaustion. Does not record the token: call
 * bitnet_sampler_accept with the token that is actually used. */
int32_t bitnet_sampler_sample(bitnet_sampler *smp, const float *logits, int n_vocab);

/* 1 when the sampler's pick is always the argmax of the raw logits (greedy:
 * temperature <= 0, top_k 1 or top_p 0, with no logit bias and no active
 * penalty), so that bitnet_eval_batch_greedy can stand in for evaluating and
 * sampling; 0 otherwise or for NULL. */
int bitnet_sampler_is_greedy(const bitnet_sampler *smp);

/* Records a token (prompt or generated) in the penalty history. */
void bitnet_sampler_accept(bitnet_sampler *smp, int32_t token);

/* Forgets the history and restarts the random sequence from the seed. */
void bitnet_sampler_reset(bitnet_sampler *smp);

/* The seed in use (the drawn one when BITNET_SEED_RANDOM was asked for). */
uint64_t bitnet_sampler_seed(const bitnet_sampler *smp);

/* ------------------------------------------------------------- generation -- */

/* Why a generation ended. */
typedef enum bitnet_stop_reason {
    BITNET_STOP_NONE = 0,         /* did not run (an error before the first token) */
    BITNET_STOP_EOG = 1,          /* the model produced an end-of-generation token */
    BITNET_STOP_LENGTH = 2,       /* n_predict tokens were generated               */
    BITNET_STOP_CONTEXT_FULL = 3, /* the context window is full (not an error)     */
    BITNET_STOP_CANCELLED = 4     /* the callback asked to stop                    */
} bitnet_stop_reason;

/* Called once per generated token with the text that token completes: `len`
 * bytes of whole UTF-8 characters (0 when the token ends inside a character,
 * or is a special token). At the end, bytes left over from an incomplete
 * character are passed with token = -1. Return non-zero to stop. */
typedef int (*bitnet_piece_fn)(const char *piece, size_t len, int32_t token, void *user);

typedef struct bitnet_generate_params {
    size_t struct_size;    /* = sizeof(bitnet_generate_params)                   */
    int n_predict;         /* most tokens to generate; -1 (default) = until an
                              end-of-generation token or the end of the context  */
    int ignore_eog;        /* 1: keep going through end-of-generation tokens
                              (benchmarks, reference comparisons)                */
    int accept_prompt;     /* 1 (default): the prompt tokens enter the sampler's
                              penalty history                                    */
    int detok_flags;       /* BITNET_DETOK_* for the generated text (default 0)  */
    bitnet_piece_fn on_piece; /* may be NULL                                     */
    void *user;            /* passed to on_piece                                 */
    int pick_on_device;    /* 1: with a greedy sampler (bitnet_sampler_is_greedy)
                              each token is picked where the model runs, as by
                              bitnet_eval_batch_greedy (on a GPU 4 bytes come back
                              per token instead of n_vocab floats); no logits are
                              kept: bitnet_get_logits returns NULL inside on_piece
                              and after the run. Other samplers are unaffected.
                              0 (default): the logits of each step are kept     */
} bitnet_generate_params;

void bitnet_generate_params_default(bitnet_generate_params *params);

typedef struct bitnet_generate_stats {
    int n_prompt;            /* prompt tokens evaluated                          */
    int n_generated;         /* tokens generated (an end-of-generation token that
                                stopped the run is not counted)                  */
    double prompt_ms, generate_ms;
    double prompt_tok_s;     /* n_prompt / prompt time                           */
    double generate_tok_s;   /* n_generated / generate_ms (the token loop: every
                                sample and every evaluation after the prompt's)  */
    bitnet_stop_reason stop;
    /* The last sampled token, which is NOT in the KV cache (every run ends on
     * a token that was sampled but not evaluated): the end-of-generation token,
     * or the last generated token. -1 when none was sampled. A caller that
     * continues the sequence evaluates it first (chat does this). */
    int32_t last_token;
} bitnet_generate_stats;

/* Appends `prompt` (n_prompt >= 1 tokens) to the context's sequence, evaluates
 * it in one batch, then samples and evaluates one token at a time until an
 * end-of-generation token (bitnet_tokenizer_is_eog), n_predict tokens, the end
 * of the context, or a non-zero return from on_piece. `tok` must be the
 * context's model's tokenizer: it turns tokens into text, says which tokens end
 * generation, and its vocabulary bounds the sampled ids. Returns BITNET_OK for
 * every clean stop except cancellation (BITNET_E_CANCELLED); stats (may be
 * NULL) says which. A prompt that does not fit fails with
 * BITNET_E_CONTEXT_FULL before anything is evaluated. */
bitnet_status bitnet_generate(bitnet_context *ctx, const bitnet_tokenizer *tok, bitnet_sampler *smp,
                              const int32_t *prompt, int n_prompt, const bitnet_generate_params *params,
                              bitnet_generate_stats *stats, bitnet_error *err);

/* The common case: tokenizes `prompt` (with the tokenizer's default BOS and
 * special tokens parsed), generates up to n_predict tokens (-1: until the end)
 * after whatever the context holds, and returns the text in *out_text
 * (malloc'd, NUL-terminated; free with bitnet_text_free). */
bitnet_status bitnet_generate_text(bitnet_context *ctx, const bitnet_tokenizer *tok, bitnet_sampler *smp,
                                   const char *prompt, int n_predict, char **out_text, bitnet_error *err);
void bitnet_text_free(char *text);

/* ------------------------------------------------------------------- chat -- */

/* Chat formats (how turns are rendered into prompt text). */
typedef enum bitnet_chat_format {
    BITNET_CHAT_AUTO = 0,   /* pick from the model: bitnet_model_chat_format     */
    BITNET_CHAT_BITNET = 1, /* 2B4T: <|begin_of_text|>Role: content<|eot_id|>...
                               generation prompt "Assistant: "                   */
    BITNET_CHAT_LLAMA3 = 2, /* <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|> */
    BITNET_CHAT_CHATML = 3  /* <|im_start|>role\ncontent<|im_end|>\n            */
} bitnet_chat_format;

typedef struct bitnet_chat_message {
    const char *role;     /* "system", "user", "assistant" (others pass through) */
    const char *content;
} bitnet_chat_message;

/* The chat template stored in the model file (Jinja text), or NULL. */
const char *bitnet_model_chat_template(const bitnet_model *model);

/* Which format fits a model: architecture "bitnet-b1.58"/"bitnet-25" always
 * gives BITNET (the template in the official 2B4T GGUF is wrong); otherwise
 * marker strings in the template decide; without a recognisable template the
 * vocabulary does (<|start_header_id|> → LLAMA3, <|im_start|> → CHATML), and
 * BITNET is the last resort. */
bitnet_chat_format bitnet_model_chat_format(const bitnet_model *model);
/* The same decision from its inputs (each may be NULL). */
bitnet_chat_format bitnet_chat_format_detect(const char *arch, const char *tmpl, const bitnet_tokenizer *tok);

/* "bitnet", "llama3", "chatml" ("auto" for AUTO); and back (-1 if unknown). */
const char *bitnet_chat_format_name(bitnet_chat_format format);
int bitnet_chat_format_from_name(const char *name);

/* Renders messages as the format's prompt text, beginning with its BOS text
 * where it has one, and, when add_generation_prompt is 1, ending with the
 * start of an assistant turn. Writes at most cap bytes including a NUL and
 * returns the full length (as snprintf does), or -1 for bad arguments. */
int bitnet_chat_apply(bitnet_chat_format format, const bitnet_chat_message *msgs, int n_msgs,
                      int add_generation_prompt, char *buf, size_t cap);

/* A conversation on one context: each turn evaluates only its own tokens, the
 * earlier turns stay in the KV cache. The session does not own the model,
 * context or sampler; free it before them. */
typedef struct bitnet_chat bitnet_chat;

/* `system` may be NULL. format BITNET_CHAT_AUTO picks bitnet_model_chat_format.
 * The context should be empty (the session clears it). */
bitnet_status bitnet_chat_new(const bitnet_model *model, bitnet_context *ctx, bitnet_sampler *smp,
                              bitnet_chat_format format, const char *system, bitnet_chat **out, bitnet_error *err);
void bitnet_chat_free(bitnet_chat *chat);

/* Adds a user turn and generates the assistant's reply (up to n_predict
 * tokens, -1 = until end of turn), streamed through on_piece (may be NULL).
 * Only the new turn's tokens are evaluated; only reply tokens enter the
 * sampler's penalty history.
 * When the turn does not fit in the free context, fails with
 * BITNET_E_CONTEXT_FULL changing nothing; when the reply fills the context,
 * returns BITNET_OK with stats->stop = BITNET_STOP_CONTEXT_FULL. After either,
 * call bitnet_chat_reset to go on. */
bitnet_status bitnet_chat_send(bitnet_chat *chat, const char *user_text, int n_predict, bitnet_piece_fn on_piece,
                               void *user, bitnet_generate_stats *stats, bitnet_error *err);

/* Forgets every turn (keeps the system prompt) and clears the KV cache and
 * the sampler's history. */
bitnet_status bitnet_chat_reset(bitnet_chat *chat, bitnet_error *err);

bitnet_chat_format bitnet_chat_get_format(const bitnet_chat *chat);

/* on = 1: replies are generated with bitnet_generate_params.pick_on_device
 * (a greedy sampler's tokens picked where the model runs, no logits kept);
 * 0 (the default): logits kept. */
void bitnet_chat_set_pick_on_device(bitnet_chat *chat, int on);

/* ------------------------------------------------------------- conversion -- */

/* Tensor types a conversion can write (the values are ggml type ids). */
typedef enum bitnet_type {
    BITNET_TYPE_DEFAULT = -1, /* the parameter's documented default */
    BITNET_TYPE_F32 = 0,
    BITNET_TYPE_F16 = 1,
    BITNET_TYPE_Q4_0 = 2,
    BITNET_TYPE_Q8_0 = 8,
    BITNET_TYPE_Q6_K = 14,
    BITNET_TYPE_BF16 = 30,
    BITNET_TYPE_TQ1_0 = 34,
    BITNET_TYPE_TQ2_0 = 35,
    BITNET_TYPE_I2_S = 36
} bitnet_type;

/* "i2_s", "TQ2_0", "f16", ... (any case) → the type; -1 when unknown. */
int bitnet_type_from_name(const char *name);

/* Progress of a conversion: called once per tensor as it starts (bytes_done
 * counts the output written so far) and periodically inside large tensors.
 * Return nonzero to cancel: the call then fails with BITNET_E_CANCELLED and
 * leaves no output file. */
typedef int (*bitnet_progress_fn)(void *user, const char *tensor, int index, int count, uint64_t bytes_done,
                                  uint64_t bytes_total);

typedef struct bitnet_convert_params {
    size_t struct_size;          /* = sizeof(bitnet_convert_params)                 */
    bitnet_type weight_type;     /* ternary linears: I2_S (default), TQ2_0, TQ1_0, F16, F32 */
    bitnet_type embd_type;       /* token_embd / output.weight: F16, F32, BF16, Q8_0,
                                    Q6_K, Q4_0; DEFAULT: a GGUF source's own type
                                    (so re-quantizing keeps it), else F16           */
    int overwrite;               /* 1: replace an existing output file              */
    bitnet_progress_fn progress; /* may be NULL                                     */
    void *progress_user;
} bitnet_convert_params;

void bitnet_convert_params_default(bitnet_convert_params *params);

/* Writes the model at `src` (anything bitnet_model_load reads: a Hugging Face
 * folder — packed ternary or float master weights — or a GGUF file) as a GGUF
 * file at `dst` laid out like the official BitNet files: same architecture
 * names, metadata keys, tensor names and types, with the tokenizer and chat
 * template. Ternary types convert into each other losslessly. The output is
 * streamed to "<dst>.tmp" and renamed at the end; on any failure no file is
 * left at dst or dst.tmp. */
bitnet_status bitnet_convert(const char *src, const char *dst, const bitnet_convert_params *params,
                             bitnet_error *err);

/* Synthetic models: real shapes, random ternary weights (for benchmarks,
 * loaders and CI). */
typedef struct bitnet_gen_params {
    size_t struct_size;          /* = sizeof(bitnet_gen_params)                     */
    const char *arch;            /* "bitnet-b1.58" (ReLU², sub-norms), "bitnet"
                                    (SiLU, sub-norms) or "llama"                    */
    const char *name;            /* general.name                                    */
    int n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx;
    float rms_eps, rope_theta;
    int tied_output;             /* 1: no output.weight (logits use token_embd)     */
    bitnet_type weight_type;     /* I2_S, TQ2_0, TQ1_0, F16 or F32                  */
    bitnet_type embd_type;       /* as in bitnet_convert_params                     */
    uint64_t seed;
    const char *tokenizer;       /* a tokenizer.json to embed; NULL: a synthetic
                                    byte-level BPE vocabulary of n_vocab tokens     */
    int overwrite;
    bitnet_progress_fn progress;
    void *progress_user;
} bitnet_gen_params;

/* Defaults plus the shapes of a preset: "2b4t", "large-0.7b", "3b",
 * "falcon3-7b", "llama3-8b" or "custom" (a tiny bitnet-b1.58 model to edit).
 * BITNET_E_INVALID_ARG for an unknown name. */
bitnet_status bitnet_gen_params_preset(bitnet_gen_params *params, const char *preset, bitnet_error *err);

/* The i-th preset name, NULL past the end. */
const char *bitnet_gen_preset_name(int i);

/* Writes a synthetic model to `dst`, one tensor at a time (memory use does not
 * grow with the model). Same file guarantees as bitnet_convert. */
bitnet_status bitnet_gen_model(const char *dst, const bitnet_gen_params *params, bitnet_error *err);

#ifdef __cplusplus
}
#endif
#endif /* BITNET_H */
