/* Chat (public API in bitnet.h, "chat"): the prompt formats, choosing one for
 * a model, and a multi-turn session that keeps the conversation in the KV
 * cache. Formats are described in ../shared/docs/FORMATS.md §4.1 (2B4T); the
 * Llama 3 and ChatML layouts are those of their published templates. Jinja
 * templates are not interpreted: a model's template only selects a format.
 *
 * Session invariants (bitnet_chat):
 *  1. The KV cache holds exactly the conversation rendered so far, except that
 *     the reply of the last turn is not closed yet (reply_open) and its last
 *     sampled token may not be evaluated yet (pending).
 *  2. The next turn therefore starts with [pending] + the format's end of an
 *     assistant turn, then the user's message and the generation prompt. An
 *     end-of-generation token that stopped the reply is never evaluated: the
 *     format's own end-of-turn text takes its place, so the cache reads as the
 *     template would have rendered the whole conversation. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "bitnet.h"
#include "model/model.h"
#include "util/error.h"

/* ---------------------------------------------------------------- formats -- */

typedef struct chat_style {
    const char *name;
    const char *bos;          /* text at the start of a conversation ("" = none) */
    const char *gen_prompt;   /* opens the assistant's turn */
    const char *end_reply;    /* closes an assistant turn the model wrote */
    int trim;                 /* 1: the template strips the content's whitespace */
} chat_style;

static const chat_style styles[] = {
    [BITNET_CHAT_BITNET] = {"bitnet", "<|begin_of_text|>", "Assistant: ", "<|eot_id|>", 0},
    [BITNET_CHAT_LLAMA3] = {"llama3", "<|begin_of_text|>", "<|start_header_id|>assistant<|end_header_id|>\n\n",
                            "<|eot_id|>", 1},
    [BITNET_CHAT_CHATML] = {"chatml", "", "<|im_start|>assistant\n", "<|im_end|>\n", 0},
};

static const chat_style *style_of(bitnet_chat_format f) {
    return f >= BITNET_CHAT_BITNET && f <= BITNET_CHAT_CHATML ? &styles[f] : NULL;
}

const char *bitnet_chat_format_name(bitnet_chat_format f) {
    const chat_style *s = style_of(f);
    return s ? s->name : f == BITNET_CHAT_AUTO ? "auto" : "unknown";
}

int bitnet_chat_format_from_name(const char *name) {
    if (!name) return -1;
    if (!strcmp(name, "auto")) return BITNET_CHAT_AUTO;
    if (!strcmp(name, "2b4t")) return BITNET_CHAT_BITNET;
    for (int f = BITNET_CHAT_BITNET; f <= BITNET_CHAT_CHATML; f++)
        if (!strcmp(name, styles[f].name)) return f;
    return -1;
}

/* A growable string; on allocation failure it stops growing and sets oom. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static void sb_content(sbuf *b, const char *s, int trim) {
    size_t n = strlen(s);
    if (trim) {
        while (n && isspace((unsigned char)*s)) s++, n--;
        while (n && isspace((unsigned char)s[n - 1])) n--;
    }
    sb_add(b, s, n);
}

/* One whole message in the format. */
static void render_message(sbuf *b, bitnet_chat_format f, const char *role, const char *content) {
    const chat_style *st = style_of(f);
    switch (f) {
    case BITNET_CHAT_BITNET: {
        /* 2B4T: "User: ...", the role's first letter capitalised. */
        char first[2] = {(char)toupper((unsigned char)role[0]), 0};
        sb_str(b, first);
        if (role[0]) sb_str(b, role + 1);
        sb_str(b, ": ");
        sb_content(b, content, st->trim);
        sb_str(b, "<|eot_id|>");
        break;
    }
    case BITNET_CHAT_LLAMA3:
        sb_str(b, "<|start_header_id|>");
        sb_str(b, role);
        sb_str(b, "<|end_header_id|>\n\n");
        sb_content(b, content, st->trim);
        sb_str(b, "<|eot_id|>");
        break;
    default: /* BITNET_CHAT_CHATML */
        sb_str(b, "<|im_start|>");
        sb_str(b, role);
        sb_str(b, "\n");
        sb_content(b, content, st->trim);
        sb_str(b, "<|im_end|>\n");
        break;
    }
}

int bitnet_chat_apply(bitnet_chat_format f, const bitnet_chat_message *msgs, int n_msgs, int add_generation_prompt,
                      char *buf, size_t cap) {
    const chat_style *st = style_of(f);
    if (!st || n_msgs < 0 || (n_msgs && !msgs) || (cap && !buf)) return -1;
    for (int i = 0; i < n_msgs; i++)
        if (!msgs[i].role || !msgs[i].content) return -1;
    sbuf b = {0};
    sb_str(&b, st->bos);
    for (int i = 0; i < n_msgs; i++) render_message(&b, f, msgs[i].role, msgs[i].content);
    if (add_generation_prompt) sb_str(&b, st->gen_prompt);
    int n = b.oom || b.len > (size_t)INT32_MAX ? -1 : (int)b.len;
    if (n >= 0 && cap) {
        size_t k = b.len < cap - 1 ? b.len : cap - 1;
        memcpy(buf, b.p, k);
        buf[k] = '\0';
    }
    free(b.p);
    return n;
}

