#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) in build-fuzz if needed
# and runs each for SECONDS (default 60, CI's short form), one after the
# other, single process.  Prints per target the executions, exec/s, coverage
# (cov:, ft: of libFuzzer's last status line) and corpus size, then a summary
# line; exits 1 if any target crashed (the input is left in
# build-fuzz/fuzz/artifacts/<target>/: copy it to tests/fuzz/regressions/<target>/).
#
#   tests/fuzz/run.sh [SECONDS] [TARGET...]    targets: v1_json oip frame base64
#
# The corpus grows in build-fuzz/fuzz/corpus/<target>/ across runs; seeds are
# regenerated from the golden cases into build-fuzz/fuzz/seeds/ each time.
# Environment: BUILD_DIR (build-fuzz), CC (clang), MBX_GOLDEN_DIR.
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(v1_json oip frame base64)
build=${BUILD_DIR:-build-fuzz}
work="$build/fuzz"

if [ ! -f "$build/build.ninja" ]; then
    CC=${CC:-clang} meson setup "$build" -Dfuzzing=true -Dtests=disabled --buildtype=debugoptimized
fi
exes=()
for t in "${targets[@]}"; do
    exes+=("tests/fuzz/fuzz-$t")
done
ninja -C "$build" -j2 "${exes[@]}"
/usr/bin/python3 tests/fuzz/make-seeds.py "$work/seeds" >/dev/null

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

crashed=0
total_execs=0
summary=()
for t in "${targets[@]}"; do
    exe="$build/tests/fuzz/fuzz-$t"
    corpus="$work/corpus/$t"
    artifacts="$work/artifacts/$t/"
    log="$work/$t.log"
    mkdir -p "$corpus" "$artifacts"
    case $t in
        v1_json) extra=(-dict=tests/fuzz/dict/v1_json.dict -max_len=16384) ;;
        oip|frame) extra=(-dict=tests/fuzz/dict/oip.dict -max_len=16384) ;;
        *) extra=(-max_len=4096) ;;
    esac
    echo "== fuzz $t: ${seconds}s"
    set +e
    "$exe" "$corpus" "$work/seeds/$t" "${extra[@]}" \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$artifacts" >"$log" 2>&1
    rc=$?
    set -e
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    files=$(find "$corpus" -type f | wc -l)
    line="$t: execs ${execs:-?} exec/s ${speed:-?} cov ${cov:-?} ft ${ft:-?} corpus $files files"
    if [ $rc -ne 0 ]; then
        crashed=$((crashed + 1))
        line="$line CRASHED (exit $rc, log $log)"
        grep -E '^(==[0-9]+==ERROR|SUMMARY|.*check failed|.*runtime error)' "$log" | head -5 || true
        find "$artifacts" -type f -printf '  artifact: %p\n'
    fi
    echo "$line"
    summary+=("$line")
    total_execs=$((total_execs + ${execs:-0}))
done

echo "== fuzz summary: ${#targets[@]} targets, ${seconds}s each, $total_execs executions, $crashed crashed"
[ $crashed -eq 0 ]
