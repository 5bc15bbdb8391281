#!/usr/bin/env bash
# `modrwkv train --device cuda` on the ModRWKV image stages against `--device cpu` (GPU machine). A tiny run: the
# test SigLIP fixture (E 48, 16 patch rows per 32 px image) frozen, an RWKV-7 of 2 x 128 (byte vocabulary; 30 CPU
# steps of text first), 6 image records, batch 2, 12 steps, features through --feature-cache (the CPU run fills it,
# the GPU runs read it).
#   stage 1 (--train adapter, RWKV frozen), v1 adapter: CPU vs GPU in fp32 mode (MRW_TRAIN_GPU_FP32=1: the RWKV part
#     in fp32; the adapter has bf16 GEMMs in every mode) and in bf16; the GPU without the cache (the CPU encoder per
#     batch) gives the same losses as with it;
#   stage 1 with a v2 adapter (--adapter-scale 4, hidden 192): CPU vs GPU fp32;
#   stage 2 (--train adapter,rwkv) from the CPU's stage-1 model: CPU vs GPU fp32 and bf16, and bf16 with --ckpt;
#   the GPU's checkpoints have the CPU's safetensors header (names, shapes, dtypes, metadata) and load in
#     `modrwkv chat --image`; a GPU run killed after step 8 and resumed ends where the uninterrupted run ends
#     (stage 1 bf16 and stage 2 fp32); an unsupported option (--train encoder without the adapter) is refused by name
#   (the encoder stages: tests/cuda/train_enc_gpu.sh).
# Those runs keep the CPU encoder (--encoder-device cpu). The block at the end compares the frozen encoder on the GPU
# (--encoder-device cuda, the default with --device cuda: bf16, a micro-batch's images in one forward) against them.
# Tolerances, |gpu - cpu| / cpu: the first step's loss 1e-3 in fp32 mode, 1e-2 in bf16, its gradient norm 3e-3 / 3e-2
# (the adapter's gradients come from bf16 GEMMs: ~3e-3 norm error, docs/CUDA.md); the loss of every step 5e-3 (stage 1) / 1e-2 (stage 2) in fp32 mode, 3e-2 / 5e-2 in bf16. The trajectories drift apart with the
# steps (the adapter's bf16 roundings in every mode; in stage 2 Adam's first updates are ~lr x sign(g) for every RWKV
# weight, so a rounding that flips a small gradient's sign moves that weight by 2 lr), hence stage 2 at lr 1e-3 and
# its looser per-step bound. --ckpt within 1e-2 of the plain bf16 run; cache vs no cache 1e-5; resume 1e-4 (stage 1),
# 1e-3 (stage 2: the embedding gradient's atomics).
# Needs MODRWKV (default build-cuda/modrwkv, make CUDA=1 tool) and GPULIBS (default build-cuda/gpulibs: the shared
# libraries that binary needs on a bare GPU machine).
#   tests/cuda/train_mm_gpu.sh            (logs in $OUT or ./cuda-out; MEMCHECK=1 adds a compute-sanitizer run)
P=mm; RESUME_AT=8; STEPS=12
. "$(dirname "$0")/lib_stage_cmp.sh"
image_records > "$tmp/data.jsonl"
{ echo '{"text": "A red square on a dark field. Two shapes, one blue and one green. Mostly grey."}'
  echo '{"text": "How many shapes? Two. Is it bright? No, it is dark around the square. It is a small test image."}'; } \
  > "$tmp/text.jsonl"
# the language model: a fresh 2 x 128 RWKV-7 has zero output projections (the reference init), through which no
# gradient reaches the adapter; 30 CPU steps of text make it a working one
"$M" train --init 2,128 --vocab bytes --data "$tmp/text.jsonl" --batch 2 --ctx-len 128 --steps 30 --lr 3e-3 --seed 7 \
  -t 4 --no-progress --out "$tmp/lm" > "$out/mm_lm.txt" 2>&1 || { echo "LM run failed"; tail -3 "$out/mm_lm.txt"; rc=1; }
