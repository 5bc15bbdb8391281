#!/usr/bin/env python3
"""Makes tests/fixtures/media/: test images and audio in every supported format, and the golden outputs of
the Hugging Face processors and of ModRWKV's audio loading on them, for tests/test_media.c.

Made with (from the repository root, after scripts/refenv.sh; transformers 4.46.3, pillow 9.4.0,
numpy 1.24, soundfile 0.14.0 (its bundled libsndfile 1.2.2), soxr 1.1.0):
    build/refenv/bin/python tests/reference/make_media_fixtures.py tests/fixtures/media \\
        --jfk ../shared/data/speech/jfk.wav

What is in golden.safetensors (all images HWC uint8 unless said otherwise):
  decode.<file>            PIL: np.array(Image.open(file).convert("RGB"))   (JPEGs: every 8th/2nd row/column)
  siglip<S>.<file>         SiglipImageProcessor(size S x S, bilinear as SigLIP2's config) pixel_values, stored
                           as the uint8 level each value is the image of (the script checks that the map is
                           exact), HWC
  clip<S>.<file>           CLIPImageProcessor(shortest_edge S, crop S x S), same storage
  lut.siglip, lut.clip     f32 [3][256]: pixel_values of the levels 0..255 (do_resize=False), i.e. the
                           rescale + normalize map, bit for bit
  resize.<file>.<filter>.<W>x<H>   PIL Image.resize on the decoded file (proc_WxH: a procedural image)
  proc.<kind>.<W>x<H>.hash / .sub  procedural images (the formula is repeated in the C test) through the
                           processors at full size: FNV-1a 64 of the uint8 result (8 bytes) and every 8th
                           row/column of it
  audio.<file>             librosa.load(file, sr=16000, mono=True) as librosa 0.10 does it: soundfile float32,
                           mean over channels in float32, soxr.resample(quality="soxr_hq"), fix_length to
                           ceil(n * 16000 / sr) (16 kHz files: the first 2000 samples)
  whisper.<case>.np        WhisperFeatureExtractor numpy path (_np_extract_fbank_features), the first frames
  whisper.<case>.torch     its default torch path (what ModRWKV ran), the same frames (speech only)
  whisper.<case>.tail      the value of every frame after those (the script checks they are all equal)
  whisper.<case>.real      attention_mask.sum() with return_attention_mask=True
  wavlm.norm               Wav2Vec2FeatureExtractor(do_normalize=True) on speech_16k.wav: first 4000 values
  wavlm.norm.stats         f64 [sum, sum of squares] of the whole output
  jfk.*                    statistics and sampled values of the numpy-path log-mel of jfk.wav (read in place)

On the GPU machine (transformers 5.x with torchvision, no soundfile/soxr needed), measure how far the
torchvision-based processors are from the PIL ones, on the committed fixtures (prints, writes nothing):
    python tests/reference/make_media_fixtures.py --report tests/fixtures/media

Deterministic: fixed formulas and numpy PCG64 seeds; rerunning rewrites the same bytes (the lossy encoders
are deterministic too).
"""

import argparse
import io
import os
import struct
import zlib

import numpy as np
from PIL import Image

SEED = 20250901


# ------------------------------------------------------------------------------------------ helpers

def fnv1a64(data: bytes) -> bytes:
    h = 0xCBF29CE484222325
    arr = np.frombuffer(data, np.uint8)
    # vectorised in blocks would reorder the hash; a plain loop over a few MB is fine
    for b in arr.tolist():
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return struct.pack("<Q", h)


def proc_image(w: int, h: int) -> np.ndarray:
    """Procedural RGB test image; tests/test_media.c computes the same bytes."""
    x = np.arange(w, dtype=np.uint32)[None, :]
    y = np.arange(h, dtype=np.uint32)[:, None]
    out = np.zeros((h, w, 3), np.uint8)
    with np.errstate(over="ignore"):
        for c in range(3):
            s = (x * np.uint32(73856093)) ^ (y * np.uint32(19349663)) ^ np.uint32((c + 1) * 83492791)
            s = (s ^ (s >> np.uint32(13))) * np.uint32(0x5BD1E995)
            s = s ^ (s >> np.uint32(15))
            noise = (s & np.uint32(31)).astype(np.int64)
            if c == 0:
                grad = x.astype(np.int64) * 255 // max(w - 1, 1)
            elif c == 1:
                grad = y.astype(np.int64) * 255 // max(h - 1, 1)
            else:
                grad = (x.astype(np.int64) + y) * 255 // max(w + h - 2, 1)
            check = (((x >> np.uint32(4)) + (y >> np.uint32(4))) & np.uint32(1)).astype(np.int64) * 48
            v = grad * 3 // 4 + check + noise
            out[:, :, c] = np.minimum(v, 255).astype(np.uint8)
    return out


