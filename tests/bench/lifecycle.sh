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

if [ -z "${KILN_BENCH_ID:-}" ]; then
    [ "$(id -u)" -eq 0 ] || { echo "lifecycle.sh: needs root" >&2; exit 1; }
    for tool in runc crun /usr/bin/time unshare busybox; do
        command -v "$tool" >/dev/null || { echo "lifecycle.sh: $tool is missing" >&2; exit 1; }
    done
    [ -x "$SERVICE" ] || { echo "lifecycle.sh: build $SERVICE first (cargo build --release)" >&2; exit 1; }
    export KILN_BENCH_ID="kiln-bench-$$" SERVICE ROUNDS RSS_ROUNDS
    status=0
    timeout 1800 unshare --pid --fork --mount --net --uts --ipc --propagation private --mount-proc \
        "$0" "$ROUNDS" || status=$?
    # The namespace is gone; remove the cgroups the runtimes made below ours (children first).
    for dir in /sys/fs/cgroup/*/"$KILN_BENCH_ID"; do
        [ -d "$dir" ] && find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null
    done
    exit "$status"
fi

[ "$$" -eq 1 ] || { echo "lifecycle.sh: not PID 1 of a new pid namespace" >&2; exit 1; }
grep -q ' / / .*shared:' /proc/self/mountinfo && { echo "lifecycle.sh: / still propagates" >&2; exit 1; }
# One cgroup view for every runtime: v1 controllers only (the detach is private to this namespace).
if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified; fi

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

now_us() { local t=$EPOCHREALTIME; echo "${t/./}"; }

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

stats() { # values... -> "min median max"
    printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {m = (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2; print v[1], m, v[NR]}'
}

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