# (--encoder-device cpu: the rows up to the GPU-encoder block below compare like with like, the CPU encoder's features)
C=(--vocab bytes --data "$tmp/data.jsonl" --batch 2 --ctx-len 128 --steps 12 --lr 3e-3 --seed 7 -t 4 --no-progress
   --encoder-device cpu)
S1=(-m "$tmp/lm/model.safetensors" --encoder $MM/siglip --adapter v1 --train adapter --feature-cache "$tmp/fc" "${C[@]}")
S1NC=(-m "$tmp/lm/model.safetensors" --encoder $MM/siglip --adapter v1 --train adapter "${C[@]}")
S1E=(-m "$tmp/lm/model.safetensors" --encoder $MM/siglip --adapter v1 --train encoder "${C[@]}")
V2=(-m "$tmp/lm/model.safetensors" --encoder $MM/siglip --adapter-scale 4 --train adapter --feature-cache "$tmp/fc" "${C[@]}")
S2=(-m "$tmp/s1_cpu/model.safetensors" --train adapter,rwkv --feature-cache "$tmp/fc" "${C[@]}" --lr 1e-3)
run s1_cpu "$M" train "${S1[@]}"
run s1_gpu32 G32 "$M" train "${S1[@]}" --device cuda
run s1_gpu "$M" train "${S1[@]}" --device cuda
run s1_gpunc "$M" train "${S1NC[@]}" --device cuda
run v2_cpu "$M" train "${V2[@]}"
run v2_gpu32 G32 "$M" train "${V2[@]}" --device cuda
run s2_cpu "$M" train "${S2[@]}"
run s2_gpu32 G32 "$M" train "${S2[@]}" --device cuda
run s2_gpu "$M" train "${S2[@]}" --device cuda
run s2_gpuck "$M" train "${S2[@]}" --device cuda --ckpt
grep -h "GPU" "$out"/mm_s1_gpu.txt "$out"/mm_s2_gpu32.txt "$out"/mm_v2_gpu32.txt
cmp_losses "stage 1 v1, GPU fp32 vs CPU" s1_cpu s1_gpu32 5e-3 1e-3 3e-3
cmp_losses "stage 1 v1, GPU bf16 vs CPU" s1_cpu s1_gpu 3e-2 1e-2 3e-2
cmp_losses "stage 1 v1, GPU no cache vs cache" s1_gpu s1_gpunc 1e-5 1e-5 1e-5
cmp_losses "stage 1 v2 (hidden 192), GPU fp32 vs CPU" v2_cpu v2_gpu32 5e-3 1e-3 3e-3
cmp_losses "stage 2 v1, GPU fp32 vs CPU" s2_cpu s2_gpu32 1e-2 1e-3 3e-3
cmp_losses "stage 2 v1, GPU bf16 vs CPU" s2_cpu s2_gpu 5e-2 1e-2 3e-2
cmp_losses "stage 2 v1, GPU bf16 --ckpt vs bf16" s2_gpu s2_gpuck 1e-2 1e-2 1e-2
# the same bundle: the safetensors header (tensor names, dtypes, shapes, offsets, metadata) of the GPU's checkpoint
# equals the CPU's (the options record holds no device)
same_headers s1_cpu:s1_gpu s2_cpu:s2_gpu32 v2_cpu:v2_gpu32
for n in s1_gpu s2_gpu32 v2_gpu32; do
  if "$M" chat -m "$tmp/$n/model.safetensors" --image "$tmp/image_a.png" -n 4 -q "What is it?" > "$out/mm_chat_$n.txt" 2>&1; then
    echo "modrwkv chat loads the $n checkpoint: pass"
  else echo "modrwkv chat on the $n checkpoint: FAIL"; tail -3 "$out/mm_chat_$n.txt"; rc=1; fi
