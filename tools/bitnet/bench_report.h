/* Results of `bitnet bench`: what one run measured, how it is printed (table,
 * JSON, CSV), and the comparison with a stored baseline. */
#ifndef BITNET_BENCH_REPORT_H
#define BITNET_BENCH_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include "bitnet.h"

typedef enum bench_status { BENCH_OK = 0, BENCH_SKIPPED = 1, BENCH_INTERRUPTED = 2, BENCH_NOT_RUN = 3 } bench_status;

/* One test at one thread count and batch size. */
typedef struct bench_row {
    char test[24];          /* "pp512", "tg128" */
    int is_gen;             /* 1: token-by-token generation, 0: prompt processing */
    int n_tokens;           /* tokens per repetition */
    int threads, batch;
    bench_status status;
    char note[96];          /* why skipped, ... */
    int reps;               /* completed repetitions */
    double tok_s_mean, tok_s_sd;
    double ms_p50, ms_p95, ms_p99; /* per generated token (eval + sampling); 0 for pp */
    double bytes_per_token; /* tg: weights + average KV cache read per token */
    double read_bw;         /* bytes/s of the probe at this thread count; 0 = not probed */
    int has_profile;
    bitnet_profile prof;
    double sampling_s, wall_s; /* profile: sampling time and the timed total */
    double slept_s;         /* BITNET_TEST_DELAY_US sleeps inside the timing */
    double cpu_share;       /* CPU time the process got / (threads × wall time): well
                               below 1 when other processes took the CPUs */
} bench_row;

typedef struct bench_result {
    const char *model_path, *model_name, *arch, *head, *cpu, *version;
    char device[48];        /* bitnet_context_device: "cpu/avx2", "cuda:0" */
    int64_t n_params;
    uint64_t file_bytes;
    int n_ctx;
    uint64_t peak_rss, model_rss, head_copy, kv_bytes, base_footprint; /* 0 = unknown */
    uint64_t probe_bytes, llc_bytes;
    double delay_us;        /* BITNET_TEST_DELAY_US in effect */
    int profiled, interrupted;
    bench_row *rows;
    int n_rows;
} bench_result;

void bench_print_table(FILE *f, const bench_result *r);
void bench_print_csv(FILE *f, const bench_result *r);
/* Writes the JSON document; returns 0 on success. */
int bench_write_json(FILE *f, const bench_result *r);

/* Compares r's rows with those of the baseline JSON at `path` and prints the
 * comparison. A row regresses when its mean tok/s is below the baseline's by
 * more than `tolerance` (a fraction) AND by more than BENCH_NOISE_SDS combined
 * standard deviations. Returns the number of regressions, or -1 when the file
 * cannot be used (message printed). */
#define BENCH_NOISE_SDS 3.0
/* Below this CPU share a row is marked as measured on a busy machine. */
#define BENCH_BUSY_SHARE 0.85
int bench_compare(FILE *f, const bench_result *r, const char *path, double tolerance);

#endif
