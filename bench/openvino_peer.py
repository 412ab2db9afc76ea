#!/usr/bin/env python3
"""OpenVINO peer for the image encoder: the same ViT-H/14-378 that `pytorch_peer.py`
builds from open_clip, loaded from the same checkpoint, converted with
`openvino.convert_model` and compiled for the CPU at f32 or bf16
(`INFERENCE_PRECISION_HINT`), then timed on N crops as `blip3 bench` times its ViT.

OpenVINO is the fastest CPU runtime for this module that we know of: on AVX-512 BF16
and AMX CPUs its bf16 path runs oneDNN's tile and `vdpbf16ps` kernels, so it is the
ViT's roofline peer. Run it through `bench/run_peers.sh`.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import openvino as ov
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_peer import load_prefixed, peak_rss_bytes  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint folder (blip3 init-random --preset full)")
    p.add_argument("--precision", choices=["f32", "bf16"], default="bf16")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--crops", type=int, default=5, help="ViT crops (640x480 anyres = 5)")
    p.add_argument("--repeat", type=int, default=2, help="timed runs after one warm-up (best is kept)")
    p.add_argument("--json", help="write the result object here")
    args = p.parse_args()

    from open_clip.transformer import QuickGELU, VisionTransformer

    torch.set_num_threads(args.threads)
    vit = VisionTransformer(
        image_size=378, patch_size=14, width=1280, layers=32, heads=16, mlp_ratio=4.0,
        output_dim=1024, act_layer=QuickGELU, output_tokens=True,
    )
    vit.load_state_dict(load_prefixed(args.model, "vlm.vision_encoder.", torch.float32), strict=True)
    vit = vit.eval()

    class Tokens(torch.nn.Module):
        """The patch tokens only: what the perceiver reads."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, pixels):
            return self.inner(pixels)[1]

    gen = torch.Generator().manual_seed(0)
    pixels = torch.randn(args.crops, 3, 378, 378, generator=gen)
    t = time.perf_counter()
    with torch.no_grad():
        model = ov.convert_model(Tokens(vit), example_input=pixels)
    convert_s = time.perf_counter() - t
    del vit

    core = ov.Core()
    config = {
        "INFERENCE_NUM_THREADS": args.threads,
        "INFERENCE_PRECISION_HINT": args.precision,
        "PERFORMANCE_HINT": "LATENCY",
    }
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    feed = pixels.numpy()
    request.infer({0: feed})  # warm-up
    times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        request.infer({0: feed})
        times.append(time.perf_counter() - t)
    tokens = request.get_output_tensor(0).data
    assert tokens.shape == (args.crops, 729, 1280), tokens.shape
    result = {
        "engine": "openvino",
        "openvino": ov.__version__,
        "precision": args.precision,
        "execution_precision": str(compiled.get_property("INFERENCE_PRECISION_HINT")),
        "threads": args.threads,
        "crops": args.crops,
        "vision_encode_s": min(times),
        "vision_encode_runs_s": times,
        "convert_s": convert_s,
        "finite": bool(np.isfinite(tokens).all()),
        "peak_rss_bytes": peak_rss_bytes(),
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
