/* bitnet run: continue a prompt. Only the generated text goes to stdout,
 * streamed as it is produced; diagnostics and the timing line go to stderr. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"
#include "cli.h"
#include "gen_opts.h"

#define CMD "run"

static int usage(void) {
    printf("usage: bitnet run [-m MODEL] (-p TEXT | -f FILE | < FILE) [-n N] [options]\n\n"
           "Continues the prompt and prints only the generated text on stdout, as it is\n"
           "generated; the timing line goes to stderr. Generation stops at an end-of-text or\n"
           "end-of-turn token, after N tokens, or at the end of the context.\n\n"
           "prompt:\n"
           "  -p TEXT               the prompt (special tokens such as <|eot_id|> are parsed)\n"
           "  -f FILE               read the prompt from FILE (used as is, newlines included)\n"
           "                        (neither: read stdin when it is not a terminal)\n"
           "  --no-bos              do not add the tokenizer's beginning-of-text token\n"
           "  --truncate-prompt     when the prompt leaves no room for N tokens (at most half\n"
           "                        the context), drop its oldest tokens, keeping the BOS\n"
           "generation:\n"
           "  -n N                  most tokens to generate; -1 = until the end (default 256)\n"
           "  --ignore-eos          do not stop at end-of-text / end-of-turn tokens\n"
           "  --ids-out FILE        write the token ids as JSON {\"prompt\": [...], \"generated\": [...],\n"
           "                        \"stop\": \"eog|length|context|cancelled\"}\n"
           "  --profile             time per operation class on stderr at the end\n");
    gen_opts_usage(stdout);
    return 0;
}

typedef struct run_opts {
    gen_opts g;
    const char *prompt, *file, *ids_out;
    int add_bos, truncate, ignore_eos, profile;
} run_opts;

/* Returns 0 to go on, 1 for an error (printed), 2 when --help was shown. */
static int parse_args(run_opts *o, int argc, char **argv) {
    gen_opts_init(&o->g, 256);
    o->add_bos = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        int r = gen_opts_parse(&o->g, CMD, argc, argv, &i);
        if (r < 0) return 1;
        if (r > 0) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(), 2;
        else if (!strcmp(a, "-p") && more) o->prompt = argv[++i];
        else if (!strcmp(a, "-f") && more) o->file = argv[++i];
        else if (!strcmp(a, "--ids-out") && more) o->ids_out = argv[++i];
        else if (!strcmp(a, "--no-bos")) o->add_bos = 0;
        else if (!strcmp(a, "--truncate-prompt")) o->truncate = 1;
        else if (!strcmp(a, "--ignore-eos")) o->ignore_eos = 1;
        else if (!strcmp(a, "--profile")) o->profile = 1;
        else return cli_error(CMD, "unknown or incomplete option '%s' (see --help)", a);
    }
    if (o->prompt && o->file) return cli_error(CMD, "give -p or -f, not both");
    if (!o->prompt && !o->file && isatty(STDIN_FILENO))
        return cli_error(CMD, "no prompt given (-p TEXT, -f FILE, or text on stdin)");
    return 0;
}

/* The prompt text: -p, -f FILE, or stdin. malloc'd; NULL after an error. */
static char *read_prompt(const run_opts *o, size_t *len) {
    if (o->prompt) {
        *len = strlen(o->prompt);
        char *s = malloc(*len + 1);
        if (s) memcpy(s, o->prompt, *len + 1);
        else cli_error(CMD, "out of memory");
        return s;
    }
    const char *path = o->file ? o->file : "-";
    errno = 0;
    char *s = cli_read_file(path, len);
    if (!s) cli_error(CMD, "cannot read the prompt from %s: %s", o->file ? o->file : "stdin",
                      errno ? strerror(errno) : "read error");
    return s;
}

/* Tokenizes the prompt into a malloc'd array; returns the count or -1. */
static int tokenize_prompt(const bitnet_tokenizer *tok, const char *text, size_t len, int add_bos, int32_t **ids) {
    bitnet_error err;
    int n = 0, cap = (int)(len < (1u << 28) ? len : (1u << 28)) + 8;
    for (int attempt = 0; attempt < 2; attempt++) {
        *ids = malloc((size_t)cap * sizeof **ids);
        if (!*ids) return cli_error(CMD, "out of memory"), -1;
        bitnet_status rc = bitnet_tokenize(tok, text, len, add_bos, 1, *ids, cap, &n, &err);
        if (rc == BITNET_OK) return n;
        free(*ids);
        *ids = NULL;
        if (rc != BITNET_E_INVALID_ARG || n <= cap) break;
        cap = n;
    }
    return cli_error(CMD, "%s", err.message), -1;
}

/* Room the prompt must leave for generation under --truncate-prompt. */
static int room_for(int n_predict, int n_ctx) {
    int half = n_ctx / 2;
    return n_predict >= 0 && n_predict < half ? n_predict : half;
}

/* Checks that the prompt fits, truncating it when asked. Returns the new
 * count, or -1 after printing the error. */
static int fit_prompt(const run_opts *o, const bitnet_tokenizer *tok, int32_t *ids, int n, int n_ctx) {
    if (n == 0) return cli_error(CMD, "the prompt is empty (and --no-bos gave no BOS token)"), -1;
    int keep = n_ctx - room_for(o->g.n_predict, n_ctx);
    if (o->truncate && n > keep && keep >= 1) {
        int head = ids[0] == bitnet_tokenizer_bos(tok) && keep > 1 ? 1 : 0; /* keep the BOS */
        memmove(ids + head, ids + n - (keep - head), (size_t)(keep - head) * sizeof *ids);
        fprintf(stderr, "bitnet run: prompt truncated from %d to its last %d tokens\n", n, keep);
        return keep;
    }
    if (n > n_ctx)
        return cli_error(CMD, "the prompt is %d tokens but the context holds %d (-c N enlarges it; "
                              "--truncate-prompt keeps the last tokens)", n, n_ctx), -1;
    return n;
}

