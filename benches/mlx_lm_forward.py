#!/usr/bin/env python3
"""mlx-lm doing the work of saeidx's activation benchmark: token ids -> the residual
stream after block L, timed, for several (batch, length) shapes.

Modes:
  as-loaded  the checkpoint as `mlx_lm.load` returns it (a 4-bit model runs quantized
             matmuls) -- what mlx-lm and mlxterp users run;
  float32    every weight dequantized and cast to float32 first -- the same arithmetic
             saeidx does on the CPU.

Run it with OpenBLAS preloaded (LD_PRELOAD=libopenblas.so.0) so that MLX's BLAS calls
use the same BLAS as saeidx; the report says whether OpenBLAS is mapped.

Usage:
    python mlx_lm_forward.py MODEL --layer L --shapes '[[1, 128], [8, 128]]' --mode float32
"""

import argparse
import json
import time
from importlib.metadata import version
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx_lm.models.base import create_attention_mask
from mlx_lm.utils import _download, dequantize_model, load_model


def best_seconds(work, budget, min_runs):
    """Fastest of the timed runs after one warm-up (other load only slows runs down)."""
    work()
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < budget:
        run = time.perf_counter()
        work()
        times.append(time.perf_counter() - run)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--layer", type=int, required=True)
    parser.add_argument("--shapes", required=True, help="JSON list of [batch, length]")
    parser.add_argument("--mode", choices=["as-loaded", "float32"], required=True)
    parser.add_argument("--budget", type=float, default=3.0, help="seconds per shape")
    parser.add_argument("--min-runs", type=int, default=3)
    args = parser.parse_args()

    folder = Path(args.model) if Path(args.model).is_dir() else Path(_download(args.model))
    model, config = load_model(folder)
    if args.mode == "float32":
        dequantize_model(model)
        model.set_dtype(mx.float32)
    inner = model.model
    blocks = inner.layers[: args.layer + 1]

    results = []
    rng = np.random.default_rng(0)
    for batch, length in json.loads(args.shapes):
        ids = mx.array(rng.integers(100, config["vocab_size"], size=(batch, length)), dtype=mx.int32)

        def forward():
            h = inner.embed_tokens(ids)
            mask = create_attention_mask(h, None)
            for block in blocks:
                h = block(h, mask, None)
            mx.eval(h)

        seconds = best_seconds(forward, args.budget, args.min_runs)
        results.append({"batch": batch, "length": length, "seconds": seconds, "tokens_per_s": batch * length / seconds})
    with open("/proc/self/maps") as maps:
        openblas = "libopenblas" in maps.read()
    print(json.dumps({"mode": args.mode, "openblas": openblas, "mlx": version("mlx"), "mlx_lm": version("mlx-lm"), "results": results}))


if __name__ == "__main__":
    main()
