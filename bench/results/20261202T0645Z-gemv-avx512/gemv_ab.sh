#!/bin/bash
# Decode A/B of the BF16 GEMV: AVX-512 (default) vs AVX2 (BLIP3_KERNELS=avx2), alternating processes.
B=/work/main/target/release/examples/decodebench
for r in 1 2; do
  for k in avx2 default; do
    if [ $k = avx2 ]; then export BLIP3_KERNELS=avx2; else unset BLIP3_KERNELS; fi
    echo "== $k run $r"; MODE=pool $B /tmp/blip3-full 32 3
  done
done
