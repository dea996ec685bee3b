/* bitnet perplexity -m MODEL (-f TEXT | --ids-json FILE) [--ctx N]
 * Perplexity over non-overlapping chunks, and the KL divergence of this
 * model's next-token distributions from a base model's, saved earlier with
 * --save-logits, so that variants (another head type, a kernel change) are
 * judged by numbers.
 *
 * Chunks: a text is tokenized once and cut into chunks of --ctx tokens, each
 * starting with BOS when the tokenizer adds one (the chunk holds ctx - 1 text
 * tokens then); the remainder shorter than a chunk is dropped. Token
 * sequences from --ids-json are used as given, each cut into pieces of at
 * most --ctx tokens. Every token of a chunk after its first is scored, given
 * the tokens before it in the chunk. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bench_util.h"
#include "cli.h"

#define CMD "perplexity"
#define EXIT_INTERRUPTED 130

static const char LOGP_MAGIC[8] = {'B', 'N', 'L', 'O', 'G', 'P', '0', '1'};

typedef struct ppl_opts {
    const char *model, *file, *ids_json, *device, *head, *save_logits, *kl_base;
    int ctx, max_chunks, threads, json, quiet;
} ppl_opts;

/* The chunks to score: pointers into token storage owned by the caller. */
typedef struct chunk {
    const int32_t *ids;
    int n;
    int bos; /* 1: a BOS token goes in front of ids */
} chunk;

typedef struct chunk_list {
    chunk *c;
    int n, cap;
    int32_t *store; /* every token, owned */
} chunk_list;

/* What scoring accumulates. */
typedef struct ppl_acc {
    double nll, nll2;   /* sums of -ln p(target) and its square */
    int64_t n;          /* scored positions */
    double *kl;         /* per position, KL mode */
    int64_t kl_cap, n_top_same;
    double base_nll;
} ppl_acc;

typedef struct ppl_io {
    FILE *save, *base;
    int n_vocab;
    float *row;         /* one row of log-probabilities */
} ppl_io;

static int usage(void) {
    printf("usage: bitnet perplexity [-m MODEL] (-f TEXT | --ids-json FILE) [options]\n\n"
           "Perplexity over non-overlapping chunks of --ctx tokens. A text is tokenized and cut\n"
           "into chunks that start with BOS (when the tokenizer adds one); a last piece shorter\n"
           "than a chunk is dropped. Every token after a chunk's first is scored.\n\n"
           "  -f FILE               the text (\"-\" = stdin)\n"
           "  --ids-json FILE       token ids instead of a text: [1,2,3], [[1,2],[3,4,5]] (each list\n"
           "                        a sequence, scored from its start) or a conformance-kit\n"
           "                        reference.json (the all_ids of every case)\n"
           "  --ctx N               tokens per chunk (default 512, at most the model's context)\n"
           "  --chunks N            score only the first N chunks\n"
           "  --save-logits FILE    write every scored position's log-probabilities (float32,\n"
           "                        n_vocab per position) as a base for --kl-base\n"
           "  --kl-base FILE        KL divergence from the base model's distributions in FILE\n"
           "                        (same text, --ctx and tokenizer), and how often the top token\n"
           "                        agrees\n"
           "  --head auto|q8_0      output head as stored, or an int8 copy made at load\n"
           "  -t N                  threads    --device D   auto|cpu|cuda|cuda:N\n"
           "  --json                print the result as JSON\n"
           "  -q                    no progress on stderr\n"
           "Ctrl-C stops after the current chunk and prints the result so far (exit status %d).\n",
           EXIT_INTERRUPTED);
    return 0;
}

/* An integer option >= min; 0 after printing an error. */
static int number(const char *flag, const char *v, int min, int *out) {
    char *end;
    long n = strtol(v, &end, 10);
    if (*end || end == v || n < min || n > (1 << 24)) return cli_error(CMD, "%s must be a number >= %d", flag, min), 0;
    *out = (int)n;
    return 1;
}

