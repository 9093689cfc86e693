#!/usr/bin/env python3
"""Tiny random checkpoints of every model family saeidx supports, made with mlx-lm's own
model classes, and their hook activations as mlx-lm computes them.

For each family this writes, under OUT/<case>/:

    hf/       the Hugging Face layout (names, Conv1D transposes, buffers as published),
              float32; one case in bfloat16, sharded with an index
    mlx/      the MLX layout (mlx-lm's parameter names), float32
    mlx-q4/   the MLX layout quantized as mlx-community converts (4-bit, embedding 8-bit,
              group size 32, float16 scales)

and `reference.safetensors` / `reference-q4.safetensors`: for each sequence and hook,
`seq{i}.blocks.{L}.hook_{kind}` ([tokens, hidden] float32). Every folder is loaded back
with `mlx_lm.utils.load_model` (so the HF layout is the one mlx-lm's `sanitize` reads),
and the activations are recorded from mlx-lm's own forward pass (`model(ids)`), each
sequence alone: its blocks, attention, MLP and post-norm modules are wrapped to record
their inputs and outputs. Where mlx-lm 0.32.2 departs from the checkpoint's definition,
the reference follows the definition, as saeidx does (and says so in `deviations`):
GPT-NeoX's exact GELU for `hidden_act = "gelu"`, and Gemma 2's sliding-window layers.

OUT/manifest.json lists the cases, the sequences and the hooks.

--text-model FAMILY writes instead one tiny random model of that family in the Hugging
Face layout (two layers, float32) with the vocabulary of the tokenizer.json given, into
OUT, so that end-to-end tests can run real text through it.

Usage:
    python family_fixtures.py OUT
    python family_fixtures.py OUT --text-model gpt2 --tokenizer TOKENIZER.json --vocab N
"""

import argparse
import copy
import json
import math
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten
from mlx_lm.models.base import create_causal_mask
from mlx_lm.utils import _get_classes, load_model, quantize_model

VOCAB = 128
LAYERS = 3
SEQUENCE_LENGTHS = [1, 5, 24, 40]
KINDS = ["resid_pre", "attn_z", "attn_out", "resid_mid", "mlp_out", "resid_post"]
# The attention output projection of each family: its input is attn.hook_z.
OUTPUT_PROJECTION = {"gpt2": "c_proj", "gpt_neox": "dense"}

LLAMA_LIKE = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=LAYERS, num_attention_heads=4,
    num_key_value_heads=2, rms_norm_eps=1e-5, vocab_size=VOCAB, max_position_embeddings=512,
)

CASES = {
    "llama": dict(
        LLAMA_LIKE, model_type="llama", head_dim=16, rope_theta=10000.0, attention_bias=True,
        tie_word_embeddings=False, sliding_window=8,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
    ),
    "gpt2": dict(
        model_type="gpt2", n_ctx=64, n_embd=64, n_head=4, n_layer=LAYERS, n_positions=64,
        layer_norm_epsilon=1e-5, vocab_size=VOCAB, activation_function="gelu_new",
    ),
    "gpt_neox": dict(
        model_type="gpt_neox", max_position_embeddings=64, hidden_size=64,
        num_attention_heads=4, num_hidden_layers=LAYERS, layer_norm_eps=1e-5,
        vocab_size=VOCAB, rotary_emb_base=10000, rotary_pct=0.25, use_parallel_residual=True,
        hidden_act="gelu", intermediate_size=256,
    ),
    "gpt_neox_sequential": dict(
        model_type="gpt_neox", max_position_embeddings=64, hidden_size=64,
        num_attention_heads=4, num_hidden_layers=LAYERS, layer_norm_eps=1e-5,
        vocab_size=VOCAB, rotary_emb_base=10000, rotary_pct=0.5, use_parallel_residual=False,
        hidden_act="gelu_new", intermediate_size=256,
    ),
    "gemma2": dict(
        LLAMA_LIKE, model_type="gemma2", head_dim=24, rms_norm_eps=1e-6, rope_theta=10000.0,
        attn_logit_softcapping=50.0, final_logit_softcapping=30.0, query_pre_attn_scalar=24,
        sliding_window=8, hidden_activation="gelu_pytorch_tanh",
    ),
    "gemma3_text": dict(
        LLAMA_LIKE, model_type="gemma3_text", num_key_value_heads=1, head_dim=16,
        rms_norm_eps=1e-6, rope_theta=1_000_000.0, rope_local_base_freq=10000.0,
        query_pre_attn_scalar=16, sliding_window=8, sliding_window_pattern=2,
        rope_scaling={"rope_type": "linear", "factor": 8.0},
    ),
    "gemma3": dict(
        model_type="gemma3", vocab_size=VOCAB,
        text_config=dict(
            LLAMA_LIKE, model_type="gemma3_text", head_dim=16, rms_norm_eps=1e-6,
            rope_theta=1_000_000.0, rope_local_base_freq=10000.0, query_pre_attn_scalar=16,
            sliding_window=8, sliding_window_pattern=3,
        ),
    ),
    "qwen2": dict(
        LLAMA_LIKE, model_type="qwen2", rope_theta=1_000_000.0, tie_word_embeddings=True,
    ),
    "qwen3": dict(
        LLAMA_LIKE, model_type="qwen3", head_dim=24, rope_theta=1_000_000.0,
        tie_word_embeddings=False,
    ),
    "phi3": dict(
        LLAMA_LIKE, model_type="phi3", rope_theta=10000.0, partial_rotary_factor=0.5,
        max_position_embeddings=1024, original_max_position_embeddings=64,
        rope_scaling={"type": "longrope", "long_factor": [1.0, 1.5, 2.5, 4.0],
                      "short_factor": [1.0, 1.0, 1.0, 1.0]},
        tie_word_embeddings=False,
    ),
    "olmo2": dict(
        LLAMA_LIKE, model_type="olmo2", rope_theta=500000.0, tie_word_embeddings=False,
    ),
}


