"""Reference values for tests/test_metrics.c (src/eval/metrics.c): VQA answer normalisation and exact match,
VQAv2 consensus accuracy, ASR normalisation, WER, CER (with and without spaces), MSE and MAE.

The definitions are the ones documented in src/eval/metrics.h, implemented here independently with Python
regular expressions and a plain dynamic-programming Levenshtein. WER and CER are cross-checked against jiwer
(installed only for this script: build/refenv/bin/pip install jiwer) on every case where jiwer's own text
handling coincides with ours (single spaces, non-empty reference).

It also writes a small training log in the trainer's JSONL format (tests/fixtures/eval/train_log.jsonl: 120
steps of a decaying noisy loss, warmup + cosine learning rate, a held-out point every 20 steps) for the
`modrwkv plot` tests in tests/cli_eval.sh.

Run:  build/refenv/bin/python tests/reference/make_metrics_fixtures.py
      (writes tests/fixtures/eval/metrics_cases.json and tests/fixtures/eval/train_log.jsonl)
"""
import json
import os
import re

import numpy as np

try:
    import jiwer
except ImportError:  # the fixtures can be remade without jiwer; the cross-check is skipped then
    jiwer = None

# ------------------------------------------------------------------------------------------- VQA

PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
           "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = {"a", "an", "the"}
DIGIT_COMMA_DIGIT = re.compile(r"[0-9],[0-9]")
PERIOD = re.compile(r"\.(?![0-9])")
ASCII_WS = " \t\n\r\v\f"


def vqa_normalize(s):
    s = s.replace("\n", " ").replace("\t", " ").strip(ASCII_WS)
    out = s
    dcd = DIGIT_COMMA_DIGIT.search(s) is not None
    for p in PUNCT:
        if (p + " " in s) or (" " + p in s) or dcd:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    out = PERIOD.sub("", out)
    out = "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in out)
    words = [NUMBERS.get(w, w) for w in re.split(r"[ \t\n\r\v\f]+", out) if w]
    return " ".join(w for w in words if w not in ARTICLES)


def vqa_accuracy(pred, refs):
    p = vqa_normalize(pred)
    m = [vqa_normalize(r) == p for r in refs]
    if len(refs) == 1:
        return float(m[0])
    accs = [min(1.0, (sum(m) - m[i]) / 3.0) for i in range(len(refs))]
    return sum(accs) / len(accs)


# ------------------------------------------------------------------------------------------- ASR


def asr_punct(c):
    o = ord(c)
    if o < 0x80:
        return c != "'" and (0x21 <= o <= 0x2F or 0x3A <= o <= 0x40 or 0x5B <= o <= 0x60 or 0x7B <= o <= 0x7E)
    return ((0x2000 <= o <= 0x206F and o != 0x2019) or 0x3000 <= o <= 0x303F or 0xFF01 <= o <= 0xFF0F
            or 0xFF1A <= o <= 0xFF20 or 0xFF3B <= o <= 0xFF40 or 0xFF5B <= o <= 0xFF65)


def asr_normalize(s):
    chars = []
    for c in s:
        if c in ASCII_WS or asr_punct(c):
            chars.append(" ")
        elif c == "\u2019":
            chars.append("'")
        elif "A" <= c <= "Z":
            chars.append(chr(ord(c) + 32))
        else:
            chars.append(c)
    return " ".join(w for w in "".join(chars).split(" ") if w)


def levenshtein(a, b):
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cur[j] = min(prev[j - 1] + (a[i - 1] != b[j - 1]), prev[j] + 1, cur[j - 1] + 1)
        prev = cur
    return prev[len(b)]


def words(s):
    return [w for w in re.split(r"[ \t\n\r\v\f]+", s) if w]


def cer_chars(s, remove_spaces):
    if remove_spaces:
        return [c for c in s if c not in ASCII_WS]
    return list(" ".join(words(s)))


def wer_stats(hyp, ref):
    h, r = words(hyp), words(ref)
    return levenshtein(h, r), len(r), len(h)


