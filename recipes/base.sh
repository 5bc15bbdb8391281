#!/usr/bin/env bash
# The base language model: a small byte-level RWKV-7 (4 layers, width 256, head size 64, vocabulary = the 256
# bytes) pretrained from random init on ../shared/data/text. The vision and speech recipes start from it.
#
#   recipes/base.sh [--quick] [--ship] [--eval-only] [--out DIR] [--threads N] [--text DIR]
#
#   0. data   from sotu.txt (English speeches, 10.8 MB), moby-dick.txt (1.2 MB) and songci.txt (Chinese ci
#             poems, 5.6 MB): the last HELDOUT_KB KiB of each file (from the first line start in it) is held
#             out for evaluation and never trained on; the rest is cut into CTX-byte records (at UTF-8
#             character boundaries) and MIX of them (sotu:moby:songci, in records; default 70:20:10 -- the
#             multimodal models answer in English) are drawn without replacement, shuffled with a fixed seed,
#             into DIR/data/train.jsonl ({"text"} records, one optimizer step = BATCH x ACCUM records)
#   1. train  modrwkv train --init 4,256 --vocab bytes, STEPS (1600) steps of 8 x 256 bytes, lr 2e-3 -> 1e-4
#             cosine with 100 warmup steps, 1 thread: about an hour on a busy 2-core machine
#   2. eval   modrwkv convert to q8_0 and q4_0 GGUF (byte vocabulary embedded); `modrwkv eval --task perplexity`
#             on each held-out slice (nats/byte, perplexity, bits per byte) with f32, q8_0 and q4_0 weights,
#             and a greedy sample; written to DIR/results.md
#   3. install  the model to build/models/base/model.safetensors (atomically: copied next to it, renamed) and
#             the held-out slices to build/models/base/heldout/ (models/eval_suite.jsonl evaluates on them)
#   4. --ship   the SHIP_DTYPE (default q4_0: 3.2 MB, within 0.2% of f32; q8_0 is 4.9 MB) GGUF to
#             models/base/model-q4_0.gguf, and results.md next to it
#
# --quick: a smoke run (< 30 s: 3 steps of a 1-layer width-64 model on a few records, short evaluation)
# that writes everything under DIR only (default build/base/quick), never build/models/ or models/.
# --out DIR: working directory (default build/base/run; replaced). --threads N: threads for every command
# (default 1). --text DIR: the text folder (default ../shared/data/text). --eval-only: steps 2-4 again on
# the finished run in DIR. Environment: MODRWKV (binary, default build/modrwkv), LAYERS, EMBD, CTX, BATCH,
# ACCUM, STEPS, LR, LR_FINAL, WARMUP, MIX, HELDOUT_KB, SEED, SHIP_DTYPE, PROMPT.
# Same options, thread count and machine give the same model (fixed seeds, deterministic trainer).
set -euo pipefail
cd "$(dirname "$0")/.."

main() {  # (the whole script is one function: bash reads it before running, so editing the file is safe)

quick=0; ship=0; eval_only=0; out=""; threads=1; text=../shared/data/text
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; shift ;;
    --ship) ship=1; shift ;;
    --eval-only) eval_only=1; shift ;;
    --out|--threads|--text) [ $# -ge 2 ] || { echo "base.sh: $1 needs a value" >&2; exit 2; }
      case "$1" in --out) out=$2 ;; --threads) threads=$2 ;; --text) text=$2 ;; esac; shift 2 ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "base.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$threads" =~ ^[0-9]+$ ]] && [ "$threads" -ge 1 ] || { echo "base.sh: --threads expects a positive integer" >&2; exit 2; }
M=${MODRWKV:-build/modrwkv}
[ -x "$M" ] || { echo "base.sh: $M not found (run make first)" >&2; exit 2; }
command -v python3 > /dev/null || { echo "base.sh: python3 is needed (data preparation)" >&2; exit 2; }
for f in sotu moby-dick songci; do
  [ -r "$text/$f.txt" ] || { echo "base.sh: missing $text/$f.txt (the shared text data)" >&2; exit 2; }
done

if [ "$quick" = 1 ]; then
  out=${out:-build/base/quick}
  LAYERS=${LAYERS:-1}; EMBD=${EMBD:-64}; CTX=${CTX:-64}; BATCH=${BATCH:-2}; ACCUM=${ACCUM:-1}; STEPS=${STEPS:-3}
  WARMUP=${WARMUP:-1}; HELDOUT_KB=${HELDOUT_KB:-4}; EVAL_BYTES=${EVAL_BYTES:-512}; SAMPLE_LEN=${SAMPLE_LEN:-16}
