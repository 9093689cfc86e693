#!/usr/bin/env bash
# README command (a): set up, then run the main job end to end on the embedded default
# (pipelines/default.toml: SmolLM2-135M-Instruct, the default SAE at layer 15, the first
# 32 State of the Union addresses) into indexes/default/, and verify the index.
# A second run finds the index up to date and only verifies it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
./target/release/saeidx run pipelines/default.toml
./target/release/saeidx verify indexes/default
