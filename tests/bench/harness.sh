# shellcheck shell=bash
# Sourced by the benchmark scripts: the clock, min/median/max, the check for the tools a benchmark
# needs, and the namespaces a benchmark that runs containers runs in.

# BENCH: the script's name, for its messages.
BENCH=$(basename "$0")

fail() { echo "$BENCH: $*" >&2; exit 1; }

# Each tool named must be on PATH.
need_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || fail "$tool is missing"
    done
}

# The wall clock in microseconds.
now_us() { local t=$EPOCHREALTIME; echo "${t/./}"; }

# values... -> "min median max"
stats() {
    printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {m = (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2; print v[1], m, v[NR]}'
}

# ROUNDS COMMAND... -> "min median max" milliseconds of ROUNDS runs of COMMAND (its output dropped)
timed() {
    local rounds=$1 times=() start end
    shift
    for _ in $(seq 1 "$rounds"); do
        start=$(now_us)
        "$@" >/dev/null
        end=$(now_us)
        times+=("$(((end - start) / 1000))")
    done
    stats "${times[@]}"
}

# "... 1.234 s after boot ..." -> 1234 (ms)
after_boot_ms() { sed -n 's/.* \([0-9]*\)\.\([0-9]*\) s after boot.*/\1\2/p' <<<"$1" | sed 's/^0*//;s/^$/0/'; }

# Boots OUT/NAME under `kiln run` ($KILN, with -accel $ACCEL and the network NETWORKING, ARGS
# added) until the console says all $SERVICES services are up, then stops it. Prints "host_ms
# kernel_ms userspace_ms": from starting kiln run to that line on the host's clock, and on the
# guest's, from boot to init's first line and from there to that line. Uses $work for a fifo.
boot_up() { # OUT/NAME NETWORKING ARGS...
    local image=$1 networking=$2 fifo=$work/console start end line init_ms='' up_ms='' pid
    shift 2
    rm -f "$fifo" && mkfifo "$fifo"
    start=$(now_us)
    # A session of its own, so the VM and everything under it is stopped as one group.
    setsid "$KILN" run --accel "$ACCEL" --networking "$networking" --timeout 300 "$@" "$image" </dev/null >"$fifo" 2>&1 &
    pid=$!
    exec 3<"$fifo"
    while IFS= read -r line <&3; do
        line=${line%$'\r'}
        case "$line" in
            "init: kiln init "*" started, "* | "anchor: init started, "*) init_ms=$(after_boot_ms "$line") ;;
            "service: all $SERVICES services up, "* | "anchor: all $SERVICES services up, "*)
                up_ms=$(after_boot_ms "$line")
                break
                ;;
        esac
    done
    end=$(now_us)
    kill -- "-$pid" 2>/dev/null || true
    exec 3<&-
    wait "$pid" 2>/dev/null || true
    if [ -z "$init_ms" ] || [ -z "$up_ms" ]; then fail "$image did not reach all services up"; fi
    echo "$(((end - start) / 1000)) $init_ms $((up_ms - init_ms))"
}

# Runs the calling script again, with the same arguments, as PID 1 of fresh pid, mount, net, uts and
# ipc namespaces with / private (at most SECONDS seconds), then removes the cgroups the runtimes made
# below KILN_BENCH_ID, and exits with its status. In the re-run (KILN_BENCH_ID set) it checks the
# namespaces instead, gives every runtime the same pure cgroup v1 view (the unified hierarchy is
# detached, privately: crun needs a pure view) and brings up lo. The caller exports what the re-run
# needs first.
in_namespaces() { # SECONDS ARGS...
    local seconds=$1 status=0
    shift
    if [ -z "${KILN_BENCH_ID:-}" ]; then
        [ "$(id -u)" -eq 0 ] || fail "needs root"
        need_tools unshare
        export KILN_BENCH_ID="kiln-bench-$$"
        timeout "$seconds" unshare --pid --fork --mount --net --uts --ipc --propagation private --mount-proc \
            "$0" "$@" || status=$?
        local dir
        for dir in /sys/fs/cgroup/*/"$KILN_BENCH_ID"; do
            if [ -d "$dir" ]; then find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true; fi
        done
        exit "$status"
    fi
    [ "$$" -eq 1 ] || fail "not PID 1 of a new pid namespace"
    if grep -q ' / / .*shared:' /proc/self/mountinfo; then fail "/ still propagates"; fi
    if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified; fi
    ip link set lo up
}
