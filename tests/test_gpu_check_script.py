"""tests/gpu/check.sh on a machine without an NVIDIA GPU: it runs up to the point where it needs one, then
stops with one clear line and exit code 3, not a traceback (the lent GPU machines run it whole)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "gpu" / "check.sh"


def run_check(out: Path, path: str, python: str = sys.executable) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": path, "PYTHON": python}
    return subprocess.run(["bash", str(SCRIPT), str(out)], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has nvidia-smi: the check runs whole")
def test_without_a_gpu_the_check_stops_with_one_line_and_exit_3(tmp_path):
    result = run_check(tmp_path / "out", os.environ["PATH"])
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert result.stdout.strip().splitlines() == [
        "gpu-check: no NVIDIA GPU on this machine (nvidia-smi not found); run it on a GPU host"]
    assert "Traceback" not in result.stderr
    summary = (tmp_path / "out" / "summary.txt").read_text().splitlines()
    steps = {line.split()[0]: line.split()[1] for line in summary[3:]}
    assert steps == {"packages": "0", "gpu": "3"}  # the packages were checked before the GPU was asked for


def test_an_nvidia_smi_that_lists_no_gpu_is_no_gpu(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho 'No devices were found'\n")
    (fake / "nvidia-smi").chmod(0o755)
    result = run_check(tmp_path / "out", f"{fake}:{os.environ['PATH']}")
    assert result.returncode == 3 and result.stdout.strip() == (
        "gpu-check: no NVIDIA GPU on this machine (nvidia-smi -L lists no GPU); run it on a GPU host")


def test_a_python_without_the_packages_stops_at_the_first_step(tmp_path):
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    result = run_check(tmp_path / "out", os.environ["PATH"], python=str(bare / "bin" / "python"))
    assert result.returncode == 2
    assert "lacks Python packages xfbench needs: numpy, pandas, matplotlib, scipy, click, rich" in result.stderr
    assert "Traceback" not in result.stderr
