#!/usr/bin/env python3
"""Write the language model of a BLIP-3 checkpoint as a Phi-3 GGUF for llama.cpp.

The llama.cpp peer must run the *same* weights as blip3-rs, so this reads the
`vlm.lang_model.*` tensors of our safetensors folder (single file or sharded) and
writes them with the `gguf` package under llama.cpp's `phi3` architecture names:

  model.embed_tokens.weight            -> token_embd.weight   [32064, 3072]
  model.layers.N.input_layernorm       -> blk.N.attn_norm
  model.layers.N.self_attn.qkv_proj    -> blk.N.attn_qkv      (fused, as in Phi-3)
  model.layers.N.self_attn.o_proj      -> blk.N.attn_output
  model.layers.N.post_attention_layernorm -> blk.N.ffn_norm
  model.layers.N.mlp.gate_up_proj      -> blk.N.ffn_up        (fused gate|up)
  model.layers.N.mlp.down_proj         -> blk.N.ffn_down
  model.norm.weight                    -> output_norm.weight
  lm_head.weight                       -> output.weight

BLIP-3's decoupled extras (3 embedding rows, the 3-row `additional_fc` and the head
bias) have no place in llama.cpp's Phi-3 graph and are left out: for speed they are
0.2 % of the head. The vocabulary is the real Phi-3 tokenizer (testdata) padded to
the 32064 embedding rows. Weights are written as F16 (or BF16); `llama-quantize`
makes Q8_0 / Q4_0 from that file. Takes about 2 minutes and 8 GB of disk here.
"""

import argparse
import json
import os

import gguf
import numpy as np
import torch
from safetensors import safe_open

PREFIX = "vlm.lang_model."


def tensors(model_dir):
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    for name in files:
        with safe_open(os.path.join(model_dir, name), framework="pt") as f:
            for key in f.keys():
                if key.startswith(PREFIX):
                    yield key[len(PREFIX):], f.get_tensor(key)


def gguf_name(hf):
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    if hf.startswith("model.layers."):
        rest = hf[len("model.layers."):]
        layer, sub = rest.split(".", 1)
        mapped = {
            "input_layernorm.weight": "attn_norm.weight",
            "self_attn.qkv_proj.weight": "attn_qkv.weight",
            "self_attn.o_proj.weight": "attn_output.weight",
            "post_attention_layernorm.weight": "ffn_norm.weight",
            "mlp.gate_up_proj.weight": "ffn_up.weight",
            "mlp.down_proj.weight": "ffn_down.weight",
        }.get(sub)
        return f"blk.{layer}.{mapped}" if mapped else None
    return None  # decoupled extras and the head bias


def vocabulary(tokenizer_dir, n_vocab):
    with open(os.path.join(tokenizer_dir, "tokenizer.json")) as f:
        tok = json.load(f)
    pieces = {i: p for p, i in tok["model"]["vocab"].items()}
    types = {}
    for added in tok.get("added_tokens", []):
        pieces[added["id"]] = added["content"]
        types[added["id"]] = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
    tokens, scores, toktypes = [], [], []
    for i in range(n_vocab):
        piece = pieces.get(i)
        if piece is None:
            tokens.append(f"[PAD{i}]")
            toktypes.append(gguf.TokenType.UNUSED)
        else:
            tokens.append(piece)
            toktypes.append(types.get(i, gguf.TokenType.NORMAL))
        scores.append(-float(i))
    return tokens, scores, toktypes


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--tokenizer", default=os.path.join(os.path.dirname(__file__), "..", "testdata", "phi3-tokenizer"))
    p.add_argument("--out", required=True)
    p.add_argument("--type", choices=["f16", "bf16"], default="f16")
    args = p.parse_args()

    dtype, ftype, qtype = {
        "f16": (torch.float16, gguf.LlamaFileType.MOSTLY_F16, gguf.GGMLQuantizationType.F16),
        "bf16": (torch.bfloat16, gguf.LlamaFileType.MOSTLY_BF16, gguf.GGMLQuantizationType.BF16),
    }[args.type]

    w = gguf.GGUFWriter(args.out, "phi3")
    w.add_name("blip3-phi3-mini random-weight language model")
    w.add_context_length(4096)
    w.add_rope_scaling_orig_ctx_len(4096)
    w.add_embedding_length(3072)
    w.add_feed_forward_length(8192)
    w.add_block_count(32)
    w.add_head_count(32)
    w.add_head_count_kv(32)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(96)
    w.add_rope_freq_base(10000.0)
    w.add_sliding_window(2047)
    w.add_file_type(ftype)

    n_vocab = None
    count = 0
    for hf, t in tensors(args.model):
        name = gguf_name(hf)
        if name is None:
            continue
        if name == "token_embd.weight":
            n_vocab = t.shape[0]
        # Norm weights stay F32 as llama.cpp's converter writes them.
        if t.dim() == 1:
            w.add_tensor(name, t.to(torch.float32).numpy())
        elif dtype == torch.float16:
            w.add_tensor(name, t.to(torch.float16).numpy())
        else:
            raw = t.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint8)
            w.add_tensor(name, raw, raw_shape=list(t.shape), raw_dtype=qtype)
        count += 1
    if n_vocab is None:
        raise SystemExit(f"{args.model}: no {PREFIX}model.embed_tokens.weight")
    tokens, scores, toktypes = vocabulary(args.tokenizer, n_vocab)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(toktypes)
    w.add_bos_token_id(1)
    w.add_eos_token_id(32000)
    w.add_pad_token_id(32000)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file(progress=False)
    w.close()
    print(f"wrote {args.out}: {count} tensors, vocabulary {n_vocab}")


if __name__ == "__main__":
    main()
