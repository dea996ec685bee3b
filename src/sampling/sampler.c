/* The sampler (public API in bitnet.h, "sampling"): logits → token.
 *
 * Per sample, on a private copy of the logits:
 *   1. logit bias, then penalties for the distinct tokens of the history;
 *   2. temperature <= 0 (or top-k 1, top-p 0) → argmax, lowest id on ties;
 *   3. weights e = exp(logit / T − max), so the best token weighs 1;
 *   4. top-k: partial selection (topk.c), then top-p as a prefix of that
 *      sorted list; top-p alone: the best 64 when they hold enough mass (the
 *      usual, peaked case), else a quickselect on mass (mass_select);
 *   5. min-p keeps e >= min_p (p_i >= min_p · p_max); a uniform draw picks one.
 * Cost per token: O(n_vocab) plus O(k log k) — no full sort of the vocabulary. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bitnet.h"
#include "sampling/rng.h"
#include "sampling/topk.h"
#include "util/error.h"

struct bitnet_sampler {
    bitnet_sampler_params p;  /* validated copy; p.logit_bias = bias below    */
    bitnet_logit_bias *bias;  /* owned copy of the caller's list            */
    uint64_t seed;            /* the seed actually used                      */
    bn_rng rng;

    /* Penalty history. penalty_last_n > 0: a ring of that capacity, `pos` the
     * next slot to overwrite. -1: an array that grows. Order does not matter. */
    int32_t *hist;
    int hist_cap, hist_len, hist_pos;

    /* Scratch sized for the largest vocabulary seen (grown on demand). */
    float *work;              /* [n_vocab] logits being transformed         */
    int32_t *cand;            /* [n_vocab] candidate indices                */
    int32_t *hist_sorted;     /* [hist_cap] sorted copy of the history      */
    int scratch_n, hist_sorted_cap;
};

void bitnet_sampler_params_default(bitnet_sampler_params *p) {
    memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->seed = BITNET_SEED_RANDOM;
    p->temperature = 0.8f;
    p->top_k = 40;
    p->top_p = 0.95f;
    p->min_p = 0.05f;
    p->repeat_penalty = 1.0f;
    p->penalty_last_n = 64;
}

