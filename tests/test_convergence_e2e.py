"""`bench run` of runs to accuracy with the real frameworks at tiny sizes: the same batches for every framework,
a record with its curve, the report's section. Not a claim about speed: a tiny target reached in a few steps."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUITE = """description = "tiny runs to accuracy"
roofline = false
[defaults]
frameworks = {frameworks}
modes = ["converge"]
threads = 1
processes = 2
case_timeout_s = 300
[[cases]]
models = ["lenet5"]
batch_sizes = [16]
optimizer = "momentum"
optimizer_params = {{ lr = 0.02 }}
convergence = {{ dataset = "digits", target = 0.5, eval_every = 20, max_steps = 200 }}
"""


def _installed(name: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(name) is not None


@pytest.mark.slow
def test_every_framework_trains_on_the_same_batches_and_the_report_has_the_section(tmp_path):
    # Two frameworks are enough to compare batches; torch and jax import fastest (tests/test_input_pipelines.py
    # checks every pipeline's batches, copy-memory's included, against put_batch).
    frameworks = [fw for fw, mod in (("torch", "torch"), ("jax", "jax"), ("tensorflow", "tensorflow"))
                  if _installed(mod)][:2]
    if len(frameworks) < 2:
        pytest.skip("needs two of torch, jax, tensorflow to compare their batches")
    suite = tmp_path / "tiny.toml"
    suite.write_text(SUITE.format(frameworks=json.dumps(frameworks)))
    p = subprocess.run([sys.executable, "-m", "xfbench.harness.cli", "run", str(suite), "--out", str(tmp_path / "runs")],
                       cwd=ROOT, capture_output=True, text=True, timeout=900, env={**os.environ, "COLUMNS": "200"})
    assert p.returncode == 0, p.stderr
    (run,) = (tmp_path / "runs").iterdir()
    records = [json.loads(line) for line in (run / "cases.jsonl").read_text().splitlines()]
    assert len(records) == 2 * len(frameworks) and {r["status"] for r in records} == {"ok"}
    orders: dict[tuple, set] = {}
    for r in records:
        conv = r["convergence"]
        assert conv["curve"] and conv["curve"][-1]["step"] <= conv["max_steps"]
        assert r["manifest"]["input_pipeline"] == conv["pipeline"]
        assert r["manifest"]["data_order_sha256"] == conv["order_sha256"]
        orders.setdefault((r["case"]["model"], r["case"]["process"]), set()).add(conv["order_sha256"])
        if conv["time_to_target_s"] is not None:
            assert conv["curve"][-1]["test_accuracy"] >= conv["target"]
            assert conv["time_to_target_s"] == conv["curve"][-1]["train_s"]
    # every framework was fed the same batches in the same order, seed by seed; the seeds differ
    assert all(len(hashes) == 1 for hashes in orders.values())
    assert orders["lenet5", 0] != orders["lenet5", 1]
    lenet = [r for r in records if r["case"]["model"] == "lenet5"]
    assert all(r["convergence"]["steps_to_target"] for r in lenet)  # 0.5 on digits: every framework gets there
    report = (run / "report.md").read_text()
    assert "## Time to accuracy" in report and "Fastest to target accuracy (lenet5 on digits to 0.5" in report
    assert "converge" in p.stdout and "reached in" in p.stdout
