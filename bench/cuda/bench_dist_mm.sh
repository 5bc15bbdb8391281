#!/usr/bin/env bash
# Weak scaling of a ModRWKV stage-2 step through the CLI (docs/DISTRIBUTED.md, "The ModRWKV stages"): `modrwkv train
# --device cuda --train adapter,rwkv` on 1 GPU at --batch B and on N GPUs at --batch N*B (B per GPU), the same model
# (--init LAYERS,WIDTH, byte vocabulary, the test SigLIP fixture frozen on the GPU encoder, a v1 adapter), image
# records with long answers (each sample about CTX tokens). Step time = the mean wall time of the logged steps after
# the first WARM (train.jsonl's elapsed_s: data loading, encoding, forward, backward, collectives, Adam; not the final
# checkpoint); samples/s and tokens/s of all GPUs; efficiency = samples/s(N) / (N x samples/s(1)).
# ENC=siglip2-base: a random SigLIP2-base-shaped encoder (bench/cuda/random_encoder.py; 256 tokens of width 768, 12
# layers) instead of the test fixture; TRAIN=adapter: stage 1 (RWKV frozen) instead of stage 2; BEFORE=1 adds an N-GPU
# row with MRW_TRAIN_ENCODE_ALL=1 (every rank encodes the whole global micro-batch, as before the ranks encoded only
# their slices).
#   bench/cuda/bench_dist_mm.sh        (MODRWKV, GPULIBS, MRW_NCCL_LIB; GPUS=2 BATCH=16 LAYERS=12 WIDTH=768 CTX=1024
#                                       STEPS=12 WARM=2 ENC=fixture TRAIN=adapter,rwkv BEFORE=0 may be set)
set -u
cd "$(dirname "$0")/../.."
M=${MODRWKV:-build-cuda/modrwkv}
libs=${GPULIBS:-$(dirname "$M")/gpulibs}
[ -d "$libs" ] && export LD_LIBRARY_PATH="$(cd "$libs" && pwd):${LD_LIBRARY_PATH:-}"
if [ -z "${MRW_NCCL_LIB:-}" ]; then # NCCL from the Python package nvidia-nccl-cu13 (PyTorch's)
  d=$(python3 -c "import nvidia.nccl as n; print(list(n.__path__)[0])" 2>/dev/null)
  for f in "$d/lib/libnccl.so.2" /opt/torch/.venv/lib/python3*/site-packages/nvidia/nccl/lib/libnccl.so.2; do
    [ -f "$f" ] && { export MRW_NCCL_LIB="$f"; break; }
  done
fi
N=${GPUS:-2} B=${BATCH:-16} L=${LAYERS:-12} C=${WIDTH:-768} T=${CTX:-1024} S=${STEPS:-12} W=${WARM:-2}
MM=tests/fixtures/modrwkv
TR=${TRAIN:-adapter,rwkv}
tmp=$(mktemp -d)
enc=$MM/siglip
if [ "${ENC:-fixture}" = siglip2-base ]; then
  python3 bench/cuda/random_encoder.py siglip2-base "$tmp/enc" || exit 1
  enc=$tmp/enc
fi
cp $MM/media/image_a.png $MM/media/image_b.png "$tmp/"
# 64 records: an image and an answer of about CTX - 60 bytes (windows of the docs' letters, no JSON escapes)
cat docs/*.md | tr -cd 'a-zA-Z .,\n' | tr '\n' ' ' | tr -s ' ' |
  awk -v n=$((T - 60)) '{ for (i = 0; i < 64; i++)
    printf "{\"image\": \"image_%s.png\", \"conversations\": [{\"from\": \"human\", \"value\": \"<image>\\nDescribe it.\"}, {\"from\": \"gpt\", \"value\": \"%s\"}]}\n",
      i % 2 ? "a" : "b", substr($0, 1 + i * 997 % (length($0) - n), n) }' > "$tmp/data.jsonl"
rc=0
printf "%s, L%s C%s, ctx %s, %s per GPU, encoder %s\n" "$([ "$TR" = adapter ] && echo "stage 1 (adapter)" ||
  echo "stage 2 (adapter + RWKV)")" "$L" "$C" "$T" "$B" "${ENC:-fixture}"
printf "%-9s %-6s %9s %10s %11s %11s\n" GPUs batch "step ms" samples/s tokens/s efficiency
base=
runs=(1 "$N"); [ "${BEFORE:-0}" = 1 ] && runs=(1 "${N}all" "$N")
for r in "${runs[@]}"; do
  g=${r%all}
  args=(--init "$L,$C" --vocab bytes --encoder "$enc" --adapter v1 --train "$TR" --data "$tmp/data.jsonl"
        --batch $((g * B)) --ctx-len "$T" --steps "$S" --lr 1e-4 --seed 7 -t 4 --no-progress --device cuda)
  [ "$g" -gt 1 ] && args+=(--gpus "$g")
  if ! MRW_TRAIN_ENCODE_COUNT=1 MRW_TRAIN_ENCODE_ALL=$([ "$r" != "$g" ] && echo 1 || echo 0) "$M" train "${args[@]}" --out "$tmp/r$r" \
       > "$tmp/r$r.txt" 2>&1; then
    echo "$r GPUs: failed"; tail -3 "$tmp/r$r.txt"; rc=1; continue
  fi
  row=$(awk -v w="$W" -v s="$S" -F'[:,]' '{ for (i = 1; i < NF; i++) { if ($i == "\"elapsed_s\"") e[NR] = $(i + 1);
                                                                   if ($i == "\"tokens\"") k[NR] = $(i + 1) } }
      END { dt = (e[s] - e[w]) / (s - w); print dt, (k[s] - k[w]) / (s - w) / dt }' "$tmp/r$r/train.jsonl")
  set -- $row
  sps=$(awk -v dt="$1" -v b=$((g * B)) 'BEGIN { print b / dt }')
  [ -z "$base" ] && base=$sps
  awk -v g="$g" -v r="$([ "$r" != "$g" ] && echo "$g (all)" || echo "$g")" -v b=$((g * B)) -v dt="$1" -v tps="$2" \
    -v sps="$sps" -v base="$base" \
    'BEGIN { printf "%-9s %-6d %9.1f %10.1f %10.0fk %10.1f%%\n", r, b, dt * 1000, sps, tps / 1000, 100 * sps / (g * base) }'
done
grep -h "data parallel\|on the GPU (\|media encoded" "$tmp"/r*.txt | cut -c1-250
rm -rf "$tmp"
exit $rc
