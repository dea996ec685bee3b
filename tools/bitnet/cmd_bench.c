/* bitnet bench -m MODEL [-p 128,512] [-n 128] [-t 1,2] [-b 1] [-r 3] ...
 * Prompt-processing and generation speed with repetitions (mean ± sd),
 * per-token latency percentiles, memory, read bandwidth and roofline share,
 * an optional per-operation profile, and regression checks against a stored
 * result. Ctrl-C stops the run and prints what was measured so far.
 *
 * Test hook: the environment variable BITNET_TEST_DELAY_US adds a sleep of
 * that many microseconds per token inside the timed region, so that tests can
 * make a run slower on purpose and check that --baseline flags it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench_report.h"
#include "bench_util.h"
#include "cli.h"

#define CMD "bench"
#define EXIT_REGRESSION 3
#define EXIT_INTERRUPTED 130
#define MAX_REPS 256

typedef struct int_list {
    int32_t *v;
    int n;
} int_list;

typedef struct bench_opts {
    const char *model, *device, *head, *baseline, *save_baseline;
    int_list pp, tg, batch, threads;
    int reps, profile, quiet, probe, greedy;
    int format; /* 0 table, 1 json, 2 csv */
    double tolerance, delay_us;
} bench_opts;

static int usage(void) {
    printf("usage: bitnet bench [-m MODEL] [options]\n\n"
           "Measures prompt processing (ppN: N tokens in one eval) and generation (tgN: N tokens\n"
           "one at a time, each sampled from the last logits) for every combination of the lists.\n\n"
           "  -p LIST               prompt lengths (default 128,512; 0 = none)\n"
           "  -n LIST               generation lengths (default 128; 0 = none)\n"
           "  -t LIST               thread counts (default: the number of cores)\n"
           "  -b LIST               sequences per step (default 1). With B > 1, ppN evaluates B\n"
           "                        prompts of N tokens together and tgN decodes B sequences, one\n"
           "                        token each per step; tok/s is the aggregate of all B, latency\n"
           "                        is per step\n"
           "  -r N                  repetitions of each test (default 3): mean ± sd\n"
           "  --device D            auto|cpu|cuda|cuda:N (default auto)\n"
           "  --head auto|q8_0      output head as stored, or an int8 copy made at load\n"
           "  --greedy              tgN samples greedily (argmax), picked where the logits are:\n"
           "                        on a GPU only the token ids are copied back\n"
           "  --json | --csv        print the result as JSON or CSV instead of a table\n"
           "  --profile             time per operation class (ternary matmuls, output head,\n"
           "                        attention, norms+quant, other, sampling) and its share\n"
           "  --no-probe            skip the read-bandwidth probe (no roofline share)\n"
           "  --save-baseline FILE  write the result (JSON) as a baseline\n"
           "  --baseline FILE       compare with a stored result; exit status %d on a regression:\n"
           "                        slower by more than the tolerance and by more than %.0f\n"
           "                        combined standard deviations\n"
           "  --tolerance T         5%% (default), 10, 0.1 (a fraction when below 1)\n"
           "  -q                    no progress lines on stderr\n"
           "Ctrl-C stops and prints what was measured (exit status %d).\n"
           "Test hook: BITNET_TEST_DELAY_US=N sleeps N microseconds per token inside the timing.\n",
           EXIT_REGRESSION, BENCH_NOISE_SDS, EXIT_INTERRUPTED);
    return 0;
}

/* Parses "1,2,4" into l (values >= min). Returns 0 after printing an error. */
static int parse_list(const char *flag, const char *s, int min, int_list *l) {
    free(l->v);
    l->n = cli_parse_ids(s, &l->v);
    int ok = l->n > 0;
    for (int i = 0; ok && i < l->n; i++) ok = l->v[i] >= min && l->v[i] <= (1 << 20);
    if (!ok) cli_error(CMD, "%s takes a comma-separated list of numbers >= %d, not '%s'", flag, min, s);
    return ok;
}

static int parse_tolerance(const char *s, double *out) {
    char *end;
    double v = strtod(s, &end);
    int pct = *end == '%';
    if (end == s || *(end + pct) || !(v >= 0) || v > 1000) return 0;
    *out = pct || v >= 1 ? v / 100.0 : v;
    return 1;
}

