#!/usr/bin/env python3
"""Helpers of recipes/speech.sh and recipes/findings.sh (python3 standard library only).

  pack_speech.py trim-encoder WHISPER_DIR OUT_DIR NPOS
      the encoder tensors of a Hugging Face Whisper checkpoint (model.encoder.*), with the position table cut
      to its first NPOS rows (a window of NPOS/50 s); dtypes as stored; OUT_DIR/{model.safetensors,config.json}
  pack_speech.py fit-window MANIFEST ROOT SECONDS OUT
      the records of an audio manifest whose 16-bit PCM WAV lasts at most SECONDS - 0.1 s
  pack_speech.py pack BUNDLE.safetensors OUT.gguf [MODRWKV]
      a trained ModRWKV speech bundle (modrwkv train) as one GGUF that `modrwkv chat/eval -m` loads: the RWKV-7
      in llama.cpp's layout, big matrices q8_0 (`modrwkv convert --dtype q8_0 --vocab bytes`, vocabulary
      embedded); the Whisper encoder's Linear weights q8_0 (dequantised to f32 when loaded), its convolutions,
      positions and norms f16/f32; the adapter f16 (biases f32); the bundle's metadata as GGUF strings
  pack_speech.py summary RUN_DIR N_RECORDS
      the results table of a recipes/speech.sh run (markdown) from its eval logs and timings
"""
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import wave


# ----------------------------------------------------------------------------------------------- safetensors
def st_read(path):
    f = open(path, 'rb')
    n = struct.unpack('<Q', f.read(8))[0]
    h = json.loads(f.read(n))
    meta = h.pop('__metadata__', {})
    return f, 8 + n, h, meta


def st_tensor(f, base, info):
    a, b = info['data_offsets']
    f.seek(base + a)
    return f.read(b - a)


def st_write(path, tensors, meta):  # tensors: list of (name, dtype, shape, bytes)
    hdr, off = {}, 0
    for name, dt, shape, data in tensors:
        hdr[name] = {'dtype': dt, 'shape': list(shape), 'data_offsets': [off, off + len(data)]}
        off += len(data)
    hdr['__metadata__'] = meta
    hb = json.dumps(hdr, separators=(',', ':')).encode()
    hb += b' ' * (-len(hb) % 8)
    tmp = path + '.tmp'
    with open(tmp, 'wb') as g:
        g.write(struct.pack('<Q', len(hb)))
        g.write(hb)
        for t in tensors:
            g.write(t[3])
    os.replace(tmp, path)


def trim_encoder(src, out, npos):
    f, base, h, _ = st_read(os.path.join(src, 'model.safetensors'))
    tensors = []
    for k in sorted(h):
        if not k.startswith('model.encoder.'):
            continue
        v = h[k]
        data, shape = st_tensor(f, base, v), list(v['shape'])
        if k == 'model.encoder.embed_positions.weight':
            if npos > shape[0]:
                sys.exit('trim-encoder: the checkpoint has only %d positions' % shape[0])
            es = {'F16': 2, 'BF16': 2, 'F32': 4}[v['dtype']]
            data, shape[0] = data[:npos * shape[1] * es], npos
        tensors.append((k, v['dtype'], shape, data))
    os.makedirs(out, exist_ok=True)
    st_write(os.path.join(out, 'model.safetensors'), tensors,
             {'format': 'pt', 'source': 'Whisper encoder of %s (OpenAI, MIT licence), window %d positions (%.1f s)'
              % (src, npos, npos / 50.0)})
    cfg = json.load(open(os.path.join(src, 'config.json')))
    cfg['max_source_positions'] = npos
    with open(os.path.join(out, 'config.json'), 'w') as g:
        json.dump(cfg, g, indent=2)
        g.write('\n')
    print('%s: %d encoder tensors, %d bytes, window %d positions' % (out, len(tensors), sum(len(t[3]) for t in tensors), npos))


def fit_window(manifest, root, seconds, out):
    keep, drop = [], 0
    for line in open(manifest):
        r = json.loads(line)
        w = wave.open(os.path.join(root, r['audio']))
        if w.getnframes() / w.getframerate() <= seconds - 0.1:
            keep.append(line)
        else:
            drop += 1
    with open(out + '.tmp', 'w') as g:
        g.writelines(keep)
    os.replace(out + '.tmp', out)
    print('fit-window: kept %d of %d records (%d longer than %.1f s dropped)' % (len(keep), len(keep) + drop, drop, seconds - 0.1))


# ------------------------------------------------------------------------------------------------------ GGUF
GT_U8, GT_I8, GT_U16, GT_I16, GT_U32, GT_I32, GT_F32, GT_BOOL, GT_STR, GT_ARR, GT_U64, GT_I64, GT_F64 = range(13)
SCALAR = {GT_U8: '<B', GT_I8: '<b', GT_U16: '<H', GT_I16: '<h', GT_U32: '<I', GT_I32: '<i', GT_F32: '<f',
          GT_BOOL: '<B', GT_U64: '<Q', GT_I64: '<q', GT_F64: '<d'}
