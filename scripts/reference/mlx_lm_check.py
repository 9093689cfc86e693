#!/usr/bin/env python3
"""Check a converted MLX llama folder with mlx-lm, independently of saeidx.

Loads MODEL_FOLDER with `mlx_lm.load` and runs four checks:

a. prints a summary of the model config (shape, rope, quantization);
b. mean next-token cross-entropy (nats) of a fixed English sentence, tokenized with the
   folder's own tokenizer without adding special tokens. For SmolLM2-135M-Instruct Q4_1, a
   correct conversion gives 2.46 (llama.cpp itself: 2.48 on the same ids), while q/k rows
   left in llama.cpp's order give 2.71;
c. with --gguf: an independent model built from the source GGUF: the folder's architecture,
   every tensor dequantized from the GGUF by gguf-py, q/k rows kept in llama.cpp's order and
   RoPE switched to traditional (interleaved) mode -- the way llama.cpp runs the file. Its
   logits must equal (b)'s up to rounding, which checks every tensor of the conversion,
   the q/k un-permutation included;
d. greedy generation of a few tokens after a short prompt;
e. with --fixture: the tokenizer as mlx-lm loads it (through transformers' AutoTokenizer, which
   may rebuild parts of tokenizer.json depending on tokenizer_config.json's tokenizer_class)
   must reproduce every case of a tokenizer_reference.py fixture.

Everything runs with the floating parameters upcast to float32, so that the logit comparison
measures the conversion and not float16 rounding (float16 is also very slow on MLX's CPU).
Exits 1 when the loss is above --max-loss, with --gguf when the logit difference is above
--max-logit-diff, and with --fixture when any case is tokenized differently.

Usage:
    python mlx_lm_check.py MODEL_FOLDER [--gguf SOURCE.gguf] [--fixture IDS.json] [--json]
"""

import argparse
import json
import sys
from importlib.metadata import version

import gguf
import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx_lm import generate, load
from mlx_lm.utils import dequantize_model

LOSS_TEXT = "The capital of France is Paris. It is known for the Eiffel Tower and its museums."
PROMPT = "The capital of France is"

# llama.cpp tensor names -> mlx-lm (Hugging Face) module paths for the llama architecture.
GGUF_TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
GGUF_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def config_summary(args, config):
    return {
        "model_type": args.model_type,
        "num_hidden_layers": args.num_hidden_layers,
        "hidden_size": args.hidden_size,
        "intermediate_size": args.intermediate_size,
        "num_attention_heads": args.num_attention_heads,
        "num_key_value_heads": args.num_key_value_heads,
        "head_dim": args.head_dim,
        "vocab_size": args.vocab_size,
        "tie_word_embeddings": args.tie_word_embeddings,
        "rope_theta": args.rope_theta,
        "rope_traditional": args.rope_traditional,
        "rope_scaling": args.rope_scaling,
        "rms_norm_eps": args.rms_norm_eps,
        "quantization": config.get("quantization"),
    }


def logits_for(model, ids):
    logits = model(mx.array(ids)[None]).astype(mx.float32)
    mx.eval(logits)
    return logits


def mean_cross_entropy(logits, ids):
    targets = mx.array(ids[1:])[None]
    return nn.losses.cross_entropy(logits[:, :-1], targets, reduction="mean").item()


def gguf_weights(path):
    """Every tensor of a llama GGUF, dequantized by gguf-py, under mlx-lm's parameter names.

    q/k rows stay in llama.cpp's order: that layout is only right with traditional RoPE.
    """
    weights = []
    for tensor in gguf.GGUFReader(path).tensors:
        base, _, suffix = tensor.name.rpartition(".")
        if base.startswith("blk."):
            _, layer, kind = base.split(".")
            name = f"model.layers.{layer}.{GGUF_LAYER_NAMES[kind]}.{suffix}"
        else:
            name = f"{GGUF_TOP_NAMES[base]}.{suffix}"
        values = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        weights.append((name, mx.array(values)))
    return weights


