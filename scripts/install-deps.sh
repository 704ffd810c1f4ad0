#!/usr/bin/env bash
# Installs the Debian 12 packages multibox needs to build, run and test.
# Usage: scripts/install-deps.sh [run|test]   (default: test, the superset)
# Runs apt-get as root, or through sudo for another user.
set -euo pipefail

what=${1:-test}
run_pkgs=(meson ninja-build pkg-config gcc libc6-dev
          libjansson-dev libmicrohttpd-dev libuv1-dev)
# curl and iproute2 (ss): the scale-out test polls readiness with curl and
# picks free ports with ss; a minimal Debian has neither on its own.
test_pkgs=(libcmocka-dev libcurl4-openssl-dev python3 python3-numpy
           shellcheck yamllint nginx clang libclang-rt-14-dev
           wrk valgrind openssl python3-torch python3-torchvision
           curl iproute2)

pkgs=("${run_pkgs[@]}")
if [ "$what" = test ]; then
    pkgs+=("${test_pkgs[@]}")
    # Node.js runs the OpenAPI lint; a Node.js that came from elsewhere
    # (with its own npm) is kept, else Debian's nodejs and npm are installed.
    if ! command -v npm >/dev/null 2>&1; then
        pkgs+=(nodejs npm)
    fi
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
    sudo_cmd=(sudo)
fi

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    "${sudo_cmd[@]}" apt-get update -q
    # env, not an assignment before sudo: sudo's env_reset drops DEBIAN_FRONTEND
    # on its way to apt-get, and debconf would then ask on the user's terminal.
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
