/* CPU kernel benchmark: prints figures, judges nothing.
 *
 *   bench_kernels [-t THREADS] [--quick] [--no-e2e] [--no-kernels]
 *
 * 1. Read-bandwidth probe (the roofline): one pass over a 1 GiB buffer, 1 and
 *    THREADS threads.
 * 2. Per kernel, one thread, every level this CPU runs: ternary GEMV/GEMM on
 *    cache-resident and 2B4T shapes, the F16 and Q8_0 head, quantization —
 *    GB/s of weights, GOP/s (2 ops per weight per token) and speedup over the
 *    scalar level (and over the per-weight reference).
 * 3. End to end on synthetic models with 2B4T's shapes (random weights, F16
 *    tied head): decode tok/s (tg) and prompt tok/s (pp128) at THREADS
 *    threads, with the share of the roofline reached; and a 1M-parameter
 *    model's ms/token on one thread.
 * BITNET_CPU=level restricts sections 2 and 3 to one level.
 *
 * Section 2 times with the thread's CPU time (CLOCK_THREAD_CPUTIME_ID), so
 * that other processes on a shared machine do not distort kernel speeds;
 * sections 1 and 3 use wall time. --reps N repeats the end-to-end decode and
 * prompt runs N times and prints the median (default 3). --head q8_0 runs the
 * end-to-end model with the opt-in int8 head (the F16 head quantized to Q8_0,
 * as `--head q8_0` does at load). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "format/ggml_types.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/kernels_ref.h"
#include "kernels/cpu/threadpool.h"
#include "format/ggml_quantize.h"
#include "model/forward.h"
#include "model/model.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CPU time of the calling thread: single-thread kernel timings. */
static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static int e2e_reps = 3;
static int head_q8 = 0;

static double min_time = 0.3; /* seconds per measurement */

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}

