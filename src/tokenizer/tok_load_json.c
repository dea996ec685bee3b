/* Hugging Face tokenizer.json (BPE models) and the settings that live next to
 * it: tokenizer_config.json (bos/eos tokens, add_bos_token), config.json and
 * generation_config.json (eos ids). Facts: ../shared/data/README.md describes
 * the Llama 3 and Llama 2 files; FORMATS.md §4.
 *
 * Family: a BPE with byte_fallback, or with the SentencePiece space handling
 * (Prepend/Replace "▁" normalizer, Metaspace), is SentencePiece-style; other
 * BPEs are byte-level. Both keep HF's merge rule here: a pair merges only when
 * it is listed, lowest rank first. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

static const cJSON *get(const cJSON *o, const char *key) { return cJSON_GetObjectItemCaseSensitive(o, key); }

static const char *get_str(const cJSON *o, const char *key) {
    const cJSON *v = get(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int type_is(const cJSON *o, const char *type) {
    const char *t = get_str(o, "type");
    return t && !strcmp(t, type);
}

/* bool field, or def when absent */
static int get_bool(const cJSON *o, const char *key, int def) {
    const cJSON *v = get(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

#define SPACE_MARK "\xE2\x96\x81" /* U+2581, SentencePiece's visible space */

/* ------------------------------------------------------------ the family -- */

static int normalizer_is_spm(const cJSON *n) {
    if (!n || cJSON_IsNull(n)) return 0;
    if (type_is(n, "Sequence")) {
        const cJSON *e;
        cJSON_ArrayForEach(e, get(n, "normalizers")) if (normalizer_is_spm(e)) return 1;
        return 0;
    }
    const char *prepend = get_str(n, "prepend"), *content = get_str(n, "content");
    return (type_is(n, "Prepend") && prepend && !strcmp(prepend, SPACE_MARK)) ||
           (type_is(n, "Replace") && content && !strcmp(content, SPACE_MARK));
}

static int has_type(const cJSON *o, const char *list_key, const char *type) {
    if (!o || cJSON_IsNull(o)) return 0;
    if (type_is(o, type)) return 1;
    const cJSON *e;
    cJSON_ArrayForEach(e, get(o, list_key)) if (type_is(e, type)) return 1;
    return 0;
}

static bn_tok_kind detect_kind(const cJSON *root, const cJSON *model) {
    if (get_bool(model, "byte_fallback", 0)) return BN_TOK_SPM;
    if (normalizer_is_spm(get(root, "normalizer"))) return BN_TOK_SPM;
    if (has_type(get(root, "pre_tokenizer"), "pretokenizers", "Metaspace")) return BN_TOK_SPM;
    if (has_type(get(root, "decoder"), "decoders", "Metaspace")) return BN_TOK_SPM;
    return BN_TOK_BYTE_BPE;
}

/* ------------------------------------------------------------ vocabulary -- */

static int vocab_size(const cJSON *vocab, const cJSON *added) {
    double max_id = -1;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) if (cJSON_IsNumber(e) && e->valuedouble > max_id) max_id = e->valuedouble;
    cJSON_ArrayForEach(e, added) {
        const cJSON *id = get(e, "id");
        if (cJSON_IsNumber(id) && id->valuedouble > max_id) max_id = id->valuedouble;
    }
    return max_id >= (1 << 24) ? -1 : (int)max_id + 1;
}

static bitnet_status set_vocab(bitnet_tokenizer *t, const cJSON *vocab, const cJSON *added, const char *unk,
                               bitnet_error *err) {
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0)
            return bn_fail(err, BITNET_E_FORMAT, "model.vocab['%s'] is not a token id", e->string);
        const char *s = e->string;
        size_t len = strlen(s);
        int type = BN_TT_NORMAL;
        if (t->kind == BN_TOK_SPM && len == 6 && !strncmp(s, "<0x", 3) && s[5] == '>') type = BN_TT_BYTE;
        if (unk && !strcmp(s, unk)) type = BN_TT_UNKNOWN;
        bitnet_status rc = bn_tok_set(t, (int32_t)e->valuedouble, s, len, type, 0.0f, err);
        if (rc) return rc;
    }
    cJSON_ArrayForEach(e, added) {
        const cJSON *id = get(e, "id");
        const char *content = get_str(e, "content");
        if (!cJSON_IsNumber(id) || !content) return bn_fail(err, BITNET_E_FORMAT, "added_tokens entry without id/content");
        int type = get_bool(e, "special", 0) ? BN_TT_CONTROL : BN_TT_USER_DEFINED;
        if (unk && !strcmp(content, unk)) type = BN_TT_UNKNOWN;
        bitnet_status rc = bn_tok_set(t, (int32_t)id->valuedouble, content, strlen(content), type, 0.0f, err);
        if (rc) return rc;
    }
    if (unk) t->unk = bn_tok_find_text(t, unk, strlen(unk));
    return BITNET_OK;
}

