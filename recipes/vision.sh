#!/usr/bin/env bash
# The shipped vision model: a small SigLIP-style encoder trained by the project, frozen, then ModRWKV stage 1
# and stage 2 on the byte-level base language model, on CIFAR-10 as VQA and on generated scenes.
#
#   recipes/vision.sh [--quick] [--ship] [--continue] [--out DIR] [--threads N] [--device cuda]
#
#   0. data     modrwkv gen-scenes (64 px; train: SCENES_TRAIN images x 2 questions, seed 1; test: held-out
#               stream, SCENES_TEST images x 5 questions) into DATA/scenes; recipes/gen_cifar_vqa.sh (CIFAR-10
#               train 50,000 / test 10,000) into DATA/cifar. Kept when already there. Evaluation subsets:
#               CIFAR-10 test, the first EVAL_CIFAR_PER_CLASS images of each class (stratified, fixed); scenes
#               test, every question about the first EVAL_SCENES images.
#   1. encoder0 a random SigLIP vision tower in the Hugging Face layout (config.json, preprocessor_config.json,
#               model.safetensors; python3 standard library): 64x64 input, patch 8 (64 tokens), width 128,
#               3 layers, 4 heads, MLP 512, gelu_pytorch_tanh, post-LayerNorm
#   2. enc      the encoder stage: `modrwkv train --train adapter,rwkv,encoder` with a throwaway readout LM
#               (random byte-level RWKV-7 READOUT = 1 layer x 128) on CIFAR-10 train + scenes train: the
#               encoder learns to see (classes, colours, shapes, counts, places) through the answers' loss.
#               Its encoder is then cut out (DIR/encoder, Hugging Face layout) and stays frozen; the readout
#               LM and adapter are thrown away. enc is evaluated too (its accuracy bounds what the frozen
#               encoder makes possible).
#   3. base     the byte-level base LM (RWKV-7 L4 C256, recipes/base.sh -> build/models/base/model.safetensors;
#               run here when missing; BASE=FILE picks another)
#   4. s1       stage 1: a new v1 adapter (MLP 128 -> 512 -> 256 + LayerNorm residual, features prepended),
#               `--train adapter` (RWKV frozen, encoder features cached), CIFAR-10 + scenes
#   5. s2       stage 2: `--train adapter,rwkv` from s1
#   6. ship     the stage-2 bundle with its matrices in f16 (DIR/model/model.safetensors; `modrwkv convert`
#               bundles keep the stored dtype and q8_0 needs GGUF, which has no ModRWKV layout), evaluated
#               again; an example scene and the chat answers about it
#   7. eval     `modrwkv eval --task vqa` after enc and s1 and of the shipped file (the f32 stage-2 model only
#               on the first PARITY records of each subset, to measure what f16 changes): CIFAR-10 accuracy and
#               scenes accuracy per question type, with chance (uniform) and the best constant answer per type
#               (from the train split), into DIR/results.md
# --ship copies DIR/model/{model.safetensors,example.png} to models/vision/. --continue keeps every phase
# whose command (and inputs) did not change since it last finished in DIR (a changed phase reruns, and so does
# everything after it). --quick: a smoke run (< 30 s; tiny data, encoder and LM, a few steps, data under
# DIR/data) that never touches build/models, build/data or models/. --out DIR: working directory (default
# build/vision/run, or build/vision/quick). --threads N: threads per command (default 1). --device cuda: the encoder
# stage, stage 1 and stage 2 train on the GPU (a `make CUDA=1` modrwkv; evaluation and chat stay on the CPU), with
# larger defaults (the shipped model: `recipes/vision.sh --ship --device cuda --threads 16`, models/vision/README.md).
# Environment: MODRWKV (binary), DATA (default build/data), BASE, ENC_STEPS, S1_STEPS, S2_STEPS, ENC_B, S1_B, S2_B
# (batch sizes), ENCODER (a trained encoder's folder: skips the encoder stage), ENC_LR, S1_LR, S2_LR,
# EVAL_CIFAR_PER_CLASS, EVAL_SCENES, PARITY, MRW_SHARED (default ../shared).
# Same options, thread count and machine give the same model.
set -euo pipefail
cd "$(dirname "$0")/.."

