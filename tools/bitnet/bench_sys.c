/* bench_util.h: clock, signals, progress, process memory, CPU facts and the
 * read-bandwidth probe. */
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double bench_cpu_seconds(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0.0;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec * 1e-6;
}

void bench_sleep_us(double us) {
    if (us <= 0) return;
    struct timespec ts = {(time_t)(us / 1e6), (long)((us - (double)(time_t)(us / 1e6) * 1e6) * 1e3)};
    while (nanosleep(&ts, &ts) != 0 && !bench_interrupted()) {
    }
}

static volatile sig_atomic_t interrupted;

static void on_signal(int sig) {
    (void)sig;
    interrupted = 1;
}

void bench_signals_install(void) {
    interrupted = 0;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
}

void bench_signals_restore(void) {
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
}

int bench_interrupted(void) { return interrupted != 0; }

static int progress_open = -1; /* -1: not yet known whether stderr is a terminal */
static int progress_tty;

void bench_progress(int final, const char *fmt, ...) {
    if (progress_open < 0) {
        progress_tty = isatty(STDERR_FILENO);
        progress_open = 0;
    }
    if (!progress_tty && !final) return;
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (progress_tty) {
        fprintf(stderr, "\r%-78.78s", line);
        progress_open = 1;
    } else {
        fprintf(stderr, "%s\n", line);
    }
    fflush(stderr);
}

void bench_progress_end(void) {
    if (progress_open == 1) fputc('\n', stderr);
    progress_open = progress_open < 0 ? -1 : 0;
}

/* Mapping headers start with "start-end perms": hex digits, then '-'. */
static int is_map_header(const char *line) {
    size_t hex = strspn(line, "0123456789abcdef");
    return hex > 0 && line[hex] == '-';
}

/* Adds the "Rss:" lines of the mappings whose path starts with prefix. */
static uint64_t mapped_rss(const char *prefix) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return 0;
    char line[PATH_MAX + 256];
    size_t plen = strlen(prefix);
    int in_model = 0;
    uint64_t total = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long long kb;
        char *path = strchr(line, '/');
        if (is_map_header(line)) {
            in_model = path && !strncmp(path, prefix, plen);
        } else if (in_model && sscanf(line, "Rss: %llu kB", &kb) == 1) {
            total += (uint64_t)kb * 1024;
        }
    }
    fclose(f);
    return total;
}

int bench_read_mem(const char *model_path, bench_mem *out) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    unsigned long long kb;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "VmRSS: %llu kB", &kb) == 1) out->rss = (uint64_t)kb * 1024;
        else if (sscanf(line, "VmHWM: %llu kB", &kb) == 1) out->peak_rss = (uint64_t)kb * 1024;
    }
    fclose(f);
    char real[PATH_MAX];
    if (model_path && realpath(model_path, real)) out->model_rss = mapped_rss(real);
    return out->rss > 0;
}


/* Size of the highest cache level cpu0 has in sysfs ("32768K"), or 0. */
static uint64_t sysfs_llc(void) {
    uint64_t best = 0;
    int best_level = 0;
    for (int i = 0; i < 8; i++) {
        char path[96], buf[32];
        int level = 0;
        unsigned long long size = 0;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        int ok = fscanf(f, "%d", &level) == 1;
        fclose(f);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        if (!ok || !(f = fopen(path, "r"))) continue;
        if (fgets(buf, sizeof buf, f) && sscanf(buf, "%llu", &size) == 1 && level > best_level) {
            best_level = level;
            best = (uint64_t)size * (strchr(buf, 'M') ? 1u << 20 : strchr(buf, 'K') ? 1u << 10 : 1u);
        }
        fclose(f);
    }
    return best;
}

uint64_t bench_llc_bytes(void) {
    /* sysfs gives the cache one core can use; glibc may report a whole
     * socket's L3 (every chiplet's slice added up). */
    uint64_t s = sysfs_llc();
    long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE), l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    if (s) return s;
    if (l3 > 0) return (uint64_t)l3;
    if (l2 > 0) return (uint64_t)l2;
    return 32u << 20;
}

const char *bench_cpu_model(void) {
    static char name[128] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return name;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (!colon || (strncmp(line, "model name", 10) && strncmp(line, "Model", 5))) continue;
        colon += 1 + strspn(colon + 1, " \t");
        colon[strcspn(colon, "\n")] = '\0';
        if (*colon) snprintf(name, sizeof name, "%s", colon);
        break;
    }
    fclose(f);
    return name;
}

/* ------------------------------------------------------- bandwidth probe -- */

typedef uint64_t probe_vec __attribute__((vector_size(32)));

typedef struct probe_slice {
    const probe_vec *p;
    size_t n;
    uint64_t sum;
} probe_slice;

/* Four independent vector sums so that loads are not serialised behind one
 * dependency chain; the result is kept so that the reads cannot be dropped.
 * n counts 32-byte vectors. */
#define PROBE_LOOP(p, n, out)                                                     \
    do {                                                                          \
        probe_vec a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};                         \
        for (size_t i = 0; i + 4 <= (n); i += 4) {                                \
            a0 += (p)[i];                                                         \
            a1 += (p)[i + 1];                                                     \
            a2 += (p)[i + 2];                                                     \
            a3 += (p)[i + 3];                                                     \
        }                                                                         \
        a0 += a1 + a2 + a3;                                                       \
        (out) = a0[0] ^ a0[1] ^ a0[2] ^ a0[3];                                    \
    } while (0)

