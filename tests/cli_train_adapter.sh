#!/usr/bin/env bash
# `modrwkv train --adapter-scale K` (paper Table 5, "adapter scaling"): a new v2 adapter whose hidden width is
# K x its input width. Checks the trained tensors' shapes for K = 2 and 8 (and with a Conv1D compression in
# front), prepend splicing with a byte vocabulary (no <|image_pad|>), that the result runs in `modrwkv chat
# --audio` and `modrwkv eval`, that the option is recorded in the checkpoint, and the refusals (v1 layout, a
# start that already has an adapter, out-of-range K). Run by tests/run.sh with the build directory as $1.
. "$(dirname "$0")/lib/cli.sh"
MM=tests/fixtures/modrwkv
cp $MM/media/speech.wav "$T/"
printf '{"audio": "speech.wav", "text": "hello"}\n{"audio": "speech.wav", "text": "a chirp"}\n' > "$T/asr.jsonl"
E=$(sed -n 's/.*"d_model": *\([0-9]*\).*/\1/p' $MM/whisper/config.json)
[ -n "$E" ] && ok || bad "cannot read d_model of the fixture encoder"
BASE=(--init 1,64 --vocab bytes --encoder $MM/whisper --train adapter --data "$T/asr.jsonl" -b 1 --ctx-len 96
      --lr 3e-3 --steps 2 --no-progress -t 2)

# shape NAME FILE: the shape of one tensor of a safetensors file, as "a,b"
shape() { python3 - "$1" "$2" <<'PY'
import json, struct, sys
f = open(sys.argv[2], 'rb'); n = struct.unpack('<Q', f.read(8))[0]; h = json.loads(f.read(n))
print(','.join(str(d) for d in h[sys.argv[1]]['shape']) if sys.argv[1] in h else 'none')
PY
}
meta() { python3 - "$1" "$2" <<'PY'
import json, struct, sys
f = open(sys.argv[2], 'rb'); n = struct.unpack('<Q', f.read(8))[0]; h = json.loads(f.read(n))
print(h.get('__metadata__', {}).get(sys.argv[1], 'none'))
PY
}

expect_ok "train --help names --adapter-scale" "$M" train --help
grep -q -- "--adapter-scale K" "$T/out" && ok || bad "--adapter-scale is not in train --help"

for K in 2 8; do
  expect_ok "--adapter-scale $K" "$M" train "${BASE[@]}" --adapter-scale $K --out "$T/k$K"
  [ "$(shape proj.mlp.0.weight "$T/k$K/model.safetensors")" = "$((K * E)),$E" ] && ok \
    || bad "K=$K: proj.mlp.0.weight is $(shape proj.mlp.0.weight "$T/k$K/model.safetensors"), expected $((K * E)),$E"
  [ "$(shape proj.mlp.2.weight "$T/k$K/model.safetensors")" = "64,$((K * E))" ] && ok || bad "K=$K: proj.mlp.2.weight shape"
  [ "$(meta modrwkv.splice "$T/k$K/model.safetensors")" = prepend ] && ok || bad "K=$K: a byte model should prepend"
  meta modrwkv.train.options "$T/k$K/model.safetensors" | grep -q "\"adapter_scale\":$K" && ok \
    || bad "K=$K: adapter_scale is not in the recorded options"
  expect_ok "chat --audio, K=$K" "$M" chat -m "$T/k$K/model.safetensors" --audio "$T/speech.wav" -n 4 -q
  expect_ok "eval --task asr, K=$K" "$M" eval -m "$T/k$K/model.safetensors" --data "$T/asr.jsonl" --task asr \
    --max-new-tokens 4 -q -t 2
  grep -q "^records *2" "$T/out" && ok || bad "K=$K: eval did not score both records"
done
# the losses differ (different adapters), and stage 2 continues from the scaled adapter
[ "$(head -c 200 "$T/k2/train.jsonl")" != "$(head -c 200 "$T/k8/train.jsonl")" ] && ok || bad "K=2 and K=8 trained the same"
expect_ok "stage 2 from a scaled adapter" "$M" train -m "$T/k8/model.safetensors" --train adapter,rwkv --vocab bytes --data "$T/asr.jsonl" \
  -b 1 --ctx-len 96 --steps 1 --no-progress -t 2 --out "$T/k8s2"
[ "$(shape proj.mlp.0.weight "$T/k8s2/model.safetensors")" = "$((8 * E)),$E" ] && ok || bad "stage 2 changed the adapter width"
# with a trained compression in front: the MLP's input is still E wide
expect_ok "--adapter-scale 4 --compress 3,2" "$M" train "${BASE[@]}" --adapter-scale 4 --compress 3,2 --out "$T/k4c"
[ "$(shape proj.mlp.0.weight "$T/k4c/model.safetensors")" = "$((4 * E)),$E" ] && ok || bad "K=4 + compression: mlp.0 shape"
[ "$(shape compress.weight "$T/k4c/model.safetensors")" = "$E,$E,3" ] && ok || bad "K=4 + compression: no compress.weight"

expect_fail "--adapter-scale with --adapter v1" "not with --adapter v1" "$M" train "${BASE[@]}" --adapter v1 --adapter-scale 2 --out "$T/x1"
expect_fail "--adapter-scale on a start with an adapter" "already has one" "$M" train -m "$T/k2/model.safetensors" \
  --vocab bytes --train adapter --adapter-scale 4 --data "$T/asr.jsonl" --steps 1 --no-progress --out "$T/x2"
expect_fail "--adapter-scale 0" "expects an integer" "$M" train "${BASE[@]}" --adapter-scale 0 --out "$T/x3"
expect_fail "--adapter-scale x" "expects an integer" "$M" train "${BASE[@]}" --adapter-scale x --out "$T/x4"
finish cli_train_adapter
