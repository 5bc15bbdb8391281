#!/usr/bin/env bash
# Data-parallel `modrwkv train --device cuda --gpus 2` against one GPU at the same global batch (docs/DISTRIBUTED.md;
# a machine with 2 GPUs, NCCL). Same random init, data order and schedule (2-layer C128 byte model, batch 8 = 4 per
# GPU, ctx 100, 12 steps, lr 3e-3, AdamW 0.1, clip 1): prints the loss of every step for 1 GPU, 2 GPUs and 2 GPUs with
# ZeRO-1 (and 1 GPU through the ZeRO-1 code path), in fp32 mode (MRW_TRAIN_GPU_FP32=1: exact arithmetic, tolerance
# 1e-4 relative) and in bf16 (the training configuration, tolerance 1e-2: the GEMMs of a 4-row batch may round
# otherwise than those of an 8-row one). Then checkpoints across GPU counts (fp32 mode): a 2-GPU ZeRO-1 run killed
# after step 6 and resumed on 1 GPU, and a 1-GPU run killed after step 6 and resumed on 2 GPUs with ZeRO-1, each end
# at the uninterrupted 1-GPU run's last loss (tolerance 1e-4); and a run whose NCCL cannot be loaded fails on both
# ranks with the message and exit status 1, quickly. Then gradient accumulation, a NaN on one rank (every rank skips
# the step) and the bf16 all-reduce. Then the ModRWKV stages (stage 1, stage 2, the vision encoder trained; the frozen
# GPU encoders, each rank encoding only its slice) on 2 GPUs against 1 at the same global batch (the block at the end
# says what and how closely).
#   tests/cuda/train_dist_gpu.sh        (logs in $OUT or ./cuda-out; MODRWKV, DATA, MRW_NCCL_LIB may be set;
#                                        DIST_ONLY=mm runs the ModRWKV block only)
set -u
cd "$(dirname "$0")/../.."
M=${MODRWKV:-build-cuda/modrwkv}
out=${OUT:-cuda-out}; mkdir -p "$out"
data=${DATA:-build-cuda/gpudata/text.jsonl}
libs=${GPULIBS:-$(dirname "$M")/gpulibs}
[ -d "$libs" ] && export LD_LIBRARY_PATH="$(cd "$libs" && pwd):${LD_LIBRARY_PATH:-}"
if [ -z "${MRW_NCCL_LIB:-}" ]; then # NCCL from the Python package nvidia-nccl-cu13 (PyTorch's)
  d=$(python3 -c "import nvidia.nccl as n; print(list(n.__path__)[0])" 2>/dev/null)
  for f in "$d/lib/libnccl.so.2" /opt/torch/.venv/lib/python3*/site-packages/nvidia/nccl/lib/libnccl.so.2; do
    [ -f "$f" ] && { export MRW_NCCL_LIB="$f"; break; }
  done
fi
echo "NCCL: ${MRW_NCCL_LIB:-libnccl.so.2 from the library path}"
tmp=$(mktemp -d)
common=(--data "$data" --init 2,128 --vocab bytes --batch 8 --ctx-len 100 --steps 12 --lr 3e-3 --weight-decay 0.1
        --seed 7 --no-progress -t 4 --device cuda)
