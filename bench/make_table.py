#!/usr/bin/env python3
"""Comparison table (Markdown) from one `bench/run_peers.sh` results folder.

Ratios are blip3-rs ÷ peer for rates (tokens/s) and peer ÷ blip3-rs for times,
so > 1 always means blip3-rs is faster. The decode roofline fraction is
tokens/s × weight bytes streamed per token ÷ the 2-thread read bandwidth
measured just before and just after that measurement (the mean of the two
probes; the VM's bandwidth drifts by up to 2x within minutes), or, in older
results folders, the one probe at the start of the run.
"""

import json
import os
import sys

# Decoder (qkv, o, gate_up, down for 32 layers) + the 32012 head rows blip3 keeps.
DECODER_WEIGHTS = 32 * (9216 + 3072 + 16384 + 8192) * 3072
HEAD_WEIGHTS = 32012 * 3072
# Bytes per weight as blip3-rs holds them in memory (block formats as in GGML).
BLIP3_BPW = {"bf16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32, "q4_k": 144 / 256}
# llama.cpp format compared with each of ours.
LLAMA_OF = {"bf16": "f16", "q8_0": "Q8_0", "q4_0": "Q4_0", "q4_k": "Q4_K_S"}


def load(folder, name):
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        text = f.read().strip()
    return json.loads(text) if text else None


def llama_runs(folder, stem):
    """The llama-bench -o json entries of `stem` with flash attention off and on
    (`stem-fa0.json`, `stem-fa1.json`), or of `stem.json` in older folders."""
    entries = []
    for name in (f"{stem}-fa0.json", f"{stem}-fa1.json", f"{stem}.json"):
        entries += load(folder, name) or []
    return entries


def llama_rates(entries):
    """(pp tokens/s, tg tokens/s, prompt length, generated) from llama-bench -o json,
    each the best over the entries (flash attention off and on)."""
    pp = tg = None
    n_p = n_g = 0
    for e in entries or []:
        if e.get("n_prompt", 0) > 0 and e.get("n_gen", 0) == 0 and (pp is None or e["avg_ts"] > pp):
            pp, n_p = e["avg_ts"], e["n_prompt"]
        elif e.get("n_gen", 0) > 0 and e.get("n_prompt", 0) == 0 and (tg is None or e["avg_ts"] > tg):
            tg, n_g = e["avg_ts"], e["n_gen"]
    return pp, tg, n_p, n_g


def llama_depth_rate(folder, q, depth):
    """Best tg tokens/s of llama-bench -d DEPTH (decode after DEPTH positions) over
    flash attention off and on, if run."""
    rates = [e["avg_ts"] for e in llama_runs(folder, f"llama-{q}-d{depth}") if e.get("n_gen", 0) > 0]
    return max(rates) if rates else None


def cpu_lines(folder):
    """The CPU model and its vector flags, from the lscpu and /proc/cpuinfo copies."""
    model = "unknown CPU"
    path = os.path.join(folder, "lscpu.txt")
    if os.path.exists(path):
        for line in open(path):
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    flags = []
    path = os.path.join(folder, "cpuflags.txt")
    if os.path.exists(path):
        wanted = ("avx2", "fma", "f16c", "avx512", "amx", "avx_vnni")
        flags = [f for f in open(path).read().split(":", 1)[-1].split() if f.startswith(wanted)]
    build = ""
    path = os.path.join(folder, "llama-build.txt")
    if os.path.exists(path):
        build = open(path).read().strip()
    return model, " ".join(flags) or "(flags not recorded)", build


def streamed_gguf_bytes(folder, fmt):
    """Bytes llama.cpp reads per token: every tensor but the embedding table."""
    path = os.path.join(os.environ.get("WORK", "/tmp/blip3-peers"), f"phi3-{fmt}.gguf")
    try:
        import gguf

        reader = gguf.GGUFReader(path)
        return sum(int(t.n_bytes) for t in reader.tensors if t.name != "token_embd.weight")
    except Exception:  # the GGUF may have been removed: no roofline then
        return None


def adjacent_bandwidth(folder, label, fallback):
    """Mean all-thread read bandwidth of the probes around measurement `label`."""
    probes = [load(folder, f"bandwidth-{label}-{when}.json") for when in ("before", "after")]
    rates = [p["read_bytes_per_s_all_threads"] for p in probes if p]
    return sum(rates) / len(rates) if rates else fallback


def roofline(rate, bytes_per_token, bandwidth):
    """'78 % of 23.1 GB/s', or '–' when something is missing."""
    if not (rate and bytes_per_token and bandwidth):
        return "–"
    return f"{100 * rate * bytes_per_token / bandwidth:.0f} % of {bandwidth / 1e9:.1f} GB/s"


def fmt_ratio(r):
    return "–" if r is None else f"{r:.2f}×"


def main():
    folder = sys.argv[1]
    bw = load(folder, "bandwidth.json")
    bandwidth = bw["read_bytes_per_s_all_threads"] if bw else None
    ours = {f: load(folder, f"blip3-{f}.json") for f in BLIP3_BPW}
    ours = {f: r for f, r in ours.items() if r is not None or f != "q4_k"}
    torch = {d: load(folder, f"pytorch-{d}.json") for d in ["f32", "bf16"]}
    llama = {q: llama_rates(llama_runs(folder, f"llama-{q}")) for q in LLAMA_OF.values()}
    openvino = {d: load(folder, f"openvino-{d}.json") for d in ["f32", "bf16"]}
    llama = {q: v for q, v in llama.items() if v[0] is not None or q != "Q4_K_S"}
    base = ours["bf16"] or {}
    out = []
    p = out.append

    model, flags, build = cpu_lines(folder)
    p(f"CPU: **{model}**, {os.cpu_count()} logical CPUs; 2 threads everywhere.")
    p(f"Flags: `{flags}`.")
    if build:
        p(f"{build}; llama.cpp figures are the better of flash attention off and on.")
    if bandwidth:
        p(f"Read bandwidth (`blip3 bandwidth`, all threads): {bandwidth / 1e9:.1f} GB/s; "
          f"1 thread {bw['read_bytes_per_s_1_thread'] / 1e9:.1f} GB/s.")
    p("")
    # `images` (one entry per image) since the family seam; `image` before.
    images = base.get("images") or ([base["image"]] if "image" in base else [])
    crops = sum(i.get("num_crops", 0) for i in images) or "?"
    p(f"### Image encoding: 640×480 image, {crops} crops (ViT-H/14-378 + perceiver)")
    p("")
    p("| engine | ViT | perceiver | ViT + perceiver | blip3 bf16 faster by |")
    p("|---|---|---|---|---|")
    ours_vis = (base.get("vision_encode_s", 0) + base.get("resampler_s", 0)) or None
    for name, r in [(f"blip3-rs {f}", ours[f]) for f in ours] + [(f"PyTorch {d}", torch[d]) for d in torch]:
        if not r or "vision_encode_s" not in r:
            p(f"| {name} | not run | | | |")
            continue
        total = r["vision_encode_s"] + r["resampler_s"]
        ratio = total / ours_vis if (ours_vis and name.startswith("PyTorch")) else None
        p(f"| {name} | {r['vision_encode_s']:.1f} s | {r['resampler_s']:.1f} s | {total:.1f} s | {fmt_ratio(ratio)} |")
    ours_vit = base.get("vision_encode_s")
    for d, r in openvino.items():
        if not r:
            p(f"| OpenVINO {d} (ViT only) | not run | | | |")
            continue
        ratio = r["vision_encode_s"] / ours_vit if ours_vit else None
        p(f"| OpenVINO {d} (ViT only, {r['openvino']}) | {r['vision_encode_s']:.1f} s | | | "
          f"{fmt_ratio(ratio)} (ViT vs ViT) |")
    p("")

    n_prefill = base.get("prefill_tokens", "?")
    p(f"### Prefill ({n_prefill} positions; llama.cpp: pp512, text only)")
    p("")
    p("| engine | format | prefill tokens/s | blip3 ratio (same format class) |")
    p("|---|---|---|---|")
    rows = []
    for f, r in ours.items():
        rows.append(("blip3-rs", f, r and r.get("prefill_tokens_per_s")))
    for d, r in torch.items():
        rows.append(("PyTorch", d, r and r.get("prefill_tokens_per_s")))
    for q, (pp, _, n_p, _) in llama.items():
        rows.append((f"llama.cpp pp{n_p}", q.lower(), pp))
    pairs = {"PyTorch f32": "bf16", "PyTorch bf16": "bf16"}
    pairs.update({f"llama.cpp {q.lower()}": f for f, q in LLAMA_OF.items()})
    for eng, f, rate in rows:
        key = f"{eng.split(' pp')[0]} {f}"
        mine = ours.get(pairs.get(key, ""), None)
        ratio = (mine["prefill_tokens_per_s"] / rate) if (mine and rate and eng != "blip3-rs") else None
        p(f"| {eng} | {f} | {'not run' if rate is None else f'{rate:.1f}'} | {fmt_ratio(ratio)} |")
    p("")

    p(f"### Decode (tokens/s; blip3 and PyTorch after the {n_prefill}-position image prompt; "
      f"llama.cpp tg64 from an empty context and tg32 after {n_prefill} positions)")
    p("")
    p("| engine | format | decode tokens/s | bytes/token (weights) | bandwidth roofline (probes around the run) | blip3 ratio (same format) |")
    p("|---|---|---|---|---|---|")
    for f, r in ours.items():
        rate = r and r.get("decode_tokens_per_s")
        bpt = (DECODER_WEIGHTS + HEAD_WEIGHTS) * BLIP3_BPW[f]
        roof = roofline(rate, bpt, adjacent_bandwidth(folder, f"blip3-{f}", bandwidth))
        p(f"| blip3-rs | {f} | {'not run' if rate is None else f'{rate:.2f}'} | {bpt / 1e9:.2f} GB | {roof} | |")
    for d, r in torch.items():
        rate = r and r.get("decode_tokens_per_s")
        bpt = (DECODER_WEIGHTS + 32064 * 3072) * (4 if d == "f32" else 2)
        roof = roofline(rate, bpt, adjacent_bandwidth(folder, f"pytorch-{d}", bandwidth))
        mine = ours["bf16"] and ours["bf16"].get("decode_tokens_per_s")
        ratio = mine / rate if (mine and rate) else None
        p(f"| PyTorch | {d} | {'not run' if rate is None else f'{rate:.2f}'} | {bpt / 1e9:.2f} GB | {roof} | {fmt_ratio(ratio)} (vs blip3 bf16) |")
    for q, (_, tg, _, _) in llama.items():
        bpt = streamed_gguf_bytes(folder, q)
        near = adjacent_bandwidth(folder, f"llama-{q}", bandwidth)
        roof = roofline(tg, bpt, near)
        mine_fmt = {v: k for k, v in LLAMA_OF.items()}[q]
        mine = ours.get(mine_fmt) and ours[mine_fmt].get("decode_tokens_per_s")
        ratio = mine / tg if (mine and tg) else None
        bpt_s = f"{bpt / 1e9:.2f} GB" if bpt else "–"
        p(f"| llama.cpp tg64, empty context | {q.lower()} | {'not run' if tg is None else f'{tg:.2f}'} | {bpt_s} | {roof} | {fmt_ratio(ratio)} (vs blip3 {mine_fmt}) |")
        deep = llama_depth_rate(folder, q, n_prefill)
        if deep:
            roof = roofline(deep, bpt, near)
            ratio = mine / deep if mine else None
            p(f"| llama.cpp tg32 after {n_prefill} positions | {q.lower()} | {deep:.2f} | {bpt_s} | {roof} | **{fmt_ratio(ratio)}** (vs blip3 {mine_fmt}) |")
    p("")

    pad = {f: load(folder, f"blip3-{f}-pad.json") for f in BLIP3_BPW}
    if any(pad.values()):
        p("### Decode side by side at the same context (tokens/s over 32 new tokens; "
          "llama.cpp tg32 after as many positions)")
        p("")
        p("| format | context | blip3-rs | blip3-rs roofline | llama.cpp | llama.cpp roofline | blip3 ÷ llama |")
        p("|---|---|---|---|---|---|---|")
        for f in BLIP3_BPW:
            q = LLAMA_OF[f]
            bpt = (DECODER_WEIGHTS + HEAD_WEIGHTS) * BLIP3_BPW[f]
            gguf_bpt = streamed_gguf_bytes(folder, q)
            for label, r in [(f"blip3-{f}", ours.get(f)), (f"blip3-{f}-pad", pad.get(f))]:
                if not r:
                    continue
                depth = r["prefill_tokens"]
                mine = r.get("decode_tokens_per_s")
                theirs = llama_depth_rate(folder, q, depth)
                near = adjacent_bandwidth(folder, label, bandwidth)
                near_llama = adjacent_bandwidth(folder, f"llama-{q}", bandwidth)
                ratio = mine / theirs if (mine and theirs) else None
                p(f"| {f} vs {q.lower()} | {depth} | {mine:.2f} | {roofline(mine, bpt, near)} | "
                  f"{'not run' if theirs is None else f'{theirs:.2f}'} | {roofline(theirs, gguf_bpt, near_llama)} | "
                  f"**{fmt_ratio(ratio)}** |")
        p("")

    p("### Time to first token and memory")
    p("")
    p("| engine | format | TTFT | peak RSS |")
    p("|---|---|---|---|")
    for f, r in ours.items():
        if r:
            p(f"| blip3-rs | {f} | {r['ttft_s']:.1f} s | {r['peak_rss_bytes'] / 1e9:.1f} GB |")
    for d, r in torch.items():
        if r and "ttft_s" in r:
            p(f"| PyTorch | {d} | {r['ttft_s']:.1f} s (ViT + perceiver + prefill) | {r['peak_rss_bytes'] / 1e9:.1f} GB |")
    print("\n".join(out))


if __name__ == "__main__":
    main()
