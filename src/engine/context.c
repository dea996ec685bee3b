/* bitnet_context: the KV cache of n_seq sequences and the buffers on a
 * backend, and the public evaluation API. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "model/forward.h"
#include "model/model.h"
#include "util/error.h"

/* Sequences per context: far above any useful batch, low enough that a
 * mistaken value fails here rather than as a huge allocation. */
#define BN_MAX_SEQ 4096

struct bitnet_context {
    bitnet_model *model;
    bn_backend *be;
    char device[32];
    bn_forward_state st;
    int *n_past; /* per sequence */
    /* Logits of the last eval: one row per token (LOGITS_ALL), just the last,
     * or (a batch) the kept tokens' rows, row_of[i] for token i (-1: none). */
    float *logits;
    size_t logits_cap; /* floats */
    int logits_backend; /* logits came from the backend's host_alloc */
    int n_eval, logits_all, logits_batch;
    /* bitnet_eval_batch work arrays, tok_cap entries each (greedy: the kept
     * rows' argmax); seq_cnt: n_seq */
    int32_t *row_of, *pos, *seq, *out_rows, *greedy;
    int tok_cap;
    int *seq_cnt;
    bitnet_profile profile;
};

void bitnet_context_params_default(bitnet_context_params *p) {
    memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->n_batch = 512;
    p->n_seq = 1;
}

/* Parses "auto" | "cpu" | "cuda" | "cuda:N". Returns -2 for cpu, -1 for auto,
 * N >= 0 for a CUDA device, -3 for a malformed name. */
static int parse_device(const char *d) {
    if (!d || !strcmp(d, "auto")) return -1;
    if (!strcmp(d, "cpu")) return -2;
    if (!strcmp(d, "cuda")) return 0;
    if (!strncmp(d, "cuda:", 5) && d[5] >= '0' && d[5] <= '9') {
        char *end;
        long n = strtol(d + 5, &end, 10);
        if (!*end && n < 64) return (int)n;
    }
    return -3;
}

static bitnet_status create_cpu(bitnet_context *c, const bitnet_context_params *p, bitnet_error *err) {
    bitnet_status rc = bn_backend_cpu_create(&c->be, p->n_threads, err);
    if (rc) return rc;
    snprintf(c->device, sizeof c->device, "cpu/%s", bn_backend_cpu_kernels_name(c->be));
    /* Per-thread scratch holds a decoded head row or a row of attention scores. */
    size_t widest = (size_t)c->model->hp.n_embd > (size_t)p->n_ctx ? (size_t)c->model->hp.n_embd : (size_t)p->n_ctx;
    return bn_backend_cpu_reserve(c->be, widest, err);
}

static bitnet_status create_backend(bitnet_context *c, const bitnet_context_params *p, bitnet_error *err) {
    int dev = parse_device(p->device);
    if (dev == -3)
        return bn_fail(err, BITNET_E_INVALID_ARG, "unknown device '%s' (use auto, cpu, cuda or cuda:N)", p->device);
    if (dev == -2) return create_cpu(c, p, err);
#ifdef BITNET_HAVE_CUDA
    int n_gpu = bn_cuda_device_count();
    if (dev >= 0 || n_gpu > 0) {
        int index = dev >= 0 ? dev : 0;
        bitnet_status rc = bn_backend_cuda_create(&c->be, index, err);
        if (rc == BITNET_OK) {
            snprintf(c->device, sizeof c->device, "cuda:%d", index);
            return rc;
        }
        if (dev >= 0) return rc; /* an explicit CUDA request must not fall back silently */
        fprintf(stderr, "bitnet: no usable GPU (%s); running on the CPU\n", err ? err->message : "unknown error");
        bn_err_clear(err);
    }
#else
    if (dev >= 0)
        return bn_fail(err, BITNET_E_DEVICE, "device '%s' requested, but this build of bitnet.c has no CUDA backend",
                       p->device);
#endif
    return create_cpu(c, p, err);
}

