#!/usr/bin/env bash
# End-to-end tests of the `modrwkv` command: every subcommand's happy path and its handling of bad input
# (clear message, non-zero exit, never a crash, no partial output). Run by tests/run.sh with the build
# directory as $1 (so the sanitizer build is exercised too).
. "$(dirname "$0")/lib/cli.sh"
SHARED=${MRW_SHARED:-../shared}
FIX=tests/fixtures/rwkv7
VOCAB=$SHARED/assets/rwkv_vocab_v20230424.txt

# --- help and usage
expect_ok "top-level --help" "$M" --help
for c in generate chat convert encode tokenize logits perplexity bench info init train serve eval plot forecast gen-scenes; do
  expect_ok "$c --help" "$M" "$c" --help
  grep -q "usage: modrwkv $c" "$T/out" || bad "$c --help does not print its usage"
done
expect_fail "unknown command" "unknown command" "$M" frobnicate
expect_fail "unknown option" "unknown option '--bogus'" "$M" generate --bogus
expect_fail "missing value" "needs a value" "$M" generate -m
expect_fail "bad number" "expects an integer" "$M" generate -m x -p y -n lots
expect_fail "no model" "no model given" "$M" logits --tokens 1,2

# --- logits: every format, sequence and RNN mode agree
for f in tiny.pth tiny.safetensors tiny.gguf; do
  expect_ok "logits $f" "$M" logits -m "$FIX/$f" --tokens 84,104,101
  cp "$T/out" "$T/logits-$f"
  [ "$(wc -l < "$T/out")" = 256 ] || bad "logits $f: expected 256 lines"
done
cmp -s "$T/logits-tiny.pth" "$T/logits-tiny.gguf" || bad "pth and gguf logits differ"
cmp -s "$T/logits-tiny.pth" "$T/logits-tiny.safetensors" || bad "pth and safetensors logits differ"
expect_ok "logits --rnn" "$M" logits -m "$FIX/tiny.pth" --tokens 84,104,101 --rnn
awk 'NR==FNR{a[NR]=$1; next} {d=a[FNR]-$1; if (d<0) d=-d; if (d>1e-4) bad=1} END{exit bad}' "$T/logits-tiny.pth" "$T/out" \
  && ok || bad "sequence and RNN logits differ by more than 1e-4"
expect_ok "logits --text (byte-level model)" "$M" logits -m "$FIX/tiny.pth" --text "The"
cmp -s "$T/out" "$T/logits-tiny.pth" || bad "--text The != --tokens 84,104,101"
expect_fail "token out of range" "not a list of token ids in \[0, 256\)" "$M" logits -m "$FIX/tiny.pth" --tokens 1,256
expect_fail "vocab larger than the embedding" "wrong vocabulary" "$M" logits -m "$FIX/tiny.pth" --text hi --vocab "$VOCAB"

# --- tokenize
expect_ok "tokenize" "$M" tokenize --text "Hello, world" --vocab "$VOCAB"
[ "$(cat "$T/out")" = "33155 45 40213" ] || bad "tokenize: got '$(cat "$T/out")'"
printf 'caf\xc3' > "$T/bad-utf8.txt"
expect_fail "invalid UTF-8" "not valid UTF-8" "$M" tokenize -f "$T/bad-utf8.txt" --vocab "$VOCAB"
expect_ok "invalid UTF-8 with --raw-bytes" "$M" tokenize -f "$T/bad-utf8.txt" --vocab "$VOCAB" --raw-bytes
: > "$T/empty.txt"
expect_fail "empty prompt" "empty" "$M" generate -m "$FIX/tiny.pth" -f "$T/empty.txt"

