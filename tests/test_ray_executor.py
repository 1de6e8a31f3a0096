"""`bench run --executor ray` against a real Ray cluster on this machine: a head and a worker node, each a
set of Ray processes of its own (ray.cluster_utils), one xfbench unit and one CPU each. No mocks: every
case is a Ray task that runs the real worker on a node; faults come from the test-only `faulty` adapter
(tests/fault_adapter/), whose XFBENCH_FAULT the nodes' environment sets (a Ray worker inherits its node's).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import fault_adapter

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'xfbench[ray]')")
from ray.cluster_utils import Cluster  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.ray]
ROOT = Path(__file__).resolve().parent.parent

SUITE = """description = "faulty cases for the Ray executor's tests"
roofline = false
[defaults]
frameworks = ["faulty"]
modes = ["infer"]
threads = 1
case_timeout_s = {timeout}
measure = {{ warmup_steps = 1, warmup_s = 0.01, min_sample_s = 0.005, min_samples = 3, max_time_s = 0.2 }}
[[cases]]
models = ["lenet5"]
batch_sizes = {batches}
"""


def _dist(root: Path, version: str, names: list[str]) -> str:
    """A fake distribution `xfbench-ray-test` at `version` registering `names` (xfbench_faults.<NAME>)."""
    info = root / f"xfbench_ray_test-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: xfbench-ray-test\nVersion: {version}\n")
    attr = {"faulty-pinned": "FAULTY_PINNED", "faulty-lonely": "FAULTY_LONELY"}
    (info / "entry_points.txt").write_text("[xfbench.adapters]\n" + "".join(f"{n} = xfbench_faults:{attr[n]}\n"
                                                                           for n in names))
    return str(root)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two Ray nodes; both register `faulty` and `faulty-pinned` (at version 0.0); batch 3 hangs there."""
    tmp = tmp_path_factory.mktemp("ray")
    path = os.pathsep.join([fault_adapter.install(tmp / "faults"), _dist(tmp / "nodes", "0.0", ["faulty-pinned"]),
                            str(ROOT)])
    env = {"PYTHONPATH": path, "XFBENCH_FAULT": "hang@3", "XFBENCH_FAULT_PIDS": str(tmp / "hang.pids")}
    node = {"num_cpus": 1, "resources": {"xfbench": 1}, "env_vars": env, "include_dashboard": False}
    c = Cluster(initialize_head=True, head_node_args=node)
    c.add_node(**node)
    c.wait_for_nodes()
    c.tmp, c.node_path, c.pids = tmp, path, tmp / "hang.pids"
    yield c
    c.shutdown()


def _bench(cluster, *args, parent_path: str | None = None, wait: bool = True):
    """`bench ARGS` as a user runs it, the parent with the nodes' adapters (or `parent_path`'s) registered."""
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": parent_path or cluster.node_path}
    env.pop("XFBENCH_FAULT", None)
    cmd = [sys.executable, "-m", "xfbench.harness.cli", *args]
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def _suite(tmp: Path, batches: list[int], timeout: float = 120) -> str:
    path = tmp / f"faulty-{'-'.join(map(str, batches))}-{timeout:g}.toml"
    path.write_text(SUITE.format(batches=batches, timeout=timeout))
    return str(path)


def _records(run: Path) -> list[dict]:
    cases = run / "cases.jsonl"  # written with the first record
    return [json.loads(line) for line in cases.read_text().splitlines()] if cases.exists() else []


