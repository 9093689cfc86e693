"""Fixtures: one small real index, made once per session by the saeidx binary."""

import json
from pathlib import Path

import pytest

from support import DEFAULT_SAE, DOCUMENTS, cli_json


@pytest.fixture(scope="session")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small index of DOCUMENTS (read-only: copy it to change it)."""
    root = tmp_path_factory.mktemp("job")
    corpus = root / "corpus.jsonl"
    corpus.write_text(
        "".join(json.dumps({"id": id, "text": text}) + "\n" for id, text in DOCUMENTS),
        encoding="utf-8",
    )
    job = root / "job.toml"
    job.write_text(
        f"""output = "index"
hook = "blocks.15.hook_resid_post"

[model]
source = "saeidx-default/SmolLM2-135M-Instruct-mlx-4bit"

[sae]
path = {json.dumps(str(DEFAULT_SAE))}

[corpus]
sources = [{{ path = "corpus.jsonl" }}]

[run]
part_bytes = 4000
window_length = 64
window_overlap = 8
batch_tokens = 512
""",
        encoding="utf-8",
    )
    summary = cli_json("run", str(job))
    assert summary["counts"]["documents"] == len(DOCUMENTS), summary
    return root / "index"
