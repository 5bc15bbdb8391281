#!/usr/bin/env bash
# End-to-end tests of `modrwkv eval` and `modrwkv plot`. Tiny random ModRWKV bundles (made from the committed
# v1 fixtures, as tests/cli_commands.sh does) are evaluated on a LLaVA JSONL and an audio manifest whose images
# and recordings this script writes itself (perl, part of every Debian base system). Checked: the table's
# shape; that its numbers equal a recomputation from the per-sample --out file (awk over the per-record
# scores, and `eval --score`, which rescores the prediction/reference strings); that a reference equal to the
# model's own greedy answer scores as a match; the teacher-forced loss against `modrwkv perplexity`; bad
# records skipped with file:line; `plot` on the committed log fixture (PNG signature and size, SVG) and on
# malformed logs. Run by tests/run.sh with the build directory as $1.
. "$(dirname "$0")/lib/cli.sh"
MM=tests/fixtures/modrwkv
FIX=tests/fixtures/eval
# metric NAME FILE: the value column of a table row
metric() { awk -v k="$1" '$1==k {print $2}' "$2"; }
# near A B [TOL]: |A-B| <= TOL (relative to max(1,|B|))
near() { awk -v a="$1" -v b="$2" -v t="${3:-1e-5}" 'BEGIN{d=a-b; if(d<0)d=-d; s=b<0?-b:b; if(s<1)s=1; exit !(a!="" && b!="" && d<=t*s)}'; }
# sum_field NAME FILE: sum of a numeric JSON field over the lines of a JSONL file
sum_field() { sed -nE "s/.*\"$1\":(-?[0-9.eE+-]+).*/\1/p" "$2" | awk '{s+=$1} END{printf "%.10g\n", s}'; }

# --- media written by the test: 24-bit BMP images and 16 kHz mono WAV recordings
mkbmp() { # FILE W H R G B: a colour gradient
  perl -e 'my($f,$w,$h,$r,$g,$b)=@ARGV; my $row=($w*3+3)&~3; my $px="";
    for my $y (0..$h-1){ my $l=""; for my $x (0..$w-1){ $l.=pack("C3",($b+7*$x)%256,($g+5*$y)%256,($r+3*($x+$y))%256) }
      $px.=$l.("\0" x ($row-$w*3)) }
    open(my $o,">:raw",$f) or die; print $o "BM",pack("V3",54+length($px),0,54),pack("V3v2V6",40,$w,$h,1,24,0,length($px),2835,2835,0,0),$px;' "$@"
}
mkwav() { # FILE SECONDS FREQ
  perl -e 'my($f,$s,$fr)=@ARGV; my $n=int(16000*$s); my $d=pack("s<*",map{int(6000*sin(6.283185307*$fr*$_/16000)+1500*sin(0.37*$_))}0..$n-1);
    open(my $o,">:raw",$f) or die; print $o "RIFF",pack("V",36+length($d)),"WAVEfmt ",pack("VvvVVvv",16,1,1,16000,32000,2,16),"data",pack("V",length($d)),$d;' "$@"
}
mkdir -p "$T/data/img" "$T/data/wav"
mkbmp "$T/data/img/red.bmp" 24 16 200 30 30
mkbmp "$T/data/img/blue.bmp" 16 16 20 40 220
mkbmp "$T/data/img/mix.bmp" 32 20 90 160 60
mkwav "$T/data/wav/a.wav" 0.6 440
mkwav "$T/data/wav/b.wav" 0.9 660
[ "$(head -c 2 "$T/data/img/red.bmp")" = BM ] && [ "$(head -c 4 "$T/data/wav/a.wav")" = RIFF ] && ok || bad "could not write the test media"

# --- bundles: everything in one file
expect_ok "bundle the vision fixture" "$M" convert $MM/v1_vision/rwkv-0.pth "$T/vision.safetensors" --encoder $MM/siglip
expect_ok "bundle the audio fixture" "$M" convert $MM/v1_audio/rwkv-0.pth "$T/audio.safetensors" --encoder $MM/whisper

