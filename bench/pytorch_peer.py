#!/usr/bin/env python3
"""PyTorch peer for `blip3 bench`: the BLIP-3 pipeline re-assembled from pip packages.

Loads the *same* safetensors checkpoint that blip3-rs reads (a folder made by
`blip3 init-random --preset full`) into
  * `open_clip.transformer.VisionTransformer` (ViT-H/14-378, QuickGELU, tokens out),
  * a perceiver resampler written here from spec section 6.1 (same attribute names),
  * `transformers.Phi3ForCausalLM` (sliding window 2047; lm_head with bias),
and times the stages `blip3 bench` reports: ViT on N crops, the perceiver, the
prefill of P positions and greedy decode of D tokens with the KV cache.

Stages run in one process but the vision part is freed before the language model
is built, so fp32 fits a 24 GiB machine (~15.3 GB for the language model).

Run it through `bench/run_peers.sh`, which installs the pinned packages. Time on the
2-vCPU AVX2 development machine: fp32 about 4 minutes, bf16 about 15 minutes (PyTorch
has no fast bf16 kernels without AVX-512-BF16/AMX).
"""

import argparse
import gc
import json
import math
import os
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open


def load_prefixed(model_dir, prefix, dtype):
    """Every tensor under `prefix` from the (possibly sharded) checkpoint, cast to `dtype`."""
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        files = sorted({v for k, v in weight_map.items() if k.startswith(prefix)})
    else:
        files = ["model.safetensors"]
    out = {}
    for name in files:
        with safe_open(os.path.join(model_dir, name), framework="pt") as f:
            for key in f.keys():
                if key.startswith(prefix):
                    out[key[len(prefix):]] = f.get_tensor(key).to(dtype)
    return out


class PerceiverAttention(nn.Module):
    def __init__(self, dim, dim_head, heads):
        super().__init__()
        inner = dim_head * heads
        self.heads, self.dim_head = heads, dim_head
        self.norm_media = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x, latents):
        b, n, _ = latents.shape
        x = self.norm_media(x)
        latents = self.norm_latents(latents)
        q = self.to_q(latents)
        k, v = self.to_kv(torch.cat([x, latents], dim=1)).chunk(2, dim=-1)

        def heads(t):
            return t.reshape(b, -1, self.heads, self.dim_head).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v))
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class Perceiver(nn.Module):
    """Spec section 6.1 (`InstructPerceiverResampler`), text-conditioned."""

    def __init__(self, dim=1280, dim_llm=3072, depth=6, dim_head=96, heads=16, latents=128):
        super().__init__()
        self.latents = nn.Parameter(torch.zeros(latents, dim))
        self.text_projection = nn.Sequential(nn.Linear(dim_llm, dim), nn.GELU(), nn.Linear(dim, dim))
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    PerceiverAttention(dim, dim_head, heads),
                    nn.Sequential(
                        nn.LayerNorm(dim),
                        nn.Linear(dim, dim * 4, bias=False),
                        nn.GELU(),
                        nn.Linear(dim * 4, dim, bias=False),
                    ),
                ]
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.projection = nn.Linear(dim, dim_llm)

    def forward(self, x, text_embeds):
        b = x.shape[0]
        n_lat = self.latents.shape[0]
        q = torch.cat([self.latents.expand(b, -1, -1), self.text_projection(text_embeds)], dim=1)
        for attn, ff in self.layers:
            q = attn(x, q) + q
            q = ff(q) + q
        return self.projection(self.norm(q[:, :n_lat]))


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def timed(fn, repeat):
    """Median wall time of `repeat` calls (one untimed warm-up call when repeat > 1)."""
    if repeat > 1:
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2], out


