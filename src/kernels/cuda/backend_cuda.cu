/* The CUDA backend: bn_backend_ops on one GPU.
 *
 * Memory: plain cudaMalloc for activations, the KV cache (f16) and weights.
 * Weights are uploaded once per model and GPU and shared by every context of
 * that model (a refcounted registry; see cuda_backend.h).
 *
 * Execution: one non-blocking stream; ops enqueue kernels and return;
 * to_host waits. Every CUDA call and launch is checked. Because the ops
 * return nothing, the first failure is kept ("sticky"), printed once on
 * stderr, later ops do nothing, and to_host fills its output with NaN.
 *
 * Decode steps run as a CUDA graph. A step that starts with a one-token
 * embed is recorded rather than executed: each op appends a record (its
 * arguments, with host-side values copied). At to_host the recorded list is
 * compared with the one the cached graph was captured from; when equal, the
 * step's token and position are copied to device memory and the graph is
 * replayed; otherwise the list is captured into a new graph. Kernels in the
 * graph read the position and token from device memory, so one graph serves
 * every position. Recorded lists are also where ops are fused: RMSNorm +
 * quantization, matmuls sharing their input (q/k/v, gate/up) in one launch,
 * and a matmul followed by the residual add that consumes it. With the
 * decode fusions (default) a layer is 5 launches: each ternary GEMV
 * recomputes its input's [GLU ->] RMSNorm -> int8 quantization in every block
 * (bn_prologue: no norm launches), and RoPE + KV store + split attention +
 * combine are one launch (bn_k_attention_decode). The launches of a recorded
 * step use programmatic dependent launch on compute capability 9.0+ (see
 * cuda_common.cuh): each kernel is scheduled while the previous one runs, and
 * the GEMVs load their weights before waiting for it.
 * Steps of several tokens (prompts, batches) are recorded as well and run
 * at flush with the fusions that apply to them (RMSNorm + quantization,
 * q/k/v and gate/up in one launch, the residual adds in the matmuls' stores,
 * GLU + sub-norm + quantization, RoPE + KV store), launched directly: their
 * shapes change every step, so no graph.
 *
 * States (per backend):  idle --embed--> recording (rec_multi: n_tok > 1)
 *                        recording --to_host / argmax / status / free / next embed--> idle (flush)
 * Environment: BITNET_CUDA_GRAPH=0 disables graphs (the recorded step then
 * runs its fused kernels directly); BITNET_CUDA_PDL=0 disables programmatic
 * dependent launch; BITNET_CUDA_FUSE=0 disables the decode fusions (the
 * previous kernels: separate norms, attention in three launches);
 * BITNET_CUDA_FUSE_MULTI=0 runs steps of several tokens op by op, unfused;
 * one-token steps run their layers as one persistent launch where the
 * start-up probe passed (compute capability 9.0+) and bn_k_decode_layers_fits
 * (H100: 697 against 471 tok/s, docs/PERFORMANCE.md); BITNET_CUDA_LAYERS=0
 * keeps the per-layer launches;
 * BITNET_CUDA_LAYERS_PROFILE=1 (with it) prints the time of each step of a
 * layer in the last launch when the backend is destroyed;
 * BITNET_CUDA_PROFILE=1 times every launch (without graphs or PDL) and prints
 * GPU time per kind of launch when the backend is destroyed. */
#include <cuda_runtime.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.cuh"

extern "C" {
#include "format/ggml_types.h"
#include "kernels/cuda/cuda_backend.h"
#include "util/error.h"
}

/* ------------------------------------------------------------- records -- */

enum op_kind { OP_EMBED, OP_RMSNORM, OP_QUANTIZE, OP_TERNARY, OP_DENSE, OP_ROPE, OP_ATTN, OP_GLU, OP_ADD, OP_ROPE_B,
               OP_ATTN_B };

/* One op's arguments. Zeroed before filling, so that records compare with
 * memcmp. The step's position and token are kept apart (they change every
 * step without changing the graph). */
struct op_rec {
    int kind, n_tok, dim, n_head, head_dim, neox, act, pad;
    float eps, theta;
    int64_t n;
    const void *w; /* bn_cuda_ternary* / bn_cuda_dense* / device floats */
    const float *x;
    float *y;
    const float *z;
    bn_qact qa;
    bn_kv_layer kv;
    bn_attn_shape s;
    const int32_t *d_pos, *d_seq; /* multi-sequence ops: per-token positions, sequences (device) */
    int pos0, pad2; /* last: not compared (a replayed graph reads it from device memory) */
};

#define REC_KEY_BYTES offsetof(op_rec, pos0)

/* Device allocations and host descriptors owned together. */
struct store {
    void **dev;
    int n_dev, cap_dev;
    void **host;
    int n_host, cap_host;
};

/* A model's weights on a GPU, shared by its CUDA backends. */
struct model_entry {
    struct bitnet_model *m;
    int device, refs;
    store st;
    model_entry *next;
};

/* Profile labels (BITNET_CUDA_PROFILE=1): GPU time per kind of launch. */
enum prof_label { P_EMBED, P_NORM, P_NORM_Q, P_QUANT, P_TERN, P_TERN_ADD, P_TERN2, P_TERN3, P_DENSE, P_ROPE, P_ATTN,
                  P_GLU, P_ADD, P_GLU_Q, P_ROPE_ATTN, P_PRO1, P_PRO_ADD, P_PRO2, P_PRO3, P_ATTN_DEC, P_ROPE_B,
                  P_ATTN_B, P_ROPE_ATTN_B, P_LAYERS, P_N };
static const char *prof_names[P_N] = {"embed", "rmsnorm", "rmsnorm+quantize", "quantize", "ternary", "ternary+add",
                                      "ternary x2", "ternary x3", "dense head", "rope", "attention", "glu", "add",
                                      "glu(+norm)+quantize", "rope+kv+attention", "[norm]+ternary",
                                      "[norm]+ternary+add", "[norm]+ternary x2", "[norm]+ternary x3",
                                      "decode attention", "rope (batch)", "attention (batch)",
                                      "rope+kv+attention (batch)", "decode layers (persistent)"};

/* thread_local flag of cuda_common.cuh: launches use PDL while it is set. */
thread_local int bn_k_pdl = 0;

#define ATT_SPLIT 128      /* positions per attention chunk */
#define ATT_ROWS_CAP 2048  /* token x chunk rows of the attention work space */
#define N_COUNTERS 4096    /* decode attention: head groups of one layer */

struct cuda_backend {
    bn_backend base;
    int device, n_sm;
    cudaStream_t stream;
    int failed;
    char message[256];
    store own;          /* uploads made outside prepare_model (tests) */
    model_entry *entry; /* the model's shared weights, once prepared */
    int *d_params;      /* [position, token] of the recorded step */
    int *d_cnt;         /* decode attention counters (zero between launches) */
    int pdl;            /* programmatic dependent launch in recorded steps */
    int fuse;           /* decode fusions: norm prologues in the GEMV, one-launch attention */
    int fuse_multi;     /* steps of several tokens recorded and fused (else run op by op) */
    int layers;         /* one-token steps: the layers in one persistent launch where it fits */
    long layers_runs;   /* launches of it (tests) */
    unsigned *d_bar;    /* its grid barrier counter */
    unsigned long long *d_lprof; /* BITNET_CUDA_LAYERS_PROFILE=1: its timestamps (BN_DL_PROF_N) */
    int lprof_layers;   /* layers of the last profiled launch */
    int32_t *d_tokens;
    int tok_cap;
    float *ws;          /* attention chunks */
    size_t ws_floats;
    void *pinned;       /* staging for to_host and argmax */
    size_t pinned_cap;
    int32_t *d_argmax;  /* argmax results, argmax_cap rows */
    int argmax_cap;
    /* recording and graphs; rec_multi: the step being recorded has several
     * tokens (run at flush, fused, never as a graph) */
    int use_graph, recording, rec_multi, rec_pos0, rec_token, rec_pos_set, rec_uniform;
    op_rec *recs;
    int n_recs, cap_recs;
    cudaGraphExec_t gexec;
    op_rec *grecs;
    int n_grecs;
    /* profiling: [n_tok == 1 ? 0 : 1][label] */
    int prof;
    cudaEvent_t ev0, ev1;
    double prof_ms[2][P_N];
    long prof_n[2][P_N];
    /* multi-sequence steps: the per-token [pos | seq] arrays on the device
     * (d_batch), staged through pinned memory (h_batch); shadow is what
     * d_batch holds, so that the layers of one step upload them once. */
    int32_t *d_batch, *h_batch, *batch_shadow;
    int batch_cap, batch_n, batch_has_seq;
    cudaEvent_t batch_ev; /* the last staging copy */
};

static cuda_backend *cb_of(bn_backend *be) { return (cuda_backend *)be; }
static void drop_graph(cuda_backend *c);

/* ------------------------------------------------------------- errors -- */

