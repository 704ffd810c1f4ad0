#!/usr/bin/env bash
# The end-to-end benchmarks of multiboxd, in one run, with one summary:
#
#  1. side by side, interleaved round by round, on SSD300 VOC priors, batch
#     32, 21 classes, 1-10 GT boxes per image (multibox-bench's generator,
#     torchvision's matching rule): torchvision 0.14 computing the loss and
#     its gradients locally on 2 threads (bench/torchvision_loss.py's steps)
#     vs multiboxd over loopback, from the client's first byte sent to its
#     last byte received (bench/e2e_bench.c): OIP binary tensors, /v1 with
#     base64 tensors, OIP with FP16 inputs and sparse gradients, the binary
#     request on a second server started with --stream-upload always (the
#     loss starts while the body arrives, as for a client on another host;
#     this loopback client gets the default, auto: read whole first); and in the
#     same interleaved rounds each case's loopback floor: the same request
#     bytes sent to bench/e2e_floor, a server that only moves bytes and
#     answers with as many body bytes as multiboxd's answer to that case;
#  2. the server's peak RSS during each of those requests (peak reset with
#     /proc/PID/clear_refs just before, VmHWM read just after, on a freshly
#     started server) against request + response bytes, and its idle RSS at
#     start-up and once it has been idle for 6 s after all the load;
#  3. throughput: batch-4 binary requests from 32 connections with wrk and
#     bench/e2e_wrk.lua;
#  4. scaling: batch 1, 8, 32 at 21 classes, batch 32 at 81 classes, and 10
#     vs 100 GT boxes per image, binary, interleaved.
#
# usage: bench/run-e2e.sh
#   MBX_E2E_BUILD_DIR  build directory (default build-e2e; created, release, if absent)
#   ROUNDS             side-by-side rounds (default 40), SCALE_RUNS scaling runs (default 40):
#                      on a shared 2-core machine a median of 15 or 20 moves by 10% from run to run
#   WRK_SECONDS        wrk duration (default 10), WRK_CONNECTIONS (default 32)
#   WORKERS            multiboxd --workers (default 2)
# Needs /usr/bin/python3 with numpy (and torch + torchvision for the
# torchvision side), cc, and wrk (apt-get install wrk) for part 3.
set -euo pipefail
cd "$(dirname "$0")/.."

build=${MBX_E2E_BUILD_DIR:-build-e2e}
rounds=${ROUNDS:-40}
scale_runs=${SCALE_RUNS:-40}
wrk_seconds=${WRK_SECONDS:-10}
wrk_conns=${WRK_CONNECTIONS:-32}
workers=${WORKERS:-2}
python=/usr/bin/python3

if [ ! -d "$build" ]; then
    meson setup "$build" --buildtype=release >/dev/null
fi
ninja -C "$build" -j2 src/service/multiboxd src/tools/multibox-bench >/dev/null
mkdir -p "$build/bench"
cc -O2 -std=c11 -Wall -Wextra -o "$build/bench/e2e_bench" bench/e2e_bench.c
cc -O2 -std=c11 -Wall -Wextra -o "$build/bench/e2e_floor" bench/e2e_floor.c
client="$build/bench/e2e_bench"
floor_bin="$build/bench/e2e_floor"
multiboxd="$build/src/service/multiboxd"
mbench="$build/src/tools/multibox-bench"

