/* Options shared by `bitnet run` and `bitnet chat` (see gen_opts.h). */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "gen_opts.h"

void gen_opts_init(gen_opts *o, int n_predict) {
    memset(o, 0, sizeof *o);
    o->n_predict = n_predict;
    bitnet_sampler_params_default(&o->sp);
    o->sp.logit_bias = o->bias;
}

/* Strict number parsing: the whole string must be the number. */
static int parse_int(const char *s, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return 0;
    *out = (int)v;
    return 1;
}

static int parse_float(const char *s, float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || isnan(v)) return 0;
    *out = (float)v;
    return 1;
}

static int parse_u64(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    if (*s == '-') return 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end) return 0;
    *out = (uint64_t)v;
    return 1;
}

/* --logit-bias ID=BIAS, BIAS a number or -inf. */
static int parse_bias(gen_opts *o, const char *s) {
    const char *eq = strchr(s, '=');
    if (!eq || eq == s || o->sp.n_logit_bias >= GEN_OPTS_MAX_BIAS) return 0;
    char id[32];
    size_t n = (size_t)(eq - s);
    if (n >= sizeof id) return 0;
    memcpy(id, s, n);
    id[n] = '\0';
    bitnet_logit_bias *b = &o->bias[o->sp.n_logit_bias];
    int token;
    if (!parse_int(id, 0, INT32_MAX, &token)) return 0;
    b->token = token;
    if (!strcasecmp(eq + 1, "-inf")) b->bias = -INFINITY;
    else if (!parse_float(eq + 1, &b->bias) || !isfinite(b->bias)) return 0;
    o->sp.n_logit_bias++;
    return 1;
}

static int bad_value(const char *cmd, const char *opt, const char *val, const char *want) {
    cli_error(cmd, "%s: bad value '%s' (%s)", opt, val, want);
    return -1;
}

/* Options that take an integer: name, target, range, description. */
typedef struct int_opt {
    const char *name;
    size_t offset;
    long lo, hi;
    const char *want;
} int_opt;

static const int_opt int_opts[] = {
    {"-c", offsetof(gen_opts, n_ctx), 0, 1 << 20, "a token count, 0 = the model's"},
    {"-t", offsetof(gen_opts, n_threads), 0, 4096, "a thread count, 0 = automatic"},
    {"-n", offsetof(gen_opts, n_predict), -1, INT32_MAX, "a token count, -1 = until the end"},
    {"--top-k", offsetof(gen_opts, sp) + offsetof(bitnet_sampler_params, top_k), 0, INT32_MAX, "0 = off"},
    {"--repeat-last-n", offsetof(gen_opts, sp) + offsetof(bitnet_sampler_params, penalty_last_n), -1, 1 << 20,
     "a token count, 0 = off, -1 = all"},
};

typedef struct float_opt {
    const char *name;
    size_t offset;
    float lo, hi;
    const char *want;
} float_opt;

#define SP(field) (offsetof(gen_opts, sp) + offsetof(bitnet_sampler_params, field))
static const float_opt float_opts[] = {
    {"--temp", SP(temperature), 0.0f, 100.0f, "0 = greedy, up to 100"},
    {"--top-p", SP(top_p), 0.0f, 1.0f, "between 0 and 1"},
    {"--min-p", SP(min_p), 0.0f, 1.0f, "between 0 and 1"},
    {"--repeat-penalty", SP(repeat_penalty), 1e-3f, 100.0f, "1 = off"},
    {"--frequency-penalty", SP(frequency_penalty), -100.0f, 100.0f, "0 = off"},
    {"--presence-penalty", SP(presence_penalty), -100.0f, 100.0f, "0 = off"},
};

int gen_opts_parse(gen_opts *o, const char *cmd, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    int more = *i + 1 < argc;
    if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
        o->verbose = 1;
        return 1;
    }
    int known = !strcmp(a, "-m") || !strcmp(a, "--device") || !strcmp(a, "--seed") || !strcmp(a, "--logit-bias") ||
                !strcmp(a, "--head");
    for (size_t k = 0; k < sizeof int_opts / sizeof int_opts[0]; k++) known |= !strcmp(a, int_opts[k].name);
    for (size_t k = 0; k < sizeof float_opts / sizeof float_opts[0]; k++) known |= !strcmp(a, float_opts[k].name);
    if (!known) return 0;
    if (!more) {
        cli_error(cmd, "%s needs a value (see --help)", a);
        return -1;
    }
    const char *v = argv[++*i];
    if (!strcmp(a, "-m")) o->model = v;
    else if (!strcmp(a, "--device")) o->device = v;
    else if (!strcmp(a, "--head")) o->head = v;
    else if (!strcmp(a, "--seed")) {
        if (!parse_u64(v, &o->sp.seed) || o->sp.seed == BITNET_SEED_RANDOM)
            return bad_value(cmd, a, v, "a non-negative integer below 2^64-1");
    } else if (!strcmp(a, "--logit-bias")) {
        if (!parse_bias(o, v)) return bad_value(cmd, a, v, "TOKEN_ID=BIAS, BIAS a number or -inf");
    }
    for (size_t k = 0; k < sizeof int_opts / sizeof int_opts[0]; k++)
        if (!strcmp(a, int_opts[k].name) &&
            !parse_int(v, int_opts[k].lo, int_opts[k].hi, (int *)((char *)o + int_opts[k].offset)))
            return bad_value(cmd, a, v, int_opts[k].want);
    for (size_t k = 0; k < sizeof float_opts / sizeof float_opts[0]; k++) {
        const float_opt *f = &float_opts[k];
        float *dst = (float *)((char *)o + f->offset);
        if (!strcmp(a, f->name) && (!parse_float(v, dst) || *dst < f->lo || *dst > f->hi))
            return bad_value(cmd, a, v, f->want);
    }
    return 1;
}