main() {  # (one function: bash reads it whole before running, so editing the file during a run is safe)

quick=0; ship=0; cont=0; out=""; threads=1; device=cpu
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; shift ;;
    --ship) ship=1; shift ;;
    --continue) cont=1; shift ;;
    --out|--threads|--device) [ $# -ge 2 ] || { echo "vision.sh: $1 needs a value" >&2; exit 2; }
      case "$1" in --out) out=$2 ;; --threads) threads=$2 ;; *) device=$2 ;; esac; shift 2 ;;
    -h|--help) sed -n '2,43p' "$0"; exit 0 ;;
    *) echo "vision.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$threads" =~ ^[0-9]+$ ]] && [ "$threads" -ge 1 ] || { echo "vision.sh: --threads expects a positive integer" >&2; exit 2; }
case "$device" in cpu|cuda) ;; *) echo "vision.sh: --device must be cpu or cuda, not '$device'" >&2; exit 2 ;; esac
if [ "$quick" = 1 ] && [ "$ship" = 1 ]; then echo "vision.sh: --quick models are not shipped (drop --ship)" >&2; exit 2; fi
M=${MODRWKV:-build/modrwkv}
[ -x "$M" ] || { echo "vision.sh: $M not found (run make first)" >&2; exit 2; }
command -v python3 > /dev/null || { echo "vision.sh: python3 is needed" >&2; exit 2; }
shared=${MRW_SHARED:-../shared}
[ -f "$shared/data/images/cifar10-train.tar.gz" ] && [ -f "$shared/data/images/cifar10-test.tar.gz" ] ||
  { echo "vision.sh: $shared/data/images/cifar10-{train,test}.tar.gz not found" >&2; exit 2; }
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

# ---- settings (the full run: about 24 min on the 2-core machine with --threads 2, or 8 min on an H100 machine with
#      --device cuda --threads 16; see models/vision/README.md)
IMG=64; PATCH=8
if [ "$quick" = 1 ]; then
  [ -n "$out" ] || out=build/vision/quick
  data=$out/data; SCENES_TRAIN=24; SCENES_TEST=4; CIFAR_MAX=2
  ENC_D=32; ENC_L=1; ENC_H=2; ENC_FFN=64; READOUT=1,64
  ENC_STEPS=12; ENC_B=4; S1_STEPS=10; S1_B=4; S2_STEPS=6; S2_B=4
  EVAL_CIFAR_PER_CLASS=1; EVAL_SCENES=2; base_init=1,64
else
  [ -n "$out" ] || out=build/vision/run
  data=${DATA:-build/data}; SCENES_TRAIN=20000; SCENES_TEST=1000; CIFAR_MAX=0
  ENC_D=128; ENC_L=3; ENC_H=4; ENC_FFN=512; READOUT=1,128
  if [ "$device" = cuda ]; then   # the GPU's budget (the shipped model): 8,000 x 64 / 300 x 32 / 3,000 x 32
    ENC_STEPS=${ENC_STEPS:-8000}; ENC_B=${ENC_B:-64}; S1_STEPS=${S1_STEPS:-300}; S1_B=${S1_B:-32}
    S2_STEPS=${S2_STEPS:-3000}; S2_B=${S2_B:-32}
  else                            # the 2-core CPU's budget: 3,000 x 16 / 300 x 8 / 2,500 x 8
    ENC_STEPS=${ENC_STEPS:-3000}; ENC_B=${ENC_B:-16}; S1_STEPS=${S1_STEPS:-300}; S1_B=${S1_B:-8}
    S2_STEPS=${S2_STEPS:-2500}; S2_B=${S2_B:-8}
  fi
  EVAL_CIFAR_PER_CLASS=${EVAL_CIFAR_PER_CLASS:-50}; EVAL_SCENES=${EVAL_SCENES:-200}; base_init=""
fi
PARITY=${PARITY:-100}; [ "$quick" = 0 ] || PARITY=6
ENC_LR=${ENC_LR:-1e-3}; S1_LR=${S1_LR:-2e-3}; S2_LR=${S2_LR:-5e-4}; CTX=160

