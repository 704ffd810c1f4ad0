#!/usr/bin/env bash
# Runs the core suite's executables under valgrind memcheck: any invalid
# read or write, use of uninitialised memory or leak fails the test.
#
# Usage: tests/hardening/valgrind-core.sh [BUILD_DIR]    (default: build)
# BUILD_DIR must be a build without sanitizers (valgrind and ASan exclude
# each other); it is configured as a release build when it does not exist.
# VALGRIND_SKIP: comma-separated test names left out (CI skips the finite
# differences, "core fd", which alone takes 5 minutes under valgrind).
# Needs valgrind (Debian package valgrind).
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-build}

if ! command -v valgrind >/dev/null 2>&1; then
    echo "valgrind-core: valgrind is not installed (Debian package valgrind)" >&2
    exit 1
fi
if [ ! -d "$dir" ]; then
    meson setup "$dir" --buildtype=release
fi
sanitize=$(meson introspect "$dir" --buildoptions | /usr/bin/python3 -c \
    'import json, sys; print([o["value"] for o in json.load(sys.stdin) if o["name"] == "b_sanitize"][0])')
if [ "$sanitize" != none ]; then
    echo "valgrind-core: $dir is a sanitizer build; give a build without -Db_sanitize" >&2
    exit 1
fi
meson compile -C "$dir" -j "${JOBS:-$(nproc)}"

vg="valgrind --error-exitcode=1 --leak-check=full --show-leak-kinds=definite,indirect"
vg+=" --errors-for-leak-kinds=definite,indirect --track-origins=yes --quiet"
tests=()
if [ -n "${VALGRIND_SKIP:-}" ]; then
    while IFS= read -r name; do
        name=${name#* / } # "multibox:core+golden / core fd" -> "core fd"
        case ",$VALGRIND_SKIP," in *",$name,"*) continue ;; esac
        tests+=("$name")
    done < <(meson test -C "$dir" --suite core --list 2>/dev/null | grep '^[^ ]*:[^ ]* / ')
    echo "valgrind-core: skipping $VALGRIND_SKIP"
fi
# valgrind runs code about 20-50 times slower.
meson test -C "$dir" --suite core --print-errorlogs --wrapper "$vg" \
    --timeout-multiplier "${VALGRIND_TIMEOUT_MULTIPLIER:-20}" "${tests[@]}"
