#!/usr/bin/env python3
"""Fixtures for tests/test_pth.c and seeds for fuzz/corpus/pth: PyTorch .pth files written by real
torch.save, hostile pickles built by hand, and corrupt zip archives.

Made with (from the repository root; torch 1.13 from Debian, see scripts/refenv.sh):

    build/refenv/bin/python tests/reference/make_pth_fixtures.py

which writes tests/fixtures/pth/ (valid files + expected.json + tiny-rwkv7-expected.json) and the hostile and
corrupt inputs in tests/fixtures/pth/hostile/. Output is deterministic (fixed seeds, fixed zip timestamps).
With `--seeds DIR` it also copies fuzzing seeds there (the valid files, their raw data.pkl, the hostile
inputs); fuzz/corpus/pth is what fuzzing grew from those seeds, minimized (see fuzz/fuzz_pth.c).

Checking files written by mrw_pth_write against torch (done by hand; CI does not need Python):

    MRW_PTH_KEEP=/tmp/pth-rt ./build/tests/test_pth
    build/refenv/bin/python tests/reference/make_pth_fixtures.py --check-written /tmp/pth-rt

loads every /tmp/pth-rt/<fixture>.rt.pth with torch.load(weights_only=True) and compares names, dtypes,
shapes and values with the original fixture (loaded the same way).
"""
import collections
import io
import json
import os
import shutil
import struct
import sys
import zipfile
import zlib

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "pth")
HOSTILE = os.path.join(OUT, "hostile")
SHARED = os.environ.get("MRW_SHARED", os.path.join(ROOT, "..", "shared"))
TINY = os.path.join(SHARED, "assets", "tiny-rwkv7", "tiny-rwkv7-834K.pth")

DTYPE_NAMES = {
    torch.bfloat16: "bf16", torch.float16: "f16", torch.float32: "f32", torch.float64: "f64",
    torch.int64: "i64", torch.int32: "i32", torch.int16: "i16", torch.int8: "i8", torch.uint8: "u8",
    torch.bool: "bool",
}


def describe(sd, prefix=""):
    """name -> tensor, flattened the way modrwkv flattens nested dicts ("a.b"); non-tensors skipped."""
    out = []
    for k, v in sd.items():
        name = f"{prefix}{k}"
        if isinstance(v, torch.Tensor):
            out.append({
                "name": name,
                "dtype": DTYPE_NAMES[v.dtype],
                "shape": list(v.shape),
                "values": [float(x) for x in v.detach().contiguous().reshape(-1).tolist()],
            })
        elif isinstance(v, dict):
            out.extend(describe(v, name + "."))
    return out


# ------------------------------------------------------------------------------------------ valid files

