#!/usr/bin/env python3
"""`bitnet perplexity` against numbers computed here, in plain Python.

1. Over the kit's reference sequences (all_ids of tiny-bitnet's reference.json)
   the perplexity matches the one computed from the reference logits (float64
   transformers) to within 1%, for the I2_S GGUF and the HF folder; the
   [[ids], ...] input form gives the same result as reading reference.json.
2. KL mode: a base file written here from the reference logits gives the KL
   divergence, top-token agreement and base perplexity computed here from the
   engine's own logits (`bitnet logits`); a model against its own saved
   logits gives KL 0 and full agreement; a base with another --ctx is refused.
3. Text mode: chunk boundaries, BOS and the dropped remainder are as
   documented (checked against `bitnet tokenize` + `bitnet logits`).
Prints "perplexity: PASS" last when everything holds.
"""
import argparse
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile

FAILS = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        FAILS.append(what)


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)


def read_rows(path, vocab):
    with open(path, "rb") as f:
        data = f.read()
    n = len(data) // (4 * vocab)
    return [struct.unpack_from("<%df" % vocab, data, 4 * vocab * i) for i in range(n)]


def log_softmax(row):
    m = max(row)
    lse = m + math.log(sum(math.exp(x - m) for x in row))
    return [x - lse for x in row]


def nll_sum(rows, ids):
    """Sum of -ln p(ids[j+1] | rows[j]) and the count."""
    total = 0.0
    for j in range(len(ids) - 1):
        total -= log_softmax(rows[j])[ids[j + 1]]
    return total, len(ids) - 1


def perplexity_json(bitnet, args):
    r = run([bitnet, "perplexity", "--json", "-q"] + args)
    if r.returncode != 0:
        print(r.stderr.strip())
        return None
    return json.loads(r.stdout)


def argmax(row):
    return max(range(len(row)), key=lambda i: row[i])


def write_base(path, vocab, ctx, positions):
    """The --save-logits format: magic, n_vocab, ctx; then per position the
    target id and n_vocab float32 log-probabilities."""
    with open(path, "wb") as f:
        f.write(b"BNLOGP01" + struct.pack("<II", vocab, ctx))
        for target, logp in positions:
            f.write(struct.pack("<i", target) + struct.pack("<%df" % vocab, *logp))


def check_reference(a, kit, work, ref, vocab):
    cases = ref["cases"]
    total, count = 0.0, 0
    for c in cases:
        rows = read_rows(os.path.join(kit, "tiny-bitnet", "reference", c["logits_file"]), vocab)
        s, n = nll_sum(rows, c["all_ids"])
        total, count = total + s, count + n
    ppl_ref = math.exp(total / count)
    print("reference perplexity over %d positions: %.5f" % (count, ppl_ref))
    refjson = os.path.join(kit, "tiny-bitnet", "reference", "reference.json")
    lists = os.path.join(work, "ids.json")
    with open(lists, "w") as f:
        json.dump([c["all_ids"] for c in cases], f)
    models = {"i2_s": os.path.join(kit, "tiny-bitnet", "gguf", "tiny-bitnet-i2_s.gguf"),
              "hf": os.path.join(kit, "tiny-bitnet")}
    for name, model in models.items():
        r = perplexity_json(a.bitnet, ["-m", model, "--ids-json", refjson, "--ctx", "128"])
        check(r is not None and r["n_tokens"] == count and r["n_chunks"] == len(cases),
              "%s: every reference position scored once (%s)" % (name, r and r["n_tokens"]))
        if r:
            rel = abs(r["perplexity"] - ppl_ref) / ppl_ref
            check(rel < 0.01, "%s: perplexity %.5f within 1%% of the reference %.5f (%.3f%%)"
                  % (name, r["perplexity"], ppl_ref, 100 * rel))
    r2 = perplexity_json(a.bitnet, ["-m", models["i2_s"], "--ids-json", lists, "--ctx", "128"])
    r1 = perplexity_json(a.bitnet, ["-m", models["i2_s"], "--ids-json", refjson, "--ctx", "128"])
    check(r1 and r2 and r1["perplexity"] == r2["perplexity"], "[[ids], ...] and reference.json agree")
    # Pieces: a 114-token case with --ctx 50 becomes 50 + 50 + 14 tokens.
    long_case = max(cases, key=lambda c: len(c["all_ids"]))
    one = os.path.join(work, "one.json")
    with open(one, "w") as f:
        json.dump(long_case["all_ids"], f)
    n = len(long_case["all_ids"])
    r = perplexity_json(a.bitnet, ["-m", models["i2_s"], "--ids-json", one, "--ctx", "50"])
    pieces = [min(50, n - k) for k in range(0, n, 50)]
    check(r and r["n_chunks"] == len(pieces) and r["n_tokens"] == sum(p - 1 for p in pieces),
          "a %d-token sequence with --ctx 50 is scored in %d pieces" % (n, len(pieces)))
    short = os.path.join(work, "short.json")
    with open(short, "w") as f:
        json.dump([[5, 6, 7], [8]], f)
    r = perplexity_json(a.bitnet, ["-m", models["i2_s"], "--ids-json", short])
    check(r and r["n_chunks"] == 1 and r["n_tokens"] == 2, "a one-token sequence scores nothing and is left out")
    return ppl_ref


