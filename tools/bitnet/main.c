/* bitnet — command-line front end of bitnet.c. Dispatches to one subcommand. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"run", cmd_run, "continue a prompt: stream the generated text"},
    {"chat", cmd_chat, "talk with a model, one message per line (keeps the conversation cached)"},
    {"info", cmd_info, "describe a model: architecture, hyperparameters, tensors, tokenizer"},
    {"logits", cmd_logits, "write float32 logits for every position of a token sequence"},
    {"bench", cmd_bench, "measure speed (prompt, generation, latency), memory and bandwidth; check regressions"},
    {"perplexity", cmd_perplexity, "perplexity of a text or token sequences; KL divergence against a base model"},
    {"convert", cmd_convert, "write a model (HF folder or GGUF) as a GGUF file: i2_s, tq2_0, tq1_0, f16, f32"},
    {"gen-model", cmd_gen_model, "write a synthetic model with real shapes and random ternary weights"},
    {"tokenize", cmd_tokenize, "print the token ids of a text"},
    {"detokenize", cmd_detokenize, "print the text of token ids"},
};

static void usage(FILE *f) {
    fprintf(f, "bitnet %s — inference for ternary (BitNet b1.58) language models\n\n"
               "usage: bitnet COMMAND [options]   (bitnet COMMAND --help for its options)\n\ncommands:\n",
            bitnet_version());
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("bitnet %s\n", bitnet_version());
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "bitnet: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