def valid_files():
    g = torch.Generator().manual_seed(1234)
    files = {}

    # Every storage dtype, values exactly representable in each.
    base = torch.tensor([0, 1, -2, 3.5, -4.25, 5, 6.5, -7], dtype=torch.float64)
    dt = collections.OrderedDict()
    for t, n in DTYPE_NAMES.items():
        if t == torch.bool:
            dt[n] = torch.tensor([True, False, True, True, False])
        elif t == torch.uint8:
            dt[n] = torch.tensor([0, 1, 200, 255, 7], dtype=t)
        elif t.is_floating_point:
            dt[n] = base.to(t).reshape(2, 4)
        else:
            dt[n] = torch.tensor([[0, 1, -2], [3, -128 if t == torch.int8 else -1000, 127]], dtype=t)
    dt["i64_big"] = torch.tensor([2**40 + 3, -(2**35)], dtype=torch.int64)
    files["dtypes.pth"] = dt

    # Views: transposed, sliced with an offset, broadcast (stride 0), permuted, several views of one
    # storage, 0-d scalars and empty tensors.
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    cube = torch.arange(60, dtype=torch.int16).reshape(3, 4, 5)
    files["views.pth"] = collections.OrderedDict([
        ("transposed", base.t()),
        ("sliced", base[1:, ::2]),
        ("row", base[2]),
        ("rows", base[1:3]),
        ("column", base[:, 4]),
        ("broadcast", torch.tensor([1.5, -2.0], dtype=torch.bfloat16).expand(3, 2)),
        ("permuted", cube.permute(2, 0, 1)),
        ("scalar", torch.tensor(3.25)),
        ("scalar_i64", torch.tensor(-9, dtype=torch.int64)),
        ("empty", torch.zeros(0)),
        ("empty_2d", torch.zeros(2, 0, dtype=torch.float16)),
        ("base", base),
    ])

    # A module's state dict: an OrderedDict with _metadata attached by BUILD.
    torch.manual_seed(7)
    m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Embedding(5, 2))
    files["ordered.pth"] = m.state_dict()

    files["plain.pth"] = {"w": torch.randn(3, 2, generator=g), "b": torch.randn(2, generator=g).to(torch.bfloat16)}

    # A training-style checkpoint: nested dicts, ints, floats, strings, lists, a dtype object.
    files["nested.pth"] = {
        "state_dict": {"emb.weight": torch.randn(4, 3, generator=g),
                       "blocks": {"0": {"ln.weight": torch.ones(3)}}},
        "epoch": 3,
        "config": {"lr": 1e-4, "name": "tiny", "dtype": torch.bfloat16, "layers": [1, 2, 3],
                   "tuple": (1, "a", None, True), 5: "int key"},
    }

    # nn.Parameter values use torch._utils._rebuild_parameter.
    files["param.pth"] = {"p": torch.nn.Parameter(torch.tensor([1.0, 2.0, 3.0])),
                          "q": torch.nn.Parameter(torch.tensor([[4.0]]), requires_grad=False)}
    return files


def write_valid(files):
    expected = {}
    for fname, obj in files.items():
        torch.save(obj, os.path.join(OUT, fname))
        expected[fname] = describe(obj)
    # Protocol 4: FRAME, MEMOIZE, STACK_GLOBAL, SHORT_BINUNICODE.
    torch.save(files["plain.pth"], os.path.join(OUT, "proto4.pth"), pickle_protocol=4)
    expected["proto4.pth"] = describe(files["plain.pth"])
    # Re-zipped without PyTorch's 64-byte alignment (storages at odd offsets: the reader must copy).
    repack(os.path.join(OUT, "dtypes.pth"), os.path.join(OUT, "unaligned.pth"), zipfile.ZIP_STORED, pad=1)
    expected["unaligned.pth"] = expected["dtypes.pth"]
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=None, separators=(",", ":"))
        f.write("\n")


def repack(src, dst, compression, pad=0):
    """Copies a zip entry by entry with Python's zipfile (no alignment); `pad` adds a first dummy entry of
    that many bytes so that the data offsets shift."""
    zin = zipfile.ZipFile(src)
    with zipfile.ZipFile(dst, "w", compression=compression) as zout:
        infos = zin.infolist()
        for i, info in enumerate(infos):
            zi = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            zi.compress_type = compression
            data = zin.read(info.filename)
            zout.writestr(zi, data)
            if i == 0 and pad:
                zp = zipfile.ZipInfo(info.filename.split("/")[0] + "/pad", date_time=(1980, 1, 1, 0, 0, 0))
                zout.writestr(zp, b"x" * pad)


# ------------------------------------------------------------------------------------- hostile pickles