static int defaults(bench_opts *o) {
    char cores[16];
    snprintf(cores, sizeof cores, "%d", bitnet_physical_cores());
    o->reps = 3;
    o->probe = 1;
    o->tolerance = 0.05;
    return parse_list("-p", "128,512", 0, &o->pp) && parse_list("-n", "128", 0, &o->tg) &&
           parse_list("-b", "1", 1, &o->batch) && parse_list("-t", cores, 1, &o->threads);
}

/* Options without a value; returns 1 when a was one. */
static int flag(bench_opts *o, const char *a) {
    if (!strcmp(a, "--json")) o->format = 1;
    else if (!strcmp(a, "--csv")) o->format = 2;
    else if (!strcmp(a, "--profile")) o->profile = 1;
    else if (!strcmp(a, "--no-probe")) o->probe = 0;
    else if (!strcmp(a, "--greedy")) o->greedy = 1;
    else if (!strcmp(a, "-q")) o->quiet = 1;
    else return 0;
    return 1;
}

/* Returns 0 to go on, 1 after an error, 2 after --help. */
static int parse_args(bench_opts *o, int argc, char **argv) {
    if (!defaults(o)) return 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(), 2;
        if (flag(o, a)) continue;
        if (!v) return cli_error(CMD, "unknown or incomplete option '%s' (see --help)", a);
        else if (!strcmp(a, "-m")) o->model = v;
        else if (!strcmp(a, "--device")) o->device = v;
        else if (!strcmp(a, "--head")) o->head = v;
        else if (!strcmp(a, "--baseline")) o->baseline = v;
        else if (!strcmp(a, "--save-baseline")) o->save_baseline = v;
        else if (!strcmp(a, "-p")) ok = parse_list(a, v, 0, &o->pp);
        else if (!strcmp(a, "-n")) ok = parse_list(a, v, 0, &o->tg);
        else if (!strcmp(a, "-b")) ok = parse_list(a, v, 1, &o->batch);
        else if (!strcmp(a, "-t")) ok = parse_list(a, v, 1, &o->threads);
        else if (!strcmp(a, "-r"))
            ok = ((o->reps = atoi(v)) >= 1 && o->reps <= MAX_REPS) ||
                 (cli_error(CMD, "-r must be 1 to %d", MAX_REPS), 0);
        else if (!strcmp(a, "--tolerance"))
            ok = parse_tolerance(v, &o->tolerance) || (cli_error(CMD, "bad --tolerance '%s' (e.g. 5%%)", v), 0);
        else return cli_error(CMD, "unknown option '%s' (see --help)", a);
        if (!ok) return 1;
        i++;
    }
    const char *d = getenv("BITNET_TEST_DELAY_US");
    o->delay_us = d && *d ? atof(d) : 0.0;
    if (!o->model && !(o->model = cli_default_model())) return cli_error(CMD, "no model given (-m MODEL)");
    return 0;
}

static void free_opts(bench_opts *o) {
    free(o->pp.v);
    free(o->tg.v);
    free(o->batch.v);
    free(o->threads.v);
}

/* ------------------------------------------------------------- the rows -- */

static int list_max(const int_list *l) {
    int m = 0;
    for (int i = 0; i < l->n; i++) m = l->v[i] > m ? l->v[i] : m;
    return m;
}

static void add_rows(bench_result *r, const int_list *lens, int is_gen, int threads, int batch, int greedy) {
    for (int i = 0; i < lens->n; i++) {
        if (lens->v[i] == 0) continue;
        bench_row *w = &r->rows[r->n_rows++];
        memset(w, 0, sizeof *w);
        snprintf(w->test, sizeof w->test, "%s%d", is_gen ? "tg" : "pp", lens->v[i]);
        w->is_gen = is_gen;
        w->n_tokens = lens->v[i];
        w->threads = threads;
        w->batch = batch;
        w->status = BENCH_NOT_RUN;
        if (batch > 1)
            snprintf(w->note, sizeof w->note, "%d sequences: aggregate tok/s%s%s", batch,
                     is_gen ? ", latency per step" : "", is_gen && greedy ? ", greedy" : "");
        else if (is_gen && greedy)
            snprintf(w->note, sizeof w->note, "greedy");
    }
}

