/* Benchmark of the CUDA backend on a random model with the shapes of
 * BitNet b1.58 2B4T (30 layers, 2560 hidden, 6912 FFN, 20/5 heads of 128,
 * vocab 128256, F16 tied head), built in memory (no file needed).
 *
 * Prints: the device-to-device copy bandwidth (the practical HBM ceiling,
 * bytes read + written), prefill pp512 tok/s, batch-1 decode tok/s (CUDA
 * graph on and off) with its share of the HBM roofline (bytes a token must
 * read: ternary codes, F16 head, KV cache, over the measured bandwidth), the
 * throughput of steps of B tokens of one sequence (B = 1, 8, 64, 256; the
 * weight-side proxy of batched decode), and batched decode proper: B
 * sequences (B = 1, 8, 64, 256) with 128-token prompts, each step one token
 * of every sequence (bn_forward_batch, every sequence's logits copied back,
 * then again with only each sequence's argmax: greedy decoding on the
 * device), as aggregate tok/s and time per step.
 *
 * Kernel figures (before the end-to-end ones): the output head for 8..256
 * tokens, the GEMV (previous kernel) against the tensor-core GEMM (ms,
 * TFLOP/s, head GB/s); the ternary matmuls of one layer (q, k, o, gate,
 * down, and q+k+v / gate+up as one call) for 8, 64, 256 and 1024 tokens: the
 * previous GEMM (128x64 tiles, one launch per matrix), what the backend runs
 * now (bn_k_ternary: the GEMV up to 8 tokens, else the GEMM with the tile
 * it picks) and each tile forced, in TOP/s (2 ops per weight and token).
 * Then prompt throughput of a random model with the kit model's shapes
 * (tiny-bitnet: 4 layers, 512 / 1536, 8 / 2 heads of 64, vocab 4096).
 *
 * usage: bench_cuda [--layers N] [--steps N] [--quick] [--decode-only]
 *                   [--batched-only B [--prompt P] [--tiles a,b,c,d/...]] [--kernels-only] [--kit-only]
 * (--decode-only: only the graph decode steps, for profilers; --batched-only:
 * only batched decode of B sequences after prompts of P <= 448 tokens (128),
 * likewise, and with --tiles again for each combination of GEMM tiles forced
 * per kind of launch (q/k/v, gate/up, o, down: bn_cuda_kernel_force_tiles);
 * --kernels-only: only the kernel figures; --kit-only: only the kit-shaped
 * prompts) */
