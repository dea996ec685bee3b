/* bitnet convert SRC OUT.gguf [--type T] [--embd-type E] [--force] [--quiet]
 * Writes any model bitnet.c reads as a GGUF file laid out like the official
 * BitNet files. Progress goes to stderr; Ctrl-C cancels cleanly. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cli_progress.h"

static int usage(void) {
    printf("usage: bitnet convert SRC OUT.gguf [--type i2_s|tq2_0|tq1_0|f16|f32]\n"
           "                      [--embd-type f16|q8_0|q6_k|q4_0|f32|bf16] [--force] [--quiet]\n\n"
           "SRC is a Hugging Face folder (packed BitNet or float master weights, Llama-style\n"
           "ternary models such as Falcon3-1.58bit) or a GGUF file. --type sets the ternary\n"
           "weights' type (default i2_s); --embd-type the token embedding's / output head's\n"
           "(default: a GGUF source's own type, else f16). --force replaces an existing OUT.\n");
    return 0;
}

static int parse_type(const char *name, const char *what, int *out) {
    int t = bitnet_type_from_name(name);
    if (t < 0) return cli_error("convert", "unknown %s '%s'", what, name);
    *out = t;
    return 0;
}

int cmd_convert(int argc, char **argv) {
    const char *src = NULL, *dst = NULL;
    bitnet_convert_params p;
    bitnet_convert_params_default(&p);
    int quiet = 0, wt = (int)p.weight_type, et = (int)p.embd_type;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage();
        else if (!strcmp(a, "--type") && more) { if (parse_type(argv[++i], "--type", &wt)) return 2; }
        else if (!strcmp(a, "--embd-type") && more) { if (parse_type(argv[++i], "--embd-type", &et)) return 2; }
        else if (!strcmp(a, "--force")) p.overwrite = 1;
        else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) quiet = 1;
        else if (a[0] == '-' && a[1]) return cli_error("convert", "unknown or incomplete option '%s'", a), 2;
        else if (!src) src = a;
        else if (!dst) dst = a;
        else return cli_error("convert", "unexpected argument '%s'", a), 2;
    }
    if (!src || !dst) return cli_error("convert", "usage: bitnet convert SRC OUT.gguf [--type T] (see --help)"), 2;
    p.weight_type = (bitnet_type)wt;
    p.embd_type = (bitnet_type)et;
    cli_progress prog;
    cli_progress_init(&prog, quiet);
    p.progress = cli_progress_cb;
    p.progress_user = &prog;
    bitnet_error err;
    bitnet_status rc = bitnet_convert(src, dst, &p, &err);
    cli_progress_done(&prog, rc == BITNET_OK);
    if (rc != BITNET_OK) return cli_error("convert", "%s", err.message);
    if (!quiet) fprintf(stderr, "bitnet convert: wrote %s\n", dst);
    return 0;
}
