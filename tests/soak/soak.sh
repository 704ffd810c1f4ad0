#!/usr/bin/env bash
# Soak test of multiboxd: wrk sends a fixed cycle of valid, invalid and
# oversized requests (tests/soak/mix.lua) on loopback for SOAK_SECONDS while
# this script samples the server's resident memory every SOAK_SAMPLE
# seconds.  After the warm-up (SOAK_WARMUP seconds) every sample must stay
# within SOAK_RSS_PCT percent of the first one after it; no answer may be a
# 5xx (wrk's view and the server's metrics), every status must be one the
# cycle can produce, every 200 of a loss or anchors request must equal the
# answer taken before the soak, and wrk must see no socket error.
#
# Usage: tests/soak/soak.sh [BUILD_DIR]        (default: build)
# Environment: SOAK_SECONDS (600), SOAK_WARMUP (60, at most a fifth of the
#   run), SOAK_SAMPLE (5), SOAK_RSS_PCT (5), SOAK_CONNECTIONS (8),
#   SOAK_THREADS (2), SOAK_WORKERS (2), MBX_GOLDEN_DIR (../shared/golden).
# Needs wrk (Debian package wrk) and /usr/bin/python3 with numpy.
# Exit status: 0 pass, 1 fail, 77 skipped (wrk missing).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build}
case "$build" in /*) ;; *) build="$root/$build" ;; esac
seconds=${SOAK_SECONDS:-600}
sample=${SOAK_SAMPLE:-5}
pct=${SOAK_RSS_PCT:-5}
warmup=${SOAK_WARMUP:-60}
if [ "$warmup" -gt $((seconds / 5)) ]; then
    warmup=$((seconds / 5))
fi
conns=${SOAK_CONNECTIONS:-8}
threads=${SOAK_THREADS:-2}
workers=${SOAK_WORKERS:-2}
export MBX_GOLDEN_DIR=${MBX_GOLDEN_DIR:-$root/../shared/golden}
json_limit=$((512 * 1024))

exe="$build/src/service/multiboxd"
if ! command -v wrk >/dev/null 2>&1; then
    echo "soak: wrk is not installed (Debian package wrk): skipped"
    exit 77
fi
[ -x "$exe" ] || { echo "soak: no $exe (build first)"; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/mbx-soak-XXXXXX")
export SOAK_DIR="$work"
pid=
wrk_pid=
# shellcheck disable=SC2317  # called by the trap
cleanup() {
    for p in $wrk_pid $pid; do
        if kill -0 "$p" 2>/dev/null; then
            kill -KILL "$p" 2>/dev/null || true
        fi
    done
    rm -rf "$work"
}
trap cleanup EXIT

/usr/bin/python3 "$root/tests/soak/make-bodies.py" "$work" "$json_limit"

# The server's request lines are counted by status, not kept (millions of lines).
count_statuses='
import collections, sys
n = collections.Counter()
log = open(sys.argv[1], "w")
for line in sys.stdin:
    if " info request " in line:
        for f in line.split():
            if f.startswith("status="):
                n[f[7:]] += 1
    else:
        log.write(line)
        log.flush()
with open(sys.argv[2], "w") as f:
    for s, c in sorted(n.items()):
        f.write("status %s %d\n" % (s, c))
'
: > "$work/server.log"
"$exe" --listen 127.0.0.1:0 --workers "$workers" --queue-depth 256 \
    --max-json-body-bytes "$json_limit" \
    2> >(/usr/bin/python3 -c "$count_statuses" "$work/server.log" "$work/statuses") &
pid=$!
port=
for _ in $(seq 1 300); do
    port=$(sed -n 's/.*listening on .*:\([0-9][0-9]*\)$/\1/p' "$work/server.log" 2>/dev/null |
           head -n1 || true)
    if [ -n "$port" ] && grep -q ' ready$' "$work/server.log"; then
        break
    fi
    sleep 0.1
done
[ -n "$port" ] || { echo "soak: the server did not start"; cat "$work/server.log"; exit 1; }
url="http://127.0.0.1:$port"

# GET (no body file) or POST a JSON body file; writes the answer to OUT, fails unless 200.
fetch() { # URL OUT [BODY_FILE]
    /usr/bin/python3 - "$@" <<'PY'
import sys, urllib.request
url, out = sys.argv[1], sys.argv[2]
data = open(sys.argv[3], "rb").read() if len(sys.argv) > 3 else None
req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
with urllib.request.urlopen(req, timeout=60) as r:
    open(out, "wb").write(r.read())
PY
}
# The answers every later 200 must equal.
for name in tiny tiny_b64 medium; do
    fetch "$url/v1/loss" "$work/expected-$name" "$work/$name.json"
done
fetch "$url/v1/anchors/ssd300_voc?tensor_format=b64" "$work/expected-anchors"

echo "soak: multiboxd pid $pid on $url, $workers workers; wrk $threads threads, $conns" \
     "connections, ${seconds}s; RSS sampled every ${sample}s, warm-up ${warmup}s, tolerance ${pct}%"
start=$(date +%s)
wrk -t "$threads" -c "$conns" -d "${seconds}s" --timeout 30s -s "$root/tests/soak/mix.lua" \
    "$url" > "$work/wrk.out" 2>&1 &
wrk_pid=$!
samples=()
while kill -0 "$wrk_pid" 2>/dev/null; do
    sleep "$sample"
    kill -0 "$wrk_pid" 2>/dev/null || break # samples are taken under load only
    t=$(( $(date +%s) - start ))
    # wrk is closing its connections (whose buffers then go) at its end.
    [ "$t" -lt "$seconds" ] || break
    rss=$(awk '/^VmRSS:/{print $2}' "/proc/$pid/status")
    samples+=("$t:$rss")
    printf 'soak: t=%4ss rss=%s KiB\n' "$t" "$rss"
done
wait "$wrk_pid" || { echo "soak: wrk failed"; cat "$work/wrk.out"; exit 1; }
cat "$work/wrk.out"

fetch "$url/metrics" "$work/metrics"
metrics=$(cat "$work/metrics")
fivexx=$(printf '%s\n' "$metrics" | awk '/^multibox_http_requests_total\{.*code="5[0-9][0-9]"\}/{s += $2} END {print s + 0}')
kill -TERM "$pid"
wait "$pid" || { echo "soak: multiboxd did not exit 0"; cat "$work/server.log"; exit 1; }
pid=
sleep 0.2 # the log filter writes its counts when the server's stderr closes

fail=0
result=$(grep '^SOAK_RESULT' "$work/wrk.out" || true)
[ -n "$result" ] || { echo "soak: no result line from mix.lua"; exit 1; }
get() { printf '%s\n' "$result" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
for key in server_errors unexpected mismatched socket_errors; do
    if [ "$(get "$key")" != 0 ]; then
        echo "soak: FAIL: $key=$(get "$key")"
        fail=1
    fi
done
if [ "$fivexx" != 0 ]; then
    echo "soak: FAIL: the server's metrics count $fivexx 5xx answers"
    fail=1
fi
# status 0: a request whose client left before the answer.  wrk stops with
# up to one request in flight per connection; more would be dropped answers.
unanswered=$(awk '$2 == "0" {print $3}' "$work/statuses" 2>/dev/null)
if grep -q '^status 5' "$work/statuses" 2>/dev/null || [ "${unanswered:-0}" -gt "$conns" ]; then
    echo "soak: FAIL: the server logged 5xx or unanswered requests:"
    cat "$work/statuses"
    fail=1
fi

# Memory: every sample after the warm-up within pct% of the first one after it.
base=
lo=
hi=
for s in "${samples[@]}"; do
    t=${s%%:*}
    rss=${s##*:}
    [ "$t" -ge "$warmup" ] || continue
    if [ -z "$base" ]; then base=$rss; lo=$rss; hi=$rss; fi
    [ "$rss" -lt "$lo" ] && lo=$rss
    [ "$rss" -gt "$hi" ] && hi=$rss
done
if [ -z "$base" ]; then
    echo "soak: FAIL: no memory sample after the warm-up"
    fail=1
else
    drift=$(awk -v b="$base" -v lo="$lo" -v hi="$hi" \
        'BEGIN { d1 = (hi - b) / b * 100; d2 = (b - lo) / b * 100; d = d1; if (d2 > d1) d = d2; printf "%.2f", d }')
    echo "soak: RSS after warm-up: first ${base} KiB, min ${lo} KiB, max ${hi} KiB," \
         "largest drift ${drift}% (limit ${pct}%)"
    if awk -v d="$drift" -v p="$pct" 'BEGIN { exit !(d > p) }'; then
        echo "soak: FAIL: resident memory moved more than ${pct}%"
        fail=1
    fi
fi
echo "soak: $result"
echo "soak: server statuses: $(sort "$work/statuses" 2>/dev/null | awk '{printf "%s=%s ", $2, $3}')"
if [ "$fail" = 0 ]; then
    echo "soak: PASS (${seconds}s)"
fi
exit "$fail"
