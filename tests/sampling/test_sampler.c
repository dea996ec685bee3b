/* Sampler: greedy, seeds, truncation (top-k / top-p / min-p), penalties,
 * logit bias and parameter validation, on hand-made distributions. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bitnet.h"
#include "kernels/cpu/kernels_ref.h"
#include "sampling/topk.h"

/* Deterministic test data (no dependence on rand()). */
static uint32_t lcg(uint32_t *x) { return *x = *x * 1664525u + 1013904223u; }
static float frand(uint32_t *x) { return (float)(lcg(x) >> 8) / 16777216.0f * 8.0f - 4.0f; }

static bitnet_sampler *make(float temp, int top_k, float top_p, float min_p, uint64_t seed) {
    bitnet_sampler_params p;
    bitnet_sampler_params_default(&p);
    p.temperature = temp;
    p.top_k = top_k;
    p.top_p = top_p;
    p.min_p = min_p;
    p.seed = seed;
    bitnet_sampler *s = NULL;
    bitnet_error err;
    assert_int_equal(bitnet_sampler_new(&p, &s, &err), BITNET_OK);
    return s;
}

/* Logits whose softmax is `probs`. */
static void from_probs(const double *probs, int n, float *logits) {
    for (int i = 0; i < n; i++) logits[i] = (float)log(probs[i]);
}

/* Counts how often each token comes out of `draws` samples. */
static void histogram(bitnet_sampler *s, const float *logits, int n, int draws, int *counts) {
    memset(counts, 0, (size_t)n * sizeof *counts);
    for (int i = 0; i < draws; i++) {
        int32_t t = bitnet_sampler_sample(s, logits, n);
        assert_true(t >= 0 && t < n);
        counts[t]++;
    }
}

static void test_topk_matches_sort(void **state) {
    (void)state;
    uint32_t x = 7;
    enum { N = 3001 };
    static float v[N];
    static int32_t got[N];
    for (int i = 0; i < N; i++) v[i] = (float)(int)(frand(&x) * 20) / 4.0f; /* many exact ties */
    int ks[] = {1, 2, 7, 40, 1000, N, N + 5};
    for (size_t c = 0; c < sizeof ks / sizeof ks[0]; c++) {
        int k = ks[c], n = bn_top_k(v, N, k, got);
        assert_int_equal(n, k < N ? k : N);
        for (int i = 1; i < n; i++) /* best first, ties by lower index */
            assert_true(v[got[i - 1]] > v[got[i]] || (v[got[i - 1]] == v[got[i]] && got[i - 1] < got[i]));
        /* Nothing left out ranks above the last one kept. */
        if (n < N) {
            char *in = calloc(N, 1);
            for (int i = 0; i < n; i++) in[got[i]] = 1;
            int32_t last = got[n - 1];
            for (int i = 0; i < N; i++)
                if (!in[i]) assert_false(v[i] > v[last] || (v[i] == v[last] && i < last));
            free(in);
        }
    }
}

static void test_greedy_is_argmax(void **state) {
    (void)state;
    enum { V = 5000 };
    static float logits[V];
    uint32_t x = 1;
    for (int i = 0; i < V; i++) logits[i] = frand(&x);
    int32_t best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    bitnet_sampler *s = make(0.0f, 40, 0.95f, 0.05f, 1);
    for (int i = 0; i < 5; i++) assert_int_equal(bitnet_sampler_sample(s, logits, V), best);
    /* A tie goes to the lower id. */
    logits[V - 1] = logits[best];
    assert_int_equal(bitnet_sampler_sample(s, logits, V), best);
    logits[3] = logits[best];
    assert_int_equal(bitnet_sampler_sample(s, logits, V), 3);
    /* The caller's logits are not modified. */
    float before = logits[10];
    bitnet_sampler_sample(s, logits, V);
    assert_true(logits[10] == before);
    bitnet_sampler_free(s);
}

static bitnet_sampler *make_penalised(float repeat, float freq, float presence, int last_n);

/* bitnet_sampler_is_greedy: exactly the settings whose pick is the argmax
 * of the raw logits (what bitnet_eval_batch_greedy computes). */
