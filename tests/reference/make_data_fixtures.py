#!/usr/bin/env python3
"""Fixtures for tests/test_data.c: small training-data files (LLaVA JSON array and JSONL, audio and text JSONL,
CSV series, malformed variants) and the golden token/label sequences of their good records.

Made with:
    build/refenv/bin/python tests/reference/make_data_fixtures.py ../shared/assets/rwkv_vocab_v20230424.txt

The goldens use the official `rwkv` package's tokenizer (rwkv.rwkv_tokenizer.TRIE_TOKENIZER) and the rules of
src/train/data.h, written here independently of the C code:
  * LLaVA: every turn is tokenised on its own: user "\\x16User: {v}\\x17" (split at each "<image>", the marker
    removed, media position = number of tokens before it), assistant "\\x16Assistant: {v}\\x17" (supervised),
    system "\\x16System: {v}\\x17".
  * audio: "\\x16Assistant: {text}\\x17", all supervised, media at 0.  text: the text, all supervised.
  * labels[i] = tokens[i+1] if token i+1 is supervised else -100; labels[-1] = -100.
  * media_target[j] = tokens[media_pos[j]] if that token is supervised else -100.
Output: tests/fixtures/data/* and tests/fixtures/data/golden.safetensors with, per good record k of file F (in
file order), int32 tensors "F.k.tokens", "F.k.labels", "F.k.media" = [n_media, pos_0, target_0, pos_1, target_1, ...],
and "F.count" = [number of good records].
"""
import json
import os
import sys

import numpy as np
from rwkv.rwkv_tokenizer import TRIE_TOKENIZER
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures", "data")
IGN = -100


