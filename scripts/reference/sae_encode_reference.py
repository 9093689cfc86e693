#!/usr/bin/env python3
"""Reference SAE encoders for three on-disk SAE formats, written with NumPy only.

Each format is read the way its own library reads it, with the library's config defaults,
and encoded with the library's published encode formula. SAE_FORMATS.md beside this file
gives the full spec with citations. In short (x is one row of the input, [d_in]):

mlxterp (coairesearch/mlxterp, mlxterp/sae/{base,sae,batchtopk}.py)
    Folder with config.json and weights.safetensors. Classes "SAE" (TopK) and "BatchTopKSAE".
    Config defaults: k=100, normalize_input=true, tied_weights=false.
      xn = (x - input_mean) / (input_std + 1e-8)          only if normalize_input
      h  = relu(xn @ encoder.weight.T + encoder.bias)      encoder.weight is [d_sae, d_in]
    SAE:          keep h[j] where h[j] >= (k-th largest h of the row); all of h if k >= d_sae.
                  Ties with the k-th value are all kept, so a row can have more than k.
    BatchTopKSAE: T = the (k * n_rows)-th largest h over the whole batch (all rows together);
                  keep h >= T (ties kept). If the batch has more than 2**30 values, mlxterp
                  builds T from each row's top max(2k, 256) values only; this script does too.
                  mlxterp stores no threshold: the codes depend on which rows share a batch.
                  By default the whole input is one batch; --batch-rows R splits it into
                  consecutive batches of R rows. --batchtopk-threshold T replaces the batch
                  rule with a per-row rule: keep h[j] iff h[j] > T (strict).

saelens (SAELens 6.x, sae_lens/saes/*.py; older cfg.json files are converted the way
    sae_lens/loading/pretrained_sae_loaders.py handle_pre_6_0_config converts them)
    Folder with cfg.json and sae_weights.safetensors. W_enc is [d_in, d_sae], W_dec [d_sae, d_in].
      xn = normalize(x)    "none", "expected_average_only_in" and "covariance_whitening" do
                           nothing here (their factors are folded into the weights when
                           training ends); "constant_norm_rescale": x * sqrt(d_in) / ||x||_2;
                           "layer_norm": (x - mean(x)) / (std(x, unbiased) + 1e-5)
      s  = xn - b_dec      only if apply_b_dec_to_input (default true)
      pre = s @ W_enc + b_enc
    standard:  relu(pre)
    jumprelu:  relu(pre) * (pre > threshold)      strict; threshold is per feature
    topk:      pre *= ||W_dec[j]||_2 first if rescale_acts_by_decoder_norm (default false);
               then the k largest pre of the row (torch.topk), each passed through relu.
               Exactly k are selected: a tie at the k-th value is broken arbitrarily by
               torch; this script keeps the lower feature index.
    gated:     (s @ W_enc + b_gate > 0) * relu(s @ (W_enc * exp(r_mag)) + b_mag)
    batchtopk: only a training checkpoint has this architecture (SAELens saves finished
               BatchTopK SAEs as "jumprelu" with threshold = topk_threshold for every
               feature). Its encode is relu(pre) (after the decoder-norm rescale, default
               true for training configs), then the int(k * n_rows) largest values of the
               whole batch, ties to the lower flat index. --batchtopk-threshold T gives the
               per-row rule relu(pre) > T instead (pass the file's topk_threshold to get
               what the saved JumpReLU SAE would give).

    expected_average_only_in with --norm-scaling-factor S (a release table's factor): the
               weights are folded as SAE.from_pretrained folds them (W_enc * S, W_dec / S,
               b_dec / S) before encoding; without S SAELens skips the folding.

gemma-scope (Gemma Scope params.npz and Gemma Scope 2 params.safetensors, read as SAELens's
    gemma_2 / gemma_3 loaders read them: jumprelu, apply_b_dec_to_input false)
      pre = x @ w_enc + b_enc;  relu(pre) * (pre > threshold)

--center centres each row (x - mean(x)) before any of the above: the activations of a
LayerNorm model TransformerLens loaded with center_writing_weights. --head H --heads N
reads x as attn.hook_z, [n, N * d_head], and encodes head H's values (hook_head_index).

sparsify (EleutherAI/sparsify, sparsify/sparse_coder.py, fused_encoder.py, config.py)
    Hookpoint folder (e.g. layers.10) with cfg.json and sae.safetensors. encoder.weight and
    W_dec are both [d_sae, d_in]. Config defaults: activation "topk", k=32, num_latents=0
    (then d_sae = d_in * expansion_factor, default 32), transcode=false.
      s   = x - b_dec           only if not transcode
      pre = relu(s @ encoder.weight.T + encoder.bias)
    topk:     the k largest pre of the row (torch.topk after the relu). Exactly k are
              selected, ties broken arbitrarily by torch; this script keeps the lower index.
    groupmax: the features split into k consecutive groups of d_sae / k; the largest pre of
              each group (torch.max: the first index among ties).

Numbers: weights (F32, F16, BF16 or F64) are read into float64 and the codes are computed in
float64, then written as float32. A feature is selected differently from a float32
implementation only where two values are within float32 rounding of each other.

--write-random writes a random SAE with the file names, tensor names and config keys that the
library writes (see SAE_FORMATS.md), so that tests can make fixtures:
    mlxterp, mlxterp-batchtopk   OUT_DIR/{config.json, weights.safetensors}, normalize_input
                                 true with a nonzero input_mean and input_std != 1
    saelens-standard, -topk, -jumprelu, -gated
                                 OUT_DIR/{cfg.json, sae_weights.safetensors}; topk sets
                                 rescale_acts_by_decoder_norm with W_dec rows of norm != 1;
                                 jumprelu thresholds are positive
    saelens-batchtopk            a BatchTopK training checkpoint (architecture "batchtopk",
                                 0-dim float64 topk_threshold)
    saelens-head                 a standard SAE on head 1 of blocks.LAYER.attn.hook_z
                                 (hook_head_index; d_in is one head's width)
    saelens-centered             a standard SAE whose metadata records
                                 model_from_pretrained_kwargs center_writing_weights true
    saelens-pre6                 a pre-6 cfg (model gpt2-small, hook_point blocks.LAYER.
                                 hook_resid_pre, context_size 128), standard ReLU
    saelens-pre6-expected-average  the same with normalize_activations true and the norm
                                 scaling factor not folded in
    sparsify                     OUT_DIR/config.json and OUT_DIR/layers.LAYER/{cfg.json,
                                 sae.safetensors} (a training run's layout)
    gemma-scope                  OUT_DIR/gemma-scope-2b-pt-res/layer_L/width_16k/average_l0_50/
                                 params.npz
    gemma-scope-2                OUT_DIR/gemma-scope-2-270m-pt/resid_post/
                                 layer_L_width_16k_l0_small/{params.safetensors, config.json}
It prints the folder to pass as --sae.

Usage:
    python sae_encode_reference.py --format {mlxterp,saelens,sparsify,gemma-scope} --sae PATH \\
        --input X.safetensors --out CODES.safetensors [--batchtopk-threshold T] [--batch-rows R]
        [--norm-scaling-factor S] [--center]
    python sae_encode_reference.py --write-random KIND --d-in N --d-sae M --k K --seed S \\
        --out-dir DIR [--layer L]

X.safetensors must hold `x`, [n, d_in]; CODES.safetensors gets `codes`, [n, d_sae] float32,
zero where a feature is inactive.
"""

