/* Vocabularies for the tokenizer.ggml.* keys: read from a Hugging Face
 * tokenizer.json (+ config.json / tokenizer_config.json), copied from a GGUF
 * file, or synthesized. Key meanings: FORMATS.md §1.6 and §4. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert/convert_internal.h"
#include "util/error.h"
#include "util/mapped_file.h"

enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

static char *dupn(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static char *dup(const char *s) { return dupn(s, strlen(s)); }

void cv_vocab_free(cv_vocab *v) {
    if (!v) return;
    for (int i = 0; v->tokens && i < v->n_tokens; i++) free(v->tokens[i]);
    for (int i = 0; v->merges && i < v->n_merges; i++) free(v->merges[i]);
    free(v->tokens);
    free(v->scores);
    free(v->types);
    free(v->merges);
    free(v->chat_template);
    memset(v, 0, sizeof *v);
}

static void vocab_init(cv_vocab *v) {
    memset(v, 0, sizeof *v);
    v->bos = v->eos = v->eot = v->pad = v->unk = -1;
    v->add_bos = v->add_eos = -1;
}

/* Allocates n token slots (tokens NULL, scores 0, types normal). */
static int alloc_tokens(cv_vocab *v, int n) {
    v->n_tokens = n;
    v->tokens = calloc((size_t)n, sizeof *v->tokens);
    v->scores = calloc((size_t)n, sizeof *v->scores);
    v->types = malloc((size_t)n * sizeof *v->types);
    if (!v->tokens || !v->scores || !v->types) return 0;
    for (int i = 0; i < n; i++) v->types[i] = TT_NORMAL;
    return 1;
}

static int find_token(const cv_vocab *v, const char *text) {
    if (!text) return -1;
    for (int i = v->n_tokens - 1; i >= 0; i--) /* specials sit at the end */
        if (v->tokens[i] && !strcmp(v->tokens[i], text)) return i;
    return -1;
}

bitnet_status cv_vocab_write(const cv_vocab *v, bn_gguf_writer *w) {
    bn_gguf_writer_set_str(w, "tokenizer.ggml.model", v->model);
    if (v->pre[0]) bn_gguf_writer_set_str(w, "tokenizer.ggml.pre", v->pre);
    bn_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v->tokens, NULL, (uint64_t)v->n_tokens);
    bn_gguf_writer_set_arr(w, "tokenizer.ggml.scores", BN_GGUF_FLOAT32, v->scores, (uint64_t)v->n_tokens);
    bn_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", BN_GGUF_INT32, v->types, (uint64_t)v->n_tokens);
    if (v->n_merges)
        bn_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)v->merges, NULL,
                                   (uint64_t)v->n_merges);
    if (v->bos >= 0) bn_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)v->bos);
    if (v->eos >= 0) bn_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)v->eos);
    if (v->unk >= 0) bn_gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)v->unk);
    if (v->pad >= 0) bn_gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)v->pad);
    if (v->eot >= 0) bn_gguf_writer_set_u32(w, "tokenizer.ggml.eot_token_id", (uint32_t)v->eot);
    if (v->add_eos >= 0) bn_gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", v->add_eos);
    if (v->chat_template) bn_gguf_writer_set_str(w, "tokenizer.chat_template", v->chat_template);
    return bn_gguf_writer_status(w);
}

/* ------------------------------------------------------------ synthetic -- */

/* GPT-2's byte → printable code point map: printable Latin-1 bytes map to
 * themselves, the other 68 to U+0100 onwards in byte order. */