def engine_rows(a, model, ids, work, vocab):
    out = os.path.join(work, "logits.f32")
    r = run([a.bitnet, "logits", "-m", model, "--ids", ",".join(map(str, ids)), "-o", out])
    if r.returncode != 0:
        print(r.stderr.strip())
        return None
    return read_rows(out, vocab)


def check_kl(a, kit, work, ref, vocab, ppl_ref):
    model = os.path.join(kit, "tiny-bitnet", "gguf", "tiny-bitnet-i2_s.gguf")
    refjson = os.path.join(kit, "tiny-bitnet", "reference", "reference.json")
    positions, kls, same = [], [], 0
    for c in ref["cases"]:
        ids = c["all_ids"]
        base_rows = read_rows(os.path.join(kit, "tiny-bitnet", "reference", c["logits_file"]), vocab)
        rows = engine_rows(a, model, ids, work, vocab)
        if rows is None:
            return check(False, "bitnet logits runs")
        for j in range(len(ids) - 1):
            lb, ln = log_softmax(base_rows[j]), log_softmax(rows[j])
            positions.append((ids[j + 1], lb))
            kls.append(sum(math.exp(p) * (p - q) for p, q in zip(lb, ln)))
            same += argmax(base_rows[j]) == argmax(rows[j])
    base = os.path.join(work, "reference.logp")
    write_base(base, vocab, 128, positions)
    r = perplexity_json(a.bitnet, ["-m", model, "--ids-json", refjson, "--ctx", "128", "--kl-base", base])
    want = sum(kls) / len(kls)
    check(r is not None and "kl" in r, "--kl-base runs")
    if not r or "kl" not in r:
        return
    print("KL(reference || engine): tool %.7f, here %.7f; top-1 agreement tool %.4f, here %.4f"
          % (r["kl"]["mean"], want, r["kl"]["top1_agreement"], same / len(kls)))
    check(abs(r["kl"]["mean"] - want) <= 1e-3 * want + 1e-7, "mean KL matches the one computed here")
    check(abs(r["kl"]["max"] - max(kls)) <= 1e-3 * max(kls) + 1e-7, "max KL matches")
    check(abs(r["kl"]["top1_agreement"] - same / len(kls)) < 1e-9, "top-token agreement matches")
    check(abs(r["kl"]["base_perplexity"] - ppl_ref) <= 1e-4 * ppl_ref, "base perplexity is the reference's")
    # A model against its own saved distributions.
    own = os.path.join(work, "own.logp")
    r1 = perplexity_json(a.bitnet, ["-m", model, "--ids-json", refjson, "--ctx", "128", "--save-logits", own])
    r2 = perplexity_json(a.bitnet, ["-m", model, "--ids-json", refjson, "--ctx", "128", "--kl-base", own])
    check(r1 and r2 and r2["kl"]["max"] < 1e-6 and r2["kl"]["top1_agreement"] == 1.0
          and abs(r2["kl"]["base_perplexity"] - r1["perplexity"]) < 1e-4 * r1["perplexity"],
          "a model against its own saved logits: KL 0, same top token everywhere")
    check(os.path.getsize(own) == 16 + len(positions) * (4 + 4 * vocab), "--save-logits file size")
    bad = run([a.bitnet, "perplexity", "-q", "-m", model, "--ids-json", refjson, "--ctx", "64", "--kl-base", own])
    check(bad.returncode == 1 and "chunks" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1,
          "a base made with another --ctx is refused in one line: " + bad.stderr.strip())


