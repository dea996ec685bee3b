/* Multi-sequence batches (bitnet_eval_batch) on the CPU, on both kit models:
 * several sequences of different lengths evaluated together must give the
 * logits each gives alone in its own context — prompts, decode steps,
 * interleaved tokens, batches split into n_batch steps, a cleared or
 * truncated sequence reused — and every bad batch must fail cleanly,
 * changing nothing. Greedy evaluation (bitnet_eval_batch_greedy) must pick
 * what a greedy sampler picks from those logits. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bitnet.h"

#define KIT BITNET_SHARED_DIR "/conformance/"
#define N_CTX 48
/* Relative L2. With BITNET_TEST_EXACT=1 (ctest runs it so with the scalar
 * kernels) the results must be bit-identical: every operation computes a
 * token's row the same way whatever else is in the batch. The SIMD output
 * head sums in a different order for one row than for a tile of rows, which
 * gives differences of about 1e-7. */
#define TOL (exact ? 0.0 : 1e-4)
static int exact;

static const char *model_paths[] = {KIT "tiny-bitnet/gguf/tiny-bitnet-i2_s.gguf",
                                    KIT "tiny-llama-ternary/gguf/tiny-llama-ternary-i2_s.gguf"};
#define N_MODELS 2
static bitnet_model *models[N_MODELS];
static double worst; /* largest difference seen, reported at the end */

static int setup(void **state) {
    (void)state;
    const char *x = getenv("BITNET_TEST_EXACT");
    exact = x && !strcmp(x, "1");
    bitnet_error err;
    for (int i = 0; i < N_MODELS; i++)
        if (bitnet_model_load(model_paths[i], NULL, &models[i], &err) != BITNET_OK) {
            fprintf(stderr, "cannot load %s: %s\n", model_paths[i], err.message);
            return -1;
        }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (int i = 0; i < N_MODELS; i++) bitnet_model_free(models[i]);
    printf("batch: largest relative L2 difference batched vs alone: %.3g (CPU kernels %s%s)\n", worst,
           bitnet_cpu_kernels(), exact ? ", bit-exact required" : "");
    return 0;
}

static int n_vocab(const bitnet_model *m) {
    bitnet_model_info mi;
    bitnet_model_get_info(m, &mi);
    return mi.n_vocab;
}

static bitnet_context *new_ctx(bitnet_model *m, int n_seq, int n_ctx, int n_batch) {
    bitnet_context_params cp;
    bitnet_context_params_default(&cp);
    cp.n_ctx = n_ctx;
    cp.n_seq = n_seq;
    if (n_batch) cp.n_batch = n_batch;
    cp.n_threads = 2;
    cp.device = "cpu";
    bitnet_context *ctx = NULL;
    bitnet_error err;
    assert_int_equal(bitnet_context_create(m, &cp, &ctx, &err), BITNET_OK);
    return ctx;
}

/* Deterministic token ids: sequence s, index i. */
static int32_t tok_of(int s, int i, int V) { return (int32_t)((s * 7919u + i * 104729u + 17u) % (unsigned)V); }

/* ||a - b|| / ||b|| */
static double rel_l2(const float *a, const float *b, int n) {
    double d = 0.0, r = 0.0;
    for (int i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        r += (double)b[i] * b[i];
    }
    return sqrt(d / (r > 0 ? r : 1.0));
}

static void expect_close(const float *got, const float *want, int n, const char *what) {
    assert_non_null(got);
    assert_non_null(want);
    double e = rel_l2(got, want, n);
    if (e > worst) worst = e;
    if (e > TOL) fail_msg("%s: relative L2 difference %.3g > %.1g", what, e, TOL);
}

/* Reference: the tokens of one sequence evaluated alone, in one context, in
 * steps of the given lengths (0-terminated); every token's logits kept, so
 * that ref + i * V is token i's row. */