static unsigned byte_codepoint(unsigned b) {
    int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    if (printable) return b;
    unsigned n = 0;
    for (unsigned x = 0; x < b; x++) n += !((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE);
    return 256 + n;
}

static int utf8_put(char *out, unsigned cp) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

static const char *const llama3_specials[] = {
    "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>", "<|start_header_id|>", "<|end_header_id|>",
    "<|eom_id|>", "<|eot_id|>", "<|python_tag|>",
};

/* The 2B4T chat format (FORMATS.md §4.1). */
static const char synthetic_template[] =
    "{% for message in messages %}{% if loop.first %}{{ bos_token }}{% endif %}"
    "{% if message['role'] == 'system' %}{{ 'System: ' + message['content'] + '<|eot_id|>' }}"
    "{% elif message['role'] == 'user' %}{{ 'User: ' + message['content'] + '<|eot_id|>' }}"
    "{% else %}{{ 'Assistant: ' + message['content'] + '<|eot_id|>' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}";

/* Fill token `id` = token `left` + byte token `right`, with its merge. */
static int add_merged(cv_vocab *v, int id, int left, int right) {
    size_t ll = strlen(v->tokens[left]), rl = strlen(v->tokens[right]);
    char *t = malloc(ll + rl + 1), *m = malloc(ll + rl + 2);
    if (!t || !m) { free(t); free(m); return 0; }
    memcpy(t, v->tokens[left], ll);
    memcpy(t + ll, v->tokens[right], rl + 1);
    memcpy(m, v->tokens[left], ll);
    m[ll] = ' ';
    memcpy(m + ll + 1, v->tokens[right], rl + 1);
    v->tokens[id] = t;
    v->merges[v->n_merges++] = m;
    return 1;
}

bitnet_status cv_vocab_synthetic(cv_vocab *v, int n_vocab, bitnet_error *err) {
    vocab_init(v);
    if (n_vocab < 320) return bn_fail(err, BITNET_E_INVALID_ARG, "a synthetic vocabulary needs at least 320 tokens");
    int n_special = n_vocab >= 4096 ? 256 : 16, n_fill = n_vocab - n_special;
    if (!alloc_tokens(v, n_vocab) || !(v->merges = malloc((size_t)n_fill * sizeof *v->merges))) goto oom;
    for (unsigned b = 0; b < 256; b++) {
        char s[4] = {0};
        utf8_put(s, byte_codepoint(b));
        if (!(v->tokens[b] = dup(s))) goto oom;
    }
    /* Fill tokens grow one byte at a time: level-2 tokens are byte pairs,
     * each later token extends an earlier one; every merge joins two
     * existing tokens, so the merge list is a valid BPE. */
    int id = 256;
    for (int left = 0; id < n_fill; left++)
        for (int b = 0; b < 256 && id < n_fill; b++, id++)
            if (!add_merged(v, id, left, b)) goto oom;
    for (int i = 0; i < n_special; i++) {
        char s[48];
        int ns = (int)(sizeof llama3_specials / sizeof llama3_specials[0]);
        if (i < ns) snprintf(s, sizeof s, "%s", llama3_specials[i]);
        else snprintf(s, sizeof s, "<|reserved_special_token_%d|>", i - ns + 3);
        if (!(v->tokens[n_fill + i] = dup(s))) goto oom;
        v->types[n_fill + i] = TT_CONTROL;
    }
    snprintf(v->model, sizeof v->model, "gpt2");
    snprintf(v->pre, sizeof v->pre, "llama-bpe");
    v->bos = n_fill;
    v->eos = n_fill + 1;
    v->pad = n_fill + 1;
    v->eot = n_fill + 9;
    v->add_bos = 1;
    if (!(v->chat_template = dup(synthetic_template))) goto oom;
    return BITNET_OK;
oom:
    cv_vocab_free(v);
    return bn_fail(err, BITNET_E_NOMEM, "out of memory building a synthetic vocabulary");
}

/* -------------------------------------------------------- tokenizer.json -- */

static const cJSON *item(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

static cJSON *read_json(const char *path, int required, bitnet_error *err, int *failed) {
    bn_mapped_file f;
    bitnet_error e;
    *failed = 0;
    if (bn_mapped_file_open(&f, path, 0, &e)) {
        if (required) {
            *failed = 1;
            bn_fail(err, BITNET_E_IO, "%s", e.message);
        }
        return NULL;
    }
    cJSON *j = cJSON_ParseWithLength((const char *)f.data, f.size);
    bn_mapped_file_close(&f);
    if (!j) {
        *failed = 1;
        bn_fail(err, BITNET_E_FORMAT, "%s: invalid JSON", path);
    }
    return j;
}

/* A special-token entry of tokenizer_config.json: "text" or {"content": "text"}. */
static const char *token_text(const cJSON *t) {
    if (cJSON_IsString(t)) return t->valuestring;
    const cJSON *c = cJSON_IsObject(t) ? item(t, "content") : NULL;
    return cJSON_IsString(c) ? c->valuestring : NULL;
}

/* config.json's "x_token_id": an int or a list (first element). */
static int config_id(const cJSON *cfg, const char *key) {
    const cJSON *v = item(cfg, key);
    if (cJSON_IsArray(v)) v = cJSON_GetArrayItem(v, 0);
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 1e9 ? (int)v->valuedouble : -1;
}

/* Does any string inside `j` contain `needle`? (post_processor templates) */
static int json_mentions(const cJSON *j, const char *needle) {
    if (!j || !needle) return 0;
    if (cJSON_IsString(j) && strstr(j->valuestring, needle)) return 1;
    if (j->string && strstr(j->string, needle)) return 1;
    for (const cJSON *c = j->child; c; c = c->next)
        if (json_mentions(c, needle)) return 1;
    return 0;
}

static int json_has_type(const cJSON *j, const char *type) {
    if (!j) return 0;
    const cJSON *t = item(j, "type");
    if (cJSON_IsString(t) && !strcmp(t->valuestring, type)) return 1;
    for (const cJSON *c = j->child; c; c = c->next)
        if ((cJSON_IsObject(c) || cJSON_IsArray(c)) && json_has_type(c, type)) return 1;
    return 0;
}

/* The Llama-3 split regex: its letter-run and 1-3-digit clauses identify it. */
static int has_llama3_regex(const cJSON *j) {
    if (!j) return 0;
    if (cJSON_IsString(j) && strstr(j->valuestring, "\\p{N}{1,3}") &&
        strstr(j->valuestring, "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+"))
        return 1;
    for (const cJSON *c = j->child; c; c = c->next)
        if (has_llama3_regex(c)) return 1;
    return 0;
}

static bitnet_status read_vocab_entries(cv_vocab *v, const cJSON *vocab, const cJSON *added, int n_vocab,
                                        bitnet_error *err) {
    int max_id = -1;
    for (const cJSON *e = vocab->child; e; e = e->next)
        if (cJSON_IsNumber(e) && e->valuedouble > max_id) max_id = (int)e->valuedouble;
    for (const cJSON *a = added ? added->child : NULL; a; a = a->next) {
        const cJSON *id = item(a, "id");
        if (cJSON_IsNumber(id) && id->valuedouble > max_id) max_id = (int)id->valuedouble;
    }
    if (max_id < 0 || max_id >= (1 << 22)) return bn_fail(err, BITNET_E_FORMAT, "tokenizer.json: bad token ids");
    if (n_vocab > 0 && max_id >= n_vocab)
        return bn_fail(err, BITNET_E_FORMAT, "tokenizer.json has token id %d but the model's vocabulary is %d", max_id,
                       n_vocab);
    int n = n_vocab > 0 ? n_vocab : max_id + 1;
    if (!alloc_tokens(v, n)) return bn_fail(err, BITNET_E_NOMEM, "out of memory");
    for (const cJSON *e = vocab->child; e; e = e->next) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || !e->string) continue;
        int id = (int)e->valuedouble;
        if (!v->tokens[id] && !(v->tokens[id] = dup(e->string))) return bn_fail(err, BITNET_E_NOMEM, "out of memory");
    }
    for (const cJSON *a = added ? added->child : NULL; a; a = a->next) {
        const cJSON *id = item(a, "id"), *content = item(a, "content"), *special = item(a, "special");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || !cJSON_IsString(content)) continue;
        int i = (int)id->valuedouble;
        free(v->tokens[i]);
        if (!(v->tokens[i] = dup(content->valuestring))) return bn_fail(err, BITNET_E_NOMEM, "out of memory");
        v->types[i] = cJSON_IsTrue(special) ? TT_CONTROL : TT_USER;
    }
    /* Ids no token uses (a padded embedding): unused placeholders, named as
     * llama.cpp's converter names them. */
    for (int i = 0; i < n; i++) {
        if (v->tokens[i]) continue;
        char s[32];
        snprintf(s, sizeof s, "[PAD%d]", i);
        if (!(v->tokens[i] = dup(s))) return bn_fail(err, BITNET_E_NOMEM, "out of memory");
        v->types[i] = TT_UNUSED;
    }
    return BITNET_OK;
}

