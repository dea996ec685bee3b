/* The merge loop shared by both tokenizer families, and the two encoders
 * built on it. Facts: FORMATS.md §4.1 (byte-level: lowest rank first, ties
 * leftmost) and §4.2 (SentencePiece: highest-scoring concatenation first,
 * ties leftmost; byte fallback).
 *
 * A piece starts as a doubly linked list of symbols (bytes, or UTF-8
 * characters for SentencePiece). Every adjacent pair that could merge is a
 * candidate in a binary heap ordered by (priority, position). Popping the best
 * candidate, checking that both symbols are still as they were when it was
 * pushed (lazy deletion), merging, and pushing the two new neighbour pairs
 * gives the same result as rescanning for the best pair after every merge,
 * in O(n log n) instead of O(n^2): a 1 MB run without spaces stays fast. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

typedef struct sym {
    int32_t start, len; /* bytes of the text; len 0 = merged away */
    int32_t id;         /* token, or -1 when the bytes are not a token */
    int32_t prev, next; /* neighbours, -1 at the ends */
    int32_t frozen;     /* a user-defined token matched in text: never merged */
} sym;

typedef struct cand {
    double prio;              /* lower merges first: rank, or -score */
    int32_t left, right;      /* symbol indices (left < right, so left orders ties) */
    int32_t left_len, right_len;
    int32_t result;           /* the merged token */
} cand;

typedef struct unused_rec { /* SPM: an UNUSED token was formed at [start, start+len) from a left part of left_len */
    int32_t start, len, left_len;
} unused_rec;

typedef struct merger {
    const bitnet_tokenizer *t;
    bn_tok_work *w;
    const char *s;
    sym *sy;
    int32_t n;
    cand *heap;
    size_t hn;
    size_t n_rec;
    bitnet_error *err;
} merger;

void bn_tok_work_free(bn_tok_work *w) {
    free(w->sym);
    free(w->heap);
    free(w->rec);
    free(w->text);
    memset(w, 0, sizeof *w);
}

bitnet_status bn_tok_ids_push(bn_tok_ids *ids, int32_t id, bitnet_error *err) {
    if (ids->n == ids->cap) {
        size_t cap = ids->cap ? ids->cap * 2 : 256;
        int32_t *v = realloc(ids->v, cap * sizeof *v);
        if (!v) return bn_fail(err, BITNET_E_NOMEM, "out of memory for token ids");
        ids->v = v;
        ids->cap = cap;
    }
    ids->v[ids->n++] = id;
    return BITNET_OK;
}

/* Grows *buf to hold n elements of size sz. */
static int reserve(void **buf, size_t *cap, size_t n, size_t sz) {
    if (n <= *cap) return 1;
    size_t c = *cap ? *cap : 64;
    while (c < n) c *= 2;
    void *b = realloc(*buf, c * sz);
    if (!b) return 0;
    *buf = b;
    *cap = c;
    return 1;
}

/* ------------------------------------------------------------------- heap -- */

static int cand_less(const cand *a, const cand *b) {
    if (a->prio != b->prio) return a->prio < b->prio;
    return a->left < b->left;
}

static int heap_push(merger *m, cand c) {
    if (!reserve(&m->w->heap, &m->w->heap_cap, m->hn + 1, sizeof(cand))) return 0;
    m->heap = m->w->heap;
    size_t i = m->hn++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!cand_less(&c, &m->heap[parent])) break;
        m->heap[i] = m->heap[parent];
        i = parent;
    }
    m->heap[i] = c;
    return 1;
}

static cand heap_pop(merger *m) {
    cand top = m->heap[0], last = m->heap[--m->hn];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, best = i;
        const cand *bc = &last;
        if (l < m->hn && cand_less(&m->heap[l], bc)) best = l, bc = &m->heap[l];
        if (r < m->hn && cand_less(&m->heap[r], bc)) best = r;
        if (best == i) break;
        m->heap[i] = m->heap[best];
        i = best;
    }
    if (m->hn) m->heap[i] = last;
    return top;
}

