#!/usr/bin/env python3
"""Writes the safetensors and GGUF fixtures of tests/test_safetensors.c and tests/test_gguf.c with the
reference Python libraries (`safetensors`, llama.cpp's `gguf`), so the C readers are checked against files
the real tools produce, and the C quantizers against gguf-py's.

Made with (from the repository root, after scripts/refenv.sh; gguf==0.19.0, safetensors==0.8.0):
    build/refenv/bin/python tests/reference/make_format_fixtures.py tests/fixtures/formats

Everything is deterministic (fixed values and a seeded RNG); running it again reproduces the files byte for
byte. The expected values are written out in the C tests, not read from here.
"""
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file

import gguf
from gguf import GGMLQuantizationType as QT
from gguf import GGUFValueType as VT


def safetensors_fixture(out):
    t = {
        "f64": torch.tensor([[-0.5, -0.25, 0.0], [0.25, 0.5, 0.75]], dtype=torch.float64),
        "f32": (torch.arange(12, dtype=torch.float32) * 0.5 - 3.0).reshape(3, 4),
        "f16": torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.5], dtype=torch.float16),
        "bf16": torch.tensor([[1.5, -2.0], [0.0078125, 256.0]], dtype=torch.bfloat16),
        "i64": torch.tensor([-(2**40), 0, 2**40 + 7], dtype=torch.int64),
        "i32": torch.tensor([[-7, 0], [7, 2**31 - 1]], dtype=torch.int32),
        "i16": torch.tensor([-32768, -1, 1, 32767], dtype=torch.int16),
        "i8": torch.tensor([-128, -1, 0, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 128, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True], dtype=torch.bool),
        "empty": torch.zeros((0, 4), dtype=torch.float32),
        "scalar": torch.tensor(42.0, dtype=torch.float32),
        "blocks.0.att.key.weight": torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.bfloat16),
    }
    # One metadata entry: safetensors keeps __metadata__ in a hash map, so several would come out in a
    # different order on every run.
    path = os.path.join(out, "dtypes.safetensors")
    save_file(t, path, metadata={"note": "\u00fcn\u00efc\u00f6d\u00e9 \u2713 \"quoted\"\n"})
    os.chmod(path, 0o644)


def add_every_type(w):
    """Metadata of every GGUF value type, scalar and array."""
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 1.5)
    w.add_bool("test.bool", True)
    w.add_string("test.string", "h\u00e9llo")
    w.add_uint64("test.u64", 2**63 + 5)
    w.add_int64("test.i64", -(2**62))
    w.add_float64("test.f64", 3.141592653589793)
    w.add_key_value("test.arr_u8", [1, 2, 255], VT.ARRAY, sub_type=VT.UINT8)
    w.add_key_value("test.arr_i8", [-1, 2, -128], VT.ARRAY, sub_type=VT.INT8)
    w.add_key_value("test.arr_u16", [1, 65535], VT.ARRAY, sub_type=VT.UINT16)
    w.add_key_value("test.arr_i16", [-2, 32767], VT.ARRAY, sub_type=VT.INT16)
    w.add_key_value("test.arr_u32", [3, 4000000000], VT.ARRAY, sub_type=VT.UINT32)
    w.add_key_value("test.arr_i32", [-3, 5, 7], VT.ARRAY, sub_type=VT.INT32)
    w.add_key_value("test.arr_f32", [0.5, -1.25], VT.ARRAY, sub_type=VT.FLOAT32)
    w.add_key_value("test.arr_bool", [True, False, True], VT.ARRAY, sub_type=VT.BOOL)
    w.add_key_value("test.arr_u64", [2**64 - 1, 0], VT.ARRAY, sub_type=VT.UINT64)
    w.add_key_value("test.arr_i64", [-(2**63), 2**63 - 1], VT.ARRAY, sub_type=VT.INT64)
    w.add_key_value("test.arr_f64", [1e300, -2.5], VT.ARRAY, sub_type=VT.FLOAT64)
    w.add_key_value("test.arr_str", ["a", "", "\u00fc"], VT.ARRAY, sub_type=VT.STRING)


