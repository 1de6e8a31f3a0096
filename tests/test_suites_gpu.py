"""Suite entries for GPU hosts only (`when = "gpu"`), the GPU detection behind them, and every shipped suite."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xfbench.harness.adapter import discover
from xfbench.harness.measure import host
from xfbench.harness.plan.suites import SUITES_DIR, Overrides, SuiteError, expand, load_suite, parse_suite

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = discover()  # names only: a suite may name an adapter whose framework is not installed here
TWO = '''
[[cases]]
models = ["lenet5"]
frameworks = ["torch"]
modes = ["infer"]
batch_sizes = [64]

[[cases]]
when = "gpu"
device = "cuda"
models = ["lenet5"]
frameworks = ["torch"]
modes = ["infer"]
batch_sizes = [1024]
'''


def parse(text):
    return parse_suite(text, "t", Path("t.toml"), REGISTRY)


@pytest.fixture
def fresh_detection():
    host._listed_gpus.cache_clear()
    yield
    host._listed_gpus.cache_clear()


@pytest.mark.parametrize("gpu", ["0", "1"])
def test_every_shipped_suite_parses_and_expands(monkeypatch, gpu):
    monkeypatch.setenv("XFBENCH_ASSUME_GPU", gpu)
    paths = sorted(SUITES_DIR.glob("*.toml"))
    assert {"quick", "gpu", "gpu-smoke", "smoke", "standard"} <= {p.stem for p in paths}
    for path in paths:
        assert expand(load_suite(str(path), REGISTRY), REGISTRY, cpus=2), path.name


def test_a_gpu_entry_is_left_out_silently_without_a_gpu(monkeypatch):
    monkeypatch.setenv("XFBENCH_ASSUME_GPU", "0")
    (only,) = expand(parse(TWO), REGISTRY, cpus=2)
    assert (only.device, only.batch_size) == ("cpu", 64)
    monkeypatch.setenv("XFBENCH_ASSUME_GPU", "1")
    cases = expand(parse(TWO), REGISTRY, cpus=2)
    assert sorted((c.device, c.batch_size, c.process_start) for c in cases) == [("cpu", 64, "exec"),
                                                                                ("cuda", 1024, "exec")]


def test_when_is_checked_and_may_be_a_default(monkeypatch):
    with pytest.raises(SuiteError, match=r"t.toml \[\[cases\]\] #2: when value 'sometimes' is not one of always, gpu"):
        parse(TWO.replace('"gpu"', '"sometimes"'))
    with pytest.raises(SuiteError, match="when must be a string"):
        parse(TWO.replace('when = "gpu"', "when = true"))
    monkeypatch.setenv("XFBENCH_ASSUME_GPU", "0")
    with pytest.raises(SuiteError, match="no case for model 'lenet5'"):  # everything left out: nothing to run
        expand(parse('[defaults]\nwhen = "gpu"\n' + TWO), REGISTRY, Overrides(models=["lenet5"]), cpus=2)


def test_quick_adds_gpu_jobs_only_on_a_gpu_host(monkeypatch):
    monkeypatch.setenv("XFBENCH_ASSUME_GPU", "0")
    cpu_only = expand(load_suite("quick", REGISTRY), REGISTRY, cpus=2)
    assert {c.device for c in cpu_only} == {"cpu"}
    monkeypatch.setenv("XFBENCH_ASSUME_GPU", "1")
    both = expand(load_suite("quick", REGISTRY), REGISTRY, cpus=2)
    assert {c.case_id for c in both if c.device == "cpu"} == {c.case_id for c in cpu_only}  # the CPU part as it was
    gpu = [c for c in both if c.device == "cuda"]
    assert {(c.model, c.batch_size) for c in gpu} == {("lenet5", 1024), ("alexnet", 128), ("lstm", 64), ("gru", 64)}
    assert {c.framework for c in gpu} == {c.framework for c in cpu_only} == {"torch", "tensorflow", "jax"}
    assert {(c.model, c.mode) for c in gpu} == {(c.model, c.mode) for c in cpu_only}
    assert {c.precision for c in gpu} == {"fp32"} and {c.process for c in gpu} == {0, 1}
    assert {c.process_start for c in gpu} == {"exec"}  # a CUDA case never forks
    assert {c.measure for c in gpu} == {c.measure for c in cpu_only}  # the quick suite's shortened protocol


def test_the_gpu_suite_sweeps_batches_precisions_and_compiled_modes(monkeypatch):
    monkeypatch.setenv("XFBENCH_ASSUME_GPU", "0")  # no `when`: planned anywhere, skipped at run time without CUDA
    cases = expand(load_suite("gpu", REGISTRY), REGISTRY, cpus=2)
    assert len(cases) == 121 and {c.device for c in cases} == {"cuda"} and {c.process for c in cases} == {0}
    assert {c.precision for c in cases} == {"fp32", "tf32", "bf16"}
    assert {c.framework for c in cases} == {"torch", "tensorflow", "jax", "torch-compile", "torch-cudagraphs",
                                            "tensorflow-xla"}
    sweeps = {m: sorted({c.batch_size for c in cases if c.model == m and c.framework == "torch"})
              for m in ("lenet5", "alexnet", "lstm", "gru")}
    assert sweeps == {"lenet5": [256, 1024, 4096], "alexnet": [64, 128, 256], "lstm": [32, 64, 128],
                      "gru": [32, 64, 128]}
    assert {(c.model, c.mode) for c in cases if c.framework == "torch-cudagraphs"} == {
        (m, d) for m in ("lenet5", "alexnet", "lstm", "gru") for d in ("train", "infer")}


def _fake_nvidia_smi(folder: Path, output: str) -> str:
    folder.mkdir()
    tool = folder / "nvidia-smi"
    tool.write_text(f"#!/bin/sh\nprintf '{output}'\n")
    tool.chmod(0o755)
    return str(folder)


def test_gpu_detection_asks_nvidia_smi_once_and_the_environment_can_answer(monkeypatch, tmp_path, fresh_detection):
    monkeypatch.delenv("XFBENCH_ASSUME_GPU")
    monkeypatch.setenv("PATH", _fake_nvidia_smi(tmp_path / "gpu", "NVIDIA H100 80GB HBM3, 81559 MiB, 570.86\\n"))
    assert host.has_nvidia_gpu() is True
    monkeypatch.setenv("PATH", _fake_nvidia_smi(tmp_path / "none", ""))  # asked once per process: still cached
    assert host.has_nvidia_gpu() is True
    host._listed_gpus.cache_clear()
    assert host.has_nvidia_gpu() is False  # nvidia-smi that lists nothing (no driver, no device)
    host._listed_gpus.cache_clear()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert host.has_nvidia_gpu() is False  # no nvidia-smi at all
    monkeypatch.setenv("XFBENCH_ASSUME_GPU", "1")
    assert host.has_nvidia_gpu() is True
    monkeypatch.setenv("XFBENCH_ASSUME_GPU", "0")
    monkeypatch.setenv("PATH", str(tmp_path / "gpu"))
    host._listed_gpus.cache_clear()
    assert host.has_nvidia_gpu() is False
    monkeypatch.setenv("XFBENCH_ASSUME_GPU", "maybe")  # not 0 or 1: nvidia-smi decides
    assert host.has_nvidia_gpu() is True


def _dry_run(gpu: str) -> str:
    env = {**os.environ, "COLUMNS": "200", "XFBENCH_ASSUME_GPU": gpu}
    p = subprocess.run([sys.executable, "-m", "xfbench.harness.cli", "run", "quick", "--dry-run"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr
    return p.stdout + p.stderr


def test_quick_dry_run_says_nothing_of_a_gpu_on_a_cpu_host():
    cpu = _dry_run("0")
    assert "cuda" not in cpu.lower() and "gpu" not in cpu.lower()
    assert "48 cases from" in cpu
    gpu = _dry_run("1")
    assert "96 cases from" in gpu and "lenet5 train sgd b=1024 cuda fp32" in gpu
