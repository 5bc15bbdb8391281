#!/usr/bin/env bash
# End-to-end tests of `modrwkv serve` (docs/SERVER.md): starts real servers on free loopback ports with the
# tiny fixture models and runs tests/server/test_server.py (the official `openai` client from PyPI, plus raw
# sockets for malformed requests and slow clients) and tests/server/test_page.py (the chat page in headless
# Chromium through Playwright; a screenshot lands in $B/tests/serve_page.png). Every server is stopped with
# SIGTERM and must exit 0; under the sanitizer build (run.sh passes build-asan) LeakSanitizer makes a leak a
# non-zero exit, so leaks fail the test.
#   tests/cli_serve.sh [BUILD] [--duration S]   (default 20 s of 32 concurrent streams; 60 for the full run)
# Needs build/testenv (scripts/setup.sh --deps-only creates it: openai + playwright) and /usr/bin/chromium.
set -u
B=${1:-build}
shift || true
DURATION=${MRW_SERVE_DURATION:-20}
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    --duration=*) DURATION=${1#*=}; shift ;;
    *) echo "usage: tests/cli_serve.sh [BUILD] [--duration S]" >&2; exit 2 ;;
  esac
done
M="$B/modrwkv"
PY=${MRW_TESTENV:-build/testenv}/bin/python
FIX=tests/fixtures/rwkv7
MM=tests/fixtures/modrwkv
if [ ! -x "$PY" ] || ! "$PY" -c 'import openai' 2>/dev/null; then
  echo "cli_serve.sh: $PY with the openai package is missing: run scripts/setup.sh --deps-only" >&2
  exit 1
fi
T=$(mktemp -d)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
case "$ASAN_OPTIONS" in *detect_leaks*) ;; *) export ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=1" ;; esac
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$T"; }
trap cleanup EXIT
fails=0

# start NAME ARGS...: starts a server on a free port; sets URL_NAME
start() {
  local name=$1; shift
  "$M" serve --port 0 --port-file "$T/$name.port" -t 1 "$@" > "$T/$name.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  eval "PID_$name=$pid"
  for _ in $(seq 1 200); do
    [ -s "$T/$name.port" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ ! -s "$T/$name.port" ]; then
    echo "FAIL: server $name did not start:"; cat "$T/$name.log"; exit 1
  fi
  eval "URL_$name=http://127.0.0.1:$(cat "$T/$name.port")"
}

# stop NAME: SIGTERM, then the exit status must be 0 (LeakSanitizer reports make it non-zero)
stop() {
  local name=$1 pid
  eval "pid=\$PID_$name"
  kill -TERM "$pid"
  local rc=0
  wait "$pid" || rc=$?
  if [ $rc -ne 0 ]; then
    echo "FAIL: server $name exited with $rc after SIGTERM:"; tail -n 60 "$T/$name.log"; fails=$((fails+1))
  else
    echo "ok    server $name stopped cleanly (exit 0)"
  fi
}

"$M" init -o "$T/slow.safetensors" --layers 4 --embd 512 --vocab-size 256 > /dev/null 2>&1 \
  || { echo "FAIL: modrwkv init"; exit 1; }
start slow -m "$T/slow.safetensors" --timeout 1
start page -m "$T/slow.safetensors"
start text -m "$FIX/tiny.pth" --parallel 32 --max-queue 256 --max-tokens 4096
start vision -m "$MM/v1_vision/rwkv-0.pth" --encoder "$MM/siglip"
start audio -m "$MM/v1_audio/rwkv-0.pth" --encoder "$MM/whisper"
start limits -m "$MM/v1_vision/rwkv-0.pth" --encoder "$MM/siglip" --parallel 1 --max-queue 1 --max-body-mb 1 \
  --max-media-mb 1 --client-timeout 2 --max-connections 8

