/* A persistent pool of worker threads for data-parallel loops.
 * Workers are created once and sleep between jobs; the calling thread takes
 * part in every job, so a pool of n threads has n - 1 workers. */
#ifndef BN_KERNELS_CPU_THREADPOOL_H
#define BN_KERNELS_CPU_THREADPOOL_H

typedef struct bn_threadpool bn_threadpool;

/* fn(ctx, task, thread) is called once for every task in [0, n_tasks);
 * `thread` in [0, n_threads) identifies the caller (for per-thread scratch). */
typedef void (*bn_task_fn)(void *ctx, int task, int thread);

bn_threadpool *bn_threadpool_create(int n_threads); /* NULL on failure */
void bn_threadpool_free(bn_threadpool *pool);
int bn_threadpool_size(const bn_threadpool *pool);

/* Runs the tasks and returns when all are done. */
void bn_threadpool_run(bn_threadpool *pool, int n_tasks, bn_task_fn fn, void *ctx);

/* Physical cores of this machine (logical CPUs / SMT width), at least 1. */
int bn_physical_cores(void);

#endif