def main():
    vocab = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "..", "shared", "assets",
                                                               "rwkv_vocab_v20230424.txt")
    tk = TRIE_TOKENIZER(vocab)
    enc = lambda s: tk.encodeBytes(s.encode("utf-8"))
    os.makedirs(os.path.join(OUT, "media"), exist_ok=True)
    for name in ["cat.png", "dog.jpg", "one.wav", "two.wav"]:
        with open(os.path.join(OUT, "media", name), "wb") as f:
            f.write(b"placeholder media file: only its existence matters to the data loader\n")

    def finish(toks, sup, mpos):
        n = len(toks)
        labels = [toks[i + 1] if sup[i + 1] else IGN for i in range(n - 1)] + [IGN]
        target = [toks[p] if p < n and sup[p] else IGN for p in mpos]
        return toks, labels, mpos, target

    def llava(rec):
        toks, sup, mpos = [], [], []
        for turn in rec["conversations"]:
            role, v = turn["from"].lower(), turn["value"]
            if role in ("human", "user"):
                parts = ("\x16User: " + v + "\x17").split("<image>")
                for i, p in enumerate(parts):
                    if i:
                        mpos.append(len(toks))
                    t = enc(p)
                    toks += t
                    sup += [0] * len(t)
            else:
                name = "Assistant" if role in ("gpt", "assistant") else "System"
                t = enc("\x16" + name + ": " + v + "\x17")
                toks += t
                sup += [1 if name == "Assistant" else 0] * len(t)
        return finish(toks, sup, mpos)

    def audio(rec):
        t = enc("\x16Assistant: " + rec["text"] + "\x17")
        return finish(t, [1] * len(t), [0])

    def text(rec):
        t = enc(rec["text"])
        return finish(t, [1] * len(t), [])

    img = lambda q, a, im="media/cat.png": {"image": im, "conversations": [{"from": "human", "value": q},
                                                                             {"from": "gpt", "value": a}]}
    # (record, good?) in file order; the bad ones say why in a comment
    llava_recs = [
        (img("<image>\nWhat animal is this?", "A cat."), True),
        ({"id": "x1", "image": "media/dog.jpg", "conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "Describe {\"the\"} [picture], \\ here: <image>"},
            {"from": "gpt", "value": "It's a dog \u00e9 \u65e5\u672c\u8a9e \U0001F436."},
            {"from": "human", "value": "And the colour?"},
            {"from": "gpt", "value": "Brown.\nMostly \"dark\" brown."}]}, True),
        (img("<image>\nWhat is it?", "Nothing.", "media/missing.png"), False),   # media file missing
        (img("What is it?", "A cat."), False),                                     # no <image> marker
        ({"image": "media/cat.png", "conversations": "hello"}, False),             # conversations not an array
        ({"image": "media/cat.png", "conversations": [{"from": "human", "value": 42}]}, False),  # value not string
        ({"conversations": [{"from": "User", "value": "Hi there!"},
                            {"from": "Assistant", "value": "Hello! How can I help?"}]}, True),  # text only
        ({"image": "media/cat.png", "conversations": [{"from": "human", "value": "<image>"},
                                                      {"from": "bot", "value": "?"}]}, False),  # unknown role
        ({"image": "media/cat.png", "conversations": [{"from": "human", "value": "<image> alone"}]}, False),
        (42, False),                                                              # not an object
        ({"image": ["media/cat.png", "media/dog.jpg"], "conversations": [
            {"from": "human", "value": "<image>\n<image>\nCompare them."},
            {"from": "gpt", "value": "Two animals."}]}, True),
    ]
    golden = {}

    def add(fname, recs, fn):
        k = 0
        for rec, good in recs:
            if not good:
                continue
            toks, labels, mpos, target = fn(rec)
            golden[f"{fname}.{k}.tokens"] = np.array(toks, dtype=np.int32)
            golden[f"{fname}.{k}.labels"] = np.array(labels, dtype=np.int32)
            media = [len(mpos)] + [x for p, t in zip(mpos, target) for x in (p, t)]
            golden[f"{fname}.{k}.media"] = np.array(media, dtype=np.int32)
            k += 1
        golden[f"{fname}.count"] = np.array([k], dtype=np.int32)

    # LLaVA as a pretty-printed JSON array (records span lines)
    with open(os.path.join(OUT, "llava.json"), "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps([r for r, _ in llava_recs], indent=2, ensure_ascii=False) + "\n")
    add("llava.json", llava_recs, llava)

    # The same records as JSONL with a BOM, CRLF line ends, a blank line and extra bad lines
    extra_bad = ['{"image": "media/cat.png", "conversations": [', '{"text": "unterminated string}',
                 '{"conversations": []} trailing']
    with open(os.path.join(OUT, "llava_crlf.jsonl"), "wb") as f:
        f.write(b"\xef\xbb\xbf")
        for i, (r, _) in enumerate(llava_recs):
            f.write(json.dumps(r, ensure_ascii=(i % 2 == 1)).encode("utf-8") + b"\r\n")
            if i == 3:
                f.write(b"\r\n")
        for line in extra_bad:
            f.write(line.encode() + b"\r\n")
    add("llava_crlf.jsonl", llava_recs, llava)

    audio_recs = [
        ({"audio": "media/one.wav", "text": "one"}, True),
        ({"audio": "media/nope.wav", "text": "missing file"}, False),
        ({"audio": "media/two.wav", "text": 2.5}, False),
        ({"audio": "media/two.wav", "text": "Two point five, \u4e8c\u70b9\u4e94."}, True),
    ]
    with open(os.path.join(OUT, "audio.jsonl"), "w", encoding="utf-8", newline="\n") as f:
        for r, _ in audio_recs:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    add("audio.jsonl", audio_recs, audio)

    text_recs = [
        ({"text": "Hello world. This is plain text for training."}, True),
        ({"text": ""}, False),
        ({"txt": "wrong key"}, False),
        ({"text": "\u5e8a\u524d\u660e\u6708\u5149\uff0c\u7591\u662f\u5730\u4e0a\u971c\u3002\n\n" + "tab\tand \\ backslash"}, True),
        ({"text": "x"}, True),
    ]
    with open(os.path.join(OUT, "text.jsonl"), "w", encoding="utf-8", newline="\n") as f:
        for r, _ in text_recs:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    add("text.jsonl", text_recs, text)

    # A JSON array cut in the middle of its third record
    body = json.dumps([r for r, _ in text_recs[:1]] + [{"text": "second"}, {"text": "third, cut"}], indent=1)
    with open(os.path.join(OUT, "truncated.json"), "w", newline="\n") as f:
        f.write(body[: body.index("third") + 3])
    # Every record bad
    with open(os.path.join(OUT, "all_bad.jsonl"), "w", newline="\n") as f:
        f.write('{"text": 1}\n{"text": ""}\n[1, 2]\n{"text": "no end\n')

    # CSV series
    def csv(name, text_, crlf=False):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(text_.replace("\n", "\r\n" if crlf else "\n").encode("utf-8"))

    csv("series.csv", '"date",a,"b (unit)", c\n2020-01-01 00:00,1.5,-2,3e2\n2020-01-01 01:00, 4 ,5.25,-6e-1\n'
        "\n2020-01-01 02:00,7,8,9\n", crlf=True)
    csv("bad_empty.csv", "date,a,b\nx,1,2\ny,3,\n")
    csv("bad_text.csv", "date,a,b\nx,1,2\ny,3,abc\n")
    csv("bad_nan.csv", "date,a,b\nx,1,2\ny,nan,4\n")
    csv("bad_inf.csv", "date,a,b\nx,1,2\ny,3,-inf\nz,1e39,1\n")
    csv("bad_fields.csv", "date,a,b\nx,1,2\ny,3\n")
    save_file(golden, os.path.join(OUT, "golden.safetensors"))
    os.chmod(os.path.join(OUT, "golden.safetensors"), 0o644)
    print("wrote", OUT, len(golden), "tensors")


if __name__ == "__main__":
    main()
