#!/usr/bin/env python3
"""Golden fixtures for the World tokenizer, the GGUF token escaping and the streaming UTF-8 decoder.

Made with (from the repository root, reference environment from scripts/refenv.sh):

    /work/main/build/refenv/bin/python tests/reference/make_tokenizer_golden.py \
        --shared ../shared --out tests/fixtures/tokenizer

The reference is the `rwkv` package from PyPI: rwkv.rwkv_tokenizer.TRIE_TOKENIZER.encodeBytes over the LF copy
of the vocabulary in ../shared/assets (the package's own CRLF copy is checked to parse to the same tokens).
Everything is deterministic (fixed seeds). Output files, all plain text, '#' lines are comments:

  cases.txt       name <TAB> input bytes (hex) <TAB> ids (space-separated)
  big.txt         path under ../shared <TAB> bytes <TAB> FNV-1a 64 of the bytes <TAB> tokens <TAB>
                  FNV-1a 64 of the ids as little-endian int32 (the texts are used in place, never copied)
  utf8.txt        input (hex) <TAB> chunk sizes (comma-separated) <TAB> input.decode('utf-8', 'replace') (hex)
  gguf.txt        "all" <TAB> count <TAB> FNV-1a 64 of repr(token)[2:-1] + "\\n" over ids 1..65529, then
                  id <TAB> repr(token)[2:-1] (hex of its UTF-8) for a sample
  dup_vocab.txt   a small vocabulary with duplicate token bytes (the World vocabulary has none)
  dup_cases.txt   like cases.txt, tokenized by the reference with dup_vocab.txt
"""
import argparse
import os
import random
import struct
import sys

from rwkv.rwkv_tokenizer import TRIE_TOKENIZER
import rwkv.rwkv_tokenizer

FNV_OFFSET, FNV_PRIME, MASK = 0xCBF29CE484222325, 0x100000001B3, (1 << 64) - 1


def fnv1a(data: bytes, h: int = FNV_OFFSET) -> int:
    for x in data:
        h = ((h ^ x) * FNV_PRIME) & MASK
    return h


def ids_hash(ids):
    return fnv1a(struct.pack("<%di" % len(ids), *ids))


def named_cases():
    """Hand-written inputs covering the scripts, symbols and byte patterns the brief lists."""
    c = []
    add = lambda name, s: c.append((name, s.encode("utf-8") if isinstance(s, str) else s))
    add("english", "The quick brown fox jumps over the lazy dog. It's 3:14 p.m., isn't it?")
    add("english_para", "Hello, world!\n\nThis is RWKV-7 \"Goose\", an RNN with transformer-level "
        "performance.\n"
        "  Indented line with trailing spaces   \n")
    add("numbers", "0 1 12 123 1234 12345 3.14159 -42 1e-9 0x7fff 1,000,000 2024-06-01")
    add("chinese", "中华人民共和国成立于1949年。我们今天学习人工智能，RWKV是一种循环神经网络。")
    add("chinese_poem", "床前明月光，疑是地上霜。\n举头望明月，低头思故乡。")
    add("japanese", "日本語のテキスト：ひらがな、カタカナ、漢字。東京は晴れです。ｶﾀｶﾅ")
    add("korean", "안녕하세요, 세계! 한국어 텍스트입니다. 대한민국")
    add("mixed_scripts", "Ελληνικά Русский עברית العربية हिन्दी ไทย Tiếng Việt")
    add("emoji", "😀😃😄 👍🏽 ❤️ ✨ 🎉")
    add("emoji_zwj", "👨‍👩‍👧‍👦 👩‍💻 🏳️‍🌈 🧑🏿‍🤝‍🧑🏻")
    add("emoji_flags", "🇺🇸🇯🇵🇨🇳🇩🇪🇫🇷 🏴󠁧󠁢󠁳󠁣󠁴󠁿")
    add("code_c", "#include <stdio.h>\n\nint main(int argc, char **argv) {\n"
        "    for (int i = 0; i < argc; i++)\n"
        "        printf(\"%s\\n\", argv[i]);\n    return 0;\n}\n")
    add("code_python_tabs", "def f(x):\n\tif x > 0:\n\t\treturn x * 2\n\telse:\n\t\treturn -x\n"
        "\n\nclass A:\n\tpass\n")
    add("code_json", '{"key": [1, 2, 3], "nested": {"a": null, "b": true}, "s": "\\u00e9"}')
    add("whitespace", " \t\n\r\n  \t\t\n\n\n    x\u00a0\u2003\u3000y")
    add("crlf", "line one\r\nline two\r\n\r\nline four\r\n")
    add("controls", bytes(range(0, 32)) + b"\x7f")
    add("controls_spaced", b"".join(bytes([b]) + b" " for b in list(range(32)) + [0x7F]))
    add("chat_v1", "\x16User: What is in the image?\x17\x16Assistant:")
    add("chat_card", "\x16User: Describe the picture.\x17Assistant:")
    add("chat_turns", "\x16System: You are helpful.\x17\x16User: hi\x17\x16Assistant: Hello!\x17")
    add("special_text", "<|vision_start|><|image_pad|><|image_pad|><|vision_end|>What is this?")
    add("bom_and_zw", "\ufeffstart\u200bzero\u200dwidth\u2060")
    add("invalid_lone_cont", b"a\x80b\xbfc\x80\x80\x80d")
    add("invalid_truncated", b"\xe4\xb8 \xe4 \xf0\x9f\x98 \xf0\x9f \xf0 \xc3")
    add("invalid_truncated_end", b"abc\xe4\xb8")
    add("invalid_overlong", b"\xc0\xaf \xc1\xbf \xe0\x80\xaf \xe0\x9f\xbf \xf0\x80\x80\xaf \xf0\x8f\xbf\xbf")
    add("invalid_surrogates", b"\xed\xa0\x80 \xed\xbf\xbf \xed\xa0\xbd\xed\xb8\x80")
    add("invalid_high", b"\xf4\x90\x80\x80 \xf5\x80\x80\x80 \xf8\x88\x80\x80\x80 \xfc\x84\x80\x80\x80\x80")
    add("invalid_ff_fe", b"\xff\xfe\xff\xfe \xfe\xff x\xffy")
    add("invalid_mixed",
        "中".encode() + b"\xff" + "文".encode()[:2] + "字".encode() + b"\x80" + "😀".encode()[:3])
    add("all_bytes", bytes(range(256)))
    add("all_bytes_reversed", bytes(range(255, -1, -1)))
    add("empty", b"")
    for ch, n in (("a", 10000), (" ", 3000), ("\n", 2000), ("=", 3000), ("-", 1500), ("哈", 2000),
                  ("😀", 500), ("\t", 700), ("ab", 1500)):
        add("run_%04x_%d" % (ord(ch[0]), n), ch * n)
    add("run_ff", b"\xff" * 1000)
    add("run_00", b"\x00" * 1000)
    add("run_80", b"\x80" * 500)
    return c


