"""Reference logit effects in NumPy, from the checkpoint and SAE files themselves.

For each requested feature f of an mlxterp SAE folder and a model folder (Hugging Face /
MLX layout, optionally MLX-quantized), computes in float64

    logits = (W_dec[f] * (input_std + 1e-8 if normalize_input) * gamma) @ W_U.T

where W_U is lm_head.weight when the checkpoint has one (untied) or the token embedding
(tied), dequantized with mlx.core.dequantize when stored quantized (scales and biases in
float32), and gamma is the final norm's weight (model.norm.weight; 1 + weight for Gemma).
Writes, per feature, the k largest (largest first) and the k smallest (smallest first)
token ids with their values; ties go to the lower id.

    python logit_effects_reference.py --model DIR --sae DIR --features 0,5,9 --k 10 --out OUT.json

mlx is used only to read safetensors and to dequantize; the arithmetic is NumPy's.
"""

import argparse
import json
from pathlib import Path

import mlx.core as mx
import numpy as np


def load_tensors(folder: Path) -> dict:
    tensors = {}
    for path in sorted(folder.glob("*.safetensors")):
        tensors.update(mx.load(str(path)))
    return tensors


def matrix(tensors: dict, config: dict, module: str) -> np.ndarray:
    weight = tensors[f"{module}.weight"]
    if f"{module}.scales" not in tensors:
        return np.array(weight.astype(mx.float32), dtype=np.float64)
    quant = config["quantization"]
    settings = quant.get(module, quant)
    w = mx.dequantize(
        weight,
        tensors[f"{module}.scales"].astype(mx.float32),
        tensors[f"{module}.biases"].astype(mx.float32),
        group_size=settings["group_size"],
        bits=settings["bits"],
    )
    return np.array(w, dtype=np.float64)


def unembedding(folder: Path):
    config = json.loads((folder / "config.json").read_text())
    tensors = load_tensors(folder)
    if "lm_head.weight" in tensors:
        w_u = matrix(tensors, config, "lm_head")
    else:
        w_u = matrix(tensors, config, "model.embed_tokens")
    gamma = np.array(tensors["model.norm.weight"].astype(mx.float32), dtype=np.float64)
    if config["model_type"].startswith("gemma"):
        gamma = 1.0 + gamma
    return w_u, gamma


def decoder_directions(folder: Path, features: list) -> np.ndarray:
    config = json.loads((folder / "config.json").read_text())
    w = mx.load(str(folder / "weights.safetensors"))
    decoder = np.array(w["decoder.weight"].astype(mx.float32), dtype=np.float64)  # [d_in, d_sae]
    rows = decoder[:, features].T
    if config.get("normalize_input", True):
        std = np.array(w["input_std"].astype(mx.float32), dtype=np.float64)
        # saeidx adds the epsilon in float32, as mlxterp does.
        std = np.array((np.float32(1e-8) + std.astype(np.float32)), dtype=np.float64)
        rows = rows * std
    return rows


def extremes(values: np.ndarray, k: int, descending: bool):
    ids = np.arange(values.shape[0])
    keys = -values if descending else values
    order = np.lexsort((ids, keys))[:k]
    return [[int(i), float(values[i])] for i in order]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--sae", type=Path, required=True)
    parser.add_argument("--features", required=True)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    features = [int(f) for f in args.features.split(",")]
    w_u, gamma = unembedding(args.model)
    logits = (decoder_directions(args.sae, features) * gamma) @ w_u.T
    out = {
        str(f): {
            "top": extremes(row, args.k, True),
            "bottom": extremes(row, args.k, False),
        }
        for f, row in zip(features, logits)
    }
    args.out.write_text(json.dumps(out))


if __name__ == "__main__":
    main()
