"""What the tests share: the saeidx binary, the documents of the test index.

The test index (conftest.py) runs the embedded default model (SmolLM2-135M-Instruct,
MLX 4-bit, from the Hugging Face cache that scripts/setup.sh fills) and the default
SAE of the repository over DOCUMENTS, so live texts go through the same model and SAE.
"""

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
SAEIDX = REPO / "target" / "release" / "saeidx"
DEFAULT_SAE = REPO / "crates/assets/default-sae/smollm2-135m-l15-resid-post-8k-k32"

# A document long enough for several model windows (64 tokens, 8 overlapping).
LONG_TEXT = " ".join(
    [
        "The river rose through the night and by morning the lower town was under water.",
        "Volunteers carried sandbags to the bridge while the mayor spoke on the radio.",
        "Farmers on the eastern plain moved their cattle to higher ground before noon.",
        "By evening the rain had stopped, but the roads to the capital stayed closed.",
        "Engineers said the old dam had held, though its spillway was badly damaged.",
        "Schools reopened a week later, and the market sold bread and fish again.",
    ]
    * 3
)

DOCUMENTS = [
    ("paris", "Paris is the capital of France, and Berlin is the capital of Germany."),
    ("budget", "The Senate approved the budget after a long debate about taxes and spending."),
    ("empty", ""),
    ("code", "def add(a, b):\n    return a + b\n\nprint(add(2, 3))"),
    ("long", LONG_TEXT),
    ("unicode", "Grüße aus Köln: naïve café, 東京 and an emoji 🚀 in one line."),
    ("numbers", "In 1863 the war had lasted two years; by 1865 it was over."),
    ("weather", "Heavy rain and strong winds are expected along the coast tomorrow."),
]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """Runs the saeidx binary (offline)."""
    assert SAEIDX.is_file(), f"{SAEIDX} is missing: cargo build --release -p saeidx-cli -p saeidx-cli-model"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run(
        [str(SAEIDX), *args], env=env, capture_output=True, text=True
    )


def cli_json(*args: str) -> dict:
    """Runs a saeidx command with --json and returns its answer."""
    done = run_cli(*args, "--json")
    assert done.returncode == 0, f"saeidx {args} failed:\n{done.stderr}"
    return json.loads(done.stdout)


def build_index(root: Path, sae: Path) -> Path:
    """Runs the test job (DOCUMENTS through the default model, the SAE folder `sae` at
    layer 15) in `root` and returns its index folder, root/index."""
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
path = {json.dumps(str(sae))}

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