def random_cases(tok, rng):
    c = []
    toks = [b for b in tok.idx2token.values()]
    longs = [b for b in toks if len(b) >= 6]
    for b in range(256):
        c.append(("byte_%02x" % b, bytes([b])))
    for i in range(60):
        n = rng.randint(1, 200)
        c.append(("random_bytes_%d" % i, bytes(rng.randrange(256) for _ in range(n))))
    for i in range(400):
        parts = [rng.choice(toks) for _ in range(rng.randint(2, 6))]
        s = b"".join(parts)
        r = rng.random()
        if r < 0.2:
            s = s[:-1]
        elif r < 0.4:
            s = s + bytes([rng.randrange(256)])
        c.append(("token_concat_%d" % i, s))
    for i in range(150):
        t = rng.choice(longs)
        cut = rng.randint(1, len(t) - 1)
        c.append(("token_prefix_%d" % i, t[:cut] + bytes([rng.randrange(256)]) + rng.choice(toks)))
    ranges = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x4E00, 0x9FFF), (0x3040, 0x30FF),
              (0xAC00, 0xD7A3), (0x1F300, 0x1FAFF), (0x10000, 0x1000F), (0xE000, 0xE0FF)]
    for i in range(80):
        chars = []
        for _ in range(rng.randint(1, 60)):
            lo, hi = rng.choice(ranges)
            chars.append(chr(rng.randint(lo, hi)))
        c.append(("random_unicode_%d" % i, "".join(chars).encode("utf-8")))
    return c


def utf8_cases(tok, rng, cases):
    """(input, chunk sizes) pairs for the stream decoder; expected = decode('utf-8', 'replace')."""
    out = []
    pool = [s for name, s in cases if name.startswith(("invalid", "emoji", "random_bytes", "random_unicode",
                                                        "chinese", "all_bytes", "korean"))]
    frag = [b"\xe4", b"\xb8", b"\xad", b"\xf0", b"\x9f", b"\x98", b"\x80", b"\xed", b"\xa0", b"\xe0", b"\xf4",
            b"\x90", b"\x8f", b"\xc2", b"\xc0", b"\xff", b"a", "é".encode(), "中".encode(), "😀".encode()]
    for i in range(120):
        out.append(b"".join(rng.choice(frag) for _ in range(rng.randint(1, 40))))
    out += pool
    ids = [i for i in tok.idx2token]
    res = []
    for s in out:
        res.append((s, random_chunks(rng, len(s))))
    # chunks at token boundaries, as generation produces them
    for i in range(80):
        seq = [rng.choice(ids) for _ in range(rng.randint(1, 30))]
        parts = [tok.idx2token[t] for t in seq]
        res.append((b"".join(parts), [len(p) for p in parts]))
    return res


