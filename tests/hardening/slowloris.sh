#!/usr/bin/env bash
# The slow-client test at full size: 500 connections trickle header bytes
# (plus 32 that trickle a body and 32 silent ones) while ordinary clients
# must be served, each answer correct; then the header timeout must cut
# every trickler and silent connection, and the other slow-client checks
# of tests/service/test_hard_slow.c run (timeouts, connection limits).
#
# Usage: tests/hardening/slowloris.sh [BUILD_DIR] [CONNECTIONS]
#        (default: build, 500)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:-build}
case "$dir" in /*) ;; *) dir="$root/$dir" ;; esac
meson compile -C "$dir" multiboxd test-service-hard-slow >/dev/null
export MBX_SLOWLORIS_CONNECTIONS=${2:-500}
export MBX_GOLDEN_DIR=${MBX_GOLDEN_DIR:-$root/../shared/golden}
export MBX_SOURCE_ROOT=$root
# One process holds 564 sockets and the server as many: lift the soft limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec "$dir/tests/service/test-service-hard-slow" "$dir/src/service/multiboxd"