def check_text(a, kit, work, vocab):
    model = os.path.join(kit, "tiny-bitnet", "gguf", "tiny-bitnet-i2_s.gguf")
    text = os.path.join(work, "stories.txt")
    with open(os.path.join(kit, "..", "data", "tinystories", "tinystories_val_hf_prefix.txt"), "rb") as f:
        head = f.read(5000)
    with open(text, "wb") as f:
        f.write(head[:head.rfind(b"\n") + 1])
    ctx, bos = 128, 4091
    r = perplexity_json(a.bitnet, ["-m", model, "-f", text, "--ctx", str(ctx)])
    t = run([a.bitnet, "tokenize", "-m", model, "--no-bos", "--no-special", "--file", text])
    check(r is not None and t.returncode == 0, "text mode runs")
    if r is None or t.returncode != 0:
        return
    ids = [int(x) for x in t.stdout.split()]
    n_chunks = len(ids) // (ctx - 1)
    check(r["n_chunks"] == n_chunks and r["n_tokens"] == n_chunks * (ctx - 1),
          "%d text tokens make %d chunks of BOS + %d tokens (tool: %d chunks, %d tokens)"
          % (len(ids), n_chunks, ctx - 1, r["n_chunks"], r["n_tokens"]))
    total = 0.0
    for k in range(n_chunks):
        chunk = [bos] + ids[k * (ctx - 1):(k + 1) * (ctx - 1)]
        rows = engine_rows(a, model, chunk, work, vocab)
        total += nll_sum(rows, chunk)[0]
    want = math.exp(total / (n_chunks * (ctx - 1)))
    check(abs(r["perplexity"] - want) <= 1e-4 * want,
          "text perplexity %.5f equals the chunked one computed here %.5f" % (r["perplexity"], want))
    check(r["perplexity"] < 20, "the kit model finds TinyStories text likely (perplexity %.2f)" % r["perplexity"])
    r = perplexity_json(a.bitnet, ["-m", model, "-f", text, "--ctx", str(ctx), "--chunks", "1"])
    check(r and r["n_chunks"] == 1, "--chunks 1 scores one chunk")
    bad = run([a.bitnet, "perplexity", "-m", model, "-f", text, "--ctx", "100000"])
    check(bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1,
          "a text shorter than one chunk is a one-line error: " + bad.stderr.strip())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bitnet", required=True)
    ap.add_argument("--kit", required=True)
    a = ap.parse_args()
    kit = os.path.abspath(a.kit)
    with open(os.path.join(kit, "tiny-bitnet", "reference", "reference.json")) as f:
        ref = json.load(f)
    with open(os.path.join(kit, "tiny-bitnet", "config.json")) as f:
        vocab = json.load(f)["vocab_size"]
    work = tempfile.mkdtemp(prefix="bitnet-ppl-")
    try:
        ppl_ref = check_reference(a, kit, work, ref, vocab)
        check_kl(a, kit, work, ref, vocab, ppl_ref)
        check_text(a, kit, work, vocab)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if FAILS:
        print("perplexity: FAIL (%d)" % len(FAILS))
        sys.exit(1)
    print("perplexity: PASS")


if __name__ == "__main__":
    main()