static float *reference(bitnet_model *m, const int32_t *toks, const int *steps) {
    int V = n_vocab(m), total = 0;
    for (int k = 0; steps[k]; k++) total += steps[k];
    float *ref = malloc((size_t)total * V * sizeof *ref);
    assert_non_null(ref);
    bitnet_context *ctx = new_ctx(m, 1, N_CTX, 0);
    bitnet_error err;
    for (int k = 0, done = 0; steps[k]; done += steps[k++]) {
        assert_int_equal(bitnet_eval(ctx, toks + done, steps[k], BITNET_LOGITS_ALL, &err), BITNET_OK);
        for (int i = 0; i < steps[k]; i++)
            memcpy(ref + (size_t)(done + i) * V, bitnet_get_logits(ctx, i), (size_t)V * sizeof *ref);
    }
    bitnet_context_free(ctx);
    return ref;
}

/* Prompts of different lengths in one batch (the last token's logits of
 * each), then decode steps of one token per sequence. */
static void prompts_then_decode(bitnet_model *m, int n_batch) {
    enum { S = 4, STEPS = 3 };
    const int plen[S] = {5, 9, 1, 13};
    int V = n_vocab(m);
    int32_t toks[S][N_CTX];
    float *ref[S];
    for (int s = 0; s < S; s++) {
        for (int i = 0; i < plen[s] + STEPS; i++) toks[s][i] = tok_of(s, i, V);
        int steps[] = {plen[s], 1, 1, 1, 0};
        ref[s] = reference(m, toks[s], steps);
    }
    bitnet_context *ctx = new_ctx(m, S, N_CTX, n_batch);
    bitnet_error err;
    int32_t bt[64], bs[64];
    int n = 0;
    for (int s = 0; s < S; s++)
        for (int i = 0; i < plen[s]; i++) bt[n] = toks[s][i], bs[n++] = s;
    bitnet_batch b = {n, bt, bs, NULL};
    assert_int_equal(bitnet_eval_batch(ctx, &b, &err), BITNET_OK);
    for (int i = 0, s = 0; i < n; i++) {
        int last = i == n - 1 || bs[i + 1] != bs[i];
        if (!last) {
            assert_null(bitnet_get_logits(ctx, i));
            continue;
        }
        expect_close(bitnet_get_logits(ctx, i), ref[s] + (size_t)(plen[s] - 1) * V, V, "prompt");
        s++;
    }
    for (int k = 0; k < STEPS; k++) {
        for (int s = 0; s < S; s++) bt[s] = toks[s][plen[s] + k], bs[s] = s;
        bitnet_batch d = {S, bt, bs, NULL};
        assert_int_equal(bitnet_eval_batch(ctx, &d, &err), BITNET_OK);
        for (int s = 0; s < S; s++) {
            expect_close(bitnet_get_logits(ctx, s), ref[s] + (size_t)(plen[s] + k) * V, V, "decode step");
            assert_int_equal(bitnet_seq_n_past(ctx, s), plen[s] + k + 1);
        }
    }
    bitnet_context_free(ctx);
    for (int s = 0; s < S; s++) free(ref[s]);
}

static void test_prompts_then_decode(void **state) {
    (void)state;
    for (int i = 0; i < N_MODELS; i++) {
        prompts_then_decode(models[i], 0);
        prompts_then_decode(models[i], 5); /* batches split into steps of 5 tokens */
    }
}

/* Tokens of three sequences interleaved round-robin, every logit kept, in
 * several batches; one sequence's tokens also span two batches. */
static void interleaved(bitnet_model *m) {
    enum { S = 3, LEN = 11 };
    int V = n_vocab(m);
    int32_t toks[S][LEN];
    float *ref[S];
    int split = 6; /* tokens per sequence in the first batch */
    for (int s = 0; s < S; s++) {
        for (int i = 0; i < LEN; i++) toks[s][i] = tok_of(s + 10, i, V);
        int steps[] = {split, LEN - split, 0};
        ref[s] = reference(m, toks[s], steps);
    }
    bitnet_context *ctx = new_ctx(m, S, N_CTX, 4);
    bitnet_error err;
    for (int part = 0; part < 2; part++) {
        int32_t bt[S * LEN], bs[S * LEN], at[S * LEN];
        int8_t keep[S * LEN];
        int n = 0, i0 = part ? split : 0, i1 = part ? LEN : split;
        for (int i = i0; i < i1; i++)
            for (int s = 0; s < S; s++) bt[n] = toks[s][i], bs[n] = s, at[n] = i, keep[n++] = 1;
        bitnet_batch b = {n, bt, bs, keep};
        assert_int_equal(bitnet_eval_batch(ctx, &b, &err), BITNET_OK);
        for (int k = 0; k < n; k++)
            expect_close(bitnet_get_logits(ctx, k), ref[bs[k]] + (size_t)at[k] * V, V, "interleaved");
    }
    bitnet_context_free(ctx);
    for (int s = 0; s < S; s++) free(ref[s]);
}

