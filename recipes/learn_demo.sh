#!/usr/bin/env bash
# The CPU trainer learns, end to end: a tiny ModRWKV learns spoken digits (FSDD) in a few minutes on 2 cores.
#
#   recipes/learn_demo.sh [--quick] [--out DIR] [--threads N]
#
# From nothing but the repository and ../shared/data/speech/fsdd-recordings.tar (Free Spoken Digit Dataset:
# 6 speakers x 10 digits x 50 takes; official test split = take 0-4, 300 clips):
#   0. data     recipes/gen_fsdd.sh: train.jsonl (2,700 clips) / test.jsonl (300), transcripts "zero".."nine"
#   1. encoder  a tiny random Whisper-style encoder (80 log-mel bins, d_model 64, 1 layer, 2 s window) in the
#               Hugging Face layout, written by python3's standard library; it stays frozen throughout
#   2. stage 0  a tiny byte-level RWKV-7 (2 layers, C 128, reference init) learns, on text only, to answer a
#               run of a digit with its word: "7777\x16Assistant: seven\x17" (it never sees audio). ModRWKV
#               starts from a pretrained RWKV; this is ours, and it gives stage 1 a frozen LM worth steering.
#   3. stage 1  `modrwkv train --train adapter`: a new v1 audio adapter (Conv1d + MLP), RWKV frozen (the
#               gradient flows through it), encoder features cached on disk
#   4. stage 2  `modrwkv train --train adapter,rwkv` from the stage-1 output
#   5. eval     `modrwkv eval --task asr` on the 300 held-out clips after stage 1 and after stage 2;
#               accuracy = the share of clips whose answer (up to the turn end \x17) is exactly the spoken
#               digit's word (10 balanced classes: chance is 10 %)
# and prints chance level, both accuracies, the losses and the wall / CPU time of every phase (/usr/bin/time),
# and draws the loss curves with `modrwkv plot` (DIR/loss_s{0,1,2}.png).
# --quick: a few steps of everything on 60 clips, 20 evaluated (a smoke test, tests/cli_learn_demo.sh: the
# pipeline runs and the losses fall; accuracy is not expected). --out DIR: working directory (default
# build/learn_demo; its previous results are replaced, the extracted recordings kept). --threads: threads per
# command (default: all cores). MODRWKV=path picks the binary (default build/modrwkv); S0_STEPS, S1_STEPS,
# S2_STEPS, ACCUM, LAYERS, EMBD, S0_LR, S1_LR, S2_LR, EVAL_MAX override the full run's settings.
# Same machine, thread count and awk give the same numbers (fixed seeds). See docs/LEARNING_DEMO.md.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0; out=build/learn_demo; threads=$(nproc 2>/dev/null || echo 2)
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; shift ;;
    --out|--threads) [ $# -ge 2 ] || { echo "learn_demo.sh: $1 needs a value" >&2; exit 2; }
      if [ "$1" = --out ]; then out=$2; else threads=$2; fi; shift 2 ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "learn_demo.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$threads" =~ ^[0-9]+$ ]] && [ "$threads" -ge 1 ] || { echo "learn_demo.sh: --threads expects a positive integer" >&2; exit 2; }