rc=0
run() { # LOG DIR ENV... -- ARGS...: one training run into $tmp/DIR, its output in $out/dist_LOG.txt
  local name=$1 dir=$2; shift 2
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done; shift
  local t0=$(date +%s.%N)
  env "${envs[@]}" "$M" train "${common[@]}" "$@" --out "$tmp/$dir" > "$out/dist_$name.txt" 2>&1
  local r=$?
  printf "%-9s exit %3d %6.1f s  %s\n" "$name" "$r" "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')" \
    "$(grep -m1 -E 'data parallel|on the GPU' "$out/dist_$name.txt" | cut -c1-170)"
  return $r
}
losses() { grep -o '"loss":[0-9.eE+-]*' "$1/train.jsonl" | cut -d: -f2; }
if [ "${DIST_ONLY:-}" != mm ]; then # (DIST_ONLY=mm: only the ModRWKV block at the end)
for mode in fp32 bf16; do
  f=MRW_TRAIN_GPU_FP32=$([ $mode = fp32 ] && echo 1 || echo 0)
  run "${mode}_1" "${mode}_1" "$f" -- || rc=1
  run "${mode}_2" "${mode}_2" "$f" -- --gpus 2 || rc=1
  run "${mode}_2z" "${mode}_2z" "$f" -- --gpus 2 --zero 1 || rc=1
  run "${mode}_1z" "${mode}_1z" "$f" -- --zero 1 || rc=1
  tol=$([ $mode = fp32 ] && echo 1e-4 || echo 1e-2)
  echo "$mode: loss per step (relative differences against 1 GPU; tolerance $tol)"
  paste <(losses "$tmp/${mode}_1") <(losses "$tmp/${mode}_2") <(losses "$tmp/${mode}_2z") <(losses "$tmp/${mode}_1z") |
    awk -v tol="$tol" -v mode="$mode" '
    function rd(a, b) { d = (a - b) / b; return d < 0 ? -d : d }
    { n++; a = rd($2, $1); b = rd($3, $1); c = rd($4, $1);
      if (a > ma) ma = a; if (b > mb) mb = b; if (c > mc) mc = c;
      printf "  step %2d  1 GPU %.6f  2 GPUs %.6f  2 GPUs ZeRO-1 %.6f  1 GPU ZeRO-1 path %.6f  |  %.1e  %.1e  %.1e\n", n, $1, $2, $3, $4, a, b, c }
    END { printf "%s: %d steps: max rel diff 2 GPUs %.2e, 2 GPUs ZeRO-1 %.2e, 1 GPU ZeRO-1 path %.2e (tol %s)\n", mode, n, ma, mb, mc, tol;
          exit !(n == 12 && ma <= tol && mb <= tol && mc <= tol) }' | tee "$out/dist_$mode.txt"
  [ "${PIPESTATUS[1]}" -eq 0 ] || rc=1
done
# checkpoints across GPU counts (fp32 mode): killed after step 6 (rank 0 kills itself after the checkpoint; the
# launcher stops the other rank), resumed with the other GPU count
F=MRW_TRAIN_GPU_FP32=1
run rs_a1 rs_a "$F" MRW_TRAIN_KILL_AFTER_STEP=6 -- --gpus 2 --zero 1 --save-every 6
run rs_a2 rs_a "$F" -- --save-every 6 --resume || rc=1
run rs_b1 rs_b "$F" MRW_TRAIN_KILL_AFTER_STEP=6 -- --save-every 6
run rs_b2 rs_b "$F" -- --gpus 2 --zero 1 --save-every 6 --resume || rc=1
ref=$(losses "$tmp/fp32_1" | tail -1)
for d in rs_a rs_b; do
  last=$(losses "$tmp/$d" | tail -1); n=$(losses "$tmp/$d" | wc -l)
  awk -v a="$ref" -v b="$last" -v n="$n" -v d="$d" 'BEGIN { x = (b - a) / a; if (x < 0) x = -x;
    printf "resume %s (%s): %d log lines, last loss %s vs %s uninterrupted 1 GPU (rel diff %.2e, tol 1e-4)\n", d,
      d == "rs_a" ? "2 GPUs ZeRO-1 -> 1 GPU" : "1 GPU -> 2 GPUs ZeRO-1", n, b, a, x; exit !(n == 12 && x <= 1e-4) }' || rc=1
