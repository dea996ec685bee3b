/* Top-k selection with a binary min-heap kept in the output array. */
#include "sampling/topk.h"

/* 1 when index a ranks above index b: larger value, then lower index. */
static inline int ranks_above(const float *v, int32_t a, int32_t b) { return v[a] > v[b] || (v[a] == v[b] && a < b); }

/* Restores the heap property below slot i of a min-heap (root = lowest rank). */
static void sift_down(const float *v, int32_t *h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, low = i;
        if (l < n && ranks_above(v, h[low], h[l])) low = l;
        if (r < n && ranks_above(v, h[low], h[r])) low = r;
        if (low == i) return;
        int32_t t = h[i];
        h[i] = h[low];
        h[low] = t;
        i = low;
    }
}

static void sift_up(const float *v, int32_t *h, int i) {
    while (i > 0) {
        int parent = (i - 1) / 2;
        if (!ranks_above(v, h[parent], h[i])) return;
        int32_t t = h[i];
        h[i] = h[parent];
        h[parent] = t;
        i = parent;
    }
}

int bn_top_k(const float *v, int n, int k, int32_t *out) {
    if (k > n) k = n;
    if (k <= 0) return 0;
    int size = 0;
    for (int32_t i = 0; i < n; i++) {
        if (size < k) {
            out[size] = i;
            sift_up(v, out, size++);
        } else if (ranks_above(v, i, out[0])) {
            out[0] = i;
            sift_down(v, out, k, 0);
        }
    }
    /* Heap sort in place: repeatedly move the lowest-ranked to the end, which
     * leaves the array ordered best first. */
    for (int end = k - 1; end > 0; end--) {
        int32_t t = out[0];
        out[0] = out[end];
        out[end] = t;
        sift_down(v, out, end, 0);
    }
    return k;
}