M=${MODRWKV:-build/modrwkv}
[ -x "$M" ] || { echo "learn_demo.sh: $M not found (run make first)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "learn_demo.sh: /usr/bin/time is needed (apt-get install time)" >&2; exit 2; }
command -v python3 > /dev/null || { echo "learn_demo.sh: python3 is needed (to write the random encoder)" >&2; exit 2; }

# ---- sizes and schedules (the full run is tuned for <= 15 min on 2 quiet cores; see docs/LEARNING_DEMO.md)
if [ "$quick" = 1 ]; then
  S0_STEPS=20; S1_STEPS=12; S2_STEPS=12; ACCUM=4; EVAL_MAX=20; TRAIN_MAX=60
else
  S0_STEPS=${S0_STEPS:-200}; S1_STEPS=${S1_STEPS:-2700}; S2_STEPS=${S2_STEPS:-1350}; ACCUM=${ACCUM:-4}
  EVAL_MAX=${EVAL_MAX:-300}; TRAIN_MAX=0
fi
LAYERS=${LAYERS:-2}; EMBD=${EMBD:-128}
S0_LR=${S0_LR:-3e-3}; S1_LR=${S1_LR:-3e-3}; S2_LR=${S2_LR:-1e-3}

mkdir -p "$out"
rm -rf "$out/encoder" "$out/s0" "$out/s1" "$out/s2" "$out/fcache" "$out"/*.jsonl "$out"/*.png "$out/times"
mkdir -p "$out/times"

# phase NAME CMD...: runs CMD under /usr/bin/time; its output goes to $out/NAME.log, its wall and CPU
# (user + system) seconds to $out/times/NAME
phase() {
  local name=$1; shift
  if ! /usr/bin/time -f '%e %U %S' -o "$out/times/$name.raw" "$@" > "$out/$name.log" 2>&1; then
    echo "learn_demo.sh: phase '$name' failed; the end of $out/$name.log:" >&2
    tail -n 20 "$out/$name.log" >&2
    exit 1
  fi
  tail -n 1 "$out/times/$name.raw" | awk '{ printf "%.1f %.1f\n", $1, $2 + $3 }' > "$out/times/$name"
  rm -f "$out/times/$name.raw"
  local w c
  read -r w c < "$out/times/$name"
  printf '  %-8s %7.1f s wall %7.1f s CPU\n' "$name" "$w" "$c"
}

echo "learn_demo: spoken digits (FSDD), tiny ModRWKV, $threads threads, out $out$([ "$quick" = 1 ] && echo ', --quick')"

# ---- 0. data
data=$out/fsdd
if [ ! -s "$data/train.jsonl" ] || [ ! -s "$data/test.jsonl" ] || [ "$(ls "$data/recordings" 2>/dev/null | wc -l)" != 3000 ]; then
  phase data recipes/gen_fsdd.sh --out "$data"
fi
train=$data/train.jsonl; test=$data/test.jsonl
if [ "$TRAIN_MAX" -gt 0 ]; then
  # --quick: a balanced subset (every 45th clip) and the first clips of the test file's digits
  awk 'NR % 45 == 1' "$data/train.jsonl" | head -n "$TRAIN_MAX" > "$out/train_quick.jsonl"; train=$out/train_quick.jsonl
  awk 'NR % 15 == 1' "$data/test.jsonl" | head -n "$EVAL_MAX" > "$out/test_quick.jsonl"; test=$out/test_quick.jsonl
fi

# ---- 1. the frozen random encoder (Whisper layout; python3 standard library only)
phase encoder python3 - "$out/encoder" <<'PY'
import json, math, os, random, struct, sys
out = sys.argv[1]; os.makedirs(out, exist_ok=True)
D, L, H, FFN, MELS, NPOS = 64, 1, 2, 128, 80, 100   # NPOS 100 = a 2 s window (200 mel frames)
rng = random.Random(20251122)
T = {}
def normal(shape, std):
    n = 1
    for s in shape: n *= s
    T[cur] = (shape, [rng.gauss(0.0, std) for _ in range(n)])
def const(shape, v):
    n = 1
    for s in shape: n *= s
    T[cur] = (shape, [v] * n)
def put(name, shape, std=None, value=None):
    global cur
    cur = 'model.encoder.' + name
    normal(shape, std) if std is not None else const(shape, value)
# conv1 (80 -> D, k3) and conv2 (D -> D, k3, stride 2), GELU after each: He-style scales keep unit variance
put('conv1.weight', [D, MELS, 3], std=math.sqrt(2.0 / (MELS * 3))); put('conv1.bias', [D], value=0.0)
put('conv2.weight', [D, D, 3], std=math.sqrt(2.0 / (D * 3))); put('conv2.bias', [D], value=0.0)
# Whisper's sinusoidal positions, at a tenth of their amplitude (the features should say what, not when)
pos = []
for p in range(NPOS):
    inc = math.log(10000) / (D // 2 - 1)
    pos += [0.1 * math.sin(p * math.exp(-inc * i)) for i in range(D // 2)]
    pos += [0.1 * math.cos(p * math.exp(-inc * i)) for i in range(D // 2)]
T['model.encoder.embed_positions.weight'] = ([NPOS, D], pos)
s = 1.0 / math.sqrt(D)
for l in range(L):
    p = 'layers.%d.' % l
    for n in ('q', 'k', 'v', 'out'):
        put(p + 'self_attn.%s_proj.weight' % n, [D, D], std=s * (0.5 if n == 'out' else 1.0))
        if n != 'k': put(p + 'self_attn.%s_proj.bias' % n, [D], value=0.0)
    put(p + 'fc1.weight', [FFN, D], std=math.sqrt(2.0 / D)); put(p + 'fc1.bias', [FFN], value=0.0)
    put(p + 'fc2.weight', [D, FFN], std=0.5 / math.sqrt(FFN)); put(p + 'fc2.bias', [D], value=0.0)
    for n in ('self_attn_layer_norm', 'final_layer_norm'):
        put(p + n + '.weight', [D], value=1.0); put(p + n + '.bias', [D], value=0.0)
put('layer_norm.weight', [D], value=1.0); put('layer_norm.bias', [D], value=0.0)
header, off, blobs = {}, 0, []
for k in sorted(T):
    shape, vals = T[k]; b = struct.pack('<%df' % len(vals), *vals); blobs.append(b)
    header[k] = {'dtype': 'F32', 'shape': shape, 'data_offsets': [off, off + len(b)]}; off += len(b)
header['__metadata__'] = {'format': 'pt', 'source': 'recipes/learn_demo.sh: random tiny Whisper encoder'}
hb = json.dumps(header, separators=(',', ':')).encode(); hb += b' ' * (-len(hb) % 8)
with open(os.path.join(out, 'model.safetensors.tmp'), 'wb') as f:
    f.write(struct.pack('<Q', len(hb))); f.write(hb)
    for b in blobs: f.write(b)
os.replace(os.path.join(out, 'model.safetensors.tmp'), os.path.join(out, 'model.safetensors'))
cfg = {'architectures': ['WhisperForConditionalGeneration'], 'model_type': 'whisper', 'd_model': D,
       'num_mel_bins': MELS, 'encoder_layers': L, 'encoder_attention_heads': H, 'encoder_ffn_dim': FFN,
       'decoder_layers': 1, 'decoder_attention_heads': H, 'decoder_ffn_dim': FFN, 'max_source_positions': NPOS,
       'activation_function': 'gelu', 'scale_embedding': False, 'torch_dtype': 'float32'}
json.dump(cfg, open(os.path.join(out, 'config.json'), 'w'), indent=2)
print('%s: %d tensors, %d parameters' % (out, len(T), off // 4))
PY

# ---- 2. stage 0: the language model learns to read a digit and answer with its word (text only, no audio)
# "7777\x16Assistant: seven\x17": a run of 1-24 copies of the digit, then the ASR answer turn. The LM learns to
# gather what precedes the turn and name it; stage 1 then only has to make the audio look like such a run.
awk -v max="$TRAIN_MAX" 'BEGIN {
    split("zero one two three four five six seven eight nine", W, " "); srand(7); n = max > 0 ? 400 : 6000
    for (i = 0; i < n; i++) {
      d = int(rand() * 10); k = 1 + int(rand() * 24); s = ""
      for (j = 0; j < k; j++) s = s d
      printf "{\"text\":\"%s\\u0016Assistant: %s\\u0017\"}\n", s, W[d + 1]
    }
  }' > "$out/text.jsonl"
common=(--vocab bytes -t "$threads" --no-progress --seed 1)
phase stage0 "$M" train --init "$LAYERS,$EMBD" "${common[@]}" --data "$out/text.jsonl" --out "$out/s0" \
  -b 16 --ctx-len 64 --steps "$S0_STEPS" --lr "$S0_LR" --lr-final 1e-4 --warmup 10

# ---- 3. stage 1: a new audio adapter, RWKV frozen
phase stage1 "$M" train -m "$out/s0/model.safetensors" --encoder "$out/encoder" --adapter v1 --train adapter \
  "${common[@]}" --data "$train" --data-root "$data" --feature-cache "$out/fcache" --out "$out/s1" \
  -b 1 --grad-accum "$ACCUM" --ctx-len 96 --steps "$S1_STEPS" --lr "$S1_LR" --lr-final 1e-4 --warmup 10
phase eval1 "$M" eval -m "$out/s1/model.safetensors" --vocab bytes --data "$test" --root "$data" --task asr \
  --max "$EVAL_MAX" --max-new-tokens 12 -t "$threads" -q --out "$out/eval1.jsonl"

# ---- 4. stage 2: adapter + RWKV
phase stage2 "$M" train -m "$out/s1/model.safetensors" --train adapter,rwkv \
  "${common[@]}" --data "$train" --data-root "$data" --feature-cache "$out/fcache" --out "$out/s2" \
  -b 1 --grad-accum "$ACCUM" --ctx-len 96 --steps "$S2_STEPS" --lr "$S2_LR" --lr-final 1e-4 --warmup 10
phase eval2 "$M" eval -m "$out/s2/model.safetensors" --vocab bytes --data "$test" --root "$data" --task asr \
  --max "$EVAL_MAX" --max-new-tokens 12 -t "$threads" -q --out "$out/eval2.jsonl"

# ---- 5. curves and the summary
for s in s0 s1 s2; do
  "$M" plot "$out/$s/train.jsonl" -o "$out/loss_$s.png" --title "learn_demo $s" > /dev/null 2>&1 ||
    echo "learn_demo.sh: modrwkv plot failed for $s" >&2
done
python3 - "$out" "$quick" <<'PY'
import json, sys
out, quick = sys.argv[1], sys.argv[2] == '1'
def norm(s): return ' '.join(''.join(c for c in s.lower() if c.isalnum() or c.isspace()).split())
def acc(path):
    n = ok = 0
    for line in open(path):
        r = json.loads(line); n += 1
        # the answer ends at the first turn end: `modrwkv eval` stops at token 24 (the World vocabulary's
        # \x17), which for a byte-level model is \x18, so its predictions run on past the byte \x17
        pred = r['prediction'].split('\x17')[0]; ref = r['reference']
        ok += norm(pred) == norm(ref)
    return ok, n
def loss(s):
    rows = [json.loads(l) for l in open('%s/%s/train.jsonl' % (out, s))]
    k = max(1, len(rows) // 10)
    return sum(r['loss'] for r in rows[:k]) / k, sum(r['loss'] for r in rows[-k:]) / k
t = {}
for name in ('data', 'encoder', 'stage0', 'stage1', 'eval1', 'stage2', 'eval2'):
    try: t[name] = [float(x) for x in open('%s/times/%s' % (out, name)).read().split()]
    except OSError: pass
print()
print('learn_demo results (%s)' % ('--quick: pipeline check only, accuracy not meaningful' if quick else 'FSDD test split'))
print('  chance level          10.0 %  (10 digits, balanced test set)')
for s, e in (('stage 1', 'eval1'), ('stage 2', 'eval2')):
    ok, n = acc('%s/%s.jsonl' % (out, e))
    print('  accuracy after %s %5.1f %%  (%d / %d held-out clips exactly right)' % (s, 100.0 * ok / max(n, 1), ok, n))
for s in ('s0', 's1', 's2'):
    a, b = loss(s)
    print('  loss %s: %.3f -> %.3f (mean of the first / last tenth of the steps)' % (s, a, b))
wall = sum(v[0] for v in t.values()); cpu = sum(v[1] for v in t.values())
for name, (w, c) in t.items(): print('  %-8s %7.1f s wall %7.1f s CPU' % (name, w, c))
print('  total    %7.1f s wall %7.1f s CPU' % (wall, cpu))
for s in ('s0', 's1', 's2'): print('  loss curve: %s/loss_%s.png' % (out, s))
PY
