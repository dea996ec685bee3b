/* Tokenizer from GGUF metadata: the tokenizer.ggml.* keys (FORMATS.md §1.6).
 *
 *   model "gpt2"  -> byte-level BPE: tokens (GPT-2-mapped text), token_type,
 *                    merges ("a b", by rank), pre (pre-tokenizer name).
 *                    A missing pre means Llama 3: the official 2B4T GGUF and
 *                    the kit's tiny-bitnet files lack the key (FORMATS.md §1.7).
 *   model "llama" -> SentencePiece-style: tokens, scores, token_type (6 = byte),
 *                    add_space_prefix (default on).
 * Both: bos/eos/unknown/eot/eom token ids, add_bos_token. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

/* An optional token id key; -1 when absent or not an integer. */
static int32_t id_key(const bn_gguf *g, const char *key) {
    int64_t v;
    return bn_gguf_get_i64(g, key, &v) == 1 && v >= 0 && v < INT32_MAX ? (int32_t)v : -1;
}

static int bool_key(const bn_gguf *g, const char *key, int def) {
    int v;
    return bn_gguf_get_bool(g, key, &v) == 1 ? v != 0 : def;
}

static int is_int_type(uint32_t type) {
    return type == BN_GGUF_UINT8 || type == BN_GGUF_INT8 || type == BN_GGUF_UINT16 || type == BN_GGUF_INT16 ||
           type == BN_GGUF_UINT32 || type == BN_GGUF_INT32 || type == BN_GGUF_UINT64 || type == BN_GGUF_INT64;
}

/* An array key of the given element kind with exactly n elements (n = 0: any
 * count), or NULL when absent. */
static const bn_gguf_kv *array_key(const bn_gguf *g, const char *key, int want_int, uint32_t want_type, uint64_t n,
                                   bitnet_status *rc, bitnet_error *err) {
    const bn_gguf_kv *kv = bn_gguf_find_kv(g, key);
    if (!kv) return NULL;
    int ok = kv->type == BN_GGUF_ARRAY && (want_int ? is_int_type(kv->arr_type) : kv->arr_type == want_type);
    if (!ok) *rc = bn_fail(err, BITNET_E_FORMAT, "%s has the wrong type", key);
    else if (n && kv->arr_n != n)
        *rc = bn_fail(err, BITNET_E_FORMAT, "%s has %llu entries, tokenizer.ggml.tokens %llu", key,
                      (unsigned long long)kv->arr_n, (unsigned long long)n);
    return *rc ? NULL : kv;
}

static bitnet_status set_tokens(bitnet_tokenizer *t, const bn_gguf *g, const bn_gguf_kv *tokens,
                                const bn_gguf_kv *scores, const bn_gguf_kv *types, bitnet_error *err) {
    for (int32_t i = 0; i < t->n_vocab; i++) {
        bn_str s = bn_gguf_arr_str(g, tokens, (uint64_t)i);
        int type = types ? (int)bn_gguf_arr_int(types, (uint64_t)i) : BN_TT_NORMAL;
        if (!types && t->kind == BN_TOK_SPM && s.len == 6 && !memcmp(s.ptr, "<0x", 3)) type = BN_TT_BYTE;
        float score = scores ? bn_gguf_arr_f32(scores, (uint64_t)i) : 0.0f;
        bitnet_status rc = bn_tok_set(t, i, s.ptr, (size_t)s.len, type, score, err);
        if (rc) return rc;
    }
    return BITNET_OK;
}

static bitnet_status set_merges(bitnet_tokenizer *t, const bn_gguf *g, const bn_gguf_kv *merges, bitnet_error *err) {
    bitnet_status rc0 = merges ? bn_tok_reserve_merges(t, merges->arr_n, err) : BITNET_OK;
    if (rc0) return rc0;
    for (uint64_t i = 0; merges && i < merges->arr_n; i++) {
        bn_str m = bn_gguf_arr_str(g, merges, i);
        const char *sp = memchr(m.ptr, ' ', (size_t)m.len);
        if (!sp) return bn_fail(err, BITNET_E_FORMAT, "tokenizer.ggml.merges[%llu] has no space", (unsigned long long)i);
        size_t alen = (size_t)(sp - m.ptr);
        bitnet_status rc = bn_tok_add_merge(t, m.ptr, alen, sp + 1, (size_t)m.len - alen - 1, (int32_t)i, err);
        if (rc) return rc;
    }
    return BITNET_OK;
}

