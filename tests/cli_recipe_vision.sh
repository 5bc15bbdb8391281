#!/usr/bin/env bash
# Smoke test of recipes/vision.sh --quick: the whole vision pipeline (generated scenes and CIFAR-10 VQA data,
# random SigLIP encoder, encoder stage, encoder cut out, stage 1, stage 2, f16 shipping file, evaluations,
# example chat, results table) runs with a few steps of tiny models, every phase writes what the next one
# needs, the encoder stage changes the encoder and the loss falls, the f16 file is smaller and answers like the
# f32 one, and --continue reruns nothing. Accuracy is not checked (a few steps learn nothing; the full run's
# numbers are in models/vision/README.md). Skipped when ../shared/data's CIFAR-10 is not there.
# Run by tests/run.sh with the build directory as $1.
. "$(dirname "$0")/lib/cli.sh"
SHARED=${MRW_SHARED:-../shared}
if [ ! -f "$SHARED/data/images/cifar10-train.tar.gz" ] || [ ! -f "$SHARED/data/images/cifar10-test.tar.gz" ]; then
  echo "SKIP: $SHARED/data/images/cifar10-{train,test}.tar.gz not found"; exit 0
fi
command -v python3 > /dev/null || { echo "SKIP: no python3"; exit 0; }
O=$T/v

expect_ok "vision.sh --help" recipes/vision.sh --help
grep -q "recipes/vision.sh \[--quick\]" "$T/out" && ok || bad "--help does not print the usage"
expect_fail "bad option" "unknown option" recipes/vision.sh --bogus
expect_fail "--quick --ship" "not shipped" recipes/vision.sh --quick --ship --out "$O"
expect_fail "bad --threads" "positive integer" recipes/vision.sh --quick --threads 0 --out "$O"
expect_fail "bad --device" "cpu or cuda" recipes/vision.sh --quick --device gpu --out "$O"
ENCODER="$T/none" expect_fail "ENCODER without a model" "holds no model.safetensors" recipes/vision.sh --quick --out "$T/vx"

if MODRWKV="$M" recipes/vision.sh --quick --out "$O" --threads 1 > "$T/run" 2> "$T/run.err"; then ok
else bad "vision.sh --quick failed: $(tail -c 1500 "$T/run.err") $(tail -c 1500 "$T/run")"; fi

for f in encoder0/config.json encoder0/preprocessor_config.json encoder0/model.safetensors enc/model.safetensors \
         encoder/model.safetensors encoder/config.json s1/model.safetensors s2/model.safetensors \
         model/model.safetensors model/example.png model/example.txt results.md \
         eval/enc-cifar.jsonl eval/s1-scenes.jsonl eval/s2-cifar.jsonl eval/ship-scenes.jsonl; do
  [ -s "$O/$f" ] && ok || bad "missing output $f"
done
for r in "encoder stage" "stage 1" "stage 2 (adapter + RWKV): the shipped file" "chance: uniform" "chance: best constant"; do
  grep -q "| $r" "$O/results.md" 2>/dev/null && ok || bad "results.md has no row '$r'"
done

# the cut-out encoder is the encoder stage's (trained: it differs from the random start) and loads alone
expect_ok "encode with the trained encoder" "$M" encode -m "$O/encoder" --image "$O/model/example.png" -o "$T/f1.safetensors" -t 1
expect_ok "encode with the random encoder" "$M" encode -m "$O/encoder0" --image "$O/model/example.png" -o "$T/f0.safetensors" -t 1
cmp -s "$T/f0.safetensors" "$T/f1.safetensors" && bad "the encoder stage did not change the encoder" || ok
# the encoder stage's loss falls
losses() { sed -n 's/.*"loss":\([0-9.eE+-]*\).*/\1/p' "$1"; }
losses "$O/enc/train.jsonl" | awk '{ l[NR] = $1 } END { exit !(NR >= 6 && (l[NR] + l[NR-1]) < 0.8 * (l[1] + l[2])) }' &&
  ok || bad "encoder-stage loss did not fall by 20 %: $(losses "$O/enc/train.jsonl" | tr '\n' ' ')"
# stage 1 kept the LM frozen and stage 2 trained it: the llm.* tensors of s1 equal the random start's... the
# start is --init (not a file), so compare s1 against s2: they must differ in llm.* and s2 must load in chat
python3 - "$O/s1/model.safetensors" "$O/s2/model.safetensors" "$O/model/model.safetensors" > "$T/py" 2>&1 <<'PY' && ok || bad "tensor checks: $(cat "$T/py")"
import json, struct, sys, array
def read(p):
    f = open(p, 'rb'); n = struct.unpack('<Q', f.read(8))[0]; h = json.loads(f.read(n)); return f, 8 + n, h