/* Records the first failure; returns 1 when e is cudaSuccess. */
static int check(cuda_backend *c, cudaError_t e, const char *what) {
    if (e == cudaSuccess) return 1;
    if (!c->failed) {
        c->failed = 1;
        snprintf(c->message, sizeof c->message, "cuda:%d: %s: %s", c->device, what, cudaGetErrorString(e));
        fprintf(stderr, "bitnet: CUDA error: %s\n", c->message);
    }
    return 0;
}

static void fail_msg(cuda_backend *c, const char *fmt, ...) {
    if (c->failed) return;
    c->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->message, sizeof c->message, fmt, ap);
    va_end(ap);
    fprintf(stderr, "bitnet: CUDA backend: %s\n", c->message);
}

/* -------------------------------------------------------------- stores -- */

static int push_ptr(void ***arr, int *n, int *cap, void *p) {
    if (*n == *cap) {
        int nc = *cap ? *cap * 2 : 64;
        void **a = (void **)realloc(*arr, (size_t)nc * sizeof *a);
        if (!a) return 0;
        *arr = a, *cap = nc;
    }
    (*arr)[(*n)++] = p;
    return 1;
}

static void store_free(store *s) {
    for (int i = 0; i < s->n_dev; i++) cudaFree(s->dev[i]);
    for (int i = 0; i < s->n_host; i++) free(s->host[i]);
    free(s->dev);
    free(s->host);
    memset(s, 0, sizeof *s);
}

static store *cur_store(cuda_backend *c) { return c->entry ? &c->entry->st : &c->own; }

/* Device memory holding a copy of `bytes` host bytes, owned by the current store. */
static bitnet_status upload(cuda_backend *c, const void *src, size_t bytes, void **out, bitnet_error *err) {
    void *d = NULL;
    cudaError_t e = cudaSetDevice(c->device);
    if (e == cudaSuccess) e = cudaMalloc(&d, bytes ? bytes : 1);
    if (e == cudaSuccess && bytes) e = cudaMemcpy(d, src, bytes, cudaMemcpyHostToDevice);
    if (e != cudaSuccess) {
        if (d) cudaFree(d);
        cudaGetLastError();
        return bn_fail(err, BITNET_E_DEVICE, "cuda:%d: cannot upload %zu bytes of weights: %s", c->device, bytes,
                       cudaGetErrorString(e));
    }
    store *s = cur_store(c);
    if (!push_ptr(&s->dev, &s->n_dev, &s->cap_dev, d)) {
        cudaFree(d);
        return bn_fail(err, BITNET_E_NOMEM, "out of memory");
    }
    *out = d;
    return BITNET_OK;
}

static void *host_desc(cuda_backend *c, size_t bytes) {
    store *s = cur_store(c);
    void *p = calloc(1, bytes);
    if (p && !push_ptr(&s->host, &s->n_host, &s->cap_host, p)) {
        free(p);
        p = NULL;
    }
    return p;
}

extern "C" bitnet_status bn_cuda_upload_ternary(bn_backend *be, bn_ternary *w, bitnet_error *err) {
    cuda_backend *c = cb_of(be);
    bn_cuda_ternary *t = (bn_cuda_ternary *)host_desc(c, sizeof *t);
    float *scale = (float *)malloc((size_t)w->rows * sizeof(float));
    if (!t || !scale) {
        free(scale);
        return bn_fail(err, BITNET_E_NOMEM, "out of memory");
    }
    for (int64_t r = 0; r < w->rows; r++) scale[r] = bn_ternary_row_scale(w, r);
    void *codes = NULL, *sc = NULL;
    bitnet_status rc = upload(c, w->codes, (size_t)w->rows * (size_t)(w->cols / 4), &codes, err);
    if (!rc) rc = upload(c, scale, (size_t)w->rows * sizeof(float), &sc, err);
    free(scale);
    if (rc) return rc;
    t->codes = (const uint8_t *)codes;
    t->scale = (const float *)sc;
    w->dev = t;
    return BITNET_OK;
}

extern "C" bitnet_status bn_cuda_upload_vec(bn_backend *be, bn_vec *v, bitnet_error *err) {
    return upload(cb_of(be), v->data, (size_t)v->n * sizeof(float), &v->dev, err);
}

extern "C" bitnet_status bn_cuda_upload_dense_raw(bn_backend *be, uint32_t type, const void *data, int64_t rows,
                                                  uint64_t row_bytes, void **dev, bitnet_error *err) {
    cuda_backend *c = cb_of(be);
    bn_cuda_dense *d = (bn_cuda_dense *)host_desc(c, sizeof *d);
    if (!d) return bn_fail(err, BITNET_E_NOMEM, "out of memory");
    void *p = NULL;
    bitnet_status rc = upload(c, data, (size_t)rows * row_bytes, &p, err);
    if (rc) return rc;
    d->type = type;
    d->data = p;
    d->row_bytes = row_bytes;
    *dev = d;
    return BITNET_OK;
}

/* ------------------------------------------------------------ registry -- */

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static model_entry *reg_head;

extern "C" bitnet_status bn_cuda_weights_acquire(bn_backend *be, struct bitnet_model *m, int *fresh,
                                                 bitnet_error *err) {
    cuda_backend *c = cb_of(be);
    bitnet_status rc = BITNET_OK;
    pthread_mutex_lock(&reg_lock);
    model_entry *e = reg_head;
    while (e && e->m != m) e = e->next;
    if (c->entry) {
        rc = bn_fail(err, BITNET_E_INTERNAL, "CUDA backend prepared twice");
    } else if (e && e->device != c->device) {
        rc = bn_fail(err, BITNET_E_UNSUPPORTED, "this model is already on cuda:%d; one GPU per model", e->device);
    } else if (e) {
        e->refs++;
        c->entry = e;
        *fresh = 0;
    } else if (!(e = (model_entry *)calloc(1, sizeof *e))) {
        rc = bn_fail(err, BITNET_E_NOMEM, "out of memory");
    } else {
        e->m = m, e->device = c->device, e->refs = 1, e->next = reg_head;
        reg_head = c->entry = e;
        *fresh = 1;
    }
    pthread_mutex_unlock(&reg_lock);
    return rc;
}

extern "C" void bn_cuda_weights_release(bn_backend *be) {
    cuda_backend *c = cb_of(be);
    if (!c->entry) return;
    pthread_mutex_lock(&reg_lock);
    model_entry *e = c->entry;
    c->entry = NULL;
    if (--e->refs == 0) {
        model_entry **pp = &reg_head;
        while (*pp != e) pp = &(*pp)->next;
        *pp = e->next;
        cudaSetDevice(e->device);
        store_free(&e->st);
        bn_cuda_model_clear(e->m);
        free(e);
    }
    pthread_mutex_unlock(&reg_lock);
}

/* ---------------------------------------------------------- work space -- */

static int ensure_ws(cuda_backend *c, size_t floats) {
    if (floats <= c->ws_floats) return 1;
    drop_graph(c); /* a captured graph holds the old pointer */
    if (c->ws) check(c, cudaFree(c->ws), "cudaFree");
    c->ws = NULL;
    c->ws_floats = 0;
    if (!check(c, cudaMalloc((void **)&c->ws, floats * sizeof(float)), "cudaMalloc (attention work space)"))
        return 0;
    c->ws_floats = floats;
    return 1;
}

extern "C" bitnet_status bn_cuda_reserve(bn_backend *be, int n_head, int head_dim, bitnet_error *err) {
    cuda_backend *c = cb_of(be);
    if (!ensure_ws(c, (size_t)ATT_ROWS_CAP * n_head * (head_dim + 2)))
        return bn_fail(err, BITNET_E_DEVICE, "%s", c->message);
    return BITNET_OK;
}

/* Splits of the positions for attention over `len` positions, n_tok
 * tokens: enough blocks for about 4 per multiprocessor, splits of whole
 * 128-position chunks, and at most ATT_ROWS_CAP (token, split) rows. */
static void attn_split(const cuda_backend *c, const bn_attn_shape *s, int len, int n_tok, int *n_split,
                       int *split_len) {
    int G = s->n_head / s->n_head_kv, units = n_tok * s->n_head_kv * ((G + 3) / 4);
    int chunks = (len + ATT_SPLIT - 1) / ATT_SPLIT, want = (4 * c->n_sm + units - 1) / units;
    int ns = want < chunks ? want : chunks, cap = ATT_ROWS_CAP / n_tok;
    if (ns > cap) ns = cap;
    if (ns < 1) ns = 1;
    int sl = (len + ns - 1) / ns;
    sl = (sl + ATT_SPLIT - 1) / ATT_SPLIT * ATT_SPLIT;
    *split_len = sl;
    *n_split = (len + sl - 1) / sl;
}

/* ------------------------------------------------------------ executor -- */

static const bn_cuda_ternary *tern(const op_rec *r) { return (const bn_cuda_ternary *)r->w; }

static int same_qact(const bn_qact *a, const bn_qact *b) {
    return a->q == b->q && a->scale == b->scale && a->sum == b->sum;
}

/* 1 when the float ranges [a, a + na) and [b, b + nb) share memory. */
static int overlap(const void *a, int64_t na, const void *b, int64_t nb) {
    if (!a || !b) return 0;
    const char *pa = (const char *)a, *pb = (const char *)b;
    return pa < pb + nb * 4 && pb < pa + na * 4;
}

