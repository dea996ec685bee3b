#!/usr/bin/env python3
"""bench/run_suite.sh still works: a --quick run (a small gen-model file stands
in for the 1.2 GB 2B4T-shaped one) prints a section per model with its command
line, machine and commit, stores one baseline per model with --save, and
compares against them with --check. Never judges speed.
Prints "suite: PASS" last when everything holds.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

FAILS = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        FAILS.append(what)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bitnet", required=True)
    ap.add_argument("--source", required=True)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bitnet-suite-")
    try:
        stand_in = os.path.join(work, "stand-in.gguf")
        r = subprocess.run([a.bitnet, "gen-model", "custom", stand_in, "--quiet"], capture_output=True, text=True)
        check(r.returncode == 0, "gen-model writes the stand-in model")
        env = dict(os.environ, BITNET_2B4T=stand_in, BITNET_BASELINES=os.path.join(work, "baselines"))
        suite = [os.path.join(a.source, "bench", "run_suite.sh"), "--bitnet", a.bitnet, "--work", work, "--quick"]
        r = subprocess.run(suite + ["--save"], capture_output=True, text=True, env=env, timeout=900)
        print(r.stdout)
        print(r.stderr)
        check(r.returncode == 0, "run_suite.sh --quick --save exits 0 (rc %d)" % r.returncode)
        names = ["kit-tiny-bitnet", "synthetic-1m", "2b4t-shaped"]
        if os.path.exists(os.path.join(a.source, "models", "bitnet-tinystories-i2_s.gguf")):
            names.append("bitnet-tinystories")
            check("perplexity:" in r.stdout, "the bundled model's perplexity is reported")
        for name in names:
            check("### " + name in r.stdout, "a section for " + name)
            path = os.path.join(work, "baselines", name + ".json")
            try:
                with open(path) as f:
                    doc = json.load(f)
                ok = any(w["status"] == "ok" and w["tok_s_mean"] > 0 for w in doc["results"])
            except (OSError, ValueError, KeyError):
                ok = False
            check(ok, "--save stored a baseline for " + name)
        check(r.stdout.count("machine:") == len(names) and "commit" in r.stdout and "`bitnet bench -m" in r.stdout,
              "every section names its command line, machine and commit")
        r = subprocess.run(suite + ["--check"], capture_output=True, text=True, env=env, timeout=900)
        # Quick runs are too short to be steady: only the mechanics are checked.
        check(r.returncode in (0, 3) and r.stdout.count("comparison with baseline") == len(names),
              "--check compares every model with its baseline (rc %d)" % r.returncode)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if FAILS:
        print("suite: FAIL (%d)" % len(FAILS))
        sys.exit(1)
    print("suite: PASS")


if __name__ == "__main__":
    main()
