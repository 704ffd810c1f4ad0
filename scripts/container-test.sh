#!/usr/bin/env bash
# The container test: builds the Dockerfile with Debian's buildah (no Docker engine, no registry:
# the debian:bookworm and bookworm-slim base images are made locally by container-base.sh), then
# runs the image and checks that
#   - its configured user is numeric and not root, it exposes 8080 and stops with SIGTERM;
#   - the image's own entrypoint serves /readyz (buildah run --isolation chroot --network host);
#   - the image's HEALTHCHECK command succeeds inside the container while the server runs, and
#     fails once it has stopped;
#   - a golden case POSTed to /v1/loss comes back with the expected numbers (rel 1e-5);
#   - SIGTERM drains the server to exit status 0;
#   - as PID 1 of its own PID namespace (what `docker run` does), SIGTERM still stops it with 0.
# Everything it starts is stopped, and its containers and image are removed, even on failure.
# Needs root (debootstrap, container storage); re-runs itself through sudo otherwise.
# Prints "container: N passed, M failed" last. Usage: scripts/container-test.sh [--keep-image]
# MBX_CONTAINER_TEST_ARGS, when set, replaces the build stage's `meson test` arguments.
# Functions called only through trap or check() look unreachable to shellcheck:
# shellcheck disable=SC2317
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    exec sudo --preserve-env=MBX_GOLDEN_DIR,MBX_CI_CACHE,MBX_CONTAINER_TEST_ARGS bash "$0" "$@"
fi
cd "$(dirname "$0")/.."
repo=$PWD

keep_image=0
[ "${1:-}" = --keep-image ] && keep_image=1

# --- tools ---------------------------------------------------------------------------------
need=()
for pair in buildah:buildah podman:podman debootstrap:debootstrap jq:jq curl:curl ss:iproute2 \
            unshare:util-linux; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "container-test: installing ${need[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi

# --- container storage of its own (vfs: no overlay or fuse needed) -------------------------
export MBX_CI_CACHE=${MBX_CI_CACHE:-/var/cache/multibox-ci}
mkdir -p "$MBX_CI_CACHE/containers"
export CONTAINERS_STORAGE_CONF=$MBX_CI_CACHE/storage.conf
cat >"$CONTAINERS_STORAGE_CONF" <<EOF
[storage]
driver = "vfs"
graphroot = "$MBX_CI_CACHE/containers/storage"
runroot = "/run/multibox-ci/containers"
EOF
export STORAGE_DRIVER=vfs

golden=${MBX_GOLDEN_DIR:-$repo/../shared/golden}
case_file=$golden/cases/tiny.json
[ -f "$case_file" ] || { echo "container-test: no golden case at $case_file" >&2; exit 1; }

image=localhost/multibox:test
work=$(mktemp -d /tmp/multibox-container.XXXXXX)
ctr=""
pids=()    # background jobs: buildah run, unshare
ports=()   # ports the servers were told to listen on
passed=0
failed=0

