#!/usr/bin/env python3
"""`bitnet run` and `bitnet chat` options, limits and errors.

  - bad arguments: non-zero exit, exactly one line on stderr, nothing on stdout;
  - a prompt longer than -c: a clear error; with --truncate-prompt it runs;
  - -n past the end of the context: stops cleanly there, with a message;
  - the prompt read from -p, -f FILE and stdin gives the same text;
  - --seed makes sampling reproducible, and different seeds differ;
  - stdout holds only the generated text, stderr the timing line.

Usage: check_run.py --bitnet BIN --model PATH
Last line: "run: PASS" or "run: FAIL"."""
import argparse, json, os, subprocess, sys, tempfile

PROMPT = "Once upon a time"
LONG = "Once upon a time, there was a little girl named Lily. She loved to play outside in the sun. " * 3


class Checker:
    def __init__(self, a):
        self.a, self.bad, self.n = a, [], 0

    def run(self, args, stdin=None, cmd="run", model=True):
        argv = [self.a.bitnet, cmd] + (["-m", self.a.model] if model else []) + args
        return subprocess.run(argv, input=stdin if stdin is not None else "", capture_output=True, text=True,
                              timeout=300)

    def check(self, ok, what, r=None):
        self.n += 1
        if not ok:
            extra = f" (exit {r.returncode}, stdout {r.stdout[:120]!r}, stderr {r.stderr.strip()[-300:]!r})" if r else ""
            self.bad.append(what + extra)

    def usage_error(self, args, cmd="run", want=None):
        r = self.run(args, cmd=cmd)
        lines = r.stderr.strip().splitlines()
        ok = r.returncode != 0 and len(lines) == 1 and not r.stdout and (want is None or want in lines[0])
        self.check(ok, f"{cmd} {' '.join(args)}: want one error line" + (f" with {want!r}" if want else ""), r)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bitnet", required=True)
    ap.add_argument("--model", required=True)
    c = Checker(ap.parse_args())

    for args in (["-p", PROMPT, "--temp", "abc"], ["-p", PROMPT, "--top-p", "2"], ["-p", PROMPT, "--bogus"],
                 ["-p", PROMPT, "-n"], ["-p", PROMPT, "-n", "-5"], ["-p", PROMPT, "-f", "x"],
                 ["-p", PROMPT, "--seed", "-1"], ["-p", PROMPT, "--logit-bias", "5"], ["-p", PROMPT, "-c", "ten"],
                 ["-p", PROMPT, "--repeat-penalty", "0"], ["-p", PROMPT, "--device", "tpu"],
                 ["-p", "", "--no-bos"], ["-f", "/nonexistent/prompt.txt"]):
        c.usage_error(args)
    r = subprocess.run([c.a.bitnet, "run", "-m", "/nonexistent/model.gguf", "-p", PROMPT], capture_output=True,
                       text=True, timeout=60)
    c.check(r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, "missing model file: one error line", r)
    c.usage_error(["--chat-format", "nope"], cmd="chat", want="chat-format")
    c.usage_error(["--top-k", "x"], cmd="chat")

    # A prompt longer than the context.
    c.usage_error(["-c", "16", "-p", LONG], want="context")
    with tempfile.TemporaryDirectory() as tmp:
        ids = os.path.join(tmp, "ids.json")
        r = c.run(["-n", "0", "-p", LONG, "--ids-out", ids])
        full = json.load(open(ids))["prompt"] if r.returncode == 0 else []
        r = c.run(["-c", "32", "-n", "4", "--temp", "0", "-p", LONG, "--truncate-prompt", "--ids-out", ids])
        ok = r.returncode == 0 and "truncated" in r.stderr and len(full) > 32
        if ok:  # room for 4 tokens: BOS + the last 27 prompt tokens
            got = json.load(open(ids))
            ok = got["prompt"] == full[:1] + full[-27:] and len(got["generated"]) <= 4
        c.check(ok, "--truncate-prompt keeps BOS + the last tokens, leaving room for -n", r)

        # -n past the end of the context: 16 positions, 5 prompt tokens → 12 tokens.
        r = c.run(["-c", "16", "-n", "100", "--temp", "0", "--ignore-eos", "-p", PROMPT, "--ids-out", ids])
        ok = r.returncode == 0 and "16-token context" in r.stderr
        if ok:
            got = json.load(open(ids))
            ok = got["stop"] == "context" and len(got["generated"]) == 16 - len(got["prompt"]) + 1
        c.check(ok, "-n larger than the context stops cleanly at its end", r)

        # -p, -f and stdin give the same text; stdout is only the text.
        base = c.run(["-n", "12", "--temp", "0", "-p", PROMPT])
        c.check(base.returncode == 0 and base.stdout and "tok/s" not in base.stdout and
                base.stderr.strip().splitlines()[-1].startswith("prompt: "), "stdout text, stderr timing", base)
        path = os.path.join(tmp, "prompt.txt")
        with open(path, "w") as f:
            f.write(PROMPT)
        r = c.run(["-n", "12", "--temp", "0", "-f", path])
        c.check(r.returncode == 0 and r.stdout == base.stdout, "-f FILE = -p", r)
        r = c.run(["-n", "12", "--temp", "0"], stdin=PROMPT)
        c.check(r.returncode == 0 and r.stdout == base.stdout, "stdin = -p", r)

    # Seeds.
    samp = ["-n", "30", "--temp", "1.0", "--top-k", "0", "--top-p", "1", "--min-p", "0", "--ignore-eos", "-p", PROMPT]
    r1, r2 = c.run(samp + ["--seed", "7"]), c.run(samp + ["--seed", "7"])
    r3 = c.run(samp + ["--seed", "8"])
    c.check(r1.returncode == 0 and r1.stdout == r2.stdout and r1.stdout, "same seed, same text", r1)
    c.check(r3.returncode == 0 and r3.stdout != r1.stdout, "different seeds, different text", r3)

    for b in c.bad:
        print("FAIL " + b)
    print(f"{c.n - len(c.bad)} of {c.n} checks passed")
    print("run: " + ("FAIL" if c.bad else "PASS"))
    sys.exit(1 if c.bad else 0)


main()