static void *xalloc(size_t n) {
    void *p = aligned_alloc(64, (n + 63) & ~(size_t)63);
    if (!p) {
        fprintf(stderr, "bench_kernels: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

/* Bytes whose four 2-bit codes are all in {0,1,2}. */
static void fill_codes(uint8_t *p, size_t n) {
    uint8_t valid[81];
    for (int i = 0; i < 81; i++) valid[i] = (uint8_t)((i % 3) << 6 | (i / 3 % 3) << 4 | (i / 9 % 3) << 2 | (i / 27));
    size_t pat = n < 65536 ? n : 65536;
    for (size_t i = 0; i < pat; i++) p[i] = valid[rnd() % 81];
    for (size_t i = pat; i < n; i += pat) memcpy(p + i, p, n - i < pat ? n - i : pat);
}

static void fill_f16(uint16_t *p, size_t n, float amp) {
    size_t pat = n < 65536 ? n : 65536;
    for (size_t i = 0; i < pat; i++) p[i] = bn_fp32_to_fp16(((float)(rnd() >> 8) / 8388608.0f - 1.0f) * amp);
    for (size_t i = pat; i < n; i += pat) memcpy(p + i, p, (n - i < pat ? n - i : pat) * 2);
}

/* ---- 1. read bandwidth ---- */

typedef struct probe_job {
    const float *buf;
    int64_t n, chunk;
    const bn_cpu_kernels *k;
    float sink[64];
} probe_job;

static void probe_task(void *ctx, int task, int thread) {
    probe_job *j = ctx;
    int64_t i0 = (int64_t)task * j->chunk, i1 = i0 + j->chunk < j->n ? i0 + j->chunk : j->n;
    /* dot(x, x) loads each line once: one read stream. */
    j->sink[thread] += j->k->dot_f32(j->buf + i0, j->buf + i0, i1 - i0);
}

static double probe_bandwidth(const bn_cpu_kernels *k, int threads, const float *buf, int64_t n) {
    bn_threadpool *pool = bn_threadpool_create(threads);
    probe_job j = {.buf = buf, .n = n, .chunk = (n + threads - 1) / threads, .k = k};
    bn_threadpool_run(pool, threads, probe_task, &j); /* warm-up, page faults */
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now_s();
        bn_threadpool_run(pool, threads, probe_task, &j);
        double gbs = (double)n * 4 / (now_s() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    bn_threadpool_free(pool);
    return best;
}

/* ---- 2. kernels ---- */

typedef void (*ternary_fn)(const bn_ternary *, int64_t, int64_t, const bn_qact *, int, float *, int64_t);

/* Seconds per call, repeating until min_time has passed. */
static double time_ternary(ternary_fn f, const bn_ternary *w, const bn_qact *a, int n_tok, float *y) {
    f(w, 0, w->rows, a, n_tok, y, w->rows);
    int reps = 0;
    double t0 = cpu_s(), t;
    do {
        f(w, 0, w->rows, a, n_tok, y, w->rows);
        reps++;
    } while ((t = cpu_s() - t0) < min_time);
    return t / reps;
}

static void bench_ternary(const bn_cpu_kernels *const *lv, int n_lv, int64_t rows, int64_t cols, int n_tok,
                          const char *what) {
    uint8_t *codes = xalloc((size_t)(rows * cols / 4));
    fill_codes(codes, (size_t)(rows * cols / 4));
    bn_ternary w = {.rows = rows, .cols = cols, .codes = codes, .scale = 0.5f};
    float *x = xalloc((size_t)(n_tok * cols) * 4), *y = xalloc((size_t)(n_tok * rows) * 4);
    for (int64_t i = 0; i < n_tok * cols; i++) x[i] = (float)(rnd() % 2001) / 1000.0f - 1.0f;
    bn_qact a = {xalloc((size_t)(n_tok * cols)), xalloc((size_t)n_tok * 4), xalloc((size_t)n_tok * 4)};
    for (int t = 0; t < n_tok; t++)
        bn_quantize_row_i8_ref(x + t * cols, cols, a.q + t * cols, &a.scale[t], &a.sum[t]);
    double bytes = (double)rows * cols / 4, ops = 2.0 * rows * cols * n_tok;
    double t_ref = rows * cols * (double)n_tok <= 4e7 ? time_ternary(bn_ternary_gemm_ref, &w, &a, n_tok, y) : 0;
    double t_scalar = 0;
    for (int l = 0; l < n_lv; l++) {
        double t = time_ternary(lv[l]->ternary_gemm, &w, &a, n_tok, y);
        if (l == 0) t_scalar = t;
        printf("ternary %-5s %-26s %5lldx%-5lld n_tok=%-3d %8.2f GB/s %8.1f GOP/s  x%6.1f vs scalar", lv[l]->name, what,
               (long long)rows, (long long)cols, n_tok, bytes / t / 1e9, ops / t / 1e9, t_scalar / t);
        if (t_ref > 0) printf("  x%6.1f vs ref", t_ref / t);
        printf("\n");
    }
    free(codes), free(x), free(y), free(a.q), free(a.scale), free(a.sum);
}

static void bench_dense(const bn_cpu_kernels *const *lv, int n_lv, uint32_t type, int64_t rows, int64_t cols) {
    uint64_t rb = bn_ggml_row_bytes(type, cols);
    uint8_t *data = xalloc((size_t)(rb * rows));
    if (type == BN_GGML_F16) fill_f16((uint16_t *)data, (size_t)(rows * cols), 1.0f);
    else
        for (uint64_t i = 0; i < rb * rows; i++) data[i] = (i % 34 == 1) ? 0x20 : (uint8_t)rnd(); /* small fp16 d */
    bn_dense w = {.type = type, .rows = rows, .cols = cols, .data = data, .row_bytes = rb};
    float *x = xalloc((size_t)cols * 4), *y = xalloc((size_t)rows * 4), *scratch = xalloc((size_t)cols * 4);
    for (int64_t i = 0; i < cols; i++) x[i] = (float)(rnd() % 2001) / 1000.0f - 1.0f;
    double t_scalar = 0;
    for (int l = 0; l < n_lv; l++) {
        lv[l]->dense_gemm(&w, 0, rows, x, 1, y, rows, scratch);
        int reps = 0;
        double t0 = cpu_s(), t;
        do {
            lv[l]->dense_gemm(&w, 0, rows, x, 1, y, rows, scratch);
            reps++;
        } while ((t = cpu_s() - t0) < min_time);
        t /= reps;
        if (l == 0) t_scalar = t;
        printf("dense   %-5s %-26s %5lldx%-5lld n_tok=1   %8.2f GB/s %8.1f GFLOP/s x%6.1f vs scalar\n", lv[l]->name,
               bn_ggml_type_name(type), (long long)rows, (long long)cols, (double)rb * rows / t / 1e9,
               2.0 * rows * cols / t / 1e9, t_scalar / t);
    }
    free(data), free(x), free(y), free(scratch);
}

static void bench_quantize(const bn_cpu_kernels *const *lv, int n_lv, int64_t n) {
    float *x = xalloc((size_t)n * 4);
    int8_t *q = xalloc((size_t)n);
    for (int64_t i = 0; i < n; i++) x[i] = (float)(rnd() % 2001) / 1000.0f - 1.0f;
    double t_scalar = 0;
    for (int l = 0; l < n_lv; l++) {
        float s;
        int32_t sum;
        int reps = 0;
        double t0 = cpu_s(), t;
        do {
            lv[l]->quantize_row_i8(x, n, q, &s, &sum);
            reps++;
        } while ((t = cpu_s() - t0) < min_time / 3);
        t /= reps;
        if (l == 0) t_scalar = t;
        printf("quantize %-5s n=%-6lld %8.2f GB/s (f32 in)  x%6.1f vs scalar\n", lv[l]->name, (long long)n,
               (double)n * 4 / t / 1e9, t_scalar / t);
    }
    free(x), free(q);
}

/* ---- 3. end to end ---- */

typedef struct synth_model {
    bitnet_model m;
    uint8_t *codes;
    uint16_t *emb;
    float *ones;
    uint8_t *head_q8; /* the Q8_0 head (--head q8_0) */
} synth_model;

/* A model with the given shape, random ternary weights, a tied F16 head and
 * unit norms: enough for timing (the forward pass does not care what the
 * weights mean). */
static synth_model *synth_create(int n_vocab, int n_embd, int n_layer, int n_head, int n_head_kv, int n_ff) {
    synth_model *s = calloc(1, sizeof *s);
    bitnet_model *m = &s->m;
    bn_hparams *hp = &m->hp;
    hp->n_vocab = n_vocab, hp->n_embd = n_embd, hp->n_layer = n_layer, hp->n_head = n_head;
    hp->n_head_kv = n_head_kv, hp->head_dim = n_embd / n_head, hp->n_ff = n_ff, hp->n_ctx_train = 4096;
    hp->rms_eps = 1e-5f, hp->rope_theta = 500000.0f, hp->rope_neox = 1, hp->has_sub_norms = 1;
    hp->ffn_act = BN_GLU_RELU2;
    m->arch = BN_ARCH_BITNET_B158;
    int64_t E = n_embd, Q = (int64_t)n_head * hp->head_dim, KV = (int64_t)n_head_kv * hp->head_dim, F = n_ff;
    int64_t per_layer = Q * E + 2 * KV * E + E * Q + 2 * F * E + E * F;
    s->codes = xalloc((size_t)(per_layer * n_layer / 4));
    fill_codes(s->codes, (size_t)(per_layer * n_layer / 4));
    s->emb = xalloc((size_t)n_vocab * E * 2);
    fill_f16(s->emb, (size_t)n_vocab * E, 0.05f);
    int64_t widest = F > Q ? F : Q;
    s->ones = xalloc((size_t)widest * 4);
    for (int64_t i = 0; i < widest; i++) s->ones[i] = 1.0f;
    m->tok_embd = (bn_dense){.type = BN_GGML_F16, .rows = n_vocab, .cols = E, .data = (uint8_t *)s->emb,
                             .row_bytes = (uint64_t)E * 2};
    m->output = m->tok_embd;
    m->tied_output = 1;
    m->output_norm = (bn_vec){.n = E, .data = s->ones};
    m->layers = calloc((size_t)n_layer, sizeof *m->layers);
    const uint8_t *c = s->codes;
    for (int l = 0; l < n_layer; l++) {
        bn_layer *L = &m->layers[l];
        L->attn_norm = L->ffn_norm = (bn_vec){.n = E, .data = s->ones};
        L->attn_sub_norm = (bn_vec){.n = Q, .data = s->ones};
        L->ffn_sub_norm = (bn_vec){.n = F, .data = s->ones};
        bn_ternary *ws[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        int64_t shape[7][2] = {{Q, E}, {KV, E}, {KV, E}, {E, Q}, {F, E}, {F, E}, {E, F}};
        for (int i = 0; i < 7; i++) {
            *ws[i] = (bn_ternary){.rows = shape[i][0], .cols = shape[i][1], .codes = c, .scale = 0.02f};
            c += shape[i][0] * shape[i][1] / 4;
        }
    }
    m->n_params = per_layer * n_layer + (int64_t)n_vocab * E;
    return s;
}

/* The opt-in int8 head: the tied F16 head quantized to Q8_0 (what
 * bn_model_convert_head does at load); the embedding keeps the F16 rows. */
static void synth_q8_head(synth_model *s) {
    bn_dense *o = &s->m.output;
    uint64_t rb = bn_ggml_row_bytes(BN_GGML_Q8_0, o->cols);
    s->head_q8 = xalloc((size_t)(rb * (uint64_t)o->rows));
    float *row = xalloc((size_t)o->cols * 4);
    for (int64_t r = 0; r < o->rows; r++) {
        bn_ggml_dequantize_row(o->type, o->data + r * o->row_bytes, row, o->cols, 0.0f);
        bn_quantize_row(BN_GGML_Q8_0, row, s->head_q8 + r * rb, o->cols);
    }
    free(row);
    *o = (bn_dense){.type = BN_GGML_Q8_0, .rows = o->rows, .cols = o->cols, .data = s->head_q8, .row_bytes = rb};
    s->m.tied_output = 0;
}

static void synth_free(synth_model *s) {
    free(s->head_q8), free(s->codes), free(s->emb), free(s->ones), free(s->m.layers), free(s);
}

/* Bytes a decode step must read: every ternary weight, the head, the cache. */
static double decode_bytes(const synth_model *s) {
    const bn_hparams *hp = &s->m.hp;
    double E = hp->n_embd, Q = (double)hp->n_head * hp->head_dim, KV = (double)hp->n_head_kv * hp->head_dim,
           F = hp->n_ff;
    return (Q * E * 2 + 2 * KV * E + 3 * F * E) / 4 * hp->n_layer + (double)s->m.output.rows * s->m.output.row_bytes;
}

/* Where a decode step's time goes: all ternary matrices, then the head,
 * each through the backend (thread pool included) with one token. */
static void decode_parts(const synth_model *s, bn_backend *be, bn_forward_state *st) {
    const bn_hparams *hp = &s->m.hp;
    const bn_backend_ops *o = be->ops;
    double tb = 0, hb = (double)s->m.output.rows * s->m.output.row_bytes;
    o->quantize(be, st->x, 1, hp->n_embd, &st->qa); /* valid activations for every width */
    o->quantize(be, st->g, 1, hp->n_ff, &st->qa);
    double t0 = now_s();
    for (int rep = 0; rep < 3; rep++)
        for (int l = 0; l < hp->n_layer; l++) {
            const bn_layer *L = &s->m.layers[l];
            const bn_ternary *ws[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
            for (int i = 0; i < 7; i++) {
                o->matmul_ternary(be, ws[i], &st->qa, 1, st->g);
                if (rep == 0) tb += (double)ws[i]->rows * ws[i]->cols / 4;
            }
        }
    double tt = (now_s() - t0) / 3;
    t0 = now_s();
    for (int rep = 0; rep < 3; rep++) o->matmul_dense(be, &s->m.output, st->xn, 1, st->logits);
    double th = (now_s() - t0) / 3;
    printf("    decode parts: ternary layers %.1f ms (%.2f GB/s), %s head %.1f ms (%.2f GB/s)\n", tt * 1e3,
           tb / tt / 1e9, bn_ggml_type_name(s->m.output.type), th * 1e3, hb / th / 1e9);
}

static void bench_e2e(const char *name, synth_model *s, int threads, int n_gen, int n_prompt, double roofline_gbs) {
    bn_backend *be;
    bitnet_error err;
    if (bn_backend_cpu_create(&be, threads, &err) != BITNET_OK) {
        fprintf(stderr, "bench_kernels: %s\n", err.message);
        exit(1);
    }
    int n_ctx = n_prompt + n_gen + 8;
    bn_backend_cpu_reserve(be, (size_t)(s->m.hp.n_embd > n_ctx ? s->m.hp.n_embd : n_ctx), &err);
    bn_forward_state st;
    if (bn_forward_state_init(&st, &s->m, be, n_ctx, n_prompt > 1 ? n_prompt : 1, &err) != BITNET_OK) {
        fprintf(stderr, "bench_kernels: %s\n", err.message);
        exit(1);
    }
    float *logits = xalloc((size_t)s->m.hp.n_vocab * 4);
    int32_t *toks = xalloc((size_t)(n_prompt > 1 ? n_prompt : 1) * 4);
    for (int i = 0; i < (n_prompt > 1 ? n_prompt : 1); i++) toks[i] = (int32_t)(rnd() % (uint32_t)s->m.hp.n_vocab);
    const char *lvl = bn_backend_cpu_kernels_name(be);

    double pp = 0;
    if (n_prompt > 1) {
        bn_forward(&s->m, be, &st, toks, n_prompt, 0, BN_LOGITS_LAST, logits); /* warm-up */
        double ts[32];
        for (int rep = 0; rep < e2e_reps; rep++) {
            double t0 = now_s();
            bn_forward(&s->m, be, &st, toks, n_prompt, 0, BN_LOGITS_LAST, logits);
            ts[rep] = now_s() - t0;
        }
        pp = n_prompt / median(ts, e2e_reps);
        /* One more, profiled: where prompt time goes. */
        bitnet_profile prof;
        memset(&prof, 0, sizeof prof);
        st.prof = &prof;
        bn_forward(&s->m, be, &st, toks, n_prompt, 0, BN_LOGITS_LAST, logits);
        st.prof = NULL;
        const char *cls[BITNET_OP_COUNT] = {"ternary", "head", "attention", "norm+quant", "other"};
        double tot = 0;
        for (int i = 0; i < BITNET_OP_COUNT; i++) tot += prof.seconds[i];
        printf("    pp%d profile (%.0f ms):", n_prompt, tot * 1e3);
        for (int i = 0; i < BITNET_OP_COUNT; i++) printf(" %s %.0f%%", cls[i], 100 * prof.seconds[i] / tot);
        printf("\n");
    }
    /* Decode: one token at a time at positions 0.., logits every step;
     * the median of e2e_reps runs of n_gen tokens. */
    bn_forward(&s->m, be, &st, toks, 1, 0, BN_LOGITS_LAST, logits);
    double tg[32];
    for (int rep = 0; rep < e2e_reps; rep++) {
        double t0 = now_s();
        for (int i = 0; i < n_gen; i++) bn_forward(&s->m, be, &st, toks, 1, i, BN_LOGITS_LAST, logits);
        tg[rep] = (now_s() - t0) / n_gen;
    }
    double t = median(tg, e2e_reps);
    double gb = decode_bytes(s) / 1e9;
    printf("e2e %-10s %-6s %s head threads=%d  tg: %7.2f tok/s  %8.3f ms/token  %6.2f GB/s", name, lvl, bn_ggml_type_name(s->m.output.type), threads, 1 / t,
           t * 1e3, gb / t);
    if (roofline_gbs > 0) printf(" = %4.0f%% of roofline (%.2f tok/s at %.2f GB/s)", 100 * gb / t / roofline_gbs,
                                 roofline_gbs / gb, roofline_gbs);
    if (pp > 0) printf("  pp%d: %7.2f tok/s", n_prompt, pp);
    printf("\n");
    if (n_prompt > 1) decode_parts(s, be, &st);
    free(logits), free(toks);
    bn_forward_state_free(&st, &s->m, be);
    be->ops->destroy(be);
}

int main(int argc, char **argv) {
    int threads = bn_physical_cores(), quick = 0, do_e2e = 1, do_kernels = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--no-e2e")) do_e2e = 0;
        else if (!strcmp(argv[i], "--no-kernels")) do_kernels = 0;
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) e2e_reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--head") && i + 1 < argc) head_q8 = !strcmp(argv[++i], "q8_0");
        else {
            fprintf(stderr, "usage: bench_kernels [-t THREADS] [--quick] [--no-e2e] [--no-kernels] [--reps N] "
                            "[--head f16|q8_0]\n");
            return 2;
        }
    }
    if (quick) min_time = 0.02;
    if (e2e_reps < 1) e2e_reps = 1;
    if (e2e_reps > 32) e2e_reps = 32;
    int n_all;
    const bn_cpu_kernels *const *all = bn_cpu_kernels_all(&n_all);
    const bn_cpu_kernels *lv[8];
    int n_lv = 0;
    const char *forced = getenv("BITNET_CPU");
    for (int i = 0; i < n_all; i++)
        if (bn_cpu_kernels_supported(all[i]) && (i == 0 || !forced || !strcmp(forced, all[i]->name)))
            lv[n_lv++] = all[i];
    const bn_cpu_kernels *best = bn_cpu_kernels_select();
    printf("# bench_kernels: levels run:");
    for (int i = 0; i < n_lv; i++) printf(" %s", lv[i]->name);
    printf("; selected: %s; threads: %d\n", best->name, threads);

    int64_t probe_n = quick ? (64 << 20) / 4 : (1LL << 30) / 4;
    float *buf = xalloc((size_t)probe_n * 4);
    for (int64_t i = 0; i < probe_n; i++) buf[i] = 1.0f;
    double bw1 = probe_bandwidth(best, 1, buf, probe_n), bwt = probe_bandwidth(best, threads, buf, probe_n);
    free(buf);
    printf("read bandwidth (%s dot, %lld MiB): 1 thread %.2f GB/s, %d threads %.2f GB/s\n", best->name,
           (long long)(probe_n * 4 >> 20), bw1, threads, bwt);

    if (do_kernels) {
        bench_quantize(lv, n_lv, 2560);
        /* Cache-resident (320 KB, in L2) and 2B4T's largest matrix (4.4 MB). */
        bench_ternary(lv, n_lv, 512, 2560, 1, "GEMV cache-resident");
        bench_ternary(lv, n_lv, 6912, 2560, 1, "GEMV 2B4T ffn_up");
        bench_ternary(lv, n_lv, 2560, 6912, 1, "GEMV 2B4T ffn_down");
        bench_ternary(lv, n_lv, 512, 2560, 4, "GEMM tile");
        bench_ternary(lv, n_lv, 512, 2560, 8, "GEMM 8 tokens");
        bench_ternary(lv, n_lv, 512, 2560, 16, "GEMM 16 tokens");
        bench_ternary(lv, n_lv, 512, 2560, quick ? 16 : 128, "GEMM prompt");
        if (!quick) bench_ternary(lv, n_lv, 2560, 6912, 128, "GEMM prompt ffn_down");
        bench_dense(lv, n_lv, BN_GGML_F16, quick ? 4096 : 32768, 2560);
        bench_dense(lv, n_lv, BN_GGML_Q8_0, quick ? 4096 : 32768, 2560);
        bench_dense(lv, n_lv, BN_GGML_Q8_0, 512, 2560);
    }
    if (do_e2e) {
        /* 2B4T: vocab 128256, 2560 wide, 30 layers, 20/5 heads, 6912 FFN. */
        synth_model *big = quick ? synth_create(32000, 2560, 4, 20, 5, 6912)
                                 : synth_create(128256, 2560, 30, 20, 5, 6912);
        if (head_q8) synth_q8_head(big);
        bench_e2e(quick ? "2B4T-4L" : "2B4T", big, threads, quick ? 4 : 32, quick ? 16 : 128, bwt);
        synth_free(big);
        /* ~1M parameters: a 512 x 128 embedding and 5 layers 128 wide, FFN 352. */
        synth_model *tiny = synth_create(512, 128, 5, 4, 2, 352);
        printf("# 1M model: %.2f M parameters\n", tiny->m.n_params / 1e6);
        bench_e2e("1M", tiny, 1, quick ? 50 : 500, 0, 0);
        synth_free(tiny);
    }
    return 0;
}
