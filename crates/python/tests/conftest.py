"""Fixtures: one small real index, made once per session by the saeidx binary."""

from pathlib import Path

import pytest

from support import DEFAULT_SAE, build_index


@pytest.fixture(scope="session")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small index of DOCUMENTS (read-only: copy it to change it)."""
    return build_index(tmp_path_factory.mktemp("job"), DEFAULT_SAE)