def randomize(model, seed):
    """Every parameter random: norms near 1 (Gemma's near 0: they scale by 1 + w), biases
    small, matrices as initialized but resampled."""
    mx.random.seed(seed)
    params = {}
    for key, value in tree_flatten(model.parameters()):
        noise = mx.random.normal(value.shape)
        if "norm" in key or key.split(".")[-2] in ("ln_1", "ln_2", "ln_f"):
            base = 0.0 if "gemma" in model.model_type else 1.0
            params[key] = (base + 0.1 * noise) if key.endswith("weight") else 0.05 * noise
        elif key.endswith("bias"):
            params[key] = 0.05 * noise
        else:
            params[key] = 0.08 * noise
    model.update(tree_unflatten(list(params.items())))
    mx.eval(model.parameters())


def hf_layout(case, config, weights):
    """The MLX-layout `weights` renamed (and transposed) as Hugging Face publishes them,
    with the buffers its exporters include."""
    family = config["model_type"]
    out = {}
    if family == "gpt2":
        conv1d = (".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight",
                  ".mlp.c_proj.weight")
        for key, value in weights.items():
            key = key.removeprefix("model.")
            out[key] = value.T if key.endswith(conv1d) else value
        n = config["n_positions"]
        for layer in range(config["n_layer"]):
            out[f"h.{layer}.attn.bias"] = mx.tril(mx.ones((n, n)))[None, None]
    elif family == "gpt_neox":
        for key, value in weights.items():
            key = key.replace("model.h.", "gpt_neox.layers.")
            key = key.replace("model.embed_in", "gpt_neox.embed_in")
            key = key.replace("model.final_layer_norm", "gpt_neox.final_layer_norm")
            out[key.replace("model.embed_out", "embed_out")] = value
        for layer in range(config["num_hidden_layers"]):
            head_dim = config["hidden_size"] // config["num_attention_heads"]
            dims = int(head_dim * config["rotary_pct"])
            out[f"gpt_neox.layers.{layer}.attention.rotary_emb.inv_freq"] = mx.ones((dims // 2,))
    elif family == "gemma3":
        out = dict(weights)
        out["vision_tower.vision_model.post_layernorm.weight"] = mx.ones((8,))
        out["multi_modal_projector.mm_input_projection_weight"] = mx.ones((8, 64))
    else:
        out = dict(weights)
        if family == "llama":
            for layer in range(config["num_hidden_layers"]):
                out[f"model.layers.{layer}.self_attn.rotary_emb.inv_freq"] = mx.ones((8,))
    if family in ("gemma3_text", "qwen2"):
        # Tied: Hugging Face leaves the output projection out.
        out.pop("lm_head.weight", None)
    return out


def write_folder(folder, config, weights, shards=1):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    # The forward pass needs no tokenizer; the folder layout still has one.
    (folder / "tokenizer.json").write_text("{}")
    keys = sorted(weights)
    if shards == 1:
        mx.save_safetensors(str(folder / "model.safetensors"), weights)
        return
    index = {"metadata": {}, "weight_map": {}}
    per_shard = math.ceil(len(keys) / shards)
    for shard in range(shards):
        name = f"model-{shard + 1:05d}-of-{shards:05d}.safetensors"
        part = {key: weights[key] for key in keys[shard * per_shard:(shard + 1) * per_shard]}
        mx.save_safetensors(str(folder / name), part)
        index["weight_map"].update({key: name for key in part})
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=1))


