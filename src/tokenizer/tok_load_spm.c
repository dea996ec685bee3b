/* Two standalone vocabulary files:
 *
 * SentencePiece tokenizer.model: a protobuf ModelProto. Fields used (checked
 * against ../shared/data/tokenizers/llama2/tokenizer.model):
 *   ModelProto     1 pieces (repeated SentencePiece), 2 trainer_spec, 3 normalizer_spec
 *   SentencePiece  1 piece (string), 2 score (float), 3 type (enum, default NORMAL = 1)
 *   TrainerSpec    3 model_type (1 unigram [default], 2 BPE), 35 byte_fallback,
 *                  40 unk_id, 41 bos_id, 42 eos_id (int32; -1 = none)
 *   NormalizerSpec 1 name, 3 add_dummy_prefix, 4 remove_extra_whitespaces,
 *                  5 escape_whitespaces (all three default true)
 * Only BPE models with the "identity" normalizer are supported: other
 * normalizers need a precompiled character map (NFKC), which we do not apply.
 *
 * tiktoken (Llama 3's original tokenizer.model): one "base64 rank" line per
 * token; the Llama 3 special tokens follow at 128000 (../shared/data/README.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

/* -------------------------------------------------------------- protobuf -- */

typedef struct pb {
    const uint8_t *p, *end;
} pb;

typedef struct pb_field {
    uint32_t num, wire;
    uint64_t v;            /* varint / fixed value */
    const uint8_t *data;   /* length-delimited payload */
    size_t len;
} pb_field;

static int pb_varint(pb *r, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) return 0;
        uint8_t c = *r->p++;
        v |= (uint64_t)(c & 0x7F) << shift;
        if (c < 0x80) {
            *out = v;
            return 1;
        }
    }
    return 0;
}

/* Reads the next field; 0 at the end, -1 on malformed data. */
static int pb_next(pb *r, pb_field *f) {
    if (r->p >= r->end) return 0;
    uint64_t key;
    if (!pb_varint(r, &key)) return -1;
    f->num = (uint32_t)(key >> 3);
    f->wire = (uint32_t)(key & 7);
    f->data = NULL;
    f->len = 0;
    switch (f->wire) {
    case 0: return pb_varint(r, &f->v) ? 1 : -1;
    case 1:
        if (r->end - r->p < 8) return -1;
        memcpy(&f->v, r->p, 8);
        r->p += 8;
        return 1;
    case 5: {
        if (r->end - r->p < 4) return -1;
        uint32_t v;
        memcpy(&v, r->p, 4);
        f->v = v;
        r->p += 4;
        return 1;
    }
    case 2:
        if (!pb_varint(r, &f->v) || f->v > (uint64_t)(r->end - r->p)) return -1;
        f->data = r->p;
        f->len = (size_t)f->v;
        r->p += f->len;
        return 1;
    default: return -1; /* groups are not used by sentencepiece */
    }
}

