"""An index of segments (grown by two runs of one job) answers through Python exactly as
through the command line, restrictions and token patterns included."""

import json
import shutil
from pathlib import Path

import pytest

import saeidx
from support import DEFAULT_SAE, DOCUMENTS, cli_json

JOB = """output = "index"
hook = "blocks.15.hook_resid_post"

[model]
source = "saeidx-default/SmolLM2-135M-Instruct-mlx-4bit"

[sae]
path = {sae}

[corpus]
sources = [{{ path = "corpus.jsonl", id_field = "id" }}]

[run]
part_bytes = 4000
window_length = 64
window_overlap = 8
batch_tokens = 512
"""


def write_corpus(root: Path, documents: list[tuple[str, str]]) -> None:
    (root / "corpus.jsonl").write_text(
        "".join(json.dumps({"id": id, "text": text}) + "\n" for id, text in documents),
        encoding="utf-8",
    )


@pytest.fixture(scope="module")
def segmented(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Night 1: five documents; night 2: the rest, and "budget" changed."""
    root = tmp_path_factory.mktemp("nightly")
    (root / "job.toml").write_text(JOB.format(sae=json.dumps(str(DEFAULT_SAE))), encoding="utf-8")
    write_corpus(root, DOCUMENTS[:5])
    cli_json("run", str(root / "job.toml"))
    grown = list(DOCUMENTS)
    grown[1] = ("budget", "The House passed the budget late at night after a long debate.")
    write_corpus(root, grown)
    summary = cli_json("run", str(root / "job.toml"))
    assert summary["segments"] == 2, summary
    assert (root / "index" / "segments.json").is_file()
    return root / "index"


def test_python_answers_as_the_cli_over_segments(segmented: Path) -> None:
    idx = saeidx.open(segmented)
    index = ["--index", str(segmented)]
    assert idx.info == cli_json("info", *index)
    assert len(idx) == len(DOCUMENTS) + 1  # the old "budget" keeps its number, deleted
    feature = cli_json("top-features", "--doc-id", "long", "--k", "1", *index)["features"][0][
        "feature"
    ]
    for rank, cli_rank in [("token", "token"), ("document_max", "doc-max"), ("document_sum", "doc-sum")]:
        assert idx.top_texts_answer(feature, 20, rank=rank, context=3) == cli_json(
            "top-texts", "--feature", str(feature), "--k", "20", "--rank", cli_rank,
            "--context", "3", *index,
        )
    same = ["--k", "10", "--rank", "token", "--context", "8"]
    assert idx.top_texts_answer(
        feature, 10, rank="token", context=8, where="tokens > 10", docs=["long", 0, "budget"]
    ) == cli_json(
        "top-texts", "--feature", str(feature), *same, "--where", "tokens > 10",
        "--docs", "long,0,budget", *index,
    )
    assert idx.top_texts_answer(
        feature, 10, rank="token", context=8, token_regex="^ [a-z]+$"
    ) == cli_json(
        "top-texts", "--feature", str(feature), *same, "--token-regex", "^ [a-z]+$", *index,
    )
    assert idx.feature(
        feature, examples=5, bands=4, per_band=5, neighbours=10, context=8, where="tokens > 10"
    ) == cli_json(
        "feature", str(feature), "--examples", "5", "--bands", "4", "--per-band", "5",
        "--neighbours", "10", "--context", "8", "--where", "tokens > 10", *index,
    )
    assert idx.sample(3, seed=4, examples=3, context=8) == cli_json(
        "sample", "--n", "3", "--seed", "4", "--examples", "3", "--context", "8", *index
    )
    assert idx.top_features_answer(doc="budget") == cli_json(
        "top-features", "--doc-id", "budget", *index
    )
    # Overviews and document pages over segments, as the CLI answers them.
    assert idx.overview() == cli_json("overview", *index)
    assert idx.document_page("long", page_tokens=7) == cli_json(
        "document", "long", "--page-tokens", "7", *index
    )


def test_labels_set_through_python_are_the_index_labels(segmented: Path, tmp_path: Path) -> None:
    copy = tmp_path / "index"
    shutil.copytree(segmented, copy)
    idx = saeidx.open(copy)
    idx.set_label(3, name="set from python")
    assert cli_json("labels", "get", "3", "--index", str(copy))["label"]["name"] == "set from python"