def binunicode(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def storage_pid(stype, key, numel):
    return (b"((" + binunicode("storage") + b"ctorch\n" + stype.encode() + b"\n" + binunicode(key) +
            binunicode("cpu") + b"J" + struct.pack("<i", numel) + b"tQ")


def rebuild(stype, key, numel, offset, size, stride):
    """_rebuild_tensor_v2((storage), offset, size, stride, False, OrderedDict()) as raw protocol-2 bytes."""
    def tup(v):
        return b"(" + b"".join(b"J" + struct.pack("<i", x) for x in v) + b"t"
    return (b"ctorch._utils\n_rebuild_tensor_v2\n(" + storage_pid(stype, key, numel)[1:] +
            b"J" + struct.pack("<i", offset) + tup(size) + tup(stride) + b"\x89ccollections\nOrderedDict\n)Rt"
            b"R")


def state_dict_pickle(items):
    """An OrderedDict of name -> raw value bytes."""
    body = b"".join(binunicode(k) + v for k, v in items)
    return b"\x80\x02ccollections\nOrderedDict\n)R(" + body + b"u."


def hostile_pickles():
    p = {}
    # The classic: os.system("echo pwned") through GLOBAL + REDUCE.
    p["global_os_system.pkl"] = b"\x80\x02cos\nsystem\n" + binunicode("echo pwned") + b"\x85R."
    # What pickle.dumps of such an object really emits on Linux (module posix).
    p["global_posix_system.pkl"] = b"\x80\x02cposix\nsystem\nX\x04\x00\x00\x00true\x85R."
    p["global_builtins_eval.pkl"] = (b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94"
                                     b"\x8c\x04eval\x94\x93\x94\x8c\x06print(1)\x85R.")
    p["global_getattr.pkl"] = b"\x80\x02c__builtin__\ngetattr\n."
    # An allowed global used as a function: torch.FloatStorage(...).
    p["reduce_storage_type.pkl"] = b"\x80\x02ctorch\nFloatStorage\nK\x05\x85R."
    # REDUCE on something that is not a global at all.
    p["reduce_on_string.pkl"] = b"\x80\x02" + binunicode("os.system") + b")R."
    # Opcodes outside the allow-list.
    p["opcode_inst.pkl"] = b"\x80\x02(" + binunicode("true") + b"ios\nsystem\n."
    p["opcode_newobj.pkl"] = b"\x80\x02ccollections\nOrderedDict\n)\x81."
    p["opcode_ext1.pkl"] = b"\x80\x02\x82\x01."
    p["opcode_unknown.pkl"] = b"\x80\x02\xff."
    p["persid_not_storage.pkl"] = b"\x80\x02" + binunicode("module") + b"\x85Q."
    p["deep_marks.pkl"] = b"\x80\x02" + b"(" * 5000 + b"."
    p["memo_huge_index.pkl"] = b"\x80\x02}r\xff\xff\xff\x00."
    p["memo_undefined.pkl"] = b"\x80\x02h\x07."
    p["stack_underflow.pkl"] = b"\x80\x02(R."
    p["truncated_string.pkl"] = b"\x80\x02X\xff\xff\x00\x00abc"
    p["no_stop.pkl"] = b"\x80\x02}"
    p["long_int.pkl"] = b"\x80\x02\x8a\x09" + b"\x01" * 9 + b"."
    p["top_level_list.pkl"] = b"\x80\x02]."
    # A dict containing itself twice over: flattening must stop (depth/visit limits), not loop.
    p["self_nested.pkl"] = b"\x80\x02}q\x00(X\x01\x00\x00\x00ah\x00X\x01\x00\x00\x00bh\x00u."
    # Valid pickles (for the unpickler harness): a real state dict's data.pkl is added below.
    p["ok_min.pkl"] = state_dict_pickle([("x", rebuild("FloatStorage", "0", 4, 0, [2, 2], [2, 1]))])
    return p


# ---------------------------------------------------------------------------------------- zip builder

def crc(b):
    return zlib.crc32(b) & 0xffffffff


def make_zip(entries, cd_lies=None, align=64):
    """A stored zip of (name, data); cd_lies maps entry index -> dict of central-directory overrides
    (crc, size, offset). Data are aligned like PyTorch does it."""
    cd_lies = cd_lies or {}
    out = bytearray()
    central = []
    for i, (name, data) in enumerate(entries):
        nb = name.encode()
        off = len(out)
        start = off + 30 + len(nb) + 4
        pad = (-start) % align
        extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
        out += struct.pack("<IHHHHHIIIHH", 0x04034b50, 20, 0, 0, 0, 0x21, crc(data), len(data), len(data),
                           len(nb), len(extra)) + nb + extra + data
        lie = cd_lies.get(i, {})
        if "both_size" in lie:  # the same (false) size in the local header too
            out[off + 18:off + 26] = struct.pack("<II", lie["both_size"], lie["both_size"])
            lie = dict(lie, size=lie["both_size"])
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014b50, 20, 20, 0, lie.get("method", 0), 0, 0x21,
                                   lie.get("crc", crc(data)), lie.get("size", len(data)),
                                   lie.get("size", len(data)), len(nb), 0, 0, 0, 0, 0,
                                   lie.get("offset", off)) + nb)
    cd_off = len(out)
    cd = b"".join(central)
    out += cd + struct.pack("<IHHHHIIH", 0x06054b50, 0, 0, len(entries), len(entries), len(cd), cd_off, 0)
    return bytes(out)


