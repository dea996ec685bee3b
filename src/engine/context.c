/* bitnet_context: one sequence's KV cache and buffers on a backend, and the
 * public evaluation API. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "model/forward.h"
#include "model/model.h"
#include "util/error.h"

struct bitnet_context {
    bitnet_model *model;
    bn_backend *be;
    char device[32];
    bn_forward_state st;
    int n_past;
    /* Logits of the last eval: one row per token (LOGITS_ALL) or just the last. */
    float *logits;
    size_t logits_cap; /* floats */
    int n_eval, logits_all;
    bitnet_profile profile;
};

void bitnet_context_params_default(bitnet_context_params *p) {
    memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->n_batch = 512;
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
    if (p.n_ctx < 0 || p.n_batch < 0 || p.n_threads < 0)
        return bn_fail(err, BITNET_E_INVALID_ARG, "n_ctx, n_batch and n_threads must not be negative");
    if (p.n_ctx == 0) p.n_ctx = m->hp.n_ctx_train;
    if (p.n_ctx > (1 << 20)) return bn_fail(err, BITNET_E_INVALID_ARG, "n_ctx %d is too large", p.n_ctx);
    if (p.n_batch == 0) p.n_batch = 512;
    if (p.n_batch > p.n_ctx) p.n_batch = p.n_ctx;
    bitnet_context *c = calloc(1, sizeof *c);
    if (!c) return bn_fail(err, BITNET_E_NOMEM, "out of memory");
    c->model = m;
    bitnet_status rc = create_backend(c, &p, err);
    if (rc == BITNET_OK) rc = bn_model_prepare_backend(m, c->be, err);
    if (rc == BITNET_OK) rc = bn_forward_state_init(&c->st, m, c->be, p.n_ctx, p.n_batch, err);
    if (rc != BITNET_OK) {
        if (c->be) c->be->ops->destroy(c->be);
        free(c);
        return rc;
    }
    *out = c;
    return BITNET_OK;
}

void bitnet_context_free(bitnet_context *c) {
    if (!c) return;
    bn_forward_state_free(&c->st, c->model, c->be);
    c->be->ops->destroy(c->be);
    free(c->logits);
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
int bitnet_context_n_past(const bitnet_context *c) { return c->n_past; }

static bitnet_status reserve_logits(bitnet_context *c, size_t rows, bitnet_error *err) {
    size_t need = rows * (size_t)c->model->hp.n_vocab;
    if (need <= c->logits_cap) return BITNET_OK;
    float *p = realloc(c->logits, need * sizeof(float));
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
    if (n_tokens > c->st.n_ctx - c->n_past)
        return bn_fail(err, BITNET_E_CONTEXT_FULL, "%d tokens do not fit: %d of the %d-token context are in use",
                       n_tokens, c->n_past, c->st.n_ctx);
    int V = c->model->hp.n_vocab;
    for (int i = 0; i < n_tokens; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return bn_fail(err, BITNET_E_INVALID_ARG, "token id %d at index %d is outside the vocabulary (0..%d)",
                           tokens[i], i, V - 1);
    int all = mode == BITNET_LOGITS_ALL;
    bitnet_status rc = reserve_logits(c, all ? (size_t)n_tokens : 1, err);
    if (rc) return rc;
    for (int done = 0; done < n_tokens;) {
        int n = n_tokens - done < c->st.n_batch ? n_tokens - done : c->st.n_batch;
        bn_logits_want want = all ? BN_LOGITS_ALL : (done + n == n_tokens ? BN_LOGITS_LAST : BN_LOGITS_NONE);
        bn_forward(c->model, c->be, &c->st, tokens + done, n, c->n_past, want, all ? c->logits + (size_t)done * V : c->logits);
        if (c->be->ops->status && (rc = c->be->ops->status(c->be, err)) != BITNET_OK) {
            c->n_eval = 0; /* the logits are not valid */
            return rc;
        }
        c->n_past += n;
        done += n;
    }
    c->n_eval = n_tokens;
    c->logits_all = all;
    return BITNET_OK;
}

const float *bitnet_get_logits(const bitnet_context *c, int i) {
    if (!c || c->n_eval == 0) return NULL;
    if (i == -1) i = c->n_eval - 1;
    if (i < 0 || i >= c->n_eval) return NULL;
    if (c->logits_all) return c->logits + (size_t)i * c->model->hp.n_vocab;
    return i == c->n_eval - 1 ? c->logits : NULL;
}

bitnet_status bitnet_kv_truncate(bitnet_context *c, int n_keep, bitnet_error *err) {
    bn_err_clear(err);
    if (!c || n_keep < 0) return bn_fail(err, BITNET_E_INVALID_ARG, "bitnet_kv_truncate: bad arguments");
    /* Positions >= n_past are never read, so truncating only moves the mark. */
    if (n_keep < c->n_past) c->n_past = n_keep;
    c->n_eval = 0;
    return BITNET_OK;
}
