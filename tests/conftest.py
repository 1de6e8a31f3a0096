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


@pytest.fixture(autouse=True)
def cpu_only_host(request, monkeypatch) -> None:
    """Plans as on a host without a GPU (suite entries with `when = "gpu"` left out), also in subprocesses, so
    that counts of planned cases are the same everywhere; tests/gpu keeps the real answer, and a test may say
    otherwise with monkeypatch.setenv("XFBENCH_ASSUME_GPU", "1")."""
    if request.path.parent.name != "gpu":
        monkeypatch.setenv("XFBENCH_ASSUME_GPU", "0")


@pytest.fixture(autouse=True)
def no_framework_environments(tmp_path_factory, monkeypatch) -> None:
    """No framework environments (xfbench.harness.envs) unless a test makes its own: a GPU host's set-up makes
    some in .venv, and the registry the tests see must be the same on every host."""
    monkeypatch.setenv("XFBENCH_ENVS", str(tmp_path_factory.getbasetemp() / "no-envs"))
