#!/usr/bin/env python3
"""Makes variants of the conformance kit models and checks bitnet.c on each
against correspondingly transformed reference logits (pure Python, stdlib only).

Variants of tiny-bitnet (2B4T style):
  hf-untied      lm_head.weight = token embedding with its rows permuted, so the
                 logits are the reference's with columns permuted — an engine that
                 ignored lm_head (as bitnet.cpp ignores output.weight) fails.
  hf-bitlinear   weight_scale stored inverted with linear_class "bitlinear".
  hf-master      linear weights unpacked to bf16 values (±scale, 0), as a float
                 checkpoint; the loader must ternarize them back exactly.
  gguf-f32       the I2_S GGUF with every ternary tensor rewritten as F32.
  gguf-f16       ... as F16.
  gguf-untied    the I2_S GGUF plus a permuted F16 output.weight.
  gguf-bf16-embd the I2_S GGUF with a BF16 token embedding.
Usage: check_variants.py --bitnet BIN --kit ../shared/conformance --work DIR"""
import argparse, array, json, os, random, shutil, struct, subprocess, sys

# ------------------------------------------------------------ safetensors --

def st_read(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", None)
    tensors = {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        tensors[name] = (t["dtype"], t["shape"], data[b:e])
    return meta, tensors


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
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def bf16_to_f32(raw):
    return struct.unpack(f"<{len(raw)//2}f", b"".join(b"\0\0" + raw[i:i + 2] for i in range(0, len(raw), 2)))


def f32_to_bf16(x):  # round to nearest even
    u = struct.unpack("<I", struct.pack("<f", x))[0]
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return struct.pack("<H", u & 0xFFFF)

# ------------------------------------------------------------------- gguf --

GGUF_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


class Reader:
    def __init__(self, buf):
        self.b, self.p = buf, 0

    def get(self, fmt):
        v = struct.unpack_from("<" + fmt, self.b, self.p)
        self.p += struct.calcsize("<" + fmt)
        return v[0]

    def string(self):
        n = self.get("Q")
        s = self.b[self.p:self.p + n]
        self.p += n
        return s

    def value(self, t):
        if t == 8:
            return self.string()
        if t == 9:
            et, n = self.get("I"), self.get("Q")
            return (et, [self.value(et) for _ in range(n)])
        return self.get(GGUF_SCALAR[t])


def gguf_read(path):
    buf = open(path, "rb").read()
    r = Reader(buf)
    assert r.get("I") == 0x46554747
    version, n_t, n_kv = r.get("I"), r.get("Q"), r.get("Q")
    kvs = []
    for _ in range(n_kv):
        k = r.string()
        t = r.get("I")
        kvs.append((k, t, r.value(t)))
    infos = []
    for _ in range(n_t):
        name = r.string()
        nd = r.get("I")
        ne = [r.get("Q") for _ in range(nd)]
        infos.append([name, ne, r.get("I"), r.get("Q")])
    align = 32
    for k, t, v in kvs:
        if k == b"general.alignment":
            align = v
    start = (r.p + align - 1) // align * align
    ends = sorted(i[3] for i in infos) + [len(buf) - start]
    tensors = []
    for name, ne, typ, off in infos:
        nxt = min(e for e in ends if e > off)
        tensors.append((name, ne, typ, buf[start + off:start + nxt]))
    return version, kvs, tensors


def put_value(t, v):
    if t == 8:
        return struct.pack("<Q", len(v)) + v
    if t == 9:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(put_value(et, x) for x in items)
    return struct.pack("<" + GGUF_SCALAR[t], v)


def gguf_write(path, kvs, tensors, align=32):
    out = [struct.pack("<IIQQ", 0x46554747, 3, len(tensors), len(kvs))]
    for k, t, v in kvs:
        out.append(struct.pack("<Q", len(k)) + k + struct.pack("<I", t) + put_value(t, v))
    off, blobs = 0, []
    for name, ne, typ, raw in tensors:
        out.append(struct.pack("<Q", len(name)) + name + struct.pack("<I", len(ne)) +
                   b"".join(struct.pack("<Q", n) for n in ne) + struct.pack("<IQ", typ, off))
        pad = -len(raw) % align
        blobs.append(raw + b"\0" * pad)
        off += len(raw) + pad
    head = b"".join(out)
    head += b"\0" * (-len(head) % align)
    with open(path, "wb") as f:
        f.write(head + b"".join(blobs))


def i2s_values(raw, ne):
    """Decodes an I2_S tensor (x86 128-blocks, f32 scale trailer) to floats."""
    n = ne[0] * ne[1]
    scale = struct.unpack_from("<f", raw, n // 4)[0]
    planes = [raw[:n // 4].translate(bytes(((b >> s) & 3) for b in range(256))) for s in (6, 4, 2, 0)]
    codes = b"".join(planes[0][i:i + 32] + planes[1][i:i + 32] + planes[2][i:i + 32] + planes[3][i:i + 32]
                     for i in range(0, n // 4, 32))
    return [(-scale, 0.0, scale)[c] for c in codes]

# ------------------------------------------------------------------ checks --

def permuted_reference(kit_model, dst, perm):
    """Reference dir whose logits columns are permuted: new[:, v] = old[:, perm[v]]."""
    os.makedirs(os.path.join(dst, "reference"), exist_ok=True)
    ref = json.load(open(os.path.join(kit_model, "reference", "reference.json")))
    for c in ref["cases"]:
        n, V = c["logits_shape"]
        a = array.array("f")
        a.frombytes(open(os.path.join(kit_model, "reference", c["logits_file"]), "rb").read())
        b = array.array("f", (a[t * V + perm[v]] for t in range(n) for v in range(V)))
        open(os.path.join(dst, "reference", c["logits_file"]), "wb").write(b.tobytes())
    json.dump(ref, open(os.path.join(dst, "reference", "reference.json"), "w"))
    return dst


def copy_hf(src, dst):
    shutil.rmtree(dst, ignore_errors=True)
    os.makedirs(dst)
    for f in os.listdir(src):
        if os.path.isfile(os.path.join(src, f)):
            shutil.copy(os.path.join(src, f), dst)


def make_hf_variants(kit_model, work, perm):
    meta, ts = st_read(os.path.join(kit_model, "model.safetensors"))
    cfg = json.load(open(os.path.join(kit_model, "config.json")))
    made = {}
    # untied with permuted head
    d = os.path.join(work, "hf-untied"); copy_hf(kit_model, d)
    dt, shape, emb = ts["model.embed_tokens.weight"]
    row = len(emb) // shape[0]
    t2 = dict(ts)
    t2["lm_head.weight"] = (dt, shape, b"".join(emb[perm[v] * row:(perm[v] + 1) * row] for v in range(shape[0])))
    st_write(os.path.join(d, "model.safetensors"), meta, t2)
    c2 = dict(cfg, tie_word_embeddings=False)
    json.dump(c2, open(os.path.join(d, "config.json"), "w"))
    made["hf-untied"] = (d, "permuted")
    # bitlinear: inverse scales
    d = os.path.join(work, "hf-bitlinear"); copy_hf(kit_model, d)
    t2 = dict(ts)
    for k, (dt, shape, raw) in ts.items():
        if k.endswith("weight_scale"):
            t2[k] = (dt, shape, f32_to_bf16(1.0 / bf16_to_f32(raw)[0]))
    st_write(os.path.join(d, "model.safetensors"), meta, t2)
    c2 = json.loads(json.dumps(cfg)); c2["quantization_config"]["linear_class"] = "bitlinear"
    json.dump(c2, open(os.path.join(d, "config.json"), "w"))
    made["hf-bitlinear"] = (d, "same")
    # master-weight (float) checkpoint: unpacked ±scale values in bf16, no weight_scale
    d = os.path.join(work, "hf-master"); copy_hf(kit_model, d)
    t2 = {}
    for k, (dt, shape, raw) in ts.items():
        if k.endswith("weight_scale"):
            continue
        if dt == "U8":
            s = bf16_to_f32(ts[k + "_scale"][2])[0]
            rows_q, cols = shape
            vals = [f32_to_bf16(-s), f32_to_bf16(0.0), f32_to_bf16(s)]
            out = []
            for i in range(4):  # packed row r, bits 2i → original row r + i*rows_q
                tr = raw.translate(bytes(((b >> (2 * i)) & 3) for b in range(256)))
                out.append(b"".join(vals[c] for c in tr))
            t2[k] = ("BF16", [rows_q * 4, cols], b"".join(out))
        else:
            t2[k] = (dt, shape, raw)
    st_write(os.path.join(d, "model.safetensors"), meta, t2)
    c2 = json.loads(json.dumps(cfg)); c2["quantization_config"]["quantization_mode"] = "online"
    json.dump(c2, open(os.path.join(d, "config.json"), "w"))
    made["hf-master"] = (d, "same")
    return made


def make_gguf_variants(gguf_path, work, perm):
    version, kvs, tensors = gguf_read(gguf_path)
    made = {}
    for name, typ, pack in (("gguf-f32", 0, "f"), ("gguf-f16", 1, "e")):
        out = []
        for tname, ne, ttyp, raw in tensors:
            if ttyp == 36:
                vals = i2s_values(raw, ne)
                raw = struct.pack(f"<{len(vals)}{pack}", *vals)
                ttyp = typ
            out.append((tname, ne, ttyp, raw))
        kv2 = [(k, t, (1 if typ else 0) if k == b"general.file_type" else v) for k, t, v in kvs]
        p = os.path.join(work, name + ".gguf"); gguf_write(p, kv2, out)
        made[name] = (p, "same")
    emb = next(t for t in tensors if t[0] == b"token_embd.weight")
    assert emb[2] == 1, "kit token_embd is expected to be F16"
    row = len(emb[3]) // emb[1][1]
    head = b"".join(emb[3][perm[v] * row:(perm[v] + 1) * row] for v in range(emb[1][1]))
    p = os.path.join(work, "gguf-untied.gguf")
    gguf_write(p, kvs, tensors + [(b"output.weight", emb[1], 1, head)])
    made["gguf-untied"] = (p, "permuted")
    vals = struct.unpack(f"<{len(emb[3])//2}e", emb[3])
    bf = b"".join(f32_to_bf16(v) for v in vals)
    out = [(n, ne, 30, bf) if n == b"token_embd.weight" else (n, ne, t, r) for n, ne, t, r in tensors]
    p = os.path.join(work, "gguf-bf16-embd.gguf"); gguf_write(p, kvs, out)
    made["gguf-bf16-embd"] = (p, "same")
    return made


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bitnet", required=True)
    ap.add_argument("--kit", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    kit_model = os.path.join(a.kit, "tiny-bitnet")
    os.makedirs(a.work, exist_ok=True)
    V = json.load(open(os.path.join(kit_model, "config.json")))["vocab_size"]
    perm = list(range(V)); random.Random(7).shuffle(perm)
    # The reference for a permuted head: logits'[v] = logits[perm[v]].
    permref = permuted_reference(kit_model, os.path.join(a.work, "ref-permuted"), perm)
    variants = make_hf_variants(kit_model, a.work, perm)
    variants.update(make_gguf_variants(os.path.join(kit_model, "gguf", "tiny-bitnet-i2_s.gguf"), a.work, perm))
    failed = 0
    checker = os.path.join(a.kit, "tools", "check_logits.py")
    for name, (path, ref) in variants.items():
        refdir = permref if ref == "permuted" else kit_model
        r = subprocess.run([sys.executable, checker, refdir, "--", a.bitnet, "logits", "-m", path, "--ids", "{ids}",
                            "-o", "{out}"], capture_output=True, text=True)
        last = (r.stdout.strip().splitlines() or ["(no output)"])[-1]
        ok = r.returncode == 0 and "conformance: PASS" in last
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {last}")
        if not ok:
            print(r.stdout[-2000:], r.stderr[-1000:])
    print(f"variants: {'PASS' if not failed else 'FAIL'} {len(variants) - failed}/{len(variants)}")
    sys.exit(1 if failed else 0)


main()
