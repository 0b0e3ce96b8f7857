#!/usr/bin/env bash
# OCI conformance beside runc and crun: the runtime-tools validation suite (../shared/conformance, see
# tests/conformance) run against Kiln's `service runtime`, Debian's crun and Debian's runc, one after the
# other in one run, in the same cgroup view. Prints a markdown table: binaries by status and test points.
# Runs as root, as PID 1 of fresh pid/mount/net/uts/ipc namespaces with / private (it re-executes itself
# under unshare), with a pure cgroup v1 view. Usage: tests/bench/conformance.sh  (SERVICE=path to the
# service binary; the TAP of each runtime goes to target/conformance-bench/RUNTIME)
set -euo pipefail

SERVICE=$(realpath "${SERVICE:-target/x86_64-unknown-linux-gnu/release/service}")
SUITE=$(realpath "$(dirname "$0")/../../..")/shared/conformance
OUT=$(realpath -m "${OUT:-target/conformance-bench}")
RUNTIMES=(kiln crun runc)

# shellcheck source=tests/bench/harness.sh
. "$(dirname "$0")/harness.sh"
if [ -z "${KILN_BENCH_ID:-}" ]; then
    need_tools runc crun go make
    [ -x "$SERVICE" ] || fail "build $SERVICE first (cargo build --release)"
    [ -x "$SUITE/run.sh" ] || fail "$SUITE/run.sh is missing (it comes with ../shared)"
    export SERVICE SUITE OUT
fi
in_namespaces 3600

rm -rf "$OUT"
mkdir -p "$OUT"
cat > "$OUT/kiln" <<WRAPPER
#!/bin/sh
exec "$SERVICE" runtime --root /run/kiln-conformance --cgroup-parent /$KILN_BENCH_ID "\$@"
WRAPPER
chmod 755 "$OUT/kiln"

echo "| runtime | binaries PASS | NOPOINTS | NOPOINTS-ERR | FAIL | FATAL | test points passed / failed |"
echo "|---|---|---|---|---|---|---|"
for runtime in "${RUNTIMES[@]}"; do
    case $runtime in
        kiln) path=$OUT/kiln name="Kiln \`service runtime\`" ;;
        *) path=$(command -v "$runtime") name="$runtime $("$runtime" --version | awk 'NR == 1 { print $NF }') (Debian)" ;;
    esac
    "$SUITE/run.sh" "$path" "$OUT/$runtime" > "$OUT/$runtime.log" 2>&1 </dev/null || fail "$runtime: see $OUT/$runtime.log"
    awk -F'\t' -v name="$name" '
        NR > 1 { count[$2]++; pass += $3; failed += $4 }
        END {
            printf "| %s | %d | %d | %d | %d | %d | %d / %d |\n", name, count["PASS"], count["NOPOINTS"],
                count["NOPOINTS-ERR"], count["FAIL"], count["FATAL"], pass, failed
        }' "$OUT/$runtime/summary.tsv"
done
