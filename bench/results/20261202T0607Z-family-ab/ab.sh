#!/bin/bash
cd /tmp/bench
for mode in anyres pad; do
for v in old new; do
  ./blip3-$v bench --model /tmp/blip3-full --image 640x480.png --prompt "What is shown in this image?" --max-new-tokens 8 --repeat 1 --warmup 0 --aspect $mode --json > ab-$v-$mode.json 2> ab-$v-$mode.err
done
done
echo done > ab.done