/* Merges as "a b" strings (older files) or ["a", "b"] pairs (newer ones). */
static bitnet_status set_merges(bitnet_tokenizer *t, const cJSON *merges, bitnet_error *err) {
    int32_t rank = 0;
    const cJSON *e;
    bitnet_status rc0 = bn_tok_reserve_merges(t, (uint64_t)cJSON_GetArraySize(merges), err);
    if (rc0) return rc0;
    cJSON_ArrayForEach(e, merges) {
        const char *a, *b;
        size_t alen, blen;
        if (cJSON_IsString(e)) {
            const char *sp = strchr(e->valuestring, ' ');
            if (!sp) return bn_fail(err, BITNET_E_FORMAT, "merge %d ('%.40s') has no space", (int)rank, e->valuestring);
            a = e->valuestring;
            alen = (size_t)(sp - a);
            b = sp + 1;
            blen = strlen(b);
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
                   cJSON_IsString(e->child->next)) {
            a = e->child->valuestring;
            b = e->child->next->valuestring;
            alen = strlen(a);
            blen = strlen(b);
        } else {
            return bn_fail(err, BITNET_E_FORMAT, "merge %d is neither \"a b\" nor [a, b]", (int)rank);
        }
        bitnet_status rc = bn_tok_add_merge(t, a, alen, b, blen, rank++, err);
        if (rc) return rc;
    }
    return BITNET_OK;
}

/* --------------------------------------------------------- pre-tokenizer -- */

static bitnet_status add_pretokenizer(bitnet_tokenizer *t, const cJSON *p, bitnet_error *err) {
    if (!p || cJSON_IsNull(p)) return BITNET_OK;
    const char *type = get_str(p, "type");
    if (!type) return bn_fail(err, BITNET_E_FORMAT, "pre_tokenizer without a type");
    if (!strcmp(type, "Sequence")) {
        const cJSON *e;
        cJSON_ArrayForEach(e, get(p, "pretokenizers")) {
            bitnet_status rc = add_pretokenizer(t, e, err);
            if (rc) return rc;
        }
        return BITNET_OK;
    }
    if (!strcmp(type, "ByteLevel")) {
        t->pre.add_prefix_space = get_bool(p, "add_prefix_space", 0);
        return get_bool(p, "use_regex", 1) ? bn_pretok_set_named(&t->pre, "gpt2", err) : BITNET_OK;
    }
    if (!strcmp(type, "Split")) {
        const char *behavior = get_str(p, "behavior");
        if ((behavior && strcmp(behavior, "Isolated")) || get_bool(p, "invert", 0))
            return bn_fail(err, BITNET_E_UNSUPPORTED, "pre_tokenizer Split with behavior '%s'%s is not supported",
                           behavior ? behavior : "?", get_bool(p, "invert", 0) ? " (inverted)" : "");
        const cJSON *pat = get(p, "pattern");
        const char *re = get_str(pat, "Regex"), *lit = get_str(pat, "String");
        if (!re && !lit) return bn_fail(err, BITNET_E_FORMAT, "pre_tokenizer Split without a pattern");
        return bn_pretok_add(&t->pre, re ? re : lit, re == NULL, err);
    }
    if (!strcmp(type, "Digits"))
        return bn_pretok_add(&t->pre, get_bool(p, "individual_digits", 0) ? "\\p{N}" : "\\p{N}+", 0, err);
    if (!strcmp(type, "Metaspace")) { /* SentencePiece spaces; split into words is not modelled */
        const char *scheme = get_str(p, "prepend_scheme");
        t->add_space_prefix = scheme ? strcmp(scheme, "never") != 0 : get_bool(p, "add_prefix_space", 1);
        t->escape_spaces = 1;
        return BITNET_OK;
    }
    return bn_fail(err, BITNET_E_UNSUPPORTED, "pre_tokenizer type '%s' is not supported", type);
}

