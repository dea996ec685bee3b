/* Helpers shared by the cmocka tests: a scratch folder per test program and
 * whole-file reads and writes. Include after <cmocka.h>. */
#ifndef BITNET_TEST_UTIL_H
#define BITNET_TEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The scratch folder: created by tu_setup (pass it to cmocka_run_group_tests),
 * removed with everything in it by tu_teardown. */
static char tu_dir[256];

static inline int tu_setup(void **state) {
    (void)state;
    snprintf(tu_dir, sizeof tu_dir, "/tmp/bitnet-test-XXXXXX");
    return mkdtemp(tu_dir) ? 0 : -1;
}

static inline int tu_teardown(void **state) {
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tu_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* "<scratch>/name"; the last 8 results stay valid. */
static inline const char *tu_path(const char *name) {
    static char p[8][320];
    static int k;
    k = (k + 1) % 8;
    snprintf(p[k], sizeof p[k], "%s/%s", tu_dir, name);
    return p[k];
}

static inline int tu_exists(const char *p) { return access(p, F_OK) == 0; }

/* The whole file in a malloc'd buffer of exactly its size (so ASan sees any
 * read past its end); fails the test when it cannot be read. */
static inline unsigned char *tu_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*len ? *len : 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, *len, f), *len);
    fclose(f);
    return b;
}

static inline void tu_write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) fail_msg("cannot create %s", path);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

#endif