static void test_interleaved(void **state) {
    (void)state;
    for (int i = 0; i < N_MODELS; i++) interleaved(models[i]);
}

/* A sequence cleared and reused for a new text, and one truncated and
 * continued differently, while the others go on. */
static void test_reuse(void **state) {
    (void)state;
    bitnet_model *m = models[0];
    int V = n_vocab(m);
    bitnet_context *ctx = new_ctx(m, 3, N_CTX, 0);
    bitnet_error err;
    int32_t a[8], c[12], fresh[6];
    for (int i = 0; i < 8; i++) a[i] = tok_of(1, i, V);
    for (int i = 0; i < 12; i++) c[i] = tok_of(2, i, V);
    for (int i = 0; i < 6; i++) fresh[i] = tok_of(3, i, V);
    /* sequence 0 <- a[0..8), 1 <- c[0..8), 2 <- c[0..5) */
    int32_t bt[32], bs[32];
    int n = 0;
    for (int i = 0; i < 8; i++) bt[n] = a[i], bs[n++] = 0;
    for (int i = 0; i < 8; i++) bt[n] = c[i], bs[n++] = 1;
    for (int i = 0; i < 5; i++) bt[n] = c[i], bs[n++] = 2;
    bitnet_batch b = {n, bt, bs, NULL};
    assert_int_equal(bitnet_eval_batch(ctx, &b, &err), BITNET_OK);
    /* Clear 0 and give it `fresh`; cut 1 back to 3 tokens and continue it
     * with c[8..12); sequence 2 continues with c[5..8). */
    assert_int_equal(bitnet_seq_truncate(ctx, 0, 0, &err), BITNET_OK);
    assert_int_equal(bitnet_seq_truncate(ctx, 1, 3, &err), BITNET_OK);
    assert_int_equal(bitnet_seq_n_past(ctx, 0), 0);
    assert_int_equal(bitnet_seq_n_past(ctx, 1), 3);
    assert_non_null(bitnet_get_logits(ctx, -1)); /* truncating a sequence keeps the logits */
    n = 0;
    for (int i = 0; i < 6; i++) bt[n] = fresh[i], bs[n++] = 0;
    for (int i = 8; i < 12; i++) bt[n] = c[i], bs[n++] = 1;
    for (int i = 5; i < 8; i++) bt[n] = c[i], bs[n++] = 2;
    bitnet_batch b2 = {n, bt, bs, NULL};
    assert_int_equal(bitnet_eval_batch(ctx, &b2, &err), BITNET_OK);
    int steps0[] = {6, 0}, steps2[] = {8, 0};
    int32_t cut[7] = {c[0], c[1], c[2], c[8], c[9], c[10], c[11]};
    int steps1[] = {7, 0};
    float *r0 = reference(m, fresh, steps0), *r1 = reference(m, cut, steps1), *r2 = reference(m, c, steps2);
    expect_close(bitnet_get_logits(ctx, 5), r0 + (size_t)5 * V, V, "cleared sequence reused");
    expect_close(bitnet_get_logits(ctx, 9), r1 + (size_t)6 * V, V, "truncated sequence continued");
    expect_close(bitnet_get_logits(ctx, 12), r2 + (size_t)7 * V, V, "untouched sequence");
    free(r0), free(r1), free(r2);
    bitnet_context_free(ctx);
}

/* bitnet_eval on a context of several sequences is sequence 0: it and
 * batches for sequence 0 continue each other. */
