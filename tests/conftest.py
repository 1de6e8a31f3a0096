import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def validation_cache(tmp_path_factory, monkeypatch) -> Path:
    """A fresh per-user validation cache for every test (subprocesses inherit it): never the real home's."""
    folder = tmp_path_factory.mktemp("xfbench-cache")
    monkeypatch.setenv("XFBENCH_CACHE_DIR", str(folder))
    return folder