/* Merges as "a b" strings (older files) or ["a", "b"] pairs (newer). */
static bitnet_status read_merges(cv_vocab *v, const cJSON *merges, bitnet_error *err) {
    int n = cJSON_GetArraySize(merges);
    if (!n) return BITNET_OK;
    if (!(v->merges = calloc((size_t)n, sizeof *v->merges))) return bn_fail(err, BITNET_E_NOMEM, "out of memory");
    for (const cJSON *m = merges->child; m; m = m->next) {
        char *s = NULL;
        if (cJSON_IsString(m)) {
            s = dup(m->valuestring);
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) &&
                   cJSON_IsString(m->child->next)) {
            size_t a = strlen(m->child->valuestring), b = strlen(m->child->next->valuestring);
            if ((s = malloc(a + b + 2))) {
                memcpy(s, m->child->valuestring, a);
                s[a] = ' ';
                memcpy(s + a + 1, m->child->next->valuestring, b + 1);
            }
        } else {
            return bn_fail(err, BITNET_E_FORMAT, "tokenizer.json: bad merge entry %d", v->n_merges);
        }
        if (!s) return bn_fail(err, BITNET_E_NOMEM, "out of memory");
        v->merges[v->n_merges++] = s;
    }
    return BITNET_OK;
}

static int is_byte_token(const char *s) {
    return strlen(s) == 6 && !strncmp(s, "<0x", 3) && s[5] == '>' && strchr("0123456789ABCDEFabcdef", s[3]) &&
           strchr("0123456789ABCDEFabcdef", s[4]);
}

