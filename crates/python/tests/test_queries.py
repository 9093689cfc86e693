"""Answers from the index agree with the saeidx command line's, in mlxterp's shapes."""

import shutil
import struct
from pathlib import Path

import pyarrow as pa
import pytest

import saeidx
from support import DOCUMENTS, cli_json, run_cli


def f32(value: float) -> float:
    """A JSON number as the float32 the CLI printed it from."""
    return struct.unpack("f", struct.pack("f", value))[0]


def char_offset(text: str, byte: int) -> int:
    """The character offset of a UTF-8 byte offset into text."""
    return len(text.encode("utf-8")[:byte].decode("utf-8"))


@pytest.fixture(scope="module")
def idx(index_dir: Path) -> saeidx.Index:
    return saeidx.open(index_dir)


@pytest.fixture(scope="module")
def feature(index_dir: Path) -> int:
    """The strongest feature of the long document."""
    answer = cli_json("top-features", "--doc-id", "long", "--k", "1", "--index", str(index_dir))
    return answer["features"][0]["feature"]


def test_open_and_info(idx: saeidx.Index, index_dir: Path) -> None:
    info = idx.info
    cli = cli_json("info", "--index", str(index_dir))
    assert info == cli
    assert info["index"] == str(index_dir)
    assert idx.path == index_dir
    assert info["model"] == cli["model"] == "saeidx-default/SmolLM2-135M-Instruct-mlx-4bit"
    assert info["hook"] == "blocks.15.hook_resid_post"
    assert info["sae"] == cli["sae"]
    assert info["d_sae"] == idx.d_sae == 8192
    assert info["live_features"] == cli["live_features"]
    assert info["dead_features"] == cli["dead_features"]
    assert info["live_features"] + info["dead_features"] == idx.d_sae
    assert info["labels"] == 0
    assert len(idx) == len(DOCUMENTS) == info["counts"]["documents"]
    assert repr(idx) == f'saeidx.Index("{index_dir}": {len(DOCUMENTS)} documents, 8192 features)'
    assert isinstance(saeidx.__version__, str) and saeidx.__version__


@pytest.mark.parametrize(
    ("rank", "cli_rank"),
    [("token", "token"), ("document_max", "doc-max"), ("document_sum", "doc-sum")],
)
def test_top_texts_with_context_match_the_cli(
    idx: saeidx.Index, index_dir: Path, feature: int, rank: str, cli_rank: str
) -> None:
    cli = cli_json(
        "top-texts", "--feature", str(feature), "--k", "6", "--rank", cli_rank,
        "--context", "4", "--index", str(index_dir),
    )["texts"]
    assert cli, "the feature fires somewhere"
    texts = idx.top_texts(feature, top_k=6, rank=rank, context=4)
    assert [(text, position) for text, _, position in texts] == [
        (hit["snippet"]["text"], hit["position"]) for hit in cli
    ]
    assert [activation for _, activation, _ in texts] == [f32(hit["activation"]) for hit in cli]
    table = idx.top_texts_table(feature, top_k=6, rank=rank, context=4)
    assert table.to_pylist() == [
        {
            "doc": hit["doc"],
            "id": hit["id"],
            "source": hit["source"],
            "position": hit["position"],
            "token": hit["token"],
            "activation": f32(hit["activation"]),
            "score": f32(hit["score"]),
            "text": hit["snippet"]["text"],
            "hit_start": char_offset(hit["snippet"]["text"], hit["snippet"]["hit_start"]),
            "hit_end": char_offset(hit["snippet"]["text"], hit["snippet"]["hit_end"]),
        }
        for hit in cli
    ]