mkdir -p "$out/stamps" "$out/times" "$out/logs"
[ "$cont" = 1 ] || rm -rf "$out/stamps"/* "$out/times"/*
dirty=0   # set once a phase runs: every later phase runs too

# phase NAME KEY CMD...: runs CMD (a command or a function), timed (output to $out/logs/NAME.log, wall and CPU seconds to
# $out/times/NAME), unless --continue and NAME last finished with the same KEY and no earlier phase reran.
phase() {
  local name=$1 key=$2; shift 2
  if [ "$cont" = 1 ] && [ "$dirty" = 0 ] && [ "$key" != - ] && [ -f "$out/stamps/$name" ] && [ "$(cat "$out/stamps/$name")" = "$key" ]; then
    printf '  %-10s kept (--continue)\n' "$name"; return 0
  fi
  [ "$key" = - ] || dirty=1   # key '-': always runs, and sets dirty itself when it changes something
  rm -f "$out/stamps/$name"
  local TIMEFORMAT='%R %U %S' rc=0   # bash's `time` (it times shell functions too, children included)
  { time "$@" > "$out/logs/$name.log" 2>&1 || rc=$?; } 2> "$out/times/$name.raw"
  if [ "$rc" != 0 ]; then
    echo "vision.sh: phase '$name' failed; the end of $out/logs/$name.log:" >&2
    tail -n 20 "$out/logs/$name.log" >&2
    exit 1
  fi
  tail -n 1 "$out/times/$name.raw" | awk '{ printf "%.1f %.1f\n", $1, $2 + $3 }' > "$out/times/$name"
  rm -f "$out/times/$name.raw"
  printf '%s\n' "$key" > "$out/stamps/$name"
  local w c; read -r w c < "$out/times/$name"
  printf '  %-10s %7.1f s wall %7.1f s CPU\n' "$name" "$w" "$c"
}
fstamp() { stat -c '%n %s %Y' "$@" 2>/dev/null || echo "missing $*"; }   # a file's identity for a key

echo "vision: SigLIP-style encoder + ModRWKV stages 1/2 (on the $device), $threads thread(s), out $out$([ "$quick" = 1 ] && echo ', --quick')"

# ---- 0. data (deterministic; kept when the same generator options made it, which --continue relies on)
gen_data() {
  mkdir -p "$data"
  local sk="scenes 64px train $SCENES_TRAIN x2 seed 1, test $SCENES_TEST x5 seed 1"
  if [ "$(cat "$data/scenes/.recipe" 2>/dev/null)" != "$sk" ]; then
    "$M" gen-scenes --out "$data/scenes" --n "$SCENES_TRAIN" --seed 1 --split train --questions 2 --size 64 -q || return 1
    "$M" gen-scenes --out "$data/scenes" --n "$SCENES_TEST" --seed 1 --split test --questions 5 --size 64 -q || return 1
    echo "$sk" > "$data/scenes/.recipe"; dirty=1
  fi
  local ck="cifar max $CIFAR_MAX"
  if [ "$(cat "$data/cifar/.recipe" 2>/dev/null)" != "$ck" ]; then
    recipes/gen_cifar_vqa.sh --out "$data/cifar" --split train --max "$CIFAR_MAX" || return 1
    recipes/gen_cifar_vqa.sh --out "$data/cifar" --split test --max "$CIFAR_MAX" || return 1
    echo "$ck" > "$data/cifar/.recipe"; dirty=1
  fi
  # the evaluation subsets (paths stay relative to the data folders: eval gets --root)
  mkdir -p "$out/eval"
  awk -F'"image":"' -v k="$EVAL_CIFAR_PER_CLASS" '{ split($2, a, "/"); if (n[a[2]]++ < k) print }' \
    "$data/cifar/test.jsonl" > "$out/eval/cifar.jsonl"
  awk -F'"image":"test/' -v k="$EVAL_SCENES" '{ if ($2 + 0 < k) print }' "$data/scenes/test.jsonl" > "$out/eval/scenes.jsonl"
  echo "eval subsets: $(wc -l < "$out/eval/cifar.jsonl") CIFAR-10 test records, $(wc -l < "$out/eval/scenes.jsonl") scene questions"
}
phase data - gen_data
TRAIN=(--data "$data/cifar/train.jsonl" --data "$data/scenes/train.jsonl")

common=(--vocab bytes -t "$threads" --no-progress --ctx-len "$CTX")
# train_to DIR ARGS...: a fresh training run into DIR (the trainer refuses a directory that holds a run)
train_to() { local d=$1; shift; rm -rf "$d" && "$M" train "$@" --out "$d"; }
# eval_to NAME MODEL [MAX]: both evaluation subsets (the first MAX records of each)
eval_to() {
  local name=$1 model=$2 max=()
  [ $# -lt 3 ] || max=(--max "$3")
  "$M" eval -m "$model" --vocab bytes --data "$out/eval/cifar.jsonl" --root "$data/cifar" --task vqa "${max[@]}" \
    --max-new-tokens 16 -t "$threads" -q --out "$out/eval/$name-cifar.jsonl" || return 1
  "$M" eval -m "$model" --vocab bytes --data "$out/eval/scenes.jsonl" --root "$data/scenes" --task vqa "${max[@]}" \
    --max-new-tokens 16 -t "$threads" -q --out "$out/eval/$name-scenes.jsonl" || return 1
}

# ENCODER=DIR: a trained encoder (Hugging Face layout, e.g. an earlier run's DIR/encoder) replaces phases 1-2
if [ -n "${ENCODER:-}" ]; then
  [ -f "$ENCODER/model.safetensors" ] && [ -f "$ENCODER/config.json" ] ||
    { echo "vision.sh: ENCODER=$ENCODER holds no model.safetensors + config.json" >&2; exit 2; }
  use_encoder() { rm -rf "$out/encoder" && mkdir -p "$out/encoder" && cp "$ENCODER"/*.json "$ENCODER/model.safetensors" "$out/encoder/"; }
  phase encoder "ENCODER $(fstamp "$ENCODER/model.safetensors")" use_encoder
else
# ---- 1. the random encoder
phase encoder0 "$IMG $PATCH $ENC_D $ENC_L $ENC_H $ENC_FFN" \
  python3 - "$out/encoder0" "$IMG" "$PATCH" "$ENC_D" "$ENC_L" "$ENC_H" "$ENC_FFN" <<'PY'
import json, math, os, random, struct, sys
out = sys.argv[1]; S, P, D, L, H, FFN = (int(x) for x in sys.argv[2:8])
os.makedirs(out, exist_ok=True)
G = S // P
rng = random.Random(20251122)
T = {}
def put(name, shape, std=None, value=None):
    n = 1
    for s in shape: n *= s
    vals = [rng.gauss(0.0, std) for _ in range(n)] if std is not None else [value] * n
    T['vision_model.' + name] = (shape, vals)
# fan-in scaled normal init (unit-variance activations); zero biases; unit LayerNorms; the residual branches'
# output projections at half scale
put('embeddings.patch_embedding.weight', [D, 3, P, P], std=1.0 / math.sqrt(3 * P * P))
put('embeddings.patch_embedding.bias', [D], value=0.0)
put('embeddings.position_embedding.weight', [G * G, D], std=1.0 / math.sqrt(D))
s = 1.0 / math.sqrt(D)
for l in range(L):
    p = 'encoder.layers.%d.' % l
    for n in ('q', 'k', 'v', 'out'):
        put(p + 'self_attn.%s_proj.weight' % n, [D, D], std=s * (0.5 if n == 'out' else 1.0))
        put(p + 'self_attn.%s_proj.bias' % n, [D], value=0.0)
    put(p + 'mlp.fc1.weight', [FFN, D], std=1.0 / math.sqrt(D)); put(p + 'mlp.fc1.bias', [FFN], value=0.0)
    put(p + 'mlp.fc2.weight', [D, FFN], std=0.5 / math.sqrt(FFN)); put(p + 'mlp.fc2.bias', [D], value=0.0)
    for n in ('layer_norm1', 'layer_norm2'):
        put(p + n + '.weight', [D], value=1.0); put(p + n + '.bias', [D], value=0.0)
put('post_layernorm.weight', [D], value=1.0); put('post_layernorm.bias', [D], value=0.0)
header, off, blobs = {}, 0, []
for k in sorted(T):
    shape, vals = T[k]; b = struct.pack('<%df' % len(vals), *vals); blobs.append(b)
    header[k] = {'dtype': 'F32', 'shape': shape, 'data_offsets': [off, off + len(b)]}; off += len(b)
header['__metadata__'] = {'format': 'pt', 'source': 'recipes/vision.sh: random small SigLIP vision encoder'}
hb = json.dumps(header, separators=(',', ':')).encode(); hb += b' ' * (-len(hb) % 8)
with open(os.path.join(out, 'model.safetensors.tmp'), 'wb') as f:
    f.write(struct.pack('<Q', len(hb))); f.write(hb)
    for b in blobs: f.write(b)
os.replace(os.path.join(out, 'model.safetensors.tmp'), os.path.join(out, 'model.safetensors'))
cfg = {'architectures': ['SiglipVisionModel'], 'model_type': 'siglip_vision_model', 'hidden_size': D,
       'image_size': S, 'patch_size': P, 'num_hidden_layers': L, 'num_attention_heads': H,
       'intermediate_size': FFN, 'num_channels': 3, 'hidden_act': 'gelu_pytorch_tanh',
       'layer_norm_eps': 1e-6, 'attention_dropout': 0.0, 'torch_dtype': 'float32'}
json.dump(cfg, open(os.path.join(out, 'config.json'), 'w'), indent=2)
pre = {'image_processor_type': 'SiglipImageProcessor', 'do_resize': True, 'size': {'height': S, 'width': S},
       'resample': 2, 'do_rescale': True, 'rescale_factor': 1 / 255, 'do_normalize': True,
       'image_mean': [0.5, 0.5, 0.5], 'image_std': [0.5, 0.5, 0.5]}
json.dump(pre, open(os.path.join(out, 'preprocessor_config.json'), 'w'), indent=2)
print('%s: %d tensors, %d parameters' % (out, len(T), off // 4))
PY

# ---- 2. the encoder stage (encoder + throwaway readout LM + adapter), then the trained encoder alone
ENC=(--init "$READOUT" --encoder "$out/encoder0" --adapter v1 --train adapter,rwkv,encoder "${TRAIN[@]}"
     -b "$ENC_B" --steps "$ENC_STEPS" --lr "$ENC_LR" --lr-final 1e-4 --warmup 50 --seed 1 --device "$device" "${common[@]}")
phase enc "${ENC[*]}" train_to "$out/enc" "${ENC[@]}"
phase encoder "$(fstamp "$out/enc/model.safetensors")" python3 - "$out/enc/model.safetensors" "$out/encoder0" "$out/encoder" <<'PY'
# cut the trained vision tower (encoder.model.vision_model.*) out of the bundle into the Hugging Face layout
import json, os, shutil, struct, sys
src, cfgdir, out = sys.argv[1:4]
f = open(src, 'rb'); n = struct.unpack('<Q', f.read(8))[0]; h = json.loads(f.read(n)); base = 8 + n
pre = 'encoder.model.'
keys = sorted(k for k in h if k.startswith(pre))
if not keys: sys.exit('%s holds no encoder.model.* tensors' % src)
header, off, blobs = {}, 0, []
for k in keys:
    a, b = h[k]['data_offsets']; f.seek(base + a); blob = f.read(b - a); blobs.append(blob)
    header[k[len(pre):]] = {'dtype': h[k]['dtype'], 'shape': h[k]['shape'], 'data_offsets': [off, off + len(blob)]}
    off += len(blob)
header['__metadata__'] = {'format': 'pt', 'source': 'recipes/vision.sh: the encoder stage\'s trained SigLIP tower'}
hb = json.dumps(header, separators=(',', ':')).encode(); hb += b' ' * (-len(hb) % 8)
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, 'model.safetensors.tmp'), 'wb') as g:
    g.write(struct.pack('<Q', len(hb))); g.write(hb)
    for blob in blobs: g.write(blob)
os.replace(os.path.join(out, 'model.safetensors.tmp'), os.path.join(out, 'model.safetensors'))
for c in ('config.json', 'preprocessor_config.json'): shutil.copy(os.path.join(cfgdir, c), os.path.join(out, c))
print('%s: %d tensors, %d bytes' % (out, len(keys), off))
PY
phase eval_enc "$(fstamp "$out/enc/model.safetensors") $EVAL_CIFAR_PER_CLASS $EVAL_SCENES" eval_to enc "$out/enc/model.safetensors"
fi

# ---- 3. the base language model
if [ "$quick" = 1 ]; then
  LM=(--init "$base_init")
else
  base=${BASE:-build/models/base/model.safetensors}
  if [ ! -s "$base" ]; then
    [ -n "${BASE:-}" ] && { echo "vision.sh: BASE=$base not found" >&2; exit 2; }
    [ -x recipes/base.sh ] || { echo "vision.sh: $base is missing and recipes/base.sh is not there" >&2; exit 2; }
    echo "  base LM missing: running recipes/base.sh (see its log in $out/logs/base.log)"
    phase base "$(date +%s)" recipes/base.sh --threads "$threads"
  fi
  LM=(-m "$base")
fi

# ---- 4. stage 1: a new adapter on the frozen base LM, frozen trained encoder (features cached)
S1=("${LM[@]}" --encoder "$out/encoder" --adapter v1 --train adapter "${TRAIN[@]}" --feature-cache "$out/fcache"
    -b "$S1_B" --steps "$S1_STEPS" --lr "$S1_LR" --lr-final 1e-4 --warmup 30 --seed 1 --device "$device" "${common[@]}")
phase s1 "${S1[*]} $(fstamp "${LM[1]}" "$out/encoder/model.safetensors")" train_to "$out/s1" "${S1[@]}"
phase eval_s1 "$(fstamp "$out/s1/model.safetensors") $EVAL_CIFAR_PER_CLASS $EVAL_SCENES" eval_to s1 "$out/s1/model.safetensors"

# ---- 5. stage 2: adapter + RWKV (the encoder stays frozen)
S2=(-m "$out/s1/model.safetensors" --train adapter,rwkv "${TRAIN[@]}" --feature-cache "$out/fcache"
    -b "$S2_B" --steps "$S2_STEPS" --lr "$S2_LR" --lr-final 5e-5 --warmup 30 --seed 2 --device "$device" "${common[@]}")
phase s2 "${S2[*]} $(fstamp "$out/s1/model.safetensors")" train_to "$out/s2" "${S2[@]}"
# the f32 stage-2 model only on the first PARITY records of each subset: the shipped f16 file is compared with it
phase eval_s2 "$(fstamp "$out/s2/model.safetensors") $EVAL_CIFAR_PER_CLASS $EVAL_SCENES $PARITY" eval_to s2 "$out/s2/model.safetensors" "$PARITY"

# ---- 6. the shipped file: the stage-2 bundle with f16 matrices
phase f16 "$(fstamp "$out/s2/model.safetensors")" python3 - "$out/s2/model.safetensors" "$out/model/model.safetensors" <<'PY'
# every F32 tensor with >= 2 dimensions and >= 4096 elements becomes F16 (round to nearest even, as
# struct's 'e'); vectors (norms, biases, decay/mix parameters) stay F32. Metadata is kept, except the
# training options (they name this machine's paths).
import array, json, os, struct, sys
src, dst = sys.argv[1:3]
f = open(src, 'rb'); n = struct.unpack('<Q', f.read(8))[0]; h = json.loads(f.read(n)); base = 8 + n
meta = {k: v for k, v in h.pop('__metadata__', {}).items() if k != 'modrwkv.train.options'}
meta['modrwkv.shipped'] = 'recipes/vision.sh: matrices with >= 4096 elements in f16'
header, off, blobs, nh = {}, 0, [], 0
for k in sorted(h):
    t = h[k]; a, b = t['data_offsets']; f.seek(base + a); blob = f.read(b - a)
    numel = 1
    for s in t['shape']: numel *= s
    dtype = t['dtype']
    if dtype == 'F32' and len(t['shape']) >= 2 and numel >= 4096:
        v = array.array('f'); v.frombytes(blob)
        if sys.byteorder != 'little': v.byteswap()
        blob = struct.pack('<%de' % numel, *v); dtype = 'F16'; nh += 1
    header[k] = {'dtype': dtype, 'shape': t['shape'], 'data_offsets': [off, off + len(blob)]}
    blobs.append(blob); off += len(blob)
header['__metadata__'] = meta
hb = json.dumps(header, separators=(',', ':')).encode(); hb += b' ' * (-len(hb) % 8)
os.makedirs(os.path.dirname(dst), exist_ok=True)
with open(dst + '.tmp', 'wb') as g:
    g.write(struct.pack('<Q', len(hb))); g.write(hb)
    for blob in blobs: g.write(blob)
os.replace(dst + '.tmp', dst)
print('%s: %d tensors (%d in f16), %.2f MB' % (dst, len(header) - 1, nh, (8 + len(hb) + off) / 1e6))
PY
phase eval_ship "$(fstamp "$out/model/model.safetensors") $EVAL_CIFAR_PER_CLASS $EVAL_SCENES" eval_to ship "$out/model/model.safetensors"

# the example: held-out test scene 1 (the first with 3 objects), every question asked about it, answered by `modrwkv chat`
example() {
  cp "$data/scenes/test/000001.png" "$out/model/example.png" || return 1
  : > "$out/model/example.txt"
  grep '"image":"test/000001.png"' "$data/scenes/test.jsonl" | python3 -c '
import json, sys
for l in sys.stdin:
    r = json.loads(l); c = r["conversations"]
    print("%s\t%s\t%s" % (r["question_type"], c[0]["value"].replace("<image>\n", ""), c[1]["value"]))' |
  while IFS=$'\t' read -r qt q ref; do
    a=$("$M" chat -m "$out/model/model.safetensors" --image "$out/model/example.png" -t "$threads" -q -n 16 "$q") || return 1
    printf '%s\t%s\t%s\t%s\n' "$qt" "$q" "$ref" "$a" >> "$out/model/example.txt"
  done
  cat "$out/model/example.txt"
}
phase example "$(fstamp "$out/model/model.safetensors")" example

# ---- 7. results
python3 - "$out" "$data" "$quick" <<'PY' | tee "$out/results.md"
import collections, json, os, sys
out, data, quick = sys.argv[1], sys.argv[2], sys.argv[3] == '1'
def load(p): return [json.loads(l) for l in open(p)]
types = {r['id']: r.get('question_type', '?') for r in load(os.path.join(out, 'eval', 'scenes.jsonl'))}
def norm(s): return ' '.join(s.lower().strip().rstrip('.').split())
# best constant answer per type, from the train split; uniform chance = 1 / answers of that type
train = collections.defaultdict(collections.Counter)
for r in load(os.path.join(data, 'scenes', 'train.jsonl')):
    train[r['question_type']][norm(r['conversations'][1]['value'])] += 1
evalrefs = collections.defaultdict(list)
for r in load(os.path.join(out, 'eval', 'scenes.jsonl')):
    evalrefs[r['question_type']].append(norm(r['conversations'][1]['value']))
order = ['colour', 'shape', 'count', 'where', 'exists']
def acc(name):
    res = {}
    p = os.path.join(out, 'eval', '%s-cifar.jsonl' % name)
    if not os.path.exists(p): return None
    c = load(p); res['cifar'] = (sum(r['exact'] for r in c), len(c))
    s = load(os.path.join(out, 'eval', '%s-scenes.jsonl' % name))
    by = collections.defaultdict(lambda: [0, 0])
    for r in s:
        t = types.get(r['id'], '?'); by[t][0] += r['exact']; by[t][1] += 1
    res['scenes'] = (sum(r['exact'] for r in s), len(s)); res.update(by)
    return res
rows = [('enc', 'encoder stage (readout LM 1x128, encoder trained)'), ('s1', 'stage 1 (adapter; base LM frozen)'),
        ('ship', 'stage 2 (adapter + RWKV): the shipped file, f16 matrices')]
R = {k: acc(k) for k, _ in rows}
def pct(x): return '%.1f' % (100.0 * x[0] / x[1]) if x and x[1] else '-'
print('# recipes/vision.sh results%s\n' % (' (--quick: pipeline check only, numbers meaningless)' if quick else ''))
nc = R['ship']['cifar'][1] if R.get('ship') else 0; ns = R['ship']['scenes'][1] if R.get('ship') else 0
print('Exact-match accuracy (%%) of `modrwkv eval --task vqa`: CIFAR-10 test subset (%d records, the first images '
      'of each class), held-out scenes (%d questions about the first test images).\n' % (nc, ns))
print('| model | CIFAR-10 | scenes (all) | ' + ' | '.join(order) + ' |')
print('|---|---|---|' + '---|' * len(order))
for k, label in rows:
    r = R[k]
    if not r: continue
    print('| %s | %s | %s | %s |' % (label, pct(r['cifar']), pct(r['scenes']), ' | '.join(pct(r.get(t)) for t in order)))
chance = {t: 1.0 / max(1, len(train[t])) for t in order}
const = {}
for t in order:
    if not train[t] or not evalrefs[t]: const[t] = None; continue
    a = train[t].most_common(1)[0][0]; const[t] = (sum(x == a for x in evalrefs[t]), len(evalrefs[t]))
print('| chance: uniform over the answers | 10.0 | - | %s |' % ' | '.join('%.1f' % (100 * chance[t]) for t in order))
allc = sum(c[0] for c in const.values() if c); alln = sum(c[1] for c in const.values() if c)
print('| chance: best constant answer per type (from train) | 10.0 | %s | %s |' %
      (pct((allc, alln)), ' | '.join(pct(const[t]) + ' ("%s")' % train[t].most_common(1)[0][0] if const[t] else '-' for t in order)))
# f16 rounding: the shipped file against the f32 stage-2 model on the records both evaluated
same = n = ok32 = ok16 = 0
for sub in ('cifar', 'scenes'):
    p32 = os.path.join(out, 'eval', 's2-%s.jsonl' % sub)
    if not os.path.exists(p32): continue
    a = load(p32); b = load(os.path.join(out, 'eval', 'ship-%s.jsonl' % sub))[:len(a)]
    for x, y in zip(a, b):
        n += 1; same += x['prediction'] == y['prediction']; ok32 += x['exact']; ok16 += y['exact']
if n:
    print('\nf16 against f32 (the stage-2 model before rounding), on the first records of each subset (%d): '
          '%d identical answers; accuracy %.1f %% (f32) vs %.1f %% (f16).' % (n, same, 100.0 * ok32 / n, 100.0 * ok16 / n))
print('\nQuestions per type in the scenes subset: ' + ', '.join('%s %d' % (t, len(evalrefs[t])) for t in order))
print('\nTimes (wall / CPU seconds, %s):' % os.uname().nodename)
tot = [0.0, 0.0]
for name in sorted(os.listdir(os.path.join(out, 'times')), key=lambda n: os.path.getmtime(os.path.join(out, 'times', n))):
    try: w, c = (float(x) for x in open(os.path.join(out, 'times', name)).read().split())
    except ValueError: continue
    tot[0] += w; tot[1] += c; print('- %s: %.0f / %.0f' % (name, w, c))
print('- total: %.0f / %.0f' % tuple(tot))
for s in ('enc', 's1', 's2'):
    p = os.path.join(out, s, 'train.jsonl')
    if os.path.exists(p):
        L = [json.loads(l)['loss'] for l in open(p)]; k = max(1, len(L) // 10)
        print('- loss %s: %.3f -> %.3f (mean of the first / last tenth of %d steps)' % (s, sum(L[:k]) / k, sum(L[-k:]) / k, len(L)))
PY
echo "  model: $out/model/model.safetensors ($(stat -c %s "$out/model/model.safetensors") bytes), example $out/model/example.png"

if [ "$ship" = 1 ]; then
  mkdir -p models/vision
  cp "$out/model/model.safetensors" models/vision/model.safetensors.tmp && mv models/vision/model.safetensors.tmp models/vision/model.safetensors
  cp "$out/model/example.png" models/vision/example.png
  echo "  shipped to models/vision/ (model.safetensors, example.png; the model card is models/vision/README.md)"
fi
}
main "$@"; exit
