#!/usr/bin/env bash
# End-to-end tests of one conversation that mixes modalities (docs/MULTIMODAL.md) on the tiny v1 fixtures of
# tests/fixtures/modrwkv: `modrwkv convert --merge` of a vision and a speech model into one bundle, `info`
# listing both, `logits`/`chat`/`generate` with --image and --audio together (command-line order matters; the
# image-only logits of the merged model equal the vision model's), and the errors (a modality the model lacks,
# two image models, a language model of another width, too many media). The numerical checks (mixed splice =
# splicing by hand, features bit-identical to the source models) are in tests/test_multimodal.c.
# Run by tests/run.sh with the build directory as $1.
. "$(dirname "$0")/lib/cli.sh"
check() { local d=$1; shift; if "$@"; then ok; else bad "$d"; fi; }
F=tests/fixtures/modrwkv
IMG=$F/media/image_a.png
WAV=$F/media/speech.wav
Q=$'\x16User: what is it?\x17\x16Assistant:'

expect_ok "vision bundle" "$M" convert $F/v1_vision/rwkv-0.pth "$T/vis.safetensors" --encoder $F/siglip
expect_ok "speech bundle" "$M" convert $F/v1_audio/rwkv-0.pth "$T/aud.safetensors" --encoder $F/whisper
expect_fail "--dtype on a bundle" "does not apply to ModRWKV bundles" "$M" convert "$T/vis.safetensors" "$T/vis16.safetensors" --dtype f16
[ ! -e "$T/vis16.safetensors" ] || bad "a refused convert left an output"
expect_ok "merge" "$M" convert --merge "$T/vis.safetensors" "$T/aud.safetensors" "$T/both.safetensors"
check "merge names both encoders" grep -q "2 modalities: SigLIP, Whisper" "$T/err"
expect_ok "info" "$M" info -m "$T/both.safetensors"
check "info: 2 modalities" grep -q "modalities   2" "$T/out"
check "info: Whisper listed" grep -q "Whisper, width 16" "$T/out"
expect_ok "merge with --lm" "$M" convert --merge --lm "$T/aud.safetensors" "$T/aud.safetensors" "$T/vis.safetensors" "$T/both2.safetensors"

# logits: mixed, in both orders, and image only
expect_ok "logits image+audio" "$M" logits -m "$T/both.safetensors" --image $IMG --audio $WAV --text "$Q" -t 1 --exact
cp "$T/out" "$T/ia"
check "one logit per token" test "$(wc -l < "$T/ia")" -eq 256
expect_ok "logits audio+image" "$M" logits -m "$T/both.safetensors" --audio $WAV --image $IMG --text "$Q" -t 1 --exact
cp "$T/out" "$T/ai"
if cmp -s "$T/ia" "$T/ai"; then bad "the order of --image and --audio changes nothing"; else ok; fi
expect_ok "logits image only (merged)" "$M" logits -m "$T/both.safetensors" --image $IMG --text "$Q" -t 1 --exact
cp "$T/out" "$T/i_both"
expect_ok "logits image only (vision model)" "$M" logits -m "$T/vis.safetensors" --image $IMG --text "$Q" -t 1 --exact
check "the merged model's image path is the vision model's" cmp -s "$T/out" "$T/i_both"
if cmp -s "$T/ia" "$T/i_both"; then bad "the audio changes nothing"; else ok; fi
expect_ok "logits audio+image, repeated" "$M" logits -m "$T/both.safetensors" --audio $WAV --image $IMG --text "$Q" -t 1 --exact
check "deterministic" cmp -s "$T/out" "$T/ai"
expect_ok "logits, two recordings and an image" "$M" logits -m "$T/both.safetensors" --audio $WAV --image $IMG --audio $WAV --text "$Q" -t 1

# chat / generate
expect_ok "chat: spoken question about an image (no text)" "$M" chat -m "$T/both.safetensors" --image $IMG --audio $WAV -n 4 -t 1
expect_ok "chat: image + audio + text question" "$M" chat -m "$T/both.safetensors" --image $IMG --audio $WAV "what?" -n 4 -t 1
expect_ok "chat: transcribe with the merged model" "$M" chat -m "$T/both.safetensors" --audio $WAV -n 4 -t 1
expect_ok "generate: image + audio" "$M" generate -m "$T/both.safetensors" --image $IMG --audio $WAV -p "hi" -n 4 -t 1

