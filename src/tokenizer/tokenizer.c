/* Loading a tokenizer from a path (bitnet_tokenizer_load and the loaders in
 * tokenizer.h): picks the format by content, reads the files next to a
 * tokenizer.json, and describes the result for `bitnet info`. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tokenizer/tok_internal.h"
#include "util/mapped_file.h"

/* Reads a small file into a NUL-terminated malloc'd buffer; NULL when it
 * cannot be read (the optional config files). */
static char *read_optional(const char *dir, const char *name) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) return NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n >= 0 && n < (64 << 20) && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1))) {
            if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
                free(buf);
                buf = NULL;
            } else {
                buf[n] = '\0';
            }
        }
    }
    fclose(f);
    return buf;
}

static void dirname_of(const char *path, char *out, size_t cap) {
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(out, cap, ".");
    else snprintf(out, cap, "%.*s", (int)(slash - path == 0 ? 1 : slash - path), path);
}

/* tokenizer.json at `path` with the configs of folder `dir`. */
static bitnet_status load_json_file(bitnet_tokenizer **out, const bn_mapped_file *f, const char *dir,
                                    bitnet_error *err) {
    char *cfg = read_optional(dir, "tokenizer_config.json");
    char *model_cfg = read_optional(dir, "config.json");
    char *gen_cfg = read_optional(dir, "generation_config.json");
    bitnet_status rc = bn_tok_load_hf_json(out, (const char *)f->data, f->size, cfg, model_cfg, gen_cfg, err);
    free(cfg);
    free(model_cfg);
    free(gen_cfg);
    return rc;
}

static bitnet_status load_gguf_path(bitnet_tokenizer **out, const char *path, bitnet_error *err) {
    bn_gguf *g = NULL;
    bitnet_status rc = bn_gguf_open(&g, path, 1, err);
    if (!rc) rc = bn_tokenizer_from_gguf(out, g, err);
    bn_gguf_close(g);
    return rc;
}

static int starts_with_brace(const uint8_t *d, size_t n) {
    size_t i = 0;
    if (n >= 3 && !memcmp(d, "\xEF\xBB\xBF", 3)) i = 3; /* UTF-8 byte order mark */
    while (i < n && (d[i] == ' ' || d[i] == '\t' || d[i] == '\n' || d[i] == '\r')) i++;
    return i < n && d[i] == '{';
}

static bitnet_status load_file(bitnet_tokenizer **out, const char *path, bitnet_error *err) {
    bn_mapped_file f;
    bitnet_status rc = bn_mapped_file_open(&f, path, 1, err);
    if (rc) return rc;
    if (f.size >= 4 && !memcmp(f.data, "GGUF", 4)) {
        bn_mapped_file_close(&f);
        return load_gguf_path(out, path, err);
    }
    if (starts_with_brace(f.data, f.size)) {
        char dir[4096];
        dirname_of(path, dir, sizeof dir);
        rc = load_json_file(out, &f, dir, err);
    } else if (bn_tok_is_tiktoken((const char *)f.data, f.size)) {
        rc = bn_tok_load_tiktoken(out, (const char *)f.data, f.size, err);
    } else if (f.size) {
        rc = bn_tok_load_spm_model(out, f.data, f.size, err);
    } else {
        rc = bn_fail(err, BITNET_E_FORMAT, "empty file");
    }
    bn_mapped_file_close(&f);
    return rc;
}

bitnet_status bn_tokenizer_from_hf_dir(bitnet_tokenizer **out, const char *dir, bitnet_error *err) {
    if (!out || !dir) return bn_fail(err, BITNET_E_INVALID_ARG, "bn_tokenizer_from_hf_dir: bad arguments");
    *out = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    bn_mapped_file f;
    bitnet_status rc = bn_mapped_file_open(&f, path, 1, NULL);
    if (rc) { /* no tokenizer.json: a SentencePiece / tiktoken tokenizer.model will do */
        snprintf(path, sizeof path, "%s/tokenizer.model", dir);
        struct stat st;
        if (stat(path, &st) != 0) return bn_fail(err, BITNET_E_IO, "%s: no tokenizer.json or tokenizer.model", dir);
        rc = load_file(out, path, err);
        if (rc) bn_err_prefix(err, "%s", path);
        return rc;
    }
    rc = load_json_file(out, &f, dir, err);
    bn_mapped_file_close(&f);
    if (rc) bn_err_prefix(err, "%s", path);
    return rc;
}

bitnet_status bn_tokenizer_from_file(bitnet_tokenizer **out, const char *path, bitnet_error *err) {
    if (!out || !path) return bn_fail(err, BITNET_E_INVALID_ARG, "bn_tokenizer_from_file: bad arguments");
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0) return bn_fail(err, BITNET_E_IO, "%s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) return bn_tokenizer_from_hf_dir(out, path, err);
    bitnet_status rc = load_file(out, path, err);
    if (rc) bn_err_prefix(err, "%s", path);
    return rc;
}

bitnet_status bitnet_tokenizer_load(const char *path, bitnet_tokenizer **out, bitnet_error *err) {
    return bn_tokenizer_from_file(out, path, err);
}

void bn_tokenizer_summarize(const bitnet_tokenizer *t, bn_tokenizer_summary *o) {
    memset(o, 0, sizeof *o);
    o->model = t->kind == BN_TOK_SPM ? "llama" : "gpt2";
    o->pre = t->pre.name[0] ? t->pre.name : "none";
    o->source = t->source;
    o->n_vocab = t->n_vocab;
    o->n_merges = t->n_merges;
    o->n_special = t->n_special;
    o->bos = t->bos;
    o->eos = t->eos;
    o->add_bos = t->add_bos;
    o->add_space_prefix = t->kind == BN_TOK_SPM && t->add_space_prefix;
    o->byte_fallback = t->byte_fallback;
    o->ignore_merges = t->ignore_merges;
}

int bitnet_tokenizer_describe(const bitnet_tokenizer *tok, char *buf, size_t cap) {
    if (!tok) return -1;
    bn_tokenizer_summary s;
    bn_tokenizer_summarize(tok, &s);
    if (tok->kind == BN_TOK_SPM)
        return snprintf(buf, cap,
                        "SentencePiece BPE (llama, %s), %d tokens, %d merges, byte fallback %d, space prefix %d, "
                        "bos %d, eos %d, add_bos %d",
                        s.source, s.n_vocab, s.n_merges, s.byte_fallback, s.add_space_prefix, s.bos, s.eos,
                        s.add_bos);
    return snprintf(buf, cap,
                    "byte-level BPE (gpt2, %s), %d tokens, %d merges, pre-tokenizer %s, ignore_merges %d, "
                    "%d special, bos %d, eos %d, add_bos %d",
                    s.source, s.n_vocab, s.n_merges, s.pre, s.ignore_merges, s.n_special, s.bos, s.eos, s.add_bos);
}
