/* Text generation (public API in bitnet.h, "generation"), written against the
 * public API only: bitnet_eval / bitnet_get_logits (or, for a greedy sampler
 * with pick_on_device, bitnet_eval_batch_greedy), the sampler, the tokenizer
 * and its streaming detokenizer.
 *
 * Invariants of the token loop:
 *  1. On entry to each step the context's last logits are those of the last
 *     token in the KV cache (with pick_on_device: r->next is their argmax).
 *  2. Every sampled token is accepted into the sampler's history before the
 *     next sample.
 *  3. The run ends on a sampled token that is not evaluated (stats.last_token):
 *     evaluating it would be wasted work for a caller that stops here, and a
 *     caller that goes on (chat) evaluates it with its next input. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bitnet.h"
#include "util/error.h"

void bitnet_generate_params_default(bitnet_generate_params *p) {
    memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->n_predict = -1;
    p->accept_prompt = 1;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static double rate(int n, double ms) { return ms > 0 ? n / (ms / 1e3) : 0; }

/* One run's state, so that the steps stay short. */
typedef struct gen_run {
    bitnet_context *ctx;
    const bitnet_tokenizer *tok;
    bitnet_sampler *smp;
    const bitnet_generate_params *p;
    bitnet_detok *detok;
    bitnet_generate_stats *st;
    int n_vocab, n_ctx;
    int on_device; /* pick_on_device with a greedy sampler: the evals pick */
    int32_t next;  /* ... and this is the pick of the last one */
} gen_run;

/* Evaluates n tokens, keeping the last one's logits or (on_device) its
 * greedy pick in r->next. */
static bitnet_status eval_last(gen_run *r, const int32_t *tokens, int n, bitnet_error *err) {
    if (!r->on_device) return bitnet_eval(r->ctx, tokens, n, BITNET_LOGITS_LAST, err);
    int32_t one, *picks = n == 1 ? &one : malloc((size_t)n * sizeof *picks);
    if (!picks) return bn_fail(err, BITNET_E_NOMEM, "out of memory");
    bitnet_batch b = {n, tokens, NULL, NULL};
    bitnet_status rc = bitnet_eval_batch_greedy(r->ctx, &b, picks, err);
    if (rc == BITNET_OK) r->next = picks[n - 1];
    if (picks != &one) free(picks);
    if (rc == BITNET_OK && r->next < 0) rc = bn_fail(err, BITNET_E_INTERNAL, "no greedy pick for the last token");
    return rc;
}

/* The next token: the pick made with the eval, or a sample of its logits. */
static bitnet_status next_token(gen_run *r, int32_t *t, bitnet_error *err) {
    if (r->on_device) {
        *t = r->next;
        return BITNET_OK;
    }
    const float *logits = bitnet_get_logits(r->ctx, -1);
    if (!logits) return bn_fail(err, BITNET_E_INTERNAL, "no logits to sample from");
    *t = bitnet_sampler_sample(r->smp, logits, r->n_vocab);
    return *t < 0 ? bn_fail(err, BITNET_E_NOMEM, "out of memory in the sampler") : BITNET_OK;
}

/* Passes text to the callback; 1 when it asks to stop. */
static int emit(gen_run *r, const char *text, size_t len, int32_t token) {
    return r->p->on_piece && r->p->on_piece(text ? text : "", len, token, r->p->user) != 0;
}

/* Samples, records and emits one token. Returns BITNET_OK and sets *stop
 * (BITNET_STOP_NONE to go on). */
static bitnet_status step(gen_run *r, bitnet_stop_reason *stop, bitnet_error *err) {
    int32_t t = -1;
    bitnet_status rc = next_token(r, &t, err);
    if (rc) return rc;
    bitnet_sampler_accept(r->smp, t);
    r->st->last_token = t;
    if (!r->p->ignore_eog && bitnet_tokenizer_is_eog(r->tok, t)) {
        *stop = BITNET_STOP_EOG;
        return BITNET_OK;
    }
    r->st->n_generated++;
    const char *text = NULL;
    size_t len = 0;
    rc = bitnet_detok_feed(r->detok, t, &text, &len, err);
    if (rc) return rc;
    if (emit(r, text, len, t)) *stop = BITNET_STOP_CANCELLED;
    else if (r->p->n_predict >= 0 && r->st->n_generated >= r->p->n_predict) *stop = BITNET_STOP_LENGTH;
    else if (bitnet_context_n_past(r->ctx) >= r->n_ctx) *stop = BITNET_STOP_CONTEXT_FULL;
    return BITNET_OK;
}