class Recorder(nn.Module):
    """Calls `inner` (or `call` in its place) and records, under `name`, its output, or
    with `both=True` its input (`name.in`) and output (`name.out`)."""

    def __init__(self, inner, name, found, both=False, call=None, inputs=False):
        super().__init__()
        self.inner = inner
        self._name, self._found, self._both, self._call = name, found, both, call
        self._inputs = inputs

    def __getattr__(self, key):
        # The model reads attributes of its blocks (e.g. Llama's `use_sliding`).
        try:
            return super().__getattr__(key)
        except AttributeError:
            if "inner" not in self:
                raise
            return getattr(self["inner"], key)

    def __call__(self, *args, **kwargs):
        out = (self._call or self.inner)(*args, **kwargs)
        if self._inputs:
            self._found[self._name] = args[0]
        elif self._both:
            self._found[self._name + ".in"] = args[0]
            self._found[self._name + ".out"] = out
        else:
            self._found[self._name] = out
        return out


def language_model(model):
    return model.language_model if model.model_type == "gemma3" else model


def instrument(model, config, found, deviations):
    """Wraps the modules of every block so one forward pass records every hook."""
    family = model.model_type
    inner = language_model(model).model
    # The list the forward pass iterates (a `layers` property may return a copy).
    blocks = inner.h if "h" in inner else inner.layers
    for layer, block in enumerate(blocks):
        def rec(module, name, **kw):
            return Recorder(module, f"{layer}.{name}", found, **kw)

        blocks[layer] = rec(block, "block", both=True)
        attention = block.attn if family == "gpt2" else (
            block.attention if family == "gpt_neox" else block.self_attn
        )
        projection = OUTPUT_PROJECTION.get(family, "o_proj")
        setattr(attention, projection, rec(getattr(attention, projection), "z", inputs=True))
        if family == "gpt2":
            block.attn = rec(block.attn, "attn")
            block.mlp = rec(block.mlp, "mlp")
        elif family == "gpt_neox":
            block.attention = rec(block.attention, "attn")
            mlp = block.mlp
            if config.get("hidden_act", "gelu") == "gelu":
                deviations.add("gpt_neox: exact GELU for hidden_act gelu (mlx-lm uses tanh)")
                exact = lambda x, mlp=mlp: mlp.dense_4h_to_h(nn.gelu(mlp.dense_h_to_4h(x)))
                block.mlp = rec(mlp, "mlp", call=exact)
            else:
                block.mlp = rec(mlp, "mlp")
        elif family in ("gemma2", "gemma3_text", "gemma3", "olmo2"):
            attention = block.self_attn
            if family == "gemma2" and layer % 2 == 0:
                deviations.add("gemma2: sliding window on even layers (mlx-lm attends globally)")
                window = config["sliding_window"]

                def windowed(x, mask, cache=None, attention=attention, window=window):
                    n = x.shape[1]
                    return attention(x, create_causal_mask(n, window_size=window), cache)

                block.self_attn = Recorder(attention, f"{layer}.raw_attn", found, call=windowed)
            block.post_attention_layernorm = rec(block.post_attention_layernorm, "attn")
            block.post_feedforward_layernorm = rec(block.post_feedforward_layernorm, "mlp")
        else:
            block.self_attn = rec(block.self_attn, "attn")
            block.mlp = rec(block.mlp, "mlp")


def reference(model, config, sequences, deviations):
    found = {}
    instrument(model, config, found, deviations)
    parallel = model.model_type == "gpt_neox" and config.get("use_parallel_residual", True)
    arrays = {}
    for index, ids in enumerate(sequences):
        found.clear()
        mx.eval(model(mx.array(ids)[None]))
        for layer in range(LAYERS):
            pre, post = found[f"{layer}.block.in"][0], found[f"{layer}.block.out"][0]
            attn, mlp = found[f"{layer}.attn"][0], found[f"{layer}.mlp"][0]
            values = {"resid_pre": pre, "attn_out": attn, "mlp_out": mlp, "resid_post": post}
            heads = found[f"{layer}.z"][0]
            if not parallel:
                values["resid_mid"] = pre + attn
            for kind, value in values.items():
                arrays[f"seq{index}.blocks.{layer}.hook_{kind}"] = value.astype(mx.float32)
            arrays[f"seq{index}.blocks.{layer}.attn.hook_z"] = heads.astype(mx.float32)
    mx.eval(arrays)
    return arrays


