#!/usr/bin/env python3
"""End-to-end checks of `bitnet convert` and `bitnet gen-model` through the CLI.

  check_convert.py --bitnet BUILD/bitnet --kit ../shared/conformance --work DIR

1. Each kit Hugging Face folder converted to every --type passes the logits
   conformance check (check_logits.py) — tiny-bitnet as bitnet-b1.58,
   tiny-llama-ternary as llama with q/k permuted for interleaved RoPE.
2. Converted files carry the kit GGUF files' metadata keys (values equal, except
   general.name), and the same tensor names, types, shapes and order.
3. I2_S -> TQ1_0 -> TQ2_0 -> I2_S: every ternary tensor decodes (with this
   script's own decoders, independent of the engine's) to bit-identical values.
4. Damaged inputs fail with a one-line message and leave neither OUT nor OUT.tmp;
   an existing OUT is kept without --force.
5. A float "master weights" checkpoint (tiny-bitnet's linears unpacked to bf16)
   converts to the same I2_S tensors as the kit's file, and passes conformance.
6. gen-model writes loadable files (bitnet info) for a preset; with --tokenizer
   the Llama 3 (byte-level) and Llama 2 (SentencePiece-style) tokenizer.json
   become GGUF vocabularies that tokenize the kit's vectors exactly (a sample).
Python 3 standard library only. The last line is "convert: PASS" or "convert: FAIL".
"""
import argparse, json, os, shutil, struct, subprocess, sys

FAILS = []


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what)
    if not cond:
        FAILS.append(what)
    return cond


# ------------------------------------------------------------------- GGUF --

SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
BLOCK = {0: (1, 4), 1: (1, 2), 30: (1, 2), 2: (32, 18), 8: (32, 34), 14: (256, 210), 34: (256, 54), 35: (256, 66)}


class Gguf:
    def __init__(self, path):
        self.buf = open(path, "rb").read()
        self.pos = 0
        assert self.buf[:4] == b"GGUF", path
        self.pos = 4
        self.version = self.u("I")
        nt, nkv = self.u("Q"), self.u("Q")
        self.kv = {}
        for _ in range(nkv):
            k = self.s()
            self.kv[k] = self.value(self.u("I"))
        self.tensors = []
        for _ in range(nt):
            name = self.s()
            nd = self.u("I")
            ne = [self.u("Q") for _ in range(nd)]
            self.tensors.append([name, ne, self.u("I"), self.u("Q")])
        align = self.kv.get("general.alignment", 32)
        data = (self.pos + align - 1) // align * align
        for t in self.tensors:
            n = 1
            for d in t[1]:
                n *= d
            if t[2] == 36:
                size = n // 4 + 32
            else:
                be, bb = BLOCK[t[2]]
                size = n // be * bb
            t.append(self.buf[data + t[3]:data + t[3] + size])

    def u(self, f):
        v = struct.unpack_from("<" + f, self.buf, self.pos)[0]
        self.pos += struct.calcsize(f)
        return v

    def s(self):
        n = self.u("Q")
        v = self.buf[self.pos:self.pos + n].decode("utf-8", "replace")
        self.pos += n
        return v

    def value(self, t):
        if t == 8:
            return self.s()
        if t == 9:
            et, n = self.u("I"), self.u("Q")
            return [self.value(et) for _ in range(n)]
        return self.u(SCALAR[t])

    def tensor(self, name):
        return next(t for t in self.tensors if t[0] == name)


def f16(b, o):
    return struct.unpack_from("<e", b, o)[0]