def archive(pkl, storages):
    entries = [("archive/data.pkl", pkl)]
    entries += [(f"archive/data/{k}", v) for k, v in storages]
    entries.append(("archive/version", b"3\n"))
    return entries


def hostile_archives(pickles):
    a = {}
    f32x4 = struct.pack("<4f", 1, 2, 3, 4)
    ok = archive(pickles["ok_min.pkl"], [("0", f32x4)])
    a["zip_os_system.pth"] = make_zip(archive(pickles["global_os_system.pkl"], []))
    a["zip_view_beyond.pth"] = make_zip(archive(
        state_dict_pickle([("x", rebuild("FloatStorage", "0", 4, 2, [2, 2], [2, 1]))]), [("0", f32x4)]))
    a["zip_huge_numel.pth"] = make_zip(archive(
        state_dict_pickle([("x", rebuild("FloatStorage", "0", 2**31 - 1, 0, [2], [1]))]), [("0", f32x4)]))
    a["zip_missing_storage.pth"] = make_zip(archive(pickles["ok_min.pkl"], []))
    a["zip_crc_disagree.pth"] = make_zip(ok, cd_lies={1: {"crc": crc(f32x4) ^ 1}})
    # Damaged data under intact headers: only the CRC-32 can tell.
    z = bytearray(make_zip(ok))
    z[z.find(f32x4) + 5] ^= 0x40
    a["zip_crc_mismatch.pth"] = bytes(z)
    a["zip_size_lie.pth"] = make_zip(ok, cd_lies={1: {"size": 8}})
    a["zip_offset_oob.pth"] = make_zip(ok, cd_lies={1: {"offset": 1 << 30}})
    a["zip_deflate_method.pth"] = make_zip(ok, cd_lies={1: {"method": 8}})
    a["zip_huge_size.pth"] = make_zip(ok, cd_lies={1: {"both_size": 0x7fffffff}})
    good = make_zip(ok)
    # An end record that declares far more entries than its central directory can hold.
    z = bytearray(good)
    struct.pack_into("<HH", z, len(z) - 14, 60000, 60000)
    a["zip_absurd_count.pth"] = bytes(z)
    a["zip_ok.pth"] = good
    a["zip_truncated.pth"] = good[: len(good) * 2 // 3]
    a["zip_empty_archive.pth"] = make_zip([])
    # Overlapping entries: the central directory lists an entry whose local header lies inside another
    # entry's data (the construction of "overlapping" zip bombs).
    inner_name = b"archive/data/1"
    inner = struct.pack("<IHHHHHIIIHH", 0x04034b50, 20, 0, 0, 0, 0x21, crc(f32x4), 16, 16, len(inner_name), 0)
    inner += inner_name + f32x4
    ents = archive(pickles["ok_min.pkl"], [("0", inner)])
    z = bytearray(make_zip(ents))
    off0 = z.find(inner)
    cd = z.find(b"PK\x01\x02")
    extra = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014b50, 20, 20, 0, 0, 0, 0x21, crc(f32x4), 16, 16,
                        len(inner_name), 0, 0, 0, 0, 0, off0) + inner_name
    n = struct.unpack_from("<H", z, len(z) - 12)[0]
    cdsize, cdoff = struct.unpack_from("<II", z, len(z) - 10)
    z = z[:len(z) - 22] + extra + struct.pack("<IHHHHIIH", 0x06054b50, 0, 0, n + 1, n + 1, cdsize + len(extra),
                                              cdoff, 0)
    a["zip_overlap.pth"] = bytes(z)
    return a


