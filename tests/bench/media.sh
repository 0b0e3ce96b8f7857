#!/usr/bin/env bash
# Disks and ISOs beside kernel+initrd: yml/example.yml with tests/bench/boot.yml (2 onboot
# containers, 5 services) built once in every bootable format, then each booted ROUNDS times
# under `kiln run --format`, the formats alternating within every round, timed as tests/bench/boot.sh
# times a boot: from starting `kiln run` to "all 5 services up" on the host's clock, and the
# guest's split into the kernel's part and userspace's. Also each format's size and the time a
# warm build of it alone takes.
# Usage: tests/bench/media.sh [ROUNDS]  (KILN=path to kiln, ACCEL=tcg|kvm, FORMATS="raw-efi iso-bios")
set -euo pipefail
# shellcheck source=tests/bench/harness.sh
. "$(dirname "$0")/harness.sh"

ROUNDS=${1:-${ROUNDS:-5}}
KILN=$(realpath "${KILN:-target/x86_64-unknown-linux-gnu/release/kiln}")
ACCEL=${ACCEL:-tcg}
FORMATS=${FORMATS:-kernel+initrd raw-efi qcow2-efi iso-efi raw-bios iso-bios}
SERVICES=5

need_tools qemu-system-x86_64
[ -x "$KILN" ] || fail "build $KILN first (cargo build --release)"
work=$(mktemp -d /tmp/kiln-bench-media.XXXXXX)
trap 'rm -rf "$work"' EXIT
example=(yml/example.yml tests/bench/boot.yml)
"$KILN" build -o "$work" --name media --format "${FORMATS// /,}" "${example[@]}" 2>/dev/null

declare -A host kernel userspace
for _ in $(seq 1 "$ROUNDS"); do
    for format in $FORMATS; do
        read -r h k u <<<"$(boot_up "$work/media" user,restrict=on --format "$format")"
        host[$format]+="$h " kernel[$format]+="$k " userspace[$format]+="$u "
    done
done

# The size in KiB of what FORMAT wrote (kernel+initrd: the kernel and the initrd).
size_kib() {
    local files
    case "$1" in
        kernel+initrd) files=("$work/media-kernel" "$work/media-initrd.img") ;;
        raw-efi) files=("$work/media-efi.img") ;;
        qcow2-efi) files=("$work/media-efi.qcow2") ;;
        iso-efi) files=("$work/media-efi.iso") ;;
        raw-bios) files=("$work/media-bios.img") ;;
        iso-bios) files=("$work/media.iso") ;;
        *) fail "unknown format $1" ;;
    esac
    local total=0 file
    for file in "${files[@]}"; do total=$((total + $(stat -c %s "$file"))); done
    echo $((total / 1024))
}

# A warm build of FORMAT alone, its messages dropped.
build_warm() { "$KILN" build -o "$work/warm" --name media --format "$1" "${example[@]}" 2>/dev/null; }

echo "| format | KiB | warm build, median ms | qemu start to all up, min / median / max ms | kernel part, median ms | userspace part, median ms |"
echo "|---|---|---|---|---|---|"
# shellcheck disable=SC2086 # the lists are meant to split
for format in $FORMATS; do
    build_warm "$format"
    read -r _ b _ <<<"$(timed 3 build_warm "$format")"
    read -r hmin h hmax <<<"$(stats ${host[$format]})"
    read -r _ k _ <<<"$(stats ${kernel[$format]})"
    read -r _ u _ <<<"$(stats ${userspace[$format]})"
    echo "| $format | $(size_kib "$format") | $b | $hmin / $h / $hmax | $k | $u |"
done
echo
echo "$ROUNDS boots per format of yml/example.yml + tests/bench/boot.yml (2 onboot, $SERVICES services), alternating, qemu -accel $ACCEL, --networking user,restrict=on."