bitnet_status bitnet_context_create(bitnet_model *m, const bitnet_context_params *params, bitnet_context **out,
                                    bitnet_error *err) {
    bn_err_clear(err);
    if (!m || !out) return bn_fail(err, BITNET_E_INVALID_ARG, "bitnet_context_create: model and out are required");
    *out = NULL;
    bitnet_context_params p;
    bitnet_context_params_default(&p);
    if (params) memcpy(&p, params, params->struct_size < sizeof p ? params->struct_size : sizeof p);
    if (p.n_ctx < 0 || p.n_batch < 0 || p.n_threads < 0 || p.n_seq < 0)
        return bn_fail(err, BITNET_E_INVALID_ARG, "n_ctx, n_batch, n_threads and n_seq must not be negative");
    if (p.n_ctx == 0) p.n_ctx = m->hp.n_ctx_train;
    if (p.n_ctx > (1 << 20)) return bn_fail(err, BITNET_E_INVALID_ARG, "n_ctx %d is too large", p.n_ctx);
    if (p.n_seq == 0) p.n_seq = 1;
    if (p.n_seq > BN_MAX_SEQ)
        return bn_fail(err, BITNET_E_INVALID_ARG, "n_seq %d is too large (at most %d)", p.n_seq, BN_MAX_SEQ);
    if (p.n_batch == 0) p.n_batch = 512;
    /* A step never holds more tokens than the sequences have room for. */
    if ((int64_t)p.n_batch > (int64_t)p.n_ctx * p.n_seq) p.n_batch = p.n_ctx * p.n_seq;
    bitnet_context *c = calloc(1, sizeof *c);
    if (!c) return bn_fail(err, BITNET_E_NOMEM, "out of memory");
    c->model = m;
    c->n_past = calloc((size_t)p.n_seq, sizeof *c->n_past);
    c->seq_cnt = calloc((size_t)p.n_seq, sizeof *c->seq_cnt);
    bitnet_status rc = c->n_past && c->seq_cnt ? BITNET_OK : bn_fail(err, BITNET_E_NOMEM, "out of memory");
    if (rc == BITNET_OK) rc = create_backend(c, &p, err);
    if (rc == BITNET_OK) rc = bn_model_prepare_backend(m, c->be, err);
    if (rc == BITNET_OK) rc = bn_forward_state_init_seq(&c->st, m, c->be, p.n_ctx, p.n_batch, p.n_seq, err);
    if (rc != BITNET_OK) {
        if (c->be) c->be->ops->destroy(c->be);
        free(c->n_past);
        free(c->seq_cnt);
        free(c);
        return rc;
    }
    *out = c;
    return BITNET_OK;
}

static void free_logits(bitnet_context *c) {
    if (c->logits_backend)
        c->be->ops->host_free(c->be, c->logits);
    else
        free(c->logits);
    c->logits = NULL, c->logits_cap = 0, c->logits_backend = 0;
    c->n_eval = 0; /* bitnet_get_logits must not hand out the freed rows */
}

void bitnet_context_free(bitnet_context *c) {
    if (!c) return;
    bn_forward_state_free(&c->st, c->model, c->be);
    free_logits(c); /* before the backend that may own its memory */
    c->be->ops->destroy(c->be);
    free(c->n_past);
    free(c->seq_cnt);
    free(c->row_of);
    free(c->pos);
    free(c->seq);
    free(c->out_rows);
    free(c->greedy);
    free(c);
}

int bitnet_context_n_ctx(const bitnet_context *c) { return c->st.n_ctx; }
const char *bitnet_context_device(const bitnet_context *c) { return c->device; }

const char *bitnet_op_class_name(bitnet_op_class cls) {
    static const char *names[BITNET_OP_COUNT] = {"ternary matmul", "output head", "attention", "norms+quant", "other"};
    return (unsigned)cls < BITNET_OP_COUNT ? names[cls] : "unknown";
}