def photo_like(w, h, rng):
    """Smooth shapes, gradients and texture: something JPEG is meant for."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    img[..., 0] = 128 + 90 * np.sin(xx / 37.0) * np.cos(yy / 23.0)
    img[..., 1] = 60 + 150 * (yy / h)
    img[..., 2] = 200 - 120 * (xx / w)
    for _ in range(12):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(8, 60)
        col = rng.uniform(0, 255, 3)
        m = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
        img[m] = 0.3 * img[m] + 0.7 * col
    img += rng.normal(0, 6, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def png_16bit(arr16: np.ndarray) -> bytes:
    """A minimal PNG writer for 16-bit gray (h, w) or RGB (h, w, 3) (PIL cannot write 16-bit RGB)."""
    h, w = arr16.shape[:2]
    ctype = 0 if arr16.ndim == 2 else 2
    raw = b"".join(b"\x00" + arr16[r].astype(">u2").tobytes() for r in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, ctype, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def gif_lzw_literal(indices, min_code=8):
    """'Uncompressed' LZW: a clear code before every run of 254 literals keeps the code width at 9 bits."""
    clear, end, width = 1 << min_code, (1 << min_code) + 1, min_code + 1
    codes, run = [], (1 << min_code) - 2
    for i, v in enumerate(indices):
        if i % run == 0:
            codes.append(clear)
        codes.append(int(v))
    codes.append(end)
    bits = nb = 0
    out = bytearray()
    for c in codes:
        bits |= c << nb
        nb += width
        while nb >= 8:
            out.append(bits & 255)
            bits >>= 8
            nb -= 8
    if nb:
        out.append(bits & 255)
    return bytes(out)


def gif_sub_blocks(b):
    out = bytearray()
    for i in range(0, len(b), 255):
        out.append(len(b[i:i + 255]))
        out += b[i:i + 255]
    return bytes(out) + b"\x00"


def gif_color_table(pal):
    n = len(pal) // 3
    k = max(0, (n - 1).bit_length() - 1)
    return k, bytes(pal) + bytes(3 * ((2 << k) - n))


def make_gif(width, height, gpal, bg, frames):
    """frames: (x, y, w, h, indices, transparent index or None, local palette or None)"""
    k, table = gif_color_table(gpal)
    out = bytearray(b"GIF89a") + struct.pack("<HH", width, height) + bytes([0x80 | 0x70 | k, bg, 0]) + table
    for x, y, w, h, idx, trns, lpal in frames:
        flags = 1 if trns is not None else 0
        out += bytes([0x21, 0xF9, 4, flags | (1 << 2), 10, 0, trns or 0, 0])
        out += b"\x2c" + struct.pack("<HHHH", x, y, w, h)
        if lpal is not None:
            k, table = gif_color_table(lpal)
            out += bytes([0x80 | k]) + table
        else:
            out += b"\x00"
        out += bytes([8]) + gif_sub_blocks(gif_lzw_literal(idx.ravel()))
    return bytes(out + b"\x3b")


# ------------------------------------------------------------------------------------------ images

def write_images(out, rng):
    """Writes the image inputs; returns {file name: PIL-decoded RGB array}."""
    files = {}

    def save(name, im, **kw):
        im.save(os.path.join(out, name), **kw)

    base = proc_image(97, 61)
    save("rgb_97x61.png", Image.fromarray(base))
    g = np.clip(np.add.outer(np.arange(30) * 6, np.arange(40) * 3) + rng.integers(0, 20, (30, 40)), 0, 255)
    save("gray_40x30.png", Image.fromarray(g.astype(np.uint8), "L"))
    rgba = np.concatenate([proc_image(33, 47), rng.integers(0, 256, (47, 33, 1))], axis=2).astype(np.uint8)
    rgba[:5, :5, 3] = 0  # fully transparent corner: the colour must survive
    save("rgba_33x47.png", Image.fromarray(rgba, "RGBA"))
    la = np.stack([g[:13, :21], rng.integers(0, 256, (13, 21))], axis=2).astype(np.uint8)
    save("la_21x13.png", Image.fromarray(la, "LA"))
    pal_im = Image.fromarray(rng.integers(0, 16, (20, 50)).astype(np.uint8), "P")
    pal_im.putpalette(rng.integers(0, 256, 48).astype(np.uint8).tolist())
    save("pal_50x20.png", pal_im, transparency=3)
    with open(os.path.join(out, "rgb16_20x10.png"), "wb") as f:
        f.write(png_16bit(rng.integers(0, 65536, (10, 20, 3)).astype(np.uint16)))
    gray16 = rng.integers(0, 65536, (9, 12)).astype(np.uint16)
    with open(os.path.join(out, "gray16_12x9.png"), "wb") as f:
        f.write(png_16bit(gray16))
    save("strip_1x50.png", Image.fromarray(proc_image(1, 50)))
    save("strip_50x1.png", Image.fromarray(proc_image(50, 1)))
    save("tiny_7x5.bmp", Image.fromarray(proc_image(7, 5)))
    bmp_p = Image.fromarray(rng.integers(0, 8, (6, 9)).astype(np.uint8), "P")
    bmp_p.putpalette(rng.integers(0, 256, 24).astype(np.uint8).tolist())
    save("pal_9x6.bmp", bmp_p)
    save("rgba_8x4.bmp", Image.fromarray(rng.integers(0, 256, (4, 8, 4)).astype(np.uint8), "RGBA"))
    gpal = rng.integers(0, 256, 16 * 3).astype(np.uint8)
    lpal = rng.integers(0, 256, 16 * 3).astype(np.uint8)
    with open(os.path.join(out, "anim_10x7.gif"), "wb") as f:
        f.write(make_gif(10, 7, gpal, 5, [
            (2, 1, 6, 5, rng.integers(0, 16, (5, 6)), 7, None),
            (0, 0, 10, 7, rng.integers(0, 16, (7, 10)), None, lpal)]))
    photo = photo_like(480, 400, rng)
    save("photo_480x400.jpg", Image.fromarray(photo), quality=90)
    save("prog_120x90.jpg", Image.fromarray(photo[100:190, 200:320]), quality=85, progressive=True)
    save("gray_64x48.jpg", Image.fromarray(photo[:48, :64, 1], "L"), quality=92)
    save("small_16x12.png", Image.fromarray(proc_image(16, 12)))
    for name in sorted(os.listdir(out)):
        if name.rsplit(".", 1)[-1] in ("png", "jpg", "bmp", "gif"):
            files[name] = np.array(Image.open(os.path.join(out, name)).convert("RGB"))
    # PIL clips 16-bit grayscale to 255 instead of scaling it (mode "I" -> "L"); we keep the high byte, as
    # PIL itself does for 16-bit RGB. The goldens follow what we do (and the processors get that image).
    files["gray16_12x9.png"] = np.repeat((gray16 >> 8).astype(np.uint8)[..., None], 3, axis=2)
    return files


def pixel_lut(proc, **no_geometry):
    """pixel_values of every uint8 level, per channel: the processor's rescale + normalize map."""
    ramp = np.repeat(np.arange(256, dtype=np.uint8).reshape(16, 16, 1), 3, axis=2)  # 16x16: no layout doubt
    kw = {} if getattr(proc, "backend", None) == "torchvision" else {"input_data_format": LAST}
    pv = proc(images=Image.fromarray(ramp), do_resize=False, return_tensors="np", **kw,
              **no_geometry)["pixel_values"][0]
    return pv.reshape(3, 256).astype(np.float32)  # [3][256]


