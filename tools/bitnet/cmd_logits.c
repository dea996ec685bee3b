/* bitnet logits -m MODEL (--ids 1,2,3 | -p TEXT) -o FILE
 * Writes float32 little-endian logits [n_tokens x n_vocab] for every position
 * (the conformance tools read exactly this). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int usage(void) {
    printf("usage: bitnet logits [-m MODEL] (--ids 1,2,3 | -p TEXT) -o FILE [-t THREADS] [--no-bos] [--device D]\n"
           "  writes float32 little-endian logits [n_tokens x n_vocab] for every position\n"
           "  --device auto|cpu|cuda|cuda:N   where to run (default auto)\n"
           "  --head auto|q8_0                output head as stored, or an int8 copy\n");
    return 0;
}

static int tokenize_prompt(const bitnet_model *m, const char *text, int add_bos, int32_t **ids) {
    const bitnet_tokenizer *tok = bitnet_model_tokenizer(m);
    if (!tok) return cli_error("logits", "the model has no tokenizer; use --ids"), -1;
    size_t len = strlen(text);
    int cap = (int)(len + 8), n = 0;
    *ids = malloc((size_t)cap * sizeof **ids);
    bitnet_error err;
    if (!*ids || bitnet_tokenize(tok, text, len, add_bos, 1, *ids, cap, &n, &err) != BITNET_OK)
        return cli_error("logits", "%s", *ids ? err.message : "out of memory"), -1;
    return n;
}

static int write_floats(const char *path, const float *v, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    size_t w = fwrite(v, sizeof(float), n, f);
    return (fclose(f) == 0) & (w == n);
}

int cmd_logits(int argc, char **argv) {
    const char *model_path = NULL, *ids_arg = NULL, *prompt = NULL, *out = NULL, *device = NULL, *head = NULL;
    int threads = 0, add_bos = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage();
        else if (!strcmp(a, "-m") && more) model_path = argv[++i];
        else if (!strcmp(a, "--ids") && more) ids_arg = argv[++i];
        else if (!strcmp(a, "-p") && more) prompt = argv[++i];
        else if (!strcmp(a, "-o") && more) out = argv[++i];
        else if (!strcmp(a, "-t") && more) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--no-bos")) add_bos = 0;
        else if (!strcmp(a, "--device") && more) device = argv[++i];
        else if (!strcmp(a, "--head") && more) head = argv[++i];
        else return cli_error("logits", "unknown or incomplete option '%s' (see --help)", a);
    }
    if (!out) return cli_error("logits", "-o FILE is required");
    if (!ids_arg == !prompt) return cli_error("logits", "give exactly one of --ids and -p");
    if (threads < 0) return cli_error("logits", "-t must be a positive number");
    if (!model_path && !(model_path = cli_default_model())) return cli_error("logits", "no model given (-m MODEL)");

    bitnet_error err;
    bitnet_model *m = NULL;
    bitnet_model_params mp;
    bitnet_model_params_default(&mp);
    mp.head_type = head;
    if (bitnet_model_load(model_path, &mp, &m, &err) != BITNET_OK) return cli_error("logits", "%s", err.message);
    int32_t *ids = NULL;
    int n = ids_arg ? cli_parse_ids(ids_arg, &ids) : tokenize_prompt(m, prompt, add_bos, &ids);
    int rc = 1;
    bitnet_context *ctx = NULL;
    if (n < 0) {
        if (ids_arg) cli_error("logits", "--ids must be a comma-separated list of token ids");
    } else if (n == 0) {
        cli_error("logits", "no tokens to evaluate");
    } else {
        bitnet_context_params cp;
        bitnet_context_params_default(&cp);
        cp.n_threads = threads;
        cp.device = device;
        bitnet_model_info info;
        bitnet_model_get_info(m, &info);
        cp.n_ctx = n > info.n_ctx_train ? n : info.n_ctx_train;
        if (bitnet_context_create(m, &cp, &ctx, &err) != BITNET_OK ||
            bitnet_eval(ctx, ids, n, BITNET_LOGITS_ALL, &err) != BITNET_OK)
            cli_error("logits", "%s", err.message);
        else if (!write_floats(out, bitnet_get_logits(ctx, 0), (size_t)n * info.n_vocab))
            cli_error("logits", "cannot write %s", out);
        else
            rc = 0;
    }
    bitnet_context_free(ctx);
    free(ids);
    bitnet_model_free(m);
    return rc;
}
