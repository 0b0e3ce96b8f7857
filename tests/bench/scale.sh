#!/usr/bin/env bash
# Services at scale: time until N services (busybox `sleep`) are all running, and the memory of the
# management stack once they are, for Kiln's supervisor (`service system-init` on a /containers tree
# of N services) and for Debian's containerd + runc (containerd started, then each service started
# with its client, `ctr run -d`, one containerd-shim-runc-v2 per container, as LinuxKit runs its
# services), alternating in every round, in one run. Both get the same OCI spec (containerd's
# default, `ctr oci spec`, with a shared read-only busybox root) and write each service's output to
# a file. Memory is the summed RSS and PSS (/proc/PID/smaps_rollup) of the stack's own processes:
# the supervisor for Kiln; containerd and every shim for containerd (runc exits once a container
# runs). The services themselves are the same in both and not counted.
# Runs as root, as PID 1 of fresh pid/mount/net/uts/ipc namespaces with / private (it re-executes
# itself under unshare), with a pure cgroup v1 view, every path under a tmpfs of its own.
# Usage: tests/bench/scale.sh [ROUNDS] [SERVICES]  (SERVICE=path to the service binary)
set -euo pipefail

ROUNDS=${1:-${ROUNDS:-5}}
COUNT=${2:-${COUNT:-50}}
SERVICE=$(realpath "${SERVICE:-target/x86_64-unknown-linux-gnu/release/service}")
STACKS=(kiln containerd)

# shellcheck source=tests/bench/harness.sh
. "$(dirname "$0")/harness.sh"
if [ -z "${KILN_BENCH_ID:-}" ]; then
    need_tools containerd ctr containerd-shim-runc-v2 runc jq busybox
    [ -x "$SERVICE" ] || fail "build $SERVICE first (cargo build --release)"
    export SERVICE ROUNDS COUNT
fi
in_namespaces 3600 "$ROUNDS" "$COUNT"

work=/tmp/kiln-bench-scale
mkdir -p "$work" && mount -t tmpfs tmpfs "$work"
rootfs=$work/rootfs
mkdir -p "$rootfs/"{bin,proc,dev,sys,tmp,etc,run}
cp /bin/busybox "$rootfs/bin/busybox"
ln -s busybox "$rootfs/bin/sleep"
ln -s busybox "$rootfs/bin/sh"

# The Kiln tree: N bundles with containerd's default spec, the shared root and `sleep`.
tree=$work/containers
spec=$(ctr oci spec)
for n in $(seq -w 1 "$COUNT"); do
    mkdir -p "$tree/services/svc-$n"
    jq --arg root "$rootfs" --arg name "svc-$n" \
        '.process.args = ["/bin/sleep", "2147483647"] | .root = {path: $root, readonly: true} | .hostname = $name' \
        <<<"$spec" > "$tree/services/svc-$n/config.json"
    # sleep, PID 1 of its namespace, ignores SIGTERM: stopped with SIGKILL at once after the round.
    echo '{"stopSignal": "SIGKILL"}' > "$tree/services/svc-$n/runtime.json"
done
cat > "$work/containerd.toml" <<'TOML'
version = 2
disabled_plugins = ["io.containerd.grpc.v1.cri"]
TOML

# Sums VmRSS and Pss (KiB) over the given pids: "rss pss".
memory() {
    local rss=0 pss=0 pid kib
    for pid in "$@"; do
        kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
        rss=$((rss + kib))
        kib=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup")
        pss=$((pss + kib))
    done
    echo "$rss $pss"
}

# Kiln: the supervisor started on the tree; running once it says every service is up.
kiln_round() { # ROUND -> "microseconds rss pss processes"
    local dir=$work/kiln-$1 start end fifo line pid running
    mkdir -p "$dir"
    fifo=$dir/events && mkfifo "$fifo"
    start=$(now_us)
    "$SERVICE" system-init --path "$tree" --log-dir "$dir/log" --oneshot-log-dir "$dir/log" \
        --notify-dir "$dir/notify" --socket "$dir/service.sock" --state-dir "$dir/records" \
        --root "$dir/state" --cgroup-parent "/$KILN_BENCH_ID/kiln-$1" >"$fifo" 2>"$dir/stderr" &
    pid=$!
    exec 3<"$fifo"
    while IFS= read -r line <&3; do
        case "$line" in "service: all $COUNT services up"*) break ;; esac
    done
    end=$(now_us)
    running=$("$SERVICE" list --socket "$dir/service.sock" --json | jq '[.services[] | select(.state == "running")] | length')
    [ "$running" -eq "$COUNT" ] || fail "kiln: $running of $COUNT running"
    echo "$((end - start)) $(memory "$pid") 1"
    "$SERVICE" shutdown --socket "$dir/service.sock" >/dev/null
    cat <&3 >/dev/null
    exec 3<&-
    wait "$pid"
}

