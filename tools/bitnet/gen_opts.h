/* Options shared by the generating subcommands (`run`, `chat`): model,
 * context, device and sampling. Each subcommand parses its own options and
 * hands every other one to gen_opts_parse. */
#ifndef BITNET_GEN_OPTS_H
#define BITNET_GEN_OPTS_H

#include <stdio.h>

#include "bitnet.h"

#define GEN_OPTS_MAX_BIAS 256

typedef struct gen_opts {
    const char *model;          /* -m; NULL = cli_default_model() */
    int n_ctx;                  /* -c; 0 = the model's training context */
    int n_threads;              /* -t; 0 = automatic */
    const char *device;         /* --device; NULL = auto */
    const char *head;           /* --head; NULL = as stored */
    int n_predict;              /* -n; -1 = until the end */
    int verbose;                /* -v */
    bitnet_sampler_params sp;   /* --temp, --top-k, ... (sp.logit_bias = bias) */
    bitnet_logit_bias bias[GEN_OPTS_MAX_BIAS];
} gen_opts;

/* Defaults: sampler defaults, n_predict as given. */
void gen_opts_init(gen_opts *o, int n_predict);

/* Tries argv[*i] as a shared option (advancing *i past its value). Returns 1
 * when it was one, 0 when it is not a shared option, -1 after printing an
 * error for a bad or missing value. */
int gen_opts_parse(gen_opts *o, const char *cmd, int argc, char **argv, int *i);

/* Help text for the shared options. */
void gen_opts_usage(FILE *f);

/* Loads the model and creates a context and a sampler from the options.
 * Prints the error and returns 1 on failure (everything freed), else 0. */
int gen_opts_open(const gen_opts *o, const char *cmd, bitnet_model **model, bitnet_context **ctx,
                  bitnet_sampler **smp);

/* Frees what gen_opts_open made (each may be NULL). */
void gen_opts_close(bitnet_model *model, bitnet_context *ctx, bitnet_sampler *smp);

/* "prompt: N tokens, X tok/s | generation: N tokens, Y tok/s" on stderr. */
void gen_print_timing(const bitnet_generate_stats *st);

#endif
