/* BitNet b1.58 / ternary Llama forward pass (see ../shared/docs/FORMATS.md §3.3):
 *
 *   h = embed(token)
 *   per layer:  a = rmsnorm(h) → int8 → q,k,v (ternary) → RoPE → causal GQA attention
 *               [→ attn_sub_norm] → int8 → o (ternary);            h += o
 *               f = rmsnorm(h) → int8 → gate, up (ternary) → act(gate)·up
 *               [→ ffn_sub_norm] → int8 → down (ternary);         h += down
 *   logits = output_head(rmsnorm(h))
 *
 * Every ternary matmul quantizes its input per token (one quantization is
 * shared by q/k/v and by gate/up, which read the same input). */
#include "model/forward.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/error.h"

/* Profiling: when st->prof is set, every operation is bracketed by a backend
 * sync and a clock read, and its time is charged to its class. */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double prof_begin(bn_backend *be) {
    if (be->ops->sync) be->ops->sync(be);
    return now_s();
}

static void prof_end(bn_backend *be, bitnet_profile *p, bitnet_op_class cls, double t0) {
    if (be->ops->sync) be->ops->sync(be);
    p->seconds[cls] += now_s() - t0;
    p->calls[cls]++;
}

#define OP(cls, call)                                                                   \
    do {                                                                                \
        double t0_ = st->prof ? prof_begin(be) : 0.0;                                   \
        call;                                                                           \
        if (st->prof) prof_end(be, st->prof, BITNET_OP_##cls, t0_);                     \
    } while (0)

static int imax(int a, int b) { return a > b ? a : b; }
static int imin(int a, int b) { return a < b ? a : b; }

/* The head's output buffer holds this many rows, not n_batch: at a 128k
 * vocabulary a 512-row buffer would be 263 MB that generation (one row per
 * eval) never uses. Evals that keep every row run the head in chunks.
 * Batched decoding keeps a row per sequence every step, and each chunk
 * reads the whole head once (656 MB for 2B4T: 8 chunks of 32 at 256
 * sequences cost the GPU 1.3 ms more than one of 256), so a context of
 * n_seq sequences gets n_seq rows, up to LOGITS_SEQ_MAX. */
#define LOGITS_CHUNK 32
#define LOGITS_SEQ_MAX 256

bitnet_status bn_forward_state_init(bn_forward_state *st, const bitnet_model *m, bn_backend *be, int n_ctx,
                                    int n_batch, bitnet_error *err) {
    return bn_forward_state_init_seq(st, m, be, n_ctx, n_batch, 1, err);
}

bitnet_status bn_forward_state_init_seq(bn_forward_state *st, const bitnet_model *m, bn_backend *be, int n_ctx,
                                        int n_batch, int n_seq, bitnet_error *err) {
    const bn_hparams *hp = &m->hp;
    memset(st, 0, sizeof *st);
    if (n_seq < 1) return bn_fail(err, BITNET_E_INVALID_ARG, "n_seq must be at least 1");
    st->n_ctx = n_ctx;
    st->n_batch = n_batch;
    st->n_seq = n_seq;
    st->seq_stride = (int64_t)hp->n_head_kv * hp->head_dim * n_ctx;
    st->logits_rows = imin(n_batch, imax(LOGITS_CHUNK, imin(n_seq, LOGITS_SEQ_MAX)));
    size_t B = (size_t)n_batch, E = (size_t)hp->n_embd, Q = (size_t)hp->n_head * hp->head_dim;
    size_t KV = (size_t)hp->n_head_kv * hp->head_dim, F = (size_t)hp->n_ff;
    size_t W = (size_t)imax(imax(hp->n_embd, (int)Q), hp->n_ff);
    void *(*A)(bn_backend *, size_t) = be->ops->alloc;
    st->kv = calloc((size_t)hp->n_layer, sizeof *st->kv);
    if (!st->kv) return bn_fail(err, BITNET_E_NOMEM, "out of memory");
    size_t kv_bytes = KV * (size_t)n_ctx * (size_t)n_seq * be->ops->kv_elem_size;
    int ok = 1;
    for (int l = 0; l < hp->n_layer && ok; l++) {
        st->kv[l].k = A(be, kv_bytes);
        st->kv[l].v = A(be, kv_bytes);
        ok = st->kv[l].k && st->kv[l].v;
    }
    ok = ok && (st->x = A(be, B * E * 4)) && (st->xn = A(be, B * E * 4)) && (st->q = A(be, B * Q * 4)) &&
         (st->k = A(be, B * KV * 4)) && (st->v = A(be, B * KV * 4)) && (st->att = A(be, B * Q * 4)) &&
         (st->tmp = A(be, B * E * 4)) && (st->g = A(be, B * F * 4)) && (st->u = A(be, B * F * 4)) &&
         (st->logits = A(be, (size_t)st->logits_rows * (size_t)hp->n_vocab * 4)) && (st->qa.q = A(be, B * W)) &&
         (st->qa.scale = A(be, B * 4)) && (st->qa.sum = A(be, B * 4));
    if (!ok) {
        bn_forward_state_free(st, m, be);
        return bn_fail(err, BITNET_E_NOMEM,
                       "out of memory for a KV cache of %d x %d tokens and %d-token batch buffers", n_seq, n_ctx,
                       n_batch);
    }
    return BITNET_OK;
}

void bn_forward_state_free(bn_forward_state *st, const bitnet_model *m, bn_backend *be) {
    void (*F)(bn_backend *, void *) = be->ops->free;
    if (st->kv)
        for (int l = 0; l < m->hp.n_layer; l++) {
            F(be, st->kv[l].k);
            F(be, st->kv[l].v);
        }
    free(st->kv);
    void *bufs[] = {st->x, st->xn, st->q, st->k, st->v, st->att, st->tmp, st->g, st->u, st->logits,
                    st->qa.q, st->qa.scale, st->qa.sum};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) F(be, bufs[i]);
    memset(st, 0, sizeof *st);
}