tmp=$(mktemp -d)
server_pid=""
stream_pid=""
floor_pids=()
cleanup() {
    if [ -n "$stream_pid" ]; then
        kill -TERM "$stream_pid" 2>/dev/null || true
        wait "$stream_pid" 2>/dev/null || true
    fi
    for p in "${floor_pids[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# Starts multiboxd (extra flags: "$@") on a free loopback port; sets server_pid, port and log.
starts=0
start_server() {
    starts=$((starts + 1))
    log="$tmp/server-$starts.log"
    "$multiboxd" --listen 127.0.0.1:0 --workers "$workers" "$@" 2>"$log" &
    server_pid=$!
    for _ in $(seq 300); do
        if grep -q ' ready' "$log" 2>/dev/null; then
            port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$log")
            return 0
        fi
        sleep 0.1
    done
    echo "multiboxd did not get ready:" >&2
    cat "$log" >&2
    exit 1
}

stop_server() {
    kill -TERM "$server_pid"
    local rc=0
    wait "$server_pid" || rc=$?
    server_pid=""
    return $rc
}

# Starts an e2e_floor on a free loopback port answering $1 body bytes; sets floor_port.
start_floor() {
    local out="$tmp/floor-${#floor_pids[@]}.out"
    "$floor_bin" --port 0 --response-bytes "$1" >"$out" 2>&1 &
    floor_pids+=("$!")
    for _ in $(seq 100); do
        floor_port=$(sed -n 's/^port=\([0-9]*\)$/\1/p' "$out")
        [ -n "$floor_port" ] && return 0
        sleep 0.05
    done
    echo "e2e_floor did not start:" >&2
    cat "$out" >&2
    exit 1
}

rss_kb() { sed -n "s/^$2:[[:space:]]*\([0-9]*\) kB/\1/p" "/proc/$1/status"; }

echo "== inputs (multibox-bench --dump; load average: $(cut -d' ' -f1-3 /proc/loadavg))"
common=(--preset ssd300_voc --threads 2 --bipartite per_gt --runs 1 --warmup 0 --no-floor)
"$mbench" "${common[@]}" --batch 32 --classes 21 --gt 1-10 --dump "$tmp/b32.json" >/dev/null
"$mbench" "${common[@]}" --batch 1 --classes 21 --gt 1-10 --dump "$tmp/b1.json" >/dev/null
"$mbench" "${common[@]}" --batch 8 --classes 21 --gt 1-10 --dump "$tmp/b8.json" >/dev/null
"$mbench" "${common[@]}" --batch 32 --classes 81 --gt 1-10 --dump "$tmp/c81.json" >/dev/null
"$mbench" "${common[@]}" --batch 32 --classes 21 --gt 10-10 --dump "$tmp/gt10.json" >/dev/null
"$mbench" "${common[@]}" --batch 32 --classes 21 --gt 100-100 --dump "$tmp/gt100.json" >/dev/null
"$mbench" "${common[@]}" --batch 4 --classes 21 --gt 1-10 --dump "$tmp/b4.json" >/dev/null
mapfile -t side < <("$python" bench/e2e_prepare.py "$tmp/b32.json" "$tmp" b32 bin v1 fp16)
scale=()
for p in b1 b8 c81 gt10 gt100 b4; do
    scale+=("$("$python" bench/e2e_prepare.py "$tmp/$p.json" "$tmp" "$p" bin)")
done
scale=("${side[0]}" "${scale[@]}") # b32_bin first
wrk_case=${scale[6]}
printf '%s\n' "${side[@]}" "${scale[@]:1}" | sed 's/^/  /'

echo "== core only (multibox-bench, batch 32, 21 classes, 2 threads, 30 runs; no HTTP)"
"$mbench" --preset ssd300_voc --threads 2 --bipartite per_gt --batch 32 --classes 21 --gt 1-10 \
    --runs 30 --no-floor | grep -E '^(fwd_bwd_ms_median|loss)=' | tee "$tmp/core.txt"

echo "== peak RSS per request (fresh server each; peak reset just before the request)"
for c in "${side[@]}"; do
    name=${c%%=*}
    start_server
    idle_start=$(rss_kb "$server_pid" VmRSS)
    echo "rss $name" | "$client" --port "$port" --pid "$server_pid" "$c" | tee -a "$tmp/rss.txt"
    stop_server
done
echo "idle_rss_at_start_kb=$idle_start" | tee -a "$tmp/rss.txt"

# The binary request streamed, on a second server, timed in the same rounds:
# what starting on each image while the body still arrives does on this
# host (see README, /v2).
start_server --stream-upload always
stream_pid=$server_pid
streamed="b32_streamed=${side[0]#*=},$port"
start_server
# The floor of each case: NAME_floor sends the same body to an e2e_floor
# (one per case, each answering as many body bytes as multiboxd's answer to
# that case, measured here), so its time is what loopback and the client
# cost for those bytes alone.
floors=()
for c in "${side[@]}"; do
    name=${c%%=*}
    IFS=, read -r _ _ _ body <<<"${c#*=}"
    echo "save $name $tmp/$name.answer" | "$client" --port "$port" "$c" >/dev/null
    start_floor "$(stat -c %s "$tmp/$name.answer")"
    floors+=("${name}_floor=/x,-,-,$body,$floor_port")
done
echo "== side by side (port $port, $rounds rounds; load average: $(cut -d' ' -f1-3 /proc/loadavg))"
tv_ok=1
if ! "$python" bench/e2e_side_by_side.py --client "$client" --port "$port" --dump "$tmp/b32.json" \
        --rounds "$rounds" --warmup 3 --threads 2 "${side[@]}" "$streamed" "${floors[@]}" |
        tee "$tmp/side.txt"; then
    tv_ok=0
    echo "(the torchvision side needs torch and torchvision in $python; timing ours alone)"
    "$client" --port "$port" --runs "$rounds" --warmup 3 "${side[@]}" "$streamed" "${floors[@]}" |
        tee "$tmp/side.txt"
fi

echo "== scaling (binary, $scale_runs interleaved runs each)"
"$client" --port "$port" --runs "$scale_runs" --warmup 3 "${scale[@]:0:6}" | tee "$tmp/scale.txt"

echo "== throughput: wrk, batch 4 binary, $wrk_conns connections, ${wrk_seconds}s"
if command -v wrk >/dev/null; then
    IFS=, read -r wpath _ whl wbody <<<"${wrk_case#*=}"
    E2E_BODY=$wbody E2E_HEADER_LEN=$whl wrk -t2 -c"$wrk_conns" -d"${wrk_seconds}s" --latency \
        -s bench/e2e_wrk.lua "http://127.0.0.1:$port$wpath" | tee "$tmp/wrk.txt"
else
    echo "wrk not installed (apt-get install wrk): throughput skipped" | tee "$tmp/wrk.txt"
fi

sleep 6 # past the idle time after which the server gives its free memory back
idle_after=$(rss_kb "$server_pid" VmRSS)
echo "idle_rss_after_load_kb=$idle_after (after 6 s idle)"
exit_code=0
stop_server || exit_code=$?
kill -TERM "$stream_pid" && wait "$stream_pid" || true
stream_pid=""
echo "multiboxd exit status on SIGTERM: $exit_code"

echo
echo "== summary (load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
grep -E '^(median_ms|ratio|loss b32|torchvision loss)' "$tmp/side.txt" || true
grep -E '^case' "$tmp/side.txt" || true
# Ours against the loopback floor of the same case, medians of the same rounds.
awk '/^median_ms / { split($2, kv, "="); ms[kv[1]] = kv[2] }
/^case / { split($3, kv, "="); ms[$2] = kv[2] }
END {
    for (n in ms) {
        if (n !~ /_floor$/) continue;
        o = substr(n, 1, length(n) - 6);
        if (o in ms && ms[n] > 0)
            printf "floor %s: ours %.3f ms, loopback floor %.3f ms, ours / floor %.2f\n",
                o, ms[o], ms[n], ms[o] / ms[n] } }' "$tmp/side.txt" | sort
awk '/^median_ms / { split($2, kv, "="); ms[kv[1]] = kv[2] }
/^case / { split($3, kv, "="); ms[$2] = kv[2] }
END { if (ms["b32_bin"] > 0)
    printf "streaming: binary with --stream-upload always %.3f ms; default on loopback (read whole first) %.3f ms; ratio %.2f\n",
        ms["b32_streamed"], ms["b32_bin"], ms["b32_streamed"] / ms["b32_bin"] }' "$tmp/side.txt"
awk '/^rss/ {
    for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    payload = v["body_sent"] + v["body_received"];
    printf "peak_rss %s: %.1f MB during the request; request+response %.1f MB; ratio %.2f (target <= 2.5)\n",
        $2, v["hwm_kb"] / 1024, payload / 1048576, v["hwm_kb"] * 1024 / payload }