/* Decode fusion of the activation side into the ternary GEMV (one token):
 *   rmsnorm(x -> y) quantize(y)        ternary x1..3 [add]
 *   glu(g, u) [rmsnorm(g -> y)] quantize ternary x1..3 [add]
 *   quantize(x)                        ternary x1..3 [add]
 * become one launch of bn_k_ternary_pro. Returns the records consumed, 0
 * when the pattern does not apply. The GLU and a norm done in place are not
 * materialized (only the quantization that the matmul consumes, which block
 * 0 still writes to its buffer): in the forward pass nothing reads them. */
static int run_fused_gemv(cuda_backend *c, const op_rec *r, int avail, int *label) {
    bn_prologue P;
    memset(&P, 0, sizeof P);
    int i = 0, dim = 0;
    if (r[0].kind != OP_GLU && r[0].n_tok != 1) return 0; /* a GLU record has n (elements), no n_tok */
    if (r[0].kind == OP_RMSNORM && avail > 2 && r[1].kind == OP_QUANTIZE && r[1].x == r[0].y && r[1].n_tok == 1 &&
        r[1].dim == r[0].dim) {
        P.x = r[0].x, P.w = (const float *)r[0].w, P.eps = r[0].eps, P.qa = r[1].qa;
        P.out = r[0].y != r[0].x ? r[0].y : NULL;
        dim = r[0].dim, i = 2;
    } else if (r[0].kind == OP_GLU && avail > 2) {
        P.x = r[0].y, P.u = r[0].x, P.relu2 = r[0].act == BN_GLU_RELU2;
        if (avail > 3 && r[1].kind == OP_RMSNORM && r[1].x == r[0].y && r[1].n_tok == 1 && r[1].dim == r[0].n &&
            r[2].kind == OP_QUANTIZE && r[2].x == r[1].y && r[2].n_tok == 1 && r[2].dim == r[1].dim) {
            P.w = (const float *)r[1].w, P.eps = r[1].eps, P.qa = r[2].qa;
            P.out = r[1].y != r[0].y ? r[1].y : NULL;
            dim = r[1].dim, i = 3;
        } else if (r[1].kind == OP_QUANTIZE && r[1].x == r[0].y && r[1].n_tok == 1 && r[1].dim == r[0].n) {
            P.qa = r[1].qa;
            dim = r[1].dim, i = 2;
        } else {
            return 0;
        }
    } else if (r[0].kind == OP_QUANTIZE && avail > 1) {
        P.x = r[0].x, P.qa = r[0].qa;
        dim = r[0].dim, i = 1;
    } else {
        return 0;
    }
    if (dim <= 0 || dim > BN_PRO_MAX_COLS || dim % 128) return 0;
    if (P.out && (overlap(P.out, dim, P.x, dim) || overlap(P.out, dim, P.u, dim))) return 0;
    bn_tern_job jobs[BN_TERN_MAX_JOBS];
    int n = 0;
    while (i + n < avail && n < BN_TERN_MAX_JOBS && r[i + n].kind == OP_TERNARY && r[i + n].n_tok == 1 &&
           r[i + n].dim == dim && same_qact(&r[i + n].qa, &P.qa)) {
        jobs[n].codes = tern(r + i + n)->codes;
        jobs[n].scale = tern(r + i + n)->scale;
        jobs[n].y = r[i + n].y;
        jobs[n].rows = (int)r[i + n].n;
        jobs[n].accumulate = 0;
        n++;
    }
    if (n == 0) return 0;
    int used = i + n;
    const op_rec *nx = n == 1 && used < avail ? r + used : NULL;
    if (nx && nx->kind == OP_ADD && nx->x == r[i].y && nx->n == r[i].n) {
        jobs[0].y = (float *)nx->y;
        jobs[0].accumulate = 1;
        used++;
    }
    /* Outputs must not overlap what the prologue of another block reads or writes. */
    for (int k = 0; k < n; k++)
        if (overlap(jobs[k].y, jobs[k].rows, P.x, dim) || overlap(jobs[k].y, jobs[k].rows, P.u, dim) ||
            overlap(jobs[k].y, jobs[k].rows, P.out, dim))
            return 0;
    *label = jobs[0].accumulate ? P_PRO_ADD : n == 3 ? P_PRO3 : n == 2 ? P_PRO2 : P_PRO1;
    check(c, bn_k_ternary_pro(c->stream, jobs, n, dim, &P), "fused decode matmul");
    return used;
}

/* The records at r: rope(q), rope(k) and the attention (kind attn_kind)
 * that reads both, with matching shapes and angles, as the forward pass
 * issues them. Returns the attention record, NULL when the pattern does not
 * apply; positions (pos0 or d_pos) are the caller's to compare. */
static const op_rec *rope_qk_attn(const op_rec *r, int avail, int attn_kind) {
    if (avail < 3) return NULL;
    const op_rec *rk = r + 1, *ra = r + 2;
    int ok = rk->kind == r->kind && ra->kind == attn_kind && ra->x == r->y && ra->z == rk->y &&
             rk->n_tok == r->n_tok && ra->n_tok == r->n_tok && r->head_dim == ra->s.head_dim &&
             rk->head_dim == r->head_dim && r->n_head == ra->s.n_head && rk->n_head == ra->s.n_head_kv &&
             rk->theta == r->theta && rk->neox == r->neox;
    return ok ? ra : NULL;
}

/* One layer of a one-token step as forward.c records it:
 *   rmsnorm quantize ternary x3 (q k v) rope rope attention [rmsnorm] quantize
 *   ternary (o) add rmsnorm quantize ternary x2 (gate up) glu [rmsnorm]
 *   quantize ternary (down) add
 * with the buffers chained as there. Fills L, and a's shapes and buffers
 * (the first layer sets them, the others must agree). Returns the records
 * used, 0 when they are not such a layer. Nothing reads the intermediate
 * buffers afterwards (xn, qa, tmp, u: the next layer or the final norm
 * rewrites them before use), so the persistent kernel skips them. */
