/* The CPU backend: host memory, kernels from the run-time selected table,
 * work split across a persistent thread pool. Weights are used where the
 * model keeps them (no copies). The KV cache holds IEEE halves. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "format/ggml_types.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/kernels_ref.h"
#include "kernels/cpu/threadpool.h"
#include "util/error.h"

typedef struct cpu_backend {
    bn_backend base;
    const bn_cpu_kernels *k;
    bn_threadpool *pool;
    float **scratch;       /* one row buffer per thread (dense head decoding, attention scores) */
    size_t scratch_floats;
    float **tile;          /* one prompt-attention tile buffer per thread (grown on demand) */
    size_t tile_floats;
    /* RoPE (cos, sin) pairs for positions [0, rope_n) of one (theta, head_dim):
     * computed once instead of in every layer, twice (q and k). */
    float *rope_cs;
    int rope_n, rope_cap, rope_dim;
    float rope_theta;
} cpu_backend;

static cpu_backend *cpu(bn_backend *be) { return (cpu_backend *)be; }

/* Per-thread scratch of at least n floats; called before a parallel run. */
static int ensure_scratch(cpu_backend *c, size_t n) {
    if (n <= c->scratch_floats) return 1;
    for (int i = 0; i < bn_threadpool_size(c->pool); i++) {
        float *p = realloc(c->scratch[i], n * sizeof(float));
        if (!p) return 0;
        c->scratch[i] = p;
    }
    c->scratch_floats = n;
    return 1;
}

/* Per-thread attention tile buffers of at least n floats; 0 when out of
 * memory (the caller then takes the per-row path, which needs none). */
static int ensure_tile(cpu_backend *c, size_t n) {
    if (n <= c->tile_floats) return 1;
    int nt = bn_threadpool_size(c->pool);
    if (!c->tile && !(c->tile = calloc((size_t)nt, sizeof *c->tile))) return 0;
    for (int i = 0; i < nt; i++) {
        float *p = realloc(c->tile[i], n * sizeof(float));
        if (!p) return 0;
        c->tile[i] = p;
    }
    c->tile_floats = n;
    return 1;
}

static void *cpu_alloc(bn_backend *be, size_t bytes) {
    (void)be;
    void *p = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (p) memset(p, 0, bytes);
    return p;
}

static void cpu_free(bn_backend *be, void *p) {
    (void)be;
    free(p);
}

static void cpu_embed(bn_backend *be, const bn_dense *emb, const int32_t *tokens, int n_tok, float *x) {
    (void)be;
    for (int t = 0; t < n_tok; t++)
        bn_ggml_dequantize_row(emb->type, emb->data + (int64_t)tokens[t] * emb->row_bytes, x + (int64_t)t * emb->cols,
                               emb->cols, 0.0f);
}

/* Per-token row operations run on the pool when a batch is large enough to
 * pay for the handshake (prompt processing); one token stays on the caller. */
#define ROWS_PARALLEL_MIN 4

typedef struct rows_job {
    cpu_backend *c;
    const float *x;
    const bn_vec *w;
    int dim;
    float eps;
    float *out;
    const bn_qact *qa;
} rows_job;

static void rmsnorm_row(const float *xt, const float *w, int dim, float eps, float *ot) {
    double ss = 0.0;
    for (int i = 0; i < dim; i++) ss += (double)xt[i] * xt[i];
    float r = (float)(1.0 / sqrt(ss / dim + eps));
    for (int i = 0; i < dim; i++) ot[i] = xt[i] * r * w[i];
}

static void rmsnorm_task(void *ctx, int t, int thread) {
    (void)thread;
    rows_job *j = ctx;
    rmsnorm_row(j->x + (int64_t)t * j->dim, j->w->data, j->dim, j->eps, j->out + (int64_t)t * j->dim);
}

static void cpu_rmsnorm(bn_backend *be, const float *x, const bn_vec *w, int n_tok, int dim, float eps, float *out) {
    cpu_backend *c = cpu(be);
    rows_job j = {.c = c, .x = x, .w = w, .dim = dim, .eps = eps, .out = out};
    if (n_tok >= ROWS_PARALLEL_MIN) bn_threadpool_run(c->pool, n_tok, rmsnorm_task, &j);
    else
        for (int t = 0; t < n_tok; t++) rmsnorm_task(&j, t, 0);
}

