#!/usr/bin/env python3
"""Hook activations computed with mlx-lm's own Llama modules, independently of saeidx.

Reads a JSON request

    {"sequences": [[token ids], ...],
     "hooks": [{"layer": L, "kind": "resid_pre" | "attn_z" | "attn_out" | "resid_mid" | "mlp_out" | "resid_post"}, ...]}

runs each sequence ALONE (batch of one, no padding) through the model's modules, in
float32, and writes a safetensors file with one `[tokens, hidden]` float32 array per
sequence and hook, named `seq{i}.blocks.{L}.hook_{kind}` (saeidx's hook names;
`attn_z`, the heads' outputs concatenated before `o_proj`, is `seq{i}.blocks.{L}.attn.hook_z`).

The block is computed exactly as mlx-lm's `TransformerBlock.__call__` does, step by step,
so that the sublayer outputs can be read: `r = self_attn(input_layernorm(h), mask, cache)`
(attn_out; its `o_proj`'s input is attn_z), `h = h + r` (resid_mid), `r = mlp(post_attention_layernorm(h))` (mlp_out),
`h = h + r` (resid_post). The mask is mlx-lm's own `create_attention_mask`.

Usage:
    python mlx_lm_hooks.py MODEL_FOLDER_OR_REPO REQUEST.json OUT.safetensors
"""

import argparse
import json
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.models.base import create_attention_mask
from mlx_lm.utils import _download, load_model


class InputRecorder(nn.Module):
    """Calls `inner`, keeping its input."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.seen = None

    def __call__(self, x):
        self.seen = x
        return self.inner(x)


def hook_activations(model, ids, wanted):
    """{(layer, kind): [T, D] array} for one sequence of token ids."""
    inner = model.model
    h = inner.embed_tokens(mx.array(ids)[None])
    mask = create_attention_mask(h, None)
    deepest = max(layer for layer, _ in wanted)
    found = {}

    def record(layer, kind, value):
        if (layer, kind) in wanted:
            found[(layer, kind)] = value[0]

    for layer, block in enumerate(inner.layers[: deepest + 1]):
        record(layer, "resid_pre", h)
        output = InputRecorder(block.self_attn.o_proj)
        block.self_attn.o_proj = output
        r = block.self_attn(block.input_layernorm(h), mask, None)
        block.self_attn.o_proj = output.inner
        record(layer, "attn_z", output.seen)
        record(layer, "attn_out", r)
        h = h + r
        record(layer, "resid_mid", h)
        r = block.mlp(block.post_attention_layernorm(h))
        record(layer, "mlp_out", r)
        h = h + r
        record(layer, "resid_post", h)
    mx.eval(list(found.values()))
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="model folder or Hugging Face repo id (resolved from the cache offline)")
    parser.add_argument("request", help="JSON file with sequences and hooks")
    parser.add_argument("out", help="safetensors file to write")
    args = parser.parse_args()

    folder = Path(args.model) if Path(args.model).is_dir() else Path(_download(args.model))
    model, _ = load_model(folder)
    # float32 throughout, scales and biases of quantized layers included: the comparison
    # then measures the computation, not float16 rounding.
    model.set_dtype(mx.float32)

    with open(args.request, encoding="utf-8") as f:
        request = json.load(f)
    wanted = {(hook["layer"], hook["kind"]) for hook in request["hooks"]}
    arrays = {}
    for index, ids in enumerate(request["sequences"]):
        for (layer, kind), value in hook_activations(model, ids, wanted).items():
            name = "attn.hook_z" if kind == "attn_z" else f"hook_{kind}"
            arrays[f"seq{index}.blocks.{layer}.{name}"] = value.astype(mx.float32)
    mx.save_safetensors(args.out, arrays)


if __name__ == "__main__":
    main()
