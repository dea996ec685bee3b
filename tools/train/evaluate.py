"""Held-out evaluation: sliding-window negative log-likelihood over a token stream."""

import math

import torch
import torch.nn.functional as F


def windows(n, ctx, stride):
    """(a, b, c) triples covering targets [0, n): each window predicts ids[a:b]
    from [BOS] + ids[a:b-1] and scores the targets [c, b) (every target exactly once,
    each with at least ctx - stride tokens of context after the first window)."""
    out, b_prev = [], 0
    b = min(ctx, n)
    while True:
        out.append((max(0, b - ctx), b, b_prev))
        if b >= n:
            return out
        b_prev, b = b, min(b + stride, n)


@torch.no_grad()
def stream_nll(logits_fn, ids, bos_id, ctx=512, stride=256, batch=16, device="cpu"):
    """Total NLL (nats) and count of the tokens ids, each predicted after BOS and up to
    ctx-1 preceding tokens.  logits_fn maps a LongTensor (B, T) to logits (B, T, V)."""
    ids_t = torch.tensor(ids, dtype=torch.long)
    wins = windows(len(ids), ctx, stride)
    total, count = 0.0, 0
    # group windows of equal length so they can be batched
    groups = {}
    for w in wins:
        groups.setdefault(w[1] - w[0], []).append(w)
    for length, ws in sorted(groups.items()):
        for i in range(0, len(ws), batch):
            chunk = ws[i:i + batch]
            tgt = torch.stack([ids_t[a:b] for a, b, _ in chunk])
            inp = torch.cat([torch.full((len(chunk), 1), bos_id, dtype=torch.long), tgt[:, :-1]], 1)
            mask = torch.stack([torch.arange(a, b) >= c for a, b, c in chunk])
            logits = logits_fn(inp.to(device)).float()
            nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.to(device).reshape(-1),
                                  reduction="none").reshape(tgt.shape)
            total += float(nll[mask.to(device)].sum())
            count += int(mask.sum())
    assert count == len(ids)
    return total, count


def summarize(total_nll, n_tokens, n_bytes):
    return {
        "nll_per_token": total_nll / n_tokens,
        "ppl_per_token": math.exp(total_nll / n_tokens),
        "ppl_per_byte": math.exp(total_nll / n_bytes),
        "bits_per_byte": total_nll / n_bytes / math.log(2),
        "tokens": n_tokens,
        "bytes": n_bytes,
    }