static void quantize_task(void *ctx, int t, int thread) {
    (void)thread;
    rows_job *j = ctx;
    j->c->k->quantize_row_i8(j->x + (int64_t)t * j->dim, j->dim, j->qa->q + (int64_t)t * j->dim, &j->qa->scale[t],
                             &j->qa->sum[t]);
}

static void cpu_quantize(bn_backend *be, const float *x, int n_tok, int dim, const bn_qact *out) {
    cpu_backend *c = cpu(be);
    rows_job j = {.c = c, .x = x, .dim = dim, .qa = out};
    if (n_tok >= ROWS_PARALLEL_MIN) bn_threadpool_run(c->pool, n_tok, quantize_task, &j);
    else
        for (int t = 0; t < n_tok; t++) quantize_task(&j, t, 0);
}

/* Matrices are split into row chunks so that each thread streams a disjoint
 * slice of the weights. Chunks are multiples of 16 rows (SIMD kernels may
 * process several rows at once) and there are a few per thread for balance. */
typedef struct mm_job {
    cpu_backend *c;
    const bn_ternary *tw;
    const bn_dense *dw;
    const bn_qact *a;
    const float *x;
    int n_tok;
    float *y;
    int64_t rows, chunk;
} mm_job;

static int64_t chunk_rows(int64_t rows, int n_threads) {
    int64_t per = (rows + (int64_t)n_threads * 4 - 1) / ((int64_t)n_threads * 4);
    per = (per + 15) / 16 * 16;
    return per < 16 ? 16 : per;
}

static void ternary_task(void *ctx, int task, int thread) {
    (void)thread;
    mm_job *j = ctx;
    int64_t r0 = (int64_t)task * j->chunk, r1 = r0 + j->chunk > j->rows ? j->rows : r0 + j->chunk;
    j->c->k->ternary_gemm(j->tw, r0, r1, j->a, j->n_tok, j->y, j->rows);
}

static void cpu_matmul_ternary(bn_backend *be, const bn_ternary *w, const bn_qact *a, int n_tok, float *y) {
    cpu_backend *c = cpu(be);
    mm_job j = {.c = c, .tw = w, .a = a, .n_tok = n_tok, .y = y, .rows = w->rows};
    j.chunk = chunk_rows(w->rows, bn_threadpool_size(c->pool));
    bn_threadpool_run(c->pool, (int)((w->rows + j.chunk - 1) / j.chunk), ternary_task, &j);
}

static void dense_task(void *ctx, int task, int thread) {
    mm_job *j = ctx;
    int64_t r0 = (int64_t)task * j->chunk, r1 = r0 + j->chunk > j->rows ? j->rows : r0 + j->chunk;
    j->c->k->dense_gemm(j->dw, r0, r1, j->x, j->n_tok, j->y, j->rows, j->c->scratch[thread]);
}

static void cpu_matmul_dense(bn_backend *be, const bn_dense *w, const float *x, int n_tok, float *y) {
    cpu_backend *c = cpu(be);
    if (!ensure_scratch(c, (size_t)w->cols)) abort(); /* sized at context creation; cannot fail here */
    mm_job j = {.c = c, .dw = w, .x = x, .n_tok = n_tok, .y = y, .rows = w->rows};
    j.chunk = chunk_rows(w->rows, bn_threadpool_size(c->pool));
    bn_threadpool_run(c->pool, (int)((w->rows + j.chunk - 1) / j.chunk), dense_task, &j);
}

/* Angle of pair i at position pos, in double: the reference logits are
 * computed in float64. */
static void rope_angle(double pos, int i, int head_dim, float theta, float *cs, float *sn) {
    double ang = pos * pow((double)theta, -2.0 * i / head_dim);
    *cs = (float)cos(ang);
    *sn = (float)sin(ang);
}

