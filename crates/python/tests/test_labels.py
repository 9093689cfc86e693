"""Labels drafted and scored by an LLM from a notebook: `draft_labels` / `score_labels`
(pyarrow tables) and their `*_answer` forms (the `saeidx labels draft|score --json`
answer), against a scripted OpenAI-compatible endpoint on loopback. The real server
(mlx_lm.server) is tests/autointerp.rs's; this checks the Python side: arguments,
tables, the registry the other answers show, reviews, errors."""

import json
import re
import shutil
import threading
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pytest

import saeidx
from support import cli_json

EVIDENCE = {"top": 3, "bands": 2, "per_band": 1, "same_token": 1, "silent": 1, "test": 2,
            "context": 4}


class FakeLlm:
    """Answers drafting prompts with a label and scoring prompts with 1 for every text."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                last = body["messages"][-1]["content"]
                if last.startswith("Description:"):
                    texts = len(re.findall(r"^\d+\. ", last, flags=re.M))
                    content = "[" + ",".join(["1"] * texts) + "]"
                else:
                    content = "[NAME]: test_feature\n[EXPLANATION]: Words of the test corpus."
                answer = json.dumps({
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 10},
                }).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture()
def llm() -> Iterator[FakeLlm]:
    fake = FakeLlm()
    yield fake
    fake.server.shutdown()


@pytest.fixture()
def copy(index_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "index"
    shutil.copytree(index_dir, target)
    return target


def live_features(idx: saeidx.Index, n: int) -> list[int]:
    return [f["feature"] for f in idx.sample(n, seed=1, examples=1)["features"]]


def test_drafts_come_back_as_a_table_and_every_answer_shows_them(
    copy: Path, llm: FakeLlm
) -> None:
    idx = saeidx.open(copy)
    features = live_features(idx, 2)
    table = idx.draft_labels(features, llm=llm.url, llm_model="fake-model", evidence=EVIDENCE,
                             per_prompt=2, concurrency=2)
    assert isinstance(table, pa.Table) and table.num_rows == 2
    assert table.column_names == [
        "feature", "status", "name", "description", "confidence", "origin", "llm",
        "prompt_version", "detection", "detection_answered", "detection_failed", "fuzzing",
        "fuzzing_answered", "fuzzing_failed", "requests", "cached", "reason", "answer",
    ]
    rows = table.to_pylist()
    assert [r["feature"] for r in rows] == features
    for row in rows:
        assert row["status"] == "drafted" and row["origin"] == "drafted"
        assert (row["name"], row["llm"]) == ("test_feature", "fake-model")
        assert row["prompt_version"] == "saeidx-draft-1"
        # Every text called activating: the activating ones right, the silent ones
        # wrong; balanced accuracy (1 + 0) / 2.
        assert row["detection"] == row["fuzzing"] == 0.5
        assert row["detection_failed"] == 0 and row["detection_answered"] >= 2
        assert row["confidence"] == "low" and row["cached"] == 0
    totals = json.loads(table.schema.metadata[b"saeidx.report"])
    assert totals["requests"]["sent"] == len(llm.requests) == sum(r["requests"] for r in rows)
    assert totals["features"] == [] and totals["llm"] == "fake-model"
    # The registry is read again: every answer shows the drafts, as the CLI does.
    label = idx.label(features[0])
    assert label == cli_json("labels", "get", str(features[0]), "--index", str(copy))
    assert label["label"]["provenance"]["origin"] == "drafted"
    assert idx.top_texts_answer(features[0], 1)["label"] == label["label"]
    assert idx.info["labels"] == 2


def test_a_rerun_sends_nothing_and_reviews_are_kept(copy: Path, llm: FakeLlm) -> None:
    idx = saeidx.open(copy)
    features = live_features(idx, 2)
    args = dict(llm=llm.url, llm_model="fake-model", evidence=EVIDENCE, per_prompt=2)
    first = idx.draft_labels_answer(features, **args)
    assert [f["status"] for f in first["features"]] == ["drafted", "drafted"]
    sent = len(llm.requests)
    again = idx.draft_labels_answer(features, **args)
    assert [f["status"] for f in again["features"]] == ["unchanged", "unchanged"]
    assert again["requests"]["asked"] == 0 and len(llm.requests) == sent
    # Scoring asks what drafting asked: all from the cache.
    scored = idx.score_labels(**args)
    assert scored.column("status").to_pylist() == ["scored", "scored"]
    assert json.loads(scored.schema.metadata[b"saeidx.report"])["requests"]["sent"] == 0
    # A person accepts one draft and edits the other: drafts leave both alone.
    accepted = idx.accept_label(features[0])["label"]
    assert accepted["provenance"]["origin"] == "accepted"
    edited = idx.set_label(features[1], name="my_name", description="what I saw")["label"]
    assert edited["provenance"]["origin"] == "edited" and "scores" not in edited
    kept = idx.draft_labels_answer(features, **args)
    assert [f["status"] for f in kept["features"]] == ["kept_human", "kept_human"]
    assert idx.label(features[1])["label"]["name"] == "my_name"
    with pytest.raises(ValueError, match="no draft to accept"):
        idx.accept_label(features[0])


def test_bad_arguments_and_a_dead_endpoint(copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    idx = saeidx.open(copy)
    monkeypatch.delenv("SAEIDX_LLM_MODEL", raising=False)
    with pytest.raises(ValueError, match="llm_model"):
        idx.draft_labels([1])
    with pytest.raises(ValueError, match="not both"):
        idx.draft_labels([1], sample=3, llm_model="m")
    with pytest.raises(ValueError, match="does not exist"):
        idx.draft_labels([idx.d_sae], llm_model="m")
    with pytest.raises(ValueError, match="evidence"):
        idx.draft_labels([1], llm_model="m", evidence={"tops": 3})
    # Nothing listens on this port: the features fail, the run stops with a warning, and
    # the table says why.
    closed = FakeLlm()
    url = closed.url
    closed.server.shutdown()
    closed.server.server_close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = idx.draft_labels(live_features(idx, 4), llm=url, llm_model="m", max_retries=0,
                                 concurrency=1, evidence=EVIDENCE)
    assert any("stopped early" in str(w.message) for w in caught), caught
    statuses = table.column("status").to_pylist()
    assert statuses[:3] == ["failed"] * 3 and statuses[3] == "not_attempted"
    assert "could not reach the LLM endpoint" in table.column("reason")[0].as_py()
    assert idx.info["labels"] == 0


def test_silent_contexts_match_the_cli(index_dir: Path) -> None:
    idx = saeidx.open(index_dir)
    feature = live_features(idx, 1)[0]
    token = idx.top_texts_answer(feature, 1)["texts"][0]["token"]
    answer = idx.silent_contexts(feature, 4, context=3, tokens=[token], seed=2)
    assert answer == cli_json("silent", str(feature), "--n", "4", "--context", "3", "--token",
                              str(token), "--seed", "2", "--index", str(index_dir))
    assert all(hit["token"] == token and hit["activation"] == 0 for hit in answer["contexts"])
    anywhere = idx.silent_contexts(feature, 3)
    assert len(anywhere["contexts"]) == 3