# errors
expect_fail "vision model asked for audio" "takes images, not audio" "$M" chat -m "$T/vis.safetensors" --image $IMG --audio $WAV -n 2
expect_fail "speech model asked for an image" "takes audio, not images" "$M" chat -m "$T/aud.safetensors" --image $IMG -n 2 "hi"
expect_fail "two image models" "two image" "$M" convert --merge "$T/vis.safetensors" "$T/vis.safetensors" "$T/x.safetensors"
check "no output left" test ! -e "$T/x.safetensors"
expect_ok "a wider RWKV-7" "$M" init -o "$T/wide.safetensors" --layers 1 --embd 128 --vocab-size 256
expect_fail "LM of another width" "n_embd 128" "$M" convert --merge --lm "$T/wide.safetensors" "$T/vis.safetensors" "$T/aud.safetensors" "$T/x.safetensors"
check "no output left (width)" test ! -e "$T/x.safetensors"
expect_fail "merge output must be safetensors" "safetensors" "$M" convert --merge "$T/vis.safetensors" "$T/aud.safetensors" "$T/x.gguf"
expect_fail "merge needs models" "MODEL" "$M" convert --merge "$T/x.safetensors"
expect_fail "--lm without --merge" "--merge" "$M" convert --lm "$T/vis.safetensors" "$T/vis.safetensors" "$T/x.safetensors"
expect_fail "too many media" "more than 4 media" "$M" chat -m "$T/both.safetensors" --image $IMG --audio $WAV --image $IMG --audio $WAV --audio $WAV -n 2
expect_fail "--compress on a two-modality model" "one modality" "$M" chat -m "$T/both.safetensors" --compress 3,2 --image $IMG -n 2 "hi"

