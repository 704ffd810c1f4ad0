#!/usr/bin/env bash
# Installs what the tests need, builds, and runs the whole test suite:
# the release build, then the same suites under AddressSanitizer and
# UndefinedBehaviorSanitizer.  Quick start's second command.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh test

jobs=$(nproc)

echo "== release build"
if [ ! -d build ]; then
    meson setup build --buildtype=release
fi
meson compile -C build -j "$jobs"
meson test -C build --print-errorlogs --num-processes "$jobs"

echo "== AddressSanitizer + UndefinedBehaviorSanitizer build"
if [ ! -d build-asan ]; then
    meson setup build-asan --buildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false
fi
meson compile -C build-asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    meson test -C build-asan --print-errorlogs --num-processes "$jobs" --timeout-multiplier 4

echo "== hardening: ThreadSanitizer build, service suite"
tests/hardening/tsan.sh build-tsan
echo "== hardening: core suite under valgrind memcheck (without the finite differences)"
VALGRIND_SKIP="core fd" tests/hardening/valgrind-core.sh build
echo "== hardening: ${MBX_SOAK_SECONDS:-60} s soak"
SOAK_SECONDS="${MBX_SOAK_SECONDS:-60}" SOAK_WARMUP=20 tests/soak/soak.sh build

echo "== fuzzing: libFuzzer (clang, ASan + UBSan), ${MBX_FUZZ_SECONDS:-60} s per target"
tests/fuzz/run.sh "${MBX_FUZZ_SECONDS:-60}"
