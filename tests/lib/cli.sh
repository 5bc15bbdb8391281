# Shared by the tests/cli_*.sh scripts (source it after setting nothing): the build directory ($1, default
# build), the command ($M), a scratch directory ($T, removed on exit) and the check helpers. Each script ends
# with `finish NAME`, which prints the count and sets the exit status.
set -u
B=${1:-build}
M="$B/modrwkv"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0; checks=0

ok() { checks=$((checks+1)); }
bad() { checks=$((checks+1)); fails=$((fails+1)); echo "FAIL: $*" >&2; }

# expect_ok DESC CMD...: exit 0 (stdout in $T/out, stderr in $T/err)
expect_ok() { local d=$1; shift; if "$@" > "$T/out" 2> "$T/err"; then ok; else bad "$d (exit $?): $(tail -c 600 "$T/err")"; fi; }
# expect_fail DESC PATTERN CMD...: non-zero exit below 128 (no signal) and stderr matching PATTERN
expect_fail() {
  local d=$1 pat=$2; shift 2
  "$@" > "$T/out" 2> "$T/err"; local rc=$?
  if [ $rc -eq 0 ]; then bad "$d: succeeded but should fail"
  elif [ $rc -ge 128 ]; then bad "$d: killed by a signal (exit $rc): $(head -c 400 "$T/err")"
  elif ! grep -qiE -- "$pat" "$T/err"; then bad "$d: message does not match '$pat': $(head -c 400 "$T/err")"
  else ok; fi
}

finish() { echo "$1: $checks checks, $fails failed" >&2; [ $fails -eq 0 ]; }