static void test_is_greedy(void **state) {
    (void)state;
    assert_false(bitnet_sampler_is_greedy(NULL));
    bitnet_sampler *s = make(0.8f, 40, 0.95f, 0.05f, 1);
    assert_false(bitnet_sampler_is_greedy(s));
    bitnet_sampler_free(s);
    s = make(0.0f, 40, 0.95f, 0.05f, 1);
    assert_true(bitnet_sampler_is_greedy(s));
    bitnet_sampler_free(s);
    s = make(0.8f, 1, 0.95f, 0.05f, 1); /* top-k 1 */
    assert_true(bitnet_sampler_is_greedy(s));
    bitnet_sampler_free(s);
    s = make(0.8f, 40, 0.0f, 0.05f, 1); /* top-p 0 */
    assert_true(bitnet_sampler_is_greedy(s));
    bitnet_sampler_free(s);
    /* Penalties and biases move logits before the argmax: not greedy... */
    s = make_penalised(1.3f, 0.0f, 0.0f, 64);
    assert_false(bitnet_sampler_is_greedy(s));
    bitnet_sampler_free(s);
    s = make_penalised(1.0f, 0.0f, 0.5f, 64);
    assert_false(bitnet_sampler_is_greedy(s));
    bitnet_sampler_free(s);
    /* ...unless they look at no history. */
    s = make_penalised(1.3f, 0.2f, 0.5f, 0);
    assert_true(bitnet_sampler_is_greedy(s));
    bitnet_sampler_free(s);
    bitnet_sampler_params p;
    bitnet_sampler_params_default(&p);
    p.temperature = 0.0f;
    bitnet_logit_bias bias = {3, 1.0f};
    p.logit_bias = &bias;
    p.n_logit_bias = 1;
    bitnet_error err;
    assert_int_equal(bitnet_sampler_new(&p, &s, &err), BITNET_OK);
    assert_false(bitnet_sampler_is_greedy(s));
    bitnet_sampler_free(s);
}

/* bn_argmax_ref (the rule of every backend's argmax op, i.e. of greedy
 * decoding on a device) picks what the greedy sampler picks, on rows with
 * ties, NaN and infinities, and rows that are all NaN or all -inf. */
static void test_argmax_ref(void **state) {
    (void)state;
    enum { N = 301 };
    uint32_t seed = 77;
    float row[N];
    bitnet_sampler_params p;
    bitnet_sampler_params_default(&p);
    p.temperature = 0.0f;
    bitnet_sampler *smp = NULL;
    assert_int_equal(bitnet_sampler_new(&p, &smp, NULL), BITNET_OK);
    for (int c = 0; c < 40; c++) {
        int n = 1 + (int)(lcg(&seed) % N);
        for (int i = 0; i < n; i++) row[i] = (float)((int)(lcg(&seed) % 2001u) - 1000) / 7.0f;
        int a = (int)(lcg(&seed) % (uint64_t)n), b = (int)(lcg(&seed) % (uint64_t)n);
        switch (c % 6) {
        case 1: row[a] = row[b] = 1e3f; break;
        case 2: row[a] = NAN; break;
        case 3: row[a] = INFINITY, row[b] = NAN; break;
        case 4: for (int i = 0; i < n; i++) row[i] = i % 2 ? NAN : -INFINITY; break;
        case 5: for (int i = 0; i < n; i++) row[i] = NAN; break;
        default: break;
        }
        int32_t want = bitnet_sampler_sample(smp, row, n), got = bn_argmax_ref(row, n);
        if (got != want) fail_msg("case %d (n %d): bn_argmax_ref %d, greedy sampler %d", c, n, got, want);
    }
    bitnet_sampler_free(smp);
}

