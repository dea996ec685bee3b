/* bench_tokenize — how long loading a tokenizer and tokenizing 1 MiB of
 * English text take. A program that prints figures, not a test.
 *
 * usage: bench_tokenize [--quick] [--text FILE] [TOKENIZER...]
 * Defaults: the Llama 3 tokenizer.json / tokenizer.model and the Llama 2
 * tokenizer.model from ../shared/data/tokenizers, and TinyStories text
 * (../shared/data/tinystories) repeated to exactly 1 MiB. Each tokenizer is
 * timed over 5 runs (1 with --quick); the best and the median are printed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bitnet.h"

#define TOKS BITNET_SHARED_DIR "/data/tokenizers"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The file's bytes repeated up to `size` bytes. */
static char *read_text(const char *path, size_t size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(size);
    size_t n = buf ? fread(buf, 1, size, f) : 0;
    fclose(f);
    if (n == 0) {
        free(buf);
        return NULL;
    }
    for (size_t i = n; i < size; i++) buf[i] = buf[i - n];
    return buf;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int bench(const char *path, const char *text, size_t len, int runs) {
    bitnet_error err = {0};
    bitnet_tokenizer *tok = NULL;
    double t0 = now();
    if (bitnet_tokenizer_load(path, &tok, &err)) {
        fprintf(stderr, "bench_tokenize: %s\n", err.message);
        return 1;
    }
    double load_s = now() - t0;
    int cap = (int)len + 8, n = 0;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    double times[16];
    for (int r = 0; r < runs; r++) {
        t0 = now();
        if (bitnet_tokenize(tok, text, len, 0, 1, ids, cap, &n, &err)) {
            fprintf(stderr, "bench_tokenize: %s\n", err.message);
            return 1;
        }
        times[r] = now() - t0;
    }
    qsort(times, (size_t)runs, sizeof times[0], cmp_double);
    printf("%-60s load %6.3f s  tokenize %zu bytes -> %d tokens: best %6.3f s, median %6.3f s (%.1f MB/s)\n", path,
           load_s, len, n, times[0], times[runs / 2], (double)len / times[0] / 1e6);
    free(ids);
    bitnet_tokenizer_free(tok);
    return 0;
}

int main(int argc, char **argv) {
    const char *text_path = BITNET_SHARED_DIR "/data/tinystories/tinystories_val_hf_prefix.txt";
    const char *paths[16];
    int n_paths = 0, runs = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) runs = 1;
        else if (!strcmp(argv[i], "--text") && i + 1 < argc) text_path = argv[++i];
        else if (n_paths < 16) paths[n_paths++] = argv[i];
    }
    if (n_paths == 0) {
        paths[n_paths++] = TOKS "/llama3/tokenizer.json";
        paths[n_paths++] = TOKS "/llama3/tokenizer.model";
        paths[n_paths++] = TOKS "/llama2/tokenizer.json";
        paths[n_paths++] = TOKS "/llama2/tokenizer.model";
    }
    size_t len = 1 << 20;
    char *text = read_text(text_path, len);
    if (!text) {
        fprintf(stderr, "bench_tokenize: cannot read %s\n", text_path);
        return 1;
    }
    int rc = 0;
    for (int i = 0; i < n_paths; i++) rc |= bench(paths[i], text, len, runs);
    free(text);
    return rc;
}
