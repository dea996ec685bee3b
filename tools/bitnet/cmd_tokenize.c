/* bitnet tokenize / bitnet detokenize — text to token ids and back.
 *
 *   bitnet tokenize   (-m MODEL | --tokenizer FILE) [--no-bos] [--no-special] (-p TEXT | --file F)
 *   bitnet detokenize (-m MODEL | --tokenizer FILE) [--special] [--ids 1,2,3]   (ids on stdin otherwise)
 *
 * tokenize prints the ids on one line, separated by spaces. detokenize writes
 * the text byte for byte (a newline is added only when stdout is a terminal),
 * so its output can be compared with the original text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

typedef struct tok_opts {
    const char *model, *tokenizer, *prompt, *file, *ids;
    int no_bos, no_special, special, pieces;
} tok_opts;

/* The tokenizer to use: a standalone one (*owned, freed by the caller) or
 * the model's (*model, freed by the caller). */
typedef struct tok_handle {
    bitnet_tokenizer *owned;
    bitnet_model *model;
    const bitnet_tokenizer *tok;
} tok_handle;

static void handle_free(tok_handle *h) {
    bitnet_tokenizer_free(h->owned);
    bitnet_model_free(h->model);
}

static int open_tokenizer(const char *cmd, const tok_opts *o, tok_handle *h) {
    bitnet_error err = {0};
    memset(h, 0, sizeof *h);
    if (o->tokenizer) {
        if (bitnet_tokenizer_load(o->tokenizer, &h->owned, &err)) return cli_error(cmd, "%s", err.message);
        h->tok = h->owned;
        return 0;
    }
    const char *path = o->model ? o->model : cli_default_model();
    if (!path) return cli_error(cmd, "no model: give -m MODEL or --tokenizer FILE");
    bitnet_model_params mp;
    bitnet_model_params_default(&mp);
    if (bitnet_model_load(path, &mp, &h->model, &err)) return cli_error(cmd, "%s", err.message);
    h->tok = bitnet_model_tokenizer(h->model);
    if (!h->tok) return cli_error(cmd, "%s has no tokenizer", path);
    return 0;
}

static void usage(const char *cmd, FILE *f) {
    if (!strcmp(cmd, "tokenize"))
        fprintf(f, "usage: bitnet tokenize (-m MODEL | --tokenizer FILE) [--no-bos] [--no-special] [--pieces]\n"
                   "                       (-p TEXT | --file F)\n"
                   "  prints the token ids of the text on one line, separated by spaces\n"
                   "  --tokenizer FILE  tokenizer.json, tokenizer.model, a .gguf file or a Hugging Face folder\n"
                   "  --no-bos          do not add the BOS token (default: as the tokenizer says)\n"
                   "  --no-special      special-token strings such as <|eot_id|> stay plain text\n"
                   "  --pieces          print one 'id<TAB>piece' line per token instead\n"
                   "  --file F          read the text from F ('-' = stdin), byte for byte\n");
    else
        fprintf(f, "usage: bitnet detokenize (-m MODEL | --tokenizer FILE) [--special] [--ids 1,2,3]\n"
                   "  prints the text of token ids (read from stdin when --ids is absent)\n"
                   "  --special         print special tokens such as <|eot_id|> as text\n");
}

/* Parses argv; returns -1 to go on, otherwise an exit status. */
static int parse(int argc, char **argv, tok_opts *o) {
    const char *cmd = argv[0];
    memset(o, 0, sizeof *o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **val = !strcmp(a, "-m") || !strcmp(a, "--model") ? &o->model
                           : !strcmp(a, "--tokenizer")               ? &o->tokenizer
                           : !strcmp(a, "-p") || !strcmp(a, "--prompt") ? &o->prompt
                           : !strcmp(a, "--file") || !strcmp(a, "-f") ? &o->file
                           : !strcmp(a, "--ids")                     ? &o->ids
                                                                     : NULL;
        if (val) {
            if (i + 1 >= argc) return cli_error(cmd, "%s needs a value", a) + 1;
            *val = argv[++i];
        } else if (!strcmp(a, "--no-bos")) {
            o->no_bos = 1;
        } else if (!strcmp(a, "--no-special")) {
            o->no_special = 1;
        } else if (!strcmp(a, "--special")) {
            o->special = 1;
        } else if (!strcmp(a, "--pieces")) {
            o->pieces = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(cmd, stdout);
            return 0;
        } else {
            usage(cmd, stderr);
            return cli_error(cmd, "unknown option '%s'", a) + 1;
        }
    }
    return -1;
}