def cer_stats(hyp, ref, remove_spaces):
    h, r = cer_chars(hyp, remove_spaces), cer_chars(ref, remove_spaces)
    return levenshtein(h, r), len(r), len(h)


# ----------------------------------------------------------------------------------------- cases

VQA_PAIRS = [
    ("Two", "2"), ("two dogs.", "2 dogs"), ("The cat", "cat"), ("a red ball", "red ball"), ("Yes!", "yes"),
    ("yes !", "yes"), ("t-shirt", "t shirt"), ("t-shirt", "tshirt"), ("1,000", "1000"), ("3.5", "3.5"),
    ("3.5", "35"), ("dog.", "dog"), ("  Blue\tand\nwhite ", "blue and white"), ("don't", "dont"),
    ("(left)", "left"), ("left side", "left"), ("none", "0"), ("Ten", "10"), ("an apple", "apple"),
    ("The End.", "end"), ("black/white", "black white"), ("black / white", "black white"),
    ("black / white", "blackwhite"), ("yes, it is", "yes it is"), ("10,5 and a-b", "105 and ab"),
    ("Café", "café"), ("ÉCOLE", "école"), ("", ""), ("the", ""), ("3 p.m.", "3 pm"), ("U.S.A", "usa"),
    ("$5", "$5"), ("50%", "50%"), ("'Hello'", "'hello'"), ("a" * 3, "aaa"), ("mr. smith", "mr smith"),
]

VQA_ACCURACY = [
    ("2", ["2"] * 10),
    ("2", ["2", "2", "two", "3", "3", "3", "3", "3", "3", "3"]),
    ("2", ["2", "2", "3", "3", "3", "3", "3", "3", "3", "3"]),
    ("2", ["2", "3", "3", "3", "3", "3", "3", "3", "3", "3"]),
    ("yes", ["no"] * 10),
    ("Yes", ["yes"]),
    ("yes", ["yes", "no", "yes"]),
    ("red", ["red", "Red", "red.", "maroon", "dark red", "red", "the red one", "red", "crimson", "pink"]),
]

ASR_NORMALIZE = [
    "Hello, World!", "It's a dog's life.", "  multiple   spaces\tand\ttabs  ", "“Quoted” — dash…",
    "It\u2019s fine", "你好，世界。", "ＡＢＣ！ｄｅｆ？", "MiXeD CaSe 123", "e-mail: x@y.z", "",
]

WER_CASES = [
    ("the cat sat on the mat", "the cat sat on the mat"),
    ("the cat sat on mat", "the cat sat on the mat"),
    ("a cat sat on the mat today", "the cat sat on the mat"),
    ("", "hello world"),
    ("hello world", ""),
    ("", ""),
    ("one two three four", "four three two one"),
    ("x y z", "a b c d e f"),
    ("  spaced   out\ttext ", "spaced out text"),
    ("naïve café", "naive café"),
    ("seven eight nine ten", "seven eight nine"),
    ("the the the", "the"),
    ("abc abd", "abd abc abd"),
]

CER_CASES = [
    ("hello world", "hello world", 0),
    ("helo wrld", "hello world", 0),
    ("hello  world", "hello world", 0),
    ("", "abc", 0),
    ("abc", "", 0),
    ("naïve", "naive", 0),
    ("今天 天气 很好", "今天天气很好", 1),
    ("今天天气不好", "今天天气很好", 1),
    ("今天天气很好", "今天 天气 很好", 0),
    ("我爱北京天安门", "我爱 北京", 1),
    ("😀 ok", "😀 okay", 0),
    ("kitten", "sitting", 0),
    ("flaw", "lawn", 0),
    ("a b c", "abc", 1),
]


