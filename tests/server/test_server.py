"""Tests of `modrwkv serve` over loopback, with the official `openai` client and raw sockets.

Run by tests/cli_serve.sh, which starts the servers (tiny random models from tests/fixtures) and passes their
URLs. Every check prints one line; the script ends with "N passed, M failed" and exits non-zero on a failure.

  --text URL      text model server (--parallel 32)
  --vision URL    ModRWKV v1 vision model server
  --audio URL     ModRWKV v1 audio model server
  --limits URL    text model server with tight limits (--parallel 1 --max-queue 1 --max-body-mb 1
                  --max-media-mb 1 --client-timeout 2 --max-connections 8)
  --duration S    seconds of the 32-stream load test (default 20; 60 for the full run)
"""
import argparse
import base64
import json
import os
import random
import socket
import sys
import threading
import time
import urllib.parse

import openai

RESULTS = {"passed": 0, "failed": 0}


def check(name, cond, detail=""):
    if cond:
        RESULTS["passed"] += 1
        print(f"ok    {name}")
    else:
        RESULTS["failed"] += 1
        print(f"FAIL  {name} {detail}")
    sys.stdout.flush()
    return cond


def client(url, timeout=60):
    return openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=timeout)


def raw(url, method, path, body=b"", headers=None, timeout=30):
    """One HTTP/1.1 request on a fresh socket; returns (status, headers dict, body bytes)."""
    u = urllib.parse.urlparse(url)
    s = socket.create_connection((u.hostname, u.port), timeout=timeout)
    h = {"Host": f"{u.hostname}:{u.port}", "Connection": "close", "Content-Length": str(len(body))}
    h.update(headers or {})
    req = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
    try:
        s.sendall(req.encode() + body)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may answer (413) and close before reading a huge body
    data = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    hd = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hd[k.strip().lower()] = v.strip()
    if hd.get("transfer-encoding") == "chunked":
        out, r = b"", rest
        while r:
            size_s, _, r = r.partition(b"\r\n")
            size = int(size_s.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            out += r[:size]
            r = r[size + 2:]
        rest = out
    return status, hd, rest


def error_of(body):
    try:
        e = json.loads(body)["error"]
        return e if isinstance(e.get("message"), str) and isinstance(e.get("type"), str) else None
    except Exception:
        return None


def post_json(url, path, obj, **kw):
    return raw(url, "POST", path, json.dumps(obj).encode(), {"Content-Type": "application/json"}, **kw)


def expect_error(url, name, status, path="/v1/chat/completions", body=None, obj=None, method="POST"):
    if obj is not None:
        body = json.dumps(obj).encode()
    st, _, b = raw(url, method, path, body or b"", {"Content-Type": "application/json"})
    check(f"{name} -> {status}", st == status and error_of(b) is not None, f"got {st}: {b[:200]!r}")


def user(text):
    return [{"role": "user", "content": text}]


# ------------------------------------------------------------------------------------------ basic API
LONG_PROMPT = "The quick brown fox jumps over the lazy dog. " * 12


def test_long_prompt(url, expect_file):
    """A prompt of 540 tokens is prefilled 128 tokens per scheduler iteration; the greedy continuation must be
    the one `modrwkv generate` gives after one whole prefill."""
    with open(expect_file, encoding="utf-8", errors="replace") as f:
        want = f.read()
    want = want[:-1] if want.endswith("\n") else want
    r = client(url).completions.create(model="m", prompt=LONG_PROMPT, max_tokens=12, temperature=0)
    check("long prompt prefilled in chunks == `modrwkv generate`", r.choices[0].text == want
          and r.usage.prompt_tokens == len(LONG_PROMPT), f"{r.choices[0].text!r} vs {want!r}")


def test_basic(url):
    c = client(url)
    models = c.models.list()
    check("GET /v1/models lists the model", len(models.data) == 1 and models.data[0].object == "model")
    st, _, b = raw(url, "GET", "/health")
    check("GET /health", st == 200 and json.loads(b)["status"] == "ok")
    st, hd, b = raw(url, "GET", "/")
    check("GET / serves the chat page", st == 200 and hd.get("content-type", "").startswith("text/html")
          and b"/v1/chat/completions" in b)

    r = c.chat.completions.create(model="any", messages=user("Hello"), max_tokens=12, seed=3)
    ok = r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    check("chat completion (openai client)", ok and isinstance(r.choices[0].message.content, str))
    check("usage counts", r.usage.completion_tokens >= 1 and r.usage.prompt_tokens == len("Hello") + 19
          and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, str(r.usage))
    check("finish_reason", r.choices[0].finish_reason in ("stop", "length"))

    # a system message and multi-part text content
    r = c.chat.completions.create(model="m", max_tokens=4, messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}]}])
    check("system message + text parts", r.usage.prompt_tokens == len("Be brief.") + 10 + len("Hi\nthere") + 19,
          str(r.usage))

    # streaming: the client parses the SSE chunks and the final [DONE]
    chunks = list(c.chat.completions.create(model="m", messages=user("Hello"), max_tokens=16, seed=3, stream=True,
                                            stream_options={"include_usage": True}))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    fin = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    check("stream: chunks, one finish_reason, usage", len(chunks) >= 3 and len(fin) == 1 and chunks[-1].usage
          is not None and chunks[-1].object == "chat.completion.chunk")
    r2 = c.chat.completions.create(model="m", messages=user("Hello"), max_tokens=16, seed=3)
    check("stream and non-stream give the same text for the same seed", text == r2.choices[0].message.content,
          f"{text!r} vs {r2.choices[0].message.content!r}")
    r3 = c.chat.completions.create(model="m", messages=user("Hello"), max_tokens=16, seed=4, temperature=1.5)
    r4 = c.chat.completions.create(model="m", messages=user("Hello"), max_tokens=16, seed=4, temperature=1.5)
    check("seed makes sampling reproducible", r3.choices[0].message.content == r4.choices[0].message.content)

    # legacy completions, streamed and not
    r = c.completions.create(model="m", prompt="The cat", max_tokens=10, temperature=0)
    check("completion (openai client)", r.object == "text_completion" and r.usage.prompt_tokens == 7
          and r.usage.completion_tokens == 10 and r.choices[0].finish_reason == "length")
    s = "".join(ch.choices[0].text for ch in c.completions.create(model="m", prompt="The cat", max_tokens=10,
                                                                  temperature=0, stream=True) if ch.choices)
    check("streamed completion == completion (greedy)", s == r.choices[0].text, f"{s!r} vs {r.choices[0].text!r}")

    # stop strings: greedy text, then stop at a piece of it
    full = c.completions.create(model="m", prompt="Once upon", max_tokens=40, temperature=0).choices[0].text
    cand = [i for i in range(2, len(full) - 2) if full[i:i + 2].isascii() and full[i:i + 2].isprintable()]
    if cand:
        stop = full[cand[0]:cand[0] + 2]
        for stream in (False, True):
            if stream:
                got = "".join(ch.choices[0].text for ch in c.completions.create(
                    model="m", prompt="Once upon", max_tokens=40, temperature=0, stop=[stop, "\x01never"],
                    stream=True) if ch.choices)
            else:
                got = c.completions.create(model="m", prompt="Once upon", max_tokens=40, temperature=0,
                                           stop=stop).choices[0].text
            check(f"stop string ends the text before it (stream={stream})", got == full[:full.find(stop)],
                  f"{got!r} vs {full[:full.find(stop)]!r}")
    else:
        check("stop string test has an ASCII piece to stop at", False, repr(full))


