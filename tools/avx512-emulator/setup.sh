#!/bin/bash
# One-time setup for run-in-bochs.sh (Debian bookworm, as root): installs
# Bochs and the ISO tools, fetches a Debian cloud kernel and builds the init,
# into $BOCHS_STATE (default /tmp/blip3-bochs). About a minute.
set -eu
H="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${BOCHS_STATE:-${TMPDIR:-/tmp}/blip3-bochs}"
mkdir -p "$STATE"

DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    bochs bochsbios vgabios cpio xorriso isolinux syslinux-common file gcc libc6-dev > /dev/null

# The kernel the harness was validated with, else the archive's current cloud kernel.
KVER="${KVER:-6.1.0-50-cloud-amd64}"
if [ ! -f "$STATE/kernel/vmlinuz-$KVER" ]; then
    mkdir -p "$STATE/dl" "$STATE/kernel"
    if ! (cd "$STATE/dl" && apt-get download -q "linux-image-$KVER" > /dev/null 2>&1); then
        KVER="$(apt-cache depends linux-image-cloud-amd64 | sed -n 's/.*Depends: linux-image-\(.*-cloud-amd64\)$/\1/p' | head -1)"
        [ -n "$KVER" ] || { echo "setup: no Debian cloud kernel found" >&2; exit 1; }
        (cd "$STATE/dl" && apt-get download -q "linux-image-$KVER" > /dev/null)
    fi
    tmp="$(mktemp -d)"
    dpkg -x "$STATE"/dl/linux-image-"$KVER"_*.deb "$tmp"
    cp "$tmp/boot/vmlinuz-$KVER" "$tmp/boot/config-$KVER" "$STATE/kernel/"
    rm -rf "$tmp"
fi
ln -sfn "kernel/vmlinuz-$KVER" "$STATE/vmlinuz"
gcc -O2 -Wall -static -o "$STATE/init" "$H/init.c"
echo "setup done (kernel $KVER): $H/run-in-bochs.sh STATIC_BINARY [ARGS...]" >&2
