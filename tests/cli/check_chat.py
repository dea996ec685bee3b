#!/usr/bin/env python3
"""`bitnet chat` driven through a pipe (no terminal).

Greedy replies are deterministic, so a longer conversation must begin with the
output of a shorter one:
  1. one turn:  exit 0, one non-empty reply ending in a newline, no "> " prompt;
  2. two turns: exit 0, starts with the one-turn output, then a second
     non-empty reply (the KV cache carried the first turn);
  3. "/reset" between two equal messages gives the one-turn reply twice;
  4. "/exit" ends the session: nothing after it is answered;
  5. a small context (-c 48) that fills up: a message on stderr, exit 0.

Usage: check_chat.py --bitnet BIN --model PATH
Last line: "chat: PASS" or "chat: FAIL"."""
import argparse, subprocess, sys

FIRST = "Hello! Tell me a story about a cat."
SECOND = "What did the cat do next?"


def chat(a, lines, *extra):
    cmd = [a.bitnet, "chat", "-m", a.model, "--temp", "0", "-n", "24", *extra]
    r = subprocess.run(cmd, input="".join(l + "\n" for l in lines), capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout, r.stderr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bitnet", required=True)
    ap.add_argument("--model", required=True)
    a = ap.parse_args()
    bad = []

    rc, one, err = chat(a, [FIRST])
    if rc != 0 or not one.strip() or not one.endswith("\n") or one.startswith("> "):
        bad.append(f"one turn: exit {rc}, stdout {one!r}, stderr {err.strip()[-200:]!r}")

    rc, two, err = chat(a, [FIRST, SECOND])
    rest = two[len(one):]
    if rc != 0 or not two.startswith(one) or not rest.strip() or not rest.endswith("\n"):
        bad.append(f"two turns: exit {rc}, first {one!r}, got {two!r}, stderr {err.strip()[-200:]!r}")

    rc, again, err = chat(a, [FIRST, "/reset", FIRST])
    if rc != 0 or again != one + one:
        bad.append(f"/reset: exit {rc}, want {one + one!r}, got {again!r}")

    rc, ended, err = chat(a, [FIRST, "/exit", SECOND])
    if rc != 0 or ended != one:
        bad.append(f"/exit: exit {rc}, want {one!r}, got {ended!r}")

    rc, full, err = chat(a, [FIRST, SECOND, FIRST, SECOND], "-c", "48")
    if rc != 0 or "context" not in err or not full.strip():
        bad.append(f"-c 48: exit {rc}, stdout {full!r}, stderr {err.strip()[-300:]!r}")

    for b in bad:
        print("FAIL " + b)
    print("chat: " + ("FAIL" if bad else "PASS"))
    sys.exit(1 if bad else 0)


main()
