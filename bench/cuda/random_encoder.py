#!/usr/bin/env python3
# A random encoder in the Hugging Face layout for the GPU benchmarks (bench/cuda/*.sh): the shape of a released one,
# weights from numpy's generator (seed 7, std fan_in^-1/2), float32 safetensors + config.json + preprocessor_config.json.
#   python3 bench/cuda/random_encoder.py siglip2-base DIR   SigLIP2-base vision tower: 256 px, patch 16 (256 tokens),
#                                                            width 768, 12 layers, 12 heads, MLP 3072 (85.8 M parameters)
#   python3 bench/cuda/random_encoder.py whisper-base DIR   Whisper-base encoder: 80 mels, 30 s (3000 frames -> 1500
#                                                            positions), d_model 512, 6 layers, 8 heads, FFN 2048 (20.6 M)
import json, os, sys
import numpy as np

kind, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(7)
T = {}
def put(name, shape, std=None, value=0.0):
    T[name] = rng.standard_normal(shape, dtype=np.float32) * std if std else np.full(shape, value, np.float32)

if kind == 'siglip2-base':
    S, P, D, L, H, FFN = 256, 16, 768, 12, 12, 3072
    G = S // P
    v = 'vision_model.'
    put(v + 'embeddings.patch_embedding.weight', [D, 3, P, P], std=(3 * P * P) ** -0.5)
    put(v + 'embeddings.patch_embedding.bias', [D])
    put(v + 'embeddings.position_embedding.weight', [G * G, D], std=D ** -0.5)
    for l in range(L):
        p = v + 'encoder.layers.%d.' % l
        for n in ('q', 'k', 'v', 'out'):
            put(p + 'self_attn.%s_proj.weight' % n, [D, D], std=D ** -0.5 * (0.5 if n == 'out' else 1.0))
            put(p + 'self_attn.%s_proj.bias' % n, [D])
        put(p + 'mlp.fc1.weight', [FFN, D], std=D ** -0.5); put(p + 'mlp.fc1.bias', [FFN])
        put(p + 'mlp.fc2.weight', [D, FFN], std=0.5 * FFN ** -0.5); put(p + 'mlp.fc2.bias', [D])
        for n in ('layer_norm1', 'layer_norm2'):
            put(p + n + '.weight', [D], value=1.0); put(p + n + '.bias', [D])
    put(v + 'post_layernorm.weight', [D], value=1.0); put(v + 'post_layernorm.bias', [D])
    config = {'architectures': ['SiglipVisionModel'], 'model_type': 'siglip_vision_model', 'hidden_size': D,
              'image_size': S, 'patch_size': P, 'num_hidden_layers': L, 'num_attention_heads': H,
              'intermediate_size': FFN, 'num_channels': 3, 'hidden_act': 'gelu_pytorch_tanh', 'layer_norm_eps': 1e-6,
              'torch_dtype': 'float32'}
    pre = {'image_processor_type': 'SiglipImageProcessor', 'do_resize': True, 'size': {'height': S, 'width': S},
           'resample': 2, 'do_rescale': True, 'rescale_factor': 1 / 255, 'do_normalize': True,
           'image_mean': [0.5, 0.5, 0.5], 'image_std': [0.5, 0.5, 0.5]}
elif kind == 'whisper-base':
    M, D, L, H, FFN, NP = 80, 512, 6, 8, 2048, 1500
    e = 'model.encoder.'
    put(e + 'conv1.weight', [D, M, 3], std=(3 * M) ** -0.5); put(e + 'conv1.bias', [D])
    put(e + 'conv2.weight', [D, D, 3], std=(3 * D) ** -0.5); put(e + 'conv2.bias', [D])
    put(e + 'embed_positions.weight', [NP, D], std=D ** -0.5)
    for l in range(L):
        p = e + 'layers.%d.' % l
        for n in ('q', 'k', 'v', 'out'):
            put(p + 'self_attn.%s_proj.weight' % n, [D, D], std=D ** -0.5 * (0.5 if n == 'out' else 1.0))
            if n != 'k':
                put(p + 'self_attn.%s_proj.bias' % n, [D])
        put(p + 'fc1.weight', [FFN, D], std=D ** -0.5); put(p + 'fc1.bias', [FFN])
        put(p + 'fc2.weight', [D, FFN], std=0.5 * FFN ** -0.5); put(p + 'fc2.bias', [D])
        for n in ('self_attn_layer_norm', 'final_layer_norm'):
            put(p + n + '.weight', [D], value=1.0); put(p + n + '.bias', [D])
    put(e + 'layer_norm.weight', [D], value=1.0); put(e + 'layer_norm.bias', [D])
    config = {'architectures': ['WhisperForConditionalGeneration'], 'model_type': 'whisper', 'd_model': D,
              'encoder_layers': L, 'encoder_attention_heads': H, 'encoder_ffn_dim': FFN, 'num_mel_bins': M,
              'max_source_positions': NP, 'activation_function': 'gelu', 'decoder_layers': 1,
              'decoder_attention_heads': H, 'decoder_ffn_dim': FFN, 'num_hidden_layers': L, 'vocab_size': 51865,
              'max_target_positions': 448, 'scale_embedding': False, 'torch_dtype': 'float32'}
    pre = {'feature_extractor_type': 'WhisperFeatureExtractor', 'feature_size': M, 'sampling_rate': 16000,
           'hop_length': 160, 'n_fft': 400, 'chunk_length': 30, 'n_samples': 480000, 'nb_max_frames': 3000,
           'padding_side': 'right', 'padding_value': 0.0, 'return_attention_mask': False}
else:
    sys.exit('kind: siglip2-base or whisper-base')

hdr, off = {}, 0
for k in sorted(T):
    hdr[k] = {'dtype': 'F32', 'shape': list(T[k].shape), 'data_offsets': [off, off + T[k].nbytes]}; off += T[k].nbytes
hb = json.dumps(hdr, separators=(',', ':')).encode(); hb += b' ' * (-len(hb) % 8)
with open(os.path.join(out, 'model.safetensors'), 'wb') as f:
    f.write(len(hb).to_bytes(8, 'little')); f.write(hb)
    for k in sorted(T): f.write(T[k].tobytes())
json.dump(config, open(os.path.join(out, 'config.json'), 'w'))
json.dump(pre, open(os.path.join(out, 'preprocessor_config.json'), 'w'))
print('%s encoder: %d parameters' % (kind, off // 4))
