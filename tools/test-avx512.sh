#!/usr/bin/env bash
# Runs the kernel tests (crates/blip3-kernels) with their AVX-512 paths on
# this machine even when its CPU has no AVX-512: a static test binary boots
# as init of a Linux kernel inside Bochs' "tigerlake" CPU model (AVX-512
# F/BW/VL/VNNI; no AVX-512-BF16, no AMX, no AVX-VNNI), and the detection
# test asserts that the kernels picked the AVX-512 VNNI paths.
#
#   tools/test-avx512.sh [TEST FILTERS...]
#
# Debian/Ubuntu as root (installs bochs, xorriso, isolinux; downloads a Debian
# cloud kernel) on first use. About 1 min setup, 1-6 min static build, ~1 min
# emulated run. Not part of .ci/run (it would double CI's time).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
EMU="$ROOT/tools/avx512-emulator"
STATE="${BOCHS_STATE:-${TMPDIR:-/tmp}/blip3-bochs}"
export BOCHS_STATE="$STATE"
[ -f "$STATE/vmlinuz" ] || "$EMU/setup.sh"

TARGET_DIR="${STATIC_TARGET_DIR:-$ROOT/target/static}"
echo "building the static kernel test binary ($TARGET_DIR)" >&2
BIN="$(CARGO_TARGET_DIR="$TARGET_DIR" RUSTFLAGS="-C target-feature=+crt-static" \
    cargo test -p blip3-kernels --release --no-run --target x86_64-unknown-linux-gnu \
    --manifest-path "$ROOT/Cargo.toml" --message-format json 2>/dev/null \
    | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "blip3_kernels":
        print(m["executable"])' | tail -1)"
[ -n "$BIN" ] || { echo "no test binary built" >&2; exit 1; }
echo "running $BIN in Bochs (tigerlake)" >&2
BOCHS_ENV="BLIP3_EXPECT_KERNELS=avx512-vnni" "$EMU/run-in-bochs.sh" "$BIN" --test-threads=1 "$@"
