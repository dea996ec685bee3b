#define _POSIX_C_SOURCE 200809L
#include "util/mapped_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static bitnet_status read_all(int fd, uint8_t *buf, size_t size, const char *path, bitnet_error *err) {
    size_t done = 0;
    while (done < size) {
        ssize_t n = read(fd, buf + done, size - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return bn_fail(err, BITNET_E_IO, "%s: read failed: %s", path, n ? strerror(errno) : "unexpected end of file");
        done += (size_t)n;
    }
    return BITNET_OK;
}

bitnet_status bn_mapped_file_open(bn_mapped_file *f, const char *path, int use_mmap, bitnet_error *err) {
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return bn_fail(err, BITNET_E_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return bn_fail(err, BITNET_E_IO, "%s: %s", path, strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return bn_fail(err, BITNET_E_IO, "%s: not a regular file", path);
    }
    f->size = (size_t)st.st_size;
    bitnet_status rc = BITNET_OK;
    if (f->size == 0) {
        f->data = NULL;
    } else if (use_mmap) {
        void *p = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) rc = bn_fail(err, BITNET_E_IO, "%s: mmap failed: %s", path, strerror(errno));
        else { f->data = p; f->mapped = 1; }
    } else {
        uint8_t *buf = malloc(f->size);
        if (!buf) rc = bn_fail(err, BITNET_E_NOMEM, "%s: cannot allocate %zu bytes", path, f->size);
        else if ((rc = read_all(fd, buf, f->size, path, err)) != BITNET_OK) free(buf);
        else f->data = buf;
    }
    close(fd);
    if (rc != BITNET_OK) memset(f, 0, sizeof *f);
    return rc;
}

void bn_mapped_file_close(bn_mapped_file *f) {
    if (!f || !f->data) return;
    if (f->mapped) munmap((void *)f->data, f->size);
    else free((void *)f->data);
    memset(f, 0, sizeof *f);
}