def tensor(fb, k):
    f, base, h = fb; t = h[k]; a, b = t['data_offsets']; f.seek(base + a); raw = f.read(b - a)
    if t['dtype'] == 'F32': v = array.array('f'); v.frombytes(raw); return list(v)
    if t['dtype'] == 'F16': return list(struct.unpack('<%de' % ((b - a) // 2), raw))
    raise SystemExit('unexpected dtype ' + t['dtype'])
s1, s2, sh = read(sys.argv[1]), read(sys.argv[2]), read(sys.argv[3])
assert any(tensor(s1, k) != tensor(s2, k) for k in s1[2] if k.startswith('llm.blocks.0.att.')), 'stage 2 did not train the LM'
# the shipped file: the same tensors as s2, matrices in f16 within f16 rounding, vectors bit-identical
assert set(k for k in s2[2] if k != '__metadata__') == set(k for k in sh[2] if k != '__metadata__'), 'tensor sets differ'
nf16 = 0
for k in s2[2]:
    if k == '__metadata__': continue
    a, b = tensor(s2, k), tensor(sh, k)
    if sh[2][k]['dtype'] == 'F16':
        nf16 += 1
        assert all(abs(x - y) <= 1e-3 * abs(x) + 1e-7 for x, y in zip(a, b)), k
    else:
        assert a == b, k
assert nf16 > 0, 'no f16 tensor'
assert sh[2]['__metadata__'].get('modrwkv.format') == '1', 'not a bundle'
print('ok', nf16)
PY
a=$(stat -c %s "$O/s2/model.safetensors"); b=$(stat -c %s "$O/model/model.safetensors")
[ "$b" -lt "$a" ] && ok || bad "the f16 file ($b bytes) is not smaller than the f32 one ($a)"
# the shipped file answers as the f32 model on the evaluation subsets (f16 rounding may flip a rare answer;
# with these tiny models none does)
for s in cifar scenes; do
  n=$(wc -l < "$O/eval/s2-$s.jsonl")
  [ "$n" -ge 1 ] && cmp -s <(sed 's/"loss_sum":[^,]*,//' "$O/eval/s2-$s.jsonl") \
    <(head -n "$n" "$O/eval/ship-$s.jsonl" | sed 's/"loss_sum":[^,]*,//') &&
    ok || bad "shipped (f16) predictions differ from stage 2 (f32) on $s"
done
grep -q "identical answers" "$O/results.md" && ok || bad "results.md does not compare f16 with f32"
# the example: one chat answer per question of the scene, and chat reproduces it
[ "$(wc -l < "$O/model/example.txt")" -ge 2 ] && ok || bad "example.txt has fewer than 2 questions"
IFS=$'\t' read -r qt q ref ans < "$O/model/example.txt"
expect_ok "chat on the shipped file" "$M" chat -m "$O/model/model.safetensors" --image "$O/model/example.png" -t 1 -q -n 16 "$q"
[ "$(cat "$T/out")" = "$ans" ] && ok || bad "chat answered '$(cat "$T/out")', example.txt says '$ans'"

# --continue: nothing reruns
MODRWKV="$M" recipes/vision.sh --quick --continue --out "$O" --threads 1 > "$T/run2" 2> "$T/run2.err" && ok ||
  bad "vision.sh --quick --continue failed: $(tail -c 800 "$T/run2.err")"
n=$(grep -c "kept (--continue)" "$T/run2")
[ "$n" = 11 ] && ok || bad "--continue kept $n phases, expected all 11 after data: $(cat "$T/run2")"

# ENCODER=DIR: the encoder stage is skipped and DIR's encoder is used as it is (frozen)
O2=$T/v2
if ENCODER="$O/encoder" MODRWKV="$M" recipes/vision.sh --quick --out "$O2" --threads 1 > "$T/run3" 2> "$T/run3.err"; then ok
else bad "vision.sh --quick with ENCODER failed: $(tail -c 1500 "$T/run3.err") $(tail -c 800 "$T/run3")"; fi
grep -qE "^  (encoder0|enc) " "$T/run3" && bad "ENCODER: the encoder stage ran: $(cat "$T/run3")" || ok
cmp -s "$O/encoder/model.safetensors" "$O2/encoder/model.safetensors" && ok || bad "ENCODER: the encoder was not used as it is"
[ -s "$O2/model/model.safetensors" ] && ok || bad "ENCODER: no shipped file"

finish cli_recipe_vision