/* Makes the (cos, sin) table cover positions [0, n); 0 when out of memory. */
static int rope_table(cpu_backend *c, int n, int head_dim, float theta) {
    if (c->rope_dim != head_dim || c->rope_theta != theta) c->rope_n = 0;
    if (n <= c->rope_n) return 1;
    int half = head_dim / 2;
    if (n > c->rope_cap || c->rope_dim != head_dim) {
        int cap = n > 2 * c->rope_cap ? n : 2 * c->rope_cap;
        float *p = realloc(c->rope_cs, (size_t)cap * half * 2 * sizeof(float));
        if (!p) return 0;
        c->rope_cs = p, c->rope_cap = cap;
    }
    c->rope_dim = head_dim, c->rope_theta = theta;
    for (int pos = c->rope_n; pos < n; pos++)
        for (int i = 0; i < half; i++) {
            float *e = c->rope_cs + ((size_t)pos * half + i) * 2;
            rope_angle(pos, i, head_dim, theta, &e[0], &e[1]);
        }
    c->rope_n = n;
    return 1;
}

/* Rotates the n_head heads of one token's row v at position pos. */
static void rope_token(cpu_backend *c, float *row, int n_head, int head_dim, int pos, float theta, int neox,
                       int cached) {
    int half = head_dim / 2;
    for (int i = 0; i < half; i++) {
        float cs, sn;
        if (cached) {
            const float *e = c->rope_cs + ((size_t)pos * half + i) * 2;
            cs = e[0], sn = e[1];
        } else {
            rope_angle(pos, i, head_dim, theta, &cs, &sn);
        }
        for (int h = 0; h < n_head; h++) {
            float *v = row + (int64_t)h * head_dim;
            int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
            float x0 = v[a], x1 = v[b];
            v[a] = x0 * cs - x1 * sn;
            v[b] = x0 * sn + x1 * cs;
        }
    }
}

static void cpu_rope(bn_backend *be, float *x, int n_tok, int n_head, int head_dim, int pos0, float theta, int neox) {
    cpu_backend *c = cpu(be);
    int cached = rope_table(c, pos0 + n_tok, head_dim, theta);
    for (int t = 0; t < n_tok; t++)
        rope_token(c, x + (int64_t)t * n_head * head_dim, n_head, head_dim, pos0 + t, theta, neox, cached);
}

static void cpu_rope_batch(bn_backend *be, float *x, int n_tok, int n_head, int head_dim, const int32_t *pos,
                           float theta, int neox) {
    cpu_backend *c = cpu(be);
    int top = 0;
    for (int t = 0; t < n_tok; t++) top = pos[t] + 1 > top ? pos[t] + 1 : top;
    int cached = rope_table(c, top, head_dim, theta);
    for (int t = 0; t < n_tok; t++)
        rope_token(c, x + (int64_t)t * n_head * head_dim, n_head, head_dim, pos[t], theta, neox, cached);
}

typedef struct attn_job {
    cpu_backend *c;
    const bn_kv_layer *kv;
    const bn_attn_shape *s;
    const float *q;
    int n_tok, pos0, tile_tok;
    int64_t seq_stride;
    const int32_t *seq, *pos; /* batched attention: per-token sequence and position */
    float *out;
} attn_job;

/* One query row qt over the first n cached positions of one head (K, V),
 * into ot. The cache holds IEEE halves (half the bytes to stream per step);
 * scores and the weighted sum are f32. */
static void attend(const bn_cpu_kernels *k, const float *qt, const uint16_t *K, const uint16_t *V, int n, int hd,
                   float *score, float *ot) {
    float inv_sqrt = 1.0f / sqrtf((float)hd);
    for (int p = 0; p < n; p++) score[p] = k->dot_f16(qt, K + (int64_t)p * hd, hd) * inv_sqrt;
    float inv_sum = bn_softmax_exp(score, n);
    memset(ot, 0, (size_t)hd * sizeof(float));
    for (int p = 0; p < n; p++) k->axpy_f16(score[p] * inv_sum, V + (int64_t)p * hd, ot, hd);
}

