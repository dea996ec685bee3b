/* Pre-tokenizers: regexes that cut text into the pieces byte-level BPE merges
 * within. Facts: FORMATS.md §4.1 (the Llama 3 regex, GPT-2's, llama.cpp's
 * "default" set, the tokenizer.ggml.pre names).
 *
 * The regexes come from Hugging Face tokenizers, which runs them with
 * Oniguruma; PCRE2 with UTF + UCP has the same Unicode classes and the same
 * (?i:...) and lookahead semantics with one difference we patch: the set \s
 * stands for (see ONIG_SPACE). Checked against HF tokenizers on random text
 * from many scripts; differences remain only for characters that the two
 * libraries' Unicode versions classify differently.
 *
 * Invalid UTF-8 is allowed (PCRE2_MATCH_INVALID_UTF): no pattern can match an
 * invalid byte, so such bytes end up in the stretches between matches, which
 * are kept as pieces of their own (HF's "Isolated" split behaviour). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

static const char LLAMA3_RE[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|"
                                " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char GPT2_RE[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
/* llama.cpp's fallback when tokenizer.ggml.pre names nothing it knows. */
static const char *const DEFAULT_RE[] = {"[\\p{P}\\$\\+<=>\\^~\\|]+", GPT2_RE, "\\p{N}+", "[0-9][0-9][0-9]"};

int bn_pretok_is_llama3(const char *name) {
    static const char *const names[] = {"llama3", "llama-bpe", "llama-v3", "falcon3"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(name, names[i])) return 1;
    return 0;
}

/* Oniguruma's \s for Unicode text: TAB..CR, NEL and the Z categories. PCRE2's
 * \s differs (it also takes U+180E MONGOLIAN VOWEL SEPARATOR), so every \s
 * and \S is spelled out with this set. */
#define ONIG_SPACE "\\t\\n\\x0b\\f\\r\\x{85}\\p{Z}"

/* Rewrites \s and \S to ONIG_SPACE (inside a class, only \s: a negated set
 * cannot be spelled inside another class, and no known pattern needs it).
 * out must hold 24 * strlen(in) + 1 bytes. */
static void patch_whitespace(const char *in, char *out) {
    int in_class = 0;
    char *o = out;
    for (const char *p = in; *p; p++) {
        if (*p == '\\' && p[1]) {
            if (p[1] == 's') {
                o += strlen(strcpy(o, in_class ? ONIG_SPACE : "[" ONIG_SPACE "]"));
            } else if (p[1] == 'S' && !in_class) {
                o += strlen(strcpy(o, "[^" ONIG_SPACE "]"));
            } else {
                *o++ = p[0];
                *o++ = p[1];
            }
            p++;
            continue;
        }
        if (!in_class && *p == '[') {
            in_class = 1;
            *o++ = *p;
            /* A ']' right after '[' or '[^' is a literal member. */
            if (p[1] == '^') *o++ = *++p;
            if (p[1] == ']') *o++ = *++p;
            continue;
        }
        if (in_class && *p == '[' && p[1] == ':') { /* POSIX class [:alpha:] */
            const char *end = strstr(p + 2, ":]");
            if (end) {
                memcpy(o, p, (size_t)(end + 2 - p));
                o += end + 2 - p;
                p = end + 1;
                continue;
            }
        }
        if (in_class && *p == ']') in_class = 0;
        *o++ = *p;
    }
    *o = '\0';
}

bitnet_status bn_pretok_add(bn_tok_pretok *p, const char *pattern, int literal, bitnet_error *err) {
    if (p->n >= BN_TOK_MAX_REGEX) return bn_fail(err, BITNET_E_UNSUPPORTED, "more than %d pre-tokenizer regexes",
                                                 BN_TOK_MAX_REGEX);
    char *patched = malloc(strlen(pattern) * 24 + 1);
    if (!patched) return bn_fail(err, BITNET_E_NOMEM, "out of memory");
    if (literal) strcpy(patched, pattern);
    else patch_whitespace(pattern, patched);
    int ecode;
    PCRE2_SIZE eoff;
    uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | (literal ? PCRE2_LITERAL : 0);
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)patched, PCRE2_ZERO_TERMINATED, opts, &ecode, &eoff, NULL);
    free(patched);
    if (!code) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ecode, msg, sizeof msg);
        return bn_fail(err, BITNET_E_UNSUPPORTED, "pre-tokenizer regex /%.80s/: %s at offset %zu", pattern,
                       (const char *)msg, (size_t)eoff);
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE); /* falls back to the interpreter when JIT is unavailable */
    p->code[p->n++] = code;
    /* Name what we recognise (for `bitnet info`); a sequence is just "tokenizer.json". */
    const char *known = !strcmp(pattern, LLAMA3_RE) ? "llama3" : !strcmp(pattern, GPT2_RE) ? "gpt2" : "";
    snprintf(p->name, sizeof p->name, "%s", p->n == 1 ? known : "");
    return BITNET_OK;
}