def write_train_log(path):
    rng = np.random.default_rng(7)
    steps, warmup, lr_max = 120, 10, 6e-4
    with open(path, "w") as f:
        for s in range(1, steps + 1):
            lr = lr_max * s / warmup if s <= warmup else lr_max * 0.5 * (1 + np.cos(np.pi * (s - warmup) / (steps - warmup)))
            loss = 1.2 + 4.0 * np.exp(-s / 30) + 0.15 * rng.standard_normal()
            rec = {"step": s, "epoch": round(s / 40, 4), "loss": round(float(loss), 5), "lr": float("%.6g" % lr),
                   "grad_norm": round(float(abs(rng.standard_normal()) + 0.5), 4), "tokens": 256 * s,
                   "tokens_per_s": 1500.0, "elapsed_s": round(0.17 * s, 3)}
            f.write(json.dumps(rec) + "\n")
            if s % 20 == 0:
                f.write(json.dumps({"step": s, "epoch": round(s / 40, 4),
                                    "eval_loss": round(1.35 + 4.0 * np.exp(-s / 30), 5)}) + "\n")


def main():
    rng = np.random.default_rng(1234)
    cases = {"vqa_normalize": [], "exact_match": [], "vqa_accuracy": [], "asr_normalize": [], "wer": [], "cer": [],
             "series": []}
    for p, r in VQA_PAIRS:
        cases["vqa_normalize"].append({"in": p, "out": vqa_normalize(p)})
        cases["vqa_normalize"].append({"in": r, "out": vqa_normalize(r)})
        cases["exact_match"].append({"pred": p, "ref": r, "match": int(vqa_normalize(p) == vqa_normalize(r))})
    for p, refs in VQA_ACCURACY:
        cases["vqa_accuracy"].append({"pred": p, "refs": refs, "acc": vqa_accuracy(p, refs)})
    for s in ASR_NORMALIZE:
        cases["asr_normalize"].append({"in": s, "out": asr_normalize(s)})
    checked = 0
    for h, r in WER_CASES:
        e, nr, nh = wer_stats(h, r)
        cases["wer"].append({"hyp": h, "ref": r, "errors": e, "ref_len": nr, "hyp_len": nh})
        if jiwer and r.strip() and "  " not in h + r and "\t" not in h + r:
            assert abs(jiwer.wer(r, h) - e / nr) < 1e-12, (h, r, jiwer.wer(r, h), e / nr)
            checked += 1
    for h, r, rs in CER_CASES:
        e, nr, nh = cer_stats(h, r, rs)
        cases["cer"].append({"hyp": h, "ref": r, "remove_spaces": rs, "errors": e, "ref_len": nr, "hyp_len": nh})
        if jiwer and r.strip() and "  " not in h + r:
            jh, jr = (h.replace(" ", ""), r.replace(" ", "")) if rs else (h, r)
            assert abs(jiwer.cer(jr, jh) - e / nr) < 1e-12, (h, r, jiwer.cer(jr, jh), e / nr)
            checked += 1
    # corpus WER over all cases with a non-empty reference, as jiwer computes it over lists
    pairs = [(h, r) for h, r in WER_CASES if r.strip()]
    tot_e = sum(wer_stats(h, r)[0] for h, r in pairs)
    tot_n = sum(wer_stats(h, r)[1] for h, r in pairs)
    cases["corpus_wer"] = {"hyps": [h for h, _ in pairs], "refs": [r for _, r in pairs], "wer": tot_e / tot_n}
    if jiwer:
        jp = [(h, r) for h, r in pairs if "  " not in h + r and "\t" not in h + r]
        te = sum(wer_stats(h, r)[0] for h, r in jp)
        tn = sum(wer_stats(h, r)[1] for h, r in jp)
        assert abs(jiwer.wer([r for _, r in jp], [h for h, _ in jp]) - te / tn) < 1e-12
        checked += 1
    for n in (1, 7, 96, 1000):
        p = rng.standard_normal(n).astype(np.float32)
        t = (rng.standard_normal(n) * 2 + 0.5).astype(np.float32)
        d = p.astype(np.float64) - t.astype(np.float64)
        cases["series"].append({"pred": [float(x) for x in p], "ref": [float(x) for x in t],
                                "mse": float(np.mean(d * d)), "mae": float(np.mean(np.abs(d)))})
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "eval", "metrics_cases.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=0)
        f.write("\n")
    write_train_log(os.path.join(os.path.dirname(out), "train_log.jsonl"))
    print("wrote", out, "; jiwer cross-checks:", checked if jiwer else "skipped (jiwer not installed)")


if __name__ == "__main__":
    main()
