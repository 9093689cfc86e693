#!/usr/bin/env bash
# One idempotent set-up step, run first by both README commands (scripts/demo.sh and
# scripts/test.sh). Safe to run again: each part checks what is already there.
#
#   1. system packages (apt) that the build needs, when missing;
#   2. the MLX runtime from the pinned PyPI wheel into .runtime/mlx (git-ignored);
#   3. with --test-tools: the Python reference environment in .venv (git-ignored),
#      Debian's chromium and chromedriver (headless browser tests of rendered pages
#      and of the served UI), Debian's slurm-wlm and munge (the Slurm test starts
#      its own cluster; installing them starts no service) and Debian's postgresql (the
#      Neuronpedia import test starts its own server in a temporary folder; Debian may
#      also start its default cluster, which no test uses), and cargo-machete (CI keeps
#      unused dependencies out) into .tools (git-ignored);
#   4. the saeidx binary (release build);
#   5. the embedded default assets: `saeidx assets prepare` downloads, verifies and
#      converts the default model into the Hugging Face cache ($HF_HOME, default
#      ~/.cache/huggingface) and the default corpus into .assets/.
#
# Environment:
#   SAEIDX_MLX_REQUIREMENTS  pip requirements file for the MLX runtime
#                            (default scripts/requirements/mlx-runtime-cpu.txt; an NVIDIA
#                            machine points it at a file pinning mlx-cuda-13==0.32.2)
#   PYTHON                   the Python used for pip and the venv (default python3)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
test_tools=false
for arg in "$@"; do
  case "$arg" in
    --test-tools) test_tools=true ;;
    *) echo "usage: scripts/setup.sh [--test-tools]" >&2; exit 2 ;;
  esac
done
python=${PYTHON:-python3}
say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }

# 1. System packages -----------------------------------------------------------------
packages=(cmake libclang-dev libopenblas0-pthread)
# Tests also load rendered pages and drive the served UI in a real browser, headless,
# submit jobs to a single-node Slurm cluster they start on loopback
# (scripts/slurm-local.sh), and import Neuronpedia exports into a PostgreSQL server
# they start on a private socket (tests/postgres.rs).
if $test_tools; then packages+=(chromium chromium-driver slurm-wlm munge postgresql); fi
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$package")
done
if ((${#missing[@]})); then
  say "installing system packages: ${missing[*]}"
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq || die "apt-get update failed (is the Debian mirror reachable?)"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
fi

# 2. MLX runtime -----------------------------------------------------------------------
requirements=${SAEIDX_MLX_REQUIREMENTS:-scripts/requirements/mlx-runtime-cpu.txt}
runtime=.runtime/mlx
stamp=$(sha256sum "$requirements" | cut -d' ' -f1)
if [[ ! -f $runtime/mlx/lib/libmlx.so || "$(cat $runtime/.requirements-sha256 2>/dev/null)" != "$stamp" ]]; then
  say "installing the MLX runtime from $requirements into $runtime"
  mkdir -p .runtime
  staging=$(mktemp -d .runtime/.tmp-mlx.XXXXXX)
  trap 'rm -rf "$staging"' EXIT
  "$python" -m pip install --quiet --disable-pip-version-check --no-compile \
    --target "$staging" -r "$requirements" \
    || die "pip could not install the MLX runtime (is PyPI reachable? is the disk full?)"
  echo "$stamp" > "$staging/.requirements-sha256"
  rm -rf "$runtime"
  mv "$staging" "$runtime"
  trap - EXIT
fi

# 3. Python reference environment (tests only) -------------------------------------------
if $test_tools; then
  venv_requirements=scripts/reference/requirements.txt
  venv_stamp=$(sha256sum "$venv_requirements" | cut -d' ' -f1)
  if [[ "$(cat .venv/.requirements-sha256 2>/dev/null)" != "$venv_stamp" ]]; then
    say "creating the Python reference environment .venv from $venv_requirements"
    rm -rf .venv
    "$python" -m venv .venv || die "could not create a venv with $python"
    .venv/bin/pip install --quiet --disable-pip-version-check -r "$venv_requirements" \
      || { rm -rf .venv; die "pip could not install $venv_requirements"; }
    echo "$venv_stamp" > .venv/.requirements-sha256
  fi
fi

# cargo-machete, pinned: a dependency no code uses fails CI (scripts/test.sh).
if $test_tools && [[ "$(.tools/bin/cargo-machete --version 2>/dev/null)" != *0.9.2* ]]; then
  say "installing cargo-machete 0.9.2 into .tools"
  cargo install --quiet --locked --version 0.9.2 --root .tools cargo-machete \
    || die "cargo install cargo-machete failed (is crates.io reachable?)"
fi

# 4. The saeidx binaries -------------------------------------------------------------------
say "building saeidx (release)"
cargo build --release -p saeidx-cli -p saeidx-cli-model

# 5. Default assets --------------------------------------------------------------------------
./target/release/saeidx assets prepare