/* ---------------------------------------------------------------- choosing -- */

const char *bitnet_model_chat_template(const bitnet_model *m) { return m ? m->chat_template : NULL; }

/* A format named by marker strings of a Jinja template, or AUTO. */
static bitnet_chat_format format_of_template(const char *t) {
    if (!t) return BITNET_CHAT_AUTO;
    if (strstr(t, "<|im_start|>")) return BITNET_CHAT_CHATML;
    if (strstr(t, "<|start_header_id|>")) return BITNET_CHAT_LLAMA3;
    /* The 2B4T template ('User: ' ... 'Assistant: '), and the converter's
     * "Human: ... BITNETAssistant: " one, which means the same family. */
    if ((strstr(t, "User: ") && strstr(t, "Assistant: ")) || strstr(t, "BITNETAssistant")) return BITNET_CHAT_BITNET;
    return BITNET_CHAT_AUTO;
}

bitnet_chat_format bitnet_chat_format_detect(const char *arch, const char *tmpl, const bitnet_tokenizer *tok) {
    /* The official 2B4T GGUF carries a wrong template: the architecture wins. */
    if (arch && (!strcmp(arch, "bitnet-b1.58") || !strcmp(arch, "bitnet-25"))) return BITNET_CHAT_BITNET;
    bitnet_chat_format f = format_of_template(tmpl);
    if (f != BITNET_CHAT_AUTO) return f;
    if (tok && bitnet_tokenizer_find(tok, "<|start_header_id|>") >= 0) return BITNET_CHAT_LLAMA3;
    if (tok && bitnet_tokenizer_find(tok, "<|im_start|>") >= 0) return BITNET_CHAT_CHATML;
    return BITNET_CHAT_BITNET;
}

bitnet_chat_format bitnet_model_chat_format(const bitnet_model *m) {
    if (!m) return BITNET_CHAT_BITNET;
    bitnet_model_info info;
    bitnet_model_get_info(m, &info);
    return bitnet_chat_format_detect(info.arch, bitnet_model_chat_template(m), bitnet_model_tokenizer(m));
}

/* ---------------------------------------------------------------- session -- */

struct bitnet_chat {
    const bitnet_tokenizer *tok;  /* the model's; borrowed */
    bitnet_context *ctx;          /* borrowed */
    bitnet_sampler *smp;          /* borrowed */
    bitnet_chat_format format;
    char *system;                 /* owned copy; NULL = no system message */
    int bos_in_vocab;             /* 1: the format's BOS text is a token, so the
                                     rendered text carries the BOS itself */
    int n_turns;                  /* turns since the last reset */
    int reply_open;               /* invariant 1 */
    int32_t pending;              /* invariant 1; -1 = none */
    int pick_on_device;           /* passed to bitnet_generate */
};

bitnet_status bitnet_chat_new(const bitnet_model *model, bitnet_context *ctx, bitnet_sampler *smp,
                              bitnet_chat_format format, const char *system, bitnet_chat **out, bitnet_error *err) {
    bn_err_clear(err);
    if (!model || !ctx || !smp || !out)
        return bn_fail(err, BITNET_E_INVALID_ARG, "bitnet_chat_new: model, context, sampler and out are required");
    *out = NULL;
    const bitnet_tokenizer *tok = bitnet_model_tokenizer(model);
    if (!tok) return bn_fail(err, BITNET_E_UNSUPPORTED, "the model has no tokenizer, so it cannot chat");
    if (format == BITNET_CHAT_AUTO) format = bitnet_model_chat_format(model);
    const chat_style *st = style_of(format);
    if (!st) return bn_fail(err, BITNET_E_INVALID_ARG, "unknown chat format %d", (int)format);
    bitnet_chat *c = calloc(1, sizeof *c);
    if (!c) return bn_fail(err, BITNET_E_NOMEM, "out of memory");
    if (system && !(c->system = strdup(system))) {
        free(c);
        return bn_fail(err, BITNET_E_NOMEM, "out of memory");
    }
    c->tok = tok;
    c->ctx = ctx;
    c->smp = smp;
    c->format = format;
    c->bos_in_vocab = st->bos[0] && bitnet_tokenizer_find(tok, st->bos) >= 0;
    bitnet_status rc = bitnet_chat_reset(c, err);
    if (rc) {
        bitnet_chat_free(c);
        return rc;
    }
    *out = c;
    return BITNET_OK;
}

void bitnet_chat_free(bitnet_chat *c) {
    if (!c) return;
    free(c->system);
    free(c);
}

