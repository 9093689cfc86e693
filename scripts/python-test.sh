#!/usr/bin/env bash
# The Python package (crates/python): builds its abi3 wheel with maturin, installs it in
# a fresh state into a dedicated venv (.venv-py, git-ignored) beside the PyPI MLX
# runtime the wheel requires, and runs its pytest suite there. scripts/test.sh runs it
# after building the saeidx binary (the tests make their index with it); set-up
# (scripts/setup.sh) must have run. Extra arguments go to pytest.
#
# Environment:
#   PYTHON   the Python that creates the venv (default python3, 3.10 or newer)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python=${PYTHON:-python3}
venv=.venv-py
say() { printf '\033[1m[python-test]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[python-test] error:\033[0m %s\n' "$*" >&2; exit 1; }

# 1. The venv: maturin, pytest, pyarrow and the MLX runtime (mlx-cpu, pinned by hash). ---
requirements=(scripts/requirements/python-tests.txt scripts/requirements/mlx-runtime-cpu.txt)
stamp=$(cat "${requirements[@]}" | sha256sum | cut -d' ' -f1)
if [[ "$(cat "$venv/.requirements-sha256" 2>/dev/null)" != "$stamp" ]]; then
  say "creating $venv from ${requirements[*]}"
  rm -rf "$venv"
  "$python" -m venv "$venv" || die "could not create a venv with $python"
  for file in "${requirements[@]}"; do
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$file" \
      || { rm -rf "$venv"; die "pip could not install $file (is PyPI reachable?)"; }
  done
  echo "$stamp" > "$venv/.requirements-sha256"
fi

# 2. The wheel. -------------------------------------------------------------------------
wheels=target/python-wheels
rm -rf "$wheels"
say "building the saeidx wheel (maturin, release)"
started=$SECONDS
"$venv/bin/maturin" build --release --manifest-path crates/python/Cargo.toml \
  --interpreter "$venv/bin/python" --out "$wheels"
wheel=$(find "$wheels" -name 'saeidx-*.whl')
say "built $wheel ($(du -k "$wheel" | cut -f1) KiB) in $((SECONDS - started)) s"
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --force-reinstall "$wheel"
# The wheel's requirements (the MLX runtime) are met without fetching anything.
"$venv/bin/pip" check --disable-pip-version-check

# 3. The tests, against the installed package. -------------------------------------------
"$venv/bin/python" -m pytest -p no:cacheprovider crates/python/tests "$@"
