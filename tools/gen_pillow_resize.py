"""Writes Pillow bicubic reference resizes used by blip3-preprocess's tests.

Run once with `pip install pillow==13.0.0 numpy safetensors`; the output
(testdata/pillow-resize/cases.safetensors) is committed. Each case k stores the
source RGB image `src_k` [H, W, 3] and Pillow's `Image.resize((w, h))` result
`dst_k` [h, w, 3] (default filter = BICUBIC), both uint8.
"""
import numpy as np
from PIL import Image
from safetensors.numpy import save_file

CASES = [
    ((7, 5), (13, 17)),      # upscale both axes
    ((100, 90), (42, 37)),   # downscale both axes (antialiased support)
    ((30, 20), (42, 28)),    # upscale, anyres-like
    ((200, 60), (126, 38)),  # downscale
    ((64, 64), (21, 64)),    # horizontal pass only
    ((50, 40), (50, 97)),    # vertical pass only
    ((333, 211), (378, 240)),
    ((640, 480), (378, 378)),  # global squash of a 640x480 image
    ((1, 1), (5, 3)),
    ((3, 300), (7, 11)),     # vertical pass first (Pillow 13 rule)
    ((50, 60), (40, 30)),    # vertical first: height shrinks > 2x width shrink
    ((60, 50), (40, 30)),    # horizontal first
    ((10, 100), (20, 50)),   # vertical first with horizontal upscale
]

rng = np.random.default_rng(1234)
tensors = {}
for k, ((w, h), (tw, th)) in enumerate(CASES):
    # Smooth gradients plus noise, so both flat and sharp regions are covered.
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy) % 256], -1)
    noise = rng.integers(0, 256, size=(h, w, 3))
    mask = rng.random((h, w, 1)) < 0.3
    src = np.where(mask, noise, base).astype(np.uint8)
    dst = np.asarray(Image.fromarray(src, "RGB").resize((tw, th)))
    tensors[f"src_{k}"] = np.ascontiguousarray(src)
    tensors[f"dst_{k}"] = np.ascontiguousarray(dst)
save_file(tensors, "testdata/pillow-resize/cases.safetensors")
print(f"wrote {len(CASES)} cases")
