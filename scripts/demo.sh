#!/usr/bin/env bash
# README command (a): set up, then run the main job on the embedded default model and
# corpus. Until the index job exists, that is the furthest real step: resolve the
# default model offline through the Hugging Face cache, check every weight against its
# config, and tokenize sentences with it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
./target/release/saeidx model inspect \
  --text "The Eiffel Tower is a famous landmark in Paris, France." \
  --text "In 1790, Congress met in New York: 3,000,000 florins were borrowed."