def ternary_values(t):
    """(codes, per-element scale) of an I2_S / TQ1_0 / TQ2_0 tensor, decoded here."""
    name, ne, typ, _, data = t
    n = ne[0] * ne[1]
    codes, scales = [], []
    if typ == 36:
        scale = struct.unpack_from("<f", data, n // 4)[0]
        for blk in range(n // 128):
            b = data[32 * blk:32 * blk + 32]
            codes += [(b[j % 32] >> (6 - 2 * (j // 32))) & 3 for j in range(128)]
        return codes, [scale] * n
    bb = 54 if typ == 34 else 66
    for blk in range(n // 256):
        b = data[bb * blk:bb * blk + bb]
        c = [0] * 256
        if typ == 35:
            for j in range(2):
                for m in range(32):
                    for l in range(4):
                        c[128 * j + m + 32 * l] = (b[32 * j + m] >> (2 * l)) & 3
        else:
            def trit(byte, k):
                return (((byte * 3 ** k) & 0xFF) * 3) >> 8
            for m in range(32):
                for k in range(5):
                    c[m + 32 * k] = trit(b[m], k)
            for m in range(16):
                for k in range(5):
                    c[160 + m + 16 * k] = trit(b[32 + m], k)
            for j in range(4):
                for k in range(4):
                    c[240 + j + 4 * k] = trit(b[48 + j], k)
        codes += c
        scales += [f16(b, bb - 2)] * 256
    return codes, scales


def decoded(t):
    codes, scales = ternary_values(t)
    return [(c - 1) * s for c, s in zip(codes, scales)]


# ------------------------------------------------------------ safetensors --

def st_read(path):
    blob = open(path, "rb").read()
    n = struct.unpack_from("<Q", blob)[0]
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", None)
    data = blob[8 + n:]
    return meta, {k: (v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in header.items()}


def st_write(path, meta, tensors):
    header, blobs, off = {}, [], 0
    if meta is not None:
        header["__metadata__"] = meta
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def unpack_to_bf16(packed, shape, scale_raw):
    """HF packed (out/4, in) uint8 → bf16 values code·scale, (out, in) row-major."""
    scale = struct.unpack("<f", b"\0\0" + scale_raw[:2])[0]
    vals = [struct.pack("<f", v) for v in (-scale, 0.0, scale)]  # bf16(scale) is exact in f32
    lo = bytes(v[2] for v in vals) + b"\0"
    hi = bytes(v[3] for v in vals) + b"\0"
    rows = []
    for i in range(4):
        code = bytes((b >> (2 * i)) & 3 for b in range(256))
        c = packed.translate(code)
        out = bytearray(2 * len(c))
        out[0::2] = c.translate(lo.ljust(256, b"\0"))
        out[1::2] = c.translate(hi.ljust(256, b"\0"))
        rows.append(bytes(out))
    return b"".join(rows), [shape[0] * 4, shape[1]]


def master_variant(args):
    src = os.path.join(args.kit, "tiny-bitnet")
    dst = os.path.join(args.work, "hf-master")
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("gguf", "reference", "model.safetensors"))
    meta, tensors = st_read(os.path.join(src, "model.safetensors"))
    out = {}
    for name, (dtype, shape, raw) in tensors.items():
        if name.endswith("weight_scale"):
            continue
        if dtype == "U8":
            raw, shape = unpack_to_bf16(raw, shape, tensors[name + "_scale"][2])
            dtype = "BF16"
        out[name] = (dtype, shape, raw)
    st_write(os.path.join(dst, "model.safetensors"), meta, out)
    gguf = os.path.join(args.work, "hf-master-i2_s.gguf")
    if not convert(args, dst, gguf, "--type", "i2_s"):
        return
    kit = Gguf(os.path.join(src, "gguf", "tiny-bitnet-i2_s.gguf"))
    mine = Gguf(gguf)
    same = all(a[4] == b[4] for a, b in zip(kit.tensors, mine.tensors) if a[2] == 36)
    check(same, "master weights: ternarized I2_S tensors equal the kit's, byte for byte")
    conformance(args, src, gguf)
    # Not exactly ternary: one tensor gets noise of up to 10% of its scale, so
    # the loader must use the absmean rule (scale = mean|W|, codes by rounding).
    name = "model.layers.0.self_attn.k_proj.weight"
    raw = out[name][2]
    w = struct.unpack(f"<{len(raw) // 2}f", b"".join(b"\0\0" + raw[i:i + 2] for i in range(0, len(raw), 2)))
    scale = max(abs(v) for v in w)
    noisy = [v + scale * 0.1 * (((j * 37) % 11) - 5) / 5 for j, v in enumerate(w)]
    bf = b"".join(struct.pack("<f", v)[2:] for v in noisy)  # truncation to bf16 is fine here
    out[name] = ("BF16", out[name][1], bf)
    st_write(os.path.join(dst, "model.safetensors"), meta, out)
    noisy_gguf = os.path.join(args.work, "hf-master-noisy-i2_s.gguf")
    if not convert(args, dst, noisy_gguf, "--type", "i2_s"):
        return
    t_kit, t_mine = kit.tensor("blk.0.attn_k.weight"), Gguf(noisy_gguf).tensor("blk.0.attn_k.weight")
    n = len(w) // 4
    got = struct.unpack_from("<f", t_mine[4], n)[0]
    vals = struct.unpack(f"<{len(bf) // 2}f", b"".join(b"\0\0" + bf[i:i + 2] for i in range(0, len(bf), 2)))
    want = sum(abs(v) for v in vals) / len(vals)
    check(t_mine[4][:n] == t_kit[4][:n] and abs(got - want) <= 1e-6 * want,
          f"master weights with noise: absmean codes equal the kit's, scale {got:.6g} = mean|W| {want:.6g}")


# -------------------------------------------------------------------- run --

def run(argv):
    return subprocess.run(argv, capture_output=True, text=True)


def convert(args, src, dst, *extra):
    r = run([args.bitnet, "convert", src, dst, "--force", "--quiet", *extra])
    check(r.returncode == 0 and os.path.exists(dst), f"convert {os.path.basename(src)} -> {os.path.basename(dst)} "
          f"{' '.join(extra)}" + (f": {r.stderr.strip()}" if r.returncode else ""))
    return r.returncode == 0


def conformance(args, kit_model, gguf):
    r = run([sys.executable, os.path.join(args.kit, "tools", "check_logits.py"), kit_model, "--",
             args.bitnet, "logits", "-m", gguf, "--ids", "{ids}", "-o", "{out}"])
    last = (r.stdout.strip().splitlines() or ["(no output)"])[-1]
    check("conformance: PASS" in last, f"logits of {os.path.basename(gguf)}: {last}")


def same_layout(mine, kit, label):
    a, b = Gguf(mine), Gguf(kit)
    missing = [k for k in b.kv if k not in a.kv]
    check(not missing, f"{label}: has every metadata key of the kit file {missing or ''}")
    differ = [k for k in b.kv if k in a.kv and k != "general.name" and a.kv[k] != b.kv[k]]
    check(not differ, f"{label}: metadata values equal the kit file's {differ or ''}")
    extra = sorted(set(a.kv) - set(b.kv))
    check(set(extra) <= {"tokenizer.ggml.pre", "tokenizer.ggml.eot_token_id"}, f"{label}: extra keys {extra}")
    la = [(t[0], t[1], t[2]) for t in a.tensors]
    lb = [(t[0], t[1], t[2]) for t in b.tensors]
    check(la == lb, f"{label}: tensor names, shapes, types and order equal the kit file's")
    return a


def requantize_chain(args):
    kit = os.path.join(args.kit, "tiny-bitnet", "gguf", "tiny-bitnet-i2_s.gguf")
    files = [kit]
    for t in ("tq1_0", "tq2_0", "i2_s"):
        dst = os.path.join(args.work, f"chain-{t}.gguf")
        if not convert(args, files[-1], dst, "--type", t):
            return
        files.append(dst)
    ggufs = [Gguf(f) for f in files]
    ternary = [t[0] for t in ggufs[0].tensors if t[2] == 36]
    for f, g in zip(files[1:], ggufs[1:]):
        ok = all(decoded(g.tensor(n)) == decoded(ggufs[0].tensor(n)) for n in ternary)
        check(ok, f"chain: {os.path.basename(f)} decodes to the kit I2_S weights bit for bit ({len(ternary)} tensors)")
    same = all(a[4] == b[4] for a, b in zip(ggufs[0].tensors, ggufs[-1].tensors))
    check(same, "chain: back to I2_S gives the kit file's tensor bytes exactly")


def damaged_inputs(args):
    kit = os.path.join(args.kit, "tiny-bitnet", "gguf", "tiny-bitnet-tq1_0.gguf")
    blob = open(kit, "rb").read()
    out = os.path.join(args.work, "damaged-out.gguf")
    cases = {"empty": b"", "header only": blob[:64], "a third": blob[:len(blob) // 3],
             "one byte short": blob[:-1], "bad magic": b"GGUX" + blob[4:]}
    hf = os.path.join(args.work, "hf-truncated")
    shutil.rmtree(hf, ignore_errors=True)
    shutil.copytree(os.path.join(args.kit, "tiny-bitnet"), hf, ignore=shutil.ignore_patterns("gguf", "reference"))
    st = os.path.join(hf, "model.safetensors")
    data = open(st, "rb").read()
    open(st, "wb").write(data[:len(data) - 4096])
    for label, content in list(cases.items()) + [("HF folder, truncated safetensors", None)]:
        src = hf
        if content is not None:
            src = os.path.join(args.work, "damaged.gguf")
            open(src, "wb").write(content)
        r = run([args.bitnet, "convert", src, out, "--force"])
        msg = r.stderr.strip()
        check(r.returncode != 0 and msg and "\n" not in msg and not os.path.exists(out)
              and not os.path.exists(out + ".tmp"), f"damaged input ({label}) fails cleanly: {msg[:120]}")
    keep = os.path.join(args.work, "keep.gguf")
    open(keep, "wb").write(b"keep me")
    r = run([args.bitnet, "convert", kit, keep])
    check(r.returncode != 0 and open(keep, "rb").read() == b"keep me" and "--force" in r.stderr,
          f"an existing output is kept without --force: {r.stderr.strip()[:100]}")


def gen_model(args):
    out = os.path.join(args.work, "gen-2b4t.gguf")
    r = run([args.bitnet, "gen-model", "2b4t", out, "--layers", "1", "--vocab", "512", "--force", "--quiet"])
    check(r.returncode == 0, f"gen-model 2b4t --layers 1 --vocab 512 {r.stderr.strip()}")
    r = run([args.bitnet, "info", "--no-tensors", out])
    ok = r.returncode == 0 and "n_embd:        2560" in r.stdout and "n_ff:          6912" in r.stdout
    check(ok, "gen-model output loads with the 2B4T shapes (bitnet info)")
    g = Gguf(out)
    check(g.kv.get("general.file_type") == 40 and g.kv.get("general.architecture") == "bitnet-b1.58",
          "gen-model: arch bitnet-b1.58, file_type 40")


def tokenizer_vocab(args):
    for name, n_vocab in (("llama3", 128256), ("llama2", 32000)):
        out = os.path.join(args.work, f"gen-tok-{name}.gguf")
        tj = os.path.join(args.kit, "..", "data", "tokenizers", name, "tokenizer.json")
        r = run([args.bitnet, "gen-model", "custom", out, "--layers", "1", "--vocab", str(n_vocab), "--tokenizer", tj,
                 "--force", "--quiet"])
        if not check(r.returncode == 0, f"gen-model with the {name} tokenizer.json {r.stderr.strip()}"):
            continue
        vectors = json.load(open(os.path.join(args.kit, "tokenizer-vectors", f"{name}-vectors.json")))
        vectors["cases"] = vectors["cases"][::8]  # a sample keeps the run short
        sample = os.path.join(args.work, f"{name}-sample.json")
        json.dump(vectors, open(sample, "w"))
        r = run([sys.executable, os.path.join(args.kit, "tools", "check_tokenizer.py"), sample, "--", args.bitnet,
                 "tokenize", "--tokenizer", out, "--no-bos", "--file", "{text}"])
        last = (r.stdout.strip().splitlines() or ["(no output)"])[-1]
        check("tokenizer: PASS" in last, f"{name} vocabulary written to GGUF tokenizes exactly: {last}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bitnet", required=True)
    ap.add_argument("--kit", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    types = ["i2_s", "tq2_0", "tq1_0", "f16"]
    for model in ("tiny-bitnet", "tiny-llama-ternary"):
        kit_model = os.path.join(args.kit, model)
        for t in types:
            out = os.path.join(args.work, f"{model}-{t}.gguf")
            if not convert(args, kit_model, out, "--type", t):
                continue
            conformance(args, kit_model, out)
            kit_file = os.path.join(kit_model, "gguf", f"{model}-{t}.gguf")
            if os.path.exists(kit_file):
                g = same_layout(out, kit_file, f"{model} {t}")
                if model == "tiny-llama-ternary":
                    check(g.kv.get("tokenizer.ggml.pre") == "llama-bpe", f"{model} {t}: tokenizer.ggml.pre llama-bpe")
    requantize_chain(args)
    master_variant(args)
    damaged_inputs(args)
    gen_model(args)
    tokenizer_vocab(args)
    print(f"convert: {'PASS' if not FAILS else 'FAIL'} ({len(FAILS)} failed)")
    sys.exit(1 if FAILS else 0)


main()