#include <cuda_profiler_api.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda/synth_model.h"
#include "kernels/backend.h"
#include "kernels/cuda/cuda_backend.h"
#include "model/forward.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#define CK(x)                                                                                                         \
    do {                                                                                                              \
        cudaError_t e_ = (x);                                                                                         \
        if (e_ != cudaSuccess) {                                                                                      \
            fprintf(stderr, "bench_cuda: %s: %s\n", #x, cudaGetErrorString(e_));                                     \
            exit(1);                                                                                                  \
        }                                                                                                             \
    } while (0)

/* Host memory for logits: page-locked, as a context on the GPU keeps them
 * (the backend's host_alloc), so that copies back are measured as the engine
 * does them; plain malloc when that fails. */
static float *logits_alloc(size_t n) {
    void *p = NULL;
    if (cudaMallocHost(&p, n * sizeof(float)) != cudaSuccess) {
        cudaGetLastError();
        p = malloc(n * sizeof(float));
    }
    return p;
}

static void logits_free(float *p) {
    struct cudaPointerAttributes a;
    if (p && cudaPointerGetAttributes(&a, p) == cudaSuccess && a.type == cudaMemoryTypeHost)
        cudaFreeHost(p);
    else
        (void)cudaGetLastError(), free(p);
}

/* Device-to-device copy of 1 GiB: bytes read + written per second. */
static double copy_bandwidth(void) {
    size_t n = (size_t)1 << 30;
    void *a, *b;
    CK(cudaMalloc(&a, n));
    CK(cudaMalloc(&b, n));
    CK(cudaMemset(a, 1, n));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    double t[5];
    for (int i = 0; i < 6; i++) {
        CK(cudaEventRecord(e0, 0));
        CK(cudaMemcpy(b, a, n, cudaMemcpyDeviceToDevice));
        CK(cudaEventRecord(e1, 0));
        CK(cudaEventSynchronize(e1));
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        if (i) t[i - 1] = ms * 1e-3;
    }
    cudaFree(a), cudaFree(b);
    cudaEventDestroy(e0), cudaEventDestroy(e1);
    return 2.0 * n / median(t, 5);
}

typedef struct bench {
    bitnet_model m;
    bn_backend *be;
    bn_forward_state st;
    int32_t *tok;
    float *logits;
} bench;

/* Seconds per forward of n tokens at position pos (median of reps). */
static double time_forward(bench *b, int n, int pos, bn_logits_want want, int reps) {
    double t[16];
    bn_forward(&b->m, b->be, &b->st, b->tok, n, pos, want, b->logits); /* warm-up */
    /* BENCH_PROFILE_N=n: a profiler (ncu --profile-from-start off) sees one forward of n tokens. */
    const char *pn = getenv("BENCH_PROFILE_N");
    int prof = pn && atoi(pn) == n && want == BN_LOGITS_LAST;
    for (int i = 0; i < reps; i++) {
        if (prof && i == 0) cudaProfilerStart();
        double t0 = now_s();
        bn_forward(&b->m, b->be, &b->st, b->tok, n, pos, want, b->logits);
        t[i] = now_s() - t0;
        if (prof && i == 0) cudaProfilerStop();
    }
    return median(t, reps);
}

/* Decode: `steps` single-token steps from position pos0; tokens per second. */
static double time_decode(bench *b, int pos0, int steps) {
    for (int i = 0; i < 4; i++) bn_forward(&b->m, b->be, &b->st, b->tok + i, 1, pos0 + i, BN_LOGITS_LAST, b->logits);
    double t0 = now_s();
    for (int i = 0; i < steps; i++)
        bn_forward(&b->m, b->be, &b->st, b->tok + (i % 256), 1, pos0 + i, BN_LOGITS_LAST, b->logits);
    double t = now_s() - t0;
    bitnet_error err;
    if (b->be->ops->status && b->be->ops->status(b->be, &err) != BITNET_OK) {
        printf("decode FAILED: %s\n", err.message);
        return -1.0;
    }
    return steps / t;
}

static int make_backend_seq(bench *b, int graphs, int n_ctx, int n_batch, int n_seq) {
    bitnet_error err;
    if (!graphs) setenv("BITNET_CUDA_GRAPH", "0", 1);
    bitnet_status rc = bn_backend_cuda_create(&b->be, 0, &err);
    unsetenv("BITNET_CUDA_GRAPH");
    if (!rc) rc = b->be->ops->prepare_model(b->be, &b->m, &err);
    if (!rc) rc = bn_forward_state_init_seq(&b->st, &b->m, b->be, n_ctx, n_batch, n_seq, &err);
    if (rc) fprintf(stderr, "bench_cuda: %s\n", err.message);
    return rc == BITNET_OK;
}

static int make_backend(bench *b, int graphs, int n_ctx, int n_batch) {
    return make_backend_seq(b, graphs, n_ctx, n_batch, 1);
}

static void drop_backend(bench *b) {
    bn_forward_state_free(&b->st, &b->m, b->be);
    b->be->ops->destroy(b->be);
    b->be = NULL;
}

/* Batched decode of B sequences (a backend with n_seq >= B): each gets a
 * prompt of `prompt` tokens (one sequence per step, not timed), then `steps`
 * steps of one token per sequence, every sequence's logits copied back
 * (into page-locked memory, as a context's) or, with `greedy`, only each
 * sequence's argmax (the backend's argmax op: greedy decoding on the
 * device), which is then the sequence's next token.
 * Returns the aggregate tok/s (B * steps / time) and *ms the time per step;
 * -1 on a failure. */
static double time_batched_decode(bench *b, int B, int prompt, int steps, int greedy, double *ms) {
    int32_t *seq = malloc((size_t)B * sizeof *seq), *pos = malloc((size_t)B * sizeof *pos);
    int32_t *rows = malloc((size_t)B * sizeof *rows), *ppos = malloc((size_t)prompt * sizeof *ppos);
    int32_t *pseq = malloc((size_t)prompt * sizeof *pseq), *next = malloc((size_t)B * sizeof *next);
    double tps = -1.0;
    bitnet_error err;
    if (!seq || !pos || !rows || !ppos || !pseq || !next) goto done;
    memcpy(next, b->tok, (size_t)B * sizeof *next);
    for (int s = 0; s < B; s++) {
        for (int i = 0; i < prompt; i++) ppos[i] = i, pseq[i] = s;
        int32_t last = prompt - 1;
        bn_batch_step p = {prompt, b->tok + (s % 64), pseq, ppos, &last, 1, NULL};
        if (bn_forward_batch(&b->m, b->be, &b->st, &p, b->logits, &err)) goto fail;
    }
    for (int s = 0; s < B; s++) seq[s] = s, rows[s] = s;
    double t0 = 0.0;
    for (int i = -2; i < steps; i++) { /* two warm-up steps */
        if (i == 0) {
            t0 = now_s();
            if (getenv("BENCH_PROFILE")) cudaProfilerStart(); /* ncu --profile-from-start off: the timed steps */
        }
        for (int s = 0; s < B; s++) pos[s] = prompt + 2 + i;
        bn_batch_step d = {B, greedy ? next : b->tok + ((i + 2) % 256), seq, pos, rows, B, greedy ? next : NULL};
        if (bn_forward_batch(&b->m, b->be, &b->st, &d, b->logits, &err)) goto fail;
        for (int s = 0; greedy && s < B; s++)
            if (next[s] < 0 || next[s] >= b->m.hp.n_vocab) {
                snprintf(err.message, sizeof err.message, "argmax gave %d for sequence %d", next[s], s);
                goto fail;
            }
    }
    double t = now_s() - t0;
    if (getenv("BENCH_PROFILE")) cudaProfilerStop();
    if (b->be->ops->status && b->be->ops->status(b->be, &err) != BITNET_OK) goto fail;
    tps = (double)B * steps / t;
    *ms = 1e3 * t / steps;
    goto done;
fail:
    printf("batched decode FAILED: %s\n", err.message);
done:
    free(seq), free(pos), free(rows), free(ppos), free(pseq), free(next);
    return tps;
}

/* Device memory filled from host bytes (exits on failure: a benchmark). */
static void *dev_copy(bn_backend *be, const void *src, size_t n) {
    bitnet_error err;
    void *p = be->ops->alloc(be, n);
    if (!p) fprintf(stderr, "bench_cuda: out of GPU memory (%zu bytes)\n", n), exit(1);
    if (src && bn_cuda_copy_to_device(be, p, src, n, &err) != BITNET_OK)
        fprintf(stderr, "bench_cuda: %s\n", err.message), exit(1);
    return p;
}

/* The output head, 8..256 tokens: GEMV (previous) vs tensor-core GEMM. */
static void bench_head(bench *b, int quick) {
    const bn_hparams *hp = &b->m.hp;
    const bn_cuda_dense *d = (const bn_cuda_dense *)b->m.output.dev;
    int rows = hp->n_vocab, cols = hp->n_embd, max_t = 256;
    size_t nx = (size_t)max_t * cols;
    float *x = malloc(nx * sizeof *x);
    uint64_t s = 99;
    for (size_t i = 0; i < nx; i++) x[i] = synth_uniform(&s);
    size_t scratch_bytes = bn_cuda_kernel_dense_scratch(max_t, cols);
    float *gx = dev_copy(b->be, x, nx * sizeof *x);
    float *gy = dev_copy(b->be, NULL, (size_t)max_t * rows * sizeof(float));
    void *scratch = dev_copy(b->be, NULL, scratch_bytes);
    double head_bytes = (double)rows * d->row_bytes;
    for (int i = 0; i < 5; i++) {
        int n = (int[]){8, 16, 32, 64, 256}[i];
        float ms_v = 0, ms_m = 0, ms_s = 0;
        int r1 = bn_cuda_kernel_dense(1, d->type, d->data, d->row_bytes, rows, cols, gx, n, gy, scratch, scratch_bytes,
                                      n >= 64 || quick ? 2 : 5, &ms_v);
        int r2 = bn_cuda_kernel_dense(2, d->type, d->data, d->row_bytes, rows, cols, gx, n, gy, scratch, scratch_bytes,
                                      quick ? 5 : 20, &ms_m);
        int r3 = bn_cuda_kernel_dense(3, d->type, d->data, d->row_bytes, rows, cols, gx, n, gy, scratch, scratch_bytes,
                                      quick ? 5 : 20, &ms_s);
        if (r1 || r2 || r3) {
            printf("head %d tokens: FAILED (CUDA error %d / %d / %d)\n", n, r1, r2, r3);
            continue;
        }
        double flop = 2.0 * n * (double)rows * cols;
        printf("head GEMM %d x %d x %d (tokens x vocab x hidden, F16): GEMV %.3f ms (%.1f TFLOP/s) | tensor-core GEMM "
               "%.3f ms (%.1f TFLOP/s, head read at %.0f GB/s) | %.1fx | mma.sync only %.3f ms (%.1f TFLOP/s)\n",
               n, rows, cols, ms_v, flop / ms_v * 1e-9, ms_m, flop / ms_m * 1e-9, head_bytes / ms_m * 1e-6,
               ms_v / ms_m, ms_s, flop / ms_s * 1e-9);
    }
    b->be->ops->free(b->be, gx), b->be->ops->free(b->be, gy), b->be->ops->free(b->be, scratch);
    free(x);
}

/* The ternary matmuls of layer 0, as one call each (fused ones together). */
static void bench_ternary(bench *b, int quick) {
    const bn_hparams *hp = &b->m.hp;
    const bn_layer *L = &b->m.layers[0];
    struct {
        const char *name;
        int n;
        const bn_ternary *w[3];
    } sh[] = {{"q 2560x2560", 1, {&L->wq}},        {"k 640x2560", 1, {&L->wk}},
              {"o 2560x2560", 1, {&L->wo}},        {"gate 6912x2560", 1, {&L->w_gate}},
              {"down 2560x6912", 1, {&L->w_down}}, {"q+k+v (one call)", 3, {&L->wq, &L->wk, &L->wv}},
              {"gate+up (one call)", 2, {&L->w_gate, &L->w_up}}};
    int max_t = 1024, max_c = hp->n_ff > hp->n_embd ? hp->n_ff : hp->n_embd, max_r = hp->n_ff;
    size_t nq = (size_t)max_t * max_c;
    int8_t *q = malloc(nq);
    float *sc = malloc(max_t * sizeof *sc);
    int32_t *sum = malloc(max_t * sizeof *sum);
    uint64_t s = 5;
    for (size_t i = 0; i < nq; i++) q[i] = (int8_t)(synth_rng(&s) >> 56);
    for (int t = 0; t < max_t; t++) sc[t] = 1.0f, sum[t] = 0;
    bn_qact a = {dev_copy(b->be, q, nq), dev_copy(b->be, sc, max_t * sizeof *sc),
                 dev_copy(b->be, sum, max_t * sizeof *sum)};
    float *gy[3];
    for (int i = 0; i < 3; i++) gy[i] = dev_copy(b->be, NULL, (size_t)max_t * max_r * sizeof(float));
    int n_tiles = bn_cuda_kernel_ternary_tiles();
    static const char *tiles[] = {"?",          "128x64",      "64x64",      "128x32",     "64x32",
                                  "128x64/k2",  "64x64/k2",    "128x32/k2",  "64x32/k2",   "128x32/k4",
                                  "64x64/k4",   "64x32/k4",    "wg128x128",  "wg128x64",   "wg64x128",
                                  "wg64x64",    "wg64x32",     "wg64x32/k2", "wg64x32/k4", "wg64x64/k2",
                                  "wg128x32",   "wg128x32/k2", "wg128x64/k2", "wg64x32/s8", "wg64x32/k2s6",
                                  "wg64x64/s6"};
    if (n_tiles > 25) n_tiles = 25;
    printf("wgmma tiles (wg...): %s\n",
           bn_cuda_kernel_wgmma_usable() ? "run" : "not usable here (they run the 128x64 mma.sync tile)");
    printf("ternary GEMM TOP/s (2 ops per weight x token; previous = 128x64 tiles, a launch per matrix; now = what "
           "bn_k_ternary runs; then each tile forced: rows x tokens [/kN: N k-groups of warps]):\n");
    for (size_t c = 0; c < sizeof sh / sizeof sh[0]; c++)
        for (int k = 0; k < 4; k++) { /* 1024 tokens: the kernel's rate on a large GEMM */
            int n_tok = (int[]){8, 64, 256, 1024}[k], rows[3], cols = (int)sh[c].w[0]->cols;
            const bn_cuda_ternary *wd[3];
            double ops = 0;
            for (int i = 0; i < sh[c].n; i++) {
                rows[i] = (int)sh[c].w[i]->rows;
                wd[i] = (const bn_cuda_ternary *)sh[c].w[i]->dev;
                ops += 2.0 * rows[i] * cols * n_tok;
            }
            float ms[27];
            int rc = 0;
            for (int v = 0; v <= n_tiles + 1 && !rc; v++)
                rc = bn_cuda_kernel_ternary(v, sh[c].n, wd, rows, gy, cols, &a, n_tok, quick ? 5 : 20, &ms[v]);
            if (rc) {
                printf("  %-20s %3d tokens: FAILED (CUDA error %d)\n", sh[c].name, n_tok, rc);
                continue;
            }
            int tile = bn_cuda_kernel_ternary_tile(sh[c].n, rows, cols, n_tok), best = 1;
            for (int v = 2; v <= n_tiles; v++)
                if (ms[v + 1] < ms[best + 1]) best = v;
            printf("  %-20s %3d tokens: previous %6.1f (%.1f us) | now %6.1f (%.1f us, %s) %.2fx | best tile %s %.1f "
                   "(%.1f us) | tiles",
                   sh[c].name, n_tok, ops / ms[1] * 1e-9, ms[1] * 1e3, ops / ms[0] * 1e-9, ms[0] * 1e3,
                   n_tok <= 8 ? "GEMV" : tiles[tile], ms[1] / ms[0], tiles[best], ops / ms[best + 1] * 1e-9,
                   ms[best + 1] * 1e3);
            for (int v = 1; v <= n_tiles; v++) printf(" %s %.1f", tiles[v], ops / ms[v + 1] * 1e-9);
            printf("\n");
        }
    b->be->ops->free(b->be, (void *)a.q), b->be->ops->free(b->be, (void *)a.scale);
    b->be->ops->free(b->be, (void *)a.sum);
    for (int i = 0; i < 3; i++) b->be->ops->free(b->be, gy[i]);
    free(q), free(sc), free(sum);
}

/* Batched prompts: S sequences of L tokens each (positions 0..L-1) in one
 * step, the last token's logits of each kept; the median time of `reps`
 * steps after one warm-up, -1 on a failure. */
static double time_prompt_batch(bench *b, int S, int L, int reps) {
    int n = S * L;
    int32_t *seq = malloc((size_t)n * sizeof *seq), *pos = malloc((size_t)n * sizeof *pos);
    int32_t *rows = malloc((size_t)S * sizeof *rows);
    double t[16], r = -1.0;
    bitnet_error err;
    if (!seq || !pos || !rows) goto done;
    for (int q = 0; q < S; q++) {
        for (int i = 0; i < L; i++) seq[q * L + i] = q, pos[q * L + i] = i;
        rows[q] = q * L + L - 1;
    }
    bn_batch_step st = {n, b->tok, seq, pos, rows, S, NULL};
    for (int i = -1; i < reps; i++) {
        double t0 = now_s();
        if (bn_forward_batch(&b->m, b->be, &b->st, &st, b->logits, &err)) {
            printf("batched prompts FAILED: %s\n", err.message);
            goto done;
        }
        if (i >= 0) t[i] = now_s() - t0;
    }
    if (b->be->ops->status && b->be->ops->status(b->be, &err) != BITNET_OK) {
        printf("batched prompts FAILED: %s\n", err.message);
        goto done;
    }
    r = median(t, reps);
done:
    free(seq), free(pos), free(rows);
    return r;
}

/* Prompt throughput of a random model with the kit model's shapes
 * (../shared/conformance/tiny-bitnet/config.json). One sequence of n tokens
 * per forward (a prompt of n tokens; see "batched decode" for several
 * sequences). */
static void bench_kit(int quick) {
    bn_hparams hp = {.n_vocab = 4096, .n_embd = 512, .n_layer = 4, .n_head = 8, .n_head_kv = 2, .head_dim = 64,
                     .n_ff = 1536, .n_ctx_train = 1024, .rms_eps = 1e-5f, .rope_theta = 500000.0f, .rope_neox = 1,
                     .has_sub_norms = 1, .ffn_act = BN_GLU_RELU2};
    bench k;
    memset(&k, 0, sizeof k);
    if (!synth_model_init(&k.m, &hp, 4242)) return (void)fprintf(stderr, "bench_cuda: out of memory\n");
    int max_b = 1024;
    k.tok = malloc((size_t)max_b * sizeof *k.tok);
    k.logits = logits_alloc((size_t)max_b * hp.n_vocab);
    uint64_t s = 11;
    for (int i = 0; i < max_b; i++) k.tok[i] = (int32_t)(synth_rng(&s) % (uint64_t)hp.n_vocab);
    if (make_backend(&k, 1, 1024, max_b)) {
        printf("kit-shaped model (tiny-bitnet shapes: 4 layers, 512 / 1536, 8 / 2 heads of 64, vocab 4096; random "
               "weights): prompt throughput, one sequence per forward from position 0\n");
        for (int i = 0; i < 4; i++) {
            int n = (int[]){128, 256, 512, 1024}[i];
            double tl = time_forward(&k, n, 0, BN_LOGITS_LAST, quick ? 3 : 9);
            double ta = time_forward(&k, n, 0, BN_LOGITS_ALL, quick ? 3 : 9);
            printf("  pp%-4d: %9.0f tok/s last logits only (%.3f ms) | %9.0f tok/s every token's logits copied back "
                   "(%.3f ms)\n",
                   n, n / tl, tl * 1e3, n / ta, ta * 1e3);
        }
        drop_backend(&k);
    }
    if (make_backend_seq(&k, 1, 1024, max_b, 64)) {
        printf("  batched prompts, one step of S sequences x L tokens from position 0, each sequence's last logits:\n");
        for (int i = 0; i < 4; i++) {
            int S = (int[]){4, 8, 16, 64}[i], L = (int[]){256, 128, 64, 16}[i];
            double t = time_prompt_batch(&k, S, L, quick ? 3 : 9);
            if (t > 0) printf("  %2d x %-4d: %9.0f tok/s (%.3f ms)\n", S, L, S * L / t, t * 1e3);
        }
        drop_backend(&k);
    }
    synth_model_free(&k.m);
    free(k.tok), logits_free(k.logits);
}

int main(int argc, char **argv) {
    bn_hparams hp = {.n_vocab = 128256, .n_embd = 2560, .n_layer = 30, .n_head = 20, .n_head_kv = 5, .head_dim = 128,
                     .n_ff = 6912, .n_ctx_train = 4096, .rms_eps = 1e-5f, .rope_theta = 500000.0f, .rope_neox = 1,
                     .has_sub_norms = 1, .ffn_act = BN_GLU_RELU2};
    int steps = 256, quick = 0, decode_only = 0, batched_only = 0, kernels_only = 0, kit_only = 0, prompt = 128;
    const char *sweep = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--layers") && i + 1 < argc) hp.n_layer = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick")) quick = 1, steps = 32;
        else if (!strcmp(argv[i], "--decode-only")) decode_only = 1;
        else if (!strcmp(argv[i], "--batched-only") && i + 1 < argc) batched_only = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--kernels-only")) kernels_only = 1;
        else if (!strcmp(argv[i], "--kit-only")) kit_only = 1;
        else if (!strcmp(argv[i], "--prompt") && i + 1 < argc) prompt = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tiles") && i + 1 < argc) sweep = argv[++i];
        else
            return fprintf(stderr, "usage: bench_cuda [--layers N] [--steps N] [--quick] [--decode-only] "
                                   "[--batched-only B [--prompt P] [--tiles a,b,c,d/...]] [--kernels-only] "
                                   "[--kit-only]\n"),
                   2;
    }
    if (prompt < 1 || prompt > 448 || steps < 1) return fprintf(stderr, "bench_cuda: bad --prompt or --steps\n"), 2;
    if (bn_cuda_device_count() == 0) return fprintf(stderr, "bench_cuda: no GPU\n"), 0;
    struct cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    double bw = copy_bandwidth();
    printf("device: %s, %d SMs; device-to-device copy %.0f GB/s (read + write)\n", prop.name,
           prop.multiProcessorCount, bw / 1e9);

    if (kit_only) {
        bench_kit(quick);
        return 0;
    }
    bench b;
    memset(&b, 0, sizeof b);
    double t0 = now_s();
    if (!synth_model_init(&b.m, &hp, 42)) return fprintf(stderr, "bench_cuda: out of memory\n"), 1;
    int max_b = 512, n_ctx = 4096;
    b.tok = malloc((size_t)max_b * sizeof *b.tok);
    b.logits = logits_alloc((size_t)256 * hp.n_vocab);
    uint64_t s = 7;
    for (int i = 0; i < max_b; i++) b.tok[i] = (int32_t)(synth_rng(&s) % (uint64_t)hp.n_vocab);
    printf("model: 2B4T shapes, %d layers, random weights (made in %.1f s)\n", hp.n_layer, now_s() - t0);
    t0 = now_s();
    if (!make_backend(&b, 1, n_ctx, max_b)) return 1;
    printf("upload: %.2f s\n", now_s() - t0);

    if (batched_only > 0) { /* for profilers: only batched decode steps */
        drop_backend(&b);
        int B = batched_only;
        if (B > 256 || !make_backend_seq(&b, 1, prompt + 2 + steps, max_b, B)) return 1;
        for (int greedy = sweep ? 1 : 0; greedy < 2; greedy++) {
            double ms = 0.0, t = time_batched_decode(&b, B, prompt, steps, greedy, &ms);
            printf("batched decode, %3d sequences at positions %d..%d, %s: %8.0f tok/s aggregate, %.2f ms per step\n",
                   B, prompt + 2, prompt + 1 + steps, greedy ? "argmax on the device" : "logits copied back", t, ms);
        }
        /* --tiles: the same greedy steps with GEMM tiles forced per kind of
         * launch (q/k/v, gate/up, o, down; see bn_cuda_kernel_force_tiles),
         * combinations separated by '/'. */
        for (const char *c = sweep; c && *c;) {
            int t4[4] = {0, 0, 0, 0};
            const char *e = c;
            for (int k = 0; k < 4 && *e && *e != '/'; k++) {
                t4[k] = atoi(e);
                while (*e && *e != ',' && *e != '/') e++;
                if (*e == ',') e++;
            }
            bn_cuda_kernel_force_tiles(t4);
            double ms = 0.0, t = time_batched_decode(&b, B, prompt, steps, 1, &ms);
            printf("  tiles %2d,%2d,%2d,%2d: %8.0f tok/s aggregate, %.3f ms per step\n", t4[0], t4[1], t4[2], t4[3], t,
                   ms);
            fflush(stdout);
            c = strchr(e, '/');
            c = c ? c + 1 : NULL;
        }
        bn_cuda_kernel_force_tiles(NULL);
        drop_backend(&b);
        synth_model_free(&b.m);
        free(b.tok), logits_free(b.logits);
        return 0;
    }
    if (!decode_only) {
        bench_head(&b, quick);
        bench_ternary(&b, quick);
        fflush(stdout);
    }
    if (kernels_only) {
        drop_backend(&b);
        synth_model_free(&b.m);
        free(b.tok), logits_free(b.logits);
        return 0;
    }

    if (decode_only) { /* for profilers: only decode steps; BENCH_LAYERS_BOTH=1 adds the other decode path */
        double t = time_decode(&b, 512, steps);
        int on = bn_cuda_layers_runs(b.be) > 0;
        printf("decode batch 1 (graph, %s): %.1f tok/s, %.3f ms/token\n",
               on ? "persistent layers kernel" : "per-layer launches", t, 1e3 / t);
        drop_backend(&b);
        if (getenv("BENCH_LAYERS_BOTH")) {
            setenv("BITNET_CUDA_LAYERS", on ? "0" : "1", 1);
            int ok = make_backend(&b, 1, n_ctx, max_b);
            unsetenv("BITNET_CUDA_LAYERS");
            if (!ok) return 1;
            t = time_decode(&b, 512, steps);
            printf("decode batch 1 (graph, %s): %.1f tok/s, %.3f ms/token\n",
                   bn_cuda_layers_runs(b.be) > 0 ? "persistent layers kernel" : "per-layer launches", t, 1e3 / t);
            drop_backend(&b);
        }
        synth_model_free(&b.m);
        free(b.tok), logits_free(b.logits);
        return 0;
    }
    double pp = time_forward(&b, 512, 0, BN_LOGITS_LAST, quick ? 2 : 5);
    printf("prefill pp512: %.1f ms, %.0f tok/s\n", pp * 1e3, 512 / pp);

    double weights = synth_weight_bytes(&hp);
    int pos0 = 512;
    double tg = time_decode(&b, pos0, steps);
    double pos_avg = pos0 + 4 + steps / 2.0;
    double kv = 2.0 * hp.n_layer * hp.n_head_kv * hp.head_dim * 2.0 * pos_avg;
    double roof = (weights + kv) / bw;
    printf("decode batch 1 (graph): %.1f tok/s, %.3f ms/token; roofline %.3f ms (%.0f MB/token at %.0f GB/s) -> "
           "%.0f%% of roofline (persistent layers kernel: %s)\n",
           tg, 1e3 / tg, roof * 1e3, (weights + kv) / 1e6, bw / 1e9, 100.0 * roof * tg,
           bn_cuda_layers_runs(b.be) > 0 ? "yes" : "no");

    for (int i = 0; i < 4; i++) {
        int B = (int[]){1, 8, 64, 256}[i];
        double tl = time_forward(&b, B, pos0, BN_LOGITS_LAST, quick ? 2 : 5);
        double ta = time_forward(&b, B, pos0, BN_LOGITS_ALL, quick ? 2 : 5);
        printf("one sequence, step of %3d tokens: %8.0f tok/s with every token's logits copied back (%.2f ms), "
               "%8.0f tok/s last logits only (%.2f ms)\n",
               B, B / ta, ta * 1e3, B / tl, tl * 1e3);
    }
    drop_backend(&b);

    /* Batched decode: B sequences of 128-token prompts, one token each per step. */
    for (int i = 0; i < 4; i++) {
        int B = (int[]){1, 8, 64, 256}[i], prompt = 128, bsteps = steps < 64 ? steps : 64;
        if (!make_backend_seq(&b, 1, prompt + 2 + bsteps, max_b, B)) return 1;
        for (int greedy = 0; greedy < 2; greedy++) {
            double ms = 0.0, t = time_batched_decode(&b, B, prompt, bsteps, greedy, &ms);
            if (t > 0)
                printf("batched decode, %3d sequences at positions %d..%d, %s: %8.0f tok/s aggregate, %.2f ms per "
                       "step\n",
                       B, prompt + 2, prompt + 1 + bsteps, greedy ? "argmax on the device" : "logits copied back", t,
                       ms);
        }
        drop_backend(&b);
    }

    if (!make_backend(&b, 0, n_ctx, max_b)) return 1;
    double tg_ng = time_decode(&b, pos0, steps / 2);
    printf("decode batch 1 (no graph): %.1f tok/s, %.3f ms/token\n", tg_ng, 1e3 / tg_ng);
    drop_backend(&b);

    /* The decode optimizations one at a time (graph on): programmatic
     * dependent launch, and the decode fusions (norm prologues in the
     * matmuls, one-launch attention); a longer context. */
    const char *vars[][2] = {{"BITNET_CUDA_LAYERS", "0"}, {"BITNET_CUDA_PDL", "0"}, {"BITNET_CUDA_FUSE", "0"},
                             {"BITNET_CUDA_PDL", "0"}};
    const char *names[] = {"per-layer launches (BITNET_CUDA_LAYERS=0)", "PDL off, per-layer launches",
                           "fusions off, per-layer launches", "PDL and fusions off, per-layer launches"};
    for (int v = 0; v < 4; v++) {
        setenv(vars[v][0], vars[v][1], 1);
        setenv("BITNET_CUDA_LAYERS", "0", 1); /* PDL and the fusions belong to the per-layer path */
        if (v == 3) setenv("BITNET_CUDA_FUSE", "0", 1);
        int ok = make_backend(&b, 1, n_ctx, max_b);
        unsetenv("BITNET_CUDA_PDL"), unsetenv("BITNET_CUDA_FUSE"), unsetenv("BITNET_CUDA_LAYERS");
        if (!ok) return 1;
        double t = time_decode(&b, pos0, steps);
        printf("decode batch 1 (graph, %s): %.1f tok/s, %.3f ms/token\n", names[v], t, 1e3 / t);
        drop_backend(&b);
    }
    if (!make_backend(&b, 1, n_ctx, max_b)) return 1;
    double tg_long = time_decode(&b, 3500, steps);
    double kv_long = 2.0 * hp.n_layer * hp.n_head_kv * hp.head_dim * 2.0 * (3504 + steps / 2.0);
    printf("decode batch 1 (graph) at positions 3500..%d: %.1f tok/s, %.3f ms/token (%.0f%% of its roofline)\n",
           3504 + steps, tg_long, 1e3 / tg_long, 100.0 * (weights + kv_long) / bw * tg_long);
    drop_backend(&b);

    /* GPU time per kind of launch (graphs off; the backend prints it when destroyed). */
    setenv("BITNET_CUDA_PROFILE", "1", 1);
    if (!make_backend(&b, 0, n_ctx, max_b)) return 1;
    unsetenv("BITNET_CUDA_PROFILE");
    time_decode(&b, pos0, 16);
    bn_forward(&b.m, b.be, &b.st, b.tok, 512, 0, BN_LOGITS_LAST, b.logits);
    fflush(stdout);
    drop_backend(&b);

    synth_model_free(&b.m);
    free(b.tok);
    logits_free(b.logits);
    bench_kit(quick);
    return 0;
}
