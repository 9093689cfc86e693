#!/usr/bin/env python3
"""Check a converted MLX llama folder with mlx-lm, independently of saeidx.

Loads MODEL_FOLDER with `mlx_lm.load` and runs four checks:

a. prints a summary of the model config (shape, rope, quantization);
b. mean next-token cross-entropy (nats) of a fixed English sentence, tokenized with the
   folder's own tokenizer without adding special tokens. A correct SmolLM2-135M-Instruct
   conversion gives about 1.5 nats; q/k rows left in llama.cpp's order give about 2.7;
c. q/k layout cross-check: q_proj/k_proj weight, scales and biases are permuted back into
   llama.cpp's GGUF row order (per head: reshape [n_head, 2, head_dim/2, cols], swap axes 1 and 2)
   and RoPE is switched to traditional (interleaved) mode. Attention scores are invariant under
   that change, so the logits must match (b)'s up to rounding. A converter that forgot to
   un-permute q/k fails (b) but, having permuted weights, makes (c) compare two wrong models
   that still differ from each other;
d. greedy generation of a few tokens after a short prompt.

Checks (b) and (c) run with every floating parameter upcast to float32, so that the logit
comparison measures the layout and not float16 rounding. Exits 1 when the loss is above
--max-loss or the logit difference is above --max-logit-diff.

Usage:
    python mlx_lm_check.py MODEL_FOLDER [--json]
"""

import argparse
import json
import sys
from importlib.metadata import version

import mlx.core as mx
import mlx.nn as nn
from mlx_lm import generate, load

LOSS_TEXT = "The capital of France is Paris. It is known for the Eiffel Tower and its museums."
PROMPT = "The capital of France is"


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


def to_gguf_rows(x, n_head):
    """HF (half-split rope) row order -> llama.cpp (interleaved rope) row order."""
    return x.reshape(n_head, 2, -1, *x.shape[1:]).swapaxes(1, 2).reshape(x.shape)


def use_gguf_layout(model):
    """Permute q/k rows into llama.cpp's order and make every RoPE traditional, in place."""
    for layer in model.model.layers:
        attn = layer.self_attn
        for proj, n_head in ((attn.q_proj, attn.n_heads), (attn.k_proj, attn.n_kv_heads)):
            names = [n for n in ("weight", "scales", "biases", "bias") if n in proj]
            proj.update({n: to_gguf_rows(proj[n], n_head) for n in names})
        if not hasattr(attn.rope, "traditional"):
            raise SystemExit(f"cannot switch {type(attn.rope).__name__} to traditional RoPE")
        attn.rope.traditional = True


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="MLX model folder (config.json, model.safetensors, tokenizer files)")
    parser.add_argument("--json", action="store_true", help="print one JSON summary instead of text")
    parser.add_argument("--max-loss", type=float, default=2.0, help="fail above this loss in nats (default 2.0)")
    parser.add_argument("--max-logit-diff", type=float, default=1e-3, help="fail above this (default 1e-3)")
    parser.add_argument("--max-tokens", type=int, default=8, help="tokens to generate greedily (default 8)")
    args = parser.parse_args()

    model, tokenizer, config = load(args.model, return_config=True)
    summary = config_summary(model.args, config)

    prompt_ids = tokenizer.encode(PROMPT, add_special_tokens=False)
    generated = generate(model, tokenizer, prompt_ids, max_tokens=args.max_tokens)

    model.set_dtype(mx.float32)
    ids = tokenizer.encode(LOSS_TEXT, add_special_tokens=False)
    logits = logits_for(model, ids)
    loss = mean_cross_entropy(logits, ids)

    use_gguf_layout(model)
    gguf_logits = logits_for(model, ids)
    logit_diff = mx.abs(gguf_logits - logits).max().item()
    gguf_loss = mean_cross_entropy(gguf_logits, ids)

    ok = loss <= args.max_loss and logit_diff <= args.max_logit_diff
    result = {
        "model": args.model,
        "config": summary,
        "loss_text": LOSS_TEXT,
        "loss_token_ids": ids,
        "loss_nats": loss,
        "gguf_layout_loss_nats": gguf_loss,
        "max_abs_logit_diff": logit_diff,
        "prompt": PROMPT,
        "prompt_token_ids": prompt_ids,
        "generated": generated,
        "versions": {pkg: version(pkg) for pkg in ("mlx", "mlx-lm", "transformers", "tokenizers")},
        "ok": ok,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print("config:")
        for key, value in summary.items():
            print(f"  {key}: {value}")
        print(f"loss over {len(ids)} tokens: {loss:.4f} nats (limit {args.max_loss})")
        print(f"q/k in GGUF order + traditional RoPE: loss {gguf_loss:.4f} nats, "
              f"max |logit diff| {logit_diff:.3g} (limit {args.max_logit_diff:g})")
        print(f"greedy: {PROMPT!r} -> {generated!r}")
        print("versions:", ", ".join(f"{k} {v}" for k, v in result["versions"].items()))
        print("OK" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