def _run_until_batch_3_hangs(cluster, tmp_path: Path, batches: list[int]):
    """`bench run` of faulty cases at `batches` on the cluster, once batch 3's worker hangs on a node:
    the bench process and that worker's pid."""
    cluster.pids.unlink(missing_ok=True)
    proc = _bench(cluster, "run", _suite(tmp_path, batches), "--executor", "ray", "--address", cluster.address,
                  "--out", str(tmp_path / "runs"), wait=False)
    deadline = time.monotonic() + 120
    while not (cluster.pids.exists() and cluster.pids.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return proc, int(cluster.pids.read_text().split()[0])


def test_the_smoke_suite_runs_on_the_cluster_each_record_naming_its_node(cluster, tmp_path):
    pytest.importorskip("torch")
    p = _bench(cluster, "run", "smoke", "--frameworks", "torch,faulty", "--models", "lenet5", "--executor", "ray",
               "--address", cluster.address, "--out", str(tmp_path))
    assert p.returncode == 0, p.stderr
    (run,) = tmp_path.iterdir()
    records = _records(run)
    assert sorted((r["case"]["framework"], r["case"]["mode"]) for r in records) == [
        ("faulty", "infer"), ("faulty", "train"), ("torch", "infer"), ("torch", "train")]
    assert {r["status"] for r in records} == {"ok"}
    nodes = {n.node_id for n in [cluster.head_node, *cluster.worker_nodes]}
    for r in records:
        assert r["host"]["ray_node"]["id"] in nodes and r["host"]["cpus_available"] >= 1
        assert r["case"]["process_start"] == "exec"  # a fresh worker on the node, whatever the suite said
        assert (run / "logs" / f"{r['case_id']}.log").exists()
    meta = json.loads((run / "run.json").read_text())
    assert meta["executor"] == {"kind": "ray", "address": cluster.address} and meta["finished"]
    assert "## lenet5 · train (sgd) · cpu · fp32" in (run / "report.md").read_text()


def test_a_ray_worker_killed_mid_case_is_a_failed_record_and_the_run_goes_on(cluster, tmp_path):
    proc, worker = _run_until_batch_3_hangs(cluster, tmp_path, [3, 2])
    ray_worker = int(Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[1].split()[1])  # its parent
    os.kill(ray_worker, signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err  # a failed case: exit 1, and the run went on
    (run,) = (tmp_path / "runs").iterdir()
    by_batch = {r["case"]["batch_size"]: r for r in _records(run)}
    assert by_batch[2]["status"] == "ok"
    assert by_batch[3]["status"] == "failed"
    assert by_batch[3]["reason"].startswith("the Ray task ended without a record"), by_batch[3]["reason"]
    deadline = time.monotonic() + 30  # the hanging worker died with the Ray worker (die_with_parent)
    while Path(f"/proc/{worker}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{worker}").exists()


def test_a_killed_parent_is_resumed_on_the_cluster_and_a_hang_times_out_on_its_node(cluster, tmp_path):
    suite = _suite(tmp_path, [2, 3, 4, 6], timeout=8)
    proc = _bench(cluster, "run", suite, "--executor", "ray", "--address", cluster.address,
                  "--out", str(tmp_path / "runs"), wait=False)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        runs = list((tmp_path / "runs").glob("*/cases.jsonl"))
        if runs and runs[0].read_text().count("\n") >= 1:
            break
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    (run,) = (tmp_path / "runs").iterdir()
    before = len(_records(run))
    assert 1 <= before < 4
    p = _bench(cluster, "run", "--resume", str(run))  # the address comes from run.json
    assert p.returncode == 1, p.stderr  # the hang at batch 3 timed out
    assert "resuming" in p.stdout
    records = _records(run)
    assert sorted(r["case"]["batch_size"] for r in records) == [2, 3, 4, 6]  # each exactly once
    statuses = {r["case"]["batch_size"]: r["status"] for r in records}
    assert statuses == {2: "ok", 3: "timeout", 4: "ok", 6: "ok"}
    assert json.loads((run / "run.json").read_text())["finished"]


def test_a_framework_no_node_has_gives_skipped_records_naming_the_node(cluster, tmp_path):
    parent = os.pathsep.join([fault_adapter.install(tmp_path / "faults"),
                              _dist(tmp_path / "parent", "0.0", ["faulty-pinned", "faulty-lonely"]), str(ROOT)])
    p = _bench(cluster, "run", "smoke", "--frameworks", "faulty-lonely,faulty-pinned", "--models", "lenet5",
               "--modes", "infer", "--executor", "ray", "--address", cluster.address, "--out", str(tmp_path / "runs"),
               parent_path=parent)
    assert p.returncode == 0, p.stderr
    assert "cannot run faulty-lonely (its adapter is not registered)" in p.stderr
    (run,) = (tmp_path / "runs").iterdir()
    by_fw = {r["case"]["framework"]: r for r in _records(run)}
    assert by_fw["faulty-pinned"]["status"] == "ok"
    lonely = by_fw["faulty-lonely"]
    assert lonely["status"] == "skipped"
    assert lonely["reason"].startswith("no adapter named 'faulty-lonely' is registered on node ")
    assert "docs/cluster.md" in lonely["reason"] and lonely["host"]["ray_node"]["ip"] in lonely["reason"]


def test_a_version_that_differs_from_the_plan_stops_the_run_before_anything_is_measured(cluster, tmp_path):
    parent = os.pathsep.join([_dist(tmp_path / "parent", "9.9", ["faulty-pinned"]), str(fault_adapter.HERE),
                              str(ROOT)])
    p = _bench(cluster, "run", "smoke", "--frameworks", "faulty-pinned", "--executor", "ray",
               "--address", cluster.address, "--out", str(tmp_path / "runs"), parent_path=parent)
    assert p.returncode == 2
    line = p.stderr.strip()
    assert "\n" not in line, line
    assert "has xfbench-ray-test 0.0 where the plan has 9.9" in line and "docs/cluster.md" in line, line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_no_cluster_at_the_address_is_one_line_and_nothing_is_created(tmp_path):
    p = subprocess.run([sys.executable, "-m", "xfbench.harness.cli", "run", "smoke", "--executor", "ray",
                        "--address", "127.0.0.1:1", "--out", str(tmp_path / "runs")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2
    assert p.stderr.strip().startswith("error: cannot reach the Ray cluster at 127.0.0.1:1"), p.stderr
    assert not (tmp_path / "runs").exists()


def test_ctrl_c_cancels_the_outstanding_tasks_and_keeps_the_records(cluster, tmp_path):
    proc, worker = _run_until_batch_3_hangs(cluster, tmp_path, [2, 3])
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "continue with: bench run --resume" in err
    deadline = time.monotonic() + 30  # its task was cancelled: the Ray worker and the case's worker are gone
    while Path(f"/proc/{worker}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{worker}").exists()
    (run,) = (tmp_path / "runs").iterdir()
    assert [r["case"]["batch_size"] for r in _records(run)] in ([2], [])  # what finished is kept, the hang is not
    assert json.loads((run / "run.json").read_text())["interrupted"]