# the answer `modrwkv chat` gives, which the server must reproduce for the same image and question
"$M" chat -m "$MM/v1_vision/rwkv-0.pth" --encoder "$MM/siglip" --image "$MM/media/image_a.png" -n 8 -q -t 1 \
  "What is this?" > "$T/vision.expect" || { echo "FAIL: modrwkv chat --image"; fails=$((fails+1)); }

# a long prompt (prefilled in chunks by the server) continued greedily by `modrwkv generate`
"$M" generate -m "$FIX/tiny.pth" -p "$("$PY" -c 'import sys; sys.path.insert(0, "tests/server"); import test_server; print(test_server.LONG_PROMPT, end="")')" \
  -n 12 --ignore-stop -q -t 1 > "$T/long.expect" || { echo "FAIL: modrwkv generate"; fails=$((fails+1)); }

"$PY" tests/server/test_server.py --text "$URL_text" --vision "$URL_vision" --audio "$URL_audio" \
  --limits "$URL_limits" --slow "$URL_slow" --fixtures "$MM" --vision-expect "$T/vision.expect" --generate-expect "$T/long.expect" --duration "$DURATION" || fails=$((fails+1))

if [ -x /usr/bin/chromium ] && "$PY" -c 'import playwright' 2>/dev/null; then
  "$PY" tests/server/test_page.py --url "$URL_page" --vision-url "$URL_vision" --image "$MM/media/image_a.png" --audio-url "$URL_audio" \
    --screenshot "$B/tests/serve_page.png" || fails=$((fails+1))
else
  echo "FAIL: the page test needs /usr/bin/chromium and playwright in $PY (scripts/setup.sh --deps-only)"
  fails=$((fails+1))
fi

# a stream cut by shutdown: the server still exits cleanly
"$PY" - "$URL_text" <<'EOF' &
import sys, urllib.request, json
req = urllib.request.Request(sys.argv[1] + "/v1/completions", data=json.dumps(
    {"prompt": "x", "max_tokens": 4096, "stream": True}).encode(), headers={"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(req, timeout=30) as r:
        for line in r:
            pass
except Exception:
    pass
EOF
client=$!
sleep 0.5
for s in text vision audio limits slow page; do stop $s; done
wait $client 2>/dev/null
# a busy port is a clear error
start busy -m "$FIX/tiny.pth"
if "$M" serve -m "$FIX/tiny.pth" --port "$(cat "$T/busy.port")" > "$T/err" 2>&1; then
  echo "FAIL: a second server on a busy port started"; fails=$((fails+1))
elif grep -q "cannot listen" "$T/err"; then echo "ok    busy port -> clear error"
else echo "FAIL: busy port message: $(cat "$T/err")"; fails=$((fails+1)); fi
stop busy
if "$M" serve -m "$FIX/tiny.pth" --host not-an-address > "$T/err" 2>&1; then
  echo "FAIL: a server with a bad --host started"; fails=$((fails+1))
elif grep -q "numeric" "$T/err"; then echo "ok    bad --host -> clear error"
else echo "FAIL: bad --host message: $(cat "$T/err")"; fails=$((fails+1)); fi
"$M" serve --help > "$T/out" 2>&1 && grep -q "usage: modrwkv serve" "$T/out" && echo "ok    serve --help" \
  || { echo "FAIL: serve --help"; fails=$((fails+1)); }
for args in "--port 70000 -m $FIX/tiny.pth|expects an integer" "|no model given" "-m $FIX/tiny.pth --image x|not a serve option" \
            "-m $FIX/tiny.pth --bogus|unknown option"; do
  a=${args%%|*} pat=${args#*|}
  # shellcheck disable=SC2086
  "$M" serve $a > "$T/err" 2>&1; rc=$?
  if [ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -q -- "$pat" "$T/err"; then echo "ok    serve $a -> '$pat'"
  else echo "FAIL: serve $a (exit $rc): $(head -c 300 "$T/err")"; fails=$((fails+1)); fi
done
echo "cli_serve.sh: $fails failed"
[ $fails -eq 0 ]