def test_top_texts_default_is_mlxterps_whole_texts(
    idx: saeidx.Index, index_dir: Path, feature: int
) -> None:
    texts = idx.top_texts(feature, top_k=len(DOCUMENTS))
    table = idx.top_texts_table(feature, top_k=len(DOCUMENTS))
    assert table.num_rows == len(texts) >= 1
    rows = table.to_pylist()
    # Each document once (ranked by its strongest token), with its whole text.
    assert len({row["doc"] for row in rows}) == len(rows)
    activations = [activation for _, activation, _ in texts]
    assert activations == sorted(activations, reverse=True)
    # The token at each position, as the CLI shows it with no context.
    tokens = {
        (hit["doc"], hit["position"]): hit["snippet"]["text"][
            hit["snippet"]["hit_start"] : hit["snippet"]["hit_end"]
        ]
        for hit in cli_json(
            "top-texts", "--feature", str(feature), "--k", "100", "--rank", "doc-max",
            "--context", "0", "--index", str(index_dir),
        )["texts"]
    }
    for (text, activation, position), row in zip(texts, rows, strict=True):
        document = idx.document(row["doc"])
        assert text == row["text"] == document["text"] == dict(DOCUMENTS)[row["id"]]
        assert (activation, position) == (row["activation"], row["position"])
        assert text[row["hit_start"] : row["hit_end"]] == tokens[(row["doc"], position)]