static void test_mixed_with_eval(void **state) {
    (void)state;
    bitnet_model *m = models[0];
    int V = n_vocab(m);
    int32_t t0[10], t1[4];
    for (int i = 0; i < 10; i++) t0[i] = tok_of(4, i, V);
    for (int i = 0; i < 4; i++) t1[i] = tok_of(5, i, V);
    int steps[] = {10, 0}, steps1[] = {4, 0};
    float *r0 = reference(m, t0, steps), *r1 = reference(m, t1, steps1);
    bitnet_context *ctx = new_ctx(m, 2, N_CTX, 0);
    bitnet_error err;
    assert_int_equal(bitnet_eval(ctx, t0, 4, BITNET_LOGITS_LAST, &err), BITNET_OK);
    assert_int_equal(bitnet_seq_n_past(ctx, 0), 4);
    assert_int_equal(bitnet_context_n_past(ctx), 4);
    int32_t bt[] = {t0[4], t1[0], t0[5], t1[1], t1[2], t1[3]}, bs[] = {0, 1, 0, 1, 1, 1};
    bitnet_batch b = {6, bt, bs, NULL};
    assert_int_equal(bitnet_eval_batch(ctx, &b, &err), BITNET_OK);
    expect_close(bitnet_get_logits(ctx, 2), r0 + (size_t)5 * V, V, "batch after eval");
    expect_close(bitnet_get_logits(ctx, -1), r1 + (size_t)3 * V, V, "second sequence");
    assert_int_equal(bitnet_eval(ctx, t0 + 6, 4, BITNET_LOGITS_ALL, &err), BITNET_OK);
    for (int i = 0; i < 4; i++)
        expect_close(bitnet_get_logits(ctx, i), r0 + (size_t)(6 + i) * V, V, "eval after batch");
    assert_int_equal(bitnet_seq_n_past(ctx, 0), 10);
    assert_int_equal(bitnet_seq_n_past(ctx, 1), 4);
    /* bitnet_kv_truncate is sequence 0's */
    assert_int_equal(bitnet_kv_truncate(ctx, 2, &err), BITNET_OK);
    assert_int_equal(bitnet_seq_n_past(ctx, 0), 2);
    assert_int_equal(bitnet_seq_n_past(ctx, 1), 4);
    /* a batch without seq ids is sequence 0; on a one-sequence context too */
    bitnet_batch b0 = {8, t0 + 2, NULL, NULL};
    assert_int_equal(bitnet_eval_batch(ctx, &b0, &err), BITNET_OK);
    expect_close(bitnet_get_logits(ctx, -1), r0 + (size_t)9 * V, V, "batch without seq ids");
    bitnet_context *one = new_ctx(m, 1, N_CTX, 0);
    assert_int_equal(bitnet_context_n_seq(one), 1);
    bitnet_batch b1 = {10, t0, NULL, NULL};
    assert_int_equal(bitnet_eval_batch(one, &b1, &err), BITNET_OK);
    expect_close(bitnet_get_logits(one, -1), r0 + (size_t)9 * V, V, "one-sequence context");
    bitnet_context_free(one);
    bitnet_context_free(ctx);
    free(r0), free(r1);
}

static void expect_unchanged(bitnet_context *ctx, const int *n_past, int S) {
    for (int s = 0; s < S; s++) assert_int_equal(bitnet_seq_n_past(ctx, s), n_past[s]);
}

