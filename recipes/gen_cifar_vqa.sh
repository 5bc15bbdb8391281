#!/usr/bin/env bash
# CIFAR-10 as visual question answering: LLaVA JSONL records whose answer is the class name.
#
#   recipes/gen_cifar_vqa.sh --out DIR [--tar ../shared/data/images/cifar10-train.tar.gz] [--split train|test]
#                            [--max N]
#
# Extracts the JPEG files (train/<class>/NNNN.jpg, test/<class>/NNNN.jpg) into DIR and writes DIR/SPLIT.jsonl:
#   {"id": "cifar-train-00000", "image": "train/airplane/0001.jpg", "conversations": [{"from": "human",
#    "value": "<image>\nWhat is in the image?"}, {"from": "gpt", "value": "airplane"}], "question_type": "class"}
# Image paths are relative to DIR. The question is one of six phrasings, chosen by the record number; the
# answer is always one of airplane automobile bird cat deer dog frog horse ship truck. Records are in the
# order of the sorted file names (deterministic; the trainer shuffles). --split picks the tar's top folder and
# the default tar (cifar10-test.tar.gz for test); --max N keeps the first N files of each class.
# Only tar, sort and awk are needed.
set -euo pipefail
split=train; tar=""; out=""; max=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --tar) tar=$2; shift 2 ;;
    --split) split=$2; shift 2 ;;
    --max) max=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "gen_cifar_vqa.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$split" in train|test) ;; *) echo "gen_cifar_vqa.sh: --split is train or test" >&2; exit 2 ;; esac
[[ "$max" =~ ^[0-9]+$ ]] || { echo "gen_cifar_vqa.sh: --max expects a number" >&2; exit 2; }
[ -n "$tar" ] || tar=${MRW_SHARED:-../shared}/data/images/cifar10-$split.tar.gz
[ -n "$out" ] || { echo "gen_cifar_vqa.sh: give the output directory with --out DIR" >&2; exit 2; }
[ -f "$tar" ] || { echo "gen_cifar_vqa.sh: $tar: no such file" >&2; exit 2; }
mkdir -p "$out"
tar -xzf "$tar" -C "$out" "$split/"
(cd "$out" && find "$split" -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \)) | LC_ALL=C sort |
awk -v sp="$split" -v max="$max" -v tmp="$out/$split.jsonl.tmp" '
  BEGIN {
    nc = split("airplane automobile bird cat deer dog frog horse ship truck", C, " ")
    for (i = 1; i <= nc; i++) known[C[i]] = 1
    Q[0] = "What is in the image?"; Q[1] = "What object is shown in this picture?"
    Q[2] = "What is this a photo of?"; Q[3] = "Which class does this image belong to?"
    Q[4] = "What do you see in the image?"; Q[5] = "Name the main object in the image."
  }
  {
    n = split($0, p, "/"); cls = p[2]
    if (n != 3 || !(cls in known)) { printf "gen_cifar_vqa.sh: skipping %s (not SPLIT/<class>/file)\n", $0 > "/dev/stderr"; next }
    if (max > 0 && per[cls] >= max) next
    per[cls]++
    printf "{\"id\":\"cifar-%s-%05d\",\"image\":\"%s\",\"conversations\":[{\"from\":\"human\",\"value\":\"<image>\\n%s\"},{\"from\":\"gpt\",\"value\":\"%s\"}],\"question_type\":\"class\"}\n", sp, k, $0, Q[k % 6], cls > tmp
    k++
  }
  END {
    if (k == 0) { print "gen_cifar_vqa.sh: no images found" > "/dev/stderr"; exit 1 }
    printf "cifar-%s: %d records in %s.jsonl:", sp, k, sp
    for (i = 1; i <= nc; i++) printf " %s %d", C[i], per[C[i]]
    printf "\n"
  }'
mv "$out/$split.jsonl.tmp" "$out/$split.jsonl"