static size_t utf8_chars(const char *s) {
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* SentencePiece-style vocabularies keep scores, not merges: a token made by
 * merge number r gets score -r (earlier merges win, as BPE ranks do);
 * pieces no merge makes get a score below all of them. */
static bitnet_status spm_scores(cv_vocab *v, const cJSON *vocab, bitnet_error *err) {
    for (int i = 0; i < v->n_tokens; i++) {
        if (is_byte_token(v->tokens[i]) && v->types[i] == TT_NORMAL) v->types[i] = TT_BYTE;
        if (v->types[i] == TT_NORMAL && utf8_chars(v->tokens[i]) > 1) v->scores[i] = -(float)v->n_merges - 1.0f;
    }
    for (int r = 0; r < v->n_merges; r++) {
        char *sp = strchr(v->merges[r], ' ');
        if (!sp) return bn_fail(err, BITNET_E_FORMAT, "tokenizer.json: merge %d has no space", r);
        size_t a = (size_t)(sp - v->merges[r]);
        char joined[512];
        if (strlen(v->merges[r]) >= sizeof joined) continue;
        memcpy(joined, v->merges[r], a);
        strcpy(joined + a, sp + 1);
        const cJSON *id = item(vocab, joined);
        if (cJSON_IsNumber(id) && id->valuedouble >= 0 && id->valuedouble < v->n_tokens)
            v->scores[(int)id->valuedouble] = -(float)r;
    }
    for (int i = 0; i < v->n_merges; i++) free(v->merges[i]);
    free(v->merges);
    v->merges = NULL;
    v->n_merges = 0;
    return BITNET_OK;
}

static bitnet_status read_tokenizer_json(cv_vocab *v, const cJSON *tj, int n_vocab, bitnet_error *err) {
    const cJSON *model = item(tj, "model");
    const cJSON *type = model ? item(model, "type") : NULL;
    if (!cJSON_IsObject(model) || (type && (!cJSON_IsString(type) || strcmp(type->valuestring, "BPE"))))
        return bn_fail(err, BITNET_E_UNSUPPORTED, "tokenizer.json: only BPE tokenizers are supported");
    const cJSON *vocab = item(model, "vocab"), *merges = item(model, "merges"), *added = item(tj, "added_tokens");
    if (!cJSON_IsObject(vocab)) return bn_fail(err, BITNET_E_FORMAT, "tokenizer.json: model.vocab is missing");
    if (merges && !cJSON_IsArray(merges)) return bn_fail(err, BITNET_E_FORMAT, "tokenizer.json: model.merges is not a list");
    if (added && !cJSON_IsArray(added)) added = NULL;
    bitnet_status rc = read_vocab_entries(v, vocab, added, n_vocab, err);
    if (!rc && merges) rc = read_merges(v, merges, err);
    if (rc) return rc;
    int byte_level = json_has_type(item(tj, "pre_tokenizer"), "ByteLevel") || json_has_type(item(tj, "decoder"), "ByteLevel");
    if (byte_level) {
        snprintf(v->model, sizeof v->model, "gpt2");
        /* Llama 3's regex → "llama-bpe"; a plain GPT-2 byte-level split → "gpt-2". */
        if (has_llama3_regex(item(tj, "pre_tokenizer"))) snprintf(v->pre, sizeof v->pre, "llama-bpe");
        else if (!json_has_type(item(tj, "pre_tokenizer"), "Split")) snprintf(v->pre, sizeof v->pre, "gpt-2");
        return BITNET_OK;
    }
    if (!cJSON_IsTrue(item(model, "byte_fallback")))
        return bn_fail(err, BITNET_E_UNSUPPORTED, "tokenizer.json: neither byte-level nor byte-fallback BPE");
    snprintf(v->model, sizeof v->model, "llama");
    const cJSON *unk = item(model, "unk_token");
    if ((v->unk = cJSON_IsString(unk) ? find_token(v, unk->valuestring) : -1) >= 0) v->types[v->unk] = TT_UNKNOWN;
    return spm_scores(v, vocab, err);
}

/* bos/eos/pad/eot ids, add_bos/add_eos and the chat template. config.json's
 * ids win (the official 2B4T file follows them), then tokenizer_config.json's
 * token strings. */
static bitnet_status read_side_files(cv_vocab *v, const cJSON *tj, const char *dir, bitnet_error *err) {
    cJSON *cfg = NULL, *tc = NULL;
    int failed = 0;
    char path[4096];
    if (dir) {
        snprintf(path, sizeof path, "%s/config.json", dir);
        cfg = read_json(path, 0, err, &failed);
        if (failed) return err->code;
        snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
        tc = read_json(path, 0, err, &failed);
        if (failed) { cJSON_Delete(cfg); return err->code; }
    }
    const char *bos_text = token_text(item(tc, "bos_token")), *eos_text = token_text(item(tc, "eos_token"));
    v->bos = config_id(cfg, "bos_token_id");
    v->eos = config_id(cfg, "eos_token_id");
    if (v->bos < 0 || v->bos >= v->n_tokens) v->bos = find_token(v, bos_text);
    if (v->eos < 0 || v->eos >= v->n_tokens) v->eos = find_token(v, eos_text);
    v->pad = find_token(v, token_text(item(tc, "pad_token")));
    if (v->pad < 0) v->pad = config_id(cfg, "pad_token_id");
    if (v->pad < 0 || v->pad >= v->n_tokens) v->pad = v->eos; /* as in the official 2B4T file */
    v->eot = find_token(v, "<|eot_id|>");
    const cJSON *ab = item(tc, "add_bos_token"), *ae = item(tc, "add_eos_token");
    if (cJSON_IsBool(ab)) v->add_bos = cJSON_IsTrue(ab);
    else if (v->bos >= 0) v->add_bos = json_mentions(item(tj, "post_processor"), v->tokens[v->bos]);
    if (cJSON_IsBool(ae)) v->add_eos = cJSON_IsTrue(ae);
    const cJSON *ct = item(tc, "chat_template");
    if (cJSON_IsArray(ct)) /* [{"name": "default", "template": "..."}, ...] */
        for (const cJSON *e = ct->child; e; e = e->next) {
            const cJSON *nm = item(e, "name");
            if (cJSON_IsString(nm) && !strcmp(nm->valuestring, "default")) ct = item(e, "template");
        }
    if (cJSON_IsString(ct)) v->chat_template = dup(ct->valuestring);
    cJSON_Delete(cfg);
    cJSON_Delete(tc);
    if (!v->chat_template && dir) {
        bn_mapped_file f;
        bitnet_error e;
        snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
        if (bn_mapped_file_open(&f, path, 0, &e) == BITNET_OK) {
            v->chat_template = dupn((const char *)f.data, f.size);
            bn_mapped_file_close(&f);
        }
    }
    return BITNET_OK;
}

bitnet_status cv_vocab_from_hf(cv_vocab *v, const char *tokenizer_json, const char *dir, int n_vocab,
                               bitnet_error *err) {
    vocab_init(v);
    int failed = 0;
    cJSON *tj = read_json(tokenizer_json, 1, err, &failed);
    if (!tj) return err ? err->code : BITNET_E_IO;
    bitnet_status rc = read_tokenizer_json(v, tj, n_vocab, err);
    if (!rc) rc = read_side_files(v, tj, dir, err);
    cJSON_Delete(tj);
    if (rc) {
        bn_err_prefix(err, "%s", tokenizer_json);
        cv_vocab_free(v);
    }
    return rc;
}

/* ------------------------------------------------------------- from GGUF -- */


/* Copies one KV unchanged (arrays as their encoded bytes, nested ones
 * included). Values are little-endian in the file, as on every host bitnet.c
 * builds for. */
static void copy_kv(const bn_gguf *g, const bn_gguf_kv *kv, const char *key, bn_gguf_writer *w) {
    if (kv->type == BN_GGUF_STRING) {
        bn_str s;
        if (bn_gguf_get_str(g, key, &s) == 1) bn_gguf_writer_set_strn(w, key, s.ptr, (size_t)s.len);
    } else if (kv->type == BN_GGUF_ARRAY) {
        bn_gguf_writer_set_arr_raw(w, key, kv->arr_type, kv->arr_n, kv->data, (size_t)bn_gguf_kv_value_bytes(g, kv));
    } else {
        bn_gguf_writer_set_scalar(w, key, (bn_gguf_vtype)kv->type, kv->data);
    }
}

/* Keys cv_write_arch_kvs writes itself, and alignment (ours is the default). */
static int managed_general(const char *key) {
    static const char *const keys[] = {"general.architecture", "general.name", "general.file_type",
                                       "general.quantization_version", "general.alignment"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!strcmp(key, keys[i])) return 1;
    return 0;
}

/* A byte-level vocabulary with Llama 3's special-token names: bitnet.c (like
 * ik_llama) tokenizes it with the Llama-3 regex when the key is missing, so
 * the key makes other engines do the same. */
static int looks_llama3(const bn_gguf *g) {
    bn_str model;
    if (bn_gguf_get_str(g, "tokenizer.ggml.model", &model) != 1 || !bn_str_eq(model, "gpt2")) return 0;
    const bn_gguf_kv *tokens = bn_gguf_find_kv(g, "tokenizer.ggml.tokens");
    if (!tokens || tokens->type != BN_GGUF_ARRAY || tokens->arr_type != BN_GGUF_STRING) return 0;
    for (uint64_t i = tokens->arr_n; i-- > 0;) /* the specials sit at the end */
        if (bn_str_eq(bn_gguf_arr_str(g, tokens, i), "<|begin_of_text|>")) return 1;
    return 0;
}

bitnet_status cv_copy_gguf_kvs(const bn_gguf *g, bn_gguf_writer *w, int general, int tokenizer, bitnet_error *err) {
    for (int64_t i = 0; i < bn_gguf_n_kv(g); i++) {
        const bn_gguf_kv *kv = bn_gguf_kv_at(g, i);
        char key[256];
        if (kv->key.len >= sizeof key) continue;
        memcpy(key, kv->key.ptr, kv->key.len);
        key[kv->key.len] = '\0';
        int is_general = !strncmp(key, "general.", 8) && !managed_general(key);
        int is_tok = !strncmp(key, "tokenizer.", 10) && strcmp(key, "tokenizer.ggml.add_bos_token");
        if ((general && is_general) || (tokenizer && is_tok)) copy_kv(g, kv, key, w);
    }
    if (tokenizer && !bn_gguf_find_kv(g, "tokenizer.ggml.pre") && looks_llama3(g))
        bn_gguf_writer_set_str(w, "tokenizer.ggml.pre", "llama-bpe");
    bitnet_status rc = bn_gguf_writer_status(w);
    if (rc) bn_fail(err, rc, "%s", bn_gguf_writer_error(w)->message);
    return rc;
}
