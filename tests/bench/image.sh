#!/usr/bin/env bash
# Image and build benchmark: the size of what Kiln puts on an image to run containers (init and
# the service binary) beside what a LinuxKit image carries for the same job (Debian's containerd,
# containerd-shim-runc-v2 and runc); the size of the example image; and the time `kiln build`
# takes for yml/example.yml with a warm cache (one build first, then ROUNDS timed builds), and
# `kiln pkg show-tag` of every package then; and
# the peak memory of a build, of the example and of an image holding one file of BIG_MIB MiB.
# Usage: tests/bench/image.sh [ROUNDS]  (RELEASE=directory of the release binaries)
set -euo pipefail
# shellcheck source=tests/bench/harness.sh
. "$(dirname "$0")/harness.sh"

ROUNDS=${1:-${ROUNDS:-10}}
RELEASE=$(realpath "${RELEASE:-target/x86_64-unknown-linux-gnu/release}")
KILN=$RELEASE/kiln

need_tools containerd containerd-shim-runc-v2 runc zstd
[ -x "$KILN" ] || fail "build $KILN first (cargo build --release)"
work=$(mktemp -d /tmp/kiln-bench-image.XXXXXX)
trap 'rm -rf "$work"' EXIT

size() { stat -L -c %s "$1"; }
kib() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1024 }'; }

kiln_total=$(($(size "$RELEASE/init") + $(size "$RELEASE/service")))
debian_total=0
for tool in containerd containerd-shim-runc-v2 runc; do
    debian_total=$((debian_total + $(size "$(command -v "$tool")")))
done
echo "| what | KiB |"
echo "|---|---|"
echo "| Kiln: init | $(kib "$(size "$RELEASE/init")") |"
echo "| Kiln: service (supervisor, runtime, CLI) | $(kib "$(size "$RELEASE/service")") |"
echo "| Kiln: together | $(kib "$kiln_total") |"
for tool in containerd containerd-shim-runc-v2 runc; do
    echo "| Debian: $tool | $(kib "$(size "$(command -v "$tool")")") |"
done
awk -v k="$kiln_total" -v d="$debian_total" \
    'BEGIN { printf "| Debian: together | %.0f (%.1fx Kiln) |\n", d / 1024, d / k }'

# The first build fills the cache (packages of this repository, the kernel); the rest are timed.
"$KILN" build -o "$work" yml/example.yml 2>/dev/null
initrd=$work/example-initrd.img
unpacked=$(zstd -dc "$initrd" | wc -c)
"$KILN" build -o "$work" --name gzip --compression gzip yml/example.yml 2>/dev/null
echo "| example initrd (zstd, the default) | $(kib "$(size "$initrd")") |"
echo "| example initrd (gzip, as LinuxKit's) | $(kib "$(size "$work/gzip-initrd.img")") |"
echo "| example initrd unpacked | $(kib "$unpacked") |"
echo "| example kernel (bzImage) | $(kib "$(size "$work/example-kernel")") |"
echo

read -r min median max <<<"$(timed "$ROUNDS" "$KILN" build -o "$work" yml/example.yml)"
echo "| build | min ms | median ms | max ms |"
echo "|---|---|---|---|"
echo "| kiln build yml/example.yml, warm cache | $min | $median | $max |"
echo
echo "$ROUNDS builds after one that filled the cache."
echo

# The tags of every package of pkg/, nothing changed since they were built (the build above).
packages=(pkg/*/)
read -r min median max <<<"$(timed "$ROUNDS" "$KILN" pkg show-tag "${packages[@]}")"
echo "| show-tag | min ms | median ms | max ms |"
echo "|---|---|---|---|"
echo "| kiln pkg show-tag of the ${#packages[@]} packages of pkg/, nothing changed | $min | $median | $max |"

# Peak memory (GNU time's maximum resident set): the example, warm, and an image whose one
# layer holds a single file of BIG_MIB MiB (a docker-archive made here), built as a tar.
need_tools /usr/bin/time sha256sum
BIG_MIB=${BIG_MIB:-1024}
peak() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1; }
example_peak=$(peak "$KILN" build -o "$work" yml/example.yml)
big=$work/big
mkdir -p "$big/root" "$big/save/l1"
head -c "$((BIG_MIB << 20))" /dev/zero >"$big/root/big"
tar -C "$big/root" -cf "$big/save/l1/layer.tar" big
rm -rf "$big/root"
diff=$(sha256sum "$big/save/l1/layer.tar" | cut -d' ' -f1)
printf '{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$diff" >"$big/config.json"
config=$(sha256sum "$big/config.json" | cut -d' ' -f1).json
mv "$big/config.json" "$big/save/$config"
printf '[{"Config":"%s","RepoTags":["big:1"],"Layers":["l1/layer.tar"]}]' "$config" >"$big/save/manifest.json"
tar -C "$big/save" -cf "$big/big.tar" .
rm -rf "$big/save"
printf 'init:\n  - docker-archive:big.tar\n' >"$big/big.yml"
big_peak=$(cd "$big" && peak "$KILN" build --format tar -o out big.yml)
echo "| build | peak RSS MiB |"
echo "|---|---|"
echo "| kiln build yml/example.yml, warm cache | $((example_peak / 1024)) |"
echo "| kiln build --format tar of one $BIG_MIB MiB file | $((big_peak / 1024)) |"
