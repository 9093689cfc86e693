#!/usr/bin/env python3
"""mlx-lm doing the work of saeidx's memory benchmark: load a checkpoint as mlx-lm's users
do (`load_model`: every weight read and kept as stored), then run token ids through the
first L + 1 blocks (the model's own forward pass with its later blocks left out).

Usage:
    python mlx_lm_memory.py MODEL_FOLDER --layer L --tokens N
"""

import argparse
from pathlib import Path

import mlx.core as mx
from mlx_lm.utils import load_model


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--layer", type=int, required=True)
    parser.add_argument("--tokens", type=int, default=24)
    args = parser.parse_args()
    model, _ = load_model(args.model)
    inner = model.model
    inner.layers = inner.layers[: args.layer + 1]
    ids = mx.arange(100, 100 + args.tokens)[None]
    out = inner(ids)
    mx.eval(out)
    print(out.shape)


if __name__ == "__main__":
    main()