static int print_ids(const bitnet_tokenizer *tok, const int32_t *ids, int n, int pieces) {
    char buf[256];
    for (int i = 0; i < n; i++) {
        if (!pieces) {
            printf(i ? " %d" : "%d", (int)ids[i]);
            continue;
        }
        int len = bitnet_token_to_bytes(tok, ids[i], 1, buf, (int)sizeof buf);
        printf("%d\t%.*s\n", (int)ids[i], len < (int)sizeof buf ? len : (int)sizeof buf, buf);
    }
    if (!pieces) putchar('\n');
    return fflush(stdout) == 0 ? 0 : 1;
}

int cmd_tokenize(int argc, char **argv) {
    tok_opts o;
    int st = parse(argc, argv, &o);
    if (st >= 0) return st;
    if (!o.prompt == !o.file) {
        usage("tokenize", stderr);
        return cli_error("tokenize", "give exactly one of -p TEXT and --file F") + 1;
    }
    size_t len = 0;
    char *text = o.file ? cli_read_file(o.file, &len) : NULL;
    if (o.file && !text) return cli_error("tokenize", "cannot read %s", o.file);
    if (o.prompt) len = strlen(o.prompt);
    tok_handle h;
    if (open_tokenizer("tokenize", &o, &h)) {
        free(text);
        handle_free(&h);
        return 1;
    }
    const char *src = text ? text : o.prompt;
    bitnet_error err = {0};
    int n = 0, rc = 1;
    /* About one token per byte at most; retry with the exact count if not. */
    int cap = len < (size_t)INT32_MAX - 8 ? (int)len + 8 : INT32_MAX;
    int32_t *ids = NULL;
    bitnet_status ts = BITNET_E_INVALID_ARG;
    for (int tries = 0; tries < 2 && ts == BITNET_E_INVALID_ARG; tries++) {
        free(ids);
        if (tries) cap = n;
        ids = malloc((size_t)cap * sizeof *ids);
        if (!ids) break;
        ts = bitnet_tokenize(h.tok, src, len, o.no_bos ? 0 : -1, !o.no_special, ids, cap, &n, &err);
        if (ts == BITNET_E_INVALID_ARG && n <= cap) break; /* a real argument error */
    }
    if (!ids) cli_error("tokenize", "out of memory");
    else if (ts) cli_error("tokenize", "%s", err.message);
    else rc = print_ids(h.tok, ids, n, o.pieces);
    free(ids);
    free(text);
    handle_free(&h);
    return rc;
}

/* Streams the text of ids to stdout. */
static int write_text(const bitnet_tokenizer *tok, const int32_t *ids, int n, int special) {
    bitnet_detok *d;
    bitnet_error err = {0};
    if (bitnet_detok_new(tok, BITNET_DETOK_STRIP_SPACE | (special ? BITNET_DETOK_SPECIAL : 0), &d, &err))
        return cli_error("detokenize", "%s", err.message);
    const char *s;
    size_t len;
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (bitnet_detok_feed(d, ids[i], &s, &len, &err)) rc = cli_error("detokenize", "%s", err.message);
        else fwrite(s, 1, len, stdout);
    }
    bitnet_detok_flush(d, &s, &len);
    fwrite(s, 1, len, stdout);
    bitnet_detok_free(d);
    if (!rc && isatty(STDOUT_FILENO)) putchar('\n');
    return fflush(stdout) == 0 ? rc : 1;
}

int cmd_detokenize(int argc, char **argv) {
    tok_opts o;
    int st = parse(argc, argv, &o);
    if (st >= 0) return st;
    char *in = o.ids ? NULL : cli_read_file("-", NULL);
    if (!o.ids && !in) return cli_error("detokenize", "cannot read ids from stdin");
    int32_t *ids = NULL;
    int n = cli_parse_ids(o.ids ? o.ids : in, &ids);
    free(in);
    if (n < 0) return cli_error("detokenize", "bad id list (want non-negative integers separated by commas or spaces)");
    tok_handle h;
    int rc = open_tokenizer("detokenize", &o, &h);
    if (!rc) rc = write_text(h.tok, ids, n, o.special);
    free(ids);
    handle_free(&h);
    return rc;
}