def to_levels(pv, lut):
    """Inverts the exact map: pixel_values [3][H][W] -> uint8 HWC, asserting every value is hit exactly."""
    out = np.zeros(pv.shape[1:] + (3,), np.uint8)
    for c in range(3):
        idx = np.clip(np.searchsorted(lut[c], pv[c]), 0, 255)
        if not np.array_equal(lut[c][idx], pv[c]):
            raise SystemExit("processor output is not an exact image of uint8 levels")
        out[..., c] = idx
    return out


LAST = "channels_last"


def pil_class(name):
    """The PIL-based processor: `name` in transformers 4.x, `name + "Pil"` in 5.x (where `name` itself is the
    torchvision-based one)."""
    import transformers
    return getattr(transformers, name + "Pil", None) or getattr(transformers, name)


def siglip_proc(size, cls=None):
    """As google/siglip2-base-patch16-384's preprocessor_config.json sets it up: bilinear (resample 2).
    SiglipImageProcessor's own default, without a config, is bicubic (what SigLIP v1 configs use)."""
    cls = cls or pil_class("SiglipImageProcessor")
    return cls(size={"height": size, "width": size}, resample=2)


def clip_proc(size, cls=None):
    """As openai/clip-vit-large-patch14-336 sets it up (bicubic, resample 3, its default)."""
    cls = cls or pil_class("CLIPImageProcessor")
    return cls(size={"shortest_edge": size}, crop_size={"height": size, "width": size}, resample=3)