import argparse
import json
import re
import struct
import sys
from functools import partial
from pathlib import Path

import numpy as np

# --------------------------------------------------------------------------------------------
# safetensors I/O (NumPy has no bfloat16, so the format is read and written by hand)

_NUMPY_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2"}
_SAFETENSORS_DTYPES = {np.dtype("<f8"): "F64", np.dtype("<f4"): "F32"}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Read every tensor of a .safetensors file as a float64 array."""
    data = Path(path).read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    base = 8 + header_len
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        raw = data[base + start : base + end]
        if info["dtype"] == "BF16":
            bits = np.frombuffer(raw, dtype="<u2").astype("<u4") << 16
            array = bits.view("<f4")
        elif info["dtype"] in _NUMPY_DTYPES:
            array = np.frombuffer(raw, dtype=_NUMPY_DTYPES[info["dtype"]])
        else:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
        tensors[name] = array.reshape(info["shape"]).astype(np.float64)
    return tensors


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], extra_header: dict) -> None:
    """Write float32/float64 arrays; extra_header entries (e.g. "__metadata__") go in the header."""
    header = dict(extra_header)
    chunks = []
    offset = 0
    for name in sorted(tensors):
        array = np.asarray(tensors[name])
        blob = array.tobytes(order="C")
        header[name] = {
            "dtype": _SAFETENSORS_DTYPES[array.dtype],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        chunks.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(text)) + text + b"".join(chunks))


# --------------------------------------------------------------------------------------------
# Selection rules shared by the formats


def relu(values: np.ndarray) -> np.ndarray:
    return np.maximum(values, 0.0)


def keep(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.where(mask, values, 0.0)


def exact_top_k_mask(values: np.ndarray, k: int) -> np.ndarray:
    """Mask of exactly k entries per row (torch.topk), ties going to the lower index."""
    if k > values.shape[-1]:
        raise ValueError(f"k={k} is larger than the number of features {values.shape[-1]}")
    order = np.argsort(-values, axis=-1, kind="stable")[:, :k]
    mask = np.zeros(values.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=-1)
    return mask


def threshold_rule(acts: np.ndarray, threshold: float) -> np.ndarray:
    """Per-row BatchTopK replacement: keep relu'd activations strictly above threshold."""
    return keep(acts, acts > threshold)