static int match_layer(const op_rec *r, int avail, bn_dl_args *a, bn_dl_layer *L, int first) {
#define NEED(c)             \
    do {                    \
        if (!(c)) return 0; \
    } while (0)
    int i = 0;
    NEED(avail >= 19);
    const op_rec *n1 = r + i++, *q1 = r + i++;
    NEED(n1->kind == OP_RMSNORM && n1->n_tok == 1 && q1->kind == OP_QUANTIZE && q1->x == n1->y && q1->n_tok == 1 &&
         q1->dim == n1->dim);
    const int E = n1->dim;
    const op_rec *m[7];
    for (int k = 0; k < 3; k++) {
        m[k] = r + i++;
        NEED(m[k]->kind == OP_TERNARY && m[k]->n_tok == 1 && m[k]->dim == E && same_qact(&m[k]->qa, &q1->qa));
    }
    const op_rec *ra = rope_qk_attn(r + i, avail - i, OP_ATTN), *rq = r + i;
    NEED(ra && rq->kind == OP_ROPE && rq->n_tok == 1 && rq->y == m[0]->y && rq[1].y == m[1]->y && ra->w == m[2]->y &&
         rq[1].pos0 == rq->pos0 && ra->pos0 == rq->pos0);
    i += 3;
    const bn_attn_shape *sh = &ra->s;
    const int hd = sh->head_dim, Q = sh->n_head * hd;
    NEED(m[0]->n == Q && m[1]->n == (int64_t)sh->n_head_kv * hd && m[2]->n == m[1]->n);
    const op_rec *sub = NULL;
    if (i < avail && r[i].kind == OP_RMSNORM) {
        sub = r + i++;
        NEED(sub->x == ra->y && sub->y == ra->y && sub->dim == Q && sub->n_tok == 1 && sub->eps == n1->eps);
    }
    NEED(avail - i >= 11);
    const op_rec *q2 = r + i++;
    NEED(q2->kind == OP_QUANTIZE && q2->x == ra->y && q2->dim == Q && q2->n_tok == 1);
    m[3] = r + i++;
    const op_rec *add1 = r + i++;
    NEED(m[3]->kind == OP_TERNARY && m[3]->n_tok == 1 && m[3]->dim == Q && m[3]->n == E &&
         same_qact(&m[3]->qa, &q2->qa) && add1->kind == OP_ADD && add1->x == m[3]->y && add1->y == n1->x &&
         add1->n == E);
    const op_rec *n2 = r + i++, *q3 = r + i++;
    NEED(n2->kind == OP_RMSNORM && n2->x == n1->x && n2->dim == E && n2->n_tok == 1 && n2->eps == n1->eps &&
         q3->kind == OP_QUANTIZE && q3->x == n2->y && q3->dim == E && q3->n_tok == 1);
    m[4] = r + i++, m[5] = r + i++;
    const int64_t F = m[4]->n;
    for (int k = 4; k < 6; k++)
        NEED(m[k]->kind == OP_TERNARY && m[k]->n_tok == 1 && m[k]->dim == E && m[k]->n == F &&
             same_qact(&m[k]->qa, &q3->qa));
    const op_rec *glu = r + i++;
    NEED(glu->kind == OP_GLU && glu->y == m[4]->y && glu->x == m[5]->y && glu->n == F);
    const op_rec *sub2 = NULL;
    if (r[i].kind == OP_RMSNORM) {
        sub2 = r + i++;
        NEED(sub2->x == glu->y && sub2->y == glu->y && sub2->dim == F && sub2->n_tok == 1 && sub2->eps == n1->eps);
    }
    NEED(avail - i >= 3);
    const op_rec *q4 = r + i++;
    m[6] = r + i++;
    const op_rec *add2 = r + i++;
    NEED(q4->kind == OP_QUANTIZE && q4->x == glu->y && q4->dim == F && q4->n_tok == 1 && m[6]->kind == OP_TERNARY &&
         m[6]->n_tok == 1 && m[6]->dim == F && m[6]->n == E && same_qact(&m[6]->qa, &q4->qa) &&
         add2->kind == OP_ADD && add2->x == m[6]->y && add2->y == n1->x && add2->n == E);
    if (first) {
        a->n_embd = E, a->n_head = sh->n_head, a->n_kv = sh->n_head_kv, a->head_dim = hd, a->n_ff = (int)F;
        a->n_ctx = sh->n_ctx, a->neox = rq->neox, a->relu2 = glu->act == BN_GLU_RELU2;
        a->eps = n1->eps, a->theta = rq->theta;
        a->x = (float *)n1->x, a->q = m[0]->y, a->k = m[1]->y, a->v = (float *)ra->w, a->att = ra->y, a->h = glu->y;
        a->pos.val = rq->pos0; /* the rope's: the norm record carries no position */
        /* Blocks read all of x, q, k, v, att, h while others write: no two may share memory. */
        const void *buf[6] = {a->x, a->q, a->k, a->v, a->att, a->h};
        const int64_t len[6] = {E, Q, m[1]->n, m[1]->n, Q, F};
        for (int x = 0; x < 6; x++)
            for (int y = x + 1; y < 6; y++) NEED(!overlap(buf[x], len[x], buf[y], len[y]));
    } else {
        NEED(a->n_embd == E && a->n_head == sh->n_head && a->n_kv == sh->n_head_kv && a->head_dim == hd &&
             a->n_ff == F && a->n_ctx == sh->n_ctx && a->neox == rq->neox &&
             a->relu2 == (glu->act == BN_GLU_RELU2) && a->eps == n1->eps && a->theta == rq->theta &&
             a->pos.val == rq->pos0 &&
             a->x == n1->x && a->q == m[0]->y && a->k == m[1]->y && a->v == ra->w && a->att == ra->y &&
             a->h == glu->y);
    }
    L->attn_norm = (const float *)n1->w, L->attn_sub = sub ? (const float *)sub->w : NULL;
    L->ffn_norm = (const float *)n2->w, L->ffn_sub = sub2 ? (const float *)sub2->w : NULL;
    for (int k = 0; k < 7; k++) L->codes[k] = tern(m[k])->codes, L->scale[k] = tern(m[k])->scale;
    L->K = ra->kv.k, L->V = ra->kv.v;
    return i;
#undef NEED
}

/* The layers at r (up to BN_DL_MAX_LAYERS) in one persistent launch, when
 * they are whole layers and fit (bn_k_decode_layers_fits). Returns the
 * records consumed, 0 when it does not apply. */
static int run_decode_layers(cuda_backend *c, const op_rec *r, int avail, bn_pos pos, int *label) {
    bn_dl_args *a = (bn_dl_args *)calloc(1, sizeof *a); /* 6 KB: not on the stack */
    if (!a) return 0;
    int used = 0, n = 0;
    while (n < BN_DL_MAX_LAYERS) {
        int u = match_layer(r + used, avail - used, a, &a->L[n], n == 0);
        if (!u) break;
        used += u, n++;
    }
    a->n_layer = n, a->pos.ptr = pos.ptr, a->ws = c->ws, a->cnt = c->d_cnt, a->bar = c->d_bar, a->prof = c->d_lprof;
    int G = n ? a->n_head / a->n_kv : 1;
    if (!n || !bn_k_decode_layers_fits(a, c->n_sm) || bn_k_decode_layers_ws(a, c->n_sm) > c->ws_floats ||
        a->n_kv * ((G + 3) / 4) > N_COUNTERS) {
        free(a);
        return 0;
    }
    *label = P_LAYERS;
    check(c, bn_k_decode_layers(c->stream, a, c->n_sm), "decode layers");
    c->layers_runs++;
    c->lprof_layers = n;
    free(a);
    return used;
}

/* Runs the op at r[0], fusing it with the ops after it when they allow.
 * Returns the number of records consumed. */