# --- generate, state files
expect_ok "generate" "$M" generate -m "$FIX/tiny.pth" -p "Hello" -n 8 --ignore-stop -q
expect_ok "generate with sampling" "$M" generate -m "$FIX/tiny.pth" -p "Hello" -n 8 --temp 1 --top-p 0.9 --top-k 40 --repeat-penalty 1.1 --presence-penalty 0.2 --frequency-penalty 0.1 --seed 5 -q
cp "$T/out" "$T/sample1"
"$M" generate -m "$FIX/tiny.pth" -p "Hello" -n 8 --temp 1 --top-p 0.9 --top-k 40 --repeat-penalty 1.1 --presence-penalty 0.2 --frequency-penalty 0.1 --seed 5 -q > "$T/sample2" 2>/dev/null
cmp -s "$T/sample1" "$T/sample2" && ok || bad "same seed, different samples"
expect_ok "state-out after a prompt" "$M" generate -m "$FIX/tiny.pth" -p "The cat" -n 0 --state-out "$T/cat.state" -q
expect_ok "logits from the saved state" "$M" logits -m "$FIX/tiny.pth" --state-in "$T/cat.state" --tokens 32,115,97,116
cp "$T/out" "$T/from-state"
expect_ok "logits in one go" "$M" logits -m "$FIX/tiny.pth" --tokens 84,104,101,32,99,97,116,32,115,97,116
awk 'NR==FNR{a[NR]=$1; next} {d=a[FNR]-$1; if (d<0) d=-d; if (d>1e-4) bad=1} END{exit bad}' "$T/from-state" "$T/out" \
  && ok || bad "state file continuation != one long call"
expect_fail "state of another model" "state is for a model" "$M" logits -m ../shared/assets/tiny-rwkv7/tiny-rwkv7-834K.pth --state-in "$T/cat.state" --tokens 1
head -c 100 "$T/cat.state" > "$T/trunc.state"
expect_fail "truncated state" "state" "$M" logits -m "$FIX/tiny.pth" --state-in "$T/trunc.state" --tokens 1

# --- chat: one-shot and multi-turn from stdin
expect_ok "chat one-shot" "$M" chat -m "$FIX/tiny.pth" -n 16 -q "Hi there"
printf 'first question\n/reset\nsecond question\n' | "$M" chat -m "$FIX/tiny.pth" -n 8 -q > "$T/chat" 2> "$T/err" && ok || bad "chat from stdin: $(cat "$T/err")"
[ "$(wc -l < "$T/chat")" -ge 2 ] || bad "chat from stdin: expected two answers"

# --- perplexity and bench
printf 'The quick brown fox jumps over the lazy dog. ' > "$T/text.txt"
expect_ok "perplexity" "$M" perplexity -m "$SHARED/assets/tiny-rwkv7/tiny-rwkv7-834K.pth" -f "$T/text.txt" --chunk 7
grep -q "perplexity" "$T/out" || bad "perplexity prints no result"
# --max-tokens: bits/byte counts the bytes of the scored tokens only (the first N tokens of the longer file
# are exactly the N tokens of the shorter one: checked here first)
TINY=$SHARED/assets/tiny-rwkv7/tiny-rwkv7-834K.pth
printf 'The quick brown fox jumps over the lazy dog.' > "$T/short.txt"
printf 'The quick brown fox jumps over the lazy dog.\nHello again, world.' > "$T/long.txt"
n=$("$M" tokenize -m "$TINY" -f "$T/short.txt" | wc -w)
[ "$("$M" tokenize -m "$TINY" -f "$T/long.txt" | cut -d' ' -f1-"$n")" = "$("$M" tokenize -m "$TINY" -f "$T/short.txt")" ] || bad "tokenization of the prefix changed"
"$M" perplexity -m "$TINY" -f "$T/short.txt" > "$T/ppl1" 2> /dev/null || bad "perplexity short"
"$M" perplexity -m "$TINY" -f "$T/long.txt" --max-tokens "$n" > "$T/ppl2" 2> /dev/null || bad "perplexity --max-tokens"
[ "$(cut -d, -f1-4 "$T/ppl1")" = "$(cut -d, -f1-4 "$T/ppl2")" ] && [ -n "$(cat "$T/ppl1")" ] || bad "--max-tokens: $(cat "$T/ppl1") vs $(cat "$T/ppl2")"
expect_ok "bench" "$M" bench -m "$FIX/tiny.pth" --prompt 16 --gen 4
grep -q "^bench:" "$T/out" || bad "bench prints no result"