static float pb_float(uint64_t v) {
    uint32_t u = (uint32_t)v;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

typedef struct spm_spec {
    int64_t model_type, unk, bos, eos;
    int byte_fallback, add_dummy_prefix, remove_extra_ws, escape_ws;
    const uint8_t *norm_name;
    size_t norm_name_len;
} spm_spec;

static int read_trainer_spec(const uint8_t *d, size_t n, spm_spec *s) {
    pb r = {d, d + n};
    pb_field f;
    int k;
    while ((k = pb_next(&r, &f)) > 0) {
        if (f.wire != 0) continue;
        if (f.num == 3) s->model_type = (int64_t)f.v;
        else if (f.num == 35) s->byte_fallback = f.v != 0;
        else if (f.num == 40) s->unk = (int32_t)(uint32_t)f.v; /* int32 -1 is sent as a 64-bit varint */
        else if (f.num == 41) s->bos = (int32_t)(uint32_t)f.v;
        else if (f.num == 42) s->eos = (int32_t)(uint32_t)f.v;
    }
    return k == 0;
}

static int read_normalizer_spec(const uint8_t *d, size_t n, spm_spec *s) {
    pb r = {d, d + n};
    pb_field f;
    int k;
    while ((k = pb_next(&r, &f)) > 0) {
        if (f.num == 1 && f.wire == 2) s->norm_name = f.data, s->norm_name_len = f.len;
        else if (f.wire == 0 && f.num == 3) s->add_dummy_prefix = f.v != 0;
        else if (f.wire == 0 && f.num == 4) s->remove_extra_ws = f.v != 0;
        else if (f.wire == 0 && f.num == 5) s->escape_ws = f.v != 0;
    }
    return k == 0;
}

/* Reads one SentencePiece message into token id. */
static bitnet_status read_piece(bitnet_tokenizer *t, int32_t id, const uint8_t *d, size_t n, bitnet_error *err) {
    pb r = {d, d + n};
    pb_field f;
    int k;
    const uint8_t *text = NULL;
    size_t len = 0;
    float score = 0.0f;
    int type = BN_TT_NORMAL;
    while ((k = pb_next(&r, &f)) > 0) {
        if (f.num == 1 && f.wire == 2) text = f.data, len = f.len;
        else if (f.num == 2 && f.wire == 5) score = pb_float(f.v);
        else if (f.num == 3 && f.wire == 0) type = (int)f.v;
    }
    if (k < 0 || !text) return bn_fail(err, BITNET_E_FORMAT, "piece %d is malformed", (int)id);
    return bn_tok_set(t, id, (const char *)text, len, type, score, err);
}

/* First pass: count pieces and read the specs. */
static bitnet_status scan_model(const uint8_t *data, size_t size, int *n_pieces, spm_spec *s, bitnet_error *err) {
    pb r = {data, data + size};
    pb_field f;
    int k, n = 0;
    while ((k = pb_next(&r, &f)) > 0) {
        if (f.wire != 2) continue;
        if (f.num == 1) n++;
        else if (f.num == 2 && !read_trainer_spec(f.data, f.len, s)) k = -1;
        else if (f.num == 3 && !read_normalizer_spec(f.data, f.len, s)) k = -1;
        if (k < 0) break;
    }
    if (k < 0) return bn_fail(err, BITNET_E_FORMAT, "not a SentencePiece model (malformed protobuf)");
    if (n == 0) return bn_fail(err, BITNET_E_FORMAT, "not a SentencePiece model (no pieces)");
    *n_pieces = n;
    return BITNET_OK;
}

static bitnet_status check_spec(const spm_spec *s, bitnet_error *err) {
    if (s->model_type != 2)
        return bn_fail(err, BITNET_E_UNSUPPORTED, "SentencePiece model type %d is not supported (only BPE = 2)",
                       (int)s->model_type);
    int identity = s->norm_name_len == 8 && !memcmp(s->norm_name, "identity", 8);
    if (s->norm_name && !identity)
        return bn_fail(err, BITNET_E_UNSUPPORTED, "SentencePiece normalizer '%.*s' is not supported (only identity)",
                       (int)s->norm_name_len, (const char *)s->norm_name);
    return BITNET_OK;
}

bitnet_status bn_tok_load_spm_model(bitnet_tokenizer **out, const uint8_t *data, size_t size, bitnet_error *err) {
    *out = NULL;
    spm_spec s = {1, 0, 1, 2, 0, 1, 1, 1, NULL, 0};
    int n = 0;
    bitnet_status rc = scan_model(data, size, &n, &s, err);
    if (!rc) rc = check_spec(&s, err);
    if (!rc) rc = bn_tok_create(out, BN_TOK_SPM, n, err);
    if (rc) return rc;
    bitnet_tokenizer *t = *out;
    pb r = {data, data + size};
    pb_field f;
    int32_t id = 0;
    while (!rc && pb_next(&r, &f) > 0)
        if (f.num == 1 && f.wire == 2) rc = read_piece(t, id++, f.data, f.len, err);
    if (!rc) rc = bn_tok_index(t, err);
    if (!rc) {
        snprintf(t->source, sizeof t->source, "tokenizer.model");
        snprintf(t->pre.name, sizeof t->pre.name, "none");
        t->byte_fallback = s.byte_fallback;
        t->add_space_prefix = s.add_dummy_prefix;
        t->remove_extra_ws = s.remove_extra_ws;
        t->escape_spaces = s.escape_ws;
        t->unk = (int32_t)s.unk;
        t->bos = (int32_t)s.bos;
        t->eos = (int32_t)s.eos;
        t->add_bos = 1;
        rc = bn_tok_finish(t, err);
    }
    if (rc) {
        bitnet_tokenizer_free(t);
        *out = NULL;
    }
    return rc;
}

/* -------------------------------------------------------------- tiktoken -- */

static int b64_value(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Decodes base64 s[0..n) into out (n * 3 / 4 bytes at most); -1 if invalid. */
static int b64_decode(const char *s, size_t n, uint8_t *out) {
    int len = 0, bits = 0;
    uint32_t acc = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '=') break;
        int v = b64_value(s[i]);
        if (v < 0) return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[len++] = (uint8_t)(acc >> bits);
        }
    }
    return len;
}

