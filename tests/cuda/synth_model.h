/* A random model of any shape built directly in memory (no file, no loader),
 * for the CUDA tests and benchmark: F16 token embedding tied to the output
 * head, random ternary weights (codes -1/0/+1 with probabilities 1/4, 1/2,
 * 1/4; per-tensor scale 1/sqrt(cols), or per-row scales), norm weights in
 * [0.5, 1.5). Header-only; static functions. */
#ifndef BN_TESTS_CUDA_SYNTH_MODEL_H
#define BN_TESTS_CUDA_SYNTH_MODEL_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

static inline uint64_t synth_rng(uint64_t *s) {
    /* xorshift64* */
    uint64_t x = *s;
    x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Uniform in [-1, 1). */
static inline float synth_uniform(uint64_t *s) { return (float)((synth_rng(s) >> 40) * (2.0 / 16777216.0) - 1.0); }

/* 8 random bytes of 2-bit codes, none equal to 3 (3 becomes 1). */
static inline uint64_t synth_codes8(uint64_t *s) {
    uint64_t b = synth_rng(s);
    return b ^ ((b & (b >> 1) & 0x5555555555555555ULL) << 1);
}

/* Fills codes for rows x cols and sets the scales. 0 on OOM. */
static inline int synth_ternary(bn_ternary *w, int64_t rows, int64_t cols, int per_row_scale, uint64_t *s) {
    memset(w, 0, sizeof *w);
    size_t bytes = (size_t)(rows * cols / 4);
    uint8_t *codes = malloc((bytes + 7) & ~(size_t)7);
    if (!codes) return 0;
    for (size_t i = 0; i < bytes; i += 8) {
        uint64_t v = synth_codes8(s);
        memcpy(codes + i, &v, 8);
    }
    w->rows = rows, w->cols = cols, w->codes = codes, w->scale = 1.0f / sqrtf((float)cols);
    if (per_row_scale) {
        float *rs = malloc((size_t)rows * sizeof *rs);
        if (!rs) return 0;
        for (int64_t r = 0; r < rows; r++) rs[r] = w->scale * (1.0f + 0.5f * synth_uniform(s));
        w->row_scale = rs;
    }
    return 1;
}

/* Half-precision values of magnitude in [1/16, 1/8), random signs and
 * mantissas: fast to make, and exact in F16. */
static inline int synth_dense_f16(bn_dense *d, int64_t rows, int64_t cols, uint64_t *s) {
    memset(d, 0, sizeof *d);
    size_t n = (size_t)(rows * cols);
    uint16_t *h = malloc(((n + 3) & ~(size_t)3) * 2);
    if (!h) return 0;
    for (size_t i = 0; i < n; i += 4) {
        uint64_t v = synth_rng(s);
        for (int j = 0; j < 4; j++) h[i + j] = (uint16_t)(((v >> (16 * j)) & 0x83FF) | 0x2C00);
    }
    d->type = 1 /* F16 */, d->rows = rows, d->cols = cols, d->data = (const uint8_t *)h;
    d->row_bytes = (uint64_t)cols * 2;
    return 1;
}

static inline int synth_vec(bn_vec *v, int64_t n, uint64_t *s) {
    memset(v, 0, sizeof *v);
    float *x = malloc((size_t)n * sizeof *x);
    if (!x) return 0;
    for (int64_t i = 0; i < n; i++) x[i] = 1.0f + 0.5f * synth_uniform(s);
    v->n = n, v->data = x;
    return 1;
}

static inline void synth_model_free(bitnet_model *m) {
    free((void *)m->tok_embd.data);
    free((void *)m->output_norm.data);
    for (int l = 0; m->layers && l < m->hp.n_layer; l++) {
        bn_layer *L = &m->layers[l];
        bn_vec *v[] = {&L->attn_norm, &L->attn_sub_norm, &L->ffn_norm, &L->ffn_sub_norm};
        bn_ternary *t[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < 4; i++) free((void *)v[i]->data);
        for (int i = 0; i < 7; i++) free((void *)t[i]->codes), free((void *)t[i]->row_scale);
    }
    free(m->layers);
    memset(m, 0, sizeof *m);
}

/* Builds a model with hyperparameters hp. 1 on success. */
static inline int synth_model_init(bitnet_model *m, const bn_hparams *hp, uint64_t seed) {
    memset(m, 0, sizeof *m);
    m->hp = *hp;
    uint64_t s = seed | 1;
    int64_t E = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim, KV = (int64_t)hp->n_head_kv * hp->head_dim;
    int ok = synth_dense_f16(&m->tok_embd, hp->n_vocab, E, &s) && synth_vec(&m->output_norm, E, &s);
    m->output = m->tok_embd;
    m->tied_output = 1;
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    ok = ok && m->layers;
    for (int l = 0; ok && l < hp->n_layer; l++) {
        bn_layer *L = &m->layers[l];
        int prs = l % 2; /* odd layers use per-row scales */
        ok = synth_vec(&L->attn_norm, E, &s) && synth_vec(&L->ffn_norm, E, &s) &&
             (!hp->has_sub_norms || (synth_vec(&L->attn_sub_norm, Q, &s) && synth_vec(&L->ffn_sub_norm, hp->n_ff, &s))) &&
             synth_ternary(&L->wq, Q, E, prs, &s) && synth_ternary(&L->wk, KV, E, prs, &s) &&
             synth_ternary(&L->wv, KV, E, prs, &s) && synth_ternary(&L->wo, E, Q, prs, &s) &&
             synth_ternary(&L->w_gate, hp->n_ff, E, prs, &s) && synth_ternary(&L->w_up, hp->n_ff, E, prs, &s) &&
             synth_ternary(&L->w_down, E, hp->n_ff, prs, &s);
    }
    if (!ok) synth_model_free(m);
    return ok;
}

/* Weight bytes one decode token streams: ternary codes + the output head. */
static inline double synth_weight_bytes(const bn_hparams *hp) {
    double E = hp->n_embd, Q = (double)hp->n_head * hp->head_dim, KV = (double)hp->n_head_kv * hp->head_dim;
    double per_layer = (Q * E + 2 * KV * E + E * Q + 3.0 * hp->n_ff * E) / 4.0;
    return hp->n_layer * per_layer + (double)hp->n_vocab * E * 2.0;
}

#endif