def run_proc(proc, im, tensors="np"):
    """pixel_values[0] as float64 numpy. The numpy/PIL processors guess the channel axis from the shape and
    take a 1- or 3-pixel-high RGB image for a channels-first one (then fail or resize garbage: ModRWKV would
    crash on such images), so they are told; the torchvision ones take the PIL image as it is."""
    kw = {} if getattr(proc, "backend", None) == "torchvision" else {"input_data_format": LAST}
    pv = proc(images=im, return_tensors=tensors, **kw)["pixel_values"][0]
    return pv.double().numpy() if tensors == "pt" else np.asarray(pv, np.float64)


PROC_CASES = {  # procedural images through the processors at the published sizes
    # (1000000, 1): weights computed per use (too many to table); (1, 40000): vertical pass streamed
    "siglip384": [(1000, 700), (200, 150), (384, 384), (385, 383), (7, 5), (2000, 90), (1000000, 1),
                  (1, 40000)],
    "clip336": [(1000, 700), (200, 150), (336, 500), (1, 500), (3000, 40), (7, 5)],
}
SMALL_SIZES = {"siglip": [40], "clip": [36]}  # every file; plus these for two of them:
MORE_SIZES = {"rgb_97x61.png": {"siglip": [64], "clip": [48]},
              "photo_480x400.jpg": {"siglip": [64], "clip": [48]}}
RESIZES = [("rgb_97x61.png", "bilinear", 50, 80), ("rgb_97x61.png", "bicubic", 200, 13),
           ("photo_480x400.jpg", "bilinear", 61, 47), ("gray_40x30.png", "bicubic", 41, 29),
           ("small_16x12.png", "bicubic", 3, 100)]


def image_goldens(out, files, g):
    sig, clp = siglip_proc(8), clip_proc(8)
    g["lut.siglip"] = pixel_lut(sig)
    g["lut.clip"] = pixel_lut(clp, do_center_crop=False)
    lut = {"siglip": g["lut.siglip"], "clip": g["lut.clip"]}
    for name, arr in files.items():
        step = 8 if name.startswith("photo") else 2 if name.startswith("prog") else 1
        g[f"decode.{name}"] = arr[::step, ::step]
        im = Image.fromarray(arr)
        for kind, sizes in SMALL_SIZES.items():
            for s in sizes + MORE_SIZES.get(name, {}).get(kind, []):
                proc = siglip_proc(s) if kind == "siglip" else clip_proc(s)
                pv = run_proc(proc, im).astype(np.float32)
                g[f"{kind}{s}.{name}"] = to_levels(pv, lut[kind])
    for name, filt, w, h in RESIZES:
        rs = Image.BILINEAR if filt == "bilinear" else Image.BICUBIC
        g[f"resize.{name}.{filt}.{w}x{h}"] = np.array(Image.fromarray(files[name]).resize((w, h), rs))
    # a very tall source to a few rows: vertical weights computed per use, vertical pass streamed
    g["resize.proc_10x300000.bilinear.12x40"] = np.array(Image.fromarray(proc_image(10, 300000)).resize(
        (12, 40), Image.BILINEAR))
    for kind, cases in PROC_CASES.items():
        size = int(kind[-3:])
        proc = siglip_proc(size) if kind.startswith("siglip") else clip_proc(size)
        lk = lut["siglip" if kind.startswith("siglip") else "clip"]
        for w, h in cases:
            pv = run_proc(proc, Image.fromarray(proc_image(w, h))).astype(np.float32)
            lv = to_levels(pv, lk)
            g[f"proc.{kind}.{w}x{h}.hash"] = np.frombuffer(fnv1a64(lv.tobytes()), np.uint8).copy()
            g[f"proc.{kind}.{w}x{h}.sub"] = lv[::8, ::8].copy()