void bitnet_context_set_profiling(bitnet_context *c, int on) {
    memset(&c->profile, 0, sizeof c->profile);
    c->st.prof = on ? &c->profile : NULL;
}

void bitnet_context_get_profile(const bitnet_context *c, bitnet_profile *out) { *out = c->profile; }
int bitnet_context_n_past(const bitnet_context *c) { return c->n_past[0]; }
int bitnet_context_n_seq(const bitnet_context *c) { return c->st.n_seq; }

int bitnet_seq_n_past(const bitnet_context *c, int seq) {
    return c && seq >= 0 && seq < c->st.n_seq ? c->n_past[seq] : -1;
}

/* Room for `rows` rows of logits. The old contents need not survive (every
 * eval overwrites them), so a larger block replaces the old one; it comes
 * from the backend when it has a faster kind of host memory (page-locked
 * for a GPU), else from malloc. */
static bitnet_status reserve_logits(bitnet_context *c, size_t rows, bitnet_error *err) {
    size_t need = rows * (size_t)c->model->hp.n_vocab;
    if (need <= c->logits_cap) return BITNET_OK;
    free_logits(c);
    const bn_backend_ops *o = c->be->ops;
    float *p = o->host_alloc && o->host_free ? o->host_alloc(c->be, need * sizeof(float)) : NULL;
    c->logits_backend = p != NULL;
    if (!p) p = malloc(need * sizeof(float));
    if (!p) return bn_fail(err, BITNET_E_NOMEM, "out of memory for %zu rows of logits", rows);
    c->logits = p;
    c->logits_cap = need;
    return BITNET_OK;
}