def reject_batchtopk_options(what: str, threshold: float | None, batch_rows: int | None) -> None:
    if threshold is not None or batch_rows is not None:
        raise ValueError(
            f"{what} is not a BatchTopK SAE: --batchtopk-threshold and --batch-rows do not apply"
        )


def check_tensor_names(what: str, weights: dict[str, np.ndarray], expected: set[str]) -> None:
    """The libraries load strictly: exactly these tensors must be present."""
    if set(weights) != expected:
        raise ValueError(f"{what}: tensors {sorted(weights)} do not match the expected {sorted(expected)}")


def split_rows(n_rows: int, batch_rows: int | None) -> list[slice]:
    step = batch_rows or n_rows
    return [slice(start, start + step) for start in range(0, n_rows, step)]


# --------------------------------------------------------------------------------------------
# mlxterp

MLXTERP_CLASSES = ("SAE", "BatchTopKSAE")
MLXTERP_MAX_SAFE_SIZE = 2**30


def mlxterp_topk(h: np.ndarray, k: int) -> np.ndarray:
    """mlxterp topk_activation: keep values >= the row's k-th largest (ties kept)."""
    if k >= h.shape[-1]:
        return h
    kth = np.sort(h, axis=-1)[:, -k][:, None]
    return keep(h, h >= kth)


def mlxterp_batchtopk(h: np.ndarray, k: int, max_safe_size: int = MLXTERP_MAX_SAFE_SIZE) -> np.ndarray:
    """mlxterp batchtopk_activation over one batch (all rows of h)."""
    n_rows, d = h.shape
    target = k * n_rows
    magnitude = np.abs(h)
    if n_rows * d > max_safe_size:
        per_row = max(k * 2, 256)
        candidates = np.sort(np.concatenate([np.sort(row)[-per_row:] for row in magnitude]))
    else:
        candidates = np.sort(magnitude.reshape(-1))
    threshold = candidates[max(0, len(candidates) - target)]
    return keep(h, magnitude >= threshold)


def load_mlxterp(folder: Path) -> tuple[dict, dict[str, np.ndarray]]:
    config = json.loads((folder / "config.json").read_text())
    if config.get("class") not in MLXTERP_CLASSES:
        raise ValueError(f"mlxterp: class {config.get('class')!r} is neither of {MLXTERP_CLASSES}")
    weights = read_safetensors(folder / "weights.safetensors")
    tied = config.get("tied_weights", False)
    expected = {"encoder.weight", "encoder.bias", "input_mean", "input_std"}
    expected |= {"decoder_bias"} if tied else {"decoder.weight", "decoder.bias"}
    check_tensor_names("mlxterp", weights, expected)
    return config, weights


def encode_mlxterp(
    folder: Path, x: np.ndarray, threshold: float | None, batch_rows: int | None
) -> np.ndarray:
    config, w = load_mlxterp(folder)
    k = config.get("k", 100)
    if config.get("normalize_input", True):
        x = (x - w["input_mean"]) / (w["input_std"] + 1e-8)
    h = relu(x @ w["encoder.weight"].T + w["encoder.bias"])
    if config["class"] == "SAE":
        reject_batchtopk_options("mlxterp class SAE (TopK)", threshold, batch_rows)
        return mlxterp_topk(h, k)
    if threshold is not None:
        return threshold_rule(h, threshold)
    return np.concatenate([mlxterp_batchtopk(h[rows], k) for rows in split_rows(len(h), batch_rows)])


# --------------------------------------------------------------------------------------------
# SAELens

SAELENS_TENSORS = {
    "standard": {"W_enc", "b_enc", "W_dec", "b_dec"},
    "topk": {"W_enc", "b_enc", "W_dec", "b_dec"},
    "jumprelu": {"W_enc", "b_enc", "W_dec", "b_dec", "threshold"},
    "gated": {"W_enc", "b_gate", "b_mag", "r_mag", "W_dec", "b_dec"},
    "batchtopk": {"W_enc", "b_enc", "W_dec", "b_dec", "topk_threshold"},
}
SAELENS_IDENTITY_NORMALIZATIONS = ("none", "expected_average_only_in", "covariance_whitening")


def saelens_is_pre_6(cfg: dict) -> bool:
    """handle_config_defaulting: no sae_lens_version, or one below 6.0.0-rc.0."""
    version = cfg.get("sae_lens_version") or (cfg.get("metadata") or {}).get("sae_lens_version")
    if not version:
        return True
    return int(re.match(r"\d+", str(version)).group()) < 6


