#!/usr/bin/env python3
"""Quantization-aware training of a small BitNet b1.58 model (2B4T architecture) on
TinyStories text, exported in the Hugging Face packed format of
microsoft/bitnet-b1.58-2B-4T (then `bitnet convert` makes the GGUF).

    python3 tools/train/train.py --data PATH/tinystories_val_hf_prefix.txt --out DIR \
        [--seed 1234] [--minutes 6] [--vocab 2048] [--sweep SPEC]

Steps:
 1. split the text: the last 10% (from a paragraph break) is the held-out test set;
    the last 5% of the rest is a dev set used only to pick the checkpoint.
 2. train a byte-level BPE (Llama 3 pre-tokenizer, special tokens at the end).
 3. train each model configuration of the sweep (default: a few sizes / dropouts,
    sharing the --minutes budget), keep the checkpoint with the lowest dev loss.
 4. export the best one to DIR (config.json, generation_config.json, tokenizer.json,
    tokenizer_config.json, model.safetensors), reload the exported files, and report
    held-out perplexity (per token and per byte) and three samples.
"""

import argparse
import copy
import json
import math
import os
import sys
import time

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bitnet_model import BitNetLM, generate, gguf_size_estimate, param_counts  # noqa: E402
from data_tok import (BOS, encode_with_starts, split_text, train_tokenizer,  # noqa: E402
                      write_tokenizer_files)
from evaluate import stream_nll, summarize  # noqa: E402
from export_hf import export_hf, load_exported  # noqa: E402

# name:key=value,...;  d hidden, L layers, H heads, KV kv heads, ff FFN width,
# drop residual/embedding dropout, steps max steps, lr peak learning rate.
DEFAULT_SWEEP = ("m8d2:d=512,L=8,H=8,KV=2,ff=1536,drop=0.2,steps=800,lr=1.5e-3;"
                 "s6d1:d=384,L=6,H=6,KV=2,ff=1024,drop=0.1,steps=600,lr=2e-3;"
                 "s6d2:d=384,L=6,H=6,KV=2,ff=1024,drop=0.2,steps=1000,lr=2e-3;"
                 "m8d3:d=512,L=8,H=8,KV=2,ff=1536,drop=0.3,steps=1200,lr=1.5e-3;"
                 "m8d1:d=512,L=8,H=8,KV=2,ff=1536,drop=0.1,steps=400,lr=1.5e-3")
SMOKE_SWEEP = "tiny:d=128,L=2,H=2,KV=1,ff=256,drop=0.0,steps=12,lr=3e-3"

PROMPT = "Once upon a time"


def log(*a):
    print(*a, flush=True)


def parse_sweep(spec):
    out = []
    for item in spec.split(";"):
        item = item.strip()
        if not item:
            continue
        name, _, kv = item.partition(":")
        c = dict(d=512, L=8, H=8, KV=2, ff=1536, drop=0.1, steps=800, lr=1.5e-3)
        for pair in kv.split(","):
            k, _, v = pair.partition("=")
            c[k.strip()] = float(v) if k.strip() in ("drop", "lr") else int(v)
        c["name"] = name.strip()
        out.append(c)
    return out


def model_cfg(c, vocab, ctx):
    return {
        "vocab_size": vocab, "hidden_size": c["d"], "intermediate_size": c["ff"],
        "num_hidden_layers": c["L"], "num_attention_heads": c["H"],
        "num_key_value_heads": c["KV"], "head_dim": c["d"] // c["H"],
        "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "max_position_embeddings": ctx,
        "dropout": c["drop"], "attn_dropout": 0.0,
    }


def make_logits_fn(model, device, autocast):
    def fn(x):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            return model(x.to(device))
    return fn