done
# --resume on the GPU: killed after step 8 (checkpoints every 4 steps), resumed
resume s1_rs s1_gpu 1e-4 "$M" train "${S1[@]}" --device cuda
MRW_TRAIN_GPU_FP32=1 resume s2_rs s2_gpu32 1e-3 "$M" train "${S2[@]}" --device cuda
# --- the frozen encoder on the GPU (--encoder-device cuda, the default with --device cuda; bf16, a micro-batch's
# images in one forward) against the CPU encoder: stage 1 in fp32 mode (so the difference is the encoder's bf16) and
# bf16, stage 2, the GPU encoder without the cache vs with it (1e-5), records of two images, batch 3 (6 images in one
# forward) vs the CPU, and 4 + 2 images per forward (MRW_TRAIN_GPU_ENCODER_CHUNK=4) vs 6 (1e-3: cuBLAS may pick other
# kernels for another row count); the GPU's features get their own cache (an id ending in -cuda-bf16), the CPU's stay;
# the checkpoint header is the CPU run's; a resumed run ends where the uninterrupted one does. Tolerances (set before
# the first run): those of the bf16 rows above (3e-2 / 1e-2 / 3e-2, stage 2 5e-2 / 1e-2 / 3e-2) ---
EG=(--encoder-device cuda)
run s1_gpue32 G32 "$M" train "${S1[@]}" --device cuda "${EG[@]}"
run s1_gpue "$M" train "${S1[@]}" --device cuda "${EG[@]}"
run s1_gpuenc "$M" train "${S1NC[@]}" --device cuda "${EG[@]}"
run s2_gpue "$M" train "${S2[@]}" --device cuda "${EG[@]}"
cp $MM/media/image_a.png "$tmp/image_c.png"
two() { printf '{"image": ["%s", "%s"], "conversations": [{"from": "human", "value": "<image>\\n<image>\\n%s"}, {"from": "gpt", "value": "%s"}]}\n' "$@"; }
{ two image_a.png image_b.png "Compare them." "One square, then two shapes."
  two image_32.png image_a.png "Which is brighter?" "The first is grey, the second dark."
  two image_b.png image_c.png "Same or not?" "Not the same."
  two image_c.png image_32.png "Describe both." "A red square and grey noise."
  two image_b.png image_a.png "How many images?" "Two."
  two image_32.png image_b.png "Colours?" "Grey, then blue and green."; } > "$tmp/two.jsonl"
TW=(-m "$tmp/lm/model.safetensors" --encoder $MM/siglip --adapter v1 --train adapter --vocab bytes --data "$tmp/two.jsonl"
    --batch 3 --ctx-len 128 --steps 12 --lr 3e-3 --seed 7 -t 4 --no-progress)
run tw_cpu "$M" train "${TW[@]}"
run tw_gpue "$M" train "${TW[@]}" --device cuda "${EG[@]}"
MRW_TRAIN_GPU_ENCODER_CHUNK=4 run tw_gpue4 "$M" train "${TW[@]}" --device cuda "${EG[@]}"
if grep -q "frozen SigLIP encoder on the GPU" "$out/mm_s1_gpue.txt" && grep -q "up to 9 images per forward" "$out/mm_tw_gpue.txt" &&
   grep -q "up to 4 images per forward" "$out/mm_tw_gpue4.txt" && ! grep -q "encoder on the GPU" "$out/mm_s1_gpu.txt"; then
  echo "GPU encoder used with --encoder-device cuda (a queue of 9 or 4 images per forward), not with cpu: pass"
else echo "GPU encoder messages: FAIL"; rc=1; fi
grep -h "encoder on the GPU\|GPU encoder" "$out/mm_s1_gpue.txt" "$out/mm_tw_gpue.txt"
# the cache: one directory per encoder file and device: the SigLIP fixture's and the stage-1 bundle's (stage 2), each
# twice (CPU; GPU: the id + -cuda-bf16), each holding the 3 images
ls "$tmp/fc" > "$out/mm_fc_dirs.txt"
fc_ok=0
for gd in $(grep -- '-cuda-bf16$' "$out/mm_fc_dirs.txt"); do
  [ -d "$tmp/fc/${gd%-cuda-bf16}" ] && [ "$(ls "$tmp/fc/$gd" | wc -l)" = 3 ] &&
    [ "$(ls "$tmp/fc/${gd%-cuda-bf16}" | wc -l)" = 3 ] && fc_ok=$((fc_ok + 1))
