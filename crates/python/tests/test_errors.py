"""Bad arguments, missing and damaged indexes, and a missing model raise clear exceptions."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import saeidx


@pytest.fixture(scope="module")
def idx(index_dir: Path) -> saeidx.Index:
    return saeidx.open(index_dir)


def test_exception_classes() -> None:
    for error in [
        saeidx.NotAnIndexError,
        saeidx.IndexNotBuiltError,
        saeidx.CorruptIndexError,
        saeidx.LiveAnalysisError,
    ]:
        assert issubclass(error, saeidx.SaeidxError)
        assert error.__module__ == "saeidx"
    assert issubclass(saeidx.SaeidxError, Exception)


def test_missing_folders_and_non_indexes(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such index folder"):
        saeidx.open(tmp_path / "missing")
    with pytest.raises(saeidx.NotAnIndexError, match=r"manifest\.json.*is this an index folder"):
        saeidx.open(tmp_path)
    (tmp_path / "file.txt").write_text("not an index")
    with pytest.raises(saeidx.NotAnIndexError, match="is this an index folder"):
        saeidx.open(tmp_path / "file.txt")


def test_an_index_without_query_files(index_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "index"
    shutil.copytree(index_dir, copy)
    shutil.rmtree(copy / "query")
    with pytest.raises(saeidx.IndexNotBuiltError, match="saeidx query build"):
        saeidx.open(copy)


def test_a_damaged_index(index_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "index"
    shutil.copytree(index_dir, copy)
    postings = copy / "query" / "postings.bin"
    postings.write_bytes(postings.read_bytes()[: postings.stat().st_size // 2])
    with pytest.raises(saeidx.CorruptIndexError, match="postings.bin"):
        saeidx.open(copy)


def test_bad_arguments(idx: saeidx.Index) -> None:
    d_sae = idx.d_sae
    for feature in [d_sae, -1, 2**40]:
        with pytest.raises(ValueError, match=f"feature {feature} does not exist.*{d_sae} features"):
            idx.top_texts(feature)
        with pytest.raises(ValueError, match="does not exist"):
            idx.feature_stats(feature)
        with pytest.raises(ValueError, match="does not exist"):
            idx.neighbours(feature)
        with pytest.raises(ValueError, match="does not exist"):
            idx.label(feature)
    with pytest.raises(ValueError, match="top_k must be 0 or more, not -1"):
        idx.top_texts(0, top_k=-1)
    with pytest.raises(ValueError, match="context must be 0 or more"):
        idx.top_texts(0, context=-3)
    with pytest.raises(ValueError, match='rank "best" is not one of'):
        idx.top_texts(0, rank="best")
    with pytest.raises(ValueError, match='aggregate "mean" is not one of'):
        idx.top_features(doc=0, aggregate="mean")
    with pytest.raises(ValueError, match="exactly one of text"):
        idx.top_features()
    with pytest.raises(ValueError, match="exactly one of text"):
        idx.top_features("a text", doc=0)
    with pytest.raises(ValueError, match="not of a text"):
        idx.top_features("a text", tokens=(0, 2))
    with pytest.raises(ValueError, match=r'document "nope" is not in this index.*ids are'):
        idx.top_features(doc="nope")
    for doc in [len(idx), -2]:
        with pytest.raises(ValueError, match=f"document {doc} is not in this index"):
            idx.top_features(doc=doc)
        with pytest.raises(ValueError, match="is not in this index"):
            idx.document(doc)
    with pytest.raises(ValueError, match="outside document 0"):
        idx.top_features(doc=0, tokens=(2, 10_000))
    with pytest.raises(ValueError, match=r"tokens 5\.\.2: the range is reversed"):
        idx.top_features(doc=0, tokens=(5, 2))
    # Sizes past the query library's limits, refused before anything is allocated.
    with pytest.raises(ValueError, match=r"4294967296 answers \(k\).*at most 10000"):
        idx.top_texts(0, top_k=2**32)
    with pytest.raises(ValueError, match=r"at most 10000"):
        idx.top_features(doc=0, top_k=2**32)
    with pytest.raises(ValueError, match=r"tokens of context on each side.*at most 256"):
        idx.top_texts(0, context=2**31)
    with pytest.raises(ValueError, match=r"neighbours.*at most 1000"):
        idx.neighbours(0, top_k=10**6)
    with pytest.raises(TypeError):
        idx.top_features(doc=1.5)


def test_a_missing_model_is_a_live_analysis_error(index_dir: Path, tmp_path: Path) -> None:
    """With an empty Hugging Face cache and no network, live texts fail clearly, and the
    index still answers from its files."""
    script = f"""
import saeidx
idx = saeidx.open({str(index_dir)!r})
try:
    idx.top_features("Paris is the capital of France")
except saeidx.LiveAnalysisError as error:
    print("LiveAnalysisError:", error)
print(len(idx.top_features(doc=0)))
"""
    env = dict(os.environ, HF_HOME=str(tmp_path / "empty-cache"), HF_HUB_OFFLINE="1")
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.strip().splitlines()
    assert first.startswith(
        "LiveAnalysisError: loading the index's model and SAE for live texts:"
    ), first
    assert "saeidx-default/SmolLM2-135M-Instruct-mlx-4bit" in first, first
    assert int(second) == 10