/* ------------------------------------------------------------------ merge -- */

/* Types a SentencePiece concatenation may become (control, unknown and byte
 * tokens are never produced by merging). */
static int spm_mergeable(const bitnet_tokenizer *t, int32_t id) {
    int type = t->tokens[id].type;
    return type == BN_TT_NORMAL || type == BN_TT_USER_DEFINED || type == BN_TT_UNUSED;
}

/* Pushes the pair (l, r) when it can merge. Returns 0 on allocation failure. */
static int try_pair(merger *m, int32_t l, int32_t r) {
    if (l < 0 || r < 0 || m->sy[l].frozen || m->sy[r].frozen) return 1;
    const bitnet_tokenizer *t = m->t;
    cand c = {0, l, r, m->sy[l].len, m->sy[r].len, -1};
    if (t->merge_mode == BN_MERGE_PAIR_RANK) {
        int32_t rank;
        if (m->sy[l].id < 0 || m->sy[r].id < 0 || !bn_tok_pair(t, m->sy[l].id, m->sy[r].id, &rank, &c.result))
            return 1;
        c.prio = rank;
    } else {
        /* Adjacent symbols are adjacent bytes: the concatenation is a substring. */
        c.result = bn_tok_find_text(t, m->s + m->sy[l].start, (size_t)(m->sy[l].len + m->sy[r].len));
        if (c.result < 0 || !spm_mergeable(t, c.result)) return 1;
        c.prio = -(double)t->tokens[c.result].score;
    }
    return heap_push(m, c);
}

static int record_unused(merger *m, int32_t start, int32_t len, int32_t left_len) {
    if (!reserve(&m->w->rec, &m->w->rec_cap, m->n_rec + 1, sizeof(unused_rec))) return 0;
    ((unused_rec *)m->w->rec)[m->n_rec++] = (unused_rec){start, len, left_len};
    return 1;
}

/* Merges until no candidate is left. */
static bitnet_status run_merges(merger *m) {
    sym *sy = m->sy;
    for (int32_t i = 0; i + 1 < m->n; i++)
        if (!try_pair(m, i, i + 1)) return bn_fail(m->err, BITNET_E_NOMEM, "out of memory while merging");
    while (m->hn) {
        cand c = heap_pop(m);
        sym *l = &sy[c.left], *r = &sy[c.right];
        if (l->len != c.left_len || r->len != c.right_len || l->next != c.right) continue; /* stale */
        if (m->t->tokens[c.result].type == BN_TT_UNUSED && !record_unused(m, l->start, l->len + r->len, l->len))
            return bn_fail(m->err, BITNET_E_NOMEM, "out of memory while merging");
        l->len += r->len;
        l->id = c.result;
        l->next = r->next;
        if (r->next >= 0) sy[r->next].prev = c.left;
        r->len = 0;
        if (!try_pair(m, l->prev, c.left) || !try_pair(m, c.left, l->next))
            return bn_fail(m->err, BITNET_E_NOMEM, "out of memory while merging");
    }
    return BITNET_OK;
}

static int add_sym(merger *m, int32_t start, int32_t len, int32_t id, int frozen) {
    if (!reserve(&m->w->sym, &m->w->sym_cap, (size_t)m->n + 1, sizeof(sym))) return 0;
    m->sy = m->w->sym;
    m->sy[m->n] = (sym){start, len, id, m->n - 1, -1, frozen};
    if (m->n > 0) m->sy[m->n - 1].next = m->n;
    m->n++;
    return 1;
}

/* -------------------------------------------------------------- byte-level -- */

