#!/usr/bin/env python3
"""Throughput of `modrwkv serve` against concurrency: requests/s, generated tokens/s and time to first token
with 1, 4, 16 and 32 concurrent streaming clients (standard library only).

  bench/bench_serve.py -m MODEL [--bin build/modrwkv] [--threads N] [--seconds 10] [--max-tokens 64]
  bench/bench_serve.py --url http://127.0.0.1:8080 ...          (a server that is already running)

Each client loops: POST /v1/chat/completions with stream: true and a fixed max_tokens (the stop token is
ignored only by chance: a short answer counts its real tokens, read from the usage chunk).
"""
import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse


def one_request(host, port, max_tokens, k):
    body = json.dumps({"messages": [{"role": "user", "content": f"Client {k}: tell me about the sea."}],
                       "max_tokens": max_tokens, "temperature": 0.7, "seed": k, "stream": True,
                       "stream_options": {"include_usage": True}})
    c = http.client.HTTPConnection(host, port, timeout=300)
    t0 = time.perf_counter()
    c.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {r.read()[:200]!r}")
    ttft, tokens = None, 0
    for line in r:
        if not line.startswith(b"data: "):
            continue
        data = line[6:].strip()
        if data == b"[DONE]":
            break
        j = json.loads(data)
        if ttft is None and j.get("choices") and j["choices"][0].get("delta", {}).get("content"):
            ttft = time.perf_counter() - t0
        if j.get("usage"):
            tokens = j["usage"]["completion_tokens"]
    c.close()
    return tokens, ttft if ttft is not None else time.perf_counter() - t0


def run_level(host, port, clients, seconds, max_tokens):
    stop = time.perf_counter() + seconds
    lock = threading.Lock()
    st = {"req": 0, "tok": 0, "err": 0, "ttft": []}

    def worker(k):
        i = 0
        while time.perf_counter() < stop:
            try:
                tok, ttft = one_request(host, port, max_tokens, k * 1000 + i)
                with lock:
                    st["req"] += 1
                    st["tok"] += tok
                    st["ttft"].append(ttft)
            except Exception as e:  # noqa: BLE001
                with lock:
                    st["err"] += 1
                print(f"error: {e}", file=sys.stderr)
            i += 1

    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    dt = time.perf_counter() - t0
    ttft = sorted(st["ttft"])
    return st["req"] / dt, st["tok"] / dt, (ttft[len(ttft) // 2] if ttft else 0), st["err"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model")
    ap.add_argument("--url")
    ap.add_argument("--bin", default="build/modrwkv")
    ap.add_argument("--threads", type=int, default=0, help="server threads (default: all cores)")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--levels", default="1,4,16,32")
    ap.add_argument("--extra", default="", help="more `modrwkv serve` options, e.g. '--encoder DIR'")
    a = ap.parse_args()
    levels = [int(x) for x in a.levels.split(",")]
    proc = None
    if a.url:
        u = urllib.parse.urlparse(a.url)
        host, port = u.hostname, u.port
    elif a.model:
        tmp = tempfile.mkdtemp()
        pf = os.path.join(tmp, "port")
        cmd = [a.bin, "serve", "-m", a.model, "--port", "0", "--port-file", pf, "--parallel", str(max(levels)),
               "--max-queue", "1024", "-q"] + (["-t", str(a.threads)] if a.threads else []) + a.extra.split()
        proc = subprocess.Popen(cmd)
        for _ in range(600):
            if os.path.exists(pf) or proc.poll() is not None:
                break
            time.sleep(0.1)
        if not os.path.exists(pf):
            sys.exit("bench_serve: the server did not start")
        host, port = "127.0.0.1", int(open(pf).read())
    else:
        sys.exit("bench_serve: give -m MODEL or --url URL")
    try:
        one_request(host, port, 4, 0)  # warm up
        print(f"modrwkv serve: {a.max_tokens} tokens per request, {a.seconds:g} s per level")
        print(f"{'clients':>8} {'requests/s':>11} {'tokens/s':>10} {'TTFT p50 ms':>12} {'errors':>7}")
        for c in levels:
            rps, tps, ttft, err = run_level(host, port, c, a.seconds, a.max_tokens)
            print(f"{c:>8} {rps:>11.2f} {tps:>10.1f} {ttft * 1000:>12.1f} {err:>7}")
            sys.stdout.flush()
    finally:
        if proc:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


if __name__ == "__main__":
    main()