static bitnet_status token_loop(gen_run *r, bitnet_error *err) {
    bitnet_stop_reason stop = r->p->n_predict == 0 ? BITNET_STOP_LENGTH : BITNET_STOP_NONE;
    bitnet_status rc = BITNET_OK;
    while (stop == BITNET_STOP_NONE) {
        rc = step(r, &stop, err);
        if (rc == BITNET_OK && stop == BITNET_STOP_NONE)
            rc = eval_last(r, &r->st->last_token, 1, err);
        if (rc) break;
    }
    r->st->stop = stop;
    /* Bytes held back from an unfinished character still belong to the text. */
    const char *text = NULL;
    size_t len = 0;
    bitnet_detok_flush(r->detok, &text, &len);
    if (len > 0 && stop != BITNET_STOP_CANCELLED && emit(r, text, len, -1) && rc == BITNET_OK)
        r->st->stop = BITNET_STOP_CANCELLED;
    return rc;
}

static bitnet_status check_args(bitnet_context *ctx, const bitnet_tokenizer *tok, bitnet_sampler *smp,
                                const int32_t *prompt, int n_prompt, const bitnet_generate_params *p,
                                bitnet_error *err) {
    if (!ctx || !tok || !smp)
        return bn_fail(err, BITNET_E_INVALID_ARG, "bitnet_generate: context, tokenizer and sampler are required");
    if (!prompt || n_prompt < 1)
        return bn_fail(err, BITNET_E_INVALID_ARG, "bitnet_generate: the prompt must hold at least one token");
    if (p->n_predict < -1) return bn_fail(err, BITNET_E_INVALID_ARG, "n_predict %d must be -1 or more", p->n_predict);
    int n_ctx = bitnet_context_n_ctx(ctx), n_past = bitnet_context_n_past(ctx);
    if (n_prompt > n_ctx - n_past)
        return bn_fail(err, BITNET_E_CONTEXT_FULL, "the prompt (%d tokens) does not fit in the context: %d of %d positions are free",
                       n_prompt, n_ctx - n_past, n_ctx);
    return BITNET_OK;
}

bitnet_status bitnet_generate(bitnet_context *ctx, const bitnet_tokenizer *tok, bitnet_sampler *smp,
                              const int32_t *prompt, int n_prompt, const bitnet_generate_params *params,
                              bitnet_generate_stats *stats, bitnet_error *err) {
    bn_err_clear(err);
    bitnet_generate_params p;
    bitnet_generate_params_default(&p);
    if (params) {
        if (params->struct_size == 0 || params->struct_size > sizeof p)
            return bn_fail(err, BITNET_E_INVALID_ARG, "bitnet_generate_params.struct_size is %zu", params->struct_size);
        memcpy(&p, params, params->struct_size);
    }
    bitnet_generate_stats st;
    memset(&st, 0, sizeof st);
    st.last_token = -1;
    if (stats) *stats = st;
    bitnet_status rc = check_args(ctx, tok, smp, prompt, n_prompt, &p, err);
    if (rc) return rc;
    gen_run r = {ctx, tok, smp, &p, NULL, &st, bitnet_tokenizer_n_vocab(tok), bitnet_context_n_ctx(ctx),
                 p.pick_on_device && bitnet_sampler_is_greedy(smp), -1};
    if ((rc = bitnet_detok_new(tok, p.detok_flags, &r.detok, err))) return rc;

    if (p.accept_prompt)
        for (int i = 0; i < n_prompt; i++) bitnet_sampler_accept(smp, prompt[i]);
    double t0 = now_ms();
    rc = eval_last(&r, prompt, n_prompt, err);
    double t1 = now_ms();
    if (rc == BITNET_OK) {
        st.n_prompt = n_prompt;
        st.prompt_ms = t1 - t0;
        rc = token_loop(&r, err);
        st.generate_ms = now_ms() - t1;
    }
    bitnet_detok_free(r.detok);
    st.prompt_tok_s = rate(st.n_prompt, st.prompt_ms);
    st.generate_tok_s = rate(st.n_generated, st.generate_ms);
    if (stats) *stats = st;
    if (rc == BITNET_OK && st.stop == BITNET_STOP_CANCELLED)
        return bn_fail(err, BITNET_E_CANCELLED, "generation stopped by the callback after %d tokens", st.n_generated);
    return rc;
}