bitnet_status bn_bpe_encode_piece(const bitnet_tokenizer *t, bn_tok_work *w, const char *s, size_t len,
                                  bn_tok_ids *out, bitnet_error *err) {
    if (len == 0) return BITNET_OK;
    if (len > INT32_MAX / 2) return bn_fail(err, BITNET_E_INVALID_ARG, "text piece too long (%zu bytes)", len);
    if (t->ignore_merges) { /* Llama 3: a piece that is a token is taken whole */
        int32_t id = bn_tok_find_bytes(t, s, len);
        if (id >= 0) return bn_tok_ids_push(out, id, err);
    }
    if (len == 1 && t->byte_token[(uint8_t)s[0]] >= 0) return bn_tok_ids_push(out, t->byte_token[(uint8_t)s[0]], err);
    merger m = {t, w, s, w->sym, 0, w->heap, 0, 0, err};
    for (size_t i = 0; i < len; i++)
        if (!add_sym(&m, (int32_t)i, 1, t->byte_token[(uint8_t)s[i]], 0))
            return bn_fail(err, BITNET_E_NOMEM, "out of memory while merging");
    bitnet_status rc = run_merges(&m);
    for (int32_t i = 0; i >= 0 && !rc; i = m.sy[i].next)
        if (m.sy[i].id >= 0) rc = bn_tok_ids_push(out, m.sy[i].id, err); /* a byte with no token is dropped */
    return rc;
}

/* ----------------------------------------------------------- SentencePiece -- */

#define SPACE_MARK "\xE2\x96\x81" /* U+2581 */

/* Normalizes as sentencepiece does for the "identity" rule set: optionally
 * collapse spaces, prepend U+2581 to non-empty text, turn spaces into U+2581. */
static bitnet_status spm_normalize(const bitnet_tokenizer *t, bn_tok_work *w, const char *s, size_t len,
                                   size_t *out_len, bitnet_error *err) {
    if (t->remove_extra_ws) { /* trim the ends; runs of spaces become one */
        while (len && s[0] == ' ') s++, len--;
        while (len && s[len - 1] == ' ') len--;
    }
    if (len > (SIZE_MAX - 3) / 3 || !reserve((void **)&w->text, &w->text_cap, len * 3 + 3, 1))
        return bn_fail(err, BITNET_E_NOMEM, "out of memory normalizing %zu bytes", len);
    char *o = w->text;
    size_t n = 0;
    if (len && t->add_space_prefix) memcpy(o, SPACE_MARK, 3), n = 3;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ' && t->remove_extra_ws && i > 0 && s[i - 1] == ' ') continue;
        if (s[i] == ' ' && t->escape_spaces) memcpy(o + n, SPACE_MARK, 3), n += 3;
        else o[n++] = s[i];
    }
    *out_len = n;
    return BITNET_OK;
}

/* The longest user-defined token that starts at s[0..len), or -1. */
static int32_t match_user_defined(const bitnet_tokenizer *t, const char *s, size_t len, size_t *mlen) {
    *mlen = 0;
    uint8_t b = (uint8_t)s[0];
    for (int32_t i = t->special_first[b]; i < t->special_first[b + 1]; i++) {
        const bn_tok_token *k = &t->tokens[t->special[i]];
        if (k->text_len <= len && memcmp(t->arena + k->text_off, s, k->text_len) == 0) {
            *mlen = k->text_len;
            return t->special[i];
        }
    }
    return -1;
}

/* Symbols for the normalized text s[from, to). */
static bitnet_status spm_symbols(merger *m, size_t from, size_t to) {
    const bitnet_tokenizer *t = m->t;
    for (size_t i = from; i < to;) {
        size_t n;
        int32_t id = match_user_defined(t, m->s + i, to - i, &n);
        int frozen = id >= 0;
        if (!frozen) {
            n = (size_t)bn_utf8_valid_len((const uint8_t *)m->s + i, to - i);
            if (n == 0) n = 1; /* an invalid byte: a symbol of its own, later a byte token */
            id = bn_tok_find_text(t, m->s + i, n);
            if (id >= 0 && !spm_mergeable(t, id)) id = -1;
        }
        if (!add_sym(m, (int32_t)i, (int32_t)n, id, frozen))
            return bn_fail(m->err, BITNET_E_NOMEM, "out of memory while merging");
        i += n;
    }
    return BITNET_OK;
}