static bitnet_status validate(const bitnet_sampler_params *p, bitnet_error *err) {
    if (!isfinite(p->temperature))
        return bn_fail(err, BITNET_E_INVALID_ARG, "temperature %g must be a finite number", (double)p->temperature);
    if (p->top_k < 0) return bn_fail(err, BITNET_E_INVALID_ARG, "top_k %d is negative", p->top_k);
    if (!(p->top_p >= 0.0f && p->top_p <= 1.0f))
        return bn_fail(err, BITNET_E_INVALID_ARG, "top_p %g is outside [0, 1]", (double)p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return bn_fail(err, BITNET_E_INVALID_ARG, "min_p %g is outside [0, 1]", (double)p->min_p);
    if (!(p->repeat_penalty > 0.0f) || isinf(p->repeat_penalty))
        return bn_fail(err, BITNET_E_INVALID_ARG, "repeat_penalty %g must be a positive number", (double)p->repeat_penalty);
    if (!isfinite(p->frequency_penalty) || !isfinite(p->presence_penalty))
        return bn_fail(err, BITNET_E_INVALID_ARG, "frequency and presence penalties must be finite");
    if (p->penalty_last_n < -1)
        return bn_fail(err, BITNET_E_INVALID_ARG, "penalty_last_n %d must be -1, 0 or positive", p->penalty_last_n);
    if (p->n_logit_bias < 0 || (p->n_logit_bias > 0 && !p->logit_bias))
        return bn_fail(err, BITNET_E_INVALID_ARG, "logit bias list is inconsistent (n = %d)", p->n_logit_bias);
    for (int i = 0; i < p->n_logit_bias; i++) {
        const bitnet_logit_bias *b = &p->logit_bias[i];
        if (b->token < 0) return bn_fail(err, BITNET_E_INVALID_ARG, "logit bias for negative token %d", (int)b->token);
        if (isnan(b->bias) || b->bias == INFINITY)
            return bn_fail(err, BITNET_E_INVALID_ARG, "logit bias for token %d must be finite or -inf", (int)b->token);
    }
    return BITNET_OK;
}

/* A seed from the clock and an address, for BITNET_SEED_RANDOM. */
static uint64_t random_seed(const void *salt) {
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    uint64_t x = ((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec) ^ (uint64_t)(uintptr_t)salt;
    uint64_t s = bn_splitmix64(&x);
    return s == BITNET_SEED_RANDOM ? 0 : s;
}

bitnet_status bitnet_sampler_new(const bitnet_sampler_params *params, bitnet_sampler **out, bitnet_error *err) {
    bn_err_clear(err);
    if (!out) return bn_fail(err, BITNET_E_INVALID_ARG, "bitnet_sampler_new: out is required");
    *out = NULL;
    bitnet_sampler_params p;
    bitnet_sampler_params_default(&p);
    if (params) {
        if (params->struct_size == 0 || params->struct_size > sizeof p)
            return bn_fail(err, BITNET_E_INVALID_ARG, "bitnet_sampler_params.struct_size is %zu", params->struct_size);
        memcpy(&p, params, params->struct_size);
    }
    bitnet_status rc = validate(&p, err);
    if (rc) return rc;
    bitnet_sampler *s = calloc(1, sizeof *s);
    if (!s) return bn_fail(err, BITNET_E_NOMEM, "out of memory");
    if (p.n_logit_bias > 0) {
        s->bias = malloc((size_t)p.n_logit_bias * sizeof *s->bias);
        if (!s->bias) {
            free(s);
            return bn_fail(err, BITNET_E_NOMEM, "out of memory");
        }
        memcpy(s->bias, p.logit_bias, (size_t)p.n_logit_bias * sizeof *s->bias);
    }
    p.logit_bias = s->bias;
    s->p = p;
    s->seed = p.seed == BITNET_SEED_RANDOM ? random_seed(s) : p.seed;
    bn_rng_seed(&s->rng, s->seed);
    if (p.penalty_last_n > 0) {
        s->hist = malloc((size_t)p.penalty_last_n * sizeof *s->hist);
        if (!s->hist) {
            bitnet_sampler_free(s);
            return bn_fail(err, BITNET_E_NOMEM, "out of memory for a %d-token penalty window", p.penalty_last_n);
        }
        s->hist_cap = p.penalty_last_n;
    }
    *out = s;
    return BITNET_OK;
}

void bitnet_sampler_free(bitnet_sampler *s) {
    if (!s) return;
    free(s->bias);
    free(s->hist);
    free(s->work);
    free(s->cand);
    free(s->hist_sorted);
    free(s);
}

uint64_t bitnet_sampler_seed(const bitnet_sampler *s) { return s ? s->seed : 0; }

void bitnet_sampler_reset(bitnet_sampler *s) {
    if (!s) return;
    s->hist_len = s->hist_pos = 0;
    bn_rng_seed(&s->rng, s->seed);
}

void bitnet_sampler_accept(bitnet_sampler *s, int32_t token) {
    if (!s || s->p.penalty_last_n == 0) return;
    if (s->p.penalty_last_n > 0) {
        s->hist[s->hist_pos] = token;
        s->hist_pos = (s->hist_pos + 1) % s->hist_cap;
        if (s->hist_len < s->hist_cap) s->hist_len++;
        return;
    }
    if (s->hist_len == s->hist_cap) {
        /* Unbounded history: on allocation failure the token is dropped, which
         * only weakens the penalties (accept cannot fail). */
        int cap = s->hist_cap ? s->hist_cap * 2 : 256;
        int32_t *h = realloc(s->hist, (size_t)cap * sizeof *h);
        if (!h) return;
        s->hist = h;
        s->hist_cap = cap;
    }
    s->hist[s->hist_len++] = token;
}

static int grow_scratch(bitnet_sampler *s, int n_vocab) {
    if (n_vocab > s->scratch_n) {
        float *w = realloc(s->work, (size_t)n_vocab * sizeof *w);
        if (w) s->work = w;
        int32_t *c = realloc(s->cand, (size_t)n_vocab * sizeof *c);
        if (c) s->cand = c;
        if (!w || !c) return 0;
        s->scratch_n = n_vocab;
    }
    if (s->hist_len > s->hist_sorted_cap) {
        int32_t *h = realloc(s->hist_sorted, (size_t)s->hist_cap * sizeof *h);
        if (!h) return 0;
        s->hist_sorted = h;
        s->hist_sorted_cap = s->hist_cap;
    }
    return 1;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* 1 when the penalties leave every logit as it is. */
static int penalties_off(const bitnet_sampler_params *p) {
    return p->repeat_penalty == 1.0f && p->frequency_penalty == 0.0f && p->presence_penalty == 0.0f;
}

/* 1 when the settings reduce sampling to the argmax. */
static int argmax_only(const bitnet_sampler_params *p) {
    return p->temperature <= 0.0f || p->top_k == 1 || p->top_p == 0.0f;
}

/* Penalises each distinct token of the history once, with its count. */
static void apply_penalties(bitnet_sampler *s, float *w, int n_vocab) {
    const bitnet_sampler_params *p = &s->p;
    if (s->hist_len == 0 || penalties_off(p)) return;
    int32_t *h = s->hist_sorted;
    memcpy(h, s->hist, (size_t)s->hist_len * sizeof *h);
    qsort(h, (size_t)s->hist_len, sizeof *h, cmp_i32);
    for (int i = 0; i < s->hist_len;) {
        int j = i;
        while (j < s->hist_len && h[j] == h[i]) j++;
        int32_t t = h[i];
        int count = j - i;
        i = j;
        if (t < 0 || t >= n_vocab) continue;
        /* Repetition penalty as in CTRL: always makes the token less likely. */
        w[t] = w[t] > 0 ? w[t] / p->repeat_penalty : w[t] * p->repeat_penalty;
        w[t] -= (float)count * p->frequency_penalty + p->presence_penalty;
    }
}

static int32_t argmax(const float *w, int n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (w[i] > w[best]) best = i;
    return best;
}

/* Draws one of cand[0..n) with weights e[cand[i]]. Accumulates in double so
 * that the walk matches the sum. */
static int32_t draw(bitnet_sampler *s, const float *e, const int32_t *cand, int n) {
    double z = 0;
    for (int i = 0; i < n; i++) z += e[cand[i]];
    double r = bn_rng_uniform(&s->rng) * z, acc = 0;
    for (int i = 0; i < n; i++) {
        acc += e[cand[i]];
        if (r < acc) return cand[i];
    }
    return cand[n - 1]; /* r rounded to the very top */
}

static inline void swap_i32(int32_t *a, int32_t *b) {
    int32_t t = *a;
    *a = *b;
    *b = t;
}

static float median3(float a, float b, float c) {
    if (a > b) { float t = a; a = b; b = t; }
    return c <= a ? a : c >= b ? b : c;
}

/* Reorders idx[0..n) so that its first r entries are a smallest set of the
 * largest weights e[] summing to >= target, and returns r (>= 1): a quickselect
 * that splits on the weight mass instead of a count, expected O(n). */
static int mass_select(const float *e, int32_t *idx, int n, double target) {
    int lo = 0, hi = n; /* idx[0..lo) taken, idx[lo..hi) undecided */
    while (lo < hi && target > 0) {
        float pivot = median3(e[idx[lo]], e[idx[lo + (hi - lo) / 2]], e[idx[hi - 1]]);
        int gt = lo, i = lo, lt = hi; /* [lo,gt) > pivot, [gt,i) == pivot, [lt,hi) < pivot */
        while (i < lt) {
            float v = e[idx[i]];
            if (v > pivot) swap_i32(&idx[gt++], &idx[i++]);
            else if (v < pivot) swap_i32(&idx[i], &idx[--lt]);
            else i++;
        }
        double above = 0;
        for (int j = lo; j < gt; j++) above += e[idx[j]];
        if (above >= target) { /* the answer lies inside the larger part */
            hi = gt;
            continue;
        }
        target -= above;
        lo = gt;
        while (lo < lt && target > 0) { /* as many pivot-valued entries as needed */
            target -= pivot;
            lo++;
        }
    }
    return lo > 0 ? lo : 1;
}

/* Candidates for top-p without top-k, all weights computed: the best 64 by
 * partial selection when they suffice (the usual, peaked case), else a mass
 * quickselect over the whole vocabulary. Writes s->cand; returns the count. */
static int top_p_all(bitnet_sampler *s, const float *e, int n_vocab, double z) {
    double target = s->p.top_p * z;
    int n = bn_top_k(e, n_vocab, 64, s->cand);
    double cum = 0;
    for (int i = 0; i < n; i++)
        if ((cum += e[s->cand[i]]) >= target) return i + 1;
    for (int32_t i = 0; i < n_vocab; i++) s->cand[i] = i;
    return mass_select(e, s->cand, n_vocab, target);
}

/* The top-k path: turns the k sorted candidates' logits into weights
 * e = exp(w / T - wmax), then keeps the shortest prefix holding top_p of
 * their mass. Returns the candidates kept. */
static int weigh_top_k(bitnet_sampler *s, float *w, int n, float inv_t, float wmax) {
    const int32_t *cand = s->cand;
    double z = 0;
    for (int i = 0; i < n; i++) z += w[cand[i]] = expf(w[cand[i]] * inv_t - wmax);
    if (s->p.top_p >= 1.0f) return n;
    double cum = 0, target = s->p.top_p * z;
    int keep = 0;
    while (keep < n) {
        cum += w[cand[keep++]];
        if (cum >= target) break;
    }
    return keep;
}

/* Without top-k: weights for the whole vocabulary, then top-p if asked.
 * Writes s->cand; returns the candidates kept. */
static int weigh_all(bitnet_sampler *s, float *w, int n_vocab, float inv_t, float wmax) {
    double z = 0;
    for (int i = 0; i < n_vocab; i++) z += w[i] = expf(w[i] * inv_t - wmax);
    if (s->p.top_p < 1.0f) return top_p_all(s, w, n_vocab, z);
    for (int32_t i = 0; i < n_vocab; i++) s->cand[i] = i;
    return n_vocab;
}

int bitnet_sampler_is_greedy(const bitnet_sampler *s) {
    if (!s) return 0;
    const bitnet_sampler_params *p = &s->p;
    /* penalty_last_n 0: no history, so the penalties never act. */
    return argmax_only(p) && p->n_logit_bias == 0 && (p->penalty_last_n == 0 || penalties_off(p));
}

int32_t bitnet_sampler_sample(bitnet_sampler *s, const float *logits, int n_vocab) {
    if (!s || !logits || n_vocab <= 0 || !grow_scratch(s, n_vocab)) return -1;
    const bitnet_sampler_params *p = &s->p;
    float *w = s->work;
    for (int i = 0; i < n_vocab; i++) w[i] = isnan(logits[i]) ? -INFINITY : logits[i];
    for (int i = 0; i < p->n_logit_bias; i++)
        if (p->logit_bias[i].token < n_vocab) w[p->logit_bias[i].token] += p->logit_bias[i].bias;
    apply_penalties(s, w, n_vocab);

    if (argmax_only(p)) return argmax(w, n_vocab);
    int32_t *cand = s->cand;
    int use_top_k = p->top_k > 0 && p->top_k < n_vocab;
    int n = use_top_k ? bn_top_k(w, n_vocab, p->top_k, cand) : 0; /* sorted, best first */
    int32_t best = use_top_k ? cand[0] : argmax(w, n_vocab);
    float inv_t = 1.0f / p->temperature, wmax = w[best] * inv_t;
    /* Everything banned, or a tiny temperature overflowed: greedy is the limit. */
    if (!isfinite(wmax)) return best;

    /* From here w holds weights in [0, 1] (the best token's is 1) for the
     * candidates, which top-k and top-p have cut. */
    n = use_top_k ? weigh_top_k(s, w, n, inv_t, wmax) : weigh_all(s, w, n_vocab, inv_t, wmax);
    /* min-p: p_i >= min_p · p_max, i.e. e_i >= min_p. Keeps the best (e = 1). */
    if (p->min_p > 0.0f) {
        int kept = 0;
        for (int i = 0; i < n; i++)
            if (w[cand[i]] >= p->min_p) cand[kept++] = cand[i];
        n = kept;
    }
    return draw(s, w, cand, n);
}