static int make_rows(bench_result *r, const bench_opts *o) {
    r->rows = calloc((size_t)o->threads.n * o->batch.n * (o->pp.n + o->tg.n), sizeof *r->rows);
    if (!r->rows) return cli_error(CMD, "out of memory"), 0;
    for (int t = 0; t < o->threads.n; t++)
        for (int b = 0; b < o->batch.n; b++) {
            add_rows(r, &o->pp, 0, o->threads.v[t], o->batch.v[b], o->greedy);
            add_rows(r, &o->tg, 1, o->threads.v[t], o->batch.v[b], o->greedy);
        }
    if (!r->n_rows) return cli_error(CMD, "nothing to measure (-p 0 and -n 0)"), 0;
    return 1;
}

/* ------------------------------------------------------------ measuring -- */

typedef struct bench_run {
    const bench_opts *o;
    bitnet_context *ctx;
    bitnet_sampler *smp;
    int n_vocab;
    int32_t start, *ids; /* first generated-from token; prompt ids */
} bench_run;

/* Empties every sequence of the context. */
static void clear_all(bitnet_context *ctx) {
    bitnet_kv_truncate(ctx, 0, NULL);
    for (int s = 1; s < bitnet_context_n_seq(ctx); s++) bitnet_seq_truncate(ctx, s, 0, NULL);
}

static void fill_tok_s(bench_row *w, const double *tps, int n, int partial) {
    w->reps = n;
    w->tok_s_mean = bench_mean(tps, n);
    w->tok_s_sd = bench_sd(tps, n);
    w->status = partial ? BENCH_INTERRUPTED : BENCH_OK;
}

static void profile_begin(bench_run *b, bench_row *w) {
    w->has_profile = b->o->profile;
    if (b->o->profile) bitnet_context_set_profiling(b->ctx, 1);
}

static void profile_end(bench_run *b, bench_row *w) {
    if (!b->o->profile) return;
    bitnet_context_get_profile(b->ctx, &w->prof);
    bitnet_context_set_profiling(b->ctx, 0);
}

/* The batch of ppN at batch B: B prompts of N tokens (each sequence its own
 * slice of the ids), sequence after sequence. Returns NULL when out of memory. */
static bitnet_batch *pp_batch(const bench_run *b, const bench_row *w) {
    int n = w->n_tokens * w->batch;
    bitnet_batch *bt = calloc(1, sizeof *bt);
    int32_t *tok = malloc((size_t)n * sizeof *tok), *seq = malloc((size_t)n * sizeof *seq);
    if (!bt || !tok || !seq) return free(bt), free(tok), free(seq), NULL;
    for (int i = 0; i < n; i++) {
        seq[i] = i / w->n_tokens;
        tok[i] = b->ids[(i + seq[i] * 7) % w->n_tokens]; /* distinct prompts of the same tokens */
    }
    bt->n_tokens = n, bt->tokens = tok, bt->seq = seq;
    return bt;
}

static void pp_batch_free(bitnet_batch *bt) {
    if (!bt) return;
    free((void *)bt->tokens);
    free((void *)bt->seq);
    free(bt);
}

/* One ppN evaluation: bitnet_eval at batch 1, one bitnet_eval_batch of all
 * prompts otherwise. */
static bitnet_status pp_eval(bench_run *b, const bench_row *w, const bitnet_batch *bt, bitnet_error *err) {
    if (!bt) return bitnet_eval(b->ctx, b->ids, w->n_tokens, BITNET_LOGITS_LAST, err);
    return bitnet_eval_batch(b->ctx, bt, err);
}

/* ppN: N tokens (of each of the B sequences) evaluated in one call, from an
 * empty cache. */
