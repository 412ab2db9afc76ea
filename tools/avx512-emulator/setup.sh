#!/bin/bash
# One-time setup for run-in-bochs.sh (Debian bookworm, as root): installs
# the ISO tools, unpacks Bochs 3.0 from Debian trixie, fetches a Debian
# cloud kernel and builds the init, into $BOCHS_STATE (default
# /tmp/blip3-bochs). About a minute.
set -eu
H="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${BOCHS_STATE:-${TMPDIR:-/tmp}/blip3-bochs}"
mkdir -p "$STATE"

# The ISO tools, and the system libraries trixie's bochs-bin links against
# beyond the ones unpacked below (its GTK, sound and readline front ends are
# linked in even though runs use the VNC display): bookworm's builds of the
# libraries its package depends on.
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    vgabios cpio xorriso isolinux syslinux-common file gcc libc6-dev curl xz-utils \
    libasound2 libglib2.0-0 libgtk-3-0 libpango-1.0-0 libpulse0 libreadline8 libsamplerate0 \
    > /dev/null

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
# Bochs 3.0 (Debian trixie) for the "sapphire_rapids" CPU model: AVX-512
# BF16 and FP16, AMX tiles, AVX-VNNI. Bookworm's Bochs 2.7 stops at
# "tigerlake". The trixie binary runs with trixie's own loader and libraries,
# unpacked under $STATE/bochs3 (nothing is installed system-wide).
B3="$STATE/bochs3"
if [ ! -x "$B3/bochs-bin" ]; then
    mkdir -p "$B3/debs" "$B3/root"
    MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
    curl -fsS "$MIRROR/dists/trixie/main/binary-amd64/Packages.xz" | xz -dc > "$B3/Packages"
    for p in bochs bochsbios libc6 libstdc++6 libgcc-s1 libltdl7; do
        f="$(awk -v p="$p" '$1=="Package:"{cur=$2} $1=="Filename:" && cur==p {print $2; exit}' "$B3/Packages")"
        [ -n "$f" ] || { echo "setup: $p not in trixie's index" >&2; exit 1; }
        curl -fsS -o "$B3/debs/$(basename "$f")" "$MIRROR/$f"
        dpkg-deb -x "$B3/debs/$(basename "$f")" "$B3/root"
    done
    rm -f "$B3/Packages"
    L="$B3/root/usr/lib/x86_64-linux-gnu"
    printf '#!/bin/sh\nLTDL_LIBRARY_PATH="%s" exec "%s" --library-path "%s" "%s" "$@"\n' \
        "$L/bochs/plugins" "$L/ld-linux-x86-64.so.2" "$L" "$B3/root/usr/bin/bochs-bin" > "$B3/bochs-bin"
    chmod +x "$B3/bochs-bin"
fi
gcc -O2 -Wall -static -o "$STATE/init" "$H/init.c"
echo "setup done (kernel $KVER): $H/run-in-bochs.sh STATIC_BINARY [ARGS...]" >&2