done
# more: gradient accumulation (fp32: micro-batch 4 = 2 per GPU, 2 micro-batches a step); a NaN loss on rank 1 only at
# step 3 is skipped by both ranks (as one GPU skips it: the same curve after it); bf16 gradients over the wire (bf16
# training, plain and ZeRO-1, against 1 GPU; tolerance 1e-2)
run ga_1 ga_1 "$F" -- --batch 4 --grad-accum 2 || rc=1
run ga_2 ga_2 "$F" -- --batch 4 --grad-accum 2 --gpus 2 || rc=1
run nan_1 nan_1 "$F" MRW_TRAIN_NAN_AT_STEP=3 -- || rc=1
run nan_2 nan_2 "$F" MRW_TRAIN_NAN_AT_STEP=3,1 -- --gpus 2 --zero 1 || rc=1
run ar_2 ar_2 MRW_TRAIN_GPU_FP32=0 -- --gpus 2 --allreduce bf16 || rc=1
run ar_2z ar_2z MRW_TRAIN_GPU_FP32=0 -- --gpus 2 --zero 1 --allreduce bf16 || rc=1
cmp2() { # NAME A B TOL
  paste <(losses "$tmp/$2") <(losses "$tmp/$3") | awk -v tol="$4" -v name="$1" '
    { n++; d = ($2 - $1) / $1; if (d < 0) d = -d; if (d > m) m = d }
    END { printf "%s: %d steps, max rel diff %.2e (tol %s)\n", name, n, m, tol; exit !(n == 12 && m <= tol) }'
}
cmp2 "grad-accum 2, 2 GPUs vs 1 (fp32)" ga_1 ga_2 1e-4 || rc=1
cmp2 "NaN at step 3 on rank 1 only, 2 GPUs ZeRO-1 vs NaN on 1 GPU (fp32)" nan_1 nan_2 1e-4 || rc=1
grep -q "loss is nan at step 3: step skipped" "$out/dist_nan_2.txt" && echo "  rank 0 skipped step 3 (its own loss was finite)" || { echo "rank 0 did not skip"; rc=1; }
cmp2 "bf16 all-reduce, 2 GPUs vs 1 (bf16)" bf16_1 ar_2 1e-2 || rc=1
cmp2 "bf16 all-reduce, 2 GPUs ZeRO-1 vs 1 (bf16)" bf16_1 ar_2z 1e-2 || rc=1
# the launcher-free path (any launcher, across nodes): two processes started by hand with RANK, WORLD_SIZE, LOCAL_RANK,
# MASTER_ADDR (this machine's first network address, not loopback), MASTER_PORT; the same run as fp32_2
addr=$(hostname -I 2>/dev/null | awk '{print $1}'); [ -n "$addr" ] || addr=127.0.0.1
port=$((20000 + RANDOM % 20000))
for r in 0 1; do
  env MRW_TRAIN_GPU_FP32=1 RANK=$r LOCAL_RANK=$r WORLD_SIZE=2 MASTER_ADDR="$addr" MASTER_PORT=$port \
    "$M" train "${common[@]}" --out "$tmp/env" > "$out/dist_env_$r.txt" 2>&1 &
done
wait
cmp2 "RANK/WORLD_SIZE from the environment, MASTER_ADDR $addr, vs --gpus 2 (fp32)" fp32_2 env 1e-6 || rc=1
# failure handling: NCCL missing -> both ranks fail with the message, the launcher returns 1
t0=$(date +%s)
MRW_NCCL_LIB=/nonexistent/libnccl.so.2 "$M" train "${common[@]}" --gpus 2 --out "$tmp/bad" > "$out/dist_bad.txt" 2>&1
r=$?; dt=$(( $(date +%s) - t0 ))
if [ $r -eq 1 ] && grep -q "cannot load NCCL" "$out/dist_bad.txt" && [ $dt -lt 60 ]; then
  echo "missing NCCL: exit $r after ${dt} s: $(grep -m1 'cannot load NCCL' "$out/dist_bad.txt" | cut -c1-150)"
else
  echo "missing NCCL: unexpected (exit $r after ${dt} s)"; cat "$out/dist_bad.txt"; rc=1