static int run_pp(bench_run *b, bench_row *w) {
    double tps[MAX_REPS];
    int done = 0, reps = b->o->reps, n_all = w->n_tokens * w->batch;
    bitnet_error err;
    bitnet_batch *bt = w->batch > 1 ? pp_batch(b, w) : NULL;
    if (w->batch > 1 && !bt) return cli_error(CMD, "out of memory"), -1;
    profile_begin(b, w);
    for (; done < reps && !bench_interrupted(); done++) {
        clear_all(b->ctx);
        double t0 = bench_now();
        if (pp_eval(b, w, bt, &err) != BITNET_OK)
            return pp_batch_free(bt), cli_error(CMD, "%s: %s", w->test, err.message), -1;
        bench_sleep_us(b->o->delay_us * n_all);
        w->slept_s += b->o->delay_us * n_all * 1e-6;
        double dt = bench_now() - t0;
        w->wall_s += dt;
        tps[done] = n_all / dt;
        if (!b->o->quiet)
            bench_progress(1, "bench: %s threads %d: rep %d/%d %.2f tok/s", w->test, w->threads, done + 1, reps,
                           tps[done]);
    }
    profile_end(b, w);
    pp_batch_free(bt);
    fill_tok_s(w, tps, done, done < reps);
    return 0;
}

/* One generation repetition: n tokens, each evaluated, then sampled from its
 * logits; lat receives each token's seconds. Returns the tokens done, -1 on
 * an error. */
static int gen_rep(bench_run *b, bench_row *w, double *lat, double *total) {
    bitnet_error err;
    int32_t tok = b->start;
    bitnet_kv_truncate(b->ctx, 0, NULL);
    bitnet_sampler_reset(b->smp);
    double last_progress = bench_now();
    for (int i = 0; i < w->n_tokens; i++) {
        if (bench_interrupted()) return i;
        double t0 = bench_now();
        bitnet_batch one = {1, &tok, NULL, NULL};
        int32_t pick = -1;
        bitnet_status rc = b->o->greedy ? bitnet_eval_batch_greedy(b->ctx, &one, &pick, &err)
                                        : bitnet_eval(b->ctx, &tok, 1, BITNET_LOGITS_LAST, &err);
        if (rc != BITNET_OK) return cli_error(CMD, "%s: %s", w->test, err.message), -1;
        bench_sleep_us(b->o->delay_us);
        w->slept_s += b->o->delay_us * 1e-6;
        double t1 = bench_now();
        tok = b->o->greedy ? pick : bitnet_sampler_sample(b->smp, bitnet_get_logits(b->ctx, -1), b->n_vocab);
        if (tok < 0) return cli_error(CMD, "sampling failed"), -1;
        bitnet_sampler_accept(b->smp, tok);
        double t2 = bench_now();
        lat[i] = t2 - t0;
        *total += t2 - t0;
        w->sampling_s += t2 - t1;
        if (!b->o->quiet && t2 - last_progress > 0.5) {
            bench_progress(0, "bench: %s threads %d: rep %d/%d token %d/%d", w->test, w->threads, w->reps + 1,
                           b->o->reps, i + 1, w->n_tokens);
            last_progress = t2;
        }
    }
    return w->n_tokens;
}

/* Samplers for B sequences: copies of the bench's settings, one per
 * sequence (each keeps its own penalty history). */
static bitnet_sampler **new_samplers(int n, int greedy) {
    bitnet_sampler **v = calloc((size_t)n, sizeof *v);
    bitnet_sampler_params sp;
    bitnet_sampler_params_default(&sp);
    if (greedy) sp.temperature = 0.0f;
    for (int i = 0; v && i < n; i++) {
        sp.seed = 1234 + (uint64_t)i;
        if (bitnet_sampler_new(&sp, &v[i], NULL) != BITNET_OK) {
            while (i--) bitnet_sampler_free(v[i]);
            free(v);
            return NULL;
        }
    }
    return v;
}

static void free_samplers(bitnet_sampler **v, int n) {
    for (int i = 0; v && i < n; i++) bitnet_sampler_free(v[i]);
    free(v);
}

/* One batched generation repetition: n steps, each one bitnet_eval_batch of
 * one token per sequence, then a token sampled for each; lat receives each
 * step's seconds. Returns the steps done, -1 on an error. */