/* One task = one query head for every token of the batch. */
static void attn_task(void *ctx, int h, int thread) {
    attn_job *j = ctx;
    const bn_attn_shape *s = j->s;
    int hd = s->head_dim, hk = h / (s->n_head / s->n_head_kv);
    const uint16_t *K = (const uint16_t *)j->kv->k + (int64_t)hk * s->n_ctx * hd;
    const uint16_t *V = (const uint16_t *)j->kv->v + (int64_t)hk * s->n_ctx * hd;
    for (int t = 0; t < j->n_tok; t++) {
        int64_t row = ((int64_t)t * s->n_head + h) * hd;
        attend(j->c->k, j->q + row, K, V, j->pos0 + t + 1, hd, j->c->scratch[thread], j->out + row);
    }
}

/* Tokens per attention tile, or 0 for the per-row path. Tiles (the G query
 * heads of a KV group × up to BN_ATTN_TILE_ROWS / G tokens; measured on Zen
 * 3 in docs/PERFORMANCE.md) are used by every attention of the context, one
 * sequence or batched, prompt or decode, when the level has them: a row's
 * result does not depend on the tile it is in, so a sequence's logits stay
 * the same batched or alone. The per-row path is the fallback (no tiles at
 * this level, or no memory for their buffers). */
static int use_tiles(cpu_backend *c, const bn_attn_shape *s, int n_tok, int max_keys) {
    int G = s->n_head / s->n_head_kv;
    if (!c->k->attend_tile || G > BN_ATTN_TILE_ROWS) return 0;
    int tok = BN_ATTN_TILE_ROWS / G < n_tok ? BN_ATTN_TILE_ROWS / G : n_tok;
    return ensure_tile(c, bn_attend_tile_scratch(tok * G, max_keys, s->head_dim)) ? tok : 0;
}

/* Tokens [t0, t0 + nt) × the G query heads of KV head hk as one tile, over
 * the first n0 (+ token offset) positions of the cache at kv_off. */
static void run_tile(attn_job *j, int thread, int t0, int nt, int hk, int64_t kv_off, int n0) {
    const bn_attn_shape *s = j->s;
    int hd = s->head_dim, G = s->n_head / s->n_head_kv;
    int64_t row = ((int64_t)t0 * s->n_head + (int64_t)hk * G) * hd;
    j->c->k->attend_tile(j->q + row, (int64_t)s->n_head * hd, G, nt, n0, hd, (const uint16_t *)j->kv->k + kv_off,
                         (const uint16_t *)j->kv->v + kv_off, j->c->tile[thread], j->out + row);
}

/* One task = one KV head × a block of tile_tok tokens of the sequence. */
static void attn_tile_task(void *ctx, int i, int thread) {
    attn_job *j = ctx;
    const bn_attn_shape *s = j->s;
    int hk = i % s->n_head_kv, t0 = (i / s->n_head_kv) * j->tile_tok;
    int nt = j->n_tok - t0 < j->tile_tok ? j->n_tok - t0 : j->tile_tok;
    run_tile(j, thread, t0, nt, hk, (int64_t)hk * s->n_ctx * s->head_dim, j->pos0 + t0 + 1);
}

/* Stores k, v rows of token t at position p of the cache at base offset off. */
static void kv_store(cpu_backend *c, const bn_kv_layer *kv, const bn_attn_shape *s, const float *k, const float *v,
                     int t, int64_t off, int p) {
    int hd = s->head_dim;
    for (int h = 0; h < s->n_head_kv; h++) {
        size_t dst = (size_t)off + ((size_t)h * s->n_ctx + (size_t)p) * hd;
        size_t src = ((size_t)t * s->n_head_kv + h) * hd;
        c->k->f32_to_f16(k + src, (uint16_t *)kv->k + dst, hd);
        c->k->f32_to_f16(v + src, (uint16_t *)kv->v + dst, hd);
    }
}

static void cpu_attention(bn_backend *be, const bn_kv_layer *kv, const bn_attn_shape *s, const float *q,
                          const float *k, const float *v, int n_tok, int pos0, float *out) {
    cpu_backend *c = cpu(be);
    for (int t = 0; t < n_tok; t++) kv_store(c, kv, s, k, v, t, 0, pos0 + t);
    if (!ensure_scratch(c, (size_t)s->n_ctx)) abort(); /* sized at context creation */
    attn_job j = {.c = c, .kv = kv, .s = s, .q = q, .n_tok = n_tok, .pos0 = pos0, .out = out};
    j.tile_tok = use_tiles(c, s, n_tok, s->n_ctx);
    if (j.tile_tok) {
        int blocks = (n_tok + j.tile_tok - 1) / j.tile_tok;
        bn_threadpool_run(c->pool, blocks * s->n_head_kv, attn_tile_task, &j);
        return;
    }
    bn_threadpool_run(c->pool, s->n_head, attn_task, &j);
}

