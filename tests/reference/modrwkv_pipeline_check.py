#!/usr/bin/env python3
"""Compares `modrwkv logits` on the ModRWKV fixtures (tests/fixtures/modrwkv/cases.json) against the goldens.

For every case it runs

    BIN logits -m MODEL --encoder DIR (--image FILE [--image FILE ...] | --audio FILE) --text TEXT
        [--compress K,S --compress-weights FILE] [--vocab FILE] [EXTRA ...]

reads stdout (one logit per line, the last position, the whole vocabulary) and prints max|delta| and the relative
error max|delta| / max|golden| against the named tensor of golden.safetensors (only the listed vocabulary ids
when the case has `golden_cols`). Cases marked expect_error must exit with a non-zero status (not a signal), not
with a usage error, and print a message on stderr that contains every number of the case's `error_mentions`
(e.g. both widths, 40 and 48, for the adapter-width case).

Usage (from the repository root):
    build/refenv/bin/python tests/reference/modrwkv_pipeline_check.py [--bin build/modrwkv] [--only SUBSTR]
        [--tol 1e-3] [--resize-tol 5e-2] [--vocab FILE] [--extra=--threads=1] [--print-cmd]
    build/refenv/bin/python tests/reference/modrwkv_pipeline_check.py --ref      # checks the Python reference CLI
                                                                                 # itself against the goldens
Tolerances (see the fixture README): the goldens are float64; an f32 pipeline lands within ~1e-4 of them when it
reproduces the Hugging Face preprocessing exactly (PIL's 8-bit bilinear resize). A resize that differs by up to one
8-bit level moves these tiny models' logits by up to ~2e-2, so cases whose pictures are resized are judged with
--resize-tol. image_32.png is 32x32 (no resize) and audio involves no resize: those always use --tol.
The numbers are only a no-dependency float parse of stdout; run with --print-cmd to see each command.
Exit status: 0 when every case passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
NO_RESIZE = ("media/image_32.png",)  # the pictures already at the encoder's size


def load_golden(path):
    from safetensors.numpy import load_file
    return load_file(path)


def build_cmd(base, case, fx, vocab, extra):
    cmd = list(base) + ["logits", "-m", os.path.join(fx, case["model"])]
    if case.get("encoder"):
        cmd += ["--encoder", os.path.join(fx, case["encoder"])]
    for im in case.get("image", []):
        cmd += ["--image", os.path.join(fx, im)]
    if case.get("audio"):
        cmd += ["--audio", os.path.join(fx, case["audio"])]
    cmd += ["--text", case["text"]]
    if case.get("compress"):
        cmd += ["--compress", case["compress"], "--compress-weights", os.path.join(fx, case["compress_weights"])]
    if vocab and "v2" in case["model"]:
        cmd += ["--vocab", vocab]
    return cmd + list(extra)


def parse_floats(text):
    out = []
    for i, line in enumerate(text.splitlines()):
        s = line.strip()
        if not s:
            continue
        try:
            out.append(float(s))
        except ValueError:
            raise ValueError(f"stdout line {i + 1} is not a number: {s[:60]!r}") from None
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "modrwkv"))
    ap.add_argument("--ref", action="store_true", help="run tests/reference/modrwkv_ref.py instead of --bin")
    ap.add_argument("--fixtures", default=os.path.join(ROOT, "tests", "fixtures", "modrwkv"))
    ap.add_argument("--only", action="append", default=[], help="run the cases whose name contains this")
    ap.add_argument("--skip", action="append", default=[], help="skip the cases whose name contains this")
    ap.add_argument("--tol", type=float, default=1e-3, help="max|delta| allowed (default 1e-3)")
    ap.add_argument("--resize-tol", type=float, default=5e-2, help="max|delta| for resized pictures (5e-2)")
    ap.add_argument("--vocab", help="World vocabulary for the v2 cases (passed as --vocab)")
    ap.add_argument("--extra", action="append", default=[], help="an extra argument for every command")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--print-cmd", action="store_true")
    a = ap.parse_args(argv)

    fx = os.path.normpath(a.fixtures)
    with open(os.path.join(fx, "cases.json")) as f:
        cases = json.load(f)["cases"]
    golden = load_golden(os.path.join(fx, "golden.safetensors"))
    base = [sys.executable, os.path.join(HERE, "modrwkv_ref.py")] if a.ref else [a.bin]
    if not a.ref and not os.access(a.bin, os.X_OK):
        print(f"{a.bin}: not an executable (build it, or give --bin)", file=sys.stderr)
        return 2

    import numpy as np
    n_fail = n_run = 0
    print(f"{'case':34s} {'n':>6s} {'max|d|':>10s} {'rel':>10s} {'tol':>8s}  result")
    for case in cases:
        name = case["name"]
        if a.only and not any(s in name for s in a.only):
            continue
        if any(s in name for s in a.skip):
            continue
        n_run += 1
        cmd = build_cmd(base, case, fx, a.vocab if not a.ref else None, a.extra)
        if a.print_cmd:
            print("  $ " + " ".join(shlex.quote(c) for c in cmd))
        try:
            p = subprocess.run(cmd, capture_output=True, timeout=a.timeout)
        except subprocess.TimeoutExpired:
            print(f"{name:34s} {'':>6s} {'':>10s} {'':>10s} {'':>8s}  FAIL (timeout after {a.timeout:g} s)")
            n_fail += 1
            continue
        err = p.stderr.decode("utf-8", "replace").strip()
        if case.get("expect_error"):
            # a real rejection: non-zero exit (not a signal), a message that names the numbers at fault, and not
            # a usage error (an unknown option would otherwise pass as an "error")
            words = [w for w in case.get("error_mentions", [])
                     if not re.search(r"(?<!\d)" + re.escape(w) + r"(?!\d)", err)]
            usage = re.search(r"unknown option|usage:", err, re.IGNORECASE)
            ok = p.returncode > 0 and bool(err) and not words and not usage
            why = (f"exit {p.returncode}" if p.returncode >= 0 else f"killed by signal {-p.returncode}")
            first = err.splitlines()[-1] if err else "(no message on stderr)"
            note = " (a usage error, not a rejection)" if usage else f" (message lacks {words})" if words else ""
            print(f"{name:34s} {'':>6s} {'':>10s} {'':>10s} {'':>8s}  {'ok' if ok else 'FAIL'}: expected an error; "
                  f"{why}: {first[:120]}{note}")
            n_fail += not ok
            continue
        if p.returncode != 0:
            last = err.splitlines()[-1] if err else ""
            print(f"{name:34s} {'':>6s} {'':>10s} {'':>10s} {'':>8s}  FAIL: exit {p.returncode}: {last[:120]}")
            n_fail += 1
            continue
        try:
            got = np.array(parse_floats(p.stdout.decode("utf-8", "replace")), dtype=np.float64)
        except ValueError as e:
            print(f"{name:34s}  FAIL: {e}")
            n_fail += 1
            continue
        want = golden[case["golden"]].astype(np.float64).reshape(-1)
        if case.get("golden_cols"):
            cols = golden[case["golden_cols"]].astype(np.int64)
            if got.size <= int(cols.max()):
                print(f"{name:34s} {got.size:6d}  FAIL: {got.size} values, the golden ids go up to {cols.max()}")
                n_fail += 1
                continue
            got = got[cols]
        elif got.size != want.size:
            print(f"{name:34s} {got.size:6d}  FAIL: {got.size} values, expected {want.size}")
            n_fail += 1
            continue
        d = float(np.abs(got - want).max())
        rel = d / float(np.abs(want).max())
        resized = any(im not in NO_RESIZE for im in case.get("image", []))
        tol = a.resize_tol if resized else a.tol
        ok = np.isfinite(got).all() and d <= tol
        print(f"{name:34s} {got.size:6d} {d:10.3e} {rel:10.3e} {tol:8.1e}  {'ok' if ok else 'FAIL'}"
              f"{'  (resized picture)' if resized else ''}")
        n_fail += not ok
    print(f"{n_run - n_fail}/{n_run} cases pass")
    return 0 if n_fail == 0 and n_run > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