static int run_op(cuda_backend *c, const op_rec *r, int avail, int graph, const int32_t *tokens, int *label) {
    cudaStream_t st = c->stream;
    bn_pos pos = {r->pos0, graph ? c->d_params : NULL};
    if (c->fuse && c->layers && r->kind == OP_RMSNORM && r->n_tok == 1 && avail >= 19) {
        int used = run_decode_layers(c, r, avail, pos, label);
        if (used) return used;
    }
    if (c->fuse && avail > 1 && (r->kind == OP_RMSNORM || r->kind == OP_GLU || r->kind == OP_QUANTIZE)) {
        int used = run_fused_gemv(c, r, avail, label);
        if (used) return used;
    }
    switch (r->kind) {
    case OP_EMBED: {
        const bn_cuda_dense *d = (const bn_cuda_dense *)r->w;
        *label = P_EMBED;
        check(c, bn_k_embed(st, d->type, d->data, d->row_bytes, r->dim, tokens, r->n_tok, r->y), "embed");
        return 1;
    }
    case OP_RMSNORM: {
        const op_rec *nx = avail > 1 ? r + 1 : NULL;
        int fuse = nx && nx->kind == OP_QUANTIZE && nx->x == r->y && nx->n_tok == r->n_tok && nx->dim == r->dim;
        *label = fuse ? P_NORM_Q : P_NORM;
        check(c, bn_k_rmsnorm(st, r->x, (const float *)r->w, r->n_tok, r->dim, r->eps, r->y, fuse ? &nx->qa : NULL),
              "rmsnorm");
        return fuse ? 2 : 1;
    }
    case OP_QUANTIZE: *label = P_QUANT; check(c, bn_k_quantize(st, r->x, r->n_tok, r->dim, &r->qa), "quantize"); return 1;
    case OP_TERNARY: {
        bn_tern_job jobs[BN_TERN_MAX_JOBS];
        int n = 0;
        while (n < avail && n < BN_TERN_MAX_JOBS && r[n].kind == OP_TERNARY && r[n].n_tok == r->n_tok &&
               r[n].dim == r->dim && same_qact(&r[n].qa, &r->qa)) {
            jobs[n].codes = tern(r + n)->codes;
            jobs[n].scale = tern(r + n)->scale;
            jobs[n].y = r[n].y;
            jobs[n].rows = (int)r[n].n;
            jobs[n].accumulate = 0;
            n++;
        }
        int used = n;
        const op_rec *nx = n == 1 && avail > 1 ? r + 1 : NULL;
        if (nx && nx->kind == OP_ADD && nx->x == r->y && nx->n == r->n * r->n_tok) {
            jobs[0].y = (float *)nx->y; /* add's destination, accumulated into */
            jobs[0].accumulate = 1;
            used = 2;
        }
        *label = jobs[0].accumulate ? P_TERN_ADD : n == 3 ? P_TERN3 : n == 2 ? P_TERN2 : P_TERN;
        check(c, bn_k_ternary(st, jobs, n, r->dim, &r->qa, r->n_tok), "ternary matmul");
        return used;
    }
    case OP_DENSE: {
        const bn_cuda_dense *d = (const bn_cuda_dense *)r->w;
        *label = P_DENSE;
        /* The tensor-core GEMM of several tokens converts the activations to
         * half precision in the work space (free at this point: stream order);
         * the GEMV (one token, recorded steps) needs none. */
        size_t need = bn_k_dense_mma_ok(d->type, d->data, d->row_bytes, (int)r->n, r->dim, r->n_tok)
                          ? bn_k_dense_mma_scratch(r->n_tok, r->dim)
                          : 0;
        if (need && !graph && need > c->ws_floats * sizeof(float)) ensure_ws(c, (need + 3) / sizeof(float));
        check(c, bn_k_dense(st, d->type, d->data, d->row_bytes, (int)r->n, r->dim, r->x, r->n_tok, r->y, c->ws,
                            c->ws_floats * sizeof(float)),
              "dense matmul");
        return 1;
    }
    case OP_ROPE: {
        /* rope(q), rope(k), attention(q, k, v): one launch rotates both and
         * fills the cache, then the attention proper. */
        const op_rec *ra = rope_qk_attn(r, avail, OP_ATTN), *rk = r + 1;
        if (ra && rk->pos0 == r->pos0 && ra->pos0 == r->pos0) {
            if (c->fuse && r->n_tok == 1 && bn_k_attention_decode_counters(&ra->s) <= N_COUNTERS) {
                int len = pos.ptr ? ra->s.n_ctx : pos.val + 1;
                if (bn_k_attention_decode_ws(&ra->s, len) <= c->ws_floats) {
                    *label = P_ATTN_DEC;
                    check(c,
                          bn_k_attention_decode(st, &ra->kv, &ra->s, r->y, rk->y, (const float *)ra->w, pos, r->theta,
                                                r->neox, len, c->ws, c->d_cnt, ra->y),
                          "decode attention");
                    return 3;
                }
            }
            int len = pos.ptr ? ra->s.n_ctx : pos.val + ra->n_tok, n_split, split_len;
            attn_split(c, &ra->s, len, ra->n_tok, &n_split, &split_len);
            *label = P_ROPE_ATTN;
            if (check(c,
                      bn_k_rope_qk_store(st, r->y, rk->y, (const float *)ra->w, r->n_tok, r->n_head, rk->n_head,
                                         r->head_dim, pos, r->theta, r->neox, ra->kv.k, ra->kv.v, ra->s.n_ctx),
                      "rope+kv store"))
                check(c, bn_k_attention_stored(st, &ra->kv, &ra->s, ra->x, ra->n_tok, pos, n_split, split_len, c->ws,
                                               ra->y),
                      "attention");
            return 3;
        }
        *label = P_ROPE;
        check(c, bn_k_rope(st, r->y, r->n_tok, r->n_head, r->head_dim, pos, r->theta, r->neox), "rope");
        return 1;
    }
    case OP_ATTN: {
        int len = pos.ptr ? r->s.n_ctx : pos.val + r->n_tok, n_split, split_len;
        attn_split(c, &r->s, len, r->n_tok, &n_split, &split_len);
        *label = P_ATTN;
        check(c, bn_k_attention(st, &r->kv, &r->s, r->x, r->z, (const float *)r->w, r->n_tok, pos, n_split,
                                split_len, c->ws, r->y),
              "attention");
        return 1;
    }
    case OP_GLU: {
        /* GLU [-> RMSNorm of its output] -> quantization: one row kernel. */
        const op_rec *nx = avail > 1 ? r + 1 : NULL, *nq = avail > 2 ? r + 2 : NULL;
        if (nx && nx->kind == OP_RMSNORM && nx->x == r->y && (int64_t)nx->n_tok * nx->dim == r->n && nq &&
            nq->kind == OP_QUANTIZE && nq->x == nx->y && nq->n_tok == nx->n_tok && nq->dim == nx->dim) {
            *label = P_GLU_Q;
            check(c, bn_k_row_fused(st, r->y, r->x, r->act, (const float *)nx->w, nx->n_tok, nx->dim, nx->eps, nx->y,
                                    &nq->qa),
                  "glu+rmsnorm+quantize");
            return 3;
        }
        if (nx && nx->kind == OP_QUANTIZE && nx->x == r->y && (int64_t)nx->n_tok * nx->dim == r->n) {
            *label = P_GLU_Q;
            check(c, bn_k_row_fused(st, r->y, r->x, r->act, NULL, nx->n_tok, nx->dim, 0.0f, r->y, &nx->qa),
                  "glu+quantize");
            return 2;
        }
        *label = P_GLU;
        check(c, bn_k_glu(st, r->y, r->x, r->n, r->act), "glu");
        return 1;
    }
    case OP_ADD: *label = P_ADD; check(c, bn_k_add(st, r->y, r->x, r->n), "add"); return 1;
    case OP_ROPE_B: {
        /* rope(q), rope(k), attention(q, k, v) of a multi-sequence step: one
         * launch rotates both and fills the caches, then the attention. */
        const op_rec *ra = rope_qk_attn(r, avail, OP_ATTN_B), *rk = r + 1;
        if (ra && rk->d_pos == r->d_pos && ra->d_pos == r->d_pos) {
            *label = P_ROPE_ATTN_B;
            check(c,
                  bn_k_rope_attention_batch(st, &ra->kv, ra->n, &ra->s, r->y, rk->y, (const float *)ra->w, r->n_tok,
                                            ra->d_seq, ra->d_pos, r->theta, r->neox, ra->y),
                  "rope+attention (batch)");
            return 3;
        }
    }
        *label = P_ROPE_B;
        check(c, bn_k_rope_batch(st, r->y, r->n_tok, r->n_head, r->head_dim, r->d_pos, r->theta, r->neox),
              "rope (batch)");
        return 1;
    case OP_ATTN_B:
        *label = P_ATTN_B;
        check(c, bn_k_attention_batch(st, &r->kv, r->n, &r->s, r->x, r->z, (const float *)r->w, r->n_tok, r->d_seq,
                                      r->d_pos, r->y),
              "attention (batch)");
        return 1;
    }
    return 1;
}

/* run_op, timed with events when profiling (which runs without graphs). */
static int run_one(cuda_backend *c, const op_rec *r, int avail, int graph, const int32_t *tokens) {
    int label = P_EMBED;
    if (!c->prof) return run_op(c, r, avail, graph, tokens, &label);
    check(c, cudaEventRecord(c->ev0, c->stream), "cudaEventRecord");
    int used = run_op(c, r, avail, graph, tokens, &label);
    float ms = 0.0f;
    if (check(c, cudaEventRecord(c->ev1, c->stream), "cudaEventRecord") &&
        check(c, cudaEventSynchronize(c->ev1), "cudaEventSynchronize") &&
        check(c, cudaEventElapsedTime(&ms, c->ev0, c->ev1), "cudaEventElapsedTime")) {
        int multi = c->rec_multi || r->n_tok > 1; /* a GLU or add record has no n_tok */
        c->prof_ms[multi][label] += ms;
        c->prof_n[multi][label]++;
    }
    return used;
}

static void print_profile(const cuda_backend *c) {
    for (int k = 0; k < 2; k++) {
        double total = 0.0;
        for (int i = 0; i < P_N; i++) total += c->prof_ms[k][i];
        if (total <= 0.0) continue;
        fprintf(stderr, "cuda profile, %s steps: %.3f ms of GPU time\n", k ? "multi-token" : "one-token", total);
        for (int i = 0; i < P_N; i++)
            if (c->prof_n[k][i])
                fprintf(stderr, "  %-18s %8ld launches %10.3f ms %8.2f us each %5.1f%%\n", prof_names[i],
                        c->prof_n[k][i], c->prof_ms[k][i], 1e3 * c->prof_ms[k][i] / c->prof_n[k][i],
                        100.0 * c->prof_ms[k][i] / total);
    }
}

/* Runs a recorded step (with programmatic dependent launch when enabled).
 * The embedding reads its tokens from d_params (one-token steps: the
 * token a graph replay is given) or d_tokens (several). */
static void run_list(cuda_backend *c, const op_rec *r, int n, int graph) {
    const int32_t *tokens = c->rec_multi ? c->d_tokens : c->d_params + 1;
    bn_k_pdl = c->pdl;
    for (int i = 0; i < n && !c->failed;) i += run_one(c, r + i, n - i, graph, tokens);
    bn_k_pdl = 0;
}

static int same_list(const op_rec *a, const op_rec *b, int n) {
    for (int i = 0; i < n; i++)
        if (memcmp(a + i, b + i, REC_KEY_BYTES)) return 0;
    return 1;
}

static void drop_graph(cuda_backend *c) {
    if (c->gexec) cudaGraphExecDestroy(c->gexec);
    c->gexec = NULL;
    c->n_grecs = 0;
}