# ------------------------------------------------------------------------------------------- audio

AUDIO_FILES = {}  # name -> (rate, channels) for the manifest


def synth_speechlike(n, sr, rng, f0=140.0):
    """Harmonics with a wandering pitch and formant-ish weights, noise bursts and a silent gap."""
    t = np.arange(n) / sr
    pitch = f0 * (1 + 0.2 * np.sin(2 * np.pi * 1.7 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / sr
    y = sum(np.sin(k * phase) * (0.5 / k) * (1 + np.sin(2 * np.pi * (0.5 + 0.3 * k) * t))
            for k in range(1, 12))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3.1 * t) ** 2
    y = 0.3 * y * env + 0.02 * rng.standard_normal(n)
    y[int(0.45 * n):int(0.55 * n)] = 0.0  # silence in the middle
    return y


def ogg_crc(data: bytes) -> int:
    crc = 0
    for b in data:
        crc ^= b << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7 if crc & 0x80000000 else crc << 1) & 0xFFFFFFFF
    return crc


def ogg_fixed_serial(data: bytes, serial=0x4D525743) -> bytes:
    """libsndfile gives each Ogg stream a random serial number: fix it (and the page CRCs) so that the
    fixture bytes are reproducible."""
    out, pos = bytearray(), 0
    while pos < len(data):
        assert data[pos:pos + 4] == b"OggS"
        nseg = data[pos + 26]
        size = 27 + nseg + sum(data[pos + 27:pos + 27 + nseg])
        page = bytearray(data[pos:pos + size])
        page[14:18] = struct.pack("<I", serial)
        page[22:26] = b"\0\0\0\0"
        page[22:26] = struct.pack("<I", ogg_crc(bytes(page)))
        out += page
        pos += size
    return bytes(out)