def add_rwkv7(w):
    """The metadata llama.cpp's converter writes for RWKV-7 (a tiny made-up model)."""
    w.add_uint32("rwkv7.context_length", 1048576)
    w.add_uint32("rwkv7.embedding_length", 64)
    w.add_uint32("rwkv7.block_count", 2)
    w.add_uint32("rwkv7.feed_forward_length", 256)
    w.add_float32("rwkv7.attention.layer_norm_epsilon", 1e-5)
    w.add_uint32("rwkv7.wkv.head_size", 64)
    w.add_uint32("rwkv7.attention.decay_lora_rank", 8)
    w.add_uint32("rwkv7.attention.iclr_lora_rank", 8)
    w.add_uint32("rwkv7.attention.value_residual_mix_lora_rank", 8)
    w.add_uint32("rwkv7.attention.gate_lora_rank", 16)
    w.add_uint32("rwkv7.token_shift_count", 1)
    w.add_string("tokenizer.ggml.model", "rwkv")
    # Token strings are the repr of the token bytes without b'': \t \n \r \\ \' and \xNN for other bytes.
    toks = ["<s>", "\\n", "\\t", "a", "\\xe4\\xbd\\xa0", "\\\\", "\\'", " the"]
    w.add_token_list(toks)
    w.add_token_types([3] + [1] * (len(toks) - 1))


