#!/usr/bin/env bash
# Container lifecycle benchmark: `run` (create, start, wait, delete) of a busybox `echo` bundle through
# Kiln's `service runtime`, Debian's crun and Debian's runc, alternating runtime by runtime in every round,
# in one run. Prints a markdown table: min/median/max wall time and the peak RSS of each runtime.
# Runs as root, as PID 1 of fresh pid/mount/net/uts/ipc namespaces with / private (it re-executes itself
# under unshare), with a pure cgroup v1 view (the unified mount is detached inside), so all runtimes see
# the same cgroups. Usage: tests/bench/lifecycle.sh [ROUNDS]  (SERVICE=path to the service binary)
set -euo pipefail

ROUNDS=${1:-${ROUNDS:-100}}
RSS_ROUNDS=${RSS_ROUNDS:-10}
SERVICE=$(realpath "${SERVICE:-target/x86_64-unknown-linux-gnu/release/service}")
RUNTIMES=(kiln crun runc)

# shellcheck source=tests/bench/harness.sh
. "$(dirname "$0")/harness.sh"
if [ -z "${KILN_BENCH_ID:-}" ]; then
    need_tools runc crun /usr/bin/time busybox
    [ -x "$SERVICE" ] || fail "build $SERVICE first (cargo build --release)"
    export SERVICE ROUNDS RSS_ROUNDS
fi
in_namespaces 1800 "$ROUNDS"

work=/tmp/kiln-bench
mkdir -p "$work" && mount -t tmpfs tmpfs "$work"
bundle=$work/bundle
mkdir -p "$bundle/rootfs/"{bin,proc,dev,sys,tmp,etc}
cp /bin/busybox "$bundle/rootfs/bin/busybox"
ln -s busybox "$bundle/rootfs/bin/echo"
cat > "$bundle/config.json" <<JSON
{
  "ociVersion": "1.0.2",
  "process": {
    "terminal": false, "user": {"uid": 0, "gid": 0}, "args": ["echo", "hello"],
    "env": ["PATH=/bin"], "cwd": "/",
    "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]},
    "noNewPrivileges": true
  },
  "root": {"path": "rootfs", "readonly": true},
  "hostname": "bench",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755", "size=1024k"]}
  ],
  "linux": {
    "cgroupsPath": "/$KILN_BENCH_ID/bench",
    "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}, {"type": "network"}]
  }
}
JSON

lifecycle() { # RUNTIME ID: one foreground run, output discarded
    case "$1" in
        kiln) "$SERVICE" runtime --root "$work/state-kiln" run --bundle "$bundle" "$2" ;;
        crun) crun --root "$work/state-crun" run --bundle "$bundle" "$2" ;;
        runc) runc --root "$work/state-runc" run --bundle "$bundle" "$2" ;;
    esac >/dev/null
}

declare -A times
for round in $(seq 1 "$ROUNDS"); do
    for rt in "${RUNTIMES[@]}"; do
        start=$(now_us)
        lifecycle "$rt" "$rt-$round"
        end=$(now_us)
        times[$rt]+="$((end - start)) "
    done
done

declare -A rss
for round in $(seq 1 "$RSS_ROUNDS"); do
    for rt in "${RUNTIMES[@]}"; do
        kib=$( { /usr/bin/time -f '%M' bash -c "$(declare -f lifecycle); work=$work bundle=$bundle SERVICE=$SERVICE lifecycle $rt rss-$rt-$round" ; } 2>&1 >/dev/null | tail -1)
        rss[$rt]+="$kib "
    done
done

read -r _ kiln_median _ <<<"$(stats ${times[kiln]})"
echo "| runtime | min ms | median ms | max ms | median vs Kiln | peak RSS KiB (median of $RSS_ROUNDS) |"
echo "|---|---|---|---|---|---|"
for rt in "${RUNTIMES[@]}"; do
    read -r min median max <<<"$(stats ${times[$rt]})"
    read -r _ rss_median _ <<<"$(stats ${rss[$rt]})"
    awk -v rt="$rt" -v min="$min" -v med="$median" -v max="$max" -v k="$kiln_median" -v rss="$rss_median" \
        'BEGIN { printf "| %s | %.1f | %.1f | %.1f | %.2fx | %d |\n", rt, min/1000, med/1000, max/1000, med/k, rss }'
done
echo
echo "$ROUNDS rounds, runtimes alternating within each round; busybox echo bundle, pure cgroup v1 view."