/* 1 when data looks like a tiktoken file: its first line is "base64 digits". */
int bn_tok_is_tiktoken(const char *data, size_t size) {
    size_t i = 0;
    while (i < size && b64_value(data[i]) >= 0) i++;
    while (i < size && data[i] == '=') i++;
    if (i == 0 || i >= size || data[i] != ' ') return 0;
    size_t j = i + 1;
    while (j < size && data[j] >= '0' && data[j] <= '9') j++;
    return j > i + 1 && (j == size || data[j] == '\n' || data[j] == '\r');
}

/* The name of Llama 3 special token 128000 + i (Llama 3.0 layout). */
static void llama3_special_name(int i, char *out, size_t cap) {
    static const char *fixed[] = {"<|begin_of_text|>", "<|end_of_text|>", NULL, NULL, NULL, NULL,
                                  "<|start_header_id|>", "<|end_header_id|>", NULL, "<|eot_id|>"};
    if (i < 10 && fixed[i]) snprintf(out, cap, "%s", fixed[i]);
    else snprintf(out, cap, "<|reserved_special_token_%d|>", i < 6 ? i - 2 : i == 8 ? 4 : i - 5);
}

/* Byte-level text of raw bytes: each byte through the GPT-2 map. */
static size_t map_bytes(const uint8_t *b, size_t n, char *out) {
    size_t len = 0;
    for (size_t i = 0; i < n; i++) len += (size_t)bn_utf8_encode(bn_bytemap_cp(b[i]), out + len);
    return len;
}

static bitnet_status tiktoken_tokens(bitnet_tokenizer *t, const char *data, size_t size, int n_ranks,
                                     bitnet_error *err) {
    uint8_t raw[1024];
    char text[2048];
    for (size_t i = 0; i < size;) {
        size_t e = i;
        while (e < size && data[e] != '\n') e++;
        const char *sp = memchr(data + i, ' ', e - i);
        if (sp && (size_t)(sp - (data + i)) * 3 / 4 <= sizeof raw) {
            int n = b64_decode(data + i, (size_t)(sp - (data + i)), raw);
            long rank = strtol(sp + 1, NULL, 10);
            if (n <= 0 || rank < 0 || rank >= n_ranks) return bn_fail(err, BITNET_E_FORMAT, "bad tiktoken line");
            bitnet_status rc = bn_tok_set(t, (int32_t)rank, text, map_bytes(raw, (size_t)n, text), BN_TT_NORMAL, 0, err);
            if (rc) return rc;
        } else if (e > i && !(e == i + 1 && data[i] == '\r')) {
            return bn_fail(err, BITNET_E_FORMAT, "bad tiktoken line");
        }
        i = e + 1;
    }
    return BITNET_OK;
}

bitnet_status bn_tok_load_tiktoken(bitnet_tokenizer **out, const char *data, size_t size, bitnet_error *err) {
    *out = NULL;
    int n_ranks = 0;
    for (size_t i = 0; i < size; i++) n_ranks += data[i] == '\n';
    if (size && data[size - 1] != '\n') n_ranks++;
    int llama3 = n_ranks == 128000; /* the only tiktoken vocabulary whose specials we know */
    bitnet_status rc = bn_tok_create(out, BN_TOK_BYTE_BPE, n_ranks + (llama3 ? 256 : 0), err);
    if (rc) return rc;
    bitnet_tokenizer *t = *out;
    rc = tiktoken_tokens(t, data, size, n_ranks, err);
    for (int i = 0; llama3 && i < 256 && !rc; i++) {
        char name[64];
        llama3_special_name(i, name, sizeof name);
        rc = bn_tok_set(t, 128000 + i, name, strlen(name), BN_TT_CONTROL, 0, err);
    }
    if (!rc) rc = bn_tok_index(t, err);
    if (!rc) rc = bn_tok_merges_from_ranks(t, err);
    if (!rc) rc = bn_pretok_set_named(&t->pre, "llama3", err);
    if (!rc) {
        snprintf(t->source, sizeof t->source, "tiktoken");
        t->ignore_merges = 1; /* tiktoken looks a whole piece up before merging */
        t->bos = llama3 ? 128000 : -1;
        t->eos = llama3 ? 128001 : -1;
        t->add_bos = llama3;
        rc = bn_tok_finish(t, err);
    }
    if (rc) {
        bitnet_tokenizer_free(t);
        *out = NULL;
    }
    return rc;
}