static int gen_rep_batch(bench_run *b, bench_row *w, bitnet_sampler **smp, int32_t *tok, int32_t *seq, int32_t *pick,
                         double *lat, double *total) {
    bitnet_error err;
    int B = w->batch;
    clear_all(b->ctx);
    for (int s = 0; s < B; s++) {
        tok[s] = (int32_t)((b->start + s) % b->n_vocab); /* a different first token per sequence */
        seq[s] = s;
        bitnet_sampler_reset(smp[s]);
    }
    bitnet_batch bt = {B, tok, seq, NULL};
    double last_progress = bench_now();
    for (int i = 0; i < w->n_tokens; i++) {
        if (bench_interrupted()) return i;
        double t0 = bench_now();
        bitnet_status rc = b->o->greedy ? bitnet_eval_batch_greedy(b->ctx, &bt, pick, &err)
                                        : bitnet_eval_batch(b->ctx, &bt, &err);
        if (rc != BITNET_OK) return cli_error(CMD, "%s: %s", w->test, err.message), -1;
        bench_sleep_us(b->o->delay_us * B);
        w->slept_s += b->o->delay_us * B * 1e-6;
        double t1 = bench_now();
        for (int s = 0; s < B; s++) {
            tok[s] = b->o->greedy ? pick[s] : bitnet_sampler_sample(smp[s], bitnet_get_logits(b->ctx, s), b->n_vocab);
            if (tok[s] < 0) return cli_error(CMD, "sampling failed"), -1;
            bitnet_sampler_accept(smp[s], tok[s]);
        }
        double t2 = bench_now();
        lat[i] = t2 - t0;
        *total += t2 - t0;
        w->sampling_s += t2 - t1;
        if (!b->o->quiet && t2 - last_progress > 0.5) {
            bench_progress(0, "bench: %s batch %d threads %d: rep %d/%d step %d/%d", w->test, B, w->threads,
                           w->reps + 1, b->o->reps, i + 1, w->n_tokens);
            last_progress = t2;
        }
    }
    return w->n_tokens;
}

/* Work arrays of a batched tgN: samplers, tokens and sequence ids. */
typedef struct tg_batch {
    bitnet_sampler **smp;
    int32_t *tok, *seq, *pick; /* pick: greedy ids of a step */
} tg_batch;

static int tg_batch_init(tg_batch *t, int B, int greedy) {
    t->smp = B > 1 ? new_samplers(B, greedy) : NULL;
    t->tok = malloc((size_t)B * sizeof *t->tok);
    t->seq = malloc((size_t)B * sizeof *t->seq);
    t->pick = malloc((size_t)B * sizeof *t->pick);
    return (B == 1 || t->smp) && t->tok && t->seq && t->pick;
}

static void tg_batch_free(tg_batch *t, int B) {
    free_samplers(t->smp, B);
    free(t->tok);
    free(t->seq);
    free(t->pick);
}

/* tgN: N tokens one at a time from an empty cache (at batch B, N steps of
 * B tokens). Latency percentiles cover every timed token (step), including
 * those of a repetition cut short by Ctrl-C. */
static int run_tg(bench_run *b, bench_row *w) {
    int reps = b->o->reps, n_lat = 0;
    double tps[MAX_REPS], *lat = malloc((size_t)reps * w->n_tokens * sizeof *lat);
    tg_batch tb;
    if (!tg_batch_init(&tb, w->batch, b->o->greedy) || !lat) {
        tg_batch_free(&tb, w->batch);
        free(lat);
        return cli_error(CMD, "out of memory"), -1;
    }
    profile_begin(b, w);
    int partial = 0;
    w->reps = 0;
    while (w->reps < reps && !partial) {
        double t = 0.0;
        int n = w->batch > 1 ? gen_rep_batch(b, w, tb.smp, tb.tok, tb.seq, tb.pick, lat + n_lat, &t)
                             : gen_rep(b, w, lat + n_lat, &t);
        if (n < 0) return tg_batch_free(&tb, w->batch), free(lat), -1;
        n_lat += n;
        w->wall_s += t;
        partial = n < w->n_tokens;
        /* A cut-short repetition counts only when it is all there is. */
        if (n > 0 && (!partial || w->reps == 0)) tps[w->reps++] = (double)n * w->batch / t;
        if (!b->o->quiet && !partial)
            bench_progress(1, "bench: %s threads %d: rep %d/%d %.2f tok/s", w->test, w->threads, w->reps, reps,
                           tps[w->reps - 1]);
    }
    profile_end(b, w);
    fill_tok_s(w, tps, w->reps, partial || w->reps < reps);
    w->ms_p50 = 1e3 * bench_percentile(lat, n_lat, 50);
    w->ms_p95 = 1e3 * bench_percentile(lat, n_lat, 95);
    w->ms_p99 = 1e3 * bench_percentile(lat, n_lat, 99);
    tg_batch_free(&tb, w->batch);
    free(lat);
    return 0;
}