# ---------------------------------------------------------------------------------------- main / check

def tiny_expected():
    sd = torch.load(TINY, map_location="cpu")
    names = [{"name": k, "shape": list(v.shape), "dtype": DTYPE_NAMES[v.dtype]} for k, v in sd.items()]
    probe = {}
    for k in ["emb.weight", "blocks.0.att.r_k", "blocks.11.ffn.value.weight", "head.weight", "ln_out.bias"]:
        flat = sd[k].reshape(-1).double()
        probe[k] = {"first": [float(x) for x in flat[:4]], "last": float(flat[-1]), "sum": float(flat.sum())}
    return {"count": len(sd), "tensors": names, "probe": probe}


def check_written(d):
    bad = 0
    for fn in sorted(os.listdir(d)):
        if not fn.endswith(".rt.pth"):
            continue
        orig = os.path.join(OUT, fn[: -len(".rt.pth")])
        a = torch.load(os.path.join(d, fn), weights_only=True)
        b = describe(torch.load(orig, weights_only=False))
        got = describe(a)
        ok = [(x["name"], x["dtype"], x["shape"], x["values"]) for x in got] == \
             [(x["name"], x["dtype"], x["shape"], x["values"]) for x in b]
        print(f"{fn}: {'identical' if ok else 'DIFFERENT'} ({len(got)} tensors, loaded with weights_only=True)")
        bad += not ok
    return 1 if bad else 0


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--check-written":
        sys.exit(check_written(sys.argv[2]))
    seeds = sys.argv[2] if len(sys.argv) == 3 and sys.argv[1] == "--seeds" else None
    torch.manual_seed(0)
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(HOSTILE)
    write_valid(valid_files())
    with open(os.path.join(OUT, "tiny-rwkv7-expected.json"), "w") as f:
        json.dump(tiny_expected(), f, separators=(",", ":"))
        f.write("\n")
    pickles = hostile_pickles()
    for name, data in pickles.items():
        with open(os.path.join(HOSTILE, name), "wb") as f:
            f.write(data)
    for name, data in hostile_archives(pickles).items():
        with open(os.path.join(HOSTILE, name), "wb") as f:
            f.write(data)
    # Compressed (deflate) entries, as Python's zipfile writes them.
    repack(os.path.join(OUT, "plain.pth"), os.path.join(HOSTILE, "deflate.pth"), zipfile.ZIP_DEFLATED)
    # A TorchScript archive (torch.jit.save) is not a state dict.
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), os.path.join(HOSTILE, "torchscript.pt"))
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(OUT) for f in fs)
    print(f"wrote {OUT} ({total} bytes)")
    if seeds:
        write_seeds(seeds)


def write_seeds(d):
    """Fuzz seeds: the small valid files, their raw data.pkl, and the hostile inputs."""
    os.makedirs(d, exist_ok=True)
    for fn in sorted(os.listdir(OUT)):
        if fn.endswith(".pth"):
            shutil.copy(os.path.join(OUT, fn), os.path.join(d, "seed-" + fn))
            z = zipfile.ZipFile(os.path.join(OUT, fn))
            pkl = [n for n in z.namelist() if n.endswith("data.pkl")][0]
            with open(os.path.join(d, "seed-" + fn[:-4] + ".pkl"), "wb") as f:
                f.write(z.read(pkl))
    for fn in sorted(os.listdir(HOSTILE)):
        shutil.copy(os.path.join(HOSTILE, fn), os.path.join(d, "seed-hostile-" + fn))
    print(f"seeds in {d}")


if __name__ == "__main__":
    main()