static void test_seed_reproducible(void **state) {
    (void)state;
    enum { V = 1000, N = 300 };
    static float logits[V];
    uint32_t x = 3;
    for (int i = 0; i < V; i++) logits[i] = frand(&x) * 0.5f; /* flat: many plausible tokens */
    bitnet_sampler *a = make(1.0f, 0, 1.0f, 0.0f, 42), *b = make(1.0f, 0, 1.0f, 0.0f, 42);
    bitnet_sampler *c = make(1.0f, 0, 1.0f, 0.0f, 43);
    int32_t first[N];
    int differ = 0;
    for (int i = 0; i < N; i++) {
        first[i] = bitnet_sampler_sample(a, logits, V);
        assert_int_equal(first[i], bitnet_sampler_sample(b, logits, V));
        differ += first[i] != bitnet_sampler_sample(c, logits, V);
    }
    assert_true(differ > N / 2);
    /* reset restarts the same sequence */
    bitnet_sampler_reset(a);
    for (int i = 0; i < N; i++) assert_int_equal(first[i], bitnet_sampler_sample(a, logits, V));
    assert_true(bitnet_sampler_seed(a) == 42);
    bitnet_sampler_free(a);
    bitnet_sampler_free(b);
    bitnet_sampler_free(c);
    /* A random seed is reported and reproduces the run when given back. */
    bitnet_sampler *r = make(1.0f, 0, 1.0f, 0.0f, BITNET_SEED_RANDOM);
    bitnet_sampler *r2 = make(1.0f, 0, 1.0f, 0.0f, bitnet_sampler_seed(r));
    assert_true(bitnet_sampler_seed(r) != BITNET_SEED_RANDOM);
    for (int i = 0; i < 50; i++) assert_int_equal(bitnet_sampler_sample(r, logits, V), bitnet_sampler_sample(r2, logits, V));
    bitnet_sampler_free(r);
    bitnet_sampler_free(r2);
}

static void test_temperature_one_matches_softmax(void **state) {
    (void)state;
    const double probs[5] = {0.4, 0.3, 0.15, 0.1, 0.05};
    float logits[5];
    int counts[5];
    from_probs(probs, 5, logits);
    bitnet_sampler *s = make(1.0f, 0, 1.0f, 0.0f, 9);
    enum { D = 40000 };
    histogram(s, logits, 5, D, counts);
    for (int i = 0; i < 5; i++) assert_true(fabs(counts[i] / (double)D - probs[i]) < 0.01);
    bitnet_sampler_free(s);
    /* Lower temperature sharpens, higher flattens. */
    bitnet_sampler *cold = make(0.3f, 0, 1.0f, 0.0f, 9), *hot = make(3.0f, 0, 1.0f, 0.0f, 9);
    int cold_counts[5], hot_counts[5];
    histogram(cold, logits, 5, 4000, cold_counts);
    histogram(hot, logits, 5, 4000, hot_counts);
    assert_true(cold_counts[0] > 0.6 * 4000);
    assert_true(hot_counts[0] < 0.3 * 4000 && hot_counts[4] > 0.1 * 4000);
    bitnet_sampler_free(cold);
    bitnet_sampler_free(hot);
}

static void test_top_k(void **state) {
    (void)state;
    const double probs[6] = {0.05, 0.3, 0.1, 0.25, 0.2, 0.1};
    float logits[6];
    int counts[6];
    from_probs(probs, 6, logits);
    bitnet_sampler *s = make(1.0f, 3, 1.0f, 0.0f, 5); /* keeps 1, 3, 4 */
    histogram(s, logits, 6, 20000, counts);
    assert_int_equal(counts[0] + counts[2] + counts[5], 0);
    /* renormalised within the three: 0.3/0.75, 0.25/0.75, 0.2/0.75 */
    assert_true(fabs(counts[1] / 20000.0 - 0.4) < 0.015);
    assert_true(fabs(counts[3] / 20000.0 - 1.0 / 3) < 0.015);
    assert_true(fabs(counts[4] / 20000.0 - 0.2667) < 0.015);
    bitnet_sampler_free(s);
    /* top-p applies to the top-k distribution renormalised: 0.4 + 0.333 >= 0.7
     * keeps {1, 3} (over the full distribution it would keep {1, 3, 4}). */
    s = make(1.0f, 3, 0.7f, 0.0f, 5);
    histogram(s, logits, 6, 5000, counts);
    assert_int_equal(counts[0] + counts[2] + counts[4] + counts[5], 0);
    assert_true(counts[1] > 2500 && counts[3] > 2000);
    bitnet_sampler_free(s);
    s = make(1.0f, 1, 1.0f, 0.0f, 5); /* top-1 = greedy */
    for (int i = 0; i < 100; i++) assert_int_equal(bitnet_sampler_sample(s, logits, 6), 1);
    bitnet_sampler_free(s);
}