cleanup() {
    local p port _
    # The servers first (buildah run need not pass a signal on), then the jobs; SIGKILL what
    # is still there after 40 s (the drain timeout is 30 s).
    for port in "${ports[@]}"; do
        p=$(listener_pid "$port")
        if [ -n "$p" ]; then kill -TERM "$p" 2>/dev/null || true; fi
    done
    for p in "${pids[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        for _ in $(seq 1 400); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    if [ -n "$ctr" ]; then
        buildah umount "$ctr" >/dev/null 2>&1 || true
        buildah rm "$ctr" >/dev/null 2>&1 || true
    fi
    if [ "$keep_image" -eq 0 ]; then
        buildah rmi "$image" >/dev/null 2>&1 || true
    fi
    buildah rmi --prune >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

pass() { passed=$((passed + 1)); echo "ok - $*"; }
fail() { failed=$((failed + 1)); echo "not ok - $*"; }
check() {   # DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}
finish() {
    echo "container: $passed passed, $failed failed"
    exit $((failed > 0))
}
exec 3>&1
timed() {   # LABEL COMMAND...: runs it, prints its wall time on the script's stdout
    local label=$1 t0=$SECONDS rc=0
    shift
    "$@" || rc=$?
    echo "container-test: $label took $((SECONDS - t0)) s" >&3
    return "$rc"
}

free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 40000))
        if [ -z "$(ss -Htan "sport = :$p")" ]; then
            echo "$p"
            return
        fi
    done
}
# pid of the process listening on 127.0.0.1:PORT (empty if none)
listener_pid() {
    ss -Hltnp "sport = :$1" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n1
}
wait_ready() {   # PORT BG_PID: waits up to 30 s for /readyz to answer 200
    local _
    for _ in $(seq 1 300); do
        if curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$1/readyz" 2>/dev/null; then
            return 0
        fi
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
exit_status=""
wait_exit() {   # PID SECONDS: waits for a child to exit; sets exit_status (or "timeout")
    local _
    for _ in $(seq 1 $(($2 * 10))); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$1" 2>/dev/null; then
        exit_status=timeout
        return
    fi
    exit_status=0
    wait "$1" || exit_status=$?
}

# --- 1. base images, 2. build ---------------------------------------------------------------
timed "base images" bash scripts/container-base.sh
build_args=(--build-arg MBX_BUILD_JOBS=2)
if [ -n "${MBX_CONTAINER_TEST_ARGS:-}" ]; then   # overrides the Dockerfile's MBX_TEST_ARGS
    build_args+=(--build-arg "MBX_TEST_ARGS=$MBX_CONTAINER_TEST_ARGS")
fi
if ! timed "buildah bud" buildah bud --format docker --isolation chroot --pull=never \
        --layers=false "${build_args[@]}" -t "$image" -f Dockerfile . \
        >"$work/bud.log" 2>&1; then
    tail -40 "$work/bud.log"
    fail "image builds"
    finish
fi
grep -E '^(Ok|Fail|Skipped|Expected Fail|Unexpected Pass|Timeout): ' "$work/bud.log" | sed 's/^/container-test: build-stage meson test: /' || true
pass "image builds ($(buildah images --format '{{.Size}}' "$image"))"

# --- 3. image configuration -----------------------------------------------------------------
buildah inspect --type image "$image" >"$work/inspect.json"
cfg() { jq -r "$1" "$work/inspect.json"; }
user=$(cfg '.Docker.config.User // ""')
oci_user=$(cfg '.OCIv1.config.User // ""')
numeric_nonroot() { [[ $1 =~ ^[0-9]+(:[0-9]+)?$ ]] && [ "${1%%:*}" -ne 0 ]; }
check "configured user '$user' is numeric and not root" numeric_nonroot "$user"
check "OCI config user '$oci_user' matches" test "$oci_user" = "$user"
check "exposes 8080/tcp" test "$(cfg '.Docker.config.ExposedPorts | has("8080/tcp")')" = true
check "stop signal is SIGTERM" test "$(cfg '.Docker.config.StopSignal // ""')" = SIGTERM

mapfile -t entry < <(cfg '(.Docker.config.Entrypoint // []) + (.Docker.config.Cmd // []) | .[]')
mapfile -t health < <(cfg '.Docker.config.Healthcheck.Test // [] | .[]')
mapfile -t image_env < <(cfg '.Docker.config.Env // [] | .[]')
first=${entry[0]:-}
check "entrypoint is exec form (${entry[*]})" test "${first:0:1}" = /
check "health check is exec form CMD (${health[*]})" test "${health[0]:-}" = CMD
echo "container-test: entrypoint: ${entry[*]}"
echo "container-test: healthcheck: ${health[*]}"

# --- 4. run the image's own entrypoint --------------------------------------------------------
ctr=$(buildah from --pull-never "$image")
port=$(free_port)
ports+=("$port")
# The health check probes 127.0.0.1:8080; with the host network the test's own port is used.
hc=()
for a in "${health[@]:1}"; do
    hc+=("${a//127.0.0.1:8080/127.0.0.1:$port}")
done
check "health check targets the exposed port" grep -q '127\.0\.0\.1:8080/' <<<"${health[*]}"

t0=$SECONDS
buildah run --isolation chroot --network host "$ctr" -- "${entry[@]}" --listen "127.0.0.1:$port" \
    </dev/null >"$work/server.log" 2>&1 &
run_pid=$!
pids+=("$run_pid")
if wait_ready "$port" "$run_pid"; then
    pass "entrypoint serves /readyz on 127.0.0.1:$port (ready after $((SECONDS - t0)) s)"
else
    fail "entrypoint serves /readyz"
    tail -20 "$work/server.log"
    finish
fi
server_pid=$(listener_pid "$port")
check "server runs as uid ${user%%:*}" \
    test "$(awk '/^Uid:/ {print $2}' "/proc/$server_pid/status" 2>/dev/null)" = "${user%%:*}"

check "health check command succeeds inside the container" \
    buildah run --isolation chroot --network host "$ctr" -- "${hc[@]}"

jq -c .request "$case_file" >"$work/request.json"
code=$(curl -sS -o "$work/response.json" -w '%{http_code}' --max-time 60 \
    -H 'Content-Type: application/json' --data-binary "@$work/request.json" \
    "http://127.0.0.1:$port/v1/loss" || echo 000)
check "POST /v1/loss answers 200 (got $code)" test "$code" = 200
golden_matches() {
    jq -e --slurpfile exp "$case_file" '
        def close(a; b): ((a - b) | fabs) <= 1e-5 * ([(b | fabs), 1e-30] | max);
        $exp[0].expected as $e
        | close(.loss; $e.loss) and close(.conf_loss; $e.conf_loss)
          and close(.loc_loss; $e.loc_loss) and close(.normalizer; $e.normalizer)
          and .num_positives == $e.num_positives and .num_negatives == $e.num_negatives' \
        "$work/response.json" >/dev/null 2>&1
}
check "golden case $(basename "$case_file"): loss $(jq -r .loss "$work/response.json" 2>/dev/null) vs $(jq -r .expected.loss "$case_file")" \
    golden_matches

kill -TERM "$server_pid"
wait_exit "$run_pid" 40
check "SIGTERM drains and exits 0 (status $exit_status)" test "$exit_status" = 0
check "health check fails once the server has stopped" \
    bash -c '! "$@" >/dev/null 2>&1' _ buildah run --isolation chroot --network host "$ctr" -- "${hc[@]}"

# --- 5. the entrypoint as PID 1 of its own PID namespace --------------------------------------
mnt=$(buildah mount "$ctr")
port=$(free_port)
ports+=("$port")
env -i "${image_env[@]}" unshare --pid --fork --mount-proc="$mnt/proc" \
    chroot --userspec="$user" "$mnt" "${entry[@]}" --listen "127.0.0.1:$port" \
    </dev/null >"$work/pid1.log" 2>&1 &
ns_pid=$!
pids+=("$ns_pid")
if wait_ready "$port" "$ns_pid"; then
    server_pid=$(listener_pid "$port")
    nspid=$(awk '/^NSpid:/ {print $NF}' "/proc/$server_pid/status")
    check "entrypoint is PID $nspid in its namespace" test "$nspid" = 1
    kill -TERM "$server_pid"
    wait_exit "$ns_pid" 40
    check "SIGTERM to PID 1 drains and exits 0 (status $exit_status)" test "$exit_status" = 0
else
    fail "entrypoint as PID 1 serves /readyz"
    tail -20 "$work/pid1.log"
fi
buildah umount "$ctr" >/dev/null

finish
