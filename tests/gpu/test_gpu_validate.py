"""`bench validate --device cuda` for real (docs/spec.md section 6.2): IEEE float32 at 1e-5, and the TF32 forward
reported with its own tolerance. Skipped with the reason without a GPU (tests/gpu/conftest.py)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu

REPO = Path(__file__).resolve().parents[2]
BENCH = [sys.executable, "-c",
         "import sys, importlib.metadata as md; "
         "eps = list(md.entry_points(group='console_scripts', name='bench')); "
         "sys.exit('bench is not installed: pip install -e .') if not eps else None; "
         "sys.argv[0] = 'bench'; sys.exit(eps[0].load()())"]


def test_bench_validate_on_cuda_checks_fp32_and_reports_tf32(torch_cuda, tmp_path):
    proc = subprocess.run([*BENCH, "validate", "--tiny", "--device", "cuda", "--frameworks", "torch,numpy",
                           "--models", "lenet5", "--artifacts", str(tmp_path)], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    log = f"bench validate exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, log
    text = " ".join(proc.stdout.split())
    assert "logits tf32" in text and "loss tf32" in text, log
    assert "logits, loss tf32 <= 1e-2" in text, log
    import numpy as np

    torch_out = np.load(tmp_path / "lenet5" / "torch.npz")
    assert {"logits", "loss", "tf32.logits", "tf32.loss"} <= set(torch_out.files)
    assert not np.array_equal(torch_out["logits"], torch_out["tf32.logits"])  # TF32 really was on, and IEEE off