/* Replays the cached graph, or captures the recorded list into it. */
static void run_graph(cuda_backend *c) {
    if (c->gexec && c->n_grecs == c->n_recs && same_list(c->grecs, c->recs, c->n_recs)) {
        check(c, cudaGraphLaunch(c->gexec, c->stream), "cudaGraphLaunch");
        return;
    }
    cudaGraph_t g = NULL;
    if (!check(c, cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture"))
        return;
    run_list(c, c->recs, c->n_recs, 1);
    cudaError_t e = cudaStreamEndCapture(c->stream, &g);
    if (!check(c, e, "cudaStreamEndCapture") || c->failed) {
        if (g) cudaGraphDestroy(g);
        return;
    }
    if (c->gexec) {
        cudaGraphExecUpdateResultInfo info;
        if (cudaGraphExecUpdate(c->gexec, g, &info) != cudaSuccess) {
            cudaGetLastError();
            cudaGraphExecDestroy(c->gexec);
            c->gexec = NULL;
        }
    }
    if (!c->gexec) check(c, cudaGraphInstantiate(&c->gexec, g, 0), "cudaGraphInstantiate");
    cudaGraphDestroy(g);
    op_rec *copy = (op_rec *)realloc(c->grecs, (size_t)c->n_recs * sizeof(op_rec));
    if (!copy) {
        fail_msg(c, "out of memory");
        return;
    }
    memcpy(copy, c->recs, (size_t)c->n_recs * sizeof(op_rec));
    c->grecs = copy;
    c->n_grecs = c->n_recs;
    if (c->gexec) check(c, cudaGraphLaunch(c->gexec, c->stream), "cudaGraphLaunch");
}

/* Executes the recorded step (graph or direct) and returns to idle. */
static void flush(cuda_backend *c) {
    if (!c->recording) return;
    c->recording = 0;
    if (c->failed) return;
    check(c, cudaSetDevice(c->device), "cudaSetDevice");
    if (c->rec_multi) { /* several tokens: the fusions, launched directly */
        run_list(c, c->recs, c->n_recs, 0);
        return;
    }
    int params[2] = {c->rec_pos0, c->rec_token};
    /* From pageable memory: the call returns once `params` has been consumed. */
    if (!check(c, cudaMemcpyAsync(c->d_params, params, sizeof params, cudaMemcpyHostToDevice, c->stream),
               "cudaMemcpyAsync (step parameters)"))
        return;
    if (c->use_graph && c->rec_uniform) run_graph(c);
    else run_list(c, c->recs, c->n_recs, 0);
}

/* Appends a record while recording, or runs it now. */
static void submit(cuda_backend *c, const op_rec *r, int pos0) {
    if (c->failed) return;
    if (c->recording) {
        if (pos0 >= 0) {
            if (c->rec_pos_set && pos0 != c->rec_pos0) c->rec_uniform = 0;
            c->rec_pos0 = pos0;
            c->rec_pos_set = 1;
        }
        if (c->n_recs == c->cap_recs) {
            int nc = c->cap_recs ? c->cap_recs * 2 : 256;
            op_rec *a = (op_rec *)realloc(c->recs, (size_t)nc * sizeof *a);
            if (!a) return fail_msg(c, "out of memory recording a decode step");
            c->recs = a, c->cap_recs = nc;
        }
        c->recs[c->n_recs] = *r;
        c->recs[c->n_recs++].pos0 = pos0 < 0 ? 0 : pos0;
        return;
    }
    if (!check(c, cudaSetDevice(c->device), "cudaSetDevice")) return;
    op_rec now = *r;
    now.pos0 = pos0 < 0 ? 0 : pos0;
    run_one(c, &now, 1, 0, c->d_tokens);
}

static op_rec new_rec(int kind) {
    op_rec r;
    memset(&r, 0, sizeof r);
    r.kind = kind;
    return r;
}

/* ----------------------------------------------------------------- ops -- */

static void *cu_alloc(bn_backend *be, size_t bytes) {
    cuda_backend *c = cb_of(be);
    void *p = NULL;
    if (!check(c, cudaSetDevice(c->device), "cudaSetDevice")) return NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        cudaGetLastError(); /* out of memory is the caller's error to report */
        return NULL;
    }
    if (!check(c, cudaMemsetAsync(p, 0, bytes, c->stream), "cudaMemsetAsync")) {
        cudaFree(p);
        return NULL;
    }
    return p;
}

static void cu_free(bn_backend *be, void *p) {
    cuda_backend *c = cb_of(be);
    if (!p) return;
    flush(c);
    cudaSetDevice(c->device);
    check(c, cudaStreamSynchronize(c->stream), "cudaStreamSynchronize");
    check(c, cudaFree(p), "cudaFree");
}

static int need_dev(cuda_backend *c, const void *dev, const char *what) {
    if (dev) return 1;
    fail_msg(c, "%s is not on the GPU (prepare_model was not called for this model)", what);
    return 0;
}

static void cu_embed(bn_backend *be, const bn_dense *emb, const int32_t *tokens, int n_tok, float *x) {
    cuda_backend *c = cb_of(be);
    flush(c); /* a step that never reached to_host */
    if (c->failed || !need_dev(c, emb->dev, "the token embedding")) return;
    op_rec r = new_rec(OP_EMBED);
    r.w = emb->dev, r.n_tok = n_tok, r.dim = (int)emb->cols, r.y = x;
    c->n_recs = 0;
    c->rec_pos_set = 0;
    c->rec_pos0 = 0;
    c->rec_uniform = 1;
    c->rec_multi = n_tok > 1;
    if (n_tok == 1) {
        c->recording = 1;
        c->rec_token = tokens[0];
        submit(c, &r, -1);
        return;
    }
    if (!check(c, cudaSetDevice(c->device), "cudaSetDevice")) return;
    if (n_tok > c->tok_cap) {
        cudaStreamSynchronize(c->stream);
        cudaFree(c->d_tokens);
        c->d_tokens = NULL;
        c->tok_cap = 0;
        if (!check(c, cudaMalloc((void **)&c->d_tokens, (size_t)n_tok * sizeof(int32_t)), "cudaMalloc (tokens)"))
            return;
        c->tok_cap = n_tok;
    }
    if (!check(c, cudaMemcpyAsync(c->d_tokens, tokens, (size_t)n_tok * sizeof(int32_t), cudaMemcpyHostToDevice,
                                  c->stream),
               "cudaMemcpyAsync (tokens)"))
        return;
    /* Recorded too, so that flush can fuse (norm + quantization, q/k/v in
     * one launch, the residual adds into the matmuls, ...). The copies a
     * step stages (tokens, batch positions) are enqueued at once, ahead of
     * the step's kernels, behind every earlier step's: stream order holds. */
    c->recording = c->fuse_multi;
    submit(c, &r, -1);
}

static void cu_rmsnorm(bn_backend *be, const float *x, const bn_vec *w, int n_tok, int dim, float eps, float *out) {
    cuda_backend *c = cb_of(be);
    if (!need_dev(c, w->dev, "a norm weight")) return;
    op_rec r = new_rec(OP_RMSNORM);
    r.x = x, r.w = w->dev, r.n_tok = n_tok, r.dim = dim, r.eps = eps, r.y = out;
    submit(c, &r, -1);
}

static void cu_quantize(bn_backend *be, const float *x, int n_tok, int dim, const bn_qact *out) {
    op_rec r = new_rec(OP_QUANTIZE);
    r.x = x, r.n_tok = n_tok, r.dim = dim, r.qa = *out;
    submit(cb_of(be), &r, -1);
}

static void cu_matmul_ternary(bn_backend *be, const bn_ternary *w, const bn_qact *a, int n_tok, float *y) {
    cuda_backend *c = cb_of(be);
    if (!need_dev(c, w->dev, "a ternary weight")) return;
    if (w->cols % 128 || w->rows > INT32_MAX) return fail_msg(c, "unsupported ternary shape");
    op_rec r = new_rec(OP_TERNARY);
    r.w = w->dev, r.qa = *a, r.n_tok = n_tok, r.dim = (int)w->cols, r.n = w->rows, r.y = y;
    submit(c, &r, -1);
}

static void cu_matmul_dense(bn_backend *be, const bn_dense *w, const float *x, int n_tok, float *y) {
    cuda_backend *c = cb_of(be);
    if (!need_dev(c, w->dev, "the output head")) return;
    op_rec r = new_rec(OP_DENSE);
    r.w = w->dev, r.x = x, r.n_tok = n_tok, r.dim = (int)w->cols, r.n = w->rows, r.y = y;
    submit(c, &r, -1);
}

static void cu_rope(bn_backend *be, float *x, int n_tok, int n_head, int head_dim, int pos0, float theta, int neox) {
    op_rec r = new_rec(OP_ROPE);
    r.y = x, r.n_tok = n_tok, r.n_head = n_head, r.head_dim = head_dim, r.theta = theta, r.neox = neox;
    submit(cb_of(be), &r, pos0);
}

static void cu_attention(bn_backend *be, const bn_kv_layer *kv, const bn_attn_shape *s, const float *q,
                         const float *k, const float *v, int n_tok, int pos0, float *out) {
    cuda_backend *c = cb_of(be);
    if (c->failed) return;
    if (!bn_k_attention_supported(s->head_dim) || s->n_head % s->n_head_kv)
        return fail_msg(c, "attention with head_dim %d and %d/%d heads is not supported", s->head_dim, s->n_head,
                        s->n_head_kv);
    int graph = c->recording && !c->rec_multi; /* a one-token step may become a graph: any position */
    int len = graph ? s->n_ctx : pos0 + n_tok, n_split, split_len;
    attn_split(c, s, len, n_tok, &n_split, &split_len);
    size_t need = (size_t)n_tok * n_split * s->n_head * (s->head_dim + 2);
    if (graph && c->fuse) {
        size_t dec = bn_k_attention_decode_ws(s, len);
        if (dec > need) need = dec;
    }
    if (!ensure_ws(c, need)) return;
    op_rec r = new_rec(OP_ATTN);
    r.kv = *kv, r.s = *s, r.x = q, r.z = k, r.w = v, r.n_tok = n_tok, r.y = out;
    submit(c, &r, pos0);
}

/* ------------------------------------------------ multi-sequence steps -- */

/* Room for n tokens' [pos | seq] in d_batch, h_batch and the shadow. */
static int ensure_batch(cuda_backend *c, int n) {
    if (n <= c->batch_cap) return 1;
    /* Queued kernels may still read d_batch, a copy may still read h_batch. */
    if (!check(c, cudaStreamSynchronize(c->stream), "cudaStreamSynchronize")) return 0;
    if (c->d_batch) check(c, cudaFree(c->d_batch), "cudaFree");
    if (c->h_batch) check(c, cudaFreeHost(c->h_batch), "cudaFreeHost");
    free(c->batch_shadow);
    c->d_batch = c->h_batch = c->batch_shadow = NULL;
    c->batch_cap = c->batch_n = 0;
    int cap = n < 256 ? 256 : n;
    size_t bytes = 2 * (size_t)cap * sizeof(int32_t);
    if (!check(c, cudaMalloc((void **)&c->d_batch, bytes), "cudaMalloc (batch positions)") ||
        !check(c, cudaHostAlloc((void **)&c->h_batch, bytes, cudaHostAllocDefault), "cudaHostAlloc (batch positions)"))
        return 0;
    if (!(c->batch_shadow = (int32_t *)malloc(bytes))) return fail_msg(c, "out of memory"), 0;
    if (!c->batch_ev && !check(c, cudaEventCreateWithFlags(&c->batch_ev, cudaEventDisableTiming), "cudaEventCreate"))
        return 0;
    c->batch_cap = cap;
    return 1;
}

/* Device copies of a step's host arrays pos (and seq, when not NULL):
 * *d_pos = d_batch, *d_seq = d_batch + n. Uploads only when they differ from
 * what d_batch holds; the copy is stream-ordered after the kernels that read
 * the previous contents. Returns 0 after a failure. */
static int stage_batch(cuda_backend *c, const int32_t *pos, const int32_t *seq, int n, const int32_t **d_pos,
                       const int32_t **d_seq) {
    if (!ensure_batch(c, n)) return 0;
    size_t row = (size_t)n * sizeof(int32_t);
    int same = c->batch_n == n && !memcmp(c->batch_shadow, pos, row) &&
               (!seq || (c->batch_has_seq && !memcmp(c->batch_shadow + n, seq, row)));
    if (!same) {
        /* h_batch is read by the previous copy until it completes. */
        if (c->batch_n && !check(c, cudaEventSynchronize(c->batch_ev), "cudaEventSynchronize")) return 0;
        memcpy(c->h_batch, pos, row);
        if (seq) memcpy(c->h_batch + n, seq, row);
        size_t bytes = seq ? 2 * row : row;
        if (!check(c, cudaMemcpyAsync(c->d_batch, c->h_batch, bytes, cudaMemcpyHostToDevice, c->stream),
                   "cudaMemcpyAsync (batch positions)") ||
            !check(c, cudaEventRecord(c->batch_ev, c->stream), "cudaEventRecord"))
            return 0;
        memcpy(c->batch_shadow, c->h_batch, bytes);
        c->batch_n = n;
        c->batch_has_seq = seq != NULL;
    }
    *d_pos = c->d_batch;
    if (d_seq) *d_seq = c->d_batch + n;
    return 1;
}

/* Batch ops run eagerly, never recorded: a step of several sequences has
 * several tokens, so no one-token step is being recorded; should one be,
 * it is flushed first so that stream order is kept. */
static int begin_eager(cuda_backend *c) {
    flush(c);
    return !c->failed && check(c, cudaSetDevice(c->device), "cudaSetDevice");
}

/* Batch ops: recorded when a step of several tokens is being recorded (the
 * usual case: bn_forward_batch starts with the embedding), else run now.
 * The positions are staged at once either way (see cu_embed). */
static int batch_op_ready(cuda_backend *c) {
    if (c->recording && c->rec_multi) return !c->failed;
    return begin_eager(c);
}

static void cu_rope_batch(bn_backend *be, float *x, int n_tok, int n_head, int head_dim, const int32_t *pos,
                          float theta, int neox) {
    cuda_backend *c = cb_of(be);
    const int32_t *d_pos;
    if (!batch_op_ready(c) || !stage_batch(c, pos, NULL, n_tok, &d_pos, NULL)) return;
    op_rec r = new_rec(OP_ROPE_B);
    r.y = x, r.n_tok = n_tok, r.n_head = n_head, r.head_dim = head_dim, r.d_pos = d_pos, r.theta = theta;
    r.neox = neox;
    submit(c, &r, -1);
}

static void cu_attention_batch(bn_backend *be, const bn_kv_layer *kv, int64_t seq_stride, const bn_attn_shape *s,
                               const float *q, const float *k, const float *v, int n_tok, const int32_t *seq,
                               const int32_t *pos, float *out) {
    cuda_backend *c = cb_of(be);
    if (!batch_op_ready(c)) return;
    if (!bn_k_attention_supported(s->head_dim) || s->head_dim > 256 || s->n_head % s->n_head_kv)
        return fail_msg(c, "batched attention with head_dim %d and %d/%d heads is not supported", s->head_dim,
                        s->n_head, s->n_head_kv);
    const int32_t *d_pos, *d_seq;
    if (!stage_batch(c, pos, seq, n_tok, &d_pos, &d_seq)) return;
    op_rec r = new_rec(OP_ATTN_B);
    r.kv = *kv, r.n = seq_stride, r.s = *s, r.x = q, r.z = k, r.w = v, r.n_tok = n_tok, r.d_seq = d_seq;
    r.d_pos = d_pos, r.y = out;
    submit(c, &r, -1);
}

static void cu_glu(bn_backend *be, float *g, const float *u, int64_t n, bn_glu_act act) {
    op_rec r = new_rec(OP_GLU);
    r.y = g, r.x = u, r.n = n, r.act = act;
    submit(cb_of(be), &r, -1);
}

static void cu_add(bn_backend *be, float *x, const float *y, int64_t n) {
    op_rec r = new_rec(OP_ADD);
    r.y = x, r.x = y, r.n = n;
    submit(cb_of(be), &r, -1);
}

extern "C" bitnet_status bn_cuda_copy_to_device(bn_backend *be, void *dst, const void *src, size_t n,
                                                bitnet_error *err) {
    cuda_backend *c = cb_of(be);
    flush(c);
    if (!c->failed && check(c, cudaSetDevice(c->device), "cudaSetDevice") &&
        check(c, cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, c->stream), "cudaMemcpyAsync") &&
        check(c, cudaStreamSynchronize(c->stream), "cudaStreamSynchronize"))
        return BITNET_OK;
    return bn_fail(err, BITNET_E_DEVICE, "%s", c->message);
}

