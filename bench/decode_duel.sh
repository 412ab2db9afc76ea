#!/usr/bin/env bash
# Decode speed of blip3-rs and llama.cpp measured alternately, several rounds
# per format, at the same context depth, so both see the same machine state
# (decode is memory-bound and this shared VM's bandwidth drifts by 2x within
# minutes: separate runs minutes apart are not comparable).
#
#   bench/decode_duel.sh [MODEL_DIR] [ROUNDS]      # default /tmp/blip3-full, 3
#   FORMATS="q4_0 q8_0" bench/decode_duel.sh       # a subset (default: all four)
#
# Needs what bench/run_peers.sh set up (bench/.llama-build, the GGUFs in
# $WORK). Writes pre-quantised folders once ($WORK/blip3-<fmt>, via
# `blip3 quantize`, ~1.5 min each) so each blip3 round loads in seconds.
# Each round: `blip3 bench --aspect pad` (one 378-px crop, 173 prompt
# positions, 32 new tokens), then `llama-bench -p 0 -n 32 -d 173`, then the
# bandwidth probe. About 4 min per format and round trip set; results and the
# per-round medians go to bench/results/<stamp>-duel/.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
MODEL="${1:-/tmp/blip3-full}"
ROUNDS="${2:-3}"
THREADS="${THREADS:-2}"
FORMATS="${FORMATS:-q8_0 q4_0 q4_k bf16}"
WORK="${WORK:-/tmp/blip3-peers}"
LLAMA="$HERE/.llama-build/bin/llama-bench"
OUT="$HERE/results/$(date -u +%Y%m%dT%H%M%SZ)-duel"
mkdir -p "$OUT"
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/run.log" >&2; }

cargo build --release -q -p blip3-cli --manifest-path "$ROOT/Cargo.toml"
BLIP3="$ROOT/target/release/blip3"
IMAGE="$WORK/640x480.png"
[ -f "$IMAGE" ] || { echo "run bench/run_peers.sh first (it writes $IMAGE and the GGUFs)" >&2; exit 1; }
for q in Q4_K_S; do
    [ -f "$WORK/phi3-$q.gguf" ] || "$HERE/.llama-build/bin/llama-quantize" "$WORK/phi3-f16.gguf" \
        "$WORK/phi3-$q.gguf" "$q" > "$OUT/quantize-$q.log" 2>&1
done

# blip3 format → (model folder, llama.cpp GGUF)
declare -A GGUF=([bf16]=f16 [q8_0]=Q8_0 [q4_0]=Q4_0 [q4_k]=Q4_K_S)
for fmt in $FORMATS; do
    dir="$MODEL"
    if [ "$fmt" != bf16 ]; then
        dir="$WORK/blip3-$fmt"
        if [ ! -f "$dir/model.safetensors" ]; then
            log "blip3 quantize --to $fmt"
            rm -rf "$dir"
            "$BLIP3" quantize --model "$MODEL" --to "$fmt" --out "$dir" > "$OUT/quantize-$fmt.json"
        fi
    fi
    for round in $(seq 1 "$ROUNDS"); do
        log "$fmt round $round: blip3"
        RAYON_NUM_THREADS="$THREADS" "$BLIP3" bench --model "$dir" --image "$IMAGE" \
            --prompt "What is shown in this image?" --aspect pad --max-new-tokens 32 --repeat 1 \
            --warmup 0 --threads "$THREADS" --json > "$OUT/blip3-$fmt-$round.json" 2> "$OUT/blip3-$fmt-$round.log"
        log "$fmt round $round: llama.cpp ${GGUF[$fmt]}"
        "$LLAMA" -m "$WORK/phi3-${GGUF[$fmt]}.gguf" -p 0 -n 32 -d 173 -t "$THREADS" -r 1 -o json \
            > "$OUT/llama-$fmt-$round.json" 2> "$OUT/llama-$fmt-$round.log"
        "$BLIP3" bandwidth --gib 1 --passes 3 > "$OUT/bandwidth-$fmt-$round.json"
    done
done

python3 - "$OUT" "$ROUNDS" "$HERE" <<'PY' | tee "$OUT/table.md"
import json, os, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
sys.path.insert(0, sys.argv[3])
from make_table import BLIP3_BPW, DECODER_WEIGHTS, HEAD_WEIGHTS
def read(name):
    with open(os.path.join(out, name)) as f:
        return json.load(f)
print("| format | blip3-rs decode tokens/s (rounds) | llama.cpp tg32 @ d173 (rounds) | median ratio | bandwidth GB/s (rounds) | blip3-rs % of roofline (rounds) |")
print("|---|---|---|---|---|---|")
for fmt, q in [("q8_0", "q8_0"), ("q4_0", "q4_0"), ("q4_k", "q4_k_s"), ("bf16", "f16")]:
    ours, theirs, bw = [], [], []
    for r in range(1, rounds + 1):
        try:
            ours.append(read(f"blip3-{fmt}-{r}.json")["decode_tokens_per_s"])
            theirs.append(next(e["avg_ts"] for e in read(f"llama-{fmt}-{r}.json") if e["n_gen"] > 0))
            bw.append(read(f"bandwidth-{fmt}-{r}.json")["read_bytes_per_s_all_threads"] / 1e9)
        except (OSError, StopIteration, KeyError, ValueError):
            pass
    if not ours or not theirs:
        continue
    ratios = [a / b for a, b in zip(ours, theirs)]
    fmt_list = lambda xs: ", ".join(f"{x:.2f}" for x in xs)
    bpt = (DECODER_WEIGHTS + HEAD_WEIGHTS) * BLIP3_BPW[fmt]
    roof = [100 * t * bpt / (b * 1e9) for t, b in zip(ours, bw)]
    roof_list = ", ".join(f"{x:.0f}" for x in roof)
    print(f"| {fmt} vs {q} | {fmt_list(ours)} | {fmt_list(theirs)} | **{statistics.median(ratios):.2f}×** | {fmt_list(bw)} | {roof_list} (median {statistics.median(roof):.0f} %) |")
PY
log "done: $OUT"