/* One task = one (token, query head): tokens of a batch belong to different
 * sequences and attend over different lengths, so they are not grouped by
 * head. The arithmetic is attn_task's, so a sequence gets the same results
 * batched as alone. */
static void attn_batch_task(void *ctx, int i, int thread) {
    attn_job *j = ctx;
    const bn_attn_shape *s = j->s;
    int t = i / s->n_head, h = i % s->n_head;
    int hd = s->head_dim, hk = h / (s->n_head / s->n_head_kv);
    int64_t base = (int64_t)j->seq[t] * j->seq_stride + (int64_t)hk * s->n_ctx * hd;
    int64_t row = ((int64_t)t * s->n_head + h) * hd;
    attend(j->c->k, j->q + row, (const uint16_t *)j->kv->k + base, (const uint16_t *)j->kv->v + base, j->pos[t] + 1,
           hd, j->c->scratch[thread], j->out + row);
}

/* One task = one (token, KV head): a tile of one token × G heads, over the
 * positions 0..pos[t] of its sequence. */
static void attn_batch_tile_task(void *ctx, int i, int thread) {
    attn_job *j = ctx;
    const bn_attn_shape *s = j->s;
    int t = i / s->n_head_kv, hk = i % s->n_head_kv;
    run_tile(j, thread, t, 1, hk, (int64_t)j->seq[t] * j->seq_stride + (int64_t)hk * s->n_ctx * s->head_dim,
             j->pos[t] + 1);
}

static void cpu_attention_batch(bn_backend *be, const bn_kv_layer *kv, int64_t seq_stride, const bn_attn_shape *s,
                                const float *q, const float *k, const float *v, int n_tok, const int32_t *seq,
                                const int32_t *pos, float *out) {
    cpu_backend *c = cpu(be);
    /* Every store first: a token attends over keys of earlier tokens of its
     * sequence in the same batch. */
    for (int t = 0; t < n_tok; t++) kv_store(c, kv, s, k, v, t, (int64_t)seq[t] * seq_stride, pos[t]);
    if (!ensure_scratch(c, (size_t)s->n_ctx)) abort(); /* sized at context creation */
    attn_job j = {.c = c, .kv = kv, .s = s, .q = q, .n_tok = n_tok, .seq_stride = seq_stride, .seq = seq, .pos = pos,
                  .out = out};
    if (use_tiles(c, s, 1, s->n_ctx)) {
        bn_threadpool_run(c->pool, n_tok * s->n_head_kv, attn_batch_tile_task, &j);
        return;
    }
    bn_threadpool_run(c->pool, n_tok * s->n_head, attn_batch_task, &j);
}

/* Element-wise ops over a whole prompt (128 × 6912 floats for 2B4T's GLU)
 * are worth splitting: on one thread they were 8 % of pp128 on a 2-core
 * box, with the other core idle. Chunks of EW_CHUNK floats (a few L1-sized
 * pieces per thread); small vectors (decode) stay on the caller. The
 * element function is the same either way, so results do not depend on the
 * split. */
#define EW_CHUNK 8192

typedef struct ew_job {
    float *x;
    const float *y;
    int64_t n;
    int glu;         /* 1: x = act(x)·y; 0: x += y */
    bn_glu_act act;
} ew_job;

static void glu_span(float *g, const float *u, int64_t n, bn_glu_act act) {
    if (act == BN_GLU_RELU2)
        for (int64_t i = 0; i < n; i++) { float r = g[i] > 0 ? g[i] : 0.0f; g[i] = r * r * u[i]; }
    else
        for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static void add_span(float *x, const float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] += y[i];
}