static int ensure_pinned(cuda_backend *c, size_t n) {
    if (n <= c->pinned_cap) return 1;
    if (c->pinned) cudaFreeHost(c->pinned);
    c->pinned = NULL;
    c->pinned_cap = 0;
    if (cudaHostAlloc(&c->pinned, n, cudaHostAllocDefault) != cudaSuccess) {
        cudaGetLastError();
        c->pinned = NULL;
        return 0;
    }
    c->pinned_cap = n;
    return 1;
}

#define PINNED_MAX (64u << 20)

/* Page-locked host blocks for results (the context's logits): a copy into
 * one needs no staging buffer and no second memcpy on the host, which for a
 * batch of 256 rows of a 128k vocabulary is most of the step's time. */
static void *cu_host_alloc(bn_backend *be, size_t bytes) {
    void *p = NULL;
    if (cudaSetDevice(cb_of(be)->device) != cudaSuccess || cudaHostAlloc(&p, bytes, cudaHostAllocDefault) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    return p;
}

static void cu_host_free(bn_backend *be, void *p) {
    (void)be;
    if (p) cudaFreeHost(p);
}

static int is_page_locked(const void *p) {
    cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return a.type == cudaMemoryTypeHost;
}

static void cu_to_host(bn_backend *be, void *dst, const void *src, size_t n) {
    cuda_backend *c = cb_of(be);
    flush(c);
    if (!c->failed) check(c, cudaSetDevice(c->device), "cudaSetDevice");
    if (!c->failed && is_page_locked(dst)) {
        if (check(c, cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, c->stream), "cudaMemcpyAsync"))
            check(c, cudaStreamSynchronize(c->stream), "cudaStreamSynchronize");
    } else if (!c->failed && n <= PINNED_MAX && ensure_pinned(c, n)) {
        if (check(c, cudaMemcpyAsync(c->pinned, src, n, cudaMemcpyDeviceToHost, c->stream), "cudaMemcpyAsync") &&
            check(c, cudaStreamSynchronize(c->stream), "cudaStreamSynchronize"))
            memcpy(dst, c->pinned, n);
    } else if (!c->failed) {
        if (check(c, cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, c->stream), "cudaMemcpyAsync"))
            check(c, cudaStreamSynchronize(c->stream), "cudaStreamSynchronize");
    }
    if (c->failed) memset(dst, 0xff, n); /* NaN floats: a failed step never looks like a result */
}