bitnet_status bn_pretok_set_named(bn_tok_pretok *p, const char *name, bitnet_error *err) {
    bitnet_status rc = BITNET_OK;
    if (bn_pretok_is_llama3(name)) {
        rc = bn_pretok_add(p, LLAMA3_RE, 0, err);
        name = "llama3";
    } else if (!strcmp(name, "gpt2") || !strcmp(name, "gpt-2")) {
        rc = bn_pretok_add(p, GPT2_RE, 0, err);
        name = "gpt2";
    } else if (!strcmp(name, "default")) {
        for (size_t i = 0; i < sizeof DEFAULT_RE / sizeof DEFAULT_RE[0] && !rc; i++)
            rc = bn_pretok_add(p, DEFAULT_RE[i], 0, err);
    } else {
        return bn_fail(err, BITNET_E_UNSUPPORTED,
                       "pre-tokenizer '%s' is not supported (known: llama-bpe, llama3, llama-v3, falcon3, gpt2, "
                       "default)",
                       name);
    }
    snprintf(p->name, sizeof p->name, "%s", name);
    return rc;
}

void bn_pretok_free(bn_tok_pretok *p) {
    for (int i = 0; i < p->n; i++) pcre2_code_free((pcre2_code *)p->code[i]);
    p->n = 0;
}

typedef struct split_ctx {
    const bn_tok_pretok *p;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    bn_pretok_fn fn;
    void *user;
    bitnet_error *err;
} split_ctx;

/* Splits s[0..len) with regex `level`, passing every match and every stretch
 * between matches down to the next level (or to the callback after the last). */
static bitnet_status split_level(split_ctx *c, int level, const char *s, size_t len) {
    if (len == 0) return BITNET_OK;
    if (level == c->p->n) return c->fn(s, len, c->user);
    const pcre2_code *code = c->p->code[level];
    size_t pos = 0, from = 0;
    bitnet_status rc = BITNET_OK;
    while (from < len && !rc) {
        int m = pcre2_match(code, (PCRE2_SPTR)s, len, from, 0, c->md, c->mctx);
        if (m == PCRE2_ERROR_NOMATCH) break;
        if (m < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(m, msg, sizeof msg);
            return bn_fail(c->err, BITNET_E_INTERNAL, "pre-tokenizer regex failed: %s", (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) { /* an empty match cuts nothing: step over one character */
            from = ms + (size_t)bn_utf8_len((uint8_t)s[ms]);
            continue;
        }
        if (ms > pos) rc = split_level(c, level + 1, s + pos, ms - pos);
        if (!rc) rc = split_level(c, level + 1, s + ms, me - ms);
        pos = from = me;
    }
    if (!rc && pos < len) rc = split_level(c, level + 1, s + pos, len - pos);
    return rc;
}

bitnet_status bn_pretok_split(const bn_tok_pretok *p, const char *text, size_t len, bn_pretok_fn fn, void *user,
                              bitnet_error *err) {
    if (p->n == 0) return len ? fn(text, len, user) : BITNET_OK;
    split_ctx c = {p, pcre2_match_data_create(4, NULL), pcre2_match_context_create(NULL), fn, user, err};
    /* Long runs of spaces backtrack deeply in \s*[\r\n]+; give JIT room. */
    pcre2_jit_stack *stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
    bitnet_status rc;
    if (!c.md || !c.mctx || !stack) {
        rc = bn_fail(err, BITNET_E_NOMEM, "out of memory");
    } else {
        pcre2_jit_stack_assign(c.mctx, NULL, stack);
        rc = split_level(&c, 0, text, len);
    }
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(c.mctx);
    pcre2_match_data_free(c.md);
    return rc;
}
