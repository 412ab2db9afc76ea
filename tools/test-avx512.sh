#!/usr/bin/env bash
# Runs the kernel tests (crates/blip3-kernels) with their AVX-512 and
# AVX-VNNI paths on this machine even when its CPU has neither: a static test
# binary boots as init of a Linux kernel inside Bochs 3.0's
# "sapphire_rapids" CPU model (AVX-512 F/BW/VL/VNNI/BF16, AVX-VNNI), and the
# detection test asserts that the kernels enabled the AVX-512 BF16 GEMM (it
# passed its self-check against a reference first), the AVX-512 VNNI and the
# AVX-VNNI GEMVs. AMX cannot run there (see run-in-bochs.sh): its logic is
# tested on emulated tiles by `cargo test`.
#
#   tools/test-avx512.sh [TEST FILTERS...]
#
# BOCHS_CPU=arrow_lake (AVX-VNNI only) or tigerlake (AVX-512 VNNI) pick
# another model. Debian as root (installs xorriso, isolinux; unpacks Bochs
# 3.0 from Debian trixie and downloads a Debian cloud kernel) on first use.
# About 1 min setup, 1-6 min static build, 40 s emulated run. Not part of
# .ci/run (it would double CI's time).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
EMU="$ROOT/tools/avx512-emulator"
STATE="${BOCHS_STATE:-${TMPDIR:-/tmp}/blip3-bochs}"
export BOCHS_STATE="$STATE"
# The set-up is cached in $STATE; it is redone when a file is missing or when
# the emulator cannot load a system library it links against (a fresh
# machine image can keep /tmp but not the packages installed then).
emulator_ready() {
    [ -f "$STATE/vmlinuz" ] && [ -x "$STATE/bochs3/bochs-bin" ] || return 1
    local lib="$STATE/bochs3/root/usr/lib/x86_64-linux-gnu"
    "$lib/ld-linux-x86-64.so.2" --library-path "$lib" --list \
        "$STATE/bochs3/root/usr/bin/bochs-bin" > /dev/null 2>&1
}
emulator_ready || "$EMU/setup.sh"

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
CPU="${BOCHS_CPU:-sapphire_rapids}"
case "$CPU" in
    sapphire_rapids) EXPECT="avx512-bf16,avx512-vnni,avx-vnni" ;;
    arrow_lake) EXPECT="avx-vnni" ;;
    tigerlake) EXPECT="avx512-vnni" ;;
    *) EXPECT="${BLIP3_EXPECT_KERNELS:-avx2-fma}" ;;
esac
echo "running $BIN in Bochs ($CPU), expecting $EXPECT" >&2
BOCHS_CPU="$CPU" BOCHS_ENV="BLIP3_EXPECT_KERNELS=$EXPECT" "$EMU/run-in-bochs.sh" "$BIN" --test-threads=1 "$@"