static void test_top_p(void **state) {
    (void)state;
    const double probs[4] = {0.15, 0.5, 0.05, 0.3};
    float logits[4];
    int counts[4];
    from_probs(probs, 4, logits);
    bitnet_sampler *s = make(1.0f, 0, 0.75f, 0.0f, 11); /* 0.5 + 0.3 >= 0.75: keeps 1, 3 */
    histogram(s, logits, 4, 10000, counts);
    assert_int_equal(counts[0] + counts[2], 0);
    assert_true(counts[1] > 5800 && counts[1] < 6700); /* 0.5 / 0.8 = 0.625 */
    bitnet_sampler_free(s);
    s = make(1.0f, 0, 0.85f, 0.0f, 11); /* needs 0.15 too: keeps 1, 3, 0 */
    histogram(s, logits, 4, 10000, counts);
    assert_int_equal(counts[2], 0);
    assert_true(counts[0] > 1200);
    bitnet_sampler_free(s);
    s = make(1.0f, 0, 0.0f, 0.0f, 11); /* p = 0 still keeps the best token */
    for (int i = 0; i < 100; i++) assert_int_equal(bitnet_sampler_sample(s, logits, 4), 1);
    bitnet_sampler_free(s);
}

/* top-p on a large, nearly flat vocabulary: the kept set is far larger than
 * the first partial selection, so the selection must grow. */
static void test_top_p_large_flat(void **state) {
    (void)state;
    enum { V = 50000 };
    static float logits[V];
    for (int i = 0; i < V; i++) logits[(i * 7919) % V] = -(float)i * 2e-5f; /* rank i at a scrambled id */
    double z = 0;
    for (int i = 0; i < V; i++) z += exp(-(double)i * 2e-5);
    double cum = 0;
    int cutoff = 0; /* ranks < cutoff are kept */
    while (cum < 0.5 * z) cum += exp(-(double)cutoff++ * 2e-5);
    bitnet_sampler *s = make(1.0f, 0, 0.5f, 0.0f, 2);
    int max_rank = 0;
    for (int i = 0; i < 3000; i++) {
        int32_t t = bitnet_sampler_sample(s, logits, V);
        int rank = (int)(-logits[t] / 2e-5f + 0.5f);
        assert_true(rank < cutoff + 2);
        if (rank > max_rank) max_rank = rank;
    }
    assert_true(max_rank > cutoff * 9 / 10); /* the tail of the kept set is reachable */
    bitnet_sampler_free(s);
}

static void test_min_p(void **state) {
    (void)state;
    const double probs[5] = {0.1, 0.6, 0.05, 0.2, 0.05};
    float logits[5];
    int counts[5];
    from_probs(probs, 5, logits);
    /* threshold 0.25 × 0.6 = 0.15: keeps 1 and 3; once alone, once after top-k */
    int top_ks[2] = {0, 5};
    for (int c = 0; c < 2; c++) {
        bitnet_sampler *s = make(1.0f, top_ks[c], 1.0f, 0.25f, 13);
        histogram(s, logits, 5, 10000, counts);
        assert_int_equal(counts[0] + counts[2] + counts[4], 0);
        assert_true(counts[1] > 7200 && counts[1] < 7800); /* 0.6 / 0.8 = 0.75 */
        bitnet_sampler_free(s);
    }
    bitnet_sampler *s = make(1.0f, 0, 1.0f, 0.1f, 13); /* 0.06: keeps 0, 1, 3 */
    histogram(s, logits, 5, 10000, counts);
    assert_int_equal(counts[2] + counts[4], 0);
    assert_true(counts[0] > 700);
    bitnet_sampler_free(s);
}

static bitnet_sampler *make_penalised(float repeat, float freq, float presence, int last_n) {
    bitnet_sampler_params p;
    bitnet_sampler_params_default(&p);
    p.temperature = 0;
    p.repeat_penalty = repeat;
    p.frequency_penalty = freq;
    p.presence_penalty = presence;
    p.penalty_last_n = last_n;
    bitnet_sampler *s = NULL;
    assert_int_equal(bitnet_sampler_new(&p, &s, NULL), BITNET_OK);
    return s;
}