static int ensure_argmax(cuda_backend *c, int n_rows) {
    if (n_rows <= c->argmax_cap) return 1;
    if (c->d_argmax && !check(c, cudaFree(c->d_argmax), "cudaFree")) return 0; /* cudaFree waits for the device */
    c->d_argmax = NULL;
    c->argmax_cap = 0;
    if (!check(c, cudaMalloc((void **)&c->d_argmax, (size_t)n_rows * sizeof(int32_t)), "cudaMalloc (argmax)"))
        return 0;
    c->argmax_cap = n_rows;
    return 1;
}

static void cu_argmax(bn_backend *be, const float *x, int n_rows, int n_cols, int32_t *out_host) {
    cuda_backend *c = cb_of(be);
    flush(c); /* a recorded decode step: its head writes x */
    if (n_rows <= 0) return;
    if (!c->failed && check(c, cudaSetDevice(c->device), "cudaSetDevice") && ensure_argmax(c, n_rows))
        check(c, bn_k_argmax(c->stream, x, n_rows, n_cols, c->d_argmax), "argmax");
    /* 4 bytes a row, copied as to_host copies; on a failed backend to_host
     * sets every byte, i.e. every id to -1. */
    cu_to_host(be, out_host, c->d_argmax, (size_t)n_rows * sizeof(int32_t));
}

static void cu_destroy(bn_backend *be) {
    cuda_backend *c = cb_of(be);
    if (!c) return;
    flush(c);
    cudaSetDevice(c->device);
    if (c->stream) cudaStreamSynchronize(c->stream);
    drop_graph(c);
    if (c->prof) print_profile(c);
    if (c->d_lprof) {
        unsigned long long *h = (unsigned long long *)calloc(BN_DL_PROF_N, sizeof *h);
        if (h && cudaMemcpy(h, c->d_lprof, BN_DL_PROF_N * sizeof *h, cudaMemcpyDeviceToHost) == cudaSuccess)
            bn_k_decode_layers_print_profile(h, c->lprof_layers, stderr);
        free(h);
        cudaFree(c->d_lprof);
    }
    if (c->ev0) cudaEventDestroy(c->ev0);
    if (c->ev1) cudaEventDestroy(c->ev1);
    bn_cuda_weights_release(be);
    store_free(&c->own);
    cudaFree(c->d_params);
    cudaFree(c->d_cnt);
    cudaFree(c->d_bar);
    cudaFree(c->d_tokens);
    cudaFree(c->ws);
    if (c->pinned) cudaFreeHost(c->pinned);
    cudaFree(c->d_argmax);
    cudaFree(c->d_batch);
    if (c->h_batch) cudaFreeHost(c->h_batch);
    free(c->batch_shadow);
    if (c->batch_ev) cudaEventDestroy(c->batch_ev);
    if (c->stream) cudaStreamDestroy(c->stream);
    cudaGetLastError();
    free(c->recs);
    free(c->grecs);
    free(c);
}

static bitnet_status prepare_model(bn_backend *be, struct bitnet_model *m, bitnet_error *err) {
    return bn_cuda_prepare_model(be, m, err);
}

static bitnet_status cu_status(bn_backend *be, bitnet_error *err) {
    cuda_backend *c = cb_of(be);
    /* A step that copied nothing back (a prompt chunk without logits) is
     * still recorded: launch it, so that its launch errors belong to this
     * call and its work is queued when the eval returns. */
    flush(c);
    return c->failed ? bn_fail(err, BITNET_E_DEVICE, "%s", c->message) : BITNET_OK;
}

static bn_backend_ops make_ops(void) {
    bn_backend_ops o;
    memset(&o, 0, sizeof o);
    o.name = "cuda";
    o.destroy = cu_destroy;
    o.alloc = cu_alloc;
    o.free = cu_free;
    o.host_alloc = cu_host_alloc;
    o.host_free = cu_host_free;
    o.kv_elem_size = 2; /* f16 */
    o.prepare_model = prepare_model;
    o.embed = cu_embed;
    o.rmsnorm = cu_rmsnorm;
    o.quantize = cu_quantize;
    o.matmul_ternary = cu_matmul_ternary;
    o.matmul_dense = cu_matmul_dense;
    o.rope = cu_rope;
    o.attention = cu_attention;
    o.rope_batch = cu_rope_batch;
    o.attention_batch = cu_attention_batch;
    o.glu = cu_glu;
    o.add = cu_add;
    o.to_host = cu_to_host;
    o.argmax = cu_argmax;
    o.status = cu_status;
    return o;
}

static const bn_backend_ops cuda_ops = make_ops();

/* ------------------------------------------------------------- creation -- */

extern "C" int bn_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

static bitnet_status init_device(cuda_backend *c, bitnet_error *err) {
    cudaDeviceProp prop;
    cudaError_t e = cudaGetDeviceProperties(&prop, c->device);
    if (e == cudaSuccess && prop.major < 8)
        return bn_fail(err, BITNET_E_DEVICE,
                       "cuda:%d (%s) has compute capability %d.%d; bitnet.c's CUDA backend needs 8.0 or newer",
                       c->device, prop.name, prop.major, prop.minor);
    if (e == cudaSuccess) c->n_sm = prop.multiProcessorCount;
    if (e == cudaSuccess && prop.major < 9) c->pdl = 0; /* programmatic launch: compute capability 9.0+ */
    if (e == cudaSuccess) e = cudaSetDevice(c->device);
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
    if (e == cudaSuccess) bn_k_wgmma_init();
    if (e == cudaSuccess) bn_k_decode_layers_init();
    if (e == cudaSuccess) e = cudaMalloc((void **)&c->d_bar, sizeof(unsigned));
    if (e == cudaSuccess) e = cudaMalloc((void **)&c->d_params, 2 * sizeof(int));
    if (e == cudaSuccess) e = cudaMalloc((void **)&c->d_tokens, 4096 * sizeof(int32_t));
    if (e == cudaSuccess) e = cudaMalloc((void **)&c->d_cnt, N_COUNTERS * sizeof(int));
    if (e == cudaSuccess) e = cudaMemsetAsync(c->d_cnt, 0, N_COUNTERS * sizeof(int), c->stream);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return bn_fail(err, BITNET_E_DEVICE, "cuda:%d: cannot initialise: %s", c->device, cudaGetErrorString(e));
    }
    c->tok_cap = 4096;
    return BITNET_OK;
}

extern "C" bitnet_status bn_backend_cuda_create(bn_backend **out, int device, bitnet_error *err) {
    *out = NULL;
    int n = bn_cuda_device_count();
    if (n == 0) return bn_fail(err, BITNET_E_DEVICE, "no CUDA GPU found (no device or no driver)");
    if (device < 0 || device >= n)
        return bn_fail(err, BITNET_E_DEVICE, "CUDA device %d does not exist (%d found: cuda:0..cuda:%d)", device, n,
                       n - 1);
    cuda_backend *c = (cuda_backend *)calloc(1, sizeof *c);
    if (!c) return bn_fail(err, BITNET_E_NOMEM, "out of memory");
    c->base.ops = &cuda_ops;
    c->device = device;
    const char *g = getenv("BITNET_CUDA_GRAPH");
    c->use_graph = !(g && !strcmp(g, "0"));
    const char *pr = getenv("BITNET_CUDA_PROFILE");
    c->prof = pr && *pr && strcmp(pr, "0");
    const char *pd = getenv("BITNET_CUDA_PDL"), *fu = getenv("BITNET_CUDA_FUSE");
    c->pdl = !(pd && !strcmp(pd, "0"));
    c->fuse = !(fu && !strcmp(fu, "0"));
    const char *fm = getenv("BITNET_CUDA_FUSE_MULTI");
    c->fuse_multi = !(fm && !strcmp(fm, "0"));
    const char *ly = getenv("BITNET_CUDA_LAYERS");
    c->layers = !(ly && !strcmp(ly, "0")); /* on by default; still only where the probe passes */
    const char *lp = getenv("BITNET_CUDA_LAYERS_PROFILE");
    int lprof = lp && *lp && strcmp(lp, "0");
    if (c->prof) c->use_graph = 0, c->pdl = 0; /* launches are timed one by one */
    bitnet_status rc = init_device(c, err);
    if (!rc && lprof && c->layers &&
        (cudaMalloc((void **)&c->d_lprof, BN_DL_PROF_N * sizeof(unsigned long long)) != cudaSuccess ||
         cudaMemset(c->d_lprof, 0, BN_DL_PROF_N * sizeof(unsigned long long)) != cudaSuccess))
        rc = bn_fail(err, BITNET_E_DEVICE, "cuda:%d: cannot allocate the layers kernel's profile", device);
    if (!rc && c->prof &&
        (cudaEventCreate(&c->ev0) != cudaSuccess || cudaEventCreate(&c->ev1) != cudaSuccess))
        rc = bn_fail(err, BITNET_E_DEVICE, "cuda:%d: cannot create events for profiling", device);
    if (rc) {
        cu_destroy(&c->base);
        return rc;
    }
    *out = &c->base;
    return BITNET_OK;
}

extern "C" long bn_cuda_layers_runs(bn_backend *be) {
    cuda_backend *c = cb_of(be);
    flush(c);
    return c->layers_runs;
}