bitnet_chat_format bitnet_chat_get_format(const bitnet_chat *c) { return c ? c->format : BITNET_CHAT_AUTO; }

void bitnet_chat_set_pick_on_device(bitnet_chat *c, int on) {
    if (c) c->pick_on_device = on != 0;
}

bitnet_status bitnet_chat_reset(bitnet_chat *c, bitnet_error *err) {
    bn_err_clear(err);
    if (!c) return bn_fail(err, BITNET_E_INVALID_ARG, "bitnet_chat_reset: no chat");
    c->n_turns = 0;
    c->reply_open = 0;
    c->pending = -1;
    bitnet_sampler_reset(c->smp);
    return bitnet_kv_truncate(c->ctx, 0, err);
}

/* The text of the next turn (invariant 2). */
static bitnet_status turn_text(const bitnet_chat *c, const char *user_text, sbuf *b, bitnet_error *err) {
    const chat_style *st = style_of(c->format);
    if (c->n_turns == 0) {
        if (c->bos_in_vocab) sb_str(b, st->bos);
        if (c->system) render_message(b, c->format, "system", c->system);
    } else if (c->reply_open) {
        sb_str(b, st->end_reply);
    }
    render_message(b, c->format, "user", user_text);
    sb_str(b, st->gen_prompt);
    return b->oom ? bn_fail(err, BITNET_E_NOMEM, "out of memory") : BITNET_OK;
}

/* [pending] + tokens of the turn's text, malloc'd. */
static bitnet_status turn_tokens(const bitnet_chat *c, const char *text, size_t len, int32_t **out, int *n,
                                 bitnet_error *err) {
    /* Without a BOS token in the text, the first turn lets the tokenizer add
     * its own BOS (if it has one); later turns never add one. */
    int add_bos = c->n_turns == 0 && !c->bos_in_vocab ? -1 : 0;
    int lead = c->pending >= 0, cap = (int)len + 8, got = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        int32_t *ids = malloc((size_t)(cap + lead) * sizeof *ids);
        if (!ids) return bn_fail(err, BITNET_E_NOMEM, "out of memory");
        if (lead) ids[0] = c->pending;
        bitnet_status rc = bitnet_tokenize(c->tok, text, len, add_bos, 1, ids + lead, cap, &got, err);
        if (rc == BITNET_OK) {
            *out = ids;
            *n = got + lead;
            return BITNET_OK;
        }
        free(ids);
        if (rc != BITNET_E_INVALID_ARG || got <= cap) return rc;
        cap = got;
    }
    return bn_fail(err, BITNET_E_INTERNAL, "tokenizer count changed between calls");
}

bitnet_status bitnet_chat_send(bitnet_chat *c, const char *user_text, int n_predict, bitnet_piece_fn on_piece,
                               void *user, bitnet_generate_stats *stats, bitnet_error *err) {
    bn_err_clear(err);
    if (stats) {
        memset(stats, 0, sizeof *stats);
        stats->last_token = -1;
    }
    if (!c || !user_text) return bn_fail(err, BITNET_E_INVALID_ARG, "bitnet_chat_send: chat and text are required");
    if (strlen(user_text) > (size_t)(1 << 28)) return bn_fail(err, BITNET_E_INVALID_ARG, "message too long");
    sbuf text = {0};
    int32_t *ids = NULL;
    int n = 0;
    bitnet_status rc = turn_text(c, user_text, &text, err);
    if (rc == BITNET_OK) rc = turn_tokens(c, text.p, text.len, &ids, &n, err);
    free(text.p);
    if (rc) return rc;
    int n_ctx = bitnet_context_n_ctx(c->ctx), used = bitnet_context_n_past(c->ctx);
    if (n > n_ctx - used) {
        free(ids);
        return bn_fail(err, BITNET_E_CONTEXT_FULL,
                       "this turn (%d tokens) does not fit in the context: %d of %d positions are free", n,
                       n_ctx - used, n_ctx);
    }
    bitnet_generate_params p;
    bitnet_generate_params_default(&p);
    p.n_predict = n_predict;
    p.on_piece = on_piece;
    p.user = user;
    p.detok_flags = BITNET_DETOK_STRIP_SPACE; /* a reply is a text of its own */
    /* Only replies enter the penalty window: the turn's template tokens
     * (<|eot_id|> above all) must not be penalised, or the model is pushed
     * away from ending its turn. */
    p.accept_prompt = 0;
    p.pick_on_device = c->pick_on_device;
    bitnet_generate_stats st;
    rc = bitnet_generate(c->ctx, c->tok, c->smp, ids, n, &p, &st, err);
    free(ids);
    if (st.n_prompt > 0) { /* the turn is in the cache: invariant 1 for the reply */
        c->n_turns++;
        c->reply_open = 1;
        c->pending = st.stop == BITNET_STOP_EOG ? -1 : st.last_token;
    }
    if (stats) *stats = st;
    return rc;
}