def train_one(c, args, vocab, train_ids, train_starts, dev_ids, bos_id, device, time_cap):
    """Train one configuration; return (best_dev_nll, best_step, best_state, info)."""
    cfg = model_cfg(c, vocab, args.ctx)
    torch.manual_seed(args.seed)
    model = BitNetLM(cfg).to(device)
    tern, emb, norm = param_counts(model)
    log(f"[{c['name']}] {c}  ternary {tern / 1e6:.2f}M  embedding {emb / 1e6:.2f}M  "
        f"norms {norm}  est. I2_S GGUF {gguf_size_estimate(model) / 1e6:.2f} MB")
    decay = [m.weight for _, m in model.bitlinears()]
    ids_decay = {id(p) for p in decay}
    other = [p for p in model.parameters() if id(p) not in ids_decay]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd},
                             {"params": other, "weight_decay": 0.0}],
                            lr=c["lr"], betas=(0.9, 0.95), eps=1e-8,
                            fused=(device == "cuda"))
    use_ac = device == "cuda"
    T, B = args.ctx, args.batch
    ids_dev = torch.tensor(train_ids, dtype=torch.long, device=device)
    starts = np.array([s for s in train_starts if s + T <= len(train_ids)], dtype=np.int64)
    rng = np.random.default_rng(args.seed)
    ar = torch.arange(T, device=device)
    bos_col = torch.full((B, 1), bos_id, dtype=torch.long, device=device)
    max_steps = c["steps"]
    warm = max(10, max_steps // 20)
    best = (float("inf"), -1, None)
    t0 = time.time()
    step = 0
    dev_hist = []

    def dev_eval():
        model.eval()
        tot, n = stream_nll(make_logits_fn(model, device, use_ac), dev_ids, bos_id,
                            ctx=T, stride=T // 2, batch=32, device=device)
        model.train()
        return tot / n

    model.train()
    while True:
        elapsed = time.time() - t0
        prog = max(step / max_steps, elapsed / time_cap)
        if prog >= 1.0:
            break
        if step < warm:
            lr = c["lr"] * (step + 1) / warm
        else:
            lr = c["lr"] * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * prog)))
        for g in opt.param_groups:
            g["lr"] = lr
        s = torch.from_numpy(rng.choice(starts, size=B)).to(device)
        tgt = ids_dev[s[:, None] + ar]
        inp = torch.cat([bos_col, tgt[:, :-1]], dim=1)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_ac):
            logits = model(inp)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tgt.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % args.eval_every == 0:
            dv = dev_eval()
            dev_hist.append((step, dv))
            if dv < best[0]:
                best = (dv, step, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
            log(f"[{c['name']}] step {step:5d}  lr {lr:.2e}  train {loss.item():.4f}  dev {dv:.4f}"
                f"  ({time.time() - t0:.0f}s)")
    if step % args.eval_every != 0 and step > 0:
        dv = dev_eval()
        dev_hist.append((step, dv))
        if dv < best[0]:
            best = (dv, step, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
        log(f"[{c['name']}] step {step:5d}  final  train {loss.item():.4f}  dev {dv:.4f}")
    secs = time.time() - t0
    info = {"name": c["name"], "spec": c, "steps": step, "seconds": round(secs, 1),
            "ms_per_step": round(1000 * secs / max(step, 1), 1), "best_dev_nll": best[0],
            "best_step": best[1], "dev_history": dev_hist, "cfg": cfg}
    log(f"[{c['name']}] done: {step} steps in {secs:.0f}s ({info['ms_per_step']} ms/step), "
        f"best dev nll {best[0]:.4f} at step {best[1]}")
    return best[0], best[1], best[2], info


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="TinyStories text file")
    ap.add_argument("--out", required=True, help="output folder (HF packed format)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--minutes", type=float, default=6.0, help="training time budget for the whole sweep")
    ap.add_argument("--vocab", type=int, default=2048, help="vocabulary size incl. 5 special tokens")
    ap.add_argument("--ctx", type=int, default=512, help="context length")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--wd", type=float, default=0.1, help="AdamW weight decay on the ternary weights")
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--sweep", default=None, help=f"configurations (default: {DEFAULT_SWEEP})")
    ap.add_argument("--test-frac", type=float, default=0.10)
    ap.add_argument("--dev-frac", type=float, default=0.05)
    ap.add_argument("--sample-tokens", type=int, default=200)
    ap.add_argument("--smoke", action="store_true", help="tiny model, a few steps (CPU test)")
    args = ap.parse_args()

    t_start = time.time()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    log(f"torch {torch.__version__}  device {device}"
        + (f" ({torch.cuda.get_device_name()})" if device == "cuda" else ""))
    log("args:", vars(args))

    with open(args.data, encoding="utf-8") as f:
        text = f.read()
    train_txt, dev_txt, test_txt = split_text(text, args.test_frac, args.dev_frac)
    log(f"text {len(text)} chars: train {len(train_txt)}, dev {len(dev_txt)}, "
        f"held-out test {len(test_txt)} (last {100 * len(test_txt) / len(text):.1f}%)")

    tok = train_tokenizer(train_txt + dev_txt, args.vocab)
    vocab = tok.get_vocab_size()
    bos_id = tok.token_to_id(BOS)
    write_tokenizer_files(tok, args.out, args.ctx)
    train_ids, train_starts = encode_with_starts(tok, train_txt)
    dev_ids = tok.encode(dev_txt, add_special_tokens=False).ids
    test_ids = tok.encode(test_txt, add_special_tokens=False).ids
    log(f"tokenizer: vocab {vocab} (BOS {bos_id}), tokens train {len(train_ids)} "
        f"dev {len(dev_ids)} test {len(test_ids)}; {len(train_txt.encode()) / len(train_ids):.2f} bytes/token")

    sweep = parse_sweep(SMOKE_SWEEP if args.smoke else (args.sweep or DEFAULT_SWEEP))
    budget = args.minutes * 60.0
    t_sweep = time.time()
    results = []
    best = None
    for i, c in enumerate(sweep):
        remaining = budget - (time.time() - t_sweep)
        cap = remaining / (len(sweep) - i)
        if cap < 15:
            log(f"[{c['name']}] skipped: {remaining:.0f}s of the budget left")
            continue
        dv, st, state, info = train_one(c, args, vocab, train_ids, train_starts, dev_ids,
                                        bos_id, device, cap)
        results.append(info)
        if state is not None and (best is None or dv < best[0]):
            best = (dv, info, state)
    train_secs = time.time() - t_sweep
    log(f"sweep: {train_secs:.0f}s")
    for r in results:
        log(f"  {r['name']:6s} best dev nll {r['best_dev_nll']:.4f} (step {r['best_step']}/{r['steps']}, "
            f"{r['ms_per_step']} ms/step)")
    dv, info, state = best
    log(f"chosen: {info['name']} (dev nll {dv:.4f}, step {info['best_step']})")

    # rebuild the chosen checkpoint, evaluate the master weights, export
    model = BitNetLM(info["cfg"]).to(device)
    model.load_state_dict(state)
    model.eval()
    n_test_bytes = len(test_txt.encode("utf-8"))
    tot, n = stream_nll(make_logits_fn(model, device, False), test_ids, bos_id,
                        ctx=args.ctx, stride=args.ctx // 2, device=device)
    master = summarize(tot, n, n_test_bytes)
    export_hf(model, tok, args.out)

    # everything below uses the exported files, as they will ship
    shipped = load_exported(args.out, device)
    tot, n = stream_nll(make_logits_fn(shipped, device, False), test_ids, bos_id,
                        ctx=args.ctx, stride=args.ctx // 2, device=device)
    test = summarize(tot, n, n_test_bytes)
    tot, n = stream_nll(make_logits_fn(shipped, device, False), dev_ids, bos_id,
                        ctx=args.ctx, stride=args.ctx // 2, device=device)
    dev = summarize(tot, n, len(dev_txt.encode("utf-8")))
    log(f"held-out test ({n_test_bytes} bytes, {test['tokens']} tokens), exported model, float32:")
    log(f"  perplexity per token {test['ppl_per_token']:.3f} (nll {test['nll_per_token']:.4f}), "
        f"per byte {test['ppl_per_byte']:.4f} ({test['bits_per_byte']:.4f} bits/byte)")
    log(f"  (master weights before export: per token {master['ppl_per_token']:.3f}; "
        f"dev set: per token {dev['ppl_per_token']:.3f})")

    prompt_ids = [bos_id] + tok.encode(PROMPT, add_special_tokens=False).ids
    gen = torch.Generator().manual_seed(args.seed)
    samples = []
    for k in range(3):
        out = generate(shipped, prompt_ids, args.sample_tokens, temperature=0.8, top_k=40,
                       generator=gen, ctx=args.ctx)
        samples.append(tok.decode(out[1:], skip_special_tokens=True))
        log(f"--- sample {k + 1} (temperature 0.8, top-k 40, seed {args.seed}) ---\n{samples[-1]}")
    greedy = tok.decode(generate(shipped, prompt_ids, 100, temperature=0, ctx=args.ctx)[1:],
                        skip_special_tokens=True)
    log(f"--- greedy (100 tokens) ---\n{greedy}")

    metrics = {"chosen": info["name"], "config": info["cfg"], "test": test, "dev": dev,
               "test_master_weights": master, "sweep": results, "train_seconds": round(train_secs, 1),
               "total_seconds": round(time.time() - t_start, 1), "samples": samples,
               "greedy": greedy, "args": vars(args)}
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
    log(f"exported to {args.out}; total {time.time() - t_start:.0f}s")


if __name__ == "__main__":
    main()
