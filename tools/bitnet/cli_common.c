#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

int cli_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bitnet %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int cli_parse_ids(const char *s, int32_t **out) {
    *out = NULL;
    size_t cap = 16, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return -1;
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == ',' || *p == '\n' || *p == '\t' || *p == '\r') p++;
        if (!*p) break;
        if (*p < '0' || *p > '9') { free(ids); return -1; }
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || v > INT32_MAX || (*end && !strchr(" ,\n\t\r", *end))) { free(ids); return -1; }
        if (n == cap) {
            int32_t *t = realloc(ids, (cap *= 2) * sizeof *ids);
            if (!t) { free(ids); return -1; }
            ids = t;
        }
        ids[n++] = (int32_t)v;
        p = end;
    }
    if (n > INT32_MAX) { free(ids); return -1; }
    *out = ids;
    return (int)n;
}

char *cli_read_file(const char *path, size_t *len) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (n < cap) break;
        char *t = realloc(buf, (cap *= 2) + 1);
        if (!t) { free(buf); buf = NULL; }
        else buf = t;
    }
    int bad = ferror(f);
    if (f != stdin) fclose(f);
    if (!buf || bad) { free(buf); return NULL; }
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

const char *cli_default_model(void) {
    static char path[4200];
    const char *env = getenv("BITNET_MODEL");
    if (env && *env) return env;
    /* The bundled model sits in models/ next to the build directory's parent. */
    char exe[4000];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return NULL;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash) return NULL;
    *slash = '\0';
    const char *candidates[] = {"%s/../models/bitnet-tinystories-i2_s.gguf", "%s/../share/bitnet/bitnet-tinystories-i2_s.gguf"};
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++) {
        snprintf(path, sizeof path, candidates[i], exe);
        if (access(path, R_OK) == 0) return path;
    }
    return NULL;
}
