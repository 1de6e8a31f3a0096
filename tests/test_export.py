"""`bench export`: pytest-benchmark JSON (loaded by pytest-benchmark itself), csv and parquet."""
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from xfbench.harness.cli import main
from xfbench.harness.report.export import ExportError, benchmark_stats, export

FIXTURE = Path(__file__).parent / "fixtures" / "run-small"
pb_storage = pytest.importorskip("pytest_benchmark.storage.file")


class _Logger:
    def __init__(self):
        self.warnings = []

    def warning(self, text, **kw):
        self.warnings.append(text)

    info = debug = error = lambda self, *a, **k: None


@pytest.fixture()
def run(tmp_path):
    out = tmp_path / "run"
    shutil.copytree(FIXTURE, out)
    return out


def test_pytest_benchmark_loader_reads_the_export(run):
    path, _ = export(run, "pytest-benchmark")
    assert path == run / "pytest-benchmark.json"
    logger = _Logger()
    storage = pb_storage.FileStorage(run, logger=logger)
    benches = list(storage.load_benchmarks(str(path)))
    assert not logger.warnings
    assert len(benches) == 16  # one per configuration, processes pooled
    by_name = {(b["group"], b["name"]): b for b in benches}
    b = by_name[("lenet5 · infer · cpu · fp32 · 2 threads", "lenet5_infer[torch-b64]")]
    assert b["rounds"] == 45 and b["iterations"] == 1 and len(b["data"]) == 45
    assert b["median"] == pytest.approx(64 / b["extra_info"]["samples_per_s"])
    assert b["ops"] == pytest.approx(1 / b["mean"])
    data = json.loads(path.read_text())
    assert data["datetime"] == "2026-01-01T00:00:00+00:00" and data["commit_info"]["id"].startswith("0123")


def test_pytest_benchmark_compare_cli_reads_the_export(run, tmp_path):
    path, _ = export(run, "pytest-benchmark", tmp_path / "0001_xfbench.json")
    exe = Path(sys.executable).with_name("pytest-benchmark")
    if not exe.exists():
        pytest.skip("pytest-benchmark's command is not installed next to this Python")
    p = subprocess.run([str(exe), "compare", str(path), "--group-by", "group", "--columns", "min,median,rounds"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "lenet5_infer[torch-b64]" in p.stdout and "gru_train[jax-b8]" in p.stdout
    assert "Failed to load" not in p.stdout + p.stderr


def test_benchmark_stats_literal():
    s = benchmark_stats([1.0, 2.0, 3.0, 4.0, 100.0])
    assert (s["min"], s["max"], s["median"], s["rounds"], s["total"]) == (1.0, 100.0, 3.0, 5, 110.0)
    assert (s["q1"], s["q3"], s["iqr"]) == (2.0, 4.0, 2.0)
    assert s["iqr_outliers"] == 1 and s["hd15iqr"] == 4.0 and s["ld15iqr"] == 1.0
    assert s["outliers"] == f"{s['stddev_outliers']};1"


def test_csv_export_one_row_per_record(run):
    res = CliRunner().invoke(main, ["export", str(run), "--format", "csv"])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(run / "cases.csv")
    assert len(df) == 20 and set(df["status"]) == {"ok", "skipped", "failed", "timeout"}


def test_parquet_export_or_a_clear_error(run):
    if importlib.util.find_spec("pyarrow") or importlib.util.find_spec("fastparquet"):
        path, _ = export(run, "parquet")
        assert len(pd.read_parquet(path)) == 20
    else:
        with pytest.raises(ExportError, match="pip install pyarrow"):
            export(run, "parquet")
        res = CliRunner().invoke(main, ["export", str(run), "--format", "parquet"])
        assert res.exit_code == 2


def test_export_errors(tmp_path):
    assert CliRunner().invoke(main, ["export", str(tmp_path), "--format", "csv"]).exit_code == 2
    assert CliRunner().invoke(main, ["export", str(tmp_path), "--format", "xml"]).exit_code == 2
