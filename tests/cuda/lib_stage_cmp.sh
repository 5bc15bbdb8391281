# Shared by the GPU-vs-CPU stage scripts (train_mm_gpu.sh, train_audio_gpu.sh, train_enc_gpu.sh): sourced after the
# script sets P (its log prefix: mm, au, enc) and STEPS (the steps every compared run logs). Sets M, out, libs, MM, tmp,
# rc and the helpers below; goes to the repository root.
set -u
cd "$(dirname "$0")/../.."
M=${MODRWKV:-build-cuda/modrwkv}
out=${OUT:-cuda-out}; mkdir -p "$out"
libs=${GPULIBS:-build-cuda/gpulibs}
[ -d "$libs" ] && export LD_LIBRARY_PATH="$(cd "$libs" && pwd):${LD_LIBRARY_PATH:-}"
MM=tests/fixtures/modrwkv
# Two GPU runs of the same step must be comparable bit for bit (the cache-vs-no-cache rows at 1e-5, the resumed runs):
# with GEMM tuning on, each process times every GEMM shape's candidate algorithms and keeps the fastest, and two
# processes can keep different ones (rounding-level differences that training amplifies: 4.4e-3 after 12 bf16 steps
# on one H100). So these scripts run the heuristic's algorithm; test_train_gpu, train_cli_gpu.sh and the benches keep
# tuning on. MRW_GEMM_TUNE=1 in the caller's environment overrides this.
export MRW_GEMM_TUNE=${MRW_GEMM_TUNE:-0}
tmp=$(mktemp -d)
rc=0
# q IMAGE QUESTION ANSWER: one image record
q() { printf '{"image": "%s", "conversations": [{"from": "human", "value": "<image>\\n%s"}, {"from": "gpt", "value": "%s"}]}\n' "$@"; }
# image_records: six records on the three fixture images (copied into $tmp)
image_records() {
  cp $MM/media/image_a.png $MM/media/image_b.png $MM/media/image_32.png "$tmp/"
  q image_a.png "What is in the picture?" "A red square on a dark field."
  q image_b.png "Describe the image." "Two shapes, one blue and one green."
  q image_32.png "What colour dominates?" "Mostly grey."
  q image_b.png "How many shapes?" "Two."
  q image_a.png "Is it bright?" "No, it is dark around the square."
  q image_32.png "Say something about it." "It is a small test image."
}
# run NAME ARGS...: one training run into $tmp/NAME, its stderr in $out/${P}_NAME.txt
run() { local n=$1; shift
  if "$@" --out "$tmp/$n" > "$out/${P}_$n.txt" 2>&1; then :; else echo "run $n failed:"; tail -5 "$out/${P}_$n.txt"; rc=1; fi; }
G32() { MRW_TRAIN_GPU_FP32=1 "$@"; }
losses() { grep -o '"loss":[0-9.eE+-]*' "$tmp/$1/train.jsonl" 2>/dev/null | cut -d: -f2; }
norms() { grep -o '"grad_norm":[0-9.eE+-]*' "$tmp/$1/train.jsonl" 2>/dev/null | cut -d: -f2; }
# cmp_losses LABEL A B TOL TOL1 TOLG: relative difference of B's loss against A's <= TOL at every one of the STEPS
# steps, of the first step's loss (the forward from the same weights) <= TOL1, of its gradient norm (before clipping:
# every trained tensor's gradient, the joint clip's input) <= TOLG; appended to $out/${P}_losses.txt
cmp_losses() {
  paste <(losses "$2") <(losses "$3") <(norms "$2") <(norms "$3") | awk -v l="$1" -v a="$2" -v b="$3" -v tol="$4" \
      -v t1="$5" -v tg="$6" -v steps="$STEPS" '
    function rd(x, y) { d = (y - x) / x; return d < 0 ? -d : d }
    { n++; d = rd($1, $2); if (d > m) m = d; if (n == 1) { f = d; g = rd($3, $4); g1 = $3 " / " $4 }
      s = s sprintf(" %.5f/%.5f", $1, $2) }
    END { okk = n == steps && m <= tol && f <= t1 && g <= tg
          printf "%-46s %2d steps  max rel diff %.2e (tol %.0e); step 1: loss %.2e (tol %.0e), grad norm %.2e (%s) (tol %.0e) %s\n",
                 l, n, m, tol, f, t1, g, g1, tg, okk ? "pass" : "FAIL"
          printf "    %s vs %s:%s\n", a, b, s; exit !okk }' | tee -a "$out/${P}_losses.txt"
  [ "${PIPESTATUS[1]}" -eq 0 ] || rc=1
}
: > "$out/${P}_losses.txt"
# same_headers A:B ...: the safetensors header (tensor names, dtypes, shapes, offsets, metadata) of run B's checkpoint
# equals run A's (a GPU checkpoint is the CPU's bundle: the options record holds no device)
header() { local n; n=$(od -An -tu8 -N8 "$1" | tr -d ' '); tail -c +9 "$1" | head -c "$n"; }
same_headers() { local p a b
  for p in "$@"; do
    a=${p%%:*}; b=${p##*:}
    if cmp -s <(header "$tmp/$a/model.safetensors") <(header "$tmp/$b/model.safetensors"); then
      echo "checkpoint header $b = $a: pass"
    else echo "checkpoint header $b != $a: FAIL"; rc=1; fi
  done; }
# resume NAME REF TOL CMD...: CMD killed after step RESUME_AT (checkpoints every RESUME_AT/2 steps), then resumed; its
# last logged loss within TOL of run REF's (uninterrupted), with STEPS log lines
resume() { local n=$1 ref=$2 tol=$3 every=$((RESUME_AT / 2)); shift 3
  ( MRW_TRAIN_KILL_AFTER_STEP=$RESUME_AT "$@" --save-every $every --out "$tmp/$n" > "$out/${P}_$n.txt" 2>&1 ) 2> /dev/null
  "$@" --save-every $every --resume --out "$tmp/$n" >> "$out/${P}_$n.txt" 2>&1 ||
    { echo "resume $n failed"; tail -3 "$out/${P}_$n.txt"; rc=1; }
  local a b k; a=$(losses "$ref" | tail -1); b=$(losses "$n" | tail -1); k=$(losses "$n" | wc -l)
  awk -v n="$n" -v a="$a" -v b="$b" -v k="$k" -v tol="$tol" -v steps="$STEPS" 'BEGIN { d = (a - b) / a; if (d < 0) d = -d;
    printf "resume %s: %d log lines, last loss %s vs %s uninterrupted (rel diff %.2e, tol %.0e) %s\n", n, k, b, a, d, tol,
    (k == steps && d <= tol) ? "pass" : "FAIL"; exit !(k == steps && d <= tol) }' || rc=1
}
