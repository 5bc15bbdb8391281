#!/usr/bin/env bash
# All the training and evaluation data of the shipped demo models, in one folder (default build/data):
#
#   recipes/gen_data.sh [--out DIR] [--small] [--jobs J]
#
#   DIR/scenes/    train.jsonl (20,000 images x 2 questions), test.jsonl (1,000 held-out images x 5 questions)
#   DIR/cifar/     train.jsonl (50,000), test.jsonl (10,000): CIFAR-10 as "What is in the image?" VQA
#   DIR/speech/    train.jsonl (20,000 espeak-ng utterances), test.jsonl (1,000, held-out voices)
#   DIR/fsdd/      train.jsonl (2,700), test.jsonl (300): the Free Spoken Digit Dataset's official split
# --small makes a tenth of the generated data (CIFAR and FSDD stay whole). Seeds are fixed (1), so every run
# makes the same files. See docs/DATA.md. Needs build/modrwkv (make), espeak-ng and sox.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/data; small=0; jobs=$(nproc 2>/dev/null || echo 2)
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --small) small=1; shift ;;
    --jobs) jobs=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "gen_data.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
scale() { [ "$small" = 1 ] && echo $(($1 / 10)) || echo "$1"; }
[ -x build/modrwkv ] || make -j"$jobs" tool
build/modrwkv gen-scenes --out "$out/scenes" --n "$(scale 20000)" --seed 1 --questions 2
build/modrwkv gen-scenes --out "$out/scenes" --n "$(scale 1000)" --seed 1 --questions 5 --split test
recipes/gen_cifar_vqa.sh --out "$out/cifar" --split train
recipes/gen_cifar_vqa.sh --out "$out/cifar" --split test
recipes/gen_speech.sh --out "$out/speech" --n "$(scale 20000)" --seed 1 --jobs "$jobs"
recipes/gen_speech.sh --out "$out/speech" --n "$(scale 1000)" --seed 1 --split test --jobs "$jobs"
recipes/gen_fsdd.sh --out "$out/fsdd"