# ------------------------------------------------------------------------------------- conversations
def test_conversation(url):
    c = client(url)
    cid = f"test-{random.randrange(1 << 30)}"
    msgs = user("Tell me a story.")
    r1 = c.chat.completions.create(model="m", messages=msgs, max_tokens=20, temperature=0,
                                   extra_body={"conversation_id": cid})
    a1 = r1.choices[0].message.content
    check("turn 1: nothing cached", r1.usage.prompt_tokens_details.cached_tokens == 0)
    state_tokens = r1.usage.prompt_tokens + r1.usage.completion_tokens + (r1.choices[0].finish_reason != "stop")
    msgs += [{"role": "assistant", "content": a1}, {"role": "user", "content": "And then?"}]
    r2 = c.chat.completions.create(model="m", messages=msgs, max_tokens=20, temperature=0,
                                   extra_body={"conversation_id": cid})
    new = r2.usage.prompt_tokens - r2.usage.prompt_tokens_details.cached_tokens
    check("turn 2 reuses the state: only the new turn is evaluated",
          r2.usage.prompt_tokens_details.cached_tokens == state_tokens and new == len("And then?") + 19,
          f"{r2.usage} (state covers {state_tokens})")
    a2 = r2.choices[0].message.content
    msgs += [{"role": "assistant", "content": a2}, {"role": "user", "content": "The end."}]
    # the same id through the header
    r3 = c.chat.completions.create(model="m", messages=msgs, max_tokens=5, temperature=0,
                                   extra_headers={"X-Conversation-Id": cid})
    check("turn 3 (id in the X-Conversation-Id header): only the new turn",
          r3.usage.prompt_tokens - r3.usage.prompt_tokens_details.cached_tokens == len("The end.") + 19, str(r3.usage))
    # an edited history does not match the state: everything is evaluated again
    edited = [{"role": "user", "content": "Something else."}, {"role": "assistant", "content": "x"},
              {"role": "user", "content": "Hm?"}]
    r4 = c.chat.completions.create(model="m", messages=edited, max_tokens=5, temperature=0,
                                   extra_body={"conversation_id": cid})
    check("edited history: the state is rebuilt", r4.usage.prompt_tokens_details.cached_tokens == 0)
    st, _, b = raw(url, "GET", "/metrics")
    m = dict(ln.rsplit(" ", 1) for ln in b.decode().splitlines() if ln and not ln.startswith("#"))
    check("metrics report cached prompt tokens", float(m.get("modrwkv_prompt_tokens_cached_total", 0)) > 0, str(m))
    check("metrics: tokens/s, queue length", "modrwkv_decode_tokens_per_second" in m and "modrwkv_queue_length" in m)