static void read_spm_normalizer(bitnet_tokenizer *t, const cJSON *n) {
    if (!n || cJSON_IsNull(n)) return;
    if (type_is(n, "Sequence")) {
        const cJSON *e;
        cJSON_ArrayForEach(e, get(n, "normalizers")) read_spm_normalizer(t, e);
        return;
    }
    const char *prepend = get_str(n, "prepend"), *content = get_str(n, "content");
    const char *from = get_str(get(n, "pattern"), "String");
    if (type_is(n, "Prepend") && prepend && !strcmp(prepend, SPACE_MARK)) t->add_space_prefix = 1;
    if (type_is(n, "Replace") && content && from && !strcmp(content, SPACE_MARK) && !strcmp(from, " "))
        t->escape_spaces = 1;
}

/* ------------------------------------------------------------- bos / eos -- */

/* A token given as "text" or {"content": "text"}; -1 when absent or unknown. */
static int32_t token_ref(const bitnet_tokenizer *t, const cJSON *v) {
    if (cJSON_IsObject(v)) v = get(v, "content");
    if (!cJSON_IsString(v)) return -1;
    return bn_tok_find_text(t, v->valuestring, strlen(v->valuestring));
}

/* The first SpecialToken of the post-processor's single-sequence template. */
static int32_t template_bos(const bitnet_tokenizer *t, const cJSON *pp) {
    if (!pp || cJSON_IsNull(pp)) return -1;
    if (type_is(pp, "Sequence")) {
        const cJSON *e;
        cJSON_ArrayForEach(e, get(pp, "processors")) {
            int32_t id = template_bos(t, e);
            if (id >= 0) return id;
        }
        return -1;
    }
    if (!type_is(pp, "TemplateProcessing")) return -1;
    const cJSON *single = get(pp, "single");
    const cJSON *first = cJSON_IsArray(single) ? single->child : NULL;
    const cJSON *st = first ? get(first, "SpecialToken") : NULL;
    const char *name = st ? get_str(st, "id") : NULL;
    return name ? bn_tok_find_text(t, name, strlen(name)) : -1;
}

/* config.json / generation_config.json: eos_token_id may be a list; the first
 * is EOS (unless the tokenizer config named one), all end generation. */
static void read_model_config(bitnet_tokenizer *t, const char *text) {
    if (!text) return;
    cJSON *c = cJSON_Parse(text);
    if (!c) return;
    const cJSON *bos = get(c, "bos_token_id"), *eos = get(c, "eos_token_id"), *e;
    if (t->bos < 0 && cJSON_IsNumber(bos)) t->bos = (int32_t)bos->valuedouble;
    if (cJSON_IsNumber(eos)) {
        if (t->eos < 0) t->eos = (int32_t)eos->valuedouble;
        bn_tok_add_eog(t, (int32_t)eos->valuedouble);
    }
    const cJSON *list = cJSON_IsArray(eos) ? eos : NULL;
    cJSON_ArrayForEach(e, list) {
        if (!cJSON_IsNumber(e)) continue;
        if (t->eos < 0) t->eos = (int32_t)e->valuedouble;
        bn_tok_add_eog(t, (int32_t)e->valuedouble);
    }
    cJSON_Delete(c);
}