# --- convert and init, atomic outputs
expect_ok "convert to q8_0 gguf" "$M" convert "$FIX/tiny.pth" "$T/q8.gguf" --dtype q8_0
expect_ok "logits of the converted model" "$M" logits -m "$T/q8.gguf" --tokens 84,104,101 --rnn
expect_ok "convert gguf back to safetensors" "$M" convert "$FIX/tiny.gguf" "$T/back.safetensors"
expect_ok "logits after the round trip" "$M" logits -m "$T/back.safetensors" --tokens 84,104,101
cmp -s "$T/out" "$T/logits-tiny.pth" || bad "gguf -> safetensors changed the logits"
expect_fail "q4_0 into safetensors" "only be written as .gguf" "$M" convert "$FIX/tiny.pth" "$T/x.safetensors" --dtype q4_0
[ ! -e "$T/x.safetensors" ] || bad "a failed convert left an output file"
expect_fail "output in a missing directory" "cannot create" "$M" convert "$FIX/tiny.pth" "$T/nodir/x.gguf"
expect_ok "init" "$M" init -o "$T/r.gguf" --layers 1 --embd 64 --vocab-size 300 --dtype q4_0
expect_ok "info" "$M" info -m "$T/r.gguf"
grep -q "q4_0" "$T/out" || bad "info does not report q4_0"

# --- hostile and broken model files: a message naming the problem, no crash
head -c 100000 "$FIX/tiny.pth" > "$T/trunc.pth"
expect_fail "truncated .pth" "truncat|end of central|zip|malformed|out of range" "$M" logits -m "$T/trunc.pth" --tokens 1
head -c 5000 "$FIX/tiny.gguf" > "$T/trunc.gguf"
expect_fail "truncated gguf" "truncat|beyond|past the end|out of range|malformed" "$M" logits -m "$T/trunc.gguf" --tokens 1
head -c 3000 "$FIX/tiny.safetensors" > "$T/trunc.safetensors"
expect_fail "truncated safetensors" "truncat|beyond|past the end|out of range|exceeds|malformed" "$M" logits -m "$T/trunc.safetensors" --tokens 1
printf 'not a model at all' > "$T/junk.bin"
expect_fail "not a model" "not a recognised weight file" "$M" logits -m "$T/junk.bin" --tokens 1
expect_fail "missing file" "cannot open|No such file" "$M" logits -m "$T/none.pth" --tokens 1
rm -f /tmp/modrwkv-pwned
expect_fail "pickle calling os.system" "refus.*os.system|os.system.*not an allowed" "$M" logits -m tests/fixtures/cli/evil_os_system.pth --tokens 1
[ ! -e /tmp/modrwkv-pwned ] || bad "the hostile pickle was executed"