/* Where a step's tokens sit. pos == NULL: one sequence, seq0, at positions
 * pos0..; otherwise token t is at pos[t] of sequence seq[t]. */
typedef struct step_pos {
    int pos0, seq0;
    const int32_t *pos, *seq;
} step_pos;

/* Layer l's cache of sequence `seq`: the single-sequence layout at an offset. */
static bn_kv_layer seq_kv(const bn_backend *be, const bn_forward_state *st, int l, int seq) {
    size_t off = (size_t)seq * (size_t)st->seq_stride * be->ops->kv_elem_size;
    bn_kv_layer kv = {(char *)st->kv[l].k + off, (char *)st->kv[l].v + off};
    return kv;
}

static void attention_block(const bitnet_model *m, bn_backend *be, bn_forward_state *st, const bn_layer *L, int l,
                            int n, const step_pos *sp) {
    const bn_hparams *hp = &m->hp;
    const bn_backend_ops *o = be->ops;
    int E = hp->n_embd, Q = hp->n_head * hp->head_dim;
    OP(NORM_QUANT, o->rmsnorm(be, st->x, &L->attn_norm, n, E, hp->rms_eps, st->xn));
    OP(NORM_QUANT, o->quantize(be, st->xn, n, E, &st->qa));
    OP(TERNARY_MATMUL, o->matmul_ternary(be, &L->wq, &st->qa, n, st->q));
    OP(TERNARY_MATMUL, o->matmul_ternary(be, &L->wk, &st->qa, n, st->k));
    OP(TERNARY_MATMUL, o->matmul_ternary(be, &L->wv, &st->qa, n, st->v));
    bn_attn_shape s = {hp->n_head, hp->n_head_kv, hp->head_dim, st->n_ctx};
    if (!sp->pos) {
        bn_kv_layer kv = seq_kv(be, st, l, sp->seq0);
        OP(ATTENTION, o->rope(be, st->q, n, hp->n_head, hp->head_dim, sp->pos0, hp->rope_theta, hp->rope_neox));
        OP(ATTENTION, o->rope(be, st->k, n, hp->n_head_kv, hp->head_dim, sp->pos0, hp->rope_theta, hp->rope_neox));
        OP(ATTENTION, o->attention(be, &kv, &s, st->q, st->k, st->v, n, sp->pos0, st->att));
    } else {
        OP(ATTENTION, o->rope_batch(be, st->q, n, hp->n_head, hp->head_dim, sp->pos, hp->rope_theta, hp->rope_neox));
        OP(ATTENTION, o->rope_batch(be, st->k, n, hp->n_head_kv, hp->head_dim, sp->pos, hp->rope_theta, hp->rope_neox));
        OP(ATTENTION, o->attention_batch(be, &st->kv[l], st->seq_stride, &s, st->q, st->k, st->v, n, sp->seq, sp->pos,
                                         st->att));
    }
    if (L->attn_sub_norm.data) OP(NORM_QUANT, o->rmsnorm(be, st->att, &L->attn_sub_norm, n, Q, hp->rms_eps, st->att));
    OP(NORM_QUANT, o->quantize(be, st->att, n, Q, &st->qa));
    OP(TERNARY_MATMUL, o->matmul_ternary(be, &L->wo, &st->qa, n, st->tmp));
    OP(OTHER, o->add(be, st->x, st->tmp, (int64_t)n * E));
}