def write_audio(out, rng):
    import soundfile as sf

    def put(name, data, sr, fmt=None, subtype=None):
        buf = io.BytesIO()
        fmt = fmt or name.rsplit(".", 1)[1].upper()
        with sf.SoundFile(buf, "w", sr, 1 if data.ndim == 1 else data.shape[1], subtype, format=fmt) as f:
            # no PEAK chunk: it carries a time stamp
            sf._snd.sf_command(f._file, 0x1050, sf._ffi.NULL, 0)  # SFC_SET_ADD_PEAK_CHUNK, SF_FALSE
            f.write(data)
        b = buf.getvalue()
        with open(os.path.join(out, name), "wb") as fp:
            fp.write(ogg_fixed_serial(b) if fmt == "OGG" else b)
        AUDIO_FILES[name] = (sr, 1 if data.ndim == 1 else data.shape[1])

    t8 = np.arange(int(0.3 * 8000)) / 8000
    put("sine_8k.wav", 0.5 * np.sin(2 * np.pi * 440 * t8) + 0.2 * np.sin(2 * np.pi * 1000 * t8), 8000,
        subtype="PCM_16")
    t22 = np.arange(int(0.25 * 22050)) / 22050
    chirp = 0.6 * np.sin(2 * np.pi * (100 + 8000 * t22) * t22)
    put("chirp_22k_stereo.wav", np.stack([chirp, 0.3 * rng.uniform(-1, 1, len(t22))], 1), 22050,
        subtype="PCM_16")
    n44 = int(0.2 * 44100)
    put("noise_44k_f32.wav", (0.25 * rng.standard_normal(n44) + 0.3 * np.sin(np.arange(n44) * 0.05))
        .astype(np.float32), 44100, subtype="FLOAT")
    n48 = int(0.25 * 48000)
    sp = synth_speechlike(n48, 48000, rng)
    put("speech_48k_stereo.flac", np.stack([sp, 0.8 * sp[::-1]], 1), 48000, subtype="PCM_16")
    put("three_ch_48k.wav", rng.uniform(-0.5, 0.5, (4800, 3)), 48000, subtype="PCM_16")
    t16 = np.arange(8000) / 16000
    put("tone_16k.ogg", 0.4 * np.sin(2 * np.pi * 330 * t16) * np.hanning(8000), 16000, "OGG", "VORBIS")
    put("opus_48k.ogg", synth_speechlike(14400, 48000, rng), 48000, "OGG", "OPUS")
    t44 = np.arange(22050) / 44100
    put("tone_44k.mp3", 0.4 * np.sin(2 * np.pi * 523.25 * t44), 44100, "MP3", "MPEG_LAYER_III")
    put("pcm24_96k.aiff", 0.5 * np.sin(2 * np.pi * 1234 * np.arange(4800) / 96000), 96000, "AIFF", "PCM_24")
    put("ulaw_8k.au", 0.5 * np.sin(2 * np.pi * 300 * np.arange(1600) / 8000), 8000, "AU", "ULAW")
    put("silence_16k.wav", np.zeros(3200), 16000, subtype="PCM_16")
    put("speech_16k.wav", synth_speechlike(24000, 16000, rng, f0=180.0), 16000, subtype="PCM_16")
    nan = (0.1 * np.sin(np.arange(1600) * 0.1)).astype(np.float32)
    nan[777] = np.nan
    put("nan_f32.wav", nan, 16000, subtype="FLOAT")
    put("empty.wav", np.zeros(0), 16000, subtype="PCM_16")


def librosa_load(path, sr=16000):
    """librosa.load(path, sr=sr, mono=True) of librosa 0.10, without librosa (it does not install on this
    numpy): soundfile float32 -> to_mono (np.mean over channels) -> soxr_hq -> fix_length."""
    import soundfile as sf
    import soxr
    y, native = sf.read(path, dtype="float32", always_2d=True)
    y = y.T
    y = np.mean(y, axis=0) if y.shape[0] > 1 else y[0]
    if native != sr:
        n_samples = int(np.ceil(y.shape[-1] * (float(sr) / native)))
        y = soxr.resample(y, native, sr, quality="soxr_hq")
        y = y[:n_samples] if len(y) >= n_samples else np.pad(y, (0, n_samples - len(y)))
    return y.astype(np.float32)


WHISPER_KEEP = 160  # frames stored in full; the rest must be a constant (the padding)


def whisper_goldens(g, key, wav, n_mels=80, keep=WHISPER_KEEP, long=False, tail=True, torch_path=False):
    from transformers import WhisperFeatureExtractor
    fe = WhisperFeatureExtractor(feature_size=n_mels)
    x = wav.astype(np.float32)
    padded = np.zeros(fe.n_samples, np.float32)
    padded[:min(len(x), fe.n_samples)] = x[:fe.n_samples]
    ref_np = fe._np_extract_fbank_features(padded[None], "cpu")[0]
    res = fe(x, sampling_rate=16000, return_tensors="np", return_attention_mask=True)
    ref_t = res["input_features"][0]
    g[f"whisper.{key}.real"] = np.array([int(res["attention_mask"].sum())], np.int32)
    if long:  # the whole 30 s carry signal: keep every 20th frame
        g[f"whisper.{key}.np"] = ref_np[:, ::20].copy()
        return
    g[f"whisper.{key}.np"] = ref_np[:, :keep].copy()
    if torch_path:
        g[f"whisper.{key}.torch"] = ref_t[:, :keep].copy()
    if tail:
        rest = ref_np[:, keep:]
        if not np.all(rest == rest.flat[0]):
            raise SystemExit(f"whisper.{key}: the frames after {keep} are not all padding")
        g[f"whisper.{key}.tail"] = np.array([rest.flat[0]], np.float32)


