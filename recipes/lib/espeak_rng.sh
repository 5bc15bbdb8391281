# Sourced by recipes/gen_speech.sh and recipes/gen_spoken_vqa.sh: the espeak-ng voices of each split and the
# hashed-counter random numbers both generators draw from, kept in one place so that the held-out voices of
# the two test splits stay the same; and the checks of their common options.

# espeak_check_options NMAX: --n (1..NMAX), --seed, --jobs and --split (sets split_id) as both generators take
# them; the caller defines die.
espeak_check_options() {
  [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le "$1" ] || die "--n must be an integer in 1..$1"
  [[ "$seed" =~ ^[0-9]+$ ]] && [ ${#seed} -le 9 ] || die "--seed must be an integer in 0..999999999"
  [[ "$jobs" =~ ^[0-9]+$ ]] && [ "$jobs" -ge 1 ] && [ "$jobs" -le 256 ] || die "--jobs must be in 1..256"
  case "$split" in train) split_id=1 ;; test) split_id=2 ;; *) die "--split is train or test" ;; esac
}

# espeak_check_tools: espeak-ng and sox are installed.
espeak_check_tools() {
  command -v espeak-ng > /dev/null || die "espeak-ng is not installed (apt-get install espeak-ng)"
  command -v sox > /dev/null || die "sox is not installed (apt-get install sox)"
}
#
# espeak_voices SPLIT: BASES (language voices) and VARIANTS (voice variants) of SPLIT (train or test). The test
# split uses only voices the train split never uses: a test voice shares neither its accent nor its variant.
espeak_voices() {
  if [ "$1" = train ]; then
    BASES=(en en-us en-gb-scotland en-gb-x-gbclan en-gb-x-rp en-us-nyc de fr es pl sv)
    VARIANTS=(m1 m2 m3 m5 m6 m7 f1 f2 f4 f5 klatt klatt3 antonio belinda caleb david ed edward gustave john
              max michel paul pedro quincy rob robert steph victor grandpa norbert sandro shelby)
  else
    BASES=(en-029 en-gb-x-gbcwmd nl)
    VARIANTS=(m4 f3 klatt2 benjamin linda grandma travis)
  fi
}

# Random numbers: a counter hashed by the murmur3 finalizer (32-bit, exact in bash's 64-bit arithmetic).
# mix32 X sets H to the hash of X; seed a stream by setting S; rnd N sets R to a value in [0, N); pick ARRAY
# sets W to a random element.
R=0; S=0; H=0
mul32() { H=$(( ( ($1 & 0xffff) * $2 + (( ($1 >> 16) * ($2 & 0xffff) ) << 16) ) & 0xffffffff )); }
mix32() {
  H=$(( $1 ^ ($1 >> 16) )); mul32 $H 0x85ebca6b; H=$(( H ^ (H >> 13) )); mul32 $H 0xc2b2ae35; H=$(( H ^ (H >> 16) ))
}
rnd() { S=$(( (S + 0x9e3779b9) & 0xffffffff )); mix32 $S; R=$(( H % $1 )); }
pick() { local -n arr=$1; rnd ${#arr[@]}; W=${arr[$R]}; }
