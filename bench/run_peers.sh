#!/usr/bin/env bash
# Side-by-side CPU benchmark of blip3-rs, PyTorch and llama.cpp on the same
# full-size random weights, on this machine, in one run. Writes
# bench/results/<stamp>/ (every raw JSON/log) and prints the comparison table
# (bench/results/<stamp>/table.md) that BENCHMARKS.md quotes.
#
#   bench/run_peers.sh [MODEL_DIR]          # default: /tmp/blip3-full
#
# RESUME_LLAMA=<results folder> measures only llama.cpp, into a folder whose
# other engines are done (after a llama.cpp failure).
#
# Set-up (first run only, needs the package registries, nothing at run time):
#   * bench/.venv: torch 2.15.0, transformers 5.24.0, open_clip_torch 3.3.0,
#     openvino 2026.4.1, gguf 0.19.0, safetensors, cmake, ninja from PyPI
#     (~6 GB, ~3 min);
#   * llama.cpp built from the sources vendored in the llama-cpp-python 0.3.36
#     sdist (PyPI) for this CPU (GGML_NATIVE=ON: AVX-512, VNNI, BF16 and AMX
#     where present; ~13 min on 2 cores), into bench/.llama-build-<cpu>, one
#     build per CPU model and flag set. Where ggml's AMX kernel crashes (SIGILL
#     on its first tile load, seen in a KVM guest), the script says why in
#     llama-build.txt and measures with a native build without AMX instead
#     (LLAMA_AMX=OFF forces that);
#   * the model (if MODEL_DIR is missing): `blip3 init-random --preset full
#     --dtype bf16` (~3 min, 9.2 GB).
# Every engine is timed warm, after one untimed pass of the same work (blip3
# `bench --warmup 1`; PyTorch `--repeat 3`: one warm-up call, the median of
# three; OpenVINO one warm-up inference, the best of two; llama-bench its own
# warm-up): a server runs warm, and a cold first pass times the kernel's
# zeroing of fresh pages (5 % of a cold ViT) as much as the engine.
# Measurement, on a quiet 2-vCPU machine: about an hour (blip3 4 formats
# at 2 prompt lengths ~16 min, plus ~11 min the first time for the
# pre-quantised folders; PyTorch fp32 ~4 min and bf16 ~15 min; OpenVINO
# ViT f32 and bf16 ~4 min; GGUF conversion ~2 min; llama-bench 4 formats,
# flash attention off and on, ~20 min; a 1 GiB bandwidth probe before and
# after each decode measurement). lscpu (model and flags) is recorded with
# the results and printed above the table. Nothing else should run meanwhile: the script
# checks the load average before each measurement and records it.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
MODEL="${1:-/tmp/blip3-full}"
THREADS="${THREADS:-2}"
VENV="$HERE/.venv"
# One llama.cpp build per CPU: a native build does not run on a CPU without
# the instructions it was compiled for.
CPU_TAG="$(lscpu | sed -n 's/^Model name: *//p' | head -1 | tr -c 'A-Za-z0-9' '-' | cut -c1-40)"
CPU_TAG="$CPU_TAG$(grep -m1 -o -w 'avx512f\|amx_tile\|avx2' /proc/cpuinfo | sort -u | tr '\n' '-')"
LLAMA_AMX="${LLAMA_AMX:-ON}"
LLAMA_BUILD="$HERE/.llama-build-$CPU_TAG-amx$LLAMA_AMX"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="$HERE/results/$STAMP"
# RESUME_LLAMA=<results folder>: only the llama.cpp part, into a folder whose
# blip3, PyTorch and OpenVINO measurements are done (after a llama.cpp crash).
if [ -n "${RESUME_LLAMA:-}" ]; then
    OUT="$RESUME_LLAMA"
fi
WORK="${WORK:-/tmp/blip3-peers}"
mkdir -p "$OUT" "$WORK"

log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/run.log" >&2; }
quiet_check() {
    # The 1-minute load average should be near zero before a measurement.
    local load
    load="$(cut -d' ' -f1 /proc/loadavg)"
    log "load average before $1: $load"
    echo "$1 $load" >> "$OUT/loadavg.txt"
}
probe() {
    # Read bandwidth next to a decode measurement: this VM's bandwidth drifts
    # by up to 2x within minutes, so each roofline fraction uses the probes
    # taken just before and just after its own run.
    "$BLIP3" bandwidth --gib 1 --passes 3 > "$OUT/bandwidth-$1.json"
}

# --- set-up -----------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q torch==2.15.0 transformers==5.24.0 open_clip_torch==3.3.0 \
        openvino==2026.4.1 gguf==0.19.0 safetensors numpy pillow cmake ninja