static void test_errors(void **state) {
    (void)state;
    bitnet_model *m = models[0];
    int V = n_vocab(m);
    enum { S = 3, CTX = 16 };
    bitnet_context *ctx = new_ctx(m, S, CTX, 0);
    bitnet_error err;
    int32_t bt[32], bs[32];
    for (int i = 0; i < 32; i++) bt[i] = tok_of(6, i, V), bs[i] = 1;
    bitnet_batch fill = {14, bt, bs, NULL};
    assert_int_equal(bitnet_eval_batch(ctx, &fill, &err), BITNET_OK);
    int n_past[S] = {0, 14, 0};
    assert_int_equal(bitnet_context_n_seq(ctx), S);

    /* sequence 1 has room for 2 more; 3 more overflow it, whatever the others do */
    int32_t s3[] = {0, 1, 1, 2, 1};
    bitnet_batch over = {5, bt, s3, NULL};
    assert_int_equal(bitnet_eval_batch(ctx, &over, &err), BITNET_E_CONTEXT_FULL);
    assert_non_null(strstr(err.message, "sequence 1"));
    expect_unchanged(ctx, n_past, S);
    assert_non_null(bitnet_get_logits(ctx, -1)); /* a refused batch keeps the last logits */

    int32_t bad_seq[] = {0, 3};
    bitnet_batch bad = {2, bt, bad_seq, NULL};
    assert_int_equal(bitnet_eval_batch(ctx, &bad, &err), BITNET_E_INVALID_ARG);
    assert_non_null(strstr(err.message, "sequence id 3"));
    bad_seq[1] = -1;
    assert_int_equal(bitnet_eval_batch(ctx, &bad, &err), BITNET_E_INVALID_ARG);
    expect_unchanged(ctx, n_past, S);

    int32_t bad_tok[] = {1, V};
    int32_t ok_seq[] = {0, 2};
    bitnet_batch badt = {2, bad_tok, ok_seq, NULL};
    assert_int_equal(bitnet_eval_batch(ctx, &badt, &err), BITNET_E_INVALID_ARG);
    expect_unchanged(ctx, n_past, S);

    bitnet_batch empty = {0, bt, NULL, NULL};
    assert_int_equal(bitnet_eval_batch(ctx, &empty, &err), BITNET_E_INVALID_ARG);
    assert_int_equal(bitnet_eval_batch(ctx, NULL, &err), BITNET_E_INVALID_ARG);
    bitnet_batch notok = {3, NULL, NULL, NULL};
    assert_int_equal(bitnet_eval_batch(ctx, &notok, &err), BITNET_E_INVALID_ARG);
    expect_unchanged(ctx, n_past, S);

    /* exactly full is fine; then one more is not */
    int32_t two[] = {1, 1};
    bitnet_batch fit = {2, bt, two, NULL};
    assert_int_equal(bitnet_eval_batch(ctx, &fit, &err), BITNET_OK);
    assert_int_equal(bitnet_seq_n_past(ctx, 1), CTX);
    bitnet_batch one_more = {1, bt, two, NULL};
    assert_int_equal(bitnet_eval_batch(ctx, &one_more, &err), BITNET_E_CONTEXT_FULL);
    /* bitnet_eval (sequence 0) still has room */
    assert_int_equal(bitnet_eval(ctx, bt, CTX, BITNET_LOGITS_LAST, &err), BITNET_OK);
    assert_int_equal(bitnet_eval(ctx, bt, 1, BITNET_LOGITS_LAST, &err), BITNET_E_CONTEXT_FULL);

    assert_int_equal(bitnet_seq_n_past(ctx, S), -1);
    assert_int_equal(bitnet_seq_n_past(ctx, -1), -1);
    assert_int_equal(bitnet_seq_truncate(ctx, S, 0, &err), BITNET_E_INVALID_ARG);
    assert_int_equal(bitnet_seq_truncate(ctx, 0, -1, &err), BITNET_E_INVALID_ARG);
    bitnet_context_free(ctx);

    bitnet_context_params cp;
    bitnet_context_params_default(&cp);
    assert_int_equal(cp.n_seq, 1);
    cp.device = "cpu";
    cp.n_ctx = CTX;
    cp.n_seq = -1;
    bitnet_context *c2 = NULL;
    assert_int_equal(bitnet_context_create(m, &cp, &c2, &err), BITNET_E_INVALID_ARG);
    cp.n_seq = 1 << 20;
    assert_int_equal(bitnet_context_create(m, &cp, &c2, &err), BITNET_E_INVALID_ARG);
    assert_null(c2);
    /* An old caller's struct (without n_seq) gets one sequence. */
    cp.struct_size = offsetof(bitnet_context_params, n_seq);
    cp.n_seq = 7;
    assert_int_equal(bitnet_context_create(m, &cp, &c2, &err), BITNET_OK);
    assert_int_equal(bitnet_context_n_seq(c2), 1);
    bitnet_context_free(c2);
}

/* bitnet_eval_batch_greedy gives, for every kept row, what a greedy sampler
 * picks from the logits bitnet_eval_batch keeps for the same batch (in a
 * second context fed the same tokens): prompts of several sequences with
 * some middle rows kept, split into n_batch steps, then decode steps fed
 * with the greedy picks. */