# ---------------------------------------------------------------------------------------- multimodal
def data_url(path, mime):
    with open(path, "rb") as f:
        return f"data:{mime};base64," + base64.b64encode(f.read()).decode()


def test_vision(url, fix, expect_file):
    c = client(url)
    img = data_url(os.path.join(fix, "media/image_a.png"), "image/png")
    r = c.chat.completions.create(model="m", max_tokens=8, temperature=0, messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": img}}]}])
    with open(expect_file, encoding="utf-8", errors="replace") as f:
        want = f.read().rstrip("\n")
    check("image (data URL) answer == `modrwkv chat --image` answer", r.choices[0].message.content == want,
          f"{r.choices[0].message.content!r} vs {want!r}")
    check("image features count as prompt tokens", r.usage.prompt_tokens > len("What is this?") + 19, str(r.usage))
    st, _, b = post_json(url, "/v1/chat/completions", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=="}}]}]})
    check("a truncated PNG -> 400", st == 400 and error_of(b) is not None, f"{st} {b[:200]!r}")
    st, _, b = post_json(url, "/v1/chat/completions", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVsbG8gd29ybGQ="}}]}]})
    check("base64 that is not an image -> 400", st == 400 and "PNG" in (error_of(b) or {}).get("message", ""))
    st, _, b = post_json(url, "/v1/chat/completions", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": os.path.abspath(os.path.join(fix, "media/image_a.png"))}}]}]})
    check("a local path without --allow-local-files -> 400", st == 400 and "allow-local-files" in b.decode())
    st, _, b = post_json(url, "/v1/chat/completions", {"messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}]}]})
    check("audio to a vision model -> 400", st == 400 and "images" in b.decode())
    # streamed, with the image in a conversation: the second turn does not encode it again
    cid = f"img-{random.randrange(1 << 30)}"
    msgs = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": img}},
                                         {"type": "text", "text": "Describe it."}]}]
    chunks = list(c.chat.completions.create(model="m", messages=msgs, max_tokens=6, temperature=0, stream=True,
                                            stream_options={"include_usage": True},
                                            extra_body={"conversation_id": cid}))
    a = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    u1 = chunks[-1].usage
    msgs += [{"role": "assistant", "content": a}, {"role": "user", "content": "More."}]
    r2 = c.chat.completions.create(model="m", messages=msgs, max_tokens=4, temperature=0,
                                   extra_body={"conversation_id": cid})
    check("image conversation: turn 2 evaluates only its text", u1 is not None and
          r2.usage.prompt_tokens - r2.usage.prompt_tokens_details.cached_tokens == len("More.") + 19, str(r2.usage))


def test_audio(url, fix):
    c = client(url)
    with open(os.path.join(fix, "media/speech.wav"), "rb") as f:
        wav = base64.b64encode(f.read()).decode()
    r = c.chat.completions.create(model="m", max_tokens=6, temperature=0, messages=[{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": wav, "format": "wav"}}, {"type": "text", "text": "Transcribe."}]}])
    check("input_audio (base64 WAV)", r.usage.prompt_tokens > len("Transcribe.") + 19, str(r.usage))
    expect_error(url, "invalid base64 audio", 400, obj={"messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "not base64!!", "format": "wav"}}]}]})
    expect_error(url, "base64 that is not audio", 400, obj={"messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": base64.b64encode(b"garbage" * 50).decode(), "format": "wav"}}]}]})
    expect_error(url, "image to an audio model", 400, obj={"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_url(os.path.join(fix, "media/image_a.png"), "image/png")}}]}]})


# ----------------------------------------------------------------------------------- malformed input
def test_malformed(url, limits):
    expect_error(url, "bad JSON", 400, body=b'{"messages": [')
    expect_error(url, "JSON that is not an object", 400, body=b'[1,2]')
    expect_error(url, "missing messages", 400, obj={"model": "m"})
    expect_error(url, "messages not an array", 400, obj={"messages": "hi"})
    expect_error(url, "empty messages", 400, obj={"messages": []})
    expect_error(url, "message without role", 400, obj={"messages": [{"content": "hi"}]})
    expect_error(url, "unknown role", 400, obj={"messages": [{"role": "wizard", "content": "hi"}]})
    expect_error(url, "content of the wrong type", 400, obj={"messages": [{"role": "user", "content": 5}]})
    expect_error(url, "unknown content part", 400, obj={"messages": [{"role": "user", "content": [{"type": "video"}]}]})
    expect_error(url, "invalid UTF-8 quoted in the error stays valid JSON", 400,
                 body=b'{"messages":[{"role":"user","content":[{"type":"\xff\xfevideo"}]}]}')
    expect_error(url, "temperature as a string", 400, obj={"messages": user("hi"), "temperature": "hot"})
    expect_error(url, "temperature out of range", 400, obj={"messages": user("hi"), "temperature": 7})
    expect_error(url, "top_p out of range", 400, obj={"messages": user("hi"), "top_p": 1.5})
    expect_error(url, "max_tokens 0", 400, obj={"messages": user("hi"), "max_tokens": 0})
    expect_error(url, "max_tokens fractional", 400, obj={"messages": user("hi"), "max_tokens": 2.5})
    expect_error(url, "max_tokens above the server limit", 400, obj={"messages": user("hi"), "max_tokens": 10 ** 8})
    expect_error(url, "stop as a number", 400, obj={"messages": user("hi"), "stop": 5})
    expect_error(url, "five stop strings", 400, obj={"messages": user("hi"), "stop": ["a", "b", "c", "d", "e"]})
    expect_error(url, "stream not a bool", 400, obj={"messages": user("hi"), "stream": "yes"})
    expect_error(url, "seed as a string", 400, obj={"messages": user("hi"), "seed": "x"})
    expect_error(url, "n = 2", 400, obj={"messages": user("hi"), "n": 2})
    expect_error(url, "conversation_id not a string", 400, obj={"messages": user("hi"), "conversation_id": 7})
    expect_error(url, "image_url over http", 400, obj={"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}]}]})
    expect_error(url, "invalid base64 image", 400, obj={"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@@"}}]}]})
    expect_error(url, "image to a text-only model", 400, obj={"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]})
    expect_error(url, "completion without prompt", 400, path="/v1/completions", obj={"max_tokens": 3})
    expect_error(url, "completion with an empty prompt", 400, path="/v1/completions", obj={"prompt": ""})
    expect_error(url, "unknown path", 404, path="/v2/nothing", method="GET")
    expect_error(url, "GET on a POST endpoint", 405, path="/v1/chat/completions", method="GET")
    expect_error(url, "POST on a GET endpoint", 405, path="/v1/models", obj={})
    # the openai client raises the matching exception types
    try:
        client(url).chat.completions.create(model="m", messages=user("hi"), temperature=9)
        check("openai client gets BadRequestError", False)
    except openai.BadRequestError as e:
        check("openai client gets BadRequestError", e.status_code == 400)

    # limits server: 1 MiB body, 1 MiB media, 1 sequence, 1 queued, 8 connections, 2 s client timeout
    big = b'{"messages":[{"role":"user","content":"' + b"a" * (2 << 20) + b'"}]}'
    st, _, b = raw(limits, "POST", "/v1/chat/completions", big, {"Content-Type": "application/json"})
    check("body over --max-body-mb -> 413", st == 413 and error_of(b) is not None, f"{st} {b[:200]!r}")
    # the same without Content-Length (chunked upload): counted while reading
    u = urllib.parse.urlparse(limits)
    s = socket.create_connection((u.hostname, u.port), timeout=30)
    s.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
              f"Content-Type: application/json\r\nConnection: close\r\n\r\n".encode())
    try:
        for _ in range(3):
            s.sendall(b"%x\r\n" % (600 << 10) + b" " * (600 << 10) + b"\r\n")
        s.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    resp = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            resp += d
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    check("chunked body over the limit -> 413", resp.startswith(b"HTTP/1.1 413"), repr(resp[:100]))
    media = base64.b64encode(b"\x89PNG\r\n\x1a\n" + os.urandom(800 << 10)).decode()
    expect_error(limits, "media over --max-media-mb -> 413", 413, obj={"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + media}}]}]})
    # queue full: 1 running + 1 queued; the others get 429
    codes = []
    lock = threading.Lock()

    def one():
        st, _, _ = post_json(limits, "/v1/completions", {"prompt": "Hi", "max_tokens": 4000, "temperature": 0})
        with lock:
            codes.append(st)

    ts = [threading.Thread(target=one) for _ in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    check("queue full -> 429 (and the others succeed)", codes.count(429) >= 1 and codes.count(200) >= 2
          and set(codes) <= {200, 429}, str(codes))
    # too many connections -> 503
    idle = [socket.create_connection((u.hostname, u.port)) for _ in range(9)]
    time.sleep(0.3)
    st, _, b = post_json(limits, "/v1/completions", {"prompt": "Hi", "max_tokens": 2})
    check("over --max-connections -> 503", st == 503 and error_of(b) is not None, f"{st} {b[:200]!r}")
    for s in idle:
        s.close()
    time.sleep(0.3)
    # slow clients: half a request, then silence; the server drops them after --client-timeout
    slow_head = socket.create_connection((u.hostname, u.port))
    slow_head.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
    slow_body = socket.create_connection((u.hostname, u.port))
    slow_body.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"prompt\":")
    t0 = time.time()
    st, _, _ = post_json(limits, "/v1/completions", {"prompt": "Hi", "max_tokens": 2})
    check("other clients are served while slow clients hang", st == 200 and time.time() - t0 < 2, str(st))
    for name, s in (("headers", slow_head), ("body", slow_body)):
        s.settimeout(10)
        t0 = time.time()
        try:
            got = s.recv(1000)
        except (ConnectionResetError, socket.timeout):
            got = b""
        check(f"slow client ({name} never finished) is disconnected after the client timeout",
              not got.startswith(b"HTTP/1.1 200") and time.time() - t0 < 8, f"{got[:60]!r} after {time.time() - t0:.1f}s")
        s.close()


# -------------------------------------------------------------------------------------- concurrency
def test_isolation(url):
    """Greedy answers are the same alone and among many concurrent sequences."""
    c = client(url)
    prompts = [f"Question number {i}: why?" for i in range(8)]
    alone = [c.chat.completions.create(model="m", messages=user(p), max_tokens=24, temperature=0)
             .choices[0].message.content for p in prompts]
    together = [None] * len(prompts)

    def run(i):
        together[i] = client(url).chat.completions.create(model="m", messages=user(prompts[i]), max_tokens=24,
                                                          temperature=0).choices[0].message.content

    ts = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    check("concurrent greedy answers == the same requests one at a time", alone == together)


def metrics(url):
    st, _, b = raw(url, "GET", "/metrics")
    return {k: float(v) for k, v in (ln.rsplit(" ", 1) for ln in b.decode().splitlines() if ln and ln[0] != "#")}


def test_disconnect(url):
    """A client that closes its stream stops its sequence (the server notices when a write fails)."""
    before = metrics(url)["modrwkv_requests_cancelled_total"]
    u = urllib.parse.urlparse(url)
    s = socket.create_connection((u.hostname, u.port), timeout=30)
    body = json.dumps({"prompt": "x", "max_tokens": 4096, "stream": True}).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body)
    first = s.recv(4096)
    s.close()
    t0 = time.time()
    m = metrics(url)
    while time.time() - t0 < 20 and (m["modrwkv_active_sequences"] > 0 or m["modrwkv_requests_cancelled_total"] == before):
        time.sleep(0.1)
        m = metrics(url)
    check("a client that hangs up mid-stream cancels its sequence", first.startswith(b"HTTP/1.1 200")
          and m["modrwkv_requests_cancelled_total"] == before + 1 and m["modrwkv_active_sequences"] == 0, str(m))


def test_timeout(url):
    """--timeout 1 on a model too slow to write 4096 tokens in a second: 504, or an error event in a stream."""
    t0 = time.time()
    st, _, b = post_json(url, "/v1/completions", {"prompt": "x", "max_tokens": 4096})
    e = error_of(b) or {}
    check("request past --timeout -> 504", st == 504 and e.get("type") == "timeout" and time.time() - t0 < 10,
          f"{st} {b[:200]!r}")
    st, _, b = post_json(url, "/v1/completions", {"prompt": "x", "max_tokens": 4096, "stream": True})
    events = [ln[6:] for ln in b.decode(errors="replace").split("\n") if ln.startswith("data: ")]
    check("stream past --timeout ends with an error event and [DONE]", st == 200 and len(events) >= 2
          and events[-1] == "[DONE]" and "timeout" in events[-2], f"{st} {events[-2:]!r}")


def test_load(url, duration, streams=32):
    stop_at = time.time() + duration
    stats = {"requests": 0, "tokens": 0, "errors": 0, "first_error": None}
    lock = threading.Lock()

    def worker(k):
        c = client(url, timeout=120)
        rnd = random.Random(k)
        while time.time() < stop_at:
            try:
                n = rnd.randint(4, 48)
                chunks = list(c.chat.completions.create(
                    model="m", messages=user(f"stream {k} says hello {rnd.random()}"), max_tokens=n,
                    temperature=0.8, seed=rnd.randrange(1 << 30), stream=True, stream_options={"include_usage": True}))
                fin = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
                u = chunks[-1].usage
                if len(fin) != 1 or u is None or u.completion_tokens > n:
                    raise RuntimeError(f"bad stream: finish {fin}, usage {u}")
                with lock:
                    stats["requests"] += 1
                    stats["tokens"] += u.completion_tokens
            except Exception as e:  # noqa: BLE001 - counted and reported
                with lock:
                    stats["errors"] += 1
                    stats["first_error"] = stats["first_error"] or repr(e)

    t0 = time.time()
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(streams)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    dt = time.time() - t0
    print(f"load: {streams} concurrent streams for {dt:.1f} s: {stats['requests']} requests "
          f"({stats['requests'] / dt:.1f}/s), {stats['tokens']} tokens ({stats['tokens'] / dt:.0f} tokens/s), "
          f"{stats['errors']} errors")
    check(f"{streams} concurrent streams for {duration:.0f} s with zero errors",
          stats["errors"] == 0 and stats["requests"] > 0, str(stats["first_error"]))
    st, _, b = raw(url, "GET", "/metrics")
    m = dict(ln.rsplit(" ", 1) for ln in b.decode().splitlines() if ln and not ln.startswith("#"))
    check("sequences were decoded together (mean batch > 1)", float(m["modrwkv_decode_batch_mean"]) > 1, str(m))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--text", required=True)
    ap.add_argument("--vision")
    ap.add_argument("--audio")
    ap.add_argument("--limits")
    ap.add_argument("--slow", help="server of a slower model with --timeout 1")
    ap.add_argument("--fixtures", default="tests/fixtures/modrwkv")
    ap.add_argument("--vision-expect")
    ap.add_argument("--generate-expect")
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    only = set(a.only.split(",")) if a.only else None

    def want(n):
        return only is None or n in only

    if want("basic"):
        test_basic(a.text)
    if want("long") and a.generate_expect:
        test_long_prompt(a.text, a.generate_expect)
    if want("conversation"):
        test_conversation(a.text)
    if want("vision") and a.vision:
        test_vision(a.vision, a.fixtures, a.vision_expect)
    if want("audio") and a.audio:
        test_audio(a.audio, a.fixtures)
    if want("malformed") and a.limits:
        test_malformed(a.text, a.limits)
    if want("isolation"):
        test_isolation(a.text)
    if want("timeout") and a.slow:
        test_timeout(a.slow)
    if want("disconnect"):
        test_disconnect(a.text)
    if want("load"):
        test_load(a.text, a.duration)
    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed")
    sys.exit(1 if RESULTS["failed"] else 0)


if __name__ == "__main__":
    main()