# recipes/gen_spoken_vqa.sh: records {image, audio, conversations}, held-out voices, deterministic; trainable
if command -v espeak-ng > /dev/null && command -v sox > /dev/null; then
  G=recipes/gen_spoken_vqa.sh
  expect_ok "spoken VQA train" $G --out "$T/sv" --n 3 --questions 2 --seed 4 --modrwkv "$M"
  expect_ok "spoken VQA test" $G --out "$T/sv" --n 2 --seed 4 --split test --jobs 2 --modrwkv "$M"
  check "6 train records" test "$(wc -l < "$T/sv/train.jsonl")" -eq 6
  check "2 test records" test "$(wc -l < "$T/sv/test.jsonl")" -eq 2
  check "one recording per record" test "$(ls "$T/sv/train_audio" | wc -l)" -eq 6
  check "records carry both markers" test "$(grep -c '"value":"<image><audio>"' "$T/sv/train.jsonl")" -eq 6
  check "16 kHz mono recordings" test "$(soxi -r "$T/sv/train_audio/000000.wav")-$(soxi -c "$T/sv/train_audio/000000.wav")" = 16000-1
  check "the question is kept" grep -q '"question":"[A-Z][^"]*?"' "$T/sv/train.jsonl"
  check "test voices are held out" test -z "$(sed -E 's/.*"voice":"([^"+]*)\+([^"]*)".*/\1 \2/' "$T/sv/test.jsonl" | grep -vE '^(en-029|en-gb-x-gbcwmd|nl) (m4|f3|klatt2|benjamin|linda|grandma|travis)$')"
  trv=$(sed -E 's/.*"voice":"([^"]*)".*/\1/' "$T/sv/train.jsonl" | sort -u)
  check "train voices are not test voices" test -z "$(echo "$trv" | grep -E '^(en-029|en-gb-x-gbcwmd|nl)\+|\+(m4|f3|klatt2|benjamin|linda|grandma|travis)$')"
  expect_ok "spoken VQA again (1 job)" $G --out "$T/sv2" --n 3 --questions 2 --seed 4 --modrwkv "$M"
  check "deterministic" cmp -s "$T/sv/train.jsonl" "$T/sv2/train.jsonl"
  check "same recordings" diff -r "$T/sv/train_audio" "$T/sv2/train_audio"
  expect_fail "bad split" "train or test" $G --out "$T/sv3" --n 2 --split dev --modrwkv "$M"
  # train the merged fixture model on it (stage 1 then 2, a few steps), then ask a test record
  expect_ok "train stage 1 on spoken VQA" "$M" train -m "$T/both.safetensors" --vocab bytes --data "$T/sv/train.jsonl" \
    --out "$T/st1" --train adapter --steps 3 --lr 1e-3 -t 1 --no-progress
  check "stage 1 log" test "$(wc -l < "$T/st1/train.jsonl")" -eq 3
  expect_ok "train stage 2 on spoken VQA" "$M" train -m "$T/st1/model.safetensors" --vocab bytes --data "$T/sv/train.jsonl" \
    --out "$T/st2" --train adapter,rwkv --steps 2 --lr 1e-4 -t 1 --no-progress
  # killed after step 2 and resumed: the same bytes as a straight run (both adapters in the resume state)
  RA=(-m "$T/both.safetensors" --vocab bytes --data "$T/sv/train.jsonl" --train adapter,rwkv --steps 4 --lr 1e-3 -t 1
      --no-progress --save-every 2)
  expect_ok "straight 4 steps" "$M" train "${RA[@]}" --out "$T/ra"
  ( MRW_TRAIN_KILL_AFTER_STEP=2 "$M" train "${RA[@]}" --out "$T/rb"; true ) > /dev/null 2>&1
  expect_ok "resume after a kill" "$M" train "${RA[@]}" --out "$T/rb" --resume
  check "resumed = straight" cmp -s "$T/ra/model.safetensors" "$T/rb/model.safetensors"
  img=$(sed -E 's/.*"image":"([^"]*)".*/\1/;q' "$T/sv/test.jsonl"); wav=$(sed -E 's/.*"audio":"([^"]*)".*/\1/;q' "$T/sv/test.jsonl")
  expect_ok "chat: a held-out spoken question" "$M" chat -m "$T/st2/model.safetensors" --image "$T/sv/$img" --audio "$T/sv/$wav" -n 4 -t 1
  expect_ok "info of the trained model" "$M" info -m "$T/st2/model.safetensors"
  check "trained model keeps both modalities" grep -q "modalities   2" "$T/out"
  # recipes/multimodal.sh end to end, tiny (stand-in models on the fixture encoders)
  expect_ok "recipes/multimodal.sh --standin (smoke)" recipes/multimodal.sh --standin --out "$T/mm" --n-train 3 --n-test 2 \
    --steps 2 --standin-steps 2 --audio-encoder $F/whisper --modrwkv "$M"
  check "results table" grep -q '^| all | 4 |' "$T/mm/results.md"
  check "one answer per test record and model" test "$(cat "$T"/mm/answers_*.tsv | wc -l)" -eq 20
  # --mix-typed: each spoken training record is followed by the same question typed (image + text only)
  expect_ok "recipes/multimodal.sh --standin --mix-typed (smoke)" recipes/multimodal.sh --standin --mix-typed \
    --out "$T/mm2" --n-train 3 --n-test 2 --steps 2 --standin-steps 2 --audio-encoder $F/whisper --modrwkv "$M"
  check "mixed data: twice the records" test "$(wc -l < "$T/mm2/data/train_mixed.jsonl")" -eq \
    "$((2 * $(wc -l < "$T/mm2/data/train.jsonl")))"
  check "typed records carry the question and no audio" python3 -c '
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
for a, b in zip(rs[0::2], rs[1::2]):
    assert "audio" in a and "audio" not in b and b["id"] == a["id"] + "-typed"
    assert b["conversations"][0]["value"] == "<image>\n" + a["question"] and b["conversations"][1] == a["conversations"][1]
' "$T/mm2/data/train_mixed.jsonl"
  check "mixed run: results table" grep -q '^| all | 4 |' "$T/mm2/results.md"
else
  echo "cli_multimodal: espeak-ng/sox missing: recipes/gen_spoken_vqa.sh not tested" >&2
fi

# serve: one user message with an image and a recording (content parts in order)
if command -v curl > /dev/null && command -v base64 > /dev/null; then
  "$M" serve -m "$T/both.safetensors" --port 0 --port-file "$T/srv.port" -t 1 > "$T/srv.log" 2>&1 &
  spid=$!
  for _ in $(seq 1 100); do [ -s "$T/srv.port" ] && break; kill -0 $spid 2> /dev/null || break; sleep 0.1; done
  if [ -s "$T/srv.port" ]; then
    url="http://127.0.0.1:$(cat "$T/srv.port")/v1/chat/completions"
    printf '{"model":"m","max_tokens":4,"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,%s"}},{"type":"input_audio","input_audio":{"data":"%s","format":"wav"}}]}]}' \
      "$(base64 -w0 $IMG)" "$(base64 -w0 $WAV)" > "$T/req.json"
    code=$(curl -s -o "$T/resp.json" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary @"$T/req.json" "$url")
    check "serve: image + audio in one message (HTTP $code: $(head -c 200 "$T/resp.json"))" test "$code" = 200
    check "serve: a completion" grep -q '"completion_tokens"' "$T/resp.json"
    kill -TERM $spid; wait $spid; check "serve stopped cleanly" test $? -eq 0
  else
    bad "serve did not start: $(tail -c 400 "$T/srv.log")"; kill $spid 2> /dev/null
  fi