T_F32, T_F16, T_Q8_0 = 0, 1, 8


class Reader:
    def __init__(self, b):
        self.b, self.o = b, 0

    def get(self, fmt):
        v = struct.unpack_from(fmt, self.b, self.o)[0]
        self.o += struct.calcsize(fmt)
        return v

    def str(self):
        n = self.get('<Q')
        s = self.b[self.o:self.o + n]
        self.o += n
        return s

    def value(self, t):
        if t == GT_STR:
            return self.str()
        if t == GT_ARR:
            et, n = self.get('<I'), self.get('<Q')
            return (et, [self.value(et) for _ in range(n)])
        return self.get(SCALAR[t])


def gguf_read(path):
    b = open(path, 'rb').read()
    r = Reader(b)
    if b[:4] != b'GGUF':
        sys.exit('%s: not GGUF' % path)
    r.o = 4
    ver, nt, nkv = r.get('<I'), r.get('<Q'), r.get('<Q')
    kvs = []
    for _ in range(nkv):
        k = r.str()
        t = r.get('<I')
        kvs.append((k, t, r.value(t)))
    infos = []
    for _ in range(nt):
        name = r.str()
        nd = r.get('<I')
        dims = [r.get('<Q') for _ in range(nd)]
        infos.append((name, dims, r.get('<I'), r.get('<Q')))
    align = 32
    for k, t, v in kvs:
        if k == b'general.alignment':
            align = v
    data0 = (r.o + align - 1) // align * align
    sizes = sorted(set([i[3] for i in infos] + [len(b) - data0]))
    tensors = []
    for name, dims, t, off in infos:
        nxt = min(s for s in sizes if s > off) if any(s > off for s in sizes) else len(b) - data0
        n = 1
        for d in dims:
            n *= d
        nbytes = {T_F32: 4 * n, T_F16: 2 * n, T_Q8_0: n // 32 * 34}.get(t, nxt - off)
        tensors.append((name, dims, t, b[data0 + off:data0 + off + nbytes]))
    return kvs, tensors


def put_str(out, s):
    if isinstance(s, str):
        s = s.encode()
    out += struct.pack('<Q', len(s)) + s


def put_value(out, t, v):
    if t == GT_STR:
        put_str(out, v)
    elif t == GT_ARR:
        et, items = v
        out += struct.pack('<IQ', et, len(items))
        for x in items:
            put_value(out, et, x)
    else:
        out += struct.pack(SCALAR[t], v)


def gguf_write(path, kvs, tensors, align=32):
    out = bytearray(b'GGUF') + struct.pack('<IQQ', 3, len(tensors), len(kvs))
    for k, t, v in kvs:
        put_str(out, k)
        out += struct.pack('<I', t)
        put_value(out, t, v)
    off, offs = 0, []
    for name, dims, t, data in tensors:
        offs.append(off)
        off += (len(data) + align - 1) // align * align
    for (name, dims, t, data), o in zip(tensors, offs):
        put_str(out, name)
        out += struct.pack('<I', len(dims)) + b''.join(struct.pack('<Q', d) for d in dims)
        out += struct.pack('<IQ', t, o)
    out += b'\0' * (-len(out) % align)
    tmp = path + '.tmp'
    with open(tmp, 'wb') as g:
        g.write(out)
        for name, dims, t, data in tensors:
            g.write(data)
            g.write(b'\0' * (-len(data) % align))
    os.replace(tmp, path)


def to_floats(dt, data):
    n = len(data) // (2 if dt in ('F16', 'BF16') else 4)
    if dt == 'F32':
        return struct.unpack('<%df' % n, data)
    if dt == 'F16':
        return struct.unpack('<%de' % n, data)
    if dt == 'BF16':
        return struct.unpack('<%df' % n, b''.join(b'\0\0' + data[i:i + 2] for i in range(0, len(data), 2)))
    sys.exit('unsupported dtype %s' % dt)


def q8_0(x):
    """ggml's reference quantize_row_q8_0: blocks of 32, d = amax/127 (stored f16), q = round(x/d)."""
    out = bytearray()
    pk = struct.Struct('<e32b')
    for i in range(0, len(x), 32):
        blk = x[i:i + 32]
        amax = max(abs(v) for v in blk)
        d = amax / 127.0
        inv = 1.0 / d if d else 0.0
        q = [int(math.floor(abs(v) * inv + 0.5)) * (1 if v >= 0 else -1) for v in blk]
        out += pk.pack(d, *[max(-127, min(127, v)) for v in q])
    return bytes(out)


def pack(bundle, out, modrwkv):
    f, base, h, meta = st_read(bundle)
    if meta.get('modrwkv.format') is None:
        sys.exit('%s: not a ModRWKV bundle' % bundle)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(out))) as tmp:
        # 1. the RWKV-7 (llm.*) as a plain official-layout file, converted by modrwkv itself to a q8_0 GGUF
        lm = [(k[4:], h[k]['dtype'], h[k]['shape'], st_tensor(f, base, h[k])) for k in sorted(h) if k.startswith('llm.')]
        st_write(os.path.join(tmp, 'lm.safetensors'), lm, {'format': 'pt'})
        subprocess.run([modrwkv, 'convert', os.path.join(tmp, 'lm.safetensors'), os.path.join(tmp, 'lm.gguf'),
                        '--dtype', 'q8_0', '--vocab', 'bytes'], check=True, stdout=subprocess.DEVNULL)
        kvs, tensors = gguf_read(os.path.join(tmp, 'lm.gguf'))
    # 2. the bundle's metadata (not the training record) as strings
    for k in sorted(meta):
        if k.startswith('modrwkv.') and not k.startswith('modrwkv.train.'):
            kvs.append((k.encode(), GT_STR, meta[k].encode()))
    kvs.append((b'modrwkv.packed_by', GT_STR, b'recipes/pack_speech.py'))
    # 3. encoder and adapter (GGUF dims are the PyTorch shape reversed)
    nq = nh = 0
    for k in sorted(h):
        if k.startswith('llm.'):
            continue
        v = h[k]
        x = to_floats(v['dtype'], st_tensor(f, base, v))
        shape = v['shape']
        linear = k.startswith('encoder.') and len(shape) == 2 and k.endswith('.weight') and 'embed_positions' not in k \
            and shape[1] % 32 == 0
        if linear:
            data, t = q8_0(x), T_Q8_0
            nq += len(x)
        elif len(shape) >= 2:
            data, t = struct.pack('<%de' % len(x), *x), T_F16
            nh += len(x)
        else:
            data, t = struct.pack('<%df' % len(x), *x), T_F32
        tensors.append((k.encode(), list(reversed(shape)), t, data))
    gguf_write(out, kvs, tensors)
    print('%s: %d tensors, %.2f MB (encoder Linear weights q8_0: %.2f M values; f16: %.2f M values)'
          % (out, len(tensors), os.path.getsize(out) / 1e6, nq / 1e6, nh / 1e6))


