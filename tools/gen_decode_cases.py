"""Writes images in several PNG/GIF/BMP/WebP layouts plus Pillow 13's
`Image.open(f).convert("RGB")` of each, for blip3-preprocess's decode tests.

Run once with `pip install pillow==13.0.0 numpy safetensors`; the output in
testdata/decode/ is committed. `expected.safetensors` holds one uint8 [H, W, 3]
tensor per file name.
"""
import io
import numpy as np
from PIL import Image
from safetensors.numpy import save_file

rng = np.random.default_rng(7)
h, w = 13, 17
rgb = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
alpha = rng.integers(0, 256, size=(h, w, 1), dtype=np.uint8)
files = {}

def save(name, im, fmt, **kw):
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    files[name] = buf.getvalue()

save("rgb.png", Image.fromarray(rgb, "RGB"), "PNG")
save("rgba.png", Image.fromarray(np.concatenate([rgb, alpha], -1), "RGBA"), "PNG")
save("grey.png", Image.fromarray(rgb[..., 0], "L"), "PNG")
save("grey_alpha.png", Image.fromarray(np.concatenate([rgb[..., :1], alpha], -1), "LA"), "PNG")
save("palette.png", Image.fromarray(rgb, "RGB").quantize(16), "PNG")
save("palette.gif", Image.fromarray(rgb, "RGB").quantize(16), "GIF")
save("rgb.bmp", Image.fromarray(rgb, "RGB"), "BMP")
save("lossless.webp", Image.fromarray(rgb, "RGB"), "WEBP", lossless=True)
# 16-bit RGB PNG, written by hand-built bytes through numpy (Pillow cannot write RGB;16).
rgb16 = (rgb.astype(np.uint16) << 8) | rng.integers(0, 256, size=(h, w, 3), dtype=np.uint16)
import zlib, struct
raw = b"".join(b"\x00" + rgb16[y].astype(">u2").tobytes() for y in range(h))
def chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
png16 = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
files["rgb16.png"] = png16

expected = {}
for name, data in files.items():
    with open(f"testdata/decode/{name}", "wb") as f:
        f.write(data)
    expected[name] = np.ascontiguousarray(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
save_file(expected, "testdata/decode/expected.safetensors")
print(sorted(expected))
