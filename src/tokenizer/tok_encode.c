/* Text -> token ids (bitnet_tokenize) and the small public accessors.
 *
 * Byte-level vocabularies: the text is first cut at special tokens (the
 * leftmost, then longest match wins, as HF's added-token matcher does), each
 * stretch between them goes through the pre-tokenizer, and each pre-token
 * through BPE. SentencePiece vocabularies normalize and merge the whole text;
 * their user-defined tokens are matched inside the merge step. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

int bitnet_tokenizer_n_vocab(const bitnet_tokenizer *tok) { return tok ? tok->n_vocab : 0; }
int bitnet_tokenizer_bos(const bitnet_tokenizer *tok) { return tok ? tok->bos : -1; }
int bitnet_tokenizer_eos(const bitnet_tokenizer *tok) { return tok ? tok->eos : -1; }

int bitnet_tokenizer_is_eog(const bitnet_tokenizer *tok, int32_t token) {
    if (!tok) return 0;
    for (int i = 0; i < tok->n_eog; i++)
        if (tok->eog[i] == token) return 1;
    return 0;
}

int32_t bitnet_tokenizer_find(const bitnet_tokenizer *tok, const char *text) {
    if (!tok || !text) return -1;
    return bn_tok_find_text(tok, text, strlen(text));
}

typedef struct piece_ctx {
    const bitnet_tokenizer *t;
    bn_tok_work *w;
    bn_tok_ids *ids;
    bitnet_error *err;
} piece_ctx;

static bitnet_status on_pretoken(const char *piece, size_t len, void *user) {
    piece_ctx *c = user;
    return bn_bpe_encode_piece(c->t, c->w, piece, len, c->ids, c->err);
}

/* Byte-level encoding of text that holds no special token. */
static bitnet_status encode_plain(piece_ctx *c, const char *s, size_t len) {
    const bitnet_tokenizer *t = c->t;
    if (len == 0) return BITNET_OK;
    if (t->pre.add_prefix_space && s[0] != ' ') {
        /* HF ByteLevel(add_prefix_space): the segment is encoded as " " + text. */
        char *tmp = malloc(len + 1);
        if (!tmp) return bn_fail(c->err, BITNET_E_NOMEM, "out of memory");
        tmp[0] = ' ';
        memcpy(tmp + 1, s, len);
        bitnet_status rc = bn_pretok_split(&t->pre, tmp, len + 1, on_pretoken, c, c->err);
        free(tmp);
        return rc;
    }
    return bn_pretok_split(&t->pre, s, len, on_pretoken, c, c->err);
}

/* The longest special token starting at s, or -1. Control tokens only when
 * parse_special; user-defined ones always. */
static int32_t match_special(const bitnet_tokenizer *t, const char *s, size_t len, int parse_special, size_t *mlen) {
    uint8_t b = (uint8_t)s[0];
    for (int32_t i = t->special_first[b]; i < t->special_first[b + 1]; i++) {
        const bn_tok_token *k = &t->tokens[t->special[i]];
        if (!parse_special && k->type == BN_TT_CONTROL) continue;
        if (k->text_len <= len && memcmp(t->arena + k->text_off, s, k->text_len) == 0) {
            *mlen = k->text_len;
            return t->special[i];
        }
    }
    return -1;
}

static bitnet_status encode_byte_level(piece_ctx *c, const char *s, size_t len, int parse_special) {
    const bitnet_tokenizer *t = c->t;
    uint8_t first[256] = {0};
    for (int b = 0; b < 256; b++) first[b] = t->special_first[b] < t->special_first[b + 1];
    size_t seg = 0;
    for (size_t i = 0; i < len; i++) {
        if (!first[(uint8_t)s[i]]) continue;
        size_t mlen;
        int32_t id = match_special(t, s + i, len - i, parse_special, &mlen);
        if (id < 0) continue;
        bitnet_status rc = encode_plain(c, s + seg, i - seg);
        if (!rc) rc = bn_tok_ids_push(c->ids, id, c->err);
        if (rc) return rc;
        i += mlen - 1;
        seg = i + 1;
    }
    return encode_plain(c, s + seg, len - seg);
}

bitnet_status bitnet_tokenize(const bitnet_tokenizer *tok, const char *text, size_t len, int add_bos,
                              int parse_special, int32_t *out, int cap, int *n_out, bitnet_error *err) {
    if (n_out) *n_out = 0;
    if (!tok || (!text && len) || cap < 0 || (!out && cap > 0) || !n_out)
        return bn_fail(err, BITNET_E_INVALID_ARG, "bitnet_tokenize: bad arguments");
    bn_tok_ids ids = {0};
    bn_tok_work w = {0};
    piece_ctx c = {tok, &w, &ids, err};
    bitnet_status rc = BITNET_OK;
    if ((add_bos < 0 ? tok->add_bos : add_bos) && tok->bos >= 0) rc = bn_tok_ids_push(&ids, tok->bos, err);
    if (!rc && len) {
        if (tok->kind == BN_TOK_SPM) rc = bn_spm_encode(tok, &w, text, len, &ids, err);
        else rc = encode_byte_level(&c, text, len, parse_special);
    }
    bn_tok_work_free(&w);
    if (!rc && ids.n > INT32_MAX) rc = bn_fail(err, BITNET_E_INVALID_ARG, "text gives more than 2^31 tokens");
    if (!rc) {
        *n_out = (int)ids.n;
        if (ids.n && cap > 0) memcpy(out, ids.v, (size_t)(ids.n <= (size_t)cap ? ids.n : (size_t)cap) * sizeof *out);
        if (ids.n > (size_t)cap)
            rc = bn_fail(err, BITNET_E_INVALID_ARG, "%zu tokens do not fit in a buffer of %d", ids.n, cap);
    }
    free(ids.v);
    return rc;
}
