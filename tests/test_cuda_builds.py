"""Which adapters cannot use an NVIDIA GPU here ("cpu only: <why>" in `bench list frameworks` on a GPU host),
from package metadata (xfbench.harness.cuda_builds) and, with --check, from a tiny CUDA case in a worker."""
import importlib.metadata as md
import importlib.util
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from xfbench.harness import cuda_builds
from xfbench.harness.adapter import discover
from xfbench.harness.cli import main


def fake_metadata(monkeypatch, versions: dict[str, str], requires: dict[str, list[str]] | None = None):
    def version(name):
        if name not in versions:
            raise md.PackageNotFoundError(name)
        return versions[name]

    monkeypatch.setattr(cuda_builds.md, "version", version)
    monkeypatch.setattr(cuda_builds.md, "requires", lambda name: (requires or {}).get(name, []))
    monkeypatch.setattr(cuda_builds.md, "distributions",
                        lambda: [SimpleNamespace(metadata={"Name": n}) for n in versions])


@pytest.mark.parametrize("versions, requires, imports, why", [
    ({"torch": "2.13.0+cpu"}, {}, ("torch",), "torch 2.13.0+cpu is a CPU build"),
    ({"torch": "2.13.0"}, {"torch": ["nvidia-cuda-runtime==13.0.96; platform_system == 'Linux'"]}, ("torch",), None),
    ({"torch": "2.13.0+cu130"}, {}, ("torch",), None),
    ({"torch": "2.13.0"}, {"torch": ["filelock"]}, ("torch",), "torch 2.13.0 lists no CUDA libraries (a CPU build)"),
    ({"tensorflow-cpu": "2.21.0"}, {}, ("tensorflow", "keras"), "tensorflow-cpu 2.21.0 is a CPU build"),
    ({"tensorflow": "2.21.0"}, {}, ("tensorflow",),
     "tensorflow 2.21.0 without its CUDA libraries (install tensorflow[and-cuda])"),
    ({"tensorflow": "2.21.0", "nvidia_cudnn_cu12": "9.3.0"}, {}, ("tensorflow",), None),
    ({"jax": "0.10.2", "jaxlib": "0.10.2"}, {}, ("jax", "flax"), "jax 0.10.2 has no CUDA plugin (install jax[cuda13])"),
    ({"jax": "0.10.2", "jax-cuda13-plugin": "0.10.2"}, {}, ("jax",), None),
    ({"onnxruntime": "1.32.0"}, {}, ("onnx", "onnxruntime"),
     "onnxruntime 1.32.0 is the CPU build (install onnxruntime-gpu)"),
    ({"onnxruntime-gpu": "1.32.0"}, {}, ("onnxruntime",), None),
    ({"mxnet": "1.9"}, {}, ("mxnet",), None),  # a framework this module does not know: no claim
    ({}, {}, ("torch",), None),  # not installed: `installed` says so, not this
])
def test_cpu_only_reads_the_distributions(monkeypatch, versions, requires, imports, why):
    fake_metadata(monkeypatch, versions, requires)
    assert cuda_builds.cpu_only(imports) == why


def test_the_reference_is_cpu_only():
    assert cuda_builds.cpu_only(("numpy",), reference=True) == "the NumPy reference runs on the CPU"


def bench(*args):
    return CliRunner().invoke(main, [str(a) for a in args], env={"COLUMNS": "250"})


def test_the_cuda_column_appears_only_on_a_gpu_host(monkeypatch):
    monkeypatch.setenv("XFBENCH_ASSUME_GPU", "0")
    plain = bench("list", "frameworks")
    assert plain.exit_code == 0 and "cuda" not in plain.output.splitlines()[0] and "cpu only" not in plain.output
    monkeypatch.setenv("XFBENCH_ASSUME_GPU", "1")
    gpu = bench("list", "frameworks")
    assert gpu.exit_code == 0 and gpu.output.splitlines()[0].split()[:4] == ["adapter", "framework", "installed", "cuda"]
    assert "cpu only: the NumPy reference runs on the CPU" in gpu.output
    torch = discover().get("torch")
    if torch is not None and "+cpu" in torch.versions().get("torch", ""):  # this machine's CPU wheel
        assert f"cpu only: torch {torch.versions()['torch']} is a CPU build" in " ".join(gpu.output.split())


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
def test_the_cuda_case_of_a_cpu_build_says_cpu_only_with_the_adapters_reason():
    """No mock: torch's worker builds the adapter on cuda, which refuses on this machine (or runs on a GPU)."""
    from xfbench.harness.resolve import check_cuda

    out = check_cuda({"torch": discover()["torch"]})
    import subprocess
    has_gpu = subprocess.run(["sh", "-c", "nvidia-smi -L 2>/dev/null | grep -q '^GPU '"]).returncode == 0
    assert out == {"torch": None} if has_gpu else out["torch"].startswith("cpu only: "), out