/* Prompt ids: a fixed pseudo-random sequence (the speed does not depend on
 * which tokens they are, only that lookups are not all the same row). */
static int32_t *make_ids(int n, int n_vocab) {
    int32_t *ids = malloc((size_t)(n > 0 ? n : 1) * sizeof *ids);
    uint64_t s = 0x2545F4914F6CDD1Dull;
    for (int i = 0; ids && i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((s >> 33) % (uint64_t)n_vocab);
    }
    return ids;
}

/* KV cache bytes: keys and values, f16, every layer and position. */
static uint64_t kv_bytes(const bitnet_model_info *mi, int n_ctx) {
    return 2ull * (uint64_t)mi->n_layer * (uint64_t)n_ctx * (uint64_t)mi->n_head_kv * (uint64_t)mi->head_dim * 2u;
}

static int is_embedding(const char *name) {
    return !strcmp(name, "token_embd.weight") || !strcmp(name, "model.embed_tokens.weight");
}

static int is_output(const char *name) { return !strcmp(name, "output.weight") || !strcmp(name, "lm_head.weight"); }

/* Bytes of the int8 (Q8_0: 34 bytes per 32 weights) head copy that
 * --head q8_0 makes at load; 0 when there is none. */
static uint64_t head_copy_bytes(const bitnet_model *m, const bitnet_model_info *mi, const char *head) {
    if (!head || strcmp(head, "q8_0")) return 0;
    bitnet_tensor_info ti;
    for (int i = 0; i < bitnet_model_n_tensors(m); i++)
        if (bitnet_model_tensor(m, i, &ti) && (mi->tied_output ? is_embedding(ti.name) : is_output(ti.name)) &&
            !strcmp(ti.type, "Q8_0"))
            return 0; /* stored as Q8_0 already: used in place */
    return (uint64_t)mi->n_vocab * (uint64_t)(mi->n_embd / 32) * 34u;
}

/* Memory while the context is alive: base footprint = peak RSS − resident
 * pages of the model file − an int8 head copy − the KV cache (host memory
 * only on a CPU). */
static void measure_memory(bench_result *r, const bitnet_model *m, const char *head, int on_cpu, int n_seq) {
    bitnet_model_info mi;
    bitnet_model_get_info(m, &mi);
    bench_mem mem;
    if (!bench_read_mem(r->model_path, &mem)) return;
    r->kv_bytes = kv_bytes(&mi, r->n_ctx) * (uint64_t)n_seq;
    r->head_copy = on_cpu ? head_copy_bytes(m, &mi, head) : 0;
    uint64_t used = mem.model_rss + r->head_copy + (on_cpu ? r->kv_bytes : 0);
    uint64_t base = mem.peak_rss > used ? mem.peak_rss - used : 0;
    if (mem.peak_rss > r->peak_rss) r->peak_rss = mem.peak_rss;
    if (mem.model_rss > r->model_rss) r->model_rss = mem.model_rss;
    if (base > r->base_footprint) r->base_footprint = base;
}

static int run_rows_on(bench_run *b, bench_result *r, int threads, int batch) {
    for (int i = 0; i < r->n_rows && !bench_interrupted(); i++) {
        bench_row *w = &r->rows[i];
        if (w->threads != threads || w->batch != batch || w->status == BENCH_SKIPPED) continue;
        double t0 = bench_now(), c0 = bench_cpu_seconds();
        if ((w->is_gen ? run_tg(b, w) : run_pp(b, w)) != 0) return -1;
        /* The pool's workers spin while they wait, so on an otherwise idle
         * machine the process gets about threads × wall of CPU time. */
        double busy = (bench_now() - t0 - w->slept_s) * threads;
        w->cpu_share = busy > 0 ? (bench_cpu_seconds() - c0) / busy : 1.0;
    }
    if (!b->o->quiet) bench_progress_end();
    return 0;
}

