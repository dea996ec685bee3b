/* The worker pool runs every task exactly once per job, with thread indices
 * in range, across many back-to-back jobs (the spinning handshake), after the
 * workers have gone to sleep (the condition-variable path), and with more
 * threads than CPUs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "kernels/cpu/threadpool.h"

#define MAX_TASKS 257

typedef struct job {
    atomic_int hits[MAX_TASKS];
    atomic_int bad_thread;
    int n_threads;
} job;

static void count_task(void *ctx, int task, int thread) {
    job *j = ctx;
    atomic_fetch_add(&j->hits[task], 1);
    if (thread < 0 || thread >= j->n_threads) atomic_store(&j->bad_thread, 1);
}

static void big_task(void *ctx, int task, int thread) {
    (void)thread;
    atomic_fetch_add(&((atomic_int *)ctx)[task], 1);
}

static void run_and_check(bn_threadpool *p, int n_tasks) {
    job j;
    memset(&j, 0, sizeof j);
    j.n_threads = bn_threadpool_size(p);
    bn_threadpool_run(p, n_tasks, count_task, &j);
    for (int t = 0; t < n_tasks; t++)
        if (atomic_load(&j.hits[t]) != 1) fail_msg("task %d of %d ran %d times", t, n_tasks, atomic_load(&j.hits[t]));
    for (int t = n_tasks; t < MAX_TASKS; t++) assert_int_equal(atomic_load(&j.hits[t]), 0);
    assert_int_equal(atomic_load(&j.bad_thread), 0);
}

static void test_pool(void **state) {
    (void)state;
    const int threads[] = {1, 2, 3, 8}; /* 8 oversubscribes a small machine */
    for (size_t i = 0; i < sizeof threads / sizeof threads[0]; i++) {
        bn_threadpool *p = bn_threadpool_create(threads[i]);
        assert_non_null(p);
        assert_int_equal(bn_threadpool_size(p), threads[i]);
        for (int rep = 0; rep < 2000; rep++) run_and_check(p, 1 + rep % MAX_TASKS);
        /* Let the workers fall asleep, then make sure they wake. */
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
        run_and_check(p, 64);
        nanosleep(&ts, NULL);
        run_and_check(p, 3);
        bn_threadpool_free(p);
    }
    /* A job larger than one claim word holds runs in slices. */
    bn_threadpool *p = bn_threadpool_create(2);
    static atomic_int big[70000];
    bn_threadpool_run(p, 70000, big_task, big);
    for (int t = 0; t < 70000; t++) assert_int_equal(atomic_load(&big[t]), 1);
    bn_threadpool_free(p);
    assert_true(bn_physical_cores() >= 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_pool)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