else
  out=${out:-build/base/run}
  LAYERS=${LAYERS:-4}; EMBD=${EMBD:-256}; CTX=${CTX:-256}; BATCH=${BATCH:-8}; ACCUM=${ACCUM:-1}; STEPS=${STEPS:-1600}
  WARMUP=${WARMUP:-100}; HELDOUT_KB=${HELDOUT_KB:-64}; EVAL_BYTES=${EVAL_BYTES:-0}; SAMPLE_LEN=${SAMPLE_LEN:-200}
fi
LR=${LR:-2e-3}; LR_FINAL=${LR_FINAL:-1e-4}; MIX=${MIX:-70:20:10}; SEED=${SEED:-42}; SHIP_DTYPE=${SHIP_DTYPE:-q4_0}
case "$SHIP_DTYPE" in q8_0|q4_0) ;; *) echo "base.sh: SHIP_DTYPE must be q8_0 or q4_0" >&2; exit 2 ;; esac
if [ "$quick" = 1 ]; then model_dst=$out/installed/model.safetensors; ship_dir=$out/ship
else model_dst=build/models/base/model.safetensors; ship_dir=models/base; fi
PROMPT=${PROMPT:-"The President said that"}

log() { echo "[base $(date -u +%H:%M:%S)] $*"; }
if [ "$eval_only" = 1 ]; then
  [ -s "$out/train/model.safetensors" ] && [ -s "$out/data/heldout_sotu.txt" ] \
    || { echo "base.sh: --eval-only needs a finished run in $out" >&2; exit 2; }
  log "out=$out: evaluating (and installing) the trained model again"
else
rm -rf "$out"
mkdir -p "$out/data"
log "out=$out layers=$LAYERS embd=$EMBD ctx=$CTX batch=$BATCH accum=$ACCUM steps=$STEPS lr=$LR->$LR_FINAL mix=$MIX threads=$threads"

# ---- 0. data
python3 - "$text" "$out/data" "$CTX" "$HELDOUT_KB" "$MIX" "$((STEPS * BATCH * ACCUM))" "$SEED" <<'EOF'
import json, random, sys
text, out, ctx, heldout_kb, mix, need, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), \
    [float(x) for x in sys.argv[5].split(':')], int(sys.argv[6]), int(sys.argv[7])
names = ['sotu', 'moby-dick', 'songci']
if len(mix) != 3 or min(mix) < 0 or sum(mix) <= 0:
    sys.exit('base.sh: MIX must be three non-negative weights a:b:c')
pools = []
for name in names:
    data = open(f'{text}/{name}.txt', 'rb').read()
    cut = max(0, len(data) - heldout_kb * 1024)
    nl = data.find(b'\n', cut)
    cut = nl + 1 if 0 <= nl < len(data) - 1 else cut
    while cut < len(data) and (data[cut] & 0xC0) == 0x80:  # never split a character
        cut += 1
    open(f'{out}/heldout_{name}.txt', 'wb').write(data[cut:])
    train, recs, i = data[:cut], [], 0
    while i < len(train):
        j = min(i + ctx, len(train))
        while j < len(train) and j > i + 1 and (train[j] & 0xC0) == 0x80:
            j -= 1
        chunk = train[i:j].decode('utf-8', errors='replace')
        if chunk.strip():
            recs.append(chunk)
        i = j
    pools.append(recs)
    print(f'base.sh: {name}: {len(data)} bytes, {len(data) - cut} held out, {len(recs)} records of <= {ctx} bytes')
rng = random.Random(seed)
want = [round(need * w / sum(mix)) for w in mix]
want[0] += need - sum(want)
picked = []
for name, recs, k in zip(names, pools, want):
    order = []
    while len(order) < k:  # without replacement; another pass only when a source runs out
        perm = list(range(len(recs)))
        rng.shuffle(perm)
        order += perm
    picked += [recs[i] for i in order[:k]]
    print(f'base.sh: {name}: {k} training records ({k * ctx / max(1, sum(len(r.encode()) for r in recs)):.2f} of its text)')
rng.shuffle(picked)
with open(f'{out}/train.jsonl', 'w', encoding='utf-8') as f:
    for r in picked:
        f.write(json.dumps({'text': r}, ensure_ascii=False) + '\n')
EOF

# ---- 1. train
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
start=$(date +%s)
"$M" train --init "$LAYERS,$EMBD" --vocab bytes --data "$out/data/train.jsonl" --out "$out/train" \
  --ctx-len "$CTX" -b "$BATCH" --grad-accum "$ACCUM" --steps "$STEPS" --lr "$LR" --lr-final "$LR_FINAL" \
  --warmup "$WARMUP" --schedule cosine --seed "$SEED" --save-every 250 -t "$threads" --no-progress \
  | while IFS= read -r line; do log "$line"; done