void gen_opts_usage(FILE *f) {
    fprintf(f, "model and context:\n"
               "  -m MODEL              .gguf file or Hugging Face folder (default: $BITNET_MODEL or the bundled model)\n"
               "  -c N                  context length in tokens (default: the model's)\n"
               "  -t N                  CPU threads (default: physical cores)\n"
               "  --device D            auto | cpu | cuda | cuda:N (default auto)\n"
               "  --head auto|q8_0      output head as stored, or an int8 copy made at load\n"
               "  -v, --verbose         model, device and seed on stderr\n"
               "sampling:\n"
               "  --temp T              temperature; 0 = greedy (default 0.8)\n"
               "  --top-k K             keep the K most likely tokens; 0 = off (default 40)\n"
               "  --top-p P             nucleus: smallest set with probability >= P; 1 = off (default 0.95)\n"
               "  --min-p P             drop tokens below P x the top probability; 0 = off (default 0.05)\n"
               "  --repeat-penalty R    penalise recent tokens; 1 = off (default)\n"
               "  --repeat-last-n N     how many recent tokens the penalties see; -1 = all (default 64)\n"
               "  --frequency-penalty F subtract F x count from recent tokens (default 0)\n"
               "  --presence-penalty P  subtract P once from recent tokens (default 0)\n"
               "  --logit-bias ID=B     add B (a number or -inf) to token ID's logit; repeatable\n"
               "  --seed S              random seed (default: drawn; shown with -v)\n");
}

/* Frees what was made so far, clears the outputs and prints the error. */
static int open_failed(const char *cmd, const char *msg, bitnet_model **model, bitnet_context **ctx,
                       bitnet_sampler **smp) {
    gen_opts_close(*model, *ctx, *smp);
    *model = NULL;
    *ctx = NULL;
    *smp = NULL;
    return cli_error(cmd, "%s", msg);
}

int gen_opts_open(const gen_opts *o, const char *cmd, bitnet_model **model, bitnet_context **ctx,
                  bitnet_sampler **smp) {
    *model = NULL;
    *ctx = NULL;
    *smp = NULL;
    const char *path = o->model ? o->model : cli_default_model();
    if (!path) return cli_error(cmd, "no model given (-m MODEL)");
    bitnet_error err;
    bitnet_sampler_params sp = o->sp;
    sp.logit_bias = o->bias;
    if (bitnet_sampler_new(&sp, smp, &err) != BITNET_OK) return open_failed(cmd, err.message, model, ctx, smp);
    bitnet_model_params mp;
    bitnet_model_params_default(&mp);
    mp.verbose = o->verbose;
    mp.head_type = o->head;
    if (bitnet_model_load(path, &mp, model, &err) != BITNET_OK) return open_failed(cmd, err.message, model, ctx, smp);
    if (!bitnet_model_tokenizer(*model)) return open_failed(cmd, "the model has no tokenizer", model, ctx, smp);
    bitnet_context_params cp;
    bitnet_context_params_default(&cp);
    cp.n_ctx = o->n_ctx;
    cp.n_threads = o->n_threads;
    cp.device = o->device;
    if (bitnet_context_create(*model, &cp, ctx, &err) != BITNET_OK) return open_failed(cmd, err.message, model, ctx, smp);
    if (o->verbose)
        fprintf(stderr, "bitnet %s: model %s, device %s, context %d tokens, seed %llu\n", cmd, path,
                bitnet_context_device(*ctx), bitnet_context_n_ctx(*ctx), (unsigned long long)bitnet_sampler_seed(*smp));
    return 0;
}

void gen_opts_close(bitnet_model *model, bitnet_context *ctx, bitnet_sampler *smp) {
    bitnet_context_free(ctx);
    bitnet_model_free(model);
    bitnet_sampler_free(smp);
}

void gen_print_timing(const bitnet_generate_stats *st) {
    fprintf(stderr, "prompt: %d tokens, %.2f tok/s | generation: %d tokens, %.2f tok/s\n", st->n_prompt,
            st->prompt_tok_s, st->n_generated, st->generate_tok_s);
}
