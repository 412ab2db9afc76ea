#!/usr/bin/env bash
# Runs the kernel tests (crates/blip3-kernels) with their NEON paths: cross-
# compiled for aarch64-unknown-linux-gnu and run under qemu user-mode
# emulation, and the detection test asserts that NEON was the path taken.
#
#   tools/test-aarch64.sh [TEST FILTERS...]
#
# Debian as root: installs gcc-aarch64-linux-gnu (the linker),
# libc6-dev-arm64-cross and qemu-user when missing, and the Rust target.
# Builds into target/aarch64 (AARCH64_TARGET_DIR), apart from the host build.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TARGET=aarch64-unknown-linux-gnu

missing=()
for package in gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! rustup target list --installed | grep -qx "$TARGET"; then
    rustup target add "$TARGET"
fi

export CARGO_TARGET_DIR="${AARCH64_TARGET_DIR:-$ROOT/target/aarch64}"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
# The detection test fails unless the kernels chose NEON.
export BLIP3_EXPECT_KERNELS=neon
unset BLIP3_KERNELS
cargo test -p blip3-kernels --locked --target "$TARGET" \
    --manifest-path "$ROOT/Cargo.toml" -- "$@"
