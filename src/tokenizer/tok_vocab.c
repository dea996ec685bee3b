/* Building a tokenizer: the token table, its lookup maps (text -> id,
 * bytes -> id, (id, id) -> merge), the byte tokens, the special-token table and
 * the end-of-generation set. Loaders call, in order: bn_tok_create,
 * bn_tok_set (per token), bn_tok_index, bn_tok_add_merge (per merge, byte-level
 * and HF BPE), bn_tok_finish. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

/* ---------------------------------------------------------------- hashing -- */

static uint32_t hash_bytes(const char *s, size_t len) {
    uint32_t h = 2166136261u; /* FNV-1a: short keys, good enough spread */
    for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static uint32_t pow2_at_least(uint64_t n) {
    uint32_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

static void key_of(const bitnet_tokenizer *t, const bn_tok_strmap *m, int32_t id, const char **s, size_t *len) {
    const bn_tok_token *k = &t->tokens[id];
    *s = t->arena + (m->use_bytes ? k->bytes_off : k->text_off);
    *len = m->use_bytes ? k->bytes_len : k->text_len;
}

static int32_t strmap_find(const bitnet_tokenizer *t, const bn_tok_strmap *m, const char *s, size_t len) {
    if (!m->slot) return -1;
    uint32_t h = hash_bytes(s, len);
    for (uint32_t i = h & m->mask;; i = (i + 1) & m->mask) {
        bn_tok_strslot sl = m->slot[i];
        if (sl.id < 0) return -1;
        if (sl.hash != h) continue;
        const char *ks;
        size_t klen;
        key_of(t, m, sl.id, &ks, &klen);
        if (klen == len && memcmp(ks, s, len) == 0) return sl.id;
    }
}

/* Inserts id unless its key is already present (the first token wins). */
static void strmap_insert(const bitnet_tokenizer *t, bn_tok_strmap *m, int32_t id) {
    const char *s;
    size_t len;
    key_of(t, m, id, &s, &len);
    uint32_t h = hash_bytes(s, len);
    for (uint32_t i = h & m->mask;; i = (i + 1) & m->mask) {
        bn_tok_strslot *sl = &m->slot[i];
        if (sl->id < 0) {
            *sl = (bn_tok_strslot){h, id};
            return;
        }
        if (sl->hash != h) continue;
        const char *ks;
        size_t klen;
        key_of(t, m, sl->id, &ks, &klen);
        if (klen == len && memcmp(ks, s, len) == 0) return;
    }
}

static bitnet_status strmap_init(bn_tok_strmap *m, uint64_t n, int use_bytes, bitnet_error *err) {
    uint32_t cap = pow2_at_least(n * 2);
    m->slot = malloc((size_t)cap * sizeof *m->slot);
    if (!m->slot) return bn_fail(err, BITNET_E_NOMEM, "out of memory for the vocabulary index");
    for (uint32_t i = 0; i < cap; i++) m->slot[i] = (bn_tok_strslot){0, -1};
    m->mask = cap - 1;
    m->use_bytes = use_bytes;
    return BITNET_OK;
}

static void strmap_free(bn_tok_strmap *m) {
    free(m->slot);
    memset(m, 0, sizeof *m);
}

/* Rehashes into a table of at least `want` slots (doubling when 0). */
static bitnet_status pairmap_grow(bn_tok_pairmap *m, uint64_t want, bitnet_error *err) {
    uint32_t cap = m->slot ? (m->mask + 1) * 2 : 1u << 12;
    while (cap < want) cap *= 2;
    bn_tok_pairslot *slot = malloc((size_t)cap * sizeof *slot);
    if (!slot) return bn_fail(err, BITNET_E_NOMEM, "out of memory for the merge table");
    for (uint32_t i = 0; i < cap; i++) slot[i].key = UINT64_MAX;
    for (uint32_t i = 0; m->slot && i <= m->mask; i++) {
        if (m->slot[i].key == UINT64_MAX) continue;
        uint32_t j = (uint32_t)mix64(m->slot[i].key) & (cap - 1);
        while (slot[j].key != UINT64_MAX) j = (j + 1) & (cap - 1);
        slot[j] = m->slot[i];
    }
    free(m->slot);
    m->slot = slot;
    m->mask = cap - 1;
    return BITNET_OK;
}

static uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

bitnet_status bn_tok_reserve_merges(bitnet_tokenizer *t, uint64_t n, bitnet_error *err) {
    bn_tok_pairmap *m = &t->merges;
    if (n > (1u << 30)) return bn_fail(err, BITNET_E_FORMAT, "%llu merges are too many", (unsigned long long)n);
    return m->slot && (uint64_t)m->mask + 1 >= 2 * n ? BITNET_OK : pairmap_grow(m, 2 * n, err);
}

int bn_tok_pair(const bitnet_tokenizer *t, int32_t a, int32_t b, int32_t *rank, int32_t *result) {
    const bn_tok_pairmap *m = &t->merges;
    if (!m->slot) return 0;
    uint64_t k = pair_key(a, b);
    for (uint32_t i = (uint32_t)mix64(k) & m->mask;; i = (i + 1) & m->mask) {
        const bn_tok_pairslot *sl = &m->slot[i];
        if (sl->key == UINT64_MAX) return 0;
        if (sl->key == k) {
            *rank = sl->rank;
            *result = sl->result;
            return 1;
        }
    }
}

/* Adds (a, b) unless present; keeps the load factor at most 1/2. */
static bitnet_status pairmap_put(bn_tok_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t result, int *added,
                                 bitnet_error *err) {
    *added = 0;
    if (!m->slot || (uint64_t)(m->count + 1) * 2 > (uint64_t)m->mask + 1) {
        bitnet_status rc = pairmap_grow(m, 0, err);
        if (rc) return rc;
    }
    uint64_t k = pair_key(a, b);
    uint32_t i = (uint32_t)mix64(k) & m->mask;
    while (m->slot[i].key != UINT64_MAX) {
        if (m->slot[i].key == k) return BITNET_OK;
        i = (i + 1) & m->mask;
    }
    m->slot[i] = (bn_tok_pairslot){k, rank, result};
    m->count++;
    *added = 1;
    return BITNET_OK;
}

/* ------------------------------------------------------------------ build -- */

static bitnet_status arena_append(bitnet_tokenizer *t, const char *s, size_t len, uint32_t *off, bitnet_error *err) {
    if (t->arena_len + len + 1 > UINT32_MAX) return bn_fail(err, BITNET_E_FORMAT, "vocabulary text exceeds 4 GiB");
    if (t->arena_len + len + 1 > t->arena_cap) {
        size_t cap = t->arena_cap ? t->arena_cap : 1 << 16;
        while (cap < t->arena_len + len + 1) cap *= 2;
        char *a = realloc(t->arena, cap);
        if (!a) return bn_fail(err, BITNET_E_NOMEM, "out of memory for vocabulary text");
        t->arena = a;
        t->arena_cap = cap;
    }
    if (len) memcpy(t->arena + t->arena_len, s, len);
    t->arena[t->arena_len + len] = '\0'; /* texts are NUL-terminated for convenience */
    *off = (uint32_t)t->arena_len;
    t->arena_len += len + 1;
    return BITNET_OK;
}

bitnet_status bn_tok_create(bitnet_tokenizer **out, bn_tok_kind kind, int n_vocab, bitnet_error *err) {
    *out = NULL;
    if (n_vocab <= 0 || n_vocab > (1 << 24))
        return bn_fail(err, BITNET_E_FORMAT, "vocabulary size %d out of range (1..16777216)", n_vocab);
    bitnet_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return bn_fail(err, BITNET_E_NOMEM, "out of memory for the tokenizer");
    t->tokens = calloc((size_t)n_vocab, sizeof *t->tokens);
    if (!t->tokens) {
        free(t);
        return bn_fail(err, BITNET_E_NOMEM, "out of memory for %d tokens", n_vocab);
    }
    t->kind = kind;
    t->merge_mode = kind == BN_TOK_SPM ? BN_MERGE_CONCAT_SCORE : BN_MERGE_PAIR_RANK;
    t->n_vocab = n_vocab;
    for (int i = 0; i < n_vocab; i++) t->tokens[i].type = BN_TT_UNUSED;
    t->bos = t->eos = t->unk = t->eot = -1;
    t->add_bos = -1; /* decided in bn_tok_finish unless a loader sets it */
    t->escape_spaces = 1;
    t->add_space_prefix = kind == BN_TOK_SPM;
    uint32_t off;
    bitnet_status rc = arena_append(t, "", 0, &off, err); /* offset 0 = the empty string */
    if (rc) {
        bitnet_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return BITNET_OK;
}

bitnet_status bn_tok_set(bitnet_tokenizer *t, int32_t id, const char *text, size_t len, int type, float score,
                         bitnet_error *err) {
    if (id < 0 || id >= t->n_vocab) return bn_fail(err, BITNET_E_FORMAT, "token id %d out of range", (int)id);
    if (type < BN_TT_NORMAL || type > BN_TT_BYTE) type = BN_TT_NORMAL;
    bn_tok_token *k = &t->tokens[id];
    bitnet_status rc = arena_append(t, text, len, &k->text_off, err);
    if (rc) return rc;
    k->text_len = (uint32_t)len;
    k->type = (uint8_t)type;
    k->score = score;
    return BITNET_OK;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* The byte of a "<0xNN>" token text, or -1. */
static int byte_token_value(const char *s, size_t len) {
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int hi = hexval(s[3]), lo = hexval(s[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/* Byte-level text -> bytes through the inverse GPT-2 map; 0 when some
 * character is not in the map (the caller then keeps the text as is). */
static int unmap_bytes(const char *s, size_t len, const int16_t *inv, char *out, size_t *out_len) {
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        int l = bn_utf8_valid_len((const uint8_t *)s + i, len - i);
        if (l == 0) return 0;
        uint32_t cp = (uint8_t)s[i];
        if (l == 2) cp = ((cp & 0x1F) << 6) | ((uint8_t)s[i + 1] & 0x3F);
        else if (l > 2) return 0; /* the map only reaches U+0143 */
        if (cp >= 324 || inv[cp] < 0) return 0;
        out[n++] = (char)inv[cp];
        i += (size_t)l;
    }
    *out_len = n;
    return 1;
}

/* SentencePiece text -> bytes: U+2581 becomes a space. */
static size_t spm_bytes(const char *s, size_t len, char *out) {
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        if (i + 3 <= len && memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
            out[n++] = ' ';
            i += 3;
        } else {
            out[n++] = s[i++];
        }
    }
    return n;
}

static bitnet_status derive_bytes(bitnet_tokenizer *t, bitnet_error *err) {
    int16_t inv[324];
    for (int i = 0; i < 324; i++) inv[i] = -1;
    for (int b = 0; b < 256; b++) inv[bn_bytemap_cp((uint8_t)b)] = (int16_t)b;
    char *buf = NULL;
    size_t cap = 0;
    bitnet_status rc = BITNET_OK;
    for (int id = 0; id < t->n_vocab && !rc; id++) {
        bn_tok_token *k = &t->tokens[id];
        if (k->text_len + 1 > cap) {
            cap = (size_t)k->text_len * 2 + 16;
            char *nb = realloc(buf, cap);
            if (!nb) {
                rc = bn_fail(err, BITNET_E_NOMEM, "out of memory");
                break;
            }
            buf = nb;
        }
        const char *text = t->arena + k->text_off;
        size_t n = 0;
        int bv = byte_token_value(text, k->text_len);
        if (k->type == BN_TT_BYTE && bv >= 0) {
            buf[0] = (char)bv;
            n = 1;
        } else if (k->type == BN_TT_CONTROL || k->type == BN_TT_USER_DEFINED || k->type == BN_TT_UNKNOWN) {
            memcpy(buf, text, k->text_len); /* written as they read */
            n = k->text_len;
        } else if (t->kind == BN_TOK_BYTE_BPE) {
            if (!unmap_bytes(text, k->text_len, inv, buf, &n)) {
                memcpy(buf, text, k->text_len);
                n = k->text_len;
            }
        } else {
            n = spm_bytes(text, k->text_len, buf);
        }
        if (n == k->text_len && memcmp(buf, text, n) == 0) {
            k->bytes_off = k->text_off; /* share the text: most SPM tokens */
            k->bytes_len = k->text_len;
        } else {
            rc = arena_append(t, buf, n, &k->bytes_off, err);
            k->bytes_len = (uint32_t)n;
        }
    }
    free(buf);
    return rc;
}

static void find_byte_tokens(bitnet_tokenizer *t) {
    for (int b = 0; b < 256; b++) t->byte_token[b] = -1;
    if (t->kind == BN_TOK_BYTE_BPE) {
        for (int b = 0; b < 256; b++) {
            char s[4];
            int n = bn_utf8_encode(bn_bytemap_cp((uint8_t)b), s);
            t->byte_token[b] = bn_tok_find_text(t, s, (size_t)n);
        }
        return;
    }
    for (int id = 0; id < t->n_vocab; id++) {
        const bn_tok_token *k = &t->tokens[id];
        int bv = byte_token_value(t->arena + k->text_off, k->text_len);
        if (k->type == BN_TT_BYTE && bv >= 0 && t->byte_token[bv] < 0) t->byte_token[bv] = id;
    }
}

bitnet_status bn_tok_index(bitnet_tokenizer *t, bitnet_error *err) {
    bitnet_status rc = derive_bytes(t, err);
    if (!rc) rc = strmap_init(&t->by_text, (uint64_t)t->n_vocab, 0, err);
    if (!rc && t->kind == BN_TOK_BYTE_BPE) rc = strmap_init(&t->by_bytes, (uint64_t)t->n_vocab, 1, err);
    if (rc) return rc;
    for (int id = 0; id < t->n_vocab; id++) {
        const bn_tok_token *k = &t->tokens[id];
        if (k->text_len) strmap_insert(t, &t->by_text, id);
        if (t->by_bytes.slot && k->type == BN_TT_NORMAL && k->bytes_len) strmap_insert(t, &t->by_bytes, id);
    }
    find_byte_tokens(t);
    return BITNET_OK;
}

int32_t bn_tok_find_text(const bitnet_tokenizer *t, const char *s, size_t len) {
    return strmap_find(t, &t->by_text, s, len);
}

int32_t bn_tok_find_bytes(const bitnet_tokenizer *t, const char *s, size_t len) {
    return strmap_find(t, &t->by_bytes, s, len);
}

bitnet_status bn_tok_add_merge(bitnet_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen,
                               int32_t rank, bitnet_error *err) {
    int32_t ia = bn_tok_find_text(t, a, alen), ib = bn_tok_find_text(t, b, blen);
    if (ia < 0 || ib < 0) return BITNET_OK;
    char stack[256], *cat = alen + blen <= sizeof stack ? stack : malloc(alen + blen);
    if (!cat) return bn_fail(err, BITNET_E_NOMEM, "out of memory");
    memcpy(cat, a, alen);
    memcpy(cat + alen, b, blen);
    int32_t ir = bn_tok_find_text(t, cat, alen + blen);
    if (cat != stack) free(cat);
    if (ir < 0) return BITNET_OK;
    int added;
    bitnet_status rc = pairmap_put(&t->merges, ia, ib, rank, ir, &added, err);
    if (!rc && added) t->n_merges++;
    return rc;
}

bitnet_status bn_tok_merges_from_ranks(bitnet_tokenizer *t, bitnet_error *err) {
    for (int id = 0; id < t->n_vocab; id++) {
        const bn_tok_token *k = &t->tokens[id];
        if (k->type != BN_TT_NORMAL || k->bytes_len < 2) continue;
        const char *s = t->arena + k->bytes_off;
        for (uint32_t cut = 1; cut < k->bytes_len; cut++) {
            int32_t a = bn_tok_find_bytes(t, s, cut), b = bn_tok_find_bytes(t, s + cut, k->bytes_len - cut);
            if (a < 0 || b < 0) continue;
            int added;
            bitnet_status rc = pairmap_put(&t->merges, a, b, id, id, &added, err);
            if (rc) return rc;
            t->n_merges += added;
        }
    }
    return BITNET_OK;
}

/* ----------------------------------------------------------------- finish -- */

typedef struct special_rec {
    uint8_t first;
    uint32_t len;
    int32_t id;
} special_rec;

static int cmp_special(const void *pa, const void *pb) {
    const special_rec *a = pa, *b = pb;
    if (a->first != b->first) return a->first < b->first ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1; /* longest first */
    return a->id < b->id ? -1 : 1;
}

static int is_matchable(const bitnet_tokenizer *t, const bn_tok_token *k) {
    if (!k->text_len) return 0;
    return k->type == BN_TT_USER_DEFINED || (k->type == BN_TT_CONTROL && t->kind == BN_TOK_BYTE_BPE);
}

/* Tokens recognised in text: control and user-defined ones for byte-level
 * vocabularies; only user-defined ones for SentencePiece, which never matches
 * control symbols such as <s> in text. */
static bitnet_status build_special_table(bitnet_tokenizer *t, bitnet_error *err) {
    int n = 0;
    for (int id = 0; id < t->n_vocab; id++) n += is_matchable(t, &t->tokens[id]);
    special_rec *rec = malloc((size_t)(n ? n : 1) * sizeof *rec);
    t->special = malloc((size_t)(n ? n : 1) * sizeof *t->special);
    if (!rec || !t->special) {
        free(rec);
        return bn_fail(err, BITNET_E_NOMEM, "out of memory");
    }
    n = 0;
    for (int id = 0; id < t->n_vocab; id++) {
        const bn_tok_token *k = &t->tokens[id];
        if (is_matchable(t, k)) rec[n++] = (special_rec){(uint8_t)t->arena[k->text_off], k->text_len, id};
    }
    qsort(rec, (size_t)n, sizeof *rec, cmp_special);
    for (int i = 0; i < n; i++) t->special[i] = rec[i].id;
    t->n_special = n;
    int i = 0;
    for (int b = 0; b < 256; b++) {
        t->special_first[b] = i;
        while (i < n && rec[i].first == b) i++;
    }
    t->special_first[256] = n;
    free(rec);
    return BITNET_OK;
}

void bn_tok_add_eog(bitnet_tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->n_vocab) return;
    for (int i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id) return;
    if (t->n_eog < (int)(sizeof t->eog / sizeof t->eog[0])) t->eog[t->n_eog++] = id;
}

/* End of generation: EOS, EOT, and the end-of-turn control tokens of the
 * common chat formats (2B4T ends turns with <|eot_id|> while its EOS is
 * <|end_of_text|>: FORMATS.md §4.1). */
static void build_eog(bitnet_tokenizer *t) {
    static const char *names[] = {"<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|im_end|>",
                                  "<|endoftext|>", "<|end|>", "</s>", "<end_of_turn>"};
    bn_tok_add_eog(t, t->eos);
    bn_tok_add_eog(t, t->eot);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        int32_t id = bn_tok_find_text(t, names[i], strlen(names[i]));
        if (id >= 0 && (t->tokens[id].type == BN_TT_CONTROL || t->tokens[id].type == BN_TT_USER_DEFINED))
            bn_tok_add_eog(t, id);
    }
}

/* 1 when no token that merging can produce holds U+2581 after a character
 * other than U+2581 (true of vocabularies trained with split_by_whitespace). */
static int words_merge_apart(const bitnet_tokenizer *t) {
    for (int id = 0; id < t->n_vocab; id++) {
        const bn_tok_token *k = &t->tokens[id];
        if (k->type != BN_TT_NORMAL && k->type != BN_TT_USER_DEFINED && k->type != BN_TT_UNUSED) continue;
        const char *s = t->arena + k->text_off;
        for (uint32_t p = 1; p + 3 <= k->text_len; p++)
            if (!memcmp(s + p, "\xE2\x96\x81", 3) && (p < 3 || memcmp(s + p - 3, "\xE2\x96\x81", 3))) return 0;
    }
    return 1;
}

bitnet_status bn_tok_finish(bitnet_tokenizer *t, bitnet_error *err) {
    if (t->bos >= t->n_vocab) t->bos = -1;
    if (t->eos >= t->n_vocab) t->eos = -1;
    if (t->unk >= t->n_vocab) t->unk = -1;
    if (t->eot >= t->n_vocab) t->eot = -1;
    if (t->add_bos < 0) t->add_bos = t->kind == BN_TOK_SPM || bn_pretok_is_llama3(t->pre.name);
    if (t->kind == BN_TOK_SPM) {
        if (t->unk < 0)
            for (int id = 0; id < t->n_vocab && t->unk < 0; id++)
                if (t->tokens[id].type == BN_TT_UNKNOWN) t->unk = id;
        t->strip_decoded_space = t->add_space_prefix;
        t->spm_word_split = words_merge_apart(t);
    }
    if (t->eot >= 0) bn_tok_add_eog(t, t->eot);
    build_eog(t);
    return build_special_table(t, err);
}

void bitnet_tokenizer_free(bitnet_tokenizer *t) {
    if (!t) return;
    free(t->tokens);
    free(t->arena);
    strmap_free(&t->by_text);
    strmap_free(&t->by_bytes);
    free(t->merges.slot);
    free(t->special);
    bn_pretok_free(&t->pre);
    free(t);
}
