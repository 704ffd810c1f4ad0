#!/usr/bin/env bash
# Builds multibox-bench (release) and, in one go, times our forward+backward
# and the memory-traffic floor, dumps the very inputs it timed, checks our
# loss and gradients against torchvision's on that dump, and times
# torchvision 0.14's SSD loss on it (2 threads each).  Prints both medians,
# torchvision/ours and ours/floor: the numbers the README quotes.
#
# usage: bench/run-core.sh [extra multibox-bench flags...]
#   MBX_BENCH_BUILD_DIR  build directory (default build-bench; created if absent)
#   RUNS                 timed runs of each side (default 30)
# The comparison uses torchvision's matching rule (--bipartite per_gt); the
# rest of the config is the library default, which is torchvision's.
# multibox-bench evicts the caches before each timed run of the loss and of
# the floor, so both start from DRAM; add --no-flush for warm caches.
set -euo pipefail
cd "$(dirname "$0")/.."

build=${MBX_BENCH_BUILD_DIR:-build-bench}
runs=${RUNS:-30}
python=/usr/bin/python3

if [ ! -d "$build" ]; then
    meson setup "$build" --buildtype=release >/dev/null
fi
targets=$(ninja -C "$build" -t targets all)
want=src/tools/multibox-bench
if grep -q '^src/tools/multibox-loss:' <<<"$targets"; then
    want="$want src/tools/multibox-loss"
fi
# shellcheck disable=SC2086
ninja -C "$build" -j2 $want >/dev/null

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== multibox-bench (load average before: $(cut -d' ' -f1-3 /proc/loadavg))"
"$build/src/tools/multibox-bench" --preset ssd300_voc --batch 32 --classes 21 --gt 1-10 \
    --threads 2 --runs "$runs" --bipartite per_gt --dump "$tmp/request.json" "$@" \
    | tee "$tmp/ours.txt"
ours=$(sed -n 's/^fwd_bwd_ms_median=\([0-9.]*\).*/\1/p' "$tmp/ours.txt")
floor=$(sed -n 's/^floor_ms_median=\([0-9.]*\).*/\1/p' "$tmp/ours.txt")
ours_loss=$(sed -n 's/^loss=\([^ ]*\) .*/\1/p' "$tmp/ours.txt")

ours_args=(--ours-loss "$ours_loss")
if [ -x "$build/src/tools/multibox-loss" ]; then
    if "$build/src/tools/multibox-loss" "$tmp/request.json" >"$tmp/response.json"; then
        ours_args+=(--ours "$tmp/response.json")
    else
        echo "multibox-loss failed on the dump (exit $?); comparing the loss only"
    fi
fi

tv=""
echo "== torchvision"
if "$python" -c "import torch, torchvision" 2>/dev/null; then
    "$python" bench/torchvision_loss.py "$tmp/request.json" --runs "$runs" --threads 2 \
        "${ours_args[@]}" | tee "$tmp/tv.txt"
    tv=$(sed -n 's/^torchvision_ms_median=\([0-9.]*\).*/\1/p' "$tmp/tv.txt")
else
    echo "torch/torchvision not importable by $python: torchvision part skipped"
    echo "(Debian: apt-get install python3-torch python3-torchvision)"
fi

echo "== summary (ssd300_voc, batch 32, 21 classes, 1-10 GT, 2 threads, $runs runs;"
echo "   load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
echo "multibox fwd+bwd median:      $ours ms"
[ -n "$floor" ] && echo "memory-traffic floor median:  $floor ms"
[ -n "$tv" ] && echo "torchvision 0.14 median:      $tv ms (matching + compute_loss + backward)"
awk -v o="$ours" -v f="$floor" -v t="$tv" 'BEGIN {
    if (t != "") printf "torchvision_over_ours=%.1f\n", t / o;
    if (f != "") printf "ours_over_floor=%.2f\n", o / f;
}'
