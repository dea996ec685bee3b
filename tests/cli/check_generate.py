#!/usr/bin/env python3
"""`bitnet run --temp 0` reproduces the reference greedy continuations.

For every case of <kit>/<model>/reference/reference.json and every file of the
model (the Hugging Face folder and each GGUF in gguf/), runs
    bitnet run -m FILE -p PROMPT -n 40 --temp 0 --ignore-eos --ids-out OUT
and checks the prompt's token ids, then the generated ids up to (not including)
the first step whose reference top-2 margin is below 0.5: past a near-tie two
correct engines may diverge. top2_margin covers every position of all_ids; the
margin deciding generated step i sits at index len(prompt_ids) - 1 + i.

Usage: check_generate.py --bitnet BIN --kit ../shared/conformance [--model NAME ...] [--device D]
Last line: "generate: PASS" or "generate: FAIL"."""
import argparse, json, os, subprocess, sys, tempfile

MARGIN = 0.5
N_PREDICT = 40


def model_files(kit, name):
    d = os.path.join(kit, name)
    ggufs = sorted(f for f in os.listdir(os.path.join(d, "gguf")) if f.endswith(".gguf"))
    return [d] + [os.path.join(d, "gguf", f) for f in ggufs]


def comparable_steps(case):
    """How many generated steps must match: those before the first near-tie."""
    base = len(case["prompt_ids"]) - 1
    margins = case["top2_margin"]
    n = 0
    while n < len(case["greedy_new_ids"]) and base + n < len(margins) and margins[base + n] >= MARGIN:
        n += 1
    return n


def run_case(bitnet, path, case, out, device):
    cmd = [bitnet, "run", "-m", path, "-p", case["prompt"], "-n", str(N_PREDICT), "--temp", "0",
           "--ignore-eos", "--ids-out", out] + (["--device", device] if device else [])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        return f"exit {r.returncode}: {r.stderr.strip()[-300:]}"
    got = json.load(open(out))
    if got["prompt"] != case["prompt_ids"]:
        return f"prompt ids {got['prompt']} != reference {case['prompt_ids']}"
    n = comparable_steps(case)
    gen, ref = got["generated"], case["greedy_new_ids"]
    if len(gen) < n:
        return f"only {len(gen)} tokens generated (stop {got['stop']}), need {n}"
    for i in range(n):
        if gen[i] != ref[i]:
            return f"step {i}: token {gen[i]} != reference {ref[i]} (margin {case['top2_margin'][len(case['prompt_ids']) - 1 + i]:.3f})"
    if not r.stdout:
        return "no text on stdout"
    if "tok/s" not in r.stderr:
        return "no timing line on stderr"
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bitnet", required=True)
    ap.add_argument("--kit", required=True)
    ap.add_argument("--model", action="append", help="kit model name (default: every one)")
    ap.add_argument("--device", help="passed to bitnet run (default: its own, auto)")
    a = ap.parse_args()
    names = a.model or ["tiny-bitnet", "tiny-llama-ternary"]
    failures = checked = compared = 0
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "ids.json")
        for name in names:
            cases = json.load(open(os.path.join(a.kit, name, "reference", "reference.json")))["cases"]
            for path in model_files(a.kit, name):
                bad = []
                for k, case in enumerate(cases):
                    checked += 1
                    compared += comparable_steps(case)
                    why = run_case(a.bitnet, path, case, out, a.device)
                    if why:
                        bad.append(f"case {k} ({case['prompt'][:30]!r}): {why}")
                failures += len(bad)
                print(("FAIL " if bad else "ok   ") + path)
                for b in bad:
                    print("     " + b)
    print(f"{checked - failures} of {checked} runs passed ({compared} greedy steps compared)")
    print("generate: " + ("FAIL" if failures else "PASS"))
    sys.exit(1 if failures else 0)


main()
