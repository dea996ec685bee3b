/* Token ids -> text: single tokens (bitnet_token_to_bytes), the streaming
 * detokenizer and whole sequences.
 *
 * Streaming invariant: after each feed, `held` holds at most 3 bytes, the
 * start of a UTF-8 character that the following bytes may still complete;
 * everything before it has been returned. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

/* The bytes token stands for when printed (empty for special tokens unless
 * `special`). */
static const char *token_out(const bitnet_tokenizer *t, int32_t id, int special, size_t *len) {
    const bn_tok_token *k = &t->tokens[id];
    int hidden = k->type == BN_TT_CONTROL || k->type == BN_TT_UNKNOWN || k->type == BN_TT_UNUSED;
    if (hidden && !special) {
        *len = 0;
        return "";
    }
    *len = k->bytes_len;
    return t->arena + k->bytes_off;
}

int bitnet_token_to_bytes(const bitnet_tokenizer *tok, int32_t token, int special, char *buf, int cap) {
    if (!tok || token < 0 || token >= tok->n_vocab) return -1;
    size_t len;
    const char *s = token_out(tok, token, special, &len);
    if (buf && cap > 0) memcpy(buf, s, len < (size_t)cap ? len : (size_t)cap);
    return (int)len;
}

struct bitnet_detok {
    const bitnet_tokenizer *tok;
    int flags;
    int started;  /* some text has been produced since the start / last flush */
    char held[4];
    int n_held;
    char *buf;    /* output of the last call */
    size_t cap;
};

bitnet_status bitnet_detok_new(const bitnet_tokenizer *tok, int flags, bitnet_detok **out, bitnet_error *err) {
    if (!out) return bn_fail(err, BITNET_E_INVALID_ARG, "bitnet_detok_new: out is NULL");
    *out = NULL;
    if (!tok) return bn_fail(err, BITNET_E_INVALID_ARG, "bitnet_detok_new: no tokenizer");
    bitnet_detok *d = calloc(1, sizeof *d);
    if (!d) return bn_fail(err, BITNET_E_NOMEM, "out of memory");
    d->tok = tok;
    d->flags = flags;
    *out = d;
    return BITNET_OK;
}

void bitnet_detok_free(bitnet_detok *d) {
    if (!d) return;
    free(d->buf);
    free(d);
}

/* How many trailing bytes of s[0..n) are an unfinished UTF-8 character that
 * later bytes could still complete (0..3). */
static int incomplete_tail(const char *s, size_t n) {
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        const uint8_t *p = (const uint8_t *)s + n - back;
        if ((p[0] & 0xC0) == 0x80) continue; /* continuation byte: the lead is further back */
        int need = bn_utf8_len(p[0]);
        if (need == 1 || (size_t)need <= back) return 0; /* ASCII, invalid, or already complete */
        /* Complete the prefix with the smallest bytes valid after this lead
         * and see whether that is a character: if not, no ending can make it one. */
        uint8_t tmp[4];
        memcpy(tmp, p, back);
        for (int i = (int)back; i < need; i++) tmp[i] = 0x80;
        if (back == 1 && p[0] == 0xE0) tmp[1] = 0xA0;
        if (back == 1 && p[0] == 0xF0) tmp[1] = 0x90;
        return bn_utf8_valid_len(tmp, (size_t)need) ? (int)back : 0;
    }
    return 0;
}

static int grow(bitnet_detok *d, size_t n) {
    if (n <= d->cap) return 1;
    size_t c = d->cap ? d->cap : 64;
    while (c < n) c *= 2;
    char *b = realloc(d->buf, c);
    if (!b) return 0;
    d->buf = b;
    d->cap = c;
    return 1;
}

bitnet_status bitnet_detok_feed(bitnet_detok *d, int32_t token, const char **text, size_t *len, bitnet_error *err) {
    if (!d || !text || !len) return bn_fail(err, BITNET_E_INVALID_ARG, "bitnet_detok_feed: bad arguments");
    *text = "";
    *len = 0;
    const bitnet_tokenizer *t = d->tok;
    if (token < 0 || token >= t->n_vocab)
        return bn_fail(err, BITNET_E_INVALID_ARG, "token %d outside the vocabulary (%d)", (int)token, t->n_vocab);
    size_t n;
    const char *s = token_out(t, token, d->flags & BITNET_DETOK_SPECIAL, &n);
    if (n == 0) return BITNET_OK;
    if (!d->started && (d->flags & BITNET_DETOK_STRIP_SPACE) && t->strip_decoded_space && s[0] == ' ') s++, n--;
    d->started = 1;
    if (n == 0) return BITNET_OK;
    if (!grow(d, (size_t)d->n_held + n)) return bn_fail(err, BITNET_E_NOMEM, "out of memory");
    memcpy(d->buf, d->held, (size_t)d->n_held);
    memcpy(d->buf + d->n_held, s, n);
    size_t total = (size_t)d->n_held + n;
    int keep = incomplete_tail(d->buf, total);
    memcpy(d->held, d->buf + total - (size_t)keep, (size_t)keep);
    d->n_held = keep;
    *text = d->buf;
    *len = total - (size_t)keep;
    return BITNET_OK;
}

void bitnet_detok_flush(bitnet_detok *d, const char **text, size_t *len) {
    *text = "";
    *len = 0;
    if (!d) return;
    if (d->n_held && grow(d, (size_t)d->n_held)) {
        memcpy(d->buf, d->held, (size_t)d->n_held);
        *text = d->buf;
        *len = (size_t)d->n_held;
    }
    d->n_held = 0;
    d->started = 0;
}

int64_t bitnet_detokenize(const bitnet_tokenizer *tok, const int32_t *tokens, int n_tokens, int flags, char *buf,
                          size_t cap) {
    if (!tok || n_tokens < 0 || (n_tokens > 0 && !tokens) || (cap > 0 && !buf)) return -1;
    int64_t total = 0;
    int started = 0;
    for (int i = 0; i < n_tokens; i++) {
        if (tokens[i] < 0 || tokens[i] >= tok->n_vocab) return -1;
        size_t n;
        const char *s = token_out(tok, tokens[i], flags & BITNET_DETOK_SPECIAL, &n);
        if (n == 0) continue;
        if (!started && (flags & BITNET_DETOK_STRIP_SPACE) && tok->strip_decoded_space && s[0] == ' ') s++, n--;
        started = 1;
        if ((uint64_t)total < cap) {
            size_t room = cap - 1 - (size_t)total;
            memcpy(buf + total, s, n < room ? n : room);
        }
        total += (int64_t)n;
    }
    if (cap > 0) buf[(uint64_t)total < cap ? (size_t)total : cap - 1] = '\0';
    return total;
}