def load_f32(folder):
    model, _ = load_model(folder)
    # float32 throughout, quantized layers' scales and biases included: the comparison
    # then measures the computation, not float16 rounding.
    model.set_dtype(mx.float32)
    return model


# Gemma 3's classes always have an output projection; leaving it out of the file ties it.
TIED_BY_ABSENCE = {"gemma3": "language_model.lm_head.", "gemma3_text": "lm_head."}


def untie(name, weights):
    prefix = TIED_BY_ABSENCE.get(name)
    return {k: v for k, v in weights.items() if not (prefix and k.startswith(prefix))}


def make_case(out, name, config, seed, sequences):
    folder = out / name
    model_class, args_class = _get_classes(config)
    model = model_class(args_class.from_dict(config))
    randomize(model, seed)
    bf16 = name == "gpt2"
    if bf16:
        # Values a bfloat16 file holds exactly, so both layouts carry the same weights.
        rounded = {k: v.astype(mx.bfloat16).astype(mx.float32) for k, v in tree_flatten(model.parameters())}
        model.update(tree_unflatten(list(rounded.items())))
    weights = untie(name, dict(tree_flatten(model.parameters())))
    write_folder(folder / "mlx", config, weights)
    hf = hf_layout(name, config, weights)
    if bf16:
        hf = {k: v.astype(mx.bfloat16) if v.dtype == mx.float32 else v for k, v in hf.items()}
    write_folder(folder / "hf", config, hf, shards=2 if bf16 else 1)

    deviations = set()
    mx.save_safetensors(
        str(folder / "reference.safetensors"),
        reference(load_f32(folder / "hf"), config, sequences, deviations),
    )

    quantized, q_config = quantize_model(
        model, copy.deepcopy(config),
        group_size=32, bits=4,
        quant_predicate=lambda path, module: (
            {"group_size": 32, "bits": 8} if isinstance(module, nn.Embedding) else True
        ),
    )
    q_weights = {
        k: v.astype(mx.float16) if k.endswith((".scales", ".biases")) else v
        for k, v in tree_flatten(quantized.parameters())
    }
    q_weights = untie(name, q_weights)
    q_config.pop("quantization_config", None)
    write_folder(folder / "mlx-q4", q_config, q_weights)
    mx.save_safetensors(
        str(folder / "reference-q4.safetensors"),
        reference(load_f32(folder / "mlx-q4"), q_config, sequences, deviations),
    )
    parallel = config["model_type"] == "gpt_neox" and config.get("use_parallel_residual", True)
    return {
        "name": name,
        "model_type": config["model_type"],
        "layouts": ["hf", "mlx"],
        "hf_dtype": "bfloat16, 2 shards" if bf16 else "float32",
        "kinds": [k for k in KINDS if not (parallel and k == "resid_mid")],
        "deviations": sorted(deviations),
    }


def text_model(out, family, tokenizer, vocab):
    """A two-layer random model of `family` with a real tokenizer, in the HF layout."""
    config = copy.deepcopy(CASES[family])
    config.update({"vocab_size": vocab, "bos_token_id": 0})
    for key in ("num_hidden_layers", "n_layer"):
        if key in config:
            config[key] = 2
    for key in ("n_positions", "n_ctx"):
        if key in config:
            config[key] = 512
    model_class, args_class = _get_classes(config)
    model = model_class(args_class.from_dict(config))
    randomize(model, 17)
    weights = untie(family, dict(tree_flatten(model.parameters())))
    write_folder(out, config, hf_layout(family, config, weights))
    (out / "tokenizer.json").write_bytes(Path(tokenizer).read_bytes())
    load_model(out)  # mlx-lm reads it back


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder to write the fixtures to")
    parser.add_argument("--text-model", choices=sorted(CASES), help="write one model for real text")
    parser.add_argument("--tokenizer", type=Path, help="the tokenizer.json of --text-model")
    parser.add_argument("--vocab", type=int, help="its vocabulary size")
    args = parser.parse_args()
    if args.text_model:
        if args.tokenizer is None or args.vocab is None:
            parser.error("--text-model needs --tokenizer and --vocab")
        text_model(args.out, args.text_model, args.tokenizer, args.vocab)
        return
    mx.random.seed(0)
    sequences = [
        mx.random.randint(0, VOCAB, (n,)).tolist() for n in SEQUENCE_LENGTHS
    ]
    cases = [
        make_case(args.out, name, config, seed, sequences)
        for seed, (name, config) in enumerate(CASES.items())
    ]
    manifest = {"layers": LAYERS, "sequences": sequences, "cases": cases}
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    main()