def bench_vision(args, dtype):
    from open_clip.transformer import QuickGELU, VisionTransformer

    vit = VisionTransformer(
        image_size=378, patch_size=14, width=1280, layers=32, heads=16, mlp_ratio=4.0,
        output_dim=1024, act_layer=QuickGELU, output_tokens=True,
    )
    vit.load_state_dict(load_prefixed(args.model, "vlm.vision_encoder.", dtype), strict=True)
    vit = vit.to(dtype).eval()
    perceiver = Perceiver()
    perceiver.load_state_dict(load_prefixed(args.model, "vlm.vision_tokenizer.", dtype), strict=True)
    perceiver = perceiver.to(dtype).eval()

    gen = torch.Generator().manual_seed(0)
    pixels = torch.randn(args.crops, 3, 378, 378, generator=gen).to(dtype)
    text = torch.randn(args.crops, min(args.text_tokens, 256), 3072, generator=gen).to(dtype) * 0.02
    with torch.inference_mode():
        vit_s, (_, tokens) = timed(lambda: vit(pixels), args.repeat)
        resampler_s, latents = timed(lambda: perceiver(tokens, text), args.repeat)
    assert tokens.shape == (args.crops, 729, 1280), tokens.shape
    assert latents.shape == (args.crops, 128, 3072), latents.shape
    del vit, perceiver
    gc.collect()
    return {"vision_encode_s": vit_s, "resampler_s": resampler_s, "crops": args.crops}


def bench_language(args, dtype):
    from transformers import Phi3Config, Phi3ForCausalLM

    config = Phi3Config(sliding_window=2047, torch_dtype=dtype)
    config._attn_implementation = "sdpa"
    with torch.device("meta"):
        lm = Phi3ForCausalLM(config)
    lm.lm_head = nn.Linear(3072, config.vocab_size, bias=True, device="meta")
    state = load_prefixed(args.model, "vlm.lang_model.", dtype)
    # The decoupled extras (3 embedding rows, 3 head rows) are not part of the peer:
    # they cost nothing measurable next to the 32064-row head.
    for extra in ["model.embed_tokens.additional_embedding.weight",
                  "lm_head.additional_fc.weight", "lm_head.additional_fc.bias"]:
        state.pop(extra, None)
    lm.load_state_dict(state, strict=True, assign=True)
    del state
    lm = lm.eval()
    # RoPE buffers were created on the meta device: rebuild them on the CPU.
    lm.model.rotary_emb = type(lm.model.rotary_emb)(config=config)

    gen = torch.Generator().manual_seed(1)
    embeds = (torch.randn(1, args.prefill_tokens, 3072, generator=gen) * 0.02).to(dtype)
    with torch.inference_mode():
        def prefill():
            return lm(inputs_embeds=embeds, use_cache=True)

        prefill_s, out = timed(prefill, args.repeat)
        past = out.past_key_values
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        # Decode: one warm-up step, then D timed steps.
        out = lm(input_ids=token, past_key_values=past, use_cache=True)
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        t = time.perf_counter()
        for _ in range(args.decode_tokens):
            out = lm(input_ids=token, past_key_values=out.past_key_values, use_cache=True)
            token = out.logits[:, -1].argmax(-1, keepdim=True)
        decode_s = time.perf_counter() - t
    return {
        "prefill_tokens": args.prefill_tokens,
        "prefill_s": prefill_s,
        "prefill_tokens_per_s": args.prefill_tokens / prefill_s,
        "decode_tokens": args.decode_tokens,
        "decode_tokens_per_s": args.decode_tokens / decode_s,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint folder (blip3 init-random --preset full)")
    p.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--crops", type=int, default=5, help="ViT crops (640x480 anyres = 5)")
    p.add_argument("--text-tokens", type=int, default=50, help="prompt tokens conditioning the perceiver")
    p.add_argument("--prefill-tokens", type=int, default=685, help="prefill positions (640x480 anyres = 685)")
    p.add_argument("--decode-tokens", type=int, default=16)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--stages", default="vision,language")
    p.add_argument("--json", help="write the result object here")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    result = {
        "engine": "pytorch",
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "dtype": args.dtype,
        "threads": args.threads,
    }
    stages = args.stages.split(",")
    if "vision" in stages:
        result.update(bench_vision(args, dtype))
    if "language" in stages:
        result.update(bench_language(args, dtype))
    if "vision" in stages and "language" in stages:
        result["ttft_s"] = result["vision_encode_s"] + result["resampler_s"] + result["prefill_s"]
    result["peak_rss_bytes"] = peak_rss_bytes()
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