fi
"$VENV/bin/python" -c 'import openvino' 2>/dev/null || "$VENV/bin/pip" install -q openvino==2026.4.1
build_llama() {
    # build_llama DIR ON|OFF: llama-bench and llama-quantize for this CPU.
    local dir="$1" amx="$2"
    [ -x "$dir/bin/llama-bench" ] && return 0
    log "building llama.cpp from the llama-cpp-python 0.3.36 sdist (native, AMX $amx)"
    local src="$WORK/llama-src"
    if [ ! -d "$src/llama_cpp_python-0.3.36" ]; then
        rm -rf "$src" && mkdir -p "$src"
        "$VENV/bin/pip" download -q --no-deps --no-binary llama-cpp-python llama-cpp-python==0.3.36 -d "$src"
        tar -xzf "$src"/llama_cpp_python-0.3.36.tar.gz -C "$src"
    fi
    # -march=native defines __AMX_INT8__ and friends, which is what ggml's
    # AMX kernels are compiled under: turning AMX off takes -mno-amx-*.
    local flags=""
    [ "$amx" = OFF ] && flags="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    PATH="$VENV/bin:$PATH" cmake -S "$src/llama_cpp_python-0.3.36/vendor/llama.cpp" -B "$dir" \
        -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_AMX_TILE="$amx" \
        -DGGML_AMX_INT8="$amx" -DGGML_AMX_BF16="$amx" -DCMAKE_C_FLAGS="$flags" \
        -DCMAKE_CXX_FLAGS="$flags" -DLLAMA_CURL=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
        > "$OUT/llama-cmake-amx$amx.log"
    PATH="$VENV/bin:$PATH" ninja -C "$dir" llama-bench llama-quantize > "$OUT/llama-build-amx$amx.log"
}
build_llama "$LLAMA_BUILD" "$LLAMA_AMX"
log "building blip3 (release)"
cargo build --release -q -p blip3-cli --manifest-path "$ROOT/Cargo.toml"
BLIP3="$ROOT/target/release/blip3"
if [ ! -f "$MODEL/config.json" ]; then
    log "writing the full-size random model to $MODEL"
    "$BLIP3" init-random --preset full --seed 0 --dtype bf16 --out "$MODEL"
