#!/usr/bin/env bash
# Samples/s of a real `modrwkv train --device cuda` stage-1 run (--train adapter, RWKV frozen) with the frozen image
# encoder on the CPU (--encoder-device cpu) against the GPU (--encoder-device cuda, bf16, a micro-batch's images in
# one forward). The encoder: a random SigLIP2-base-shaped vision tower in the Hugging Face layout (256 px, patch 16:
# 256 tokens, width 768, 12 layers, 12 heads, MLP 3072; 85.8 M parameters, made with python3 + numpy); the language
# model: models/base/model-q4_0.gguf (byte-level RWKV-7 L4 C256); the data: N `modrwkv gen-scenes` images (64 px,
# resized to 256 by the processor), one question each; no feature cache (every step encodes its images). The rate
# is the steady state: steps 5..STEPS from train.jsonl's elapsed_s (the first steps include start-up). Results:
# docs/CUDA.md, "The frozen encoders on the GPU".
#   bench/cuda/train_stage1_encoder.sh [N_IMAGES (256)] [BATCH (16)] [STEPS (16)] [THREADS (16)]
# Needs MODRWKV (default build-cuda/modrwkv) and GPULIBS (default build-cuda/gpulibs) as tests/cuda/*.sh.
set -u
cd "$(dirname "$0")/../.."
M=${MODRWKV:-build-cuda/modrwkv}
libs=${GPULIBS:-build-cuda/gpulibs}
[ -d "$libs" ] && export LD_LIBRARY_PATH="$(cd "$libs" && pwd):${LD_LIBRARY_PATH:-}"
N=${1:-256}; B=${2:-16}; STEPS=${3:-16}; TH=${4:-16}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
python3 - "$tmp/enc" <<'PY' || exit 1
import json, os, sys
import numpy as np
out = sys.argv[1]; os.makedirs(out)
S, P, D, L, H, FFN = 256, 16, 768, 12, 12, 3072
G = S // P
rng = np.random.default_rng(7)
T = {}
def put(name, shape, std=None, value=0.0):
    a = rng.standard_normal(shape, dtype=np.float32) * std if std else np.full(shape, value, np.float32)
    T['vision_model.' + name] = a
put('embeddings.patch_embedding.weight', [D, 3, P, P], std=(3 * P * P) ** -0.5)
put('embeddings.patch_embedding.bias', [D])
put('embeddings.position_embedding.weight', [G * G, D], std=D ** -0.5)
for l in range(L):
    p = 'encoder.layers.%d.' % l
    for n in ('q', 'k', 'v', 'out'):
        put(p + 'self_attn.%s_proj.weight' % n, [D, D], std=D ** -0.5 * (0.5 if n == 'out' else 1.0))
        put(p + 'self_attn.%s_proj.bias' % n, [D])
    put(p + 'mlp.fc1.weight', [FFN, D], std=D ** -0.5); put(p + 'mlp.fc1.bias', [FFN])
    put(p + 'mlp.fc2.weight', [D, FFN], std=0.5 * FFN ** -0.5); put(p + 'mlp.fc2.bias', [D])
    for n in ('layer_norm1', 'layer_norm2'):
        put(p + n + '.weight', [D], value=1.0); put(p + n + '.bias', [D])
put('post_layernorm.weight', [D], value=1.0); put('post_layernorm.bias', [D])
hdr, off = {}, 0
for k in sorted(T):
    hdr[k] = {'dtype': 'F32', 'shape': list(T[k].shape), 'data_offsets': [off, off + T[k].nbytes]}; off += T[k].nbytes
hb = json.dumps(hdr, separators=(',', ':')).encode(); hb += b' ' * (-len(hb) % 8)
with open(os.path.join(out, 'model.safetensors'), 'wb') as f:
    f.write(len(hb).to_bytes(8, 'little')); f.write(hb)
    for k in sorted(T): f.write(T[k].tobytes())
json.dump({'architectures': ['SiglipVisionModel'], 'model_type': 'siglip_vision_model', 'hidden_size': D,
           'image_size': S, 'patch_size': P, 'num_hidden_layers': L, 'num_attention_heads': H,
           'intermediate_size': FFN, 'num_channels': 3, 'hidden_act': 'gelu_pytorch_tanh', 'layer_norm_eps': 1e-6,
           'torch_dtype': 'float32'}, open(os.path.join(out, 'config.json'), 'w'))
json.dump({'image_processor_type': 'SiglipImageProcessor', 'do_resize': True, 'size': {'height': S, 'width': S},
           'resample': 2, 'do_rescale': True, 'rescale_factor': 1 / 255, 'do_normalize': True,
           'image_mean': [0.5, 0.5, 0.5], 'image_std': [0.5, 0.5, 0.5]}, open(os.path.join(out, 'preprocessor_config.json'), 'w'))
print('encoder: %d parameters' % (off // 4))
PY
"$M" gen-scenes --out "$tmp/scenes" --n "$N" --seed 1 --split train --questions 1 --size 64 -q || exit 1
data="$tmp/scenes/train.jsonl"
echo "data: $data ($(wc -l < "$data") records); batch $B, $STEPS steps, -t $TH; $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null)"
for dev in cpu cuda; do
  "$M" train -m models/base/model-q4_0.gguf --vocab bytes --encoder "$tmp/enc" --adapter v1 --train adapter \
    --data "$data" --batch "$B" --ctx-len 512 --steps "$STEPS" --lr 1e-3 -t "$TH" --no-progress --device cuda \
    --encoder-device $dev --out "$tmp/run_$dev" > "$tmp/log_$dev" 2>&1 || { echo "run $dev failed:"; tail -5 "$tmp/log_$dev"; exit 1; }
  grep -h "encoder" "$tmp/log_$dev" | head -3
  grep -o '"elapsed_s":[0-9.]*' "$tmp/run_$dev/train.jsonl" | cut -d: -f2 | awk -v b="$B" -v dev="$dev" -v n="$STEPS" '
    { e[NR] = $1 } END { k = n - 4; r = k * b / (e[n] - e[4]);
      printf "stage 1, frozen encoder on the %s: %.1f samples/s (steps 5..%d: %.3f s a step; whole run %.1f s)\n",
             dev == "cuda" ? "GPU (bf16)" : "CPU", r, n, (e[n] - e[4]) / k, e[n] }'
done