train_s=$(( $(date +%s) - start ))
python3 - "$out/train/train.jsonl" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for r in rows[:: max(1, len(rows) // 20)] + rows[-1:]:
    print(f"base.sh: step {r['step']:5d} loss {r['loss']:.4f} lr {r['lr']:.2e} {r['tokens_per_s']:.0f} tok/s")
EOF
log "trained in ${train_s}s"
fi

# ---- 2. quantise and evaluate (every scored byte after the first of each slice, as `modrwkv eval --task
# perplexity`, which models/eval_suite.jsonl runs too; --exact: f32 activations, so q8_0/q4_0 differ only by
# their weights)
for dt in q8_0 q4_0; do
  "$M" convert "$out/train/model.safetensors" "$out/model-$dt.gguf" --dtype "$dt" --vocab bytes > /dev/null 2>&1
done
res=$out/results.md
{
  echo "| held-out slice | bytes scored | f32 nats/byte | f32 bits/byte | f32 perplexity | q8_0 bits/byte | q4_0 bits/byte | q4_0 perplexity |"
  echo "|---|---|---|---|---|---|---|---|"
} > "$res"
ppl() { # MODEL FILE: "tokens loss bits_per_byte perplexity" of `modrwkv eval --task perplexity`
  local mx=(); [ "$EVAL_BYTES" -gt 0 ] && mx=(--max "$EVAL_BYTES")
  "$M" eval --task perplexity -m "$1" --vocab bytes --data "$2" -t "$threads" --exact -q "${mx[@]}" 2> /dev/null \
    | awk '$1=="answer_tokens"{t=$2} $1=="loss"{l=$2} $1=="bits_per_byte"{b=$2} $1=="perplexity"{p=$2} END{print t, l, b, p}'
}
for name in sotu moby-dick songci; do
  f=$out/data/heldout_$name.txt
  read -r n l b p <<< "$(ppl "$out/train/model.safetensors" "$f")"
  read -r _ _ b8 _ <<< "$(ppl "$out/model-q8_0.gguf" "$f")"
  read -r _ _ b4 p4 <<< "$(ppl "$out/model-q4_0.gguf" "$f")"
  [ -n "$p4" ] || { echo "base.sh: evaluation of $f failed" >&2; exit 1; }
  printf '| %s | %s | %.4f | %.4f | %.3f | %.4f | %.4f | %.3f |\n' "$name" "$n" "$l" "$b" "$p" "$b8" "$b4" "$p4" >> "$res"
done
sample=$("$M" generate -m "$out/model-$SHIP_DTYPE.gguf" -p "$PROMPT" -n "$SAMPLE_LEN" --temp 0 -t "$threads" 2> /dev/null)
train_s=$(tail -1 "$out/train/train.jsonl" | sed -nE 's/.*"elapsed_s":([0-9.]+).*/\1/p')
steps_done=$(tail -1 "$out/train/train.jsonl" | sed -nE 's/.*"step":([0-9]+).*/\1/p')
{ echo; echo "Greedy sample ($SHIP_DTYPE, prompt \"$PROMPT\", $SAMPLE_LEN bytes, continuation only):"; echo
  echo '```'; echo "$sample"; echo '```'; echo
  echo "Training: $steps_done steps, ${train_s}s of training time on $threads thread(s) ($(nproc) cores, $(uname -m)," \
       "$(grep -m1 'model name' /proc/cpuinfo 2> /dev/null | sed 's/.*: //'))."
  for dt in q8_0 q4_0; do echo "model-$dt.gguf: $(stat -c %s "$out/model-$dt.gguf") bytes."; done; } >> "$res"
cat "$res"

# ---- 3. install (atomic) and 4. ship
mkdir -p "$(dirname "$model_dst")/heldout"
for name in sotu moby-dick songci; do  # the held-out slices, for models/eval_suite.jsonl
  cp "$out/data/heldout_$name.txt" "$(dirname "$model_dst")/heldout/$name.txt"
done
cp "$out/train/model.safetensors" "$model_dst.tmp.$$"
mv -f "$model_dst.tmp.$$" "$model_dst"
log "installed $model_dst (held-out slices in $(dirname "$model_dst")/heldout/)"
if [ "$ship" = 1 ]; then
  mkdir -p "$ship_dir"
  cp "$out/model-$SHIP_DTYPE.gguf" "$ship_dir/model-$SHIP_DTYPE.gguf.tmp.$$"
  mv -f "$ship_dir/model-$SHIP_DTYPE.gguf.tmp.$$" "$ship_dir/model-$SHIP_DTYPE.gguf"
  cp "$res" "$ship_dir/results.md"
  log "shipped $ship_dir/model-$SHIP_DTYPE.gguf ($(stat -c %s "$ship_dir/model-$SHIP_DTYPE.gguf") bytes)"
fi
}
main "$@"