static void greedy_matches_sampler(bitnet_model *m) {
    enum { S = 3, STEPS = 4 };
    const int plen[S] = {6, 2, 9};
    int V = n_vocab(m);
    bitnet_context *a = new_ctx(m, S, N_CTX, 5), *g = new_ctx(m, S, N_CTX, 5);
    bitnet_sampler_params sp;
    bitnet_sampler_params_default(&sp);
    sp.temperature = 0.0f;
    bitnet_sampler *smp = NULL;
    bitnet_error err;
    assert_int_equal(bitnet_sampler_new(&sp, &smp, &err), BITNET_OK);
    assert_true(bitnet_sampler_is_greedy(smp));
    int32_t tok[32], seq[32], ids[32];
    int8_t keep[32];
    int n = 0;
    for (int s = 0; s < S; s++)
        for (int i = 0; i < plen[s]; i++, n++) tok[n] = tok_of(s, i, V), seq[n] = s, keep[n] = i == plen[s] - 1 || i == 1;
    bitnet_batch b = {n, tok, seq, keep};
    for (int step = 0; step <= STEPS; step++) {
        assert_int_equal(bitnet_eval_batch(a, &b, &err), BITNET_OK);
        memset(ids, 0x55, sizeof ids);
        assert_int_equal(bitnet_eval_batch_greedy(g, &b, ids, &err), BITNET_OK);
        int kept = 0;
        for (int i = 0; i < b.n_tokens; i++) {
            assert_null(bitnet_get_logits(g, i)); /* greedy keeps no logits */
            const float *row = bitnet_get_logits(a, i);
            if (!row) {
                assert_int_equal(ids[i], -1);
                continue;
            }
            kept++;
            assert_int_equal(ids[i], bitnet_sampler_sample(smp, row, V));
        }
        assert_int_equal(kept, step == 0 ? 2 * S - 1 : S); /* plen 2: rows 1 and last are one */
        for (int s = 0; s < S; s++) assert_int_equal(bitnet_seq_n_past(g, s), bitnet_seq_n_past(a, s));
        /* Next: one token per sequence, the greedy pick of its last row. */
        int32_t next[S];
        for (int i = 0; i < b.n_tokens; i++)
            if (ids[i] >= 0) next[b.seq ? b.seq[i] : 0] = ids[i];
        for (int s = 0; s < S; s++) tok[s] = next[s], seq[s] = s;
        b = (bitnet_batch){S, tok, seq, NULL};
    }
    /* No row kept: every id is -1, and the tokens still enter the cache. */
    int8_t none[S] = {0, 0, 0};
    bitnet_batch quiet = {S, tok, seq, none};
    int before0 = bitnet_seq_n_past(g, 0);
    memset(ids, 0x55, sizeof ids);
    assert_int_equal(bitnet_eval_batch_greedy(g, &quiet, ids, &err), BITNET_OK);
    for (int s = 0; s < S; s++) assert_int_equal(ids[s], -1);
    assert_int_equal(bitnet_seq_n_past(g, 0), before0 + 1);
    /* Errors change nothing. */
    assert_int_equal(bitnet_eval_batch_greedy(g, &b, NULL, &err), BITNET_E_INVALID_ARG);
    int32_t bad_seq[S] = {0, S, 1};
    bitnet_batch bad = {S, tok, bad_seq, NULL};
    int before = bitnet_seq_n_past(g, 0);
    assert_int_equal(bitnet_eval_batch_greedy(g, &bad, ids, &err), BITNET_E_INVALID_ARG);
    assert_int_equal(bitnet_seq_n_past(g, 0), before);
    bitnet_sampler_free(smp);
    bitnet_context_free(a);
    bitnet_context_free(g);
}

static void test_greedy(void **state) {
    (void)state;
    for (int i = 0; i < N_MODELS; i++) greedy_matches_sampler(models[i]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_prompts_then_decode), cmocka_unit_test(test_interleaved),
        cmocka_unit_test(test_reuse),               cmocka_unit_test(test_mixed_with_eval),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