static void test_repeat_penalty(void **state) {
    (void)state;
    float logits[8] = {2.0f, 1.9f, -1.0f, -1.1f, 0.5f, 0.1f, 0.2f, 0.3f};
    bitnet_sampler *s = make_penalised(1.2f, 0, 0, 64);
    assert_int_equal(bitnet_sampler_sample(s, logits, 8), 0);
    bitnet_sampler_accept(s, 0); /* 2.0 / 1.2 = 1.67 < 1.9 */
    assert_int_equal(bitnet_sampler_sample(s, logits, 8), 1);
    bitnet_sampler_reset(s);
    assert_int_equal(bitnet_sampler_sample(s, logits, 8), 0);
    bitnet_sampler_free(s);
    /* Negative logits are multiplied (made more negative), not divided. */
    float neg[3] = {-1.0f, -1.1f, -5.0f};
    s = make_penalised(1.2f, 0, 0, 64);
    bitnet_sampler_accept(s, 0); /* -1.2 < -1.1 */
    assert_int_equal(bitnet_sampler_sample(s, neg, 3), 1);
    bitnet_sampler_free(s);
    /* Out-of-range history tokens are ignored. */
    s = make_penalised(1.2f, 0, 0, 64);
    bitnet_sampler_accept(s, 100);
    bitnet_sampler_accept(s, -3);
    assert_int_equal(bitnet_sampler_sample(s, logits, 8), 0);
    bitnet_sampler_free(s);
}

static void test_frequency_presence(void **state) {
    (void)state;
    float logits[4] = {2.0f, 1.9f, 0.0f, 0.0f};
    /* frequency 0.04: one repeat → 1.96 (still 0); three → 1.88 (now 1) */
    bitnet_sampler *s = make_penalised(1.0f, 0.04f, 0, 64);
    bitnet_sampler_accept(s, 0);
    assert_int_equal(bitnet_sampler_sample(s, logits, 4), 0);
    bitnet_sampler_accept(s, 0);
    bitnet_sampler_accept(s, 0);
    assert_int_equal(bitnet_sampler_sample(s, logits, 4), 1);
    bitnet_sampler_free(s);
    /* presence 0.08 does not grow with the count: 1.92 > 1.9; 0.12 → 1.88 */
    s = make_penalised(1.0f, 0, 0.08f, 64);
    for (int i = 0; i < 5; i++) bitnet_sampler_accept(s, 0);
    assert_int_equal(bitnet_sampler_sample(s, logits, 4), 0);
    bitnet_sampler_free(s);
    s = make_penalised(1.0f, 0, 0.12f, 64);
    bitnet_sampler_accept(s, 0);
    assert_int_equal(bitnet_sampler_sample(s, logits, 4), 1);
    bitnet_sampler_free(s);
}

static void test_penalty_window(void **state) {
    (void)state;
    float logits[8] = {2.0f, 1.9f, 0, 0, 0, 0, 0, 0};
    bitnet_sampler *s = make_penalised(1.5f, 0, 0, 2);
    bitnet_sampler_accept(s, 0);
    bitnet_sampler_accept(s, 5);
    assert_int_equal(bitnet_sampler_sample(s, logits, 8), 1); /* 0 is in the last 2 */
    bitnet_sampler_accept(s, 6);
    assert_int_equal(bitnet_sampler_sample(s, logits, 8), 0); /* 0 has left the window */
    bitnet_sampler_free(s);
    s = make_penalised(1.5f, 0, 0, 0); /* window 0: no penalty */
    bitnet_sampler_accept(s, 0);
    assert_int_equal(bitnet_sampler_sample(s, logits, 8), 0);
    bitnet_sampler_free(s);
    s = make_penalised(1.5f, 0, 0, -1); /* whole history, grows past its first block */
    bitnet_sampler_accept(s, 0);
    for (int i = 0; i < 1000; i++) bitnet_sampler_accept(s, 2 + i % 6);
    assert_int_equal(bitnet_sampler_sample(s, logits, 8), 1);
    bitnet_sampler_free(s);
}

