/* Partial selection of the largest values of a float array: the k best of n
 * in O(n log k) (most elements cost one comparison against the heap's
 * minimum), so that top-k over a 128k vocabulary never sorts the whole row. */
#ifndef BN_SAMPLING_TOPK_H
#define BN_SAMPLING_TOPK_H

#include <stdint.h>

/* Writes the indices of the min(k, n) largest values of v[0..n) to out,
 * largest first; equal values are ordered by lower index first, so the result
 * is a deterministic function of v. v must hold no NaN. Returns the count. */
int bn_top_k(const float *v, int n, int k, int32_t *out);

#endif