static int parse_args(ppl_opts *o, int argc, char **argv) {
    o->ctx = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(), 2;
        else if (!strcmp(a, "--json")) { o->json = 1; continue; }
        else if (!strcmp(a, "-q")) { o->quiet = 1; continue; }
        else if (!v) return cli_error(CMD, "unknown or incomplete option '%s' (see --help)", a);
        else if (!strcmp(a, "-m")) o->model = v;
        else if (!strcmp(a, "-f")) o->file = v;
        else if (!strcmp(a, "--ids-json")) o->ids_json = v;
        else if (!strcmp(a, "--device")) o->device = v;
        else if (!strcmp(a, "--head")) o->head = v;
        else if (!strcmp(a, "--save-logits")) o->save_logits = v;
        else if (!strcmp(a, "--kl-base")) o->kl_base = v;
        else if (!strcmp(a, "--ctx")) { if (!number(a, v, 2, &o->ctx)) return 1; }
        else if (!strcmp(a, "--chunks")) { if (!number(a, v, 1, &o->max_chunks)) return 1; }
        else if (!strcmp(a, "-t")) { if (!number(a, v, 1, &o->threads)) return 1; }
        else return cli_error(CMD, "unknown option '%s' (see --help)", a);
        i++;
    }
    if (!o->file == !o->ids_json) return cli_error(CMD, "give exactly one of -f TEXT and --ids-json FILE");
    if (o->save_logits && o->kl_base) return cli_error(CMD, "--save-logits and --kl-base go in separate runs");
    if (!o->model && !(o->model = cli_default_model())) return cli_error(CMD, "no model given (-m MODEL)");
    return 0;
}

/* --------------------------------------------------------------- chunks -- */

static int add_chunk(chunk_list *l, const int32_t *ids, int n, int bos) {
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 16;
        chunk *c = realloc(l->c, (size_t)cap * sizeof *c);
        if (!c) return 0;
        l->c = c;
        l->cap = cap;
    }
    l->c[l->n++] = (chunk){ids, n, bos};
    return 1;
}

/* Does the tokenizer put BOS in front of a text by default? */
static int adds_bos(const bitnet_tokenizer *tok) {
    int32_t one[4];
    int n = 0;
    return bitnet_tokenize(tok, "", 0, -1, 0, one, 4, &n, NULL) == BITNET_OK && n == 1;
}

static int tokenize_text(const bitnet_tokenizer *tok, const char *text, size_t len, int32_t **ids) {
    bitnet_error err;
    int n = 0, cap = (int)(len < (1u << 30) ? len : (1u << 30)) + 8;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!(*ids = malloc((size_t)cap * sizeof **ids))) return cli_error(CMD, "out of memory"), -1;
        bitnet_status rc = bitnet_tokenize(tok, text, len, 0, 0, *ids, cap, &n, &err);
        if (rc == BITNET_OK) return n;
        free(*ids);
        *ids = NULL;
        if (rc != BITNET_E_INVALID_ARG || n <= cap) break;
        cap = n;
    }
    return cli_error(CMD, "%s", err.message), -1;
}

static int text_chunks(const bitnet_model *m, const ppl_opts *o, chunk_list *l) {
    const bitnet_tokenizer *tok = bitnet_model_tokenizer(m);
    if (!tok) return cli_error(CMD, "the model has no tokenizer; use --ids-json");
    size_t len = 0;
    char *text = cli_read_file(o->file, &len);
    if (!text) return cli_error(CMD, "cannot read %s", o->file);
    int n = tokenize_text(tok, text, len, &l->store);
    free(text);
    if (n < 0) return 1;
    int bos = adds_bos(tok) && bitnet_tokenizer_bos(tok) >= 0, per = o->ctx - bos;
    for (int k = 0; (k + 1) * per <= n; k++)
        if (!add_chunk(l, l->store + (size_t)k * per, per, bos)) return cli_error(CMD, "out of memory");
    if (!l->n)
        return cli_error(CMD, "%s has %d tokens, fewer than one chunk of %d; use a smaller --ctx", o->file, n, o->ctx);
    return 0;
}

/* Appends the integers of a JSON array to l->store; returns the count or -1. */
static int json_ids(const cJSON *arr, chunk_list *l, int *used, int cap) {
    int start = *used;
    const cJSON *v;
    cJSON_ArrayForEach(v, arr) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > INT32_MAX || *used >= cap) return -1;
        l->store[(*used)++] = (int32_t)v->valuedouble;
    }
    return *used - start;
}

/* The sequences of a JSON document: [ids], [[ids], ...] or {"cases": [{"all_ids": [...]}]}. */
static int json_sequences(const cJSON *root, const cJSON **seqs, int max) {
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(root, "cases"), *v;
    int n = 0;
    if (cJSON_IsArray(root) && cJSON_IsNumber(cJSON_GetArrayItem(root, 0))) {
        seqs[0] = root;
        return 1;
    }
    const cJSON *list = cJSON_IsArray(root) ? root : cases;
    cJSON_ArrayForEach(v, list) {
        const cJSON *ids = cJSON_IsArray(v) ? v : cJSON_GetObjectItemCaseSensitive(v, "all_ids");
        if (!cJSON_IsArray(ids) || n == max) return -1;
        seqs[n++] = ids;
    }
    return n;
}