static void test_logit_bias(void **state) {
    (void)state;
    float logits[6] = {1.0f, 3.0f, 2.5f, 0.0f, -1.0f, 2.0f};
    bitnet_logit_bias bias[3] = {{3, 5.0f}, {1, -INFINITY}, {99, 100.0f}};
    bitnet_sampler_params p;
    bitnet_sampler_params_default(&p);
    p.temperature = 0;
    p.logit_bias = bias;
    p.n_logit_bias = 1;
    bitnet_sampler *s = NULL;
    assert_int_equal(bitnet_sampler_new(&p, &s, NULL), BITNET_OK);
    assert_int_equal(bitnet_sampler_sample(s, logits, 6), 3);
    bitnet_sampler_free(s);
    p.logit_bias = bias + 1; /* ban the argmax; id 99 is past the vocabulary: ignored */
    p.n_logit_bias = 2;
    assert_int_equal(bitnet_sampler_new(&p, &s, NULL), BITNET_OK);
    bias[1].bias = 0; /* the sampler keeps its own copy */
    assert_int_equal(bitnet_sampler_sample(s, logits, 6), 2);
    bitnet_sampler_free(s);
    /* A banned token is never drawn when sampling either. */
    bias[1].bias = -INFINITY;
    p.temperature = 2.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0;
    p.seed = 4;
    assert_int_equal(bitnet_sampler_new(&p, &s, NULL), BITNET_OK);
    int counts[6];
    histogram(s, logits, 6, 3000, counts);
    assert_int_equal(counts[1], 0);
    assert_true(counts[4] > 0);
    bitnet_sampler_free(s);
}

static void test_bad_params(void **state) {
    (void)state;
    bitnet_sampler_params p;
    bitnet_sampler *s = NULL;
    bitnet_error err;
    for (int c = 0; c < 6; c++) { /* one bad field per case */
        bitnet_sampler_params_default(&p);
        switch (c) {
        case 0: p.top_p = 1.5f; break;
        case 1: p.min_p = -0.1f; break;
        case 2: p.repeat_penalty = 0.0f; break;
        case 3: p.temperature = NAN; break;
        case 4: p.top_k = -1; break;
        case 5: p.penalty_last_n = -2; break;
        }
        assert_int_equal(bitnet_sampler_new(&p, &s, &err), BITNET_E_INVALID_ARG);
        assert_null(s);
        assert_true(strlen(err.message) > 0);
    }
    bitnet_logit_bias bad = {-1, 1.0f};
    bitnet_sampler_params_default(&p);
    p.logit_bias = &bad;
    p.n_logit_bias = 1;
    assert_int_equal(bitnet_sampler_new(&p, &s, &err), BITNET_E_INVALID_ARG);
    /* bad sample arguments */
    assert_int_equal(bitnet_sampler_new(NULL, &s, &err), BITNET_OK);
    float l[2] = {0, 1};
    assert_int_equal(bitnet_sampler_sample(s, NULL, 2), -1);
    assert_int_equal(bitnet_sampler_sample(s, l, 0), -1);
    bitnet_sampler_free(s);
}

/* A 2B4T-sized vocabulary with the default chain: results stay within the
 * top-k and the hot path never does a full sort (this would be slow). */
static void test_large_vocab_default_chain(void **state) {
    (void)state;
    enum { V = 128256 };
    float *logits = malloc(V * sizeof *logits);
    uint32_t x = 99;
    for (int i = 0; i < V; i++) logits[i] = frand(&x) * 2.0f;
    int32_t top[40];
    bn_top_k(logits, V, 40, top);
    bitnet_sampler_params p;
    bitnet_sampler_params_default(&p);
    p.seed = 1;
    p.min_p = 0;
    p.top_p = 1.0f;
    bitnet_sampler *s = NULL;
    assert_int_equal(bitnet_sampler_new(&p, &s, NULL), BITNET_OK);
    for (int i = 0; i < 300; i++) {
        int32_t t = bitnet_sampler_sample(s, logits, V);
        int found = 0;
        for (int j = 0; j < 40; j++) found |= top[j] == t;
        assert_true(found);
        bitnet_sampler_accept(s, t);
    }
    bitnet_sampler_free(s);
    free(logits);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topk_matches_sort),
        cmocka_unit_test(test_greedy_is_argmax),
        cmocka_unit_test(test_is_greedy),
        cmocka_unit_test(test_argmax_ref),
        cmocka_unit_test(test_seed_reproducible),
        cmocka_unit_test(test_temperature_one_matches_softmax),
        cmocka_unit_test(test_top_k),
        cmocka_unit_test(test_top_p),
        cmocka_unit_test(test_top_p_large_flat),
        cmocka_unit_test(test_min_p),
        cmocka_unit_test(test_repeat_penalty),
        cmocka_unit_test(test_frequency_presence),
        cmocka_unit_test(test_penalty_window),
        cmocka_unit_test(test_logit_bias),
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_large_vocab_default_chain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