static void ffn_block(const bitnet_model *m, bn_backend *be, bn_forward_state *st, const bn_layer *L, int n) {
    const bn_hparams *hp = &m->hp;
    const bn_backend_ops *o = be->ops;
    int E = hp->n_embd, F = hp->n_ff;
    OP(NORM_QUANT, o->rmsnorm(be, st->x, &L->ffn_norm, n, E, hp->rms_eps, st->xn));
    OP(NORM_QUANT, o->quantize(be, st->xn, n, E, &st->qa));
    OP(TERNARY_MATMUL, o->matmul_ternary(be, &L->w_gate, &st->qa, n, st->g));
    OP(TERNARY_MATMUL, o->matmul_ternary(be, &L->w_up, &st->qa, n, st->u));
    OP(OTHER, o->glu(be, st->g, st->u, (int64_t)n * F, hp->ffn_act));
    if (L->ffn_sub_norm.data) OP(NORM_QUANT, o->rmsnorm(be, st->g, &L->ffn_sub_norm, n, F, hp->rms_eps, st->g));
    OP(NORM_QUANT, o->quantize(be, st->g, n, F, &st->qa));
    OP(TERNARY_MATMUL, o->matmul_ternary(be, &L->w_down, &st->qa, n, st->tmp));
    OP(OTHER, o->add(be, st->x, st->tmp, (int64_t)n * E));
}

static void layers(const bitnet_model *m, bn_backend *be, bn_forward_state *st, const int32_t *tokens, int n_tok,
                   const step_pos *sp) {
    const bn_backend_ops *o = be->ops;
    OP(OTHER, o->embed(be, &m->tok_embd, tokens, n_tok, st->x));
    for (int l = 0; l < m->hp.n_layer; l++) {
        attention_block(m, be, st, &m->layers[l], l, n_tok, sp);
        ffn_block(m, be, st, &m->layers[l], n_tok);
    }
}

/* The output head over the first n_out rows of st->xn (already normed), in
 * chunks of logits_rows, into logits_host ([n_out x n_vocab]) or, when
 * argmax_host is not NULL, only each row's argmax into it ([n_out]). */