fi
IMAGE="$WORK/640x480.png"
"$VENV/bin/python" - "$IMAGE" <<'EOF'
import sys
import numpy as np
from PIL import Image
y, x = np.mgrid[0:480, 0:640]
rgb = np.stack([x * 255 // 639, y * 255 // 479, (x + y) * 255 // 1118], -1).astype(np.uint8)
Image.fromarray(rgb).save(sys.argv[1])
EOF
PROMPT="What is shown in this image?"
lscpu > "$OUT/lscpu.txt"
grep -m1 '^flags' /proc/cpuinfo > "$OUT/cpuflags.txt"
cp "$LLAMA_BUILD/CMakeCache.txt" "$OUT/llama-CMakeCache.txt" 2>/dev/null || true
echo "llama.cpp build: GGML_NATIVE=ON, AMX ${LLAMA_AMX}${LLAMA_AMX_WHY:+ ($LLAMA_AMX_WHY)}" > "$OUT/llama-build.txt"
free -b > "$OUT/free.txt"

# Quantised formats load from pre-quantised folders (`blip3 quantize`, once:
# ~1.5 min each, Q4_K ~8 min); the stages measured are the same as with
# --quantize at load time (crates/blip3-engine/tests/quantized_folder.rs).
declare -A DIR=([bf16]="$MODEL")
for fmt in q8_0 q4_0 q4_k; do
    DIR[$fmt]="$WORK/blip3-$fmt"
    if [ ! -f "${DIR[$fmt]}/model.safetensors" ]; then
        log "blip3 quantize --to $fmt"
        rm -rf "${DIR[$fmt]}"
        "$BLIP3" quantize --model "$MODEL" --to "$fmt" --out "${DIR[$fmt]}" > "$OUT/quantize-$fmt.json"
    fi
done
if [ "${SETUP_ONLY:-0}" = 1 ]; then
    log "set-up done (SETUP_ONLY=1): nothing measured"
    exit 0
fi

# --- measurements -------------------------------------------------------------
if [ -z "${RESUME_LLAMA:-}" ]; then
quiet_check bandwidth
"$BLIP3" bandwidth --gib 2 > "$OUT/bandwidth.json"

for fmt in bf16 q8_0 q4_0 q4_k; do
    # The full image prompt (anyres: 5 crops, 685 positions), then the
    # global view only (--aspect pad: 1 crop, 173 positions) for decode at a
    # short context, as llama.cpp's tg64 runs.
    for aspect in anyres pad; do
        label="blip3-$fmt"
        [ "$aspect" = pad ] && label="blip3-$fmt-pad"
        quiet_check "$label"
        log "blip3 bench $fmt --aspect $aspect"
        probe "$label-before"
        RAYON_NUM_THREADS="$THREADS" "$BLIP3" bench --model "${DIR[$fmt]}" --image "$IMAGE" \
            --prompt "$PROMPT" --aspect "$aspect" --max-new-tokens 32 --repeat 1 --warmup 1 \
            --threads "$THREADS" --json > "$OUT/$label.json" 2> "$OUT/$label.log"
        probe "$label-after"
    done
done
fi

PREFILL=$("$VENV/bin/python" -c "import json,sys; print(json.load(open(sys.argv[1]))['prefill_tokens'])" "$OUT/blip3-bf16.json")
PAD_PREFILL=$("$VENV/bin/python" -c "import json,sys; print(json.load(open(sys.argv[1]))['prefill_tokens'])" "$OUT/blip3-bf16-pad.json")
CROPS=$("$VENV/bin/python" -c "import json,sys; print(sum(i['num_crops'] for i in json.load(open(sys.argv[1]))['images']))" "$OUT/blip3-bf16.json")
if [ -z "${RESUME_LLAMA:-}" ]; then
for dt in f32 bf16; do
    quiet_check "pytorch-$dt"
    log "PyTorch $dt ($CROPS crops, $PREFILL positions)"
    probe "pytorch-$dt-before"
    "$VENV/bin/python" "$HERE/pytorch_peer.py" --model "$MODEL" --dtype "$dt" --threads "$THREADS" \
        --crops "$CROPS" --prefill-tokens "$PREFILL" --decode-tokens 32 --repeat 3 \
        --json "$OUT/pytorch-$dt.json" > "$OUT/pytorch-$dt.log" 2>&1
    probe "pytorch-$dt-after"
done

for precision in f32 bf16; do
    quiet_check "openvino-$precision"
    log "OpenVINO ViT $precision ($CROPS crops)"
    "$VENV/bin/python" "$HERE/openvino_peer.py" --model "$MODEL" --precision "$precision" \
        --threads "$THREADS" --crops "$CROPS" --json "$OUT/openvino-$precision.json" \
        > "$OUT/openvino-$precision.log" 2>&1 || log "OpenVINO $precision failed (see its log)"
done
fi

GGUF_F16="$WORK/phi3-f16.gguf"
if [ ! -f "$GGUF_F16" ]; then
    log "writing the Phi-3 GGUF (F16) from $MODEL"
    "$VENV/bin/python" "$HERE/gguf_phi3.py" --model "$MODEL" --out "$GGUF_F16" > "$OUT/gguf.log"
fi
for q in Q8_0 Q4_0 Q4_K_S; do
    [ -f "$WORK/phi3-$q.gguf" ] || "$LLAMA_BUILD/bin/llama-quantize" "$GGUF_F16" "$WORK/phi3-$q.gguf" "$q" \
        > "$OUT/quantize-$q.log" 2>&1
done
# ggml's AMX path (the quantised types) can die on its first tile
# instruction (SIGILL, seen in a KVM guest with AMX): then the whole llama.cpp
# side is measured with a native build without AMX, and why is recorded.
if [ "$LLAMA_AMX" = ON ] && grep -qw amx_tile /proc/cpuinfo; then
    set +e
    "$LLAMA_BUILD/bin/llama-bench" -m "$WORK/phi3-Q8_0.gguf" -p 32 -n 0 -r 1 -t "$THREADS" \
        > "$OUT/llama-amx-probe.log" 2>&1
    status=$?
    set -e
    if [ "$status" -ne 0 ]; then
        why="llama-bench Q8_0 exited with status $status (132 = SIGILL) in ggml's AMX kernel; see llama-amx-probe.log"
        dmesg 2>/dev/null | grep -i 'invalid opcode' | tail -2 >> "$OUT/llama-amx-probe.log" || true
        log "AMX build of llama.cpp failed: $why; using a native build without AMX"
        LLAMA_AMX=OFF
        LLAMA_BUILD="$HERE/.llama-build-$CPU_TAG-amxOFF"
        build_llama "$LLAMA_BUILD" OFF
        cp "$LLAMA_BUILD/CMakeCache.txt" "$OUT/llama-CMakeCache.txt"
        echo "llama.cpp build: GGML_NATIVE=ON, AMX OFF ($why)" > "$OUT/llama-build.txt"
    fi
fi
for q in f16 Q8_0 Q4_0 Q4_K_S; do
    quiet_check "llama-$q"
    log "llama-bench $q"
    probe "llama-$q-before"
    # Flash attention off and on (make_table.py keeps the better of each).
    for fa in 0 1; do
        "$LLAMA_BUILD/bin/llama-bench" -m "$WORK/phi3-$q.gguf" -p 512 -n 64 -t "$THREADS" -r 2 \
            -fa "$fa" -o json > "$OUT/llama-$q-fa$fa.json" 2> "$OUT/llama-$q-fa$fa.log"
        # Decode at the same contexts as blip3's (after the image prompt's
        # $PREFILL positions, and after the $PAD_PREFILL of the --aspect pad run).
        for depth in "$PREFILL" "$PAD_PREFILL"; do
            "$LLAMA_BUILD/bin/llama-bench" -m "$WORK/phi3-$q.gguf" -p 0 -n 32 -d "$depth" \
                -t "$THREADS" -r 1 -fa "$fa" -o json > "$OUT/llama-$q-d$depth-fa$fa.json" \
                2> "$OUT/llama-$q-d$depth-fa$fa.log"
        done
    done
    probe "llama-$q-after"
done

"$VENV/bin/python" "$HERE/make_table.py" "$OUT" | tee "$OUT/table.md"
log "done: $OUT"