static uint64_t read_generic(const probe_vec *p, size_t n) {
    uint64_t r;
    PROBE_LOOP(p, n, r);
    return r;
}

#if defined(__x86_64__) && defined(__GNUC__)
/* 32-byte loads: with baseline SSE2 code one core falls well short of what
 * the memory system delivers, and the probe would flatter the engine. */
__attribute__((target("avx2"))) static uint64_t read_avx2(const probe_vec *p, size_t n) {
    uint64_t r;
    PROBE_LOOP(p, n, r);
    return r;
}
#endif

static void *probe_read(void *arg) {
    probe_slice *s = arg;
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("avx2")) {
        s->sum = read_avx2(s->p, s->n);
        return NULL;
    }
#endif
    s->sum = read_generic(s->p, s->n);
    return NULL;
}

/* Where the sums end up, so that the compiler must do the reads. */
volatile uint64_t probe_sink;

/* One pass: every thread reads its slice; returns the seconds or -1. */
static double probe_pass(const probe_vec *buf, size_t vecs, int threads, uint64_t *sink) {
    pthread_t tid[256];
    probe_slice sl[256];
    size_t per = vecs / (size_t)threads;
    double t0 = bench_now();
    int started = 0;
    for (int i = 0; i < threads; i++) {
        sl[i] = (probe_slice){buf + per * (size_t)i, per, 0};
        if (i > 0 && pthread_create(&tid[i], NULL, probe_read, &sl[i]) != 0) break;
        started = i + 1;
    }
    if (started > 0) probe_read(&sl[0]);
    for (int i = 1; i < started; i++) pthread_join(tid[i], NULL);
    double dt = bench_now() - t0;
    for (int i = 0; i < started; i++) *sink ^= sl[i].sum;
    return started == threads ? dt : -1.0;
}

double bench_read_bandwidth(int threads, uint64_t bytes) {
    if (threads < 1) threads = 1;
    if (threads > 256) threads = 256;
    size_t vecs = (size_t)(bytes / sizeof(probe_vec)) / (size_t)threads / 4 * 4 * (size_t)threads;
    probe_vec *buf = aligned_alloc(64, vecs * sizeof *buf);
    if (!buf) return 0.0;
    /* Distinct values: pages of zeros could all map one shared page. */
    uint64_t *w = (uint64_t *)buf;
    for (size_t i = 0; i < vecs * 4; i++) w[i] = i * 0x9E3779B97F4A7C15ull;
    uint64_t sink = 0;
    double best = 0.0, read = (double)vecs * sizeof *buf;
    /* Best of many passes: other processes on the machine only slow a pass. */
    for (int pass = 0; pass < 20 && !bench_interrupted(); pass++) {
        double dt = probe_pass(buf, vecs, threads, &sink);
        if (dt > 0 && read / dt > best) best = read / dt;
    }
    free(buf);
    probe_sink = sink;
    return best;
}

/* ------------------------------------------------------------ statistics -- */

double bench_mean(const double *v, int n) {
    double s = 0.0;
    for (int i = 0; i < n; i++) s += v[i];
    return n > 0 ? s / n : 0.0;
}

double bench_sd(const double *v, int n) {
    if (n < 2) return 0.0;
    double m = bench_mean(v, n), s = 0.0;
    for (int i = 0; i < n; i++) s += (v[i] - m) * (v[i] - m);
    return sqrt(s / (n - 1));
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_percentile(double *v, int n, double pct) {
    if (n <= 0) return 0.0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    int rank = (int)ceil(pct / 100.0 * n); /* nearest rank: 1..n */
    return v[rank < 1 ? 0 : (rank > n ? n - 1 : rank - 1)];
}

char *bench_fmt_bytes(char *buf, size_t cap, double b) {
    if (b >= 1024.0 * 1024 * 1024) snprintf(buf, cap, "%.2f GiB", b / (1024.0 * 1024 * 1024));
    else if (b >= 1024.0 * 1024) snprintf(buf, cap, "%.1f MiB", b / (1024.0 * 1024));
    else snprintf(buf, cap, "%.1f KiB", b / 1024.0);
    return buf;
}

void bench_print_profile(FILE *f, const bitnet_profile *p, double sampling_s, double wall_s) {
    double w = wall_s > 0 ? wall_s : 1e-12, accounted = 0.0;
    fprintf(f, "  %-16s %10s %7s %10s\n", "operation", "seconds", "share", "calls");
    for (int c = 0; c < BITNET_OP_COUNT; c++) {
        fprintf(f, "  %-16s %10.4f %6.1f%% %10llu\n", bitnet_op_class_name((bitnet_op_class)c), p->seconds[c],
                100.0 * p->seconds[c] / w, (unsigned long long)p->calls[c]);
        accounted += p->seconds[c];
    }
    if (sampling_s >= 0) {
        fprintf(f, "  %-16s %10.4f %6.1f%%\n", "sampling", sampling_s, 100.0 * sampling_s / w);
        accounted += sampling_s;
    }
    /* Whatever no class covers: logits copies, the API's checks, the timer itself. */
    fprintf(f, "  %-16s %10.4f %6.1f%%\n", "unaccounted", wall_s - accounted, 100.0 * (wall_s - accounted) / w);
    fprintf(f, "  %-16s %10.4f %6.1f%%\n", "total", wall_s, 100.0);
}