def random_chunks(rng, n):
    chunks = []
    while n > 0:
        k = min(n, rng.choice([1, 1, 2, 3, 4, 5, 7, 16]))
        chunks.append(k)
        n -= k
    return chunks


def dup_vocab():
    """A vocabulary with equal token bytes under different ids, in an order that tells first from last."""
    lines = ["%d b'\\x%02x' 1" % (b + 1, b) for b in range(256)]
    extra = [(300, "'ab'", 2), (301, "'ab'", 2), (350, "'abc'", 3), (290, "'abc'", 3), (310, "'xyz'", 3),
             (305, "b'xyz'", 3), (400, "'a'", 1), (402, "'\\u4e2d'", 3), (401, "'中'", 3), (500, "'abcd'", 4)]
    lines += ["%d %s %d" % e for e in extra]
    return "\n".join(lines) + "\n"


def write_cases(path, tok, cases, header):
    with open(path, "w") as f:
        f.write(header)
        for name, s in cases:
            ids = tok.encodeBytes(s)
            assert tok.decodeBytes(ids) == s
            f.write("%s\t%s\t%s\n" % (name, s.hex(), " ".join(map(str, ids))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--out", default="tests/fixtures/tokenizer")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    vocab = os.path.join(a.shared, "assets/rwkv_vocab_v20230424.txt")
    tok = TRIE_TOKENIZER(vocab)
    pkg_vocab = os.path.join(os.path.dirname(rwkv.rwkv_tokenizer.__file__), "rwkv_vocab_v20230424.txt")
    assert TRIE_TOKENIZER(pkg_vocab).idx2token == tok.idx2token, "package vocab differs from the shared copy"
    assert len(tok.token2idx) == len(tok.idx2token), "duplicate token bytes in the World vocabulary"
    rng = random.Random(20240601)
    gen = "# generated by tests/reference/make_tokenizer_golden.py (see its header); do not edit\n"

    cases = named_cases() + random_cases(tok, rng)
    write_cases(os.path.join(a.out, "cases.txt"), tok, cases, gen + "# name\tinput hex\tids\n")

    with open(os.path.join(a.out, "big.txt"), "w") as f:
        f.write(gen + "# path under shared\tbytes\tfnv1a64(bytes)\ttokens\tfnv1a64(int32le ids)\n")
        for rel in ("data/text/sotu.txt", "data/text/songci.txt", "data/text/moby-dick.txt"):
            data = open(os.path.join(a.shared, rel), "rb").read()
            ids = tok.encodeBytes(data)
            f.write("%s\t%d\t%016x\t%d\t%016x\n" % (rel, len(data), fnv1a(data), len(ids), ids_hash(ids)))
            print(rel, len(data), "bytes", len(ids), "tokens", file=sys.stderr)

    with open(os.path.join(a.out, "utf8.txt"), "w") as f:
        f.write(gen + "# input hex\tchunk sizes\texpected output hex (bytes.decode('utf-8', 'replace'))\n")
        for s, chunks in utf8_cases(tok, rng, cases):
            assert sum(chunks) == len(s)
            exp = s.decode("utf-8", "replace").encode("utf-8")
            f.write("%s\t%s\t%s\n" % (s.hex(), ",".join(map(str, chunks)) or "-", exp.hex()))

    with open(os.path.join(a.out, "gguf.txt"), "w") as f:
        f.write(gen + "# llama.cpp's token strings: repr(bytes)[2:-1]\n")
        h, n = FNV_OFFSET, 0
        for i in sorted(tok.idx2token):
            h = fnv1a((repr(tok.idx2token[i])[2:-1] + "\n").encode("utf-8"), h)
            n += 1
        f.write("all\t%d\t%016x\n" % (n, h))
        interesting = [i for i, b in sorted(tok.idx2token.items())
                       if b"'" in b or b'"' in b or b"\\" in b or any(x < 0x20 or x >= 0x7F for x in b[:1])]
        sample = sorted(set(interesting[:40] + rng.sample(interesting, 60) + list(range(1, 300, 7))))
        for i in sample:
            f.write("%d\t%s\n" % (i, repr(tok.idx2token[i])[2:-1].encode("utf-8").hex()))

    dv = dup_vocab()
    dpath = os.path.join(a.out, "dup_vocab.txt")
    with open(dpath, "w") as f:
        f.write(dv)
    dtok = TRIE_TOKENIZER(dpath)
    dcases = [("ab", b"ab"), ("abc", b"abc"), ("abcd", b"abcd"), ("abcde", b"abcde"), ("xyzxyz", b"xyzxyz"),
              ("a", b"a"), ("aa", b"aa"), ("aab", b"aab"), ("zhong", "中中".encode()),
              ("mix", b"xaabcxyzab\xff")]
    write_cases(os.path.join(a.out, "dup_cases.txt"), dtok, dcases, gen + "# name\tinput hex\tids\n")


if __name__ == "__main__":
    main()
