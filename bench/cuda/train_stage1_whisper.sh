#!/usr/bin/env bash
# Samples/s of a real `modrwkv train --device cuda` audio stage-1 run (--train adapter, RWKV frozen) with the frozen
# Whisper encoder on the GPU (bf16): a micro-batch's clips in one forward (the default) against one clip per forward
# (MRW_TRAIN_GPU_ENCODER_CHUNK=1, the way before the batching). The encoder: a random Whisper-base-shaped encoder
# in the Hugging Face layout (bench/cuda/random_encoder.py whisper-base: 80 mels, 30 s windows of 1500 positions,
# d_model 512, 6 layers, 8 heads, FFN 2048; 20.6 M parameters); the language model: models/base/model-q4_0.gguf
# (byte-level RWKV-7 L4 C256) with a fresh v1 audio adapter; the data: N ASR records on the test clip (0.77 s, 39
# encoder rows kept; every record the same length, so that a micro-batch may hold several); no feature cache (every
# step reads, resamples, turns into log-mel and encodes its clips). Steady state: steps 5..STEPS from train.jsonl; the
# trainer's MRW_TRAIN_ENCODE_COUNT=1 line gives the whole run's seconds loading micro-batches (reading, log-mel, the
# encoder) and the part of them in the GPU encoder (gpu_encode_pending: copies, forwards, downloads).
#   bench/cuda/train_stage1_whisper.sh [N_RECORDS (256)] [BATCH (16)] [STEPS (16)] [THREADS (16)]   (CHUNKS="1 0": the
#                                      runs, MRW_TRAIN_GPU_ENCODER_CHUNK each; e.g. "0 1 0 1" to repeat them)
# Needs MODRWKV (default build-cuda/modrwkv) and GPULIBS (default build-cuda/gpulibs) as tests/cuda/*.sh.
set -u
cd "$(dirname "$0")/../.."
. bench/cuda/lib_bench.sh
N=${1:-256}; B=${2:-16}; STEPS=${3:-16}; TH=${4:-16}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
python3 bench/cuda/random_encoder.py whisper-base "$tmp/enc" || exit 1
cp tests/fixtures/modrwkv/media/speech.wav "$tmp/"
for i in $(seq "$N"); do printf '{"audio": "speech.wav", "text": "record %d says hello"}\n' "$i"; done > "$tmp/asr.jsonl"
echo "data: $N records of one 0.77 s clip; batch $B, $STEPS steps, -t $TH; $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
i=0
for chunk in ${CHUNKS:-1 0}; do
  i=$((i + 1)) # MRW_TRAIN_GPU_ENCODER_CHUNK: 1 clip per forward, 0 (unset: the micro-batch's clips at once)
  MRW_TRAIN_ENCODE_COUNT=1 MRW_TRAIN_GPU_ENCODER_CHUNK=$chunk "$M" train -m models/base/model-q4_0.gguf --vocab bytes --encoder "$tmp/enc" \
    --adapter v1 --train adapter --data "$tmp/asr.jsonl" --batch "$B" --ctx-len 256 --steps "$STEPS" --lr 1e-3 \
    -t "$TH" --no-progress --device cuda --out "$tmp/run_$i" > "$tmp/log_$i" 2>&1 ||
    { echo "run $i (chunk $chunk) failed:"; tail -5 "$tmp/log_$i"; exit 1; }
  grep -h "Whisper encoder\|media encoded" "$tmp/log_$i" | cut -c1-250
  steady_rate "$tmp/run_$i" "$B" "$STEPS" \
    "stage 1, frozen Whisper on the GPU, $([ "$chunk" = 1 ] && echo '1 clip per forward' || echo 'the micro-batch in one forward')"
done