static void head(const bitnet_model *m, bn_backend *be, bn_forward_state *st, int n_out, float *logits_host,
                 int32_t *argmax_host) {
    const bn_hparams *hp = &m->hp;
    const bn_backend_ops *o = be->ops;
    for (int r = 0; r < n_out; r += st->logits_rows) {
        int nr = n_out - r < st->logits_rows ? n_out - r : st->logits_rows;
        const float *xr = st->xn + (int64_t)r * hp->n_embd;
        OP(OUTPUT_HEAD, o->matmul_dense(be, &m->output, xr, nr, st->logits));
        if (argmax_host)
            OP(OTHER, o->argmax(be, st->logits, nr, hp->n_vocab, argmax_host + r));
        else
            OP(OTHER, o->to_host(be, logits_host + (int64_t)r * hp->n_vocab, st->logits,
                                 (size_t)nr * hp->n_vocab * sizeof(float)));
    }
}

void bn_forward(const bitnet_model *m, bn_backend *be, bn_forward_state *st, const int32_t *tokens, int n_tok,
                int pos0, bn_logits_want want, float *logits_host) {
    const bn_hparams *hp = &m->hp;
    const bn_backend_ops *o = be->ops;
    step_pos sp = {pos0, 0, NULL, NULL};
    layers(m, be, st, tokens, n_tok, &sp);
    /* Only the rows whose logits are wanted go through the head: for
     * generation that is the last token, which saves (n_tok - 1) head reads. */
    if (want == BN_LOGITS_NONE) return;
    int first = want == BN_LOGITS_ALL ? 0 : n_tok - 1, n_out = n_tok - first;
    const float *x = st->x + (int64_t)first * hp->n_embd;
    OP(NORM_QUANT, o->rmsnorm(be, x, &m->output_norm, n_out, hp->n_embd, hp->rms_eps, st->xn));
    head(m, be, st, n_out, logits_host, NULL);
}

/* 1 when every token of b is in one sequence at consecutive positions. */
static int one_sequence(const bn_batch_step *b) {
    for (int t = 1; t < b->n_tok; t++)
        if (b->seq[t] != b->seq[0] || b->pos[t] != b->pos[0] + t) return 0;
    return 1;
}

bitnet_status bn_forward_batch(const bitnet_model *m, bn_backend *be, bn_forward_state *st, const bn_batch_step *b,
                               float *logits_host, bitnet_error *err) {
    const bn_hparams *hp = &m->hp;
    const bn_backend_ops *o = be->ops;
    if (b->n_tok < 1 || b->n_tok > st->n_batch || b->n_out < 0 || b->n_out > b->n_tok)
        return bn_fail(err, BITNET_E_INTERNAL, "bn_forward_batch: %d tokens, %d outputs, n_batch %d", b->n_tok,
                       b->n_out, st->n_batch);
    if (b->argmax_host && !o->argmax)
        return bn_fail(err, BITNET_E_UNSUPPORTED, "the %s backend has no argmax for greedy decoding", o->name);
    step_pos sp = {b->pos[0], b->seq[0], NULL, NULL};
    if (!one_sequence(b)) {
        if (!o->rope_batch || !o->attention_batch)
            return bn_fail(err, BITNET_E_UNSUPPORTED,
                           "the %s backend cannot evaluate several sequences in one step (no batched attention)",
                           o->name);
        sp.pos = b->pos, sp.seq = b->seq;
    }
    layers(m, be, st, b->tokens, b->n_tok, &sp);
    /* Gather the wanted rows into xn, normed: one call per run of
     * consecutive rows (decode steps want every row: one call). */
    for (int i = 0; i < b->n_out;) {
        int j = i + 1;
        while (j < b->n_out && b->out_rows[j] == b->out_rows[j - 1] + 1) j++;
        const float *x = st->x + (int64_t)b->out_rows[i] * hp->n_embd;
        OP(NORM_QUANT, o->rmsnorm(be, x, &m->output_norm, j - i, hp->n_embd, hp->rms_eps,
                                  st->xn + (int64_t)i * hp->n_embd));
        i = j;
    }
    head(m, be, st, b->n_out, logits_host, b->argmax_host);
    return BITNET_OK;
}
