/* A minimal stand-in for the parts of cmocka that tests/kernels use, for the
 * aarch64 cross build (neon_cross.sh), where no arm64 cmocka is installed.
 * Same semantics for those parts: a failed check prints its message and ends
 * the current test, which counts as failed; the exit status is the number of
 * failed tests. Not used by the native build. */
#ifndef BN_CROSS_CMOCKA_H
#define BN_CROSS_CMOCKA_H

#include <setjmp.h>
#include <stdio.h>
#include <string.h>

struct CMUnitTest {
    const char *name;
    void (*fn)(void **state);
};
#define cmocka_unit_test(f) {#f, f}

static jmp_buf bn_cross_jmp;

#define fail_msg(...)                                                                                                  \
    do {                                                                                                               \
        printf("ERROR: " __VA_ARGS__);                                                                                 \
        printf("\n[   LINE   ] --- %s:%d\n", __FILE__, __LINE__);                                                      \
        longjmp(bn_cross_jmp, 1);                                                                                      \
    } while (0)
#define assert_true(c)                                                                                                 \
    do {                                                                                                               \
        if (!(c)) fail_msg("%s", #c);                                                                                  \
    } while (0)
#define assert_int_equal(a, b)                                                                                         \
    do {                                                                                                               \
        long long bn_a_ = (long long)(a), bn_b_ = (long long)(b);                                                      \
        if (bn_a_ != bn_b_) fail_msg("%lld != %lld", bn_a_, bn_b_);                                                    \
    } while (0)
#define assert_ptr_equal(a, b) assert_true((const void *)(a) == (const void *)(b))
#define assert_non_null(a) assert_true((a) != NULL)
#define assert_null(a) assert_true((a) == NULL)
#define assert_string_equal(a, b) assert_true(strcmp((a), (b)) == 0)

static int bn_cross_run(const struct CMUnitTest *t, size_t n, int (*setup)(void **), int (*teardown)(void **)) {
    void *state = NULL;
    volatile int failed = 0;
    if (setup && setup(&state)) return 1;
    for (volatile size_t i = 0; i < n; i++) {
        printf("[ RUN      ] %s\n", t[i].name);
        fflush(stdout);
        if (setjmp(bn_cross_jmp) == 0) {
            t[i].fn(&state);
            printf("[       OK ] %s\n", t[i].name);
        } else {
            printf("[  FAILED  ] %s\n", t[i].name);
            failed++;
        }
    }
    if (teardown) teardown(&state);
    printf("[==========] %zu test(s) run, %d failed\n", n, failed);
    return failed;
}
#define cmocka_run_group_tests(t, setup, teardown) bn_cross_run(t, sizeof(t) / sizeof((t)[0]), setup, teardown)

#endif