static void read_tokenizer_config(bitnet_tokenizer *t, const char *text, const cJSON *post_processor) {
    int32_t tmpl = template_bos(t, post_processor);
    t->bos = tmpl;
    t->add_bos = tmpl >= 0;
    cJSON *c = text ? cJSON_Parse(text) : NULL;
    if (!c) return;
    int32_t bos = token_ref(t, get(c, "bos_token")), eos = token_ref(t, get(c, "eos_token"));
    if (bos >= 0) t->bos = bos;
    if (eos >= 0) t->eos = eos;
    t->add_bos = get_bool(c, "add_bos_token", t->add_bos);
    cJSON_Delete(c);
}

/* ----------------------------------------------------------------- load -- */

static bitnet_status load_model(bitnet_tokenizer **out, const cJSON *root, bitnet_error *err) {
    const cJSON *model = get(root, "model"), *added = get(root, "added_tokens");
    const char *mtype = get_str(model, "type");
    if (!cJSON_IsObject(model)) return bn_fail(err, BITNET_E_FORMAT, "no \"model\" object");
    if (mtype && strcmp(mtype, "BPE"))
        return bn_fail(err, BITNET_E_UNSUPPORTED, "tokenizer model type '%s' is not supported (only BPE)", mtype);
    const cJSON *vocab = get(model, "vocab"), *merges = get(model, "merges");
    if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges))
        return bn_fail(err, BITNET_E_FORMAT, "model.vocab / model.merges missing");
    int n = vocab_size(vocab, added);
    if (n <= 0) return bn_fail(err, BITNET_E_FORMAT, "empty or oversized vocabulary");
    bn_tok_kind kind = detect_kind(root, model);
    bitnet_status rc = bn_tok_create(out, kind, n, err);
    if (rc) return rc;
    bitnet_tokenizer *t = *out;
    t->merge_mode = BN_MERGE_PAIR_RANK;
    t->byte_fallback = get_bool(model, "byte_fallback", 0);
    t->ignore_merges = get_bool(model, "ignore_merges", 0);
    if (kind == BN_TOK_SPM) { /* spaces are set by the normalizer / Metaspace */
        t->add_space_prefix = 0;
        t->escape_spaces = 0;
        read_spm_normalizer(t, get(root, "normalizer"));
    }
    snprintf(t->source, sizeof t->source, "tokenizer.json");
    rc = set_vocab(t, vocab, added, get_str(model, "unk_token"), err);
    if (!rc) rc = bn_tok_index(t, err);
    if (!rc) rc = set_merges(t, merges, err);
    if (!rc) rc = add_pretokenizer(t, get(root, "pre_tokenizer"), err);
    if (!rc && t->pre.n && !t->pre.name[0]) snprintf(t->pre.name, sizeof t->pre.name, "tokenizer.json");
    if (!rc && !t->pre.n) snprintf(t->pre.name, sizeof t->pre.name, "none");
    return rc;
}

bitnet_status bn_tok_load_hf_json(bitnet_tokenizer **out, const char *json, size_t len, const char *config_json,
                                  const char *model_config_json, const char *gen_config_json, bitnet_error *err) {
    *out = NULL;
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return bn_fail(err, BITNET_E_FORMAT, "not valid JSON");
    bitnet_status rc = load_model(out, root, err);
    if (!rc) {
        bitnet_tokenizer *t = *out;
        read_tokenizer_config(t, config_json, get(root, "post_processor"));
        read_model_config(t, model_config_json);
        read_model_config(t, gen_config_json);
        rc = bn_tok_finish(t, err);
    }
    cJSON_Delete(root);
    if (rc) {
        bitnet_tokenizer_free(*out);
        *out = NULL;
    }
    return rc;
}