# --- multimodal (ModRWKV fixtures: tiny v1/v2 checkpoints, encoders and media made by the project)
MM=tests/fixtures/modrwkv
expect_ok "chat with an image (v1)" "$M" chat -m $MM/v1_vision/rwkv-0.pth --encoder $MM/siglip --image $MM/media/image_a.png -n 4 -q "What is this?"
expect_ok "chat: transcribe (v1 audio)" "$M" chat -m $MM/v1_audio/rwkv-0.pth --encoder $MM/whisper --audio $MM/media/speech.wav -n 4 -q
printf 'first\nsecond\n' | "$M" chat -m $MM/v1_vision/rwkv-0.pth --encoder $MM/siglip --image $MM/media/image_a.png -n 3 -q > "$T/mmchat" 2> "$T/err" && ok || bad "multi-turn chat with an image: $(cat "$T/err")"
expect_ok "chat with two images (v2)" "$M" chat -m $MM/v2/rwkv-0.pth --encoder $MM/siglip --vocab "$VOCAB" --image $MM/media/image_a.png --image $MM/media/image_b.png -n 3 -q "Compare them."
expect_ok "generate with an image marker (v2)" "$M" generate -m $MM/v2/rwkv-0.pth --encoder $MM/siglip --vocab "$VOCAB" --image $MM/media/image_a.png -p "Look: <image> it is" -n 3 -q
expect_ok "encode an image (encoder only)" "$M" encode -m $MM/siglip --image $MM/media/image_a.png --out "$T/enc.safetensors"
expect_ok "encode with --encoder-fast" "$M" encode -m $MM/siglip --image $MM/media/image_a.png --encoder-fast --out "$T/enc-fast.safetensors"
expect_ok "encode audio through a model" "$M" encode -m $MM/v1_audio/rwkv-0.pth --encoder $MM/whisper --audio $MM/media/speech.wav --out "$T/enc2.safetensors"
grep -q "features" "$T/err" && ok || bad "encode through a model writes no adapted features"
expect_ok "bundle a v1 checkpoint" "$M" convert $MM/v1_vision/rwkv-0.pth "$T/bundle.safetensors" --encoder $MM/siglip
expect_ok "logits from the bundle alone" "$M" logits -m "$T/bundle.safetensors" --image $MM/media/image_a.png --text "$(printf '\x16User: What is this?\x17\x16Assistant:')" --exact
cp "$T/out" "$T/bundle-logits"
expect_ok "logits from the checkpoint + encoder" "$M" logits -m $MM/v1_vision/rwkv-0.pth --encoder $MM/siglip --image $MM/media/image_a.png --text "$(printf '\x16User: What is this?\x17\x16Assistant:')" --exact
cmp -s "$T/out" "$T/bundle-logits" && ok || bad "bundle and checkpoint+encoder give different logits"
expect_ok "info of a ModRWKV checkpoint" "$M" info -m $MM/v2/rwkv-0.pth --encoder $MM/siglip
grep -q "SigLIP" "$T/out" && grep -q "image_pad" "$T/out" && ok || bad "info does not describe the v2 model"
expect_fail "v1 checkpoint without its encoder" "--encoder" "$M" chat -m $MM/v1_vision/rwkv-0.pth --image $MM/media/image_a.png "hi"
expect_fail "adapter width mismatch" "40.*48|48.*40" "$M" chat -m $MM/bad/adapter_width.pth --encoder $MM/siglip --image $MM/media/image_a.png "hi"
expect_fail "media for a text-only model" "not a ModRWKV checkpoint" "$M" chat -m "$FIX/tiny.pth" --image $MM/media/image_a.png "hi"
expect_fail "audio to a vision model" "takes images, not audio" "$M" chat -m $MM/v1_vision/rwkv-0.pth --encoder $MM/siglip --audio $MM/media/speech.wav "hi"
expect_fail "four images" "4 images given" "$M" chat -m $MM/v2/rwkv-0.pth --image a --image b --image c --image d "hi"
printf 'GIF89a\x01\x00' > "$T/bad.gif"
expect_fail "corrupt image" "image|GIF|corrupt|truncat" "$M" chat -m $MM/v1_vision/rwkv-0.pth --encoder $MM/siglip --image "$T/bad.gif" "hi"
: > "$T/empty.wav"
expect_fail "empty audio file" "audio|empty|format" "$M" chat -m $MM/v1_audio/rwkv-0.pth --encoder $MM/whisper --audio "$T/empty.wav"
expect_fail "bad --compress" "expects K,S" "$M" chat -m $MM/v1_vision/rwkv-0.pth --compress 3x2 "hi"

finish cli_commands.sh
