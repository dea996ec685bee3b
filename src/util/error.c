#include "util/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

bitnet_status bn_fail(bitnet_error *err, bitnet_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

void bn_err_prefix(bitnet_error *err, const char *fmt, ...) {
    if (!err || err->code == BITNET_OK) return;
    char prefix[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(prefix, sizeof prefix - 2, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    size_t plen = strlen(prefix); /* vsnprintf may have truncated */
    memcpy(prefix + plen, ": ", 3);
    plen += 2;
    size_t cap = sizeof err->message, mlen = strnlen(err->message, cap - 1);
    if (plen >= cap - 1) plen = cap - 1;
    if (plen + mlen >= cap) mlen = cap - 1 - plen; /* keep the start of the old message */
    memmove(err->message + plen, err->message, mlen);
    memcpy(err->message, prefix, plen);
    err->message[plen + mlen] = '\0';
}

void bn_err_clear(bitnet_error *err) {
    if (!err) return;
    err->code = BITNET_OK;
    err->message[0] = '\0';
}
