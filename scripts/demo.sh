#!/usr/bin/env bash
# README command (a): set up, then run the main job end to end on the embedded default
# (pipelines/default.toml: SmolLM2-135M-Instruct, the default SAE at layer 15, the first
# 32 State of the Union addresses) into indexes/default/, verify the index, and answer
# the two questions: which features fire on a sample sentence (live, through the model
# and SAE), and which texts of the index make the strongest of them fire.
# A second run finds the index up to date and only verifies and queries it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
./target/release/saeidx run pipelines/default.toml
./target/release/saeidx verify indexes/default
./target/release/saeidx explain \
  "The Senate and House of Representatives shall make appropriations for the navy." \
  --features 3 --texts 3
