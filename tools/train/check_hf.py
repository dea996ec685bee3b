#!/usr/bin/env python3
"""Check an exported folder with Hugging Face transformers.

    python3 tools/train/check_hf.py --model DIR --data PATH/tinystories_val_hf_prefix.txt

Loads DIR with AutoModelForCausalLM (BitNet, autobitlinear offline) in float32 and
with this tool's own loader (export_hf.load_exported), compares their logits on the
first 512 tokens of the held-out text (relative L2 per position, top-1 agreement),
computes the held-out perplexity with transformers, and prints a greedy
continuation of "Once upon a time" from transformers' generate().
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bitnet_model import generate  # noqa: E402
from data_tok import split_text  # noqa: E402
from evaluate import stream_nll, summarize  # noqa: E402
from export_hf import load_exported  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--test-frac", type=float, default=0.10)
    ap.add_argument("--dev-frac", type=float, default=0.05)
    ap.add_argument("--new-tokens", type=int, default=100)
    args = ap.parse_args()

    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, {device}", flush=True)
    tok = AutoTokenizer.from_pretrained(args.model)
    hf = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    # the bitnet quantizer may leave the non-quantized tensors (embedding, norms) in
    # their stored bf16: compute everything in float32
    hf = hf.to(device=device, dtype=torch.float32).eval()
    print(f"HF model: {type(hf).__name__}, linear class "
          f"{type(hf.model.layers[0].self_attn.q_proj).__name__}", flush=True)
    own = load_exported(args.model, device)

    with open(args.data, encoding="utf-8") as f:
        text = f.read()
    _, _, test_txt = split_text(text, args.test_frac, args.dev_frac)
    test_ids = tok(test_txt, add_special_tokens=False)["input_ids"]
    bos = tok.bos_token_id

    # logits on one held-out sequence: BOS + the first ctx-1 test tokens
    x = torch.tensor([[bos] + test_ids[:args.ctx - 1]], device=device)
    with torch.no_grad():
        lh = hf(x).logits[0].float()
        lo = own(x)[0].float()
    rel = (lh - lo).norm(dim=-1) / lo.norm(dim=-1)
    top1 = (lh.argmax(-1) == lo.argmax(-1)).float().mean().item()
    print(f"logits, HF vs own forward of the exported files, {x.shape[1]} positions: "
          f"max rel L2 {rel.max().item():.3e}, mean {rel.mean().item():.3e}, "
          f"top-1 agreement {100 * top1:.1f}%", flush=True)

    # held-out perplexity through transformers
    def hf_logits(inp):
        return hf(inp.to(device)).logits
    with torch.no_grad():
        tot, n = stream_nll(hf_logits, test_ids, bos, ctx=args.ctx, stride=args.ctx // 2, device=device)
    s = summarize(tot, n, len(test_txt.encode("utf-8")))
    print(f"held-out perplexity (transformers): per token {s['ppl_per_token']:.3f}, "
          f"per byte {s['ppl_per_byte']:.4f} ({s['bits_per_byte']:.4f} bits/byte), "
          f"{s['tokens']} tokens", flush=True)

    # greedy generation
    enc = tok("Once upon a time", return_tensors="pt").to(device)
    print(f"prompt ids (HF tokenizer, BOS added): {enc['input_ids'][0].tolist()}")
    with torch.no_grad():
        out = hf.generate(**enc, max_new_tokens=args.new_tokens, do_sample=False)
    hf_ids = out[0].tolist()
    own_ids = generate(own, enc["input_ids"][0].tolist(), args.new_tokens, temperature=0, ctx=args.ctx)
    same = 0
    for a, b in zip(hf_ids, own_ids):
        if a != b:
            break
        same += 1
    print(f"greedy: HF and own agree on {same - enc['input_ids'].shape[1]} of {args.new_tokens} new tokens")
    print("--- transformers greedy ---")
    print(tok.decode(hf_ids, skip_special_tokens=True), flush=True)


if __name__ == "__main__":
    main()
