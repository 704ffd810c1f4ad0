#!/usr/bin/env bash
# Runs the Python client's tests (clients/python/tests) against a real multiboxd.
#
#   tests/python/run.sh MULTIBOXD client   numpy tests: units, transport stub, golden cases, errors
#   tests/python/run.sh MULTIBOXD torch    RemoteMultiBoxLoss vs torchvision (exit 77 without torch)
#
# Starts MULTIBOXD on 127.0.0.1 with port 0, reads the chosen port from its
# "listening on 127.0.0.1:PORT" log line, waits for /readyz, runs the tests with
# Debian's /usr/bin/python3 (override with MBX_PYTHON), and always stops the
# server (SIGTERM, then SIGKILL after 10 s).  Exit 77 (meson's "skipped") when
# that python lacks numpy, or torch/torchvision in torch mode; failure when a
# test fails or the server does not exit 0 after SIGTERM.  MBX_GOLDEN_DIR must
# name the golden folder (meson's test_env sets it); MBX_SOURCE_ROOT, when set,
# the source tree.  Tests that need servers with other flags start their own
# from MBX_MULTIBOXD.
set -euo pipefail

multiboxd=${1:?usage: run.sh MULTIBOXD client|torch}
case "$multiboxd" in /*) ;; *) multiboxd="$PWD/$multiboxd" ;; esac
mode=${2:-client}
here=$(cd "$(dirname "$0")" && pwd)
root=${MBX_SOURCE_ROOT:-$(cd "$here/../.." && pwd)}
py=${MBX_PYTHON:-/usr/bin/python3}

if [ ! -x "$py" ]; then
    echo "SKIP: $py not found (Debian's python3 with python3-numpy)" >&2
    exit 77
fi
if ! "$py" -c 'import numpy' 2>/dev/null; then
    echo "SKIP: $py cannot import numpy (apt-get install python3-numpy)" >&2
    exit 77
fi
case "$mode" in
    client) modules="test_units test_transport test_server" ;;
    torch)
        if ! "$py" -c 'import torch, torchvision' 2>/dev/null; then
            echo "SKIP: $py cannot import torch and torchvision (apt-get install python3-torch python3-torchvision)" >&2
            exit 77
        fi
        modules="test_torch" ;;
    *) echo "unknown mode $mode (client or torch)" >&2; exit 2 ;;
esac
: "${MBX_GOLDEN_DIR:?MBX_GOLDEN_DIR must name the golden folder}"

work=$(mktemp -d)
log="$work/multiboxd.log"
pid=""
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    if [ "${keep_log:-0}" = 1 ]; then
        echo "---- multiboxd log" >&2
        cat "$log" >&2 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

"$multiboxd" --listen 127.0.0.1:0 --workers 2 2>"$log" &
pid=$!

port=""
for _ in $(seq 150); do
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$log" | head -n 1)
    [ -n "$port" ] && break
    if ! kill -0 "$pid" 2>/dev/null; then
        keep_log=1
        echo "multiboxd exited before listening" >&2
        exit 1
    fi
    sleep 0.1
done
if [ -z "$port" ]; then
    keep_log=1
    echo "multiboxd printed no 'listening on 127.0.0.1:PORT' line within 15 s" >&2
    exit 1
fi
url="http://127.0.0.1:$port"
for _ in $(seq 150); do
    "$multiboxd" --probe "$url/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done

cd "$root/clients/python/tests"
status=0
MBX_URL="$url" MBX_MULTIBOXD="$multiboxd" PYTHONPATH="$root/clients/python${PYTHONPATH:+:$PYTHONPATH}" \
    "$py" -m unittest -v $modules || status=$?

# Stop the server the way an orchestrator does; a drain must end with exit 0 (a
# sanitizer build also reports leaks and errors through this status).
kill -TERM "$pid"
for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
server_rc=0
if kill -0 "$pid" 2>/dev/null; then
    echo "multiboxd still running 10 s after SIGTERM" >&2
    kill -KILL "$pid" 2>/dev/null || true
    server_rc=137
fi
wait "$pid" || server_rc=$?
pid=""
if [ "$server_rc" != 0 ]; then
    echo "multiboxd exited with status $server_rc after SIGTERM (want 0)" >&2
    [ "$status" = 0 ] && status=1
fi
if [ "$status" != 0 ]; then
    keep_log=1
fi
exit "$status"