static int ids_chunks(const ppl_opts *o, chunk_list *l) {
    size_t len = 0;
    char *text = cli_read_file(o->ids_json, &len);
    if (!text) return cli_error(CMD, "cannot read %s", o->ids_json);
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    static const cJSON *seqs[4096];
    int n_seq = root ? json_sequences(root, seqs, 4096) : -1, used = 0, cap = (int)(len / 2 + 1);
    int ok = n_seq > 0 && (l->store = malloc((size_t)cap * sizeof *l->store)) != NULL;
    for (int s = 0; ok && s < n_seq; s++) {
        int start = used, n = json_ids(seqs[s], l, &used, cap);
        ok = n >= 0;
        /* A last piece of one token has nothing to score: it is left out. */
        for (int k = 0; ok && k + 1 < n; k += o->ctx)
            ok = add_chunk(l, l->store + start + k, n - k < o->ctx ? n - k : o->ctx, 0);
    }
    cJSON_Delete(root);
    if (!ok)
        return cli_error(CMD, "%s: expected [ids], [[ids], ...] or {\"cases\": [{\"all_ids\": [ids]}]}", o->ids_json);
    return 0;
}

/* -------------------------------------------------------------- scoring -- */

/* ln Σ exp(x), in double. */
static double log_sum_exp(const float *x, int n) {
    float mx = x[0];
    for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double s = 0.0;
    for (int i = 0; i < n; i++) s += exp((double)x[i] - mx);
    return mx + log(s);
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* Writes one position's record: the target id, then ln p for the vocabulary. */
static int save_position(ppl_io *io, const float *logits, double lse, int32_t target) {
    for (int v = 0; v < io->n_vocab; v++) io->row[v] = (float)(logits[v] - lse);
    return fwrite(&target, sizeof target, 1, io->save) == 1 &&
           fwrite(io->row, sizeof(float), (size_t)io->n_vocab, io->save) == (size_t)io->n_vocab;
}

/* Reads the base's record for this position and adds KL(base || this). */
static int kl_position(ppl_io *io, ppl_acc *a, const float *logits, double lse, int32_t target) {
    int32_t t;
    if (fread(&t, sizeof t, 1, io->base) != 1 ||
        fread(io->row, sizeof(float), (size_t)io->n_vocab, io->base) != (size_t)io->n_vocab)
        return cli_error(CMD, "--kl-base: the base file ends before position %lld", (long long)a->n), 0;
    if (t != target)
        return cli_error(CMD, "--kl-base: position %lld scores token %d here but %d in the base (another text, "
                              "--ctx or tokenizer?)", (long long)a->n, target, t), 0;
    double kl = 0.0;
    for (int v = 0; v < io->n_vocab; v++) {
        double lb = io->row[v];
        if (lb > -80.0) kl += exp(lb) * (lb - ((double)logits[v] - lse));
    }
    if (a->n >= a->kl_cap) {
        int64_t cap = a->kl_cap ? a->kl_cap * 2 : 4096;
        double *p = realloc(a->kl, (size_t)cap * sizeof *p);
        if (!p) return cli_error(CMD, "out of memory"), 0;
        a->kl = p;
        a->kl_cap = cap;
    }
    a->kl[a->n] = kl > 0 ? kl : 0.0; /* rounding can make a zero divergence slightly negative */
    a->n_top_same += argmax(io->row, io->n_vocab) == argmax(logits, io->n_vocab);
    a->base_nll -= io->row[target];
    return 1;
}

/* Scores one chunk: positions 0..n-2 predict tokens 1..n-1. */
static int score_chunk(bitnet_context *ctx, const chunk *c, int32_t bos, int32_t *buf, ppl_io *io, ppl_acc *a) {
    int n = 0;
    if (c->bos) buf[n++] = bos;
    memcpy(buf + n, c->ids, (size_t)c->n * sizeof *buf);
    n += c->n;
    if (n < 2) return 1;
    bitnet_error err;
    bitnet_kv_truncate(ctx, 0, NULL);
    if (bitnet_eval(ctx, buf, n, BITNET_LOGITS_ALL, &err) != BITNET_OK) return cli_error(CMD, "%s", err.message), 0;
    for (int j = 0; j + 1 < n; j++) {
        const float *lg = bitnet_get_logits(ctx, j);
        double lse = log_sum_exp(lg, io->n_vocab), nll = lse - lg[buf[j + 1]];
        if (io->save && !save_position(io, lg, lse, buf[j + 1]))
            return cli_error(CMD, "cannot write the logits file"), 0;
        if (io->base && !kl_position(io, a, lg, lse, buf[j + 1])) return 0;
        a->nll += nll;
        a->nll2 += nll * nll;
        a->n++;
    }
    return 1;
}

/* ------------------------------------------------------- logits files -- */

static int open_logits_files(const ppl_opts *o, ppl_io *io) {
    uint32_t hdr[2] = {(uint32_t)io->n_vocab, (uint32_t)o->ctx};
    if (o->save_logits) {
        io->save = fopen(o->save_logits, "wb");
        if (!io->save || fwrite(LOGP_MAGIC, 8, 1, io->save) != 1 || fwrite(hdr, sizeof hdr, 1, io->save) != 1)
            return cli_error(CMD, "cannot write %s", o->save_logits);
    }
    if (o->kl_base) {
        char magic[8];
        uint32_t h[2];
        io->base = fopen(o->kl_base, "rb");
        if (!io->base) return cli_error(CMD, "cannot read %s", o->kl_base);
        if (fread(magic, 8, 1, io->base) != 1 || memcmp(magic, LOGP_MAGIC, 8) || fread(h, sizeof h, 1, io->base) != 1)
            return cli_error(CMD, "%s is not a file written by --save-logits", o->kl_base);
        if (h[0] != hdr[0] || h[1] != hdr[1])
            return cli_error(CMD, "%s holds %u-token vocabularies in %u-token chunks; this run has %u and %u",
                             o->kl_base, h[0], h[1], hdr[0], hdr[1]);
    }
    return 0;
}

static int close_logits_files(ppl_io *io, const ppl_opts *o) {
    int bad = io->save && fclose(io->save) != 0;
    if (io->base) fclose(io->base);
    return bad ? cli_error(CMD, "cannot write %s", o->save_logits) : 0;
}

/* --------------------------------------------------------------- report -- */

static void kl_stats(ppl_acc *a, double *mean, double *median, double *p99, double *max) {
    *mean = bench_mean(a->kl, (int)a->n);
    *median = bench_percentile(a->kl, (int)a->n, 50);
    *p99 = bench_percentile(a->kl, (int)a->n, 99);
    *max = bench_percentile(a->kl, (int)a->n, 100);
}

static void print_text(const ppl_opts *o, ppl_acc *a, int chunks, int interrupted) {
    double mean = a->nll / (double)a->n, sd = sqrt(fmax(a->nll2 / (double)a->n - mean * mean, 0.0));
    /* ± from the standard error of the mean log-loss, carried through exp. */
    double ppl = exp(mean), se = ppl * sd / sqrt((double)a->n);
    printf("perplexity: %.4f ± %.4f over %lld tokens (%d chunk%s of at most %d)%s\n", ppl, se, (long long)a->n,
           chunks, chunks == 1 ? "" : "s", o->ctx, interrupted ? " [interrupted]" : "");
    if (!o->kl_base) return;
    double km, kmed, k99, kmax, base = exp(a->base_nll / (double)a->n);
    kl_stats(a, &km, &kmed, &k99, &kmax);
    printf("base perplexity: %.4f; ln(ppl / base ppl) = %+.6f\n", base, mean - a->base_nll / (double)a->n);
    printf("KL divergence (base || this): mean %.6g, median %.6g, p99 %.6g, max %.6g\n", km, kmed, k99, kmax);
    printf("same top token as the base: %.3f%%\n", 100.0 * (double)a->n_top_same / (double)a->n);
}

static void print_json(const ppl_opts *o, ppl_acc *a, int chunks, int interrupted) {
    double mean = a->nll / (double)a->n, sd = sqrt(fmax(a->nll2 / (double)a->n - mean * mean, 0.0));
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "perplexity", exp(mean));
    cJSON_AddNumberToObject(r, "perplexity_se", exp(mean) * sd / sqrt((double)a->n));
    cJSON_AddNumberToObject(r, "nll_mean", mean);
    cJSON_AddNumberToObject(r, "n_tokens", (double)a->n);
    cJSON_AddNumberToObject(r, "n_chunks", chunks);
    cJSON_AddNumberToObject(r, "ctx", o->ctx);
    cJSON_AddBoolToObject(r, "interrupted", interrupted);
    if (o->kl_base) {
        double km, kmed, k99, kmax;
        kl_stats(a, &km, &kmed, &k99, &kmax);
        cJSON *k = cJSON_AddObjectToObject(r, "kl");
        cJSON_AddNumberToObject(k, "mean", km);
        cJSON_AddNumberToObject(k, "median", kmed);
        cJSON_AddNumberToObject(k, "p99", k99);
        cJSON_AddNumberToObject(k, "max", kmax);
        cJSON_AddNumberToObject(k, "top1_agreement", (double)a->n_top_same / (double)a->n);
        cJSON_AddNumberToObject(k, "base_perplexity", exp(a->base_nll / (double)a->n));
    }
    char *s = cJSON_Print(r);
    if (s) puts(s);
    cJSON_free(s);
    cJSON_Delete(r);
}

