"""GPU utilisation and NVML memory (xfbench.harness.measure.gpu_metrics) on a real GPU: a tiny torch cuda case
through the real worker process. Without `nvidia-ml-py` (`pip install -e .[gpu]`) it checks only that the
record then has none of them. No assertion on a timing.
"""
from __future__ import annotations

import importlib.util

import pytest

from xfbench.harness.case import Case, MeasureConfig
from xfbench.harness.measure.runner import run_worker

pytestmark = pytest.mark.gpu

# Timed samples of at least a second: several of the driver's utilisation samples (one per 1/6 s to 1 s).
MEASURE = MeasureConfig(warmup_steps=3, warmup_s=0.2, min_sample_s=0.2, min_samples=5, max_samples=10, max_time_s=2.0)


def test_a_cuda_case_records_gpu_utilisation_and_its_nvml_memory(torch_cuda, tmp_path):
    case = Case(framework="torch", model="lenet5", mode="train", batch_size=64, device="cuda", measure=MEASURE,
                case_timeout_s=300.0)
    rec = run_worker(case, tmp_path / "w", tmp_path / "l")
    assert rec.status == "ok", rec.stderr_tail or rec.reason
    m = rec.metrics
    if importlib.util.find_spec("pynvml") is None:
        assert m.gpu_utilisation is None and m.nvml_used_memory_bytes is None and "gpu_device" not in rec.manifest
        return
    assert m.gpu_utilisation is not None and m.gpu_utilisation_samples >= 1, m.to_json()
    assert 0.0 <= m.gpu_utilisation_min <= m.gpu_utilisation <= m.gpu_utilisation_max <= 1.0
    assert rec.manifest["gpu_device"]["name"] and rec.manifest["gpu_device"]["cuda_driver"]
    contended = any(w.startswith("contended") for w in rec.warnings)
    if not contended:  # others on the GPU, pids of another namespace: NVML cannot tell which is the worker
        # The whole process: CUDA context and the allocator's cache beside the tensors the allocator counts.
        assert m.nvml_used_memory_bytes is not None and m.nvml_used_memory_bytes > 0
        assert m.nvml_used_memory_bytes >= m.step_peak_device_memory_bytes
