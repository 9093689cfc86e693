#!/usr/bin/env bash
# The README's comparison demo ("Which feature is which"): train a second default-size
# TopK SAE (8192 features, k = 32, layer 15's residual stream) with another seed on the
# same corpus as the default SAE, index the default job's documents with it
# (pipelines/default-seed1.toml), and compare the default index with that one.
#
#   bash scripts/compare-demo.sh                 # needs indexes/default (scripts/demo.sh)
#   DEFAULT_INDEX=/path/to/default TRAIN_TOKENS=1500000 bash scripts/compare-demo.sh
#
# TRAIN_TOKENS (default 100000) trades time for how well trained the second SAE is: the
# default SAE saw 1.5M tokens (about 2 hours on 2 cores); 100k take about 10 minutes.
# Every step is skipped when its output exists (training also resumes from checkpoints).
# Writes indexes/sae-seed1/, indexes/default-seed1/, indexes/compare-seed1.json and
# indexes/compare-seed1.parquet.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export HF_HUB_OFFLINE=1
bin=${SAEIDX:-./target/release/saeidx}
default_index=${DEFAULT_INDEX:-indexes/default}
train_tokens=${TRAIN_TOKENS:-100000}
if [[ ! -f indexes/sae-seed1/config.json ]]; then
  "$bin" sae train --hook blocks.15.hook_resid_post --d-sae 8192 --k 32 \
    --train-tokens "$train_tokens" --seed 1 --f16 --out indexes/sae-seed1
fi
"$bin" run pipelines/default-seed1.toml
[[ -f $default_index/manifest.json ]] || {
  echo "no index at $default_index: run scripts/demo.sh first (or set DEFAULT_INDEX)" >&2
  exit 1
}
"$bin" compare "$default_index" indexes/default-seed1 \
  --parquet indexes/compare-seed1.parquet --json >indexes/compare-seed1.json
"$bin" compare "$default_index" indexes/default-seed1