/^idle_rss_at_start_kb/ { split($1, kv, "="); printf "idle RSS at start: %.1f MB (target < 20)\n", kv[2] / 1024 }' \
    "$tmp/rss.txt"
awk -v kb="$idle_after" 'BEGIN { printf "idle RSS after the load, 6 s idle: %.1f MB (target < 20)\n", kb / 1024 }'
awk '/^case/ { split($2, n, "="); split($3, m, "="); ms[$2] = m[2] }
END {
    b1 = ms["b1_bin"]; b8 = ms["b8_bin"]; b32 = ms["b32_bin"]; c81 = ms["c81_bin"];
    g10 = ms["gt10_bin"]; g100 = ms["gt100_bin"];
    printf "scaling (medians, ms): B1 %.3f  B8 %.3f  B32 %.3f  B32xC81 %.3f  GT10 %.3f  GT100 %.3f\n",
        b1, b8, b32, c81, g10, g100;
    A = 8732;
    printf "  ns per B*A*C: B1 %.3f  B8 %.3f  B32 %.3f  B32xC81 %.3f\n",
        b1 * 1e6 / (1 * A * 21), b8 * 1e6 / (8 * A * 21), b32 * 1e6 / (32 * A * 21), c81 * 1e6 / (32 * A * 81);
    printf "  B32/B8 %.2f (x4 work)  B8/B1 %.2f (x8 work)  C81/C21 %.2f (x3.86 work)\n", b32 / b8, b8 / b1, c81 / b32;
    printf "  100 GT / 10 GT per image: %.2f (target <= 1.5)\n", g100 / g10 }' "$tmp/scale.txt"
sed -n 's/^wrk_summary //p' "$tmp/wrk.txt" | tr ' ' '\n' | sed 's/^/  wrk /' || true
[ "$tv_ok" = 1 ] || echo "torchvision side skipped"
