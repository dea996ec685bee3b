/* The transformer forward pass, written once against the backend interface
 * (kernels/backend.h) for every supported architecture family.
 *
 * bn_forward_state holds what a context needs on the backend: the KV cache of
 * n_seq sequences of n_ctx positions each ([seq][head][pos][dim] per layer)
 * and the activation buffers for up to n_batch tokens. It is created with a
 * context and never reallocated in the token loop. */
#ifndef BN_MODEL_FORWARD_H
#define BN_MODEL_FORWARD_H

#include "kernels/backend.h"
#include "model/model.h"

typedef struct bn_forward_state {
    int n_ctx, n_batch;
    int n_seq;          /* sequences (KV slots) */
    int64_t seq_stride; /* KV elements of one sequence in one layer: n_head_kv * head_dim * n_ctx */
    int logits_rows; /* rows of the backend's logits buffer: the head runs in chunks of this many tokens */
    bn_kv_layer *kv; /* n_layer entries */
    float *x, *xn, *q, *k, *v, *att, *tmp, *g, *u, *logits;
    bn_qact qa;
    bitnet_profile *prof; /* NULL: no timing */
} bn_forward_state;

/* One sequence (the common case). */
bitnet_status bn_forward_state_init(bn_forward_state *st, const bitnet_model *m, bn_backend *be, int n_ctx,
                                    int n_batch, bitnet_error *err);
/* n_seq >= 1 sequences of n_ctx positions each. */
bitnet_status bn_forward_state_init_seq(bn_forward_state *st, const bitnet_model *m, bn_backend *be, int n_ctx,
                                        int n_batch, int n_seq, bitnet_error *err);
void bn_forward_state_free(bn_forward_state *st, const bitnet_model *m, bn_backend *be);

typedef enum bn_logits_want { BN_LOGITS_NONE, BN_LOGITS_LAST, BN_LOGITS_ALL } bn_logits_want;

/* Runs n_tok (<= n_batch) tokens at positions pos0.. (pos0 + n_tok <= n_ctx),
 * writing to logits_host every token's logits ([n_tok x n_vocab]), only the
 * last token's ([n_vocab]) or none. */
void bn_forward(const bitnet_model *m, bn_backend *be, bn_forward_state *st, const int32_t *tokens, int n_tok,
                int pos0, bn_logits_want want, float *logits_host);

/* One step of a multi-sequence batch: token t belongs to sequence seq[t] at
 * position pos[t] (host arrays of n_tok <= n_batch entries; the caller has
 * checked every seq < n_seq and pos < n_ctx, and that the tokens of one
 * sequence come in order at consecutive positions). out_rows lists, in
 * ascending order, the n_out tokens whose logits are wanted. */
typedef struct bn_batch_step {
    int n_tok;
    const int32_t *tokens, *seq, *pos;
    const int32_t *out_rows;
    int n_out;
    int32_t *argmax_host; /* not NULL: each wanted row's argmax ([n_out]), no logits */
} bn_batch_step;

/* Runs a batch step, writing the wanted rows' logits to logits_host
 * ([n_out x n_vocab], in out_rows order), or with argmax_host set only their
 * argmax (the backend's argmax op: BITNET_E_UNSUPPORTED, running nothing,
 * when it has none; logits_host is then not used). A step whose tokens all belong to
 * one sequence runs the single-sequence operations on that sequence's cache
 * (so a one-token step keeps the backend's decode path); a step of several
 * sequences needs the backend's rope_batch and attention_batch and fails
 * with BITNET_E_UNSUPPORTED, running nothing, when they are missing. Device
 * failures are reported by the backend's status, as for bn_forward. */
bitnet_status bn_forward_batch(const bitnet_model *m, bn_backend *be, bn_forward_state *st, const bn_batch_step *b,
                               float *logits_host, bitnet_error *err);

#endif