done
if [ $fc_ok = 2 ] && [ "$(wc -l < "$out/mm_fc_dirs.txt")" = 4 ]; then
  echo "feature cache: the GPU encoder's features in their own 2 directories (3 entries each), the CPU's kept: pass"
else echo "feature cache directories: FAIL ($(tr '\n' ' ' < "$out/mm_fc_dirs.txt"))"; rc=1; fi
cmp_losses "stage 1 v1, GPU encoder, GPU fp32 mode vs CPU" s1_cpu s1_gpue32 3e-2 1e-2 3e-2
cmp_losses "stage 1 v1, GPU encoder, GPU bf16 vs CPU" s1_cpu s1_gpue 3e-2 1e-2 3e-2
cmp_losses "stage 1 v1, GPU encoder vs CPU encoder (GPU bf16)" s1_gpu s1_gpue 3e-2 1e-2 3e-2
cmp_losses "stage 1 v1, GPU encoder, no cache vs cache" s1_gpue s1_gpuenc 1e-5 1e-5 1e-5
cmp_losses "stage 2 v1, GPU encoder, GPU bf16 vs CPU" s2_cpu s2_gpue 5e-2 1e-2 3e-2
cmp_losses "2 images a record, 6 per forward, GPU vs CPU" tw_cpu tw_gpue 3e-2 1e-2 3e-2
cmp_losses "2 images a record, 4 + 2 per forward vs 6" tw_gpue tw_gpue4 1e-3 1e-3 1e-3
same_headers s1_cpu:s1_gpue s2_cpu:s2_gpue
resume s1e_rs s1_gpue 1e-4 "$M" train "${S1[@]}" --device cuda "${EG[@]}"
# MEMCHECK=1: one stage-2 run of 3 steps (bf16) under compute-sanitizer memcheck (the adapter's row scatter / gather,
# the joint clip, the injected rows in the RWKV trainer)
if [ "${MEMCHECK:-0}" = 1 ]; then
  compute-sanitizer --tool memcheck --error-exitcode 3 "$M" train "${S2[@]}" --steps 3 --device cuda --out "$tmp/san" \
    > "$out/mm_memcheck.txt" 2>&1
  r=$?; echo "memcheck, stage 2 (3 steps): exit $r, $(grep -m1 'ERROR SUMMARY' "$out/mm_memcheck.txt")"
  [ $r -eq 0 ] && grep -q "ERROR SUMMARY: 0 errors" "$out/mm_memcheck.txt" || rc=1
  # the GPU encoder's queue and batched forward (2 images a record, 4 + 2 per forward), 3 steps
  MRW_TRAIN_GPU_ENCODER_CHUNK=4 compute-sanitizer --tool memcheck --error-exitcode 3 "$M" train "${TW[@]}" --steps 3 \
    --device cuda "${EG[@]}" --out "$tmp/san_e" > "$out/mm_memcheck_e.txt" 2>&1
  r=$?; echo "memcheck, GPU encoder (3 steps): exit $r, $(grep -m1 'ERROR SUMMARY' "$out/mm_memcheck_e.txt")"
  [ $r -eq 0 ] && grep -q "ERROR SUMMARY: 0 errors" "$out/mm_memcheck_e.txt" || rc=1
fi
# a refusal names the option (and writes nothing)
if "$M" train "${S1E[@]}" --device cuda --out "$tmp/x" > "$out/mm_refuse.txt" 2>&1; then
  echo "--train encoder --device cuda: ran, FAIL"; rc=1
elif grep -q -- "--train ...,encoder needs the adapter trained too on the GPU" "$out/mm_refuse.txt"; then
  echo "refusal of --train encoder (without the adapter): pass"
else echo "refusal of --train ...,encoder: unexpected message: $(cat "$out/mm_refuse.txt")"; rc=1; fi
rm -rf "$tmp"
echo "train_mm_gpu: exit $rc"
exit $rc