def gguf_fixture(out):
    w = gguf.GGUFWriter(os.path.join(out, "dtypes.gguf"), "rwkv7")
    add_rwkv7(w)
    add_every_type(w)
    w.add_tensor("f32", (np.arange(12, dtype=np.float32) * 0.5 - 3.0).reshape(3, 4))
    w.add_tensor("f16", np.array([[-2.0, -1.0, 0.0], [1.0, 2.5, 65504.0]], dtype=np.float16))
    bf16 = torch.tensor([[1.5, -2.0], [0.0078125, 256.0]], dtype=torch.bfloat16).view(torch.int16).numpy()
    w.add_tensor("bf16", bf16.view(np.uint16), raw_dtype=QT.BF16)
    w.add_tensor("f64", np.array([-0.5, 0.25, 1e300], dtype=np.float64))
    w.add_tensor("i8", np.array([-128, -1, 0, 127], dtype=np.int8))
    w.add_tensor("i16", np.array([-32768, 32767], dtype=np.int16))
    w.add_tensor("i32", np.array([[-7, 0], [7, 2**31 - 1]], dtype=np.int32))
    w.add_tensor("i64", np.array([-(2**40), 2**40 + 7], dtype=np.int64))
    w.add_tensor("rank4", np.arange(24, dtype=np.float32).reshape(2, 3, 1, 4))
    rng = np.random.default_rng(7)
    for qt, name in ((QT.Q8_0, "q8_0"), (QT.Q4_0, "q4_0")):
        src = rng.standard_normal((3, 64)).astype(np.float32)
        w.add_tensor(name + ".src", src)
        w.add_tensor(name, gguf.quants.quantize(src, qt), raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def align64_fixture(out):
    """A non-default general.alignment, with tensor sizes that are not multiples of it."""
    w = gguf.GGUFWriter(os.path.join(out, "align64.gguf"), "test")
    w.add_custom_alignment(64)
    w.add_tensor("a", np.array([1, 2, 3], dtype=np.int8))
    w.add_tensor("b", np.array([1.0, 2.0, 3.0], dtype=np.float32))
    w.add_tensor("c", np.array([-1, 5], dtype=np.int16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def q4k_fixture(out):
    """A tensor of a ggml type modrwkv cannot read (Q4_K: 256-element blocks of 144 bytes)."""
    w = gguf.GGUFWriter(os.path.join(out, "q4k.gguf"), "rwkv7")
    w.add_tensor("token_embd.weight", np.ones((2, 4), dtype=np.float32))
    w.add_tensor("blk.0.ffn_up.weight", np.zeros((2, 144), dtype=np.uint8), raw_dtype=QT.Q4_K)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def quant_source(rng):
    """Rows of 256 floats that exercise the Q8_0/Q4_0 quantizers: random data at several scales plus
    blocks built to hit rounding ties, sign ties, zeros, tiny (subnormal f16) and huge (f16-overflowing)
    scales."""
    rows = []
    for scale in (1.0, 1e-3, 30.0, 0.02):
        rows += list(rng.standard_normal((8, 256)).astype(np.float32) * np.float32(scale))
    rows += list(rng.uniform(-1, 1, (8, 256)).astype(np.float32))
    special = np.zeros((8, 256), dtype=np.float32)
    # block 0 of row 0 stays all zeros; block 1: the largest magnitude appears with both signs
    special[0, 32:64] = rng.uniform(-1, 1, 32)
    special[0, 40], special[0, 50] = 2.0, -2.0
    special[0, 64:96] = rng.uniform(-1, 1, 32)
    special[0, 70], special[0, 80] = -2.0, 2.0
    # exact halves: with amax 127 the Q8_0 scale is 1, so x.5 values sit on rounding ties
    special[1, :32] = np.arange(32, dtype=np.float32) - 15.5
    special[1, 0] = 127.0
    special[1, 32:64] = -(np.arange(32, dtype=np.float32) - 15.5)
    special[1, 33] = -127.0
    # Q4_0 ties: max -8 gives scale 1, so x + 8.5 lands on integers
    special[2, :32] = np.linspace(-8, 7.5, 32, dtype=np.float32)
    special[2, 0] = -8.0
    special[2, 32:64] = np.arange(32, dtype=np.float32) * 0.5 - 8.0
    # tiny values: f16 scale is subnormal or flushes to zero
    special[3] = rng.standard_normal(256).astype(np.float32) * np.float32(1e-6)
    special[3, 128:] *= np.float32(1e-3)
    # huge values: the f16 scale overflows to inf
    special[4] = rng.standard_normal(256).astype(np.float32) * np.float32(3e5)
    # constant blocks
    special[5, :128] = 0.3
    special[5, 128:] = -0.3
    # one nonzero element per block
    for b in range(8):
        special[6, b * 32 + b] = (b + 1) * 0.37
    special[7] = rng.standard_normal(256).astype(np.float32) * np.float32(65504.0 / 127)
    rows += list(special)
    # Halves in +-150: here x * (1/d) often lands a hair off an integer - 8.5, so computing x * id + 8.5 with
    # one rounding (a fused multiply-add) instead of two changes the Q4_0 nibble. The first block is one
    # where that happens (x = 135, max 144: x * id = -7.50000006 rounds to -7.5 unfused).
    halves = (rng.integers(-300, 300, (2, 256)) / 2).astype(np.float32)
    halves[0, :32] = [-121.5, -85.5, -57.5, 41.5, -50.0, -130.0, 81.5, -24.5, -68.0, -97.0, -76.5, -128.0,
                      89.5, 138.5, -48.0, -79.5, -138.0, 118.0, 8.5, -130.5, 144.0, 127.0, -125.5, -21.0,
                      -47.0, -94.0, 1.5, -29.5, -62.5, -116.5, 135.0, 75.0]
    rows += list(halves)
    return np.stack(rows)


def quant_fixture(out):
    np.seterr(over="ignore")  # the huge-value row overflows the f16 scale on purpose
    rng = np.random.default_rng(12345)
    src = quant_source(rng)
    w = gguf.GGUFWriter(os.path.join(out, "quant.gguf"), "test")
    w.add_tensor("src", src)
    w.add_tensor("q8_0", gguf.quants.quantize(src, QT.Q8_0), raw_dtype=QT.Q8_0)
    w.add_tensor("q4_0", gguf.quants.quantize(src, QT.Q4_0), raw_dtype=QT.Q4_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/formats"
    os.makedirs(out, exist_ok=True)
    safetensors_fixture(out)
    gguf_fixture(out)
    align64_fixture(out)
    q4k_fixture(out)
    quant_fixture(out)
    print(f"fixtures written to {out}")


if __name__ == "__main__":
    main()
