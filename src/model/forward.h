/* The transformer forward pass, written once against the backend interface
 * (kernels/backend.h) for every supported architecture family.
 *
 * bn_forward_state holds what one sequence needs on the backend: the KV cache
 * and the activation buffers for up to n_batch tokens. It is created with a
 * context and never reallocated in the token loop. */
#ifndef BN_MODEL_FORWARD_H
#define BN_MODEL_FORWARD_H

#include "kernels/backend.h"
#include "model/model.h"

typedef struct bn_forward_state {
    int n_ctx, n_batch;
    int logits_rows; /* rows of the backend's logits buffer: the head runs in chunks of this many tokens */
    bn_kv_layer *kv; /* n_layer entries */
    float *x, *xn, *q, *k, *v, *att, *tmp, *g, *u, *logits;
    bn_qact qa;
    bitnet_profile *prof; /* NULL: no timing */
} bn_forward_state;

bitnet_status bn_forward_state_init(bn_forward_state *st, const bitnet_model *m, bn_backend *be, int n_ctx,
                                    int n_batch, bitnet_error *err);
void bn_forward_state_free(bn_forward_state *st, const bitnet_model *m, bn_backend *be);

typedef enum bn_logits_want { BN_LOGITS_NONE, BN_LOGITS_LAST, BN_LOGITS_ALL } bn_logits_want;

/* Runs n_tok (<= n_batch) tokens at positions pos0.. (pos0 + n_tok <= n_ctx),
 * writing to logits_host every token's logits ([n_tok x n_vocab]), only the
 * last token's ([n_vocab]) or none. */
void bn_forward(const bitnet_model *m, bn_backend *be, bn_forward_state *st, const int32_t *tokens, int n_tok,
                int pos0, bn_logits_want want, float *logits_host);

#endif
