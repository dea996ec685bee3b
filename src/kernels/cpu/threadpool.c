/* Persistent worker pool with a spinning start/finish handshake.
 *
 * A decode step of 2B4T runs ~250 parallel ops; waking workers through a
 * condition variable for each costs tens of microseconds (a futex round trip
 * per worker), a visible share of a ~50 ms token. So workers spin on a
 * generation counter for a while after each job and only then sleep on the
 * condition variable. When the pool has more threads than the machine has
 * CPUs, spinning would steal time from the threads doing work, so workers
 * sleep at once.
 *
 * Tasks are claimed from one 64-bit word holding (generation, n_tasks, next
 * index), so a worker that wakes late can never claim a task of a newer job
 * with the stale job's function; and the caller waits only for the tasks that
 * were claimed, never for a worker that has not woken up yet (on a busy
 * machine a descheduled worker would otherwise stall every op).
 *
 * Wake-up without lost signals: a worker that wants to sleep increments
 * `sleepers` and then re-reads `generation` under the lock; the poster
 * increments `generation` and then reads `sleepers` (both sequentially
 * consistent), so at least one of them sees the other's write. */
#include "kernels/cpu/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

/* How long an idle worker spins before sleeping. */
#define SPIN_NS 2000000L
/* Most tasks in one job (16 bits of the work word). */
#define MAX_TASKS 65535

struct bn_threadpool {
    int n_threads;
    int spin; /* 0 when oversubscribed */
    pthread_t *threads;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    atomic_uint generation;  /* changes when a job is posted or on quit */
    atomic_int sleepers;
    atomic_int quit;
    _Alignas(64) atomic_uint_fast64_t work; /* generation << 32 | n_tasks << 16 | next task */
    _Alignas(64) atomic_int done;           /* tasks finished in the current job */
    /* The current job: written before `work` is published, read only by a
     * thread that has claimed one of its tasks (the job cannot end before
     * that task does). */
    bn_task_fn fn;
    void *ctx;
};

typedef struct worker_arg {
    bn_threadpool *pool;
    int index;
} worker_arg;

static long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* Claims and runs tasks of job `gen` until none is left. */
static void run_tasks(bn_threadpool *p, unsigned gen, int thread) {
    uint_fast64_t w = atomic_load_explicit(&p->work, memory_order_acquire);
    for (;;) {
        unsigned n = (unsigned)(w >> 16) & 0xFFFF, t = (unsigned)w & 0xFFFF;
        if ((unsigned)(w >> 32) != gen || t >= n) return;
        if (!atomic_compare_exchange_weak_explicit(&p->work, &w, w + 1, memory_order_acq_rel, memory_order_acquire))
            continue;
        p->fn(p->ctx, (int)t, thread);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
        w = atomic_load_explicit(&p->work, memory_order_acquire);
    }
}

/* Returns the new generation once it differs from `seen`. */
static unsigned wait_for_job(bn_threadpool *p, unsigned seen) {
    unsigned g;
    if (p->spin) {
        long deadline = now_ns() + SPIN_NS;
        for (unsigned i = 1;; i++) {
            if ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) != seen) return g;
            cpu_relax();
            if ((i & 1023) == 0 && now_ns() > deadline) break;
        }
    }
    pthread_mutex_lock(&p->lock);
    atomic_fetch_add(&p->sleepers, 1);
    while ((g = atomic_load(&p->generation)) == seen) pthread_cond_wait(&p->wake, &p->lock);
    atomic_fetch_sub(&p->sleepers, 1);
    pthread_mutex_unlock(&p->lock);
    return g;
}

static void *worker_main(void *arg) {
    worker_arg wa = *(worker_arg *)arg;
    free(arg);
    bn_threadpool *p = wa.pool;
    unsigned seen = 0;
    for (;;) {
        seen = wait_for_job(p, seen);
        if (atomic_load(&p->quit)) break;
        run_tasks(p, seen, wa.index);
    }
    return NULL;
}

static void publish(bn_threadpool *p, unsigned gen) {
    atomic_store(&p->generation, gen);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->lock);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);
    }
}

bn_threadpool *bn_threadpool_create(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    bn_threadpool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    p->n_threads = n_threads;
    p->spin = cpus < 1 || n_threads <= cpus;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) {
        pthread_cond_destroy(&p->wake);
        pthread_mutex_destroy(&p->lock);
        free(p);
        return NULL;
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (wa) wa->pool = p, wa->index = i;
        if (!wa || pthread_create(&p->threads[i], NULL, worker_main, wa)) {
            free(wa);
            p->n_threads = i; /* only the threads started so far */
            bn_threadpool_free(p);
            return NULL;
        }
    }
    return p;
}

void bn_threadpool_free(bn_threadpool *p) {
    if (!p) return;
    atomic_store(&p->quit, 1);
    publish(p, atomic_load(&p->generation) + 1);
    for (int i = 1; i < p->n_threads; i++) pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    free(p->threads);
    free(p);
}

int bn_threadpool_size(const bn_threadpool *p) { return p->n_threads; }

typedef struct slice {
    bn_task_fn fn;
    void *ctx;
    int base;
} slice;

static void slice_task(void *ctx, int task, int thread) {
    slice *s = ctx;
    s->fn(s->ctx, s->base + task, thread);
}

static void run_serial(int n_tasks, bn_task_fn fn, void *ctx) {
    for (int t = 0; t < n_tasks; t++) fn(ctx, t, 0);
}

void bn_threadpool_run(bn_threadpool *p, int n_tasks, bn_task_fn fn, void *ctx) {
    if (n_tasks <= 0) return;
    if (p->n_threads == 1 || n_tasks == 1) {
        run_serial(n_tasks, fn, ctx);
        return;
    }
    /* Jobs of more tasks than the work word holds run in slices. */
    if (n_tasks > MAX_TASKS) {
        for (int base = 0; base < n_tasks; base += MAX_TASKS) {
            slice sl = {fn, ctx, base};
            bn_threadpool_run(p, n_tasks - base < MAX_TASKS ? n_tasks - base : MAX_TASKS, slice_task, &sl);
        }
        return;
    }
    unsigned gen = atomic_load(&p->generation) + 1;
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    atomic_store_explicit(&p->work, (uint_fast64_t)gen << 32 | (uint_fast64_t)n_tasks << 16, memory_order_release);
    publish(p, gen);
    run_tasks(p, gen, 0);
    /* Wait for tasks other threads claimed; yield if that takes long (the
     * machine may be shared, and the thread we wait for may need this CPU). */
    for (unsigned i = 1; atomic_load_explicit(&p->done, memory_order_acquire) < n_tasks; i++) {
        if (p->spin && i < 20000) cpu_relax();
        else sched_yield();
    }
}

int bn_physical_cores(void) {
    long logical = sysconf(_SC_NPROCESSORS_ONLN);
    if (logical < 1) logical = 1;
    /* SMT siblings share a core's load/store bandwidth, which is what ternary
     * decode is bound by: count cores, not hardware threads. */
    int smt = 1;
    FILE *f = fopen("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list", "r");
    if (f) {
        char buf[64] = {0};
        if (fgets(buf, sizeof buf, f)) {
            int a, b;
            if (sscanf(buf, "%d-%d", &a, &b) == 2 && b > a) smt = b - a + 1;
            else if (strchr(buf, ',')) smt = 2;
        }
        fclose(f);
    }
    long cores = logical / smt;
    return cores < 1 ? 1 : (int)cores;
}