def saelens_config(cfg: dict) -> dict:
    """The encode-relevant config, with SAELens's defaults and its pre-6.0 conversion."""
    if saelens_is_pre_6(cfg):
        cfg = {{"activation_fn_str": "activation_fn"}.get(key, key): value for key, value in cfg.items()}
        activation = cfg.get("activation_fn", "relu")
        if activation == "tanh-relu":
            raise ValueError(
                "saelens: activation_fn 'tanh-relu' meant tanh(relu(pre)) before SAELens 6; "
                "SAELens 6 loads it as plain relu. Refusing an SAE whose meaning depends on the version."
            )
        architecture = cfg.get("architecture", "standard")
        kwargs = cfg.get("activation_fn_kwargs") or {}
        if activation == "topk" and kwargs.get("k") is not None:
            architecture, cfg["k"] = "topk", kwargs["k"]
        normalize = cfg.get("normalize_activations")
        if isinstance(normalize, bool):
            normalize = "expected_average_only_in" if normalize else "none"
        cfg["normalize_activations"] = normalize or "none"
        cfg["architecture"] = architecture
    architecture = cfg["architecture"]
    if architecture not in SAELENS_TENSORS:
        raise ValueError(f"saelens: architecture {architecture!r} is not one of {sorted(SAELENS_TENSORS)}")
    return {
        "architecture": architecture,
        "d_in": cfg["d_in"],
        "apply_b_dec_to_input": cfg.get("apply_b_dec_to_input", True),
        "normalize_activations": cfg.get("normalize_activations", "none"),
        "k": cfg.get("k", 100),
        # TopKSAEConfig defaults to false; the training configs (topk, batchtopk) to true.
        "rescale_acts_by_decoder_norm": cfg.get("rescale_acts_by_decoder_norm", architecture == "batchtopk"),
    }


def saelens_weights(folder: Path, architecture: str) -> dict[str, np.ndarray]:
    """read_sae_components_from_disk: an all-ones scaling_factor is dropped, any other refused."""
    weights = read_safetensors(folder / "sae_weights.safetensors")
    scaling = weights.pop("scaling_factor", None)
    if scaling is not None and not np.allclose(scaling, 1.0):
        raise ValueError("saelens: a scaling_factor other than all ones cannot be loaded by SAELens 6")
    check_tensor_names(f"saelens {architecture}", weights, SAELENS_TENSORS[architecture])
    return weights


def saelens_normalize(x: np.ndarray, mode: str, d_in: int) -> np.ndarray:
    if mode in SAELENS_IDENTITY_NORMALIZATIONS:
        return x
    if mode == "constant_norm_rescale":
        return x * (d_in**0.5 / np.linalg.norm(x, axis=-1, keepdims=True))
    if mode == "layer_norm":
        centred = x - x.mean(axis=-1, keepdims=True)
        return centred / (centred.std(axis=-1, ddof=1, keepdims=True) + 1e-5)
    raise ValueError(f"saelens: unknown normalize_activations {mode!r}")


def encode_saelens(
    folder: Path,
    x: np.ndarray,
    threshold: float | None,
    batch_rows: int | None,
    norm_scaling_factor: float | None = None,
) -> np.ndarray:
    cfg = saelens_config(json.loads((folder / "cfg.json").read_text()))
    architecture = cfg["architecture"]
    w = saelens_weights(folder, architecture)
    if cfg["normalize_activations"] == "expected_average_only_in" and norm_scaling_factor is not None:
        # SAE.from_pretrained with the release's norm_scaling_factor:
        # fold_activation_norm_scaling_factor, then no normalization.
        w["W_enc"] = w["W_enc"] * norm_scaling_factor
        w["W_dec"] = w["W_dec"] / norm_scaling_factor
        w["b_dec"] = w["b_dec"] / norm_scaling_factor
        cfg["normalize_activations"] = "none"
    if architecture != "batchtopk":
        reject_batchtopk_options(f"saelens architecture {architecture}", threshold, batch_rows)
    s = saelens_normalize(x, cfg["normalize_activations"], cfg["d_in"])
    if cfg["apply_b_dec_to_input"]:
        s = s - w["b_dec"]
    if architecture == "gated":
        gate = s @ w["W_enc"] + w["b_gate"] > 0
        magnitude = relu(s @ (w["W_enc"] * np.exp(w["r_mag"])) + w["b_mag"])
        return keep(magnitude, gate)
    pre = s @ w["W_enc"] + w["b_enc"]
    if architecture == "standard":
        return relu(pre)
    if architecture == "jumprelu":
        return keep(relu(pre), pre > w["threshold"])
    if cfg["rescale_acts_by_decoder_norm"]:
        pre = pre * np.linalg.norm(w["W_dec"], axis=-1)
    if architecture == "topk":
        return keep(relu(pre), exact_top_k_mask(pre, int(cfg["k"])))
    acts = relu(pre)
    if threshold is not None:
        return threshold_rule(acts, threshold)
    batches = split_rows(len(acts), batch_rows)
    return np.concatenate([saelens_batchtopk(acts[rows], cfg["k"]) for rows in batches])