/* Which pre-tokenizer: tokenizer.ggml.pre, or Llama 3 when it is missing. */
static bitnet_status set_pre(bitnet_tokenizer *t, const bn_gguf *g, bitnet_error *err) {
    bn_str pre;
    char name[64] = "llama3";
    if (bn_gguf_get_str(g, "tokenizer.ggml.pre", &pre) == 1)
        snprintf(name, sizeof name, "%.*s", (int)(pre.len < 63 ? pre.len : 63), pre.ptr);
    bitnet_status rc = bn_pretok_set_named(&t->pre, name, err);
    t->ignore_merges = bn_pretok_is_llama3(name);
    return rc;
}

static bitnet_status model_kind(const bn_gguf *g, bn_tok_kind *kind, bitnet_error *err) {
    bn_str model;
    if (bn_gguf_get_str(g, "tokenizer.ggml.model", &model) != 1)
        return bn_fail(err, BITNET_E_FORMAT, "tokenizer.ggml.model missing");
    if (bn_str_eq(model, "gpt2")) *kind = BN_TOK_BYTE_BPE;
    else if (bn_str_eq(model, "llama")) *kind = BN_TOK_SPM;
    else
        return bn_fail(err, BITNET_E_UNSUPPORTED, "tokenizer model '%.*s' is not supported (gpt2, llama)",
                       (int)(model.len < 32 ? model.len : 32), model.ptr);
    return BITNET_OK;
}

static void set_ids(bitnet_tokenizer *t, const bn_gguf *g) {
    t->bos = id_key(g, "tokenizer.ggml.bos_token_id");
    t->eos = id_key(g, "tokenizer.ggml.eos_token_id");
    t->eot = id_key(g, "tokenizer.ggml.eot_token_id");
    t->unk = id_key(g, "tokenizer.ggml.unknown_token_id");
    bn_tok_add_eog(t, id_key(g, "tokenizer.ggml.eom_token_id"));
    int add_bos;
    if (bn_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos) == 1) t->add_bos = add_bos != 0;
}

static bitnet_status build(bitnet_tokenizer **out, const bn_gguf *g, bn_tok_kind kind, bitnet_error *err) {
    bitnet_status rc = BITNET_OK;
    const bn_gguf_kv *tokens = array_key(g, "tokenizer.ggml.tokens", 0, BN_GGUF_STRING, 0, &rc, err);
    if (!tokens) return rc ? rc : bn_fail(err, BITNET_E_FORMAT, "tokenizer.ggml.tokens missing");
    if (tokens->arr_n == 0 || tokens->arr_n > (1u << 24))
        return bn_fail(err, BITNET_E_FORMAT, "tokenizer.ggml.tokens has %llu entries", (unsigned long long)tokens->arr_n);
    const bn_gguf_kv *scores = array_key(g, "tokenizer.ggml.scores", 0, BN_GGUF_FLOAT32, tokens->arr_n, &rc, err);
    const bn_gguf_kv *types = rc ? NULL : array_key(g, "tokenizer.ggml.token_type", 1, 0, tokens->arr_n, &rc, err);
    const bn_gguf_kv *merges = rc ? NULL : array_key(g, "tokenizer.ggml.merges", 0, BN_GGUF_STRING, 0, &rc, err);
    if (!rc) rc = bn_tok_create(out, kind, (int)tokens->arr_n, err);
    if (rc) return rc;
    bitnet_tokenizer *t = *out;
    snprintf(t->source, sizeof t->source, "gguf");
    rc = set_tokens(t, g, tokens, scores, types, err);
    if (!rc) rc = bn_tok_index(t, err);
    if (!rc && kind == BN_TOK_BYTE_BPE) rc = set_merges(t, g, merges, err);
    if (!rc && kind == BN_TOK_BYTE_BPE) rc = set_pre(t, g, err);
    if (!rc && kind == BN_TOK_SPM) {
        snprintf(t->pre.name, sizeof t->pre.name, "none");
        t->add_space_prefix = bool_key(g, "tokenizer.ggml.add_space_prefix", 1);
        t->remove_extra_ws = bool_key(g, "tokenizer.ggml.remove_extra_whitespaces", 0);
        for (int b = 0; b < 256; b++) t->byte_fallback |= t->byte_token[b] >= 0;
    }
    if (!rc) {
        set_ids(t, g);
        rc = bn_tok_finish(t, err);
    }
    return rc;
}

bitnet_status bn_tokenizer_from_gguf(bitnet_tokenizer **out, const bn_gguf *g, bitnet_error *err) {
    if (!out || !g) return bn_fail(err, BITNET_E_INVALID_ARG, "bn_tokenizer_from_gguf: bad arguments");
    *out = NULL;
    bn_tok_kind kind = BN_TOK_BYTE_BPE;
    bitnet_status rc = model_kind(g, &kind, err);
    if (!rc) rc = build(out, g, kind, err);
    if (rc) {
        bitnet_tokenizer_free(*out);
        *out = NULL;
    }
    return rc;
}
