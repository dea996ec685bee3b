/* Error reporting used inside the library.
 *
 * Every fallible internal function returns a bitnet_status and fills an optional
 * bitnet_error (code + one-line message).  The message is what a user sees, so it
 * names the thing that is wrong ("tensor 'blk.0.attn_q.weight': offset past end of
 * file"), not the function that noticed.  Passing err == NULL is allowed everywhere. */
#ifndef BN_UTIL_ERROR_H
#define BN_UTIL_ERROR_H

#include "bitnet.h"

#if defined(__GNUC__)
#define BN_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define BN_PRINTF(f, a)
#endif

/* Sets err (if not NULL) and returns code, so callers can write
 *   return bn_fail(err, BITNET_E_FORMAT, "bad magic");                        */
bitnet_status bn_fail(bitnet_error *err, bitnet_status code, const char *fmt, ...) BN_PRINTF(3, 4);

/* Prefixes the message already in err with "prefix: " (used to add context such as
 * the file name as an error travels up). No-op when err is NULL or code is OK. */
void bn_err_prefix(bitnet_error *err, const char *fmt, ...) BN_PRINTF(2, 3);

/* Clears err to BITNET_OK / "". */
void bn_err_clear(bitnet_error *err);

#endif
