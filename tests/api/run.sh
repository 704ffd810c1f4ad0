#!/usr/bin/env bash
# Runs the OpenAPI checks of api/openapi.yaml with the npm tools pinned in
# tests/api/package-lock.json (installed with `npm ci` on first use):
#   run.sh lint                        redocly lint (recommended ruleset)
#   run.sh live MULTIBOXD GOLDEN_DIR   live responses validated with ajv
#   run.sh all  MULTIBOXD GOLDEN_DIR   both
# Exits 77 (meson's "skipped") when node or npm is missing, or when no
# multiboxd path is given for the live check.  Needs Node >= 18 and npm >= 9
# (Debian 12's); talks only to the npm registry (npm ci) and 127.0.0.1.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
spec="$here/../../api/openapi.yaml"
what=${1:-all}

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "SKIP: node and npm are needed (scripts/install-deps.sh test installs them)"
    exit 77
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 18 ]; then
    echo "SKIP: Node.js >= 18 needed, found $(node --version)"
    exit 77
fi

# One npm ci at a time (meson runs the two tests in parallel), and only when
# node_modules is missing or older than the lock file.
install_tools() {
    (
        flock 9
        stamp="$here/node_modules/.package-lock.json"
        if [ ! -f "$stamp" ] || [ "$here/package-lock.json" -nt "$stamp" ]; then
            echo "== npm ci in $here"
            (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
        fi
    ) 9>"$here/.npm-install.lock"
}

# redocly: no usage telemetry, no update check.
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true NO_UPDATE_NOTIFIER=1

run_lint() {
    echo "== redocly lint $spec"
    (cd "$here" && node node_modules/@redocly/cli/bin/cli.js lint --config redocly.yaml "$spec")
}

run_live() {
    local exe=${1:-} golden=${2:-${MBX_GOLDEN_DIR:-}}
    if [ -z "$exe" ]; then
        echo "SKIP: no multiboxd given (the service target multiboxd_exe is not defined yet)"
        return 77
    fi
    if [ -z "$golden" ]; then
        echo "usage: run.sh live MULTIBOXD GOLDEN_DIR" >&2
        return 2
    fi
    echo "== live responses of $exe against $spec"
    node "$here/validate_live.mjs" "$exe" "$golden" "$spec"
}

case "$what" in
    lint)
        install_tools
        run_lint
        ;;
    live)
        install_tools
        run_live "${2:-}" "${3:-}"
        ;;
    all)
        install_tools
        run_lint
        run_live "${2:-}" "${3:-}"
        ;;
    *)
        echo "usage: run.sh lint | live MULTIBOXD GOLDEN_DIR | all MULTIBOXD GOLDEN_DIR" >&2
        exit 2
        ;;
esac
