#!/usr/bin/env bash
# Builds multibox with ThreadSanitizer and runs the service suite with it:
# the server (libmicrohttpd thread, libuv loop and workers, the header
# watchdog) and the test clients are instrumented; a data race or a lock
# inversion makes the server exit 66 and its test fail.
#
# Usage: tests/hardening/tsan.sh [BUILD_DIR]     (default: build-tsan)
# Extra environment: TSAN_OPTIONS is appended to the defaults below.
# libmicrohttpd, libuv, jansson and libcurl are not instrumented; their
# internal locking is seen through the pthread interceptors.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-build-tsan}

if [ ! -d "$dir" ]; then
    meson setup "$dir" --buildtype=debugoptimized -Db_sanitize=thread -Db_lundef=false
fi
meson compile -C "$dir" -j "${JOBS:-$(nproc)}"
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 history_size=4 ${TSAN_OPTIONS:-}"
meson test -C "$dir" --suite service --print-errorlogs --num-processes "${JOBS:-$(nproc)}" \
    --timeout-multiplier 4
