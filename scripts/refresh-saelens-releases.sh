#!/usr/bin/env bash
# Refreshes saeidx's pinned copy of SAELens's release table, the `pretrained_saes.yaml`
# that ships inside the PyPI `sae-lens` wheel, from that wheel.
#
#   bash scripts/refresh-saelens-releases.sh            # the newest sae-lens
#   bash scripts/refresh-saelens-releases.sh 6.54.12    # a given version
#
# Writes crates/sae/data/pretrained_saes.yaml (byte for byte as the wheel ships it) and
# crates/sae/data/pretrained_saes.source (version, wheel and file SHA-256s), each under a
# temporary name first, then renamed. Rebuild saeidx afterwards (the table is compiled in;
# SAEIDX_SAELENS_RELEASES=PATH points a built saeidx at another copy).
set -euo pipefail

version="${1:-}"
python="${PYTHON:-python3}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
data="$repo/crates/sae/data"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

"$python" -m pip download --quiet --no-deps --only-binary :all: --dest "$scratch" \
    "sae-lens${version:+==$version}"
wheel="$(ls "$scratch"/sae_lens-*.whl)"

"$python" - "$wheel" "$data" <<'PY'
import hashlib, os, re, sys, zipfile
from pathlib import Path

wheel, data = Path(sys.argv[1]), Path(sys.argv[2])
version = re.match(r"sae_lens-([^-]+)-", wheel.name).group(1)
with zipfile.ZipFile(wheel) as archive:
    table = archive.read("sae_lens/pretrained_saes.yaml")
source = (
    f"sae-lens {version}\n"
    f"wheel {wheel.name} sha256 {hashlib.sha256(wheel.read_bytes()).hexdigest()}\n"
    f"pretrained_saes.yaml sha256 {hashlib.sha256(table).hexdigest()}\n"
)
data.mkdir(parents=True, exist_ok=True)
for name, content in [("pretrained_saes.yaml", table), ("pretrained_saes.source", source.encode())]:
    partial = data / f".{name}.partial"
    with open(partial, "wb") as out:
        out.write(content)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, data / name)
print(f"pinned SAELens's release table from sae-lens {version} into {data}")
PY
