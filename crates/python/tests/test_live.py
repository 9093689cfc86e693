"""Texts run live through the index's model and SAE, as the saeidx command line runs them."""

import struct
import threading
import time
from pathlib import Path

import pytest

import saeidx
from support import DOCUMENTS, LONG_TEXT, cli_json


def f32(value: float) -> float:
    return struct.unpack("f", struct.pack("f", value))[0]


@pytest.fixture(scope="module")
def idx(index_dir: Path) -> saeidx.Index:
    return saeidx.open(index_dir)


@pytest.mark.parametrize("aggregate", ["max", "sum"])
def test_a_live_text_matches_the_cli(idx: saeidx.Index, index_dir: Path, aggregate: str) -> None:
    text = "The Eiffel Tower is a famous landmark in Paris, France."
    cli = cli_json(
        "top-features", "--text", text, "--k", "10", "--aggregate", aggregate,
        "--index", str(index_dir),
    )["features"]
    expected = [(f["feature"], f32(f["score"])) for f in cli]
    assert len(expected) == 10
    assert idx.top_features(text, top_k=10, aggregate=aggregate) == expected
    table = idx.top_features_table(text, top_k=10, aggregate=aggregate)
    assert table.to_pylist() == [
        {"feature": f["feature"], "score": f32(f["score"]), "activation": f32(f["activation"]),
         "position": f["position"], "token_text": f["token_text"],
         "active_tokens": f["active_tokens"], "label": None}
        for f in cli
    ]


def test_an_indexed_text_run_live_gives_the_indexed_features(idx: saeidx.Index) -> None:
    """The long document spans several model windows; live and indexed codes agree."""
    for id, text in [("long", LONG_TEXT), ("paris", dict(DOCUMENTS)["paris"])]:
        for aggregate in ["max", "sum"]:
            live = idx.top_features(text=text, top_k=25, aggregate=aggregate)
            indexed = idx.top_features(doc=id, top_k=25, aggregate=aggregate)
            assert [f for f, _ in live] == [f for f, _ in indexed], (id, aggregate)
            for (_, a), (_, b) in zip(live, indexed, strict=True):
                assert a == pytest.approx(b, rel=2e-3), (id, aggregate)


def test_mlxterps_workflow(idx: saeidx.Index) -> None:
    """A text's strongest features, then each one's top texts (the seed's workflow)."""
    features = idx.top_features("Heavy rain and floods closed the roads to the capital.", top_k=3)
    assert len(features) == 3
    assert all(isinstance(f, int) and isinstance(a, float) and a > 0 for f, a in features)
    for feature, _ in features:
        for text, activation, position in idx.top_texts(feature, top_k=3):
            assert isinstance(text, str) and activation > 0 and position >= 0


def test_an_empty_text_has_no_features(idx: saeidx.Index) -> None:
    assert idx.top_features("") == []


def test_threads_share_one_model_and_other_threads_run_meanwhile(index_dir: Path) -> None:
    """Analyses from several Python threads agree; the GIL is released while they run."""
    idx = saeidx.open(index_dir)  # fresh: its first live text loads the model
    text = dict(DOCUMENTS)["budget"]
    results: list[list[tuple[int, float]]] = []
    errors: list[BaseException] = []

    def analyse() -> None:
        try:
            results.append(idx.top_features(text, top_k=8))
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=analyse) for _ in range(3)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    # This thread keeps running Python while the others wait for the model: the
    # longest pause between its steps stays far below the time they take.
    longest_pause, last = 0.0, time.perf_counter()
    while any(thread.is_alive() for thread in threads):
        now = time.perf_counter()
        longest_pause, last = max(longest_pause, now - last), now
    elapsed = time.perf_counter() - started
    assert not errors, errors
    assert len(results) == 3 and results[0] == results[1] == results[2]
    assert [f for f, _ in results[0]] == [f for f, _ in idx.top_features(doc="budget", top_k=8)]
    assert longest_pause < max(0.1, elapsed / 4), (longest_pause, elapsed)


def test_live_texts_need_neither_the_network_nor_the_offline_flag(
    idx: saeidx.Index, index_dir: Path
) -> None:
    """Without HF_HUB_OFFLINE and with the Hub a closed port, the index's model (placed in
    the cache by set-up) still loads, silently, and answers as in this process."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    text = "Paris is the capital of France."
    script = f"""
import saeidx
print(saeidx.open({str(index_dir)!r}).top_features({text!r}, top_k=5))
"""
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env["HF_ENDPOINT"] = f"http://127.0.0.1:{port}"
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "WARN" not in done.stderr, done.stderr
    assert done.stdout.strip() == str(idx.top_features(text, top_k=5))
