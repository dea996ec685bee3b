#!/usr/bin/env python3
"""`bitnet info` on every kit file prints the hyperparameters of its config.json.

Usage: check_info.py --bitnet BIN --kit ../shared/conformance"""
import argparse, json, os, subprocess, sys


def parse(out):
    d = {}
    for line in out.splitlines():
        if ":" in line and not line.startswith(" "):
            k, v = line.split(":", 1)
            d[k.strip()] = v.strip()
    return d


def expected(cfg):
    heads = cfg["num_attention_heads"]
    e = {
        "n_vocab": cfg["vocab_size"], "n_embd": cfg["hidden_size"], "n_layer": cfg["num_hidden_layers"],
        "n_head": heads, "n_head_kv": cfg.get("num_key_value_heads", heads),
        "head_dim": cfg.get("head_dim", cfg["hidden_size"] // heads), "n_ff": cfg["intermediate_size"],
    }
    return {k: str(v) for k, v in e.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bitnet", required=True)
    ap.add_argument("--kit", required=True)
    a = ap.parse_args()
    failures = checked = 0
    for name in ("tiny-bitnet", "tiny-llama-ternary"):
        d = os.path.join(a.kit, name)
        cfg = json.load(open(os.path.join(d, "config.json")))
        want = expected(cfg)
        act = "relu2" if cfg["hidden_act"] == "relu2" else "silu"
        files = [d] + sorted(os.path.join(d, "gguf", f) for f in os.listdir(os.path.join(d, "gguf")))
        for path in files:
            r = subprocess.run([a.bitnet, "info", path], capture_output=True, text=True)
            checked += 1
            if r.returncode != 0:
                print(f"FAIL {path}: exit {r.returncode}: {r.stderr.strip()}")
                failures += 1
                continue
            got = parse(r.stdout)
            bad = [f"{k}={got.get(k)} (want {v})" for k, v in want.items() if got.get(k) != v]
            if float(got.get("rms_eps", "nan")) != float(f"{cfg['rms_norm_eps']:g}"):
                bad.append(f"rms_eps={got.get('rms_eps')}")
            if abs(float(got.get("rope_theta", "0")) - cfg["rope_theta"]) > 1e-3 * cfg["rope_theta"]:
                bad.append(f"rope_theta={got.get('rope_theta')}")
            if not got.get("ffn", "").startswith(act):
                bad.append(f"ffn={got.get('ffn')} (want {act})")
            tied = cfg.get("tie_word_embeddings", False)
            if ("tied" in got.get("output head", "")) != tied:
                bad.append(f"output head={got.get('output head')}")
            n_tensors = int(got.get("tensors", "0"))
            if n_tensors < 2 + 9 * cfg["num_hidden_layers"]:
                bad.append(f"tensors={n_tensors}")
            if bad:
                failures += 1
                print(f"FAIL {path}: " + ", ".join(bad))
            else:
                print(f"ok   {path}")
    print(f"{checked - failures} passed, {failures} failed")
    sys.exit(1 if failures else 0)


main()