# --- VQA: 3 good records, one malformed line, one with a missing image
cat > "$T/data/vqa.jsonl" <<'EOF'
{"id": "q1", "image": "img/red.bmp", "conversations": [{"from": "human", "value": "<image>\nWhat colour is it?"}, {"from": "gpt", "value": "Red."}]}
{"id": "q2", "image": "img/blue.bmp", "conversations": [{"from": "human", "value": "How many squares?\n<image>"}, {"from": "gpt", "value": "Two"}], "answers": ["2", "2", "2", "two", "3", "2", "2", "2", "2", "2"]}
{"id": "broken", "image": "img/red.bmp", "conversations": [
{"id": "q3", "image": "img/mix.bmp", "conversations": [{"from": "human", "value": "<image> Is it bright?"}, {"from": "gpt", "value": "yes"}]}

{"id": "gone", "image": "img/none.bmp", "conversations": [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "x"}]}
EOF
expect_ok "eval vqa" "$M" eval -m "$T/vision.safetensors" --data "$T/data/vqa.jsonl" --out "$T/vqa_out.jsonl" --max-new-tokens 6 --exact
cp "$T/out" "$T/vqa_table"; cp "$T/err" "$T/vqa_err"
[ "$(metric records "$T/vqa_table")" = 3 ] || bad "vqa: records != 3: $(cat "$T/vqa_table")"
[ "$(metric skipped "$T/vqa_table")" = 2 ] || bad "vqa: skipped != 2"
for k in exact_match exact_count vqa_accuracy loss perplexity answer_tokens; do
  [ -n "$(metric $k "$T/vqa_table")" ] || bad "vqa table has no '$k' row"
done
grep -q "^metric  *value$" "$T/vqa_table" && ok || bad "vqa table has no header row"
grep -q "vqa.jsonl:3: not valid JSON" "$T/vqa_err" && ok || bad "malformed line 3 not reported with file:line: $(cat "$T/vqa_err")"
grep -q "vqa.jsonl:6: .*none.bmp" "$T/vqa_err" && ok || bad "missing image on line 6 not reported: $(cat "$T/vqa_err")"
[ "$(wc -l < "$T/vqa_out.jsonl")" = 3 ] || bad "--out should hold 3 records"
grep -q '"question":"How many squares?"' "$T/vqa_out.jsonl" && ok || bad "the <image> marker was not removed from the question"
# recompute from --out: exact match, consensus accuracy, loss, perplexity
n=$(wc -l < "$T/vqa_out.jsonl")
ex=$(sum_field exact "$T/vqa_out.jsonl"); ls=$(sum_field loss_sum "$T/vqa_out.jsonl"); nt=$(sum_field answer_tokens "$T/vqa_out.jsonl")
near "$(metric exact_match "$T/vqa_table")" "$(awk -v a="$ex" -v n="$n" 'BEGIN{print a/n}')" && ok || bad "exact_match != mean of per-record 'exact'"
near "$(metric vqa_accuracy "$T/vqa_table")" "$(sum_field vqa_accuracy "$T/vqa_out.jsonl")" && ok || bad "vqa_accuracy != the one record's value"
near "$(metric loss "$T/vqa_table")" "$(awk -v a="$ls" -v n="$nt" 'BEGIN{print a/n}')" && ok || bad "loss != sum(loss_sum)/sum(answer_tokens)"
near "$(metric perplexity "$T/vqa_table")" "$(awk -v a="$ls" -v n="$nt" 'BEGIN{print exp(a/n)}')" 1e-4 && ok || bad "perplexity != exp(loss)"
[ "$(metric answer_tokens "$T/vqa_table")" = "$nt" ] || bad "answer_tokens != the sum over records"
# rescoring the predictions file gives the same table
expect_ok "eval --score vqa" "$M" eval --score "$T/vqa_out.jsonl"
diff <(grep -v '^#' "$T/vqa_table" | grep -v '^skipped') <(grep -v '^#' "$T/out" | grep -v '^skipped') > /dev/null && ok \
  || bad "--score table differs: $(diff <(grep -v '^#' "$T/vqa_table") <(grep -v '^#' "$T/out"))"
# the same records as a JSON array give the same scores
{ echo "["; sed -n '1p;2p;4p' "$T/data/vqa.jsonl" | paste -sd, ; echo "]"; } > "$T/data/vqa_array.json"
expect_ok "eval a JSON array file" "$M" eval -m "$T/vision.safetensors" --data "$T/data/vqa_array.json" --max-new-tokens 6 --exact -q
[ "$(metric loss "$T/out")" = "$(metric loss "$T/vqa_table")" ] && [ "$(metric skipped "$T/out")" = 0 ] && ok \
  || bad "JSON array file scores differ from JSONL: $(cat "$T/out")"
# references equal to the model's own greedy answers must match (records 1 and 3; record 2 keeps "Two")
p1=$(sed -n '1p' "$T/vqa_out.jsonl" | sed -E 's/.*"prediction":("([^"\\]|\\.)*").*/\1/')
p3=$(sed -n '3p' "$T/vqa_out.jsonl" | sed -E 's/.*"prediction":("([^"\\]|\\.)*").*/\1/')
{ echo "{\"image\": \"img/red.bmp\", \"conversations\": [{\"from\": \"human\", \"value\": \"<image>\\nWhat colour is it?\"}, {\"from\": \"gpt\", \"value\": $p1}]}"
  sed -n '2p' "$T/data/vqa.jsonl"
  echo "{\"image\": \"img/mix.bmp\", \"conversations\": [{\"from\": \"human\", \"value\": \"<image> Is it bright?\"}, {\"from\": \"gpt\", \"value\": $p3}]}"
} > "$T/data/echo.jsonl"
expect_ok "eval with the model's answers as references" "$M" eval -m "$T/vision.safetensors" --data "$T/data/echo.jsonl" --max-new-tokens 6 --exact --no-loss
[ "$(metric exact_count "$T/out")" = "2/3" ] || bad "own answers as references: expected 2/3 exact, got $(metric exact_count "$T/out")"
[ -z "$(metric loss "$T/out")" ] || bad "--no-loss still reports a loss"
# the teacher-forced loss of record 3 (" yes\x17", byte tokens) from `modrwkv logits` run on each prefix
# (--exact on both sides: the fixture's weights are bf16, whose fast prefill rounds activations)
[ "$(sed -n '3p' "$T/vqa_out.jsonl" | sed -nE 's/.*"answer_tokens":([0-9]+).*/\1/p')" = 5 ] || bad "record 3 should score 5 byte tokens"
ce_sum=0; prefix=""
for tgt in 32 121 101 115 23; do
  "$M" logits -m "$T/vision.safetensors" --exact --image "$T/data/img/mix.bmp" --text "$(printf '\x16User: Is it bright?\x17\x16Assistant:')$prefix" > "$T/lg" 2> "$T/err" || bad "logits: $(cat "$T/err")"
  ce_sum=$(awk -v t=$((tgt+1)) -v acc="$ce_sum" '{l[NR]=$1; if (NR==1||$1>m) m=$1} END{for(i=1;i<=NR;i++) z+=exp(l[i]-m); printf "%.10g", acc + log(z)+m-l[t]}' "$T/lg")
  prefix="$prefix$(printf "\\$(printf %03o $tgt)")"
done
near "$(sed -n '3p' "$T/vqa_out.jsonl" | sed -nE 's/.*"loss_sum":([-0-9.eE+]+).*/\1/p')" "$ce_sum" 1e-6 && ok \
  || bad "record 3 loss_sum != the CE recomputed from logits ($ce_sum)"
expect_ok "eval --max 1" "$M" eval -m "$T/vision.safetensors" --data "$T/data/vqa.jsonl" --max 1 --max-new-tokens 2 -q
[ "$(metric records "$T/out")" = 1 ] || bad "--max 1 evaluated $(metric records "$T/out") records"
mkdir -p "$T/elsewhere"; cp "$T/data/vqa.jsonl" "$T/elsewhere/"
expect_ok "eval with --root" "$M" eval -m "$T/vision.safetensors" --data "$T/elsewhere/vqa.jsonl" --root "$T/data" --max-new-tokens 6 --exact -q
[ "$(metric loss "$T/out")" = "$(metric loss "$T/vqa_table")" ] || bad "--root: different scores"

# a v2 checkpoint (image placeholders in the prompt, World vocabulary)
VOCAB=${MRW_SHARED:-../shared}/assets/rwkv_vocab_v20230424.txt
if [ -f "$VOCAB" ]; then
  expect_ok "eval vqa with a v2 checkpoint" "$M" eval -m $MM/v2/rwkv-0.pth --encoder $MM/siglip --vocab "$VOCAB" --data "$T/data/vqa.jsonl" --out "$T/v2_out.jsonl" --max-new-tokens 4 -q
  cp "$T/out" "$T/v2_table"
  [ "$(metric records "$T/v2_table")" = 3 ] && [ -n "$(metric loss "$T/v2_table")" ] && ok || bad "v2 table: $(cat "$T/v2_table")"
  expect_ok "eval --score v2" "$M" eval --score "$T/v2_out.jsonl"
  diff <(grep -v '^#' "$T/v2_table" | grep -v '^skipped') <(grep -v '^#' "$T/out" | grep -v '^skipped') > /dev/null && ok || bad "--score v2 table differs"
fi

# --- ASR: an audio manifest
printf '{"audio": "wav/a.wav", "text": "Hello, World!"}\n{"audio": "wav/b.wav", "text": "one two three"}\n' > "$T/data/asr.jsonl"
expect_ok "eval asr" "$M" eval -m "$T/audio.safetensors" --data "$T/data/asr.jsonl" --out "$T/asr_out.jsonl" --max-new-tokens 6
cp "$T/out" "$T/asr_table"
[ "$(metric records "$T/asr_table")" = 2 ] || bad "asr: records != 2: $(cat "$T/asr_table") $(cat "$T/err")"
for k in wer wer_errors cer cer_errors loss perplexity answer_tokens; do
  [ -n "$(metric $k "$T/asr_table")" ] || bad "asr table has no '$k' row"
done
[ -z "$(metric exact_match "$T/asr_table")" ] || bad "asr table reports exact_match"
we=$(sum_field wer_errors "$T/asr_out.jsonl"); wn=$(sum_field wer_words "$T/asr_out.jsonl")
ce=$(sum_field cer_errors "$T/asr_out.jsonl"); cn=$(sum_field cer_chars "$T/asr_out.jsonl")
[ "$wn" = 5 ] || bad "asr: reference words $wn != 5 (normalised 'hello world' + 'one two three')"
[ "$cn" = 24 ] || bad "asr: reference characters $cn != 24"
near "$(metric wer "$T/asr_table")" "$(awk -v a="$we" -v n="$wn" 'BEGIN{print a/n}')" && ok || bad "wer != sum(errors)/sum(words)"
near "$(metric cer "$T/asr_table")" "$(awk -v a="$ce" -v n="$cn" 'BEGIN{print a/n}')" && ok || bad "cer != sum(errors)/sum(chars)"
expect_ok "eval --score asr" "$M" eval --score "$T/asr_out.jsonl"
diff <(grep -v '^#' "$T/asr_table") <(grep -v '^#' "$T/out") > /dev/null && ok || bad "--score asr table differs"
# the model's own transcript as the reference: no word errors on that record
p1=$(sed -n '1p' "$T/asr_out.jsonl" | sed -E 's/.*"prediction":("([^"\\]|\\.)*").*/\1/')
printf '{"audio": "wav/a.wav", "text": %s}\n' "$p1" > "$T/data/asr_echo.jsonl"
expect_ok "eval asr, own transcript" "$M" eval -m "$T/audio.safetensors" --data "$T/data/asr_echo.jsonl" --max-new-tokens 6 --no-loss
[ "$(metric wer_errors "$T/out" | cut -d/ -f1)" = 0 ] && [ "$(metric cer_errors "$T/out" | cut -d/ -f1)" = 0 ] && ok \
  || bad "own transcript as reference: errors $(metric wer_errors "$T/out") / $(metric cer_errors "$T/out")"
# a handmade predictions file with known WER/CER (normalisation; CJK CER without spaces)
cat > "$T/pred.jsonl" <<'EOF'
{"task": "asr", "prediction": "the cat sat on mat", "reference": "The cat sat on the mat."}
{"task": "asr", "prediction": "hello there world", "reference": "Hello, world!"}
{"task": "asr", "prediction": "今天 天气 不好", "reference": "今天天气很好"}
EOF
expect_ok "score handmade predictions" "$M" eval --score "$T/pred.jsonl"
[ "$(metric wer_errors "$T/out")" = "5/9" ] || bad "handmade WER: $(metric wer_errors "$T/out") != 5/9"
[ "$(metric cer_errors "$T/out")" = "11/39" ] || bad "handmade CER: $(metric cer_errors "$T/out") != 11/39"
expect_ok "score handmade predictions, raw" "$M" eval --score "$T/pred.jsonl" --no-normalize --cer-spaces keep
[ "$(metric wer_errors "$T/out")" = "9/9" ] || bad "handmade raw WER: $(metric wer_errors "$T/out") != 9/9"

# --- text: conversations and plain texts with a plain RWKV-7; loss against `modrwkv perplexity`
printf '{"conversations": [{"from": "human", "value": "Say hi"}, {"from": "gpt", "value": "hi"}]}\n{"text": "The quick brown fox jumps over the lazy dog."}\n' > "$T/data/text.jsonl"
expect_ok "eval text" "$M" eval -m tests/fixtures/rwkv7/tiny.pth --data "$T/data/text.jsonl" --out "$T/text_out.jsonl" --max-new-tokens 4
[ "$(metric records "$T/out")" = 2 ] && [ "$(metric exact_count "$T/out")" != "" ] && ok || bad "text table: $(cat "$T/out")"
fox=$(sed -n '2p' "$T/text_out.jsonl")
fl=$(echo "$fox" | sed -nE 's/.*"loss_sum":([-0-9.eE+]+).*/\1/p'); fn=$(echo "$fox" | sed -nE 's/.*"answer_tokens":([0-9]+).*/\1/p')
printf 'The quick brown fox jumps over the lazy dog.' > "$T/fox.txt"
expect_ok "perplexity of the same text" "$M" perplexity -m tests/fixtures/rwkv7/tiny.pth -f "$T/fox.txt" --no-bos
pl=$(sed -nE 's/.*loss ([0-9.]+) nats.*/\1/p' "$T/out")
near "$(awk -v a="$fl" -v n="$fn" 'BEGIN{print a/n}')" "$pl" 2e-6 && ok || bad "teacher-forced text loss $fl/$fn != perplexity's $pl"

# --- bad input
expect_fail "forecast with a model that is not a forecaster" "forecaster" "$M" eval -m "$T/vision.safetensors" --data "$T/data/vqa.jsonl" --task forecast
expect_fail "unknown task" "--task must be" "$M" eval -m "$T/vision.safetensors" --data "$T/data/vqa.jsonl" --task poetry
expect_fail "vqa with a plain model" "needs a ModRWKV model" "$M" eval -m tests/fixtures/rwkv7/tiny.pth --data "$T/data/vqa.jsonl"
expect_fail "audio to a vision model" "takes images, not audio|no record" "$M" eval -m "$T/vision.safetensors" --data "$T/data/asr.jsonl" -q
: > "$T/data/empty.jsonl"
expect_fail "empty data file" "empty" "$M" eval -m "$T/vision.safetensors" --data "$T/data/empty.jsonl"
printf 'junk\n{"x": 1}\n' > "$T/data/junk.jsonl"
expect_fail "nothing usable" "no record could be evaluated|cannot tell the task" "$M" eval -m "$T/vision.safetensors" --data "$T/data/junk.jsonl" --out "$T/junk_out.jsonl"
[ ! -e "$T/junk_out.jsonl" ] && ok || bad "a failed eval left its --out file"
printf '[{"image": 1' > "$T/data/trunc.json"
expect_fail "truncated JSON array" "not a valid JSON array" "$M" eval -m "$T/vision.safetensors" --data "$T/data/trunc.json"
expect_fail "--out in a missing directory" "cannot|No such" "$M" eval -m "$T/vision.safetensors" --data "$T/data/vqa.jsonl" --out "$T/nodir/x.jsonl"
expect_fail "missing data file" "cannot open|No such" "$M" eval -m "$T/vision.safetensors" --data "$T/data/none.jsonl"
expect_fail "--image is not an eval option" "media come from" "$M" eval -m "$T/vision.safetensors" --data "$T/data/vqa.jsonl" --image x.png

# --- plot
expect_ok "plot PNG" "$M" plot $FIX/train_log.jsonl -o "$T/log.png" --size 640x480
sig=$(od -An -tx1 -N8 "$T/log.png" | tr -d ' \n')
[ "$sig" = 89504e470d0a1a0a ] && ok || bad "not a PNG signature: $sig"
dims=$(od -An -tu1 -j16 -N8 "$T/log.png" | awk '{print $1*16777216+$2*65536+$3*256+$4, $5*16777216+$6*65536+$7*256+$8}')
[ "$dims" = "640 480" ] && ok || bad "PNG is $dims, expected 640 480"
grep -q "120 steps, 6 held-out" "$T/err" && ok || bad "plot summary: $(cat "$T/err")"
expect_ok "plot PNG default size, --smooth" "$M" plot $FIX/train_log.jsonl -o "$T/log2.png" --smooth 10
[ "$(od -An -tu1 -j16 -N8 "$T/log2.png" | awk '{print $3*256+$4, $7*256+$8}')" = "960 720" ] && ok || bad "default size is not 960x720"
expect_ok "plot SVG" "$M" plot $FIX/train_log.jsonl -o "$T/log.svg" --title "tiny run"
head -1 "$T/log.svg" | grep -q '^<?xml' && grep -q '<svg xmlns="http://www.w3.org/2000/svg" width="960" height="720"' "$T/log.svg" \
  && [ "$(tail -1 "$T/log.svg")" = "</svg>" ] && ok || bad "SVG header/footer"
[ "$(grep -c '<polyline' "$T/log.svg")" -ge 3 ] && [ "$(grep -c '<circle' "$T/log.svg")" -ge 6 ] && grep -q '>learning rate<' "$T/log.svg" \
  && grep -q 'tiny run' "$T/log.svg" && ok || bad "SVG lacks the curves, held-out points or labels"
# malformed lines are reported with their numbers and skipped
{ sed -n '1,5p' $FIX/train_log.jsonl; echo 'not json'; echo '{"step": 6, "lr": 0.1}'; echo '{"step": 7, "loss": "high"}'
  echo '[1, 2]'; echo '{"step": 8, "loss": 1e999}'; echo '{"loss": 2.0}'; sed -n '6,20p' $FIX/train_log.jsonl; } > "$T/bad_log.jsonl"
expect_ok "plot a log with malformed lines" "$M" plot "$T/bad_log.jsonl" -o "$T/bad.svg"
for l in 6 7 8 9 10 11; do grep -q "bad_log.jsonl:$l: " "$T/err" || bad "malformed line $l not reported: $(cat "$T/err")"; done
grep -q "skipped 6 malformed" "$T/err" && ok || bad "no count of skipped lines: $(cat "$T/err")"
grep -q "bad_log.jsonl:12:" "$T/err" && bad "a good line was reported as malformed" || ok
: > "$T/empty_log.jsonl"
expect_fail "empty log" "no training steps" "$M" plot "$T/empty_log.jsonl" -o "$T/empty.png"
[ ! -e "$T/empty.png" ] && ok || bad "an empty log left an image"
printf 'garbage\n{"step": "x", "loss": 1}\n' > "$T/junk_log.jsonl"
expect_fail "log without a good line" "no training steps" "$M" plot "$T/junk_log.jsonl" -o "$T/junk.svg"
[ ! -e "$T/junk.svg" ] && ok || bad "a failed plot left an image"
expect_fail "bad extension" "must end in .png or .svg" "$M" plot $FIX/train_log.jsonl -o "$T/log.jpg"
expect_fail "missing log" "cannot open" "$M" plot "$T/none.jsonl" -o "$T/x.png"
expect_fail "bad --size" "--size expects" "$M" plot $FIX/train_log.jsonl -o "$T/x.png" --size 10x10
expect_fail "output in a missing directory" "cannot|No such" "$M" plot $FIX/train_log.jsonl -o "$T/nodir/x.png"
expect_ok "plot/eval --help" "$M" plot --help
grep -q "usage: modrwkv plot" "$T/out" && ok || bad "plot --help"
expect_ok "eval --help" "$M" eval --help
grep -q "usage: modrwkv eval" "$T/out" && ok || bad "eval --help"

finish cli_eval.sh
