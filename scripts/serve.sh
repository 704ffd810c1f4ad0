#!/usr/bin/env bash
# Installs what the server needs, builds it, and starts multiboxd on its
# defaults (0.0.0.0:8080).  Quick start's first command.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh run
if [ ! -d build-serve ]; then
    meson setup build-serve --buildtype=release -Dtests=disabled
fi
meson compile -C build-serve
exec build-serve/src/service/multiboxd "$@"