# containerd: the daemon started, its socket awaited, then one `ctr run -d` per service.
containerd_round() { # ROUND -> "microseconds rss pss processes"
    local dir=$work/containerd-$1 start end pid n shims running
    mkdir -p "$dir/log"
    local ctr=(ctr --address "$dir/containerd.sock" --namespace services.linuxkit)
    start=$(now_us)
    containerd --config "$work/containerd.toml" --root "$dir/root" --state "$dir/state" \
        --address "$dir/containerd.sock" --log-level error >"$dir/stdout" 2>"$dir/stderr" &
    pid=$!
    until [ -S "$dir/containerd.sock" ]; do
        kill -0 "$pid" 2>/dev/null || fail "containerd exited: $(cat "$dir/stderr")"
        sleep 0.01
    done
    for n in $(seq -w 1 "$COUNT"); do
        "${ctr[@]}" run -d --rootfs --read-only --cgroup "/$KILN_BENCH_ID/containerd-$1/svc-$n" \
            --log-uri "file://$dir/log/svc-$n.log" "$rootfs" "svc-$n" /bin/sleep 2147483647 >/dev/null
    done
    end=$(now_us)
    running=$("${ctr[@]}" task ls | grep -c ' RUNNING$' || true)
    [ "$running" -eq "$COUNT" ] || fail "containerd: $running of $COUNT running"
    # containerd-shim-runc-v2, as the kernel shortens the name.
    mapfile -t shims < <(pgrep -x containerd-shim)
    echo "$((end - start)) $(memory "$pid" "${shims[@]}") $((1 + ${#shims[@]}))"
    for n in $(seq -w 1 "$COUNT"); do
        "${ctr[@]}" task kill -s SIGKILL "svc-$n" 2>/dev/null || true
    done
    for n in $(seq -w 1 "$COUNT"); do
        until "${ctr[@]}" task delete "svc-$n" >/dev/null 2>&1; do sleep 0.05; done
        "${ctr[@]}" container delete "svc-$n" >/dev/null
    done
    kill "$pid"
    wait "$pid" || true
}

declare -A times rss pss procs
for round in $(seq 1 "$ROUNDS"); do
    for stack in "${STACKS[@]}"; do
        # Not in a subshell: the daemons stay children of this shell, to be waited for.
        "${stack}_round" "$round" >"$work/figures"
        read -r us kib_rss kib_pss count <"$work/figures"
        times[$stack]+="$us "
        rss[$stack]+="$kib_rss "
        pss[$stack]+="$kib_pss "
        procs[$stack]=$count
    done
done

read -r _ kiln_time _ <<<"$(stats ${times[kiln]})"
read -r _ kiln_pss _ <<<"$(stats ${pss[kiln]})"
echo "| stack | processes | min ms | median ms | max ms | median vs Kiln | RSS KiB | PSS KiB | PSS vs Kiln |"
echo "|---|---|---|---|---|---|---|---|---|"
for stack in "${STACKS[@]}"; do
    read -r min median max <<<"$(stats ${times[$stack]})"
    read -r _ rss_median _ <<<"$(stats ${rss[$stack]})"
    read -r _ pss_median _ <<<"$(stats ${pss[$stack]})"
    awk -v s="$stack" -v p="${procs[$stack]}" -v min="$min" -v med="$median" -v max="$max" -v k="$kiln_time" \
        -v rss="$rss_median" -v pss="$pss_median" -v kp="$kiln_pss" \
        'BEGIN { printf "| %s | %d | %.0f | %.0f | %.0f | %.2fx | %d | %d | %.2fx |\n", s, p, min/1000, med/1000, max/1000, med/k, rss, pss, pss/kp }'
done
echo
echo "$ROUNDS rounds, stacks alternating within each round; $COUNT busybox sleep services; RSS and PSS medians."