static int open_context(bitnet_model *m, const bench_opts *o, int n_ctx, int threads, int n_seq,
                        bitnet_context **ctx) {
    bitnet_context_params cp;
    bitnet_context_params_default(&cp);
    cp.n_ctx = n_ctx;
    cp.n_threads = threads;
    cp.n_seq = n_seq;
    cp.device = o->device;
    bitnet_error err;
    if (bitnet_context_create(m, &cp, ctx, &err) != BITNET_OK) return cli_error(CMD, "%s", err.message), -1;
    /* Warm-up: touches every weight page and the thread pool once. */
    int32_t two[2] = {0, 0};
    if (bitnet_eval(*ctx, two, 2, BITNET_LOGITS_LAST, &err) != BITNET_OK) return cli_error(CMD, "%s", err.message), -1;
    return 0;
}

/* Every thread count and batch size: its own context (of B sequences), its
 * rows, then the memory figures. Those come from the first -b value's
 * contexts only: peak RSS never goes down, so a later context with a larger
 * KV cache would be charged to the base footprint. */
static int run_all(bitnet_model *m, const bench_opts *o, bench_result *r, bench_run *b) {
    for (int t = 0; t < o->threads.n && !bench_interrupted(); t++)
        for (int k = 0; k < o->batch.n && !bench_interrupted(); k++) {
            int threads = o->threads.v[t], batch = o->batch.v[k], todo = 0;
            for (int i = 0; i < r->n_rows; i++)
                todo |= r->rows[i].threads == threads && r->rows[i].batch == batch &&
                        r->rows[i].status != BENCH_SKIPPED;
            if (!todo) continue;
            if (open_context(m, o, r->n_ctx, threads, batch, &b->ctx)) return bitnet_context_free(b->ctx), -1;
            snprintf(r->device, sizeof r->device, "%s", bitnet_context_device(b->ctx));
            int rc = run_rows_on(b, r, threads, batch);
            if (batch == o->batch.v[0]) measure_memory(r, m, o->head, !strncmp(r->device, "cpu", 3), batch);
            bitnet_context_free(b->ctx);
            b->ctx = NULL;
            if (rc) return -1;
        }
    return 0;
}

/* ------------------------------------------------------------- roofline -- */

/* Bytes a generated token reads: every tensor, except that an untied token
 * embedding is read one row at a time and an int8 head copy replaces the
 * stored head, plus the KV cache up to the token's position (averaged over
 * the run). A step of B sequences reads the weights once for B tokens. */
static double bytes_per_token(const bitnet_model *m, const bitnet_model_info *mi, const char *head, int n_gen,
                              int batch) {
    double total = 0.0, copy = (double)head_copy_bytes(m, mi, head);
    bitnet_tensor_info ti;
    for (int i = 0; i < bitnet_model_n_tensors(m); i++) {
        if (!bitnet_model_tensor(m, i, &ti)) continue;
        int embd = is_embedding(ti.name), out = mi->tied_output ? embd : is_output(ti.name);
        double bytes = out && copy > 0 ? copy : (double)ti.n_bytes;
        if (embd && !mi->tied_output) total += (double)ti.n_bytes / mi->n_vocab; /* one row per token */
        if (out || !embd) total += bytes;
    }
    return total / batch + (double)kv_bytes(mi, 1) * (n_gen + 1) / 2.0;
}

static void probe(const bitnet_model *m, const bench_opts *o, bench_result *r) {
    bitnet_model_info mi;
    bitnet_model_get_info(m, &mi);
    uint64_t llc = bench_llc_bytes(), size = llc * 8;
    size = size < (256u << 20) ? (256u << 20) : (size > (2ull << 30) ? (2ull << 30) : size);
    r->probe_bytes = size;
    r->llc_bytes = llc;
    for (int t = 0; t < o->threads.n && !bench_interrupted(); t++) {
        double bw = 0.0;
        for (int i = 0; i < r->n_rows; i++) {
            bench_row *w = &r->rows[i];
            if (w->threads != o->threads.v[t] || !w->is_gen || w->reps == 0) continue;
            if (bw == 0.0) bw = bench_read_bandwidth(w->threads, size);
            w->read_bw = bw;
            w->bytes_per_token = bytes_per_token(m, &mi, o->head, w->n_tokens, w->batch);
        }
    }
}