fi
fi
rm -rf "$tmp"
# --- the ModRWKV stages data parallel (in a subshell: tests/cuda/lib_stage_cmp.sh's helpers and fixture; also the
# Whisper encoder trained: --train adapter,encoder on 6 recordings, same tolerances as the SigLIP rows). The image
# records of lib_stage_cmp.sh, the test SigLIP (frozen: features through a --feature-cache that the first run fills,
# --encoder-device cpu; or trained on the GPU), a 2 x 128 byte-vocabulary RWKV-7 (30 CPU steps of text first),
# --batch 4 (2 per GPU), 8 steps; 2 GPUs at global batch 4 against 1 GPU at batch 4: stage 1 (--train adapter, RWKV
# frozen), stage 2 (--train adapter,rwkv from the 1-GPU stage-1 model, lr 1e-3), the encoder trained (--train
# adapter,encoder), each in fp32 mode (MRW_TRAIN_GPU_FP32=1: the RWKV in fp32; the adapter's GEMMs are bf16 in every
# mode) and bf16, with ZeRO-1 (stage 1: nothing to shard, no RWKV gradients or moments on any rank) and the bf16
# all-reduce; a NaN on rank 1 only at step 3 skipped by both ranks (vs 1 GPU with a NaN at step 3); a 2-GPU ZeRO-1 stage-2
# run killed after step 4 and resumed ends at the uninterrupted run's loss. Tolerances (relative, set before the first
# run; cmp_losses: every step / step 1's loss / step 1's gradient norm): fp32 mode 5e-3 / 1e-4 / 1e-3 (what remains
# is summation order and the bf16 adapter GEMMs over 2 rows instead of 4; stage 2's Adam is sign-sensitive), bf16
# 5e-2 / 1e-2 / 3e-2 (the GPU-vs-CPU bf16 bounds of train_mm_gpu.sh); resume 1e-3 (as train_mm_gpu.sh's stage 2).
(
  P=dpmm; RESUME_AT=4; STEPS=8
  . "$(dirname "$0")/lib_stage_cmp.sh"
  image_records > "$tmp/data.jsonl"
  { echo '{"text": "A red square on a dark field. Two shapes, one blue and one green. Mostly grey."}'
    echo '{"text": "How many shapes? Two. Is it bright? No, it is dark around the square. It is a small test image."}'; } \
    > "$tmp/text.jsonl"
  "$M" train --init 2,128 --vocab bytes --data "$tmp/text.jsonl" --batch 2 --ctx-len 128 --steps 30 --lr 3e-3 --seed 7 \
    -t 4 --no-progress --out "$tmp/lm" > "$out/dpmm_lm.txt" 2>&1 || { echo "LM run failed"; tail -3 "$out/dpmm_lm.txt"; rc=1; }
  C=(--vocab bytes --data "$tmp/data.jsonl" --batch 4 --ctx-len 128 --steps 8 --lr 3e-3 --seed 7 -t 4 --no-progress
     --device cuda --encoder-device cpu)
  S1=(-m "$tmp/lm/model.safetensors" --encoder $MM/siglip --adapter v1 --train adapter --feature-cache "$tmp/fc" "${C[@]}")
  SE=(-m "$tmp/lm/model.safetensors" --encoder $MM/siglip --adapter v1 --train adapter,encoder "${C[@]}")
  run s1_1 G32 "$M" train "${S1[@]}"
  S2=(-m "$tmp/s1_1/model.safetensors" --train adapter,rwkv --feature-cache "$tmp/fc" "${C[@]}" --lr 1e-3)
  run s1_2 G32 "$M" train "${S1[@]}" --gpus 2
  run s1_2z G32 "$M" train "${S1[@]}" --gpus 2 --zero 1
  run s1b_1 "$M" train "${S1[@]}"
  run s1b_2 "$M" train "${S1[@]}" --gpus 2
  run s2_1 G32 "$M" train "${S2[@]}"
  run s2_2 G32 "$M" train "${S2[@]}" --gpus 2
  run s2_2z G32 "$M" train "${S2[@]}" --gpus 2 --zero 1
  run s2_1z G32 "$M" train "${S2[@]}" --zero 1
  run s2b_1 "$M" train "${S2[@]}"
  run s2b_2 "$M" train "${S2[@]}" --gpus 2
  run s2b_2z "$M" train "${S2[@]}" --gpus 2 --zero 1
  run s2b_2ar "$M" train "${S2[@]}" --gpus 2 --zero 1 --allreduce bf16
  run e_1 G32 "$M" train "${SE[@]}"
  run e_2 G32 "$M" train "${SE[@]}" --gpus 2
  run eb_1 "$M" train "${SE[@]}"
  run eb_2 "$M" train "${SE[@]}" --gpus 2
  # the Whisper encoder trained on the GPU (its gradients summed over the ranks like the ViT's): 6 recordings of
  # train_audio_gpu.sh, the v1 audio fixture model
  cp $MM/media/speech.wav "$tmp/"
  a() { printf '{"audio": "speech.wav", "text": "%s"}\n' "$1"; }
  { a "hello there"; a "a chirp and a burst"; a "some noise at the end"; a "the tone rises"; a "four hundred forty";
    a "a short clip"; } > "$tmp/asr.jsonl"
  WE=(-m $MM/v1_audio/rwkv-0.pth --encoder $MM/whisper --train adapter,encoder --vocab bytes --data "$tmp/asr.jsonl"
      --batch 4 --ctx-len 128 --steps 8 --lr 1e-3 --seed 7 -t 4 --no-progress --device cuda)
  run w_1 G32 "$M" train "${WE[@]}"
  run w_2 G32 "$M" train "${WE[@]}" --gpus 2
  run wb_1 "$M" train "${WE[@]}"
  run wb_2 "$M" train "${WE[@]}" --gpus 2
  run nan_1 env MRW_TRAIN_NAN_AT_STEP=3 MRW_TRAIN_GPU_FP32=1 "$M" train "${S2[@]}"
  run nan_2 env MRW_TRAIN_NAN_AT_STEP=3,1 MRW_TRAIN_GPU_FP32=1 "$M" train "${S2[@]}" --gpus 2 --zero 1
  # The frozen encoders on the GPU, data parallel: each rank encodes only its slice's media and only checks the
  # others' (read and decoded, the encoder not run; trainer.c slice_encode). MRW_TRAIN_ENCODE_COUNT=1 prints per rank
  # "media encoded, read from the feature cache, checked for other ranks, feature-cache entries written". Stage 1 on
  # the SigLIP fixture (GPU encoder, no cache), 8 steps x 4 images: 1 GPU encodes 32; 2 GPUs 16 each and check 16
  # each; MRW_TRAIN_ENCODE_ALL=1 (every rank encodes the whole micro-batch, the earlier way) 32 each. With a fresh
  # --feature-cache on 2 GPUs: the 3 distinct images give 3 entries written in all (one rank writes each: within a
  # micro-batch only a path's first medium writes; later steps read them), no temporary files left; a second run over
  # the filled cache encodes nothing (16 read, 16 checked per rank). The frozen Whisper fixture (6 recordings, batched
  # on the GPU): 1 GPU 32, 2 GPUs 16 + 16 checked each. Losses of 2 GPUs vs 1 at the same global batch with the
  # bf16 tolerances (the encoder's bf16 GEMMs run over 2 media per rank instead of 4), and sliced vs every rank
  # encoding everything.
  GE=(-m "$tmp/lm/model.safetensors" --encoder $MM/siglip --adapter v1 --train adapter --vocab bytes --data "$tmp/data.jsonl"
      --batch 4 --ctx-len 128 --steps 8 --lr 3e-3 --seed 7 -t 4 --no-progress --device cuda)
  GW=(-m $MM/v1_audio/rwkv-0.pth --encoder $MM/whisper --train adapter --vocab bytes --data "$tmp/asr.jsonl" --batch 4
      --ctx-len 128 --steps 8 --lr 1e-3 --seed 7 -t 4 --no-progress --device cuda)
  EC=(env MRW_TRAIN_ENCODE_COUNT=1)
  run ge_1 G32 "${EC[@]}" "$M" train "${GE[@]}"
  run ge_2 G32 "${EC[@]}" "$M" train "${GE[@]}" --gpus 2
  run ge_2all G32 "${EC[@]}" MRW_TRAIN_ENCODE_ALL=1 "$M" train "${GE[@]}" --gpus 2
  run gec_2 G32 "${EC[@]}" "$M" train "${GE[@]}" --gpus 2 --feature-cache "$tmp/fcg"
  run gec2_2 G32 "${EC[@]}" "$M" train "${GE[@]}" --gpus 2 --feature-cache "$tmp/fcg"
  run gw_1 G32 "${EC[@]}" "$M" train "${GW[@]}"
  run gw_2 G32 "${EC[@]}" "$M" train "${GW[@]}" --gpus 2
  # enc_count RUN RANK: "encoded cached checked written" of that rank's line
  enc_count() { grep -o "rank $2 of [0-9]*: [0-9]* media encoded, [0-9]* read from the feature cache, [0-9]* checked for other ranks, [0-9]* feature-cache entries written" \
                  "$out/dpmm_$1.txt" | awk '{ print $5, $8, $14, $19 }'; }
  enc_want() { # RUN RANK "E C K W" (a field "-": any)
    local got; got=$(enc_count "$1" "$2")
    if awk -v g="$got" -v w="$3" 'BEGIN { n = split(g, a, " "); split(w, b, " "); if (n != 4) exit 1
                                          for (i = 1; i <= 4; i++) if (b[i] != "-" && a[i] != b[i]) exit 1 }'; then
      echo "  $1 rank $2: encoded/cached/checked/written $got (want $3): pass"
    else echo "  $1 rank $2: encoded/cached/checked/written '$got' (want $3): FAIL"; rc=1; fi; }
  echo "frozen encoders, data parallel: what each rank encoded"
  enc_want ge_1 0 "32 0 0 0"; enc_want ge_2 0 "16 0 16 0"; enc_want ge_2 1 "16 0 16 0"
  enc_want ge_2all 0 "32 0 0 0"; enc_want ge_2all 1 "32 0 0 0"
  enc_want gec_2 0 "- - 16 -"; enc_want gec_2 1 "- - 16 -"
  enc_want gec2_2 0 "0 16 16 0"; enc_want gec2_2 1 "0 16 16 0"
  enc_want gw_1 0 "32 0 0 0"; enc_want gw_2 0 "16 0 16 0"; enc_want gw_2 1 "16 0 16 0"
  nw=$(( $(enc_count gec_2 0 | awk '{ print $1 + $2 }') + 0 ))
  w0=$(enc_count gec_2 0 | awk '{ print $4 }'); w1=$(enc_count gec_2 1 | awk '{ print $4 }')
  ne=$(find "$tmp/fcg" -name '*.f32' | wc -l); nt=$(find "$tmp/fcg" -type f ! -name '*.f32' | wc -l)
  if [ "$((w0 + w1))" -eq 3 ] && [ "$ne" -eq 3 ] && [ "$nt" -eq 0 ] && [ "$nw" -eq 16 ]; then
    echo "  fresh cache on 2 GPUs: entries written by rank 0 / 1: $w0 / $w1 (3 in all), 3 entries, no temporary files: pass"
  else echo "  fresh cache on 2 GPUs: written $w0 / $w1, $ne entries, $nt other files, rank 0 encoded + cached $nw: FAIL"; rc=1; fi
  grep -h "data parallel" "$out"/dpmm_s1_2z.txt "$out"/dpmm_s2_2z.txt "$out"/dpmm_e_2.txt
  cmp_losses "stage 1, 2 GPUs vs 1 (fp32)" s1_1 s1_2 5e-3 1e-4 1e-3
  cmp_losses "stage 1, 2 GPUs ZeRO-1 vs 1 (fp32)" s1_1 s1_2z 5e-3 1e-4 1e-3
  cmp_losses "stage 1, 2 GPUs vs 1 (bf16)" s1b_1 s1b_2 5e-2 1e-2 3e-2
  cmp_losses "stage 2, 2 GPUs vs 1 (fp32)" s2_1 s2_2 5e-3 1e-4 1e-3
  cmp_losses "stage 2, 2 GPUs ZeRO-1 vs 1 (fp32)" s2_1 s2_2z 5e-3 1e-4 1e-3
  cmp_losses "stage 2, 1 GPU ZeRO-1 code path vs 1 (fp32)" s2_1 s2_1z 5e-3 1e-4 1e-3
  cmp_losses "stage 2, 2 GPUs vs 1 (bf16)" s2b_1 s2b_2 5e-2 1e-2 3e-2
  cmp_losses "stage 2, 2 GPUs ZeRO-1 vs 1 (bf16)" s2b_1 s2b_2z 5e-2 1e-2 3e-2
  cmp_losses "stage 2, 2 GPUs ZeRO-1 bf16 all-reduce vs 1 (bf16)" s2b_1 s2b_2ar 5e-2 1e-2 3e-2
  cmp_losses "encoder trained, 2 GPUs vs 1 (fp32)" e_1 e_2 5e-3 1e-4 1e-3
  cmp_losses "encoder trained, 2 GPUs vs 1 (bf16)" eb_1 eb_2 5e-2 1e-2 3e-2
  cmp_losses "Whisper encoder trained, 2 GPUs vs 1 (fp32)" w_1 w_2 5e-3 1e-4 1e-3
  cmp_losses "Whisper encoder trained, 2 GPUs vs 1 (bf16)" wb_1 wb_2 5e-2 1e-2 3e-2
  cmp_losses "stage 2 NaN at step 3 on rank 1 only, 2 GPUs ZeRO-1 vs 1 GPU NaN (fp32)" nan_1 nan_2 5e-3 1e-4 1e-3
  cmp_losses "GPU SigLIP frozen, 2 GPUs (each its slice) vs 1 (fp32)" ge_1 ge_2 5e-2 1e-2 3e-2
  cmp_losses "GPU SigLIP frozen, 2 GPUs sliced vs every rank all (fp32)" ge_2all ge_2 5e-2 1e-2 3e-2
  cmp_losses "GPU SigLIP frozen, 2 GPUs fresh cache vs none (fp32)" ge_2 gec_2 5e-2 1e-2 3e-2
  cmp_losses "GPU SigLIP frozen, 2 GPUs filled cache vs none (fp32)" ge_2 gec2_2 5e-2 1e-2 3e-2
  cmp_losses "GPU Whisper frozen, 2 GPUs (each its slice) vs 1 (fp32)" gw_1 gw_2 5e-2 1e-2 3e-2
  if grep -q "loss is nan at step 3: step skipped" "$out/dpmm_nan_2.txt"; then echo "  rank 0 skipped step 3 (its own loss was finite): pass"
  else echo "  rank 0 did not skip step 3: FAIL"; rc=1; fi
  # stage 1 holds no RWKV gradients or moments on any rank (rank 0's line; every rank runs the same setup, and a
  # frozen trainer refuses to grow a gradient buffer): no RWKV moments, and less RWKV memory than stage 2 with ZeRO-1
  gib() { grep -o "[0-9.e-]* GiB of device memory on rank 0" "$out/dpmm_$1.txt" | cut -d' ' -f1; }
  if grep -q "data parallel.*RWKV Adam moments 0 GiB" "$out/dpmm_s1_2z.txt" &&
     awk -v a="$(gib s1_2z)" -v b="$(gib s2_2z)" 'BEGIN { exit !(a > 0 && b > a) }'; then
    echo "stage 1 ZeRO-1: no RWKV Adam moments, RWKV trainer $(gib s1_2z) GiB vs stage 2 $(gib s2_2z) GiB: pass"
  else echo "stage 1 ZeRO-1: RWKV gradients or moments allocated ($(gib s1_2z) vs $(gib s2_2z) GiB): FAIL"; rc=1; fi
  MRW_TRAIN_GPU_FP32=1 resume s2_rs s2_2z 1e-3 "$M" train "${S2[@]}" --gpus 2 --zero 1
  rm -rf "$tmp"
  exit $rc
) || rc=1
echo "train_dist_gpu: exit $rc"
exit $rc