def test_top_texts_table_schema(idx: saeidx.Index, feature: int) -> None:
    table = idx.top_texts_table(feature, top_k=3, rank="token", context=2)
    assert isinstance(table, pa.Table)
    assert table.schema == pa.schema(
        [
            pa.field("doc", pa.uint32(), nullable=False),
            pa.field("id", pa.string(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("position", pa.uint32(), nullable=False),
            pa.field("token", pa.uint32(), nullable=False),
            pa.field("activation", pa.float32(), nullable=False),
            pa.field("score", pa.float32(), nullable=False),
            pa.field("text", pa.string(), nullable=False),
            pa.field("hit_start", pa.uint32(), nullable=False),
            pa.field("hit_end", pa.uint32(), nullable=False),
        ]
    )
    assert idx.top_texts_table(feature, top_k=0).num_rows == 0


def test_unicode_offsets_count_characters(idx: saeidx.Index) -> None:
    """hit_start/hit_end index Python strings, also past multi-byte characters."""
    unicode = idx.document("unicode")
    strongest = idx.top_features(doc="unicode", top_k=5)
    checked = 0
    for feature, _ in strongest:
        for row in idx.top_texts_table(feature, top_k=50, rank="token").to_pylist():
            if row["id"] == "unicode":
                assert row["text"] == unicode["text"]
                piece = row["text"][row["hit_start"] : row["hit_end"]]
                assert piece and piece in unicode["text"]
                checked += 1
    assert checked > 0


@pytest.mark.parametrize("aggregate", ["max", "sum"])
@pytest.mark.parametrize("tokens", [None, (2, 9)])
def test_top_features_of_a_document_match_the_cli(
    idx: saeidx.Index, index_dir: Path, aggregate: str, tokens: tuple[int, int] | None
) -> None:
    args = ["top-features", "--doc-id", "long", "--k", "12", "--aggregate", aggregate]
    if tokens:
        args += ["--tokens", f"{tokens[0]}..{tokens[1]}"]
    cli = cli_json(*args, "--index", str(index_dir))
    doc = cli["of"]["doc"]
    expected = [(f["feature"], f32(f["score"])) for f in cli["features"]]
    assert len(expected) == 12
    by_id = idx.top_features(doc="long", top_k=12, aggregate=aggregate, tokens=tokens)
    by_number = idx.top_features(doc=doc, top_k=12, aggregate=aggregate, tokens=tokens)
    assert by_id == by_number == expected
    table = idx.top_features_table(doc=doc, top_k=12, aggregate=aggregate, tokens=tokens)
    assert table.column_names == [
        "feature", "score", "activation", "position", "token_text", "active_tokens", "label"
    ]
    assert table.to_pylist() == [
        {
            "feature": f["feature"],
            "score": f32(f["score"]),
            "activation": f32(f["activation"]),
            "position": f["position"],
            "token_text": f["token_text"],
            "active_tokens": f["active_tokens"],
            "label": None,
        }
        for f in cli["features"]
    ]
    answer = idx.top_features_answer(doc="long", top_k=12, aggregate=aggregate, tokens=tokens)
    assert answer == cli


def test_special_tokens_and_sinks_can_be_included(idx: saeidx.Index) -> None:
    default = idx.top_features(doc="paris", top_k=50)
    everything = idx.top_features(doc="paris", top_k=50, include_special=True, include_sinks=True)
    # The first position (BOS, an attention sink) carries large activations of its own.
    assert everything != default
    positions = idx.top_features_table(
        doc="paris", top_k=50, include_special=True, include_sinks=True
    ).column("position")
    assert 0 in positions.to_pylist()
    assert 0 not in idx.top_features_table(doc="paris", top_k=50).column("position").to_pylist()


def test_feature_stats_and_neighbours_match_the_cli(
    idx: saeidx.Index, index_dir: Path, feature: int
) -> None:
    report = cli_json(
        "feature", str(feature), "--neighbours", "7", "--index", str(index_dir)
    )
    stats = idx.feature_stats(feature)
    assert stats == report["stats"]
    assert idx.feature(feature, neighbours=7) == report
    assert stats["count"] >= 1 and len(stats["histogram"]) == 20
    assert sum(stats["histogram"]) == stats["count"]
    neighbours = idx.neighbours(feature, top_k=7)
    assert neighbours == [(n["feature"], n["jaccard"]) for n in report["neighbours"]]
    assert neighbours and all(0 < jaccard <= 1 for _, jaccard in neighbours)
    table = idx.neighbours_table(feature, top_k=7)
    assert table.schema.types == [pa.uint32(), pa.float64(), pa.uint64(), pa.uint64()]
    assert table.to_pylist() == [
        {"feature": n["feature"], "jaccard": n["jaccard"], "together": n["together"],
         "count": n["count"]}
        for n in report["neighbours"]
    ]
    # With sinks and special tokens counted, postings that were left out count too.
    everything = idx.feature_stats(feature, include_special=True, include_sinks=True)
    assert everything["count"] == everything["postings"] >= stats["count"]


def test_labels_and_documents(index_dir: Path, tmp_path: Path, feature: int) -> None:
    copy = tmp_path / "index"
    shutil.copytree(index_dir, copy)
    done = run_cli(
        "labels", "set", str(feature), "--name", "flood news", "--description", "rivers rising",
        "--example", "the river rose", "--confidence", "low", "--index", str(copy),
    )
    assert done.returncode == 0, done.stderr
    idx = saeidx.open(copy)
    assert idx.label(feature) == {
        "feature": feature,
        "label": {
            "name": "flood news",
            "description": "rivers rising",
            "examples": ["the river rose"],
            "confidence": "low",
        },
    }
    other = (feature + 1) % idx.d_sae
    assert idx.label(other) == {"feature": other, "label": None}
    assert idx.info["labels"] == 1
    labels = idx.top_features_table(doc="long", top_k=idx.d_sae).column("label").to_pylist()
    assert labels.count("flood news") == 1
    assert idx.document(0) == {"doc": 0, "id": "paris", "source": idx.document("paris")["source"],
                               "text": DOCUMENTS[0][1]}
    assert idx.document("empty")["text"] == ""


def test_restricted_token_and_contrast_answers_match_the_cli(
    idx: saeidx.Index, index_dir: Path, feature: int
) -> None:
    index = str(index_dir)
    texts = cli_json("top-texts", "--feature", str(feature), "--where", "doc >= 1",
                     "--docs", "1,long", "--index", index)
    assert idx.top_texts_answer(feature, where="doc >= 1", docs=[1, "long"]) == texts
    assert all(hit["doc"] >= 1 for hit in texts["texts"])
    token = texts["texts"][0]["token"] if texts["texts"] else 0
    on_token = cli_json("top-texts", "--feature", str(feature), "--token-id", str(token),
                        "--index", index)
    assert idx.top_texts_answer(feature, token=token) == on_token
    assert all(hit["token"] == token for hit in on_token["texts"])
    profile = cli_json("token-features", "--token-id", str(token), "--index", index)
    assert idx.token_features(token) == profile
    assert idx.token_features([token]) == profile
    contrast = cli_json("contrast", "--a", "doc < 1", "--index", index)
    assert idx.contrast("doc < 1") == contrast
    subset = cli_json("top-features", "--where", "doc >= 1", "--index", index)
    assert idx.subset_features(where="doc >= 1") == subset
    with pytest.raises(ValueError, match="invalid filter"):
        idx.top_texts_answer(feature, where="doc >>")
    with pytest.raises(ValueError, match="invalid token pattern"):
        idx.top_texts_answer(feature, token_regex="(")