def saelens_batchtopk(acts: np.ndarray, k: float) -> np.ndarray:
    """BatchTopK.forward: the int(k * n_rows) largest relu'd values of the batch."""
    flat = acts.reshape(-1)
    count = int(k * acts.shape[0])
    if count > flat.size:
        raise ValueError(f"batchtopk: k * n_rows = {count} exceeds the batch's {flat.size} values")
    mask = np.zeros(flat.size, dtype=bool)
    mask[np.argsort(-flat, kind="stable")[:count]] = True
    return keep(flat, mask).reshape(acts.shape)


# --------------------------------------------------------------------------------------------
# sparsify

SPARSIFY_DEFAULTS = {
    "activation": "topk",
    "expansion_factor": 32,
    "normalize_decoder": True,
    "num_latents": 0,
    "k": 32,
    "multi_topk": False,
    "skip_connection": False,
    "transcode": False,
}


def sparsify_config(cfg: dict) -> dict:
    """SparseCoderConfig.from_dict(drop_extra_fields=True) plus d_in and num_latents."""
    if cfg.get("signed"):
        raise ValueError(
            "sparsify: 'signed': true (EleutherAI/sae, June-August 2024) meant no relu and top-k by "
            "|pre|; current sparsify drops the key. Refusing an SAE whose meaning depends on the version."
        )
    merged = {key: cfg.get(key, default) for key, default in SPARSIFY_DEFAULTS.items()}
    merged["d_in"] = cfg["d_in"]
    merged["d_sae"] = merged["num_latents"] or merged["d_in"] * merged["expansion_factor"]
    return merged


