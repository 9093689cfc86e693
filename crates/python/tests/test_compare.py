"""Index.compare: a second index of the same documents made with the default SAE's
features in another order; the matching recovers the order, and the answer (and its
Parquet table) is the command line's."""

import json
import shutil
import struct
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import saeidx
from support import DEFAULT_SAE, cli_json

# B's feature j is A's feature PERMUTATION[j]: a fixed shuffle of the 8192 features.
D_SAE = 8192


def permutation() -> list[int]:
    return [(j * 2999 + 17) % D_SAE for j in range(D_SAE)]  # 2999 is coprime to 8192


def permute_safetensors(source: Path, target: Path) -> None:
    """The mlxterp weights with features reordered: encoder rows and biases, decoder
    columns (raw bytes, whatever the float type)."""
    data = source.read_bytes()
    size = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + size])
    body = data[8 + size :]
    order = permutation()
    out = bytearray(body)
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        tensor = body[start:end]
        shape = info["shape"]
        item = (end - start) // (shape[0] * (shape[1] if len(shape) > 1 else 1))
        if name in ("encoder.weight", "encoder.bias"):
            row = len(tensor) // shape[0]
            permuted = b"".join(tensor[f * row : (f + 1) * row] for f in order)
        elif name == "decoder.weight":
            rows = [tensor[r * shape[1] * item : (r + 1) * shape[1] * item] for r in range(shape[0])]
            permuted = b"".join(
                b"".join(row[f * item : (f + 1) * item] for f in order) for row in rows
            )
        else:
            continue
        out[start:end] = permuted
    target.write_bytes(data[: 8 + size] + bytes(out))


@pytest.fixture(scope="module")
def permuted_index(index_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test index's documents indexed with the default SAE's features permuted."""
    root = tmp_path_factory.mktemp("permuted")
    sae = root / "sae"
    sae.mkdir()
    shutil.copy(DEFAULT_SAE / "config.json", sae / "config.json")
    permute_safetensors(DEFAULT_SAE / "weights.safetensors", sae / "weights.safetensors")
    job = (index_dir.parent / "job.toml").read_text(encoding="utf-8")
    job = job.replace(json.dumps(str(DEFAULT_SAE)), json.dumps(str(sae)))
    job = job.replace('"corpus.jsonl"', json.dumps(str(index_dir.parent / "corpus.jsonl")))
    (root / "job.toml").write_text(job, encoding="utf-8")
    cli_json("run", str(root / "job.toml"))
    return root / "index"


def test_compare_matches_a_permutation_as_the_cli_does(
    index_dir: Path, permuted_index: Path, tmp_path: Path
) -> None:
    a, b = saeidx.open(index_dir), saeidx.open(permuted_index)
    parquet = tmp_path / "matching.parquet"
    answer = a.compare(b, candidates=3, examples=2, context=2, parquet=parquet)
    cli = cli_json(
        "compare", str(index_dir), str(permuted_index),
        "--candidates", "3", "--examples", "2", "--context", "2",
    )
    assert answer == cli
    assert answer["kind"] == "saes"
    assert answer["shared_tokens"] > 0
    assert answer["matched_by"] == "coactivation"
    # Every live feature of A is matched, with Pearson's r of 1 (its image in B has the
    # same activations, renumbered).
    live = [m for m in answer["features"] if m["count"]]
    assert live and answer["matched"] == len(live)
    assert all(m["score"] == pytest.approx(1.0, abs=1e-5) for m in live)
    assert answer["dead_a"] == [m["feature"] for m in answer["features"] if not m["count"]]
    # The Parquet table: one row per feature of A and candidate, the matched ones flagged.
    table = pq.read_table(parquet).to_pylist()
    matched = {(r["a_feature"], r["b_feature"]) for r in table if r["matched"]}
    assert matched == {(m["feature"], m["matched"]) for m in live}


def test_decoder_matching_recovers_the_permutation(index_dir: Path, permuted_index: Path) -> None:
    a, b = saeidx.open(index_dir), saeidx.open(permuted_index)
    answer = a.compare(b, by="decoder", candidates=2, examples=1, context=1)
    assert answer["matched_by"] == "decoder"
    assert answer["matched"] == D_SAE
    order = permutation()
    for match in answer["features"]:
        assert order[match["matched"]] == match["feature"]
        assert match["score"] == pytest.approx(1.0, abs=1e-3)
        assert match["candidates"][0]["feature"] == match["matched"]


def test_compare_of_an_index_with_itself_is_a_run_comparison(index_dir: Path) -> None:
    idx = saeidx.open(index_dir)
    answer = idx.compare(idx)
    assert answer["kind"] == "runs"
    assert answer["appeared"] == [] and answer["vanished"] == [] and answer["changed"] == []
    with pytest.raises(ValueError, match="coactivation"):
        idx.compare(idx, by="nearest")
