/* Read-only memory-mapped files.
 * Ownership: bn_mapped_file_open fills *f; bn_mapped_file_close releases it. */
#ifndef BN_UTIL_MAPPED_FILE_H
#define BN_UTIL_MAPPED_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

typedef struct bn_mapped_file {
    const uint8_t *data; /* NULL for an empty file */
    size_t size;
    int mapped;          /* 1: data is an mmap; 0: data is a malloc'd copy */
} bn_mapped_file;

/* use_mmap = 0 reads the whole file into memory instead (for tests and for
 * file systems without mmap). */
bitnet_status bn_mapped_file_open(bn_mapped_file *f, const char *path, int use_mmap, bitnet_error *err);
void bn_mapped_file_close(bn_mapped_file *f);

#endif