static int print_piece(const char *piece, size_t len, int32_t token, void *user) {
    (void)token;
    (void)user;
    if (len) fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return ferror(stdout) ? 1 : 0; /* stdout gone (closed pipe): stop */
}

/* What the callback needs: every generated id when --ids-out asks for them. */
typedef struct run_sink {
    int keep_ids;
    int32_t *ids;
    int n, cap;
    int oom;
} run_sink;

static int keep_id(run_sink *s, int32_t token) {
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 64;
        int32_t *p = realloc(s->ids, (size_t)cap * sizeof *p);
        if (!p) return 0;
        s->ids = p;
        s->cap = cap;
    }
    s->ids[s->n++] = token;
    return 1;
}

static int on_piece(const char *piece, size_t len, int32_t token, void *user) {
    run_sink *s = user;
    if (token >= 0 && s->keep_ids && !keep_id(s, token)) {
        s->oom = 1;
        return 1;
    }
    return print_piece(piece, len, token, NULL);
}

static void write_ids(FILE *f, const int32_t *ids, int n) {
    fputc('[', f);
    for (int i = 0; i < n; i++) fprintf(f, i ? ", %d" : "%d", (int)ids[i]);
    fputc(']', f);
}

static int write_ids_file(const char *path, const int32_t *prompt, int n_prompt, const run_sink *gen,
                          bitnet_stop_reason stop) {
    static const char *names[] = {"none", "eog", "length", "context", "cancelled"};
    FILE *f = fopen(path, "w");
    if (!f) return cli_error(CMD, "cannot write %s", path);
    fputs("{\"prompt\": ", f);
    write_ids(f, prompt, n_prompt);
    fputs(", \"generated\": ", f);
    write_ids(f, gen->ids, gen->n);
    fprintf(f, ", \"stop\": \"%s\"}\n", names[stop]);
    return fclose(f) == 0 ? 0 : cli_error(CMD, "cannot write %s", path);
}

/* Generates and reports; returns the exit status. */
static int generate(const run_opts *o, bitnet_context *ctx, const bitnet_tokenizer *tok, bitnet_sampler *smp,
                    const int32_t *ids, int n) {
    run_sink sink = {o->ids_out != NULL, NULL, 0, 0, 0};
    bitnet_generate_params gp;
    bitnet_generate_params_default(&gp);
    gp.n_predict = o->g.n_predict;
    gp.ignore_eog = o->ignore_eos;
    gp.on_piece = on_piece;
    gp.user = &sink;
    gp.pick_on_device = 1; /* on_piece reads no logits: a GPU picks greedy tokens itself */
    bitnet_generate_stats st;
    bitnet_error err;
    bitnet_context_set_profiling(ctx, o->profile);
    bitnet_status rc = bitnet_generate(ctx, tok, smp, ids, n, &gp, &st, &err);
    if (isatty(STDOUT_FILENO) && st.n_generated) putchar('\n');
    fflush(stdout);
    int status = 0;
    if (sink.oom) status = cli_error(CMD, "out of memory");
    else if (rc != BITNET_OK && !(rc == BITNET_E_CANCELLED && ferror(stdout))) status = cli_error(CMD, "%s", err.message);
    if (rc == BITNET_OK && st.stop == BITNET_STOP_CONTEXT_FULL)
        fprintf(stderr, "bitnet run: stopped at the end of the %d-token context (use -c to enlarge it)\n",
                bitnet_context_n_ctx(ctx));
    if (st.n_prompt) gen_print_timing(&st);
    if (o->profile && st.n_prompt) {
        /* Sampling happens inside bitnet_generate, so it shows as unaccounted time. */
        bitnet_profile p;
        bitnet_context_get_profile(ctx, &p);
        bench_print_profile(stderr, &p, -1.0, (st.prompt_ms + st.generate_ms) / 1e3);
    }
    if (!status && o->ids_out) status = write_ids_file(o->ids_out, ids, n, &sink, st.stop);
    free(sink.ids);
    return status;
}

int cmd_run(int argc, char **argv) {
    run_opts o;
    memset(&o, 0, sizeof o);
    int r = parse_args(&o, argc, argv);
    if (r) return r == 2 ? 0 : 1;
    bitnet_model *model;
    bitnet_context *ctx;
    bitnet_sampler *smp;
    size_t len = 0;
    char *text = read_prompt(&o, &len);
    if (!text) return 1;
    if (gen_opts_open(&o.g, CMD, &model, &ctx, &smp)) {
        free(text);
        return 1;
    }
    const bitnet_tokenizer *tok = bitnet_model_tokenizer(model);
    int32_t *ids = NULL;
    int n = tokenize_prompt(tok, text, len, o.add_bos, &ids);
    free(text);
    int status = 1;
    if (n >= 0 && (n = fit_prompt(&o, tok, ids, n, bitnet_context_n_ctx(ctx))) >= 0)
        status = generate(&o, ctx, tok, smp, ids, n);
    free(ids);
    gen_opts_close(model, ctx, smp);
    return status;
}
