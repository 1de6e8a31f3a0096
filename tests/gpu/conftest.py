"""GPU tests: every test under tests/gpu is marked `gpu` and is skipped, with the reason, without a GPU.

A machine counts as having a GPU when torch.cuda.is_available() or jax lists a "gpu" device. That is
asked once per session in a child process, so collecting these tests (also in a plain `pytest` run of
the whole suite) neither starts a CUDA context nor a jax backend in the test process, and a broken
driver cannot crash it. Each test then asks for the framework it needs through the `torch_cuda` /
`jax_gpu` fixtures, which skip (never error) when that framework is missing or sees no GPU itself.

JAX would take 75% of the GPU's memory when its backend starts, and the torch tests in the same process
would run out; so preallocation is off here before jax can start (the adapter sets the same default).
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys

import pytest

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

HERE = os.path.dirname(os.path.abspath(__file__))

_PROBE = r"""
import json, os
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
out = {}
try:
    import torch
    out["torch"] = None if torch.cuda.is_available() else (
        f"torch {torch.__version__} sees no CUDA GPU (torch.cuda.is_available() is False)")
except Exception as e:
    out["torch"] = f"torch is not importable ({type(e).__name__}: {e})"
try:
    import jax
    try:
        out["jax"] = None if jax.devices("gpu") else f"jax {jax.__version__} lists no gpu device"
    except RuntimeError as e:  # "Unknown backend: 'gpu' requested ..." (no CUDA plugin or no device)
        out["jax"] = f"jax {jax.__version__} has no gpu backend ({str(e).splitlines()[0][:60]}...)"
except Exception as e:
    out["jax"] = f"jax is not importable ({type(e).__name__}: {e})"
print(json.dumps(out))
"""


def _nvidia_smi() -> str:
    if shutil.which("nvidia-smi") is None:
        return "nvidia-smi not found"
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"nvidia-smi -L failed: {e}"
    if out.returncode:
        return f"nvidia-smi -L exited {out.returncode}"
    return f"nvidia-smi lists {sum(line.startswith('GPU ') for line in out.stdout.splitlines())} GPU(s)"


@functools.lru_cache(maxsize=None)
def no_gpu_reason() -> str | None:
    """None when torch or jax sees a GPU (or the probe itself broke: then the tests run and say why)."""
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120)
        found = json.loads(proc.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return None
    if found.get("torch") is None or found.get("jax") is None:
        return None
    return f"no NVIDIA GPU here: {_nvidia_smi()}; {found['torch']}; {found['jax']}"


def pytest_collection_modifyitems(config, items):
    mine = [item for item in items if str(item.fspath).startswith(HERE + os.sep)]
    if not mine:
        return
    why = no_gpu_reason()
    for item in mine:
        item.add_marker(pytest.mark.gpu)
        if why:
            item.add_marker(pytest.mark.skip(reason=why))


@pytest.fixture(scope="session")
def torch_cuda():
    """The torch module, when it sees a CUDA GPU; else the test is skipped with the reason."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip(f"torch {torch.__version__} sees no CUDA GPU (torch.cuda.is_available() is False)")
    return torch


@pytest.fixture(scope="session")
def jax_gpu():
    """The jax module, when it (with flax and optax) is installed and lists a gpu device; else a skip."""
    jax = pytest.importorskip("jax")
    pytest.importorskip("flax")
    pytest.importorskip("optax")
    try:
        if not jax.devices("gpu"):
            pytest.skip(f"jax {jax.__version__} lists no gpu device")
    except RuntimeError as e:
        pytest.skip(f"jax {jax.__version__} has no gpu backend: {str(e).splitlines()[0][:120]}")
    return jax