bitnet_status bitnet_eval(bitnet_context *c, const int32_t *tokens, int n_tokens, bitnet_logits_mode mode,
                          bitnet_error *err) {
    bn_err_clear(err);
    if (!c || (!tokens && n_tokens)) return bn_fail(err, BITNET_E_INVALID_ARG, "bitnet_eval: context and tokens are required");
    if (n_tokens <= 0) return bn_fail(err, BITNET_E_INVALID_ARG, "bitnet_eval: no tokens to evaluate");
    if (n_tokens > c->st.n_ctx - c->n_past[0])
        return bn_fail(err, BITNET_E_CONTEXT_FULL, "%d tokens do not fit: %d of the %d-token context are in use",
                       n_tokens, c->n_past[0], c->st.n_ctx);
    int V = c->model->hp.n_vocab;
    for (int i = 0; i < n_tokens; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return bn_fail(err, BITNET_E_INVALID_ARG, "token id %d at index %d is outside the vocabulary (0..%d)",
                           tokens[i], i, V - 1);
    int all = mode == BITNET_LOGITS_ALL;
    c->n_eval = 0; /* the previous logits are overwritten */
    bitnet_status rc = reserve_logits(c, all ? (size_t)n_tokens : 1, err);
    if (rc) return rc;
    for (int done = 0; done < n_tokens;) {
        int n = n_tokens - done < c->st.n_batch ? n_tokens - done : c->st.n_batch;
        bn_logits_want want = all ? BN_LOGITS_ALL : (done + n == n_tokens ? BN_LOGITS_LAST : BN_LOGITS_NONE);
        bn_forward(c->model, c->be, &c->st, tokens + done, n, c->n_past[0], want,
                   all ? c->logits + (size_t)done * V : c->logits);
        if (c->be->ops->status && (rc = c->be->ops->status(c->be, err)) != BITNET_OK) {
            c->n_eval = 0; /* the logits are not valid */
            return rc;
        }
        c->n_past[0] += n;
        done += n;
    }
    c->n_eval = n_tokens;
    c->logits_all = all;
    c->logits_batch = 0;
    return BITNET_OK;
}

const float *bitnet_get_logits(const bitnet_context *c, int i) {
    if (!c || c->n_eval == 0) return NULL;
    if (i == -1) i = c->n_eval - 1;
    if (i < 0 || i >= c->n_eval) return NULL;
    if (c->logits_batch) return c->row_of[i] >= 0 ? c->logits + (size_t)c->row_of[i] * c->model->hp.n_vocab : NULL;
    if (c->logits_all) return c->logits + (size_t)i * c->model->hp.n_vocab;
    return i == c->n_eval - 1 ? c->logits : NULL;
}

bitnet_status bitnet_kv_truncate(bitnet_context *c, int n_keep, bitnet_error *err) {
    bn_err_clear(err);
    if (!c || n_keep < 0) return bn_fail(err, BITNET_E_INVALID_ARG, "bitnet_kv_truncate: bad arguments");
    /* Positions >= n_past are never read, so truncating only moves the mark. */
    if (n_keep < c->n_past[0]) c->n_past[0] = n_keep;
    c->n_eval = 0;
    return BITNET_OK;
}

bitnet_status bitnet_seq_truncate(bitnet_context *c, int seq, int n_keep, bitnet_error *err) {
    bn_err_clear(err);
    if (!c || n_keep < 0) return bn_fail(err, BITNET_E_INVALID_ARG, "bitnet_seq_truncate: bad arguments");
    if (seq < 0 || seq >= c->st.n_seq)
        return bn_fail(err, BITNET_E_INVALID_ARG, "sequence %d does not exist (this context has %d: 0..%d)", seq,
                       c->st.n_seq, c->st.n_seq - 1);
    if (n_keep < c->n_past[seq]) c->n_past[seq] = n_keep;
    return BITNET_OK;
}

/* ------------------------------------------------------------ batches -- */

/* Grows the per-token work arrays to n entries. */
static bitnet_status reserve_tokens(bitnet_context *c, int n, bitnet_error *err) {
    if (n <= c->tok_cap) return BITNET_OK;
    int32_t **arrs[] = {&c->row_of, &c->pos, &c->seq, &c->out_rows, &c->greedy};
    for (size_t i = 0; i < sizeof arrs / sizeof arrs[0]; i++) {
        int32_t *p = realloc(*arrs[i], (size_t)n * sizeof(int32_t));
        if (!p) return bn_fail(err, BITNET_E_NOMEM, "out of memory for a batch of %d tokens", n);
        *arrs[i] = p;
    }
    c->tok_cap = n;
    return BITNET_OK;
}

/* Checks ids and room, and fills c->seq, c->pos (each token's position) and
 * c->row_of (its logits row or -1); *n_rows receives the rows kept. Changes
 * no sequence's n_past. */
static bitnet_status plan_batch(bitnet_context *c, const bitnet_batch *b, int *n_rows, bitnet_error *err) {
    int V = c->model->hp.n_vocab, S = c->st.n_seq;
    memset(c->seq_cnt, 0, (size_t)S * sizeof *c->seq_cnt);
    for (int i = 0; i < b->n_tokens; i++) {
        int s = b->seq ? b->seq[i] : 0;
        if (s < 0 || s >= S)
            return bn_fail(err, BITNET_E_INVALID_ARG,
                           "sequence id %d at index %d does not exist (this context has %d: 0..%d)", s, i, S, S - 1);
        if (b->tokens[i] < 0 || b->tokens[i] >= V)
            return bn_fail(err, BITNET_E_INVALID_ARG, "token id %d at index %d is outside the vocabulary (0..%d)",
                           b->tokens[i], i, V - 1);
        c->seq[i] = s;
        c->pos[i] = c->seq_cnt[s]++; /* index within its sequence, for now */
    }
    for (int s = 0; s < S; s++)
        if (c->seq_cnt[s] > c->st.n_ctx - c->n_past[s])
            return bn_fail(err, BITNET_E_CONTEXT_FULL,
                           "sequence %d: %d tokens do not fit: %d of its %d-token context are in use", s,
                           c->seq_cnt[s], c->n_past[s], c->st.n_ctx);
    int rows = 0;
    for (int i = 0; i < b->n_tokens; i++) {
        int s = c->seq[i], last = c->pos[i] == c->seq_cnt[s] - 1;
        c->pos[i] += c->n_past[s];
        int keep = b->logits ? b->logits[i] != 0 : last;
        c->row_of[i] = keep ? rows++ : -1;
    }
    *n_rows = rows;
    return BITNET_OK;
}

/* bitnet_eval_batch, or with `ids` set bitnet_eval_batch_greedy: the kept
 * rows' argmax (c->greedy, in row order, then ids[i] per token) instead of
 * their logits. */
static bitnet_status eval_batch(bitnet_context *c, const bitnet_batch *b, int32_t *ids, const char *fn,
                                bitnet_error *err) {
    bn_err_clear(err);
    if (!c || !b || (!b->tokens && b->n_tokens > 0))
        return bn_fail(err, BITNET_E_INVALID_ARG, "%s: context, batch and tokens are required", fn);
    if (b->n_tokens <= 0) return bn_fail(err, BITNET_E_INVALID_ARG, "%s: no tokens to evaluate", fn);
    if (ids && !c->be->ops->argmax)
        return bn_fail(err, BITNET_E_UNSUPPORTED, "%s: the %s backend has no argmax", fn, c->be->ops->name);
    int rows = 0;
    bitnet_status rc = reserve_tokens(c, b->n_tokens, err);
    if (!rc) rc = plan_batch(c, b, &rows, err);
    if (!rc && !ids) rc = reserve_logits(c, rows > 0 ? (size_t)rows : 1, err);
    if (rc) return rc;
    c->n_eval = 0; /* the previous logits are overwritten (or, greedy, no longer current) */
    size_t V = (size_t)c->model->hp.n_vocab;
    for (int done = 0, rows_done = 0; done < b->n_tokens;) {
        int n = b->n_tokens - done < c->st.n_batch ? b->n_tokens - done : c->st.n_batch, n_out = 0;
        for (int t = 0; t < n; t++)
            if (c->row_of[done + t] >= 0) c->out_rows[n_out++] = t;
        bn_batch_step step = {n, b->tokens + done, c->seq + done, c->pos + done, c->out_rows, n_out,
                              ids ? c->greedy + rows_done : NULL};
        rc = bn_forward_batch(c->model, c->be, &c->st, &step, ids ? NULL : c->logits + (size_t)rows_done * V, err);
        if (!rc && c->be->ops->status) rc = c->be->ops->status(c->be, err);
        if (rc) return rc;
        for (int t = 0; t < n; t++) c->n_past[c->seq[done + t]] = c->pos[done + t] + 1;
        done += n;
        rows_done += n_out;
    }
    if (ids) {
        for (int i = 0; i < b->n_tokens; i++) ids[i] = c->row_of[i] >= 0 ? c->greedy[c->row_of[i]] : -1;
        return BITNET_OK; /* no logits kept: bitnet_get_logits gives NULL */
    }
    c->n_eval = b->n_tokens;
    c->logits_all = 0;
    c->logits_batch = 1;
    return BITNET_OK;
}

bitnet_status bitnet_eval_batch(bitnet_context *c, const bitnet_batch *b, bitnet_error *err) {
    return eval_batch(c, b, NULL, "bitnet_eval_batch", err);
}

bitnet_status bitnet_eval_batch_greedy(bitnet_context *c, const bitnet_batch *b, int32_t *out_tokens,
                                       bitnet_error *err) {
    if (!out_tokens) {
        bn_err_clear(err);
        return bn_fail(err, BITNET_E_INVALID_ARG, "bitnet_eval_batch_greedy: out_tokens is required");
    }
    return eval_batch(c, b, out_tokens, "bitnet_eval_batch_greedy", err);
}