/* End of the word that starts at s[from]: the next U+2581 that follows a
 * character other than U+2581 (see spm_word_split), or n. */
static size_t word_end(const char *s, size_t from, size_t n) {
    for (size_t p = from + 1; p + 3 <= n; p++)
        if (!memcmp(s + p, SPACE_MARK, 3) && (p < from + 3 || memcmp(s + p - 3, SPACE_MARK, 3))) return p;
    return n;
}

static bitnet_status emit_bytes(const bitnet_tokenizer *t, const char *s, size_t len, bn_tok_ids *out,
                                int *last_unk, bitnet_error *err) {
    bitnet_status rc = BITNET_OK;
    if (!t->byte_fallback) { /* one <unk> for a run of unknown pieces, as sentencepiece does */
        if (!*last_unk && t->unk >= 0) rc = bn_tok_ids_push(out, t->unk, err);
        *last_unk = 1;
        return rc;
    }
    for (size_t i = 0; i < len && !rc; i++) {
        int32_t id = t->byte_token[(uint8_t)s[i]];
        rc = bn_tok_ids_push(out, id >= 0 ? id : t->unk, err);
    }
    *last_unk = 0;
    return rc;
}

/* Emits the piece s[start, start+len) formed as token id (or -1). UNUSED
 * tokens are split back into the parts they were made from. */
static bitnet_status spm_emit(merger *m, int32_t start, int32_t len, int32_t id, bn_tok_ids *out, int *last_unk) {
    const bitnet_tokenizer *t = m->t;
    if (id >= 0 && t->tokens[id].type != BN_TT_UNUSED) {
        *last_unk = 0;
        return bn_tok_ids_push(out, id, m->err);
    }
    if (id >= 0) {
        const unused_rec *rec = m->w->rec;
        for (size_t i = m->n_rec; i-- > 0;) {
            if (rec[i].start != start || rec[i].len != len) continue;
            int32_t ll = rec[i].left_len, rl = len - ll;
            int32_t a = bn_tok_find_text(t, m->s + start, (size_t)ll), b = bn_tok_find_text(t, m->s + start + ll, (size_t)rl);
            bitnet_status rc = spm_emit(m, start, ll, a, out, last_unk);
            return rc ? rc : spm_emit(m, start + ll, rl, b, out, last_unk);
        }
    }
    return emit_bytes(t, m->s + start, (size_t)len, out, last_unk, m->err);
}

bitnet_status bn_spm_encode(const bitnet_tokenizer *t, bn_tok_work *w, const char *s, size_t len, bn_tok_ids *out,
                            bitnet_error *err) {
    size_t n = 0;
    bitnet_status rc = spm_normalize(t, w, s, len, &n, err);
    if (rc || n == 0) return rc;
    if (n > INT32_MAX / 2) return bn_fail(err, BITNET_E_INVALID_ARG, "text too long (%zu bytes)", len);
    int last_unk = 0;
    /* Word by word when merges cannot cross words: the same result with a
     * small heap instead of one the size of the text. */
    for (size_t from = 0; from < n && !rc;) {
        size_t to = t->spm_word_split ? word_end(w->text, from, n) : n;
        merger m = {t, w, w->text, w->sym, 0, w->heap, 0, 0, err};
        rc = spm_symbols(&m, from, to);
        if (!rc) rc = run_merges(&m);
        for (int32_t i = 0; i >= 0 && !rc; i = m.sy[i].next)
            rc = spm_emit(&m, m.sy[i].start, m.sy[i].len, m.sy[i].id, out, &last_unk);
        from = to;
    }
    return rc;
}