/* ------------------------------------------------------------------ run -- */

static int score_all(bitnet_context *ctx, const chunk_list *l, int32_t bos, const ppl_opts *o, ppl_io *io,
                     ppl_acc *a, int *done) {
    int32_t *buf = malloc((size_t)(o->ctx + 1) * sizeof *buf);
    if (!buf) return cli_error(CMD, "out of memory");
    int total = o->max_chunks && o->max_chunks < l->n ? o->max_chunks : l->n, ok = 1;
    double t0 = bench_now();
    for (*done = 0; *done < total && ok && !bench_interrupted(); ++*done) {
        ok = score_chunk(ctx, &l->c[*done], bos, buf, io, a);
        double per = (bench_now() - t0) / (*done + 1);
        if (ok && !o->quiet && a->n)
            bench_progress(1, "perplexity: chunk %d/%d: %.4f so far, %.2f s/chunk, ~%.0f s left", *done + 1, total,
                           exp(a->nll / (double)a->n), per, per * (total - *done - 1));
    }
    if (!ok) --*done;
    if (!o->quiet) bench_progress_end();
    free(buf);
    return ok ? 0 : 1;
}

static int run(bitnet_model *m, ppl_opts *o) {
    bitnet_model_info mi;
    bitnet_model_get_info(m, &mi);
    if (!o->ctx) o->ctx = mi.n_ctx_train < 512 ? mi.n_ctx_train : 512;
    chunk_list l = {0};
    ppl_acc a = {0};
    ppl_io io = {NULL, NULL, mi.n_vocab, malloc((size_t)mi.n_vocab * sizeof(float))};
    bitnet_context *ctx = NULL;
    bitnet_context_params cp;
    bitnet_context_params_default(&cp);
    cp.n_ctx = o->ctx;
    cp.n_threads = o->threads;
    cp.device = o->device;
    bitnet_error err;
    int status = 1, done = 0;
    const bitnet_tokenizer *tok = bitnet_model_tokenizer(m);
    int32_t bos = tok ? bitnet_tokenizer_bos(tok) : -1;
    if (!io.row) cli_error(CMD, "out of memory");
    else if ((o->file ? text_chunks(m, o, &l) : ids_chunks(o, &l)) || open_logits_files(o, &io)) {
    } else if (bitnet_context_create(m, &cp, &ctx, &err) != BITNET_OK) {
        cli_error(CMD, "%s", err.message);
    } else {
        bench_signals_install();
        status = score_all(ctx, &l, bos, o, &io, &a, &done);
        int interrupted = bench_interrupted();
        bench_signals_restore();
        if (!status && !a.n) status = cli_error(CMD, "no position to score (sequences of one token?)");
        if (!status) o->json ? print_json(o, &a, done, interrupted) : print_text(o, &a, done, interrupted);
        if (!status && interrupted) status = EXIT_INTERRUPTED;
    }
    if (close_logits_files(&io, o) && !status) status = 1;
    bitnet_context_free(ctx);
    free(io.row);
    free(a.kl);
    free(l.c);
    free(l.store);
    return status;
}

int cmd_perplexity(int argc, char **argv) {
    ppl_opts o;
    memset(&o, 0, sizeof o);
    int r = parse_args(&o, argc, argv);
    if (r) return r == 2 ? 0 : 1;
    bitnet_error err;
    bitnet_model *m = NULL;
    bitnet_model_params mp;
    bitnet_model_params_default(&mp);
    mp.head_type = o.head;
    if (bitnet_model_load(o.model, &mp, &m, &err) != BITNET_OK) return cli_error(CMD, "%s", err.message);
    int status = run(m, &o);
    bitnet_model_free(m);
    return status;
}
