#!/usr/bin/env bash
# The benchmarks: each compares saeidx with the peer tool doing the same work, in the
# same run, and prints the ratio (absolute times on a shared machine are noise).
# Usage: bash scripts/bench.sh [bench name ...]   (default: all)
#   SAEIDX_BENCH_BUDGET   seconds spent per measured case (default 3)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh --test-tools
export HF_HUB_OFFLINE=1
if (($#)); then
  for bench in "$@"; do cargo bench -p saeidx-benches --bench "$bench"; done
else
  cargo bench -p saeidx-benches
fi