def encode_sparsify(
    folder: Path, x: np.ndarray, threshold: float | None, batch_rows: int | None
) -> np.ndarray:
    reject_batchtopk_options("sparsify", threshold, batch_rows)
    cfg = sparsify_config(json.loads((folder / "cfg.json").read_text()))
    w = read_safetensors(folder / "sae.safetensors")
    expected = {"encoder.weight", "encoder.bias", "W_dec", "b_dec"}
    check_tensor_names("sparsify", w, expected | ({"W_skip"} if cfg["skip_connection"] else set()))
    s = x if cfg["transcode"] else x - w["b_dec"]
    pre = relu(s @ w["encoder.weight"].T + w["encoder.bias"])
    k = cfg["k"]
    if cfg["activation"] == "topk":
        return keep(pre, exact_top_k_mask(pre, k))
    if cfg["activation"] == "groupmax":
        n_rows, d_sae = pre.shape
        if d_sae % k:
            raise ValueError(f"groupmax: d_sae={d_sae} is not a multiple of k={k}")
        winners = pre.reshape(n_rows, k, d_sae // k).argmax(axis=-1)
        indices = winners + np.arange(0, d_sae, d_sae // k)
        mask = np.zeros(pre.shape, dtype=bool)
        np.put_along_axis(mask, indices, True, axis=-1)
        return keep(pre, mask)
    raise ValueError(f"sparsify: unknown activation {cfg['activation']!r}")


def encode_gemma_scope(
    folder: Path, x: np.ndarray, threshold: float | None, batch_rows: int | None
) -> np.ndarray:
    """SAELens's gemma_2 / gemma_3 loaders: params.npz (w_ keys become W_) or
    params.safetensors, architecture jumprelu, apply_b_dec_to_input false."""
    reject_batchtopk_options("gemma-scope", threshold, batch_rows)
    if (folder / "params.npz").is_file():
        with np.load(folder / "params.npz") as data:
            w = {key: data[key].astype(np.float64) for key in data}
    else:
        w = read_safetensors(folder / "params.safetensors")
    scaling = w.pop("scaling_factor", None)
    if scaling is not None and not np.allclose(scaling, 1.0):
        raise ValueError("gemma-scope: a scaling_factor other than ones needs finetuning_scaling_factor")
    check_tensor_names("gemma-scope", w, {"w_enc", "w_dec", "b_enc", "b_dec", "threshold"})
    pre = x @ w["w_enc"] + w["b_enc"]
    return keep(relu(pre), pre > w["threshold"])


ENCODERS = {
    "mlxterp": encode_mlxterp,
    "saelens": encode_saelens,
    "sparsify": encode_sparsify,
    "gemma-scope": encode_gemma_scope,
}


# --------------------------------------------------------------------------------------------
# Random SAEs, saved the way each library saves them

MODEL_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"


def random_encoder(rng: np.random.Generator, d_in: int, d_sae: int) -> tuple[np.ndarray, np.ndarray]:
    """[d_sae, d_in] weights with rows of norm about 1, and a small encoder bias."""
    weight = rng.normal(0.0, 1.0 / np.sqrt(d_in), (d_sae, d_in))
    return weight, rng.normal(-0.05, 0.1, d_sae)


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.linalg.norm(matrix, axis=-1, keepdims=True)


def f32(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: value.astype(np.float32) for name, value in tensors.items()}


def write_mlxterp(
    out: Path, rng: np.random.Generator, d_in: int, d_sae: int, k: int, layer: int, batchtopk: bool
) -> Path:
    """BaseSAE.save: config.json (indent 2) and weights.safetensors ("__metadata__": null)."""
    enc_w, enc_b = random_encoder(rng, d_in, d_sae)
    weights = {
        "encoder.weight": enc_w,
        "encoder.bias": enc_b,
        "decoder.weight": enc_w.T * rng.uniform(0.5, 1.5, d_sae),
        "decoder.bias": rng.normal(0.0, 0.1, d_in),
        "input_mean": rng.normal(0.0, 0.5, d_in),
        "input_std": rng.uniform(0.5, 2.0, d_in),
    }
    sae_type = "batchtopk" if batchtopk else "topk"
    config = {
        "d_model": d_in,
        "d_hidden": d_sae,
        "class": "BatchTopKSAE" if batchtopk else "SAE",
        "metadata": {
            "layer": layer,
            "component": "mlp",
            "model_name": f"mlx-community/{MODEL_NAME.split('/')[1]}",
            "config": {
                "expansion_factor": d_sae // d_in,
                "k": k,
                "sae_type": sae_type,
                "learning_rate": 0.0003,
                "batch_size": 256,
                "num_epochs": 10,
                "lambda_sparse": 0.0,
                "normalize_input": True,
                "tied_weights": False,
                "seed": 42,
            },
            "training_samples": 1000,
        },
        "_training": True,
        "k": k,
        "normalize_input": True,
        "tied_weights": False,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_safetensors(out / "weights.safetensors", f32(weights), {"__metadata__": None})
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


def saelens_metadata(layer: int) -> dict:
    return {
        "sae_lens_version": "6.18.0",
        "sae_lens_training_version": "6.18.0",
        "dataset_path": "monology/pile-uncopyrighted",
        "hook_name": f"blocks.{layer}.hook_resid_post",
        "model_name": "gpt2",
        "model_class_name": "HookedTransformer",
        "hook_head_index": None,
        "context_size": 128,
        "seqpos_slice": [None],
        "model_from_pretrained_kwargs": {},
        "prepend_bos": True,
        "exclude_special_tokens": False,
    }


def write_saelens(
    out: Path, rng: np.random.Generator, d_in: int, d_sae: int, k: int, layer: int, architecture: str
) -> Path:
    """SAE.save_model: cfg.json (compact JSON) and sae_weights.safetensors (no metadata)."""
    enc_w, enc_b = random_encoder(rng, d_in, d_sae)
    weights = {
        "W_enc": enc_w.T.copy(),
        "W_dec": enc_w * rng.uniform(0.5, 1.5, (d_sae, 1)),
        "b_dec": rng.normal(0.0, 0.1, d_in),
    }
    cfg = {
        "d_in": d_in,
        "d_sae": d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": saelens_metadata(layer),
    }
    if architecture == "gated":
        weights |= {
            "b_gate": enc_b,
            "r_mag": rng.normal(0.0, 0.2, d_sae),
            "b_mag": rng.normal(0.0, 0.1, d_sae),
        }
    else:
        weights["b_enc"] = enc_b
    if architecture == "jumprelu":
        weights["threshold"] = rng.uniform(0.05, 0.6, d_sae)
    if architecture == "topk":
        cfg |= {"k": k, "rescale_acts_by_decoder_norm": True}
    if architecture == "batchtopk":
        # TrainingSAE.save_model of BatchTopKTrainingSAE: the training config and the buffer.
        weights["topk_threshold"] = np.array(rng.uniform(0.2, 0.5), dtype=np.float64)
        cfg |= {
            "decoder_init_norm": 0.1,
            "k": float(k),
            "use_sparse_activations": False,
            "aux_loss_coefficient": 1.0,
            "rescale_acts_by_decoder_norm": True,
            "topk_threshold_lr": 0.01,
        }
    cfg["architecture"] = architecture
    tensors = f32({name: value for name, value in weights.items() if name != "topk_threshold"})
    if "topk_threshold" in weights:
        tensors["topk_threshold"] = weights["topk_threshold"]
    out.mkdir(parents=True, exist_ok=True)
    write_safetensors(out / "sae_weights.safetensors", tensors, {})
    (out / "cfg.json").write_text(json.dumps(cfg))
    return out


def write_saelens_centered(
    out: Path, rng: np.random.Generator, d_in: int, d_sae: int, k: int, layer: int
) -> Path:
    """A standard SAE trained on a TransformerLens model loaded with
    center_writing_weights (recorded in model_from_pretrained_kwargs)."""
    folder = write_saelens(out, rng, d_in, d_sae, k, layer, "standard")
    cfg = json.loads((folder / "cfg.json").read_text())
    cfg["metadata"]["model_from_pretrained_kwargs"] = {"center_writing_weights": True}
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return folder


def write_saelens_head(
    out: Path, rng: np.random.Generator, d_in: int, d_sae: int, k: int, layer: int
) -> Path:
    """A standard SAE on head 1 of blocks.LAYER.attn.hook_z (hook_head_index 1): d_in is
    one head's width."""
    folder = write_saelens(out, rng, d_in, d_sae, k, layer, "standard")
    cfg = json.loads((folder / "cfg.json").read_text())
    cfg["metadata"]["hook_name"] = f"blocks.{layer}.attn.hook_z"
    cfg["metadata"]["hook_head_index"] = 1
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return folder


def write_saelens_pre6(
    out: Path, rng: np.random.Generator, d_in: int, d_sae: int, k: int, layer: int, normalize: bool
) -> Path:
    """A pre-6 cfg (no sae_lens_version, hook_point, as jbloom/GPT2-Small-SAEs-Reformatted
    has them); with `normalize`, normalize_activations true and the weights saved before
    the norm scaling factor was folded in."""
    enc_w, enc_b = random_encoder(rng, d_in, d_sae)
    weights = {
        "W_enc": enc_w.T.copy(),
        "W_dec": enc_w * rng.uniform(0.5, 1.5, (d_sae, 1)),
        "b_enc": enc_b,
        "b_dec": rng.normal(0.0, 0.1, d_in),
    }
    cfg = {
        "model_name": "gpt2-small",
        "hook_point": f"blocks.{layer}.hook_resid_pre",
        "hook_point_layer": layer,
        "d_in": d_in,
        "d_sae": d_sae,
        "dtype": "torch.float32",
        "context_size": 128,
        "normalize_activations": normalize,
        "apply_b_dec_to_input": True,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_safetensors(out / "sae_weights.safetensors", f32(weights), {})
    (out / "cfg.json").write_text(json.dumps(cfg))
    return out


def write_gemma_scope(
    out: Path, rng: np.random.Generator, d_in: int, d_sae: int, k: int, layer: int
) -> Path:
    """Gemma Scope's layout: REPO/layer_L/width_W/average_l0_N/params.npz (np.savez)."""
    enc_w, enc_b = random_encoder(rng, d_in, d_sae)
    folder = out / "gemma-scope-2b-pt-res" / f"layer_{layer}" / "width_16k" / "average_l0_50"
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(
        folder / "params.npz",
        w_enc=enc_w.T.astype(np.float32),
        w_dec=(enc_w * rng.uniform(0.5, 1.5, (d_sae, 1))).astype(np.float32),
        b_enc=enc_b.astype(np.float32),
        b_dec=rng.normal(0.0, 0.1, d_in).astype(np.float32),
        threshold=rng.uniform(0.05, 0.6, d_sae).astype(np.float32),
    )
    return folder


def write_gemma_scope_2(
    out: Path, rng: np.random.Generator, d_in: int, d_sae: int, k: int, layer: int
) -> Path:
    """Gemma Scope 2's layout: REPO/resid_post/layer_L_width_W_l0_X/{params.safetensors,
    config.json}."""
    enc_w, enc_b = random_encoder(rng, d_in, d_sae)
    folder = out / "gemma-scope-2-270m-pt" / "resid_post" / f"layer_{layer}_width_16k_l0_small"
    folder.mkdir(parents=True, exist_ok=True)
    weights = {
        "w_enc": enc_w.T.copy(),
        "w_dec": enc_w * rng.uniform(0.5, 1.5, (d_sae, 1)),
        "b_enc": enc_b,
        "b_dec": rng.normal(0.0, 0.1, d_in),
        "threshold": rng.uniform(0.05, 0.6, d_sae),
    }
    write_safetensors(folder / "params.safetensors", f32(weights), {})
    config = {
        "architecture": "jump_relu",
        "model_name": "gemma-v3-270m-pt",
        "hf_hook_point_in": f"model.layers.{layer}.output",
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def write_sparsify(out: Path, rng: np.random.Generator, d_in: int, d_sae: int, k: int, layer: int) -> Path:
    """Trainer.save: OUT/config.json and SparseCoder.save_to_disk into OUT/layers.LAYER."""
    enc_w, enc_b = random_encoder(rng, d_in, d_sae)
    weights = {
        "encoder.weight": enc_w,
        "encoder.bias": enc_b,
        "W_dec": unit_rows(enc_w + rng.normal(0.0, 0.3 / np.sqrt(d_in), enc_w.shape)),
        "b_dec": rng.normal(0.0, 0.1, d_in),
    }
    sae_cfg = dict(SPARSIFY_DEFAULTS, num_latents=d_sae, k=k)
    hookpoint = f"layers.{layer}"
    run_cfg = {
        "sae": sae_cfg,
        "batch_size": 32,
        "loss_fn": "fvu",
        "optimizer": "signum",
        "hookpoints": [hookpoint],
        "layers": [],
        "save_dir": "checkpoints",
        "model": MODEL_NAME,
        "dataset": "EleutherAI/SmolLM2-135M-10B",
        "ctx_len": 2048,
    }
    folder = out / hookpoint
    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors(folder / "sae.safetensors", f32(weights), {})
    (folder / "cfg.json").write_text(json.dumps({**sae_cfg, "d_in": d_in}))
    (out / "config.json").write_text(json.dumps(run_cfg, indent=2))
    return folder


RANDOM_KINDS = {
    "mlxterp": partial(write_mlxterp, batchtopk=False),
    "mlxterp-batchtopk": partial(write_mlxterp, batchtopk=True),
    "saelens-standard": partial(write_saelens, architecture="standard"),
    "saelens-topk": partial(write_saelens, architecture="topk"),
    "saelens-jumprelu": partial(write_saelens, architecture="jumprelu"),
    "saelens-gated": partial(write_saelens, architecture="gated"),
    "saelens-batchtopk": partial(write_saelens, architecture="batchtopk"),
    "saelens-centered": write_saelens_centered,
    "saelens-head": write_saelens_head,
    "saelens-pre6": partial(write_saelens_pre6, normalize=False),
    "saelens-pre6-expected-average": partial(write_saelens_pre6, normalize=True),
    "sparsify": write_sparsify,
    "gemma-scope": write_gemma_scope,
    "gemma-scope-2": write_gemma_scope_2,
}


# --------------------------------------------------------------------------------------------
# CLI


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="See the module docstring and SAE_FORMATS.md for the formulas.",
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--format", choices=sorted(ENCODERS), help="encode with this format's rules")
    mode.add_argument("--write-random", choices=sorted(RANDOM_KINDS), help="write a random SAE of this kind")
    encode = parser.add_argument_group("encoding (--format)")
    encode.add_argument("--sae", type=Path, help="the SAE folder")
    encode.add_argument("--input", type=Path, help="safetensors file holding x, [n, d_in]")
    encode.add_argument("--out", type=Path, help="safetensors file to write codes, [n, d_sae] float32, to")
    encode.add_argument(
        "--batchtopk-threshold",
        type=float,
        help="BatchTopK SAEs only: keep relu(pre) > T per row instead of the batch-level top k*n",
    )
    encode.add_argument(
        "--batch-rows",
        type=int,
        help="BatchTopK SAEs only: apply the batch-level rule to consecutive batches of this many rows "
        "(default: the whole input is one batch)",
    )
    encode.add_argument(
        "--norm-scaling-factor",
        type=float,
        help="saelens only: the release's norm_scaling_factor for an expected_average_only_in SAE",
    )
    encode.add_argument(
        "--head",
        type=int,
        help="x is attn.hook_z of --heads heads, [n, heads * d_head]: encode head H's values "
        "(SAELens's hook_head_index: the activation store takes z[:, :, H])",
    )
    encode.add_argument("--heads", type=int, help="the number of heads, with --head")
    encode.add_argument(
        "--center",
        action="store_true",
        help="centre each row first, as TransformerLens's center_writing_weights centres the "
        "activations of a LayerNorm model",
    )
    random = parser.add_argument_group("random SAEs (--write-random)")
    random.add_argument("--d-in", type=int)
    random.add_argument("--d-sae", type=int)
    random.add_argument("--k", type=int)
    random.add_argument("--seed", type=int)
    random.add_argument("--out-dir", type=Path)
    random.add_argument("--layer", type=int, default=3, help="layer recorded in the config (default 3)")
    args = parser.parse_args(argv)
    needed = ["sae", "input", "out"] if args.format else ["d_in", "d_sae", "k", "seed", "out_dir"]
    missing = [f"--{name.replace('_', '-')}" for name in needed if getattr(args, name) is None]
    if missing:
        parser.error(f"{'--format' if args.format else '--write-random'} needs {', '.join(missing)}")
    if args.batch_rows is not None and args.batch_rows < 1:
        parser.error("--batch-rows must be at least 1")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.write_random:
        rng = np.random.default_rng(args.seed)
        folder = RANDOM_KINDS[args.write_random](args.out_dir, rng, args.d_in, args.d_sae, args.k, args.layer)
        print(folder)
        return 0
    inputs = read_safetensors(args.input)
    if "x" not in inputs or inputs["x"].ndim != 2 or not len(inputs["x"]):
        raise SystemExit(f"error: {args.input} needs a 2-D tensor named x with at least one row")
    x = inputs["x"]
    if args.head is not None:
        x = x.reshape(len(x), args.heads, -1)[:, args.head, :]
    if args.center:
        x = x - x.mean(axis=-1, keepdims=True)
    encoder = ENCODERS[args.format]
    if args.norm_scaling_factor is not None:
        if args.format != "saelens":
            raise SystemExit("error: --norm-scaling-factor is for SAELens SAEs")
        encoder = partial(encoder, norm_scaling_factor=args.norm_scaling_factor)
    try:
        codes = encoder(args.sae, x, args.batchtopk_threshold, args.batch_rows)
    except (OSError, ValueError, KeyError) as error:
        raise SystemExit(f"error: {error}") from None
    write_safetensors(args.out, {"codes": codes.astype(np.float32)}, {})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