def audio_goldens(out, g, jfk):
    import soundfile as sf
    for name, (rate, _) in AUDIO_FILES.items():
        if name in ("nan_f32.wav", "empty.wav", "speech_16k.wav"):
            continue  # speech_16k.wav is used as it is (16 kHz mono): the log-mel goldens check it
        y = librosa_load(os.path.join(out, name))
        g[f"audio.{name}"] = y[:2000].copy() if rate == 16000 else y
    whisper_goldens(g, "sine_8k", g["audio.sine_8k.wav"], keep=40)
    whisper_goldens(g, "flac", g["audio.speech_48k_stereo.flac"], keep=40)
    speech, _ = sf.read(os.path.join(out, "speech_16k.wav"), dtype="float32")
    whisper_goldens(g, "speech", speech, torch_path=True)
    whisper_goldens(g, "speech128", speech, n_mels=128, keep=60, tail=False)
    whisper_goldens(g, "silence", librosa_load(os.path.join(out, "silence_16k.wav")), keep=40)
    whisper_goldens(g, "long", np.tile(speech, 21), long=True)  # 31.5 s: truncated to 30 s
    from transformers import Wav2Vec2FeatureExtractor
    fe = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    norm = fe(speech, sampling_rate=16000, return_tensors="np")["input_values"][0]
    g["wavlm.norm"] = norm[:4000].astype(np.float32)
    g["wavlm.norm.stats"] = np.array([norm.astype(np.float64).sum(), (norm.astype(np.float64) ** 2).sum()])
    if jfk:
        from transformers import WhisperFeatureExtractor
        y = librosa_load(jfk)
        fe = WhisperFeatureExtractor()
        padded = np.zeros(fe.n_samples, np.float32)
        padded[:len(y)] = y[:fe.n_samples]
        mel = fe._np_extract_fbank_features(padded[None], "cpu")[0]
        res = fe(y, sampling_rate=16000, return_tensors="np", return_attention_mask=True)
        idx = (np.arange(256, dtype=np.int64) * 9973) % mel.size
        g["jfk.n"] = np.array([len(y)], np.int64)
        g["jfk.audio_stats"] = np.array([y.astype(np.float64).sum(), (y.astype(np.float64) ** 2).sum()])
        g["jfk.audio_head"] = y[:64].copy()
        g["jfk.real"] = np.array([int(res["attention_mask"].sum())], np.int32)
        g["jfk.mel_stats"] = np.array([mel.astype(np.float64).mean(), mel.astype(np.float64).std(),
                                       mel.min(), mel.max()])
        g["jfk.mel_index"] = idx
        g["jfk.mel_values"] = mel.ravel()[idx].copy()
        g["jfk.mel_torch_values"] = res["input_features"][0].ravel()[idx].copy()


# ------------------------------------------------------------------------------------------- report