def gguf_reference_model(folder, gguf_path):
    """The folder's architecture with the GGUF's own weights, run the way llama.cpp runs them."""
    model, _ = load(folder)
    dequantize_model(model)
    model.set_dtype(mx.float32)
    model.load_weights(gguf_weights(gguf_path), strict=True)
    for layer in model.model.layers:
        rope = layer.self_attn.rope
        if not hasattr(rope, "traditional"):
            raise SystemExit(f"cannot switch {type(rope).__name__} to traditional RoPE")
        rope.traditional = True
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="MLX model folder (config.json, model.safetensors, tokenizer files)")
    parser.add_argument("--gguf", help="the GGUF the folder was converted from, for check (c)")
    parser.add_argument("--fixture", help="tokenizer_reference.py fixture, for check (e)")
    parser.add_argument("--json", action="store_true", help="print one JSON summary instead of text")
    parser.add_argument("--max-loss", type=float, default=2.6, help="fail above this loss in nats (default 2.6)")
    parser.add_argument("--max-logit-diff", type=float, default=1e-3, help="fail above this (default 1e-3)")
    parser.add_argument("--max-tokens", type=int, default=8, help="tokens to generate greedily (default 8)")
    args = parser.parse_args()

    model, tokenizer, config = load(args.model, return_config=True)
    summary = config_summary(model.args, config)

    model.set_dtype(mx.float32)  # also: float16 arithmetic is ~25x slower on MLX's CPU backend

    prompt_ids = tokenizer.encode(PROMPT, add_special_tokens=False)
    generated = generate(model, tokenizer, prompt_ids, max_tokens=args.max_tokens)

    ids = tokenizer.encode(LOSS_TEXT, add_special_tokens=False)
    logits = logits_for(model, ids)
    loss = mean_cross_entropy(logits, ids)

    logit_diff = gguf_loss = None
    if args.gguf:
        gguf_logits = logits_for(gguf_reference_model(args.model, args.gguf), ids)
        logit_diff = mx.abs(gguf_logits - logits).max().item()
        gguf_loss = mean_cross_entropy(gguf_logits, ids)

    mismatches = None
    if args.fixture:
        with open(args.fixture, encoding="utf-8") as f:
            cases = json.load(f)["cases"]
        mismatches = [case["text"] for case in cases if tokenizer.encode(case["text"]) != case["ids"]]

    ok = loss <= args.max_loss and (logit_diff is None or logit_diff <= args.max_logit_diff) and not mismatches
    result = {
        "model": args.model,
        "gguf": args.gguf,
        "config": summary,
        "loss_text": LOSS_TEXT,
        "loss_token_ids": ids,
        "loss_nats": loss,
        "gguf_reference_loss_nats": gguf_loss,
        "max_abs_logit_diff": logit_diff,
        "prompt": PROMPT,
        "prompt_token_ids": prompt_ids,
        "generated": generated,
        "fixture": args.fixture,
        "tokenizer_mismatches": mismatches,
        "versions": {pkg: version(pkg) for pkg in ("mlx", "mlx-lm", "transformers", "tokenizers", "gguf")},
        "ok": ok,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print("config:")
        for key, value in summary.items():
            print(f"  {key}: {value}")
        print(f"loss over {len(ids)} tokens: {loss:.4f} nats (limit {args.max_loss})")
        if args.gguf:
            print(
                f"GGUF reference (llama.cpp layout, traditional RoPE): loss {gguf_loss:.4f} nats, "
                f"max |logit diff| {logit_diff:.3g} (limit {args.max_logit_diff:g})"
            )
        else:
            print("GGUF reference: skipped (pass --gguf)")
        print(f"greedy: {PROMPT!r} -> {generated!r}")
        if args.fixture:
            print(f"tokenizer vs fixture: {len(mismatches)} cases differ")
            for text in mismatches:
                print(f"  {text!r}")
        else:
            print("tokenizer vs fixture: skipped (pass --fixture)")
        print("versions:", ", ".join(f"{k} {v}" for k, v in result["versions"].items()))
        print("OK" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
