#!/usr/bin/env bash
# Boot benchmark, two parts, each under `kiln run` with qemu's clock and the guest's.
# 1. yml/example.yml with tests/bench/boot.yml (2 onboot containers, 5 services) built once per
#    initrd compression (zstd, the default, then gzip, lz4 and none), once with the root copied at
#    boot (`copy`: tests/bench/copy.yml) and once as before kiln kept only the modules an image
#    can use (`before`: every module, gzip, the root copied), and booted ROUNDS times each, the
#    images alternating within every round.
# 2. The side-by-side anchor (tests/bench/anchor/): the same 2 onboot containers and 5 services
#    started by Kiln's init and supervisor, and by Debian's containerd and runc the way LinuxKit's
#    init starts them, alternating, ROUNDS times each.
# Each boot is timed on the host from the start of `kiln run` (which starts qemu) to the line
# saying all 5 services are up; the guest's own clock gives the userspace part, from init's first
# line ("kiln init ... started, T s after boot", "anchor: init started, T s after boot") to that
# line ("all 5 services up, T s after boot"), and the kernel's part before it. The VM is stopped
# once the line is read.
# Usage: tests/bench/boot.sh [ROUNDS]  (KILN=path to kiln, ACCEL=tcg|kvm, COMPRESSIONS="zstd gzip",
# STACKS="" to leave the anchor out)
set -euo pipefail
# shellcheck source=tests/bench/harness.sh
. "$(dirname "$0")/harness.sh"

ROUNDS=${1:-${ROUNDS:-10}}
KILN=$(realpath "${KILN:-target/x86_64-unknown-linux-gnu/release/kiln}")
ACCEL=${ACCEL:-tcg}
COMPRESSIONS=${COMPRESSIONS:-zstd gzip lz4 none}
STACKS=${STACKS-kiln containerd}
SERVICES=5

need_tools qemu-system-x86_64
[ -x "$KILN" ] || fail "build $KILN first (cargo build --release)"
work=$(mktemp -d /tmp/kiln-bench-boot.XXXXXX)
trap 'rm -rf "$work"' EXIT
for c in $COMPRESSIONS; do
    "$KILN" build -o "$work" --name "boot-$c" --compression "$c" yml/example.yml tests/bench/boot.yml >/dev/null
done
example=(yml/example.yml tests/bench/boot.yml)
"$KILN" build -o "$work" --name boot-copy "${example[@]}" tests/bench/copy.yml >/dev/null
"$KILN" build -o "$work" --name boot-before --compression gzip "${example[@]}" tests/bench/copy.yml \
    tests/bench/all-modules.yml >/dev/null
IMAGES="$COMPRESSIONS copy before"
for stack in $STACKS; do
    "$KILN" build -o "$work" --name "anchor-$stack" "tests/bench/anchor/$stack.yml" tests/bench/anchor/services.yml >/dev/null
done

# Per compression, the figures of every boot, space-separated.
declare -A host kernel userspace
for _ in $(seq 1 "$ROUNDS"); do
    for stack in $STACKS; do
        figures=$(boot_up "$work/anchor-$stack" none)
        read -r h k u <<<"$figures"
        host[$stack]+="$h " kernel[$stack]+="$k " userspace[$stack]+="$u "
    done
    for c in $IMAGES; do
        figures=$(boot_up "$work/boot-$c" user,restrict=on)
        read -r h k u <<<"$figures"
        host[$c]+="$h " kernel[$c]+="$k " userspace[$c]+="$u "
    done
done

# shellcheck disable=SC2086 # the lists are meant to split
row() { read -r min median max <<<"$(stats $2)"; echo "| $1 | $min | $median | $max |"; }
first=${COMPRESSIONS%% *}
echo "| part ($first initrd) | min ms | median ms | max ms |"
echo "|---|---|---|---|"
row "qemu start to all services up (host clock)" "${host[$first]}"
row "kernel: boot to init's first line (guest clock)" "${kernel[$first]}"
row "userspace: init's first line to all services up (guest clock)" "${userspace[$first]}"
echo
# KEY IMAGE -> one table row: KEY, the initrd's size, the medians, the userspace min and max.
# shellcheck disable=SC2086
medians() {
    local size h k umin u umax
    size=$(($(stat -c %s "$work/$2-initrd.img") / 1024))
    read -r _ h _ <<<"$(stats ${host[$1]})"
    read -r _ k _ <<<"$(stats ${kernel[$1]})"
    read -r umin u umax <<<"$(stats ${userspace[$1]})"
    echo "| $1 | $size | $h | $k | $umin / $u / $umax |"
}
columns="initrd KiB | qemu start to all up, median ms | kernel part, median ms | userspace part, min / median / max ms |"
echo "| image (initrd compression, or variant) | $columns"
echo "|---|---|---|---|---|"
for c in $IMAGES; do medians "$c" "boot-$c"; done
echo
if [ -n "$STACKS" ]; then
    echo "| anchor: 2 onboot, 5 services started by | $columns"
    echo "|---|---|---|---|---|"
    for stack in $STACKS; do medians "$stack" "anchor-$stack"; done
    # shellcheck disable=SC2086
    read -r _ kiln_u _ <<<"$(stats ${userspace[kiln]})"
    # shellcheck disable=SC2086
    read -r _ containerd_u _ <<<"$(stats ${userspace[containerd]})"
    echo
    echo "Kiln's userspace part is $(awk -v k="$kiln_u" -v c="$containerd_u" 'BEGIN {printf "%.2f", k / c}')x the containerd stack's (median)."
    echo
fi
echo "$ROUNDS boots per compression of yml/example.yml + tests/bench/boot.yml (2 onboot, $SERVICES services) and per anchor stack, alternating, qemu -accel $ACCEL."
