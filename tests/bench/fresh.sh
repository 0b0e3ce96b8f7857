#!/usr/bin/env bash
# The main job on a machine that has built nothing yet: `tools/dev main` (release build, packages,
# the example image and its boot) in a fresh clone of this repository's HEAD, so no target/, with
# empty image and .deb caches. apt's packages, Rust and the crates' sources are as `tools/dev setup`
# left them. Prints the time from the start at which each of tools/dev's steps began, and the total.
# Usage: tests/bench/fresh.sh
set -euo pipefail
# shellcheck source=tests/bench/harness.sh
. "$(dirname "$0")/harness.sh"

work=$(mktemp -d /tmp/kiln-bench-fresh.XXXXXX)
trap 'rm -rf "$work"' EXIT
git clone -q "$(git rev-parse --show-toplevel)" "$work/main"
start=$(now_us)
seconds() { awk -v us="$(($(now_us) - start))" 'BEGIN { printf "%.0f", us / 1e6 }'; }
echo "| step of tools/dev main | began at s |"
echo "|---|---|"
(cd "$work/main" && KILN_CACHE=$work/images KILN_DEB_CACHE=$work/debs timeout 3600 tools/dev main </dev/null 2>&1) |
    while IFS= read -r line; do
        case "$line" in
            "==> "*) echo "| ${line#==> } | $(seconds) |" ;;
        esac
    done
echo "| done | $(seconds) |"
