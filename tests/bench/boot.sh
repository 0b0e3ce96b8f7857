#!/usr/bin/env bash
# Boot benchmark: yml/example.yml with tests/bench/boot.yml (2 onboot containers, 5 services)
# built once, then booted ROUNDS times under `kiln run`. Each boot is timed on the host from the
# start of `kiln run` (which starts qemu) to the supervisor's "all 5 services up" line on the
# console; the guest's own clock gives the userspace part, from init's first line ("kiln init
# ... started, T s after boot") to that line ("all 5 services up, T s after boot"), and the
# kernel's part before it. The VM is stopped once the line is read.
# Usage: tests/bench/boot.sh [ROUNDS]  (KILN=path to kiln, ACCEL=tcg|kvm)
set -euo pipefail
# shellcheck source=tests/bench/harness.sh
. "$(dirname "$0")/harness.sh"

ROUNDS=${1:-${ROUNDS:-10}}
KILN=$(realpath "${KILN:-target/x86_64-unknown-linux-gnu/release/kiln}")
ACCEL=${ACCEL:-tcg}
SERVICES=5

need_tools qemu-system-x86_64
[ -x "$KILN" ] || fail "build $KILN first (cargo build --release)"
work=$(mktemp -d /tmp/kiln-bench-boot.XXXXXX)
trap 'rm -rf "$work"' EXIT
"$KILN" build -o "$work" --name boot yml/example.yml tests/bench/boot.yml >/dev/null

# "... 1.234 s after boot ..." -> 1234 (ms)
after_boot_ms() { sed -n 's/.* \([0-9]*\)\.\([0-9]*\) s after boot.*/\1\2/p' <<<"$1" | sed 's/^0*//;s/^$/0/'; }

boot() { # -> "host_ms kernel_ms userspace_ms"
    local fifo=$work/console start end line init_ms='' up_ms='' pid
    rm -f "$fifo" && mkfifo "$fifo"
    start=$(now_us)
    # A session of its own, so the VM and everything under it is stopped as one group.
    setsid "$KILN" run --accel "$ACCEL" --networking user,restrict=on --timeout 300 "$work/boot" </dev/null >"$fifo" 2>&1 &
    pid=$!
    exec 3<"$fifo"
    while IFS= read -r line <&3; do
        line=${line%$'\r'}
        case "$line" in
            "init: kiln init "*" started, "*) init_ms=$(after_boot_ms "$line") ;;
            "service: all $SERVICES services up, "*) up_ms=$(after_boot_ms "$line"); break ;;
        esac
    done
    end=$(now_us)
    kill -- "-$pid" 2>/dev/null || true
    exec 3<&-
    wait "$pid" 2>/dev/null || true
    if [ -z "$init_ms" ] || [ -z "$up_ms" ]; then fail "the boot did not reach all services up"; fi
    echo "$(((end - start) / 1000)) $init_ms $((up_ms - init_ms))"
}

declare -a host kernel userspace
for _ in $(seq 1 "$ROUNDS"); do
    figures=$(boot)
    read -r h k u <<<"$figures"
    host+=("$h") kernel+=("$k") userspace+=("$u")
done

echo "| part | min ms | median ms | max ms |"
echo "|---|---|---|---|"
row() { read -r min median max <<<"$(stats "${@:2}")"; echo "| $1 | $min | $median | $max |"; }
row "qemu start to all services up (host clock)" "${host[@]}"
row "kernel: boot to init's first line (guest clock)" "${kernel[@]}"
row "userspace: init's first line to all services up (guest clock)" "${userspace[@]}"
echo
echo "$ROUNDS boots of yml/example.yml + tests/bench/boot.yml (2 onboot, $SERVICES services), qemu -accel $ACCEL."
