/* bitnet gen-model PRESET OUT.gguf [overrides] — a synthetic model with the
 * exact shapes of a real one and random ternary weights (benchmarks, tests). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_progress.h"

static int usage(void) {
    printf("usage: bitnet gen-model PRESET OUT.gguf [options]\n\n"
           "presets:");
    for (int i = 0; bitnet_gen_preset_name(i); i++) printf(" %s", bitnet_gen_preset_name(i));
    printf("\n\noptions:\n"
           "  --type i2_s|tq2_0|tq1_0|f16|f32   ternary weight type (default i2_s)\n"
           "  --embd-type f16|q8_0|q6_k|q4_0|f32|bf16   token embedding type (default f16)\n"
           "  --layers N --vocab N               override the preset (small files for CI)\n"
           "  --tokenizer tokenizer.json         embed a real tokenizer (default: synthetic BPE)\n"
           "  --seed N  --name NAME  --force  --quiet\n"
           "  custom shapes (any preset): --arch bitnet-b1.58|bitnet|llama --embd N --ff N\n"
           "    --heads N --kv-heads N --head-dim N --ctx N --theta F --eps F --tied --untied\n"
           "note: TQ1_0/TQ2_0 need row lengths that are multiples of 256 (not the 3b preset);\n"
           "      bitnet.c runs I2_S rows that are multiples of 128 (the 3b preset's 8640-wide\n"
           "      ffn_down is written in bitnet.cpp's flat layout but cannot be run).\n");
    return 0;
}

static int parse_int(const char *s, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v <= 0 || v > 1 << 30) return 0;
    *out = (int)v;
    return 1;
}

static int parse_float(const char *s, float *out) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || *end || end == s || !(v > 0)) return 0;
    *out = v;
    return 1;
}

/* One "--flag VALUE" or "--flag" option; returns 1 used, 0 unknown, -1 bad value. */
static int option(bitnet_gen_params *p, const char *a, const char *v, int *used_value, int *quiet) {
    static const struct { const char *flag; size_t off; } ints[] = {
        {"--layers", offsetof(bitnet_gen_params, n_layer)}, {"--vocab", offsetof(bitnet_gen_params, n_vocab)},
        {"--embd", offsetof(bitnet_gen_params, n_embd)},     {"--ff", offsetof(bitnet_gen_params, n_ff)},
        {"--heads", offsetof(bitnet_gen_params, n_head)},    {"--kv-heads", offsetof(bitnet_gen_params, n_head_kv)},
        {"--head-dim", offsetof(bitnet_gen_params, head_dim)}, {"--ctx", offsetof(bitnet_gen_params, n_ctx)},
    };
    *used_value = 1;
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (!strcmp(a, ints[i].flag)) return v && parse_int(v, (int *)((char *)p + ints[i].off)) ? 1 : -1;
    if (!strcmp(a, "--theta")) return v && parse_float(v, &p->rope_theta) ? 1 : -1;
    if (!strcmp(a, "--eps")) return v && parse_float(v, &p->rms_eps) ? 1 : -1;
    if (!strcmp(a, "--arch")) return v ? (p->arch = v, 1) : -1;
    if (!strcmp(a, "--name")) return v ? (p->name = v, 1) : -1;
    if (!strcmp(a, "--tokenizer")) return v ? (p->tokenizer = v, 1) : -1;
    if (!strcmp(a, "--seed")) return v ? (p->seed = strtoull(v, NULL, 10), 1) : -1;
    if (!strcmp(a, "--type") || !strcmp(a, "--embd-type")) {
        int t = v ? bitnet_type_from_name(v) : -1;
        if (t < 0) return -1;
        if (a[2] == 't') p->weight_type = (bitnet_type)t;
        else p->embd_type = (bitnet_type)t;
        return 1;
    }
    *used_value = 0;
    if (!strcmp(a, "--tied")) return p->tied_output = 1, 1;
    if (!strcmp(a, "--untied")) return p->tied_output = 0, 1;
    if (!strcmp(a, "--force")) return p->overwrite = 1, 1;
    if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) return *quiet = 1, 1;
    return 0;
}

int cmd_gen_model(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return usage();
    if (argc < 3 || argv[1][0] == '-' || argv[2][0] == '-')
        return cli_error("gen-model", "usage: bitnet gen-model PRESET OUT.gguf [options] (see --help)"), 2;
    bitnet_gen_params p;
    bitnet_error err;
    if (bitnet_gen_params_preset(&p, argv[1], &err) != BITNET_OK)
        return cli_error("gen-model", "%s (see --help for the list)", err.message), 2;
    const char *dst = argv[2];
    int quiet = 0;
    for (int i = 3; i < argc; i++) {
        int used_value = 0;
        int r = option(&p, argv[i], i + 1 < argc ? argv[i + 1] : NULL, &used_value, &quiet);
        if (r == 0) return cli_error("gen-model", "unknown option '%s'", argv[i]), 2;
        if (r < 0) return cli_error("gen-model", "option %s needs a valid value", argv[i]), 2;
        i += used_value;
    }
    cli_progress prog;
    cli_progress_init(&prog, quiet);
    p.progress = cli_progress_cb;
    p.progress_user = &prog;
    bitnet_status rc = bitnet_gen_model(dst, &p, &err);
    cli_progress_done(&prog, rc == BITNET_OK);
    if (rc != BITNET_OK) return cli_error("gen-model", "%s", err.message);
    if (!quiet) fprintf(stderr, "bitnet gen-model: wrote %s\n", dst);
    return 0;
}
