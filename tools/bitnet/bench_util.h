/* Helpers shared by `bitnet bench` and `bitnet perplexity`: a clock, Ctrl-C
 * as a flag, process memory, a memory-read bandwidth probe, small statistics,
 * and the per-operation profile table (which `bitnet run --profile` can use
 * too). */
#ifndef BITNET_BENCH_UTIL_H
#define BITNET_BENCH_UTIL_H

#include <stdint.h>
#include <stdio.h>

#include "bitnet.h"

/* Monotonic time in seconds. */
double bench_now(void);

/* User + system CPU seconds of the whole process (every thread). */
double bench_cpu_seconds(void);

/* Sleeps `us` microseconds (0: returns at once). */
void bench_sleep_us(double us);

/* Ctrl-C (and SIGTERM) set a flag that long loops check, so that an
 * interrupted run still prints what it measured. */
void bench_signals_install(void);
void bench_signals_restore(void);
int bench_interrupted(void);

/* Progress on stderr: on a terminal one line rewritten in place, in a log one
 * line per call with `final` set (intermediate calls are dropped). */
void bench_progress(int final, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Ends a rewritten progress line (no-op when none is open). */
void bench_progress_end(void);

/* Process memory from /proc/self: current and peak resident set, and the
 * resident pages of mappings whose file path starts with `model_path`
 * (mapped weights; 0 when none). Returns 0 when /proc is unreadable. */
typedef struct bench_mem {
    uint64_t rss, peak_rss, model_rss;
} bench_mem;
int bench_read_mem(const char *model_path, bench_mem *out);

/* Cores, not hardware threads (the engine's default thread count). */
/* Last-level cache size in bytes (a guess of 32 MiB when unknown). */
uint64_t bench_llc_bytes(void);
/* "AMD EPYC ..." from /proc/cpuinfo, or "unknown". Static buffer. */
const char *bench_cpu_model(void);

/* Read bandwidth in bytes/s: `threads` threads each stream a disjoint slice
 * of a `bytes` buffer; best of several passes. 0 on failure. */
double bench_read_bandwidth(int threads, uint64_t bytes);

/* Statistics. bench_sd is the sample standard deviation (0 for n < 2).
 * bench_percentile sorts v in place and returns the nearest-rank percentile. */
double bench_mean(const double *v, int n);
double bench_sd(const double *v, int n);
double bench_percentile(double *v, int n, double pct);

/* The profile as a table: seconds, share of `wall_s` and calls per operation
 * class, then sampling (`sampling_s` < 0: not measured) and the time no class
 * accounts for. */
void bench_print_profile(FILE *f, const bitnet_profile *p, double sampling_s, double wall_s);

/* Human-readable byte counts ("1.13 GiB"); returns buf. */
char *bench_fmt_bytes(char *buf, size_t cap, double bytes);

#endif
