/* bitnet info MODEL — architecture, hyperparameters, tensor table, tokenizer. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void print_hparams(const bitnet_model_info *i) {
    printf("model:         %s\n", i->name);
    printf("format:        %s\n", i->source_format);
    printf("architecture:  %s\n", i->arch);
    printf("parameters:    %lld (%.2f M)\n", (long long)i->n_params, i->n_params / 1e6);
    printf("file size:     %llu bytes (%.2f MiB)\n", (unsigned long long)i->file_bytes, i->file_bytes / 1048576.0);
    printf("n_vocab:       %d\n", i->n_vocab);
    printf("n_embd:        %d\n", i->n_embd);
    printf("n_layer:       %d\n", i->n_layer);
    printf("n_head:        %d\n", i->n_head);
    printf("n_head_kv:     %d\n", i->n_head_kv);
    printf("head_dim:      %d\n", i->head_dim);
    printf("n_ff:          %d\n", i->n_ff);
    printf("n_ctx_train:   %d\n", i->n_ctx_train);
    printf("rms_eps:       %g\n", (double)i->rms_eps);
    printf("rope_theta:    %g\n", (double)i->rope_theta);
    printf("rope:          %s\n", i->rope_neox ? "neox (i, i+d/2)" : "interleaved (2i, 2i+1)");
    printf("ffn:           %s%s\n", i->ffn_act == BITNET_FFN_RELU2 ? "relu2" : "silu",
           i->has_sub_norms ? ", sub-norms" : "");
    printf("output head:   %s\n", i->tied_output ? "tied to token_embd" : "output.weight");
    printf("cpu kernels:   %s\n", bitnet_cpu_kernels());
}

static void print_tokenizer(const bitnet_model *m) {
    const bitnet_tokenizer *t = bitnet_model_tokenizer(m);
    if (!t) {
        printf("tokenizer:     none\n");
        return;
    }
    char desc[512];
    bitnet_tokenizer_describe(t, desc, sizeof desc);
    printf("tokenizer:     %s\n", desc);
}

static void print_tensors(const bitnet_model *m) {
    int n = bitnet_model_n_tensors(m);
    printf("tensors:       %d\n", n);
    for (int i = 0; i < n; i++) {
        bitnet_tensor_info ti;
        bitnet_model_tensor(m, i, &ti);
        char shape[96] = "";
        for (int d = 0; d < ti.n_dims; d++) {
            size_t l = strlen(shape);
            snprintf(shape + l, sizeof shape - l, "%s%lld", d ? " x " : "", (long long)ti.ne[d]);
        }
        printf("  %-36s %-6s %-20s %12llu bytes\n", ti.name, ti.type, shape, (unsigned long long)ti.n_bytes);
    }
}

int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    int show_tensors = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: bitnet info [--no-tensors] MODEL   (MODEL: a .gguf file or a Hugging Face folder)\n");
            return 0;
        } else if (!strcmp(argv[i], "--no-tensors")) show_tensors = 0;
        else if (!strcmp(argv[i], "-m") && i + 1 < argc) path = argv[++i];
        else if (argv[i][0] == '-') return cli_error("info", "unknown option '%s'", argv[i]);
        else if (!path) path = argv[i];
        else return cli_error("info", "unexpected argument '%s'", argv[i]);
    }
    if (!path && !(path = cli_default_model())) return cli_error("info", "no model given (bitnet info MODEL)");
    bitnet_model *m = NULL;
    bitnet_error err;
    if (bitnet_model_load(path, NULL, &m, &err) != BITNET_OK) return cli_error("info", "%s", err.message);
    bitnet_model_info info;
    bitnet_model_get_info(m, &info);
    print_hparams(&info);
    print_tokenizer(m);
    if (show_tensors) print_tensors(m);
    bitnet_model_free(m);
    return 0;
}