static void ew_task(void *ctx, int i, int thread) {
    (void)thread;
    ew_job *j = ctx;
    int64_t o = (int64_t)i * EW_CHUNK, n = j->n - o < EW_CHUNK ? j->n - o : EW_CHUNK;
    if (j->glu) glu_span(j->x + o, j->y + o, n, j->act);
    else add_span(j->x + o, j->y + o, n);
}

static void run_elementwise(cpu_backend *c, ew_job *j) {
    int64_t chunks = (j->n + EW_CHUNK - 1) / EW_CHUNK;
    if (chunks >= 2 && bn_threadpool_size(c->pool) > 1) bn_threadpool_run(c->pool, (int)chunks, ew_task, j);
    else if (j->glu) glu_span(j->x, j->y, j->n, j->act);
    else add_span(j->x, j->y, j->n);
}

static void cpu_glu(bn_backend *be, float *g, const float *u, int64_t n, bn_glu_act act) {
    ew_job j = {.x = g, .y = u, .n = n, .glu = 1, .act = act};
    run_elementwise(cpu(be), &j);
}

static void cpu_add(bn_backend *be, float *x, const float *y, int64_t n) {
    ew_job j = {.x = x, .y = y, .n = n, .glu = 0};
    run_elementwise(cpu(be), &j);
}

static void cpu_to_host(bn_backend *be, void *dst, const void *src, size_t n) {
    (void)be;
    if (dst != src) memcpy(dst, src, n);
}

static void cpu_argmax(bn_backend *be, const float *x, int n_rows, int n_cols, int32_t *out_host) {
    (void)be;
    for (int r = 0; r < n_rows; r++) out_host[r] = bn_argmax_ref(x + (int64_t)r * n_cols, n_cols);
}

static void cpu_destroy(bn_backend *be) {
    cpu_backend *c = cpu(be);
    if (c->scratch)
        for (int i = 0; i < bn_threadpool_size(c->pool); i++) free(c->scratch[i]);
    free(c->scratch);
    if (c->tile)
        for (int i = 0; i < bn_threadpool_size(c->pool); i++) free(c->tile[i]);
    free(c->tile);
    free(c->rope_cs);
    bn_threadpool_free(c->pool);
    free(c);
}

static const bn_backend_ops cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .kv_elem_size = sizeof(uint16_t), /* f16 cache */
    .prepare_model = NULL,
    .embed = cpu_embed,
    .rmsnorm = cpu_rmsnorm,
    .quantize = cpu_quantize,
    .matmul_ternary = cpu_matmul_ternary,
    .matmul_dense = cpu_matmul_dense,
    .rope = cpu_rope,
    .attention = cpu_attention,
    .rope_batch = cpu_rope_batch,
    .attention_batch = cpu_attention_batch,
    .glu = cpu_glu,
    .add = cpu_add,
    .to_host = cpu_to_host,
    .argmax = cpu_argmax,
};

bitnet_status bn_backend_cpu_reserve(bn_backend *be, size_t max_row_floats, bitnet_error *err) {
    if (!ensure_scratch(cpu(be), max_row_floats)) return bn_fail(err, BITNET_E_NOMEM, "out of memory for CPU scratch");
    return BITNET_OK;
}

const char *bn_backend_cpu_kernels_name(const bn_backend *be) { return ((const cpu_backend *)be)->k->name; }

bitnet_status bn_backend_cpu_create(bn_backend **out, int n_threads, bitnet_error *err) {
    cpu_backend *c = calloc(1, sizeof *c);
    if (!c) return bn_fail(err, BITNET_E_NOMEM, "out of memory");
    c->base.ops = &cpu_ops;
    c->k = bn_cpu_kernels_select();
    c->pool = bn_threadpool_create(n_threads > 0 ? n_threads : bn_physical_cores());
    c->scratch = c->pool ? calloc((size_t)bn_threadpool_size(c->pool), sizeof *c->scratch) : NULL;
    if (!c->pool || !c->scratch) {
        bn_threadpool_free(c->pool);
        free(c);
        return bn_fail(err, BITNET_E_NOMEM, "cannot start the CPU thread pool");
    }
    *out = &c->base;
    return BITNET_OK;
}