# --------------------------------------------------------------------------------------------------- summary
def eval_table(path):
    n = errs = words = 0
    for line in open(path):
        r = json.loads(line)
        n += 1
        errs += r['wer_errors']
        words += r['wer_words']
    return n, errs, words


def summary(run, n_records):
    print('# recipes/speech.sh results (%s)\n' % run)
    print('| model | FSDD test split (real speech) WER | held-out espeak voices WER |')
    print('|---|---|---|')
    for tag, label in (('s1', 'after stage 1 (adapter)'), ('s2', 'after stage 2 (adapter + RWKV), f32'),
                       ('ship', 'shipped q8_0 GGUF')):
        cells = []
        for d in ('fsdd', 'espeak'):
            p = '%s/eval_%s_%s.jsonl' % (run, tag, d)
            if not os.path.exists(p):
                cells.append('-')
                continue
            n, e, w = eval_table(p)
            cells.append('%.1f %% (%d / %d words, %d clips)' % (100.0 * e / max(w, 1), e, w, n))
        if any(c != '-' for c in cells):
            print('| %s | %s | %s |' % (label, cells[0], cells[1]))
    print('\ntraining records (FSDD train + espeak train within the window): %s\n' % n_records)
    print('| phase | wall s | CPU s |')
    print('|---|---|---|')
    tw = tc = 0.0
    tdir = os.path.join(run, 'times')
    for name in sorted(os.listdir(tdir), key=lambda s: os.path.getmtime(os.path.join(tdir, s))):
        w, c = (float(x) for x in open(os.path.join(tdir, name)).read().split())
        tw += w
        tc += c
        print('| %s | %.1f | %.1f |' % (name, w, c))
    print('| total | %.1f | %.1f |' % (tw, tc))
    for s in ('s1', 's2'):
        p = os.path.join(run, s, 'train.jsonl')
        if os.path.exists(p):
            rows = [json.loads(l) for l in open(p)]
            k = max(1, len(rows) // 10)
            print('\nloss %s: %.3f -> %.3f (mean of the first / last tenth of %d steps)'
                  % (s, sum(r['loss'] for r in rows[:k]) / k, sum(r['loss'] for r in rows[-k:]) / k, len(rows)))
    ex = os.path.join(run, 'example_transcript.txt')
    if os.path.exists(ex):
        print('\nexample.wav ("the small red dog sees a big house") -> "%s"' % open(ex).read().strip())


def main():
    a = sys.argv[1:]
    if not a:
        sys.exit(__doc__)
    if a[0] == 'trim-encoder' and len(a) == 4:
        trim_encoder(a[1], a[2], int(a[3]))
    elif a[0] == 'fit-window' and len(a) == 5:
        fit_window(a[1], a[2], float(a[3]), a[4])
    elif a[0] == 'pack' and len(a) in (3, 4):
        pack(a[1], a[2], a[3] if len(a) == 4 else os.environ.get('MODRWKV', 'build/modrwkv'))
    elif a[0] == 'summary' and len(a) == 3:
        summary(a[1], a[2])
    else:
        sys.exit(__doc__)


if __name__ == '__main__':
    main()