def report(fixtures):
    """Compares the processors available here (transformers 5.x: torchvision-based fast ones) with the
    committed PIL-based goldens, in 8-bit levels."""
    import transformers
    from safetensors.numpy import load_file
    g = load_file(os.path.join(fixtures, "golden.safetensors"))
    print("transformers", transformers.__version__)
    variants = []
    for cls_name in ("SiglipImageProcessor", "SiglipImageProcessorPil", "SiglipImageProcessorFast",
                     "CLIPImageProcessor", "CLIPImageProcessorPil", "CLIPImageProcessorFast"):
        cls = getattr(transformers, cls_name, None)
        if cls is not None and not (cls_name.endswith("Fast") and transformers.__version__ >= "5"):
            variants.append((cls_name, cls))  # (5.x keeps "...Fast" as a deprecated alias)
    worst = {}
    for cls_name, cls in variants:
        kind = "siglip" if cls_name.startswith("Siglip") else "clip"
        lut = g[f"lut.{kind}"]
        scale = 0.5 if kind == "siglip" else np.array([0.26862954, 0.26130258, 0.27577711])[:, None, None]
        for key in sorted(k for k in g if k.startswith(kind) and not k.startswith("lut")):
            size = int(key.split(".")[0][len(kind):])
            name = key.split(".", 1)[1]
            if name.startswith(("photo", "prog")):
                continue  # their decode goldens are subsampled
            proc = siglip_proc(size, cls) if kind == "siglip" else clip_proc(size, cls)
            im = Image.fromarray(g[f"decode.{name}"])  # the pixels the goldens were made from
            pv = run_proc(proc, im, "pt")
            ref = np.stack([lut[c][g[key][..., c]] for c in range(3)]).astype(np.float64)
            levels = np.abs(pv - ref) * scale * 255.0
            d = float(levels.max())
            frac = float((levels > 0.5).mean())
            worst[cls_name] = max(worst.get(cls_name, 0.0), d)
            print(f"{cls_name:26s} {key:34s} max {d:5.2f} levels, {100 * frac:5.1f}% of values off by > 0.5")
        # the published sizes, on the procedural images (golden: every 8th row/column)
        for pkind, cases in PROC_CASES.items():
            if not pkind.startswith(kind):
                continue
            size = int(pkind[-3:])
            proc = siglip_proc(size, cls) if kind == "siglip" else clip_proc(size, cls)
            for w, h in cases:
                pv = run_proc(proc, Image.fromarray(proc_image(w, h)), "pt")[:, ::8, ::8]
                sub = g[f"proc.{pkind}.{w}x{h}.sub"]
                ref = np.stack([lut[c][sub[..., c]] for c in range(3)]).astype(np.float64)
                levels = np.abs(pv - ref) * scale * 255.0
                worst[cls_name] = max(worst.get(cls_name, 0.0), float(levels.max()))
                label = f"{pkind} {w}x{h}"
                print(f"{cls_name:26s} {label:34s} max {levels.max():5.2f} levels, "
                      f"{100 * float((levels > 0.5).mean()):5.1f}% of values off by > 0.5")
    for k, v in worst.items():
        print(f"WORST {k}: {v:.2f} levels")
    from transformers import WhisperFeatureExtractor
    print("whisper.speech: committed numpy path vs committed torch path: max "
          f"{np.abs(g['whisper.speech.np'] - g['whisper.speech.torch']).max():.3g}")
    fe = WhisperFeatureExtractor()
    wav = g["audio.sine_8k.wav"]
    now = fe(wav, sampling_rate=16000, return_tensors="np")["input_features"][0][:, :40]
    print(f"whisper.sine_8k: this transformers' default path vs committed numpy path: max "
          f"{np.abs(now - g['whisper.sine_8k.np']).max():.3g}")


# --------------------------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="fixture directory (tests/fixtures/media)")
    ap.add_argument("--jfk", help="path of jfk.wav, read in place (../shared/data/speech/jfk.wav)")
    ap.add_argument("--report", action="store_true", help="compare this transformers' processors with the "
                    "committed goldens and write nothing")
    a = ap.parse_args()
    if a.report:
        report(a.out)
        return
    from safetensors.numpy import save_file
    os.makedirs(a.out, exist_ok=True)
    for name in os.listdir(a.out):
        os.remove(os.path.join(a.out, name))
    rng = np.random.default_rng(SEED)
    g = {}
    files = write_images(a.out, rng)
    image_goldens(a.out, files, g)
    try:
        import soundfile  # noqa: F401
        import soxr  # noqa: F401
    except ImportError:  # e.g. on the GPU machine: images only (these goldens are not the committed ones)
        print("soundfile or soxr missing: audio fixtures skipped")
    else:
        write_audio(a.out, rng)
        audio_goldens(a.out, g, a.jfk)
    g = {k: np.ascontiguousarray(v) for k, v in g.items()}
    save_file(g, os.path.join(a.out, "golden.safetensors"), metadata={"made_by": "make_media_fixtures.py"})
    for name in os.listdir(a.out):
        os.chmod(os.path.join(a.out, name), 0o644)
    total = sum(os.path.getsize(os.path.join(a.out, n)) for n in os.listdir(a.out))
    print(f"wrote {len(os.listdir(a.out))} files, {total} bytes, {len(g)} golden tensors")


if __name__ == "__main__":
    main()
