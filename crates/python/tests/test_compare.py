"""Index.compare: the CLI's answer field for field, and a permuted SAE's features found."""

import json
import random
import shutil
import struct
from pathlib import Path

import pytest

import saeidx
from support import DEFAULT_SAE, build_index, cli_json

# mlxterp's tensors and the axis along which each one lists the SAE's features.
FEATURE_AXIS = {"encoder.weight": 0, "encoder.bias": 0, "decoder.weight": 1}


def read_safetensors(path: Path) -> tuple[dict, bytes]:
    """A safetensors file's header (without __metadata__) and its data section."""
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    header.pop("__metadata__", None)
    return header, raw[8 + length :]


def permuted(data: bytes, shape: list[int], itemsize: int, axis: int, order: list[int]) -> bytes:
    """The row-major tensor `data` with its `axis` (0 or the last) reordered: position j
    of the result holds position order[j] of the input."""
    if axis == 0:
        row = len(data) // shape[0]
        return b"".join(data[i * row : (i + 1) * row] for i in order)
    cols = shape[-1]
    row_bytes = cols * itemsize
    out = bytearray()
    for r in range(len(data) // row_bytes):
        row = data[r * row_bytes : (r + 1) * row_bytes]
        out += b"".join(row[i * itemsize : (i + 1) * itemsize] for i in order)
    return bytes(out)


def write_permuted_sae(source: Path, target: Path, order: list[int]) -> None:
    """Copies the mlxterp SAE folder `source` to `target` with its features reordered:
    feature j of the copy is feature order[j] of the source (same values, bit for bit)."""
    target.mkdir()
    shutil.copy(source / "config.json", target / "config.json")
    header, data = read_safetensors(source / "weights.safetensors")
    tensors = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        tensor = data[start:end]
        if name in FEATURE_AXIS:
            itemsize = {"F16": 2, "BF16": 2, "F32": 4}[info["dtype"]]
            tensor = permuted(tensor, info["shape"], itemsize, FEATURE_AXIS[name], order)
        tensors[name] = (info, tensor)
    out_header, offset, blobs = {}, 0, []
    for name, (info, tensor) in sorted(tensors.items()):
        out_header[name] = {
            "dtype": info["dtype"],
            "shape": info["shape"],
            "data_offsets": [offset, offset + len(tensor)],
        }
        offset += len(tensor)
        blobs.append(tensor)
    encoded = json.dumps(out_header).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    (target / "weights.safetensors").write_bytes(
        struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs)
    )


@pytest.fixture(scope="module")
def permutation() -> list[int]:
    """order[j]: the default SAE's feature that the permuted SAE's feature j is."""
    d_sae = json.loads((DEFAULT_SAE / "config.json").read_text())["d_hidden"]
    order = list(range(d_sae))
    random.Random(7).shuffle(order)
    return order


@pytest.fixture(scope="module")
def permuted_index(tmp_path_factory: pytest.TempPathFactory, permutation: list[int]) -> Path:
    """The test job's index made with the default SAE's features permuted."""
    root = tmp_path_factory.mktemp("permuted")
    write_permuted_sae(DEFAULT_SAE, root / "sae", permutation)
    return build_index(root, root / "sae")


def test_compare_matches_the_cli_and_recovers_a_permuted_sae(
    index_dir: Path, permuted_index: Path, permutation: list[int], tmp_path: Path
) -> None:
    a, b = str(index_dir), str(permuted_index)
    answer = saeidx.open(a).compare(saeidx.open(b), by="decoder", candidates=2)
    assert answer == cli_json("compare", a, b, "--by", "decoder", "--candidates", "2")
    assert answer["kind"] == "saes" and answer["matched_by"] == "decoder"
    assert answer["a"]["sae_sha256"] != answer["b"]["sae_sha256"]
    # Every feature of A is matched with its own copy in B, at decoder cosine 1.
    where = {feature: j for j, feature in enumerate(permutation)}
    assert answer["matched"] == len(permutation) == len(answer["features"])
    for feature in answer["features"]:
        assert feature["matched"] == where[feature["feature"]], feature
        assert feature["score"] == pytest.approx(1.0, abs=1e-3)
    assert answer["unmatched_a"] == [] and answer["unmatched_b"] == []
    # The same matching by co-activation over the shared tokens, also written as Parquet.
    parquet = tmp_path / "matching.parquet"
    by_tokens = saeidx.open(a).compare(saeidx.open(b), parquet=parquet)
    assert by_tokens["shared_tokens"] > 0
    # A live feature's copy is among its best-scoring candidates (features that fire on
    # exactly the same tokens score alike).
    live = [f for f in by_tokens["features"] if f["count"]]
    assert live
    for f in live:
        best = f["candidates"][0]["score"]
        assert any(
            c["feature"] == where[f["feature"]] and c["score"] == best for c in f["candidates"]
        ), f
    assert parquet.stat().st_size > 0