fi

# placeholder (v2) models: an image and an audio v2 model merged; blocks in order, <image>/<audio> markers
SHARED=${MRW_SHARED:-../shared}
VOCAB=$SHARED/assets/rwkv_vocab_v20230424.txt
if [ -f "$VOCAB" ]; then
  expect_ok "v2 image bundle" "$M" convert $F/v2/rwkv-0.pth "$T/v2i.safetensors" --encoder $F/siglip
  expect_ok "an 8-wide LM" "$M" init -o "$T/lm8.safetensors" --layers 1 --embd 8 --head-size 4 --vocab-size 65536
  printf '{"audio": "%s", "text": "hello"}\n' "$PWD/$WAV" > "$T/asr.jsonl"
  expect_ok "v2 audio model (1 step)" "$M" train -m "$T/lm8.safetensors" --vocab "$VOCAB" --encoder $F/whisper \
    --data "$T/asr.jsonl" --train adapter --steps 1 --out "$T/v2a" -t 1 --no-progress
  expect_ok "merge v2 image + v2 audio" "$M" convert --merge "$T/v2i.safetensors" "$T/v2a/model.safetensors" "$T/v2both.safetensors"
  expect_fail "merge v1 + v2" "splices" "$M" convert --merge "$T/vis.safetensors" "$T/v2a/model.safetensors" "$T/x.safetensors"
  expect_ok "v2 chat: spoken question about an image" "$M" chat -m "$T/v2both.safetensors" --vocab "$VOCAB" --image $IMG --audio $WAV -n 2 -t 1
  expect_ok "v2 chat: transcribe (audio block before the prompt)" "$M" chat -m "$T/v2both.safetensors" --vocab "$VOCAB" --audio $WAV -n 2 -t 1
  expect_ok "v2 generate: markers in order" "$M" generate -m "$T/v2both.safetensors" --vocab "$VOCAB" --audio $WAV --image $IMG \
    -p "hear <audio> see <image> answer:" -n 2 -t 1
  expect_fail "v2 generate: marker / medium mismatch" "next marker is <image>" "$M" generate -m "$T/v2both.safetensors" \
    --vocab "$VOCAB" --audio $WAV --image $IMG -p "see <image> hear <audio>" -n 2 -t 1
  # logits takes the special tokens as text: 7 image rows (16 tokens, v2 conv), 39 audio rows in the fixtures
  pi=$(printf '<|image_pad|>%.0s' $(seq 7)); pa=$(printf '<|image_pad|>%.0s' $(seq 39))
  expect_ok "v2 logits image+audio" "$M" logits -m "$T/v2both.safetensors" --vocab "$VOCAB" --image $IMG --audio $WAV \
    --text "<|vision_start|>$pi<|vision_end|> <|vision_start|>$pa<|vision_end|> ?" -t 1
  cp "$T/out" "$T/v2ia"
  expect_ok "v2 logits audio+image" "$M" logits -m "$T/v2both.safetensors" --vocab "$VOCAB" --audio $WAV --image $IMG \
    --text "<|vision_start|>$pa<|vision_end|> <|vision_start|>$pi<|vision_end|> ?" -t 1
  if cmp -s "$T/out" "$T/v2ia"; then bad "v2: the order changes nothing"; else ok; fi
  printf '{"image": "%s", "audio": "%s", "conversations": [{"from": "human", "value": "<image>\\n<audio>"}, {"from": "gpt", "value": "red"}]}\n' \
    "$PWD/$IMG" "$PWD/$WAV" > "$T/v2mix.jsonl"
  expect_ok "v2 train on a mixed record (placeholder splicing)" "$M" train -m "$T/v2both.safetensors" --vocab "$VOCAB" \
    --data "$T/v2mix.jsonl" --train adapter,rwkv --steps 2 --out "$T/v2t" -t 1 --no-progress
  expect_ok "v2 trained model chats" "$M" chat -m "$T/v2t/model.safetensors" --vocab "$VOCAB" --image $IMG --audio $WAV -n 2 -t 1
else
  echo "cli_multimodal: $VOCAB missing: the placeholder (v2) checks are skipped" >&2
fi

finish cli_multimodal