/* --------------------------------------------------------------- output -- */

static int save_json(const bench_result *r, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) return cli_error(CMD, "cannot write %s", path);
    int bad = bench_write_json(f, r) != 0;
    return (fclose(f) != 0 || bad) ? cli_error(CMD, "cannot write %s", path) : 0;
}

static int report(const bench_result *r, const bench_opts *o) {
    if (o->format == 1) bench_write_json(stdout, r);
    else if (o->format == 2) bench_print_csv(stdout, r);
    else bench_print_table(stdout, r);
    fflush(stdout);
    if (r->interrupted) {
        if (o->baseline || o->save_baseline)
            fprintf(stderr, "bitnet bench: interrupted: no baseline compared or saved\n");
        return EXIT_INTERRUPTED;
    }
    int status = 0;
    if (o->baseline) {
        /* Keep stdout machine-readable when it holds JSON or CSV. */
        int n = bench_compare(o->format ? stderr : stdout, r, o->baseline, o->tolerance);
        status = n < 0 ? 1 : (n > 0 ? EXIT_REGRESSION : 0);
    }
    if (o->save_baseline && save_json(r, o->save_baseline)) status = 1;
    return status;
}

static void describe(bench_result *r, const bitnet_model *m, const bench_opts *o) {
    bitnet_model_info mi;
    bitnet_model_get_info(m, &mi);
    r->model_path = o->model;
    r->model_name = mi.name && *mi.name ? mi.name : o->model;
    r->arch = mi.arch;
    r->head = o->head && strcmp(o->head, "auto") ? o->head : "as stored";
    r->n_params = mi.n_params;
    r->file_bytes = mi.file_bytes;
    r->cpu = bench_cpu_model();
    r->version = bitnet_version();
    snprintf(r->device, sizeof r->device, "not run");
    r->delay_us = o->delay_us;
    r->profiled = o->profile;
    int need = list_max(&o->tg) + 1;
    r->n_ctx = list_max(&o->pp) > need ? list_max(&o->pp) : need;
}

static int bench_model(bitnet_model *m, const bench_opts *o) {
    bench_result r;
    memset(&r, 0, sizeof r);
    describe(&r, m, o);
    bitnet_model_info mi;
    bitnet_model_get_info(m, &mi);
    bitnet_sampler_params sp;
    bitnet_sampler_params_default(&sp);
    sp.seed = 1234;
    if (o->greedy) sp.temperature = 0.0f;
    const bitnet_tokenizer *tok = bitnet_model_tokenizer(m);
    int bos = tok ? bitnet_tokenizer_bos(tok) : -1;
    bench_run b = {o, NULL, NULL, mi.n_vocab, bos >= 0 && bos < mi.n_vocab ? bos : 0, make_ids(r.n_ctx, mi.n_vocab)};
    int status = 1;
    if (!b.ids || bitnet_sampler_new(&sp, &b.smp, NULL) != BITNET_OK) cli_error(CMD, "out of memory");
    else if (make_rows(&r, o)) {
        bench_signals_install();
        int rc = run_all(m, o, &r, &b);
        if (rc == 0 && o->probe && !strncmp(r.device, "cpu", 3)) probe(m, o, &r);
        r.interrupted = bench_interrupted();
        bench_signals_restore();
        if (!o->quiet) bench_progress_end();
        if (rc == 0) status = report(&r, o);
    }
    bitnet_sampler_free(b.smp);
    free(b.ids);
    free(r.rows);
    return status;
}

int cmd_bench(int argc, char **argv) {
    bench_opts o;
    memset(&o, 0, sizeof o);
    int r = parse_args(&o, argc, argv);
    if (r) {
        free_opts(&o);
        return r == 2 ? 0 : 1;
    }
    bitnet_error err;
    bitnet_model *m = NULL;
    int status = 1;
    bitnet_model_params mp;
    bitnet_model_params_default(&mp);
    mp.head_type = o.head;
    if (bitnet_model_load(o.model, &mp, &m, &err) != BITNET_OK) cli_error(CMD, "%s", err.message);
    else status = bench_model(m, &o);
    bitnet_model_free(m);
    free_opts(&o);
    return status;
}