/* ------------------------------------------------------- bitnet_generate_text -- */

typedef struct text_sink {
    char *buf;
    size_t len, cap;
    int oom;
} text_sink;

static int append_piece(const char *piece, size_t len, int32_t token, void *user) {
    (void)token;
    text_sink *s = user;
    if (s->len + len + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap < s->len + len + 1) cap *= 2;
        char *b = realloc(s->buf, cap);
        if (!b) {
            s->oom = 1;
            return 1; /* stop: the caller reports the failure */
        }
        s->buf = b;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, piece, len);
    s->len += len;
    s->buf[s->len] = '\0';
    return 0;
}

/* Tokenizes text with the tokenizer's default BOS, special tokens parsed, into
 * a malloc'd array. */
static bitnet_status tokenize_all(const bitnet_tokenizer *tok, const char *text, int32_t **out, int *n,
                                  bitnet_error *err) {
    size_t len = strlen(text);
    if (len > (size_t)(1 << 30)) return bn_fail(err, BITNET_E_INVALID_ARG, "prompt of %zu bytes is too long", len);
    int cap = (int)len + 8;
    for (int attempt = 0; attempt < 2; attempt++) {
        int32_t *ids = malloc((size_t)cap * sizeof *ids);
        if (!ids) return bn_fail(err, BITNET_E_NOMEM, "out of memory");
        bitnet_status rc = bitnet_tokenize(tok, text, len, -1, 1, ids, cap, n, err);
        if (rc == BITNET_OK) {
            *out = ids;
            return BITNET_OK;
        }
        free(ids);
        if (rc != BITNET_E_INVALID_ARG || *n <= cap) return rc;
        cap = *n; /* more tokens than bytes (special insertions): once more */
    }
    return bn_fail(err, BITNET_E_INTERNAL, "tokenizer count changed between calls");
}

bitnet_status bitnet_generate_text(bitnet_context *ctx, const bitnet_tokenizer *tok, bitnet_sampler *smp,
                                   const char *prompt, int n_predict, char **out_text, bitnet_error *err) {
    bn_err_clear(err);
    if (!out_text || !prompt || !tok)
        return bn_fail(err, BITNET_E_INVALID_ARG, "bitnet_generate_text: prompt, tokenizer and out_text are required");
    *out_text = NULL;
    int32_t *ids = NULL;
    int n = 0;
    bitnet_status rc = tokenize_all(tok, prompt, &ids, &n, err);
    if (rc) return rc;
    text_sink sink = {0};
    bitnet_generate_params p;
    bitnet_generate_params_default(&p);
    p.n_predict = n_predict;
    p.on_piece = append_piece;
    p.user = &sink;
    rc = bitnet_generate(ctx, tok, smp, ids, n, &p, NULL, err);
    free(ids);
    if (sink.oom) rc = bn_fail(err, BITNET_E_NOMEM, "out of memory for the generated text");
    if (rc == BITNET_OK && !sink.buf) rc = append_piece("", 0, -1, &sink) ? bn_fail(err, BITNET_E_NOMEM, "out of memory") : BITNET_OK;
    if (rc) {
        free(sink.buf);
        return rc;
    }
    *out_text = sink.buf;
    return BITNET_OK;
}

void bitnet_text_free(char *text) { free(text); }
